//! Generators: arrays defined by a formula of the element position (constants, `arange`,
//! `linspace`, random). Each fills any region of its array directly, so a generated array never has
//! to exist in full, on disk or in memory. Values follow NumPy's definitions exactly (see each
//! variant).

use super::random::{self, Dist};
use crate::dtype::{DType, Elem, Scalar};
use crate::grid::{for_each_row, strides, Region};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Generator {
    /// Every element is the same value.
    Const(ScalarRepr),
    /// `numpy.arange(start, stop, step)`: element i is `start + i·delta` computed in the output
    /// dtype, where `delta = dtype(start + step) - dtype(start)` (NumPy's fill rule); exact integer
    /// arithmetic for integer dtypes.
    Arange {
        #[serde(with = "crate::serial::exact_f64")]
        start: f64,
        #[serde(with = "crate::serial::exact_f64")]
        step: f64,
        int_start: i64,
        int_step: i64,
    },
    /// `numpy.linspace(start, stop, num)`: element i is `i·step + start` with `step = (stop -
    /// start)/(num - 1)`, and the last element is exactly `stop`.
    Linspace {
        #[serde(with = "crate::serial::exact_f64")]
        start: f64,
        #[serde(with = "crate::serial::exact_f64")]
        stop: f64,
        num: u64,
    },
    /// The counter-based random stream of [`random`].
    Random { dist: Dist, seed: u64 },
}

/// A serialisable [`Scalar`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ScalarRepr {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(#[serde(with = "crate::serial::exact_f64")] f64),
}

impl From<Scalar> for ScalarRepr {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Bool(b) => ScalarRepr::Bool(b),
            Scalar::Int(i) => ScalarRepr::Int(i),
            Scalar::Uint(u) => ScalarRepr::Uint(u),
            Scalar::Float(f) => ScalarRepr::Float(f),
        }
    }
}

impl From<ScalarRepr> for Scalar {
    fn from(s: ScalarRepr) -> Self {
        match s {
            ScalarRepr::Bool(b) => Scalar::Bool(b),
            ScalarRepr::Int(i) => Scalar::Int(i),
            ScalarRepr::Uint(u) => Scalar::Uint(u),
            ScalarRepr::Float(f) => Scalar::Float(f),
        }
    }
}

impl Generator {
    /// A constant generator's value (the Zarr fill value that makes its chunks free to store).
    pub fn constant(&self) -> Option<Scalar> {
        match self {
            Generator::Const(s) => Some((*s).into()),
            _ => None,
        }
    }

    /// Fill `out`, the C-order buffer of `region`, with this generator's values for an array of
    /// `shape` and element type `T`.
    pub fn fill<T: Elem>(&self, shape: &[u64], region: &Region, out: &mut [T]) {
        debug_assert_eq!(out.len() as u64, region.len());
        match self {
            Generator::Const(s) => out.fill(T::from_scalar((*s).into())),
            Generator::Random { dist, seed } => random::fill_region(dist, *seed, shape, region, out),
            Generator::Arange { start, step, int_start, int_step } => {
                let st = strides(shape);
                let row = region.shape.last().copied().unwrap_or(1) as usize;
                for_each_row(region, |idx, off| {
                    let first: u64 = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
                    let dst = &mut out[off..off + row];
                    arange_run(T::DTYPE, *start, *step, *int_start, *int_step, first, dst);
                });
            }
            Generator::Linspace { start, stop, num } => {
                let st = strides(shape);
                let row = region.shape.last().copied().unwrap_or(1) as usize;
                let div = num.saturating_sub(1).max(1) as f64;
                let delta = stop - start;
                let step = delta / div;
                for_each_row(region, |idx, off| {
                    let first: u64 = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
                    for (k, d) in out[off..off + row].iter_mut().enumerate() {
                        let i = first + k as u64;
                        let v = if *num > 1 && i == num - 1 {
                            *stop
                        } else if step == 0.0 {
                            (i as f64 / div) * delta + start
                        } else {
                            i as f64 * step + start
                        };
                        *d = T::from_f64(v);
                    }
                });
            }
        }
    }
}

