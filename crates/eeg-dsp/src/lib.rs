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
//!
//! # Units and scaling
//! Samples are in µV. Band and total powers are in µV² (the integral of a density-scaled PSD
//! in µV²/Hz over Hz). Relative powers are band power over total power, where total power is
//! the integral over the band-pass range. Window and segment lengths are rounded from
//! seconds to samples with ties to even, as Python's `round` does.
//!
//! This crate does no IO, spawns no threads and has no async code.

pub mod bank;
pub mod config;
pub mod design;
mod layout;
pub mod processor;
pub mod welch;

pub use bank::{FilterBank, Kernel};
pub use config::{
    Band, ConfigError, FilterConfig, Plan, ProcessingConfig, QualityConfig, WindowConfig,
};
pub use design::{BandType, DesignError, Sos};
pub use processor::{
    Checkpoint, Indices, OwnedWindow, Quality, RestoreError, SessionProcessor, ShapeError, Window,
    WindowSink,
};
