//! `eeg.raw/1`: the design example, every validation rule and its message, units, limits
//! and the canonical encoding.

use eeg_schema::{Limits, RAW_SCHEMA, RawBatch, RawBatchParts, SchemaError, decode_raw};

const EXAMPLE: &str = r#"{"schema": "eeg.raw/1", "session_id": "s-42", "device_id": "bud-7", "user_id": "u-1",
 "seq": 0, "start_ms": 1732270000000, "sample_rate_hz": 250.0,
 "channels": ["TP9", "AF7", "AF8", "TP10"], "units": "uV",
 "samples": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}"#;

fn decode(s: &str) -> Result<RawBatch, SchemaError> {
    decode_raw(s.as_bytes(), &Limits::default())
}

/// The example with the JSON text of one field replaced (or added at the end).
fn with(field: &str, value: &str) -> String {
    let fields: Vec<(&str, String)> = vec![
        ("schema", "\"eeg.raw/1\"".into()),
        ("session_id", "\"s-42\"".into()),
        ("device_id", "\"bud-7\"".into()),
        ("user_id", "\"u-1\"".into()),
        ("seq", "0".into()),
        ("start_ms", "1732270000000".into()),
        ("sample_rate_hz", "250.0".into()),
        ("channels", "[\"TP9\", \"AF7\", \"AF8\", \"TP10\"]".into()),
        ("units", "\"uV\"".into()),
        (
            "samples",
            "[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]".into(),
        ),
    ];
    let mut found = false;
    let mut parts: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| {
            if k == field {
                found = true;
                format!("\"{k}\": {value}")
            } else {
                format!("\"{k}\": {v}")
            }
        })
        .collect();
    if !found {
        parts.push(format!("\"{field}\": {value}"));
    }
    format!("{{{}}}", parts.join(", "))
}

/// The example without one field.
fn without(field: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    let mut map = v.as_object().unwrap().clone();
    map.remove(field);
    serde_json::Value::Object(map).to_string()
}

fn err(s: &str) -> String {
    let e = decode(s).unwrap_err().to_string();
    assert!(!e.contains('\n'), "message is not one line: {e:?}");
    e
}

fn parts() -> RawBatchParts {
    RawBatchParts {
        session_id: "s".into(),
        device_id: "d".into(),
        user_id: None,
        seq: 3,
        start_ms: 1_000,
        sample_rate_hz: 256.0,
        channels: vec!["A".into(), "B".into()],
        samples: vec![1.0, 2.0, 3.0, 4.0],
    }
}

#[test]
fn design_example_decodes_to_its_values() {
    let b = decode(EXAMPLE).unwrap();
    assert_eq!(b.session_id, "s-42");
    assert_eq!(b.device_id, "bud-7");
    assert_eq!(b.user_id.as_deref(), Some("u-1"));
    assert_eq!(b.seq, 0);
    assert_eq!(b.start_ms, 1_732_270_000_000);
    assert_eq!(b.sample_rate_hz, 250.0);
    assert_eq!(b.channels, ["TP9", "AF7", "AF8", "TP10"]);
    assert_eq!(b.n_channels(), 4);
    assert_eq!(b.samples_per_channel(), 2);
    let rows: Vec<&[f64]> = b.rows().collect();
    assert_eq!(
        rows,
        [&[0.1, 0.2][..], &[0.3, 0.4], &[0.5, 0.6], &[0.7, 0.8]]
    );
    assert_eq!(b.row(2), [0.5, 0.6]);
    assert_eq!(b.samples(), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    let b = decode(&without("user_id")).unwrap();
    assert_eq!(b.user_id, None);
    assert_eq!(decode(&with("user_id", "null")).unwrap().user_id, None);
    let b = decode(&without("units")).unwrap();
    assert_eq!(b.row(0), [0.1, 0.2], "units default to uV");
    assert_eq!(decode(&with("units", "null")).unwrap().row(0), [0.1, 0.2]);
}

#[test]
fn field_order_and_whitespace_do_not_matter() {
    let reordered = r#"{ "samples" : [[1,2]], "channels":["Cz"], "sample_rate_hz":128,
        "start_ms":0, "seq":18446744073709551615, "device_id":"d", "session_id":"s",
        "schema":"eeg.raw/1" }"#;
    let b = decode(reordered).unwrap();
    assert_eq!(b.seq, u64::MAX);
    assert_eq!(b.row(0), [1.0, 2.0]);
    assert_eq!(b.sample_rate_hz, 128.0);
}