fn arange_run<T: Elem>(dt: DType, start: f64, step: f64, istart: i64, istep: i64, first: u64, dst: &mut [T]) {
    match dt {
        DType::Float64 => {
            let delta = (start + step) - start;
            for (k, d) in dst.iter_mut().enumerate() {
                *d = T::from_f64(start + (first + k as u64) as f64 * delta);
            }
        }
        DType::Float32 => {
            let s32 = start as f32;
            let delta = ((start + step) as f32) - s32;
            for (k, d) in dst.iter_mut().enumerate() {
                *d = T::from_f64((s32 + (first + k as u64) as f32 * delta) as f64);
            }
        }
        _ => {
            for (k, d) in dst.iter_mut().enumerate() {
                let i = (first + k as u64) as i64;
                *d = T::from_i64(istart.wrapping_add(i.wrapping_mul(istep)));
            }
        }
    }
}

/// Number of elements of `numpy.arange(start, stop, step)`: `ceil((stop - start) / step)`, at least 0.
pub fn arange_len(start: f64, stop: f64, step: f64) -> Result<u64, String> {
    if step == 0.0 || !step.is_finite() {
        return Err("--step must be a finite, non-zero number".into());
    }
    if !start.is_finite() || !stop.is_finite() {
        return Err("--start and --stop must be finite".into());
    }
    let n = ((stop - start) / step).ceil();
    // no array dsk can hold has 2⁶³ elements (and `as u64` would saturate to a wrong length)
    if n >= 2f64.powi(63) {
        return Err(format!(
            "arange from {start:?} to {stop:?} by {step:?} would have more than 2⁶³ elements — use a larger step or a shorter range"
        ));
    }
    Ok(if n > 0.0 { n as u64 } else { 0 })
}

/// Integer version of [`arange_len`], exact for any i64 bounds.
pub fn arange_len_int(start: i64, stop: i64, step: i64) -> Result<u64, String> {
    if step == 0 {
        return Err("--step must not be zero".into());
    }
    let (span, step) = (stop as i128 - start as i128, step as i128);
    // ceil(span / step) with truncating division
    let (q, r) = (span / step, span % step);
    let n = if r != 0 && (r > 0) == (step > 0) { q + 1 } else { q };
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arange_follows_numpy() {
        // numpy.arange(0.1, 1.0, 0.2).tolist(), as NumPy 2.4 prints it
        let n = arange_len(0.1, 1.0, 0.2).unwrap_or(0);
        assert_eq!(n, 5);
        let g = Generator::Arange { start: 0.1, step: 0.2, int_start: 0, int_step: 0 };
        let mut out = vec![0.0f64; 5];
        g.fill(&[5], &Region::full(&[5]), &mut out);
        assert_eq!(out, vec![0.1, 0.30000000000000004, 0.5000000000000001, 0.7000000000000001, 0.9000000000000001]);
        assert_eq!(arange_len_int(10, 0, -3), Ok(4)); // 10 7 4 1
        assert_eq!(arange_len_int(0, 10, 3), Ok(4)); // 0 3 6 9
        assert_eq!(arange_len_int(5, 5, 1), Ok(0));
        assert_eq!(arange_len_int(10, -5, -4), Ok(4)); // 10 6 2 -2
        assert_eq!(arange_len_int(0, 10, -1), Ok(0));
    }

    #[test]
    fn linspace_ends_exactly_at_stop() {
        let g = Generator::Linspace { start: 0.0, stop: 1.0, num: 7 };
        let mut out = vec![0.0f64; 7];
        g.fill(&[7], &Region::full(&[7]), &mut out);
        assert_eq!(out[6], 1.0);
        assert_eq!(out[3], 0.5);
    }
}
