//! One partition's worker: reads the partition's own queue in offset order, feeds each
//! message to the partition's core, hands what the core produces to the producer (the
//! Kafka outbox), and publishes the offset the core's ledger makes safe to commit.
//!
//! The worker sleeps on its [`Bell`] when it has nothing to do; the partition queue rings it
//! when a message arrives, the producer when an acknowledgement settles one of the
//! partition's ledger entries, and the group when the partition is released.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Message, OwnedMessage};

use eeg_session::{
    CoreConfig, EventFate, Full, Inbound, Outbox, Outcome, Output, OutputObserver, PartitionCore,
    Ticket, Topic, Wake,
};

use crate::bell::Bell;
use crate::config::{ServiceConfig, Topics};
use crate::error::{Failure, Failures, ProduceError};
use crate::figures::Stats;
use crate::guard::{Check, OffsetGuard};
use crate::producer::{Publisher, Record, Stamp};
use crate::state;

/// What a worker and the polling thread share about one partition.
#[derive(Debug)]
pub struct Link {
    /// The offset the worker's ledger made safe to commit; -1 before any.
    commit: AtomicI64,
    /// The partition was revoked or the service stops: finish and return.
    released: AtomicBool,
    /// Wakes the worker.
    pub bell: Arc<Bell>,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            commit: AtomicI64::new(-1),
            released: AtomicBool::new(false),
            bell: Arc::default(),
        }
    }
}

impl Link {
    /// The offset the worker made safe to commit, once there is one.
    pub fn commit(&self) -> Option<i64> {
        let c = self.commit.load(Ordering::Acquire);
        (c >= 0).then_some(c)
    }

    /// Tells the worker to finish the message in hand and stop taking any.
    pub fn release(&self) {
        self.released.store(true, Ordering::Release);
        self.bell.ring();
    }

    fn released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

/// Everything a worker needs, handed over by the group when the partition is assigned.
pub struct Setup<C: ConsumerContext + 'static> {
    pub partition: i32,
    pub link: Arc<Link>,
    pub config: Arc<ServiceConfig>,
    pub core: CoreConfig,
    pub producer: Publisher,
    pub stats: Arc<Stats>,
    pub failures: Arc<Failures>,
    /// Told every record and event handed to the producer (the live page, a cache).
    pub observers: Arc<[Arc<dyn OutputObserver>]>,
    /// The consumer, to read the partition again from an offset.
    pub consumer: Arc<BaseConsumer<C>>,
    /// The partition's own queue, split off the consumer's.
    pub queue: PartitionQueue<C>,
}

/// Longest sleep without a ring: the bell is rung for every event the worker acts on, so
/// this only bounds the cost of a ring that never comes.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Time a revoke may take: well inside the default `session.timeout.ms` (45 s) and the
/// default `max.poll.interval.ms`, so the member is not thrown out of the group meanwhile.
const REVOKE_BUDGET: Duration = Duration::from_secs(10);

/// Feeds one partition's messages from its own queue to its core, in offset order, and
/// publishes what the core's ledger makes safe to commit.
pub struct PartitionWorker<C: ConsumerContext + 'static> {
    partition: i32,
    link: Arc<Link>,
    config: Arc<ServiceConfig>,
    sender: Sender,
    stats: Arc<Stats>,
    failures: Arc<Failures>,
    core: PartitionCore,
    consumer: Arc<BaseConsumer<C>>,
    queue: PartitionQueue<C>,
    guard: OffsetGuard,
    /// An output of this partition was refused: nothing more is taken.
    failed: bool,
    /// The message taken whose session waits for memory, and since when: handed to the
    /// core again before anything else is read from the partition.
    waiting: Option<(OwnedMessage, Instant)>,
}

