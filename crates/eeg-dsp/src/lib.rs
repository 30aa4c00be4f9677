//! Streaming multichannel EEG signal processing.
//!
//! - [`design`]: Butterworth and notch filters as second-order sections, equal to SciPy's
//!   `butter(..., output='sos')` and `iirnotch`.
//! - [`FilterBank`]: a cascade of sections over many channels at once, channels in SIMD
//!   lanes, state kept between calls so that any chunking of a stream gives bit-identical
//!   output. Every kernel (scalar, AVX2, AVX-512) gives bit-identical output too.
//! - [`welch`]: Welch PSD and trapezoid band integration, equal to `scipy.signal.welch`
//!   with its defaults and `scipy.integrate.trapezoid`.
//! - [`SessionProcessor`]: one session's pipeline (notch, band-pass, sliding windows, band
//!   powers, signal quality, indices), fed blocks of any size, emitting a [`Window`] as soon
//!   as one completes.
//! - `array` (cargo feature `ndarray`, off by default): feed a [`SessionProcessor`] from an
//!   `ndarray::ArrayView2` (channels × samples, any memory order), take a window's band
//!   powers as an `Array2` (channels × bands), or a whole recording's as an `Array3`
//!   (windows × channels × bands) with `band_powers`. Same numbers as the slice API, bit for
//!   bit. Off by default because the service feeds slices and has no use for ndarray; the
//!   module's docs show it in use, and `examples/ndarray_band_powers.rs` runs it
//!   (`cargo run -p eeg-dsp --example ndarray_band_powers --features ndarray`).
//!
//! # Units and scaling
//! Samples are in µV. Band and total powers are in µV² (the integral of a density-scaled PSD
//! in µV²/Hz over Hz). Relative powers are band power over total power, where total power is
//! the integral over the band-pass range. Window and segment lengths are rounded from
//! seconds to samples with ties to even, as Python's `round` does.
//!
//! This crate does no IO, spawns no threads and has no async code.

#[cfg(feature = "ndarray")]
pub mod array;
pub mod bank;
pub mod config;
pub mod design;
pub mod epochs;
mod layout;
pub mod processor;
pub mod welch;

pub use bank::{FilterBank, Kernel};
pub use config::{
    Band, ConfigError, FilterConfig, Plan, ProcessingConfig, QualityConfig, SessionLimits,
    WindowConfig,
};
pub use design::{BandType, DesignError, Sos};
pub use processor::{
    Checkpoint, Indices, OwnedWindow, Quality, RestoreError, SessionProcessor, ShapeError, Window,
    WindowSink,
};

#[cfg(feature = "ndarray")]
pub use array::{BandPowers, band_powers};
/// The `ndarray` this crate's array entry points take and return, so that callers use the
/// same version.
#[cfg(feature = "ndarray")]
pub use ndarray;
