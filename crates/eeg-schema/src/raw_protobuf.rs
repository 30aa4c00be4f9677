//! Binary `eeg.raw/1`: the Protocol Buffers encoding of a raw batch (`proto/eeg_raw_v1.proto`),
//! choosing it by the Kafka record's `content-type`, decoding with the JSON decoder's
//! validation, and encoding for producers and replay.

use crate::error::{SchemaError, field, one_line, quote};
use crate::raw::{
    Header, Limits, RAW_SCHEMA, RawBatch, Units, check_finite, decode_raw, too_many_channels,
};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// The `content-type` of a binary `eeg.raw/1` message.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
/// The `content-type` of a JSON `eeg.raw/1` message (also assumed without the header).
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// The full name of the message in the `.proto`, as a `messageType` parameter gives it.
pub const RAW_PROTOBUF_MESSAGE: &str = "eeg.raw.v1.RawBatch";
/// The text of `eeg_raw_v1.proto`, the contract for producers in any language.
pub const RAW_PROTO: &str = include_str!("../proto/eeg_raw_v1.proto");

/// How an `eeg.raw/1` message is encoded, from the Kafka record's `content-type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RawEncoding {
    /// UTF-8 JSON ([`decode_raw`]); what a record without `content-type` holds.
    #[default]
    Json,
    /// Protocol Buffers, `eeg.raw.v1.RawBatch` ([`decode_raw_protobuf`]).
    Protobuf,
}

impl RawEncoding {
    /// The encoding named by a `content-type` header value, `None` when the record has no
    /// such header (JSON, as before binary messages existed).
    ///
    /// `application/json` gives [`RawEncoding::Json`]; `application/x-protobuf` and
    /// `application/protobuf` give [`RawEncoding::Protobuf`]. The media type is compared
    /// without regard to case and may be followed by parameters (`; charset=utf-8`,
    /// `; messageType=eeg.raw.v1.RawBatch`); a `messageType` that names another message is
    /// an error, since protobuf would decode most other messages into garbage rather than
    /// fail. Anything else is an error naming the header and quoting its value.
    pub fn from_content_type(value: Option<&[u8]>) -> Result<RawEncoding, SchemaError> {
        let (encoding, message_type) = parse_content_type(value)?;
        if let Some(name) = message_type
            && name != RAW_PROTOBUF_MESSAGE
        {
            return Err(content_type_error(format!(
                "messageType {} is not {RAW_PROTOBUF_MESSAGE}",
                quote(name)
            )));
        }
        Ok(encoding)
    }

    /// A short name for logs and metrics: `json` or `protobuf`.
    pub fn name(self) -> &'static str {
        match self {
            RawEncoding::Json => "json",
            RawEncoding::Protobuf => "protobuf",
        }
    }

    /// The `content-type` a producer sets for this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            RawEncoding::Json => JSON_CONTENT_TYPE,
            RawEncoding::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }
}

/// The encoding a `content-type` names and, for protobuf, the `messageType` parameter's
/// value (without a leading dot) when there is one.
fn parse_content_type(value: Option<&[u8]>) -> Result<(RawEncoding, Option<&str>), SchemaError> {
    let Some(raw) = value else {
        return Ok((RawEncoding::Json, None));
    };
    let unknown = || {
        content_type_error(format!(
            "expected {JSON_CONTENT_TYPE} or {PROTOBUF_CONTENT_TYPE}, got {}",
            quote(&String::from_utf8_lossy(raw))
        ))
    };
    let text = std::str::from_utf8(raw).map_err(|_| unknown())?;
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim_matches(is_ows);
    let encoding = if essence.eq_ignore_ascii_case(JSON_CONTENT_TYPE) {
        RawEncoding::Json
    } else if essence.eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE)
        || essence.eq_ignore_ascii_case("application/protobuf")
    {
        RawEncoding::Protobuf
    } else {
        return Err(unknown());
    };
    let mut message_type = None;
    for param in parts {
        let param = param.trim_matches(is_ows);
        if param.is_empty() {
            continue;
        }
        let Some((name, value)) = param.split_once('=') else {
            return Err(unknown());
        };
        let value = value.trim_matches(is_ows);
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if encoding == RawEncoding::Protobuf
            && name
                .trim_matches(is_ows)
                .eq_ignore_ascii_case("messageType")
        {
            // A descriptor's full name may be written with a leading dot.
            message_type = Some(value.strip_prefix('.').unwrap_or(value));
        }
    }
    Ok((encoding, message_type))
}

/// A message of the raw topic: a session's batch or one of its events.
#[derive(Debug, Clone, PartialEq)]
pub enum RawMessage {
    Batch(RawBatch),
    Event(crate::Event),
}

