//! One session's signal processing, on this thread or split by channel across worker
//! threads: the channel-split engine of EDF/BDF input.
//!
//! It lives here rather than in eeg-dsp because it is made of this crate's input: it shares
//! whole EDF data records (`Arc<eeg_edf::Record>`) with its workers, each reading its own
//! signals, so no sample is copied between threads; eeg-dsp stays single-threaded and knows
//! no file format.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use eeg_dsp::{OwnedWindow, ProcessingConfig, SessionProcessor, Window, WindowSink};

use crate::Error;

fn stopped() -> Error {
    Error::Internal("a processing thread stopped".into())
}

/// A record of the wrong shape for its processor, which the engine never makes.
fn shape(e: eeg_dsp::ShapeError) -> Error {
    Error::Internal(e.to_string())
}

/// Channels per part below which splitting a session across threads does not pay.
const MIN_CHANNELS_PER_PART: usize = 4;

/// One session's DSP, on this thread or split by channel across worker threads. Every
/// channel's numbers depend on that channel alone, and the indices are recomputed over all
/// channels when the parts are joined, so a split session emits exactly the records of an
/// unsplit one (tested).
pub(crate) struct Engine {
    local: SessionProcessor,
    /// The signals this thread processes; the workers take the rest, in order.
    local_signals: Vec<usize>,
    workers: Vec<Worker>,
    /// Records not yet handed to the workers: they get [`RECORDS_PER_JOB`] at a time, so
    /// threads wake each other once per job rather than once per record.
    batch: Vec<Arc<eeg_edf::Record>>,
    /// This thread's windows of the jobs whose worker results have not been joined yet.
    /// The workers run up to [`LAG`] jobs behind, so no thread waits for another's
    /// wake-up on every job.
    pending: std::collections::VecDeque<Part>,
    joined: OwnedWindow,
    /// The filtered samples are wanted (epochs are cut): each part sends its channels'
    /// back with its windows, and they are joined into whole frames for the sink.
    tap: bool,
    /// Channels per part, in order (this thread's first).
    widths: Vec<usize>,
    frames: Vec<f64>,
}

/// What one part made of one job: its windows, and its filtered samples (interleaved over
/// its channels) when they are wanted.
#[derive(Default)]
struct Part {
    windows: Vec<OwnedWindow>,
    filtered: Vec<f64>,
}

/// A part's sink: its windows kept, its filtered samples too when wanted.
struct Collect<'a> {
    part: &'a mut Part,
    tap: bool,
}

impl WindowSink for Collect<'_> {
    fn window(&mut self, w: &Window<'_>) {
        self.part.windows.push(OwnedWindow::from(w));
    }

    fn filtered(&mut self, frames: &[f64]) {
        if self.tap {
            self.part.filtered.extend_from_slice(frames);
        }
    }
}

/// Jobs a worker may lag behind this thread.
const LAG: usize = 2;

/// Data records per job.
const RECORDS_PER_JOB: usize = 4;

struct Worker {
    jobs: SyncSender<Job>,
    done: Receiver<Part>,
}

enum Job {
    /// Data records in order, shared rather than copied; the worker reads its own signals.
    Records(Vec<Arc<eeg_edf::Record>>),
    Reset(i64),
}

impl Engine {
    /// An engine for the data signals `signals` (indices into a record) at `fs` Hz. With
    /// `tap`, the sink is handed every filtered sample too (for epochs).
    pub(crate) fn new(
        config: &ProcessingConfig,
        fs: f64,
        signals: &[usize],
        t0_ms: i64,
        threads: usize,
        tap: bool,
    ) -> Result<Engine, eeg_dsp::ConfigError> {
        let n_channels = signals.len();
        // The session is checked against the limits whole: each part alone may fit.
        SessionProcessor::plan_session(config, fs, n_channels)?;
        let parts = threads.min(n_channels / MIN_CHANNELS_PER_PART).max(1);
        // This thread also reads and decodes the file and joins the parts, so it takes a
        // smaller share: weight 1 against 2 for each worker (measured best for two parts);
        // cutting epochs too, 1 against 4.
        let share = if tap { 4 } else { 2 };
        let weight = |k: usize| if k == 0 { 0 } else { 1 + share * (k - 1) };
        let total = weight(parts);
        let mut bounds: Vec<usize> = (0..=parts)
            .map(|k| weight(k) * n_channels / total)
            .collect();
        // Every part at least one channel, however the weights round.
        for k in 1..parts {
            bounds[k] = bounds[k].max(bounds[k - 1] + 1);
        }
        let local = SessionProcessor::new(config, fs, bounds[1], t0_ms)?;
        let mut workers = Vec::new();
        for k in 1..parts {
            let mine = signals[bounds[k]..bounds[k + 1]].to_vec();
            let mut p = SessionProcessor::new(config, fs, mine.len(), t0_ms)?;
            let (jobs, job_rx) = sync_channel::<Job>(LAG + 1);
            let (done_tx, done) = sync_channel(LAG + 1);
            let spawned = std::thread::Builder::new()
                .name(format!("dsp-{k}"))
                .spawn(move || {
                    for job in job_rx {
                        match job {
                            Job::Records(records) => {
                                let mut part = Part::default();
                                for record in &records {
                                    let mut sink = Collect {
                                        part: &mut part,
                                        tap,
                                    };
                                    // The shape is right by construction.
                                    let _ = push_signals(&mut p, &mine, record, &mut sink);
                                }
                                drop(records);
                                if done_tx.send(part).is_err() {
                                    break;
                                }
                            }
                            Job::Reset(t0_ms) => p.reset(t0_ms),
                        }
                    }
                });
            spawned.expect("spawning a processing thread");
            workers.push(Worker { jobs, done });
        }
        Ok(Engine {
            local,
            local_signals: signals[..bounds[1]].to_vec(),
            workers,
            batch: Vec::with_capacity(RECORDS_PER_JOB),
            pending: std::collections::VecDeque::new(),
            joined: OwnedWindow::default(),
            tap,
            widths: bounds.windows(2).map(|b| b[1] - b[0]).collect(),
            frames: Vec::new(),
        })
    }

