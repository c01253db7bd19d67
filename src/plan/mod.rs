//! The array plan: a lazy DAG of array nodes, each with a shape, a dtype and a chunk grid, built from
//! an expression's syntax tree without reading any data. [`build`] types the expression with NumPy's
//! rules ([`types`]), broadcasts shapes, resolves names to inputs and checks everything a user can
//! get wrong, pointing at the offending part of the expression.
//!
//! Nodes: `Input` (a Zarr array), `Gen` (a generator: ones, random, …), `Const` (a literal),
//! `Map` (element-wise, N inputs, broadcasting), `Index` (basic indexing with steps), `Transpose`,
//! `Astype`, `Rechunk` (fuse into the task that reads their sources), and `Reduce` and `Scan`
//! (stage boundaries: `exec::stages` computes them first and replaces each by a `Temp` leaf holding
//! its result). The same computation written twice is one node; constants are folded ([`fold`]);
//! nodes the root does not need are pruned, so every node of a plan is computed.

pub mod carry;
pub mod complex;
pub mod fold;
pub mod literal;
pub mod lower;
pub mod physical;
pub mod planner;
pub mod rechunk;
pub mod types;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::dtype::{DType, Elem, Scalar};
use crate::expr::ast::{BinOp, Expr, ExprKind, IndexItem, Span, UnOp};
use crate::expr::parser::ExprError;
use crate::expr::slice::{self, AxisSel, Item};
use crate::grid::{auto_chunks, tuple, AUTO_CHUNK_BYTES};
use crate::kernels::elementwise::MapOp;
use crate::kernels::generate::{arange_len, arange_len_int, Generator, ScalarRepr};
use crate::kernels::random::Dist;
use crate::kernels::reduce::ReduceOp;
use crate::with_dtype;
use types::{float_of, result_type, Ty};

/// A named input array.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Input {
    pub name: String,
    #[serde(with = "crate::serial::os_path")]
    pub path: PathBuf,
    pub shape: Vec<u64>,
    pub dtype: DType,
    /// The input's chunk shape (the storage chunks: shards when sharded).
    pub chunks: Vec<u64>,
    /// A complex array, given as its view: `shape` and `chunks` end with the axis of its parts
    /// (length 2) and `dtype` is theirs (see [`complex`]).
    #[serde(default)]
    pub complex: bool,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum NodeKind {
    Input {
        input: usize,
    },
    Gen {
        gen: Generator,
    },
    Const {
        value: ScalarRepr,
    },
    Map {
        op: MapOp,
        args: Vec<usize>,
        compute: DType,
    },
    Index {
        arg: usize,
        sel: Vec<AxisSel>,
    },
    Transpose {
        arg: usize,
        perm: Vec<usize>,
    },
    Astype {
        arg: usize,
    },
    /// A reduction over `axes` (sorted); a stage boundary.
    Reduce {
        arg: usize,
        op: ReduceOp,
        axes: Vec<usize>,
        keepdims: bool,
        #[serde(with = "crate::serial::exact_f64")]
        ddof: f64,
    },
    /// cumsum / cumprod along `axis`; a stage boundary.
    Scan {
        arg: usize,
        axis: usize,
        prod: bool,
    },
    /// The materialised result of an earlier stage (`Plan::temps[temp]`).
    Temp {
        temp: usize,
    },
    /// The same values in another chunk grid (`node.chunks`): tasks downstream read whatever source
    /// regions their chunks need, so this fuses like an element-wise node.
    Rechunk {
        arg: usize,
    },
    /// A complex value's parts side by side on a new last axis of 2 (`re`, `im`: one shape, one
    /// dtype), as complex numbers lie in memory; element-wise, so it fuses too.
    Pair {
        re: usize,
        im: usize,
    },
}

/// A materialised intermediate: array `array` of the physical plan (in the work directory, or the
/// command's output).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TempInfo {
    pub array: usize,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub kind: NodeKind,
    pub shape: Vec<u64>,
    pub dtype: DType,
    /// The chunking this node's values naturally come in (used to choose output chunks).
    pub chunks: Vec<u64>,
    /// A literal whose type adapts to the arrays it meets (NEP 50).
    pub weak: Option<WeakKind>,
    /// What the node is, for `--explain`.
    pub label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WeakKind {
    Int,
    Float,
    Bool,
}

impl Node {
    pub fn args(&self) -> Vec<usize> {
        match &self.kind {
            NodeKind::Map { args, .. } => args.clone(),
            NodeKind::Pair { re, im } => vec![*re, *im],
            NodeKind::Index { arg, .. }
            | NodeKind::Transpose { arg, .. }
            | NodeKind::Astype { arg }
            | NodeKind::Reduce { arg, .. }
            | NodeKind::Scan { arg, .. }
            | NodeKind::Rechunk { arg } => vec![*arg],
            _ => vec![],
        }
    }

    fn args_mut(&mut self) -> Vec<&mut usize> {
        match &mut self.kind {
            NodeKind::Map { args, .. } => args.iter_mut().collect(),
            NodeKind::Pair { re, im } => vec![re, im],
            NodeKind::Index { arg, .. }
            | NodeKind::Transpose { arg, .. }
            | NodeKind::Astype { arg }
            | NodeKind::Reduce { arg, .. }
            | NodeKind::Scan { arg, .. }
            | NodeKind::Rechunk { arg } => vec![arg],
            _ => vec![],
        }
    }

    fn ty(&self) -> Ty {
        match self.weak {
            Some(WeakKind::Int) => Ty::WeakInt,
            Some(WeakKind::Float) => Ty::WeakFloat,
            Some(WeakKind::Bool) => Ty::WeakBool,
            None => Ty::Array(self.dtype),
        }
    }
}

/// A typed, shaped, chunked DAG; `nodes[root]` is the result.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub text: String,
    pub inputs: Vec<Input>,
    pub nodes: Vec<Node>,
    pub root: usize,
    #[serde(default)]
    pub temps: Vec<TempInfo>,
    /// The result is complex: the root is a [`NodeKind::Pair`], the view of the complex values.
    #[serde(default)]
    pub complex: bool,
    /// Further results computed with the root from the same nodes (`dsk reduce --op mean,std`,
    /// `dsk eval -o a.zarr=… -o b.zarr=…`): one plan, so what they share is read once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<usize>,
}

impl Plan {
    pub fn root(&self) -> &Node {
        &self.nodes[self.root]
    }

    /// The result's shape (a complex result's, without its view's axis of parts).
    pub fn result_shape(&self) -> &[u64] {
        let s = &self.root().shape;
        &s[..s.len() - self.complex as usize]
    }

    /// Every result: the root, then the others.
    pub fn roots(&self) -> Vec<usize> {
        std::iter::once(self.root).chain(self.others.iter().copied()).collect()
    }
}

/// Build the plan of `text` over `inputs`.
pub fn build(text: &str, inputs: Vec<Input>) -> Result<Plan, ExprError> {
    let ast = crate::expr::parser::parse(text)?;
    let complex_inputs: Vec<&str> = inputs.iter().filter(|i| i.complex).map(|i| i.name.as_str()).collect();
    let (ast, complex) = complex::lower(&ast, &complex_inputs)?;
    let mut b = Builder { inputs: &inputs, nodes: vec![], by_name: HashMap::new(), seen: HashMap::new() };
    let root = b.expr(&ast)?;
    let nodes = b.nodes;
    finish(text.to_string(), inputs, nodes, vec![root], complex)
}

/// Build one plan computing every expression of `texts` over `inputs` (the first is the root):
/// the nodes they have in common are shared, so a source read by several is read once. Errors
/// carry the index of the expression at fault. Complex results are computed one at a time.
pub fn build_many(texts: &[String], inputs: Vec<Input>) -> Result<Plan, (usize, ExprError)> {
    if texts.len() == 1 {
        return build(&texts[0], inputs).map_err(|e| (0, e));
    }
    let complex_inputs: Vec<&str> = inputs.iter().filter(|i| i.complex).map(|i| i.name.as_str()).collect();
    let mut b = Builder { inputs: &inputs, nodes: vec![], by_name: HashMap::new(), seen: HashMap::new() };
    let mut roots = vec![];
    for (k, text) in texts.iter().enumerate() {
        let ast = crate::expr::parser::parse(text).map_err(|e| (k, e))?;
        let (ast, complex) = complex::lower(&ast, &complex_inputs).map_err(|e| (k, e))?;
        if complex {
            let msg = "a complex result cannot be computed together with others yet: compute it in a run of its own";
            return Err((k, ExprError::new(msg, crate::expr::ast::Span { start: 0, end: text.len() })));
        }
        roots.push(b.expr(&ast).map_err(|e| (k, e))?);
    }
    let nodes = b.nodes;
    finish(texts.join("; "), inputs, nodes, roots, false).map_err(|e| (0, e))
}

