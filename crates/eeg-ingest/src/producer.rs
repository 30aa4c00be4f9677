//! The service's producer: idempotent, `acks=all`, and every record tied to the ledger
//! [`Ticket`] of the input it was produced for, so the partition's core knows when an input's
//! outputs are all acknowledged.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eeg_kafka::Auth;
use eeg_session::Ticket;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::service::WindowLatency;

/// librdkafka's default `message.max.bytes`, which the service keeps unless told otherwise:
/// it is also the default `max.message.bytes` of a topic, so a record the producer takes is
/// one the broker takes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Delivery reports settle tickets. A failed delivery fails its ticket, so no offset behind
/// lost output is ever committed.
#[derive(Debug)]
struct Deliveries {
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    auth: Auth,
    latency: Arc<WindowLatency>,
}

impl Deliveries {
    /// Records a failure; only the first is logged (once the broker is gone, every queued
    /// record fails the same way).
    fn fail(&self, line: String) {
        self.failed.store(true, Ordering::Release);
        let mut first = self.failure.lock().expect("failure lock");
        if first.is_none() {
            tracing::error!("{line}");
            *first = Some(line);
        } else {
            tracing::debug!("{line}");
        }
    }
}

impl ClientContext for Deliveries {
    eeg_kafka::answer_token_refresh!(|ctx| ctx.auth);
}

/// What a delivery report needs: the ticket it settles and, for a processed record, where
/// its latency is measured from.
#[derive(Debug)]
struct Delivery {
    ticket: Arc<Ticket>,
    stamp: Option<Stamp>,
}

/// Where a processed record's latency starts.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// Unix time of the end of the record's window, ms.
    pub window_end_ms: i64,
    /// When the raw message that completed the window was taken from its partition.
    pub consumed: Option<Instant>,
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        let Delivery { ticket, stamp } = *delivery;
        match result {
            Ok(_) => {
                if let Some(stamp) = stamp {
                    let now_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    self.latency
                        .observe(stamp.window_end_ms, stamp.consumed, now_ms);
                }
                ticket.ack();
            }
            Err((e, m)) => {
                ticket.fail();
                self.fail(format!(
                    "delivery to {} partition {} failed after retries: {e}",
                    m.topic(),
                    m.partition()
                ));
            }
        }
    }
}

/// One record to produce.
#[derive(Debug)]
pub struct Record<'a> {
    pub topic: &'a str,
    /// An explicit partition; `None` partitions by key.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone.
    pub payload: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
    /// For a processed record: its latency is measured when it is acknowledged.
    pub stamp: Option<Stamp>,
}

/// A record the producer did not take.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot produce to {topic}: {source}")]
pub struct ProduceError {
    pub topic: String,
    #[source]
    pub source: KafkaError,
}

/// The idempotent producer. Clones share the same client.
#[derive(Clone)]
pub struct Publisher {
    producer: Arc<ThreadedProducer<Deliveries>>,
    max_message_bytes: usize,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A producer from `client` (bootstrap servers, security) with idempotence and
    /// `acks=all` on, which records the latency of stamped records in `latency`; no network
    /// round trip happens here.
    pub fn new(
        client: &ClientConfig,
        auth: &Auth,
        latency: Arc<WindowLatency>,
    ) -> KafkaResult<Publisher> {
        // Defaults first, so `client` can change them; idempotence and acks=all are what
        // the delivery promise rests on and are not overridable.
        let mut c = ClientConfig::new();
        c.set("linger.ms", "5").set("compression.type", "lz4");
        for (k, v) in client.config_map() {
            c.set(k, v);
        }
        let max_message_bytes = c
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let producer = c
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create_with_context(Deliveries {
                auth: auth.clone(),
                latency,
                failure: Mutex::default(),
                failed: AtomicBool::default(),
            })?;
        Ok(Publisher {
            producer: Arc::new(producer),
            max_message_bytes,
        })
    }

    /// The largest record the producer takes (`message.max.bytes`).
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Produces `record`; its delivery report acknowledges or fails `ticket`. Waits while
    /// the producer's queue is full: a full queue is backpressure, not an error. A record
    /// that cannot be produced at all (e.g. larger than `message.max.bytes`) is an error,
    /// and the publisher is marked failed.
    pub fn send(&self, record: &Record<'_>, ticket: &Arc<Ticket>) -> Result<(), ProduceError> {
        let mut r = BaseRecord::with_opaque_to(
            record.topic,
            Box::new(Delivery {
                ticket: Arc::clone(ticket),
                stamp: record.stamp,
            }),
        );
        if let Some(k) = record.key {
            r = r.key(k);
        }
        if let Some(p) = record.partition {
            r = r.partition(p);
        }
        if let Some(payload) = record.payload {
            r = r.payload(payload);
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(*value),
                });
            }
            r = r.headers(headers);
        }
        loop {
            match self.producer.send::<[u8], [u8]>(r) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    self.producer
                        .context()
                        .fail(format!("cannot produce to {}: {e}", record.topic));
                    return Err(ProduceError {
                        topic: record.topic.to_string(),
                        source: e,
                    });
                }
            }
        }
    }

    /// The first delivery failure, once there was one.
    pub fn failure(&self) -> Option<String> {
        let ctx = self.producer.context();
        if ctx.failed.load(Ordering::Acquire) {
            ctx.failure.lock().expect("failure lock").clone()
        } else {
            None
        }
    }

    pub fn failed(&self) -> bool {
        self.producer.context().failed.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }
}
