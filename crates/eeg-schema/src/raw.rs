//! `eeg.raw/1`: decoding with validation, the validated [`RawBatch`], canonical encoding.

use crate::error::{SchemaError, field, from_json, input_field_name, quote};
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use std::borrow::Cow;
use std::fmt;

/// The `schema` value of a raw batch.
pub const RAW_SCHEMA: &str = "eeg.raw/1";

/// The units a batch may be in, as its error messages list them.
pub(crate) const UNITS_EXPECTED: &str = "\"uV\" (or \"µV\", \"μV\"), \"mV\" or \"V\"";

mod fast;

/// Longest `session_id`, `device_id` or `user_id`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME_BYTES: usize = 64;

/// Size limits of a raw batch, so that one message cannot make the consumer allocate or
/// compute without bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest message, in bytes; checked before parsing. Default 4 MiB.
    pub max_message_bytes: usize,
    /// Most channels (names and rows). Default 1024.
    pub max_channels: usize,
    /// Most samples in one channel's row. Default 65 536.
    pub max_samples_per_channel: usize,
    /// Highest `sample_rate_hz`. Default 100 000.
    pub max_sample_rate_hz: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::for_sessions(&eeg_dsp::SessionLimits::default())
    }
}

impl Limits {
    /// The default sizes with the channel count and rate that `sessions` accept, so a batch
    /// the sessions would take is never refused by the decoder first.
    pub fn for_sessions(sessions: &eeg_dsp::SessionLimits) -> Limits {
        Limits {
            max_message_bytes: 4 << 20,
            max_channels: sessions.max_channels,
            max_samples_per_channel: 65_536,
            max_sample_rate_hz: sessions.max_sample_rate_hz,
        }
    }
}

/// A validated raw batch. Samples are in µV, stored channel-major in one buffer.
///
/// The metadata fields are public for reading; the samples are reached through
/// [`RawBatch::rows`], [`RawBatch::row`] and [`RawBatch::samples`], which keeps the buffer
/// and its row length consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBatch {
    pub session_id: String,
    pub device_id: String,
    pub user_id: Option<String>,
    /// Counts the batches of a session from 0.
    pub seq: u64,
    /// Unix time of the first sample, ms.
    pub start_ms: i64,
    pub sample_rate_hz: f64,
    pub channels: Vec<String>,
    /// Row `c` is `samples[c * per_channel..(c + 1) * per_channel]`.
    pub(crate) samples: Vec<f64>,
    /// At least 1.
    pub(crate) per_channel: usize,
}

/// Everything a [`RawBatch`] is made of, for [`RawBatch::new`] and [`RawBatch::into_parts`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawBatchParts {
    pub session_id: String,
    pub device_id: String,
    pub user_id: Option<String>,
    pub seq: u64,
    pub start_ms: i64,
    pub sample_rate_hz: f64,
    pub channels: Vec<String>,
    /// Channel-major samples in µV: `channels.len()` rows of equal length, one after another.
    pub samples: Vec<f64>,
}

impl RawBatch {
    /// A batch from its parts, validated by the same rules as [`decode_raw`] (except the
    /// message size, which only applies to encoded messages).
    pub fn new(parts: RawBatchParts, limits: &Limits) -> Result<RawBatch, SchemaError> {
        let rows = parts.channels.len();
        let per_channel = if rows == 0 {
            0
        } else {
            if !parts.samples.len().is_multiple_of(rows) {
                return Err(field(
                    "samples",
                    format!(
                        "{} values do not split into {rows} rows of equal length",
                        parts.samples.len()
                    ),
                ));
            }
            parts.samples.len() / rows
        };
        let header = Header {
            session_id: &parts.session_id,
            device_id: &parts.device_id,
            user_id: parts.user_id.as_deref(),
            start_ms: parts.start_ms,
            sample_rate_hz: parts.sample_rate_hz,
            channels: &parts.channels,
            rows,
            per_channel,
        };
        header.validate(limits)?;
        check_finite(
            &parts.samples,
            per_channel,
            &parts.channels,
            Units::Microvolts,
        )?;
        Ok(RawBatch {
            session_id: parts.session_id,
            device_id: parts.device_id,
            user_id: parts.user_id,
            seq: parts.seq,
            start_ms: parts.start_ms,
            sample_rate_hz: parts.sample_rate_hz,
            channels: parts.channels,
            samples: parts.samples,
            per_channel,
        })
    }

