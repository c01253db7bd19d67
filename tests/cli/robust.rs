//! Nothing lost, nothing wrong (issue 10): sizes that overflow, paths that are not UTF-8, outputs
//! inside their inputs, signals and limits, error texts that say what is wrong, and a full disk.
//! Every failure is one line naming the file or argument, with a non-zero exit and no panic.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use crate::util::TestDir;
use crate::{info_json, no_partial_left, read};

/// Metadata of a Zarr v3 array written by hand (as zarr-python writes it), without any chunk.
fn zarr_json(t: &TestDir, name: &str, shape: &str, dtype: &str, chunks: &str) {
    let dir = t.path(name);
    fs::create_dir_all(&dir).expect("mkdir");
    let meta = format!(
        r#"{{"zarr_format":3,"node_type":"array","shape":{shape},"data_type":"{dtype}",
        "chunk_grid":{{"name":"regular","configuration":{{"chunk_shape":{chunks}}}}},
        "chunk_key_encoding":{{"name":"default","configuration":{{"separator":"/"}}}},
        "fill_value":0,"codecs":[{{"name":"bytes","configuration":{{"endian":"little"}}}}],"attributes":{{}}}}"#
    );
    fs::write(dir.join("zarr.json"), meta).expect("write zarr.json");
}

#[test]
fn issue10_shapes_beyond_64_bits_are_refused_in_one_line() {
    let t = TestDir::new();
    let axes64 = vec!["2"; 64].join(",");
    for shape in ["9223372036854775808", "4294967296,4294967296", axes64.as_str()] {
        t.dsk(&["create", "ones", "a.zarr", "--shape", shape]).fails(2, &["--shape", "larger than 2⁶³ bytes"]);
    }
    let axes65 = vec!["1"; 65].join(",");
    t.dsk(&["create", "ones", "a.zarr", "--shape", &axes65]).fails(2, &["--shape", "65 axes"]);
    // sizes computed from arguments: arange's length, linspace's num, a cast, a scan, a reduction
    t.dsk(&["eval", "arange(0,1e300,1e-300)", "--explain"]).fails_expr(&["more than 2⁶³ elements"]);
    t.dsk(&["create", "arange", "a.zarr", "--stop", "1e300", "--step", "1e-300"]).fails(2, &["--step", "2⁶³"]);
    t.dsk(&["eval", "linspace(0,1,9223372036854775807)", "--explain"]).fails_expr(&["larger than 2⁶³ bytes"]);
    t.dsk(&["create", "linspace", "a.zarr", "--start", "0", "--stop", "1", "--num", "18446744073709551615"])
        .fails(2, &["--num", "2⁶³"]);
    zarr_json(&t, "wide.zarr", "[4611686018427387903,2]", "uint8", "[1000000,2]");
    for e in ["x.sum(axis=1)", "x.astype('float64')", "x.cumsum(axis=0)"] {
        t.dsk(&["eval", e, "x=wide.zarr", "-o", "o.zarr", "--explain"]).fails_expr(&["larger than 2⁶³ bytes"]);
    }
    t.dsk(&["transform", "wide.zarr", "o.zarr", "--expr", "x", "--dtype", "float64", "--explain"])
        .fails(2, &["--dtype", "2⁶³"]);
    assert!(!t.path("a.zarr").exists() && !t.path("o.zarr").exists());
    no_partial_left(&t);
}

#[test]
fn issue10_a_huge_array_of_metadata_only_is_described_sliced_and_planned() {
    let t = TestDir::new();
    // 2⁶³ − 1 bytes: the largest array dsk accepts, with no chunk written (all fill value)
    zarr_json(&t, "huge.zarr", "[9223372036854775807]", "uint8", "[1000000]");
    let j = info_json(&t, "huge.zarr");
    assert_eq!(j["nbytes"].as_u64(), Some(9223372036854775807));
    assert_eq!(j["nchunks"].as_u64(), Some(9223372036855));
    t.dsk(&["info", "huge.zarr"]).ok();
    let r = t.dsk(&["export", "huge.zarr", "--slice", "-3:", "--format", "csv"]).ok();
    assert_eq!(r.stdout(), "0\n0\n0\n");
    for e in ["x[::2].sum()", "x.sum()"] {
        let r = t.dsk(&["eval", e, "x=huge.zarr", "--explain"]).ok();
        assert!(r.stdout().contains("reads 4.00 EiB") || r.stdout().contains("reads 8.00 EiB"), "{}", r.stdout());
    }
    t.dsk(&["reduce", "huge.zarr", "--op", "sum", "--explain"]).ok();
    // too large to run here: refused before any work (the partials alone need more than any disk)
    let r = t.dsk_env(&["reduce", "huge.zarr", "--op", "sum"], None, &[("TMPDIR", t.root().to_str().unwrap_or("."))]);
    assert_ne!(r.out.status.code(), Some(0));
    assert_ne!(r.out.status.code(), Some(101));
    assert!(r.stderr().starts_with("dsk: error: ") && r.stderr().lines().count() == 1, "{}", r.stderr());
    // cast to a type twice as wide: still one line, never a panic
    t.dsk(&["eval", "x.cumsum()[-1]", "x=huge.zarr", "--explain"]).fails_expr(&["2⁶³"]);
    // shapes past 2⁶³ bytes in the metadata are refused by every command, info included
    zarr_json(&t, "over.zarr", "[4294967296,4294967296]", "uint8", "[1000,1000]");
    t.dsk(&["info", "over.zarr"]).fails(1, &["over.zarr", "2⁶³"]);
    t.dsk(&["reduce", "over.zarr", "--op", "sum"]).fails(1, &["over.zarr", "2⁶³"]);
}

