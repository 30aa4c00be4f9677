//! Session snapshots (`eeg.session.state/1`): what a session needs to carry on exactly
//! after a crash, restart or rebalance, and reading them back for a partition.
//!
//! A snapshot is taken at the session's *boundary*: the first raw message still needed by a
//! window that is not published yet. It holds the filter state just before that message,
//! the window counter, the `seq` of that message and the session's identity. On restore,
//! the session's messages before the boundary are skipped by `seq`, the rest are processed
//! again from the saved filter state, and every record comes out as before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};

use eeg_dsp::Checkpoint;
use eeg_kafka::{Auth, AuthContext};
use eeg_publish::TriggerState;

pub const SCHEMA: &str = "eeg.session.state/1";

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
    pub checkpoint: Checkpoint,
    /// Trigger rules' state after the last window before `checkpoint.next_window`.
    #[serde(default)]
    pub triggers: Option<TriggerState>,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a snapshot always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
        let s: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.schema != SCHEMA {
            return Err(format!("schema '{}', expected '{SCHEMA}'", s.schema));
        }
        Ok(s)
    }
}

/// Reads partition `partition` of the state topic from its start to its end and keeps the
/// last snapshot per session; a tombstone (empty value) removes the session. This works
/// whether or not the broker has compacted the topic yet.
pub fn read_partition(
    client: &ClientConfig,
    auth: &Auth,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<HashMap<String, Snapshot>, String> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer<AuthContext> = client
        .clone()
        .set("group.id", "eeg-pipeline-state-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(AuthContext(auth.clone()))
        .map_err(|e| format!("state reader: {e}"))?;
    auth.prime(|d| {
        let _ = consumer.poll(d);
    });
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|e| format!("{topic} partition {partition}: watermarks: {e}"))?;
    let mut out = HashMap::new();
    if high <= low {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut next = low;
    while next < high {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{topic} partition {partition}: read to offset {next} of {high} before the timeout"
            ));
        }
        match consumer.poll(left.min(Duration::from_millis(200))) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(format!("{topic} partition {partition}: {e}")),
            Some(Ok(m)) => {
                next = m.offset() + 1;
                let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    continue;
                };
                match m.payload() {
                    None | Some([]) => {
                        out.remove(key);
                    }
                    Some(bytes) => match Snapshot::decode(bytes) {
                        Ok(s) => {
                            out.insert(key.to_string(), s);
                        }
                        Err(e) => tracing::warn!(
                            "{topic} partition {partition} offset {}: snapshot of '{key}' ignored: {e}",
                            m.offset()
                        ),
                    },
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_bit_for_bit() {
        let s = Snapshot {
            schema: SCHEMA.into(),
            session_id: "s-1".into(),
            device_id: "d".into(),
            user_id: None,
            sample_rate_hz: 256.0,
            channels: vec!["A".into(), "B".into()],
            next_seq: 42,
            source_offset: 1234,
            checkpoint: Checkpoint {
                position: 9000,
                next_window: 31,
                base_index: 2,
                t0_ms: 1_700_000_000_123,
                filter: vec![0.1 + 0.2, -1e-300, std::f64::consts::PI, 5e-324],
            },
            triggers: Some(
                eeg_publish::TriggerEngine::new(eeg_publish::default_rules())
                    .unwrap()
                    .new_state(),
            ),
        };
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
        assert!(err.contains("other/1"), "{err}");
    }
}
