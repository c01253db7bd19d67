use dsk::grid::Region;
use dsk::kernels::random::{fill_region, Dist};
use std::time::Instant;
fn main() {
    let n = 1_000_000u64;
    let mut out = vec![0.0f64; n as usize];
    for dist in [Dist::Uniform { low: 0.0, high: 1.0 }, Dist::Normal { mean: 0.0, std: 1.0 }] {
        let t = Instant::now();
        for i in 0..20 {
            fill_region(&dist, i, &[n], &Region::full(&[n]), &mut out);
        }
        println!("{dist:?}: {:.2} ns/elem", t.elapsed().as_secs_f64() / (20.0 * n as f64) * 1e9);
    }
}
