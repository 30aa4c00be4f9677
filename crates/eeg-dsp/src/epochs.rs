//! Epochs: the filtered signal cut around events, as `mne.Epochs` cuts it, and what each
//! epoch holds: baseline-corrected samples, rejection by peak-to-peak and flatness, named
//! component windows (mean amplitude, peak and its latency) and the change of band power
//! from a reference window to an active one (ERD/ERS).
//!
//! # The definition (MNE's)
//! For an event at sample `s` and a sample rate `fs`:
//! - the epoch holds samples `s + round(tmin·fs) ..= s + round(tmax·fs)` (ties to even, as
//!   Python's `round`), and sample `k` of it lies at `(round(tmin·fs) + k) / fs` seconds;
//! - a window `[a, b]` (the baseline, a component, the ERD's reference and active windows)
//!   is the samples whose time `t` has `a <= t <= b`, as MNE's `rescale` and `crop` pick
//!   them;
//! - the baseline's mean is subtracted from every sample of the epoch, per channel;
//! - the epoch is rejected when the peak-to-peak amplitude of any channel is above
//!   `reject_uv`, or below `flat_uv` (MNE's `reject` and `flat`, `np.greater` and
//!   `np.less`);
//! - an epoch needs every one of its samples: one that starts before the stream's first
//!   sample, or ends after its last, has no data (MNE's `NO_DATA`).
//!
//! Band power in the ERD windows is the processing definition's on that segment: Welch with
//! SciPy's defaults and `nperseg = min(round(welch_segment_s·fs), segment length)` (SciPy
//! shortens a segment longer than its input the same way), integrated with the trapezoid
//! rule over the bins `lo <= f <= hi`.
//!
//! # Streaming
//! An [`Epocher`] keeps the last samples of a session's filtered signal (as many as its
//! caller asks to be able to reach back, plus one epoch) and the events waiting for the
//! samples their epoch needs. It grows with the samples that arrived, up to that bound.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use crate::config::{ConfigError, Plan};
use crate::welch::{BandBins, SegmentPsd, welch_mean_into};

/// Which extreme of a component window is its peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Peak {
    /// The largest value.
    Pos,
    /// The smallest value.
    Neg,
    /// The value largest in magnitude (MNE's `get_peak` default), its sign kept.
    #[default]
    Abs,
}

impl Peak {
    pub fn name(self) -> &'static str {
        match self {
            Peak::Pos => "pos",
            Peak::Neg => "neg",
            Peak::Abs => "abs",
        }
    }
}

/// A named window of the epoch, e.g. `p300 = [0.25, 0.5]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub name: String,
    pub window_s: [f64; 2],
    pub peak: Peak,
}

/// Band power change from `reference_s` to `active_s`, in percent: `(A − R) / R × 100`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErdConfig {
    pub reference_s: [f64; 2],
    pub active_s: [f64; 2],
}

/// What to cut around each event and what to measure in it.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochConfig {
    pub tmin_s: f64,
    pub tmax_s: f64,
    /// `None`: no baseline correction.
    pub baseline_s: Option<[f64; 2]>,
    pub reject_uv: Option<f64>,
    pub flat_uv: Option<f64>,
    pub components: Vec<Component>,
    pub erd: Option<ErdConfig>,
}

impl Default for EpochConfig {
    /// MNE's defaults: −0.2 s to 0.5 s, baseline from the start to the event.
    fn default() -> EpochConfig {
        EpochConfig {
            tmin_s: -0.2,
            tmax_s: 0.5,
            baseline_s: Some([-0.2, 0.0]),
            reject_uv: None,
            flat_uv: None,
            components: Vec::new(),
            erd: None,
        }
    }
}

/// Components per config at most: each is three numbers per channel in every record.
pub const MAX_COMPONENTS: usize = 16;

/// An ERD window's bins and segment.
#[derive(Debug, Clone)]
struct ErdWindow {
    samples: Range<usize>,
    nperseg: usize,
}

/// An [`EpochConfig`] checked against one sample rate and processing plan.
#[derive(Debug, Clone)]
pub struct EpochPlan {
    fs: f64,
    first: i64,
    len: usize,
    baseline: Option<Range<usize>>,
    components: Vec<(Range<usize>, Peak)>,
    erd: Option<[ErdWindow; 2]>,
    bands: Vec<[f64; 2]>,
    reject_uv: Option<f64>,
    flat_uv: Option<f64>,
}

fn invalid(key: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        key: format!("epochs.{key}"),
        problem,
    }
}

