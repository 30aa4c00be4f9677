//! Wire formats of eeg-pipeline.
//!
//! # `eeg.raw/1`: a batch of raw samples (JSON, UTF-8)
//! ```json
//! {"schema": "eeg.raw/1", "session_id": "s-42", "device_id": "bud-7", "user_id": "u-1",
//!  "seq": 0, "start_ms": 1732270000000, "sample_rate_hz": 250.0,
//!  "channels": ["TP9", "AF7", "AF8", "TP10"], "units": "uV",
//!  "samples": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}
//! ```
//! - `samples` is channel-major: one row per channel, all rows the same length (>= 1).
//! - `seq` counts the batches of a session from 0; `start_ms` is the Unix time (ms) of the
//!   first sample, >= 0.
//! - `user_id` is optional. `units` is optional: `uV` (default; `µV` and `μV` too), `mV` or
//!   `V`; samples are converted to µV when decoded.
//! - Validation ([`decode_raw`]): the `schema` string is exact; unknown fields are errors
//!   (the format is versioned by `schema`, so a misspelt field must not be ignored);
//!   `session_id`, `device_id` and `user_id` are 1..=256 bytes without control characters;
//!   1..=[`Limits::max_channels`] channel names, each 1..=64 bytes and unique; as many rows
//!   as names; 1..=[`Limits::max_samples_per_channel`] samples per row; every sample finite
//!   (after unit conversion); `sample_rate_hz` finite, > 0 and <=
//!   [`Limits::max_sample_rate_hz`]; the message at most [`Limits::max_message_bytes`].
//!
//! # `eeg.processed/1`: one record per completed window (JSON)
//! Encoded by [`encode_processed`] from a [`eeg_dsp::Window`]; see the README for the
//! layout. `band_power` and `relative_power` are objects keyed by band name in the config's
//! band order. Index values are `null` when they cannot be computed. A non-finite number
//! (which the processor never produces) would be written as `null`, so the output is always
//! valid JSON. `user_id` appears only when the raw input had one.
//!
//! Every error is one line naming the field and the problem.

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const RAW_SCHEMA: &str = "eeg.raw/1";
pub const PROCESSED_SCHEMA: &str = "eeg.processed/1";

/// Size limits of a raw batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_channels: usize,
    pub max_samples_per_channel: usize,
    pub max_sample_rate_hz: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 << 20,
            max_channels: 1024,
            max_samples_per_channel: 65_536,
            max_sample_rate_hz: 100_000.0,
        }
    }
}

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// Not JSON, or JSON of the wrong shape (the message names the field and position).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A field whose value breaks a rule.
    #[error("field '{field}': {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error("message is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

fn field(field: &'static str, problem: impl Into<String>) -> SchemaError {
    SchemaError::Field {
        field,
        problem: problem.into(),
    }
}

/// A validated raw batch; samples are in µV.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBatch {
    pub session_id: String,
    pub device_id: String,
    pub user_id: Option<String>,
    pub seq: u64,
    pub start_ms: i64,
    pub sample_rate_hz: f64,
    pub channels: Vec<String>,
    /// Channel-major: row `c` is `samples[c * per_channel..(c + 1) * per_channel]`.
    samples: Vec<f64>,
    per_channel: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRaw {
    schema: String,
    session_id: String,
    device_id: String,
    #[serde(default)]
    user_id: Option<String>,
    seq: u64,
    start_ms: i64,
    sample_rate_hz: f64,
    channels: Vec<String>,
    #[serde(default)]
    units: Option<String>,
    samples: Rows,
}

/// The `samples` array read straight into one flat buffer, checking row lengths as it goes.
struct Rows {
    flat: Vec<f64>,
    rows: usize,
    per_row: usize,
}

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rows, D::Error> {
        struct Outer;
        impl<'de> Visitor<'de> for Outer {
            type Value = Rows;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of rows of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
                let mut rows = Rows {
                    flat: Vec::with_capacity(seq.size_hint().unwrap_or(8) * 64),
                    rows: 0,
                    per_row: 0,
                };
                while let Some(n) = seq.next_element_seed(Row(&mut rows.flat))? {
                    if rows.rows == 0 {
                        rows.per_row = n;
                    } else if n != rows.per_row {
                        return Err(de::Error::custom(format!(
                            "field 'samples': row {} has {n} values, expected {} (same as row 0)",
                            rows.rows, rows.per_row
                        )));
                    }
                    rows.rows += 1;
                }
                Ok(rows)
            }
        }
        d.deserialize_seq(Outer)
    }
}