    /// The batch taken apart, e.g. to change a field and validate again with [`RawBatch::new`].
    pub fn into_parts(self) -> RawBatchParts {
        RawBatchParts {
            session_id: self.session_id,
            device_id: self.device_id,
            user_id: self.user_id,
            seq: self.seq,
            start_ms: self.start_ms,
            sample_rate_hz: self.sample_rate_hz,
            channels: self.channels,
            samples: self.samples,
        }
    }

    /// Number of channels (rows).
    pub fn n_channels(&self) -> usize {
        self.samples.len() / self.per_channel
    }

    /// Samples in each channel's row (at least 1).
    pub fn samples_per_channel(&self) -> usize {
        self.per_channel
    }

    /// All samples, channel-major, in µV.
    pub fn samples(&self) -> &[f64] {
        &self.samples
    }

    /// The samples of channel `channel`, in µV.
    ///
    /// # Panics
    /// If `channel >= self.n_channels()`, like slice indexing; see [`RawBatch::get_row`].
    pub fn row(&self, channel: usize) -> &[f64] {
        &self.samples[channel * self.per_channel..(channel + 1) * self.per_channel]
    }

    /// The samples of channel `channel`, in µV, or `None` if there is no such channel.
    pub fn get_row(&self, channel: usize) -> Option<&[f64]> {
        let start = channel.checked_mul(self.per_channel)?;
        self.samples
            .get(start..start.checked_add(self.per_channel)?)
    }

    /// Each channel's samples in channel order, in µV.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f64]> + '_ {
        self.samples.chunks_exact(self.per_channel)
    }

    /// The canonical JSON of the batch: fields in the order of the format description,
    /// `user_id` only when present, `units` always `"uV"`, numbers in their shortest form that
    /// reads back to the same `f64`. [`decode_raw`] gives back an equal batch.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.samples.len() * 20);
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical JSON of [`RawBatch::encode`] to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct Wire<'a> {
            schema: &'static str,
            session_id: &'a str,
            device_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            user_id: Option<&'a str>,
            seq: u64,
            start_ms: i64,
            sample_rate_hz: f64,
            channels: &'a [String],
            units: &'static str,
            samples: Rows<'a>,
        }
        struct Rows<'a>(&'a RawBatch);
        impl Serialize for Rows<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.n_channels()))?;
                for row in self.0.rows() {
                    seq.serialize_element(row)?;
                }
                seq.end()
            }
        }
        let wire = Wire {
            schema: RAW_SCHEMA,
            session_id: &self.session_id,
            device_id: &self.device_id,
            user_id: self.user_id.as_deref(),
            seq: self.seq,
            start_ms: self.start_ms,
            sample_rate_hz: self.sample_rate_hz,
            channels: &self.channels,
            units: "uV",
            samples: Rows(self),
        };
        // Writing to a Vec cannot fail, and strings, integers and f64 always serialise (the
        // samples are finite by construction).
        let _ = serde_json::to_writer(out, &wire);
    }
}

/// Decodes one `eeg.raw/1` message and validates it (see the crate documentation for the
/// rules). Samples in `mV` or `V` are converted to µV.
///
/// The message is read straight into the batch: the samples go into one flat buffer as they
/// are parsed, with row lengths and limits checked on the way. A scanner made for this one
/// format reads well-formed messages; anything it is not sure of (any error, an unknown or
/// repeated field, an unusual escape) is read again by the general serde decoder, which
/// gives the same result on every input the scanner accepts and words every error.
pub fn decode_raw(bytes: &[u8], limits: &Limits) -> Result<RawBatch, SchemaError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(too_large(bytes.len(), limits));
    }
    match fast::decode(bytes, limits) {
        Some(batch) => Ok(batch),
        None => decode_raw_reference(bytes, limits),
    }
}

