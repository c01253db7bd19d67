//! Pictures as files: every picture dsk draws (task graphs, plots, the report's charts) is an SVG
//! document first; a `.png` is that same SVG rendered by resvg with a font compiled into dsk
//! (DejaVu Sans, so text looks the same on a machine without fonts), and a file is written under a
//! temporary name and renamed when complete.

use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// DejaVu Sans (license: assets/fonts/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name SVGs written by dsk ask for.
pub const FONT_FAMILY: &str = "DejaVu Sans, sans-serif";

fn fonts() -> &'static std::sync::Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<std::sync::Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_font_data(FONT.to_vec());
        db.set_sans_serif_family("DejaVu Sans");
        db.set_serif_family("DejaVu Sans");
        db.set_monospace_family("DejaVu Sans");
        std::sync::Arc::new(db)
    })
}

/// Render an SVG document to PNG bytes at its own size (times `scale`).
pub fn svg_to_png(svg: &str, scale: f32) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let opt = usvg::Options { fontdb: fonts().clone(), font_family: "DejaVu Sans".into(), ..usvg::Options::default() };
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| Error::Internal(format!("dsk drew an SVG that does not parse: {e}")))?;
    let size = tree.size().to_int_size().scale_by(scale).ok_or_else(|| Error::Internal("empty picture".into()))?;
    if (size.width() as u64) * (size.height() as u64) > 400_000_000 {
        return Err(Error::Internal(format!(
            "a {}×{} pixel picture is too large to render",
            size.width(),
            size.height()
        )));
    }
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| Error::Internal("cannot allocate the picture".into()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| Error::Internal(format!("cannot encode the PNG: {e}")))
}

/// Encode RGBA pixels (row-major, `width × height × 4` bytes) as PNG.
pub fn rgba_to_png(width: u32, height: u32, rgba: &[u8]) -> Result<Vec<u8>> {
    use resvg::tiny_skia;
    let size = tiny_skia::IntSize::from_wh(width, height).ok_or_else(|| Error::Internal("empty picture".into()))?;
    let mut data = rgba.to_vec();
    // tiny-skia stores premultiplied alpha
    for px in data.chunks_exact_mut(4) {
        let a = px[3] as u16;
        if a < 255 {
            for c in &mut px[..3] {
                *c = ((*c as u16 * a + 127) / 255) as u8;
            }
        }
    }
    let pixmap = tiny_skia::Pixmap::from_vec(data, size)
        .ok_or_else(|| Error::Internal("the pixel buffer does not match the picture size".into()))?;
    pixmap.encode_png().map_err(|e| Error::Internal(format!("cannot encode the PNG: {e}")))
}

/// A `data:` URI of PNG bytes, for `<image href=…>` in an SVG or HTML page.
pub fn png_data_uri(png: &[u8]) -> String {
    use base64::Engine;
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

/// Escape text for SVG/HTML/XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // characters XML 1.0 cannot hold at all
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// A picture file format, from the output's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PictureFormat {
    Svg,
    Png,
    Dot,
    Html,
}

