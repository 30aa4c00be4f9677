//! `tail`: prints what the service publishes (or reads) as it arrives, for a person watching
//! a session or a script capturing it. Every partition is read by assignment, with no
//! consumer group: `tail` never commits an offset and never takes a partition from the
//! service's group, however many run at once.

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::flags::{BadInput, KafkaArgs, TopicArgs};
use eeg_offline::time::clock_ms;

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// What to read: the records, the trigger events, the dead letters or the raw batches
    /// (topic names from --processed-topic etc.).
    #[arg(long, value_enum, default_value_t = Which::Processed)]
    pub topic: Which,
    /// Start at the oldest message on the broker instead of new ones only.
    #[arg(long)]
    pub from_beginning: bool,
    /// Only this session's messages (repeatable).
    #[arg(long = "session", value_name = "ID")]
    pub sessions: Vec<String>,
    /// Stop after printing N messages.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Stop once no message has arrived for S seconds.
    #[arg(long, value_name = "S")]
    pub idle_exit: Option<f64>,
    /// jsonl: each message's JSON, one per line; table: one short line per message for a
    /// person; pb (with --topic raw): a capture of binary eeg.raw/1, length-delimited, that
    /// `process` and `replay` read (binary messages as they are, JSON ones converted
    /// exactly). Default: table on a terminal, jsonl otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// With --format jsonl: each message in an envelope that says where and when it was
    /// written and read: {"partition", "offset", "timestamp_ms" (the record's Kafka
    /// timestamp), "received_ms" (when this command got it), "key", "value" (the JSON
    /// above)}.
    #[arg(long)]
    pub envelope: bool,
    /// Seconds to wait for the broker's answer before giving up.
    #[arg(long, env = "KAFKA_CONNECT_TIMEOUT_S", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Processed,
    Triggers,
    Epochs,
    Dlq,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Table,
    Pb,
}

pub fn run(args: &TailArgs) -> anyhow::Result<()> {
    if let Some(s) = args.idle_exit
        && !(s.is_finite() && s > 0.0)
    {
        return Err(BadInput(format!(
            "--idle-exit: must be a number of seconds > 0, got {s}"
        ))
        .into());
    }
    let t = &args.topics;
    let topic = match args.topic {
        Which::Processed => &t.processed_topic,
        Which::Triggers => &t.triggers_topic,
        Which::Epochs => &t.epochs_topic,
        Which::Dlq => &t.dlq_topic,
        Which::Raw => &t.raw_topic,
    };
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Jsonl
    });
    if args.envelope && format != Format::Jsonl {
        return Err(BadInput("--envelope: for --format jsonl only".into()).into());
    }
    if format == Format::Pb {
        if args.topic != Which::Raw {
            return Err(BadInput(
                "--format pb: captures are of raw batches; use it with --topic raw".into(),
            )
            .into());
        }
        if std::io::stdout().is_terminal() {
            return Err(BadInput(
                "--format pb: a capture is binary; redirect standard output to a file (e.g. > capture.pb)".into(),
            )
            .into());
        }
    }
    let auth = args.kafka.auth()?;
    let client = args.kafka.client_config()?;
    let timeout = Duration::from_secs(args.connect_timeout_s);
    let partitions = match eeg_ingest::topics::partitions(&client, &auth, topic, timeout) {
        Ok(Some(n)) => n,
        Ok(None) => anyhow::bail!(
            "topic {topic} does not exist at {}",
            args.kafka.bootstrap_servers
        ),
        Err(e) => anyhow::bail!(
            "cannot reach Kafka at {} (waited up to {}s): {e}",
            args.kafka.bootstrap_servers,
            timeout.as_secs()
        ),
    };
    let mut config = client;
    // librdkafka wants a group id even for assign(); a name of its own that is never joined
    // (no subscribe) nor committed to: no partition is taken from anyone.
    let group = format!("eeg-tail-{}", std::process::id());
    config
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer<eeg_kafka::AuthContext> =
        config.create_with_context(eeg_kafka::AuthContext(auth.clone()))?;
    auth.prime(|d| {
        let _ = consumer.poll(d);
    });
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, start)?;
    }
    consumer.assign(&tpl)?;

    let only: HashSet<&[u8]> = args.sessions.iter().map(|s| s.as_bytes()).collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut last = Instant::now();
    let mut errors: HashSet<String> = HashSet::new();
    let mut line = Vec::new();
    loop {
        if args.max.is_some_and(|m| printed >= m) {
            break;
        }
        if let Some(s) = args.idle_exit
            && last.elapsed().as_secs_f64() >= s
        {
            break;
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => {
                // Nothing pending: what was printed reaches the reader now.
                if !flush(&mut out)? {
                    return Ok(());
                }
                continue;
            }
            Some(Err(e)) => {
                note_error(&e, &mut errors);
                continue;
            }
            Some(Ok(m)) => m,
        };
        last = Instant::now();
        if !only.is_empty() && !message.key().is_some_and(|k| only.contains(k)) {
            continue;
        }
        line.clear();
        match format {
            Format::Jsonl if args.envelope => {
                let mut value = Vec::new();
                jsonl(args.topic, &message, &mut value);
                envelope(&message, &value, &mut line);
            }
            Format::Jsonl => jsonl(args.topic, &message, &mut line),
            Format::Table => table(args.topic, &message, &mut line),
            Format::Pb => {
                if let Err(e) = delimited(&message, &mut line) {
                    // Only what the service would also refuse; it stays on the broker.
                    tracing::warn!(
                        "partition {} offset {}: not in the capture: {e}",
                        message.partition(),
                        message.offset()
                    );
                    continue;
                }
            }
        }
        if format != Format::Pb {
            line.push(b'\n');
        }
        if !write(&mut out, &line)? {
            return Ok(());
        }
        printed += 1;
    }
    flush(&mut out)?;
    eeg_kafka::client_log::flush();
    Ok(())
}

