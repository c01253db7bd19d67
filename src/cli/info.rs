//! `dsk info PATH [--json]`: what Dask's array repr shows, and more.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};

use crate::error::{human, Error, Result};
use crate::grid::{tuple, Grid};
use crate::store::meta::{printable, read_meta, stored_bytes, ArrayMeta};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk info big.zarr
  dsk info big.zarr --json | jq .nchunks")]
pub struct InfoArgs {
    /// A Zarr array directory (v2 or v3), or a group (its members are listed).
    pub path: PathBuf,
    /// Print one JSON object instead of text (keys documented in docs/commands.md).
    #[arg(long)]
    pub json: bool,
    /// Send unsigned requests to S3 (public buckets), as AWS_NO_SIGN_REQUEST=1 does.
    #[arg(long)]
    pub anon: bool,
}

/// Everything `info` reports, as JSON.
pub fn describe(path: &std::path::Path, m: &ArrayMeta) -> Result<Value> {
    let item = m.itemsize();
    let nbytes = m.shape.iter().product::<u64>() * item;
    let stored = stored_bytes(path)?;
    let inner = Grid::new(m.shape.clone(), m.chunks.clone());
    let outer = Grid::new(m.shape.clone(), m.storage_chunks().to_vec());
    let ratio = stored.filter(|&n| n > 0).map(|n| nbytes as f64 / n as f64);
    Ok(json!({
        "path": path.display().to_string(),
        "zarr_format": m.zarr_format,
        "shape": m.shape,
        "ndim": m.shape.len(),
        "dtype": m.dtype_name(),
        "itemsize": item,
        "chunks": m.chunks,
        "shards": m.shards,
        "chunks_per_axis": inner.grid_shape(),
        "nchunks": inner.nchunks(),
        "nshards": m.shards.as_ref().map(|_| outer.nchunks()),
        "chunk_bytes": inner.chunk_len() * item,
        "nbytes": nbytes,
        "nbytes_stored": stored,
        "compression_ratio": ratio,
        "codecs": m.codecs,
        "fill_value": m.fill_value,
        "dimension_names": m.dimension_names,
        "order": m.order.to_string(),
        "attributes": m.attributes,
        "byte_order": if m.big_endian { "big" } else { "little" },
    }))
}

fn codec_text(c: &Value) -> String {
    let name = printable(c.get("name").and_then(Value::as_str).unwrap_or("?"));
    let conf = c.get("configuration").and_then(Value::as_object);
    let mut parts = vec![];
    if let Some(conf) = conf {
        for (k, v) in conf {
            if k == "codecs" || k == "index_codecs" || k == "chunk_shape" {
                continue;
            }
            let v = match v {
                Value::String(s) => printable(s),
                other => other.to_string(),
            };
            parts.push(format!("{}={v}", printable(k)));
        }
    }
    let mut t = if parts.is_empty() { name } else { format!("{name}({})", parts.join(", ")) };
    if let Some(inner) = c.pointer("/configuration/codecs").and_then(Value::as_array) {
        let inner: Vec<String> = inner.iter().map(codec_text).collect();
        t = format!("{t}[{}]", inner.join(" → "));
    }
    t
}

