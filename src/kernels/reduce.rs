//! Reductions as partial states that merge: map over tiles (partial), combine partials pairwise or
//! in groups (combine), then finalize. Every state is a list of component arrays of the reduced
//! (kept-axes) shape, so partials can be stored, spilled to Zarr and merged elementwise.
//!
//! | op | state | finalize |
//! |---|---|---|
//! | sum, nansum, prod, nanprod | accumulator (int64, uint64 or float64) | cast to the result dtype |
//! | mean, nanmean | (sum, count) in float64 | sum / count |
//! | var, std, nanvar, nanstd | (count, mean, M2) in float64, merged with Chan's formula | M2 / (count − ddof), √ |
//! | min, max, nanmin, nanmax | value | — |
//! | argmin, argmax | (value, global index) | index |
//! | any, all | bool | — |
//! | count_nonzero | int64 | — |
//!
//! Float sums inside a tile are pairwise (as NumPy's), so the sum of 8×10⁸ float64 ones is exact.
//! NaN and infinities follow NumPy: a chunk's M2 is computed in two passes from its own mean, so an
//! infinity makes M2 NaN (NumPy's `var` of data holding `inf` is NaN) and the merge propagates it;
//! means are sum/count, so `nanmean` of data holding `+inf` is `+inf`.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use super::buf::{Buf, BufElem};
use super::elementwise::NumElem;
use crate::dtype::{DType, Elem};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ReduceOp {
    Sum,
    Prod,
    Mean,
    Min,
    Max,
    Var,
    Std,
    Argmin,
    Argmax,
    Any,
    All,
    CountNonzero,
    NanSum,
    NanProd,
    NanMean,
    NanMin,
    NanMax,
    NanVar,
    NanStd,
}

pub const ALL_REDUCE_OPS: [ReduceOp; 19] = [
    ReduceOp::Sum,
    ReduceOp::Prod,
    ReduceOp::Mean,
    ReduceOp::Min,
    ReduceOp::Max,
    ReduceOp::Var,
    ReduceOp::Std,
    ReduceOp::Argmin,
    ReduceOp::Argmax,
    ReduceOp::Any,
    ReduceOp::All,
    ReduceOp::CountNonzero,
    ReduceOp::NanSum,
    ReduceOp::NanProd,
    ReduceOp::NanMean,
    ReduceOp::NanMin,
    ReduceOp::NanMax,
    ReduceOp::NanVar,
    ReduceOp::NanStd,
];

/// The shape of a reduction's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Acc,
    MeanState,
    Moments,
    Extreme,
    Arg,
    Logic,
    Count,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        use ReduceOp::*;
        match self {
            Sum => "sum",
            Prod => "prod",
            Mean => "mean",
            Min => "min",
            Max => "max",
            Var => "var",
            Std => "std",
            Argmin => "argmin",
            Argmax => "argmax",
            Any => "any",
            All => "all",
            CountNonzero => "count_nonzero",
            NanSum => "nansum",
            NanProd => "nanprod",
            NanMean => "nanmean",
            NanMin => "nanmin",
            NanMax => "nanmax",
            NanVar => "nanvar",
            NanStd => "nanstd",
        }
    }

    pub fn parse(name: &str) -> Option<ReduceOp> {
        ALL_REDUCE_OPS.iter().copied().find(|o| o.name() == name)
    }

    fn kind(self) -> Kind {
        use ReduceOp::*;
        match self {
            Sum | Prod | NanSum | NanProd => Kind::Acc,
            Mean | NanMean => Kind::MeanState,
            Var | Std | NanVar | NanStd => Kind::Moments,
            Min | Max | NanMin | NanMax => Kind::Extreme,
            Argmin | Argmax => Kind::Arg,
            Any | All => Kind::Logic,
            CountNonzero => Kind::Count,
        }
    }

    fn skips_nan(self) -> bool {
        use ReduceOp::*;
        matches!(self, NanSum | NanProd | NanMean | NanMin | NanMax | NanVar | NanStd)
    }

    pub fn takes_ddof(self) -> bool {
        self.kind() == Kind::Moments
    }

    /// Arg-reductions take one axis or all of them (as NumPy's).
    pub fn is_arg(self) -> bool {
        self.kind() == Kind::Arg
    }

    /// min/max and arg-reductions have no identity: they refuse empty inputs, as NumPy does.
    pub fn needs_elements(self) -> bool {
        matches!(self.kind(), Kind::Extreme | Kind::Arg)
    }

    /// NumPy's result dtype.
    pub fn result_dtype(self, input: DType) -> DType {
        match self.kind() {
            Kind::Acc => acc_dtype(input),
            Kind::MeanState | Kind::Moments => {
                if input.is_float() {
                    input
                } else {
                    DType::Float64
                }
            }
            Kind::Extreme => input,
            Kind::Arg | Kind::Count => DType::Int64,
            Kind::Logic => DType::Bool,
        }
    }

    /// The dtypes of the state components for an input of `input` dtype.
    pub fn state_dtypes(self, input: DType) -> Vec<DType> {
        match self.kind() {
            Kind::Acc => vec![state_acc(input)],
            Kind::MeanState => vec![DType::Float64, DType::Float64],
            Kind::Moments => vec![DType::Float64; 3],
            Kind::Extreme => vec![input],
            Kind::Arg => vec![input, DType::Int64],
            Kind::Logic => vec![DType::Bool],
            Kind::Count => vec![DType::Int64],
        }
    }
}

