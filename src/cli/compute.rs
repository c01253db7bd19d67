//! What the computing commands share: resolving named inputs, building the array plan
//! (expression errors shown with a caret), choosing where the result goes, planning it
//! ([`crate::plan::planner`]), and then either printing the plan (`--explain`), drawing it
//! (`--graph`, [`crate::report::graph`]) or running it ([`crate::exec::run`]) and printing the
//! summary.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::export::Format;
use super::{ExplainFormat, RunArgs};
use crate::dtype::{DType, Scalar};
use crate::error::{human, Error, Result};
use crate::exec::cluster::{ClusterOpts, Executor};
use crate::exec::run::{RunCtx, RunReport};
use crate::grid::tuple;
use crate::plan::carry::{self, Carried, Inherited};
use crate::plan::physical::{PhysicalPlan, Place, StageOp};
use crate::plan::planner::{self, least_memory, mem_arg, PlanOptions, Target};
use crate::plan::{self, Input, Plan};
use crate::report;
use crate::store::{self, CodecSpec, CreateSpec};

/// Parse `name=path` arguments (the path may be any name the OS accepts, UTF-8 or not).
pub fn parse_named(items: &[std::ffi::OsString], arg: &str) -> Result<Vec<(String, PathBuf)>> {
    use std::os::unix::ffi::OsStrExt;
    items
        .iter()
        .map(|s| {
            let bytes = s.as_bytes();
            let eq = bytes.iter().position(|&b| b == b'=').ok_or_else(|| {
                Error::usage(
                    arg,
                    format!("{:?} is not NAME=PATH; name the array, e.g. x=big.zarr", s.to_string_lossy()),
                )
            })?;
            let n = String::from_utf8_lossy(&bytes[..eq]).into_owned();
            let p = std::ffi::OsStr::from_bytes(&bytes[eq + 1..]);
            let n = n.trim();
            if n.is_empty()
                || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || n.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(Error::usage(arg, format!("{n:?} is not a valid name (letters, digits, _)")));
            }
            if matches!(n, "True" | "False" | "None" | "true" | "false") {
                return Err(Error::usage(arg, format!("{n} is a constant of the language; name the array otherwise")));
            }
            Ok((n.to_string(), PathBuf::from(p)))
        })
        .collect()
}

/// Open the inputs' metadata and build the plan of `text`.
pub fn build_plan(text: &str, arg: &str, named: &[(String, PathBuf)]) -> Result<(Plan, Vec<store::ArrayMeta>)> {
    build_plan_many(&[text.to_string()], arg, named)
}

/// [`build_plan`] of several expressions computed together (see [`plan::build_many`]).
pub fn build_plan_many(
    texts: &[String],
    arg: &str,
    named: &[(String, PathBuf)],
) -> Result<(Plan, Vec<store::ArrayMeta>)> {
    let mut inputs = vec![];
    let mut metas = vec![];
    for (name, path) in named {
        if inputs.iter().any(|i: &Input| &i.name == name) {
            return Err(Error::usage(arg, format!("the name {name} is given twice")));
        }
        let m = super::open_input(path)?;
        // a complex array is computed with as its view (see `plan::complex`)
        inputs.push(Input {
            name: name.clone(),
            path: path.clone(),
            shape: m.view(&m.shape),
            dtype: m.dtype,
            chunks: m.view(crate::store::read_chunks(&m, path)),
            complex: m.complex,
        });
        metas.push(m);
    }
    let mut plan = plan::build_many(texts, inputs)
        .map_err(|(k, e)| Error::Expr { arg: arg.to_string(), msg: e.render(&texts[k]) })?;
    carry::round_half_literals(&mut plan, &metas.iter().map(|m| m.half).collect::<Vec<_>>());
    Ok((plan, metas))
}

