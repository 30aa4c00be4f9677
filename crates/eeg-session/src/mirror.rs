//! The output seam: what is told every record, trigger event and epoch a partition's core hands to
//! its broker, for copies kept beside it (the live page's latest records, a Redis cache).
//!
//! A copy is never a source of truth: it takes no part in delivery or offsets, and it is told
//! an output when the output is handed over, not when the broker acknowledges it. Its calls
//! are made on the Kafka path, so they must return at once (queue, or drop and count).

use std::fmt::Debug;

/// Told every output as it is handed over.
pub trait OutputObserver: Send + Sync + Debug {
    /// An `eeg.processed/1` record of session `key`, from raw partition `partition`.
    fn processed(&self, partition: i32, key: &[u8], record: &[u8]);
    /// An `analytics.trigger/1` event of session `key`, from raw partition `partition`.
    fn trigger(&self, partition: i32, key: &[u8], record: &[u8]) {
        let _ = (partition, key, record);
    }
    /// An `eeg.epoch/1` record of session `key`, from raw partition `partition`.
    fn epoch(&self, partition: i32, key: &[u8], record: &[u8]) {
        let _ = (partition, key, record);
    }
}

/// A cache beside the broker (e.g. Redis): an observer that also reports on itself, for the
/// service's `/health` and `/metrics`. The service keeps running whatever state it is in,
/// unless the cache says readiness depends on it.
pub trait OutputCache: OutputObserver {
    /// The name of the cache's section in `/health` (e.g. `redis`).
    fn name(&self) -> &'static str;
    /// The cache's section in `/health`.
    fn detail(&self) -> serde_json::Value;
    /// Why the service is not ready because of the cache, when readiness depends on it.
    fn not_ready(&self) -> Option<String>;
    /// The cache's lines of the Prometheus exposition, `# HELP` and `# TYPE` included.
    fn metrics(&self, out: &mut String);
}
