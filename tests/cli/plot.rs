//! `dsk plot`: pictures checked by decoding them (size, colours, the heatmap's pixels), by the
//! text of their SVG (axis labels, captions), and by the errors a user sees.

use std::collections::HashSet;
use std::fs;

use resvg::tiny_skia::Pixmap;

use crate::util::TestDir;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The grey of a NaN cell.
const NAN_GREY: (u8, u8, u8) = (176, 176, 176);

fn png(t: &TestDir, name: &str) -> Pixmap {
    let bytes = fs::read(t.path(name)).expect("the picture was written");
    assert_eq!(&bytes[..8], PNG_SIGNATURE, "{name} is not a PNG");
    Pixmap::decode_png(&bytes).expect("the PNG decodes")
}

fn colours(p: &Pixmap, x: std::ops::Range<u32>, y: std::ops::Range<u32>) -> HashSet<(u8, u8, u8)> {
    let mut set = HashSet::new();
    for j in y {
        for i in x.clone() {
            let c = p.pixel(i, j).expect("inside the picture");
            set.insert((c.red(), c.green(), c.blue()));
        }
    }
    set
}

/// The SVG's texts: (x, y, text).
fn texts(svg: &str) -> Vec<(f64, f64, String)> {
    svg.split("<text ")
        .skip(1)
        .map(|t| {
            let attr = |name: &str| -> f64 {
                t.split(&format!(" {name}=\""))
                    .nth(1)
                    .or_else(|| t.strip_prefix(&format!("{name}=\"")))
                    .and_then(|s| s.split('"').next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(f64::NAN)
            };
            let body = t.split_once('>').map(|(_, b)| b).unwrap_or("");
            let text = body.split("</text>").next().unwrap_or("").trim().to_string();
            (attr("x"), attr("y"), text)
        })
        .collect()
}

/// The numeric tick labels under the plot (x axis), left to right.
fn x_ticks(svg: &str) -> Vec<f64> {
    let mut t: Vec<(f64, f64)> = texts(svg)
        .into_iter()
        .filter(|(_, y, _)| (478.0..505.0).contains(y))
        .filter_map(|(x, _, s)| s.parse::<f64>().ok().map(|v| (x, v)))
        .collect();
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    t.into_iter().map(|(_, v)| v).collect()
}

/// The numeric tick labels left of the plot (y axis), top to bottom.
fn y_ticks(svg: &str) -> Vec<f64> {
    let mut t: Vec<(f64, f64)> = texts(svg)
        .into_iter()
        .filter(|(x, _, _)| (40.0..98.0).contains(x))
        .filter_map(|(_, y, s)| s.parse::<f64>().ok().map(|v| (y, v)))
        .collect();
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    t.into_iter().map(|(_, v)| v).collect()
}

fn svg_parses(svg: &str) {
    resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default()).expect("the SVG parses");
}

#[test]
fn plot_heatmap_of_a_random_array_is_a_png_of_the_asked_size_with_a_varied_plotting_area() {
    let t = TestDir::new();
    t.dsk(&["create", "random", "r.zarr", "--shape", "60,50", "--chunks", "7,11", "--seed", "3"]).ok();
    let r = t.dsk(&["plot", "r.zarr", "-o", "r.png"]).ok();
    assert!(r.stderr().contains("wrote r.png") && r.stderr().contains("heatmap"), "{}", r.stderr());
    let p = png(&t, "r.png");
    assert_eq!((p.width(), p.height()), (900, 600));
    assert!(colours(&p, 0..900, 0..600).len() > 100, "a picture of many colours");
    // the plotting area (right of the y labels, left of the colour bar) is not uniform
    assert!(colours(&p, 150..700, 100..400).len() > 50);
    t.dsk(&["plot", "r.zarr", "-o", "small.png", "--size", "400x300"]).ok();
    let p = png(&t, "small.png");
    assert_eq!((p.width(), p.height()), (400, 300));
}

