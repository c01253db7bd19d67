//! Branch-free scalar math written so that a loop over a slice vectorises (no table lookups, no
//! data-dependent branches, no libm calls). Each function is `#[inline(always)]` so that it is
//! compiled inside the runtime-dispatched (`multiversion`) loops of the kernels that use it.
//!
//! Accuracy (tested below against the standard library on 10^6 points): `ln` ≤ 1 ULP on normal
//! positive numbers; the sin/cos kernels ≤ 1 ULP on [-π/4, π/4], and `sincos_2pi` reduces its
//! argument exactly. No fused multiply-add is used, so
//! results are bit-identical on every CPU whatever instruction set the dispatcher picks.

// The constants are fdlibm's, digit for digit, so that they can be checked against the source.
#![allow(clippy::excessive_precision)]

const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
const LG1: f64 = 6.666_666_666_666_735_13e-01;
const LG2: f64 = 3.999_999_999_940_941_908e-01;
const LG3: f64 = 2.857_142_874_366_239_149e-01;
const LG4: f64 = 2.222_219_843_214_978_396e-01;
const LG5: f64 = 1.818_357_216_161_805_012e-01;
const LG6: f64 = 1.531_383_769_920_937_332e-01;
const LG7: f64 = 1.479_819_860_511_658_591e-01;

/// Natural logarithm of a positive, normal, finite `x` (fdlibm's method, without its branches).
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut e = ((bits >> 52) as i64 & 0x7ff) - 1023;
    // mantissa in [1, 2)
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // bring m into [sqrt(2)/2, sqrt(2))
    let big = m > std::f64::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i64;
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let k = e as f64;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

// fdlibm __kernel_sin / __kernel_cos coefficients, valid on [-pi/4, pi/4].
const S1: f64 = -1.666_666_666_666_663_24e-01;
const S2: f64 = 8.333_333_333_322_489_46e-03;
const S3: f64 = -1.984_126_982_985_794_94e-04;
const S4: f64 = 2.755_731_370_707_006_77e-06;
const S5: f64 = -2.505_076_025_340_686_35e-08;
const S6: f64 = 1.589_690_995_211_550_00e-10;
const C1: f64 = 4.166_666_666_666_660_19e-02;
const C2: f64 = -1.388_888_888_887_410_96e-03;
const C3: f64 = 2.480_158_728_947_672_94e-05;
const C4: f64 = -2.755_731_435_139_066_33e-07;
const C5: f64 = 2.087_572_321_298_174_53e-09;
const C6: f64 = -1.135_964_755_778_819_48e-11;

/// sin(a) for |a| ≤ pi/4.
#[inline(always)]
pub fn sin_kernel(a: f64) -> f64 {
    let z = a * a;
    let v = z * a;
    let r = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)));
    a + v * (S1 + z * r)
}

/// cos(a) for |a| ≤ pi/4.
#[inline(always)]
pub fn cos_kernel(a: f64) -> f64 {
    let z = a * a;
    let r = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
    let hz = 0.5 * z;
    let w = 1.0 - hz;
    w + (((1.0 - w) - hz) + z * r)
}

/// fdlibm's __kernel_sin(x, y, 1): sin(x + y) for |x + y| ≤ pi/4, y the tail of the reduced argument.
#[inline(always)]
pub fn sin_kernel_tail(x: f64, y: f64) -> f64 {
    let z = x * x;
    let v = z * x;
    let r = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)));
    x - ((z * (0.5 * y - v * r) - y) - v * S1)
}

/// fdlibm's __kernel_cos(x, y) (the FreeBSD form without branches).
#[inline(always)]
pub fn cos_kernel_tail(x: f64, y: f64) -> f64 {
    let z = x * x;
    let r = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
    let hz = 0.5 * z;
    let w = 1.0 - hz;
    w + (((1.0 - w) - hz) + (z * r - x * y))
}

/// [`sin_kernel_tail`] when `sin`, else [`cos_kernel_tail`], bit for bit, evaluating one
/// polynomial instead of both: its coefficients are picked per element (the sine's five-term
/// polynomial is the cosine's six-term one with a zero last coefficient, and `S6 + z·0 == S6`),
/// which a vectorised loop does with blends.
#[inline(always)]
pub fn sin_or_cos_tail(x: f64, y: f64, sin: bool) -> f64 {
    let k = |s: f64, c: f64| if sin { s } else { c };
    let z = x * x;
    let p = k(S2, C1) + z * (k(S3, C2) + z * (k(S4, C3) + z * (k(S5, C4) + z * (k(S6, C5) + z * k(0.0, C6)))));
    // sine: x - ((z·(y/2 - v·r) - y) - v·S1) with v = z·x, r = p
    let v = z * x;
    let s = x - ((z * (0.5 * y - v * p) - y) - v * S1);
    // cosine: w + (((1 - w) - z/2) + (z·r - x·y)) with r = z·p
    let hz = 0.5 * z;
    let w = 1.0 - hz;
    let c = w + (((1.0 - w) - hz) + (z * (z * p) - x * y));
    k(s, c)
}

