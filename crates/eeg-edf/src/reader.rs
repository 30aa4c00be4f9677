use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::error::EdfError;
use crate::header::{
    self, BLOCK, Fields, Header, MAX_RECORD_BYTES, N_RECORDS, RESERVED, SignalHeader,
};
use crate::tal;

/// How one data signal is laid out in a record and scaled.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Byte offset of the signal's samples within the record.
    byte_start: usize,
    /// Samples per record.
    len: usize,
    /// Offset of the signal's samples within [`Record`]'s sample buffer.
    out_start: usize,
    bitvalue: f64,
    offset: f64,
    /// Factor to microvolts (1 when the unit is unknown, leaving physical units).
    to_uv: f64,
}

/// Samples of one data record, reused from one [`EdfReader::read_record`] call
/// to the next so the hot loop does not allocate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    samples: Vec<f64>,
    /// `bounds[i]..bounds[i + 1]` is data signal i within `samples`.
    bounds: Vec<usize>,
    index: u64,
    onset_s: f64,
}

impl Record {
    /// An empty record, to be filled by [`EdfReader::read_record`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of data signals (annotation signals are not included).
    pub fn n_signals(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    /// Samples of data signal `data_signal_index` (counting only non-annotation
    /// signals, in the order of [`Header::data_signals`]), in µV for voltage
    /// units and in the signal's physical unit otherwise.
    ///
    /// # Panics
    ///
    /// If `data_signal_index >= self.n_signals()`, like slice indexing; see
    /// [`Record::get_signal`] for a checked variant.
    pub fn signal(&self, data_signal_index: usize) -> &[f64] {
        match self.get_signal(data_signal_index) {
            Some(s) => s,
            None => signal_out_of_range(data_signal_index, self.n_signals()),
        }
    }

    /// Samples of data signal `data_signal_index`, or `None` when out of range.
    pub fn get_signal(&self, data_signal_index: usize) -> Option<&[f64]> {
        signal_slice(&self.samples, &self.bounds, data_signal_index)
    }

    /// All data signals in order.
    pub fn signals(&self) -> impl Iterator<Item = &[f64]> {
        signal_slices(&self.samples, &self.bounds)
    }

    /// Index of this record in the file, from 0.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Start of this record in seconds from the start of the recording
    /// ([`Header::start_unix_ms`]). For EDF+/BDF+ it comes from the record's
    /// time-keeping annotation, so gaps in EDF+D files show up here; otherwise it
    /// is `index * record duration`.
    pub fn onset_s(&self) -> f64 {
        self.onset_s
    }
}

/// Digital samples of one data record as the file stores them, before any
/// scaling, reused from one [`EdfReader::read_record_digital`] call to the next.
///
/// This is what a replay sends when the consumer is to do the scaling itself:
/// with `(scale, offset) = SignalHeader::scaling()`, `scale * (offset +
/// f64::from(digital))` is bit for bit the physical value the reader yields
/// before its unit conversion (see the crate documentation, "Scaling and units").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DigitalRecord {
    samples: Vec<i32>,
    /// `bounds[i]..bounds[i + 1]` is data signal i within `samples`.
    bounds: Vec<usize>,
    index: u64,
    onset_s: f64,
}

impl DigitalRecord {
    /// An empty record, to be filled by [`EdfReader::read_record_digital`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of data signals (annotation signals are not included).
    pub fn n_signals(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    /// Digital samples of data signal `data_signal_index`, in the order of
    /// [`Header::data_signals`] (the same indexing as [`Record::signal`]):
    /// sign-extended 16-bit (EDF) or 24-bit (BDF) values.
    ///
    /// # Panics
    ///
    /// If `data_signal_index >= self.n_signals()`, like slice indexing; see
    /// [`DigitalRecord::get_signal`] for a checked variant.
    pub fn signal(&self, data_signal_index: usize) -> &[i32] {
        match self.get_signal(data_signal_index) {
            Some(s) => s,
            None => signal_out_of_range(data_signal_index, self.n_signals()),
        }
    }

    /// Digital samples of data signal `data_signal_index`, or `None` when out of
    /// range.
    pub fn get_signal(&self, data_signal_index: usize) -> Option<&[i32]> {
        signal_slice(&self.samples, &self.bounds, data_signal_index)
    }

    /// All data signals in order.
    pub fn signals(&self) -> impl Iterator<Item = &[i32]> {
        signal_slices(&self.samples, &self.bounds)
    }

    /// Index of this record in the file, from 0.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Start of this record in seconds from the start of the recording, as
    /// [`Record::onset_s`].
    pub fn onset_s(&self) -> f64 {
        self.onset_s
    }
}

fn signal_slice<'a, T>(samples: &'a [T], bounds: &[usize], i: usize) -> Option<&'a [T]> {
    let start = *bounds.get(i)?;
    let end = *bounds.get(i.checked_add(1)?)?;
    samples.get(start..end)
}