#[test]
fn plot_without_output_writes_name_png_and_replaces_only_pictures() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "ramp.zarr", "--stop", "50"]).ok();
    t.dsk(&["plot", "ramp.zarr"]).ok();
    png(&t, "ramp.png");
    // a picture dsk could have written is replaced
    t.dsk(&["plot", "ramp.zarr", "--slice", "::2"]).ok();
    // anything else is kept unless --overwrite
    fs::write(t.path("notes.png"), "my notes").expect("write");
    t.dsk(&["plot", "ramp.zarr", "-o", "notes.png"]).fails(1, &["notes.png", "already exists", "not written by dsk"]);
    assert_eq!(fs::read_to_string(t.path("notes.png")).expect("kept"), "my notes");
    t.dsk(&["plot", "ramp.zarr", "-o", "notes.png", "--overwrite"]).ok();
    png(&t, "notes.png");
    fs::create_dir(t.path("dir.png")).expect("mkdir");
    t.dsk(&["plot", "ramp.zarr", "-o", "dir.png", "--overwrite"]).fails(2, &["dir.png", "directory"]);
    t.dsk(&["plot", "ramp.zarr", "-o", "ramp.svg"]).ok();
    fs::write(t.path("text.svg"), "hello").expect("write");
    t.dsk(&["plot", "ramp.zarr", "-o", "text.svg"]).fails(1, &["text.svg", "not written by dsk"]);
    // the old SVG is replaced
    t.dsk(&["plot", "ramp.zarr", "-o", "ramp.svg", "--slice", "0:10"]).ok();
    assert!(fs::read_to_string(t.path("ramp.svg")).expect("svg").contains("ramp.zarr[0:10]"));
    for e in fs::read_dir(t.root()).expect("ls").flatten() {
        assert!(!e.file_name().to_string_lossy().contains("partial"), "{:?} left behind", e.file_name());
    }
}

#[test]
fn plot_line_of_a_large_ramp_is_reduced_to_pixel_columns_and_labelled_in_index_coordinates() {
    let t = TestDir::new();
    t.dsk(&["create", "arange", "a.zarr", "--stop", "200000", "--chunks", "30001"]).ok();
    let r = t.dsk(&["plot", "a.zarr", "-o", "a.svg", "--progress", "json", "--workers", "2", "--memory", "4MiB"]).ok();
    let summary: serde_json::Value =
        serde_json::from_str(r.stderr().lines().last().expect("a summary")).expect("JSON summary");
    assert_eq!(summary["shape"], serde_json::json!([200000]));
    let cells = summary["cells"][0].as_u64().expect("cells");
    assert!(cells > 500 && cells < 900, "{summary}");
    let svg = fs::read_to_string(t.path("a.svg")).expect("svg");
    svg_parses(&svg);
    assert!(svg.contains("band from their minimum to their maximum"));
    let ticks = x_ticks(&svg);
    assert!(ticks.len() >= 3 && ticks.windows(2).all(|w| w[1] > w[0]), "{ticks:?}");
    assert!(ticks.iter().all(|v| v.fract() == 0.0 && *v >= 0.0 && *v < 200000.0), "{ticks:?}");
    assert!(svg.contains("axis 0") && svg.contains(">\nvalue\n<"));
}

