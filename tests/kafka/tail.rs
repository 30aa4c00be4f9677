//! `tail`: what the service publishes, as records, a table for people or envelopes with
//! where and when, from the start or live, and never as a member of the service's group.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::support::*;

/// `tail ARGS` against the test's topics, to its end; returns its standard output.
fn tail(t: &Topics, args: &[&str]) -> String {
    String::from_utf8(cli_ok(t, "tail", args).stdout).unwrap()
}

#[test]
fn tail_prints_what_the_service_publishes_and_never_joins_its_group() {
    let t = Topics::create("tail");
    let producer: BaseProducer = client().create().unwrap();
    producer
        .send(BaseRecord::to(&t.raw).key("junk").payload("not json"))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    for id in ["tail-a", "tail-b"] {
        replay_fixture(&t, id, &[]);
    }
    let want = fixture_records("tail-a");
    let service = Service::start(&t, "a");
    published(&t, 2 * want.len());
    service.stop_cleanly();
    let committed_before = committed(&t);

    // Everything of session tail-a that is on the broker.
    let session_a = |format: &[&str]| {
        let from_start = [
            "--from-beginning",
            "--session",
            "tail-a",
            "--idle-exit",
            "3",
        ];
        tail(&t, &[&from_start[..], format].concat())
    };
    // One session's records, byte for byte what process computes.
    let jsonl = session_a(&["--format", "jsonl"]);
    let lines: Vec<&[u8]> = jsonl.lines().map(str::as_bytes).collect();
    assert_eq!(lines.len(), want.len());
    assert!(lines.iter().zip(&want).all(|(g, w)| g == w));

    // A person's view: one line per window, in order, with each channel's summary.
    let table = session_a(&["--format", "table"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), want.len());
    for (i, (row, w)) in rows.iter().zip(&want).enumerate() {
        let v: serde_json::Value = serde_json::from_slice(w).unwrap();
        assert!(row.contains(&format!("  tail-a  w{i}")), "{row}");
        let c = &v["channels"][0];
        let alpha = c["relative_power"]["alpha"].as_f64().unwrap();
        assert!(row.contains("| Fp1 "), "{row}");
        assert!(row.contains(&format!(" a={alpha:.2} ")), "{row} vs {alpha}");
        let word = if c["quality"]["good"] == true {
            " ok"
        } else {
            ""
        };
        assert!(row.ends_with(word), "{row}");
    }

    // In envelopes: the same records, each with where and when it was written and read.
    let before_tail = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let enveloped = session_a(&["--format", "jsonl", "--envelope"]);
    let entries: Vec<serde_json::Value> = enveloped
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), want.len());
    let mut offsets = BTreeSet::new();
    for (e, w) in entries.iter().zip(&want) {
        let value: serde_json::Value = serde_json::from_slice(w).unwrap();
        assert_eq!(e["value"], value);
        assert_eq!(e["key"], "tail-a");
        let (written, read) = (
            e["timestamp_ms"].as_i64().unwrap(),
            e["received_ms"].as_i64().unwrap(),
        );
        assert!(written <= before_tail && before_tail <= read, "{e}");
        assert!(offsets.insert((
            e["partition"].as_i64().unwrap(),
            e["offset"].as_i64().unwrap()
        )));
    }
    // The poison on the raw topic is not JSON: it comes as text.
    let raw = tail(
        &t,
        &[
            "--from-beginning",
            "--topic",
            "raw",
            "--session",
            "junk",
            "--idle-exit",
            "3",
            "--format",
            "jsonl",
            "--envelope",
        ],
    );
    let junk: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    assert_eq!(junk["value_text"], "not json", "{raw}");

    // --max stops early, and both sessions are there without --session.
    let some = tail(&t, &["--from-beginning", "--max", "7", "--format", "jsonl"]);
    assert_eq!(some.lines().count(), 7);

    // Trigger events, and the dead letter with its reason.
    let events = tail(
        &t,
        &[
            "--from-beginning",
            "--topic",
            "triggers",
            "--session",
            "tail-b",
            "--idle-exit",
            "3",
            "--format",
            "table",
        ],
    );
    assert!(!events.is_empty());
    assert!(
        events.lines().all(|l| l.contains("tail-b  TRIGGER ")),
        "{events}"
    );
    let dead = tail(
        &t,
        &[
            "--from-beginning",
            "--topic",
            "dlq",
            "--idle-exit",
            "3",
            "--format",
            "table",
        ],
    );
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(
        dead.contains(&format!("{}/", t.raw)) && dead.contains("key junk: "),
        "{dead}"
    );
    let raw = tail(
        &t,
        &[
            "--from-beginning",
            "--topic",
            "raw",
            "--session",
            "tail-b",
            "--max",
            "1",
            "--format",
            "table",
        ],
    );
    assert!(
        raw.contains("tail-b  seq 0: 1 channels x 32 samples at 128.0 Hz"),
        "{raw}"
    );

    // Reading moved none of the group's offsets: tail commits nothing.
    assert_eq!(committed(&t), committed_before);

    // Live: new messages only, as they arrive.
    let mut cmd = Command::new(BIN);
    cmd.args([
        "tail",
        "--session",
        "tail-c",
        "--idle-exit",
        "20",
        "--max",
        "3",
        "--format",
        "jsonl",
    ])
    .stdout(Stdio::piped());
    t.env(&mut cmd);
    let live = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let service = Service::start(&t, "b");
    replay_fixture(&t, "tail-c", &[]);
    let out = live.wait_with_output().unwrap();
    service.stop_cleanly();
    let got: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let indices: Vec<u64> = got
        .iter()
        .map(|v| v["window_index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2]);
    assert!(got.iter().all(|v| v["session_id"] == "tail-c"));
}