/// [`decode_raw`] without its fast path: the serde decoder alone.
///
/// Public only so that the crate's tests and benchmarks can hold the fast path to it (a
/// cargo feature would leave the equivalence tests out of a plain `cargo test`); hidden
/// from the documentation because callers have no reason to prefer it.
#[doc(hidden)]
pub fn decode_raw_reference(bytes: &[u8], limits: &Limits) -> Result<RawBatch, SchemaError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(too_large(bytes.len(), limits));
    }
    let mut ctx = Ctx {
        limits,
        field: None,
        at: None,
        error: None,
        channels_hint: None,
        max_values: bytes.len() / 2,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = RawSeed(&mut ctx)
        .deserialize(&mut de)
        .and_then(|wire| de.end().map(|()| wire));
    match parsed {
        Ok(wire) => finish(wire, limits),
        Err(e) => Err(ctx.take_error(&e)),
    }
}

/// [`decode_raw`]'s fast path alone: `None` where it would hand the message to
/// [`decode_raw_reference`]. Public for the same reason as that function.
#[doc(hidden)]
pub fn decode_raw_fast(bytes: &[u8], limits: &Limits) -> Option<RawBatch> {
    if bytes.len() > limits.max_message_bytes {
        return None;
    }
    fast::decode(bytes, limits)
}

fn too_large(size: usize, limits: &Limits) -> SchemaError {
    SchemaError::TooLarge {
        size,
        limit: limits.max_message_bytes,
    }
}

/// Everything after parsing, shared by both decoders so that they validate and convert
/// identically: the checks of [`Header::validate`], the conversion to µV and the finiteness
/// check.
fn finish(mut wire: Wire, limits: &Limits) -> Result<RawBatch, SchemaError> {
    let header = Header {
        session_id: &wire.session_id,
        device_id: &wire.device_id,
        user_id: wire.user_id.as_deref(),
        start_ms: wire.start_ms,
        sample_rate_hz: wire.sample_rate_hz,
        channels: &wire.channels,
        rows: wire.rows,
        per_channel: wire.per_row,
    };
    header.validate(limits)?;
    let scale = wire.units.to_microvolts();
    if scale != 1.0 {
        for v in &mut wire.samples {
            *v *= scale;
        }
    }
    check_finite(&wire.samples, wire.per_row, &wire.channels, wire.units)?;
    Ok(RawBatch {
        session_id: wire.session_id,
        device_id: wire.device_id,
        user_id: wire.user_id,
        seq: wire.seq,
        start_ms: wire.start_ms,
        sample_rate_hz: wire.sample_rate_hz,
        channels: wire.channels,
        samples: wire.samples,
        per_channel: wire.per_row,
    })
}

/// The unit of the samples in a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Units {
    Microvolts,
    Millivolts,
    Volts,
}

impl Units {
    pub(crate) fn to_microvolts(self) -> f64 {
        match self {
            Units::Microvolts => 1.0,
            Units::Millivolts => 1e3,
            Units::Volts => 1e6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Units::Microvolts => "uV",
            Units::Millivolts => "mV",
            Units::Volts => "V",
        }
    }
}

/// The checks that do not look at sample values.
pub(crate) struct Header<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) device_id: &'a str,
    pub(crate) user_id: Option<&'a str>,
    pub(crate) start_ms: i64,
    pub(crate) sample_rate_hz: f64,
    pub(crate) channels: &'a [String],
    pub(crate) rows: usize,
    pub(crate) per_channel: usize,
}

impl Header<'_> {
    pub(crate) fn validate(&self, limits: &Limits) -> Result<(), SchemaError> {
        check_id("session_id", self.session_id)?;
        check_id("device_id", self.device_id)?;
        if let Some(u) = self.user_id {
            check_id("user_id", u)?;
        }
        if self.start_ms < 0 {
            return Err(field(
                "start_ms",
                format!("must be >= 0, got {}", self.start_ms),
            ));
        }
        let fs = self.sample_rate_hz;
        if !(fs.is_finite() && fs > 0.0) {
            return Err(field(
                "sample_rate_hz",
                format!("must be a finite number > 0, got {fs}"),
            ));
        }
        if fs > limits.max_sample_rate_hz {
            return Err(field(
                "sample_rate_hz",
                format!(
                    "must be at most {} (limits.max_sample_rate_hz; raise it in the config file to accept more), got {fs}",
                    limits.max_sample_rate_hz
                ),
            ));
        }
        check_channel_names(self.channels, limits)?;
        if self.rows != self.channels.len() {
            return Err(field(
                "channels",
                format!(
                    "{} names but 'samples' has {} rows",
                    self.channels.len(),
                    self.rows
                ),
            ));
        }
        if self.per_channel == 0 {
            return Err(field(
                "samples",
                "rows are empty, each needs at least 1 value",
            ));
        }
        if self.per_channel > limits.max_samples_per_channel {
            return Err(field(
                "samples",
                too_many_per_row(self.per_channel, limits.max_samples_per_channel),
            ));
        }
        Ok(())
    }
}