#[test]
fn issue10_chunks_no_task_can_hold_are_refused_before_planning() {
    let t = TestDir::new();
    // one chunk of 1 EiB: describable, but no task can ever decode it
    zarr_json(&t, "giant.zarr", "[1152921504606846976]", "uint8", "[1152921504606846976]");
    t.dsk(&["info", "giant.zarr"]).ok();
    t.dsk(&["transform", "giant.zarr", "o.zarr", "--expr", "x+1", "--explain"]).fails(1, &["giant.zarr", "1 TiB"]);
    t.dsk(&["rechunk", "giant.zarr", "o.zarr", "--chunks", "1000", "--workers", "16", "--explain"])
        .fails(1, &["giant.zarr", "1 TiB"]);
    t.dsk(&["export", "giant.zarr", "--slice", "-3:"]).fails(1, &["giant.zarr", "1 TiB"]);
    // a rechunk plan is per axis: too many target chunks along one is refused, not allocated
    zarr_json(&t, "wide.zarr", "[4611686018427387903,2]", "uint8", "[1000000,2]");
    t.dsk(&["rechunk", "wide.zarr", "o.zarr", "--chunks", "1000,1", "--explain"])
        .fails(2, &["--chunks", "chunks along axis 0"]);
    t.dsk(&["rechunk", "wide.zarr", "o.zarr", "--chunks", "4611686018427387903,1", "--explain"])
        .fails(2, &["--chunks", "1 TiB"]);
    t.dsk(&["create", "ones", "o.zarr", "--shape", "10", "--workers", "100000"]).fails(2, &["--workers"]);
}

#[test]
fn issue10_a_path_that_is_not_utf8_works_end_to_end() {
    let t = TestDir::new();
    let os = |b: &'static [u8]| OsStr::from_bytes(b);
    let (bad, out, npy) = (os(b"bad\xffname.zarr"), os(b"out\xfe.zarr"), os(b"e\xff.npy"));
    t.dsk_os(&[os(b"create"), os(b"arange"), bad, os(b"--stop"), os(b"10"), os(b"--chunks"), os(b"4")]).ok();
    let r = t.dsk_os(&[os(b"info"), bad, os(b"--json")]).ok();
    let j: serde_json::Value = serde_json::from_slice(&r.out.stdout).expect("json");
    assert_eq!(j["shape"][0].as_u64(), Some(10));
    t.dsk_os(&[os(b"transform"), bad, out, os(b"--expr"), os(b"x*2"), os(b"--scheduler"), os(b"processes")]).ok();
    t.dsk_os(&[os(b"export"), out, os(b"-o"), npy]).ok();
    let (descr, shape, data) = crate::util::parse_npy(&fs::read(t.root().join(npy)).expect("read npy"));
    assert_eq!(shape, vec![10]);
    assert_eq!(crate::util::values(&descr, &data), (0..10).map(|i| 2.0 * i as f64).collect::<Vec<_>>());
    let mut named = b"x=".to_vec();
    named.extend_from_slice(out.as_bytes());
    let r = t.dsk_os(&[os(b"eval"), os(b"x.sum()"), OsStr::from_bytes(&named)]).ok();
    assert_eq!(r.stdout().trim(), "90");
    t.dsk_os(&[os(b"rechunk"), out, os(b"r\xff.zarr"), os(b"--chunks"), os(b"3")]).ok();
    fs::rename(t.root().join(os(b"r\xff.zarr")), t.path("r.zarr")).expect("rename");
    assert_eq!(read(&t, "r.zarr").2, (0..10).map(|i| 2.0 * i as f64).collect::<Vec<_>>());
    // an error about such a path is one line too
    t.dsk_os(&[os(b"info"), os(b"missing\xff.zarr")]).fails(1, &["missing", "does not exist"]);
    no_partial_left(&t);
}

