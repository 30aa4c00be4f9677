//! What the test files share.

use eeg_dsp::Window;

const FS: f64 = 250.0;

/// An EEG-like signal with a DC offset, a 10 Hz rhythm, mains and a spike, interleaved.
pub fn signal(nch: usize, frames: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..frames * nch)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 10.0;
            let (t, c) = ((i / nch) as f64 / FS, (i % nch) as f64);
            let spike = if i / nch == frames / 2 { 400.0 } else { 0.0 };
            150.0 * c - 80.0
                + 20.0 * (2.0 * std::f64::consts::PI * (9.0 + c) * t).sin()
                + 8.0 * (2.0 * std::f64::consts::PI * 50.0 * t).sin()
                + noise
                + spike
        })
        .collect()
}

/// Every number a window carries, bit for bit.
pub fn fingerprint(w: &Window<'_>) -> Vec<u64> {
    let mut v = vec![
        w.index,
        w.start_sample,
        w.start_ms as u64,
        w.end_ms as u64,
        w.settling as u64,
    ];
    for c in 0..w.n_channels() {
        v.extend(w.band_power(c).iter().map(|x| x.to_bits()));
        v.extend(w.relative_power(c).iter().map(|x| x.to_bits()));
        v.push(w.total_power(c).to_bits());
        let q = w.quality(c);
        v.extend([q.rms_uv, q.ptp_uv, q.line_noise_ratio].map(f64::to_bits));
        v.extend([q.flatline, q.railed, q.artifact, q.good].map(u64::from));
    }
    let i = w.indices;
    v.extend([i.engagement, i.theta_beta, i.alpha_theta].map(|x| x.map_or(u64::MAX, f64::to_bits)));
    v
}