/// Decodes a message of the raw topic, choosing the message by the record's
/// `content-type`: a binary record is an `eeg.event.v1.Event` when its `messageType` says
/// so and an `eeg.raw.v1.RawBatch` otherwise (a `messageType` naming anything else is an
/// error); a JSON record is an event when its `schema` is `eeg.event/1`
/// ([`crate::is_event_json`]) and a batch otherwise.
pub fn decode_raw_message(
    bytes: &[u8],
    content_type: Option<&[u8]>,
    limits: &Limits,
) -> Result<RawMessage, SchemaError> {
    let (encoding, message_type) = parse_content_type(content_type)?;
    match (encoding, message_type) {
        (RawEncoding::Json, _) if crate::is_event_json(bytes) => {
            crate::decode_event(bytes).map(RawMessage::Event)
        }
        (RawEncoding::Json, _) => decode_raw(bytes, limits).map(RawMessage::Batch),
        (RawEncoding::Protobuf, Some(crate::EVENT_PROTOBUF_MESSAGE)) => {
            crate::decode_event_protobuf(bytes).map(RawMessage::Event)
        }
        (RawEncoding::Protobuf, None | Some(RAW_PROTOBUF_MESSAGE)) => {
            decode_raw_protobuf(bytes, limits).map(RawMessage::Batch)
        }
        (RawEncoding::Protobuf, Some(other)) => Err(content_type_error(format!(
            "messageType {} is neither {RAW_PROTOBUF_MESSAGE} nor {}",
            quote(other),
            crate::EVENT_PROTOBUF_MESSAGE
        ))),
    }
}

/// Optional white space around the parts of a header value (RFC 9110).
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn content_type_error(problem: String) -> SchemaError {
    SchemaError::Header {
        header: "content-type",
        problem,
    }
}

/// Decodes one `eeg.raw/1` message in the given encoding: [`decode_raw`] or
/// [`decode_raw_protobuf`].
pub fn decode_raw_as(
    bytes: &[u8],
    encoding: RawEncoding,
    limits: &Limits,
) -> Result<RawBatch, SchemaError> {
    match encoding {
        RawEncoding::Json => decode_raw(bytes, limits),
        RawEncoding::Protobuf => decode_raw_protobuf(bytes, limits),
    }
}

/// The unit of the physical values in a message: what its `units` field says. A decoded
/// [`RawBatch`] always holds µV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RawUnits {
    /// µV (`"uV"`, also `"µV"` and `"μV"`), the default.
    #[default]
    Microvolts,
    /// mV (`"mV"`): the consumer multiplies by 1e3.
    Millivolts,
    /// V (`"V"`): the consumer multiplies by 1e6.
    Volts,
}

impl RawUnits {
    /// The unit named as `eeg.raw/1` names it: `"uV"`, `"µV"` (U+00B5), `"μV"` (U+03BC),
    /// `"mV"` or `"V"`. Other units (`"nV"`, `"degC"`, ...) cannot be sent as such: send
    /// their values converted to one of these, e.g. as float64.
    pub fn from_name(name: &str) -> Option<RawUnits> {
        match name {
            "uV" | "µV" | "μV" => Some(RawUnits::Microvolts),
            "mV" => Some(RawUnits::Millivolts),
            "V" => Some(RawUnits::Volts),
            _ => None,
        }
    }

    /// `"uV"`, `"mV"` or `"V"`.
    pub fn name(self) -> &'static str {
        match self {
            RawUnits::Microvolts => "uV",
            RawUnits::Millivolts => "mV",
            RawUnits::Volts => "V",
        }
    }

    /// The factor to µV: 1, 1e3 or 1e6.
    pub fn to_microvolts(self) -> f64 {
        self.units().to_microvolts()
    }

    fn units(self) -> Units {
        match self {
            RawUnits::Microvolts => Units::Microvolts,
            RawUnits::Millivolts => Units::Millivolts,
            RawUnits::Volts => Units::Volts,
        }
    }
}

