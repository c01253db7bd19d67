//! NumPy basic indexing: parsing `0:10, ::2, -1, ...` and normalising it against a shape with
//! Python's `slice.indices` rules (negative indices count from the end, out-of-range slice bounds
//! are clipped, an out-of-range integer index is an error, an integer index drops its axis).

/// One item of a selection, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Index(i64),
    Slice { start: Option<i64>, stop: Option<i64>, step: Option<i64> },
    Ellipsis,
}

/// A normalised selection on one axis: elements `start + k·step` for `k` in `0..len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AxisSel {
    pub start: u64,
    pub len: u64,
    pub step: i64,
    /// False for an integer index: the axis is dropped from the result.
    pub keep: bool,
}

impl AxisSel {
    pub fn full(n: u64) -> AxisSel {
        AxisSel { start: 0, len: n, step: 1, keep: true }
    }

    /// Input coordinate of the k-th selected element.
    pub fn at(&self, k: u64) -> u64 {
        (self.start as i64 + k as i64 * self.step) as u64
    }

    /// The smallest input range holding selected elements `k0..k1` (k1 > k0).
    pub fn bbox(&self, k0: u64, k1: u64) -> (u64, u64) {
        let (a, b) = (self.at(k0), self.at(k1 - 1));
        (a.min(b), a.max(b) + 1)
    }
}

/// Parse a selection such as `0:10, ::2`, `5, :, -3:`, `..., ::-1`.
pub fn parse(text: &str) -> Result<Vec<Item>, String> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    if t.trim().is_empty() {
        return Ok(vec![]);
    }
    // one trailing comma, as Python allows (`0:3,` is the tuple `(0:3,)`)
    let t = match t.trim_end().strip_suffix(',') {
        Some(rest) if !rest.trim().is_empty() && !rest.trim_end().ends_with(',') => rest,
        _ => t,
    };
    t.split(',')
        .map(|part| {
            let p = part.trim();
            if p == "..." {
                return Ok(Item::Ellipsis);
            }
            let num = |s: &str| -> Result<Option<i64>, String> {
                let s = s.trim();
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse::<i64>().map(Some).map_err(|_| format!("{s:?} is not an integer (in {p:?})"))
                }
            };
            let pieces: Vec<&str> = p.split(':').collect();
            match pieces.len() {
                1 => {
                    if p.is_empty() {
                        return Err("empty item; write ':' for a whole axis".into());
                    }
                    Ok(Item::Index(num(p)?.unwrap_or(0)))
                }
                2 | 3 => {
                    let step = if pieces.len() == 3 { num(pieces[2])? } else { None };
                    if step == Some(0) {
                        return Err(format!("slice step cannot be zero (in {p:?})"));
                    }
                    Ok(Item::Slice { start: num(pieces[0])?, stop: num(pieces[1])?, step })
                }
                _ => Err(format!("{p:?} has too many ':'")),
            }
        })
        .collect()
}

