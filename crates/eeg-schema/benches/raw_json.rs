//! Decoding `eeg.raw/1` JSON: [`decode_raw`] (fast path) against the serde decoder alone
//! ([`decode_raw_reference`]) on the same messages.
//!
//! Run: `cargo bench -p eeg-schema --bench raw_json`. Throughput is counted in samples
//! (one value of one channel).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eeg_schema::{Limits, decode_raw, decode_raw_reference};
use std::hint::black_box;

/// A message of `nch` channels × `n` samples built as the root benchmark
/// `wire/decode_raw_8ch_32` builds its message (shortest round-trip numbers of 15-17
/// digits).
fn message(nch: usize, n: usize) -> String {
    let samples: Vec<String> = (0..nch)
        .map(|ch| {
            let row: Vec<String> = (0..n)
                .map(|i| format!("{:?}", ((ch * n + i) as f64 * 0.37).sin() * 42.123456))
                .collect();
            format!("[{}]", row.join(","))
        })
        .collect();
    let names: Vec<String> = (0..nch).map(|c| format!("\"C{c}\"")).collect();
    format!(
        "{{\"schema\":\"eeg.raw/1\",\"session_id\":\"s-42\",\"device_id\":\"bud-7\",\"seq\":7,\"start_ms\":1732270000000,\"sample_rate_hz\":256.0,\"channels\":[{}],\"samples\":[{}]}}",
        names.join(","),
        samples.join(",")
    )
}

/// The performance gate's fixture: 8 × 32 samples with six decimals.
const FIXTURE: &[u8] = include_bytes!("../../../fixtures/gate/raw_8ch_32.json");

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    let m8 = message(8, 32);
    let m64 = message(64, 500);
    let cases: [(&str, &[u8], usize); 3] = [
        ("8ch_32", m8.as_bytes(), 8 * 32),
        ("fixture_8ch_32", FIXTURE, 8 * 32),
        ("64ch_500", m64.as_bytes(), 64 * 500),
    ];
    for (name, bytes, samples) in cases {
        // Both decoders must agree before either is timed.
        let fast = decode_raw(bytes, &limits).expect("valid");
        let reference = decode_raw_reference(bytes, &limits).expect("valid");
        assert_eq!(fast, reference);
        assert_eq!(fast.samples().len(), samples);
        let mut g = c.benchmark_group(format!("raw_json/{name}"));
        g.throughput(Throughput::Elements(samples as u64));
        g.bench_function("reference", |b| {
            b.iter(|| decode_raw_reference(black_box(bytes), &limits).expect("valid"))
        });
        g.bench_function("fast", |b| {
            b.iter(|| decode_raw(black_box(bytes), &limits).expect("valid"))
        });
        g.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