/// NumPy's accumulator for sums and products: int64 for bool and signed ints, uint64 for unsigned,
/// the float type itself for floats.
pub fn acc_dtype(input: DType) -> DType {
    if input.is_float() {
        input
    } else if input.is_unsigned_int() {
        DType::Uint64
    } else {
        DType::Int64
    }
}

/// What dsk accumulates in: float sums in float64 even for float32 (then rounded once).
fn state_acc(input: DType) -> DType {
    if input.is_float() {
        DType::Float64
    } else {
        acc_dtype(input)
    }
}

/// A partial reduction: component arrays of the kept shape.
#[derive(Clone, Debug)]
pub struct Partial {
    pub comps: Vec<Buf>,
}

/// Pairwise sum of `f(x)` over a slice, NumPy's blocking (8 accumulators below 128 elements).
#[inline]
fn pairwise<T: Copy>(x: &[T], f: &impl Fn(T) -> f64) -> f64 {
    let n = x.len();
    if n < 8 {
        let mut s = 0.0;
        for &v in x {
            s += f(v);
        }
        return s;
    }
    if n <= 128 {
        let mut r = [0.0f64; 8];
        let chunks = x.chunks_exact(8);
        let rem = chunks.remainder();
        for c in chunks {
            for (ri, &v) in r.iter_mut().zip(c) {
                *ri += f(v);
            }
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in rem {
            s += f(v);
        }
        return s;
    }
    let half = (n / 2) / 8 * 8;
    pairwise(&x[..half], f) + pairwise(&x[half..], f)
}

/// Reduce a C-order matrix of `k` rows × `r` columns row by row. `index` maps (row, column) to the
/// element's global index (for arg-reductions).
fn reduce_rows<T: NumElem>(
    op: ReduceOp,
    data: &[T],
    k: usize,
    r: usize,
    index: &dyn Fn(usize, usize) -> i64,
) -> Partial {
    use ReduceOp::*;
    let skip = op.skips_nan();
    let rows = || (0..k).map(|i| &data[i * r..(i + 1) * r]);
    let isnan = |v: T| T::is_nan(v);
    let comps = match op.kind() {
        Kind::Acc => {
            let prod = matches!(op, Prod | NanProd);
            match state_acc(T::DTYPE) {
                DType::Float64 => {
                    let v: Vec<f64> = rows()
                        .map(|row| {
                            if prod {
                                row.iter().fold(1.0, |a, &x| if skip && isnan(x) { a } else { a * x.to_f64() })
                            } else if skip {
                                pairwise(row, &|x: T| if isnan(x) { 0.0 } else { x.to_f64() })
                            } else {
                                pairwise(row, &|x: T| x.to_f64())
                            }
                        })
                        .collect();
                    vec![Buf::from_vec(&[k], v)]
                }
                DType::Uint64 => {
                    let v: Vec<u64> = rows()
                        .map(|row| {
                            if prod {
                                row.iter().fold(1u64, |a, &x| a.wrapping_mul(x.to_u64()))
                            } else {
                                row.iter().fold(0u64, |a, &x| a.wrapping_add(x.to_u64()))
                            }
                        })
                        .collect();
                    vec![Buf::from_vec(&[k], v)]
                }
                _ => {
                    let v: Vec<i64> = rows()
                        .map(|row| {
                            if prod {
                                row.iter().fold(1i64, |a, &x| a.wrapping_mul(x.to_i64()))
                            } else {
                                row.iter().fold(0i64, |a, &x| a.wrapping_add(x.to_i64()))
                            }
                        })
                        .collect();
                    vec![Buf::from_vec(&[k], v)]
                }
            }
        }
        Kind::MeanState => {
            let mut sums = Vec::with_capacity(k);
            let mut counts = Vec::with_capacity(k);
            for row in rows() {
                if skip {
                    sums.push(pairwise(row, &|x: T| if isnan(x) { 0.0 } else { x.to_f64() }));
                    counts.push(row.iter().filter(|&&x| !isnan(x)).count() as f64);
                } else {
                    sums.push(pairwise(row, &|x: T| x.to_f64()));
                    counts.push(row.len() as f64);
                }
            }
            vec![Buf::from_vec(&[k], sums), Buf::from_vec(&[k], counts)]
        }
        Kind::Moments => {
            let (mut ns, mut means, mut m2s) = (Vec::with_capacity(k), Vec::with_capacity(k), Vec::with_capacity(k));
            for row in rows() {
                let (n, s) = if skip {
                    (
                        row.iter().filter(|&&x| !isnan(x)).count() as f64,
                        pairwise(row, &|x: T| if isnan(x) { 0.0 } else { x.to_f64() }),
                    )
                } else {
                    (row.len() as f64, pairwise(row, &|x: T| x.to_f64()))
                };
                let mean = if n > 0.0 { s / n } else { 0.0 };
                let m2 = if skip {
                    pairwise(row, &|x: T| {
                        if isnan(x) {
                            0.0
                        } else {
                            let d = x.to_f64() - mean;
                            d * d
                        }
                    })
                } else {
                    pairwise(row, &|x: T| {
                        let d = x.to_f64() - mean;
                        d * d
                    })
                };
                ns.push(n);
                means.push(mean);
                m2s.push(m2);
            }
            vec![Buf::from_vec(&[k], ns), Buf::from_vec(&[k], means), Buf::from_vec(&[k], m2s)]
        }
        Kind::Extreme => {
            let min = matches!(op, Min | NanMin);
            let v: Vec<T> = rows().map(|row| extreme_row(row, min, skip)).collect();
            vec![Buf::from_vec(&[k], v)]
        }
        Kind::Arg => {
            let min = op == Argmin;
            let mut vals = Vec::with_capacity(k);
            let mut idxs = Vec::with_capacity(k);
            for (i, row) in rows().enumerate() {
                let mut best = 0;
                for (j, &x) in row.iter().enumerate().skip(1) {
                    if better(x, row[best], min) {
                        best = j;
                    }
                }
                vals.push(row[best]);
                idxs.push(index(i, best));
            }
            vec![Buf::from_vec(&[k], vals), Buf::from_vec(&[k], idxs)]
        }
        Kind::Logic => {
            let v: Vec<bool> = rows()
                .map(|row| {
                    if op == Any {
                        row.iter().any(|&x| x != T::default())
                    } else {
                        row.iter().all(|&x| x != T::default())
                    }
                })
                .collect();
            vec![Buf::from_vec(&[k], v)]
        }
        Kind::Count => {
            let v: Vec<i64> = rows().map(|row| row.iter().filter(|&&x| x != T::default()).count() as i64).collect();
            vec![Buf::from_vec(&[k], v)]
        }
    };
    Partial { comps }
}

/// min/max with NumPy's NaN rules: NaN propagates, unless `skip` (nanmin/nanmax) ignores it.
/// Branch-free (bitwise `&`/`|` on bools, one select) so that a loop over a row vectorises.
#[inline(always)]
/// The min or max of a row, as the sequential fold of [`extreme`] gives it, bit for bit: eight
/// lanes at a time (which vectorises), falling back to the fold where the lanes could pick other
/// bits — a NaN in the row (which NaN wins) or a zero result (+0.0 or −0.0: the first one).
fn extreme_row<T: NumElem>(row: &[T], min: bool, skip: bool) -> T {
    let seq = || row.iter().copied().fold(row[0], |a, x| extreme(a, x, min, skip));
    if row.len() < 32 {
        return seq();
    }
    let mut acc = [row[0]; 8];
    let mut nan = false;
    let chunks = row.chunks_exact(8);
    let rem = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            let x = c[j];
            nan |= T::is_nan(x);
            let beats = if min { x < acc[j] } else { x > acc[j] };
            acc[j] = if beats { x } else { acc[j] };
        }
    }
    for &x in rem {
        nan |= T::is_nan(x);
        let beats = if min { x < acc[0] } else { x > acc[0] };
        acc[0] = if beats { x } else { acc[0] };
    }
    if nan {
        return seq();
    }
    let m = acc.iter().copied().fold(acc[0], |a, x| if (min && x < a) || (!min && x > a) { x } else { a });
    if T::DTYPE.is_float() && m.to_f64() == 0.0 {
        return seq();
    }
    m
}

