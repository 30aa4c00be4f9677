//! What the service is told: the topic names and everything else it needs to run. Plain
//! data; nothing here talks to a broker.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use eeg_dsp::ProcessingConfig;
use eeg_kafka::Auth;
use eeg_session::config::{EpochsConfig, EventsConfig};
use eeg_session::{OutputCache, TriggerConfig};

/// Topic names; the defaults are the system's (see the README's topic table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub raw: String,
    pub processed: String,
    pub triggers: String,
    pub dlq: String,
    /// Session snapshots (compacted; same partition count as `raw`).
    pub state: String,
    /// Epoch records (`eeg.epoch/1`); `None` when the service cuts no epochs (the config
    /// has no `[epochs]` table), and then the topic is neither needed nor checked.
    pub epochs: Option<String>,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics {
            raw: "eeg.raw.data".into(),
            processed: "eeg.processed.data".into(),
            triggers: "analytics.triggers".into(),
            dlq: "eeg.raw.data.dlq".into(),
            state: "eeg.session.state".into(),
            epochs: Some("eeg.epochs.data".into()),
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
    /// Epochs cut around the sessions' events, published on `topics.epochs`; `None` (or no
    /// epochs topic): events are placed and counted, no epoch is cut.
    pub epochs: Option<EpochsConfig>,
    pub events: EventsConfig,
    /// Further librdkafka properties for both clients (security settings, timeouts).
    pub kafka: Vec<(String, String)>,
    /// Tokens for SASL/OAUTHBEARER (MSK IAM), shared by every client of the service.
    pub auth: Auth,
    /// Further librdkafka properties for the consumer only (e.g. `session.timeout.ms`).
    pub consumer_kafka: Vec<(String, String)>,
    /// Further librdkafka properties for the producer only (e.g. `linger.ms`).
    pub producer_kafka: Vec<(String, String)>,
    /// Memory the instance's sessions may reserve together, bytes (see
    /// [`eeg_session::budget`]); `None`: [`crate::memory::default_budget`].
    pub session_memory_bytes: Option<u64>,
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
            epochs: None,
            events: EventsConfig::default(),
            kafka: Vec::new(),
            auth: Auth::default(),
            consumer_kafka: Vec::new(),
            producer_kafka: Vec::new(),
            session_memory_bytes: None,
            live_sessions: true,
            cache: None,
        }
    }

    /// The settings every client of the service starts from: the bootstrap servers, then
    /// the `kafka` properties (which may override nothing set later by a client).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.kafka {
            c.set(k, v);
        }
        c
    }

    /// The producer's settings: the shared ones, then the producer-only ones.
    pub(crate) fn producer_client_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        for (k, v) in &self.producer_kafka {
            c.set(k, v);
        }
        c
    }

    /// The consumer's settings before the ones the delivery promise fixes: the shared ones,
    /// the service's defaults for a partition's fetch-ahead, then the consumer-only ones
    /// (which may change those defaults).
    pub(crate) fn consumer_client_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        // Lag comes from librdkafka's statistics.
        c.set("statistics.interval.ms", "5000");
        // Each partition has a queue of its own (see `group`); librdkafka fetches ahead for
        // it until it holds this many messages or bytes, then waits for its worker to take
        // some. A short wait before fetching again keeps a small queue flowing.
        c.set("queued.min.messages", self.partition_queue.to_string())
            .set(
                "queued.max.messages.kbytes",
                (self.partition_buffer_bytes >> 10).max(1).to_string(),
            )
            .set("fetch.queue.backoff.ms", "20");
        for (k, v) in &self.consumer_kafka {
            c.set(k, v);
        }
        c
    }

    /// The session idle time in ms, as the session core counts it.
    pub(crate) fn session_idle_ms(&self) -> u64 {
        self.session_idle.as_millis().min(u128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServiceConfig {
        let mut c = ServiceConfig::new("b1:9092,b2:9092", "eeg-service");
        c.kafka = vec![
            ("security.protocol".into(), "sasl_ssl".into()),
            ("queued.min.messages".into(), "7".into()),
        ];
        c.partition_queue = 50;
        c.partition_buffer_bytes = 3 << 20;
        c
    }

    #[test]
    fn the_default_topics_are_the_systems() {
        let t = Topics::default();
        assert_eq!(
            [&t.raw, &t.processed, &t.triggers, &t.dlq, &t.state],
            [
                "eeg.raw.data",
                "eeg.processed.data",
                "analytics.triggers",
                "eeg.raw.data.dlq",
                "eeg.session.state"
            ]
        );
    }

    #[test]
    fn every_client_gets_the_servers_and_the_shared_properties() {
        let c = config();
        for client in [
            c.client_config(),
            c.producer_client_config(),
            c.consumer_client_config(),
        ] {
            assert_eq!(client.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
            assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        }
    }

    #[test]
    fn the_consumer_fetches_ahead_within_the_partition_bounds_unless_told_otherwise() {
        let mut c = config();
        let consumer = c.consumer_client_config();
        // The service's own value replaces the shared property...
        assert_eq!(consumer.get("queued.min.messages"), Some("50"));
        assert_eq!(consumer.get("queued.max.messages.kbytes"), Some("3072"));
        assert_eq!(consumer.get("statistics.interval.ms"), Some("5000"));
        // ...and a consumer-only property replaces the service's.
        c.consumer_kafka = vec![("queued.min.messages".into(), "9".into())];
        assert_eq!(
            c.consumer_client_config().get("queued.min.messages"),
            Some("9")
        );
        // Under 1 KiB of buffer is still 1 KiB: librdkafka refuses 0.
        c.partition_buffer_bytes = 100;
        assert_eq!(
            c.consumer_client_config().get("queued.max.messages.kbytes"),
            Some("1")
        );
        // The producer sees none of the consumer's settings.
        assert_eq!(
            c.producer_client_config().get("statistics.interval.ms"),
            None
        );
    }

    #[test]
    fn producer_only_properties_reach_the_producer_alone() {
        let mut c = config();
        c.producer_kafka = vec![("linger.ms".into(), "50".into())];
        assert_eq!(c.producer_client_config().get("linger.ms"), Some("50"));
        assert_eq!(c.consumer_client_config().get("linger.ms"), None);
        assert_eq!(c.client_config().get("linger.ms"), None);
    }

    #[test]
    fn a_session_idle_time_beyond_u64_ms_saturates() {
        let mut c = config();
        c.session_idle = Duration::from_secs(90);
        assert_eq!(c.session_idle_ms(), 90_000);
        c.session_idle = Duration::MAX;
        assert_eq!(c.session_idle_ms(), u64::MAX);
    }
}
