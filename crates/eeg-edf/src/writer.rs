use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::EdfError;
use crate::header::{
    BLOCK, Format, MAX_RECORD_BYTES, MAX_SIGNALS, StartTime, days_in_month, parse_num,
};

/// Sample width of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteFormat {
    /// EDF, 16-bit samples.
    Edf,
    /// BDF, 24-bit samples.
    Bdf,
}

impl WriteFormat {
    /// The format a reader reports for files written with this one.
    pub fn format(self) -> Format {
        match self {
            WriteFormat::Edf => Format::Edf,
            WriteFormat::Bdf => Format::Bdf,
        }
    }

    /// The full digital range of a sample, a sensible default for
    /// [`WriteSignal::digital_min`] and [`WriteSignal::digital_max`].
    pub fn digital_limits(self) -> (i32, i32) {
        self.format().digital_limits()
    }
}

/// One signal of a file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSignal {
    /// At most 16 printable ASCII characters.
    pub label: String,
    /// At most 80 printable ASCII characters.
    pub transducer: String,
    /// At most 8 printable ASCII characters, e.g. "uV".
    pub physical_dimension: String,
    /// Written with at most 8 characters; values that need more are rounded to
    /// fewer decimals, and samples are quantised with the rounded value.
    pub physical_min: f64,
    pub physical_max: f64,
    pub digital_min: i32,
    pub digital_max: i32,
    /// At most 80 printable ASCII characters.
    pub prefilter: String,
    pub samples_per_record: usize,
}

/// What to write: a plain (continuous, annotation-free) EDF or BDF file.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSpec {
    pub format: WriteFormat,
    /// At most 80 printable ASCII characters.
    pub patient: String,
    /// At most 80 printable ASCII characters.
    pub recording: String,
    /// Year 1985..=2084 (the range of the header's 2-digit year); `nanosecond`
    /// must be 0 since plain EDF cannot store it.
    pub start: StartTime,
    /// Must be written exactly in 8 characters (e.g. 1, 0.5, 0.25).
    pub record_duration_s: f64,
    /// Number of records that will be written, 1..=99999999.
    pub n_records: u64,
    pub signals: Vec<WriteSignal>,
}

