use crate::error::EdfError;

/// Size of the fixed part of the header, and of each signal's part.
pub(crate) const BLOCK: usize = 256;
/// Upper bound on the number of signals; far above any real montage, it keeps a
/// corrupt header from requesting a huge signal table.
pub const MAX_SIGNALS: usize = 4096;
/// Upper bound on the size of one data record. The EDF specification recommends
/// records of at most 61440 bytes; real files exceed that, but a record of more
/// than 64 MiB only ever comes from a corrupt header, and the reader allocates one
/// record buffer up front.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Label of the annotation signal of EDF+ files.
pub(crate) const EDF_ANNOTATIONS: &str = "EDF Annotations";
/// Label of the annotation signal of BDF+ files.
pub(crate) const BDF_ANNOTATIONS: &str = "BDF Annotations";

/// File format, from the version field and the reserved field of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// EDF (1992): 16-bit samples, no annotations.
    Edf,
    /// EDF+ continuous ("EDF+C").
    EdfPlusC,
    /// EDF+ discontinuous ("EDF+D"): records may be separated by gaps.
    EdfPlusD,
    /// BioSemi BDF: 24-bit samples (version byte 0xFF followed by "BIOSEMI").
    Bdf,
    /// BDF+ continuous ("BDF+C").
    BdfPlusC,
    /// BDF+ discontinuous ("BDF+D").
    BdfPlusD,
}

/// The format as its header names it: `EDF`, `EDF+C`, `EDF+D`, `BDF`, `BDF+C`, `BDF+D`.
impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Edf => "EDF",
            Format::EdfPlusC => "EDF+C",
            Format::EdfPlusD => "EDF+D",
            Format::Bdf => "BDF",
            Format::BdfPlusC => "BDF+C",
            Format::BdfPlusD => "BDF+D",
        })
    }
}

impl Format {
    /// Whether samples are 24-bit (BDF family) rather than 16-bit (EDF family).
    pub fn is_bdf(self) -> bool {
        matches!(self, Format::Bdf | Format::BdfPlusC | Format::BdfPlusD)
    }

    /// Whether this is EDF+ or BDF+, whose data records carry time-keeping
    /// annotations.
    pub fn is_plus(self) -> bool {
        !matches!(self, Format::Edf | Format::Bdf)
    }

    /// Whether data records may be separated by gaps (EDF+D, BDF+D).
    pub fn is_discontinuous(self) -> bool {
        matches!(self, Format::EdfPlusD | Format::BdfPlusD)
    }

    /// Bytes per stored sample: 2 for EDF, 3 for BDF.
    pub fn bytes_per_sample(self) -> usize {
        if self.is_bdf() { 3 } else { 2 }
    }

    /// The digital range a sample can hold: i16 for EDF, i24 for BDF.
    pub fn digital_limits(self) -> (i32, i32) {
        if self.is_bdf() {
            (-(1 << 23), (1 << 23) - 1)
        } else {
            (i32::from(i16::MIN), i32::from(i16::MAX))
        }
    }
}

/// Start of the recording as written in the header.
///
/// EDF has no time zone field; the date and time are local time of the recording
/// site by convention, and this crate treats them as UTC (see
/// [`Header::start_unix_ms`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StartTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Sub-second part of the start, in nanoseconds (0..1e9). EDF+/BDF+ give it
    /// with the first data record's time-keeping annotation; 0 for plain EDF/BDF.
    pub nanosecond: u32,
}

impl StartTime {
    /// Seconds since the Unix epoch of the whole-second part, taking the date and
    /// time as UTC.
    pub fn unix_seconds(&self) -> i64 {
        let days = days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so no calendar dependency is needed.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// Header of one signal.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalHeader {
    pub label: String,
    pub transducer: String,
    pub physical_dimension: String,
    pub physical_min: f64,
    pub physical_max: f64,
    pub digital_min: i32,
    pub digital_max: i32,
    pub prefilter: String,
    pub samples_per_record: usize,
    /// Whether this is an "EDF Annotations" / "BDF Annotations" signal, which
    /// holds text rather than samples.
    pub is_annotation: bool,
}

impl SignalHeader {
    /// Samples per second, given the record duration of the file.
    pub fn sample_rate_hz(&self, record_duration_s: f64) -> f64 {
        self.samples_per_record as f64 / record_duration_s
    }

