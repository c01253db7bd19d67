//! `dsk transform` and `dsk eval`: values, types, schedulers, plans and errors.

use crate::util::{parse_npy, values, TestDir};
use crate::{info_json, no_partial_left, read};

fn arange(t: &TestDir, name: &str, shape: &str, chunks: &str, dtype: &str) {
    let n: u64 = shape.split(',').map(|s| s.parse::<u64>().unwrap_or(0)).product();
    t.dsk(&[
        "create",
        "arange",
        name,
        "--stop",
        &n.to_string(),
        "--shape",
        shape,
        "--chunks",
        chunks,
        "--dtype",
        dtype,
    ])
    .ok();
}

#[test]
fn transform_cos_squared_matches_libm_within_an_ulp() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "9,7", "4,3", "float64");
    t.dsk(&["transform", "a.zarr", "c.zarr", "--expr", "cos(x)**2"]).ok();
    let (d, shape, v) = read(&t, "c.zarr");
    assert_eq!((d.as_str(), shape), ("<f8", vec![9, 7]));
    for (i, got) in v.iter().enumerate() {
        let want = (i as f64).cos().powi(2);
        assert!((got - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1e-300), "{i}: {got} vs {want}");
    }
    let info = info_json(&t, "c.zarr");
    assert_eq!(info["chunks"], serde_json::json!([4, 3]), "chunks default to the input's");
}

#[test]
fn mirrored_product_is_exact_on_ragged_chunks() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "7,5", "3,2", "int64");
    t.dsk(&["eval", "x * x[::-1, ::-1]", "x=a.zarr", "-o", "m.zarr"]).ok();
    let v = read(&t, "m.zarr").2;
    for i in 0..7 {
        for j in 0..5 {
            let a = (i * 5 + j) as f64;
            let b = ((6 - i) * 5 + (4 - j)) as f64;
            assert_eq!(v[i * 5 + j], a * b);
        }
    }
}

#[test]
fn schedulers_and_worker_counts_agree_bit_for_bit() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "r.zarr", "--shape", "37,23", "--chunks", "10,7", "--dist", "normal", "--seed", "3"])
        .ok();
    let expr = "where(x > 0, sqrt(x) * cos(x[::-1, :]), exp(x) - x.T.T ** 2) / 3";
    let mut outs = vec![];
    for (i, (sched, workers)) in
        [("sync", "1"), ("threads", "1"), ("threads", "2"), ("threads", "3"), ("processes", "2"), ("processes", "3")]
            .into_iter()
            .enumerate()
    {
        let name = format!("o{i}.zarr");
        t.dsk(&["eval", expr, "x=r.zarr", "-o", &name, "--scheduler", sched, "--workers", workers]).ok();
        let r = t.dsk(&["export", &name]).ok();
        outs.push((sched, workers, r.out.stdout));
    }
    for o in &outs[1..] {
        assert!(o.2 == outs[0].2, "{} with {} workers differs from sync", o.0, o.1);
    }
    no_partial_left(&t);
}

#[test]
fn random_in_expressions_equals_create_random() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "a.zarr", "--shape", "20,13", "--chunks", "7,5", "--seed", "42"]).ok();
    t.dsk(&["eval", "random((20, 13), chunks=(4, 4), seed=42)", "-o", "b.zarr"]).ok();
    assert_eq!(read(&t, "a.zarr").2, read(&t, "b.zarr").2);
    t.dsk(&[
        "create", "random", "n.zarr", "--shape", "11", "--dist", "normal", "--mean", "2", "--std", "3", "--seed", "5",
    ])
    .ok();
    t.dsk(&["eval", "normal((11,), mean=2, std=3, seed=5)", "-o", "m.zarr"]).ok();
    assert_eq!(read(&t, "n.zarr").2, read(&t, "m.zarr").2);
}

