//! The Redis cache against real Redis (Debian's redis-server): one node with a password, a
//! three-master cluster, both again over TLS with a private CA, a node killed and restarted
//! mid-stream, and settings that cannot work. Redis holds what Kafka holds; Kafka's output
//! never depends on Redis.
//!
//! The nodes come from `EEG_TEST_REDIS_URL`, `EEG_TEST_REDIS_CLUSTER_URL`,
//! `EEG_TEST_REDIS_TLS_URL` and `EEG_TEST_REDIS_TLS_CLUSTER_URL` (with the CA in
//! `EEG_TEST_REDIS_TLS_CA_FILE`; `.ci/run` starts them all); without them the tests start
//! their own with `scripts/redis`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;

use crate::support::*;

const PASSWORD: &str = "eeg-test";

/// The lines `NAME=VALUE` that `scripts/redis ARGS` prints.
fn scripts_redis(args: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new(root().join("scripts/redis"))
        .args(args)
        .output()
        .expect("scripts/redis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/redis {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Where a test's Redis is and how to reach it.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    cluster: bool,
    /// The CA of a TLS node's certificate (`REDIS_TLS_CA_FILE`).
    ca: Option<std::path::PathBuf>,
}

impl Target {
    /// A connection of the test's own.
    fn connect(&self) -> Box<dyn redis::ConnectionLike> {
        if self.cluster {
            let mut b = redis::cluster::ClusterClientBuilder::new(vec![self.url.as_str()]);
            if let Some(ca) = self.certs() {
                b = b.certs(ca);
            }
            Box::new(b.build().unwrap().get_connection().unwrap())
        } else {
            Box::new(self.client().get_connection().unwrap())
        }
    }

    /// A client of one node (any node of a cluster, e.g. for pub/sub).
    fn client(&self) -> redis::Client {
        match self.certs() {
            Some(ca) => redis::Client::build_with_tls(self.url.as_str(), ca).unwrap(),
            None => redis::Client::open(self.url.as_str()).unwrap(),
        }
    }

    fn certs(&self) -> Option<redis::TlsCertificates> {
        // A build with MSK IAM has two TLS providers: rustls needs one named.
        eeg_redis::use_ring_for_tls();
        self.ca.as_ref().map(|p| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(p).unwrap()),
        })
    }
}

/// A Redis from the environment (`EEG_TEST_{var}`, and `EEG_TEST_REDIS_TLS_CA_FILE` for a
/// TLS one) when set, else the one `scripts/redis ARGS` starts (once per run).
fn redis_from(var: &str, once: &'static std::sync::OnceLock<Target>, args: &[&str]) -> Target {
    let cluster = args[0] == "cluster";
    let tls = args.contains(&"--tls");
    let env = |name: &str| {
        std::env::var(format!("EEG_TEST_{name}"))
            .ok()
            .filter(|v| !v.is_empty())
    };
    if let Some(url) = env(var) {
        let ca = if tls {
            Some(
                env("REDIS_TLS_CA_FILE")
                    .expect("EEG_TEST_REDIS_TLS_CA_FILE with a TLS node")
                    .into(),
            )
        } else {
            None
        };
        return Target { url, cluster, ca };
    }
    once.get_or_init(|| {
        let lines = scripts_redis(args);
        let name = if cluster {
            "REDIS_CLUSTER_URL"
        } else {
            "REDIS_URL"
        };
        Target {
            url: lines[name].clone(),
            cluster,
            ca: tls.then(|| lines["REDIS_TLS_CA_FILE"].clone().into()),
        }
    })
    .clone()
}

/// One node, with a password.
fn node() -> Target {
    static ONCE: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
    redis_from(
        "REDIS_URL",
        &ONCE,
        &["start", "--port", "16379", "--password", PASSWORD],
    )
}

fn redis_url() -> String {
    node().url
}