    /// Factor that converts this signal's physical unit to microvolts, or `None`
    /// when the unit is not a known voltage unit.
    pub fn microvolts_per_unit(&self) -> Option<f64> {
        microvolts_per_unit(&self.physical_dimension)
    }

    /// EDFlib's scaling: `(bitvalue, offset)` such that
    /// `physical = bitvalue * (offset + digital)`. Written this way rather than as
    /// `gain * digital + bias` so the values agree bit for bit with EDFlib and
    /// pyedflib, including for an inverted physical range (physical min > max),
    /// where bitvalue is negative.
    pub fn scaling(&self) -> (f64, f64) {
        let bitvalue = (self.physical_max - self.physical_min)
            / (f64::from(self.digital_max) - f64::from(self.digital_min));
        let offset = self.physical_max / bitvalue - f64::from(self.digital_max);
        (bitvalue, offset)
    }
}

pub(crate) fn microvolts_per_unit(unit: &str) -> Option<f64> {
    match unit.trim() {
        "uV" | "\u{b5}V" | "\u{3bc}V" => Some(1.0),
        "mV" => Some(1e3),
        "V" => Some(1e6),
        "nV" => Some(1e-3),
        _ => None,
    }
}

/// Parsed header of an EDF/EDF+/BDF/BDF+ file.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub format: Format,
    /// Local patient identification (Latin-1 decoded, spaces trimmed).
    pub patient: String,
    /// Local recording identification (Latin-1 decoded, spaces trimmed).
    pub recording: String,
    pub start: StartTime,
    /// Number of data records; when the header says -1 (unknown), the number of
    /// complete records the file holds.
    pub n_records: u64,
    pub record_duration_s: f64,
    /// All signals, annotation signals included, in file order.
    pub signals: Vec<SignalHeader>,
    pub(crate) header_bytes: u64,
    pub(crate) record_bytes: u64,
    pub(crate) n_records_declared: i64,
}

impl Header {
    /// Start of the recording in milliseconds since the Unix epoch: the header's
    /// date and time taken as UTC, plus the sub-second part from the EDF+
    /// time-keeping annotation of the first record, rounded to the nearest
    /// millisecond.
    pub fn start_unix_ms(&self) -> i64 {
        self.start.unix_seconds() * 1000
            + ((u64::from(self.start.nanosecond) + 500_000) / 1_000_000) as i64
    }

    /// The signals that hold samples (annotation signals skipped), with their
    /// index in [`Header::signals`]. Their order is the order of
    /// [`Record::signal`](crate::Record::signal).
    pub fn data_signals(&self) -> impl Iterator<Item = (usize, &SignalHeader)> {
        self.signals
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_annotation)
    }

    /// Number of signals that hold samples.
    pub fn n_data_signals(&self) -> usize {
        self.signals.iter().filter(|s| !s.is_annotation).count()
    }

    /// Size of the header in bytes, i.e. where the first data record starts.
    pub fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// Size of one data record in bytes.
    pub fn record_bytes(&self) -> u64 {
        self.record_bytes
    }

    /// Whether the header said -1 (unknown) for the number of data records, so
    /// [`Header::n_records`] was derived from the file size.
    pub fn n_records_from_file_size(&self) -> bool {
        self.n_records_declared < 0
    }

    /// Nominal length of the recording: number of records times their duration.
    /// For EDF+D files the span covered is longer when there are gaps.
    pub fn duration_s(&self) -> f64 {
        self.n_records as f64 * self.record_duration_s
    }
}

/// Latin-1 decoding: each byte is the code point of the same value, so any byte
/// sequence decodes without error.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    let s: String = bytes.iter().map(|&b| char::from(b)).collect();
    s.trim_matches(|c| c == ' ' || c == '\0').to_owned()
}

/// The fixed-size part of the header, before the signal table has been read.
#[derive(Debug)]
pub(crate) struct Fixed {
    pub format: Format,
    pub patient: String,
    pub recording: String,
    pub start: StartTime,
    pub header_bytes: u64,
    pub n_records_declared: i64,
    pub record_duration_s: f64,
    pub n_signals: usize,
}

/// Field access with error reporting that names the field and its byte range.
pub(crate) struct Fields<'a> {
    pub file: &'a str,
    pub bytes: &'a [u8],
}

/// Where a field lives: its name, the signal it belongs to (for the signal
/// table) and its byte range.
#[derive(Clone, Copy)]
pub(crate) struct At<'s> {
    pub name: &'static str,
    pub signal: Option<(usize, &'s str)>,
    pub start: usize,
    pub len: usize,
}

