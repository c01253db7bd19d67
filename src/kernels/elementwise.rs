//! Element-wise operations with NumPy's semantics, on [`Buf`]s of one compute dtype.
//!
//! The caller (the plan evaluator) casts operands to the operation's compute dtype first; here
//! operands are broadcast to the output shape, turned into contiguous slices or scalars, and run
//! through tight loops. The transcendental functions of float64 use the vectorised kernels of
//! [`super::math`] compiled for several instruction sets with run-time dispatch.
//!
//! Integer semantics follow NumPy: `+ - *` wrap on overflow, `//` and `%` by zero give 0, `%` takes
//! the sign of the divisor; floats follow IEEE with NumPy's `floor_divide`/`remainder` rules.
//! Differences (documented in docs/expressions.md): integer `x ** negative` gives 1/x^n truncated
//! (1, -1 or 0) where NumPy raises.

use multiversion::multiversion;
use ndarray::{ArrayD, Axis, IxDyn};

use super::buf::{Arr, Buf, BufElem};
use super::math;
use crate::dtype::DType;

/// An element-wise operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MapOp {
    // binary
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    Minimum,
    Maximum,
    /// `hypot(a, b)`: the C library's, as NumPy's (and the absolute value of a complex number).
    Hypot,
    And,
    Or,
    Xor,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    // unary
    Neg,
    Not,
    Abs,
    Sign,
    Floor,
    Ceil,
    Round,
    /// `round(x, decimals)` with decimals ≠ 0.
    RoundTo(i32),
    Square,
    Reciprocal,
    Sqrt,
    Sin,
    Cos,
    Tan,
    Arcsin,
    Arccos,
    Arctan,
    Exp,
    Expm1,
    Log,
    Log1p,
    Log10,
    Log2,
    IsNan,
    IsFinite,
    // ternary
    Where,
    Clip,
}

impl MapOp {
    pub fn arity(self) -> usize {
        use MapOp::*;
        match self {
            Add | Sub | Mul | Div | FloorDiv | Mod | Pow | Minimum | Maximum | Hypot | And | Or | Xor | Lt | Le
            | Gt | Ge | Eq | Ne => 2,
            Where | Clip => 3,
            _ => 1,
        }
    }

    pub fn is_comparison(self) -> bool {
        use MapOp::*;
        matches!(self, Lt | Le | Gt | Ge | Eq | Ne)
    }

    /// Comparisons and predicates produce bool whatever they compare.
    pub fn gives_bool(self) -> bool {
        use MapOp::*;
        matches!(self, Lt | Le | Gt | Ge | Eq | Ne | IsNan | IsFinite)
    }

    /// Functions that compute in floating point (ints are converted first, as NumPy does).
    pub fn is_float_function(self) -> bool {
        use MapOp::*;
        matches!(
            self,
            Div | Hypot | Sqrt | Sin | Cos | Tan | Arcsin | Arccos | Arctan | Exp | Expm1 | Log | Log1p | Log10 | Log2
        )
    }

    pub fn name(self) -> &'static str {
        use MapOp::*;
        match self {
            Add => "add",
            Sub => "subtract",
            Mul => "multiply",
            Div => "true_divide",
            FloorDiv => "floor_divide",
            Mod => "remainder",
            Pow => "power",
            Minimum => "minimum",
            Maximum => "maximum",
            Hypot => "hypot",
            And => "bitwise_and",
            Or => "bitwise_or",
            Xor => "bitwise_xor",
            Lt => "less",
            Le => "less_equal",
            Gt => "greater",
            Ge => "greater_equal",
            Eq => "equal",
            Ne => "not_equal",
            Neg => "negative",
            Not => "invert",
            Abs => "abs",
            Sign => "sign",
            Floor => "floor",
            Ceil => "ceil",
            Round | RoundTo(_) => "round",
            Square => "square",
            Reciprocal => "reciprocal",
            Sqrt => "sqrt",
            Sin => "sin",
            Cos => "cos",
            Tan => "tan",
            Arcsin => "arcsin",
            Arccos => "arccos",
            Arctan => "arctan",
            Exp => "exp",
            Expm1 => "expm1",
            Log => "log",
            Log1p => "log1p",
            Log10 => "log10",
            Log2 => "log2",
            IsNan => "isnan",
            IsFinite => "isfinite",
            Where => "where",
            Clip => "clip",
        }
    }
}

/// Scalar semantics of each dtype.
pub trait NumElem: BufElem {
    fn add(a: Self, b: Self) -> Self;
    fn sub(a: Self, b: Self) -> Self;
    fn mul(a: Self, b: Self) -> Self;
    fn div(a: Self, b: Self) -> Self;
    fn floordiv(a: Self, b: Self) -> Self;
    fn rem(a: Self, b: Self) -> Self;
    fn pow(a: Self, b: Self) -> Self;
    fn minimum(a: Self, b: Self) -> Self;
    fn maximum(a: Self, b: Self) -> Self;
    fn and(a: Self, b: Self) -> Self;
    fn or(a: Self, b: Self) -> Self;
    fn xor(a: Self, b: Self) -> Self;
    fn neg(a: Self) -> Self;
    fn not(a: Self) -> Self;
    fn abs(a: Self) -> Self;
    fn sign(a: Self) -> Self;
    fn floor(a: Self) -> Self;
    fn ceil(a: Self) -> Self;
    fn round(a: Self) -> Self;
    /// NumPy's `round(a, decimals)`: floats scale by 10^decimals (in their own precision), round
    /// half to even and scale back; integers are unchanged for decimals ≥ 0 and rounded half to
    /// even to a multiple of 10^-decimals otherwise.
    fn round_to(a: Self, d: i32) -> Self;
    /// NumPy's `reciprocal` of an integer: C's 1 / a (1 for 1, -1 for -1, else 0; 0 for 0, where
    /// NumPy's result is undefined).
    fn recip(a: Self) -> Self;
    fn is_nan(a: Self) -> bool;
    fn is_finite(a: Self) -> bool;
    /// The C library's `hypot` (floats only: integers are converted first).
    fn hypot(a: Self, b: Self) -> Self;
}

