//! `dsk plot` pictures, drawn from pixel bins (`kernels::bins`): a line plot of a 1-D selection
//! (every value when it has at most as many elements as the plot is wide, else per pixel column
//! the band from the minimum to the maximum and a line through the mean), and a heatmap of a 2-D
//! selection (per pixel block the mean of its finite values) with a colour bar. plotters draws the
//! frame, axes, ticks, labels, lines and colour bar into an SVG; the heatmap's cells are rendered
//! here to RGBA and put into that SVG as a PNG `<image>` over the plotting area. This module
//! decides how things look, nothing about what is read.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw;
use crate::error::{Error, Result};
use crate::kernels::bins::{Bins, Cell};

/// One kept axis of the selection: element k of it is index `start + k·step` of the array axis.
#[derive(Clone, Debug)]
pub struct PlotAxis {
    pub label: String,
    pub start: u64,
    pub step: i64,
    pub len: u64,
}

impl PlotAxis {
    fn sign(&self) -> f64 {
        if self.step < 0 {
            -1.0
        } else {
            1.0
        }
    }

    /// The axis coordinate of (fractional) element `k`: the array index times the step's sign,
    /// so that coordinates grow with k and negative steps read right to left.
    fn coord(&self, k: f64) -> f64 {
        self.sign() * self.start as f64 + k * self.step.unsigned_abs() as f64
    }
}

/// What to draw besides the data.
#[derive(Clone, Debug)]
pub struct PlotSpec {
    /// The file name and the selection.
    pub title: String,
    /// The first line of the caption: dtype, shapes.
    pub about: String,
    /// The kept axes in order (rows then columns for a heatmap).
    pub axes: Vec<PlotAxis>,
    pub width: u32,
    pub height: u32,
}

const TITLE_H: u32 = 36;
const CAPTION_H: u32 = 62;
const MARGIN: u32 = 14;
const X_LABELS: u32 = 46;
const Y_LABELS: u32 = 84;
const CBAR_W: u32 = 112;
/// The smallest picture whose plotting area is still some pixels wide and high.
pub const MIN_SIZE: (u32, u32) = (320, 240);

/// The colour of a NaN cell, and the fill colour that marks the plotting area to replace by the
/// heatmap's raster (and the colour bar's) in the SVG plotters writes.
const NAN_GREY: RGBColor = RGBColor(176, 176, 176);
const MARK_HEAT: RGBColor = RGBColor(1, 2, 3);
const MARK_BAR: RGBColor = RGBColor(1, 2, 4);
const LINE: RGBColor = RGBColor(31, 119, 180);

/// The plotting area of a picture of `width × height` for an `ndim`-D selection, in pixels per
/// kept axis (rows then columns): how many bins each axis may have.
pub fn plot_pixels(width: u32, height: u32, ndim: usize) -> Vec<u64> {
    let bar = if ndim == 2 { CBAR_W } else { 0 };
    let w = width.saturating_sub(2 * MARGIN + Y_LABELS + bar).max(1) as u64;
    let h = height.saturating_sub(TITLE_H + CAPTION_H + 2 * MARGIN + X_LABELS).max(1) as u64;
    if ndim == 2 {
        vec![h, w]
    } else {
        vec![w]
    }
}

fn font(size: u32) -> TextStyle<'static> {
    (draw::FONT_FAMILY, size).into_font().color(&BLACK)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Internal(format!("plotters failed to draw the plot: {e:?}"))
}

/// A number for a tick or a caption: short, exact for integers, scientific when large or small.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a.fract() == 0.0 && a < 1e15 {
        return format!("{}", v as i64);
    }
    if (1e-3..1e6).contains(&a) {
        // six significant digits, trailing zeros dropped
        let decimals = (5 - a.log10().floor() as i32).clamp(0, 9) as usize;
        let s = format!("{v:.decimals$}");
        return s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let s = format!("{v:.3e}");
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
        None => s,
    }
}

