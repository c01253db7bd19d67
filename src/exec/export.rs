//! Streaming an array (or a selection of it) out of Zarr in C order, block by block, in bounded
//! memory, as .npy, CSV or raw bytes: the export stage of a physical plan. A reader thread decodes
//! the next block while the current one is written.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use super::{Event, EventSink, RunOptions};
use crate::dtype::{DType, Elem};
use crate::error::{Error, Result};
use crate::expr::slice::AxisSel;
use crate::grid::Region;
use crate::store::npy::header_bytes;
use crate::store::output::{Kind as OutKind, Staged};
use crate::store::{FileFormat as Format, ZArray};
use crate::with_dtype;

/// One block of the output: in "selection space" (one axis per input axis, dropped axes of length
/// 1), selected elements `k0[a]..k0[a] + len[a]`.
#[derive(Clone, Debug)]
struct Block {
    k0: Vec<u64>,
    len: Vec<u64>,
}

/// How blocks are cut: along axis `k`, runs of at most `b` selected indices (cut at the input's
/// chunk boundaries when stepping by 1), one index at a time along the axes before `k`.
fn cut(sel: &[AxisSel], chunks: &[u64], item: u64, budget: u64) -> (usize, u64) {
    let nd = sel.len();
    // bytes of the bounding box of one index along axis k with everything after it
    let rest = |k: usize| -> u64 {
        sel[k + 1..].iter().map(|s| (s.len - 1) * s.step.unsigned_abs() + 1).product::<u64>() * item
    };
    let k = (0..nd).find(|&k| rest(k) <= budget).unwrap_or(nd - 1);
    let step = sel[k].step.unsigned_abs();
    let per = rest(k).max(1);
    let mut b = ((budget / per).saturating_sub(1) / step + 1).clamp(1, sel[k].len);
    if step == 1 && b >= chunks[k] {
        b = b / chunks[k] * chunks[k];
    }
    (k, b)
}

/// The lengths of the runs along axis `k` (see [`cut`]), in order.
fn runs(sel: &AxisSel, chunk: u64, b: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let step = sel.step.unsigned_abs();
    let mut kk = 0;
    std::iter::from_fn(move || {
        if kk >= sel.len {
            return None;
        }
        let mut n = b.min(sel.len - kk);
        if step == 1 && b >= chunk {
            let pos = sel.at(kk);
            let to_boundary = (pos / chunk + 1) * chunk - pos;
            if n > to_boundary {
                n = (to_boundary + (n - to_boundary) / chunk * chunk).min(sel.len - kk);
            }
        }
        let r = (kk, n);
        kk += n;
        Some(r)
    })
}

/// How many blocks [`plan_blocks`] cuts (what `--explain` shows), without listing them.
pub fn count_blocks(sel: &[AxisSel], chunks: &[u64], item: u64, budget: u64) -> u64 {
    if sel.iter().any(|s| s.len == 0) {
        return 0;
    }
    if sel.is_empty() {
        return 1;
    }
    let (k, b) = cut(sel, chunks, item, budget.max(item));
    let outer: u64 = sel[..k].iter().map(|s| s.len).product();
    outer * runs(&sel[k], chunks[k], b).count() as u64
}

/// Split the selection into blocks of at most `budget` bytes of input bounding box each, in C order.
fn plan_blocks(sel: &[AxisSel], chunks: &[u64], item: u64, budget: u64) -> Vec<Block> {
    let nd = sel.len();
    if sel.iter().any(|s| s.len == 0) {
        return vec![];
    }
    if nd == 0 {
        return vec![Block { k0: vec![], len: vec![] }];
    }
    let (k, b) = cut(sel, chunks, item, budget);
    let outer: Vec<u64> = sel[..k].iter().map(|s| s.len).collect();
    let nouter: u64 = outer.iter().product();
    let mut blocks = vec![];
    for o in 0..nouter {
        let oi = crate::grid::unravel(o, &outer);
        for (kk, n) in runs(&sel[k], chunks[k], b) {
            let mut k0 = oi.clone();
            k0.push(kk);
            k0.extend(std::iter::repeat_n(0, nd - k - 1));
            let mut len = vec![1; k];
            len.push(n);
            len.extend(sel[k + 1..].iter().map(|s| s.len));
            blocks.push(Block { k0, len });
        }
    }
    blocks
}