/// Where a computed array goes, by one rule for `eval`, `transform` and `reduce`: an output path
/// ending in `.npy`, `.csv`/`.txt` or `.raw`/`.bin`/`.dat` is that file; any other path is a Zarr
/// array; `--format` alone prints on standard output (or names the format of an extension-less
/// file).
#[derive(Clone, Copy, Debug)]
pub enum Dest<'a> {
    Zarr(&'a Path),
    File(&'a Path, Format),
    Stdout(Format),
}

impl<'a> Dest<'a> {
    /// The destination of `out` and `--format`; `None` when neither is given.
    pub fn of(out: Option<&'a Path>, format: Option<Format>) -> Result<Option<Dest<'a>>> {
        Ok(match (out, format) {
            (None, None) => None,
            (None, Some(f)) => Some(Dest::Stdout(f)),
            // `-o -`: standard output, as `create from-npy -` reads standard input
            (Some(p), f) if p.as_os_str() == "-" => Some(Dest::Stdout(f.unwrap_or(Format::Npy))),
            (Some(p), Some(f)) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("zarr")) => {
                return Err(Error::usage(
                    "--format",
                    format!(
                        "{} names a Zarr array, not a {} file — drop --format, or give a file name",
                        p.display(),
                        format!("{f:?}").to_lowercase()
                    ),
                ))
            }
            (Some(p), f) => match (super::export::file_format(p), f) {
                (Some(e), Some(f)) if e != f => {
                    return Err(Error::usage(
                        "--format",
                        format!(
                            "{f:?} does not match the extension of {} — drop --format or rename the file",
                            p.display()
                        )
                        .to_lowercase(),
                    ))
                }
                (Some(e), _) => Some(Dest::File(p, e)),
                (None, Some(f)) => Some(Dest::File(p, f)),
                (None, None) => Some(Dest::Zarr(p)),
            },
        })
    }
}

/// Where and how to write the result.
#[derive(Clone, Default)]
pub struct OutputOpts<'a> {
    pub dtype: Option<&'a str>,
    pub chunks: Option<&'a str>,
    pub shard: Option<&'a str>,
    pub codec: Option<&'a str>,
    pub overwrite: bool,
    /// Defaults taken from an input: (chunks, shard), codec.
    pub default_chunks: Option<(Vec<u64>, Option<Vec<u64>>)>,
    pub default_codec: Option<CodecSpec>,
    /// `--dimension-names`, which wins over the names carried from the inputs.
    pub dimension_names: Option<&'a str>,
    /// Names, attributes and fill value from the inputs.
    pub carried: Carried,
    /// The result is complex (its shape and chunks are given as its view's; see `plan::complex`).
    pub complex: bool,
}

