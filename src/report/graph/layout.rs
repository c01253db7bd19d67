//! A layered (Sugiyama-style) layout of a directed acyclic graph, top to bottom: layers by longest
//! path (sources pulled down next to what reads them), edges spanning several layers split by
//! dummy nodes, crossings reduced by barycenter sweeps (the order with the fewest crossings is
//! kept), and x coordinates pulled towards the neighbours' barycenters under a minimum separation.
//! Pure geometry: it knows node sizes, not what nodes mean.

/// Horizontal gap between two nodes of a layer, and beside a dummy (an edge passing through).
const GAP: f64 = 18.0;
const DUMMY_GAP: f64 = 6.0;
const DUMMY_WIDTH: f64 = 4.0;
/// Vertical gap between layers.
const LAYER_GAP: f64 = 48.0;
/// Barycenter sweeps (each down then up) and coordinate passes.
const SWEEPS: usize = 12;
const PASSES: usize = 8;

/// Where everything goes: node centers, and per edge the points its curve passes through (from
/// the bottom of the source to the top of the target).
pub struct Placed {
    pub centers: Vec<(f64, f64)>,
    pub routes: Vec<Vec<(f64, f64)>>,
    pub width: f64,
    pub height: f64,
}

/// The layer of every node: its longest path from a source; a source sits just above the
/// first node that reads it. Edges that do not go down (there are none in a plan's graph) are
/// ignored.
pub fn layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut indeg = vec![0usize; n];
    let mut down: Vec<Vec<usize>> = vec![vec![]; n];
    for &(a, b) in edges {
        if a < n && b < n && a != b {
            down[a].push(b);
            indeg[b] += 1;
        }
    }
    let mut layer = vec![0usize; n];
    let mut queue: Vec<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    let mut order = vec![];
    while let Some(v) = queue.pop() {
        order.push(v);
        for &w in &down[v] {
            layer[w] = layer[w].max(layer[v] + 1);
            indeg[w] -= 1;
            if indeg[w] == 0 {
                queue.push(w);
            }
        }
    }
    let has_pred: Vec<bool> = {
        let mut h = vec![false; n];
        for &(a, b) in edges {
            if a < n && b < n && a != b {
                h[b] = true;
            }
        }
        h
    };
    for v in 0..n {
        if !has_pred[v] {
            if let Some(m) = down[v].iter().map(|&w| layer[w]).min() {
                layer[v] = m.saturating_sub(1);
            }
        }
    }
    layer
}

/// The most real nodes in one layer.
pub fn widest(n: usize, edges: &[(usize, usize)]) -> usize {
    let l = layers(n, edges);
    let mut count = vec![0usize; l.iter().max().map(|m| m + 1).unwrap_or(0)];
    for x in l {
        count[x] += 1;
    }
    count.into_iter().max().unwrap_or(0)
}

