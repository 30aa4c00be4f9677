//! `raw_protobuf`: one binary `eeg.raw/1` message (`eeg.raw.v1.RawBatch`) through
//! `decode_raw_protobuf`.
//!
//! Checks: errors are one line; an accepted batch encodes back (float64 protobuf, and
//! canonical JSON) to messages that decode to the same batch, bit for bit.

use eeg_schema::{Limits, decode_raw_protobuf};

use crate::{Bound, bounded, one_line, round_trips};

/// The decoder turns the message into one batch: samples as f64 (8 bytes) from digital values
/// of 2 bytes, so 4 bytes a byte, up to twice that while a vector grows; every channel name
/// becomes a `String` (24 bytes and the name) from 3 bytes of message (tag, length, one
/// character), at most 1024 of them (the channel limit). Measured on the seeds, the corpus of
/// a 5-minute run and messages made to be worst: 5.0 bytes a byte for 30,000 2-byte digital
/// samples, 3.1 for float32, 2.9 for 1024 channels, at most 2.2 KiB for small messages. 12
/// a byte over 64 KiB, as for JSON.
pub const BOUND: Bound = Bound {
    base: 64 << 10,
    factor: 12,
};

pub fn check(data: &[u8]) {
    let limits = Limits::default();
    let batch = match bounded("decode_raw_protobuf", data, BOUND, || {
        decode_raw_protobuf(data, &limits)
    }) {
        Ok(b) => b,
        Err(e) => {
            one_line("decode_raw_protobuf", &e);
            return;
        }
    };
    round_trips(&batch, &limits);
}
