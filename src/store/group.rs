//! Zarr groups on local disk: an output may be `store.zarr/var` (a variable of a dataset, as
//! xarray writes one), its missing parent groups are created, and the groups' consolidated
//! metadata (zarr-python's `consolidated_metadata` in a v3 `zarr.json`, or a v2 `.zmetadata`) is
//! brought up to date when an array is written into them. `dsk ls` and `dsk info` on a group list
//! what it holds ([`members`]).
//!
//! Where a group starts: an existing directory whose `zarr.json` says `node_type: group` (or that
//! holds a v2 `.zgroup`), or a missing directory named `*.zarr` on the output's path (the store to
//! create). Any other missing directory is an error, as it always was: dsk does not make
//! directories that are not part of a Zarr store.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// What a directory is, as far as Zarr goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    Array(u8),
    Group(u8),
    /// A directory (or nothing) that is not a Zarr node.
    Other,
}

/// The node at `dir` (local paths only).
pub fn node_type(dir: &Path) -> NodeType {
    if !dir.is_dir() {
        return NodeType::Other;
    }
    if let Ok(bytes) = fs::read(dir.join("zarr.json")) {
        return match serde_json::from_slice::<Value>(&bytes).ok().as_ref().and_then(|v| v.get("node_type")) {
            Some(Value::String(t)) if t == "array" => NodeType::Array(3),
            Some(Value::String(t)) if t == "group" => NodeType::Group(3),
            _ => NodeType::Other,
        };
    }
    if dir.join(".zarray").is_file() {
        NodeType::Array(2)
    } else if dir.join(".zgroup").is_file() {
        NodeType::Group(2)
    } else {
        NodeType::Other
    }
}

/// Where an output array goes relative to the groups around it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The Zarr format of the group the array goes into (`None`: a plain directory).
    pub format: Option<u8>,
    /// Groups to create, outermost first.
    pub missing: Vec<PathBuf>,
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(q) if !q.as_os_str().is_empty() => q.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn named_zarr(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("zarr"))
}

/// Where the array `dest` would be written: in a group (and which groups are missing), or in a
/// plain directory. Errors name `dest` and say what to do.
pub fn placement(dest: &Path) -> Result<Placement> {
    use std::path::Component;
    // `store.zarr/sub/../v` would create `sub` and file the array under a key with `..` in the
    // group's consolidated metadata: refuse `..` after a directory name
    let mut seen_name = false;
    for c in dest.components() {
        match c {
            Component::Normal(_) => seen_name = true,
            Component::ParentDir if seen_name => {
                return Err(Error::output(dest, "has '..' after a directory name — write the path without it"))
            }
            _ => {}
        }
    }
    let inside_array = |a: &Path| {
        Error::output(
            dest,
            format!(
                "is inside the Zarr array {} — an array holds chunks, not arrays; write next to it or into a group",
                a.display()
            ),
        )
    };
    let parent = parent_dir(dest);
    if parent.is_dir() {
        return match node_type(&parent) {
            NodeType::Group(f) => {
                let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if name.starts_with("__") {
                    return Err(Error::output(
                        dest,
                        "names starting with '__' are reserved by Zarr inside a group — choose another name",
                    ));
                }
                Ok(Placement { format: Some(f), missing: vec![] })
            }
            NodeType::Array(_) => Err(inside_array(&parent)),
            // a directory inside a group that is not a group itself: an array written there
            // would be invisible to every Zarr reader
            NodeType::Other if matches!(node_type(&parent_dir(&parent)), NodeType::Group(_)) => Err(Error::output(
                dest,
                format!(
                    "{} is a directory inside the Zarr group {} but not a group itself — remove it (dsk then creates the group), or write elsewhere",
                    parent.display(),
                    parent_dir(&parent).display()
                ),
            )),
            NodeType::Other if named_zarr(&parent) && fs::read_dir(&parent).is_ok_and(|mut d| d.next().is_none()) => {
                Err(Error::output(
                    dest,
                    format!(
                        "{} is an empty directory, not a Zarr group — remove it (rmdir {}) and dsk creates the store",
                        parent.display(),
                        parent.display()
                    ),
                ))
            }
            NodeType::Other => Ok(Placement::default()),
        };
    }
    // missing directories on the way: allowed only inside a store (an existing group above, or a
    // missing directory named *.zarr that becomes the store's root group)
    let mut missing = vec![];
    let mut p = parent.clone();
    loop {
        if p.is_dir() || p.as_os_str() == "." || p.as_os_str() == "/" {
            break;
        }
        if p.exists() {
            return Err(Error::output(
                dest,
                format!("{} is a file, not a directory — choose another path", p.display()),
            ));
        }
        missing.push(p.clone());
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q.to_path_buf(),
            _ => {
                p = PathBuf::from(".");
                break;
            }
        }
    }
    missing.reverse();
    let format = match node_type(&p) {
        NodeType::Group(f) => Some(f),
        NodeType::Array(_) => return Err(inside_array(&p)),
        NodeType::Other if missing.first().is_some_and(|m| named_zarr(m)) => Some(3),
        NodeType::Other if named_zarr(&p) => {
            return Err(Error::output(
                dest,
                format!(
                    "{} is a directory but not a Zarr group — remove it if it is empty (dsk then creates the store), or write elsewhere",
                    p.display()
                ),
            ))
        }
        NodeType::Other => {
            return Err(Error::output(
                dest,
                format!(
                    "the parent directory {} does not exist — create it first (mkdir -p {}), or name a store to create, like data.zarr/{}",
                    parent.display(),
                    parent.display(),
                    dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                ),
            ))
        }
    };
    Ok(Placement { format, missing })
}

