//! Regression tests: each bug found (by hand or by the differential test against NumPy) gets a test
//! named after its issue, with the expression that showed it.

use crate::util::{parse_npy, values, TestDir};

/// `dsk eval EXPR --format csv` → the printed values.
fn csv(t: &TestDir, args: &[&str]) -> Vec<String> {
    let mut a = vec!["eval"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--format", "csv"]);
    t.dsk(&a).ok().stdout().lines().map(|l| l.trim().to_string()).collect()
}

/// `dsk eval EXPR -o r.npy` → (dtype, shape, values as f64).
fn npy(t: &TestDir, args: &[&str]) -> (String, Vec<u64>, Vec<f64>) {
    let out = t.path("r.npy");
    let _ = std::fs::remove_file(&out);
    let mut a = vec!["eval"];
    a.extend_from_slice(args);
    let o = out.to_string_lossy().to_string();
    a.extend_from_slice(&["-o", &o]);
    t.dsk(&a).ok();
    let (d, s, bytes) = parse_npy(&std::fs::read(&out).unwrap_or_default());
    let v = values(&d, &bytes);
    (d, s, v)
}

#[test]
fn issue8_a_literal_reused_after_a_power_is_still_that_literal() {
    let t = TestDir::new();
    // x ** 2 folded its exponent literal; a later 2 resolved to the power node
    assert_eq!(csv(&t, &["(arange(4) ** 2) + 2"]), ["2", "3", "6", "11"]);
    assert_eq!(csv(&t, &["arange(4) ** 2 + 2 * arange(4)"]), ["0", "3", "8", "15"]);
    let (_, _, v) = npy(&t, &["arange(4) ** 0.5 + arange(4) * 0.5"]);
    let want: Vec<f64> = (0..4).map(|i| (i as f64).sqrt() + i as f64 * 0.5).collect();
    assert_eq!(v, want);
    assert_eq!(csv(&t, &["where(arange(4) ** 2 > 1, arange(4), 2)"]), ["2", "2", "2", "3"]);
    assert_eq!(csv(&t, &["clip(arange(4) ** 2, -1, 2)"]), ["0", "1", "2", "2"]);
    assert_eq!(csv(&t, &["arange(4) ** -1.0 * -1.0"]).len(), 4);
}

#[test]
fn issue8_dtypes_do_not_change_when_a_literal_repeats() {
    let t = TestDir::new();
    // where(..., b**2, -1) ** 2 became float64 for a float32 b
    let (d, _, v) = npy(&t, &["where(arange(3) > 0, arange(3, dtype='float32') ** 2, -1) ** 2"]);
    assert_eq!(d, "<f4");
    assert_eq!(v, [1.0, 1.0, 16.0]);
    // int16 ** 0.5 is float64 in NumPy (the promoted type), sqrt(int16) float32
    assert_eq!(npy(&t, &["arange(4, dtype='int16') ** 0.5"]).0, "<f8");
    assert_eq!(npy(&t, &["sqrt(arange(4, dtype='int16'))"]).0, "<f4");
    assert_eq!(npy(&t, &["arange(4, dtype='int16') ** -1.0"]).0, "<f8");
}

#[test]
fn issue8_nan_and_inf_literals_run_under_every_scheduler() {
    let t = TestDir::new();
    for sched in ["sync", "threads", "processes"] {
        let (d, _, v) = npy(&t, &["full((5,), nan, chunks=(2,)) + arange(5) * inf - inf", "--scheduler", sched]);
        assert_eq!(d, "<f8");
        assert!(v.iter().all(|x| x.is_nan()), "{sched}: {v:?}");
        let (_, _, v) = npy(&t, &["where(arange(5) > 2, inf, -inf) + 0 * arange(5)", "--scheduler", sched]);
        assert_eq!(v, [f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::INFINITY]);
        // reductions run in worker processes too
        let out = t.dsk(&["eval", "(arange(7) * inf).max()", "--scheduler", sched, "--workers", "2"]).ok().stdout();
        assert_eq!(out.trim(), "nan", "{sched}: 0 * inf is nan and max propagates it");
    }
}

#[test]
fn issue8_nan_and_inf_constants_stay_distinct() {
    let t = TestDir::new();
    // the structural key merged nan and inf into one node
    assert_eq!(csv(&t, &["where(arange(3) > 0, inf, nan) + 0 * arange(3)"]), ["nan", "inf", "inf"]);
    assert_eq!(csv(&t, &["minimum(arange(2) * 0 + inf, arange(2) * 0 - inf)"]), ["-inf", "-inf"]);
    assert_eq!(csv(&t, &["arange(2) * 0.0 + -0.0"]), ["0.0", "0.0"]);
}

#[test]
fn issue8_missing_arguments_are_named() {
    let t = TestDir::new();
    t.dsk(&["reduce", "x.zarr"]).fails(2, &["--op", "dsk reduce --help"]);
    t.dsk(&["create", "ones"]).fails(2, &["<OUT>", "dsk create ones --help"]);
    t.dsk(&["eval"]).fails(2, &["<EXPR>"]);
    t.dsk(&["eval", "1", "--scheduler", "foo"]).fails(2, &["possible values", "processes"]);
}

#[test]
fn issue8_array_results_go_to_files_by_one_rule() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "a.zarr", "--stop", "12", "--shape", "3,4", "--chunks", "2,3"]).ok();
    // reduce OUT.csv writes CSV (it wrote a Zarr directory named m.csv)
    t.dsk(&["reduce", "a.zarr", "m.csv", "--op", "sum", "--axis", "0"]).ok();
    assert_eq!(std::fs::read_to_string(t.path("m.csv")).unwrap_or_default(), "12\n15\n18\n21\n");
    let r = t.dsk(&["reduce", "a.zarr", "--op", "sum", "--axis", "1", "--format", "csv"]).ok();
    assert_eq!(r.stdout(), "6\n22\n38\n");
    t.dsk(&["transform", "a.zarr", "t.npy", "--expr", "x * 2"]).ok();
    let (d, s, b) = parse_npy(&std::fs::read(t.path("t.npy")).unwrap_or_default());
    assert_eq!((d.as_str(), s), ("<i8", vec![3, 4]));
    assert_eq!(values(&d, &b)[11], 22.0);
    t.dsk(&["eval", "x + 1", "x=a.zarr", "-o", "e.csv"]).ok();
    assert!(std::fs::read_to_string(t.path("e.csv")).unwrap_or_default().starts_with("1,2,3,4\n"));
    // an existing file is refused before anything is computed
    t.dsk(&["reduce", "a.zarr", "m.csv", "--op", "sum", "--axis", "0"]).fails(1, &["m.csv", "already exists"]);
    t.dsk(&["reduce", "a.zarr", "m.csv", "--op", "sum", "--axis", "0", "--format", "npy"])
        .fails(2, &["--format", "extension"]);
}

