//! `eeg.processed/1`: byte-exact layout, band order, optional user_id, nulls, reading back.

use eeg_dsp::{ProcessingConfig, SessionProcessor, Window};
use eeg_schema::{
    ChannelFeatures, ChannelOwned, Indices, IndicesOwned, OrderedBands, PROCESSED_SCHEMA,
    ProcessedRecord, ProcessedRecordOwned, Quality, QualityOwned, SessionMeta, WindowFeatures,
    decode_processed, encode_processed,
};

fn meta(user: Option<&str>, channels: &[&str]) -> SessionMeta {
    SessionMeta {
        session_id: "s-42".into(),
        device_id: "bud-7".into(),
        user_id: user.map(str::to_string),
        sample_rate_hz: 250.0,
        channels: channels.iter().map(|c| c.to_string()).collect(),
    }
}

const GOOD: Quality = Quality {
    rms_uv: 1.0,
    ptp_uv: 1.0,
    line_noise_ratio: 0.0,
    flatline: false,
    railed: false,
    artifact: false,
    good: true,
};

const BANDS: [&str; 5] = ["delta", "theta", "alpha", "beta", "gamma"];

fn encode<W: eeg_schema::WindowData + ?Sized>(meta: &SessionMeta, window: &W) -> String {
    let mut out = Vec::new();
    encode_processed(&ProcessedRecord { meta, window }, &mut out);
    String::from_utf8(out).unwrap()
}

/// The design document's example, compacted by hand.
const CONTRACT_EXAMPLE: &str = concat!(
    r#"{"schema":"eeg.processed/1","session_id":"s-42","device_id":"bud-7","#,
    r#""window_index":0,"start_ms":1732270000000,"end_ms":1732270004000,"#,
    r#""sample_rate_hz":250.0,"settling":true,"#,
    r#""channels":[{"name":"TP9","#,
    r#""band_power":{"delta":1.0,"theta":1.0,"alpha":1.0,"beta":1.0,"gamma":1.0},"#,
    r#""relative_power":{"delta":0.2,"theta":0.2,"alpha":0.2,"beta":0.2,"gamma":0.2},"#,
    r#""total_power":5.0,"#,
    r#""quality":{"rms_uv":1.0,"ptp_uv":1.0,"line_noise_ratio":0.0,"#,
    r#""flatline":false,"railed":false,"artifact":false,"good":true}}],"#,
    r#""indices":{"engagement":1.0,"theta_beta":1.0,"alpha_theta":1.0}}"#
);

fn contract_window<'a>(channels: &'a [ChannelFeatures<'a>]) -> WindowFeatures<'a> {
    WindowFeatures {
        window_index: 0,
        start_ms: 1_732_270_000_000,
        end_ms: 1_732_270_004_000,
        settling: true,
        band_names: &BANDS,
        channels,
        indices: Indices {
            engagement: Some(1.0),
            theta_beta: Some(1.0),
            alpha_theta: Some(1.0),
        },
    }
}

#[test]
fn contract_example_encodes_byte_exactly() {
    let ch = [ChannelFeatures {
        band_power: &[1.0; 5],
        relative_power: &[0.2; 5],
        total_power: 5.0,
        quality: GOOD,
    }];
    let text = encode(&meta(None, &["TP9"]), &contract_window(&ch));
    assert_eq!(text, CONTRACT_EXAMPLE);
    // The same document as the design example, whitespace aside.
    let pretty: serde_json::Value = serde_json::from_str(
        r#"{"schema": "eeg.processed/1", "session_id": "s-42", "device_id": "bud-7",
 "window_index": 0, "start_ms": 1732270000000, "end_ms": 1732270004000,
 "sample_rate_hz": 250.0, "settling": true,
 "channels": [{"name": "TP9",
               "band_power": {"delta": 1.0, "theta": 1.0, "alpha": 1.0, "beta": 1.0, "gamma": 1.0},
               "relative_power": {"delta": 0.2, "theta": 0.2, "alpha": 0.2, "beta": 0.2, "gamma": 0.2},
               "total_power": 5.0,
               "quality": {"rms_uv": 1.0, "ptp_uv": 1.0, "line_noise_ratio": 0.0,
                           "flatline": false, "railed": false, "artifact": false, "good": true}}],
 "indices": {"engagement": 1.0, "theta_beta": 1.0, "alpha_theta": 1.0}}"#,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        pretty
    );
}

#[test]
fn user_id_follows_device_id_only_when_present() {
    let ch = [ChannelFeatures {
        band_power: &[1.0; 5],
        relative_power: &[0.2; 5],
        total_power: 5.0,
        quality: GOOD,
    }];
    let with_user = encode(&meta(Some("u-1"), &["TP9"]), &contract_window(&ch));
    assert_eq!(
        with_user,
        CONTRACT_EXAMPLE.replace(
            "\"device_id\":\"bud-7\",",
            "\"device_id\":\"bud-7\",\"user_id\":\"u-1\","
        )
    );
    let without = encode(&meta(None, &["TP9"]), &contract_window(&ch));
    assert!(!without.contains("user_id"));
}

