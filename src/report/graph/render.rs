//! A [`Graph`] as an SVG document (laid out by [`super::layout`], text in
//! [`FONT_FAMILY`](crate::report::draw::FONT_FAMILY), a `<title>` tooltip and a class per node,
//! curved edges with arrowheads, a legend) or as a DOT digraph with the same nodes, labels, shapes
//! and edges.

use std::fmt::Write;

use super::{layout, Graph, Kind};
use crate::report::draw::{xml_escape, FONT_FAMILY};

const FONT: f64 = 12.0;
const LINE: f64 = 15.0;
/// Average advance of a character of DejaVu Sans at [`FONT`] pixels (a little generous).
const CHAR: f64 = 7.1;
const MARGIN: f64 = 16.0;
const HEADER: f64 = 84.0;

/// (fill, stroke) of a kind.
fn colours(k: Kind) -> (&'static str, &'static str) {
    match k {
        Kind::Input => ("#dbeafe", "#2563eb"),
        Kind::Output => ("#dcfce7", "#15803d"),
        Kind::Work => ("#ffedd5", "#c2410c"),
        Kind::Memory => ("#fef9c3", "#a16207"),
        Kind::File => ("#f3f4f6", "#4b5563"),
        Kind::Task => ("#fef3c7", "#b45309"),
        Kind::Level => ("#fffbeb", "#b45309"),
        Kind::Stage => ("#fef3c7", "#b45309"),
    }
}

fn text_width(s: &str, char_w: f64) -> f64 {
    s.chars().count() as f64 * char_w
}

/// The size of a node drawn with its label.
fn size(kind: Kind, label: &[String]) -> (f64, f64) {
    let tw = label.iter().map(|l| text_width(l, CHAR)).fold(0.0, f64::max);
    let th = label.len().max(1) as f64 * LINE;
    match kind {
        Kind::Task | Kind::Level => (tw * 1.2 + 28.0, th + 22.0),
        Kind::Work => (tw + 22.0, th + 22.0),
        Kind::Stage => (tw + 26.0, th + 16.0),
        _ => (tw + 20.0, th + 12.0),
    }
}

