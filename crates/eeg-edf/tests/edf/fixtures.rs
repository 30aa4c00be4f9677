//! The three fixtures against values pyedflib reads from them
//! (tests/data/expected.json).

use eeg_edf::{EdfReader, Format, Record};

use crate::common::{assert_close, expected, expected_for, fixture, read_all};

const FIXTURES: [&str; 3] = [
    "test_generator.edf",
    "test_subsecond.edf",
    "test_generator.bdf",
];

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Edf => "Edf",
        Format::EdfPlusC => "EdfPlusC",
        Format::EdfPlusD => "EdfPlusD",
        Format::Bdf => "Bdf",
        Format::BdfPlusC => "BdfPlusC",
        Format::BdfPlusD => "BdfPlusD",
    }
}

#[test]
fn header_values_match_pyedflib() {
    for name in FIXTURES {
        let exp = expected_for(name);
        let reader = EdfReader::open(fixture(name)).expect("fixture opens");
        let h = reader.header();
        assert_eq!(format_name(h.format), exp.format, "{name}: format");
        assert_eq!(h.patient, exp.patient, "{name}: patient");
        assert_eq!(h.recording, exp.recording, "{name}: recording");
        assert_eq!(h.n_records, exp.n_records, "{name}: n_records");
        assert_eq!(
            h.record_duration_s, exp.record_duration_s,
            "{name}: duration"
        );
        let s = h.start;
        let start = [
            s.year,
            u16::from(s.month),
            u16::from(s.day),
            u16::from(s.hour),
            u16::from(s.minute),
            u16::from(s.second),
        ];
        assert_eq!(start, exp.start, "{name}: start date/time");
        assert_eq!(
            s.nanosecond,
            exp.start_subsecond_100ns * 100,
            "{name}: sub-second start"
        );
        assert_eq!(reader.trailing_bytes(), 0, "{name}: trailing bytes");
        assert!(!h.n_records_from_file_size());

        // pyedflib lists only data signals; the annotation signal is last in
        // every fixture.
        let data: Vec<_> = h.data_signals().collect();
        assert_eq!(
            data.len(),
            exp.signals.len(),
            "{name}: number of data signals"
        );
        assert_eq!(h.n_data_signals(), exp.signals.len());
        assert_eq!(h.signals.len(), exp.signals.len() + 1);
        let last = h.signals.last().expect("has signals");
        assert!(last.is_annotation, "{name}: annotation signal flagged");
        for ((index, sig), e) in data.into_iter().zip(&exp.signals) {
            let what = format!("{name} signal {index} {:?}", e.label);
            assert_eq!(sig.label, e.label, "{what}: label");
            assert_eq!(sig.transducer, e.transducer, "{what}: transducer");
            assert_eq!(sig.physical_dimension, e.physical_dimension, "{what}: unit");
            assert_eq!(sig.physical_min, e.physical_min, "{what}: physical min");
            assert_eq!(sig.physical_max, e.physical_max, "{what}: physical max");
            assert_eq!(sig.digital_min, e.digital_min, "{what}: digital min");
            assert_eq!(sig.digital_max, e.digital_max, "{what}: digital max");
            assert_eq!(sig.prefilter, e.prefilter, "{what}: prefilter");
            assert_eq!(sig.samples_per_record, e.samples_per_record, "{what}: spr");
            assert_eq!(
                sig.sample_rate_hz(h.record_duration_s),
                e.sample_rate_hz,
                "{what}: sample rate"
            );
            assert_eq!(sig.microvolts_per_unit(), Some(1.0), "{what}: uV");
            assert!(!sig.is_annotation);
        }
    }
}