fn int_pow_u(mut base: u64, mut e: u64) -> u64 {
    let mut r = 1u64;
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    r
}

macro_rules! int_num {
    ($t:ty, signed) => {
        int_num!(@common $t);
        impl IntExtra for $t {
            #[inline(always)]
            fn floordiv_(a: Self, b: Self) -> Self {
                if b == 0 {
                    return 0;
                }
                let q = a.wrapping_div(b);
                if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
                    q - 1
                } else {
                    q
                }
            }
            #[inline(always)]
            fn rem_(a: Self, b: Self) -> Self {
                if b == 0 {
                    return 0;
                }
                let r = a.wrapping_rem(b);
                if r != 0 && ((r < 0) != (b < 0)) {
                    r + b
                } else {
                    r
                }
            }
            #[inline(always)]
            fn pow_(a: Self, b: Self) -> Self {
                if b < 0 {
                    return match a {
                        1 => 1,
                        -1 => if b % 2 == 0 { 1 } else { -1 },
                        _ => 0,
                    };
                }
                int_pow_u(a as u64, b as u64) as $t
            }
            #[inline(always)]
            fn abs_(a: Self) -> Self {
                a.wrapping_abs()
            }
            #[inline(always)]
            fn sign_(a: Self) -> Self {
                a.signum()
            }
        }
    };
    ($t:ty, unsigned) => {
        int_num!(@common $t);
        impl IntExtra for $t {
            #[inline(always)]
            fn floordiv_(a: Self, b: Self) -> Self {
                if b == 0 { 0 } else { a / b }
            }
            #[inline(always)]
            fn rem_(a: Self, b: Self) -> Self {
                if b == 0 { 0 } else { a % b }
            }
            #[inline(always)]
            fn pow_(a: Self, b: Self) -> Self {
                int_pow_u(a as u64, b as u64) as $t
            }
            #[inline(always)]
            fn abs_(a: Self) -> Self {
                a
            }
            #[inline(always)]
            fn sign_(a: Self) -> Self {
                (a != 0) as $t
            }
        }
    };
    (@common $t:ty) => {
        impl NumElem for $t {
            #[inline(always)]
            fn add(a: Self, b: Self) -> Self { a.wrapping_add(b) }
            #[inline(always)]
            fn sub(a: Self, b: Self) -> Self { a.wrapping_sub(b) }
            #[inline(always)]
            fn mul(a: Self, b: Self) -> Self { a.wrapping_mul(b) }
            #[inline(always)]
            fn div(a: Self, b: Self) -> Self { <$t as IntExtra>::floordiv_(a, b) }
            #[inline(always)]
            fn floordiv(a: Self, b: Self) -> Self { <$t as IntExtra>::floordiv_(a, b) }
            #[inline(always)]
            fn rem(a: Self, b: Self) -> Self { <$t as IntExtra>::rem_(a, b) }
            #[inline(always)]
            fn pow(a: Self, b: Self) -> Self { <$t as IntExtra>::pow_(a, b) }
            #[inline(always)]
            fn minimum(a: Self, b: Self) -> Self { if b < a { b } else { a } }
            #[inline(always)]
            fn maximum(a: Self, b: Self) -> Self { if b > a { b } else { a } }
            #[inline(always)]
            fn and(a: Self, b: Self) -> Self { a & b }
            #[inline(always)]
            fn or(a: Self, b: Self) -> Self { a | b }
            #[inline(always)]
            fn xor(a: Self, b: Self) -> Self { a ^ b }
            #[inline(always)]
            fn neg(a: Self) -> Self { a.wrapping_neg() }
            #[inline(always)]
            fn not(a: Self) -> Self { !a }
            #[inline(always)]
            fn abs(a: Self) -> Self { <$t as IntExtra>::abs_(a) }
            #[inline(always)]
            fn sign(a: Self) -> Self { <$t as IntExtra>::sign_(a) }
            #[inline(always)]
            fn floor(a: Self) -> Self { a }
            #[inline(always)]
            fn ceil(a: Self) -> Self { a }
            #[inline(always)]
            fn round(a: Self) -> Self { a }
            fn round_to(a: Self, d: i32) -> Self {
                if d >= 0 {
                    return a;
                }
                // as NumPy: in float64 (a / 10^-d, rounded half to even, times 10^-d), then cast
                // back (out of range: dsk's saturating cast)
                let f = power_of_ten(-d);
                let v = ((a as f64) / f).round_ties_even() * f;
                <$t as crate::dtype::Elem>::from_f64(v)
            }
            #[inline(always)]
            fn recip(a: Self) -> Self {
                #[allow(unused_comparisons)]
                match a as i128 {
                    1 => 1 as $t,
                    -1 => (0 as $t).wrapping_sub(1),
                    _ => 0,
                }
            }
            #[inline(always)]
            fn is_nan(_: Self) -> bool { false }
            #[inline(always)]
            fn is_finite(_: Self) -> bool { true }
            fn hypot(a: Self, b: Self) -> Self {
                <$t as crate::dtype::Elem>::from_f64((a as f64).hypot(b as f64))
            }
        }
    };
}