fn too_many_per_row(n: usize, limit: usize) -> String {
    format!("{n} samples per channel, at most {limit} (limit max_samples_per_channel)")
}

pub(crate) fn too_many_channels(n: usize, limit: usize) -> String {
    format!(
        "{n} channels, at most {limit} (limits.max_channels; raise it in the config file to accept more)"
    )
}

fn check_id(name: &'static str, v: &str) -> Result<(), SchemaError> {
    if v.is_empty() {
        return Err(field(name, "must not be empty"));
    }
    if v.len() > MAX_ID_BYTES {
        return Err(field(
            name,
            format!("is {} bytes, at most {MAX_ID_BYTES}", v.len()),
        ));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(field(
            name,
            format!("contains the control character {}", c.escape_unicode()),
        ));
    }
    Ok(())
}

fn check_channel_names(channels: &[String], limits: &Limits) -> Result<(), SchemaError> {
    if channels.is_empty() {
        return Err(field("channels", "must name at least one channel"));
    }
    if channels.len() > limits.max_channels {
        return Err(field(
            "channels",
            too_many_channels(channels.len(), limits.max_channels),
        ));
    }
    for (i, c) in channels.iter().enumerate() {
        if c.is_empty() {
            return Err(field("channels", format!("name {i} is empty")));
        }
        if c.len() > MAX_CHANNEL_NAME_BYTES {
            return Err(field(
                "channels",
                format!(
                    "name {i} is {} bytes, at most {MAX_CHANNEL_NAME_BYTES}",
                    c.len()
                ),
            ));
        }
        // Names end up in log lines and processed records; a control character there is
        // always a producer bug.
        if let Some(ch) = c.chars().find(|ch| ch.is_control()) {
            return Err(field(
                "channels",
                format!(
                    "name {i} contains the control character {}",
                    ch.escape_unicode()
                ),
            ));
        }
    }
    if let Some((first, second)) = find_duplicate(channels) {
        return Err(field(
            "channels",
            format!(
                "{} appears twice, at positions {first} and {second}",
                quote(&channels[first])
            ),
        ));
    }
    Ok(())
}

/// The positions of the first repeated name (the earliest second occurrence).
fn find_duplicate(names: &[String]) -> Option<(usize, usize)> {
    // Pairwise for the usual handful of channels; sorting positions by name otherwise, so
    // 1024 names cost n log n comparisons rather than half a million.
    if names.len() <= 32 {
        for (j, b) in names.iter().enumerate() {
            if let Some(i) = names[..j].iter().position(|a| a == b) {
                return Some((i, j));
            }
        }
        return None;
    }
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| names[a].cmp(&names[b]).then(a.cmp(&b)));
    order
        .windows(2)
        .filter(|w| names[w[0]] == names[w[1]])
        .map(|w| (w[0], w[1]))
        .min_by_key(|&(_, second)| second)
}

pub(crate) fn check_finite(
    samples: &[f64],
    per_channel: usize,
    channels: &[String],
    units: Units,
) -> Result<(), SchemaError> {
    let Some(i) = samples.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    // per_channel >= 1 here: validation rejects empty rows before the values are looked at.
    let (c, s) = (i / per_channel.max(1), i % per_channel.max(1));
    let name = channels.get(c).map_or_else(String::new, |n| quote(n));
    let problem = if units == Units::Microvolts {
        format!(
            "channel {c} ({name}) sample {s} is {}, must be a finite number",
            samples[i]
        )
    } else {
        format!(
            "channel {c} ({name}) sample {s} is {} µV after conversion from {}, must be a finite number",
            samples[i],
            units.name()
        )
    };
    Err(field("samples", problem))
}

