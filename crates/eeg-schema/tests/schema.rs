//! Wire formats: decoding, validation messages, encoding and round trips.

use eeg_dsp::{ProcessingConfig, SessionProcessor, Window};
use eeg_schema::*;
use proptest::prelude::*;

const EXAMPLE: &str = r#"{"schema": "eeg.raw/1", "session_id": "s-42", "device_id": "bud-7", "user_id": "u-1",
 "seq": 0, "start_ms": 1732270000000, "sample_rate_hz": 250.0,
 "channels": ["TP9", "AF7", "AF8", "TP10"], "units": "uV",
 "samples": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}"#;

fn decode(s: &str) -> Result<RawBatch, SchemaError> {
    decode_raw(s.as_bytes(), &Limits::default())
}

/// The example with one field's JSON text replaced.
fn with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

fn err(s: &str) -> String {
    decode(s).unwrap_err().to_string()
}

#[test]
fn design_example_decodes() {
    let b = decode(EXAMPLE).unwrap();
    assert_eq!(b.session_id, "s-42");
    assert_eq!(b.device_id, "bud-7");
    assert_eq!(b.user_id.as_deref(), Some("u-1"));
    assert_eq!(
        (b.seq, b.start_ms, b.sample_rate_hz),
        (0, 1732270000000, 250.0)
    );
    assert_eq!(b.channels, ["TP9", "AF7", "AF8", "TP10"]);
    assert_eq!(b.samples_per_channel(), 2);
    assert_eq!(b.row(2), [0.5, 0.6]);
    assert_eq!(b.rows().count(), 4);
}

#[test]
fn units_are_converted_to_microvolts() {
    let mv = decode(&with("units", "\"mV\"")).unwrap();
    assert_eq!(mv.row(0), [0.1 * 1e3, 0.2 * 1e3]);
    let v = decode(&with("units", "\"V\"")).unwrap();
    assert_eq!(v.row(3), [0.7 * 1e6, 0.8 * 1e6]);
    assert_eq!(decode(&with("units", "\"µV\"")).unwrap().row(0), [0.1, 0.2]);
    assert_eq!(
        err(&with("units", "\"mmHg\"")),
        "field 'units': expected \"uV\", \"mV\" or \"V\", got \"mmHg\""
    );
    let huge = with("samples", "[[1e308],[1],[1],[1]]").replace("\"uV\"", "\"V\"");
    assert_eq!(
        err(&huge),
        "field 'samples': channel 0 sample 0 is not a finite number in µV"
    );
}

#[test]
fn each_rule_names_its_field() {
    assert_eq!(
        err(&with("schema", "\"eeg.raw/2\"")),
        "field 'schema': expected \"eeg.raw/1\", got \"eeg.raw/2\""
    );
    assert_eq!(
        err(&with("session_id", "\"\"")),
        "field 'session_id': must not be empty"
    );
    assert_eq!(
        err(&with("device_id", "\"a\\u0007b\"")),
        "field 'device_id': contains a control character"
    );
    assert_eq!(
        err(&with("user_id", "\"\"")),
        "field 'user_id': must not be empty"
    );
    assert!(
        err(&with("session_id", &format!("\"{}\"", "x".repeat(300))))
            .starts_with("field 'session_id': is 300 bytes")
    );
    assert!(
        err(&with("sample_rate_hz", "-250"))
            .starts_with("field 'sample_rate_hz': must be a finite number > 0")
    );
    assert!(err(&with("sample_rate_hz", "0")).contains("got 0"));
    assert_eq!(
        err(&with("start_ms", "-1")),
        "field 'start_ms': must be >= 0, got -1"
    );
    assert_eq!(
        err(&with("channels", "[\"A\",\"B\",\"C\"]")),
        "field 'samples': 4 rows but 'channels' names 3"
    );
    assert_eq!(
        err(&with("channels", "[]")),
        "field 'channels': must name at least one channel"
    );
    assert_eq!(
        err(&with("channels", "[\"A\",\"B\",\"A\",\"C\"]")),
        "field 'channels': 'A' appears twice (positions 0 and 2)"
    );
    assert_eq!(
        err(&with("samples", "[[],[],[],[]]")),
        "field 'samples': rows must not be empty"
    );
    let ragged = err(&with("samples", "[[1,2],[3,4],[5],[7,8]]"));
    assert!(
        ragged.contains("field 'samples': row 2 has 1 values, expected 2 (same as row 0)"),
        "{ragged}"
    );
}

