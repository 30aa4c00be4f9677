//! `edf`: an EDF, EDF+ or BDF/BDF+ file, in memory, through `EdfReader`: the header, then
//! every data record with its onset (from the EDF+ time-keeping annotations, `tal.rs`), to
//! the end or the first error.
//!
//! The file is read twice in step: as the offline `process` reads it (its length known, so
//! a truncated file is refused up front) into physical values, and as a stream of unknown
//! length into digital values. Checks: the two readings agree record by record (indices,
//! onsets, errors, and every physical value equal, bit for bit, to its digital value scaled
//! by `SignalHeader::to_physical` and the unit's factor, as the crate documents); a file
//! read to its end gave the records its header counts; errors are one line.

use std::io::Cursor;

use eeg_edf::{DigitalRecord, EdfReader, Record};

use crate::{Bound, bounded, one_line};

/// Each reader holds the header (256 bytes a signal, read into a buffer sized from the
/// signal count before the bytes are there: at most 4097 × 256 bytes, 1 MiB, which the
/// constant covers) and one record's bytes (at most the file's length, since a file shorter
/// than its records is refused before any is read); the records hold the samples as f64
/// (8 bytes from 2 in EDF: 4 bytes a byte) and as i32 (2 bytes a byte). Both readers at
/// once: 8 bytes a byte. Measured on the seeds, the corpus of a 5-minute run and files made
/// to be worst: 8.0 bytes a byte for one record of 30,000 samples, 2.3 for 200 signals,
/// and 1,048,914 bytes for the first 300 bytes of a header declaring 4096 signals. 12 a
/// byte over 1.25 MiB.
pub const BOUND: Bound = Bound {
    base: (1 << 20) + (256 << 10),
    factor: 12,
};

pub fn check(data: &[u8]) {
    bounded("EdfReader", data, BOUND, || read(data));
}

fn read(data: &[u8]) {
    let mut physical =
        match EdfReader::from_reader(Cursor::new(data), "fuzz.edf", Some(data.len() as u64)) {
            Ok(r) => r,
            Err(e) => {
                one_line("EdfReader::from_reader", &e);
                return;
            }
        };
    let header = physical.header();
    let mut digital = match EdfReader::from_reader(Cursor::new(data), "fuzz.edf", None) {
        Ok(r) => r,
        // Without the length a record count of -1 cannot be resolved: nothing to compare.
        Err(_) if header.n_records_from_file_size() => return,
        Err(e) => panic!("the header is refused when the length is not known: {e}"),
    };
    assert_eq!(
        digital.header(),
        header,
        "the header differs when the length is not known"
    );
    let signals: Vec<_> = header.data_signals().map(|(_, s)| s.clone()).collect();
    let n_records = header.n_records;
    let (mut p, mut d) = (Record::new(), DigitalRecord::new());
    loop {
        let i = physical.records_read();
        match (
            physical.read_record(&mut p),
            digital.read_record_digital(&mut d),
        ) {
            (Ok(true), Ok(true)) => {}
            (Ok(false), Ok(false)) => {
                assert_eq!(
                    i, n_records,
                    "the reader stopped before the records its header counts"
                );
                return;
            }
            (Err(pe), Err(de)) => {
                one_line("EdfReader::read_record", &pe);
                assert_eq!(
                    pe.to_string(),
                    de.to_string(),
                    "record {i}: the errors differ"
                );
                return;
            }
            (pr, dr) => panic!("record {i}: the physical reading gave {pr:?}, the digital {dr:?}"),
        }
        assert_eq!(p.index(), i, "record {i}: its index");
        assert_eq!(d.index(), i, "record {i}: its index, digital");
        // The record's annotations: the same through either reader, or the same error
        // (compared by a digest: collecting them would hold memory the reader does not).
        let (mut pa, mut da) = (Digest::default(), Digest::default());
        match (
            physical.annotations(|a| pa.add(&a)),
            digital.annotations(|a| da.add(&a)),
        ) {
            (Ok(()), Ok(())) => assert_eq!(pa, da, "record {i}: its annotations"),
            (Err(pe), Err(de)) => {
                one_line("EdfReader::annotations_into", &pe);
                assert_eq!(
                    pe.to_string(),
                    de.to_string(),
                    "record {i}: annotation errors"
                );
            }
            (pr, dr) => panic!("record {i}: annotations {pr:?} against {dr:?}"),
        }
        assert_eq!(
            p.onset_s().to_bits(),
            d.onset_s().to_bits(),
            "record {i}: its onset"
        );
        assert_eq!(p.n_signals(), signals.len(), "record {i}: its signals");
        assert_eq!(
            d.n_signals(),
            signals.len(),
            "record {i}: its signals, digital"
        );
        for (k, s) in signals.iter().enumerate() {
            let (values, counts) = (p.signal(k), d.signal(k));
            assert_eq!(
                values.len(),
                counts.len(),
                "record {i}, signal {k}: lengths"
            );
            let uv = s.microvolts_per_unit();
            for (j, (&v, &c)) in values.iter().zip(counts).enumerate() {
                let scaled = s.to_physical(c);
                let scaled = uv.map_or(scaled, |f| scaled * f);
                assert_eq!(
                    v.to_bits(),
                    scaled.to_bits(),
                    "record {i}, signal {k}, sample {j}: physical {v}, digital {c} scaled {scaled}"
                );
            }
        }
    }
}

/// The annotations of a record, folded: their count and a hash of their onsets, durations
/// and texts.
#[derive(Debug, Default, PartialEq)]
struct Digest {
    count: u64,
    hash: u64,
}

impl Digest {
    fn add(&mut self, a: &eeg_edf::Annotation<'_>) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash.hash(&mut h);
        a.onset_s.to_bits().hash(&mut h);
        a.duration_s.map(f64::to_bits).hash(&mut h);
        a.text.hash(&mut h);
        self.hash = h.finish();
        self.count += 1;
    }
}