// pi/2 split in 33-bit pieces (fdlibm's __ieee754_rem_pio2 medium path).
const INVPIO2: f64 = std::f64::consts::FRAC_2_PI;
const PIO2_1: f64 = 1.570_796_326_734_125_614_17e+00;
const PIO2_2: f64 = 6.077_100_506_303_965_976_60e-11;
const PIO2_3: f64 = 2.022_266_248_711_166_455_80e-21;
const PIO2_3T: f64 = 8.478_427_660_368_899_569_97e-32;

/// Largest |x| for which [`reduce_pio2`] is exact enough (fdlibm's medium range: 2^20 · pi/2).
pub const TRIG_FAST_LIMIT: f64 = 1_647_099.0;

/// Knuth's TwoSum: s + e == a + b exactly.
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// x = n·pi/2 + (y0 + y1) with |y0 + y1| ≤ pi/4, for |x| ≤ [`TRIG_FAST_LIMIT`]. Returns (n mod 4 as a
/// float in 0..4, y0, y1). Cody–Waite reduction with pi/2 in 33-bit pieces: `n·PIO2_1` and
/// `x - n·PIO2_1` are exact for |n| ≤ 2^20, and the two following subtractions carry their rounding
/// errors (TwoSum) into the tail, so no branch is needed for arguments close to multiples of pi/2.
#[inline(always)]
pub fn reduce_pio2(x: f64) -> (f64, f64, f64) {
    let n = (x * INVPIO2).round_ties_even();
    let r1 = x - n * PIO2_1;
    let (r2, e2) = two_sum(r1, -(n * PIO2_2));
    let (r3, e3) = two_sum(r2, -(n * PIO2_3));
    let w = n * PIO2_3T - e2 - e3;
    let y0 = r3 - w;
    let y1 = (r3 - y0) - w;
    let q = n - 4.0 * (n * 0.25).floor();
    (q, y0, y1)
}

/// cos(x) for |x| ≤ [`TRIG_FAST_LIMIT`] (NaN in, NaN out).
#[inline(always)]
pub fn cos_fast(x: f64) -> f64 {
    let (q, y0, y1) = reduce_pio2(x);
    // q = 0: c, 1: -s, 2: -c, 3: s
    let v = sin_or_cos_tail(y0, y1, q == 1.0 || q == 3.0);
    if q == 1.0 || q == 2.0 {
        -v
    } else {
        v
    }
}

/// sin(x) for |x| ≤ [`TRIG_FAST_LIMIT`].
#[inline(always)]
pub fn sin_fast(x: f64) -> f64 {
    let (q, y0, y1) = reduce_pio2(x);
    // q = 0: s, 1: c, 2: -s, 3: -c
    let v = sin_or_cos_tail(y0, y1, q == 0.0 || q == 2.0);
    let v = if q == 2.0 || q == 3.0 { -v } else { v };
    // the reduction loses the sign of -0.0
    if x == 0.0 {
        x
    } else {
        v
    }
}

// fdlibm __ieee754_exp
const EXP_LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
const EXP_LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
const INVLN2: f64 = std::f64::consts::LOG2_E;
const P1: f64 = 1.666_666_666_666_660_190_37e-01;
const P2: f64 = -2.777_777_777_701_559_338_42e-03;
const P3: f64 = 6.613_756_321_437_934_361_17e-05;
const P4: f64 = -1.653_390_220_546_525_153_90e-06;
const P5: f64 = 4.138_136_797_057_238_460_39e-08;

/// Range on which [`exp_fast`] gives a normal result without special cases.
pub const EXP_FAST_MIN: f64 = -708.0;
pub const EXP_FAST_MAX: f64 = 709.0;

/// e^x for x in [[`EXP_FAST_MIN`], [`EXP_FAST_MAX`]].
#[inline(always)]
pub fn exp_fast(x: f64) -> f64 {
    let k = (x * INVLN2).round_ties_even();
    let hi = x - k * EXP_LN2_HI;
    let lo = k * EXP_LN2_LO;
    let r = hi - lo;
    let t = r * r;
    let c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    // y · 2^k, k in [-1022, 1023] here; split in two factors so that 2^k never leaves the normal range
    let k1 = (k * 0.5).floor();
    let k2 = k - k1;
    y * pow2(k1) * pow2(k2)
}

/// 2^k for an integral float k in [-1022, 1023].
#[inline(always)]
fn pow2(k: f64) -> f64 {
    f64::from_bits(((k + 1023.0) as u64) << 52)
}

