//! Session snapshots (`eeg.session.state/1`): what a session needs to carry on exactly after
//! a crash, restart or rebalance, and the rule that picks, among the records read back for a
//! partition, the one to restore.
//!
//! A snapshot is taken at the session's *boundary*: the first raw message still needed by a
//! window that is not published yet. It holds the filter state just before that message, the
//! window counter, the `seq` of that message and the session's identity. On restore, the
//! session's messages before the boundary are skipped by `seq`, the rest are processed again
//! from the saved filter state, and every record comes out as before.
//!
//! Every state record says where in the raw partition it was taken (`position`: the offset of
//! the last raw message processed before it). Two owners of one partition at once (a broker
//! that overlaps assignments, a stale instance that has not noticed it lost a partition) write
//! the same snapshots, but not at the same time: restoring keeps, per session, the record of
//! the highest position, not the last one written, so a late write of older state never
//! replaces newer state.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use eeg_dsp::Checkpoint;

use crate::epochs::EventState;
use crate::text::quoted;
use crate::triggers::TriggerState;

pub const SCHEMA: &str = "eeg.session.state/1";

/// Header of a tombstone: the offset of the last raw message processed when the session
/// was evicted (decimal).
pub const POSITION_HEADER: &str = "eeg.position";
/// Header of a tombstone: the `seq` the evicted session expected next (decimal). Messages of
/// the session read again below it are accounted for.
pub const NEXT_SEQ_HEADER: &str = "eeg.next_seq";

/// One session's recoverable state; the record value on the state topic (JSON, with every
/// float written so it reads back to the same bits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub schema: String,
    pub session_id: String,
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub sample_rate_hz: f64,
    pub channels: Vec<String>,
    /// `seq` of the boundary message: earlier messages of the session are accounted for.
    pub next_seq: u64,
    /// Offset of the boundary message on the raw topic's partition.
    pub source_offset: i64,
    /// Offset of the last raw message processed when the snapshot was taken (absent in
    /// snapshots written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Message time (ms) of the session's last message when the snapshot was taken, for
    /// idle eviction (absent in older snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<i64>,
    pub checkpoint: Checkpoint,
    /// Trigger rules' state after the last window before `checkpoint.next_window`.
    #[serde(default)]
    pub triggers: Option<TriggerState>,
    /// The session's events and epochs at `position` but their filtered samples, which the
    /// session computes again from `checkpoint` on (absent in older snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventState>,
}

/// A state record that cannot be read back; one line, whatever the record holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SnapshotError(String);

impl SnapshotError {
    fn new(message: impl AsRef<str>) -> SnapshotError {
        SnapshotError(crate::text::message(message.as_ref()))
    }
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a snapshot always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let s: Snapshot =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::new(e.to_string()))?;
        if s.schema != SCHEMA {
            return Err(SnapshotError::new(format!(
                "schema {}, expected '{SCHEMA}'",
                quoted(&s.schema)
            )));
        }
        Ok(s)
    }

    /// Where the snapshot was taken: its recorded position, else its boundary.
    fn taken_at(&self) -> i64 {
        self.position.unwrap_or(self.source_offset)
    }
}

/// What a state record says about a session.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    /// Carry on from here.
    Snapshot(Box<Snapshot>),
    /// The session was evicted; its messages below `next_seq` are accounted for. Written as a
    /// tombstone (no value) with headers, so a compacting broker deletes the key.
    Evicted { next_seq: u64 },
}

/// One record of the state topic, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    pub session_id: String,
    /// Offset of the last raw message processed when the record was written; `None` for
    /// records written before positions were recorded.
    pub position: Option<i64>,
    pub value: StateValue,
}

impl StateRecord {
    /// Decodes a record of the state topic from its key, value and a header lookup.
    pub fn decode<'h>(
        key: &[u8],
        value: Option<&[u8]>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Result<StateRecord, SnapshotError> {
        let session_id = std::str::from_utf8(key)
            .map_err(|_| SnapshotError::new("key is not UTF-8"))?
            .to_string();
        let number = |name: &str| -> Result<Option<i64>, SnapshotError> {
            match header(name) {
                None => Ok(None),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map(Some)
                    .ok_or_else(|| {
                        SnapshotError::new(format!("header '{name}' is not an integer"))
                    }),
            }
        };
        match value {
            None | Some([]) => Ok(StateRecord {
                session_id,
                position: number(POSITION_HEADER)?,
                value: StateValue::Evicted {
                    next_seq: number(NEXT_SEQ_HEADER)?.unwrap_or(0).max(0) as u64,
                },
            }),
            Some(bytes) => {
                let snap = Snapshot::decode(bytes)?;
                if snap.session_id != session_id {
                    return Err(SnapshotError::new(format!(
                        "snapshot of session {} under key {}",
                        quoted(&snap.session_id),
                        quoted(&session_id)
                    )));
                }
                Ok(StateRecord {
                    session_id,
                    position: Some(snap.taken_at()),
                    value: StateValue::Snapshot(Box::new(snap)),
                })
            }
        }
    }
}

/// Reads a partition's state records in the order they were written and keeps, per session,
/// the one to restore: the record of the highest position (ties and records without a
/// position: the later one).
#[derive(Debug, Default)]
pub struct StateReader {
    latest: HashMap<String, StateRecord>,
}

impl StateReader {
    pub fn new() -> StateReader {
        StateReader::default()
    }