/// What the parser knows while it reads a message, so that errors can name the field.
struct Ctx<'l> {
    limits: &'l Limits,
    /// The top-level field whose value is being read.
    field: Option<&'static str>,
    /// Row and index of the sample being read, when a sample fails to parse.
    at: Option<(usize, usize)>,
    /// A rule broken during parsing; the parser itself only carries a placeholder.
    error: Option<SchemaError>,
    /// Number of channel names, when `channels` came before `samples`: sizes the buffer.
    channels_hint: Option<usize>,
    /// Most sample values the message can contain, from its length.
    max_values: usize,
}

impl Ctx<'_> {
    /// Records `e` as the outcome and returns the placeholder that unwinds the parser.
    fn fail<E: de::Error>(&mut self, e: SchemaError) -> E {
        self.error = Some(e);
        E::custom("rejected")
    }

    fn take_error(&mut self, e: &serde_json::Error) -> SchemaError {
        if let Some(err) = self.error.take() {
            return err;
        }
        let err = from_json(e, self.field);
        match (err, self.at) {
            (SchemaError::Field { field, problem }, Some((row, i))) => SchemaError::Field {
                field,
                problem: format!("row {row} value {i}: {problem}"),
            },
            (err, _) => err,
        }
    }
}

/// The fields of a message as parsed, before validation.
struct Wire {
    session_id: String,
    device_id: String,
    user_id: Option<String>,
    seq: u64,
    start_ms: i64,
    sample_rate_hz: f64,
    channels: Vec<String>,
    units: Units,
    samples: Vec<f64>,
    rows: usize,
    per_row: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Key {
    Schema,
    SessionId,
    DeviceId,
    UserId,
    Seq,
    StartMs,
    SampleRateHz,
    Channels,
    Units,
    Samples,
}

const KEYS: [(&str, Key); 10] = [
    ("schema", Key::Schema),
    ("session_id", Key::SessionId),
    ("device_id", Key::DeviceId),
    ("user_id", Key::UserId),
    ("seq", Key::Seq),
    ("start_ms", Key::StartMs),
    ("sample_rate_hz", Key::SampleRateHz),
    ("channels", Key::Channels),
    ("units", Key::Units),
    ("samples", Key::Samples),
];

const KEY_LIST: &str = "schema, session_id, device_id, user_id, seq, start_ms, sample_rate_hz, channels, units, samples";

/// A key of the top-level object: known (by its static name) or unknown (escaped copy).
enum ParsedKey {
    Known(&'static str, Key),
    Unknown(Cow<'static, str>),
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = ParsedKey;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ParsedKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = ParsedKey;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ParsedKey, E> {
        Ok(match KEYS.iter().find(|(name, _)| *name == v) {
            Some(&(name, key)) => ParsedKey::Known(name, key),
            None => ParsedKey::Unknown(input_field_name(v)),
        })
    }
}

/// A value other than the one expected, quoted for the message.
struct Unexpected(String);

/// A string compared with an expected value without copying it; a mismatch yields the
/// quoted value for the message.
struct Exact(&'static str);

impl<'de> DeserializeSeed<'de> for Exact {
    type Value = Result<(), Unexpected>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Exact {
    type Value = Result<(), Unexpected>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the string \"{}\"", self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(if v == self.0 {
            Ok(())
        } else {
            Err(Unexpected(quote(v)))
        })
    }
}

/// `units`: a unit name (`null` means the default), or the quoted unknown name.
struct UnitsSeed;

impl<'de> DeserializeSeed<'de> for UnitsSeed {
    type Value = Result<Units, Unexpected>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for UnitsSeed {
    type Value = Result<Units, Unexpected>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(UNITS_EXPECTED)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Units::Microvolts))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Units::Microvolts))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match v {
            "uV" | "µV" | "μV" => Ok(Units::Microvolts),
            "mV" => Ok(Units::Millivolts),
            "V" => Ok(Units::Volts),
            other => Err(Unexpected(quote(other))),
        })
    }
}

/// The whole message.
struct RawSeed<'c, 'l>(&'c mut Ctx<'l>);

