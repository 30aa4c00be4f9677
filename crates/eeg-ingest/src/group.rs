//! Membership of the consumer group: the rebalance callbacks, and what they do with the
//! partitions coming and going: start a worker on each assigned partition's own queue, and
//! on a revoke let the workers finish, then commit what their ledgers reached. Also the
//! offsets the workers publish, stored for librdkafka's periodic commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use eeg_schema::Limits;
use eeg_session::{CoreConfig, OutputObserver, TriggerEngine};

use crate::config::ServiceConfig;
use crate::error::{Failure, Failures};
use crate::figures::Stats;
use crate::health::{Health, Phase};
use crate::producer::Publisher;
use crate::worker::{Link, PartitionWorker, Setup};

/// The service's consumer.
pub type Kafka = BaseConsumer<Rebalancing>;

/// The polling thread's handle on one partition.
#[derive(Debug)]
struct Partition {
    link: Arc<Link>,
    worker: Option<JoinHandle<()>>,
    /// The offset last stored for this partition.
    stored: Option<i64>,
}

/// State shared by the polling loop and the rebalance callbacks (which run inside `poll`).
pub struct Group {
    pub health: Arc<Health>,
    pub config: Arc<ServiceConfig>,
    pub triggers: Arc<TriggerEngine>,
    pub producer: Publisher,
    pub stats: Arc<Stats>,
    pub failures: Arc<Failures>,
    /// Told every output: the live page (when on) and the cache (when configured).
    observers: Arc<[Arc<dyn OutputObserver>]>,
    partitions: Mutex<HashMap<i32, Partition>>,
    /// The consumer, for the rebalance callbacks to split partition queues off it (weak: it
    /// owns this state through its context).
    consumer: OnceLock<Weak<Kafka>>,
    /// The largest output the producer and the output topics all take; see
    /// `Service::agree_on_message_size`.
    pub max_output_bytes: AtomicUsize,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

impl Group {
    pub fn new(
        config: Arc<ServiceConfig>,
        health: Arc<Health>,
        triggers: Arc<TriggerEngine>,
        producer: Publisher,
        stats: Arc<Stats>,
        failures: Arc<Failures>,
    ) -> Group {
        let mut observers: Vec<Arc<dyn OutputObserver>> = Vec::new();
        if stats.live.enabled() {
            observers.push(Arc::clone(&stats.live) as Arc<dyn OutputObserver>);
        }
        if let Some(cache) = &stats.cache {
            observers.push(Arc::clone(cache) as Arc<dyn OutputObserver>);
        }
        let max_output_bytes = AtomicUsize::new(producer.max_message_bytes());
        Group {
            health,
            config,
            triggers,
            producer,
            stats,
            failures,
            observers: observers.into(),
            partitions: Mutex::new(HashMap::new()),
            consumer: OnceLock::new(),
            max_output_bytes,
        }
    }