fn finish(
    text: String,
    inputs: Vec<Input>,
    nodes: Vec<Node>,
    roots: Vec<usize>,
    complex: bool,
) -> Result<Plan, ExprError> {
    let (nodes, roots) = prune_many(nodes, &roots);
    let mut plan = Plan { text, inputs, nodes, root: roots[0], temps: vec![], complex, others: roots[1..].to_vec() };
    if fold::enabled() {
        fold::fold(&mut plan);
        let (nodes, roots) = prune_many(std::mem::take(&mut plan.nodes), &plan.roots());
        (plan.nodes, plan.root, plan.others) = (nodes, roots[0], roots[1..].to_vec());
    }
    Ok(plan)
}

/// Keep only the nodes the root depends on (a literal folded into `x ** 2` is left behind by the
/// builder), renumbered in their order, so every node of a plan is computed by it.
pub(crate) fn prune(nodes: Vec<Node>, root: usize) -> (Vec<Node>, usize) {
    let (nodes, roots) = prune_many(nodes, &[root]);
    (nodes, roots[0])
}

/// [`prune`] for several roots: the nodes any of them depends on.
pub(crate) fn prune_many(nodes: Vec<Node>, roots: &[usize]) -> (Vec<Node>, Vec<usize>) {
    let mut live = vec![false; nodes.len()];
    let mut stack = roots.to_vec();
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut live[id], true) {
            stack.extend(nodes[id].args());
        }
    }
    let mut new_id = vec![usize::MAX; nodes.len()];
    let mut out = Vec::with_capacity(nodes.len());
    for (id, mut n) in nodes.into_iter().enumerate() {
        if live[id] {
            for a in n.args_mut() {
                *a = new_id[*a];
            }
            new_id[id] = out.len();
            out.push(n);
        }
    }
    (out, roots.iter().map(|&r| new_id[r]).collect())
}

struct Builder<'a> {
    inputs: &'a [Input],
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    /// Nodes by structure: the same computation written twice is one node (common subexpressions,
    /// e.g. `ones((n, m)) * ones((n, m))[::-1, ::-1]` generates once).
    seen: HashMap<String, usize>,
}

