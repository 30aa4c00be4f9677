//! `eeg.processed/1`: zero-copy encoding of a window's features, and the owned form for
//! reading records back.

use crate::PROCESSED_SCHEMA;
use crate::error::{SchemaError, field, from_json, quote};
use eeg_dsp::{Indices, Quality};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of a session's records: everything in a record that is not per window.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionMeta {
    pub session_id: String,
    pub device_id: String,
    /// Written to the records only when the raw input had one.
    pub user_id: Option<String>,
    pub sample_rate_hz: f64,
    /// Channel names in the order of the window's channels.
    pub channels: Vec<String>,
}

/// The per-window features a record is made of, read in place by [`encode_processed`].
///
/// Implemented by the processor's [`eeg_dsp::Window`] (the pipeline's hot path) and by
/// [`WindowFeatures`] (plain slices, e.g. for replaying or tests). `encode_processed` only
/// asks for channels `< n_channels()` and bands `< n_bands()`.
pub trait WindowData {
    /// Counts the session's windows from 0.
    fn window_index(&self) -> u64;
    /// Unix time of the window's first sample, ms.
    fn start_ms(&self) -> i64;
    /// Unix time of the end of the window's last sample, ms.
    fn end_ms(&self) -> i64;
    /// The filters were still settling when the window started.
    fn settling(&self) -> bool;
    /// Number of configured bands.
    fn n_bands(&self) -> usize;
    /// Name of band `band`, in the configured order.
    fn band_name(&self, band: usize) -> &str;
    fn n_channels(&self) -> usize;
    /// Band powers of `channel` in band order, µV².
    fn band_power(&self, channel: usize) -> &[f64];
    /// Band powers of `channel` over its total power, in band order.
    fn relative_power(&self, channel: usize) -> &[f64];
    /// Power of `channel` over the band-pass range, µV².
    fn total_power(&self, channel: usize) -> f64;
    fn quality(&self, channel: usize) -> Quality;
    fn indices(&self) -> Indices;
}

impl WindowData for eeg_dsp::Window<'_> {
    fn window_index(&self) -> u64 {
        self.index
    }
    fn start_ms(&self) -> i64 {
        self.start_ms
    }
    fn end_ms(&self) -> i64 {
        self.end_ms
    }
    fn settling(&self) -> bool {
        self.settling
    }
    fn n_bands(&self) -> usize {
        self.bands.len()
    }
    fn band_name(&self, band: usize) -> &str {
        &self.bands[band].name
    }
    fn n_channels(&self) -> usize {
        eeg_dsp::Window::n_channels(self)
    }
    fn band_power(&self, channel: usize) -> &[f64] {
        eeg_dsp::Window::band_power(self, channel)
    }
    fn relative_power(&self, channel: usize) -> &[f64] {
        eeg_dsp::Window::relative_power(self, channel)
    }
    fn total_power(&self, channel: usize) -> f64 {
        eeg_dsp::Window::total_power(self, channel)
    }
    fn quality(&self, channel: usize) -> Quality {
        *eeg_dsp::Window::quality(self, channel)
    }
    fn indices(&self) -> Indices {
        self.indices
    }
}

/// One window's features as plain borrowed slices.
#[derive(Debug, Clone, Copy)]
pub struct WindowFeatures<'a> {
    pub window_index: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub settling: bool,
    /// Band names in the configured order; the keys of `band_power` and `relative_power`.
    pub band_names: &'a [&'a str],
    /// One entry per channel, in the order of [`SessionMeta::channels`].
    pub channels: &'a [ChannelFeatures<'a>],
    pub indices: Indices,
}

/// One channel's features in a [`WindowFeatures`].
#[derive(Debug, Clone, Copy)]
pub struct ChannelFeatures<'a> {
    /// In the order of [`WindowFeatures::band_names`], µV².
    pub band_power: &'a [f64],
    /// In the order of [`WindowFeatures::band_names`].
    pub relative_power: &'a [f64],
    pub total_power: f64,
    pub quality: Quality,
}

