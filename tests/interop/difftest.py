"""Differential testing of `dsk eval` against NumPy: a seeded random expression generator, a NumPy
oracle that carries a rigorous per-element error bound, a comparison, and a shrinker.

Usage (long campaigns)::

    DSK=target/release/dsk .venv/bin/python tests/interop/difftest.py --n 100000 --seed 7 --jobs 4
        [--schedulers sync,threads,processes] [--max-shrinks 200] [--keep-dir DIR] [--cases FILE]

Every failure is shrunk (greedily: a node replaced by a child or a leaf, index items dropped, literals
simplified, inputs swapped, options simplified, while it still fails with the same mismatch kind) and
printed as a shell command together with a Python line that recreates its inputs; the summary lists
the distinct shrunk failures.

How an expression is generated
------------------------------
Each seed has a few *input sets*: arrays named x y z u v w written with zarr-python (Zarr v2 and v3,
ragged chunks, sometimes sharded, F order, big-endian, other compressors, non-default fill values
with chunks left unwritten), of every dtype dsk reads (bool, int8..int64, uint8..uint64, float32,
float64), of shapes built around a base shape of 1 to 3 axes (length-1 and length-0 axes included)
so that most pairs broadcast. Float arrays hold mostly ordinary numbers plus "literal-like" values
(0.5, 2.5, 0.1, -0.0 ...); some float arrays hold NaN, +-inf, subnormals, tiny and huge values.

An expression tree (depth 1-5) is grown node by node *with its NumPy value attached*: every new node
is evaluated at once on the real data, so NumPy itself decides dtypes (NEP 50 weak literals,
promote_types, float16 rules, ...), shapes and validity; a node that NumPy refuses is re-drawn, except
that a few percent of expressions deliberately end in a refused operation (both must then refuse).
Literals are drawn from a small pool and re-used within an expression (the same literal as an
exponent and elsewhere), and every operator, function, method, reduction, scan, generator, index,
transpose, astype and rechunk of the language is drawn. Options are drawn too: --scheduler,
--workers, --memory (down to 512 bytes, which forces spilled partials and intermediates) and
--split-every.

Documented differences from NumPy (docs/expressions.md) are never generated, or the oracle expects
dsk's documented behaviour instead: integer `**` with a negative exponent is avoided; `astype` of a
float to an integer type expects dsk's saturating cast (NaN -> 0, out of range -> the type's min or
max, else truncation); where NumPy's result would be float16 the oracle computes in float32; the
integer reciprocal of 0 (undefined in NumPy) is avoided; `floor`/`ceil` of a bool (float32 in dsk's
docs, bool in NumPy 2.4) and `cumsum(axis=None)` on 2-D and more (refused by dsk) are avoided.

The oracle and its error model
------------------------------
Every node carries NumPy's value r and an array `err` (float64, r's shape) bounding
|r - dsk's value| element by element; err = inf marks an element *unstable*: not compared.
Integers and bools: err is 0 (must match exactly) or inf. Shapes and dtypes must always match
exactly, and where NumPy raises, dsk must exit non-zero with a `dsk: error:` line (and vice versa).

Float elements: NaN-ness, infinities (with sign) must match exactly where stable, finite values must
satisfy |dsk - r| <= err. The sign of zero is not compared. err is built bottom-up:

* Inputs, literals, ones/zeros/full, integer arange: err = 0 (exact).
* Element-wise continuous ops (+ - * / ** exp log sqrt arcsin ... minimum maximum clip abs astype):
  the operands' uncertainty intervals [v - err, v + err] are rounded outward in the operand's own
  dtype and the op is evaluated by NumPy at every corner of the box (for `**`, also at base 0 when
  the base interval straddles 0). These functions are monotone in each argument on the box (division
  whose denominator interval touches 0 is unstable; tan is unstable across a pole), so the corners
  bound the exact result; then  err = max|corner - r| + k ulp(r)  where ulp is in the result dtype
  and k covers the rounding of *both* implementations:
      k = 0  for exact ops (negation, abs, minimum/maximum/clip/where, indexing, transposes, casts)
             and for the correctly rounded ones: + - * / sqrt reciprocal and ** with a literal
             exponent 2, 0.5, -1, 1 or 0 (NumPy's fast paths x*x, sqrt, 1/x): rounding to the
             result dtype is monotone, so dsk's correctly rounded result lies between NumPy's
             (equally rounded) corner values. This is the one tight assumption: dsk rounds every
             operation to its result dtype, as NumPy does (float32 arithmetic is not carried out
             in float64 across several operations);
      k = 2  for other powers;
      k = 4  for exp expm1 log log1p log2 log10 sin cos tan arcsin arccos arctan (NumPy's SIMD
             kernels are documented <= 4 ulp, dsk's <= 1 ulp).
  sin and cos use their Lipschitz bound: err = min(err_in, 2) + 4 ulp.
  Exact cases get err 0 although k > 0: f(x0) at the special points sin(0) = 0, exp(0) = 1,
  log(1) = 0, ...; powers whose repeated products are exact (error-free products) and the
  C99 special cases (x ** +-inf, inf ** y, 1 ** y, x ** 0).
  If a corner's class (finite / +inf / -inf / NaN) differs from r's, the element is unstable; a
  finite r with |r| + err > the dtype's max is unstable (it could overflow in dsk).
* Discontinuous ops (comparisons, floor, ceil, round, sign, //, the integer part of %, casts to
  integer or bool, where's condition): the result is exact (err 0) if the op is constant over the
  corner box, else unstable. == and != are stable when both sides are exact or |a - b| exceeds
  err_a + err_b by a margin. floor/ceil/round of |x| >= 2**mantissa is the identity (err passes).
* Reductions along the reduced elements x_i with bounds e_i (n elements), u = unit roundoff of the
  accumulator of each implementation (NumPy: float32 for float32 data; dsk: the result dtype, a
  safe choice):
      sum:  sum(e_i) + 1.01 * n * (u_np + u_dsk) * sum|x_i|  + 2 ulp(r)   (any summation order)
      mean: the sum bound / n + 2 ulp;  nan-versions skip NaN (count = non-NaN elements)
      var:  with D = sum (x_i - m)^2, N = max(n - ddof, 0), delta = (n+1) u sum|x_i| / n:
            [2 sum |x_i - m|(e_i + ebar) + sum (e_i + ebar)^2                (propagated)
             + sum over both implementations of (n+4) u (D + n delta^2) + n delta^2
               + 4 (n+2) u max|x| sum|x_i - m|] / N  + 2 ulp               (two-pass and Chan)
            N = 0 gives inf when D - err_D > 0, NaN for no elements, else unstable.
      std:  min(sqrt(E), E / (sqrt(v) + sqrt(max(v - E, 0)))) + 2 ulp  with E the var bound
      prod: prod(|x_i| + e_i) - prod|x_i| + 1.01 n (u_np + u_dsk) prod(|x_i| + e_i); unstable if a
            partial product could over- or underflow (order dependent)
      cumsum/cumprod: the same bounds per prefix.
      min/max: max e_i; NaN propagation (and nan-versions skipping NaN) exact.
      argmin/argmax: stable only if the winner's interval is separated from every other element's
            (or both exact and the first-occurrence rule decides).
      any/all/count_nonzero: an element's truth is stable if |x| > e, or x == 0 with e == 0, or NaN.
  Any unstable element in a reduced slice makes the result unstable (any/all: unless decided by a
  stable element). A slice summing to more than the accumulator's max is unstable (overflow order).
  Exact reductions get no rounding term: a sum (mean, cumsum) whose elements are all multiples of
  2**L with sum|x| < 2**(L + p) (p = 24 if float32 is involved, else 53) is exact in any order; a
  product whose significant bits add up to <= p (and stays within the exponent range), or that has
  an exact zero factor, is exact; var/std of identical values with an exact mean are exactly 0.
  The sign of a zero is uncertain (err = the smallest subnormal, so that a later division by it is
  unstable) for a sum of only zeros with a -0.0, and for min/max/minimum/maximum/clip ties of
  -0.0 and +0.0.
* arange with a float step: (i + 2) ulp(max(|start|, |start + step|)) + 2 ulp; linspace:
  4 ulp(max(|start|, |stop|)) + 2 ulp (NumPy's and dsk's formulas may round differently); 0 for
  the elements where step, i*step and start + i*step are exactly representable (checked with
  fractions), and for linspace's last element (NumPy sets it to stop).

With inputs exact this is tight (a few ulp of the result for an element-wise chain, n u sum|x| for a
sum), so a wrong literal, dtype, element, chunk, rounding mode, floor-division sign or NaN rule is
caught; it is rigorous up to the stated per-op ulp constants (the only assumptions). The fraction of
unstable elements is reported (typically well under 1%).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import math
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DSK = os.path.abspath(os.environ.get("DSK", os.path.join(REPO, "target", "debug", "dsk")))
VERSION = "difftest-3"  # bump to invalidate cached input sets

F64 = np.dtype("float64")
F32 = np.dtype("float32")
DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]
INT_DTYPES = [d for d in DTYPES if d[0] in "iu"]
NAMES = ["x", "y", "z", "u", "v", "w"]


class NumpyRefuses(Exception):
    """NumPy raised: dsk must refuse the expression too."""


class DocDiff(Exception):
    """A documented difference between dsk and NumPy (or undefined NumPy behaviour): not generated."""


# ----------------------------------------------------------------------------------------------
# Expression trees and their text
# ----------------------------------------------------------------------------------------------

P_CMP, P_OR, P_XOR, P_AND, P_ADD, P_MUL, P_UNARY, P_POW, P_POST, P_ATOM = range(1, 11)
BIN_PREC = {"<": P_CMP, "<=": P_CMP, ">": P_CMP, ">=": P_CMP, "==": P_CMP, "!=": P_CMP, "|": P_OR, "^": P_XOR,
            "&": P_AND, "+": P_ADD, "-": P_ADD, "*": P_MUL, "/": P_MUL, "//": P_MUL, "%": P_MUL, "**": P_POW}


class Node:
    """An immutable expression node. `val` caches its oracle value (a Val or an exception) for the
    input set it was evaluated on (trees never move between input sets)."""

    __slots__ = ("kind", "args", "attrs", "val", "_text")

    def __init__(self, kind, args=(), **attrs):
        self.kind = kind
        self.args = tuple(args)
        self.attrs = attrs
        self.val = None
        self._text = None

    def with_args(self, args):
        return Node(self.kind, args, **self.attrs)

    def with_attrs(self, **kw):
        a = dict(self.attrs)
        a.update(kw)
        return Node(self.kind, self.args, **a)

    def size(self):
        return 1 + sum(c.size() for c in self.args)

    def text(self):
        if self._text is None:
            self._text = render(self)[0]
        return self._text

    def __repr__(self):
        return f"Node({self.text()!r})"


def fmt_lit(v):
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(float(v))


def fmt_tuple(t):
    t = tuple(t)
    if len(t) == 1:
        return f"({t[0]},)"
    return "(" + ", ".join(str(i) for i in t) + ")"


def fmt_axis(a):
    return fmt_tuple(a) if isinstance(a, tuple) else str(a)


def paren(node, minprec):
    t, p = render(node)
    return f"({t})" if p < minprec else t


def render(n):
    """(text, precedence) of a node, with the fewest parentheses Python's grammar needs."""
    k, a = n.kind, n.attrs
    if k == "in":
        return a["name"], P_ATOM
    if k == "lit":
        t = a.get("text") or fmt_lit(a["value"])
        return t, (P_UNARY if t.startswith("-") else P_ATOM)
    if k == "gen":
        return render_gen(a), P_POST
    if k == "bin":
        op = a["op"]
        p = BIN_PREC[op]
        if op == "**":
            return f"{paren(n.args[0], P_POST)} ** {paren(n.args[1], P_UNARY)}", p
        if p == P_CMP:
            return f"{paren(n.args[0], P_CMP + 1)} {op} {paren(n.args[1], P_CMP + 1)}", p
        return f"{paren(n.args[0], p)} {op} {paren(n.args[1], p + 1)}", p
    if k == "un":
        return f"{a['op']}{paren(n.args[0], P_POW)}", P_UNARY
    if k == "call":
        if a.get("method"):
            return f"{paren(n.args[0], P_POST)}.{a['fn']}()", P_POST
        return f"{a['fn']}({render(n.args[0])[0]})", P_POST
    if k == "call2":
        return f"{a['fn']}({render(n.args[0])[0]}, {render(n.args[1])[0]})", P_POST
    if k == "clip":
        x, lo, hi = (render(c)[0] for c in n.args)
        if a.get("method"):
            return f"{paren(n.args[0], P_POST)}.clip({lo}, {hi})", P_POST
        return f"clip({x}, {lo}, {hi})", P_POST
    if k == "where":
        return "where(" + ", ".join(render(c)[0] for c in n.args) + ")", P_POST
    if k == "astype":
        if a.get("method"):
            return f"{paren(n.args[0], P_POST)}.astype('{a['dtype']}')", P_POST
        return f"astype({render(n.args[0])[0]}, '{a['dtype']}')", P_POST
    if k == "round":
        dec = "" if a.get("decimals") is None else str(a["decimals"])
        if a.get("method"):
            return f"{paren(n.args[0], P_POST)}.round({dec})", P_POST
        return f"round({render(n.args[0])[0]}{', ' + dec if dec else ''})", P_POST
    if k == "T":
        form, perm = a["form"], a.get("perm")
        x = paren(n.args[0], P_POST)
        if form == "T":
            return f"{x}.T", P_POST
        if form == "meth":
            return f"{x}.transpose({', '.join(map(str, perm))})", P_POST
        if form == "methtuple":
            return f"{x}.transpose({fmt_tuple(perm)})", P_POST
        if form == "func":
            return f"transpose({render(n.args[0])[0]}, {fmt_tuple(perm)})", P_POST
        if form == "methnone":
            return f"{x}.transpose()", P_POST
        return f"transpose({render(n.args[0])[0]})", P_POST
    if k == "idx":
        items = []
        for it in a["items"]:
            if it[0] == "i":
                items.append(str(it[1]))
            elif it[0] == "e":
                items.append("...")
            else:
                _, s0, s1, st = it
                t = ("" if s0 is None else str(s0)) + ":" + ("" if s1 is None else str(s1))
                if st is not None:
                    t += ":" + str(st)
                items.append(t)
        return f"{paren(n.args[0], P_POST)}[{', '.join(items)}]", P_POST
    if k == "rechunk":
        if a.get("method"):
            return f"{paren(n.args[0], P_POST)}.rechunk({fmt_tuple(a['chunks'])})", P_POST
        return f"rechunk({render(n.args[0])[0]}, {fmt_tuple(a['chunks'])})", P_POST
    if k in ("red", "scan"):
        kws = []
        if a.get("axis", "omit") != "omit":
            kws.append(f"axis={'None' if a['axis'] is None else fmt_axis(a['axis'])}")
        if a.get("ddof"):
            kws.append(f"ddof={a['ddof']}")
        if a.get("keepdims"):
            kws.append("keepdims=True")
        if a.get("method"):
            return f"{paren(n.args[0], P_POST)}.{a['op']}({', '.join(kws)})", P_POST
        return f"{a['op']}({', '.join([render(n.args[0])[0]] + kws)})", P_POST
    raise ValueError(k)


def render_gen(a):
    fn = a["fn"]
    kw = []
    if a.get("chunks") is not None:
        kw.append(f"chunks={fmt_tuple(a['chunks'])}")
    if a.get("dtype") is not None:
        kw.append(f"dtype='{a['dtype']}'")
    if fn in ("ones", "zeros"):
        sh = str(a["shape"][0]) if a.get("bare") else fmt_tuple(a["shape"])
        pos = [sh]
    elif fn == "full":
        pos = [fmt_tuple(a["shape"]), fmt_lit(a["value"])]
    elif fn == "arange":
        pos = [fmt_lit(v) for v in a["params"]]
    else:  # linspace
        pos = [fmt_lit(a["start"]), fmt_lit(a["stop"]), str(a["num"])]
    return f"{fn}({', '.join(pos + kw)})"


def inputs_of(node, acc=None):
    acc = set() if acc is None else acc
    if node.kind == "in":
        acc.add(node.attrs["name"])
    for c in node.args:
        inputs_of(c, acc)
    return acc


# ----------------------------------------------------------------------------------------------
# Values with error bounds
# ----------------------------------------------------------------------------------------------


class Val:
    """NumPy's value (an ndarray, or a Python scalar for a weak literal) and the bound `e` on
    |NumPy - dsk| (float64 array of v's shape; inf = unstable)."""

    __slots__ = ("v", "e")

    def __init__(self, v, e):
        self.v = v
        self.e = e

    @property
    def weak(self):
        return not isinstance(self.v, np.ndarray)

    @property
    def shape(self):
        return () if self.weak else self.v.shape

    @property
    def dtype(self):
        return None if self.weak else self.v.dtype


