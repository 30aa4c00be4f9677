//! `eeg.event/1`: what happened to the person (a stimulus, a button, a trigger code), sent on
//! the raw topic beside the session's batches, in JSON or in Protocol Buffers
//! (`proto/eeg_event_v1.proto`), decoded with the same validation either way.

use serde_json::{Map, Value};

use crate::error::{SchemaError, field, from_json, input_field_name, quote};
use crate::raw::MAX_ID_BYTES;

/// The `schema` value of an event.
pub const EVENT_SCHEMA: &str = "eeg.event/1";
/// The full name of the event message in the `.proto`; a binary event's `content-type`
/// names it (`application/x-protobuf; messageType=eeg.event.v1.Event`).
pub const EVENT_PROTOBUF_MESSAGE: &str = "eeg.event.v1.Event";
/// The `content-type` of a binary event message.
pub const EVENT_PROTOBUF_CONTENT_TYPE: &str =
    "application/x-protobuf; messageType=eeg.event.v1.Event";
/// The text of `eeg_event_v1.proto`.
pub const EVENT_PROTO: &str = include_str!("../proto/eeg_event_v1.proto");
/// Longest `label`, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;
/// Longest `source`, in bytes.
pub const MAX_SOURCE_BYTES: usize = 64;
/// Largest encoded event, in bytes; checked before parsing. An event is a few hundred bytes.
pub const MAX_EVENT_BYTES: usize = 64 << 10;

/// When an event happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Onset {
    /// Unix time in ms, with a fraction when the source has one; placed in the session's
    /// samples by the batch whose time span holds it.
    UnixMs(f64),
    /// The index in the session's sample stream (from its first sample, 0): exact, and what
    /// wins when a message gives both.
    Sample(u64),
}

impl Onset {
    /// The sample index, when the onset is given as one.
    pub fn sample(self) -> Option<u64> {
        match self {
            Onset::Sample(n) => Some(n),
            Onset::UnixMs(_) => None,
        }
    }
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub session_id: String,
    /// Unique within the session: a second event with the same id is a copy.
    pub event_id: String,
    pub onset: Onset,
    /// Seconds, finite and >= 0; 0 for an instant.
    pub duration_s: f64,
    /// What happened, as the source wrote it (at most [`MAX_LABEL_BYTES`]; may be empty).
    pub label: String,
    /// A trigger code, when the source has one.
    pub value: Option<i64>,
    /// Where the event came from: `app`, `lsl`, `edf+`, `bdf-status`, ...; may be empty.
    pub source: String,
}

impl Event {
    /// Checks the rules both forms share and writes -0 as 0, so that an event reads back
    /// bit for bit from either form (protobuf leaves a zero duration out, whatever its sign).
    fn validated(mut self) -> Result<Event, SchemaError> {
        self.validate()?;
        if self.duration_s == 0.0 {
            self.duration_s = 0.0;
        }
        if let Onset::UnixMs(ms) = &mut self.onset
            && *ms == 0.0
        {
            *ms = 0.0;
        }
        Ok(self)
    }

    fn validate(&self) -> Result<(), SchemaError> {
        check_text("session_id", &self.session_id, 1, MAX_ID_BYTES)?;
        check_text("event_id", &self.event_id, 1, MAX_ID_BYTES)?;
        match self.onset {
            Onset::UnixMs(ms) if !(ms.is_finite() && ms >= 0.0) => {
                return Err(field(
                    "onset_ms",
                    format!("must be a finite number >= 0, got {ms}"),
                ));
            }
            // JSON readers take integers as i64; a larger onset could not be written back.
            Onset::Sample(n) if i64::try_from(n).is_err() => {
                return Err(field(
                    "onset_sample",
                    format!("must be an integer in the i64 range, got {n}"),
                ));
            }
            _ => {}
        }
        if !(self.duration_s.is_finite() && self.duration_s >= 0.0) {
            return Err(field(
                "duration_s",
                format!("must be a finite number >= 0, got {}", self.duration_s),
            ));
        }
        if self.label.len() > MAX_LABEL_BYTES {
            return Err(field(
                "label",
                format!("is {} bytes, at most {MAX_LABEL_BYTES}", self.label.len()),
            ));
        }
        check_text("source", &self.source, 0, MAX_SOURCE_BYTES)
    }

