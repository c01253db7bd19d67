//! `--codec auto` (the default for arrays dsk writes): each such array's codec is chosen when the
//! run starts, from samples of the values it will hold.
//!
//! Up to [`SAMPLES`] chunks spread over the array (the leading rows of each, at most
//! [`SAMPLE_BYTES`]) are computed as the run will compute them: from the inputs, generators or the
//! imported file. Chunks that hold only the fill value are passed over: they are never written.
//! Each candidate codec compresses the samples, and the first candidate, in order of decoding speed
//! on float data (docs/benchmarks.md), whose compressed size is within the margin of the smallest
//! is chosen: at most [`MARGIN_PERCENT`]% larger, plus [`SLACK_PERMILLE`]‰ of the raw size (so that
//! among highly compressible arrays — labels, masks — the choice is not made on bytes nobody
//! misses). The choice depends only on the sizes, never on timings, so the same data always gets
//! the same codec.
//!
//! Values that depend on the result of an earlier stage (a reduction, a scan, the intermediate of
//! a two-pass rechunk) cannot be sampled before the run; they, and arrays whose samples all hold the
//! fill value, get [`CodecSpec::default`].

use std::borrow::Cow;

use crate::dtype::Elem;
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::plan::physical::{ArrayDecl, PhysicalPlan, StageOp};
use crate::store::{CodecSpec, Shuffle, ZArray};
use crate::with_dtype;

/// Chunks sampled per array (the first ones that are not all fill value, of up to
/// 3 × this many spread over the array).
pub const SAMPLES: usize = 3;
/// Bytes sampled per chunk: its leading rows, up to this many.
pub const SAMPLE_BYTES: u64 = 256 << 10;
/// A candidate is chosen when its compressed size is at most this much larger than the smallest…
pub const MARGIN_PERCENT: u64 = 5;
/// …plus this much of the raw size.
pub const SLACK_PERMILLE: u64 = 5;

/// The candidates, fastest-decoding first (on float data: lz4 with byte shuffling decodes at 3.6–6
/// GB/s per core here, with bit shuffling 2.4–2.7, zstd level 1 1.3; see docs/benchmarks.md).
pub fn candidates() -> Vec<CodecSpec> {
    vec![
        CodecSpec::Blosc { cname: "lz4".into(), clevel: 5, shuffle: Shuffle::Byte },
        CodecSpec::Blosc { cname: "lz4".into(), clevel: 5, shuffle: Shuffle::Bit },
        CodecSpec::Zstd { level: 1 },
        CodecSpec::Blosc { cname: "zstd".into(), clevel: 1, shuffle: Shuffle::Byte },
    ]
}

/// Whether any array of the plan is still to have its codec chosen.
pub fn pending(plan: &PhysicalPlan) -> bool {
    plan.arrays.iter().any(|a| a.spec.codec == CodecSpec::Auto)
}

/// The plan with every `auto` codec chosen.
pub fn resolve(plan: &PhysicalPlan) -> Result<PhysicalPlan> {
    let mut out = plan.clone();
    let inputs: Option<Vec<ZArray>> = if plan.arrays.iter().any(|a| a.spec.codec == CodecSpec::Auto) {
        plan.inputs.iter().map(|i| ZArray::open(&i.path)).collect::<Result<_>>().ok()
    } else {
        None
    };
    for (id, decl) in out.arrays.iter_mut().enumerate() {
        if decl.spec.codec != CodecSpec::Auto {
            continue;
        }
        let samples = samples(plan, id, decl, inputs.as_deref())?;
        decl.spec.codec = choose(&samples, decl.spec.dtype)?;
    }
    Ok(out)
}

/// The codec for `samples` (raw little-endian chunk bytes) of elements of `dtype`.
pub fn choose(samples: &[Vec<u8>], dtype: crate::dtype::DType) -> Result<CodecSpec> {
    if samples.is_empty() {
        return Ok(CodecSpec::default());
    }
    let raw: u64 = samples.iter().map(|s| s.len() as u64).sum();
    let mut sizes = vec![];
    for c in candidates() {
        let mut size = 0u64;
        for s in samples {
            let mut bytes: Cow<[u8]> = Cow::Borrowed(s);
            for codec in c.build(dtype)? {
                bytes = Cow::Owned(
                    codec
                        .encode(bytes, &crate::store::codec_options(1))
                        .map_err(|e| Error::Internal(format!("sampling the codec {c}: {e}")))?
                        .into_owned(),
                );
            }
            size += bytes.len() as u64;
        }
        sizes.push((c, size));
    }
    let best = sizes.iter().map(|(_, s)| *s).min().unwrap_or(0);
    let limit = best + best * MARGIN_PERCENT / 100 + raw * SLACK_PERMILLE / 1000;
    Ok(sizes.into_iter().find(|(_, s)| *s <= limit).map(|(c, _)| c).unwrap_or_default())
}

