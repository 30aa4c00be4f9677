//! The HTML report: one self-contained page per input with the band powers, signal
//! quality, trigger events and indices of each session over time.
//!
//! Windows are collected while they are processed (or read back from `eeg.processed/1`
//! records, [`read_processed`]) into at most [`MAX_POINTS`] points per series: consecutive
//! windows are averaged into buckets of 2^k windows, and the buckets are merged in pairs
//! whenever there would be more, so memory and page size stay bounded however long the
//! recording is. The per-channel summary is computed from every window, not from the thinned
//! points.
//!
//! The page (the repository's `assets/report.html`, filled in by [`Collector::render`] with
//! the style and script it shares with the service's live page, [`crate::pages`]) draws
//! everything inline on canvases; its Content-Security-Policy allows no request to any
//! address, so it opens offline and leaks nothing when opened.

mod page;
mod processed;

pub use processed::{is_processed, read_processed};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use eeg_dsp::{ProcessingConfig, Window};
use eeg_schema::{SessionMeta, TriggerEvent, TriggerRecord};

use page::{duration, iso_ms};

/// Most points a displayed time series keeps: about one per pixel of a wide chart.
pub const MAX_POINTS: usize = 1024;

/// Where the records came from, for the page's "Input" table.
#[derive(Debug, Clone, Default)]
pub struct InputMeta {
    /// (name, value) rows.
    pub rows: Vec<(String, String)>,
    /// EDF/BDF signals: label, dimension, sample rate, physical range, prefilter.
    pub signals: Vec<[String; 5]>,
}

impl InputMeta {
    /// An EDF/BDF header. The patient and recording fields are left out: they may identify
    /// a person, and a report is made to be passed around.
    pub fn edf(name: &str, header: &eeg_edf::Header) -> InputMeta {
        let f = header.format;
        let format = match (f.is_bdf(), f.is_plus(), f.is_discontinuous()) {
            (false, false, _) => "EDF",
            (false, true, false) => "EDF+C",
            (false, true, true) => "EDF+D",
            (true, false, _) => "BDF",
            (true, true, false) => "BDF+C",
            (true, true, true) => "BDF+D",
        };
        let data = header.signals.iter().filter(|s| !s.is_annotation).count();
        let rows = vec![
            ("File".into(), name.to_string()),
            ("Format".into(), format.into()),
            ("Start (UTC)".into(), iso_ms(header.start_unix_ms())),
            ("Duration".into(), duration(header.duration_s())),
            (
                "Data records".into(),
                format!("{} × {} s", header.n_records, header.record_duration_s),
            ),
            (
                "Signals".into(),
                format!("{data} (annotation signals excluded)"),
            ),
        ];
        let signals = header
            .signals
            .iter()
            .filter(|s| !s.is_annotation)
            .map(|s| {
                [
                    s.label.clone(),
                    s.physical_dimension.clone(),
                    format!("{} Hz", s.sample_rate_hz(header.record_duration_s)),
                    format!("{} … {}", s.physical_min, s.physical_max),
                    s.prefilter.clone(),
                ]
            })
            .collect();
        InputMeta { rows, signals }
    }

    /// A JSONL input: raw batches or processed records.
    pub fn jsonl(name: &str, what: &str, lines: u64) -> InputMeta {
        InputMeta::counted(name, what, "Lines", lines)
    }

    /// A file of binary messages.
    pub fn messages(name: &str, what: &str, messages: u64) -> InputMeta {
        InputMeta::counted(name, what, "Messages", messages)
    }

    fn counted(name: &str, what: &str, unit: &str, count: u64) -> InputMeta {
        InputMeta {
            rows: vec![
                ("File".into(), name.to_string()),
                ("Format".into(), what.to_string()),
                (unit.into(), count.to_string()),
            ],
            signals: Vec::new(),
        }
    }
}

/// What the page says about the processing: the config (or that the records were read back,
/// so it is not known) and the trigger rules.
#[derive(Debug, Clone)]
pub struct ConfigMeta {
    /// `None`: the input was already processed.
    pub processing: Option<ProcessingConfig>,
    /// The config file, `None` for the defaults.
    pub path: Option<PathBuf>,
    pub rules: Vec<eeg_session::Rule>,
}