    /// The event as canonical JSON, one line, which [`decode_event`] reads back equal.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("schema".into(), EVENT_SCHEMA.into());
        m.insert("session_id".into(), self.session_id.clone().into());
        m.insert("event_id".into(), self.event_id.clone().into());
        match self.onset {
            Onset::UnixMs(ms) => m.insert("onset_ms".into(), ms.into()),
            Onset::Sample(n) => m.insert("onset_sample".into(), n.into()),
        };
        m.insert("duration_s".into(), self.duration_s.into());
        m.insert("label".into(), self.label.clone().into());
        if let Some(v) = self.value {
            m.insert("value".into(), v.into());
        }
        if !self.source.is_empty() {
            m.insert("source".into(), self.source.clone().into());
        }
        Value::Object(m)
    }

    /// Appends the event as a binary `eeg.event.v1.Event`, which
    /// [`decode_event_protobuf`] reads back equal.
    pub fn encode_protobuf(&self, out: &mut Vec<u8>) {
        let (onset_ms, onset_sample) = match self.onset {
            Onset::UnixMs(ms) => (Some(ms), None),
            Onset::Sample(n) => (None, Some(n)),
        };
        let wire = wire::Event {
            schema: EVENT_SCHEMA.into(),
            session_id: self.session_id.clone(),
            event_id: self.event_id.clone(),
            onset_ms,
            onset_sample,
            duration_s: self.duration_s,
            label: self.label.clone(),
            value: self.value,
            source: self.source.clone(),
        };
        prost::Message::encode(&wire, out).expect("a Vec grows as needed");
    }
}

/// Text of `min..=max` bytes with no control character (it ends up in log lines).
fn check_text(name: &'static str, v: &str, min: usize, max: usize) -> Result<(), SchemaError> {
    if v.len() < min {
        return Err(field(name, "must not be empty"));
    }
    if v.len() > max {
        return Err(field(name, format!("is {} bytes, at most {max}", v.len())));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(field(
            name,
            format!("contains the control character {}", c.escape_unicode()),
        ));
    }
    Ok(())
}

fn too_large(size: usize) -> Result<(), SchemaError> {
    if size > MAX_EVENT_BYTES {
        return Err(SchemaError::TooLarge {
            size,
            limit: MAX_EVENT_BYTES,
        });
    }
    Ok(())
}

/// An event inside another serde document (a session snapshot) is its canonical JSON object,
/// read back through [`decode_event`]'s checks.
impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.to_value(), s)
    }
}