impl PictureFormat {
    /// The format named by `path`'s extension, among `allowed`; a one-line usage error otherwise.
    pub fn of(path: &Path, arg: &str, allowed: &[PictureFormat]) -> Result<PictureFormat> {
        let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
        let f = match ext.as_deref() {
            Some("svg") => Some(PictureFormat::Svg),
            Some("png") => Some(PictureFormat::Png),
            Some("dot" | "gv") => Some(PictureFormat::Dot),
            Some("html" | "htm") => Some(PictureFormat::Html),
            _ => None,
        };
        match f {
            Some(f) if allowed.contains(&f) => Ok(f),
            _ => Err(Error::usage(
                arg,
                format!(
                    "{} — name the file with one of the extensions {}",
                    path.display(),
                    allowed.iter().map(|f| f.ext()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            PictureFormat::Svg => ".svg",
            PictureFormat::Png => ".png",
            PictureFormat::Dot => ".dot",
            PictureFormat::Html => ".html",
        }
    }
}

/// What marks a picture, page or DOT file as written by dsk (so a later run may replace it).
const MARK_TEXT: &str = "generator: dsk";
const MARK_HTML: &str = "<meta name=\"generator\" content=\"dsk\">";
const MARK_PNG: &[u8] = b"tEXtSoftware\0dsk";

/// `bytes` with dsk's mark added as the format allows: an XML comment in SVG, a comment line in
/// DOT, a `tEXt` chunk in PNG; HTML pages carry a generator `<meta>` of their own.
fn marked(path: &Path, bytes: &[u8]) -> Vec<u8> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("svg") => {
            let comment = format!("<!-- {MARK_TEXT} {} -->\n", env!("CARGO_PKG_VERSION"));
            // after an XML declaration, which must come first
            let at = if bytes.starts_with(b"<?xml") {
                bytes.windows(2).position(|w| w == b"?>").map(|i| i + 2).unwrap_or(0)
            } else {
                0
            };
            let mut v = bytes[..at].to_vec();
            if at > 0 {
                v.push(b'\n');
            }
            v.extend_from_slice(comment.as_bytes());
            v.extend_from_slice(&bytes[at..]);
            v
        }
        Some("dot" | "gv") => {
            let mut v = format!("// {MARK_TEXT} {}\n", env!("CARGO_PKG_VERSION")).into_bytes();
            v.extend_from_slice(bytes);
            v
        }
        Some("png") if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 33 => {
            // a tEXt chunk right after IHDR (8 signature + 25 IHDR bytes)
            let data = MARK_PNG;
            let mut chunk = ((data.len() - 4) as u32).to_be_bytes().to_vec();
            chunk.extend_from_slice(data);
            chunk.extend_from_slice(&crc32(data).to_be_bytes());
            let mut v = bytes[..33].to_vec();
            v.extend_from_slice(&chunk);
            v.extend_from_slice(&bytes[33..]);
            v
        }
        _ => bytes.to_vec(),
    }
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// True when the file at `path` carries dsk's mark (in its first 64 KiB).
fn made_by_dsk(path: &Path) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; 64 << 10];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    let head = &head[..n];
    let has = |m: &[u8]| head.windows(m.len()).any(|w| w == m);
    has(MARK_TEXT.as_bytes()) || has(MARK_HTML.as_bytes()) || has(MARK_PNG)
}

/// Refuse a URL where a picture or report file is to be written (`arg` names the option).
fn local_only(path: &Path, arg: &str) -> Result<()> {
    if crate::store::remote::is_url(path) {
        return Err(Error::usage(
            arg,
            format!(
                "{}: pictures and reports are written to local files only — write it locally and copy it",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Refuse to replace `path` unless it is missing or a file dsk wrote (`arg` names the option).
pub fn check_replaceable(path: &Path, arg: &str) -> Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    local_only(path, arg)?;
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => Err(Error::usage(arg, format!("{} is a directory — name a file", path.display()))),
        Ok(m) if m.file_type().is_symlink() => Err(Error::usage(
            arg,
            format!("{} is a symbolic link — dsk does not write through links; name the file itself", path.display()),
        )),
        Ok(m) if m.is_file() && made_by_dsk(path) => Ok(()),
        Ok(_) => Err(Error::output(
            path,
            format!(
                "already exists and was not written by dsk — dsk replaces only its own pictures and reports; choose another name for {arg}, or remove it"
            ),
        )),
    }
}

/// Write `bytes` to `path` (or stdout for `-`; `arg` is the option that named it): under a
/// temporary name in the same directory, renamed over `path` when complete, so a reader never
/// sees half a picture. The file carries
/// dsk's mark, and an existing file is replaced only when it carries it too (see
/// [`check_replaceable`]; commands call that before they run, so a long run is not lost to it).
pub fn write_file(path: &Path, arg: &str, bytes: &[u8]) -> Result<()> {
    write_file_over(path, arg, bytes, false)
}

/// [`write_file`], replacing any existing file (not a directory) when `overwrite` (the user said
/// `--overwrite`).
pub fn write_file_over(path: &Path, arg: &str, bytes: &[u8], overwrite: bool) -> Result<()> {
    if path.as_os_str() == "-" {
        return crate::write_stdout(bytes);
    }
    local_only(path, arg)?;
    if path.is_dir() {
        return Err(Error::usage(arg, format!("{} is a directory — name a file", path.display())));
    }
    if !overwrite {
        check_replaceable(path, arg)?;
    }
    let bytes = &marked(path, bytes)[..];
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, "create", e))?;
    use std::io::Write;
    tmp.write_all(bytes).map_err(|e| Error::io(path, "write", e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, "write", e))?;
    // readable by others like any file the user makes (tempfile creates 0600)
    use std::os::unix::fs::PermissionsExt;
    let _ = tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644));
    tmp.persist(path).map_err(|e| Error::io(path, "write", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_with_the_embedded_font() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><text x="5" y="28" font-family="DejaVu Sans" font-size="20" fill="#000">dsk</text></svg>"##;
        let png = svg_to_png(svg, 1.0).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // the text drew dark pixels
        let tree = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        assert!(tree.pixels().iter().any(|p| p.red() < 100));
    }

    #[test]
    fn marks_and_replaces_only_its_own_files() {
        let d = tempfile::tempdir().unwrap();
        let png = d.path().join("p.png");
        let svg =
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><rect width="9" height="9"/></svg>"##;
        write_file(&png, "-o", &svg_to_png(svg, 1.0).unwrap()).unwrap();
        // still a PNG that decodes, with the mark
        let bytes = std::fs::read(&png).unwrap();
        assert!(resvg::tiny_skia::Pixmap::decode_png(&bytes).is_ok());
        write_file(&png, "-o", &svg_to_png(svg, 1.0).unwrap()).unwrap();
        let s = d.path().join("x.svg");
        write_file(&s, "-o", format!("<?xml version=\"1.0\"?>{svg}").as_bytes()).unwrap();
        assert!(resvg::usvg::Tree::from_data(&std::fs::read(&s).unwrap(), &Default::default()).is_ok());
        write_file(&s, "-o", svg.as_bytes()).unwrap();
        let mine = d.path().join("mine.svg");
        std::fs::write(&mine, svg).unwrap();
        assert!(write_file(&mine, "-o", svg.as_bytes()).is_err());
        assert_eq!(std::fs::read_to_string(&mine).unwrap(), svg);
    }

    #[test]
    fn crc_of_iend() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn escapes() {
        assert_eq!(xml_escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