/// Raw bytes of up to [`SAMPLES`] chunks of array `id` that do not hold only the fill value, as
/// the run will compute them; none when its values cannot be known before the run.
fn samples(plan: &PhysicalPlan, id: usize, decl: &ArrayDecl, inputs: Option<&[ZArray]>) -> Result<Vec<Vec<u8>>> {
    let spec = &decl.spec;
    if spec.half || spec.complex || spec.shape.contains(&0) {
        return Ok(vec![]);
    }
    let writer = plan.stages.iter().find_map(|st| match &st.op {
        StageOp::Compute { expr, out, .. } if *out == id && expr.temps.is_empty() => Some(Source::Expr(expr)),
        StageOp::Import { file, out } if *out == id => Some(Source::File(file)),
        _ => None,
    });
    let Some(writer) = writer else {
        return Ok(vec![]);
    };
    let grid = Grid::new(spec.shape.clone(), spec.chunks.clone());
    let n = grid.nchunks();
    let tries = (3 * SAMPLES as u64).min(n);
    let item = spec.dtype.size() as u64;
    let mut out = vec![];
    let mut seen = std::collections::HashSet::new();
    for k in 0..tries {
        let lin = if tries > 1 { k * (n - 1) / (tries - 1) } else { 0 };
        if !seen.insert(lin) {
            continue;
        }
        let mut region = grid.chunk_region(&grid.chunk_index(lin));
        if region.ndim() > 0 {
            let row = region.len() / region.shape[0].max(1) * item;
            region.shape[0] = region.shape[0].min((SAMPLE_BYTES / row.max(1)).max(1));
        }
        let bytes = with_dtype!(spec.dtype, T => {
            let v: Vec<T> = match &writer {
                Source::Expr(expr) => {
                    let Some(inputs) = inputs else { return Ok(vec![]) };
                    let mut ev = super::evaluate::Evaluator::new(expr, inputs, &[], 1);
                    super::evaluate::into_elems::<T>(ev.root_region(&region)?)?
                }
                Source::File(f) => {
                    let src = if f.npy {
                        crate::store::npy::RawSource::open_npy(&f.path)?
                    } else {
                        crate::store::npy::RawSource::open_raw(&f.path, f.dtype, f.shape.clone(), f.big_endian)?
                    };
                    let mut v = vec![T::default(); region.len() as usize];
                    src.read_region::<T>(&region, &mut v)?;
                    v
                }
            };
            let fill = T::from_scalar(spec.fill);
            let mut fb = vec![];
            T::encode_le(&[fill], &mut fb);
            let mut b = vec![];
            T::encode_le(&v, &mut b);
            if !decl.write_empty_chunks && !fb.is_empty() && b.chunks_exact(fb.len()).all(|e| e == fb.as_slice()) {
                None
            } else {
                Some(b)
            }
        });
        if let Some(b) = bytes {
            out.push(b);
            if out.len() == SAMPLES {
                break;
            }
        }
    }
    Ok(out)
}

enum Source<'a> {
    Expr(&'a crate::plan::Plan),
    File(&'a crate::plan::physical::FileSource),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn le<T: Elem>(v: &[T]) -> Vec<u8> {
        let mut b = vec![];
        T::encode_le(v, &mut b);
        b
    }

    #[test]
    fn noise_gets_lz4_and_labels_zstd() {
        // incompressible bytes: every candidate is within the margin, so the fastest is chosen
        let mut x: u64 = 7;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x
        };
        let noise: Vec<u64> = (0..100_000).map(|_| next() ^ (next() >> 29)).collect();
        assert_eq!(choose(&[le(&noise)], DType::Uint64).unwrap().to_string(), "blosc:lz4:5");
        // uniform floats in [1, 2): 12 of their 64 bits are the same, which bit shuffling finds
        let uniform: Vec<f64> = (0..100_000).map(|_| f64::from_bits((next() >> 12) | 0x3ff0_0000_0000_0000)).collect();
        assert_eq!(choose(&[le(&uniform)], DType::Float64).unwrap().to_string(), "blosc:lz4:5:bitshuffle");
        // long runs of a few integer labels: lz4 is several times larger than zstd, not chosen
        let labels: Vec<i32> = (0..1_000_000)
            .map(|k| {
                let (i, j) = ((k / 1000) as f64, (k % 1000) as f64);
                (((i / 97.0).sin() + (j / 61.0).cos()) * 3.0).floor() as i32 + 6
            })
            .collect();
        let c = choose(&[le(&labels)], DType::Int32).unwrap();
        assert!(
            matches!(&c, CodecSpec::Zstd { .. }) || matches!(&c, CodecSpec::Blosc { cname, .. } if cname == "zstd"),
            "{c}"
        );
        // nothing to sample: the default
        assert_eq!(choose(&[], DType::Float64).unwrap(), CodecSpec::default());
    }

    #[test]
    fn the_choice_is_one_of_the_candidates_and_repeatable() {
        let mut x: u64 = 1;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        let a = choose(std::slice::from_ref(&noise), DType::Uint8).unwrap();
        assert_eq!(a, choose(&[noise], DType::Uint8).unwrap());
        assert!(candidates().contains(&a));
    }
}
