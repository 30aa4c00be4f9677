//! `eeg.event/1`: events built from the .proto itself (as an app in another language would
//! build them) decode like their JSON twins, field presence follows the .proto, and the
//! contract file is the one the crate carries.

use eeg_schema::{
    EVENT_PROTO, EVENT_PROTOBUF_MESSAGE, Event, Limits, Onset, RawBatch, RawBatchParts, RawMessage,
    decode_event, decode_event_protobuf, decode_raw_message,
};
use prost::Message as _;
use protox::prost_reflect::{DescriptorPool, DynamicMessage, Value};
use std::sync::OnceLock;

mod support;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| support::proto_pool("eeg_event_v1.proto"))
}

fn event(fields: &[(&str, Value)]) -> Vec<u8> {
    let mut m = DynamicMessage::new(
        pool()
            .get_message_by_name(EVENT_PROTOBUF_MESSAGE)
            .expect("the message the crate names is in the .proto"),
    );
    for (name, value) in fields {
        m.set_field_by_name(name, value.clone());
    }
    m.encode_to_vec()
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

#[test]
fn proto_text_is_the_contract_file() {
    support::assert_contract_file("eeg_event_v1.proto", EVENT_PROTO, "eeg.event.v1");
}

#[test]
fn the_design_example_built_from_the_proto_decodes_like_its_json() {
    let json = decode_event(
        br#"{"schema": "eeg.event/1", "session_id": "s-42", "event_id": "stim-0017",
            "onset_ms": 1732270012345.25, "duration_s": 0.0, "label": "target", "value": 3,
            "source": "app"}"#,
    )
    .unwrap();
    let bin = event(&[
        ("schema", s("eeg.event/1")),
        ("session_id", s("s-42")),
        ("event_id", s("stim-0017")),
        ("onset_ms", Value::F64(1_732_270_012_345.25)),
        ("label", s("target")),
        ("value", Value::I64(3)),
        ("source", s("app")),
    ]);
    assert_eq!(decode_event_protobuf(&bin).unwrap(), json);
    assert_eq!(json.onset, Onset::UnixMs(1_732_270_012_345.25));
}

#[test]
fn optional_fields_have_presence_as_the_proto_declares() {
    // A value of 0 is a code, not "no value"; an onset at sample 0 is an onset.
    let bin = event(&[
        ("schema", s("eeg.event/1")),
        ("session_id", s("s")),
        ("event_id", s("e")),
        ("onset_sample", Value::U64(0)),
        ("value", Value::I64(0)),
        ("label", s("")),
    ]);
    let e = decode_event_protobuf(&bin).unwrap();
    assert_eq!(e.onset, Onset::Sample(0));
    assert_eq!(e.value, Some(0));
    // Neither onset: refused, naming onset_ms.
    let bin = event(&[
        ("schema", s("eeg.event/1")),
        ("session_id", s("s")),
        ("event_id", s("e")),
        ("label", s("x")),
    ]);
    assert_eq!(
        decode_event_protobuf(&bin).unwrap_err().field(),
        Some("onset_ms")
    );
}

#[test]
fn what_the_crate_encodes_reads_back_through_the_proto() {
    let e = Event {
        session_id: "s".into(),
        event_id: "e-1".into(),
        onset: Onset::Sample(12_345),
        duration_s: 0.25,
        label: "Stimulus/S  1".into(),
        value: Some(1),
        source: "edf+".into(),
    };
    let mut bin = Vec::new();
    e.encode_protobuf(&mut bin);
    let desc = pool().get_message_by_name(EVENT_PROTOBUF_MESSAGE).unwrap();
    let m = DynamicMessage::decode(desc, bin.as_slice()).unwrap();
    assert_eq!(
        m.get_field_by_name("onset_sample").as_deref(),
        Some(&Value::U64(12_345))
    );
    assert!(!m.has_field_by_name("onset_ms"));
    assert_eq!(
        m.get_field_by_name("label").as_deref(),
        Some(&s("Stimulus/S  1"))
    );
    assert_eq!(decode_event_protobuf(&bin).unwrap(), e);
}

#[test]
fn the_raw_topics_messages_are_told_apart_by_content_type_and_schema() {
    let limits = Limits::default();
    let e = Event {
        session_id: "s".into(),
        event_id: "e-1".into(),
        onset: Onset::UnixMs(1_000.5),
        duration_s: 0.0,
        label: "go".into(),
        value: None,
        source: "app".into(),
    };
    let batch = RawBatch::new(
        RawBatchParts {
            session_id: "s".into(),
            device_id: "d".into(),
            seq: 0,
            start_ms: 1_000,
            sample_rate_hz: 250.0,
            channels: vec!["Cz".into()],
            samples: vec![1.0, 2.0],
            ..RawBatchParts::default()
        },
        &limits,
    )
    .unwrap();
    let mut e_bin = Vec::new();
    e.encode_protobuf(&mut e_bin);
    let mut b_bin = Vec::new();
    batch.encode_protobuf(&mut b_bin);
    let event_type = format!("application/x-protobuf; messageType={EVENT_PROTOBUF_MESSAGE}");
    let (e_json, b_json) = (e.to_json(), batch.encode());
    let cases: [(&[u8], Option<&str>, RawMessage); 6] = [
        (e_json.as_bytes(), None, RawMessage::Event(e.clone())),
        (
            e_json.as_bytes(),
            Some("application/json"),
            RawMessage::Event(e.clone()),
        ),
        (&b_json, None, RawMessage::Batch(batch.clone())),
        (&e_bin, Some(&event_type), RawMessage::Event(e.clone())),
        (
            &b_bin,
            Some("application/x-protobuf"),
            RawMessage::Batch(batch.clone()),
        ),
        (
            &b_bin,
            Some("application/protobuf; messageType=.eeg.raw.v1.RawBatch"),
            RawMessage::Batch(batch.clone()),
        ),
    ];
    for (bytes, ct, want) in cases {
        let got = decode_raw_message(bytes, ct.map(str::as_bytes), &limits).unwrap();
        assert_eq!(got, want, "{ct:?}");
    }
    let other = decode_raw_message(
        &e_bin,
        Some(b"application/x-protobuf; messageType=eeg.other.v1.Thing"),
        &limits,
    )
    .unwrap_err()
    .to_string();
    assert!(
        other.starts_with("header 'content-type': messageType \"eeg.other.v1.Thing\" is neither"),
        "{other}"
    );
    // An event sent without its messageType is read as a batch, and refused as one.
    assert!(decode_raw_message(&e_bin, Some(b"application/x-protobuf"), &limits).is_err());
}
