//! Where an array's bytes live: a local directory ([`super::fs::Fs`]) or a prefix on object
//! storage ([`super::remote::Remote`]). One zarrs store type for both, so that `ZArray` and
//! everything above it is the same code for local and remote arrays.

use std::path::{Path, PathBuf};

use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits,
    StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};

use super::fs::Fs;
use super::limits::ReadLimits;
use super::remote::{self, Remote};

#[derive(Debug)]
pub enum Store {
    Fs(Fs),
    Remote(Remote),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Fs($s) => $e,
            Store::Remote($s) => $e,
        }
    };
}

impl Store {
    /// The store of the array at `path` (a directory, or an `s3://`/`https://` URL), with its
    /// chunk reads checked against `limits`. Returns the open directory a local store on a
    /// non-UTF-8 path is reached through (to be kept open as long as the store is used).
    pub fn open(path: &Path, limits: Option<ReadLimits>) -> Result<(Store, Option<std::fs::File>), String> {
        if let Some(url) = remote::parse(path) {
            return Ok((Store::Remote(Remote::new(&url?, limits)?), None));
        }
        let make = |p: &Path| match limits {
            Some(l) => Fs::with_limits(p, l),
            None => Fs::new(p),
        };
        if path.to_str().is_some() {
            return make(path).map(|f| (Store::Fs(f), None));
        }
        // zarrs takes only UTF-8 base paths: reach the directory through /proc/self/fd/N
        let dir = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let alias = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir)));
        if !alias.is_dir() {
            return Err("the name is not valid UTF-8 and /proc is not mounted to reach it otherwise — rename it".into());
        }
        make(&alias).map(|f| (Store::Fs(f), Some(dir)))
    }

    /// Read the whole object (file) `key`, checked: `None` when it does not exist. (Bytes: an
    /// object's body is handed over as received, not copied.)
    pub fn read_checked(&self, key: &StoreKey) -> Result<Option<Bytes>, String> {
        match self {
            Store::Fs(s) => s.read_checked(key).map(|b| b.map(Bytes::from)),
            Store::Remote(s) => s.read_bytes(key.as_str()),
        }
    }

    pub fn fs(&self) -> Option<&Fs> {
        match self {
            Store::Fs(f) => Some(f),
            Store::Remote(_) => None,
        }
    }

    pub fn remote(&self) -> Option<&Remote> {
        match self {
            Store::Remote(r) => Some(r),
            Store::Fs(_) => None,
        }
    }
}

impl ReadableStorageTraits for Store {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        each!(self, s => s.get(key))
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        each!(self, s => s.get_partial_many(key, byte_ranges))
    }

    fn get_partial(&self, key: &StoreKey, byte_range: ByteRange) -> Result<MaybeBytes, StorageError> {
        each!(self, s => s.get_partial(key, byte_range))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        each!(self, s => s.size_key(key))
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

impl WritableStorageTraits for Store {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        each!(self, s => s.set(key, value))
    }

    fn set_partial_many(&self, key: &StoreKey, offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        each!(self, s => s.set_partial_many(key, offset_values))
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        each!(self, s => s.erase(key))
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        each!(self, s => s.erase_prefix(prefix))
    }

    fn supports_set_partial(&self) -> bool {
        each!(self, s => s.supports_set_partial())
    }
}

impl ListableStorageTraits for Store {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        each!(self, s => s.list())
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        each!(self, s => s.list_prefix(prefix))
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        each!(self, s => s.list_dir(prefix))
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        each!(self, s => s.size_prefix(prefix))
    }
}