def exact(v):
    v = np.asarray(v)
    return Val(v, np.zeros(v.shape))


def is_f(v):
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def bcast_e(val, shape):
    if val.weak:
        return np.zeros(shape)
    return np.broadcast_to(val.e, shape)


def ulp(r):
    """ulp of r in r's own float dtype, as float64 (0 where r is not finite)."""
    a = np.abs(r)
    with np.errstate(all="ignore"):
        s = np.spacing(a).astype(F64)
    return np.where(np.isfinite(a), s, 0.0)


def fclass(x):
    x = np.asarray(x)
    c = np.zeros(x.shape, np.int8)
    c[np.isnan(x)] = 3
    c[x == np.inf] = 1
    c[x == -np.inf] = 2
    return c


def perturb(v, e):
    """The outward-rounded interval ends [v - e, v + e] in v's own dtype (infinite v stays)."""
    e = np.where(np.isfinite(e), e, 0.0)
    dt = v.dtype
    v64 = v.astype(F64)
    pos = (e > 0) & np.isfinite(v64)
    lo = (v64 - e).astype(dt)
    hi = (v64 + e).astype(dt)
    lo = np.where(pos, np.nextafter(lo, np.array(-np.inf, dt)), v)
    hi = np.where(pos, np.nextafter(hi, np.array(np.inf, dt)), v)
    return lo.astype(dt), hi.astype(dt)


def corner_results(fn, vals, extra=None):
    """fn evaluated at every corner of the operands' uncertainty boxes (only float arrays with some
    positive error are perturbed). extra: {arg index: additional candidate array}."""
    idx = [i for i, a in enumerate(vals) if is_f(a.v) and np.any((a.e > 0) & np.isfinite(a.e))]
    if not idx:
        return []
    pts = {}
    for i in idx:
        lo, hi = perturb(vals[i].v, vals[i].e)
        pts[i] = [lo, hi] + ([extra[i]] if extra and i in extra else [])
    out = []
    for combo in itertools.product(*[pts[i] for i in idx]):
        args = [a.v for a in vals]
        for j, i in enumerate(idx):
            args[i] = combo[j]
        out.append(np.asarray(fn(*args)))
    return out


def bad_mask(vals, shape):
    bad = np.zeros(shape, bool)
    for a in vals:
        if not a.weak:
            bad |= np.broadcast_to(np.isinf(a.e), shape)
    return bad


def finish_float(r, err, unstable):
    """Final per-element rule for float results: non-finite stable elements get err 0, near-overflow
    elements become unstable."""
    err = np.array(np.broadcast_to(err, r.shape), dtype=F64)
    with np.errstate(all="ignore"):
        mx = float(np.finfo(r.dtype).max)
        fin = np.isfinite(r)
        unstable = unstable | (fin & (np.abs(r.astype(F64)) + err > mx)) | np.isnan(err)
    err[~fin] = 0.0
    err[unstable] = np.inf
    return Val(r, err)


def numpy_call(fn, *args):
    try:
        with np.errstate(all="ignore"):
            return fn(*args)
    except (DocDiff, NumpyRefuses):
        raise
    except Exception as ex:  # TypeError, ValueError, OverflowError, AxisError, IndexError, ...
        raise NumpyRefuses(f"{type(ex).__name__}: {ex}") from None


def two_sum_err(a, b):
    s = a + b
    bb = s - a
    return (a - (s - bb)) + (b - bb)


def split(a):
    c = 134217729.0 * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod_err(a, b, p):
    ah, al = split(a)
    bh, bl = split(b)
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def exact_pow_mask(vals, r):
    """x ** y elements computed exactly by any faithful pow: y == 0, x == 1, x == 0 with y > 0, and
    small integer powers whose repeated products are exact (checked with error-free products)."""
    x, y = vals
    shape = r.shape
    xv = np.broadcast_to(np.asarray(x.v, dtype=F64), shape)
    yv = np.broadcast_to(np.asarray(y.v, dtype=F64), shape)
    r64 = r.astype(F64)
    with np.errstate(all="ignore"):
        # C99 Annex F special cases are exact; so are 0 ** positive and 1 ** anything
        ex = (yv == 0) | (xv == 1) | ((xv == 0) & (yv > 0)) | ~np.isfinite(yv) | ~np.isfinite(xv)
        ok = (np.abs(xv) < 1e70) & (np.abs(xv) > 1e-70)
        p2 = xv * xv
        e2 = ok & (two_prod_err(xv, xv, p2) == 0)
        p3 = p2 * xv
        e3 = e2 & (two_prod_err(p2, xv, p3) == 0)
        p4 = p2 * p2
        e4 = e2 & (two_prod_err(p2, p2, p4) == 0)
        for n, pn, en in ((2, p2, e2), (3, p3, e3), (4, p4, e4)):
            ex |= (yv == n) & en & (pn == r64)
            q = 1.0 / pn
            ex |= (yv == -n) & en & (np.abs(pn) < 1e70) & (two_prod_err(q, pn, q * pn) == 0) & (q * pn == 1.0) & (q == r64)
    return ex


EXACT_POINTS = {"sin": (0.0, 0.0), "tan": (0.0, 0.0), "arcsin": (0.0, 0.0), "arctan": (0.0, 0.0), "expm1": (0.0, 0.0),
                "log1p": (0.0, 0.0), "exp": (0.0, 1.0), "cos": (0.0, 1.0), "log": (1.0, 0.0), "log2": (1.0, 0.0),
                "log10": (1.0, 0.0), "arccos": (1.0, 0.0)}


def exact_point_fn(fn):
    x0, y0 = EXACT_POINTS[fn]

    def f(vals, r):
        xv = np.broadcast_to(np.asarray(vals[0].v, dtype=F64), r.shape)
        return (xv == x0) & (r == y0)
    return f


def ew(fn, vals, mode="lin", k=0, extra=None, pre_unstable=None, exact_fn=None):
    """Apply an element-wise NumPy function with the error model `mode`:
    lin  - continuous and monotone in each argument on the box: corners bound the value;
    step - piecewise constant and monotone: stable (exact) if constant over the box;
    eq   - == / != ;  lip - Lipschitz-1 single argument (sin, cos)."""
    r = numpy_call(fn, *[a.v for a in vals])
    if all(a.weak for a in vals) and not isinstance(r, np.generic):
        return Val(r, 0.0)  # Python arithmetic on literals: stays a weak Python scalar
    r = np.asarray(r)
    if r.dtype == np.float16:
        raise DocDiff("float16 result")  # callers convert first; anything left is not generated
    shape = r.shape
    bad = bad_mask(vals, shape)
    if pre_unstable is not None:
        bad = bad | pre_unstable
    if r.dtype.kind != "f" and all(a.weak or a.v.dtype.kind != "f" for a in vals):
        e = np.zeros(shape)
        e[bad] = np.inf
        return Val(r, e)
    if mode == "lin" and r.dtype.kind != "f":
        mode = "step"
    with np.errstate(all="ignore"):
        if mode == "eq":
            a, b = vals
            av = np.broadcast_to(np.asarray(a.v, dtype=F64) if not a.weak else np.float64(a.v), shape)
            bv = np.broadcast_to(np.asarray(b.v, dtype=F64) if not b.weak else np.float64(b.v), shape)
            ea, eb = bcast_e(a, shape), bcast_e(b, shape)
            sp = np.maximum(np.spacing(np.abs(av)), np.spacing(np.abs(bv)))
            if any(not x.weak and x.v.dtype == F32 for x in vals):
                sp = np.maximum(sp, np.spacing(np.abs(av).astype(F32)).astype(F64))
            ok = ((ea == 0) & (eb == 0)) | np.isnan(av) | np.isnan(bv) | (np.abs(av - bv) > 1.01 * (ea + eb) + 2 * sp)
            e = np.zeros(shape)
            e[bad | ~ok] = np.inf
            return Val(r, e)
        if mode == "step":
            cs = corner_results(fn, vals, extra)
            uns = bad.copy()
            for c in cs:
                c = np.broadcast_to(c, shape)
                same = (c == r) | (np.isnan(c) & np.isnan(r)) if r.dtype.kind == "f" else (c == r)
                uns |= ~same
            e = np.zeros(shape)
            e[uns] = np.inf
            return Val(r, e) if r.dtype.kind != "f" else finish_float(r, e, uns)
        if mode == "lip":
            (a,) = vals
            ea = bcast_e(a, shape)
            e = np.minimum(np.where(np.isfinite(ea), ea, np.inf), 2.0) + k * ulp(r)
            return finish_float(r, e, bad)
        # lin
        cs = corner_results(fn, vals, extra)
        rc = fclass(r)
        uns = bad.copy()
        spread = np.zeros(shape)
        r64 = r.astype(F64)
        for c in cs:
            c = np.broadcast_to(c, shape)
            uns |= fclass(c) != rc
            d = np.abs(c.astype(F64) - r64)
            spread = np.maximum(spread, np.where(np.isfinite(d), d, 0.0))
        e = spread * (1 + 1e-12) + k * ulp(r)
        if exact_fn is not None and k:
            inexact_in = np.zeros(shape, bool)
            for a in vals:
                if not a.weak:
                    inexact_in |= np.broadcast_to(a.e != 0, shape)
            e = np.where(~inexact_in & exact_fn(vals, r), 0.0, e)
        return finish_float(r, e, uns)


# ----------------------------------------------------------------------------------------------
# The oracle: evaluate a tree
# ----------------------------------------------------------------------------------------------

UNARY_FUNCS = ["sin", "cos", "tan", "arcsin", "arccos", "arctan", "exp", "expm1", "log", "log1p", "log10", "log2",
               "sqrt", "abs", "sign", "floor", "ceil", "isnan", "isfinite", "reciprocal"]
TRANSC = {"sin", "cos", "tan", "arcsin", "arccos", "arctan", "exp", "expm1", "log", "log1p", "log10", "log2"}
RED_OPS = ["sum", "prod", "nansum", "nanprod", "mean", "nanmean", "var", "std", "nanvar", "nanstd", "min", "max",
           "nanmin", "nanmax", "argmin", "argmax", "any", "all", "count_nonzero"]
BINOPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
          "//": lambda a, b: a // b, "%": lambda a, b: a % b, "**": lambda a, b: a ** b,
          "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
          "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "&": lambda a, b: a & b, "|": lambda a, b: a | b,
          "^": lambda a, b: a ^ b}


def to_np(x):
    """NumPy scalars become 0-d arrays (strong); Python scalars stay (weak)."""
    if isinstance(x, (np.ndarray, bool, int, float)):
        return x
    return np.asarray(x)


def evaluate(node, env):
    """The oracle value (Val) of `node` on input set `env` (name -> ndarray); raises NumpyRefuses or
    DocDiff. Values are cached on the nodes."""
    if node.val is not None:
        if isinstance(node.val, Exception):
            raise node.val
        return node.val
    try:
        args = [evaluate(c, env) for c in node.args]
        val = apply_node(node, args, env)
    except (NumpyRefuses, DocDiff) as ex:
        node.val = ex
        raise
    node.val = val
    return val


def float16_inputs(x):
    """NumPy gives float16 for math on int8/uint8/bool; dsk gives float32 (documented)."""
    if not x.weak and x.v.dtype.kind in "biu" and x.v.dtype.itemsize == 1:
        return Val(x.v.astype(F32), x.e)
    return x


def saturating_cast(v, dt):
    """dsk's documented float -> integer cast: NaN -> 0, out of range -> min/max, else truncation."""
    dt = np.dtype(dt)
    info = np.iinfo(dt)
    v64 = np.asarray(v, dtype=F64)
    t = np.trunc(v64)
    out = np.zeros(v64.shape, dt)
    lo_mask = t <= float(info.min)
    hi_mask = t >= float(info.max)  # float(max) rounds up for 64-bit types: >= catches it
    mid = ~np.isnan(t) & ~lo_mask & ~hi_mask
    out[mid] = t[mid].astype(dt)
    out[lo_mask] = info.min
    out[hi_mask] = info.max
    return out


def apply_node(node, args, env):
    k, a = node.kind, node.attrs
    if k == "in":
        return exact(env[a["name"]])
    if k == "lit":
        return Val(a["value"], 0.0)
    if k == "gen":
        return eval_gen(a)
    if k == "bin":
        return eval_bin(a["op"], args[0], args[1])
    if k == "un":
        x, op = args[0], a["op"]
        if x.weak:
            if op == "-" and isinstance(x.v, (int, float)) and not isinstance(x.v, bool):
                return Val(-x.v, 0.0)
            raise DocDiff("unary op on a Python literal")
        fn = {"-": np.negative, "+": np.positive, "~": np.invert}[op]
        return ew(fn, [x], "lin", 0)
    if k == "call":
        return eval_func(a["fn"], args[0])
    if k == "call2":
        fn = np.minimum if a["fn"] == "minimum" else np.maximum
        if args[0].weak and args[1].weak:
            raise DocDiff("minimum/maximum of two literals")
        val = ew(fn, args, "lin", 0)
        return signed_zero_uncertain(val, args)
    if k == "clip":
        x, lo, hi = args
        if x.weak:
            raise DocDiff("clip of a literal")
        for b in (lo, hi):
            if b.weak and isinstance(b.v, float) and math.isnan(b.v):
                raise DocDiff("NaN clip bound")
        val = ew(lambda p, q, s: np.clip(p, q, s), args, "lin", 0)
        return signed_zero_uncertain(val, args)
    if k == "where":
        return eval_where(*args)
    if k == "astype":
        return eval_astype(args[0], a["dtype"])
    if k == "round":
        return eval_round(args[0], a.get("decimals"))
    if k == "idx":
        x = args[0]
        if x.weak:
            raise DocDiff("indexing a literal")
        key = tuple(it[1] if it[0] == "i" else Ellipsis if it[0] == "e" else slice(it[1], it[2], it[3])
                    for it in a["items"])
        v = numpy_call(lambda: x.v[key])
        return Val(np.asarray(v), np.asarray(np.broadcast_to(x.e, x.v.shape)[key]))
    if k == "T":
        x = args[0]
        if x.weak:
            raise DocDiff("transposing a literal")
        perm = None if a["form"] in ("T", "funcnone", "methnone") else a.get("perm")
        v = numpy_call(np.transpose, x.v, perm)
        return Val(np.asarray(v), np.transpose(np.broadcast_to(x.e, x.v.shape), perm))
    if k == "rechunk":
        x = args[0]
        if x.weak or len(a["chunks"]) != x.v.ndim:
            raise DocDiff("rechunk arity")
        return x
    if k == "red":
        return eval_reduce(a["op"], args[0], a.get("axis", "omit"), a.get("keepdims", False), a.get("ddof", 0))
    if k == "scan":
        return eval_scan(a["op"], args[0], a.get("axis", "omit"))
    raise ValueError(k)


def signed_zero_uncertain(val, args):
    """minimum/maximum/clip of -0.0 and +0.0 may return either zero: where the result is 0 and the
    operands hold zeros of both signs, mark its sign as uncertain (a later division by it becomes
    unstable)."""
    if not (isinstance(val.v, np.ndarray) and val.v.dtype.kind == "f"):
        return val
    z = (val.v == 0) & (val.e == 0)
    if not z.any():
        return val
    shape = val.v.shape
    pos = np.zeros(shape, bool)
    neg = np.zeros(shape, bool)
    for a in args:
        av = np.broadcast_to(np.asarray(a.v, dtype=F64) if a.weak else a.v.astype(F64), shape)
        pos |= (av == 0) & ~np.signbit(av)
        neg |= (av == 0) & np.signbit(av)
    amb = z & pos & neg
    if not amb.any():
        return val
    e = val.e.copy()
    e[amb] = float(np.finfo(val.v.dtype).smallest_subnormal)
    return Val(val.v, e)


