//! Command-line scenarios, each checked on values read back (through `dsk export`, whose output is
//! parsed here independently) or on the exact error a user sees.

mod compute;
mod graph;
mod hostile;
mod plot;
mod regress;
mod robust;
mod util;

use std::fs;

use serde_json::Value;
use util::{fixtures, make_npy, parse_npy, values, TestDir};

/// Export `array` as npy and return (dtype, shape, values as f64).
pub(crate) fn read(t: &TestDir, array: &str) -> (String, Vec<u64>, Vec<f64>) {
    read_slice(t, array, None)
}

fn read_slice(t: &TestDir, array: &str, slice: Option<&str>) -> (String, Vec<u64>, Vec<f64>) {
    let mut args = vec!["export", array, "--format", "npy"];
    if let Some(s) = slice {
        args.extend(["--slice", s]);
    }
    let r = t.dsk(&args).ok();
    let (descr, shape, data) = parse_npy(&r.out.stdout);
    let v = values(&descr, &data);
    (descr, shape, v)
}

pub(crate) fn info_json(t: &TestDir, array: &str) -> Value {
    let r = t.dsk(&["info", array, "--json"]).ok();
    serde_json::from_slice(&r.out.stdout).expect("info --json prints JSON")
}

pub(crate) fn no_partial_left(t: &TestDir) {
    for e in fs::read_dir(t.root()).expect("list") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(!name.contains("partial"), "a partial output was left behind: {name}");
    }
}

// ---------------------------------------------------------------- create → export

#[test]
fn arange_reshaped_with_ragged_chunks_reads_back_exactly() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "a.zarr", "--stop", "63", "--shape", "7,9", "--chunks", "3,4", "--dtype", "int32"])
        .ok();
    let (descr, shape, v) = read(&t, "a.zarr");
    assert_eq!(descr, "<i4");
    assert_eq!(shape, vec![7, 9]);
    assert_eq!(v, (0..63).map(|i| i as f64).collect::<Vec<_>>());
}

#[test]
fn every_dtype_round_trips_through_create_and_export() {
    let t = TestDir::new();
    for (dtype, descr) in [
        ("bool", "|b1"),
        ("int8", "|i1"),
        ("int16", "<i2"),
        ("int32", "<i4"),
        ("int64", "<i8"),
        ("uint8", "|u1"),
        ("uint16", "<u2"),
        ("uint32", "<u4"),
        ("uint64", "<u8"),
        ("float32", "<f4"),
        ("float64", "<f8"),
    ] {
        let name = format!("{dtype}.zarr");
        let value = if dtype == "bool" { "true" } else { "7" };
        t.dsk(&[
            "create",
            "full",
            &name,
            "--shape",
            "5,3",
            "--chunks",
            "2,2",
            "--value",
            value,
            "--dtype",
            dtype,
            "--write-empty-chunks",
        ])
        .ok();
        let (d, shape, v) = read(&t, &name);
        assert_eq!(d, descr, "{dtype}");
        assert_eq!(shape, vec![5, 3]);
        let want = if dtype == "bool" { 1.0 } else { 7.0 };
        assert!(v.iter().all(|&x| x == want), "{dtype}: {v:?}");
        assert_eq!(info_json(&t, &name)["dtype"], dtype);
    }
}

#[test]
fn constant_arrays_store_no_chunks_but_read_back_their_value() {
    let t = TestDir::new();
    t.dsk(&["create", "ones", "o.zarr", "--shape", "10,10", "--chunks", "4,4"]).ok();
    assert!(!t.path("o.zarr/c").exists(), "no chunk should be written for a constant array");
    let (_, _, v) = read(&t, "o.zarr");
    assert_eq!(v, vec![1.0; 100]);
    t.dsk(&["create", "ones", "o2.zarr", "--shape", "10,10", "--chunks", "4,4", "--write-empty-chunks"]).ok();
    assert!(t.path("o2.zarr/c/2/2").is_file());
    assert_eq!(read(&t, "o2.zarr").2, vec![1.0; 100]);
}

