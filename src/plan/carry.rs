//! What a computed array inherits from its inputs besides its values: dimension names (with
//! NumPy's meaning: reduced axes removed, transposes permuted, broadcast axes named by whichever
//! input has them), user attributes whose meaning survives the computation, and the fill value.
//!
//! Attributes: a selection, transposition, rechunk or cast of one input keeps all of them (the
//! values are the input's, as xarray keeps them for `isel` and `transpose`); a reduction that
//! keeps the input's unit (sum, mean, min, max, std and their nan variants, over one input,
//! through such selections) keeps `units`, `long_name` and `standard_name`; anything else keeps
//! none (the units of `cos(x)**2` are not the units of `x`).

use serde_json::{Map, Value};

use super::{NodeKind, Plan};
use crate::dtype::{DType, Scalar};
use crate::kernels::reduce::ReduceOp;
use crate::store::ArrayMeta;

/// One input's names, attributes and fill value.
#[derive(Clone, Debug, Default)]
pub struct Inherited {
    pub dimension_names: Option<Vec<Option<String>>>,
    pub attributes: Map<String, Value>,
    pub fill: Option<Scalar>,
    pub dtype: Option<DType>,
    pub half: bool,
    /// A complex input's fill value (re, im); its `dtype` is its parts'.
    pub complex_fill: Option<(f64, f64)>,
}

impl Inherited {
    pub fn of(m: &ArrayMeta) -> Inherited {
        Inherited {
            // a complex array is given as its view: its parts' axis has no name
            dimension_names: m.dimension_names.clone().map(|mut n| {
                if m.complex {
                    n.push(None);
                }
                n
            }),
            attributes: m.attributes.clone(),
            fill: crate::store::fill_of(m).ok().filter(|_| !m.complex),
            dtype: Some(m.dtype),
            half: m.half,
            complex_fill: crate::store::complex_fill_of(m).ok().filter(|_| m.complex).map(|(re, im)| (re.as_f64(), im)),
        }
    }
}

/// What the result of `plan` carries over from its inputs (`inputs[i]` describes
/// `plan.inputs[i]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Carried {
    pub dimension_names: Option<Vec<Option<String>>>,
    pub attributes: Map<String, Value>,
    /// The fill value of an input of the result's dtype (the first such input).
    pub fill: Option<Scalar>,
    /// Every input array is float16 (a float32 result is then float16, as in NumPy).
    pub half: bool,
    /// For a complex result, the fill value (re, im) of the first complex input of its type.
    pub complex_fill: Option<(f64, f64)>,
}

/// Attributes that keep their meaning through a unit-preserving reduction.
const REDUCED_KEEPS: [&str; 3] = ["units", "long_name", "standard_name"];

fn keeps_units(op: ReduceOp) -> bool {
    use ReduceOp::*;
    matches!(op, Sum | Mean | Min | Max | Std | NanSum | NanMean | NanMin | NanMax | NanStd)
}

pub fn carried(plan: &Plan, inputs: &[Inherited]) -> Carried {
    let names = names(plan, inputs);
    let dimension_names = names.filter(|n| n.iter().any(Option::is_some));
    let half = half_nodes(plan, &inputs.iter().map(|i| i.half).collect::<Vec<_>>())[plan.root].0;
    let complex_fill = match plan.complex {
        true => inputs.iter().find(|i| i.complex_fill.is_some() && i.dtype == Some(plan.root().dtype)),
        false => None,
    }
    .and_then(|i| i.complex_fill);
    Carried { dimension_names, attributes: attributes(plan, inputs), fill: fill(plan, inputs), half, complex_fill }
}

