//! `replay`: a recording into the raw topic as simulated devices, each run a new session
//! unless told its id; what it sends, and how it fails.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_file_replayed_twice_is_two_sessions_and_both_are_published() {
    let t = Topics::create("twice");
    let fixture = fixture();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = cli_ok(
            &t,
            "replay",
            &[fixture.to_str().unwrap(), "--speed", "max", "--quiet"],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        // "FILE: session ID", said at start.
        let id = err
            .lines()
            .find_map(|l| l.split(": session ").nth(1))
            .unwrap_or_else(|| panic!("no session id said: {err}"))
            .to_string();
        assert!(id.starts_with("test_subsecond-"), "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    let service = Service::start(&t, "a");
    let want: Vec<Vec<u8>> = ids.iter().flat_map(|id| fixture_records(id)).collect();
    let got = published(&t, want.len());
    let log = service.stop_cleanly();
    assert_records(&got, &want, &log);
}

#[test]
fn a_recording_replayed_again_under_its_session_id_is_said_once_in_the_log() {
    let t = Topics::create("again");
    replay_fixture(&t, "same", &[]);
    replay_fixture(&t, "same", &[]);
    let per_run = 89344usize.div_ceil(32);
    let service = Service::start(&t, "a");
    let want = fixture_records("same");
    let got = published(&t, want.len());
    // Everything is consumed (the second run is all duplicates) before the service stops.
    service.wait_for_log(
        &format!("{} batches sent again", 10usize.pow(per_run.ilog10())),
        60,
    );
    let log = service.stop_cleanly();
    assert_eq!(
        got.len(),
        want.len(),
        "the second run publishes nothing: {log}"
    );
    let said: Vec<&str> = log.lines().filter(|l| l.contains("'same'")).collect();
    assert!(
        said[0].contains("session 'same' sent seq 0 again (it expects seq 2792 next)")
            && said[0].contains("give the replay a new one"),
        "{said:?}"
    );
    // Then at the 10th, 100th and 1000th only.
    assert_eq!(said.len(), 4, "{said:?}");
}

#[test]
fn replay_cuts_a_recording_into_raw_batches_that_process_reads_back() {
    let t = Topics::create("replay");
    replay_fixture(&t, SESSION, &["--chunk", "50", "--sessions", "2"]);
    // 698 s at 128 Hz = 89344 samples: 1787 messages of up to 50 samples per session, and
    // the recording's four annotations as eeg.event/1 messages, each right after the
    // message that holds its onset.
    let per_session = 89344usize.div_ceil(50);
    let raw = consume(&t.raw, Duration::from_secs(30), |r| {
        r.len() >= 2 * (per_session + 4)
    });
    assert_eq!(raw.len(), 2 * (per_session + 4));
    let is_event = |r: &&Record| {
        serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap()["schema"] == "eeg.event/1"
    };
    let dir = std::env::temp_dir().join(&t.group);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=2 {
        let key = format!("{SESSION}-{i}");
        let all: Vec<&Record> = raw
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .collect();
        let mut labels = Vec::new();
        let mut sent = 0u64;
        for r in &all {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            if v["schema"] == "eeg.event/1" {
                assert_eq!(v["session_id"], key.as_str());
                let onset = v["onset_sample"].as_u64().unwrap();
                assert!(
                    onset < sent && onset + 50 >= sent,
                    "{key}: {v} after sample {sent}"
                );
                labels.push(v["label"].as_str().unwrap().to_string());
            } else {
                sent += v["samples"][0].as_array().unwrap().len() as u64;
            }
        }
        labels.sort();
        assert_eq!(
            labels,
            ["Clip Note", "XLEvent", "XLSpike", "XLSpike"],
            "{key}"
        );
        let mine: Vec<&Record> = all.iter().copied().filter(|r| !is_event(r)).collect();
        assert_eq!(mine.len(), per_session, "{key}");
        for (seq, r) in mine.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            assert_eq!(v["schema"], "eeg.raw/1");
            assert_eq!(v["session_id"], key.as_str());
            assert_eq!(v["seq"].as_u64(), Some(seq as u64), "{key}: in order");
            let n = v["samples"][0].as_array().unwrap().len();
            let want = if seq + 1 < per_session {
                50
            } else {
                89344 - 50 * seq
            };
            assert_eq!(n, want);
        }
        // The captured stream, processed offline, gives the recording's records.
        let jsonl = dir.join(format!("{key}.jsonl"));
        let mut text = Vec::new();
        for r in &all {
            text.extend_from_slice(&r.payload);
            text.push(b'\n');
        }
        std::fs::write(&jsonl, text).unwrap();
        let from_stream = process_lines(&jsonl, &[]);
        let from_file = fixture_records(&key);
        assert_eq!(from_stream.len(), from_file.len());
        for (a, b) in from_stream.iter().zip(&from_file) {
            assert!(a == b, "{key}: {}", String::from_utf8_lossy(a));
        }
    }
}

#[test]
fn replay_names_an_unreachable_broker_within_the_connect_timeout() {
    let port = free_port();
    let started = Instant::now();
    let o = Command::new(BIN)
        .arg("replay")
        .arg(fixture())
        .args(["--speed", "max", "--connect-timeout-s", "2"])
        .env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(4), "{took:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(&format!("error: cannot reach Kafka at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(lines[0].contains("Connection refused"), "{err}");
}

#[test]
fn replay_reports_bad_input_alone_without_the_messages_it_purges() {
    let t = Topics::create("replay-bad");
    let line = |seq: u64| {
        let row: Vec<String> = (0..32).map(|i| format!("{}.5", (seq + i) % 7)).collect();
        format!(
            "{{\"schema\":\"eeg.raw/1\",\"session_id\":\"bad\",\"device_id\":\"d\",\"seq\":{seq},\"start_ms\":{},\"sample_rate_hz\":128.0,\"channels\":[\"A\"],\"samples\":[[{}]]}}",
            1_000_000 + seq * 250,
            row.join(",")
        )
    };
    // Many good messages (still queued in the producer when the bad line is read), then one
    // that is not a raw batch.
    let mut text: Vec<String> = (0..500).map(line).collect();
    text.push("{\"schema\":\"eeg.raw/1\",\"session_id\":\"bad\"}".into());
    let input = std::env::temp_dir().join(format!("{}-bad.jsonl", t.group));
    std::fs::write(&input, text.join("\n")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("replay")
        .arg(&input)
        .args(["--speed", "max", "--quiet"]);
    t.env(&mut cmd);
    let o = cmd.output().unwrap();
    let _ = std::fs::remove_file(&input);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        !err.contains("PurgeQueue") && !err.contains("Purged"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("line 501"), "{err}");
}
