//! The service's producer: idempotent, `acks=all`, and every record tied to the ledger
//! [`Ticket`] of the input it was produced for, so the partition's core knows when an input's
//! outputs are all acknowledged.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eeg_kafka::Auth;
use eeg_session::Ticket;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// librdkafka's default `message.max.bytes`, which the service keeps unless told otherwise:
/// it is also the default `max.message.bytes` of a topic, so a record the producer takes is
/// one the broker takes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Delivery reports settle tickets. A failed delivery fails its ticket, so no offset behind
/// lost output is ever committed.
#[derive(Debug, Default)]
struct Deliveries {
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    auth: Auth,
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

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Arc<Ticket>) {
        match result {
            Ok(_) => ticket.ack(),
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
    /// `acks=all` on; no network round trip happens here.
    pub fn new(client: &ClientConfig, auth: &Auth) -> KafkaResult<Publisher> {
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
                ..Deliveries::default()
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
        let mut r = BaseRecord::with_opaque_to(record.topic, Arc::clone(ticket));
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
