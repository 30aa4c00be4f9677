//! Binary `eeg.raw/1`: messages built from the .proto itself (as a gateway in another
//! language would build them) decode like their JSON twins, every rule has its one-line
//! message, EDF/BDF recordings replayed as digital values decode bit for bit to what the
//! EDF reader yields, no input panics, and the encoded sizes.

use eeg_edf::{DigitalRecord, EdfReader, Record, WriteFormat, WriteSignal, WriteSpec, write_edf};
use eeg_schema::{
    Limits, PROTOBUF_CONTENT_TYPE, RAW_PROTO, RawBatch, RawEncoding, RawMeta, RawSamples, RawUnits,
    SchemaError, decode_raw, decode_raw_as, decode_raw_protobuf, encode_raw_protobuf,
};
use proptest::prelude::*;
use prost::Message as _;
use protox::prost_reflect::{DescriptorPool, DynamicMessage, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

mod support;
use support::{batch, bits};

// ---------------------------------------------------------------------------------------
// Messages built with the .proto's descriptors.

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| support::proto_pool("eeg_raw_v1.proto"))
}

fn message(name: &str) -> DynamicMessage {
    DynamicMessage::new(
        pool()
            .get_message_by_name(&format!("eeg.raw.v1.{name}"))
            .expect("message in the .proto"),
    )
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn strings(v: &[&str]) -> Value {
    Value::List(v.iter().map(|x| s(x)).collect())
}

fn doubles(v: &[f64]) -> Value {
    Value::List(v.iter().map(|&x| Value::F64(x)).collect())
}

fn digital(bps: u32, data: &[u8], scale: &[f64], offset: &[f64]) -> Value {
    let mut d = message("DigitalSamples");
    d.set_field_by_name("bytes_per_sample", Value::U32(bps));
    d.set_field_by_name("data", Value::Bytes(data.to_vec().into()));
    d.set_field_by_name("scale", doubles(scale));
    d.set_field_by_name("offset", doubles(offset));
    Value::Message(d)
}

fn float32(values: &[f32]) -> Value {
    let mut f = message("FloatSamples");
    f.set_field_by_name(
        "values",
        Value::List(values.iter().map(|&x| Value::F32(x)).collect()),
    );
    Value::Message(f)
}

fn float64(values: &[f64]) -> Value {
    let mut f = message("DoubleSamples");
    f.set_field_by_name("values", doubles(values));
    Value::Message(f)
}

/// Little-endian 24-bit two's complement.
fn i24(values: &[i32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| v.to_le_bytes()[..3].to_vec())
        .collect()
}

/// The design example of the crate documentation in binary form, 24-bit digital with
/// scale 0.1 and offset 0: values 1..=8 become 0.1, 0.2, ... 0.8 µV.
fn example() -> DynamicMessage {
    let mut m = message("RawBatch");
    m.set_field_by_name("schema", s("eeg.raw/1"));
    m.set_field_by_name("session_id", s("s-42"));
    m.set_field_by_name("device_id", s("bud-7"));
    m.set_field_by_name("user_id", s("u-1"));
    m.set_field_by_name("seq", Value::U64(0));
    m.set_field_by_name("start_ms", Value::I64(1_732_270_000_000));
    m.set_field_by_name("sample_rate_hz", Value::F64(250.0));
    m.set_field_by_name("channels", strings(&["TP9", "AF7", "AF8", "TP10"]));
    m.set_field_by_name("units", s("uV"));
    m.set_field_by_name(
        "digital",
        digital(3, &i24(&[1, 2, 3, 4, 5, 6, 7, 8]), &[0.1; 4], &[0.0; 4]),
    );
    m
}

/// The example with one field set to `value`.
fn with(name: &str, value: Value) -> DynamicMessage {
    let mut m = example();
    m.set_field_by_name(name, value);
    m
}

/// The example without one field.
fn without(name: &str) -> DynamicMessage {
    let mut m = example();
    m.clear_field_by_name(name);
    m
}

fn decode_msg(m: &DynamicMessage) -> Result<RawBatch, SchemaError> {
    decode_raw_protobuf(&m.encode_to_vec(), &Limits::default())
}

fn err_bytes(bytes: &[u8], limits: &Limits) -> String {
    let e = decode_raw_protobuf(bytes, limits)
        .expect_err("the message is invalid")
        .to_string();
    assert!(
        !e.contains('\n') && !e.contains('\r'),
        "not one line: {e:?}"
    );
    e
}

fn err(m: &DynamicMessage) -> String {
    err_bytes(&m.encode_to_vec(), &Limits::default())
}

const EXAMPLE_JSON: &str = r#"{"schema": "eeg.raw/1", "session_id": "s-42", "device_id": "bud-7", "user_id": "u-1",
 "seq": 0, "start_ms": 1732270000000, "sample_rate_hz": 250.0,
 "channels": ["TP9", "AF7", "AF8", "TP10"], "units": "uV",
 "samples": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}"#;

// ---------------------------------------------------------------------------------------
// Decoding, and agreement with JSON.

#[test]
fn proto_text_is_the_contract_file() {
    support::assert_contract_file("eeg_raw_v1.proto", RAW_PROTO, "eeg.raw.v1");
}

#[test]
fn design_example_decodes_like_its_json() {
    let json = decode_raw(EXAMPLE_JSON.as_bytes(), &Limits::default()).unwrap();
    // Digital: 0.1 * (0 + d) is not d / 10 for every d, so this compares with the values
    // the formula gives, then as float64 with the JSON's values.
    let b = decode_msg(&example()).unwrap();
    assert_eq!(b.session_id, "s-42");
    assert_eq!(b.device_id, "bud-7");
    assert_eq!(b.user_id.as_deref(), Some("u-1"));
    assert_eq!(
        (b.seq, b.start_ms, b.sample_rate_hz),
        (0, 1_732_270_000_000, 250.0)
    );
    assert_eq!(b.channels, ["TP9", "AF7", "AF8", "TP10"]);
    assert_eq!((b.n_channels(), b.samples_per_channel()), (4, 2));
    let expected: Vec<f64> = (1..=8).map(|d| 0.1 * (0.0 + f64::from(d))).collect();
    assert_eq!(b.samples(), expected);
    let f64s = with(
        "float64",
        float64(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]),
    );
    let b = decode_msg(&f64s).unwrap();
    assert_eq!(b, json);
    assert_eq!(bits(&b), bits(&json));
}

