//! What is written for each window: the [`Encode`] trait every output format implements,
//! and `eeg.processed/1` JSON lines ([`Jsonl`]); the tables are in [`crate::table`].

use eeg_dsp::Window;
use eeg_schema::SessionMeta;
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

impl std::fmt::Debug for Jsonl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jsonl")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{meta, window};
    use std::sync::Mutex;

    /// A `Write` whose writes the test can count and read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_window_is_one_line_and_each_batch_one_write() {
        let out = Shared::default();
        let mut jsonl = Box::new(Jsonl::new(Box::new(out.clone())));
        let meta = Arc::new(meta(2));
        jsonl.window(&meta, &window(0, 2).view()).unwrap();
        jsonl.window(&meta, &window(1, 2).view()).unwrap();
        assert!(
            out.0.lock().unwrap().is_empty(),
            "nothing before the batch ends"
        );
        jsonl.end_batch().unwrap();
        jsonl.window(&meta, &window(2, 2).view()).unwrap();
        jsonl.finish().unwrap();
        let writes = out.0.lock().unwrap().clone();
        assert_eq!(writes.len(), 2);
        let text = String::from_utf8(writes.concat()).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        for (i, rec) in lines.iter().enumerate() {
            assert_eq!(rec["schema"], "eeg.processed/1");
            assert_eq!(rec["session_id"], "s");
            assert_eq!(rec["window_index"], i as u64);
            assert_eq!(rec["start_ms"], 1_000_000 + 1000 * i as u64);
            assert_eq!(rec["end_ms"], 1_004_000 + 1000 * i as u64);
            // Channel C1 (the testing window): powers 2..6, total 20.
            let c1 = &rec["channels"][1];
            assert_eq!(c1["name"], "C1");
            assert_eq!(c1["band_power"]["alpha"], 4.0);
            assert_eq!(c1["total_power"], 20.0);
            assert_eq!(c1["relative_power"]["gamma"], 6.0 / 20.0);
            assert_eq!(c1["quality"]["good"], true);
        }
    }
}
