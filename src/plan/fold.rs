//! Constant folding: work whose result is known without computing any element.
//!
//! dsk's `ones`, `zeros` and `full` generators and Python literals are constants. Folded, in plan
//! order (so chains fold through):
//!
//! - an element-wise operation whose operands are all constants is the constant it gives —
//!   computed once, by the kernel that would compute every element, from the values every element
//!   would hold, so its bits are theirs. Only operations whose kernels give the same bits for a
//!   value wherever it lies in a tile are folded: arithmetic, comparisons, `where`, `minimum`,
//!   `maximum`, `clip`, `abs`, `sign`, `floor`, `ceil`, `round`, `sqrt`, `hypot`, `isnan`,
//!   `isfinite` (IEEE operations, correctly rounded). `sin`, `exp`, `log` and the other
//!   transcendental functions and `**` are left to compute (their vectorised kernels and the C
//!   library's may differ in the last bit, and which one a value meets depends on its tile);
//! - a selection, transpose, rechunk or cast of a constant is a constant of the new shape (a cast
//!   converts the value as every element would be converted);
//! - a reduction of a constant over `n` elements (`n` ≥ 1) becomes the state the reduction's tiles
//!   and merges would reach, finalised by the same code ([`reduce::finalize`]), where that state
//!   is exact whatever the order of summation:
//!   - `sum`, `mean` (and `nansum`, `nanmean`): integers always (wrapping sums are associative);
//!     floats when the value `c = m·2^e` (m odd) is finite and `n·|m| ≤ 2^53` — every partial sum
//!     `k·c` is then exact in float64, so pairwise and tree orders give the same `n·c`;
//!   - `var`, `std` (and nan…): under the same condition, each tile's mean is exactly `c` and its
//!     squared deviations exactly 0, so the state is `(n, c, 0)`;
//!   - `min`, `max`, `argmin` (0), `argmax` (0), `any`, `all`, `count_nonzero`: always (not NaN,
//!     whose payload is not promised);
//!   - `prod`: integers always (wrapping powers); floats for 1, -1 and +0 only.
//!
//!   Anything else (sums of 0.1 over many elements, NaN, -0.0 products) is computed element by
//!   element as before.
//!
//! The same rules fold tiles while a task runs: a tile whose source chunks were never written (they
//! read as the fill value) is a constant too; `exec::evaluate::Evaluator::constant` pushes the
//! fill value through the expression with [`map_value`] and [`cast_value`], and a reduction takes
//! the tile's partial from [`tile_partial`] under the conditions above for the tile's elements.
//!
//! `DSK_NO_FOLD=1` in the environment turns folding off: the tests compare both ways bit for bit,
//! and the benchmark can measure what folding saves.

use super::{Node, NodeKind, Plan};
use crate::dtype::{DType, Elem};
use crate::grid::tuple;
use crate::kernels::buf::{Buf, BufElem};
use crate::kernels::elementwise::{self, MapOp};
use crate::kernels::generate::{Generator, ScalarRepr};
use crate::kernels::reduce::{self, Partial, ReduceOp};
use crate::{with_buf, with_dtype};

/// Whether folding is on (`DSK_NO_FOLD` unset).
pub fn enabled() -> bool {
    std::env::var_os("DSK_NO_FOLD").is_none()
}

/// Fold `plan`'s constant nodes in place (see the module documentation); the nodes they no longer
/// need are left for [`super::prune`].
pub fn fold(plan: &mut Plan) {
    for id in 0..plan.nodes.len() {
        if let Some(value) = folded(&plan.nodes, id) {
            let n = &mut plan.nodes[id];
            n.label = format!("full({}, {})", tuple(&n.shape), text(value));
            n.kind = NodeKind::Gen { gen: Generator::Const(value) };
            n.weak = None;
        }
    }
}

fn text(v: ScalarRepr) -> String {
    match v {
        ScalarRepr::Bool(b) => if b { "True" } else { "False" }.to_string(),
        ScalarRepr::Int(i) => i.to_string(),
        ScalarRepr::Uint(u) => u.to_string(),
        ScalarRepr::Float(f) => {
            let mut s = String::new();
            f.write_text(&mut s);
            s
        }
    }
}

/// The constant value of node `id`, if it has one (a literal or a constant generator).
fn constant(nodes: &[Node], id: usize) -> Option<ScalarRepr> {
    match &nodes[id].kind {
        NodeKind::Const { value } => Some(*value),
        NodeKind::Gen { gen: Generator::Const(v) } => Some(*v),
        _ => None,
    }
}

