//! Property tests: decoding never panics on any input, and valid batches and records
//! round-trip exactly.

use eeg_schema::{
    ChannelOwned, IndicesOwned, Limits, OrderedBands, ProcessedRecordOwned, QualityOwned,
    decode_processed, decode_raw, decode_raw_fast, decode_raw_reference,
};
use proptest::prelude::*;

mod support;
use support::{apply, batch, bits, edit, finite, id};

const EXAMPLE: &str = r#"{"schema": "eeg.raw/1", "session_id": "s-42", "device_id": "bud-7", "user_id": "u-1",
 "seq": 0, "start_ms": 1732270000000, "sample_rate_hz": 250.0,
 "channels": ["TP9", "AF7", "AF8", "TP10"], "units": "mV",
 "samples": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}"#;

/// Also that `decode_raw` (fast path first) decides exactly as the serde decoder alone.
fn check_error_is_one_line(bytes: &[u8], limits: &Limits) {
    let got = decode_raw(bytes, limits);
    let reference = decode_raw_reference(bytes, limits);
    if let Some(fast) = decode_raw_fast(bytes, limits) {
        assert_eq!(Ok(&fast), reference.as_ref());
    }
    match (&got, &reference) {
        (Ok(g), Ok(r)) => {
            assert_eq!(g, r);
            assert_eq!(bits(g), bits(r));
        }
        (Err(g), Err(r)) => assert_eq!(g.to_string(), r.to_string()),
        _ => panic!("decode_raw gave {got:?}, the serde decoder {reference:?}"),
    }
    if let Err(e) = got {
        let text = e.to_string();
        assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
        assert!(text.len() < 1000, "{text}");
    }
}

prop_compose! {
    fn record()(
        n_bands in 1usize..=32,
        n_ch in 0usize..4,
        seed in any::<u64>(),
        values in prop::collection::vec(finite(), 32 * 2 * 4 + 8),
        user_id in prop::option::of(id()),
        index in any::<u64>(),
        start_ms in any::<i64>(),
        flags in any::<[bool; 5]>(),
        indices in prop::array::uniform3(prop::option::of(finite())),
    ) -> ProcessedRecordOwned {
        let mut v = values.into_iter();
        let mut next = || v.next().unwrap_or(0.0);
        let names: Vec<String> = (0..n_bands).map(|b| format!("band{}_{b}", seed % 7)).collect();
        let channels = (0..n_ch)
            .map(|c| ChannelOwned {
                name: format!("C{c}"),
                band_power: OrderedBands(names.iter().map(|n| (n.clone(), next())).collect()),
                relative_power: OrderedBands(names.iter().map(|n| (n.clone(), next())).collect()),
                total_power: next(),
                quality: QualityOwned {
                    rms_uv: next(),
                    ptp_uv: next(),
                    line_noise_ratio: next(),
                    flatline: flags[0],
                    railed: flags[1],
                    artifact: flags[2],
                    good: flags[3],
                },
            })
            .collect();
        ProcessedRecordOwned {
            session_id: "s".into(),
            device_id: "d".into(),
            user_id,
            window_index: index,
            start_ms,
            end_ms: start_ms.wrapping_add(4000),
            sample_rate_hz: 250.0,
            settling: flags[4],
            channels,
            indices: IndicesOwned {
                engagement: indices[0],
                theta_beta: indices[1],
                alpha_theta: indices[2],
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_error_is_one_line(&bytes, &Limits::default());
        let _ = decode_processed(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        for e in &edits {
            apply(&mut bytes, e);
        }
        check_error_is_one_line(&bytes, &Limits::default());
        let tight = Limits { max_channels: 3, max_samples_per_channel: 1, ..Limits::default() };
        check_error_is_one_line(&bytes, &tight);
    }

    #[test]
    fn mutated_processed_records_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        let text = r#"{"schema":"eeg.processed/1","session_id":"s","device_id":"d","window_index":0,"start_ms":0,"end_ms":4000,"sample_rate_hz":250.0,"settling":true,"channels":[{"name":"A","band_power":{"alpha":1.0},"relative_power":{"alpha":1.0},"total_power":1.0,"quality":{"rms_uv":1.0,"ptp_uv":2.0,"line_noise_ratio":0.0,"flatline":false,"railed":false,"artifact":false,"good":true}}],"indices":{"engagement":null,"theta_beta":null,"alpha_theta":null}}"#;
        prop_assert!(decode_processed(text.as_bytes()).is_ok());
        let mut bytes = text.as_bytes().to_vec();
        for e in &edits {
            apply(&mut bytes, e);
        }
        if let Err(e) = decode_processed(&bytes) {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn valid_batches_round_trip_exactly(b in batch()) {
        let bytes = b.encode();
        let again = decode_raw(&bytes, &Limits::default()).expect("canonical encoding decodes");
        prop_assert_eq!(bits(&again), bits(&b));
        prop_assert_eq!(&again, &b);
        prop_assert_eq!(again.encode(), bytes);
    }

    #[test]
    fn valid_records_round_trip_exactly(rec in record()) {
        let bytes = rec.encode();
        let again = decode_processed(&bytes).expect("encoded records decode");
        prop_assert_eq!(&again, &rec);
        prop_assert_eq!(again.encode(), bytes);
    }
}
