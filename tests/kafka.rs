//! The service against a real Kafka-protocol broker: `KAFKA_BOOTSTRAP_SERVERS` when set
//! (any Kafka-compatible broker), otherwise the local tansu broker that `scripts/broker`
//! starts. Every test uses its own topics and consumer group, so tests run in parallel and
//! against a shared broker.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sha2::Digest;

#[path = "kafka/chaos.rs"]
mod chaos;
#[path = "kafka/protobuf.rs"]
mod protobuf;
#[path = "kafka/redis.rs"]
mod redis_cache;

const BIN: &str = env!("CARGO_BIN_EXE_eeg-pipeline");
const PARTITIONS: i32 = 3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The broker's address; starts the local one when none is given.
fn bootstrap() -> String {
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

/// Topic names unique to one test.
#[derive(Debug, Clone)]
struct Topics {
    raw: String,
    processed: String,
    triggers: String,
    dlq: String,
    state: String,
    group: String,
    bootstrap: String,
}

impl Topics {
    fn create(test: &str) -> Topics {
        let t = Topics::named(test, &bootstrap());
        t.make();
        t
    }

    /// Names for one test on the broker at `bootstrap`, not created yet.
    fn named(test: &str, bootstrap: &str) -> Topics {
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
            group: format!("group-{tag}"),
            bootstrap: bootstrap.to_string(),
        }
    }

    fn make(&self) {
        self.make_with_dlq(&[]);
    }

    /// Creates the topics, the dead-letter topic with these settings.
    fn make_with_dlq(&self, dlq: &[(&str, &str)]) {
        let t = self;
        let admin: AdminClient<DefaultClientContext> = client_at(&t.bootstrap).create().unwrap();
        let plain = [&t.raw, &t.processed, &t.triggers];
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

    fn env(&self, cmd: &mut Command) {
        cmd.env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("KAFKA_GROUP_ID", &self.group)
            .env("EEG_RAW_TOPIC", &self.raw)
            .env("EEG_PROCESSED_TOPIC", &self.processed)
            .env("EEG_TRIGGERS_TOPIC", &self.triggers)
            .env("EEG_DLQ_TOPIC", &self.dlq)
            .env("EEG_STATE_TOPIC", &self.state);
    }
}

fn client() -> ClientConfig {
    client_at(&bootstrap())
}

fn client_at(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// `replay ARGS` running in the background.
fn spawn_replay(t: &Topics, args: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("replay").args(args).arg("--quiet");
    t.env(&mut cmd);
    cmd.spawn().unwrap()
}

/// The trigger events `process --triggers` writes for `input`, one per line.
fn trigger_lines(input: &Path, t: &Topics) -> Vec<Vec<u8>> {
    let file = std::env::temp_dir().join(format!("{}-events.jsonl", t.group));
    process_lines(
        input,
        &["--out", "/dev/null", "--triggers", file.to_str().unwrap()],
    );
    std::fs::read(&file)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// `eeg-pipeline COMMAND ARGS` against the test's topics, to its end; fails the test unless
/// it succeeded.
fn cli_ok(t: &Topics, command: &str, args: &[&str]) -> std::process::Output {
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

fn replay(t: &Topics, args: &[&str]) {
    let args: Vec<&str> = args.iter().copied().chain(["--quiet"]).collect();
    cli_ok(t, "replay", &args);
}

/// A running service; its log is kept in a file for the failure message.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(t: &Topics, name: &str) -> Service {
        Service::start_with(t, name, &[], &[])
    }

    fn start_with(t: &Topics, name: &str, args: &[&str], env: &[(&str, &str)]) -> Service {
        let log = std::env::temp_dir().join(format!("{}-{name}.log", t.group));
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            // A killed member is noticed within seconds, not the default 45.
            .args(["--consumer-kafka", "session.timeout.ms=6000"])
            .args(["--consumer-kafka", "heartbeat.interval.ms=500"])
            .args(args)
            .env("RUST_LOG", "info")
            // Services run side by side: each gets its own health port.
            .env("HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
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
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (within the shutdown timeout and some slack).
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
struct Record {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
}

/// Reads every partition of `topic` from the start until `done(records)` or `timeout`.
fn consume(topic: &str, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    consume_at(&bootstrap(), topic, timeout, done)
}

fn consume_at(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer = reader_at(bootstrap, topic);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while Instant::now() < deadline && !done(&out) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    out
}

/// A consumer of every partition of `topic` from its start, outside any group's work.
fn reader_at(bootstrap: &str, topic: &str) -> BaseConsumer {
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
    consumer
}

/// `process` output for `input`: the reference the service must match.
fn process_lines(input: &Path, extra: &[&str]) -> Vec<Vec<u8>> {
    let out = Command::new(BIN)
        .arg("process")
        .arg(input)
        .args(extra)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn window_index(payload: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
    v["window_index"].as_u64().unwrap()
}

/// Processed records by window index; every duplicate must be byte-identical.
fn by_window(records: &[Record]) -> BTreeMap<u64, Vec<u8>> {
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

fn committed(t: &Topics) -> Vec<i64> {
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

fn end_offsets(topic: &str) -> Vec<i64> {
    end_offsets_at(&bootstrap(), topic)
}

fn end_offsets_at(bootstrap: &str, topic: &str) -> Vec<i64> {
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

#[test]
fn a_file_replayed_twice_is_two_sessions_and_both_are_published() {
    let t = Topics::create("twice");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = cli_ok(
            &t,
            "replay",
            &[fixture.to_str().unwrap(), "--speed", "max", "--quiet"],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        // "FILE: session ID", said at start.
        let id = err
            .lines()
            .find_map(|l| l.split(": session ").nth(1))
            .unwrap_or_else(|| panic!("no session id said: {err}"))
            .to_string();
        assert!(id.starts_with("test_subsecond-"), "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    let service = Service::start(&t, "a");
    let want: Vec<Vec<Vec<u8>>> = ids
        .iter()
        .map(|id| process_lines(&fixture, &["--session-id", id]))
        .collect();
    let total: usize = want.iter().map(Vec::len).sum();
    let got = consume(&t.processed, Duration::from_secs(60), |r| r.len() >= total);
    let (status, log) = service.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    for (id, want) in ids.iter().zip(&want) {
        let mine: Vec<&[u8]> = got
            .iter()
            .filter(|r| r.key.as_deref() == Some(id.as_bytes()))
            .map(|r| &r.payload[..])
            .collect();
        assert_eq!(mine.len(), want.len(), "{id}: {log}");
        assert!(mine.iter().zip(want).all(|(g, w)| g == w), "{id}");
    }
}

#[test]
fn a_recording_replayed_again_under_its_session_id_is_said_once_in_the_log() {
    let t = Topics::create("again");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let args = [
        fixture.to_str().unwrap(),
        "--session-id",
        "same",
        "--speed",
        "max",
    ];
    replay(&t, &args);
    replay(&t, &args);
    let per_run = 89344usize.div_ceil(32);
    let service = Service::start(&t, "a");
    let want = process_lines(&fixture, &["--session-id", "same"]);
    let got = consume(&t.processed, Duration::from_secs(60), |r| {
        r.len() >= want.len()
    });
    // Everything is consumed (the second run is all duplicates) before the service stops.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !service.log().contains(&format!(
        "{} batches sent again",
        10usize.pow(per_run.ilog10())
    )) {
        assert!(Instant::now() < deadline, "{}", service.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, log) = service.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(
        got.len(),
        want.len(),
        "the second run publishes nothing: {log}"
    );
    let said: Vec<&str> = log.lines().filter(|l| l.contains("'same'")).collect();
    assert!(
        said[0].contains("session 'same' sent seq 0 again (it expects seq 2792 next)")
            && said[0].contains("give the replay a new one"),
        "{said:?}"
    );
    // Then at the 10th, 100th and 1000th only.
    assert_eq!(said.len(), 4, "{said:?}");
}

/// `tail ARGS` against the test's topics, to its end; returns its standard output.
fn tail(t: &Topics, args: &[&str]) -> String {
    String::from_utf8(cli_ok(t, "tail", args).stdout).unwrap()
}

#[test]
fn tail_prints_what_the_service_publishes_and_never_joins_its_group() {
    let t = Topics::create("tail");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let f = fixture.to_str().unwrap();
    let producer: BaseProducer = client().create().unwrap();
    producer
        .send(BaseRecord::to(&t.raw).key("junk").payload("not json"))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    for id in ["tail-a", "tail-b"] {
        replay(&t, &[f, "--session-id", id, "--speed", "max"]);
    }
    let want = process_lines(&fixture, &["--session-id", "tail-a"]);
    let service = Service::start(&t, "a");
    consume(&t.processed, Duration::from_secs(60), |r| {
        r.len() >= 2 * want.len()
    });
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    let committed_before = committed(&t);

    // Everything of session tail-a that is on the broker.
    let session_a = |format: &[&str]| {
        let from_start = [
            "--from-beginning",
            "--session",
            "tail-a",
            "--idle-exit",
            "3",
        ];
        tail(&t, &[&from_start[..], format].concat())
    };
    // One session's records, byte for byte what process computes.
    let jsonl = session_a(&["--format", "jsonl"]);
    let lines: Vec<&[u8]> = jsonl.lines().map(str::as_bytes).collect();
    assert_eq!(lines.len(), want.len());
    assert!(lines.iter().zip(&want).all(|(g, w)| g == w));

    // A person's view: one line per window, in order, with each channel's summary.
    let table = session_a(&["--format", "table"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), want.len());
    for (i, (row, w)) in rows.iter().zip(&want).enumerate() {
        let v: serde_json::Value = serde_json::from_slice(w).unwrap();
        assert!(row.contains(&format!("  tail-a  w{i}")), "{row}");
        let c = &v["channels"][0];
        let alpha = c["relative_power"]["alpha"].as_f64().unwrap();
        assert!(row.contains("| Fp1 "), "{row}");
        assert!(row.contains(&format!(" a={alpha:.2} ")), "{row} vs {alpha}");
        let word = if c["quality"]["good"] == true {
            " ok"
        } else {
            ""
        };
        assert!(row.ends_with(word), "{row}");
    }

    // In envelopes: the same records, each with where and when it was written and read.
    let before_tail = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let enveloped = session_a(&["--format", "jsonl", "--envelope"]);
    let entries: Vec<serde_json::Value> = enveloped
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), want.len());
    let mut offsets = BTreeSet::new();
    for (e, w) in entries.iter().zip(&want) {
        let value: serde_json::Value = serde_json::from_slice(w).unwrap();
        assert_eq!(e["value"], value);
        assert_eq!(e["key"], "tail-a");
        let (written, read) = (
            e["timestamp_ms"].as_i64().unwrap(),
            e["received_ms"].as_i64().unwrap(),
        );
        assert!(written <= before_tail && before_tail <= read, "{e}");
        assert!(offsets.insert((
            e["partition"].as_i64().unwrap(),
            e["offset"].as_i64().unwrap()
        )));
    }
    // The poison on the raw topic is not JSON: it comes as text.
    let raw = tail(
        &t,
        &[
            "--from-beginning",
            "--topic",
            "raw",
            "--session",
            "junk",
            "--idle-exit",
            "3",
            "--format",
            "jsonl",
            "--envelope",
        ],
    );
    let junk: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    assert_eq!(junk["value_text"], "not json", "{raw}");

    // --max stops early, and both sessions are there without --session.
    let some = tail(&t, &["--from-beginning", "--max", "7", "--format", "jsonl"]);
    assert_eq!(some.lines().count(), 7);

    // Trigger events, and the dead letter with its reason.
    let events = tail(
        &t,
        &[
            "--from-beginning",
            "--topic",
            "triggers",
            "--session",
            "tail-b",
            "--idle-exit",
            "3",
            "--format",
            "table",
        ],
    );
    assert!(!events.is_empty());
    assert!(
        events.lines().all(|l| l.contains("tail-b  TRIGGER ")),
        "{events}"
    );
    let dead = tail(
        &t,
        &[
            "--from-beginning",
            "--topic",
            "dlq",
            "--idle-exit",
            "3",
            "--format",
            "table",
        ],
    );
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(
        dead.contains(&format!("{}/", t.raw)) && dead.contains("key junk: "),
        "{dead}"
    );
    let raw = tail(
        &t,
        &[
            "--from-beginning",
            "--topic",
            "raw",
            "--session",
            "tail-b",
            "--max",
            "1",
            "--format",
            "table",
        ],
    );
    assert!(
        raw.contains("tail-b  seq 0: 1 channels x 32 samples at 128.0 Hz"),
        "{raw}"
    );

    // Reading moved none of the group's offsets: tail commits nothing.
    assert_eq!(committed(&t), committed_before);

    // Live: new messages only, as they arrive.
    let mut cmd = Command::new(BIN);
    cmd.args([
        "tail",
        "--session",
        "tail-c",
        "--idle-exit",
        "20",
        "--max",
        "3",
        "--format",
        "jsonl",
    ])
    .stdout(Stdio::piped());
    t.env(&mut cmd);
    let live = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let service = Service::start(&t, "b");
    replay(&t, &[f, "--session-id", "tail-c", "--speed", "max"]);
    let out = live.wait_with_output().unwrap();
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    let got: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let indices: Vec<u64> = got
        .iter()
        .map(|v| v["window_index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2]);
    assert!(got.iter().all(|v| v["session_id"] == "tail-c"));
}

#[test]
fn the_service_publishes_what_process_computes_and_commits_everything() {
    let t = Topics::create("same");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let want = process_lines(&fixture, &[]);
    assert!(want.len() > 600);
    replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
        ],
    );

    let service = Service::start(&t, "a");
    let got = consume(&t.processed, Duration::from_secs(60), |r| {
        r.len() >= want.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    let (status, log) = service.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(got.len(), want.len(), "{log}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.key.as_deref(), Some(&b"test_subsecond"[..]));
        assert_eq!(
            String::from_utf8_lossy(&g.payload),
            String::from_utf8_lossy(w),
            "record {i}"
        );
    }
    // The same trigger events as `process --triggers`, keyed by session.
    let want_events: Vec<Vec<u8>> = trigger_lines(&fixture, &t).into_iter().collect();
    assert!(!want_events.is_empty());
    let events = consume(&t.triggers, Duration::from_secs(10), |r| {
        r.len() >= want_events.len()
    });
    let got_events: Vec<Vec<u8>> = events.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(got_events, want_events);
    assert!(
        events
            .iter()
            .all(|r| r.key.as_deref() == Some(&b"test_subsecond"[..]))
    );

    // Stopping committed up to the messages the next window still needs, with the
    // session's snapshot: a restart restores it and publishes nothing new.
    let again = Service::start(&t, "b");
    std::thread::sleep(Duration::from_secs(5));
    let (status, log) = again.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(log.contains("1 session(s) restored"), "{log}");
    let after = consume(&t.processed, Duration::from_secs(5), |r| {
        r.len() > want.len()
    });
    assert_eq!(after.len(), want.len(), "{log}");
}

#[test]
fn a_killed_service_is_replaced_without_losing_or_changing_a_window() {
    let t = Topics::create("crash");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let want = process_lines(&fixture, &[]);
    let first = Service::start(&t, "first");
    // 698 s of signal in about 7 s, so the kill lands mid-stream.
    let player = spawn_replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "100",
        ],
    );
    let seen = consume(&t.processed, Duration::from_secs(30), |r| r.len() >= 150);
    assert!(seen.len() >= 150, "{}", first.log());
    // A snapshot is written once everything before it is acknowledged: wait for one, so
    // that the second service has one to restore however slow the machine is.
    let snapshots = consume(&t.state, Duration::from_secs(30), |r| !r.is_empty());
    assert!(!snapshots.is_empty(), "{}", first.log());
    first.kill();
    let second = Service::start(&t, "second");
    let got = consume(&t.processed, Duration::from_secs(90), |r| {
        by_window(r).len() >= want.len()
    });
    let mut player = player;
    assert!(player.wait().unwrap().success());
    let (status, log) = second.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    let windows = by_window(&got);
    assert_eq!(windows.len(), want.len(), "{log}");
    for (k, w) in windows.values().zip(&want) {
        assert_eq!(String::from_utf8_lossy(k), String::from_utf8_lossy(w));
    }
    assert!(
        log.contains("session(s) restored"),
        "the second service restored the session from its snapshot:\n{log}"
    );
    // Trigger events too: each one once or more, every copy identical, none missing.
    let want_events: std::collections::BTreeSet<Vec<u8>> =
        trigger_lines(&fixture, &t).into_iter().collect();
    let got_events: std::collections::BTreeSet<Vec<u8>> =
        consume(&t.triggers, Duration::from_secs(10), |r| {
            r.iter()
                .map(|x| &x.payload)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= want_events.len()
        })
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(got_events, want_events);
}

#[test]
fn poison_messages_go_to_the_dead_letter_topic_byte_for_byte() {
    let t = Topics::create("dlq");
    let producer: BaseProducer = client().create().unwrap();
    let valid = |seq: u64| {
        let rows: Vec<Vec<f64>> = (0..2)
            .map(|c| {
                (0..64)
                    .map(|i| ((i + c) as f64 * 0.3).sin() * 20.0)
                    .collect()
            })
            .collect();
        serde_json::json!({
            "schema": "eeg.raw/1", "session_id": "ok", "device_id": "d", "seq": seq,
            "start_ms": 1_700_000_000_000i64 + seq as i64 * 250, "sample_rate_hz": 256.0,
            "channels": ["A", "B"], "samples": rows,
        })
        .to_string()
        .into_bytes()
    };
    let poison: Vec<(&str, Vec<u8>, &str)> = vec![
        ("junk", b"\xff\xfe not json".to_vec(), "JSON"),
        (
            "ok",
            br#"{"schema":"eeg.raw/1","session_id":"ok","device_id":"d","seq":1,"start_ms":0,"sample_rate_hz":256.0,"channels":["A","B"],"samples":[[1.0],[2.0,3.0]]}"#.to_vec(),
            "samples",
        ),
        (
            "slow",
            br#"{"schema":"eeg.raw/1","session_id":"slow","device_id":"d","seq":0,"start_ms":0,"sample_rate_hz":60.0,"channels":["A"],"samples":[[1.0]]}"#.to_vec(),
            "session 'slow'",
        ),
    ];
    // Valid batches before and after the poison: the stream goes on past it.
    let mut sends: Vec<(String, Vec<u8>)> = (0..20).map(|s| ("ok".to_string(), valid(s))).collect();
    for (k, p, _) in &poison {
        sends.push((k.to_string(), p.clone()));
    }
    sends.extend((20..40).map(|s| ("ok".to_string(), valid(s))));
    for (k, p) in &sends {
        producer
            .send(BaseRecord::to(&t.raw).key(k.as_str()).payload(&p[..]))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let service = Service::start(&t, "dlq");
    let dead = consume(&t.dlq, Duration::from_secs(60), |r| r.len() >= poison.len());
    // 40 batches of 0.25 s = 10 s of signal: windows 0..=6.
    let processed = consume(&t.processed, Duration::from_secs(30), |r| r.len() >= 7);
    std::thread::sleep(Duration::from_secs(2));
    let (status, log) = service.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(dead.len(), poison.len(), "{log}");
    for (k, p, reason) in &poison {
        let d = dead
            .iter()
            .find(|d| &d.payload == p)
            .unwrap_or_else(|| panic!("poison with key {k} not in the dead-letter topic"));
        assert_eq!(d.key.as_deref(), Some(k.as_bytes()));
        assert!(
            d.headers["error"].contains(reason),
            "error header '{}' names {reason}",
            d.headers["error"]
        );
        assert_eq!(d.headers["source.topic"], t.raw);
        let partition: i32 = d.headers["source.partition"].parse().unwrap();
        let offset: i64 = d.headers["source.offset"].parse().unwrap();
        assert!((0..PARTITIONS).contains(&partition) && offset >= 0);
    }
    assert_eq!(by_window(&processed).len(), 7, "{log}");
    // Dead letters count as done; the session's partition is committed up to the batch
    // holding the first sample of its next window (window 7 starts at 7 s = batch 28, at
    // offset 29 behind the poison batch of the same key).
    let ends = end_offsets(&t.raw);
    let want: Vec<i64> = ends.iter().map(|&e| if e == 41 { 29 } else { e }).collect();
    assert!(ends.contains(&41));
    assert_eq!(committed(&t), want, "{log}");
}

#[test]
fn partitions_moving_between_instances_lose_and_change_nothing() {
    let t = Topics::create("rebalance");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let base = process_lines(&fixture, &[]);
    const COPIES: usize = 4;
    // Copy i of the recording is session `test_subsecond-i`, with the same numbers.
    let want: Vec<Vec<Vec<u8>>> = (1..=COPIES)
        .map(|i| {
            base.iter()
                .map(|l| {
                    String::from_utf8(l.clone())
                        .unwrap()
                        .replacen(
                            "\"session_id\":\"test_subsecond\"",
                            &format!("\"session_id\":\"test_subsecond-{i}\""),
                            1,
                        )
                        .into_bytes()
                })
                .collect()
        })
        .collect();
    let a = Service::start(&t, "a");
    let copies = COPIES.to_string();
    let player = spawn_replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "60",
            "--sessions",
            &copies,
        ],
    );
    let total = COPIES * base.len();
    consume(&t.processed, Duration::from_secs(30), |r| {
        r.len() >= total / 5
    });
    // A second instance joins: some partitions move to it while data flows.
    let b = Service::start(&t, "b");
    consume(&t.processed, Duration::from_secs(30), |r| {
        r.len() >= total / 2
    });
    // The first one leaves: its partitions move to the second.
    let (status_a, log_a) = a.stop();
    assert!(status_a.success(), "exit {status_a}:\n{log_a}");
    let distinct = |r: &[Record]| {
        r.iter()
            .map(|x| (x.key.clone(), window_index(&x.payload)))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let got = consume(&t.processed, Duration::from_secs(90), |r| {
        distinct(r) >= total
    });
    let mut player = player;
    assert!(player.wait().unwrap().success());
    let (status_b, log_b) = b.stop();
    assert!(status_b.success(), "exit {status_b}:\n{log_b}");
    // The second instance carried on sessions the first had started, from their snapshots.
    assert!(log_b.contains("session(s) restored"), "{log_b}");
    for (i, want) in want.iter().enumerate() {
        let key = format!("test_subsecond-{}", i + 1);
        let mine: Vec<Record> = got
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .cloned()
            .collect();
        let windows = by_window(&mine);
        assert_eq!(windows.len(), want.len(), "{key}:\n{log_a}\n{log_b}");
        for (g, w) in windows.values().zip(want) {
            assert_eq!(
                String::from_utf8_lossy(g),
                String::from_utf8_lossy(w),
                "{key}"
            );
        }
    }
}

#[test]
fn poison_of_any_size_is_dead_lettered_cut_and_no_instance_exits() {
    // On a broker of its own that keeps data in memory: tansu's sqlite engine (the shared
    // broker's) does not serve a record of 6 MB or more to any consumer, its memory engine
    // serves them all.
    let port = free_port();
    let mut broker = memory_broker(port);
    let t = Topics::named("big", &format!("127.0.0.1:{port}"));
    t.make();
    // The upstream producer may send what the broker takes. Just over the producer's limit
    // of 1,000,000 bytes, then 2, 8 and 20 MB (the last two over the 4 MiB limit of
    // eeg.raw/1, so they are refused before they are parsed).
    let producer: BaseProducer = client_at(&t.bootstrap)
        .set("message.max.bytes", "30000000")
        .create()
        .unwrap();
    let sizes = [1_000_500usize, 2_000_000, 8_000_000, 20_000_000];
    let mut bodies = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        // Not eeg.raw/1: a dead letter.
        let mut body = format!("{{\"schema\": \"eeg.raw/1\", \"pad{k}\": \"").into_bytes();
        body.resize(size, b'a' + k as u8);
        producer
            .send(
                BaseRecord::to(&t.raw)
                    .partition(k as i32 % PARTITIONS)
                    .key(format!("big-{k}").as_str())
                    .payload(&body[..]),
            )
            .unwrap();
        bodies.push(body);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    drop(producer);
    // A group of three, one partition each.
    let services: Vec<Service> = ["x", "y", "z"]
        .iter()
        .map(|n| Service::start(&t, n))
        .collect();
    let dead = consume_at(&t.bootstrap, &t.dlq, Duration::from_secs(90), |r| {
        r.len() >= sizes.len()
    });
    assert_eq!(dead.len(), sizes.len());
    for (k, body) in bodies.iter().enumerate() {
        let d = dead
            .iter()
            .find(|d| d.key.as_deref() == Some(format!("big-{k}").as_bytes()))
            .unwrap_or_else(|| panic!("message of {} bytes not dead-lettered", body.len()));
        assert_eq!(d.headers["truncated"], "true");
        assert_eq!(d.headers["original.length"], body.len().to_string());
        let sha256: String = sha2::Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(d.headers["original.sha256"], sha256);
        assert!(
            d.headers["error"].contains("cut to its first"),
            "{:?}",
            d.headers
        );
        assert!(!d.payload.is_empty() && d.payload.len() < 1_000_000);
        assert!(body.starts_with(&d.payload), "the copy is a prefix");
        assert_eq!(d.headers["source.topic"], t.raw);
    }
    // Every instance is still there and stops cleanly, with the dead letters committed.
    for s in services {
        let (status, log) = s.stop();
        assert!(status.success(), "exit {status}:\n{log}");
    }
    assert_eq!(committed(&t), end_offsets_at(&t.bootstrap, &t.raw));
    broker.kill().unwrap();
    broker.wait().unwrap();
}

#[test]
fn dead_letters_fit_the_dead_letter_topic_when_it_takes_less_than_the_producer() {
    let t = Topics::named("small-dlq", &bootstrap());
    t.make_with_dlq(&[("max.message.bytes", "300000")]);
    // 500 KB: the producer (1,000,000 bytes) would take the copy, the topic would not.
    let body = vec![b'x'; 500_000];
    let producer: BaseProducer = client().create().unwrap();
    producer
        .send(BaseRecord::to(&t.raw).key("big").payload(&body[..]))
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let service = Service::start(&t, "small-dlq");
    let dead = consume(&t.dlq, Duration::from_secs(60), |r| !r.is_empty());
    let (status, log) = service.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(dead.len(), 1, "{log}");
    let d = &dead[0];
    assert!(d.payload.len() < 300_000 && body.starts_with(&d.payload));
    assert_eq!(d.headers["truncated"], "true");
    assert_eq!(d.headers["original.length"], "500000");
    assert!(log.contains("outputs kept under 300000 bytes"), "{log}");
}

#[test]
fn output_that_cannot_be_delivered_stops_the_service_without_committing_past_it() {
    let t = Topics::create("lost");
    let fixture = root().join("fixtures/test_subsecond.edf");
    replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
        ],
    );
    // The consumer reads from the broker; the producer can never reach it (nothing listens
    // on port 1), so every output times out after 3 s, as when a broker is gone.
    let log = std::env::temp_dir().join(format!("{}-lost.log", t.group));
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--kafka", "message.timeout.ms=3000"])
        .args(["--producer-kafka", "bootstrap.servers=127.0.0.1:1"])
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .env("HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    t.env(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = read_log();
    assert_eq!(status.code(), Some(1), "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: output lost: delivery to ")
            && (last.contains(&t.processed) || last.contains(&t.state)),
        "{log}"
    );
    // One error line of the service's for the loss, not one per record (librdkafka's own
    // lines about the unreachable broker aside).
    let ours = log
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("librdkafka"))
        .count();
    assert_eq!(ours, 1, "{log}");
    // The first window completes with message 15 (32-sample messages, 512-sample window):
    // no offset past it may be committed, since its output is lost.
    for c in committed(&t) {
        assert!(c <= 15, "committed {c}:\n{log}");
    }
}

#[test]
fn topics_are_an_admin_step_the_service_waits_for() {
    let t = Topics::create("admin");
    // A second set of names that exists nowhere yet.
    let mut fresh = t.clone();
    for name in [
        &mut fresh.raw,
        &mut fresh.processed,
        &mut fresh.triggers,
        &mut fresh.dlq,
        &mut fresh.state,
    ] {
        name.push_str("-new");
    }
    let topics = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("topics").args(args);
        fresh.env(&mut cmd);
        cmd.output().unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let check = topics(&["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(text(&check).contains(&format!("missing topics: {}", fresh.raw)));
    assert!(text(&check).contains("eeg-pipeline topics create"));

    // The service waits, saying why, instead of failing or creating anything.
    let service = Service::start(&fresh, "admin");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !service.log().contains("missing topics") {
        assert!(Instant::now() < deadline, "{}", service.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(service.log().contains(&fresh.state), "{}", service.log());

    let create = topics(&["create", "--partitions", "3"]);
    assert!(create.status.success(), "{}", text(&create));
    let out = text(&create);
    for name in [
        &fresh.raw,
        &fresh.processed,
        &fresh.triggers,
        &fresh.dlq,
        &fresh.state,
    ] {
        assert!(
            out.contains(&format!("created {name} (3 partitions)")),
            "{out}"
        );
    }
    // Idempotent.
    let again = topics(&["create"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains(&format!("exists  {} (3 partitions)", fresh.raw)));
    let check = topics(&["check"]);
    assert!(check.status.success(), "{}", text(&check));

    // The waiting service starts by itself and processes.
    let fixture = root().join("fixtures/test_subsecond.edf");
    replay(
        &fresh,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
        ],
    );
    let got = consume(&fresh.processed, Duration::from_secs(60), |r| r.len() >= 10);
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    assert!(got.len() >= 10, "{log}");
    assert!(log.contains("topics present; starting"), "{log}");
}

#[test]
fn topic_commands_name_an_unreachable_broker() {
    let o = Command::new(BIN)
        .args(["topics", "check", "--timeout-s", "2"])
        .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: cannot reach Kafka at 127.0.0.1:1")),
        "{err}"
    );
}

#[test]
fn a_tiny_partition_queue_loses_nothing() {
    let t = Topics::create("tiny-queue");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let want = process_lines(&fixture, &[]);
    replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
        ],
    );
    // librdkafka fetches ahead 8 messages or 64 KiB for the partition, then waits for its
    // worker: the backlog of 2792 messages is fetched over and over in small pieces.
    let service = Service::start_with(
        &t,
        "tiny-queue",
        &["--partition-queue", "8", "--partition-buffer-kib", "64"],
        &[],
    );
    let got = consume(&t.processed, Duration::from_secs(60), |r| {
        r.len() >= want.len()
    });
    let (status, log) = service.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(got.len(), want.len(), "{log}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g.payload == *w, "record {i} differs:\n{log}");
    }
    assert!(log.contains("session_resets=0"), "{log}");
}

#[test]
fn idle_sessions_are_evicted_and_their_snapshot_deleted() {
    let t = Topics::create("idle");
    let fixture = root().join("fixtures/test_subsecond.edf");
    replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
        ],
    );
    let service = Service::start_with(
        &t,
        "idle",
        &["--session-idle-s", "2", "--status-interval-s", "1"],
        &[],
    );
    let want = process_lines(&fixture, &[]).len();
    consume(&t.processed, Duration::from_secs(60), |r| r.len() >= want);
    // Time is the messages' own: the session is idle once a message of its partition comes
    // more than 2 s after its last one. A message that is not eeg.raw/1 will do (it is
    // dead-lettered and starts no session).
    std::thread::sleep(Duration::from_millis(2500));
    let partition = end_offsets(&t.raw)
        .iter()
        .position(|&e| e > 0)
        .expect("the session's partition") as i32;
    let producer: BaseProducer = client().create().unwrap();
    producer
        .send(
            BaseRecord::to(&t.raw)
                .partition(partition)
                .key("later")
                .payload("not eeg.raw/1"),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    // The session's last snapshot, then its tombstone.
    let state = consume(&t.state, Duration::from_secs(20), |r| {
        r.last().is_some_and(|x| x.payload.is_empty())
    });
    let (status, log) = service.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(log.contains("sessions_evicted=1"), "{log}");
    // While the session lived, its state was reported (a 1-channel, 4 s window at 128 Hz
    // holds at least 512 samples); after eviction nothing is held.
    let memory: Vec<u64> = log
        .lines()
        .filter(|l| l.contains(" status") || l.contains(" totals"))
        .filter_map(|l| l.split("session_state_bytes=").nth(1))
        .map(|v| v.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(memory.iter().any(|&b| b >= 512 * 8), "{log}");
    assert_eq!(memory.last(), Some(&0), "{log}");
    let mine: Vec<&Record> = state
        .iter()
        .filter(|r| r.key.as_deref() == Some(&b"test_subsecond"[..]))
        .collect();
    assert!(
        mine.len() >= 2,
        "snapshots then a tombstone: {}",
        mine.len()
    );
    assert!(mine[..mine.len() - 1].iter().all(|r| !r.payload.is_empty()));
    assert!(
        mine.last().unwrap().payload.is_empty(),
        "the last record is a tombstone"
    );
}

#[test]
fn replay_cuts_a_recording_into_raw_batches_that_process_reads_back() {
    let t = Topics::create("replay");
    let fixture = root().join("fixtures/test_subsecond.edf");
    replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
            "--chunk",
            "50",
            "--sessions",
            "2",
        ],
    );
    // 698 s at 128 Hz = 89344 samples: 1787 messages of up to 50 samples per session.
    let per_session = 89344usize.div_ceil(50);
    let raw = consume(&t.raw, Duration::from_secs(30), |r| {
        r.len() >= 2 * per_session
    });
    assert_eq!(raw.len(), 2 * per_session);
    let dir = std::env::temp_dir().join(&t.group);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=2 {
        let key = format!("test_subsecond-{i}");
        let mine: Vec<&Record> = raw
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .collect();
        assert_eq!(mine.len(), per_session, "{key}");
        for (seq, r) in mine.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            assert_eq!(v["schema"], "eeg.raw/1");
            assert_eq!(v["session_id"], key.as_str());
            assert_eq!(v["seq"].as_u64(), Some(seq as u64), "{key}: in order");
            let n = v["samples"][0].as_array().unwrap().len();
            let want = if seq + 1 < per_session {
                50
            } else {
                89344 - 50 * seq
            };
            assert_eq!(n, want);
        }
        // The captured stream, processed offline, gives the recording's records.
        let jsonl = dir.join(format!("{key}.jsonl"));
        let mut text = Vec::new();
        for r in &mine {
            text.extend_from_slice(&r.payload);
            text.push(b'\n');
        }
        std::fs::write(&jsonl, text).unwrap();
        let from_stream = process_lines(&jsonl, &[]);
        let from_file = process_lines(&fixture, &["--session-id", &key]);
        assert_eq!(from_stream.len(), from_file.len());
        for (a, b) in from_stream.iter().zip(&from_file) {
            assert!(a == b, "{key}: {}", String::from_utf8_lossy(a));
        }
    }
}

/// A port nothing listens on right now, for a service's HTTP endpoints.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0: status code and body; `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
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

/// The DOM of `url` after its scripts ran, from Debian's headless Chromium (which `.ci/run`
/// installs).
fn chromium_dom(url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("chromium cannot run ({e}); install Debian's chromium"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_live_page_shows_the_active_sessions_and_can_be_switched_off() {
    let t = Topics::create("ui");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let f = fixture.to_str().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let service = Service::start_with(&t, "a", &[], &[("HTTP_ADDR", &addr)]);
    // Two sessions, about 14 s of replay.
    let mut player = spawn_replay(
        &t,
        &[f, "--session-id", "ui", "--sessions", "2", "--speed", "50"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = http_get(port, "/sessions")
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok());
        if page.as_ref().is_some_and(|p| {
            p["total"] == 2
                && p["sessions"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(|s| s["windows"].as_u64() >= Some(3)))
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "{page:?}\n{}", service.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // A person's view, drawn in a real browser while the sessions stream.
    let dom = chromium_dom(&format!("http://{addr}/ui"));
    assert!(dom.contains("data-rendered=\"true\""), "{dom}");
    assert!(dom.contains("data-errors=\"\""), "{dom}");
    assert!(dom.contains("data-sessions=\"2\""), "{dom}");
    for id in ["ui-1", "ui-2"] {
        assert!(dom.contains(&format!("data-session=\"{id}\"")), "{dom}");
    }
    // One channel per session: one row each, with its five band segments.
    assert_eq!(dom.matches("class=\"channel\"").count(), 2, "{dom}");
    assert!(dom.matches("<span title=\"alpha ").count() >= 2, "{dom}");
    assert!(player.wait().unwrap().success());

    // After the replay, each session's latest record is the last one it published.
    let want = process_lines(&fixture, &["--session-id", "ui-1"]).len();
    let got = consume(&t.processed, Duration::from_secs(60), |r| {
        r.len() >= 2 * want
    });
    std::thread::sleep(Duration::from_secs(1));
    let (code, body) = http_get(port, "/sessions?limit=1").unwrap();
    assert_eq!(code, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["total"], 2);
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1, "paged");
    let (_, body) = http_get(port, "/sessions").unwrap();
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    for s in page["sessions"].as_array().unwrap() {
        let id = s["session_id"].as_str().unwrap();
        let last = got
            .iter()
            .filter(|r| r.key.as_deref() == Some(id.as_bytes()))
            .map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap())
            .max_by_key(|v| v["window_index"].as_u64())
            .unwrap();
        assert_eq!(s["latest"], last, "{id}");
        assert_eq!(s["windows"].as_u64(), Some(want as u64), "{id}");
    }
    // No session id ever appears in the metrics.
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(!metrics.contains("ui-1") && !metrics.contains("ui-2"));
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");

    // Switched off: neither the data nor the page is served.
    let port = free_port();
    let off = Service::start_with(
        &t,
        "b",
        &[],
        &[
            ("HTTP_ADDR", &format!("127.0.0.1:{port}")),
            ("HTTP_UI", "off"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/health/live").is_none() {
        assert!(Instant::now() < deadline, "{}", off.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_get(port, "/sessions").unwrap().0, 404);
    assert_eq!(http_get(port, "/ui").unwrap().0, 404);
    let (status, log) = off.stop();
    assert!(status.success(), "{log}");
}

fn healthcheck(port: u16) -> Option<i32> {
    Command::new(BIN)
        .arg("healthcheck")
        .env("HTTP_ADDR", format!("0.0.0.0:{port}"))
        .status()
        .unwrap()
        .code()
}

#[test]
fn without_a_broker_the_endpoints_answer_at_once_and_say_why() {
    let t = Topics::create("nobroker");
    let port = free_port();
    let started = Instant::now();
    let service = Service::start_with(
        &t,
        "nobroker",
        &["--connect-timeout-s", "1"],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("HTTP_ADDR", &format!("127.0.0.1:{port}")),
        ],
    );
    let live = loop {
        if let Some(r) = http_get(port, "/health/live") {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{}",
            service.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(live.0, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    let (code, body) = http_get(port, "/health/ready").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("not ready: "), "{body}");
    // Within the connect timeout the reason names the broker.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = http_get(port, "/health/ready").unwrap();
        assert_eq!(code, 503);
        if body.contains("broker not reachable") && body.contains("127.0.0.1:1") {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, detail) = http_get(port, "/health").unwrap();
    assert_eq!(code, 503);
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["consumer"]["state"], "waiting_for_broker");
    assert_eq!(healthcheck(port), Some(1));
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    // Nothing listens any more.
    assert_eq!(healthcheck(port), Some(1));
}

#[test]
fn a_consuming_service_is_ready_and_its_metrics_move_with_traffic() {
    let t = Topics::create("metrics");
    let port = free_port();
    let service = Service::start_with(
        &t,
        "metrics",
        &[],
        &[("HTTP_ADDR", &format!("127.0.0.1:{port}"))],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/health/ready").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "{}", service.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(healthcheck(port), Some(0));
    let value = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
            .parse()
            .unwrap()
    };
    let (code, before) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert_eq!(value(&before, "eeg_messages_consumed_total"), 0);
    assert_eq!(value(&before, "eeg_ready"), 1);
    let fixture = root().join("fixtures/test_subsecond.edf");
    replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = http_get(port, "/metrics").unwrap();
        // Every sample line is a series and a number.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, v) = line.rsplit_once(' ').unwrap();
            assert!(series.starts_with("eeg_"), "{line}");
            v.parse::<f64>().unwrap();
        }
        // Lag comes with librdkafka's statistics, every 5 s.
        let lags: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("eeg_consumer_lag{partition=\""))
            .collect();
        let latencies = |since: &str| {
            value(
                &text,
                &format!("eeg_window_latency_seconds_count{{since=\"{since}\"}}"),
            )
        };
        // A record's latency is taken at its acknowledgement, which follows its publishing.
        if value(&text, "eeg_records_published_total") >= 695
            && latencies("consume") >= 695
            && lags.len() == 3
            && lags.iter().all(|l| l.ends_with(" 0"))
        {
            assert_eq!(value(&text, "eeg_messages_consumed_total"), 2792);
            assert_eq!(value(&text, "eeg_processing_seconds_count"), 2792);
            assert_eq!(value(&text, "eeg_active_sessions"), 1);
            // One latency per record, from each starting point.
            assert_eq!(latencies("consume"), 695);
            assert_eq!(latencies("window_end"), 695);
            // The replayed recording's windows ended in its own time, years ago: every one
            // is above the largest bucket.
            let le60 = "eeg_window_latency_seconds_bucket{since=\"window_end\",le=\"60\"}";
            assert_eq!(value(&text, le60), 0);
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, detail) = http_get(port, "/health").unwrap();
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["status"], "ready");
    assert_eq!(
        detail["consumer"]["assigned_partitions"],
        serde_json::json!([0, 1, 2])
    );
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn a_broker_that_appears_later_is_used_without_a_restart() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let t = Topics::named("late", &address);
    let health = free_port();
    let service = Service::start_with(
        &t,
        "late",
        &["--connect-timeout-s", "1"],
        &[("HTTP_ADDR", &format!("127.0.0.1:{health}"))],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !service
        .log()
        .contains(&format!("cannot reach Kafka at {address}"))
    {
        assert!(Instant::now() < deadline, "{}", service.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_get(health, "/health/ready").unwrap().0, 503);

    // Now a broker comes up on that address (a private one, so stopping it is ours to do).
    let dir = std::env::temp_dir().join(format!("{}-broker", t.group));
    std::fs::create_dir_all(&dir).unwrap();
    let mut broker = private_broker(&dir, port, false);
    let mut create = Command::new(BIN);
    create.args(["topics", "create"]);
    t.env(&mut create);
    assert!(create.status().unwrap().success());
    let fixture = root().join("fixtures/test_subsecond.edf");
    replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
        ],
    );
    let got = consume_at(&address, &t.processed, Duration::from_secs(90), |r| {
        r.len() >= 695
    });
    let ready = http_get(health, "/health/ready").map(|r| r.0);
    let (status, log) = service.stop();
    broker.kill().unwrap();
    broker.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{log}");
    assert_eq!(got.len(), 695, "{log}");
    assert_eq!(ready, Some(200), "{log}");
    assert!(log.contains("topics present; starting"), "{log}");
}

#[test]
fn a_containerised_service_logs_json_lines_without_secrets() {
    let t = Topics::create("json");
    let port = free_port();
    let secret = "hunter2-do-not-log";
    // Standard output is not a terminal here, as in a container: JSON lines by default.
    let service = Service::start_with(
        &t,
        "json",
        &["--kafka", &format!("sasl.password={secret}")],
        &[
            ("LOG_FORMAT", ""),
            ("HTTP_ADDR", &format!("127.0.0.1:{port}")),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/health/ready").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "{}", service.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let health = http_get(port, "/health").unwrap().1;
    let metrics = http_get(port, "/metrics").unwrap().1;
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    let mut messages = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert!(messages.iter().any(|m| m == "starting"), "{log}");
    assert!(messages.iter().any(|m| m == "stopped cleanly"), "{log}");
    for (what, text) in [("log", &log), ("/health", &health), ("/metrics", &metrics)] {
        assert!(!text.contains(secret), "the password is in {what}");
    }
}

/// Waits (15 s at most) until `/health/ready` answers 503 with a body containing `needle`;
/// returns the body.
fn not_ready_because(port: u16, needle: &str, service: &Service) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((503, body)) = http_get(port, "/health/ready")
            && body.contains(needle)
        {
            return body;
        }
        assert!(Instant::now() < deadline, "{}", service.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tansu binary `scripts/broker` uses (installing it when missing).
fn tansu_binary() -> String {
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
fn private_broker(dir: &Path, port: u16, authentication: bool) -> Child {
    tansu_on(dir, port, "sqlite://tansu.db", authentication)
}

/// A private tansu broker on `port` that keeps its data in memory.
fn memory_broker(port: u16) -> Child {
    tansu_on(&std::env::temp_dir(), port, "memory://tansu/", false)
}

fn tansu_on(dir: &Path, port: u16, storage: &str, authentication: bool) -> Child {
    let tansu = tansu_binary();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(&tansu);
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
    let child = cmd.spawn().unwrap();
    let up = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < up, "the broker did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn scram_credentials_are_used_and_a_wrong_password_is_named_not_hung() {
    let dir = std::env::temp_dir().join(format!("eeg-scram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    // The user is made while the broker is open, then it restarts requiring SASL.
    let mut open = private_broker(&dir, port, false);
    let tansu_user = Command::new(tansu_binary())
        .args(["user", "create", "eeg", "correct-horse", "--broker"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .status()
        .unwrap();
    assert!(tansu_user.success());
    open.kill().unwrap();
    open.wait().unwrap();
    let mut broker = private_broker(&dir, port, true);
    let topics = |password: &str, action: &str| {
        Command::new(BIN)
            .args(["topics", action, "--timeout-s", "3"])
            .env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{port}"))
            .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
            .env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
            .env("KAFKA_SASL_USERNAME", "eeg")
            .env("KAFKA_SASL_PASSWORD", password)
            .output()
            .unwrap()
    };
    let created = topics("correct-horse", "create");
    let checked = topics("correct-horse", "check");
    let started = Instant::now();
    let wrong = topics("battery-staple", "check");
    let took = started.elapsed();
    // The service with the wrong password: not ready, saying why, retrying, stoppable.
    let t = Topics::named("scram", &format!("127.0.0.1:{port}"));
    let health = free_port();
    let service = Service::start_with(
        &t,
        "scram",
        &["--connect-timeout-s", "2"],
        &[
            ("HTTP_ADDR", &format!("127.0.0.1:{health}")),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "eeg"),
            ("KAFKA_SASL_PASSWORD", "battery-staple"),
        ],
    );
    let reason = not_ready_because(health, "authentication failed", &service);
    let (status, service_log) = service.stop();
    broker.kill().unwrap();
    broker.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(created.status.success(), "{}", text(&created));
    assert!(checked.status.success(), "{}", text(&checked));
    assert_eq!(wrong.status.code(), Some(1));
    let err = text(&wrong);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("authentication failed"), "{err}");
    assert!(!err.contains("battery-staple") && !err.contains("correct-horse"));
    assert!(status.success(), "{service_log}");
    assert!(!reason.contains("battery-staple") && !service_log.contains("battery-staple"));
}

#[test]
fn msk_iam_tokens_are_signed_with_the_tasks_credentials_which_never_show() {
    // No MSK here: the broker refuses OAUTHBEARER, which proves the client got as far as
    // presenting a signed token; the signature itself is checked offline in eeg-kafka.
    let t = Topics::named("iam", &bootstrap());
    let port = free_port();
    let secret = "wJalrXUtnFEMI-K7MDENG-do-not-log";
    let service = Service::start_with(
        &t,
        "iam",
        &["--connect-timeout-s", "2"],
        &[
            ("HTTP_ADDR", &format!("127.0.0.1:{port}")),
            ("RUST_LOG", "info"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", secret),
            // Nothing else of the machine's AWS setup may take part.
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let reason = not_ready_because(port, "authentication failed", &service);
    let health = http_get(port, "/health").unwrap().1;
    let metrics = http_get(port, "/metrics").unwrap().1;
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    assert!(reason.contains("OAUTHBEARER"), "{reason}");
    assert_eq!(
        log.matches("signed the first MSK IAM token").count(),
        1,
        "{log}"
    );
    assert!(
        !log.contains("cannot make a SASL/OAUTHBEARER token"),
        "{log}"
    );
    for (what, text) in [("log", &log), ("/health", &health), ("/metrics", &metrics)] {
        assert!(!text.contains(secret), "the secret key is in {what}");
    }
}

/// Fails the partition worker on its 41st message, in this process and in the binary.
const WORKER_FAULT: &str = "40*off->panic(injected fault)";

#[test]
fn a_failing_background_task_is_logged_shown_in_health_and_loses_nothing() {
    let t = Topics::create("fault");
    let fixture = root().join("fixtures/test_subsecond.edf");
    let want = process_lines(&fixture, &[]);
    replay(
        &t,
        &[
            fixture.to_str().unwrap(),
            "--session-id",
            "test_subsecond",
            "--speed",
            "max",
        ],
    );

    // In this process, to read health after the failure: the service stops with an error
    // (it does not hang, and the panic does not escape), and health says what failed.
    fail::cfg("partition-worker-message", WORKER_FAULT).unwrap();
    let mut config = eeg_ingest::ServiceConfig::new(&t.bootstrap, &t.group);
    config.topics = eeg_ingest::Topics {
        raw: t.raw.clone(),
        processed: t.processed.clone(),
        triggers: t.triggers.clone(),
        dlq: t.dlq.clone(),
        state: t.state.clone(),
    };
    let service = eeg_ingest::Service::new(config).unwrap();
    let (health, stats) = (service.health(), service.stats());
    let result = std::thread::spawn(move || service.run())
        .join()
        .expect("the service returns instead of panicking");
    fail::remove("partition-worker-message");
    let err = result.expect_err("a failed task ends the service with an error");
    assert!(
        matches!(&err, eeg_ingest::ServiceError::TaskFailed(line)
            if line.contains("worker failed: injected fault")),
        "{err}"
    );
    let reason = health.ready().unwrap_err();
    assert!(reason.starts_with("failed: partition "), "{reason}");
    assert!(reason.contains("worker failed: injected fault"), "{reason}");
    let detail = health.detail(&stats, "test");
    assert_eq!(detail["consumer"]["state"], "failed", "{detail}");
    assert_eq!(detail["status"], "not_ready", "{detail}");

    // The binary: the same failure is one error line naming the task, then exit 1, the
    // code an orchestrator restarts on.
    let mut faulty = Service::start_with(
        &t,
        "faulty",
        &[],
        &[(
            "FAILPOINTS",
            &format!("partition-worker-message={WORKER_FAULT}"),
        )],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = faulty.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            faulty.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = faulty.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("worker failed: injected fault; stopping"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(
        failed[0].contains("ERROR") && failed[0].contains("partition "),
        "{log}"
    );

    // Nothing was committed past the failed work: a healthy service publishes every
    // window, each copy identical to `process`.
    let healthy = Service::start(&t, "healthy");
    let got = consume(&t.processed, Duration::from_secs(90), |r| {
        by_window(r).len() >= want.len()
    });
    let (status, log) = healthy.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    let windows = by_window(&got);
    assert_eq!(windows.len(), want.len(), "{log}");
    for (k, w) in windows.values().zip(&want) {
        assert_eq!(String::from_utf8_lossy(k), String::from_utf8_lossy(w));
    }
}

/// Lines of `log` that report a broker failing: librdkafka's, the consumer's and the
/// service's own, summaries of repeats included.
fn failure_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            [
                "refused",
                "brokers are down",
                "AllBrokersDown",
                "BrokerTransportFailure",
                "Disconnected",
                "cannot reach",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect()
}

#[test]
fn an_unreachable_broker_is_logged_once_per_reason_not_per_retry() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let t = Topics::named("unreachable", &address);
    let service = Service::start_with(&t, "unreachable", &["--connect-timeout-s", "1"], &[]);
    // librdkafka retries many times a second, each client on its own, and the service
    // checks the topics again after 1, 2 and 4 s.
    std::thread::sleep(Duration::from_secs(8));
    let during = service.log();
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    let lines = failure_lines(&during);
    assert!(
        lines.len() <= 3,
        "{} lines about the failure:\n{during}",
        lines.len()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Connection refused") && l.contains(&address)),
        "the cause and the address are said:\n{during}"
    );
    // The repeats were counted, and the counts reported at exit.
    assert!(
        log.lines()
            .any(|l| l.contains("Connection refused") && l.contains("(repeated ")),
        "{log}"
    );
}

#[test]
fn replay_names_an_unreachable_broker_within_the_connect_timeout() {
    let port = free_port();
    let fixture = root().join("fixtures/test_subsecond.edf");
    let started = Instant::now();
    let o = Command::new(BIN)
        .arg("replay")
        .arg(&fixture)
        .args(["--speed", "max", "--connect-timeout-s", "2"])
        .env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(4), "{took:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(&format!("error: cannot reach Kafka at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(lines[0].contains("Connection refused"), "{err}");
}

#[test]
fn replay_reports_bad_input_alone_without_the_messages_it_purges() {
    let t = Topics::create("replay-bad");
    let line = |seq: u64| {
        let row: Vec<String> = (0..32).map(|i| format!("{}.5", (seq + i) % 7)).collect();
        format!(
            "{{\"schema\":\"eeg.raw/1\",\"session_id\":\"bad\",\"device_id\":\"d\",\"seq\":{seq},\"start_ms\":{},\"sample_rate_hz\":128.0,\"channels\":[\"A\"],\"samples\":[[{}]]}}",
            1_000_000 + seq * 250,
            row.join(",")
        )
    };
    // Many good messages (still queued in the producer when the bad line is read), then one
    // that is not a raw batch.
    let mut text: Vec<String> = (0..500).map(line).collect();
    text.push("{\"schema\":\"eeg.raw/1\",\"session_id\":\"bad\"}".into());
    let input = std::env::temp_dir().join(format!("{}-bad.jsonl", t.group));
    std::fs::write(&input, text.join("\n")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("replay")
        .arg(&input)
        .args(["--speed", "max", "--quiet"]);
    t.env(&mut cmd);
    let o = cmd.output().unwrap();
    let _ = std::fs::remove_file(&input);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        !err.contains("PurgeQueue") && !err.contains("Purged"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("line 501"), "{err}");
}

/// `/health` as JSON (null until the endpoint answers).
fn health_detail(port: u16) -> serde_json::Value {
    http_get(port, "/health").map_or(serde_json::Value::Null, |(_, body)| {
        serde_json::from_str(&body).unwrap()
    })
}

#[test]
fn a_broker_outage_shows_in_health_while_the_service_stays_ready() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let t = Topics::named("outage", &address);
    let dir = std::env::temp_dir().join(format!("{}-broker", t.group));
    std::fs::create_dir_all(&dir).unwrap();
    let mut broker = private_broker(&dir, port, false);
    t.make();
    let health = free_port();
    let service = Service::start_with(
        &t,
        "outage",
        &["--connect-timeout-s", "1"],
        &[("HTTP_ADDR", &format!("127.0.0.1:{health}"))],
    );
    let wait_for = |what: &str, secs: u64, done: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let d = health_detail(health);
            if done(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "{what}: {d}\n{}", service.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let connected = |d: &serde_json::Value| d["broker"]["connected"] == true;
    wait_for("ready", 30, &|d| d["status"] == "ready" && connected(d));

    let before = service.log().len();
    let killed = Instant::now();
    broker.kill().unwrap();
    broker.wait().unwrap();
    let down = wait_for("the outage shows", 30, &|d| !connected(d));
    assert_eq!(down["status"], "ready", "{down}");
    assert_eq!(
        http_get(health, "/health/ready").map(|r| r.0),
        Some(200),
        "a broker outage does not make the service unready"
    );
    let reason = down["broker"]["down_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("all brokers down: "), "{down}");
    assert!(down["broker"]["down_since_ms"].as_u64().is_some(), "{down}");
    assert!(down["broker"]["last_error"].is_string(), "{down}");
    let metrics = http_get(health, "/metrics").unwrap().1;
    assert!(metrics.contains("\neeg_broker_connected 0\n"), "{metrics}");
    assert!(
        metrics.contains("\neeg_broker_outages_total 1\n"),
        "{metrics}"
    );
    // Down for a while: every client keeps failing, many times a second; the log says
    // each reason once (a disconnect, a refused connection, all brokers down, and the
    // consumer's poll errors).
    std::thread::sleep(Duration::from_secs(12).saturating_sub(killed.elapsed()));
    let still = health_detail(health);
    assert_eq!(still["broker"]["connected"], false, "{still}");
    let log = service.log();
    let during = failure_lines(&log[before.min(log.len())..]);
    assert!(
        during.len() <= 8,
        "{} lines about the outage:\n{}",
        during.len(),
        during.join("\n")
    );

    let mut broker = private_broker(&dir, port, false);
    let up = wait_for("the broker is back", 40, &|d| connected(d));
    let metrics = http_get(health, "/metrics").unwrap().1;
    let (status, log) = service.stop();
    broker.kill().unwrap();
    broker.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{log}");
    assert_eq!(
        up["broker"]["down_since_ms"],
        serde_json::Value::Null,
        "{up}"
    );
    assert_eq!(up["broker"]["down_reason"], serde_json::Value::Null, "{up}");
    assert!(metrics.contains("\neeg_broker_connected 1\n"), "{metrics}");
    assert!(
        metrics.contains("\neeg_broker_down_seconds 0\n"),
        "{metrics}"
    );
    assert!(log.contains("connection is up again"), "{log}");
    // The repeats were counted.
    assert!(log.contains(" (repeated "), "{log}");
}
