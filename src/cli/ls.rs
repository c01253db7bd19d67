//! `dsk ls STORE [--json]`: the arrays and groups of a Zarr group (a dataset xarray wrote, or a
//! store dsk wrote into), with shape, dtype, chunks, dimensions and size — the listing `dsk info`
//! also shows for a group.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};

use crate::error::{human, Error, Result};
use crate::store::group::{self, Member, NodeType};
use crate::store::meta::printable;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk ls era5.zarr
  dsk ls era5.zarr --json | jq -r '.members[].name'")]
pub struct LsArgs {
    /// A Zarr group (v2 or v3) on local disk: a store xarray or dsk wrote.
    pub path: PathBuf,
    /// Print one JSON object instead of a table (the group, and each member as dsk info --json
    /// describes it).
    #[arg(long)]
    pub json: bool,
}

/// The group at `path`, refused with what it is otherwise.
pub fn check_group(path: &Path) -> Result<u8> {
    if crate::store::remote::is_url(path) {
        return Err(Error::input(
            path,
            "listing groups on object storage is not supported yet — name an array inside it (dsk info URL/NAME)",
        ));
    }
    match group::node_type(path) {
        NodeType::Group(f) => Ok(f),
        NodeType::Array(_) => Err(Error::input(path, "is a Zarr array, not a group — dsk info describes it")),
        NodeType::Other if !path.exists() => Err(Error::input(path, "does not exist — check the path")),
        NodeType::Other => Err(Error::input(
            path,
            "is not a Zarr group (no zarr.json with node_type group, no .zgroup) — pass a store xarray or dsk wrote",
        )),
    }
}

/// The group as JSON: format, attributes, consolidated or not, members.
pub fn describe(path: &Path, format: u8, members: &[Member]) -> Result<Value> {
    Ok(json!({
        "path": path.display().to_string(),
        "node_type": "group",
        "zarr_format": format,
        "consolidated": group::is_consolidated(path),
        "attributes": group::attributes(path)?,
        "members": members,
    }))
}

/// The members as an aligned table.
pub fn table(members: &[Member]) -> String {
    let mut rows = vec![["name", "shape", "dtype", "chunks", "dimensions", "stored"].map(String::from)];
    for m in members {
        match &m.array {
            Some(a) => {
                let list = |k: &str| {
                    a[k].as_array().map(|v| {
                        let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                        format!("({}{})", items.join(", "), if items.len() == 1 { "," } else { "" })
                    })
                };
                let dims = a["dimension_names"].as_array().map(|v| {
                    v.iter()
                        .map(|x| x.as_str().map(printable).unwrap_or_else(|| "-".into()))
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                rows.push([
                    printable(&m.name),
                    list("shape").unwrap_or_default(),
                    a["dtype"].as_str().unwrap_or("?").to_string(),
                    list("chunks").unwrap_or_default(),
                    dims.unwrap_or_else(|| "-".into()),
                    a["nbytes_stored"].as_u64().map(human).unwrap_or_else(|| "?".into()),
                ]);
            }
            None => rows.push([
                format!("{}/", printable(&m.name)),
                "group".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
            ]),
        }
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn run(a: &LsArgs) -> Result<()> {
    let format = check_group(&a.path)?;
    let members = group::members(&a.path, true)?;
    let out = if a.json {
        let mut t = serde_json::to_string_pretty(&describe(&a.path, format, &members)?)
            .map_err(|e| Error::Internal(e.to_string()))?;
        t.push('\n');
        t
    } else if members.is_empty() {
        format!("{}: an empty Zarr v{format} group\n", a.path.display())
    } else {
        table(&members)
    };
    crate::write_stdout(out.as_bytes())
}
