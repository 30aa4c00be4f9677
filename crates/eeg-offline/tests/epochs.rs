//! `process --epochs` against MNE: the epochs `mne.Epochs` selects, rejects and drops, their
//! samples, component values, ERD and per-label averages, on the same recordings
//! (`fixtures/reference/epochs.json`, made by `scripts/reference/gen_epochs.py` with MNE
//! 1.13.2 on the signal filtered as the processing definition says).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use eeg_dsp::epochs::{Component, EpochConfig, ErdConfig, Peak};
use eeg_offline::{Input, Options, Outputs, Target, process};
use eeg_session::config::EpochsConfig;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An empty directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = root().join("target/eeg-offline-tests").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn reference() -> Value {
    let text = std::fs::read_to_string(root().join("fixtures/reference/epochs.json"))
        .expect("fixtures/reference/epochs.json");
    serde_json::from_str(&text).expect("epochs.json is JSON")
}

fn case<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("case {name}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number, got {v}"))
}

fn pair(v: &Value) -> [f64; 2] {
    [f(&v[0]), f(&v[1])]
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

/// The case's `[epochs]` as the config file would give it.
fn epochs_config(c: &Value) -> EpochsConfig {
    let e = &c["epochs"];
    let components = e["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Component {
            name: c["name"].as_str().unwrap().into(),
            window_s: pair(&c["window_s"]),
            peak: match c["peak"].as_str().unwrap() {
                "pos" => Peak::Pos,
                "neg" => Peak::Neg,
                _ => Peak::Abs,
            },
        })
        .collect();
    EpochsConfig {
        epoch: EpochConfig {
            tmin_s: f(&e["tmin_s"]),
            tmax_s: f(&e["tmax_s"]),
            baseline_s: Some(pair(&e["baseline_s"])),
            reject_uv: e["reject_uv"].as_f64(),
            flat_uv: e["flat_uv"].as_f64(),
            components,
            erd: (!e["erd"].is_null()).then(|| ErdConfig {
                reference_s: pair(&e["erd"]["reference_s"]),
                active_s: pair(&e["erd"]["active_s"]),
            }),
        },
        labels: Some(
            e["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect(),
        ),
        include_samples: true,
    }
}

/// Runs `process --epochs` on the case's file; the records by onset sample.
fn run(c: &Value, test: &str) -> HashMap<u64, Value> {
    let dir = scratch(test);
    let out = dir.join("epochs.jsonl");
    let mut options = Options::new(Input::File(root().join(c["file"].as_str().unwrap())));
    options.epochs = Some(epochs_config(c));
    // More threads than one would split the channels; epochs must still see them all.
    options.threads = 2;
    let mut outputs = Outputs::default();
    outputs.epochs = Some(Target::File(out.clone()));
    process(&options, &outputs, &|_| {}).expect("process");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut by_sample = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["schema"], "eeg.epoch/1");
        let sample = v["onset_sample"].as_u64().expect("an onset sample");
        assert!(
            by_sample.insert(sample, v).is_none(),
            "two epochs at sample {sample}"
        );
    }
    by_sample
}

/// The largest error relative to `max(|want|, 1 µV)` seen, checked against `tol`.
#[derive(Default)]
struct Worst(f64);

impl Worst {
    fn check(&mut self, got: f64, want: f64, tol: f64, what: &str) {
        let err = (got - want).abs() / want.abs().max(1.0);
        assert!(err <= tol, "{what}: {got} against MNE's {want}");
        self.0 = self.0.max(err);
    }
}

