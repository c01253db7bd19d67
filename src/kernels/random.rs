//! The counter-based random generator behind `dsk create random` and `random(...)` in expressions.
//!
//! Element `i` (its C-order position in the whole array) gets `bits(key, i)`, where `key` is derived
//! from the seed and `bits` is the SplitMix64 output function applied to `key + (i + 1)·γ` (γ the
//! golden-ratio increment). The value of an element therefore depends only on the seed and its
//! position: not on the chunking, the order chunks are written in, nor the number of workers. Any
//! region can be generated directly, which is what lets a plan read `random(...)[::-1, ::-1]` or a
//! mismatched chunking without generating whole chunks.
//!
//! Distributions: uniform floats in [low, high) from 53 random bits; normal by Box–Muller over pairs
//! (elements 2p and 2p+1 share one pair of uniforms: r·cos θ and r·sin θ); integers in [low, high)
//! by Lemire's multiply-shift. The loops are branch-free and compiled for several instruction sets
//! with run-time dispatch (AVX-512, AVX2, NEON, baseline), all giving bit-identical results.

use multiversion::multiversion;

use super::math;
use crate::dtype::{DType, Elem};
use crate::grid::{for_each_row, strides, Region};

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const TWO_POW_M53: f64 = 1.0 / (1u64 << 53) as f64;

#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stream key of a seed.
pub fn key(seed: u64) -> u64 {
    mix64(seed ^ 0x6473_6b2d_7261_6e64) // "dsk-rand"
}

/// 64 random bits for position `i` of the stream `key`.
#[inline(always)]
pub fn bits(key: u64, i: u64) -> u64 {
    mix64(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// A uniform double in [0, 1).
#[inline(always)]
fn unit(b: u64) -> f64 {
    ((b >> 11) as i64) as f64 * TWO_POW_M53
}

/// A distribution of random values.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Dist {
    /// Floats in [low, high).
    Uniform {
        #[serde(with = "crate::serial::exact_f64")]
        low: f64,
        #[serde(with = "crate::serial::exact_f64")]
        high: f64,
    },
    /// Floats from N(mean, std²).
    Normal {
        #[serde(with = "crate::serial::exact_f64")]
        mean: f64,
        #[serde(with = "crate::serial::exact_f64")]
        std: f64,
    },
    /// Integers in [low, high) (high > low).
    Integers { low: i64, high: i128 },
    /// Booleans, true with probability 1/2.
    Bits,
}

impl Dist {
    /// Check that this distribution can produce `dtype` values; the message says what to change.
    pub fn check(&self, dtype: DType) -> Result<(), String> {
        match self {
            Dist::Uniform { low, high } | Dist::Normal { mean: low, std: high } if !dtype.is_float() => {
                let _ = (low, high);
                Err(format!("this distribution gives floats; use --dtype float32 or float64 (not {dtype})"))
            }
            Dist::Uniform { low, high } if !(low.is_finite() && high.is_finite() && low < high) => {
                Err(format!("--low {low} --high {high}: need finite bounds with low < high"))
            }
            Dist::Uniform { low, high } if (high - low).is_infinite() => Err(format!(
                "--low {low:?} --high {high:?}: the range high - low overflows a float (NumPy refuses it too)"
            )),
            Dist::Normal { mean, std } if !(mean.is_finite() && std.is_finite() && *std >= 0.0) => {
                Err(format!("--mean {mean} --std {std}: need a finite mean and a finite std ≥ 0"))
            }
            Dist::Integers { low, high } => {
                if !dtype.is_int() {
                    return Err(format!("integer bounds need an integer --dtype (not {dtype})"));
                }
                let (lo, hi) = crate::dtype::int_range(dtype);
                if (*low as i128) < lo || *high - 1 > hi || *high <= *low as i128 {
                    return Err(format!("[{low}, {high}) is empty or does not fit in {dtype} ({lo}..={hi})"));
                }
                Ok(())
            }
            Dist::Bits if !dtype.is_bool() => Err("random bits are only for --dtype bool".into()),
            _ => Ok(()),
        }
    }
}

#[multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma+bmi1+bmi2",
    "x86_64+avx2+fma+bmi1+bmi2",
    "aarch64+neon"
))]
fn uniform_run(out: &mut [f64], key: u64, first: u64, low: f64, scale: f64) {
    for (k, o) in out.iter_mut().enumerate() {
        *o = low + scale * unit(bits(key, first + k as u64));
    }
}

/// Box–Muller over pairs: out[2k], out[2k+1] come from pair `first_pair + k`.
#[multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma+bmi1+bmi2",
    "x86_64+avx2+fma+bmi1+bmi2",
    "aarch64+neon"
))]
fn normal_pairs(out: &mut [f64], key: u64, first_pair: u64, mean: f64, std: f64) {
    const B: usize = 256;
    let mut r = [0.0f64; B];
    let mut s = [0.0f64; B];
    let mut c = [0.0f64; B];
    for (blk, o) in out.chunks_mut(2 * B).enumerate() {
        let n = o.len() / 2;
        let p0 = first_pair + (blk * B) as u64;
        for (k, ((rk, sk), ck)) in r[..n].iter_mut().zip(&mut s[..n]).zip(&mut c[..n]).enumerate() {
            let p = p0 + k as u64;
            let u1 = (((bits(key, 2 * p) >> 11) + 1) as i64) as f64 * TWO_POW_M53; // (0, 1]
            let u2 = unit(bits(key, 2 * p + 1));
            *rk = std * (-2.0 * math::ln(u1)).sqrt();
            let (sn, cs) = math::sincos_2pi(u2);
            *sk = sn;
            *ck = cs;
        }
        for (pair, ((rk, sk), ck)) in o.chunks_exact_mut(2).zip(r[..n].iter().zip(&s[..n]).zip(&c[..n])) {
            pair[0] = mean + rk * ck;
            pair[1] = mean + rk * sk;
        }
    }
}