impl<C: ConsumerContext + 'static> PartitionWorker<C> {
    /// Restores the partition's sessions from their snapshots, before any of its messages
    /// is processed.
    pub fn start(setup: Setup<C>) -> PartitionWorker<C> {
        let Setup {
            partition,
            link,
            config,
            core,
            producer,
            stats,
            failures,
            observers,
            consumer,
            mut queue,
        } = setup;
        let bell = Arc::clone(&link.bell);
        // librdkafka calls this when the queue goes from empty to holding a message.
        queue.set_nonempty_callback(move || bell.ring());
        // And the memory budget when memory is released while a partition waits for it.
        let wake: Arc<dyn Wake> = Arc::clone(&link.bell) as Arc<dyn Wake>;
        core.budget.watch(Arc::downgrade(&wake));
        let counters = Arc::clone(&stats.core);
        let saved = state::read_partition(
            &config.client_config(),
            &config.auth,
            &config.group_id,
            &config.topics.raw,
            &config.topics.state,
            partition,
            config.shutdown_timeout,
        );
        let mut seek_to = None;
        let core = match saved {
            Ok(saved) => {
                let committed = saved.committed;
                let (core, report) =
                    PartitionCore::restore(core, counters, saved.records.into_values(), committed);
                for (id, e) in &report.unfit {
                    tracing::warn!(
                        "partition {partition}: snapshot of session '{id}' does not fit the current config ({e}); the session restarts"
                    );
                }
                if report.sessions > 0 {
                    tracing::info!(
                        "partition {partition}: {} session(s) restored",
                        report.sessions
                    );
                }
                if let (Some(start), Some(c)) = (report.start, committed)
                    && start < c
                {
                    tracing::info!(
                        "partition {partition}: a restored session needs offset {start}, before the committed {c}; reading from there"
                    );
                    seek_to = Some(start);
                }
                core
            }
            Err(e) => {
                // Without its snapshots the partition's sessions restart (settling) from
                // the committed offset: output goes on, a few windows differ.
                tracing::error!("partition {partition}: session snapshots not restored: {e}");
                PartitionCore::new(core, counters)
            }
        };
        let sender = Sender {
            producer,
            config: Arc::clone(&config),
            partition,
            observers,
            bell: Arc::clone(&link.bell),
        };
        let mut worker = PartitionWorker {
            partition,
            link,
            config,
            sender,
            stats,
            failures,
            core,
            consumer,
            queue,
            guard: OffsetGuard::default(),
            failed: false,
            waiting: None,
        };
        if let Some(start) = seek_to {
            worker.read_from(start);
        }
        worker
    }

    /// Reads the partition again from `offset`: once it is assigned (the assignment
    /// completes right after the callback that started this worker), synchronously, so
    /// that nothing fetched before comes after.
    fn read_from(&mut self, offset: i64) {
        let raw = &self.config.topics.raw;
        let timeout = self.config.connect_timeout;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline
            && !self
                .consumer
                .assignment()
                .is_ok_and(|a| a.find_partition(raw, self.partition).is_some())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Err(e) = self
            .consumer
            .seek(raw, self.partition, Offset::Offset(offset), timeout)
        {
            tracing::warn!(
                "partition {}: reading again from offset {offset} failed: {e}",
                self.partition
            );
        }
        self.guard.restart_at(offset);
    }

    pub fn run(mut self) {
        let interval = self.config.snapshot_interval;
        let mut last_checkpoint = Instant::now();
        while !self.link.released() {
            let took = !self.failed && self.take_one();
            if last_checkpoint.elapsed() >= interval {
                last_checkpoint = Instant::now();
                self.core.checkpoint();
            }
            self.advance();
            if !took {
                let next_checkpoint = interval.saturating_sub(last_checkpoint.elapsed());
                let wait = next_checkpoint.clamp(Duration::from_millis(1), IDLE_WAIT);
                self.link.bell.wait(wait);
            }
        }
        self.finish();
    }

    /// Hands the message that waits for memory to the core again; true when it was taken.
    fn retry_waiting(&mut self) -> bool {
        let Some((m, since)) = self.waiting.take() else {
            return false;
        };
        match handle(&self.sender, &mut self.core, &self.stats, &inbound(&m)) {
            Ok(Some(_)) => {
                self.waiting = Some((m, since));
                false
            }
            Ok(None) => {
                tracing::info!(
                    "partition {}: session memory found after {:.1} s; reading on from offset {}",
                    self.partition,
                    since.elapsed().as_secs_f64(),
                    m.offset()
                );
                true
            }
            Err(e) => {
                self.failed = true;
                self.failures.report(Failure::Produce(e));
                true
            }
        }
    }

    /// Takes the next message of the queue, if there is one, without waiting; while a
    /// message waits for memory, that one and no other.
    fn take_one(&mut self) -> bool {
        if self.waiting.is_some() {
            return self.retry_waiting();
        }
        let refetch = match self.queue.poll(Duration::ZERO) {
            None => return false,
            Some(Err(e)) => {
                log_consumer_error(&e);
                None
            }
            Some(Ok(m)) => {
                self.stats
                    .transport
                    .messages_consumed
                    .fetch_add(1, Ordering::Relaxed);
                match self.guard.check(m.offset()) {
                    Check::Take => {
                        match handle(&self.sender, &mut self.core, &self.stats, &inbound(&m)) {
                            Ok(None) => {}
                            Ok(Some(full)) => {
                                tracing::warn!(
                                    "partition {}: the session of offset {} waits for session memory ({full}); nothing more is read from this partition until sessions end here or the group moves partitions to other instances (scale out)",
                                    self.partition,
                                    m.offset()
                                );
                                self.waiting = Some((m.detach(), Instant::now()));
                                let budget = &self.core.config().budget;
                                if budget.stuck() {
                                    tracing::error!(
                                        "session memory is exhausted: every partition holding sessions here waits for more ({:?}), so none can go on; raise EEG_SESSION_MEMORY_MIB (and the container's memory) or add instances to the group",
                                        budget.held().iter().map(|(p, _)| *p).collect::<Vec<_>>()
                                    );
                                }
                            }
                            Err(e) => {
                                self.failed = true;
                                self.failures.report(Failure::Produce(e));
                            }
                        }
                        None
                    }
                    Check::Repeat => None,
                    Check::Refetch(from) => {
                        tracing::warn!(
                            "partition {}: the consumer skipped from offset {from} to {}; reading again from {from}",
                            self.partition,
                            m.offset()
                        );
                        Some(from)
                    }
                }
            }
        };
        if let Some(from) = refetch {
            self.stats
                .transport
                .offset_refetches
                .fetch_add(1, Ordering::Relaxed);
            self.read_from(from);
        }
        true
    }

    /// A refused output is lost: the ledger never commits past it (the core failed its
    /// ticket), the service is told, and this worker takes no more messages.
    fn settle<T>(&mut self, result: Result<T, ProduceError>) -> Option<T> {
        match result {
            Ok(t) => Some(t),
            Err(e) => {
                self.failed = true;
                self.failures.report(Failure::Produce(e));
                None
            }
        }
    }

    /// Sends the snapshots the ledger allows and publishes the commit offset it reached.
    fn advance(&mut self) {
        let advanced = self.core.advance(&mut self.sender.outbox(None));
        if let Some(Some(commit)) = self.settle(advanced) {
            self.link.commit.store(commit, Ordering::Release);
        }
    }

    /// Released (revoked or stopping): saves where every session stands and waits for the
    /// broker, so the offset committed now lets the next owner carry on exactly.
    fn finish(mut self) {
        self.core.checkpoint();
        let deadline = Instant::now() + self.config.shutdown_timeout.min(REVOKE_BUDGET);
        loop {
            self.advance();
            let ledger = self.core.ledger();
            let left = deadline.saturating_duration_since(Instant::now());
            if ledger.is_empty() || ledger.failed() || self.failed || left.is_zero() {
                break;
            }
            self.link.bell.wait(left);
        }
        let ledger = self.core.ledger();
        if !ledger.is_empty() {
            tracing::warn!(
                "partition {}: released with output of offset {:?} not acknowledged{}; the next owner reads from the last commit",
                self.partition,
                ledger.oldest_unsettled(),
                if ledger.failed() {
                    " (delivery failed)"
                } else {
                    ""
                }
            );
        }
        self.core.release();
        // A message that waited is read again by the next owner.
        self.core.config().budget.forget(self.partition);
    }
}

