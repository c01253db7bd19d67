//! The file-system store dsk reads and writes Zarr through: zarrs' `FilesystemStore`, except that a
//! chunk write does not `fsync`, and reads are dsk's own, checked ones.
//!
//! Reads trust nothing in the store. Only regular files are read (a symlink to a regular file is
//! followed, as zarr-python does; a FIFO, a device such as /dev/zero, a directory or a dangling
//! symlink where a chunk should be is an error naming the file), never more bytes than a chunk or
//! shard of the array can have ([`super::limits::ReadLimits`]), and a shard's index is checked
//! before zarrs sees it, so that zarrs never computes with an absurd offset or length. A missing
//! file is a chunk never written (the fill value); a file that exists but cannot be read is always
//! an error, never the fill value.
//!
//! `FilesystemStore::set` calls `sync_all` after every chunk, which on this class of machine turns
//! a 1.6 GB write into seconds of synchronous disk I/O (measured: 200 fsyncs of 8 MB dominated
//! `dsk create`). dsk does not need per-chunk durability: outputs are written under a temporary
//! name and only renamed into place when complete ([`super::output::Staged`]), which is the same
//! guarantee zarr-python and NumPy give. Reads, listing and erasing are delegated unchanged.
//!
//! Large chunk files are written with O_DIRECT when the run writes more than half of the memory
//! the machine has available (`--io auto`, the default): an output larger than RAM cannot stay in
//! the page cache anyway, and bypassing it keeps the inputs being read there. A smaller output is
//! written through the page cache, so that the next command of a pipeline reads it from memory:
//! measured on the benchmark machine (2 cores, 24 GiB), `transform --expr 'cos(x)**2'` of 1.6 GB
//! followed by `reduce --op mean --axis 1` of its output took 1.7–2.5 s + 0.3–0.5 s buffered
//! against 1.9–2.2 s + 0.8–1.3 s direct, the reduce reading from disk. `--io direct` and
//! `--io buffered` choose one for every run. Direct files are written through an aligned buffer
//! and truncated to their length; a file system that refuses O_DIRECT (tmpfs) gets a buffered
//! write instead.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::limits::{ReadLimits, ShardLayout, MAX_METADATA_BYTES};
use zarrs::filesystem::FilesystemStore;
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits,
    StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};

#[derive(Debug)]
pub struct Fs {
    inner: FilesystemStore,
    /// What chunk files of the array may be; without limits (a store being created), any regular
    /// file up to [`UNLIMITED`] bytes is read.
    limits: Option<ReadLimits>,
}

/// Largest file read from a store opened without limits.
const UNLIMITED: u64 = 1 << 40;

impl Fs {
    pub fn new(path: &Path) -> Result<Fs, String> {
        FilesystemStore::new(path).map(|inner| Fs { inner, limits: None }).map_err(|e| e.to_string())
    }

    /// A store whose chunk reads are checked against `limits`.
    pub fn with_limits(path: &Path, limits: ReadLimits) -> Result<Fs, String> {
        FilesystemStore::new(path).map(|inner| Fs { inner, limits: Some(limits) }).map_err(|e| e.to_string())
    }

    pub fn path_of(&self, key: &StoreKey) -> PathBuf {
        self.inner.key_to_fspath(key)
    }

    /// Largest file `key` may be, and the shard layout to check it against (chunk keys of a
    /// sharded array).
    fn limits_of(&self, key: &StoreKey) -> (u64, Option<&ShardLayout>) {
        let name = key.as_str().rsplit('/').next().unwrap_or("");
        if METADATA_KEYS.contains(&name) {
            return (MAX_METADATA_BYTES, None);
        }
        match &self.limits {
            Some(l) => (l.object, l.shard.as_ref()),
            None => (UNLIMITED, None),
        }
    }