#[test]
fn samples_match_pyedflib_read_signal() {
    let n_edge = expected().n_edge;
    for name in FIXTURES {
        let exp = expected_for(name);
        let mut reader = EdfReader::open(fixture(name)).expect("fixture opens");
        let signals = read_all(&mut reader).expect("fixture reads");
        assert_eq!(reader.records_read(), exp.n_records);
        for (i, (got, e)) in signals.iter().zip(&exp.signals).enumerate() {
            assert_eq!(got.len(), e.n_samples, "{name} signal {i}: sample count");
            let tail = &got[got.len() - n_edge..];
            for (k, (&a, &b)) in got.iter().zip(&e.first).enumerate() {
                assert_close(a, b, &format!("{name} signal {i} sample {k}"));
            }
            for (k, (&a, &b)) in tail.iter().zip(&e.last).enumerate() {
                let at = got.len() - n_edge + k;
                assert_close(a, b, &format!("{name} signal {i} sample {at}"));
            }
        }
    }
}

#[test]
fn inverted_physical_range_is_scaled_like_edflib() {
    let mut reader = EdfReader::open(fixture("test_subsecond.edf")).expect("opens");
    let sig = &reader.header().signals[0];
    assert_eq!((sig.physical_min, sig.physical_max), (8711.0, -8711.0));
    // The physical range is inverted, so the largest digital value maps to the
    // most negative physical value.
    assert_eq!(sig.to_physical(32767), -8711.0);
    assert_close(sig.to_physical(-32768), 8711.0, "digital min");
    let mut record = Record::new();
    assert!(reader.read_record(&mut record).expect("record 0"));
    let exp = expected_for("test_subsecond.edf");
    assert_close(record.signal(0)[0], exp.signals[0].first[0], "first sample");
}

#[test]
fn start_unix_ms_of_subsecond_file_matches_pyedflib() {
    let exp = expected_for("test_subsecond.edf");
    let reader = EdfReader::open(fixture("test_subsecond.edf")).expect("opens");
    // 2020-01-24 04:05:56 UTC plus the first record's onset of 0.3945312 s.
    assert_eq!(exp.start_unix_ms, 1_579_838_756_395);
    assert_eq!(reader.header().start_unix_ms(), exp.start_unix_ms);
    assert_eq!(reader.header().start.nanosecond, 394_531_200);
}

#[test]
fn start_unix_ms_without_subsecond_matches_pyedflib() {
    for name in ["test_generator.edf", "test_generator.bdf"] {
        let exp = expected_for(name);
        let reader = EdfReader::open(fixture(name)).expect("opens");
        assert_eq!(reader.header().start_unix_ms(), exp.start_unix_ms, "{name}");
    }
}

#[test]
fn record_onsets_come_from_time_keeping_annotations() {
    for name in FIXTURES {
        let mut reader = EdfReader::open(fixture(name)).expect("opens");
        let mut record = Record::new();
        let mut expected_index = 0;
        while reader.read_record(&mut record).expect("reads") {
            assert_eq!(record.index(), expected_index);
            // The sub-second part of the onsets is folded into the start time, so
            // onsets of a continuous file are whole multiples of the duration.
            assert_eq!(
                record.onset_s(),
                expected_index as f64,
                "{name} record {expected_index}"
            );
            expected_index += 1;
        }
        // Past the end stays at the end.
        assert!(!reader.read_record(&mut record).expect("end"));
    }
}

#[test]
fn record_exposes_data_signals_only() {
    let mut reader = EdfReader::open(fixture("test_generator.bdf")).expect("opens");
    let mut record = Record::new();
    assert!(reader.read_record(&mut record).expect("record 0"));
    assert_eq!(record.n_signals(), 5);
    let lens: Vec<usize> = record.signals().map(<[f64]>::len).collect();
    assert_eq!(lens, [1000, 800, 500, 975, 999]);
    assert_eq!(record.get_signal(5), None);
    assert_eq!(reader.header().header_bytes(), 256 * 7);
    assert_eq!(
        reader.header().record_bytes(),
        (1000 + 800 + 500 + 975 + 999 + 38) * 3
    );
    assert_eq!(reader.header().duration_s(), 30.0);
}

#[test]
fn open_names_a_missing_file() {
    let path = fixture("does_not_exist.edf");
    let err = EdfReader::open(&path)
        .expect_err("missing file")
        .to_string();
    assert!(
        err.starts_with(&format!("{}: cannot open: ", path.display())),
        "{err}"
    );
}