/// A consumed message as the core takes it, borrowed from librdkafka's buffer (or from the
/// copy kept while it waits for memory).
fn inbound<M: Message>(m: &M) -> Inbound<'_> {
    Inbound {
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key(),
        payload: m.payload().unwrap_or_default(),
        content_type: crate::message::content_type(m),
    }
}

/// One message through the partition's core, straight from librdkafka's buffer; `Some`
/// when its session waits for memory (the core took nothing).
fn handle(
    sender: &Sender,
    core: &mut PartitionCore,
    stats: &Stats,
    m: &Inbound<'_>,
) -> Result<Option<Full>, ProduceError> {
    // Where tests inject a failure of this task (compiled in with `failpoints` only).
    fail::fail_point!("partition-worker-message");
    let started = Instant::now();
    let partition = sender.partition;
    let handled = core.handle(m, &mut sender.outbox(Some(started)))?;
    if let Outcome::Held(full) = handled.outcome {
        return Ok(Some(full));
    }
    if let Some((expected, got)) = handled.gap {
        tracing::warn!(
            "partition {partition}: offsets {expected} to {} are not on the broker (deleted, or transaction markers)",
            got - 1
        );
    }
    match handled.outcome {
        Outcome::Processed {
            reset: Some(reason),
            ..
        } => tracing::debug!("partition {partition}: session reset: {reason}"),
        Outcome::Duplicate(Some(d)) if d.count == 1 => tracing::info!(
            "partition {partition}: session '{}' sent seq {} again (it expects seq {} next): batches it already sent are dropped and publish nothing; if this is a recording replayed under a session id already used, give the replay a new one",
            d.session_id,
            d.seq,
            d.next_seq
        ),
        Outcome::Duplicate(Some(d)) => tracing::info!(
            "partition {partition}: session '{}': {} batches sent again dropped so far (expects seq {} next)",
            d.session_id,
            d.count,
            d.next_seq
        ),
        Outcome::Event {
            fate: EventFate::Late { first: true },
            ..
        } => tracing::warn!(
            "partition {partition}: session {}: an event came more than events.max_delay_s ({} s) behind the session's newest samples: counted (eeg_events_late_total) and recorded as too_late when epoched; said once per session",
            eeg_session::quoted(&String::from_utf8_lossy(m.key.unwrap_or_default())),
            sender.config.events.max_delay_s
        ),
        Outcome::DeadLetter(reason) => tracing::debug!(
            "dead letter: {} partition {partition} offset {}: {reason}",
            sender.config.topics.raw,
            m.offset
        ),
        _ => {}
    }
    stats.latency.observe(started.elapsed());
    Ok(None)
}