impl<'de> DeserializeSeed<'de> for RawSeed<'_, '_> {
    type Value = Wire;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Wire, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RawSeed<'_, '_> {
    type Value = Wire;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an eeg.raw/1 JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire, A::Error> {
        let ctx = self.0;
        let mut seen = [false; KEYS.len()];
        let mut schema: Option<Result<(), Unexpected>> = None;
        let mut session_id: Option<String> = None;
        let mut device_id: Option<String> = None;
        let mut user_id: Option<String> = None;
        let mut seq: Option<u64> = None;
        let mut start_ms: Option<i64> = None;
        let mut sample_rate_hz: Option<f64> = None;
        let mut channels: Option<Vec<String>> = None;
        let mut units = Ok(Units::Microvolts);
        let mut samples: Option<Rows> = None;
        // Reported only after the schema check: a message of another version most likely
        // has other fields, and "wrong schema" is the useful message then.
        let mut unknown: Option<Cow<'static, str>> = None;

        while let Some(key) = map.next_key_seed(KeySeed)? {
            let (name, key) = match key {
                ParsedKey::Known(name, key) => (name, key),
                ParsedKey::Unknown(name) => {
                    unknown.get_or_insert(name);
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let slot = &mut seen[key as usize];
            if *slot {
                return Err(ctx.fail(field(name, "appears twice")));
            }
            *slot = true;
            ctx.field = Some(name);
            match key {
                Key::Schema => schema = Some(map.next_value_seed(Exact(RAW_SCHEMA))?),
                Key::SessionId => session_id = Some(map.next_value()?),
                Key::DeviceId => device_id = Some(map.next_value()?),
                Key::UserId => user_id = map.next_value()?,
                Key::Seq => seq = Some(map.next_value()?),
                Key::StartMs => start_ms = Some(map.next_value()?),
                Key::SampleRateHz => sample_rate_hz = Some(map.next_value()?),
                Key::Channels => {
                    let names: Vec<String> = map.next_value()?;
                    ctx.channels_hint = Some(names.len());
                    channels = Some(names);
                }
                Key::Units => units = map.next_value_seed(UnitsSeed)?,
                Key::Samples => samples = Some(map.next_value_seed(RowsSeed(&mut *ctx))?),
            }
            ctx.field = None;
        }

        match schema {
            None => return Err(ctx.fail(field("schema", "is missing"))),
            Some(Err(Unexpected(got))) => {
                return Err(ctx.fail(field(
                    "schema",
                    format!("expected \"{RAW_SCHEMA}\", got {got}"),
                )));
            }
            Some(Ok(())) => {}
        }
        if let Some(name) = unknown {
            return Err(ctx.fail(SchemaError::Field {
                field: name,
                problem: format!("unknown field ({RAW_SCHEMA} has {KEY_LIST})"),
            }));
        }
        let units = match units {
            Ok(u) => u,
            Err(Unexpected(got)) => {
                return Err(ctx.fail(field(
                    "units",
                    format!("expected {UNITS_EXPECTED}, got {got}"),
                )));
            }
        };
        macro_rules! required {
            ($v:ident) => {
                match $v {
                    Some(v) => v,
                    None => return Err(ctx.fail(field(stringify!($v), "is missing"))),
                }
            };
        }
        let session_id = required!(session_id);
        let device_id = required!(device_id);
        let seq = required!(seq);
        let start_ms = required!(start_ms);
        let sample_rate_hz = required!(sample_rate_hz);
        let channels = required!(channels);
        let samples = required!(samples);
        Ok(Wire {
            session_id,
            device_id,
            user_id,
            seq,
            start_ms,
            sample_rate_hz,
            channels,
            units,
            samples: samples.flat,
            rows: samples.rows,
            per_row: samples.per_row,
        })
    }
}

/// The `samples` array read into one flat buffer, checking row lengths and limits as it goes.
struct Rows {
    flat: Vec<f64>,
    rows: usize,
    per_row: usize,
}

struct RowsSeed<'c, 'l>(&'c mut Ctx<'l>);

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = Rows;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Rows, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = Rows;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of rows of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
        let ctx = self.0;
        let (max_rows, max_per_row) = (ctx.limits.max_channels, ctx.limits.max_samples_per_channel);
        let mut out = Rows {
            flat: Vec::with_capacity(64),
            rows: 0,
            per_row: 0,
        };
        loop {
            let row = Row {
                flat: &mut out.flat,
                index: out.rows,
                max: max_per_row,
                at: &mut ctx.at,
                error: &mut ctx.error,
            };
            let Some(n) = seq.next_element_seed(row)? else {
                break;
            };
            if out.rows == 0 {
                if n == 0 {
                    return Err(ctx.fail(field(
                        "samples",
                        "row 0 is empty, each row needs at least 1 value",
                    )));
                }
                out.per_row = n;
                // The other rows have the same length: one allocation for the batch. The
                // names only claim how many rows follow, so the reservation is also capped by
                // what the rest of the message can hold (a value takes at least 2 bytes),
                // lest a small message make the decoder reserve gigabytes.
                let more_rows = ctx
                    .channels_hint
                    .unwrap_or(1)
                    .min(max_rows)
                    .saturating_sub(1);
                let room = ctx.max_values.saturating_sub(out.flat.len());
                out.flat
                    .reserve_exact(more_rows.saturating_mul(n).min(room));
            } else if n != out.per_row {
                return Err(ctx.fail(field(
                    "samples",
                    format!(
                        "row {} has {n} values, expected {} (same as row 0)",
                        out.rows, out.per_row
                    ),
                )));
            }
            out.rows += 1;
            if out.rows > max_rows {
                return Err(ctx.fail(field(
                    "samples",
                    format!("more than {max_rows} rows, at most {max_rows} (limits.max_channels; raise it in the config file to accept more)"),
                )));
            }
        }
        Ok(out)
    }
}

/// One row appended to the flat buffer. Yields the row's length; a row over the limit
/// records the problem in `error` and fails the parse.
struct Row<'a> {
    flat: &'a mut Vec<f64>,
    index: usize,
    max: usize,
    at: &'a mut Option<(usize, usize)>,
    /// [`Ctx::error`].
    error: &'a mut Option<SchemaError>,
}

