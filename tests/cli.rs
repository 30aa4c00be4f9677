//! `eeg-pipeline process` end to end: the real binary on real files.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
mod common;

use common::{assert_bad_input, eeg, fixture, root, stderr};
#[cfg(target_os = "linux")]
use common::{long_edf, peak_rss_of, sines};

/// A scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    common::scratch("cli-tests", test)
}

fn records(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[derive(serde::Deserialize)]
struct SubsecondRef {
    start_unix_ms: i64,
    bands: Vec<(String, f64, f64)>,
    windows: Vec<RefWindow>,
}

#[derive(serde::Deserialize)]
struct RefWindow {
    index: u64,
    start_ms: i64,
    end_ms: i64,
    band_power: Vec<f64>,
    total_power: f64,
    relative_power: Vec<f64>,
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-6 * want.abs()
}

#[test]
fn process_test_subsecond_equals_scipy() {
    let text = std::fs::read_to_string(fixture("reference/test_subsecond.json")).expect("ref");
    let reference: SubsecondRef = serde_json::from_str(&text).expect("ref parses");
    let o = eeg(&["process", "fixtures/test_subsecond.edf"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&o);
    assert_eq!(recs.len(), reference.windows.len());
    assert_eq!(recs[0]["start_ms"], reference.start_unix_ms);
    for (r, w) in recs.iter().zip(&reference.windows) {
        assert_eq!(r["schema"], "eeg.processed/1");
        assert_eq!(r["session_id"], "test_subsecond");
        assert_eq!(r["window_index"], w.index);
        assert_eq!(r["start_ms"], w.start_ms, "window {}", w.index);
        assert_eq!(r["end_ms"], w.end_ms, "window {}", w.index);
        assert_eq!(r["sample_rate_hz"], 128.0);
        let ch = &r["channels"][0];
        assert_eq!(ch["name"], "Fp1");
        let total = ch["total_power"].as_f64().expect("number");
        assert!(
            close(total, w.total_power),
            "window {}: total {total} vs {}",
            w.index,
            w.total_power
        );
        for (b, (name, _, _)) in reference.bands.iter().enumerate() {
            let got = ch["band_power"][name].as_f64().expect("number");
            assert!(
                close(got, w.band_power[b]),
                "window {} {name}: {got} vs {}",
                w.index,
                w.band_power[b]
            );
            let rel = ch["relative_power"][name].as_f64().expect("number");
            assert!(
                close(rel, w.relative_power[b]),
                "window {} {name} relative",
                w.index
            );
        }
    }
    // The first windows start inside the filters' settling time, later ones do not.
    assert_eq!(recs[0]["settling"], true);
    assert_eq!(recs[10]["settling"], false);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "test_subsecond: {} windows, 1 channel at 128 Hz",
            recs.len()
        )),
        "summary: {err}"
    );
    assert!(
        err.contains("good channel-windows") && err.contains("alpha"),
        "{err}"
    );
}

#[test]
fn signals_at_different_rates_become_one_session_per_rate() {
    let o = eeg(&["process", "fixtures/test_generator.bdf"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&o);
    let mut sessions: Vec<(String, f64)> = recs
        .iter()
        .map(|r| {
            (
                r["session_id"].as_str().expect("id").to_string(),
                r["sample_rate_hz"].as_f64().expect("rate"),
            )
        })
        .collect();
    sessions.sort_by(|a, b| a.0.cmp(&b.0));
    sessions.dedup();
    let want: Vec<(String, f64)> = [1000.0, 500.0, 800.0, 975.0, 999.0]
        .iter()
        .map(|r| (format!("test_generator@{r}Hz"), *r))
        .collect();
    assert_eq!(sessions, want);
    // 30 s of signal, 4 s windows every 1 s: 27 windows per session.
    for (id, _) in &want {
        assert_eq!(
            recs.iter()
                .filter(|r| r["session_id"] == id.as_str())
                .count(),
            27,
            "{id}"
        );
    }
}

#[test]
fn channels_option_selects_and_orders_signals() {
    let o = eeg(&[
        "process",
        "fixtures/test_generator.edf",
        "--channels",
        "sine 8 Hz,noise",
        "--session-id",
        "s-1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&o);
    assert_eq!(recs.len(), 597);
    let names: Vec<&str> = recs[5]["channels"]
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["sine 8 Hz", "noise"]);
    assert_eq!(recs[5]["session_id"], "s-1");
    // An 8 Hz sine puts its power at the alpha band's lower edge.
    let alpha = recs[5]["channels"][0]["relative_power"]["alpha"]
        .as_f64()
        .expect("number");
    assert!(alpha > 0.4, "{alpha}");
}

#[test]
fn config_file_changes_bands_in_file_order() {
    let dir = scratch("config_bands");
    let cfg = dir.join("bands.toml");
    std::fs::write(&cfg, "[bands]\nslow = [1.0, 8.0]\nfast = [8.0, 40.0]\n").expect("write");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--config",
        cfg.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .expect("a record")
        .to_string();
    let slow = first.find("\"slow\"").expect("slow band");
    let fast = first.find("\"fast\"").expect("fast band");
    assert!(slow < fast, "{first}");
    assert!(!first.contains("\"alpha\""), "{first}");
    // Without theta/alpha/beta the indices cannot be computed.
    let r: Value = serde_json::from_str(&first).expect("json");
    assert_eq!(r["indices"]["engagement"], Value::Null);
}

/// `process` of test_subsecond.edf as session "s", the records the re-chunked inputs below
/// must give.
fn subsecond_records() -> Output {
    let edf = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--session-id",
        "s",
    ]);
    assert!(edf.status.success());
    edf
}

/// The start (Unix ms) and the samples (µV) of the one signal of test_subsecond.edf.
fn subsecond_samples() -> (i64, Vec<f64>) {
    let mut reader = eeg_edf::EdfReader::open(fixture("test_subsecond.edf")).expect("opens");
    let t0 = reader.header().start_unix_ms();
    let mut record = eeg_edf::Record::default();
    let mut samples = Vec::new();
    while reader.read_record(&mut record).expect("reads") {
        samples.extend_from_slice(record.signal(0));
    }
    (t0, samples)
}

#[test]
fn jsonl_input_gives_the_same_records_as_the_edf_it_came_from() {
    // Re-chunk the EDF's samples into eeg.raw/1 batches of 50 samples.
    let dir = scratch("jsonl_equals_edf");
    let edf = subsecond_records();
    let (t0, samples) = subsecond_samples();
    let mut lines = String::new();
    for (seq, chunk) in samples.chunks(50).enumerate() {
        let start_ms = t0 + (seq as f64 * 50.0 * 1000.0 / 128.0).round() as i64;
        let samples: Vec<String> = chunk.iter().map(|v| format!("{v:?}")).collect();
        lines.push_str(&format!(
            "{{\"schema\":\"eeg.raw/1\",\"session_id\":\"s\",\"device_id\":\"test_subsecond.edf\",\"seq\":{seq},\"start_ms\":{start_ms},\"sample_rate_hz\":128.0,\"channels\":[\"Fp1\"],\"samples\":[[{}]]}}\n",
            samples.join(",")
        ));
    }
    let input = dir.join("stream.jsonl");
    std::fs::write(&input, lines).expect("write");
    let jsonl = eeg(&["process", input.to_str().expect("utf8")]);
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    assert_eq!(records(&jsonl), records(&edf));
}