/// The smallest of 1, 2 or 5 × 10ⁿ that is at least `raw` and at least `min`.
fn nice_step(raw: f64, min: f64) -> f64 {
    let raw = raw.max(min);
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| p * m).find(|&s| s >= raw * (1.0 - 1e-12)).unwrap_or(p * 10.0)
}

/// Ticks in `lo..=hi`, about `max` of them: multiples `i × step` of a nice step of at least
/// `min_step` (1 for array indices), so that a tick at zero is exactly zero. Returns the step too.
fn ticks_step(lo: f64, hi: f64, max: usize, min_step: f64) -> (Vec<f64>, f64) {
    let n = max.max(1) as f64;
    // (divided first: the span of ±1e308 overflows)
    let step = nice_step(hi / n - lo / n, min_step);
    let (i0, i1) = ((lo / step - 1e-9).ceil(), (hi / step + 1e-9).floor());
    if !(i0.is_finite() && i1.is_finite()) || i1 - i0 > 1000.0 {
        return (vec![], step);
    }
    ((i0 as i64..=i1 as i64).map(|i| i as f64 * step).collect(), step)
}

fn ticks(lo: f64, hi: f64, max: usize, min_step: f64) -> Vec<f64> {
    ticks_step(lo, hi, max, min_step).0
}

/// `(v − lo) / (hi − lo)` without overflowing for values near ±f64::MAX.
fn fraction(v: f64, lo: f64, hi: f64) -> f64 {
    (v / 2.0 - lo / 2.0) / (hi / 2.0 - lo / 2.0)
}

/// A value axis: ticks at multiples of a nice step, labelled relative to `offset` when the values
/// are much larger than their spread (1e15 + 0.1, 1e15 + 0.2, … read as 0.1, 0.2 with "− 1e15").
struct ValueTicks {
    ticks: Vec<f64>,
    step: f64,
    offset: f64,
}

impl ValueTicks {
    fn new(lo: f64, hi: f64, max: usize) -> ValueTicks {
        let (ticks, step) = ticks_step(lo, hi, max, 0.0);
        let mag = lo.abs().max(hi.abs());
        let offset = if mag > 1e5 * (hi / 2.0 - lo / 2.0) * 2.0 { (lo / 2.0 + hi / 2.0) / step } else { 0.0 };
        let offset = offset.round() * step;
        ValueTicks { ticks, step, offset: if offset.is_finite() { offset } else { 0.0 } }
    }

    fn label(&self, v: f64) -> String {
        tick_label(v - self.offset, self.step)
    }

    /// What the axis shows: `value` or `value − OFFSET`.
    fn desc(&self, what: &str) -> String {
        if self.offset == 0.0 {
            what.to_string()
        } else if (1e-4..1e15).contains(&self.offset.abs()) {
            format!("{what} − {}", self.offset)
        } else {
            format!("{what} − {:e}", self.offset)
        }
    }
}

/// A tick at `v` on an axis with ticks `step` apart: as many digits as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    if v.abs() < 1e6 && decimals <= 6 {
        return format!("{v:.decimals$}");
    }
    let digits = ((v.abs().log10().floor() - step.log10().floor()).max(0.0) as usize + 1).min(17);
    let s = format!("{:.*e}", digits - 1, v);
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
        _ => s,
    }
}

/// Key points (in axis coordinates) for an axis showing elements `k0..=k1` (fractional).
fn axis_ticks(ax: &PlotAxis, k0: f64, k1: f64, max: usize) -> Vec<f64> {
    let (a, b) = (ax.coord(k0), ax.coord(k1));
    let s = ax.sign();
    let (ilo, ihi) = ((s * a).min(s * b), (s * a).max(s * b));
    let mut t: Vec<f64> = ticks(ilo, ihi, max, 1.0).into_iter().map(|i| s * i).collect();
    t.sort_by(|x, y| x.total_cmp(y));
    t
}