impl EpochPlan {
    /// Checks `config` at `plan`'s sample rate; the ERD uses `plan`'s bands and Welch
    /// segment. Errors name the key at fault.
    pub fn new(config: &EpochConfig, plan: &Plan) -> Result<EpochPlan, ConfigError> {
        let fs = plan.fs;
        let (tmin, tmax) = (config.tmin_s, config.tmax_s);
        if !(tmin.is_finite() && tmax.is_finite() && tmin <= tmax) {
            return Err(invalid(
                "tmin_s",
                format!("must be finite and at most tmax_s ({tmax}), got {tmin}"),
            ));
        }
        let first = (tmin * fs).round_ties_even();
        let last = (tmax * fs).round_ties_even();
        // An epoch of more than 2^24 samples is a config error, not a plan to allocate.
        if first.abs() > (1u64 << 40) as f64 || last - first >= (1u64 << 24) as f64 {
            return Err(invalid(
                "tmax_s",
                format!(
                    "an epoch of {} s at {fs} Hz is {} samples, more than 16777216",
                    tmax - tmin,
                    last - first + 1.0
                ),
            ));
        }
        let first = first as i64;
        let len = (last as i64 - first + 1) as usize;
        let mut p = EpochPlan {
            fs,
            first,
            len,
            baseline: None,
            components: Vec::new(),
            erd: None,
            bands: plan.bands.iter().map(|b| [b.lo_hz, b.hi_hz]).collect(),
            reject_uv: positive("reject_uv", config.reject_uv)?,
            flat_uv: positive("flat_uv", config.flat_uv)?,
        };
        if let Some(b) = config.baseline_s {
            p.baseline = Some(p.window("baseline_s", b, tmin, tmax)?);
        }
        if config.components.len() > MAX_COMPONENTS {
            return Err(invalid(
                "components",
                format!(
                    "{} components, at most {MAX_COMPONENTS}",
                    config.components.len()
                ),
            ));
        }
        for (i, c) in config.components.iter().enumerate() {
            if config.components[..i].iter().any(|o| o.name == c.name) {
                return Err(invalid(
                    "components",
                    format!("{:?} is named twice", c.name),
                ));
            }
            let key = format!("components.{}", c.name);
            p.components
                .push((p.window(&key, c.window_s, tmin, tmax)?, c.peak));
        }
        if let Some(erd) = &config.erd {
            let mut windows = Vec::with_capacity(2);
            for (key, w) in [
                ("erd.reference_s", erd.reference_s),
                ("erd.active_s", erd.active_s),
            ] {
                let samples = p.window(key, w, tmin, tmax)?;
                if samples.len() < 2 {
                    return Err(invalid(
                        key,
                        format!("holds {} sample at {fs} Hz, at least 2", samples.len()),
                    ));
                }
                let nperseg = plan.nperseg.min(samples.len());
                windows.push(ErdWindow { samples, nperseg });
            }
            let [reference, active] = <[ErdWindow; 2]>::try_from(windows).expect("two windows");
            p.erd = Some([reference, active]);
        }
        Ok(p)
    }

    /// The samples of `[a, b]`: those whose time `t` has `a <= t <= b`.
    fn window(
        &self,
        key: &str,
        [a, b]: [f64; 2],
        tmin: f64,
        tmax: f64,
    ) -> Result<Range<usize>, ConfigError> {
        if !(a.is_finite() && b.is_finite() && a <= b) {
            return Err(invalid(
                key,
                format!("must be [start, end] with start <= end, got [{a}, {b}]"),
            ));
        }
        if a < tmin || b > tmax {
            return Err(invalid(
                key,
                format!("[{a}, {b}] reaches outside the epoch [tmin_s, tmax_s] = [{tmin}, {tmax}]"),
            ));
        }
        let start = (0..self.len).find(|&k| self.time_s(k) >= a);
        let end = (0..self.len).rev().find(|&k| self.time_s(k) <= b);
        match (start, end) {
            (Some(s), Some(e)) if s <= e => Ok(s..e + 1),
            _ => Err(invalid(
                key,
                format!("[{a}, {b}] holds no sample at {} Hz", self.fs),
            )),
        }
    }

    /// Offset of the epoch's first sample from its event's: `round(tmin·fs)`.
    pub fn first_offset(&self) -> i64 {
        self.first
    }

    /// Samples per channel in an epoch.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn fs(&self) -> f64 {
        self.fs
    }

    /// Time of the epoch's sample `k` relative to its event, s (`times[k]` in MNE).
    pub fn time_s(&self, k: usize) -> f64 {
        (self.first + k as i64) as f64 / self.fs
    }

    /// Bands of the ERD, `0` when it is off.
    pub fn erd_bands(&self) -> usize {
        if self.erd.is_some() {
            self.bands.len()
        } else {
            0
        }
    }

    /// Heap bytes of one epoch's values and the ERD's Welch buffers at `n_channels`.
    pub fn values_bytes(&self, n_channels: usize) -> u64 {
        let per_channel = self.len + 3 * self.components.len() + 3 * self.bands.len() + 2;
        let psd = self.erd.as_ref().map_or(0, |w| {
            w.iter()
                .map(|w| SegmentPsd::state_bytes_for(w.nperseg) + (w.nperseg / 2 + 1) * 8)
                .sum::<usize>()
        });
        (n_channels * per_channel * 8 + psd) as u64
    }
}

