//! Pure computations on buffers: generators, vectorisable math, and (later) element-wise,
//! reduction and indexing kernels. Nothing here knows about files, Zarr or the command line; every
//! function takes slices or ndarray views and is generic over the element type where it can be.

pub mod generate;
pub mod math;
pub mod random;
