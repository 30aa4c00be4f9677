//! Streaming reader for EDF, EDF+ (continuous and discontinuous) and BDF/BDF+
//! (24-bit) recordings, plus a minimal writer of plain EDF/BDF files.
//!
//! # Reading
//!
//! [`EdfReader::open`] (or [`EdfReader::from_reader`] for any [`std::io::Read`])
//! parses and validates the whole header, then [`EdfReader::read_record`] yields
//! one data record at a time into a reusable [`Record`], so files of any length
//! are read in constant memory and without allocating per record.
//!
//! ```no_run
//! use eeg_edf::{EdfReader, Record};
//!
//! let mut reader = EdfReader::open("fixtures/test_generator.edf")?;
//! let header = reader.header();
//! for (i, s) in header.data_signals() {
//!     println!("{i}: {} at {} Hz", s.label, s.sample_rate_hz(header.record_duration_s));
//! }
//! let mut record = Record::new();
//! while reader.read_record(&mut record)? {
//!     let first_signal: &[f64] = record.signal(0);
//!     # let _ = first_signal;
//! }
//! # Ok::<(), eeg_edf::EdfError>(())
//! ```
//!
//! ## Scaling and units
//!
//! Digital samples (little-endian i16 for EDF, little-endian two's-complement
//! 24-bit for BDF) become physical values with EDFlib's formula, evaluated in
//! the same order so results match EDFlib/pyedflib exactly:
//!
//! ```text
//! bitvalue = (physical_max - physical_min) / (digital_max - digital_min)
//! offset   = physical_max / bitvalue - digital_max
//! physical = bitvalue * (offset + digital)
//! ```
//!
//! This also handles an inverted physical range (physical minimum above the
//! maximum), which some devices use to flip polarity: bitvalue is then negative.
//! Physical values are then converted to microvolts when the physical dimension
//! is a known voltage unit (`uV`, `µV`, `μV`, `mV`, `V`, `nV`; see
//! [`SignalHeader::microvolts_per_unit`]); signals in any other unit are
//! returned in that unit unchanged.
//!
//! [`EdfReader::read_record_digital`] yields a record's digital values instead,
//! unscaled, for a consumer that scales them itself (e.g. a replay sending
//! binary `eeg.raw/1` with each signal's `bitvalue` and `offset` from
//! [`SignalHeader::scaling`]). Evaluating `bitvalue * (offset + digital)` in
//! f64 and then multiplying by the unit's factor (skipped for µV) reproduces
//! [`EdfReader::read_record`]'s values bit for bit.
//!
//! ## Annotations and record onsets
//!
//! Signals labelled `EDF Annotations` or `BDF Annotations` hold text, not
//! samples: they are listed in [`Header::signals`] with `is_annotation` set, but
//! are not part of a [`Record`]'s data signals. In EDF+/BDF+ files only the
//! time-keeping annotation that opens every record (`+<onset>\x14\x14`) is read,
//! giving [`Record::onset_s`]; other annotations are not parsed. A malformed
//! time-keeping annotation is an error naming the record and the byte offset.
//!
//! EDF+D (discontinuous) files are read record by record with each record's
//! onset as the file states it; the reader does not fill gaps or resample —
//! callers that need a continuous signal must check consecutive onsets. For
//! plain EDF/BDF (and EDF+C without an annotation signal) the onset is
//! `index * record duration`.
//!
//! ## Start time
//!
//! EDF stores a local date and time without time zone; [`Header::start_unix_ms`]
//! takes it as UTC. The 2-digit year follows the EDF rule (85..99 → 19xx,
//! 00..84 → 20xx), except that the 4-digit year of an EDF+ recording field
//! (`Startdate dd-MMM-yyyy`) is preferred when it agrees with the 2-digit one.
//! EDF+ gives the start to sub-second precision through the onset of the first
//! record's time-keeping annotation: its fractional second becomes
//! [`StartTime::nanosecond`] and is included in `start_unix_ms` (rounded to the
//! millisecond), and every record onset is relative to that instant.
//!
//! ## Validation
//!
//! Construction rejects, with an [`EdfError`] naming the file, the header field
//! (with its byte range) and the problem: a header shorter than its declared
//! size, non-numeric numeric fields, a signal count outside 1..=4096, a header
//! size other than `256 * (signals + 1)`, a record count that is neither
//! positive nor -1, a non-positive record duration, fewer than one sample per
//! record, an empty or out-of-range digital range, an empty physical range,
//! records larger than [`MAX_RECORD_BYTES`], and invalid dates or times. When the
//! file length is known, a file too short for its declared records is an error
//! up front; extra bytes after the last record are tolerated and reported by
//! [`EdfReader::trailing_bytes`]. A record count of -1 (recording in progress)
//! is resolved from the file length. No input makes the reader panic.
//!
//! Not supported: annotation text other than time-keeping, seeking to a record,
//! and record durations of 0 (annotation-only files).
//!
//! # Writing
//!
//! [`EdfWriter`] writes plain continuous EDF (16-bit) or BDF (24-bit) files
//! without annotation signals, streaming record by record. It exists so tests
//! and benchmarks can produce files of any size and shape; what it writes reads
//! back to within half a quantisation step.

mod error;
mod header;
mod reader;
mod tal;
mod writer;

pub use error::EdfError;
pub use header::{Format, Header, MAX_RECORD_BYTES, MAX_SIGNALS, SignalHeader, StartTime};
pub use reader::{DigitalRecord, EdfReader, Record};
pub use tal::Annotation;
pub use writer::{EdfWriter, WriteFormat, WriteSignal, WriteSpec, write_edf};
