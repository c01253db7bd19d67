//! Micro-benchmarks of the generator and the vectorised math kernels (ns per element).
//! `cargo run --release --example gen_speed`
use dsk::grid::Region;
use dsk::kernels::elementwise::{f64_function, MapOp};
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
    let x = out.clone();
    for (name, op) in [("cos", MapOp::Cos), ("sin", MapOp::Sin), ("exp", MapOp::Exp), ("sqrt", MapOp::Sqrt)] {
        let t = Instant::now();
        for _ in 0..20 {
            f64_function(op, &x, &mut out);
        }
        println!("{name}: {:.2} ns/elem", t.elapsed().as_secs_f64() / (20.0 * n as f64) * 1e9);
    }
    let xa: Vec<f64> = x.iter().map(|v| v.abs() + 0.5).collect();
    let t = Instant::now();
    for _ in 0..20 {
        f64_function(MapOp::Log, &xa, &mut out);
    }
    println!("log: {:.2} ns/elem", t.elapsed().as_secs_f64() / (20.0 * n as f64) * 1e9);
    let t = Instant::now();
    let mut s = 0.0;
    for _ in 0..20 {
        for v in &x {
            s += v.cos();
        }
    }
    println!("libm cos: {:.2} ns/elem ({s:.1})", t.elapsed().as_secs_f64() / (20.0 * n as f64) * 1e9);
}