#[test]
fn random_is_identical_for_any_chunking_and_worker_count() {
    let t = TestDir::new();
    for (name, chunks, workers) in [("a.zarr", "7,5", "1"), ("b.zarr", "3,11", "2"), ("c.zarr", "20,20", "3")] {
        t.dsk(&[
            "create",
            "random",
            name,
            "--shape",
            "20,13",
            "--chunks",
            chunks,
            "--dist",
            "normal",
            "--seed",
            "42",
            "--workers",
            workers,
        ])
        .ok();
    }
    let a = read(&t, "a.zarr").2;
    assert_eq!(a, read(&t, "b.zarr").2);
    assert_eq!(a, read(&t, "c.zarr").2);
    t.dsk(&["create", "random", "d.zarr", "--shape", "20,13", "--dist", "normal", "--seed", "43"]).ok();
    assert_ne!(a, read(&t, "d.zarr").2, "another seed gives other values");
}

#[test]
fn random_integers_respect_their_bounds() {
    let t = TestDir::new();
    t.dsk(&[
        "create", "random", "r.zarr", "--shape", "1000", "--dtype", "int8", "--low", "-5", "--high", "5", "--seed", "1",
    ])
    .ok();
    let v = read(&t, "r.zarr").2;
    assert!(v.iter().all(|&x| (-5.0..5.0).contains(&x)));
    assert!(v.contains(&-5.0) && v.contains(&4.0));
}

#[test]
fn from_npy_reads_c_and_fortran_order_and_stdin() {
    let t = TestDir::new();
    // a (3, 4) int16 array with values 10*i + j
    let c: Vec<u8> = (0..3).flat_map(|i| (0..4).map(move |j| 10 * i + j)).flat_map(|v: i16| v.to_le_bytes()).collect();
    let f: Vec<u8> = (0..4).flat_map(|j| (0..3).map(move |i| 10 * i + j)).flat_map(|v: i16| v.to_le_bytes()).collect();
    fs::write(t.path("c.npy"), make_npy("<i2", &[3, 4], false, &c)).expect("write");
    fs::write(t.path("f.npy"), make_npy("<i2", &[3, 4], true, &f)).expect("write");
    let want: Vec<f64> = (0..3).flat_map(|i| (0..4).map(move |j| (10 * i + j) as f64)).collect();
    t.dsk(&["create", "from-npy", "c.npy", "c.zarr", "--chunks", "2,3"]).ok();
    t.dsk(&["create", "from-npy", "f.npy", "f.zarr", "--chunks", "2,3"]).ok();
    assert_eq!(read(&t, "c.zarr"), ("<i2".into(), vec![3, 4], want.clone()));
    assert_eq!(read(&t, "f.zarr"), ("<i2".into(), vec![3, 4], want.clone()));
    let npy = make_npy("<i2", &[3, 4], false, &c);
    t.dsk_stdin(&["create", "from-npy", "-", "s.zarr"], Some(&npy)).ok();
    assert_eq!(read(&t, "s.zarr").2, want);
}

#[test]
fn from_npy_and_from_raw_read_big_endian() {
    let t = TestDir::new();
    let vals = [1.5f64, -2.25, f64::INFINITY, 1e300];
    let be: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    fs::write(t.path("b.npy"), make_npy(">f8", &[4], false, &be)).expect("write");
    fs::write(t.path("b.raw"), &be).expect("write");
    t.dsk(&["create", "from-npy", "b.npy", "b.zarr"]).ok();
    t.dsk(&["create", "from-raw", "b.raw", "r.zarr", "--dtype", "f8", "--shape", "2,2", "--byte-order", "big"]).ok();
    assert_eq!(read(&t, "b.zarr").2, vals.to_vec());
    assert_eq!(read(&t, "r.zarr").2, vals.to_vec());
}

#[test]
fn sharded_arrays_with_every_codec_read_back() {
    let t = TestDir::new();
    for codec in ["none", "zstd", "zstd:9", "gzip:1", "blosc", "blosc:zstd:3", "blosc:lz4hc:9"] {
        let name = format!("{}.zarr", codec.replace(':', "_"));
        t.dsk(&[
            "create", "arange", &name, "--stop", "120", "--shape", "10,12", "--chunks", "3,4", "--shard", "6,8",
            "--codec", codec,
        ])
        .ok();
        assert_eq!(read(&t, &name).2, (0..120).map(|i| i as f64).collect::<Vec<_>>(), "{codec}");
        let info = info_json(&t, &name);
        assert_eq!(info["chunks"], serde_json::json!([3, 4]));
        assert_eq!(info["shards"], serde_json::json!([6, 8]));
    }
}