fn extreme<T: NumElem>(a: T, x: T, min: bool, skip: bool) -> T {
    let (an, xn) = (T::is_nan(a), T::is_nan(x));
    let beats = if min { x < a } else { x > a };
    let take = if skip { an | (!xn & beats) } else { !an & (xn | beats) };
    if take {
        x
    } else {
        a
    }
}

/// Does `x` (later) beat `best` (earlier) for argmin/argmax? The first NaN wins, then the first
/// extreme value.
#[inline]
fn better<T: NumElem>(x: T, best: T, min: bool) -> bool {
    if T::is_nan(best) {
        return false;
    }
    if T::is_nan(x) {
        return true;
    }
    if min {
        x < best
    } else {
        x > best
    }
}

/// Reduce a C-order matrix of `r` rows × `k` columns column by column (the reduced axes lead):
/// rows are folded into per-column states, which vectorises and needs no transposition. Sums add
/// row after row, as NumPy does along a leading axis. `index` maps a row to its global index.
fn reduce_cols<T: NumElem>(
    op: ReduceOp,
    data: &[T],
    r: usize,
    k: usize,
    index: &dyn Fn(usize, usize) -> i64,
) -> Partial {
    use ReduceOp::*;
    let skip = op.skips_nan();
    let rows = || data.chunks_exact(k.max(1)).take(r);
    let comps = match op.kind() {
        Kind::Acc => {
            let prod = matches!(op, Prod | NanProd);
            match state_acc(T::DTYPE) {
                DType::Float64 => {
                    let mut acc = vec![if prod { 1.0 } else { 0.0 }; k];
                    for row in rows() {
                        for (a, &x) in acc.iter_mut().zip(row) {
                            let v = x.to_f64();
                            let v = if skip && v.is_nan() {
                                if prod {
                                    1.0
                                } else {
                                    0.0
                                }
                            } else {
                                v
                            };
                            if prod {
                                *a *= v
                            } else {
                                *a += v
                            }
                        }
                    }
                    vec![Buf::from_vec(&[k], acc)]
                }
                DType::Uint64 => {
                    let mut acc = vec![if prod { 1u64 } else { 0 }; k];
                    for row in rows() {
                        for (a, &x) in acc.iter_mut().zip(row) {
                            *a = if prod { a.wrapping_mul(x.to_u64()) } else { a.wrapping_add(x.to_u64()) };
                        }
                    }
                    vec![Buf::from_vec(&[k], acc)]
                }
                _ => {
                    let mut acc = vec![if prod { 1i64 } else { 0 }; k];
                    for row in rows() {
                        for (a, &x) in acc.iter_mut().zip(row) {
                            *a = if prod { a.wrapping_mul(x.to_i64()) } else { a.wrapping_add(x.to_i64()) };
                        }
                    }
                    vec![Buf::from_vec(&[k], acc)]
                }
            }
        }
        Kind::MeanState | Kind::Moments => {
            let mut sum = vec![0.0f64; k];
            let mut cnt = vec![0.0f64; k];
            for row in rows() {
                for ((s, c), &x) in sum.iter_mut().zip(cnt.iter_mut()).zip(row) {
                    let v = x.to_f64();
                    if !(skip && v.is_nan()) {
                        *s += v;
                        *c += 1.0;
                    }
                }
            }
            if op.kind() == Kind::MeanState {
                vec![Buf::from_vec(&[k], sum), Buf::from_vec(&[k], cnt)]
            } else {
                let mean: Vec<f64> = sum.iter().zip(&cnt).map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 }).collect();
                let mut m2 = vec![0.0f64; k];
                for row in rows() {
                    for ((q, mu), &x) in m2.iter_mut().zip(&mean).zip(row) {
                        let v = x.to_f64();
                        if !(skip && v.is_nan()) {
                            let d = v - mu;
                            *q += d * d;
                        }
                    }
                }
                vec![Buf::from_vec(&[k], cnt), Buf::from_vec(&[k], mean), Buf::from_vec(&[k], m2)]
            }
        }
        Kind::Extreme => {
            let min = matches!(op, Min | NanMin);
            let mut it = rows();
            let mut acc: Vec<T> = it.next().map(|r| r.to_vec()).unwrap_or_default();
            for row in it {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = extreme(*a, x, min, skip);
                }
            }
            vec![Buf::from_vec(&[k], acc)]
        }
        Kind::Arg => {
            let min = op == Argmin;
            let mut it = rows();
            let mut best: Vec<T> = it.next().map(|r| r.to_vec()).unwrap_or_default();
            let mut at = vec![0usize; k];
            for (i, row) in it.enumerate() {
                for ((b, a), &x) in best.iter_mut().zip(at.iter_mut()).zip(row) {
                    if better(x, *b, min) {
                        *b = x;
                        *a = i + 1;
                    }
                }
            }
            let idx: Vec<i64> = at.iter().map(|&i| index(0, i)).collect();
            vec![Buf::from_vec(&[k], best), Buf::from_vec(&[k], idx)]
        }
        Kind::Logic => {
            let any = op == Any;
            let mut acc = vec![!any; k];
            for row in rows() {
                for (a, &x) in acc.iter_mut().zip(row) {
                    let nz = x != T::default();
                    *a = if any { *a | nz } else { *a & nz };
                }
            }
            vec![Buf::from_vec(&[k], acc)]
        }
        Kind::Count => {
            let mut acc = vec![0i64; k];
            for row in rows() {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += (x != T::default()) as i64;
                }
            }
            vec![Buf::from_vec(&[k], acc)]
        }
    };
    Partial { comps }
}

