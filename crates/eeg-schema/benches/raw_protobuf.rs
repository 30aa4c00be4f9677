//! Decoding binary `eeg.raw/1` (with validation, into a `RawBatch` in µV): 24-bit digital
//! samples in the replay's batch shape (8 channels × 32) and an amplifier's (64 × 500),
//! float32 and float64 at 64 × 500, and the JSON of the same batches for comparison.
//! Throughput is in samples (one sample of one channel).
//!
//! `cargo bench -p eeg-schema --bench raw_protobuf`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eeg_schema::{
    Limits, RawMeta, RawSamples, RawUnits, decode_raw, decode_raw_protobuf, encode_raw_protobuf,
};
use std::hint::black_box;

/// EEG-like 24-bit values: an alpha rhythm and noise, at an ADS1299-style gain.
fn digital(n_ch: usize, n: usize) -> (Vec<String>, Vec<i32>, Vec<f64>, Vec<f64>) {
    let gain = 4.5e6 / 24.0 / f64::from(1 << 23);
    let mut state = 42u64;
    let channels = (0..n_ch).map(|c| format!("E{c}")).collect();
    let mut data = Vec::with_capacity(n_ch * n);
    for c in 0..n_ch {
        for i in 0..n {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let t = i as f64 / 500.0;
            let uv = 20.0 * (2.0 * std::f64::consts::PI * (10.0 + c as f64 * 0.1) * t).sin()
                + 30.0 * noise;
            data.push((uv / gain).round() as i32);
        }
    }
    (channels, data, vec![gain; n_ch], vec![0.0; n_ch])
}

fn meta(channels: &[String]) -> RawMeta<'_> {
    RawMeta {
        session_id: "s-42",
        device_id: "bud-7",
        user_id: Some("u-1"),
        seq: 7,
        start_ms: 1_732_270_000_000,
        sample_rate_hz: 500.0,
        channels,
        units: RawUnits::Microvolts,
    }
}

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    for (n_ch, n) in [(8, 32), (64, 500)] {
        let (channels, data, scale, offset) = digital(n_ch, n);
        let m = meta(&channels);
        let mut message = Vec::new();
        let samples = RawSamples::Digital {
            bytes_per_sample: 3,
            data: &data,
            scale: &scale,
            offset: &offset,
        };
        encode_raw_protobuf(&m, samples, &mut message).expect("in range");
        let batch = decode_raw_protobuf(&message, &limits).expect("valid");

        let mut g = c.benchmark_group(format!("raw_protobuf_{n_ch}ch_{n}"));
        g.throughput(Throughput::Elements((n_ch * n) as u64));
        g.bench_function("decode_digital24", |b| {
            b.iter(|| decode_raw_protobuf(black_box(&message), &limits).expect("valid"))
        });
        if n_ch == 64 {
            let f32s: Vec<f32> = batch.samples().iter().map(|&v| v as f32).collect();
            let mut float32 = Vec::new();
            encode_raw_protobuf(&m, RawSamples::Float32(&f32s), &mut float32).expect("floats");
            g.bench_function("decode_float32", |b| {
                b.iter(|| decode_raw_protobuf(black_box(&float32), &limits).expect("valid"))
            });
            let mut float64 = Vec::new();
            batch.encode_protobuf(&mut float64);
            g.bench_function("decode_float64", |b| {
                b.iter(|| decode_raw_protobuf(black_box(&float64), &limits).expect("valid"))
            });
            let mut out = Vec::with_capacity(message.len() + 1024);
            g.bench_function("encode_digital24", |b| {
                b.iter(|| {
                    out.clear();
                    let samples = RawSamples::Digital {
                        bytes_per_sample: 3,
                        data: black_box(&data),
                        scale: &scale,
                        offset: &offset,
                    };
                    encode_raw_protobuf(&m, samples, &mut out).expect("in range");
                })
            });
        }
        // The same batch as canonical JSON, for comparison.
        let json = batch.encode();
        g.bench_function("decode_json", |b| {
            b.iter(|| decode_raw(black_box(&json), &limits).expect("valid"))
        });
        g.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