#[test]
fn digital_samples_are_scaled_in_edflib_order() {
    // scale * (offset + d) and d * scale + offset * scale differ in the last bit for these.
    let (scale, offset) = (0.0457763671875 * 1.1, 3.3);
    let data = [-8_388_608, -1, 0, 1, 12_345, 8_388_607];
    let m = with("channels", strings(&["A"])).tap(|m| {
        m.set_field_by_name("digital", digital(3, &i24(&data), &[scale], &[offset]));
    });
    let b = decode_msg(&m).unwrap();
    let want: Vec<f64> = data
        .iter()
        .map(|&d| scale * (offset + f64::from(d)))
        .collect();
    assert_eq!(b.samples(), want);
    let other: Vec<f64> = data
        .iter()
        .map(|&d| f64::from(d) * scale + offset * scale)
        .collect();
    assert_ne!(want, other, "the test values tell the two orders apart");

    // 16- and 32-bit values, sign-extended.
    for (bps, bytes, values) in [
        (
            2,
            [0x00u8, 0x80, 0xff, 0x7f, 0xff, 0xff].to_vec(),
            vec![-32768.0, 32767.0, -1.0],
        ),
        (
            4,
            [
                0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0x7f, 0xfe, 0xff, 0xff, 0xff,
            ]
            .to_vec(),
            vec![f64::from(i32::MIN), f64::from(i32::MAX), -2.0],
        ),
    ] {
        let m = with("channels", strings(&["A"])).tap(|m| {
            m.set_field_by_name("digital", digital(bps, &bytes, &[1.0], &[0.0]));
        });
        assert_eq!(decode_msg(&m).unwrap().samples(), values, "{bps} bytes");
    }
}

#[test]
fn units_convert_like_json() {
    let physical = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
    for (unit, factor) in [
        ("", 1.0),
        ("uV", 1.0),
        ("µV", 1.0),
        ("μV", 1.0),
        ("mV", 1e3),
        ("V", 1e6),
    ] {
        let json_unit = if unit.is_empty() { "uV" } else { unit };
        let json = decode_raw(
            EXAMPLE_JSON
                .replace("\"units\": \"uV\"", &format!("\"units\": \"{json_unit}\""))
                .as_bytes(),
            &Limits::default(),
        )
        .unwrap();
        let m = with("units", s(unit)).tap(|m| m.set_field_by_name("float64", float64(&physical)));
        let b = decode_msg(&m).unwrap();
        assert_eq!(bits(&b), bits(&json), "{unit:?}");
        let want: Vec<f64> = physical.iter().map(|v| v * factor).collect();
        assert_eq!(b.samples(), want, "{unit:?}");
        assert_eq!(
            RawUnits::from_name(json_unit).unwrap().to_microvolts(),
            factor
        );
    }
    // The unit applies after the digital scale, as the EDF reader applies its factor.
    let m = with("units", s("mV"));
    let want: Vec<f64> = (1..=8).map(|d| 0.1 * (0.0 + f64::from(d)) * 1e3).collect();
    assert_eq!(decode_msg(&m).unwrap().samples(), want);
}