#[test]
fn eval_prints_scalars_that_read_back() {
    let t = TestDir::new();
    assert_eq!(t.dsk(&["eval", "1 + 2.5"]).ok().stdout(), "3.5\n");
    assert_eq!(t.dsk(&["eval", "0.1 + 0.2"]).ok().stdout(), "0.30000000000000004\n");
    assert_eq!(t.dsk(&["eval", "7 // 2"]).ok().stdout(), "3\n");
    assert_eq!(t.dsk(&["eval", "2 > 1"]).ok().stdout(), "True\n");
    arange(&t, "a.zarr", "3,4", "2,2", "int32");
    assert_eq!(t.dsk(&["eval", "x[2, 3] * 10", "x=a.zarr"]).ok().stdout(), "110\n");
    assert_eq!(t.dsk(&["eval", "x[-1, -1] / 2", "x=a.zarr"]).ok().stdout(), "5.5\n");
}

#[test]
fn eval_writes_arrays_to_npy_csv_and_stdout() {
    let t = TestDir::new();
    assert_eq!(
        t.dsk(&["eval", "ones((2, 3), chunks=(1, 2)) * 2", "--format", "csv"]).ok().stdout(),
        "2.0,2.0,2.0\n2.0,2.0,2.0\n"
    );
    arange(&t, "a.zarr", "3,4", "2,3", "int16");
    t.dsk(&["eval", "x.T + 1", "x=a.zarr", "-o", "t.npy"]).ok();
    let (d, shape, data) = parse_npy(&std::fs::read(t.path("t.npy")).expect("read"));
    assert_eq!((d.as_str(), shape), ("<i2", vec![4, 3]));
    assert_eq!(values(&d, &data)[..4], [1.0, 5.0, 9.0, 2.0]);
    t.dsk(&["eval", "x * 2", "x=a.zarr"]).fails(2, &["-o", "(3, 4)"]);
}

#[test]
fn result_dtypes_follow_numpy() {
    let t = TestDir::new();
    arange(&t, "i.zarr", "10", "4", "int16");
    for (expr, dtype) in [
        ("sqrt(x)", "float32"),
        ("x / 2", "float64"),
        ("x // 3", "int16"),
        ("x + 1", "int16"),
        ("x + 1.5", "float64"),
        ("x > 3", "bool"),
        ("x.astype('uint8') + 1", "uint8"),
        ("x ** 2", "int16"),
    ] {
        t.dsk(&["eval", expr, "x=i.zarr", "-o", "o.zarr", "--overwrite"]).ok();
        assert_eq!(info_json(&t, "o.zarr")["dtype"], dtype, "{expr}");
    }
    t.dsk(&["transform", "i.zarr", "f.zarr", "--expr", "x / 3", "--dtype", "float32"]).ok();
    assert_eq!(info_json(&t, "f.zarr")["dtype"], "float32");
}

#[test]
fn more_inputs_broadcast_against_each_other() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "4,3", "3,2", "float64");
    arange(&t, "b.zarr", "3", "2", "float64");
    t.dsk(&["transform", "a.zarr", "s.zarr", "--expr", "x - y * 10", "--in", "y=b.zarr"]).ok();
    let v = read(&t, "s.zarr").2;
    let want: Vec<f64> = (0..12).map(|k| k as f64 - ((k % 3) as f64) * 10.0).collect();
    assert_eq!(v, want);
}

#[test]
fn explain_prints_the_plan_and_writes_nothing() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "8,6", "4,3", "float64");
    let out = t
        .dsk(&["transform", "a.zarr", "c.zarr", "--expr", "x * x[::-1, ::-1]", "--explain", "--memory", "64MiB"])
        .ok()
        .stdout();
    for needle in
        ["plan of dsk transform", "index", "multiply", "1 transform", "projected peak", "reads", "chunks (4, 3)"]
    {
        assert!(out.contains(needle), "explain lacks {needle:?}:\n{out}");
    }
    assert!(!t.path("c.zarr").exists());
    no_partial_left(&t);
}

