//! Digital records: the unscaled values a replay sends when the consumer scales them. Scaled
//! with each signal's `scaling()` and unit factor they must give exactly what `read_record`
//! gives, record for record, with the same indices, onsets and errors.

use std::io::Cursor;

use eeg_edf::{
    DigitalRecord, EdfError, EdfReader, Format, Record, StartTime, WriteFormat, WriteSignal,
    WriteSpec, write_edf,
};

use crate::common::{fixture, fixture_bytes};

/// Reads `bytes` twice in lockstep, physically and digitally, and checks that scaling the
/// digital values reproduces the physical ones bit for bit. Returns the number of records.
fn check_digital_matches_physical(bytes: &[u8], name: &str) -> u64 {
    let open = || EdfReader::from_reader(Cursor::new(bytes), name, Some(bytes.len() as u64));
    let mut physical = open().expect("opens");
    let mut digital = open().expect("opens");
    let header = digital.header().clone();
    let (lo, hi) = header.format.digital_limits();
    let signals: Vec<_> = header.data_signals().map(|(_, s)| s.clone()).collect();
    let (mut p, mut d) = (Record::new(), DigitalRecord::new());
    let mut n = 0;
    loop {
        let more = physical.read_record(&mut p).expect("physical record");
        assert_eq!(
            digital.read_record_digital(&mut d).expect("digital record"),
            more
        );
        if !more {
            break;
        }
        assert_eq!((d.index(), d.n_signals()), (p.index(), p.n_signals()));
        assert_eq!(d.onset_s().to_bits(), p.onset_s().to_bits());
        for (i, s) in signals.iter().enumerate() {
            let (bitvalue, offset) = s.scaling();
            let to_uv = s.microvolts_per_unit().unwrap_or(1.0);
            assert_eq!(d.signal(i).len(), p.signal(i).len());
            for (k, (&dv, &pv)) in d.signal(i).iter().zip(p.signal(i)).enumerate() {
                assert!((lo..=hi).contains(&dv), "{name} signal {i}: {dv}");
                let scaled = bitvalue * (offset + f64::from(dv)) * to_uv;
                assert_eq!(
                    scaled.to_bits(),
                    pv.to_bits(),
                    "{name} record {n} signal {i} sample {k}: digital {dv} scales to {scaled}, read {pv}"
                );
                // The public helper is the same formula.
                assert_eq!((s.to_physical(dv) * to_uv).to_bits(), pv.to_bits());
            }
        }
        n += 1;
    }
    assert_eq!(digital.records_read(), header.n_records);
    n
}

#[test]
fn digital_records_scale_to_the_physical_ones_in_the_fixtures() {
    for (file, records) in [
        ("test_generator.edf", 600),
        ("test_generator.bdf", 30),
        ("test_subsecond.edf", 698),
    ] {
        let bytes = fixture_bytes(file);
        assert_eq!(check_digital_matches_physical(&bytes, file), records);
    }
}

#[test]
fn digital_records_of_a_bdf_are_24_bit_and_sign_extended() {
    let mut reader = EdfReader::open(fixture("test_generator.bdf")).expect("opens");
    assert_eq!(reader.header().format, Format::BdfPlusC);
    let mut d = DigitalRecord::new();
    let (mut min, mut max) = (i32::MAX, i32::MIN);
    while reader.read_record_digital(&mut d).expect("reads") {
        for s in d.signals() {
            min = min.min(*s.iter().min().unwrap());
            max = max.max(*s.iter().max().unwrap());
        }
    }
    // Far beyond 16 bits both ways: the top byte is read and bit 23 sign-extends.
    assert!(min < -(1 << 21) && max > 1 << 21, "{min}..{max}");
    assert_eq!(d.n_signals(), 5);
    assert_eq!(d.signals().count(), 5);
    assert_eq!(d.signal(2).len(), 500);
    assert_eq!(d.get_signal(5), None);
    assert_eq!(d.get_signal(usize::MAX), None);
}

fn start() -> StartTime {
    StartTime {
        year: 2024,
        month: 2,
        day: 29,
        hour: 23,
        minute: 59,
        second: 58,
        nanosecond: 0,
    }
}

