//! The Kafka side of eeg-pipeline: consumer-group membership, ordered per-partition
//! processing of `eeg.raw/1` batches, offsets stored only behind acknowledged output,
//! dead letters, and the per-session state shared with the offline `process` command.

pub mod health;
pub mod service;
pub mod sessions;
pub mod state;
pub mod topics;

pub use health::{Health, Phase};
pub use service::{Service, ServiceConfig, ServiceError, Stats, StopHandle, Topics};
pub use sessions::{Admission, ResetReason, Session, Sessions, StartError};

/// Reads `FAILPOINTS` from the environment when failpoints are compiled in (tests only);
/// does nothing otherwise. Call once at the start of the process.
pub fn failpoints_from_env() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}