/// 10^n as NumPy's `round` computes it: exact up to 10^8, then by repeated multiplication.
fn power_of_ten(n: i32) -> f64 {
    const P10: [f64; 9] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];
    if (0..9).contains(&n) {
        return P10[n as usize];
    }
    let mut r: f64 = 1e9;
    let mut k = n;
    while k > 9 && r.is_finite() {
        r *= 10.0;
        k -= 1;
    }
    r
}

trait IntExtra: Sized {
    fn floordiv_(a: Self, b: Self) -> Self;
    fn rem_(a: Self, b: Self) -> Self;
    fn pow_(a: Self, b: Self) -> Self;
    fn abs_(a: Self) -> Self;
    fn sign_(a: Self) -> Self;
}

int_num!(i8, signed);
int_num!(i16, signed);
int_num!(i32, signed);
int_num!(i64, signed);
int_num!(u8, unsigned);
int_num!(u16, unsigned);
int_num!(u32, unsigned);
int_num!(u64, unsigned);

/// NumPy's `npy_divmod` for floats, in the dtype's own precision: (floor_divide, remainder).
macro_rules! divmod {
    ($a:expr, $b:expr, $t:ty) => {{
        let (a, b): ($t, $t) = ($a, $b);
        let mut m = a % b;
        if b == 0.0 {
            (a / b, m)
        } else {
            let mut div = (a - m) / b;
            if m != 0.0 {
                if (b < 0.0) != (m < 0.0) {
                    m += b;
                    div -= 1.0;
                }
            } else {
                m = (0.0 as $t).copysign(b);
            }
            let fd = if div != 0.0 {
                let f = div.floor();
                if div - f > 0.5 {
                    f + 1.0
                } else {
                    f
                }
            } else {
                (0.0 as $t).copysign(a / b)
            };
            (fd, m)
        }
    }};
}

macro_rules! float_num {
    ($t:ty) => {
        impl NumElem for $t {
            #[inline(always)]
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            #[inline(always)]
            fn sub(a: Self, b: Self) -> Self {
                a - b
            }
            #[inline(always)]
            fn mul(a: Self, b: Self) -> Self {
                a * b
            }
            #[inline(always)]
            fn div(a: Self, b: Self) -> Self {
                a / b
            }
            #[inline(always)]
            fn floordiv(a: Self, b: Self) -> Self {
                divmod!(a, b, $t).0
            }
            #[inline(always)]
            fn rem(a: Self, b: Self) -> Self {
                divmod!(a, b, $t).1
            }
            #[inline(always)]
            fn pow(a: Self, b: Self) -> Self {
                a.powf(b)
            }
            #[inline(always)]
            fn minimum(a: Self, b: Self) -> Self {
                if a.is_nan() || a <= b {
                    a
                } else {
                    b
                }
            }
            #[inline(always)]
            fn maximum(a: Self, b: Self) -> Self {
                if a.is_nan() || a >= b {
                    a
                } else {
                    b
                }
            }
            fn and(a: Self, _: Self) -> Self {
                a
            }
            fn or(a: Self, _: Self) -> Self {
                a
            }
            fn xor(a: Self, _: Self) -> Self {
                a
            }
            #[inline(always)]
            fn neg(a: Self) -> Self {
                -a
            }
            fn not(a: Self) -> Self {
                a
            }
            #[inline(always)]
            fn abs(a: Self) -> Self {
                a.abs()
            }
            #[inline(always)]
            fn sign(a: Self) -> Self {
                if a > 0.0 {
                    1.0
                } else if a < 0.0 {
                    -1.0
                } else if a == 0.0 {
                    0.0
                } else {
                    a
                }
            }
            #[inline(always)]
            fn floor(a: Self) -> Self {
                a.floor()
            }
            #[inline(always)]
            fn ceil(a: Self) -> Self {
                a.ceil()
            }
            #[inline(always)]
            fn round(a: Self) -> Self {
                a.round_ties_even()
            }
            fn round_to(a: Self, d: i32) -> Self {
                // NumPy multiplies (or divides) by 10^|decimals| as a Python float, which NEP 50
                // casts to this dtype
                let f = power_of_ten(d.unsigned_abs() as i32) as $t;
                if d >= 0 {
                    (a * f).round_ties_even() / f
                } else {
                    (a / f).round_ties_even() * f
                }
            }
            #[inline(always)]
            fn recip(a: Self) -> Self {
                1.0 / a
            }
            #[inline(always)]
            fn is_nan(a: Self) -> bool {
                a.is_nan()
            }
            #[inline(always)]
            fn is_finite(a: Self) -> bool {
                a.is_finite()
            }
            #[inline(always)]
            fn hypot(a: Self, b: Self) -> Self {
                a.hypot(b)
            }
        }
    };
}

float_num!(f32);
float_num!(f64);

