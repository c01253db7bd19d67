//! Pixel bins: what a picture of a 1-D or 2-D selection shows at each pixel when the selection has
//! more elements than the picture has pixels. Selected elements `0..n` of an axis are cut into
//! `b ≤ n` consecutive runs of ⌊n/b⌋ or ⌈n/b⌉ elements (element k falls in bin ⌊k·b/n⌋), and each
//! bin (a cell of the product of the axes' bins) keeps the minimum, maximum, sum and count of its
//! finite values and counts its NaN and infinite values, in f64 whatever the dtype. Cells of
//! disjoint parts of the data merge exactly (min, max, counts) or up to rounding (sums), so chunks
//! can be folded in any order on any thread. Pure arithmetic: no files, no threads.

/// How one axis of `n` selected elements is cut into `bins` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinAxis {
    pub n: u64,
    pub bins: u64,
}

impl BinAxis {
    /// At most `max_bins` bins (at least 1), never more bins than elements; an empty axis has none.
    pub fn new(n: u64, max_bins: u64) -> BinAxis {
        BinAxis { n, bins: n.min(max_bins.max(1)) }
    }

    /// The bin of element `k` (`k < n`).
    pub fn bin_of(&self, k: u64) -> u64 {
        ((k as u128 * self.bins as u128) / self.n as u128) as u64
    }

    /// The elements of bin `b`: `k0..k1`, never empty.
    pub fn elements(&self, b: u64) -> (u64, u64) {
        let first = |b: u64| (b as u128 * self.n as u128).div_ceil(self.bins as u128) as u64;
        (first(b), first(b + 1))
    }

    /// True when every bin holds exactly one element (the picture shows every value).
    pub fn exact(&self) -> bool {
        self.bins == self.n
    }
}

/// What one bin holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    /// Minimum and maximum of the finite values (+∞ and −∞ while there are none).
    pub min: f64,
    pub max: f64,
    /// Sum and number of the finite values.
    pub sum: f64,
    pub finite: u64,
    pub nan: u64,
    pub pos_inf: u64,
    pub neg_inf: u64,
}

impl Default for Cell {
    fn default() -> Cell {
        Cell { min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0, finite: 0, nan: 0, pos_inf: 0, neg_inf: 0 }
    }
}

impl Cell {
    /// Bytes one cell takes (what a picture's bins reserve from `--memory`).
    pub const BYTES: u64 = std::mem::size_of::<Cell>() as u64;

    #[inline(always)]
    pub fn push(&mut self, v: f64) {
        if v.is_finite() {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.sum += v;
            self.finite += 1;
        } else if v.is_nan() {
            self.nan += 1;
        } else if v > 0.0 {
            self.pos_inf += 1;
        } else {
            self.neg_inf += 1;
        }
    }

    pub fn merge(&mut self, o: &Cell) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.finite += o.finite;
        self.nan += o.nan;
        self.pos_inf += o.pos_inf;
        self.neg_inf += o.neg_inf;
    }

    /// Elements that fell in this cell.
    pub fn count(&self) -> u64 {
        self.finite + self.nan + self.pos_inf + self.neg_inf
    }

    /// The mean of the finite values, if there are any.
    pub fn mean(&self) -> Option<f64> {
        (self.finite > 0).then(|| self.sum / self.finite as f64)
    }

    /// What a heatmap pixel shows: the mean of the finite values; with none, +∞ or −∞ when all
    /// infinite values have that sign, else NaN.
    pub fn shown(&self) -> f64 {
        match self.mean() {
            Some(m) => m,
            None if self.pos_inf > 0 && self.neg_inf == 0 => f64::INFINITY,
            None if self.neg_inf > 0 && self.pos_inf == 0 => f64::NEG_INFINITY,
            None => f64::NAN,
        }
    }
}

/// The cells of a 1-D or 2-D picture, in C order of the bins.
#[derive(Clone, Debug)]
pub struct Bins {
    pub axes: Vec<BinAxis>,
    pub cells: Vec<Cell>,
}

impl Bins {
    pub fn new(axes: Vec<BinAxis>) -> Bins {
        let n: u64 = axes.iter().map(|a| a.bins).product();
        Bins { axes, cells: vec![Cell::default(); n as usize] }
    }

