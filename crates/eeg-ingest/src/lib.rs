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
