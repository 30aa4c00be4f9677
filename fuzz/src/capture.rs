//! `capture`: a capture of binary `eeg.raw/1` (length-delimited messages) read by
//! `DelimitedReader` to its end or its first error, every message decoded as `process` does.
//!
//! Checks: messages come with consecutive indices and the offsets of their prefixes; a
//! capture read to its end was read whole; errors are one line.

use eeg_schema::{DelimitedReader, Limits, decode_raw_protobuf};

use crate::{Bound, bounded, one_line};

/// The reader keeps one message in a buffer of its own (at most the input's length: it reads
/// through `Read::take`, growing the buffer as bytes arrive, never by the announced length),
/// and one decoded batch is held at a time (the `raw_protobuf` bound). Measured: 6.1 bytes
/// a byte for one message of 30,000 digital samples (its bytes once more and its batch),
/// 1.1 for four messages of 1024 channels, at most 4.2 KiB for small captures. 12 a byte
/// over 64 KiB.
pub const BOUND: Bound = Bound {
    base: 64 << 10,
    factor: 12,
};

pub fn check(data: &[u8]) {
    let limits = Limits::default();
    bounded("DelimitedReader", data, BOUND, || read(data, &limits));
}

fn read(data: &[u8], limits: &Limits) {
    let mut reader = DelimitedReader::new(data, limits.max_message_bytes);
    let mut index = 0;
    let mut offset = 0;
    loop {
        match reader.next_message() {
            Ok(Some(m)) => {
                index += 1;
                assert_eq!(m.index, index, "message indices are consecutive");
                assert_eq!(m.offset, offset, "message {index}: its offset");
                if let Err(e) = decode_raw_protobuf(m.bytes, limits) {
                    one_line("decode_raw_protobuf", &e);
                }
                offset = reader.position();
                assert!(offset <= data.len() as u64, "read past the end");
            }
            Ok(None) => {
                assert_eq!(
                    reader.position(),
                    data.len() as u64,
                    "the capture ended before its last byte"
                );
                return;
            }
            Err(e) => {
                one_line("DelimitedReader", &e);
                return;
            }
        }
    }
}
