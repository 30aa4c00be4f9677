//! The per-session processor: blocks of samples in, one [`Window`] out per completed window.
//!
//! It owns the session's filter state, a ring buffer of one window of filtered samples
//! (one row per channel), a small cache of per-segment Welch results and per-block signal statistics.
//!
//! Work is shared between overlapping windows:
//! - With the default window, hop and segment lengths every Welch segment belongs to three
//!   consecutive windows; each segment is transformed once and its band powers reused.
//!   Trapezoid integration is linear, so the mean of the segments' band powers equals the band
//!   power of the mean PSD that SciPy integrates (up to rounding in the last bits).
//! - Quality statistics (min, max, sum of squares, samples at the extremes) are gathered once
//!   per sample into blocks; a window combines its blocks. Window starts are multiples of the
//!   hop H and window ends are those plus L, so cutting each hop at its start and at
//!   `L mod H` makes every window exactly a run of whole blocks: at most two blocks per hop,
//!   `2 (L / H + 1)` in all, whatever the sample rate (one block per hop when H divides L).
//!
//! Memory follows the data, never a claim: the ring grows with the samples that arrived, up
//! to one window, and the Welch plan, window and buffers are made when the first window
//! completes. A session announced with many channels at a high rate but sent two samples
//! holds two samples' worth. Once the first window is in, nothing in
//! [`SessionProcessor::push_channel_major`], [`SessionProcessor::push_rows`] or
//! [`SessionProcessor::push_interleaved`] allocates.

use std::sync::OnceLock;

use crate::bank::{ChannelStats, FilterBank, Kernel};
use crate::config::{Band, ConfigError, Plan, ProcessingConfig};
use crate::layout;
use crate::welch::{BandBins, SegmentPsd};

/// Signal quality of one channel over one window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quality {
    /// RMS of the filtered signal, µV.
    pub rms_uv: f64,
    /// Peak-to-peak of the filtered signal, µV.
    pub ptp_uv: f64,
    /// Mains power in the raw signal over the power of the filtered signal: the mean square of
    /// what the notch removes (raw minus notched) divided by `rms_uv²`. 0 when the notch is
    /// off or the filtered signal is all zero.
    pub line_noise_ratio: f64,
    pub flatline: bool,
    pub railed: bool,
    pub artifact: bool,
    /// None of the flags set and line noise within bounds.
    pub good: bool,
}

/// Session indices over the good channels, `None` when no channel is good or a band they
/// need (theta, alpha, beta) is not configured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Indices {
    /// beta / (alpha + theta)
    pub engagement: Option<f64>,
    /// theta / beta
    pub theta_beta: Option<f64>,
    /// alpha / theta
    pub alpha_theta: Option<f64>,
}

/// One completed window, borrowed from the processor until the sink returns.
#[derive(Debug)]
pub struct Window<'a> {
    /// Counts the session's windows from 0, across resets.
    pub index: u64,
    /// First sample of the window, counted from the session's (last) start.
    pub start_sample: u64,
    pub len: usize,
    /// Unix time of the first sample and of the end of the last sample, in ms.
    pub start_ms: i64,
    pub end_ms: i64,
    /// The window starts while the filters are still settling after a (re)start.
    pub settling: bool,
    pub bands: &'a [Band],
    n_bands: usize,
    band_power: &'a [f64],
    relative_power: &'a [f64],
    total_power: &'a [f64],
    quality: &'a [Quality],
    pub indices: Indices,
}

impl<'a> Window<'a> {
    /// A window over given values rather than computed ones, e.g. to test code that consumes
    /// windows. `band_power` and `relative_power` are channel-major (one row of
    /// `bands.len()` values per channel), `total_power` and `quality` have one entry per
    /// channel. The public fields start at zero (`settling` false) for the caller to set;
    /// `indices` are computed from the values as the processor computes them.
    ///
    /// # Panics
    /// When the slices do not have those lengths.
    ///
    /// ```
    /// use eeg_dsp::{Band, Quality, Window};
    /// let bands = [Band { name: "alpha".into(), lo_hz: 8.0, hi_hz: 13.0 }];
    /// let quality = [Quality { good: true, ..Quality::default() }; 2];
    /// let mut w = Window::from_parts(&bands, &[2.0, 4.0], &[0.5, 0.5], &[4.0, 8.0], &quality);
    /// w.index = 7;
    /// assert_eq!((w.n_channels(), w.band_power(1)), (2, &[4.0][..]));
    /// ```
    pub fn from_parts(
        bands: &'a [Band],
        band_power: &'a [f64],
        relative_power: &'a [f64],
        total_power: &'a [f64],
        quality: &'a [Quality],
    ) -> Window<'a> {
        let (nch, nb) = (quality.len(), bands.len());
        assert!(
            total_power.len() == nch
                && band_power.len() == nch * nb
                && relative_power.len() == nch * nb,
            "window parts do not describe {nch} channels x {nb} bands"
        );
        Window {
            index: 0,
            start_sample: 0,
            len: 0,
            start_ms: 0,
            end_ms: 0,
            settling: false,
            bands,
            n_bands: nb,
            band_power,
            relative_power,
            total_power,
            quality,
            indices: indices(bands, band_power, quality),
        }
    }

    pub fn n_channels(&self) -> usize {
        self.total_power.len()
    }
    /// Band powers of `channel` in band order, µV².
    pub fn band_power(&self, channel: usize) -> &'a [f64] {
        &self.band_power[channel * self.n_bands..(channel + 1) * self.n_bands]
    }
    /// Band powers over the total power of `channel`.
    pub fn relative_power(&self, channel: usize) -> &'a [f64] {
        &self.relative_power[channel * self.n_bands..(channel + 1) * self.n_bands]
    }
    /// Power over the band-pass range, µV².
    pub fn total_power(&self, channel: usize) -> f64 {
        self.total_power[channel]
    }
    pub fn quality(&self, channel: usize) -> &'a Quality {
        &self.quality[channel]
    }
    /// All band powers, channel-major (`n_channels()` rows of `bands.len()`).
    #[cfg(feature = "ndarray")]
    pub(crate) fn band_power_values(&self) -> &'a [f64] {
        self.band_power
    }
    /// All relative powers, laid out as [`Window::band_power_values`].
    #[cfg(feature = "ndarray")]
    pub(crate) fn relative_power_values(&self) -> &'a [f64] {
        self.relative_power
    }
}