#[test]
fn key_order_follows_band_order_and_nulls_are_written() {
    let names = ["gamma", "alpha", "mu"];
    let ch = [
        ChannelFeatures {
            band_power: &[3.5, 0.25, 1e-7],
            relative_power: &[0.5, 0.25, 0.125],
            total_power: 7.0,
            quality: Quality {
                good: false,
                flatline: true,
                ..GOOD
            },
        },
        ChannelFeatures {
            band_power: &[1.0, f64::NAN, f64::INFINITY],
            relative_power: &[f64::NEG_INFINITY, 0.0, -0.0],
            total_power: f64::NAN,
            quality: GOOD,
        },
    ];
    let w = WindowFeatures {
        window_index: 17,
        start_ms: 1000,
        end_ms: 5000,
        settling: false,
        band_names: &names,
        channels: &ch,
        indices: Indices::default(),
    };
    let text = encode(&meta(None, &["C3", "C4"]), &w);
    assert_eq!(
        text,
        concat!(
            r#"{"schema":"eeg.processed/1","session_id":"s-42","device_id":"bud-7","#,
            r#""window_index":17,"start_ms":1000,"end_ms":5000,"sample_rate_hz":250.0,"settling":false,"#,
            r#""channels":[{"name":"C3","band_power":{"gamma":3.5,"alpha":0.25,"mu":1e-7},"#,
            r#""relative_power":{"gamma":0.5,"alpha":0.25,"mu":0.125},"total_power":7.0,"#,
            r#""quality":{"rms_uv":1.0,"ptp_uv":1.0,"line_noise_ratio":0.0,"flatline":true,"railed":false,"artifact":false,"good":false}},"#,
            r#"{"name":"C4","band_power":{"gamma":1.0,"alpha":null,"mu":null},"#,
            r#""relative_power":{"gamma":null,"alpha":0.0,"mu":-0.0},"total_power":null,"#,
            r#""quality":{"rms_uv":1.0,"ptp_uv":1.0,"line_noise_ratio":0.0,"flatline":false,"railed":false,"artifact":false,"good":true}}],"#,
            r#""indices":{"engagement":null,"theta_beta":null,"alpha_theta":null}}"#
        )
    );
    // Nulls read back as NaN (numbers) and None (indices).
    let rec = decode_processed(text.as_bytes()).unwrap();
    assert!(rec.channels[1].total_power.is_nan());
    assert!(rec.channels[1].band_power.get("alpha").unwrap().is_nan());
    assert_eq!(rec.indices.engagement, None);
    assert_eq!(
        rec.channels[0].band_power.names().collect::<Vec<_>>(),
        names
    );
}

#[test]
fn inconsistent_window_data_still_encodes_valid_json() {
    // Fewer values than bands and fewer names than channels: null and a positional name.
    let ch = [
        ChannelFeatures {
            band_power: &[1.0],
            relative_power: &[],
            total_power: 1.0,
            quality: GOOD,
        },
        ChannelFeatures {
            band_power: &[1.0, 2.0],
            relative_power: &[0.5, 0.5],
            total_power: 3.0,
            quality: GOOD,
        },
    ];
    let w = WindowFeatures {
        window_index: 0,
        start_ms: 0,
        end_ms: 1,
        settling: false,
        band_names: &["a", "b"],
        channels: &ch,
        indices: Indices::default(),
    };
    let text = encode(&meta(None, &["only"]), &w);
    let rec = decode_processed(text.as_bytes()).unwrap();
    assert_eq!(rec.channels[0].name, "only");
    assert_eq!(rec.channels[1].name, "ch1");
    assert!(rec.channels[0].band_power.get("b").unwrap().is_nan());
    assert!(
        text.contains("\"relative_power\":{\"a\":null,\"b\":null}"),
        "{text}"
    );
}

fn owned_example() -> ProcessedRecordOwned {
    let bands = |v: [f64; 2]| OrderedBands(vec![("theta".into(), v[0]), ("alpha".into(), v[1])]);
    ProcessedRecordOwned {
        session_id: "s".into(),
        device_id: "d".into(),
        user_id: Some("u".into()),
        window_index: 3,
        start_ms: 10,
        end_ms: 4010,
        sample_rate_hz: 256.0,
        settling: false,
        channels: vec![ChannelOwned {
            name: "Fz".into(),
            band_power: bands([2.0, 1.0 / 3.0]),
            relative_power: bands([0.6, 0.1]),
            total_power: 3.3,
            quality: QualityOwned {
                rms_uv: 12.5,
                ptp_uv: 80.0,
                line_noise_ratio: 0.01,
                flatline: false,
                railed: false,
                artifact: true,
                good: false,
            },
        }],
        indices: IndicesOwned {
            engagement: None,
            theta_beta: Some(0.75),
            alpha_theta: Some(1e-300),
        },
    }
}

#[test]
fn owned_records_round_trip_exactly() {
    let rec = owned_example();
    let bytes = rec.encode();
    let again = decode_processed(&bytes).unwrap();
    assert_eq!(again, rec);
    assert_eq!(again.encode(), bytes);
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(
        text.starts_with("{\"schema\":\"eeg.processed/1\",\"session_id\":\"s\",\"device_id\":\"d\",\"user_id\":\"u\",\"window_index\":3"),
        "{text}"
    );
    // serde users get the same checks.
    let via_serde: ProcessedRecordOwned = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(via_serde, rec);
}

