//! The NumPy-like language of dsk: for now the selection syntax (`0:10, ::-2, 5, ...`) shared by
//! `dsk export --slice` and, later, by indexing inside expressions.

pub mod slice;