impl<'a> OutputOpts<'a> {
    /// The options of `--dtype`, `--chunks`, … as given, with what the result of `plan` carries
    /// over from the inputs `metas`.
    pub fn new(w: &'a super::OutputArgs, plan: &Plan, metas: &[store::ArrayMeta]) -> OutputOpts<'a> {
        let inherited: Vec<Inherited> = metas.iter().map(Inherited::of).collect();
        OutputOpts {
            dtype: w.dtype.as_deref(),
            chunks: w.chunks.as_deref(),
            shard: w.shard.as_deref(),
            codec: w.codec.as_deref(),
            overwrite: w.overwrite,
            default_chunks: None,
            default_codec: None,
            dimension_names: w.dimension_names.as_deref(),
            carried: carry::carried(plan, &inherited),
            complex: plan.complex,
        }
    }
}

/// Parse `--dimension-names` for an array of `rank` axes.
pub fn dimension_names_arg(text: &str, rank: usize) -> Result<Vec<Option<String>>> {
    carry::parse_names(text, rank).map_err(|m| Error::usage("--dimension-names", m))
}

/// The options a plan is checked against.
pub fn plan_options(run: &RunArgs) -> Result<PlanOptions> {
    let opts = run.options()?;
    if let Some(0 | 1) = run.split_every {
        return Err(Error::usage("--split-every", "must be at least 2"));
    }
    Ok(PlanOptions {
        memory: opts.memory,
        workers: opts.workers,
        // a cluster runs the plan of the processes scheduler: every task in a process of its own,
        // partials and intermediates on disk
        processes: run.scheduler == crate::exec::Scheduler::Processes || run.cluster.executor != Executor::Local,
        scheduler: if run.cluster.executor != Executor::Local {
            "processes".to_string()
        } else {
            run.scheduler.name().to_string()
        },
        split_every: run.split_every.map(|s| s as u64),
    })
}

fn parse_dtype(t: Option<&str>) -> Result<Option<DType>> {
    t.map(|t| {
        if crate::dtype::complex_part(t).is_some() {
            return Err(Error::usage(
                "--dtype",
                format!("the result is real, not {t} — make it complex in the expression (e.g. + 0j) instead"),
            ));
        }
        // float16: computed as float32, rounded when stored
        let t = if crate::dtype::is_half_name(t) { "float32" } else { t };
        DType::parse(t)
            .ok_or_else(|| Error::usage("--dtype", format!("unknown dtype {t:?}; use one of {}", DType::accepted())))
    })
    .transpose()
}

/// `--dtype float16` for a printed number or a file: dsk writes float16 to Zarr arrays only (a
/// printed or exported value would be the float32 one, not what was asked).
fn refuse_half_text(dtype: Option<&str>) -> Result<()> {
    if dtype.is_some_and(crate::dtype::is_half_name) {
        return Err(Error::usage(
            "--dtype",
            "float16 results are written to Zarr arrays only — write OUT.zarr, or drop --dtype for the float32 values",
        ));
    }
    Ok(())
}

fn zero(d: DType) -> Scalar {
    if d.is_bool() {
        Scalar::Bool(false)
    } else {
        Scalar::Int(0)
    }
}

/// The dtype of a complex result's parts, from `--dtype` (complex64 or complex128) or the result's.
fn complex_part_arg(t: Option<&str>, result: DType) -> Result<DType> {
    match t {
        None => Ok(result),
        Some(t) => crate::dtype::complex_part(t).ok_or_else(|| match DType::parse(t) {
            Some(_) => Error::usage(
                "--dtype",
                format!("{t} would discard the imaginary part of the complex result — give complex64 or complex128, or take real(…) or abs(…) in the expression"),
            ),
            None => Error::usage("--dtype", format!("unknown dtype {t:?}; a complex result takes complex64 or complex128")),
        }),
    }
}

/// The new Zarr array `o` describes at `dest` for a result of `shape` and `dtype`.
pub fn output_spec(
    o: &OutputOpts<'_>,
    dest: &Path,
    shape: &[u64],
    result_dtype: DType,
    natural_chunks: &[u64],
) -> Result<CreateSpec> {
    if o.complex {
        return complex_output_spec(o, dest, shape, result_dtype, natural_chunks);
    }
    let dtype = parse_dtype(o.dtype)?.unwrap_or(result_dtype);
    if let Some(m) = crate::grid::check_size(shape, dtype.size() as u64) {
        return Err(Error::usage("--dtype", format!("{m} — choose a narrower dtype")));
    }
    let codec = match o.codec {
        Some(t) => CodecSpec::parse(t)?,
        None => o.default_codec.clone().unwrap_or(CodecSpec::Auto),
    };
    let default = o.default_chunks.clone().or_else(|| Some((natural_chunks.to_vec(), None)));
    let (chunks, shard, _auto) = super::chunking(o.chunks, o.shard, shape, dtype, default)?;
    let names = match o.dimension_names {
        Some(t) => Some(dimension_names_arg(t, shape.len())?),
        None => o.carried.dimension_names.clone().filter(|n| n.len() == shape.len()),
    };
    let zarr_format = store::group::format_for(dest);
    let mut attributes = o.carried.attributes.clone();
    let fill = match o.carried.fill {
        Some(f) if dtype == result_dtype => f,
        _ => {
            // a cast changes what a masking value means
            attributes.remove("_FillValue");
            default_fill(dtype, zarr_format)
        }
    };
    // float16 as NumPy gives it: asked for with --dtype, or the result of float16 inputs only
    let half = match o.dtype {
        Some(t) => crate::dtype::is_half_name(t),
        None => o.carried.half && result_dtype == DType::Float32,
    };
    let mut spec = CreateSpec {
        shape: shape.to_vec(),
        chunks,
        shard,
        dtype,
        fill,
        codec,
        dimension_names: names,
        zarr_format,
        attributes,
        half,
        complex: false,
        fill_im: 0.0,
    };
    fit_destination(&mut spec, dest)?;
    Ok(spec)
}

/// [`output_spec`] of a complex result, whose `shape`, `natural_chunks` and carried names are its
/// view's (see `plan::complex`): the complex array's are worked out as a real one's, then given as
/// the view's. Its fill value is 0 (zarr-python's default; xarray writes `null` in v2 groups).
fn complex_output_spec(
    o: &OutputOpts<'_>,
    dest: &Path,
    shape: &[u64],
    result_part: DType,
    natural_chunks: &[u64],
) -> Result<CreateSpec> {
    let part = complex_part_arg(o.dtype, result_part)?;
    let nd = shape.len().saturating_sub(1);
    let mut carried = o.carried.clone();
    carried.dimension_names = carried.dimension_names.map(|n| n[..n.len().min(nd)].to_vec());
    carried.fill = None;
    carried.half = false;
    let real = OutputOpts { dtype: Some(part.name()), complex: false, carried, ..o.clone() };
    let mut spec = output_spec(&real, dest, &shape[..nd], part, &natural_chunks[..nd])?;
    if let Some(m) = crate::grid::check_size(shape, part.size() as u64) {
        return Err(Error::usage("--dtype", format!("{m} — choose complex64")));
    }
    // the fill value of a complex input of the result's type
    spec.make_complex(if part == result_part { o.carried.complex_fill } else { None });
    Ok(spec)
}

/// Fit a new array's spec to where it goes: in a Zarr v2 group, no sharding and xarray's fill
/// values (its fill value is the variable's `_FillValue`: anything but NaN for floats, 0 for
/// integers and false would hide values); in a group whose arrays name their dimensions, names
/// for every axis, each of one length across the group.
pub fn fit_destination(spec: &mut CreateSpec, dest: &Path) -> Result<()> {
    if crate::store::remote::is_url(dest) {
        return Ok(());
    }
    if spec.zarr_format == 2 {
        if spec.shard.is_some() {
            return Err(Error::usage(
                "--shard",
                format!("{} goes into a Zarr v2 group, and v2 arrays have no sharding — drop --shard", dest.display()),
            ));
        }
        spec.fill = default_fill(spec.dtype, 2);
        spec.attributes.remove("_FillValue");
    }
    store::group::check_dims(dest, spec.dimension_names.as_deref(), &spec.shape)
}

/// The fill value of a new array no input lends one to: zero, except NaN for floats in a Zarr v2
/// group, where the fill value is the `_FillValue` xarray masks (as xarray writes them).
pub fn default_fill(dtype: DType, zarr_format: u8) -> Scalar {
    if zarr_format == 2 && dtype.is_float() {
        Scalar::Float(f64::NAN)
    } else {
        zero(dtype)
    }
}

/// Compute the expression `plan` to `dest` (`None`: print a 0-d result) — or print its plan.
pub fn compute(plan: Plan, dest: Option<Dest<'_>>, o: OutputOpts<'_>, run: &RunArgs, command: &str) -> Result<()> {
    let overwrite = o.overwrite;
    let pplan = plan_expression(plan, dest, o, run, command)?;
    if let Some(report) = execute(&pplan, run, overwrite)? {
        summarize(&pplan, &report, run);
    }
    Ok(())
}

/// The physical plan of computing `plan` to `dest` (`None`: print a 0-d result); a plan that
/// does not fit `--memory` is refused with a change that fits.
pub fn plan_expression(
    plan: Plan,
    dest: Option<Dest<'_>>,
    o: OutputOpts<'_>,
    run: &RunArgs,
    command: &str,
) -> Result<PhysicalPlan> {
    let target = target_of(dest, &o, plan.root(), false)?;
    let popts = plan_options(run)?;
    let pplan = match planner::expression(command, plan.clone(), target.clone(), &popts) {
        Err(Error::Budget { what, needed, budget, .. }) => {
            let hint = suggest(command, &plan, &target, &popts, needed);
            return Err(Error::Budget { what, needed, budget, hint });
        }
        r => r?,
    };
    Ok(pplan)
}

/// The target of a result whose root is `root` going to `dest` (`None`: printed, in a JSON object
/// with the run's other printed results when `json`).
fn target_of(dest: Option<Dest<'_>>, o: &OutputOpts<'_>, root: &plan::Node, json: bool) -> Result<Target> {
    Ok(match dest {
        Some(Dest::Zarr(p)) => {
            let spec = output_spec(o, p, &root.shape, root.dtype, &root.chunks)?;
            Target::Array { path: p.to_path_buf(), spec: Box::new(spec) }
        }
        Some(Dest::File(p, f)) => file_target(Some(p), f, o, root)?,
        Some(Dest::Stdout(f)) => file_target(None, f, o, root)?,
        None => {
            refuse_half_text(o.dtype)?;
            let dtype = if o.complex { Some(complex_part_arg(o.dtype, root.dtype)?) } else { parse_dtype(o.dtype)? };
            Target::Print { dtype, json }
        }
    })
}

/// One result of a run that computes several: where it goes (`None`: printed, a 0-d result)
/// and the label it is printed with.
pub struct ResultDest<'a> {
    pub dest: Option<Dest<'a>>,
    pub label: Option<String>,
    /// A printed result goes into one JSON object with the others, under its label.
    pub json: bool,
}

