//! The offline end of the session core's fan-out ([`eeg_session::Fanout`]): each window
//! counted in its session's summary and handed to the writer thread, each trigger event
//! written to the events file; both collected for the report when there is one.

use std::io::Write;
use std::sync::Arc;

use eeg_dsp::Window;
use eeg_schema::SessionMeta;
use eeg_session::epochs::{SessionEpochs, Tap};
use eeg_session::{Fanout, TriggerEngine, TriggerState};

use eeg_dsp::epochs::EpochValues;

use crate::Error;
use crate::output::Output;
use crate::report::Collector;
use crate::summary::Summary;
use crate::table::{csv_io, number_field};
use crate::writer::Writer;

/// The trigger rules, and when events are asked for, where they go (one
/// `analytics.trigger/1` per line).
pub(crate) struct Triggers {
    pub engine: TriggerEngine,
    pub output: Option<(Output, Box<dyn Write + Send>)>,
}

/// Events and epochs, when asked for: what to cut, where epoch records go (`--epochs`,
/// one `eeg.epoch/1` per line), where the events go (`--events-out`, BIDS `events.tsv`),
/// and the events read beside the recording (`--events FILE.tsv`).
pub(crate) struct Epochs {
    /// `None`: events are placed (for the events file) but no epoch is cut.
    pub config: Option<eeg_session::config::EpochsConfig>,
    pub events: eeg_session::config::EventsConfig,
    pub output: Option<(Output, EpochWriter)>,
    pub events_out: Option<(Output, Box<dyn Write + Send>)>,
    /// The averages per label (`--erp`), CSV.
    pub erp: Option<(Output, csv::Writer<Box<dyn Write + Send>>)>,
    pub tsv: Option<crate::bids::EventsTsv<std::io::BufReader<std::fs::File>>>,
    /// Unix ms of the input's first sample: where the events file's onsets count from.
    pub origin_ms: Option<f64>,
}

impl Epochs {
    /// A session's events and epochs, at `plan`'s rate, its sample 0 at `t0_ms`; averages
    /// are kept only when `--erp` reads them.
    pub fn session(
        &self,
        plan: &eeg_dsp::Plan,
        n_channels: usize,
        t0_ms: f64,
    ) -> Result<SessionEpochs, eeg_dsp::ConfigError> {
        let se = SessionEpochs::new(self.config.as_ref(), &self.events, plan, n_channels, t0_ms)?;
        Ok(if self.erp.is_some() {
            se
        } else {
            se.without_averages()
        })
    }

