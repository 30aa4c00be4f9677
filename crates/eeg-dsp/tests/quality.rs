//! Signal-quality flags and indices on signals built to trip (or not trip) each one.

use eeg_dsp::{FilterBank, Kernel, ProcessingConfig, Quality, SessionProcessor, Window};
use std::f64::consts::PI;

const FS: f64 = 250.0;

/// Quality of the last window of each channel after 8 s of the given channel-major signals.
fn last_quality(rows: &[Vec<f64>]) -> (Vec<Quality>, eeg_dsp::Indices) {
    let n = rows[0].len();
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), FS, rows.len(), 0).unwrap();
    let mut last = None;
    p.push_channel_major(&rows.concat(), n, &mut |w: &Window<'_>| {
        last = Some((
            (0..w.n_channels()).map(|c| *w.quality(c)).collect(),
            w.indices,
        ))
    })
    .unwrap();
    last.expect("at least one window")
}

fn sine(hz: f64, amp: f64, offset: f64) -> Vec<f64> {
    (0..2000)
        .map(|i| offset + amp * (2.0 * PI * hz * i as f64 / FS).sin())
        .collect()
}

#[test]
fn clean_alpha_is_good_with_known_rms() {
    let (q, _) = last_quality(&[sine(10.0, 20.0, 300.0)]);
    let q = q[0];
    assert!(q.good && !q.flatline && !q.railed && !q.artifact, "{q:?}");
    // A sine of amplitude 20 has RMS 20/sqrt(2); the band-pass passes 10 Hz at unit gain.
    assert!((q.rms_uv - 20.0 / 2f64.sqrt()).abs() < 0.05, "{}", q.rms_uv);
    assert!((q.ptp_uv - 40.0).abs() < 0.2, "{}", q.ptp_uv);
    assert!(q.line_noise_ratio < 1e-3, "{}", q.line_noise_ratio);
}

#[test]
fn constant_channel_is_flat_not_railed() {
    let (q, _) = last_quality(&[vec![123.0; 2000]]);
    assert!(q[0].flatline && !q[0].railed && !q[0].good, "{:?}", q[0]);
}

#[test]
fn clipped_channel_is_railed() {
    let clipped: Vec<f64> = sine(10.0, 100.0, 0.0)
        .into_iter()
        .map(|v| v.clamp(-60.0, 60.0))
        .collect();
    let (q, _) = last_quality(&[clipped]);
    assert!(q[0].railed && !q[0].flatline && !q[0].good, "{:?}", q[0]);
}

#[test]
fn large_excursion_is_an_artifact() {
    let (q, _) = last_quality(&[sine(5.0, 150.0, 0.0)]);
    assert!(q[0].artifact && !q[0].good, "{:?}", q[0]);
}

#[test]
fn mains_heavier_than_eeg_is_not_good() {
    let rows: Vec<f64> = sine(10.0, 5.0, 0.0)
        .iter()
        .zip(sine(50.0, 20.0, 0.0))
        .map(|(a, b)| a + b)
        .collect();
    let (q, _) = last_quality(&[rows]);
    // Mains power 200 µV² over EEG power 12.5 µV².
    assert!((q[0].line_noise_ratio - 16.0).abs() < 0.5, "{:?}", q[0]);
    assert!(!q[0].good && !q[0].artifact, "{:?}", q[0]);
}

#[test]
fn indices_use_only_good_channels() {
    // Channel 0: theta + beta, good. Channel 1: flat, so it must not count.
    let theta_beta: Vec<f64> = sine(6.0, 10.0, 0.0)
        .iter()
        .zip(sine(20.0, 10.0, 0.0))
        .map(|(a, b)| a + b)
        .collect();
    let (q, idx) = last_quality(&[theta_beta, vec![0.0; 2000]]);
    assert!(q[0].good && !q[1].good);
    let tb = idx.theta_beta.expect("one good channel");
    assert!((tb - 1.0).abs() < 0.05, "{tb}");
    let e = idx.engagement.expect("one good channel");
    assert!(e > 0.9 && e < 1.1, "{e}");
    let (_, none) = last_quality(&[vec![0.0; 2000]]);
    assert_eq!(none.engagement, None);
}

