//! What `process` writes for each window: `eeg.processed/1` JSON lines, or a long table
//! ([`crate::table`]) as CSV or Parquet.

use eeg_dsp::Window;
pub use eeg_schema::SessionMeta;
use eeg_schema::{ProcessedRecord, encode_processed};
use std::io::{self, Write};
use std::sync::Arc;

/// Appends the `eeg.processed/1` JSON of one window (no newline) to `buf`.
pub fn encode_window(meta: &SessionMeta, window: &Window<'_>, buf: &mut Vec<u8>) {
    encode_processed(&ProcessedRecord { meta, window }, buf);
}

/// A session's identity for its records.
pub fn session_meta(
    session_id: &str,
    device_id: &str,
    user_id: Option<&str>,
    sample_rate_hz: f64,
    channels: Vec<String>,
) -> SessionMeta {
    SessionMeta {
        session_id: session_id.to_string(),
        device_id: device_id.to_string(),
        user_id: user_id.map(str::to_string),
        sample_rate_hz,
        channels,
    }
}

/// An output format's writer, driven by the output thread: the windows of a batch one by
/// one, then [`Encode::end_batch`] once the batch has been handed back for reuse.
pub trait Encode: Send {
    fn window(&mut self, meta: &Arc<SessionMeta>, window: &Window<'_>) -> io::Result<()>;
    fn end_batch(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Writes what is still buffered (and, for Parquet, the footer) and flushes.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// `eeg.processed/1` records, one per line.
pub struct Jsonl {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

impl Jsonl {
    pub fn new(out: Box<dyn Write + Send>) -> Jsonl {
        Jsonl {
            out,
            buf: Vec::with_capacity(1 << 16),
        }
    }
}

impl Encode for Jsonl {
    fn window(&mut self, meta: &Arc<SessionMeta>, window: &Window<'_>) -> io::Result<()> {
        encode_window(meta, window, &mut self.buf);
        self.buf.push(b'\n');
        Ok(())
    }

    /// One write per batch: a batch of large records goes past the buffer of `out` instead
    /// of being copied into it.
    fn end_batch(&mut self) -> io::Result<()> {
        let result = self.out.write_all(&self.buf);
        self.buf.clear();
        result
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.end_batch()?;
        self.out.flush()
    }
}