/// A 0-d buffer of `dtype` holding `v` as a constant node of that dtype holds it.
fn scalar(v: ScalarRepr, dtype: DType) -> Buf {
    with_dtype!(dtype, T => Buf::scalar(T::from_scalar(v.into())))
}

/// The value of a 0-d buffer.
fn value_of(b: &Buf) -> Option<ScalarRepr> {
    with_buf!(b, T, a => a.iter().next().map(|v| ScalarRepr::from(v.to_scalar())))
}

/// Operations whose kernels give a value the same bits wherever it lies in a tile.
pub fn foldable(op: MapOp) -> bool {
    use MapOp::*;
    !op.is_float_function() || matches!(op, Div | Sqrt | Hypot)
}

/// The value of `op` (computed in `compute`, given as `out`) of constant operands (value, dtype):
/// what the kernel gives every element. `None` for operations that are not folded.
pub fn map_value(op: MapOp, compute: DType, out: DType, args: &[(ScalarRepr, DType)]) -> Option<ScalarRepr> {
    if !foldable(op) {
        return None;
    }
    let vals: Vec<Buf> = args
        .iter()
        .enumerate()
        .map(|(pos, &(v, dtype))| {
            // as the evaluator converts them: where's condition to bool, the rest to `compute`
            let want = if op == MapOp::Where && pos == 0 { DType::Bool } else { compute };
            scalar(v, dtype).cast(want)
        })
        .collect();
    let got = with_dtype!(compute, T => elementwise::apply::<T>(op, &vals, &[])).ok()?;
    value_of(&got.cast(out))
}

/// A constant of dtype `from` converted to `to` as every element would be.
pub fn cast_value(v: ScalarRepr, from: DType, to: DType) -> Option<ScalarRepr> {
    value_of(&scalar(v, from).cast(to))
}

/// What node `id` folds to, if it does.
fn folded(nodes: &[Node], id: usize) -> Option<ScalarRepr> {
    let node = &nodes[id];
    match &node.kind {
        NodeKind::Map { op, args, compute } if foldable(*op) => {
            let vals = args.iter().map(|&a| Some((constant(nodes, a)?, nodes[a].dtype))).collect::<Option<Vec<_>>>()?;
            map_value(*op, *compute, node.dtype, &vals)
        }
        NodeKind::Index { arg, .. } | NodeKind::Transpose { arg, .. } | NodeKind::Rechunk { arg } => {
            // a literal keeps its own typing; a selection of one is not built anyway
            let a = &nodes[*arg];
            let v = constant(nodes, *arg)?;
            (a.weak.is_none() && a.dtype == node.dtype).then_some(v)
        }
        NodeKind::Astype { arg } => cast_value(constant(nodes, *arg)?, nodes[*arg].dtype, node.dtype),
        NodeKind::Reduce { arg, op, axes, ddof, .. } => {
            let a = &nodes[*arg];
            let c = constant(nodes, *arg)?;
            let n: u64 = axes.iter().map(|&k| a.shape[k]).product();
            reduction(*op, a.dtype, c, n, *ddof)
        }
        _ => None,
    }
}

/// Whether every partial sum `k·c` (k ≤ n) is exact in float64: `c = m·2^e` with `n·|m| ≤ 2^53`.
fn exact_multiples(c: f64, n: u64) -> bool {
    if !c.is_finite() || n >= 1 << 53 {
        return false;
    }
    if c == 0.0 {
        return true;
    }
    let bits = c.to_bits();
    let exp = (bits >> 52) & 0x7ff;
    let frac = bits & ((1 << 52) - 1);
    let m = if exp == 0 { frac } else { frac | (1 << 52) };
    let odd = m >> m.trailing_zeros();
    (odd as u128) * (n as u128) <= 1u128 << 53 && (n as f64 * c).is_finite()
}

/// The result of reducing `n` (≥ 1) elements all equal to `c` (of `input` dtype), when its closed
/// form is exactly what computing them gives.
fn reduction(op: ReduceOp, input: DType, c: ScalarRepr, n: u64, ddof: f64) -> Option<ScalarRepr> {
    let comps = state(op, input, c, n, 0)?;
    let out = reduce::finalize(op, input, &Partial { comps }, ddof).ok()?;
    value_of(&out)
}

