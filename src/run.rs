//! `eeg-pipeline run`: the Kafka service, configured from the environment.

use std::path::PathBuf;
use std::time::Duration;

use crate::flags::{BadInput, KafkaArgs, TopicArgs, parse_property};

/// The optional Redis cache (docs/service.md, "Redis").
#[derive(Debug, clap::Args)]
pub struct RedisArgs {
    /// Redis to mirror each session's latest record, live windows and trigger events to:
    /// redis://host:port, or rediss:// for TLS (ElastiCache in-transit encryption). Unset:
    /// no Redis.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis user (ElastiCache RBAC); overrides the URL's.
    #[arg(long, env = "REDIS_USERNAME")]
    pub redis_username: Option<String>,
    /// Redis password or AUTH token; overrides the URL's. Never logged or reported.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// The URL is a cluster's configuration endpoint (cluster mode on).
    #[arg(long, env = "REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub redis_cluster: bool,
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "eeg:")]
    pub redis_key_prefix: String,
    /// Lifetime of the keys, renewed by every window: an ended session's keys expire.
    #[arg(long, env = "REDIS_TTL_S", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_ttl_s: u64,
    /// Readiness depends on Redis accepting writes (default: it never does).
    #[arg(long, env = "REDIS_REQUIRED", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub redis_required: bool,
    /// Updates kept while Redis is slow or down; beyond it the oldest are dropped (and
    /// counted in eeg_redis_dropped_total).
    #[arg(long, env = "REDIS_QUEUE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_queue: u64,
    /// PEM file of the CA to trust for rediss:// instead of the system's (a private CA;
    /// ElastiCache needs none).
    #[arg(long, env = "REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<std::path::PathBuf>,
}

