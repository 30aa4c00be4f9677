//! What the service reports about itself: readiness with its reason, a detailed JSON view,
//! and Prometheus metrics. Updated by the service as its state changes; read by the HTTP
//! endpoints. No secret is ever stored here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::service::Stats;

/// Where the service is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Process up, Kafka not contacted yet.
    Starting,
    /// The broker did not answer; the reason names the servers and the error.
    WaitingForBroker(String),
    /// The broker answered but topics are missing or wrong; the reason names them.
    WaitingForTopics(String),
    /// Subscribed and consuming (partitions may or may not be assigned yet).
    Consuming,
    /// Output could not be delivered; the service stops.
    Failed(String),
    /// SIGTERM/SIGINT received; finishing in-flight work.
    Stopping,
}

impl Phase {
    /// The state's name in `/health`.
    fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::WaitingForBroker(_) => "waiting_for_broker",
            Phase::WaitingForTopics(_) => "waiting_for_topics",
            Phase::Consuming => "consuming",
            Phase::Failed(_) => "failed",
            Phase::Stopping => "stopping",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Phase::WaitingForBroker(r) | Phase::WaitingForTopics(r) | Phase::Failed(r) => Some(r),
            Phase::Starting | Phase::Consuming | Phase::Stopping => None,
        }
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    assigned: BTreeSet<i32>,
    /// Messages on the broker not yet consumed, per assigned partition of the raw topic.
    lag: BTreeMap<i32, i64>,
    /// The last error seen talking to Kafka, kept after recovery for the detailed view.
    last_error: Option<String>,
    /// When it happened, Unix ms.
    last_error_at_ms: Option<u64>,
    /// While no broker can be reached: since when and why.
    outage: Option<Outage>,
    /// Outages since the start.
    outages: u64,
    /// Partitions of the raw topic with messages and no commit for a while, not assigned
    /// here: nobody seems to consume them.
    unconsumed: BTreeSet<i32>,
}

/// A time when no broker could be reached. The service stays ready meanwhile (see
/// [`Health::ready`]); `/health` and `/metrics` show it.
#[derive(Debug, Clone)]
struct Outage {
    since: Instant,
    since_ms: u64,
    reason: String,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Shared health of one service.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            state: Mutex::new(State {
                phase: Phase::Starting,
                assigned: BTreeSet::new(),
                lag: BTreeMap::new(),
                last_error: None,
                last_error_at_ms: None,
                outage: None,
                outages: 0,
                unconsumed: BTreeSet::new(),
            }),
        }
    }
}