impl WindowData for WindowFeatures<'_> {
    fn window_index(&self) -> u64 {
        self.window_index
    }
    fn start_ms(&self) -> i64 {
        self.start_ms
    }
    fn end_ms(&self) -> i64 {
        self.end_ms
    }
    fn settling(&self) -> bool {
        self.settling
    }
    fn n_bands(&self) -> usize {
        self.band_names.len()
    }
    fn band_name(&self, band: usize) -> &str {
        self.band_names[band]
    }
    fn n_channels(&self) -> usize {
        self.channels.len()
    }
    fn band_power(&self, channel: usize) -> &[f64] {
        self.channels[channel].band_power
    }
    fn relative_power(&self, channel: usize) -> &[f64] {
        self.channels[channel].relative_power
    }
    fn total_power(&self, channel: usize) -> f64 {
        self.channels[channel].total_power
    }
    fn quality(&self, channel: usize) -> Quality {
        self.channels[channel].quality
    }
    fn indices(&self) -> Indices {
        self.indices
    }
}

/// One `eeg.processed/1` record: a session's identity and one window, both borrowed.
///
/// `W` defaults to the processor's [`eeg_dsp::Window`]; [`WindowFeatures`] or any other
/// [`WindowData`] works too.
pub struct ProcessedRecord<'a, W: ?Sized = eeg_dsp::Window<'a>> {
    pub meta: &'a SessionMeta,
    pub window: &'a W,
}

impl<W: ?Sized> Clone for ProcessedRecord<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<W: ?Sized> Copy for ProcessedRecord<'_, W> {}

impl<W: ?Sized> fmt::Debug for ProcessedRecord<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessedRecord")
            .field("meta", self.meta)
            .finish_non_exhaustive()
    }
}

/// Appends the record's JSON (no trailing newline) to `out`.
///
/// Allocates nothing beyond growing `out`. A non-finite number (which the processor never
/// produces) is written as `null`, and a missing band value or channel name (a `WindowData`
/// with shorter slices than it has bands, or more channels than `meta.channels` names) as
/// `null` and `ch<index>`, so the output is always valid JSON with the contract's layout.
pub fn encode_processed<W: WindowData + ?Sized>(rec: &ProcessedRecord<'_, W>, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail and every value here serialises.
    let _ = serde_json::to_writer(out, rec);
}

impl<W: WindowData + ?Sized> Serialize for ProcessedRecord<'_, W> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (m, w) = (self.meta, self.window);
        let mut st = s.serialize_struct("ProcessedRecord", 11)?;
        st.serialize_field("schema", PROCESSED_SCHEMA)?;
        st.serialize_field("session_id", &m.session_id)?;
        st.serialize_field("device_id", &m.device_id)?;
        match &m.user_id {
            Some(u) => st.serialize_field("user_id", u)?,
            None => st.skip_field("user_id")?,
        }
        st.serialize_field("window_index", &w.window_index())?;
        st.serialize_field("start_ms", &w.start_ms())?;
        st.serialize_field("end_ms", &w.end_ms())?;
        st.serialize_field("sample_rate_hz", &m.sample_rate_hz)?;
        st.serialize_field("settling", &w.settling())?;
        st.serialize_field("channels", &Channels(self))?;
        st.serialize_field("indices", &IndicesView(w.indices()))?;
        st.end()
    }
}

struct Channels<'r, 'a, W: ?Sized>(&'r ProcessedRecord<'a, W>);

impl<W: WindowData + ?Sized> Serialize for Channels<'_, '_, W> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (m, w) = (self.0.meta, self.0.window);
        let n = w.n_channels();
        let mut seq = s.serialize_seq(Some(n))?;
        for c in 0..n {
            seq.serialize_element(&ChannelView {
                w,
                c,
                name: m.channels.get(c).map(String::as_str),
            })?;
        }
        seq.end()
    }
}

