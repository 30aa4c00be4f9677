//! The records as a long table (`--format csv|parquet`), one row per window and channel,
//! with the same numbers as the `eeg.processed/1` JSON.
//!
//! Columns, in order: `session_id`, `device_id`, `window_index`, `start_ms`, `end_ms`,
//! `settling`, `channel`, `<band>_power` and `<band>_rel` for each band in config order,
//! `total_power`, the quality fields (`rms_uv`, `ptp_uv`, `line_noise_ratio`, `flatline`,
//! `railed`, `artifact`, `good`) and the session indices (`engagement`, `theta_beta`,
//! `alpha_theta`, nullable). docs/processing.md gives the types and units.
//!
//! [`columns`] names the columns and [`cells`] gives a row's values in the same order; both
//! writers go through them, so the CSV header, the Parquet schema and every row agree.

use crate::encode::Encode;
use eeg_dsp::{Band, ProcessingConfig, Window};
use eeg_schema::SessionMeta;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, Type};
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

/// An output format of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// eeg.processed/1 records, one JSON object per line
    #[default]
    Jsonl,
    /// a long table, one row per window and channel, with a header row
    Csv,
    /// the same table as Parquet (Snappy-compressed)
    Parquet,
}

impl Format {
    /// The extensions of output file names that pick a format, in the order of
    /// [`Format::from_extension`]'s formats.
    pub const EXTENSIONS: [&'static str; 5] = ["jsonl", "ndjson", "json", "csv", "parquet"];

    /// The format a file name's extension (without its dot, any case) picks: `jsonl`,
    /// `ndjson` or `json` (JSON lines, as inputs with those names are read), `csv` or
    /// `parquet`; `None` for any other.
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }

    /// The writer of this format on `out`.
    pub fn encoder(
        self,
        config: &ProcessingConfig,
        out: Box<dyn Write + Send>,
    ) -> io::Result<Box<dyn Encode>> {
        Ok(match self {
            Format::Jsonl => Box::new(crate::encode::Jsonl::new(out)),
            Format::Csv => Box::new(Csv::new(&config.bands, out)?),
            Format::Parquet => Box::new(Parquet::new(config, out)?),
        })
    }
}

/// What a column holds; in CSV every kind is text, in Parquet each has its own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text: ids and channel names.
    Text,
    /// `window_index`: an unsigned 64-bit count.
    Index,
    /// Unix time in ms.
    Time,
    Flag,
    Number,
    /// A number or null: the session indices.
    OptionalNumber,
}

const HEAD: [(&str, Kind); 7] = [
    ("session_id", Kind::Text),
    ("device_id", Kind::Text),
    ("window_index", Kind::Index),
    ("start_ms", Kind::Time),
    ("end_ms", Kind::Time),
    ("settling", Kind::Flag),
    ("channel", Kind::Text),
];

const TAIL: [(&str, Kind); 11] = [
    ("total_power", Kind::Number),
    ("rms_uv", Kind::Number),
    ("ptp_uv", Kind::Number),
    ("line_noise_ratio", Kind::Number),
    ("flatline", Kind::Flag),
    ("railed", Kind::Flag),
    ("artifact", Kind::Flag),
    ("good", Kind::Flag),
    ("engagement", Kind::OptionalNumber),
    ("theta_beta", Kind::OptionalNumber),
    ("alpha_theta", Kind::OptionalNumber),
];

/// The table's columns for these bands, in order.
pub fn columns(bands: &[Band]) -> Vec<(String, Kind)> {
    let fixed = |cols: &[(&str, Kind)]| -> Vec<(String, Kind)> {
        cols.iter().map(|&(n, k)| (n.to_string(), k)).collect()
    };
    let mut cols = fixed(&HEAD);
    for b in bands {
        cols.push((format!("{}_power", b.name), Kind::Number));
        cols.push((format!("{}_rel", b.name), Kind::Number));
    }
    cols.extend(fixed(&TAIL));
    cols
}

/// Refuses bands whose columns would take the name of another column (a band called
/// `total` makes `total_power`): a table cannot have two columns of one name.
pub fn check_columns(bands: &[Band], format: Format) -> Result<(), crate::Error> {
    let cols = columns(bands);
    for b in bands {
        for col in [format!("{}_power", b.name), format!("{}_rel", b.name)] {
            if cols.iter().filter(|(n, _)| *n == col).count() > 1 {
                return Err(crate::Error::bad(format!(
                    "bands.{}: its column '{col}' is also the name of another column of the \
                     --format {} table; rename the band",
                    b.name,
                    format.name()
                )));
            }
        }
    }
    Ok(())
}

