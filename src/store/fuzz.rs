//! A seeded, deterministic fuzz loop over what dsk reads from a store (issue 10): Zarr metadata
//! documents (v3 `zarr.json`, v2 `.zarray` and `.zattrs`) and shard files, mutated and then opened
//! and read through dsk's real path ([`ZArray::open`], [`ZArray::read_region`]). Every case must
//! end in a value or a one-line error naming the array — never a panic (ours, or one inside zarrs
//! that the last line of defence had to catch) and never an internal error.
//!
//! Runs on the stable toolchain inside `cargo test`; the seed and case count are fixed, so a
//! failure prints a case that reproduces. Each crash found becomes a named regression test. For a
//! longer hunt: `DSK_FUZZ_CASES=50000 DSK_FUZZ_SEED=7 cargo test --lib issue10_fuzzed`.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::{create, CodecSpec, CreateSpec, ZArray};
use crate::dtype::{DType, Scalar};
use crate::grid::Region;

/// Cases per test (`DSK_FUZZ_CASES` runs more) and the seed (`DSK_FUZZ_SEED` changes it).
fn budget(default: usize, seed: u64) -> (usize, Rng) {
    let cases = std::env::var("DSK_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let extra = std::env::var("DSK_FUZZ_SEED").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (cases, Rng(seed ^ extra.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

/// splitmix64: small, seeded, good enough to pick mutations.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    pub(super) fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const NUMBERS: [&str; 14] = [
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "-1",
    "0",
    "1e300",
    "-1e300",
    "1.5",
    "4294967296",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e99999",
];

const STRINGS: [&str; 8] = ["\u{1b}[31m", "\n", "", "\u{0}", "ü", "\u{202e}", "float16", "sharding_indexed"];

fn random_value(r: &mut Rng) -> Value {
    match r.below(9) {
        0 => Value::Null,
        1 => Value::Bool(r.below(2) == 1),
        2 => json!(u64::MAX),
        3 => json!(-1),
        4 => json!(1e300),
        5 => json!(*r.pick(&STRINGS)),
        6 => json!([]),
        7 => json!({}),
        _ => json!([r.below(5), u32::MAX]),
    }
}

/// Paths of every node of `v` (JSON pointers).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out))
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// One mutation of the JSON document `doc`, as text.
fn mutate(doc: &Value, r: &mut Rng) -> String {
    let mut v = doc.clone();
    let mut ptrs = vec![];
    pointers(&v, String::new(), &mut ptrs);
    let at = r.pick(&ptrs[1..]).clone();
    let (parent, last) = at.rsplit_once('/').unwrap_or(("", ""));
    let kind = r.below(11);
    match kind {
        // delete a field or element
        0 => match v.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.remove(&last.replace("~1", "/").replace("~0", "~"));
            }
            Some(Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
            }
            _ => {}
        },
        // swap the type
        1 | 2 => {
            let new = random_value(r);
            if let Some(n) = v.pointer_mut(&at) {
                *n = new;
            }
        }
        // a wrapped node: [x] or {"x": x}
        3 => {
            if let Some(n) = v.pointer_mut(&at) {
                *n = if r.below(2) == 0 { json!([n.clone()]) } else { json!({"x": n.clone()}) };
            }
        }
        // an extra, unknown field
        4 => {
            if let Some(Value::Object(m)) = v.pointer_mut(parent) {
                m.insert("\u{1b}]0;x\u{7}".into(), random_value(r));
            }
        }
        _ => {}
    }
    let mut text = serde_json::to_string(&v).unwrap_or_default();
    match kind {
        // a number token replaced with an absurd one (some are not JSON at all)
        5 | 6 => {
            let digits: Vec<usize> = text
                .char_indices()
                .filter(|(i, c)| {
                    c.is_ascii_digit() && !text[..*i].ends_with(|p: char| p.is_ascii_alphanumeric() || p == '.')
                })
                .map(|(i, _)| i)
                .collect();
            if !digits.is_empty() {
                let i = *r.pick(&digits);
                let end = text[i..].find(|c: char| !c.is_ascii_digit()).map_or(text.len(), |e| i + e);
                let with = NUMBERS[r.below(NUMBERS.len())];
                text.replace_range(i..end, with);
            }
        }
        // deep nesting
        7 => {
            let depth = 1 + r.below(300);
            text = format!("{{\"shape\": {}1{}, {}", "[".repeat(depth), "]".repeat(depth), &text[1..]);
        }
        // a duplicated key (serde_json keeps the last one)
        8 => {
            let key = r.pick(&["shape", "chunks", "dtype", "data_type", "zarr_format", "codecs", "fill_value"]);
            let val = serde_json::to_string(&random_value(r)).unwrap_or_default();
            let pos = text.len().saturating_sub(1);
            text.insert_str(pos, &format!(", \"{key}\": {val}"));
        }
        // truncated
        9 => {
            let mut cut = r.below(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        // random bytes flipped (kept valid UTF-8 only by chance: the file gets the bytes)
        10 => {
            let mut b = text.into_bytes();
            for _ in 0..1 + r.below(3) {
                let i = r.below(b.len());
                b[i] = r.next() as u8;
            }
            return String::from_utf8_lossy(&b).into_owned();
        }
        _ => {}
    }
    text
}

/// Open `dir` and read its first storage chunk (and a single element of it): `Err` with the
/// error's text, which the caller checks.
fn open_and_read(dir: &Path) -> Result<(), String> {
    let z = ZArray::open(dir).map_err(|e| e.to_string())?;
    let grid = z.grid();
    if grid.shape.contains(&0) {
        return Ok(());
    }
    let first = grid.chunk_region(&vec![0; grid.ndim()]);
    // a chunk the metadata makes huge is not read: dsk's planner would refuse it for memory
    if first.len().saturating_mul(z.dtype().size() as u64) > 1 << 22 {
        return Ok(());
    }
    let one = Region::new(vec![0; grid.ndim()], vec![1; grid.ndim()]);
    for region in [first, one] {
        crate::with_dtype!(z.dtype(), T => { z.read_region::<T>(&region, 1).map_err(|e| e.to_string())?; });
    }
    Ok(())
}

/// Run one case: no panic, and an error is one line, names the array and is not a bug report.
fn check(dir: &Path, case: &str) {
    let outcome = catch_unwind(AssertUnwindSafe(|| open_and_read(dir)));
    let shown = dir.display().to_string();
    match outcome {
        Err(_) => panic!("panicked on {case}"),
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            assert!(!e.contains('\n'), "a multi-line error on {case}: {e}");
            assert!(e.contains(&shown), "the error does not name the array on {case}: {e}");
            assert!(!e.contains("this is a bug"), "an internal error on {case}: {e}");
            assert!(!e.contains("zarrs failed"), "zarrs panicked (caught) on {case}: {e}");
        }
    }
}

