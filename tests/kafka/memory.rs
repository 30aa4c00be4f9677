//! The instance's memory budget for session state, under a real memory cap (a memory cgroup
//! of the test's own): sessions too many for the memory wait, their partitions are not read
//! meanwhile, and then every window comes out as `process` computes it; without the budget,
//! the same sessions under the same cap are an OOM kill.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use eeg_schema::{RawMeta, RawSamples, RawUnits, encode_raw_protobuf, write_delimited};

use crate::support::*;

/// 128 channels at 8 kHz: each such session may hold about 33 MiB (its 4 s window of
/// filtered samples), which it does once a window's worth (12 MB of 16-bit samples) came.
const FS: f64 = 8_000.0;
const CHANNELS: usize = 128;
/// 0.25 s per message (512 KB).
const PER_BATCH: usize = 2_000;
/// 6 s per session: windows end at 4, 5 and 6 s.
const BATCHES: u64 = 24;
/// The cgroup's limit. The budget is half of it by default: room for two such sessions.
const LIMIT_MIB: u64 = 160;
const T0: i64 = 1_700_000_000_000;

/// The binary messages of session `id`, the first sample at `start_ms`.
fn session(id: &str, start_ms: i64) -> Vec<(i64, Vec<u8>)> {
    let channels: Vec<String> = (0..CHANNELS).map(|c| format!("C{c}")).collect();
    let scale = vec![0.1; CHANNELS];
    let offset = vec![0.0; CHANNELS];
    let salt = id.bytes().map(u64::from).sum::<u64>();
    let mut data = vec![0i32; CHANNELS * PER_BATCH];
    (0..BATCHES)
        .map(|seq| {
            for c in 0..CHANNELS {
                let hz = 6.0 + ((c as u64 + salt) % 24) as f64;
                for i in 0..PER_BATCH {
                    let n = seq as usize * PER_BATCH + i;
                    let t = n as f64 / FS;
                    let hum = ((n * 7919 + c * 104_729) % 97) as f64 - 48.0;
                    data[c * PER_BATCH + i] =
                        (1500.0 * (std::f64::consts::TAU * hz * t).sin() + 4.0 * hum) as i32;
                }
            }
            let at = start_ms + (seq as f64 * PER_BATCH as f64 * 1000.0 / FS) as i64;
            let meta = RawMeta {
                session_id: id,
                device_id: "amp",
                user_id: None,
                seq,
                start_ms: at,
                sample_rate_hz: FS,
                channels: &channels,
                units: RawUnits::Microvolts,
            };
            let samples = RawSamples::Digital {
                bytes_per_sample: 2,
                data: &data,
                scale: &scale,
                offset: &offset,
            };
            let mut out = Vec::new();
            encode_raw_protobuf(&meta, samples, &mut out).unwrap();
            (at, out)
        })
        .collect()
}

/// Sends `(partition, key, timestamp, payload)` to the raw topic; binary unless the
/// payload is a tick.
fn send_all(t: &Topics, messages: &[(i32, String, i64, Vec<u8>)]) {
    let producer: BaseProducer = client()
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    for (p, key, ts, payload) in messages {
        let mut record = BaseRecord::to(&t.raw)
            .partition(*p)
            .key(key.as_str())
            .payload(&payload[..])
            .timestamp(*ts);
        if key != "tick" {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(eeg_schema::PROTOBUF_CONTENT_TYPE),
            }));
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(50));
                    record = r;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

#[test]
fn sessions_too_many_for_the_memory_wait_their_turn_under_a_cap_and_lose_nothing() {
    // Without the budget: two sessions on each of the three partitions at once, six times
    // 33 MiB under a 160 MiB cap.
    let control = Topics::create("memory-control");
    let mut messages = Vec::new();
    for p in 0..PARTITIONS {
        let (a, b) = (format!("all-{p}-a"), format!("all-{p}-b"));
        for ((ts, x), (_, y)) in session(&a, T0).into_iter().zip(session(&b, T0)) {
            messages.push((p, a.clone(), ts, x));
            messages.push((p, b.clone(), ts, y));
        }
    }
    send_all(&control, &messages);
    drop(messages);
    let cgroup = MemoryCgroup::new(&format!("{}-control", control.group), LIMIT_MIB);
    let unbounded = Service::start_in(
        &cgroup,
        &control,
        "control",
        &[],
        &[
            ("EEG_SESSION_MEMORY_MIB", "1000000"),
            ("EEG_PARTITION_BUFFER_KIB", "2048"),
        ],
    );
    let (status, log) = unbounded.exit_within(180);
    assert!(
        !status.success() && cgroup.oom_kills() >= 1,
        "without a budget the sessions do not fit under the cap: {status}, {} OOM kills:\n{log}",
        cgroup.oom_kills()
    );
    drop(cgroup);

    // With the budget: on each partition one session, then another after it (which evicts
    // the first, SESSION_IDLE_S=1), then a tick that evicts the second. Three partitions
    // want three sessions at once; the budget holds two, so one partition waits.
    let t = Topics::create("memory");
    let capture = std::env::temp_dir().join(format!("{}-flood.bin", t.group));
    let mut file = Vec::new();
    let mut messages = Vec::new();
    for p in 0..PARTITIONS {
        for (k, start) in [(0, T0), (1, T0 + 8_000)] {
            let id = format!("big-{p}-{k}");
            for (ts, m) in session(&id, start) {
                write_delimited(&m, &mut file).unwrap();
                messages.push((p, id.clone(), ts, m));
            }
        }
        messages.push((p, "tick".into(), T0 + 20_000, b"tick".to_vec()));
    }
    std::fs::write(&capture, &file).unwrap();
    drop(file);
    let want = process_lines(&capture, &[]);
    std::fs::remove_file(&capture).unwrap();
    send_all(&t, &messages);
    drop(messages);

    let cgroup = MemoryCgroup::new(&format!("{}-budget", t.group), LIMIT_MIB);
    let service = Service::start_in(
        &cgroup,
        &t,
        "budget",
        &["--session-idle-s", "1"],
        &[("EEG_PARTITION_BUFFER_KIB", "2048")],
    );
    let processed = consume(&t.processed, Duration::from_secs(180), |r| {
        r.len() >= want.len()
    });
    let dead = consume(&t.dlq, Duration::from_secs(30), |r| r.len() >= 3);
    std::thread::sleep(Duration::from_secs(1));
    let metrics = http_get(service.port, "/metrics")
        .map(|r| r.1)
        .unwrap_or_default();
    let log = service.stop_cleanly();
    eprintln!(
        "peak memory of the cgroup: {:.1} MiB",
        cgroup.peak_bytes() as f64 / (1 << 20) as f64
    );
    assert_eq!(cgroup.oom_kills(), 0, "{log}");
    assert!(
        log.contains(
            "session memory budget: 80 MiB, half of the container's memory limit of 160 MiB"
        ),
        "the budget comes from the cgroup's limit:\n{log}"
    );
    assert!(
        log.contains("waits for session memory (it needs ")
            && log.contains("session memory found after"),
        "a partition waited, said why, and went on:\n{log}"
    );
    let waits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eeg_memory_holds_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(waits.is_some_and(|w| w >= 1), "{metrics}");
    assert_eq!(dead.len(), 3, "only the ticks are dead letters: {log}");
    let mut got: Vec<Vec<u8>> = processed.iter().map(|r| r.payload.clone()).collect();
    let mut want = want;
    got.sort();
    want.sort();
    assert_eq!(want.len(), 6 * 3, "three windows per session");
    assert_eq!(got.len(), want.len(), "{log}");
    assert!(got == want, "every window as process computes it");
}
