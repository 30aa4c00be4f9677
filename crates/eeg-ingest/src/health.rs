//! What the service reports about itself: readiness with its reason, a detailed JSON view,
//! and Prometheus metrics. Updated by the service as its state changes; read by the HTTP
//! endpoints. No secret is ever stored here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::figures::{Stats, read};

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

/// Why the service is not ready, as `/health/ready` says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    #[error("starting: Kafka not contacted yet")]
    Starting,
    #[error("broker not reachable: {0}")]
    Broker(String),
    #[error("topics not ready: {0}")]
    Topics(String),
    #[error("failed: {0}")]
    Failed(String),
    #[error("stopping")]
    Stopping,
    /// The cache beside Kafka, when readiness depends on it; the cache words the reason.
    #[error("{0}")]
    Cache(String),
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

/// What `/metrics` shows of [`Health`], read at once.
#[derive(Debug)]
pub(crate) struct Gauges {
    pub assigned: u64,
    pub lag: BTreeMap<i32, i64>,
    pub connected: bool,
    pub down_s: u64,
    pub outages: u64,
    pub unconsumed: u64,
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

    /// The partitions nobody seems to consume (the group watchdog finds them).
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
    /// the reason. A broker outage while consuming does not make the service unready:
    /// librdkafka reconnects by itself, the committed offsets and snapshots are safe, and a
    /// replaced container would meet the same outage; `/health` and `/metrics` show it.
    pub fn ready(&self) -> Result<(), NotReady> {
        match self.phase() {
            Phase::Consuming => Ok(()),
            Phase::Starting => Err(NotReady::Starting),
            Phase::WaitingForBroker(r) => Err(NotReady::Broker(r)),
            Phase::WaitingForTopics(r) => Err(NotReady::Topics(r)),
            Phase::Failed(r) => Err(NotReady::Failed(r)),
            Phase::Stopping => Err(NotReady::Stopping),
        }
    }

    /// [`Health::ready`], and the cache's readiness when the service's depends on it.
    pub fn ready_with(&self, stats: &Stats) -> Result<(), NotReady> {
        self.ready()?;
        match stats.cache.as_ref().and_then(|c| c.not_ready()) {
            Some(reason) => Err(NotReady::Cache(reason)),
            None => Ok(()),
        }
    }

    /// The figures of the group and the broker connection that `/metrics` shows.
    pub(crate) fn gauges(&self) -> Gauges {
        self.with(|s| Gauges {
            assigned: s.assigned.len() as u64,
            lag: s.lag.clone(),
            connected: Health::connected(s),
            down_s: s.outage.as_ref().map_or(0, |o| o.since.elapsed().as_secs()),
            outages: s.outages,
            unconsumed: s.unconsumed.len() as u64,
        })
    }

    /// What `/health/ready` adds to `ready` while the service is ready but partitions wait
    /// for session memory: a restart would not make room (the sessions come back from their
    /// snapshots), so it stays ready and says so.
    pub fn ready_note(stats: &Stats) -> Option<String> {
        let held = stats.memory.held();
        if held.is_empty() {
            return None;
        }
        let partitions: Vec<String> = held.iter().map(|(p, _)| p.to_string()).collect();
        let then = if stats.memory.stuck() {
            "every partition holding sessions waits, so none will end here: raise EEG_SESSION_MEMORY_MIB or add instances"
        } else {
            "they are read again when sessions end or partitions move to other instances"
        };
        Some(format!(
            "partitions {} wait for session memory ({} of {} MiB reserved); {then}",
            partitions.join(", "),
            stats.memory.reserved() >> 20,
            stats.memory.limit() >> 20
        ))
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
        let (t, c) = (&stats.transport, &stats.core);
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
                "consumed": read(&t.messages_consumed),
                "rebalances": read(&t.rebalances),
                // Partitions with messages and no commit for a while, not assigned here:
                // nobody in the group seems to consume them.
                "unconsumed_partitions": unconsumed,
                "group_rejoins": read(&t.group_rejoins),
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
                "records_published": read(&c.records_published),
                "triggers_published": read(&c.triggers_published),
                "dead_letters": read(&c.dead_letters),
                "delivery_failed": matches!(phase, Phase::Failed(_)),
            },
            "sessions": {
                "active": read(&c.active_sessions),
                "started": read(&c.sessions_started),
                "evicted": read(&c.sessions_evicted),
                "resets": read(&c.session_resets),
                "duplicates_dropped": read(&c.duplicates_dropped),
                "state_bytes": read(&c.session_state_bytes),
            },
            "memory": {
                "budget_bytes": stats.memory.limit(),
                "reserved_bytes": stats.memory.reserved(),
                // Partitions not read until the session their next message starts fits.
                "waiting_partitions": stats
                    .memory
                    .held()
                    .iter()
                    .map(|(p, needs)| serde_json::json!({"partition": p, "needs_bytes": needs}))
                    .collect::<Vec<_>>(),
                "waits": read(&stats.memory.figures().memory_holds),
                // Every partition holding sessions waits: nothing here will free memory.
                "stuck": stats.memory.stuck(),
            },
        });
        if let Some(cache) = &stats.cache {
            detail[cache.name()] = cache.detail();
        }
        detail
    }
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

    #[test]
    fn readiness_follows_the_phase_and_names_the_reason() {
        let h = Health::default();
        assert_eq!(h.ready(), Err(NotReady::Starting));
        assert!(h.ready().unwrap_err().to_string().starts_with("starting"));
        h.set_phase(Phase::WaitingForTopics("missing topics: a, b".into()));
        assert_eq!(
            h.ready().unwrap_err().to_string(),
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

        h.broker_up();
        let d = h.detail(&stats, "v");
        assert_eq!(d["broker"]["connected"], true);
        assert_eq!(d["broker"]["down_since_ms"], serde_json::Value::Null);
        assert_eq!(d["broker"]["down_reason"], serde_json::Value::Null);
        assert_eq!(d["broker"]["last_error"], "all brokers down: later");
    }

    #[test]
    fn partitions_waiting_for_memory_show_and_leave_the_service_ready() {
        let stats = Stats {
            memory: eeg_session::MemoryBudget::new(100 << 20),
            ..Stats::default()
        };
        let h = Health::default();
        h.set_phase(Phase::Consuming);
        assert_eq!(Health::ready_note(&stats), None);
        let taken = stats.memory.try_reserve(1, 90 << 20).unwrap();
        stats.memory.try_reserve(4, 20 << 20).unwrap_err();
        assert!(h.ready_with(&stats).is_ok());
        assert_eq!(
            Health::ready_note(&stats).unwrap(),
            "partitions 4 wait for session memory (90 of 100 MiB reserved); they are read again when sessions end or partitions move to other instances"
        );
        let d = h.detail(&stats, "t");
        assert_eq!(d["status"], "ready");
        assert_eq!(d["memory"]["budget_bytes"], 100u64 << 20);
        assert_eq!(d["memory"]["reserved_bytes"], 90u64 << 20);
        assert_eq!(
            d["memory"]["waiting_partitions"],
            serde_json::json!([{"partition": 4, "needs_bytes": 20u64 << 20}])
        );
        assert_eq!(d["memory"]["waits"], 1);
        drop(taken);
        stats.memory.try_reserve(4, 20 << 20).unwrap();
        assert_eq!(Health::ready_note(&stats), None);
    }
}
