//! Captures of binary `eeg.raw/1`: a file of length-delimited messages, each a varint byte
//! count followed by that many bytes of a `RawBatch`. This is the usual way to store a stream
//! of protobuf messages (Java's `writeDelimitedTo`/`parseDelimitedFrom`, C++'s
//! `SerializeDelimitedToOstream`, prost's `encode_length_delimited`), so any protobuf library
//! reads and writes it.

use std::io::{self, BufRead, Read as _, Write};

/// A capture that cannot be read, with the byte offset of the message it stopped at.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("message {index} at byte {offset}: cannot read: {source}")]
    Io {
        index: u64,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "message {index} at byte {offset}: the length prefix is not a varint of at most 32 bits (not a length-delimited protobuf capture?)"
    )]
    BadLength { index: u64, offset: u64 },
    #[error(
        "message {index} at byte {offset}: {length} bytes announced, more than the {limit}-byte limit of a message"
    )]
    TooLong {
        index: u64,
        offset: u64,
        length: u64,
        limit: usize,
    },
    #[error(
        "message {index} at byte {offset}: truncated: {length} bytes announced, {present} present"
    )]
    Truncated {
        index: u64,
        offset: u64,
        length: u64,
        present: u64,
    },
}

/// Reads the messages of a capture one by one into a buffer of its own.
#[derive(Debug)]
pub struct DelimitedReader<R> {
    inner: R,
    limit: usize,
    /// Where the next message's length prefix starts.
    offset: u64,
    /// Messages read so far.
    index: u64,
    buf: Vec<u8>,
}

/// A message of a capture.
#[derive(Debug, Clone, Copy)]
pub struct Delimited<'a> {
    /// Counts the capture's messages from 1.
    pub index: u64,
    /// Byte offset of the message's length prefix in the capture.
    pub offset: u64,
    /// The message, without its prefix.
    pub bytes: &'a [u8],
}

impl<R: BufRead> DelimitedReader<R> {
    /// Reads messages of up to `limit` bytes (a longer one is an error, not an allocation).
    pub fn new(inner: R, limit: usize) -> DelimitedReader<R> {
        DelimitedReader {
            inner,
            limit,
            offset: 0,
            index: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes of the capture read so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The next message, or `None` at the end of the capture (which must fall between two
    /// messages).
    pub fn next_message(&mut self) -> Result<Option<Delimited<'_>>, CaptureError> {
        let index = self.index + 1;
        let offset = self.offset;
        let io = |source| CaptureError::Io {
            index,
            offset,
            source,
        };
        let mut length = 0u64;
        let mut prefix = 0u32;
        loop {
            let byte = match self.inner.fill_buf().map_err(io)? {
                [] if prefix == 0 => return Ok(None),
                [] => {
                    return Err(CaptureError::Truncated {
                        index,
                        offset,
                        length,
                        present: 0,
                    });
                }
                [b, ..] => *b,
            };
            self.inner.consume(1);
            length |= u64::from(byte & 0x7f) << (7 * prefix);
            prefix += 1;
            if byte & 0x80 == 0 {
                break;
            }
            // Five bytes carry 35 bits, enough for any length a message may have.
            if prefix == 5 {
                return Err(CaptureError::BadLength { index, offset });
            }
        }
        if length > self.limit as u64 {
            return Err(CaptureError::TooLong {
                index,
                offset,
                length,
                limit: self.limit,
            });
        }
        self.buf.clear();
        let present = (&mut self.inner)
            .take(length)
            .read_to_end(&mut self.buf)
            .map_err(io)? as u64;
        if present < length {
            return Err(CaptureError::Truncated {
                index,
                offset,
                length,
                present,
            });
        }
        self.index = index;
        self.offset += u64::from(prefix) + length;
        Ok(Some(Delimited {
            index,
            offset,
            bytes: &self.buf,
        }))
    }
}

/// Writes `message` with its length prefix.
pub fn write_delimited(message: &[u8], out: &mut impl Write) -> io::Result<()> {
    let mut prefix = Vec::with_capacity(5);
    prost::encoding::encode_varint(message.len() as u64, &mut prefix);
    out.write_all(&prefix)?;
    out.write_all(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            write_delimited(m, &mut out).unwrap();
        }
        out
    }

    fn read_all(bytes: &[u8], limit: usize) -> Result<Vec<(u64, u64, Vec<u8>)>, CaptureError> {
        let mut r = DelimitedReader::new(bytes, limit);
        let mut out = Vec::new();
        while let Some(m) = r.next_message()? {
            out.push((m.index, m.offset, m.bytes.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn messages_come_back_with_their_index_and_offset() {
        let long = vec![7u8; 300]; // a two-byte prefix
        let bytes = capture(&[b"abc", &long, b""]);
        assert_eq!(&bytes[..4], &[3, b'a', b'b', b'c']);
        assert_eq!(&bytes[4..6], &[0xac, 0x02]);
        let got = read_all(&bytes, 1000).unwrap();
        assert_eq!(
            got,
            vec![
                (1, 0, b"abc".to_vec()),
                (2, 4, long.clone()),
                (3, 306, Vec::new())
            ]
        );
        assert!(read_all(&[], 1000).unwrap().is_empty());
    }

    #[test]
    fn broken_captures_name_the_message_and_its_offset() {
        let bytes = capture(&[b"abc", b"defgh"]);
        let cut = read_all(&bytes[..bytes.len() - 2], 1000).unwrap_err();
        assert_eq!(
            cut.to_string(),
            "message 2 at byte 4: truncated: 5 bytes announced, 3 present"
        );
        let cut_prefix = read_all(&[3, b'a', b'b', b'c', 0x80], 1000).unwrap_err();
        assert_eq!(
            cut_prefix.to_string(),
            "message 2 at byte 4: truncated: 0 bytes announced, 0 present"
        );
        let too_long = read_all(&bytes, 4).unwrap_err();
        assert_eq!(
            too_long.to_string(),
            "message 2 at byte 4: 5 bytes announced, more than the 4-byte limit of a message"
        );
        let endless = read_all(&[0xff; 8], 1000).unwrap_err();
        assert!(
            endless
                .to_string()
                .starts_with("message 1 at byte 0: the length prefix is not a varint")
        );
    }
}