impl<'de> serde::Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        let v = <Value as serde::Deserialize>::deserialize(d)?;
        decode_event(v.to_string().as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Whether a JSON message on the raw topic is an event rather than a batch: its `schema`
/// says so. Only the text up to the value of the first `"schema"` key is looked at, so a
/// batch costs a short scan; a message this misjudges fails the decoder it is given to.
pub fn is_event_json(bytes: &[u8]) -> bool {
    let Some(at) = memchr_str(bytes, b"\"schema\"") else {
        return false;
    };
    let rest = &bytes[at + 8..];
    let rest = trim_start(rest);
    let Some(rest) = rest.strip_prefix(b":") else {
        return false;
    };
    trim_start(rest).starts_with(b"\"eeg.event/1\"")
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &b[n..]
}

fn memchr_str(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes and validates a JSON `eeg.event/1`. Errors name the field at fault.
pub fn decode_event(bytes: &[u8]) -> Result<Event, SchemaError> {
    too_large(bytes.len())?;
    let map: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| from_json(&e, None))?;
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "schema"
                | "session_id"
                | "event_id"
                | "onset_ms"
                | "onset_sample"
                | "duration_s"
                | "label"
                | "value"
                | "source"
        ) {
            return Err(SchemaError::Field {
                field: input_field_name(key),
                problem: "unknown field".into(),
            });
        }
    }
    let text = |name: &'static str, required: bool| -> Result<String, SchemaError> {
        match map.get(name) {
            None if required => Err(field(name, "missing")),
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(field(name, format!("must be a string, got {}", kind(v)))),
        }
    };
    let schema = text("schema", true)?;
    if schema != EVENT_SCHEMA {
        return Err(field(
            "schema",
            format!("must be {}, got {}", quote(EVENT_SCHEMA), quote(&schema)),
        ));
    }
    let number = |name: &'static str| -> Result<Option<f64>, SchemaError> {
        match map.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(v) => Err(field(name, format!("must be a number, got {}", kind(v)))),
        }
    };
    let integer = |name: &'static str, v: &Value| -> Result<i64, SchemaError> {
        match v {
            Value::Number(n) => n.as_i64().ok_or_else(|| {
                field(
                    name,
                    format!("must be an integer in the i64 range, got {n}"),
                )
            }),
            v => Err(field(name, format!("must be an integer, got {}", kind(v)))),
        }
    };
    let onset = match (map.get("onset_sample"), number("onset_ms")?) {
        (Some(v), _) => {
            let n = integer("onset_sample", v)?;
            Onset::Sample(
                u64::try_from(n)
                    .map_err(|_| field("onset_sample", format!("must be >= 0, got {n}")))?,
            )
        }
        (None, Some(ms)) => Onset::UnixMs(ms),
        (None, None) => {
            return Err(field(
                "onset_ms",
                "missing (give onset_ms, Unix time in ms, or onset_sample)",
            ));
        }
    };
    let value = map.get("value").map(|v| integer("value", v)).transpose()?;
    let event = Event {
        session_id: text("session_id", true)?,
        event_id: text("event_id", true)?,
        onset,
        duration_s: number("duration_s")?.unwrap_or(0.0),
        label: text("label", true)?,
        value,
        source: text("source", false)?,
    };
    event.validated()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a binary message with nothing to say what it is (a capture's, which keeps no
/// `content-type`) is an event: its `schema` (field 1 in both `.proto` files) says
/// `eeg.event/1`.
pub fn is_event_protobuf(bytes: &[u8]) -> bool {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Schema {
        #[prost(string, tag = "1")]
        schema: String,
    }
    <Schema as prost::Message>::decode(bytes).is_ok_and(|m| m.schema == EVENT_SCHEMA)
}

/// Decodes and validates a binary `eeg.event.v1.Event`, with the rules of the JSON form.
pub fn decode_event_protobuf(bytes: &[u8]) -> Result<Event, SchemaError> {
    too_large(bytes.len())?;
    let wire: wire::Event = prost::Message::decode(bytes).map_err(|e| SchemaError::Protobuf {
        problem: crate::error::one_line(&e.to_string()),
    })?;
    if wire.schema.is_empty() {
        return Err(field("schema", "missing"));
    }
    if wire.schema != EVENT_SCHEMA {
        return Err(field(
            "schema",
            format!(
                "must be {}, got {}",
                quote(EVENT_SCHEMA),
                quote(&wire.schema)
            ),
        ));
    }
    let onset = match (wire.onset_sample, wire.onset_ms) {
        (Some(n), _) => Onset::Sample(n),
        (None, Some(ms)) => Onset::UnixMs(ms),
        (None, None) => {
            return Err(field(
                "onset_ms",
                "missing (give onset_ms, Unix time in ms, or onset_sample)",
            ));
        }
    };
    let event = Event {
        session_id: wire.session_id,
        event_id: wire.event_id,
        onset,
        duration_s: wire.duration_s,
        label: wire.label,
        value: wire.value,
        source: wire.source,
    };
    event.validated()
}

mod wire {
    /// `eeg.event.v1.Event`, as `proto/eeg_event_v1.proto` declares it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        #[prost(string, tag = "1")]
        pub schema: String,
        #[prost(string, tag = "2")]
        pub session_id: String,
        #[prost(string, tag = "3")]
        pub event_id: String,
        #[prost(double, optional, tag = "4")]
        pub onset_ms: Option<f64>,
        #[prost(uint64, optional, tag = "5")]
        pub onset_sample: Option<u64>,
        #[prost(double, tag = "6")]
        pub duration_s: f64,
        #[prost(string, tag = "7")]
        pub label: String,
        #[prost(int64, optional, tag = "8")]
        pub value: Option<i64>,
        #[prost(string, tag = "9")]
        pub source: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Event {
        Event {
            session_id: "s-42".into(),
            event_id: "stim-0017".into(),
            onset: Onset::UnixMs(1_732_270_012_345.25),
            duration_s: 0.0,
            label: "target".into(),
            value: Some(3),
            source: "app".into(),
        }
    }

    #[test]
    fn the_design_example_decodes() {
        let json = br#"{"schema": "eeg.event/1", "session_id": "s-42", "event_id": "stim-0017",
   "onset_ms": 1732270012345.25, "duration_s": 0.0, "label": "target", "value": 3,
   "source": "app"}"#;
        assert!(is_event_json(json));
        assert_eq!(decode_event(json).unwrap(), example());
    }

    #[test]
    fn json_and_protobuf_round_trip_to_the_same_event() {
        let mut events = vec![example()];
        events.push(Event {
            onset: Onset::Sample(1_234_567),
            duration_s: 1.5,
            label: String::new(),
            value: None,
            source: String::new(),
            ..example()
        });
        events.push(Event {
            label: "Überraschung ✓".into(),
            value: Some(-65_536),
            ..example()
        });
        for e in events {
            assert_eq!(decode_event(e.to_json().as_bytes()).unwrap(), e);
            let mut bin = Vec::new();
            e.encode_protobuf(&mut bin);
            assert_eq!(decode_event_protobuf(&bin).unwrap(), e);
        }
    }

    #[test]
    fn onset_sample_wins_over_onset_ms() {
        let e = decode_event(
            br#"{"schema":"eeg.event/1","session_id":"s","event_id":"e","onset_ms":5.0,"onset_sample":7,"label":"x"}"#,
        )
        .unwrap();
        assert_eq!(e.onset, Onset::Sample(7));
        assert_eq!(e.duration_s, 0.0);
    }

    #[test]
    fn bad_events_name_the_field_at_fault_on_one_line() {
        let base =
            r#""schema":"eeg.event/1","session_id":"s","event_id":"e","onset_ms":5.0,"label":"x""#;
        let cases: &[(String, &str, &str)] = &[
            (
                r#"{"schema":"eeg.event/1","session_id":"s","event_id":"e","label":"x"}"#.into(),
                "onset_ms",
                "missing",
            ),
            (
                format!(r#"{{{base},"value":3.5}}"#),
                "value",
                "must be an integer",
            ),
            (
                format!(r#"{{{base},"duration_s":-1}}"#),
                "duration_s",
                ">= 0",
            ),
            (
                format!(r#"{{{base},"colour":"red"}}"#),
                "colour",
                "unknown field",
            ),
            (
                format!(r#"{{{base},"source":"a\nb"}}"#),
                "source",
                "control character",
            ),
            (
                r#"{"schema":"eeg.event/1","session_id":"","event_id":"e","onset_ms":1,"label":"x"}"#
                    .into(),
                "session_id",
                "empty",
            ),
            (
                format!(
                    r#"{{"schema":"eeg.event/1","session_id":"s","event_id":"e","onset_ms":1,"label":"{}"}}"#,
                    "x".repeat(257)
                ),
                "label",
                "at most 256",
            ),
            (
                r#"{"schema":"eeg.event/1","session_id":"s","event_id":"e","onset_sample":-2,"label":"x"}"#
                    .into(),
                "onset_sample",
                ">= 0",
            ),
            (
                r#"{"schema":"eeg.event/2","session_id":"s","event_id":"e","onset_ms":1,"label":"x"}"#
                    .into(),
                "schema",
                "eeg.event/1",
            ),
            (
                r#"{"schema":"eeg.event/1","session_id":"s","event_id":"e","onset_ms":1}"#.into(),
                "label",
                "missing",
            ),
        ];
        for (json, name, problem) in cases {
            let e = decode_event(json.as_bytes()).unwrap_err();
            assert_eq!(e.field(), Some(*name), "{json}: {e}");
            let line = e.to_string();
            assert!(line.contains(problem), "{json}: {line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn both_forms_agree_on_the_edges_of_their_numbers() {
        // A protobuf uint64 onset beyond i64 could not be written as JSON: refused in both.
        let mut bin = Vec::new();
        Event {
            onset: Onset::Sample(u64::MAX),
            ..example()
        }
        .encode_protobuf(&mut bin);
        assert_eq!(
            decode_event_protobuf(&bin).unwrap_err().field(),
            Some("onset_sample")
        );
        // -0 is read as 0 from either form, so that it reads back bit for bit.
        let mut bin = Vec::new();
        Event {
            onset: Onset::UnixMs(-0.0),
            duration_s: -0.0,
            ..example()
        }
        .encode_protobuf(&mut bin);
        let e = decode_event_protobuf(&bin).unwrap();
        assert_eq!(e.duration_s.to_bits(), 0);
        assert!(matches!(e.onset, Onset::UnixMs(ms) if ms.to_bits() == 0));
        let e = decode_event(
            br#"{"schema":"eeg.event/1","session_id":"s","event_id":"e","onset_ms":-0.0,"duration_s":-0.0,"label":"x"}"#,
        )
        .unwrap();
        assert_eq!(e.duration_s.to_bits(), 0);
        assert!(matches!(e.onset, Onset::UnixMs(ms) if ms.to_bits() == 0));
    }

    #[test]
    fn a_binary_event_breaking_a_rule_is_refused_as_the_json_one_is() {
        let mut bin = Vec::new();
        Event {
            duration_s: f64::NAN,
            ..example()
        }
        .encode_protobuf(&mut bin);
        assert_eq!(
            decode_event_protobuf(&bin).unwrap_err().field(),
            Some("duration_s")
        );
        let mut bin = Vec::new();
        prost::Message::encode(
            &wire::Event {
                schema: EVENT_SCHEMA.into(),
                session_id: "s".into(),
                event_id: "e".into(),
                label: "x".into(),
                ..wire::Event::default()
            },
            &mut bin,
        )
        .unwrap();
        assert_eq!(
            decode_event_protobuf(&bin).unwrap_err().field(),
            Some("onset_ms")
        );
        assert!(matches!(
            decode_event_protobuf(b"\xff\xff\xff").unwrap_err(),
            SchemaError::Protobuf { .. }
        ));
    }

    #[test]
    fn only_a_message_whose_schema_is_the_events_is_taken_for_one() {
        assert!(is_event_json(br#"{ "schema" : "eeg.event/1" }"#));
        assert!(!is_event_json(
            br#"{"schema":"eeg.raw/1","label":"eeg.event/1"}"#
        ));
        assert!(!is_event_json(b"not json"));
    }

    #[test]
    fn an_event_too_large_is_refused_before_parsing() {
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(matches!(
            decode_event(&big).unwrap_err(),
            SchemaError::TooLarge { .. }
        ));
    }
}
