//! `topics check` and `topics create`: the topics are an admin step, which a service waits
//! for rather than failing or creating them itself.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

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
    service.wait_for_log("missing topics", 20);
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
    replay_fixture(&fresh, SESSION, &[]);
    let got = consume(&fresh.processed, Duration::from_secs(60), |r| r.len() >= 10);
    let log = service.stop_cleanly();
    assert!(got.len() >= 10, "{log}");
    assert!(log.contains("topics present; starting"), "{log}");
}

/// A refused connection is said at once, not after the whole timeout: `topics check`,
/// `tail` and `replay` each check the broker first, with a 60 s timeout here.
#[test]
fn commands_name_a_refused_broker_at_once_not_after_their_timeout() {
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    for args in [
        vec!["topics", "check", "--timeout-s", "60"],
        vec!["tail", "--connect-timeout-s", "60"],
        vec!["replay", "--speed", "max", "--connect-timeout-s", "60"],
    ] {
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap);
        if args[0] == "replay" {
            command.arg(fixture());
        }
        let started = Instant::now();
        let o = command.output().unwrap();
        let took = started.elapsed();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.lines().any(|l| l
                .starts_with(&format!("error: cannot reach Kafka at {bootstrap}"))
                && l.contains("Connection refused")),
            "{args:?}: {err}"
        );
        assert!(
            took < Duration::from_secs(20),
            "{args:?} waited {took:?} for a broker that refused at once: {err}"
        );
    }
}