fn positive(key: &str, v: Option<f64>) -> Result<Option<f64>, ConfigError> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(invalid(
            key,
            format!("must be a finite number > 0 (µV), got {x}"),
        )),
        v => Ok(v),
    }
}

/// One epoch's numbers. Per-channel values are laid out `[item * n_channels + channel]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochValues {
    n_channels: usize,
    len: usize,
    /// Baseline-corrected samples, channel-major (`[channel * len + k]`), µV.
    pub samples: Vec<f64>,
    /// Channels whose peak-to-peak is above `reject_uv`.
    pub too_large: Vec<usize>,
    /// Channels whose peak-to-peak is below `flat_uv`.
    pub too_flat: Vec<usize>,
    /// Per component and channel: mean amplitude, µV.
    pub mean_uv: Vec<f64>,
    /// Per component and channel: the peak's value, µV, and its time after the event, s.
    pub peak_uv: Vec<f64>,
    pub peak_s: Vec<f64>,
    /// Per band and channel: power in the reference and active windows, µV², and the change
    /// in percent (`NaN` when the reference power is 0).
    pub reference_power: Vec<f64>,
    pub active_power: Vec<f64>,
    pub erd_pct: Vec<f64>,
}

impl EpochValues {
    pub fn n_channels(&self) -> usize {
        self.n_channels
    }

    /// Samples per channel.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One channel's baseline-corrected samples.
    pub fn channel(&self, channel: usize) -> &[f64] {
        &self.samples[channel * self.len..(channel + 1) * self.len]
    }

    pub fn rejected(&self) -> bool {
        !(self.too_large.is_empty() && self.too_flat.is_empty())
    }
}

/// The measuring part of an epoch: everything after its samples were gathered. Holds the
/// ERD's Welch buffers, so that measuring allocates nothing once they are planned.
#[derive(Debug)]
struct Measure {
    erd: Option<[(SegmentPsd, BandBins, Vec<f64>); 2]>,
    bands_out: Vec<f64>,
}

impl Measure {
    fn new(plan: &EpochPlan) -> Measure {
        let erd = plan.erd.as_ref().map(|windows| {
            windows.clone().map(|w| {
                let seg = SegmentPsd::new(w.nperseg, plan.fs);
                let bins = BandBins::new(seg.freqs(), plan.bands.iter().copied());
                let acc = vec![0.0; w.nperseg / 2 + 1];
                (seg, bins, acc)
            })
        });
        Measure {
            erd,
            bands_out: vec![0.0; plan.bands.len()],
        }
    }

    /// Corrects `v.samples` for the baseline and fills in every other value.
    fn run(&mut self, plan: &EpochPlan, v: &mut EpochValues) {
        let (nch, len) = (v.n_channels, v.len);
        v.too_large.clear();
        v.too_flat.clear();
        let nc = plan.components.len();
        let nb = plan.erd_bands();
        v.mean_uv.resize(nc * nch, 0.0);
        v.peak_uv.resize(nc * nch, 0.0);
        v.peak_s.resize(nc * nch, 0.0);
        v.reference_power.resize(nb * nch, 0.0);
        v.active_power.resize(nb * nch, 0.0);
        v.erd_pct.resize(nb * nch, 0.0);
        for ch in 0..nch {
            let x = &mut v.samples[ch * len..(ch + 1) * len];
            let mean = match &plan.baseline {
                Some(b) => x[b.clone()].iter().sum::<f64>() / b.len() as f64,
                None => 0.0,
            };
            // One pass: the baseline off, and the extremes of what is left.
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for s in x.iter_mut() {
                *s -= mean;
                if *s < lo {
                    lo = *s;
                }
                if *s > hi {
                    hi = *s;
                }
            }
            let ptp = hi - lo;
            if plan.reject_uv.is_some_and(|r| ptp > r) {
                v.too_large.push(ch);
            }
            if plan.flat_uv.is_some_and(|f| ptp < f) {
                v.too_flat.push(ch);
            }
            for (c, (w, peak)) in plan.components.iter().enumerate() {
                let seg = &x[w.clone()];
                v.mean_uv[c * nch + ch] = seg.iter().sum::<f64>() / seg.len() as f64;
                // The first extreme, as NumPy's argmax and argmin give it.
                let mut best = 0;
                for (i, &s) in seg.iter().enumerate() {
                    let better = match peak {
                        Peak::Pos => s > seg[best],
                        Peak::Neg => s < seg[best],
                        Peak::Abs => s.abs() > seg[best].abs(),
                    };
                    if better {
                        best = i;
                    }
                }
                v.peak_uv[c * nch + ch] = seg[best];
                v.peak_s[c * nch + ch] = plan.time_s(w.start + best);
            }
            if let (Some(windows), Some(erd)) = (&plan.erd, &mut self.erd) {
                for (i, (w, (seg, bins, acc))) in windows.iter().zip(erd.iter_mut()).enumerate() {
                    welch_mean_into(seg, acc, &x[w.samples.clone()]);
                    bins.integrate(acc, &mut self.bands_out);
                    let out = if i == 0 {
                        &mut v.reference_power
                    } else {
                        &mut v.active_power
                    };
                    for (b, p) in self.bands_out.iter().enumerate() {
                        out[b * nch + ch] = *p;
                    }
                }
                for b in 0..nb {
                    let (r, a) = (
                        v.reference_power[b * nch + ch],
                        v.active_power[b * nch + ch],
                    );
                    v.erd_pct[b * nch + ch] = if r > 0.0 {
                        (a - r) / r * 100.0
                    } else {
                        f64::NAN
                    };
                }
            }
        }
    }
}

