//! One fan-out from a session's windows to what is published about them: the
//! `eeg.processed/1` record of every window and the `analytics.trigger/1` events the trigger
//! rules raise on it. `process` (files) and `run` (Kafka) both go through it, so both publish
//! the same things in the same order.

use std::sync::Arc;

use eeg_dsp::{Window, WindowSink};
use eeg_schema::{SessionMeta, TriggerEvent};

use crate::triggers::{TriggerEngine, TriggerState};

/// Where a session's outputs go. Either call may fail (a full disk, a producer that cannot
/// take the record); the fan-out then stops: nothing more is handed over for the push that
/// failed, and the error comes back from [`Fanout::finish`].
pub trait Sink {
    type Error;

    /// The record of one completed window.
    fn record(&mut self, meta: &Arc<SessionMeta>, window: &Window<'_>) -> Result<(), Self::Error>;

    /// An event the trigger rules raised on the window just recorded.
    fn trigger(&mut self, event: &TriggerEvent<'_>) -> Result<(), Self::Error>;
}

/// How many outputs one push produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub records: u64,
    pub events: u64,
}

/// A session's windows to its sink: the processor's [`WindowSink`] for one push.
#[derive(Debug)]
pub struct Fanout<'a, S: Sink> {
    meta: &'a Arc<SessionMeta>,
    triggers: Option<(&'a TriggerEngine, &'a mut TriggerState)>,
    sink: &'a mut S,
    produced: Produced,
    error: Option<S::Error>,
}

impl<'a, S: Sink> Fanout<'a, S> {
    /// Records for `meta`'s windows; trigger events too when `triggers` is given (the rule set
    /// and this session's state).
    pub fn new(
        meta: &'a Arc<SessionMeta>,
        triggers: Option<(&'a TriggerEngine, &'a mut TriggerState)>,
        sink: &'a mut S,
    ) -> Fanout<'a, S> {
        Fanout {
            meta,
            triggers,
            sink,
            produced: Produced::default(),
            error: None,
        }
    }

    /// What the push produced, or the sink's first error.
    pub fn finish(self) -> Result<Produced, S::Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.produced),
        }
    }

    /// The sink, for outputs of the push that are not windows' (its epochs).
    pub fn sink(&mut self) -> &mut S {
        self.sink
    }

    /// The sink failed: the caller can stop feeding windows.
    pub fn stopped(&self) -> bool {
        self.error.is_some()
    }

    fn window_inner(&mut self, w: &Window<'_>) -> Result<(), S::Error> {
        self.sink.record(self.meta, w)?;
        self.produced.records += 1;
        let Some((engine, state)) = self.triggers.as_mut() else {
            return Ok(());
        };
        let (sink, produced, meta) = (&mut *self.sink, &mut self.produced, self.meta);
        let mut result = Ok(());
        engine.evaluate(state, &meta.session_id, &meta.device_id, w, &mut |event| {
            if result.is_ok() {
                result = sink.trigger(&event);
                produced.events += 1;
            }
        });
        result
    }
}

impl<S: Sink> WindowSink for Fanout<'_, S> {
    fn window(&mut self, w: &Window<'_>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.window_inner(w) {
            self.error = Some(e);
        }
    }
}