    /// Read the whole file of `key`, checked: `None` when it does not exist.
    pub fn read_checked(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, String> {
        let path = self.path_of(key);
        let (max, shard) = self.limits_of(key);
        let Some((mut file, len)) = open_checked(&path, max)? else {
            return Ok(None);
        };
        let mut buf = Vec::with_capacity(len as usize);
        (&mut file)
            .take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        if buf.len() as u64 > max {
            return Err(too_large(&path, buf.len() as u64, max));
        }
        if let Some(layout) = shard {
            let file_len = buf.len() as u64;
            if let Some((start, n)) = layout.index_range(file_len) {
                let index = &buf[start as usize..(start + n) as usize];
                layout.check_index(index, file_len).map_err(|m| bad_shard(&path, &m))?;
            } else {
                return Err(bad_shard(&path, &format!("it holds {file_len} bytes, less than its index")));
            }
        }
        Ok(Some(buf))
    }

    /// The inner chunks `wanted` (C-order positions in the shard) of the shard file of `key`, read
    /// with one open: its index read, checked and its checksum verified, then each inner chunk's
    /// bytes. Returns the bytes one after the other and where each inner chunk lies in them
    /// (`None`: never written); `None` when the shard does not exist.
    #[allow(clippy::type_complexity)]
    pub fn read_inner(
        &self,
        key: &StoreKey,
        layout: &ShardLayout,
        wanted: &[usize],
    ) -> Result<Option<(Vec<u8>, Vec<Option<std::ops::Range<usize>>>)>, String> {
        let path = self.path_of(key);
        let (max, _) = self.limits_of(key);
        let Some((file, len)) = open_checked(&path, max)? else {
            return Ok(None);
        };
        let read_at = |buf: &mut [u8], at: u64| {
            file.read_exact_at(buf, at).map_err(|e| format!("{}: cannot read: {e}", path.display()))
        };
        let Some((istart, ilen)) = layout.index_range(len) else {
            return Err(bad_shard(&path, &format!("it holds {len} bytes, less than its index")));
        };
        let mut index = vec![0u8; ilen as usize];
        read_at(&mut index, istart)?;
        let entries = layout.entries(&index, len).map_err(|m| bad_shard(&path, &m))?;
        let total: u64 = wanted.iter().filter_map(|&w| entries.get(w).copied().flatten()).map(|(_, l)| l).sum();
        let mut bytes = vec![0u8; total as usize];
        let mut ranges = Vec::with_capacity(wanted.len());
        let mut at = 0usize;
        for &w in wanted {
            match entries.get(w).copied().flatten() {
                None => ranges.push(None),
                Some((offset, l)) => {
                    let r = at..at + l as usize;
                    read_at(&mut bytes[r.clone()], offset)?;
                    ranges.push(Some(r));
                    at += l as usize;
                }
            }
        }
        Ok(Some((bytes, ranges)))
    }

    fn read_ranges(&self, key: &StoreKey, ranges: Vec<ByteRange>) -> Result<Option<Vec<Bytes>>, String> {
        let path = self.path_of(key);
        let (max, shard) = self.limits_of(key);
        let Some((file, len)) = open_checked(&path, max)? else {
            return Ok(None);
        };
        let index = shard.and_then(|l| l.index_range(len).map(|r| (l, r)));
        if shard.is_some() && index.is_none() {
            return Err(bad_shard(&path, &format!("it holds {len} bytes, less than its index")));
        }
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let (start, n) = match r {
                ByteRange::FromStart(o, Some(n)) => (o, n),
                ByteRange::FromStart(o, None) => (o, len.saturating_sub(o)),
                ByteRange::Suffix(n) => (len.saturating_sub(n), n),
            };
            if start.checked_add(n).is_none_or(|end| end > len) {
                return Err(format!(
                    "{}: bytes {start}+{n} were asked of a {len}-byte file — the file is damaged or its index is wrong; restore it or rewrite the array",
                    path.display()
                ));
            }
            let mut buf = vec![0u8; n as usize];
            file.read_exact_at(&mut buf, start).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            if let Some((layout, (istart, ilen))) = index {
                if start == istart && n == ilen {
                    layout.check_index(&buf, len).map_err(|m| bad_shard(&path, &m))?;
                }
            }
            out.push(Bytes::from(buf));
        }
        Ok(Some(out))
    }
}

/// Metadata documents, read whatever the array's limits (up to [`MAX_METADATA_BYTES`]).
const METADATA_KEYS: [&str; 5] = ["zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"];

fn too_large(path: &Path, len: u64, max: u64) -> String {
    format!(
        "{}: holds {len} bytes, more than a chunk of this array can take ({max}) — the file is damaged or not part of the array; restore or remove it",
        path.display()
    )
}

fn bad_shard(path: &Path, msg: &str) -> String {
    format!("{}: damaged shard: {msg} — restore the shard or rewrite the array", path.display())
}

