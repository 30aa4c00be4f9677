//! The session core of eeg-pipeline, with no IO: what happens to a session's raw batches
//! between the bytes coming in and the records going out, and the rules that make the
//! service's delivery promise hold (no window lost, no number changed, whatever crashes,
//! restarts or rebalances happen).
//!
//! - [`admission`]: one processor per session, fed in `seq` order; duplicates dropped, gaps
//!   and changes of shape reset the session.
//! - [`triggers`]: the trigger engine, rules over per-window metrics with a small
//!   serialisable state per session.
//! - [`fanout`]: windows to `eeg.processed/1` records and `analytics.trigger/1` events,
//!   through a sink that can fail and stop. `process` and `run` both use it.
//! - [`ledger`]: outputs pending acknowledgement per input, snapshot boundaries, the commit
//!   frontier.
//! - [`snapshot`]: the session snapshot codec and the rule that picks the one to restore.
//! - [`partition`]: one partition of the raw topic, all of the above together; the Kafka
//!   service wraps one per assigned partition, and `tests/sim.rs` drives it through
//!   thousands of seeded runs of crashes, rebalances and late or failed acknowledgements.
//!
//! Nothing here reads a socket, a file or the clock: time is the messages' own.

pub mod admission;
pub mod fanout;
pub mod ledger;
pub mod partition;
pub mod snapshot;
pub mod triggers;

pub use admission::{Admission, ResetReason, Session, Sessions, StartError};
pub use fanout::{Fanout, Produced, Sink};
pub use ledger::{Ledger, StateWrite, Ticket};
pub use partition::{
    CoreConfig, Duplicates, Handled, Inbound, Outbox, Outcome, Output, PartitionCore, Restored,
    Topic,
};
pub use snapshot::{Snapshot, SnapshotError, StateReader, StateRecord, StateValue};
pub use triggers::{
    MAX_ID_BYTES, Metric, Op, Rule, TriggerConfig, TriggerConfigError, TriggerEngine, TriggerState,
    default_rules,
};

/// Whether a figure counts events (only goes up) or measures a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// One figure of a [`counters!`] list, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    /// The name in log lines; metrics add the `eeg_` prefix (and `_total` for counters).
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub value: u64,
}

/// Declares a struct of atomic figures, each with its kind and help text, and a method
/// `each` that visits them in order: the one list that log lines and metrics are made from.
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[doc = $doc:literal])* $field:ident: $kind:ident,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $($(#[doc = $doc])* pub $field: ::std::sync::atomic::AtomicU64,)*
        }

        impl $name {
            /// Every figure, in declaration order.
            pub fn each(&self, mut f: impl FnMut($crate::Figure)) {
                $(f($crate::Figure {
                    name: stringify!($field),
                    help: concat!($($doc),*).trim_ascii(),
                    kind: $crate::MetricKind::$kind,
                    value: self.$field.load(::std::sync::atomic::Ordering::Relaxed),
                });)*
            }
        }
    };
}

counters! {
    /// What the partition cores did, shared by all of an instance's partitions.
    pub struct Counters {
        /// Processed records published.
        records_published: Counter,
        /// Trigger events published.
        triggers_published: Counter,
        /// Messages sent to the dead-letter topic.
        dead_letters: Counter,
        /// Dead letters too large for the producer, sent with a prefix of their bytes.
        dead_letters_cut: Counter,
        /// Batches dropped because their session had already processed their seq.
        duplicates_dropped: Counter,
        /// Session state restarts after a seq gap or a change of rate or channels.
        session_resets: Counter,
        /// Sessions started.
        sessions_started: Counter,
        /// Sessions evicted after being idle.
        sessions_evicted: Counter,
        /// Sessions carried on from a snapshot.
        sessions_restored: Counter,
        /// Offsets of a partition skipped between two consecutive messages.
        offset_gaps: Counter,
        /// Sessions in memory.
        active_sessions: Gauge,
        /// Heap memory of all sessions' state (processors and checkpoints), bytes.
        session_state_bytes: Gauge,
    }
}
