//! Wire formats of eeg-pipeline: `eeg.raw/1` batches in, `eeg.processed/1` records and
//! `analytics.trigger/1` events out (the latter in [`TriggerEvent`]).
//!
//! Both are UTF-8 JSON objects, one per message (Kafka record or JSONL line). The `schema`
//! field names the format and its version; a reader rejects any other value, and rejects
//! unknown fields, because a misspelt field in a versioned format must not be ignored.
//! `eeg.raw/1` also has a binary encoding in Protocol Buffers, for device gateways (see
//! "Binary `eeg.raw/1`" below).
//!
//! # `eeg.raw/1`: a batch of raw samples
//! ```json
//! {"schema": "eeg.raw/1", "session_id": "s-42", "device_id": "bud-7", "user_id": "u-1",
//!  "seq": 0, "start_ms": 1732270000000, "sample_rate_hz": 250.0,
//!  "channels": ["TP9", "AF7", "AF8", "TP10"], "units": "uV",
//!  "samples": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}
//! ```
//!
//! | field | type | meaning and rules |
//! |---|---|---|
//! | `schema` | string | exactly `"eeg.raw/1"` ([`RAW_SCHEMA`]) |
//! | `session_id` | string | 1..=256 bytes, no control characters |
//! | `device_id` | string | 1..=256 bytes, no control characters |
//! | `user_id` | string, optional | same rules; `null` or absent means none |
//! | `seq` | u64 | counts the session's batches from 0 |
//! | `start_ms` | i64 | Unix time of the first sample in ms, >= 0 |
//! | `sample_rate_hz` | number | finite, > 0 and <= [`Limits::max_sample_rate_hz`] (100 000) |
//! | `channels` | array of strings | 1..=[`Limits::max_channels`] (1024) names, each 1..=64 bytes, no control characters, unique |
//! | `units` | string, optional | `"uV"` (default; `"µV"` and `"μV"` too), `"mV"` or `"V"` |
//! | `samples` | array of arrays of numbers | channel-major: one row per channel name, all rows of the same length, 1..=[`Limits::max_samples_per_channel`] (65 536) |
//!
//! [`decode_raw`] checks the size of the message first ([`Limits::max_message_bytes`],
//! 4 MiB), then parses it straight into a [`RawBatch`] and validates every rule above.
//! Samples in `mV` or `V` are multiplied by 1e3 or 1e6, so a batch always holds µV; every
//! sample must be finite after that conversion (`1e308` V overflows and is rejected).
//! [`RawBatch::encode`] writes the canonical form (fields in the order above, `user_id`
//! only when present, `units` `"uV"`, shortest round-trip numbers), which decodes to an equal
//! batch.
//!
//! Decoding takes two paths with one outcome. A scanner written for this format reads
//! well-formed messages in one pass, about twice as fast as serde_json; anything it is not
//! sure of (any error, an unknown or repeated field, an unusual escape, a limit) is read
//! again by the serde_json decoder, which words every error. Both round numbers correctly
//! and share the validation, so every input gives the same batch, bit for bit, or the same
//! error either way (tested on generated and corrupted messages).
//!
//! # Binary `eeg.raw/1` (Protocol Buffers)
//! The same format in a compact binary encoding for device gateways: the message
//! `eeg.raw.v1.RawBatch` of `proto/eeg_raw_v1.proto` ([`RAW_PROTO`]), whose comments are the
//! contract for producers in any language. It has the JSON fields under the same names and
//! numbers them 1 to 9; `samples` is a oneof of three channel-major forms:
//!
//! | form | bytes per sample | meaning |
//! |---|---|---|
//! | `digital` (10) | 2, 3 or 4 | little-endian two's-complement integers with one `scale` and `offset` per channel |
//! | `float32` (11) | 4 | physical values, widened exactly to f64 |
//! | `float64` (12) | 8 | physical values, as they are |
//!
//! A Kafka record says which encoding it holds in its `content-type` header
//! ([`RawEncoding::from_content_type`]): none or `application/json` is JSON,
//! `application/x-protobuf` ([`PROTOBUF_CONTENT_TYPE`]) or `application/protobuf` is binary
//! (parameters allowed; a `messageType` parameter must name `eeg.raw.v1.RawBatch`), anything
//! else is rejected. [`decode_raw_as`] then calls [`decode_raw`] or [`decode_raw_protobuf`].
//!
//! [`decode_raw_protobuf`] applies every rule of the table above, in the same order and with
//! the same messages, naming fields by their JSON names: the size first, then the structure
//! (`invalid protobuf: RawBatch.channels: invalid string value: data is not UTF-8 encoded`),
//! `schema`, `units` and `samples`, then the header fields and limits before any sample is
//! converted, then the samples, which must be finite in µV. proto3 cannot tell an unset
//! string or number from its default, so an unset `schema` is "missing", an unset
//! `session_id` "empty" and an unset `sample_rate_hz` 0; `user_id` is `optional`, so an unset
//! one is no user and an empty one an error. Unknown field numbers are skipped, as protobuf
//! does.
//!
//! **Digital samples** become, for sample `d` of channel `c`, in f64 and in exactly this
//! order,
//!
//! ```text
//! physical = scale[c] * (offset[c] + d)
//! ```
//!
//! and then pass the `units` conversion exactly as JSON values do (`* 1e3` for mV, `* 1e6`
//! for V, nothing for µV). This is EDFlib's form, the one `eeg-edf`, EDFlib and pyedflib
//! evaluate (`bitvalue * (offset + digital)`): an EDF/BDF recording replayed as its digital
//! values, with each signal's `bitvalue` and `offset` from `SignalHeader::scaling()` and its
//! unit, decodes to exactly the µV the EDF reader yields, and to exactly the batch that a
//! JSON message carrying those physical values would give. The more familiar
//! `digital * scale + offset` would round differently in the last bit and lose that
//! identity; a gateway whose amplifier has a gain `g` per count and no bias sends
//! `scale = g`, `offset = 0`. Units JSON cannot name (an EDF signal in nV, say) cannot be
//! sent as digital values: send the converted values as float64 instead.
//!
//! For producers and replay, [`encode_raw_protobuf`] writes a message from borrowed
//! [`RawMeta`] and [`RawSamples`] without allocating beyond the output buffer, and
//! [`RawBatch::encode_protobuf`] writes a batch losslessly as float64. A 64-channel 24-bit
//! batch of 500 samples takes 3.04 bytes a sample as digital protobuf against 19 in JSON,
//! and decodes about 40 times faster (docs/performance.md, "Binary eeg.raw/1").
//!
//! # `eeg.event/1`: what happened to the person
//! ```json
//! {"schema": "eeg.event/1", "session_id": "s-42", "event_id": "stim-0017",
//!  "onset_ms": 1732270012345.25, "duration_s": 0.0, "label": "target", "value": 3,
//!  "source": "app"}
//! ```
//!
//! Sent on the raw topic beside the session's batches, with the session's key.
//!
//! | field | type | meaning and rules |
//! |---|---|---|
//! | `schema` | string | exactly `"eeg.event/1"` ([`EVENT_SCHEMA`]) |
//! | `session_id` | string | 1..=256 bytes, no control characters |
//! | `event_id` | string | 1..=256 bytes, no control characters; unique in the session (a copy is dropped) |
//! | `onset_ms` | number | Unix time in ms, finite, >= 0, may carry a fraction |
//! | `onset_sample` | u64, optional | the index in the session's samples; wins over `onset_ms` (one of the two is required) |
//! | `duration_s` | number, optional | finite, >= 0; default 0 |
//! | `label` | string | at most [`MAX_LABEL_BYTES`] (256) bytes, as the source wrote it; may be empty |
//! | `value` | integer, optional | a trigger code (i64) |
//! | `source` | string, optional | `app`, `lsl`, `edf+`, `bdf-status`, ...; at most 64 bytes, no control characters |
//!
//! [`decode_event`] reads the JSON form, [`decode_event_protobuf`] the binary one
//! (`eeg.event.v1.Event` in [`EVENT_PROTO`], sent with `content-type:
//! application/x-protobuf; messageType=eeg.event.v1.Event`); both apply every rule above and
//! name the field at fault. [`is_event_json`] tells a JSON event from a batch by its
//! `schema`.
//!
//! # `eeg.processed/1`: one record per completed window
//! ```json
//! {"schema": "eeg.processed/1", "session_id": "s-42", "device_id": "bud-7",
//!  "window_index": 0, "start_ms": 1732270000000, "end_ms": 1732270004000,
//!  "sample_rate_hz": 250.0, "settling": true,
//!  "channels": [{"name": "TP9",
//!                "band_power": {"delta": 1.0, "theta": 1.0, "alpha": 1.0, "beta": 1.0, "gamma": 1.0},
//!                "relative_power": {"delta": 0.2, "theta": 0.2, "alpha": 0.2, "beta": 0.2, "gamma": 0.2},
//!                "total_power": 5.0,
//!                "quality": {"rms_uv": 1.0, "ptp_uv": 1.0, "line_noise_ratio": 0.0,
//!                            "flatline": false, "railed": false, "artifact": false, "good": true}}],
//!  "indices": {"engagement": 1.0, "theta_beta": 1.0, "alpha_theta": 1.0}}
//! ```
//! - Fields in this order: `schema` ([`PROCESSED_SCHEMA`]), `session_id`, `device_id`,
//!   `user_id` (only when the raw input had one), `window_index` (u64, from 0), `start_ms`
//!   and `end_ms` (Unix ms of the first sample and of the end of the last), `sample_rate_hz`,
//!   `settling` (the filters were still settling), `channels`, `indices`.
//! - Each channel: `name`, `band_power` (µV²) and `relative_power` (fraction of
//!   `total_power`) as objects keyed by band name **in the config's band order** (any names,
//!   1..=32 bands), `total_power` (µV² over the band-pass range), `quality` (`rms_uv`,
//!   `ptp_uv` in µV, `line_noise_ratio`, and the flags `flatline`, `railed`, `artifact`,
//!   `good`).
//! - `indices` (`engagement` = β/(α+θ), `theta_beta` = θ/β, `alpha_theta` = α/θ over the
//!   good channels) are `null` when no channel is good or the bands they need are not
//!   configured.
//! - **Non-finite numbers are written as `null`.** The processor never produces one, but if
//!   it did the record would still be valid JSON; [`decode_processed`] reads such a `null`
//!   back as NaN.
//!
//! [`encode_processed`] writes a record from a borrowed [`ProcessedRecord`] (the session's
//! [`SessionMeta`] and a [`WindowData`], e.g. the processor's [`eeg_dsp::Window`]) without
//! allocating beyond the output buffer. [`decode_processed`] reads one back as a
//! [`ProcessedRecordOwned`].
//!
//! # Errors
//! Every [`SchemaError`] displays as one line naming the field and the problem, e.g.
//! `field 'samples': row 2 has 31 values, expected 32 (same as row 0)` or
//! `invalid JSON at line 1 column 17: expected ',' or '}'`. Text quoted from the input is
//! escaped and shortened so that it cannot break the line.