#[test]
fn issue8_shapes_whose_size_overflows_are_refused() {
    let t = TestDir::new();
    t.dsk(&["create", "ones", "b.zarr", "--shape", "4294967296,4294967296,4"]).fails(2, &["--shape", "2⁶³"]);
    t.dsk(&["create", "ones", "b.zarr", "--shape", "10,10", "--chunks", "4294967296,4294967296"])
        .fails(2, &["--chunks"]);
    t.dsk(&["eval", "ones((4294967296, 1)) + ones((1, 4294967296))", "-o", "x.zarr"]).fails_expr(&["2⁶³"]);
    t.dsk(&["eval", "ones((4294967296, 4294967296)).sum()"]).fails_expr(&["2⁶³"]);
    // an array whose metadata claims such a shape
    std::fs::create_dir(t.path("huge.zarr")).ok();
    std::fs::write(
        t.path("huge.zarr/zarr.json"),
        r#"{"zarr_format": 3, "node_type": "array", "shape": [4294967296, 4294967296, 4294967296],
            "data_type": "float64", "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1, 1]}},
            "chunk_key_encoding": {"name": "default"}, "fill_value": 0.0, "codecs": [{"name": "bytes"}]}"#,
    )
    .ok();
    t.dsk(&["info", "huge.zarr"]).fails(1, &["huge.zarr", "2⁶³"]);
    t.dsk(&["eval", "x.sum()", "x=huge.zarr"]).fails(1, &["huge.zarr", "2⁶³"]);
    assert!(!t.path("x.zarr").exists());
}