/// Compute every result of `plan` (its root, then its others) in one run, each to its
/// destination: what they share is read once. `w` and `metas` give each result's output
/// options, as [`OutputOpts::new`] does for one.
pub fn compute_many(
    plan: Plan,
    dests: Vec<ResultDest<'_>>,
    w: &super::OutputArgs,
    metas: &[store::ArrayMeta],
    default_codec: Option<CodecSpec>,
    run: &RunArgs,
    command: &str,
) -> Result<()> {
    let mut targets = vec![];
    for (r, d) in plan.roots().into_iter().zip(dests) {
        let sub = plan.sub(r);
        let o = OutputOpts { default_codec: default_codec.clone(), ..OutputOpts::new(w, &sub, metas) };
        let target = target_of(d.dest, &o, sub.root(), d.json)?;
        targets.push((target, d.label));
    }
    let popts = plan_options(run)?;
    let pplan = match planner::expressions(command, plan.clone(), targets.clone(), &popts) {
        Err(Error::Budget { what, needed, budget, .. }) => {
            let hint =
                match least_memory(&popts, needed, |o| planner::expressions(command, plan.clone(), targets.clone(), o))
                {
                    Some(m) => format!("raise --memory to {}, or compute the results one at a time", mem_arg(m)),
                    None => "raise --memory, or compute the results one at a time".to_string(),
                };
            return Err(Error::Budget { what, needed, budget, hint });
        }
        r => r?,
    };
    if let Some(report) = execute(&pplan, run, w.overwrite)? {
        summarize(&pplan, &report, run);
    }
    Ok(())
}