/// An owned copy of a [`Window`], e.g. to hand it to another thread. [`OwnedWindow::copy_from`]
/// reuses the buffers, so a recycled `OwnedWindow` costs no allocation.
#[derive(Debug, Clone, Default)]
pub struct OwnedWindow {
    index: u64,
    start_sample: u64,
    len: usize,
    start_ms: i64,
    end_ms: i64,
    settling: bool,
    bands: Vec<Band>,
    n_bands: usize,
    band_power: Vec<f64>,
    relative_power: Vec<f64>,
    total_power: Vec<f64>,
    quality: Vec<Quality>,
    indices: Indices,
}

impl OwnedWindow {
    pub fn copy_from(&mut self, w: &Window<'_>) {
        self.index = w.index;
        self.start_sample = w.start_sample;
        self.len = w.len;
        self.start_ms = w.start_ms;
        self.end_ms = w.end_ms;
        self.settling = w.settling;
        if self.bands != w.bands {
            self.bands = w.bands.to_vec();
        }
        self.n_bands = w.n_bands;
        copy_vec(&mut self.band_power, w.band_power);
        copy_vec(&mut self.relative_power, w.relative_power);
        copy_vec(&mut self.total_power, w.total_power);
        copy_vec(&mut self.quality, w.quality);
        self.indices = w.indices;
    }

    /// Joins windows computed for disjoint channel subsets of one session (same window,
    /// the parts in channel order) into one window over all their channels, with the indices
    /// recomputed over all good channels. The result equals what one processor over all the
    /// channels emits, bit for bit. Returns `false`, leaving `self` unchanged, when the parts
    /// are not the same window.
    pub fn join(&mut self, parts: &[OwnedWindow]) -> bool {
        let Some(first) = parts.first() else {
            return false;
        };
        let same = parts.iter().all(|p| {
            p.index == first.index
                && p.start_sample == first.start_sample
                && p.len == first.len
                && p.bands == first.bands
        });
        if !same {
            return false;
        }
        self.index = first.index;
        self.start_sample = first.start_sample;
        self.len = first.len;
        self.start_ms = first.start_ms;
        self.end_ms = first.end_ms;
        self.settling = first.settling;
        if self.bands != first.bands {
            self.bands = first.bands.clone();
        }
        self.n_bands = first.n_bands;
        self.band_power.clear();
        self.relative_power.clear();
        self.total_power.clear();
        self.quality.clear();
        for p in parts {
            self.band_power.extend_from_slice(&p.band_power);
            self.relative_power.extend_from_slice(&p.relative_power);
            self.total_power.extend_from_slice(&p.total_power);
            self.quality.extend_from_slice(&p.quality);
        }
        self.indices = indices(&self.bands, &self.band_power, &self.quality);
        true
    }

    /// The window as if just emitted.
    pub fn view(&self) -> Window<'_> {
        Window {
            index: self.index,
            start_sample: self.start_sample,
            len: self.len,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            settling: self.settling,
            bands: &self.bands,
            n_bands: self.n_bands,
            band_power: &self.band_power,
            relative_power: &self.relative_power,
            total_power: &self.total_power,
            quality: &self.quality,
            indices: self.indices,
        }
    }
}

impl From<&Window<'_>> for OwnedWindow {
    fn from(w: &Window<'_>) -> OwnedWindow {
        let mut o = OwnedWindow::default();
        o.copy_from(w);
        o
    }
}

fn copy_vec<T: Copy>(dst: &mut Vec<T>, src: &[T]) {
    dst.clear();
    dst.extend_from_slice(src);
}