#[test]
fn issue10_an_output_inside_or_equal_to_an_input_is_refused() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "s.zarr", "--stop", "12", "--chunks", "5"]).ok();
    t.dsk(&["transform", "s.zarr", "s.zarr/inner.zarr", "--expr", "x"])
        .fails(1, &["s.zarr/inner.zarr", "inside the input s.zarr"]);
    t.dsk(&["eval", "x+1", "x=s.zarr", "-o", "s.zarr/sub.zarr"])
        .fails(1, &["s.zarr/sub.zarr", "inside the input s.zarr"]);
    t.dsk(&["export", "s.zarr", "-o", "s.zarr/x.npy"]).fails(1, &["s.zarr/x.npy", "inside the input"]);
    // with --overwrite the output would replace the array being read: refused too, however named
    t.dsk(&["transform", "s.zarr", "./s.zarr", "--expr", "x*2", "--overwrite"])
        .fails(1, &["./s.zarr", "is the input s.zarr"]);
    t.dsk(&["eval", "x+1", "x=s.zarr", "-o", "s.zarr/../s.zarr", "--overwrite"]).fails(1, &["is the input s.zarr"]);
    std::os::unix::fs::symlink("s.zarr", t.path("link.zarr")).expect("symlink");
    t.dsk(&["rechunk", "link.zarr", "s.zarr", "--chunks", "3", "--overwrite"]).fails(1, &["is the input link.zarr"]);
    assert_eq!(read(&t, "s.zarr").2, (0..12).map(f64::from).collect::<Vec<_>>());
    assert_eq!(fs::read_dir(t.path("s.zarr")).expect("list").count(), 2, "zarr.json and c/ only");
    no_partial_left(&t);
}

#[test]
fn issue10_a_file_size_limit_is_an_error_not_a_kill() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "big.zarr", "--shape", "400000", "--chunks", "100000"]).ok();
    // ulimit -f 100: 100 KiB per file, less than one 800 KB chunk or the .npy
    let limited = |args: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -f 100 && exec \"$0\" {args}"))
            .arg(env!("CARGO_BIN_EXE_dsk"))
            .current_dir(t.root())
            .output()
            .expect("run sh");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args}: {err}");
        assert!(err.starts_with("dsk: error: ") && err.trim_end().lines().count() == 1, "{args}: {err}");
        assert!(err.contains("ulimit -f"), "{args}: {err}");
    };
    limited("transform big.zarr t.zarr --expr x*2 --codec none");
    limited("transform big.zarr t.zarr --expr x*2 --codec none --scheduler processes");
    limited("rechunk big.zarr t.zarr --chunks 200000 --codec none");
    limited("export big.zarr -o big.npy");
    assert!(!t.path("t.zarr").exists() && !t.path("big.npy").exists());
    no_partial_left(&t);
    for e in fs::read_dir(t.root()).expect("list") {
        let name = e.expect("entry").file_name();
        assert!(!name.to_string_lossy().starts_with(".big.npy"), "hidden partial left: {name:?}");
    }
}

#[test]
fn issue10_workers_beyond_the_tasks_start_no_more_than_the_tasks() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "s.zarr", "--stop", "12", "--chunks", "1"]).ok();
    let r = t
        .dsk(&[
            "transform",
            "s.zarr",
            "p.zarr",
            "--expr",
            "x*2",
            "--workers",
            "10000",
            "--scheduler",
            "processes",
            "--progress",
            "json",
        ])
        .ok();
    let summary = r.stderr().lines().last().map(str::to_string).unwrap_or_default();
    let j: serde_json::Value = serde_json::from_str(&summary).expect("summary event");
    assert!(j["workers"].as_u64().is_some_and(|w| (1..=12).contains(&w)), "{summary}");
    let start = std::time::Instant::now();
    t.dsk(&["transform", "s.zarr", "t.zarr", "--expr", "x*2", "--workers", "10000"]).ok();
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "10000 threads were started?");
    assert_eq!(read(&t, "t.zarr").2, (0..12).map(|i| 2.0 * f64::from(i)).collect::<Vec<_>>());
    t.dsk(&["reduce", "s.zarr", "--op", "sum", "--split-every", "0"]).fails(2, &["--split-every", "at least 2"]);
    t.dsk(&["reduce", "s.zarr", "--op", "sum", "--workers", "0"]).fails(2, &["--workers", "at least 1"]);
}