/// NumPy's `npy_divmod` for float64: (floor_divide, remainder).
pub fn divmod(a: f64, b: f64) -> (f64, f64) {
    divmod!(a, b, f64)
}

impl NumElem for bool {
    fn add(a: Self, b: Self) -> Self {
        a | b
    }
    fn sub(a: Self, b: Self) -> Self {
        a ^ b
    }
    fn mul(a: Self, b: Self) -> Self {
        a & b
    }
    fn div(a: Self, _: Self) -> Self {
        a
    }
    fn floordiv(a: Self, _: Self) -> Self {
        a
    }
    fn rem(_: Self, _: Self) -> Self {
        false
    }
    fn pow(a: Self, b: Self) -> Self {
        a | !b
    }
    fn minimum(a: Self, b: Self) -> Self {
        a & b
    }
    fn maximum(a: Self, b: Self) -> Self {
        a | b
    }
    fn and(a: Self, b: Self) -> Self {
        a & b
    }
    fn or(a: Self, b: Self) -> Self {
        a | b
    }
    fn xor(a: Self, b: Self) -> Self {
        a ^ b
    }
    fn neg(a: Self) -> Self {
        a
    }
    fn not(a: Self) -> Self {
        !a
    }
    fn abs(a: Self) -> Self {
        a
    }
    fn sign(a: Self) -> Self {
        a
    }
    fn floor(a: Self) -> Self {
        a
    }
    fn ceil(a: Self) -> Self {
        a
    }
    fn round(a: Self) -> Self {
        a
    }
    fn round_to(a: Self, _: i32) -> Self {
        a
    }
    fn recip(a: Self) -> Self {
        a
    }
    fn is_nan(_: Self) -> bool {
        false
    }
    fn is_finite(_: Self) -> bool {
        true
    }
    fn hypot(a: Self, b: Self) -> Self {
        a | b
    }
}

/// An operand broadcast to the output: a contiguous C-order array of the output's shape, or one
/// value for all elements.
enum Dense<T> {
    Scalar(T),
    Array(Arr<T>),
}

impl<T: BufElem> Dense<T> {
    fn of(a: &Arr<T>, shape: &[usize]) -> Dense<T> {
        if a.len() == 1 {
            if let Some(v) = a.iter().next() {
                return Dense::Scalar(*v);
            }
        }
        if a.shape() == shape && a.is_standard_layout() {
            return Dense::Array(a.clone());
        }
        Dense::Array(materialize(a, shape))
    }

    #[inline(always)]
    fn at(&self, i: usize, slice: Option<&[T]>) -> T {
        match (self, slice) {
            (Dense::Scalar(v), _) => *v,
            (_, Some(s)) => s[i],
            (Dense::Array(_), None) => panic!("a dense operand read without its contiguous slice"),
        }
    }

    fn slice(&self) -> Option<&[T]> {
        match self {
            Dense::Scalar(_) => None,
            Dense::Array(a) => a.as_slice(),
        }
    }
}

/// Copy a (possibly strided, reversed or broadcast) array into C order with `shape`. Rows whose
/// last-axis stride is ±1 are copied as slices (reversed when the stride is -1).
pub fn materialize<T: BufElem>(a: &Arr<T>, shape: &[usize]) -> Arr<T> {
    let Some(view) = a.broadcast(IxDyn(shape)) else {
        panic!("an operand of shape {:?} does not broadcast to {shape:?}", a.shape());
    };
    let n: usize = shape.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(n);
    if shape.is_empty() || n == 0 {
        out.extend(view.iter().copied());
    } else {
        let last = shape.len() - 1;
        for lane in view.lanes(Axis(last)) {
            match lane.as_slice() {
                Some(s) => out.extend_from_slice(s),
                None => {
                    let st = lane.strides()[0];
                    let mut fwd = lane;
                    fwd.invert_axis(Axis(0));
                    if let (-1, Some(s)) = (st, fwd.as_slice()) {
                        out.extend(s.iter().rev().copied());
                    } else {
                        out.extend(lane.iter().copied());
                    }
                }
            }
        }
    }
    match ArrayD::from_shape_vec(IxDyn(shape), out) {
        Ok(a) => a.into_shared(),
        Err(_) => panic!("materialised {n} elements for the shape {shape:?}"),
    }
}

fn typed<T: BufElem>(b: &Buf) -> Result<&Arr<T>, String> {
    T::view(b).ok_or_else(|| format!("operand is {} where {} was expected", b.dtype(), T::DTYPE))
}

fn unary_loop<T: BufElem, U: BufElem>(x: &Dense<T>, n: usize, f: impl Fn(T) -> U) -> Vec<U> {
    match x {
        Dense::Scalar(v) => vec![f(*v); n],
        Dense::Array(a) => match a.as_slice() {
            Some(s) => s.iter().map(|&v| f(v)).collect(),
            None => a.iter().map(|&v| f(v)).collect(),
        },
    }
}

fn binary_loop<T: BufElem, U: BufElem>(a: &Dense<T>, b: &Dense<T>, n: usize, f: impl Fn(T, T) -> U) -> Vec<U> {
    match (a.slice(), b.slice()) {
        (Some(x), Some(y)) => x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect(),
        (Some(x), None) => {
            let q = b.at(0, None);
            x.iter().map(|&p| f(p, q)).collect()
        }
        (None, Some(y)) => {
            let p = a.at(0, None);
            y.iter().map(|&q| f(p, q)).collect()
        }
        (None, None) => vec![f(a.at(0, None), b.at(0, None)); n],
    }
}

