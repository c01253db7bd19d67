//! Test harness: a temporary directory per test and a `dsk` command wrapper that shows stdout and
//! stderr when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir { dir: tempfile::Builder::new().prefix("dsk-test-").tempdir().expect("create a temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Run dsk with `args` in this directory.
    pub fn dsk(&self, args: &[&str]) -> Run {
        self.dsk_stdin(args, None)
    }

    pub fn dsk_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        self.dsk_env(args, stdin, &[])
    }

    pub fn dsk_env(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsk"));
        cmd.envs(env.iter().copied());
        cmd.args(args).current_dir(self.dir.path()).env("NO_COLOR", "1");
        cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start dsk");
        if let Some(data) = stdin {
            child.stdin.take().expect("stdin").write_all(data).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for dsk");
        Run { args: args.iter().map(|s| s.to_string()).collect(), out }
    }
}

impl TestDir {
    /// Run dsk with arguments that need not be UTF-8 (paths are bytes on Unix).
    pub fn dsk_os(&self, args: &[&std::ffi::OsStr]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_dsk"))
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run dsk");
        Run { args: args.iter().map(|s| s.to_string_lossy().into_owned()).collect(), out }
    }

    /// Run dsk with `args`, killing it after `secs` seconds (a hang is then a test failure with
    /// the output so far, not a stuck test run).
    pub fn dsk_within(&self, args: &[&str], secs: u64) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsk"));
        cmd.args(args).current_dir(self.dir.path()).env("NO_COLOR", "1");
        cmd.stdin(std::process::Stdio::null());
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start dsk");
        let start = std::time::Instant::now();
        while child.try_wait().expect("poll dsk").is_none() {
            if start.elapsed().as_secs() >= secs {
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait for dsk");
                panic!(
                    "dsk {} did not finish within {secs} s\n{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("wait for dsk");
        Run { args: args.iter().map(|s| s.to_string()).collect(), out }
    }
}

pub struct Run {
    args: Vec<String>,
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    fn show(&self) -> String {
        format!(
            "dsk {}\n--- exit: {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args.join(" "),
            self.out.status.code(),
            String::from_utf8_lossy(&self.out.stdout[..self.out.stdout.len().min(4000)]),
            self.stderr()
        )
    }

    /// Assert success and return self.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(self.out.status.success(), "expected success\n{}", self.show());
        self
    }

    /// Assert failure with `code` and an expression error: the message, then the expression with a
    /// caret line under it.
    #[track_caller]
    pub fn fails_expr(self, needles: &[&str]) -> Run {
        assert_eq!(self.out.status.code(), Some(2), "wrong exit code\n{}", self.show());
        let err = self.stderr();
        let lines: Vec<&str> = err.trim_end().lines().collect();
        assert!(
            err.starts_with("dsk: error: ") && lines.len() == 3,
            "expected message + expression + caret\n{}",
            self.show()
        );
        assert!(lines[2].trim_start().starts_with('^'), "no caret line\n{}", self.show());
        for n in needles {
            assert!(err.contains(n), "stderr should mention {n:?}\n{}", self.show());
        }
        self
    }

    /// Assert failure with `code`, one line on stderr starting with `dsk: error:`, containing every
    /// piece of `needles`, and no panic text.
    #[track_caller]
    pub fn fails(self, code: i32, needles: &[&str]) -> Run {
        assert_eq!(self.out.status.code(), Some(code), "wrong exit code\n{}", self.show());
        let err = self.stderr();
        assert!(err.starts_with("dsk: error: "), "stderr should start with 'dsk: error: '\n{}", self.show());
        assert_eq!(err.trim_end().lines().count(), 1, "the error should be one line\n{}", self.show());
        assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic\n{}", self.show());
        for n in needles {
            assert!(err.contains(n), "stderr should mention {n:?}\n{}", self.show());
        }
        self
    }
}

/// A parsed .npy file: (dtype string, shape, data bytes).
pub fn parse_npy(bytes: &[u8]) -> (String, Vec<u64>, Vec<u8>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an npy file");
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let head = std::str::from_utf8(&bytes[start..start + hlen]).expect("header text");
    let descr = head.split("'descr': '").nth(1).and_then(|s| s.split('\'').next()).expect("descr").to_string();
    assert!(head.contains("'fortran_order': False"), "expected C order: {head}");
    let shape_txt = head.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("shape");
    let shape = shape_txt.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().expect("int")).collect();
    (descr, shape, bytes[start + hlen..].to_vec())
}

/// f64 values of little-endian data of numpy type string `descr` (for value comparisons).
pub fn values(descr: &str, data: &[u8]) -> Vec<f64> {
    let code = &descr[1..];
    let size: usize = code[1..].parse().expect("size");
    data.chunks_exact(size)
        .map(|b| match code {
            "b1" | "u1" => b[0] as f64,
            "i1" => b[0] as i8 as f64,
            "i2" => i16::from_le_bytes([b[0], b[1]]) as f64,
            "u2" => u16::from_le_bytes([b[0], b[1]]) as f64,
            "i4" => i32::from_le_bytes(b.try_into().expect("4")) as f64,
            "u4" => u32::from_le_bytes(b.try_into().expect("4")) as f64,
            "i8" => i64::from_le_bytes(b.try_into().expect("8")) as f64,
            "u8" => u64::from_le_bytes(b.try_into().expect("8")) as f64,
            "f4" => f32::from_le_bytes(b.try_into().expect("4")) as f64,
            "f8" => f64::from_le_bytes(b.try_into().expect("8")),
            other => panic!("unknown type {other}"),
        })
        .collect()
}

/// Build a little-endian .npy file in memory (header written by hand, independent of dsk's).
pub fn make_npy(descr: &str, shape: &[u64], fortran: bool, data: &[u8]) -> Vec<u8> {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_txt}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