/// Reduce `tile` (an n-d view) over `axes`. `offset` is the tile's position in the whole array and
/// `shape` the whole array's shape (for the global indices of arg-reductions). The partial has the
/// tile's shape without the reduced axes.
pub fn reduce_tile<T: NumElem>(
    op: ReduceOp,
    tile: &ArrayViewD<T>,
    axes: &[usize],
    offset: &[u64],
    shape: &[u64],
) -> Partial {
    let nd = tile.ndim();
    let kept: Vec<usize> = (0..nd).filter(|a| !axes.contains(a)).collect();
    // leading reduced axes over a C-order tile: fold rows, no transposition
    let prefix = !kept.is_empty() && !axes.is_empty() && axes.iter().enumerate().all(|(i, &a)| a == i);
    if let (true, Some(data)) = (prefix, tile.as_slice()) {
        let kshape: Vec<usize> = kept.iter().map(|&a| tile.shape()[a]).collect();
        let rshape: Vec<u64> = axes.iter().map(|&a| tile.shape()[a] as u64).collect();
        let k: usize = kshape.iter().product();
        let r: usize = rshape.iter().product::<u64>() as usize;
        let gshape: Vec<u64> = axes.iter().map(|&a| shape[a]).collect();
        let gstrides = crate::grid::strides(&gshape);
        let index = |_c: usize, i: usize| -> i64 {
            let local = crate::grid::unravel(i as u64, &rshape);
            local.iter().enumerate().map(|(j, &l)| (l + offset[axes[j]]) * gstrides[j]).sum::<u64>() as i64
        };
        let mut p = reduce_cols(op, data, r, k, &index);
        for c in &mut p.comps {
            *c = reshape(c, &kshape);
        }
        return p;
    }
    let mut perm = kept.clone();
    perm.extend_from_slice(axes);
    let moved = tile.view().permuted_axes(IxDyn(&perm));
    let std = moved.as_standard_layout();
    let data = std.as_slice().unwrap_or(&[]);
    let kshape: Vec<usize> = kept.iter().map(|&a| tile.shape()[a]).collect();
    let rshape: Vec<usize> = axes.iter().map(|&a| tile.shape()[a]).collect();
    let k: usize = kshape.iter().product();
    let r: usize = rshape.iter().product();
    // global index of column j of a row: ravel over the reduced axes of the whole array
    let gshape: Vec<u64> = axes.iter().map(|&a| shape[a]).collect();
    let gstrides = crate::grid::strides(&gshape);
    let index = |_row: usize, j: usize| -> i64 {
        let local = crate::grid::unravel(j as u64, &rshape.iter().map(|&x| x as u64).collect::<Vec<_>>());
        local.iter().enumerate().map(|(i, &l)| (l + offset[axes[i]]) * gstrides[i]).sum::<u64>() as i64
    };
    let mut p = reduce_rows(op, data, k, r, &index);
    for c in &mut p.comps {
        *c = reshape(c, &kshape);
    }
    p
}

