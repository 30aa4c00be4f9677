//! `eeg-pipeline replay`: plays a recording into the raw topic as simulated devices.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use eeg_schema::{
    Limits, RawBatch, RawBatchParts, RawEncoding, RawMeta, RawSamples, RawUnits,
    encode_raw_protobuf,
};

use eeg_offline::{Accepts, Kind, RawMessages};

use crate::flags::{BadInput, KafkaArgs, check_channels};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// EDF/EDF+/BDF recording, a JSONL file of eeg.raw/1 messages, or a capture of binary
    /// eeg.raw/1 (length-delimited, a .pb name or told by its content).
    pub input: PathBuf,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic to publish to.
    #[arg(long, env = "EEG_RAW_TOPIC", default_value = "eeg.raw.data")]
    pub topic: String,
    /// Samples per channel in each message (EDF/BDF input).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub chunk: u32,
    /// Pace: "realtime" (the recording's own rate), "max" (as fast as the broker takes
    /// it) or a factor of real time such as 10.
    #[arg(long, default_value = "realtime", value_parser = parse_speed)]
    pub speed: Speed,
    /// Plays N copies of the recording as N concurrent sessions (ID-1 .. ID-N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub sessions: u32,
    /// Session id (EDF/BDF input; default: the file name without extension, the time of
    /// this run and the process id, e.g. rec-20261202T141503-4821, so that every run is a
    /// new session: a session id already processed would be dropped as duplicates).
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// User id carried by every message (EDF/BDF input; JSONL messages carry their own).
    #[arg(long, value_name = "ID")]
    pub user_id: Option<String>,
    /// Replay only these signals (EDF/BDF labels, comma-separated), in this order.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
    /// Wire encoding of the messages: JSON, or Protocol Buffers with the header
    /// `content-type: application/x-protobuf` (EDF/BDF signals then go as their digital
    /// values with their scale, so nothing is rounded; JSONL input as 64-bit floats).
    #[arg(long, value_enum, default_value_t = Encoding::Json)]
    pub encoding: Encoding,
    /// A BIDS events.tsv of the recording's events (EDF/BDF input), sent with its annotations
    /// and trigger codes as eeg.event/1 messages.
    #[arg(long, value_name = "FILE.tsv")]
    pub events: Option<PathBuf>,
    /// Send each event of an EDF/BDF recording before the message holding its onset (as a
    /// stimulus program that logs the stimulus before the amplifier's samples arrive), not
    /// right after it.
    #[arg(long)]
    pub events_early: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Seconds to wait for the broker's answer before giving up (checked before anything
    /// is sent).
    #[arg(long, env = "KAFKA_CONNECT_TIMEOUT_S", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    Json,
    Protobuf,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    Max,
    /// Multiple of real time.
    Factor(f64),
}

fn parse_speed(s: &str) -> Result<Speed, String> {
    match s {
        "max" => Ok(Speed::Max),
        "realtime" => Ok(Speed::Factor(1.0)),
        _ => match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!("'{s}' is not realtime, max or a positive factor")),
        },
    }
}

/// Counts deliveries; a failed one is reported at the end and fails the command.
#[derive(Debug, Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Set when the replay is given up: the messages still queued are purged on purpose,
    /// and their failures are no news.
    abandoned: AtomicBool,
    auth: eeg_kafka::Auth,
}

impl ClientContext for Deliveries {
    eeg_kafka::answer_token_refresh!(|ctx| ctx.auth);
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0
                    && !self.abandoned.load(Ordering::Relaxed)
                {
                    tracing::error!("delivery failed: {e}");
                }
                0
            }
        };
    }
}

struct Player {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    encoding: Encoding,
    speed: Speed,
    started: Instant,
    copies: u32,
    buf: Vec<u8>,
    messages: u64,
    samples: u64,
}

