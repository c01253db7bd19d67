//! Hostile and damaged stores (issue 10, "Nothing lost, nothing wrong"): whatever the files of an
//! array hold, dsk answers with one line naming the file and what to do — never a panic, a hang,
//! an allocation of all memory, or the fill value for a chunk that exists but cannot be read.

use std::fs;
use std::path::Path;

use crate::util::TestDir;

/// CRC-32C (Castagnoli), as the sharding index's `crc32c` codec stores it, written out here so
/// that the test does not share dsk's code.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// A 12×16 float64 arange with 3×4 chunks in 6×8 shards (4 inner chunks, index of 68 bytes at the
/// end of each shard file).
fn sharded(t: &TestDir, name: &str, codec: &str) {
    t.dsk(&[
        "create", "arange", name, "--stop", "192", "--shape", "12,16", "--chunks", "3,4", "--shard", "6,8", "--codec",
        codec,
    ])
    .ok();
}

/// Overwrite entry `i` of the index at the end of `shard` with (offset, length) and fix its
/// checksum, so that only the entry itself is wrong.
fn set_index_entry(shard: &Path, i: usize, offset: u64, len: u64) {
    let mut b = fs::read(shard).expect("read shard");
    let n = 4;
    let start = b.len() - (n * 16 + 4);
    b[start + i * 16..start + i * 16 + 8].copy_from_slice(&offset.to_le_bytes());
    b[start + i * 16 + 8..start + i * 16 + 16].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c(&b[start..start + n * 16]);
    let end = b.len();
    b[end - 4..].copy_from_slice(&crc.to_le_bytes());
    fs::write(shard, b).expect("write shard");
}

#[test]
fn issue10_absurd_shard_index_entries_are_errors_naming_the_shard() {
    let t = TestDir::new();
    for codec in ["none", "zstd"] {
        let name = format!("{codec}.zarr");
        sharded(&t, &name, codec);
        let shard = t.path(&name).join("c/0/0");
        let len = fs::metadata(&shard).expect("stat").len();
        let data_end = len - 68;
        let original = fs::read(&shard).expect("read");
        for (offset, length, what) in [
            (u64::MAX, 8, "half a missing-chunk marker"),
            (u64::MAX - 3, 8, "beyond the end"),
            (8, u64::MAX - 3, "more than an encoded inner chunk"),
            (u64::MAX - 3, u64::MAX - 4, "more than an encoded inner chunk"),
            (16, len, "beyond the end"),
            (len + 10, 8, "beyond the end"),
            (data_end - 4, 8, "overlaps the index"),
            (0, 0, "length 0"),
        ] {
            fs::write(&shard, &original).expect("restore");
            set_index_entry(&shard, 1, offset, length);
            // the whole array (shard read whole) and one inner chunk (shard read in part)
            for slice in [None, Some("0:3, 4:8")] {
                let mut args = vec!["export", name.as_str(), "--format", "npy"];
                if let Some(s) = slice {
                    args.extend(["--slice", s]);
                }
                t.dsk(&args).fails(1, &[&name, "c/0/0", "damaged shard", "inner chunk (0, 1)", what, "rewrite"]);
            }
            // chunks of other shards still read
            t.dsk(&["export", &name, "--slice", "6:12, 8:16", "--format", "csv"]).ok();
        }
        fs::write(&shard, &original).expect("restore");
        t.dsk(&["export", &name, "--format", "npy"]).ok();
    }
}

#[test]
fn issue10_a_truncated_shard_is_an_error_naming_it() {
    let t = TestDir::new();
    sharded(&t, "s.zarr", "none");
    let shard = t.path("s.zarr").join("c/1/0");
    let b = fs::read(&shard).expect("read");
    for keep in [0, 10, 67, b.len() - 1] {
        fs::write(&shard, &b[..keep]).expect("truncate");
        t.dsk(&["export", "s.zarr", "--format", "npy"]).fails(1, &["s.zarr", "c/1/0", "rewrite"]);
    }
}