/// Three masters, with a password.
fn cluster() -> Target {
    static ONCE: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
    redis_from(
        "REDIS_CLUSTER_URL",
        &ONCE,
        &[
            "cluster",
            "--ports",
            "17000,17001,17002",
            "--password",
            PASSWORD,
        ],
    )
}

/// One node over TLS only, its certificate signed by a CA of the test's own.
fn tls_node() -> Target {
    static ONCE: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
    redis_from(
        "REDIS_TLS_URL",
        &ONCE,
        &["start", "--port", "16380", "--password", PASSWORD, "--tls"],
    )
}

/// Three masters over TLS (clients, bus and replication), as ElastiCache with in-transit
/// encryption and cluster mode.
fn tls_cluster() -> Target {
    static ONCE: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
    redis_from(
        "REDIS_TLS_CLUSTER_URL",
        &ONCE,
        &[
            "cluster",
            "--ports",
            "17010,17011,17012",
            "--password",
            PASSWORD,
            "--tls",
        ],
    )
}

/// The test's own key prefix, so tests sharing a node never see each other's keys.
fn prefix(t: &Topics) -> String {
    format!("{}:", t.group)
}

/// Each session's records as Kafka holds them, in window order.
fn per_session(records: &[Record]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, BTreeMap<u64, Vec<u8>>> = BTreeMap::new();
    for r in records {
        let key = String::from_utf8(r.key.clone().expect("keyed")).unwrap();
        out.entry(key)
            .or_default()
            .insert(window_index(&r.payload), r.payload.clone());
    }
    out.into_iter()
        .map(|(k, w)| (k, w.into_values().collect()))
        .collect()
}