/// Chunk shapes suggested to fit `--memory` stop short of grids with more chunks than this.
const MAX_SUGGESTED_CHUNKS: u64 = 1 << 16;

/// What to change when a plan does not fit `--memory`, checked to fit by planning again: smaller
/// output chunks, else smaller chunks for the largest input (rechunked first), else more memory.
fn suggest(command: &str, plan: &Plan, target: &Target, opts: &PlanOptions, needed: u64) -> String {
    let fits = |p: Plan, t: Target| planner::expression(command, p, t, opts).is_ok();
    if let Target::Array { path, spec } = target {
        let chunks = spec.shard.clone().unwrap_or_else(|| spec.chunks.clone());
        let mut k = 0.5;
        for _ in 0..12 {
            let c = crate::grid::scaled_chunks(&chunks, k);
            k *= 0.5;
            if crate::grid::Grid::new(spec.shape.clone(), c.clone()).nchunks() > MAX_SUGGESTED_CHUNKS {
                break;
            }
            let trial = Target::Array {
                path: path.clone(),
                spec: Box::new(CreateSpec { chunks: c.clone(), shard: None, ..(**spec).clone() }),
            };
            if fits(plan.clone(), trial) {
                return format!(
                    "try --chunks {} for the output{}, or raise --memory",
                    crate::grid::chunks_arg(&c),
                    if spec.shard.is_some() { " (without --shard)" } else { "" }
                );
            }
        }
    }
    // the inputs' own chunks are too large: rechunk the largest one first
    // (a complex input's chunks are its view's, which `dsk rechunk` is not given)
    let largest = plan
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| !i.complex)
        .max_by_key(|(_, i)| i.chunks.iter().product::<u64>() * i.dtype.size() as u64);
    if let Some((n, inp)) = largest {
        let mut k = 0.5;
        for _ in 0..12 {
            let c = crate::grid::scaled_chunks(&inp.chunks, k);
            k *= 0.5;
            if crate::grid::Grid::new(inp.shape.clone(), c.clone()).nchunks() > MAX_SUGGESTED_CHUNKS {
                break;
            }
            let mut inputs = plan.inputs.clone();
            inputs[n].chunks = c.clone();
            // the output's chunks follow the input's (as transform's do by default)
            let t = match target {
                Target::Array { path, spec } if spec.chunks.len() == c.len() => {
                    let oc: Vec<u64> = spec.chunks.iter().zip(&c).map(|(&a, &b)| a.min(b)).collect();
                    let spec = CreateSpec { chunks: oc, shard: None, ..(**spec).clone() };
                    Target::Array { path: path.clone(), spec: Box::new(spec) }
                }
                t => t.clone(),
            };
            if let Ok(p) = plan::build(&plan.text, inputs) {
                if fits(p, t) {
                    // the rechunk itself must fit: find the memory it needs
                    let Some(m) = rechunk_memory(inp, &c, opts) else { break };
                    return format!(
                        "the input {} ({}) has chunks of {}: rechunk it first, e.g. dsk rechunk {} smaller.zarr --chunks {} --memory {}, or raise --memory",
                        inp.name,
                        inp.path.display(),
                        human(inp.chunks.iter().product::<u64>() * inp.dtype.size() as u64),
                        inp.path.display(),
                        crate::grid::chunks_arg(&c),
                        mem_arg(m)
                    );
                }
            }
        }
    }
    match least_memory(opts, needed, |o| planner::expression(command, plan.clone(), target.clone(), o)) {
        Some(m) => format!("raise --memory to {}", mem_arg(m)),
        None => "raise --memory".to_string(),
    }
}

/// The `--memory` a rechunk of `inp` to `chunks` needs (at least `opts.memory`), checked by
/// planning it.
fn rechunk_memory(inp: &Input, chunks: &[u64], opts: &PlanOptions) -> Option<u64> {
    let spec = CreateSpec {
        shape: inp.shape.clone(),
        chunks: chunks.to_vec(),
        shard: None,
        dtype: inp.dtype,
        fill: zero(inp.dtype),
        codec: CodecSpec::default(),
        dimension_names: None,
        zarr_format: 3,
        attributes: Default::default(),
        half: false,
        complex: inp.complex,
        fill_im: 0.0,
    };
    let mut o = opts.clone();
    for _ in 0..8 {
        match crate::plan::rechunk::rechunk(inp.clone(), Path::new("smaller.zarr"), spec.clone(), &o) {
            Ok(_) => return Some(o.memory),
            Err(Error::Budget { needed, .. }) => {
                o.memory = (needed + needed / 8).next_multiple_of(1 << 20).max(o.memory * 2)
            }
            Err(_) => return None,
        }
    }
    None
}