impl Player {
    /// Waits until `at_s` seconds of recording time have passed at the chosen speed.
    fn pace(&self, at_s: f64) {
        if let Speed::Factor(f) = self.speed {
            let due = self.started + Duration::from_secs_f64(at_s / f);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }

    /// Publishes `batch` (and its copies) at `at_s` seconds of recording time, in the
    /// chosen encoding (Protocol Buffers: 64-bit floats, the batch's values exactly).
    fn play(&mut self, batch: RawBatch, at_s: f64) -> anyhow::Result<()> {
        self.pace(at_s);
        let samples = (batch.n_channels() * batch.samples_per_channel()) as u64;
        let encode = |b: &RawBatch, buf: &mut Vec<u8>, encoding: Encoding| {
            buf.clear();
            match encoding {
                Encoding::Json => b.encode_into(buf),
                Encoding::Protobuf => b.encode_protobuf(buf),
            }
        };
        if self.copies == 1 {
            encode(&batch, &mut self.buf, self.encoding);
            let key = batch.session_id.clone();
            self.send(&key)?;
        } else {
            let mut parts = batch.into_parts();
            let base = parts.session_id.clone();
            for i in 1..=self.copies {
                parts.session_id = format!("{base}-{i}");
                let copy = RawBatch::new(parts, &Limits::default())?;
                encode(&copy, &mut self.buf, self.encoding);
                let key = copy.session_id.clone();
                self.send(&key)?;
                parts = copy.into_parts();
            }
        }
        self.samples += samples * u64::from(self.copies);
        Ok(())
    }

    /// Publishes one message of digital samples (and its copies) at `at_s` seconds of
    /// recording time, in Protocol Buffers.
    fn play_digital(
        &mut self,
        meta: &RawMeta<'_>,
        samples: RawSamples<'_>,
        at_s: f64,
    ) -> anyhow::Result<()> {
        self.pace(at_s);
        let n = match samples {
            RawSamples::Digital { data, .. } => data.len(),
            RawSamples::Float32(v) => v.len(),
            RawSamples::Float64(v) => v.len(),
        } as u64;
        for i in 1..=self.copies {
            let id;
            let mut m = *meta;
            if self.copies > 1 {
                id = format!("{}-{i}", meta.session_id);
                m.session_id = &id;
            }
            self.buf.clear();
            encode_raw_protobuf(&m, samples, &mut self.buf)?;
            let key = m.session_id.to_string();
            self.send(&key)?;
        }
        self.samples += n * u64::from(self.copies);
        Ok(())
    }

    /// Publishes an `eeg.event/1` message (and its copies, one per session copy) now, in
    /// the chosen encoding.
    fn play_event(&mut self, mut e: eeg_schema::Event) -> anyhow::Result<()> {
        let base = e.session_id.clone();
        for i in 1..=self.copies {
            if self.copies > 1 {
                e.session_id = format!("{base}-{i}");
            }
            self.buf.clear();
            match self.encoding {
                Encoding::Json => self.buf.extend_from_slice(e.to_json().as_bytes()),
                Encoding::Protobuf => e.encode_protobuf(&mut self.buf),
            }
            let key = e.session_id.clone();
            self.send_as(&key, eeg_schema::EVENT_PROTOBUF_CONTENT_TYPE)?;
        }
        Ok(())
    }

    fn send(&mut self, key: &str) -> anyhow::Result<()> {
        self.send_as(key, RawEncoding::Protobuf.content_type())
    }

    /// Sends the buffer under `key`, with `protobuf_type` as its content type when the
    /// encoding is Protocol Buffers.
    fn send_as(&mut self, key: &str, protobuf_type: &str) -> anyhow::Result<()> {
        let headers = match self.encoding {
            Encoding::Json => None,
            Encoding::Protobuf => Some(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header {
                    key: "content-type",
                    value: Some(protobuf_type),
                },
            )),
        };
        let mut record = BaseRecord::to(&self.topic).key(key).payload(&self.buf[..]);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                // A full queue means the broker is slower than the file: wait for it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => anyhow::bail!("cannot publish to {}: {e}", self.topic),
            }
        }
        self.messages += 1;
        Ok(())
    }
}

/// The input, opened and its header read, before any connection is made: a file that
/// cannot be replayed is reported as such, not as a broker problem.
enum Source {
    /// JSONL, or a capture of binary messages (`protobuf`).
    Messages { file: File, protobuf: bool },
    Edf {
        reader: Box<eeg_edf::EdfReader<BufReader<File>>>,
        groups: Vec<eeg_offline::SessionGroup>,
        events: Box<eeg_offline::RecordEvents<BufReader<File>>>,
    },
}