    pub(crate) fn plan(&self) -> &eeg_dsp::Plan {
        self.local.plan()
    }

    /// Restarts every channel's signal state; the records before are processed, and their
    /// outputs handed to the sink, first.
    pub(crate) fn reset(
        &mut self,
        t0_ms: i64,
        sink: &mut impl eeg_dsp::WindowSink,
    ) -> Result<(), Error> {
        self.finish(sink)?;
        self.local.reset(t0_ms);
        for w in &self.workers {
            let _ = w.jobs.send(Job::Reset(t0_ms));
        }
        Ok(())
    }

    pub(crate) fn push_record(
        &mut self,
        record: &Arc<eeg_edf::Record>,
        sink: &mut impl eeg_dsp::WindowSink,
    ) -> Result<(), Error> {
        if self.workers.is_empty() {
            push_signals(&mut self.local, &self.local_signals, record, sink).map_err(shape)?;
            return Ok(());
        }
        self.batch.push(Arc::clone(record));
        if self.batch.len() == RECORDS_PER_JOB {
            self.dispatch(sink)?;
        }
        Ok(())
    }

    /// Hands the batched records to the workers, processes this thread's channels of them,
    /// and joins the results of jobs more than [`LAG`] behind.
    fn dispatch(&mut self, sink: &mut impl eeg_dsp::WindowSink) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        for w in &mut self.workers {
            w.jobs
                .send(Job::Records(self.batch.clone()))
                .map_err(|_| stopped())?;
        }
        let mut mine = Part::default();
        for record in &self.batch {
            let mut collect = Collect {
                part: &mut mine,
                tap: self.tap,
            };
            push_signals(&mut self.local, &self.local_signals, record, &mut collect)
                .map_err(shape)?;
        }
        self.batch.clear();
        self.pending.push_back(mine);
        while self.pending.len() > LAG {
            self.join_oldest(sink)?;
        }
        Ok(())
    }

    /// Joins and emits the windows of every record still in flight.
    pub(crate) fn finish(&mut self, sink: &mut impl eeg_dsp::WindowSink) -> Result<(), Error> {
        self.dispatch(sink)?;
        while !self.pending.is_empty() {
            self.join_oldest(sink)?;
        }
        Ok(())
    }

    fn join_oldest(&mut self, sink: &mut impl eeg_dsp::WindowSink) -> Result<(), Error> {
        let Some(mine) = self.pending.pop_front() else {
            return Ok(());
        };
        let mut theirs = Vec::with_capacity(self.workers.len());
        for w in &mut self.workers {
            theirs.push(w.done.recv().map_err(|_| stopped())?);
        }
        let mut their_windows: Vec<_> = theirs
            .iter_mut()
            .map(|t| std::mem::take(&mut t.windows).into_iter())
            .collect();
        for m in mine.windows {
            let mut parts = vec![m];
            for t in &mut their_windows {
                parts.extend(t.next());
            }
            if !self.joined.join(&parts) {
                return Err(Error::Internal(
                    "channel groups of a session went out of step".into(),
                ));
            }
            eeg_dsp::WindowSink::window(sink, &self.joined.view());
        }
        if self.tap {
            // Whole frames from each part's channels, in the parts' order.
            let n = mine.filtered.len() / self.widths[0].max(1);
            self.frames.clear();
            self.frames.reserve(n * self.widths.iter().sum::<usize>());
            for i in 0..n {
                let w = self.widths[0];
                self.frames
                    .extend_from_slice(&mine.filtered[i * w..(i + 1) * w]);
                for (t, &w) in theirs.iter().zip(&self.widths[1..]) {
                    let Some(frame) = t.filtered.get(i * w..(i + 1) * w) else {
                        return Err(Error::Internal(
                            "channel groups of a session went out of step".into(),
                        ));
                    };
                    self.frames.extend_from_slice(frame);
                }
            }
            eeg_dsp::WindowSink::filtered(sink, &self.frames);
        }
        Ok(())
    }
}