// The message types, written out with prost's derive rather than generated from the
// .proto by prost-build in a build script. Clean builds on the project's 2-core machine: in
// this workspace prost, prost-derive and bytes take about 8 s of compile time, which runs
// beside eeg-dsp's, so a clean build is hardly longer. prost-build and protox as
// build-dependencies took 50 s against 9 s for prost alone in a scratch crate: a build script
// that every clean build of everything depending on this crate (the service's dev, release
// and container builds, and CI's clippy and test builds, once per profile) would wait for.
// The .proto stays the contract: the test `types_match_the_proto` compiles it with protox (a
// dev-dependency, so only test builds pay for it, and unoptimised: see the root Cargo.toml)
// and checks that messages these types encode decode field by field with the .proto's
// descriptors, and the reverse.
//
// The names are those of the .proto: prost's decode errors name "RawBatch.channels" etc.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct RawBatch {
        #[prost(string, tag = "1")]
        pub schema: String,
        #[prost(string, tag = "2")]
        pub session_id: String,
        #[prost(string, tag = "3")]
        pub device_id: String,
        #[prost(string, optional, tag = "4")]
        pub user_id: Option<String>,
        #[prost(uint64, tag = "5")]
        pub seq: u64,
        #[prost(int64, tag = "6")]
        pub start_ms: i64,
        #[prost(double, tag = "7")]
        pub sample_rate_hz: f64,
        #[prost(string, repeated, tag = "8")]
        pub channels: Vec<String>,
        #[prost(string, tag = "9")]
        pub units: String,
        #[prost(oneof = "Samples", tags = "10, 11, 12")]
        pub samples: Option<Samples>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Samples {
        #[prost(message, tag = "10")]
        Digital(DigitalSamples),
        #[prost(message, tag = "11")]
        Float32(FloatSamples),
        #[prost(message, tag = "12")]
        Float64(DoubleSamples),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct DigitalSamples {
        #[prost(uint32, tag = "1")]
        pub bytes_per_sample: u32,
        // `Bytes`, not `Vec<u8>`: prost takes a bytes field out of the input with
        // `copy_to_bytes`, which for a `Vec` would be a second copy of the samples.
        #[prost(bytes = "bytes", tag = "2")]
        pub data: prost::bytes::Bytes,
        #[prost(double, repeated, tag = "3")]
        pub scale: Vec<f64>,
        #[prost(double, repeated, tag = "4")]
        pub offset: Vec<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct FloatSamples {
        #[prost(float, repeated, tag = "1")]
        pub values: Vec<f32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct DoubleSamples {
        #[prost(double, repeated, tag = "1")]
        pub values: Vec<f64>,
    }
}

/// Field numbers of the .proto, for the encoder and the channel count.
mod tag {
    pub const SCHEMA: u32 = 1;
    pub const SESSION_ID: u32 = 2;
    pub const DEVICE_ID: u32 = 3;
    pub const USER_ID: u32 = 4;
    pub const SEQ: u32 = 5;
    pub const START_MS: u32 = 6;
    pub const SAMPLE_RATE_HZ: u32 = 7;
    pub const CHANNELS: u32 = 8;
    pub const UNITS: u32 = 9;
    pub const DIGITAL: u32 = 10;
    pub const FLOAT32: u32 = 11;
    pub const FLOAT64: u32 = 12;
    pub const BYTES_PER_SAMPLE: u32 = 1;
    pub const DATA: u32 = 2;
    pub const SCALE: u32 = 3;
    pub const OFFSET: u32 = 4;
    pub const VALUES: u32 = 1;
}

/// Decodes one binary `eeg.raw/1` message (`eeg.raw.v1.RawBatch`) and validates it by the
/// rules of the JSON format, with errors in the same words: the size of the message first,
/// then its structure, then the header fields ([`Limits`] included) before any sample is
/// converted, then the samples, which must be finite in µV.
///
/// Digital samples become `scale[c] * (offset[c] + digital)` in f64, in that order, then
/// are converted from `units` to µV as JSON values are; float32 values are widened
/// exactly. A batch decoded from here and one decoded from JSON with the same physical
/// values in the same units are equal, bit for bit.
///
/// Memory: the channel names are counted against [`Limits::max_channels`] before prost
/// allocates them, and the output is allocated only once the sample count has passed the
/// limits; prost copies the digital bytes once, nothing else is copied.
pub fn decode_raw_protobuf(bytes: &[u8], limits: &Limits) -> Result<RawBatch, SchemaError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(SchemaError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    let names = count_channel_names(bytes);
    if names > limits.max_channels {
        return Err(field(
            "channels",
            too_many_channels(names, limits.max_channels),
        ));
    }
    let msg = wire::RawBatch::decode(bytes).map_err(|e| SchemaError::Protobuf {
        problem: one_line(&protobuf_problem(&e.to_string())),
    })?;
    match msg.schema.as_str() {
        RAW_SCHEMA => {}
        // proto3 cannot tell an unset string from an empty one.
        "" => return Err(field("schema", "is missing")),
        other => {
            return Err(field(
                "schema",
                format!("expected \"{RAW_SCHEMA}\", got {}", quote(other)),
            ));
        }
    }
    let units = match msg.units.as_str() {
        "" => RawUnits::Microvolts,
        name => RawUnits::from_name(name).ok_or_else(|| {
            field(
                "units",
                format!(
                    "expected {}, got {}",
                    crate::raw::UNITS_EXPECTED,
                    quote(name)
                ),
            )
        })?,
    };
    let Some(samples) = msg.samples else {
        return Err(field("samples", "is missing"));
    };
    let values = match &samples {
        wire::Samples::Digital(d) => {
            let bps = d.bytes_per_sample;
            if !(2..=4).contains(&bps) {
                return Err(field(
                    "digital.bytes_per_sample",
                    format!("must be 2, 3 or 4, got {bps}"),
                ));
            }
            // 2..=4 fits any usize.
            let bps = bps as usize;
            if !d.data.len().is_multiple_of(bps) {
                return Err(field(
                    "digital.data",
                    format!(
                        "has {} bytes, not a multiple of bytes_per_sample {bps}",
                        d.data.len()
                    ),
                ));
            }
            d.data.len() / bps
        }
        wire::Samples::Float32(f) => f.values.len(),
        wire::Samples::Float64(f) => f.values.len(),
    };
    let rows = msg.channels.len();
    let per_channel = if rows == 0 {
        // Reported by the header check below: no channel names.
        0
    } else if values.is_multiple_of(rows) {
        values / rows
    } else {
        return Err(field(
            "samples",
            format!("{values} values do not split into {rows} rows of equal length"),
        ));
    };
    Header {
        session_id: &msg.session_id,
        device_id: &msg.device_id,
        user_id: msg.user_id.as_deref(),
        start_ms: msg.start_ms,
        sample_rate_hz: msg.sample_rate_hz,
        channels: &msg.channels,
        rows,
        per_channel,
    }
    .validate(limits)?;
    // From here rows >= 1, 1 <= per_channel <= the limit, and values = rows * per_channel.
    let to_uv = units.to_microvolts();
    let samples = match samples {
        wire::Samples::Digital(d) => {
            check_per_channel("digital.scale", &d.scale, &msg.channels)?;
            check_per_channel("digital.offset", &d.offset, &msg.channels)?;
            let mut out = Vec::with_capacity(values);
            match d.bytes_per_sample {
                2 => scale_digital::<2>(&d, per_channel, to_uv, &mut out),
                3 => scale_digital::<3>(&d, per_channel, to_uv, &mut out),
                _ => scale_digital::<4>(&d, per_channel, to_uv, &mut out),
            }
            out
        }
        wire::Samples::Float32(f) => {
            if to_uv == 1.0 {
                f.values.iter().map(|&v| f64::from(v)).collect()
            } else {
                f.values.iter().map(|&v| f64::from(v) * to_uv).collect()
            }
        }
        wire::Samples::Float64(f) => {
            let mut values = f.values;
            if to_uv != 1.0 {
                for v in &mut values {
                    *v *= to_uv;
                }
            }
            values
        }
    };
    if !all_finite(&samples) {
        check_finite(&samples, per_channel, &msg.channels, units.units())?;
    }
    Ok(RawBatch {
        session_id: msg.session_id,
        device_id: msg.device_id,
        user_id: msg.user_id,
        seq: msg.seq,
        start_ms: msg.start_ms,
        sample_rate_hz: msg.sample_rate_hz,
        channels: msg.channels,
        samples,
        per_channel,
    })
}

/// prost's reason without its preamble (ours says the same in two words), with the
/// fields it names outermost first: prost lists them innermost first, as the error climbed
/// out of the nested messages ("DigitalSamples.scale: RawBatch.samples: buffer underflow").
fn protobuf_problem(display: &str) -> String {
    let text = display
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(display);
    let mut fields = Vec::new();
    let mut rest = text;
    while let Some((head, tail)) = rest.split_once(": ") {
        let is_field = head.split_once('.').is_some_and(|(m, f)| {
            let ident =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ident(m) && ident(f)
        });
        if !is_field {
            break;
        }
        fields.push(head);
        rest = tail;
    }
    fields.reverse();
    fields.push(rest);
    fields.join(": ")
}

/// Whether every value is finite. The values are nearly always all finite, so this looks
/// at every one without stopping at the first failure, which lets the compiler check several
/// at once (a search for the first non-finite value, as `check_finite` does to name it, took
/// a third of the decoding time); `check_finite` runs only when there is one to name.
fn all_finite(values: &[f64]) -> bool {
    values
        .chunks(512)
        .all(|chunk| chunk.iter().fold(true, |ok, v| ok & v.is_finite()))
}

/// How many `channels` entries the message holds, read from its top-level fields without
/// allocating, so that a message of millions of empty names is rejected before prost makes
/// a string of each. A malformed message counts what precedes the fault; prost reports it.
fn count_channel_names(mut buf: &[u8]) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        let Ok(key) = prost::encoding::decode_varint(&mut buf) else {
            break;
        };
        let skip = match key & 7 {
            0 => match prost::encoding::decode_varint(&mut buf) {
                Ok(_) => 0,
                Err(_) => break,
            },
            1 => 8,
            2 => {
                if key >> 3 == u64::from(tag::CHANNELS) {
                    n += 1;
                }
                match prost::encoding::decode_varint(&mut buf) {
                    Ok(len) => usize::try_from(len).unwrap_or(usize::MAX),
                    Err(_) => break,
                }
            }
            5 => 4,
            // Groups or invalid wire types: not in this message.
            _ => break,
        };
        match buf.get(skip..) {
            Some(rest) => buf = rest,
            None => break,
        }
    }
    n
}