#[test]
fn float32_values_are_widened_exactly() {
    let values = [0.1f32, -0.2, 1e-45, f32::MAX, -0.0, 3.0, 16_777_217.0, 0.3];
    let m = with("float32", float32(&values));
    let b = decode_msg(&m).unwrap();
    let want: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
    assert_eq!(
        bits(&b),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let mv = with("units", s("mV")).tap(|m| m.set_field_by_name("float32", float32(&values)));
    let want: Vec<f64> = values.iter().map(|&v| f64::from(v) * 1e3).collect();
    assert_eq!(decode_msg(&mv).unwrap().samples(), want);
}

#[test]
fn unpacked_repeated_values_are_accepted() {
    // proto3 writers pack repeated numbers, but parsers must take them one by one too.
    let mut float_samples = vec![];
    for v in [1.5f32, 2.5] {
        float_samples.push(0x0d); // field 1, 32-bit
        float_samples.extend_from_slice(&v.to_le_bytes());
    }
    let mut bytes = with("channels", strings(&["A"]))
        .tap(|m| {
            m.clear_field_by_name("digital");
        })
        .encode_to_vec();
    bytes.push(0x5a); // field 11 (float32), length-delimited
    bytes.push(float_samples.len() as u8);
    bytes.extend_from_slice(&float_samples);
    let b = decode_raw_protobuf(&bytes, &Limits::default()).unwrap();
    assert_eq!(b.samples(), [1.5, 2.5]);
}

#[test]
fn unknown_fields_are_skipped() {
    let mut bytes = example().encode_to_vec();
    // Field 99 as a varint, as a newer writer might add.
    bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
    assert_eq!(
        decode_raw_protobuf(&bytes, &Limits::default()).unwrap(),
        decode_msg(&example()).unwrap()
    );
}

// ---------------------------------------------------------------------------------------
// One test per rule, with its exact message.

#[test]
fn message_size_is_limited_before_decoding() {
    let small = Limits {
        max_message_bytes: 10,
        ..Limits::default()
    };
    assert_eq!(
        err_bytes(&[0xff; 11], &small),
        "message is 11 bytes, more than the limit of 10"
    );
}

#[test]
fn malformed_protobuf_says_where() {
    let limits = Limits::default();
    // A string field whose length runs past the end.
    assert_eq!(
        err_bytes(&[0x0a, 0x05, b'e'], &limits),
        "invalid protobuf: RawBatch.schema: buffer underflow"
    );
    // A channel name that is not UTF-8.
    assert_eq!(
        err_bytes(&[0x42, 0x02, 0xc3, 0x28], &limits),
        "invalid protobuf: RawBatch.channels: invalid string value: data is not UTF-8 encoded"
    );
    // seq sent as a string.
    assert_eq!(
        err_bytes(&[0x2a, 0x01, b'1'], &limits),
        "invalid protobuf: RawBatch.seq: invalid wire type: LengthDelimited (expected Varint)"
    );
    // Inside the digital samples.
    assert_eq!(
        err_bytes(&[0x52, 0x02, 0x1a, 0x08], &limits),
        "invalid protobuf: RawBatch.samples: DigitalSamples.scale: buffer underflow"
    );
    // Unpacked values inside a packed-capable field, cut short.
    assert_eq!(
        err_bytes(&[0x5a, 0x03, 0x0d, 0x00, 0x00], &limits),
        "invalid protobuf: RawBatch.samples: FloatSamples.values: buffer underflow"
    );
    assert_eq!(
        err_bytes(&[0x07], &limits),
        "invalid protobuf: invalid wire type value: 7"
    );
    // JSON sent with the protobuf content type.
    let e = err_bytes(EXAMPLE_JSON.as_bytes(), &limits);
    assert!(e.starts_with("invalid protobuf: "), "{e}");
}

#[test]
fn schema_must_be_eeg_raw_1() {
    assert_eq!(err(&without("schema")), "field 'schema': is missing");
    assert_eq!(
        err(&with("schema", s("eeg.raw/2"))),
        "field 'schema': expected \"eeg.raw/1\", got \"eeg.raw/2\""
    );
    assert_eq!(
        err(&with("schema", s("a\nb"))),
        "field 'schema': expected \"eeg.raw/1\", got \"a\\nb\""
    );
}

#[test]
fn units_must_be_known() {
    assert_eq!(
        err(&with("units", s("nV"))),
        "field 'units': expected \"uV\" (or \"µV\", \"μV\"), \"mV\" or \"V\", got \"nV\""
    );
    assert_eq!(RawUnits::from_name("nV"), None);
    assert_eq!(RawUnits::from_name("uv"), None);
}

#[test]
fn samples_must_be_set() {
    assert_eq!(err(&without("digital")), "field 'samples': is missing");
}

#[test]
fn bytes_per_sample_must_be_2_3_or_4() {
    for bps in [0, 1, 5, 8] {
        let m = with("digital", digital(bps, &[0; 40], &[0.1; 4], &[0.0; 4]));
        assert_eq!(
            err(&m),
            format!("field 'digital.bytes_per_sample': must be 2, 3 or 4, got {bps}")
        );
    }
}

#[test]
fn digital_data_must_be_whole_samples() {
    let m = with("digital", digital(3, &[0; 25], &[0.1; 4], &[0.0; 4]));
    assert_eq!(
        err(&m),
        "field 'digital.data': has 25 bytes, not a multiple of bytes_per_sample 3"
    );
}

#[test]
fn values_must_split_into_one_row_per_channel() {
    let m = with("digital", digital(3, &i24(&[1; 9]), &[0.1; 4], &[0.0; 4]));
    assert_eq!(
        err(&m),
        "field 'samples': 9 values do not split into 4 rows of equal length"
    );
    let m = with("float32", float32(&[1.0; 6]));
    assert_eq!(
        err(&m),
        "field 'samples': 6 values do not split into 4 rows of equal length"
    );
    let m = with("float64", float64(&[1.0; 3]));
    assert_eq!(
        err(&m),
        "field 'samples': 3 values do not split into 4 rows of equal length"
    );
}

#[test]
fn scale_and_offset_need_one_value_per_channel() {
    let data = i24(&[1; 8]);
    assert_eq!(
        err(&with("digital", digital(3, &data, &[0.1; 3], &[0.0; 4]))),
        "field 'digital.scale': has 3 values, expected 4 (one per channel)"
    );
    assert_eq!(
        err(&with("digital", digital(3, &data, &[0.1; 4], &[0.0; 5]))),
        "field 'digital.offset': has 5 values, expected 4 (one per channel)"
    );
    assert_eq!(
        err(&with("digital", digital(3, &data, &[], &[]))),
        "field 'digital.scale': has 0 values, expected 4 (one per channel)"
    );
}

#[test]
fn scale_and_offset_must_be_finite() {
    let data = i24(&[1; 8]);
    assert_eq!(
        err(&with(
            "digital",
            digital(3, &data, &[0.1, f64::NAN, 0.1, 0.1], &[0.0; 4])
        )),
        "field 'digital.scale': channel 1 (\"AF7\") is NaN, must be a finite number"
    );
    assert_eq!(
        err(&with(
            "digital",
            digital(3, &data, &[0.1; 4], &[0.0, 0.0, 0.0, f64::NEG_INFINITY])
        )),
        "field 'digital.offset': channel 3 (\"TP10\") is -inf, must be a finite number"
    );
}

#[test]
fn rows_must_not_be_empty() {
    for m in [
        with("digital", digital(3, &[], &[0.1; 4], &[0.0; 4])),
        with("float32", float32(&[])),
        with("float64", float64(&[])),
    ] {
        assert_eq!(
            err(&m),
            "field 'samples': rows are empty, each needs at least 1 value"
        );
    }
}

#[test]
fn samples_must_be_finite_after_conversion() {
    let m = with(
        "float64",
        float64(&[0.1, 0.2, 0.3, 0.4, 0.5, f64::NAN, 0.7, 0.8]),
    );
    assert_eq!(
        err(&m),
        "field 'samples': channel 2 (\"AF8\") sample 1 is NaN, must be a finite number"
    );
    let m = with("units", s("V")).tap(|m| {
        m.set_field_by_name(
            "float64",
            float64(&[0.1, 1e303, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]),
        );
    });
    assert_eq!(
        err(&m),
        "field 'samples': channel 0 (\"TP9\") sample 1 is inf µV after conversion from V, must be a finite number"
    );
    let m = with(
        "float32",
        float32(&[0.1, 0.2, 0.3, f32::INFINITY, 0.5, 0.6, 0.7, 0.8]),
    );
    assert_eq!(
        err(&m),
        "field 'samples': channel 1 (\"AF7\") sample 1 is inf, must be a finite number"
    );
    // A finite scale and offset can still overflow.
    let m = with(
        "digital",
        digital(3, &i24(&[8_000_000; 8]), &[1e303; 4], &[0.0; 4]),
    );
    assert_eq!(
        err(&m),
        "field 'samples': channel 0 (\"TP9\") sample 0 is inf, must be a finite number"
    );
}

#[test]
fn header_fields_are_checked_as_in_json() {
    assert_eq!(
        err(&without("session_id")),
        "field 'session_id': must not be empty"
    );
    assert_eq!(
        err(&with("device_id", s(&"d".repeat(257)))),
        "field 'device_id': is 257 bytes, at most 256"
    );
    // Set but empty is not "no user".
    assert_eq!(
        err(&with("user_id", s(""))),
        "field 'user_id': must not be empty"
    );
    assert_eq!(decode_msg(&without("user_id")).unwrap().user_id, None);
    assert_eq!(
        err(&with("start_ms", Value::I64(-1))),
        "field 'start_ms': must be >= 0, got -1"
    );
    assert_eq!(
        err(&without("sample_rate_hz")),
        "field 'sample_rate_hz': must be a finite number > 0, got 0"
    );
    assert_eq!(
        err(&with("channels", strings(&["TP9", "AF7", "TP9", "TP10"]))),
        "field 'channels': \"TP9\" appears twice, at positions 0 and 2"
    );
    assert_eq!(
        err(&with("channels", strings(&[]))),
        "field 'channels': must name at least one channel"
    );
    assert_eq!(
        err(&with("channels", strings(&["TP9", "A\tF7", "AF8", "TP10"]))),
        "field 'channels': name 1 contains the control character \\u{9}"
    );
}

#[test]
fn counts_and_rate_are_limited() {
    let bytes = example().encode_to_vec();
    let three = Limits {
        max_channels: 3,
        ..Limits::default()
    };
    assert_eq!(
        err_bytes(&bytes, &three),
        "field 'channels': 4 channels, at most 3 (limits.max_channels; raise it in the config file to accept more)"
    );
    let one = Limits {
        max_samples_per_channel: 1,
        ..Limits::default()
    };
    assert_eq!(
        err_bytes(&bytes, &one),
        "field 'samples': 2 samples per channel, at most 1 (limit max_samples_per_channel)"
    );
    let slow = Limits {
        max_sample_rate_hz: 200.0,
        ..Limits::default()
    };
    assert_eq!(
        err_bytes(&bytes, &slow),
        "field 'sample_rate_hz': must be at most 200 (limits.max_sample_rate_hz; raise it in the config file to accept more), got 250"
    );
    // Names are counted before they are decoded: a message of 5000 empty names is rejected
    // as too many channels, not as empty names.
    let mut many = vec![];
    for _ in 0..5000 {
        many.extend_from_slice(&[0x42, 0x00]);
    }
    assert_eq!(
        err_bytes(&many, &Limits::default()),
        "field 'channels': 5000 channels, at most 1024 (limits.max_channels; raise it in the config file to accept more)"
    );
}

// ---------------------------------------------------------------------------------------
// content-type and the encoding-independent entry point.

#[test]
fn content_type_chooses_the_decoder() {
    let ok = |v: &str| RawEncoding::from_content_type(Some(v.as_bytes())).unwrap();
    assert_eq!(
        RawEncoding::from_content_type(None).unwrap(),
        RawEncoding::Json
    );
    assert_eq!(ok("application/json"), RawEncoding::Json);
    assert_eq!(ok("application/json; charset=utf-8"), RawEncoding::Json);
    assert_eq!(ok("Application/JSON;charset=UTF-8"), RawEncoding::Json);
    assert_eq!(ok(PROTOBUF_CONTENT_TYPE), RawEncoding::Protobuf);
    assert_eq!(ok("application/protobuf"), RawEncoding::Protobuf);
    assert_eq!(
        ok("application/x-protobuf; messageType=eeg.raw.v1.RawBatch"),
        RawEncoding::Protobuf
    );
    assert_eq!(
        ok("application/x-protobuf;messageType=\".eeg.raw.v1.RawBatch\";"),
        RawEncoding::Protobuf
    );
    assert_eq!(
        ok(" application/x-protobuf ; delimited=false"),
        RawEncoding::Protobuf
    );
    assert_eq!(RawEncoding::Json.name(), "json");
    assert_eq!(RawEncoding::Protobuf.name(), "protobuf");
    assert_eq!(
        RawEncoding::Protobuf.content_type(),
        "application/x-protobuf"
    );
    assert_eq!(RawEncoding::Json.content_type(), "application/json");
    assert_eq!(RawEncoding::default(), RawEncoding::Json);
}

#[test]
fn unknown_content_types_are_rejected_by_name() {
    let e = |v: &[u8]| {
        let e = RawEncoding::from_content_type(Some(v)).unwrap_err();
        assert!(matches!(
            e,
            SchemaError::Header {
                header: "content-type",
                ..
            }
        ));
        e.to_string()
    };
    assert_eq!(
        e(b"text/plain"),
        "header 'content-type': expected application/json or application/x-protobuf, got \"text/plain\""
    );
    assert_eq!(
        e(b""),
        "header 'content-type': expected application/json or application/x-protobuf, got \"\""
    );
    assert_eq!(
        e(b"application/jsonx"),
        "header 'content-type': expected application/json or application/x-protobuf, got \"application/jsonx\""
    );
    assert_eq!(
        e(b"application/json; charset"),
        "header 'content-type': expected application/json or application/x-protobuf, got \"application/json; charset\""
    );
    assert_eq!(
        e(b"application/x-\xffprotobuf\n"),
        "header 'content-type': expected application/json or application/x-protobuf, got \"application/x-\u{fffd}protobuf\\n\""
    );
    assert_eq!(
        e(b"application/x-protobuf; messageType=eeg.processed.v1.Record"),
        "header 'content-type': messageType \"eeg.processed.v1.Record\" is not eeg.raw.v1.RawBatch"
    );
    assert!(e(&[b'x'; 1000]).len() < 200);
}

#[test]
fn decode_raw_as_follows_the_encoding() {
    let limits = Limits::default();
    let json = decode_raw_as(EXAMPLE_JSON.as_bytes(), RawEncoding::Json, &limits).unwrap();
    let binary = with(
        "float64",
        float64(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]),
    );
    let bin = decode_raw_as(&binary.encode_to_vec(), RawEncoding::Protobuf, &limits).unwrap();
    assert_eq!(json, bin);
    assert!(decode_raw_as(EXAMPLE_JSON.as_bytes(), RawEncoding::Protobuf, &limits).is_err());
    assert!(
        decode_raw_as(&binary.encode_to_vec(), RawEncoding::Json, &limits)
            .unwrap_err()
            .to_string()
            .starts_with("invalid JSON")
    );
}

