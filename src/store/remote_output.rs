//! Array outputs on object storage. There is no rename on S3, so an output is written in place,
//! under its final prefix, in an order that never shows a reader a complete-looking array that is
//! not:
//!
//! 1. the prefix is claimed with a marker object, `.dsk-partial` (the owner: pid, host, start,
//!    command), written with a conditional PUT (`If-None-Match: *`) so that of two runs starting
//!    at once only one gets it;
//! 2. when `--overwrite` replaces an array, its metadata documents are deleted first (from then on
//!    the prefix is not an array), then its chunks;
//! 3. the chunks are written;
//! 4. `zarr.json` is written last ([`super::ZArray::publish`]), then the marker is deleted.
//!
//! A failed run deletes what it wrote. A run killed outright leaves chunks and the marker but no
//! `zarr.json`: readers see no array, and the next dsk run to write there removes them (when the
//! marker names a process of this host that is gone) or asks for `--overwrite` (another host).

use std::path::Path;

use super::output::{owner_alive, Owner, MARKER};
use super::remote::{Remote, Url};
use crate::error::{Error, Result};

/// Keys a Zarr array's prefix holds: metadata, chunk keys (v3 `c/…`, v2 `0.1` or `0/1`), and dsk's
/// marker. `--overwrite` refuses a prefix with anything else under it.
fn zarr_key(k: &str) -> bool {
    matches!(k, "zarr.json" | ".zarray" | ".zattrs" | MARKER)
        || k.starts_with("c/")
        || k.split('/').all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
}

/// Split dsk's `"URL: message"` store errors into `make(URL, message)` (`fallback` when the
/// message names no URL).
fn split_at(fallback: &Path, m: String, make: fn(&str, String) -> Error) -> Error {
    match m.split_once(": ").filter(|(u, _)| u.contains("://")) {
        Some((url, msg)) => make(url, msg.to_string()),
        None => make(&fallback.display().to_string(), m),
    }
}

/// A store error of an output, as an error on the object's URL.
pub fn error_at(fallback: &Path, m: String) -> Error {
    split_at(fallback, m, |p, m| Error::output(p, m))
}

/// A store error of an input, as an error on the object's URL.
pub fn input_error_at(fallback: &Path, m: String) -> Error {
    split_at(fallback, m, |p, m| Error::input(p, m))
}

/// A claimed output prefix (steps 1–2 done).
#[derive(Debug)]
pub struct RemoteOut {
    pub store: Remote,
    /// The marker's content as this run wrote it: the claim is still this run's while the marker
    /// holds it.
    doc: Vec<u8>,
}

/// Claim the prefix `url` for a new array (see the module comment); `dest` names it in messages.
pub fn claim(dest: &Path, url: &Url, overwrite: bool, me: &Owner) -> Result<RemoteOut> {
    let store = Remote::new(url, None).map_err(|m| error_at(dest, m))?;
    if !url.writable() {
        return Err(Error::output(dest, "arrays on http(s):// are read-only — write to s3:// or a local path"));
    }
    if url.key.is_empty() {
        return Err(Error::output(
            dest,
            "is a whole bucket — write the array under a prefix, like s3://BUCKET/NAME.zarr",
        ));
    }
    let keys: Vec<String> = store.list_sizes("").map_err(|m| error_at(dest, m))?.into_iter().map(|(k, _)| k).collect();
    let has = |k: &str| keys.iter().any(|x| x == k);
    let is_array = has("zarr.json") || has(".zarray");
    if has(MARKER) {
        let owner: Option<Owner> =
            store.read_bytes(MARKER).ok().flatten().and_then(|b| serde_json::from_slice(&b).ok());
        let who = owner.as_ref().map(|o| o.describe()).unwrap_or_else(|| "another dsk run".into());
        // Some(alive) when the marker names a process of this host
        let here = owner.as_ref().filter(|o| o.host == me.host).map(|o| owner_alive(o.pid as i32, o.started));
        let (here_and_alive, here_and_gone) = (here == Some(true), here == Some(false));
        if here_and_alive {
            return Err(Error::output(
                dest,
                format!("is being written by another run: {who} — wait for it to finish or stop it; two runs never write one output"),
            ));
        }
        if !here_and_gone && !overwrite {
            return Err(Error::output(
                dest,
                format!("is being written, or was left unfinished, by {who} — if that run is over, pass --overwrite to replace what it left"),
            ));
        }
        if !is_array {
            if let Some(k) = keys.iter().find(|k| !zarr_key(k)) {
                return Err(Error::output(
                    dest,
                    format!("holds an unfinished output of {who} and objects that are not part of a Zarr array (e.g. {k}) — dsk does not delete what it did not write; move them away yourself or choose another prefix"),
                ));
            }
            eprintln!("dsk: removing the unfinished output under {dest}, left by {who}", dest = dest.display());
            // the marker last: until it goes, no other run takes the prefix
            let (marker, rest): (Vec<String>, Vec<String>) = keys.iter().cloned().partition(|k| k == MARKER);
            delete_keys(&store, dest, &rest)?;
            delete_keys(&store, dest, &marker)?;
            return claim_free(dest, store, me, &[]);
        }
        if overwrite {
            // an array under a stale marker, replaced: the marker goes first, to be taken anew
            delete_keys(&store, dest, &[MARKER.to_string()])?;
        }
    }
    if is_array && !overwrite {
        return Err(Error::output(dest, "already exists — pass --overwrite to replace it, or choose another path"));
    }
    if !is_array && !has(MARKER) && !keys.is_empty() && keys.iter().all(|k| zarr_key(k)) {
        // chunks without metadata or marker: an unfinished write whose marker is gone
        if !overwrite {
            return Err(Error::output(
                dest,
                format!("holds {} chunk object(s) but no array metadata (an unfinished write?) — pass --overwrite to replace them, or choose another prefix", keys.len()),
            ));
        }
        let out = claim_free(dest, store, me, &keys)?;
        let rest: Vec<String> = keys.iter().filter(|k| k.as_str() != MARKER).cloned().collect();
        delete_keys(&out.store, dest, &rest)?;
        return Ok(out);
    }
    if !is_array && !keys.is_empty() {
        return Err(Error::output(
            dest,
            format!(
                "holds {} object(s) but no Zarr array (e.g. {}) — dsk does not write over them; choose another prefix",
                keys.len(),
                keys[0]
            ),
        ));
    }
    if is_array {
        if let Some(k) = keys.iter().find(|k| !zarr_key(k)) {
            return Err(Error::output(
                dest,
                format!("holds objects that are not part of a Zarr array (e.g. {k}); --overwrite only replaces Zarr arrays — move them away yourself or choose another prefix"),
            ));
        }
    }
    let old: Vec<String> = if is_array { keys.clone() } else { vec![] };
    let out = claim_free(dest, store, me, &old)?;
    if is_array {
        // metadata first: from here on the prefix is no longer an array
        let (meta, rest): (Vec<&String>, Vec<&String>) = keys
            .iter()
            .filter(|k| k.as_str() != MARKER)
            .partition(|k| matches!(k.as_str(), "zarr.json" | ".zarray" | ".zattrs"));
        let meta: Vec<String> = meta.into_iter().cloned().collect();
        let rest: Vec<String> = rest.into_iter().cloned().collect();
        delete_keys(&out.store, dest, &meta)?;
        delete_keys(&out.store, dest, &rest)?;
    }
    Ok(out)
}

