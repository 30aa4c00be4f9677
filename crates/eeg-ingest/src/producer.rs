//! The service's producer: idempotent, `acks=all`, and every record tied to the ledger
//! [`Ticket`] of the input it was produced for, so the partition's core knows when an input's
//! outputs are all acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eeg_kafka::Auth;
use eeg_session::Ticket;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::bell::Bell;
use crate::error::{Failure, Failures, ProduceError};
use crate::figures::WindowLatency;

/// librdkafka's default `message.max.bytes`, which the service keeps unless told otherwise:
/// it is also the default `max.message.bytes` of a topic, so a record the producer takes is
/// one the broker takes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Delivery reports settle tickets. A failed delivery fails its ticket, so no offset behind
/// lost output is ever committed, and is reported as the service's failure.
#[derive(Debug)]
struct Deliveries {
    failures: Arc<Failures>,
    auth: Auth,
    latency: Arc<WindowLatency>,
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
    /// Rung when this delivery settles its ticket, or fails.
    bell: Option<Arc<Bell>>,
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
        let Delivery {
            ticket,
            stamp,
            bell,
        } = *delivery;
        match result {
            Ok(_) => {
                if let Some(stamp) = stamp {
                    let now_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    self.latency
                        .observe(stamp.window_end_ms, stamp.consumed, now_ms);
                }
                if ticket.ack()
                    && let Some(bell) = bell
                {
                    bell.ring();
                }
            }
            Err((e, m)) => {
                ticket.fail();
                self.failures.report(Failure::Delivery {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    source: e.clone(),
                });
                if let Some(bell) = bell {
                    bell.ring();
                }
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
    /// Rung when the record's delivery settles its ticket, or fails.
    pub bell: Option<&'a Arc<Bell>>,
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
    /// `acks=all` on, which records the latency of stamped records in `latency` and a failed
    /// delivery in `failures`; no network round trip happens here.
    pub fn new(
        client: &ClientConfig,
        auth: &Auth,
        latency: Arc<WindowLatency>,
        failures: Arc<Failures>,
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
                failures,
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
    /// that cannot be produced at all (e.g. larger than `message.max.bytes`) is an error for
    /// the caller to report.
    pub fn send(&self, record: &Record<'_>, ticket: &Arc<Ticket>) -> Result<(), ProduceError> {
        let mut r = BaseRecord::with_opaque_to(
            record.topic,
            Box::new(Delivery {
                ticket: Arc::clone(ticket),
                stamp: record.stamp,
                bell: record.bell.cloned(),
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
                    return Err(ProduceError {
                        topic: record.topic.to_string(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Waits up to `timeout` for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }
}
