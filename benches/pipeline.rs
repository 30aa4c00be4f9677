//! Throughput of the stages around the DSP core: EDF parsing, wire formats, and the whole
//! offline pipeline (EDF → filter → windows → JSON) on a long multichannel recording.
//!
//! Run: `cargo bench --bench pipeline`. The input files are written once to
//! `target/bench-data/` before anything is timed.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eeg_dsp::{ProcessingConfig, SessionProcessor, Window};
use eeg_edf::{EdfReader, Record, WriteSpec, write_edf};
use eeg_schema::{Limits, ProcessedRecord, SessionMeta, decode_raw, encode_processed};
use std::hint::black_box;
use std::path::PathBuf;

const FS: usize = 256;

/// A 64-channel, 256 Hz EDF of `minutes` of synthetic EEG, written once.
fn edf_file(channels: usize, minutes: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let path = dir.join(format!("eeg{channels}ch_{minutes}min_{FS}hz.edf"));
    if path.exists() {
        return path;
    }
    let spec = WriteSpec::eeg(channels, FS, minutes * 60);
    let tmp = path.with_extension("partial");
    let file = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("create"));
    write_edf(file, "bench", &spec, |record, signals| {
        for (c, s) in signals.iter_mut().enumerate() {
            for (i, v) in s.iter_mut().enumerate() {
                let t = (record as usize * FS + i) as f64 / FS as f64;
                *v = 200.0 * (c as f64).sin()
                    + 15.0 * (2.0 * std::f64::consts::PI * (9.0 + (c % 4) as f64) * t).sin()
                    + 5.0 * (2.0 * std::f64::consts::PI * 50.0 * t).sin()
                    + 3.0 * ((t * 7.3 + c as f64).sin() * (t * 1.1).cos());
            }
        }
    })
    .expect("write bench file");
    std::fs::rename(&tmp, &path).expect("rename");
    path
}

fn edf_records(c: &mut Criterion) {
    let path = edf_file(64, 1);
    let mut g = c.benchmark_group("edf_parse_64ch");
    g.throughput(Throughput::Elements((64 * FS * 60) as u64));
    let mut record = Record::default();
    g.bench_function("read_60_records", |b| {
        b.iter(|| {
            let mut reader = EdfReader::open(&path).expect("opens");
            while reader.read_record(&mut record).expect("reads") {
                black_box(record.signal(63)[FS - 1]);
            }
        })
    });
    g.finish();
}

fn wire_formats(c: &mut Criterion) {
    let (nch, n) = (8, 32);
    let samples: Vec<String> = (0..nch)
        .map(|ch| {
            let row: Vec<String> = (0..n)
                .map(|i| format!("{:?}", ((ch * n + i) as f64 * 0.37).sin() * 42.123456))
                .collect();
            format!("[{}]", row.join(","))
        })
        .collect();
    let names: Vec<String> = (0..nch).map(|c| format!("\"C{c}\"")).collect();
    let message = format!(
        "{{\"schema\":\"eeg.raw/1\",\"session_id\":\"s-42\",\"device_id\":\"bud-7\",\"seq\":7,\"start_ms\":1732270000000,\"sample_rate_hz\":256.0,\"channels\":[{}],\"samples\":[{}]}}",
        names.join(","),
        samples.join(",")
    );
    let limits = Limits::default();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements((nch * n) as u64));
    g.bench_function("decode_raw_8ch_32", |b| {
        b.iter(|| decode_raw(black_box(message.as_bytes()), &limits).expect("valid"))
    });
    g.finish();

    // One processed record of 8 channels, encoded into a reused buffer.
    let meta = SessionMeta {
        session_id: "s-42".into(),
        device_id: "bud-7".into(),
        user_id: None,
        sample_rate_hz: FS as f64,
        channels: (0..nch).map(|c| format!("C{c}")).collect(),
    };
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), FS as f64, nch, 0)
        .expect("default config is valid");
    let mut owned = eeg_dsp::OwnedWindow::default();
    let x: Vec<f64> = (0..nch * FS * 4)
        .map(|i| (i as f64 * 0.01).sin() * 20.0)
        .collect();
    p.push_interleaved(&x, &mut |w: &Window<'_>| owned.copy_from(w))
        .expect("shape");
    let mut out = Vec::with_capacity(8192);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_processed_8ch", |b| {
        b.iter(|| {
            out.clear();
            let window = owned.view();
            encode_processed(
                &ProcessedRecord {
                    meta: &meta,
                    window: &window,
                },
                &mut out,
            );
            black_box(out.len())
        })
    });
    g.finish();
}

/// The offline pipeline on one thread: read every record, filter, window, encode JSON.
fn offline_pipeline(c: &mut Criterion) {
    let (nch, minutes) = (64, 10);
    let path = edf_file(nch, minutes);
    let meta = SessionMeta {
        session_id: "bench".into(),
        device_id: "bench.edf".into(),
        user_id: None,
        sample_rate_hz: FS as f64,
        channels: (0..nch).map(|c| format!("EEG{c:02}")).collect(),
    };
    let config = ProcessingConfig::default();
    let mut g = c.benchmark_group("offline_pipeline_64ch_10min");
    g.sample_size(10);
    g.throughput(Throughput::Elements(nch as u64 * FS as u64 * 60 * minutes));
    let mut record = Record::default();
    let mut block = vec![0.0; nch * FS];
    let mut out = Vec::with_capacity(1 << 20);
    g.bench_function("edf_to_jsonl", |b| {
        b.iter(|| {
            let mut reader = EdfReader::open(&path).expect("opens");
            let mut p = SessionProcessor::new(&config, FS as f64, nch, 0).expect("valid");
            let mut bytes = 0usize;
            while reader.read_record(&mut record).expect("reads") {
                for (row, s) in block.chunks_exact_mut(FS).zip(record.signals()) {
                    row.copy_from_slice(s);
                }
                p.push_channel_major(&block, FS, &mut |w: &Window<'_>| {
                    out.clear();
                    encode_processed(
                        &ProcessedRecord {
                            meta: &meta,
                            window: w,
                        },
                        &mut out,
                    );
                    bytes += out.len();
                })
                .expect("shape");
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, edf_records, wire_formats, offline_pipeline);
criterion_main!(benches);