/// `digital.scale` or `digital.offset` of a batch: one finite value per channel.
fn check_per_channel(
    name: &'static str,
    values: &[f64],
    channels: &[String],
) -> Result<(), SchemaError> {
    if values.len() != channels.len() {
        return Err(field(
            name,
            format!(
                "has {} values, expected {} (one per channel)",
                values.len(),
                channels.len()
            ),
        ));
    }
    if let Some(c) = values.iter().position(|v| !v.is_finite()) {
        return Err(field(
            name,
            format!(
                "channel {c} ({}) is {}, must be a finite number",
                quote(&channels[c]),
                values[c]
            ),
        ));
    }
    Ok(())
}

/// Sign-extends a little-endian two's-complement value of N = 2, 3 or 4 bytes: the bytes go
/// to the top of an i32 and an arithmetic shift brings them down.
#[inline(always)]
fn sign_extend<const N: usize>(b: [u8; N]) -> i32 {
    let mut word = [0u8; 4];
    word[4 - N..].copy_from_slice(&b);
    i32::from_le_bytes(word) >> (8 * (4 - N))
}

/// Appends the physical values of every channel to `out`, in µV. The header check has made
/// `data` exactly `scale.len()` rows of `per_channel` values.
///
/// One tight loop per channel over its bytes, without a branch per sample: the units
/// factor is chosen once (a multiplication by 1 would not change a value, but costs).
fn scale_digital<const N: usize>(
    d: &wire::DigitalSamples,
    per_channel: usize,
    to_uv: f64,
    out: &mut Vec<f64>,
) {
    let rows = d.data.chunks_exact(per_channel * N);
    for ((row, &scale), &offset) in rows.zip(&d.scale).zip(&d.offset) {
        let (values, _) = row.as_chunks::<N>();
        if to_uv == 1.0 {
            out.extend(
                values
                    .iter()
                    .map(|&b| scale * (offset + f64::from(sign_extend(b)))),
            );
        } else {
            out.extend(
                values
                    .iter()
                    .map(|&b| scale * (offset + f64::from(sign_extend(b))) * to_uv),
            );
        }
    }
}

