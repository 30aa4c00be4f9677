//! EDF, EDF+ and BDF recordings in: the signals grouped into sessions (one per sample rate,
//! never resampled), read one data record at a time and processed by the channel-split
//! [`Engine`], each window fanned out to the outputs.

use std::path::Path;
use std::sync::Arc;

use eeg_edf::EdfReader;
use eeg_schema::SessionMeta;
use eeg_schema::{Event, Onset};
use eeg_session::TriggerState;
use eeg_session::epochs::{SessionEpochs, Taken};

use crate::bids::EventsTsv;

use crate::Error;
use crate::encode::session_meta;
use crate::engine::Engine;
use crate::options::Options;
use crate::report::{Collector, InputMeta};
use crate::sink::{EpochLines, Epochs, PushSink, Triggers, fan_out};
use crate::summary::Summary;
use crate::writer::Writer;

/// One session of an EDF/BDF file: its data signals at one sample rate.
#[derive(Debug)]
pub struct SessionGroup {
    pub session_id: String,
    pub device_id: String,
    pub rate: f64,
    /// Indices among the file's data signals (annotation signals excluded).
    pub signals: Vec<usize>,
    pub labels: Vec<String>,
}

/// The sessions of an EDF/BDF file: the voltage signals (or the `channels` asked for),
/// one session per sample rate, never resampled. A file with several rates gets session ids
/// suffixed with the rate (`ID@256Hz`).
pub fn session_groups(
    name: &str,
    path: &Path,
    header: &eeg_edf::Header,
    channels: Option<&[String]>,
    session_id: Option<&str>,
) -> Result<Vec<SessionGroup>, Error> {
    // Data signals to process, as (index among data signals, label, µV factor, rate).
    let data: Vec<(usize, &eeg_edf::SignalHeader)> = header
        .signals
        .iter()
        .filter(|s| !s.is_annotation)
        .enumerate()
        .collect();
    let selected: Vec<(usize, &eeg_edf::SignalHeader)> = match channels {
        Some(wanted) => {
            let mut sel = Vec::new();
            for w in wanted {
                match data.iter().find(|(_, s)| s.label == *w) {
                    Some(&d) => sel.push(d),
                    None => {
                        let labels: Vec<&str> =
                            data.iter().map(|(_, s)| s.label.as_str()).collect();
                        return Err(Error::bad(format!(
                            "{name}: --channels: no signal labelled '{w}' (signals: {})",
                            labels.join(", ")
                        )));
                    }
                }
            }
            sel
        }
        None => {
            let (volts, other): (Vec<_>, Vec<_>) = data
                .iter()
                .copied()
                .partition(|(_, s)| s.microvolts_per_unit().is_some());
            for (_, s) in &other {
                tracing::warn!(
                    "{name}: signal '{}' in '{}' is not a voltage; skipped (select it with --channels to process it)",
                    s.label,
                    s.physical_dimension
                );
            }
            volts
        }
    };
    if selected.is_empty() {
        return Err(Error::bad(format!("{name}: no EEG signal to process")));
    }

    // One session per sample rate: signals at different rates are never resampled.
    let duration = header.record_duration_s;
    let mut groups: Vec<(f64, Vec<usize>, Vec<String>)> = Vec::new();
    for (i, s) in &selected {
        let rate = s.sample_rate_hz(duration);
        match groups.iter_mut().find(|g| g.0 == rate) {
            Some(g) => {
                g.1.push(*i);
                g.2.push(s.label.clone());
            }
            None => groups.push((rate, vec![*i], vec![s.label.clone()])),
        }
    }
    let base_id = session_id.map(str::to_string).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "session".into())
    });
    let device_id = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    let multi = groups.len() > 1;
    Ok(groups
        .into_iter()
        .map(|(rate, signals, labels)| SessionGroup {
            session_id: if multi {
                format!("{base_id}@{rate}Hz")
            } else {
                base_id.clone()
            },
            device_id: device_id.clone(),
            rate,
            signals,
            labels,
        })
        .collect())
}

/// Gaps in an EDF+D file logged one line each; the rest are counted in the summary.
const MAX_GAP_LINES: u64 = 10;