fn signal_slices<'a, T>(samples: &'a [T], bounds: &'a [usize]) -> impl Iterator<Item = &'a [T]> {
    bounds.windows(2).filter_map(|w| match *w {
        [a, b] => samples.get(a..b),
        _ => None,
    })
}

#[cold]
#[track_caller]
fn signal_out_of_range(i: usize, n: usize) -> ! {
    panic!("data signal index {i} out of range: the record has {n} data signals")
}

/// Streaming reader of EDF, EDF+, BDF and BDF+ files: parses and validates the
/// header at construction, then yields one data record per
/// [`EdfReader::read_record`] call.
pub struct EdfReader<R> {
    reader: R,
    name: String,
    header: Header,
    plans: Vec<Plan>,
    bounds: Vec<usize>,
    n_samples: usize,
    bdf: bool,
    buf: Vec<u8>,
    /// Byte range of the first annotation signal within a record, when its
    /// time-keeping annotations give the record onsets.
    timekeeping: Option<(usize, usize)>,
    /// Byte ranges of every annotation signal of an EDF+/BDF+ record.
    annotation_signals: Vec<(usize, usize)>,
    /// Sub-second part of the start, in nanoseconds; subtracted from every
    /// time-keeping onset so onsets are relative to [`Header::start_unix_ms`].
    subsecond_ns: i64,
    next: u64,
    /// Record 0 is read at open to learn the sub-second start; it is held in
    /// `buf` until the first `read_record` call.
    first_pending: bool,
    poisoned: bool,
    trailing: u64,
}