#[test]
fn plot_slices_with_steps_and_negative_steps_label_array_indices() {
    let t = TestDir::new();
    t.dsk(&[
        "create",
        "arange",
        "g.zarr",
        "--stop",
        "3000",
        "--shape",
        "50,60",
        "--chunks",
        "7,9",
        "--dimension-names",
        "time,lon",
    ])
    .ok();
    // a column, reversed: indices read right to left, from 49 down
    t.dsk(&["plot", "g.zarr", "--slice", "::-1, 5", "-o", "rev.svg"]).ok();
    let svg = fs::read_to_string(t.path("rev.svg")).expect("svg");
    svg_parses(&svg);
    let ticks = x_ticks(&svg);
    assert!(ticks.len() >= 3 && ticks.windows(2).all(|w| w[1] < w[0]), "{ticks:?}");
    assert!(ticks.iter().all(|&v| (0.0..=49.0).contains(&v)), "{ticks:?}");
    assert!(svg.contains(">\ntime\n<"), "the axis is named after its dimension");
    assert!(svg.contains("g.zarr[::-1, 5]"), "the title holds the slice");
    // a heatmap of every third row from 40 down and every other column from 10
    t.dsk(&["plot", "g.zarr", "--slice", "40::-3, 10::2", "-o", "h.svg"]).ok();
    let svg = fs::read_to_string(t.path("h.svg")).expect("svg");
    svg_parses(&svg);
    let (xs, ys) = (x_ticks(&svg), y_ticks(&svg));
    assert!(xs.len() >= 3 && ys.len() >= 3, "{xs:?} {ys:?}");
    assert!(xs.windows(2).all(|w| w[1] > w[0]) && xs.iter().all(|&v| (9.0..=60.0).contains(&v)), "{xs:?}");
    assert!(ys.windows(2).all(|w| w[1] < w[0]) && ys.iter().all(|&v| (0.0..=41.0).contains(&v)), "{ys:?}");
    assert!(svg.contains(">\nlon\n<") && svg.contains("selection shape (14, 25)"));
}

#[test]
fn plot_draws_nan_grey_and_says_so_and_clamps_infinities() {
    let t = TestDir::new();
    t.dsk(&[
        "create", "arange", "g.zarr", "--stop", "400", "--shape", "20,20", "--chunks", "6,7", "--dtype", "float64",
    ])
    .ok();
    // log of x − 100: NaN above row 5, −inf at (5, 0)
    t.dsk(&["eval", "log(x - 100)", "x=g.zarr", "-o", "l.zarr"]).ok();
    t.dsk(&["plot", "l.zarr", "-o", "l.svg"]).ok();
    let svg = fs::read_to_string(t.path("l.svg")).expect("svg");
    assert!(svg.contains("grey: NaN, 100 cells"), "the caption tells about NaN");
    assert!(svg.contains("+inf and −inf take the colour bar"), "and about infinities");
    t.dsk(&["plot", "l.zarr", "-o", "l.png"]).ok();
    let p = png(&t, "l.png");
    let c = colours(&p, 150..700, 60..120);
    assert!(c.contains(&NAN_GREY), "the first rows are grey");
    // a line through NaN leaves gaps
    t.dsk(&["plot", "l.zarr", "--slice", ":, 3", "-o", "c.svg"]).ok();
    let svg = fs::read_to_string(t.path("c.svg")).expect("svg");
    assert!(
        svg.contains("5 NaN values left as gaps"),
        "{}",
        texts(&svg).last().map(|t| t.2.clone()).unwrap_or_default()
    );
    // all NaN, all infinite: still a picture
    t.dsk(&["create", "full", "n.zarr", "--shape", "3,4", "--value", "nan"]).ok();
    t.dsk(&["plot", "n.zarr", "-o", "n.png"]).ok();
    t.dsk(&["create", "full", "i.zarr", "--shape", "30", "--value", "inf"]).ok();
    t.dsk(&["plot", "i.zarr", "-o", "i.svg"]).ok();
    assert!(fs::read_to_string(t.path("i.svg")).expect("svg").contains("no finite values"));
}

#[test]
fn plot_reads_every_dtype() {
    let t = TestDir::new();
    for dtype in
        ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]
    {
        let name = format!("{dtype}.zarr");
        let mut args = vec!["create", "random", &name, "--shape", "9,13", "--chunks", "4,5", "--dtype", dtype];
        if dtype != "bool" && !dtype.starts_with("float") {
            args.extend(["--low", "0", "--high", "100"]);
        }
        t.dsk(&args).ok();
        t.dsk(&["plot", &name, "-o", &format!("{dtype}.png"), "--size", "400x300"]).ok();
        let p = png(&t, &format!("{dtype}.png"));
        // the plotting area of a 400×300 heatmap
        assert!(colours(&p, 110..260, 60..170).len() >= 2, "{dtype}: the heatmap shows different values");
        t.dsk(&["plot", &name, "--slice", "2", "-o", &format!("{dtype}_line.svg")]).ok();
        assert!(fs::read_to_string(t.path(&format!("{dtype}_line.svg"))).expect("svg").contains(dtype));
    }
}