/// The recording at `path` through its sessions (one per sample rate, split by channel
/// across `options.threads`), each window fanned out. A data record that does not follow its
/// predecessor restarts every session in EDF+D and is bad input in EDF+C. Returns the
/// sessions' summaries, or none when the writer stopped (its error explains why).
pub(crate) fn process_edf(
    options: &Options,
    path: &Path,
    writer: &mut Writer,
    mut triggers: Option<&mut Triggers>,
    mut report: Option<&mut Collector>,
    mut epochs: Option<&mut Epochs>,
    progress: &dyn Fn(u64),
) -> Result<Vec<Summary>, Error> {
    let config = &options.processing;
    let name = path.display().to_string();
    let mut reader = EdfReader::open(path).map_err(|e| Error::bad(e.to_string()))?;
    let header = reader.header().clone();
    if let Some(r) = report.as_deref_mut() {
        r.set_input(InputMeta::edf(&name, &header));
    }
    if reader.trailing_bytes() > 0 {
        tracing::warn!(
            "{name}: {} bytes after the last whole data record ignored",
            reader.trailing_bytes()
        );
    }

    let groups = session_groups(
        &name,
        path,
        &header,
        options.channels.as_deref(),
        options.session_id.as_deref(),
    )?;
    let duration = header.record_duration_s;
    let t0 = header.start_unix_ms();

    struct Group {
        engine: Engine,
        meta: Arc<SessionMeta>,
        summary: Summary,
        /// The session's trigger rules' state (with `--triggers`).
        triggers: TriggerState,
        /// Its events and epochs (with `--epochs`).
        epochs: Option<SessionEpochs>,
        /// The session's first signal, whose length in a record is the session's.
        first_signal: usize,
        /// Samples per signal since the session's (re)start, and the onset of that start in
        /// the recording, s: where an annotation's sample is counted from.
        position: u64,
        start_s: f64,
    }
    impl Group {
        /// Runs `f` on the engine with a fan-out of its windows (and its filtered samples
        /// to its epochs, when it cuts them); `Ok(false)` when the writer stopped.
        fn fan_out(
            &mut self,
            writer: &mut Writer,
            triggers: Option<&mut Triggers>,
            report: Option<&mut Collector>,
            epochs: Option<&mut Epochs>,
            f: impl FnOnce(&mut Engine, &mut PushSink<'_, '_>) -> Result<(), Error>,
        ) -> Result<bool, Error> {
            let engine = &mut self.engine;
            fan_out(
                &self.meta,
                &mut self.triggers,
                &mut self.summary,
                writer,
                triggers,
                report,
                self.epochs.as_mut().zip(epochs),
                |sink| f(engine, sink),
            )
        }
    }
    let mut sessions = Vec::new();
    for g in groups {
        let rate = g.rate;
        // Epochs need every channel's filtered samples, joined from the parts.
        let tap = epochs.as_deref().is_some_and(|e| e.config.is_some());
        let engine = Engine::new(config, rate, &g.signals, t0, options.threads.max(1), tap)
            .map_err(|e| Error::bad(format!("{name}: {e} (signals at {rate} Hz)")))?;
        for w in &engine.plan().warnings {
            tracing::warn!("{name}: {w}");
        }
        sessions.push(Group {
            summary: Summary::new(&g.session_id, rate, g.signals.len(), &config.bands),
            meta: Arc::new(session_meta(
                &g.session_id,
                &g.device_id,
                None,
                rate,
                g.labels,
            )),
            epochs: match epochs.as_deref() {
                Some(e) => Some(
                    e.session(engine.plan(), g.signals.len(), t0 as f64)
                        .map_err(|e| Error::bad(format!("{name}: {e} (signals at {rate} Hz)")))?,
                ),
                None => None,
            },
            first_signal: g.signals[0],
            engine,
            triggers: TriggerState::default(),
            position: 0,
            start_s: 0.0,
        });
    }
    // This record's annotations, trigger codes and events-file lines, when epochs are cut.
    let mut notes: Vec<RecordEvent> = Vec::new();
    let first_rate = sessions.first().map_or(1.0, |g| g.meta.sample_rate_hz);
    let mut events = epochs.as_deref_mut().map(|e| {
        e.origin_ms = Some(t0 as f64);
        RecordEvents::new(&header, e.tsv.take(), first_rate)
    });
    if let Some(label) = events.as_ref().and_then(RecordEvents::trigger_channel) {
        tracing::info!(
            "{name}: signal '{label}' read as trigger codes, as mne.find_events reads it"
        );
    }

    // Records are shared with the worker threads; one whose last reader is done is reused.
    let mut records: Vec<Arc<eeg_edf::Record>> = Vec::new();
    let record_bytes = header.record_bytes();
    let mut expected_onset: Option<f64> = None;
    let mut gaps = 0u64;
    loop {
        let reusable = records.iter().position(|r| Arc::strong_count(r) == 1);
        let mut record = match reusable {
            Some(i) => records.swap_remove(i),
            None => Arc::new(eeg_edf::Record::default()),
        };
        let Some(slot) = Arc::get_mut(&mut record) else {
            continue;
        };
        if !reader
            .read_record(slot)
            .map_err(|e| Error::bad(e.to_string()))?
        {
            break;
        }
        progress(record_bytes);
        // EDF+D: a record that does not follow its predecessor starts a new stretch of
        // signal; filtering across the gap would smear it, so the sessions restart. In an
        // EDF+C file records are contiguous by definition: one that is not means its
        // record duration or its time-keeping annotations are wrong (EDFlib refuses such
        // files too), and nothing it holds can be placed in time.
        let onset = record.onset_s();
        if let Some(expected) = expected_onset
            && (onset - expected).abs() > 1e-6
        {
            if !header.format.is_discontinuous() {
                return Err(Error::bad(format!(
                    "{name}: data record {} starts at {onset} s, not {expected} s, but the file is {} (continuous): its record duration ({duration} s) or its time-keeping annotations are wrong",
                    record.index(),
                    header.format,
                )));
            }
            gaps += 1;
            // The first few are worth a line each; a file of gaps gets one line, not one a
            // record (the summary counts them all).
            if gaps <= MAX_GAP_LINES {
                tracing::warn!(
                    "{name}: data record {} starts at {onset} s, not {expected} s; sessions restart",
                    record.index()
                );
            }
            if gaps == MAX_GAP_LINES {
                tracing::warn!("{name}: further gaps are counted, not logged");
            }
            for g in &mut sessions {
                let t0 = t0 + (onset * 1000.0).round() as i64;
                if !g.fan_out(
                    writer,
                    triggers.as_deref_mut(),
                    report.as_deref_mut(),
                    epochs.as_deref_mut(),
                    |e, sink| e.reset(t0, sink),
                )? {
                    return Ok(Vec::new());
                }
                if let (Some(se), Some(e)) = (g.epochs.as_mut(), epochs.as_deref_mut()) {
                    se.end(&g.meta, Some(t0 as f64), &mut e.lines())
                        .map_err(|e| Error::output("writing epochs", e))?;
                }
                g.position = 0;
                g.start_s = onset;
                g.summary.resets += 1;
                if let Some(r) = report.as_deref_mut() {
                    r.reset(&g.meta.session_id);
                }
                g.triggers.reset();
            }
        }
        expected_onset = Some(onset + duration);
        if let Some(events) = events.as_mut() {
            notes.clear();
            events.record(&reader, &record, &mut notes)?;
        }
        for g in &mut sessions {
            if let (Some(se), Some(e)) = (g.epochs.as_mut(), epochs.as_deref_mut()) {
                let n = record.signal(g.first_signal).len() as u64;
                let start_ms = t0 as f64 + onset * 1000.0;
                let mut lines = e.lines();
                place_notes(
                    se,
                    &g.meta,
                    (g.position, n, start_ms, g.start_s),
                    &notes,
                    &mut lines,
                )
                .map_err(|e| match e {
                    Placing::Output(e) => Error::output("writing epochs", e),
                    Placing::Full(reason) => Error::bad(format!("{name}: {reason}")),
                })?;
                g.position += n;
            }
            let pushed = g.fan_out(
                writer,
                triggers.as_deref_mut(),
                report.as_deref_mut(),
                epochs.as_deref_mut(),
                |e, sink| e.push_record(&record, sink),
            )?;
            if !pushed {
                return Ok(Vec::new());
            }
        }
        records.push(record);
    }
    for g in &mut sessions {
        if !g.fan_out(
            writer,
            triggers.as_deref_mut(),
            report.as_deref_mut(),
            epochs.as_deref_mut(),
            |e, sink| e.finish(sink),
        )? {
            return Ok(Vec::new());
        }
        if let (Some(se), Some(e)) = (g.epochs.as_mut(), epochs.as_deref_mut()) {
            se.end(&g.meta, None, &mut e.lines())
                .map_err(|e| Error::output("writing epochs", e))?;
            e.write_erp(&g.meta, se)
                .map_err(|e| Error::output("writing averages", e))?;
        }
    }
    Ok(sessions.into_iter().map(|g| g.summary).collect())
}