/// A continuous f64 axis with given tick positions (plotters' own f64 axis picks fractional ticks,
/// and its `with_key_points` loses the custom label formatter).
#[derive(Clone, Debug)]
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Ticked {
        Ticked { lo, hi, ticks }
    }
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        if self.hi == self.lo {
            return (limit.0 + limit.1) / 2;
        }
        let t = fraction(*v, self.lo, self.hi).clamp(-1e6, 1e6);
        limit.0 + ((limit.1 - limit.0) as f64 * t + 1e-3).floor() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The index an axis coordinate stands for.
fn index_label(ax: &PlotAxis, u: f64) -> String {
    fmt_num((ax.sign() * u).round())
}

/// What a NaN/±∞ count says in a caption.
fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Replace the `<rect>` plotters drew with fill `mark` by `replacement`.
fn replace_marker(svg: &mut String, mark: RGBColor, replacement: &str) -> Result<()> {
    let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", mark.0, mark.1, mark.2);
    let at = svg.find(&fill).ok_or_else(|| Error::Internal("plot: the plotting area marker is missing".into()))?;
    let start = svg[..at].rfind("<rect").ok_or_else(|| Error::Internal("plot: no <rect> around the marker".into()))?;
    let end = at + svg[at..].find("/>").ok_or_else(|| Error::Internal("plot: unterminated marker".into()))? + 2;
    svg.replace_range(start..end, replacement);
    Ok(())
}

fn image_tag(x: i32, y: i32, w: i32, h: i32, png: &[u8], pixelated: bool) -> String {
    format!(
        r#"<image x="{x}" y="{y}" width="{w}" height="{h}" preserveAspectRatio="none"{} href="{}"/>"#,
        if pixelated { r#" image-rendering="pixelated" style="image-rendering:pixelated""# } else { "" },
        draw::png_data_uri(png)
    )
}

/// Draw the caption lines (and a grey swatch before a line starting with `\u{25A0}`).
fn caption<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, lines: &[String]) -> Result<()> {
    for (i, line) in lines.iter().enumerate() {
        let y = 4 + 19 * i as i32;
        let mut x = MARGIN as i32;
        let text = match line.strip_prefix('\u{25A0}') {
            Some(rest) => {
                area.draw(&Rectangle::new([(x, y + 2), (x + 12, y + 14)], NAN_GREY.filled())).map_err(plot_err)?;
                x += 18;
                rest.trim_start()
            }
            None => line.as_str(),
        };
        area.draw(&Text::new(text.to_string(), (x, y), font(14).pos(Pos::new(HPos::Left, VPos::Top))))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// Every cell's element count if all cells hold the same number, as text (`"34 × 3"`).
fn block_text(bins: &Bins) -> String {
    let per: Vec<String> = bins
        .axes
        .iter()
        .map(|a| {
            let (lo, hi) = (a.n / a.bins, a.n.div_ceil(a.bins));
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}–{hi}")
            }
        })
        .collect();
    per.join(" × ")
}

/// The SVG of a plot of `bins` (one axis: a line plot; two: a heatmap).
pub fn svg(bins: &Bins, spec: &PlotSpec) -> Result<String> {
    if bins.axes.len() != spec.axes.len() || !(1..=2).contains(&bins.axes.len()) {
        return Err(Error::Internal("plot: the bins and the axes disagree".into()));
    }
    if bins.axes.len() == 1 {
        line_svg(bins, spec)
    } else {
        heatmap_svg(bins, spec)
    }
}