/// Take the prefix with the marker; then check that nothing but the marker and `old` (an array
/// being replaced) is there — else another run is writing it too, and this one backs off.
fn claim_free(dest: &Path, store: Remote, me: &Owner, old: &[String]) -> Result<RemoteOut> {
    let doc = serde_json::to_vec(me).map_err(|e| Error::Internal(format!("serialise the owner: {e}")))?;
    let busy = || {
        Error::output(
            dest,
            "another run started writing it at the same moment — two runs never write one output; try again when it is done",
        )
    };
    if !store.create_new(MARKER, doc.clone().into()).map_err(|m| error_at(dest, m))? {
        return Err(busy());
    }
    let out = RemoteOut { store, doc };
    let now = out.store.list_sizes("").map_err(|m| error_at(dest, m))?;
    if now.iter().any(|(k, _)| k != MARKER && !old.contains(k)) {
        if out.owned() {
            let _ = out.store.delete(MARKER);
        }
        return Err(busy());
    }
    Ok(out)
}

fn delete_keys(store: &Remote, dest: &Path, keys: &[String]) -> Result<()> {
    store.delete_many(keys).map_err(|m| error_at(dest, m))
}

impl RemoteOut {
    /// Whether the marker is still this run's.
    fn owned(&self) -> bool {
        matches!(self.store.read_bytes(MARKER), Ok(Some(b)) if b.as_ref() == self.doc.as_slice())
    }

    /// Before the array's metadata is written: the prefix must still be this run's.
    pub fn verify(&self, dest: &Path) -> Result<()> {
        if self.owned() {
            return Ok(());
        }
        Err(Error::output(
            dest,
            "another run took the output over while this one wrote it (its marker .dsk-partial changed) — this run's result is not published; run again when the other is done",
        ))
    }

    /// The run succeeded and the array's metadata is written: drop the marker.
    pub fn commit(&self, dest: &Path) -> Result<()> {
        match self.store.read_bytes("zarr.json") {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Error::Internal(format!("{}: committed before its zarr.json was written", dest.display())))
            }
            Err(m) => return Err(error_at(dest, m)),
        }
        self.store.delete(MARKER).map_err(|m| error_at(dest, m))
    }

    /// The run failed: delete everything under the prefix (dsk claimed it; what it held before
    /// was an array `--overwrite` replaced, already deleted).
    pub fn abandon(&self) -> std::result::Result<(), String> {
        if super::remote::server_unreachable() || !self.owned() {
            return Ok(()); // another run holds the prefix now: what is there is not this run's
        }
        let keys: Vec<String> =
            self.store.list_sizes("")?.into_iter().map(|(k, _)| k).filter(|k| zarr_key(k) && k != MARKER).collect();
        self.store.delete_many(&keys)?;
        self.store.delete(MARKER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zarr_keys_are_told_from_others() {
        for k in ["zarr.json", ".zarray", ".zattrs", "c/0/1", "0.1", "0/1", "3", MARKER] {
            assert!(zarr_key(k), "{k}");
        }
        for k in ["notes.txt", "sub/zarr.json", "a/0", ".zgroup"] {
            assert!(!zarr_key(k), "{k}");
        }
    }
}