#[test]
fn units_are_converted_to_microvolts() {
    let mv = decode(&with("units", "\"mV\"")).unwrap();
    assert_eq!(mv.row(0), [0.1 * 1e3, 0.2 * 1e3]);
    let v = decode(&with("units", "\"V\"")).unwrap();
    assert_eq!(v.row(3), [0.7 * 1e6, 0.8 * 1e6]);
    for micro in ["\"uV\"", "\"µV\"", "\"μV\""] {
        assert_eq!(decode(&with("units", micro)).unwrap().row(1), [0.3, 0.4]);
    }
    assert_eq!(
        err(&with("units", "\"mmHg\"")),
        "field 'units': expected \"uV\" (or \"µV\", \"μV\"), \"mV\" or \"V\", got \"mmHg\""
    );
    assert_eq!(
        err(&with("units", "\"uv\"")),
        "field 'units': expected \"uV\" (or \"µV\", \"μV\"), \"mV\" or \"V\", got \"uv\""
    );
    assert!(err(&with("units", "1")).starts_with("field 'units': invalid type"));
}

#[test]
fn overflow_after_unit_conversion_names_channel_and_sample() {
    let huge = with("samples", "[[1,2],[3,4],[5,1e308],[7,8]]").replace("\"uV\"", "\"V\"");
    assert_eq!(
        err(&huge),
        "field 'samples': channel 2 (\"AF8\") sample 1 is inf µV after conversion from V, \
         must be a finite number"
    );
    let neg = with("samples", "[[-1e306,2],[3,4],[5,6],[7,8]]").replace("\"uV\"", "\"mV\"");
    assert!(err(&neg).contains("channel 0 (\"TP9\") sample 0 is -inf µV"));
}

#[test]
fn out_of_range_numbers_are_invalid_json() {
    let e = err(&with("samples", "[[1e400,2],[3,4],[5,6],[7,8]]"));
    assert!(e.starts_with("invalid JSON at line 1 column"), "{e}");
    assert!(e.contains("number out of range"), "{e}");
}

#[test]
fn schema_must_match_exactly() {
    assert_eq!(
        err(&with("schema", "\"eeg.raw/2\"")),
        "field 'schema': expected \"eeg.raw/1\", got \"eeg.raw/2\""
    );
    assert_eq!(
        err(&with("schema", "\"EEG.RAW/1\"")),
        "field 'schema': expected \"eeg.raw/1\", got \"EEG.RAW/1\""
    );
    assert_eq!(err(&without("schema")), "field 'schema': is missing");
    assert!(err(&with("schema", "1")).starts_with("field 'schema': invalid type: integer"));
    // Another version with other fields: the version is what is reported.
    let v2 = with("schema", "\"eeg.raw/2\"").replace("\"seq\"", "\"sequence\"");
    assert_eq!(
        err(&v2),
        "field 'schema': expected \"eeg.raw/1\", got \"eeg.raw/2\""
    );
}

#[test]
fn ids_must_be_short_non_empty_and_printable() {
    for f in ["session_id", "device_id", "user_id"] {
        assert_eq!(
            err(&with(f, "\"\"")),
            format!("field '{f}': must not be empty")
        );
        assert_eq!(
            err(&with(f, &format!("\"{}\"", "x".repeat(257)))),
            format!("field '{f}': is 257 bytes, at most 256")
        );
        assert_eq!(
            err(&with(f, "\"a\\u0007b\"")),
            format!("field '{f}': contains the control character \\u{{7}}")
        );
        assert!(decode(&with(f, &format!("\"{}\"", "é".repeat(128)))).is_ok());
    }
    assert_eq!(
        err(&without("session_id")),
        "field 'session_id': is missing"
    );
    assert_eq!(err(&without("device_id")), "field 'device_id': is missing");
}