/// Per node: (its values are float16 in NumPy's typing, it computes in float16). float16 arrays
/// are read as float32; NumPy's float16 is then tracked here: an input stored as float16; an
/// operation whose array operands are float16 or narrower (int8, uint8, bool), at least one
/// float16, computing in float32; selections, scans and float reductions of such values. An
/// explicit `astype` ends it.
pub fn half_nodes(plan: &Plan, input_half: &[bool]) -> Vec<(bool, bool)> {
    use crate::dtype::DType;
    let mut out: Vec<(bool, bool)> = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        let f32_result = node.dtype == DType::Float32;
        let v = match &node.kind {
            NodeKind::Input { input } => (input_half.get(*input).copied().unwrap_or(false), false),
            NodeKind::Map { args, compute, .. } => {
                let arrays: Vec<usize> = args.iter().copied().filter(|&a| plan.nodes[a].weak.is_none()).collect();
                let narrow =
                    |a: usize| out[a].0 || matches!(plan.nodes[a].dtype, DType::Int8 | DType::Uint8 | DType::Bool);
                let computes =
                    *compute == DType::Float32 && arrays.iter().any(|&a| out[a].0) && arrays.iter().all(|&a| narrow(a));
                (computes && f32_result, computes)
            }
            NodeKind::Index { arg, .. }
            | NodeKind::Transpose { arg, .. }
            | NodeKind::Rechunk { arg }
            | NodeKind::Scan { arg, .. }
            | NodeKind::Reduce { arg, .. } => (out[*arg].0 && f32_result, false),
            NodeKind::Astype { .. }
            | NodeKind::Gen { .. }
            | NodeKind::Const { .. }
            | NodeKind::Temp { .. }
            | NodeKind::Pair { .. } => (false, false),
        };
        out.push(v);
    }
    out
}

/// Python float literals that meet float16 values are float16 in NumPy (NEP 50): round them so,
/// in the operations that compute in float16 (`x == 0.1` holds where `x` holds float16(0.1)).
pub fn round_half_literals(plan: &mut Plan, input_half: &[bool]) {
    if !input_half.iter().any(|&h| h) {
        return;
    }
    let half = half_nodes(plan, input_half);
    let mut round = vec![false; plan.nodes.len()];
    let mut keep = vec![false; plan.nodes.len()];
    for (i, node) in plan.nodes.iter().enumerate() {
        if let NodeKind::Map { args, .. } = &node.kind {
            for &a in args {
                if matches!(plan.nodes[a].weak, Some(super::WeakKind::Float | super::WeakKind::Int)) {
                    if half[i].1 {
                        round[a] = true;
                    } else {
                        keep[a] = true; // a literal shared with a wider operation stays as it is
                    }
                }
            }
        }
    }
    for (i, node) in plan.nodes.iter_mut().enumerate() {
        if round[i] && !keep[i] {
            use crate::kernels::generate::ScalarRepr;
            if let NodeKind::Const { value } = &mut node.kind {
                let rounded = |v: f64| crate::dtype::f16_nearest(v).to_f64();
                *value = match *value {
                    ScalarRepr::Float(v) => ScalarRepr::Float(rounded(v)),
                    // an integer literal too: 2049 is float16's 2048, 70000 its inf
                    ScalarRepr::Int(i) if rounded(i as f64).is_finite() => ScalarRepr::Int(rounded(i as f64) as i64),
                    ScalarRepr::Uint(u) if rounded(u as f64).is_finite() => ScalarRepr::Uint(rounded(u as f64) as u64),
                    ScalarRepr::Int(i) => ScalarRepr::Float(rounded(i as f64)),
                    ScalarRepr::Uint(u) => ScalarRepr::Float(rounded(u as f64)),
                    other => other,
                };
            }
        }
    }
}