/// The header fields of a batch to encode: a [`RawBatch`] without its samples, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawMeta<'a> {
    pub session_id: &'a str,
    pub device_id: &'a str,
    pub user_id: Option<&'a str>,
    pub seq: u64,
    pub start_ms: i64,
    pub sample_rate_hz: f64,
    pub channels: &'a [String],
    /// The unit of the physical values (of `Float32`/`Float64`, and of the scaled digital
    /// values).
    pub units: RawUnits,
}

/// The samples of a batch to encode, channel-major (all of channel 0, then channel 1, ...),
/// `channels.len()` rows of equal length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawSamples<'a> {
    /// Integers from an ADC or an EDF/BDF file, each sent in `bytes_per_sample` bytes (2, 3
    /// or 4), with one `scale` and `offset` per channel: the consumer computes
    /// `scale[c] * (offset[c] + digital)` (EDFlib's form; for an EDF/BDF signal pass
    /// `SignalHeader::scaling()`'s `(bitvalue, offset)`, for an amplifier with gain `g`
    /// per count, `g` and 0).
    Digital {
        bytes_per_sample: u8,
        data: &'a [i32],
        scale: &'a [f64],
        offset: &'a [f64],
    },
    /// 32-bit floats (half the size of float64; exact when the values are).
    Float32(&'a [f32]),
    /// 64-bit floats, lossless.
    Float64(&'a [f64]),
}

/// Appends the binary `eeg.raw/1` message of `meta` and `samples` to `out`: the bytes prost
/// would write for the same `eeg.raw.v1.RawBatch`, without building one (nothing is copied
/// or allocated but `out`). `units` is left out when µV, its default.
///
/// Only what cannot be written is an error: a `bytes_per_sample` other than 2, 3 or 4, or a
/// digital value outside its range. Everything else the wire can carry, so it is checked
/// where every message is, by [`decode_raw_protobuf`] (a producer may run it on its own
/// output in its tests). On error `out` is as it was.
pub fn encode_raw_protobuf(
    meta: &RawMeta<'_>,
    samples: RawSamples<'_>,
    out: &mut Vec<u8>,
) -> Result<(), SchemaError> {
    if let RawSamples::Digital {
        bytes_per_sample,
        data,
        ..
    } = samples
    {
        let (lo, hi) = match bytes_per_sample {
            2 => (i32::from(i16::MIN), i32::from(i16::MAX)),
            3 => (-(1 << 23), (1 << 23) - 1),
            4 => (i32::MIN, i32::MAX),
            bps => {
                return Err(field(
                    "digital.bytes_per_sample",
                    format!("must be 2, 3 or 4, got {bps}"),
                ));
            }
        };
        if let Some(i) = data.iter().position(|v| !(lo..=hi).contains(v)) {
            return Err(field(
                "digital.data",
                format!(
                    "value {} at index {i} does not fit in {bytes_per_sample} bytes ({lo}..={hi})",
                    data[i]
                ),
            ));
        }
    }
    write_message(meta, samples, out);
    Ok(())
}

impl RawBatch {
    /// Appends the batch to `out` as a binary `eeg.raw/1` message with float64 samples in
    /// µV, which [`decode_raw_protobuf`] decodes to an equal batch, bit for bit.
    pub fn encode_protobuf(&self, out: &mut Vec<u8>) {
        let meta = RawMeta {
            session_id: &self.session_id,
            device_id: &self.device_id,
            user_id: self.user_id.as_deref(),
            seq: self.seq,
            start_ms: self.start_ms,
            sample_rate_hz: self.sample_rate_hz,
            channels: &self.channels,
            units: RawUnits::Microvolts,
        };
        write_message(&meta, RawSamples::Float64(self.samples()), out);
    }
}

/// Writes the message, fields in number order and proto3 defaults left out, as prost does.
/// Digital values must be in range for `bytes_per_sample` (2, 3 or 4).
fn write_message(meta: &RawMeta<'_>, samples: RawSamples<'_>, out: &mut Vec<u8>) {
    let (samples_tag, samples_len) = match samples {
        RawSamples::Digital {
            bytes_per_sample,
            data,
            scale,
            offset,
        } => (
            tag::DIGITAL,
            2 + field_len(data.len() * usize::from(bytes_per_sample))
                + field_len(scale.len() * 8)
                + field_len(offset.len() * 8),
        ),
        RawSamples::Float32(v) => (tag::FLOAT32, field_len(v.len() * 4)),
        RawSamples::Float64(v) => (tag::FLOAT64, field_len(v.len() * 8)),
    };
    let names: usize = meta
        .channels
        .iter()
        .map(|c| 1 + encoded_len_varint(c.len() as u64) + c.len())
        .sum();
    out.reserve(64 + meta.session_id.len() + meta.device_id.len() + names + samples_len);

    put_str(out, tag::SCHEMA, RAW_SCHEMA);
    if !meta.session_id.is_empty() {
        put_str(out, tag::SESSION_ID, meta.session_id);
    }
    if !meta.device_id.is_empty() {
        put_str(out, tag::DEVICE_ID, meta.device_id);
    }
    if let Some(user_id) = meta.user_id {
        put_str(out, tag::USER_ID, user_id);
    }
    if meta.seq != 0 {
        encode_key(tag::SEQ, WireType::Varint, out);
        encode_varint(meta.seq, out);
    }
    if meta.start_ms != 0 {
        encode_key(tag::START_MS, WireType::Varint, out);
        // int64 is sent as its two's-complement bits.
        encode_varint(meta.start_ms as u64, out);
    }
    if meta.sample_rate_hz != 0.0 {
        encode_key(tag::SAMPLE_RATE_HZ, WireType::SixtyFourBit, out);
        out.extend_from_slice(&meta.sample_rate_hz.to_le_bytes());
    }
    for name in meta.channels {
        put_str(out, tag::CHANNELS, name);
    }
    if meta.units != RawUnits::Microvolts {
        put_str(out, tag::UNITS, meta.units.name());
    }
    encode_key(samples_tag, WireType::LengthDelimited, out);
    encode_varint(samples_len as u64, out);
    match samples {
        RawSamples::Digital {
            bytes_per_sample,
            data,
            scale,
            offset,
        } => {
            encode_key(tag::BYTES_PER_SAMPLE, WireType::Varint, out);
            encode_varint(u64::from(bytes_per_sample), out);
            let bps = usize::from(bytes_per_sample);
            if !data.is_empty() {
                put_len(out, tag::DATA, data.len() * bps);
                match bps {
                    2 => put_le::<2, _, _>(out, data, |v| v.to_le_bytes()),
                    3 => put_le::<3, _, _>(out, data, |v| v.to_le_bytes()),
                    _ => put_le::<4, _, _>(out, data, |v| v.to_le_bytes()),
                }
            }
            put_f64s(out, tag::SCALE, scale);
            put_f64s(out, tag::OFFSET, offset);
        }
        RawSamples::Float32(values) => {
            if !values.is_empty() {
                put_len(out, tag::VALUES, values.len() * 4);
                put_le::<4, _, _>(out, values, |v| v.to_le_bytes());
            }
        }
        RawSamples::Float64(values) => put_f64s(out, tag::VALUES, values),
    }
}

/// Encoded size of a length-delimited field of `len` bytes, 0 when empty (left out); every
/// field number here is below 16, so its key is one byte.
fn field_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + encoded_len_varint(len as u64) + len
    }
}