/// Windows and events of every session, collected as they are produced.
#[derive(Debug, Default)]
pub struct Collector {
    sessions: Vec<Series>,
    /// The series a session id's windows go to now (the last one of that id).
    by_id: HashMap<String, usize>,
    input: InputMeta,
}

impl Collector {
    pub fn set_input(&mut self, input: InputMeta) {
        self.input = input;
    }

    /// One window of a session. A session whose channels or bands change (a JSONL stream
    /// that changed shape) goes on as a new series, since its numbers no longer line up.
    pub fn window(&mut self, meta: &SessionMeta, w: &Window<'_>) {
        let i = match self.by_id.get(&meta.session_id) {
            Some(&i) if self.sessions[i].fits(meta, w) => i,
            other => {
                let part = other.map_or(1, |&i| self.sessions[i].part + 1);
                self.sessions.push(Series::new(meta, w, part));
                let i = self.sessions.len() - 1;
                self.by_id.insert(meta.session_id.clone(), i);
                i
            }
        };
        self.sessions[i].add(w);
    }

    pub fn event(&mut self, e: &TriggerEvent<'_>) {
        if let Some(&i) = self.by_id.get(e.session_id) {
            let s = &mut self.sessions[i];
            s.events.push(TriggerRecord::from(e));
        }
    }

    /// The session's signal restarted (a gap in an EDF+D file or a stream).
    pub fn reset(&mut self, session_id: &str) {
        if let Some(&i) = self.by_id.get(session_id) {
            self.sessions[i].resets += 1;
        }
    }

    pub fn windows(&self) -> u64 {
        self.sessions.iter().map(|s| s.windows).sum()
    }

    pub fn n_sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// Quality of one channel in one window, as the map colours it: the first flag set, in
/// this order; "line noise" when no flag is set but the window is not good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    Good = 0,
    Flatline = 1,
    Railed = 2,
    Artifact = 3,
    LineNoise = 4,
}

const N_STATES: usize = 5;

/// Names of the reasons a window is not good, in [`State`] order from 1.
const REASONS: [&str; 4] = ["flatline", "railed", "artifact", "line noise"];

fn state(q: &eeg_dsp::Quality) -> State {
    if q.good {
        State::Good
    } else if q.flatline {
        State::Flatline
    } else if q.railed {
        State::Railed
    } else if q.artifact {
        State::Artifact
    } else {
        State::LineNoise
    }
}

/// Consecutive windows averaged into one displayed point.
#[derive(Debug, Clone)]
struct Bucket {
    n: u32,
    /// Sum of the windows' mid times, ms after the series' first window start.
    t_sum: f64,
    /// Sums of band power and of relative power, channel-major (channels × bands).
    abs: Vec<f64>,
    rel: Vec<f64>,
    /// Windows per channel and [`State`] (channels × [`N_STATES`]).
    states: Vec<u32>,
    /// Sums and counts of the defined engagement, θ/β and α/θ.
    idx: [f64; 3],
    idx_n: [u32; 3],
}

impl Bucket {
    fn new(values: usize, channels: usize) -> Bucket {
        Bucket {
            n: 0,
            t_sum: 0.0,
            abs: vec![0.0; values],
            rel: vec![0.0; values],
            states: vec![0; channels * N_STATES],
            idx: [0.0; 3],
            idx_n: [0; 3],
        }
    }

    fn absorb(&mut self, other: &Bucket) {
        self.n += other.n;
        self.t_sum += other.t_sum;
        for (a, b) in self.abs.iter_mut().zip(&other.abs) {
            *a += b;
        }
        for (a, b) in self.rel.iter_mut().zip(&other.rel) {
            *a += b;
        }
        for (a, b) in self.states.iter_mut().zip(&other.states) {
            *a += b;
        }
        for k in 0..3 {
            self.idx[k] += other.idx[k];
            self.idx_n[k] += other.idx_n[k];
        }
    }
}

/// One session's windows, thinned for display, and its exact per-channel totals.
#[derive(Debug)]
struct Series {
    meta: Arc<SessionMeta>,
    /// 1 for a session's first series, then 2, 3... after changes of shape.
    part: u32,
    bands: Vec<String>,
    first_ms: i64,
    last_end_ms: i64,
    windows: u64,
    settling: u64,
    resets: u64,
    /// Per channel: relative power summed over all windows (channels × bands), good windows,
    /// and windows with each reason set (channels × 4).
    rel_total: Vec<f64>,
    good: Vec<u64>,
    reasons: Vec<u64>,
    buckets: Vec<Bucket>,
    /// Windows per bucket: a power of two.
    per_bucket: u64,
    events: Vec<TriggerRecord>,
}