/// Replace the chunk file `rel` of `array` with `make(path)`.
fn replace(t: &TestDir, array: &str, rel: &str, make: impl Fn(&Path)) {
    let p = t.path(array).join(rel);
    fs::remove_file(&p).expect("remove the chunk");
    make(&p);
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Arrays on each read path: plain bytes and zstd (dsk's direct chunk read), blosc (through zarrs),
/// sharded (through zarrs' shard decoder).
const LAYOUTS: [(&str, &[&str]); 4] = [
    ("raw.zarr", &["--codec", "none"]),
    ("zstd.zarr", &["--codec", "zstd"]),
    ("blosc.zarr", &["--codec", "blosc"]),
    ("shard.zarr", &["--codec", "zstd", "--shard", "4,4"]),
];

fn layouts(t: &TestDir) {
    for (name, extra) in LAYOUTS {
        let mut args = vec!["create", "arange", name, "--stop", "64", "--shape", "8,8", "--chunks", "4,4"];
        args.extend_from_slice(extra);
        t.dsk(&args).ok();
    }
}

#[test]
fn issue10_a_chunk_that_is_a_fifo_is_an_error_not_a_hang() {
    let t = TestDir::new();
    layouts(&t);
    for (name, _) in LAYOUTS {
        replace(&t, name, "c/0/0", mkfifo);
        t.dsk_within(&["export", name, "--format", "npy"], 30).fails(1, &[name, "c/0/0", "a FIFO", "regular file"]);
        t.dsk_within(&["export", name, "--slice", "0:4, 0:4", "--format", "npy"], 30).fails(1, &["c/0/0", "a FIFO"]);
    }
}

#[test]
fn issue10_a_chunk_linked_to_dev_zero_is_an_error_not_an_endless_read() {
    let t = TestDir::new();
    layouts(&t);
    for (name, _) in LAYOUTS {
        replace(&t, name, "c/1/1", |p| std::os::unix::fs::symlink("/dev/zero", p).expect("symlink"));
        t.dsk_within(&["export", name, "--format", "npy"], 30).fails(1, &[name, "c/1/1", "a device"]);
    }
}

#[test]
fn issue10_directories_dangling_links_and_oversized_files_are_not_chunks() {
    let t = TestDir::new();
    layouts(&t);
    for (name, _) in LAYOUTS {
        let arr = t.path(name);
        let original = fs::read(arr.join("c/0/1")).expect("read");
        replace(&t, name, "c/0/1", |p| fs::create_dir(p).expect("mkdir"));
        t.dsk(&["export", name, "--format", "npy"]).fails(1, &[name, "c/0/1", "a directory"]);
        fs::remove_dir(arr.join("c/0/1")).expect("rmdir");
        std::os::unix::fs::symlink(t.path("nowhere"), arr.join("c/0/1")).expect("symlink");
        t.dsk(&["export", name, "--format", "npy"]).fails(1, &[name, "c/0/1", "symlink to nothing"]);
        // 16 elements of 8 bytes: no encoding of that chunk takes 4 MiB
        replace(&t, name, "c/0/1", |p| fs::write(p, vec![7u8; 4 << 20]).expect("write"));
        t.dsk(&["export", name, "--format", "npy"]).fails(1, &[name, "c/0/1", "more than a chunk of this array"]);
        // a symlink to a regular file holding the chunk is read (as zarr-python does)
        fs::write(t.path("elsewhere"), &original).expect("write");
        replace(&t, name, "c/0/1", |p| std::os::unix::fs::symlink(t.path("elsewhere"), p).expect("symlink"));
        assert_eq!(crate::read(&t, name).2, (0..64).map(|i| i as f64).collect::<Vec<_>>(), "{name}");
    }
}

#[test]
fn issue10_a_panic_inside_zarrs_is_an_error_naming_the_chunk() {
    // An index encoded with two checksums is valid Zarr that dsk does not check itself: zarrs
    // reads it, and overflows on an absurd entry. The panic is caught and reported in one line.
    let t = TestDir::new();
    sharded(&t, "s.zarr", "none");
    let meta_path = t.path("s.zarr").join("zarr.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&fs::read(&meta_path).expect("read")).expect("json");
    let index_codecs = meta["codecs"][0]["configuration"]["index_codecs"].as_array_mut().expect("index codecs");
    index_codecs.push(serde_json::json!({"name": "crc32c"}));
    fs::write(&meta_path, serde_json::to_vec(&meta).expect("json")).expect("write");
    for shard in ["c/0/0", "c/0/1", "c/1/0", "c/1/1"] {
        let p = t.path("s.zarr").join(shard);
        let mut b = fs::read(&p).expect("read");
        let start = b.len() - 68;
        if shard == "c/0/0" {
            b[start + 16..start + 24].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
            b[start + 24..start + 32].copy_from_slice(&8u64.to_le_bytes());
        }
        b.truncate(start + 64);
        let crc = crc32c(&b[start..]);
        b.extend_from_slice(&crc.to_le_bytes());
        let crc = crc32c(&b[start..]);
        b.extend_from_slice(&crc.to_le_bytes());
        fs::write(&p, b).expect("write");
    }
    t.dsk(&["export", "s.zarr", "--slice", "6:12, 8:16", "--format", "csv"]).ok();
    t.dsk(&["export", "s.zarr", "--format", "npy"]).fails(1, &["s.zarr", "chunk (0, 0)", "zarrs failed", "rewrite"]);
    t.dsk(&["export", "s.zarr", "--slice", "0:3, 4:8", "--format", "npy"]).fails(1, &["s.zarr", "(0, 0)", "c/0/0"]);
}

/// Edit the zarr.json of `array` with `f`.
fn edit_meta(t: &TestDir, array: &str, f: impl Fn(&mut serde_json::Value)) {
    let p = t.path(array).join("zarr.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).expect("read")).expect("json");
    f(&mut v);
    fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("write");
}

#[test]
fn issue10_control_characters_in_metadata_are_shown_escaped() {
    let t = TestDir::new();
    t.dsk(&["create", "zeros", "a.zarr", "--shape", "2,3", "--codec", "zstd"]).ok();
    edit_meta(&t, "a.zarr", |v| v["dimension_names"] = serde_json::json!(["\u{1b}[31mred", "line\nbreak"]));
    // the names do not stop the array from being read
    t.dsk(&["export", "a.zarr", "--format", "csv"]).ok();
    // (zarrs refuses unknown codec fields, dsk info shows them)
    edit_meta(&t, "a.zarr", |v| v["codecs"][1]["configuration"]["note"] = serde_json::json!("\u{1b}[2J\u{202e}"));
    let out = t.dsk(&["info", "a.zarr"]).ok().stdout();
    assert!(!out.contains('\u{1b}') && !out.contains('\u{202e}'), "raw control characters printed:\n{out}");
    assert!(out.contains("\\u{1b}[31mred, line\\u{a}break"), "{out}");
    assert!(out.contains("note=\\u{1b}[2J\\u{202e}"), "{out}");
    // JSON keeps the names exactly (escaped by JSON itself)
    let j = crate::info_json(&t, "a.zarr");
    assert_eq!(j["dimension_names"], serde_json::json!(["\u{1b}[31mred", "line\nbreak"]));
    // null names are allowed by the spec and shown as '-'
    edit_meta(&t, "a.zarr", |v| v["dimension_names"] = serde_json::json!([null, "x"]));
    assert!(t.dsk(&["info", "a.zarr"]).ok().stdout().contains("-, x"));
}

#[test]
fn issue10_dimension_names_that_are_not_strings_are_errors_naming_the_file() {
    let t = TestDir::new();
    t.dsk(&["create", "zeros", "a.zarr", "--shape", "2,3"]).ok();
    for bad in [serde_json::json!([1, "x"]), serde_json::json!(["y", {"a": 1}]), serde_json::json!("yx")] {
        edit_meta(&t, "a.zarr", |v| v["dimension_names"] = bad.clone());
        t.dsk(&["info", "a.zarr"]).fails(1, &["a.zarr/zarr.json", "dimension_names", "strings or nulls", "rewrite"]);
        t.dsk(&["export", "a.zarr", "--format", "csv"]).fails(1, &["a.zarr/zarr.json", "dimension_names"]);
    }
    // Zarr v2: the names live in .zattrs
    let v2 = t.path("v2.zarr");
    fs::create_dir(&v2).expect("mkdir");
    fs::write(
        v2.join(".zarray"),
        r#"{"zarr_format": 2, "shape": [2], "chunks": [2], "dtype": "<f8",
        "compressor": null, "fill_value": 0, "order": "C", "filters": null}"#,
    )
    .expect("write");
    fs::write(v2.join(".zattrs"), r#"{"_ARRAY_DIMENSIONS": [7]}"#).expect("write");
    t.dsk(&["info", "v2.zarr"]).fails(1, &["v2.zarr/.zattrs", "_ARRAY_DIMENSIONS"]);
    fs::write(v2.join(".zattrs"), r#"{"_ARRAY_DIMENSIONS": ["t\u0007"]}"#).expect("write");
    assert!(t.dsk(&["info", "v2.zarr"]).ok().stdout().contains("t\\u{7}"));
}

#[test]
fn issue10_fuzz_shards_too_large_to_index_are_refused_naming_zarr_json() {
    // found by the metadata fuzz loop (store::fuzz): a shard shape of (6, 2³²) over 3×4 inner chunks
    // overflowed zarrs' bound on the shard's size (inner chunks × shard bytes) while reading
    let t = TestDir::new();
    sharded(&t, "s.zarr", "zstd");
    edit_meta(&t, "s.zarr", |v| v["chunk_grid"]["configuration"]["chunk_shape"] = serde_json::json!([6, 1u64 << 32]));
    t.dsk(&["export", "s.zarr", "--format", "csv"]).fails(1, &["s.zarr/zarr.json", "too large", "smaller shards"]);
    t.dsk(&["info", "s.zarr"]).fails(1, &["s.zarr/zarr.json", "too large"]);
    // a shard must be a whole number of inner chunks (the spec's rule)
    edit_meta(&t, "s.zarr", |v| v["chunk_grid"]["configuration"]["chunk_shape"] = serde_json::json!([6, 6]));
    t.dsk(&["export", "s.zarr", "--format", "csv"]).fails(1, &["s.zarr/zarr.json", "whole number of inner chunks"]);
}

#[test]
fn issue10_oversized_metadata_is_not_read_whole() {
    let t = TestDir::new();
    t.dsk(&["create", "zeros", "a.zarr", "--shape", "2,3"]).ok();
    let p = t.path("a.zarr").join("zarr.json");
    let mut text = fs::read(&p).expect("read");
    text.resize(text.len() + (65 << 20), b' ');
    fs::write(&p, text).expect("write");
    t.dsk(&["info", "a.zarr"]).fails(1, &["a.zarr/zarr.json", "larger than 64.00 MiB"]);
}
