//! The writer: files it writes read back to within half a quantisation step, and
//! misuse is reported.

use std::io::Cursor;

use eeg_edf::{
    EdfError, EdfReader, EdfWriter, Format, Record, StartTime, WriteFormat, WriteSignal, WriteSpec,
    write_edf,
};

use crate::common::read_all;

fn start() -> StartTime {
    StartTime {
        year: 2023,
        month: 7,
        day: 14,
        hour: 9,
        minute: 30,
        second: 5,
        nanosecond: 0,
    }
}

fn signal(
    label: &str,
    unit: &str,
    range: (f64, f64),
    format: WriteFormat,
    spr: usize,
) -> WriteSignal {
    let (digital_min, digital_max) = format.digital_limits();
    WriteSignal {
        label: label.to_owned(),
        transducer: "AgAgCl electrode".to_owned(),
        physical_dimension: unit.to_owned(),
        physical_min: range.0,
        physical_max: range.1,
        digital_min,
        digital_max,
        prefilter: "HP:0.1Hz LP:70Hz".to_owned(),
        samples_per_record: spr,
    }
}

fn spec(format: WriteFormat) -> WriteSpec {
    WriteSpec {
        format,
        patient: "X X X X".to_owned(),
        recording: "Startdate X X X X".to_owned(),
        start: start(),
        record_duration_s: 0.5,
        n_records: 6,
        signals: vec![
            signal("Fp1", "uV", (-3200.0, 3200.0), format, 128),
            // Inverted range, as some amplifiers write to flip polarity.
            signal("Fp2", "uV", (500.0, -500.0), format, 64),
            signal("ECG", "mV", (-5.0, 5.0), format, 32),
            signal("Temp", "degC", (30.0, 42.0), format, 1),
        ],
    }
}

/// Deterministic test values, including some outside the physical range.
fn value(signal: usize, record: u64, i: usize) -> f64 {
    let t = record as f64 * 1000.0 + i as f64;
    let amplitude = [3500.0, 600.0, 6.0, 8.0][signal];
    let centre = [0.0, 0.0, 0.0, 36.0][signal];
    centre + amplitude * (0.0123 * t * (signal + 1) as f64).sin()
}

fn write(format: WriteFormat) -> Vec<u8> {
    let spec = spec(format);
    write_edf(Vec::new(), "mem.edf", &spec, |record, bufs| {
        for (s, buf) in bufs.iter_mut().enumerate() {
            for (i, v) in buf.iter_mut().enumerate() {
                *v = value(s, record, i);
            }
        }
    })
    .expect("writes")
}

fn round_trip(format: WriteFormat) {
    let spec = spec(format);
    let bytes = write(format);
    let mut reader =
        EdfReader::from_reader(Cursor::new(&bytes), "mem.edf", Some(bytes.len() as u64))
            .expect("reads back");
    let h = reader.header().clone();
    assert_eq!(h.format, format.format());
    assert_eq!(h.patient, spec.patient);
    assert_eq!(h.recording, spec.recording);
    assert_eq!(h.start, spec.start);
    assert_eq!(h.n_records, 6);
    assert_eq!(h.record_duration_s, 0.5);
    assert_eq!(reader.trailing_bytes(), 0);
    let expected_len = 256 * 5 + 6 * (128 + 64 + 32 + 1) * format.format().bytes_per_sample();
    assert_eq!(bytes.len(), expected_len);

    let signals = read_all(&mut reader).expect("reads all records");
    for (s, (sig, ws)) in h.signals.iter().zip(&spec.signals).enumerate() {
        assert_eq!(sig.label, ws.label);
        assert_eq!(sig.transducer, ws.transducer);
        assert_eq!(sig.prefilter, ws.prefilter);
        assert_eq!(sig.physical_dimension, ws.physical_dimension);
        assert_eq!(
            (sig.physical_min, sig.physical_max),
            (ws.physical_min, ws.physical_max)
        );
        assert_eq!(sig.sample_rate_hz(0.5), ws.samples_per_record as f64 * 2.0);
        let (bitvalue, _) = sig.scaling();
        let to_uv = sig.microvolts_per_unit().unwrap_or(1.0);
        let (lo, hi) = (
            ws.physical_min.min(ws.physical_max),
            ws.physical_min.max(ws.physical_max),
        );
        let half_step = bitvalue.abs() / 2.0 * (1.0 + 1e-9);
        assert_eq!(signals[s].len(), 6 * ws.samples_per_record);
        for (k, &got) in signals[s].iter().enumerate() {
            let record = (k / ws.samples_per_record) as u64;
            let i = k % ws.samples_per_record;
            let want = value(s, record, i).clamp(lo, hi);
            let got = got / to_uv;
            assert!(
                (got - want).abs() <= half_step,
                "{format:?} signal {s} sample {k}: wrote {want}, read {got}, step {bitvalue}"
            );
        }
    }
}

