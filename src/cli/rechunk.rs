//! `dsk rechunk IN OUT --chunks C [--shard S] [--codec C]`: the same values in another chunk grid,
//! bit for bit, under the memory bound (rechunker's algorithm, in dsk's terms):
//!
//! - **one pass** when it fits: target chunks that need the same source chunks form a *band* (for
//!   (1000, 1000) → (50000, 10): the 50 source chunks of a column of 1000 columns feed 100 target
//!   chunks). A task decodes its band's source chunks once, in parallel, and writes its target
//!   chunks in parallel. It fits when the band plus `--workers` target chunks in flight fit
//!   `--memory`.
//! - **two passes** otherwise: the array is first copied to an uncompressed intermediate in the
//!   work dir whose chunks divide both grids (per axis, gcd(source, target)), one source chunk per
//!   task; then each target chunk is assembled from whole intermediate chunks. Peak memory is then
//!   one source chunk (pass 1) or one target chunk (pass 2) per worker, and the intermediate takes
//!   the array's uncompressed size on disk.
//!
//! Without `--chunks`, `--codec` and `--shard` re-encode the array with its own chunks.

use std::path::PathBuf;

use clap::Args;

use super::compute::{build_plan, compute_to_zarr, OutputOpts};
use super::RunArgs;
use crate::error::{human, Error, Result};
use crate::exec::workdir::WorkDir;
use crate::grid::{tuple, Grid};
use crate::plan::lower::{self, OutputLayout};
use crate::store::CodecSpec;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk rechunk big.zarr tall.zarr --chunks 50000,10 --memory 512MiB
  dsk rechunk big.zarr big_sharded.zarr --chunks 1000,1000 --shard 10000,4000
  dsk rechunk big.zarr big_blosc.zarr --codec blosc:zstd:5   # re-encode, same chunks
  dsk rechunk big.zarr tall.zarr --chunks 50000,10 --explain")]
pub struct RechunkArgs {
    /// The input array.
    pub input: PathBuf,
    /// The output array.
    pub out: PathBuf,
    /// Target chunks (the inner chunks when --shard is given); default: the input's.
    #[arg(long)]
    pub chunks: Option<String>,
    /// Target shard shape (sharding codec).
    #[arg(long)]
    pub shard: Option<String>,
    /// Target compression (default: the input's).
    #[arg(long)]
    pub codec: Option<String>,
    /// Replace OUT if it is an existing Zarr array.
    #[arg(long)]
    pub overwrite: bool,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn out_opts<'b>(
    out: &'b std::path::Path,
    chunks: &'b str,
    shard: Option<&'b str>,
    codec: Option<&'b str>,
    overwrite: bool,
    names: Option<Vec<String>>,
) -> OutputOpts<'b> {
    OutputOpts {
        out,
        dtype: None,
        chunks: Some(chunks),
        shard,
        codec,
        overwrite,
        default_chunks: None,
        default_codec: None,
        dimension_names: names,
        band_groups: true,
    }
}

/// Intermediate chunks that divide both grids: per axis gcd(source, target) where the target is
/// smaller; where it is larger, a multiple of the source chunk that divides the target, grown (by
/// doubling) while a pass-1 task — the source chunks one intermediate chunk spans — fits `budget`.
/// Larger intermediate chunks mean fewer files.
fn intermediate_chunks(source: &[u64], target: &[u64], shape: &[u64], item: u64, budget: u64) -> Vec<u64> {
    let nd = shape.len();
    let s: Vec<u64> = (0..nd).map(|a| source[a].min(shape[a].max(1))).collect();
    let t: Vec<u64> = (0..nd).map(|a| target[a].min(shape[a].max(1))).collect();
    let mut inter: Vec<u64> = (0..nd).map(|a| if t[a] > s[a] { s[a] } else { gcd(s[a], t[a]).max(1) }).collect();
    // bytes of the source chunks one intermediate chunk needs
    let need = |i: &[u64]| -> u64 { (0..nd).map(|a| i[a].div_ceil(s[a]) * s[a]).product::<u64>() * item };
    loop {
        let mut grown = false;
        for a in 0..nd {
            if t[a] <= s[a] {
                continue;
            }
            let next = inter[a] * 2;
            let fits_target = next <= t[a] && (t[a] % next == 0 || next >= shape[a]);
            let mut trial = inter.clone();
            trial[a] = next;
            if fits_target && need(&trial) <= budget {
                inter = trial;
                grown = true;
            }
        }
        if !grown {
            return inter;
        }
    }
}

