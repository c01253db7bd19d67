//! `dsk graph` and `--graph FILE` (issue 11): pictures of a plan, drawn without running it.

use serde_json::Value;

use crate::util::TestDir;

/// A small random array: 8×8 float64 in 2×2 chunks (16 chunks).
fn small(t: &TestDir) {
    t.dsk(&["create", "random", "x.zarr", "--shape", "8,8", "--chunks", "2,2", "-q"]).ok();
}

/// Parse `svg` as SVG (XML, every element resvg knows) and count the nodes of class `class`.
fn nodes(svg: &str, class: &str) -> usize {
    let opt = resvg::usvg::Options::default();
    resvg::usvg::Tree::from_str(svg, &opt).expect("the picture is an SVG document");
    svg.matches(&format!("class=\"node {class}\"")).count()
}

fn total_tasks(t: &TestDir, args: &[&str]) -> u64 {
    let mut a = args.to_vec();
    a.extend(["--explain", "json"]);
    let v: Value = serde_json::from_slice(&t.dsk(&a).ok().out.stdout).expect("--explain json prints JSON");
    v["total_tasks"].as_u64().expect("total_tasks")
}

const MIRROR_MEAN: &str = "(x * x[::-1, ::-1]).mean()";

#[test]
fn graph_draws_one_node_per_task_and_per_chunk_read() {
    let t = TestDir::new();
    small(&t);
    let plan = ["eval", MIRROR_MEAN, "x=x.zarr", "--split-every", "4"];
    let tasks = total_tasks(&t, &plan);
    assert!(tasks > 1, "the plan should have several tasks");
    t.dsk(&["graph", MIRROR_MEAN, "x=x.zarr", "--split-every", "4", "-o", "g.svg"]).ok();
    let svg = std::fs::read_to_string(t.path("g.svg")).expect("g.svg written");
    assert_eq!(nodes(&svg, "task") as u64, tasks, "one node per task");
    assert_eq!(nodes(&svg, "input"), 16, "one node per input chunk read");
    assert!(nodes(&svg, "level") >= 1, "the finalize merge tree is drawn as levels");
    assert!(svg.contains("getitem → multiply → mean partial"), "tasks are labelled with their fused operations");
    assert!(svg.contains("<title>"), "nodes carry tooltips");
}

#[test]
fn graph_png_is_a_picture_and_dot_is_graphviz() {
    let t = TestDir::new();
    small(&t);
    t.dsk(&["graph", "x.sum(axis=0)", "x=x.zarr", "-o", "g.png"]).ok();
    let png = std::fs::read(t.path("g.png")).expect("g.png written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let pix = resvg::tiny_skia::Pixmap::decode_png(&png).expect("a PNG");
    assert!(pix.pixels().iter().any(|p| p.red() < 128), "the picture has dark pixels");
    // without -o: DOT on stdout
    let dot = t.dsk(&["graph", "x.sum(axis=0)", "x=x.zarr"]).ok().stdout();
    assert!(dot.starts_with("digraph dsk {") && dot.trim_end().ends_with('}'));
    assert!(dot.contains("shape=ellipse") && dot.contains("shape=box") && dot.contains(" -> "));
    t.dsk(&["graph", "x.sum(axis=0)", "x=x.zarr", "-o", "g.dot"]).ok();
    // the same graph, with dsk's mark (a comment line) on top
    let file = std::fs::read_to_string(t.path("g.dot")).expect("g.dot written");
    assert!(file.starts_with("// generator: dsk "), "{file}");
    assert_eq!(file.split_once('\n').map(|x| x.1), Some(dot.as_str()));
    // Graphviz accepts it (when installed)
    if let Ok(mut child) = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(dot.as_bytes()).expect("write to dot");
        let out = child.wait_with_output().expect("dot runs");
        assert!(out.status.success(), "dot refused the graph: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
    }
}

#[test]
fn graph_option_on_every_computing_command_draws_instead_of_running() {
    let t = TestDir::new();
    small(&t);
    let cases: [&[&str]; 7] = [
        &["create", "random", "new.zarr", "--shape", "8,8", "--chunks", "4,4"],
        &["transform", "x.zarr", "new.zarr", "--expr", "x.T + 1"],
        &["eval", "cumsum(x, axis=1)", "x=x.zarr", "-o", "new.zarr"],
        &["eval", "x.max()", "x=x.zarr"],
        &["reduce", "x.zarr", "new.zarr", "--op", "mean", "--axis", "0"],
        &["rechunk", "x.zarr", "new.zarr", "--chunks", "4,1"],
        &["export", "x.zarr", "-o", "new.npy"],
    ];
    for args in cases {
        let mut a = args.to_vec();
        a.extend(["--graph", "g.svg", "--graph-level", "tasks"]);
        let r = t.dsk(&a).ok();
        assert!(r.stdout().is_empty(), "nothing is printed: {}", r.stdout());
        assert!(!t.path("new.zarr").exists() && !t.path("new.npy").exists(), "{args:?} ran");
        let svg = std::fs::read_to_string(t.path("g.svg")).expect("g.svg written");
        assert_eq!(nodes(&svg, "task") as u64, total_tasks(&t, args), "{args:?}: one node per task");
        std::fs::remove_file(t.path("g.svg")).expect("remove g.svg");
        // and the stages, one node per stage
        a.truncate(args.len());
        a.extend(["--graph", "s.svg", "--graph-level", "stages"]);
        t.dsk(&a).ok();
        let svg = std::fs::read_to_string(t.path("s.svg")).expect("s.svg written");
        let explain = t.dsk(&[args, &["--explain", "json"][..]].concat()).ok().stdout();
        let v: Value = serde_json::from_str(&explain).expect("JSON");
        assert_eq!(nodes(&svg, "stage"), v["stages"].as_array().map(|s| s.len()).unwrap_or(0), "{args:?}");
    }
    let names: Vec<String> = std::fs::read_dir(t.root())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "nothing staged: {names:?}");
}