/// Open `path` for reading if it is a regular file (or a symlink to one) of at most `max` bytes:
/// `None` when nothing is there. The type is checked before opening (devices are never opened)
/// and again on the open file (it may have been replaced); O_NONBLOCK keeps a FIFO that slipped in
/// between from blocking the open.
fn open_checked(path: &Path, max: u64) -> Result<Option<(std::fs::File, u64)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = |kind: &str| {
        format!(
            "{}: is {kind}, not a regular file — a Zarr store holds chunks in regular files; replace it with the chunk file or remove it",
            path.display()
        )
    };
    let kind = |ft: std::fs::FileType| {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        }
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(m) => return Err(not_regular(kind(m.file_type()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match std::fs::symlink_metadata(path) {
                Ok(_) => Err(format!(
                    "{}: is a symlink to nothing — restore the file it points to or remove the link",
                    path.display()
                )),
                Err(_) => Ok(None),
            };
        }
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    }
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let m = file.metadata().map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if !m.is_file() {
        return Err(not_regular(kind(m.file_type())));
    }
    if m.len() > max {
        return Err(too_large(path, m.len(), max));
    }
    Ok(Some((file, m.len())))
}

impl ReadableStorageTraits for Fs {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        Ok(self.read_checked(key).map_err(StorageError::Other)?.map(Bytes::from))
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let ranges: Vec<ByteRange> = byte_ranges.collect();
        match self.read_ranges(key, ranges).map_err(StorageError::Other)? {
            Some(parts) => Ok(Some(Box::new(parts.into_iter().map(Ok)))),
            None => Ok(None),
        }
    }

    fn get_partial(&self, key: &StoreKey, byte_range: ByteRange) -> Result<MaybeBytes, StorageError> {
        Ok(self.read_ranges(key, vec![byte_range]).map_err(StorageError::Other)?.and_then(|v| v.into_iter().next()))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        let (max, _) = self.limits_of(key);
        Ok(open_checked(&self.path_of(key), max).map_err(StorageError::Other)?.map(|(_, len)| len))
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

/// Write chunk files of at least [`DIRECT_MIN`] bytes with O_DIRECT (bypassing the page cache)
/// when the file system allows it.
static DIRECT_WRITES: AtomicBool = AtomicBool::new(true);

/// `--io auto`: each run chooses with [`choose_direct_writes`].
static DIRECT_AUTO: AtomicBool = AtomicBool::new(true);

/// Smallest chunk file written with O_DIRECT: below this, the page cache costs little.
pub const DIRECT_MIN: usize = 1 << 20;

/// Choose direct (O_DIRECT, `Some(true)`) or buffered (`Some(false)`) writes of large chunk files
/// for this process, or `None` to let each run choose from what it writes.
pub fn set_direct_writes(on: Option<bool>) {
    DIRECT_AUTO.store(on.is_none(), Ordering::Relaxed);
    DIRECT_WRITES.store(on.unwrap_or(true), Ordering::Relaxed);
}

/// Under `--io auto`, a run about to write `bytes` (outputs and work arrays, uncompressed) writes
/// them with O_DIRECT when they are more than half of the machine's available memory.
pub fn choose_direct_writes(bytes: u64) {
    if DIRECT_AUTO.load(Ordering::Relaxed) {
        let direct = match mem_available() {
            Some(avail) => bytes > avail / 2,
            None => true,
        };
        DIRECT_WRITES.store(direct, Ordering::Relaxed);
    }
}

/// MemAvailable from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether this process writes large chunk files with O_DIRECT (what its worker children inherit).
pub fn direct_writes() -> bool {
    DIRECT_WRITES.load(Ordering::Relaxed)
}

const ALIGN: usize = 4096;

thread_local! {
    static ALIGNED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Write `value` to `path` with O_DIRECT: through a page-aligned buffer padded to a whole number of
/// pages, then truncated to the real length. Returns false when the file system refuses O_DIRECT.
fn write_direct(path: &std::path::Path, value: &[u8]) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
        Err(e) => return Err(e),
    };
    let padded = value.len().div_ceil(ALIGN) * ALIGN;
    // a per-thread buffer, reused from chunk to chunk, aligned by offsetting into it
    let res = ALIGNED.with(|cell| {
        let mut v = cell.borrow_mut();
        if v.len() < padded + ALIGN {
            *v = vec![0u8; padded + ALIGN];
        }
        let off = v.as_ptr().align_offset(ALIGN);
        let buf = &mut v[off..off + padded];
        buf[..value.len()].copy_from_slice(value);
        buf[value.len()..].fill(0);
        (&f).write_all(buf).and_then(|_| f.set_len(value.len() as u64))
    });
    match res {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A file written piece by piece, in order (a shard made one inner chunk at a time): with
/// O_DIRECT through a page-aligned staging buffer of [`STAGE`] bytes when direct writes are on and
/// the file is expected to be large, else through the page cache. Nothing of the file is held in
/// memory beyond the staging buffer.
pub struct Appender {
    file: std::fs::File,
    /// The staging buffer of a direct write (over-allocated by [`ALIGN`] to align it) and how
    /// much of it is filled, from its aligned start.
    stage: Option<(Vec<u8>, usize)>,
    written: u64,
}

/// Bytes staged before an O_DIRECT write of an [`Appender`].
const STAGE: usize = 4 << 20;

impl Fs {
    /// Start writing the file of `key` piece by piece; `expected` is about how large it will be.
    pub fn append_to(&self, key: &StoreKey, expected: u64) -> std::io::Result<Appender> {
        let path = self.path_of(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Appender::create(path, DIRECT_WRITES.load(Ordering::Relaxed) && expected >= DIRECT_MIN as u64)
    }
}

impl Appender {
    /// Create (or truncate) `path`, written with O_DIRECT when `direct` and the file system allows.
    fn create(path: PathBuf, direct: bool) -> std::io::Result<Appender> {
        use std::os::unix::fs::OpenOptionsExt;
        if direct {
            let direct = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path);
            match direct {
                Ok(file) => return Ok(Appender { file, stage: Some((vec![0u8; STAGE + ALIGN], 0)), written: 0 }),
                // a file system without O_DIRECT (tmpfs): through the page cache
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        let file = std::fs::File::create(&path)?;
        Ok(Appender { file, stage: None, written: 0 })
    }

    /// Append `bytes` to the file.
    pub fn append(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stage {
            None => {
                self.file.write_all(bytes)?;
                self.written += bytes.len() as u64;
            }
            Some((buf, filled)) => {
                let off = buf.as_ptr().align_offset(ALIGN);
                while !bytes.is_empty() {
                    let n = bytes.len().min(STAGE - *filled);
                    buf[off + *filled..off + *filled + n].copy_from_slice(&bytes[..n]);
                    *filled += n;
                    bytes = &bytes[n..];
                    if *filled == STAGE {
                        (&self.file).write_all(&buf[off..off + STAGE])?;
                        self.written += STAGE as u64;
                        *filled = 0;
                    }
                }
            }
        }
        Ok(())
    }

    /// Write what is staged and close the file at its length.
    pub fn finish(mut self) -> std::io::Result<()> {
        if let Some((buf, filled)) = &mut self.stage {
            if *filled > 0 {
                let off = buf.as_ptr().align_offset(ALIGN);
                let padded = filled.div_ceil(ALIGN) * ALIGN;
                buf[off + *filled..off + padded].fill(0);
                (&self.file).write_all(&buf[off..off + padded])?;
                let len = self.written + *filled as u64;
                self.file.set_len(len)?;
            }
        }
        Ok(())
    }
}

impl WritableStorageTraits for Fs {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        let path = self.path_of(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if DIRECT_WRITES.load(Ordering::Relaxed) && value.len() >= DIRECT_MIN && write_direct(&path, &value)? {
            return Ok(());
        }
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&value)?;
        Ok(())
    }

    fn set_partial(&self, key: &StoreKey, offset: u64, value: Bytes) -> Result<(), StorageError> {
        self.inner.set_partial(key, offset, value)
    }

    fn set_partial_many(&self, key: &StoreKey, offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        self.inner.set_partial_many(key, offset_values)
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        match std::fs::remove_file(self.path_of(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        self.inner.supports_set_partial()
    }
}

impl ListableStorageTraits for Fs {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.inner.list()
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        self.inner.list_prefix(prefix)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        self.inner.list_dir(prefix)
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        self.inner.size_prefix(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Appender;

    #[test]
    fn appended_files_hold_exactly_their_pieces_direct_or_not() {
        let tmp = tempfile::tempdir().expect("tmp");
        // pieces of odd sizes, crossing the staging buffer's end and leaving a partial last page
        let sizes = [1usize, 4095, 4097, 3 << 20, super::STAGE, 777, 2 << 20, 5];
        let mut want = vec![];
        for direct in [true, false] {
            let path = tmp.path().join(format!("f{direct}"));
            let mut a = Appender::create(path.clone(), direct).expect("create");
            want.clear();
            for (i, &n) in sizes.iter().enumerate() {
                let piece: Vec<u8> = (0..n).map(|k| (k * 31 + i * 7) as u8).collect();
                a.append(&piece).expect("append");
                want.extend_from_slice(&piece);
            }
            a.finish().expect("finish");
            assert!(std::fs::read(&path).expect("read") == want, "direct {direct}");
        }
    }
}