#[test]
fn empty_and_zero_dimensional_arrays() {
    let t = TestDir::new();
    t.dsk(&["create", "zeros", "e.zarr", "--shape", "0,5"]).ok();
    assert_eq!(read(&t, "e.zarr"), ("<f8".into(), vec![0, 5], vec![]));
    t.dsk(&["create", "full", "s.zarr", "--shape", "", "--value", "2.5", "--write-empty-chunks"]).ok();
    assert_eq!(read(&t, "s.zarr"), ("<f8".into(), vec![], vec![2.5]));
    let csv = t.dsk(&["export", "s.zarr", "--format", "csv"]).ok().stdout();
    assert_eq!(csv, "2.5\n");
}

#[test]
fn overwrite_replaces_an_existing_array() {
    let t = TestDir::new();
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4"]).ok();
    t.dsk(&["create", "zeros", "x.zarr", "--shape", "4"]).fails(1, &["already exists", "--overwrite"]);
    assert_eq!(read(&t, "x.zarr").2, vec![1.0; 4]);
    t.dsk(&["create", "arange", "x.zarr", "--stop", "4", "--overwrite"]).ok();
    assert_eq!(read(&t, "x.zarr").2, vec![0.0, 1.0, 2.0, 3.0]);
    no_partial_left(&t);
}

// ---------------------------------------------------------------- export

#[test]
fn export_slices_follow_numpy_indexing() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "a.zarr", "--stop", "63", "--shape", "7,9", "--chunks", "3,4"]).ok();
    let at = |i: i64, j: i64| (i * 9 + j) as f64;
    // x[::-3, 1:3]
    let (_, shape, v) = read_slice(&t, "a.zarr", Some("::-3, 1:3"));
    assert_eq!(shape, vec![3, 2]);
    assert_eq!(v, vec![at(6, 1), at(6, 2), at(3, 1), at(3, 2), at(0, 1), at(0, 2)]);
    // x[-1] drops the first axis
    let (_, shape, v) = read_slice(&t, "a.zarr", Some("-1"));
    assert_eq!(shape, vec![9]);
    assert_eq!(v, (0..9).map(|j| at(6, j)).collect::<Vec<_>>());
    // x[2:100, ::4] clips the stop
    let (_, shape, v) = read_slice(&t, "a.zarr", Some("2:100, ::4"));
    assert_eq!(shape, vec![5, 3]);
    assert_eq!(v[..3], [at(2, 0), at(2, 4), at(2, 8)]);
    // x[5:2] is empty
    assert_eq!(read_slice(&t, "a.zarr", Some("5:2")).1, vec![0, 9]);
    // x[..., 8:2:-3]
    let (_, shape, v) = read_slice(&t, "a.zarr", Some("..., 8:2:-3"));
    assert_eq!(shape, vec![7, 2]);
    assert_eq!(v[..2], [at(0, 8), at(0, 5)]);
}

#[test]
fn export_streams_in_bounded_memory_with_small_blocks() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "a.zarr", "--stop", "6000", "--shape", "60,100", "--chunks", "7,9"]).ok();
    // 8 KiB of memory: blocks of a fraction of a band of chunks, still the whole array in order
    let r = t.dsk(&["export", "a.zarr", "--memory", "8KiB", "--format", "npy"]).ok();
    let (d, shape, data) = parse_npy(&r.out.stdout);
    assert_eq!(shape, vec![60, 100]);
    assert_eq!(values(&d, &data), (0..6000).map(|i| i as f64).collect::<Vec<_>>());
    // blocks never so small that a chunk is decoded more than 16 times (the CI once spent an hour
    // exporting 9 MB in blocks of one element); below that the export is refused with a bound
    // that was checked to work
    let plan = t.dsk(&["export", "a.zarr", "--memory", "8KiB", "--format", "npy", "--explain"]).ok().stdout();
    let tasks: u64 = plan.split(" tasks,").next().and_then(|s| s.split_whitespace().last()).unwrap().parse().unwrap();
    assert!(tasks <= 9 * 16, "{tasks} blocks:\n{plan}");
    let err =
        t.dsk(&["export", "a.zarr", "--memory", "1KiB", "--format", "npy"]).fails(1, &["raise --memory to"]).stderr();
    let m = err.split("raise --memory to ").nth(1).and_then(|s| s.split(',').next()).unwrap().to_string();
    let r = t.dsk(&["export", "a.zarr", "--memory", &m, "--format", "npy"]).ok();
    assert_eq!(values(&d, &parse_npy(&r.out.stdout).2), (0..6000).map(|i| i as f64).collect::<Vec<_>>());
}