/// The outline of a node of `kind` centred at (cx, cy), `w` × `h`.
fn shape(out: &mut String, kind: Kind, cx: f64, cy: f64, w: f64, h: f64) {
    let (fill, stroke) = colours(kind);
    let (x0, y0, x1, y1) = (cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0);
    let paint = format!(r#"fill="{fill}" stroke="{stroke}""#);
    let _ = match kind {
        Kind::Task => {
            write!(out, r#"<ellipse cx="{cx:.1}" cy="{cy:.1}" rx="{:.1}" ry="{:.1}" {paint}/>"#, w / 2.0, h / 2.0)
        }
        Kind::Level => write!(
            out,
            r#"<ellipse cx="{cx:.1}" cy="{cy:.1}" rx="{:.1}" ry="{:.1}" {paint} stroke-dasharray="4 3"/>"#,
            w / 2.0,
            h / 2.0
        ),
        Kind::Stage => write!(
            out,
            r#"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" rx="10" {paint} stroke-width="1.5"/>"#
        ),
        Kind::Memory => write!(
            out,
            r#"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" rx="4" {paint} stroke-dasharray="4 3"/>"#
        ),
        Kind::Output => {
            write!(out, r#"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" {paint} stroke-width="2"/>"#)
        }
        Kind::Input => write!(out, r#"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" {paint}/>"#),
        Kind::Work => {
            let (rx, ry) = (w / 2.0, 5.0f64.min(h / 4.0));
            write!(
                out,
                r#"<path d="M{x0:.1},{t:.1} A{rx:.1},{ry:.1} 0 0 0 {x1:.1},{t:.1} A{rx:.1},{ry:.1} 0 0 0 {x0:.1},{t:.1} L{x0:.1},{b:.1} A{rx:.1},{ry:.1} 0 0 0 {x1:.1},{b:.1} L{x1:.1},{t:.1}" {paint}/>"#,
                t = y0 + ry,
                b = y1 - ry
            )
        }
        Kind::File => {
            let f = 8.0f64.min(h / 3.0);
            write!(
                out,
                r#"<path d="M{x0:.1},{y0:.1} L{a:.1},{y0:.1} L{x1:.1},{c:.1} L{x1:.1},{y1:.1} L{x0:.1},{y1:.1} Z M{a:.1},{y0:.1} L{a:.1},{c:.1} L{x1:.1},{c:.1}" {paint}/>"#,
                a = x1 - f,
                c = y0 + f
            )
        }
    };
}

/// Lines of text centred at (cx, cy).
fn label(out: &mut String, lines: &[String], cx: f64, cy: f64, first_bold: bool) {
    let y0 = cy - (lines.len().saturating_sub(1)) as f64 * LINE / 2.0 + FONT * 0.35;
    let _ = write!(out, r##"<text text-anchor="middle" fill="#111">"##);
    for (i, l) in lines.iter().enumerate() {
        let weight = if i == 0 && first_bold { r#" font-weight="bold""# } else { "" };
        let _ = write!(out, r#"<tspan x="{cx:.1}" y="{:.1}"{weight}>{}</tspan>"#, y0 + i as f64 * LINE, xml_escape(l));
    }
    out.push_str("</text>");
}

/// A smooth curve through `pts` (vertical tangents at every point).
fn curve(pts: &[(f64, f64)]) -> String {
    let mut d = String::new();
    if let Some(&(x, y)) = pts.first() {
        let _ = write!(d, "M{x:.1},{y:.1}");
    }
    for w in pts.windows(2) {
        let ((x1, y1), (x2, y2)) = (w[0], w[1]);
        let my = (y1 + y2) / 2.0;
        let _ = write!(d, " C{x1:.1},{my:.1} {x2:.1},{my:.1} {x2:.1},{y2:.1}");
    }
    d
}

/// The graph as an SVG document.
pub fn to_svg(g: &Graph) -> String {
    svg(g).0
}

/// The graph as an SVG document, with its width and height in pixels.
pub fn svg(g: &Graph) -> (String, f64, f64) {
    let sizes: Vec<(f64, f64)> = g.nodes.iter().map(|n| size(n.kind, &n.label)).collect();
    let placed = layout::layout(&sizes, &g.edges);
    let mut kinds: Vec<Kind> = g.nodes.iter().map(|n| n.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    // legend: a small shape and its text per kind drawn
    let legend_items: Vec<(Kind, f64)> =
        kinds.iter().map(|&k| (k, 34.0 + text_width(k.legend(), 6.2) + 16.0)).collect();
    let legend_w: f64 = legend_items.iter().map(|x| x.1).sum();
    let title_w = text_width(&g.title, 8.6).max(text_width(&g.subtitle, 6.8));
    let width = (placed.width + 2.0 * MARGIN).max(legend_w + 2.0 * MARGIN).max(title_w + 2.0 * MARGIN).ceil();
    let height = (HEADER + placed.height + 2.0 * MARGIN).ceil().max(HEADER + 40.0);
    let ox = MARGIN + ((width - 2.0 * MARGIN - placed.width) / 2.0).max(0.0);
    let oy = HEADER + MARGIN;
    let mut s = String::with_capacity(512 + 400 * g.nodes.len());
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT_FAMILY}" font-size="{FONT}" class="dsk-graph">"##
    );
    let _ = write!(s, "<title>{}</title>", xml_escape(&g.title));
    s.push_str(r##"<defs><marker id="dsk-graph-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>"##);
    let _ = write!(s, r##"<rect width="{width}" height="{height}" fill="#ffffff"/>"##);
    let _ = write!(
        s,
        r##"<text x="{MARGIN}" y="26" font-size="15" font-weight="bold" fill="#111">{}</text><text x="{MARGIN}" y="45" font-size="12" fill="#4b5563">{}</text>"##,
        xml_escape(&g.title),
        xml_escape(&g.subtitle)
    );
    s.push_str(r#"<g class="legend" font-size="11">"#);
    let mut lx = MARGIN;
    for (k, w) in &legend_items {
        shape(&mut s, *k, lx + 14.0, 66.0, 28.0, 16.0);
        let _ = write!(s, r##"<text x="{:.1}" y="70" fill="#374151">{}</text>"##, lx + 34.0, xml_escape(k.legend()));
        lx += w;
    }
    s.push_str("</g>");
    if g.nodes.is_empty() {
        let _ = write!(s, r##"<text x="{MARGIN}" y="{}" fill="#4b5563">no tasks: nothing to draw</text>"##, oy + 14.0);
    }
    s.push_str(r##"<g class="edges" fill="none" stroke="#6b7280" stroke-width="1.2">"##);
    for route in &placed.routes {
        let pts: Vec<(f64, f64)> = route.iter().map(|&(x, y)| (x + ox, y + oy)).collect();
        let _ = write!(s, r#"<path d="{}" marker-end="url(#dsk-graph-arrow)"/>"#, curve(&pts));
    }
    s.push_str("</g><g class=\"nodes\">");
    for (i, n) in g.nodes.iter().enumerate() {
        let (cx, cy) = (placed.centers[i].0 + ox, placed.centers[i].1 + oy);
        let (w, h) = sizes[i];
        let _ = write!(s, r#"<g class="node {}" id="n{i}"><title>{}</title>"#, n.kind.class(), xml_escape(&n.tooltip));
        shape(&mut s, n.kind, cx, cy, w, h);
        label(&mut s, &n.label, cx, cy + if n.kind == Kind::Work { 2.0 } else { 0.0 }, n.kind == Kind::Stage);
        s.push_str("</g>");
    }
    s.push_str("</g></svg>\n");
    (s, width, height)
}

fn dot_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The graph as a DOT digraph (Graphviz's `dot -Tsvg` draws it).
pub fn to_dot(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph dsk {{");
    let _ = writeln!(
        s,
        "  graph [label=\"{}\\n{}\", labelloc=t, fontname=\"DejaVu Sans\", rankdir=TB];",
        dot_escape(&g.title),
        dot_escape(&g.subtitle)
    );
    let _ = writeln!(s, "  node [fontname=\"DejaVu Sans\", fontsize=10, style=filled];");
    let _ = writeln!(s, "  edge [color=\"#6b7280\"];");
    for (i, n) in g.nodes.iter().enumerate() {
        let (fill, stroke) = colours(n.kind);
        let (shape, style) = match n.kind {
            Kind::Input => ("box", "filled"),
            Kind::Output => ("box", "filled,bold"),
            Kind::Work => ("cylinder", "filled"),
            Kind::Memory => ("box", "filled,rounded,dashed"),
            Kind::File => ("note", "filled"),
            Kind::Task => ("ellipse", "filled"),
            Kind::Level => ("ellipse", "filled,dashed"),
            Kind::Stage => ("box", "filled,rounded"),
        };
        let _ = writeln!(
            s,
            "  n{i} [label=\"{}\", shape={shape}, style=\"{style}\", fillcolor=\"{fill}\", color=\"{stroke}\", tooltip=\"{}\"];",
            dot_escape(&n.label.join("\n")),
            dot_escape(&n.tooltip)
        );
    }
    for (a, b) in &g.edges {
        let _ = writeln!(s, "  n{a} -> n{b};");
    }
    s.push_str("}\n");
    s
}