/// Apply `op` to `args` (already of the compute dtype `T`; for `where` the condition is bool),
/// broadcast to `shape`. Returns a C-order `Buf`.
pub fn apply<T: NumElem>(op: MapOp, args: &[Buf], shape: &[usize]) -> Result<Buf, String> {
    use MapOp::*;
    let n: usize = shape.iter().product();
    if args.len() != op.arity() {
        return Err(format!("{} takes {} operands, got {}", op.name(), op.arity(), args.len()));
    }
    if op == Where {
        let c = Dense::of(typed::<bool>(&args[0])?, shape);
        let a = Dense::of(typed::<T>(&args[1])?, shape);
        let b = Dense::of(typed::<T>(&args[2])?, shape);
        let (cs, as_, bs) = (c.slice(), a.slice(), b.slice());
        let out: Vec<T> = (0..n).map(|i| if c.at(i, cs) { a.at(i, as_) } else { b.at(i, bs) }).collect();
        return Ok(Buf::from_vec(shape, out));
    }
    if op == Clip {
        let x = Dense::of(typed::<T>(&args[0])?, shape);
        let lo = Dense::of(typed::<T>(&args[1])?, shape);
        let hi = Dense::of(typed::<T>(&args[2])?, shape);
        let (xs, ls, hs) = (x.slice(), lo.slice(), hi.slice());
        let out: Vec<T> = (0..n).map(|i| T::minimum(T::maximum(x.at(i, xs), lo.at(i, ls)), hi.at(i, hs))).collect();
        return Ok(Buf::from_vec(shape, out));
    }
    if op.arity() == 2 {
        if let (DType::Float64, Some(k)) = (T::DTYPE, f64_arith(op)) {
            if let Some(v) = arith_f64_rows(k, typed::<T>(&args[0])?, typed::<T>(&args[1])?, shape) {
                return Ok(Buf::from_vec(shape, v));
            }
        }
        let a = Dense::of(typed::<T>(&args[0])?, shape);
        let b = Dense::of(typed::<T>(&args[1])?, shape);
        if let (DType::Float64, Some(x), Some(y), Some(k)) = (T::DTYPE, a.slice(), b.slice(), f64_arith(op)) {
            // SAFETY: T is f64 (checked through its DTYPE), so the slices have the same layout.
            let (x, y) = unsafe {
                (
                    std::slice::from_raw_parts(x.as_ptr() as *const f64, x.len()),
                    std::slice::from_raw_parts(y.as_ptr() as *const f64, y.len()),
                )
            };
            return Ok(Buf::from_vec(shape, arith_f64(k, x, y)));
        }
        let out = match op {
            Add => Buf::from_vec(shape, binary_loop(&a, &b, n, T::add)),
            Sub => Buf::from_vec(shape, binary_loop(&a, &b, n, T::sub)),
            Mul => Buf::from_vec(shape, binary_loop(&a, &b, n, T::mul)),
            Div => Buf::from_vec(shape, binary_loop(&a, &b, n, T::div)),
            FloorDiv => Buf::from_vec(shape, binary_loop(&a, &b, n, T::floordiv)),
            Mod => Buf::from_vec(shape, binary_loop(&a, &b, n, T::rem)),
            Pow => Buf::from_vec(shape, binary_loop(&a, &b, n, T::pow)),
            Minimum => Buf::from_vec(shape, binary_loop(&a, &b, n, T::minimum)),
            Maximum => Buf::from_vec(shape, binary_loop(&a, &b, n, T::maximum)),
            Hypot => Buf::from_vec(shape, binary_loop(&a, &b, n, T::hypot)),
            And => Buf::from_vec(shape, binary_loop(&a, &b, n, T::and)),
            Or => Buf::from_vec(shape, binary_loop(&a, &b, n, T::or)),
            Xor => Buf::from_vec(shape, binary_loop(&a, &b, n, T::xor)),
            Lt => Buf::from_vec(shape, binary_loop(&a, &b, n, |p, q| p < q)),
            Le => Buf::from_vec(shape, binary_loop(&a, &b, n, |p, q| p <= q)),
            Gt => Buf::from_vec(shape, binary_loop(&a, &b, n, |p, q| p > q)),
            Ge => Buf::from_vec(shape, binary_loop(&a, &b, n, |p, q| p >= q)),
            Eq => Buf::from_vec(shape, binary_loop(&a, &b, n, |p, q| p == q)),
            Ne => Buf::from_vec(shape, binary_loop(&a, &b, n, |p, q| p != q)),
            _ => return Err(format!("{} is not binary", op.name())),
        };
        return Ok(out);
    }
    let x = Dense::of(typed::<T>(&args[0])?, shape);
    if T::DTYPE.is_float() && op.is_float_function() {
        return Ok(float_function::<T>(op, &x, shape, n));
    }
    let out = match op {
        Neg => Buf::from_vec(shape, unary_loop(&x, n, T::neg)),
        Not => Buf::from_vec(shape, unary_loop(&x, n, T::not)),
        Abs => Buf::from_vec(shape, unary_loop(&x, n, T::abs)),
        Sign => Buf::from_vec(shape, unary_loop(&x, n, T::sign)),
        Floor => Buf::from_vec(shape, unary_loop(&x, n, T::floor)),
        Ceil => Buf::from_vec(shape, unary_loop(&x, n, T::ceil)),
        Round => Buf::from_vec(shape, unary_loop(&x, n, T::round)),
        Reciprocal => Buf::from_vec(shape, unary_loop(&x, n, T::recip)),
        RoundTo(d) => Buf::from_vec(shape, unary_loop(&x, n, |v| T::round_to(v, d))),
        Square => Buf::from_vec(shape, unary_loop(&x, n, |v| T::mul(v, v))),
        IsNan => Buf::from_vec(shape, unary_loop(&x, n, T::is_nan)),
        IsFinite => Buf::from_vec(shape, unary_loop(&x, n, T::is_finite)),
        _ => return Err(format!("{} needs a float operand, got {}", op.name(), T::DTYPE)),
    };
    Ok(out)
}

