//! [`ndarray`] entry points (cargo feature `ndarray`).
//!
//! - [`SessionProcessor::push_array`] feeds a block shaped (channels, samples) in any memory
//!   order: C order, Fortran order, a slice or a transposed or strided view of a larger array.
//! - [`Window::band_power_view`] and [`Window::relative_power_view`] borrow a window's powers
//!   as (channels, bands) arrays; [`Window::band_power_array`] copies them into an owned
//!   [`Array2`].
//! - [`band_powers`] runs a whole recording offline and returns every window's band powers
//!   as an [`Array3`] with axes (window, channel, band).
//!
//! The numbers are those of the slice API ([`SessionProcessor::push_channel_major`] and
//! friends) bit for bit: a block is only copied, value by value, into the interleaved frames
//! the filter bank runs on, as the slice API copies its input.
//!
//! [`SessionProcessor::push_array`] allocates nothing, whatever the block's memory order:
//! it writes straight into the processor's work buffer, so the streaming path stays
//! allocation-free as with slices.
//!
//! The feature is off by default because the service and the command-line tool feed slices
//! (EDF records, Kafka batches) and would only pay ndarray's compile time. The crate
//! depends on itself with the feature as a dev-dependency, so its tests, doctests, example
//! and lints always cover this module.
//!
//! # Streaming
//! ```
//! use eeg_dsp::ndarray::{Array2, Axis};
//! use eeg_dsp::{ProcessingConfig, SessionProcessor, Window};
//!
//! let (fs, nch) = (250.0, 4);
//! // 10 s of a 10 Hz rhythm, channels × samples.
//! let x = Array2::from_shape_fn((nch, 2500), |(c, t)| {
//!     (c + 1) as f64 * 20.0 * (2.0 * std::f64::consts::PI * 10.0 * t as f64 / fs).sin()
//! });
//! let config = ProcessingConfig::default();
//! let mut p = SessionProcessor::new(&config, fs, nch, 0)?;
//! let mut alpha = Vec::new();
//! let mut sink = |w: &Window<'_>| {
//!     let power = w.band_power_view(); // channels × bands, µV²
//!     alpha.push(power[[0, 2]]);
//! };
//! // One second at a time; blocks of any length give the same windows.
//! for block in x.axis_chunks_iter(Axis(1), 250) {
//!     p.push_array(block, &mut sink)?;
//! }
//! // A block with another channel count is an error, and changes nothing.
//! let three = x.slice(eeg_dsp::ndarray::s![..3, ..]);
//! assert!(p.push_array(three, &mut |_: &Window<'_>| ()).is_err());
//! // 4 s windows every 1 s: 7 windows in 10 s.
//! assert_eq!(alpha.len(), 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Offline
//! ```
//! use eeg_dsp::ndarray::Array2;
//! use eeg_dsp::{ProcessingConfig, band_powers};
//!
//! let fs = 250.0;
//! // Samples × channels, as many files store them: its transpose is channels × samples.
//! let x = Array2::from_shape_fn((2500, 4), |(t, _)| (t as f64 * 0.3).sin() * 10.0);
//! let bp = band_powers(x.t(), fs, &ProcessingConfig::default())?;
//! assert_eq!(bp.power.dim(), (7, 4, 5)); // windows, channels, bands
//! assert_eq!(bp.start_sample[1], 250); // one window per 1 s hop
//! assert_eq!(bp.bands[2].name, "alpha");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::config::{Band, ConfigError, ProcessingConfig};
use crate::layout;
use crate::processor::{SessionProcessor, ShapeError, Window, WindowSink};
use ndarray::{Array2, Array3, ArrayView2, Axis, s};

impl SessionProcessor {
    /// Pushes a block shaped (channels, samples), in any memory order. Gives the same
    /// windows, bit for bit, as [`SessionProcessor::push_channel_major`] with the same
    /// samples, and allocates nothing.
    ///
    /// A block whose channel count is not the processor's is refused with a [`ShapeError`]
    /// before any sample is taken.
    pub fn push_array(
        &mut self,
        block: ArrayView2<'_, f64>,
        sink: &mut impl WindowSink,
    ) -> Result<(), ShapeError> {
        let (nch, per_channel) = block.dim();
        if nch != self.n_channels() {
            return Err(ShapeError {
                len: block.len(),
                channels: self.n_channels(),
                per_channel,
            });
        }
        self.push_view(block, sink);
        Ok(())
    }

