//! What the service says of itself: its health endpoints and `healthcheck`, its metrics, the
//! live page of its sessions, and its logs as JSON lines.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::browser::attribute;
use crate::support::*;

/// The DOM of `url` from headless Chromium, in a window tall enough for every card the page
/// draws here.
fn chromium_dom(url: &str) -> String {
    crate::common::browser::dom(url, 5000, 2000)
}

#[test]
fn the_live_page_shows_the_active_sessions_and_can_be_switched_off() {
    let t = Topics::create("ui");
    let fixture = fixture();
    let f = fixture.to_str().unwrap();
    // Bands in an order that is not alphabetical (nor the default one), and a rule that
    // fires on every session's first window.
    let bands = ["gamma", "beta", "alpha", "theta", "delta"];
    let config = std::env::temp_dir().join(format!("{}-ui.toml", t.group));
    std::fs::write(
        &config,
        "[bands]\ngamma = [30.0, 45.0]\nbeta = [13.0, 30.0]\nalpha = [8.0, 13.0]\n\
         theta = [4.0, 8.0]\ndelta = [1.0, 4.0]\n\n[[triggers]]\nid = \"signal_seen\"\n\
         metric = \"quality.good_fraction\"\nop = \">=\"\nthreshold = 0.0\n\n[epochs]\n",
    )
    .unwrap();
    let service = Service::start_with(&t, "a", &[], &[("EEG_CONFIG", config.to_str().unwrap())]);
    let port = service.port;
    let addr = format!("127.0.0.1:{port}");
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
    let body = dom.find("<body").unwrap();
    assert_eq!(attribute(&dom, body, "data-errors"), "", "{dom}");
    assert_eq!(attribute(&dom, body, "data-rendered"), "true", "{dom}");
    assert_eq!(attribute(&dom, body, "data-sessions"), "2", "{dom}");
    for id in ["ui-1", "ui-2"] {
        let at = dom.find(&format!("data-session=\"{id}\"")).unwrap();
        let at = dom[..at].rfind('<').unwrap();
        assert_eq!(attribute(&dom, at, "data-trend"), "true", "{id}");
        let card = &dom[at..at + dom[at..].find("</section>").unwrap()];
        // Every chart drew the windows the service had kept: three at least.
        let charts: Vec<(&str, u64)> = card
            .match_indices("<canvas ")
            .map(|(i, _)| {
                let kind = attribute(card, i, "data-chart");
                (kind, attribute(card, i, "data-points").parse().unwrap())
            })
            .collect();
        let kinds: Vec<&str> = charts.iter().map(|c| c.0).collect();
        assert_eq!(kinds, ["indices", "quality", "power"], "{id}");
        assert!(charts.iter().all(|c| c.1 >= 3), "{id}: {charts:?}");
        // The rule fired on the first window: listed, at its time in UTC.
        let events = card.find("data-events=").unwrap();
        assert_eq!(
            attribute(card, card[..events].rfind('<').unwrap(), "data-events"),
            "1"
        );
        assert!(card.contains("<b>signal_seen</b>"), "{card}");
        assert!(card.contains(" UTC</time>"), "{card}");
        // The recording's first two annotations (at 2 s and 3.5 s), their epochs kept.
        let epochs = card.find("data-epochs=").unwrap();
        let shown: usize = attribute(card, card[..epochs].rfind('<').unwrap(), "data-epochs")
            .parse()
            .unwrap();
        assert!(shown >= 2, "{card}");
        for label in ["<b>XLSpike</b>", "<b>Clip Note</b>"] {
            assert!(card.contains(label), "{label}: {card}");
        }
        assert!(card.contains("epoch kept"), "{card}");
        // One channel: one row, its five bands in the config's order.
        assert_eq!(card.matches("class=\"channel\"").count(), 1, "{id}");
        let titles: Vec<usize> = bands
            .iter()
            .map(|b| card.find(&format!("<span title=\"{b} ")).unwrap())
            .collect();
        assert!(titles.is_sorted(), "{id}: bands out of order");
    }
    // The legend lists the bands in the config's order too.
    let legend = &dom[dom.find("id=\"bands-legend\"").unwrap()..];
    let legend = &legend[..legend.find("</div>").unwrap()];
    let order: Vec<usize> = bands
        .iter()
        .map(|b| legend.find(&format!(">{b}<")).unwrap())
        .collect();
    assert!(order.is_sorted(), "{legend}");
    // The clock is UTC.
    let clock = &dom[dom.find("id=\"clock\">").unwrap() + 11..];
    assert!(
        clock[..clock.find('<').unwrap()].ends_with(" UTC"),
        "{clock}"
    );
    assert!(player.wait().unwrap().success());

    // After the replay, each session's latest record is the last one it published.
    let want = fixture_records("ui-1").len();
    let got = published(&t, 2 * want);
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
            .max_by_key(|r| window_index(&r.payload))
            .unwrap();
        // Byte for byte as published: its bands in the config's order.
        let published = std::str::from_utf8(&last.payload).unwrap();
        assert!(
            body.contains(&format!("\"latest\":{published}}}")),
            "{id}: {body}"
        );
        assert_eq!(s["windows"].as_u64(), Some(want as u64), "{id}");
        // Its trend: the last 300 windows, the last one the latest record's.
        let (_, trend) = http_get(port, &format!("/sessions/trend?session={id}&since=0")).unwrap();
        let trend: serde_json::Value = serde_json::from_str(&trend).unwrap();
        let trend = &trend["sessions"][0];
        assert_eq!(trend["bands"], serde_json::json!(bands), "{id}");
        let windows = trend["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 300, "{id}");
        assert_eq!(windows[299]["end_ms"], s["latest"]["end_ms"], "{id}");
        assert_eq!(trend["triggers"][0]["event"]["rule_id"], "signal_seen");
    }
    // No session id ever appears in the metrics.
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(!metrics.contains("ui-1") && !metrics.contains("ui-2"));
    service.stop_cleanly();

    // Switched off: neither the data nor the page is served.
    let off = Service::start_with(&t, "b", &[], &[("HTTP_UI", "off")]);
    off.wait_until(20, || http_get(off.port, "/health/live").is_some());
    assert_eq!(http_get(off.port, "/sessions").unwrap().0, 404);
    assert_eq!(http_get(off.port, "/ui").unwrap().0, 404);
    off.stop_cleanly();
}

