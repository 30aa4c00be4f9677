//! The service's producer: idempotent, `acks=all`, and every record tied to the input it
//! came from, so the consumer side knows when an input's outputs are all acknowledged.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use eeg_kafka::Auth;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// A group of records produced on behalf of one input (a raw message, or a partition's
/// snapshots), settled when the broker has acknowledged all of them.
#[derive(Debug)]
pub struct Pending {
    offset: i64,
    commit: Option<i64>,
    /// Records not yet acknowledged, plus one while the producing side holds it.
    remaining: AtomicUsize,
}

impl Pending {
    /// A group for the input at `offset`; `commit` is the offset the group makes safe to
    /// commit once it and everything before it is settled. The caller holds it until
    /// [`Pending::release`].
    pub fn new(offset: i64, commit: Option<i64>) -> Arc<Pending> {
        Arc::new(Pending {
            offset,
            commit,
            remaining: AtomicUsize::new(1),
        })
    }

    pub fn offset(&self) -> i64 {
        self.offset
    }

    pub fn commit(&self) -> Option<i64> {
        self.commit
    }

    /// Every record is acknowledged and the caller released the group.
    pub fn settled(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// Ends the caller's hold: from here on only acknowledgements settle the group.
    pub fn release(&self) {
        self.settle_one();
    }

    fn settle_one(&self) {
        self.remaining.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Delivery reports settle [`Pending`] groups. A failed delivery never settles its group,
/// so no offset behind lost output is ever committed.
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
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        match result {
            Ok(_) => pending.settle_one(),
            Err((e, m)) => self.fail(format!(
                "delivery to {} failed after retries: {e} (source offset {})",
                m.topic(),
                pending.offset
            )),
        }
    }
}

/// One record to produce.
#[derive(Debug)]
pub struct Out<'a> {
    pub topic: &'a str,
    /// An explicit partition; `None` partitions by key.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone.
    pub payload: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
}

/// The idempotent producer. Clones share the same client.
#[derive(Clone)]
pub struct Publisher {
    producer: Arc<ThreadedProducer<Deliveries>>,
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
        let producer = c
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create_with_context(Deliveries {
                auth: auth.clone(),
                ..Deliveries::default()
            })?;
        Ok(Publisher {
            producer: Arc::new(producer),
        })
    }

    /// Produces `out` as part of `pending`, waiting while the producer's queue is full: a
    /// full queue is backpressure, not an error. A record that cannot be produced at all
    /// (e.g. larger than `message.max.bytes`) leaves `pending` unsettled and marks the
    /// publisher failed.
    pub fn send(&self, out: Out<'_>, pending: &Arc<Pending>) {
        pending.remaining.fetch_add(1, Ordering::AcqRel);
        let mut record = BaseRecord::with_opaque_to(out.topic, Arc::clone(pending));
        if let Some(k) = out.key {
            record = record.key(k);
        }
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        if let Some(payload) = out.payload {
            record = record.payload(payload);
        }
        if let Some(h) = out.headers {
            record = record.headers(h);
        }
        loop {
            match self.producer.send::<[u8], [u8]>(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    self.producer.context().fail(format!(
                        "cannot produce output of offset {} to {}: {e}",
                        pending.offset, out.topic
                    ));
                    return;
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