pub fn run(args: &InfoArgs) -> Result<()> {
    if let crate::store::group::NodeType::Group(format) = crate::store::group::node_type(&args.path) {
        return group(args, format);
    }
    let m = read_meta(&args.path)?;
    let d = describe(&args.path, &m)?;
    let mut out = String::new();
    if args.json {
        out = serde_json::to_string_pretty(&d).map_err(|e| Error::Internal(e.to_string()))?;
        out.push('\n');
    } else {
        let item = m.itemsize();
        let g = Grid::new(m.shape.clone(), m.chunks.clone());
        let per_axis: Vec<String> = g.grid_shape().iter().map(|x| x.to_string()).collect();
        let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
        line(&mut out, "path", args.path.display().to_string());
        line(&mut out, "format", format!("Zarr v{}", m.zarr_format));
        line(&mut out, "shape", tuple(&m.shape));
        line(
            &mut out,
            "dtype",
            format!(
                "{} ({} bytes per element{})",
                m.dtype_name(),
                item,
                if m.half { ", computed as float32" } else { "" }
            ),
        );
        line(
            &mut out,
            "chunks",
            format!(
                "{} — {} chunks ({}), {} per chunk",
                tuple(&m.chunks),
                g.nchunks(),
                per_axis.join(" × "),
                human(g.chunk_len() * item)
            ),
        );
        if let Some(s) = &m.shards {
            let sg = Grid::new(m.shape.clone(), s.clone());
            line(
                &mut out,
                "shards",
                format!("{} — {} shards, {} per shard", tuple(s), sg.nchunks(), human(sg.chunk_len() * item)),
            );
        }
        let nbytes = d["nbytes"].as_u64().unwrap_or(0);
        let stored = d["nbytes_stored"].as_u64();
        line(&mut out, "logical size", format!("{} ({nbytes} bytes)", human(nbytes)));
        let ratio = d["compression_ratio"].as_f64().map(|r| format!(", ratio {r:.2}×")).unwrap_or_default();
        match stored {
            Some(n) => line(&mut out, "stored size", format!("{}{ratio}", human(n))),
            None => line(&mut out, "stored size", "not known (an http(s):// array cannot be listed)".into()),
        }
        let codecs: Vec<String> = m.codecs.iter().map(codec_text).collect();
        line(&mut out, "codecs", if codecs.is_empty() { "none".into() } else { codecs.join(" → ") });
        line(&mut out, "fill value", m.fill_value.to_string());
        if m.zarr_format == 2 {
            line(&mut out, "order", m.order.to_string());
        }
        if m.big_endian {
            line(&mut out, "byte order", "big-endian".into());
        }
        if let Some(names) = &m.dimension_names {
            let n: Vec<String> =
                names.iter().map(|x| x.as_deref().map(printable).unwrap_or_else(|| "-".into())).collect();
            line(&mut out, "dimensions", n.join(", "));
        }
        if !m.attributes.is_empty() {
            line(&mut out, "attributes", attributes_text(&m.attributes));
        }
    }
    crate::write_stdout(out.as_bytes())
}

fn attributes_text(a: &serde_json::Map<String, Value>) -> String {
    let items: Vec<String> = a.iter().map(|(k, v)| format!("{}={}", printable(k), printable(&v.to_string()))).collect();
    items.join(", ")
}

/// `dsk info` on a group: its format and attributes, and its members as `dsk ls` lists them.
fn group(args: &InfoArgs, format: u8) -> Result<()> {
    let members = crate::store::group::members(&args.path, true)?;
    let out = if args.json {
        let d = super::ls::describe(&args.path, format, &members)?;
        let mut t = serde_json::to_string_pretty(&d).map_err(|e| Error::Internal(e.to_string()))?;
        t.push('\n');
        t
    } else {
        let arrays = members.iter().filter(|m| m.array.is_some()).count();
        let groups = members.len() - arrays;
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let mut out = String::new();
        let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
        line(&mut out, "path", args.path.display().to_string());
        let consolidated =
            if crate::store::group::is_consolidated(&args.path) { ", consolidated metadata" } else { "" };
        line(&mut out, "format", format!("Zarr v{format} group{consolidated}"));
        line(&mut out, "holds", format!("{}, {}", plural(arrays, "array"), plural(groups, "group")));
        let attrs = crate::store::group::attributes(&args.path)?;
        if !attrs.is_empty() {
            line(&mut out, "attributes", attributes_text(&attrs));
        }
        if !members.is_empty() {
            out.push('\n');
            out.push_str(&super::ls::table(&members));
        }
        out
    };
    crate::write_stdout(out.as_bytes())
}