/// The EDF fixture's samples (µV) cut into batches of 50 as a capture of binary eeg.raw/1,
/// and where each message (its length prefix) starts, with its length.
fn subsecond_capture() -> (Vec<u8>, Vec<(usize, usize)>) {
    let (t0, samples) = subsecond_samples();
    let mut capture = Vec::new();
    let mut message = Vec::new();
    let mut frames = Vec::new();
    for (seq, chunk) in samples.chunks(50).enumerate() {
        let parts = eeg_schema::RawBatchParts {
            session_id: "s".into(),
            device_id: "test_subsecond.edf".into(),
            user_id: None,
            seq: seq as u64,
            start_ms: t0 + (seq as f64 * 50.0 * 1000.0 / 128.0).round() as i64,
            sample_rate_hz: 128.0,
            channels: vec!["Fp1".into()],
            samples: chunk.to_vec(),
        };
        let batch = eeg_schema::RawBatch::new(parts, &eeg_schema::Limits::default()).unwrap();
        message.clear();
        batch.encode_protobuf(&mut message);
        frames.push((capture.len(), message.len()));
        eeg_schema::write_delimited(&message, &mut capture).unwrap();
    }
    (capture, frames)
}

#[test]
fn a_binary_capture_gives_the_same_records_as_the_edf_it_came_from() {
    let dir = scratch("capture_equals_edf");
    let edf = subsecond_records();
    let (capture, _) = subsecond_capture();
    // Known by its name, or told by its content.
    for name in ["stream.pb", "stream.bin"] {
        let input = dir.join(name);
        std::fs::write(&input, &capture).expect("write");
        let o = eeg(&["process", input.to_str().expect("utf8")]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(records(&o), records(&edf), "{name}");
    }
    let piped = eeg_with_stdin(&["process", "-"], &capture);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(records(&piped), records(&edf));
}

#[test]
fn a_broken_capture_is_named_with_its_message_and_byte_offset() {
    let dir = scratch("broken_capture");
    let (capture, frames) = subsecond_capture();
    let messages = frames.len();
    let (last, length) = frames[messages - 1];
    let second = frames[1].0;
    let out = dir.join("features.jsonl");
    let out_arg = out.to_str().expect("utf8");

    // Cut short: named, and no output file left half written.
    let cut = dir.join("cut.pb");
    std::fs::write(&cut, &capture[..capture.len() - 5]).expect("write");
    let o = eeg(&["process", cut.to_str().expect("utf8"), "--out", out_arg]);
    assert_bad_input(
        &o,
        &[&format!(
            "cut.pb: message {messages} at byte {last}: truncated: {length} bytes announced, {} present",
            length - 5
        )],
    );
    assert!(!out.exists());

    // A frame whose bytes are not a RawBatch.
    let mut garbage = capture[..second].to_vec();
    garbage.extend_from_slice(&[3, 0x0a, 0xff, 0xff]);
    let bad = dir.join("bad.pb");
    std::fs::write(&bad, &garbage).expect("write");
    let o = eeg(&["process", bad.to_str().expect("utf8"), "--out", out_arg]);
    assert_bad_input(&o, &[&format!("bad.pb: message 2 at byte {second}: ")]);
    assert!(!out.exists());
}

#[test]
fn out_file_is_written_whole_or_not_at_all() {
    let dir = scratch("out_file");
    let out = dir.join("features.jsonl");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--out",
        out.to_str().expect("utf8"),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        o.stderr.is_empty(),
        "--quiet prints nothing: {}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&out).expect("output");
    assert_eq!(text.lines().count(), 695);

    // A file truncated in its data section fails before any record is kept.
    let bytes = std::fs::read(fixture("test_subsecond.edf")).expect("read");
    let cut = dir.join("cut.edf");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).expect("write");
    let failed_out = dir.join("failed.jsonl");
    let o = eeg(&[
        "process",
        cut.to_str().expect("utf8"),
        "--out",
        failed_out.to_str().expect("utf8"),
    ]);
    assert_bad_input(&o, &["cut.edf", "truncated"]);
    assert!(!failed_out.exists());
    assert!(!Path::new(&format!("{}.partial", failed_out.display())).exists());
}

#[test]
fn an_input_of_unknown_kind_leaves_no_output_behind() {
    let dir = scratch("unknown_kind");
    let input = dir.join("notes.dat");
    std::fs::write(&input, "not a recording\n").expect("write");
    let o = eeg(&[
        "process",
        input.to_str().expect("utf8"),
        "--out",
        dir.join("out.jsonl").to_str().expect("utf8"),
        "--triggers",
        dir.join("events.jsonl").to_str().expect("utf8"),
    ]);
    assert_bad_input(&o, &["notes.dat", "not an EDF/BDF file"]);
    let left: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(left, [input]);
}

#[test]
fn missing_file_is_bad_input() {
    let o = eeg(&["process", "fixtures/no-such-file.edf"]);
    assert_bad_input(&o, &["fixtures/no-such-file.edf"]);
    assert!(o.stdout.is_empty());
}

#[test]
fn truncated_edf_header_is_bad_input() {
    let dir = scratch("truncated_header");
    let bytes = std::fs::read(fixture("test_subsecond.edf")).expect("read");
    let path = dir.join("short.edf");
    std::fs::write(&path, &bytes[..200]).expect("write");
    let o = eeg(&["process", path.to_str().expect("utf8")]);
    assert_bad_input(&o, &["short.edf", "header"]);
    assert!(o.stdout.is_empty());
}

#[test]
fn corrupt_edf_header_field_is_bad_input() {
    let dir = scratch("corrupt_header");
    let mut bytes = std::fs::read(fixture("test_subsecond.edf")).expect("read");
    bytes[236..244].copy_from_slice(b"12a     ");
    let path = dir.join("corrupt.edf");
    std::fs::write(&path, &bytes).expect("write");
    let o = eeg(&["process", path.to_str().expect("utf8")]);
    assert_bad_input(&o, &["corrupt.edf", "number of data records", "12a"]);
    assert!(o.stdout.is_empty());
}

#[test]
fn replay_refuses_an_events_file_for_messages_that_carry_their_own() {
    let dir = scratch("replay_events_jsonl");
    let good = r#"{"schema":"eeg.raw/1","session_id":"s","device_id":"d","seq":0,"start_ms":0,"sample_rate_hz":250.0,"channels":["A"],"samples":[[1.0,2.0]]}"#;
    let path = dir.join("stream.jsonl");
    std::fs::write(&path, format!("{good}\n")).expect("write");
    let p = path.to_str().expect("utf8");
    for flags in [&["--events", "e.tsv"][..], &["--events-early"][..]] {
        // Refused before any broker is asked: none listens here.
        let args = [
            &["replay", p, "--bootstrap-servers", "127.0.0.1:1"][..],
            flags,
        ]
        .concat();
        let o = eeg(&args);
        assert_bad_input(&o, &["stream.jsonl", "--events", "EDF/BDF input"]);
    }
}