impl RedisArgs {
    /// The cache, started, when a URL is set.
    pub fn start(&self) -> anyhow::Result<Option<std::sync::Arc<eeg_redis::RedisCache>>> {
        let Some(url) = &self.redis_url else {
            return Ok(None);
        };
        let mut c = eeg_redis::RedisConfig::new(url.as_str());
        c.username = self.redis_username.clone();
        c.password = self.redis_password.clone();
        c.cluster = self.redis_cluster;
        c.key_prefix = self.redis_key_prefix.clone();
        c.ttl = Duration::from_secs(self.redis_ttl_s);
        c.required = self.redis_required;
        c.queue = self.redis_queue as usize;
        c.tls_ca_file = self.redis_tls_ca_file.clone();
        let cache = eeg_redis::RedisCache::start(c).map_err(|e| BadInput(e.to_string()))?;
        tracing::info!(
            target_url = %eeg_redis::redacted(url),
            cluster = self.redis_cluster,
            key_prefix = %self.redis_key_prefix,
            ttl_s = self.redis_ttl_s,
            required = self.redis_required,
            "redis cache on"
        );
        Ok(Some(cache))
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Extra librdkafka property for the consumer only, as KEY=VALUE (repeatable), e.g.
    /// session.timeout.ms=10000.
    #[arg(long = "consumer-kafka", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub consumer_properties: Vec<(String, String)>,
    /// Extra librdkafka property for the producer only, as KEY=VALUE (repeatable).
    #[arg(long = "producer-kafka", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub producer_properties: Vec<(String, String)>,
    /// Consumer group; instances with the same group share the partitions.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "eeg-pipeline")]
    pub group_id: String,
    /// Processing config (TOML); every key is optional.
    #[arg(long, env = "EEG_CONFIG", value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// A session is dropped from memory once a message of its partition comes this many
    /// seconds (Kafka timestamps) after the session's last one.
    #[arg(long, env = "SESSION_IDLE_S", default_value_t = 300)]
    pub session_idle_s: u64,
    /// Seconds allowed after SIGTERM/SIGINT to finish in-flight work, flush and commit
    /// (inside ECS's 30 s stop timeout).
    #[arg(long, env = "SHUTDOWN_TIMEOUT_S", default_value_t = 20)]
    pub shutdown_timeout_s: u64,
    /// Messages librdkafka fetches ahead for each partition (its own queue, which the
    /// partition's worker polls), before it waits for the worker to take some.
    #[arg(long, env = "EEG_PARTITION_QUEUE", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub partition_queue: u64,
    /// KiB of messages librdkafka fetches ahead for each partition, before it waits for the
    /// partition's worker to take some.
    #[arg(long, env = "EEG_PARTITION_BUFFER_KIB", default_value_t = 8192,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub partition_buffer_kib: u64,
    /// MiB of memory the sessions of this instance may reserve together (each the most its
    /// state can hold); a session that does not fit waits, and its partition is not read
    /// meanwhile. Default: half the container's memory limit, else half the machine's.
    #[arg(long, env = "EEG_SESSION_MEMORY_MIB",
          value_parser = clap::value_parser!(u64).range(1..(1 << 44)))]
    pub session_memory_mib: Option<u64>,
    /// Address of the health and metrics endpoints.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: std::net::SocketAddr,
    /// `on`: also serve `/sessions` (each active session's latest record, JSON) and the
    /// `/ui` page that shows them; `off` for deployments that must not show session data.
    #[arg(long, env = "HTTP_UI", default_value = "on", value_parser = ["on", "off"])]
    pub http_ui: String,
    /// Bound, in seconds, on each wait for the broker (metadata, topic checks).
    #[arg(long, env = "KAFKA_CONNECT_TIMEOUT_S", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_s: u64,
    /// A partition of the raw topic with messages and no commit for this many seconds, not
    /// assigned here, is reported as unconsumed and the service rejoins its group; 0 turns
    /// the watch off.
    #[arg(long, env = "EEG_STALL_AFTER_S", default_value_t = 60)]
    pub stall_after_s: u64,
    /// Seconds between status lines (counters, active sessions, session memory) in the log;
    /// 0 turns them off.
    #[arg(long, env = "EEG_STATUS_INTERVAL_S", default_value_t = 60)]
    pub status_interval_s: u64,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    keep_large_blocks_mapped();
    let file = eeg_session::config::load_or_default(args.config.as_deref())
        .map_err(|e| BadInput(e.to_string()))?;
    for w in file.warnings() {
        tracing::warn!("{w}");
    }
    let mut config = eeg_ingest::ServiceConfig::new(&args.kafka.bootstrap_servers, &args.group_id);
    config.topics = args.topics.topics();
    config.processing = file.processing;
    config.triggers = file.triggers;
    config.events = file.events;
    config.epochs = file.epochs;
    if config.epochs.is_none() {
        // No epochs are cut: their topic is not needed.
        config.topics.epochs = None;
    }
    config.session_idle = Duration::from_secs(args.session_idle_s);
    config.shutdown_timeout = Duration::from_secs(args.shutdown_timeout_s);
    config.connect_timeout = Duration::from_secs(args.connect_timeout_s);
    config.partition_queue = args.partition_queue as usize;
    config.partition_buffer_bytes = (args.partition_buffer_kib as usize) << 10;
    config.stall_after = Duration::from_secs(args.stall_after_s);
    config.live_sessions = args.http_ui == "on";
    config.session_memory_bytes = args.session_memory_mib.map(|mib| mib << 20);
    config.kafka = args.kafka.properties()?;
    config.auth = args.kafka.auth()?;
    config.consumer_kafka = args.consumer_properties.clone();
    config.producer_kafka = args.producer_properties.clone();
    let cache = args.redis.start()?;
    config.cache = cache
        .clone()
        .map(|c| c as std::sync::Arc<dyn eeg_session::OutputCache>);
    tracing::info!(
        bootstrap_servers = %config.bootstrap_servers,
        security_protocol = %args.kafka.security_protocol,
        sasl_mechanism = args.kafka.sasl_mechanism.as_deref().unwrap_or("none"),
        auth = ?config.auth,
        group_id = %config.group_id,
        raw = %config.topics.raw,
        processed = %config.topics.processed,
        dlq = %config.topics.dlq,
        session_idle_s = args.session_idle_s,
        shutdown_timeout_s = args.shutdown_timeout_s,
        "starting"
    );
    let service = eeg_ingest::Service::new(config)?;
    // Every client's "all brokers down" and reconnection reach /health and /metrics.
    eeg_kafka::client_log::observe(service.health());
    // Before any Kafka call: the endpoints answer (and say why not ready) from the start.
    let bound = crate::http::serve(args.http_addr, service.health(), service.stats())?;
    tracing::info!("health and metrics on http://{bound}");
    let stop = service.stop_handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_signals(stop))?;
    let stats = service.stats();
    if args.status_interval_s > 0 {
        let stats = std::sync::Arc::clone(&stats);
        let every = Duration::from_secs(args.status_interval_s);
        std::thread::Builder::new()
            .name("status".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    log_stats("status", &stats);
                }
            })?;
    }
    let result = service.run();
    if let Some(cache) = &cache {
        // What the service published last reaches Redis too, unless Redis is down.
        cache.shutdown(Duration::from_secs(2));
    }
    // Counts of repeated client errors not reported yet.
    eeg_kafka::client_log::flush();
    log_stats("totals", &stats);
    Ok(result?)
}

/// Makes glibc map every block of 128 KiB or more on its own and unmap it when freed.
///
/// By default glibc raises that threshold to the size of each mapped block freed (up to
/// 32 MiB), after which blocks of that size come from its heaps, which it rarely gives back:
/// sessions whose windows grow and end leave tens of MiB held per thread. Measured in
/// `tests/kafka/memory.rs`: two sessions of 33 MiB peaked at 185 MiB with the default and at
/// 82 MiB with this, so the memory the session budget counts is the memory the process
/// holds. The service's hot path allocates nothing that large, so the extra mappings cost
/// one per large message at most.
fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt changes a tuning parameter under glibc's own lock; it touches no
    // memory of ours.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The first SIGTERM or SIGINT asks the service to stop cleanly; a second one exits at once.
fn wait_for_signals(stop: eeg_ingest::StopHandle) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot listen for signals: {e}");
            return;
        }
    };
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for SIGTERM/SIGINT");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        stop.stop();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting without finishing in-flight work");
        std::process::exit(130);
    });
}

/// One log line with every counter and gauge of the service (`name=value`, in the order of
/// the one list `/metrics` is made from).
fn log_stats(what: &str, stats: &eeg_ingest::Stats) {
    use std::fmt::Write as _;
    let mut line = String::from(what);
    stats.each(|f| {
        let _ = write!(line, " {}={}", f.name, f.value);
    });
    tracing::info!("{line}");
}