    /// Bytes the cells of `axes` take.
    pub fn bytes(axes: &[BinAxis]) -> u64 {
        axes.iter().map(|a| a.bins).product::<u64>() * Cell::BYTES
    }

    /// Merge `part`, the cells of the box of bins starting at `origin` with shape `shape`.
    pub fn merge_box(&mut self, origin: &[u64], shape: &[u64], part: &[Cell]) {
        match self.axes.len() {
            1 => {
                let o = origin[0] as usize;
                for (c, p) in self.cells[o..o + part.len()].iter_mut().zip(part) {
                    c.merge(p);
                }
            }
            2 => {
                let w = self.axes[1].bins as usize;
                let pw = shape[1] as usize;
                for (r, prow) in part.chunks_exact(pw).enumerate() {
                    let at = (origin[0] as usize + r) * w + origin[1] as usize;
                    for (c, p) in self.cells[at..at + pw].iter_mut().zip(prow) {
                        c.merge(p);
                    }
                }
            }
            _ => {}
        }
    }

    /// Every cell merged: the whole selection's statistics.
    pub fn total(&self) -> Cell {
        let mut t = Cell::default();
        for c in &self.cells {
            t.merge(c);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cut_an_axis_into_near_equal_runs_covering_it_once() {
        for (n, max) in [(10, 3), (7, 7), (7, 100), (1000, 760), (1, 5), (1_000_000_007, 761)] {
            let a = BinAxis::new(n, max);
            assert_eq!(a.bins, n.min(max));
            let mut next = 0;
            let (lo, hi) = (n / a.bins, n.div_ceil(a.bins));
            for b in 0..a.bins {
                let (k0, k1) = a.elements(b);
                assert_eq!(k0, next, "n={n} b={b}");
                assert!(k1 - k0 >= lo && k1 - k0 <= hi, "n={n} b={b}: {k0}..{k1}");
                assert_eq!(a.bin_of(k0), b);
                assert_eq!(a.bin_of(k1 - 1), b);
                next = k1;
                if n > 10_000 && b > 3 {
                    break;
                }
            }
            if n <= 10_000 {
                assert_eq!(next, n);
            }
        }
        assert!(BinAxis::new(5, 9).exact());
    }

    #[test]
    fn cells_keep_finite_statistics_and_count_the_rest() {
        let mut c = Cell::default();
        for v in [1.0, f64::NAN, -3.0, f64::INFINITY, 5.0, f64::NEG_INFINITY, f64::INFINITY] {
            c.push(v);
        }
        assert_eq!((c.min, c.max, c.sum, c.finite), (-3.0, 5.0, 3.0, 3));
        assert_eq!((c.nan, c.pos_inf, c.neg_inf, c.count()), (1, 2, 1, 7));
        assert_eq!(c.mean(), Some(1.0));
        let mut only_inf = Cell::default();
        only_inf.push(f64::INFINITY);
        assert_eq!(only_inf.shown(), f64::INFINITY);
        only_inf.push(f64::NEG_INFINITY);
        assert!(only_inf.shown().is_nan());
        assert!(Cell::default().shown().is_nan());
        let mut m = Cell::default();
        m.merge(&c);
        m.merge(&only_inf);
        assert_eq!((m.min, m.max, m.finite, m.pos_inf, m.neg_inf), (-3.0, 5.0, 3, 3, 2));
    }

    #[test]
    fn boxes_merge_into_their_place() {
        let mut b = Bins::new(vec![BinAxis::new(3, 3), BinAxis::new(4, 4)]);
        let mut part = vec![Cell::default(); 4];
        for (i, c) in part.iter_mut().enumerate() {
            c.push(i as f64);
        }
        b.merge_box(&[1, 2], &[2, 2], &part);
        let means: Vec<Option<f64>> = b.cells.iter().map(Cell::mean).collect();
        assert_eq!(means[4 + 2], Some(0.0));
        assert_eq!(means[4 + 3], Some(1.0));
        assert_eq!(means[8 + 2], Some(2.0));
        assert_eq!(means[8 + 3], Some(3.0));
        assert_eq!(means.iter().filter(|m| m.is_some()).count(), 4);
        assert_eq!(b.total().finite, 4);
    }
}
