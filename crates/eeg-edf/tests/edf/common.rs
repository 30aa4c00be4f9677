//! Shared helpers: fixture paths, the pyedflib expectations and small readers.

use std::io::Cursor;
use std::path::PathBuf;

use eeg_edf::{EdfError, EdfReader, Record};
use serde::Deserialize;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture is readable")
}

#[derive(Debug, Deserialize)]
pub struct Expected {
    pub n_edge: usize,
    pub fixtures: Vec<ExpectedFile>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedFile {
    pub file: String,
    pub format: String,
    pub patient: String,
    pub recording: String,
    pub n_records: u64,
    pub record_duration_s: f64,
    pub start: [u16; 6],
    pub start_subsecond_100ns: u32,
    pub start_unix_ms: i64,
    pub signals: Vec<ExpectedSignal>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedSignal {
    pub label: String,
    pub transducer: String,
    pub physical_dimension: String,
    pub physical_min: f64,
    pub physical_max: f64,
    pub digital_min: i32,
    pub digital_max: i32,
    pub prefilter: String,
    pub sample_rate_hz: f64,
    pub samples_per_record: usize,
    pub n_samples: usize,
    pub first: Vec<f64>,
    pub last: Vec<f64>,
}

/// Expectations produced by tests/data/gen_expected.py with pyedflib.
pub fn expected() -> Expected {
    let text = include_str!("../data/expected.json");
    serde_json::from_str(text).expect("expected.json parses")
}

pub fn expected_for(name: &str) -> ExpectedFile {
    expected()
        .fixtures
        .into_iter()
        .find(|f| f.file == name)
        .expect("fixture has expectations")
}

/// Reads every record, concatenating each data signal's samples.
pub fn read_all<R: std::io::Read>(reader: &mut EdfReader<R>) -> Result<Vec<Vec<f64>>, EdfError> {
    let n = reader.header().n_data_signals();
    let mut out = vec![Vec::new(); n];
    let mut record = Record::new();
    while reader.read_record(&mut record)? {
        for (dst, src) in out.iter_mut().zip(record.signals()) {
            dst.extend_from_slice(src);
        }
    }
    Ok(out)
}

pub fn from_bytes<'a>(
    bytes: &'a [u8],
    name: &str,
) -> Result<EdfReader<Cursor<&'a [u8]>>, EdfError> {
    EdfReader::from_reader(Cursor::new(bytes), name, Some(bytes.len() as u64))
}

/// Overwrites a header field with `text`, left-aligned and space-padded as the
/// format requires.
pub fn set_field(bytes: &mut [u8], start: usize, width: usize, text: &str) {
    assert!(
        text.len() <= width,
        "{text:?} does not fit in {width} bytes"
    );
    let field = &mut bytes[start..start + width];
    field.fill(b' ');
    field[..text.len()].copy_from_slice(text.as_bytes());
}

/// Display of the error `from_bytes` returns for `bytes`.
pub fn open_error(bytes: &[u8], name: &str) -> String {
    match from_bytes(bytes, name) {
        Ok(_) => panic!("{name}: expected an error, the file opened"),
        Err(e) => e.to_string(),
    }
}

/// Relative comparison at 1e-9; values from the same formula are expected to be
/// identical, the tolerance only guards against a platform's last-bit rounding.
pub fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(actual.abs());
    assert!(
        actual == expected || (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected}"
    );
}