#[test]
fn malformed_json_and_unknown_fields_are_rejected() {
    assert!(err("{\"schema\": ").starts_with("invalid JSON: "));
    let unknown = EXAMPLE.replace("\"units\"", "\"unit\"");
    assert!(
        err(&unknown).contains("unknown field `unit`"),
        "{}",
        err(&unknown)
    );
    let missing = with("seq", "null");
    assert!(
        err(&missing).starts_with("invalid JSON:"),
        "{}",
        err(&missing)
    );
    assert!(err(&with("samples", "[[1,\"x\"],[1,2],[1,2],[1,2]]")).starts_with("invalid JSON:"));
}

#[test]
fn limits_are_enforced() {
    let small = Limits {
        max_message_bytes: 100,
        ..Limits::default()
    };
    let e = decode_raw(EXAMPLE.as_bytes(), &small).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "message is {} bytes, more than the limit of 100",
            EXAMPLE.len()
        )
    );
    let few = Limits {
        max_channels: 2,
        max_samples_per_channel: 1,
        ..Limits::default()
    };
    assert_eq!(
        decode_raw(EXAMPLE.as_bytes(), &few)
            .unwrap_err()
            .to_string(),
        "field 'channels': 4 channels, at most 2"
    );
    let one = Limits {
        max_samples_per_channel: 1,
        ..Limits::default()
    };
    assert_eq!(
        decode_raw(EXAMPLE.as_bytes(), &one)
            .unwrap_err()
            .to_string(),
        "field 'samples': 2 samples per channel, at most 1"
    );
}

#[test]
fn raw_round_trip_is_exact() {
    let b = decode(EXAMPLE).unwrap();
    let again = decode_raw(&b.encode(), &Limits::default()).unwrap();
    assert_eq!(again, b);
    let text = String::from_utf8(b.encode()).unwrap();
    assert!(
        text.starts_with("{\"schema\":\"eeg.raw/1\",\"session_id\":\"s-42\""),
        "{text}"
    );
}

fn with_window(f: impl FnOnce(&Window<'_>)) {
    let mut config = ProcessingConfig::default();
    config.bands.swap(0, 4); // gamma first: key order must follow the config
    let n = 1500;
    let x: Vec<f64> = (0..2 * n)
        .map(|i| 10.0 * (i as f64 * 0.25).sin() + (i / n) as f64 * 50.0)
        .collect();
    let mut p = SessionProcessor::new(&config, 250.0, 2, 1_700_000_000_000).unwrap();
    let mut f = Some(f);
    p.push_channel_major(&x, n, &mut |w: &Window<'_>| {
        if let Some(f) = f.take() {
            f(w)
        }
    })
    .unwrap();
}

fn meta(user: Option<&str>) -> SessionMeta {
    SessionMeta {
        session_id: "s-1".into(),
        device_id: "d-1".into(),
        user_id: user.map(str::to_string),
        sample_rate_hz: 250.0,
        channels: vec!["C3".into(), "C4".into()],
    }
}

