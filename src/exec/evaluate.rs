//! Evaluating a plan over a region: the fused kernel of a task. Source chunks are decoded once per
//! task and kept while the task runs; generators (random, arange, …), whose values depend on the
//! element's index alone, fill each tile where it is used; the output region is computed in tiles of
//! [`TILE_ELEMS`](crate::plan::lower::TILE_ELEMS) elements so that the temporaries of a chain of
//! element-wise operations stay in cache; indexing and transposes are views (a reversed chunk is
//! never copied until an operation needs it contiguous); a plain copy is assembled straight from
//! the source chunks.

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn, SliceInfo, SliceInfoElem};

use crate::dtype::{DType, Elem};
use crate::error::{Error, Result};
use crate::grid::Region;
use crate::kernels::buf::{Buf, BufElem};
use crate::kernels::elementwise;
use crate::kernels::generate::ScalarRepr;
use crate::plan::lower::{arg_region, leaf_grid, tile_rows};
use crate::plan::{fold, NodeKind, Plan};
use crate::store::ZArray;
use crate::{with_buf, with_dtype};

/// Evaluates regions of a plan for one task, keeping the source chunks it has decoded.
pub struct Evaluator<'a> {
    plan: &'a Plan,
    sources: &'a [ZArray],
    temps: &'a [&'a ZArray],
    codec_threads: usize,
    chunks: HashMap<(usize, u64), Buf>,
    memo: HashMap<(usize, Region), Buf>,
    /// Whether constant regions are folded ([`fold::enabled`]), and which source chunks (leaf
    /// node, chunk index) were found never written.
    fold: bool,
    missing: HashMap<(usize, u64), bool>,
}

fn info(ranges: &[(usize, usize)]) -> Result<SliceInfo<Vec<SliceInfoElem>, IxDyn, IxDyn>> {
    let elems: Vec<SliceInfoElem> = ranges
        .iter()
        .map(|&(s, e)| SliceInfoElem::Slice { start: s as isize, end: Some(e as isize), step: 1 })
        .collect();
    SliceInfo::try_from(elems).map_err(|e| Error::Internal(format!("slice: {e}")))
}

fn slice_buf(b: &Buf, ranges: &[(usize, usize)]) -> Result<Buf> {
    let si = info(ranges)?;
    Ok(with_buf!(b, T, a => T::wrap(a.clone().slice_move(si))))
}