/// The partial a tile of `shape` (at `start` of an array of `gshape`) whose elements all equal `c`
/// reduces to over `axes`: the components [`reduce::reduce_tile`] computes from its elements, where
/// their closed form is exactly those (see the module documentation), else `None`.
pub fn tile_partial(
    op: ReduceOp,
    input: DType,
    c: ScalarRepr,
    shape: &[usize],
    axes: &[usize],
    start: &[u64],
    gshape: &[u64],
) -> Option<Partial> {
    let n: u64 = axes.iter().map(|&a| shape[a] as u64).product();
    let kshape: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).map(|a| shape[a]).collect();
    if kshape.contains(&0) {
        return None;
    }
    // an arg reduction's index of the tile's first element, raveled over the reduced axes
    let gstrides = crate::grid::strides(&axes.iter().map(|&a| gshape[a]).collect::<Vec<_>>());
    let first: u64 = axes.iter().zip(&gstrides).map(|(&a, s)| start[a] * s).sum();
    let comps = state(op, input, c, n, first as i64)?;
    Some(Partial {
        comps: comps.iter().map(|b| with_buf!(b, T, a => T::wrap(elementwise::materialize(a, &kshape)))).collect(),
    })
}

/// The 0-d state of a reduction of `n` elements equal to `c` (an arg reduction's first element
/// at index `first`), as reducing them element by element makes it, if the closed form is exact.
fn state(op: ReduceOp, input: DType, c: ScalarRepr, n: u64, first: i64) -> Option<Vec<Buf>> {
    use ReduceOp::*;
    if n == 0 {
        return None;
    }
    let cv = scalar(c, input);
    let f = with_buf!(&cv, T, a => a.iter().next().map(|v| v.to_f64()))?;
    if f.is_nan() {
        return None;
    }
    let nf = n as f64;
    let f64s = |v: f64| Buf::scalar(v);
    Some(match op {
        Sum | NanSum | Prod | NanProd => {
            let prod = matches!(op, Prod | NanProd);
            let acc = reduce::acc_dtype(input);
            if input.is_float() {
                let v = if prod {
                    match f {
                        1.0 => 1.0,
                        -1.0 => {
                            if n.is_multiple_of(2) {
                                1.0
                            } else {
                                -1.0
                            }
                        }
                        0.0 if f.is_sign_positive() => 0.0,
                        _ => return None,
                    }
                } else if exact_multiples(f, n) {
                    0.0 + nf * f
                } else {
                    return None;
                };
                vec![f64s(v)]
            } else if acc == DType::Uint64 {
                let x = with_buf!(&cv, T, a => a.iter().next().map(|v| v.to_u64()))?;
                let v = if prod { wrapping_pow_u(x, n) } else { x.wrapping_mul(n) };
                vec![Buf::scalar(v)]
            } else {
                let x = with_buf!(&cv, T, a => a.iter().next().map(|v| v.to_i64()))?;
                let v = if prod { wrapping_pow_i(x, n) } else { x.wrapping_mul(n as i64) };
                vec![Buf::scalar(v)]
            }
        }
        Mean | NanMean => {
            if !exact_multiples(f, n) {
                return None;
            }
            vec![f64s(0.0 + nf * f), f64s(nf)]
        }
        Var | Std | NanVar | NanStd => {
            if !exact_multiples(f, n) {
                return None;
            }
            vec![f64s(nf), f64s(f), f64s(0.0)]
        }
        Min | Max | NanMin | NanMax => vec![cv],
        Argmin | Argmax => vec![cv, Buf::scalar(first)],
        Any | All => vec![cv.cast(DType::Bool)],
        CountNonzero => vec![Buf::scalar(if f != 0.0 { n as i64 } else { 0 })],
    })
}

fn wrapping_pow_i(mut base: i64, mut e: u64) -> i64 {
    let mut r: i64 = 1;
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    r
}

fn wrapping_pow_u(mut base: u64, mut e: u64) -> u64 {
    let mut r: u64 = 1;
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_multiples_follow_the_mantissa() {
        assert!(exact_multiples(1.0, 1 << 52));
        assert!(exact_multiples(0.5, 1000));
        assert!(!exact_multiples(0.1, 3)); // 0.1's mantissa is odd and 53 bits long
        assert!(exact_multiples(3.0, 1 << 51));
        assert!(!exact_multiples(3.0, 1 << 52));
        assert!(!exact_multiples(f64::INFINITY, 2));
        assert!(!exact_multiples(f64::MAX, 2));
        assert!(exact_multiples(-0.0, 10));
    }

    #[test]
    fn integer_powers_wrap() {
        assert_eq!(wrapping_pow_i(3, 5), 243);
        assert_eq!(wrapping_pow_i(-2, 63), i64::MIN);
        assert_eq!(wrapping_pow_i(2, 64), 0);
        assert_eq!(wrapping_pow_u(3, 0), 1);
    }
}
