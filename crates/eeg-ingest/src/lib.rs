//! The Kafka side of eeg-pipeline: consumer-group membership, ordered per-partition
//! processing through the session core ([`eeg_session::PartitionCore`]), the idempotent
//! producer whose acknowledgements move offsets, the session state topic, topic checks and
//! health. Transport only: what is published, and when an offset may be committed, is
//! decided in `eeg-session`.
//!
//! The modules, from the wiring down (each imports only modules below it):
//! - [`service`]: the wiring and the polling loop; `group`: membership, rebalances,
//!   partitions started and released, offsets stored; `worker`: one partition's worker and
//!   its Kafka outbox; [`watchdog`]: partitions nobody consumes.
//! - [`producer`] (idempotent, acknowledgements settle the ledger's tickets), [`state`]
//!   (reading snapshots back), [`topics`] (checks and the admin step), `guard` (offsets
//!   handed over once, in order), [`bell`] (waking a worker).
//! - [`health`] (readiness and the `/health` view), [`metrics`] (the Prometheus text),
//!   [`live`] (each session's latest record), [`figures`] (counters and histograms).
//! - [`config`] (topics and settings), [`memory`] (the default memory budget for sessions,
//!   from the container's limit), [`error`] (failures, typed), [`message`] (headers of a
//!   consumed message), [`stop`].

pub mod bell;
pub mod config;
pub mod error;
pub mod figures;
mod group;
mod guard;
pub mod health;
pub mod live;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod producer;
pub mod service;
pub mod state;
pub mod stop;
pub mod topics;
pub mod watchdog;
mod worker;

pub use config::{ServiceConfig, Topics};
pub use error::{Failure, ProduceError, ServiceError};
pub use figures::Stats;
pub use health::{Health, NotReady, Phase};
pub use live::LiveSessions;
pub use message::content_type;
pub use producer::{Publisher, Record};
pub use service::Service;
pub use stop::StopHandle;

/// Reads `FAILPOINTS` from the environment when failpoints are compiled in (tests only);
/// does nothing otherwise. Call once at the start of the process.
pub fn failpoints_from_env() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}
