//! Encoding a processed record allocates nothing once the output buffer has room: it runs
//! once per window per session on the output path. Decoding a raw batch allocates in
//! proportion to the message, whatever its fields claim; decoding a binary one allocates
//! nothing per sample beyond its output and prost's one copy of the digital bytes.

use eeg_dsp::{OwnedWindow, ProcessingConfig, SessionProcessor, Window};
use eeg_schema::{
    ChannelFeatures, Indices, Limits, ProcessedRecord, Quality, RawMeta, RawSamples, RawUnits,
    SessionMeta, WindowFeatures, decode_raw, decode_raw_protobuf, encode_processed,
    encode_raw_protobuf,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread (tests run on parallel threads).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + bytes));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn allocated_bytes() -> usize {
    BYTES.with(Cell::get)
}

fn meta(n: usize) -> SessionMeta {
    SessionMeta {
        session_id: "s-42".into(),
        device_id: "bud-7".into(),
        user_id: Some("u-1".into()),
        sample_rate_hz: 250.0,
        channels: (0..n).map(|c| format!("C{c}")).collect(),
    }
}

#[test]
fn encoding_a_processor_window_does_not_allocate() {
    let nch = 8;
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), 250.0, nch, 0).unwrap();
    let mut owned = OwnedWindow::default();
    let x: Vec<f64> = (0..nch * 250 * 4)
        .map(|i| (i as f64 * 0.01).sin() * 20.0)
        .collect();
    p.push_interleaved(&x, &mut |w: &Window<'_>| owned.copy_from(w))
        .unwrap();
    let m = meta(nch);
    let window = owned.view();
    let mut out = Vec::with_capacity(1 << 16);
    let before = allocations();
    for _ in 0..10 {
        out.clear();
        encode_processed(
            &ProcessedRecord {
                meta: &m,
                window: &window,
            },
            &mut out,
        );
    }
    assert_eq!(allocations() - before, 0);
    assert!(out.len() > 500);
}

#[test]
fn encoding_window_features_with_fallback_names_does_not_allocate() {
    let bp = [1.0, 2.0, f64::NAN];
    let ch = [ChannelFeatures {
        band_power: &bp,
        relative_power: &bp[..1],
        total_power: 3.0,
        quality: Quality::default(),
    }; 4];
    let w = WindowFeatures {
        window_index: 9,
        start_ms: 0,
        end_ms: 4000,
        settling: false,
        band_names: &["a", "b", "c"],
        channels: &ch,
        indices: Indices::default(),
    };
    let m = meta(2); // channels 2 and 3 get positional names
    let mut out = Vec::with_capacity(1 << 14);
    let before = allocations();
    encode_processed(
        &ProcessedRecord {
            meta: &m,
            window: &w,
        },
        &mut out,
    );
    assert_eq!(allocations() - before, 0);
    assert!(
        std::str::from_utf8(&out)
            .unwrap()
            .contains("\"name\":\"ch3\"")
    );
}

#[test]
fn decoding_reserves_memory_in_proportion_to_the_message() {
    // 1000 channel names, then one long row: the names claim 999 more rows of the same
    // length, which the message cannot hold.
    let names: Vec<String> = (0..1000).map(|c| format!("\"E{c}\"")).collect();
    let row = vec!["0"; 60_000].join(",");
    let msg = format!(
        "{{\"schema\":\"eeg.raw/1\",\"session_id\":\"s\",\"device_id\":\"d\",\"seq\":0,\"start_ms\":0,\"sample_rate_hz\":250,\"channels\":[{}],\"samples\":[[{row}]]}}",
        names.join(",")
    );
    let before = allocated_bytes();
    let e = decode_raw(msg.as_bytes(), &Limits::default()).unwrap_err();
    let used = allocated_bytes() - before;
    assert_eq!(
        e.to_string(),
        "field 'channels': 1000 names but 'samples' has 1 rows"
    );
    assert!(
        used < 20 * msg.len(),
        "{used} bytes for a {}-byte message",
        msg.len()
    );
}

