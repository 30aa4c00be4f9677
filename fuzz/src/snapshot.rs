//! `snapshot`: a record value of the state topic (`eeg.session.state/1`) through
//! `Snapshot::decode`, and through `StateRecord::decode` under its own session's key.
//!
//! Checks: errors are one line; a snapshot that decodes encodes to one that decodes to an
//! equal snapshot (floats bit for bit: the filter state must survive a restart unchanged),
//! whose encoding is the same bytes again; `StateRecord::decode` accepts it under its key.

use eeg_session::{Snapshot, StateRecord, StateValue};

use crate::{Bound, bounded, one_line};

/// serde_json reads the snapshot into its structs: the filter state as f64 (8 bytes) from
/// at least 2 bytes (`0,`), so 4 bytes a byte, up to twice that while the vector grows;
/// channel names as `String`s; a trigger rule's state (a struct of some 40 bytes) from 10
/// bytes of text (`{"id":""},`). Measured on the seeds, the corpus of a 5-minute run and
/// snapshots made to be worst: 7.8 bytes a byte for 5000 empty rule states, 4.4 for a filter
/// state of 30,000 zeros, 4.3 for 8000 channels, under 1 KiB for small snapshots. 16 a byte
/// over 64 KiB.
pub const BOUND: Bound = Bound {
    base: 64 << 10,
    factor: 16,
};

pub fn check(data: &[u8]) {
    let snapshot = match bounded("Snapshot::decode", data, BOUND, || Snapshot::decode(data)) {
        Ok(s) => s,
        Err(e) => {
            one_line("Snapshot::decode", &e);
            return;
        }
    };
    let encoded = snapshot.encode();
    let back = Snapshot::decode(&encoded)
        .unwrap_or_else(|e| panic!("an encoded snapshot is refused: {e}"));
    assert_eq!(back, snapshot, "a snapshot changed through its encoding");
    let bits = |s: &Snapshot| -> Vec<u64> {
        std::iter::once(s.sample_rate_hz)
            .chain(s.checkpoint.filter.iter().copied())
            .map(f64::to_bits)
            .collect()
    };
    assert!(
        bits(&back) == bits(&snapshot),
        "a snapshot's floats changed in their bits through its encoding"
    );
    assert!(
        back.encode() == encoded,
        "a snapshot encodes differently after a round trip"
    );
    let record = StateRecord::decode(snapshot.session_id.as_bytes(), Some(data), |_| None)
        .unwrap_or_else(|e| panic!("a snapshot is refused as a state record under its key: {e}"));
    assert_eq!(record.session_id, snapshot.session_id);
    match record.value {
        StateValue::Snapshot(s) => assert_eq!(*s, snapshot),
        StateValue::Evicted { .. } => panic!("a snapshot read as a tombstone"),
    }
}
