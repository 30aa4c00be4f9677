//! Binary `eeg.raw/1` (Protocol Buffers, chosen by the record's `content-type` header) on a
//! real broker: recordings replayed as their digital values give the records `process`
//! computes from the file, byte for byte (and so does `process` of the topic captured by
//! `tail --format pb`), and binary poison goes to the dead-letter topic with its reason and
//! its content type.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::support::*;

/// `tail --format pb` of the raw topic: a capture of binary eeg.raw/1 on standard output,
/// a warning for each message left out on standard error.
fn capture(t: &Topics) -> std::process::Output {
    let args = [
        "--topic",
        "raw",
        "--format",
        "pb",
        "--from-beginning",
        "--idle-exit",
        "3",
    ];
    cli_ok(t, "tail", &args)
}

#[test]
fn recordings_replayed_as_protobuf_give_the_records_process_computes() {
    // 16-bit EDF in one session, and a 24-bit BDF whose signals each have their own rate
    // (one session per rate).
    for (file, session) in [
        ("fixtures/test_subsecond.edf", "test_subsecond"),
        ("fixtures/test_generator.bdf", "test_generator"),
    ] {
        let t = Topics::create(&format!("pb-{session}"));
        let fixture = root().join(file);
        let want = process_lines(&fixture, &[]);
        assert!(!want.is_empty());
        replay(
            &t,
            &[
                fixture.to_str().unwrap(),
                "--session-id",
                session,
                "--speed",
                "max",
                "--encoding",
                "protobuf",
                // Few, long messages: tansu 0.6.0 (sqlite) slows down badly on topics of
                // many records with headers, and this broker is shared with other tests.
                // The records do not depend on the chunking.
                "--chunk",
                "1024",
            ],
        );
        // Every raw message is binary and says so.
        let raw = consume(&t.raw, Duration::from_secs(30), |r| !r.is_empty());
        assert_eq!(
            raw[0].headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf"),
            "{file}"
        );
        assert!(serde_json::from_slice::<serde_json::Value>(&raw[0].payload).is_err());

        let service = Service::start(&t, "pb");
        let got = published(&t, want.len());
        let log = service.stop_cleanly();
        assert_windows(&got, &want, &format!("{file}:\n{log}"));
        let dead = consume(&t.dlq, Duration::from_secs(2), |r| !r.is_empty());
        assert!(
            dead.is_empty(),
            "{file}: dead letters {:?}",
            dead[0].headers
        );

        // The raw topic captured by `tail --format pb` (its binary messages as they are) is
        // an input `process` reads, with the same records again.
        let captured = capture(&t).stdout;
        let path =
            std::env::temp_dir().join(format!("eeg-capture-{session}-{}.pb", std::process::id()));
        std::fs::write(&path, &captured).unwrap();
        let mut from_capture = process_lines(&path, &[]);
        let mut want = want;
        from_capture.sort();
        want.sort();
        assert_eq!(from_capture, want, "{file}: process of the capture");
        // And `replay` plays a capture: captured again, it gives the same records once more.
        let again = Topics::create(&format!("pb-again-{session}"));
        replay(
            &again,
            &[
                path.to_str().unwrap(),
                "--speed",
                "max",
                "--encoding",
                "protobuf",
            ],
        );
        let _ = std::fs::remove_file(&path);
        let recaptured = capture(&again).stdout;
        std::fs::write(&path, &recaptured).unwrap();
        let mut replayed = process_lines(&path, &[]);
        let _ = std::fs::remove_file(&path);
        replayed.sort();
        assert_eq!(replayed, want, "{file}: the capture replayed");
    }
}

#[test]
fn binary_poison_goes_to_the_dead_letter_topic_with_its_reason_and_content_type() {
    let t = Topics::create("pb-dlq");
    let producer: BaseProducer = client().create().unwrap();
    let protobuf = "application/x-protobuf";
    let send = |key: &str, payload: &[u8], content_type: Option<&str>| {
        let mut r = BaseRecord::to(&t.raw).key(key).payload(payload);
        if let Some(ct) = content_type {
            r = r.headers(
                rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                    key: "content-type",
                    value: Some(ct),
                }),
            );
        }
        producer.send(r).unwrap();
    };
    // The session's batches, in both encodings alternately, around the poison.
    let poison: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        (
            "junk",
            b"\x0a\xff\xff\xff".to_vec(),
            Some(protobuf),
            "invalid protobuf",
        ),
        (
            "other",
            ok_batch(0).encode(),
            Some("text/csv"),
            "header 'content-type'",
        ),
        ("ok", Vec::new(), Some(protobuf), "schema"),
    ];
    for seq in 0..40 {
        let b = ok_batch(seq);
        if seq % 2 == 0 {
            send("ok", &b.encode(), None);
        } else {
            let mut buf = Vec::new();
            b.encode_protobuf(&mut buf);
            send("ok", &buf, Some(protobuf));
        }
        if seq == 20 {
            for (k, p, ct, _) in &poison {
                send(k, p, *ct);
            }
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    // The same batches, all JSON, in topics of their own: the reference.
    let reference = Topics::create("pb-dlq-json");
    for seq in 0..40 {
        producer
            .send(
                BaseRecord::to(&reference.raw)
                    .key("ok")
                    .payload(&ok_batch(seq).encode()),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let service = Service::start(&t, "pb-dlq");
    let dead = consume(&t.dlq, Duration::from_secs(60), |r| r.len() >= poison.len());
    // 40 batches of 0.25 s = 10 s of signal: windows 0..=6.
    let processed = consume(&t.processed, Duration::from_secs(30), |r| r.len() >= 7);
    let log = service.stop_cleanly();
    let json_service = Service::start(&reference, "pb-dlq-json");
    let json = published(&reference, 7);
    json_service.stop_cleanly();

    assert_eq!(dead.len(), poison.len(), "{log}");
    for (k, p, ct, reason) in &poison {
        let d = dead
            .iter()
            .find(|d| d.key.as_deref() == Some(k.as_bytes()) && &d.payload == p)
            .unwrap_or_else(|| panic!("poison with key {k} not in the dead-letter topic"));
        assert!(
            d.headers["error"].contains(reason),
            "error header '{}' names {reason}",
            d.headers["error"]
        );
        assert_eq!(d.headers.get("content-type").map(String::as_str), *ct);
    }
    // Mixed encodings in one session: the records of the all-JSON stream, byte for byte.
    let json: Vec<Vec<u8>> = by_window(&json).into_values().collect();
    assert_eq!(json.len(), 7);
    assert_windows(&processed, &json, "mixed encodings");

    // A capture of the topic leaves out what the service dead-letters, one warning each
    // naming where it is; the rest (both encodings) gives the same records again.
    let out = capture(&t);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        warnings.matches("not in the capture").count(),
        poison.len(),
        "{warnings}"
    );
    let path = std::env::temp_dir().join(format!("eeg-capture-dlq-{}.pb", std::process::id()));
    std::fs::write(&path, &out.stdout).unwrap();
    let from_capture = process_lines(&path, &[]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(from_capture, json, "process of the capture");
}