/// Read `bbox` one chunk at a time (each decoded once, `threads` codec threads), so that no more
/// than one chunk is held decoded besides the result, however many chunks the box crosses.
fn read_by_chunk<T: Elem>(arr: &ZArray, bbox: &Region, threads: usize) -> Result<Vec<T>> {
    let nd = bbox.ndim();
    let grid = arr.read_grid();
    if nd == 0 || bbox.is_empty() {
        return arr.read_region(bbox, threads);
    }
    let first = grid.chunk_index_of(&bbox.start);
    let last_point: Vec<u64> = (0..nd).map(|a| bbox.end(a) - 1).collect();
    let last = grid.chunk_index_of(&last_point);
    if first == last {
        return arr.read_region(bbox, threads);
    }
    let span: Vec<u64> = (0..nd).map(|a| last[a] - first[a] + 1).collect();
    let n: u64 = span.iter().product();
    let total = crate::grid::checked_nbytes(&bbox.shape, 1)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| Error::Internal(format!("an export block of shape {:?} is too large", bbox.shape)))?;
    // every element is overwritten below: the chunks tile the box
    let mut out: Vec<T> = vec![T::from_scalar(arr.fill()); total];
    let bstrides = crate::grid::strides(&bbox.shape);
    for k in 0..n {
        let off = crate::grid::unravel(k, &span);
        let idx: Vec<u64> = (0..nd).map(|a| first[a] + off[a]).collect();
        let c = grid.chunk_region(&idx);
        let (mut s, mut sh) = (vec![0; nd], vec![0; nd]);
        for a in 0..nd {
            s[a] = c.start[a].max(bbox.start[a]);
            sh[a] = c.end(a).min(bbox.end(a)) - s[a];
        }
        let part = Region::new(s, sh);
        let vals: Vec<T> = arr.read_region(&part, threads)?;
        let row = part.shape[nd - 1] as usize;
        crate::grid::for_each_row(&part, |pos, at| {
            let dst: u64 = (0..nd).map(|a| (pos[a] - bbox.start[a]) * bstrides[a]).sum();
            out[dst as usize..dst as usize + row].copy_from_slice(&vals[at..at + row]);
        });
    }
    Ok(out)
}

/// Read one block: its input bounding box, then the selected elements in C order.
fn read_block<T: Elem>(arr: &ZArray, sel: &[AxisSel], blk: &Block, threads: usize) -> Result<Vec<T>> {
    let nd = sel.len();
    let (mut start, mut shape) = (vec![0; nd], vec![0; nd]);
    for a in 0..nd {
        let (lo, hi) = sel[a].bbox(blk.k0[a], blk.k0[a] + blk.len[a]);
        start[a] = lo;
        shape[a] = hi - lo;
    }
    let bbox = Region::new(start, shape);
    let data: Vec<T> = read_by_chunk(arr, &bbox, threads)?;
    if sel.iter().all(|s| s.step == 1) {
        return Ok(data); // the bounding box is the selection
    }
    let strides = crate::grid::strides(&bbox.shape);
    let n: u64 = blk.len.iter().product();
    let mut out = Vec::with_capacity(n as usize);
    let sub = Region::new(vec![0; nd], blk.len.clone());
    let row = blk.len.last().copied().unwrap_or(1);
    crate::grid::for_each_row(&sub, |idx, _| {
        let mut base = 0i64;
        for a in 0..nd - 1 {
            let pos = sel[a].at(blk.k0[a] + idx[a]) - bbox.start[a];
            base += (pos * strides[a]) as i64;
        }
        let l = nd - 1;
        let first = (sel[l].at(blk.k0[l]) - bbox.start[l]) as i64;
        let st = sel[l].step;
        for j in 0..row as i64 {
            out.push(data[(base + first + j * st) as usize]);
        }
    });
    if nd == 0 {
        out = data;
    }
    Ok(out)
}

/// Formats elements as CSV, carrying the column position across blocks.
struct Csv {
    row: u64,
    col: u64,
    text: String,
}

impl Csv {
    fn push<T: Elem>(&mut self, vals: &[T]) -> &[u8] {
        self.text.clear();
        for v in vals {
            if self.col > 0 {
                self.text.push(',');
            }
            v.write_text(&mut self.text);
            self.col += 1;
            if self.col == self.row {
                self.text.push('\n');
                self.col = 0;
            }
        }
        self.text.as_bytes()
    }
}