/// A file with every unit the reader knows and one it does not, in either format.
fn units_file(format: WriteFormat) -> Vec<u8> {
    let (digital_min, digital_max) = format.digital_limits();
    let signal = |label: &str, unit: &str, range: (f64, f64)| WriteSignal {
        label: label.to_owned(),
        transducer: String::new(),
        physical_dimension: unit.to_owned(),
        physical_min: range.0,
        physical_max: range.1,
        digital_min,
        digital_max,
        prefilter: String::new(),
        samples_per_record: 50,
    };
    let spec = WriteSpec {
        format,
        patient: "X X X X".to_owned(),
        recording: "Startdate X X X X".to_owned(),
        start: start(),
        record_duration_s: 0.25,
        n_records: 8,
        signals: vec![
            signal("uV", "uV", (-3200.0, 3200.0)),
            signal("inverted", "uV", (500.0, -500.0)),
            signal("mV", "mV", (-5.0, 5.0)),
            signal("V", "V", (-0.004, 0.004)),
            signal("nV", "nV", (-90000.0, 90000.0)),
            signal("temp", "degC", (30.0, 42.0)),
        ],
    };
    write_edf(Vec::new(), "units.edf", &spec, |record, bufs| {
        for (s, buf) in bufs.iter_mut().enumerate() {
            let scale = [3000.0, 450.0, 4.5, 0.0035, 80000.0, 5.0][s];
            let centre = [0.0, 0.0, 0.0, 0.0, 0.0, 36.0][s];
            for (i, v) in buf.iter_mut().enumerate() {
                let t = record as f64 * 50.0 + i as f64;
                *v = centre + scale * (0.037 * t * (s + 1) as f64).sin();
            }
        }
    })
    .expect("writes")
}

#[test]
fn digital_records_scale_to_the_physical_ones_for_every_unit() {
    for format in [WriteFormat::Edf, WriteFormat::Bdf] {
        let bytes = units_file(format);
        assert_eq!(
            check_digital_matches_physical(&bytes, &format!("{format:?}")),
            8
        );
    }
}

#[test]
fn digital_and_physical_reads_can_be_mixed() {
    let bytes = fixture_bytes("test_subsecond.edf");
    let open = || EdfReader::from_reader(Cursor::new(&bytes[..]), "s.edf", None).expect("opens");
    let mut mixed = open();
    let mut plain = open();
    let (mut p, mut q, mut d) = (Record::new(), Record::new(), DigitalRecord::new());
    let (bitvalue, offset) = mixed.header().signals[0].scaling();
    for i in 0..10u64 {
        assert!(plain.read_record(&mut q).expect("reads"));
        if i % 2 == 0 {
            assert!(mixed.read_record(&mut p).expect("reads"));
            assert_eq!(p, q);
        } else {
            assert!(mixed.read_record_digital(&mut d).expect("reads"));
            assert_eq!((d.index(), d.onset_s()), (q.index(), q.onset_s()));
            let scaled: Vec<f64> = d
                .signal(0)
                .iter()
                .map(|&v| bitvalue * (offset + f64::from(v)))
                .collect();
            assert_eq!(scaled, q.signal(0));
        }
    }
    assert_eq!(mixed.records_read(), 10);
}

#[test]
fn digital_reading_reports_truncation_and_then_refuses_to_go_on() {
    let bytes = fixture_bytes("test_subsecond.edf");
    let short = &bytes[..100_000];
    let mut reader = EdfReader::from_reader(Cursor::new(short), "s.edf", None).expect("header");
    let mut d = DigitalRecord::new();
    let mut n = 0;
    let err = loop {
        match reader.read_record_digital(&mut d) {
            Ok(true) => n += 1,
            Ok(false) => panic!("reached the end of a truncated file"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, 335);
    assert_eq!(
        err.to_string(),
        "s.edf: truncated: data record 335 of 698 ends before its last byte"
    );
    let again = reader.read_record_digital(&mut d).expect_err("poisoned");
    assert!(matches!(again, EdfError::Poisoned { .. }), "{again}");
    // The last good record is left as it was.
    assert_eq!(d.index(), 334);
}

#[test]
#[should_panic(expected = "data signal index 1 out of range: the record has 1 data signals")]
fn digital_signal_index_out_of_range_panics_like_record() {
    let mut reader = EdfReader::open(fixture("test_subsecond.edf")).expect("opens");
    let mut d = DigitalRecord::new();
    reader.read_record_digital(&mut d).expect("reads");
    let _ = d.signal(1);
}