#[test]
fn seq_and_start_ms_are_checked() {
    assert!(
        err(&with("seq", "-1"))
            .starts_with("field 'seq': invalid value: integer '-1', expected u64")
    );
    assert!(err(&with("seq", "1.5")).starts_with("field 'seq': invalid type: floating point"));
    assert_eq!(err(&without("seq")), "field 'seq': is missing");
    assert_eq!(
        err(&with("start_ms", "-1")),
        "field 'start_ms': must be >= 0, got -1"
    );
    assert!(err(&with("start_ms", "\"0\"")).starts_with("field 'start_ms': invalid type: string"));
    assert_eq!(err(&without("start_ms")), "field 'start_ms': is missing");
}

#[test]
fn sample_rate_must_be_positive_finite_and_within_the_limit() {
    assert_eq!(
        err(&with("sample_rate_hz", "-250")),
        "field 'sample_rate_hz': must be a finite number > 0, got -250"
    );
    assert_eq!(
        err(&with("sample_rate_hz", "0")),
        "field 'sample_rate_hz': must be a finite number > 0, got 0"
    );
    assert_eq!(
        err(&with("sample_rate_hz", "100001")),
        "field 'sample_rate_hz': must be at most 100000 (limits.max_sample_rate_hz; raise it in the config file to accept more), got 100001"
    );
    assert!(decode(&with("sample_rate_hz", "100000")).is_ok());
    assert!(
        err(&with("sample_rate_hz", "null")).starts_with("field 'sample_rate_hz': invalid type")
    );
    let mut p = parts();
    p.sample_rate_hz = f64::NAN;
    assert_eq!(
        RawBatch::new(p, &Limits::default())
            .unwrap_err()
            .to_string(),
        "field 'sample_rate_hz': must be a finite number > 0, got NaN"
    );
}

#[test]
fn channel_names_are_checked() {
    assert_eq!(
        err(&with("channels", "[]")),
        "field 'channels': must name at least one channel"
    );
    assert_eq!(
        err(&with("channels", "[\"TP9\", \"\", \"AF8\", \"TP10\"]")),
        "field 'channels': name 1 is empty"
    );
    let long = format!("[\"TP9\", \"AF7\", \"AF8\", \"{}\"]", "x".repeat(65));
    assert_eq!(
        err(&with("channels", &long)),
        "field 'channels': name 3 is 65 bytes, at most 64"
    );
    assert_eq!(
        err(&with("channels", "[\"TP9\", \"A\\tB\", \"AF8\", \"TP10\"]")),
        "field 'channels': name 1 contains the control character \\u{9}"
    );
    assert_eq!(
        err(&with("channels", "[\"A\", \"B\", \"A\", \"C\"]")),
        "field 'channels': \"A\" appears twice, at positions 0 and 2"
    );
    assert_eq!(
        err(&with("channels", "[\"A\", \"B\", \"C\"]")),
        "field 'channels': 3 names but 'samples' has 4 rows"
    );
    assert_eq!(
        err(&with("channels", "[\"A\", \"B\", \"C\", \"D\", \"E\"]")),
        "field 'channels': 5 names but 'samples' has 4 rows"
    );
    assert!(err(&with("channels", "[\"A\", 1]")).starts_with("field 'channels': invalid type"));
    assert_eq!(err(&without("channels")), "field 'channels': is missing");
}

#[test]
fn many_channels_find_duplicates_too() {
    let names: Vec<String> = (0..200)
        .map(|i| format!("\"E{}\"", if i == 150 { 20 } else { i }))
        .collect();
    let rows = vec!["[1]"; 200].join(",");
    let msg = with("channels", &format!("[{}]", names.join(","))).replace(
        "[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]",
        &format!("[{rows}]"),
    );
    assert_eq!(
        err(&msg),
        "field 'channels': \"E20\" appears twice, at positions 20 and 150"
    );
}