impl Health {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("health lock"))
    }

    pub fn set_phase(&self, phase: Phase) {
        self.with(|s| {
            if let Some(e) = phase.reason() {
                s.last_error = Some(e.to_string());
                s.last_error_at_ms = Some(unix_ms());
            }
            // Consuming starts right after the broker answered the topic check.
            if phase == Phase::Consuming {
                s.outage = None;
            }
            s.phase = phase;
        });
    }

    pub fn phase(&self) -> Phase {
        self.with(|s| s.phase.clone())
    }

    pub fn set_error(&self, error: String) {
        self.with(|s| {
            s.last_error = Some(error);
            s.last_error_at_ms = Some(unix_ms());
        });
    }

    /// Whether a broker can be reached, as far as the service knows: consuming, and no
    /// client has reported all brokers down since a broker was last seen up.
    fn connected(s: &State) -> bool {
        matches!(s.phase, Phase::Consuming | Phase::Stopping) && s.outage.is_none()
    }

    /// The partitions assigned here.
    pub fn assigned(&self) -> BTreeSet<i32> {
        self.with(|s| s.assigned.clone())
    }

    /// The partitions nobody seems to consume (see [`crate::watchdog`]).
    pub fn set_unconsumed(&self, partitions: &BTreeSet<i32>) {
        self.with(|s| s.unconsumed.clone_from(partitions));
    }

    pub fn assign(&self, partitions: &[i32]) {
        self.with(|s| s.assigned.extend(partitions));
    }

    pub fn revoke(&self, partitions: &[i32]) {
        self.with(|s| {
            for p in partitions {
                s.assigned.remove(p);
                s.lag.remove(p);
            }
        });
    }

    /// Records the consumer lag of `partition` (ignored unless it is assigned).
    pub fn set_lag(&self, partition: i32, lag: i64) {
        self.with(|s| {
            if s.assigned.contains(&partition) {
                s.lag.insert(partition, lag.max(0));
            }
        });
    }

    /// `Ok` when the service is connected, its topics exist and it is consuming; otherwise
    /// the reason, in one line. A broker outage while consuming does not make the service
    /// unready: librdkafka reconnects by itself, the committed offsets and snapshots are safe,
    /// and a replaced container would meet the same outage; `/health` and `/metrics` show it.
    pub fn ready(&self) -> Result<(), String> {
        match self.phase() {
            Phase::Consuming => Ok(()),
            Phase::Starting => Err("starting: Kafka not contacted yet".into()),
            Phase::WaitingForBroker(r) => Err(format!("broker not reachable: {r}")),
            Phase::WaitingForTopics(r) => Err(format!("topics not ready: {r}")),
            Phase::Failed(r) => Err(format!("failed: {r}")),
            Phase::Stopping => Err("stopping".into()),
        }
    }

    /// [`Health::ready`], and the cache's readiness when the service's depends on it.
    pub fn ready_with(&self, stats: &Stats) -> Result<(), String> {
        self.ready()?;
        match stats.cache.as_ref().and_then(|c| c.not_ready()) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// The detailed view of `/health`, as JSON.
    pub fn detail(&self, stats: &Stats, version: &str) -> serde_json::Value {
        let (phase, assigned, last_error, lag, connected, outage, outages, unconsumed) =
            self.with(|s| {
                (
                    s.phase.clone(),
                    s.assigned.iter().copied().collect::<Vec<_>>(),
                    (s.last_error.clone(), s.last_error_at_ms),
                    s.lag
                        .iter()
                        .map(|(p, l)| serde_json::json!({"partition": p, "lag": l}))
                        .collect::<Vec<_>>(),
                    Health::connected(s),
                    s.outage.clone(),
                    s.outages,
                    s.unconsumed.iter().copied().collect::<Vec<_>>(),
                )
            });
        let n = |name: &str| stats.get(name);
        let cache_ready = stats.cache.as_ref().is_none_or(|c| c.not_ready().is_none());
        let mut detail = serde_json::json!({
            // From the same snapshot as the rest, not a second look at the phase.
            "status": if phase == Phase::Consuming && cache_ready { "ready" } else { "not_ready" },
            "version": version,
            "consumer": {
                "state": phase.name(),
                "reason": phase.reason(),
                "assigned_partitions": assigned,
                "lag": lag,
                "consumed": n("messages_consumed"),
                "rebalances": n("rebalances"),
                // Partitions with messages and no commit for a while, not assigned here:
                // nobody in the group seems to consume them.
                "unconsumed_partitions": unconsumed,
                "group_rejoins": n("group_rejoins"),
            },
            "broker": {
                "connected": connected,
                // While no broker can be reached: since when (Unix ms), for how long, why.
                "down_since_ms": outage.as_ref().map(|o| o.since_ms),
                "down_for_s": outage.as_ref().map(|o| o.since.elapsed().as_secs()),
                "down_reason": outage.as_ref().map(|o| o.reason.as_str()),
                "outages": outages,
                "last_error": last_error.0,
                "last_error_at_ms": last_error.1,
            },
            "producer": {
                "records_published": n("records_published"),
                "triggers_published": n("triggers_published"),
                "dead_letters": n("dead_letters"),
                "delivery_failed": matches!(phase, Phase::Failed(_)),
            },
            "sessions": {
                "active": n("active_sessions"),
                "started": n("sessions_started"),
                "evicted": n("sessions_evicted"),
                "resets": n("session_resets"),
                "duplicates_dropped": n("duplicates_dropped"),
                "state_bytes": n("session_state_bytes"),
            },
        });
        if let Some(cache) = &stats.cache {
            detail[cache.name()] = cache.detail();
        }
        detail
    }
}

