//! Session admission: one [`SessionProcessor`] per `session_id`, fed in `seq` order.
//!
//! The same table serves the offline `process` command (raw JSONL files) and the Kafka
//! service, so a session replayed from a file and the same session consumed from a topic
//! produce the same records. Duplicates (a `seq` already processed) are dropped; a gap in
//! `seq` or a change of sample rate or channels resets the session's signal state.

use std::collections::HashMap;
use std::sync::Arc;

use eeg_dsp::{ConfigError, ProcessingConfig, SessionProcessor};
use eeg_schema::{RawBatch, SessionMeta};

/// What [`Sessions::admit`] decided about a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// First batch of a session not in the table.
    New,
    /// The next batch of a known session, in order.
    Continues,
    /// A `seq` already processed; the batch must be dropped.
    Duplicate,
    /// The session's state was reset before this batch; its next records are `settling`.
    Reset(ResetReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetReason {
    /// Batches between `expected` and `got` never arrived.
    SeqGap { expected: u64, got: u64 },
    /// The sample rate or the channel list changed.
    ShapeChanged,
}

impl std::fmt::Display for ResetReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetReason::SeqGap { expected, got } => {
                write!(f, "jumps from seq {} to {got}", expected.saturating_sub(1))
            }
            ResetReason::ShapeChanged => f.write_str("sample rate or channel list changed"),
        }
    }
}

/// One session's state. `T` is what the caller keeps beside it (a summary offline, counters
/// or trigger state in the service).
#[derive(Debug)]
pub struct Session<T> {
    pub processor: SessionProcessor,
    /// Identity written into every record of the session.
    pub meta: Arc<SessionMeta>,
    /// The `seq` expected next.
    pub next_seq: u64,
    /// Caller's clock reading of the last admitted batch, for idle eviction.
    pub last_seen: i64,
    pub extra: T,
}

/// Sessions by id, in first-seen order for reporting.
#[derive(Debug)]
pub struct Sessions<T> {
    config: ProcessingConfig,
    map: HashMap<String, Session<T>>,
}

/// The session a batch starts: the processor's configuration problem (e.g. a band above
/// the batch's Nyquist frequency) names the session.
#[derive(Debug, thiserror::Error)]
#[error("session '{session_id}': {source}")]
pub struct StartError {
    pub session_id: String,
    #[source]
    pub source: ConfigError,
}

fn meta_of(b: &RawBatch) -> Arc<SessionMeta> {
    Arc::new(SessionMeta {
        session_id: b.session_id.clone(),
        device_id: b.device_id.clone(),
        user_id: b.user_id.clone(),
        sample_rate_hz: b.sample_rate_hz,
        channels: b.channels.clone(),
    })
}

