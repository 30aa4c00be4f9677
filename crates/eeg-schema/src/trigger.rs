//! `analytics.trigger/1`: the events the trigger rules emit.
//!
//! ```json
//! {"schema": "analytics.trigger/1", "rule_id": "high_engagement", "session_id": "s-42",
//!  "device_id": "bud-7", "state": "fired", "metric": "indices.engagement", "value": 0.74,
//!  "threshold": 0.7, "window_index": 12, "start_ms": 1732270012000, "end_ms": 1732270016000}
//! ```
//! Fields in this order, all present: `schema` ([`TRIGGER_SCHEMA`]), `rule_id`,
//! `session_id`, `device_id`, `state` (`"fired"` or `"cleared"`), `metric` (as the rule
//! names it), `value` (the metric in the window that completed the run), `threshold` (the
//! rule's `threshold` when fired, its `clear_threshold` when cleared), `window_index`,
//! `start_ms` and `end_ms` of that window.

use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

/// The `schema` field of every trigger record.
pub const TRIGGER_SCHEMA: &str = "analytics.trigger/1";

/// Whether an event announces that a rule fired or that it cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    Fired,
    Cleared,
}

impl EventState {
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Fired => "fired",
            EventState::Cleared => "cleared",
        }
    }
}

/// One `analytics.trigger/1` record, borrowed from the engine and the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TriggerEvent<'a> {
    pub rule_id: &'a str,
    pub session_id: &'a str,
    pub device_id: &'a str,
    pub state: EventState,
    /// The rule's metric as the config names it, e.g. `indices.engagement`.
    pub metric: &'a str,
    /// The metric's value in the window that completed the run; always finite.
    pub value: f64,
    /// The rule's `threshold` for `fired`, its `clear_threshold` for `cleared`.
    pub threshold: f64,
    pub window_index: u64,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl TriggerEvent<'_> {
    /// The record's JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out);
        out
    }

    /// Appends the record's JSON (no trailing newline) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail and every field serialises.
        let _ = serde_json::to_writer(out, self);
    }

    pub fn to_record(&self) -> TriggerRecord {
        TriggerRecord {
            rule_id: self.rule_id.to_string(),
            session_id: self.session_id.to_string(),
            device_id: self.device_id.to_string(),
            state: self.state,
            metric: self.metric.to_string(),
            value: self.value,
            threshold: self.threshold,
            window_index: self.window_index,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
        }
    }
}

impl Serialize for TriggerEvent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("TriggerEvent", 11)?;
        st.serialize_field("schema", TRIGGER_SCHEMA)?;
        st.serialize_field("rule_id", self.rule_id)?;
        st.serialize_field("session_id", self.session_id)?;
        st.serialize_field("device_id", self.device_id)?;
        st.serialize_field("state", &self.state)?;
        st.serialize_field("metric", self.metric)?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("threshold", &self.threshold)?;
        st.serialize_field("window_index", &self.window_index)?;
        st.serialize_field("start_ms", &self.start_ms)?;
        st.serialize_field("end_ms", &self.end_ms)?;
        st.end()
    }
}

/// An `analytics.trigger/1` record read back, e.g. by a consumer or a test. Serialises to the
/// same JSON as the [`TriggerEvent`] it was written from.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRecord {
    pub rule_id: String,
    pub session_id: String,
    pub device_id: String,
    pub state: EventState,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub window_index: u64,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl From<&TriggerEvent<'_>> for TriggerRecord {
    fn from(e: &TriggerEvent<'_>) -> TriggerRecord {
        TriggerRecord {
            rule_id: e.rule_id.to_string(),
            session_id: e.session_id.to_string(),
            device_id: e.device_id.to_string(),
            state: e.state,
            metric: e.metric.to_string(),
            value: e.value,
            threshold: e.threshold,
            window_index: e.window_index,
            start_ms: e.start_ms,
            end_ms: e.end_ms,
        }
    }
}

impl TriggerRecord {
    pub fn as_event(&self) -> TriggerEvent<'_> {
        TriggerEvent {
            rule_id: &self.rule_id,
            session_id: &self.session_id,
            device_id: &self.device_id,
            state: self.state,
            metric: &self.metric,
            value: self.value,
            threshold: self.threshold,
            window_index: self.window_index,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
        }
    }

    /// The record's JSON, as [`TriggerEvent::encode`] writes it.
    pub fn encode(&self) -> Vec<u8> {
        self.as_event().encode()
    }
}

impl Serialize for TriggerRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_event().serialize(s)
    }
}

/// The record as it is on the wire, `schema` included.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerWire {
    schema: String,
    rule_id: String,
    session_id: String,
    device_id: String,
    state: EventState,
    metric: String,
    value: f64,
    threshold: f64,
    window_index: u64,
    start_ms: i64,
    end_ms: i64,
}

impl<'de> Deserialize<'de> for TriggerRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TriggerRecord, D::Error> {
        let w = TriggerWire::deserialize(d)?;
        if w.schema != TRIGGER_SCHEMA {
            return Err(de::Error::custom(format_args!(
                "field 'schema': expected \"{TRIGGER_SCHEMA}\", got {}",
                crate::error::quote(&w.schema)
            )));
        }
        Ok(TriggerRecord {
            rule_id: w.rule_id,
            session_id: w.session_id,
            device_id: w.device_id,
            state: w.state,
            metric: w.metric,
            value: w.value,
            threshold: w.threshold,
            window_index: w.window_index,
            start_ms: w.start_ms,
            end_ms: w.end_ms,
        })
    }
}

/// A message that is not an `analytics.trigger/1` record; one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an {TRIGGER_SCHEMA} record: {0}")]
pub struct DecodeError(String);

/// Decodes an `analytics.trigger/1` record. Unknown and missing fields are errors.
pub fn decode_trigger(bytes: &[u8]) -> Result<TriggerRecord, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string().replace(['\n', '\r'], " ")))
}