/// The Prometheus text exposition of `stats` and `health`. Labels stay bounded: no session
/// or device id ever becomes a label.
pub fn metrics(stats: &Stats, health: &Health) -> String {
    let mut out = String::new();
    // Every counter and gauge of the one list: `eeg_<name>_total` or `eeg_<name>`.
    stats.each(|f| {
        let (name, kind) = match f.kind {
            eeg_session::MetricKind::Counter => (format!("eeg_{}_total", f.name), "counter"),
            eeg_session::MetricKind::Gauge => (format!("eeg_{}", f.name), "gauge"),
        };
        let _ = writeln!(out, "# HELP {name} {}", f.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {}", f.value);
    });
    let (assigned, lag, connected, down_s, outages, unconsumed) = health.with(|s| {
        (
            s.assigned.len() as u64,
            s.lag.clone(),
            Health::connected(s),
            s.outage.as_ref().map_or(0, |o| o.since.elapsed().as_secs()),
            s.outages,
            s.unconsumed.len() as u64,
        )
    });
    let _ = writeln!(
        out,
        "# HELP eeg_consumer_lag Messages of the raw topic on the broker not consumed yet.\n# TYPE eeg_consumer_lag gauge"
    );
    for (p, l) in &lag {
        let _ = writeln!(out, "eeg_consumer_lag{{partition=\"{p}\"}} {l}");
    }
    stats.latency.write(
        &mut out,
        "eeg_processing_seconds",
        "Time to decode, process and hand over the output of one raw message.",
    );
    stats.window_latency.write(&mut out);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    metric(
        "eeg_assigned_partitions",
        "gauge",
        "Partitions of the raw topic assigned to this instance.",
        assigned,
    );
    metric(
        "eeg_unconsumed_partitions",
        "gauge",
        "Partitions of the raw topic with messages and no commit for a while, not assigned here.",
        unconsumed,
    );
    metric(
        "eeg_ready",
        "gauge",
        "1 when the service is ready.",
        u64::from(health.ready_with(stats).is_ok()),
    );
    metric(
        "eeg_broker_connected",
        "gauge",
        "1 when consuming with a broker reachable; 0 while starting or in a broker outage.",
        u64::from(connected),
    );
    metric(
        "eeg_broker_down_seconds",
        "gauge",
        "Seconds since every broker became unreachable; 0 when one is reachable.",
        down_s,
    );
    metric(
        "eeg_broker_outages_total",
        "counter",
        "Times every broker became unreachable.",
        outages,
    );
    if let Some(cache) = &stats.cache {
        cache.metrics(&mut out);
    }
    out
}

/// Broker outages as librdkafka reports them, from any client of the process.
impl eeg_kafka::client_log::BrokerObserver for Health {
    fn broker_down(&self, reason: &str) {
        self.with(|s| {
            let now = unix_ms();
            if s.outage.is_none() {
                s.outages += 1;
                s.outage = Some(Outage {
                    since: Instant::now(),
                    since_ms: now,
                    reason: reason.to_string(),
                });
            }
            s.last_error = Some(reason.to_string());
            s.last_error_at_ms = Some(now);
        });
    }

    fn broker_up(&self) {
        self.with(|s| s.outage = None);
    }

    fn broker_error(&self, reason: &str) {
        self.set_error(reason.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn readiness_follows_the_phase_and_names_the_reason() {
        let h = Health::default();
        assert!(h.ready().unwrap_err().starts_with("starting"));
        h.set_phase(Phase::WaitingForTopics("missing topics: a, b".into()));
        assert_eq!(
            h.ready().unwrap_err(),
            "topics not ready: missing topics: a, b"
        );
        h.set_phase(Phase::Consuming);
        assert!(h.ready().is_ok());
        let d = h.detail(&Stats::default(), "1.2.3");
        assert_eq!(d["status"], "ready");
        assert_eq!(d["broker"]["last_error"], "missing topics: a, b");
        h.set_phase(Phase::Stopping);
        assert!(h.ready().is_err());
    }

    #[test]
    fn a_broker_outage_shows_but_leaves_the_service_ready() {
        use eeg_kafka::client_log::BrokerObserver;
        let h = Health::default();
        let stats = Stats::default();
        h.broker_down(
            "all brokers down: b:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection refused",
        );
        // Before consuming: not connected anyway, and the outage is dated.
        let d = h.detail(&stats, "v");
        assert_eq!(d["broker"]["connected"], false);
        assert!(d["broker"]["down_since_ms"].as_u64().unwrap() > 1_700_000_000_000);
        h.set_phase(Phase::Consuming);
        let d = h.detail(&stats, "v");
        assert_eq!(d["broker"]["connected"], true);
        assert_eq!(d["broker"]["down_since_ms"], serde_json::Value::Null);

        h.broker_down(
            "all brokers down: b:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection refused",
        );
        h.broker_down("all brokers down: later");
        assert!(h.ready().is_ok());
        let d = h.detail(&stats, "v");
        assert_eq!(d["status"], "ready");
        assert_eq!(d["broker"]["connected"], false);
        assert!(
            d["broker"]["down_reason"]
                .as_str()
                .unwrap()
                .contains("Connection refused")
        );
        assert_eq!(d["broker"]["last_error"], "all brokers down: later");
        assert!(d["broker"]["last_error_at_ms"].as_u64().is_some());
        assert!(d["broker"]["down_for_s"].as_u64().is_some());
        assert_eq!(d["broker"]["outages"], 2);
        let text = metrics(&stats, &h);
        assert!(text.contains("\neeg_broker_connected 0\n"), "{text}");
        assert!(text.contains("\neeg_broker_outages_total 2\n"), "{text}");
        assert!(text.contains("\neeg_ready 1\n"), "{text}");

        h.broker_up();
        let d = h.detail(&stats, "v");
        assert_eq!(d["broker"]["connected"], true);
        assert_eq!(d["broker"]["down_since_ms"], serde_json::Value::Null);
        assert_eq!(d["broker"]["down_reason"], serde_json::Value::Null);
        assert_eq!(d["broker"]["last_error"], "all brokers down: later");
        let text = metrics(&stats, &h);
        assert!(text.contains("\neeg_broker_connected 1\n"), "{text}");
        assert!(text.contains("\neeg_broker_down_seconds 0\n"), "{text}");
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let stats = Stats::default();
        stats
            .transport
            .messages_consumed
            .store(7, Ordering::Relaxed);
        stats.latency.observe(std::time::Duration::from_micros(70));
        stats.latency.observe(std::time::Duration::from_millis(3));
        let h = Health::default();
        h.assign(&[0, 2]);
        h.set_lag(2, 41);
        h.set_lag(1, 5); // not assigned: ignored
        let text = metrics(&stats, &h);
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "));
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                value.parse::<f64>().unwrap();
            }
        }
        assert!(text.contains("\neeg_messages_consumed_total 7\n"));
        assert!(text.contains("\neeg_assigned_partitions 2\n"));
        assert!(text.contains("\neeg_ready 0\n"));
        assert!(text.contains("\neeg_consumer_lag{partition=\"2\"} 41\n"));
        assert!(!text.contains("partition=\"1\""));
        // Cumulative buckets: 70 µs falls in le=0.0001, 3 ms in le=0.005.
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"0.00005\"} 0\n"));
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"0.0025\"} 1\n"));
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("\neeg_processing_seconds_count 2\n"));
        assert!(text.contains("\neeg_processing_seconds_sum 0.00307\n"));
    }

    #[test]
    fn window_latencies_are_one_histogram_with_a_label_per_starting_point() {
        let stats = Stats::default();
        let now_ms = 1_800_000_000_000;
        let lat = &stats.window_latency;
        // 40 ms behind the window's end; consumed more than 3 s ago.
        let long_ago = std::time::Instant::now()
            .checked_sub(std::time::Duration::from_secs(3))
            .unwrap();
        lat.observe(now_ms - 40, Some(long_ago), now_ms);
        // A device clock 2 s fast counts as 0; no consume time (nothing observed for it).
        lat.observe(now_ms + 2_000, None, now_ms);
        let text = metrics(&stats, &Health::default());
        let name = "eeg_window_latency_seconds";
        assert_eq!(
            text.matches(&format!("# TYPE {name} histogram\n")).count(),
            1
        );
        for (series, count) in [
            ("since=\"window_end\",le=\"0.001\"", 1),
            ("since=\"window_end\",le=\"0.025\"", 1),
            ("since=\"window_end\",le=\"0.05\"", 2),
            ("since=\"window_end\",le=\"+Inf\"", 2),
            ("since=\"consume\",le=\"2.5\"", 0),
            ("since=\"consume\",le=\"+Inf\"", 1),
        ] {
            assert!(
                text.contains(&format!("\n{name}_bucket{{{series}}} {count}\n")),
                "{series} {count}:\n{text}"
            );
        }
        assert!(text.contains(&format!("\n{name}_count{{since=\"window_end\"}} 2\n")));
        assert!(text.contains(&format!("\n{name}_sum{{since=\"window_end\"}} 0.04\n")));
        assert!(text.contains(&format!("\n{name}_count{{since=\"consume\"}} 1\n")));
        let consume_sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_sum{{since=\"consume\"}} ")))
            .unwrap()
            .parse()
            .unwrap();
        assert!(consume_sum >= 3.0, "{consume_sum}");
    }
}