/// One element of the normal stream (used for the odd ends of a run).
fn normal_one(key: u64, i: u64, mean: f64, std: f64) -> f64 {
    let mut pair = [0.0; 2];
    normal_pairs(&mut pair, key, i / 2, mean, std);
    pair[(i % 2) as usize]
}

/// Fill `out` with the float values of positions `first..first + out.len()`.
fn float_run(dist: &Dist, key: u64, first: u64, out: &mut [f64]) {
    match *dist {
        Dist::Uniform { low, high } => uniform_run(out, key, first, low, high - low),
        Dist::Normal { mean, std } => {
            if out.is_empty() {
                return;
            }
            let (mut i, mut o) = (first, 0);
            if i % 2 == 1 {
                out[0] = normal_one(key, i, mean, std);
                i += 1;
                o = 1;
            }
            let rest = out.len() - o;
            let even = rest - rest % 2;
            normal_pairs(&mut out[o..o + even], key, i / 2, mean, std);
            if rest % 2 == 1 {
                out[out.len() - 1] = normal_one(key, i + even as u64, mean, std);
            }
        }
        Dist::Integers { .. } | Dist::Bits => {}
    }
}

/// Fill `out` (the C-order buffer of `region`) with the values of the random array of `shape`.
pub fn fill_region<T: Elem>(dist: &Dist, seed: u64, shape: &[u64], region: &Region, out: &mut [T]) {
    let key = key(seed);
    let st = strides(shape);
    let row = region.shape.last().copied().unwrap_or(1) as usize;
    let mut scratch = vec![0.0f64; if T::DTYPE == DType::Float64 { 0 } else { row.min(4096) }];
    for_each_row(region, |idx, off| {
        let first: u64 = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
        let dst = &mut out[off..off + row];
        match *dist {
            Dist::Integers { low, high } => {
                let range = (high - low as i128) as u128;
                for (k, d) in dst.iter_mut().enumerate() {
                    let b = bits(key, first + k as u64) as u128;
                    let v = low as i128 + ((b * range) >> 64) as i128;
                    *d = T::from_i64(v as i64);
                }
            }
            Dist::Bits => {
                for (k, d) in dst.iter_mut().enumerate() {
                    *d = T::from_u64(bits(key, first + k as u64) >> 63);
                }
            }
            _ => {
                if let Some(d64) = as_f64_slice(dst) {
                    float_run(dist, key, first, d64);
                } else {
                    let mut done = 0;
                    while done < row {
                        let n = (row - done).min(scratch.len());
                        float_run(dist, key, first + done as u64, &mut scratch[..n]);
                        for (d, s) in dst[done..done + n].iter_mut().zip(&scratch[..n]) {
                            *d = T::from_f64(*s);
                        }
                        done += n;
                    }
                }
            }
        }
    });
}

/// `Some` when `T` is `f64`, to write straight into the output buffer.
fn as_f64_slice<T: Elem>(s: &mut [T]) -> Option<&mut [f64]> {
    if T::DTYPE == DType::Float64 {
        // SAFETY: T is f64 (DTYPE is unique per implementing type), so the layouts are identical.
        Some(unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f64, s.len()) })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(dist: Dist, shape: &[u64], region: &Region) -> Vec<f64> {
        let mut out = vec![0.0; region.len() as usize];
        fill_region(&dist, 7, shape, region, &mut out);
        out
    }

    #[test]
    fn values_do_not_depend_on_the_region_they_are_generated_in() {
        for dist in [Dist::Uniform { low: -1.0, high: 3.0 }, Dist::Normal { mean: 1.0, std: 2.0 }] {
            let shape = [7u64, 9];
            let whole = gen(dist, &shape, &Region::full(&shape));
            // odd offsets and lengths exercise the unpaired ends of Box–Muller
            let part = gen(dist, &shape, &Region::new(vec![2, 3], vec![4, 5]));
            for r in 0..4 {
                for c in 0..5 {
                    assert_eq!(part[r * 5 + c].to_bits(), whole[(r + 2) * 9 + c + 3].to_bits());
                }
            }
        }
    }

    #[test]
    fn moments_are_right() {
        let n = 1_000_000u64;
        for (dist, mean, var) in [
            (Dist::Uniform { low: 2.0, high: 4.0 }, 3.0, 4.0f64 / 12.0),
            (Dist::Normal { mean: -1.0, std: 3.0 }, -1.0, 9.0),
        ] {
            let v = gen(dist, &[n], &Region::full(&[n]));
            let m = v.iter().sum::<f64>() / n as f64;
            let s2 = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
            assert!((m - mean).abs() < 0.01 * var.sqrt(), "{dist:?} mean {m}");
            assert!((s2 / var - 1.0).abs() < 0.01, "{dist:?} var {s2}");
        }
    }

    #[test]
    fn integers_stay_in_range_and_cover_it() {
        let mut out = vec![0i8; 10_000];
        fill_region(&Dist::Integers { low: -3, high: 4 }, 1, &[10_000], &Region::full(&[10_000]), &mut out);
        assert!(out.iter().all(|&x| (-3..4).contains(&x)));
        for v in -3..4 {
            assert!(out.contains(&v));
        }
    }

    #[test]
    fn different_seeds_differ() {
        let mut a = vec![0.0f64; 16];
        let mut b = vec![0.0f64; 16];
        let d = Dist::Uniform { low: 0.0, high: 1.0 };
        fill_region(&d, 1, &[16], &Region::full(&[16]), &mut a);
        fill_region(&d, 2, &[16], &Region::full(&[16]), &mut b);
        assert_ne!(a, b);
    }
}
