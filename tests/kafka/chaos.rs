//! Chaos against the real broker: groups of services that lose members, restart one by one,
//! are killed two at once, see the broker itself restart, or run with tiny buffers, while a
//! device fleet streams. Each run ends when every window of every session was received (or
//! its time runs out) and checks: no window missing, every copy byte-identical to `process`
//! on the same messages, trigger events likewise. The figures (windows expected and
//! received, duplicates, time to complete after the last fault) go to standard error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::support::*;

/// Sessions of the fleet, their channels, rate and length.
const SESSIONS: usize = 12;
const CHANNELS: usize = 4;
const RATE: f64 = 250.0;
const BATCH: usize = 25;
const SECONDS: usize = 40;

/// The fleet's messages as `eeg.raw/1` JSONL, in time order, and what `process` makes of them.
struct Fleet {
    file: PathBuf,
    /// The config file with the `[epochs]` the services cut.
    config: PathBuf,
    records: BTreeMap<(String, u64), Vec<u8>>,
    events: BTreeSet<Vec<u8>>,
    epochs: BTreeSet<Vec<u8>>,
}

fn fleet(tag: &str) -> Fleet {
    let dir = std::env::temp_dir().join(format!("eeg-chaos-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fleet.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let batches = SECONDS * RATE as usize / BATCH;
    let t0 = 1_700_000_000_000i64;
    // A small deterministic generator: every run streams the same numbers.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    for b in 0..batches {
        for s in 0..SESSIONS {
            let rows: Vec<Vec<f64>> = (0..CHANNELS)
                .map(|c| {
                    (0..BATCH)
                        .map(|i| {
                            let t = (b * BATCH + i) as f64 / RATE;
                            // Alpha that comes and goes, per session and channel.
                            let alpha = if (t as usize / 5 + s + c).is_multiple_of(3) {
                                25.0
                            } else {
                                4.0
                            };
                            alpha * (2.0 * std::f64::consts::PI * 10.0 * t).sin()
                                + 6.0 * (2.0 * std::f64::consts::PI * 20.0 * t + s as f64).sin()
                                + 8.0 * noise()
                        })
                        .collect()
                })
                .collect();
            let line = serde_json::json!({
                "schema": "eeg.raw/1", "session_id": format!("{tag}-s{s:02}"),
                "device_id": format!("dev-{s}"), "seq": b,
                "start_ms": t0 + (b * BATCH) as i64 * 4,
                "sample_rate_hz": RATE, "channels": ["TP9", "AF7", "AF8", "TP10"],
                "samples": rows,
            });
            writeln!(out, "{line}").unwrap();
            // A stimulus every two seconds per session, its marker sent a batch after its
            // onset, or (every third) three batches before it; every fifth one twice.
            let k = b / 20;
            let after = b % 20 == 1 && k % 3 != 0 && b + 10 < batches;
            let before = b % 20 == 17 && (k + 1) % 3 == 0 && b + 13 < batches;
            if after || before {
                let onset_batch = if before { b + 3 } else { b - 1 };
                let n = onset_batch / 20;
                let event = serde_json::json!({
                    "schema": "eeg.event/1", "session_id": format!("{tag}-s{s:02}"),
                    "event_id": format!("stim-{n}"),
                    "onset_ms": (t0 + (onset_batch * BATCH) as i64 * 4) as f64 + 37.5,
                    "label": if n % 2 == 0 { "target" } else { "standard" },
                    "source": "app",
                });
                let copies = if n % 5 == 0 { 2 } else { 1 };
                for _ in 0..copies {
                    writeln!(out, "{event}").unwrap();
                }
            }
        }
    }
    out.flush().unwrap();
    drop(out);
    let config = dir.join("epochs.toml");
    std::fs::write(&config, EPOCHS).unwrap();
    let events_file = dir.join("events.jsonl");
    let epochs_file = dir.join("epochs.jsonl");
    let records = process_lines(
        &file,
        &[
            "--config",
            config.to_str().unwrap(),
            "--triggers",
            events_file.to_str().unwrap(),
            "--epochs",
            epochs_file.to_str().unwrap(),
        ],
    )
    .into_iter()
    .map(|r| (window_of(&r), r))
    .collect();
    let events = lines(&std::fs::read(&events_file).unwrap())
        .into_iter()
        .collect();
    let epochs: BTreeSet<Vec<u8>> = lines(&std::fs::read(&epochs_file).unwrap())
        .into_iter()
        .collect();
    // Every stimulus of every session, once.
    assert_eq!(epochs.len(), SESSIONS * (SECONDS / 2 - 1));
    Fleet {
        file,
        config,
        records,
        events,
        epochs,
    }
}

/// Epochs of the fleet's stimuli, for `process` and the services alike.
const EPOCHS: &str = "[epochs]
tmin_s = -0.2
tmax_s = 0.8
[epochs.components]
p300 = [0.25, 0.5]
";

/// One chaos run: topics, the fleet and its reference, a reader of the output.
struct Run {
    name: &'static str,
    t: Topics,
    fleet: Fleet,
    out: Reader,
    started: Instant,
    /// When the last fault happened, and when the output was complete.
    last_fault: Instant,
    completed: Option<Instant>,
}

impl Run {
    fn new(name: &'static str) -> Run {
        Run::on(name, &bootstrap())
    }

    fn on(name: &'static str, bootstrap: &str) -> Run {
        let t = Topics::named(name, bootstrap);
        t.make();
        let fleet = fleet(&t.group);
        let out = Reader::new(bootstrap, &t.processed);
        Run {
            name,
            t,
            fleet,
            out,
            started: Instant::now(),
            last_fault: Instant::now(),
            completed: None,
        }
    }

    fn total(&self) -> usize {
        self.fleet.records.len()
    }

    fn distinct(records: &[Record]) -> usize {
        records
            .iter()
            .map(|r| window_of(&r.payload))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Streams the fleet at `speed` times real time (`max` for as fast as possible).
    fn replay(&self, speed: &str) -> Child {
        spawn_replay(
            &self.t,
            &[self.fleet.file.to_str().unwrap(), "--speed", speed],
        )
    }

    /// Waits until this share of the windows was received.
    fn wait_for(&mut self, share: f64) {
        let want = (self.total() as f64 * share) as usize;
        let reached = self
            .out
            .until(Duration::from_secs(120), |r| Run::distinct(r) >= want);
        assert!(reached, "{}: {want} windows not reached", self.name);
    }

    fn fault(&mut self) {
        self.last_fault = Instant::now();
    }

    /// Reads until every window was received (two minutes at most), noting when.
    fn wait_complete(&mut self) {
        let total = self.total();
        if self
            .out
            .until(Duration::from_secs(120), |r| Run::distinct(r) >= total)
        {
            self.completed = Some(Instant::now());
        }
    }

    /// Reads until every window was received (or `timeout`) and checks every copy against
    /// `process`. Returns the figures line.
    fn finish(&mut self, timeout: Duration, logs: &str) -> String {
        let total = self.total();
        self.out.until(timeout, |r| Run::distinct(r) >= total);
        let completed = *self.completed.get_or_insert_with(Instant::now);
        let done_after = completed.duration_since(self.last_fault);
        let mut seen: BTreeMap<(String, u64), &Record> = BTreeMap::new();
        let mut changed = Vec::new();
        for r in &self.out.records {
            let key = window_of(&r.payload);
            match self.fleet.records.get(&key) {
                Some(want) if *want == r.payload && r.key.as_deref() == Some(key.0.as_bytes()) => {}
                _ => changed.push(key.clone()),
            }
            seen.insert(key, r);
        }
        let missing: Vec<&(String, u64)> = self
            .fleet
            .records
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .collect();
        let figures = format!(
            "{}: windows expected {total}, received {} ({} copies, {} duplicates), missing {}, changed {}; complete {:.1} s after the last fault, {:.1} s in all; partitions reported unconsumed {} time(s)",
            self.name,
            seen.len(),
            self.out.records.len(),
            self.out.records.len() - seen.len(),
            missing.len(),
            changed.len(),
            done_after.as_secs_f64(),
            self.started.elapsed().as_secs_f64(),
            logs.matches("no member of group").count()
        );
        eprintln!("{figures}");
        // What the group watchdog saw, when it saw anything: the evidence of a coordinator
        // that left a partition without an owner.
        for line in logs.lines().filter(|l| {
            l.contains("no member of group")
                || l.contains("rejoining group")
                || l.contains("is consumed again")
        }) {
            eprintln!("  {line}");
        }
        assert!(
            missing.is_empty() && changed.is_empty(),
            "{figures}\nmissing e.g. {:?}\nchanged e.g. {:?}\n{logs}",
            &missing[..missing.len().min(5)],
            &changed[..changed.len().min(5)]
        );
        // Trigger events: each at least once, and nothing else.
        let want = &self.fleet.events;
        let mut events = Reader::new(&self.t.bootstrap, &self.t.triggers);
        events.until(Duration::from_secs(30), |r| {
            r.iter().map(|x| &x.payload).collect::<BTreeSet<_>>().len() >= want.len()
        });
        let got: BTreeSet<Vec<u8>> = events.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(&got, want, "{}: trigger events differ", self.name);
        // Epochs too: each at least once, every copy as `process` cuts it.
        let want = &self.fleet.epochs;
        let mut epochs = Reader::new(&self.t.bootstrap, &self.t.epochs);
        epochs.until(Duration::from_secs(30), |r| {
            r.iter().map(|x| &x.payload).collect::<BTreeSet<_>>().len() >= want.len()
        });
        let got: BTreeSet<Vec<u8>> = epochs.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(&got, want, "{}: epochs differ", self.name);
        figures
    }
}

/// A member of the group, reporting (and rejoining after) a partition nobody consumes
/// within 15 s.
fn start(run: &Run, name: &str) -> Service {
    let config = run.fleet.config.to_str().unwrap();
    Service::start_with(
        &run.t,
        name,
        &["--stall-after-s", "15", "--config", config],
        &[],
    )
}

fn stop_all(services: Vec<Service>) -> String {
    let mut logs = String::new();
    for s in services {
        logs.push_str(&s.stop_cleanly());
    }
    logs
}

#[test]
fn chaos_one_instance_leaves_and_one_joins_mid_stream() {
    let mut run = Run::new("leave-join");
    let mut group = vec![start(&run, "a"), start(&run, "b"), start(&run, "c")];
    let mut player = run.replay("4");
    run.wait_for(0.25);
    group.push(start(&run, "d"));
    run.fault();
    run.wait_for(0.5);
    let log_a = group.remove(0).stop_cleanly();
    run.fault();
    assert!(player.wait().unwrap().success());
    let logs = stop_all_after(&mut run, group, log_a);
    assert!(logs.contains("session(s) restored"), "{logs}");
}

/// Finishes a run: waits for the output, then stops the services (their logs go into a
/// failure message).
fn stop_all_after(run: &mut Run, group: Vec<Service>, earlier: String) -> String {
    run.wait_complete();
    let logs = earlier + &stop_all(group);
    run.finish(Duration::from_secs(5), &logs);
    logs
}

#[test]
fn chaos_rolling_restart_of_three() {
    let mut run = Run::new("rolling");
    let mut group = vec![start(&run, "a"), start(&run, "b"), start(&run, "c")];
    let mut player = run.replay("4");
    let mut logs = String::new();
    for (k, share) in [0.2, 0.45, 0.7].into_iter().enumerate() {
        run.wait_for(share);
        // As ECS replaces a task: SIGTERM, wait for the exit, start the new one.
        logs.push_str(&group.remove(0).stop_cleanly());
        group.push(start(&run, &format!("new{k}")));
        run.fault();
    }
    assert!(player.wait().unwrap().success());
    stop_all_after(&mut run, group, logs);
}

#[test]
fn chaos_two_of_three_killed_at_once() {
    let mut run = Run::new("kill2");
    let mut group = vec![start(&run, "a"), start(&run, "b"), start(&run, "c")];
    let mut player = run.replay("4");
    run.wait_for(0.4);
    group.remove(0).kill();
    group.remove(0).kill();
    run.fault();
    group.push(start(&run, "d"));
    group.push(start(&run, "e"));
    assert!(player.wait().unwrap().success());
    stop_all_after(&mut run, group, String::new());
}

#[test]
fn chaos_tiny_buffers_under_load() {
    let mut run = Run::new("tiny");
    // The whole fleet is there before the services start: every partition has a backlog.
    let mut player = run.replay("max");
    assert!(player.wait().unwrap().success());
    run.fault();
    let config = run.fleet.config.to_str().unwrap().to_string();
    let tiny = [
        "--partition-queue",
        "8",
        "--partition-buffer-kib",
        "64",
        "--config",
        &config,
    ];
    let group: Vec<Service> = ["a", "b", "c"]
        .iter()
        .map(|n| Service::start_with(&run.t, n, &tiny, &[]))
        .collect();
    let logs = stop_all_after(&mut run, group, String::new());
    // No message skipped, so no session ever reset.
    let resets: u64 = logs
        .lines()
        .filter(|l| l.contains(" totals "))
        .filter_map(|l| l.split("session_resets=").nth(1))
        .map(|v| v.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(resets, 0, "{logs}");
}

#[test]
fn chaos_broker_restarted_mid_stream() {
    // A private broker on persistent storage (tansu's sqlite engine), so it can be
    // restarted with its data.
    let dir = std::env::temp_dir().join(format!("eeg-chaos-broker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let broker = private_broker(&dir, port, false);
    let mut run = Run::on("broker", &bootstrap);
    let group = vec![start(&run, "a"), start(&run, "b"), start(&run, "c")];
    let mut player = run.replay("4");
    run.wait_for(0.3);
    drop(broker);
    std::thread::sleep(Duration::from_secs(5));
    let broker = private_broker(&dir, port, false);
    run.fault();
    assert!(
        player.wait().unwrap().success(),
        "the replay survives the outage"
    );
    stop_all_after(&mut run, group, String::new());
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chaos_a_partition_nobody_consumes_is_reported_and_the_service_rejoins() {
    let mut run = Run::new("zombie");
    // A member that takes every partition and then stops polling: librdkafka heartbeats on a
    // thread of its own, so it stays in the group, owning partitions it never consumes: the
    // same as a member the coordinator forgot to take out. Its poll interval outlasts the
    // test, so that it does not leave by itself at a moment of librdkafka's choosing.
    let zombie: BaseConsumer = client()
        .set("group.id", &run.t.group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "600000")
        .create()
        .unwrap();
    zombie.subscribe(&[&run.t.raw]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while zombie.assignment().unwrap().count() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "the zombie got no partitions");
        let _ = zombie.poll(Duration::from_millis(100));
    }
    let mut player = run.replay("max");
    assert!(player.wait().unwrap().success());
    let config = run.fleet.config.to_str().unwrap().to_string();
    let service = Service::start_with(
        &run.t,
        "alive",
        &["--stall-after-s", "5", "--config", &config],
        &[],
    );
    let port = service.port;
    // Whatever the broker gives the service meanwhile, the zombie's partitions (every one
    // has data) are consumed by nobody: said in the log, /health and /metrics.
    let deadline = Instant::now() + Duration::from_secs(40);
    let (unconsumed, assigned) = loop {
        let detail = http_get(port, "/health")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok());
        if let Some(d) = detail
            && d["consumer"]["unconsumed_partitions"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        {
            break (
                d["consumer"]["unconsumed_partitions"].clone(),
                d["consumer"]["assigned_partitions"].clone(),
            );
        }
        assert!(Instant::now() < deadline, "{}", service.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let unconsumed: Vec<u64> = unconsumed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        unconsumed
            .iter()
            .all(|p| !assigned.as_array().unwrap().contains(&serde_json::json!(p))),
        "{unconsumed:?} vs assigned {assigned}"
    );
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "\neeg_unconsumed_partitions {}\n",
            unconsumed.len()
        )),
        "{metrics}"
    );
    assert!(
        service.log().contains("no member of group"),
        "{}",
        service.log()
    );
    // The coordinator finally takes the zombie out: its heartbeats stop, without a LeaveGroup,
    // and its session expires. (A LeaveGroup from the member that leads a rebalance still in
    // progress leaves tansu 0.6's group without a leader for good: docs/broker.md.) Every
    // window is then published and the report clears.
    vanish(zombie);
    run.fault();
    run.wait_complete();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = http_get(port, "/metrics").unwrap();
        if metrics.contains("\neeg_unconsumed_partitions 0\n") {
            assert!(
                !metrics.contains("\neeg_group_rejoins_total 0\n"),
                "{metrics}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = service.stop_cleanly();
    assert!(log.contains("is consumed again"), "{log}");
    run.finish(Duration::from_secs(5), &log);
}

/// Ends a group member as a crashed process would: its heartbeats stop and it never says
/// goodbye, so the coordinator only takes it out when its session times out.
fn vanish(consumer: BaseConsumer) {
    // SAFETY: the handle is live, destroyed once here, and never used again: the wrapper is
    // forgotten, so its own drop (which would close the consumer, i.e. send a LeaveGroup)
    // never runs. What it owned is leaked, a few kilobytes for the rest of the test run.
    unsafe {
        rdkafka::bindings::rd_kafka_destroy_flags(
            consumer.client().native_ptr(),
            rdkafka::bindings::RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE,
        );
    }
    std::mem::forget(consumer);
}