mod capture;
mod epoch;
mod error;
mod event;
mod processed;
mod raw;
mod raw_protobuf;
mod trigger;

pub use capture::{CaptureError, Delimited, DelimitedReader, write_delimited};
pub use eeg_dsp::{Indices, Quality};
pub use epoch::{EPOCH_SCHEMA, EpochRecord};
pub use error::SchemaError;
pub use event::{
    EVENT_PROTO, EVENT_PROTOBUF_CONTENT_TYPE, EVENT_PROTOBUF_MESSAGE, EVENT_SCHEMA, Event,
    MAX_EVENT_BYTES, MAX_LABEL_BYTES, MAX_SOURCE_BYTES, Onset, decode_event, decode_event_protobuf,
    is_event_json, is_event_protobuf,
};
pub use processed::{
    ChannelFeatures, ChannelOwned, IndicesOwned, OrderedBands, PROCESSED_SCHEMA, ProcessedRecord,
    ProcessedRecordOwned, QualityOwned, SessionMeta, WindowData, WindowFeatures, decode_processed,
    encode_processed,
};
pub use raw::{
    Limits, MAX_CHANNEL_NAME_BYTES, MAX_ID_BYTES, RAW_SCHEMA, RawBatch, RawBatchParts, decode_raw,
};
#[doc(hidden)]
pub use raw::{decode_raw_fast, decode_raw_reference};
pub use raw_protobuf::{
    JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, RAW_PROTO, RAW_PROTOBUF_MESSAGE, RawEncoding,
    RawMessage, RawMeta, RawSamples, RawUnits, decode_raw_as, decode_raw_message,
    decode_raw_protobuf, encode_raw_protobuf,
};
pub use trigger::{
    DecodeError as TriggerDecodeError, EventState, TRIGGER_SCHEMA, TriggerEvent, TriggerRecord,
    decode_trigger,
};