/// Float functions: computed in f64 (f32 values are widened, then rounded once at the end).
fn float_function<T: NumElem>(op: MapOp, x: &Dense<T>, shape: &[usize], n: usize) -> Buf {
    let src: Vec<f64>;
    let input: &[f64] = match x {
        Dense::Scalar(v) => {
            src = vec![v.to_f64()];
            &src
        }
        Dense::Array(a) => match (T::DTYPE, a.as_slice()) {
            (DType::Float64, Some(s)) => {
                // SAFETY: T is f64 here (checked through its DTYPE), so the slice types are identical.
                unsafe { std::slice::from_raw_parts(s.as_ptr() as *const f64, s.len()) }
            }
            (_, Some(s)) => {
                src = s.iter().map(|v| v.to_f64()).collect();
                &src
            }
            (_, None) => {
                src = a.iter().map(|v| v.to_f64()).collect();
                &src
            }
        },
    };
    let mut out = vec![0.0f64; input.len()];
    f64_function(op, input, &mut out);
    if input.len() == 1 && n != 1 {
        out = vec![out[0]; n];
    }
    if T::DTYPE == DType::Float64 {
        Buf::from_vec(shape, out)
    } else {
        Buf::from_vec(shape, out.into_iter().map(|v| v as f32).collect::<Vec<f32>>())
    }
}

/// The f64 kernels of the float functions, block by block: a block whose values all lie in the
/// fast kernels' domain takes the vectorised path, any other block the C library's functions.
pub fn f64_function(op: MapOp, x: &[f64], out: &mut [f64]) {
    use MapOp::*;
    match op {
        Cos => vector_trig(x, out, false),
        Sin => vector_trig(x, out, true),
        Exp => vector_exp(x, out),
        Log => vector_log(x, out),
        Sqrt => vector_sqrt(x, out),
        Div | Reciprocal => out.iter_mut().zip(x).for_each(|(o, &v)| *o = 1.0 / v),
        Tan => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.tan()),
        Arcsin => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.asin()),
        Arccos => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.acos()),
        Arctan => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.atan()),
        Expm1 => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.exp_m1()),
        Log1p => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.ln_1p()),
        Log10 => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.log10()),
        Log2 => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.log2()),
        _ => out.copy_from_slice(x),
    }
}

const BLOCK: usize = 512;

/// Apply `fast` to every element of a block of 512 values whose elements all satisfy `ok`, and
/// `slow` (the C library) to every element of any other block. Inlined into each instruction-set
/// version of its callers. `fast` runs 32 elements at a time: several independent vectors in flight
/// hide the long dependency chain of one evaluation.
#[inline(always)]
fn blockwise(
    x: &[f64],
    out: &mut [f64],
    ok: impl Fn(f64) -> bool,
    fast: impl Fn(f64) -> f64,
    slow: impl Fn(f64) -> f64,
) {
    for (xb, ob) in x.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        // (an `&=` of comparisons vectorises; a running max would not)
        let mut all = true;
        for &v in xb {
            all &= ok(v);
        }
        if all {
            let mut oc = ob.chunks_exact_mut(32);
            let mut xc = xb.chunks_exact(32);
            for (o, x) in (&mut oc).zip(&mut xc) {
                for i in 0..32 {
                    o[i] = fast(x[i]);
                }
            }
            for (o, &v) in oc.into_remainder().iter_mut().zip(xc.remainder()) {
                *o = fast(v);
            }
        } else {
            for (o, &v) in ob.iter_mut().zip(xb) {
                *o = slow(v);
            }
        }
    }
}

#[multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma+bmi1+bmi2",
    "x86_64+avx2+fma+bmi1+bmi2",
    "aarch64+neon"
))]
fn vector_trig(x: &[f64], out: &mut [f64], sin: bool) {
    let ok = |v: f64| v.abs() <= math::TRIG_FAST_LIMIT;
    if sin {
        blockwise(x, out, ok, math::sin_fast, f64::sin)
    } else {
        blockwise(x, out, ok, math::cos_fast, f64::cos)
    }
}

#[multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma+bmi1+bmi2",
    "x86_64+avx2+fma+bmi1+bmi2",
    "aarch64+neon"
))]
fn vector_exp(x: &[f64], out: &mut [f64]) {
    blockwise(x, out, |v| (math::EXP_FAST_MIN..=math::EXP_FAST_MAX).contains(&v), math::exp_fast, f64::exp)
}