    /// The consumer whose partitions this group manages; set once, right after it is made.
    pub fn attach(&self, consumer: &Arc<Kafka>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// A background task failed: health shows it at once, and the polling thread stops the
    /// service (exit 1) without committing past the task's unfinished work.
    fn task_failed(&self, failure: Failure) {
        let line = failure.to_string();
        if self.failures.report(failure) {
            self.health.set_phase(Phase::Failed(line));
        }
    }

    fn core_config(&self, partition: i32) -> CoreConfig {
        let c = &self.config;
        CoreConfig {
            processing: c.processing.clone(),
            triggers: Arc::clone(&self.triggers),
            session_idle_ms: c.session_idle_ms(),
            limits: Limits::for_sessions(&c.processing.limits),
            source_topic: c.topics.raw.clone(),
            partition,
            max_output_bytes: self.max_output_bytes.load(Ordering::Relaxed),
            budget: Arc::clone(&self.stats.memory),
            max_checkpoints: eeg_session::MAX_CHECKPOINTS,
            epochs: c.topics.epochs.as_ref().and(c.epochs.clone()),
            events: c.events.clone(),
        }
    }

    /// The ids of the partitions assigned here.
    pub fn assigned(&self) -> Vec<i32> {
        let parts = self.partitions.lock().expect("partitions lock");
        parts.keys().copied().collect()
    }

    /// Splits partition `id` off the consumer's main queue and starts its worker, which
    /// reads that queue itself: librdkafka then fetches ahead for this partition only up to
    /// its own bounds, so a slow partition holds back nothing but itself, with no pause.
    fn start_partition(self: &Arc<Self>, id: i32) {
        let mut parts = self.partitions.lock().expect("partitions lock");
        if parts.contains_key(&id) {
            return;
        }
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let Some(queue) = consumer.split_partition_queue(&self.config.topics.raw, id) else {
            self.task_failed(Failure::NoQueue(id));
            return;
        };
        let link = Arc::new(Link::default());
        let setup = Setup {
            partition: id,
            link: Arc::clone(&link),
            config: Arc::clone(&self.config),
            core: self.core_config(id),
            producer: self.producer.clone(),
            stats: Arc::clone(&self.stats),
            failures: Arc::clone(&self.failures),
            observers: Arc::clone(&self.observers),
            consumer,
            queue,
        };
        let group = Arc::clone(self);
        let worker = std::thread::Builder::new()
            .name(format!("partition-{id}"))
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| PartitionWorker::start(setup).run());
                if let Err(panic) = std::panic::catch_unwind(run) {
                    group.task_failed(Failure::WorkerPanicked {
                        partition: id,
                        message: panic_message(panic.as_ref()).to_string(),
                    });
                }
            })
            .expect("spawning a partition worker");
        parts.insert(
            id,
            Partition {
                link,
                worker: Some(worker),
                stored: None,
            },
        );
    }

    /// Lets the workers of `ids` finish what they were handed, write their last snapshots
    /// and wait (within their budget) for the broker's acknowledgements, then commits what
    /// their ledgers reached and forgets the partitions.
    pub fn release(&self, consumer: &Kafka, ids: &[i32]) -> Result<(), KafkaError> {
        let mut gone = Vec::new();
        {
            let mut parts = self.partitions.lock().expect("partitions lock");
            for id in ids {
                if let Some(p) = parts.remove(id) {
                    // The worker finishes the message in hand, then stops taking any; what
                    // is left in its queue is read again by the next owner.
                    p.link.release();
                    gone.push((*id, p));
                }
            }
        }
        for (_, p) in &mut gone {
            if let Some(w) = p.worker.take() {
                let _ = w.join();
            }
        }
        // After lost output nothing more is committed: the lost output's message and
        // everything after it are consumed again by whoever owns the partition next.
        if self.failures.output_lost() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (id, p) in &gone {
            if let Some(next) = p.link.commit() {
                tpl.add_partition_offset(&self.config.topics.raw, *id, Offset::Offset(next))?;
            }
        }
        if tpl.count() > 0 {
            consumer.commit(&tpl, CommitMode::Sync).inspect_err(|e| {
                tracing::warn!("committing released partitions failed: {e}");
            })?;
        }
        Ok(())
    }

    /// Stores the offsets the partitions' ledgers reached, for the periodic commit; reports
    /// a worker that ended while its partition is still assigned.
    pub fn housekeeping(&self, consumer: &Kafka) -> Result<(), KafkaError> {
        let mut parts = self.partitions.lock().expect("partitions lock");
        let mut store = TopicPartitionList::new();
        for (&id, p) in parts.iter_mut() {
            if p.worker.as_ref().is_some_and(JoinHandle::is_finished) {
                // A worker that panicked has said why already; this names the end of one
                // that did not.
                self.task_failed(Failure::WorkerDied(id));
                continue;
            }
            if let Some(next) = p.link.commit()
                && p.stored != Some(next)
            {
                p.stored = Some(next);
                store.add_partition_offset(&self.config.topics.raw, id, Offset::Offset(next))?;
            }
        }
        drop(parts);
        if store.count() > 0 {
            match consumer.store_offsets(&store) {
                Ok(()) => {}
                // A partition revoked meanwhile: its offsets were committed on release.
                Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The consumer's context: rebalance callbacks, statistics (lag), token refresh.
#[derive(Debug)]
pub struct Rebalancing(pub Arc<Group>);

impl ClientContext for Rebalancing {
    eeg_kafka::answer_token_refresh!(|ctx| ctx.0.config.auth);

    fn stats(&self, statistics: rdkafka::Statistics) {
        self.record_lag(&statistics);
    }
}

impl Rebalancing {
    /// librdkafka's statistics (every `statistics.interval.ms`) carry each partition's
    /// high watermark and the application's position: their difference is the lag.
    fn record_lag(&self, statistics: &rdkafka::Statistics) {
        let Some(topic) = statistics.topics.get(&self.0.config.topics.raw) else {
            return;
        };
        for (&id, p) in &topic.partitions {
            // Before the first message the position is the committed offset, or the start
            // of the log (`auto.offset.reset=earliest`).
            let position = [p.app_offset, p.committed_offset, p.lo_offset]
                .into_iter()
                .find(|&o| o >= 0);
            if let (true, Some(position)) = (id >= 0 && p.hi_offset >= 0, position) {
                self.0.health.set_lag(id, p.hi_offset - position);
            }
        }
    }
}

impl ConsumerContext for Rebalancing {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let ids: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!("partitions {ids:?} revoked; finishing their in-flight work");
                self.0.health.revoke(&ids);
                self.0
                    .stats
                    .transport
                    .rebalances
                    .fetch_add(1, Ordering::Relaxed);
                // Rebalance callbacks run inside `poll`, before librdkafka releases the
                // partitions: finishing and committing here means the next owner starts
                // exactly after the last acknowledged output.
                let _ = self.0.release(consumer, &ids);
            }
            // Before librdkafka starts fetching them, so that not one message of these
            // partitions goes to the main queue: each gets a queue of its own.
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    self.0.start_partition(e.partition());
                }
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let ids: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.0.health.assign(&ids);
                if !ids.is_empty() {
                    tracing::info!("partitions {ids:?} assigned");
                    self.0
                        .stats
                        .transport
                        .rebalances
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::error!("rebalance failed: {e}"),
        }
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a panic without a message"
    }
}