fn line_svg(bins: &Bins, spec: &PlotSpec) -> Result<String> {
    let (w, h) = (spec.width, spec.height);
    let ax = &spec.axes[0];
    let bax = bins.axes[0];
    let exact = bax.exact();
    let total = bins.total();
    // the value range: finite values only, padded
    let (mut lo, mut hi) = if total.finite > 0 { (total.min, total.max) } else { (-1.0, 1.0) };
    let widen = |lo: f64, hi: f64, below: f64, above: f64| {
        let span = if hi > lo { hi / 2.0 - lo / 2.0 } else { (lo.abs() * 0.05).max(0.25) };
        ((lo - 2.0 * below * span).max(f64::MIN), (hi + 2.0 * above * span).min(f64::MAX))
    };
    // 5% padding, and room for the legend above a band
    (lo, hi) = widen(lo, hi, 0.05, if exact { 0.05 } else { 0.2 });
    let yt = ValueTicks::new(lo, hi, 8);
    // x of each bin: the coordinate of its middle element
    let xs: Vec<f64> = (0..bax.bins)
        .map(|b| {
            let (k0, k1) = bax.elements(b);
            ax.coord((k0 + k1 - 1) as f64 / 2.0)
        })
        .collect();
    let (k_last, x_pad) = ((ax.len - 1) as f64, if ax.len == 1 { 0.5 } else { 0.0 });
    let (x0, x1) = (ax.coord(0.0) - x_pad, ax.coord(k_last) + x_pad);
    let xticks = axis_ticks(ax, -x_pad, k_last + x_pad, 8);

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, rest) = root.split_vertically(TITLE_H);
        let (body, bottom) = rest.split_vertically(h.saturating_sub(TITLE_H + CAPTION_H));
        top.draw(&Text::new(
            spec.title.clone(),
            ((w / 2) as i32, (TITLE_H / 2) as i32),
            font(18).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&body)
            .margin(MARGIN)
            .x_label_area_size(X_LABELS)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(Ticked::new(x0, x1, xticks), Ticked::new(lo, hi, yt.ticks.clone()))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(ax.label.clone())
            .y_desc(yt.desc("value"))
            .label_style(font(13))
            .axis_desc_style(font(15))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|u| index_label(ax, *u))
            .y_label_formatter(&|v| yt.label(*v))
            .draw()
            .map_err(plot_err)?;
        let top_edge = hi;
        let bottom_edge = lo;
        // runs of bins with something to draw (a bin of NaN only is a gap)
        let value = |c: &Cell| -> Option<f64> {
            match c.mean() {
                Some(m) => Some(m),
                None if c.pos_inf > 0 && c.neg_inf == 0 => Some(top_edge),
                None if c.neg_inf > 0 && c.pos_inf == 0 => Some(bottom_edge),
                None if c.pos_inf > 0 => Some((top_edge + bottom_edge) / 2.0),
                None => None,
            }
        };
        let band = |c: &Cell| -> (f64, f64) {
            let low = if c.neg_inf > 0 {
                bottom_edge
            } else if c.finite > 0 {
                c.min
            } else {
                top_edge
            };
            let high = if c.pos_inf > 0 {
                top_edge
            } else if c.finite > 0 {
                c.max
            } else {
                bottom_edge
            };
            (low, high)
        };
        let mut runs: Vec<Vec<usize>> = vec![];
        let mut cur = vec![];
        for (b, c) in bins.cells.iter().enumerate() {
            if value(c).is_some() {
                cur.push(b);
            } else if !cur.is_empty() {
                runs.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            runs.push(cur);
        }
        let band_style = LINE.mix(0.28).filled();
        if !exact {
            for run in &runs {
                if run.len() == 1 {
                    let (l, u) = band(&bins.cells[run[0]]);
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(xs[run[0]], l), (xs[run[0]], u)],
                            band_style,
                        )))
                        .map_err(plot_err)?;
                    continue;
                }
                let mut pts: Vec<(f64, f64)> = run.iter().map(|&b| (xs[b], band(&bins.cells[b]).0)).collect();
                pts.extend(run.iter().rev().map(|&b| (xs[b], band(&bins.cells[b]).1)));
                chart.draw_series(std::iter::once(Polygon::new(pts, band_style))).map_err(plot_err)?;
            }
            // the legend entry of the band
            chart
                .draw_series(std::iter::empty::<Polygon<(f64, f64)>>())
                .map_err(plot_err)?
                .label("min–max of each pixel column")
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], band_style));
        }
        let line_style = LINE.stroke_width(if exact { 2 } else { 1 });
        for (i, run) in runs.iter().enumerate() {
            let pts: Vec<(f64, f64)> = run.iter().filter_map(|&b| value(&bins.cells[b]).map(|v| (xs[b], v))).collect();
            let s = chart.draw_series(LineSeries::new(pts.clone(), line_style)).map_err(plot_err)?;
            if i == 0 {
                s.label(if exact { "value" } else { "mean of each pixel column" })
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], line_style));
            }
            if (exact && bax.bins <= 100) || pts.len() == 1 {
                chart.draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, LINE.filled()))).map_err(plot_err)?;
            }
        }
        if !exact {
            chart
                .configure_series_labels()
                .label_font(font(13))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(plot_err)?;
        }
        let mut lines = vec![spec.about.clone()];
        lines.push(if exact {
            "every element drawn".to_string()
        } else {
            format!(
                "each pixel column: {} elements — band from their minimum to their maximum, line through the mean of their finite values",
                block_text(bins)
            )
        });
        let mut odd = vec![];
        if total.nan > 0 {
            odd.push(format!("{} left as gaps", plural(total.nan, "NaN value")));
        }
        let inf = total.pos_inf + total.neg_inf;
        if inf > 0 {
            odd.push(format!("{} clamped to the plot's top or bottom edge", plural(inf, "infinite value")));
        }
        if total.finite == 0 {
            odd.push("no finite values".into());
        }
        if !odd.is_empty() {
            lines.push(odd.join("; "));
        }
        caption(&bottom, &lines)?;
        root.present().map_err(plot_err)?;
    }
    Ok(out)
}