#[multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma+bmi1+bmi2",
    "x86_64+avx2+fma+bmi1+bmi2",
    "aarch64+neon"
))]
fn vector_log(x: &[f64], out: &mut [f64]) {
    blockwise(x, out, |v| (f64::MIN_POSITIVE..=f64::MAX).contains(&v), math::ln, f64::ln)
}

#[multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma+bmi1+bmi2",
    "x86_64+avx2+fma+bmi1+bmi2",
    "aarch64+neon"
))]
fn vector_sqrt(x: &[f64], out: &mut [f64]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v.sqrt();
    }
}

fn f64_arith(op: MapOp) -> Option<u8> {
    match op {
        MapOp::Add => Some(0),
        MapOp::Sub => Some(1),
        MapOp::Mul => Some(2),
        MapOp::Div => Some(3),
        _ => None,
    }
}

/// A view's rows (lanes of the last axis) as slices read forwards or backwards: `None` unless the
/// last axis has stride ±1 (or at most one element), so that no copy is needed.
fn rows_of<'a, T: BufElem>(a: &'a ndarray::ArrayViewD<'_, T>) -> Option<Vec<(&'a [T], bool)>> {
    let last = a.ndim().checked_sub(1)?;
    let len = a.shape()[last];
    let st = a.strides()[last];
    if len > 1 && st != 1 && st != -1 {
        return None;
    }
    a.lanes(Axis(last))
        .into_iter()
        .map(|lane| {
            let mut fwd = lane;
            let rev = len > 1 && st == -1;
            if rev {
                fwd.invert_axis(Axis(0));
            }
            fwd.to_slice().map(|s| (s, rev))
        })
        .collect()
}

/// `+ - * /` of two f64 operands of which at least one is not a C-order array of the output's
/// shape but has whole rows in memory, forwards or reversed (`x[::-1, ::-1]`, a broadcast row
/// `x - x.mean(axis=0)`): computed row by row without copying the operand first. `None` when this
/// does not apply.
fn arith_f64_rows<T: BufElem>(k: u8, a: &Arr<T>, b: &Arr<T>, shape: &[usize]) -> Option<Vec<f64>> {
    if T::DTYPE != DType::Float64 || shape.is_empty() || a.len() == 1 || b.len() == 1 {
        return None;
    }
    let plain = |x: &Arr<T>| x.shape() == shape && x.is_standard_layout();
    if plain(a) && plain(b) {
        return None;
    }
    let (av, bv) = (a.broadcast(IxDyn(shape))?, b.broadcast(IxDyn(shape))?);
    let (ra, rb) = (rows_of(&av)?, rows_of(&bv)?);
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    // SAFETY: T is f64 (checked through its DTYPE), so the slices have the same layout.
    let f = |s: &[T]| unsafe { std::slice::from_raw_parts(s.as_ptr() as *const f64, s.len()) };
    for ((x, xr), (y, yr)) in ra.into_iter().zip(rb) {
        arith_f64_run(k, f(x), xr, f(y), yr, &mut out);
    }
    (out.len() == n).then_some(out)
}

/// One row of [`arith_f64_rows`]: `out += a ∘ b`, each operand read backwards when its flag says so.
#[multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma+bmi1+bmi2",
    "x86_64+avx2+fma+bmi1+bmi2",
    "aarch64+neon"
))]
fn arith_f64_run(k: u8, a: &[f64], a_rev: bool, b: &[f64], b_rev: bool, out: &mut Vec<f64>) {
    macro_rules! run {
        ($f:expr) => {
            match (a_rev, b_rev) {
                (false, false) => out.extend(a.iter().zip(b).map(|(&p, &q)| $f(p, q))),
                (true, false) => out.extend(a.iter().rev().zip(b).map(|(&p, &q)| $f(p, q))),
                (false, true) => out.extend(a.iter().zip(b.iter().rev()).map(|(&p, &q)| $f(p, q))),
                (true, true) => out.extend(a.iter().rev().zip(b.iter().rev()).map(|(&p, &q)| $f(p, q))),
            }
        };
    }
    match k {
        0 => run!(|p: f64, q: f64| p + q),
        1 => run!(|p: f64, q: f64| p - q),
        2 => run!(|p: f64, q: f64| p * q),
        _ => run!(|p: f64, q: f64| p / q),
    }
}

