//! Shared by the property tests of the decoders: valid batches to encode, byte-level
//! mutations of valid messages, and the bits of a batch's samples.

// Each test file uses its own share of these.
#![allow(dead_code)]

use eeg_schema::{Limits, RawBatch, RawBatchParts};
use proptest::prelude::*;

/// The samples' bits: equal batches to the bit (`PartialEq` on f64 equates 0.0 and -0.0).
pub fn bits(b: &RawBatch) -> Vec<u64> {
    b.samples().iter().map(|v| v.to_bits()).collect()
}

/// Finite values, with zeros of both signs and the smallest normal and subnormal.
pub fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        -1e3f64..1e3,
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
    ]
}

/// Printable text including quotes, backslashes and non-ASCII, 1..=256 bytes.
pub fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _\\-\"\\\\/é€😀]{1,60}"
}

prop_compose! {
    /// A valid batch: 1 to 5 channels of 1 to 39 finite samples, any header within the limits.
    pub fn batch()(
        n_ch in 1usize..6,
        per in 1usize..40,
        seq in any::<u64>(),
        start_ms in 0i64..=i64::MAX,
        rate in prop_oneof![1e-3f64..100_000.0, Just(100_000.0), Just(250.0)],
        session_id in id(),
        device_id in id(),
        user_id in prop::option::of(id()),
    )(
        samples in prop::collection::vec(finite(), n_ch * per),
        channels in Just((0..n_ch).map(|c| format!("ch\"{c}\\é")).collect::<Vec<_>>()),
        seq in Just(seq), start_ms in Just(start_ms), rate in Just(rate),
        session_id in Just(session_id), device_id in Just(device_id), user_id in Just(user_id),
    ) -> RawBatch {
        RawBatch::new(
            RawBatchParts { session_id, device_id, user_id, seq, start_ms, sample_rate_hz: rate, channels, samples },
            &Limits::default(),
        )
        .expect("generated batches are valid")
    }
}

/// A byte-level mutation.
#[derive(Debug, Clone)]
pub enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

/// Bytes that make mutations hit the grammar: structure, quotes, digits, escapes.
pub fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        prop::sample::select(
            b"{}[],:\"\\0123456789.eE+-nul tfaVu\n\x00\x1f\x7f\xc3\xa9\xff".to_vec()
        ),
    ]
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Edit::Set(i, b)),
        3 => (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => any::<usize>().prop_map(Edit::Remove),
        1 => (any::<usize>(), 1usize..40).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

pub fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    let len = bytes.len().max(1);
    match *e {
        Edit::Set(i, b) => {
            if !bytes.is_empty() {
                bytes[i % len] = b;
            }
        }
        Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
        Edit::Remove(i) => {
            if !bytes.is_empty() {
                bytes.remove(i % len);
            }
        }
        Edit::Duplicate(i, n) => {
            let start = (i % len).min(bytes.len());
            let end = (start + n).min(bytes.len());
            let piece = bytes[start..end].to_vec();
            bytes.splice(end..end, piece);
        }
        Edit::Truncate(i) => bytes.truncate(i % len),
    }
}

/// The descriptors of `proto/<file>`, compiled from the contract file itself, as a
/// producer in another language would build its messages.
pub fn proto_pool(file: &str) -> protox::prost_reflect::DescriptorPool {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let mut compiler = protox::Compiler::new([dir]).expect("proto dir");
    compiler.open_file(file).expect("the .proto compiles");
    compiler.descriptor_pool()
}

/// `text`, the crate's copy of a contract, is `proto/<file>` and declares `package`.
pub fn assert_contract_file(file: &str, text: &str, package: &str) {
    let path = format!("{}/proto/{file}", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(text, std::fs::read_to_string(path).unwrap());
    assert!(text.contains(&format!("package {package};")));
}