impl Source {
    fn open(name: &str, args: &ReplayArgs) -> anyhow::Result<Source> {
        check_channels(args.channels.as_deref())?;
        Ok(match eeg_offline::detect(&args.input, Accepts::Raw)? {
            Kind::Jsonl | Kind::Capture if args.user_id.is_some() => {
                return Err(BadInput(format!(
                    "{name}: --user-id is for EDF/BDF input; raw messages carry their own user_id"
                ))
                .into());
            }
            Kind::Jsonl | Kind::Capture if args.events.is_some() || args.events_early => {
                return Err(BadInput(format!(
                    "{name}: --events and --events-early are for EDF/BDF input; raw messages carry their own events, sent where the file has them"
                ))
                .into());
            }
            kind @ (Kind::Jsonl | Kind::Capture) => Source::Messages {
                file: File::open(&args.input)
                    .map_err(|e| BadInput(format!("{name}: cannot open: {e}")))?,
                protobuf: kind == Kind::Capture,
            },
            Kind::Edf => {
                let reader =
                    eeg_edf::EdfReader::open(&args.input).map_err(|e| BadInput(e.to_string()))?;
                let session_id = args.session_id.clone().unwrap_or_else(|| {
                    run_session_id(&args.input, SystemTime::now(), std::process::id())
                });
                let groups = eeg_offline::session_groups(
                    name,
                    &args.input,
                    reader.header(),
                    args.channels.as_deref(),
                    Some(&session_id),
                )?;
                let tsv = match &args.events {
                    Some(path) => {
                        let tsv_name = path.display().to_string();
                        let file = File::open(path)
                            .map_err(|e| BadInput(format!("{tsv_name}: cannot open: {e}")))?;
                        Some(eeg_offline::bids::EventsTsv::new(
                            tsv_name,
                            BufReader::new(file),
                        )?)
                    }
                    None => None,
                };
                let first_rate = groups.first().map_or(1.0, |g| g.rate);
                let events = eeg_offline::RecordEvents::new(reader.header(), tsv, first_rate);
                Source::Edf {
                    reader: Box::new(reader),
                    groups,
                    events: Box::new(events),
                }
            }
        })
    }
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let name = args.input.display().to_string();
    let source = Source::open(&name, args)?;
    let auth = args.kafka.auth()?;
    check_broker(args, &auth)?;
    if let Source::Edf { groups, .. } = &source {
        // Said once the broker answered: a failed replay stays one line.
        let ids: Vec<&str> = groups.iter().map(|g| g.session_id.as_str()).collect();
        let copies = if args.sessions > 1 {
            format!(" (-1 .. -{})", args.sessions)
        } else {
            String::new()
        };
        eprintln!("{name}: session {}{copies}", ids.join(", "));
    }
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &args.kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    for (k, v) in args.kafka.properties()? {
        client.set(k, v);
    }
    let producer: ThreadedProducer<Deliveries> = client.create_with_context(Deliveries {
        auth,
        ..Deliveries::default()
    })?;
    let progress = crate::offline::progress_bar(&args.input, args.quiet);
    let mut player = Player {
        producer,
        topic: args.topic.clone(),
        encoding: args.encoding,
        speed: args.speed,
        started: Instant::now(),
        copies: args.sessions,
        buf: Vec::new(),
        messages: 0,
        samples: 0,
    };
    let played = match source {
        Source::Messages { file, protobuf } => {
            replay_messages(&name, file, protobuf, &mut player, &progress)
        }
        Source::Edf {
            reader,
            groups,
            events,
        } => replay_edf(*reader, groups, *events, args, &mut player, &progress),
    };
    progress.finish_and_clear();
    // Everything handed to the producer must be delivered before the command reports success.
    let flushed = played.and_then(|()| {
        player.producer.flush(Duration::from_secs(60)).map_err(|e| {
            anyhow::anyhow!(
                "cannot deliver to {} at {} within 60 s: {e}",
                args.topic,
                args.kafka.bootstrap_servers
            )
        })
    });
    let ctx = player.producer.context();
    if let Err(e) = flushed {
        // What is still queued is dropped with the producer: those failures are this error's.
        ctx.abandoned.store(true, Ordering::Relaxed);
        eeg_kafka::client_log::flush();
        return Err(e);
    }
    eeg_kafka::client_log::flush();
    let failed = ctx.failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} message(s) could not be delivered");
    let elapsed = player.started.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "{name}: {} messages ({} sessions) to {} in {elapsed:.2} s: {:.0} messages/s, {:.1} M samples/s",
            player.messages,
            args.sessions,
            args.topic,
            player.messages as f64 / elapsed,
            player.samples as f64 / elapsed / 1e6
        );
    }
    Ok(())
}