fn err<T>(msg: impl Into<String>, span: Span) -> Result<T, ExprError> {
    Err(ExprError::new(msg, span))
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &[u64], b: &[u64]) -> Option<Vec<u64>> {
    let nd = a.len().max(b.len());
    let mut out = vec![0; nd];
    for i in 0..nd {
        let x = if i + a.len() >= nd { a[i + a.len() - nd] } else { 1 };
        let y = if i + b.len() >= nd { b[i + b.len() - nd] } else { 1 };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

const FLOAT_FUNCS: [(&str, MapOp); 13] = [
    ("sin", MapOp::Sin),
    ("cos", MapOp::Cos),
    ("tan", MapOp::Tan),
    ("arcsin", MapOp::Arcsin),
    ("arccos", MapOp::Arccos),
    ("arctan", MapOp::Arctan),
    ("exp", MapOp::Exp),
    ("expm1", MapOp::Expm1),
    ("log", MapOp::Log),
    ("log1p", MapOp::Log1p),
    ("log10", MapOp::Log10),
    ("log2", MapOp::Log2),
    ("sqrt", MapOp::Sqrt),
];

const SAME_TYPE_FUNCS: [(&str, MapOp); 5] = [
    ("abs", MapOp::Abs),
    ("sign", MapOp::Sign),
    ("floor", MapOp::Floor),
    ("ceil", MapOp::Ceil),
    ("reciprocal", MapOp::Reciprocal),
];

impl Builder<'_> {
    fn push(&mut self, node: Node) -> usize {
        // Debug text is a faithful structural key: floats print in their shortest round-trip form,
        // and NaN, inf and -0.0 each print distinctly
        let key = format!("{:?}", (&node.kind, &node.shape, node.dtype, &node.chunks, node.weak));
        if let Some(&id) = self.seen.get(&key) {
            return id;
        }
        self.nodes.push(node);
        let id = self.nodes.len() - 1;
        self.seen.insert(key, id);
        id
    }

    /// [`Self::push`] a node whose dtype may be wider than its arguments' (a cast, a scan, a
    /// reduction): refused when its size no longer fits 64-bit arithmetic.
    fn push_sized(&mut self, node: Node, span: Span) -> Result<usize, ExprError> {
        if let Some(m) = crate::grid::check_size(&node.shape, node.dtype.size() as u64) {
            return err(m, span);
        }
        Ok(self.push(node))
    }

    fn node(&self, id: usize) -> &Node {
        &self.nodes[id]
    }

    fn expr(&mut self, e: &Expr) -> Result<usize, ExprError> {
        match &e.kind {
            ExprKind::Num { value, int } => {
                let (value, weak, dtype) = match int {
                    Some(i) => (ScalarRepr::Int(*i), WeakKind::Int, DType::Int64),
                    None => (ScalarRepr::Float(*value), WeakKind::Float, DType::Float64),
                };
                let label = match value {
                    ScalarRepr::Int(i) => i.to_string(),
                    _ => value_text(*value_f64(&value)),
                };
                Ok(self.constant(value, dtype, Some(weak), label))
            }
            ExprKind::Imag(_) => err("an imaginary literal left after lowering (a bug in dsk)", e.span),
            ExprKind::Str(_) => err("a string is only allowed as astype's argument, e.g. x.astype('float32')", e.span),
            ExprKind::Name(name) => self.name(name, e.span),
            ExprKind::Unary { op, arg } => {
                let a = self.expr(arg)?;
                if let Some(v) = self.py(a) {
                    // Python computes the operations of literals: the result is a literal again
                    let r = literal::unary(*op, v).map_err(|m| ExprError::new(m, e.span))?;
                    return Ok(self.literal(r));
                }
                let d = self.node(a).dtype;
                match op {
                    UnOp::Pos if d.is_bool() => {
                        err("unary + of a bool array is not allowed (NumPy refuses it too)", e.span)
                    }
                    UnOp::Pos => Ok(a),
                    UnOp::Neg if d.is_bool() => {
                        err("negating a bool array is not allowed (NumPy refuses it too); use ~ to invert it", e.span)
                    }
                    UnOp::Neg => self.map(MapOp::Neg, vec![a], e.span),
                    UnOp::Invert if d.is_float() => err(format!("~ needs a bool or integer operand, not {d}"), e.span),
                    UnOp::Invert => self.map(MapOp::Not, vec![a], e.span),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.expr(lhs)?;
                let b = self.expr(rhs)?;
                if let (Some(x), Some(y)) = (self.py(a), self.py(b)) {
                    let r = literal::binary(*op, x, y).map_err(|m| ExprError::new(m, e.span))?;
                    return Ok(self.literal(r));
                }
                self.binary(*op, a, b, e.span)
            }
            ExprKind::Call { func, args, kwargs } => self.call(func, args, kwargs, e.span),
            ExprKind::Method { recv, name, args, kwargs } => self.method(recv, name, args, kwargs, e.span),
            ExprKind::Attr { recv, name } => {
                let a = self.expr(recv)?;
                match name.as_str() {
                    "T" => {
                        let nd = self.node(a).shape.len();
                        self.transpose(a, (0..nd).rev().collect(), e.span)
                    }
                    _ => err(format!("unknown attribute .{name} (arrays have .T)"), e.span),
                }
            }
            ExprKind::Index { recv, items } => {
                let a = self.expr(recv)?;
                self.index(a, items, e.span)
            }
            ExprKind::Tuple(_) => err("a tuple is not an array; tuples are for shapes and axes", e.span),
        }
    }

    /// The Python value of a literal node (weak and constant), if it is one.
    fn py(&self, id: usize) -> Option<literal::Py> {
        let n = &self.nodes[id];
        match (&n.kind, n.weak) {
            (NodeKind::Const { value: ScalarRepr::Bool(b) }, Some(_)) => Some(literal::Py::Bool(*b)),
            (NodeKind::Const { value: ScalarRepr::Int(i) }, Some(_)) => Some(literal::Py::Int(*i)),
            (NodeKind::Const { value: ScalarRepr::Float(f) }, Some(_)) => Some(literal::Py::Float(*f)),
            _ => None,
        }
    }

    /// A literal node holding the Python value `v`.
    fn literal(&mut self, v: literal::Py) -> usize {
        match v {
            literal::Py::Bool(b) => self.constant(
                ScalarRepr::Bool(b),
                DType::Bool,
                Some(WeakKind::Bool),
                if b { "True" } else { "False" }.into(),
            ),
            literal::Py::Int(i) => self.constant(ScalarRepr::Int(i), DType::Int64, Some(WeakKind::Int), i.to_string()),
            literal::Py::Float(f) => {
                self.constant(ScalarRepr::Float(f), DType::Float64, Some(WeakKind::Float), value_text(f))
            }
        }
    }

    fn constant(&mut self, value: ScalarRepr, dtype: DType, weak: Option<WeakKind>, label: String) -> usize {
        self.push(Node { kind: NodeKind::Const { value }, shape: vec![], dtype, chunks: vec![], weak, label })
    }

    fn name(&mut self, name: &str, span: Span) -> Result<usize, ExprError> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(id);
        }
        let is_input = self.inputs.iter().any(|x| x.name == name);
        let constant = match name {
            "nan" | "NaN" => Some(f64::NAN),
            "inf" | "Infinity" => Some(f64::INFINITY),
            "pi" => Some(std::f64::consts::PI),
            "e" => Some(std::f64::consts::E),
            _ => None,
        };
        if let (Some(v), false) = (constant, is_input) {
            return Ok(self.constant(ScalarRepr::Float(v), DType::Float64, Some(WeakKind::Float), name.to_string()));
        }
        if matches!(name, "True" | "true" | "False" | "false") {
            let v = name.eq_ignore_ascii_case("true");
            return Ok(self.constant(ScalarRepr::Bool(v), DType::Bool, Some(WeakKind::Bool), name.to_string()));
        }
        let Some(i) = self.inputs.iter().position(|x| x.name == name) else {
            let known: Vec<&str> = self.inputs.iter().map(|x| x.name.as_str()).collect();
            let hint = if known.is_empty() {
                format!("give it as {name}=path.zarr")
            } else {
                format!("inputs are {}; give another as {name}=path.zarr", known.join(", "))
            };
            return err(format!("unknown name '{name}' — {hint}"), span);
        };
        let inp = &self.inputs[i];
        let id = self.push(Node {
            kind: NodeKind::Input { input: i },
            shape: inp.shape.clone(),
            dtype: inp.dtype,
            chunks: inp.chunks.clone(),
            weak: None,
            label: name.to_string(),
        });
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    /// Output chunks of an element-wise node: from the first argument covering each axis.
    fn map_chunks(&self, args: &[usize], shape: &[u64]) -> Vec<u64> {
        let nd = shape.len();
        (0..nd)
            .map(|k| {
                for &a in args {
                    let n = &self.nodes[a];
                    let off = nd - n.shape.len();
                    if k >= off && n.shape[k - off] == shape[k] && n.shape[k - off] > 0 {
                        return n.chunks[k - off];
                    }
                }
                shape[k].max(1)
            })
            .collect()
    }

    /// An element-wise node of `op` over `args`, typed by NumPy's rules.
    fn map(&mut self, op: MapOp, args: Vec<usize>, span: Span) -> Result<usize, ExprError> {
        let mut shape: Vec<u64> = vec![];
        for &a in &args {
            let s = &self.nodes[a].shape;
            shape = broadcast(&shape, s).ok_or_else(|| {
                let shapes: Vec<String> = args.iter().map(|&x| tuple(&self.nodes[x].shape)).collect();
                ExprError::new(
                    format!("operands could not be broadcast together with shapes {}", shapes.join(" ")),
                    span,
                )
            })?;
        }
        // the operands that are typed together (where's condition is not)
        let mut args = args;
        let typed: Vec<usize> = if op == MapOp::Where { args[1..].to_vec() } else { args.clone() };
        let tys: Vec<Ty> = typed.iter().map(|&a| self.nodes[a].ty()).collect();
        let mut compute = result_type(&tys);
        let all_bool = compute.is_bool();
        if op.is_float_function() {
            compute = if op == MapOp::Div && !compute.is_float() { DType::Float64 } else { float_of(compute) };
        }
        match op {
            MapOp::Sub if all_bool => {
                return err("subtracting bools is not allowed (NumPy refuses it too); use ^ for exclusive or", span)
            }
            MapOp::FloorDiv | MapOp::Mod | MapOp::Pow | MapOp::Reciprocal if all_bool => compute = DType::Int8,
            MapOp::And | MapOp::Or | MapOp::Xor | MapOp::Not if compute.is_float() => {
                return err(
                    format!(
                        "bitwise {} needs bool or integer operands, not {compute}; comparisons give bools: (x > 0) & (x < 1)",
                        op.name()
                    ),
                    span,
                )
            }
            MapOp::Sign if compute.is_bool() => return err("sign of a bool array is not defined (NumPy refuses it too)", span),
            // NumPy 2: floor and ceil of bool are bool; round of bool is float16 (float32 here)
            MapOp::Round | MapOp::RoundTo(_) if compute.is_bool() => compute = DType::Float32,
            _ => {}
        }
        // integer literals must fit the type they take (NEP 50: uint8 + 300 is an error), except
        // in comparisons, where NumPy 2 compares by value (uint8 < 300 is all True), and as a clip
        // bound that cannot bind (a lower bound below the type's range, an upper one above it)
        let (lo, hi) = crate::dtype::int_range(compute);
        for (pos, &a) in args.clone().iter().enumerate() {
            let n = &self.nodes[a];
            let Some(literal::Py::Int(v)) = self.py(a) else { continue };
            let v = v as i128;
            if !compute.is_int() || (lo..=hi).contains(&v) || (op == MapOp::Where && pos == 0) {
                continue;
            }
            let _ = n;
            if op.is_comparison() {
                // every element compares the same way with a value outside the type's range
                let lit_first = pos == 0;
                let above = v > hi;
                let (less, greater) = if above != lit_first { (true, false) } else { (false, true) };
                let value = match op {
                    MapOp::Lt => less,
                    MapOp::Le => less,
                    MapOp::Gt => greater,
                    MapOp::Ge => greater,
                    MapOp::Eq => false,
                    _ => true,
                };
                let chunks = self.map_chunks(&args, &shape);
                let label = format!("full({}, {})", tuple(&shape), if value { "True" } else { "False" });
                return Ok(self.push(Node {
                    kind: NodeKind::Gen { gen: Generator::Const(ScalarRepr::Bool(value)) },
                    shape,
                    dtype: DType::Bool,
                    chunks,
                    weak: None,
                    label,
                }));
            }
            // NumPy ignores a lower bound below the type's range and an upper bound above it
            if op == MapOp::Clip && ((pos == 1 && v < lo) || (pos == 2 && v > hi)) {
                let s = v.clamp(lo, hi) as i64;
                args[pos] = self.literal(literal::Py::Int(s));
                continue;
            }
            return err(format!("integer {v} is out of bounds for {compute} (the type of the other operand)"), span);
        }
        let dtype = if op.gives_bool() { DType::Bool } else { compute };
        if let Some(m) = crate::grid::check_size(&shape, dtype.size().max(compute.size()) as u64) {
            return err(m, span);
        }
        // a NumPy function of literals is a NumPy scalar, not a literal (sin(0) is float64); the
        // operators of literals were folded by Python already
        let weak = None;
        let chunks = self.map_chunks(&args, &shape);
        let label = op.name().to_string();
        Ok(self.push(Node { kind: NodeKind::Map { op, args, compute }, shape, dtype, chunks, weak, label }))
    }

    fn binary(&mut self, op: BinOp, a: usize, b: usize, span: Span) -> Result<usize, ExprError> {
        let mop = match op {
            BinOp::Add => MapOp::Add,
            BinOp::Sub => MapOp::Sub,
            BinOp::Mul => MapOp::Mul,
            BinOp::Div => MapOp::Div,
            BinOp::FloorDiv => MapOp::FloorDiv,
            BinOp::Mod => MapOp::Mod,
            BinOp::Pow => return self.power(a, b, span),
            BinOp::Lt => MapOp::Lt,
            BinOp::Le => MapOp::Le,
            BinOp::Gt => MapOp::Gt,
            BinOp::Ge => MapOp::Ge,
            BinOp::Eq => MapOp::Eq,
            BinOp::Ne => MapOp::Ne,
            BinOp::And => MapOp::And,
            BinOp::Or => MapOp::Or,
            BinOp::Xor => MapOp::Xor,
        };
        if mop.is_comparison() {
            if let Some(id) = self.mixed_sign_compare(mop, a, b, span)? {
                return Ok(id);
            }
        }
        self.map(mop, vec![a, b], span)
    }

    /// A comparison of a signed integer array with a uint64 array: NumPy compares the values
    /// exactly (their common type would be float64, which rounds above 2⁵³). A negative signed
    /// value is below every unsigned one; otherwise both compare as uint64.
    fn mixed_sign_compare(&mut self, op: MapOp, a: usize, b: usize, span: Span) -> Result<Option<usize>, ExprError> {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        if na.weak.is_some() || nb.weak.is_some() {
            return Ok(None);
        }
        let (signed, unsigned, signed_first) = match (na.dtype, nb.dtype) {
            (s, DType::Uint64) if s.is_signed_int() => (a, b, true),
            (DType::Uint64, s) if s.is_signed_int() => (b, a, false),
            _ => return Ok(None),
        };
        // the answer when the signed operand is negative (signed < unsigned)
        let less = signed_first;
        let when_negative = match op {
            MapOp::Lt | MapOp::Le => less,
            MapOp::Gt | MapOp::Ge => !less,
            MapOp::Eq => false,
            _ => true,
        };
        let zero = self.literal(literal::Py::Int(0));
        let negative = self.map(MapOp::Lt, vec![signed, zero], span)?;
        let as_unsigned = self.astype(signed, DType::Uint64, span)?;
        let args = if signed_first { vec![as_unsigned, unsigned] } else { vec![unsigned, as_unsigned] };
        let compared = self.map(op, args, span)?;
        let constant = self.literal(literal::Py::Bool(when_negative));
        self.map(MapOp::Where, vec![negative, constant, compared], span).map(Some)
    }

    /// `x ** c` with a literal exponent uses NumPy's fast paths (square, sqrt, reciprocal).
    fn power(&mut self, a: usize, b: usize, span: Span) -> Result<usize, ExprError> {
        let base = &self.nodes[a];
        if let (NodeKind::Const { value }, Some(_), None) = (&self.nodes[b].kind, self.nodes[b].weak, base.weak) {
            let e = match value {
                ScalarRepr::Int(i) => *i as f64,
                ScalarRepr::Float(f) => *f,
                _ => f64::NAN,
            };
            let float_base = result_type(&[base.ty(), self.nodes[b].ty()]).is_float();
            let want = result_type(&[base.ty(), self.nodes[b].ty()]);
            // the exponent literal stays a node (the builder's map of common subexpressions may
            // hand it out again); unused, it is pruned at the end
            if e == 2.0 {
                // x ** 2 is NumPy's square(x): int8 ** 2 → int8, bool ** 2 → int8 (square's bool
                // loop), x ** 2.0 → the float type
                let int_exp = matches!(value, ScalarRepr::Int(_));
                let want = if base.dtype.is_bool() && int_exp { DType::Int8 } else { want };
                let base = if self.nodes[a].dtype == want { a } else { self.astype(a, want, span)? };
                return self.map(MapOp::Square, vec![base], span);
            }
            if float_base && (e == 0.5 || e == -1.0) {
                // int16 ** 0.5 is float64 (the promoted type), where sqrt(int16) would be float32
                let base = if self.nodes[a].dtype == want { a } else { self.astype(a, want, span)? };
                let op = if e == 0.5 { MapOp::Sqrt } else { MapOp::Reciprocal };
                return self.map(op, vec![base], span);
            }
        }
        self.map(MapOp::Pow, vec![a, b], span)
    }

    /// NumPy's `round(x, decimals)`: half to even, at `decimals` places (0 when not given).
    fn round(&mut self, a: usize, decimals: Option<&Expr>, span: Span) -> Result<usize, ExprError> {
        let d = match decimals {
            None => 0,
            Some(e) => {
                let v = const_int(e)?;
                i32::try_from(v).map_err(|_| ExprError::new("decimals must be between -2³¹ and 2³¹", e.span))?
            }
        };
        self.map(if d == 0 { MapOp::Round } else { MapOp::RoundTo(d) }, vec![a], span)
    }

    /// The parts `re` and `im` of a complex value side by side on a new last axis of 2.
    fn pair(&mut self, re: usize, im: usize, span: Span) -> Result<usize, ExprError> {
        let dtype = result_type(&[self.nodes[re].ty(), self.nodes[im].ty()]);
        let as_part = |b: &mut Self, x: usize| {
            if b.nodes[x].dtype == dtype && b.nodes[x].weak.is_none() {
                Ok(x)
            } else {
                b.astype(x, dtype, span)
            }
        };
        let (re, im) = (as_part(self, re)?, as_part(self, im)?);
        let (r, i) = (&self.nodes[re], &self.nodes[im]);
        if r.shape != i.shape || !dtype.is_float() {
            return err(
                format!(
                    "complex parts of shapes {} and {} and dtype {dtype} (a bug in dsk)",
                    tuple(&r.shape),
                    tuple(&i.shape)
                ),
                span,
            );
        }
        let (mut shape, mut chunks) = (r.shape.clone(), r.chunks.clone());
        shape.push(2);
        chunks.push(2);
        let label = crate::dtype::complex_name(dtype).to_string();
        self.push_sized(Node { kind: NodeKind::Pair { re, im }, shape, dtype, chunks, weak: None, label }, span)
    }

    /// `x`, a Python literal made the NumPy scalar a ufunc gives for it (int64, float64, bool).
    fn strong(&mut self, x: usize) -> usize {
        let n = &self.nodes[x];
        match (&n.kind, n.weak) {
            (NodeKind::Const { value }, Some(_)) => {
                let (value, dtype, label) = (*value, n.dtype, n.label.clone());
                self.constant(value, dtype, None, label)
            }
            _ => x,
        }
    }

    /// Zeros of `x`'s shape, dtype and chunks (the imaginary part of a real operand); a literal
    /// zero of the same kind for a literal.
    fn zero_like(&mut self, x: usize) -> usize {
        let n = self.nodes[x].clone();
        match n.weak {
            Some(WeakKind::Bool) => self.literal(literal::Py::Bool(false)),
            Some(WeakKind::Int) => self.literal(literal::Py::Int(0)),
            Some(WeakKind::Float) => self.literal(literal::Py::Float(0.0)),
            None => {
                let value = if n.dtype.is_bool() { ScalarRepr::Bool(false) } else { ScalarRepr::Int(0) };
                let label = format!("zeros({}, {})", tuple(&n.shape), n.dtype);
                self.push(Node {
                    kind: NodeKind::Gen { gen: Generator::Const(value) },
                    shape: n.shape,
                    dtype: n.dtype,
                    chunks: n.chunks,
                    weak: None,
                    label,
                })
            }
        }
    }

    /// `x` in the type `operands` compute in together (the parts of a complex operation's
    /// operands, cast to their common complex type as NumPy does before its complex loop); a
    /// literal among literals stays one.
    fn common_part(&mut self, x: usize, operands: &[usize], span: Span) -> Result<usize, ExprError> {
        let tys: Vec<Ty> = operands.iter().map(|&a| self.nodes[a].ty()).collect();
        if tys.iter().all(|t| !matches!(t, Ty::Array(_))) {
            return Ok(x);
        }
        let dtype = float_of(result_type(&tys));
        let n = &self.nodes[x];
        if n.weak.is_none() && n.dtype == dtype {
            return Ok(x);
        }
        if let (Some(_), NodeKind::Const { value }) = (n.weak, &n.kind) {
            let (value, label) = (*value, n.label.clone());
            let v = Scalar::from(value);
            let cast = with_dtype!(dtype, T => T::from_scalar(v).to_scalar());
            return Ok(self.constant(ScalarRepr::from(cast), dtype, None, label));
        }
        self.astype(x, dtype, span)
    }

    fn astype(&mut self, a: usize, dtype: DType, span: Span) -> Result<usize, ExprError> {
        let n = &self.nodes[a];
        let (shape, chunks) = (n.shape.clone(), n.chunks.clone());
        self.push_sized(
            Node {
                kind: NodeKind::Astype { arg: a },
                shape,
                dtype,
                chunks,
                weak: None,
                label: format!("astype({dtype})"),
            },
            span,
        )
    }

    /// `x.rechunk((a, b))`; -1 takes a whole axis.
    fn rechunk(&mut self, a: usize, chunks: &Expr, span: Span) -> Result<usize, ExprError> {
        let n = self.nodes[a].clone();
        let items: Vec<&Expr> = match &chunks.kind {
            ExprKind::Tuple(items) => items.iter().collect(),
            _ => vec![chunks],
        };
        if items.len() != n.shape.len() {
            return err(format!("rechunk needs one chunk extent per axis ({} axes)", n.shape.len()), chunks.span);
        }
        let mut c = vec![];
        for (e, &extent) in items.iter().zip(&n.shape) {
            let v = const_int(e)?;
            c.push(match v {
                -1 => extent.max(1),
                v if v >= 1 => (v as u64).min(extent.max(1)),
                _ => return err("chunk extents are ≥ 1 (or -1 for a whole axis)", e.span),
            });
        }
        let label = format!("rechunk{}", tuple(&c));
        let _ = span;
        Ok(self.push(Node {
            kind: NodeKind::Rechunk { arg: a },
            shape: n.shape.clone(),
            dtype: n.dtype,
            chunks: c,
            weak: None,
            label,
        }))
    }

    fn transpose(&mut self, a: usize, perm: Vec<usize>, span: Span) -> Result<usize, ExprError> {
        let n = &self.nodes[a];
        let nd = n.shape.len();
        let mut seen = vec![false; nd];
        if perm.len() != nd || perm.iter().any(|&p| p >= nd || std::mem::replace(&mut seen[p], true)) {
            return err(format!("axes {perm:?} are not a permutation of the {nd} axes"), span);
        }
        let shape = perm.iter().map(|&p| n.shape[p]).collect();
        let chunks = perm.iter().map(|&p| n.chunks[p]).collect();
        let dtype = n.dtype;
        Ok(self.push(Node {
            kind: NodeKind::Transpose { arg: a, perm: perm.clone() },
            shape,
            dtype,
            chunks,
            weak: None,
            label: format!("transpose{perm:?}"),
        }))
    }

    fn index(&mut self, a: usize, items: &[IndexItem], span: Span) -> Result<usize, ExprError> {
        let mut parsed = vec![];
        for it in items {
            parsed.push(match it {
                IndexItem::Ellipsis => Item::Ellipsis,
                IndexItem::Index(e) => Item::Index(const_int(e)?),
                IndexItem::Slice { start, stop, step } => Item::Slice {
                    start: start.as_deref().map(const_int).transpose()?,
                    stop: stop.as_deref().map(const_int).transpose()?,
                    step: step.as_deref().map(const_int).transpose()?,
                },
            });
            if let Item::Slice { step: Some(0), .. } = parsed[parsed.len() - 1] {
                return err("slice step cannot be zero", span);
            }
        }
        let n = &self.nodes[a];
        let sel = slice::normalize(&parsed, &n.shape).map_err(|m| ExprError::new(m, span))?;
        let mut shape = vec![];
        let mut chunks = vec![];
        for (axis, s) in sel.iter().enumerate() {
            if s.keep {
                shape.push(s.len);
                let c = n.chunks[axis].div_ceil(s.step.unsigned_abs()).max(1);
                chunks.push(c.min(s.len.max(1)));
            }
        }
        let dtype = n.dtype;
        let label = format!("index[{}]", sel_text(&sel));
        Ok(self.push(Node { kind: NodeKind::Index { arg: a, sel }, shape, dtype, chunks, weak: None, label }))
    }

    fn call(&mut self, func: &str, args: &[Expr], kwargs: &[(String, Expr)], span: Span) -> Result<usize, ExprError> {
        if let Some((_, op)) = FLOAT_FUNCS.iter().chain(SAME_TYPE_FUNCS.iter()).find(|(n, _)| *n == func) {
            no_kwargs(func, kwargs, &[], span)?;
            let a = self.args_exact(func, args, 1, span)?;
            return self.map(*op, a, span);
        }
        match func {
            "round" | "around" => {
                no_kwargs(func, kwargs, &["decimals"], span)?;
                if args.is_empty() || args.len() > 2 {
                    return err(format!("{func} takes an array and the number of decimals: round(x, 2)"), span);
                }
                let a = self.expr(&args[0])?;
                self.round(a, args.get(1).or_else(|| kwarg(kwargs, "decimals")), span)
            }
            "isnan" | "isfinite" => {
                no_kwargs(func, kwargs, &[], span)?;
                let a = self.args_exact(func, args, 1, span)?;
                let op = if func == "isnan" { MapOp::IsNan } else { MapOp::IsFinite };
                self.map(op, a, span)
            }
            "square" => {
                no_kwargs(func, kwargs, &[], span)?;
                let a = self.args_exact(func, args, 1, span)?;
                let two = self.literal(literal::Py::Int(2));
                self.power(a[0], two, span)
            }
            "hypot" => {
                no_kwargs(func, kwargs, &[], span)?;
                let a = self.args_exact(func, args, 2, span)?;
                self.map(MapOp::Hypot, a, span)
            }
            complex::PAIR => {
                let a = self.args_exact(func, args, 2, span)?;
                self.pair(a[0], a[1], span)
            }
            complex::ZERO => {
                let a = self.args_exact(func, args, 1, span)?;
                Ok(self.zero_like(a[0]))
            }
            complex::CONJ_REAL => {
                let a = self.args_exact(func, args, 1, span)?;
                match (self.nodes[a[0]].dtype, self.nodes[a[0]].weak) {
                    (DType::Bool, _) => self.astype(a[0], DType::Int8, span),
                    (_, Some(_)) => Ok(self.strong(a[0])),
                    _ => Ok(a[0]),
                }
            }
            complex::COUNT => {
                let a = self.args_exact(func, args, 2, span)?;
                let n: u64 = self.nodes[a[0]].shape.iter().product();
                let s: u64 = self.nodes[a[1]].shape.iter().product();
                let count = n.checked_div(s).unwrap_or(1);
                Ok(self.literal(literal::Py::Int(i64::try_from(count).unwrap_or(i64::MAX))))
            }
            complex::STRONG => {
                let a = self.args_exact(func, args, 1, span)?;
                Ok(self.strong(a[0]))
            }
            complex::COMMON => {
                let a = self.args_exact(func, args, 5, span)?;
                self.common_part(a[0], &a[1..], span)
            }
            "minimum" | "maximum" => {
                no_kwargs(func, kwargs, &[], span)?;
                let a = self.args_exact(func, args, 2, span)?;
                self.map(if func == "minimum" { MapOp::Minimum } else { MapOp::Maximum }, a, span)
            }
            "clip" => {
                no_kwargs(func, kwargs, &[], span)?;
                let a = self.args_exact(func, args, 3, span)?;
                self.map(MapOp::Clip, a, span)
            }
            "where" => {
                no_kwargs(func, kwargs, &[], span)?;
                let mut a = self.args_exact(func, args, 3, span)?;
                if !self.nodes[a[0]].dtype.is_bool() {
                    a[0] = self.astype(a[0], DType::Bool, span)?;
                }
                self.map(MapOp::Where, a, span)
            }
            "transpose" => {
                no_kwargs(func, kwargs, &["axes"], span)?;
                if args.is_empty() || args.len() > 2 {
                    return err("transpose takes an array and optionally the axes: transpose(x, (1, 0))", span);
                }
                let a = self.expr(&args[0])?;
                let nd = self.nodes[a].shape.len();
                let axes = match args.get(1).or_else(|| kwarg(kwargs, "axes")) {
                    Some(e) => axes_list(e, nd)?,
                    None => (0..nd).rev().collect(),
                };
                self.transpose(a, axes, span)
            }
            "rechunk" => {
                no_kwargs(func, kwargs, &["chunks"], span)?;
                let Some(first) = args.first() else { return err("rechunk needs an array and chunks", span) };
                let a = self.expr(first)?;
                let c = args
                    .get(1)
                    .or_else(|| kwarg(kwargs, "chunks"))
                    .ok_or_else(|| ExprError::new("rechunk needs chunks: rechunk(x, (1000, 10))", span))?;
                self.rechunk(a, c, span)
            }
            "astype" => {
                no_kwargs(func, kwargs, &[], span)?;
                if args.len() != 2 {
                    return err("astype takes an array and a dtype: astype(x, 'float32')", span);
                }
                let a = self.expr(&args[0])?;
                let d = dtype_arg(&args[1])?;
                self.astype(a, d, span)
            }
            "ones" | "zeros" | "full" | "arange" | "linspace" | "random" | "normal" => {
                self.generator(func, args, kwargs, span)
            }
            f if ReduceOp::parse(f).is_some() || f == "cumsum" || f == "cumprod" => {
                let Some(first) = args.first() else {
                    return err(format!("{f}() needs an array: {f}(x, axis=0)"), span);
                };
                let a = self.expr(first)?;
                self.reduction(f, a, &args[1..], kwargs, span)
            }
            _ => err(format!("unknown function {func}()"), span),
        }
    }

    /// `x.op(axis=…, keepdims=…, ddof=…)` and `op(x, …)`, and the scans `cumsum`/`cumprod`.
    fn reduction(
        &mut self,
        name: &str,
        a: usize,
        args: &[Expr],
        kwargs: &[(String, Expr)],
        span: Span,
    ) -> Result<usize, ExprError> {
        let scan = name == "cumsum" || name == "cumprod";
        let allowed: &[&str] = if scan { &["axis"] } else { &["axis", "keepdims", "ddof"] };
        no_kwargs(name, kwargs, allowed, span)?;
        if args.len() > 1 {
            return err(format!("{name}() takes the axis as its only positional argument"), span);
        }
        let n = self.nodes[a].clone();
        let nd = n.shape.len();
        let axis_expr = args.first().or_else(|| kwarg(kwargs, "axis"));
        let axes: Option<Vec<usize>> = match axis_expr {
            None => None,
            Some(e) if matches!(e.kind, ExprKind::Name(ref v) if v == "None") => None,
            Some(e) => Some(axes_list(e, nd)?),
        };
        if scan {
            let axis = match axes.as_deref() {
                Some([x]) => *x,
                None if nd <= 1 => 0,
                _ => return err(format!("{name} runs along one axis: give axis=k (of {nd})"), span),
            };
            if nd == 0 {
                return err(format!("{name} of a 0-d array: nothing to scan"), span);
            }
            let dtype = crate::kernels::reduce::acc_dtype(n.dtype);
            return self.push_sized(
                Node {
                    kind: NodeKind::Scan { arg: a, axis, prod: name == "cumprod" },
                    shape: n.shape.clone(),
                    dtype,
                    chunks: n.chunks.clone(),
                    weak: None,
                    label: format!("{name}(axis={axis})"),
                },
                span,
            );
        }
        let op = ReduceOp::parse(name).ok_or_else(|| ExprError::new(format!("unknown reduction {name}"), span))?;
        let mut axes = axes.unwrap_or_else(|| (0..nd).collect());
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return err("an axis is repeated", span);
        }
        if op.is_arg() && axes.len() != 1 && axes.len() != nd {
            return err(format!("{name} takes one axis or none (all), not {axes:?}"), span);
        }
        let keepdims = match kwarg(kwargs, "keepdims") {
            None => false,
            Some(e) => match &e.kind {
                ExprKind::Name(v) if v == "True" || v == "true" => true,
                ExprKind::Name(v) if v == "False" || v == "false" => false,
                ExprKind::Num { int: Some(i), .. } => *i != 0,
                _ => return err("keepdims must be True or False", e.span),
            },
        };
        let ddof = match kwarg(kwargs, "ddof") {
            None => 0.0,
            Some(e) if op.takes_ddof() => const_f64(e)?,
            Some(e) => return err(format!("{name} takes no ddof"), e.span),
        };
        let reduced: u64 = axes.iter().map(|&x| n.shape[x]).product();
        if op.needs_elements() && reduced == 0 {
            return err(format!("zero-size array to reduction operation {name} which has no identity"), span);
        }
        let (mut shape, mut chunks) = (vec![], vec![]);
        for i in 0..nd {
            if axes.contains(&i) {
                if keepdims {
                    shape.push(1);
                    chunks.push(1);
                }
            } else {
                shape.push(n.shape[i]);
                chunks.push(n.chunks[i]);
            }
        }
        let label = format!(
            "{name}(axis={axes:?}{}{})",
            if keepdims { ", keepdims" } else { "" },
            if ddof != 0.0 { format!(", ddof={ddof}") } else { String::new() }
        );
        self.push_sized(
            Node {
                kind: NodeKind::Reduce { arg: a, op, axes, keepdims, ddof },
                shape,
                dtype: op.result_dtype(n.dtype),
                chunks,
                weak: None,
                label,
            },
            span,
        )
    }

    fn args_exact(&mut self, func: &str, args: &[Expr], n: usize, span: Span) -> Result<Vec<usize>, ExprError> {
        if args.len() != n {
            return err(
                format!("{func}() takes {n} argument{}, got {}", if n == 1 { "" } else { "s" }, args.len()),
                span,
            );
        }
        args.iter().map(|a| self.expr(a)).collect()
    }

    fn method(
        &mut self,
        recv: &Expr,
        name: &str,
        args: &[Expr],
        kwargs: &[(String, Expr)],
        span: Span,
    ) -> Result<usize, ExprError> {
        match name {
            "astype" => {
                no_kwargs(name, kwargs, &[], span)?;
                let a = self.expr(recv)?;
                if args.len() != 1 {
                    return err("astype takes one dtype: x.astype('float32')", span);
                }
                let d = dtype_arg(&args[0])?;
                self.astype(a, d, span)
            }
            "transpose" => {
                no_kwargs(name, kwargs, &[], span)?;
                let a = self.expr(recv)?;
                let nd = self.nodes[a].shape.len();
                let axes = match args.len() {
                    0 => (0..nd).rev().collect(),
                    1 if matches!(args[0].kind, ExprKind::Tuple(_)) => axes_list(&args[0], nd)?,
                    _ => args.iter().map(|e| axis_value(e, nd)).collect::<Result<_, _>>()?,
                };
                self.transpose(a, axes, span)
            }
            "clip" => {
                let a = self.expr(recv)?;
                let lo = self.expr(args.first().ok_or_else(|| ExprError::new("clip needs (min, max)", span))?)?;
                let hi = self.expr(args.get(1).ok_or_else(|| ExprError::new("clip needs (min, max)", span))?)?;
                self.map(MapOp::Clip, vec![a, lo, hi], span)
            }
            "round" => {
                no_kwargs(name, kwargs, &["decimals"], span)?;
                if args.len() > 1 {
                    return err("round takes the number of decimals: x.round(2)", span);
                }
                let a = self.expr(recv)?;
                self.round(a, args.first().or_else(|| kwarg(kwargs, "decimals")), span)
            }
            "rechunk" => {
                no_kwargs(name, kwargs, &["chunks"], span)?;
                let a = self.expr(recv)?;
                let c = args
                    .first()
                    .or_else(|| kwarg(kwargs, "chunks"))
                    .ok_or_else(|| ExprError::new("rechunk needs chunks: x.rechunk((1000, 10))", span))?;
                self.rechunk(a, c, span)
            }
            r if ReduceOp::parse(r).is_some() || r == "cumsum" || r == "cumprod" => {
                let a = self.expr(recv)?;
                self.reduction(r, a, args, kwargs, span)
            }
            _ => err(format!("unknown method .{name}()"), span),
        }
    }

    fn generator(
        &mut self,
        func: &str,
        args: &[Expr],
        kwargs: &[(String, Expr)],
        span: Span,
    ) -> Result<usize, ExprError> {
        let allowed: &[&str] = match func {
            "ones" | "zeros" => &["chunks", "dtype"],
            "full" => &["chunks", "dtype", "fill_value"],
            "arange" => &["chunks", "dtype", "start", "stop", "step"],
            "linspace" => &["chunks", "dtype", "num"],
            "random" => &["chunks", "dtype", "seed", "low", "high"],
            _ => &["chunks", "dtype", "seed", "mean", "std", "loc", "scale"],
        };
        no_kwargs(func, kwargs, allowed, span)?;
        let dtype_kw = kwarg(kwargs, "dtype").map(dtype_arg).transpose()?;
        let num = |e: &Expr| const_f64(e);
        let (gen, shape, dtype) = match func {
            "ones" | "zeros" | "full" => {
                let shape = shape_arg(args.first().ok_or_else(|| {
                    ExprError::new(format!("{func}() needs a shape, e.g. {func}((1000, 4000))"), span)
                })?)?;
                let (value, default) = if func == "full" {
                    let v = args
                        .get(1)
                        .or_else(|| kwarg(kwargs, "fill_value"))
                        .ok_or_else(|| ExprError::new("full() needs a value: full((n, m), 7.5)", span))?;
                    match int_lit(v) {
                        Some(i) => (ScalarRepr::Int(i), DType::Int64),
                        None => (ScalarRepr::Float(num(v)?), DType::Float64),
                    }
                } else {
                    (ScalarRepr::Int(if func == "ones" { 1 } else { 0 }), DType::Float64)
                };
                (Generator::Const(value), shape, dtype_kw.unwrap_or(default))
            }
            "arange" => {
                let vals: Vec<&Expr> = args.iter().collect();
                let (start, stop, step) = match vals.len() {
                    1 => (None, vals[0], None),
                    2 => (Some(vals[0]), vals[1], None),
                    3 => (Some(vals[0]), vals[1], Some(vals[2])),
                    _ => return err("arange takes (stop), (start, stop) or (start, stop, step)", span),
                };
                let is_int = |e: Option<&Expr>| {
                    e.is_none_or(|e| matches!(e.kind, ExprKind::Num { int: Some(_), .. }) || int_lit(e).is_some())
                };
                let ints = is_int(start) && is_int(Some(stop)) && is_int(step);
                let (s, e, st) =
                    (start.map(num).transpose()?.unwrap_or(0.0), num(stop)?, step.map(num).transpose()?.unwrap_or(1.0));
                let n = if ints {
                    let si = start.and_then(int_lit).unwrap_or(0);
                    let ei = int_lit(stop).unwrap_or(0);
                    let sti = step.and_then(int_lit).unwrap_or(1);
                    arange_len_int(si, ei, sti).map_err(|m| ExprError::new(m, span))?
                } else {
                    arange_len(s, e, st).map_err(|m| ExprError::new(m, span))?
                };
                let gen = Generator::Arange { start: s, step: st, int_start: s as i64, int_step: st as i64 };
                (gen, vec![n], dtype_kw.unwrap_or(if ints { DType::Int64 } else { DType::Float64 }))
            }
            "linspace" => {
                if args.len() < 2 {
                    return err("linspace takes (start, stop, num)", span);
                }
                let n = match args.get(2).or_else(|| kwarg(kwargs, "num")) {
                    Some(e) => const_int(e)?,
                    None => 50,
                };
                if n < 0 {
                    return err("linspace: num must be ≥ 0", span);
                }
                (
                    Generator::Linspace { start: num(&args[0])?, stop: num(&args[1])?, num: n as u64 },
                    vec![n as u64],
                    dtype_kw.unwrap_or(DType::Float64),
                )
            }
            _ => {
                let shape = shape_arg(args.first().ok_or_else(|| {
                    ExprError::new(
                        format!("{func}() needs a shape, e.g. {func}((1000, 4000), chunks=(100, 100), seed=0)"),
                        span,
                    )
                })?)?;
                let seed = kwarg(kwargs, "seed").map(const_int).transpose()?.unwrap_or(0);
                if seed < 0 {
                    return err("seed must be ≥ 0", span);
                }
                let dist = if func == "random" {
                    let low = kwarg(kwargs, "low").map(num).transpose()?.unwrap_or(0.0);
                    let high = kwarg(kwargs, "high").map(num).transpose()?.unwrap_or(1.0);
                    Dist::Uniform { low, high }
                } else {
                    let mean =
                        kwarg(kwargs, "mean").or_else(|| kwarg(kwargs, "loc")).map(num).transpose()?.unwrap_or(0.0);
                    let std =
                        kwarg(kwargs, "std").or_else(|| kwarg(kwargs, "scale")).map(num).transpose()?.unwrap_or(1.0);
                    Dist::Normal { mean, std }
                };
                let dtype = dtype_kw.unwrap_or(DType::Float64);
                dist.check(dtype).map_err(|m| ExprError::new(m, span))?;
                (Generator::Random { dist, seed: seed as u64 }, shape, dtype)
            }
        };
        if let Some(m) = crate::grid::check_size(&shape, dtype.size() as u64) {
            return err(m, span);
        }
        if let (Generator::Const(ScalarRepr::Int(v)), true) = (&gen, dtype.is_int()) {
            let (lo, hi) = crate::dtype::int_range(dtype);
            if !(lo..=hi).contains(&(*v as i128)) {
                return err(format!("{v} does not fit {dtype} (NumPy refuses it too)"), span);
            }
        }
        if let Generator::Const(ScalarRepr::Float(f)) = gen {
            if dtype.is_int() && (f.fract() != 0.0 || !f.is_finite()) {
                return err(format!("{f} cannot be stored exactly in {dtype}"), span);
            }
        }
        let chunks = match kwarg(kwargs, "chunks") {
            Some(c) => {
                let c = shape_arg(c)?;
                if c.len() != shape.len() || c.contains(&0) {
                    return err(
                        format!(
                            "chunks {} must have one positive extent per axis of the shape {}",
                            tuple(&c),
                            tuple(&shape)
                        ),
                        span,
                    );
                }
                c.iter().zip(&shape).map(|(&c, &n)| c.min(n.max(1))).collect()
            }
            None => auto_chunks(&shape, dtype.size() as u64, AUTO_CHUNK_BYTES),
        };
        let label = format!("{func}{}", tuple(&shape));
        Ok(self.push(Node { kind: NodeKind::Gen { gen }, shape, dtype, chunks, weak: None, label }))
    }
}

