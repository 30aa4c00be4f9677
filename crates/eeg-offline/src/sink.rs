//! The offline end of the session core's fan-out ([`eeg_session::Fanout`]): each window
//! counted in its session's summary and handed to the writer thread, each trigger event
//! written to the events file; both collected for the report when there is one.

use std::io::Write;
use std::sync::Arc;

use eeg_dsp::Window;
use eeg_schema::SessionMeta;
use eeg_session::{Fanout, TriggerEngine, TriggerState};

use crate::Error;
use crate::output::Output;
use crate::report::Collector;
use crate::summary::Summary;
use crate::writer::Writer;

/// The trigger rules, and when events are asked for, where they go (one
/// `analytics.trigger/1` per line).
pub(crate) struct Triggers {
    pub engine: TriggerEngine,
    pub output: Option<(Output, Box<dyn Write + Send>)>,
}

/// The epochs asked for (`--epochs`): what to cut, and where the records go (one
/// `eeg.epoch/1` per line).
pub(crate) struct Epochs {
    pub config: eeg_session::config::EpochsConfig,
    pub events: eeg_session::config::EventsConfig,
    pub output: (Output, Box<dyn Write + Send>),
}

/// The epochs file as a session's epoch output.
pub(crate) struct EpochLines<'a>(pub &'a mut (dyn Write + Send));

impl eeg_session::epochs::EpochOutput for EpochLines<'_> {
    type Error = std::io::Error;

    fn epoch(&mut self, record: &eeg_schema::EpochRecord<'_>) -> Result<(), std::io::Error> {
        let mut line = record.encode();
        line.push(b'\n');
        self.0.write_all(&line)
    }
}

/// One session's outputs for one push.
pub(crate) struct FileSink<'a> {
    writer: &'a mut Writer,
    summary: &'a mut Summary,
    events: Option<&'a mut (dyn Write + Send)>,
    report: Option<&'a mut Collector>,
}

/// Why a [`FileSink`] stopped.
#[derive(Debug)]
pub(crate) enum SinkError {
    /// The writer thread stopped; [`Writer::finish`] says why.
    WriterStopped,
    Events(std::io::Error),
}

impl eeg_session::Sink for FileSink<'_> {
    type Error = SinkError;

    fn record(&mut self, meta: &Arc<SessionMeta>, window: &Window<'_>) -> Result<(), SinkError> {
        self.summary.add(window);
        if let Some(r) = self.report.as_deref_mut() {
            r.window(meta, window);
        }
        if self.writer.push(meta, window) {
            Ok(())
        } else {
            Err(SinkError::WriterStopped)
        }
    }

    fn trigger(&mut self, event: &eeg_schema::TriggerEvent<'_>) -> Result<(), SinkError> {
        self.summary.trigger_events += 1;
        if let Some(r) = self.report.as_deref_mut() {
            r.event(event);
        }
        let Some(out) = self.events.as_deref_mut() else {
            return Ok(());
        };
        // Events are rare (a few per session): a line each.
        let mut line = event.encode();
        line.push(b'\n');
        out.write_all(&line).map_err(SinkError::Events)
    }
}

/// Runs `push` with a fan-out of one session's windows into the writer, the events file and
/// the report. `Ok(false)`: the writer stopped, and [`Writer::finish`] reports its error.
pub(crate) fn fan_out(
    meta: &Arc<SessionMeta>,
    state: &mut TriggerState,
    summary: &mut Summary,
    writer: &mut Writer,
    triggers: Option<&mut Triggers>,
    report: Option<&mut Collector>,
    push: impl FnOnce(&mut Fanout<'_, FileSink<'_>>) -> Result<(), Error>,
) -> Result<bool, Error> {
    let (engine, events) = match triggers {
        Some(t) => (
            Some(&t.engine),
            t.output
                .as_mut()
                .map(|(_, out)| &mut **out as &mut (dyn Write + Send)),
        ),
        None => (None, None),
    };
    let mut sink = FileSink {
        writer,
        summary,
        events,
        report,
    };
    let mut fanout = Fanout::new(meta, engine.map(|e| (e, state)), &mut sink);
    push(&mut fanout)?;
    match fanout.finish() {
        Ok(_) => Ok(true),
        Err(SinkError::WriterStopped) => Ok(false),
        Err(SinkError::Events(e)) => Err(Error::output("writing trigger events", e)),
    }
}