#[test]
fn mirror_pairs_decode_each_chunk_once() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "8,6", "4,3", "float64");
    let out = t.dsk(&["eval", "x * x[::-1, ::-1]", "x=a.zarr", "-o", "m.zarr", "--explain"]).ok().stdout();
    // 4 chunks, paired with their mirrors: 2 tasks, 4 decodes in all
    assert!(out.contains("4 output chunks (4, 3), up to 2 per task"), "{out}");
    assert!(out.contains("2 tasks,"), "{out}");
    assert!(out.contains("4 source chunk decodes of 4 chunks"), "{out}");
}

#[test]
fn expression_errors_point_at_the_column() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "3,4", "2,2", "float64");
    t.dsk(&["transform", "a.zarr", "c.zarr", "--expr", "cos(x**2"]).fails_expr(&["--expr", "expected ')'"]);
    t.dsk(&["transform", "a.zarr", "c.zarr", "--expr", "x + y"]).fails_expr(&["unknown name 'y'", "y=path"]);
    t.dsk(&["transform", "a.zarr", "c.zarr", "--expr", "x + x[0:2]"]).fails_expr(&["broadcast"]);
    t.dsk(&["transform", "a.zarr", "c.zarr", "--expr", "x & 1"]).fails_expr(&["bitwise"]);
    t.dsk(&["eval", "x[5, 0]", "x=a.zarr"]).fails_expr(&["out of bounds"]);

    t.dsk(&["eval", "x", "x"]).fails(2, &["NAME=PATH"]);
    t.dsk(&["eval", "x", "x=missing.zarr"]).fails(1, &["missing.zarr", "does not exist"]);
    assert!(!t.path("c.zarr").exists());
    no_partial_left(&t);
}

#[test]
fn a_task_that_cannot_fit_the_memory_bound_is_refused_before_writing() {
    let t = TestDir::new();
    t.dsk(&["create", "zeros", "z.zarr", "--shape", "2000,2000", "--chunks", "2000,2000"]).ok();
    // the input's 30 MiB chunks cannot fit 8 MiB: rechunk it first (checked to fit)
    let r = t.dsk(&["transform", "z.zarr", "o.zarr", "--expr", "x + 1", "--memory", "8MiB"]);
    let err = r.fails(1, &["--memory", "rechunk it first"]).stderr();
    let cmd = err.split("e.g. ").nth(1).and_then(|s| s.split(", or").next()).unwrap_or_default().to_string();
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    t.dsk(&args).ok();
    t.dsk(&["transform", "smaller.zarr", "o.zarr", "--expr", "x + 1", "--memory", "8MiB"]).ok();
    // output chunks too large for the bound: smaller output chunks (checked to fit)
    let r = t.dsk(&["transform", "z.zarr", "o2.zarr", "--expr", "x + 1", "--memory", "80MiB", "--chunks", "2000,2000"]);
    let err = r.fails(1, &["--memory", "try --chunks"]).stderr();
    let chunks =
        err.split("try --chunks ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default().to_string();
    t.dsk(&["transform", "z.zarr", "o2.zarr", "--expr", "x + 1", "--memory", "80MiB", "--chunks", &chunks]).ok();
    assert!(!t.path("o.zarr.partial").exists());
    no_partial_left(&t);
}

#[test]
fn a_crashed_worker_process_is_reported_with_its_task() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "8,6", "2,3", "float64");
    let r = t.dsk_env(
        &["transform", "a.zarr", "o.zarr", "--expr", "x + 1", "--scheduler", "processes", "--workers", "2"],
        None,
        &[("DSK_TEST_WORKER_ABORT_AT", "5")],
    );
    let r = r.fails(1, &["worker process", "task 5", "signal"]);
    let _ = r;
    assert!(!t.path("o.zarr").exists());
    no_partial_left(&t);
}

#[test]
fn output_chunks_smaller_than_input_chunks_read_back_exactly() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "9,7", "9,7", "int32");
    t.dsk(&["eval", "x + 0", "x=a.zarr", "-o", "s.zarr", "--chunks", "2,3"]).ok();
    assert_eq!(read(&t, "s.zarr").2, (0..63).map(|i| i as f64).collect::<Vec<_>>());
}

// ---------------------------------------------------------------- reductions

