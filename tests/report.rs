//! `eeg-pipeline report` and `process --report` end to end: the real binary writes the page,
//! a real headless Chromium (Debian's `chromium`, which `.ci/run` installs) loads it offline
//! and the DOM its script leaves behind is checked, panel by panel.
//!
//! Chromium is required: without it these tests fail, saying so, rather than pass unchecked.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
mod common;

use common::browser::chromium;
use common::{assert_bad_input, eeg, fixture, long_edf, stderr};

/// A scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    common::scratch("report-tests", test)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Chromium headless on `page`, offline: every host name fails to resolve.
fn chromium_run(page: &Path, extra: &[&str]) -> Output {
    let url = format!("file://{}", s(page));
    let profile = page.with_extension("profile");
    Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            &format!("--user-data-dir={}", s(&profile)),
        ])
        .args(extra)
        .arg(&url)
        .output()
        .expect("chromium runs")
}

/// What the page's script left in the DOM: the body's attributes and each panel's.
#[derive(Debug)]
struct Rendered {
    body: String,
    /// (session index, panel kind, data-rendered, data-series)
    panels: Vec<(usize, String, String, usize)>,
    /// How many small multiples go across a printed page, per channel panel.
    print_cols: Vec<String>,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..].split('"').next()?.to_string())
}

/// Loads `page` in Chromium and reads back the DOM after its scripts ran; fails on any
/// console message of the page (an uncaught error, a refused request).
fn render(page: &Path) -> Rendered {
    let o = chromium_run(page, &["--dump-dom"]);
    let err = stderr(&o);
    assert!(o.status.success(), "chromium failed: {err}");
    let console: Vec<&str> = err.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let dom = String::from_utf8(o.stdout).expect("utf8 DOM");
    let body_at = dom.find("<body").expect("a body");
    let body = dom[body_at..dom[body_at..].find('>').expect("tag end") + body_at].to_string();
    let mut panels = Vec::new();
    let mut session = None;
    let mut print_cols = Vec::new();
    for (i, _) in dom.match_indices('<') {
        let tag = &dom[i..i + dom[i..].find('>').unwrap_or(0)];
        if let Some(n) = attr(tag, "data-print-cols") {
            print_cols.push(n);
        }
        if let Some(n) = attr(tag, "data-session") {
            session = Some(n.parse().expect("session index"));
        }
        if let Some(kind) = attr(tag, "data-panel") {
            panels.push((
                session.expect("panels are inside a session"),
                kind,
                attr(tag, "data-rendered").unwrap_or_default(),
                attr(tag, "data-series")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX),
            ));
        }
    }
    Rendered {
        body,
        panels,
        print_cols,
    }
}

/// Per session of `records` (in order of appearance): channels, bands, and how many of the
/// three indices are defined in at least one window.
fn shape(records: &[Value]) -> Vec<(String, usize, usize, usize)> {
    let mut out: Vec<(String, usize, usize, [bool; 3])> = Vec::new();
    for r in records {
        let id = r["session_id"].as_str().expect("id").to_string();
        let i = match out.iter().position(|o| o.0 == id) {
            Some(i) => i,
            None => {
                let ch = r["channels"].as_array().expect("channels");
                let bands = ch[0]["band_power"].as_object().expect("bands").len();
                out.push((id, ch.len(), bands, [false; 3]));
                out.len() - 1
            }
        };
        for (k, name) in ["engagement", "theta_beta", "alpha_theta"]
            .iter()
            .enumerate()
        {
            out[i].3[k] |= !r["indices"][name].is_null();
        }
    }
    out.into_iter()
        .map(|(id, ch, nb, idx)| (id, ch, nb, idx.iter().filter(|&&d| d).count()))
        .collect()
}