/// Crossings between two adjacent layers (`pos`: position of each node in its layer), counted
/// as inversions with a Fenwick tree.
fn crossings(pairs: &mut [(usize, usize)], width: usize) -> u64 {
    pairs.sort_unstable();
    let mut tree = vec![0u64; width + 1];
    let mut total = 0u64;
    for (seen, &(_, b)) in pairs.iter().enumerate() {
        // edges seen so far ending strictly right of b cross this one
        let mut i = b + 1;
        let mut le = 0u64;
        while i > 0 {
            le += tree[i];
            i &= i - 1;
        }
        total += seen as u64 - le;
        let mut i = b + 1;
        while i <= width {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    total
}

/// Lay out nodes of `sizes` (width, height) joined by `edges`.
pub fn layout(sizes: &[(f64, f64)], edges: &[(usize, usize)]) -> Placed {
    let n = sizes.len();
    let layer_of = layers(n, edges);
    // virtual nodes: the real ones, then dummies; adjacency between consecutive layers only
    let mut vlayer = layer_of.clone();
    let mut vwidth: Vec<f64> = sizes.iter().map(|s| s.0).collect();
    let mut up: Vec<Vec<usize>> = vec![vec![]; n];
    let mut down: Vec<Vec<usize>> = vec![vec![]; n];
    let mut chains: Vec<Vec<usize>> = vec![];
    for &(a, b) in edges {
        if a >= n || b >= n || layer_of[a] >= layer_of[b] {
            chains.push(vec![a.min(n.saturating_sub(1)), b.min(n.saturating_sub(1))]);
            continue;
        }
        let mut chain = vec![a];
        for l in layer_of[a] + 1..layer_of[b] {
            vlayer.push(l);
            vwidth.push(DUMMY_WIDTH);
            up.push(vec![]);
            down.push(vec![]);
            chain.push(vlayer.len() - 1);
        }
        chain.push(b);
        for w in chain.windows(2) {
            down[w[0]].push(w[1]);
            up[w[1]].push(w[0]);
        }
        chains.push(chain);
    }
    let nv = vlayer.len();
    let nl = vlayer.iter().max().map(|m| m + 1).unwrap_or(0);
    let mut order: Vec<Vec<usize>> = vec![vec![]; nl];
    for v in 0..nv {
        order[vlayer[v]].push(v);
    }
    let mut pos = vec![0usize; nv];
    let set_pos = |order: &Vec<Vec<usize>>, pos: &mut Vec<usize>| {
        for l in order {
            for (i, &v) in l.iter().enumerate() {
                pos[v] = i;
            }
        }
    };
    set_pos(&order, &mut pos);
    let count = |order: &Vec<Vec<usize>>, pos: &Vec<usize>| -> u64 {
        let mut total = 0;
        for l in 0..nl.saturating_sub(1) {
            let mut pairs: Vec<(usize, usize)> = order[l]
                .iter()
                .flat_map(|&v| down[v].iter().map(move |&w| (v, w)))
                .map(|(v, w)| (pos[v], pos[w]))
                .collect();
            total += crossings(&mut pairs, order[l + 1].len());
        }
        total
    };
    let mut best = order.clone();
    let mut best_c = count(&order, &pos);
    for sweep in 0..SWEEPS {
        if best_c == 0 {
            break;
        }
        let downward = sweep % 2 == 0;
        let seq: Vec<usize> = if downward { (1..nl).collect() } else { (0..nl.saturating_sub(1)).rev().collect() };
        for l in seq {
            let mut keyed: Vec<(f64, usize)> = order[l]
                .iter()
                .map(|&v| {
                    let nb = if downward { &up[v] } else { &down[v] };
                    let bc = if nb.is_empty() {
                        pos[v] as f64
                    } else {
                        nb.iter().map(|&w| pos[w] as f64).sum::<f64>() / nb.len() as f64
                    };
                    (bc, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(pos[a.1].cmp(&pos[b.1])));
            order[l] = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, &v) in order[l].iter().enumerate() {
                pos[v] = i;
            }
        }
        let c = count(&order, &pos);
        if c < best_c {
            best_c = c;
            best = order.clone();
        }
    }
    let order = best;
    set_pos(&order, &mut pos);
    // x: packed, then pulled towards the neighbours' barycenters
    let is_dummy = |v: usize| v >= n;
    let sep =
        |a: usize, b: usize| (vwidth[a] + vwidth[b]) / 2.0 + if is_dummy(a) || is_dummy(b) { DUMMY_GAP } else { GAP };
    let mut x = vec![0.0f64; nv];
    for l in &order {
        let mut at = 0.0;
        for (i, &v) in l.iter().enumerate() {
            if i > 0 {
                at += sep(l[i - 1], v);
            }
            x[v] = at;
        }
    }
    // center every layer on the widest one
    let span = |l: &Vec<usize>, x: &Vec<f64>| -> (f64, f64) {
        match (l.first(), l.last()) {
            (Some(&a), Some(&b)) => (x[a] - vwidth[a] / 2.0, x[b] + vwidth[b] / 2.0),
            _ => (0.0, 0.0),
        }
    };
    let widest = order.iter().map(|l| span(l, &x)).map(|(a, b)| b - a).fold(0.0, f64::max);
    for l in &order {
        let (a, b) = span(l, &x);
        let shift = (widest - (b - a)) / 2.0;
        for &v in l {
            x[v] += shift;
        }
    }
    for pass in 0..PASSES {
        let downward = pass % 2 == 0;
        let seq: Vec<usize> = if downward { (1..nl).collect() } else { (0..nl.saturating_sub(1)).rev().collect() };
        for l in seq {
            let layer = &order[l];
            if layer.is_empty() {
                continue;
            }
            let want: Vec<f64> = layer
                .iter()
                .map(|&v| {
                    let nb = if downward { &up[v] } else { &down[v] };
                    if nb.is_empty() {
                        x[v]
                    } else {
                        nb.iter().map(|&w| x[w]).sum::<f64>() / nb.len() as f64
                    }
                })
                .collect();
            let k = layer.len();
            let mut lr = want.clone();
            for i in 1..k {
                lr[i] = lr[i].max(lr[i - 1] + sep(layer[i - 1], layer[i]));
            }
            let mut rl = want;
            for i in (0..k.saturating_sub(1)).rev() {
                rl[i] = rl[i].min(rl[i + 1] - sep(layer[i], layer[i + 1]));
            }
            for i in 0..k {
                x[layer[i]] = (lr[i] + rl[i]) / 2.0;
            }
        }
    }
    let min_x = (0..nv).map(|v| x[v] - vwidth[v] / 2.0).fold(f64::INFINITY, f64::min);
    let min_x = if min_x.is_finite() { min_x } else { 0.0 };
    for xv in &mut x {
        *xv -= min_x;
    }
    let width = (0..nv).map(|v| x[v] + vwidth[v] / 2.0).fold(0.0, f64::max);
    // y: layers as tall as their tallest node
    let mut heights = vec![8.0f64; nl];
    for v in 0..n {
        heights[layer_of[v]] = heights[layer_of[v]].max(sizes[v].1);
    }
    let mut tops = vec![0.0f64; nl];
    let mut at = 0.0;
    for l in 0..nl {
        tops[l] = at;
        at += heights[l] + LAYER_GAP;
    }
    let height = (at - LAYER_GAP).max(0.0);
    let cy = |v: usize| tops[vlayer[v]] + heights[vlayer[v]] / 2.0;
    let centers: Vec<(f64, f64)> = (0..n).map(|v| (x[v], cy(v))).collect();
    let routes = chains
        .into_iter()
        .map(|chain| {
            let k = chain.len();
            chain
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let y = if v < n && i == 0 {
                        cy(v) + sizes[v].1 / 2.0
                    } else if v < n && i + 1 == k {
                        cy(v) - sizes[v].1 / 2.0
                    } else {
                        cy(v)
                    };
                    (x.get(v).copied().unwrap_or(0.0), y)
                })
                .collect()
        })
        .collect();
    Placed { centers, routes, width, height }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_crossings() {
        // a0→b1 and a1→b0 cross once
        assert_eq!(crossings(&mut [(0, 1), (1, 0)], 2), 1);
        assert_eq!(crossings(&mut [(0, 0), (1, 1)], 2), 0);
    }

    #[test]
    fn layers_by_longest_path_and_sources_next_to_their_reader() {
        // 0 → 1 → 2, and 3 → 2: 3 sits in layer 1
        let l = layers(4, &[(0, 1), (1, 2), (3, 2)]);
        assert_eq!(l, vec![0, 1, 2, 1]);
    }

    #[test]
    fn a_crossing_is_undone() {
        let sizes = vec![(40.0, 20.0); 4];
        // 0→3, 1→2: barycenter sweeps put 3 left of 2
        let p = layout(&sizes, &[(0, 3), (1, 2)]);
        assert!(p.centers[3].0 < p.centers[2].0);
        assert!(p.centers[0].1 < p.centers[3].1);
    }
}