#[test]
fn processed_record_has_the_contract_layout() {
    with_window(|w| {
        let m = meta(None);
        let mut out = Vec::new();
        encode_processed(
            &ProcessedRecord {
                meta: &m,
                window: w,
            },
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        let head = "{\"schema\":\"eeg.processed/1\",\"session_id\":\"s-1\",\"device_id\":\"d-1\",\"window_index\":0,\"start_ms\":1700000000000,\"end_ms\":1700000004000,\"sample_rate_hz\":250.0,\"settling\":true,\"channels\":[{\"name\":\"C3\",\"band_power\":{\"gamma\":";
        assert!(text.starts_with(head), "{text}");
        let order = [
            "\"gamma\"",
            "\"theta\"",
            "\"alpha\"",
            "\"beta\"",
            "\"delta\"",
        ];
        let pos: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(pos.windows(2).all(|p| p[0] < p[1]), "{text}");
        assert!(text.contains("\"quality\":{\"rms_uv\":"));
        assert!(text.ends_with("}}"), "{text}");
        assert!(!text.contains("user_id"));

        let rec = decode_processed(text.as_bytes()).unwrap();
        assert_eq!(rec.window_index, w.index);
        assert_eq!(rec.channels.len(), 2);
        for (c, ch) in rec.channels.iter().enumerate() {
            let names: Vec<&str> = ch.band_power.0.iter().map(|(b, _)| b.as_str()).collect();
            assert_eq!(names, ["gamma", "theta", "alpha", "beta", "delta"]);
            let values: Vec<f64> = ch.band_power.0.iter().map(|(_, v)| *v).collect();
            assert_eq!(values, w.band_power(c));
            assert_eq!(ch.total_power, w.total_power(c));
            assert_eq!(ch.quality.rms_uv, w.quality(c).rms_uv);
            assert_eq!(ch.quality.good, w.quality(c).good);
        }
        assert_eq!(rec.indices.engagement, w.indices.engagement);
    });
}

#[test]
fn user_id_appears_when_known_and_missing_indices_are_null() {
    with_window(|w| {
        let m = meta(Some("u-9"));
        let mut out = Vec::new();
        encode_processed(
            &ProcessedRecord {
                meta: &m,
                window: w,
            },
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\"device_id\":\"d-1\",\"user_id\":\"u-9\",\"window_index\""),
            "{text}"
        );
    });
    // Bands without theta/alpha/beta: every index is null.
    let mut config = ProcessingConfig::default();
    config.bands.retain(|b| b.name == "delta");
    let mut p = SessionProcessor::new(&config, 250.0, 1, 0).unwrap();
    let mut text = String::new();
    p.push_interleaved(&vec![1.0; 1000], &mut |w: &Window<'_>| {
        let mut out = Vec::new();
        let m = SessionMeta {
            channels: vec!["Cz".into()],
            ..meta(None)
        };
        encode_processed(
            &ProcessedRecord {
                meta: &m,
                window: w,
            },
            &mut out,
        );
        text = String::from_utf8(out).unwrap();
    })
    .unwrap();
    assert!(
        text.ends_with(
            "\"indices\":{\"engagement\":null,\"theta_beta\":null,\"alpha_theta\":null}}"
        ),
        "{text}"
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_raw(&bytes, &Limits::default());
    }

    #[test]
    fn mutated_messages_never_panic(at in 0usize..400, byte in any::<u8>()) {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = decode_raw(&bytes, &Limits::default());
    }

    #[test]
    fn valid_batches_round_trip(
        rows in 1usize..6,
        per in 1usize..20,
        seed in any::<u64>(),
        rate in 1.0f64..5000.0,
        seq in any::<u64>(),
    ) {
        let samples: Vec<f64> = (0..rows * per)
            .map(|i| (seed.wrapping_mul(i as u64 + 1) as f64).sin() * 1e3 / (i as f64 + 0.7))
            .collect();
        let channels = (0..rows).map(|c| format!("ch{c}")).collect();
        let b = RawBatch::new("s".into(), "d".into(), None, seq, 12345, rate, channels, samples, rows, per, &Limits::default()).unwrap();
        let again = decode_raw(&b.encode(), &Limits::default()).unwrap();
        prop_assert_eq!(again, b);
    }
}