/// `+ - * /` of f64 slices, compiled for the wide instruction sets (the hot path of
/// `x * x[::-1, ::-1]`).
#[multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma+bmi1+bmi2",
    "x86_64+avx2+fma+bmi1+bmi2",
    "aarch64+neon"
))]
fn arith_f64(k: u8, a: &[f64], b: &[f64]) -> Vec<f64> {
    let it = a.iter().zip(b);
    match k {
        0 => it.map(|(&p, &q)| p + q).collect(),
        1 => it.map(|(&p, &q)| p - q).collect(),
        2 => it.map(|(&p, &q)| p * q).collect(),
        _ => it.map(|(&p, &q)| p / q).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T: NumElem>(op: MapOp, args: &[Buf], shape: &[usize]) -> Buf {
        apply::<T>(op, args, shape).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn arithmetic_on_reversed_and_broadcast_rows_needs_no_copy_and_matches() {
        use ndarray::s;
        let (r, c) = (5, 7);
        let x: Vec<f64> = (0..r * c).map(|i| (i as f64 - 11.0) * 0.37).collect();
        let xa = ArrayD::from_shape_vec(IxDyn(&[r, c]), x.clone()).unwrap_or_else(|e| panic!("{e}")).into_shared();
        let flipped = xa.slice(s![..;-1, ..;-1]).to_owned().into_dyn().into_shared();
        let flip_view = Buf::F64(xa.clone().slice_move(s![..;-1, ..;-1]).into_dyn());
        let row: Vec<f64> = (0..c).map(|j| j as f64 + 0.5).collect();
        let row_b = Buf::from_vec(&[1, c], row.clone());
        let plain = Buf::F64(xa.clone());
        for op in [MapOp::Add, MapOp::Sub, MapOp::Mul, MapOp::Div] {
            let got = run::<f64>(op, &[plain.clone(), flip_view.clone()], &[r, c]).into_vec::<f64>();
            let want: Vec<f64> = x.iter().zip(flipped.iter()).map(|(&p, &q)| (op_f64(op))(p, q)).collect();
            assert_eq!(got, Some(want), "{op:?} x, x[::-1, ::-1]");
            let got = run::<f64>(op, &[flip_view.clone(), row_b.clone()], &[r, c]).into_vec::<f64>();
            let want: Vec<f64> = flipped.iter().enumerate().map(|(i, &p)| (op_f64(op))(p, row[i % c])).collect();
            assert_eq!(got, Some(want), "{op:?} x[::-1, ::-1], row");
        }
    }

    fn op_f64(op: MapOp) -> fn(f64, f64) -> f64 {
        match op {
            MapOp::Add => |p, q| p + q,
            MapOp::Sub => |p, q| p - q,
            MapOp::Mul => |p, q| p * q,
            _ => |p, q| p / q,
        }
    }

    #[test]
    fn integer_division_follows_numpy() {
        let a = Buf::from_vec(&[6], vec![7i32, -7, 7, -7, 5, i32::MIN]);
        let b = Buf::from_vec(&[6], vec![2i32, 2, -2, -2, 0, -1]);
        assert_eq!(
            run::<i32>(MapOp::FloorDiv, &[a.clone(), b.clone()], &[6]).into_vec::<i32>(),
            Some(vec![3, -4, -4, 3, 0, i32::MIN])
        );
        assert_eq!(run::<i32>(MapOp::Mod, &[a, b], &[6]).into_vec::<i32>(), Some(vec![1, 1, -1, -1, 0, 0]));
    }

    #[test]
    fn float_divmod_follows_numpy() {
        assert_eq!(divmod(-5.5, 2.0), (-3.0, 0.5));
        assert_eq!(divmod(5.0, -3.0), (-2.0, -1.0));
        assert_eq!(divmod(5.0, 0.0).0, f64::INFINITY);
        assert!(divmod(-5.0, 0.0).1.is_nan());
    }

    #[test]
    fn broadcasting_and_scalars() {
        let col = Buf::from_vec(&[2, 1], vec![1.0f64, 2.0]);
        let row = Buf::from_vec(&[3], vec![10.0f64, 20.0, 30.0]);
        let out = run::<f64>(MapOp::Add, &[col, row], &[2, 3]);
        assert_eq!(out.into_vec::<f64>(), Some(vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]));
        let s = Buf::scalar(2.0f64);
        let x = Buf::from_vec(&[2], vec![3.0f64, 4.0]);
        assert_eq!(run::<f64>(MapOp::Pow, &[x, s], &[2]).into_vec::<f64>(), Some(vec![9.0, 16.0]));
    }

    #[test]
    fn nan_propagates_through_minimum_and_clip() {
        let a = Buf::from_vec(&[3], vec![f64::NAN, 1.0, 5.0]);
        let b = Buf::from_vec(&[3], vec![0.0, f64::NAN, 2.0]);
        let m = run::<f64>(MapOp::Minimum, &[a.clone(), b], &[3]).into_vec::<f64>().unwrap_or_default();
        assert!(m[0].is_nan() && m[1].is_nan() && m[2] == 2.0);
        let c = run::<f64>(MapOp::Clip, &[a, Buf::scalar(0.5f64), Buf::scalar(3.0f64)], &[3])
            .into_vec::<f64>()
            .unwrap_or_default();
        assert!(c[0].is_nan() && c[1] == 1.0 && c[2] == 3.0);
    }

    #[test]
    fn reversed_views_materialize_in_logical_order() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), (0..6).map(|v| v as f64).collect())
            .unwrap_or_default()
            .into_shared();
        let mut r = a.clone();
        r.invert_axis(Axis(0));
        r.invert_axis(Axis(1));
        let m = materialize(&r, &[2, 3]);
        assert_eq!(m.as_slice().map(|s| s.to_vec()), Some(vec![5.0, 4.0, 3.0, 2.0, 1.0, 0.0]));
    }

    #[test]
    fn float_functions_use_the_fast_kernels_and_fall_back() {
        let x = vec![0.0, 1.0, -2.5, 1e300, f64::NAN, f64::INFINITY];
        let mut out = vec![0.0; x.len()];
        f64_function(MapOp::Cos, &x, &mut out);
        for (o, v) in out.iter().zip(&x) {
            assert!(o.to_bits() == v.cos().to_bits() || (o.is_nan() && v.cos().is_nan()), "{v}");
        }
        f64_function(MapOp::Log, &[1.0, 0.0, -1.0], &mut out[..3]);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], f64::NEG_INFINITY);
        assert!(out[2].is_nan());
    }
}
