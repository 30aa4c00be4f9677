//! Corrupt and unusual files: each must give an error whose one-line message
//! names the file and the field or record at fault.
//!
//! Offsets below are for test_subsecond.edf: 2 signals ("Fp1" and the annotation
//! signal), a 768-byte header, 698 records of 296 bytes (128 samples of Fp1,
//! then 20 two-byte words of annotations at byte 256 of the record).

use std::io::Cursor;

use eeg_edf::{EdfError, EdfReader, Format, Record};

use crate::common::{fixture_bytes, from_bytes, open_error, read_all, set_field};

const NAME: &str = "fixtures/test_subsecond.edf";
const HEADER: usize = 768;
const RECORD: usize = 296;
const ANNOTATION: usize = 256;

fn subsecond() -> Vec<u8> {
    fixture_bytes("test_subsecond.edf")
}

fn assert_one_line(message: &str) {
    assert!(!message.contains('\n'), "message spans lines: {message}");
}

fn field_error(start: usize, width: usize, text: &str) -> String {
    let mut bytes = subsecond();
    set_field(&mut bytes, start, width, text);
    let message = open_error(&bytes, NAME);
    assert_one_line(&message);
    message
}

#[test]
fn header_shorter_than_256_bytes() {
    let bytes = subsecond();
    assert_eq!(
        open_error(&bytes[..100], NAME),
        "fixtures/test_subsecond.edf: header truncated: 256 bytes are needed \
         (the fixed part of the header) but only 100 are present"
    );
    assert_eq!(
        open_error(&[], NAME),
        "fixtures/test_subsecond.edf: header truncated: 256 bytes are needed \
         (the fixed part of the header) but only 0 are present"
    );
}

#[test]
fn header_shorter_than_its_signal_table() {
    let bytes = subsecond();
    assert_eq!(
        open_error(&bytes[..500], NAME),
        "fixtures/test_subsecond.edf: header truncated: 768 bytes are needed \
         (256 * (1 + 2 signals)) but only 500 are present"
    );
}

#[test]
fn garbage_number_of_data_records() {
    assert_eq!(
        field_error(236, 8, "12a"),
        "fixtures/test_subsecond.edf: header field 'number of data records' (bytes 236..244): \
         expected an integer, found \"12a\""
    );
    assert_eq!(
        field_error(236, 8, "0"),
        "fixtures/test_subsecond.edf: header field 'number of data records' (bytes 236..244): \
         expected a positive integer or -1 (unknown), found 0"
    );
    assert_eq!(
        field_error(236, 8, ""),
        "fixtures/test_subsecond.edf: header field 'number of data records' (bytes 236..244): \
         expected an integer, found \"\""
    );
}

#[test]
fn garbage_number_of_signals() {
    assert_eq!(
        field_error(252, 4, "2x"),
        "fixtures/test_subsecond.edf: header field 'number of signals' (bytes 252..256): \
         expected an integer, found \"2x\""
    );
    assert_eq!(
        field_error(252, 4, "0"),
        "fixtures/test_subsecond.edf: header field 'number of signals' (bytes 252..256): \
         expected 1..=4096, found 0"
    );
    assert_eq!(
        field_error(252, 4, "9999"),
        "fixtures/test_subsecond.edf: header field 'number of signals' (bytes 252..256): \
         expected 1..=4096, found 9999"
    );
}

#[test]
fn header_bytes_mismatch() {
    assert_eq!(
        field_error(184, 8, "1024"),
        "fixtures/test_subsecond.edf: header field 'number of bytes in header record' \
         (bytes 184..192): expected 768 (256 * (1 + 2 signals)), found 1024"
    );
}

#[test]
fn garbage_record_duration() {
    assert_eq!(
        field_error(244, 8, "one"),
        "fixtures/test_subsecond.edf: header field 'duration of a data record' (bytes 244..252): \
         expected a finite decimal number, found \"one\""
    );
    assert_eq!(
        field_error(244, 8, "0"),
        "fixtures/test_subsecond.edf: header field 'duration of a data record' (bytes 244..252): \
         expected a positive number of seconds, found 0"
    );
    assert_eq!(
        field_error(244, 8, "inf"),
        "fixtures/test_subsecond.edf: header field 'duration of a data record' (bytes 244..252): \
         expected a finite decimal number, found \"inf\""
    );
}