#[test]
fn samples_must_be_a_rectangle_of_numbers() {
    assert_eq!(
        err(&with("samples", "[[1,2],[3,4],[5],[7,8]]")),
        "field 'samples': row 2 has 1 values, expected 2 (same as row 0)"
    );
    assert_eq!(
        err(&with("samples", "[[1,2],[3,4,5],[5,6],[7,8]]")),
        "field 'samples': row 1 has 3 values, expected 2 (same as row 0)"
    );
    assert_eq!(
        err(&with("samples", "[[],[],[],[]]")),
        "field 'samples': row 0 is empty, each row needs at least 1 value"
    );
    assert_eq!(
        err(&with("samples", "[]")),
        "field 'channels': 4 names but 'samples' has 0 rows"
    );
    let typed = err(&with("samples", "[[1,2],[3,\"x\"],[5,6],[7,8]]"));
    assert!(
        typed.starts_with(
            "field 'samples': row 1 value 1: invalid type: string \"x\", expected f64"
        ),
        "{typed}"
    );
    assert!(
        err(&with("samples", "[[1,2],[3,null],[5,6],[7,8]]"))
            .starts_with("field 'samples': row 1 value 1: invalid type: null")
    );
    assert!(
        err(&with("samples", "[1,2,3,4]")).starts_with("field 'samples': invalid type: integer")
    );
    assert_eq!(err(&without("samples")), "field 'samples': is missing");
}

#[test]
fn nan_and_infinity_are_rejected() {
    // JSON has no NaN literal: the parser rejects it.
    let e = err(&with("samples", "[[NaN,2],[3,4],[5,6],[7,8]]"));
    assert!(e.starts_with("invalid JSON at line 1 column"), "{e}");
    let mut p = parts();
    p.samples[3] = f64::INFINITY;
    assert_eq!(
        RawBatch::new(p, &Limits::default())
            .unwrap_err()
            .to_string(),
        "field 'samples': channel 1 (\"B\") sample 1 is inf, must be a finite number"
    );
}

#[test]
fn unknown_and_repeated_fields_are_rejected() {
    let typo = EXAMPLE.replace("\"units\"", "\"unit\"");
    let e = err(&typo);
    assert!(
        e.starts_with("field 'unit': unknown field (eeg.raw/1 has schema, "),
        "{e}"
    );
    let e = err(&with("extra", "{\"deep\": [1, 2, {\"x\": null}]}"));
    assert!(e.starts_with("field 'extra': unknown field"), "{e}");
    let twice = EXAMPLE.replace("\"seq\": 0", "\"seq\": 0, \"seq\": 1");
    assert_eq!(err(&twice), "field 'seq': appears twice");
    let weird = with("a\\nb", "1");
    assert!(err(&weird).starts_with("field 'a\\nb': unknown field"));
}

#[test]
fn malformed_json_names_the_position() {
    assert_eq!(
        err("{\"schema\": \"eeg.raw/1\" \"seq\": 1}"),
        "invalid JSON at line 1 column 24: expected ',' or '}'"
    );
    assert!(err("").starts_with("invalid JSON at line 1 column 0: EOF while parsing"));
    assert!(err("{\"schema\": ").starts_with("invalid JSON at line 1 column 11: EOF"));
    assert!(err(&format!("{EXAMPLE} x")).contains("trailing characters"));
    assert!(
        decode(&format!("{EXAMPLE} \n")).is_ok(),
        "trailing whitespace is fine"
    );
    let e = decode_raw(b"{\"schema\": \"\xff\"}", &Limits::default()).unwrap_err();
    assert!(matches!(e, SchemaError::Json { .. }), "{e}");
    assert!(e.to_string().contains("invalid unicode"), "{e}");
    assert_eq!(
        err("[1, 2]"),
        "invalid message at line 1 column 0: invalid type: sequence, expected an eeg.raw/1 JSON object"
    );
    assert!(err("null").starts_with("invalid message at line 1 column 4: invalid type: null"));
}

