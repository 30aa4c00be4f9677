//! The session core of eeg-pipeline, with no IO: what happens to a session's raw batches
//! between the bytes coming in and the records going out, and the rules that make the
//! service's delivery promise hold (no window lost, no number changed, whatever crashes,
//! restarts or rebalances happen).
//!
//! - [`config`]: the TOML config file (processing, limits, trigger rules), parsed strictly.
//! - [`admission`]: one processor per session, fed in `seq` order; duplicates dropped, gaps
//!   and changes of shape reset the session.
//! - [`budget`]: the instance's memory for session state; a session that does not fit
//!   waits, its partition held, until memory is released.
//! - [`events`]: a session's `eeg.event/1` events placed in its samples, each batch
//!   re-anchoring the clock; events that wait for their samples, copies and late ones.
//! - [`timing`]: a session's clock fitted from its batches' stamps: effective rate, drift,
//!   jitter, jumps.
//! - [`counters`]: what the cores did, as figures that log lines and metrics read.
//! - [`triggers`]: the trigger engine, rules over per-window metrics with a small
//!   serialisable state per session.
//! - [`fanout`]: windows to `eeg.processed/1` records and `analytics.trigger/1` events,
//!   through a sink that can fail and stop. `process` and `run` both use it.
//! - [`ledger`]: outputs pending acknowledgement per input, snapshot boundaries, the commit
//!   frontier.
//! - [`snapshot`]: the session snapshot codec and the rule that picks the one to restore.
//! - [`mirror`]: the seam through which copies beside the broker (the live page, a Redis
//!   cache) are told each output.
//! - [`partition`]: one partition of the raw topic, all of the above together; the Kafka
//!   service wraps one per assigned partition, and `tests/sim.rs` drives it through
//!   thousands of seeded runs of crashes, rebalances and late or failed acknowledgements.
//!
//! Nothing here reads a socket or the clock (time is the messages' own); the one file read is
//! the config file, by [`config::load`].

pub mod admission;
pub mod budget;
pub mod config;
pub mod counters;
pub mod epochs;
pub mod events;
pub mod fanout;
pub mod ledger;
pub mod mirror;
pub mod partition;
pub mod snapshot;
mod text;
pub mod timing;
pub mod triggers;

pub use admission::{Admission, ResetReason, Session, Sessions, StartError};
pub use budget::{BudgetFigures, Full, MemoryBudget, Reservation, Wake};
pub use config::{Config, ConfigFileError};
pub use counters::{Counters, Figure, MetricKind};
pub use fanout::{Fanout, Produced, Sink};
pub use ledger::{Ledger, StateWrite, Ticket};
pub use mirror::{OutputCache, OutputObserver};
pub use partition::{
    CoreConfig, Duplicates, EventFate, Handled, Inbound, MAX_CHECKPOINTS, Outbox, Outcome, Output,
    PartitionCore, Restored, Topic,
};
pub use snapshot::{Snapshot, SnapshotError, StateReader, StateRecord, StateValue};
pub use text::quoted;
pub use triggers::{
    MAX_ID_BYTES, Metric, Op, ParseError, Rule, TriggerConfig, TriggerConfigError, TriggerEngine,
    TriggerState, default_rules,
};
