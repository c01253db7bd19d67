//! Geometry of chunked arrays: shapes, regular chunk grids, regions and C-order index arithmetic.
//!
//! Pure arithmetic, no I/O: the store, the planner and the kernels all speak in these terms. Edge
//! chunks are clipped to the array (a (10,) array with chunks (4,) has chunks of 4, 4 and 2).

/// A hyper-rectangle `[start, start + shape)` of an array.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Region {
    pub start: Vec<u64>,
    pub shape: Vec<u64>,
}

impl Region {
    pub fn new(start: Vec<u64>, shape: Vec<u64>) -> Region {
        debug_assert_eq!(start.len(), shape.len());
        Region { start, shape }
    }

    /// The region covering a whole array of `shape`.
    pub fn full(shape: &[u64]) -> Region {
        Region { start: vec![0; shape.len()], shape: shape.to_vec() }
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> u64 {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.shape.contains(&0)
    }

    pub fn end(&self, axis: usize) -> u64 {
        self.start[axis] + self.shape[axis]
    }

    pub fn ranges(&self) -> Vec<std::ops::Range<u64>> {
        self.start.iter().zip(&self.shape).map(|(&s, &n)| s..s + n).collect()
    }

    /// True when the region lies inside an array of `shape`.
    pub fn within(&self, shape: &[u64]) -> bool {
        self.ndim() == shape.len() && (0..self.ndim()).all(|a| self.end(a) <= shape[a])
    }
}

/// A regular chunk grid over an array shape.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grid {
    pub shape: Vec<u64>,
    pub chunks: Vec<u64>,
}