#[test]
fn export_csv_and_raw_and_file_output() {
    let t = TestDir::new();
    t.dsk(&["create", "linspace", "l.zarr", "--start", "0", "--stop", "1", "--num", "5", "--shape", "5,1"]).ok();
    assert_eq!(t.dsk(&["export", "l.zarr", "--format", "csv"]).ok().stdout(), "0.0\n0.25\n0.5\n0.75\n1.0\n");
    t.dsk(&["create", "full", "n.zarr", "--shape", "2,2", "--value", "nan", "--dtype", "float32"]).ok();
    assert_eq!(t.dsk(&["export", "n.zarr", "--format", "csv"]).ok().stdout(), "nan,nan\nnan,nan\n");
    t.dsk(&["export", "l.zarr", "--format", "raw", "-o", "l.bin"]).ok();
    let raw = fs::read(t.path("l.bin")).expect("read");
    assert_eq!(raw.len(), 5 * 8);
    assert_eq!(f64::from_le_bytes(raw[8..16].try_into().expect("8")), 0.25);
    t.dsk(&["export", "l.zarr", "-o", "l.npy"]).ok();
    assert_eq!(parse_npy(&fs::read(t.path("l.npy")).expect("read")).1, vec![5, 1]);
    t.dsk(&["export", "l.zarr", "-o", "l.npy"]).fails(1, &["already exists"]);
    t.dsk(&["export", "l.zarr", "-o", "l.npy", "--overwrite"]).ok();
    no_partial_left(&t);
}

#[test]
fn a_closed_pipe_ends_export_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let t = TestDir::new();
    t.dsk(&["create", "arange", "a.zarr", "--stop", "2000000"]).ok();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsk"))
        .args(["export", "a.zarr", "--format", "csv"])
        .current_dir(t.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dsk");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    assert_eq!(line, "0\n");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------- info

#[test]
fn info_reports_what_dask_shows_and_more() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "r.zarr", "--shape", "100,40", "--chunks", "30,25", "--dimension-names", "y,x"]).ok();
    let j = info_json(&t, "r.zarr");
    for key in [
        "zarr_format",
        "shape",
        "chunks",
        "dtype",
        "fill_value",
        "codecs",
        "nchunks",
        "nbytes",
        "nbytes_stored",
        "chunks_per_axis",
        "chunk_bytes",
        "compression_ratio",
        "dimension_names",
    ] {
        assert!(j.get(key).is_some(), "info --json lacks {key}: {j}");
    }
    assert_eq!(j["nchunks"], 8);
    assert_eq!(j["chunks_per_axis"], serde_json::json!([4, 2]));
    assert_eq!(j["nbytes"], 32000);
    assert_eq!(j["dimension_names"], serde_json::json!(["y", "x"]));
    let text = t.dsk(&["info", "r.zarr"]).ok().stdout();
    for needle in ["Zarr v3", "(100, 40)", "float64", "8 chunks", "31.25 KiB", "blosc", "y, x"] {
        assert!(text.contains(needle), "info text lacks {needle:?}:\n{text}");
    }
}

#[test]
fn progress_json_emits_documented_events() {
    let t = TestDir::new();
    let r = t.dsk(&["create", "random", "r.zarr", "--shape", "50,50", "--chunks", "10,10", "--progress", "json"]).ok();
    let events: Vec<Value> = r.stderr().lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"stage_start"));
    assert!(kinds.contains(&"progress") && kinds.contains(&"stage_end"));
    assert_eq!(kinds.last(), Some(&"summary"));
    let last_progress = events.iter().rev().find(|e| e["event"] == "progress").expect("progress");
    assert_eq!(last_progress["done"], 25);
    assert_eq!(last_progress["tasks"], 25);
}

