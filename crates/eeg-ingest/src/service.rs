//! The Kafka service: consume `eeg.raw.data` in a consumer group, run every partition
//! through its [`PartitionCore`] (sessions, trigger rules, delivery ledger), publish what it
//! produces, and commit a partition's offset only where its ledger says so.
//!
//! Threads: one polls the consumer (and runs the rebalance callbacks), one worker per
//! assigned partition owns that partition's core and feeds it in offset order, and
//! librdkafka's producer thread delivers and acknowledges. Nothing here runs on an async
//! runtime. This file is transport only: what is published and when an offset may be
//! committed is decided in `eeg-session`.

use std::collections::HashMap;

use crate::cache::OutputCache;
use crate::live::LiveSessions;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, base_consumer::PartitionQueue,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use eeg_dsp::ProcessingConfig;
use eeg_kafka::Auth;
use eeg_schema::Limits;
use eeg_session::{
    CoreConfig, Counters, Inbound, Outbox, Outcome, Output, PartitionCore, Ticket, Topic,
    TriggerConfig, TriggerEngine,
};

use crate::health::{Health, Phase};
use crate::producer::{ProduceError, Publisher, Record, Stamp};
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
    /// Messages librdkafka fetches ahead for a partition before it waits for the
    /// partition's worker (`queued.min.messages`, per partition queue).
    pub partition_queue: usize,
    /// Bytes fetched ahead for a partition before librdkafka waits for its worker
    /// (`queued.max.messages.kbytes`, per partition queue).
    pub partition_buffer_bytes: usize,
    /// How often a partition's session snapshots are saved and its offset moved on.
    pub snapshot_interval: Duration,
    /// A partition with messages and no commit for this long, not assigned here, is
    /// reported as unconsumed and the service rejoins the group; zero turns the watch off.
    pub stall_after: Duration,
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
    /// Keep each session's latest record for `/sessions` and `/ui`.
    pub live_sessions: bool,
    /// A cache told every record and trigger event published (Redis), if any.
    pub cache: Option<Arc<dyn OutputCache>>,
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
            partition_queue: 1000,
            partition_buffer_bytes: 8 << 20,
            snapshot_interval: Duration::from_secs(1),
            stall_after: Duration::from_secs(60),
            triggers: TriggerConfig::default(),
            kafka: Vec::new(),
            auth: Auth::default(),
            consumer_kafka: Vec::new(),
            producer_kafka: Vec::new(),
            live_sessions: true,
            cache: None,
        }
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.kafka {
            c.set(k, v);
        }
        c
    }
}

eeg_session::counters! {
    /// What the transport did.
    pub struct TransportCounters {
        /// Raw messages consumed.
        messages_consumed: Counter,
        /// Partition assignments and revocations.
        rebalances: Counter,
        /// Times a partition was read again from the first offset not received, after the
        /// consumer skipped offsets.
        offset_refetches: Counter,
        /// Times the service left and rejoined its group because a partition had no consumer.
        group_rejoins: Counter,
    }
}

/// Counters of what the service did, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub transport: TransportCounters,
    /// The partition cores' counters (records, triggers, dead letters, sessions...).
    pub core: Arc<Counters>,
    /// Time to process one raw message in its partition's worker.
    pub latency: Histogram,
    /// Time from a window's end, and from its raw message's consumption, to its record's
    /// acknowledgement.
    pub window_latency: Arc<WindowLatency>,
    /// Each active session's latest record.
    pub live: LiveSessions,
    /// The cache beside Kafka, if one is configured.
    pub cache: Option<Arc<dyn OutputCache>>,
}

impl Stats {
    /// Every counter and gauge, transport first: the one list log lines and metrics use.
    pub fn each(&self, mut f: impl FnMut(eeg_session::Figure)) {
        self.transport.each(&mut f);
        self.core.each(&mut f);
    }

    /// The value of the figure called `name`, 0 for an unknown name.
    pub fn get(&self, name: &str) -> u64 {
        let mut v = 0;
        self.each(|f| {
            if f.name == name {
                v = f.value;
            }
        });
        v
    }
}

/// Upper bounds of the processing-time buckets, µs.
const PROCESSING_BUCKETS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
];

