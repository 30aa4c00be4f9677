//! Reading a partition of the session state topic back (`eeg.session.state/1`, see
//! [`eeg_session::snapshot`] for the records and the rule that picks the one to restore).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};

use eeg_kafka::{Auth, AuthContext};
use eeg_session::{StateReader, StateRecord};

/// Why a partition's snapshots could not be read; its sessions then restart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The reading client could not be made.
    #[error("state reader: {0}")]
    Client(#[source] KafkaError),
    /// The broker did not answer a request about a partition.
    #[error("{topic} partition {partition}: {what}: {source}")]
    Broker {
        topic: String,
        partition: i32,
        /// The request: `committed offset`, `watermarks`, `assign`, `fetch`.
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    /// The partition was not read to its end in time.
    #[error("{topic} partition {partition}: read to offset {next} of {high} before the timeout")]
    Timeout {
        topic: String,
        partition: i32,
        next: i64,
        high: i64,
    },
}

/// What is saved about one partition: its sessions' state records (the one to restore per
/// session) and the group's committed offset on the raw topic.
#[derive(Debug, Default)]
pub struct Saved {
    pub records: HashMap<String, StateRecord>,
    pub committed: Option<i64>,
}

/// Reads partition `partition` of the state topic from its start to its end, keeping per
/// session the record to restore ([`StateReader`]), and the group's committed offset of the
/// same partition of the raw topic. Reading the whole partition works whether or not the
/// broker has compacted the topic yet.
pub fn read_partition(
    client: &ClientConfig,
    auth: &Auth,
    group_id: &str,
    raw_topic: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Saved, StateError> {
    let deadline = Instant::now() + timeout;
    // The service's group, to read its committed offset; this client only assigns, so it
    // never joins the group, and it never commits.
    let consumer: BaseConsumer<AuthContext> = client
        .clone()
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(AuthContext(auth.clone()))
        .map_err(StateError::Client)?;
    auth.prime(|d| {
        let _ = consumer.poll(d);
    });
    let mut raw = TopicPartitionList::new();
    raw.add_partition(raw_topic, partition);
    let broker = |topic: &str, what: &'static str| {
        let topic = topic.to_string();
        move |source| StateError::Broker {
            topic,
            partition,
            what,
            source,
        }
    };
    let committed = consumer
        .committed_offsets(raw, timeout)
        .map_err(broker(raw_topic, "committed offset"))?
        .find_partition(raw_topic, partition)
        .and_then(|p| match p.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(broker(topic, "watermarks"))?;
    let mut reader = StateReader::new();
    if high > low {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(broker(topic, "assign"))?;
        consumer.assign(&tpl).map_err(broker(topic, "assign"))?;
        let mut next = low;
        while next < high {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StateError::Timeout {
                    topic: topic.to_string(),
                    partition,
                    next,
                    high,
                });
            }
            match consumer.poll(left.min(Duration::from_millis(200))) {
                None => {}
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(broker(topic, "fetch")(e)),
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    let Some(key) = m.key() else { continue };
                    let headers = m.headers();
                    let header = |name: &str| {
                        headers.and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                    };
                    match StateRecord::decode(key, m.payload(), header) {
                        Ok(r) => reader.add(r),
                        Err(e) => tracing::warn!(
                            "{topic} partition {partition} offset {}: state record ignored: {e}",
                            m.offset()
                        ),
                    }
                }
            }
        }
    }
    Ok(Saved {
        records: reader.finish(),
        committed,
    })
}