impl Series {
    fn new(meta: &SessionMeta, w: &Window<'_>, part: u32) -> Series {
        let (nch, nb) = (w.n_channels(), w.bands.len());
        Series {
            meta: Arc::new(meta.clone()),
            part,
            bands: w.bands.iter().map(|b| b.name.clone()).collect(),
            first_ms: w.start_ms,
            last_end_ms: w.end_ms,
            windows: 0,
            settling: 0,
            resets: 0,
            rel_total: vec![0.0; nch * nb],
            good: vec![0; nch],
            reasons: vec![0; nch * REASONS.len()],
            buckets: Vec::new(),
            per_bucket: 1,
            events: Vec::new(),
        }
    }

    fn fits(&self, meta: &SessionMeta, w: &Window<'_>) -> bool {
        self.meta.channels == meta.channels
            && self.bands.len() == w.bands.len()
            && self.bands.iter().zip(w.bands).all(|(a, b)| *a == b.name)
    }

    fn n_channels(&self) -> usize {
        self.meta.channels.len()
    }

    fn add(&mut self, w: &Window<'_>) {
        let (nch, nb) = (self.n_channels(), self.bands.len());
        self.windows += 1;
        self.settling += u64::from(w.settling);
        self.last_end_ms = self.last_end_ms.max(w.end_ms);
        let full = self
            .buckets
            .last()
            .is_none_or(|b| u64::from(b.n) >= self.per_bucket);
        if full {
            if self.buckets.len() == MAX_POINTS {
                self.halve();
            }
            self.buckets.push(Bucket::new(nch * nb, nch));
        }
        let Some(b) = self.buckets.last_mut() else {
            return;
        };
        b.n += 1;
        b.t_sum += (w.start_ms - self.first_ms) as f64 + (w.end_ms - w.start_ms) as f64 / 2.0;
        for c in 0..nch {
            let q = w.quality(c);
            let s = state(q);
            b.states[c * N_STATES + s as usize] += 1;
            if q.good {
                self.good[c] += 1;
            }
            for (k, set) in [
                q.flatline,
                q.railed,
                q.artifact,
                !q.good && s == State::LineNoise,
            ]
            .into_iter()
            .enumerate()
            {
                self.reasons[c * REASONS.len() + k] += u64::from(set);
            }
            let row = c * nb..(c + 1) * nb;
            for ((a, r), (p, rel)) in b.abs[row.clone()]
                .iter_mut()
                .zip(&mut b.rel[row.clone()])
                .zip(w.band_power(c).iter().zip(w.relative_power(c)))
            {
                *a += p;
                *r += rel;
            }
            for (t, rel) in self.rel_total[row].iter_mut().zip(w.relative_power(c)) {
                *t += rel;
            }
        }
        let idx = [
            w.indices.engagement,
            w.indices.theta_beta,
            w.indices.alpha_theta,
        ];
        for (k, v) in idx.into_iter().enumerate() {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                b.idx[k] += v;
                b.idx_n[k] += 1;
            }
        }
    }

    /// Merges the buckets in pairs: twice the windows per point, half the points.
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let mut it = old.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                a.absorb(&b);
            }
            self.buckets.push(a);
        }
        self.per_bucket *= 2;
    }

    fn title(&self) -> String {
        if self.part > 1 {
            format!(
                "{} (part {}: channels or bands changed)",
                self.meta.session_id, self.part
            )
        } else {
            self.meta.session_id.clone()
        }
    }

    /// The thinning, as the page states it.
    fn thinning_note(&self) -> String {
        if self.per_bucket == 1 {
            format!(
                "Every window is shown ({} points per series, not thinned).",
                self.buckets.len()
            )
        } else {
            format!(
                "Thinned for display: {} windows shown as {} points per series, each the mean of {} consecutive windows (the last of fewer); a quality cell shows the state of most of its windows. The summary table counts every window.",
                self.windows,
                self.buckets.len(),
                self.per_bucket
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eeg_dsp::{Band, Quality};

    fn meta(channels: usize) -> SessionMeta {
        SessionMeta {
            session_id: "s".into(),
            device_id: "d".into(),
            user_id: None,
            sample_rate_hz: 256.0,
            channels: (0..channels).map(|c| format!("C{c}")).collect(),
        }
    }

    fn bands() -> Vec<Band> {
        ProcessingConfig::default().bands
    }

    /// Pushes `n` one-second windows whose alpha power is the window index + 1.
    fn push(collector: &mut Collector, n: u64) {
        let bands = bands();
        let meta = meta(2);
        for i in 0..n {
            let v = (i + 1) as f64;
            let bp = [1.0, 1.0, v, 1.0, 1.0, 1.0, 1.0, v, 1.0, 1.0];
            let total = [4.0 + v, 4.0 + v];
            let rel: Vec<f64> = bp.iter().map(|p| p / (4.0 + v)).collect();
            let q = [
                Quality {
                    good: true,
                    ..Quality::default()
                },
                Quality {
                    artifact: i % 2 == 0,
                    good: i % 2 == 1,
                    ..Quality::default()
                },
            ];
            let mut w = Window::from_parts(&bands, &bp, &rel, &total, &q);
            w.index = i;
            w.start_ms = 1_000_000 + i as i64 * 1000;
            w.end_ms = w.start_ms + 4000;
            collector.window(&meta, &w);
        }
    }

    #[test]
    fn a_long_session_is_thinned_to_at_most_max_points_of_whole_means() {
        let mut c = Collector::default();
        let n = 10 * MAX_POINTS as u64 + 3;
        push(&mut c, n);
        let s = &c.sessions[0];
        assert!(s.buckets.len() <= MAX_POINTS && s.buckets.len() > MAX_POINTS / 2);
        assert!(s.per_bucket.is_power_of_two());
        let counted: u64 = s.buckets.iter().map(|b| u64::from(b.n)).sum();
        assert_eq!(counted, n);
        assert!(
            s.buckets[..s.buckets.len() - 1]
                .iter()
                .all(|b| u64::from(b.n) == s.per_bucket)
        );
        // Bucket k holds windows k*m .. (k+1)*m: its mean alpha power is the mean of those
        // windows' index + 1.
        let m = s.per_bucket as f64;
        for (k, b) in s.buckets.iter().enumerate().take(5) {
            let want = k as f64 * m + (m + 1.0) / 2.0;
            assert_eq!(b.abs[2] / f64::from(b.n), want);
        }
        // The summary counts every window, not the points.
        assert_eq!(s.windows, n);
        assert_eq!(s.good, vec![n, n / 2]);
        assert_eq!(s.reasons[REASONS.len() + 2], n - n / 2);
    }

    #[test]
    fn a_short_session_is_not_thinned() {
        let mut c = Collector::default();
        push(&mut c, 100);
        let s = &c.sessions[0];
        assert_eq!((s.buckets.len(), s.per_bucket), (100, 1));
        assert!(s.thinning_note().contains("not thinned"));
    }

    #[test]
    fn events_and_restarts_go_to_their_session() {
        let mut c = Collector::default();
        push(&mut c, 3);
        c.reset("s");
        c.reset("other");
        let record = TriggerRecord {
            rule_id: "high_engagement".into(),
            session_id: "s".into(),
            device_id: "d".into(),
            state: eeg_schema::EventState::Fired,
            metric: "indices.engagement".into(),
            value: 0.8,
            threshold: 0.7,
            window_index: 2,
            start_ms: 1_002_000,
            end_ms: 1_006_000,
        };
        c.event(&record.as_event());
        let s = &c.sessions[0];
        assert_eq!((s.resets, s.events.len()), (1, 1));
        assert_eq!((c.n_sessions(), c.windows()), (1, 3));
        // Marked on the charts at its window's end: 6 s after the first window's start.
        let events = &s.data()["events"];
        assert_eq!(events[0]["t"], 6.0, "{events}");
    }

    #[test]
    fn a_session_whose_channels_change_goes_on_as_a_new_part() {
        let mut c = Collector::default();
        push(&mut c, 2);
        let w = crate::testing::window(2, 3);
        c.window(&meta(3), &w.view());
        assert_eq!(c.n_sessions(), 2);
        assert_eq!(
            c.sessions[1].title(),
            "s (part 2: channels or bands changed)"
        );
        assert_eq!((c.sessions[0].windows, c.sessions[1].windows), (2, 1));
    }
}