/// Asserts the page drew every panel of every session, with one series per channel and
/// band, one quality row per channel, one mark per trigger event and one line per defined
/// index, as the records and events `process` wrote imply.
fn assert_drawn(page: &Path, records: &[Value], events: &[Value]) {
    let r = render(page);
    assert_eq!(
        attr(&r.body, "data-rendered").as_deref(),
        Some("true"),
        "{}",
        r.body
    );
    assert_eq!(
        attr(&r.body, "data-errors").as_deref(),
        Some(""),
        "{}",
        r.body
    );
    assert!(
        attr(&r.body, "data-render-ms").is_some_and(|ms| ms.parse::<u64>().is_ok()),
        "{}",
        r.body
    );
    let sessions = shape(records);
    assert_eq!(r.panels.len(), 5 * sessions.len(), "{:?}", r.panels);
    for (i, (id, channels, bands, indices)) in sessions.iter().enumerate() {
        let n_events = events.iter().filter(|e| e["session_id"] == **id).count();
        for (kind, want) in [
            ("abs", channels * bands),
            ("rel", channels * bands),
            ("quality", *channels),
            ("events", n_events),
            ("indices", *indices),
        ] {
            let p = r
                .panels
                .iter()
                .find(|p| p.0 == i && p.1 == kind)
                .unwrap_or_else(|| panic!("no {kind} panel in session {i}"));
            assert_eq!(p.2, "true", "{kind} of {id} not rendered");
            assert_eq!(p.3, want, "series drawn in {kind} of {id}");
        }
    }
    // On paper the per-channel charts go up to three across, never more than there are
    // channels: a one-channel chart shrunk to a third of the page would be unreadable.
    let across: Vec<String> = sessions
        .iter()
        .flat_map(|s| [s.1.min(3).to_string(), s.1.min(3).to_string()])
        .collect();
    assert_eq!(
        r.print_cols, across,
        "print columns of the abs and rel panels"
    );
}

/// The page asks for nothing over the network: no external reference in any attribute, and
/// a policy that forbids every request.
fn assert_self_contained(html: &str) {
    assert!(
        html.contains("Content-Security-Policy\" content=\"default-src 'none';"),
        "no CSP"
    );
    for attr in ["src=", "href=", "srcset=", "action=", "url("] {
        for (i, _) in html.match_indices(attr) {
            let value = &html[i..(i + 120).min(html.len())];
            assert!(!value.contains("//"), "external reference: {value}");
        }
    }
    assert!(!html.contains("<link"), "a linked resource");
    assert!(!html.contains("@import"), "an imported style sheet");
}

/// The JSON data block of a page.
fn data_block(html: &str) -> &str {
    let start = html
        .find("<script type=\"application/json\" id=\"report-data\">")
        .expect("data block");
    let rest = &html[start..];
    &rest[rest.find('>').expect("tag") + 1..rest.find("</script>").expect("end")]
}

