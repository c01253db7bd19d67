//! [`Buf`]: an n-d array of any supported dtype, shared cheaply (ndarray's `ArcArray`), so that a
//! decoded chunk can be sliced, reversed, transposed and broadcast as a view without copying.

use ndarray::{ArcArray, ArrayD, IxDyn};

use crate::dtype::{DType, Elem};

pub type Arr<T> = ArcArray<T, IxDyn>;

#[derive(Clone, Debug)]
pub enum Buf {
    Bool(Arr<bool>),
    I8(Arr<i8>),
    I16(Arr<i16>),
    I32(Arr<i32>),
    I64(Arr<i64>),
    U8(Arr<u8>),
    U16(Arr<u16>),
    U32(Arr<u32>),
    U64(Arr<u64>),
    F32(Arr<f32>),
    F64(Arr<f64>),
}

/// Element types that can live in a [`Buf`].
pub trait BufElem: Elem {
    fn wrap(a: Arr<Self>) -> Buf;
    fn unwrap(b: Buf) -> Option<Arr<Self>>;
    fn view(b: &Buf) -> Option<&Arr<Self>>;
    fn view_mut(b: &mut Buf) -> Option<&mut Arr<Self>>;
}

macro_rules! buf_elem {
    ($t:ty, $v:ident) => {
        impl BufElem for $t {
            fn wrap(a: Arr<Self>) -> Buf {
                Buf::$v(a)
            }
            fn unwrap(b: Buf) -> Option<Arr<Self>> {
                match b {
                    Buf::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn view(b: &Buf) -> Option<&Arr<Self>> {
                match b {
                    Buf::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn view_mut(b: &mut Buf) -> Option<&mut Arr<Self>> {
                match b {
                    Buf::$v(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}

buf_elem!(bool, Bool);
buf_elem!(i8, I8);
buf_elem!(i16, I16);
buf_elem!(i32, I32);
buf_elem!(i64, I64);
buf_elem!(u8, U8);
buf_elem!(u16, U16);
buf_elem!(u32, U32);
buf_elem!(u64, U64);
buf_elem!(f32, F32);
buf_elem!(f64, F64);

/// Run `$body` with `$a` bound to the typed array inside a `Buf` and `$T` to its element type.
#[macro_export]
macro_rules! with_buf {
    ($buf:expr, $T:ident, $a:ident => $body:expr) => {
        match $buf {
            $crate::kernels::buf::Buf::Bool($a) => {
                #[allow(dead_code)]
                type $T = bool;
                $body
            }
            $crate::kernels::buf::Buf::I8($a) => {
                #[allow(dead_code)]
                type $T = i8;
                $body
            }
            $crate::kernels::buf::Buf::I16($a) => {
                #[allow(dead_code)]
                type $T = i16;
                $body
            }
            $crate::kernels::buf::Buf::I32($a) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            $crate::kernels::buf::Buf::I64($a) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            $crate::kernels::buf::Buf::U8($a) => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            $crate::kernels::buf::Buf::U16($a) => {
                #[allow(dead_code)]
                type $T = u16;
                $body
            }
            $crate::kernels::buf::Buf::U32($a) => {
                #[allow(dead_code)]
                type $T = u32;
                $body
            }
            $crate::kernels::buf::Buf::U64($a) => {
                #[allow(dead_code)]
                type $T = u64;
                $body
            }
            $crate::kernels::buf::Buf::F32($a) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::kernels::buf::Buf::F64($a) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}

impl Buf {
    pub fn dtype(&self) -> DType {
        crate::with_buf!(self, T, _a => T::DTYPE)
    }

    pub fn shape(&self) -> &[usize] {
        crate::with_buf!(self, T, a => a.shape())
    }

    pub fn len(&self) -> usize {
        crate::with_buf!(self, T, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A C-order array of `shape` from a vector of elements.
    ///
    /// # Panics
    /// When `v` does not hold exactly the elements of `shape`: that is a bug in the caller, and a
    /// panic (reported as an internal error, the run failing) is better than a plausible array.
    pub fn from_vec<T: BufElem>(shape: &[usize], v: Vec<T>) -> Buf {
        let len = v.len();
        match ArrayD::from_shape_vec(IxDyn(shape), v) {
            Ok(a) => T::wrap(a.into_shared()),
            Err(_) => panic!("a buffer of {len} elements for the shape {shape:?}"),
        }
    }

    /// A 0-d array holding `v`.
    pub fn scalar<T: BufElem>(v: T) -> Buf {
        T::wrap(ArrayD::from_elem(IxDyn(&[]), v).into_shared())
    }

    /// This array converted to `to` (NumPy `astype`); a no-op when the dtype already matches.
    pub fn cast(&self, to: DType) -> Buf {
        if self.dtype() == to {
            return self.clone();
        }
        crate::with_dtype!(to, U => {
            crate::with_buf!(self, T, a => U::wrap(a.mapv(|v: T| v.cast::<U>()).into_shared()))
        })
    }

    /// The elements in C order (copying only when the layout is not already C-contiguous).
    pub fn into_vec<T: BufElem>(self) -> Option<Vec<T>> {
        let a = T::unwrap(self)?;
        let n = a.len();
        Some(if a.is_standard_layout() {
            // a view into a larger buffer keeps the whole buffer: take just its elements
            let (v, off) = a.into_owned().into_raw_vec_and_offset();
            let off = off.unwrap_or(0);
            if off == 0 && v.len() == n {
                v
            } else {
                v[off..off + n].to_vec()
            }
        } else {
            a.as_standard_layout().iter().copied().collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_of_a_buffer_gives_only_its_elements() {
        let b = Buf::from_vec(&[3, 2], vec![1i32, 2, 3, 4, 5, 6]);
        let s = crate::with_buf!(&b, T, a => T::wrap(a.clone().slice_move(ndarray::s![1..3, ..]).into_dyn()));
        drop(b);
        assert_eq!(s.into_vec::<i32>(), Some(vec![3, 4, 5, 6]));
    }

    #[test]
    fn casts_follow_astype() {
        let b = Buf::from_vec(&[4], vec![1.7f64, -1.7, f64::NAN, 300.0]);
        assert_eq!(b.cast(DType::Int32).into_vec::<i32>(), Some(vec![1, -1, 0, 300]));
        assert_eq!(b.cast(DType::Bool).into_vec::<bool>(), Some(vec![true, true, true, true]));
        let i = Buf::from_vec(&[2], vec![300i64, -1]);
        assert_eq!(i.cast(DType::Uint8).into_vec::<u8>(), Some(vec![44, 255]));
        assert_eq!(i.cast(DType::Float32).into_vec::<f32>(), Some(vec![300.0, -1.0]));
    }
}