// ---------------------------------------------------------------------------------------
// Encoding.

fn meta<'a>(channels: &'a [String], units: RawUnits) -> RawMeta<'a> {
    RawMeta {
        session_id: "s-42",
        device_id: "bud-7",
        user_id: None,
        seq: 7,
        start_ms: 1_732_270_000_000,
        sample_rate_hz: 500.0,
        channels,
        units,
    }
}

#[test]
fn encoder_output_decodes_with_the_proto() {
    let channels: Vec<String> = vec!["C3".into(), "C4".into()];
    let data = [-8_388_608, -1, 0, 8_388_607];
    let mut out = vec![];
    encode_raw_protobuf(
        &meta(&channels, RawUnits::Millivolts),
        RawSamples::Digital {
            bytes_per_sample: 3,
            data: &data,
            scale: &[0.5, 0.25],
            offset: &[1.0, -1.0],
        },
        &mut out,
    )
    .unwrap();
    let m = DynamicMessage::decode(
        pool().get_message_by_name("eeg.raw.v1.RawBatch").unwrap(),
        out.as_slice(),
    )
    .unwrap();
    assert_eq!(m.get_field_by_name("units").unwrap().as_str(), Some("mV"));
    assert_eq!(m.get_field_by_name("seq").unwrap().as_u64(), Some(7));
    let b = decode_raw_protobuf(&out, &Limits::default()).unwrap();
    assert_eq!(
        b.row(0),
        [0.5 * (1.0 - 8_388_608.0) * 1e3, 0.5 * (1.0 - 1.0) * 1e3]
    );
    assert_eq!(
        b.row(1),
        [0.25 * (-1.0 + 0.0) * 1e3, 0.25 * (-1.0 + 8_388_607.0) * 1e3]
    );
}

