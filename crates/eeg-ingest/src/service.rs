//! The Kafka service: consume `eeg.raw.data` in a consumer group, run every session through
//! its [`SessionProcessor`](eeg_dsp::SessionProcessor), publish `eeg.processed.data`, and
//! store a partition's offset only once everything its messages produced is acknowledged.
//!
//! Threads: one polls the consumer (and runs the rebalance callbacks), one worker per
//! assigned partition does the decoding and DSP in offset order, and librdkafka's producer
//! thread delivers. Nothing here runs on an async runtime.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};

use eeg_dsp::{Checkpoint, ProcessingConfig, SessionProcessor, Window, WindowSink};
use eeg_kafka::Auth;
use eeg_publish::{Out, Pending, Publisher, TriggerConfig, TriggerEngine, TriggerState};
use eeg_schema::{Limits, ProcessedRecord, SessionMeta, encode_processed};

use crate::health::{Health, Phase};
use crate::sessions::{Admission, Session, Sessions};
use crate::state;
use crate::topics;

/// Topic names; the defaults are the system's (see the README's topic table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub raw: String,
    pub processed: String,
    pub triggers: String,
    pub dlq: String,
    /// Session snapshots (compacted; same partition count as `raw`).
    pub state: String,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics {
            raw: "eeg.raw.data".into(),
            processed: "eeg.processed.data".into(),
            triggers: "analytics.triggers".into(),
            dlq: "eeg.raw.data.dlq".into(),
            state: "eeg.session.state".into(),
        }
    }
}

/// Everything the service needs to run.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub topics: Topics,
    pub processing: ProcessingConfig,
    /// Sessions with no message for this long are dropped from memory.
    pub session_idle: Duration,
    /// Time allowed, after a stop is requested, to finish in-flight work and commit.
    pub shutdown_timeout: Duration,
    /// Bound on each call that waits for the broker (metadata, topic checks).
    pub connect_timeout: Duration,
    /// Messages queued for a partition's worker.
    pub partition_queue: usize,
    /// Bytes of messages held for a partition beyond its queue before the partition is
    /// paused (pausing makes librdkafka drop what it prefetched and fetch it again, so it
    /// is kept for a worker that is really behind, not for a burst of prefetched data).
    pub partition_buffer_bytes: usize,
    /// How often a partition's session snapshots are saved and its offset moved on.
    pub snapshot_interval: Duration,
    /// Trigger rules evaluated on every window; events go to `topics.triggers`.
    pub triggers: TriggerConfig,
    /// Further librdkafka properties for both clients (security settings, timeouts).
    pub kafka: Vec<(String, String)>,
    /// Tokens for SASL/OAUTHBEARER (MSK IAM), shared by every client of the service.
    pub auth: Auth,
    /// Further librdkafka properties for the consumer only (e.g. `session.timeout.ms`).
    pub consumer_kafka: Vec<(String, String)>,
    /// Further librdkafka properties for the producer only (e.g. `linger.ms`).
    pub producer_kafka: Vec<(String, String)>,
}

impl ServiceConfig {
    pub fn new(bootstrap_servers: impl Into<String>, group_id: impl Into<String>) -> ServiceConfig {
        ServiceConfig {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: group_id.into(),
            topics: Topics::default(),
            processing: ProcessingConfig::default(),
            session_idle: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            partition_queue: 256,
            partition_buffer_bytes: 8 << 20,
            snapshot_interval: Duration::from_secs(1),
            triggers: TriggerConfig::default(),
            kafka: Vec::new(),
            auth: Auth::default(),
            consumer_kafka: Vec::new(),
            producer_kafka: Vec::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.kafka {
            c.set(k, v);
        }
        c
    }
}

/// Counters of what the service did, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub consumed: AtomicU64,
    pub records_published: AtomicU64,
    pub triggers_published: AtomicU64,
    pub dead_letters: AtomicU64,
    pub duplicates: AtomicU64,
    pub resets: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_evicted: AtomicU64,
    pub active_sessions: AtomicU64,
    /// Heap memory of all sessions' state (processors and checkpoints), bytes; updated as
    /// snapshots are taken.
    pub session_state_bytes: AtomicU64,
    pub rebalances: AtomicU64,
    /// Time to process one raw message in its partition's worker.
    pub latency: Histogram,
}

/// Upper bounds of the latency buckets, µs.
const LATENCY_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
];