/// Formats elements as nested JSON lists, carrying the position across blocks.
struct Json {
    shape: Vec<u64>,
    idx: Vec<u64>,
    written: u64,
    text: String,
}

impl Json {
    fn new(shape: &[u64]) -> Json {
        Json { shape: shape.to_vec(), idx: vec![0; shape.len()], written: 0, text: String::new() }
    }

    /// `{"shape": …, "dtype": …, "value": ` — and for an empty array its whole (empty) value. A
    /// complex array's view is written as is (each element `[re, im]`, as Zarr writes complex
    /// fill values), its shape as the complex array's.
    fn header(&self, dtype: &str, complex: bool) -> String {
        let shown = &self.shape[..self.shape.len() - complex as usize];
        let shape: Vec<String> = shown.iter().map(u64::to_string).collect();
        let mut h = format!("{{\"shape\": [{}], \"dtype\": \"{dtype}\", \"value\": ", shape.join(", "));
        if self.shape.contains(&0) {
            // nested empty lists down to the first empty axis, as NumPy's tolist() gives
            fn empty(shape: &[u64]) -> String {
                match shape.split_first() {
                    Some((0, _)) | None => "[]".into(),
                    Some((&n, rest)) => format!("[{}]", vec![empty(rest); n as usize].join(", ")),
                }
            }
            h.push_str(&empty(&self.shape));
        }
        h
    }

    fn push<T: Elem>(&mut self, vals: &[T]) -> &[u8] {
        self.text.clear();
        let nd = self.shape.len();
        for v in vals {
            if self.written > 0 {
                self.text.push_str(", ");
            }
            let opens = self.idx.iter().rev().take_while(|&&i| i == 0).count();
            for _ in 0..opens {
                self.text.push('[');
            }
            let start = self.text.len();
            v.write_text(&mut self.text);
            let word = match &self.text[start..] {
                "nan" => Some("\"NaN\""),
                "inf" => Some("\"Infinity\""),
                "-inf" => Some("\"-Infinity\""),
                "True" => Some("true"),
                "False" => Some("false"),
                _ => None,
            };
            if let Some(w) = word {
                self.text.truncate(start);
                self.text.push_str(w);
            }
            self.written += 1;
            for k in (0..nd).rev() {
                self.idx[k] += 1;
                if self.idx[k] < self.shape[k] {
                    break;
                }
                self.idx[k] = 0;
                self.text.push(']');
            }
        }
        self.text.as_bytes()
    }
}

/// Write the selection `sel` of `arr` as `format` to `output` (a staged file) or stdout.
/// Progress goes to `sink` as stage `stage`, one task per block.
/// The output buffer of an export under `--memory` of `memory` bytes: 1 MiB, less under small bounds.
pub fn write_buffer(memory: u64) -> usize {
    (memory / 8).clamp(64, 1 << 20) as usize
}