fn heatmap_svg(bins: &Bins, spec: &PlotSpec) -> Result<String> {
    let (w, h) = (spec.width, spec.height);
    let (rows, cols) = (&spec.axes[0], &spec.axes[1]);
    let (brow, bcol) = (bins.axes[0], bins.axes[1]);
    let shown: Vec<f64> = bins.cells.iter().map(Cell::shown).collect();
    let finite = shown.iter().copied().filter(|v| v.is_finite());
    let (vmin, vmax) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let any_finite = vmin <= vmax;
    let (lo, hi) = match (any_finite, vmin < vmax) {
        (true, true) => (vmin, vmax),
        (true, false) => {
            let d = (vmin.abs() * 0.05).max(0.5);
            (vmin - d, vmax + d)
        }
        (false, _) => (0.0, 1.0),
    };
    let lut: Vec<RGBColor> = (0..256).map(|i| ViridisRGB.get_color(i as f32 / 255.0)).collect();
    let colour = |v: f64| -> RGBColor {
        if v.is_nan() {
            return NAN_GREY;
        }
        let t = if v == f64::INFINITY {
            1.0
        } else if v == f64::NEG_INFINITY {
            0.0
        } else {
            fraction(v, lo, hi).clamp(0.0, 1.0)
        };
        lut[(t * 255.0).round() as usize]
    };
    let mut rgba = Vec::with_capacity(shown.len() * 4);
    for &v in &shown {
        let c = colour(v);
        rgba.extend([c.0, c.1, c.2, 255]);
    }
    let heat_png = draw::rgba_to_png(bcol.bins as u32, brow.bins as u32, &rgba)?;
    let mut bar = Vec::with_capacity(256 * 4);
    for i in (0..256).rev() {
        let c = lut[i];
        bar.extend([c.0, c.1, c.2, 255]);
    }
    let bar_png = draw::rgba_to_png(1, 256, &bar)?;

    // x: column coordinates; y: minus the row coordinates, so that row 0 is at the top
    let (kc, kr) = ((cols.len as f64) - 0.5, (rows.len as f64) - 0.5);
    let (x0, x1) = (cols.coord(-0.5), cols.coord(kc));
    let (y0, y1) = (-rows.coord(kr), -rows.coord(-0.5));
    let xticks = axis_ticks(cols, -0.5, kc, 8);
    let mut yticks: Vec<f64> = axis_ticks(rows, -0.5, kr, 8).into_iter().map(|t| -t).collect();
    yticks.sort_by(|a, b| a.total_cmp(b));

    let mut out = String::new();
    let (heat_px, bar_px);
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, rest) = root.split_vertically(TITLE_H);
        let (body, bottom) = rest.split_vertically(h.saturating_sub(TITLE_H + CAPTION_H));
        let (main, side) = body.split_horizontally(w.saturating_sub(CBAR_W));
        top.draw(&Text::new(
            spec.title.clone(),
            ((w / 2) as i32, (TITLE_H / 2) as i32),
            font(18).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&main)
            .margin(MARGIN)
            .x_label_area_size(X_LABELS)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(Ticked::new(x0, x1, xticks), Ticked::new(y0, y1, yticks))
            .map_err(plot_err)?;
        chart.plotting_area().fill(&MARK_HEAT).map_err(plot_err)?;
        heat_px = chart.plotting_area().get_pixel_range();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(cols.label.clone())
            .y_desc(rows.label.clone())
            .label_style(font(13))
            .axis_desc_style(font(15))
            .x_label_formatter(&|u| index_label(cols, *u))
            .y_label_formatter(&|v| index_label(rows, -*v))
            .draw()
            .map_err(plot_err)?;
        let bt = ValueTicks::new(lo, hi, 10);
        let mut cbar = ChartBuilder::on(&side)
            .margin_top(MARGIN)
            .margin_bottom(MARGIN + X_LABELS)
            .margin_left(10)
            .margin_right(8)
            .right_y_label_area_size(CBAR_W - 10 - 8 - 22)
            .build_cartesian_2d(0f64..1f64, Ticked::new(lo, hi, bt.ticks.clone()))
            .map_err(plot_err)?;
        cbar.plotting_area().fill(&MARK_BAR).map_err(plot_err)?;
        bar_px = cbar.plotting_area().get_pixel_range();
        cbar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .label_style(font(13))
            .y_label_formatter(&|v| bt.label(*v))
            .draw()
            .map_err(plot_err)?;
        let mut lines = vec![spec.about.clone()];
        if bt.offset != 0.0 {
            lines[0].push_str(&format!("; colour bar: {}", bt.desc("value")));
        }
        lines.push(if brow.exact() && bcol.exact() {
            "each cell: one element".to_string()
        } else {
            format!(
                "each pixel: the mean of the finite values of a block of {} elements; colours from {} to {}",
                block_text(bins),
                fmt_num(lo),
                fmt_num(hi)
            )
        });
        let total = bins.total();
        let nan_cells = shown.iter().filter(|v| v.is_nan()).count() as u64;
        let exact = brow.exact() && bcol.exact();
        let inf = total.pos_inf + total.neg_inf;
        let mut odd = vec![];
        if nan_cells > 0 {
            let what = if exact { "NaN" } else { "no finite value (NaN)" };
            odd.push(format!("\u{25A0} grey: {what}, {}", plural(nan_cells, "cell")));
        }
        if exact && inf > 0 {
            odd.push(format!("+inf and −inf take the colour bar's top and bottom colours ({})", plural(inf, "cell")));
        }
        if !exact && total.nan + inf > 0 {
            let mut out = vec![];
            if total.nan > 0 {
                out.push(format!("{} NaN", total.nan));
            }
            if inf > 0 {
                out.push(format!("{} ±inf (a block of only +inf or −inf: the bar's end colour)", inf));
            }
            odd.push(format!("left out of the means: {}", out.join(", ")));
        }
        if !odd.is_empty() {
            lines.push(odd.join("; "));
        }
        caption(&bottom, &lines)?;
        root.present().map_err(plot_err)?;
    }
    let rect = |r: &(std::ops::Range<i32>, std::ops::Range<i32>)| {
        (r.0.start, r.1.start, r.0.end - r.0.start, r.1.end - r.1.start)
    };
    let (x, y, pw, ph) = rect(&heat_px);
    replace_marker(&mut out, MARK_HEAT, &image_tag(x, y, pw, ph, &heat_png, true))?;
    let (x, y, pw, ph) = rect(&bar_px);
    replace_marker(&mut out, MARK_BAR, &image_tag(x, y, pw, ph, &bar_png, false))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::bins::BinAxis;

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(12.0), "12");
        assert_eq!(fmt_num(-3.0), "-3");
        assert_eq!(fmt_num(0.30000000000000004), "0.3");
        assert_eq!(fmt_num(1234.5678), "1234.57");
        assert_eq!(fmt_num(2.5e-7), "2.5e-7");
        assert_eq!(fmt_num(1e300), "1e300");
        assert_eq!(fmt_num(f64::INFINITY), "inf");
    }

    #[test]
    fn index_ticks_are_round_integers() {
        assert_eq!(ticks(0.0, 10.0, 5, 1.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(-0.5, 2.5, 8, 1.0), vec![0.0, 1.0, 2.0]);
        assert_eq!(ticks(0.0, 20000.0, 8, 1.0), vec![0.0, 5000.0, 10000.0, 15000.0, 20000.0]);
        // values: a tick at zero is zero, not a rounding error
        let v = ticks(-1.10376, 1.10563, 10, 0.0);
        assert!(v.contains(&0.0) && v.len() >= 5, "{v:?}");
        // far from zero: labels relative to an offset, with the digits the step needs
        let t = ValueTicks::new(1e15 - 2.0, 1e15 + 2.0, 8);
        assert_eq!(t.offset, 1e15);
        assert_eq!(t.desc("value"), "value − 1e15");
        assert_eq!(t.label(1e15 + 1.0), "1.0");
        assert_eq!(tick_label(2.5e6, 5e5), "2.5e6");
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert_eq!(tick_label(4e-7, 2e-7), "4e-7");
        // spans beyond f64::MAX still give ticks
        let t = ValueTicks::new(-1.7e308, 1.7e308, 8);
        assert!(t.ticks.len() >= 3 && t.ticks.iter().all(|v| v.is_finite()), "{:?}", t.ticks);
        assert_eq!(v, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        let ax = PlotAxis { label: "x".into(), start: 9, step: -1, len: 10 };
        // reversed: coordinates −9 … 0 stand for indices 9 … 0
        let t = axis_ticks(&ax, 0.0, 9.0, 5);
        assert_eq!(t.first(), Some(&-8.0));
        assert_eq!(index_label(&ax, -8.0), "8");
    }

    fn cells(axes: Vec<BinAxis>, f: impl Fn(usize) -> f64) -> Bins {
        let mut b = Bins::new(axes);
        for (i, c) in b.cells.iter_mut().enumerate() {
            c.push(f(i));
        }
        b
    }

    #[test]
    fn pictures_parse_as_svg_and_hold_their_raster() {
        let spec = |n: usize| PlotSpec {
            title: "a <b> & c".into(),
            about: "float64".into(),
            axes: (0..n).map(|a| PlotAxis { label: format!("axis {a}"), start: 0, step: 1, len: 7 }).collect(),
            width: 640,
            height: 480,
        };
        let line = svg(&cells(vec![BinAxis::new(7, 700)], |i| i as f64), &spec(1)).unwrap();
        let heat = svg(
            &cells(vec![BinAxis::new(7, 7), BinAxis::new(7, 7)], |i| if i == 3 { f64::NAN } else { i as f64 }),
            &spec(2),
        )
        .unwrap();
        for s in [&line, &heat] {
            assert!(resvg::usvg::Tree::from_str(s, &resvg::usvg::Options::default()).is_ok());
            assert!(s.contains(draw::FONT_FAMILY));
        }
        assert_eq!(heat.matches("data:image/png;base64,").count(), 2);
        assert!(heat.contains("grey: NaN"));
    }
}