#[test]
fn encoder_rejects_what_it_cannot_write() {
    let channels: Vec<String> = vec!["C3".into()];
    let mut out = vec![1, 2, 3];
    let e = encode_raw_protobuf(
        &meta(&channels, RawUnits::Microvolts),
        RawSamples::Digital {
            bytes_per_sample: 5,
            data: &[1],
            scale: &[1.0],
            offset: &[0.0],
        },
        &mut out,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "field 'digital.bytes_per_sample': must be 2, 3 or 4, got 5"
    );
    for (bps, value, range) in [
        (2, 32_768, "-32768..=32767"),
        (2, -32_769, "-32768..=32767"),
        (3, 8_388_608, "-8388608..=8388607"),
        (3, -8_388_609, "-8388608..=8388607"),
    ] {
        let e = encode_raw_protobuf(
            &meta(&channels, RawUnits::Microvolts),
            RawSamples::Digital {
                bytes_per_sample: bps,
                data: &[0, value],
                scale: &[1.0],
                offset: &[0.0],
            },
            &mut out,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "field 'digital.data': value {value} at index 1 does not fit in {bps} bytes ({range})"
            )
        );
    }
    assert_eq!(out, [1, 2, 3], "left as it was");
}

#[test]
fn encoding_appends() {
    let channels: Vec<String> = vec!["C3".into()];
    let mut out = b"prefix".to_vec();
    encode_raw_protobuf(
        &meta(&channels, RawUnits::Volts),
        RawSamples::Float32(&[1e-6, 2e-6]),
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..6], b"prefix");
    let b = decode_raw_protobuf(&out[6..], &Limits::default()).unwrap();
    assert_eq!(
        b.row(0),
        [f64::from(1e-6f32) * 1e6, f64::from(2e-6f32) * 1e6]
    );
}