#[test]
fn long_or_multiline_input_is_quoted_on_one_short_line() {
    let e = err(&with(
        "schema",
        &format!("\"{}\\n{}\"", "a".repeat(10), "b".repeat(5000)),
    ));
    assert!(e.len() < 200, "{e}");
    assert!(e.starts_with("field 'schema': expected \"eeg.raw/1\", got \"aaaaaaaaaa\\nbbb"));
    let e = err(&with("samples", &format!("[[\"{}\"]]", "z".repeat(5000))));
    assert!(e.len() < 400, "{e}");
}

#[test]
fn message_size_is_limited_before_parsing() {
    let small = Limits {
        max_message_bytes: 100,
        ..Limits::default()
    };
    // Not even JSON: the size is checked first.
    let junk = vec![b'x'; 101];
    let e = decode_raw(&junk, &small).unwrap_err();
    assert_eq!(
        e,
        SchemaError::TooLarge {
            size: 101,
            limit: 100
        }
    );
    assert_eq!(
        e.to_string(),
        "message is 101 bytes, more than the limit of 100"
    );
    let exact = Limits {
        max_message_bytes: EXAMPLE.len(),
        ..Limits::default()
    };
    assert!(decode_raw(EXAMPLE.as_bytes(), &exact).is_ok());
    assert_eq!(Limits::default().max_message_bytes, 4 * 1024 * 1024);
}

#[test]
fn channel_and_sample_counts_are_limited() {
    let two = Limits {
        max_channels: 2,
        ..Limits::default()
    };
    assert_eq!(
        decode_raw(EXAMPLE.as_bytes(), &two)
            .unwrap_err()
            .to_string(),
        "field 'samples': more than 2 rows, at most 2 (limits.max_channels; raise it in the config file to accept more)"
    );
    let names_first =
        with("samples", "[[1]]").replace("\"samples\": [[1]]", "\"samples\": [[1],[2],[3],[4]]");
    assert!(decode_raw(names_first.as_bytes(), &two).is_err());
    let mut p = parts();
    p.channels = vec!["A".into(), "B".into(), "C".into()];
    p.samples = vec![0.0; 3];
    assert_eq!(
        RawBatch::new(p, &two).unwrap_err().to_string(),
        "field 'channels': 3 channels, at most 2 (limits.max_channels; raise it in the config file to accept more)"
    );
    let one = Limits {
        max_samples_per_channel: 1,
        ..Limits::default()
    };
    assert_eq!(
        decode_raw(EXAMPLE.as_bytes(), &one)
            .unwrap_err()
            .to_string(),
        "field 'samples': row 0 has more than 1 values (limit max_samples_per_channel)"
    );
    assert_eq!(
        RawBatch::new(parts(), &one).unwrap_err().to_string(),
        "field 'samples': 2 samples per channel, at most 1 (limit max_samples_per_channel)"
    );
    let slow = Limits {
        max_sample_rate_hz: 200.0,
        ..Limits::default()
    };
    assert!(
        decode_raw(EXAMPLE.as_bytes(), &slow)
            .unwrap_err()
            .to_string()
            .starts_with("field 'sample_rate_hz': must be at most 200")
    );
    let d = Limits::default();
    assert_eq!(
        (
            d.max_channels,
            d.max_samples_per_channel,
            d.max_sample_rate_hz
        ),
        (1024, 65_536, 100_000.0)
    );
}

/// A row of `n` zeros as JSON.
fn zeros(n: usize) -> String {
    format!("[{}]", vec!["0"; n].join(","))
}