// ---------------------------------------------------------------- fixtures written by zarr-python

#[test]
fn every_fixture_written_by_zarr_python_reads_back_equal() {
    let t = TestDir::new();
    let dir = fixtures();
    let manifest: Value = serde_json::from_slice(&fs::read(dir.join("manifest.json")).expect("fixtures/manifest.json"))
        .expect("manifest JSON");
    let entries = manifest.as_array().expect("a list");
    assert!(entries.len() >= 10, "expected a variety of fixtures");
    for e in entries {
        let name = e["name"].as_str().expect("name");
        let array = dir.join("arrays").join(format!("{name}.zarr"));
        let array = array.to_str().expect("utf-8 path");
        let (descr, shape, v) = read(&t, array);
        let expected = fs::read(dir.join("expected").join(format!("{name}.npy"))).expect("expected npy");
        let (edescr, eshape, edata) = parse_npy(&expected);
        assert_eq!((descr.as_str(), &shape), (edescr.as_str(), &eshape), "{name}");
        let ev = values(&edescr, &edata);
        assert_eq!(v.len(), ev.len(), "{name}");
        for (a, b) in v.iter().zip(&ev) {
            assert!(a == b || (a.is_nan() && b.is_nan()), "{name}: {a} != {b}");
        }
        let info = info_json(&t, array);
        assert_eq!(info["zarr_format"], e["zarr_format"], "{name}");
        assert_eq!(info["chunks"], e["chunks"], "{name}");
        assert_eq!(info["dtype"], e["dtype"], "{name}");
    }
}

// ---------------------------------------------------------------- errors: one line, right code, nothing left behind

#[test]
fn error_missing_input_path() {
    let t = TestDir::new();
    t.dsk(&["info", "nope.zarr"]).fails(1, &["nope.zarr", "does not exist"]);
    t.dsk(&["export", "nope.zarr"]).fails(1, &["nope.zarr", "does not exist"]);
    t.dsk(&["create", "from-npy", "nope.npy", "x.zarr"]).fails(1, &["nope.npy"]);
}