fn reshape(b: &Buf, shape: &[usize]) -> Buf {
    crate::with_buf!(b, T, a => Buf::from_vec(shape, a.iter().copied().collect::<Vec<T>>()))
}

/// A partial whose components are not what its reduction keeps: a bug upstream, never skipped.
fn mismatch(what: &str, op: ReduceOp, input: DType) -> String {
    format!("{what} of a {} partial over {input} has components of the wrong dtype or shape", op.name())
}

/// Merge `b` into `a` elementwise (`a` holds the earlier elements, for index ties).
pub fn combine(op: ReduceOp, input: DType, a: &mut Partial, b: &Partial) -> Result<(), String> {
    combine_at(op, input, a, b, &[])
}

/// A mutable view of component `c` of `p` restricted to `region` (all of it when empty).
fn view_mut<'a, T: BufElem>(b: &'a mut Buf, region: &[(usize, usize)]) -> Option<ndarray::ArrayViewMutD<'a, T>> {
    let a = T::view_mut(b)?;
    Some(match info(region) {
        Some(si) if !region.is_empty() => a.slice_mut(si),
        _ => a.view_mut(),
    })
}

/// Merge `b` into the `region` of `a` (all of `a` when `region` is empty), in place.
fn combine_at(
    op: ReduceOp,
    input: DType,
    a: &mut Partial,
    b: &Partial,
    region: &[(usize, usize)],
) -> Result<(), String> {
    let bad = || mismatch("combining", op, input);
    if a.comps.len() != b.comps.len() || a.comps.len() != op.state_dtypes(input).len() {
        return Err(bad());
    }
    let zipc = |a: &mut Partial, c: usize, f: &mut dyn FnMut(&mut Buf, &Buf) -> Option<()>| {
        f(&mut a.comps[c], &b.comps[c]).ok_or_else(bad)
    };
    fn zip2<T: BufElem>(x: &mut Buf, y: &Buf, region: &[(usize, usize)], f: impl Fn(&mut T, T)) -> Option<()> {
        let (mut x, y) = (view_mut::<T>(x, region)?, T::view(y)?);
        if x.shape() != y.shape() {
            return None;
        }
        x.zip_mut_with(y, |p, &q| f(p, q));
        Some(())
    }
    match op.kind() {
        Kind::Acc => {
            let prod = matches!(op, ReduceOp::Prod | ReduceOp::NanProd);
            match state_acc(input) {
                DType::Float64 => {
                    zipc(a, 0, &mut |x, y| zip2::<f64>(x, y, region, |x, y| if prod { *x *= y } else { *x += y }))
                }
                DType::Uint64 => zipc(a, 0, &mut |x, y| {
                    zip2::<u64>(x, y, region, |x, y| *x = if prod { x.wrapping_mul(y) } else { x.wrapping_add(y) })
                }),
                _ => zipc(a, 0, &mut |x, y| {
                    zip2::<i64>(x, y, region, |x, y| *x = if prod { x.wrapping_mul(y) } else { x.wrapping_add(y) })
                }),
            }
        }
        Kind::MeanState => {
            zipc(a, 0, &mut |x, y| zip2::<f64>(x, y, region, |x, y| *x += y))?;
            zipc(a, 1, &mut |x, y| zip2::<f64>(x, y, region, |x, y| *x += y))
        }
        Kind::Moments => {
            let [c0, c1, c2] = &mut a.comps[..] else { return Err(bad()) };
            let (Some(n), Some(m), Some(m2)) =
                (view_mut::<f64>(c0, region), view_mut::<f64>(c1, region), view_mut::<f64>(c2, region))
            else {
                return Err(bad());
            };
            let (Some(nb), Some(mb), Some(m2b)) =
                (f64::view(&b.comps[0]), f64::view(&b.comps[1]), f64::view(&b.comps[2]))
            else {
                return Err(bad());
            };
            if n.shape() != nb.shape() || mb.shape() != nb.shape() || m2b.shape() != nb.shape() {
                return Err(bad());
            }
            ndarray::Zip::from(n).and(m).and(m2).and(nb).and(mb).and(m2b).for_each(|n, m, m2, &nb, &mb, &m2b| {
                if nb == 0.0 {
                    return;
                }
                if *n == 0.0 {
                    (*n, *m, *m2) = (nb, mb, m2b);
                    return;
                }
                let t = *n + nb;
                let delta = mb - *m;
                if delta.is_infinite() && m.is_finite() && mb.is_finite() {
                    // finite means whose difference overflows: the deviations from the common
                    // mean overflow too when squared (NumPy's two passes give inf as well)
                    *m2 = f64::INFINITY;
                    *m = *m * (*n / t) + mb * (nb / t);
                } else {
                    *m2 = *m2 + m2b + delta * delta * (*n * nb / t);
                    *m += delta * (nb / t);
                }
                *n = t;
            });
            Ok(())
        }
        Kind::Extreme => {
            let min = matches!(op, ReduceOp::Min | ReduceOp::NanMin);
            let skip = op.skips_nan();
            crate::with_dtype!(input, T => zipc(a, 0, &mut |x, y| zip2::<T>(x, y, region, |x, y| *x = extreme_any(*x, y, min, skip))))
        }
        Kind::Arg => {
            let min = op == ReduceOp::Argmin;
            crate::with_dtype!(input, T => {
                let [c0, c1] = &mut a.comps[..] else { return Err(bad()) };
                let (Some(va), Some(ia)) = (view_mut::<T>(c0, region), view_mut::<i64>(c1, region)) else { return Err(bad()) };
                let (Some(vb), Some(ib)) = (T::view(&b.comps[0]), i64::view(&b.comps[1])) else { return Err(bad()) };
                if va.shape() != vb.shape() || ia.shape() != ib.shape() || va.shape() != ia.shape() {
                    return Err(bad());
                }
                ndarray::Zip::from(va).and(ia).and(vb).and(ib).for_each(|va, ia, &vb, &ib| {
                    // the earlier element comes first, whichever partial holds it
                    let (first, second) = if ib < *ia { ((vb, ib), (*va, *ia)) } else { ((*va, *ia), (vb, ib)) };
                    let w = if better_any(second.0, first.0, min) { second } else { first };
                    (*va, *ia) = w;
                });
                Ok(())
            })
        }
        Kind::Logic => {
            let any = op == ReduceOp::Any;
            zipc(a, 0, &mut |x, y| zip2::<bool>(x, y, region, |x, y| *x = if any { *x | y } else { *x & y }))
        }
        Kind::Count => zipc(a, 0, &mut |x, y| zip2::<i64>(x, y, region, |x, y| *x += y)),
    }
}