#[test]
fn every_over_long_row_gets_the_limit_message() {
    let limit = Limits::default().max_samples_per_channel;
    let one_channel = |row: String| {
        with("channels", "[\"A\"]").replace(
            "\"samples\": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]",
            &format!("\"samples\": [{row}]"),
        )
    };
    assert_eq!(
        decode(&one_channel(zeros(limit)))
            .unwrap()
            .samples_per_channel(),
        limit
    );
    let want = format!(
        "field 'samples': row 0 has more than {limit} values (limit max_samples_per_channel)"
    );
    // One past the limit ends the row where the check stops reading; two past, and a row of
    // a million (2 MB, within the message size limit), leave values after it.
    for n in [limit + 1, limit + 2, limit + 3, 1_000_000] {
        let e = decode(&one_channel(zeros(n))).unwrap_err();
        assert_eq!(e.to_string(), want, "row of {n} values");
        assert_eq!(e.field(), Some("samples"));
    }
    // A later row, too long after a first row of the right length.
    let two = with("channels", "[\"A\", \"B\"]").replace(
        "\"samples\": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]",
        &format!("\"samples\": [{}, {}]", zeros(3), zeros(limit + 2)),
    );
    assert_eq!(
        err(&two),
        format!(
            "field 'samples': row 1 has more than {limit} values (limit max_samples_per_channel)"
        )
    );
    // The same with a small limit, in a message that is otherwise the example.
    let one = Limits {
        max_samples_per_channel: 1,
        ..Limits::default()
    };
    let three = with("samples", "[[1, 2, 3], [1], [1], [1]]");
    assert_eq!(
        decode_raw(three.as_bytes(), &one).unwrap_err().to_string(),
        "field 'samples': row 0 has more than 1 values (limit max_samples_per_channel)"
    );
}

#[test]
fn errors_name_their_field_programmatically() {
    let e = decode(&with("start_ms", "-5")).unwrap_err();
    assert_eq!(e.field(), Some("start_ms"));
    assert_eq!(decode("[").unwrap_err().field(), None);
}

#[test]
fn new_validates_like_decode() {
    let b = RawBatch::new(parts(), &Limits::default()).unwrap();
    assert_eq!(b.row(1), [3.0, 4.0]);
    let mut p = parts();
    p.session_id.clear();
    assert_eq!(
        RawBatch::new(p, &Limits::default())
            .unwrap_err()
            .to_string(),
        "field 'session_id': must not be empty"
    );
    let mut p = parts();
    p.samples.clear();
    assert_eq!(
        RawBatch::new(p, &Limits::default())
            .unwrap_err()
            .to_string(),
        "field 'samples': rows are empty, each needs at least 1 value"
    );
    let mut p = parts();
    p.start_ms = -1;
    assert!(RawBatch::new(p, &Limits::default()).is_err());
    assert_eq!(b.clone().into_parts(), parts());
}

#[test]
fn encoding_is_canonical_and_decodes_to_the_same_batch() {
    let b = decode(EXAMPLE).unwrap();
    let text = String::from_utf8(b.encode()).unwrap();
    assert_eq!(
        text,
        "{\"schema\":\"eeg.raw/1\",\"session_id\":\"s-42\",\"device_id\":\"bud-7\",\"user_id\":\"u-1\",\
         \"seq\":0,\"start_ms\":1732270000000,\"sample_rate_hz\":250.0,\
         \"channels\":[\"TP9\",\"AF7\",\"AF8\",\"TP10\"],\"units\":\"uV\",\
         \"samples\":[[0.1,0.2],[0.3,0.4],[0.5,0.6],[0.7,0.8]]}"
    );
    assert_eq!(decode(&text).unwrap(), b);

    // Converted samples are written in µV and read back bit for bit.
    let v = decode(&with("units", "\"V\"")).unwrap();
    let again = decode_raw(&v.encode(), &Limits::default()).unwrap();
    assert_eq!(again, v);
    let bits = |b: &RawBatch| b.samples().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&again), bits(&v));

    // No user_id: the field is left out.
    let mut p = parts();
    p.samples = vec![-0.0, 5e-324, f64::MAX, -1.0 / 3.0];
    let b = RawBatch::new(p, &Limits::default()).unwrap();
    let mut out = b"prefix".to_vec();
    b.encode_into(&mut out);
    assert!(out.starts_with(b"prefix{\"schema\":\"eeg.raw/1\""));
    let text = std::str::from_utf8(&out[6..]).unwrap();
    assert!(!text.contains("user_id"), "{text}");
    let again = decode(text).unwrap();
    assert_eq!(bits(&again), bits(&b));
    assert_eq!(again, b);
    assert_eq!(RAW_SCHEMA, "eeg.raw/1");
}