impl At<'_> {
    const fn fixed(name: &'static str, start: usize, len: usize) -> At<'static> {
        At {
            name,
            signal: None,
            start,
            len,
        }
    }
}

impl Fields<'_> {
    fn raw(&self, start: usize, len: usize) -> &[u8] {
        // The caller has read at least the bytes it asks for; an empty slice keeps
        // this total anyway and surfaces as a "found \"\"" parse error.
        self.bytes.get(start..start + len).unwrap_or_default()
    }

    fn text(&self, at: At<'_>) -> String {
        latin1(self.raw(at.start, at.len))
    }

    pub(crate) fn err(&self, at: At<'_>, problem: String) -> EdfError {
        EdfError::HeaderField {
            file: self.file.to_owned(),
            field: at.name,
            signal: at.signal.map(|(i, label)| (i, label.to_owned())),
            start: at.start as u64,
            end: (at.start + at.len) as u64,
            problem,
        }
    }

    fn int(&self, at: At<'_>) -> Result<i64, EdfError> {
        let t = self.text(at);
        parse_int(&t).ok_or_else(|| self.err(at, format!("expected an integer, found {t:?}")))
    }

    fn num(&self, at: At<'_>) -> Result<f64, EdfError> {
        let t = self.text(at);
        parse_num(&t)
            .ok_or_else(|| self.err(at, format!("expected a finite decimal number, found {t:?}")))
    }
}

pub(crate) fn parse_int(t: &str) -> Option<i64> {
    // str::parse accepts exactly an optional sign followed by digits, which is
    // what the specification allows; nothing more lenient is wanted here.
    t.parse::<i64>().ok()
}

