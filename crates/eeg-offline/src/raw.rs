//! Raw messages in: `eeg.raw/1` JSON lines or a capture of binary `eeg.raw/1`, read one
//! message at a time ([`RawMessages`]) and admitted into the session core's sessions, each
//! message's windows fanned out to the outputs.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, Read as _};
use std::sync::Arc;

use eeg_schema::{Event, Limits, RawBatch, RawMessage};
use eeg_session::epochs::{SessionEpochs, Taken};
use eeg_session::{Admission, ResetReason, Sessions, TriggerState};

/// Events held for sessions whose first batch has not come, at most: an input of events
/// for a session that never sends samples must not fill memory.
const MAX_EARLY_EVENTS: usize = 65_536;

use crate::report::{Collector, InputMeta};
use crate::sink::{Epochs, Triggers, fan_out};
use crate::summary::Summary;
use crate::writer::Writer;
use crate::{Error, Options};

/// Where a raw message is in its input, for messages about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// A JSON line, counted from 1.
    Line(u64),
    /// A message of a capture, counted from 1, and the byte offset of its length prefix.
    Message { index: u64, offset: u64 },
}

impl At {
    /// The line's or message's number, counted from 1.
    pub fn index(self) -> u64 {
        match self {
            At::Line(n) => n,
            At::Message { index, .. } => index,
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Line(n) => write!(f, "line {n}"),
            At::Message { index, offset } => write!(f, "message {index} at byte {offset}"),
        }
    }
}

/// The raw messages of an input, decoded one by one; an error names the input (`name`) and
/// the line, or the message and its byte offset.
#[derive(Debug)]
pub struct RawMessages<R> {
    name: String,
    limits: Limits,
    source: Source<R>,
}

#[derive(Debug)]
enum Source<R> {
    Jsonl {
        reader: R,
        line: Vec<u8>,
        line_no: u64,
        position: u64,
    },
    Capture {
        reader: eeg_schema::DelimitedReader<R>,
        messages: u64,
    },
}

impl<R: BufRead> RawMessages<R> {
    /// `eeg.raw/1` JSON, one message per line; blank lines are skipped.
    pub fn jsonl(name: impl Into<String>, reader: R, limits: Limits) -> Self {
        RawMessages {
            name: name.into(),
            limits,
            source: Source::Jsonl {
                reader,
                line: Vec::new(),
                line_no: 0,
                position: 0,
            },
        }
    }

    /// A capture of binary `eeg.raw/1`: length-delimited messages.
    pub fn capture(name: impl Into<String>, reader: R, limits: Limits) -> Self {
        RawMessages {
            name: name.into(),
            source: Source::Capture {
                reader: eeg_schema::DelimitedReader::new(reader, limits.max_message_bytes),
                messages: 0,
            },
            limits,
        }
    }

    /// The input's name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_capture(&self) -> bool {
        matches!(self.source, Source::Capture { .. })
    }

    /// Bytes of the input read so far.
    pub fn position(&self) -> u64 {
        match &self.source {
            Source::Jsonl { position, .. } => *position,
            Source::Capture { reader, .. } => reader.position(),
        }
    }

    /// Lines read so far (blank ones too), or messages of a capture.
    pub fn count(&self) -> u64 {
        match &self.source {
            Source::Jsonl { line_no, .. } => *line_no,
            Source::Capture { messages, .. } => *messages,
        }
    }

    /// The next message (a batch or an event), decoded, and where it is; `None` at the end
    /// of the input.
    pub fn next_message(&mut self) -> Result<Option<(At, RawMessage)>, Error> {
        let (name, limits) = (&self.name, &self.limits);
        match &mut self.source {
            Source::Jsonl {
                reader,
                line,
                line_no,
                position,
            } => loop {
                line.clear();
                let n = reader
                    .take(limits.max_message_bytes as u64 + 2)
                    .read_until(b'\n', line)
                    .map_err(|e| {
                        Error::bad(format!("{name}: line {}: cannot read: {e}", *line_no + 1))
                    })?;
                if n == 0 {
                    return Ok(None);
                }
                *line_no += 1;
                *position += n as u64;
                if line.last() != Some(&b'\n') && n > limits.max_message_bytes {
                    return Err(Error::bad(format!(
                        "{name}: line {line_no}: longer than {} bytes",
                        limits.max_message_bytes
                    )));
                }
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                let at = At::Line(*line_no);
                return eeg_schema::decode_raw_message(text, None, limits)
                    .map(|m| Some((at, m)))
                    .map_err(|e| Error::bad(format!("{name}: {at}: {e}")));
            },
            Source::Capture { reader, messages } => {
                let Some(m) = reader
                    .next_message()
                    .map_err(|e| Error::bad(format!("{name}: {e}")))?
                else {
                    return Ok(None);
                };
                let at = At::Message {
                    index: m.index,
                    offset: m.offset,
                };
                // A capture keeps no content-type: an event is told by its schema.
                let message = if eeg_schema::is_event_protobuf(m.bytes) {
                    eeg_schema::decode_event_protobuf(m.bytes).map(RawMessage::Event)
                } else {
                    eeg_schema::decode_raw_protobuf(m.bytes, limits).map(RawMessage::Batch)
                };
                let message = message.map_err(|e| Error::bad(format!("{name}: {at}: {e}")))?;
                *messages = at.index();
                Ok(Some((at, message)))
            }
        }
    }
}