#[allow(clippy::too_many_arguments)]
pub fn stream(
    arr: &ZArray,
    sel: &[AxisSel],
    format: Format,
    output: Option<&Path>,
    overwrite: bool,
    block_bytes: u64,
    opts: &RunOptions,
    sink: &dyn EventSink,
    stage: &str,
) -> Result<u64> {
    let out_shape: Vec<u64> = sel.iter().filter(|s| s.keep).map(|s| s.len).collect();
    if format == Format::Csv && arr.meta().complex {
        return Err(Error::Internal("a complex array to csv".into()));
    }
    if format == Format::Csv && out_shape.len() > 2 {
        return Err(Error::usage(
            "--format",
            format!("csv holds 0-d, 1-D or 2-D data but the selection has shape {out_shape:?} — use npy, or select a 2-D part (export --slice, or index it in the expression)"),
        ));
    }
    if output.is_none() && matches!(format, Format::Npy | Format::Raw) {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            return Err(Error::usage(
                "--format",
                "refusing to write binary data to a terminal — use -o FILE, redirect stdout, or --format csv",
            ));
        }
    }
    let item = arr.dtype().size() as u64;
    let m = arr.meta();
    // a block is decoded (bounding box + gathered copy) while up to two wait to be written
    let blocks = plan_blocks(sel, &m.view(&m.chunks), item, block_bytes.max(item));
    let total: u64 = out_shape.iter().product::<u64>() * item;
    let started = Instant::now();
    sink.event(&Event::StageStart { stage, tasks: blocks.len() as u64, bytes: total });

    let staged = match output {
        Some(p) => Some(Staged::new(p, OutKind::File, overwrite)?),
        None => None,
    };
    let dest: Box<dyn Write> = match &staged {
        Some(s) => Box::new(std::fs::File::create(s.path()).map_err(|e| Error::io(s.path(), "create", e))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let out_name = output.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<stdout>"));
    let mut w = BufWriter::with_capacity(write_buffer(opts.memory), dest);
    let werr = |e: std::io::Error| Error::io(&out_name, "write", e);
    let mut json = Json::new(&out_shape);
    match format {
        Format::Npy => {
            // a complex array's view is its elements' bytes: only the header says complex
            let descr = match (m.complex, arr.dtype()) {
                (true, DType::Float32) => "<c8",
                (true, _) => "<c16",
                (false, d) => d.typestr(),
            };
            w.write_all(&header_bytes(descr, &out_shape[..out_shape.len() - m.complex as usize])).map_err(werr)?
        }
        Format::Json => {
            let name = if m.complex { m.dtype_name() } else { arr.dtype().name() };
            w.write_all(json.header(name, m.complex).as_bytes()).map_err(werr)?
        }
        _ => {}
    }
    let row_len = if out_shape.len() == 2 { out_shape[1] } else { 1 };
    let mut csv = Csv { row: row_len.max(1), col: 0, text: String::new() };

    with_dtype!(arr.dtype(), T => {
        std::thread::scope(|s| -> Result<()> {
            let (tx, rx) = sync_channel::<Result<Vec<T>>>(1);
            let blocks = &blocks;
            let threads = opts.workers;
            s.spawn(move || {
                for (k, b) in blocks.iter().enumerate() {
                    // a block is read while the one before it is written: two slots
                    sink.event(&Event::TaskStart { stage, task: k as u64, lane: k % 2 });
                    let r = read_block::<T>(arr, sel, b, threads);
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            });
            let mut bytes = Vec::new();
            let mut done = 0u64;
            let mut bytes_done = 0u64;
            for r in rx {
                if super::interrupted() {
                    return Err(Error::Interrupted);
                }
                let vals = r?;
                done += 1;
                bytes_done += vals.len() as u64 * item;
                match format {
                    Format::Csv => w.write_all(csv.push(&vals)).map_err(werr)?,
                    Format::Json => w.write_all(json.push(&vals)).map_err(werr)?,
                    _ => {
                        bytes.clear();
                        T::encode_le(&vals, &mut bytes);
                        w.write_all(&bytes).map_err(werr)?;
                    }
                }
                sink.event(&Event::TaskDone {
                    stage,
                    task: done - 1,
                    lane: ((done - 1) % 2) as usize,
                    done,
                    tasks: blocks.len() as u64,
                    bytes_done,
                    bytes: total,
                    elapsed: started.elapsed(),
                });
            }
            Ok(())
        })?;
    });
    if format == Format::Json {
        w.write_all(b"}\n").map_err(werr)?;
    }
    // a signal while the last block was formatted and written: no output (Ctrl-C means stop)
    if super::interrupted() {
        return Err(Error::Interrupted);
    }
    w.flush().map_err(werr)?;
    drop(w);
    if let Some(s) = staged {
        if let Some(w) = s.commit()? {
            eprintln!("dsk: warning: {w}");
        }
    }
    sink.event(&Event::StageEnd { stage, tasks: blocks.len() as u64, bytes: total, elapsed: started.elapsed() });
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_selection_once_and_align_to_chunks() {
        let sel = vec![AxisSel::full(10), AxisSel::full(7)];
        // budget for 3 rows of 7 f64
        let blocks = plan_blocks(&sel, &[2, 7], 8, 3 * 7 * 8);
        let rows: Vec<(u64, u64)> = blocks.iter().map(|b| (b.k0[0], b.len[0])).collect();
        assert_eq!(rows, vec![(0, 2), (2, 2), (4, 2), (6, 2), (8, 2)]);
        // a row too large: split along the last axis
        let blocks = plan_blocks(&sel, &[2, 7], 8, 3 * 8);
        assert_eq!(blocks.len(), 10 * 3);
        assert_eq!(blocks.iter().map(|b| b.len.iter().product::<u64>()).sum::<u64>(), 70);
    }
}