/// The exit code of `healthcheck` against a service's endpoints on `port`.
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
    let started = Instant::now();
    let service = Service::start_with(
        &t,
        "nobroker",
        &["--connect-timeout-s", "1"],
        &[("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")],
    );
    let port = service.port;
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
    service.stop_cleanly();
    // Nothing listens any more.
    assert_eq!(healthcheck(port), Some(1));
}

#[test]
fn a_consuming_service_is_ready_and_its_metrics_move_with_traffic() {
    let t = Topics::create("metrics");
    let service = Service::start(&t, "metrics");
    service.wait_ready();
    let port = service.port;
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
    replay_fixture(&t, SESSION, &[]);
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
            // 2792 batches and the recording's four annotations.
            assert_eq!(value(&text, "eeg_messages_consumed_total"), 2796);
            assert_eq!(value(&text, "eeg_processing_seconds_count"), 2796);
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
    service.stop_cleanly();
}

#[test]
fn a_containerised_service_logs_json_lines_without_secrets() {
    let t = Topics::create("json");
    let secret = "hunter2-do-not-log";
    // Standard output is not a terminal here, as in a container: JSON lines by default.
    let service = Service::start_with(
        &t,
        "json",
        &["--kafka", &format!("sasl.password={secret}")],
        &[("LOG_FORMAT", "")],
    );
    service.wait_ready();
    let health = http_get(service.port, "/health").unwrap().1;
    let metrics = http_get(service.port, "/metrics").unwrap().1;
    let log = service.stop_cleanly();
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
