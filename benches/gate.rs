//! Instruction counts of the hot paths, for the performance gate (`scripts/perf-gate`).
//!
//! Each benchmark runs once under callgrind on fixed input; only the benchmark function is
//! counted, never its setup. Counts are the same for the same binary and input whatever
//! else the machine does, so a change that adds work shows as a change of count. Run through
//! the gate (it installs the runner and compares with `benches/baselines/`), or directly:
//! `cargo bench --bench gate` (needs valgrind and `gungraun-runner` 0.20.0).

use std::hint::black_box;
use std::io::Cursor;

use eeg_dsp::welch::{BandBins, SegmentPsd};
use eeg_dsp::{FilterBank, Kernel, OwnedWindow, Plan, ProcessingConfig, SessionProcessor, Window};
use eeg_edf::{EdfReader, Record, WriteSpec, write_edf};
use eeg_schema::{
    Limits, ProcessedRecord, RawBatch, RawMeta, RawSamples, RawUnits, SessionMeta, decode_raw,
    decode_raw_protobuf, encode_processed, encode_raw_protobuf,
};
use gungraun::{library_benchmark, library_benchmark_group, main};

mod support;
use support::{FS, signal};
const CHANNELS: usize = 8;
/// One `eeg.raw/1` batch of 8 channels × 32 samples (fixtures/gate/).
const RAW: &[u8] = include_bytes!("../fixtures/gate/raw_8ch_32.json");

fn plan() -> Plan {
    ProcessingConfig::default()
        .plan(FS)
        .expect("default config is valid")
}

fn filter_setup(kernel: Kernel) -> (FilterBank, Vec<f64>) {
    let bank = FilterBank::with_kernel(&plan().cascade(), CHANNELS, kernel);
    assert_eq!(bank.kernel(), kernel, "the kernel under test runs here");
    // One second of signal, streamed in 32-sample chunks.
    (bank, signal(CHANNELS, 256))
}

// The default filter chain (notch + order-4 band-pass: 5 sections) on 8 channels, one
// second fed in 32-sample chunks.
#[library_benchmark]
#[bench::simd(args = (Kernel::Avx2), setup = filter_setup)]
#[bench::scalar(args = (Kernel::Scalar), setup = filter_setup)]
fn filter_chain((mut bank, mut data): (FilterBank, Vec<f64>)) -> Vec<f64> {
    for chunk in data.chunks_mut(32 * CHANNELS) {
        bank.process(chunk);
    }
    data
}

struct WelchInput {
    seg: SegmentPsd,
    bins: BandBins,
    window: Vec<f64>,
    out: Vec<f64>,
    plan: Plan,
}

fn welch_setup(nch: usize) -> WelchInput {
    let plan = plan();
    let seg = SegmentPsd::new(plan.nperseg, FS);
    let bins = plan.band_bins(seg.freqs());
    let out = vec![0.0; bins.len()];
    WelchInput {
        window: signal(nch, plan.window_len),
        seg,
        bins,
        out,
        plan,
    }
}

// Welch band powers of one 4 s window of 8 channels, by the definition: every segment of
// the window, each channel.
#[library_benchmark]
#[bench::window_8ch_4s(args = (CHANNELS), setup = welch_setup)]
fn welch(mut w: WelchInput) -> f64 {
    let segments = (w.plan.window_len - w.plan.nperseg) / w.plan.seg_step + 1;
    let mut total = 0.0;
    for ch in 0..CHANNELS {
        for s in 0..segments {
            let first = s * w.plan.seg_step;
            let window = &w.window;
            let psd = w.seg.compute(|buf| {
                for (i, v) in buf.iter_mut().enumerate() {
                    *v = window[(first + i) * CHANNELS + ch];
                }
            });
            w.bins.integrate(psd, &mut w.out);
            total += w.out[0];
        }
    }
    total
}

// Decoding and validating one raw batch.
#[library_benchmark]
#[bench::raw_8ch_32(args = (RAW))]
fn decode(bytes: &[u8]) -> RawBatch {
    decode_raw(black_box(bytes), &Limits::default()).expect("the fixture is valid")
}

/// The fixture's batch as binary `eeg.raw/1`: its values as 24-bit digital values of an
/// amplifier with 0.02235 µV per count (`digital`), or as float32.
fn binary_setup(digital: bool) -> Vec<u8> {
    let batch = decode_raw(RAW, &Limits::default()).expect("the fixture is valid");
    let meta = RawMeta {
        session_id: &batch.session_id,
        device_id: &batch.device_id,
        user_id: batch.user_id.as_deref(),
        seq: batch.seq,
        start_ms: batch.start_ms,
        sample_rate_hz: batch.sample_rate_hz,
        channels: &batch.channels,
        units: RawUnits::Microvolts,
    };
    let scale = vec![0.02235; batch.channels.len()];
    let offset = vec![0.0; batch.channels.len()];
    let counts: Vec<i32> = batch
        .samples()
        .iter()
        .map(|v| (v / scale[0]).round() as i32)
        .collect();
    let floats: Vec<f32> = batch.samples().iter().map(|&v| v as f32).collect();
    let samples = if digital {
        RawSamples::Digital {
            bytes_per_sample: 3,
            data: &counts,
            scale: &scale,
            offset: &offset,
        }
    } else {
        RawSamples::Float32(&floats)
    };
    let mut out = Vec::new();
    encode_raw_protobuf(&meta, samples, &mut out).expect("in range");
    out
}

