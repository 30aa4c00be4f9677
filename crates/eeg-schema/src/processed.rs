//! `eeg.processed/1`: zero-copy encoding of a window's features, and the owned form for
//! reading records back.

use crate::error::{SchemaError, field, from_json, quote};
use eeg_dsp::{Indices, Quality};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The `schema` value of a processed record.
pub const PROCESSED_SCHEMA: &str = "eeg.processed/1";

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
/// Writes the bytes directly, allocating nothing beyond growing `out`: keys and punctuation
/// are pre-built byte strings, strings are escaped as serde_json escapes them, numbers are
/// formatted by the crates serde_json uses (`itoa`, `zmij`), so the output is byte for byte
/// what serde_json writes for this layout (the tests compare the two). A non-finite number
/// (which the processor never produces) is written as `null`, and a missing band value or
/// channel name (a `WindowData` with shorter slices than it has bands, or more channels than
/// `meta.channels` names) as `null` and `ch<index>`, so the output is always valid JSON with
/// the contract's layout.
pub fn encode_processed<W: WindowData + ?Sized>(rec: &ProcessedRecord<'_, W>, out: &mut Vec<u8>) {
    let (m, w) = (rec.meta, rec.window);
    // The schema value is PROCESSED_SCHEMA, spelt out so that the head is one copy.
    out.extend_from_slice(br#"{"schema":"eeg.processed/1","session_id":"#);
    write_str(out, &m.session_id);
    out.extend_from_slice(br#","device_id":"#);
    write_str(out, &m.device_id);
    if let Some(u) = &m.user_id {
        out.extend_from_slice(br#","user_id":"#);
        write_str(out, u);
    }
    out.extend_from_slice(br#","window_index":"#);
    out.extend_from_slice(itoa::Buffer::new().format(w.window_index()).as_bytes());
    out.extend_from_slice(br#","start_ms":"#);
    out.extend_from_slice(itoa::Buffer::new().format(w.start_ms()).as_bytes());
    out.extend_from_slice(br#","end_ms":"#);
    out.extend_from_slice(itoa::Buffer::new().format(w.end_ms()).as_bytes());
    out.extend_from_slice(br#","sample_rate_hz":"#);
    write_f64(out, m.sample_rate_hz);
    out.extend_from_slice(br#","settling":"#);
    write_bool(out, w.settling());
    out.extend_from_slice(br#","channels":["#);
    // Band names are written twice per channel: checked once here, names that need no
    // escape (all real ones) are then copied as they are.
    let plain_bands = (0..w.n_bands()).all(|b| !needs_escape(w.band_name(b)));
    for c in 0..w.n_channels() {
        out.extend_from_slice(if c == 0 {
            br#"{"name":"#
        } else {
            br#",{"name":"#
        });
        match m.channels.get(c) {
            Some(name) => write_str(out, name),
            None => {
                out.extend_from_slice(b"\"ch");
                out.extend_from_slice(itoa::Buffer::new().format(c).as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(br#","band_power":"#);
        write_bands(out, w, w.band_power(c), plain_bands);
        out.extend_from_slice(br#","relative_power":"#);
        write_bands(out, w, w.relative_power(c), plain_bands);
        out.extend_from_slice(br#","total_power":"#);
        write_f64(out, w.total_power(c));
        let q = w.quality(c);
        out.extend_from_slice(br#","quality":{"rms_uv":"#);
        write_f64(out, q.rms_uv);
        out.extend_from_slice(br#","ptp_uv":"#);
        write_f64(out, q.ptp_uv);
        out.extend_from_slice(br#","line_noise_ratio":"#);
        write_f64(out, q.line_noise_ratio);
        out.extend_from_slice(br#","flatline":"#);
        write_bool(out, q.flatline);
        out.extend_from_slice(br#","railed":"#);
        write_bool(out, q.railed);
        out.extend_from_slice(br#","artifact":"#);
        write_bool(out, q.artifact);
        out.extend_from_slice(br#","good":"#);
        write_bool(out, q.good);
        out.extend_from_slice(b"}}");
    }
    let i = w.indices();
    out.extend_from_slice(br#"],"indices":{"engagement":"#);
    write_opt_f64(out, i.engagement);
    out.extend_from_slice(br#","theta_beta":"#);
    write_opt_f64(out, i.theta_beta);
    out.extend_from_slice(br#","alpha_theta":"#);
    write_opt_f64(out, i.alpha_theta);
    out.extend_from_slice(b"}}");
}

/// A band-keyed object from the window's band names and `values`, in band order; `null`
/// where `values` is too short. `plain`: no band name needs an escape.
fn write_bands<W: WindowData + ?Sized>(out: &mut Vec<u8>, w: &W, values: &[f64], plain: bool) {
    out.push(b'{');
    for b in 0..w.n_bands() {
        if b > 0 {
            out.push(b',');
        }
        if plain {
            out.push(b'"');
            out.extend_from_slice(w.band_name(b).as_bytes());
            out.extend_from_slice(b"\":");
        } else {
            write_str(out, w.band_name(b));
            out.push(b':');
        }
        write_opt_f64(out, values.get(b).copied());
    }
    out.push(b'}');
}

/// serde_json's `serialize_f64`: `zmij`'s shortest representation that reads back to the
/// same value, and `null` for NaN and the infinities, which JSON cannot express.
#[inline]
fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

#[inline]
fn write_opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => write_f64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

#[inline]
fn write_bool(out: &mut Vec<u8>, v: bool) {
    // Each branch copies a constant length, which compiles to a store rather than a call.
    if v {
        out.extend_from_slice(b"true");
    } else {
        out.extend_from_slice(b"false");
    }
}

/// What follows the backslash for each byte that a JSON string cannot hold as it is, 0 for
/// the others: the same table as serde_json's. `u` means `\u00XX` with lowercase hex.
/// Bytes from 0x7f up (DEL and every byte of non-ASCII UTF-8) are written unchanged.
static ESCAPE: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| ESCAPE[usize::from(b)] != 0)
}

/// `s` as a quoted JSON string, escaped exactly as serde_json escapes it. Runs of bytes that
/// need no escape (all of a typical id or name) are copied in one piece.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_processed;
    use eeg_dsp::{ProcessingConfig, SessionProcessor, Window};
    use proptest::prelude::*;
    use serde::ser::SerializeSeq;

    // The reference: the same layout through serde's generic machinery and serde_json's
    // serializer. `encode_processed` must write exactly these bytes for every record.

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

    /// A record's owned parts, lent out as a [`WindowFeatures`] by [`check`].
    #[derive(Debug, Clone)]
    struct Case {
        meta: SessionMeta,
        window_index: u64,
        start_ms: i64,
        end_ms: i64,
        settling: bool,
        band_names: Vec<String>,
        channels: Vec<Channel>,
        indices: Indices,
    }

    #[derive(Debug, Clone)]
    struct Channel {
        band_power: Vec<f64>,
        relative_power: Vec<f64>,
        total_power: f64,
        quality: Quality,
    }

    /// Checks the case's record against serde_json; returns its JSON.
    fn check(case: &Case) -> Vec<u8> {
        let names: Vec<&str> = case.band_names.iter().map(String::as_str).collect();
        let channels: Vec<ChannelFeatures<'_>> = case
            .channels
            .iter()
            .map(|c| ChannelFeatures {
                band_power: &c.band_power,
                relative_power: &c.relative_power,
                total_power: c.total_power,
                quality: c.quality,
            })
            .collect();
        let window = WindowFeatures {
            window_index: case.window_index,
            start_ms: case.start_ms,
            end_ms: case.end_ms,
            settling: case.settling,
            band_names: &names,
            channels: &channels,
            indices: case.indices,
        };
        assert_matches_reference(&ProcessedRecord {
            meta: &case.meta,
            window: &window,
        })
    }

    /// Encodes `rec` after some bytes already in the buffer (the encoder appends) and
    /// checks the result against serde_json.
    fn assert_matches_reference<W: WindowData + ?Sized>(rec: &ProcessedRecord<'_, W>) -> Vec<u8> {
        const EARLIER: &[u8] = b"{\"an earlier\":\"record\"}\n";
        let mut out = EARLIER.to_vec();
        encode_processed(rec, &mut out);
        let reference = serde_json::to_vec(rec).expect("every record serialises");
        let (earlier, encoded) = out.split_at(EARLIER.len());
        assert_eq!(earlier, EARLIER);
        assert!(
            encoded == reference,
            "encoder:   {}\nserde_json: {}",
            String::from_utf8_lossy(encoded),
            String::from_utf8_lossy(&reference)
        );
        reference
    }

    /// Floats where formatting has a rule of its own: signed zeros, integral values (`.0`,
    /// and where the exponent form starts), the edges of the exponent form for small values,
    /// subnormals, the extremes, and the non-finite values that become `null`.
    const SPECIAL_F64: [f64; 30] = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        1.0 / 3.0,
        1e-4,
        1e-5,
        1e-7,
        123.456,
        1e15,
        1e16,
        1e17,
        1e21,
        1e22,
        -1e21,
        9_007_199_254_740_993.0,
        1.8e19,
        1e300,
        5e-324,
        -5e-324,
        2.225_073_858_507_201e-308,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        f64::MAX,
        f64::MIN,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];

    /// Characters around every escaping rule: the quote, the backslash, the short escapes,
    /// other control characters (`\u00XX`), and DEL and non-ASCII (written unchanged).
    const CHARS: [char; 22] = [
        'a', 'Z', '7', ' ', '/', '"', '\\', '\n', '\r', '\t', '\u{8}', '\u{c}', '\u{0}', '\u{1}',
        '\u{1f}', '\u{7f}', '–', 'Ä', '😀', '\u{80}', '\u{2028}', '\u{feff}',
    ];

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            // Every bit pattern: both signs, subnormals, huge and tiny, NaN payloads.
            any::<u64>().prop_map(f64::from_bits),
            // Integral values of every size.
            (any::<i64>(), 0i32..25).prop_map(|(m, e)| (m as f64 / 1e3).trunc() * 10f64.powi(e)),
            // Short mantissas at every scale, subnormals included.
            (-9999i32..9999, -330i32..310).prop_map(|(m, e)| f64::from(m) * 10f64.powi(e)),
            -1e3f64..1e3,
            prop::sample::select(&SPECIAL_F64[..]),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(prop::sample::select(&CHARS[..]), 0..12)
                .prop_map(String::from_iter),
            any::<String>(),
            // Typical ids and names: nothing to escape.
            "[a-zA-Z0-9_.-]{1,12}",
        ]
    }

    fn millis() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1),
            Just(0),
            1_600_000_000_000i64..1_900_000_000_000,
        ]
    }

    fn band_values(n_bands: usize) -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            3 => prop::collection::vec(any_f64(), n_bands),
            // Fewer values than bands (written as null) or more (ignored).
            1 => prop::collection::vec(any_f64(), 0..=n_bands + 1),
        ]
    }

    fn channel(n_bands: usize) -> impl Strategy<Value = Channel> {
        (
            band_values(n_bands),
            band_values(n_bands),
            any_f64(),
            prop::array::uniform3(any_f64()),
            any::<[bool; 4]>(),
        )
            .prop_map(
                |(band_power, relative_power, total_power, q, flags)| Channel {
                    band_power,
                    relative_power,
                    total_power,
                    quality: Quality {
                        rms_uv: q[0],
                        ptp_uv: q[1],
                        line_noise_ratio: q[2],
                        flatline: flags[0],
                        railed: flags[1],
                        artifact: flags[2],
                        good: flags[3],
                    },
                },
            )
    }

    prop_compose! {
        fn case()(n_bands in 0usize..6, n_channels in 0usize..5)(
            band_names in prop::collection::vec(text(), n_bands),
            // From no names to one more than channels: channels without one are positional.
            names in prop::collection::vec(text(), 0..=n_channels + 1),
            channels in prop::collection::vec(channel(n_bands), n_channels),
            ids in (text(), text(), prop::option::of(text())),
            window_index in prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..1000],
            start_ms in millis(),
            end_ms in millis(),
            sample_rate_hz in any_f64(),
            settling in any::<bool>(),
            indices in prop::array::uniform3(prop::option::of(any_f64())),
        ) -> Case {
            Case {
                meta: SessionMeta {
                    session_id: ids.0,
                    device_id: ids.1,
                    user_id: ids.2,
                    sample_rate_hz,
                    channels: names,
                },
                window_index,
                start_ms,
                end_ms,
                settling,
                band_names,
                channels,
                indices: Indices {
                    engagement: indices[0],
                    theta_beta: indices[1],
                    alpha_theta: indices[2],
                },
            }
        }
    }

    /// Equal as the decoder reads a written number back: finite values exactly, everything
    /// written as `null` (non-finite or missing) as NaN.
    fn read_back(written: Option<f64>, read: f64) -> bool {
        match written {
            Some(v) if v.is_finite() => v.to_bits() == read.to_bits(),
            _ => read.is_nan(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn encoder_matches_serde_json(case in case()) {
            check(&case);
        }

        #[test]
        fn encoded_records_decode_to_their_values(case in case()) {
            let bytes = check(&case);
            let mut names = case.band_names.clone();
            names.sort();
            names.dedup();
            let decoded = decode_processed(&bytes);
            if names.len() < case.band_names.len() && !case.channels.is_empty() {
                // The decoder rejects a band that appears twice in a channel; the encoder
                // writes the names it is given.
                let e = decoded.err().map(|e| e.to_string()).unwrap_or_default();
                prop_assert!(e.contains("appears twice"), "{}", e);
                return Ok(());
            }
            let rec = decoded.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let m = &case.meta;
            prop_assert_eq!(&rec.session_id, &m.session_id);
            prop_assert_eq!(&rec.device_id, &m.device_id);
            prop_assert_eq!(&rec.user_id, &m.user_id);
            prop_assert_eq!(rec.window_index, case.window_index);
            prop_assert_eq!((rec.start_ms, rec.end_ms), (case.start_ms, case.end_ms));
            prop_assert!(read_back(Some(m.sample_rate_hz), rec.sample_rate_hz));
            prop_assert_eq!(rec.settling, case.settling);
            prop_assert_eq!(rec.channels.len(), case.channels.len());
            for (c, (got, want)) in rec.channels.iter().zip(&case.channels).enumerate() {
                let name = m.channels.get(c).cloned().unwrap_or_else(|| format!("ch{c}"));
                prop_assert_eq!(&got.name, &name);
                for (bands, values) in [
                    (&got.band_power, &want.band_power),
                    (&got.relative_power, &want.relative_power),
                ] {
                    prop_assert!(bands.names().eq(case.band_names.iter().map(String::as_str)));
                    for (b, v) in bands.values().enumerate() {
                        prop_assert!(read_back(values.get(b).copied(), v), "band {} of channel {}", b, c);
                    }
                }
                let (q, wq) = (&got.quality, &want.quality);
                prop_assert!(read_back(Some(want.total_power), got.total_power));
                prop_assert!(read_back(Some(wq.rms_uv), q.rms_uv));
                prop_assert!(read_back(Some(wq.ptp_uv), q.ptp_uv));
                prop_assert!(read_back(Some(wq.line_noise_ratio), q.line_noise_ratio));
                prop_assert_eq!(
                    (q.flatline, q.railed, q.artifact, q.good),
                    (wq.flatline, wq.railed, wq.artifact, wq.good)
                );
            }
            let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
            prop_assert_eq!(rec.indices.engagement, finite(case.indices.engagement));
            prop_assert_eq!(rec.indices.theta_beta, finite(case.indices.theta_beta));
            prop_assert_eq!(rec.indices.alpha_theta, finite(case.indices.alpha_theta));
        }
    }

    fn quality(v: f64, flags: u8) -> Quality {
        Quality {
            rms_uv: v,
            ptp_uv: -v,
            line_noise_ratio: v,
            flatline: flags & 1 != 0,
            railed: flags & 2 != 0,
            artifact: flags & 4 != 0,
            good: flags & 8 != 0,
        }
    }

    #[test]
    fn edge_cases_match_serde_json() {
        let all_ascii: String = (0u8..0x80).map(char::from).collect();
        let band_names: Vec<String> = ["", "\"", "a\\b", "\n\u{1}\u{1f}", "\u{7f}", "Fp1–Ä😀"]
            .map(String::from)
            .to_vec();
        // One channel per special value, in every number of the channel; names for half of
        // them, so the rest are positional.
        let channels: Vec<Channel> = SPECIAL_F64
            .iter()
            .enumerate()
            .map(|(c, &v)| Channel {
                band_power: vec![v; band_names.len()],
                // Shorter than the bands from the 4th channel on: the rest are null.
                relative_power: vec![-v; band_names.len().saturating_sub(c / 4)],
                total_power: v,
                quality: quality(v, c as u8),
            })
            .collect();
        let base = Case {
            meta: SessionMeta {
                session_id: all_ascii.clone(),
                device_id: "Fp1–Ä😀".into(),
                user_id: Some("\"\\\n\r\t\u{8}\u{c}\u{0}\u{1}\u{1f}\u{7f}".into()),
                sample_rate_hz: 250.0,
                channels: band_names
                    .iter()
                    .chain([&all_ascii])
                    .cycle()
                    .take(channels.len() / 2)
                    .cloned()
                    .collect(),
            },
            window_index: u64::MAX,
            start_ms: i64::MIN,
            end_ms: i64::MAX,
            settling: true,
            band_names,
            channels,
            indices: Indices {
                engagement: Some(f64::NAN),
                theta_beta: None,
                alpha_theta: Some(-0.0),
            },
        };
        let mut cases = vec![base.clone()];
        for (i, &v) in SPECIAL_F64.iter().enumerate() {
            let mut case = base.clone();
            case.meta.user_id = None;
            case.meta.sample_rate_hz = v;
            case.settling = i % 2 == 0;
            case.window_index = i as u64;
            case.start_ms = -(i as i64);
            case.indices = Indices {
                engagement: Some(v),
                theta_beta: Some(v),
                alpha_theta: Some(v),
            };
            cases.push(case);
        }
        // No channels, no bands, no names, empty ids.
        cases.push(Case {
            meta: SessionMeta {
                session_id: String::new(),
                device_id: String::new(),
                user_id: Some(String::new()),
                sample_rate_hz: 1.0,
                channels: Vec::new(),
            },
            window_index: 0,
            start_ms: 0,
            end_ms: 0,
            settling: false,
            band_names: Vec::new(),
            channels: Vec::new(),
            indices: Indices::default(),
        });
        let mut no_bands = base.clone();
        no_bands.band_names.clear();
        cases.push(no_bands);
        for case in &cases {
            check(case);
        }
        let head = check(&cases[0]);
        assert!(
            head.starts_with(b"{\"schema\":\"eeg.processed/1\",\"session_id\":\"\\u0000\\u0001")
        );
    }

    #[test]
    fn processor_windows_match_serde_json() {
        let n = 1500;
        let x: Vec<f64> = (0..3 * n)
            .map(|i| 10.0 * (i as f64 * 0.25).sin() + (i / n) as f64 * 50.0)
            .collect();
        let mut p =
            SessionProcessor::new(&ProcessingConfig::default(), 250.0, 3, 1_700_000_000_000)
                .unwrap();
        // Three channels and two names: the third is positional.
        let meta = SessionMeta {
            session_id: "s-42".into(),
            device_id: "bud-7".into(),
            user_id: Some("u-1".into()),
            sample_rate_hz: 250.0,
            channels: vec!["C3".into(), "C4".into()],
        };
        let mut windows = 0;
        p.push_channel_major(&x, n, &mut |w: &Window<'_>| {
            assert_matches_reference(&ProcessedRecord {
                meta: &meta,
                window: w,
            });
            windows += 1;
        })
        .unwrap();
        assert!(windows > 0, "no window completed");
    }

    /// SplitMix64: a fixed sequence of well-mixed 64-bit patterns.
    fn patterns(mut state: u64) -> impl Iterator<Item = u64> {
        std::iter::repeat_with(move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    #[test]
    fn numbers_format_as_serde_json_does() {
        let powers = (-330..=310).flat_map(|e| {
            let p = 10f64.powi(e);
            [p, -p, p.next_up(), p.next_down(), 3.0 * p, p.trunc() + 1.0]
        });
        let integral = (0..64).flat_map(|s| {
            let v = (1u64 << s) as f64;
            [v, v + 1.0, v - 1.0, -v]
        });
        let floats = patterns(1)
            .take(100_000)
            .map(f64::from_bits)
            .chain(powers)
            .chain(integral)
            .chain(SPECIAL_F64);
        let mut out = Vec::new();
        for v in floats {
            out.clear();
            write_f64(&mut out, v);
            assert_eq!(
                out,
                serde_json::to_vec(&v).unwrap(),
                "{v:e} ({:#x})",
                v.to_bits()
            );
        }
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut out = Vec::new();
        let mut check = |s: &str| {
            out.clear();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        };
        // Every character alone, doubled and between plain text: escapes at the start, in
        // the middle, at the end and back to back.
        for c in char::MIN..=char::MAX {
            check(&format!("{c}"));
            check(&format!("ab{c}{c}cd"));
        }
        for s in [
            "",
            "plain",
            "\"\"",
            "\\\\",
            "a\u{0}",
            "\u{0}a",
            "Fp1–Ä😀\n\u{7f}",
        ] {
            check(s);
        }
        let mut rng = patterns(2);
        for _ in 0..10_000 {
            let len = rng.next().unwrap() % 16;
            let s: String = (0..len)
                .map(|_| CHARS[(rng.next().unwrap() % CHARS.len() as u64) as usize])
                .collect();
            check(&s);
        }
    }
}