#[test]
fn issue8_an_unreadable_fill_value_is_an_error_not_zero() {
    let t = TestDir::new();
    let meta = |fill: &str| {
        format!(
            r#"{{"zarr_format": 3, "node_type": "array", "shape": [4], "data_type": "int16",
            "chunk_grid": {{"name": "regular", "configuration": {{"chunk_shape": [2]}}}},
            "chunk_key_encoding": {{"name": "default"}}, "fill_value": {fill}, "codecs": [{{"name": "bytes"}}]}}"#
        )
    };
    std::fs::create_dir(t.path("f.zarr")).ok();
    for bad in ["\"seven\"", "1.5", "70000", "[1]"] {
        std::fs::write(t.path("f.zarr/zarr.json"), meta(bad)).ok();
        t.dsk(&["eval", "x + 0", "x=f.zarr", "--format", "csv"]).fails(1, &["f.zarr", "fill value"]);
    }
    // a readable one is used (no chunk was ever written: every element is the fill value)
    std::fs::write(t.path("f.zarr/zarr.json"), meta("-7")).ok();
    assert_eq!(csv(&t, &["x + 0", "x=f.zarr"]), ["-7", "-7", "-7", "-7"]);
}

#[test]
fn issue8_type_strings_count_bytes_like_numpy() {
    let t = TestDir::new();
    assert_eq!(npy(&t, &["arange(3).astype('i8')"]).0, "<i8");
    assert_eq!(npy(&t, &["arange(3).astype('u1')"]).0, "|u1");
    assert_eq!(npy(&t, &["arange(3)", "--dtype", "f4"]).0, "<f4");
}

