//! Input shared by the benchmark files.

/// Sample rate of every benchmark input, Hz.
pub const FS: f64 = 256.0;

/// Deterministic EEG-like test signal of `nch` channels, interleaved: a rhythm per channel
/// (10 Hz + channel number), 50 Hz mains and a DC offset per channel.
pub fn signal(nch: usize, frames: usize) -> Vec<f64> {
    (0..frames * nch)
        .map(|i| {
            let (t, c) = ((i / nch) as f64 / FS, (i % nch) as f64);
            20.0 * (2.0 * std::f64::consts::PI * (10.0 + c) * t).sin()
                + 5.0 * (2.0 * std::f64::consts::PI * 50.0 * t).sin()
                + 100.0 * c
        })
        .collect()
}
