//! Pure computations on buffers: generators, element-wise operations, vectorisable math. Nothing
//! here knows about files, Zarr or the command line; every function takes slices or ndarray arrays
//! and is generic over the element type where it can be.

pub mod bins;
pub mod buf;
pub mod elementwise;
pub mod generate;
pub mod math;
pub mod random;
pub mod reduce;
