//! Arbitrary input must give `Ok` or `Err`, never a panic, both at open and while
//! reading records.

use std::io::Cursor;

use eeg_edf::{EdfReader, Record};
use proptest::prelude::*;

use crate::common::{fixture_bytes, set_field};

/// A small valid EDF+ file: test_subsecond.edf's header declaring 3 records,
/// followed by its first 3 records.
fn small_valid_file() -> Vec<u8> {
    let mut bytes = fixture_bytes("test_subsecond.edf");
    bytes.truncate(768 + 3 * 296);
    set_field(&mut bytes, 236, 8, "3");
    bytes
}

/// Opens and reads to the end (or the first error), with and without the file
/// length. Returns whether the file opened with its length known.
fn exercise(bytes: &[u8]) -> bool {
    let mut opened = false;
    for len in [Some(bytes.len() as u64), None] {
        let Ok(mut reader) = EdfReader::from_reader(Cursor::new(bytes), "fuzz.edf", len) else {
            continue;
        };
        opened |= len.is_some();
        let h = reader.header();
        let _ = (h.start_unix_ms(), h.duration_s(), h.data_signals().count());
        let mut record = Record::new();
        // Bounded so a header declaring millions of tiny records stays quick;
        // the stream runs out long before that anyway.
        for _ in 0..10_000 {
            match reader.read_record(&mut record) {
                Ok(true) => {
                    let _ = record.signals().map(<[f64]>::len).sum::<usize>();
                }
                Ok(false) | Err(_) => break,
            }
        }
    }
    opened
}

#[test]
fn the_small_valid_file_is_valid() {
    let bytes = small_valid_file();
    assert!(exercise(&bytes));
    let mut reader = EdfReader::from_reader(Cursor::new(&bytes), "small", None).expect("opens");
    let mut record = Record::new();
    let mut n = 0;
    while reader.read_record(&mut record).expect("reads") {
        n += 1;
    }
    assert_eq!(n, 3);
}

/// Bytes that make header fields and annotations interesting to parsers: half
/// of the draws are taken from digits and separators, the rest are any byte.
/// A single draw per byte keeps generation cheap in unoptimised test builds.
fn interesting_byte() -> impl Strategy<Value = u8> {
    const SPECIAL: &[u8] = b" -+.e\x14\x15\x00\xff0123456789";
    any::<u8>().prop_map(|b| {
        if b < 128 {
            SPECIAL[usize::from(b) % SPECIAL.len()]
        } else {
            b
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_plausible_prefix_never_panic(
        tail in prop::collection::vec(interesting_byte(), 0..1500),
    ) {
        let mut bytes = small_valid_file();
        bytes.truncate(256);
        bytes.extend_from_slice(&tail);
        exercise(&bytes);
    }

    #[test]
    fn header_mutations_never_panic(
        edits in prop::collection::vec((0usize..768, interesting_byte()), 1..12),
        cut in prop::option::of(0usize..(768 + 3 * 296)),
    ) {
        let mut bytes = small_valid_file();
        for (at, b) in edits {
            bytes[at] = b;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut);
        }
        exercise(&bytes);
    }

    #[test]
    fn data_and_annotation_mutations_never_panic(
        edits in prop::collection::vec((768usize..(768 + 3 * 296), interesting_byte()), 1..24),
    ) {
        let mut bytes = small_valid_file();
        for (at, b) in edits {
            bytes[at] = b;
        }
        exercise(&bytes);
    }

    #[test]
    fn bdf_header_mutations_never_panic(
        edits in prop::collection::vec((0usize..(256 * 7), interesting_byte()), 1..12),
    ) {
        let mut bytes = fixture_bytes("test_generator.bdf");
        set_field(&mut bytes, 236, 8, "2");
        let record = (1000 + 800 + 500 + 975 + 999 + 38) * 3;
        bytes.truncate(256 * 7 + 2 * record);
        for (at, b) in edits {
            bytes[at] = b;
        }
        exercise(&bytes);
    }
}