/// The names of the root's axes, node by node.
fn names(plan: &Plan, inputs: &[Inherited]) -> Option<Vec<Option<String>>> {
    let mut of: Vec<Vec<Option<String>>> = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        let rank = node.shape.len();
        let none = vec![None; rank];
        let v = match &node.kind {
            NodeKind::Input { input } => {
                inputs.get(*input).and_then(|i| i.dimension_names.clone()).filter(|n| n.len() == rank).unwrap_or(none)
            }
            NodeKind::Map { args, .. } => {
                let mut out: Vec<Option<String>> = none;
                for axis in 0..rank {
                    // axes align from the right, as NumPy broadcasts; the inputs' names for this
                    // axis in order, those of the result's length first (a length-1 axis
                    // stretched lends its name only if no other does), skipping a name an
                    // earlier axis took
                    let mut candidates = vec![];
                    for stretched in [false, true] {
                        for &a in args {
                            let ash = &plan.nodes[a].shape;
                            let Some(k) = (axis + ash.len()).checked_sub(rank) else { continue };
                            if (ash[k] != node.shape[axis]) == stretched {
                                candidates.extend(of[a][k].clone());
                            }
                        }
                    }
                    out[axis] = candidates.into_iter().find(|c| !out[..axis].iter().flatten().any(|o| o == c));
                }
                out
            }
            NodeKind::Index { arg, sel } => {
                of[*arg].iter().zip(sel).filter(|(_, s)| s.keep).map(|(n, _)| n.clone()).collect()
            }
            NodeKind::Transpose { arg, perm } => perm.iter().map(|&p| of[*arg][p].clone()).collect(),
            NodeKind::Astype { arg } | NodeKind::Rechunk { arg } | NodeKind::Scan { arg, .. } => of[*arg].clone(),
            NodeKind::Reduce { arg, axes, keepdims: true, .. } => {
                // a kept length-1 axis still is the axis it was
                let _ = axes;
                of[*arg].clone()
            }
            NodeKind::Reduce { arg, axes, .. } => {
                of[*arg].iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, n)| n.clone()).collect()
            }
            // the axis of a complex value's parts has no name
            NodeKind::Pair { re, .. } => of[*re].iter().cloned().chain([None]).collect(),
            NodeKind::Gen { .. } | NodeKind::Const { .. } | NodeKind::Temp { .. } => none,
        };
        debug_assert_eq!(v.len(), rank);
        of.push(v);
    }
    let mut root = of.swap_remove(plan.root);
    // two axes of one name cannot be told apart (xarray refuses them): keep the first
    for i in 0..root.len() {
        if root[i].is_some() && root[..i].contains(&root[i]) {
            root[i] = None;
        }
    }
    Some(root)
}