#[test]
fn epochs_to_a_parquet_name_are_refused_before_anything_is_written() {
    let dir = scratch("epochs_parquet");
    let out = dir.join("epochs.parquet");
    let records = dir.join("records.jsonl");
    let o = eeg(&[
        "process",
        "fixtures/synthetic_erp.edf",
        "--epochs",
        out.to_str().expect("utf8"),
        "--out",
        records.to_str().expect("utf8"),
    ]);
    assert_bad_input(
        &o,
        &["--epochs", "epochs.parquet", "Parquet is not supported"],
    );
    assert!(!out.exists() && !records.exists());
}

#[test]
fn invalid_message_is_bad_input_naming_the_line() {
    let dir = scratch("invalid_message");
    let good = r#"{"schema":"eeg.raw/1","session_id":"s","device_id":"d","seq":0,"start_ms":0,"sample_rate_hz":250.0,"channels":["A","B"],"samples":[[1.0,2.0],[3.0,4.0]]}"#;
    let bad = r#"{"schema":"eeg.raw/1","session_id":"s","device_id":"d","seq":1,"start_ms":8,"sample_rate_hz":250.0,"channels":["A","B"],"samples":[[1.0,2.0],[3.0]]}"#;
    let path = dir.join("stream.jsonl");
    std::fs::write(&path, format!("{good}\n{bad}\n")).expect("write");
    let o = eeg(&["process", path.to_str().expect("utf8")]);
    assert_bad_input(&o, &["stream.jsonl", "line 2", "samples"]);
}

#[test]
fn band_above_nyquist_is_bad_input_naming_the_key() {
    let dir = scratch("band_above_nyquist");
    let cfg = dir.join("gamma.toml");
    std::fs::write(&cfg, "[bands]\nalpha = [8.0, 13.0]\ngamma = [30.0, 80.0]\n").expect("write");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--config",
        cfg.to_str().expect("utf8"),
    ]);
    assert_bad_input(
        &o,
        &["test_subsecond.edf", "bands.gamma", "above Nyquist (64 Hz)"],
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn unknown_config_key_is_bad_input_naming_the_line() {
    let dir = scratch("unknown_key");
    let cfg = dir.join("typo.toml");
    std::fs::write(&cfg, "[filter]\nmains_hz = 60\nnotch = 30\n").expect("write");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--config",
        cfg.to_str().expect("utf8"),
    ]);
    assert_bad_input(&o, &["typo.toml", "line 3", "notch"]);
}

#[test]
fn unknown_channel_is_bad_input() {
    let o = eeg(&["process", "fixtures/test_subsecond.edf", "--channels", "Cz"]);
    assert_bad_input(&o, &["test_subsecond.edf", "Cz", "Fp1"]);
}

#[test]
fn empty_jsonl_is_bad_input() {
    let dir = scratch("empty_jsonl");
    let path = dir.join("empty.jsonl");
    std::fs::write(&path, "").expect("write");
    let o = eeg(&["process", path.to_str().expect("utf8")]);
    assert_bad_input(&o, &["empty.jsonl", "empty"]);
}

#[cfg(unix)]
#[test]
fn out_to_a_device_writes_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--out",
        "/dev/null",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = std::fs::metadata("/dev/null").expect("/dev/null exists");
    assert!(
        meta.file_type().is_char_device(),
        "/dev/null must stay a device"
    );
    assert!(!Path::new("/dev/null.partial").exists());
}

