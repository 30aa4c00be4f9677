//! What the service publishes and commits: exactly what `process` computes, with nothing
//! lost or changed when an instance is killed, partitions move, a queue is tiny, output
//! cannot be delivered or a background task fails; and what it keeps of idle sessions.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::support::*;

#[test]
fn the_service_publishes_what_process_computes_and_commits_everything() {
    let t = Topics::create("same");
    let want = fixture_records(SESSION);
    assert!(want.len() > 600);
    replay_fixture(&t, SESSION, &[]);

    let service = Service::start(&t, "a");
    let got = published(&t, want.len());
    std::thread::sleep(Duration::from_secs(2));
    let log = service.stop_cleanly();
    assert_records(&got, &want, &log);
    // The same trigger events as `process --triggers`, keyed by session.
    let want_events = trigger_lines(&fixture(), &t);
    assert!(!want_events.is_empty());
    let events = consume(&t.triggers, Duration::from_secs(10), |r| {
        r.len() >= want_events.len()
    });
    let got_events: Vec<Vec<u8>> = events.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(got_events, want_events);
    assert!(
        events
            .iter()
            .all(|r| r.key.as_deref() == Some(SESSION.as_bytes()))
    );

    // Stopping committed up to the messages the next window still needs, with the
    // session's snapshot: a restart restores it and publishes nothing new.
    let again = Service::start(&t, "b");
    std::thread::sleep(Duration::from_secs(5));
    let log = again.stop_cleanly();
    assert!(log.contains("1 session(s) restored"), "{log}");
    let after = consume(&t.processed, Duration::from_secs(5), |r| {
        r.len() > want.len()
    });
    assert_eq!(after.len(), want.len(), "{log}");
}