    pub fn lines(&mut self) -> EpochLines<'_> {
        EpochLines {
            epochs: self.output.as_mut().map(|(_, w)| w),
            events: self
                .events_out
                .as_mut()
                .map(|(_, w)| &mut **w as &mut (dyn Write + Send)),
            origin_ms: self.origin_ms.unwrap_or(0.0),
        }
    }

    /// The columns of `--epochs FILE.csv`: the event and the epoch, the channel, then per
    /// component its mean, peak and latency, and per band (with `[epochs.erd]`) the powers
    /// and their change.
    fn csv_columns(components: &[String], erd_bands: &[String]) -> Vec<String> {
        let mut c: Vec<String> = [
            "session_id",
            "event_id",
            "label",
            "value",
            "onset_sample",
            "first_sample",
            "last_sample",
            "start_ms",
            "end_ms",
            "status",
            "drop",
            "channel",
        ]
        .map(String::from)
        .into();
        for name in components {
            for what in ["mean_uv", "peak_uv", "peak_ms"] {
                c.push(format!("{name}.{what}"));
            }
        }
        for band in erd_bands {
            for what in ["reference_uv2", "active_uv2", "change_pct"] {
                c.push(format!("erd.{band}.{what}"));
            }
        }
        c
    }

    /// The `--erp` file's columns.
    pub const ERP_COLUMNS: [&'static str; 8] = [
        "session_id",
        "label",
        "channel",
        "time_ms",
        "mean_uv",
        "sem_uv",
        "count",
        "rejected",
    ];

    /// A session's averages per label, one row per label, channel and sample, when
    /// `--erp` is asked for. Called once per session (and before a session whose shape
    /// changed starts again: its averages cannot be merged with the new shape's).
    pub fn write_erp(&mut self, meta: &SessionMeta, epochs: &SessionEpochs) -> std::io::Result<()> {
        let (Some((_, out)), Some(plan)) = (self.erp.as_mut(), epochs.plan()) else {
            return Ok(());
        };
        for a in epochs.averages() {
            let avg = &a.average;
            for (ch, name) in meta.channels.iter().enumerate().take(avg.n_channels()) {
                for k in 0..avg.len() {
                    out.write_field(&meta.session_id)?;
                    out.write_field(&a.label)?;
                    out.write_field(name)?;
                    number_field(out, Some(plan.time_s(k) * 1000.0))?;
                    number_field(out, Some(avg.mean(ch, k)))?;
                    number_field(out, Some(avg.sem(ch, k)))?;
                    out.write_field(itoa::Buffer::new().format(avg.count))?;
                    out.write_field(itoa::Buffer::new().format(a.rejected))?;
                    out.write_record(None::<&[u8]>)?;
                }
            }
        }
        Ok(())
    }

    /// Every file it writes, flushed.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if let Some((_, w)) = self.output.as_mut() {
            w.flush()?;
        }
        if let Some((_, w)) = self.events_out.as_mut() {
            w.flush()?;
        }
        if let Some((_, w)) = self.erp.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// Every file it writes, kept (`true`) or removed.
    pub fn close(self, keep: bool) -> Result<(), Error> {
        let files = [
            self.output.map(|(f, _)| f),
            self.events_out.map(|(f, _)| f),
            self.erp.map(|(f, _)| f),
        ];
        for file in files.into_iter().flatten() {
            if keep {
                file.commit()?;
            } else {
                file.discard();
            }
        }
        Ok(())
    }
}

/// Where `--epochs` writes: one `eeg.epoch/1` record per line, or the rows of the long
/// table (`FILE.csv`).
pub(crate) enum EpochWriter {
    Jsonl(Box<dyn Write + Send>),
    Csv(Box<csv::Writer<Box<dyn Write + Send>>>),
}

impl EpochWriter {
    /// The long table on `out`, its header written: columns for `components` and, with
    /// `[epochs.erd]`, for `erd_bands`.
    pub fn csv(
        out: Box<dyn Write + Send>,
        components: &[String],
        erd_bands: &[String],
    ) -> std::io::Result<EpochWriter> {
        let mut w = csv::WriterBuilder::new()
            .buffer_capacity(1 << 16)
            .from_writer(out);
        w.write_record(Epochs::csv_columns(components, erd_bands))
            .map_err(csv_io)?;
        Ok(EpochWriter::Csv(Box::new(w)))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            EpochWriter::Jsonl(w) => w.flush(),
            EpochWriter::Csv(w) => w.flush(),
        }
    }
}

/// The epochs and events files as a session's epoch output.
pub(crate) struct EpochLines<'a> {
    epochs: Option<&'a mut EpochWriter>,
    events: Option<&'a mut (dyn Write + Send)>,
    origin_ms: f64,
}

impl eeg_session::epochs::EpochOutput for EpochLines<'_> {
    type Error = std::io::Error;

    fn epoch(&mut self, record: &eeg_schema::EpochRecord<'_>) -> Result<(), std::io::Error> {
        match self.epochs.as_deref_mut() {
            None => Ok(()),
            Some(EpochWriter::Csv(w)) => epoch_rows(record, w).map_err(csv_io),
            Some(EpochWriter::Jsonl(w)) => {
                let mut line = record.encode();
                line.push(b'\n');
                w.write_all(&line)
            }
        }
    }

    fn placed(
        &mut self,
        e: &eeg_schema::Event,
        sample: u64,
        t0_ms: f64,
        fs: f64,
    ) -> Result<(), std::io::Error> {
        let Some(out) = self.events.as_deref_mut() else {
            return Ok(());
        };
        let onset_s = (t0_ms - self.origin_ms) / 1000.0 + sample as f64 / fs;
        crate::bids::write_line(out, onset_s, e.duration_s, &e.label, e.value, sample)
    }
}