/// Appends one row to the flat buffer and yields its length.
struct Row<'a>(&'a mut Vec<f64>);

impl<'de> DeserializeSeed<'de> for Row<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Row<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row of numbers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(v) = seq.next_element::<f64>()? {
            self.0.push(v);
            n += 1;
        }
        Ok(n)
    }
}

/// Decodes and validates one `eeg.raw/1` message.
pub fn decode_raw(bytes: &[u8], limits: &Limits) -> Result<RawBatch, SchemaError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(SchemaError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    let wire: WireRaw =
        serde_json::from_slice(bytes).map_err(|e| SchemaError::Json(e.to_string()))?;
    if wire.schema != RAW_SCHEMA {
        return Err(field(
            "schema",
            format!("expected \"{RAW_SCHEMA}\", got \"{}\"", wire.schema),
        ));
    }
    let scale = match wire.units.as_deref() {
        None | Some("uV" | "µV" | "μV") => 1.0,
        Some("mV") => 1e3,
        Some("V") => 1e6,
        Some(other) => {
            return Err(field(
                "units",
                format!("expected \"uV\", \"mV\" or \"V\", got \"{other}\""),
            ));
        }
    };
    let Rows {
        mut flat,
        rows,
        per_row,
    } = wire.samples;
    if scale != 1.0 {
        for v in &mut flat {
            *v *= scale;
        }
    }
    RawBatch::new(
        wire.session_id,
        wire.device_id,
        wire.user_id,
        wire.seq,
        wire.start_ms,
        wire.sample_rate_hz,
        wire.channels,
        flat,
        rows,
        per_row,
        limits,
    )
}

fn check_id(name: &'static str, v: &str) -> Result<(), SchemaError> {
    if v.is_empty() {
        return Err(field(name, "must not be empty"));
    }
    if v.len() > 256 {
        return Err(field(name, format!("is {} bytes, at most 256", v.len())));
    }
    if v.chars().any(char::is_control) {
        return Err(field(name, "contains a control character"));
    }
    Ok(())
}