/// Pushes the given signals of one data record through a processor, in that order.
fn push_signals(
    p: &mut SessionProcessor,
    signals: &[usize],
    record: &eeg_edf::Record,
    sink: &mut impl eeg_dsp::WindowSink,
) -> Result<(), eeg_dsp::ShapeError> {
    let rows: Vec<&[f64]> = signals.iter().map(|&s| record.signal(s)).collect();
    p.push_rows(&rows, sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eeg_edf::{EdfReader, WriteSpec, write_edf};

    /// The data records of a synthetic EDF: `channels` signals at 256 Hz for `seconds`,
    /// each a mix of sines and a pseudo-random walk of its own.
    fn records(channels: usize, seconds: u64) -> (f64, Vec<Arc<eeg_edf::Record>>) {
        let spec = WriteSpec::eeg(channels, 256, seconds);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let bytes = write_edf(Vec::new(), "synthetic.edf", &spec, |r, signals| {
            for (c, s) in signals.iter_mut().enumerate() {
                for (i, v) in s.iter_mut().enumerate() {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    let t = (r as f64 * 256.0 + i as f64) / 256.0;
                    let noise = ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 20.0;
                    *v = 30.0 * (2.0 * std::f64::consts::PI * (4.0 + c as f64) * t).sin()
                        + 10.0 * (2.0 * std::f64::consts::PI * 50.0 * t).sin()
                        + noise;
                }
            }
        })
        .unwrap();
        let len = bytes.len() as u64;
        let mut reader =
            EdfReader::from_reader(bytes.as_slice(), "synthetic.edf", Some(len)).unwrap();
        let mut out = Vec::new();
        let mut record = eeg_edf::Record::default();
        while reader.read_record(&mut record).unwrap() {
            out.push(Arc::new(record.clone()));
        }
        (256.0, out)
    }

    /// What a sink was handed: windows (as text) and filtered frames (as bits).
    #[derive(Default, PartialEq)]
    struct Seen {
        windows: Vec<String>,
        frames: Vec<u64>,
    }

    impl WindowSink for Seen {
        fn window(&mut self, w: &Window<'_>) {
            self.windows.push(format!("{:?}", OwnedWindow::from(w)));
        }

        fn filtered(&mut self, frames: &[f64]) {
            self.frames.extend(frames.iter().map(|x| x.to_bits()));
        }
    }

    /// Every window and filtered sample of `records` (restarted at record `reset_at`) as one
    /// processor over all channels gives them: the definition the engine must meet.
    fn unsplit(fs: f64, records: &[Arc<eeg_edf::Record>], reset_at: usize) -> Seen {
        let config = ProcessingConfig::default();
        let n = records[0].n_signals();
        let mut p = SessionProcessor::new(&config, fs, n, 0).unwrap();
        let mut out = Seen::default();
        for (k, r) in records.iter().enumerate() {
            if k == reset_at {
                p.reset(1_000_000);
            }
            let rows: Vec<&[f64]> = (0..n).map(|s| r.signal(s)).collect();
            p.push_rows(&rows, &mut out).unwrap();
        }
        out
    }

    fn split(
        fs: f64,
        records: &[Arc<eeg_edf::Record>],
        reset_at: usize,
        threads: usize,
        tap: bool,
    ) -> Seen {
        let config = ProcessingConfig::default();
        let signals: Vec<usize> = (0..records[0].n_signals()).collect();
        let mut engine = Engine::new(&config, fs, &signals, 0, threads, tap).unwrap();
        let mut out = Seen::default();
        for (k, r) in records.iter().enumerate() {
            if k == reset_at {
                engine.reset(1_000_000, &mut out).unwrap();
            }
            engine.push_record(r, &mut out).unwrap();
        }
        engine.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn a_split_session_emits_the_windows_of_an_unsplit_one_for_any_thread_count() {
        // 24 channels: up to 6 parts of at least 4 channels; a restart at record 13.
        let (fs, records) = records(24, 30);
        let want = unsplit(fs, &records, 13);
        // Windows of 4 s every 1 s, restarted after 13 s: 10 + 14 of them.
        assert_eq!(want.windows.len(), 24);
        assert_eq!(want.frames.len(), 24 * 30 * 256);
        for threads in 1..=8 {
            let got = split(fs, &records, 13, threads, false);
            assert!(
                got.windows == want.windows,
                "{threads} threads: the windows differ"
            );
            // Tapped for epochs: every filtered sample too, in whole frames, bit for bit.
            let got = split(fs, &records, 13, threads, true);
            assert!(got == want, "{threads} threads, tapped: the outputs differ");
        }
    }

    #[test]
    fn few_channels_are_not_split() {
        let config = ProcessingConfig::default();
        let signals: Vec<usize> = (0..7).collect();
        // 7 channels make one part of at least 4: no worker.
        let engine = Engine::new(&config, 256.0, &signals, 0, 8, false).unwrap();
        assert!(engine.workers.is_empty());
        let signals: Vec<usize> = (0..8).collect();
        let engine = Engine::new(&config, 256.0, &signals, 0, 8, false).unwrap();
        assert_eq!(engine.workers.len(), 1);
    }
}