/// Receives completed windows. Any `FnMut(&Window)` is a sink.
pub trait WindowSink {
    fn window(&mut self, window: &Window<'_>);

    /// The filtered samples of the piece just processed, interleaved
    /// (`frames[i * n_channels + channel]`), before a window they complete is emitted: what
    /// epochs are cut from. Most sinks need only windows.
    #[inline(always)]
    fn filtered(&mut self, frames: &[f64]) {
        let _ = frames;
    }
}

impl<F: FnMut(&Window<'_>)> WindowSink for F {
    fn window(&mut self, window: &Window<'_>) {
        self(window)
    }
}

/// Where a session's stream stands between two blocks: sample position, window counter and
/// filter state. Small (two values per filter section per channel), so it can be saved
/// often; see [`SessionProcessor::checkpoint_into`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Samples per channel since the session's (last) start.
    pub position: u64,
    /// Windows completed since that start: the restored processor's next window. A
    /// checkpoint kept while more windows completed is saved with the later count
    /// ([`SessionProcessor::windows_since_start`]), so those windows are not emitted again.
    pub next_window: u64,
    /// Windows of the session before that start.
    pub base_index: u64,
    /// Unix time of the first sample since that start, ms.
    pub t0_ms: i64,
    /// Filter delay registers, channel by channel, `[z0, z1]` per section.
    pub filter: Vec<f64>,
}

impl Checkpoint {
    /// The heap and inline bytes of one checkpoint of a session of `n_channels` channels
    /// planned as `plan`: what a transport that keeps several per session counts.
    pub fn bytes_for(plan: &Plan, n_channels: usize) -> u64 {
        let filter = 2 * plan.cascade().len() * n_channels * std::mem::size_of::<f64>();
        (std::mem::size_of::<Checkpoint>() + filter) as u64
    }
}

/// A checkpoint that does not fit the processor it is restored into.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("checkpoint has {got} filter values, the session needs {expected}")]
    Filter { expected: usize, got: usize },
    #[error("checkpoint at sample {position} is past the next window's start {next_window_start}")]
    Position {
        position: u64,
        next_window_start: u64,
    },
}

/// A block whose shape does not match the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block of {len} values is not {channels} channels x {per_channel} samples")]
pub struct ShapeError {
    pub len: usize,
    pub channels: usize,
    pub per_channel: usize,
}

/// Welch results of one segment for every channel.
#[derive(Debug, Clone)]
struct SegmentEntry {
    /// Absolute start sample, `u64::MAX` when empty.
    start: u64,
    /// Per channel: the bands' powers then the total power.
    power: Vec<f64>,
}

/// Values (frames × channels) handled per piece: 16 KiB of f64, so that the passes over a
/// piece (layout change, filter with statistics, ring copy) run from the L1 cache.
const PIECE_VALUES: usize = 2048;

/// Settling ends when the cascade's step response stays below this fraction of the step.
const SETTLE_TOLERANCE: f64 = 1e-3;

/// The streaming processor of one session.
#[derive(Debug)]
pub struct SessionProcessor {
    plan: Plan,
    n_channels: usize,
    /// The whole cascade, notch (when on) first.
    bank: FilterBank,
    /// Channel-major ring of the last `window_len` filtered samples of each channel: one row
    /// per channel, rows as long as the samples seen so far (at most `window_len`).
    ring: Vec<f64>,
    /// Frames pushed since the session's (last) start.
    pos: u64,
    /// Windows completed since the last start, and before it.
    since_start: u64,
    base_index: u64,
    t0_ms: i64,
    /// Computed when first needed (the first window): it runs the cascade for up to a minute
    /// of samples, which a session that never completes a window should not pay for.
    settle_samples: OnceLock<u64>,
    /// How the stream is cut into blocks, and where each block's statistics are kept.
    block_shape: BlockShape,
    /// Signal statistics of each block: raw extremes and their counts, what the notch
    /// removes, filtered extremes and power.
    blocks: Vec<ChannelStats>,
    /// Interleaved work buffers: the piece being filtered and its filtered samples.
    scratch: Vec<f64>,
    filtered: Vec<f64>,
    /// The Welch segment's plan and buffers and the bands' bins, made at the first window.
    welch: Option<(SegmentPsd, BandBins)>,
    segments_per_window: usize,
    cache: Vec<SegmentEntry>,
    band_power: Vec<f64>,
    relative_power: Vec<f64>,
    total_power: Vec<f64>,
    quality: Vec<Quality>,
    sums: Vec<f64>,
}

impl SessionProcessor {
    /// A processor for `n_channels` channels at `fs` Hz whose first sample is at `t0_ms`.
    pub fn new(
        config: &ProcessingConfig,
        fs: f64,
        n_channels: usize,
        t0_ms: i64,
    ) -> Result<SessionProcessor, ConfigError> {
        SessionProcessor::with_kernel(config, fs, n_channels, t0_ms, Kernel::detect())
    }