#[test]
fn decode_processed_rejects_other_versions_and_unknown_fields() {
    let text = String::from_utf8(owned_example().encode()).unwrap();
    let v2 = text.replace(PROCESSED_SCHEMA, "eeg.processed/2");
    assert_eq!(
        decode_processed(v2.as_bytes()).unwrap_err().to_string(),
        "field 'schema': expected \"eeg.processed/1\", got \"eeg.processed/2\""
    );
    let extra = text.replace("\"good\":false", "\"good\":false,\"great\":true");
    let e = decode_processed(extra.as_bytes()).unwrap_err().to_string();
    assert!(e.starts_with("invalid message at line 1 column"), "{e}");
    assert!(e.contains("unknown field 'great'"), "{e}");
    let missing = text.replace("\"total_power\":3.3,", "");
    let e = decode_processed(missing.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field 'total_power'"), "{e}");
    let twice = text.replace("{\"theta\":2.0,", "{\"theta\":2.0,\"theta\":1.0,");
    let e = decode_processed(twice.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("band \"theta\" appears twice"), "{e}");
    let e = decode_processed(b"{\"schema\":").unwrap_err().to_string();
    assert!(
        e.starts_with("invalid JSON at line 1 column 10: EOF"),
        "{e}"
    );
}

/// Runs a real processor and hands its first window to `f`.
fn with_window(config: &ProcessingConfig, f: impl FnOnce(&Window<'_>)) {
    let n = 1500;
    let x: Vec<f64> = (0..2 * n)
        .map(|i| 10.0 * (i as f64 * 0.25).sin() + (i / n) as f64 * 50.0)
        .collect();
    let mut p = SessionProcessor::new(config, 250.0, 2, 1_700_000_000_000).unwrap();
    let mut f = Some(f);
    p.push_channel_major(&x, n, &mut |w: &Window<'_>| {
        if let Some(f) = f.take() {
            f(w)
        }
    })
    .unwrap();
    assert!(f.is_none(), "no window completed");
}

#[test]
fn processor_windows_encode_in_config_band_order_and_read_back() {
    let mut config = ProcessingConfig::default();
    config.bands.swap(0, 4); // gamma first: key order must follow the config
    let band_names: Vec<String> = config.bands.iter().map(|b| b.name.clone()).collect();
    with_window(&config, |w| {
        let m = meta(None, &["C3", "C4"]);
        let text = encode(&m, w);
        let head = "{\"schema\":\"eeg.processed/1\",\"session_id\":\"s-42\",\"device_id\":\"bud-7\",\"window_index\":0,\"start_ms\":1700000000000,\"end_ms\":1700000004000,\"sample_rate_hz\":250.0,\"settling\":true,\"channels\":[{\"name\":\"C3\",\"band_power\":{\"gamma\":";
        assert!(text.starts_with(head), "{text}");
        let rec = decode_processed(text.as_bytes()).unwrap();
        assert_eq!(rec.window_index, w.index);
        assert_eq!((rec.start_ms, rec.end_ms), (w.start_ms, w.end_ms));
        assert_eq!(rec.channels.len(), 2);
        for (c, ch) in rec.channels.iter().enumerate() {
            assert_eq!(ch.band_power.names().collect::<Vec<_>>(), band_names);
            assert_eq!(ch.band_power.values().collect::<Vec<_>>(), w.band_power(c));
            assert_eq!(
                ch.relative_power.values().collect::<Vec<_>>(),
                w.relative_power(c)
            );
            assert_eq!(ch.total_power, w.total_power(c));
            let q = w.quality(c);
            assert_eq!(
                ch.quality,
                QualityOwned {
                    rms_uv: q.rms_uv,
                    ptp_uv: q.ptp_uv,
                    line_noise_ratio: q.line_noise_ratio,
                    flatline: q.flatline,
                    railed: q.railed,
                    artifact: q.artifact,
                    good: q.good,
                }
            );
        }
        assert_eq!(rec.indices.engagement, w.indices.engagement);
        assert_eq!(rec.indices.theta_beta, w.indices.theta_beta);
        assert_eq!(rec.indices.alpha_theta, w.indices.alpha_theta);
        // Re-encoding the owned form gives the same bytes.
        assert_eq!(rec.encode(), text.as_bytes());
    });
}

#[test]
fn indices_are_null_when_their_bands_are_not_configured() {
    let mut config = ProcessingConfig::default();
    config.bands.retain(|b| b.name == "delta");
    with_window(&config, |w| {
        let text = encode(&meta(Some("u-9"), &["C3", "C4"]), w);
        assert!(
            text.contains("\"device_id\":\"bud-7\",\"user_id\":\"u-9\",\"window_index\""),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\"indices\":{\"engagement\":null,\"theta_beta\":null,\"alpha_theta\":null}}"
            ),
            "{text}"
        );
        assert!(text.contains("\"band_power\":{\"delta\":"), "{text}");
    });
}