#[test]
fn the_fixture_report_draws_every_panel_offline() {
    let dir = scratch("fixture");
    let page = dir.join("report.html");
    let o = eeg(&["report", "fixtures/test_subsecond.edf", "--out", s(&page)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("report: "));
    let html = std::fs::read_to_string(&page).expect("page");
    assert_self_contained(&html);
    assert!(
        html.contains("not thinned"),
        "a short recording is shown whole"
    );
    // The look of the live page: its style sheet (the palette) and script, whole.
    assert!(html.contains(include_str!("../assets/page.css")));
    assert!(html.contains(include_str!("../assets/page.js")));
    // The time axes are UTC clock times, as on the live page, counted from the start of the
    // first window, which the page states.
    let data: Value = serde_json::from_str(data_block(&html)).expect("JSON data");
    let start = data["sessions"][0]["startMs"].as_i64().expect("startMs");
    let (y, m, d) = eeg_offline::time::civil_from_days(start.div_euclid(86_400_000));
    let first = format!(
        "<th>First window (UTC)</th><td>{y:04}-{m:02}-{d:02} {}</td>",
        eeg_offline::time::clock_ms(start)
    );
    assert!(html.contains(&first), "{first}");

    // What the page should show, from `process` on the same file.
    let (records, events) = (dir.join("records.jsonl"), dir.join("events.jsonl"));
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--out",
        s(&records),
        "--triggers",
        s(&events),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (records, events) = (jsonl(&records), jsonl(&events));
    assert!(!events.is_empty(), "the fixture raises trigger events");
    assert_drawn(&page, &records, &events);
    for e in &events {
        let rule = e["rule_id"].as_str().expect("rule");
        assert!(html.contains(rule), "event of {rule} not listed");
    }
}

#[test]
fn a_screenshot_of_the_report_is_not_blank() {
    let dir = scratch("screenshot");
    let page = dir.join("report.html");
    let o = eeg(&["report", "fixtures/test_subsecond.edf", "--out", s(&page)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = dir.join("report.png");
    let shot = format!("--screenshot={}", s(&png));
    let o = chromium_run(&page, &[&shot, "--window-size=1280,1600"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png).expect("screenshot written"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("decodes");
    assert_eq!((info.width, info.height), (1280, 1600));
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let white = pixels.iter().filter(|p| p[..3] == [255, 255, 255]).count();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    // Text, axes, filled areas and lines in several colours: far from a blank page.
    assert!(
        white < pixels.len() * 9 / 10,
        "{white} of {} pixels white",
        pixels.len()
    );
    assert!(colours.len() > 200, "{} colours", colours.len());
}

#[test]
fn a_report_of_processed_records_shows_what_a_report_of_the_recording_shows() {
    let dir = scratch("from_records");
    let (records, direct, from_records) = (
        dir.join("records.jsonl"),
        dir.join("direct.html"),
        dir.join("records.html"),
    );
    let input = fixture("test_generator.edf");
    let o = eeg(&["process", s(&input), "--out", s(&records), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A name that does not say JSONL: the content does.
    let renamed = dir.join("captured.txt");
    std::fs::rename(&records, &renamed).expect("rename");
    for (input, out) in [(&input, &direct), (&renamed, &from_records)] {
        let o = eeg(&["report", s(input), "--out", s(out), "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a, b) = (
        std::fs::read_to_string(&direct).expect("page"),
        std::fs::read_to_string(&from_records).expect("page"),
    );
    // The same windows and the same trigger events, whichever way they came.
    assert_eq!(data_block(&a), data_block(&b));
    assert!(b.contains("eeg.processed/1 JSONL"));
    assert!(b.contains("processed elsewhere"));
    let recs = jsonl(&renamed);
    let triggers = dir.join("events.jsonl");
    let o = eeg(&[
        "process",
        s(&input),
        "--out",
        "/dev/null",
        "--triggers",
        s(&triggers),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_drawn(&from_records, &recs, &jsonl(&triggers));
}

#[test]
fn process_report_writes_the_same_page_beside_the_same_records() {
    let dir = scratch("process_report");
    let (plain, with, page, direct) = (
        dir.join("plain.jsonl"),
        dir.join("with.jsonl"),
        dir.join("page.html"),
        dir.join("direct.html"),
    );
    let input = "fixtures/test_subsecond.edf";
    assert!(
        eeg(&["process", input, "--out", s(&plain), "-q"])
            .status
            .success()
    );
    let o = eeg(&[
        "process",
        input,
        "--out",
        s(&with),
        "--report",
        s(&page),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&plain).expect("records"),
        std::fs::read(&with).expect("records")
    );
    assert!(
        eeg(&["report", input, "--out", s(&direct), "-q"])
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(&page).expect("page"),
        std::fs::read(&direct).expect("page")
    );
}

#[test]
fn raw_jsonl_on_standard_input_gives_the_report_of_the_file() {
    let dir = scratch("raw_stdin");
    // Raw batches of two sessions of two channels, a sine each; session b has a gap of
    // five batches, which restarts it and must not be bridged on the page.
    let mut lines = Vec::new();
    for session in ["a", "b"] {
        for seq in 0..40u64 {
            if session == "b" && (20..25).contains(&seq) {
                continue;
            }
            let n = 128;
            let rows: Vec<Vec<f64>> = (0..2)
                .map(|c| {
                    (0..n)
                        .map(|i| {
                            let t = (seq as f64 * n as f64 + i as f64) / 128.0;
                            30.0 * (2.0 * std::f64::consts::PI * (9.0 + c as f64) * t).sin()
                        })
                        .collect()
                })
                .collect();
            lines.push(
                serde_json::json!({
                    "schema": "eeg.raw/1", "session_id": session, "device_id": "dev",
                    "seq": seq, "start_ms": 1_700_000_000_000i64 + seq as i64 * 1000,
                    "sample_rate_hz": 128.0, "channels": ["A", "B"], "samples": rows,
                })
                .to_string(),
            );
        }
    }
    let raw = dir.join("raw.jsonl");
    std::fs::write(&raw, lines.join("\n") + "\n").expect("write");
    let (from_file, from_stdin) = (dir.join("file.html"), dir.join("stdin.html"));
    let o = eeg(&["report", s(&raw), "--out", s(&from_file), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_eeg-pipeline"))
        .args(["report", "-", "--out", s(&from_stdin), "-q"])
        .stdin(std::fs::File::open(&raw).expect("open"))
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (
        std::fs::read_to_string(&from_file).expect("page"),
        std::fs::read_to_string(&from_stdin).expect("page"),
    );
    assert_eq!(data_block(&a), data_block(&b));
    assert!(
        a.contains("<th>Restarts</th><td>1 (after a gap"),
        "the gap is reported"
    );
    let (records, events) = (dir.join("records.jsonl"), dir.join("events.jsonl"));
    let o = eeg(&[
        "process",
        s(&raw),
        "--out",
        s(&records),
        "--triggers",
        s(&events),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_drawn(&from_file, &jsonl(&records), &jsonl(&events));
}

#[test]
fn bad_input_and_clashing_outputs_are_refused_before_anything_is_written() {
    let dir = scratch("refused");
    let edf = dir.join("rec.edf");
    std::fs::copy(fixture("test_subsecond.edf"), &edf).expect("copy");
    let page = dir.join("page.html");

    assert_bad_input(
        &eeg(&["report", s(&edf), "--out", s(&edf)]),
        &["--out", s(&edf), "is the input file"],
    );
    assert_bad_input(
        &eeg(&[
            "process",
            s(&edf),
            "--out",
            "/dev/null",
            "--report",
            s(&edf),
        ]),
        &["--report", "is the input file"],
    );
    let records = dir.join("out.jsonl");
    assert_bad_input(
        &eeg(&[
            "process",
            s(&edf),
            "--out",
            s(&records),
            "--report",
            s(&records),
        ]),
        &["--report", "is the same file as --out"],
    );
    let events = dir.join("events.jsonl");
    assert_bad_input(
        &eeg(&[
            "process",
            s(&edf),
            "--out",
            "/dev/null",
            "--triggers",
            s(&events),
            "--report",
            s(&events),
        ]),
        &["--report", "is the same file as --triggers"],
    );
    assert_bad_input(
        &eeg(&["process", s(&edf), "--report", "-"]),
        &["--report -", "carries the records"],
    );
    assert_bad_input(
        &eeg(&["report", "no/such.edf", "--out", s(&page)]),
        &["no/such.edf"],
    );
    let garbage = dir.join("garbage.bin");
    std::fs::write(&garbage, b"\x00\x01garbage").expect("write");
    assert_bad_input(
        &eeg(&["report", s(&garbage), "--out", s(&page)]),
        &["garbage.bin"],
    );
    // Records are for `report`; `process` names them rather than failing on a field.
    let records = dir.join("records.jsonl");
    assert!(
        eeg(&["process", s(&edf), "--out", s(&records), "-q"])
            .status
            .success()
    );
    assert_bad_input(
        &eeg(&["process", s(&records), "--out", "/dev/null"]),
        &["eeg.processed/1", "report"],
    );
    assert_bad_input(
        &eeg(&[
            "report",
            s(&records),
            "--out",
            s(&page),
            "--session-id",
            "nope",
        ]),
        &["--session-id", "nope", "rec"],
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            (name.ends_with(".html") || name.ends_with(".partial")).then_some(name)
        })
        .collect();
    assert!(leftovers.is_empty(), "written anyway: {leftovers:?}");
}

/// 64 channels × 1 hour at 256 Hz: the page stays under 5 MB, says it is thinned, and
/// Chromium draws all of it. (docs/performance.md has the render time; it is not asserted.)
#[test]
fn a_64_channel_hour_makes_a_page_under_5_mb_that_draws() {
    let dir = scratch("hour64");
    let path = dir.join("hour64.edf");
    long_edf(&path, 3600, |c, t| {
        // Alpha that waxes and wanes over minutes, over a little broadband activity.
        let a = 20.0 * (1.0 + (2.0 * std::f64::consts::PI * t / (300.0 + c as f64)).sin());
        a * (2.0 * std::f64::consts::PI * 10.0 * t).sin()
            + 5.0 * (2.0 * std::f64::consts::PI * (4.0 + c as f64 * 0.3) * t).sin()
            + 3.0 * (2.0 * std::f64::consts::PI * 21.0 * t + c as f64).sin()
    });
    let page = dir.join("hour64.html");
    let o = eeg(&["report", s(&path), "--out", s(&page)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = std::fs::remove_file(&path);
    let size = std::fs::metadata(&page).expect("page").len();
    println!("64 channels x 1 h: report of {size} bytes");
    assert!(size < 5 << 20, "{size} bytes");
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(html.contains("data-thinned=\"true\""));
    assert!(html.contains("Thinned for display"));

    let r = render(&page);
    assert_eq!(attr(&r.body, "data-rendered").as_deref(), Some("true"));
    assert_eq!(attr(&r.body, "data-errors").as_deref(), Some(""));
    let series = |kind: &str| r.panels.iter().find(|p| p.1 == kind).map(|p| p.3);
    // The default config's five bands.
    assert_eq!(series("abs"), Some(64 * 5));
    assert_eq!(series("rel"), Some(64 * 5));
    assert_eq!(series("quality"), Some(64));
    assert_eq!(r.print_cols, ["3", "3"]);
}