/// Bug classes the differential test found (tests/interop/difftest.py against NumPy 2.4); the
/// expected values are NumPy's.
#[test]
fn issue8_differential_findings_match_numpy() {
    let t = TestDir::new();
    let u8s = t.path("u.npy");
    std::fs::write(&u8s, crate::util::make_npy("|u1", &[3], false, &[0, 5, 200])).ok();
    t.dsk(&["create", "from-npy", "u.npy", "u.zarr", "--chunks", "2"]).ok();
    let u = ["u=u.zarr"];
    let with = |e: &str, extra: &[&str]| {
        let mut a = vec![e];
        a.extend_from_slice(extra);
        csv(&t, &a)
    };
    // unsigned arrays against negative or too large literals: compared by value, clip saturates
    assert_eq!(with("u >= -1", &u), ["True", "True", "True"]);
    assert_eq!(with("u == 300", &u), ["False", "False", "False"]);
    assert_eq!(with("-3 < u", &u), ["True", "True", "True"]);
    assert_eq!(with("clip(u, -1, 3)", &u), ["0", "3", "3"]);
    t.dsk(&["eval", "u + -1", "u=u.zarr"]).fails_expr(&["out of bounds for uint8"]);
    t.dsk(&["eval", "maximum(u, -1)", "u=u.zarr"]).fails_expr(&["out of bounds for uint8"]);
    // round with decimals (method and function), half to even in the array's precision
    assert_eq!(with("linspace(0.25, 2.5, 4).round(2)", &[]), ["0.25", "1.0", "1.75", "2.5"]);
    assert_eq!(with("round(full((2,), 0.25) * arange(1, 3), 1)", &[]), ["0.2", "0.5"]);
    assert_eq!(with("round(arange(15, 36, 10, dtype='int16'), -1)", &[]), ["20", "20", "40"]);
    // reciprocal keeps integers integral (C's 1 / x); of bool it is int8
    let (d, _, v) = npy(&t, &["reciprocal(arange(-2, 3, dtype='int16'))"]);
    assert_eq!((d.as_str(), v), ("<i2", vec![0.0, -1.0, 0.0, 1.0, 0.0]));
    assert_eq!(npy(&t, &["reciprocal(u > 0)", "u=u.zarr"]).0, "|i1");
    // full with a negative integer is int64
    assert_eq!(npy(&t, &["full((2,), -3)"]).0, "<i8");
    assert_eq!(with("full((2,), -3).astype('uint32')", &[]), ["4294967293", "4294967293"]);
    // nanvar / nanstd with ddof >= the count are NaN (var is inf)
    assert_eq!(with("arange(2.0).nanvar(ddof=2) + arange(1)", &[]), ["nan"]);
    assert_eq!(with("arange(2.0).var(ddof=2) + arange(1)", &[]), ["inf"]);
    // unary + and - on bools are refused, literal or not
    t.dsk(&["eval", "+(u > 0)", "u=u.zarr"]).fails_expr(&["bool"]);
    t.dsk(&["eval", "-(exp(e) > e)"]).fails_expr(&["bool"]);
    // bool ** 2 is square (int8); bool ** 3 is int64
    assert_eq!(npy(&t, &["(u > 0) ** 2", "u=u.zarr"]).0, "|i1");
    assert_eq!(npy(&t, &["(u > 0) ** 3", "u=u.zarr"]).0, "<i8");
    // a NumPy function of a literal is a float64 scalar, not a weak literal
    assert_eq!(npy(&t, &["sin(0) + arange(2, dtype='float32')"]).0, "<f8");
    assert_eq!(npy(&t, &["u + abs(-3)", "u=u.zarr"]).0, "<i8");
    // the operators of literals are Python's: 2 ** -1 is 0.5, 4 - 2 is the literal 2
    assert_eq!(t.dsk(&["eval", "2 ** -1"]).ok().stdout().trim(), "0.5");
    let (_, _, v) = npy(&t, &["full((1,), 3.7958178520202637, dtype='float32') ** (4 - 2)"]);
    let x = 3.7958178520202637f64 as f32;
    assert_eq!(v, [(x * x) as f64]);
    t.dsk(&["eval", "1 // 0"]).fails_expr(&["by zero"]);
    // float32 floor division in float32, as NumPy's npy_divmodf
    let (_, _, v) = npy(&t, &["1 // full((2,), 5.226872e-08, dtype='float32')"]);
    assert_eq!(v, [19131902.0, 19131902.0]);
    // floor and ceil of bool are bool (NumPy 2)
    assert_eq!(npy(&t, &["floor(u > 0)", "u=u.zarr"]).0, "|b1");
}