/// The Zarr format an array written at `dest` takes: 2 inside a Zarr v2 group (a dataset xarray
/// wrote as v2), else 3.
pub fn format_for(dest: &Path) -> u8 {
    if super::remote::is_url(dest) {
        return 3;
    }
    placement(dest).ok().and_then(|p| p.format).unwrap_or(3)
}

/// Create the group `dir` with its metadata in one step: built under a private name and renamed
/// into place, so that a concurrent run never sees a directory that is not a group yet. `false`
/// when another run made the group first.
fn write_group(dir: &Path, format: u8) -> std::io::Result<bool> {
    let name = dir.file_name().ok_or_else(|| std::io::Error::other("no directory name"))?;
    let tmp = parent_dir(dir).join(format!(".{}.dsk-group-{}", name.to_string_lossy(), std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp)?;
    let (file, doc) = match format {
        2 => (".zgroup", json!({"zarr_format": 2})),
        _ => ("zarr.json", json!({"zarr_format": 3, "node_type": "group", "attributes": {}})),
    };
    let made = write_json(&tmp.join(file), &doc).and_then(|_| super::output::rename_noreplace(&tmp, dir));
    match made {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY))
                && matches!(node_type(dir), NodeType::Group(_))
            {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Create the missing groups of `p` (outermost first). Returns those created, for
/// [`remove_if_empty`] when the run fails.
pub fn create_missing(p: &Placement) -> Result<Vec<PathBuf>> {
    let format = p.format.unwrap_or(3);
    let mut made = vec![];
    for dir in &p.missing {
        match write_group(dir, format) {
            Ok(true) => made.push(dir.clone()),
            Ok(false) => {}
            Err(e) => {
                remove_if_empty(&made);
                return Err(Error::io(dir, "create the group", e));
            }
        }
    }
    Ok(made)
}

/// Remove groups this run created (innermost first) while they hold nothing but their metadata.
pub fn remove_if_empty(made: &[PathBuf]) {
    for dir in made.iter().rev() {
        let only_meta = fs::read_dir(dir).is_ok_and(|rd| {
            rd.flatten().all(|e| matches!(e.file_name().to_str(), Some("zarr.json" | ".zgroup" | ".zattrs")))
        });
        if only_meta {
            let _ = fs::remove_file(dir.join("zarr.json"));
            let _ = fs::remove_file(dir.join(".zgroup"));
            let _ = fs::remove_file(dir.join(".zattrs"));
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Write `doc` to `file` atomically (a temporary name, then rename).
fn write_json(file: &Path, doc: &Value) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(doc).map_err(std::io::Error::other)?;
    let dir = parent_dir(file);
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(&text)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

fn read_json(file: &Path) -> Result<Option<Value>> {
    match fs::read(file) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::input(file, format!("is not valid JSON ({e}) — fix or remove it"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(file, "read", e)),
    }
}

/// An exclusive lock on a group directory while its consolidated metadata is rewritten (two runs
/// writing two variables of one dataset must not lose each other's entry).
struct DirLock(fs::File);

impl DirLock {
    fn take(dir: &Path) -> Result<DirLock> {
        let f = fs::File::open(dir).map_err(|e| Error::io(dir, "open the group", e))?;
        f.lock().map_err(|e| Error::io(dir, "lock the group", e))?;
        Ok(DirLock(f))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The metadata documents of the node at `dir` as consolidated metadata holds them: v3 one
/// `zarr.json` document; v2 `.zarray`/`.zgroup` and `.zattrs`, keyed by file name.
fn node_docs(dir: &Path) -> Result<Vec<(String, Value)>> {
    let mut docs = vec![];
    for name in ["zarr.json", ".zarray", ".zgroup", ".zattrs"] {
        if let Some(mut v) = read_json(&dir.join(name))? {
            if name == "zarr.json" {
                // a subgroup's entry holds an empty consolidated metadata, as zarr-python writes
                // it (its members are entries of the group consolidated, keyed by path)
                if let Some(o) = v.as_object_mut() {
                    if o.get("node_type").and_then(Value::as_str) == Some("group") {
                        o.insert(
                            "consolidated_metadata".into(),
                            json!({"kind": "inline", "must_understand": false, "metadata": {}}),
                        );
                    }
                }
            }
            docs.push((name.to_string(), v));
        }
    }
    Ok(docs)
}

/// Bring the consolidated metadata of every group above `written` (up to the store's root) up to
/// date with the node at `written` and the groups created for it. Groups without consolidated
/// metadata are left as they are. Returns the groups updated.
pub fn update_consolidated(written: &Path, created: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut updated = vec![];
    // keys are paths inside the group: resolve `.`, symlinks and relative paths first
    let real = |p: &Path| fs::canonicalize(p).map_err(|e| Error::io(p, "resolve the path of", e));
    let mut nodes: Vec<PathBuf> = created.iter().map(|c| real(c)).collect::<Result<_>>()?;
    let written = real(written)?;
    nodes.push(written.clone());
    let mut g = parent_dir(&written);
    while let NodeType::Group(format) = node_type(&g) {
        let _lock = DirLock::take(&g)?;
        if consolidate_into(&g, format, &nodes)? {
            updated.push(g.clone());
        }
        match g.parent() {
            Some(p) if !p.as_os_str().is_empty() => g = p.to_path_buf(),
            _ => break,
        }
    }
    Ok(updated)
}

/// Put the metadata of `nodes` into the consolidated metadata of the group `g` (locked), if it
/// has any; whether it had.
fn consolidate_into(g: &Path, format: u8, nodes: &[PathBuf]) -> Result<bool> {
    let rel = |n: &Path| -> Option<String> {
        let r = n.strip_prefix(g).ok()?;
        Some(r.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/"))
    };
    let again = "consolidate again with zarr.consolidate_metadata";
    if format == 3 {
        let file = g.join("zarr.json");
        let Some(mut doc) = read_json(&file)? else { return Ok(false) };
        let Some(Value::Object(cm)) = doc.get_mut("consolidated_metadata") else { return Ok(false) };
        let Value::Object(meta) = cm.entry("metadata").or_insert_with(|| Value::Object(Map::new())) else {
            return Err(Error::input(
                &file,
                format!("has consolidated_metadata.metadata that is not an object — fix it, or {again}"),
            ));
        };
        for n in nodes {
            let Some(key) = rel(n) else { continue };
            if let Some((_, d)) = node_docs(n)?.into_iter().find(|(k, _)| k == "zarr.json") {
                meta.insert(key, d);
            }
        }
        write_json(&file, &doc).map_err(|e| Error::io(&file, "update the consolidated metadata", e))?;
        return Ok(true);
    }
    let file = g.join(".zmetadata");
    let Some(mut doc) = read_json(&file)? else { return Ok(false) };
    let Some(Value::Object(meta)) = doc.get_mut("metadata") else {
        return Err(Error::input(&file, format!("has no \"metadata\" object — fix it, or {again}")));
    };
    for n in nodes {
        let Some(key) = rel(n) else { continue };
        for name in [".zarray", ".zattrs", ".zgroup"] {
            meta.remove(&format!("{key}/{name}"));
        }
        for (name, d) in node_docs(n)? {
            meta.insert(format!("{key}/{name}"), d);
        }
    }
    write_json(&file, &doc).map_err(|e| Error::io(&file, "update the consolidated metadata", e))?;
    Ok(true)
}

/// Check an array of `shape` with dimension `names` about to be written at `dest` against the
/// other arrays of its group, as xarray will open them together: when they name their axes (a
/// dataset), this one must too, and a dimension has one length throughout.
pub fn check_dims(dest: &Path, names: Option<&[Option<String>]>, shape: &[u64]) -> Result<()> {
    let parent = parent_dir(dest);
    if !matches!(node_type(&parent), NodeType::Group(_)) {
        return Ok(());
    }
    let own = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut dataset = None;
    for m in members(&parent, false)? {
        let Some(a) = &m.array else { continue };
        if m.name == own {
            continue;
        }
        let (Some(dims), Some(lens)) = (a["dimension_names"].as_array(), a["shape"].as_array()) else { continue };
        for (d, n) in dims.iter().zip(lens) {
            let (Some(d), Some(n)) = (d.as_str(), n.as_u64()) else { continue };
            dataset.get_or_insert_with(|| m.name.clone());
            let mine = names.unwrap_or_default().iter().zip(shape).find(|(x, _)| x.as_deref() == Some(d));
            if let Some((_, &len)) = mine {
                if len != n {
                    return Err(Error::usage(
                        "--dimension-names",
                        format!(
                            "{}: dimension {d:?} has length {len} here but {n} in {} — xarray could not open the group; name the axis otherwise",
                            dest.display(),
                            parent.join(&m.name).display()
                        ),
                    ));
                }
            }
        }
    }
    let unnamed = names.is_none_or(|n| n.iter().any(Option::is_none));
    if let (Some(other), true, false) = (dataset, unnamed, shape.is_empty()) {
        return Err(Error::usage(
            "--dimension-names",
            format!(
                "{} goes into a group whose arrays name their dimensions (as {other} does) and xarray could not open it with an unnamed axis — give every axis a name, e.g. --dimension-names {}",
                dest.display(),
                (0..shape.len()).map(|i| format!("dim_{i}")).collect::<Vec<_>>().join(",")
            ),
        ));
    }
    Ok(())
}

/// One member of a group, for `dsk ls` and `dsk info`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Member {
    /// The path inside the group (`a`, `sub/b`).
    pub name: String,
    pub node_type: &'static str,
    pub zarr_format: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array: Option<Value>,
}

/// The arrays and groups under the group `dir`, depth first, by name; `recursive` also lists the
/// members of subgroups. Directories that are not Zarr nodes (dsk's own partial outputs among
/// them) are left out.
pub fn members(dir: &Path, recursive: bool) -> Result<Vec<Member>> {
    let mut out = vec![];
    walk(dir, "", recursive, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, recursive: bool, out: &mut Vec<Member>) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, "list the group", e))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        // dsk's own directories while it creates or removes something (.NAME.dsk-group-PID, …)
        .filter(|n| {
            let n = n.to_string_lossy();
            !(n.starts_with('.') && (n.contains(".dsk-") || n.ends_with(".new")))
        })
        .collect();
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let name = format!("{prefix}{}", n.to_string_lossy());
        match node_type(&path) {
            NodeType::Array(f) => {
                // the partial output of a run (OUT.partial) is not a member
                if path.join(super::output::MARKER).exists() {
                    continue;
                }
                // another run may commit (rename) or remove its array meanwhile: a member that
                // is gone is no member
                let described = super::meta::read_meta(&path).and_then(|m| crate::cli::info::describe(&path, &m));
                match described {
                    Ok(info) => out.push(Member { name, node_type: "array", zarr_format: f, array: Some(info) }),
                    Err(_) if !path.exists() => continue,
                    Err(e) => return Err(e),
                }
            }
            NodeType::Group(f) => {
                out.push(Member { name: name.clone(), node_type: "group", zarr_format: f, array: None });
                if recursive {
                    walk(&path, &format!("{name}/"), recursive, out)?;
                }
            }
            NodeType::Other => {}
        }
    }
    Ok(())
}

/// The group's own attributes (v3 `attributes`, v2 `.zattrs`).
pub fn attributes(dir: &Path) -> Result<Map<String, Value>> {
    let v = match node_type(dir) {
        NodeType::Group(3) => read_json(&dir.join("zarr.json"))?.and_then(|d| d.get("attributes").cloned()),
        _ => read_json(&dir.join(".zattrs"))?,
    };
    Ok(match v {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    })
}

/// Whether the group at `dir` has consolidated metadata.
pub fn is_consolidated(dir: &Path) -> bool {
    match node_type(dir) {
        NodeType::Group(3) => read_json(&dir.join("zarr.json"))
            .ok()
            .flatten()
            .is_some_and(|d| d.get("consolidated_metadata").is_some_and(|c| !c.is_null())),
        NodeType::Group(_) => dir.join(".zmetadata").is_file(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_in_a_new_store_creates_the_groups() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("new.zarr/sub/var");
        let p = placement(&dest).unwrap();
        assert_eq!(p.format, Some(3));
        assert_eq!(p.missing, vec![t.path().join("new.zarr"), t.path().join("new.zarr/sub")]);
        let made = create_missing(&p).unwrap();
        assert_eq!(node_type(&t.path().join("new.zarr/sub")), NodeType::Group(3));
        remove_if_empty(&made);
        assert!(!t.path().join("new.zarr").exists());
    }

    #[test]
    fn a_missing_plain_directory_is_refused() {
        let t = tempfile::tempdir().unwrap();
        assert!(placement(&t.path().join("nope/var.zarr")).is_err());
        assert_eq!(placement(&t.path().join("var.zarr")).unwrap(), Placement::default());
    }

    #[test]
    fn consolidated_v3_metadata_gets_the_new_member() {
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join("ds.zarr");
        fs::create_dir(&g).unwrap();
        let doc = json!({"zarr_format": 3, "node_type": "group", "attributes": {},
            "consolidated_metadata": {"kind": "inline", "must_understand": false, "metadata": {}}});
        write_json(&g.join("zarr.json"), &doc).unwrap();
        let a = g.join("a");
        fs::create_dir(&a).unwrap();
        write_json(&a.join("zarr.json"), &json!({"zarr_format": 3, "node_type": "array"})).unwrap();
        assert_eq!(update_consolidated(&a, &[]).unwrap(), vec![g.clone()]);
        let d = read_json(&g.join("zarr.json")).unwrap().unwrap();
        assert_eq!(d["consolidated_metadata"]["metadata"]["a"]["node_type"], "array");
    }
}