/// Collects what is published on `channels` until each has `want` messages or `limit`
/// passes; subscribed before this returns.
fn subscribe(
    target: &Target,
    channels: Vec<String>,
    want: usize,
    limit: Duration,
) -> std::thread::JoinHandle<BTreeMap<String, Vec<Vec<u8>>>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let client = target.client();
    let handle = std::thread::spawn(move || {
        let mut con = client.get_connection().unwrap();
        let mut ps = con.as_pubsub();
        for c in &channels {
            ps.subscribe(c).unwrap();
        }
        ps.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut got: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline
            && !(got.len() == channels.len() && got.values().all(|v| v.len() >= want))
        {
            if let Ok(m) = ps.get_message() {
                got.entry(m.get_channel_name().to_string())
                    .or_default()
                    .push(m.get_payload_bytes().to_vec());
            }
        }
        got
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    handle
}

fn get(con: &mut dyn redis::ConnectionLike, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

/// The payloads of a session's event (or epoch) stream, oldest first.
fn events(con: &mut dyn redis::ConnectionLike, key: &str) -> Vec<Vec<u8>> {
    /// An entry: its id and its (field, value) pairs.
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap();
    entries
        .into_iter()
        .map(|(_, mut fields)| fields.remove(0).1)
        .collect()
}

/// Replays the fixture as `sessions` (the first for user `u-1`), runs a service with Redis
/// at `url` until Kafka holds every window, and checks Redis against Kafka: each session's
/// latest key is its last record, its channel had every window in order, its event stream
/// holds its trigger events, its epoch stream the epochs of the recording's four
/// annotations, the user's index names the user's session, and keys expire.
fn mirror(target: &Target, test: &str, n_sessions: usize) {
    let (url, cluster) = (target.url.as_str(), target.cluster);
    let t = Topics::create(test);
    let prefix = prefix(&t);
    let sessions: Vec<String> = (0..n_sessions)
        .map(|i| format!("{}-s{i}", t.group))
        .collect();
    let windows = fixture_records(SESSION).len();
    let live = subscribe(
        target,
        sessions
            .iter()
            .map(|s| format!("{prefix}live:{{{s}}}"))
            .collect(),
        windows,
        Duration::from_secs(90),
    );
    for (i, s) in sessions.iter().enumerate() {
        let user: &[&str] = if i == 0 { &["--user-id", "u-1"] } else { &[] };
        replay_fixture(&t, s, user);
    }
    let mut env = vec![
        ("REDIS_URL", url),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("REDIS_TTL_S", "30"),
    ];
    if cluster {
        env.push(("REDIS_CLUSTER", "true"));
    }
    let ca = target.ca.as_ref().map(|p| p.to_str().unwrap().to_string());
    if let Some(ca) = &ca {
        env.push(("REDIS_TLS_CA_FILE", ca));
    }
    let config = std::env::temp_dir().join(format!("{}-epochs.toml", t.group));
    std::fs::write(&config, "[epochs]\n").unwrap();
    let started = Instant::now();
    let service = Service::start_with(&t, "redis", &["--config", config.to_str().unwrap()], &env);
    let port = service.port;
    let records = published(&t, windows * n_sessions);
    let n_events = trigger_lines(&fixture(), &t).len();
    let triggers = consume(&t.triggers, Duration::from_secs(30), |r| {
        r.len() >= n_events * n_sessions
    });
    let epochs = consume(&t.epochs, Duration::from_secs(30), |r| {
        r.len() >= 4 * n_sessions
    });
    let kafka_s = started.elapsed().as_secs_f64();
    // Redis catches up with Kafka while the service runs, not only at its stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut detail = health_detail(port);
    while detail["redis"]["written"].as_u64().unwrap_or(0) < (windows * n_sessions) as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
        detail = health_detail(port);
    }
    let redis_s = started.elapsed().as_secs_f64();
    assert_eq!(detail["redis"]["state"], "up", "{detail}");
    assert_eq!(detail["redis"]["dropped"], 0, "{detail}");
    assert_eq!(detail["status"], "ready", "{detail}");
    let metrics = http_get(port, "/metrics").unwrap().1;
    assert!(metrics.contains("\neeg_redis_up 1\n"), "{metrics}");
    assert!(
        metrics.contains("\neeg_redis_dropped_total 0\n"),
        "{metrics}"
    );
    let log = service.stop_cleanly();
    assert!(!log.contains(PASSWORD), "the password was logged:\n{log}");

    let kafka = per_session(&records);
    assert_eq!(kafka.len(), n_sessions);
    let mut con = target.connect();
    let con = con.as_mut();
    for s in &sessions {
        let want = &kafka[s];
        assert_eq!(want.len(), windows);
        let latest = format!("{prefix}session:{{{s}}}:latest");
        assert_eq!(
            get(con, &latest).as_deref(),
            want.last().map(Vec::as_slice),
            "{latest} is not the last record Kafka holds"
        );
        let ttl: i64 = redis::cmd("TTL").arg(&latest).query(con).unwrap();
        assert!((1..=30).contains(&ttl), "TTL {ttl}");
        let kafka_events: Vec<Vec<u8>> = triggers
            .iter()
            .filter(|r| r.key.as_deref() == Some(s.as_bytes()))
            .map(|r| r.payload.clone())
            .collect();
        assert!(!kafka_events.is_empty(), "the fixture raises events");
        assert_eq!(
            events(con, &format!("{prefix}session:{{{s}}}:events")),
            kafka_events,
            "event stream of {s}"
        );
        let kafka_epochs: Vec<Vec<u8>> = epochs
            .iter()
            .filter(|r| r.key.as_deref() == Some(s.as_bytes()))
            .map(|r| r.payload.clone())
            .collect();
        assert_eq!(kafka_epochs.len(), 4, "the fixture's four annotations");
        let stream = format!("{prefix}session:{{{s}}}:epochs");
        assert_eq!(events(con, &stream), kafka_epochs, "epoch stream of {s}");
        let ttl: i64 = redis::cmd("TTL").arg(&stream).query(con).unwrap();
        assert!((1..=30).contains(&ttl), "TTL {ttl}");
    }
    let users: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}user:{{u-1}}:sessions"))
        .arg(0)
        .arg(-1)
        .query(con)
        .unwrap();
    assert_eq!(users, [sessions[0].clone()]);

    let live = live.join().unwrap();
    for s in &sessions {
        let channel = format!("{prefix}live:{{{s}}}");
        let got = live.get(&channel).map_or(0, Vec::len);
        assert_eq!(got, windows, "windows received on {channel}");
        assert!(
            live[&channel] == kafka[s],
            "{channel}: not every window in order"
        );
    }
    if cluster {
        // Where the keys went: the hash tags spread sessions over the masters.
        let mut per_node = Vec::new();
        for (_, node_url) in cluster_nodes(target) {
            let node = Target {
                url: node_url,
                cluster: false,
                ca: target.ca.clone(),
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut node.client().get_connection().unwrap())
                .unwrap();
            per_node.push(keys.len());
        }
        println!("redis cluster: keys per master {per_node:?}");
    }
    println!(
        "redis {}{}: {n_sessions} sessions, {} windows; Kafka complete {kafka_s:.2} s, Redis {redis_s:.2} s after the start",
        if cluster { "cluster" } else { "node" },
        if target.ca.is_some() { " over TLS" } else { "" },
        windows * n_sessions
    );
}

