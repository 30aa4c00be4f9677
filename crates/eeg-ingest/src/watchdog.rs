//! Watches the consumer group from the outside: a partition of the raw topic whose lag
//! grows while its committed offset does not move, and which is not assigned here, has no
//! working consumer. A group coordinator can lose a member without starting a rebalance
//! (seen with a broker that drops a member expiring while the group re-forms), which leaves
//! its partitions assigned to nobody while every instance looks healthy. The service says so
//! (a warning, `/health`, `eeg_unconsumed_partitions`) and rejoins the group, which makes the
//! coordinator hand out every partition again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use eeg_kafka::AuthContext;

use crate::config::ServiceConfig;
use crate::health::Health;
use crate::stop::StopHandle;

/// What was last seen of one partition.
#[derive(Debug, Clone, Copy)]
struct Seen {
    committed: Option<i64>,
    /// Since when the committed offset has not moved while there was something to consume.
    since: Instant,
}

/// Decides, from periodic looks at committed offsets and high watermarks, which partitions
/// nobody consumes. Pure: the caller brings the observations and the time.
#[derive(Debug)]
pub struct StallTracker {
    stall_after: Duration,
    seen: HashMap<i32, Seen>,
}

impl StallTracker {
    pub fn new(stall_after: Duration) -> StallTracker {
        StallTracker {
            stall_after,
            seen: HashMap::new(),
        }
    }

    /// One look at partition `p`: the group's committed offset (`None`: nothing committed),
    /// the partition's low and high watermarks, and whether it is assigned here. True when
    /// the partition has had messages to consume and no commit for `stall_after`.
    pub fn observe(
        &mut self,
        p: i32,
        committed: Option<i64>,
        low: i64,
        high: i64,
        mine: bool,
        now: Instant,
    ) -> bool {
        let lag = high - committed.unwrap_or(low).max(low);
        let entry = self.seen.entry(p).or_insert(Seen {
            committed,
            since: now,
        });
        if mine || lag <= 0 || entry.committed != committed {
            *entry = Seen {
                committed,
                since: now,
            };
            return false;
        }
        now.duration_since(entry.since) >= self.stall_after
    }
}

/// Starts the watchdog thread: every `interval`, it looks at every partition of the raw
/// topic, reports the ones nobody consumes to `health`, and sets `rejoin` (at most once per
/// twice `stall_after`) for the polling thread to rejoin the group.
pub fn spawn(
    config: ServiceConfig,
    health: Arc<Health>,
    stop: StopHandle,
    rejoin: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("group-watchdog".into())
        .spawn(move || watch(&config, &health, &stop, &rejoin))
}

fn watch(config: &ServiceConfig, health: &Health, stop: &StopHandle, rejoin: &AtomicBool) {
    let stall_after = config.stall_after;
    if stall_after.is_zero() {
        return;
    }
    let interval = (stall_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(10));
    // The group's id, to read its committed offsets; this client never joins the group.
    let consumer: BaseConsumer<AuthContext> = match config
        .client_config()
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .create_with_context(AuthContext(config.auth.clone()))
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("group watchdog not started: {e}");
            return;
        }
    };
    let mut tracker = StallTracker::new(stall_after);
    let mut reported = BTreeSet::new();
    let mut last_rejoin: Option<Instant> = None;
    let topic = &config.topics.raw;
    let timeout = config.connect_timeout;
    while !stop.sleep(interval) {
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
            continue;
        };
        let Some(partitions) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        else {
            continue;
        };
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(topic, p);
        }
        let Ok(committed) = consumer.committed_offsets(tpl, timeout) else {
            continue;
        };
        let assigned = health.assigned();
        let now = Instant::now();
        let mut stalled = BTreeSet::new();
        for &p in &partitions {
            let Ok((low, high)) = consumer.fetch_watermarks(topic, p, timeout) else {
                continue;
            };
            let offset = committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            if tracker.observe(p, offset, low, high, assigned.contains(&p), now) {
                stalled.insert(p);
            }
        }
        if stalled != reported {
            if stalled.is_empty() {
                tracing::info!("every partition of {topic} is consumed again");
            } else {
                tracing::warn!(
                    "partitions {stalled:?} of {topic} have messages and no commit for {} s, and are not assigned here (assigned: {assigned:?}): no member of group {} seems to consume them",
                    stall_after.as_secs(),
                    config.group_id
                );
            }
            health.set_unconsumed(&stalled);
            reported = stalled.clone();
        }
        let due = last_rejoin.is_none_or(|t| now.duration_since(t) >= 2 * stall_after);
        if !stalled.is_empty() && due {
            last_rejoin = Some(now);
            rejoin.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_with_lag_and_no_commit_for_long_enough_is_stalled() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut t = StallTracker::new(Duration::from_secs(30));
        // Lag 5, commit not moving.
        assert!(!t.observe(0, Some(10), 0, 15, false, at(0)));
        assert!(!t.observe(0, Some(10), 0, 15, false, at(29)));
        assert!(t.observe(0, Some(10), 0, 20, false, at(30)));
        // The commit moves: consumed after all.
        assert!(!t.observe(0, Some(12), 0, 20, false, at(31)));
        assert!(!t.observe(0, Some(12), 0, 20, false, at(60)));
        assert!(t.observe(0, Some(12), 0, 20, false, at(61)));
    }

    #[test]
    fn assigned_idle_or_caught_up_partitions_are_not_stalled() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut t = StallTracker::new(Duration::from_secs(30));
        assert!(!t.observe(1, Some(10), 0, 10, false, at(0)));
        assert!(!t.observe(1, Some(10), 0, 10, false, at(100)), "no lag");
        assert!(!t.observe(2, Some(3), 0, 9, true, at(0)));
        assert!(!t.observe(2, Some(3), 0, 9, true, at(100)), "assigned here");
        // Nothing ever committed: the lag counts from the start of the log.
        assert!(!t.observe(3, None, 4, 9, false, at(0)));
        assert!(t.observe(3, None, 4, 9, false, at(40)));
        assert!(!t.observe(4, None, 9, 9, false, at(0)));
        assert!(!t.observe(4, None, 9, 9, false, at(40)), "an empty log");
    }
}
