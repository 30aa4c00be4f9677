//! Fuzz targets of eeg-pipeline: one check function per target, `fn check(data: &[u8])`,
//! which panics when the library misbehaves on `data`. The AFL++ binaries (`src/bin/`, built
//! by `cargo afl build --features afl`) call them on the inputs AFL++ generates; the replay
//! test (`tests/replay.rs`) calls them on the saved findings in `regressions/`, without AFL.
//!
//! Misbehaviour is any of: a panic in the library, two paths that must agree disagreeing (the
//! JSON scanner and serde's decoder, an encoding and its decoding, physical and digital EDF
//! values), an error message that is not one line, and a call that holds more memory at
//! once than its bound allows ([`Bound`]: a constant plus a factor times the input's length,
//! measured by the counting allocator installed here for every thread). Time is bounded by
//! AFL++'s hang timeout (`scripts/fuzz`).

pub mod alloc;
pub mod capture;
pub mod config;
pub mod edf;
pub mod event;
pub mod process;
pub mod raw_json;
pub mod raw_protobuf;
pub mod seeds;
pub mod snapshot;

use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

pub use alloc::Bound;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// A target: its name (that of its AFL++ binary, its corpus and its regressions folder) and
/// its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    ("raw_json", raw_json::check),
    ("raw_protobuf", raw_protobuf::check),
    ("capture", capture::check),
    ("edf", edf::check),
    ("snapshot", snapshot::check),
    ("process", process::check),
    ("config", config::check),
    ("event", event::check),
];

/// The check of the target named `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// One call measured by [`bounded`], kept while [`record_peaks`] is on.
#[derive(Debug, Clone)]
pub struct Peak {
    pub what: &'static str,
    pub input_len: usize,
    pub peak: usize,
    pub bound: usize,
}

static RECORDING: AtomicBool = AtomicBool::new(false);
static PEAKS: Mutex<Vec<Peak>> = Mutex::new(Vec::new());

/// Keeps what [`bounded`] measures from now on, for [`take_peaks`] (the replay tool uses it to
/// print and choose bounds).
pub fn record_peaks(on: bool) {
    RECORDING.store(on, Relaxed);
}

/// The calls measured since the last call.
pub fn take_peaks() -> Vec<Peak> {
    std::mem::take(&mut *PEAKS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `f`, the call `what` on `input`, and panics when it held more memory at once than
/// `bound` allows for `input`'s length.
pub fn bounded<R>(what: &'static str, input: &[u8], bound: Bound, f: impl FnOnce() -> R) -> R {
    let (out, measured) = alloc::measure(input.len(), bound, f);
    let limit = bound.bytes(input.len());
    if RECORDING.load(Relaxed) {
        PEAKS.lock().unwrap_or_else(|e| e.into_inner()).push(Peak {
            what,
            input_len: input.len(),
            peak: measured.peak,
            bound: limit,
        });
    }
    if measured.peak > limit {
        let trace = match alloc::take_trace() {
            Some(t) => format!("; where it crossed:\n{t}"),
            None => " (FUZZ_ALLOC_TRACE=1 shows where)".to_owned(),
        };
        panic!(
            "{what}: held {} bytes at once for {} bytes of input, over its bound of {} + {} × {} = {limit} bytes; first crossed by an allocation of {} bytes{trace}",
            measured.peak,
            input.len(),
            bound.base,
            bound.factor,
            input.len(),
            measured.crossed_by.unwrap_or(0),
        );
    }
    out
}

/// Errors are one line each, and short: they end up in log lines and exit messages.
pub fn one_line(what: &str, error: &impl Display) {
    let text = error.to_string();
    assert!(
        !text.contains(['\n', '\r']),
        "{what}: an error of several lines: {text:?}"
    );
    assert!(
        text.len() <= 2000,
        "{what}: an error of {} bytes: {text:.200}...",
        text.len()
    );
}

/// Two batches are the same: equal fields and samples equal bit for bit (so -0.0 is not 0.0).
pub fn same_batch(what: &str, a: &eeg_schema::RawBatch, b: &eeg_schema::RawBatch) {
    assert_eq!(a, b, "{what}: the batches differ");
    assert_eq!(
        a.sample_rate_hz.to_bits(),
        b.sample_rate_hz.to_bits(),
        "{what}: the sample rates differ in their bits"
    );
    let bits = |x: &eeg_schema::RawBatch| -> Vec<u64> {
        x.samples().iter().map(|v| v.to_bits()).collect()
    };
    assert!(
        bits(a) == bits(b),
        "{what}: the samples differ in their bits"
    );
}

/// An accepted batch's canonical JSON and its float64 protobuf encoding both decode back to
/// it, bit for bit. An encoding is at most a few times longer than what was read (`1` becomes
/// `1.0`); past the message limit it would rightly be refused, so it is not checked.
pub(crate) fn round_trips(batch: &eeg_schema::RawBatch, limits: &eeg_schema::Limits) {
    let text = batch.encode();
    if text.len() <= limits.max_message_bytes {
        let back = eeg_schema::decode_raw(&text, limits)
            .unwrap_or_else(|e| panic!("the canonical JSON of a batch is refused: {e}"));
        same_batch("a batch and its canonical JSON decoded", batch, &back);
    }
    let mut binary = Vec::new();
    batch.encode_protobuf(&mut binary);
    if binary.len() <= limits.max_message_bytes {
        let back = eeg_schema::decode_raw_protobuf(&binary, limits)
            .unwrap_or_else(|e| panic!("the protobuf encoding of a batch is refused: {e}"));
        same_batch("a batch and its protobuf encoding decoded", batch, &back);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the counters are the whole process's.
    #[test]
    fn the_allocator_counts_what_a_call_holds_and_a_bound_bites() {
        let input = [0u8; 1000];
        let bound = Bound {
            base: 1 << 20,
            factor: 2,
        };
        let (v, m) = alloc::measure(input.len(), bound, || vec![1u8; 1 << 20]);
        assert!(m.peak >= 1 << 20 && m.peak < (1 << 20) + 4096, "{m:?}");
        assert_eq!(m.crossed_by, None);
        // Freed memory is no longer held; what is grown in place counts by its growth.
        drop(v);
        let (_, m) = alloc::measure(input.len(), bound, || {
            let mut v = Vec::<u8>::with_capacity(1000);
            v.resize(100_000, 0);
            v.shrink_to_fit();
            v.len()
        });
        assert!((100_000..110_000).contains(&m.peak), "{m:?}");

        let over = std::panic::catch_unwind(|| {
            bounded("two megabytes", &input, bound, || vec![0u8; 2 << 20].len())
        });
        let message = *over.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.starts_with("two megabytes: held 2097152 bytes at once for 1000 bytes of input, over its bound of 1048576 + 2 × 1000 = 1050576 bytes; first crossed by an allocation of 2097152 bytes"),
            "{message}"
        );
    }
}