// Written by hand so debugging output shows where the reader is rather than
// dumping the record buffer.
impl<R> std::fmt::Debug for EdfReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdfReader")
            .field("name", &self.name)
            .field("header", &self.header)
            .field("records_read", &self.next)
            .field("trailing_bytes", &self.trailing)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl EdfReader<BufReader<File>> {
    /// Opens a file; errors name it by `path` as given.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EdfError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let open_err = |source| EdfError::Open {
            file: name.clone(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        Self::from_reader(BufReader::new(file), &name, Some(len))
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl<R: Read> EdfReader<R> {
    /// Reads and validates the header from `reader`, positioned at the start of
    /// the file. `name` identifies the file in error messages. `file_len`, the
    /// total length in bytes when known, lets truncation be detected up front
    /// and a header record count of -1 be resolved; without it a count of -1 is
    /// an error and truncation is reported when the missing record is reached.
    pub fn from_reader(mut reader: R, name: &str, file_len: Option<u64>) -> Result<Self, EdfError> {
        let io_err = |context: &str, source| EdfError::Io {
            file: name.to_owned(),
            context: context.to_owned(),
            source,
        };

        let mut bytes = vec![0u8; BLOCK];
        let got =
            read_full(&mut reader, &mut bytes).map_err(|e| io_err("reading the header", e))?;
        if got < BLOCK {
            return Err(EdfError::HeaderTooShort {
                file: name.to_owned(),
                found: got as u64,
                needed: BLOCK as u64,
                what: "the fixed part of the header".to_owned(),
            });
        }
        let fixed = header::parse_fixed(name, &bytes)?;
        let ns = fixed.n_signals;
        let header_len = BLOCK * (ns + 1);
        bytes.resize(header_len, 0);
        let got = match bytes.get_mut(BLOCK..) {
            Some(rest) => {
                read_full(&mut reader, rest).map_err(|e| io_err("reading the header", e))?
            }
            None => 0,
        };
        if BLOCK + got < header_len {
            return Err(EdfError::HeaderTooShort {
                file: name.to_owned(),
                found: (BLOCK + got) as u64,
                needed: header_len as u64,
                what: format!("256 * (1 + {ns} signals)"),
            });
        }
        let signals = header::parse_signals(name, &bytes, &fixed)?;
        let fields = Fields {
            file: name,
            bytes: &bytes,
        };

        // Record layout, with the size bounded before anything is allocated
        // from it.
        let bps = fixed.format.bytes_per_sample();
        let mut plans = Vec::new();
        let mut bounds = vec![0usize];
        let mut record_bytes: u64 = 0;
        let mut n_samples = 0usize;
        let mut timekeeping = None;
        let mut annotation_signals = Vec::new();
        for (i, s) in signals.iter().enumerate() {
            let len_bytes = (s.samples_per_record as u64).saturating_mul(bps as u64);
            let start = record_bytes;
            record_bytes = record_bytes.saturating_add(len_bytes);
            if record_bytes > MAX_RECORD_BYTES {
                return Err(fields.err(
                    header::samples_field(ns, i, &s.label),
                    format!(
                        "data records would exceed the supported maximum of {MAX_RECORD_BYTES} bytes"
                    ),
                ));
            }
            // Bounded by MAX_RECORD_BYTES, so these fit in usize.
            let (start, len_bytes) = (start as usize, len_bytes as usize);
            if s.is_annotation {
                if timekeeping.is_none() {
                    timekeeping = Some((start, len_bytes));
                }
                annotation_signals.push((start, len_bytes));
                continue;
            }
            let (bitvalue, offset) = s.scaling();
            plans.push(Plan {
                byte_start: start,
                len: s.samples_per_record,
                out_start: n_samples,
                bitvalue,
                offset,
                to_uv: s.microvolts_per_unit().unwrap_or(1.0),
            });
            n_samples += s.samples_per_record;
            bounds.push(n_samples);
        }
        if !fixed.format.is_plus() {
            // Plain EDF/BDF has no time-keeping annotations; a signal that happens
            // to carry the annotation label is skipped but not interpreted.
            timekeeping = None;
            annotation_signals.clear();
        } else if timekeeping.is_none() && fixed.format.is_discontinuous() {
            return Err(fields.err(
                RESERVED,
                format!(
                    "{:?} needs an annotation signal for the record onsets, but there is none",
                    fixed.format
                ),
            ));
        }

        let header_bytes = fixed.header_bytes;
        let (n_records, trailing) = match (fixed.n_records_declared, file_len) {
            (-1, Some(len)) => {
                let data = len.saturating_sub(header_bytes);
                let n = data / record_bytes;
                if n == 0 {
                    return Err(fields.err(
                        N_RECORDS,
                        format!(
                            "is -1 (unknown) and the file holds no complete data record of {record_bytes} bytes"
                        ),
                    ));
                }
                (n, data % record_bytes)
            }
            (-1, None) => {
                return Err(fields.err(
                    N_RECORDS,
                    "is -1 (unknown) and the length of the stream is not known".to_owned(),
                ));
            }
            (declared, len) => {
                let declared = declared.unsigned_abs();
                let expected_len = declared
                    .saturating_mul(record_bytes)
                    .saturating_add(header_bytes);
                match len {
                    Some(len) if len < expected_len => {
                        return Err(EdfError::Truncated {
                            file: name.to_owned(),
                            declared_records: declared,
                            expected_len,
                            file_len: len,
                            complete_records: len.saturating_sub(header_bytes) / record_bytes,
                        });
                    }
                    Some(len) => (declared, len - expected_len),
                    None => (declared, 0),
                }
            }
        };

        let header = Header {
            format: fixed.format,
            patient: fixed.patient,
            recording: fixed.recording,
            start: fixed.start,
            n_records,
            record_duration_s: fixed.record_duration_s,
            signals,
            header_bytes,
            record_bytes,
            n_records_declared: fixed.n_records_declared,
        };
        let mut this = EdfReader {
            reader,
            name: name.to_owned(),
            header,
            plans,
            bounds,
            n_samples,
            bdf: fixed.format.is_bdf(),
            // Bounded by MAX_RECORD_BYTES above.
            buf: vec![0u8; record_bytes as usize],
            timekeeping,
            annotation_signals,
            subsecond_ns: 0,
            next: 0,
            first_pending: false,
            poisoned: false,
            trailing,
        };
        if this.timekeeping.is_some() {
            this.fill_buf()?;
            let onset = this.onset_ns()?;
            let sub = onset.rem_euclid(1_000_000_000);
            this.subsecond_ns = sub;
            // rem_euclid by 1e9 yields 0..1e9, which fits in u32.
            this.header.start.nanosecond = u32::try_from(sub).unwrap_or(0);
            this.first_pending = true;
        }
        Ok(this)
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes after the last complete data record the header accounts for. Not an
    /// error (some writers pad files), but worth a warning. 0 when the file
    /// length was not given.
    pub fn trailing_bytes(&self) -> u64 {
        self.trailing
    }

    /// Number of records returned so far.
    pub fn records_read(&self) -> u64 {
        self.next
    }

    /// The underlying reader, positioned after the last record read (or after
    /// record 0 for EDF+/BDF+ files when no record has been returned yet).
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Reads the next data record into `out`, converting every data signal to
    /// physical units and then to µV when the unit is a known voltage unit
    /// (other units are left as they are). Returns `Ok(false)` after the last
    /// record. `out` is resized on the first call only, so reading a file into
    /// one `Record` allocates nothing after that.
    ///
    /// After an error the stream position is unknown, so every later call fails.
    pub fn read_record(&mut self, out: &mut Record) -> Result<bool, EdfError> {
        let Some((index, onset_s)) = self.advance()? else {
            return Ok(false);
        };
        if out.bounds != self.bounds {
            out.bounds.clone_from(&self.bounds);
        }
        out.samples.resize(self.n_samples, 0.0);
        if self.bdf {
            decode::<3>(&self.buf, &self.plans, &mut out.samples, i24_le);
        } else {
            decode::<2>(&self.buf, &self.plans, &mut out.samples, i16_le);
        }
        out.index = index;
        out.onset_s = onset_s;
        Ok(true)
    }

    /// Reads the next data record into `out` as the file stores it: the
    /// digital value of every sample of every data signal, unscaled. Scale them
    /// with each signal's [`SignalHeader::scaling`] (as
    /// [`SignalHeader::to_physical`] does) and its
    /// [`SignalHeader::microvolts_per_unit`] to get what
    /// [`EdfReader::read_record`] yields. Records, onsets, errors and the end of
    /// the file are exactly those of `read_record`, which this may be mixed with
    /// (each call consumes one record). `out` is resized on the first call only.
    pub fn read_record_digital(&mut self, out: &mut DigitalRecord) -> Result<bool, EdfError> {
        let Some((index, onset_s)) = self.advance()? else {
            return Ok(false);
        };
        if out.bounds != self.bounds {
            out.bounds.clone_from(&self.bounds);
        }
        out.samples.resize(self.n_samples, 0);
        if self.bdf {
            decode_digital::<3>(&self.buf, &self.plans, &mut out.samples, i24_le);
        } else {
            decode_digital::<2>(&self.buf, &self.plans, &mut out.samples, i16_le);
        }
        out.index = index;
        out.onset_s = onset_s;
        Ok(true)
    }

    /// Moves to the next record, shared by the physical and the digital
    /// reading: its bytes end up in `buf`, and its index and onset (s) are
    /// returned; `None` after the last record.
    fn advance(&mut self) -> Result<Option<(u64, f64)>, EdfError> {
        if self.poisoned {
            return Err(EdfError::Poisoned {
                file: self.name.clone(),
            });
        }
        if self.next >= self.header.n_records {
            return Ok(None);
        }
        if self.first_pending {
            self.first_pending = false;
        } else {
            self.fill_buf()?;
        }
        let onset_s = if self.timekeeping.is_some() {
            let ns = self.onset_ns()?.saturating_sub(self.subsecond_ns);
            ns as f64 / 1e9
        } else {
            self.next as f64 * self.header.record_duration_s
        };
        let index = self.next;
        self.next += 1;
        Ok(Some((index, onset_s)))
    }

    /// Reads record `self.next` into `buf`, poisoning the reader on failure.
    fn fill_buf(&mut self) -> Result<(), EdfError> {
        match self.reader.read_exact(&mut self.buf) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.poisoned = true;
                Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                    EdfError::RecordTruncated {
                        file: self.name.clone(),
                        record: self.next,
                        n_records: self.header.n_records,
                    }
                } else {
                    EdfError::Io {
                        file: self.name.clone(),
                        context: format!("reading data record {}", self.next),
                        source: e,
                    }
                })
            }
        }
    }

    /// Hands `f` the annotations of the record read last ([`EdfReader::read_record`] or
    /// [`EdfReader::read_record_digital`]): every non-empty text of every TAL of
    /// every annotation signal, in the order written, with onsets in seconds after the
    /// recording's first sample (the header's start date/time and the first record's
    /// fraction of a second, as [`Record::onset_s`] counts; MNE and pyEDFlib count so too).
    /// Nothing for plain EDF/BDF, or before the first record.
    /// Those handed over before an error in the record's annotations were read correctly.
    pub fn annotations(&self, mut f: impl FnMut(tal::Annotation<'_>)) -> Result<(), EdfError> {
        if self.next == 0 || self.poisoned {
            return Ok(());
        }
        let record = self.next - 1;
        let subsecond_s = self.subsecond_ns as f64 / 1e9;
        let mut shifted = |mut a: tal::Annotation<'_>| {
            a.onset_s -= subsecond_s;
            f(a);
        };
        for &(start, len) in &self.annotation_signals {
            let bytes = self.buf.get(start..start + len).unwrap_or_default();
            tal::annotations(bytes, &mut shifted).map_err(|(pos, problem)| {
                EdfError::Annotation {
                    file: self.name.clone(),
                    record,
                    offset: self
                        .header
                        .header_bytes
                        .saturating_add(record.saturating_mul(self.header.record_bytes))
                        .saturating_add((start + pos) as u64),
                    problem,
                }
            })?;
        }
        Ok(())
    }

    /// Onset in nanoseconds of the record in `buf`, from its time-keeping
    /// annotation (relative to the header's whole-second start).
    fn onset_ns(&mut self) -> Result<i64, EdfError> {
        let Some((start, len)) = self.timekeeping else {
            return Ok(0);
        };
        let bytes = self.buf.get(start..start + len).unwrap_or_default();
        tal::timekeeping_onset_ns(bytes).map_err(|(pos, problem)| {
            self.poisoned = true;
            EdfError::Annotation {
                file: self.name.clone(),
                record: self.next,
                offset: self
                    .header
                    .header_bytes
                    .saturating_add(self.next.saturating_mul(self.header.record_bytes))
                    .saturating_add((start + pos) as u64),
                problem,
            }
        })
    }
}