fn kwarg<'e>(kwargs: &'e [(String, Expr)], name: &str) -> Option<&'e Expr> {
    kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn no_kwargs(func: &str, kwargs: &[(String, Expr)], allowed: &[&str], span: Span) -> Result<(), ExprError> {
    for (k, v) in kwargs {
        if !allowed.contains(&k.as_str()) {
            let hint = if allowed.is_empty() { String::new() } else { format!(" (it takes {})", allowed.join(", ")) };
            return err(format!("{func}() has no argument '{k}'{hint}"), v.span.to(span));
        }
    }
    Ok(())
}

/// An integer written with literals (`3`, `-1`, `2 * 5`), Python's arithmetic folded.
fn int_lit(e: &Expr) -> Option<i64> {
    match literal::eval(e) {
        Some(Ok(literal::Py::Int(i))) => Some(i),
        _ => None,
    }
}

fn const_int(e: &Expr) -> Result<i64, ExprError> {
    match literal::eval(e) {
        Some(Ok(literal::Py::Int(i))) => Ok(i),
        Some(Err(m)) => err(m, e.span),
        Some(Ok(literal::Py::Bool(_))) => err("expected an integer here, not a bool", e.span),
        _ => err("expected an integer here", e.span),
    }
}

fn const_f64(e: &Expr) -> Result<f64, ExprError> {
    match literal::eval(e) {
        Some(Ok(literal::Py::Int(i))) => Ok(i as f64),
        Some(Ok(literal::Py::Float(f))) => Ok(f),
        Some(Err(m)) => err(m, e.span),
        _ => err("expected a number here", e.span),
    }
}