#[test]
fn garbage_in_signal_fields() {
    assert_eq!(
        field_error(464, 8, "8711x"),
        "fixtures/test_subsecond.edf: header field 'physical minimum' of signal 0 \"Fp1\" \
         (bytes 464..472): expected a finite decimal number, found \"8711x\""
    );
    assert_eq!(
        field_error(480, 8, "8711"),
        "fixtures/test_subsecond.edf: header field 'physical maximum' of signal 0 \"Fp1\" \
         (bytes 480..488): physical maximum equals physical minimum (8711)"
    );
    assert_eq!(
        field_error(496, 8, "--1"),
        "fixtures/test_subsecond.edf: header field 'digital minimum' of signal 0 \"Fp1\" \
         (bytes 496..504): expected an integer, found \"--1\""
    );
    assert_eq!(
        field_error(512, 8, "-32768"),
        "fixtures/test_subsecond.edf: header field 'digital maximum' of signal 0 \"Fp1\" \
         (bytes 512..520): digital maximum -32768 must exceed digital minimum -32768"
    );
    assert_eq!(
        field_error(512, 8, "8388607"),
        "fixtures/test_subsecond.edf: header field 'digital maximum' of signal 0 \"Fp1\" \
         (bytes 512..520): 8388607 is outside the EDF sample range -32768..=32767"
    );
    assert_eq!(
        field_error(688, 8, "0"),
        "fixtures/test_subsecond.edf: header field 'number of samples in each data record' \
         of signal 0 \"Fp1\" (bytes 688..696): expected a positive integer, found 0"
    );
    // The annotation signal's entry of the same table.
    assert_eq!(
        field_error(696, 8, "2O"),
        "fixtures/test_subsecond.edf: header field 'number of samples in each data record' \
         of signal 1 \"EDF Annotations\" (bytes 696..704): expected an integer, found \"2O\""
    );
}

#[test]
fn oversized_records_are_rejected_before_allocation() {
    assert_eq!(
        field_error(688, 8, "99999999"),
        "fixtures/test_subsecond.edf: header field 'number of samples in each data record' \
         of signal 0 \"Fp1\" (bytes 688..696): data records would exceed the supported maximum \
         of 67108864 bytes"
    );
}

#[test]
fn bdf_digital_range_is_24_bit() {
    let mut bytes = fixture_bytes("test_generator.bdf");
    // 6 signals: digital maximum table at 256 + (16 + 80 + 8 + 8 + 8 + 8) * 6.
    set_field(&mut bytes, 256 + 128 * 6, 8, "8388608");
    assert_eq!(
        open_error(&bytes, "x.bdf"),
        "x.bdf: header field 'digital maximum' of signal 0 \"sine 5Hz\" (bytes 1024..1032): \
         8388608 is outside the BDF sample range -8388608..=8388607"
    );
}

#[test]
fn invalid_version_date_and_time() {
    assert_eq!(
        field_error(0, 8, "1"),
        "fixtures/test_subsecond.edf: header field 'version' (bytes 0..8): \
         expected \"0\" (EDF) or 0xFF \"BIOSEMI\" (BDF), found \"1\""
    );
    assert_eq!(
        field_error(168, 8, "30.02.04"),
        "fixtures/test_subsecond.edf: header field 'startdate of recording' (bytes 168..176): \
         expected a valid date dd.mm.yy, found \"30.02.04\""
    );
    assert_eq!(
        field_error(168, 8, "24-01-04"),
        "fixtures/test_subsecond.edf: header field 'startdate of recording' (bytes 168..176): \
         expected a valid date dd.mm.yy, found \"24-01-04\""
    );
    assert_eq!(
        field_error(176, 8, "24.05.56"),
        "fixtures/test_subsecond.edf: header field 'starttime of recording' (bytes 176..184): \
         expected a valid time hh.mm.ss, found \"24.05.56\""
    );
    assert_eq!(
        field_error(192, 44, "EDF+X"),
        "fixtures/test_subsecond.edf: header field 'reserved' (bytes 192..236): \
         expected \"EDF+C\" or \"EDF+D\" (\"BDF+C\" or \"BDF+D\" for BDF), found \"EDF+X\""
    );
}

#[test]
fn truncated_data_section() {
    let bytes = subsecond();
    assert_eq!(
        open_error(&bytes[..100_000], NAME),
        "fixtures/test_subsecond.edf: truncated: header declares 698 data records \
         (207376 bytes) but the file has 100000 bytes (335 complete data records)"
    );
}