/// (sin 2πu, cos 2πu) for u in [0, 1). The reduction to an octant is exact: 4u and its nearest
/// integer q are exact in binary floating point, so only the polynomial rounds.
#[inline(always)]
pub fn sincos_2pi(u: f64) -> (f64, f64) {
    let x = u * 4.0;
    let q = (x + 0.5).floor();
    let t = x - q; // in [-0.5, 0.5]
    let a = t * std::f64::consts::FRAC_PI_2; // in [-pi/4, pi/4]
    let s = sin_kernel(a);
    let c = cos_kernel(a);
    // quadrant tests on the float q (0..=4, where 4 is 0 again): no float→int conversion, which
    // would keep the loop from vectorising
    let swap = q == 1.0 || q == 3.0;
    let (s1, c1) = if swap { (c, s) } else { (s, c) };
    let sin_neg = q == 2.0 || q == 3.0;
    let cos_neg = q == 1.0 || q == 2.0;
    (if sin_neg { -s1 } else { s1 }, if cos_neg { -c1 } else { c1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        if a == b {
            return 0;
        }
        let (x, y) = (a.to_bits() as i64, b.to_bits() as i64);
        if (x < 0) != (y < 0) {
            // values of different sign: count through zero
            return (x & i64::MAX) as u64 + (y & i64::MAX) as u64;
        }
        x.abs_diff(y)
    }

    #[test]
    fn ln_within_one_ulp_of_std() {
        let mut worst = 0;
        let mut u = 1e-300f64;
        for i in 0..1_000_000u64 {
            let x = if i % 2 == 0 { u } else { (i as f64) * 1.37e-6 + 1e-9 };
            worst = worst.max(ulps(ln(x), x.ln()));
            u *= 1.0007;
        }
        assert!(worst <= 1, "worst ln error {worst} ulp");
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn sin_cos_kernels_within_one_ulp_on_the_octant() {
        let mut worst = 0;
        for i in 0..=1_000_000i64 {
            let a = (i - 500_000) as f64 / 500_000.0 * std::f64::consts::FRAC_PI_4;
            worst = worst.max(ulps(sin_kernel(a), a.sin())).max(ulps(cos_kernel(a), a.cos()));
        }
        assert!(worst <= 1, "worst kernel error {worst} ulp");
    }

    #[test]
    fn shared_polynomial_is_bit_identical_to_both_kernels() {
        let mut state = 11u64;
        for i in 0..1_000_000u64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let x = (u - 0.5) * std::f64::consts::FRAC_PI_2;
            let y = if i % 3 == 0 { 0.0 } else { (u - 0.5) * 1e-17 };
            assert_eq!(sin_or_cos_tail(x, y, true).to_bits(), sin_kernel_tail(x, y).to_bits(), "sin x={x} y={y}");
            assert_eq!(sin_or_cos_tail(x, y, false).to_bits(), cos_kernel_tail(x, y).to_bits(), "cos x={x} y={y}");
        }
    }

    #[test]
    fn sincos_2pi_quadrants_match_std() {
        for i in 0..1_000_000u64 {
            let u = i as f64 / 1_000_000.0;
            let (s, c) = sincos_2pi(u);
            let a = 2.0 * std::f64::consts::PI * u;
            // std's own argument 2πu is rounded (≤ 7e-16 absolute), hence the tolerance
            assert!((s - a.sin()).abs() < 1.5e-15 && (c - a.cos()).abs() < 1.5e-15, "u={u}");
        }
        assert_eq!(sincos_2pi(0.0), (0.0, 1.0));
        assert_eq!(sincos_2pi(0.25), (1.0, 0.0));
        assert_eq!(sincos_2pi(0.5), (0.0, -1.0));
    }

    #[test]
    fn cos_sin_fast_within_one_ulp_of_libm() {
        let mut worst = (0, 0.0);
        let mut state = 7u64;
        for i in 0..2_000_000u64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            // half the points in [-10, 10], the rest spread up to the fast limit
            let x = if i % 2 == 0 { (u - 0.5) * 20.0 } else { (u - 0.5) * 2.0 * TRIG_FAST_LIMIT };
            for (got, want) in [(cos_fast(x), x.cos()), (sin_fast(x), x.sin())] {
                let e = ulps(got, want);
                if e > worst.0 {
                    worst = (e, x);
                }
            }
        }
        assert!(worst.0 <= 1, "worst trig error {} ulp at x = {}", worst.0, worst.1);
        assert!(cos_fast(f64::NAN).is_nan());
        assert_eq!(cos_fast(0.0), 1.0);
        assert_eq!(sin_fast(-0.0).to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn exp_fast_within_one_ulp_of_libm() {
        let mut worst = (0, 0.0);
        for i in 0..2_000_000u64 {
            let x = EXP_FAST_MIN + (EXP_FAST_MAX - EXP_FAST_MIN) * (i as f64 / 2_000_000.0);
            let e = ulps(exp_fast(x), x.exp());
            if e > worst.0 {
                worst = (e, x);
            }
            let x = (i as f64 / 1_000_000.0) - 1.0;
            let e = ulps(exp_fast(x), x.exp());
            if e > worst.0 {
                worst = (e, x);
            }
        }
        assert!(worst.0 <= 1, "worst exp error {} ulp at x = {}", worst.0, worst.1);
        assert_eq!(exp_fast(0.0), 1.0);
    }
}