fn shape_arg(e: &Expr) -> Result<Vec<u64>, ExprError> {
    let items: Vec<&Expr> = match &e.kind {
        ExprKind::Tuple(items) => items.iter().collect(),
        _ => vec![e],
    };
    items
        .into_iter()
        .map(|x| {
            let v = const_int(x)?;
            if v < 0 {
                return err("extents must be ≥ 0", x.span);
            }
            Ok(v as u64)
        })
        .collect()
}

fn axis_value(e: &Expr, nd: usize) -> Result<usize, ExprError> {
    let v = const_int(e)?;
    let a = if v < 0 { v + nd as i64 } else { v };
    if a < 0 || a >= nd as i64 {
        return err(format!("axis {v} is out of bounds for an array with {nd} axes"), e.span);
    }
    Ok(a as usize)
}

fn axes_list(e: &Expr, nd: usize) -> Result<Vec<usize>, ExprError> {
    match &e.kind {
        ExprKind::Tuple(items) => items.iter().map(|x| axis_value(x, nd)).collect(),
        _ => Ok(vec![axis_value(e, nd)?]),
    }
}

fn dtype_arg(e: &Expr) -> Result<DType, ExprError> {
    let name = match &e.kind {
        ExprKind::Str(s) => s.clone(),
        ExprKind::Name(n) => n.clone(),
        _ => return err("expected a dtype, like 'float32'", e.span),
    };
    DType::parse(&name).ok_or_else(|| {
        ExprError::new(
            format!("unknown dtype '{name}'; use one of {}, complex64, complex128", DType::accepted()),
            e.span,
        )
    })
}