    /// As [`SessionProcessor::new`] with a given filter kernel.
    pub fn with_kernel(
        config: &ProcessingConfig,
        fs: f64,
        n_channels: usize,
        t0_ms: i64,
        kernel: Kernel,
    ) -> Result<SessionProcessor, ConfigError> {
        let (plan, _) = SessionProcessor::plan_session(config, fs, n_channels)?;
        let l = plan.window_len;
        let nb = plan.bands.len();
        let segments_per_window = (l - plan.nperseg / 2) / plan.seg_step;
        let cache = (0..segments_per_window)
            .map(|_| SegmentEntry {
                start: u64::MAX,
                power: vec![0.0; n_channels * (nb + 1)],
            })
            .collect();
        let block_shape = BlockShape::of(&plan);
        let piece = (PIECE_VALUES / n_channels).clamp(1, plan.hop) * n_channels;
        Ok(SessionProcessor {
            bank: FilterBank::with_kernel(&plan.cascade(), n_channels, kernel),
            ring: Vec::new(),
            pos: 0,
            since_start: 0,
            base_index: 0,
            t0_ms,
            settle_samples: OnceLock::new(),
            blocks: vec![ChannelStats::new(n_channels); block_shape.len()],
            block_shape,
            scratch: vec![0.0; piece],
            filtered: vec![0.0; piece],
            welch: None,
            segments_per_window,
            cache,
            band_power: vec![0.0; n_channels * nb],
            relative_power: vec![0.0; n_channels * nb],
            total_power: vec![0.0; n_channels],
            quality: vec![Quality::default(); n_channels],
            sums: vec![0.0; nb + 1],
            n_channels,
            plan,
        })
    }