pub(crate) fn parse_num(t: &str) -> Option<f64> {
    // f64's parser also accepts "inf", "NaN" and the like; only digits, sign,
    // point and exponent are plausible in a header.
    let plausible = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !plausible {
        return None;
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn two_digits([a, b]: [u8; 2]) -> Option<u8> {
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'))
}

/// Splits "aa.bb.cc" into its three two-character parts; `seps` are the
/// separators allowed between them.
fn three_parts(b: &[u8], seps: &[u8]) -> Option<[[u8; 2]; 3]> {
    match *b {
        [a0, a1, s0, b0, b1, s1, c0, c1] if seps.contains(&s0) && seps.contains(&s1) => {
            Some([[a0, a1], [b0, b1], [c0, c1]])
        }
        _ => None,
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// The 4-digit year of an EDF+ recording field ("Startdate dd-MMM-yyyy ..."),
/// if the field has one.
fn startdate_year(recording: &str) -> Option<u16> {
    let rest = recording.strip_prefix("Startdate ")?;
    let date = rest.split(' ').next()?;
    let mut parts = date.split('-');
    let (_day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !MONTHS.contains(&month.to_ascii_uppercase().as_str()) {
        return None;
    }
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    year.parse().ok()
}

const VERSION: At<'static> = At::fixed("version", 0, 8);
const PATIENT: At<'static> = At::fixed("local patient identification", 8, 80);
const RECORDING: At<'static> = At::fixed("local recording identification", 88, 80);
const STARTDATE: At<'static> = At::fixed("startdate of recording", 168, 8);
const STARTTIME: At<'static> = At::fixed("starttime of recording", 176, 8);
const HEADER_BYTES: At<'static> = At::fixed("number of bytes in header record", 184, 8);
pub(crate) const RESERVED: At<'static> = At::fixed("reserved", 192, 44);
pub(crate) const N_RECORDS: At<'static> = At::fixed("number of data records", 236, 8);
const DURATION: At<'static> = At::fixed("duration of a data record", 244, 8);
const N_SIGNALS: At<'static> = At::fixed("number of signals", 252, 4);

pub(crate) fn parse_fixed(file: &str, bytes: &[u8]) -> Result<Fixed, EdfError> {
    let f = Fields { file, bytes };

    let version = f.raw(VERSION.start, VERSION.len);
    let family_bdf = match version.split_first() {
        Some((0xFF, rest)) if rest == b"BIOSEMI" => true,
        _ if latin1(version) == "0" => false,
        _ => {
            return Err(f.err(
                VERSION,
                format!(
                    "expected \"0\" (EDF) or 0xFF \"BIOSEMI\" (BDF), found {:?}",
                    latin1(version)
                ),
            ));
        }
    };

    let reserved = f.text(RESERVED);
    let format = match (family_bdf, reserved.get(..5)) {
        (false, Some("EDF+C")) => Format::EdfPlusC,
        (false, Some("EDF+D")) => Format::EdfPlusD,
        // BDF+ files are meant to say "BDF+", but some writers copy the EDF+ tag.
        (true, Some("BDF+C" | "EDF+C")) => Format::BdfPlusC,
        (true, Some("BDF+D" | "EDF+D")) => Format::BdfPlusD,
        _ if reserved.starts_with("EDF+") || reserved.starts_with("BDF+") => {
            return Err(f.err(
                RESERVED,
                format!("expected \"EDF+C\" or \"EDF+D\" (\"BDF+C\" or \"BDF+D\" for BDF), found {reserved:?}"),
            ));
        }
        (false, _) => Format::Edf,
        (true, _) => Format::Bdf,
    };

    let patient = f.text(PATIENT);
    let recording = f.text(RECORDING);

    let date_raw = f.raw(STARTDATE.start, STARTDATE.len);
    let date_err = || {
        f.err(
            STARTDATE,
            format!(
                "expected a valid date dd.mm.yy, found {:?}",
                latin1(date_raw)
            ),
        )
    };
    let [d, m, y] = three_parts(date_raw, b".").ok_or_else(date_err)?;
    let day = two_digits(d).ok_or_else(date_err)?;
    let month = two_digits(m).ok_or_else(date_err)?;
    let plus_year = if format.is_plus() {
        startdate_year(&recording)
    } else {
        None
    };
    let year = match (two_digits(y), plus_year) {
        // The 4-digit year is authoritative when it agrees with the 2-digit one;
        // this is what resolves years outside the 1985..2084 window.
        (Some(yy), Some(full)) if full % 100 == u16::from(yy) => full,
        (Some(yy), _) if yy >= 85 => 1900 + u16::from(yy),
        (Some(yy), _) => 2000 + u16::from(yy),
        // EDF+ writes the literal "yy" for years after 2084 and relies on the
        // recording field.
        (None, Some(full)) if y == *b"yy" => full,
        (None, _) => return Err(date_err()),
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(date_err());
    }

    let time_raw = f.raw(STARTTIME.start, STARTTIME.len);
    let time_err = || {
        f.err(
            STARTTIME,
            format!(
                "expected a valid time hh.mm.ss, found {:?}",
                latin1(time_raw)
            ),
        )
    };
    // Some writers use ':' although the specification says '.'.
    let [h, mi, s] = three_parts(time_raw, b".:").ok_or_else(time_err)?;
    let (hour, minute, second) = (
        two_digits(h).ok_or_else(time_err)?,
        two_digits(mi).ok_or_else(time_err)?,
        two_digits(s).ok_or_else(time_err)?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return Err(time_err());
    }

    let n_signals_raw = f.int(N_SIGNALS)?;
    let n_signals = usize::try_from(n_signals_raw)
        .ok()
        .filter(|n| (1..=MAX_SIGNALS).contains(n))
        .ok_or_else(|| {
            f.err(
                N_SIGNALS,
                format!("expected 1..={MAX_SIGNALS}, found {n_signals_raw}"),
            )
        })?;

    let header_bytes = f.int(HEADER_BYTES)?;
    let expected_header = (BLOCK * (n_signals + 1)) as i64;
    if header_bytes != expected_header {
        return Err(f.err(
            HEADER_BYTES,
            format!(
                "expected {expected_header} (256 * (1 + {n_signals} signals)), found {header_bytes}"
            ),
        ));
    }

    let n_records_declared = f.int(N_RECORDS)?;
    if n_records_declared < 1 && n_records_declared != -1 {
        return Err(f.err(
            N_RECORDS,
            format!("expected a positive integer or -1 (unknown), found {n_records_declared}"),
        ));
    }

    let record_duration_s = f.num(DURATION)?;
    if record_duration_s <= 0.0 {
        // A zero duration is legal only for annotation-only EDF+ files, which
        // hold no samples and so are of no use to this reader.
        return Err(f.err(
            DURATION,
            format!("expected a positive number of seconds, found {record_duration_s}"),
        ));
    }

    Ok(Fixed {
        format,
        patient,
        recording,
        start: StartTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanosecond: 0,
        },
        header_bytes: header_bytes as u64,
        n_records_declared,
        record_duration_s,
        n_signals,
    })
}

/// Per-signal fields: name and width in bytes, in header order.
const SIGNAL_FIELDS: [(&str, usize); 10] = [
    ("label", 16),
    ("transducer type", 80),
    ("physical dimension", 8),
    ("physical minimum", 8),
    ("physical maximum", 8),
    ("digital minimum", 8),
    ("digital maximum", 8),
    ("prefiltering", 80),
    ("number of samples in each data record", 8),
    ("reserved", 32),
];
const LABEL: usize = 0;
const TRANSDUCER: usize = 1;
const DIMENSION: usize = 2;
const PHYS_MIN: usize = 3;
const PHYS_MAX: usize = 4;
const DIG_MIN: usize = 5;
const DIG_MAX: usize = 6;
const PREFILTER: usize = 7;
const SAMPLES: usize = 8;

/// Byte position of field `k` of signal `i` in a table of `ns` signals: the table
/// stores all signals' labels, then all transducers, and so on.
fn signal_field<'s>(ns: usize, k: usize, i: usize, label: Option<&'s str>) -> At<'s> {
    let before: usize = SIGNAL_FIELDS.iter().take(k).map(|&(_, w)| w).sum();
    let (name, width) = SIGNAL_FIELDS.get(k).copied().unwrap_or(("", 0));
    At {
        name,
        signal: label.map(|l| (i, l)),
        start: BLOCK + before * ns + i * width,
        len: width,
    }
}

/// Parses the signal table. `bytes` is the whole header (fixed part included).
pub(crate) fn parse_signals(
    file: &str,
    bytes: &[u8],
    fixed: &Fixed,
) -> Result<Vec<SignalHeader>, EdfError> {
    let f = Fields { file, bytes };
    let ns = fixed.n_signals;
    let (lo, hi) = fixed.format.digital_limits();
    let family = if fixed.format.is_bdf() { "BDF" } else { "EDF" };

    let mut signals = Vec::with_capacity(ns);
    for i in 0..ns {
        let label = f.text(signal_field(ns, LABEL, i, None));
        let at = |k: usize| signal_field(ns, k, i, Some(&label));
        let is_annotation = label == EDF_ANNOTATIONS || label == BDF_ANNOTATIONS;

        let physical_min = f.num(at(PHYS_MIN))?;
        let physical_max = f.num(at(PHYS_MAX))?;
        let digital_min = f.int(at(DIG_MIN))?;
        let digital_max = f.int(at(DIG_MAX))?;
        let samples = f.int(at(SAMPLES))?;

        let in_range = |v: i64| (i64::from(lo)..=i64::from(hi)).contains(&v);
        for (k, v) in [(DIG_MIN, digital_min), (DIG_MAX, digital_max)] {
            if !in_range(v) {
                return Err(f.err(
                    at(k),
                    format!("{v} is outside the {family} sample range {lo}..={hi}"),
                ));
            }
        }
        // Annotation signals hold text, so their scaling fields are meaningless
        // and writers fill them inconsistently; only sample signals need them.
        if !is_annotation {
            if digital_max <= digital_min {
                return Err(f.err(
                    at(DIG_MAX),
                    format!(
                        "digital maximum {digital_max} must exceed digital minimum {digital_min}"
                    ),
                ));
            }
            if physical_min == physical_max {
                return Err(f.err(
                    at(PHYS_MAX),
                    format!("physical maximum equals physical minimum ({physical_min})"),
                ));
            }
        }
        let samples_per_record = usize::try_from(samples)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                f.err(
                    at(SAMPLES),
                    format!("expected a positive integer, found {samples}"),
                )
            })?;

        signals.push(SignalHeader {
            transducer: f.text(at(TRANSDUCER)),
            physical_dimension: f.text(at(DIMENSION)),
            physical_min,
            physical_max,
            // Both were checked against the i24 range above, so they fit.
            digital_min: i32::try_from(digital_min).unwrap_or(lo),
            digital_max: i32::try_from(digital_max).unwrap_or(hi),
            prefilter: f.text(at(PREFILTER)),
            samples_per_record,
            is_annotation,
            label,
        });
    }
    Ok(signals)
}

/// Position of the samples-per-record field of signal `i`, for errors found
/// after parsing.
pub(crate) fn samples_field(ns: usize, i: usize, label: &str) -> At<'_> {
    signal_field(ns, SAMPLES, i, Some(label))
}