fn sel_text(sel: &[AxisSel]) -> String {
    sel.iter()
        .map(|s| {
            if !s.keep {
                s.start.to_string()
            } else if s.step == 1 && s.start == 0 {
                format!(":{}", s.len)
            } else {
                format!("{}+{}×{}", s.start, s.len, s.step)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn value_f64(v: &ScalarRepr) -> &f64 {
    match v {
        ScalarRepr::Float(f) => f,
        _ => &0.0,
    }
}

fn value_text(f: f64) -> String {
    let mut s = String::new();
    crate::dtype::Elem::write_text(f, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<Input> {
        vec![
            Input {
                name: "x".into(),
                path: "x.zarr".into(),
                shape: vec![6, 4],
                dtype: DType::Float64,
                chunks: vec![4, 3],
                complex: false,
            },
            Input {
                name: "i".into(),
                path: "i.zarr".into(),
                shape: vec![4],
                dtype: DType::Int16,
                chunks: vec![2],
                complex: false,
            },
            Input {
                name: "u".into(),
                path: "u.zarr".into(),
                shape: vec![6, 4],
                dtype: DType::Uint8,
                chunks: vec![6, 4],
                complex: false,
            },
        ]
    }

    fn typ(t: &str) -> Result<(Vec<u64>, DType), String> {
        build(t, inputs()).map(|p| (p.root().shape.clone(), p.root().dtype)).map_err(|e| e.msg)
    }

    #[test]
    fn types_and_shapes_follow_numpy() {
        assert_eq!(typ("cos(x)**2"), Ok((vec![6, 4], DType::Float64)));
        assert_eq!(typ("sqrt(i)"), Ok((vec![4], DType::Float32)));
        assert_eq!(typ("i / 2"), Ok((vec![4], DType::Float64)));
        assert_eq!(typ("i // 2"), Ok((vec![4], DType::Int16)));
        assert_eq!(typ("u + 1"), Ok((vec![6, 4], DType::Uint8)));
        assert_eq!(typ("u + i"), Ok((vec![6, 4], DType::Int16)));
        assert_eq!(typ("x > 0"), Ok((vec![6, 4], DType::Bool)));
        assert_eq!(typ("x[::-1, 1]"), Ok((vec![6], DType::Float64)));
        assert_eq!(typ("x.T"), Ok((vec![4, 6], DType::Float64)));
        assert_eq!(typ("transpose(x, (1, 0)).astype('float32')"), Ok((vec![4, 6], DType::Float32)));
        assert_eq!(typ("where(x > 0, x, 0)"), Ok((vec![6, 4], DType::Float64)));
        assert_eq!(typ("ones((3, 4), chunks=(2, 2)) + 1"), Ok((vec![3, 4], DType::Float64)));
        assert_eq!(typ("1 + 2"), Ok((vec![], DType::Int64)));
        assert_eq!(typ("u ** 2"), Ok((vec![6, 4], DType::Uint8)));
        assert_eq!(typ("x.mean()"), Ok((vec![], DType::Float64)));
        assert_eq!(typ("i.sum()"), Ok((vec![], DType::Int64)));
        assert_eq!(typ("u.sum(axis=0)"), Ok((vec![4], DType::Uint64)));
        assert_eq!(typ("x.std(axis=(0, 1), ddof=1, keepdims=True)"), Ok((vec![1, 1], DType::Float64)));
        assert_eq!(typ("x.argmax(axis=-1)"), Ok((vec![6], DType::Int64)));
        assert_eq!(typ("(x - x.mean(axis=0)).max()"), Ok((vec![], DType::Float64)));
        assert_eq!(typ("i.cumsum()"), Ok((vec![4], DType::Int64)));
        assert_eq!(typ("mean(x, axis=1)"), Ok((vec![6], DType::Float64)));
    }

    /// Random token soup and byte-level mutations of real expressions: typing and planning either
    /// succeed or refuse with a message — never panic (a panic is caught here to name the input).
    #[test]
    fn issue8_no_input_panics_the_planner() {
        let tokens = [
            "x",
            "i",
            "u",
            "(",
            ")",
            "[",
            "]",
            ",",
            ":",
            "::",
            "...",
            "+",
            "-",
            "*",
            "/",
            "//",
            "%",
            "**",
            "<",
            ">=",
            "==",
            "&",
            "|",
            "^",
            "~",
            ".T",
            ".sum(",
            ".mean(axis=",
            ".std(ddof=",
            ".astype('int8')",
            ".rechunk(",
            "cos(",
            "where(",
            "clip(",
            "minimum(",
            "transpose(",
            "ones((",
            "arange(",
            "linspace(",
            "full((",
            "cumsum(",
            "argmax(",
            "axis=",
            "keepdims=True",
            "chunks=",
            "dtype='uint8'",
            "0",
            "1",
            "-1",
            "2",
            "3",
            "0.5",
            "1e308",
            "9223372036854775807",
            "nan",
            "inf",
            "True",
            "pi",
            "'",
            " ",
            "é",
            "\u{0}",
        ];
        let seeds = [
            "(x * x[::-1, ::-1]).mean(axis=(0, 1))",
            "where(x > 0, sqrt(x), -x)**2 // 3",
            "(x - x.mean(axis=0)).max() + u.astype('int16').cumsum(axis=1)[::2]",
            "clip(i ** 2, -1, 2) + ones((4,), chunks=(3,)) * arange(4) ** 0.5",
            "x.rechunk((2, -1)).T[1:3, ...].argmin(axis=-1, keepdims=True)",
        ];
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let mut cases: Vec<String> = vec![];
        for _ in 0..20000 {
            let n = 1 + next() % 14;
            cases.push((0..n).map(|_| tokens[next() % tokens.len()]).collect());
        }
        for s in seeds {
            for _ in 0..1500 {
                let mut b: Vec<char> = s.chars().collect();
                for _ in 0..1 + next() % 3 {
                    let pos = next() % (b.len() + 1);
                    let t: Vec<char> = tokens[next() % tokens.len()].chars().collect();
                    match next() % 3 {
                        0 if pos < b.len() => {
                            b.remove(pos);
                        }
                        1 => drop(b.splice(pos..pos, t)),
                        _ => drop(b.splice(pos..(pos + 1).min(b.len()), t)),
                    }
                }
                cases.push(b.into_iter().collect());
            }
        }
        let mut planned = 0;
        for text in &cases {
            let r = std::panic::catch_unwind(|| build(text, inputs()).map(|p| p.nodes.len()));
            assert!(r.is_ok(), "planning {text:?} panicked");
            planned += matches!(r, Ok(Ok(_))) as usize;
        }
        // the mutations keep a fair share of the inputs valid, so typing and planning are exercised
        assert!(planned > cases.len() / 50, "only {planned} of {} cases planned", cases.len());
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        assert!(typ("x + u[0:3]").unwrap_err().contains("broadcast"));
        assert!(typ("u + 300").unwrap_err().contains("out of bounds for uint8"));
        assert!(typ("y + 1").unwrap_err().contains("unknown name 'y'"));
        assert!(typ("x & 1").unwrap_err().contains("bitwise"));
        assert!(typ("x.argmax(axis=(0, 1, 2))").unwrap_err().contains("axis"));
        assert!(typ("x[0:0].min()").unwrap_err().contains("zero-size"));
        assert!(typ("x[10]").unwrap_err().contains("out of bounds"));
        assert!(typ("foo(x)").unwrap_err().contains("unknown function"));
        assert!(typ("x.astype('int7')").unwrap_err().contains("unknown dtype"));
        assert!(typ("cos(x, x)").unwrap_err().contains("takes 1 argument"));
    }

    #[test]
    fn complex_results_are_their_parts_side_by_side() {
        let p = build("x.astype('complex64') * 1j + i", inputs()).unwrap();
        assert!(p.complex);
        assert_eq!((p.root().shape.clone(), p.root().dtype), (vec![6, 4, 2], DType::Float32));
        assert_eq!(p.result_shape(), &[6, 4]);
        assert!(matches!(p.root().kind, NodeKind::Pair { .. }));
        // int16 meets complex64 in complex64, float64 in complex128 (NumPy's promotion)
        assert_eq!(build("(x + 0j)", inputs()).unwrap().root().dtype, DType::Float64);
        let p = build("abs(x + 1j) == real(x * 2j)", inputs()).unwrap();
        assert!(!p.complex);
        assert_eq!(p.root().dtype, DType::Bool);
    }
}