fn compare(name: &str, test: &str) -> HashMap<u64, Value> {
    let r = reference();
    let c = case(&r, name);
    let records = run(c, test);
    let channels: Vec<&str> = c["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let events = c["events"].as_array().unwrap();
    // One record per event of an epoched label, and no other.
    assert_eq!(records.len(), events.len(), "{name}: records");
    let mut worst = Worst::default();
    let mut worst_erd = Worst::default();
    for (i, e) in events.iter().enumerate() {
        let sample = e["sample"].as_u64().unwrap();
        let rec = records
            .get(&sample)
            .unwrap_or_else(|| panic!("{name}: no epoch at MNE's sample {sample} ({e})"));
        assert_eq!(rec["event"]["label"], e["label"], "{name} event {i}");
        assert_eq!(
            rec["status"], e["status"],
            "{name} event {i} at {sample}: {rec}"
        );
        if e["status"] == "rejected" {
            assert_eq!(
                rec["drop"], e["drop"],
                "{name} event {i}: channels at fault"
            );
        }
        assert_eq!(
            rec["first_sample"].as_i64().unwrap(),
            sample as i64 + c["first_sample"].as_i64().unwrap()
        );
    }
    for v in c["values"].as_array().unwrap() {
        let e = &events[v["event"].as_u64().unwrap() as usize];
        let rec = &records[&e["sample"].as_u64().unwrap()];
        for (key, ours) in [
            ("mean_uv", "mean_uv"),
            ("peak_uv", "peak_uv"),
            ("peak_ms", "peak_ms"),
        ] {
            for (comp, want) in v[key].as_object().unwrap() {
                let got = floats(&rec["components"][comp][ours]);
                for (ch, (g, w)) in got.iter().zip(floats(want)).enumerate() {
                    worst.check(
                        *g,
                        w,
                        1e-9,
                        &format!("{name} at {}: {comp} {key} {}", e["sample"], channels[ch]),
                    );
                }
            }
        }
        if let Some(erd) = v["erd_pct"].as_object() {
            for (band, want) in erd {
                let got = floats(&rec["erd"][band]["change_pct"]);
                for (ch, (g, w)) in got.iter().zip(floats(want)).enumerate() {
                    // Flat epochs hold reference powers near 1e-10 µV²: their ratio is
                    // conditioned to some 1e-8 (scripts/reference/README.md).
                    worst_erd.check(
                        *g,
                        w,
                        1e-6,
                        &format!("{name} at {}: ERD {band} {}", e["sample"], channels[ch]),
                    );
                }
            }
        }
    }
    for s in c["samples_uv"].as_array().unwrap() {
        let e = &events[s["event"].as_u64().unwrap() as usize];
        let rec = &records[&e["sample"].as_u64().unwrap()];
        for (ch, (got, want)) in rec["samples_uv"]
            .as_array()
            .unwrap()
            .iter()
            .zip(s["data"].as_array().unwrap())
            .enumerate()
        {
            for (k, (g, w)) in floats(got).iter().zip(floats(want)).enumerate() {
                worst.check(
                    *g,
                    w,
                    1e-9,
                    &format!("{name} at {}: sample {k} of {}", e["sample"], channels[ch]),
                );
            }
        }
    }
    // The ERP of each label: the mean of its kept epochs' samples.
    for (label, erp) in c["erp"].as_object().unwrap() {
        let kept: Vec<&Value> = records
            .values()
            .filter(|r| r["event"]["label"] == *label && r["status"] == "ok")
            .collect();
        assert_eq!(kept.len() as u64, erp["count"].as_u64().unwrap(), "{label}");
        if kept.is_empty() {
            continue;
        }
        for (ch, want) in erp["data_uv"].as_array().unwrap().iter().enumerate() {
            let want = floats(want);
            for (k, w) in want.iter().enumerate() {
                let mean = kept.iter().map(|r| f(&r["samples_uv"][ch][k])).sum::<f64>()
                    / kept.len() as f64;
                worst.check(mean, *w, 1e-9, &format!("{name}: ERP {label} {ch} {k}"));
            }
        }
    }
    eprintln!(
        "{name}: {} epochs as MNE's; largest relative error {:.1e} (ERD {:.1e})",
        records.len(),
        worst.0,
        worst_erd.0
    );
    records
}

#[test]
fn a_synthetic_recording_epochs_as_mne_epochs_it() {
    compare("synthetic_erp", "synthetic_erp");
}

#[test]
fn a_real_recordings_annotations_epoch_as_mne_epochs_them() {
    compare("test_subsecond", "test_subsecond");
}

#[test]
fn a_bdf_status_channel_gives_the_events_mne_find_events_finds() {
    // Codes under a constant high byte (BioSemi's system bits), rises from 0 and from a
    // smaller code, a fall to a smaller code (no event), a code held one sample.
    let records = compare("synthetic_status", "synthetic_status");
    let r = reference();
    let want: Vec<(u64, i64)> = case(&r, "synthetic_status")["find_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_u64().unwrap(), e[2].as_i64().unwrap()))
        .collect();
    let mut got: Vec<(u64, i64)> = records
        .iter()
        .map(|(s, r)| (*s, r["event"]["value"].as_i64().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert!(
        records
            .values()
            .all(|r| r["event"]["source"] == "bdf-status"
                && r["event"]["label"].as_str() == Some(&*r["event"]["value"].to_string()))
    );
}

#[test]
fn the_injected_p300_is_found_where_it_was_put() {
    // A positive bump of 10 µV at 300 ms (σ 40 ms) on Pz after every target; the causal
    // 1–45 Hz band-pass leaves 4.67 µV at 289 ms of it without noise, and the 17 kept
    // targets average 3.93 µV at 293.0 ms (MNE finds the same).
    let r = reference();
    let c = case(&r, "synthetic_erp");
    let records = run(c, "p300");
    let pz = 2;
    let kept: Vec<&Value> = records
        .values()
        .filter(|r| r["event"]["label"] == "target" && r["status"] == "ok")
        .collect();
    assert_eq!(kept.len(), 17);
    let first = c["first_sample"].as_i64().unwrap();
    let (mut best, mut at) = (f64::MIN, 0);
    for k in 0..c["n_samples"].as_u64().unwrap() as usize {
        let t = (first + k as i64) as f64 / 256.0;
        if !(0.25..=0.45).contains(&t) {
            continue;
        }
        let mean = kept.iter().map(|r| f(&r["samples_uv"][pz][k])).sum::<f64>() / kept.len() as f64;
        if mean > best {
            (best, at) = (mean, k);
        }
    }
    let latency_ms = (first + at as i64) as f64 / 256.0 * 1000.0;
    assert!((best - 3.934).abs() < 0.001, "P300 at Pz: {best} µV");
    assert_eq!(latency_ms, 292.96875, "P300 latency");
}

/// Runs `process --epochs` on `input` with the case's config; the records by onset sample.
fn run_on(c: &Value, input: PathBuf, dir: &Path) -> HashMap<u64, Value> {
    let out = dir.join(format!(
        "{}.epochs.jsonl",
        input.file_name().unwrap().to_string_lossy()
    ));
    let mut options = Options::new(Input::File(input));
    options.epochs = Some(epochs_config(c));
    let mut outputs = Outputs::default();
    outputs.epochs = Some(Target::File(out.clone()));
    process(&options, &outputs, &|_| {}).expect("process");
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["onset_sample"].as_u64().unwrap(), v)
        })
        .collect()
}

#[test]
fn events_sent_as_messages_before_or_after_their_samples_epoch_as_the_recordings_annotations() {
    // The recording as a device gateway would send it: 32-sample eeg.raw/1 batches, and each
    // annotation as an eeg.event/1 with its onset in Unix ms, sent three batches before the
    // one holding it or six after, in turn.
    let r = reference();
    let c = case(&r, "synthetic_erp");
    let dir = scratch("epochs_from_messages");
    let edf = root().join(c["file"].as_str().unwrap());
    let mut reader = eeg_edf::EdfReader::open(&edf).unwrap();
    let header = reader.header().clone();
    let t0 = header.start_unix_ms();
    let fs = 256.0;
    let labels: Vec<String> = header
        .signals
        .iter()
        .filter(|s| !s.is_annotation)
        .map(|s| s.label.clone())
        .collect();
    let mut signal: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    let mut notes: Vec<(f64, String)> = Vec::new();
    let mut record = eeg_edf::Record::default();
    while reader.read_record(&mut record).unwrap() {
        for (ch, s) in signal.iter_mut().enumerate() {
            s.extend_from_slice(record.signal(ch));
        }
        reader
            .annotations(|a| notes.push((a.onset_s, a.text.into_owned())))
            .unwrap();
    }
    let n = signal[0].len();
    let batches = n / 32;
    let mut before: Vec<Vec<String>> = vec![Vec::new(); batches + 1];
    for (i, (onset_s, label)) in notes.iter().enumerate() {
        let event = eeg_schema::Event {
            session_id: "synthetic_erp".into(),
            event_id: format!("stim-{i}"),
            onset: eeg_schema::Onset::UnixMs(t0 as f64 + onset_s * 1000.0),
            duration_s: 0.0,
            label: label.clone(),
            value: None,
            source: "app".into(),
        };
        let holding = ((onset_s * fs) as usize / 32).min(batches - 1);
        let at = if i % 2 == 0 {
            holding.saturating_sub(3)
        } else {
            (holding + 6).min(batches)
        };
        before[at].push(event.to_json());
        // A copy of every fifth, sent again later: dropped by its id.
        if i % 5 == 0 {
            before[(at + 2).min(batches)].push(event.to_json());
        }
    }
    let mut text = String::new();
    for b in 0..=batches {
        for line in &before[b] {
            text.push_str(line);
            text.push('\n');
        }
        if b == batches {
            break;
        }
        let parts = eeg_schema::RawBatchParts {
            session_id: "synthetic_erp".into(),
            device_id: "gateway".into(),
            user_id: None,
            seq: b as u64,
            start_ms: t0 + (b as i64 * 32 * 1000) / 256,
            sample_rate_hz: fs,
            channels: labels.clone(),
            samples: signal
                .iter()
                .flat_map(|s| s[b * 32..(b + 1) * 32].iter().copied())
                .collect(),
        };
        let batch = eeg_schema::RawBatch::new(parts, &eeg_schema::Limits::default()).unwrap();
        text.push_str(std::str::from_utf8(&batch.encode()).unwrap());
        text.push('\n');
    }
    let jsonl = dir.join("sent.jsonl");
    std::fs::write(&jsonl, text).unwrap();
    let from_edf = run_on(c, edf, &dir);
    let from_messages = run_on(c, jsonl, &dir);
    assert_eq!(from_messages.len(), from_edf.len());
    for (sample, want) in &from_edf {
        let got = from_messages
            .get(sample)
            .unwrap_or_else(|| panic!("no epoch at sample {sample}"));
        for key in [
            "status",
            "drop",
            "first_sample",
            "components",
            "erd",
            "samples_uv",
        ] {
            assert_eq!(got[key], want[key], "{key} of the epoch at {sample}");
        }
        assert_eq!(got["event"]["label"], want["event"]["label"]);
    }
}

#[test]
fn events_written_as_bids_tsv_read_back_to_the_same_samples_and_epochs() {
    let r = reference();
    let c = case(&r, "synthetic_erp");
    let dir = scratch("epochs_bids");
    let edf = root().join(c["file"].as_str().unwrap());
    // The annotations placed, written as an events.tsv.
    let tsv = dir.join("events.tsv");
    let mut options = Options::new(Input::File(edf.clone()));
    let mut outputs = Outputs::default();
    outputs.events_out = Some(Target::File(tsv.clone()));
    process(&options, &outputs, &|_| {}).expect("process --events-out");
    let text = std::fs::read_to_string(&tsv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("onset\tduration\ttrial_type\tvalue\tsample")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    // Every annotation, the two `button`s too; onsets at their samples.
    assert_eq!(rows.len(), c["events"].as_array().unwrap().len() + 2);
    for (row, e) in rows
        .iter()
        .filter(|r| r[2] != "button")
        .zip(c["events"].as_array().unwrap())
    {
        assert_eq!(row[2], e["label"]);
        assert_eq!(
            row[4].parse::<u64>().unwrap(),
            e["sample"].as_u64().unwrap()
        );
        assert_eq!(
            row[0].parse::<f64>().unwrap(),
            e["sample"].as_f64().unwrap() / 256.0
        );
    }
    // Read back beside the recording: each gives the epoch of its annotation.
    options.events_file = Some(tsv);
    options.epochs = Some(epochs_config(c));
    let out = dir.join("epochs.jsonl");
    let mut outputs = Outputs::default();
    outputs.epochs = Some(Target::File(out.clone()));
    process(&options, &outputs, &|_| {}).expect("process --events");
    let records: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (from_tsv, from_edf): (Vec<&Value>, Vec<&Value>) = records
        .iter()
        .partition(|r| r["event"]["source"] == "events.tsv");
    assert_eq!(from_tsv.len(), from_edf.len());
    assert_eq!(from_edf.len(), c["events"].as_array().unwrap().len());
    for t in &from_tsv {
        let twin = from_edf
            .iter()
            .find(|e| e["onset_sample"] == t["onset_sample"])
            .unwrap_or_else(|| panic!("no annotation at {}", t["onset_sample"]));
        for key in ["status", "drop", "components", "samples_uv"] {
            assert_eq!(t[key], twin[key], "{key} at {}", t["onset_sample"]);
        }
    }
}

#[test]
fn the_averages_and_their_standard_errors_are_mnes() {
    let r = reference();
    let c = case(&r, "synthetic_erp");
    let dir = scratch("epochs_erp");
    let erp = dir.join("erp.csv");
    let mut options = Options::new(Input::File(root().join(c["file"].as_str().unwrap())));
    options.epochs = Some(epochs_config(c));
    let mut outputs = Outputs::default();
    outputs.erp = Some(Target::File(erp.clone()));
    process(&options, &outputs, &|_| {}).expect("process --erp");
    let text = std::fs::read_to_string(&erp).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("session_id,label,channel,time_ms,mean_uv,sem_uv,count,rejected")
    );
    let channels: Vec<&str> = c["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let n = c["n_samples"].as_u64().unwrap() as usize;
    let first = c["first_sample"].as_i64().unwrap();
    let mut worst = Worst::default();
    let mut rows = 0;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let (label, ch) = (
            cells[1],
            channels.iter().position(|c| *c == cells[2]).unwrap(),
        );
        let time_ms: f64 = cells[3].parse().unwrap();
        let k = ((time_ms / 1000.0 * 256.0).round() as i64 - first) as usize;
        assert!(k < n);
        let want = &c["erp"][label];
        assert_eq!(
            cells[6].parse::<u64>().unwrap(),
            want["count"].as_u64().unwrap()
        );
        let mean = cells[4].parse().unwrap();
        let sem = cells[5].parse().unwrap();
        worst.check(
            mean,
            f(&want["data_uv"][ch][k]),
            1e-9,
            &format!("{label} {ch} {k} mean"),
        );
        worst.check(
            sem,
            f(&want["sem_uv"][ch][k]),
            1e-9,
            &format!("{label} {ch} {k} sem"),
        );
        rows += 1;
    }
    // Both labels, every channel and sample.
    assert_eq!(rows, 2 * channels.len() * n);
    eprintln!(
        "ERP and standard error: largest relative error {:.1e}",
        worst.0
    );
}

#[test]
fn epochs_as_a_csv_long_table_hold_the_records_numbers_row_by_row() {
    let r = reference();
    let c = case(&r, "synthetic_erp");
    let records = run(c, "csv_jsonl");
    let dir = scratch("csv_table");
    let out = dir.join("epochs.csv");
    let mut options = Options::new(Input::File(root().join(c["file"].as_str().unwrap())));
    options.epochs = Some(epochs_config(c));
    let mut outputs = Outputs::default();
    outputs.epochs = Some(Target::File(out.clone()));
    process(&options, &outputs, &|_| {}).expect("process");
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let components: Vec<String> = epochs_config(c)
        .epoch
        .components
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert!(!components.is_empty() && header.contains(&"erd.alpha.change_pct".to_string()));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let number = |cell: &str| (!cell.is_empty()).then(|| cell.parse::<f64>().unwrap());
    let json_number = |v: &Value| v.as_f64();
    let mut rows = 0;
    for row in reader.records() {
        let row = row.unwrap();
        rows += 1;
        let sample: u64 = row[col("onset_sample")].parse().unwrap();
        let rec = &records[&sample];
        let ch = rec["channels"]
            .as_array()
            .unwrap()
            .iter()
            .position(|n| n == &row[col("channel")])
            .unwrap();
        assert_eq!(
            row[col("event_id")],
            *rec["event"]["event_id"].as_str().unwrap()
        );
        assert_eq!(row[col("status")], *rec["status"].as_str().unwrap());
        let drop: Vec<&str> = rec["drop"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert_eq!(row[col("drop")], drop.join(";"));
        assert_eq!(number(&row[col("start_ms")]), json_number(&rec["start_ms"]));
        for name in &components {
            for what in ["mean_uv", "peak_uv", "peak_ms"] {
                let got = number(&row[col(&format!("{name}.{what}"))]);
                let want = json_number(&rec["components"][name][what][ch]);
                // The same f64, bit for bit, from either text.
                assert_eq!(
                    got.map(f64::to_bits),
                    want.map(f64::to_bits),
                    "{name}.{what}"
                );
            }
        }
        let got = number(&row[col("erd.alpha.change_pct")]);
        let want = json_number(&rec["erd"]["alpha"]["change_pct"][ch]);
        assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits));
    }
    let channels = records.values().next().unwrap()["channels"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        rows,
        records.len() * channels,
        "a row per epoch and channel"
    );
}
