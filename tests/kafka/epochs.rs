//! Events and epochs through the service: `eeg.event/1` messages beside a session's batches
//! (JSON and binary, before and after their samples, copies), and on the epochs topic the
//! records `process --epochs` cuts from the same messages, through a SIGKILL and a restore
//! in the middle of the stream.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use eeg_schema::{Event, Limits, Onset, RawBatch, RawBatchParts};

use crate::support::*;

const SESSION: &str = "ev";
const BATCHES: u64 = 240;
const T0: i64 = 1_700_000_000_000;

/// Batch `seq`: two channels of 64 samples at 256 Hz (0.25 s), a 10 Hz and a 3 Hz wave whose
/// amplitudes change every second, so that epochs differ.
fn batch(seq: u64) -> RawBatch {
    let samples = (0..2)
        .flat_map(|ch| {
            (0..64u64).map(move |i| {
                let n = seq * 64 + i;
                let t = n as f64 / 256.0;
                let a = 5.0 + (n / 256 % 7) as f64 * 3.0;
                a * (2.0 * std::f64::consts::PI * 10.0 * t + ch as f64).sin()
                    + 8.0 * (2.0 * std::f64::consts::PI * 3.0 * t).cos()
            })
        })
        .collect();
    let parts = RawBatchParts {
        session_id: SESSION.into(),
        device_id: "d".into(),
        user_id: None,
        seq,
        start_ms: T0 + seq as i64 * 250,
        sample_rate_hz: 256.0,
        channels: vec!["Cz".into(), "Pz".into()],
        samples,
    };
    RawBatch::new(parts, &Limits::default()).unwrap()
}

/// Event `k`, at `k` s + 370 ms: given in ms, or every fifth as a sample index.
fn event(k: u64) -> Event {
    let onset = if k.is_multiple_of(5) {
        Onset::Sample(k * 256 + 95)
    } else {
        Onset::UnixMs(T0 as f64 + k as f64 * 1000.0 + 370.25)
    };
    Event {
        session_id: SESSION.into(),
        event_id: format!("stim-{k}"),
        onset,
        duration_s: 0.0,
        label: if k.is_multiple_of(3) {
            "target"
        } else {
            "standard"
        }
        .into(),
        value: Some(k as i64 % 3),
        source: "app".into(),
    }
}

/// One message of the raw topic: its payload and content type (none: JSON).
struct Msg {
    payload: Vec<u8>,
    content_type: Option<&'static str>,
    /// The same message as a JSON line, for `process`.
    line: String,
}

/// The session's messages in the order they are sent: every batch, and 50 events, some
/// before the batch that holds their onset, most after it, a few twice; every fourth event
/// binary.
fn messages() -> Vec<Msg> {
    let mut out = Vec::new();
    for seq in 0..BATCHES {
        let json = batch(seq).encode();
        out.push(Msg {
            line: String::from_utf8(json.clone()).unwrap(),
            payload: json,
            content_type: None,
        });
        for k in 1..=50u64 {
            // The batch holding event k's onset is 4k + 1; early ones go three batches before.
            let sent_after = if k.is_multiple_of(3) {
                4 * k - 2
            } else {
                4 * k + 2
            };
            if seq != sent_after {
                continue;
            }
            let e = event(k);
            let copies = if k.is_multiple_of(7) { 2 } else { 1 };
            for _ in 0..copies {
                let (payload, content_type) = if k.is_multiple_of(4) {
                    let mut buf = Vec::new();
                    e.encode_protobuf(&mut buf);
                    (buf, Some(eeg_schema::EVENT_PROTOBUF_CONTENT_TYPE))
                } else {
                    (e.to_json().into_bytes(), None)
                };
                out.push(Msg {
                    payload,
                    content_type,
                    line: e.to_json(),
                });
            }
        }
    }
    out
}

fn send(t: &Topics, msgs: &[Msg]) {
    let producer: BaseProducer = client_at(&t.bootstrap).create().unwrap();
    for m in msgs {
        let mut record = BaseRecord::to(&t.raw).key(SESSION).payload(&m.payload);
        if let Some(ct) = m.content_type {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(ct),
            }));
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