#[test]
fn the_lesson_mean_of_a_mirrored_product_of_ones_is_exactly_one() {
    let t = TestDir::new();
    let r = t.dsk(&["eval", "(x * x[::-1, ::-1]).mean()", "-q"]);
    let _ = r;
    let out = t
        .dsk(&[
            "eval",
            "(ones((2000, 400), chunks=(100, 100)) * ones((2000, 400), chunks=(100, 100))[::-1, ::-1]).mean()",
            "-q",
        ])
        .ok()
        .stdout();
    assert_eq!(out, "1.0\n");
    let out = t.dsk(&["eval", "ones((3000, 500), chunks=(700, 300)).sum()", "-q"]).ok().stdout();
    assert_eq!(out, "1500000.0\n");
}

#[test]
fn reduce_prints_a_number_for_shell_scripts() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "3,4", "2,3", "int64");
    assert_eq!(t.dsk(&["reduce", "a.zarr", "--op", "sum", "-q"]).ok().stdout(), "66\n");
    assert_eq!(t.dsk(&["reduce", "a.zarr", "--op", "mean", "-q"]).ok().stdout(), "5.5\n");
    assert_eq!(t.dsk(&["reduce", "a.zarr", "--op", "argmax", "-q"]).ok().stdout(), "11\n");
    t.dsk(&["reduce", "a.zarr", "m.zarr", "--op", "max", "--axis", "-1"]).ok();
    assert_eq!(read(&t, "m.zarr").2, vec![3.0, 7.0, 11.0]);
    t.dsk(&["reduce", "a.zarr", "k.zarr", "--op", "min", "--axis", "0", "--keepdims"]).ok();
    assert_eq!(info_json(&t, "k.zarr")["shape"], serde_json::json!([1, 4]));
    t.dsk(&["reduce", "a.zarr", "c.zarr", "--op", "cumsum", "--axis", "1"]).ok();
    assert_eq!(read(&t, "c.zarr").2[..4], [0.0, 1.0, 3.0, 6.0]);
}

#[test]
fn spilling_partials_gives_the_same_answer() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "r.zarr", "--shape", "300,200", "--chunks", "7,9", "--dist", "normal", "--seed", "1"])
        .ok();
    for expr in ["x.std(axis=0)", "x.mean(axis=1)", "x.argmax(axis=0)", "x.sum()"] {
        t.dsk(&["eval", expr, "x=r.zarr", "-o", "a.npy", "--overwrite"]).ok();
        // a tiny bound: partials spill to the work dir, merged 2 at a time
        let e = t
            .dsk(&[
                "eval",
                expr,
                "x=r.zarr",
                "-o",
                "b.npy",
                "--overwrite",
                "--memory",
                "200KiB",
                "--split-every",
                "2",
                "--explain",
            ])
            .ok()
            .stdout();
        assert!(expr == "x.sum()" || e.contains("spilled to the work dir"), "{expr}: {e}");
        t.dsk(&["eval", expr, "x=r.zarr", "-o", "b.npy", "--overwrite", "--memory", "200KiB", "--split-every", "2"])
            .ok();
        let a = std::fs::read(t.path("a.npy")).expect("a");
        let b = std::fs::read(t.path("b.npy")).expect("b");
        let (da, sa, va) = parse_npy(&a);
        let (db, sb, vb) = parse_npy(&b);
        assert_eq!((da, sa), (db, sb), "{expr}");
        let (va, vb) = (values("<f8", &va), values("<f8", &vb));
        for (x, y) in va.iter().zip(&vb) {
            assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{expr}: {x} vs {y}");
        }
    }
    no_partial_left(&t);
}

#[test]
fn reductions_agree_across_schedulers_and_workers() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "r.zarr", "--shape", "50,40", "--chunks", "9,11", "--seed", "4"]).ok();
    let expr = "(x - x.mean(axis=0)).max() + x.var(ddof=1) + x.sum(axis=1).min()";
    let want = t.dsk(&["eval", expr, "x=r.zarr", "--scheduler", "sync", "-q"]).ok().stdout();
    for (s, w) in [("threads", "1"), ("threads", "2"), ("processes", "2"), ("processes", "3")] {
        let got = t.dsk(&["eval", expr, "x=r.zarr", "--scheduler", s, "--workers", w, "-q"]).ok().stdout();
        assert_eq!(got, want, "{s} × {w}");
    }
}