#[test]
fn edf_plus_d_gap_restarts_the_session() {
    // test_subsecond.edf made discontinuous: records from 300 on start 3 s later.
    let dir = scratch("edf_plus_d");
    let mut bytes = std::fs::read(fixture("test_subsecond.edf")).expect("read");
    bytes[192..197].copy_from_slice(b"EDF+D");
    let (header, record, annotation) = (768, 296, 256);
    for k in 300..698usize {
        let at = header + k * record + annotation;
        let old = format!("+{k}.3945312");
        let new = format!("+{}.3945312", k + 3);
        assert_eq!(&bytes[at..at + old.len()], old.as_bytes(), "record {k}");
        bytes[at..at + new.len()].copy_from_slice(new.as_bytes());
    }
    let path = dir.join("gap.edf");
    std::fs::write(&path, &bytes).expect("write");
    let o = eeg(&["process", path.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("data record 300"), "{}", stderr(&o));
    let recs = records(&o);
    // 300 s then 398 s of signal: 297 + 395 windows of 4 s every 1 s.
    assert_eq!(recs.len(), 692);
    let t0 = recs[0]["start_ms"].as_i64().expect("ms");
    assert_eq!(recs[296]["start_ms"].as_i64(), Some(t0 + 296_000));
    assert_eq!(recs[297]["window_index"], 297);
    assert_eq!(recs[297]["start_ms"].as_i64(), Some(t0 + 303_000));
    assert_eq!(recs[296]["settling"], false);
    assert_eq!(recs[297]["settling"], true, "filters restart after the gap");
    assert!(stderr(&o).contains("1 reset(s)"), "{}", stderr(&o));
}

#[test]
fn splitting_a_session_across_threads_changes_no_number() {
    // 11 channels: one part with --threads 1, three parts with --threads 3.
    let one = eeg(&["process", "fixtures/test_generator.edf", "--threads", "1"]);
    let three = eeg(&["process", "fixtures/test_generator.edf", "--threads", "3"]);
    assert!(
        one.status.success() && three.status.success(),
        "{}",
        stderr(&three)
    );
    assert!(!one.stdout.is_empty());
    assert_eq!(one.stdout, three.stdout);
}

/// An EDF+D file of `channels` signals at 128 Hz (1 s records) and an annotation signal
/// whose time-keeping puts records from `gap_at` on `gap_s` seconds later.
fn edf_plus_d(path: &Path, channels: usize, n_records: usize, gap_at: usize, gap_s: usize) {
    let ns = channels + 1;
    let (rate, tal_samples) = (128usize, 32usize);
    let field = |v: &str, w: usize| format!("{v:<w$}");
    let mut h = String::new();
    h += &field("0", 8);
    h += &field("X X X X", 80);
    h += &field("Startdate 01-JAN-2024 X X X", 80);
    h += "01.01.2412.00.00";
    h += &field(&(256 * (ns + 1)).to_string(), 8);
    h += &field("EDF+D", 44);
    h += &field(&n_records.to_string(), 8);
    h += &field("1", 8);
    h += &field(&ns.to_string(), 4);
    // Per-signal fields, each for every signal in turn: label, transducer, dimension,
    // physical min/max, digital min/max, prefilter, samples per record.
    for (k, width) in [16, 80, 8, 8, 8, 8, 8, 80, 8].into_iter().enumerate() {
        for i in 0..ns {
            let value = match (k, i < channels) {
                (0, true) => format!("EEG C{i}"),
                (0, false) => "EDF Annotations".into(),
                (2, true) => "uV".into(),
                (3, true) => "-3276.8".into(),
                (3, false) => "-1".into(),
                (4, true) => "3276.7".into(),
                (4, false) => "1".into(),
                (5, _) => "-32768".into(),
                (6, _) => "32767".into(),
                (8, true) => rate.to_string(),
                (8, false) => tal_samples.to_string(),
                _ => String::new(),
            };
            h += &field(&value, width);
        }
    }
    h += &" ".repeat(32 * ns);
    let mut bytes = h.into_bytes();
    for k in 0..n_records {
        for c in 0..channels {
            for n in 0..rate {
                let t = (k * rate + n) as f64 / rate as f64;
                let uv = 40.0 * (2.0 * std::f64::consts::PI * (6.0 + c as f64) * t).sin()
                    + 10.0 * (c as f64 + 1.0);
                bytes.extend(((uv * 10.0).round() as i16).to_le_bytes());
            }
        }
        let onset = if k < gap_at { k } else { k + gap_s };
        let mut tal = format!("+{onset}\x14\x14\0").into_bytes();
        tal.resize(2 * tal_samples, 0);
        bytes.extend(tal);
    }
    std::fs::write(path, bytes).expect("write EDF+D");
}

#[test]
fn a_gap_restarts_every_part_of_a_split_session_at_the_same_record() {
    // 9 channels split across threads; the gap falls inside a batch of records handed to
    // the other threads, so the records before it must be processed before the restart.
    let dir = scratch("split_gap");
    let path = dir.join("gap.edf");
    edf_plus_d(&path, 9, 40, 13, 5);
    let file = path.to_str().expect("utf8");
    let one = eeg(&["process", file, "--threads", "1"]);
    let two = eeg(&["process", file, "--threads", "2"]);
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(two.status.success(), "{}", stderr(&two));
    assert!(stderr(&two).contains("data record 13"), "{}", stderr(&two));
    let recs = records(&two);
    // 13 s then 27 s of signal: 10 + 24 windows of 4 s every 1 s.
    assert_eq!(recs.len(), 34);
    assert_eq!(recs[9]["settling"], false);
    assert_eq!(recs[10]["settling"], true, "filters restart after the gap");
    let t0 = recs[0]["start_ms"].as_i64().expect("ms");
    assert_eq!(recs[10]["start_ms"].as_i64(), Some(t0 + 18_000));
    assert_eq!(recs[10]["channels"].as_array().map(Vec::len), Some(9));
    assert_eq!(one.stdout, two.stdout);
}

/// `n` eeg.raw/1 lines of one 2-channel session at 100 Hz, 50 samples each, seq from 0.
fn raw_lines(session: &str, n: u64) -> Vec<String> {
    (0..n)
        .map(|seq| {
            let row = |c: f64| -> String {
                let v: Vec<String> = (0..50)
                    .map(|i| {
                        let t = (seq * 50 + i) as f64 / 100.0;
                        format!("{:?}", 20.0 * (2.0 * std::f64::consts::PI * (9.0 + c) * t).sin())
                    })
                    .collect();
                format!("[{}]", v.join(","))
            };
            format!(
                "{{\"schema\":\"eeg.raw/1\",\"session_id\":\"{session}\",\"device_id\":\"dev\",\"seq\":{seq},\"start_ms\":{},\"sample_rate_hz\":100.0,\"channels\":[\"A\",\"B\"],\"samples\":[{},{}]}}",
                1_000_000 + seq * 500,
                row(0.0),
                row(1.0)
            )
        })
        .collect()
}

#[test]
fn jsonl_duplicates_are_skipped_and_gaps_restart_the_session() {
    let dir = scratch("jsonl_seq");
    let lines = raw_lines("s", 40);
    let clean = dir.join("clean.jsonl");
    std::fs::write(&clean, lines.join("\n")).expect("write");
    let want = eeg(&["process", clean.to_str().expect("utf8")]);
    assert!(want.status.success(), "{}", stderr(&want));

    // Every message delivered twice (at-least-once delivery): same records.
    let doubled: Vec<String> = lines.iter().flat_map(|l| [l.clone(), l.clone()]).collect();
    let dup = dir.join("dup.jsonl");
    std::fs::write(&dup, doubled.join("\n")).expect("write");
    let o = eeg(&["process", dup.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, want.stdout);
    assert!(
        stderr(&o).contains("40 duplicate batch(es) skipped"),
        "{}",
        stderr(&o)
    );

    // seq 20 lost: the session restarts at seq 21 with settling windows.
    let gap: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 20)
        .map(|(_, l)| l.clone())
        .collect();
    let gapped = dir.join("gap.jsonl");
    std::fs::write(&gapped, gap.join("\n")).expect("write");
    let o = eeg(&["process", gapped.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("jumps from seq 19 to 21"),
        "{}",
        stderr(&o)
    );
    let recs = records(&o);
    // 10 s before the gap (7 windows), 9.5 s after it (6 windows), indices continuing.
    assert_eq!(recs.len(), 13);
    assert_eq!(recs[7]["window_index"], 7);
    assert_eq!(recs[7]["start_ms"], 1_000_000 + 21 * 500);
    assert_eq!(recs[7]["settling"], true);
}

/// Runs the binary with `input` on its standard input.
fn eeg_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_eeg-pipeline"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Written from a thread while the output is read here: a large input and its output
    // would otherwise fill both pipes. The command may stop reading early (bad input): a
    // broken pipe is its answer.
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("runs");
    writer.join().expect("writer");
    out
}

#[test]
fn jsonl_from_standard_input_equals_the_file() {
    let dir = scratch("stdin");
    let text = raw_lines("s", 12).join("\n");
    let path = dir.join("in.jsonl");
    std::fs::write(&path, &text).expect("write");
    let from_file = eeg(&["process", path.to_str().expect("utf8")]);
    let from_stdin = eeg_with_stdin(&["process", "-"], text.as_bytes());
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    assert!(!from_stdin.stdout.is_empty());
    assert_eq!(from_stdin.stdout, from_file.stdout);

    let o = eeg_with_stdin(&["process", "-"], b"{\"schema\":\"eeg.raw/1\"}\n");
    assert_bad_input(&o, &["<stdin>", "line 1", "session_id"]);
}

#[cfg(target_os = "linux")]
#[test]
fn memory_stays_flat_on_a_long_recording() {
    // 64 channels x 20 minutes at 256 Hz: 39 MB of EDF, 157 MB as f64 samples.
    let dir = scratch("flat_memory");
    let path = dir.join("long.edf");
    long_edf(&path, 1200, sines);
    let peak = peak_rss_of(Command::new(env!("CARGO_BIN_EXE_eeg-pipeline")).args([
        "process",
        path.to_str().expect("utf8"),
        "--out",
        "/dev/null",
        "-q",
    ]));
    println!("peak RSS of process on 20 min x 64 channels: {peak} kB");
    assert!(
        peak < 40 * 1024,
        "peak RSS {peak} kB for a recording of 157 MB of samples"
    );
}

/// Events a rule `metric op threshold` with `for_windows`, `clear_threshold` and
/// `clear_for_windows` (no cooldown) gives on `records`, worked out here from the records
/// alone: `(state, window_index, value)`.
fn expected_events(
    records: &[Value],
    value: impl Fn(&Value) -> Option<f64>,
    fires: impl Fn(f64) -> bool,
    clears: impl Fn(f64) -> bool,
    for_windows: u32,
    clear_for_windows: u32,
) -> Vec<(String, u64, f64)> {
    let (mut fired, mut run) = (false, 0);
    let mut out = Vec::new();
    for r in records {
        if r["settling"].as_bool().unwrap() {
            continue;
        }
        let Some(v) = value(r) else { continue };
        let (meets, need) = if fired {
            (clears(v), clear_for_windows)
        } else {
            (fires(v), for_windows)
        };
        run = if meets { run + 1 } else { 0 };
        if run >= need {
            fired = !fired;
            run = 0;
            let state = if fired { "fired" } else { "cleared" };
            out.push((state.to_string(), r["window_index"].as_u64().unwrap(), v));
        }
    }
    out
}

fn trigger_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn process_writes_the_trigger_events_the_records_imply() {
    let dir = scratch("triggers");
    let config = dir.join("rules.toml");
    std::fs::write(
        &config,
        "[[triggers]]\nid = \"alpha_up\"\nmetric = \"relative_power.alpha\"\nop = \">\"\n\
         threshold = 0.25\nfor_windows = 3\nclear_threshold = 0.2\nclear_for_windows = 2\n",
    )
    .unwrap();
    let events = dir.join("events.jsonl");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--config",
        config.to_str().unwrap(),
        "--triggers",
        events.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&o);
    // One channel: the mean over good channels is that channel's value when it is good.
    let alpha = |r: &Value| {
        let c = &r["channels"][0];
        c["quality"]["good"]
            .as_bool()
            .unwrap()
            .then(|| c["relative_power"]["alpha"].as_f64().unwrap())
    };
    let want = expected_events(&recs, alpha, |v| v > 0.25, |v| v <= 0.2, 3, 2);
    assert!(
        want.len() >= 4,
        "the fixture crosses the thresholds: {want:?}"
    );
    let got = trigger_events(&events);
    assert_eq!(got.len(), want.len());
    for (g, (state, index, value)) in got.iter().zip(&want) {
        assert_eq!(g["schema"], "analytics.trigger/1");
        assert_eq!(g["rule_id"], "alpha_up");
        assert_eq!(g["session_id"], "test_subsecond");
        assert_eq!(g["metric"], "relative_power.alpha");
        assert_eq!(g["state"], state.as_str());
        assert_eq!(g["window_index"].as_u64(), Some(*index));
        assert_eq!(g["value"].as_f64(), Some(*value));
        let threshold = if state == "fired" { 0.25 } else { 0.2 };
        assert_eq!(g["threshold"].as_f64(), Some(threshold));
        let rec = &recs[*index as usize];
        assert_eq!(g["start_ms"], rec["start_ms"]);
        assert_eq!(g["end_ms"], rec["end_ms"]);
    }
    assert!(stderr(&o).contains(&format!("{} trigger event(s)", want.len())));
}

