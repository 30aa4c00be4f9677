//! Band powers of a synthetic recording with ndarray: 4 channels of 10 s at 250 Hz, each a
//! 10 Hz (alpha) rhythm of its own amplitude plus noise, first offline in one call, then
//! streamed in blocks of 0.1 s.
//!
//! `cargo run -p eeg-dsp --example ndarray_band_powers --features ndarray`

use eeg_dsp::ndarray::{Array2, Axis};
use eeg_dsp::{ProcessingConfig, SessionProcessor, Window, band_powers};
use std::f64::consts::PI;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (fs, nch, seconds) = (250.0, 4, 10.0);
    let n = (fs * seconds) as usize;

    // Uniform noise in [-5, 5) µV from a fixed linear congruential generator, so every run
    // prints the same numbers.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 10.0
    };
    // Channels × samples, µV: channel c has an alpha amplitude of 10·(c + 1) µV.
    let x = Array2::from_shape_fn((nch, n), |(c, t)| {
        10.0 * (c + 1) as f64 * (2.0 * PI * 10.0 * t as f64 / fs).sin() + noise()
    });

    let config = ProcessingConfig::default();
    let bp = band_powers(x.view(), fs, &config)?;
    let names: Vec<&str> = bp.bands.iter().map(|b| b.name.as_str()).collect();
    let (windows, _, _) = bp.power.dim();
    println!("band powers, µV², axes (window, channel, band); bands {names:?}");
    println!(
        "{windows} windows of {} s every {} s",
        config.window.length_s, config.window.hop_s
    );
    for (k, window) in bp.power.outer_iter().enumerate() {
        let start_s = bp.start_sample[k] as f64 / fs;
        let note = if bp.settling[k] { " (settling)" } else { "" };
        println!("window {k} at {start_s} s{note}:\n{window:8.2}");
    }

    // Relative alpha power per channel, averaged over the windows past settling.
    let alpha = names
        .iter()
        .position(|&b| b == "alpha")
        .ok_or("no alpha band")?;
    let settled: Vec<usize> = (0..windows).filter(|&k| !bp.settling[k]).collect();
    let relative = bp.relative.select(Axis(0), &settled);
    let mean = relative
        .mean_axis(Axis(0))
        .ok_or("no window past settling")?;
    println!(
        "relative alpha power per channel: {:.3}",
        mean.column(alpha)
    );

    // The same windows streamed in blocks of 0.1 s, each window's band powers an Array2
    // (channels × bands).
    let mut p = SessionProcessor::new(&config, fs, nch, 0)?;
    let mut streamed = Vec::new();
    let mut sink = |w: &Window<'_>| streamed.push(w.band_power_array());
    for block in x.axis_chunks_iter(Axis(1), 25) {
        p.push_array(block, &mut sink)?;
    }
    let same = streamed.len() == windows
        && streamed
            .iter()
            .zip(bp.power.outer_iter())
            .all(|(s, o)| s == o);
    println!(
        "streamed in 0.1 s blocks: {} windows, same numbers: {same}",
        streamed.len()
    );
    Ok(())
}