impl<T> Sessions<T> {
    pub fn new(config: ProcessingConfig) -> Sessions<T> {
        Sessions {
            config,
            map: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ProcessingConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, session_id: &str) -> Option<&Session<T>> {
        self.map.get(session_id)
    }

    pub fn get_mut(&mut self, session_id: &str) -> Option<&mut Session<T>> {
        self.map.get_mut(session_id)
    }

    pub fn remove(&mut self, session_id: &str) -> Option<Session<T>> {
        self.map.remove(session_id)
    }

    /// Adds a session restored from a snapshot (replacing one of the same id).
    pub fn insert(&mut self, session_id: String, session: Session<T>) {
        self.map.insert(session_id, session);
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Session<T>)> {
        self.map.iter_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Session<T>)> {
        self.map.iter()
    }

    fn start(&self, b: &RawBatch) -> Result<SessionProcessor, StartError> {
        SessionProcessor::new(&self.config, b.sample_rate_hz, b.channels.len(), b.start_ms).map_err(
            |source| StartError {
                session_id: b.session_id.clone(),
                source,
            },
        )
    }

    /// What [`Sessions::admit`] will decide about `batch`, changing nothing.
    pub fn admission(&self, batch: &RawBatch) -> Admission {
        match self.map.get(&batch.session_id) {
            None => Admission::New,
            Some(s) if batch.seq < s.next_seq => Admission::Duplicate,
            Some(s)
                if s.meta.sample_rate_hz != batch.sample_rate_hz
                    || s.meta.channels != batch.channels =>
            {
                Admission::Reset(ResetReason::ShapeChanged)
            }
            Some(s) if batch.seq > s.next_seq => Admission::Reset(ResetReason::SeqGap {
                expected: s.next_seq,
                got: batch.seq,
            }),
            Some(_) => Admission::Continues,
        }
    }

    /// Decides what to do with `batch` and brings its session's state in line: creates the
    /// session, or resets it after a `seq` gap or a change of shape. A duplicate leaves the
    /// state untouched. On success the session is ready to take the batch's samples and
    /// `next_seq` already counts it.
    pub fn admit(
        &mut self,
        batch: &RawBatch,
        now: i64,
        extra: impl FnOnce(&RawBatch) -> T,
    ) -> Result<(Admission, Option<&mut Session<T>>), StartError> {
        let admission = self.admission(batch);
        match admission {
            Admission::Duplicate => return Ok((admission, None)),
            Admission::New => {
                let processor = self.start(batch)?;
                self.map.insert(
                    batch.session_id.clone(),
                    Session {
                        processor,
                        meta: meta_of(batch),
                        next_seq: batch.seq,
                        last_seen: now,
                        extra: extra(batch),
                    },
                );
            }
            Admission::Reset(ResetReason::ShapeChanged) => {
                let processor = self.start(batch)?;
                let s = self.map.get_mut(&batch.session_id).expect("present");
                let next = s.processor.windows_emitted();
                s.processor = processor;
                s.processor.continue_numbering(next);
                s.meta = meta_of(batch);
            }
            Admission::Reset(ResetReason::SeqGap { .. }) => {
                let s = self.map.get_mut(&batch.session_id).expect("present");
                s.processor.reset(batch.start_ms);
            }
            Admission::Continues => {}
        }
        let s = self.map.get_mut(&batch.session_id).expect("present");
        s.next_seq = batch.seq + 1;
        s.last_seen = now;
        Ok((admission, Some(s)))
    }

    /// Removes and returns the sessions last seen before `cutoff`.
    pub fn evict_idle(&mut self, cutoff: i64) -> Vec<(String, Session<T>)> {
        let idle: Vec<String> = self
            .map
            .iter()
            .filter(|(_, s)| s.last_seen < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        idle.into_iter()
            .filter_map(|k| self.map.remove_entry(&k))
            .collect()
    }

    /// Removes every session, e.g. when their partition is revoked.
    pub fn drain(&mut self) -> impl Iterator<Item = (String, Session<T>)> + '_ {
        self.map.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(session: &str, seq: u64, fs: f64, channels: &[&str]) -> RawBatch {
        let n = 32;
        let rows: Vec<Vec<f64>> = channels
            .iter()
            .enumerate()
            .map(|(c, _)| (0..n).map(|i| (i + c) as f64).collect())
            .collect();
        let json = serde_json::json!({
            "schema": "eeg.raw/1", "session_id": session, "device_id": "d", "seq": seq,
            "start_ms": 1_000 + seq as i64 * 125, "sample_rate_hz": fs,
            "channels": channels, "samples": rows,
        });
        eeg_schema::decode_raw(json.to_string().as_bytes(), &eeg_schema::Limits::default()).unwrap()
    }

    #[test]
    fn admission_follows_seq_and_shape() {
        let mut t: Sessions<()> = Sessions::new(ProcessingConfig::default());
        let a = ["A", "B"];
        let adm = |t: &mut Sessions<()>, b: &RawBatch| t.admit(b, 0, |_| ()).unwrap().0;
        assert_eq!(adm(&mut t, &batch("s", 0, 256.0, &a)), Admission::New);
        assert_eq!(adm(&mut t, &batch("s", 1, 256.0, &a)), Admission::Continues);
        assert_eq!(adm(&mut t, &batch("s", 1, 256.0, &a)), Admission::Duplicate);
        assert_eq!(adm(&mut t, &batch("s", 0, 256.0, &a)), Admission::Duplicate);
        assert_eq!(
            adm(&mut t, &batch("s", 5, 256.0, &a)),
            Admission::Reset(ResetReason::SeqGap {
                expected: 2,
                got: 5
            })
        );
        assert_eq!(
            adm(&mut t, &batch("s", 6, 250.0, &a)),
            Admission::Reset(ResetReason::ShapeChanged)
        );
        assert_eq!(
            adm(&mut t, &batch("s", 7, 250.0, &["A"])),
            Admission::Reset(ResetReason::ShapeChanged)
        );
        assert_eq!(
            adm(&mut t, &batch("s", 8, 250.0, &["A"])),
            Admission::Continues
        );
        assert_eq!(t.get("s").unwrap().next_seq, 9);
        assert_eq!(
            adm(&mut t, &batch("other", 3, 250.0, &["A"])),
            Admission::New
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_session_whose_rate_cannot_be_processed_is_named() {
        let mut t: Sessions<()> = Sessions::new(ProcessingConfig::default());
        // 60 Hz cannot hold the default 1-45 Hz band-pass.
        let err = t
            .admit(&batch("low", 0, 60.0, &["A"]), 0, |_| ())
            .unwrap_err();
        assert!(err.to_string().starts_with("session 'low': "), "{err}");
        assert!(t.is_empty());
    }

    #[test]
    fn idle_sessions_are_evicted_by_last_seen() {
        let mut t: Sessions<u32> = Sessions::new(ProcessingConfig::default());
        t.admit(&batch("old", 0, 256.0, &["A"]), 10, |_| 1).unwrap();
        t.admit(&batch("new", 0, 256.0, &["A"]), 20, |_| 2).unwrap();
        t.admit(&batch("old", 1, 256.0, &["A"]), 15, |_| 3).unwrap();
        let gone = t.evict_idle(16);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, "old");
        assert_eq!(gone[0].1.extra, 1, "extra is built once, at first sight");
        assert!(t.get("new").is_some());
    }
}