/// Upper bounds of the window-latency buckets, µs: from what neurofeedback notices
/// (tens of ms) to a device clock that is off by a minute.
const WINDOW_LATENCY_BUCKETS_US: &[u64] = &[
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 60_000_000,
];

/// A Prometheus-style histogram of durations, lock-free.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, µs, ascending.
    bounds_us: &'static [u64],
    /// Per bucket (not cumulative), the last one for everything above the largest bound.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    /// Buckets for the time to process one message.
    fn default() -> Self {
        Histogram::new(PROCESSING_BUCKETS_US)
    }
}

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        Histogram {
            bounds_us,
            counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = self
            .bounds_us
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(self.bounds_us.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes the histogram in the Prometheus text format (cumulative buckets, seconds).
    pub fn write(&self, out: &mut String, name: &str, help: &str) {
        write_help(out, name, help);
        self.write_series(out, name, "");
    }

    /// Writes the histogram's series, each with `labels` (e.g. `since="consume",`) before
    /// its bucket bound; the HELP and TYPE lines are the caller's.
    pub fn write_series(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write as _;
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            match self.bounds_us.get(i) {
                Some(b) => {
                    let le = *b as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {total}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {total}");
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {sum}\n{name}_count{braces} {total}"
        );
    }
}

/// The HELP and TYPE lines of a histogram.
pub fn write_help(out: &mut String, name: &str, help: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
}

/// How long processed records take to reach the broker, measured at their delivery
/// acknowledgement: from the end of the window in sample time (the device's clock), and
/// from consuming the raw message that completed the window.
#[derive(Debug)]
pub struct WindowLatency {
    pub since_window_end: Histogram,
    pub since_consume: Histogram,
}

impl Default for WindowLatency {
    fn default() -> Self {
        WindowLatency {
            since_window_end: Histogram::new(WINDOW_LATENCY_BUCKETS_US),
            since_consume: Histogram::new(WINDOW_LATENCY_BUCKETS_US),
        }
    }
}

impl WindowLatency {
    /// Records one acknowledged record. A window end ahead of this machine's clock (a
    /// device clock running fast) counts as 0.
    pub fn observe(&self, window_end_ms: i64, consumed: Option<Instant>, now_unix_ms: i64) {
        let behind = now_unix_ms.saturating_sub(window_end_ms).max(0) as u64;
        self.since_window_end.observe(Duration::from_millis(behind));
        if let Some(consumed) = consumed {
            self.since_consume.observe(consumed.elapsed());
        }
    }

    pub fn write(&self, out: &mut String) {
        let name = "eeg_window_latency_seconds";
        write_help(
            out,
            name,
            "Time until a processed record is acknowledged by the broker: since=\"window_end\" from the end of its window in sample time (the device's clock), since=\"consume\" from consuming the raw message that completed the window.",
        );
        self.since_window_end
            .write_series(out, name, "since=\"window_end\",");
        self.since_consume
            .write_series(out, name, "since=\"consume\",");
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
    Triggers(#[from] eeg_session::TriggerConfigError),
}

/// The service's consumer.
type Kafka = BaseConsumer<Rebalancing>;

/// What a worker and the polling thread share about one partition.
#[derive(Debug)]
struct Link {
    /// The offset the worker's ledger made safe to commit; -1 before any.
    commit: AtomicI64,
    /// The partition was revoked or the service stops: finish and return.
    released: AtomicBool,
}

impl Link {
    fn new() -> Link {
        Link {
            commit: AtomicI64::new(-1),
            released: AtomicBool::new(false),
        }
    }

    fn commit(&self) -> Option<i64> {
        let c = self.commit.load(Ordering::Acquire);
        (c >= 0).then_some(c)
    }
}

/// Keeps a partition's messages consecutive as they come from the consumer: every offset
/// is taken once, in order. A message past the next expected offset means the consumer
/// skipped some (seen after pausing and resuming a partition, whatever the client library
/// or broker does with the position): the partition is read again from the expected
/// offset, once. If the same offsets are missing after that, they do not exist on the
/// broker (deleted, or transaction markers) and the gap is accepted.
#[derive(Debug, Default)]
struct OffsetGuard {
    expected: Option<i64>,
    /// The expected offset of the last read-again, so one gap is read again only once.
    refetched: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// Take the message.
    Take,
    /// Already taken: drop it.
    Repeat,
    /// Offsets were skipped: drop it and read again from this offset.
    Refetch(i64),
}

impl OffsetGuard {
    fn check(&mut self, offset: i64) -> Check {
        match self.expected {
            Some(e) if offset < e => return Check::Repeat,
            Some(e) if offset > e && self.refetched != Some(e) => {
                self.refetched = Some(e);
                return Check::Refetch(e);
            }
            _ => {}
        }
        self.expected = Some(offset + 1);
        Check::Take
    }

    /// The partition will be read from `offset` next.
    fn restart_at(&mut self, offset: i64) {
        self.expected = Some(offset);
        self.refetched = None;
    }
}

/// The polling thread's handle on one partition.
#[derive(Debug)]
struct Partition {
    link: Arc<Link>,
    worker: Option<JoinHandle<()>>,
    stored: Option<i64>,
}

/// State shared by the polling loop and the rebalance callbacks (which run inside `poll`).
struct Shared {
    health: Arc<Health>,
    config: ServiceConfig,
    triggers: Arc<TriggerEngine>,
    producer: Publisher,
    stats: Arc<Stats>,
    partitions: Mutex<HashMap<i32, Partition>>,
    /// The first background task that failed, as its log line.
    failed_task: Mutex<Option<String>>,
    /// The consumer, for the rebalance callbacks to split partition queues off it (weak: it
    /// owns this state through its context).
    consumer: OnceLock<Weak<Kafka>>,
    /// The largest output the producer and the output topics all take; see
    /// [`Service::agree_on_message_size`].
    max_output_bytes: AtomicUsize,
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

    fn core_config(&self, partition: i32) -> CoreConfig {
        let c = &self.config;
        CoreConfig {
            processing: c.processing.clone(),
            triggers: Arc::clone(&self.triggers),
            session_idle_ms: c.session_idle.as_millis().min(u128::from(u64::MAX)) as u64,
            limits: Limits::default(),
            source_topic: c.topics.raw.clone(),
            partition,
            max_output_bytes: self.max_output_bytes.load(Ordering::Relaxed),
        }
    }

    /// Splits partition `id` off the consumer's main queue and starts its worker, which
    /// polls that queue itself: librdkafka then fetches ahead for this partition only up to
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
            self.task_failed(format!("partition {id}: no queue of its own"));
            return;
        };
        let link = Arc::new(Link::new());
        let worker = {
            let shared = Arc::clone(self);
            let link = Arc::clone(&link);
            std::thread::Builder::new()
                .name(format!("partition-{id}"))
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| {
                        PartitionWorker::start(Arc::clone(&shared), id, link, consumer, queue).run()
                    });
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
                link,
                worker: Some(worker),
                stored: None,
            },
        );
    }

    /// Lets the workers of `ids` finish what they were handed, write their last snapshots
    /// and wait (within their budget) for the broker's acknowledgements, then commits what
    /// their ledgers reached and forgets the partitions.
    fn release(&self, consumer: &Kafka, ids: &[i32]) -> Result<(), KafkaError> {
        let mut gone = Vec::new();
        {
            let mut parts = self.partitions.lock().expect("partitions lock");
            for id in ids {
                if let Some(p) = parts.remove(id) {
                    // The worker finishes the message in hand, then stops taking any; what
                    // is left in its queue is read again by the next owner.
                    p.link.released.store(true, Ordering::Release);
                    gone.push((*id, p));
                }
            }
        }
        for (_, p) in &mut gone {
            if let Some(w) = p.worker.take() {
                let _ = w.join();
            }
        }
        if self.producer.failed() {
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

    /// Sleeps for `d`, or less when a stop is requested meanwhile; true when it was.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.requested() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        self.requested()
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
        let window_latency = Arc::new(WindowLatency::default());
        let producer = Publisher::new(&client, &config.auth, Arc::clone(&window_latency))?;
        let max_output_bytes = AtomicUsize::new(producer.max_message_bytes());
        let triggers = Arc::new(TriggerEngine::new(config.triggers.rules.clone())?);
        let live = LiveSessions::new(config.live_sessions, config.session_idle);
        let cache = config.cache.clone();
        Ok(Service {
            shared: Arc::new(Shared {
                health: Arc::new(Health::default()),
                triggers,
                config,
                producer,
                stats: Arc::new(Stats {
                    live,
                    cache,
                    window_latency,
                    ..Stats::default()
                }),
                partitions: Mutex::new(HashMap::new()),
                failed_task: Mutex::new(None),
                consumer: OnceLock::new(),
                max_output_bytes,
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
        self.agree_on_message_size();
        let shared = self.shared;
        let config = &shared.config;
        let mut client = config.client_config();
        // Lag comes from librdkafka's statistics.
        client.set("statistics.interval.ms", "5000");
        // Each partition has a queue of its own (see `start_partition`); librdkafka fetches
        // ahead for it until it holds this many messages or bytes, then waits for its worker
        // to take some. A short wait before fetching again keeps a small queue flowing.
        // Overridable.
        client
            .set("queued.min.messages", config.partition_queue.to_string())
            .set(
                "queued.max.messages.kbytes",
                (config.partition_buffer_bytes >> 10).max(1).to_string(),
            )
            .set("fetch.queue.backoff.ms", "20");
        for (k, v) in &config.consumer_kafka {
            client.set(k, v);
        }
        // What the delivery promise rests on: not overridable.
        let consumer: Kafka = client
            .set("group.id", &config.group_id)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Rebalancing(Arc::clone(&shared)))?;
        let consumer = Arc::new(consumer);
        let _ = shared.consumer.set(Arc::downgrade(&consumer));
        consumer.subscribe(&[&config.topics.raw])?;
        shared.health.set_phase(Phase::Consuming);
        let rejoin = Arc::new(AtomicBool::new(false));
        let watchdog = crate::watchdog::spawn(
            config.clone(),
            Arc::clone(&shared.health),
            self.stop.clone(),
            Arc::clone(&rejoin),
        );
        if let Err(e) = &watchdog {
            tracing::warn!("group watchdog not started: {e}");
        }
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
            if rejoin.swap(false, Ordering::AcqRel) {
                // Leaving and joining again makes the coordinator hand out every partition
                // anew; this instance's partitions are released (and committed) first.
                tracing::warn!(
                    "rejoining group {} so that every partition gets an owner",
                    config.group_id
                );
                shared
                    .stats
                    .transport
                    .group_rejoins
                    .fetch_add(1, Ordering::Relaxed);
                consumer.unsubscribe();
                consumer.subscribe(&[&config.topics.raw])?;
            }
            // Serves the group's events (rebalances, errors, statistics); the messages come
            // through the partitions' own queues.
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    // Only a message fetched before its partition's queue was split could
                    // come here; its worker notices the offset missing and reads it again.
                    tracing::debug!(
                        "partition {} offset {} on the main queue; left to its worker",
                        m.partition(),
                        m.offset()
                    );
                }
                Some(Err(e)) => log_consumer_error(&e),
            }
            match shared.housekeeping(&consumer) {
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
        shared.release(&consumer, &ids)?;
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
    /// Keeps every output (records, events, dead letters) under the smallest of the
    /// producer's `message.max.bytes` and the output topics' `max.message.bytes`: a record the
    /// producer takes and the topic refuses would fail its delivery and stop the service, and
    /// every next owner of the partition on the same message. Best effort: a broker that does
    /// not say (or refuses to) leaves the producer's limit.
    fn agree_on_message_size(&self) {
        let config = &self.shared.config;
        let t = &config.topics;
        let outputs = [t.processed.as_str(), t.triggers.as_str(), t.dlq.as_str()];
        let limits = match topics::message_limits(
            &config.client_config(),
            &config.auth,
            &outputs,
            config.connect_timeout,
        ) {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("topic size limits unknown: {e}");
                return;
            }
        };
        let producer = self.shared.producer.max_message_bytes();
        if let Some((topic, &limit)) = limits.iter().min_by_key(|(_, l)| **l)
            && limit < producer
        {
            tracing::info!(
                "outputs kept under {limit} bytes, the max.message.bytes of {topic} (the producer takes {producer})"
            );
            self.shared.max_output_bytes.store(limit, Ordering::Relaxed);
        }
    }

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
    /// Stores the offsets the partitions' ledgers reached; notices a worker that died.
    fn housekeeping(&self, consumer: &Kafka) -> Result<(), ServiceError> {
        let mut parts = self.partitions.lock().expect("partitions lock");
        let mut store = TopicPartitionList::new();
        for (&id, p) in parts.iter_mut() {
            if p.worker.as_ref().is_some_and(JoinHandle::is_finished) {
                return Err(ServiceError::WorkerDied(id));
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
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The producer as a partition's core sees it: outputs to their topics, snapshots to this
/// partition's number on the state topic.
struct KafkaOutbox<'a> {
    producer: &'a Publisher,
    topics: &'a Topics,
    partition: i32,
    stats: &'a Stats,
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
                    self.stats.live.record(self.partition, key, record);
                    if let Some(cache) = &self.stats.cache {
                        cache.processed(key, record);
                    }
                }
                (&self.topics.processed, None)
            }
            Topic::Triggers => {
                if let (Some(cache), Some(key), Some(record)) =
                    (&self.stats.cache, out.key, out.payload)
                {
                    cache.trigger(key, record);
                }
                (&self.topics.triggers, None)
            }
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
            },
            ticket,
        )
    }
}

/// Feeds one partition's messages from its own queue to its core, in offset order, and
/// publishes what the core's ledger makes safe to commit.
struct PartitionWorker {
    shared: Arc<Shared>,
    partition: i32,
    link: Arc<Link>,
    core: PartitionCore,
    consumer: Arc<Kafka>,
    queue: PartitionQueue<Rebalancing>,
    guard: OffsetGuard,
}

impl PartitionWorker {
    /// Restores the partition's sessions from their snapshots, before any of its messages
    /// is processed.
    fn start(
        shared: Arc<Shared>,
        partition: i32,
        link: Arc<Link>,
        consumer: Arc<Kafka>,
        queue: PartitionQueue<Rebalancing>,
    ) -> PartitionWorker {
        let config = &shared.config;
        let core_config = shared.core_config(partition);
        let counters = Arc::clone(&shared.stats.core);
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
                let (core, report) = PartitionCore::restore(
                    core_config,
                    counters,
                    saved.records.into_values(),
                    committed,
                );
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
                PartitionCore::new(core_config, counters)
            }
        };
        let mut worker = PartitionWorker {
            shared,
            partition,
            link,
            core,
            consumer,
            queue,
            guard: OffsetGuard::default(),
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
        let config = &self.shared.config;
        let deadline = Instant::now() + config.connect_timeout;
        while Instant::now() < deadline
            && !self.consumer.assignment().is_ok_and(|a| {
                a.find_partition(&config.topics.raw, self.partition)
                    .is_some()
            })
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Err(e) = self.consumer.seek(
            &config.topics.raw,
            self.partition,
            Offset::Offset(offset),
            config.connect_timeout,
        ) {
            tracing::warn!(
                "partition {}: reading again from offset {offset} failed: {e}",
                self.partition
            );
        }
        self.guard.restart_at(offset);
    }

    fn run(mut self) {
        let interval = self.shared.config.snapshot_interval;
        let mut last_checkpoint = Instant::now();
        while !self.link.released.load(Ordering::Acquire) {
            // Acknowledgements arrive without a message to wake the worker: look often
            // while some are awaited.
            let wait = if self.core.ledger().is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(20)
            };
            let refetch = match self.queue.poll(wait) {
                None => None,
                Some(Err(e)) => {
                    log_consumer_error(&e);
                    None
                }
                Some(Ok(m)) => {
                    self.shared
                        .stats
                        .transport
                        .messages_consumed
                        .fetch_add(1, Ordering::Relaxed);
                    match self.guard.check(m.offset()) {
                        Check::Take => {
                            let inbound = Inbound {
                                offset: m.offset(),
                                timestamp_ms: m.timestamp().to_millis(),
                                key: m.key(),
                                payload: m.payload().unwrap_or_default(),
                                content_type: content_type(&m),
                            };
                            take(&self.shared, self.partition, &mut self.core, &inbound);
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
                self.shared
                    .stats
                    .transport
                    .offset_refetches
                    .fetch_add(1, Ordering::Relaxed);
                self.read_from(from);
            }
            if last_checkpoint.elapsed() >= interval {
                last_checkpoint = Instant::now();
                self.core.checkpoint();
            }
            self.advance();
        }
        // Released (revoked or stopping): save where every session stands and wait for the
        // broker, so the offset committed now lets the next owner carry on exactly.
        self.core.checkpoint();
        let deadline = Instant::now() + self.shared.config.shutdown_timeout.min(revoke_budget());
        while !self.core.ledger().is_empty()
            && !self.core.ledger().failed()
            && Instant::now() < deadline
        {
            self.advance();
            std::thread::sleep(Duration::from_millis(5));
        }
        self.advance();
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
    }

    fn advance(&mut self) {
        let mut outbox = KafkaOutbox {
            producer: &self.shared.producer,
            topics: &self.shared.config.topics,
            partition: self.partition,
            stats: &self.shared.stats,
            consumed: None,
        };
        if let Ok(Some(commit)) = self.core.advance(&mut outbox) {
            self.link.commit.store(commit, Ordering::Release);
        }
    }
}

/// The value of the message's `content-type` header (the name compared without regard to
/// case, as HTTP does, since producers spell it either way), which chooses the decoder.
pub fn content_type<'m>(m: &'m rdkafka::message::BorrowedMessage<'_>) -> Option<&'m [u8]> {
    use rdkafka::message::{Headers, Message};
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value.unwrap_or_default())
}

/// One message through the partition's core, straight from librdkafka's buffer.
fn take(shared: &Shared, partition: i32, core: &mut PartitionCore, m: &Inbound<'_>) {
    // Where tests inject a failure of this task (compiled in with `failpoints` only).
    fail::fail_point!("partition-worker-message");
    let started = Instant::now();
    let mut outbox = KafkaOutbox {
        producer: &shared.producer,
        topics: &shared.config.topics,
        partition,
        stats: &shared.stats,
        consumed: Some(started),
    };
    // An `Err` means an output was refused: the producer logged it and is marked failed,
    // and the polling thread stops the service without committing past it.
    if let Ok(handled) = core.handle(m, &mut outbox) {
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
            Outcome::DeadLetter(reason) => tracing::debug!(
                "dead letter: {} partition {partition} offset {}: {reason}",
                shared.config.topics.raw,
                m.offset
            ),
            _ => {}
        }
    }
    shared.stats.latency.observe(started.elapsed());
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

    #[test]
    fn the_guard_hands_every_offset_over_once_in_order() {
        let mut g = OffsetGuard::default();
        assert_eq!(g.check(10), Check::Take);
        assert_eq!(g.check(11), Check::Take);
        assert_eq!(g.check(11), Check::Repeat);
        // The consumer skipped 12 and 13: read again from 12, once.
        assert_eq!(g.check(14), Check::Refetch(12));
        assert_eq!(g.check(12), Check::Take);
        assert_eq!(g.check(13), Check::Take);
        assert_eq!(g.check(14), Check::Take);
    }

    #[test]
    fn offsets_missing_after_reading_again_are_a_real_gap() {
        let mut g = OffsetGuard::default();
        assert_eq!(g.check(3), Check::Take);
        assert_eq!(g.check(7), Check::Refetch(4));
        // Read again from 4, the broker's next offset is still 7: accepted.
        assert_eq!(g.check(7), Check::Take);
        assert_eq!(g.check(8), Check::Take);
        // A later gap is read again once more.
        assert_eq!(g.check(10), Check::Refetch(9));
    }

    #[test]
    fn a_restart_sets_the_next_offset() {
        let mut g = OffsetGuard::default();
        assert_eq!(g.check(100), Check::Take);
        g.restart_at(40);
        assert_eq!(g.check(101), Check::Refetch(40));
        assert_eq!(g.check(40), Check::Take);
    }
}