/// The masters of a cluster as (node id, URL with the target's password and scheme).
fn cluster_nodes(target: &Target) -> Vec<(String, String)> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut target.client().get_connection().unwrap())
        .unwrap();
    let (scheme, rest) = target.url.split_once("://").unwrap();
    let auth = rest.rsplit_once('@').map_or("", |x| x.0);
    nodes
        .lines()
        .filter(|l| l.contains("master"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let addr = f[1].split('@').next().unwrap();
            (f[0].to_string(), format!("{scheme}://{auth}@{addr}"))
        })
        .collect()
}

#[test]
fn redis_holds_what_kafka_holds_and_subscribers_get_every_window_in_order() {
    mirror(&node(), "redis-node", 2);
}

#[test]
fn a_redis_cluster_holds_what_kafka_holds() {
    mirror(&cluster(), "redis-cluster", 6);
}

#[test]
fn redis_over_tls_with_a_private_ca_holds_what_kafka_holds() {
    mirror(&tls_node(), "redis-tls", 2);
}

#[test]
fn a_redis_cluster_over_tls_holds_what_kafka_holds() {
    mirror(&tls_cluster(), "redis-tls-cluster", 4);
}

#[test]
fn redis_keys_expire_with_their_session() {
    let url = redis_url();
    let t = Topics::create("redis-ttl");
    let prefix = prefix(&t);
    let s = format!("{}-s", t.group);
    replay_fixture(&t, &s, &[]);
    let windows = fixture_records(&s).len();
    let service = Service::start_with(
        &t,
        "redis-ttl",
        &[],
        &[
            ("REDIS_URL", &url),
            ("REDIS_KEY_PREFIX", &prefix),
            ("REDIS_TTL_S", "2"),
        ],
    );
    published(&t, windows);
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let latest = format!("{prefix}session:{{{s}}}:latest");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !con.exists::<_, bool>(&latest).unwrap() {
        assert!(Instant::now() < deadline, "{latest} never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let keys: Vec<String> = con.keys(format!("{prefix}*")).unwrap();
    assert_eq!(
        keys.len(),
        2,
        "the latest record and the event stream: {keys:?}"
    );
    service.stop_cleanly();
    // Nothing renews them once the session's windows stop.
    std::thread::sleep(Duration::from_millis(3_000));
    let left: Vec<String> = con.keys(format!("{prefix}*")).unwrap();
    assert!(left.is_empty(), "still there after the TTL: {left:?}");
}

#[test]
fn epochs_and_trigger_events_published_again_are_kept_once_in_their_streams() {
    // Two services in two groups, each with its own output topics, process the same raw
    // messages into one Redis: the second publishes every epoch and trigger event again,
    // byte for byte, as a service does after a crash.
    let url = redis_url();
    let a = Topics::create("redis-again-a");
    let b = Topics::create("redis-again-b");
    let prefix = prefix(&a);
    let s = format!("{}-s", a.group);
    replay_fixture(&a, &s, &[]);
    let config = std::env::temp_dir().join(format!("{}-epochs.toml", a.group));
    std::fs::write(&config, "[epochs]\n").unwrap();
    let c = config.to_str().unwrap();
    let n_events = trigger_lines(&fixture(), &a).len();
    let mut published = Vec::new();
    for (t, name) in [(&a, "first"), (&b, "second")] {
        let env = [
            ("REDIS_URL", url.as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("EEG_RAW_TOPIC", a.raw.as_str()),
        ];
        let service = Service::start_with(t, name, &["--config", c], &env);
        let epochs = consume(&t.epochs, Duration::from_secs(60), |r| r.len() >= 4);
        consume(&t.triggers, Duration::from_secs(60), |r| {
            r.len() >= n_events
        });
        service.stop_cleanly();
        published.push(epochs.into_iter().map(|r| r.payload).collect::<Vec<_>>());
    }
    assert_eq!(published[0].len(), 4, "the fixture's four annotations");
    assert_eq!(published[0], published[1], "the same epochs, twice");
    let target = node();
    let mut con = target.connect();
    let con = con.as_mut();
    assert_eq!(
        events(con, &format!("{prefix}session:{{{s}}}:epochs")),
        published[0],
        "each epoch once"
    );
    assert_eq!(
        events(con, &format!("{prefix}session:{{{s}}}:events")).len(),
        n_events,
        "each trigger event once"
    );
}

/// A redis-server (Debian's redis-server package) of the test's own, on `port`, without
/// persistence.
fn private_redis(port: u16) -> Daemon {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .stdout(Stdio::null());
    Daemon::start(&mut cmd, port)
}

#[test]
fn redis_killed_mid_stream_costs_kafka_nothing_and_the_cache_catches_up() {
    let t = Topics::create("redis-kill");
    let prefix = prefix(&t);
    let redis_port = free_port();
    let url = format!("redis://127.0.0.1:{redis_port}");
    let redis_server = private_redis(redis_port);
    let reference = fixture_records(SESSION);
    let service = Service::start_with(
        &t,
        "redis-kill",
        &[],
        &[
            ("REDIS_URL", url.as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            // A small queue, so that the outage overflows it.
            ("REDIS_QUEUE", "16"),
        ],
    );
    let http = service.port;
    // 698 s of recording at 40 times real time: about 17 s of windows.
    let mut replaying = spawn_replay(
        &t,
        &[
            fixture().to_str().unwrap(),
            "--speed",
            "40",
            "--session-id",
            SESSION,
        ],
    );
    let written = |d: &serde_json::Value| d["redis"]["written"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while written(&health_detail(http)) < 20 {
        assert!(Instant::now() < deadline, "nothing written to Redis");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(redis_server);
    let killed = Instant::now();
    // Down: shown in /health, and the service stays ready.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut detail = health_detail(http);
    while detail["redis"]["state"] != "down" {
        assert!(
            Instant::now() < deadline,
            "Redis down not noticed: {detail}"
        );
        std::thread::sleep(Duration::from_millis(100));
        detail = health_detail(http);
    }
    assert_eq!(
        http_get(http, "/health/ready").map(|r| r.0),
        Some(200),
        "{detail}"
    );
    assert!(detail["redis"]["last_error"].is_string(), "{detail}");
    std::thread::sleep(Duration::from_secs(4));
    let down_metrics = http_get(http, "/metrics").unwrap().1;
    assert!(
        down_metrics.contains("\neeg_redis_up 0\n"),
        "{down_metrics}"
    );
    let redis_server = private_redis(redis_port);
    let restarted = Instant::now();
    let down_s = restarted.duration_since(killed).as_secs_f64();

    let status = replaying.wait().unwrap();
    assert!(status.success());
    // Kafka: complete and identical, whatever Redis did.
    let records = published_windows(&t, reference.len());
    assert_windows(&records, &reference, "Kafka with Redis killed");
    // The cache is current again: the last record Kafka holds.
    let last = reference.last().unwrap().clone();
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let latest = format!("{prefix}session:{{{SESSION}}}:latest");
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&mut con, &latest).as_deref() != Some(last.as_slice()) {
        assert!(
            Instant::now() < deadline,
            "the cache did not catch up: {}",
            health_detail(http)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let detail = health_detail(http);
    assert_eq!(detail["redis"]["state"], "up", "{detail}");
    let dropped = detail["redis"]["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "{detail}");
    let log = service.stop_cleanly();
    // One line per distinct cause, not one per retry or per update.
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("redis redis://"))
        .collect();
    assert!((1..=3).contains(&errors.len()), "error lines: {errors:#?}");
    assert_eq!(
        log.matches("writing again").count(),
        1,
        "recovery said once:\n{log}"
    );
    println!(
        "redis killed mid-stream: down {down_s:.1} s, {dropped} updates dropped, {} written ({} windows and their events), {} error lines",
        detail["redis"]["written"],
        reference.len(),
        errors.len()
    );
    drop(redis_server);
}

#[test]
fn redis_settings_that_cannot_work_are_one_line_and_processing_goes_on() {
    let good = redis_url();
    let wrong_password = good.replacen(PASSWORD, "not-the-password", 1);
    let wrong_password = if wrong_password == good {
        // A node from .ci/run, with its own password.
        let (scheme, rest) = good.split_once("://").unwrap();
        let host = rest.rsplit_once('@').map_or(rest, |x| x.1);
        format!("{scheme}://:not-the-password@{host}")
    } else {
        wrong_password
    };
    let tls = tls_node().url;
    let reference = fixture_records(SESSION);
    for (case, url, hint) in [
        (
            "wrong-password",
            wrong_password.as_str(),
            "authentication failed",
        ),
        (
            "no-such-host",
            "redis://no-such-host.invalid:6379",
            "cannot resolve",
        ),
        // A TLS node whose CA the system does not trust, and no REDIS_TLS_CA_FILE.
        ("untrusted-certificate", tls.as_str(), "not trusted"),
    ] {
        let t = Topics::create(&format!("redis-{case}"));
        replay_fixture(&t, SESSION, &[]);
        let service = Service::start_with(&t, case, &[], &[("REDIS_URL", url)]);
        let records = published_windows(&t, reference.len());
        assert_windows(&records, &reference, case);
        assert_eq!(
            http_get(service.port, "/health/ready").map(|r| r.0),
            Some(200),
            "{case}"
        );
        let detail = health_detail(service.port);
        assert_eq!(detail["redis"]["state"], "down", "{case}: {detail}");
        let log = service.stop_cleanly();
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("redis "))
            .collect();
        // One line, or two when the resolver sometimes fails and sometimes times out: never
        // one per retry, and each names the cause.
        assert!((1..=2).contains(&errors.len()), "{case}: {errors:#?}");
        for e in &errors {
            assert!(e.contains(hint), "{case}: {e}");
        }
        assert!(!log.contains("not-the-password"), "{case}: password logged");
    }

    // With REDIS_REQUIRED=true the service is not ready without Redis, and says why.
    let t = Topics::create("redis-required");
    let service = Service::start_with(
        &t,
        "required",
        &[],
        &[
            ("REDIS_URL", "redis://no-such-host.invalid:6379"),
            ("REDIS_REQUIRED", "true"),
        ],
    );
    let reason = service.not_ready_because("REDIS_REQUIRED");
    assert!(reason.contains("cannot resolve"), "{reason}");
    service.stop_cleanly();
}