#[test]
fn default_trigger_rules_fire_on_engagement() {
    let dir = scratch("default_triggers");
    let events = dir.join("events.jsonl");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--triggers",
        events.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&o);
    let got = trigger_events(&events);
    assert!(got.iter().any(|g| g["metric"] == "indices.engagement"));
    for g in &got {
        let rec = &recs[g["window_index"].as_u64().unwrap() as usize];
        let metric = g["metric"].as_str().unwrap();
        if let Some(index) = metric.strip_prefix("indices.") {
            assert_eq!(g["value"], rec["indices"][index], "{g}");
        }
    }
}

fn eeg_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eeg-pipeline"))
        .args(args)
        .env_remove("AWS_REGION")
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .expect("runs")
}

#[test]
fn security_settings_that_cannot_work_are_bad_input_naming_the_setting() {
    let sasl = ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL");
    // Unroutable: the settings must be refused before any connection is tried.
    let servers = ("KAFKA_BOOTSTRAP_SERVERS", "192.0.2.1:9098");
    for command in [&["topics", "check"][..], &["run"][..]] {
        let o = eeg_with_env(command, &[servers, sasl]);
        assert_bad_input(&o, &["KAFKA_SASL_MECHANISM"]);
        let o = eeg_with_env(
            command,
            &[servers, sasl, ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM")],
        );
        assert_bad_input(&o, &["AWS_MSK_IAM", "AWS_REGION"]);
        let o = eeg_with_env(command, &[servers, ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM")]);
        assert_bad_input(&o, &["AWS_MSK_IAM", "SASL_SSL"]);
        let o = eeg_with_env(
            command,
            &[
                servers,
                sasl,
                ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                ("KAFKA_SASL_USERNAME", "eeg"),
            ],
        );
        assert_bad_input(&o, &["KAFKA_SASL_PASSWORD"]);
    }
}

/// Runs `process` on `input` with `args` after it and checks that it is refused as bad
/// input naming `flag` and `path`, leaving every file in `dir` as it was, byte for byte
/// (the input among them), and creating none.
#[cfg(unix)]
fn assert_refused(dir: &Path, input: &Path, args: &[&str], flag: &str, path: &str) {
    let snapshot = || {
        let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
            .expect("scratch dir")
            .map(|e| {
                let p = e.expect("entry").path();
                let bytes = std::fs::read(&p).unwrap_or_default();
                (p, bytes)
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    let mut all = vec!["process", input.to_str().expect("utf8")];
    all.extend_from_slice(args);
    let o = eeg(&all);
    assert_bad_input(&o, &[flag, path]);
    assert!(o.stdout.is_empty());
    assert!(before == snapshot(), "files in {} changed", dir.display());
}

#[cfg(unix)]
#[test]
fn outputs_that_would_overwrite_the_input_are_refused() {
    let dir = scratch("out_is_input");
    let edf = dir.join("rec.edf");
    std::fs::copy(fixture("test_subsecond.edf"), &edf).expect("copy");
    let recording = std::fs::read(&edf).expect("read");
    let edf_s = edf.to_str().expect("utf8");

    // The same path, another spelling of it, a symlink and a hard link to it.
    assert_refused(&dir, &edf, &["--out", edf_s], "--out", edf_s);
    let dotted = format!("{}/./rec.edf", dir.display());
    assert_refused(&dir, &edf, &["--out", &dotted], "--out", &dotted);
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink(&edf, &link).expect("symlink");
    let link_s = link.to_str().expect("utf8");
    assert_refused(&dir, &edf, &["--out", link_s], "--out", link_s);
    let hard = dir.join("hard.jsonl");
    std::fs::hard_link(&edf, &hard).expect("hard link");
    let hard_s = hard.to_str().expect("utf8");
    assert_refused(&dir, &edf, &["--out", hard_s], "--out", hard_s);
    assert_refused(&dir, &edf, &["--triggers", hard_s], "--triggers", hard_s);
    // The input named through the link, the output by its own name.
    assert_refused(&dir, &link, &["--triggers", edf_s], "--triggers", edf_s);
    assert_eq!(std::fs::read(&edf).expect("read"), recording);

    // JSONL input, and standard input redirected from the file named by --out.
    let jsonl = dir.join("stream.jsonl");
    let text = raw_lines("s", 12).join("\n");
    std::fs::write(&jsonl, &text).expect("write");
    let jsonl_s = jsonl.to_str().expect("utf8");
    assert_refused(&dir, &jsonl, &["--out", jsonl_s], "--out", jsonl_s);
    let o = Command::new(env!("CARGO_BIN_EXE_eeg-pipeline"))
        .args(["process", "-", "--out", jsonl_s])
        .stdin(std::fs::File::open(&jsonl).expect("open"))
        .output()
        .expect("runs");
    assert_bad_input(&o, &["--out", jsonl_s]);
    assert_eq!(std::fs::read_to_string(&jsonl).expect("read"), text);
}

#[cfg(unix)]
#[test]
fn out_and_triggers_must_be_different_files() {
    let dir = scratch("out_is_triggers");
    let input = dir.join("rec.edf");
    std::fs::copy(fixture("test_subsecond.edf"), &input).expect("copy");
    // Neither exists yet: the same name, or two spellings of it.
    let both = dir.join("both.jsonl");
    let both_s = both.to_str().expect("utf8");
    let args = ["--out", both_s, "--triggers", both_s];
    assert_refused(&dir, &input, &args, "--triggers", both_s);
    let other = format!("{}/../{}/both.jsonl", dir.display(), "out_is_triggers");
    let args = ["--out", both_s, "--triggers", &other];
    assert_refused(&dir, &input, &args, "--triggers", &other);
    // Both exist: compared as files, through a symlink too.
    std::fs::write(&both, "keep\n").expect("write");
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink(&both, &link).expect("symlink");
    let link_s = link.to_str().expect("utf8");
    let args = ["--out", both_s, "--triggers", link_s];
    assert_refused(&dir, &input, &args, "--triggers", link_s);
    assert_eq!(std::fs::read_to_string(&both).expect("read"), "keep\n");

    // Devices and standard output are not files that could be overwritten.
    let o = eeg(&[
        "process",
        input.to_str().expect("utf8"),
        "--out",
        "/dev/null",
        "--triggers",
        "/dev/null",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let events = dir.join("events.jsonl");
    let o = eeg(&[
        "process",
        input.to_str().expect("utf8"),
        "--out",
        "-",
        "--triggers",
        events.to_str().expect("utf8"),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(records(&o).len(), 695);
    assert!(events.exists());
}

#[test]
fn jsonl_session_id_selects_a_session_and_channels_select_channels() {
    let dir = scratch("jsonl_select");
    // Two sessions interleaved, each with channels A and B.
    let (a, b) = (raw_lines("a", 30), raw_lines("b", 30));
    let mixed: Vec<&str> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.as_str(), y.as_str()])
        .collect();
    let both = dir.join("both.jsonl");
    std::fs::write(&both, mixed.join("\n")).expect("write");
    let only_a = dir.join("a.jsonl");
    std::fs::write(&only_a, a.join("\n")).expect("write");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();

    let selected = eeg(&["process", &path(&both), "--session-id", "a"]);
    assert!(selected.status.success(), "{}", stderr(&selected));
    let alone = eeg(&["process", &path(&only_a)]);
    assert!(!records(&alone).is_empty());
    assert_eq!(records(&selected), records(&alone));

    // Channel B alone equals a stream that only ever had B.
    let b_only: Vec<String> = a
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).expect("json");
            v["channels"] = serde_json::json!(["B"]);
            let row = v["samples"][1].clone();
            v["samples"] = serde_json::json!([row]);
            v.to_string()
        })
        .collect();
    let b_path = dir.join("b_only.jsonl");
    std::fs::write(&b_path, b_only.join("\n")).expect("write");
    let want = records(&eeg(&["process", &path(&b_path)]));
    let got = eeg(&["process", &path(&only_a), "--channels", "B"]);
    assert!(got.status.success(), "{}", stderr(&got));
    assert!(!want.is_empty());
    assert_eq!(records(&got), want);

    let o = eeg(&["process", &path(&both), "--session-id", "c"]);
    assert_bad_input(&o, &["both.jsonl", "no message of session 'c'", "a, b"]);
    let o = eeg(&["process", &path(&only_a), "--channels", "B,Z"]);
    assert_bad_input(&o, &["line 1", "no channel 'Z'", "(channels: A, B)"]);
}

#[test]
fn a_channel_named_twice_is_bad_input() {
    let o = eeg(&[
        "process",
        "fixtures/test_generator.edf",
        "--channels",
        "noise,noise",
    ]);
    assert_bad_input(&o, &["--channels", "'noise' is named twice"]);
}

#[test]
fn an_edf_on_standard_input_is_named_as_such() {
    let edf = std::fs::read(fixture("test_subsecond.edf")).expect("fixture");
    let o = eeg_with_stdin(&["process", "-"], &edf);
    assert_bad_input(&o, &["<stdin>", "EDF/BDF recording", "give its path"]);
}

#[test]
fn a_band_the_band_pass_removes_is_bad_input() {
    let dir = scratch("band_outside");
    let config = dir.join("c.toml");
    std::fs::write(&config, "[bands]\nalpha = [8, 13]\nline = [50, 60]\n").expect("write");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--config",
        config.to_str().expect("utf8"),
    ]);
    assert_bad_input(&o, &["bands.line", "outside filter.bandpass_hz [1, 45]"]);
}

#[test]
fn default_trigger_rules_the_bands_cannot_feed_are_a_warning() {
    let dir = scratch("rules_unfed");
    let config = dir.join("c.toml");
    std::fs::write(&config, "[bands]\nlow = [1, 8]\nhigh = [8, 30]\n").expect("write");
    let events = dir.join("events.jsonl");
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--config",
        config.to_str().expect("utf8"),
        "--triggers",
        events.to_str().expect("utf8"),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("trigger rule 'high_engagement' (indices.engagement) can never fire"),
        "{err}"
    );
}

#[test]
fn tail_options_that_cannot_go_together_are_refused_before_any_connection() {
    // No broker listens there: each refusal comes before a connection is tried.
    let nowhere = [
        "--bootstrap-servers",
        "127.0.0.1:9",
        "--connect-timeout-s",
        "1",
    ];
    let cases: [(&[&str], &str); 3] = [
        (
            &["--topic", "processed", "--format", "pb"],
            "--format pb: captures are of raw batches; use it with --topic raw",
        ),
        (
            &["--format", "table", "--envelope"],
            "--envelope: for --format jsonl only",
        ),
        (
            &["--format", "pb", "--envelope"],
            "--envelope: for --format jsonl only",
        ),
    ];
    for (args, said) in cases {
        let o = eeg(&[&["tail"][..], &nowhere, args].concat());
        assert_bad_input(&o, &[said]);
    }
}

/// A varint at the start of `bytes`: its value and length.
fn varint(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("a varint cut short");
}

/// `capture` with the fields of every message in reverse order: as protobuf allows, and as
/// the service accepts them.
fn reversed_fields(capture: &[u8]) -> Vec<u8> {
    let mut reader = eeg_schema::DelimitedReader::new(capture, 1 << 22);
    let mut out = Vec::new();
    while let Some(m) = reader.next_message().expect("a capture") {
        let mut fields = Vec::new();
        let mut rest = m.bytes;
        while !rest.is_empty() {
            let (tag, n) = varint(rest);
            let len = n + match tag & 7 {
                0 => varint(&rest[n..]).1,
                1 => 8,
                2 => {
                    let (l, k) = varint(&rest[n..]);
                    k + l as usize
                }
                5 => 4,
                w => panic!("wire type {w}"),
            };
            fields.push(&rest[..len]);
            rest = &rest[len..];
        }
        fields.reverse();
        eeg_schema::write_delimited(&fields.concat(), &mut out).expect("write");
    }
    out
}

#[test]
fn a_capture_whose_messages_do_not_start_with_field_1_is_read() {
    let dir = scratch("capture_field_order");
    let edf = subsecond_records();
    let (capture, _) = subsecond_capture();
    let reversed = reversed_fields(&capture);
    let (_, prefix) = varint(&reversed);
    assert_ne!(
        reversed[prefix], 0x0a,
        "the first field is no longer field 1"
    );
    // A .pb name decides; without one, the content tells, whatever the order of the fields.
    for name in ["reversed.pb", "reversed.bin"] {
        let input = dir.join(name);
        std::fs::write(&input, &reversed).expect("write");
        let o = eeg(&["process", input.to_str().expect("utf8")]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(records(&o), records(&edf), "{name}");
    }
    let piped = eeg_with_stdin(&["process", "-"], &reversed);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(records(&piped), records(&edf));
}

#[test]
fn an_out_file_of_unknown_extension_is_bad_input_unless_the_format_is_given() {
    let dir = scratch("out_extension");
    let out = dir.join("features.xlsx");
    let out_s = out.to_str().expect("utf8");
    let o = eeg(&["process", "fixtures/test_subsecond.edf", "--out", out_s]);
    assert_bad_input(
        &o,
        &[
            &format!("--out {out_s}: unknown extension .xlsx"),
            ".jsonl",
            ".csv",
            ".parquet",
            "--format",
        ],
    );
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
    // Named explicitly, the format is written whatever the name.
    let o = eeg(&[
        "process",
        "fixtures/test_subsecond.edf",
        "--out",
        out_s,
        "--format",
        "jsonl",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).expect("written");
    assert_eq!(text.lines().count(), 695);
}

#[test]
fn report_of_a_table_names_every_input_it_reads() {
    let dir = scratch("report_of_table");
    for table in ["records.csv", "records.parquet"] {
        let path = dir.join(table);
        let path_s = path.to_str().expect("utf8");
        let o = eeg(&[
            "process",
            "fixtures/test_subsecond.edf",
            "--out",
            path_s,
            "-q",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let page = dir.join("page.html");
        let o = eeg(&["report", path_s, "--out", page.to_str().expect("utf8")]);
        assert_bad_input(
            &o,
            &[
                &format!("{path_s}: not an EDF/BDF file"),
                "eeg.raw/1 or eeg.processed/1 JSONL",
                "capture of binary eeg.raw/1",
            ],
        );
        assert!(!page.exists());
        // `process` reads no records, and does not offer them.
        let o = eeg(&["process", path_s, "--out", "/dev/null"]);
        assert_bad_input(&o, &["eeg.raw/1 JSONL nor a capture"]);
        assert!(!stderr(&o).contains("eeg.processed/1"), "{}", stderr(&o));
    }
}

#[test]
fn an_output_in_a_missing_directory_names_the_directory() {
    let dir = scratch("missing_dir");
    let missing = dir.join("no_such_dir");
    for flag in ["--out", "--triggers", "--report"] {
        let path = missing.join("a.jsonl");
        let o = eeg(&[
            "process",
            "fixtures/test_subsecond.edf",
            flag,
            path.to_str().expect("utf8"),
            "-q",
        ]);
        let err = stderr(&o);
        // The output cannot be written: exit 1, not bad input.
        assert_eq!(o.status.code(), Some(1), "{flag}: {err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "error: {}: cannot create output file: the directory {} does not exist",
                path.display(),
                missing.display()
            ),
            "{flag}"
        );
    }
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
}

/// The README's synopsis names every command and every flag `--help` lists, so that it stays
/// true as flags come and go.
#[test]
fn the_readme_synopsis_names_every_command_and_flag() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let synopsis = readme
        .split("## Command line\n```\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a synopsis under ## Command line");
    let help = |args: &[&str]| {
        let o = eeg(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let commands: Vec<String> = help(&["--help"])
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 7, "{commands:?}");
    for command in &commands {
        assert!(
            synopsis.contains(&format!("eeg-pipeline {command} ")),
            "the synopsis lacks the command {command}"
        );
        for line in help(&[command, "--help"]).lines() {
            // Flag lines: `  -q, --quiet  ...` or `      --out <FILE>  ...`.
            let line = line.trim_start();
            if !line.starts_with('-') {
                continue;
            }
            let Some(at) = line.find("--") else { continue };
            let name: String = line[at..]
                .chars()
                .take_while(|c| *c == '-' || c.is_ascii_alphanumeric())
                .collect();
            if name == "--help" || name == "--version" {
                continue;
            }
            assert!(
                synopsis.contains(&format!("{name} ")) || synopsis.contains(&format!("{name}]")),
                "the synopsis lacks {command} {name}"
            );
        }
    }
}

/// One `eeg.raw/1` line of `channels` channels at `fs` Hz with two samples each: the 20 KB
/// message that, unlimited, made a session reserve gigabytes.
fn wide_line(channels: usize, fs: f64) -> String {
    let names: Vec<String> = (0..channels).map(|c| format!("\"C{c}\"")).collect();
    let rows = vec!["[1.0,2.0]"; channels].join(",");
    format!(
        "{{\"schema\":\"eeg.raw/1\",\"session_id\":\"wide\",\"device_id\":\"d\",\"seq\":0,\"start_ms\":0,\"sample_rate_hz\":{fs},\"channels\":[{}],\"samples\":[{rows}]}}\n",
        names.join(",")
    )
}

#[test]
fn a_session_beyond_the_limits_is_bad_input_naming_the_limit_and_leaves_nothing() {
    let dir = scratch("beyond_limits");
    let out = dir.join("out.jsonl");
    let out_arg = out.to_str().expect("utf8");
    // 1,024 channels at 100 kHz: within the rate and channel limits, over the state limit.
    let wide = dir.join("wide.jsonl");
    std::fs::write(&wide, wide_line(1024, 100_000.0)).expect("write");
    let o = eeg(&["process", wide.to_str().expect("utf8"), "--out", out_arg]);
    assert_bad_input(
        &o,
        &[
            "wide.jsonl",
            "session 'wide'",
            "1024 channels at 100000 Hz with a 4 s window need",
            "above limits.max_session_state_mib = 1024; raise limits.max_session_state_mib in the config file",
        ],
    );
    assert!(!out.exists(), "no output left behind");
    // An EDF with more signals than sessions may have channels.
    let many = dir.join("many.edf");
    edf_plus_d(&many, 1025, 2, 99, 0);
    let o = eeg(&["process", many.to_str().expect("utf8"), "--out", out_arg]);
    assert_bad_input(
        &o,
        &[
            "many.edf",
            "1025 channels, above limits.max_channels = 1024",
        ],
    );
    assert!(!out.exists(), "no output left behind");
    // A record duration edited to 1.2 ms: 128 samples in it make 106,667 Hz.
    let fast = dir.join("fast.edf");
    edf_plus_d(&fast, 2, 2, 99, 0);
    let mut bytes = std::fs::read(&fast).expect("read");
    bytes[244..252].copy_from_slice(b"0.0012  ");
    std::fs::write(&fast, bytes).expect("write");
    let o = eeg(&["process", fast.to_str().expect("utf8"), "--out", out_arg]);
    assert_bad_input(
        &o,
        &[
            "fast.edf",
            "sample rate 106666.66",
            "above limits.max_sample_rate_hz = 100000",
        ],
    );
    assert!(!out.exists(), "no output left behind");
}

/// Raised limits accept the wide session, and it holds memory for the samples that came,
/// not for the 3.2 GB its shape declares.
#[cfg(target_os = "linux")]
#[test]
fn raised_limits_accept_a_wide_session_that_holds_only_what_arrived() {
    let dir = scratch("raised_limits");
    let wide = dir.join("wide.jsonl");
    std::fs::write(&wide, wide_line(1024, 100_000.0)).expect("write");
    let cfg = dir.join("limits.toml");
    std::fs::write(&cfg, "[limits]\nmax_session_state_mib = 4096\n").expect("write");
    let out = dir.join("out.jsonl");
    let kb = peak_rss_of(Command::new(env!("CARGO_BIN_EXE_eeg-pipeline")).args([
        "process",
        wide.to_str().expect("utf8"),
        "--config",
        cfg.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]));
    assert!(kb < 64 * 1024, "peak RSS {kb} kB");
    assert_eq!(std::fs::read(&out).expect("output").len(), 0, "no window");
}

/// An EDF+C file whose time-keeping annotations contradict its record duration (here the
/// duration field edited to 0.01 s) cannot be placed in time: bad input naming the first
/// record that does not follow, rather than a restart and a warning at every record.
#[test]
fn an_edf_plus_c_whose_records_do_not_follow_each_other_is_bad_input() {
    let dir = scratch("edf_plus_c_gaps");
    let mut bytes = std::fs::read(fixture("test_subsecond.edf")).expect("read");
    assert_eq!(&bytes[192..197], b"EDF+C");
    let duration = std::str::from_utf8(&bytes[244..252])
        .expect("ascii")
        .to_string();
    assert_eq!(duration.trim(), "1");
    bytes[244..252].copy_from_slice(b"0.01    ");
    let path = dir.join("contradicting.edf");
    std::fs::write(&path, &bytes).expect("write");
    let out = dir.join("out.jsonl");
    let o = eeg(&[
        "process",
        path.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_bad_input(
        &o,
        &[
            "contradicting.edf: data record 1 starts at 1 s, not 0.01 s",
            "the file is EDF+C (continuous)",
            "record duration (0.01 s)",
        ],
    );
    assert!(!out.exists(), "no output left behind");
}

/// An EDF+D file with a gap at every record restarts its sessions at every record but logs
/// the first gaps only: its log does not grow with the file.
#[test]
fn gaps_at_every_record_are_counted_not_logged_each() {
    let dir = scratch("edf_plus_d_every_record");
    let path = dir.join("gappy.edf");
    edf_plus_d(&path, 2, 40, 99, 0);
    // Every record's onset one second later than the last one ends: a gap at each.
    let mut bytes = std::fs::read(&path).expect("read");
    let (header, record) = (256 * 4, 2 * 128 * 2 + 2 * 32);
    for k in 1..40usize {
        let at = header + k * record + 2 * 128 * 2;
        let old = format!("+{k}\x14\x14\0");
        assert_eq!(&bytes[at..at + old.len()], old.as_bytes(), "record {k}");
        let mut tal = format!("+{}\x14\x14\0", 2 * k).into_bytes();
        tal.resize(2 * 32, 0);
        bytes[at..at + tal.len()].copy_from_slice(&tal);
    }
    std::fs::write(&path, &bytes).expect("write");
    let o = eeg(&["process", path.to_str().expect("utf8")]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("sessions restart").count(), 10, "{err}");
    assert_eq!(err.matches("further gaps are counted").count(), 1, "{err}");
    assert!(err.contains("39 reset(s)"), "{err}");
}

#[test]
fn process_cuts_epochs_from_a_config_and_writes_events_and_averages() {
    let dir = scratch("epochs");
    let cfg = dir.join("epochs.toml");
    std::fs::write(
        &cfg,
        "[epochs]\ntmin_s = -0.2\ntmax_s = 0.6\nreject_uv = 150\nlabels = [\"target\"]\n\
         [epochs.components]\np300 = { window_s = [0.25, 0.45], peak = \"pos\" }\n",
    )
    .expect("write");
    let (epochs, events, erp) = (dir.join("e.jsonl"), dir.join("ev.tsv"), dir.join("erp.csv"));
    let o = eeg(&[
        "process",
        "fixtures/synthetic_erp.edf",
        "--config",
        cfg.to_str().expect("utf8"),
        "--out",
        "/dev/null",
        "--epochs",
        epochs.to_str().expect("utf8"),
        "--events-out",
        events.to_str().expect("utf8"),
        "--erp",
        erp.to_str().expect("utf8"),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let records: Vec<Value> = std::fs::read_to_string(&epochs)
        .expect("epochs written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    // The 21 targets only; 3 blinks over 150 µV rejected.
    assert_eq!(records.len(), 21);
    assert!(records.iter().all(|r| r["event"]["label"] == "target"));
    assert_eq!(
        records.iter().filter(|r| r["status"] == "rejected").count(),
        3
    );
    assert!(
        records[1]["components"]["p300"]["peak_ms"][2]
            .as_f64()
            .is_some()
    );
    // Every annotation placed, the standards and buttons too.
    let placed = std::fs::read_to_string(&events).expect("events written");
    assert_eq!(placed.lines().count(), 1 + 84);
    let averages = std::fs::read_to_string(&erp).expect("averages written");
    // target × 8 channels × 206 samples (−0.2 to 0.6 s at 256 Hz), and a header.
    assert_eq!(averages.lines().count(), 1 + 8 * 206);
}

#[test]
fn an_events_file_goes_with_a_recording_and_a_bad_one_is_named() {
    let dir = scratch("events_tsv");
    let tsv = dir.join("events.tsv");
    std::fs::write(
        &tsv,
        "onset\tduration\ttrial_type\n2.0\t0\tgo\n1.0\t0\tgo\n",
    )
    .expect("write");
    let o = eeg(&[
        "process",
        "fixtures/synthetic_erp.edf",
        "--out",
        "/dev/null",
        "--events",
        tsv.to_str().expect("utf8"),
        "--epochs",
        dir.join("e.jsonl").to_str().expect("utf8"),
    ]);
    assert_bad_input(&o, &["events.tsv", "line 3", "sort the file by onset"]);
    assert!(!dir.join("e.jsonl").exists());
    let jsonl = dir.join("in.jsonl");
    std::fs::write(
        &jsonl,
        r#"{"schema":"eeg.raw/1","session_id":"s","device_id":"d","seq":0,"start_ms":0,"sample_rate_hz":250.0,"channels":["A"],"samples":[[1.0]]}"#,
    )
    .expect("write");
    let o = eeg(&[
        "process",
        jsonl.to_str().expect("utf8"),
        "--events",
        tsv.to_str().expect("utf8"),
    ]);
    assert_bad_input(&o, &["in.jsonl", "--events", "eeg.event/1"]);
}