#[test]
fn error_directory_that_is_not_an_array() {
    let t = TestDir::new();
    fs::create_dir(t.path("plain")).expect("mkdir");
    t.dsk(&["info", "plain"]).fails(1, &["plain", "not a Zarr array"]);
    fs::create_dir(t.path("g.zarr")).expect("mkdir");
    fs::write(t.path("g.zarr/zarr.json"), r#"{"zarr_format": 3, "node_type": "group"}"#).expect("write");
    t.dsk(&["export", "g.zarr"]).fails(1, &["g.zarr", "is a Zarr group"]);
}

#[test]
fn error_malformed_metadata() {
    let t = TestDir::new();
    fs::create_dir(t.path("m.zarr")).expect("mkdir");
    fs::write(t.path("m.zarr/zarr.json"), "{\"zarr_format\": 3, \"shape\": [").expect("write");
    t.dsk(&["info", "m.zarr"]).fails(1, &["zarr.json", "malformed JSON"]);
    fs::write(t.path("m.zarr/zarr.json"), r#"{"zarr_format": 3, "node_type": "array", "shape": [-1]}"#).expect("write");
    t.dsk(&["export", "m.zarr"]).fails(1, &["zarr.json", "shape"]);
}

#[test]
fn error_unknown_dtype_and_codec() {
    let t = TestDir::new();
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4", "--dtype", "float128"])
        .fails(2, &["--dtype", "float128", "float64"]);
    // complex arrays come from expressions
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4", "--dtype", "complex128"])
        .fails(2, &["--dtype", "complex128", "real arrays", "1j"]);
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4", "--codec", "lzma"]).fails(2, &["--codec", "lzma", "zstd"]);
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4", "--codec", "zstd:99"]).fails(2, &["--codec", "zstd level"]);
    no_partial_left(&t);
}

#[test]
fn error_chunk_rank_and_bad_extents() {
    let t = TestDir::new();
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4,4", "--chunks", "2"])
        .fails(2, &["--chunks", "one extent per axis"]);
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4,4", "--chunks", "2,0"]).fails(2, &["--chunks", "zero"]);
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4,-4"]).fails(2, &["--shape", "negative"]);
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4,4", "--chunks", "2,2", "--shard", "3,4"])
        .fails(2, &["--shard", "multiple"]);
    t.dsk(&["create", "ones", "x.zarr"]).fails(2, &["--shape", "required"]);
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4", "--memory", "lots"]).fails(2, &["--memory"]);
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4", "--workers", "0"]).fails(2, &["--workers"]);
    t.dsk(&["create", "bogus", "x.zarr"]).fails(2, &["bogus"]);
    no_partial_left(&t);
}

#[test]
fn error_output_exists_and_overwrite_refuses_non_arrays() {
    let t = TestDir::new();
    fs::create_dir(t.path("data")).expect("mkdir");
    fs::write(t.path("data/precious.txt"), "keep me").expect("write");
    t.dsk(&["create", "ones", "data", "--shape", "4"]).fails(1, &["data", "already exists"]);
    t.dsk(&["create", "ones", "data", "--shape", "4", "--overwrite"]).fails(1, &["data", "not a Zarr array"]);
    assert_eq!(fs::read_to_string(t.path("data/precious.txt")).expect("still there"), "keep me");
    fs::write(t.path("file.zarr"), "not a dir").expect("write");
    t.dsk(&["create", "ones", "file.zarr", "--shape", "4", "--overwrite"]).fails(1, &["file.zarr"]);
    assert_eq!(fs::read_to_string(t.path("file.zarr")).expect("still there"), "not a dir");
    no_partial_left(&t);
}

#[test]
fn error_output_parent_missing() {
    let t = TestDir::new();
    t.dsk(&["create", "ones", "no/such/dir/x.zarr", "--shape", "4"]).fails(1, &["does not exist", "mkdir -p"]);
    t.dsk(&["create", "ones", "x.zarr", "--shape", "4"]).ok();
    t.dsk(&["export", "x.zarr", "-o", "missing/x.npy"]).fails(1, &["does not exist"]);
}

#[test]
fn error_read_only_output_directory() {
    let t = TestDir::new();
    // root ignores permission bits: use a directory no one can write to instead
    let is_root = unsafe { libc::geteuid() } == 0;
    let out = if is_root {
        "/proc/dsk-test.zarr".to_string()
    } else {
        let ro = t.path("ro");
        fs::create_dir(&ro).expect("mkdir");
        let mut p = fs::metadata(&ro).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o555);
        fs::set_permissions(&ro, p).expect("chmod");
        ro.join("x.zarr").to_string_lossy().into_owned()
    };
    t.dsk(&["create", "ones", &out, "--shape", "4"]).fails(1, &["cannot create"]);
}

#[test]
fn error_truncated_npy_leaves_no_output() {
    let t = TestDir::new();
    let data: Vec<u8> = (0..12u32).flat_map(|v| (v as f64).to_le_bytes()).collect();
    let mut npy = make_npy("<f8", &[3, 4], false, &data);
    npy.truncate(npy.len() - 20);
    fs::write(t.path("t.npy"), &npy).expect("write");
    t.dsk(&["create", "from-npy", "t.npy", "t.zarr"]).fails(1, &["t.npy", "truncated"]);
    assert!(!t.path("t.zarr").exists());
    fs::write(t.path("h.npy"), &npy[..30]).expect("write");
    t.dsk(&["create", "from-npy", "h.npy", "h.zarr"]).fails(1, &["h.npy"]);
    fs::write(t.path("x.npy"), b"hello").expect("write");
    t.dsk(&["create", "from-npy", "x.npy", "x.zarr"]).fails(1, &["x.npy", "not a valid .npy"]);
    t.dsk(&["create", "from-raw", "t.npy", "r.zarr", "--dtype", "f8", "--shape", "100,100"]).fails(1, &["truncated"]);
    no_partial_left(&t);
}

#[test]
fn error_memory_bound_too_small_for_one_chunk() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "x.zarr", "--shape", "1000,1000", "--chunks", "1000,1000", "--memory", "1MiB"])
        .fails(1, &["--memory", "smaller chunks, e.g. --chunks"]);
    no_partial_left(&t);
}