// ---------------------------------------------------------------------------------------
// EDF/BDF replayed as digital values.

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// Replays a recording record by record as binary messages, one per group of data signals
/// with the same number of samples per record and the same unit (as a replay makes one
/// session per rate), digital where the unit allows and float64 (the reader's µV)
/// otherwise, and checks that every decoded row is bit for bit the reader's. Returns the
/// number of messages of each kind.
fn replay_matches_reader(bytes: &[u8], name: &str) -> (usize, usize) {
    let open = || {
        EdfReader::from_reader(std::io::Cursor::new(bytes), name, Some(bytes.len() as u64))
            .expect("opens")
    };
    let (mut physical, mut digital) = (open(), open());
    let header = digital.header().clone();
    let bps = header.format.bytes_per_sample() as u8;
    let signals: Vec<_> = header.data_signals().map(|(_, s)| s.clone()).collect();
    let mut groups: Vec<(usize, String, Vec<usize>)> = vec![];
    for (i, s) in signals.iter().enumerate() {
        let unit = s.physical_dimension.trim().to_owned();
        match groups
            .iter_mut()
            .find(|(n, u, _)| *n == s.samples_per_record && *u == unit)
        {
            Some(g) => g.2.push(i),
            None => groups.push((s.samples_per_record, unit, vec![i])),
        }
    }
    let (mut p, mut d) = (Record::new(), DigitalRecord::new());
    let (mut out, mut data) = (Vec::new(), Vec::new());
    let (mut n_digital, mut n_float) = (0, 0);
    while physical.read_record(&mut p).unwrap() {
        assert!(digital.read_record_digital(&mut d).unwrap());
        for (spr, unit, members) in &groups {
            let channels: Vec<String> = members.iter().map(|&i| signals[i].label.clone()).collect();
            let rate = signals[members[0]].sample_rate_hz(header.record_duration_s);
            out.clear();
            match RawUnits::from_name(unit) {
                Some(units) => {
                    let (scale, offset): (Vec<f64>, Vec<f64>) =
                        members.iter().map(|&i| signals[i].scaling()).unzip();
                    data.clear();
                    for &i in members {
                        data.extend_from_slice(d.signal(i));
                    }
                    let m = RawMeta {
                        session_id: "replay",
                        device_id: name,
                        user_id: None,
                        seq: d.index(),
                        start_ms: 0,
                        sample_rate_hz: rate,
                        channels: &channels,
                        units,
                    };
                    let samples = RawSamples::Digital {
                        bytes_per_sample: bps,
                        data: &data,
                        scale: &scale,
                        offset: &offset,
                    };
                    encode_raw_protobuf(&m, samples, &mut out).unwrap();
                    n_digital += 1;
                }
                None => {
                    // nV, or a unit the format cannot name: the reader's values as they are.
                    let values: Vec<f64> =
                        members.iter().flat_map(|&i| p.signal(i).to_vec()).collect();
                    let m = RawMeta {
                        session_id: "replay",
                        device_id: name,
                        user_id: None,
                        seq: d.index(),
                        start_ms: 0,
                        sample_rate_hz: rate,
                        channels: &channels,
                        units: RawUnits::Microvolts,
                    };
                    encode_raw_protobuf(&m, RawSamples::Float64(&values), &mut out).unwrap();
                    n_float += 1;
                }
            }
            let b = decode_raw_protobuf(&out, &Limits::default()).unwrap();
            assert_eq!(b.samples_per_channel(), *spr);
            for (row, &i) in members.iter().enumerate() {
                let got: Vec<u64> = b.row(row).iter().map(|v| v.to_bits()).collect();
                let want: Vec<u64> = p.signal(i).iter().map(|v| v.to_bits()).collect();
                assert_eq!(
                    got,
                    want,
                    "{name} record {} signal {i} ({})",
                    d.index(),
                    signals[i].label
                );
            }
        }
    }
    (n_digital, n_float)
}

#[test]
fn bdf_and_edf_fixtures_replayed_as_digital_decode_to_the_readers_values() {
    let bdf = std::fs::read(fixture("test_generator.bdf")).unwrap();
    // Five signals at five rates: five messages per record, 30 records.
    assert_eq!(replay_matches_reader(&bdf, "test_generator.bdf"), (150, 0));
    let edf = std::fs::read(fixture("test_generator.edf")).unwrap();
    assert_eq!(replay_matches_reader(&edf, "test_generator.edf"), (600, 0));
    let sub = std::fs::read(fixture("test_subsecond.edf")).unwrap();
    assert_eq!(replay_matches_reader(&sub, "test_subsecond.edf"), (698, 0));
}