impl RawBatch {
    /// A validated batch from channel-major samples in µV (`rows` rows of `per_channel`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session_id: String,
        device_id: String,
        user_id: Option<String>,
        seq: u64,
        start_ms: i64,
        sample_rate_hz: f64,
        channels: Vec<String>,
        samples: Vec<f64>,
        rows: usize,
        per_channel: usize,
        limits: &Limits,
    ) -> Result<RawBatch, SchemaError> {
        check_id("session_id", &session_id)?;
        check_id("device_id", &device_id)?;
        if let Some(u) = &user_id {
            check_id("user_id", u)?;
        }
        if start_ms < 0 {
            return Err(field("start_ms", format!("must be >= 0, got {start_ms}")));
        }
        if !(sample_rate_hz.is_finite()
            && sample_rate_hz > 0.0
            && sample_rate_hz <= limits.max_sample_rate_hz)
        {
            return Err(field(
                "sample_rate_hz",
                format!(
                    "must be a finite number > 0 and <= {}, got {sample_rate_hz}",
                    limits.max_sample_rate_hz
                ),
            ));
        }
        if channels.is_empty() {
            return Err(field("channels", "must name at least one channel"));
        }
        if channels.len() > limits.max_channels {
            return Err(field(
                "channels",
                format!(
                    "{} channels, at most {}",
                    channels.len(),
                    limits.max_channels
                ),
            ));
        }
        for (i, c) in channels.iter().enumerate() {
            if c.is_empty() || c.len() > 64 || c.chars().any(char::is_control) {
                return Err(field(
                    "channels",
                    format!("name {i} must be 1 to 64 bytes without control characters"),
                ));
            }
            if let Some(j) = channels[..i].iter().position(|o| o == c) {
                return Err(field(
                    "channels",
                    format!("'{c}' appears twice (positions {j} and {i})"),
                ));
            }
        }
        if rows != channels.len() {
            return Err(field(
                "samples",
                format!("{rows} rows but 'channels' names {}", channels.len()),
            ));
        }
        if per_channel == 0 {
            return Err(field("samples", "rows must not be empty"));
        }
        if per_channel > limits.max_samples_per_channel {
            return Err(field(
                "samples",
                format!(
                    "{per_channel} samples per channel, at most {}",
                    limits.max_samples_per_channel
                ),
            ));
        }
        if samples.len() != rows * per_channel {
            return Err(field(
                "samples",
                format!(
                    "{} values, expected {rows} rows of {per_channel}",
                    samples.len()
                ),
            ));
        }
        if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
            return Err(field(
                "samples",
                format!(
                    "channel {} sample {} is not a finite number in µV",
                    i / per_channel,
                    i % per_channel
                ),
            ));
        }
        Ok(RawBatch {
            session_id,
            device_id,
            user_id,
            seq,
            start_ms,
            sample_rate_hz,
            channels,
            samples,
            per_channel,
        })
    }

    pub fn samples_per_channel(&self) -> usize {
        self.per_channel
    }

    /// All samples, channel-major, in µV.
    pub fn samples(&self) -> &[f64] {
        &self.samples
    }

    pub fn row(&self, channel: usize) -> &[f64] {
        &self.samples[channel * self.per_channel..(channel + 1) * self.per_channel]
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.samples.chunks_exact(self.per_channel)
    }

    /// Appends the canonical JSON (units `uV`) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        struct SamplesView<'a>(&'a RawBatch);
        impl Serialize for SamplesView<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.channels.len()))?;
                for row in self.0.rows() {
                    seq.serialize_element(row)?;
                }
                seq.end()
            }
        }
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
            samples: SamplesView<'a>,
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
            samples: SamplesView(self),
        };
        // Writing to a Vec cannot fail and every value here is serialisable.
        let _ = serde_json::to_writer(out, &wire);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// The identity of a session's records: everything in a record that is not per window.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionMeta {
    pub session_id: String,
    pub device_id: String,
    pub user_id: Option<String>,
    pub sample_rate_hz: f64,
    pub channels: Vec<String>,
}

/// One `eeg.processed/1` record: a session's identity and one window.
#[derive(Debug, Clone, Copy)]
pub struct ProcessedRecord<'a> {
    pub meta: &'a SessionMeta,
    pub window: &'a eeg_dsp::Window<'a>,
}

/// Appends the record's JSON (no trailing newline) to `out`. Allocates nothing beyond
/// growing `out`.
pub fn encode_processed(rec: &ProcessedRecord<'_>, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail; non-finite numbers become null.
    let _ = serde_json::to_writer(out, rec);
}

impl Serialize for ProcessedRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (m, w) = (self.meta, self.window);
        let mut st = s.serialize_struct("ProcessedRecord", 12)?;
        st.serialize_field("schema", PROCESSED_SCHEMA)?;
        st.serialize_field("session_id", &m.session_id)?;
        st.serialize_field("device_id", &m.device_id)?;
        if let Some(u) = &m.user_id {
            st.serialize_field("user_id", u)?;
        }
        st.serialize_field("window_index", &w.index)?;
        st.serialize_field("start_ms", &w.start_ms)?;
        st.serialize_field("end_ms", &w.end_ms)?;
        st.serialize_field("sample_rate_hz", &m.sample_rate_hz)?;
        st.serialize_field("settling", &w.settling)?;
        st.serialize_field("channels", &Channels(self))?;
        st.serialize_field("indices", &IndicesView(&w.indices))?;
        st.end()
    }
}

struct Channels<'a>(&'a ProcessedRecord<'a>);