/// What the hostile review of the trustworthy-results work found (expected values are NumPy's).
#[test]
fn issue8_hostile_review_findings() {
    let t = TestDir::new();
    let mut ints = vec![];
    for v in [(1i64 << 53) + 1, i64::MAX, -5] {
        ints.extend_from_slice(&v.to_le_bytes());
    }
    let mut uints = vec![];
    for v in [1u64 << 53, 1u64 << 63, 3] {
        uints.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(t.path("i.npy"), crate::util::make_npy("<i8", &[3], false, &ints)).ok();
    std::fs::write(t.path("u.npy"), crate::util::make_npy("<u8", &[3], false, &uints)).ok();
    t.dsk(&["create", "from-npy", "i.npy", "i.zarr", "--chunks", "2"]).ok();
    t.dsk(&["create", "from-npy", "u.npy", "u.zarr", "--chunks", "2"]).ok();
    let iu = ["i=i.zarr", "u=u.zarr"];
    let with = |e: &str, extra: &[&str]| {
        let mut a = vec![e];
        a.extend_from_slice(extra);
        csv(&t, &a)
    };
    // int64 against uint64 compares exactly (not through float64)
    assert_eq!(with("i == u", &iu), ["False", "False", "False"]);
    assert_eq!(with("i < u", &iu), ["False", "True", "True"]);
    assert_eq!(with("u >= i", &iu), ["False", "True", "True"]);
    assert_eq!(with("i != u", &iu), ["True", "True", "True"]);
    // full() with a value its dtype cannot hold is refused
    t.dsk(&["eval", "full((3,), 300, dtype='uint8')", "--format", "csv"]).fails_expr(&["does not fit uint8"]);
    // var of finite data whose deviations overflow is inf, whatever the chunks
    std::fs::write(
        t.path("v.npy"),
        crate::util::make_npy(
            "<f8",
            &[4],
            false,
            &[1e308f64, -1e308, 1e308, -1e308].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        ),
    )
    .ok();
    t.dsk(&["create", "from-npy", "v.npy", "v1.zarr", "--chunks", "1"]).ok();
    assert_eq!(t.dsk(&["eval", "x.var()", "x=v1.zarr", "-q"]).ok().stdout().trim(), "inf");
    assert_eq!(t.dsk(&["eval", "x[:2].var()", "x=v1.zarr", "-q"]).ok().stdout().trim(), "inf");
    assert_eq!(t.dsk(&["eval", "x.var(ddof=nan)", "x=v1.zarr", "-q"]).ok().stdout().trim(), "nan");
    // round builds 10^d as NumPy does
    assert_eq!(with("round(full((1,), 6.999999999999999), 300)", &[]), ["6.999999999999999"]);
    assert_eq!(with("round(full((1,), 1e308), -300)", &[]), ["1.0000000000000002e308"]);
    // a cumsum of -0.0 stays -0.0 across chunks
    assert_eq!(with("(full((7,), -0.0).rechunk((2,))).cumsum()", &[]), ["-0.0"; 7]);
    // a step near -2^63 takes one element
    assert_eq!(with("arange(30)[::-9223372036854775806]", &[]), ["29"]);
    // clip: a bound that cannot bind is ignored, one that must is refused
    assert_eq!(with("clip(arange(3, dtype='uint8'), -5, 300)", &[]), ["0", "1", "2"]);
    t.dsk(&["eval", "clip(arange(3, dtype='uint8'), 300, 400)", "--format", "csv"]).fails_expr(&["out of bounds"]);
    // literal arithmetic works wherever a number is expected
    assert_eq!(with("arange(2*5)[2*3:10:1+1]", &[]), ["6", "8"]);
    assert_eq!(with("round(arange(3.0) / 3, 1+1)", &[]), ["0.0", "0.33", "0.67"]);
    t.dsk(&["eval", "2.0 ** 1024"]).fails_expr(&["overflows"]);
    t.dsk(&["eval", "007 + 1"]).fails_expr(&["leading zeros"]);
    // outputs: -o - is stdout; options that cannot apply are refused before computing
    let r = t.dsk(&["eval", "arange(3)", "-o", "-", "--format", "csv"]).ok();
    assert_eq!(r.stdout(), "0\n1\n2\n");
    t.dsk(&["eval", "arange(3)", "-o", "o.npy", "--shard", "2"]).fails(2, &["--shard"]);
    t.dsk(&["eval", "arange(3)", "-o", "o.zarr", "--format", "csv"]).fails(2, &["--format", "o.zarr"]);
    t.dsk(&["eval", "arange(3)", "-o", "o.npy/"]).fails(1, &["o.npy/"]);
    assert!(!t.path("o.npy").exists());
    // --overwrite never deletes files that are not part of the Zarr array
    t.dsk(&["create", "ones", "keep.zarr", "--shape", "4"]).ok();
    std::fs::write(t.path("keep.zarr/NOTES.txt"), "mine").ok();
    t.dsk(&["create", "zeros", "keep.zarr", "--shape", "4", "--overwrite"]).fails(1, &["keep.zarr", "not part"]);
    assert!(t.path("keep.zarr/NOTES.txt").exists());
    // a reserved name cannot name an input; negative --ddof parses
    t.dsk(&["eval", "x + 1", "True=i.zarr"]).fails(2, &["True"]);
    t.dsk(&["reduce", "i.zarr", "--op", "var", "--ddof", "-1"]).ok();
}