/// A Prometheus-style histogram of durations, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative), the last one for everything above the largest bound.
    counts: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes the histogram in the Prometheus text format (cumulative buckets, seconds).
    pub fn write(&self, out: &mut String, name: &str, help: &str) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            match LATENCY_BUCKETS_US.get(i) {
                Some(b) => {
                    let le = *b as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {total}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("output lost: {0}; stopped without storing the offsets of the lost output")]
    DeliveryFailed(String),
    #[error("partition worker for {0} stopped unexpectedly")]
    WorkerDied(i32),
    #[error("{0}; stopped without committing past its unfinished work")]
    TaskFailed(String),
    #[error("trigger rules: {0}")]
    Triggers(#[from] eeg_publish::TriggerConfigError),
}

/// Messages of one partition in offset order, from handed to a worker to acknowledged.
#[derive(Debug, Default)]
struct Tracker {
    queue: Mutex<VecDeque<Arc<Pending>>>,
}

impl Tracker {
    fn push(&self, p: Arc<Pending>) {
        self.queue.lock().expect("tracker lock").push_back(p);
    }

    /// The offset to commit: that of the last snapshot set which, with everything handed
    /// over before it, is acknowledged. `None` when no new one completed.
    fn frontier(&self) -> Option<i64> {
        let mut q = self.queue.lock().expect("tracker lock");
        let mut next = None;
        while q.front().is_some_and(|p| p.settled()) {
            if let Some(c) = q.pop_front().and_then(|p| p.commit()) {
                next = Some(c);
            }
        }
        next
    }
}

/// A message handed from the polling thread to a partition worker.
#[derive(Debug)]
struct Inbound {
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// The polling thread's handle on one partition.
#[derive(Debug)]
struct Partition {
    tx: Option<SyncSender<Inbound>>,
    /// Messages that arrived while the worker's queue was full (at most about one more
    /// queue's worth: then the partition is paused until they are handed over).
    /// until they are handed over.
    overflow: VecDeque<Inbound>,
    overflow_bytes: usize,
    paused: bool,
    tracker: Arc<Tracker>,
    worker: Option<JoinHandle<()>>,
    stored: Option<i64>,
}

/// State shared by the polling loop and the rebalance callbacks (which run inside `poll`).
struct Shared {
    health: Arc<Health>,
    config: ServiceConfig,
    triggers: TriggerEngine,
    producer: Publisher,
    stats: Arc<Stats>,
    partitions: Mutex<HashMap<i32, Partition>>,
    /// The first background task that failed, as its log line.
    failed_task: Mutex<Option<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

struct Rebalancing(Arc<Shared>);

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
        if let Rebalance::Revoke(tpl) = rebalance {
            let ids: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!("partitions {ids:?} revoked; finishing their in-flight work");
            self.0.health.revoke(&ids);
            self.0.stats.rebalances.fetch_add(1, Ordering::Relaxed);
            // Rebalance callbacks run inside `poll`, before librdkafka releases the
            // partitions: finishing and committing here means the next owner starts
            // exactly after the last acknowledged output.
            let deadline = Instant::now() + self.0.config.shutdown_timeout.min(revoke_budget());
            let _ = self.0.release(consumer, &ids, deadline);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let ids: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.0.health.assign(&ids);
                if !ids.is_empty() {
                    tracing::info!("partitions {ids:?} assigned");
                    self.0.stats.rebalances.fetch_add(1, Ordering::Relaxed);
                }
                for id in ids {
                    self.0.start_partition(id);
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::error!("rebalance failed: {e}"),
        }
    }
}

/// Time a revoke may take: well inside the default `session.timeout.ms` (45 s) and the
/// default `max.poll.interval.ms`, so the member is not thrown out of the group meanwhile.
fn revoke_budget() -> Duration {
    Duration::from_secs(10)
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

impl Shared {
    /// A background task died: logged once, shown by `/health`, and the polling thread
    /// stops the service (exit 1) without committing past the task's unfinished work.
    fn task_failed(&self, line: String) {
        tracing::error!("{line}; stopping");
        self.health.set_phase(Phase::Failed(line.clone()));
        self.failed_task
            .lock()
            .expect("failed task lock")
            .get_or_insert(line);
    }

    fn failed_task(&self) -> Option<String> {
        self.failed_task.lock().expect("failed task lock").clone()
    }

    fn start_partition(self: &Arc<Self>, id: i32) {
        let mut parts = self.partitions.lock().expect("partitions lock");
        if parts.contains_key(&id) {
            return;
        }
        let (tx, rx) = sync_channel(self.config.partition_queue);
        let tracker = Arc::new(Tracker::default());
        let worker = {
            let shared = Arc::clone(self);
            let tracker = Arc::clone(&tracker);
            std::thread::Builder::new()
                .name(format!("partition-{id}"))
                .spawn(move || {
                    let worker = PartitionWorker::new(Arc::clone(&shared), id, tracker);
                    // `rx` outlives the unwinding, so the polling thread sees the failure
                    // recorded before it sees a closed queue.
                    let run = std::panic::AssertUnwindSafe(|| worker.run(&rx));
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        shared.task_failed(format!(
                            "partition {id} worker failed: {}",
                            panic_message(panic.as_ref())
                        ));
                    }
                })
                .expect("spawning a partition worker")
        };
        parts.insert(
            id,
            Partition {
                tx: Some(tx),
                overflow: VecDeque::new(),
                overflow_bytes: 0,
                paused: false,
                tracker,
                worker: Some(worker),
                stored: None,
            },
        );
    }

    /// Finishes the queued work of `ids`, waits (until `deadline`) for its outputs to be
    /// acknowledged, commits their offsets and forgets them.
    fn release(
        &self,
        consumer: &BaseConsumer<Rebalancing>,
        ids: &[i32],
        deadline: Instant,
    ) -> Result<(), KafkaError> {
        let mut gone = Vec::new();
        {
            let mut parts = self.partitions.lock().expect("partitions lock");
            for id in ids {
                if let Some(mut p) = parts.remove(id) {
                    // Closing the queue lets the worker finish what it holds, then exit;
                    // overflow messages were never handed over and are re-read by the
                    // next owner.
                    p.tx = None;
                    p.overflow.clear();
                    p.overflow_bytes = 0;
                    gone.push((*id, p));
                }
            }
        }
        for (_, p) in &mut gone {
            if let Some(w) = p.worker.take() {
                let _ = w.join();
            }
        }
        while Instant::now() < deadline
            && !self.producer.failed()
            && gone.iter().any(|(_, p)| !queue_settled(&p.tracker))
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut tpl = TopicPartitionList::new();
        for (id, p) in &gone {
            if self.producer.failed() {
                break;
            }
            if let Some(next) = p.tracker.frontier().or(p.stored) {
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
}

fn queue_settled(t: &Tracker) -> bool {
    t.queue
        .lock()
        .expect("tracker lock")
        .iter()
        .all(|p| p.settled())
}

/// Handle to ask a running service to stop.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }
    fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The running service.
#[derive(Debug)]
pub struct Service {
    shared: Arc<Shared>,
    stop: StopHandle,
}

impl Service {
    /// Creates the clients; no network round trip happens here.
    pub fn new(config: ServiceConfig) -> Result<Service, ServiceError> {
        let mut client = config.client_config();
        for (k, v) in &config.producer_kafka {
            client.set(k, v);
        }
        let producer = Publisher::new(&client, &config.auth)?;
        let triggers = TriggerEngine::new(config.triggers.rules.clone())?;
        Ok(Service {
            shared: Arc::new(Shared {
                health: Arc::new(Health::default()),
                triggers,
                config,
                producer,
                stats: Arc::new(Stats::default()),
                partitions: Mutex::new(HashMap::new()),
                failed_task: Mutex::new(None),
            }),
            stop: StopHandle::default(),
        })
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.shared.health)
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Consumes until [`StopHandle::stop`] is called (then drains, commits and returns
    /// `Ok`) or an output is lost (then returns the error without committing past it).
    pub fn run(self) -> Result<(), ServiceError> {
        let health = self.health();
        let result = self.consume();
        // Whatever ended the service, health says so until the process exits.
        if let Err(e) = &result
            && !matches!(health.phase(), Phase::Failed(_))
        {
            health.set_phase(Phase::Failed(e.to_string()));
        }
        result
    }

    fn consume(self) -> Result<(), ServiceError> {
        if !self.wait_for_topics() {
            return Ok(());
        }
        let shared = self.shared;
        let config = &shared.config;
        let mut client = config.client_config();
        // Lag comes from librdkafka's statistics.
        client.set("statistics.interval.ms", "5000");
        // librdkafka prefetches up to 64 MiB by default; a quarter of that keeps a small
        // task's memory in bounds and is still many seconds of EEG. Overridable.
        client.set("queued.max.messages.kbytes", "16384");
        for (k, v) in &config.consumer_kafka {
            client.set(k, v);
        }
        // What the delivery promise rests on: not overridable.
        let consumer: BaseConsumer<Rebalancing> = client
            .set("group.id", &config.group_id)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Rebalancing(Arc::clone(&shared)))?;
        consumer.subscribe(&[&config.topics.raw])?;
        shared.health.set_phase(Phase::Consuming);
        tracing::info!(
            "consuming {} as group {} from {}",
            config.topics.raw,
            config.group_id,
            config.bootstrap_servers
        );
        let mut failure = None;
        let mut task_failure = None;
        while !self.stop.requested() {
            if let Some(line) = shared.producer.failure() {
                failure = Some(line);
                break;
            }
            if let Some(line) = shared.failed_task() {
                task_failure = Some(line);
                break;
            }
            let step = match consumer.poll(Duration::from_millis(100)) {
                None => Ok(()),
                Some(Ok(m)) => {
                    shared.stats.consumed.fetch_add(1, Ordering::Relaxed);
                    let inbound = Inbound {
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                    };
                    shared.hand_over(&consumer, m.partition(), inbound)
                }
                Some(Err(e)) => {
                    log_consumer_error(&e);
                    Ok(())
                }
            };
            match step.and_then(|()| shared.housekeeping(&consumer)) {
                Ok(()) => {}
                // A worker that failed closes its queue after recording why.
                Err(e @ ServiceError::WorkerDied(_)) => {
                    task_failure = Some(shared.failed_task().unwrap_or_else(|| e.to_string()));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(line) = failure {
            shared.health.set_phase(Phase::Failed(line.clone()));
            // Nothing more is stored: the lost output's message and everything after it
            // will be consumed again by whoever owns the partition next.
            return Err(ServiceError::DeliveryFailed(line));
        }
        // After a task failure the other partitions are released as in a stop (their
        // acknowledged work committed), and health keeps saying what failed.
        if task_failure.is_none() {
            tracing::info!("stopping: finishing in-flight work");
            shared.health.set_phase(Phase::Stopping);
        }
        let deadline = Instant::now() + config.shutdown_timeout;
        let ids: Vec<i32> = shared
            .partitions
            .lock()
            .expect("partitions lock")
            .keys()
            .copied()
            .collect();
        shared.release(&consumer, &ids, deadline)?;
        consumer.unsubscribe();
        let left = deadline.saturating_duration_since(Instant::now());
        shared.producer.flush(left)?;
        if let Some(line) = shared.producer.failure() {
            return Err(ServiceError::DeliveryFailed(line));
        }
        if let Some(line) = task_failure {
            return Err(ServiceError::TaskFailed(line));
        }
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

impl Service {
    /// Waits until the broker answers and has every topic the service needs, logging each
    /// new reason once. Topics are an admin step: the service never creates them. Returns
    /// false when a stop was requested meanwhile.
    fn wait_for_topics(&self) -> bool {
        let config = &self.shared.config;
        let client = config.client_config();
        let mut last = String::new();
        let mut backoff = Backoff::default();
        loop {
            let health = &self.shared.health;
            let reason = match topics::check(
                &client,
                &config.auth,
                &config.topics,
                config.connect_timeout,
            ) {
                Ok(report) if report.ok() => {
                    if !last.is_empty() {
                        tracing::info!("topics present; starting");
                    }
                    return true;
                }
                Ok(report) => {
                    let reason = match report.problems().into_iter().next() {
                        Some(problem) => problem,
                        None => format!(
                            "missing topics: {}; create them with: {}",
                            report.missing().join(", "),
                            topics::CREATE_COMMAND
                        ),
                    };
                    health.set_phase(Phase::WaitingForTopics(reason.clone()));
                    reason
                }
                Err(e) => {
                    let reason = format!(
                        "cannot reach Kafka at {} (waited up to {}s): {e}",
                        config.bootstrap_servers,
                        config.connect_timeout.as_secs()
                    );
                    health.set_phase(Phase::WaitingForBroker(reason.clone()));
                    reason
                }
            };
            if reason != last {
                tracing::error!("{reason}; retrying with backoff (1s doubling to 60s)");
                last = reason;
            }
            let wait = backoff.next();
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.stop.requested() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Waits between retries: 1 s doubling to 60 s, each scaled by a random factor in
/// [0.8, 1.2) so that many instances restarted together do not retry in step.
#[derive(Debug, Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = Duration::from_secs(1u64 << self.attempt.min(6)).min(Duration::from_secs(60));
        self.attempt = self.attempt.saturating_add(1);
        // A fresh std hasher key is random per process and call: jitter without a crate.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(self.attempt);
        let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.8 + 0.4 * unit)
    }
}

fn log_consumer_error(e: &KafkaError) {
    // Transient broker errors are retried by librdkafka; they are worth a line, not a stop.
    eeg_kafka::client_log::warn(&format!("consumer: {e}"));
}

impl Shared {
    fn hand_over(
        &self,
        consumer: &BaseConsumer<Rebalancing>,
        id: i32,
        inbound: Inbound,
    ) -> Result<(), ServiceError> {
        let mut parts = self.partitions.lock().expect("partitions lock");
        let Some(p) = parts.get_mut(&id) else {
            // A message of a partition already released: its next owner reads it again.
            return Ok(());
        };
        let tx = p.tx.as_ref().ok_or(ServiceError::WorkerDied(id))?;
        let inbound = if p.overflow.is_empty() {
            match tx.try_send(inbound) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(inbound)) => inbound,
                Err(TrySendError::Disconnected(_)) => return Err(ServiceError::WorkerDied(id)),
            }
        } else {
            inbound
        };
        p.overflow_bytes += inbound.payload.len();
        p.overflow.push_back(inbound);
        // Resumed once the overflow is handed over, with a full queue of work ahead.
        if !p.paused && p.overflow_bytes >= self.config.partition_buffer_bytes {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.config.topics.raw, id);
            consumer.pause(&tpl)?;
            p.paused = true;
            tracing::debug!("partition {id} paused: processing is behind");
        }
        Ok(())
    }

    /// Hands over overflow, resumes partitions that caught up, and stores the offsets of
    /// messages whose outputs are all acknowledged.
    fn housekeeping(&self, consumer: &BaseConsumer<Rebalancing>) -> Result<(), ServiceError> {
        let mut parts = self.partitions.lock().expect("partitions lock");
        let mut store = TopicPartitionList::new();
        for (&id, p) in parts.iter_mut() {
            let tx = p.tx.as_ref().ok_or(ServiceError::WorkerDied(id))?;
            while let Some(m) = p.overflow.pop_front() {
                let n = m.payload.len();
                match tx.try_send(m) {
                    Ok(()) => p.overflow_bytes -= n,
                    Err(TrySendError::Full(m)) => {
                        p.overflow.push_front(m);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(ServiceError::WorkerDied(id)),
                }
            }
            if p.paused && p.overflow.is_empty() {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&self.config.topics.raw, id);
                consumer.resume(&tpl)?;
                p.paused = false;
                tracing::debug!("partition {id} resumed");
            }
            if let Some(next) = p.tracker.frontier() {
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
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// A checkpoint taken just before one of the session's messages.
#[derive(Debug)]
struct Entry {
    offset: i64,
    seq: u64,
    checkpoint: Checkpoint,
}

/// What the worker keeps beside each session's processor to snapshot it.
#[derive(Debug)]
struct Tracked {
    /// Checkpoints from the session's boundary (the first message still needed by an
    /// unpublished window) to its last message.
    entries: VecDeque<Entry>,
    /// A restored session's boundary until its boundary message is processed again.
    restored_at: Option<i64>,
    /// `(next_seq, next window)` of the last snapshot saved, to skip unchanged ones.
    saved: Option<(u64, u64)>,
    triggers: TriggerState,
}

impl Tracked {
    fn new(triggers: TriggerState) -> Tracked {
        Tracked {
            entries: VecDeque::new(),
            restored_at: None,
            saved: None,
            triggers,
        }
    }

    fn boundary_offset(&self) -> Option<i64> {
        self.entries.front().map(|e| e.offset).or(self.restored_at)
    }
}

/// Decodes, processes and publishes one partition's messages in offset order.
struct PartitionWorker {
    shared: Arc<Shared>,
    partition: i32,
    tracker: Arc<Tracker>,
    sessions: Sessions<Tracked>,
    limits: Limits,
    started: Instant,
    buf: Vec<u8>,
    /// Last message processed, and whether any was since the last snapshot set.
    last_offset: Option<i64>,
    dirty: bool,
    /// Sessions evicted since the last snapshot set; their snapshots are deleted.
    evicted: Vec<String>,
    /// Checkpoint buffers to reuse.
    spare: Vec<Checkpoint>,
    /// This partition's share of [`Stats::session_state_bytes`].
    state_bytes: u64,
}

impl PartitionWorker {
    fn new(shared: Arc<Shared>, partition: i32, tracker: Arc<Tracker>) -> PartitionWorker {
        let sessions = Sessions::new(shared.config.processing.clone());
        PartitionWorker {
            shared,
            partition,
            tracker,
            sessions,
            limits: Limits::default(),
            started: Instant::now(),
            buf: Vec::new(),
            last_offset: None,
            dirty: false,
            evicted: Vec::new(),
            spare: Vec::new(),
            state_bytes: 0,
        }
    }

    fn now_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn run(mut self, rx: &Receiver<Inbound>) {
        self.restore();
        let interval = self.shared.config.snapshot_interval;
        let mut last_snapshot = Instant::now();
        let mut last_sweep = 0;
        loop {
            match rx.recv_timeout(interval.min(Duration::from_secs(1))) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = self.now_s();
            if now != last_sweep {
                last_sweep = now;
                self.evict_idle(now);
            }
            if last_snapshot.elapsed() >= interval {
                last_snapshot = Instant::now();
                self.snapshot();
                self.report_state_bytes(false);
            }
        }
        // Released (revoked or stopping): save where every session stands, so the offset
        // committed now lets the next owner carry on exactly.
        self.snapshot();
        self.report_state_bytes(true);
        let n = self.sessions.len() as u64;
        self.shared
            .stats
            .active_sessions
            .fetch_sub(n, Ordering::Relaxed);
    }

    /// Updates this partition's share of the session memory gauge (to zero when `gone`).
    fn report_state_bytes(&mut self, gone: bool) {
        let now = if gone {
            0
        } else {
            self.sessions
                .iter()
                .map(|(id, s)| {
                    let checkpoints: usize = s
                        .extra
                        .entries
                        .iter()
                        .map(|e| e.checkpoint.filter.capacity() * 8 + std::mem::size_of::<Entry>())
                        .sum();
                    (s.processor.state_bytes() + checkpoints + id.capacity()) as u64
                })
                .sum()
        };
        let gauge = &self.shared.stats.session_state_bytes;
        if now >= self.state_bytes {
            gauge.fetch_add(now - self.state_bytes, Ordering::Relaxed);
        } else {
            gauge.fetch_sub(self.state_bytes - now, Ordering::Relaxed);
        }
        self.state_bytes = now;
    }

    /// Loads this partition's session snapshots before any of its messages is processed.
    fn restore(&mut self) {
        let config = &self.shared.config;
        let snapshots = match state::read_partition(
            &config.client_config(),
            &config.auth,
            &config.topics.state,
            self.partition,
            config.shutdown_timeout,
        ) {
            Ok(s) => s,
            Err(e) => {
                // Without its snapshots the partition's sessions restart (settling) from
                // the committed offset: output goes on, a few windows differ.
                tracing::error!(
                    "partition {}: session snapshots not restored: {e}",
                    self.partition
                );
                return;
            }
        };
        let mut restored = 0;
        for (id, snap) in snapshots {
            match SessionProcessor::restore(
                self.sessions.config(),
                snap.sample_rate_hz,
                snap.channels.len(),
                &snap.checkpoint,
            ) {
                Ok(processor) => {
                    let key = (snap.next_seq, snap.checkpoint.next_window);
                    self.sessions.insert(
                        id,
                        Session {
                            processor,
                            meta: Arc::new(SessionMeta {
                                session_id: snap.session_id,
                                device_id: snap.device_id,
                                user_id: snap.user_id,
                                sample_rate_hz: snap.sample_rate_hz,
                                channels: snap.channels,
                            }),
                            next_seq: snap.next_seq,
                            last_seen: self.now_s(),
                            extra: Tracked {
                                entries: VecDeque::new(),
                                restored_at: Some(snap.source_offset),
                                saved: Some(key),
                                triggers: snap
                                    .triggers
                                    .unwrap_or_else(|| self.shared.triggers.new_state()),
                            },
                        },
                    );
                    restored += 1;
                }
                Err(e) => tracing::warn!(
                    "partition {}: snapshot of session '{id}' does not fit the current config ({e}); the session restarts",
                    self.partition
                ),
            }
        }
        self.shared
            .stats
            .active_sessions
            .fetch_add(restored, Ordering::Relaxed);
        if restored > 0 {
            tracing::info!(
                "partition {}: {restored} session(s) restored",
                self.partition
            );
        }
    }

    fn evict_idle(&mut self, now: u64) {
        let idle = self.shared.config.session_idle.as_secs();
        let Some(cutoff) = now.checked_sub(idle) else {
            return;
        };
        let gone = self.sessions.evict_idle(cutoff);
        if !gone.is_empty() {
            let stats = &self.shared.stats;
            stats
                .sessions_evicted
                .fetch_add(gone.len() as u64, Ordering::Relaxed);
            stats
                .active_sessions
                .fetch_sub(gone.len() as u64, Ordering::Relaxed);
            self.evicted.extend(gone.into_iter().map(|(id, _)| id));
            self.dirty = true;
        }
    }

    /// Saves the snapshot of every session whose boundary moved, deletes those of evicted
    /// sessions, and queues the partition's new commit offset behind them: the earliest
    /// boundary of any session, or past the last message when no session needs anything.
    fn snapshot(&mut self) {
        if !self.dirty {
            return;
        }
        let Some(last) = self.last_offset else {
            return;
        };
        self.dirty = false;
        let commit = self
            .sessions
            .iter()
            .filter_map(|(_, s)| s.extra.boundary_offset())
            .min()
            .unwrap_or(last + 1)
            .min(last + 1);
        let pending = Pending::new(last, Some(commit));
        self.tracker.push(Arc::clone(&pending));
        let config = &self.shared.config;
        for id in self.evicted.drain(..) {
            // A tombstone: restoring drops the session.
            let out = Out {
                topic: &config.topics.state,
                partition: Some(self.partition),
                key: Some(id.as_bytes()),
                payload: None,
                headers: None,
            };
            self.shared.producer.send(out, &pending);
        }
        for (id, s) in self.sessions.iter_mut() {
            let Some(front) = s.extra.entries.front() else {
                continue;
            };
            let next_window = s.processor.windows_since_start();
            let key = (front.seq, next_window);
            if s.extra.saved == Some(key) {
                continue;
            }
            let mut checkpoint = front.checkpoint.clone();
            checkpoint.next_window = next_window;
            let snap = state::Snapshot {
                schema: state::SCHEMA.into(),
                session_id: id.clone(),
                device_id: s.meta.device_id.clone(),
                user_id: s.meta.user_id.clone(),
                sample_rate_hz: s.meta.sample_rate_hz,
                channels: s.meta.channels.clone(),
                next_seq: front.seq,
                source_offset: front.offset,
                checkpoint,
                triggers: Some(s.extra.triggers.clone()),
            };
            let bytes = snap.encode();
            // The raw message's partition number, not key hashing: the upstream producer's
            // partitioner is not ours to know, and restoring reads by partition.
            let out = Out {
                topic: &config.topics.state,
                partition: Some(self.partition),
                key: Some(id.as_bytes()),
                payload: Some(&bytes),
                headers: None,
            };
            self.shared.producer.send(out, &pending);
            s.extra.saved = Some(key);
        }
        pending.release();
    }

    fn handle(&mut self, m: Inbound) {
        // Where tests inject a failure of this task (compiled in with `failpoints` only).
        fail::fail_point!("partition-worker-message");
        let started = Instant::now();
        let pending = Pending::new(m.offset, None);
        self.tracker.push(Arc::clone(&pending));
        if let Err(reason) = self.process(&m, &pending) {
            self.dead_letter(&m, &reason, &pending);
        }
        // A message fetched again (e.g. after a resume) must not move the commit back.
        self.last_offset = self.last_offset.max(Some(m.offset));
        self.dirty = true;
        // The worker's own hold: from here on only deliveries settle the message.
        pending.release();
        self.shared.stats.latency.observe(started.elapsed());
    }

    /// Runs one message through its session; `Err` is the one-line reason it is a dead
    /// letter.
    fn process(&mut self, m: &Inbound, pending: &Arc<Pending>) -> Result<(), String> {
        let batch = eeg_schema::decode_raw(&m.payload, &self.limits).map_err(|e| e.to_string())?;
        let now = self.now_s();
        let (admission, session) = self
            .sessions
            .admit(&batch, now, |_| {
                Tracked::new(self.shared.triggers.new_state())
            })
            .map_err(|e| e.to_string())?;
        let stats = &self.shared.stats;
        match &admission {
            Admission::Duplicate => {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Admission::New => {
                stats.sessions_started.fetch_add(1, Ordering::Relaxed);
                stats.active_sessions.fetch_add(1, Ordering::Relaxed);
            }
            Admission::Reset(reason) => {
                stats.resets.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("session '{}' reset: {reason}", batch.session_id);
            }
            Admission::Continues => {}
        }
        let session = session.expect("admitted");
        let tracked = &mut session.extra;
        if matches!(admission, Admission::Reset(_)) {
            // Positions restart at zero: older checkpoints belong to the old stream.
            self.spare
                .extend(tracked.entries.drain(..).map(|e| e.checkpoint));
            tracked.triggers.reset();
        }
        // Taken after admission, so a message that reset the session is re-run from the
        // reset state, where it is admitted as the next in order.
        let mut checkpoint = self.spare.pop().unwrap_or_default();
        session.processor.checkpoint_into(&mut checkpoint);
        tracked.entries.push_back(Entry {
            offset: m.offset,
            seq: batch.seq,
            checkpoint,
        });
        tracked.restored_at = None;
        let mut sink = Outputs {
            shared: &self.shared,
            meta: &session.meta,
            triggers: &mut session.extra.triggers,
            pending,
            buf: &mut self.buf,
        };
        session
            .processor
            .push_channel_major(batch.samples(), batch.samples_per_channel(), &mut sink)
            .map_err(|e| e.to_string())?;
        // Keep checkpoints from the one whose message holds the next window's first sample.
        let next = session.processor.next_window_start();
        let entries = &mut session.extra.entries;
        while entries.len() > 1 && entries[1].checkpoint.position <= next {
            if let Some(e) = entries.pop_front() {
                self.spare.push(e.checkpoint);
            }
        }
        Ok(())
    }

    fn dead_letter(&mut self, m: &Inbound, reason: &str, pending: &Arc<Pending>) {
        let config = &self.shared.config;
        let partition = self.partition.to_string();
        let offset = m.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(reason),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(&config.topics.raw),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(&offset),
            });
        tracing::debug!(
            "dead letter: {} partition {} offset {}: {reason}",
            config.topics.raw,
            self.partition,
            m.offset
        );
        let out = Out {
            topic: &config.topics.dlq,
            partition: None,
            key: m.key.as_deref(),
            payload: Some(&m.payload),
            headers: Some(headers),
        };
        self.shared.producer.send(out, pending);
        self.shared
            .stats
            .dead_letters
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Publishes each completed window as an `eeg.processed/1` record keyed by session.
struct Outputs<'a> {
    shared: &'a Shared,
    meta: &'a SessionMeta,
    triggers: &'a mut TriggerState,
    pending: &'a Arc<Pending>,
    buf: &'a mut Vec<u8>,
}

impl WindowSink for Outputs<'_> {
    fn window(&mut self, w: &Window<'_>) {
        self.buf.clear();
        encode_processed(
            &ProcessedRecord {
                meta: self.meta,
                window: w,
            },
            self.buf,
        );
        let out = Out {
            topic: &self.shared.config.topics.processed,
            partition: None,
            key: Some(self.meta.session_id.as_bytes()),
            payload: Some(self.buf),
            headers: None,
        };
        self.shared.producer.send(out, self.pending);
        self.shared
            .stats
            .records_published
            .fetch_add(1, Ordering::Relaxed);
        let (shared, pending, buf) = (self.shared, self.pending, &mut *self.buf);
        shared.triggers.evaluate(
            self.triggers,
            &self.meta.session_id,
            &self.meta.device_id,
            w,
            &mut |event| {
                buf.clear();
                event.encode_into(buf);
                let out = Out {
                    topic: &shared.config.topics.triggers,
                    partition: None,
                    key: Some(event.session_id.as_bytes()),
                    payload: Some(buf),
                    headers: None,
                };
                shared.producer.send(out, pending);
                shared
                    .stats
                    .triggers_published
                    .fetch_add(1, Ordering::Relaxed);
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_with_jitter() {
        let mut b = Backoff::default();
        let waits: Vec<f64> = (0..10).map(|_| b.next().as_secs_f64()).collect();
        let bases = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0];
        for (w, base) in waits.iter().zip(bases) {
            assert!(*w >= 0.8 * base && *w < 1.2 * base, "{waits:?}");
        }
    }
}
