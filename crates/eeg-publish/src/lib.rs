//! Producer side of eeg-pipeline: what the service publishes besides the processed records.
//!
//! [`triggers`]: the trigger engine. Rules from the config's `[[triggers]]` tables watch a
//! metric of each window (an index, a band's power, the share of good channels) and emit
//! `analytics.trigger/1` records when a condition has held for a number of windows (`fired`)
//! and when it has gone away (`cleared`), with hysteresis and a cooldown. The engine is pure
//! logic: windows in, events out, and a small serialisable state per session that can be
//! snapshotted and restored without changing any event. docs/triggers.md is the contract.
//!
//! # `analytics.trigger/1`
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

pub mod producer;
pub mod triggers;

pub use producer::{Out, Pending, Publisher};

pub use triggers::{
    DecodeError, EventState, MAX_ID_BYTES, Metric, Op, Rule, TRIGGER_SCHEMA, TriggerConfig,
    TriggerConfigError, TriggerEngine, TriggerEvent, TriggerRecord, TriggerState, decode_trigger,
    default_rules,
};