/// One value of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Text(&'a str),
    Index(u64),
    Time(i64),
    Flag(bool),
    Number(f64),
    OptionalNumber(Option<f64>),
}

/// The values of channel `c`'s row of a window, in the order of [`columns`], each handed to
/// `f`; stops at `f`'s first error.
pub fn cells<E>(
    meta: &SessionMeta,
    w: &Window<'_>,
    c: usize,
    mut f: impl FnMut(Cell<'_>) -> Result<(), E>,
) -> Result<(), E> {
    // As in the JSON: a channel without a name (which `process` never has) is positional.
    let positional;
    let channel = match meta.channels.get(c) {
        Some(name) => name.as_str(),
        None => {
            positional = format!("ch{c}");
            positional.as_str()
        }
    };
    f(Cell::Text(&meta.session_id))?;
    f(Cell::Text(&meta.device_id))?;
    f(Cell::Index(w.index))?;
    f(Cell::Time(w.start_ms))?;
    f(Cell::Time(w.end_ms))?;
    f(Cell::Flag(w.settling))?;
    f(Cell::Text(channel))?;
    for (&power, &rel) in w.band_power(c).iter().zip(w.relative_power(c)) {
        f(Cell::Number(power))?;
        f(Cell::Number(rel))?;
    }
    f(Cell::Number(w.total_power(c)))?;
    let q = w.quality(c);
    f(Cell::Number(q.rms_uv))?;
    f(Cell::Number(q.ptp_uv))?;
    f(Cell::Number(q.line_noise_ratio))?;
    f(Cell::Flag(q.flatline))?;
    f(Cell::Flag(q.railed))?;
    f(Cell::Flag(q.artifact))?;
    f(Cell::Flag(q.good))?;
    let i = w.indices;
    f(Cell::OptionalNumber(i.engagement))?;
    f(Cell::OptionalNumber(i.theta_beta))?;
    f(Cell::OptionalNumber(i.alpha_theta))
}

/// A window must have the bands the header or schema was made for: the columns are fixed
/// when the output starts.
fn check_bands(bands: &[String], w: &Window<'_>) -> io::Result<()> {
    if bands.len() == w.bands.len() && bands.iter().zip(w.bands).all(|(a, b)| *a == b.name) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "a window's bands differ from the table's columns",
    ))
}

/// The table as CSV: a header row, then one row per window and channel. Numbers are written
/// as in the JSON (the shortest text that reads back to the same f64), booleans as
/// `true`/`false`, null as an empty field; text is quoted only when it has to be.
pub struct Csv {
    out: csv::Writer<Box<dyn Write + Send>>,
    bands: Vec<String>,
}

impl std::fmt::Debug for Csv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csv")
            .field("bands", &self.bands)
            .finish_non_exhaustive()
    }
}

impl Csv {
    fn new(bands: &[Band], out: Box<dyn Write + Send>) -> io::Result<Csv> {
        let mut out = csv::WriterBuilder::new()
            .buffer_capacity(1 << 16)
            .from_writer(out);
        out.write_record(columns(bands).iter().map(|(n, _)| n))
            .map_err(csv_io)?;
        Ok(Csv {
            out,
            bands: bands.iter().map(|b| b.name.clone()).collect(),
        })
    }
}