def eval_gen(a):
    fn = a["fn"]
    dt = a.get("dtype")
    if fn in ("ones", "zeros"):
        v = numpy_call(getattr(np, fn), tuple(a["shape"]), dt or "float64")
        return exact(v)
    if fn == "full":
        v = numpy_call(np.full, tuple(a["shape"]), a["value"], dt)
        return exact(v)
    if fn == "arange":
        args = a["params"]
        v = np.asarray(numpy_call(lambda: np.arange(*args, dtype=dt)))
        if v.dtype.kind != "f":
            return exact(v)
        start = float(args[0]) if len(args) > 1 else 0.0
        step = float(args[2]) if len(args) > 2 else 1.0
        base = max(abs(start), abs(start + step))
        i = np.arange(v.size, dtype=F64)
        e = (i + 2) * float(np.spacing(np.asarray(base, v.dtype))) + 2 * ulp(v)
        e = np.where(grid_exact(start, Fraction(step), v.size, v.dtype), 0.0, e)
        return finish_float(v, e, np.zeros(v.shape, bool))
    if fn == "linspace":
        v = np.asarray(numpy_call(lambda: np.linspace(a["start"], a["stop"], a["num"], dtype=dt)))
        base = max(abs(float(a["start"])), abs(float(a["stop"])))
        e = 4 * float(np.spacing(np.asarray(base, v.dtype))) + 2 * ulp(v)
        n = a["num"]
        if n > 1:
            step = (Fraction(float(a["stop"])) - Fraction(float(a["start"]))) / (n - 1)
            e = np.where(grid_exact(float(a["start"]), step, n, v.dtype), 0.0, e)
            e[-1] = 0.0  # NumPy sets the last element to stop
        elif n == 1:
            e[:] = 0.0
        return finish_float(v, e, np.zeros(v.shape, bool))
    raise ValueError(fn)


def representable(q, dt):
    try:
        f = float(q)
    except OverflowError:
        return False
    return math.isfinite(f) and Fraction(float(np.asarray(f, dt))) == q


def grid_exact(start, step, n, dt):
    """Elements start + i*step (exact rationals) whose step, i*step and value are all exactly
    representable in dt: every reasonable formula computes them exactly."""
    st = Fraction(start)
    out = np.zeros(n, bool)
    if not (representable(st, dt) and representable(step, dt)):
        return out
    for i in range(n):
        out[i] = representable(i * step, dt) and representable(st + i * step, dt)
    return out


def eval_bin(op, x, y):
    fn = BINOPS[op]
    if x.weak and y.weak:
        # Python arithmetic between literals (weak result); keep it simple and well defined
        if op not in ("+", "-", "*") or isinstance(x.v, bool) or isinstance(y.v, bool):
            raise DocDiff("literal-literal op")
        return Val(fn(x.v, y.v), 0.0)
    numpy_call(fn, x.v, y.v)  # NumPy's verdict first (broadcasting, types, out-of-range literals)
    kinds = [("f" if isinstance(t.v, float) else "i") if t.weak else t.v.dtype.kind for t in (x, y)]
    allint = all(kd in "biu" for kd in kinds)
    if op == "**" and allint:
        yv = y.v
        if (np.asarray(yv) < 0).any():
            raise DocDiff("integer ** negative")
    if op in ("<", "<=", ">", ">="):
        return ew(fn, [x, y], "step")
    if op in ("==", "!="):
        return ew(fn, [x, y], "eq")
    if op in ("&", "|", "^"):
        return ew(fn, [x, y], "lin", 0)
    if allint:
        return ew(fn, [x, y], "lin", 0)
    # float arithmetic
    if op in ("+", "-", "*"):
        return ew(fn, [x, y], "lin", 0)  # correctly rounded in both: the corners bound it
    if op == "/":
        return ew(fn, [x, y], "lin", 0, pre_unstable=straddles_zero(y, x))
    if op == "//":
        return ew(fn, [x, y], "step", pre_unstable=straddles_zero(y, x))
    if op == "%":
        q = ew(lambda p, s: p // s, [x, y], "step", pre_unstable=straddles_zero(y, x))
        uns = ~np.isfinite(q.e) if isinstance(q.e, np.ndarray) else None
        if is_f(x.v) or is_f(y.v):
            # a quotient beyond 2**52 leaves nothing of the dividend's digits in the remainder:
            # any error in the dividend moves it anywhere in [0, divisor)
            shape = np.broadcast_shapes(x.shape, y.shape)
            with np.errstate(all="ignore"):
                big = np.abs(np.asarray(x.v, dtype=F64) / np.asarray(y.v, dtype=F64)) > 2.0 ** 52
            big = np.broadcast_to(big & (np.broadcast_to(np.asarray(x.e, dtype=F64), big.shape) > 0), shape)
            uns = big if uns is None else (np.broadcast_to(uns, shape) | big)
        return ew(fn, [x, y], "lin", 0, pre_unstable=uns)
    if op == "**":
        return eval_pow(x, y)
    raise ValueError(op)


def straddles_zero(y, other):
    """Elements where the divisor's interval touches 0 (its sign or zero-ness is not certain)."""
    if y.weak or y.v.dtype.kind != "f":
        return None
    shape = np.broadcast_shapes(y.v.shape, other.shape)
    yv = np.broadcast_to(y.v, shape).astype(F64)
    ye = np.broadcast_to(y.e, shape)
    return (ye > 0) & (np.abs(yv) <= ye)


def eval_pow(x, y):
    fn = BINOPS["**"]
    extra = {}
    pre = None
    if is_f(x.v):
        shape = np.broadcast_shapes(x.shape, y.shape)
        xv = x.v.astype(F64)
        st = (x.e > 0) & (np.abs(xv) <= x.e)
        if st.any():
            extra[0] = np.where(st, np.zeros((), x.v.dtype), x.v).astype(x.v.dtype)
            yneg = np.broadcast_to(np.asarray(y.v, dtype=F64) < 0, shape)
            pre = np.broadcast_to(st, shape) & yneg
    # a negative base to an uncertain exponent: whether the exponent is an integer (a real
    # result) or not (NaN) is itself uncertain
    if is_f(x.v) or is_f(y.v):
        shape = np.broadcast_shapes(x.shape, y.shape)
        xv = np.broadcast_to(np.asarray(x.v, dtype=F64) - np.asarray(x.e, dtype=F64), shape)
        ye = np.broadcast_to(np.asarray(y.e, dtype=F64), shape)
        neg = (xv < 0) & (ye > 0)
        if neg.any():
            pre = neg if pre is None else (pre | neg)
    # NumPy's fast paths for a scalar exponent: x*x, sqrt, 1/x, x, 1 (correctly rounded: k = 0)
    fast = y.weak and not isinstance(y.v, bool) and y.v in (2, 0.5, -1, 1, 0)
    return ew(fn, [x, y], "lin", 0 if fast else 2, extra=extra or None, pre_unstable=pre, exact_fn=exact_pow_mask)


def eval_func(fn, x):
    # (a function of a literal gives a strong NumPy scalar, as in NumPy: np.sin(0) is float64)
    if fn == "isnan":
        return ew(np.isnan, [x], "lin", 0)
    if fn == "isfinite":
        return ew(np.isfinite, [x], "lin", 0)
    if fn in ("floor", "ceil"):
        return eval_stepfunc(getattr(np, fn), x)
    if fn == "sign":
        return ew(np.sign, [x], "step")
    if fn == "abs":
        return ew(np.abs, [x], "lin", 0)
    if fn == "reciprocal":
        if not x.weak and x.v.dtype.kind in "biu" and not np.all(x.v != 0):
            raise DocDiff("integer reciprocal of 0 is undefined in NumPy")
        if x.weak and not isinstance(x.v, float):
            raise DocDiff("reciprocal of an int literal")
        return ew(np.reciprocal, [x], "lin", 0, pre_unstable=straddles_zero(x, x) if not x.weak else None)
    x = float16_inputs(x)
    f = getattr(np, fn)
    if fn in ("sin", "cos"):
        val = ew(f, [x], "lip", 4)
        if is_f(x.v):
            ex = exact_point_fn(fn)([x], val.v) & (np.broadcast_to(x.e, x.v.shape) == 0)
            val = Val(val.v, np.where(ex, 0.0, val.e))
        return val
    if fn == "tan":
        pre = None
        if is_f(x.v):
            xv = x.v.astype(F64)
            e = np.where(np.isfinite(x.e), x.e, 0)
            pre = (e > 0) & (np.floor((xv - e) / np.pi - 0.5) != np.floor((xv + e) / np.pi - 0.5))
        return ew(f, [x], "lin", 4, pre_unstable=pre, exact_fn=exact_point_fn(fn))
    if fn == "sqrt":
        return ew(f, [x], "lin", 0)
    return ew(f, [x], "lin", 4, exact_fn=exact_point_fn(fn))


def eval_stepfunc(f, x, decimals=None):
    """floor/ceil/round: piecewise constant, the identity on |x| >= 2**mantissa."""
    g = f if decimals is None else (lambda p: np.round(p, decimals))
    val = ew(g, [x], "step")
    if is_f(x.v) and decimals is None and isinstance(val.e, np.ndarray):
        big = 2.0 ** np.finfo(x.v.dtype).nmant
        e = np.where(np.isfinite(x.e), x.e, np.inf)
        ident = np.isinf(val.e) & np.isfinite(e) & (np.abs(x.v.astype(F64)) - e >= big)
        if ident.any():
            ne = val.e.copy()
            ne[ident] = e[ident]
            return Val(val.v, ne)
    return val


def eval_round(x, decimals):
    if not x.weak and x.v.dtype == np.bool_:
        # NumPy gives float16; dsk float32 (documented)
        return exact(np.round(x.v.astype(F32))) if decimals is None else Val(
            np.round(x.v.astype(F32), decimals), x.e)
    if x.weak:
        raise DocDiff("round of a literal")
    return eval_stepfunc(np.round, x, decimals)


def eval_where(c, x, y):
    if c.weak or c.v.dtype != np.bool_:
        raise DocDiff("where with a non-bool condition")
    if x.weak and y.weak and (isinstance(x.v, bool) or isinstance(y.v, bool)):
        raise DocDiff("where of bool literals")
    r = np.asarray(numpy_call(np.where, c.v, x.v, y.v))
    # NumPy's where casts weak literals unsafely (where(b, u8, 300) is uint8 44): refuse that corner
    for t in (x, y):
        if t.weak and r.dtype.kind in "iu" and isinstance(t.v, int):
            info = np.iinfo(r.dtype)
            if not info.min <= t.v <= info.max:
                raise DocDiff("where with an out-of-range literal")
    shape = r.shape
    cond = np.broadcast_to(c.v, shape).astype(bool)
    e = np.where(cond, bcast_e(x, shape), bcast_e(y, shape))
    e = np.where(np.broadcast_to(np.isinf(c.e), shape), np.inf, e)
    if r.dtype.kind == "f":
        return finish_float(r, e, np.isinf(e))
    return Val(r, np.where(np.isinf(e), np.inf, 0.0))


def eval_astype(x, dt):
    dt = np.dtype(dt)
    if x.weak:
        raise DocDiff("astype of a literal")
    src = x.v.dtype
    if src.kind == "f" and dt.kind in "iu":
        return ew(lambda p: saturating_cast(p, dt), [x], "step")
    if src.kind == "f" and dt.kind == "b":
        v = x.v.astype(bool)
        e = np.where(np.isfinite(x.e), x.e, np.inf)
        ok = np.isnan(x.v) | (np.abs(x.v.astype(F64)) > e) | ((x.v == 0) & (e == 0))
        return Val(v, np.where(ok, 0.0, np.inf))
    return ew(lambda p: p.astype(dt), [x], "lin", 0)


# --- reductions -------------------------------------------------------------------------------


def norm_axes(axis, ndim):
    if axis is None or axis == "omit":
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        return tuple(sorted(a % ndim for a in axis))
    return (axis % ndim,)


def moved(arr, axes, ndim):
    """arr with `axes` moved to the end and merged: shape (kept..., n)."""
    rest = [i for i in range(ndim) if i not in axes]
    t = np.transpose(arr, rest + list(axes))
    n = int(np.prod([arr.shape[i] for i in axes], dtype=np.int64)) if axes else 1
    return t.reshape(t.shape[: len(rest)] + (n,))


def acc_u(op_dtype_in, res_dtype):
    """unit roundoffs (NumPy's accumulator, dsk's) for a float reduction."""
    u_np = np.finfo(F32).eps / 2 if op_dtype_in == F32 else np.finfo(F64).eps / 2
    u_dsk = np.finfo(res_dtype).eps / 2
    return float(u_np), float(u_dsk)


def int_as_float(v):
    """integers as float64 plus their conversion error (for mean/var of integers)."""
    X = v.astype(F64)
    E = np.zeros(X.shape)
    if v.dtype.kind in "iu" and v.dtype.itemsize == 8:
        E = np.where(np.abs(X) >= 2.0 ** 53, np.spacing(np.abs(X)), 0.0)
    return X, E


def lsb_exp(X):
    """The exponent of the lowest set bit of each finite nonzero float (a large number for 0 and
    non-finite values): X is a multiple of 2**lsb_exp."""
    Xf = np.where(np.isfinite(X) & (X != 0), X, 1.0).astype(F64)
    mant, ex = np.frexp(Xf)
    m = np.abs(mant * 2.0 ** 53).astype(np.int64)
    low = m & -m
    tz = np.log2(low.astype(F64)).astype(np.int64)
    out = ex.astype(np.int64) - 53 + tz
    return np.where(np.isfinite(X) & (X != 0), out, 10 ** 6)


def sig_bits(X):
    """Significant bits of each finite nonzero float (0 for zeros)."""
    Xf = np.where(np.isfinite(X) & (X != 0), X, 1.0).astype(F64)
    mant, _ = np.frexp(Xf)
    m = np.abs(mant * 2.0 ** 53).astype(np.int64)
    low = m & -m
    tz = np.log2(low.astype(F64)).astype(np.int64)
    return np.where(np.isfinite(X) & (X != 0), 53 - tz, 0)


def exact_sum_mask(X, prec, cumulative=False):
    """Slices (or prefixes) whose every partial sum, in any order, is exact with `prec` bits: all
    elements finite multiples of 2**L and sum|x| < 2**(L + prec)."""
    with np.errstate(all="ignore"):
        fin = np.isfinite(X)
        A = np.where(fin, np.abs(X), 0.0)
        if cumulative:
            L = np.minimum.accumulate(lsb_exp(X), -1) if X.shape[-1] else lsb_exp(X)
            S = np.cumsum(A, -1)
            allfin = np.logical_and.accumulate(fin, -1) if X.shape[-1] else fin
        else:
            L = lsb_exp(X).min(-1, initial=10 ** 6)
            S = A.sum(-1)
            allfin = fin.all(-1)
        L = np.minimum(L, 2000)
        return allfin & (S < np.ldexp(1.0, (L + prec).astype(np.int64)).astype(F64))


def neg_zero_only(X):
    """Slices whose elements are all zeros, at least one of them -0.0 (NumPy's sum may be -0.0)."""
    if X.shape[-1] == 0:
        return np.zeros(X.shape[:-1], bool)
    return ((X == 0).all(-1)) & (np.signbit(X) & (X == 0)).any(-1)


def eval_reduce(op, x, axis, keepdims, ddof):
    if x.weak:
        raise DocDiff("reduction of a literal")
    v = x.v
    kw = {}
    if axis != "omit":
        kw["axis"] = axis
    if keepdims:
        kw["keepdims"] = True
    if ddof:
        if op not in ("var", "std", "nanvar", "nanstd"):
            raise DocDiff("ddof on a non-var reduction")
        kw["ddof"] = ddof
    fn = np.count_nonzero if op == "count_nonzero" else getattr(np, op)
    if op in ("argmin", "argmax") and isinstance(axis, tuple):
        raise DocDiff("argmin over a tuple of axes")
    if v.ndim == 0 and isinstance(axis, int):
        raise DocDiff("NumPy's legacy axis=0 on 0-d arrays (accepted by sum, refused by var)")
    r = np.asarray(numpy_call(lambda: fn(v, **kw)))
    if r.dtype == np.float16:
        raise DocDiff("float16 reduction")
    ndim = v.ndim
    axes = () if axis == () else norm_axes(None if op in ("argmin", "argmax") and axis in (None, "omit") else axis, ndim)
    if op in ("argmin", "argmax") and axis in (None, "omit"):
        X = v.reshape(-1)
        EE = np.broadcast_to(x.e, v.shape).reshape(-1)
    elif axes == ():
        X = v[..., None]
        EE = np.broadcast_to(x.e, v.shape)[..., None]
    else:
        X = moved(v, axes, ndim)
        EE = moved(np.broadcast_to(x.e, v.shape), axes, ndim)
    bad = np.isinf(EE).any(-1)
    out_shape = r.shape

    def done(err, uns=None):
        err = np.asarray(err, dtype=F64).reshape(out_shape) if np.size(err) == r.size else np.broadcast_to(err, out_shape)
        uns_all = bad.reshape(out_shape) if uns is None else (bad | uns).reshape(out_shape)
        if r.dtype.kind == "f":
            return finish_float(r, np.where(uns_all, np.inf, err), uns_all)
        e = np.zeros(out_shape)
        e[uns_all] = np.inf
        return Val(r, e)

    with np.errstate(all="ignore"):
        if v.dtype.kind != "f" and r.dtype.kind != "f":
            return done(np.zeros(bad.shape))  # integer/bool input, integer/bool result: exact
        if op in ("argmin", "argmax"):
            return done(np.zeros(bad.shape), argext_unstable(op, X, EE, r.reshape(bad.shape)))
        if op in ("any", "all", "count_nonzero"):
            T = np.isnan(X) | (np.abs(X) > EE)
            Fz = (X == 0) & (EE == 0)
            U = ~T & ~Fz
            if op == "any":
                st = T.any(-1) | ~U.any(-1)
            elif op == "all":
                st = Fz.any(-1) | ~U.any(-1)
            else:
                st = ~U.any(-1)
            bad2 = bad & ~st if op != "count_nonzero" else bad
            return Val(r, np.where((~st | bad2).reshape(out_shape), np.inf, 0.0))
        if v.dtype.kind == "f":
            Xf, Ef = X, EE
        else:
            Xf, Ef = int_as_float(X)
            Ef = Ef + EE
        u1, u2 = acc_u(v.dtype, r.dtype if r.dtype.kind == "f" else F64)
        skip = op.startswith("nan")
        base = op[3:] if skip else op
        rr = r.reshape(bad.shape)
        acc_max = float(np.finfo(F32 if v.dtype == F32 else F64).max)
        if base in ("min", "max"):
            nan = np.isnan(Xf)
            err = np.where(nan, 0.0, Ef).max(-1, initial=0.0)
            mixed = ((Xf == 0) & np.signbit(Xf)).any(-1) & ((Xf == 0) & ~np.signbit(Xf)).any(-1)
            err = np.where((rr == 0) & mixed, np.maximum(err, float(np.finfo(r.dtype).smallest_subnormal)), err)
            return done(err)
        if base in ("sum", "mean"):
            if skip:
                m = np.isnan(Xf)
                Xf = np.where(m, 0.0, Xf)
                Ef = np.where(m, 0.0, Ef)
            fin = np.isfinite(Xf)
            A = np.where(fin, np.abs(Xf), 0.0)
            Sabs = A.sum(-1)
            n = Xf.shape[-1]
            exact_sum = exact_sum_mask(Xf, 24 if (v.dtype == F32 or r.dtype == F32) else 53)
            err = Ef.sum(-1) + np.where(exact_sum, 0.0, 1.01 * n * (u1 + u2) * Sabs)
            risk = Sabs * (1 + 2 * n * (u1 + u2)) >= acc_max
            if base == "mean":
                cnt = (~np.isnan(X)).sum(-1) if skip else np.full(bad.shape, n)
                err = err / np.maximum(cnt, 1)
            err = err + np.where(exact_sum, 0.0, 2 * ulp(rr))
            err = err + np.where(neg_zero_only(Xf), float(np.finfo(r.dtype).smallest_subnormal), 0.0)
            return done(err, risk)
        if base == "prod":
            if skip:
                m = np.isnan(Xf)
                Xf = np.where(m, 1.0, Xf)
                Ef = np.where(m, 0.0, Ef)
            return done(*prod_bound(Xf, Ef, u1, u2, v.dtype, r.dtype, rr, cumulative=False))
        if base in ("var", "std"):
            D, errD, N, cnt, risk = var_bound(Xf, Ef, ddof, u1, u2, skip, v.dtype)
            with np.errstate(all="ignore"):
                ev = errD / N
            ev = np.where(N > 0, ev, 0.0)
            # N == 0: NumPy's var gives D/0 (inf, or NaN when D == 0); nanvar gives NaN
            uns = risk | ((N == 0) & (cnt > 0) & ~(D - errD > 0) & ~((D == 0) & (errD == 0)) & (not skip))
            ex0 = errD == 0
            if base == "var":
                err = np.where(ex0, 0.0, ev + 2 * ulp(rr) + float(np.finfo(r.dtype).smallest_subnormal))
            else:
                vv = np.asarray(getattr(np, "nanvar" if skip else "var")(v, **kw)).reshape(bad.shape).astype(F64)
                vv = np.where(np.isfinite(vv), np.maximum(vv, 0), 0)
                a1 = np.sqrt(ev)
                a2 = ev / (np.sqrt(vv) + np.sqrt(np.maximum(vv - ev, 0)))
                err = np.where(ex0, 0.0, np.fmin(a1, a2) + 2 * ulp(rr) + float(np.finfo(r.dtype).smallest_subnormal))
            return done(err, uns)
    raise ValueError(op)


def argext_unstable(op, X, EE, k):
    """argmin/argmax: unstable unless the winner is separated from every other element."""
    n = X.shape[-1]
    if n == 0:
        return np.zeros(k.shape, bool)
    k = k.astype(np.int64)
    xk = np.take_along_axis(X, k[..., None], -1)
    ek = np.take_along_axis(EE, k[..., None], -1)
    j = np.arange(n)
    later = j > k[..., None]
    exactp = (EE == 0) & (ek == 0)
    Xd, xkd = X.astype(F64), xk.astype(F64)
    if op == "argmin":
        sep = (Xd - EE > xkd + ek)
        tie = exactp & ((X > xk) | ((X == xk) & later))
    else:
        sep = (Xd + EE < xkd - ek)
        tie = exactp & ((X < xk) | ((X == xk) & later))
    ok = sep | tie | (j == k[..., None])
    if X.dtype.kind == "f":
        hasnan = np.isnan(X).any(-1)
        return ~(ok.all(-1) | hasnan)
    return ~ok.all(-1)


def red_any(t, cumulative):
    if cumulative:
        return np.logical_or.accumulate(t, -1) if t.shape[-1] else t
    return t.any(-1)


def red_sum(t, cumulative):
    return np.cumsum(t, -1) if cumulative else t.sum(-1)


def prod_bound(Xf, Ef, u1, u2, in_dtype, r_dtype, rr, cumulative):
    acc = F32 if in_dtype == F32 else F64
    fin = np.isfinite(Xf)
    A = np.where(fin, np.abs(Xf), 1.0)
    Eh = np.where(fin, Ef, 0.0)
    red = (lambda t: np.cumprod(t, -1)) if cumulative else (lambda t: np.prod(t, -1))
    Phi = red(A + Eh)
    P = red(A)
    n = np.arange(1, Xf.shape[-1] + 1) if cumulative else Xf.shape[-1]
    err = (Phi - P) + 1.01 * n * (u1 + u2) * Phi
    small = red(np.where(A < 1, A, 1.0))
    big = red(np.where(A + Eh > 1, A + Eh, 1.0))
    tiny = float(np.finfo(acc).tiny)
    risk_over = big >= float(np.finfo(acc).max) / 4
    risk_under = (small < tiny) & (big > 1)
    err = err + np.where(small < tiny, (np.asarray(n) + 2) * 2 * float(np.finfo(acc).smallest_subnormal), 0.0)
    straddle = (Eh > 0) & (A <= Eh)
    isinfx = ~fin & ~np.isnan(Xf)
    if cumulative:
        hasinf = np.maximum.accumulate(isinfx, -1) if Xf.shape[-1] else isinfx
        sgn_unc = np.maximum.accumulate(straddle, -1) if Xf.shape[-1] else straddle
    else:
        hasinf = isinfx.any(-1)
        sgn_unc = straddle.any(-1)
    uns = np.where(hasinf, sgn_unc | (small < tiny), risk_over | risk_under)
    # exact when all significant bits fit (any association order) and nothing under/overflows
    prec = 24 if (in_dtype == F32 or r_dtype == F32) else 53
    bits = red_sum(sig_bits(np.where(fin, Xf, 1.0)), cumulative)
    exact_p = (bits <= prec) & (small >= 2.0 ** -120) & (big <= 2.0 ** 120)
    err = np.where(exact_p, Phi - P, err + 2 * ulp(rr))
    # an exact zero factor (and no inf/NaN) makes the product exactly +-0 (the sign is the XOR)
    zf = (Xf == 0) & (Ef == 0)
    zero_exact = red_any(zf, cumulative) & ~hasinf & ~red_any(np.isnan(Xf), cumulative) & ~risk_over
    err = np.where(zero_exact, 0.0, err)
    uns = uns & ~zero_exact
    return err, uns


def var_bound(X, E, ddof, u1, u2, skip, in_dtype):
    M = ~np.isnan(X) if skip else np.ones(X.shape, bool)
    cnt = M.sum(-1)
    fin = np.isfinite(X) & M
    hasinf = (np.isinf(X) & M).any(-1)
    Xz = np.where(fin, X, 0.0)
    m = Xz.sum(-1) / np.maximum(cnt, 1)
    dev = np.where(fin, np.abs(Xz - m[..., None]), 0.0)
    D = (dev ** 2).sum(-1)
    Sabs = np.abs(Xz).sum(-1)
    maxabs = np.abs(Xz).max(-1, initial=0.0)
    Em = np.where(M, E, 0.0)
    eb = Em.sum(-1) / np.maximum(cnt, 1)
    ee = np.where(M, Em + eb[..., None], 0.0)
    prop = 2 * (dev * ee).sum(-1) + (ee ** 2).sum(-1)
    rnd = np.zeros(D.shape)
    c1 = np.maximum(cnt, 1)
    for u in (u1, u2):
        delta = (c1 + 1) * u * Sabs / c1
        rnd = rnd + (c1 + 4) * u * (D + c1 * delta ** 2) + c1 * delta ** 2 + 4 * (c1 + 2) * u * maxabs * dev.sum(-1)
    errD = 1.01 * (prop + rnd)
    # all (non-NaN) elements equal to a v whose partial sums are exact: mean == v, D == 0 exactly
    vmax = np.nanmax(np.where(fin, Xz, -np.inf), -1, initial=-np.inf)
    vmin = np.nanmin(np.where(fin, Xz, np.inf), -1, initial=np.inf)
    ident = (vmax == vmin) & (fin.sum(-1) == cnt) & exact_sum_mask(np.where(M, X, 0.0), 24 if in_dtype == F32 else 53)
    errD = np.where(ident & (E.max(-1, initial=0.0) == 0), 0.0, errD)
    N = np.maximum(cnt - ddof, 0)
    accmax = float(np.finfo(F32 if in_dtype == F32 else F64).max)
    risk = (Sabs >= accmax / 4) | ((maxabs + np.abs(m)) ** 2 * np.maximum(cnt, 1) >= accmax / 4)
    risk = risk & ~hasinf
    errD = np.where(hasinf, 0.0, errD)
    D = np.where(hasinf, np.inf, D)
    return D, errD, N, cnt, risk


def eval_scan(op, x, axis):
    if x.weak:
        raise DocDiff("scan of a literal")
    v = x.v
    if v.ndim == 0:
        raise DocDiff("scan of a 0-d array")
    if axis in (None, "omit") and v.ndim > 1:
        raise DocDiff("cumsum(axis=None) on >1-D is refused by dsk (documented)")
    kw = {} if axis == "omit" else {"axis": axis}
    r = np.asarray(numpy_call(lambda: getattr(np, op)(v, **kw)))
    ax = 0 if axis in (None, "omit") else axis % v.ndim
    E = np.broadcast_to(x.e, v.shape)
    bad = np.maximum.accumulate(np.isinf(np.moveaxis(E, ax, -1)), -1) if v.shape[ax] else np.isinf(np.moveaxis(E, ax, -1))
    if r.dtype.kind != "f":
        e = np.where(np.moveaxis(bad, -1, ax), np.inf, 0.0)
        return Val(r, e)
    X = np.moveaxis(v, ax, -1)
    EE = np.moveaxis(E, ax, -1)
    rr = np.moveaxis(r, ax, -1)
    if v.dtype.kind != "f":
        X, ce = int_as_float(X)
        EE = EE + ce
    X = X.astype(F64)
    u1, u2 = acc_u(v.dtype, r.dtype)
    acc_max = float(np.finfo(F32 if v.dtype == F32 else F64).max)
    with np.errstate(all="ignore"):
        if op == "cumsum":
            fin = np.isfinite(X)
            CA = np.cumsum(np.where(fin, np.abs(X), 0.0), -1)
            CE = np.cumsum(EE, -1)
            i = np.arange(1, X.shape[-1] + 1)
            exs = exact_sum_mask(X, 24 if (v.dtype == F32 or r.dtype == F32) else 53, cumulative=True)
            err = CE + np.where(exs, 0.0, 1.01 * i * (u1 + u2) * CA + 2 * ulp(rr))
            uns = CA * (1 + 2 * X.shape[-1] * (u1 + u2)) >= acc_max
        else:
            err, uns = prod_bound(X, EE, u1, u2, v.dtype, r.dtype, rr, cumulative=True)
    uns = uns | bad
    err = np.moveaxis(np.where(uns, np.inf, err), -1, ax)
    return finish_float(r, err, np.moveaxis(uns, -1, ax))


# ----------------------------------------------------------------------------------------------
# Input sets
# ----------------------------------------------------------------------------------------------

SPECIALS64 = [np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, 1e-310, -1e-310, 1e-30, 1e300, -1e300, 1.7e308, 1e19,
              -1e19, 2.0 ** 53 + 1, 1e16]
SPECIALS32 = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, 1e-40, -1e-40, 1e-30, 3e38, -3e38, 1e19, 1e9, 16777217.0]
NICE = [0.0, -0.0, 0.5, 1.0, -1.0, 1.5, 2.0, 2.5, -2.5, 3.0, 0.1, 0.25, -0.5, 3.25, 100.0, 7.0, 10.0]