    /// [`SessionProcessor::push_array`] once the channel count is known to match.
    fn push_view(&mut self, block: ArrayView2<'_, f64>, sink: &mut impl WindowSink) {
        let (nch, frames) = block.dim();
        let kernel = self.kernel();
        if block.strides()[1] == 1 {
            // Every row is contiguous (C order, or a range of samples of it): the rows go
            // through the same transposing copy as channel-major slices.
            self.push_with(frames, sink, |frame0, n, dst| {
                let piece = block.slice_move(s![.., frame0..frame0 + n]);
                let row = |c: usize| {
                    piece
                        .index_axis_move(Axis(0), c)
                        .to_slice()
                        .expect("a row with unit stride is a slice")
                };
                layout::rows_to_frames(kernel, nch, row, dst);
            });
        } else {
            self.push_with(frames, sink, |frame0, n, dst| {
                let piece = block.slice_move(s![.., frame0..frame0 + n]).reversed_axes();
                // (samples, channels) in C order is exactly the interleaved frames: one copy
                // (Fortran order, or a range of samples of it).
                if let Some(frames) = piece.to_slice() {
                    dst.copy_from_slice(frames);
                    return;
                }
                for (frame, sample) in dst.chunks_exact_mut(nch).zip(piece.outer_iter()) {
                    for (d, v) in frame.iter_mut().zip(sample) {
                        *d = *v;
                    }
                }
            });
        }
    }
}

impl<'a> Window<'a> {
    /// Band powers, µV², shaped (channels, bands) with the bands in config order; borrowed,
    /// no copy.
    pub fn band_power_view(&self) -> ArrayView2<'a, f64> {
        self.channels_by_bands(self.band_power_values())
    }

    /// Band powers over each channel's total power, shaped as
    /// [`Window::band_power_view`].
    pub fn relative_power_view(&self) -> ArrayView2<'a, f64> {
        self.channels_by_bands(self.relative_power_values())
    }

    /// [`Window::band_power_view`] copied into an owned array, e.g. to keep it after the
    /// sink returns.
    pub fn band_power_array(&self) -> Array2<f64> {
        self.band_power_view().to_owned()
    }

    fn channels_by_bands(&self, values: &'a [f64]) -> ArrayView2<'a, f64> {
        ArrayView2::from_shape((self.n_channels(), self.bands.len()), values)
            .expect("a window holds one value per channel and band")
    }
}

/// Every window's band powers over a whole recording, from [`band_powers`].
#[derive(Debug, Clone, PartialEq)]
pub struct BandPowers {
    /// Band powers, µV², with axes (window, channel, band): `power[[k, c, b]]` is band `b`
    /// (in [`BandPowers::bands`] order) of channel `c` in window `k`.
    pub power: Array3<f64>,
    /// Band power over the channel's total power in the window (0 when that is 0), with the
    /// axes of [`BandPowers::power`].
    pub relative: Array3<f64>,
    /// First sample of each window, counted from the recording's first sample: window `k`
    /// starts at `k` hops. Divide by the sample rate for seconds.
    pub start_sample: Vec<u64>,
    /// Whether each window starts while the filters are still settling from their zero
    /// initial state (see [`Window::settling`]).
    pub settling: Vec<bool>,
    /// The bands of the last axis, in config order.
    pub bands: Vec<Band>,
}

/// The band powers of every window of a recording shaped (channels, samples), in any memory
/// order, sampled at `fs` Hz: what a [`SessionProcessor`] fed the whole recording emits,
/// bit for bit. A recording shorter than one window gives no windows (a first axis of
/// length 0).
///
/// Fails when `config` does not work at `fs` or the recording has no channel.
pub fn band_powers(
    recording: ArrayView2<'_, f64>,
    fs: f64,
    config: &ProcessingConfig,
) -> Result<BandPowers, ConfigError> {
    let (nch, n) = recording.dim();
    let mut p = SessionProcessor::new(config, fs, nch, 0)?;
    let plan = p.plan();
    let bands = plan.bands.clone();
    let nb = bands.len();
    let expected = n
        .checked_sub(plan.window_len)
        .map_or(0, |rest| rest / plan.hop + 1);
    let mut power = Vec::with_capacity(expected * nch * nb);
    let mut relative = Vec::with_capacity(expected * nch * nb);
    let mut start_sample = Vec::with_capacity(expected);
    let mut settling = Vec::with_capacity(expected);
    p.push_view(recording, &mut |w: &Window<'_>| {
        power.extend_from_slice(w.band_power_values());
        relative.extend_from_slice(w.relative_power_values());
        start_sample.push(w.start_sample);
        settling.push(w.settling);
    });
    let shape = (start_sample.len(), nch, nb);
    let array = |values| {
        Array3::from_shape_vec(shape, values).expect("each window adds channels × bands values")
    };
    Ok(BandPowers {
        power: array(power),
        relative: array(relative),
        start_sample,
        settling,
        bands,
    })
}
