//! Processed records as JSON lines.

use eeg_dsp::Window;
pub use eeg_schema::SessionMeta;
use eeg_schema::{ProcessedRecord, encode_processed};

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