/// The batch with only the `wanted` channels, in that order; a channel it does not have is
/// an error naming it and the channels it has.
pub fn select_channels(
    batch: RawBatch,
    wanted: &[String],
    limits: &Limits,
) -> Result<RawBatch, Error> {
    let mut parts = batch.into_parts();
    let n = parts.samples.len() / parts.channels.len().max(1);
    let mut samples = Vec::with_capacity(n * wanted.len());
    for w in wanted {
        let Some(i) = parts.channels.iter().position(|c| c == w) else {
            return Err(Error::bad(format!(
                "--channels: session '{}' has no channel '{w}' (channels: {})",
                parts.session_id,
                parts.channels.join(", ")
            )));
        };
        samples.extend_from_slice(&parts.samples[i * n..(i + 1) * n]);
    }
    parts.channels = wanted.to_vec();
    parts.samples = samples;
    RawBatch::new(parts, limits).map_err(|e| Error::bad(e.to_string()))
}

/// Every message of `messages` through its session: admitted (duplicates skipped, a gap or
/// a change of shape restarting the session), processed, and its windows fanned out.
/// Returns the sessions' summaries in order of appearance, or none when the writer stopped
/// (its error explains why).
pub(crate) fn process_raw<R: BufRead>(
    options: &Options,
    mut messages: RawMessages<R>,
    writer: &mut Writer,
    mut triggers: Option<&mut Triggers>,
    mut report: Option<&mut Collector>,
    mut epochs: Option<&mut Epochs>,
    progress: &dyn Fn(u64),
) -> Result<Vec<Summary>, Error> {
    let config = &options.processing;
    let limits = messages.limits.clone();
    let name = messages.name.clone();
    let only = options.session_id.as_deref();
    // Other sessions' ids, to name a few when `session_id` matches none.
    let mut others: BTreeSet<String> = BTreeSet::new();
    let mut read = 0u64;

    /// What the raw path keeps beside each session.
    struct Kept {
        summary: Summary,
        triggers: TriggerState,
        /// Its events and epochs (with `--epochs`).
        epochs: Option<SessionEpochs>,
    }
    let mut sessions: Sessions<Kept> = Sessions::new(config.clone());
    let mut order: Vec<String> = Vec::new();
    let mut position = 0;
    // Events of sessions whose first batch has not come yet, and how many in all.
    let mut early: HashMap<String, Vec<Event>> = HashMap::new();
    let mut early_count = 0usize;
    let epoch_error = |e: std::io::Error| Error::output("writing epochs", e);
    while let Some((at, message)) = messages.next_message()? {
        progress(messages.position() - position);
        position = messages.position();
        read += 1;
        let batch = match message {
            RawMessage::Batch(b) => b,
            RawMessage::Event(e) => {
                // Events are the epochs' context: without epochs they change nothing.
                let Some(ep) = epochs.as_deref_mut() else {
                    continue;
                };
                if only.is_some_and(|id| e.session_id != id) {
                    continue;
                }
                match sessions.get_mut(&e.session_id) {
                    Some(s) => {
                        if let Some(se) = s.extra.epochs.as_mut()
                            && let Taken::Full(e) =
                                se.event(&s.meta, e, &mut ep.lines()).map_err(epoch_error)?
                        {
                            return Err(Error::bad(format!(
                                "{name}: {at}: {}",
                                se.full_reason(&e)
                            )));
                        }
                    }
                    None => {
                        early_count += 1;
                        if early_count > MAX_EARLY_EVENTS {
                            return Err(Error::bad(format!(
                                "{name}: {at}: more than {MAX_EARLY_EVENTS} events before their sessions' first batch"
                            )));
                        }
                        early.entry(e.session_id.clone()).or_default().push(e);
                    }
                }
                continue;
            }
        };
        if let Some(id) = only
            && batch.session_id != id
        {
            if others.len() < 10 {
                others.insert(batch.session_id.clone());
            }
            continue;
        }
        let batch = match options.channels.as_deref() {
            Some(wanted) => select_channels(batch, wanted, &limits)
                .map_err(|e| Error::bad(format!("{name}: {at}: {e}")))?,
            None => batch,
        };
        let (admission, session) = sessions
            .admit(&batch, at.index() as i64, |b| Kept {
                summary: Summary::new(
                    &b.session_id,
                    b.sample_rate_hz,
                    b.channels.len(),
                    &config.bands,
                ),
                triggers: TriggerState::default(),
                epochs: None,
            })
            .map_err(|e| Error::bad(format!("{name}: {at}: {e}")))?;
        let Some(session) = session else {
            if let Some(s) = sessions.get_mut(&batch.session_id) {
                s.extra.summary.duplicates += 1;
            }
            continue;
        };
        match admission {
            Admission::New => order.push(batch.session_id.clone()),
            Admission::Reset(ref reason) => {
                tracing::warn!(
                    "{name}: {at}: session '{}': {reason}; state reset",
                    batch.session_id
                );
                session.extra.summary.resets += 1;
                session.extra.triggers.reset();
                if let Some(r) = report.as_deref_mut() {
                    r.reset(&batch.session_id);
                }
            }
            _ => {}
        }
        if matches!(
            admission,
            Admission::New | Admission::Reset(ResetReason::ShapeChanged)
        ) {
            for w in &session.processor.plan().warnings {
                tracing::warn!("{name}: session '{}': {w}", batch.session_id);
            }
        }
        if let Some(ep) = epochs.as_deref_mut() {
            let meta = &session.meta;
            let start_ms = batch.start_ms as f64;
            // The events file counts onsets from the input's first sample.
            ep.origin_ms.get_or_insert(start_ms);
            // A new session, or a new shape, needs a new plan.
            let fresh = match admission {
                Admission::New | Admission::Reset(ResetReason::ShapeChanged) => Some(
                    ep.session(session.processor.plan(), batch.channels.len(), start_ms)
                        .map_err(|e| {
                            Error::bad(format!("{name}: {at}: session '{}': {e}", batch.session_id))
                        })?,
                ),
                _ => None,
            };
            // A restart ends the epochs waiting.
            if let (Admission::Reset(_), Some(se)) = (&admission, session.extra.epochs.as_mut()) {
                se.end(meta, Some(start_ms), &mut ep.lines())
                    .map_err(epoch_error)?;
            }
            if let Some(mut se) = fresh {
                if let Some(old) = session.extra.epochs.as_ref() {
                    ep.write_erp(meta, old).map_err(epoch_error)?;
                }
                let out = &mut ep.lines();
                for e in early.remove(&batch.session_id).unwrap_or_default() {
                    if let Taken::Full(e) = se.event(meta, e, out).map_err(epoch_error)? {
                        return Err(Error::bad(format!("{name}: {at}: {}", se.full_reason(&e))));
                    }
                }
                session.extra.epochs = Some(se);
            }
            let out = &mut ep.lines();
            if let Some(se) = session.extra.epochs.as_mut() {
                let n = batch.samples_per_channel() as u64;
                se.batch(meta, session.processor.samples_seen(), start_ms, n, out)
                    .map_err(epoch_error)?;
            }
        }
        let processor = &mut session.processor;
        let meta: &Arc<eeg_schema::SessionMeta> = &session.meta;
        let pushed = fan_out(
            meta,
            &mut session.extra.triggers,
            &mut session.extra.summary,
            writer,
            triggers.as_deref_mut(),
            report.as_deref_mut(),
            session.extra.epochs.as_mut().zip(epochs.as_deref_mut()),
            |sink| {
                processor
                    .push_channel_major(batch.samples(), batch.samples_per_channel(), sink)
                    .map_err(|e| Error::bad(format!("{name}: {at}: {e}")))
            },
        )?;
        if !pushed {
            return Ok(Vec::new());
        }
    }
    if read == 0 {
        return Err(Error::bad(format!(
            "{name}: empty input, no eeg.raw/1 message"
        )));
    }
    if let Some(ep) = epochs {
        let out = &mut ep.lines();
        for id in &order {
            if let Some(s) = sessions.get_mut(id)
                && let Some(se) = s.extra.epochs.as_mut()
            {
                se.end(&s.meta, None, out).map_err(epoch_error)?;
            }
        }
        for id in &order {
            if let Some(s) = sessions.get(id)
                && let Some(se) = s.extra.epochs.as_ref()
            {
                ep.write_erp(&s.meta, se).map_err(epoch_error)?;
            }
        }
        if !early.is_empty() {
            let ids: Vec<&str> = early.keys().map(String::as_str).take(10).collect();
            tracing::warn!(
                "{name}: {} events of sessions that sent no batch (no epoch): {}",
                early.values().map(Vec::len).sum::<usize>(),
                ids.join(", ")
            );
        }
    }
    if let Some(r) = report {
        r.set_input(if messages.is_capture() {
            InputMeta::messages(&name, "binary eeg.raw/1, length-delimited", read)
        } else {
            InputMeta::jsonl(&name, "eeg.raw/1 JSONL", messages.count())
        });
    }
    if let Some(id) = only
        && order.is_empty()
    {
        let seen: Vec<String> = others.into_iter().collect();
        return Err(Error::bad(format!(
            "{name}: --session-id: no message of session '{id}' (sessions in the input: {})",
            seen.join(", ")
        )));
    }
    Ok(order
        .into_iter()
        .filter_map(|id| sessions.remove(&id).map(|s| s.extra.summary))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    impl<R: BufRead> RawMessages<R> {
        /// The next message, which must be a batch.
        fn next_batch(&mut self) -> Result<Option<(At, RawBatch)>, Error> {
            Ok(self.next_message()?.map(|(at, m)| match m {
                RawMessage::Batch(b) => (at, b),
                RawMessage::Event(e) => panic!("{at}: an event, not a batch: {e:?}"),
            }))
        }
    }

    #[test]
    fn events_are_told_from_batches_in_json_lines_and_in_captures() {
        let event = Event {
            session_id: "s".into(),
            event_id: "e1".into(),
            onset: eeg_schema::Onset::UnixMs(1_000.5),
            duration_s: 0.0,
            label: "target".into(),
            value: Some(3),
            source: "app".into(),
        };
        let batch = r#"{"schema":"eeg.raw/1","session_id":"s","device_id":"d","seq":0,"start_ms":1000,"sample_rate_hz":250.0,"channels":["C3"],"samples":[[1.0,2.0]]}"#;
        let text = format!("{batch}\n{}\n", event.to_json());
        let mut m = RawMessages::jsonl("in.jsonl", text.as_bytes(), limits());
        assert!(matches!(
            m.next_message().unwrap(),
            Some((At::Line(1), RawMessage::Batch(_)))
        ));
        match m.next_message().unwrap() {
            Some((At::Line(2), RawMessage::Event(e))) => assert_eq!(e, event),
            other => panic!("{other:?}"),
        }
        let mut capture = Vec::new();
        let mut bin = Vec::new();
        eeg_schema::decode_raw(batch.as_bytes(), &limits())
            .unwrap()
            .encode_protobuf(&mut bin);
        eeg_schema::write_delimited(&bin, &mut capture).unwrap();
        bin.clear();
        event.encode_protobuf(&mut bin);
        eeg_schema::write_delimited(&bin, &mut capture).unwrap();
        let mut m = RawMessages::capture("in.pb", capture.as_slice(), limits());
        assert!(matches!(
            m.next_message().unwrap(),
            Some((_, RawMessage::Batch(_)))
        ));
        match m.next_message().unwrap() {
            Some((At::Message { index: 2, .. }, RawMessage::Event(e))) => assert_eq!(e, event),
            other => panic!("{other:?}"),
        }
        assert!(m.next_message().unwrap().is_none());
    }

    /// An `eeg.raw/1` line of session `s`, batch `seq`: one channel `C3`, four samples.
    fn line(seq: u64) -> String {
        format!(
            r#"{{"schema": "eeg.raw/1", "session_id": "s", "device_id": "d", "seq": {seq}, "start_ms": {}, "sample_rate_hz": 250.0, "channels": ["C3"], "samples": [[1.0, 2.0, 3.0, 4.0]]}}"#,
            1_700_000_000_000u64 + seq * 16
        )
    }

    #[test]
    fn json_lines_are_numbered_from_one_and_blank_ones_skipped() {
        let text = format!("{}\n\n  \n{}\n", line(0), line(1));
        let mut m = RawMessages::jsonl("in.jsonl", text.as_bytes(), limits());
        let (at, batch) = m.next_batch().unwrap().expect("a message");
        assert_eq!(at, At::Line(1));
        assert_eq!((batch.seq, batch.samples()), (0, &[1.0, 2.0, 3.0, 4.0][..]));
        let (at, batch) = m.next_batch().unwrap().expect("a message");
        assert_eq!(at, At::Line(4));
        assert_eq!(batch.seq, 1);
        assert!(m.next_batch().unwrap().is_none());
        assert_eq!(m.count(), 4);
        assert_eq!(m.position(), text.len() as u64);
        assert!(!m.is_capture());
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        let text = format!("{}\n{{\"schema\": \"eeg.raw/1\"\n", line(0));
        let mut m = RawMessages::jsonl("in.jsonl", text.as_bytes(), limits());
        assert!(m.next_batch().unwrap().is_some());
        let e = m.next_batch().unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().starts_with("in.jsonl: line 2: "), "{e}");
        // A line past the limit, without its end.
        let small = Limits {
            max_message_bytes: 64,
            ..Limits::default()
        };
        let long = format!("{}\n", line(0));
        let e = RawMessages::jsonl("big.jsonl", long.as_bytes(), small)
            .next_batch()
            .unwrap_err();
        assert_eq!(e.to_string(), "big.jsonl: line 1: longer than 64 bytes");
    }

    /// The batches of [`line`] as a capture, and each message's offset.
    fn capture(n: u64) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for seq in 0..n {
            let batch = eeg_schema::decode_raw(line(seq).as_bytes(), &limits()).unwrap();
            let mut message = Vec::new();
            batch.encode_protobuf(&mut message);
            offsets.push(bytes.len() as u64);
            eeg_schema::write_delimited(&message, &mut bytes).unwrap();
        }
        (bytes, offsets)
    }

    #[test]
    fn capture_messages_come_with_their_number_and_byte_offset() {
        let (bytes, offsets) = capture(3);
        // Each message is shorter than 128 bytes: a one-byte prefix, so message k starts
        // where the previous one's announced length ends.
        assert_eq!(offsets[1], 1 + u64::from(bytes[0]));
        let mut m = RawMessages::capture("c.pb", bytes.as_slice(), limits());
        for (k, &offset) in offsets.iter().enumerate() {
            let (at, batch) = m.next_batch().unwrap().expect("a message");
            assert_eq!(
                at,
                At::Message {
                    index: k as u64 + 1,
                    offset
                }
            );
            assert_eq!(batch.seq, k as u64);
            assert_eq!(batch.samples(), &[1.0, 2.0, 3.0, 4.0]);
        }
        assert!(m.next_batch().unwrap().is_none());
        assert_eq!((m.count(), m.position()), (3, bytes.len() as u64));
        assert!(m.is_capture());
    }

    #[test]
    fn a_broken_capture_is_named_with_the_message_and_its_byte_offset() {
        let (bytes, offsets) = capture(3);
        let (last, length) = (offsets[2], u64::from(bytes[offsets[2] as usize]));
        // The last message cut by 5 bytes.
        let cut = &bytes[..bytes.len() - 5];
        let mut m = RawMessages::capture("cut.pb", cut, limits());
        assert!(m.next_batch().unwrap().is_some());
        assert!(m.next_batch().unwrap().is_some());
        let e = m.next_batch().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cut.pb: message 3 at byte {last}: truncated: {length} bytes announced, {} present",
                length - 5
            )
        );
        // A second message whose bytes are no RawBatch: field 1 announced 255 bytes long.
        let mut garbage = bytes[..offsets[1] as usize].to_vec();
        garbage.extend_from_slice(&[3, 0x0a, 0xff, 0x01]);
        let mut m = RawMessages::capture("bad.pb", garbage.as_slice(), limits());
        assert!(m.next_batch().unwrap().is_some());
        let e = m.next_batch().unwrap_err();
        assert!(e.is_bad_input());
        assert!(
            e.to_string()
                .starts_with(&format!("bad.pb: message 2 at byte {}: ", offsets[1])),
            "{e}"
        );
    }

    #[test]
    fn channels_are_selected_in_the_order_asked_for() {
        let text = r#"{"schema": "eeg.raw/1", "session_id": "s", "device_id": "d", "seq": 0, "start_ms": 0, "sample_rate_hz": 250.0, "channels": ["A", "B", "C"], "samples": [[1, 2], [3, 4], [5, 6]]}"#;
        let batch = eeg_schema::decode_raw(text.as_bytes(), &limits()).unwrap();
        let wanted = ["C".to_string(), "A".to_string()];
        let picked = select_channels(batch.clone(), &wanted, &limits()).unwrap();
        assert_eq!(picked.channels, ["C", "A"]);
        assert_eq!(picked.samples(), &[5.0, 6.0, 1.0, 2.0]);
        let e = select_channels(batch, &["D".to_string()], &limits()).unwrap_err();
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            "--channels: session 's' has no channel 'D' (channels: A, B, C)"
        );
    }
}