fn extreme_any<T: Elem>(a: T, x: T, min: bool, skip: bool) -> T {
    let (an, xn) = (a.to_f64().is_nan() && T::DTYPE.is_float(), x.to_f64().is_nan() && T::DTYPE.is_float());
    if an {
        return if skip { x } else { a };
    }
    if xn {
        return if skip { a } else { x };
    }
    if (min && x < a) || (!min && x > a) {
        x
    } else {
        a
    }
}

fn better_any<T: Elem>(x: T, best: T, min: bool) -> bool {
    let f = T::DTYPE.is_float();
    if f && best.to_f64().is_nan() {
        return false;
    }
    if f && x.to_f64().is_nan() {
        return true;
    }
    if min {
        x < best
    } else {
        x > best
    }
}

fn vals<T: BufElem>(b: &Buf) -> Option<Vec<T>> {
    T::view(b).map(|a| a.iter().copied().collect())
}

/// Merge a partial of a sub-block into the partial of the whole block at `offset` (kept axes), or
/// initialise that part of the block when `fresh`.
pub fn merge_into(
    op: ReduceOp,
    input: DType,
    block: &mut Partial,
    sub: &Partial,
    offset: &[usize],
    fresh: bool,
) -> Result<(), String> {
    let sub_shape = sub.comps.first().ok_or_else(|| mismatch("merging", op, input))?.shape().to_vec();
    let region: Vec<(usize, usize)> = offset.iter().zip(&sub_shape).map(|(&o, &n)| (o, o + n)).collect();
    if fresh {
        if block.comps.len() != sub.comps.len() {
            return Err(mismatch("merging", op, input));
        }
        for (bc, sc) in block.comps.iter_mut().zip(&sub.comps) {
            assign(bc, sc, &region).ok_or_else(|| mismatch("merging", op, input))?;
        }
        Ok(())
    } else {
        combine_at(op, input, block, sub, &region)
    }
}