impl Serialize for Channels<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = self.0.window;
        let mut seq = s.serialize_seq(Some(w.n_channels()))?;
        for (c, name) in self.0.meta.channels.iter().enumerate().take(w.n_channels()) {
            seq.serialize_element(&ChannelView { w, c, name })?;
        }
        seq.end()
    }
}

struct ChannelView<'a> {
    w: &'a eeg_dsp::Window<'a>,
    c: usize,
    name: &'a str,
}

impl Serialize for ChannelView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (w, c) = (self.w, self.c);
        let mut st = s.serialize_struct("Channel", 5)?;
        st.serialize_field("name", self.name)?;
        st.serialize_field("band_power", &BandMap(w.bands, w.band_power(c)))?;
        st.serialize_field("relative_power", &BandMap(w.bands, w.relative_power(c)))?;
        st.serialize_field("total_power", &w.total_power(c))?;
        st.serialize_field("quality", &QualityView(w.quality(c)))?;
        st.end()
    }
}

struct BandMap<'a>(&'a [eeg_dsp::Band], &'a [f64]);

impl Serialize for BandMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (b, v) in self.0.iter().zip(self.1) {
            map.serialize_entry(&b.name, v)?;
        }
        map.end()
    }
}

struct QualityView<'a>(&'a eeg_dsp::Quality);

impl Serialize for QualityView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let q = self.0;
        let mut st = s.serialize_struct("Quality", 7)?;
        st.serialize_field("rms_uv", &q.rms_uv)?;
        st.serialize_field("ptp_uv", &q.ptp_uv)?;
        st.serialize_field("line_noise_ratio", &q.line_noise_ratio)?;
        st.serialize_field("flatline", &q.flatline)?;
        st.serialize_field("railed", &q.railed)?;
        st.serialize_field("artifact", &q.artifact)?;
        st.serialize_field("good", &q.good)?;
        st.end()
    }
}

struct IndicesView<'a>(&'a eeg_dsp::Indices);

impl Serialize for IndicesView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = self.0;
        let mut st = s.serialize_struct("Indices", 3)?;
        st.serialize_field("engagement", &i.engagement)?;
        st.serialize_field("theta_beta", &i.theta_beta)?;
        st.serialize_field("alpha_theta", &i.alpha_theta)?;
        st.end()
    }
}

/// An `eeg.processed/1` record read back, e.g. by a downstream consumer or a test.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessedRecordOwned {
    pub schema: String,
    pub session_id: String,
    pub device_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    pub window_index: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub sample_rate_hz: f64,
    pub settling: bool,
    pub channels: Vec<ChannelOwned>,
    pub indices: IndicesOwned,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelOwned {
    pub name: String,
    /// (band, power) in the record's order.
    pub band_power: OrderedBands,
    pub relative_power: OrderedBands,
    pub total_power: f64,
    pub quality: QualityOwned,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityOwned {
    pub rms_uv: f64,
    pub ptp_uv: f64,
    pub line_noise_ratio: f64,
    pub flatline: bool,
    pub railed: bool,
    pub artifact: bool,
    pub good: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicesOwned {
    pub engagement: Option<f64>,
    pub theta_beta: Option<f64>,
    pub alpha_theta: Option<f64>,
}

/// A JSON object of band name to number, keeping the order of the keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrderedBands(pub Vec<(String, f64)>);

impl OrderedBands {
    pub fn get(&self, band: &str) -> Option<f64> {
        self.0.iter().find(|(b, _)| b == band).map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for OrderedBands {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OrderedBands, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedBands;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of band name to number")
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedBands, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = map.next_entry::<String, f64>()? {
                    v.push((k, x));
                }
                Ok(OrderedBands(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Decodes an `eeg.processed/1` record.
pub fn decode_processed(bytes: &[u8]) -> Result<ProcessedRecordOwned, SchemaError> {
    let rec: ProcessedRecordOwned =
        serde_json::from_slice(bytes).map_err(|e| SchemaError::Json(e.to_string()))?;
    if rec.schema != PROCESSED_SCHEMA {
        return Err(field(
            "schema",
            format!("expected \"{PROCESSED_SCHEMA}\", got \"{}\"", rec.schema),
        ));
    }
    Ok(rec)
}