/// Why an epoch has no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// It starts before the stream's first sample.
    BeforeStart,
    /// Its first samples are older than what the epocher keeps.
    Forgotten,
    /// The stream ended (or restarted) before its last sample.
    Ended,
}

impl Missing {
    pub fn name(self) -> &'static str {
        match self {
            Missing::BeforeStart => "before_start",
            Missing::Forgotten => "too_late",
            Missing::Ended => "ended",
        }
    }
}

/// Receives epochs as they complete, or as they are found to have no data.
pub trait EpochSink<T> {
    fn epoch(&mut self, event: T, onset: u64, values: Result<&EpochValues, Missing>);
}

impl<T, F: FnMut(T, u64, Result<&EpochValues, Missing>)> EpochSink<T> for F {
    fn epoch(&mut self, event: T, onset: u64, values: Result<&EpochValues, Missing>) {
        self(event, onset, values)
    }
}

/// One session's filtered samples, kept for the epochs of its events. `T` is what the
/// caller knows of an event; it comes back with the epoch.
#[derive(Debug)]
pub struct Epocher<T> {
    /// Shared with whoever writes the epochs' records.
    plan: Arc<EpochPlan>,
    n_channels: usize,
    /// Samples per channel kept at most.
    cap: usize,
    /// Frames as the processor hands them (interleaved: a push is one copy), frame `i` at
    /// `i % frames held`. It grows with the samples (doubling) until it holds `cap` frames,
    /// so before then nothing wraps.
    ring: Vec<f64>,
    /// Samples pushed so far.
    end: u64,
    /// The first sample the ring was filled from: 0, or where a resumed epocher started.
    start: u64,
    /// Events whose epoch's last sample has not arrived, with their onsets, in the order of
    /// that last sample (then of their arrival): the front is the next to complete.
    pending: VecDeque<(T, u64)>,
    values: EpochValues,
    measure: Measure,
}

impl<T> Epocher<T> {
    /// An epocher that can still cut an epoch for an event `reach` samples behind the
    /// newest sample.
    pub fn new(plan: Arc<EpochPlan>, n_channels: usize, reach: u64) -> Epocher<T> {
        let before = plan.first.min(0).unsigned_abs();
        let cap = usize::try_from(reach.saturating_add(before))
            .unwrap_or(usize::MAX)
            .max(plan.len);
        Epocher {
            measure: Measure::new(&plan),
            values: EpochValues {
                n_channels,
                len: plan.len,
                ..EpochValues::default()
            },
            plan,
            n_channels,
            cap,
            ring: Vec::new(),
            end: 0,
            start: 0,
            pending: VecDeque::new(),
        }
    }

    /// An epocher carrying on at sample `start` of the stream, with the events `pending`
    /// (their onsets) as [`Epocher::pending`] listed them: what a restored session needs when
    /// its filtered samples are pushed again from `start` on. Epochs reaching before `start`
    /// are missing (`too_late`); a caller that resumes at least `reach` plus the pre-stimulus
    /// samples behind its newest never asks for one.
    pub fn resume(
        plan: Arc<EpochPlan>,
        n_channels: usize,
        reach: u64,
        start: u64,
        pending: impl IntoIterator<Item = (T, u64)>,
    ) -> Epocher<T> {
        let mut e = Epocher::new(plan, n_channels, reach);
        e.end = start;
        e.start = start;
        // Positions are `sample % cap` from the start: the ring is at its full size, so
        // growing never moves what it holds.
        e.ring = vec![0.0; e.cap * n_channels];
        let mut pending: Vec<(T, u64)> = pending.into_iter().collect();
        pending.sort_by_key(|&(_, onset)| e.due(onset));
        e.pending = pending.into();
        e
    }