struct ChannelView<'a, W: ?Sized> {
    w: &'a W,
    c: usize,
    name: Option<&'a str>,
}

impl<W: WindowData + ?Sized> Serialize for ChannelView<'_, W> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (w, c) = (self.w, self.c);
        let mut st = s.serialize_struct("Channel", 5)?;
        st.serialize_field("name", &ChannelName(self.name, c))?;
        st.serialize_field("band_power", &BandMap(w, w.band_power(c)))?;
        st.serialize_field("relative_power", &BandMap(w, w.relative_power(c)))?;
        st.serialize_field("total_power", &w.total_power(c))?;
        st.serialize_field("quality", &QualityView(w.quality(c)))?;
        st.end()
    }
}

struct ChannelName<'a>(Option<&'a str>, usize);

impl Serialize for ChannelName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(name) => s.serialize_str(name),
            None => s.collect_str(&format_args!("ch{}", self.1)),
        }
    }
}

/// A band-keyed object written straight from the names and a slice of values, in band order.
struct BandMap<'a, W: ?Sized>(&'a W, &'a [f64]);

impl<W: WindowData + ?Sized> Serialize for BandMap<'_, W> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0.n_bands();
        let mut map = s.serialize_map(Some(n))?;
        for b in 0..n {
            map.serialize_entry(self.0.band_name(b), &self.1.get(b))?;
        }
        map.end()
    }
}

struct QualityView(Quality);

impl Serialize for QualityView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let q = &self.0;
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

struct IndicesView(Indices);

impl Serialize for IndicesView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = &self.0;
        let mut st = s.serialize_struct("Indices", 3)?;
        st.serialize_field("engagement", &i.engagement)?;
        st.serialize_field("theta_beta", &i.theta_beta)?;
        st.serialize_field("alpha_theta", &i.alpha_theta)?;
        st.end()
    }
}

/// An `eeg.processed/1` record read back, e.g. by a downstream consumer or a test.
///
/// Serialises to the same layout as [`encode_processed`]. A `null` where the contract has a
/// number (written for a non-finite value) reads back as NaN; `null` indices read back as
/// `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedRecordOwned {
    pub session_id: String,
    pub device_id: String,
    pub user_id: Option<String>,
    pub window_index: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub sample_rate_hz: f64,
    pub settling: bool,
    pub channels: Vec<ChannelOwned>,
    pub indices: IndicesOwned,
}

/// One channel of a [`ProcessedRecordOwned`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelOwned {
    pub name: String,
    /// (band, power in µV²) in the record's band order.
    pub band_power: OrderedBands,
    /// (band, fraction of the total power) in the record's band order.
    pub relative_power: OrderedBands,
    #[serde(deserialize_with = "nullable_f64")]
    pub total_power: f64,
    pub quality: QualityOwned,
}

/// Signal quality of one channel of a [`ProcessedRecordOwned`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityOwned {
    #[serde(deserialize_with = "nullable_f64")]
    pub rms_uv: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub ptp_uv: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub line_noise_ratio: f64,
    pub flatline: bool,
    pub railed: bool,
    pub artifact: bool,
    pub good: bool,
}

/// Session indices of a [`ProcessedRecordOwned`]; `None` where the record has `null`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicesOwned {
    pub engagement: Option<f64>,
    pub theta_beta: Option<f64>,
    pub alpha_theta: Option<f64>,
}

/// A JSON object of band name to number, keeping the order of the keys (the config's band
/// order). Serialises back to an object in the same order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrderedBands(pub Vec<(String, f64)>);

impl OrderedBands {
    /// The value of `band`, if the record has it.
    pub fn get(&self, band: &str) -> Option<f64> {
        self.0.iter().find(|(b, _)| b == band).map(|(_, v)| *v)
    }