/// The attributes of the input the root is a selection (or unit-preserving reduction) of.
fn attributes(plan: &Plan, inputs: &[Inherited]) -> Map<String, Value> {
    let mut id = plan.root;
    let mut reduced = false;
    loop {
        match &plan.nodes[id].kind {
            NodeKind::Input { input } => {
                let Some(i) = inputs.get(*input) else { return Map::new() };
                return if reduced {
                    i.attributes
                        .iter()
                        .filter(|(k, _)| REDUCED_KEEPS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    i.attributes.clone()
                };
            }
            // a complex result has the attributes of its real part
            NodeKind::Index { arg, .. }
            | NodeKind::Transpose { arg, .. }
            | NodeKind::Rechunk { arg }
            | NodeKind::Pair { re: arg, .. } => id = *arg,
            NodeKind::Astype { arg } => {
                // a cast to another kind of number changes what the fill value means
                reduced |= plan.nodes[id].dtype != plan.nodes[*arg].dtype;
                id = *arg
            }
            NodeKind::Reduce { arg, op, .. } if keeps_units(*op) => {
                reduced = true;
                id = *arg
            }
            _ => return Map::new(),
        }
    }
}

fn fill(plan: &Plan, inputs: &[Inherited]) -> Option<Scalar> {
    let dtype = plan.root().dtype;
    inputs.iter().find(|i| i.dtype == Some(dtype) && i.complex_fill.is_none()).and_then(|i| i.fill)
}

/// Parse `--dimension-names y,x` for an array of `rank` axes (`arg` names the option in errors).
pub fn parse_names(text: &str, rank: usize) -> Result<Vec<Option<String>>, String> {
    let names: Vec<String> = if rank == 0 && text.trim().is_empty() {
        vec![]
    } else {
        text.split(',').map(|s| s.trim().to_string()).collect()
    };
    if names.len() != rank {
        return Err(format!("{text:?} names {} axes but the array has {rank}", names.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        if n.is_empty() {
            return Err(format!("{text:?} has an empty name; give every axis a name"));
        }
        if !seen.insert(n) {
            return Err(format!("{text:?} names two axes {n:?}; every axis needs its own name"));
        }
    }
    Ok(names.into_iter().map(Some).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{build, Input};

    fn plan(text: &str, shapes: &[&[u64]]) -> Plan {
        let inputs = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Input {
                name: ["x", "y"][i].into(),
                path: "x.zarr".into(),
                shape: s.to_vec(),
                dtype: DType::Float64,
                chunks: s.iter().map(|&n| n.max(1)).collect(),
                complex: false,
            })
            .collect();
        build(text, inputs).unwrap()
    }

    fn named(names: &[&str]) -> Inherited {
        let mut attributes = Map::new();
        attributes.insert("units".into(), "K".into());
        attributes.insert("history".into(), "made".into());
        Inherited {
            dimension_names: Some(names.iter().map(|n| Some(n.to_string())).collect()),
            attributes,
            fill: Some(Scalar::Float(f64::NAN)),
            dtype: Some(DType::Float64),
            half: false,
            complex_fill: None,
        }
    }

    fn dims(c: &Carried) -> Vec<Option<&str>> {
        c.dimension_names.as_ref().unwrap().iter().map(|n| n.as_deref()).collect()
    }

    #[test]
    fn names_follow_numpy() {
        let yx = [named(&["y", "x"])];
        assert_eq!(dims(&carried(&plan("x.T", &[&[2, 3]]), &yx)), [Some("x"), Some("y")]);
        assert_eq!(dims(&carried(&plan("x.mean(axis=0)", &[&[2, 3]]), &yx)), [Some("x")]);
        assert_eq!(dims(&carried(&plan("x.sum(axis=1, keepdims=True)", &[&[2, 3]]), &yx)), [Some("y"), Some("x")]);
        assert_eq!(dims(&carried(&plan("x[0, ::-1]", &[&[2, 3]]), &yx)), [Some("x")]);
        assert_eq!(carried(&plan("x.mean()", &[&[2, 3]]), &yx).dimension_names, None);
        // broadcasting: the axis comes from whichever input has it
        let t = [Inherited::default(), named(&["t", "x"])];
        assert_eq!(dims(&carried(&plan("x + y", &[&[3], &[2, 3]]), &t)), [Some("t"), Some("x")]);
        let t = [named(&["x"]), Inherited::default()];
        assert_eq!(dims(&carried(&plan("x + y", &[&[3], &[2, 3]]), &t)), [None, Some("x")]);
        // a name an earlier axis took is skipped for the other input's
        let t = [named(&["p"]), named(&["p", "q"])];
        assert_eq!(dims(&carried(&plan("x + y", &[&[3], &[3, 3]]), &t)), [Some("p"), Some("q")]);
    }

    #[test]
    fn attributes_survive_selections_and_unit_preserving_reductions() {
        let yx = [named(&["y", "x"])];
        assert_eq!(carried(&plan("x[::2].T", &[&[2, 3]]), &yx).attributes.len(), 2);
        let m = carried(&plan("x.mean(axis=1)", &[&[2, 3]]), &yx).attributes;
        assert_eq!(m.keys().collect::<Vec<_>>(), ["units"]);
        assert!(carried(&plan("cos(x)**2", &[&[2, 3]]), &yx).attributes.is_empty());
        assert!(carried(&plan("x.var()", &[&[2, 3]]), &yx).attributes.is_empty());
        assert!(carried(&plan("cos(x)", &[&[2, 3]]), &yx).fill.is_some_and(|f| f.as_f64().is_nan()));
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_names("y, x", 2), Ok(vec![Some("y".into()), Some("x".into())]));
        assert!(parse_names("y", 2).is_err());
        assert!(parse_names("y,y", 2).is_err());
        assert!(parse_names("y,", 2).is_err());
        assert_eq!(parse_names("", 0), Ok(vec![]));
    }
}