fn put_len(out: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn put_str(out: &mut Vec<u8>, tag: u32, s: &str) {
    put_len(out, tag, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A packed `repeated double`, left out when empty.
fn put_f64s(out: &mut Vec<u8>, tag: u32, values: &[f64]) {
    if values.is_empty() {
        return;
    }
    put_len(out, tag, values.len() * 8);
    put_le::<8, _, _>(out, values, |v| v.to_le_bytes());
}

/// Appends the first N bytes of each value's little-endian form (for a digital value in
/// range, its N-byte two's complement). The output is grown once and filled in fixed-size
/// chunks, with no capacity check per value.
#[inline(always)]
fn put_le<const N: usize, T: Copy, const W: usize>(
    out: &mut Vec<u8>,
    values: &[T],
    le_bytes: impl Fn(T) -> [u8; W],
) {
    const { assert!(N <= W, "a value has W bytes, N of them are written") };
    let start = out.len();
    out.resize(start + values.len() * N, 0);
    let (chunks, _) = out[start..].as_chunks_mut::<N>();
    for (dst, &v) in chunks.iter_mut().zip(values) {
        dst.copy_from_slice(&le_bytes(v)[..N]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protox::prost_reflect::{
        DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value,
    };

    fn pool() -> DescriptorPool {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
        protox::Compiler::new([dir])
            .and_then(|mut c| {
                c.open_file("eeg_raw_v1.proto")?;
                Ok(c.descriptor_pool())
            })
            .expect("the .proto compiles")
    }

    fn descriptor(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
        pool.get_message_by_name(&format!("eeg.raw.v1.{name}"))
            .unwrap_or_else(|| panic!("the .proto has {name}"))
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Every field set, to values that different protobuf types (int64/sint64, double/fixed64,
    /// ...) would decode differently.
    fn full(samples: wire::Samples) -> wire::RawBatch {
        wire::RawBatch {
            schema: "eeg.raw/1".into(),
            session_id: "s-42".into(),
            device_id: "bud-7".into(),
            user_id: Some(String::new()),
            seq: u64::MAX - 5,
            start_ms: -1_732_270_000_000,
            sample_rate_hz: 250.5,
            channels: names(&["TP9", "AF7"]),
            units: "mV".into(),
            samples: Some(samples),
        }
    }

    fn variants() -> [wire::Samples; 3] {
        [
            wire::Samples::Digital(wire::DigitalSamples {
                bytes_per_sample: 3,
                data: vec![1, 2, 3, 255, 255, 255].into(),
                scale: vec![0.5, -1e-300],
                offset: vec![-3.25, 7.0],
            }),
            wire::Samples::Float32(wire::FloatSamples {
                values: vec![1.5, -0.0, f32::MIN_POSITIVE, 3e38],
            }),
            wire::Samples::Float64(wire::DoubleSamples {
                values: vec![1.5, -0.0, 5e-324, 1e308],
            }),
        ]
    }

    fn field_value(m: &DynamicMessage, name: &str) -> Value {
        assert!(m.has_field_by_name(name), "{name} is set");
        m.get_field_by_name(name).expect("known field").into_owned()
    }

    /// Checks a dynamic message field by field against the hand-written one, and that every
    /// field of the .proto's message was checked and nothing was left unknown.
    fn assert_same(dynamic: &DynamicMessage, msg: &wire::RawBatch) {
        assert_eq!(dynamic.unknown_fields().count(), 0);
        let str_list = |v: &[String]| Value::List(v.iter().cloned().map(Value::String).collect());
        let f64_list = |v: &[f64]| Value::List(v.iter().copied().map(Value::F64).collect());
        let mut checked = vec![
            ("schema", Value::String(msg.schema.clone())),
            ("session_id", Value::String(msg.session_id.clone())),
            ("device_id", Value::String(msg.device_id.clone())),
            (
                "user_id",
                Value::String(msg.user_id.clone().expect("set in the test")),
            ),
            ("seq", Value::U64(msg.seq)),
            ("start_ms", Value::I64(msg.start_ms)),
            ("sample_rate_hz", Value::F64(msg.sample_rate_hz)),
            ("channels", str_list(&msg.channels)),
            ("units", Value::String(msg.units.clone())),
        ];
        let (name, inner, expected): (_, _, Vec<(&str, Value)>) = match &msg.samples {
            Some(wire::Samples::Digital(d)) => (
                "digital",
                "DigitalSamples",
                vec![
                    ("bytes_per_sample", Value::U32(d.bytes_per_sample)),
                    ("data", Value::Bytes(d.data.clone())),
                    ("scale", f64_list(&d.scale)),
                    ("offset", f64_list(&d.offset)),
                ],
            ),
            Some(wire::Samples::Float32(f)) => (
                "float32",
                "FloatSamples",
                vec![(
                    "values",
                    Value::List(f.values.iter().copied().map(Value::F32).collect()),
                )],
            ),
            Some(wire::Samples::Float64(f)) => (
                "float64",
                "DoubleSamples",
                vec![("values", f64_list(&f.values))],
            ),
            None => unreachable!("every test message has samples"),
        };
        for (field, want) in &checked {
            assert_eq!(&field_value(dynamic, field), want, "RawBatch.{field}");
        }
        let Value::Message(sub) = field_value(dynamic, name) else {
            panic!("RawBatch.{name} is a message");
        };
        assert_eq!(sub.descriptor().name(), inner);
        assert_eq!(sub.unknown_fields().count(), 0);
        for (field, want) in &expected {
            assert_eq!(&field_value(&sub, field), want, "{inner}.{field}");
        }
        let sub_fields: Vec<String> = sub.descriptor().fields().map(|f| f.name().into()).collect();
        let mut sub_checked: Vec<String> = expected.iter().map(|(f, _)| f.to_string()).collect();
        sub_checked.sort();
        let mut sub_fields = sub_fields;
        sub_fields.sort();
        assert_eq!(sub_checked, sub_fields, "{inner}: fields checked");
        checked.push((name, Value::Bool(true)));
        let mut all: Vec<String> = dynamic
            .descriptor()
            .fields()
            .filter(|f| f.containing_oneof().is_none_or(|o| o.is_synthetic()) || f.name() == name)
            .map(|f| f.name().into())
            .collect();
        all.sort();
        let mut done: Vec<String> = checked.iter().map(|(f, _)| f.to_string()).collect();
        done.sort();
        assert_eq!(done, all, "RawBatch: fields checked");
    }

    #[test]
    fn types_match_the_proto() {
        let pool = pool();
        let raw = descriptor(&pool, "RawBatch");
        // The oneof and the presence of user_id, which a value check alone would not show.
        let oneof: Vec<_> = raw
            .oneofs()
            .filter(|o| !o.is_synthetic())
            .map(|o| {
                (
                    o.name().to_owned(),
                    o.fields().map(|f| f.number()).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(oneof, [("samples".to_owned(), vec![10, 11, 12])]);
        assert!(
            raw.get_field_by_name("user_id")
                .unwrap()
                .supports_presence()
        );
        for (msg, field) in [
            ("DigitalSamples", "scale"),
            ("DigitalSamples", "offset"),
            ("FloatSamples", "values"),
            ("DoubleSamples", "values"),
        ] {
            let f = descriptor(&pool, msg).get_field_by_name(field).unwrap();
            assert!(f.is_list() && f.is_packed(), "{msg}.{field} is packed");
        }

        for samples in variants() {
            // Ours to the .proto's.
            let msg = full(samples);
            let dynamic = DynamicMessage::decode(raw.clone(), msg.encode_to_vec().as_slice())
                .expect("the .proto reads what the types write");
            assert_same(&dynamic, &msg);
            // The .proto's to ours: the same bytes (fields in number order both ways).
            let bytes = dynamic.encode_to_vec();
            assert_eq!(bytes, msg.encode_to_vec());
            assert_eq!(wire::RawBatch::decode(bytes.as_slice()).unwrap(), msg);
        }

        // An unset user_id stays unset.
        let mut msg = full(variants()[2].clone());
        msg.user_id = None;
        let dynamic = DynamicMessage::decode(raw, msg.encode_to_vec().as_slice()).unwrap();
        assert!(!dynamic.has_field_by_name("user_id"));
    }

    #[test]
    fn encoder_writes_what_prost_writes() {
        let channels = names(&["TP9", "AF7"]);
        let meta = RawMeta {
            session_id: "s-42",
            device_id: "bud-7",
            user_id: Some("u-1"),
            seq: 3,
            start_ms: 1_732_270_000_000,
            sample_rate_hz: 250.0,
            channels: &channels,
            units: RawUnits::Millivolts,
        };
        let data = [-8_388_608, 8_388_607, -1, 0, 1, 65_536];
        let (scale, offset) = ([0.25, 1e-3], [0.5, -2.0]);
        let digital = |bps: u8| RawSamples::Digital {
            bytes_per_sample: bps,
            data: &data,
            scale: &scale,
            offset: &offset,
        };
        let wire_meta = |samples| wire::RawBatch {
            schema: "eeg.raw/1".into(),
            session_id: "s-42".into(),
            device_id: "bud-7".into(),
            user_id: Some("u-1".into()),
            seq: 3,
            start_ms: 1_732_270_000_000,
            sample_rate_hz: 250.0,
            channels: channels.clone(),
            units: "mV".into(),
            samples: Some(samples),
        };
        let bytes_of = |bps: usize| -> Vec<u8> {
            data.iter()
                .flat_map(|v: &i32| v.to_le_bytes()[..bps].to_vec())
                .collect()
        };
        for bps in [3u8, 4] {
            let mut out = vec![];
            encode_raw_protobuf(&meta, digital(bps), &mut out).unwrap();
            let expected = wire_meta(wire::Samples::Digital(wire::DigitalSamples {
                bytes_per_sample: u32::from(bps),
                data: bytes_of(usize::from(bps)).into(),
                scale: scale.to_vec(),
                offset: offset.to_vec(),
            }));
            assert_eq!(out, expected.encode_to_vec(), "{bps} bytes per sample");
        }
        let f32s = [1.5f32, -2.0, 0.1];
        let mut out = vec![];
        encode_raw_protobuf(&meta, RawSamples::Float32(&f32s), &mut out).unwrap();
        let expected = wire_meta(wire::Samples::Float32(wire::FloatSamples {
            values: f32s.to_vec(),
        }));
        assert_eq!(out, expected.encode_to_vec());

        // Defaults are left out as prost leaves them out; an empty sample list too.
        let empty: [String; 0] = [];
        let bare = RawMeta {
            session_id: "",
            device_id: "",
            user_id: None,
            seq: 0,
            start_ms: 0,
            sample_rate_hz: 0.0,
            channels: &empty,
            units: RawUnits::Microvolts,
        };
        let mut out = vec![];
        encode_raw_protobuf(&bare, RawSamples::Float64(&[]), &mut out).unwrap();
        let expected = wire::RawBatch {
            schema: "eeg.raw/1".into(),
            samples: Some(wire::Samples::Float64(wire::DoubleSamples {
                values: vec![],
            })),
            ..wire::RawBatch::default()
        };
        assert_eq!(out, expected.encode_to_vec());
        // A negative start_ms is ten bytes of varint, as prost writes it.
        let mut out = vec![];
        let negative = RawMeta {
            start_ms: -1,
            ..bare
        };
        encode_raw_protobuf(&negative, RawSamples::Float64(&[]), &mut out).unwrap();
        let expected = wire::RawBatch {
            start_ms: -1,
            ..expected
        };
        assert_eq!(out, expected.encode_to_vec());
    }

    #[test]
    fn sign_extension_of_each_width() {
        assert_eq!(sign_extend([0xff, 0x7f]), 32767);
        assert_eq!(sign_extend([0x00, 0x80]), -32768);
        assert_eq!(sign_extend([0xff, 0xff]), -1);
        assert_eq!(sign_extend([0xff, 0xff, 0x7f]), 8_388_607);
        assert_eq!(sign_extend([0x00, 0x00, 0x80]), -8_388_608);
        assert_eq!(sign_extend([0xfe, 0xff, 0xff]), -2);
        assert_eq!(sign_extend([0x00, 0x00, 0x00, 0x80]), i32::MIN);
        assert_eq!(sign_extend([0x01, 0x00, 0x00, 0x00]), 1);
    }

    #[test]
    fn channel_names_are_counted_without_decoding() {
        let mut out = vec![];
        let channels = names(&["a", "", "c"]);
        let meta = RawMeta {
            session_id: "s",
            device_id: "d",
            user_id: None,
            seq: 1,
            start_ms: 2,
            sample_rate_hz: 3.0,
            channels: &channels,
            units: RawUnits::Volts,
        };
        encode_raw_protobuf(&meta, RawSamples::Float32(&[1.0; 3]), &mut out).unwrap();
        assert_eq!(count_channel_names(&out), 3);
        // Cut anywhere, it counts what precedes the cut and never fails.
        for n in 0..out.len() {
            assert!(count_channel_names(&out[..n]) <= 3);
        }
        assert_eq!(count_channel_names(&[0x43, 0x01]), 0); // group: stops
    }
}