#[test]
fn recordings_in_mv_and_v_decode_like_the_reader_and_nv_goes_as_float64() {
    for format in [WriteFormat::Edf, WriteFormat::Bdf] {
        let (digital_min, digital_max) = format.digital_limits();
        let signal = |label: &str, unit: &str, range: f64| WriteSignal {
            label: label.into(),
            transducer: String::new(),
            physical_dimension: unit.into(),
            physical_min: -range,
            physical_max: range,
            digital_min,
            digital_max,
            prefilter: String::new(),
            samples_per_record: 64,
        };
        let spec = WriteSpec {
            format,
            signals: vec![
                signal("Fp1", "uV", 3276.7),
                signal("Fp2", "uV", 512.0),
                signal("ECG", "mV", 5.0),
                signal("EMG", "V", 0.0125),
                signal("Aux", "nV", 90_000.0),
            ],
            ..WriteSpec::eeg(5, 64, 4)
        };
        let bytes = write_edf(Vec::new(), "units", &spec, |record, bufs| {
            for (s, buf) in bufs.iter_mut().enumerate() {
                let amp = [3000.0, 400.0, 4.0, 0.01, 80_000.0][s];
                for (i, v) in buf.iter_mut().enumerate() {
                    *v = amp * ((record as f64 * 64.0 + i as f64) * 0.05 * (s + 1) as f64).sin();
                }
            }
        })
        .unwrap();
        // uV (one group of two), mV and V digital; nV as float64.
        assert_eq!(
            replay_matches_reader(&bytes, "units"),
            (12, 4),
            "{format:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Sizes: bytes per sample, JSON against binary.

/// A deterministic noise source for test signals.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }
}

/// EEG-like digital values from a 24-bit amplifier: ADS1299-style gain of 0.0223517 µV per
/// count, alpha rhythm plus noise of some tens of µV.
fn amplifier(n_ch: usize, n: usize) -> (Vec<String>, Vec<i32>, Vec<f64>, Vec<f64>) {
    let gain = 4.5e6 / 24.0 / f64::from(1 << 23);
    let mut noise = Lcg(42);
    let channels = (0..n_ch).map(|c| format!("E{c}")).collect();
    let mut data = Vec::with_capacity(n_ch * n);
    for c in 0..n_ch {
        for i in 0..n {
            let t = i as f64 / 500.0;
            let uv = 20.0 * (2.0 * std::f64::consts::PI * (10.0 + c as f64 * 0.1) * t).sin()
                + 30.0 * noise.next();
            data.push((uv / gain).round() as i32);
        }
    }
    (channels, data, vec![gain; n_ch], vec![0.0; n_ch])
}

/// Encoded sizes of one batch: JSON (canonical, µV), protobuf digital, float32, float64.
fn sizes(meta: &RawMeta<'_>, bps: u8, data: &[i32], scale: &[f64], offset: &[f64]) -> [usize; 4] {
    let mut digital = vec![];
    let samples = RawSamples::Digital {
        bytes_per_sample: bps,
        data,
        scale,
        offset,
    };
    encode_raw_protobuf(meta, samples, &mut digital).unwrap();
    let batch = decode_raw_protobuf(&digital, &Limits::default()).unwrap();
    let json = batch.encode();
    let f32s: Vec<f32> = batch.samples().iter().map(|&v| v as f32).collect();
    let mut float32 = vec![];
    encode_raw_protobuf(meta, RawSamples::Float32(&f32s), &mut float32).unwrap();
    let mut float64 = vec![];
    batch.encode_protobuf(&mut float64);
    [json.len(), digital.len(), float32.len(), float64.len()]
}

/// Average bytes per sample of a file's records cut into batches of 32 samples per channel
/// (the replay's default), one batch per group of signals of the same rate.
fn file_sizes(path: &str) -> ([usize; 4], usize) {
    let mut reader = EdfReader::open(fixture(path)).unwrap();
    let header = reader.header().clone();
    let bps = header.format.bytes_per_sample() as u8;
    let signals: Vec<_> = header.data_signals().map(|(_, s)| s.clone()).collect();
    let mut rates: Vec<(usize, Vec<usize>)> = vec![];
    for (i, s) in signals.iter().enumerate() {
        match rates.iter_mut().find(|(n, _)| *n == s.samples_per_record) {
            Some(g) => g.1.push(i),
            None => rates.push((s.samples_per_record, vec![i])),
        }
    }
    let mut d = DigitalRecord::new();
    let (mut total, mut samples) = ([0; 4], 0);
    while reader.read_record_digital(&mut d).unwrap() {
        for (spr, members) in &rates {
            let channels: Vec<String> = members.iter().map(|&i| signals[i].label.clone()).collect();
            let (scale, offset): (Vec<f64>, Vec<f64>) =
                members.iter().map(|&i| signals[i].scaling()).unzip();
            for start in (0..*spr).step_by(32) {
                let end = (start + 32).min(*spr);
                let data: Vec<i32> = members
                    .iter()
                    .flat_map(|&i| d.signal(i)[start..end].to_vec())
                    .collect();
                let m = RawMeta {
                    session_id: "test_generator-20261203T120000-4821",
                    device_id: "replay",
                    user_id: None,
                    seq: d.index(),
                    start_ms: 1_795_000_000_000,
                    sample_rate_hz: signals[members[0]].sample_rate_hz(header.record_duration_s),
                    channels: &channels,
                    units: RawUnits::Microvolts,
                };
                let s = sizes(&m, bps, &data, &scale, &offset);
                for (t, v) in total.iter_mut().zip(s) {
                    *t += v;
                }
                samples += data.len();
            }
        }
    }
    (total, samples)
}

fn per_sample(total: [usize; 4], samples: usize) -> [f64; 4] {
    total.map(|t| t as f64 / samples as f64)
}

#[test]
fn bytes_per_sample_json_against_protobuf() {
    let mut rows = vec![];
    for (n_ch, n) in [(8, 32), (64, 500)] {
        let (channels, data, scale, offset) = amplifier(n_ch, n);
        let m = RawMeta {
            session_id: "s-42",
            device_id: "bud-7",
            user_id: Some("u-1"),
            seq: 1234,
            start_ms: 1_795_000_000_000,
            sample_rate_hz: 500.0,
            channels: &channels,
            units: RawUnits::Microvolts,
        };
        let s = sizes(&m, 3, &data, &scale, &offset);
        rows.push((
            format!("24-bit amplifier, {n_ch} x {n}"),
            per_sample(s, n_ch * n),
        ));
    }
    for file in ["test_generator.edf", "test_generator.bdf"] {
        let (total, samples) = file_sizes(file);
        rows.push((
            format!("{file}, 32-sample batches"),
            per_sample(total, samples),
        ));
    }
    println!("bytes per sample: JSON | protobuf digital | float32 | float64");
    for (what, [json, digital, f32s, f64s]) in &rows {
        println!("{what}: {json:.2} | {digital:.2} | {f32s:.2} | {f64s:.2}");
    }
    let [json, digital, f32s, f64s] = rows[1].1;
    // 64 x 500 at 24 bits: the data's 3 bytes plus ~1.5 % of names, scales and header.
    assert!(digital < 3.1, "{digital}");
    assert!(f32s < 4.1 && f64s < 8.1, "{f32s} {f64s}");
    assert!(json > 3.0 * digital, "{json}");
    // Batches of 32 samples carry each channel's name, scale and offset for every 32
    // samples: the 16-bit EDF fixture (11 channels) pays about 1.2 bytes a sample for them.
    let [json, edf_digital, _, _] = rows[2].1;
    assert!(
        edf_digital < 3.5 && json > 5.0 * edf_digital,
        "{edf_digital}"
    );
}

// ---------------------------------------------------------------------------------------
// Properties.

fn units() -> impl Strategy<Value = RawUnits> {
    prop_oneof![
        Just(RawUnits::Microvolts),
        Just(RawUnits::Millivolts),
        Just(RawUnits::Volts)
    ]
}

/// The batch's JSON with its values declared in `units` instead of µV.
fn json_in(b: &RawBatch, units: RawUnits) -> Vec<u8> {
    let text = String::from_utf8(b.encode()).unwrap();
    text.replacen(
        "\"units\":\"uV\"",
        &format!("\"units\":\"{}\"", units.name()),
        1,
    )
    .into_bytes()
}

fn meta_of(b: &RawBatch, units: RawUnits) -> RawMeta<'_> {
    RawMeta {
        session_id: &b.session_id,
        device_id: &b.device_id,
        user_id: b.user_id.as_deref(),
        seq: b.seq,
        start_ms: b.start_ms,
        sample_rate_hz: b.sample_rate_hz,
        channels: &b.channels,
        units,
    }
}

/// Both decoders agree: equal batches, or the same error.
fn same_outcome(
    json: Result<RawBatch, SchemaError>,
    binary: Result<RawBatch, SchemaError>,
) -> Result<(), TestCaseError> {
    match (json, binary) {
        (Ok(j), Ok(p)) => {
            prop_assert_eq!(bits(&j), bits(&p));
            prop_assert_eq!(j, p);
        }
        (Err(j), Err(p)) => prop_assert_eq!(j.to_string(), p.to_string()),
        (j, p) => prop_assert!(false, "JSON {:?}, protobuf {:?}", j, p),
    }
    Ok(())
}

/// Mutations that hit protobuf's structure: varint continuation bits, small lengths, tags.
fn edit() -> impl Strategy<Value = (usize, u8, u8)> {
    (
        any::<usize>(),
        0u8..4,
        prop_oneof![
            any::<u8>(),
            prop::sample::select(vec![0x80, 0x7f, 0xff, 0x00, 0x01, 0x0a, 0x52, 0x5a, 0x62])
        ],
    )
}

fn apply(bytes: &mut Vec<u8>, (at, kind, b): (usize, u8, u8)) {
    let len = bytes.len().max(1);
    match kind {
        0 if !bytes.is_empty() => bytes[at % len] = b,
        1 => bytes.insert(at % (bytes.len() + 1), b),
        2 if !bytes.is_empty() => {
            bytes.remove(at % len);
        }
        _ => bytes.truncate(at % (bytes.len() + 1)),
    }
}

fn check_no_panic(bytes: &[u8]) {
    for limits in [
        Limits::default(),
        Limits {
            max_channels: 2,
            max_samples_per_channel: 3,
            max_message_bytes: 200,
            ..Limits::default()
        },
    ] {
        if let Err(e) = decode_raw_protobuf(bytes, &limits) {
            let text = e.to_string();
            assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
            assert!(text.len() < 1000, "{text}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn float64_encoding_round_trips_bit_for_bit(b in batch()) {
        let mut out = vec![];
        b.encode_protobuf(&mut out);
        let again = decode_raw_protobuf(&out, &Limits::default()).expect("encoded batches decode");
        prop_assert_eq!(bits(&again), bits(&b));
        prop_assert_eq!(&again, &b);
        let mut twice = vec![];
        again.encode_protobuf(&mut twice);
        prop_assert_eq!(twice, out);
    }

    #[test]
    fn protobuf_and_json_decode_to_the_same_batch(b in batch()) {
        let json = decode_raw(&b.encode(), &Limits::default());
        let mut out = vec![];
        b.encode_protobuf(&mut out);
        same_outcome(json, decode_raw_protobuf(&out, &Limits::default()))?;
    }

    #[test]
    fn units_convert_as_in_json(b in batch(), units in units()) {
        let json = decode_raw(&json_in(&b, units), &Limits::default());
        let mut out = vec![];
        encode_raw_protobuf(&meta_of(&b, units), RawSamples::Float64(b.samples()), &mut out).unwrap();
        same_outcome(json, decode_raw_protobuf(&out, &Limits::default()))?;
    }

    #[test]
    fn digital_decodes_like_json_of_its_physical_values(
        b in batch(),
        units in units(),
        bps in 2u8..=4,
        seed in any::<u64>(),
        scale_offset in prop::collection::vec((
            prop_oneof![-1e3f64..1e3, Just(1.0), Just(1e-300), Just(-0.0457763671875)],
            prop_oneof![-1e7f64..1e7, Just(0.0), Just(0.5)],
        ), 6),
    ) {
        let n_ch = b.n_channels();
        let bits_of = 8 * u32::from(bps);
        let mut noise = seed | 1;
        let data: Vec<i32> = (0..b.samples().len())
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                // Sign-extend the low bits_of bits.
                ((noise as u32) << (32 - bits_of)) as i32 >> (32 - bits_of)
            })
            .collect();
        let (scale, offset): (Vec<f64>, Vec<f64>) = scale_offset[..n_ch].iter().copied().unzip();
        let per = b.samples_per_channel();
        let physical: Vec<f64> = data
            .iter()
            .enumerate()
            .map(|(i, &d)| scale[i / per] * (offset[i / per] + f64::from(d)))
            .collect();
        let mut parts = b.clone().into_parts();
        parts.samples = physical;
        let twin = RawBatch::new(parts, &Limits::default()).expect("finite physical values");
        let json = decode_raw(&json_in(&twin, units), &Limits::default());
        let mut out = vec![];
        let samples = RawSamples::Digital { bytes_per_sample: bps, data: &data, scale: &scale, offset: &offset };
        encode_raw_protobuf(&meta_of(&b, units), samples, &mut out).unwrap();
        same_outcome(json, decode_raw_protobuf(&out, &Limits::default()))?;
    }

    #[test]
    fn float32_decodes_like_json_of_its_widened_values(b in batch(), units in units()) {
        // Clamped, or a value beyond f32's range would round to infinity, which JSON cannot
        // carry.
        let max = f64::from(f32::MAX);
        let f32s: Vec<f32> = b.samples().iter().map(|&v| v.clamp(-max, max) as f32).collect();
        let mut parts = b.clone().into_parts();
        parts.samples = f32s.iter().map(|&v| f64::from(v)).collect();
        let twin = RawBatch::new(parts, &Limits::default()).unwrap();
        let json = decode_raw(&json_in(&twin, units), &Limits::default());
        let mut out = vec![];
        encode_raw_protobuf(&meta_of(&b, units), RawSamples::Float32(&f32s), &mut out).unwrap();
        same_outcome(json, decode_raw_protobuf(&out, &Limits::default()))?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_no_panic(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        b in batch(),
        digital in any::<bool>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let mut bytes = vec![];
        if digital {
            let data: Vec<i32> = (0..b.samples().len() as i32).map(|i| i * 1000 - 7).collect();
            let n_ch = b.n_channels();
            let samples = RawSamples::Digital {
                bytes_per_sample: 3,
                data: &data,
                scale: &vec![0.5; n_ch],
                offset: &vec![1.0; n_ch],
            };
            encode_raw_protobuf(&meta_of(&b, RawUnits::Millivolts), samples, &mut bytes).unwrap();
        } else {
            b.encode_protobuf(&mut bytes);
        }
        for e in edits {
            apply(&mut bytes, e);
        }
        check_no_panic(&bytes);
    }
}

/// `tap` for building a message in an expression.
trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

impl Tap for DynamicMessage {}