#[test]
fn graph_refuses_a_bad_picture_name_in_one_line() {
    let t = TestDir::new();
    small(&t);
    t.dsk(&["graph", "x.sum()", "x=x.zarr", "-o", "g.txt"]).fails(2, &["-o", "g.txt", ".svg", ".png", ".dot"]);
    t.dsk(&["transform", "x.zarr", "y.zarr", "--expr", "x + 1", "--graph", "g.jpeg"]).fails(2, &["--graph", ".svg"]);
    assert!(!t.path("y.zarr").exists());
    t.dsk(&["graph", "x.sum()", "x=x.zarr", "--graph", "g.svg"]).fails(2, &["--graph", "-o"]);
}

#[test]
fn graph_of_the_lesson_defaults_to_stages() {
    let t = TestDir::new();
    // random, not ones: a mean of ones is folded to its value when planned (plan::fold)
    let lesson =
        "(random((200000, 4000), chunks=(1000, 1000)) * random((200000, 4000), chunks=(1000, 1000))[::-1, ::-1]).mean()";
    let r = t.dsk_within(&["graph", lesson, "-o", "big.svg"], 30).ok();
    assert!(r.stderr().contains("--level tasks"), "a note says how to force the tasks: {}", r.stderr());
    assert_eq!(r.stderr().trim_end().lines().count(), 1);
    let svg = std::fs::read_to_string(t.path("big.svg")).expect("big.svg written");
    assert_eq!(nodes(&svg, "stage"), 2);
    assert_eq!(nodes(&svg, "task"), 0);
    assert!(svg.contains("100 tasks") && svg.contains("partials in memory"));
}

#[test]
fn graph_level_tasks_refuses_a_huge_plan_at_once() {
    let t = TestDir::new();
    let huge = "random((100000000,), chunks=(1,)).sum()";
    t.dsk_within(&["graph", huge, "--level", "tasks", "-o", "huge.svg"], 30).fails(2, &["--level", "stages"]);
    assert!(!t.path("huge.svg").exists());
    // its stages are drawn
    t.dsk_within(&["graph", huge, "--level", "stages", "-o", "huge.svg"], 30).ok();
    let svg = std::fs::read_to_string(t.path("huge.svg")).expect("huge.svg written");
    assert!(nodes(&svg, "stage") >= 2);
}

// --report and --graph name files of their own: never the run's arrays (found in review)

#[test]
fn report_never_names_an_array_or_file_of_the_run() {
    let t = TestDir::new();
    small(&t);
    // the output: refused before running, not after (the run wrote y.html, then the report
    // failed with "-o: y.html is a directory" and exit 2)
    t.dsk(&["transform", "x.zarr", "y.html", "--expr", "x + 1", "--report", "y.html"])
        .fails(2, &["--report", "y.html", "elsewhere"]);
    assert!(!t.path("y.html").exists(), "nothing ran");
    t.dsk(&["transform", "x.zarr", "y.zarr", "--expr", "x + 1", "--report", "x.zarr/r.html"])
        .fails(2, &["--report", "inside x.zarr"]);
    assert!(!t.path("x.zarr/r.html").exists() && !t.path("y.zarr").exists());
    // a file in the way is named by the option that named it
    std::fs::create_dir(t.path("d.svg")).unwrap();
    t.dsk(&["transform", "x.zarr", "y.zarr", "--expr", "x + 1", "--graph", "d.svg"])
        .fails(2, &["--graph", "directory"]);
    std::fs::write(t.path("mine.svg"), "<svg/>").unwrap();
    t.dsk(&["graph", "x.sum()", "x=x.zarr", "-o", "mine.svg"]).fails(1, &["-o", "not written by dsk"]);
    t.dsk(&["transform", "x.zarr", "y.zarr", "--expr", "x + 1", "--graph", "mine.svg"])
        .fails(1, &["--graph", "not written by dsk"]);
    // a report elsewhere is written
    t.dsk(&["transform", "x.zarr", "y.html", "--expr", "x + 1", "--report", "run.html"]).ok();
    assert!(std::fs::read_to_string(t.path("run.html")).unwrap().contains("<meta name=\"generator\" content=\"dsk\">"));
}