impl WriteSpec {
    /// A plain 16-bit EDF of `channels` EEG signals (`EEG00`, `EEG01`, ...) at `rate_hz`,
    /// in µV over ±3276.8 µV (0.1 µV steps), one-second records from 2025-01-01 00:00:00:
    /// the layout of the synthetic recordings the tests and benchmarks write.
    pub fn eeg(channels: usize, rate_hz: usize, n_records: u64) -> WriteSpec {
        WriteSpec {
            format: WriteFormat::Edf,
            patient: "X X X X".into(),
            recording: "Startdate 01-JAN-2025 X X synthetic".into(),
            start: StartTime {
                year: 2025,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                nanosecond: 0,
            },
            record_duration_s: 1.0,
            n_records,
            signals: (0..channels)
                .map(|c| WriteSignal {
                    label: format!("EEG{c:02}"),
                    transducer: String::new(),
                    physical_dimension: "uV".into(),
                    physical_min: -3276.8,
                    physical_max: 3276.7,
                    digital_min: -32768,
                    digital_max: 32767,
                    prefilter: String::new(),
                    samples_per_record: rate_hz,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Quantiser {
    len: usize,
    bitvalue: f64,
    offset: f64,
    digital_min: f64,
    digital_max: f64,
}

/// Streaming writer of plain EDF/BDF files: the header is written at
/// construction, then one data record per [`EdfWriter::write_record`] call, so
/// long recordings never need to be held in memory.
///
/// Dropping the writer without [`EdfWriter::finish`] leaves a file whose record
/// count may not match its header.
pub struct EdfWriter<W: Write> {
    writer: W,
    name: String,
    bdf: bool,
    signals: Vec<(String, Quantiser)>,
    buf: Vec<u8>,
    declared: u64,
    written: u64,
}

// Written by hand so debugging output does not dump the record buffer.
impl<W: Write> std::fmt::Debug for EdfWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdfWriter")
            .field("name", &self.name)
            .field("bdf", &self.bdf)
            .field("declared", &self.declared)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl EdfWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path` and writes the header.
    pub fn create(path: impl AsRef<Path>, spec: &WriteSpec) -> Result<Self, EdfError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        // Validate before touching the file system.
        let header = encode_header(&name, spec)?;
        let file = File::create(path).map_err(|source| EdfError::Open {
            file: name.clone(),
            source,
        })?;
        Self::with_header(BufWriter::new(file), name, spec, header)
    }
}

impl<W: Write> EdfWriter<W> {
    /// Writes the header to `writer`; `name` identifies the output in errors.
    pub fn from_writer(writer: W, name: &str, spec: &WriteSpec) -> Result<Self, EdfError> {
        let header = encode_header(name, spec)?;
        Self::with_header(writer, name.to_owned(), spec, header)
    }

    fn with_header(
        mut writer: W,
        name: String,
        spec: &WriteSpec,
        header: Encoded,
    ) -> Result<Self, EdfError> {
        writer
            .write_all(&header.bytes)
            .map_err(|source| EdfError::Io {
                file: name.clone(),
                context: "writing the header".to_owned(),
                source,
            })?;
        Ok(EdfWriter {
            writer,
            name,
            bdf: spec.format == WriteFormat::Bdf,
            signals: header.signals,
            buf: Vec::with_capacity(header.record_bytes),
            declared: spec.n_records,
            written: 0,
        })
    }

    /// Number of records written so far.
    pub fn records_written(&self) -> u64 {
        self.written
    }

    /// Writes one data record. `signals[i]` holds the physical values of signal
    /// i, exactly `samples_per_record` of them. Values are quantised to the
    /// nearest digital value (halves away from zero) and clamped to the digital
    /// range; NaN is rejected.
    pub fn write_record(&mut self, signals: &[&[f64]]) -> Result<(), EdfError> {
        let record = self.written;
        let invalid = |problem: String| EdfError::InvalidRecord {
            file: self.name.clone(),
            record,
            problem,
        };
        if record >= self.declared {
            return Err(invalid(format!(
                "the header declares only {} data records",
                self.declared
            )));
        }
        if signals.len() != self.signals.len() {
            return Err(invalid(format!(
                "expected {} signals, got {}",
                self.signals.len(),
                signals.len()
            )));
        }
        self.buf.clear();
        for (i, ((label, q), values)) in self.signals.iter().zip(signals).enumerate() {
            if values.len() != q.len {
                return Err(invalid(format!(
                    "signal {i} {label:?} needs {} samples, got {}",
                    q.len,
                    values.len()
                )));
            }
            for (j, &v) in values.iter().enumerate() {
                if v.is_nan() {
                    return Err(invalid(format!("signal {i} {label:?} sample {j} is NaN")));
                }
                // Inverse of the reader's physical = bitvalue * (offset + digital);
                // f64::round rounds halves away from zero.
                let d = (v / q.bitvalue - q.offset)
                    .round()
                    .clamp(q.digital_min, q.digital_max) as i32;
                let le = d.to_le_bytes();
                let width = if self.bdf { 3 } else { 2 };
                self.buf
                    .extend_from_slice(le.get(..width).unwrap_or_default());
            }
        }
        self.writer
            .write_all(&self.buf)
            .map_err(|source| EdfError::Io {
                file: self.name.clone(),
                context: format!("writing data record {record}"),
                source,
            })?;
        self.written += 1;
        Ok(())
    }

    /// Flushes and returns the underlying writer; fails if the number of records
    /// written differs from the number declared in the header.
    pub fn finish(mut self) -> Result<W, EdfError> {
        if self.written != self.declared {
            return Err(EdfError::RecordCount {
                file: self.name,
                declared: self.declared,
                written: self.written,
            });
        }
        self.writer.flush().map_err(|source| EdfError::Io {
            file: self.name.clone(),
            context: "flushing".to_owned(),
            source,
        })?;
        Ok(self.writer)
    }
}

/// Convenience: writes a whole file from a closure that fills each record.
/// `fill(record_index, signals)` gets one buffer per signal, already sized to
/// its samples per record.
pub fn write_edf<W: Write>(
    writer: W,
    name: &str,
    spec: &WriteSpec,
    mut fill: impl FnMut(u64, &mut [Vec<f64>]),
) -> Result<W, EdfError> {
    let mut w = EdfWriter::from_writer(writer, name, spec)?;
    let mut bufs: Vec<Vec<f64>> = spec
        .signals
        .iter()
        .map(|s| vec![0.0; s.samples_per_record])
        .collect();
    for r in 0..spec.n_records {
        fill(r, &mut bufs);
        let slices: Vec<&[f64]> = bufs.iter().map(Vec::as_slice).collect();
        w.write_record(&slices)?;
    }
    w.finish()
}

struct Encoded {
    bytes: Vec<u8>,
    signals: Vec<(String, Quantiser)>,
    record_bytes: usize,
}

/// Formats `v` in at most 8 characters, rounding away decimals when the exact
/// shortest representation is longer.
fn number8(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    let exact = format!("{v}");
    if exact.len() <= 8 {
        return Some(exact);
    }
    (0..=7).rev().find_map(|decimals| {
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        };
        let s = if s == "-0" { "0".to_owned() } else { s };
        (s.len() <= 8).then_some(s)
    })
}

fn encode_header(name: &str, spec: &WriteSpec) -> Result<Encoded, EdfError> {
    let invalid = |problem: String| EdfError::InvalidSpec {
        file: name.to_owned(),
        problem,
    };
    let mut out = Vec::new();
    let text = |out: &mut Vec<u8>, what: &str, value: &str, width: usize| {
        if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(invalid(format!(
                "{what} {value:?} has characters other than printable ASCII"
            )));
        }
        if value.len() > width {
            return Err(invalid(format!(
                "{what} {value:?} is longer than {width} characters"
            )));
        }
        out.extend_from_slice(value.as_bytes());
        out.resize(out.len() + width - value.len(), b' ');
        Ok(())
    };

    let ns = spec.signals.len();
    if !(1..=MAX_SIGNALS).contains(&ns) {
        return Err(invalid(format!(
            "expected 1..={MAX_SIGNALS} signals, got {ns}"
        )));
    }
    let st = &spec.start;
    if !(1985..=2084).contains(&st.year) {
        return Err(invalid(format!(
            "start year {} is outside 1985..=2084, which the header's 2-digit year can hold",
            st.year
        )));
    }
    if st.nanosecond != 0 {
        return Err(invalid(
            "plain EDF/BDF cannot store a sub-second start time".to_owned(),
        ));
    }
    let date_ok = st.day >= 1 && st.day <= days_in_month(st.year, st.month);
    if !date_ok || st.hour > 23 || st.minute > 59 || st.second > 59 {
        return Err(invalid(format!("invalid start date/time {st:?}")));
    }
    if !(1..=99_999_999).contains(&spec.n_records) {
        return Err(invalid(format!(
            "number of data records must be 1..=99999999, got {}",
            spec.n_records
        )));
    }
    let duration = number8(spec.record_duration_s)
        .filter(|s| spec.record_duration_s > 0.0 && parse_num(s) == Some(spec.record_duration_s))
        .ok_or_else(|| {
            invalid(format!(
                "record duration {} s is not a positive number that can be written exactly in 8 characters",
                spec.record_duration_s
            ))
        })?;

    match spec.format {
        WriteFormat::Edf => text(&mut out, "version", "0", 8)?,
        WriteFormat::Bdf => {
            out.push(0xFF);
            out.extend_from_slice(b"BIOSEMI");
        }
    }
    text(&mut out, "patient", &spec.patient, 80)?;
    text(&mut out, "recording", &spec.recording, 80)?;
    let date = format!("{:02}.{:02}.{:02}", st.day, st.month, st.year % 100);
    text(&mut out, "start date", &date, 8)?;
    let time = format!("{:02}.{:02}.{:02}", st.hour, st.minute, st.second);
    text(&mut out, "start time", &time, 8)?;
    text(&mut out, "header bytes", &(BLOCK * (ns + 1)).to_string(), 8)?;
    let reserved = match spec.format {
        WriteFormat::Edf => "",
        // BioSemi's tag for plain 24-bit files.
        WriteFormat::Bdf => "24BIT",
    };
    text(&mut out, "reserved", reserved, 44)?;
    text(
        &mut out,
        "number of data records",
        &spec.n_records.to_string(),
        8,
    )?;
    text(&mut out, "record duration", &duration, 8)?;
    text(&mut out, "number of signals", &ns.to_string(), 4)?;

    let (lo, hi) = spec.format.digital_limits();
    let bps = if spec.format == WriteFormat::Bdf {
        3
    } else {
        2
    };
    let mut phys = Vec::with_capacity(ns);
    let mut record_bytes: u64 = 0;
    for (i, s) in spec.signals.iter().enumerate() {
        let what = |field: &str| format!("signal {i} {:?} {field}", s.label);
        let min = number8(s.physical_min);
        let max = number8(s.physical_max);
        let (Some(min), Some(max)) = (min, max) else {
            return Err(invalid(format!(
                "{} {}..{} cannot be written in 8 characters",
                what("physical range"),
                s.physical_min,
                s.physical_max
            )));
        };
        // Quantise with the values as written so the reader reproduces them.
        let (pmin, pmax) = (
            parse_num(&min).unwrap_or(f64::NAN),
            parse_num(&max).unwrap_or(f64::NAN),
        );
        if !pmin.is_finite() || !pmax.is_finite() || pmin == pmax {
            return Err(invalid(format!(
                "{} {min}..{max} (as written) is empty",
                what("physical range")
            )));
        }
        if s.digital_min < lo || s.digital_max > hi || s.digital_min >= s.digital_max {
            return Err(invalid(format!(
                "{} {}..{} must be increasing and within {lo}..={hi}",
                what("digital range"),
                s.digital_min,
                s.digital_max
            )));
        }
        if !(1..=99_999_999).contains(&s.samples_per_record) {
            return Err(invalid(format!(
                "{} must be 1..=99999999, got {}",
                what("samples per record"),
                s.samples_per_record
            )));
        }
        record_bytes = record_bytes.saturating_add(s.samples_per_record as u64 * bps);
        if record_bytes > MAX_RECORD_BYTES {
            return Err(invalid(format!(
                "data records would exceed the supported maximum of {MAX_RECORD_BYTES} bytes"
            )));
        }
        phys.push((min, max));
    }

    let fields: [(&str, usize); 10] = [
        ("label", 16),
        ("transducer", 80),
        ("physical dimension", 8),
        ("physical minimum", 8),
        ("physical maximum", 8),
        ("digital minimum", 8),
        ("digital maximum", 8),
        ("prefilter", 80),
        ("samples per record", 8),
        ("reserved", 32),
    ];
    for (k, &(field, width)) in fields.iter().enumerate() {
        for (s, (min, max)) in spec.signals.iter().zip(&phys) {
            let value = match k {
                0 => s.label.clone(),
                1 => s.transducer.clone(),
                2 => s.physical_dimension.clone(),
                3 => min.clone(),
                4 => max.clone(),
                5 => s.digital_min.to_string(),
                6 => s.digital_max.to_string(),
                7 => s.prefilter.clone(),
                8 => s.samples_per_record.to_string(),
                _ => String::new(),
            };
            text(
                &mut out,
                &format!("signal {:?} {field}", s.label),
                &value,
                width,
            )?;
        }
    }

    let signals = spec
        .signals
        .iter()
        .zip(&phys)
        .map(|(s, (min, max))| {
            let pmin = parse_num(min).unwrap_or(0.0);
            let pmax = parse_num(max).unwrap_or(1.0);
            let bitvalue = (pmax - pmin) / (f64::from(s.digital_max) - f64::from(s.digital_min));
            let offset = pmax / bitvalue - f64::from(s.digital_max);
            (
                s.label.clone(),
                Quantiser {
                    len: s.samples_per_record,
                    bitvalue,
                    offset,
                    digital_min: f64::from(s.digital_min),
                    digital_max: f64::from(s.digital_max),
                },
            )
        })
        .collect();

    Ok(Encoded {
        bytes: out,
        signals,
        // Bounded by MAX_RECORD_BYTES above.
        record_bytes: record_bytes as usize,
    })
}