    pub fn add(&mut self, record: StateRecord) {
        match self.latest.get(&record.session_id) {
            Some(old) if matches!((old.position, record.position), (Some(a), Some(b)) if a > b) => {
            }
            _ => {
                self.latest.insert(record.session_id.clone(), record);
            }
        }
    }

    /// The record kept for each session.
    pub fn finish(self) -> HashMap<String, StateRecord> {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, next_seq: u64, position: Option<i64>) -> Snapshot {
        Snapshot {
            schema: SCHEMA.into(),
            session_id: id.into(),
            device_id: "d".into(),
            user_id: None,
            sample_rate_hz: 256.0,
            channels: vec!["A".into(), "B".into()],
            next_seq,
            source_offset: 1234,
            position,
            last_seen_ms: Some(1_700_000_100_000),
            checkpoint: Checkpoint {
                position: 9000,
                next_window: 31,
                base_index: 2,
                t0_ms: 1_700_000_000_123,
                filter: vec![0.1 + 0.2, -1e-300, std::f64::consts::PI, 5e-324],
            },
            triggers: Some(
                crate::TriggerEngine::new(crate::default_rules())
                    .unwrap()
                    .new_state(),
            ),
            events: Some(event_state()),
        }
    }

    /// Events waiting, placed and with epochs pending, at awkward times.
    fn event_state() -> EventState {
        let event = |id: &str, onset| eeg_schema::Event {
            session_id: "s-1".into(),
            event_id: id.into(),
            onset,
            duration_s: 0.1 + 0.2,
            label: "target \u{1F600}".into(),
            value: Some(-3),
            source: "app".into(),
        };
        EventState {
            timeline: crate::events::TimelineState {
                anchors: vec![(0, 1_700_000_000_123.1, 32), (32, 1_700_000_000_251.7, 32)],
                waiting: vec![event("w", eeg_schema::Onset::UnixMs(1_700_000_009_000.3))],
                placed: vec![("p".into(), 40)],
            },
            pending: vec![(event("p", eeg_schema::Onset::Sample(40)), 40)],
            counts: crate::epochs::EventCounts {
                events: 2,
                copies: 1,
                ..Default::default()
            },
            t0_ms: 1_700_000_000_123.1,
        }
    }

    #[test]
    fn snapshots_round_trip_bit_for_bit() {
        let s = snapshot("s-1", 42, Some(1300));
        let back = Snapshot::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        for (a, b) in back.checkpoint.filter.iter().zip(&s.checkpoint.filter) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }

    #[test]
    fn a_snapshot_of_another_schema_is_refused() {
        let text = br#"{"schema":"other/1","session_id":"s","device_id":"d","sample_rate_hz":1.0,
            "channels":[],"next_seq":0,"source_offset":0,
            "checkpoint":{"position":0,"next_window":0,"base_index":0,"t0_ms":0,"filter":[]}}"#;
        let err = Snapshot::decode(text).unwrap_err();
        assert!(err.to_string().contains("other/1"), "{err}");
    }

    fn record(id: &str, next_seq: u64, position: Option<i64>) -> StateRecord {
        let s = snapshot(id, next_seq, position);
        StateRecord::decode(id.as_bytes(), Some(&s.encode()), |_| None).unwrap()
    }

    fn tombstone(id: &str, next_seq: u64, position: i64) -> StateRecord {
        let (p, n) = (position.to_string(), next_seq.to_string());
        StateRecord::decode(id.as_bytes(), None, |h| match h {
            POSITION_HEADER => Some(p.as_bytes()),
            NEXT_SEQ_HEADER => Some(n.as_bytes()),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn the_record_of_the_highest_position_wins_whatever_the_order_written() {
        let mut r = StateReader::new();
        r.add(record("s", 10, Some(100)));
        r.add(record("s", 7, Some(80))); // a stale owner's late write
        r.add(record("t", 3, Some(50)));
        r.add(tombstone("t", 9, 40)); // an older eviction written late
        r.add(record("u", 1, Some(10)));
        r.add(tombstone("u", 5, 60));
        let kept = r.finish();
        let seq = |id: &str| match &kept[id].value {
            StateValue::Snapshot(s) => Some(s.next_seq),
            StateValue::Evicted { .. } => None,
        };
        assert_eq!(seq("s"), Some(10));
        assert_eq!(seq("t"), Some(3));
        assert_eq!(kept["u"].value, StateValue::Evicted { next_seq: 5 });
    }

    #[test]
    fn records_without_a_position_are_ordered_as_written() {
        let mut r = StateReader::new();
        r.add(record("s", 10, Some(100)));
        r.add(record("s", 4, None));
        let kept = r.finish();
        // An old-format snapshot's position is its boundary (1234 here).
        assert_eq!(kept["s"].position, Some(1234));
        let mut r = StateReader::new();
        r.add(record("s", 10, Some(100)));
        let old_tombstone =
            StateRecord::decode(b"s", None, |_| None).expect("a bare tombstone decodes");
        r.add(old_tombstone);
        assert_eq!(r.finish()["s"].value, StateValue::Evicted { next_seq: 0 });
    }

    #[test]
    fn a_snapshot_under_another_key_or_a_bad_header_is_an_error() {
        let s = snapshot("s", 1, Some(1));
        let err = StateRecord::decode(b"t", Some(&s.encode()), |_| None).unwrap_err();
        assert!(err.to_string().contains("under key \"t\""), "{err}");
        let err = StateRecord::decode(b"t", None, |h| {
            (h == POSITION_HEADER).then_some(b"x1".as_slice())
        })
        .unwrap_err();
        assert!(err.to_string().contains(POSITION_HEADER), "{err}");
    }
}