impl Encode for Csv {
    fn window(&mut self, meta: &Arc<SessionMeta>, w: &Window<'_>) -> io::Result<()> {
        check_bands(&self.bands, w)?;
        let out = &mut self.out;
        for c in 0..w.n_channels() {
            cells(meta, w, c, |cell| match cell {
                Cell::Text(s) => out.write_field(s),
                Cell::Index(v) => out.write_field(itoa::Buffer::new().format(v)),
                Cell::Time(v) => out.write_field(itoa::Buffer::new().format(v)),
                Cell::Flag(b) => out.write_field(if b { "true" } else { "false" }),
                Cell::Number(v) => number_field(out, Some(v)),
                Cell::OptionalNumber(v) => number_field(out, v),
            })
            .map_err(csv_io)?;
            out.write_record(None::<&[u8]>).map_err(csv_io)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.out.flush()
    }
}

/// A number as the JSON writes it (the shortest text that reads back to the same f64), or
/// an empty field, as JSON's null, for none or a non-finite value (which the processor
/// never produces).
pub(crate) fn number_field<W: Write>(out: &mut csv::Writer<W>, v: Option<f64>) -> csv::Result<()> {
    match v.filter(|v| v.is_finite()) {
        Some(v) => out.write_field(zmij::Buffer::new().format_finite(v)),
        None => out.write_field(""),
    }
}

/// The writer's own IO error as it is (a closed pipe stays recognisable as one).
pub(crate) fn csv_io(e: csv::Error) -> io::Error {
    if !e.is_io_error() {
        return e.into();
    }
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// Bytes of column buffers per row group, about: rows are buffered column by column until
/// then, so memory stays bounded however long the recording is.
const ROW_GROUP_BYTES: usize = 8 << 20;

/// Distinct texts (ids, channel names) kept to be shared between rows; past this many the
/// set starts again, so many short sessions cannot grow it without bound.
const MAX_INTERNED: usize = 4096;

/// One column's values of the row group being filled.
enum Buffer {
    Text(Vec<ByteArray>),
    Int(Vec<i64>),
    Flag(Vec<bool>),
    Number(Vec<f64>),
    /// The present values, and a definition level per row (1 present, 0 null).
    Optional(Vec<f64>, Vec<i16>),
}

impl Buffer {
    fn new(kind: Kind) -> Buffer {
        match kind {
            Kind::Text => Buffer::Text(Vec::new()),
            Kind::Index | Kind::Time => Buffer::Int(Vec::new()),
            Kind::Flag => Buffer::Flag(Vec::new()),
            Kind::Number => Buffer::Number(Vec::new()),
            Kind::OptionalNumber => Buffer::Optional(Vec::new(), Vec::new()),
        }
    }

    /// Bytes one row takes in a buffer of this kind.
    fn row_bytes(kind: Kind) -> usize {
        match kind {
            Kind::Text => size_of::<ByteArray>(),
            Kind::Index | Kind::Time => size_of::<i64>(),
            Kind::Flag => size_of::<bool>(),
            Kind::Number => size_of::<f64>(),
            Kind::OptionalNumber => size_of::<f64>() + size_of::<i16>(),
        }
    }
}

/// The Parquet type of a column of this kind.
fn parquet_type(name: &str, kind: Kind) -> Result<Type, ParquetError> {
    let (physical, logical, repetition) = match kind {
        Kind::Text => (
            Physical::BYTE_ARRAY,
            Some(LogicalType::String),
            Repetition::REQUIRED,
        ),
        Kind::Index => (
            Physical::INT64,
            Some(LogicalType::integer(64, false)),
            Repetition::REQUIRED,
        ),
        Kind::Time => (
            Physical::INT64,
            Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
            Repetition::REQUIRED,
        ),
        Kind::Flag => (Physical::BOOLEAN, None, Repetition::REQUIRED),
        Kind::Number => (Physical::DOUBLE, None, Repetition::REQUIRED),
        Kind::OptionalNumber => (Physical::DOUBLE, None, Repetition::OPTIONAL),
    };
    Type::primitive_type_builder(name, physical)
        .with_logical_type(logical)
        .with_repetition(repetition)
        .build()
}

/// The processing config as JSON, for the Parquet file's metadata: what made the numbers.
/// Bands are an array of `[name, lo_hz, hi_hz]`, in config order.
fn config_json(c: &ProcessingConfig) -> String {
    serde_json::json!({
        "filter": {
            "mains_hz": c.filter.mains_hz,
            "notch_q": c.filter.notch_q,
            "bandpass_hz": c.filter.bandpass_hz,
            "bandpass_order": c.filter.bandpass_order,
        },
        "window": {
            "length_s": c.window.length_s,
            "hop_s": c.window.hop_s,
            "welch_segment_s": c.window.welch_segment_s,
        },
        "bands": c.bands.iter().map(|b| (&b.name, b.lo_hz, b.hi_hz)).collect::<Vec<_>>(),
        "quality": {
            "flatline_ptp_uv": c.quality.flatline_ptp_uv,
            "railed_fraction": c.quality.railed_fraction,
            "artifact_ptp_uv": c.quality.artifact_ptp_uv,
            "max_line_noise_ratio": c.quality.max_line_noise_ratio,
        },
    })
    .to_string()
}

/// The table as Parquet, through the low-level column writer: rows are buffered per column
/// and written as a row group of about [`ROW_GROUP_BYTES`]. The writer only needs `Write`
/// (it keeps its own offsets), so standard output through a pipe works too.
pub struct Parquet {
    writer: SerializedFileWriter<Box<dyn Write + Send>>,
    bands: Vec<String>,
    buffers: Vec<Buffer>,
    rows: usize,
    rows_per_group: usize,
    /// Each distinct text once, shared by its rows (a `ByteArray` clone counts a reference).
    interned: HashMap<Vec<u8>, ByteArray>,
}

impl std::fmt::Debug for Parquet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parquet")
            .field("bands", &self.bands)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Parquet {
    fn new(config: &ProcessingConfig, out: Box<dyn Write + Send>) -> io::Result<Parquet> {
        let cols = columns(&config.bands);
        let fields = cols
            .iter()
            .map(|(name, kind)| parquet_type(name, *kind).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(parquet_io)?;
        let schema = Type::group_type_builder("eeg_processed")
            .with_fields(fields)
            .build()
            .map_err(parquet_io)?;
        let metadata = vec![
            KeyValue::new(
                "eeg.schema".into(),
                eeg_schema::PROCESSED_SCHEMA.to_string(),
            ),
            KeyValue::new("eeg.processing".into(), config_json(config)),
            KeyValue::new(
                "eeg.pipeline_version".into(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ];
        // Dictionaries pay off where values repeat: ids, channel names, and the window's
        // index and times (the same for each of its channels); not on the measurements.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .set_key_value_metadata(Some(metadata));
        for (name, kind) in &cols {
            if matches!(kind, Kind::Text | Kind::Index | Kind::Time) {
                props = props.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), true);
            }
        }
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props.build()))
            .map_err(parquet_io)?;
        let row_bytes: usize = cols.iter().map(|(_, k)| Buffer::row_bytes(*k)).sum();
        Ok(Parquet {
            writer,
            bands: config.bands.iter().map(|b| b.name.clone()).collect(),
            buffers: cols.iter().map(|(_, k)| Buffer::new(*k)).collect(),
            rows: 0,
            rows_per_group: (ROW_GROUP_BYTES / row_bytes).max(1024),
            interned: HashMap::new(),
        })
    }

    /// Writes the buffered rows as one row group, column by column.
    fn flush_row_group(&mut self) -> Result<(), ParquetError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        for buffer in &mut self.buffers {
            let Some(mut column) = group.next_column()? else {
                return Err(ParquetError::General("fewer columns than buffers".into()));
            };
            match buffer {
                Buffer::Text(v) => {
                    column.typed::<ByteArrayType>().write_batch(v, None, None)?;
                    v.clear();
                }
                Buffer::Int(v) => {
                    column.typed::<Int64Type>().write_batch(v, None, None)?;
                    v.clear();
                }
                Buffer::Flag(v) => {
                    column.typed::<BoolType>().write_batch(v, None, None)?;
                    v.clear();
                }
                Buffer::Number(v) => {
                    column.typed::<DoubleType>().write_batch(v, None, None)?;
                    v.clear();
                }
                Buffer::Optional(v, levels) => {
                    column
                        .typed::<DoubleType>()
                        .write_batch(v, Some(levels), None)?;
                    v.clear();
                    levels.clear();
                }
            }
            column.close()?;
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }
}

impl Encode for Parquet {
    fn window(&mut self, meta: &Arc<SessionMeta>, w: &Window<'_>) -> io::Result<()> {
        check_bands(&self.bands, w)?;
        let (buffers, interned) = (&mut self.buffers, &mut self.interned);
        for c in 0..w.n_channels() {
            let mut column = buffers.iter_mut();
            cells(meta, w, c, |cell| {
                match (column.next(), cell) {
                    (Some(Buffer::Text(v)), Cell::Text(s)) => v.push(intern(interned, s)),
                    (Some(Buffer::Int(v)), Cell::Index(x)) => {
                        // UINT_64 is stored in INT64 by its bits, as the format says.
                        v.push(x as i64);
                    }
                    (Some(Buffer::Int(v)), Cell::Time(t)) => v.push(t),
                    (Some(Buffer::Flag(v)), Cell::Flag(b)) => v.push(b),
                    (Some(Buffer::Number(v)), Cell::Number(x)) => v.push(x),
                    (Some(Buffer::Optional(v, levels)), Cell::OptionalNumber(x)) => {
                        levels.push(i16::from(x.is_some()));
                        v.extend(x);
                    }
                    _ => {
                        return Err(io::Error::other("a row does not match the table's columns"));
                    }
                }
                Ok(())
            })?;
            if column.next().is_some() {
                return Err(io::Error::other("a row does not match the table's columns"));
            }
            self.rows += 1;
        }
        if self.rows >= self.rows_per_group {
            self.flush_row_group().map_err(parquet_io)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.flush_row_group().map_err(parquet_io)?;
        // Writes the footer and flushes `out`.
        self.writer.close().map_err(parquet_io)?;
        Ok(())
    }
}

/// `s` as a `ByteArray` shared with the other rows that have it.
fn intern(interned: &mut HashMap<Vec<u8>, ByteArray>, s: &str) -> ByteArray {
    if let Some(b) = interned.get(s.as_bytes()) {
        return b.clone();
    }
    if interned.len() >= MAX_INTERNED {
        interned.clear();
    }
    let b = ByteArray::from(s.as_bytes().to_vec());
    interned.insert(s.as_bytes().to_vec(), b.clone());
    b
}

/// The writer's own IO error as it is (a closed pipe stays recognisable as one).
fn parquet_io(e: ParquetError) -> io::Error {
    match e {
        ParquetError::External(e) => match e.downcast::<io::Error>() {
            Ok(e) => *e,
            Err(e) => io::Error::other(e),
        },
        e => io::Error::other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eeg_dsp::{Indices, Quality};
    use std::path::Path;

    #[test]
    fn an_extension_picks_a_format_in_any_case() {
        assert_eq!(Format::from_extension("csv"), Some(Format::Csv));
        assert_eq!(Format::from_extension("CSV"), Some(Format::Csv));
        assert_eq!(Format::from_extension("Parquet"), Some(Format::Parquet));
        for ext in ["jsonl", "ndjson", "json"] {
            assert_eq!(Format::from_extension(ext), Some(Format::Jsonl), "{ext}");
        }
        for ext in ["xlsx", "txt", "tsv", ""] {
            assert_eq!(Format::from_extension(ext), None, "{ext}");
        }
        for ext in Format::EXTENSIONS {
            assert!(Format::from_extension(ext).is_some(), "{ext}");
        }
    }

    #[test]
    fn a_row_has_one_cell_per_column_of_its_kind() {
        let bands = ProcessingConfig::default().bands;
        let quality = [Quality::default(); 2];
        let n = bands.len();
        let (power, rel) = (vec![1.0; 2 * n], vec![0.2; 2 * n]);
        let mut w = Window::from_parts(&bands, &power, &rel, &[5.0, 5.0], &quality);
        w.indices = Indices {
            engagement: None,
            theta_beta: Some(1.0),
            alpha_theta: None,
        };
        let meta = crate::encode::session_meta("s", "d", None, 250.0, vec!["C3".into()]);
        let cols = columns(&bands);
        for c in 0..2 {
            let mut kinds = Vec::new();
            cells(&meta, &w, c, |cell| {
                kinds.push(match cell {
                    Cell::Text(_) => Kind::Text,
                    Cell::Index(_) => Kind::Index,
                    Cell::Time(_) => Kind::Time,
                    Cell::Flag(_) => Kind::Flag,
                    Cell::Number(_) => Kind::Number,
                    Cell::OptionalNumber(_) => Kind::OptionalNumber,
                });
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(kinds.iter().eq(cols.iter().map(|(_, k)| k)), "{kinds:?}");
        }
    }

    #[test]
    fn a_band_named_like_a_column_is_refused() {
        let band = |name: &str| Band {
            name: name.into(),
            lo_hz: 1.0,
            hi_hz: 4.0,
        };
        assert!(check_columns(&ProcessingConfig::default().bands, Format::Csv).is_ok());
        let e = check_columns(&[band("slow"), band("total")], Format::Parquet).unwrap_err();
        assert!(e.is_bad_input());
        let e = e.to_string();
        assert!(
            e.starts_with("bands.total: its column 'total_power'"),
            "{e}"
        );
        assert!(e.contains("--format parquet"), "{e}");
    }

    /// The 28 columns of the default bands, as docs/processing.md lists them.
    const DEFAULT_HEADER: &str = "session_id,device_id,window_index,start_ms,end_ms,settling,channel,\
        delta_power,delta_rel,theta_power,theta_rel,alpha_power,alpha_rel,beta_power,beta_rel,\
        gamma_power,gamma_rel,total_power,rms_uv,ptp_uv,line_noise_ratio,flatline,railed,artifact,\
        good,engagement,theta_beta,alpha_theta";

    /// Windows 0..3 of two channels of the testing session through `format` into `path`.
    fn write_table(format: Format, path: &Path) -> Vec<eeg_dsp::OwnedWindow> {
        let config = ProcessingConfig::default();
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = format.encoder(&config, Box::new(file)).unwrap();
        let meta = Arc::new(crate::testing::meta(2));
        let windows: Vec<_> = (0..3).map(|i| crate::testing::window(i, 2)).collect();
        for w in &windows {
            encoder.window(&meta, &w.view()).unwrap();
        }
        encoder.finish().unwrap();
        windows
    }

    #[test]
    fn csv_has_the_documented_header_and_one_row_per_window_and_channel() {
        let dir = crate::testing::scratch("table_csv");
        let path = dir.join("t.csv");
        let windows = write_table(Format::Csv, &path);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(DEFAULT_HEADER));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 6);
        for (r, row) in rows.iter().enumerate() {
            let (i, c) = (r / 2, r % 2);
            let start = 1_000_000 + 1000 * i;
            assert_eq!(
                row[..5].join(","),
                format!("s,d,{i},{start},{}", start + 4000)
            );
            assert_eq!(row[5], "false");
            assert_eq!(row[6], format!("C{c}"));
            // Band b's power is b + c (b from 1), of a total of 15 + 5c.
            let total = 15.0 + 5.0 * c as f64;
            for b in 0..5 {
                let power = (b + 1 + c) as f64;
                assert_eq!(row[7 + 2 * b].parse::<f64>().unwrap(), power);
                assert_eq!(row[8 + 2 * b].parse::<f64>().unwrap(), power / total);
            }
            assert_eq!(row[17].parse::<f64>().unwrap(), total);
            assert_eq!(row[21..25], ["false", "false", "false", "true"]);
            let indices = windows[i].view().indices;
            for (cell, v) in
                row[25..]
                    .iter()
                    .zip([indices.engagement, indices.theta_beta, indices.alpha_theta])
            {
                assert_eq!(cell.parse::<f64>().ok(), v);
            }
        }
    }

    #[test]
    fn parquet_reads_back_with_the_same_columns_and_values() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::RowAccessor;
        let dir = crate::testing::scratch("table_parquet");
        let path = dir.join("t.parquet");
        write_table(Format::Parquet, &path);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let meta = reader.metadata().file_metadata();
        assert_eq!(meta.num_rows(), 6);
        let names: Vec<&str> = meta
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name())
            .collect();
        assert_eq!(names.join(","), DEFAULT_HEADER);
        let kv = meta.key_value_metadata().expect("metadata");
        let schema = kv
            .iter()
            .find(|k| k.key == "eeg.schema")
            .expect("eeg.schema");
        assert_eq!(schema.value.as_deref(), Some("eeg.processed/1"));
        let rows: Vec<_> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        for (r, row) in rows.iter().enumerate() {
            let (i, c) = (r / 2, r % 2);
            assert_eq!(row.get_string(0).unwrap(), "s");
            assert_eq!(row.get_ulong(2).unwrap(), i as u64);
            assert_eq!(
                row.get_timestamp_millis(3).unwrap(),
                1_000_000 + 1000 * i as i64
            );
            assert_eq!(row.get_string(6).unwrap(), &format!("C{c}"));
            assert_eq!(row.get_double(11).unwrap(), (3 + c) as f64);
            assert_eq!(row.get_double(17).unwrap(), 15.0 + 5.0 * c as f64);
            assert!(row.get_bool(24).unwrap());
        }
    }
}