#[test]
fn a_killed_service_is_replaced_without_losing_or_changing_a_window() {
    let t = Topics::create("crash");
    let want = fixture_records(SESSION);
    let first = Service::start(&t, "first");
    // 698 s of signal in about 7 s, so the kill lands mid-stream.
    let mut player = spawn_replay(
        &t,
        &[
            fixture().to_str().unwrap(),
            "--session-id",
            SESSION,
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
    let got = published_windows(&t, want.len());
    assert!(player.wait().unwrap().success());
    let log = second.stop_cleanly();
    assert_windows(&got, &want, &log);
    assert!(
        log.contains("session(s) restored"),
        "the second service restored the session from its snapshot:\n{log}"
    );
    // Trigger events too: each one once or more, every copy identical, none missing.
    let want_events: BTreeSet<Vec<u8>> = trigger_lines(&fixture(), &t).into_iter().collect();
    let got_events: BTreeSet<Vec<u8>> = consume(&t.triggers, Duration::from_secs(10), |r| {
        r.iter().map(|x| &x.payload).collect::<BTreeSet<_>>().len() >= want_events.len()
    })
    .into_iter()
    .map(|r| r.payload)
    .collect();
    assert_eq!(got_events, want_events);
}

#[test]
fn partitions_moving_between_instances_lose_and_change_nothing() {
    let t = Topics::create("rebalance");
    const COPIES: usize = 4;
    // Copy i of the recording is session `test_subsecond-i`, with the same numbers.
    let want: Vec<Vec<u8>> = (1..=COPIES)
        .flat_map(|i| fixture_records(&format!("{SESSION}-{i}")))
        .collect();
    let total = want.len();
    let a = Service::start(&t, "a");
    let copies = COPIES.to_string();
    let mut player = spawn_replay(
        &t,
        &[
            fixture().to_str().unwrap(),
            "--session-id",
            SESSION,
            "--speed",
            "60",
            "--sessions",
            &copies,
        ],
    );
    consume(&t.processed, Duration::from_secs(30), |r| {
        r.len() >= total / 5
    });
    // A second instance joins: some partitions move to it while data flows.
    let b = Service::start(&t, "b");
    consume(&t.processed, Duration::from_secs(30), |r| {
        r.len() >= total / 2
    });
    // The first one leaves: its partitions move to the second.
    let log_a = a.stop_cleanly();
    let got = published_windows(&t, total);
    assert!(player.wait().unwrap().success());
    let log_b = b.stop_cleanly();
    // The second instance carried on sessions the first had started, from their snapshots.
    assert!(log_b.contains("session(s) restored"), "{log_b}");
    assert_windows(&got, &want, &format!("{log_a}\n{log_b}"));
}

#[test]
fn output_that_cannot_be_delivered_stops_the_service_without_committing_past_it() {
    let t = Topics::create("lost");
    replay_fixture(&t, SESSION, &[]);
    // The consumer reads from the broker; the producer can never reach it (nothing listens
    // on port 1), so every output times out after 3 s, as when a broker is gone.
    let service = Service::start_with(
        &t,
        "lost",
        &[
            "--kafka",
            "message.timeout.ms=3000",
            "--producer-kafka",
            "bootstrap.servers=127.0.0.1:1",
        ],
        &[],
    );
    let (status, log) = service.exit_within(60);
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
fn a_tiny_partition_queue_loses_nothing() {
    let t = Topics::create("tiny-queue");
    let want = fixture_records(SESSION);
    replay_fixture(&t, SESSION, &[]);
    // librdkafka fetches ahead 8 messages or 64 KiB for the partition, then waits for its
    // worker: the backlog of 2792 messages is fetched over and over in small pieces.
    let service = Service::start_with(
        &t,
        "tiny-queue",
        &["--partition-queue", "8", "--partition-buffer-kib", "64"],
        &[],
    );
    let got = published(&t, want.len());
    let log = service.stop_cleanly();
    assert_records(&got, &want, &log);
    assert!(log.contains("session_resets=0"), "{log}");
}

#[test]
fn idle_sessions_are_evicted_and_their_snapshot_deleted() {
    let t = Topics::create("idle");
    replay_fixture(&t, SESSION, &[]);
    let service = Service::start_with(
        &t,
        "idle",
        &["--session-idle-s", "2", "--status-interval-s", "1"],
        &[],
    );
    published(&t, fixture_records(SESSION).len());
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
    let log = service.stop_cleanly();
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
        .filter(|r| r.key.as_deref() == Some(SESSION.as_bytes()))
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

/// Fails the partition worker on its 41st message, in this process and in the binary.
const WORKER_FAULT: &str = "40*off->panic(injected fault)";

#[test]
fn a_failing_background_task_is_logged_shown_in_health_and_loses_nothing() {
    let t = Topics::create("fault");
    let want = fixture_records(SESSION);
    replay_fixture(&t, SESSION, &[]);

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
        epochs: None,
    };
    let service = eeg_ingest::Service::new(config).unwrap();
    let (health, stats) = (service.health(), service.stats());
    let result = std::thread::spawn(move || service.run())
        .join()
        .expect("the service returns instead of panicking");
    fail::remove("partition-worker-message");
    let err = result.expect_err("a failed task ends the service with an error");
    assert!(
        matches!(&err, eeg_ingest::ServiceError::TaskFailed(
            eeg_ingest::Failure::WorkerPanicked { message, .. })
            if message == "injected fault"),
        "{err}"
    );
    let reason = health.ready().unwrap_err();
    assert!(
        matches!(&reason, eeg_ingest::NotReady::Failed(r) if r.starts_with("partition ")),
        "{reason}"
    );
    let reason = reason.to_string();
    assert!(reason.starts_with("failed: partition "), "{reason}");
    assert!(reason.contains("worker failed: injected fault"), "{reason}");
    let detail = health.detail(&stats, "test");
    assert_eq!(detail["consumer"]["state"], "failed", "{detail}");
    assert_eq!(detail["status"], "not_ready", "{detail}");

    // The binary: the same failure is one error line naming the task, then exit 1, the
    // code an orchestrator restarts on.
    let faulty = Service::start_with(
        &t,
        "faulty",
        &[],
        &[(
            "FAILPOINTS",
            &format!("partition-worker-message={WORKER_FAULT}"),
        )],
    );
    let (status, log) = faulty.exit_within(60);
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
    let got = published_windows(&t, want.len());
    let log = healthy.stop_cleanly();
    assert_windows(&got, &want, &log);
}
