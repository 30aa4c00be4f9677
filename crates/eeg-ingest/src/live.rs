//! The latest record of every active session, for `/sessions` and the `/ui` page: a person
//! watching the service sees what it publishes without reading Kafka.
//!
//! Bounded whatever the number of sessions: at most [`LiveSessions::CAPACITY`] entries (the
//! least recently updated one goes first), each the last record's JSON, and entries not
//! updated for the idle time are dropped. It is a view, never a source of truth: nothing
//! here takes part in delivery.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The sessions' latest records, updated as records are sent.
#[derive(Debug)]
pub struct LiveSessions {
    enabled: bool,
    idle: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    partition: i32,
    windows: u64,
    first: Instant,
    updated: Instant,
    latest: Vec<u8>,
}

impl Default for LiveSessions {
    fn default() -> Self {
        LiveSessions::new(true, Duration::from_secs(300))
    }
}

impl LiveSessions {
    /// Most sessions kept; with records of a few KB, a few tens of MB at worst.
    pub const CAPACITY: usize = 10_000;

    /// A registry that keeps sessions updated within `idle`; a disabled one keeps nothing.
    pub fn new(enabled: bool, idle: Duration) -> LiveSessions {
        LiveSessions {
            enabled,
            idle,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Notes `record`, the JSON of the window just sent for session `key` of `partition`.
    pub fn record(&self, partition: i32, key: &[u8], record: &[u8]) {
        self.record_at(partition, key, record, Instant::now());
    }

    fn record_at(&self, partition: i32, key: &[u8], record: &[u8], now: Instant) {
        if !self.enabled {
            return;
        }
        let Ok(id) = std::str::from_utf8(key) else {
            return;
        };
        let mut entries = self.entries.lock().expect("live sessions lock");
        if let Some(e) = entries.get_mut(id) {
            e.partition = partition;
            e.windows += 1;
            e.updated = now;
            e.latest.clear();
            e.latest.extend_from_slice(record);
            return;
        }
        if entries.len() >= Self::CAPACITY {
            entries.retain(|_, e| now.duration_since(e.updated) < self.idle);
            if entries.len() >= Self::CAPACITY
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.updated)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            id.to_string(),
            Entry {
                partition,
                windows: 1,
                first: now,
                updated: now,
                latest: record.to_vec(),
            },
        );
    }

    /// The `/sessions` JSON: the sessions updated within the idle time, most recent first,
    /// `limit` of them from `offset`, each with its latest record.
    pub fn page(&self, offset: usize, limit: usize) -> Value {
        self.page_at(offset, limit, Instant::now())
    }

    fn page_at(&self, offset: usize, limit: usize, now: Instant) -> Value {
        let mut entries = self.entries.lock().expect("live sessions lock");
        entries.retain(|_, e| now.duration_since(e.updated) < self.idle);
        let mut active: Vec<(&String, &Entry)> = entries.iter().collect();
        // Most recent first; ties (same instant) by id, so pages are stable.
        active.sort_by(|a, b| b.1.updated.cmp(&a.1.updated).then(a.0.cmp(b.0)));
        let sessions: Vec<Value> = active
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(id, e)| {
                serde_json::json!({
                    "session_id": id,
                    "partition": e.partition,
                    "windows": e.windows,
                    "active_s": now.duration_since(e.first).as_secs_f64(),
                    "last_seen_s": now.duration_since(e.updated).as_secs_f64(),
                    "latest": serde_json::from_slice::<Value>(&e.latest).unwrap_or(Value::Null),
                })
            })
            .collect();
        serde_json::json!({
            "total": active.len(),
            "offset": offset,
            "limit": limit,
            "idle_s": self.idle.as_secs_f64(),
            "sessions": sessions,
        })
    }
}

impl eeg_session::OutputObserver for LiveSessions {
    fn processed(&self, partition: i32, key: &[u8], record: &[u8]) {
        self.record(partition, key, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, w: u64) -> Vec<u8> {
        format!("{{\"session_id\":\"{id}\",\"window_index\":{w}}}").into_bytes()
    }

    #[test]
    fn the_latest_record_of_each_session_most_recent_first_in_pages() {
        let live = LiveSessions::new(true, Duration::from_secs(60));
        let t0 = Instant::now();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            for w in 0..=i as u64 {
                let at = t0 + Duration::from_millis(10 * (i as u64 * 3 + w));
                live.record_at(i as i32, id.as_bytes(), &rec(id, w), at);
            }
        }
        let now = t0 + Duration::from_secs(1);
        let all = live.page_at(0, 10, now);
        assert_eq!(all["total"], 3);
        let ids: Vec<&str> = all["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(all["sessions"][0]["windows"], 3);
        assert_eq!(all["sessions"][0]["latest"]["window_index"], 2);
        assert_eq!(all["sessions"][0]["partition"], 2);
        let second = live.page_at(1, 1, now);
        assert_eq!(second["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(second["sessions"][0]["session_id"], "b");
    }

    #[test]
    fn idle_sessions_leave_and_the_count_stays_bounded() {
        let live = LiveSessions::new(true, Duration::from_secs(5));
        let t0 = Instant::now();
        live.record_at(0, b"old", &rec("old", 0), t0);
        live.record_at(0, b"new", &rec("new", 0), t0 + Duration::from_secs(4));
        let page = live.page_at(0, 10, t0 + Duration::from_secs(6));
        assert_eq!(page["total"], 1);
        assert_eq!(page["sessions"][0]["session_id"], "new");

        let live = LiveSessions::new(true, Duration::from_secs(3600));
        for i in 0..LiveSessions::CAPACITY + 5 {
            let id = format!("s{i}");
            let at = t0 + Duration::from_millis(i as u64);
            live.record_at(0, id.as_bytes(), &rec(&id, 0), at);
        }
        let page = live.page_at(0, 1, t0 + Duration::from_secs(20));
        assert_eq!(page["total"], LiveSessions::CAPACITY);
        // The least recently updated went first.
        let kept = live.entries.lock().unwrap();
        assert!(!kept.contains_key("s0") && kept.contains_key("s5"));
    }

    #[test]
    fn a_disabled_registry_keeps_nothing() {
        let live = LiveSessions::new(false, Duration::from_secs(60));
        live.record(0, b"a", &rec("a", 0));
        assert_eq!(live.page(0, 10)["total"], 0);
    }
}