/// A binary batch of 24-bit digital samples, `n` per channel.
fn digital_message(n_ch: usize, n: usize) -> Vec<u8> {
    let channels: Vec<String> = (0..n_ch).map(|c| format!("E{c}")).collect();
    let data: Vec<i32> = (0..n_ch * n)
        .map(|i| (i as i32 * 7919) % 8_000_000 - 4_000_000)
        .collect();
    let meta = RawMeta {
        session_id: "s-42",
        device_id: "bud-7",
        user_id: Some("u-1"),
        seq: 1,
        start_ms: 1_732_270_000_000,
        sample_rate_hz: 500.0,
        channels: &channels,
        units: RawUnits::Microvolts,
    };
    let samples = RawSamples::Digital {
        bytes_per_sample: 3,
        data: &data,
        scale: &vec![0.022_351_741_790_771_484; n_ch],
        offset: &vec![0.0; n_ch],
    };
    let mut out = Vec::new();
    encode_raw_protobuf(&meta, samples, &mut out).unwrap();
    out
}

#[test]
fn decoding_digital_protobuf_allocates_only_per_message_and_per_channel() {
    let limits = Limits::default();
    let count = |msg: &[u8]| {
        let (before, bytes_before) = (allocations(), allocated_bytes());
        let batch = decode_raw_protobuf(msg, &limits).unwrap();
        let counts = (allocations() - before, allocated_bytes() - bytes_before);
        drop(batch);
        counts
    };
    let short = digital_message(64, 50);
    let long = digital_message(64, 500);
    let (n_short, _) = count(&short);
    let (n_long, bytes_long) = count(&long);
    // Nothing per sample: ten times the samples, the same allocations (the names, ids,
    // scale and offset, prost's copy of the bytes, the output).
    assert_eq!(n_short, n_long);
    // Bytes: prost's one copy of the data (3 per sample) and the output (8 per sample),
    // plus the small per-channel vectors; no second copy of either.
    let samples = 64 * 500;
    assert!(
        bytes_long < 11 * samples + 16 * 1024,
        "{bytes_long} bytes for {samples} samples"
    );
}

#[test]
fn encoding_protobuf_does_not_allocate_once_the_buffer_has_room() {
    let channels: Vec<String> = (0..8).map(|c| format!("C{c}")).collect();
    let data: Vec<i32> = (0..8 * 32).collect();
    let (scale, offset) = ([0.5; 8], [0.0; 8]);
    let meta = RawMeta {
        session_id: "s-42",
        device_id: "bud-7",
        user_id: None,
        seq: 1,
        start_ms: 1_732_270_000_000,
        sample_rate_hz: 250.0,
        channels: &channels,
        units: RawUnits::Microvolts,
    };
    let mut out = Vec::with_capacity(1 << 14);
    let batch = decode_raw_protobuf(&digital_message(8, 32), &Limits::default()).unwrap();
    let before = allocations();
    for _ in 0..10 {
        out.clear();
        let samples = RawSamples::Digital {
            bytes_per_sample: 3,
            data: &data,
            scale: &scale,
            offset: &offset,
        };
        encode_raw_protobuf(&meta, samples, &mut out).unwrap();
        out.clear();
        batch.encode_protobuf(&mut out);
    }
    assert_eq!(allocations() - before, 0);
}

#[test]
fn too_many_channel_names_are_rejected_before_they_are_allocated() {
    // 200,000 empty names in 400 KB: prost would make a String of each.
    let msg = [0x42, 0x00].repeat(200_000);
    let before = allocated_bytes();
    let e = decode_raw_protobuf(&msg, &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field 'channels': 200000 channels, at most 1024 (limits.max_channels; raise it in the config file to accept more)"
    );
    assert!(allocated_bytes() - before < 1024);
}