/// Normalise `items` against `shape`: one [`AxisSel`] per axis of the array.
pub fn normalize(items: &[Item], shape: &[u64]) -> Result<Vec<AxisSel>, String> {
    let nd = shape.len();
    let explicit = items.iter().filter(|i| !matches!(i, Item::Ellipsis)).count();
    if items.iter().filter(|i| matches!(i, Item::Ellipsis)).count() > 1 {
        return Err("an index can only have a single ellipsis ('...')".into());
    }
    if explicit > nd {
        return Err(format!("too many indices: {explicit} given for an array with {nd} axes"));
    }
    let mut expanded = Vec::with_capacity(nd);
    for it in items {
        if let Item::Ellipsis = it {
            expanded.extend(std::iter::repeat_n(Item::Slice { start: None, stop: None, step: None }, nd - explicit));
        } else {
            expanded.push(*it);
        }
    }
    while expanded.len() < nd {
        expanded.push(Item::Slice { start: None, stop: None, step: None });
    }
    expanded
        .iter()
        .zip(shape)
        .enumerate()
        .map(|(axis, (it, &n))| {
            let n = n as i64;
            match *it {
                Item::Index(i) => {
                    let j = if i < 0 { i + n } else { i };
                    if j < 0 || j >= n {
                        return Err(format!("index {i} is out of bounds for axis {axis} with size {n}"));
                    }
                    Ok(AxisSel { start: j as u64, len: 1, step: 1, keep: false })
                }
                Item::Slice { start, stop, step } => {
                    let step = step.unwrap_or(1);
                    let (lo, hi) = if step > 0 { (0, n) } else { (-1, n - 1) };
                    let fix = |v: Option<i64>, default: i64| -> i64 {
                        match v {
                            None => default,
                            Some(v) => {
                                let v = if v < 0 { v + n } else { v };
                                v.clamp(lo, hi)
                            }
                        }
                    };
                    let (s, e) =
                        if step > 0 { (fix(start, 0), fix(stop, n)) } else { (fix(start, n - 1), fix(stop, -1)) };
                    // in 128 bits: steps near ±2⁶³ must not overflow
                    let (s1, e1, st) = (s as i128, e as i128, step as i128);
                    let len = if st > 0 {
                        if e1 > s1 {
                            (e1 - s1 + st - 1) / st
                        } else {
                            0
                        }
                    } else if s1 > e1 {
                        (s1 - e1 - st - 1) / (-st)
                    } else {
                        0
                    };
                    let start = if len > 0 { s as u64 } else { 0 };
                    Ok(AxisSel { start, len: len as u64, step, keep: true })
                }
                Item::Ellipsis => Ok(AxisSel::full(n as u64)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(text: &str, shape: &[u64]) -> Vec<(u64, u64, i64, bool)> {
        normalize(&parse(text).unwrap_or_default(), shape)
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.start, a.len, a.step, a.keep))
            .collect()
    }

    #[test]
    fn python_slice_rules() {
        assert_eq!(sel("0:10, ::2", &[20, 7]), vec![(0, 10, 1, true), (0, 4, 2, true)]);
        assert_eq!(sel("::-1", &[5]), vec![(4, 5, -1, true)]);
        assert_eq!(sel("10:-10, ::3", &[30, 10]), vec![(10, 10, 1, true), (0, 4, 3, true)]);
        assert_eq!(sel("-1", &[5, 3]), vec![(4, 1, 1, false), (0, 3, 1, true)]);
        assert_eq!(sel("5:2", &[10]), vec![(0, 0, 1, true)]);
        assert_eq!(sel("-100:100", &[10]), vec![(0, 10, 1, true)]);
        assert_eq!(sel("8:2:-3", &[10]), vec![(8, 2, -3, true)]);
        assert_eq!(sel("..., 1", &[2, 3, 4]), vec![(0, 2, 1, true), (0, 3, 1, true), (1, 1, 1, false)]);
        assert_eq!(sel("::-1", &[0]), vec![(0, 0, -1, true)]);
        // steps near ±2⁶³ take one element (issue 8: they gave an empty selection)
        assert_eq!(sel("::-9223372036854775806", &[30]), vec![(29, 1, -9223372036854775806, true)]);
        assert_eq!(sel("::-9223372036854775808", &[30]), vec![(29, 1, i64::MIN, true)]);
        assert_eq!(sel("::9223372036854775807", &[30]), vec![(0, 1, i64::MAX, true)]);
    }

    #[test]
    fn bad_selections_are_refused() {
        assert!(normalize(&parse("5").unwrap_or_default(), &[5]).is_err());
        assert!(normalize(&parse("0,0").unwrap_or_default(), &[5]).is_err());
        assert!(parse("::0").is_err());
        // Python's trailing comma, once
        assert_eq!(parse("0:3,").map(|v| v.len()), Ok(1));
        assert!(parse("0:3,,").is_err());
        assert!(parse("a:b").is_err());
    }
}