#[inline(always)]
fn i16_le(b: [u8; 2]) -> i32 {
    i32::from(i16::from_le_bytes(b))
}

#[inline(always)]
fn i24_le([a, b, c]: [u8; 3]) -> i32 {
    // Placing the three bytes at the top of an i32 and shifting back down
    // sign-extends bit 23.
    i32::from_le_bytes([0, a, b, c]) >> 8
}

/// Decodes every data signal of a record. The ranges come from the header that
/// also sized `buf` and `out`, so every `get` succeeds; a mismatch would leave
/// samples untouched rather than panic.
#[inline(always)]
fn decode<const N: usize>(buf: &[u8], plans: &[Plan], out: &mut [f64], sample: fn([u8; N]) -> i32) {
    for p in plans {
        let src = buf.get(p.byte_start..p.byte_start + p.len * N);
        let dst = out.get_mut(p.out_start..p.out_start + p.len);
        let (Some(src), Some(dst)) = (src, dst) else {
            continue;
        };
        let (chunks, _) = src.as_chunks::<N>();
        let (bitvalue, offset, to_uv) = (p.bitvalue, p.offset, p.to_uv);
        for (o, &c) in dst.iter_mut().zip(chunks) {
            // EDFlib's formula, evaluated in its order so values match it exactly;
            // the unit factor is applied afterwards (a no-op for µV).
            *o = bitvalue * (offset + f64::from(sample(c))) * to_uv;
        }
    }
}

/// The digital values of every data signal of a record, sign-extended; the
/// same ranges as [`decode`].
#[inline(always)]
fn decode_digital<const N: usize>(
    buf: &[u8],
    plans: &[Plan],
    out: &mut [i32],
    sample: fn([u8; N]) -> i32,
) {
    for p in plans {
        let src = buf.get(p.byte_start..p.byte_start + p.len * N);
        let dst = out.get_mut(p.out_start..p.out_start + p.len);
        let (Some(src), Some(dst)) = (src, dst) else {
            continue;
        };
        let (chunks, _) = src.as_chunks::<N>();
        for (o, &c) in dst.iter_mut().zip(chunks) {
            *o = sample(c);
        }
    }
}

impl SignalHeader {
    /// Converts a digital value of this signal to its physical value (in the
    /// signal's own unit), with the same formula the reader uses.
    pub fn to_physical(&self, digital: i32) -> f64 {
        let (bitvalue, offset) = self.scaling();
        bitvalue * (offset + f64::from(digital))
    }
}