fn file_target(path: Option<&Path>, format: Format, o: &OutputOpts<'_>, root: &plan::Node) -> Result<Target> {
    for (arg, given) in [
        ("--shard", o.shard.is_some()),
        ("--codec", o.codec.is_some()),
        ("--dimension-names", o.dimension_names.is_some()),
    ] {
        if given {
            return Err(Error::usage(
                arg,
                "applies to Zarr outputs only; a .npy, .csv or .raw output has no chunks, codecs or dimension names",
            ));
        }
    }
    refuse_half_text(o.dtype)?;
    let dtype =
        if o.complex { complex_part_arg(o.dtype, root.dtype)? } else { parse_dtype(o.dtype)?.unwrap_or(root.dtype) };
    if o.complex && format == Format::Csv {
        return Err(Error::usage(
            "--format",
            "csv holds real numbers — write the complex result as npy or json, or take real(…), imag(…) or abs(…) in the expression",
        ));
    }
    let spec = output_spec(
        &OutputOpts { dtype: None, codec: Some("none"), shard: None, ..o.clone() },
        path.unwrap_or(Path::new("-")),
        &root.shape,
        dtype,
        &root.chunks,
    )?;
    Ok(Target::File { path: path.map(Path::to_path_buf), format, chunks: spec.chunks, dtype })
}

/// Draw the plan (`--graph`) and/or print it (`--explain`), or run it: `None` for a plan drawn or
/// explained.
pub fn execute(pplan: &PhysicalPlan, run: &RunArgs, overwrite: bool) -> Result<Option<RunReport>> {
    crate::plan::planner::check_work_codec(pplan)?;
    if let Some(path) = &run.graph {
        report::graph::write(pplan, path, run.graph_level, "--graph", "--graph-level")?;
        if run.explain.is_none() {
            return Ok(None);
        }
    }
    let cluster = ClusterOpts::resolve(&run.cluster)?;
    match run.explain {
        Some(ExplainFormat::Text) if cluster.executor != Executor::Local => {
            let text = format!("{}{}", pplan.explain(), crate::exec::cluster::explain(pplan, &cluster)?);
            return crate::write_stdout(text.as_bytes()).map(|_| None);
        }
        Some(ExplainFormat::Text) => return crate::write_stdout(pplan.explain().as_bytes()).map(|_| None),
        Some(ExplainFormat::Json) => {
            let text = serde_json::to_string_pretty(&pplan.to_json()).map_err(|e| Error::Internal(e.to_string()))?;
            return crate::write_stdout(format!("{text}\n").as_bytes()).map(|_| None);
        }
        None => {}
    }
    // the display sink, behind the recorder when the run is watched or reported
    let (observed, sink) = Observed::start(pplan, run, report::sink(run.progress, run.quiet))?;
    let ctx = RunCtx {
        opts: run.options()?,
        scheduler: run.scheduler,
        sink: match (&observed, &sink) {
            (Some(o), _) => o.recorder.as_ref(),
            (None, Some(s)) => s.as_ref(),
            (None, None) => &crate::exec::NoEvents,
        },
        work_base: run.work_dir.clone(),
        keep_work_dir: run.keep_work_dir,
        overwrite,
        resume: run.resume,
        cluster,
    };
    let r = crate::exec::run::run(pplan, &ctx);
    if let Some(o) = observed {
        o.finish(&r, run)?;
    }
    match r {
        Ok(rep) if rep.detached => Ok(None),
        r => r.map(Some),
    }
}

/// Where a run's events go for display (progress bars, JSON lines).
type Sink = Box<dyn crate::exec::EventSink + Send>;

/// The dashboard and the report of a run (`--dashboard`, `--report`).
struct Observed {
    recorder: std::sync::Arc<report::timeline::Recorder>,
    dashboard: Option<report::dashboard::Dashboard>,
    title: String,
}