fn info(region: &[(usize, usize)]) -> Option<ndarray::SliceInfo<Vec<ndarray::SliceInfoElem>, IxDyn, IxDyn>> {
    let elems: Vec<ndarray::SliceInfoElem> = region
        .iter()
        .map(|&(s, e)| ndarray::SliceInfoElem::Slice { start: s as isize, end: Some(e as isize), step: 1 })
        .collect();
    ndarray::SliceInfo::try_from(elems).ok()
}

/// Copy `src` into `region` of `dst` (all of it when `region` is empty); `None` when the dtypes or
/// shapes disagree.
fn assign(dst: &mut Buf, src: &Buf, region: &[(usize, usize)]) -> Option<()> {
    if region.is_empty() {
        if dst.dtype() != src.dtype() || dst.shape() != src.shape() {
            return None;
        }
        *dst = src.clone();
        return Some(());
    }
    let si = info(region)?;
    crate::with_buf!(dst, T, a => {
        let s = T::view(src)?;
        let mut part = a.slice_mut(si);
        if part.shape() != s.shape() {
            return None;
        }
        part.assign(s);
    });
    Some(())
}

/// An empty block partial of `shape` (to be initialised by [`merge_into`]).
pub fn empty_partial(op: ReduceOp, input: DType, shape: &[usize]) -> Partial {
    let comps = op
        .state_dtypes(input)
        .into_iter()
        .map(|d| crate::with_dtype!(d, T => T::wrap(ArrayD::from_elem(IxDyn(shape), T::default()).into_shared())))
        .collect();
    Partial { comps }
}

/// The result of a partial: the reduction's values, of NumPy's result dtype.
pub fn finalize(op: ReduceOp, input: DType, p: &Partial, ddof: f64) -> Result<Buf, String> {
    let out = op.result_dtype(input);
    let bad = || mismatch("finalising", op, input);
    if p.comps.len() != op.state_dtypes(input).len() {
        return Err(bad());
    }
    let shape = p.comps[0].shape().to_vec();
    let b = match op.kind() {
        Kind::Acc | Kind::Extreme | Kind::Logic | Kind::Count => p.comps[0].clone(),
        Kind::Arg => p.comps[1].clone(),
        Kind::MeanState => {
            let (s, n) = (vals::<f64>(&p.comps[0]).ok_or_else(bad)?, vals::<f64>(&p.comps[1]).ok_or_else(bad)?);
            Buf::from_vec(&shape, s.iter().zip(&n).map(|(s, n)| s / n).collect::<Vec<f64>>())
        }
        Kind::Moments => {
            let (n, mean, m2) = (
                vals::<f64>(&p.comps[0]).ok_or_else(bad)?,
                vals::<f64>(&p.comps[1]).ok_or_else(bad)?,
                vals::<f64>(&p.comps[2]).ok_or_else(bad)?,
            );
            let std = matches!(op, ReduceOp::Std | ReduceOp::NanStd);
            // (NumPy's nanvar of an integer array is its var: there is no NaN to skip)
            let nan_version = op.skips_nan() && input.is_float();
            let v: Vec<f64> = n
                .iter()
                .zip(&m2)
                .zip(&mean)
                .map(|((&n, &m2), &mean)| {
                    // var divides by max(n - ddof, 0) (inf, or NaN for 0/0); the nan… versions
                    // of float arrays give NaN whenever n - ddof ≤ 0, as NumPy's nanvar does
                    if nan_version && n - ddof <= 0.0 {
                        return f64::NAN;
                    }
                    if ddof.is_nan() {
                        return f64::NAN;
                    }
                    // NumPy's mean is sum / n: a sum that overflows makes every deviation
                    // infinite, so the variance of such (finite) data is inf
                    let m2 =
                        if mean.is_finite() && m2.is_finite() && (mean * n).is_infinite() { f64::INFINITY } else { m2 };
                    let var = m2 / (n - ddof).max(0.0);
                    if std {
                        var.sqrt()
                    } else {
                        var
                    }
                })
                .collect();
            Buf::from_vec(&shape, v)
        }
    };
    Ok(b.cast(out))
}

