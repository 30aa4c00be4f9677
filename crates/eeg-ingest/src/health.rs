//! What the service reports about itself: readiness with its reason, a detailed JSON view,
//! and Prometheus metrics. Updated by the service as its state changes; read by the HTTP
//! endpoints. No secret is ever stored here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;

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
            }
            s.phase = phase;
        });
    }

    pub fn phase(&self) -> Phase {
        self.with(|s| s.phase.clone())
    }

    pub fn set_error(&self, error: String) {
        self.with(|s| s.last_error = Some(error));
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
    /// the reason, in one line.
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

    /// The detailed view of `/health`, as JSON.
    pub fn detail(&self, stats: &Stats, version: &str) -> serde_json::Value {
        let (phase, assigned, last_error, lag) = self.with(|s| {
            (
                s.phase.clone(),
                s.assigned.iter().copied().collect::<Vec<_>>(),
                s.last_error.clone(),
                s.lag
                    .iter()
                    .map(|(p, l)| serde_json::json!({"partition": p, "lag": l}))
                    .collect::<Vec<_>>(),
            )
        });
        let n = |name: &str| stats.get(name);
        serde_json::json!({
            // From the same snapshot as the rest, not a second look at the phase.
            "status": if phase == Phase::Consuming { "ready" } else { "not_ready" },
            "version": version,
            "consumer": {
                "state": phase.name(),
                "reason": phase.reason(),
                "assigned_partitions": assigned,
                "lag": lag,
                "consumed": n("messages_consumed"),
                "rebalances": n("rebalances"),
            },
            "broker": {
                "connected": matches!(phase, Phase::Consuming | Phase::Stopping),
                "last_error": last_error,
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
        })
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
    let (assigned, lag) = health.with(|s| (s.assigned.len() as u64, s.lag.clone()));
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
        "eeg_ready",
        "gauge",
        "1 when the service is ready.",
        u64::from(health.ready().is_ok()),
    );
    out
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
}