/// An event a data record holds: one of its annotations, a trigger code's onset, or a line
/// of the events file beside the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvent {
    /// `<record>.<n>` for the record's n-th annotation, `status.<sample>` for a trigger
    /// code, `tsv.<line>` for a line of the events file.
    pub id: String,
    /// After the recording's first sample, s.
    pub onset_s: f64,
    pub duration_s: Option<f64>,
    pub label: String,
    pub value: Option<i64>,
    pub source: &'static str,
}

impl RecordEvent {
    /// The event of session `session_id` at `fs` Hz, whose sample 0 lies `start_s` into the
    /// recording: onset sample `round((onset − start) · fs)` (ties to even, as MNE's
    /// `time_as_index`), and whether the onset lies before the session's first sample (the
    /// event then says sample 0).
    pub fn to_event(&self, session_id: &str, fs: f64, start_s: f64) -> (Event, bool) {
        let sample = ((self.onset_s - start_s) * fs).round_ties_even();
        let e = Event {
            session_id: session_id.to_string(),
            event_id: self.id.clone(),
            onset: Onset::Sample(sample.max(0.0) as u64),
            duration_s: self.duration_s.unwrap_or(0.0).max(0.0),
            label: self.label.clone(),
            value: self.value,
            source: self.source.into(),
        };
        (e, sample < 0.0)
    }
}