#[test]
fn plot_handles_odd_shapes() {
    let t = TestDir::new();
    // one row, one column, one element, chunks that do not divide the shape
    t.dsk(&["create", "random", "row.zarr", "--shape", "1,37", "--chunks", "1,5"]).ok();
    t.dsk(&["plot", "row.zarr", "-o", "row.png"]).ok();
    t.dsk(&["create", "random", "col.zarr", "--shape", "23,1", "--chunks", "4,1"]).ok();
    t.dsk(&["plot", "col.zarr", "-o", "col.png"]).ok();
    t.dsk(&["create", "ones", "one.zarr", "--shape", "1"]).ok();
    t.dsk(&["plot", "one.zarr", "-o", "one.svg"]).ok();
    svg_parses(&fs::read_to_string(t.path("one.svg")).expect("svg"));
    // length-1 axes of a 4-D array dropped by the slice
    t.dsk(&["create", "random", "c.zarr", "--shape", "1,3,1,17", "--chunks", "1,2,1,4"]).ok();
    t.dsk(&["plot", "c.zarr", "--slice", "0, :, 0, :", "-o", "c.png"]).ok();
    // empty arrays and empty selections say so
    t.dsk(&["create", "zeros", "e.zarr", "--shape", "0,5"]).ok();
    t.dsk(&["plot", "e.zarr", "-o", "e.png"]).fails(1, &["e.zarr", "empty"]);
    t.dsk(&["plot", "row.zarr", "--slice", ":, 5:2", "-o", "x.png"]).fails(2, &["--slice", "no elements"]);
    assert!(!t.path("e.png").exists() && !t.path("x.png").exists());
}

#[test]
fn plot_refuses_what_it_cannot_draw_with_the_fix() {
    let t = TestDir::new();
    t.dsk(&["create", "zeros", "z.zarr", "--shape", "2,3,4"]).ok();
    t.dsk(&["plot", "z.zarr", "-o", "z.png"]).fails(2, &["3 axes", "--slice '0, :, :'"]);
    t.dsk(&["plot", "z.zarr", "--slice", "..., ::2", "-o", "z.png"]).fails(2, &["--slice", "--slice '0, :, :'"]);
    t.dsk(&["plot", "z.zarr", "--slice", "0, 0, 0", "-o", "z.png"]).fails(2, &["single value", "dsk export"]);
    t.dsk(&["create", "full", "s.zarr", "--shape", "", "--value", "2"]).ok();
    t.dsk(&["plot", "s.zarr", "-o", "s.png"]).fails(2, &["0-d", "dsk export"]);
    t.dsk(&["plot", "z.zarr", "--slice", "0", "-o", "z.jpg"]).fails(2, &["z.jpg", ".png, .svg"]);
    t.dsk(&["plot", "z.zarr", "--slice", "0", "-o", "z.png", "--size", "10x10"]).fails(2, &["--size"]);
    t.dsk(&["plot", "z.zarr", "--slice", "7", "-o", "z.png"]).fails(2, &["--slice", "out of bounds"]);
    t.dsk(&["plot", "missing.zarr", "-o", "m.png"]).fails(1, &["missing.zarr"]);
    t.dsk(&["plot", "z.zarr", "--slice", "0", "-o", "z.png", "--explain"]).fails(2, &["--explain", "no plan"]);
    // a bound below one chunk names the bound that fits
    t.dsk(&["create", "random", "big.zarr", "--shape", "400,400", "--chunks", "400,400"]).ok();
    t.dsk(&["plot", "big.zarr", "-o", "b.png", "--memory", "1MiB"]).fails(1, &["--memory", "raise --memory to"]);
    assert!(!t.path("z.png").exists() && !t.path("b.png").exists());
}

#[test]
fn plot_help_has_examples() {
    let t = TestDir::new();
    let help = t.dsk(&["plot", "--help"]).ok().stdout();
    assert!(help.contains("Examples:") && help.contains("dsk plot") && help.contains("--slice"));
}