/// An epoch record as rows of the `--epochs FILE.csv` long table, one per channel, numbers
/// as the record writes them; a value the record has none of (a `no_data` epoch's) or
/// writes as null (a change over a zero power) is empty.
fn epoch_rows<W: Write>(
    r: &eeg_schema::EpochRecord<'_>,
    w: &mut csv::Writer<W>,
) -> csv::Result<()> {
    let (start_ms, end_ms) = r.bounds_ms();
    let drop = r.drop_names().join(";");
    let int = |w: &mut csv::Writer<W>, x: Option<i64>| match x {
        Some(x) => w.write_field(itoa::Buffer::new().format(x)),
        None => w.write_field(""),
    };
    let n = r.channels.len();
    let n_bands = if r.plan.erd_bands() > 0 {
        r.band_names.len()
    } else {
        0
    };
    let values = r.values.ok();
    for (ch, channel) in r.channels.iter().enumerate() {
        // The `item`-th component's or band's value of this channel.
        let at = |item: usize, v: fn(&EpochValues) -> &[f64]| {
            values.and_then(|x| v(x).get(item * n + ch).copied())
        };
        w.write_field(r.session_id)?;
        w.write_field(&r.event.event_id)?;
        w.write_field(&r.event.label)?;
        int(w, r.event.value)?;
        int(w, r.onset_sample.map(|s| s as i64))?;
        int(w, r.first_sample())?;
        int(w, r.last_sample())?;
        number_field(w, start_ms)?;
        number_field(w, end_ms)?;
        w.write_field(r.status())?;
        w.write_field(&drop)?;
        w.write_field(channel)?;
        for i in 0..r.component_names.len() {
            number_field(w, at(i, |v| &v.mean_uv))?;
            number_field(w, at(i, |v| &v.peak_uv))?;
            number_field(w, at(i, |v| &v.peak_s).map(|s| s * 1000.0))?;
        }
        for b in 0..n_bands {
            number_field(w, at(b, |v| &v.reference_power))?;
            number_field(w, at(b, |v| &v.active_power))?;
            number_field(w, at(b, |v| &v.erd_pct))?;
        }
        w.write_record(None::<&[u8]>)?;
    }
    Ok(())
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

/// The sink a push of one session's samples writes to: its windows' fan-out, and its
/// filtered samples to its epochs when it cuts them.
pub(crate) type PushSink<'a, 'b> = Tap<'a, Fanout<'b, FileSink<'b>>, EpochLines<'b>>;

/// Runs `push` with a fan-out of one session's windows into the writer, the events file and
/// the report, and of its filtered samples to its epochs (when `epochs` holds the session's
/// and the run's). `Ok(false)`: the writer stopped, and [`Writer::finish`] reports its error.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fan_out(
    meta: &Arc<SessionMeta>,
    state: &mut TriggerState,
    summary: &mut Summary,
    writer: &mut Writer,
    triggers: Option<&mut Triggers>,
    report: Option<&mut Collector>,
    epochs: Option<(&mut SessionEpochs, &mut Epochs)>,
    push: impl FnOnce(&mut PushSink<'_, '_>) -> Result<(), Error>,
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
    let (session_epochs, mut lines) = match epochs {
        Some((se, e)) => (Some(se), Some(e.lines())),
        None => (None, None),
    };
    let to = match (session_epochs, lines.as_mut()) {
        (Some(se), Some(l)) => Some((se, &**meta, l)),
        _ => None,
    };
    let mut tap = Tap::new(&mut fanout, to);
    push(&mut tap)?;
    let epoch_error = tap.finish().err();
    let finished = fanout.finish();
    if let Some(e) = epoch_error {
        return Err(Error::output("writing epochs", e));
    }
    match finished {
        Ok(_) => Ok(true),
        Err(SinkError::WriterStopped) => Ok(false),
        Err(SinkError::Events(e)) => Err(Error::output("writing trigger events", e)),
    }
}