/// Asks the broker for the topic, within the connect timeout, before anything is sent: an
/// unreachable broker or a missing topic is one line, not a minute of retries.
fn check_broker(args: &ReplayArgs, auth: &eeg_kafka::Auth) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.connect_timeout_s);
    let client = args.kafka.client_config()?;
    match eeg_ingest::topics::partitions(&client, auth, &args.topic, timeout) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => anyhow::bail!(
            "topic {} does not exist at {}; create it with: {}",
            args.topic,
            args.kafka.bootstrap_servers,
            eeg_ingest::topics::CREATE_COMMAND
        ),
        Err(e) => anyhow::bail!(
            "cannot reach Kafka at {} (waited up to {}s): {e}",
            args.kafka.bootstrap_servers,
            timeout.as_secs()
        ),
    }
}

fn replay_messages(
    name: &str,
    file: File,
    protobuf: bool,
    player: &mut Player,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let limits = Limits::default();
    let mut first_ms = None;
    let mut messages = if protobuf {
        RawMessages::capture(name, BufReader::new(file), limits)
    } else {
        RawMessages::jsonl(name, BufReader::new(file), limits)
    };
    while let Some((_, message)) = messages.next_message()? {
        progress.set_position(messages.position());
        let batch = match message {
            eeg_schema::RawMessage::Batch(b) => b,
            // An event goes where the file has it: right after the message before it.
            eeg_schema::RawMessage::Event(e) => {
                player.play_event(e)?;
                continue;
            }
        };
        // Due once its last sample has been acquired, as a device sends it.
        let t0 = *first_ms.get_or_insert(batch.start_ms);
        let at_s = (batch.start_ms - t0).max(0) as f64 / 1000.0
            + batch.samples_per_channel() as f64 / batch.sample_rate_hz;
        player.play(batch, at_s)?;
    }
    Ok(())
}