/// The events of an EDF/BDF recording, record by record: its EDF+/BDF+ annotations (every
/// TAL entry, with durations), its trigger channel's codes (see [`Stim`]) and the lines of an
/// `events.tsv` beside it, in the order the records are read.
pub struct RecordEvents<R> {
    stim: Option<Stim>,
    tsv: Option<EventsTsv<R>>,
    tsv_lines: Vec<crate::bids::TsvEvent>,
    source: &'static str,
    /// The rate a `sample` column counts at (the first session's).
    first_rate: f64,
}

impl<R> std::fmt::Debug for RecordEvents<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordEvents")
            .field("trigger_channel", &self.stim.as_ref().map(|s| &s.label))
            .field("tsv", &self.tsv.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: std::io::BufRead> RecordEvents<R> {
    /// The events of the recording `header` describes, with those of `tsv` (its `sample`
    /// column counted at `first_rate` Hz).
    pub fn new(header: &eeg_edf::Header, tsv: Option<EventsTsv<R>>, first_rate: f64) -> Self {
        RecordEvents {
            stim: Stim::find(header),
            tsv,
            tsv_lines: Vec::new(),
            source: if header.format.is_bdf() {
                "bdf+"
            } else {
                "edf+"
            },
            first_rate,
        }
    }

    /// The label of the signal read as trigger codes, if any.
    pub fn trigger_channel(&self) -> Option<&str> {
        self.stim.as_ref().map(|s| s.label.as_str())
    }

    /// Appends the events of the record `reader` read last (`record`) to `out`.
    pub fn record<F: std::io::Read>(
        &mut self,
        reader: &eeg_edf::EdfReader<F>,
        record: &eeg_edf::Record,
        out: &mut Vec<RecordEvent>,
    ) -> Result<(), Error> {
        let signal = self.stim.as_ref().map(|s| record.signal(s.signal));
        let at = (record.index(), record.onset_s());
        self.record_with(reader, at, signal, Stim::code, out)
    }

    /// [`RecordEvents::record`] for a record read as digital values.
    pub fn record_digital<F: std::io::Read>(
        &mut self,
        reader: &eeg_edf::EdfReader<F>,
        record: &eeg_edf::DigitalRecord,
        out: &mut Vec<RecordEvent>,
    ) -> Result<(), Error> {
        let signal = self.stim.as_ref().map(|s| record.signal(s.signal));
        let at = (record.index(), record.onset_s());
        self.record_with(reader, at, signal, Stim::digital_code, out)
    }

    /// The events of record `index`, which starts `onset` s into the recording, its trigger
    /// channel's values read by `code`.
    fn record_with<F: std::io::Read, T: Copy>(
        &mut self,
        reader: &eeg_edf::EdfReader<F>,
        (index, onset): (u64, f64),
        stim_values: Option<&[T]>,
        code: fn(&Stim, T) -> i64,
        out: &mut Vec<RecordEvent>,
    ) -> Result<(), Error> {
        self.annotations(reader, index, out)?;
        if let (Some(s), Some(values)) = (self.stim.as_mut(), stim_values) {
            s.push(onset, values, code, out);
        }
        self.tsv_until(onset + reader.header().record_duration_s, out)
    }

    fn annotations<F: std::io::Read>(
        &self,
        reader: &eeg_edf::EdfReader<F>,
        index: u64,
        out: &mut Vec<RecordEvent>,
    ) -> Result<(), Error> {
        let first = out.len();
        reader
            .annotations(|a| {
                out.push(RecordEvent {
                    id: format!("{index}.{}", out.len() - first),
                    onset_s: a.onset_s,
                    duration_s: a.duration_s,
                    label: a.text.into_owned(),
                    value: None,
                    source: self.source,
                })
            })
            .map_err(|e| Error::bad(e.to_string()))
    }

    fn tsv_until(&mut self, until_s: f64, out: &mut Vec<RecordEvent>) -> Result<(), Error> {
        let Some(tsv) = self.tsv.as_mut() else {
            return Ok(());
        };
        self.tsv_lines.clear();
        tsv.take_until(until_s, &mut self.tsv_lines)?;
        for t in self.tsv_lines.drain(..) {
            out.push(RecordEvent {
                id: format!("tsv.{}", t.line),
                // A `sample` counts at the recording's (first session's) rate.
                onset_s: t.sample.map_or(t.onset_s, |n| n as f64 / self.first_rate),
                duration_s: t.duration_s,
                label: t.label,
                value: t.value,
                source: "events.tsv",
            });
        }
        Ok(())
    }
}

/// Hands a session the batch a data record makes (`(first sample, samples, start ms, the
/// session's start in the recording s)`) and the record's events: onset sample
/// `round((onset − start) · fs)` (ties to even, as MNE's `time_as_index`).
fn place_notes(
    epochs: &mut SessionEpochs,
    meta: &SessionMeta,
    (first, n, start_ms, start_s): (u64, u64, f64, f64),
    notes: &[RecordEvent],
    out: &mut EpochLines<'_>,
) -> Result<(), Placing> {
    epochs.batch(meta, first, start_ms, n, out)?;
    for note in notes {
        match note.to_event(&meta.session_id, meta.sample_rate_hz, start_s) {
            (e, true) => epochs.before_start(meta, e, out)?,
            (e, false) => {
                if let Taken::Full(e) = epochs.event(meta, e, out)? {
                    return Err(Placing::Full(epochs.full_reason(&e)));
                }
            }
        }
    }
    Ok(())
}

/// Why a record's events could not be placed.
enum Placing {
    Output(std::io::Error),
    /// A session held all the events it may.
    Full(String),
}

impl From<std::io::Error> for Placing {
    fn from(e: std::io::Error) -> Placing {
        Placing::Output(e)
    }
}

/// A trigger channel (a data signal labelled `Status` or `Trigger`, in any case), read as
/// `mne.find_events` reads it with its defaults from `mne.io.read_raw_bdf` /
/// `read_raw_edf`: each sample's code is its digital value in a BDF (MNE sets a stim
/// channel's calibration to 1) or its physical value truncated to an integer in an EDF,
/// masked to its low 17 bits (`& (2**17 - 1)`, as MNE's reader does: bits 0–15 carry
/// BioSemi's trigger codes, 16 its epoch bit; the system bits above are dropped); an event
/// is a sample whose code is larger than the one before (`consecutive='increasing'`: a
/// rise from 0, or from a smaller code), the code as its value and label; the first
/// sample is never one (`initial_event=False`).
struct Stim {
    signal: usize,
    label: String,
    rate: f64,
    bdf: bool,
    /// `(bitvalue, offset)`: physical = bitvalue · (offset + digital).
    scaling: (f64, f64),
    /// The code of the last sample read, and the samples read.
    last: Option<i64>,
    read: u64,
    source: &'static str,
}

/// MNE's mask of a stim channel's values.
const STIM_MASK: i64 = (1 << 17) - 1;

impl Stim {
    fn find(header: &eeg_edf::Header) -> Option<Stim> {
        let (i, s) = header
            .signals
            .iter()
            .filter(|s| !s.is_annotation)
            .enumerate()
            .find(|(_, s)| {
                let l = s.label.trim();
                l.eq_ignore_ascii_case("status") || l.eq_ignore_ascii_case("trigger")
            })?;
        let bdf = header.format.is_bdf();
        Some(Stim {
            signal: i,
            label: s.label.clone(),
            rate: s.sample_rate_hz(header.record_duration_s),
            bdf,
            scaling: s.scaling(),
            last: None,
            read: 0,
            source: if bdf { "bdf-status" } else { "edf-status" },
        })
    }

    /// The code of a sample read as a digital value.
    fn digital_code(&self, digital: i32) -> i64 {
        if self.bdf {
            i64::from(digital) & STIM_MASK
        } else {
            let (bitvalue, offset) = self.scaling;
            self.code(bitvalue * (offset + f64::from(digital)))
        }
    }

    fn code(&self, physical: f64) -> i64 {
        let (bitvalue, offset) = self.scaling;
        let raw = if self.bdf {
            (physical / bitvalue - offset).round()
        } else {
            physical.trunc()
        };
        (raw as i64) & STIM_MASK
    }

    /// The onsets of trigger codes among a record's codes (the record starting `onset` s
    /// into the recording), as events.
    fn push<T: Copy>(
        &mut self,
        onset: f64,
        values: &[T],
        code: fn(&Stim, T) -> i64,
        notes: &mut Vec<RecordEvent>,
    ) {
        for (i, &x) in values.iter().enumerate() {
            let code = code(self, x);
            let index = self.read + i as u64;
            if self.last.is_some_and(|last| code > last) {
                notes.push(RecordEvent {
                    id: format!("status.{index}"),
                    onset_s: onset + i as f64 / self.rate,
                    duration_s: None,
                    label: code.to_string(),
                    value: Some(code),
                    source: self.source,
                });
            }
            self.last = Some(code);
        }
        self.read += values.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scratch;
    use eeg_edf::{WriteSignal, WriteSpec, write_edf};

    fn signal(label: &str, dimension: &str, rate: usize) -> WriteSignal {
        WriteSignal {
            label: label.into(),
            transducer: String::new(),
            physical_dimension: dimension.into(),
            physical_min: -100.0,
            physical_max: 100.0,
            digital_min: -32768,
            digital_max: 32767,
            prefilter: String::new(),
            samples_per_record: rate,
        }
    }

    /// `rec.edf`: A and B in µV at 256 Hz, C in mV at 128 Hz, T in degC at 256 Hz.
    fn header(dir: &Path) -> (std::path::PathBuf, eeg_edf::Header) {
        let mut spec = WriteSpec::eeg(0, 256, 2);
        spec.signals = vec![
            signal("A", "uV", 256),
            signal("B", "uV", 256),
            signal("C", "mV", 128),
            signal("T", "degC", 256),
        ];
        let path = dir.join("rec.edf");
        let file = std::fs::File::create(&path).unwrap();
        write_edf(file, "rec.edf", &spec, |_, _| {}).unwrap();
        let header = EdfReader::open(&path).unwrap().header().clone();
        (path, header)
    }

    #[test]
    fn voltage_signals_make_one_session_per_rate() {
        let dir = scratch("edf_groups");
        let (path, header) = header(&dir);
        let groups = session_groups("rec.edf", &path, &header, None, None).unwrap();
        let got: Vec<_> = groups
            .iter()
            .map(|g| {
                (
                    g.session_id.as_str(),
                    g.rate,
                    g.signals.clone(),
                    g.labels.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "rec@256Hz",
                    256.0,
                    vec![0, 1],
                    vec!["A".to_string(), "B".into()]
                ),
                ("rec@128Hz", 128.0, vec![2], vec!["C".to_string()]),
            ]
        );
        assert!(groups.iter().all(|g| g.device_id == "rec.edf"));
    }

    #[test]
    fn channels_and_a_session_id_are_taken_as_given() {
        let dir = scratch("edf_groups_options");
        let (path, header) = header(&dir);
        let wanted = ["T".to_string(), "A".to_string()];
        let groups = session_groups("rec.edf", &path, &header, Some(&wanted), Some("x")).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].session_id, "x");
        assert_eq!(groups[0].signals, [3, 0]);
        assert_eq!(groups[0].labels, ["T", "A"]);
        let e =
            session_groups("rec.edf", &path, &header, Some(&["Z".to_string()]), None).unwrap_err();
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            "rec.edf: --channels: no signal labelled 'Z' (signals: A, B, C, T)"
        );
    }
}