impl Observed {
    /// The recorder takes `sink` over when the run is watched or reported; else it is handed back.
    fn start(pplan: &PhysicalPlan, run: &RunArgs, sink: Sink) -> Result<(Option<Observed>, Option<Sink>)> {
        use report::dashboard::{parse_addr, Dashboard, DEFAULT_ADDR};
        // `--dashboard` alone: Dask's port, or another one when it is taken; an address given is
        // used or refused
        if run.dashboard.is_none() && run.report.is_none() {
            return Ok((None, Some(sink)));
        }
        if let Some(p) = &run.report {
            report::draw::PictureFormat::of(p, "--report", &[report::draw::PictureFormat::Html])?;
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(Error::usage(
                    "--report",
                    format!("{}: the directory {} does not exist — create it first", p.display(), dir.display()),
                ));
            }
            report::draw::check_replaceable(p, "--report")?;
            if let Some(clash) = run_paths(pplan).into_iter().find(|q| same_or_inside(p, q)) {
                return Err(Error::usage(
                    "--report",
                    format!(
                        "{} is {} of this run — name the report elsewhere, e.g. --report run.html",
                        p.display(),
                        if same_or_inside(&clash, p) {
                            format!("the array or file {}", clash.display())
                        } else {
                            format!("inside {}", clash.display())
                        }
                    ),
                ));
            }
        }
        if !run.dashboard_linger.is_finite() || run.dashboard_linger < 0.0 || run.dashboard_linger > 86_400.0 {
            return Err(Error::usage("--dashboard-linger", "give a number of seconds between 0 and 86400"));
        }
        let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
        let recorder = report::timeline::Recorder::new(pplan, sink, &argv, Some(report::graph::stage_svg(pplan)));
        let title = format!("{}: {}", pplan.command, pplan.text);
        let dashboard = match &run.dashboard {
            Some(a) => {
                let default = a.is_empty();
                let addr = parse_addr(if default { DEFAULT_ADDR } else { a })?;
                let mut d = Dashboard::start(addr, default, recorder.clone(), title.clone())?;
                // --progress json promises one JSON object per line on stderr
                d.json = run.progress == report::ProgressMode::Json;
                if d.json {
                    report::emit(
                        json!({"event": "dashboard", "url": format!("http://{}/", d.addr()), "port_taken": d.taken}),
                    );
                } else {
                    if let Some(p) = d.taken {
                        eprintln!("dsk: port {p} is in use; the dashboard takes another");
                    }
                    eprintln!("dsk: dashboard at http://{}/", d.addr());
                }
                Some(d)
            }
            None => None,
        };
        recorder.start_sampling(std::time::Duration::from_millis(100));
        Ok((Some(Observed { recorder, dashboard, title }), None))
    }

    /// The run ended: save the report, keep the dashboard up for --dashboard-linger, stop it.
    fn finish(self, r: &Result<RunReport>, run: &RunArgs) -> Result<()> {
        let summary = r.as_ref().ok().map(|rep| {
            json!({
                "elapsed_s": rep.elapsed.as_secs_f64(), "tasks": rep.tasks, "stages": rep.stages,
                "peak_rss": rep.peak_rss, "workers_peak_rss": rep.children_peak, "workers": rep.children,
            })
        });
        self.recorder.finish(r.as_ref().err().map(|e| e.to_string()), summary);
        let saved = match &run.report {
            Some(p) => report::dashboard::save_report(p, &self.title, &self.recorder).map(|_| {
                if !run.quiet && run.progress != report::ProgressMode::Json {
                    eprintln!("dsk: report saved to {}", p.display());
                }
            }),
            None => Ok(()),
        };
        if let Some(d) = self.dashboard {
            d.stop(std::time::Duration::from_secs_f64(run.dashboard_linger));
        }
        // the run's own error comes first
        match (r, saved) {
            (Ok(_), Err(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

/// The arrays and files a run reads or writes.
fn run_paths(pplan: &PhysicalPlan) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = pplan.inputs.iter().map(|i| i.path.clone()).collect();
    if let Some(o) = pplan.output {
        match &pplan.arrays[o].place {
            Place::Output(p) | Place::Work(p) => v.push(p.clone()),
        }
    }
    for s in &pplan.stages {
        match &s.op {
            StageOp::Export { path: Some(p), .. } => v.push(p.clone()),
            StageOp::Import { file, .. } => v.push(file.path.clone()),
            _ => {}
        }
    }
    v
}

/// True when `a` is `b` or a path inside it (both made absolute, `.` and `..` resolved as
/// written).
fn same_or_inside(a: &Path, b: &Path) -> bool {
    fn norm(p: &Path) -> PathBuf {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    out.pop();
                }
                c => out.push(c),
            }
        }
        out
    }
    norm(a).starts_with(norm(b))
}

/// The peak memory of a run, for summaries: this process, and its worker children if any.
pub fn describe_memory(r: &RunReport) -> String {
    let parent = r.peak_rss.map(human).unwrap_or_else(|| "?".into());
    match (r.children_peak, r.cluster_jobs) {
        (c, Some(j)) => format!(
            "peak RSS {parent} (+ {j} cluster job{} of up to {})",
            if j == 1 { "" } else { "s" },
            c.map(human).unwrap_or_else(|| "?".into())
        ),
        (Some(c), None) => format!("peak RSS {parent} (+ {} × workers of up to {})", r.children, human(c)),
        (None, None) => format!("peak RSS {parent}"),
    }
}