#[test]
fn error_bad_export_requests() {
    let t = TestDir::new();
    t.dsk(&["create", "zeros", "z.zarr", "--shape", "2,2,2"]).ok();
    t.dsk(&["export", "z.zarr", "--format", "csv"]).fails(2, &["csv", "2-D"]);
    t.dsk(&["export", "z.zarr", "--slice", "5"]).fails(2, &["--slice", "out of bounds"]);
    t.dsk(&["export", "z.zarr", "--slice", "::0"]).fails(2, &["--slice", "zero"]);
    t.dsk(&["export", "z.zarr", "--slice", "0,0,0,0"]).fails(2, &["--slice", "too many"]);
    t.dsk(&["export", "z.zarr", "--format", "xml"]).fails(2, &["xml"]);
}

#[test]
fn a_damaged_chunk_file_is_reported_with_its_chunk() {
    let t = TestDir::new();
    for codec in ["zstd", "none", "gzip"] {
        let name = format!("d_{codec}.zarr");
        t.dsk(&["create", "random", &name, "--shape", "8,8", "--chunks", "4,4", "--codec", codec]).ok();
        std::fs::write(t.path(&format!("{name}/c/1/0")), b"not a chunk").expect("write");
        t.dsk(&["export", &name]).fails(1, &[&name, "chunk", "damaged"]);
        t.dsk(&["eval", "x.sum()", &format!("x={name}")]).fails(1, &["chunk (1, 0)"]);
    }
}

#[test]
fn an_interrupted_run_removes_its_partial_output() {
    use std::process::{Command, Stdio};
    let t = TestDir::new();
    for (k, sched) in ["threads", "processes"].into_iter().enumerate() {
        let out_name = format!("big{k}.zarr");
        let child = Command::new(env!("CARGO_BIN_EXE_dsk"))
            .args(["create", "random", &out_name, "--shape", "40000,4000", "--chunks", "500,500", "--workers", "2"])
            .args(["--scheduler", sched, "--work-dir", "."])
            .current_dir(t.root())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dsk");
        std::thread::sleep(std::time::Duration::from_millis(600));
        let sent = std::time::Instant::now();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{sched}: {err}");
        assert!(err.contains("interrupted"), "{err}");
        // the run stops between tasks (workers included), not at the end of the stage
        assert!(sent.elapsed() < std::time::Duration::from_secs(20), "{sched}: took {:?}", sent.elapsed());
        assert!(!t.path(&out_name).exists());
        no_partial_left(&t);
        // the work directory (the plan file of the worker processes) is gone too
        let left: Vec<_> = fs::read_dir(t.root())
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("dsk-"))
            .collect();
        assert!(left.is_empty(), "{sched}: {left:?}");
    }
}

#[test]
fn completion_scripts_for_every_shell() {
    let t = TestDir::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = t.dsk(&["completions", shell]).ok().stdout();
        assert!(out.contains("transform") && out.contains("--executor"), "{shell}: {out:.200}");
    }
    // the bash script is valid bash
    let script = t.path("dsk.bash");
    fs::write(&script, t.dsk(&["completions", "bash"]).ok().stdout()).unwrap();
    let st = std::process::Command::new("bash").arg("-n").arg(&script).status().unwrap();
    assert!(st.success());
    t.dsk(&["completions", "tcsh"]).fails(2, &["possible values"]);
}

#[test]
fn exit_codes_are_the_documented_ones() {
    // docs/commands.md's table lists exactly the codes dsk uses
    let doc = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/commands.md")).expect("read docs");
    let codes: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| exit code |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap_or("").trim())
        .collect();
    assert_eq!(codes, ["0", "1", "2", "130"]);
    let t = TestDir::new();
    t.dsk(&["create", "ones", "a.zarr", "--shape", "4,3", "-q"]).ok();
    t.dsk(&["reduce", "a.zarr", "--op", "sum"]).ok();
    t.dsk(&["reduce", "nope.zarr", "--op", "sum"]).fails(1, &["nope.zarr", "does not exist"]);
    t.dsk(&["reduce", "a.zarr", "--op", "summ"]).fails(2, &["--op", "unknown reduction"]);
    t.dsk(&["reduce", "a.zarr", "--op", "sum", "--bogus"]).fails(2, &["--bogus"]);
    t.dsk(&["eval", "x +", "x=a.zarr"]).fails_expr(&["EXPR"]);
    // 130: see interrupted_runs_leave_nothing (SIGTERM mid-run)
}

