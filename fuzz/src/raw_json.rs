//! `raw_json`: one `eeg.raw/1` JSON message through `decode_raw` (the one-pass scanner, with
//! serde's decoder behind it) and through `decode_raw_reference` (serde's decoder alone).
//!
//! Checks: the two give the same batch, bit for bit, or the same error; the scanner alone
//! never accepts what serde's decoder rejects, nor reads it differently; errors are one line;
//! an accepted batch's canonical JSON and its protobuf encoding decode back to it.

use eeg_schema::{Limits, decode_raw, decode_raw_fast, decode_raw_reference};

use crate::{Bound, bounded, one_line, round_trips, same_batch};

/// Each decoder turns the message into one batch: samples as f64 (8 bytes) from numbers of
/// at least 2 bytes with their separator (`0,`), so 4 bytes a byte, up to twice that while a
/// vector grows by doubling; channel names as `String`s (24 bytes and the name) from at least
/// 4 bytes (`"a",`). Measured (`scripts/fuzz replay`) on the seeds, the corpus of a 5-minute
/// run and 64 KiB messages made to be worst: 4.0 bytes a byte for one-digit samples (4.1 by
/// serde's decoder, which reads rows into vectors of their own), 5.1 for 1024 channels of
/// one sample with two-character names, at most 8.4 KiB for the smallest messages. 12 bytes
/// a byte over 64 KiB leaves room for a vector grown at the worst moment, and fails on
/// anything sized by what a message declares rather than what it holds.
pub const BOUND: Bound = Bound {
    base: 64 << 10,
    factor: 12,
};

pub fn check(data: &[u8]) {
    let limits = Limits::default();
    let got = bounded("decode_raw", data, BOUND, || decode_raw(data, &limits));
    let reference = bounded("decode_raw_reference", data, BOUND, || {
        decode_raw_reference(data, &limits)
    });
    if let Some(fast) = bounded("decode_raw_fast", data, BOUND, || {
        decode_raw_fast(data, &limits)
    }) {
        match &reference {
            Ok(r) => same_batch("the scanner and serde's decoder", &fast, r),
            Err(e) => panic!("the scanner accepted a message serde's decoder rejects: {e}"),
        }
    }
    let batch = match (got, reference) {
        (Ok(g), Ok(r)) => {
            same_batch("decode_raw and decode_raw_reference", &g, &r);
            g
        }
        (Err(g), Err(r)) => {
            assert_eq!(
                g.to_string(),
                r.to_string(),
                "decode_raw and decode_raw_reference give different errors"
            );
            one_line("decode_raw", &g);
            return;
        }
        (g, r) => panic!("decode_raw gave {g:?}, decode_raw_reference {r:?}"),
    };
    round_trips(&batch, &limits);
}