impl Grid {
    /// `chunks` must have the rank of `shape` and no zero extent (checked by callers that parse
    /// user input; a zero here is an internal error).
    pub fn new(shape: Vec<u64>, chunks: Vec<u64>) -> Grid {
        debug_assert_eq!(shape.len(), chunks.len());
        debug_assert!(chunks.iter().all(|&c| c > 0));
        Grid { shape, chunks }
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Chunks along each axis (0 for an empty axis).
    pub fn grid_shape(&self) -> Vec<u64> {
        self.shape.iter().zip(&self.chunks).map(|(&s, &c)| s.div_ceil(c)).collect()
    }

    /// Total number of chunks (1 for a 0-d array, 0 when an axis is empty).
    pub fn nchunks(&self) -> u64 {
        self.grid_shape().iter().product()
    }

    /// Elements in a full (unclipped) chunk.
    pub fn chunk_len(&self) -> u64 {
        self.chunks.iter().product()
    }

    /// The chunk at C-order position `linear` in the grid.
    pub fn chunk_index(&self, linear: u64) -> Vec<u64> {
        unravel(linear, &self.grid_shape())
    }

    /// The region covered by chunk `idx`, clipped to the array.
    pub fn chunk_region(&self, idx: &[u64]) -> Region {
        let start: Vec<u64> = idx.iter().zip(&self.chunks).map(|(&i, &c)| i * c).collect();
        let shape = start.iter().zip(&self.chunks).zip(&self.shape).map(|((&s, &c), &n)| c.min(n - s)).collect();
        Region { start, shape }
    }

    /// The chunk containing element `point`.
    pub fn chunk_index_of(&self, point: &[u64]) -> Vec<u64> {
        point.iter().zip(&self.chunks).map(|(p, c)| p / c).collect()
    }

    /// Range of chunk indices along `axis` that intersect `[lo, hi)`.
    pub fn chunks_overlapping(&self, axis: usize, lo: u64, hi: u64) -> std::ops::Range<u64> {
        if hi <= lo {
            return 0..0;
        }
        lo / self.chunks[axis]..hi.div_ceil(self.chunks[axis])
    }
}

/// C-order strides (in elements) of an array of `shape`.
pub fn strides(shape: &[u64]) -> Vec<u64> {
    let mut s = vec![1u64; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * shape[a + 1];
    }
    s
}

/// Multi-index of the C-order position `linear` in `shape`.
pub fn unravel(mut linear: u64, shape: &[u64]) -> Vec<u64> {
    let mut idx = vec![0u64; shape.len()];
    for a in (0..shape.len()).rev() {
        if shape[a] > 0 {
            idx[a] = linear % shape[a];
            linear /= shape[a];
        }
    }
    idx
}

/// Calls `f(outer_index, offset_in_region)` for every row (run along the last axis) of `region`,
/// in C order, with the multi-index of the row's first element in array coordinates. Used by
/// generators and copy kernels to work one contiguous run at a time.
pub fn for_each_row(region: &Region, mut f: impl FnMut(&[u64], usize)) {
    let nd = region.ndim();
    if region.is_empty() {
        return;
    }
    if nd == 0 {
        f(&[], 0);
        return;
    }
    let row = region.shape[nd - 1] as usize;
    let nrows: u64 = region.shape[..nd - 1].iter().product();
    let mut idx = region.start.clone();
    for r in 0..nrows {
        f(&idx, r as usize * row);
        // advance the outer index (all axes but the last)
        for a in (0..nd - 1).rev() {
            idx[a] += 1;
            if idx[a] < region.end(a) {
                break;
            }
            idx[a] = region.start[a];
        }
    }
}

/// Copy the box of extent `ext` at `lo_s` of a C-order array of shape `sshape` to `lo_d` of one of
/// shape `dshape`, a run of the last axis at a time.
pub fn copy_box<T: Copy>(
    src: &[T],
    sshape: &[usize],
    lo_s: &[usize],
    dst: &mut [T],
    dshape: &[usize],
    lo_d: &[usize],
    ext: &[usize],
) {
    let nd = ext.len();
    if ext.contains(&0) {
        return;
    }
    if nd == 0 {
        dst[0] = src[0];
        return;
    }
    let stride = |shape: &[usize]| -> Vec<usize> {
        let mut st = vec![1usize; nd];
        for a in (0..nd.saturating_sub(1)).rev() {
            st[a] = st[a + 1] * shape[a + 1];
        }
        st
    };
    let (ss, ds) = (stride(sshape), stride(dshape));
    let run = ext[nd - 1];
    let outer: usize = ext[..nd - 1].iter().product();
    let mut i = vec![0usize; nd.saturating_sub(1)];
    // short runs far apart (a narrow column of a wide chunk: a rechunk to tall chunks) wait on
    // memory for every run: ask for the runs a few rows ahead meanwhile
    let ahead = if nd >= 2 && run * std::mem::size_of::<T>() <= 512 { PREFETCH_ROWS * ss[nd - 2] } else { 0 };
    for _ in 0..outer {
        let so: usize = (0..nd).map(|a| (lo_s[a] + i.get(a).copied().unwrap_or(0)) * ss[a]).sum();
        let doff: usize = (0..nd).map(|a| (lo_d[a] + i.get(a).copied().unwrap_or(0)) * ds[a]).sum();
        if ahead > 0 && so + ahead + run <= src.len() {
            prefetch(&src[so + ahead..so + ahead + run]);
        }
        dst[doff..doff + run].copy_from_slice(&src[so..so + run]);
        // the next index of the outer axes, in C order
        for a in (0..nd - 1).rev() {
            i[a] += 1;
            if i[a] < ext[a] {
                break;
            }
            i[a] = 0;
        }
    }
}

/// Rows ahead that [`copy_box`] asks the memory for.
const PREFETCH_ROWS: usize = 16;

/// Hint the processor to load `data`'s cache lines (a no-op where there is no such hint).
#[inline]
fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(data);
        let p = data.as_ptr() as *const i8;
        let mut off = 0;
        while off < bytes {
            // SAFETY: a prefetch is a hint; the address lies within `data`
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(off)) };
            off += 64;
        }
        // the last line, when the run straddles one more
        // SAFETY: as above
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(bytes - 1)) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// A shape as Python writes a tuple: `(3, 4)`, `(5,)`, `()`.
pub fn tuple(v: &[u64]) -> String {
    match v.len() {
        1 => format!("({},)", v[0]),
        _ => format!("({})", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// `chunks` shrunk so that a chunk holds about `factor` (< 1) times as many elements, keeping the
/// proportions (for error messages that suggest a chunk shape that fits).
pub fn scaled_chunks(chunks: &[u64], factor: f64) -> Vec<u64> {
    let big = chunks.iter().filter(|&&c| c > 1).count().max(1);
    let f = factor.clamp(0.0, 1.0).powf(1.0 / big as f64);
    chunks.iter().map(|&c| if c > 1 { ((c as f64 * f).floor() as u64).max(1) } else { c }).collect()
}

/// `chunks` written as a `--chunks` argument (`500,500`).
pub fn chunks_arg(chunks: &[u64]) -> String {
    chunks.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// Target size of an automatically chosen chunk (`--chunks` not given): 16 MiB, inside the
/// 8–64 MB range where per-chunk overheads are negligible and many chunks fit any sane memory bound.
pub const AUTO_CHUNK_BYTES: u64 = 16 << 20;

/// Chunks of about `target` bytes, as square as the shape allows (like Dask's `chunks="auto"`):
/// axes shorter than the balanced edge are taken whole, the others share the rest equally, and
/// edges are rounded down to two significant digits (1448 → 1400).
pub fn auto_chunks(shape: &[u64], itemsize: u64, target: u64) -> Vec<u64> {
    let nd = shape.len();
    let mut chunks: Vec<Option<u64>> = vec![None; nd];
    let budget = (target / itemsize.max(1)).max(1) as f64;
    loop {
        let fixed: f64 = chunks.iter().flatten().map(|&c| c as f64).product();
        let free: Vec<usize> = (0..nd).filter(|&a| chunks[a].is_none()).collect();
        if free.is_empty() {
            break;
        }
        let edge = (budget / fixed).max(1.0).powf(1.0 / free.len() as f64);
        let mut changed = false;
        for &a in &free {
            if (shape[a].max(1) as f64) <= edge {
                chunks[a] = Some(shape[a].max(1));
                changed = true;
            }
        }
        if !changed {
            for &a in &free {
                chunks[a] = Some(round_2sig(edge.floor() as u64).max(1));
            }
        }
    }
    chunks.into_iter().map(|c| c.unwrap_or(1)).collect()
}

fn round_2sig(x: u64) -> u64 {
    let mut p = 1;
    while x / p >= 100 {
        p *= 10;
    }
    x / p * p
}

/// The most axes an array may have (NumPy's limit: a .npy file cannot hold more).
pub const MAX_DIMS: usize = 64;

/// Bytes of an array of `shape` with elements of `itemsize` bytes, when that number fits an `i64`
/// (every product of extents dsk computes afterwards then fits too); `None` when it overflows.
pub fn checked_nbytes(shape: &[u64], itemsize: u64) -> Option<u64> {
    let n = shape.iter().try_fold(itemsize.max(1), |acc, &x| acc.checked_mul(x.max(1)))?;
    (n <= i64::MAX as u64).then_some(shape.iter().product::<u64>() * itemsize)
}

/// An error text when an array of `shape` cannot be indexed with 64-bit sizes, else `None`.
pub fn check_size(shape: &[u64], itemsize: u64) -> Option<String> {
    if shape.len() > MAX_DIMS {
        return Some(format!("an array of {} axes has more than {MAX_DIMS} (NumPy's limit)", shape.len()));
    }
    match checked_nbytes(shape, itemsize) {
        Some(_) => None,
        None => {
            Some(format!("an array of shape {} with {itemsize}-byte elements is larger than 2⁶³ bytes", tuple(shape)))
        }
    }
}

/// The largest chunk (decoded, in bytes) dsk reads or writes: 1 TiB. A task holds whole chunks in
/// memory, so a larger one could never run; keeping chunks (and `--workers`, see
/// [`MAX_WORKERS`]) bounded also keeps every memory projection (chunks × workers × a few) far
/// below 2⁶³.
pub const MAX_CHUNK_BYTES: u64 = 1 << 40;

/// The most `--workers` dsk accepts (threads actually started are also capped by the tasks).
pub const MAX_WORKERS: usize = 1 << 16;

/// An error text when a chunk of `chunks` (clipped to an array of `shape`) holds more than
/// [`MAX_CHUNK_BYTES`], else `None`.
pub fn check_chunk(chunks: &[u64], shape: &[u64], itemsize: u64) -> Option<String> {
    let clipped: Vec<u64> = chunks.iter().zip(shape).map(|(&c, &n)| c.min(n.max(1))).collect();
    let bytes = clipped.iter().try_fold(itemsize.max(1), |acc, &x| acc.checked_mul(x.max(1)));
    match bytes {
        Some(b) if b <= MAX_CHUNK_BYTES => None,
        _ => Some(format!(
            "a chunk of shape {} with {itemsize}-byte elements holds more than {} (1 TiB), the most a task may hold in memory",
            tuple(&clipped),
            MAX_CHUNK_BYTES
        )),
    }
}

/// Parse a comma-separated list of non-negative integers, e.g. `200000,4000` (also `(200000, 4000)`).
pub fn parse_shape(text: &str) -> Result<Vec<u64>, String> {
    let t = text.trim().trim_start_matches(['(', '[']).trim_end_matches([')', ']']);
    if t.trim().is_empty() {
        return Ok(vec![]);
    }
    t.split(',')
        .filter(|p| !p.trim().is_empty() || !t.trim_end().ends_with(','))
        .map(|p| {
            let p = p.trim();
            p.replace('_', "").parse::<u64>().map_err(|_| {
                if p.starts_with('-') {
                    format!("extent {p} is negative; extents are whole numbers ≥ 0")
                } else {
                    format!("{p:?} is not a whole number")
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_edge_chunks_are_clipped() {
        let g = Grid::new(vec![10, 7], vec![4, 3]);
        assert_eq!(g.grid_shape(), vec![3, 3]);
        assert_eq!(g.chunk_region(&[2, 2]), Region::new(vec![8, 6], vec![2, 1]));
        assert_eq!(g.nchunks(), 9);
        assert_eq!(g.chunks_overlapping(0, 3, 9), 0..3);
    }

    #[test]
    fn rows_walk_in_c_order() {
        let r = Region::new(vec![1, 2, 0], vec![2, 2, 5]);
        let mut seen = vec![];
        for_each_row(&r, |idx, off| seen.push((idx.to_vec(), off)));
        assert_eq!(seen[0], (vec![1, 2, 0], 0));
        assert_eq!(seen[1], (vec![1, 3, 0], 5));
        assert_eq!(seen[3], (vec![2, 3, 0], 15));
    }

    #[test]
    fn auto_chunks_are_balanced_and_near_the_target() {
        assert_eq!(auto_chunks(&[200_000, 4000], 8, AUTO_CHUNK_BYTES), vec![1400, 1400]);
        assert_eq!(auto_chunks(&[200_000, 10], 8, AUTO_CHUNK_BYTES), vec![200_000, 10]);
        assert_eq!(auto_chunks(&[10_000_000, 10], 8, AUTO_CHUNK_BYTES), vec![200_000, 10]);
        assert_eq!(auto_chunks(&[5, 0], 8, AUTO_CHUNK_BYTES), vec![5, 1]);
        assert_eq!(auto_chunks(&[], 8, AUTO_CHUNK_BYTES), Vec::<u64>::new());
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("200000,4000"), Ok(vec![200000, 4000]));
        assert_eq!(parse_shape("(3, 4)"), Ok(vec![3, 4]));
        assert_eq!(parse_shape("5,"), Ok(vec![5]));
        assert!(parse_shape("-1,4").is_err());
        assert!(parse_shape("a").is_err());
    }
}
