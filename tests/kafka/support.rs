//! What the tests of the service against a broker share: the broker (the shared one, or a
//! private one a test starts and stops), topics of each test's own, Kafka clients to write
//! and read them, the command line against those topics, the service itself, and the
//! fixture replayed with the records it must give.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

pub const BIN: &str = env!("CARGO_BIN_EXE_eeg-pipeline");
/// Partitions of every topic a test creates.
pub const PARTITIONS: i32 = 3;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------
// Brokers.

/// The broker's address; starts the local one when none is given.
pub fn bootstrap() -> String {
    if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        && !b.is_empty()
    {
        return b;
    }
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        let out = Command::new(root().join("scripts/broker"))
            .args(["start", "--port", "19092"])
            .output()
            .expect("scripts/broker runs");
        assert!(
            out.status.success(),
            "scripts/broker start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    "127.0.0.1:19092".into()
}

/// A server of a test's own (a private broker, a Redis node), killed when dropped: it goes
/// with its test, passed or failed.
#[derive(Debug)]
pub struct Daemon(Child);

impl Daemon {
    /// Runs `cmd` and waits (10 s at most) until something listens on `port`.
    pub fn start(cmd: &mut Command, port: u16) -> Daemon {
        let daemon = Daemon(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{cmd:?}: nothing listens on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tansu binary `scripts/broker` uses (installing it when missing).
pub fn tansu_binary() -> String {
    let out = Command::new(root().join("scripts/broker"))
        .arg("install")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A private tansu broker on `port`, its data in `dir` (sqlite), optionally requiring SASL.
pub fn private_broker(dir: &Path, port: u16, authentication: bool) -> Daemon {
    tansu_on(dir, port, "sqlite://tansu.db", authentication)
}

/// A private tansu broker on `port` that keeps its data in memory.
pub fn memory_broker(port: u16) -> Daemon {
    tansu_on(&std::env::temp_dir(), port, "memory://tansu/", false)
}

fn tansu_on(dir: &Path, port: u16, storage: &str, authentication: bool) -> Daemon {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(tansu_binary());
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
    ])
    .args(["--storage-engine", storage])
    .current_dir(dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if authentication {
        cmd.arg("--authentication");
    }
    Daemon::start(&mut cmd, port)
}

/// A port for a server of a test's own (a service's HTTP endpoints, a private broker or Redis
/// node): one nothing listens on now, never given twice by this process, and below the
/// ports the kernel picks for `bind(0)` and for outgoing connections (32768 and up), so
/// that no other server or client connection takes it before the server binds it.
pub fn free_port() -> u16 {
    // Up to 27000, where the cluster buses of `scripts/redis` begin.
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 7_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test runs side by side start at different ports.
    let start = std::process::id() % COUNT;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < COUNT, "no free port left");
        let port = (FIRST + (start + n) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Topics and clients.

/// Topic names unique to one test.
#[derive(Debug, Clone)]
pub struct Topics {
    pub raw: String,
    pub processed: String,
    pub triggers: String,
    pub dlq: String,
    pub state: String,
    /// Created with the others; a service uses it when its config has `[epochs]`.
    pub epochs: String,
    pub group: String,
    pub bootstrap: String,
}

impl Topics {
    /// The test's topics, created on the shared broker.
    pub fn create(test: &str) -> Topics {
        let t = Topics::named(test, &bootstrap());
        t.make();
        t
    }

    /// Names for one test on the broker at `bootstrap`, not created yet.
    pub fn named(test: &str, bootstrap: &str) -> Topics {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!(
            "{test}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Topics {
            raw: format!("raw-{tag}"),
            processed: format!("processed-{tag}"),
            triggers: format!("triggers-{tag}"),
            dlq: format!("dlq-{tag}"),
            state: format!("state-{tag}"),
            epochs: format!("epochs-{tag}"),
            group: format!("group-{tag}"),
            bootstrap: bootstrap.to_string(),
        }
    }

    pub fn make(&self) {
        self.make_with_dlq(&[]);
    }

    /// Creates the topics, the dead-letter topic with these settings.
    pub fn make_with_dlq(&self, dlq: &[(&str, &str)]) {
        let t = self;
        let admin: AdminClient<DefaultClientContext> = client_at(&t.bootstrap).create().unwrap();
        let plain = [&t.raw, &t.processed, &t.triggers, &t.epochs];
        let mut new: Vec<NewTopic<'_>> = plain
            .iter()
            .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let mut dead = NewTopic::new(&t.dlq, PARTITIONS, TopicReplication::Fixed(1));
        for (k, v) in dlq {
            dead = dead.set(k, v);
        }
        new.push(dead);
        new.push(
            NewTopic::new(&t.state, PARTITIONS, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact"),
        );
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            futures::executor::block_on(admin.create_topics(&new, &opts)).expect("create topics");
        for r in results {
            r.expect("topic created");
        }
    }

    /// Points `cmd` (the binary) at the test's broker, topics and group.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("KAFKA_GROUP_ID", &self.group)
            .env("EEG_RAW_TOPIC", &self.raw)
            .env("EEG_PROCESSED_TOPIC", &self.processed)
            .env("EEG_TRIGGERS_TOPIC", &self.triggers)
            .env("EEG_DLQ_TOPIC", &self.dlq)
            .env("EEG_STATE_TOPIC", &self.state)
            .env("EEG_EPOCHS_TOPIC", &self.epochs);
    }
}

/// A client of the shared broker.
pub fn client() -> ClientConfig {
    client_at(&bootstrap())
}

pub fn client_at(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// Reads every partition of a topic from the start, outside any group's work, and keeps
/// everything it read across calls.
pub struct Reader {
    consumer: BaseConsumer,
    pub records: Vec<Record>,
}

impl Reader {
    pub fn new(bootstrap: &str, topic: &str) -> Reader {
        let consumer: BaseConsumer = client_at(bootstrap)
            .set("group.id", format!("reader-{topic}"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        Reader {
            consumer,
            records: Vec::new(),
        }
    }

    /// Reads until `done(records)` or `timeout`; true when done.
    pub fn until(&mut self, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.records) {
            if Instant::now() > deadline {
                return false;
            }
            // A broker that is down, or restarting, answers with errors for a while: keep
            // polling.
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value = h.value.unwrap_or_default();
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(value).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.records.push(Record {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
        true
    }
}

/// Reads every partition of `topic` on the shared broker from the start until
/// `done(records)` or `timeout`.
pub fn consume(topic: &str, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    consume_at(&bootstrap(), topic, timeout, done)
}

pub fn consume_at(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let mut reader = Reader::new(bootstrap, topic);
    reader.until(timeout, done);
    reader.records
}

/// The offsets the test's group committed on its raw topic, by partition (-1: none).
pub fn committed(t: &Topics) -> Vec<i64> {
    let consumer: BaseConsumer = client_at(&t.bootstrap)
        .set("group.id", &t.group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&t.raw, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (0..PARTITIONS)
        .map(|p| match c.find_partition(&t.raw, p).unwrap().offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// The end offset of each partition of `topic` on the shared broker.
pub fn end_offsets(topic: &str) -> Vec<i64> {
    end_offsets_at(&bootstrap(), topic)
}

pub fn end_offsets_at(bootstrap: &str, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = client_at(bootstrap).create().unwrap();
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The command line.

/// `eeg-pipeline COMMAND ARGS` against the test's topics, to its end; fails the test unless
/// it succeeded.
pub fn cli_ok(t: &Topics, command: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg(command).args(args);
    t.env(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `replay ARGS` to its end.
pub fn replay(t: &Topics, args: &[&str]) {
    let args: Vec<&str> = args.iter().copied().chain(["--quiet"]).collect();
    cli_ok(t, "replay", &args);
}

/// `replay ARGS` running in the background.
pub fn spawn_replay(t: &Topics, args: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("replay").args(args).arg("--quiet");
    t.env(&mut cmd);
    cmd.spawn().unwrap()
}

/// `process` output for `input`: the reference the service must match.
pub fn process_lines(input: &Path, extra: &[&str]) -> Vec<Vec<u8>> {
    let out = Command::new(BIN)
        .arg("process")
        .arg(input)
        .args(extra)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(out.status.success());
    lines(&out.stdout)
}

/// The trigger events `process --triggers` writes for `input`, one per line.
pub fn trigger_lines(input: &Path, t: &Topics) -> Vec<Vec<u8>> {
    let file = std::env::temp_dir().join(format!("{}-events.jsonl", t.group));
    process_lines(
        input,
        &["--out", "/dev/null", "--triggers", file.to_str().unwrap()],
    );
    lines(&std::fs::read(&file).unwrap())
}

/// The `eeg.epoch/1` records `process --epochs` writes for `input` with the config file
/// `config` (and `extra` arguments), one per line.
pub fn epoch_lines(input: &Path, t: &Topics, config: &Path, extra: &[&str]) -> Vec<Vec<u8>> {
    let file = std::env::temp_dir().join(format!("{}-epochs.jsonl", t.group));
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--out",
        "/dev/null",
        "--epochs",
        file.to_str().unwrap(),
    ];
    process_lines(input, &[&args[..], extra].concat());
    lines(&std::fs::read(&file).unwrap())
}

/// The non-empty lines of `text`.
pub fn lines(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

// ---------------------------------------------------------------------------------------
// The fixture and the records it gives.

/// The recording most tests stream: 698 s of one channel at 128 Hz, which `replay` cuts into
/// 2792 messages of 32 samples (and its four annotations into eeg.event/1 messages) and the
/// service into 695 windows.
pub fn fixture() -> PathBuf {
    root().join("fixtures/test_subsecond.edf")
}

/// The fixture's session id in what `process` makes of it: its file name.
pub const SESSION: &str = "test_subsecond";

/// `replay` of the fixture as session `session` at full speed, with `extra` arguments:
/// returns once every message is on the broker.
pub fn replay_fixture(t: &Topics, session: &str, extra: &[&str]) {
    let fixture = fixture();
    let args = [
        fixture.to_str().unwrap(),
        "--session-id",
        session,
        "--speed",
        "max",
    ];
    replay(t, &[&args[..], extra].concat());
}

/// What `process` computes from the fixture as session `session`: the records a service
/// publishes for it, in order.
pub fn fixture_records(session: &str) -> Vec<Vec<u8>> {
    process_lines(&fixture(), &["--session-id", session])
}

/// Batch `seq` of session `ok`: two channels of 64 samples at 256 Hz, 0.25 s, the same in
/// either encoding. Forty of them are 10 s of signal: windows 0 to 6.
pub fn ok_batch(seq: u64) -> eeg_schema::RawBatch {
    let parts = eeg_schema::RawBatchParts {
        session_id: "ok".into(),
        device_id: "d".into(),
        user_id: None,
        seq,
        start_ms: 1_700_000_000_000 + seq as i64 * 250,
        sample_rate_hz: 256.0,
        channels: vec!["A".into(), "B".into()],
        samples: (0..128)
            .map(|i| ((i % 64 + i / 64) as f64 * 0.3).sin() * 20.0)
            .collect(),
    };
    eeg_schema::RawBatch::new(parts, &eeg_schema::Limits::default()).unwrap()
}

/// Reads `t`'s processed topic until it holds `n` records (90 s at most).
pub fn published(t: &Topics, n: usize) -> Vec<Record> {
    consume_at(&t.bootstrap, &t.processed, Duration::from_secs(90), |r| {
        r.len() >= n
    })
}

/// Reads `t`'s processed topic until it holds `n` distinct windows (90 s at most): after a
/// crash or a rebalance some are published more than once.
pub fn published_windows(t: &Topics, n: usize) -> Vec<Record> {
    consume_at(&t.bootstrap, &t.processed, Duration::from_secs(90), |r| {
        r.iter()
            .map(|x| window_of(&x.payload))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= n
    })
}

/// A processed record's session and window index.
pub fn window_of(payload: &[u8]) -> (String, u64) {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
    let session = v["session_id"].as_str().unwrap().to_string();
    (session, v["window_index"].as_u64().unwrap())
}

pub fn window_index(payload: &[u8]) -> u64 {
    window_of(payload).1
}

/// Processed records by window index; every duplicate must be byte-identical.
pub fn by_window(records: &[Record]) -> BTreeMap<u64, Vec<u8>> {
    let mut out: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for r in records {
        let k = window_index(&r.payload);
        if let Some(prev) = out.get(&k) {
            assert_eq!(
                prev, &r.payload,
                "window {k} published twice with different content"
            );
        }
        out.insert(k, r.payload.clone());
    }
    out
}

/// A record's session: the session id it holds, which must be its key too.
fn session_of(r: &Record, what: &str) -> String {
    let (session, _) = window_of(&r.payload);
    assert_eq!(
        r.key.as_deref(),
        Some(session.as_bytes()),
        "the key of a record of {session}: {what}"
    );
    session
}

/// `got` is `want` exactly: every record once, each session's in order, keyed by its
/// session. `what` goes into a failure message (the service's log).
pub fn assert_records(got: &[Record], want: &[Vec<u8>], what: &str) {
    let mut got_by: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for r in got {
        got_by
            .entry(session_of(r, what))
            .or_default()
            .push(&r.payload);
    }
    let mut want_by: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for w in want {
        want_by.entry(window_of(w).0).or_default().push(w);
    }
    assert_eq!(got.len(), want.len(), "number of records: {what}");
    for (session, want) in &want_by {
        let got = got_by.get(session).cloned().unwrap_or_default();
        assert_eq!(
            got.len(),
            want.len(),
            "{session}: number of records: {what}"
        );
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                String::from_utf8_lossy(g),
                String::from_utf8_lossy(w),
                "{session}: record {i}: {what}"
            );
        }
    }
}

/// Every window of `want` is in `got`, and nothing else: each once or more (as after a
/// crash or a rebalance), every copy identical and keyed by its session.
pub fn assert_windows(got: &[Record], want: &[Vec<u8>], what: &str) {
    let mut windows: BTreeMap<(String, u64), &[u8]> = BTreeMap::new();
    for r in got {
        session_of(r, what);
        let key = window_of(&r.payload);
        if let Some(prev) = windows.insert(key.clone(), &r.payload) {
            assert_eq!(
                String::from_utf8_lossy(prev),
                String::from_utf8_lossy(&r.payload),
                "window {key:?} published twice with different content: {what}"
            );
        }
    }
    assert_eq!(windows.len(), want.len(), "number of windows: {what}");
    for w in want {
        let key = window_of(w);
        assert_eq!(
            windows.get(&key).map(|g| String::from_utf8_lossy(g)),
            Some(String::from_utf8_lossy(w)),
            "window {key:?}: {what}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The service.

/// A running service (`eeg-pipeline run`) on a test's topics, with its HTTP endpoints on a
/// port of its own; its log is kept in a file for the failure messages. Dropped while it
/// runs, it is killed.
pub struct Service {
    child: Child,
    log: PathBuf,
    /// The port of its HTTP endpoints (unless the test's `HTTP_ADDR` says otherwise).
    pub port: u16,
}

impl Service {
    pub fn start(t: &Topics, name: &str) -> Service {
        Service::start_with(t, name, &[], &[])
    }

    /// With more arguments and environment.
    pub fn start_with(t: &Topics, name: &str, args: &[&str], env: &[(&str, &str)]) -> Service {
        Service::spawn(t, name, args, env, Cap::None)
    }

    /// With its address space capped at `mib` MiB (`ulimit -v`): an allocation past the cap
    /// fails and the service aborts, as under a container's memory limit.
    pub fn start_capped(t: &Topics, name: &str, mib: u64) -> Service {
        Service::spawn(t, name, &[], &[], Cap::AddressSpace(mib))
    }

    /// In the memory cgroup `cgroup`: growing past its limit is an OOM kill, as in a
    /// container.
    pub fn start_in(
        cgroup: &MemoryCgroup,
        t: &Topics,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        Service::spawn(t, name, args, env, Cap::Cgroup(&cgroup.procs))
    }

    fn spawn(t: &Topics, name: &str, args: &[&str], env: &[(&str, &str)], cap: Cap<'_>) -> Service {
        let log = std::env::temp_dir().join(format!("{}-{name}.log", t.group));
        let port = free_port();
        let mut cmd = match cap {
            Cap::AddressSpace(mib) => {
                let mut sh = Command::new("sh");
                sh.args([
                    "-c",
                    &format!("ulimit -v {} && exec \"$0\" \"$@\"", mib * 1024),
                ])
                .arg(BIN);
                sh
            }
            Cap::Cgroup(procs) => {
                let mut sh = Command::new("sh");
                sh.args([
                    "-c",
                    &format!("echo $$ > '{}' && exec \"$0\" \"$@\"", procs.display()),
                ])
                .arg(BIN);
                sh
            }
            Cap::None => Command::new(BIN),
        };
        cmd.arg("run")
            // A killed member is noticed within seconds, not the default 45.
            .args(["--consumer-kafka", "session.timeout.ms=6000"])
            .args(["--consumer-kafka", "heartbeat.interval.ms=500"])
            .args(args)
            .env("RUST_LOG", "info")
            // Services run side by side: each gets its own health port.
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            // The assertions read text lines; JSON logs have a test of their own.
            .env("LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // Redis only where a test asks for it, whatever the developer's shell holds.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REDIS_") {
                cmd.env_remove(k);
            }
        }
        t.env(&mut cmd);
        cmd.envs(env.iter().copied());
        Service {
            child: cmd.spawn().unwrap(),
            log,
            port,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `done()`, checked every 100 ms for `secs` seconds at most, else fails
    /// with the log.
    pub fn wait_until(&self, secs: u64, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done() {
            assert!(Instant::now() < deadline, "{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the log says `needle` (`secs` seconds at most).
    pub fn wait_for_log(&self, needle: &str, secs: u64) {
        self.wait_until(secs, || self.log().contains(needle));
    }

    /// Waits (20 s at most) until `/health/ready` answers 200.
    pub fn wait_ready(&self) {
        self.wait_until(20, || {
            http_get(self.port, "/health/ready").map(|r| r.0) == Some(200)
        });
    }

    /// Waits (15 s at most) until `/health/ready` answers 503 with a body containing
    /// `needle`; returns the body.
    pub fn not_ready_because(&self, needle: &str) -> String {
        let mut reason = String::new();
        self.wait_until(15, || match http_get(self.port, "/health/ready") {
            Some((503, body)) if body.contains(needle) => {
                reason = body;
                true
            }
            _ => false,
        });
        reason
    }

    /// Waits (`secs` seconds at most) until the service exits by itself; its exit status and
    /// log.
    pub fn exit_within(mut self, secs: u64) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status (within the shutdown timeout and some slack).
    pub fn stop(self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.exit_within(30)
    }

    /// SIGTERM, asserting a clean exit; the log.
    pub fn stop_cleanly(self) -> String {
        let (status, log) = self.stop();
        assert!(status.success(), "exit {status}:\n{log}");
        log
    }

    /// SIGKILL, as a crash.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// What bounds a test service's memory.
enum Cap<'a> {
    None,
    /// `ulimit -v`, MiB.
    AddressSpace(u64),
    /// The `cgroup.procs` file of a memory cgroup.
    Cgroup(&'a Path),
}

/// A memory cgroup of a test's own (cgroup v1's memory controller, else cgroup v2), with a
/// limit: the kernel reclaims, then kills (an OOM kill, counted) what grows past it, as in a
/// container. Needs root, as writing cgroups does; removed when dropped.
pub struct MemoryCgroup {
    dir: PathBuf,
    procs: PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    pub fn new(name: &str, limit_mib: u64) -> MemoryCgroup {
        let bytes = (limit_mib << 20).to_string();
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let (dir, v2) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(name), false)
        } else {
            (Path::new("/sys/fs/cgroup").join(name), true)
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "this test needs a memory cgroup of its own and cannot make {}: {e} (run as root on a machine with cgroups)",
                dir.display()
            )
        });
        let limit = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(dir.join(limit), &bytes)
            .unwrap_or_else(|e| panic!("cannot set {}: {e}", dir.join(limit).display()));
        if v2 {
            // No swap: past the limit is a kill, not a slow crawl.
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        } else {
            let _ = std::fs::write(dir.join("memory.swappiness"), "0");
        }
        MemoryCgroup {
            procs: dir.join("cgroup.procs"),
            dir,
            v2,
        }
    }

    /// Processes of the cgroup the kernel killed for memory.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The most memory the cgroup held, bytes.
    pub fn peak_bytes(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once its processes are gone, which may take a moment after a kill.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Gone already unless the test failed while it ran.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.0: status code and body; `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
    Some((code, body))
}

/// `/health` as JSON (null until the endpoint answers).
pub fn health_detail(port: u16) -> serde_json::Value {
    http_get(port, "/health").map_or(serde_json::Value::Null, |(_, body)| {
        serde_json::from_str(&body).unwrap()
    })
}
