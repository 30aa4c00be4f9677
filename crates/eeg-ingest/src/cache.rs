//! A cache beside Kafka (e.g. Redis) that is told every record the service publishes.
//!
//! It is a copy of what Kafka holds, never a source of truth: it takes no part in delivery or
//! offsets, its calls must not block (the partition workers make them on the Kafka path), and
//! the service keeps running whatever state it is in, unless the cache says readiness depends
//! on it.

use std::fmt::Debug;

/// What the service tells a cache, and what the cache tells `/health` and `/metrics`.
pub trait OutputCache: Send + Sync + Debug {
    /// An `eeg.processed/1` record of session `key`, as handed to the producer. Must return at
    /// once (queue, or drop and count).
    fn processed(&self, key: &[u8], record: &[u8]);
    /// An `analytics.trigger/1` record of session `key`, as handed to the producer.
    fn trigger(&self, key: &[u8], record: &[u8]);
    /// The name of the cache's section in `/health` (e.g. `redis`).
    fn name(&self) -> &'static str;
    /// The cache's section in `/health`.
    fn detail(&self) -> serde_json::Value;
    /// Why the service is not ready because of the cache, when readiness depends on it.
    fn not_ready(&self) -> Option<String>;
    /// The cache's lines of the Prometheus exposition, `# HELP` and `# TYPE` included.
    fn metrics(&self, out: &mut String);
}