fn make(dir: &Path, spec: &CreateSpec) -> ZArray {
    super::init();
    let z = create(dir, spec).unwrap_or_else(|e| panic!("create: {e}"));
    let data: Vec<f64> = (0..spec.shape.iter().product::<u64>()).map(|i| i as f64).collect();
    let grid = z.grid();
    for linear in 0..grid.nchunks() {
        let idx = grid.chunk_index(linear);
        let region = grid.chunk_region(&idx);
        let part: Vec<f64> = region_values(&region, &spec.shape, &data);
        z.write_chunk(&idx, &part, 1).unwrap_or_else(|e| panic!("write: {e}"));
    }
    z
}

fn region_values(region: &Region, shape: &[u64], data: &[f64]) -> Vec<f64> {
    let mut out = vec![];
    crate::grid::for_each_row(region, |idx, _| {
        let strides = crate::grid::strides(shape);
        let off: u64 = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&data[off as usize..(off + region.shape[region.ndim() - 1]) as usize]);
    });
    out
}

fn spec(codec: CodecSpec, shard: Option<Vec<u64>>) -> CreateSpec {
    CreateSpec {
        shape: vec![6, 8],
        chunks: vec![3, 4],
        shard,
        dtype: DType::Float64,
        fill: Scalar::Float(0.0),
        codec,
        dimension_names: Some(vec![Some("y".into()), Some("x".into())]),
        zarr_format: 3,
        attributes: Default::default(),
        half: false,
        complex: false,
        fill_im: 0.0,
    }
}