#[test]
fn issue10_errors_say_what_is_wrong_bad_fill_value_unreadable_input_missing_tmpdir() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "p.zarr", "--stop", "100", "--chunks", "10"]).ok();
    // a fill value that is not one of the dtype: the metadata is wrong, not a codec
    fs::create_dir_all(t.path("f.zarr")).expect("mkdir");
    let meta = fs::read_to_string(t.path("p.zarr/zarr.json")).expect("read");
    let mut j: serde_json::Value = serde_json::from_str(&meta).expect("json");
    j["fill_value"] = serde_json::json!("abc");
    fs::write(t.path("f.zarr/zarr.json"), j.to_string()).expect("write");
    for args in [&["info", "f.zarr"][..], &["export", "f.zarr"], &["reduce", "f.zarr", "--op", "sum"]] {
        let r = t.dsk(args).fails(1, &["f.zarr/zarr.json", "fill value"]);
        assert!(!r.stderr().to_lowercase().contains("codec"), "{}", r.stderr());
    }
    // the work directory comes from TMPDIR: the message says so
    let r = t.dsk_env(
        &["transform", "p.zarr", "q.zarr", "--expr", "x", "--scheduler", "processes"],
        None,
        &[("TMPDIR", "/nonexistent")],
    );
    r.fails(2, &["TMPDIR", "/nonexistent", "--work-dir"]);
    t.dsk(&["transform", "p.zarr", "q.zarr", "--expr", "x", "--scheduler", "processes", "--work-dir", "/nonexistent"])
        .fails(2, &["--work-dir", "/nonexistent"]);
    // an unreadable input is a read problem (root reads anything: drop to nobody with setpriv)
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = std::process::Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !root || !setpriv {
        eprintln!("skipped the permission checks: they need root and setpriv to run dsk as nobody");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str, m: u32| fs::set_permissions(t.path(p), fs::Permissions::from_mode(m)).expect("chmod");
    mode(".", 0o755);
    let as_nobody = |args: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", env!("CARGO_BIN_EXE_dsk")])
            .args(args)
            .current_dir(t.root())
            .output()
            .expect("run setpriv");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.starts_with("dsk: error: ") && err.trim_end().lines().count() == 1, "{err}");
        err
    };
    mode("p.zarr/c/3", 0o000);
    let err = as_nobody(&["export", "p.zarr", "--format", "csv"]);
    assert!(err.contains("p.zarr") && err.contains("read") && err.contains("chmod"), "{err}");
    assert!(!err.contains("write") && !err.contains("damaged"), "{err}");
    mode("p.zarr/c/3", 0o644);
    mode("p.zarr/zarr.json", 0o000);
    let err = as_nobody(&["info", "p.zarr"]);
    assert!(err.contains("p.zarr/zarr.json") && err.contains("cannot read") && err.contains("chmod"), "{err}");
    assert!(!err.contains("write"), "{err}");
    mode("p.zarr/zarr.json", 0o644);
}

/// A 2 MiB tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: std::path::PathBuf) -> Option<SmallDisk> {
        fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn issue10_a_full_disk_fails_cleanly_and_keeps_the_old_output() {
    let t = TestDir::new();
    let Some(disk) = SmallDisk::mount(t.path("full")) else {
        eprintln!("skipped: cannot mount a tmpfs here (the test needs root)");
        return;
    };
    // 8 MB of incompressible input, four times the disk
    t.dsk(&["create", "random", "src.zarr", "--shape", "1000000", "--chunks", "100000", "--codec", "none"]).ok();
    t.dsk(&["create", "arange", "full/keep.zarr", "--stop", "10"]).ok();
    fs::write(t.path("full/keep.npy"), b"old").expect("write");
    let runs: [&[&str]; 7] = [
        &["create", "random", "full/a.zarr", "--shape", "1000000", "--chunks", "100000", "--codec", "none"],
        &["transform", "src.zarr", "full/keep.zarr", "--expr", "x*2", "--overwrite", "--codec", "none"],
        &["transform", "src.zarr", "full/t.zarr", "--expr", "x+1", "--scheduler", "processes", "--codec", "none"],
        &["rechunk", "src.zarr", "full/r.zarr", "--chunks", "50000", "--codec", "none"],
        &["export", "src.zarr", "-o", "full/keep.npy", "--overwrite"],
        &["export", "src.zarr", "-o", "full/e.csv"],
        &["eval", "x*2", "x=src.zarr", "-o", "full/e.npy"],
    ];
    for args in runs {
        let r = t.dsk(args).fails(1, &["full/", "No space left on device"]);
        let out = args.iter().find(|a| a.starts_with("full/")).copied().unwrap_or("full/");
        assert!(r.stderr().contains(out), "{}", r.stderr());
        for e in fs::read_dir(&disk.dir).expect("list") {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(!name.contains("partial") && !name.contains("dsk-old"), "left behind by {args:?}: {name}");
            assert!(["keep.zarr", "keep.npy"].contains(&name.as_str()), "left behind by {args:?}: {name}");
        }
    }
    // the outputs that existed are intact
    assert_eq!(read(&t, "full/keep.zarr").2, (0..10).map(f64::from).collect::<Vec<_>>());
    assert_eq!(fs::read(t.path("full/keep.npy")).expect("read"), b"old");
    drop(disk);
}