// Decoding the same batch sent as binary `eeg.raw/1` (`content-type:
// application/x-protobuf`).
#[library_benchmark]
#[bench::digital24_8ch_32(args = (true), setup = binary_setup)]
#[bench::float32_8ch_32(args = (false), setup = binary_setup)]
fn decode_binary(bytes: Vec<u8>) -> RawBatch {
    decode_raw_protobuf(black_box(&bytes), &Limits::default()).expect("the message is valid")
}

fn meta(nch: usize) -> SessionMeta {
    SessionMeta {
        session_id: "s-42".into(),
        device_id: "bud-7".into(),
        user_id: None,
        sample_rate_hz: FS,
        channels: (0..nch).map(|c| format!("C{c}")).collect(),
    }
}

fn encode_setup(nch: usize) -> (SessionMeta, OwnedWindow, Vec<u8>) {
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), FS, nch, 1_732_270_000_000)
        .expect("default config is valid");
    let mut owned = OwnedWindow::default();
    let x = signal(nch, plan().window_len);
    p.push_interleaved(&x, &mut |w: &Window<'_>| owned.copy_from(w))
        .expect("shape");
    (meta(nch), owned, Vec::with_capacity(8192))
}

// Encoding one processed record (8 channels) into a reused buffer.
#[library_benchmark]
#[bench::processed_8ch(args = (CHANNELS), setup = encode_setup)]
fn encode((meta, owned, mut out): (SessionMeta, OwnedWindow, Vec<u8>)) -> Vec<u8> {
    let window = owned.view();
    encode_processed(
        &ProcessedRecord {
            meta: &meta,
            window: &window,
        },
        &mut out,
    );
    out
}

fn session_setup(nch: usize) -> (SessionProcessor, SessionMeta, Vec<u8>) {
    let plan = plan();
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), FS, nch, 1_732_270_000_000)
        .expect("default config is valid");
    // Steady state: the first window is out, and the next message completes the second
    // (one new segment per channel, as on every hop of a long session).
    let frames = plan.window_len + plan.hop - 32;
    p.push_interleaved(&signal(nch, frames), &mut |_: &Window<'_>| {})
        .expect("shape");
    (p, meta(nch), Vec::with_capacity(8192))
}

// The per-session processor end to end for one message that completes a window: decode,
// filter, band powers and quality, encode.
#[library_benchmark]
#[bench::message_8ch_32(args = (CHANNELS), setup = session_setup)]
fn session((mut p, meta, mut out): (SessionProcessor, SessionMeta, Vec<u8>)) -> usize {
    let batch = decode_raw(black_box(RAW), &Limits::default()).expect("the fixture is valid");
    let mut windows = 0;
    p.push_channel_major(
        batch.samples(),
        batch.samples_per_channel(),
        &mut |w: &Window<'_>| {
            out.clear();
            encode_processed(
                &ProcessedRecord {
                    meta: &meta,
                    window: w,
                },
                &mut out,
            );
            windows += 1;
        },
    )
    .expect("shape");
    assert_eq!(windows, 1, "the message completes one window");
    out.len()
}

/// A 64-channel, 256 Hz EDF of two one-second records, in memory.
fn edf_setup(nch: usize) -> (EdfReader<Cursor<Vec<u8>>>, Record) {
    let spec = WriteSpec::eeg(nch, FS as usize, 2);
    let bytes = write_edf(Vec::new(), "gate", &spec, |record, signals| {
        for (c, s) in signals.iter_mut().enumerate() {
            for (i, v) in s.iter_mut().enumerate() {
                let t = (record as usize * FS as usize + i) as f64 / FS;
                *v = 200.0 * (c as f64).sin()
                    + 15.0 * (2.0 * std::f64::consts::PI * (9.0 + (c % 4) as f64) * t).sin();
            }
        }
    })
    .expect("writes");
    let len = bytes.len() as u64;
    let mut reader =
        EdfReader::from_reader(Cursor::new(bytes), "gate.edf", Some(len)).expect("valid header");
    let mut record = Record::default();
    // The first record sizes the buffers; the measured one is a steady-state read.
    assert!(reader.read_record(&mut record).expect("reads"));
    (reader, record)
}

// Parsing one data record of a 64-channel EDF (to µV, channel by channel).
#[library_benchmark]
#[bench::record_64ch(args = (64), setup = edf_setup)]
fn edf((mut reader, mut record): (EdfReader<Cursor<Vec<u8>>>, Record)) -> Record {
    assert!(reader.read_record(&mut record).expect("reads"));
    record
}

library_benchmark_group!(name = dsp; benchmarks = filter_chain, welch);
library_benchmark_group!(name = wire; benchmarks = decode, decode_binary, encode);
library_benchmark_group!(name = pipeline; benchmarks = session, edf);

main!(library_benchmark_groups = dsp, wire, pipeline);