    /// Checks a session of `n_channels` channels at `fs` Hz against the config and the
    /// [`SessionLimits`] and plans it; returns the plan and the most memory its state will
    /// hold. Nothing is allocated in proportion to the session: a refused session costs
    /// nothing. Rate and channels are checked before anything else.
    pub fn plan_session(
        config: &ProcessingConfig,
        fs: f64,
        n_channels: usize,
    ) -> Result<(Plan, u64), ConfigError> {
        let l = &config.limits;
        if fs > l.max_sample_rate_hz {
            return Err(crate::config::over(
                "limits.max_sample_rate_hz",
                l.max_sample_rate_hz,
                format!("sample rate {fs} Hz"),
            ));
        }
        if n_channels == 0 {
            return Err(ConfigError::Invalid {
                key: "channels".into(),
                problem: "at least one channel is needed".into(),
            });
        }
        if n_channels > l.max_channels {
            return Err(crate::config::over(
                "limits.max_channels",
                l.max_channels,
                format!("{n_channels} channels"),
            ));
        }
        let plan = config.plan(fs)?;
        if plan.nperseg > l.max_fft_len {
            return Err(crate::config::over(
                "limits.max_fft_len",
                l.max_fft_len,
                format!(
                    "a Welch segment of {} samples (window.welch_segment_s at {fs} Hz)",
                    plan.nperseg
                ),
            ));
        }
        let bytes = SessionProcessor::max_state_bytes(&plan, n_channels);
        if bytes > l.max_session_state_bytes {
            return Err(crate::config::over(
                "limits.max_session_state_mib",
                l.max_session_state_bytes.div_ceil(1 << 20),
                format!(
                    "{n_channels} channels at {fs} Hz with a {} s window need {} MiB of session state",
                    config.window.length_s,
                    bytes.div_ceil(1 << 20)
                ),
            ));
        }
        Ok((plan, bytes))
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn n_channels(&self) -> usize {
        self.n_channels
    }

    /// Samples per channel since the session's (last) start.
    pub fn samples_seen(&self) -> u64 {
        self.pos
    }

    /// Windows emitted over the session's life, across resets.
    pub fn windows_emitted(&self) -> u64 {
        self.base_index + self.since_start
    }

    /// Samples after a (re)start during which output is marked `settling`.
    pub fn settle_samples(&self) -> u64 {
        *self
            .settle_samples
            .get_or_init(|| settle_samples(&self.plan))
    }

    pub fn kernel(&self) -> Kernel {
        self.bank.kernel()
    }

    /// Restarts the session's signal state at a new first-sample time (after a gap or a
    /// discontinuity); window indices keep counting so they stay unique within the session.
    pub fn reset(&mut self, t0_ms: i64) {
        self.base_index += self.since_start;
        self.since_start = 0;
        self.pos = 0;
        self.t0_ms = t0_ms;
        self.bank.reset();
        for e in &mut self.cache {
            e.start = u64::MAX;
        }
        // The blocks need no clearing: each is cleared when the stream enters it at its
        // first sample, and a window only reads blocks entered since the restart.
    }

    /// The session's state at this point of the stream, enough to carry on exactly from
    /// here with [`SessionProcessor::restore`]. Reuses `out`'s buffer.
    pub fn checkpoint_into(&self, out: &mut Checkpoint) {
        out.position = self.pos;
        out.next_window = self.since_start;
        out.base_index = self.base_index;
        out.t0_ms = self.t0_ms;
        self.bank.state_into(&mut out.filter);
    }

    /// A processor that carries on from `checkpoint`, taken by a processor with the same
    /// config, rate and channel count: fed the samples that followed the checkpoint, it
    /// emits exactly the windows the original emitted after it, bit for bit (windows that
    /// were completed before the checkpoint are not emitted again).
    pub fn restore(
        config: &ProcessingConfig,
        fs: f64,
        n_channels: usize,
        checkpoint: &Checkpoint,
    ) -> Result<SessionProcessor, RestoreError> {
        let mut p = SessionProcessor::new(config, fs, n_channels, checkpoint.t0_ms)?;
        if !p.bank.set_state(&checkpoint.filter) {
            return Err(RestoreError::Filter {
                expected: 2 * p.bank.n_sections() * n_channels,
                got: checkpoint.filter.len(),
            });
        }
        p.pos = checkpoint.position;
        p.since_start = checkpoint.next_window;
        p.base_index = checkpoint.base_index;
        // Every sample of the next window must still come: its start may not be behind the
        // checkpoint's position. The ring, the block statistics and the segment cache start
        // empty; the part of a block before the next window's start is never read.
        if p.next_window_start() < p.pos {
            return Err(RestoreError::Position {
                position: p.pos,
                next_window_start: p.next_window_start(),
            });
        }
        Ok(p)
    }

    /// Heap memory held by this session's state now, bytes: the filtered ring (up to window
    /// length × channels), the block statistics, the segment cache, the Welch buffers and the
    /// work buffers. The FFT plan is shared between sessions of the same segment length and
    /// not counted. At most [`SessionProcessor::max_state_bytes`].
    pub fn state_bytes(&self) -> usize {
        let f = std::mem::size_of::<f64>();
        let vecs = self.ring.capacity()
            + self.scratch.capacity()
            + self.filtered.capacity()
            + self.band_power.capacity()
            + self.relative_power.capacity()
            + self.total_power.capacity()
            + self.sums.capacity()
            + self.cache.iter().map(|e| e.power.capacity()).sum::<usize>();
        let blocks = self.blocks.len() * self.n_channels * 8 * f;
        let welch = self.welch.as_ref().map_or(0, |(segment, bins)| {
            segment.state_bytes() + bins.state_bytes()
        });
        vecs * f
            + blocks
            + self.quality.capacity() * std::mem::size_of::<Quality>()
            + self.bank.n_sections() * self.n_channels.next_multiple_of(8) * 2 * f
            + welch
    }

    /// The most heap memory a session of `n_channels` channels planned as `plan` holds
    /// ([`SessionProcessor::state_bytes`] once its first window is in), bytes: what the
    /// limits and an instance's memory budget count, known before anything is allocated.
    pub fn max_state_bytes(plan: &Plan, n_channels: usize) -> u64 {
        let (nch, nb) = (n_channels as u64, plan.bands.len() as u64);
        let f = std::mem::size_of::<f64>() as u64;
        let piece = (PIECE_VALUES / n_channels.max(1)).clamp(1, plan.hop) as u64 * nch;
        let segments = ((plan.window_len - plan.nperseg / 2) / plan.seg_step) as u64;
        let vecs = plan.window_len as u64 * nch
            + 2 * piece
            + 2 * nch * nb
            + nch
            + (nb + 1)
            + segments * nch * (nb + 1);
        let blocks = BlockShape::of(plan).len() as u64 * nch * 8 * f;
        let sections = plan.cascade().len() as u64;
        vecs * f
            + blocks
            + nch * std::mem::size_of::<Quality>() as u64
            + sections * (nch.next_multiple_of(8)) * 2 * f
            + SegmentPsd::state_bytes_for(plan.nperseg) as u64
            + BandBins::state_bytes_for(plan.bands.len() + 1, plan.nperseg / 2 + 1) as u64
    }

    /// Windows completed since the session's (last) start.
    pub fn windows_since_start(&self) -> u64 {
        self.since_start
    }

    /// First sample (since the session's last start) of the next window to complete.
    pub fn next_window_start(&self) -> u64 {
        self.since_start * self.plan.hop as u64
    }

    /// Makes the next window's index `next_index`, e.g. for a session whose processor was
    /// replaced after a change of rate or channels, so indices stay unique in the session.
    pub fn continue_numbering(&mut self, next_index: u64) {
        self.base_index = next_index.saturating_sub(self.since_start);
    }

    /// Pushes a channel-major block (`n_channels` rows of `per_channel` samples, one after
    /// another in `data`).
    pub fn push_channel_major(
        &mut self,
        data: &[f64],
        per_channel: usize,
        sink: &mut impl WindowSink,
    ) -> Result<(), ShapeError> {
        let nch = self.n_channels;
        if data.len() != nch * per_channel {
            return Err(ShapeError {
                len: data.len(),
                channels: nch,
                per_channel,
            });
        }
        let kernel = self.bank.kernel();
        self.push_with(per_channel, sink, |frame0, frames, dst| {
            let row = |c: usize| &data[c * per_channel + frame0..c * per_channel + frame0 + frames];
            layout::rows_to_frames(kernel, nch, row, dst);
        });
        Ok(())
    }

    /// Pushes `n_channels` rows of equal length, one slice per channel (e.g. the signals of
    /// an EDF data record), without first copying them into one block.
    pub fn push_rows(
        &mut self,
        rows: &[&[f64]],
        sink: &mut impl WindowSink,
    ) -> Result<(), ShapeError> {
        let nch = self.n_channels;
        let per_channel = rows.first().map_or(0, |r| r.len());
        if rows.len() != nch || rows.iter().any(|r| r.len() != per_channel) {
            return Err(ShapeError {
                len: rows.iter().map(|r| r.len()).sum(),
                channels: nch,
                per_channel,
            });
        }
        let kernel = self.bank.kernel();
        self.push_with(per_channel, sink, |frame0, frames, dst| {
            layout::rows_to_frames(kernel, nch, |c| &rows[c][frame0..frame0 + frames], dst);
        });
        Ok(())
    }

    /// Pushes interleaved frames (all channels of one sample, then the next sample).
    pub fn push_interleaved(
        &mut self,
        data: &[f64],
        sink: &mut impl WindowSink,
    ) -> Result<(), ShapeError> {
        let nch = self.n_channels;
        if !data.len().is_multiple_of(nch) {
            return Err(ShapeError {
                len: data.len(),
                channels: nch,
                per_channel: data.len() / nch,
            });
        }
        self.push_with(data.len() / nch, sink, |frame0, frames, dst| {
            dst.copy_from_slice(&data[frame0 * nch..(frame0 + frames) * nch]);
        });
        Ok(())
    }

    /// Feeds `frames` frames in pieces that never cross a block boundary (window ends are
    /// block boundaries). `load(first, count, dst)` writes frames `first..first + count` of
    /// the block being pushed into `dst`, interleaved.
    pub(crate) fn push_with(
        &mut self,
        frames: usize,
        sink: &mut impl WindowSink,
        load: impl Fn(usize, usize, &mut [f64]),
    ) {
        match self.bank.kernel() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the bank only keeps a SIMD kernel after checking the CPU has it.
            Kernel::Avx512 => unsafe { self.push_with_avx512(frames, sink, load) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe { self.push_with_avx2(frames, sink, load) },
            _ => self.push_with_body(frames, sink, load),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn push_with_avx512(
        &mut self,
        frames: usize,
        sink: &mut impl WindowSink,
        load: impl Fn(usize, usize, &mut [f64]),
    ) {
        self.push_with_body(frames, sink, load)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn push_with_avx2(
        &mut self,
        frames: usize,
        sink: &mut impl WindowSink,
        load: impl Fn(usize, usize, &mut [f64]),
    ) {
        self.push_with_body(frames, sink, load)
    }

    #[inline(always)]
    fn push_with_body(
        &mut self,
        frames: usize,
        sink: &mut impl WindowSink,
        load: impl Fn(usize, usize, &mut [f64]),
    ) {
        let nch = self.n_channels;
        let l = self.plan.window_len as u64;
        let mut done = 0;
        while done < frames {
            let (at, starts, block_end) = self.block_shape.at(self.pos);
            let n = (frames - done)
                .min((block_end - self.pos) as usize)
                .min(self.scratch.len() / nch);
            self.grow_ring(n);
            let block = &mut self.blocks[at];
            if starts {
                block.clear();
            }
            let raw = &mut self.scratch[..n * nch];
            load(done, n, raw);
            let filtered = &mut self.filtered[..n * nch];
            // One pass through the cascade that also updates the block's statistics; with a
            // notch (the first section) it measures what the notch removes.
            self.bank
                .process_measured(raw, filtered, block, self.plan.notch.is_some());
            copy_into_ring(
                self.bank.kernel(),
                &mut self.ring,
                filtered,
                (self.pos % l) as usize,
                nch,
            );
            sink.filtered(filtered);
            self.pos += n as u64;
            done += n;
            if self.pos == self.since_start * self.plan.hop as u64 + l {
                self.complete_window(sink);
            }
        }
    }

    /// Makes the ring's rows long enough for the next `n` samples: as long as the samples
    /// seen, doubling, until they reach the window length. Before the first window the ring
    /// has not wrapped, so each row's samples so far are its first `pos` values.
    #[inline(always)]
    fn grow_ring(&mut self, n: usize) {
        let nch = self.n_channels;
        let l = self.plan.window_len;
        let cap = self.ring.len() / nch;
        if cap == l {
            return;
        }
        let end = self.pos.saturating_add(n as u64);
        let need = if end >= l as u64 { l } else { end as usize };
        if need <= cap {
            return;
        }
        let new_cap = need.max(2 * cap).min(l);
        let mut ring = vec![0.0; new_cap * nch];
        let kept = cap.min(self.pos as usize);
        if kept > 0 {
            for (new, old) in ring
                .chunks_exact_mut(new_cap)
                .zip(self.ring.chunks_exact(cap))
            {
                new[..kept].copy_from_slice(&old[..kept]);
            }
        }
        self.ring = ring;
    }

    #[inline(always)]
    fn complete_window(&mut self, sink: &mut impl WindowSink) {
        let start = self.since_start * self.plan.hop as u64;
        self.window_quality(start);
        let settle_samples = self.settle_samples();
        let plan = &self.plan;
        let (segment, bins) = self.welch.get_or_insert_with(|| {
            let mut segment = SegmentPsd::new(plan.nperseg, plan.fs);
            let bins = plan.band_bins(segment.freqs());
            segment.limit_bins(bins.bins_used());
            (segment, bins)
        });
        let nch = self.n_channels;
        let nb = plan.bands.len();
        let l = plan.window_len;
        let n_seg = self.segments_per_window;
        let step = plan.seg_step as u64;
        let seg_start = |j: usize| start + j as u64 * step;

        // Welch: make sure every segment of this window is in the cache. An entry whose start
        // is not one of this window's segment starts can never be used again: windows only
        // move forward.
        for j in 0..n_seg {
            let s = seg_start(j);
            if self.cache.iter().any(|e| e.start == s) {
                continue;
            }
            let needed = |e: &SegmentEntry| {
                e.start >= start
                    && e.start < seg_start(n_seg)
                    && (e.start - start).is_multiple_of(step)
            };
            // There are as many entries as segments per window, so a free one exists.
            let Some(entry) = self.cache.iter_mut().find(|e| !needed(e)) else {
                continue;
            };
            entry.start = s;
            let first = (s % l as u64) as usize;
            let n = plan.nperseg;
            for c in 0..nch {
                let row = &self.ring[c * l..(c + 1) * l];
                let head = n.min(l - first);
                let psd = segment.compute(|buf| {
                    buf[..head].copy_from_slice(&row[first..first + head]);
                    buf[head..].copy_from_slice(&row[..n - head]);
                });
                bins.integrate(psd, &mut entry.power[c * (nb + 1)..(c + 1) * (nb + 1)]);
            }
        }

        // Band powers: mean over the window's segments, in segment order.
        for c in 0..nch {
            self.sums.fill(0.0);
            for j in 0..n_seg {
                let s = seg_start(j);
                if let Some(e) = self.cache.iter().find(|e| e.start == s) {
                    for (t, v) in self.sums.iter_mut().zip(&e.power[c * (nb + 1)..]) {
                        *t += v;
                    }
                }
            }
            let total = self.sums[nb] / n_seg as f64;
            self.total_power[c] = total;
            for b in 0..nb {
                let p = self.sums[b] / n_seg as f64;
                self.band_power[c * nb + b] = p;
                self.relative_power[c * nb + b] = if total > 0.0 { p / total } else { 0.0 };
            }
        }

        let indices = indices(&plan.bands, &self.band_power, &self.quality);
        let fs = plan.fs;
        let ms = |sample: u64| self.t0_ms + (sample as f64 * 1000.0 / fs).round() as i64;
        let window = Window {
            index: self.base_index + self.since_start,
            start_sample: start,
            len: l,
            start_ms: ms(start),
            end_ms: ms(start + l as u64),
            settling: start < settle_samples,
            bands: &plan.bands,
            n_bands: nb,
            band_power: &self.band_power,
            relative_power: &self.relative_power,
            total_power: &self.total_power,
            quality: &self.quality,
            indices,
        };
        sink.window(&window);
        self.since_start += 1;
    }

    /// Combines the blocks of the window starting at `start` into per-channel quality.
    #[inline(always)]
    fn window_quality(&mut self, start: u64) {
        let q = &self.plan.quality;
        let l = self.plan.window_len;
        let shape = &self.block_shape;
        let n_blocks = shape.per_window();
        let block = |i: usize| shape.in_window(start, i);
        for (c, out) in self.quality.iter_mut().enumerate() {
            let mut fmin = f64::INFINITY;
            let mut fmax = f64::NEG_INFINITY;
            let (mut fsumsq, mut line) = (0.0, 0.0);
            let mut rmin = f64::INFINITY;
            let mut rmax = f64::NEG_INFINITY;
            let (mut rmin_n, mut rmax_n) = (0.0, 0.0);
            for i in 0..n_blocks {
                let b = &self.blocks[block(i)];
                fmin = fmin.min(b.out_min[c]);
                fmax = fmax.max(b.out_max[c]);
                fsumsq += b.out_sumsq[c];
                line += b.removed_sumsq[c];
                if b.in_min[c] < rmin {
                    rmin = b.in_min[c];
                    rmin_n = 0.0;
                }
                if b.in_min[c] == rmin {
                    rmin_n += b.in_min_n[c];
                }
                if b.in_max[c] > rmax {
                    rmax = b.in_max[c];
                    rmax_n = 0.0;
                }
                if b.in_max[c] == rmax {
                    rmax_n += b.in_max_n[c];
                }
            }
            let flatline = rmax - rmin < q.flatline_ptp_uv;
            // A flat channel sits at its min and max everywhere; that is reported as flat.
            let railed = !flatline && rmin_n + rmax_n >= q.railed_fraction * l as f64;
            let ptp_uv = fmax - fmin;
            let artifact = ptp_uv > q.artifact_ptp_uv;
            let line_noise_ratio = if fsumsq > 0.0 { line / fsumsq } else { 0.0 };
            *out = Quality {
                rms_uv: (fsumsq / l as f64).sqrt(),
                ptp_uv,
                line_noise_ratio,
                flatline,
                railed,
                artifact,
                good: !(flatline || railed || artifact)
                    && line_noise_ratio <= q.max_line_noise_ratio,
            };
        }
    }
}

/// How a session's stream is cut into quality-statistics blocks: each hop at its start and,
/// when H does not divide L, again at `L mod H`. Block `b` of hop `h` is kept at
/// `(h mod hops) * per_hop + b`.
#[derive(Debug, Clone, Copy)]
struct BlockShape {
    hop: u64,
    /// `L mod H`: where each hop is cut a second time (0: not cut).
    tail: u64,
    per_hop: usize,
    /// Hops whose blocks are kept: a window spans L / H whole hops, and part of one more
    /// when H does not divide L; the hop after them is filled while the window's blocks are
    /// still to be read.
    hops: usize,
    /// Whole hops in a window.
    window_hops: usize,
}

impl BlockShape {
    fn of(plan: &Plan) -> BlockShape {
        let (l, h) = (plan.window_len, plan.hop);
        let tail = l % h;
        BlockShape {
            hop: h as u64,
            tail: tail as u64,
            per_hop: if tail == 0 { 1 } else { 2 },
            hops: l / h + usize::from(tail != 0),
            window_hops: l / h,
        }
    }

    /// Blocks kept.
    fn len(&self) -> usize {
        self.hops * self.per_hop
    }

    /// The block holding sample `pos` (its index among those kept), whether `pos` is its
    /// first sample, and the first sample after it.
    #[inline(always)]
    fn at(&self, pos: u64) -> (usize, bool, u64) {
        let (h, tail) = (self.hop, self.tail);
        let (hop, within) = (pos / h, pos % h);
        let (sub, end) = if tail != 0 && within < tail {
            (0, hop * h + tail)
        } else {
            (self.per_hop - 1, (hop + 1) * h)
        };
        let at = (hop % self.hops as u64) as usize * self.per_hop + sub;
        (at, within == 0 || within == tail, end)
    }

    /// Blocks in a window: those of the hops it covers in full, and the first block of the
    /// hop it ends in when H does not divide L.
    #[inline(always)]
    fn per_window(&self) -> usize {
        self.window_hops * self.per_hop + usize::from(self.tail != 0)
    }

    /// The index among those kept of block `i` (in time order) of the window starting at
    /// sample `start`.
    #[inline(always)]
    fn in_window(&self, start: u64, i: usize) -> usize {
        let hop = start / self.hop + (i / self.per_hop) as u64;
        (hop % self.hops as u64) as usize * self.per_hop + i % self.per_hop
    }
}

/// Writes interleaved frames into a channel-major ring (one row of `cap` samples per
/// channel) at position `at`, wrapping around. Transposing here, once per sample, lets every
/// Welch segment read a contiguous row.
#[inline(always)]
fn copy_into_ring(kernel: Kernel, ring: &mut [f64], frames: &[f64], at: usize, nch: usize) {
    let cap = ring.len() / nch;
    let n = frames.len() / nch;
    let first = n.min(cap - at);
    let (head, tail) = frames.split_at(first * nch);
    let rows = ring.chunks_exact_mut(cap);
    layout::frames_to_rows(kernel, head, nch, rows.map(|r| &mut r[at..at + first]));
    if !tail.is_empty() {
        let rows = ring.chunks_exact_mut(cap);
        layout::frames_to_rows(kernel, tail, nch, rows.map(|r| &mut r[..n - first]));
    }
}

#[inline(always)]
fn indices(bands: &[Band], band_power: &[f64], quality: &[Quality]) -> Indices {
    let nb = bands.len();
    let find = |name: &str| bands.iter().position(|b| b.name == name);
    let good = quality.iter().filter(|q| q.good).count();
    let mean = |b: Option<usize>| -> Option<f64> {
        let b = b?;
        if good == 0 {
            return None;
        }
        let sum: f64 = quality
            .iter()
            .enumerate()
            .filter(|(_, q)| q.good)
            .map(|(c, _)| band_power[c * nb + b])
            .sum();
        Some(sum / good as f64)
    };
    let (theta, alpha, beta) = (mean(find("theta")), mean(find("alpha")), mean(find("beta")));
    let ratio = |n: Option<f64>, d: Option<f64>| match (n, d) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    };
    Indices {
        engagement: ratio(beta, alpha.zip(theta).map(|(a, t)| a + t)),
        theta_beta: ratio(theta, beta),
        alpha_theta: ratio(alpha, theta),
    }
}

/// Samples until the cascade's unit-step response stays within [`SETTLE_TOLERANCE`]: the
/// transient a DC offset at the session's first sample causes, which dominates start-up in
/// EEG. Looks at most 60 s ahead.
fn settle_samples(plan: &Plan) -> u64 {
    let horizon = (60.0 * plan.fs).min(2e6) as usize;
    let mut bank = FilterBank::with_kernel(&plan.cascade(), 1, Kernel::Scalar);
    let mut last_above = 0;
    let mut buf = [1.0; 256];
    let mut n = 0;
    while n < horizon {
        buf.fill(1.0);
        bank.process(&mut buf);
        for (i, y) in buf.iter().enumerate() {
            if y.abs() > SETTLE_TOLERANCE {
                last_above = n + i + 1;
            }
        }
        n += buf.len();
    }
    last_above as u64
}