#[test]
fn json_results_for_scripts() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "r.zarr", "--stop", "6", "--shape", "2,3", "-q"]).ok();
    let one: Value =
        serde_json::from_str(&t.dsk(&["reduce", "r.zarr", "--op", "sum", "--json", "-q"]).ok().stdout()).expect("json");
    assert_eq!(one, serde_json::json!({"shape": [], "dtype": "int64", "value": 15}));
    let rows: Value =
        serde_json::from_str(&t.dsk(&["eval", "where(x > 4, x / 0, x / x)", "x=r.zarr", "--json", "-q"]).ok().stdout())
            .expect("json");
    assert_eq!(rows["shape"], serde_json::json!([2, 3]));
    assert_eq!(rows["value"], serde_json::json!([["NaN", 1.0, 1.0], [1.0, 1.0, "Infinity"]]));
    // a 0/0 NaN, inf and bools
    let v: Value = serde_json::from_str(
        &t.dsk(&["eval", "(x - 1) / (x - 1)[0, 1] > 0", "x=r.zarr", "--format", "json", "-q"]).ok().stdout(),
    )
    .expect("json");
    assert_eq!(v["dtype"], "bool");
    assert_eq!(v["value"][1], serde_json::json!([true, true, true]));
    // empty results keep their nesting
    let e: Value =
        serde_json::from_str(&t.dsk(&["eval", "x[:, :0]", "x=r.zarr", "--json", "-q"]).ok().stdout()).expect("json");
    assert_eq!(e["value"], serde_json::json!([[], []]));
    // an output file named .json, by the same rule for reduce and eval
    t.dsk(&["reduce", "r.zarr", "s.json", "--op", "sum", "--axis", "0", "-q"]).ok();
    let s: Value = serde_json::from_str(&fs::read_to_string(t.path("s.json")).expect("read")).expect("json");
    assert_eq!(s["value"], serde_json::json!([3, 5, 7]));
    t.dsk(&["reduce", "r.zarr", "s.csv", "--op", "sum", "--axis", "0", "-q"]).ok();
    assert_eq!(fs::read_to_string(t.path("s.csv")).expect("read"), "3\n5\n7\n");
    t.dsk(&["reduce", "r.zarr", "--op", "sum", "--json", "--format", "csv"]).fails(2, &["--json"]);
}

#[test]
fn manual_pages_for_every_subcommand() {
    let t = TestDir::new();
    t.dsk(&["man", "pages"]).ok();
    let mut names: Vec<String> = fs::read_dir(t.path("pages"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in ["dsk.1", "dsk-create.1", "dsk-create-random.1", "dsk-reduce.1", "dsk-ls.1", "dsk-completions.1"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("worker")), "the internal worker has no page: {names:?}");
    let page = fs::read_to_string(t.path("pages/dsk-reduce.1")).expect("read");
    assert!(page.starts_with(".ie") || page.contains(".TH dsk-reduce 1"), "{}", &page[..200.min(page.len())]);
    assert!(page.contains("dimension\\-names") && page.contains("Examples"), "options and examples on the page");
}

#[test]
fn color_follows_the_option_and_no_color() {
    let t = TestDir::new();
    let esc = |args: &[&str], env: Option<(&str, &str)>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dsk"));
        c.args(args).current_dir(t.root());
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().expect("run");
        out.stdout.contains(&0x1b) || out.stderr.contains(&0x1b)
    };
    assert!(esc(&["reduce", "--help", "--color", "always"], None));
    assert!(!esc(&["reduce", "--help", "--color=never"], None));
    assert!(!esc(&["reduce", "--help"], Some(("NO_COLOR", "1"))));
    t.dsk(&["info", "x.zarr", "--color", "sometimes"]).fails(2, &["--color", "auto, always, never"]);
}