@dataclass
class ArrSpec:
    name: str
    path: str
    data: np.ndarray
    chunks: tuple
    zarr_format: int
    shards: tuple | None = None
    order: str = "C"
    endian: str = "<"
    compressor: str = "default"
    fill_value: object = None

    def describe(self):
        s = f"{self.name}: shape {self.data.shape} {self.data.dtype} chunks {self.chunks} zarr v{self.zarr_format}"
        if self.shards:
            s += f" shards {self.shards}"
        if self.order != "C":
            s += " order F"
        if self.endian == ">":
            s += " big-endian"
        if self.compressor != "default":
            s += f" compressor {self.compressor}"
        if self.fill_value is not None:
            s += f" fill_value {self.fill_value!r}"
        return s


@dataclass
class InputSet:
    index: int
    arrays: dict  # name -> ArrSpec

    def env(self):
        return {n: s.data for n, s in self.arrays.items()}


def rand_values(rng, shape, dtype, special):
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dt == np.bool_:
        return (rng.random(shape) < rng.choice([0.2, 0.5, 0.8])).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        mode = rng.choice(["small", "small", "small", "full", "mid"])
        if mode == "small":
            lo, hi = (-10, 11) if dt.kind == "i" else (0, 21)
        elif mode == "mid":
            lo, hi = (max(info.min, -1000), min(info.max, 1000) + 1) if dt.kind == "i" else (0, min(info.max, 2000) + 1)
        else:
            lo, hi = int(info.min), int(info.max) + 1
        v = rng.integers(lo, hi - 1, size=shape, dtype=dt, endpoint=True)
        if n and rng.random() < 0.5:
            k = max(1, n // 8)
            idx = rng.integers(0, n, k)
            edge = [0, 1, int(info.max), int(info.min)] + ([-1] if dt.kind == "i" else [])
            v.reshape(-1)[idx] = rng.choice(np.array(edge, dtype=dt) if mode == "full" else np.array([0, 1], dtype=dt), k)
        return v
    scale = rng.choice([1.0, 1.0, 3.0, 10.0, 1000.0, 1e-3])
    v = (rng.standard_normal(shape) * scale).astype(dt)
    if n:
        if rng.random() < 0.7:
            k = max(1, n // 4)
            v.reshape(-1)[rng.integers(0, n, k)] = rng.choice(NICE, k).astype(dt)
        if special:
            k = max(1, n // 8)
            sp = SPECIALS32 if dt == F32 else SPECIALS64
            v.reshape(-1)[rng.integers(0, n, k)] = np.array(rng.choice(sp, k), dtype=F64).astype(dt)
    return v


def rand_chunks(rng, shape):
    out = []
    for s in shape:
        r = rng.random()
        if s == 0:
            out.append(int(rng.integers(1, 4)))
        elif r < 0.15:
            out.append(s)
        elif r < 0.25:
            out.append(s + int(rng.integers(1, 4)))
        else:
            out.append(int(rng.integers(1, max(2, s))))
    return tuple(out)


def make_shapes(rng):
    nd = int(rng.choice([1, 2, 2, 3, 3]))
    base = tuple(int(rng.integers(1, {1: 40, 2: 13, 3: 7}[nd])) for _ in range(nd))
    if rng.random() < 0.25:
        base = tuple(1 if (rng.random() < 0.3) else s for s in base)
    shapes = [base, base]
    shapes.append(base[int(rng.integers(0, nd)):] if nd > 1 else base)  # a suffix: broadcasts
    ones = tuple(1 if rng.random() < 0.5 else s for s in base)
    shapes.append(ones)
    shapes.append(base[::-1] if nd > 1 else (int(rng.integers(1, 8)),))
    r = rng.random()
    if r < 0.2:
        shapes.append(tuple(0 if i == nd - 1 else s for i, s in enumerate(base)))  # an empty array
    elif r < 0.5:
        shapes.append((int(rng.integers(1, 20)),))
    else:
        shapes.append(base)
    return shapes


def write_zarr(spec):
    import zarr
    data = spec.data
    kw = dict(store=spec.path, shape=data.shape, chunks=spec.chunks, zarr_format=spec.zarr_format, overwrite=True)
    dt = data.dtype.newbyteorder(spec.endian) if data.dtype.itemsize > 1 else data.dtype
    kw["dtype"] = dt
    if spec.fill_value is not None:
        kw["fill_value"] = spec.fill_value
    if spec.zarr_format == 2:
        if spec.order == "F":
            kw["order"] = "F"
        if spec.compressor == "none":
            kw["compressors"] = None
        elif spec.compressor == "blosc":
            import numcodecs
            kw["compressors"] = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
        elif spec.compressor == "gzip":
            import numcodecs
            kw["compressors"] = numcodecs.GZip(level=5)
    else:
        if spec.shards:
            kw["shards"] = spec.shards
        if spec.compressor == "none":
            kw["compressors"] = None
        elif spec.compressor == "blosc":
            from zarr.codecs import BloscCodec
            kw["compressors"] = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
        elif spec.compressor == "gzip":
            from zarr.codecs import GzipCodec
            kw["compressors"] = GzipCodec(level=5)
    z = zarr.create_array(**kw)
    if data.size:
        z[...] = data


def make_input_set(seed, index, root):
    rng = np.random.default_rng([seed, index, 4242])
    shapes = make_shapes(rng)
    arrays = {}
    special_names = set(rng.choice(NAMES, 2, replace=False)) if rng.random() < 0.6 else set()
    dts = []
    for i, name in enumerate(NAMES):
        shape = shapes[i]
        if rng.random() < 0.45:
            dt = str(rng.choice(["float64", "float32", "float64"]))
        else:
            dt = str(rng.choice(DTYPES))
        dts.append(dt)
        data = rand_values(rng, shape, dt, name in special_names)
        fmt = int(rng.choice([2, 3]))
        chunks = rand_chunks(rng, shape)
        spec = ArrSpec(name, os.path.join(root, f"{name}.zarr"), data, chunks, fmt)
        r = rng.random()
        if fmt == 3 and r < 0.2 and data.ndim and all(s > 0 for s in shape):
            spec.shards = tuple(c * int(rng.integers(1, 3)) for c in chunks)
        if fmt == 2 and r < 0.2 and data.ndim > 1:
            spec.order = "F"
        if fmt == 2 and 0.2 <= r < 0.35:
            spec.endian = ">"
        spec.compressor = str(rng.choice(["default", "default", "default", "none", "blosc", "gzip"]))
        if rng.random() < 0.2 and data.size:
            # a non-default fill value, and a chunk-sized region holding it (left unwritten)
            fv = data.reshape(-1)[0].item()
            if isinstance(fv, float) and math.isnan(fv):
                fv = float("nan")
            spec.fill_value = fv
            sl = tuple(slice(0, c) for c in chunks)
            spec.data = data.copy()
            spec.data[sl] = data.reshape(-1)[0]
            if rng.random() < 0.5 and data.ndim:
                # a sparse array: about two chunks in three never written (dsk folds them)
                cid = sum(np.indices(shape)[a] // chunks[a] * (7 ** a) for a in range(data.ndim))
                spec.data[(cid % 3) != 1] = data.reshape(-1)[0]
        arrays[name] = spec
    return InputSet(index, arrays)


def build_input_sets(seed, nsets, root):
    """Create (or reuse, when already written with the same version) the seed's input sets."""
    sets = []
    base = os.path.join(root, f"{VERSION}-seed{seed}")
    for i in range(nsets):
        d = os.path.join(base, f"set{i}")
        s = make_input_set(seed, i, d)
        if not os.path.exists(os.path.join(d, ".done")):
            # written under a private name and renamed: concurrent runs never see a partial set
            tmp = f"{d}.tmp{os.getpid()}-{threading.get_ident()}"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            for spec in s.arrays.values():
                write_zarr(ArrSpec(spec.name, os.path.join(tmp, f"{spec.name}.zarr"), spec.data, spec.chunks,
                                   spec.zarr_format, spec.shards, spec.order, spec.endian, spec.compressor,
                                   spec.fill_value))
            open(os.path.join(tmp, ".done"), "w").close()
            try:
                os.rename(tmp, d)
            except OSError:  # another run got there first (or a stale partial directory)
                if not os.path.exists(os.path.join(d, ".done")):
                    shutil.rmtree(d, ignore_errors=True)
                    os.rename(tmp, d)
                else:
                    shutil.rmtree(tmp, ignore_errors=True)
        sets.append(s)
    return sets


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------

INT_LITS = [0, 1, 2, 3, 5, 7, 10, -1, -2, -3, 4, 100, 127, 255, 16]
OOB_LITS = [128, 256, -129, 300, 40000, 70000, -1, 2 ** 31, 2 ** 32, 2 ** 63 - 1, 2 ** 63, -(2 ** 63), -200]
FLOAT_LITS = [0.5, 1.5, 2.0, 0.0, -0.0, 0.1, 0.25, -2.5, 3.25, 1e-3, 1e10, 100.0, 2.5, -0.5, 1e-300, 1e300, 3.0,
              1e-05, 0.3]
SPECIAL_LITS = [("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("pi", math.pi), ("e", math.e),
                ("True", True), ("False", False)]
POW_LITS = [2, 2, 3, 0.5, -1, 0, 1, 2.0, 1.5, -0.5, -2, 0.25, 4, 3.0]
MAX_SIZE = 3000


class Gen:
    def __init__(self, rng, iset, p_invalid=0.03):
        self.r = rng
        self.iset = iset
        self.env = iset.env()
        self.lits = []
        self.p_invalid = p_invalid
        self.invalid = False

    # -- helpers --
    def ev(self, node):
        return evaluate(node, self.env)

    def ok(self, node):
        try:
            val = self.ev(node)
        except (NumpyRefuses, DocDiff):
            return False
        return val.weak or val.v.size <= MAX_SIZE and val.v.ndim <= 4

    def lit(self, kind=None):
        r = self.r
        if self.lits and r.random() < 0.4:
            node = r.choice(self.lits)
            if kind is None or self._litkind(node) == kind:
                return node
        c = r.random() if kind is None else {"int": 0.1, "float": 0.5, "special": 0.9}[kind]
        if c < 0.42:
            v = r.choice(INT_LITS)
            node = Node("lit", value=v)
        elif c < 0.8:
            v = r.choice(FLOAT_LITS)
            node = Node("lit", value=v)
        else:
            t, v = r.choice(SPECIAL_LITS)
            node = Node("lit", value=v, text=t)
        self.lits.append(node)
        return node

    @staticmethod
    def _litkind(node):
        v = node.attrs["value"]
        return "int" if isinstance(v, int) and not isinstance(v, bool) else "float" if isinstance(v, float) else "special"

    def inputs_compatible(self, hint):
        out = []
        for n, s in self.iset.arrays.items():
            if hint is None:
                out.append(n)
                continue
            try:
                np.broadcast_shapes(s.data.shape, hint)
                out.append(n)
            except ValueError:
                pass
        return out

    def leaf(self, hint=None, need_array=False):
        r = self.r
        x = r.random()
        if not need_array and x < 0.22:
            return self.lit()
        if x >= 0.9:
            g = self.gen_leaf(hint)
            if self.ok(g):
                return g
        names = self.inputs_compatible(hint) or list(self.iset.arrays)
        return Node("in", name=r.choice(names))

    def gen_leaf(self, hint):
        r = self.r
        if hint is None:
            hint = r.choice(list(self.iset.arrays.values())).data.shape
        shape = tuple(hint[r.randrange(0, len(hint) + 1):]) if hint else ()
        if not shape:
            shape = (r.randint(1, 6),)
        chunks = tuple(r.randint(1, max(1, s)) for s in shape) if r.random() < 0.7 else None
        fn = r.choice(["ones", "zeros", "full", "full", "arange", "arange", "linspace"])
        if fn in ("ones", "zeros"):
            dt = r.choice([None, None] + DTYPES)
            return Node("gen", fn=fn, shape=shape, chunks=chunks, dtype=dt,
                        bare=(len(shape) == 1 and r.random() < 0.2))
        if fn == "full":
            val = r.choice([7, -3, 0, 1, 2.5, -0.5, 1e-3, math.nan, math.inf, 100])
            dt = None
            if r.random() < 0.4:
                if isinstance(val, int):
                    dt = r.choice(["int8", "int16", "int32", "uint8", "uint16", "float32", "float64", "int64"])
                    if dt.startswith("u") and val < 0:
                        dt = "int16"
                else:
                    dt = r.choice(["float32", "float64"])
            return Node("gen", fn=fn, shape=shape, value=val, chunks=chunks, dtype=dt)
        L = shape[-1]
        ch = (r.randint(1, max(1, L)),) if r.random() < 0.6 else None
        if fn == "arange":
            c = r.random()
            if c < 0.3:
                args, dt = (L,), r.choice([None, None, "int32", "float32", "int16", "float64"])
            elif c < 0.6:
                s0 = r.randint(-5, 5)
                st = r.choice([1, 2, 3, -1, -2])
                args, dt = (s0, s0 + L * st, st), r.choice([None, None, "int64", "float32"])
            else:
                s0 = r.choice([0.0, 0.5, -1.5, 2.0, 0.1])
                st = r.choice([0.25, 0.5, -0.5, 1.5, 0.1, 0.2])
                stop = s0 + (L - r.choice([0.5, 0.5, 0.0])) * st
                args, dt = (s0, round(stop, 6), st), r.choice([None, None, "float32"])
            return Node("gen", fn="arange", params=args, chunks=ch, dtype=dt)
        s0 = r.choice([0, -1, 0.5, 2, -3.5, 1e3])
        s1 = r.choice([1, 10, -1, 2.5, 0, 7])
        return Node("gen", fn="linspace", start=s0, stop=s1, num=L, chunks=ch, dtype=r.choice([None, None, "float32"]))

    # -- internal nodes --
    def node(self, depth, hint=None, need_array=False):
        if depth <= 0:
            return self.leaf(hint, need_array)
        r = self.r
        for _ in range(6):
            kind = r.choices(
                ["arith", "pow", "cmp", "bit", "unary", "func", "minmax", "clip", "where", "astype", "round", "index",
                 "T", "rechunk", "red", "scan", "center", "litop"],
                [22, 7, 7, 4, 4, 12, 4, 3, 5, 4, 2, 6, 3, 2, 9, 2, 2, 1])[0]
            try:
                n = getattr(self, "b_" + kind)(depth, hint)
            except (_Retry, NumpyRefuses, DocDiff):
                continue
            if n is not None and self.ok(n):
                if need_array and self.ev(n).weak:
                    continue
                return n
        return self.leaf(hint, need_array)

    def sub(self, depth, hint=None, need_array=False):
        return self.node(depth - 1 - (1 if self.r.random() < 0.3 else 0), hint, need_array)

    def two(self, depth, hint, lit_ok=True):
        r = self.r
        a = self.sub(depth, hint, need_array=not lit_ok)
        sh = self.ev(a).shape
        if lit_ok and r.random() < 0.35:
            b = self.lit()
        else:
            b = self.sub(depth, sh if sh else hint)
        if r.random() < 0.3:
            a, b = b, a
        return a, b

    def b_arith(self, depth, hint):
        op = self.r.choices(["+", "-", "*", "/", "//", "%"], [5, 4, 4, 3, 2, 2])[0]
        a, b = self.two(depth, hint)
        return Node("bin", (a, b), op=op)

    def b_litop(self, depth, hint):
        # arithmetic between literals (Python semantics, weak result) next to an array
        r = self.r
        l1, l2 = Node("lit", value=r.choice([2, 3, 0.5, 1.5, -1, 4])), Node("lit", value=r.choice([2, 3, 1, 0.25]))
        lit = Node("bin", (l1, l2), op=r.choice(["+", "-", "*"]))
        a = self.sub(depth, hint, need_array=True)
        return Node("bin", (a, lit), op=r.choice(["+", "*", "-", "<", "**"]))

    def b_pow(self, depth, hint):
        r = self.r
        a = self.sub(depth, hint, need_array=True)
        if r.random() < 0.75:
            if self.lits and r.random() < 0.4:
                b = r.choice(self.lits)
            else:
                v = r.choice(POW_LITS)
                b = Node("lit", value=v)
                self.lits.append(b)
        else:
            b = self.sub(depth, self.ev(a).shape)
        if r.random() < 0.15:
            a, b = b, a
        return Node("bin", (a, b), op="**")

    def b_cmp(self, depth, hint):
        op = self.r.choice(["<", "<=", ">", ">=", "==", "!="])
        a, b = self.two(depth, hint)
        if op in ("==", "!=") and self.r.random() < 0.7:
            # equality of two computed floats is mostly unstable: prefer exact operands
            if any(not v.weak and v.v.dtype.kind == "f" and np.any(v.e > 0) for v in (self.ev(a), self.ev(b))):
                op = self.r.choice(["<", ">", "<=", ">="])
        return Node("bin", (a, b), op=op)

    def as_intbool(self, n):
        val = self.ev(n)
        if val.weak:
            return n if not isinstance(val.v, float) else Node("lit", value=self.r.choice([1, 3, True, 6]))
        if val.v.dtype.kind == "f":
            r = self.r
            if r.random() < 0.5:
                return Node("bin", (n, self.lit()), op=r.choice(["<", ">", ">=", "!="]))
            return Node("astype", (n,), dtype=r.choice(["int8", "int32", "uint8", "int64", "bool", "uint16"]),
                        method=r.random() < 0.7)
        return n

    def b_bit(self, depth, hint):
        r = self.r
        a, b = self.two(depth, hint)
        return Node("bin", (self.as_intbool(a), self.as_intbool(b)), op=r.choice(["&", "|", "^"]))

    def b_unary(self, depth, hint):
        r = self.r
        op = r.choices(["-", "+", "~"], [5, 2, 2])[0]
        a = self.sub(depth, hint, need_array=True)
        if op == "~":
            a = self.as_intbool(a)
        return Node("un", (a,), op=op)

    def b_func(self, depth, hint):
        r = self.r
        fn = r.choice(UNARY_FUNCS)
        a = self.sub(depth, hint, need_array=r.random() < 0.97)
        if fn in ("log", "log10", "log2", "sqrt") and r.random() < 0.5:
            a = Node("call", (a,), fn="abs")
        if fn in ("arcsin", "arccos") and r.random() < 0.6:
            a = Node("call", (a,), fn="sin")
        return Node("call", (a,), fn=fn)

    def b_minmax(self, depth, hint):
        a, b = self.two(depth, hint)
        return Node("call2", (a, b), fn=self.r.choice(["minimum", "maximum"]))

    def b_clip(self, depth, hint):
        r = self.r
        x = self.sub(depth, hint, need_array=True)
        sh = self.ev(x).shape
        if r.random() < 0.75:
            lo, hi = sorted([r.choice([-1, 0, 1, 2, -2.5, 0.5, 3, 10, 100, 0.25]) for _ in range(2)])
            if r.random() < 0.1:
                lo, hi = hi, lo
            lo, hi = Node("lit", value=lo), Node("lit", value=hi)
            self.lits += [lo, hi]
        else:
            lo = self.sub(depth, sh) if r.random() < 0.5 else self.lit()
            hi = self.sub(depth, sh) if r.random() < 0.5 else self.lit()
        return Node("clip", (x, lo, hi), method=r.random() < 0.4)

    def boolish(self, depth, hint):
        r = self.r
        c = r.random()
        if c < 0.55:
            a = self.sub(depth, hint, need_array=True)
            return Node("bin", (a, self.lit() if r.random() < 0.7 else self.sub(depth, self.ev(a).shape)),
                        op=r.choice(["<", ">", "<=", ">=", "==", "!="]))
        if c < 0.7:
            return Node("call", (self.sub(depth, hint, need_array=True),), fn=r.choice(["isnan", "isfinite"]))
        if c < 0.85:
            bools = [n for n, s in self.iset.arrays.items() if s.data.dtype == np.bool_]
            if bools:
                return Node("in", name=r.choice(bools))
        return Node("astype", (self.sub(depth, hint, need_array=True),), dtype="bool", method=True)

    def b_where(self, depth, hint):
        c = self.boolish(depth, hint)
        sh = self.ev(c).shape
        a, b = self.two(depth, sh if sh else hint)
        return Node("where", (c, a, b))

    def b_astype(self, depth, hint):
        r = self.r
        a = self.sub(depth, hint, need_array=True)
        return Node("astype", (a,), dtype=r.choice(DTYPES), method=r.random() < 0.7)

    def b_round(self, depth, hint):
        r = self.r
        a = self.sub(depth, hint, need_array=True)
        dec = None
        if r.random() < 0.08 and self.ev(a).dtype is not None and self.ev(a).dtype.kind == "f":
            dec = r.choice([1, 2])
        m = r.random() < 0.5
        return Node("round", (a,), method=m, decimals=dec if m else None)

    def b_index(self, depth, hint):
        r = self.r
        a = self.sub(depth, None, need_array=True)
        shape = self.ev(a).shape
        if not shape:
            raise _Retry
        items = []
        nitems = r.randint(1, len(shape))
        for ax in range(nitems):
            L = shape[ax]
            c = r.random()
            if c < 0.25 and L > 0:
                items.append(("i", r.randint(-L, L - 1)))
            elif c < 0.4:
                items.append(("s", None, None, None))
            else:
                s0 = r.choice([None, None, r.randint(-L - 1, L + 1)])
                s1 = r.choice([None, None, r.randint(-L - 1, L + 1)])
                st = r.choice([None, 1, 2, 3, -1, -1, -2, -3])
                items.append(("s", s0, s1, st))
        if r.random() < 0.15:
            pos = r.randint(0, len(items))
            items.insert(pos, ("e",))
        return Node("idx", (a,), items=tuple(items))

    def b_T(self, depth, hint):
        r = self.r
        a = self.sub(depth, None, need_array=True)
        nd = len(self.ev(a).shape)
        perm = list(range(nd))
        r.shuffle(perm)
        form = r.choice(["T", "T", "meth", "methtuple", "func", "funcnone", "methnone"])
        if form in ("meth",) and nd < 1:
            form = "T"
        return Node("T", (a,), form=form, perm=tuple(perm))

    def b_rechunk(self, depth, hint):
        r = self.r
        a = self.sub(depth, hint, need_array=True)
        shape = self.ev(a).shape
        if not shape:
            raise _Retry
        chunks = tuple(r.randint(1, max(1, s + 1)) for s in shape)
        return Node("rechunk", (a,), chunks=chunks, method=r.random() < 0.7)

    def red_axis(self, nd, op):
        r = self.r
        c = r.random()
        if c < 0.35 or nd == 0:
            return r.choice(["omit", "omit", None])
        if c < 0.8 or op in ("argmin", "argmax") or nd < 2:
            return r.randint(-nd, nd - 1)
        k = r.randint(1, nd)
        axes = r.sample(range(nd), k)
        return tuple(a - nd if r.random() < 0.3 else a for a in axes)

    def b_red(self, depth, hint):
        r = self.r
        op = r.choice(RED_OPS)
        a = self.sub(depth, None, need_array=True)
        nd = len(self.ev(a).shape)
        axis = self.red_axis(nd, op)
        kd = r.random() < 0.2
        ddof = r.choice([1, 1, 2, 5]) if op in ("var", "std", "nanvar", "nanstd") and r.random() < 0.35 else 0
        return Node("red", (a,), op=op, axis=axis, keepdims=kd, ddof=ddof, method=r.random() < 0.6)

    def b_scan(self, depth, hint):
        r = self.r
        a = self.sub(depth, hint, need_array=True)
        nd = len(self.ev(a).shape)
        if nd == 0:
            raise _Retry
        axis = r.randint(-nd, nd - 1) if nd > 1 or r.random() < 0.5 else r.choice([None, "omit"])
        return Node("scan", (a,), op=r.choice(["cumsum", "cumprod"]), axis=axis, method=r.random() < 0.6)

    def b_center(self, depth, hint):
        """x op x.red(axis=k, keepdims=...) - a reduction of a subexpression combined with itself."""
        r = self.r
        a = self.sub(depth, hint, need_array=True)
        nd = len(self.ev(a).shape)
        op = r.choice(["mean", "max", "min", "sum", "std", "nanmean", "argmax"])
        if nd == 0:
            raise _Retry
        axis = r.choice([0, None, -1, "omit"])
        kd = r.random() < 0.5 and axis not in (None, "omit")
        red = Node("red", (a,), op=op, axis=axis, keepdims=kd, ddof=0, method=r.random() < 0.7)
        return Node("bin", (a, red), op=r.choice(["-", "/", "*", "+", ">"]))

    # -- top level --
    def expr(self):
        r = self.r
        depth = r.choice([1, 2, 2, 3, 3, 3, 4, 4, 5])
        for _ in range(20):
            n = self.node(depth, None, need_array=True)
            if self.ok(n) and not self.ev(n).weak:
                break
        else:
            n = Node("in", name=r.choice(NAMES))
        if r.random() < self.p_invalid:
            bad = self.invalid_wrap(n)
            if bad is not None:
                self.invalid = True
                return bad
        return n

    def invalid_wrap(self, n):
        """An expression NumPy refuses, built on n (both must refuse)."""
        r = self.r
        val = self.ev(n)
        nd = val.v.ndim
        for _ in range(12):
            c = r.randrange(8)
            if c == 0:
                cand = Node("bin", (n, Node("lit", value=r.choice(OOB_LITS))), op=r.choice(["+", "*", "-", "//"]))
            elif c == 1:
                cand = Node("un", (Node("bin", (n, self.lit()), op=">"),), op=r.choice(["-", "+"]))
            elif c == 2:
                cand = Node("bin", (n, Node("lit", value=r.choice([1.5, 0.5]))), op=r.choice(["&", "|", "^"]))
            elif c == 3:
                cand = Node("red", (n,), op=r.choice(RED_OPS), axis=r.choice([nd, -nd - 1, nd + 2]), keepdims=False,
                            ddof=0, method=True)
            elif c == 4 and nd:
                L = val.v.shape[0]
                cand = Node("idx", (n,), items=(("i", r.choice([L, -L - 1, L + 3])),))
            elif c == 5:
                other = [s for s in self.iset.arrays.values()]
                cand = Node("bin", (n, Node("in", name=r.choice(other).name)), op="+")
            elif c == 6 and nd >= 2:
                cand = Node("T", (n,), form="methtuple", perm=tuple([0] * nd))
            elif c == 7:
                cand = Node("call", (Node("red", (n,), op="min", axis="omit", keepdims=False, ddof=0, method=True),),
                            fn="sin") if val.v.size == 0 else Node("un", (n,), op="~")
            else:
                continue
            try:
                self.ev(cand)
            except NumpyRefuses:
                if r.random() < 0.5:
                    cand = Node("call", (cand,), fn=r.choice(["abs", "sqrt", "isnan"]))
                    try:
                        self.ev(cand)
                        continue
                    except NumpyRefuses:
                        return cand
                    except DocDiff:
                        continue
                return cand
            except DocDiff:
                continue
        return None


class _Retry(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Running dsk
# ----------------------------------------------------------------------------------------------

@dataclass
class Opts:
    scheduler: str = "threads"
    workers: int | None = None
    memory: str | None = None
    split_every: int | None = None

    def args(self):
        a = ["--scheduler", self.scheduler]
        if self.workers is not None:
            a += ["--workers", str(self.workers)]
        if self.memory is not None:
            a += ["--memory", self.memory]
        if self.split_every is not None:
            a += ["--split-every", str(self.split_every)]
        return a



def rand_opts(rng, schedulers):
    names = [s for s, _ in schedulers]
    weights = [w for _, w in schedulers]
    s = rng.choices(names, weights)[0]
    o = Opts(s)
    if rng.random() < 0.7:
        o.workers = rng.choice([1, 2, 3, 4]) if s != "processes" else rng.choice([1, 2, 3])
    if rng.random() < 0.5:
        o.memory = rng.choice(["64MiB", "1MiB", "16KiB", "4KiB", "2KiB"])
    if rng.random() < 0.4:
        o.split_every = rng.choice([2, 2, 3, 4, 8])
    return o


@dataclass
class Outcome:
    kind: str  # ok | error | budget | crash | timeout
    arr: np.ndarray | None = None
    msg: str = ""


CRASH_RE = re.compile(r"internal error|panicked|this is a bug|RUST_BACKTRACE|stack overflow|Segmentation", re.I)
BUDGET_RE = re.compile(r"but --memory is")

_counter = itertools.count()


def run_dsk(expr, iset, names, opts, workdir, timeout=120):
    out = os.path.join(workdir, f"o{next(_counter)}.npy")
    cmd = [DSK, "eval", expr] + [f"{n}={iset.arrays[n].path}" for n in sorted(names)] + ["-o", out, "-q"] + opts.args()
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome("timeout", msg=f"no answer in {timeout} s")
    err = p.stderr.decode(errors="replace")
    try:
        if p.returncode == 0:
            if CRASH_RE.search(err):
                return Outcome("crash", msg=err.strip())
            try:
                arr = np.load(out)
            except Exception as ex:
                return Outcome("crash", msg=f"exit 0 but no readable output: {ex}; stderr: {err.strip()}")
            return Outcome("ok", arr=arr)
        if CRASH_RE.search(err) or p.returncode < 0 or p.returncode not in (1, 2) or "dsk: error:" not in err:
            return Outcome("crash", msg=f"exit {p.returncode}: {err.strip()}")
        if BUDGET_RE.search(err):
            return Outcome("budget", msg=err.strip())
        return Outcome("error", msg=err.strip())
    finally:
        try:
            os.unlink(out)
        except FileNotFoundError:
            pass


# ----------------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------------

@dataclass
class Mismatch:
    kind: str
    detail: str


def oracle(tree, env):
    """('value', Val) or ('refuse', message)."""
    try:
        val = evaluate(tree, env)
    except NumpyRefuses as ex:
        return "refuse", str(ex)
    if val.weak:
        raise DocDiff("a literal-only expression")
    return "value", val


def compare(expected, outcome, stats=None):
    kind, want = expected
    if outcome.kind in ("crash", "timeout"):
        return Mismatch(outcome.kind, outcome.msg[-2000:])
    if outcome.kind == "budget":
        return None
    if kind == "refuse":
        if outcome.kind == "error":
            return None
        return Mismatch("dsk-accepts", f"NumPy refuses ({want}); dsk returned {describe_arr(outcome.arr)}")
    if outcome.kind == "error":
        return Mismatch("dsk-refuses", f"NumPy gives {describe_arr(want.v)}; dsk: {outcome.msg.splitlines()[0]}")
    got = outcome.arr
    wv = want.v
    if got.shape != wv.shape:
        return Mismatch("shape", f"NumPy shape {wv.shape}, dsk shape {got.shape}")
    if got.dtype.kind != wv.dtype.kind or got.dtype.itemsize != wv.dtype.itemsize:
        return Mismatch("dtype", f"NumPy dtype {wv.dtype}, dsk dtype {got.dtype}")
    e = np.broadcast_to(want.e, wv.shape)
    stable = np.isfinite(e)
    if stats is not None:
        stats["elements"] += wv.size
        stats["unstable"] += int(wv.size - stable.sum())
    if wv.dtype.kind != "f":
        badm = stable & (got != wv)
        if badm.any():
            return Mismatch("value-exact", mismatch_detail(badm, wv, got, e))
        return None
    with np.errstate(all="ignore"):
        wn, gn = np.isnan(wv), np.isnan(got)
        nanbad = stable & (wn != gn)
        if nanbad.any():
            return Mismatch("value-nan", mismatch_detail(nanbad, wv, got, e))
        infbad = stable & ~wn & (np.isinf(wv) | np.isinf(got)) & (got != wv)
        if infbad.any():
            return Mismatch("value-inf", mismatch_detail(infbad, wv, got, e))
        fin = stable & np.isfinite(wv) & np.isfinite(got)
        diff = np.abs(got.astype(F64) - wv.astype(F64))
        fbad = fin & (diff > e)
        if fbad.any():
            return Mismatch("value-float", mismatch_detail(fbad, wv, got, e))
    return None


def describe_arr(a):
    a = np.asarray(a)
    with np.printoptions(threshold=12, edgeitems=3, precision=17):
        return f"{a.dtype}{list(a.shape)} {np.array2string(a.reshape(-1)[:12], separator=', ')}"


def mismatch_detail(mask, want, got, e):
    idx = np.argwhere(mask)
    lines = [f"{int(mask.sum())} of {mask.size} elements differ; first:"]
    for ix in idx[:4]:
        t = tuple(int(i) for i in ix)
        w, g, tol = want[t], got[t], e[t]
        lines.append(f"  at {t}: NumPy {w!r}, dsk {g!r}, allowed error {tol:.3g}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# One case: generate, run, compare; shrink on failure
# ----------------------------------------------------------------------------------------------

@dataclass
class Case:
    iset: InputSet
    tree: Node
    opts: Opts


def check_case(case, workdir, stats=None):
    """Mismatch or None ('skip' kinds are reported as None with stats['skips'] bumped)."""
    env = case.iset.env()
    expected = oracle(case.tree, env)
    outcome = run_dsk(case.tree.text(), case.iset, inputs_of(case.tree), case.opts, workdir)
    if outcome.kind == "budget" and stats is not None:
        stats["budget_skips"] += 1
    return compare(expected, outcome, stats)


def replace_at(tree, path, new):
    if not path:
        return new
    i = path[0]
    args = list(tree.args)
    args[i] = replace_at(args[i], path[1:], new)
    return tree.with_args(args)


def all_paths(tree, prefix=()):
    yield prefix, tree
    for i, c in enumerate(tree.args):
        yield from all_paths(c, prefix + (i,))


SIMPLE_LITS = [0, 1, 2, 0.5, 1.5, -1, True]


def candidates(tree, iset):
    """Smaller variants of tree, smallest first-ish."""
    out = []
    nodes = list(all_paths(tree))
    names_by_size = sorted(iset.arrays, key=lambda n: (iset.arrays[n].data.size, n))
    for path, n in nodes:
        # a node replaced by one of its children
        for c in n.args:
            out.append(replace_at(tree, path, c))
    for path, n in nodes:
        if n.kind in ("lit", "in"):
            continue
        # a node replaced by an input or a literal
        for nm in names_by_size[:3]:
            out.append(replace_at(tree, path, Node("in", name=nm)))
        for v in SIMPLE_LITS[:4]:
            out.append(replace_at(tree, path, Node("lit", value=v)))
    for path, n in nodes:
        a = n.attrs
        if n.kind == "lit":
            v = a["value"]
            for s in SIMPLE_LITS:
                if s != v and type(s) is not bool:
                    out.append(replace_at(tree, path, Node("lit", value=s)))
        elif n.kind == "in":
            for nm in names_by_size:
                if nm != a["name"]:
                    out.append(replace_at(tree, path, Node("in", name=nm)))
        elif n.kind == "idx":
            items = a["items"]
            for i in range(len(items)):
                rest = items[:i] + items[i + 1:]
                if rest:
                    out.append(replace_at(tree, path, n.with_attrs(items=rest)))
                if items[i] != ("s", None, None, None) and items[i][0] == "s":
                    simp = items[:i] + (("s", None, None, items[i][3]),) + items[i + 1:]
                    out.append(replace_at(tree, path, n.with_attrs(items=simp)))
        elif n.kind in ("red", "scan"):
            if a.get("keepdims"):
                out.append(replace_at(tree, path, n.with_attrs(keepdims=False)))
            if a.get("ddof"):
                out.append(replace_at(tree, path, n.with_attrs(ddof=0)))
            if a.get("axis", "omit") != "omit":
                out.append(replace_at(tree, path, n.with_attrs(axis="omit")))
            if not a.get("method"):
                out.append(replace_at(tree, path, n.with_attrs(method=True)))
        elif n.kind == "gen":
            if a.get("chunks") is not None:
                out.append(replace_at(tree, path, n.with_attrs(chunks=None)))
            if a.get("dtype") is not None:
                out.append(replace_at(tree, path, n.with_attrs(dtype=None)))
        elif n.kind == "T" and a["form"] != "T":
            out.append(replace_at(tree, path, n.with_attrs(form="T")))
        elif n.kind == "round" and a.get("decimals") is not None:
            out.append(replace_at(tree, path, n.with_attrs(decimals=None)))
    return out


def tree_cost(t):
    return (t.size(), len(t.text()))


def opt_candidates(o):
    out = []
    if o.scheduler == "processes":
        out += [Opts("threads", o.workers, o.memory, o.split_every), Opts("sync", o.workers, o.memory, o.split_every)]
    elif o.scheduler == "threads":
        out.append(Opts("sync", o.workers, o.memory, o.split_every))
    if o.workers is not None:
        out.append(Opts(o.scheduler, None, o.memory, o.split_every))
    if o.memory is not None:
        out.append(Opts(o.scheduler, o.workers, None, o.split_every))
    if o.split_every is not None:
        out.append(Opts(o.scheduler, o.workers, o.memory, None))
    return out


def family(kind):
    """Mismatch kinds that count as 'failing the same way' while shrinking: the value kinds (exact,
    float, NaN, inf) form one family; dtype, shape, dsk-accepts, dsk-refuses, crash, timeout are
    their own."""
    return "value" if kind.startswith("value") else kind


def shrink(case, mismatch, workdir, budget=300, deadline=None):
    """Greedy shrinking: keep the first smaller candidate that fails with the same mismatch kind."""
    env = case.iset.env()
    kind = mismatch.kind
    best, best_m = case, mismatch
    runs = 0
    want_refuse = kind == "dsk-accepts"
    improved = True
    seen = {case.tree.text()}
    while improved and runs < budget and (deadline is None or time.time() < deadline):
        improved = False
        cands = sorted(candidates(best.tree, best.iset), key=tree_cost)
        for t in cands:
            if tree_cost(t) >= tree_cost(best.tree) or t.text() in seen:
                continue
            seen.add(t.text())
            try:
                exp = oracle(t, env)
            except DocDiff:
                continue
            if (exp[0] == "refuse") != want_refuse:
                continue
            runs += 1
            c = Case(best.iset, t, best.opts)
            m = check_case(c, workdir)
            if m is not None and family(m.kind) == family(kind):
                best, best_m, improved = c, m, True
                break
            if runs >= budget or (deadline is not None and time.time() >= deadline):
                break
        if not improved and runs < budget:
            for o in opt_candidates(best.opts):
                runs += 1
                c = Case(best.iset, best.tree, o)
                m = check_case(c, workdir)
                if m is not None and family(m.kind) == family(kind):
                    best, best_m, improved = c, m, True
                    break
    return best, best_m, runs


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------


def py_literal_array(a):
    if a.dtype.kind == "f":
        items = ", ".join("nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
                          for v in a.reshape(-1).tolist())
    else:
        items = ", ".join(repr(v) for v in a.reshape(-1).tolist())
    return f"np.array([{items}], dtype='{a.dtype}').reshape({a.shape})"


def repro_text(case, mismatch, fixdir="/tmp/dsk-repro"):
    """A shell-pasteable reproducer: a Python line writing the inputs, the dsk command, and the
    NumPy value."""
    names = sorted(inputs_of(case.tree))
    lines = []
    py = ["import numpy as np, zarr", "from numpy import nan, inf"]
    for n in names:
        s = case.iset.arrays[n]
        p = f"{fixdir}/{n}.zarr"
        dts = s.data.dtype.newbyteorder(">").str if s.endian == ">" and s.data.dtype.itemsize > 1 else str(s.data.dtype)
        kw = f"shape={s.data.shape}, chunks={s.chunks}, dtype='{dts}', zarr_format={s.zarr_format}"
        if s.shards:
            kw += f", shards={s.shards}"
        if s.order == "F":
            kw += ", order='F'"
        if s.fill_value is not None:
            kw += f", fill_value={fmt_lit(s.fill_value) if isinstance(s.fill_value, float) else repr(s.fill_value)}"
        py.append(f"z = zarr.create_array(store='{p}', {kw}, overwrite=True)")
        if s.data.size:
            py.append(f"z[...] = {py_literal_array(s.data)}")
    opts = " ".join(case.opts.args())
    lines.append(f"mkdir -p {fixdir} && .venv/bin/python -c {shlex.quote('; '.join(py))}")
    ins = " ".join(f"{n}={fixdir}/{n}.zarr" for n in names)
    lines.append(f"$DSK eval {shlex.quote(case.tree.text())} {ins} -o {fixdir}/out.npy --overwrite -q {opts}".replace("  ", " "))
    return "\n".join(lines)


def input_notes(case):
    return "\n".join("    " + case.iset.arrays[n].describe() for n in sorted(inputs_of(case.tree)))


def numpy_side(case):
    try:
        k, v = oracle(case.tree, case.iset.env())
    except DocDiff as ex:
        return f"(doc diff: {ex})"
    if k == "refuse":
        return f"NumPy refuses: {v}"
    return f"NumPy: {describe_arr(v.v)}"


def signature(case, mismatch):
    """A normalised form of the shrunk expression for grouping: inputs replaced by dtype/rank."""
    t = case.tree.text()
    for n in sorted(inputs_of(case.tree), key=len, reverse=True):
        s = case.iset.arrays[n].data
        t = re.sub(rf"\b{n}\b", f"<{s.dtype}:{s.ndim}d>", t)
    return f"{mismatch.kind}: {t}"


def coarse_signature(case, mismatch):
    """Coarser grouping (a probable bug class): inputs by dtype only, numbers replaced by #."""
    t = case.tree.text()
    for n in sorted(inputs_of(case.tree), key=len, reverse=True):
        t = re.sub(rf"\b{n}\b", "<in>", t)
    t = re.sub(r"(?<![\w<])-?\d+(\.\d*)?(e[+-]?\d+)?", "#", t)
    return f"{family(mismatch.kind)}: {t}"


def simplify_inputs(case, mismatch, workdir):
    """Try the inputs as plain single-chunk Zarr v3 arrays; keep that if it still fails the same way.
    Returns (case, note)."""
    names = sorted(inputs_of(case.tree))
    if not names:
        return case, ""
    d = tempfile.mkdtemp(prefix="simple-", dir=workdir)
    arrays = dict(case.iset.arrays)
    for n in names:
        s = arrays[n]
        arrays[n] = ArrSpec(n, os.path.join(d, f"{n}.zarr"), s.data, tuple(max(1, x) for x in s.data.shape) or (),
                            3)
        write_zarr(arrays[n])
    c2 = Case(InputSet(case.iset.index, arrays), case.tree, case.opts)
    try:
        m = check_case(c2, workdir)
    except DocDiff:
        m = None
    if m is not None and family(m.kind) == family(mismatch.kind):
        return c2, "also fails with the inputs as single-chunk Zarr v3 arrays"
    return case, "passes with the inputs as single-chunk Zarr v3 arrays: the chunking/format matters"


# ----------------------------------------------------------------------------------------------
# Campaigns
# ----------------------------------------------------------------------------------------------

DEFAULT_SCHED = [("threads", 60), ("sync", 20), ("processes", 20)]


@dataclass
class Failure:
    index: int
    original: Case
    mismatch: Mismatch
    shrunk: Case | None = None
    shrunk_m: Mismatch | None = None
    dup_of: str | None = None
    note: str = ""


@dataclass
class Result:
    n: int = 0
    failures: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)  # signature -> [Failure]
    elapsed: float = 0.0
    seed: int = 0

    def summary(self):
        s = self.stats
        lines = [f"{self.n} expressions in {self.elapsed:.1f} s: {len(self.failures)} failed, "
                 f"{len(self.groups)} distinct shrunk failures in {len(self.classes())} classes; "
                 f"{s.get('refused', 0)} expected refusals, "
                 f"{s.get('budget_skips', 0)} budget skips, {s.get('docdiff', 0)} generator rejects; "
                 f"unstable elements {s.get('unstable', 0)}/{s.get('elements', 0)} "
                 f"({100.0 * s.get('unstable', 0) / max(1, s.get('elements', 1)):.2f}%)"]
        return "\n".join(lines)

    def classes(self):
        """coarse signature -> list of (exact signature, failures)"""
        out = {}
        for sig, fs in self.groups.items():
            f = fs[0]
            c, m = (f.shrunk, f.shrunk_m) if f.shrunk else (f.original, f.mismatch)
            out.setdefault(coarse_signature(c, m), []).append((sig, fs))
        return out

    def report(self, limit=None):
        out = []
        classes = sorted(self.classes().items(), key=lambda kv: -sum(len(fs) for _, fs in kv[1]))
        if not classes:
            return "no failures"
        out.append("Shrunk failures (one per class; details below):")
        for csig, members in classes:
            f = max(members, key=lambda sf: len(sf[1]))[1][0]
            c, m = (f.shrunk, f.shrunk_m) if f.shrunk else (f.original, f.mismatch)
            tag = "" if f.shrunk else "  (not shrunk)"
            out.append(f"  [{m.kind}] {c.tree.text()}    {' '.join(c.opts.args())}{tag}")
        out.append("")
        for i, (csig, members) in enumerate(classes):
            if limit is not None and i >= limit:
                out.append(f"... and {len(classes) - limit} more classes")
                break
            members.sort(key=lambda sf: -len(sf[1]))
            sig, fs = members[0]
            f = fs[0]
            n = sum(len(x) for _, x in members)
            c, m = (f.shrunk, f.shrunk_m) if f.shrunk else (f.original, f.mismatch)
            out.append(f"=== [{m.kind}] {n} failure(s), {len(members)} variant(s)  {c.tree.text()}    "
                       f"({' '.join(c.opts.args())})")
            for sig2, _ in members[1:4]:
                out.append(f"  variant: {sig2}")
            out.append(f"  original (#{f.index}): {f.original.tree.text()}")
            if f.note:
                out.append(f"  {f.note}")
            out.append(input_notes(c))
            out.append("  " + numpy_side(c))
            out.append(f"  cases-file line: {self.seed}:{c.iset.index} | {c.tree.text()} | {' '.join(c.opts.args())}")
            out.append("  " + m.detail.replace("\n", "\n  "))
            out.append("  repro:\n    " + repro_text(c, m).replace("\n", "\n    "))
        return "\n".join(out)


def load_cases(path):
    if not path or not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def parse_case_line(line):
    """`SEED:SET | EXPR | OPTS...` lines of difftest_cases.txt -> (seed, set, expression, Opts)."""
    parts = [p.strip() for p in line.split("|")]
    seed, si = (int(t) for t in parts[0].split(":"))
    expr = parts[1]
    o = Opts()
    if len(parts) > 2 and parts[2]:
        toks = parts[2].split()
        for i in range(0, len(toks) - 1, 2):
            k, v = toks[i], toks[i + 1]
            if k == "--scheduler":
                o.scheduler = v
            elif k == "--workers":
                o.workers = int(v)
            elif k == "--memory":
                o.memory = v
            elif k == "--split-every":
                o.split_every = int(v)
    return seed, si, expr, o


def run_campaign(n, seed, jobs=None, schedulers=None, nsets=6, root=None, max_shrinks=60, shrink_budget=250,
                 progress=False, p_invalid=0.03, extra_exprs=(), shrink_seconds=None):
    """Generate and check n expressions (expression i from seed (seed, i)); shrink failures."""
    warnings.simplefilter("ignore")
    jobs = jobs or os.cpu_count() or 4
    schedulers = schedulers or DEFAULT_SCHED
    root = root or os.path.join(tempfile.gettempdir(), "dsk-difftest")
    sets = build_input_sets(seed, nsets, root)
    workroot = tempfile.mkdtemp(prefix="dsk-difftest-work-")
    res = Result(n=n, seed=seed)
    stats = {"elements": 0, "unstable": 0, "budget_skips": 0, "refused": 0, "docdiff": 0}
    lock = threading.Lock()
    shrinks_done = [0]
    known = []  # (normalized signature, Failure)
    t0 = time.time()
    deadline = None if shrink_seconds is None else t0 + shrink_seconds

    def make_case(i):
        rng = random.Random(f"{seed}:{i}")
        iset = sets[rng.randrange(len(sets))]
        g = Gen(rng, iset, p_invalid)
        with np.errstate(all="ignore"):
            tree = g.expr()
        return Case(iset, tree, rand_opts(rng, schedulers))

    def handle(i, case):
        wd = os.path.join(workroot, f"t{threading.get_ident()}")
        os.makedirs(wd, exist_ok=True)
        with np.errstate(all="ignore"):
            local = {"elements": 0, "unstable": 0, "budget_skips": 0, "refused": 0, "docdiff": 0}
            try:
                expected = oracle(case.tree, case.iset.env())
            except DocDiff:
                local["docdiff"] += 1
                return None, local
            if expected[0] == "refuse":
                local["refused"] += 1
            outcome = run_dsk(case.tree.text(), case.iset, inputs_of(case.tree), case.opts, wd)
            if outcome.kind == "budget":
                local["budget_skips"] += 1
            m = compare(expected, outcome, local)
            if m is None:
                return None, local
            f = Failure(i, case, m)
            # a known shrunk failure inside this one? confirm with one run, then skip shrinking
            subs = {}
            for _, sub in all_paths(case.tree):
                subs.setdefault(coarse_signature(Case(case.iset, sub, case.opts), m), sub)
            with lock:
                cands = [(sig, kf) for sig, kf in known if sig in subs]
                do_shrink = shrinks_done[0] < max_shrinks and (deadline is None or time.time() < deadline)
                if not cands and do_shrink:
                    shrinks_done[0] += 1
            for sig, kf in cands[:2]:
                sub = subs[sig]
                c2 = Case(case.iset, sub, kf.shrunk.opts)
                try:
                    m2 = check_case(c2, wd)
                except DocDiff:
                    m2 = None
                if m2 is not None and family(m2.kind) == family(m.kind):
                    f.shrunk, f.shrunk_m, f.dup_of = c2, m2, sig
                    return f, local
            if do_shrink:
                sc, sm, _ = shrink(case, m, wd, shrink_budget, deadline)
                sc, f.note = simplify_inputs(sc, sm, wd)
                f.shrunk, f.shrunk_m = sc, sm
                with lock:
                    known.append((coarse_signature(sc, sm), f))
            return f, local

    def work(i, case=None):
        case = case or make_case(i)
        try:
            return i, handle(i, case)
        except Exception as ex:  # a harness bug must not kill the campaign; report it as a failure
            import traceback
            return i, (Failure(i, case, Mismatch("harness-error", traceback.format_exc())), {})

    items = []
    other_sets = {seed: sets}
    for j, line in enumerate(extra_exprs):
        cseed, si, text, o = parse_case_line(line)
        if cseed not in other_sets:
            other_sets[cseed] = build_input_sets(cseed, nsets, root)
        iset = other_sets[cseed][si]
        items.append((-1 - j, Case(iset, ParsedExpr(text, iset).tree, o)))
    with cf.ThreadPoolExecutor(jobs) as ex:
        futs = [ex.submit(work, i, c) for i, c in items]
        # submit lazily to bound memory
        it = iter(range(n))
        pending = set(futs)
        done_count = 0
        while True:
            while len(pending) < jobs * 4:
                i = next(it, None)
                if i is None:
                    break
                pending.add(ex.submit(work, i))
            if not pending:
                break
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fu in done:
                i, (f, local) = fu.result()
                done_count += 1
                with lock:
                    for kk, vv in local.items():
                        stats[kk] = stats.get(kk, 0) + vv
                    if f is not None:
                        res.failures.append(f)
                        c, m = (f.shrunk, f.shrunk_m) if f.shrunk else (f.original, f.mismatch)
                        sig = f.dup_of or signature(c, m)
                        res.groups.setdefault(sig, []).append(f)
                        if progress:
                            how = "shrunk" if f.shrunk and not f.dup_of else "known class" if f.dup_of else "not shrunk"
                            print(f"[{done_count}/{n}] FAIL #{i} [{m.kind}] {c.tree.text()}  ({' '.join(c.opts.args())})"
                                  f"  [{how}]", flush=True)
                            if not f.dup_of:
                                print(input_notes(c))
                                print("    " + m.detail.splitlines()[0] + (
                                    ("; " + m.detail.splitlines()[1].strip()) if len(m.detail.splitlines()) > 1 else ""),
                                      flush=True)
                if progress and done_count % 1000 == 0:
                    print(f"[{done_count}/{n}] {len(res.failures)} failures, {time.time() - t0:.0f} s", flush=True)
    res.stats = stats
    res.elapsed = time.time() - t0
    shutil.rmtree(workroot, ignore_errors=True)
    return res


class ParsedExpr:
    """A regression expression from difftest_cases.txt: parsed with Python's ast into a Node tree."""

    def __init__(self, text, iset):
        import ast
        self.tree = self.conv(ast.parse(text, mode="eval").body)

    def conv(self, e):
        import ast
        c = self.conv
        if isinstance(e, ast.Name):
            consts = {"nan": math.nan, "inf": math.inf, "pi": math.pi, "e": math.e, "True": True, "False": False}
            if e.id in consts:
                return Node("lit", value=consts[e.id], text=e.id)
            return Node("in", name=e.id)
        if isinstance(e, ast.Constant):
            return Node("lit", value=e.value)
        if isinstance(e, ast.UnaryOp):
            op = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}[type(e.op)]
            inner = c(e.operand)
            if op == "-" and inner.kind == "lit" and not isinstance(inner.attrs["value"], bool):
                v = inner.attrs["value"]
                t = inner.attrs.get("text")
                return Node("lit", value=-v, text=("-" + t) if t else None)
            return Node("un", (inner,), op=op)
        if isinstance(e, ast.BinOp):
            op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
                  ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"}[type(e.op)]
            return Node("bin", (c(e.left), c(e.right)), op=op)
        if isinstance(e, ast.Compare):
            op = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}[type(e.ops[0])]
            return Node("bin", (c(e.left), c(e.comparators[0])), op=op)
        if isinstance(e, ast.Attribute) and e.attr == "T":
            return Node("T", (c(e.value),), form="T")
        if isinstance(e, ast.Subscript):
            sl = e.slice.elts if isinstance(e.slice, ast.Tuple) else [e.slice]
            items = []
            for s in sl:
                if isinstance(s, ast.Slice):
                    g = lambda z: None if z is None else ast.literal_eval(z)
                    items.append(("s", g(s.lower), g(s.upper), g(s.step)))
                elif isinstance(s, ast.Constant) and s.value is Ellipsis:
                    items.append(("e",))
                else:
                    items.append(("i", ast.literal_eval(s)))
            return Node("idx", (c(e.value),), items=tuple(items))
        if isinstance(e, ast.Call):
            kw = {k.arg: ast.literal_eval(k.value) for k in e.keywords}
            if isinstance(e.func, ast.Attribute):
                name, args, method = e.func.attr, [e.func.value] + list(e.args), True
            else:
                name, args, method = e.func.id, list(e.args), False
            if name in RED_OPS or name in ("cumsum", "cumprod"):
                kind = "red" if name in RED_OPS else "scan"
                return Node(kind, (c(args[0]),), op=name, axis=kw.get("axis", "omit"), keepdims=kw.get("keepdims", False),
                            ddof=kw.get("ddof", 0), method=method)
            if name in ("minimum", "maximum"):
                return Node("call2", (c(args[0]), c(args[1])), fn=name)
            if name == "clip":
                return Node("clip", tuple(c(a) for a in args), method=method)
            if name == "where":
                return Node("where", tuple(c(a) for a in args))
            if name == "astype":
                return Node("astype", (c(args[0]),), dtype=ast.literal_eval(args[1]), method=method)
            if name == "round":
                dec = ast.literal_eval(args[1]) if len(args) > 1 else None
                return Node("round", (c(args[0]),), method=method, decimals=dec)
            if name == "rechunk":
                return Node("rechunk", (c(args[0]),), chunks=ast.literal_eval(args[1]), method=method)
            if name == "transpose":
                if len(args) == 1:
                    return Node("T", (c(args[0]),), form="funcnone" if not method else "methnone", perm=())
                if method and len(args) == 2 and isinstance(args[1], ast.Tuple):
                    return Node("T", (c(args[0]),), form="methtuple", perm=ast.literal_eval(args[1]))
                if method:
                    return Node("T", (c(args[0]),), form="meth", perm=tuple(ast.literal_eval(a) for a in args[1:]))
                return Node("T", (c(args[0]),), form="func", perm=ast.literal_eval(args[1]))
            if name in ("ones", "zeros", "full", "arange", "linspace"):
                vals = [ast.literal_eval(a) for a in args]
                if name in ("ones", "zeros"):
                    sh = vals[0] if isinstance(vals[0], tuple) else (vals[0],)
                    return Node("gen", fn=name, shape=sh, chunks=kw.get("chunks"), dtype=kw.get("dtype"))
                if name == "full":
                    return Node("gen", fn=name, shape=vals[0], value=vals[1], chunks=kw.get("chunks"), dtype=kw.get("dtype"))
                if name == "arange":
                    return Node("gen", fn=name, params=tuple(vals), chunks=kw.get("chunks"), dtype=kw.get("dtype"))
                return Node("gen", fn=name, start=vals[0], stop=vals[1], num=vals[2], chunks=kw.get("chunks"),
                            dtype=kw.get("dtype"))
            return Node("call", (c(args[0]),), fn=name, method=method)
        raise ValueError(f"cannot parse {ast.dump(e)}")


def _W(x):
    x = np.asarray(x)
    return x.view(_A)


class _A(np.ndarray):
    """ndarray with dsk's extra methods, for evaluating an expression's text with Python's eval."""

    def rechunk(self, chunks):
        return self

    def __getitem__(self, key):
        return _W(np.asarray(self)[key])

    @property
    def T(self):
        return _W(np.asarray(self).T)

    def astype(self, dt):
        return _W(np.asarray(self).astype(dt))

    def transpose(self, *perm):
        return _W(np.asarray(self).transpose(*perm))

    def clip(self, lo, hi):
        return _W(np.clip(np.asarray(self), lo, hi))

    def round(self, decimals=0):
        return _W(np.round(np.asarray(self), decimals))


def _method(name):
    f = np.count_nonzero if name == "count_nonzero" else getattr(np, name)
    return lambda self, **kw: _W(f(np.asarray(self), **kw))


for _n in RED_OPS + ["cumsum", "cumprod"]:
    setattr(_A, _n, _method(_n))


def _wrapf(f):
    return lambda *a, **kw: _W(f(*[np.asarray(x) if isinstance(x, np.ndarray) else x for x in a], **kw))


def _eval_namespace(env):
    ns = {n: _wrapf(getattr(np, n)) for n in UNARY_FUNCS + RED_OPS + ["minimum", "maximum", "clip", "where",
                                                                      "transpose", "cumsum", "cumprod", "round"]
          if n != "count_nonzero"}
    ns["count_nonzero"] = _wrapf(np.count_nonzero)
    ns["astype"] = lambda x, dt: _W(np.asarray(x).astype(dt))
    ns["rechunk"] = lambda x, c: x
    ns["ones"] = lambda shape, chunks=None, dtype=None: _W(np.ones(shape, dtype or "float64"))
    ns["zeros"] = lambda shape, chunks=None, dtype=None: _W(np.zeros(shape, dtype or "float64"))
    ns["full"] = lambda shape, v, chunks=None, dtype=None: _W(np.full(shape, v, dtype))
    ns["arange"] = lambda *a, chunks=None, dtype=None: _W(np.arange(*a, dtype=dtype))
    ns["linspace"] = lambda a, b, n, chunks=None, dtype=None: _W(np.linspace(a, b, n, dtype=dtype))
    ns.update(nan=math.nan, inf=math.inf, pi=math.pi, e=math.e)
    ns.update({k: _W(v) for k, v in env.items()})
    return ns


def _has_f16_path(tree, env):
    """Does NumPy compute in float16 somewhere in tree (where the oracle uses float32)?"""
    for _, n in all_paths(tree):
        if n.kind in ("call", "round") and n.args:
            try:
                a = evaluate(n.args[0], env)
            except Exception:
                continue
            if not a.weak and a.v.dtype.itemsize == 1 and a.v.dtype.kind in "biu" and n.attrs.get("fn") not in (
                    "abs", "sign", "floor", "ceil", "isnan", "isfinite", "reciprocal"):
                return True
    return False


def selftest_render(n=2000, seed=5, nsets=4, root=None):
    """The text sent to dsk, evaluated by Python + NumPy, must equal the oracle's value (checks the
    printer's precedence and the oracle's semantics). Returns a list of problems."""
    root = root or os.path.join(tempfile.gettempdir(), "dsk-difftest")
    sets = build_input_sets(seed, nsets, root)
    problems = []
    for i in range(n):
        rng = random.Random(f"self{seed}:{i}")
        iset = sets[rng.randrange(len(sets))]
        env = iset.env()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = Gen(rng, iset).expr()
            text = tree.text()
            try:
                kind, val = oracle(tree, env)
            except DocDiff:
                continue
            try:
                got = np.asarray(eval(text, {}, _eval_namespace(env)))
                gkind = "value"
            except Exception as ex:
                gkind, got = "refuse", ex
        if "astype" in text or "reciprocal" in text or _has_f16_path(tree, env):
            continue  # documented differences (saturating casts, float16) are emulated by the oracle
        if kind != gkind:
            problems.append(f"{text}: oracle {kind}, eval {gkind} ({got if gkind == 'refuse' else ''})")
            continue
        if kind == "refuse":
            continue
        w = val.v
        if got.dtype == np.float16:
            got = got.astype(F32)
            if w.dtype == F32:
                w = w.astype(np.float16).astype(F32)
        if got.shape != w.shape or got.dtype != w.dtype:
            problems.append(f"{text}: oracle {w.dtype}{w.shape}, eval {got.dtype}{got.shape}")
        elif not np.array_equal(np.asarray(got, dtype=w.dtype), w, equal_nan=w.dtype.kind == "f"):
            problems.append(f"{text}: values differ: {describe_arr(w)} vs {describe_arr(got)}")
    return problems


def _alt_reduce(op, v, axis, keepdims, ddof):
    """A different but valid implementation of the float reductions (float64 accumulation in a
    different order, as dsk might do), to check that the error bounds are not too tight."""
    if v.dtype.kind != "f" or op in ("min", "max", "nanmin", "nanmax", "argmin", "argmax", "any", "all",
                                     "count_nonzero"):
        return None
    kw = {} if axis == "omit" else {"axis": axis}
    axes = () if axis == () else norm_axes(axis, v.ndim)
    x = np.flip(v.astype(F64), axis=axes) if v.ndim and axes else v.astype(F64)  # reversed summation order
    skip = op.startswith("nan")
    base = op[3:] if skip else op
    if base in ("sum", "mean", "prod"):
        f = {"sum": np.nansum if skip else np.sum, "prod": np.nanprod if skip else np.prod,
             "mean": np.nanmean if skip else np.mean}[base]
        r = f(x, **kw, keepdims=keepdims)
    else:
        # Welford-free: two-pass with float64 (NumPy's own, on float64 reversed data)
        f = {"var": np.nanvar if skip else np.var, "std": np.nanstd if skip else np.std}[base]
        r = f(x, **kw, keepdims=keepdims, ddof=ddof)
    return np.asarray(r).astype(v.dtype if v.dtype.kind == "f" else F64)


def alt_eval(node, env):
    """The value of node computed another valid way (libm for the math functions, float64 for
    float32 math, other summation orders): what a correct dsk could return."""
    args = [alt_eval(c, env) for c in node.args]
    vals = [a if a.weak else Val(a.v, np.zeros(a.v.shape)) for a in args]
    k, a = node.kind, node.attrs
    with np.errstate(all="ignore"):
        if k == "call" and a["fn"] in TRANSC and not vals[0].weak and vals[0].v.dtype.kind in "f":
            x = vals[0].v
            f = getattr(math, {"arcsin": "asin", "arccos": "acos", "arctan": "atan"}.get(a["fn"], a["fn"]))

            def g(t):
                try:
                    return f(t)
                except (ValueError, OverflowError):
                    return float(getattr(np, a["fn"])(np.float64(t)))
            r = np.array([g(t) for t in x.astype(F64).reshape(-1).tolist()], dtype=F64).reshape(x.shape)
            return Val(r.astype(x.dtype), np.zeros(x.shape))
        if k == "bin" and a["op"] == "**":
            val = apply_node(node, vals, env)
            x, y = vals
            fast = y.weak and not isinstance(y.v, bool) and y.v in (2, 0.5, -1, 1, 0)
            if isinstance(val.v, np.ndarray) and val.v.dtype.kind == "f" and not fast:
                rd = val.v.dtype  # weak literals take the result's dtype first (NEP 50)
                xs = np.broadcast_to(np.asarray(x.v).astype(rd).astype(F64), val.v.shape).reshape(-1).tolist()
                ys = np.broadcast_to(np.asarray(y.v).astype(rd).astype(F64), val.v.shape).reshape(-1).tolist()
                out = []
                for p, q in zip(xs, ys):
                    try:
                        out.append(math.pow(p, q))
                    except (ValueError, OverflowError):
                        out.append(float(np.power(np.float64(p), np.float64(q))))
                r = np.array(out, dtype=F64).reshape(val.v.shape).astype(val.v.dtype)
                return Val(r, np.zeros(r.shape))
            return val
        if k == "red" and not vals[0].weak:
            r = _alt_reduce(a["op"], vals[0].v, a.get("axis", "omit"), a.get("keepdims", False), a.get("ddof", 0))
            if r is not None:
                return Val(r, np.zeros(r.shape))
        if k == "scan" and not vals[0].weak and vals[0].v.dtype.kind == "f":
            v = vals[0].v
            ax = a.get("axis", "omit")
            ax = 0 if ax in (None, "omit") else ax
            r = getattr(np, a["op"])(v.astype(F64), axis=ax).astype(v.dtype)
            return Val(r, np.zeros(r.shape))
    return apply_node(node, vals, env)


def selftest_bounds(n=2000, seed=6, nsets=6, root=None):
    """alt_eval (another valid implementation) must pass the comparison with the oracle's bounds.
    Returns a list of problems: each is either a bound that is too tight or a bug in alt_eval."""
    root = root or os.path.join(tempfile.gettempdir(), "dsk-difftest")
    sets = build_input_sets(seed, nsets, root)
    problems = []
    for i in range(n):
        rng = random.Random(f"bounds{seed}:{i}")
        iset = sets[rng.randrange(len(sets))]
        env = iset.env()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = Gen(rng, iset).expr()
            try:
                expected = oracle(tree, env)
                if expected[0] != "value":
                    continue
                alt = alt_eval(tree, env)
            except (DocDiff, NumpyRefuses):
                continue
            m = compare(expected, Outcome("ok", arr=np.asarray(alt.v)))
        if m is not None:
            problems.append(f"{tree.text()}  [{m.kind}] {m.detail}")
    return problems


def check_one(line, nsets=6, root=None):
    warnings.simplefilter("ignore")
    root = root or os.path.join(tempfile.gettempdir(), "dsk-difftest")
    seed, si, text, o = parse_case_line(line)
    iset = build_input_sets(seed, nsets, root)[si]
    case = Case(iset, ParsedExpr(text, iset).tree, o)
    wd = tempfile.mkdtemp(prefix="dsk-difftest-check-")
    with np.errstate(all="ignore"):
        print("expression:", case.tree.text())
        print(input_notes(case))
        print(numpy_side(case))
        m = check_case(case, wd)
        if m is None:
            print("OK")
            return 0
        print(f"[{m.kind}] {m.detail}")
        sc, sm, runs = shrink(case, m, wd)
        sc, note = simplify_inputs(sc, sm, wd)
        print(f"shrunk ({runs} runs): {sc.tree.text()}   ({' '.join(sc.opts.args())})  {note}")
        print(input_notes(sc))
        print(numpy_side(sc))
        print(f"[{sm.kind}] {sm.detail}")
        print(repro_text(sc, sm))
    return 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--schedulers", default="threads,sync,processes",
                    help="comma list; weights 60/20/20 for threads/sync/processes when all three are given")
    ap.add_argument("--sets", type=int, default=6, help="input sets per seed")
    ap.add_argument("--max-shrinks", type=int, default=300)
    ap.add_argument("--shrink-budget", type=int, default=250, help="dsk runs per shrink")
    ap.add_argument("--cases", default=os.path.join(HERE, "difftest_cases.txt"))
    ap.add_argument("--root", default=None, help="where input sets are cached")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--check", default=None, metavar="'SEED:SET | EXPR | OPTS'",
                    help="check (and shrink) one expression on an input set, print the details")
    args = ap.parse_args(argv)
    if args.check:
        return check_one(args.check, args.sets, args.root)
    w = dict(DEFAULT_SCHED)
    scheds = [(s, w.get(s, 20)) for s in args.schedulers.split(",") if s]
    if not os.path.exists(DSK):
        sys.exit(f"no dsk binary at {DSK}: set DSK")
    print(f"dsk: {DSK}; seed {args.seed}; {args.n} expressions; schedulers {scheds}", flush=True)
    res = run_campaign(args.n, args.seed, args.jobs, scheds, args.sets, args.root, args.max_shrinks,
                       args.shrink_budget, progress=not args.quiet, extra_exprs=load_cases(args.cases))
    print()
    print(res.report())
    print()
    print(res.summary())
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