/// Every window's quality equals a direct computation over the window's samples: `railed`
/// and `flatline` from a count over the raw samples, `ptp_uv` and `rms_uv` from the filtered
/// samples. Channels are clipped at several levels around the 5 % threshold and fed in chunks
/// that cross blocks and pieces; hops that divide the window and hops that do not (the
/// statistics blocks are cut at `L mod H` then), and a rate whose window and hop share no
/// factor.
#[test]
fn quality_matches_a_direct_computation_over_each_window() {
    for (fs, hop_s) in [(250.0, 1.0), (250.0, 0.3), (250.0, 0.7), (256.3, 1.0)] {
        quality_matches_direct(fs, hop_s);
    }
}

fn quality_matches_direct(fs: f64, hop_s: f64) {
    let mut config = ProcessingConfig::default();
    config.window.hop_s = hop_s;
    let plan = config.plan(fs).unwrap();
    let (l, h) = (plan.window_len, plan.hop);
    let n = 3000;
    // Clip levels chosen so the share of samples at the extremes falls on both sides of 5 %.
    let clips = [1.0, 0.999, 0.995, 0.99, 0.98, 0.95, 0.9];
    let rows: Vec<Vec<f64>> = clips
        .iter()
        .enumerate()
        .map(|(c, &clip)| {
            (0..n)
                .map(|i| {
                    let x = (2.0 * PI * (7.0 + c as f64) * i as f64 / fs).sin()
                        + 0.3 * (2.0 * PI * 1.3 * i as f64 / fs).sin();
                    (40.0 * x.clamp(-1.3 * clip, 1.3 * clip)).round() / 4.0
                })
                .collect()
        })
        .collect();
    let nch = rows.len();
    let mut interleaved = Vec::with_capacity(n * nch);
    for i in 0..n {
        interleaved.extend(rows.iter().map(|r| r[i]));
    }
    let mut filtered = interleaved.clone();
    FilterBank::with_kernel(&plan.cascade(), nch, Kernel::Scalar).process(&mut filtered);
    let mut p = SessionProcessor::with_kernel(&config, fs, nch, 0, Kernel::Scalar).unwrap();
    let mut got: Vec<Vec<Quality>> = Vec::new();
    let mut at = 0;
    for chunk in [7usize, 300, 1, 999, 64].iter().cycle() {
        if at == n {
            break;
        }
        let k = (*chunk).min(n - at);
        p.push_interleaved(&interleaved[at * nch..(at + k) * nch], &mut |w: &Window<
            '_,
        >| {
            got.push((0..nch).map(|c| *w.quality(c)).collect())
        })
        .unwrap();
        at += k;
    }
    let case = format!("{fs} Hz, hop {hop_s} s (L {l}, H {h})");
    assert_eq!(got.len(), (n - l) / h + 1, "{case}");
    let mut railed_seen = [false, false];
    for (k, window) in got.iter().enumerate() {
        for (c, q) in window.iter().enumerate() {
            let x = &rows[c][k * h..k * h + l];
            let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let at_extremes = x.iter().filter(|&&v| v == lo || v == hi).count();
            let want_flat = hi - lo < config.quality.flatline_ptp_uv;
            let want_railed =
                !want_flat && at_extremes as f64 >= config.quality.railed_fraction * l as f64;
            assert_eq!(q.flatline, want_flat, "{case}: window {k} channel {c}");
            assert_eq!(
                q.railed, want_railed,
                "{case}: window {k} channel {c}: {at_extremes} at extremes"
            );
            railed_seen[usize::from(q.railed)] = true;
            let y: Vec<f64> = (k * h..k * h + l).map(|i| filtered[i * nch + c]).collect();
            let ylo = y.iter().copied().fold(f64::INFINITY, f64::min);
            let yhi = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(q.ptp_uv, yhi - ylo, "{case}: window {k} channel {c} ptp");
            let rms = (y.iter().map(|v| v * v).sum::<f64>() / l as f64).sqrt();
            assert!(
                (q.rms_uv - rms).abs() <= 1e-12 * rms,
                "{case}: window {k} channel {c} rms {} vs {rms}",
                q.rms_uv
            );
        }
    }
    assert_eq!(railed_seen, [true, true], "{case}: both outcomes occur");
}