impl<'de> DeserializeSeed<'de> for Row<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Row<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut n = 0;
        loop {
            match seq.next_element::<f64>() {
                Ok(Some(v)) => self.flat.push(v),
                Ok(None) => return Ok(n),
                Err(e) => {
                    *self.at = Some((self.index, n));
                    return Err(e);
                }
            }
            n += 1;
            if n > self.max {
                // An error, not a short row: the parser checks that a sequence its visitor
                // left early has ended, and would report the values still to come as
                // "trailing characters" instead of the limit.
                *self.error = Some(field(
                    "samples",
                    format!(
                        "row {} has more than {} values (limit max_samples_per_channel)",
                        self.index, self.max
                    ),
                ));
                return Err(de::Error::custom("rejected"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn duplicates_are_found_pairwise_and_by_sorting() {
        assert_eq!(find_duplicate(&names(&["a", "b", "a", "b"])), Some((0, 2)));
        assert_eq!(find_duplicate(&names(&["a", "b", "c"])), None);
        let mut many: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        assert_eq!(find_duplicate(&many), None);
        many[70] = "c5".into();
        many[90] = "c40".into();
        assert_eq!(find_duplicate(&many), Some((5, 70)));
    }

    #[test]
    fn rows_of_a_batch_are_its_channels() {
        let b = RawBatch::new(
            RawBatchParts {
                session_id: "s".into(),
                device_id: "d".into(),
                sample_rate_hz: 250.0,
                channels: names(&["A", "B", "C"]),
                samples: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                ..RawBatchParts::default()
            },
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(b.n_channels(), 3);
        assert_eq!(b.samples_per_channel(), 2);
        assert_eq!(b.row(1), [3.0, 4.0]);
        assert_eq!(b.get_row(2), Some(&[5.0, 6.0][..]));
        assert_eq!(b.get_row(3), None);
        assert_eq!(b.get_row(usize::MAX), None);
        assert_eq!(b.rows().len(), 3);
    }

    #[test]
    fn new_rejects_samples_that_do_not_split_into_rows() {
        let e = RawBatch::new(
            RawBatchParts {
                session_id: "s".into(),
                device_id: "d".into(),
                sample_rate_hz: 250.0,
                channels: names(&["A", "B"]),
                samples: vec![1.0, 2.0, 3.0],
                ..RawBatchParts::default()
            },
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field 'samples': 3 values do not split into 2 rows of equal length"
        );
    }
}