/// Inclusive scan (cumsum or cumprod) of `a` along `axis`, starting from `carry` (shape of `a`
/// without `axis`, or `None` for the identity). Accumulates in the result dtype, sequentially, as
/// NumPy does.
pub fn scan<T: NumElem>(a: &ArrayViewD<T>, axis: usize, prod: bool, carry: Option<&ArrayViewD<T>>) -> ArrayD<T> {
    let mut out = a.to_owned();
    if let Some(c) = carry {
        if let Some(mut first) = out.axis_iter_mut(Axis(axis)).next() {
            first.zip_mut_with(c, |x, &y| *x = if prod { T::mul(y, *x) } else { T::add(y, *x) });
        }
    }
    out.accumulate_axis_inplace(Axis(axis), |&prev, cur| {
        *cur = if prod { T::mul(prev, *cur) } else { T::add(prev, *cur) }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lanes of `extreme_row` give the sequential fold's bits: rows with NaNs, signed zeros,
    /// infinities and repeated extremes at every length around the lane width.
    #[test]
    fn extreme_rows_are_the_sequential_fold() {
        let pool = [0.0, -0.0, 1.5, -2.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -f64::NAN, 7.0, 3.0];
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for len in (1..80).chain([127, 128, 129, 1000]) {
            for _ in 0..40 {
                let nan_ok = next() % 3 == 0;
                let row: Vec<f64> = (0..len)
                    .map(|_| loop {
                        let v = pool[next() % pool.len()];
                        if nan_ok || !v.is_nan() {
                            break v;
                        }
                    })
                    .collect();
                let ints: Vec<i32> = row.iter().map(|v| if v.is_finite() { *v as i32 } else { 5 }).collect();
                for (min, skip) in [(true, false), (false, false), (true, true), (false, true)] {
                    let seq = row.iter().copied().fold(row[0], |a, x| extreme(a, x, min, skip));
                    assert_eq!(extreme_row(&row, min, skip).to_bits(), seq.to_bits(), "{row:?} min={min} skip={skip}");
                    let seq = ints.iter().copied().fold(ints[0], |a, x| extreme(a, x, min, skip));
                    assert_eq!(extreme_row(&ints, min, skip), seq);
                }
            }
        }
    }

    fn run(op: ReduceOp, data: Vec<f64>, shape: &[usize], axes: &[usize]) -> Vec<f64> {
        let a = ArrayD::from_shape_vec(IxDyn(shape), data).unwrap_or_default();
        let gshape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
        let p = reduce_tile::<f64>(op, &a.view(), axes, &vec![0; shape.len()], &gshape);
        let b = finalize(op, DType::Float64, &p, 0.0).expect("finalize");
        b.cast(DType::Float64).into_vec::<f64>().unwrap_or_default()
    }

    #[test]
    fn pairwise_sum_of_ones_is_exact() {
        let v = vec![1.0f64; 1 << 20];
        assert_eq!(pairwise(&v, &|x| x), (1u64 << 20) as f64);
    }

    #[test]
    fn reductions_over_axes() {
        let d: Vec<f64> = (0..6).map(|x| x as f64).collect();
        assert_eq!(run(ReduceOp::Sum, d.clone(), &[2, 3], &[1]), vec![3.0, 12.0]);
        assert_eq!(run(ReduceOp::Sum, d.clone(), &[2, 3], &[0]), vec![3.0, 5.0, 7.0]);
        assert_eq!(run(ReduceOp::Mean, d.clone(), &[2, 3], &[0, 1]), vec![2.5]);
        assert_eq!(run(ReduceOp::Argmax, d.clone(), &[2, 3], &[0, 1]), vec![5.0]);
        assert_eq!(run(ReduceOp::Argmin, d, &[2, 3], &[0]), vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn split_and_merged_moments_equal_one_pass() {
        let d: Vec<f64> = (0..10).map(|x| (x * x) as f64 * 0.1).collect();
        let whole = run(ReduceOp::Var, d.clone(), &[10], &[0]);
        let a = ArrayD::from_shape_vec(IxDyn(&[10]), d).unwrap_or_default();
        let mut p = reduce_tile::<f64>(ReduceOp::Var, &a.slice(ndarray::s![..3]).into_dyn(), &[0], &[0], &[10]);
        let q = reduce_tile::<f64>(ReduceOp::Var, &a.slice(ndarray::s![3..]).into_dyn(), &[0], &[3], &[10]);
        combine(ReduceOp::Var, DType::Float64, &mut p, &q).expect("combine");
        let merged =
            finalize(ReduceOp::Var, DType::Float64, &p, 0.0).expect("finalize").into_vec::<f64>().unwrap_or_default();
        assert!((merged[0] - whole[0]).abs() < 1e-12 * whole[0]);
    }

    #[test]
    fn nan_and_inf_follow_numpy() {
        let inf = f64::INFINITY;
        assert!(run(ReduceOp::Var, vec![1.0, inf], &[2], &[0])[0].is_nan());
        assert_eq!(run(ReduceOp::NanMean, vec![1.0, f64::NAN, inf], &[3], &[0]), vec![inf]);
        assert!(run(ReduceOp::Max, vec![1.0, f64::NAN], &[2], &[0])[0].is_nan());
        assert_eq!(run(ReduceOp::NanMax, vec![1.0, f64::NAN], &[2], &[0]), vec![1.0]);
        assert_eq!(run(ReduceOp::Argmax, vec![1.0, f64::NAN, 3.0, f64::NAN], &[4], &[0]), vec![1.0]);
        assert_eq!(run(ReduceOp::NanSum, vec![f64::NAN, f64::NAN], &[2], &[0]), vec![0.0]);
        assert!(run(ReduceOp::NanMean, vec![f64::NAN, f64::NAN], &[2], &[0])[0].is_nan());
    }
}