    /// Events whose epochs wait for their last sample, with their onsets, in the order their
    /// epochs will be emitted.
    pub fn pending(&self) -> impl ExactSizeIterator<Item = &(T, u64)> {
        self.pending.iter()
    }

    pub fn plan(&self) -> &Arc<EpochPlan> {
        &self.plan
    }

    /// Samples pushed since the start (or the last [`Epocher::reset`]).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The first sample an event placed from now on may need (one at most `reach` behind
    /// the newest sample, or one waiting): where a resumed epocher must start for its epochs
    /// to be the same.
    pub fn needs_from(&self) -> u64 {
        self.end.saturating_sub(self.cap as u64).max(self.start)
    }

    /// Heap bytes held now.
    pub fn state_bytes(&self) -> usize {
        (self.ring.capacity() + self.values.samples.capacity()) * 8
            + self.pending.capacity() * std::mem::size_of::<(T, u64)>()
    }

    /// The most heap this epocher holds for its samples and one epoch's values, bytes
    /// (waiting events are the caller's to bound).
    pub fn max_state_bytes(plan: &EpochPlan, n_channels: usize, reach: u64) -> u64 {
        let before = plan.first.min(0).unsigned_abs();
        let cap = reach.saturating_add(before).max(plan.len as u64);
        cap.saturating_mul(n_channels as u64 * 8)
            .saturating_add(plan.values_bytes(n_channels))
    }

    fn row_len(&self) -> usize {
        self.ring.len().checked_div(self.n_channels).unwrap_or(0)
    }

    /// Appends filtered samples, interleaved (`frames[i * n_channels + channel]`), and emits
    /// the epochs they complete, in the order of their last sample (then of their events').
    pub fn push_interleaved(&mut self, frames: &[f64], sink: &mut impl EpochSink<T>) {
        let nch = self.n_channels;
        if nch == 0 {
            return;
        }
        let n = frames.len() / nch;
        self.grow(n);
        let row = self.row_len();
        // The newest `row` frames of the piece, in at most two copies (the ring's end, then
        // its start).
        let skip = n.saturating_sub(row);
        let mut at = ((self.end + skip as u64) % row as u64) as usize;
        let mut rest = &frames[skip * nch..n * nch];
        while !rest.is_empty() {
            let k = (row - at).min(rest.len() / nch);
            self.ring[at * nch..(at + k) * nch].copy_from_slice(&rest[..k * nch]);
            rest = &rest[k * nch..];
            at = (at + k) % row;
        }
        self.end += n as u64;
        self.emit_complete(sink);
    }

    fn grow(&mut self, n: usize) {
        let row = self.row_len();
        if row == self.cap {
            return;
        }
        let need = (self.end as usize).saturating_add(n).min(self.cap);
        if need <= row {
            return;
        }
        let new_row = need.max(2 * row).min(self.cap);
        // Below `cap` nothing wrapped: the frames so far are the ring's first `end`.
        self.ring.resize(new_row * self.n_channels, 0.0);
    }

    /// Sample after an epoch's last: when its event at `onset` can be cut.
    fn due(&self, onset: u64) -> u64 {
        onset
            .saturating_add_signed(self.plan.first)
            .saturating_add(self.plan.len as u64)
    }

    fn emit_complete(&mut self, sink: &mut impl EpochSink<T>) {
        while let Some(&(_, onset)) = self.pending.front() {
            if self.due(onset) > self.end {
                break;
            }
            if let Some((event, onset)) = self.pending.pop_front() {
                self.cut(event, onset, sink);
            }
        }
    }

    /// Takes an event at sample `onset` of the stream: its epoch is emitted now if its
    /// samples are here, when they arrive otherwise, or as missing.
    pub fn event(&mut self, event: T, onset: u64, sink: &mut impl EpochSink<T>) {
        let Some(first) = onset.checked_add_signed(self.plan.first) else {
            sink.epoch(event, onset, Err(Missing::BeforeStart));
            return;
        };
        if first + self.plan.len as u64 > self.end {
            // After those due no later: events due together keep the order they came in.
            let due = self.due(onset);
            let at = self.pending.partition_point(|&(_, o)| self.due(o) <= due);
            self.pending.insert(at, (event, onset));
        } else {
            self.cut(event, onset, sink);
        }
    }

