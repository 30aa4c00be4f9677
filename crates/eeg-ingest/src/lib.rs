//! The Kafka side of eeg-pipeline: consumer-group membership, ordered per-partition
//! processing through the session core ([`eeg_session::PartitionCore`]), the idempotent
//! producer whose acknowledgements move offsets, the session state topic, topic checks and
//! health. Transport only: what is published, and when an offset may be committed, is
//! decided in `eeg-session`.

pub mod cache;
pub mod health;
pub mod live;
pub mod producer;
pub mod service;
pub mod state;
pub mod topics;
pub mod watchdog;

pub use cache::OutputCache;
pub use health::{Health, Phase};
pub use live::LiveSessions;
pub use producer::{ProduceError, Publisher, Record};
pub use service::{Service, ServiceConfig, ServiceError, Stats, StopHandle, Topics};

/// Reads `FAILPOINTS` from the environment when failpoints are compiled in (tests only);
/// does nothing otherwise. Call once at the start of the process.
pub fn failpoints_from_env() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}
