//! The broker out of reach: at start, later, or for a while mid-run. The service waits and
//! retries without a restart, says each reason once rather than once per retry, and shows
//! the outage in its health while it stays ready.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_broker_that_appears_later_is_used_without_a_restart() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let t = Topics::named("late", &address);
    let service = Service::start_with(&t, "late", &["--connect-timeout-s", "1"], &[]);
    service.wait_for_log(&format!("cannot reach Kafka at {address}"), 10);
    assert_eq!(http_get(service.port, "/health/ready").unwrap().0, 503);

    // Now a broker comes up on that address (a private one, so stopping it is ours to do).
    let dir = std::env::temp_dir().join(format!("{}-broker", t.group));
    std::fs::create_dir_all(&dir).unwrap();
    let broker = private_broker(&dir, port, false);
    cli_ok(&t, "topics", &["create"]);
    replay_fixture(&t, SESSION, &[]);
    let got = published(&t, 695);
    let ready = http_get(service.port, "/health/ready").map(|r| r.0);
    let log = service.stop_cleanly();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got.len(), 695, "{log}");
    assert_eq!(ready, Some(200), "{log}");
    assert!(log.contains("topics present; starting"), "{log}");
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
    let log = service.stop_cleanly();
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
fn a_broker_outage_shows_in_health_while_the_service_stays_ready() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let t = Topics::named("outage", &address);
    let dir = std::env::temp_dir().join(format!("{}-broker", t.group));
    std::fs::create_dir_all(&dir).unwrap();
    let broker = private_broker(&dir, port, false);
    t.make();
    let service = Service::start_with(&t, "outage", &["--connect-timeout-s", "1"], &[]);
    let health = service.port;
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
    drop(broker);
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

    let broker = private_broker(&dir, port, false);
    let up = wait_for("the broker is back", 40, &|d| connected(d));
    let metrics = http_get(health, "/metrics").unwrap().1;
    let log = service.stop_cleanly();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
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
