//! Throughput of the DSP core, in channel-samples per second.
//!
//! Run: `cargo bench --bench dsp`. Inputs are built before the timed closures; the closures
//! only filter or transform.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eeg_dsp::welch::SegmentPsd;
use eeg_dsp::{FilterBank, Kernel, ProcessingConfig, SessionProcessor, Window};
use std::hint::black_box;

mod support;
use support::{FS, signal};

fn filter_bank(c: &mut Criterion) {
    let plan = ProcessingConfig::default()
        .plan(FS)
        .expect("default config is valid");
    let (nch, frames, chunk) = (8, 4096, 32);
    let input = signal(nch, frames);
    let mut g = c.benchmark_group("filter_bank_8ch_32_sample_chunks");
    g.throughput(Throughput::Elements((nch * frames) as u64));
    for kernel in [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512] {
        if !kernel.is_supported() {
            continue;
        }
        let mut bank = FilterBank::with_kernel(&plan.cascade(), nch, kernel);
        let mut data = input.clone();
        g.bench_function(BenchmarkId::from_parameter(format!("{kernel:?}")), |b| {
            b.iter(|| {
                for piece in data.chunks_mut(chunk * nch) {
                    bank.process(piece);
                }
                black_box(&data);
            })
        });
    }
    g.finish();
}

fn band_power(c: &mut Criterion) {
    let plan = ProcessingConfig::default()
        .plan(FS)
        .expect("default config is valid");
    let nch = 8;
    let window = signal(nch, plan.window_len);
    let mut seg = SegmentPsd::new(plan.nperseg, FS);
    let bins = plan.band_bins(seg.freqs());
    let mut out = vec![0.0; bins.len()];
    let mut g = c.benchmark_group("welch_band_powers_8ch_4s_window");
    g.throughput(Throughput::Elements((nch * plan.window_len) as u64));
    // The definition: three overlapping segments per channel, no reuse between windows.
    g.bench_function("all_segments", |b| {
        b.iter(|| {
            for ch in 0..nch {
                for s in 0..3 {
                    let first = s * plan.seg_step;
                    let psd = seg.compute(|buf| {
                        for (i, v) in buf.iter_mut().enumerate() {
                            *v = window[(first + i) * nch + ch];
                        }
                    });
                    bins.integrate(psd, &mut out);
                    black_box(&out);
                }
            }
        })
    });
    g.finish();

    // The streaming processor per hop: filter one hop of samples and emit one window
    // (one new segment per channel, quality, indices).
    let mut g = c.benchmark_group("processor_8ch_per_hop");
    g.throughput(Throughput::Elements((nch * plan.hop) as u64));
    let hop = signal(nch, plan.hop);
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), FS, nch, 0)
        .expect("default config is valid");
    let mut windows = 0u64;
    let mut sink = |w: &Window<'_>| windows += w.index;
    for _ in 0..8 {
        p.push_interleaved(&hop, &mut sink).expect("shape matches");
    }
    g.bench_function("push_one_hop", |b| {
        b.iter(|| {
            p.push_interleaved(black_box(&hop), &mut sink)
                .expect("shape matches")
        })
    });
    g.finish();
}

/// Epoching at 64 channels, 1 s epochs (−0.2 to 0.8 s at 256 Hz: 257 samples), MNE-style
/// baseline, rejection, two component windows and the ERD of five bands: the epochs a
/// second, each cut from the kept samples and measured.
fn epochs(c: &mut Criterion) {
    use eeg_dsp::epochs::{
        Component, EpochConfig, EpochPlan, EpochValues, Epocher, ErdConfig, Missing, Peak,
    };
    let fs = 256.0;
    let plan = ProcessingConfig::default()
        .plan(fs)
        .expect("default config is valid");
    let config = EpochConfig {
        tmin_s: -0.2,
        tmax_s: 0.8,
        baseline_s: Some([-0.2, 0.0]),
        reject_uv: Some(150.0),
        flat_uv: Some(0.5),
        components: vec![
            Component {
                name: "n100".into(),
                window_s: [0.07, 0.13],
                peak: Peak::Neg,
            },
            Component {
                name: "p300".into(),
                window_s: [0.25, 0.5],
                peak: Peak::Pos,
            },
        ],
        erd: Some(ErdConfig {
            reference_s: [-0.2, 0.0],
            active_s: [0.3, 0.5],
        }),
    };
    let eplan = EpochPlan::new(&config, &plan).expect("a valid epoch config");
    let nch = 64;
    let seconds = 20;
    let data = signal(nch, seconds * 256);
    let mut epocher = Epocher::new(std::sync::Arc::new(eplan), nch, 10 * 256);
    let mut done = 0u64;
    let mut sink = |_: u32, _: u64, v: Result<&EpochValues, Missing>| {
        done += u64::from(v.is_ok_and(|v| !v.rejected()));
    };
    epocher.push_interleaved(&data, &mut sink);
    let mut g = c.benchmark_group("epochs_64ch_1s");
    g.throughput(Throughput::Elements(1));
    let mut onset = (seconds as u64 - 9) * 256;
    g.bench_function("cut_and_measure_one", |b| {
        b.iter(|| {
            // Events within the reach whose samples are all here: cut at once.
            onset = if onset >= (seconds as u64 - 1) * 256 {
                (seconds as u64 - 9) * 256
            } else {
                onset + 97
            };
            epocher.event(0u32, black_box(onset), &mut sink);
        })
    });
    g.finish();
    black_box(done);
}

criterion_group!(benches, filter_bank, band_power, epochs);
criterion_main!(benches);