#[test]
fn truncated_data_section_of_unknown_length_fails_at_the_missing_record() {
    let bytes = subsecond();
    let short = &bytes[..100_000];
    let mut reader =
        EdfReader::from_reader(Cursor::new(short), NAME, None).expect("header is fine");
    let mut record = Record::new();
    let mut n = 0;
    let err = loop {
        match reader.read_record(&mut record) {
            Ok(true) => n += 1,
            Ok(false) => panic!("reached the end of a truncated file"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, 335);
    assert_eq!(
        err.to_string(),
        "fixtures/test_subsecond.edf: truncated: data record 335 of 698 ends before its last byte"
    );
    // The position is lost after a failed record, so the reader refuses to go on.
    let again = reader.read_record(&mut record).expect_err("poisoned");
    assert!(matches!(again, EdfError::Poisoned { .. }), "{again}");
    assert_eq!(
        again.to_string(),
        "fixtures/test_subsecond.edf: reader cannot continue after an earlier error"
    );
}

#[test]
fn malformed_time_keeping_annotation() {
    let mut bytes = subsecond();
    let tal = HEADER + 5 * RECORD + ANNOTATION;
    assert_eq!(&bytes[tal..tal + 11], b"+5.3945312\x14");
    bytes[tal] = b'x';
    let mut reader = from_bytes(&bytes, NAME).expect("header is fine");
    let err = read_all(&mut reader)
        .expect_err("record 5 is malformed")
        .to_string();
    assert_eq!(
        err,
        "fixtures/test_subsecond.edf: data record 5: malformed time-keeping annotation at byte \
         offset 2504: expected '+' or '-' starting the onset, found 'x'"
    );
    assert_eq!(tal, 2504);

    // A missing separator is reported at its own offset.
    let mut bytes = subsecond();
    bytes[tal + 10] = 0;
    let mut reader = from_bytes(&bytes, NAME).expect("header is fine");
    let err = read_all(&mut reader)
        .expect_err("record 5 is malformed")
        .to_string();
    assert_eq!(
        err,
        "fixtures/test_subsecond.edf: data record 5: malformed time-keeping annotation at byte \
         offset 2514: expected byte 0x14 after the onset, found byte 0x00"
    );
}

#[test]
fn malformed_first_time_keeping_annotation_fails_at_open() {
    let mut bytes = subsecond();
    let tal = HEADER + ANNOTATION;
    bytes[tal..tal + RECORD - ANNOTATION].fill(0);
    assert_eq!(
        open_error(&bytes, NAME),
        "fixtures/test_subsecond.edf: data record 0: malformed time-keeping annotation at byte \
         offset 1024: expected '+' or '-' starting the onset, found byte 0x00"
    );
}

#[test]
fn unknown_record_count_is_derived_from_the_file_size() {
    let mut bytes = subsecond();
    set_field(&mut bytes, 236, 8, "-1");
    bytes.extend_from_slice(&[0; 10]);
    let reader = from_bytes(&bytes, NAME).expect("opens");
    assert_eq!(reader.header().n_records, 698);
    assert!(reader.header().n_records_from_file_size());
    assert_eq!(reader.trailing_bytes(), 10);

    let err = EdfReader::from_reader(Cursor::new(&bytes), NAME, None)
        .expect_err("unknown count and length")
        .to_string();
    assert_eq!(
        err,
        "fixtures/test_subsecond.edf: header field 'number of data records' (bytes 236..244): \
         is -1 (unknown) and the length of the stream is not known"
    );
}

#[test]
fn trailing_bytes_are_reported_not_rejected() {
    let mut bytes = subsecond();
    bytes.extend_from_slice(&[0; 300]);
    let mut reader = from_bytes(&bytes, NAME).expect("opens");
    assert_eq!(reader.trailing_bytes(), 300);
    let signals = read_all(&mut reader).expect("reads");
    assert_eq!(signals[0].len(), 698 * 128);
}

#[test]
fn discontinuous_onsets_are_reported_as_stored() {
    let mut bytes = subsecond();
    set_field(&mut bytes, 192, 44, "EDF+D");
    // Move record 2 from +2.3945312 s to +5.3945312 s: a 3-second gap.
    let tal = HEADER + 2 * RECORD + ANNOTATION;
    assert_eq!(&bytes[tal..tal + 2], b"+2");
    bytes[tal + 1] = b'5';
    let mut reader = from_bytes(&bytes, NAME).expect("opens");
    assert_eq!(reader.header().format, Format::EdfPlusD);
    let mut record = Record::new();
    let mut onsets = Vec::new();
    while onsets.len() < 4 && reader.read_record(&mut record).expect("reads") {
        onsets.push(record.onset_s());
    }
    assert_eq!(onsets, [0.0, 1.0, 5.0, 3.0]);
}

#[test]
fn errors_never_span_lines_even_for_control_characters() {
    let message = field_error(236, 8, "1\n2\r\t");
    assert_one_line(&message);
    assert!(message.contains("'number of data records'"), "{message}");
}