#[test]
fn edf_round_trip_within_half_a_step() {
    round_trip(WriteFormat::Edf);
}

#[test]
fn bdf_round_trip_within_half_a_step() {
    round_trip(WriteFormat::Bdf);
}

#[test]
fn record_onsets_of_plain_files_follow_the_duration() {
    let bytes = write(WriteFormat::Edf);
    let mut reader = EdfReader::from_reader(Cursor::new(&bytes), "mem.edf", None).expect("reads");
    assert_eq!(reader.header().start_unix_ms(), 1_689_327_005_000);
    let mut record = Record::new();
    let mut onsets = Vec::new();
    while reader.read_record(&mut record).expect("reads") {
        onsets.push(record.onset_s());
    }
    assert_eq!(onsets, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
}

#[test]
fn writes_to_a_file_and_streams_many_records() {
    let path = std::env::temp_dir().join(format!("eeg-edf-writer-{}.bdf", std::process::id()));
    let format = WriteFormat::Bdf;
    let spec = WriteSpec {
        n_records: 50,
        record_duration_s: 1.0,
        signals: (0..64)
            .map(|c| signal(&format!("EEG {c}"), "uV", (-1000.0, 1000.0), format, 256))
            .collect(),
        ..spec(format)
    };
    let mut writer = EdfWriter::create(&path, &spec).expect("creates");
    let channel: Vec<f64> = (0..256).map(|i| f64::from(i) - 128.0).collect();
    let record: Vec<&[f64]> = (0..64).map(|_| channel.as_slice()).collect();
    for _ in 0..50 {
        writer.write_record(&record).expect("writes");
    }
    assert_eq!(writer.records_written(), 50);
    writer.finish().expect("finishes");

    let mut reader = EdfReader::open(&path).expect("opens");
    assert_eq!(reader.header().n_data_signals(), 64);
    let signals = read_all(&mut reader).expect("reads");
    std::fs::remove_file(&path).expect("removes the temporary file");
    assert!(signals.iter().all(|s| s.len() == 50 * 256));
    // At 24 bits a ±1000 µV range has steps of about 0.00012 µV.
    assert!((signals[63][0] + 128.0).abs() < 1e-3);
}

#[test]
fn physical_limits_are_rounded_to_eight_characters() {
    let format = WriteFormat::Edf;
    let spec = WriteSpec {
        signals: vec![signal("Fp1", "uV", (-1.234_567_89, 1234.56789), format, 1)],
        n_records: 1,
        ..spec(format)
    };
    let mut w = EdfWriter::from_writer(Vec::new(), "mem.edf", &spec).expect("header");
    w.write_record(&[&[1234.56789]]).expect("record");
    let bytes = w.finish().expect("finish");
    let reader = EdfReader::from_reader(Cursor::new(&bytes), "mem.edf", None).expect("reads");
    let s = &reader.header().signals[0];
    assert_eq!((s.physical_min, s.physical_max), (-1.23457, 1234.568));
}

fn error_of<T>(result: Result<T, EdfError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn record_count_mismatch_is_reported_by_finish() {
    let spec = spec(WriteFormat::Edf);
    let mut w = EdfWriter::from_writer(Vec::new(), "mem.edf", &spec).expect("header");
    let a = vec![0.0; 128];
    let b = vec![0.0; 64];
    let c = vec![0.0; 32];
    let d = vec![36.0; 1];
    w.write_record(&[&a, &b, &c, &d]).expect("record 0");
    assert_eq!(
        error_of(w.finish()),
        "mem.edf: header declares 6 data records but 1 were written"
    );
}

#[test]
fn misuse_of_write_record_is_reported() {
    let spec = WriteSpec {
        n_records: 1,
        ..spec(WriteFormat::Edf)
    };
    let mut w = EdfWriter::from_writer(Vec::new(), "mem.edf", &spec).expect("header");
    let a = vec![0.0; 128];
    let b = vec![0.0; 64];
    let c = vec![0.0; 32];
    let d = vec![36.0; 1];
    assert_eq!(
        error_of(w.write_record(&[&a, &b, &c])),
        "mem.edf: cannot write data record 0: expected 4 signals, got 3"
    );
    assert_eq!(
        error_of(w.write_record(&[&a, &b, &b, &d])),
        "mem.edf: cannot write data record 0: signal 2 \"ECG\" needs 32 samples, got 64"
    );
    let nan = vec![f64::NAN; 32];
    assert_eq!(
        error_of(w.write_record(&[&a, &b, &nan, &d])),
        "mem.edf: cannot write data record 0: signal 2 \"ECG\" sample 0 is NaN"
    );
    w.write_record(&[&a, &b, &c, &d]).expect("record 0");
    assert_eq!(
        error_of(w.write_record(&[&a, &b, &c, &d])),
        "mem.edf: cannot write data record 1: the header declares only 1 data records"
    );
    w.finish().expect("one record as declared");
}

#[test]
fn invalid_specs_are_rejected() {
    let base = spec(WriteFormat::Edf);
    let mut long_label = base.clone();
    long_label.signals[0].label = "A label that is far too long".to_owned();
    assert_eq!(
        error_of(EdfWriter::from_writer(Vec::new(), "mem.edf", &long_label)),
        "mem.edf: cannot write: signal \"A label that is far too long\" label \
         \"A label that is far too long\" is longer than 16 characters"
    );
    let mut accented = base.clone();
    accented.patient = "Müller".to_owned();
    assert_eq!(
        error_of(EdfWriter::from_writer(Vec::new(), "mem.edf", &accented)),
        "mem.edf: cannot write: patient \"Müller\" has characters other than printable ASCII"
    );
    let mut bdf_range = base.clone();
    bdf_range.signals[1].digital_max = 8_388_607;
    assert_eq!(
        error_of(EdfWriter::from_writer(Vec::new(), "mem.edf", &bdf_range)),
        "mem.edf: cannot write: signal 1 \"Fp2\" digital range -32768..8388607 must be \
         increasing and within -32768..=32767"
    );
    let mut third = base.clone();
    third.record_duration_s = 1.0 / 3.0;
    assert!(
        error_of(EdfWriter::from_writer(Vec::new(), "mem.edf", &third))
            .starts_with("mem.edf: cannot write: record duration 0.333")
    );
    let mut old = base;
    old.start.year = 1970;
    assert_eq!(
        error_of(EdfWriter::from_writer(Vec::new(), "mem.edf", &old)),
        "mem.edf: cannot write: start year 1970 is outside 1985..=2084, which the header's \
         2-digit year can hold"
    );
}

#[test]
fn written_plain_files_are_not_edf_plus() {
    let mut bytes = write(WriteFormat::Edf);
    let reader = EdfReader::from_reader(Cursor::new(&bytes), "mem.edf", None).expect("reads");
    assert_eq!(reader.header().format, Format::Edf);
    // Claiming EDF+D without an annotation signal leaves the onsets unknown.
    bytes[192..197].copy_from_slice(b"EDF+D");
    let err = error_of(EdfReader::from_reader(Cursor::new(&bytes), "mem.edf", None));
    assert_eq!(
        err,
        "mem.edf: header field 'reserved' (bytes 192..236): EdfPlusD needs an annotation \
         signal for the record onsets, but there is none"
    );
}