#[test]
fn issue10_fuzzed_metadata_never_panics_and_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cases, mut r) = budget(2000, 0x0d5c_0010);
    let mut arrays = vec![];
    for (name, codec, shard) in [
        ("plain", CodecSpec::None, None),
        ("zstd", CodecSpec::Zstd { level: 1 }, None),
        ("blosc", CodecSpec::Blosc { cname: "lz4".into(), clevel: 5, shuffle: crate::store::Shuffle::Byte }, None),
        ("sharded", CodecSpec::Zstd { level: 1 }, Some(vec![6, 8])),
    ] {
        let dir = tmp.path().join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        make(&dir, &spec(codec, shard));
        arrays.push((dir.clone(), dir.join("zarr.json")));
    }
    // Zarr v2: the same chunks under a .zarray (+ .zattrs), by hand
    let v2 = tmp.path().join("v2");
    fs::create_dir(&v2).unwrap_or_else(|e| panic!("{e}"));
    let zarray = json!({"zarr_format": 2, "shape": [6, 8], "chunks": [3, 4], "dtype": "<f8", "compressor": null,
        "fill_value": 0, "order": "C", "filters": null, "dimension_separator": "."});
    fs::write(v2.join(".zarray"), zarray.to_string()).unwrap_or_else(|e| panic!("{e}"));
    fs::write(v2.join(".zattrs"), json!({"_ARRAY_DIMENSIONS": ["y", "x"]}).to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, c) in [(0u64, 0u64), (0, 1), (1, 0), (1, 1)] {
        let bytes: Vec<u8> = (0..12).flat_map(|k| ((i * 100 + c * 10 + k) as f64).to_le_bytes()).collect();
        fs::write(v2.join(format!("{i}.{c}")), bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    arrays.push((v2.clone(), v2.join(".zarray")));
    arrays.push((v2.clone(), v2.join(".zattrs")));

    for n in 0..cases {
        let (dir, file) = &arrays[n % arrays.len()];
        let original = fs::read(file).unwrap_or_else(|e| panic!("{e}"));
        let doc: Value = serde_json::from_slice(&original).unwrap_or(Value::Object(Map::new()));
        let text = mutate(&doc, &mut r);
        fs::write(file, &text).unwrap_or_else(|e| panic!("{e}"));
        check(dir, &format!("case {n}: {} ← {text:?}", file.display()));
        fs::write(file, &original).unwrap_or_else(|e| panic!("{e}"));
    }
    for (dir, _) in &arrays {
        assert_eq!(open_and_read(dir), Ok(()), "restored {}", dir.display());
    }
}

/// CRC-32C (Castagnoli) of the shard index, so that mutated entries reach the index checks.
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

#[test]
fn issue10_fuzzed_shard_files_never_panic_and_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cases, mut r) = budget(1200, 0x5a4d_0010);
    let mut arrays = vec![];
    for (name, codec) in [("raw", CodecSpec::None), ("zstd", CodecSpec::Zstd { level: 1 })] {
        let dir = tmp.path().join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut s = spec(codec, Some(vec![6, 8]));
        s.shape = vec![12, 8];
        make(&dir, &s);
        arrays.push(dir);
    }
    // 4 inner chunks: an index of 4 × 16 bytes and a checksum, at the end of the file
    let index = 4 * 16 + 4;
    for n in 0..cases {
        let dir = &arrays[n % arrays.len()];
        let file = dir.join("c/0/0");
        let original = fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
        let mut b = original.clone();
        let start = b.len() - index;
        let what = match r.below(6) {
            // random words in the index, checksum fixed
            0 | 1 => {
                for _ in 0..1 + r.below(3) {
                    let w = start + 8 * r.below(8);
                    let v = match r.below(5) {
                        0 => u64::MAX,
                        1 => r.next(),
                        2 => b.len() as u64 + r.below(64) as u64 - 32,
                        3 => 0,
                        _ => r.below(4096) as u64,
                    };
                    b[w..w + 8].copy_from_slice(&v.to_le_bytes());
                }
                let crc = crc32c(&b[start..start + 64]);
                let end = b.len();
                b[end - 4..].copy_from_slice(&crc.to_le_bytes());
                "index words"
            }
            // random bytes anywhere (checksum left as is)
            2 => {
                for _ in 0..1 + r.below(8) {
                    let i = r.below(b.len());
                    b[i] = r.next() as u8;
                }
                "bytes"
            }
            // truncated
            3 => {
                b.truncate(r.below(b.len()));
                "truncated"
            }
            // grown
            4 => {
                let extra = r.below(200);
                b.extend((0..extra).map(|_| r.next() as u8));
                "grown"
            }
            // the data part shuffled, index intact
            _ => {
                let i = r.below(start.max(1));
                let j = r.below(start.max(1));
                b.swap(i, j);
                "swapped"
            }
        };
        fs::write(&file, &b).unwrap_or_else(|e| panic!("{e}"));
        check(dir, &format!("case {n}: {what} {}: {b:?}", file.display()));
        // a part of the shard (the partial decoder) as well as the whole
        let partial = catch_unwind(AssertUnwindSafe(|| {
            let z = ZArray::open(dir).map_err(|e| e.to_string())?;
            z.read_region::<f64>(&Region::new(vec![3, 4], vec![3, 4]), 1).map(|_| ()).map_err(|e| e.to_string())
        }));
        match partial {
            Err(_) => panic!("panicked reading part of case {n}: {what} {b:?}"),
            Ok(Err(e)) => {
                assert!(
                    !e.contains('\n') && !e.contains("zarrs failed") && !e.contains("this is a bug"),
                    "case {n}: {e}"
                );
                assert!(e.contains(&dir.display().to_string()), "case {n}: {e}");
            }
            Ok(Ok(())) => {}
        }
        fs::write(&file, &original).unwrap_or_else(|e| panic!("{e}"));
    }
}