/// The end-of-run line (or JSON `summary` event) of an expression, rechunk or reduce.
pub fn summarize(pplan: &PhysicalPlan, r: &RunReport, run: &RunArgs) {
    let secs = r.elapsed.as_secs_f64();
    let out = pplan.output.map(|o| &pplan.arrays[o]);
    let mut fields = json!({
        "command": pplan.command, "stages": r.stages, "tasks": r.tasks, "elapsed_s": (secs * 1000.0).round() / 1000.0,
        "peak_rss": r.peak_rss, "workers_peak_rss": r.children_peak, "workers_peak_rss_sum": r.children_peak_sum,
        "workers": r.children,
        "cluster_jobs": r.cluster_jobs,
        "scheduler": run.scheduler.name(),
        "executor": run.cluster.executor.name(),
        "fingerprint": pplan.fingerprint(),
    });
    if r.storage != Default::default() {
        fields["storage"] = json!(r.storage);
    }
    // several results written: each with its shape, in the order they were given
    let mut results: Vec<(crate::plan::physical::ArrayId, PathBuf)> = vec![];
    for &o in pplan.output.iter().chain(&pplan.also) {
        let (Place::Output(p) | Place::Work(p)) = &pplan.arrays[o].place;
        results.push((o, p.clone()));
    }
    for st in &pplan.stages {
        if let StageOp::Export { path: Some(p), array: crate::plan::physical::ExportSource::Array(a), .. } = &st.op {
            results.push((*a, p.clone()));
        }
    }
    if results.len() > 1 {
        results.sort_by_key(|(a, _)| *a);
        let each: Vec<String> = results
            .iter()
            .map(|(a, p)| {
                let (shape, _, _) = pplan.arrays[*a].spec.stored();
                format!("{} {} {}", p.display(), tuple(&shape), pplan.arrays[*a].spec.dtype_name())
            })
            .collect();
        fields["outputs"] = json!(results
            .iter()
            .map(|(a, p)| {
                let (shape, _, _) = pplan.arrays[*a].spec.stored();
                json!({"path": p.display().to_string(), "shape": shape, "dtype": pplan.arrays[*a].spec.dtype_name()})
            })
            .collect::<Vec<_>>());
        let text = format!(
            "dsk: wrote {} — {} task{} in {} stage{}, {:.2} s, {}",
            each.join(", "),
            r.tasks,
            if r.tasks == 1 { "" } else { "s" },
            r.stages,
            if r.stages == 1 { "" } else { "s" },
            secs,
            describe_memory(r)
        );
        report::summary(run.progress, run.quiet, &text, fields);
        return;
    }
    let text = match out {
        Some(a) => {
            let path = match &a.place {
                Place::Output(p) | Place::Work(p) => p.clone(),
            };
            let logical = a.nbytes();
            let unit = if a.spec.shard.is_some() { "shards" } else { "chunks" };
            let (shape, chunks, shard) = a.spec.stored();
            fields["path"] = json!(path.display().to_string());
            fields["shape"] = json!(shape);
            fields["chunks"] = json!(chunks);
            fields["shards"] = json!(shard);
            fields["dtype"] = json!(a.spec.dtype_name());
            fields["nbytes"] = json!(logical);
            fields["nbytes_stored"] = json!(store::meta::stored_bytes(&path).ok().flatten());
            format!(
                "dsk: wrote {} — {} {}, {unit} {}, {} task{} in {} stage{}, {} in {:.2} s ({}/s), {}",
                path.display(),
                tuple(&shape),
                a.spec.dtype_name(),
                tuple(shard.as_ref().unwrap_or(&chunks)),
                r.tasks,
                if r.tasks == 1 { "" } else { "s" },
                r.stages,
                if r.stages == 1 { "" } else { "s" },
                human(logical),
                secs,
                human((logical as f64 / secs.max(1e-9)) as u64),
                describe_memory(r)
            )
        }
        None => {
            let export = pplan.stages.iter().find_map(|s| match &s.op {
                StageOp::Export { path, .. } => Some(path.clone()),
                _ => None,
            });
            let boundaries =
                pplan.stages.iter().any(|s| matches!(s.op, StageOp::Partials(_) | StageOp::ScanTotals { .. }));
            match export {
                Some(Some(path)) => {
                    fields["path"] = json!(path.display().to_string());
                    format!(
                        "dsk: wrote {} — {} task{} in {} stage{}, {:.2} s, {}",
                        path.display(),
                        r.tasks,
                        if r.tasks == 1 { "" } else { "s" },
                        r.stages,
                        if r.stages == 1 { "" } else { "s" },
                        secs,
                        describe_memory(r)
                    )
                }
                // a result on stdout: a line only for runs with reductions worth reporting
                _ if !boundaries => {
                    if run.progress == report::ProgressMode::Json {
                        report::summary(run.progress, run.quiet, "", fields);
                    }
                    return;
                }
                _ => format!("dsk: {} in {:.2} s, {} tasks, {}", pplan.text, secs, r.tasks, describe_memory(r)),
            }
        }
    };
    report::summary(run.progress, run.quiet, &text, fields);
}