const CONFIG: &str = "[epochs]
tmin_s = -0.2
tmax_s = 0.6
reject_uv = 45.0
[epochs.components]
p300 = [0.25, 0.5]
[epochs.erd]
reference_s = [-0.2, 0.0]
active_s = [0.4, 0.6]
";

fn scratch(t: &Topics, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", t.group))
}

#[test]
fn epochs_are_published_as_process_cuts_them_through_a_kill_and_a_restore() {
    let t = Topics::create("epochs");
    let msgs = messages();
    let config = scratch(&t, "epochs.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let input = scratch(&t, "in.jsonl");
    let text: String = msgs.iter().map(|m| format!("{}\n", m.line)).collect();
    std::fs::write(&input, text).unwrap();
    let c = config.to_str().unwrap();
    let want: BTreeSet<Vec<u8>> = epoch_lines(&input, &t, &config, &[]).into_iter().collect();
    // Every event once (copies dropped), kept or rejected: none ends without its samples.
    assert_eq!(want.len(), 50);
    let statuses: BTreeSet<String> = want
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(e).unwrap()["status"].to_string())
        .collect();
    assert!(
        statuses.contains("\"ok\"") && statuses.contains("\"rejected\""),
        "{statuses:?}"
    );

    // The first half, then a crash once a snapshot is on the state topic.
    let half = msgs.len() / 2;
    send(&t, &msgs[..half]);
    let first = Service::start_with(&t, "first", &["--config", c], &[]);
    let seen = consume(&t.epochs, Duration::from_secs(60), |r| r.len() >= 10);
    assert!(seen.len() >= 10, "{}", first.log());
    let snapshots = consume(&t.state, Duration::from_secs(30), |r| !r.is_empty());
    assert!(!snapshots.is_empty(), "{}", first.log());
    first.kill();
    send(&t, &msgs[half..]);
    let second = Service::start_with(&t, "second", &["--config", c], &[]);
    let got = consume(&t.epochs, Duration::from_secs(90), |r| {
        r.iter().map(|x| &x.payload).collect::<BTreeSet<_>>().len() >= want.len()
    });
    let log = second.stop_cleanly();
    assert!(log.contains("session(s) restored"), "{log}");
    assert!(
        got.iter()
            .all(|r| r.key.as_deref() == Some(SESSION.as_bytes()))
    );
    let got: BTreeSet<Vec<u8>> = got.into_iter().map(|r| r.payload).collect();
    let extra: Vec<String> = got
        .difference(&want)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    assert!(extra.is_empty(), "epochs process does not cut: {extra:?}");
    assert_eq!(
        got, want,
        "every epoch published, each copy identical:\n{log}"
    );
}

#[test]
fn replayed_recordings_give_the_epochs_process_cuts_from_their_annotations_and_trigger_codes() {
    // An EDF+ with 82 annotations, its markers sent before their samples; a BDF whose
    // Status channel holds 21 trigger codes, sent as binary after their samples.
    for (file, extra) in [
        ("synthetic_erp.edf", &["--events-early"][..]),
        ("synthetic_status.bdf", &["--encoding", "protobuf"][..]),
    ] {
        let t = Topics::create("replayed-epochs");
        let fixture = root().join("fixtures").join(file);
        let config = scratch(&t, "epochs.toml");
        std::fs::write(&config, "[epochs]\n").unwrap();
        let c = config.to_str().unwrap();
        // The epochs that end without their samples (past the recording's end) the service
        // publishes only once it evicts the session.
        let want: BTreeSet<Vec<u8>> = epoch_lines(&fixture, &t, &config, &["--session-id", "rec"])
            .into_iter()
            .filter(|e| !String::from_utf8_lossy(e).contains("\"ended\""))
            .collect();
        assert!(want.len() >= 20, "{file}: {}", want.len());
        let args = [
            fixture.to_str().unwrap(),
            "--session-id",
            "rec",
            "--speed",
            "max",
        ];
        replay(&t, &[&args[..], extra].concat());
        let service = Service::start_with(&t, "a", &["--config", c], &[]);
        let got = consume(&t.epochs, Duration::from_secs(60), |r| {
            r.len() >= want.len()
        });
        let log = service.stop_cleanly();
        let got: BTreeSet<Vec<u8>> = got.into_iter().map(|r| r.payload).collect();
        assert_eq!(got, want, "{file}:\n{log}");
    }
}
