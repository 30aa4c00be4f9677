//! What the partition cores did, as named figures: one list that log lines and metrics are
//! made from, each figure with its kind and help text.

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
        /// Events taken by their sessions (placed, waiting for their samples, or waiting for their session's first batch).
        events_taken: Counter,
        /// Events dropped as copies of one their session had (same event_id).
        event_copies: Counter,
        /// Events later than events.max_delay_s behind their session's samples (counted, recorded as too_late).
        events_late: Counter,
        /// Epoch records published.
        epochs_published: Counter,
        /// Sessions in memory.
        active_sessions: Gauge,
        /// Heap memory of all sessions' state (processors and checkpoints), bytes.
        session_state_bytes: Gauge,
    }
}