/// Writes to standard output; `false` when the reader went away (`tail ... | head`), which
/// ends the command quietly.
fn write(out: &mut impl Write, bytes: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(bytes) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn flush(out: &mut impl Write) -> anyhow::Result<bool> {
    match out.flush() {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A consumer error, said once per distinct text (librdkafka retries by itself).
fn note_error(e: &KafkaError, seen: &mut HashSet<String>) {
    let text = e.to_string();
    if seen.len() < 100 && seen.insert(text.clone()) {
        tracing::warn!("{text}");
    }
}

fn headers(m: &BorrowedMessage<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(h) = m.headers() {
        for header in h.iter() {
            let value = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            out.insert(header.key.to_string(), value);
        }
    }
    out
}

/// The message as one JSON line: the payload itself for the JSON topics; for a dead letter
/// (whose payload need not be JSON, nor text), an object with its headers and its payload
/// as text.
fn jsonl(which: Which, m: &BorrowedMessage<'_>, line: &mut Vec<u8>) {
    let payload = m.payload().unwrap_or_default();
    if which == Which::Raw
        && let Some(decoded) = binary_raw(m)
    {
        match decoded {
            Ok(eeg_schema::RawMessage::Batch(batch)) => batch.encode_into(line),
            Ok(eeg_schema::RawMessage::Event(e)) => line.extend_from_slice(e.to_json().as_bytes()),
            Err(e) => line.extend_from_slice(
                serde_json::json!({
                    "partition": m.partition(),
                    "offset": m.offset(),
                    "error": e,
                })
                .to_string()
                .as_bytes(),
            ),
        }
        return;
    }
    if which != Which::Dlq {
        line.extend_from_slice(payload.trim_ascii());
        return;
    }
    let entry = serde_json::json!({
        "partition": m.partition(),
        "offset": m.offset(),
        "key": m.key().map(String::from_utf8_lossy),
        "headers": headers(m),
        "payload": String::from_utf8_lossy(payload),
    });
    line.extend_from_slice(entry.to_string().as_bytes());
}

/// `value` (one message as `jsonl` prints it) with where and when the message was written
/// and read. A value that is not JSON (a raw message the service would dead-letter) goes as
/// text, under `value_text`.
fn envelope(m: &BorrowedMessage<'_>, value: &[u8], line: &mut Vec<u8>) {
    let received_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut entry = serde_json::json!({
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp_ms": m.timestamp().to_millis(),
        "received_ms": received_ms,
        "key": m.key().map(String::from_utf8_lossy),
    });
    let text = serde_json::to_string(&entry).expect("a JSON object");
    if serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok() {
        // The value goes in as it is, not parsed and printed again: its numbers stay the
        // publisher's text.
        line.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
        line.extend_from_slice(b",\"value\":");
        line.extend_from_slice(value);
        line.push(b'}');
    } else {
        entry["value_text"] = String::from_utf8_lossy(value).into();
        line.extend_from_slice(entry.to_string().as_bytes());
    }
}

/// The raw message as a message of a capture: its own bytes when binary, JSON converted to
/// binary with 64-bit floats (the values the service decodes, bit for bit).
fn delimited(m: &BorrowedMessage<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let payload = m.payload().unwrap_or_default();
    match binary_raw(m) {
        Some(Ok(_)) => eeg_schema::write_delimited(payload, out).map_err(|e| e.to_string()),
        Some(Err(e)) => Err(e),
        None => {
            let limits = eeg_schema::Limits::default();
            let decoded = eeg_schema::decode_raw_message(payload, None, &limits)
                .map_err(|e| e.to_string())?;
            let mut message = Vec::new();
            match decoded {
                eeg_schema::RawMessage::Batch(b) => b.encode_protobuf(&mut message),
                eeg_schema::RawMessage::Event(e) => e.encode_protobuf(&mut message),
            }
            eeg_schema::write_delimited(&message, out).map_err(|e| e.to_string())
        }
    }
}

/// A raw message that its `content-type` header says is not JSON, decoded as the service
/// decodes it (an error is the service's reason to dead-letter it); `None` for JSON.
fn binary_raw(m: &BorrowedMessage<'_>) -> Option<Result<eeg_schema::RawMessage, String>> {
    let ct = eeg_ingest::content_type(m);
    let limits = eeg_schema::Limits::default();
    match eeg_schema::RawEncoding::from_content_type(ct) {
        Ok(eeg_schema::RawEncoding::Json) => None,
        Ok(_) => Some(
            eeg_schema::decode_raw_message(m.payload().unwrap_or_default(), ct, &limits)
                .map_err(|e| e.to_string()),
        ),
        Err(e) => Some(Err(e.to_string())),
    }
}

/// The message as one short line for a person.
fn table(which: Which, m: &BorrowedMessage<'_>, line: &mut Vec<u8>) {
    let payload = m.payload().unwrap_or_default();
    let binary = if which == Which::Raw {
        binary_raw(m)
    } else {
        None
    };
    let text = match which {
        Which::Dlq => dead_letter_line(m, payload.len()),
        _ if binary.is_some() => match binary.expect("checked") {
            Ok(eeg_schema::RawMessage::Event(e)) => match serde_json::from_str(&e.to_json()) {
                Ok(v) => event_line(&v),
                Err(e) => e.to_string(),
            },
            Ok(eeg_schema::RawMessage::Batch(b)) => format!(
                "{}  {}  seq {}: {} channels x {} samples at {} Hz (protobuf, {} bytes)",
                clock_ms(b.start_ms),
                b.session_id,
                b.seq,
                b.n_channels(),
                b.samples_per_channel(),
                b.sample_rate_hz,
                payload.len()
            ),
            Err(e) => format!("partition {} offset {}: {e}", m.partition(), m.offset()),
        },
        _ => match serde_json::from_slice::<Value>(payload) {
            Ok(v) => match which {
                Which::Processed => processed_line(&v),
                Which::Triggers => trigger_line(&v),
                Which::Epochs => epoch_line(&v),
                _ if v["schema"] == eeg_schema::EVENT_SCHEMA => event_line(&v),
                _ => raw_line(&v),
            },
            Err(e) => format!(
                "partition {} offset {}: not JSON ({e})",
                m.partition(),
                m.offset()
            ),
        },
    };
    line.extend_from_slice(text.as_bytes());
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("?")
}

/// `time session wN` then per channel: its dominant band, alpha and beta relative power
/// and its quality (`ok`, or why not).
pub fn processed_line(v: &Value) -> String {
    let mut s = format!(
        "{}  {}  w{}{}",
        v["start_ms"].as_i64().map_or("?".into(), clock_ms),
        str_of(v, "session_id"),
        v["window_index"].as_u64().unwrap_or(0),
        if v["settling"].as_bool() == Some(true) {
            " settling"
        } else {
            ""
        }
    );
    for c in v["channels"].as_array().into_iter().flatten() {
        let rel = c["relative_power"].as_object();
        let dominant = rel
            .and_then(|r| {
                r.iter()
                    .filter_map(|(k, x)| x.as_f64().map(|x| (k, x)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
            })
            .map_or("-", |(k, _)| k.as_str());
        let band = |name: &str| {
            rel.and_then(|r| r.get(name))
                .and_then(Value::as_f64)
                .map_or("-".to_string(), |x| format!("{x:.2}"))
        };
        s.push_str(&format!(
            "  | {} {dominant} a={} b={} {}",
            str_of(c, "name"),
            band("alpha"),
            band("beta"),
            quality_word(&c["quality"])
        ));
    }
    s
}

fn quality_word(q: &Value) -> &'static str {
    let flag = |k: &str| q[k].as_bool() == Some(true);
    if flag("good") {
        "ok"
    } else if flag("flatline") {
        "flatline"
    } else if flag("railed") {
        "railed"
    } else if flag("artifact") {
        "artifact"
    } else {
        "line-noise"
    }
}

/// `time session TRIGGER rule state metric=value (threshold t)`, at the event's time: its
/// window's end (docs/triggers.md).
pub fn trigger_line(v: &Value) -> String {
    format!(
        "{}  {}  TRIGGER {} {} {}={} (threshold {})",
        v["end_ms"].as_i64().map_or("?".into(), clock_ms),
        str_of(v, "session_id"),
        str_of(v, "rule_id"),
        str_of(v, "state"),
        str_of(v, "metric"),
        v["value"]
            .as_f64()
            .map_or("?".into(), |x| format!("{x:.3}")),
        v["threshold"]
    )
}

/// `time session EPOCH label event_id status [why]` at the event's onset (the epoch's start
/// less `tmin_s`), then per component and channel the baseline-corrected mean, µV
/// (docs/processing.md, "Events and epochs").
pub fn epoch_line(v: &Value) -> String {
    let event = &v["event"];
    let drop: Vec<&str> = v["drop"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut s = format!(
        "{}  {}  EPOCH {} {} {}{}",
        v["start_ms"].as_f64().map_or("?".into(), |ms| {
            let tmin_s = v["tmin_s"].as_f64().unwrap_or(0.0);
            clock_ms((ms - tmin_s * 1000.0).round() as i64)
        }),
        str_of(v, "session_id"),
        event["label"]
            .as_str()
            .map_or("?".into(), |l| format!("{l:?}")),
        str_of(event, "event_id"),
        str_of(v, "status"),
        if drop.is_empty() {
            String::new()
        } else {
            format!(" [{}]", drop.join(", "))
        }
    );
    let channels: Vec<&str> = v["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (name, c) in v["components"].as_object().into_iter().flatten() {
        s.push_str(&format!("  | {name}"));
        let means = c["mean_uv"].as_array().into_iter().flatten();
        for (ch, m) in channels.iter().zip(means) {
            let m = m.as_f64().map_or("-".into(), |x| format!("{x:.2}"));
            s.push_str(&format!(" {ch}={m}"));
        }
    }
    s
}

/// `time session EVENT label event_id` for an `eeg.event/1` message on the raw topic.
fn event_line(v: &Value) -> String {
    let onset = match v["onset_ms"].as_f64() {
        Some(ms) => clock_ms(ms as i64),
        None => format!("sample {}", v["onset_sample"]),
    };
    format!(
        "{onset}  {}  EVENT {} {}",
        str_of(v, "session_id"),
        v["label"].as_str().map_or("?".into(), |l| format!("{l:?}")),
        str_of(v, "event_id")
    )
}

/// `time session seq N: C channels x S samples at R Hz`.
fn raw_line(v: &Value) -> String {
    let channels = v["channels"].as_array().map_or(0, Vec::len);
    let samples = v["samples"][0].as_array().map_or(0, Vec::len);
    format!(
        "{}  {}  seq {}: {channels} channels x {samples} samples at {} Hz",
        v["start_ms"].as_i64().map_or("?".into(), clock_ms),
        str_of(v, "session_id"),
        v["seq"],
        v["sample_rate_hz"]
    )
}

/// `source topic/partition@offset key K: error (N bytes[, cut])`.
fn dead_letter_line(m: &BorrowedMessage<'_>, len: usize) -> String {
    let h = headers(m);
    let get = |k: &str| h.get(k).map_or("?", String::as_str);
    let size = match h.get("original.length") {
        Some(original) => format!("{original} bytes, copy cut to {len}"),
        None => format!("{len} bytes"),
    };
    format!(
        "{}/{}@{}  key {}: {} ({size})",
        get("source.topic"),
        get("source.partition"),
        get("source.offset"),
        m.key().map_or("-".into(), String::from_utf8_lossy),
        get("error"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_event_is_shown_at_its_windows_end() {
        let v = serde_json::json!({"schema": "analytics.trigger/1", "rule_id": "r",
            "session_id": "s", "device_id": "d", "state": "fired", "metric": "m",
            "value": 0.5, "threshold": 0.4, "window_index": 3,
            "start_ms": 1_800_000_000_000_i64, "end_ms": 1_800_000_004_000_i64});
        // 1_800_000_004_000 ms is 08:00:04 UTC on its day.
        assert!(
            trigger_line(&v).starts_with("08:00:04.000  s  TRIGGER r fired m=0.500"),
            "{}",
            trigger_line(&v)
        );
    }

    #[test]
    fn an_epoch_is_shown_at_its_events_onset_with_its_status_and_means() {
        let v = serde_json::json!({"schema": "eeg.epoch/1", "session_id": "s",
            "event": {"event_id": "stim-7", "label": "target"},
            "start_ms": 1_800_000_003_800.0, "tmin_s": -0.2, "status": "rejected",
            "drop": ["Cz"], "channels": ["Cz", "Pz"],
            "components": {"p300": {"mean_uv": [4.256, -1.0], "peak_uv": [9.0, 2.0]}}});
        assert_eq!(
            epoch_line(&v),
            "08:00:04.000  s  EPOCH \"target\" stim-7 rejected [Cz]  | p300 Cz=4.26 Pz=-1.00"
        );
        let no_data = serde_json::json!({"session_id": "s", "start_ms": null,
            "event": {"event_id": "e", "label": "x"}, "status": "no_data",
            "drop": ["too_late"], "channels": ["Cz"]});
        assert_eq!(
            epoch_line(&no_data),
            "?  s  EPOCH \"x\" e no_data [too_late]"
        );
    }

    #[test]
    fn an_event_message_is_shown_at_its_onset() {
        let v = serde_json::json!({"schema": "eeg.event/1", "session_id": "s",
            "event_id": "e1", "onset_ms": 1_800_000_004_000.5, "label": "target"});
        assert_eq!(event_line(&v), "08:00:04.000  s  EVENT \"target\" e1");
        let v = serde_json::json!({"schema": "eeg.event/1", "session_id": "s",
            "event_id": "e2", "onset_sample": 512, "label": ""});
        assert_eq!(event_line(&v), "sample 512  s  EVENT \"\" e2");
    }
}