impl<'a> Evaluator<'a> {
    pub fn new(plan: &'a Plan, sources: &'a [ZArray], temps: &'a [&'a ZArray], codec_threads: usize) -> Evaluator<'a> {
        Evaluator::with_chunks(plan, sources, temps, codec_threads, HashMap::new())
    }

    /// An evaluator starting with source chunks already decoded (shared by a task's members).
    pub fn with_chunks(
        plan: &'a Plan,
        sources: &'a [ZArray],
        temps: &'a [&'a ZArray],
        codec_threads: usize,
        chunks: HashMap<(usize, u64), Buf>,
    ) -> Evaluator<'a> {
        Evaluator {
            plan,
            sources,
            temps,
            codec_threads,
            chunks,
            memo: HashMap::new(),
            fold: fold::enabled(),
            missing: HashMap::new(),
        }
    }

    /// Forget the values computed for the last region (keep the decoded source chunks).
    pub fn clear_memo(&mut self) {
        self.memo.clear();
    }

    /// Forget the decoded source chunk `key` (leaf node, chunk index): no region left needs it.
    pub fn forget_chunk(&mut self, key: &(usize, u64)) {
        self.chunks.remove(key);
    }

    /// Drop the cached source chunks that `keep` does not list (leaf node, chunk index).
    pub fn retain_chunks(&mut self, keep: &std::collections::HashSet<(usize, u64)>) {
        self.chunks.retain(|k, _| keep.contains(k));
    }

    /// Evaluate the root over `region` in tiles; the result in C order, of the root's dtype.
    pub fn root_region(&mut self, region: &Region) -> Result<Buf> {
        let root = self.plan.root;
        let dtype = self.plan.nodes[root].dtype;
        let shape: Vec<usize> = region.shape.iter().map(|&s| s as usize).collect();
        if let Some(c) = self.constant(root, region) {
            let b = with_dtype!(dtype, T => Buf::scalar(T::from_scalar(c.into())));
            return Ok(contiguous(&b, &shape));
        }
        if region.ndim() == 0 || region.is_empty() {
            let b = self.eval(root, region)?;
            self.memo.clear();
            return Ok(contiguous(&b, &shape));
        }
        // a copy (a rechunk's passes, `transform --expr x`): straight from the source chunks
        let mut leaf = root;
        while let NodeKind::Rechunk { arg } = &self.plan.nodes[leaf].kind {
            leaf = *arg;
        }
        if matches!(self.plan.nodes[leaf].kind, NodeKind::Input { .. } | NodeKind::Temp { .. }) {
            if let Some(grid) = leaf_grid(self.plan, leaf) {
                return self.copy_leaf(leaf, &grid, region);
            }
        }
        let rows = tile_rows(&region.shape);
        if rows >= region.shape[0] {
            let b = self.eval(root, region)?;
            self.memo.clear();
            return Ok(contiguous(&b, &shape));
        }
        with_dtype!(dtype, T => {
            let mut out: Vec<T> = Vec::with_capacity(region.len() as usize);
            let mut r0 = 0;
            while r0 < region.shape[0] {
                let n = rows.min(region.shape[0] - r0);
                let mut tile = region.clone();
                tile.start[0] += r0;
                tile.shape[0] = n;
                let b = self.eval(root, &tile)?;
                self.memo.clear();
                let tshape: Vec<usize> = tile.shape.iter().map(|&s| s as usize).collect();
                let b = contiguous(&b, &tshape);
                let a = T::view(&b).ok_or_else(|| Error::Internal("tile dtype".into()))?;
                match a.as_slice() {
                    Some(s) => out.extend_from_slice(s),
                    None => out.extend(a.iter().copied()),
                }
                r0 += n;
            }
            Ok(Buf::from_vec(&shape, out))
        })
    }

    /// The value every element of node `id` over `region` has, when it is known without computing
    /// them: constants, and never-written chunks of local Zarr arrays (their fill value), through
    /// the operations [`fold`] folds, computed as it computes them (so the bits are those computing
    /// every element would give). `None` when folding is off or anything in the way is not
    /// constant.
    pub fn constant(&mut self, id: usize, region: &Region) -> Option<ScalarRepr> {
        if !self.fold || region.is_empty() {
            return None;
        }
        let plan = self.plan;
        let node = &plan.nodes[id];
        match &node.kind {
            NodeKind::Const { value } => Some(*value),
            NodeKind::Gen { gen } => gen.constant().map(ScalarRepr::from),
            NodeKind::Input { input } => {
                let arr = self.sources.get(*input)?;
                self.unwritten(id, region, arr)
            }
            NodeKind::Temp { temp } => {
                let arr = *self.temps.get(*temp)?;
                self.unwritten(id, region, arr)
            }
            NodeKind::Rechunk { arg } => self.constant(*arg, region),
            NodeKind::Index { arg, .. } | NodeKind::Transpose { arg, .. } => {
                // a selection is a view of its argument: the same value, in the same dtype
                if plan.nodes[*arg].dtype != node.dtype {
                    return None;
                }
                let r = arg_region(plan, id, 0, region);
                self.constant(*arg, &r)
            }
            NodeKind::Astype { arg } => {
                let r = arg_region(plan, id, 0, region);
                fold::cast_value(self.constant(*arg, &r)?, plan.nodes[*arg].dtype, node.dtype)
            }
            NodeKind::Map { op, args, compute } if fold::foldable(*op) => {
                let mut vals = Vec::with_capacity(args.len());
                for (pos, &a) in args.iter().enumerate() {
                    let r = arg_region(plan, id, pos, region);
                    vals.push((self.constant(a, &r)?, plan.nodes[a].dtype));
                }
                fold::map_value(*op, *compute, node.dtype, &vals)
            }
            _ => None,
        }
    }

    /// The fill value of leaf `id` (a Zarr array) over `region` when none of the chunks it lies
    /// in was ever written.
    fn unwritten(&mut self, id: usize, region: &Region, arr: &ZArray) -> Option<ScalarRepr> {
        // the storage objects (chunks, or shards) the region lies in, whatever grid it is read by
        let grid = arr.grid();
        if arr.dtype() != self.plan.nodes[id].dtype || leaf_grid(self.plan, id)?.shape != grid.shape {
            return None;
        }
        let ranges: Vec<std::ops::Range<u64>> =
            (0..region.ndim()).map(|a| grid.chunks_overlapping(a, region.start[a], region.end(a))).collect();
        let counts: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
        let strides = crate::grid::strides(&grid.grid_shape());
        for k in 0..counts.iter().product::<u64>() {
            let idx: Vec<u64> =
                crate::grid::unravel(k, &counts).iter().zip(&ranges).map(|(i, r)| i + r.start).collect();
            let lin: u64 = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
            let missing = match self.missing.get(&(id, lin)) {
                Some(&m) => m,
                None => {
                    let m = arr.chunk_missing(&idx) == Some(true);
                    self.missing.insert((id, lin), m);
                    m
                }
            };
            if !missing {
                return None;
            }
        }
        Some(ScalarRepr::from(arr.fill()))
    }

    /// Evaluate node `id` over `region` (a view where possible).
    pub fn eval(&mut self, id: usize, region: &Region) -> Result<Buf> {
        let key = (id, region.clone());
        if let Some(b) = self.memo.get(&key) {
            return Ok(b.clone());
        }
        let node = &self.plan.nodes[id];
        let b = match &node.kind {
            NodeKind::Const { value } => {
                with_dtype!(node.dtype, T => Buf::scalar(T::from_scalar((*value).into())))
            }
            NodeKind::Input { .. } | NodeKind::Gen { .. } => self.leaf(id, region)?,
            NodeKind::Temp { temp } => match self.temps.get(*temp) {
                Some(_) => self.leaf(id, region)?,
                None => return Err(Error::Internal(format!("intermediate {temp} is missing"))),
            },
            NodeKind::Reduce { .. } | NodeKind::Scan { .. } => {
                return Err(Error::Internal("a reduction was not computed before the stage that reads it".into()))
            }
            NodeKind::Astype { arg } => {
                let r = arg_region(self.plan, id, 0, region);
                self.eval(*arg, &r)?.cast(node.dtype)
            }
            NodeKind::Rechunk { arg } => self.eval(*arg, region)?,
            NodeKind::Pair { re, im } => {
                let r = arg_region(self.plan, id, 0, region);
                let nd = region.ndim();
                let shape: Vec<usize> = r.shape.iter().map(|&s| s as usize).collect();
                let (first, len) = (region.start[nd - 1] as usize, region.shape[nd - 1] as usize);
                let mut parts = vec![];
                for &p in &[*re, *im][first..first + len] {
                    parts.push(contiguous(&self.eval(p, &r)?.cast(node.dtype), &shape));
                }
                with_dtype!(node.dtype, T => {
                    let views = parts
                        .iter()
                        .map(|b| T::view(b).map(|a| a.view().insert_axis(ndarray::Axis(nd - 1))))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| Error::Internal("complex parts of another dtype".into()))?;
                    let stacked = ndarray::concatenate(ndarray::Axis(nd - 1), &views)
                        .map_err(|e| Error::Internal(format!("complex parts: {e}")))?;
                    T::wrap(stacked.into_shared())
                })
            }
            NodeKind::Transpose { arg, perm } => {
                let r = arg_region(self.plan, id, 0, region);
                let a = self.eval(*arg, &r)?;
                with_buf!(a, T, x => T::wrap(x.permuted_axes(IxDyn(perm))))
            }
            NodeKind::Index { arg, sel } => {
                let r = arg_region(self.plan, id, 0, region);
                let a = self.eval(*arg, &r)?;
                let mut elems = vec![];
                let mut k = 0;
                for s in sel {
                    if s.keep {
                        let step = s.step as isize;
                        elems.push(SliceInfoElem::Slice { start: 0, end: None, step });
                        let _ = region.shape[k];
                        k += 1;
                    } else {
                        elems.push(SliceInfoElem::Index(0));
                    }
                }
                let si: SliceInfo<Vec<SliceInfoElem>, IxDyn, IxDyn> =
                    SliceInfo::try_from(elems).map_err(|e| Error::Internal(format!("index: {e}")))?;
                with_buf!(a, T, x => T::wrap(x.slice_move(si)))
            }
            NodeKind::Map { op, args, compute } => {
                let mut vals = Vec::with_capacity(args.len());
                for (pos, &a) in args.iter().enumerate() {
                    let r = arg_region(self.plan, id, pos, region);
                    let v = self.eval(a, &r)?;
                    let want = if *op == elementwise::MapOp::Where && pos == 0 { DType::Bool } else { *compute };
                    vals.push(v.cast(want));
                }
                let shape: Vec<usize> = region.shape.iter().map(|&s| s as usize).collect();
                let out = with_dtype!(*compute, T => elementwise::apply::<T>(*op, &vals, &shape))
                    .map_err(|m| Error::Internal(format!("{}: {m}", op.name())))?;
                if out.dtype() != node.dtype {
                    out.cast(node.dtype)
                } else {
                    out
                }
            }
        };
        self.memo.insert(key, b.clone());
        Ok(b)
    }

    /// A leaf (Zarr input or generator) over `region`: a view of one cached chunk when the region
    /// lies inside it, else assembled from the chunks (or generated directly).
    fn leaf(&mut self, id: usize, region: &Region) -> Result<Buf> {
        let node = &self.plan.nodes[id];
        let dtype = node.dtype;
        let Some(grid) = leaf_grid(self.plan, id) else {
            // a constant generator: fill the region
            let NodeKind::Gen { gen } = &node.kind else { return Err(Error::Internal("leaf without grid".into())) };
            return Ok(with_dtype!(dtype, T => {
                let n = region.len() as usize;
                let v = match gen.constant() {
                    Some(c) => vec![T::from_scalar(c); n],
                    None => {
                        let mut v = vec![T::default(); n];
                        gen.fill(&node.shape, region, &mut v);
                        v
                    }
                };
                Buf::from_vec(&region.shape.iter().map(|&s| s as usize).collect::<Vec<_>>(), v)
            }));
        };
        // a generator's values depend on the element's index alone: a tile is generated where it
        // is used, in cache, rather than its chunks in memory and read back
        // (W1's mirrored random array: 1.03–1.24 s → 0.89–1.05 s, peak RSS 46 → 15 MiB)
        if let NodeKind::Gen { gen } = &node.kind {
            let shape: Vec<usize> = region.shape.iter().map(|&s| s as usize).collect();
            return Ok(with_dtype!(dtype, T => {
                let mut v = vec![T::default(); region.len() as usize];
                gen.fill(&node.shape, region, &mut v);
                Buf::from_vec(&shape, v)
            }));
        }
        let ranges: Vec<std::ops::Range<u64>> =
            (0..region.ndim()).map(|a| grid.chunks_overlapping(a, region.start[a], region.end(a))).collect();
        if region.is_empty() {
            let shape: Vec<usize> = region.shape.iter().map(|&s| s as usize).collect();
            return Ok(with_dtype!(dtype, T => Buf::from_vec::<T>(&shape, vec![])));
        }
        let gshape = grid.grid_shape();
        let strides = crate::grid::strides(&gshape);
        let single = ranges.iter().all(|r| r.end - r.start == 1);
        if single {
            let idx: Vec<u64> = ranges.iter().map(|r| r.start).collect();
            let lin: u64 = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
            let chunk = self.chunk(id, &grid, lin)?;
            let cr = grid.chunk_region(&idx);
            let rel: Vec<(usize, usize)> = (0..region.ndim())
                .map(|a| ((region.start[a] - cr.start[a]) as usize, (region.end(a) - cr.start[a]) as usize))
                .collect();
            return slice_buf(&chunk, &rel);
        }
        // spans several chunks: copy each intersection into a new array
        let shape: Vec<usize> = region.shape.iter().map(|&s| s as usize).collect();
        with_dtype!(dtype, T => {
            let mut out = ArrayD::<T>::from_elem(IxDyn(&shape), T::default());
            let counts: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
            let total: u64 = counts.iter().product();
            for k in 0..total {
                let rel_idx = crate::grid::unravel(k, &counts);
                let idx: Vec<u64> = rel_idx.iter().zip(&ranges).map(|(i, r)| i + r.start).collect();
                let lin: u64 = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
                let chunk = self.chunk(id, &grid, lin)?;
                let cr = grid.chunk_region(&idx);
                let mut in_chunk = vec![];
                let mut in_out = vec![];
                for a in 0..region.ndim() {
                    let lo = region.start[a].max(cr.start[a]);
                    let hi = region.end(a).min(cr.end(a));
                    in_chunk.push(((lo - cr.start[a]) as usize, (hi - cr.start[a]) as usize));
                    in_out.push(((lo - region.start[a]) as usize, (hi - region.start[a]) as usize));
                }
                let src = T::unwrap(slice_buf(&chunk, &in_chunk)?).ok_or_else(|| Error::Internal("chunk dtype".into()))?;
                out.slice_mut(info(&in_out)?).assign(&src);
            }
            Ok(T::wrap(out.into_shared()))
        })
    }

    /// `region` of leaf `id` in C order, copied from its source chunks in one pass: a run of the
    /// last axis at a time, with no tile or view in between (the whole work of a rechunk besides
    /// decoding and encoding).
    fn copy_leaf(&mut self, id: usize, grid: &crate::grid::Grid, region: &Region) -> Result<Buf> {
        let nd = region.ndim();
        let ranges: Vec<std::ops::Range<u64>> =
            (0..nd).map(|a| grid.chunks_overlapping(a, region.start[a], region.end(a))).collect();
        let strides = crate::grid::strides(&grid.grid_shape());
        let shape: Vec<usize> = region.shape.iter().map(|&s| s as usize).collect();
        let counts: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
        with_dtype!(self.plan.nodes[id].dtype, T => {
            let mut out = vec![T::default(); region.len() as usize];
            for k in 0..counts.iter().product::<u64>() {
                let rel = crate::grid::unravel(k, &counts);
                let idx: Vec<u64> = rel.iter().zip(&ranges).map(|(i, r)| i + r.start).collect();
                let lin: u64 = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
                let chunk = self.chunk(id, grid, lin)?;
                let cr = grid.chunk_region(&idx);
                let a = T::view(&chunk).ok_or_else(|| Error::Internal("chunk dtype".into()))?;
                let owned;
                let src: &[T] = match a.as_slice() {
                    Some(s) => s,
                    None => {
                        owned = a.iter().copied().collect::<Vec<T>>();
                        &owned
                    }
                };
                let cshape: Vec<usize> = cr.shape.iter().map(|&s| s as usize).collect();
                let (mut lo_c, mut lo_o, mut ext) = (vec![0usize; nd], vec![0usize; nd], vec![0usize; nd]);
                for ax in 0..nd {
                    let lo = region.start[ax].max(cr.start[ax]);
                    let hi = region.end(ax).min(cr.end(ax));
                    lo_c[ax] = (lo - cr.start[ax]) as usize;
                    lo_o[ax] = (lo - region.start[ax]) as usize;
                    ext[ax] = (hi - lo) as usize;
                }
                crate::grid::copy_box(src, &cshape, &lo_c, &mut out, &shape, &lo_o, &ext);
            }
            Ok(Buf::from_vec(&shape, out))
        })
    }

    /// Source chunk `lin` of leaf `id`, decoded (or generated, for a whole chunk) once per task.
    fn chunk(&mut self, id: usize, grid: &crate::grid::Grid, lin: u64) -> Result<Buf> {
        if let Some(b) = self.chunks.get(&(id, lin)) {
            return Ok(b.clone());
        }
        let b = load_chunk(self.plan, self.sources, self.temps, id, grid, lin, self.codec_threads)?;
        self.chunks.insert((id, lin), b.clone());
        Ok(b)
    }
}

