//! The DSP core against SciPy: vectors made by scripts/reference/gen_reference.py.
//!
//! Filters must agree to 1e-9 of the signal's RMS, band powers to 1e-6 relative.

use eeg_dsp::design::{BandType, butter, iirnotch};
use eeg_dsp::{Band, FilterBank, Kernel, ProcessingConfig, SessionProcessor, Sos, Window};
use serde::Deserialize;
use std::collections::HashMap;

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!(
        "{}/../../fixtures/reference/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(Deserialize)]
struct Filters {
    signals: HashMap<String, Signal>,
    cases: Vec<FilterCase>,
}

#[derive(Deserialize)]
struct Signal {
    x: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct FilterCase {
    name: String,
    signal: String,
    fs: f64,
    design: Design,
    sos: Vec<Sos>,
    y: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Design {
    Butter {
        btype: String,
        order: u32,
        cutoff_hz: Vec<f64>,
    },
    Notch {
        w0_hz: f64,
        q: f64,
    },
    Chain {
        mains_hz: f64,
        notch_q: f64,
        bandpass_hz: [f64; 2],
        order: u32,
    },
}

fn design(d: &Design, fs: f64) -> Vec<Sos> {
    match d {
        Design::Butter {
            btype,
            order,
            cutoff_hz,
        } => {
            let t = match btype.as_str() {
                "lowpass" => BandType::Lowpass,
                "highpass" => BandType::Highpass,
                "bandpass" => BandType::Bandpass,
                "bandstop" => BandType::Bandstop,
                other => panic!("unknown btype {other}"),
            };
            butter(*order, cutoff_hz, t, fs).unwrap()
        }
        Design::Notch { w0_hz, q } => vec![iirnotch(*w0_hz, *q, fs).unwrap()],
        Design::Chain {
            mains_hz,
            notch_q,
            bandpass_hz,
            order,
        } => {
            let mut c = ProcessingConfig::default();
            c.filter.mains_hz = *mains_hz;
            c.filter.notch_q = *notch_q;
            c.filter.bandpass_hz = *bandpass_hz;
            c.filter.bandpass_order = *order;
            c.plan(fs).unwrap().cascade()
        }
    }
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

fn interleave(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows[0].len();
    (0..n * rows.len())
        .map(|i| rows[i % rows.len()][i / rows.len()])
        .collect()
}

#[test]
fn designs_equal_scipy_sos() {
    let f: Filters = load("filters.json");
    for case in &f.cases {
        let got = design(&case.design, case.fs);
        assert_eq!(
            got.len(),
            case.sos.len(),
            "{}: number of sections",
            case.name
        );
        for (s, (g, w)) in got.iter().zip(&case.sos).enumerate() {
            for k in 0..6 {
                let tol = 1e-12 * w.iter().map(|v| v.abs()).fold(1.0, f64::max);
                assert!(
                    (g[k] - w[k]).abs() <= tol,
                    "{}: section {s} coefficient {k}: {} vs SciPy {}",
                    case.name,
                    g[k],
                    w[k]
                );
            }
        }
    }
}

#[test]
fn filter_outputs_equal_scipy_sosfilt() {
    let f: Filters = load("filters.json");
    assert!(f.cases.len() >= 20, "expected the full set of cases");
    let mut worst: f64 = 0.0;
    for case in &f.cases {
        let x = &f.signals[&case.signal].x;
        let nch = x.len();
        for kernel in [Kernel::Scalar, Kernel::detect()] {
            let mut data = interleave(x);
            FilterBank::with_kernel(&design(&case.design, case.fs), nch, kernel).process(&mut data);
            for (c, want) in case.y.iter().enumerate() {
                let tol = 1e-9 * rms(&x[c]);
                for (i, w) in want.iter().enumerate() {
                    let g = data[i * nch + c];
                    worst = worst.max((g - w).abs() / rms(&x[c]));
                    assert!(
                        (g - w).abs() <= tol,
                        "{} ({kernel:?}): channel {c} sample {i}: {g} vs SciPy {w} (tolerance {tol})",
                        case.name
                    );
                }
            }
        }
    }
    println!("largest filter difference from SciPy: {worst:.1e} of the signal RMS");
}

#[derive(Deserialize)]
struct Welch {
    cases: Vec<WelchCase>,
}

#[derive(Deserialize)]
struct WelchConfig {
    fs: f64,
    mains_hz: f64,
    notch_q: f64,
    bandpass_hz: [f64; 2],
    bandpass_order: u32,
    length_s: f64,
    hop_s: f64,
    welch_segment_s: f64,
    bands: Vec<(String, f64, f64)>,
}

#[derive(Deserialize)]
struct WelchCase {
    name: String,
    config: WelchConfig,
    x: Vec<Vec<f64>>,
    windows: Vec<RefWindow>,
}

#[derive(Deserialize)]
struct RefWindow {
    index: u64,
    start: u64,
    band_power: Vec<Vec<f64>>,
    total_power: Vec<f64>,
}

fn config_of(c: &WelchConfig) -> ProcessingConfig {
    let mut p = ProcessingConfig::default();
    p.filter.mains_hz = c.mains_hz;
    p.filter.notch_q = c.notch_q;
    p.filter.bandpass_hz = c.bandpass_hz;
    p.filter.bandpass_order = c.bandpass_order;
    p.window.length_s = c.length_s;
    p.window.hop_s = c.hop_s;
    p.window.welch_segment_s = c.welch_segment_s;
    p.bands = c
        .bands
        .iter()
        .map(|(name, lo_hz, hi_hz)| Band {
            name: name.clone(),
            lo_hz: *lo_hz,
            hi_hz: *hi_hz,
        })
        .collect();
    p
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-300)
}

#[test]
fn band_powers_equal_scipy_welch_and_trapezoid() {
    let w: Welch = load("welch.json");
    assert!(w.cases.len() >= 4, "expected the full set of cases");
    let mut worst: f64 = 0.0;
    for case in &w.cases {
        let config = config_of(&case.config);
        let nch = case.x.len();
        let mut p = SessionProcessor::new(&config, case.config.fs, nch, 0).unwrap();
        let mut got = Vec::new();
        let mut sink = |w: &Window<'_>| {
            let bp: Vec<Vec<f64>> = (0..nch).map(|c| w.band_power(c).to_vec()).collect();
            let tp: Vec<f64> = (0..nch).map(|c| w.total_power(c)).collect();
            got.push((w.index, w.start_sample, bp, tp));
        };
        let flat: Vec<f64> = case.x.concat();
        p.push_channel_major(&flat, case.x[0].len(), &mut sink)
            .unwrap();
        assert_eq!(
            got.len(),
            case.windows.len(),
            "{}: number of windows",
            case.name
        );
        for ((index, start, bp, tp), want) in got.iter().zip(&case.windows) {
            assert_eq!((*index, *start), (want.index, want.start), "{}", case.name);
            for c in 0..nch {
                let rel = |g: f64, w: f64| (g - w).abs() / w.abs();
                worst = worst.max(rel(tp[c], want.total_power[c]));
                for (g, r) in bp[c].iter().zip(&want.band_power[c]) {
                    worst = worst.max(rel(*g, *r));
                }
                assert!(
                    close(tp[c], want.total_power[c], 1e-6),
                    "{}: window {index} channel {c} total power {} vs SciPy {}",
                    case.name,
                    tp[c],
                    want.total_power[c]
                );
                for (b, (g, r)) in bp[c].iter().zip(&want.band_power[c]).enumerate() {
                    assert!(
                        close(*g, *r, 1e-6),
                        "{}: window {index} channel {c} band {b}: {g} vs SciPy {r}",
                        case.name
                    );
                }
            }
        }
    }
    println!("largest band-power difference from SciPy: {worst:.1e} relative");
}