    /// Band names in order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|(b, _)| b.as_str())
    }

    /// Values in band order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.0.iter().map(|(_, v)| *v)
    }
}

impl Serialize for OrderedBands {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (b, v) in &self.0 {
            map.serialize_entry(b, v)?;
        }
        map.end()
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
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedBands, A::Error> {
                let mut bands: Vec<(String, f64)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(name) = map.next_key::<String>()? {
                    if bands.iter().any(|(b, _)| *b == name) {
                        return Err(de::Error::custom(format_args!(
                            "band {} appears twice",
                            quote(&name)
                        )));
                    }
                    let NullableF64(v) = map.next_value()?;
                    bands.push((name, v));
                }
                Ok(OrderedBands(bands))
            }
        }
        d.deserialize_map(V)
    }
}

/// An f64 where `null` (written for a non-finite value) reads as NaN.
struct NullableF64(f64);

impl<'de> Deserialize<'de> for NullableF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NullableF64, D::Error> {
        Ok(NullableF64(
            Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN),
        ))
    }
}

fn nullable_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    NullableF64::deserialize(d).map(|NullableF64(v)| v)
}

/// The record as it is on the wire, `schema` included.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessedWire {
    schema: String,
    session_id: String,
    device_id: String,
    #[serde(default)]
    user_id: Option<String>,
    window_index: u64,
    start_ms: i64,
    end_ms: i64,
    #[serde(deserialize_with = "nullable_f64")]
    sample_rate_hz: f64,
    settling: bool,
    channels: Vec<ChannelOwned>,
    indices: IndicesOwned,
}

impl TryFrom<ProcessedWire> for ProcessedRecordOwned {
    type Error = SchemaError;
    fn try_from(w: ProcessedWire) -> Result<Self, SchemaError> {
        if w.schema != PROCESSED_SCHEMA {
            return Err(field(
                "schema",
                format!("expected \"{PROCESSED_SCHEMA}\", got {}", quote(&w.schema)),
            ));
        }
        Ok(ProcessedRecordOwned {
            session_id: w.session_id,
            device_id: w.device_id,
            user_id: w.user_id,
            window_index: w.window_index,
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            sample_rate_hz: w.sample_rate_hz,
            settling: w.settling,
            channels: w.channels,
            indices: w.indices,
        })
    }
}

impl<'de> Deserialize<'de> for ProcessedRecordOwned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ProcessedWire::deserialize(d)?
            .try_into()
            .map_err(de::Error::custom)
    }
}

impl Serialize for ProcessedRecordOwned {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ProcessedRecord", 11)?;
        st.serialize_field("schema", PROCESSED_SCHEMA)?;
        st.serialize_field("session_id", &self.session_id)?;
        st.serialize_field("device_id", &self.device_id)?;
        match &self.user_id {
            Some(u) => st.serialize_field("user_id", u)?,
            None => st.skip_field("user_id")?,
        }
        st.serialize_field("window_index", &self.window_index)?;
        st.serialize_field("start_ms", &self.start_ms)?;
        st.serialize_field("end_ms", &self.end_ms)?;
        st.serialize_field("sample_rate_hz", &self.sample_rate_hz)?;
        st.serialize_field("settling", &self.settling)?;
        st.serialize_field("channels", &self.channels)?;
        st.serialize_field("indices", &self.indices)?;
        st.end()
    }
}

impl ProcessedRecordOwned {
    /// The record's JSON, in the layout [`encode_processed`] writes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the record's JSON (no trailing newline) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail and every value here serialises.
        let _ = serde_json::to_writer(out, self);
    }
}

/// Decodes an `eeg.processed/1` record. Unknown fields are errors at every level, like in
/// [`crate::decode_raw`].
pub fn decode_processed(bytes: &[u8]) -> Result<ProcessedRecordOwned, SchemaError> {
    let wire: ProcessedWire = serde_json::from_slice(bytes).map_err(|e| from_json(&e, None))?;
    wire.try_into()
}