pub fn run(a: &RechunkArgs, run: &RunArgs) -> Result<()> {
    if a.chunks.is_none() && a.shard.is_none() && a.codec.is_none() {
        return Err(Error::usage("--chunks", "nothing to change: give --chunks, --shard or --codec"));
    }
    let opts = run.options()?;
    let named = vec![("x".to_string(), a.input.clone())];
    let (plan, metas) = build_plan("x", "IN", &named)?;
    let m = &metas[0];
    let source: Vec<u64> = m.storage_chunks().to_vec();
    let codec = match &a.codec {
        Some(t) => Some(CodecSpec::parse(t)?),
        None => CodecSpec::from_codecs(&m.codecs),
    };
    let (chunks, shard, _) = super::chunking(
        a.chunks.as_deref(),
        a.shard.as_deref(),
        &m.shape,
        m.dtype,
        Some((m.chunks.clone(), if a.chunks.is_none() { m.shards.clone() } else { None })),
    )?;
    let target: Vec<u64> = shard.clone().unwrap_or_else(|| chunks.clone());
    let names = m.dimension_names.as_ref().and_then(|n| n.iter().cloned().collect::<Option<Vec<String>>>());
    let chunks_text = chunks.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    let shard_text = shard.as_ref().map(|s| s.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","));
    let codec_text = codec.as_ref().map(|c| c.to_string());

    // one pass: does every band fit, so that each source chunk is decoded once?
    let item = m.dtype.size() as u64;
    let layout = OutputLayout {
        grid: Grid::new(m.shape.clone(), target.clone()),
        itemsize: item,
        codec_scratch: codec.as_ref().map(|c| c.scratch_bytes(target.iter().product::<u64>() * item)).unwrap_or(0),
    };
    let one_pass = lower::tasks(&plan, &layout, usize::MAX, Some(opts.memory), opts.workers);
    let single = one_pass.chunk_reads <= one_pass.distinct_chunks && one_pass.task_bytes <= opts.memory;
    let nbytes = m.shape.iter().product::<u64>() * item;
    if single {
        if run.explain {
            crate::write_stdout(
                format!(
                    "rechunk {} → {}: one pass — each of {} tasks decodes a band of source chunks once ({} at most) and writes its target chunks\n",
                    tuple(&source),
                    tuple(&target),
                    one_pass.groups.len(),
                    human(one_pass.task_bytes),
                )
                .as_bytes(),
            )?;
        }
        return compute_to_zarr(
            plan,
            &out_opts(&a.out, &chunks_text, shard_text.as_deref(), codec_text.as_deref(), a.overwrite, names.clone()),
            run,
            "rechunk",
        );
    }

    // two passes through an intermediate whose chunks divide both grids
    let inter = intermediate_chunks(&source, &target, &m.shape, item, opts.memory / (2 * opts.workers.max(1) as u64));
    let inter_text = inter.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    if run.explain {
        crate::write_stdout(
            format!(
                "rechunk {} → {}: two passes — within --memory {} one pass would decode source chunks {:.1}× (a whole band needs {})\n  intermediate chunks {} (dividing both grids), uncompressed in the work dir: {} on disk\n",
                tuple(&source),
                tuple(&target),
                human(opts.memory),
                one_pass.chunk_reads as f64 / one_pass.distinct_chunks.max(1) as f64,
                human(lower::tasks(&plan, &layout, usize::MAX, None, opts.workers).task_bytes),
                tuple(&inter),
                human(nbytes),
            )
            .as_bytes(),
        )?;
    }
    let work = WorkDir::create(run.work_dir.as_deref())?;
    if !run.explain {
        work.check_free(nbytes)?;
    }
    let tmp = work.path().join("intermediate.zarr");
    let mut quiet = run.clone();
    quiet.quiet = true;
    let pass1 = if run.explain { run.clone() } else { quiet };
    compute_to_zarr(plan, &out_opts(&tmp, &inter_text, None, Some("none"), false, None), &pass1, "rechunk-1")?;
    if run.explain {
        // the second pass reads an intermediate that does not exist yet: describe it
        let g = Grid::new(m.shape.clone(), target.clone());
        return crate::write_stdout(
            format!(
                "stage 2 rechunk-2 → {}: {} tasks, each assembling a target chunk {} from {} intermediate chunks\n",
                a.out.display(),
                g.nchunks(),
                tuple(&target),
                target.iter().zip(&inter).map(|(t, i)| t.div_ceil(*i)).product::<u64>()
            )
            .as_bytes(),
        );
    }
    let named2 = vec![("x".to_string(), tmp.clone())];
    let (plan2, _) = build_plan("x", "IN", &named2)?;
    let mut plan2 = plan2;
    plan2.text = format!("rechunk of {}", a.input.display());
    compute_to_zarr(
        plan2,
        &out_opts(&a.out, &chunks_text, shard_text.as_deref(), codec_text.as_deref(), a.overwrite, names.clone()),
        run,
        "rechunk-2",
    )?;
    drop(work);
    Ok(())
}