/// Decode (or generate) source chunk `lin` of the leaf `id`, whose chunk grid is `grid`.
pub fn load_chunk(
    plan: &Plan,
    sources: &[ZArray],
    temps: &[&ZArray],
    id: usize,
    grid: &crate::grid::Grid,
    lin: u64,
    codec_threads: usize,
) -> Result<Buf> {
    let node = &plan.nodes[id];
    let idx = grid.chunk_index(lin);
    let region = grid.chunk_region(&idx);
    let shape: Vec<usize> = region.shape.iter().map(|&s| s as usize).collect();
    Ok(match &node.kind {
        NodeKind::Input { input } => {
            let arr = &sources[*input];
            with_dtype!(node.dtype, T => Buf::from_vec(&shape, arr.read_region::<T>(&region, codec_threads)?))
        }
        NodeKind::Temp { temp } => match temps.get(*temp) {
            Some(arr) => {
                with_dtype!(node.dtype, T => Buf::from_vec(&shape, arr.read_region::<T>(&region, codec_threads)?))
            }
            None => return Err(Error::Internal(format!("intermediate {temp} is missing"))),
        },
        NodeKind::Gen { gen } => with_dtype!(node.dtype, T => {
            let mut v = vec![T::default(); region.len() as usize];
            gen.fill(&node.shape, &region, &mut v);
            Buf::from_vec(&shape, v)
        }),
        _ => return Err(Error::Internal("chunk of a non-leaf".into())),
    })
}

/// `b` broadcast to `shape` in C order (copies only when needed).
fn contiguous(b: &Buf, shape: &[usize]) -> Buf {
    with_buf!(b, T, a => {
        if a.shape() == shape && a.is_standard_layout() {
            b.clone()
        } else {
            T::wrap(elementwise::materialize(a, shape))
        }
    })
}

/// The elements of a C-order buffer as `T` (the output dtype).
pub fn into_elems<T: BufElem + Elem>(b: Buf) -> Result<Vec<T>> {
    let b = if b.dtype() != T::DTYPE { b.cast(T::DTYPE) } else { b };
    b.into_vec::<T>().ok_or_else(|| Error::Internal("output dtype".into()))
}