pub(crate) fn log_consumer_error(e: &rdkafka::error::KafkaError) {
    // Transient broker errors are retried by librdkafka; they are worth a line, not a stop.
    eeg_kafka::client_log::warn(&format!("consumer: {e}"));
}

/// What a partition's outputs go through: the producer, and the observers beside it.
struct Sender {
    producer: Publisher,
    config: Arc<ServiceConfig>,
    partition: i32,
    observers: Arc<[Arc<dyn OutputObserver>]>,
    bell: Arc<Bell>,
}

impl Sender {
    /// The outbox for the outputs of a message taken at `consumed`, or of a checkpoint.
    fn outbox(&self, consumed: Option<Instant>) -> KafkaOutbox<'_> {
        KafkaOutbox {
            producer: &self.producer,
            topics: &self.config.topics,
            partition: self.partition,
            observers: &self.observers,
            bell: &self.bell,
            consumed,
        }
    }
}

/// The producer as a partition's core sees it: outputs to their topics, snapshots to this
/// partition's number on the state topic.
struct KafkaOutbox<'a> {
    producer: &'a Publisher,
    topics: &'a Topics,
    partition: i32,
    observers: &'a [Arc<dyn OutputObserver>],
    bell: &'a Arc<Bell>,
    /// When the message being handled was taken from its queue (`None` for what is sent
    /// between messages: snapshots).
    consumed: Option<Instant>,
}

impl Outbox for KafkaOutbox<'_> {
    type Error = ProduceError;

    fn send(&mut self, out: &Output<'_>, ticket: &Arc<Ticket>) -> Result<(), ProduceError> {
        let (topic, partition) = match out.topic {
            Topic::Processed => {
                if let (Some(key), Some(record)) = (out.key, out.payload) {
                    for o in self.observers {
                        o.processed(self.partition, key, record);
                    }
                }
                (&self.topics.processed, None)
            }
            Topic::Triggers => {
                if let (Some(key), Some(record)) = (out.key, out.payload) {
                    for o in self.observers {
                        o.trigger(self.partition, key, record);
                    }
                }
                (&self.topics.triggers, None)
            }
            Topic::Epochs => match &self.topics.epochs {
                Some(t) => {
                    if let (Some(key), Some(record)) = (out.key, out.payload) {
                        for o in self.observers {
                            o.epoch(self.partition, key, record);
                        }
                    }
                    (t, None)
                }
                // The core cuts epochs only when their topic is set (`core_config`).
                None => unreachable!("an epoch record with no epochs topic"),
            },
            Topic::DeadLetter => (&self.topics.dlq, None),
            // The raw message's partition number, not key hashing: the upstream producer's
            // partitioner is not ours to know, and restoring reads by partition.
            Topic::State => (&self.topics.state, Some(self.partition)),
        };
        self.producer.send(
            &Record {
                topic,
                partition,
                key: out.key,
                payload: out.payload,
                headers: out.headers,
                stamp: out.window_end_ms.map(|window_end_ms| Stamp {
                    window_end_ms,
                    consumed: self.consumed,
                }),
                bell: Some(self.bell),
            },
            ticket,
        )
    }
}
