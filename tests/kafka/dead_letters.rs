//! Poison messages: each goes to the dead-letter topic with its reason and where it came
//! from, byte for byte or, when it is too large for the topic, cut with its length and hash;
//! the stream goes on past it and it counts as done.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sha2::Digest;

use crate::support::*;

#[test]
fn poison_messages_go_to_the_dead_letter_topic_byte_for_byte() {
    let t = Topics::create("dlq");
    let producer: BaseProducer = client().create().unwrap();
    let valid = |seq: u64| ok_batch(seq).encode();
    let poison: Vec<(&str, Vec<u8>, &str)> = vec![
        ("junk", b"\xff\xfe not json".to_vec(), "JSON"),
        (
            "ok",
            br#"{"schema":"eeg.raw/1","session_id":"ok","device_id":"d","seq":1,"start_ms":0,"sample_rate_hz":256.0,"channels":["A","B"],"samples":[[1.0],[2.0,3.0]]}"#.to_vec(),
            "samples",
        ),
        (
            "slow",
            br#"{"schema":"eeg.raw/1","session_id":"slow","device_id":"d","seq":0,"start_ms":0,"sample_rate_hz":60.0,"channels":["A"],"samples":[[1.0]]}"#.to_vec(),
            "session 'slow'",
        ),
    ];
    // Valid batches before and after the poison: the stream goes on past it.
    let mut sends: Vec<(String, Vec<u8>)> = (0..20).map(|s| ("ok".to_string(), valid(s))).collect();
    for (k, p, _) in &poison {
        sends.push((k.to_string(), p.clone()));
    }
    sends.extend((20..40).map(|s| ("ok".to_string(), valid(s))));
    for (k, p) in &sends {
        producer
            .send(BaseRecord::to(&t.raw).key(k.as_str()).payload(&p[..]))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let service = Service::start(&t, "dlq");
    let dead = consume(&t.dlq, Duration::from_secs(60), |r| r.len() >= poison.len());
    // 40 batches of 0.25 s = 10 s of signal: windows 0..=6.
    let processed = consume(&t.processed, Duration::from_secs(30), |r| r.len() >= 7);
    std::thread::sleep(Duration::from_secs(2));
    let log = service.stop_cleanly();
    assert_eq!(dead.len(), poison.len(), "{log}");
    for (k, p, reason) in &poison {
        let d = dead
            .iter()
            .find(|d| &d.payload == p)
            .unwrap_or_else(|| panic!("poison with key {k} not in the dead-letter topic"));
        assert_eq!(d.key.as_deref(), Some(k.as_bytes()));
        assert!(
            d.headers["error"].contains(reason),
            "error header '{}' names {reason}",
            d.headers["error"]
        );
        assert_eq!(d.headers["source.topic"], t.raw);
        let partition: i32 = d.headers["source.partition"].parse().unwrap();
        let offset: i64 = d.headers["source.offset"].parse().unwrap();
        assert!((0..PARTITIONS).contains(&partition) && offset >= 0);
    }
    assert_eq!(by_window(&processed).len(), 7, "{log}");
    // Dead letters count as done; the session's partition is committed up to the batch
    // holding the first sample of its next window (window 7 starts at 7 s = batch 28, at
    // offset 29 behind the poison batch of the same key).
    let ends = end_offsets(&t.raw);
    let want: Vec<i64> = ends.iter().map(|&e| if e == 41 { 29 } else { e }).collect();
    assert!(ends.contains(&41));
    assert_eq!(committed(&t), want, "{log}");
}

#[test]
fn poison_of_any_size_is_dead_lettered_cut_and_no_instance_exits() {
    // On a broker of its own that keeps data in memory: tansu's sqlite engine (the shared
    // broker's) does not serve a record of 6 MB or more to any consumer, its memory engine
    // serves them all.
    let port = free_port();
    let broker = memory_broker(port);
    let t = Topics::named("big", &format!("127.0.0.1:{port}"));
    t.make();
    // The upstream producer may send what the broker takes. Just over the producer's limit
    // of 1,000,000 bytes, then 2, 8 and 20 MB (the last two over the 4 MiB limit of
    // eeg.raw/1, so they are refused before they are parsed).
    let producer: BaseProducer = client_at(&t.bootstrap)
        .set("message.max.bytes", "30000000")
        .create()
        .unwrap();
    let sizes = [1_000_500usize, 2_000_000, 8_000_000, 20_000_000];
    let mut bodies = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        // Not eeg.raw/1: a dead letter.
        let mut body = format!("{{\"schema\": \"eeg.raw/1\", \"pad{k}\": \"").into_bytes();
        body.resize(size, b'a' + k as u8);
        producer
            .send(
                BaseRecord::to(&t.raw)
                    .partition(k as i32 % PARTITIONS)
                    .key(format!("big-{k}").as_str())
                    .payload(&body[..]),
            )
            .unwrap();
        bodies.push(body);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    drop(producer);
    // A group of three, one partition each.
    let services: Vec<Service> = ["x", "y", "z"]
        .iter()
        .map(|n| Service::start(&t, n))
        .collect();
    let dead = consume_at(&t.bootstrap, &t.dlq, Duration::from_secs(90), |r| {
        r.len() >= sizes.len()
    });
    assert_eq!(dead.len(), sizes.len());
    for (k, body) in bodies.iter().enumerate() {
        let d = dead
            .iter()
            .find(|d| d.key.as_deref() == Some(format!("big-{k}").as_bytes()))
            .unwrap_or_else(|| panic!("message of {} bytes not dead-lettered", body.len()));
        assert_eq!(d.headers["truncated"], "true");
        assert_eq!(d.headers["original.length"], body.len().to_string());
        let sha256: String = sha2::Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(d.headers["original.sha256"], sha256);
        assert!(
            d.headers["error"].contains("cut to its first"),
            "{:?}",
            d.headers
        );
        assert!(!d.payload.is_empty() && d.payload.len() < 1_000_000);
        assert!(body.starts_with(&d.payload), "the copy is a prefix");
        assert_eq!(d.headers["source.topic"], t.raw);
    }
    // Every instance is still there and stops cleanly, with the dead letters committed.
    for s in services {
        s.stop_cleanly();
    }
    assert_eq!(committed(&t), end_offsets_at(&t.bootstrap, &t.raw));
    drop(broker);
}

#[test]
fn dead_letters_fit_the_dead_letter_topic_when_it_takes_less_than_the_producer() {
    let t = Topics::named("small-dlq", &bootstrap());
    t.make_with_dlq(&[("max.message.bytes", "300000")]);
    // 500 KB: the producer (1,000,000 bytes) would take the copy, the topic would not.
    let body = vec![b'x'; 500_000];
    let producer: BaseProducer = client().create().unwrap();
    producer
        .send(BaseRecord::to(&t.raw).key("big").payload(&body[..]))
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let service = Service::start(&t, "small-dlq");
    let dead = consume(&t.dlq, Duration::from_secs(60), |r| !r.is_empty());
    let log = service.stop_cleanly();
    assert_eq!(dead.len(), 1, "{log}");
    let d = &dead[0];
    assert!(d.payload.len() < 300_000 && body.starts_with(&d.payload));
    assert_eq!(d.headers["truncated"], "true");
    assert_eq!(d.headers["original.length"], "500000");
    assert!(log.contains("outputs kept under 300000 bytes"), "{log}");
}

/// The inputs that once made sessions reserve gigabytes, sent to an instance whose address
/// space is capped at 2 GiB: eleven 20 KB batches declaring 1,024 channels at 100 kHz
/// (3.2 GB of state each, unlimited), a batch at 166,667 Hz, one of 1,025 channels. Each is
/// dead-lettered naming its limit; the instance stays up; the good sessions beside them (one
/// at an odd rate whose window and hop share no factor) equal `process` of the same batches.
#[test]
fn sessions_beyond_the_limits_are_dead_lettered_under_a_memory_cap() {
    let t = Topics::create("limits");
    let producer: BaseProducer = client().create().unwrap();
    let line = |session: &str, fs: f64, nch: usize| {
        let channels: Vec<String> = (0..nch).map(|c| format!("C{c}")).collect();
        serde_json::json!({
            "schema": "eeg.raw/1", "session_id": session, "device_id": "d", "seq": 0,
            "start_ms": 1_700_000_000_000i64, "sample_rate_hz": fs, "channels": channels,
            "samples": vec![vec![1.0, 2.0]; nch],
        })
        .to_string()
        .into_bytes()
    };
    let mut poison: Vec<(String, Vec<u8>, &str)> = (0..11)
        .map(|k| {
            let id = format!("wide-{k}");
            let body = line(&id, 100_000.0, 1024);
            (id, body, "limits.max_session_state_mib")
        })
        .collect();
    poison.push((
        "fast".into(),
        line("fast", 166_666.67, 11),
        "limits.max_sample_rate_hz",
    ));
    poison.push((
        "many".into(),
        line("many", 256.0, 1025),
        "limits.max_channels",
    ));
    // Good sessions: 40 batches of 0.25 s at 256 Hz, and 40 of 64 samples at 256.3 Hz.
    let odd = |seq: u64| {
        let mut b = ok_batch(seq);
        b.session_id = "odd".into();
        b.sample_rate_hz = 256.3;
        b.encode()
    };
    let mut good: Vec<(String, Vec<u8>)> = Vec::new();
    for seq in 0..40 {
        good.push(("ok".into(), ok_batch(seq).encode()));
        good.push(("odd".into(), odd(seq)));
    }
    let input = std::env::temp_dir().join(format!("{}-good.jsonl", t.group));
    let mut jsonl = Vec::new();
    for (_, body) in &good {
        jsonl.extend_from_slice(body);
        jsonl.push(b'\n');
    }
    std::fs::write(&input, &jsonl).unwrap();
    let mut want = process_lines(&input, &[]);
    let found = fuzz_findings(&t, &mut want);
    // The poison first, then what the fuzzers found, then the good batches.
    for (k, body, _) in &poison {
        producer
            .send(BaseRecord::to(&t.raw).key(k.as_str()).payload(&body[..]))
            .unwrap();
    }
    for (k, body, binary) in &found {
        let mut record = BaseRecord::to(&t.raw).key(k.as_str()).payload(&body[..]);
        if *binary {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(eeg_schema::PROTOBUF_CONTENT_TYPE),
            }));
        }
        producer.send(record).unwrap();
    }
    for (k, body) in &good {
        producer
            .send(BaseRecord::to(&t.raw).key(k.as_str()).payload(&body[..]))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let service = Service::start_capped(&t, "limits", 2048);
    let dead = consume(&t.dlq, Duration::from_secs(60), |r| r.len() >= poison.len());
    let processed = consume(&t.processed, Duration::from_secs(60), |r| {
        r.len() >= want.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = service.stop_cleanly();
    assert_eq!(dead.len(), poison.len(), "{log}");
    for (k, body, limit) in &poison {
        let d = dead
            .iter()
            .find(|d| d.key.as_deref() == Some(k.as_bytes()))
            .unwrap_or_else(|| panic!("{k} not dead-lettered: {log}"));
        assert_eq!(&d.payload, body);
        assert!(
            d.headers["error"].contains(limit) && d.headers["error"].contains("raise"),
            "{k}: {}",
            d.headers["error"]
        );
    }
    let mut got: Vec<Vec<u8>> = processed.iter().map(|r| r.payload.clone()).collect();
    got.sort();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "{log}");
    assert!(got == want, "the service's records equal process's");
}

/// The inputs the `process` fuzzer found (fuzz/regressions/process) that the service can
/// be sent: the JSON lines as JSON messages and the captures' messages as binary ones, each
/// with whether it is binary. `process` takes each file whole, so the service must take
/// their messages too; what `process` writes for them joins `want`.
fn fuzz_findings(t: &Topics, want: &mut Vec<Vec<u8>>) -> Vec<(String, Vec<u8>, bool)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/process");
    let mut found = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let binary = match ext {
            "jsonl" => false,
            "pb" => true,
            // EDF files are not messages.
            _ => continue,
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let key = format!("fuzz-{name}");
        // The target's first byte says how `process` runs; the rest is the file.
        let bytes = std::fs::read(&path).unwrap();
        let file_bytes = &bytes[1..];
        let file = std::env::temp_dir().join(format!("{}-{name}", t.group));
        std::fs::write(&file, file_bytes).unwrap();
        want.extend(process_lines(&file, &[]));
        if binary {
            let mut reader = eeg_schema::DelimitedReader::new(file_bytes, 1 << 20);
            while let Some(m) = reader.next_message().unwrap() {
                found.push((key.clone(), m.bytes.to_vec(), true));
            }
        } else {
            for line in file_bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                found.push((key.clone(), line.to_vec(), false));
            }
        }
    }
    assert!(found.len() >= 3, "the findings are read: {}", dir.display());
    found
}