#[test]
fn reduction_mistakes_are_refused() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "3,4", "2,3", "float64");
    t.dsk(&["reduce", "a.zarr", "--op", "median"]).fails(2, &["--op", "median"]);
    t.dsk(&["reduce", "a.zarr", "--op", "sum", "--axis", "5"]).fails_expr(&["axis 5 is out of bounds"]);
    t.dsk(&["reduce", "a.zarr", "--op", "mean", "--ddof", "1"]).fails(2, &["--ddof"]);
    t.dsk(&["eval", "x[0:0].max()", "x=a.zarr"]).fails_expr(&["zero-size"]);
    t.dsk(&["eval", "x.argmax(axis=(0, 1))", "x=a.zarr"]).ok();
    assert_eq!(t.dsk(&["eval", "x[0:0].sum()", "x=a.zarr", "-q"]).ok().stdout(), "0.0\n");
    assert_eq!(t.dsk(&["eval", "x[0:0].mean()", "x=a.zarr", "-q"]).ok().stdout(), "nan\n");
}

// ---------------------------------------------------------------- rechunk

fn export_bytes(t: &TestDir, name: &str) -> Vec<u8> {
    t.dsk(&["export", name, "--format", "raw"]).ok().out.stdout
}

#[test]
fn rechunk_is_bit_exact_in_one_pass_and_through_an_intermediate() {
    let t = TestDir::new();
    // values with a NaN payload and -0.0, which any arithmetic would disturb
    let mut raw: Vec<u8> = vec![];
    for i in 0..(37 * 23 * 5u64) {
        let v = match i % 7 {
            0 => f64::from_bits(0x7ff8_0000_0000_0123),
            1 => -0.0,
            _ => i as f64 * 0.37,
        };
        raw.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(t.path("x.raw"), &raw).expect("write");
    t.dsk(&["create", "from-raw", "x.raw", "x.zarr", "--dtype", "float64", "--shape", "37,23,5", "--chunks", "10,7,2"])
        .ok();
    t.dsk(&["rechunk", "x.zarr", "a.zarr", "--chunks", "37,3,5"]).ok();
    let e =
        t.dsk(&["rechunk", "x.zarr", "b.zarr", "--chunks", "37,3,5", "--memory", "112KiB", "--explain"]).ok().stdout();
    // too tight for whole bands: cut bands (chunks on a cut decoded twice) or two passes
    assert!(e.contains("decoded by both sides") || (e.contains("pass 1") && e.contains("rechunk-2")), "{e}");
    t.dsk(&["rechunk", "x.zarr", "b.zarr", "--chunks", "37,3,5", "--memory", "112KiB"]).ok();
    assert_eq!(export_bytes(&t, "a.zarr"), raw);
    assert_eq!(export_bytes(&t, "b.zarr"), raw);
    assert_eq!(info_json(&t, "b.zarr")["chunks"], serde_json::json!([37, 3, 5]));
    no_partial_left(&t);
}

#[test]
fn rechunk_keeps_every_dtype() {
    let t = TestDir::new();
    for dtype in ["bool", "int8", "uint16", "int32", "uint64", "float32"] {
        let a = format!("{dtype}.zarr");
        let b = format!("{dtype}_r.zarr");
        if dtype == "bool" {
            t.dsk(&["create", "random", &a, "--shape", "19,11", "--chunks", "4,5", "--dtype", "bool"]).ok();
        } else {
            arange(&t, &a, "19,11", "4,5", dtype);
        }
        t.dsk(&["rechunk", &a, &b, "--chunks", "7,11", "--memory", "100KiB"]).ok();
        assert_eq!(export_bytes(&t, &a), export_bytes(&t, &b), "{dtype}");
    }
}

#[test]
fn reencode_changes_codec_or_sharding_without_changing_values() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "x.zarr", "--shape", "40,30", "--chunks", "10,10", "--dist", "normal"]).ok();
    t.dsk(&["rechunk", "x.zarr", "b.zarr", "--codec", "blosc:zstd:5"]).ok();
    t.dsk(&["rechunk", "x.zarr", "s.zarr", "--shard", "20,30"]).ok();
    let want = export_bytes(&t, "x.zarr");
    assert_eq!(export_bytes(&t, "b.zarr"), want);
    assert_eq!(export_bytes(&t, "s.zarr"), want);
    assert_eq!(info_json(&t, "b.zarr")["chunks"], serde_json::json!([10, 10]));
    assert_eq!(info_json(&t, "b.zarr")["codecs"][1]["name"], "blosc");
    assert_eq!(info_json(&t, "s.zarr")["shards"], serde_json::json!([20, 30]));
    t.dsk(&["rechunk", "x.zarr", "n.zarr"]).fails(2, &["nothing to change"]);
    t.dsk(&["rechunk", "x.zarr", "b.zarr", "--codec", "none"]).fails(1, &["already exists"]);
}

