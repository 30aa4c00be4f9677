//! Credentials: SASL/SCRAM against a broker that requires it, and MSK IAM tokens signed
//! with the task's AWS credentials; a wrong one is named, not hung on, and no secret is ever
//! shown.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn scram_credentials_are_used_and_a_wrong_password_is_named_not_hung() {
    let dir = std::env::temp_dir().join(format!("eeg-scram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    // The user is made while the broker is open, then it restarts requiring SASL.
    let open = private_broker(&dir, port, false);
    let tansu_user = Command::new(tansu_binary())
        .args(["user", "create", "eeg", "correct-horse", "--broker"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .status()
        .unwrap();
    assert!(tansu_user.success());
    drop(open);
    let broker = private_broker(&dir, port, true);
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
    let service = Service::start_with(
        &t,
        "scram",
        &["--connect-timeout-s", "2"],
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "eeg"),
            ("KAFKA_SASL_PASSWORD", "battery-staple"),
        ],
    );
    let reason = service.not_ready_because("authentication failed");
    let (status, service_log) = service.stop();
    drop(broker);
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
    let secret = "wJalrXUtnFEMI-K7MDENG-do-not-log";
    let service = Service::start_with(
        &t,
        "iam",
        &["--connect-timeout-s", "2"],
        &[
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
    let reason = service.not_ready_because("authentication failed");
    let health = http_get(service.port, "/health").unwrap().1;
    let metrics = http_get(service.port, "/metrics").unwrap().1;
    let log = service.stop_cleanly();
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
