//! `dsk create KIND OUT`: write a new Zarr v3 array chunk by chunk, in parallel, under the memory
//! bound. KIND is a generator (ones, zeros, full, arange, linspace, random) or a file (.npy, raw).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::compute::{describe_memory, execute, plan_options};
use super::{parse_shape_arg, RunArgs};
use crate::dtype::{DType, Elem, Scalar};
use crate::error::{human, Error, Result};
use crate::kernels::generate::{arange_len, arange_len_int, Generator};
use crate::kernels::random::Dist;
use crate::plan::physical::FileSource;
use crate::plan::{planner, Node, NodeKind, Plan};
use crate::report;
use crate::store::npy::RawSource;
use crate::store::{self, CodecSpec, CreateSpec};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk create ones big.zarr --shape 200000,4000 --chunks 1000,1000
  dsk create random x.zarr --shape 50000,4000 --chunks 1000,1000 --dist normal --seed 42
  dsk create arange r.zarr --stop 12 --shape 3,4 --dtype int32
  dsk create from-npy data.npy data.zarr --codec blosc:zstd:5
  dsk create full nan.zarr --shape 100,100 --value nan --dtype float32")]
pub struct CreateArgs {
    #[command(subcommand)]
    pub kind: Kind,
    #[command(flatten)]
    pub run: super::RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Kind {
    /// An array of ones (stored as the fill value: no chunk is written unless --write-empty-chunks).
    Ones(Common),
    /// An array of zeros (stored as the fill value).
    Zeros(Common),
    /// An array holding one value everywhere (stored as the fill value).
    Full {
        /// The value (a number, nan, inf, -inf, true or false).
        #[arg(long, allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        common: Common,
    },
    /// numpy.arange(start, stop, step): 1-D, or reshaped with --shape.
    Arange {
        /// The first value (an integer, or a float for a float array).
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        start: String,
        /// The end, not included (as in NumPy).
        #[arg(long, allow_hyphen_values = true)]
        stop: String,
        /// The spacing between values; negative to count down.
        #[arg(long, default_value = "1", allow_hyphen_values = true)]
        step: String,
        #[command(flatten)]
        common: Common,
    },
    /// numpy.linspace(start, stop, num): 1-D, or reshaped with --shape.
    Linspace {
        /// The first value.
        #[arg(long, allow_hyphen_values = true)]
        start: f64,
        /// The last value (included, as in NumPy's default endpoint=True).
        #[arg(long, allow_hyphen_values = true)]
        stop: f64,
        /// How many values, evenly spaced from --start to --stop.
        #[arg(long)]
        num: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Random values from a counter-based generator: the same seed gives the same array whatever
    /// the chunking, --workers or write order.
    Random {
        /// The distribution: uniform in [--low, --high), or normal with --mean and --std.
        #[arg(long, value_enum, default_value = "uniform")]
        dist: DistArg,
        /// Lower bound (uniform; inclusive). Default 0.
        #[arg(long, allow_hyphen_values = true)]
        low: Option<String>,
        /// Upper bound (uniform; exclusive). Default 1 for floats; required for integer dtypes.
        #[arg(long, allow_hyphen_values = true)]
        high: Option<String>,
        /// Mean (normal).
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        mean: f64,
        /// Standard deviation (normal).
        #[arg(long, default_value = "1")]
        std: f64,
        /// The generator's seed: the same seed gives the same array, whatever the chunking.
        #[arg(long, default_value = "0")]
        seed: u64,
        #[command(flatten)]
        common: Common,
    },
    /// A NumPy .npy file (C or Fortran order, either byte order), memory-mapped; `-` reads stdin.
    FromNpy {
        /// The .npy file, or - for standard input.
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// A headerless binary file of --shape elements of --dtype in C order.
    FromRaw {
        /// The raw file, or - for standard input.
        file: PathBuf,
        /// The byte order of the file's elements (most machines today: little).
        #[arg(long, value_enum, default_value = "little")]
        byte_order: ByteOrder,
        #[command(flatten)]
        common: Common,
    },
}

impl Kind {
    /// The generator's name (as the expression language spells it), or the file kind.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Ones(_) => "ones",
            Kind::Zeros(_) => "zeros",
            Kind::Full { .. } => "full",
            Kind::Arange { .. } => "arange",
            Kind::Linspace { .. } => "linspace",
            Kind::Random { dist: DistArg::Normal, .. } => "normal",
            Kind::Random { .. } => "random",
            Kind::FromNpy { .. } => "from-npy",
            Kind::FromRaw { .. } => "from-raw",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistArg {
    /// Uniform in [--low, --high).
    Uniform,
    /// Normal (Gaussian) with --mean and --std.
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ByteOrder {
    Little,
    Big,
}

/// Options shared by every KIND.
#[derive(Debug, Args)]
pub struct Common {
    /// The output array (a directory, e.g. out.zarr).
    pub out: PathBuf,
    /// Array shape, e.g. 200000,4000.
    #[arg(long)]
    pub shape: Option<String>,
    /// Chunk shape (default: about 16 MiB per chunk, as square as the shape allows).
    #[arg(long)]
    pub chunks: Option<String>,
    /// Element type: bool, int8…int64, uint8…uint64, float32, float64 (also f64, i32, …).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Compression: auto (chosen from samples of the data), none, zstd[:LEVEL],
    /// blosc[:CNAME[:CLEVEL[:SHUFFLE]]], gzip[:LEVEL].
    #[arg(long, default_value = "auto")]
    pub codec: String,
    /// Shard shape (sharding codec), a multiple of --chunks, which become the inner chunks.
    #[arg(long)]
    pub shard: Option<String>,
    /// Names of the axes, e.g. y,x.
    #[arg(long, value_name = "NAMES")]
    pub dimension_names: Option<String>,
    /// Replace OUT if it is an existing Zarr array (nothing else is ever replaced).
    #[arg(long)]
    pub overwrite: bool,
    /// Store chunks even when every element equals the fill value (by default they are skipped,
    /// as zarr-python does, and read back as the fill value).
    #[arg(long)]
    pub write_empty_chunks: bool,
}

/// Where a new array's values come from.
#[derive(Clone)]
enum Source {
    Gen(Generator),
    /// A file (checked: header, size), and what the import stage needs to read it again.
    Raw(FileSource),
}

fn parse_dtype(text: &Option<String>) -> Result<Option<DType>> {
    text.as_deref()
        .map(|t| {
            // float16 is generated in float32 and rounded when stored
            let t = if crate::dtype::is_half_name(t) { "float32" } else { t };
            if crate::dtype::complex_part(t).is_some() {
                return Err(Error::usage(
                    "--dtype",
                    format!("create makes real arrays, not {t} — make a complex one from real parts: dsk eval 'x + 1j * y' x=re.zarr y=im.zarr -o z.zarr"),
                ));
            }
            DType::parse(t).ok_or_else(|| {
                Error::usage("--dtype", format!("unknown dtype {t:?}; use one of {}", DType::accepted()))
            })
        })
        .transpose()
}

fn require_shape(c: &Common, kind: &str) -> Result<Vec<u64>> {
    match &c.shape {
        Some(s) => parse_shape_arg(s, "--shape"),
        None => Err(Error::usage("--shape", format!("is required for `create {kind}`; e.g. --shape 1000,4000"))),
    }
}

/// `--shape` for a 1-D generator of `n` elements: absent means (n,), present must hold n elements.
/// The shape of `n` generated elements: `--shape`, else 1-D (refused, naming `arg`, when `n`
/// elements of `itemsize` bytes are more than an array may hold).
fn reshape(c: &Common, n: u64, kind: &str, arg: &str, itemsize: u64) -> Result<Vec<u64>> {
    match &c.shape {
        None => match crate::grid::check_size(&[n], itemsize) {
            Some(m) => Err(Error::usage(arg, format!("{kind} gives {n} elements: {m}"))),
            None => Ok(vec![n]),
        },
        Some(s) => {
            let shape = parse_shape_arg(s, "--shape")?;
            let m = shape.iter().try_fold(1u64, |a, &x| a.checked_mul(x));
            if m != Some(n) {
                return Err(Error::usage(
                    "--shape",
                    format!(
                        "{kind} gives {n} elements but --shape {s} holds {}; give a shape with {n} elements",
                        m.map_or("more than 2⁶⁴".to_string(), |m| m.to_string())
                    ),
                ));
            }
            Ok(shape)
        }
    }
}

fn is_int_text(t: &str) -> bool {
    t.trim().parse::<i64>().is_ok()
}

fn num(t: &str, arg: &str) -> Result<f64> {
    let v: f64 = t.trim().parse().map_err(|_| Error::usage(arg, format!("{t:?} is not a number")))?;
    Ok(v)
}

/// Standard input (`-`) spooled to a file that every worker process can read; other paths as
/// they are. The spool lives as long as the returned handle.
fn spooled(file: &Path, _spools: &[tempfile::NamedTempFile]) -> Result<(PathBuf, Option<tempfile::NamedTempFile>)> {
    if file.as_os_str() != "-" {
        return Ok((file.to_path_buf(), None));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix("dsk-stdin-")
        .tempfile()
        .map_err(|e| Error::io(std::env::temp_dir(), "create a temporary file for standard input", e))?;
    std::io::copy(&mut std::io::stdin().lock(), tmp.as_file_mut()).map_err(|e| Error::io("<stdin>", "read", e))?;
    Ok((tmp.path().to_path_buf(), Some(tmp)))
}

/// Resolve KIND and its options into (common options, source, shape, dtype).
fn resolve<'k>(
    kind: &'k Kind,
    spools: &mut Vec<tempfile::NamedTempFile>,
) -> Result<(&'k Common, Source, Vec<u64>, DType)> {
    Ok(match kind {
        Kind::Ones(c) | Kind::Zeros(c) => {
            let dtype = parse_dtype(&c.dtype)?.unwrap_or(DType::Float64);
            let v = if matches!(kind, Kind::Ones(_)) { 1 } else { 0 };
            let value = if dtype.is_bool() { Scalar::Bool(v == 1) } else { Scalar::Int(v) };
            (c, Source::Gen(Generator::Const(value.into())), require_shape(c, "ones/zeros")?, dtype)
        }
        Kind::Full { value, common: c } => {
            let dtype = match parse_dtype(&c.dtype)? {
                Some(d) => d,
                None => {
                    let l = value.trim().to_ascii_lowercase();
                    if l == "true" || l == "false" {
                        DType::Bool
                    } else if is_int_text(value) {
                        DType::Int64
                    } else {
                        DType::Float64
                    }
                }
            };
            let s = Scalar::parse_for(value, dtype).map_err(|m| Error::usage("--value", m))?;
            (c, Source::Gen(Generator::Const(s.into())), require_shape(c, "full")?, dtype)
        }
        Kind::Arange { start, stop, step, common: c } => {
            let ints = is_int_text(start) && is_int_text(stop) && is_int_text(step);
            let dtype = parse_dtype(&c.dtype)?.unwrap_or(if ints { DType::Int64 } else { DType::Float64 });
            let (fs, fe, fst) = (num(start, "--start")?, num(stop, "--stop")?, num(step, "--step")?);
            let (is, ist) = if ints {
                (start.trim().parse().unwrap_or(0), step.trim().parse().unwrap_or(1))
            } else {
                (fs as i64, fst as i64)
            };
            let n = if ints {
                let e: i64 = stop.trim().parse().unwrap_or(0);
                arange_len_int(is, e, ist).map_err(|m| Error::usage("--step", m))?
            } else {
                arange_len(fs, fe, fst).map_err(|m| Error::usage("--step", m))?
            };
            if dtype.is_int() && !ints {
                return Err(Error::usage("--dtype", format!("{dtype} needs whole-number --start, --stop and --step")));
            }
            let g = Generator::Arange { start: fs, step: fst, int_start: is, int_step: ist };
            (c, Source::Gen(g), reshape(c, n, "arange", "--stop", dtype.size() as u64)?, dtype)
        }
        Kind::Linspace { start, stop, num, common: c } => {
            let dtype = parse_dtype(&c.dtype)?.unwrap_or(DType::Float64);
            if !start.is_finite() || !stop.is_finite() {
                return Err(Error::usage("--start/--stop", "must be finite numbers"));
            }
            let g = Generator::Linspace { start: *start, stop: *stop, num: *num };
            (c, Source::Gen(g), reshape(c, *num, "linspace", "--num", dtype.size() as u64)?, dtype)
        }
        Kind::Random { dist, low, high, mean, std, seed, common: c } => {
            let dtype = parse_dtype(&c.dtype)?.unwrap_or(DType::Float64);
            let d = match (dist, dtype) {
                (DistArg::Normal, _) => Dist::Normal { mean: *mean, std: *std },
                (DistArg::Uniform, d) if d.is_bool() => Dist::Bits,
                (DistArg::Uniform, d) if d.is_int() => {
                    let lo: i64 = match low {
                        Some(t) => t
                            .trim()
                            .parse()
                            .map_err(|_| Error::usage("--low", format!("{t:?} is not a whole number")))?,
                        None => 0,
                    };
                    let hi: i128 = match high {
                        Some(t) => t
                            .trim()
                            .parse()
                            .map_err(|_| Error::usage("--high", format!("{t:?} is not a whole number")))?,
                        None => {
                            return Err(Error::usage(
                                "--high",
                                format!("is required for random {d} values (exclusive upper bound)"),
                            ))
                        }
                    };
                    Dist::Integers { low: lo, high: hi }
                }
                (DistArg::Uniform, _) => {
                    let lo = low.as_deref().map(|t| num(t, "--low")).transpose()?.unwrap_or(0.0);
                    let hi = high.as_deref().map(|t| num(t, "--high")).transpose()?.unwrap_or(1.0);
                    Dist::Uniform { low: lo, high: hi }
                }
            };
            d.check(dtype).map_err(|m| Error::usage("--dist", m))?;
            (c, Source::Gen(Generator::Random { dist: d, seed: *seed }), require_shape(c, "random")?, dtype)
        }
        Kind::FromNpy { file, common: c } => {
            let (file, spool) = spooled(file, spools)?;
            let src = RawSource::open_npy(&file)?;
            if let Some(d) = parse_dtype(&c.dtype)? {
                if d != src.dtype {
                    return Err(Error::usage(
                        "--dtype",
                        format!(
                            "{} holds {}, not {d}; from-npy keeps the file's dtype — drop --dtype",
                            file.display(),
                            src.dtype
                        ),
                    ));
                }
            }
            if let Some(s) = &c.shape {
                if parse_shape_arg(s, "--shape")? != src.shape {
                    return Err(Error::usage(
                        "--shape",
                        format!(
                            "{} has shape {:?}; from-npy keeps the file's shape — drop --shape",
                            file.display(),
                            src.shape
                        ),
                    ));
                }
            }
            let (shape, dtype) = (src.shape.clone(), src.dtype);
            let f = FileSource { path: file, dtype, shape: shape.clone(), big_endian: src.big_endian, npy: true };
            spools.extend(spool);
            (c, Source::Raw(f), shape, dtype)
        }
        Kind::FromRaw { file, byte_order, common: c } => {
            let dtype = parse_dtype(&c.dtype)?.ok_or_else(|| {
                Error::usage("--dtype", "is required for from-raw (the file does not say), e.g. --dtype float64")
            })?;
            let shape = require_shape(c, "from-raw")?;
            let (file, spool) = spooled(file, spools)?;
            let big = *byte_order == ByteOrder::Big;
            let src = RawSource::open_raw(&file, dtype, shape.clone(), big)?;
            let f = FileSource { path: file, dtype, shape: shape.clone(), big_endian: src.big_endian, npy: false };
            spools.extend(spool);
            (c, Source::Raw(f), shape, dtype)
        }
    })
}

pub fn run(args: &CreateArgs, run: &RunArgs) -> Result<()> {
    if let Kind::FromRaw { common, .. } | Kind::FromNpy { common, .. } = &args.kind {
        if common.dtype.as_deref().is_some_and(crate::dtype::is_half_name) {
            return Err(Error::usage(
                "--dtype",
                "float16 is not written from files yet — drop --dtype, then cast: dsk transform IN.zarr OUT.zarr --expr x --dtype float16 (float16 .npy/raw files are not read yet either)",
            ));
        }
    }
    let mut spools = vec![];
    let (c, source, shape, dtype) = resolve(&args.kind, &mut spools)?;
    let codec = CodecSpec::parse(&c.codec)?;
    let (chunks, shard, auto) = super::chunking(c.chunks.as_deref(), c.shard.as_deref(), &shape, dtype, None)?;
    let dimension_names =
        c.dimension_names.as_deref().map(|t| super::compute::dimension_names_arg(t, shape.len())).transpose()?;
    let zarr_format = store::group::format_for(&c.out);
    let half = c.dtype.as_deref().is_some_and(crate::dtype::is_half_name);
    if half && matches!(args.kind, Kind::Random { .. }) {
        // float32 values just below the upper bound round up to it in float16: [low, high) would
        // not hold
        return Err(Error::usage(
            "--dtype",
            "random float16 is not generated yet — create float32 and cast it: dsk transform R.zarr R16.zarr --expr x --dtype float16 (values may then round up to --high)",
        ));
    }
    // a constant's value rounded once, from the number given, as NumPy's full(…, dtype=float16)
    let source = match (source, &args.kind) {
        (Source::Gen(Generator::Const(crate::kernels::generate::ScalarRepr::Float(v))), kind) if half => {
            // from the text of --value, not from its float32 rounding
            let exact = match kind {
                Kind::Full { value, .. } => value.trim().parse::<f64>().unwrap_or(v),
                _ => v,
            };
            Source::Gen(Generator::Const(crate::kernels::generate::ScalarRepr::Float(
                crate::dtype::f16_nearest(exact).to_f64(),
            )))
        }
        (s, _) => s,
    };
    let constant = match &source {
        Source::Gen(g) => g.constant(),
        Source::Raw(_) => None,
    };
    let fill = constant.unwrap_or_else(|| super::compute::default_fill(dtype, zarr_format));
    let mut spec = CreateSpec {
        shape: shape.clone(),
        chunks,
        shard,
        dtype,
        fill,
        codec: codec.clone(),
        dimension_names,
        zarr_format,
        attributes: Default::default(),
        half,
        complex: false,
        fill_im: 0.0,
    };
    super::compute::fit_destination(&mut spec, &c.out)?;
    let opts = plan_options(run)?;
    let plan_for = |spec: &CreateSpec| -> Result<crate::plan::physical::PhysicalPlan> {
        match source.clone() {
            Source::Gen(g) => {
                let storage = spec.shard.clone().unwrap_or_else(|| spec.chunks.clone());
                let label = args.kind.name().to_string();
                let gen_plan = Plan {
                    text: format!("{label}{}", crate::grid::tuple(&shape)),
                    inputs: vec![],
                    nodes: vec![Node {
                        kind: NodeKind::Gen { gen: g },
                        shape: shape.clone(),
                        dtype,
                        chunks: storage,
                        weak: None,
                        label,
                    }],
                    root: 0,
                    complex: false,
                    temps: vec![],
                    others: vec![],
                };
                planner::generate(gen_plan, &c.out, spec.clone(), c.write_empty_chunks, &opts)
            }
            Source::Raw(f) => planner::import(f, &c.out, spec.clone(), &opts),
        }
    };
    let pplan = plan_for(&spec).map_err(|e| with_chunk_hint(e, &spec, &plan_for))?;
    let Some(r) = execute(&pplan, run, c.overwrite)? else { return Ok(()) };
    drop(spools);

    let grid = pplan.arrays[0].grid();
    let item = dtype.size() as u64;
    let logical = shape.iter().product::<u64>() * item;
    let secs = r.elapsed.as_secs_f64();
    let stored = store::meta::stored_bytes(&c.out).ok().flatten().unwrap_or(0);
    let how = if auto { " (chosen automatically; set --chunks to choose)" } else { "" };
    let unit = if spec.shard.is_some() { "shard" } else { "chunk" };
    let n = grid.nchunks();
    let work = if r.tasks == 0 {
        format!("constant {}: no chunk written, readers get the fill value", fill_text(fill))
    } else {
        format!(
            "{} stored, in {:.2} s ({}/s), {}",
            human(stored),
            secs,
            human((logical as f64 / secs.max(1e-9)) as u64),
            describe_memory(&r)
        )
    };
    let text = format!(
        "dsk: created {} — {} {dtype}, {unit}s {}{how}, {n} {unit}{}, {} logical, {work}",
        c.out.display(),
        crate::grid::tuple(&shape),
        crate::grid::tuple(&grid.chunks),
        if n == 1 { "" } else { "s" },
        human(logical),
    );
    report::summary(
        run.progress,
        run.quiet,
        &text,
        json!({"command": "create", "path": c.out.display().to_string(), "shape": shape, "chunks": spec.chunks, "shards": spec.shard,
               "dtype": dtype.name(), "nchunks": grid.nchunks(), "nbytes": logical, "nbytes_stored": stored,
               "stages": r.stages, "tasks": r.tasks, "elapsed_s": secs, "peak_rss": r.peak_rss,
               "workers_peak_rss": r.children_peak, "workers_peak_rss_sum": r.children_peak_sum,
               "workers": r.children, "scheduler": run.scheduler.name(),
               "chunks_auto": auto,
               "storage": (r.storage != Default::default()).then_some(r.storage),
               "fingerprint": pplan.fingerprint()}),
    );
    Ok(())
}

/// A budget refusal for `create` names the chunk or shard shape that fits, checked by planning it
/// (without shards; with shards, the shard shape scaled to the bound).
fn with_chunk_hint(
    e: Error,
    spec: &CreateSpec,
    plan_for: &dyn Fn(&CreateSpec) -> Result<crate::plan::physical::PhysicalPlan>,
) -> Error {
    match e {
        Error::Budget { what, needed, budget, .. } => {
            let unit = if spec.shard.is_some() { "shard" } else { "chunk" };
            let chunks = spec.shard.clone().unwrap_or_else(|| spec.chunks.clone());
            let mut k = 0.9 * budget as f64 / needed.max(1) as f64;
            let mut fit = crate::grid::scaled_chunks(&chunks, k);
            if spec.shard.is_none() {
                for _ in 0..20 {
                    let trial = CreateSpec { chunks: fit.clone(), ..spec.clone() };
                    match plan_for(&trial) {
                        Err(Error::Budget { .. }) => {
                            k *= 0.8;
                            fit = crate::grid::scaled_chunks(&chunks, k);
                        }
                        _ => break,
                    }
                }
            }
            let hint = format!(
                "use smaller {unit}s, e.g. --{} {} (at most {} per {unit} for this --memory), or raise --memory",
                if unit == "shard" { "shard" } else { "chunks" },
                crate::grid::chunks_arg(&fit),
                human(budget / 3)
            );
            Error::Budget { what, needed, budget, hint }
        }
        e => e,
    }
}

fn fill_text(s: Scalar) -> String {
    match s {
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Uint(u) => u.to_string(),
        Scalar::Float(f) => {
            let mut t = String::new();
            f.write_text(&mut t);
            t
        }
    }
}