    /// Emits an epoch whose last sample has arrived.
    fn cut(&mut self, event: T, onset: u64, sink: &mut impl EpochSink<T>) {
        let first = onset.saturating_add_signed(self.plan.first);
        let row = self.row_len() as u64;
        if first + row < self.end || first < self.start {
            sink.epoch(event, onset, Err(Missing::Forgotten));
            return;
        }
        let (len, nch) = (self.plan.len, self.n_channels);
        let v = &mut self.values;
        v.samples.resize(nch * len, 0.0);
        let row = row as usize;
        let mut at = (first % row as u64) as usize;
        // Frame by frame into channel rows.
        for k in 0..len {
            let frame = &self.ring[at * nch..(at + 1) * nch];
            for (ch, &x) in frame.iter().enumerate() {
                v.samples[ch * len + k] = x;
            }
            at += 1;
            if at == row {
                at = 0;
            }
        }
        self.measure.run(&self.plan, v);
        sink.epoch(event, onset, Ok(v));
    }

    /// The stream ended: every waiting event's epoch is missing its end.
    pub fn finish(&mut self, sink: &mut impl EpochSink<T>) {
        for (event, onset) in std::mem::take(&mut self.pending) {
            sink.epoch(event, onset, Err(Missing::Ended));
        }
    }

    /// The stream restarts at sample 0 (a session reset): waiting events are ended and the
    /// samples forgotten.
    pub fn reset(&mut self, sink: &mut impl EpochSink<T>) {
        self.finish(sink);
        self.end = 0;
        self.start = 0;
        self.ring = Vec::new();
    }
}

/// Running mean and standard error of epochs' samples: an event-related potential.
/// Welford's updates, which stay exact where the sum of squares would cancel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Average {
    pub count: u64,
    n_channels: usize,
    len: usize,
    mean: Vec<f64>,
    /// Sums of squared deviations from the running mean.
    m2: Vec<f64>,
}

impl Average {
    /// Adds an epoch (of the same shape as the ones before).
    pub fn add(&mut self, v: &EpochValues) {
        if self.count == 0 {
            self.n_channels = v.n_channels;
            self.len = v.len;
            self.mean = vec![0.0; v.samples.len()];
            self.m2 = vec![0.0; v.samples.len()];
        }
        self.count += 1;
        // One division per epoch rather than per sample (a tenth of the cost); the mean
        // moves by d·(1/n) instead of d/n, within an ulp of it.
        let inv = 1.0 / self.count as f64;
        for ((m, q), &x) in self.mean.iter_mut().zip(&mut self.m2).zip(&v.samples) {
            let d = x - *m;
            *m += d * inv;
            *q += d * (x - *m);
        }
    }