/// The default session id of a replay: the file's stem, the run's UTC time to the second
/// and the process id (two runs in one second), so that replaying a file again is a new
/// session, not duplicates of the last one.
fn run_session_id(path: &Path, now: SystemTime, pid: u32) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "session".into());
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = eeg_offline::time::civil_from_days(days);
    format!(
        "{stem}-{y:04}{m:02}{d:02}T{:02}{:02}{:02}-{pid}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// One session of the file being cut into messages.
struct Stream {
    session_id: String,
    device_id: String,
    user_id: Option<String>,
    rate: f64,
    signals: Vec<usize>,
    labels: Vec<String>,
    /// Samples not yet sent, one row per channel (in µV; empty when `digital` holds them).
    rows: Vec<Vec<f64>>,
    /// For Protocol Buffers: the samples as the file stores them, with their scaling.
    digital: Option<DigitalRows>,
    /// Samples sent since the (last) start; the next message's first sample.
    sent: u64,
    seq: u64,
    t0_ms: i64,
    /// Where the (last) start lies in the recording, s: what event onsets count from.
    start_s: f64,
    /// Events whose onset's message is not sent yet, in order of onset.
    waiting: std::collections::VecDeque<(u64, eeg_schema::Event)>,
}

/// A stream's digital samples not yet sent, and what turns them into the reader's values.
struct DigitalRows {
    rows: Vec<Vec<i32>>,
    /// Per channel, `SignalHeader::scaling()`: bitvalue and offset.
    scale: Vec<f64>,
    offset: Vec<f64>,
    units: RawUnits,
    bytes_per_sample: u8,
    /// One message's samples, channel-major.
    data: Vec<i32>,
}

impl DigitalRows {
    /// The signals' digital values with their scaling, when one unit the wire format names
    /// (µV, mV or V) covers them all, so that the consumer's arithmetic is the reader's
    /// exactly. Signals in another unit (a physical dimension other than a voltage is taken
    /// as µV, as the reader does) or in nV have no such unit: `None`.
    fn new(header: &eeg_edf::Header, signals: &[usize]) -> Option<DigitalRows> {
        let data: Vec<&eeg_edf::SignalHeader> = header.data_signals().map(|(_, s)| s).collect();
        let mut units = None;
        let (mut scale, mut offset) = (Vec::new(), Vec::new());
        for &i in signals {
            let h = data[i];
            let u = match h.microvolts_per_unit().unwrap_or(1.0) {
                1.0 => RawUnits::Microvolts,
                1e3 => RawUnits::Millivolts,
                1e6 => RawUnits::Volts,
                _ => return None,
            };
            if units.is_some_and(|v| v != u) {
                return None;
            }
            units = Some(u);
            let (b, o) = h.scaling();
            scale.push(b);
            offset.push(o);
        }
        Some(DigitalRows {
            rows: vec![Vec::new(); signals.len()],
            scale,
            offset,
            units: units?,
            bytes_per_sample: header.format.bytes_per_sample() as u8,
            data: Vec::new(),
        })
    }
}

impl Stream {
    /// Samples per channel waiting to be sent.
    fn pending(&self) -> usize {
        match &self.digital {
            Some(d) => d.rows[0].len(),
            None => self.rows[0].len(),
        }
    }

    fn start_ms(&self) -> i64 {
        self.t0_ms + (self.sent as f64 * 1000.0 / self.rate).round() as i64
    }

    /// Sends the next `n` samples per channel at `at_s`.
    fn send(&mut self, n: usize, at_s: f64, player: &mut Player) -> anyhow::Result<()> {
        if self.digital.is_none() {
            let batch = self.batch(n)?;
            return player.play(batch, at_s);
        }
        let start_ms = self.start_ms();
        let d = self.digital.as_mut().expect("digital");
        d.data.clear();
        for row in &mut d.rows {
            d.data.extend(row.drain(..n));
        }
        let meta = RawMeta {
            session_id: &self.session_id,
            device_id: &self.device_id,
            user_id: self.user_id.as_deref(),
            seq: self.seq,
            start_ms,
            sample_rate_hz: self.rate,
            channels: &self.labels,
            units: d.units,
        };
        let samples = RawSamples::Digital {
            bytes_per_sample: d.bytes_per_sample,
            data: &d.data,
            scale: &d.scale,
            offset: &d.offset,
        };
        player.play_digital(&meta, samples, at_s)?;
        self.seq += 1;
        self.sent += n as u64;
        Ok(())
    }

    fn batch(&mut self, n: usize) -> anyhow::Result<RawBatch> {
        let mut samples = Vec::with_capacity(n * self.rows.len());
        for row in &mut self.rows {
            samples.extend(row.drain(..n));
        }
        let start_ms = self.start_ms();
        let batch = RawBatch::new(
            RawBatchParts {
                session_id: self.session_id.clone(),
                device_id: self.device_id.clone(),
                user_id: self.user_id.clone(),
                seq: self.seq,
                start_ms,
                sample_rate_hz: self.rate,
                channels: self.labels.clone(),
                samples,
            },
            &Limits::default(),
        )?;
        self.seq += 1;
        self.sent += n as u64;
        Ok(batch)
    }

    /// Takes a record's events: sent now when `early` (before the message holding their
    /// onset), else kept until that message is sent. An onset before the stream's start has
    /// no sample: it goes now, in Unix ms.
    fn take_events(
        &mut self,
        notes: &[eeg_offline::RecordEvent],
        t0: i64,
        early: bool,
        player: &mut Player,
    ) -> anyhow::Result<()> {
        for note in notes {
            match note.to_event(&self.session_id, self.rate, self.start_s) {
                (e, false) if !early => {
                    let sample = e.onset.sample().unwrap_or(0);
                    let at = self.waiting.partition_point(|(s, _)| *s <= sample);
                    self.waiting.insert(at, (sample, e));
                }
                (e, false) => player.play_event(e)?,
                (mut e, true) => {
                    e.onset = eeg_schema::Onset::UnixMs(t0 as f64 + note.onset_s * 1000.0);
                    player.play_event(e)?;
                }
            }
        }
        Ok(())
    }

    /// Sends the events waiting whose onset lies before sample `sent`.
    fn send_events(&mut self, sent: u64, player: &mut Player) -> anyhow::Result<()> {
        while self.waiting.front().is_some_and(|(s, _)| *s < sent) {
            if let Some((_, e)) = self.waiting.pop_front() {
                player.play_event(e)?;
            }
        }
        Ok(())
    }

    /// When a message of the next `n` samples is due, in seconds of recording from
    /// `file_t0_ms`: once its last sample has been acquired, as a device sends it.
    fn due_s(&self, file_t0_ms: i64, n: usize) -> f64 {
        (self.t0_ms - file_t0_ms) as f64 / 1000.0 + (self.sent + n as u64) as f64 / self.rate
    }
}

fn replay_edf(
    mut reader: eeg_edf::EdfReader<BufReader<File>>,
    groups: Vec<eeg_offline::SessionGroup>,
    mut events: eeg_offline::RecordEvents<BufReader<File>>,
    args: &ReplayArgs,
    player: &mut Player,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let header = reader.header().clone();
    let t0 = header.start_unix_ms();
    let duration = header.record_duration_s;
    // Digital values only when every session's signals have them in a unit the wire format
    // names; else 64-bit floats of the reader's values, exact too.
    let digital: Option<Vec<DigitalRows>> = if args.encoding == Encoding::Protobuf {
        groups
            .iter()
            .map(|g| DigitalRows::new(&header, &g.signals))
            .collect()
    } else {
        None
    };
    if args.encoding == Encoding::Protobuf && digital.is_none() && !args.quiet {
        eprintln!(
            "{}: signals in nV or in different units: sent as 64-bit floats of their µV values, not as digital values",
            reader.name()
        );
    }
    let mut digital = digital.map(Vec::into_iter);
    let mut streams: Vec<Stream> = groups
        .into_iter()
        .map(|g| Stream {
            rows: vec![Vec::new(); g.signals.len()],
            digital: digital.as_mut().and_then(Iterator::next),
            session_id: g.session_id,
            device_id: g.device_id,
            user_id: args.user_id.clone(),
            rate: g.rate,
            signals: g.signals,
            labels: g.labels,
            sent: 0,
            seq: 0,
            t0_ms: t0,
            start_s: 0.0,
            waiting: std::collections::VecDeque::new(),
        })
        .collect();
    let mut notes = Vec::new();
    let chunk = args.chunk as usize;
    let as_digital = streams.iter().all(|s| s.digital.is_some());
    let mut record = eeg_edf::Record::default();
    let mut digital_record = eeg_edf::DigitalRecord::default();
    let mut expected_onset: Option<f64> = None;
    loop {
        let more = if as_digital {
            reader.read_record_digital(&mut digital_record)
        } else {
            reader.read_record(&mut record)
        };
        if !more.map_err(|e| BadInput(e.to_string()))? {
            break;
        }
        progress.inc(header.record_bytes());
        let onset = if as_digital {
            digital_record.onset_s()
        } else {
            record.onset_s()
        };
        if let Some(expected) = expected_onset
            && (onset - expected).abs() > 1e-6
        {
            // EDF+D: a stretch of recording is missing. The rest is sent as the session's
            // later batches, skipping one seq so the consumer sees the gap and restarts the
            // session's filters, as `process` does.
            for s in &mut streams {
                flush(s, player, t0, chunk)?;
                s.send_events(u64::MAX, player)?;
                s.seq += 1;
                s.sent = 0;
                s.t0_ms = t0 + (onset * 1000.0).round() as i64;
                s.start_s = onset;
            }
        }
        expected_onset = Some(onset + duration);
        notes.clear();
        if as_digital {
            events.record_digital(&reader, &digital_record, &mut notes)?;
        } else {
            events.record(&reader, &record, &mut notes)?;
        }
        for s in &mut streams {
            s.take_events(&notes, t0, args.events_early, player)?;
        }
        for s in &mut streams {
            match &mut s.digital {
                Some(d) => {
                    for (row, &sig) in d.rows.iter_mut().zip(&s.signals) {
                        row.extend_from_slice(digital_record.signal(sig));
                    }
                }
                None => {
                    for (row, &sig) in s.rows.iter_mut().zip(&s.signals) {
                        row.extend_from_slice(record.signal(sig));
                    }
                }
            }
            while s.pending() >= chunk {
                let at = s.due_s(t0, chunk);
                s.send(chunk, at, player)?;
                s.send_events(s.sent, player)?;
            }
        }
    }
    for s in &mut streams {
        flush(s, player, t0, chunk)?;
        s.send_events(u64::MAX, player)?;
    }
    Ok(())
}

/// Sends what is left of a stream's samples, in messages of at most `chunk`.
fn flush(s: &mut Stream, player: &mut Player, t0: i64, chunk: usize) -> anyhow::Result<()> {
    while s.pending() > 0 {
        let n = s.pending().min(chunk);
        let at = s.due_s(t0, n);
        s.send(n, at, player)?;
        s.send_events(s.sent, player)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_is_named_after_its_file_and_the_time_of_the_run() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_220_903);
        assert_eq!(
            run_session_id(Path::new("/data/rec.edf"), at, 4821),
            "rec-20261202T141503-4821"
        );
    }
}
