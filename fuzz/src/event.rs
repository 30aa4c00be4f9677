//! `event`: a message of the raw topic through `decode_raw_message` as an `eeg.event/1`: the
//! first byte picks how the record is labelled (no `content-type`, `application/json`, or
//! binary with `messageType=eeg.event.v1.Event`), the rest is the message.
//!
//! Checks: errors are one line; a decoded event writes as JSON and as protobuf, and each
//! reads back equal (the onset bit for bit); a JSON message taken for an event decodes
//! through `decode_event` alone to the same event.

use eeg_schema::{
    EVENT_PROTOBUF_MESSAGE, Event, Limits, Onset, RawMessage, decode_event, decode_event_protobuf,
    decode_raw_message,
};

use crate::{Bound, bounded, one_line};

/// An event is at most 64 KiB; serde_json reads a JSON one into a map of values (a string
/// of n bytes holds n bytes plus its `String`; a number 8 bytes plus its `Value`), some
/// 6 bytes a byte at worst for a message of many tiny unknown keys, refused at the first.
/// 16 a byte over 64 KiB.
pub const BOUND: Bound = Bound {
    base: 64 << 10,
    factor: 16,
};

pub fn check(data: &[u8]) {
    let Some((&choice, message)) = data.split_first() else {
        return;
    };
    let binary = format!("application/x-protobuf; messageType={EVENT_PROTOBUF_MESSAGE}");
    let content_type: Option<&[u8]> = match choice % 3 {
        0 => None,
        1 => Some(b"application/json"),
        _ => Some(binary.as_bytes()),
    };
    let limits = Limits::default();
    let decoded = bounded("decode_raw_message", message, BOUND, || {
        decode_raw_message(message, content_type, &limits)
    });
    let event = match decoded {
        Ok(RawMessage::Event(e)) => e,
        // A JSON message whose schema is not the event's is a batch: the raw_json target's.
        Ok(RawMessage::Batch(_)) => return,
        Err(e) => {
            one_line("decode_raw_message", &e);
            return;
        }
    };
    if choice % 3 != 2 {
        let alone = decode_event(message)
            .unwrap_or_else(|e| panic!("an event decoded as a raw message is refused alone: {e}"));
        assert_same(&alone, &event, "decode_event");
    }
    let json = event.to_json();
    let back = decode_event(json.as_bytes())
        .unwrap_or_else(|e| panic!("an event's JSON is refused: {e}: {json}"));
    assert_same(&back, &event, "its JSON");
    let mut bin = Vec::new();
    event.encode_protobuf(&mut bin);
    let back = decode_event_protobuf(&bin)
        .unwrap_or_else(|e| panic!("an event's protobuf is refused: {e}"));
    assert_same(&back, &event, "its protobuf");
}

fn assert_same(got: &Event, want: &Event, through: &str) {
    assert_eq!(got, want, "an event changed through {through}");
    let bits = |e: &Event| match e.onset {
        Onset::UnixMs(ms) => (ms.to_bits(), e.duration_s.to_bits()),
        Onset::Sample(n) => (n, e.duration_s.to_bits()),
    };
    assert_eq!(
        bits(got),
        bits(want),
        "an event's numbers changed in their bits through {through}"
    );
}