    pub fn n_channels(&self) -> usize {
        self.n_channels
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Mean of channel `ch` at sample `k`.
    pub fn mean(&self, ch: usize, k: usize) -> f64 {
        self.mean[ch * self.len + k]
    }

    /// Standard error of the mean at `(ch, k)`, as `mne.Epochs.standard_error` gives it:
    /// the population standard deviation over the epochs divided by √count.
    pub fn sem(&self, ch: usize, k: usize) -> f64 {
        let n = self.count as f64;
        (self.m2[ch * self.len + k] / n).sqrt() / n.sqrt()
    }

    /// Heap bytes held.
    pub fn state_bytes(&self) -> usize {
        (self.mean.capacity() + self.m2.capacity()) * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProcessingConfig;

    fn plan(fs: f64, config: &EpochConfig) -> Result<EpochPlan, ConfigError> {
        EpochPlan::new(config, &ProcessingConfig::default().plan(fs).unwrap())
    }

    #[test]
    fn bounds_follow_mne_rounding_and_windows_pick_samples_by_time() {
        let p = plan(
            256.0,
            &EpochConfig {
                tmin_s: -0.2,
                tmax_s: 0.5,
                baseline_s: Some([-0.2, 0.0]),
                ..EpochConfig::default()
            },
        )
        .unwrap();
        // round(-51.2) = -51, round(128) = 128.
        assert_eq!(p.first_offset(), -51);
        assert_eq!(p.len(), 180);
        assert_eq!(p.baseline, Some(0..52));
        // Ties go to even: 0.01 · 250 = 2.5 → 2.
        let p = plan(
            250.0,
            &EpochConfig {
                tmin_s: -0.01,
                tmax_s: 0.01,
                baseline_s: None,
                ..EpochConfig::default()
            },
        )
        .unwrap();
        assert_eq!((p.first_offset(), p.len()), (-2, 5));
    }

    #[test]
    fn configs_that_cannot_work_are_refused_naming_the_key() {
        let cases = [
            (
                EpochConfig {
                    tmin_s: 1.0,
                    tmax_s: 0.0,
                    ..EpochConfig::default()
                },
                "epochs.tmin_s",
            ),
            (
                EpochConfig {
                    baseline_s: Some([-1.0, 0.0]),
                    ..EpochConfig::default()
                },
                "epochs.baseline_s",
            ),
            (
                EpochConfig {
                    reject_uv: Some(0.0),
                    ..EpochConfig::default()
                },
                "epochs.reject_uv",
            ),
            (
                EpochConfig {
                    components: vec![Component {
                        name: "p3".into(),
                        window_s: [0.3, 0.2],
                        peak: Peak::Pos,
                    }],
                    ..EpochConfig::default()
                },
                "epochs.components.p3",
            ),
            (
                EpochConfig {
                    erd: Some(ErdConfig {
                        reference_s: [-0.2, -0.2],
                        active_s: [0.1, 0.4],
                    }),
                    ..EpochConfig::default()
                },
                "epochs.erd.reference_s",
            ),
        ];
        for (config, key) in cases {
            match plan(256.0, &config) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    fn ramp(nch: usize, n: usize) -> Vec<f64> {
        (0..n * nch)
            .map(|i| ((i / nch) as f64) * (1.0 + (i % nch) as f64))
            .collect()
    }

    type Got = Vec<(u32, u64, Result<Vec<f64>, Missing>)>;

    fn collect(got: &mut Got) -> impl FnMut(u32, u64, Result<&EpochValues, Missing>) + '_ {
        |e, s, v| got.push((e, s, v.map(|v| v.samples.clone())))
    }

    #[test]
    fn an_epoch_is_the_same_whether_its_event_comes_before_or_after_its_samples_and_however_they_are_chunked()
     {
        let config = EpochConfig {
            tmin_s: -0.1,
            tmax_s: 0.2,
            baseline_s: Some([-0.1, 0.0]),
            reject_uv: Some(1e9),
            ..EpochConfig::default()
        };
        let p = plan(100.0, &config).unwrap();
        let nch = 3;
        let data = ramp(nch, 1000);
        let mut reference = Got::new();
        let mut e = Epocher::new(Arc::new(p.clone()), nch, 10_000);
        e.push_interleaved(&data, &mut collect(&mut reference));
        for (id, s) in [(0, 500), (1, 20), (2, 980), (3, 5)] {
            e.event(id, s, &mut collect(&mut reference));
        }
        e.finish(&mut collect(&mut reference));
        assert_eq!(reference.len(), 4);
        assert!(matches!(&reference[2], (3, 5, Err(Missing::BeforeStart))));
        assert_eq!(reference[3].2, Err(Missing::Ended));
        let first = reference[0].2.as_ref().unwrap();
        // The ramp's baseline mean over samples 490..=500 is 495: corrected, sample 490 is −5.
        assert_eq!(first[0], -5.0);
        assert_eq!(first.len(), nch * 31);
        for chunk in [1, 7, 64, 333] {
            let mut got = Got::new();
            let mut e = Epocher::new(Arc::new(p.clone()), nch, 10_000);
            // Events before their samples: they wait.
            for (id, s) in [(0, 500), (1, 20), (2, 980), (3, 5)] {
                e.event(id, s, &mut collect(&mut got));
            }
            for piece in data.chunks(chunk * nch) {
                e.push_interleaved(piece, &mut collect(&mut got));
            }
            e.finish(&mut collect(&mut got));
            got.sort_by_key(|g| g.0);
            let mut want = reference.clone();
            want.sort_by_key(|g| g.0);
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_resumed_epocher_emits_what_the_uninterrupted_one_emits_after_the_resume() {
        let p = Arc::new(plan(100.0, &EpochConfig::default()).unwrap());
        let (nch, reach) = (2, 150);
        let data = ramp(nch, 3000);
        let events = [
            (0, 900),
            (1, 1450),
            (2, 1990),
            (3, 1995),
            (5, 1880),
            (4, 2600),
        ];
        // Events come at these samples of the stream: two wait for theirs across the resume,
        // one comes too late.
        let arrive = [1000, 1500, 1950, 1950, 2050, 2500];
        let run = |resume_at: Option<(usize, u64)>| {
            let mut got = Got::new();
            let mut e = Epocher::new(Arc::clone(&p), nch, reach);
            let mut at = 0;
            for n in (0..3000).step_by(50) {
                if let Some((t, start)) = resume_at
                    && n == t
                {
                    // What a restore has: the pending events, and samples from `start`.
                    let pending: Vec<(u32, u64)> = e.pending().copied().collect();
                    assert_eq!(pending, [(2, 1990), (3, 1995)]);
                    e = Epocher::resume(Arc::clone(&p), nch, reach, start, pending);
                    got.clear();
                    let (from, to) = (start as usize * nch, t * nch);
                    e.push_interleaved(&data[from..to], &mut collect(&mut got));
                    assert!(got.is_empty(), "re-pushing emits nothing already emitted");
                }
                while at < events.len() && arrive[at] <= n {
                    e.event(events[at].0, events[at].1, &mut collect(&mut got));
                    at += 1;
                }
                e.push_interleaved(&data[n * nch..(n + 50) * nch], &mut collect(&mut got));
            }
            e.finish(&mut collect(&mut got));
            got
        };
        let whole = run(None);
        assert_eq!(whole.len(), 6);
        assert_eq!(whole.iter().filter(|g| g.2.is_ok()).count(), 5);
        // Resumed at 2000 from 2000 - reach - 20 (the pre-stimulus samples): the epochs of
        // the events pending then and of those that come after are the same.
        let resumed = run(Some((2000, 2000 - 150 - 20)));
        let after: Got = whole.into_iter().filter(|g| g.0 >= 2 || g.0 == 5).collect();
        let mut resumed_sorted = resumed.clone();
        resumed_sorted.sort_by_key(|g| g.0);
        let mut after_sorted = after.clone();
        after_sorted.sort_by_key(|g| g.0);
        assert_eq!(resumed_sorted, after_sorted);
    }

    #[test]
    fn events_older_than_the_reach_are_forgotten_and_memory_stays_within_it() {
        let p = plan(100.0, &EpochConfig::default()).unwrap();
        let mut e = Epocher::<u32>::new(Arc::new(p.clone()), 2, 100);
        let mut got = Got::new();
        e.push_interleaved(&ramp(2, 5000), &mut collect(&mut got));
        assert!(e.state_bytes() as u64 <= Epocher::<u32>::max_state_bytes(&p, 2, 100));
        // An event 100 samples behind the newest is reached (its epoch starts 20 before it).
        e.event(0, 4900, &mut collect(&mut got));
        e.event(1, 4899, &mut collect(&mut got));
        assert!(got[0].2.is_ok());
        assert_eq!(got[1].2, Err(Missing::Forgotten));
    }

    #[test]
    fn rejection_components_and_peaks_follow_the_definition() {
        let config = EpochConfig {
            tmin_s: -0.1,
            tmax_s: 0.3,
            baseline_s: Some([-0.1, 0.0]),
            reject_uv: Some(50.0),
            flat_uv: Some(1.0),
            components: vec![
                Component {
                    name: "up".into(),
                    window_s: [0.1, 0.2],
                    peak: Peak::Pos,
                },
                Component {
                    name: "any".into(),
                    window_s: [0.0, 0.3],
                    peak: Peak::Abs,
                },
            ],
            erd: None,
        };
        let p = plan(100.0, &config).unwrap();
        // Channel 0: a bump of 10 at +150 ms; channel 1: flat; channel 2: a spike of −80.
        let n = 100;
        let mut data = vec![0.0; n * 3];
        data[65 * 3] = 10.0;
        data[70 * 3 + 2] = -80.0;
        let mut got = Vec::new();
        let mut e = Epocher::new(Arc::new(p), 3, 1000);
        e.push_interleaved(&data, &mut |_: (), _, v: Result<&EpochValues, Missing>| {
            got.push(v.unwrap().clone())
        });
        e.event((), 50, &mut |_: (), _, v: Result<&EpochValues, Missing>| {
            got.push(v.unwrap().clone())
        });
        let v = &got[0];
        assert_eq!(v.too_large, vec![2]);
        assert_eq!(v.too_flat, vec![1]);
        assert!(v.rejected());
        // "up" on channel 0: 11 samples from +0.1 s, one of them 10.
        assert!((v.mean_uv[0] - 10.0 / 11.0).abs() < 1e-12);
        assert_eq!((v.peak_uv[0], v.peak_s[0]), (10.0, 0.15));
        // "any" on channel 2: the spike, sign kept.
        assert_eq!((v.peak_uv[3 + 2], v.peak_s[3 + 2]), (-80.0, 0.2));
    }

    #[test]
    fn the_average_and_its_standard_error() {
        let mut a = Average::default();
        for x in [1.0, 2.0, 3.0, 6.0] {
            a.add(&EpochValues {
                n_channels: 1,
                len: 1,
                samples: vec![x],
                ..EpochValues::default()
            });
        }
        assert_eq!(a.mean(0, 0), 3.0);
        // Population variance 3.5, over √4.
        assert!((a.sem(0, 0) - 3.5f64.sqrt() / 2.0).abs() < 1e-15);
    }
}