#[test]
fn rechunk_inside_an_expression_plans_as_one_computation() {
    let t = TestDir::new();
    arange(&t, "a.zarr", "60,40", "10,10", "float64");
    let direct = t.dsk(&["eval", "x.sum(axis=0).sum()", "x=a.zarr", "-q"]).ok().stdout();
    let via = t.dsk(&["eval", "x.rechunk((60, 5)).sum(axis=0).sum()", "x=a.zarr", "-q"]).ok().stdout();
    assert_eq!(direct, via);
    let e = t.dsk(&["eval", "x.rechunk((60, 5)).sum(axis=0)", "x=a.zarr", "--explain"]).ok().stdout();
    assert!(e.contains("rechunk(60, 5)") && e.contains("chunks (60, 5)"), "{e}");
}

#[test]
fn sharded_outputs_equal_unsharded_ones_bit_for_bit() {
    // dsk writes a shard one inner chunk at a time, forgetting source chunks as it goes: every kind
    // of stage (element-wise, flipped and transposed reads, reductions, scans, broadcasts against
    // a reduction) gives the same bytes as the unsharded output, on ragged shapes
    let t = TestDir::new();
    t.dsk(&["create", "random", "x.zarr", "--shape", "61,47", "--chunks", "10,9"]).ok();
    t.dsk(&["create", "random", "s.zarr", "--shape", "61,47", "--chunks", "7,5", "--shard", "21,15"]).ok();
    for (expr, chunks, shard) in [
        ("x * 2 + s", "8,6", "24,18"),
        ("x[::-1, ::-1] * s", "8,6", "16,12"),
        ("x.T", "5,7", "15,21"),
        ("x.sum(axis=1) + s.max(axis=1)", "6", "18"),
        ("cumsum(s, axis=0)", "8,6", "24,12"),
        ("x - x.mean(axis=0)", "8,6", "24,18"),
        ("astype(x * 100, 'int16')", "8,6", "16,18"),
    ] {
        t.dsk(&["eval", expr, "x=x.zarr", "s=s.zarr", "-o", "plain.zarr", "--chunks", chunks, "--overwrite"]).ok();
        t.dsk(&[
            "eval",
            expr,
            "x=x.zarr",
            "s=s.zarr",
            "-o",
            "sharded.zarr",
            "--chunks",
            chunks,
            "--shard",
            shard,
            "--overwrite",
        ])
        .ok();
        let plain = t.dsk(&["export", "plain.zarr", "--format", "npy"]).ok().out.stdout;
        let sharded = t.dsk(&["export", "sharded.zarr", "--format", "npy"]).ok().out.stdout;
        assert!(plain == sharded, "{expr}: the sharded output differs");
        assert_eq!(
            info_json(&t, "sharded.zarr")["shards"].as_array().map(|a| a.len()),
            Some(chunks.split(',').count())
        );
    }
}
