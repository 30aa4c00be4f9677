//! The hot path allocates nothing: once a session's first window is in, pushing samples and
//! completing windows never touches the heap. Before that, a session holds memory for the
//! samples that arrived, not for what it declares.

use eeg_dsp::{OwnedWindow, ProcessingConfig, SessionProcessor, Window};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread (tests run on parallel threads).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Bytes requested by the current thread (allocations and growth; frees not subtracted).
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
        count(new_size.saturating_sub(layout.size()));
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

fn bytes() -> usize {
    BYTES.with(Cell::get)
}

/// The largest session the default limits accept (1,024 channels at 30 kHz, 940 MiB once
/// its first window is in) costs what its samples cost until then; a larger one is refused
/// having cost next to nothing.
#[test]
fn sessions_hold_what_arrived_not_what_they_declare() {
    let config = ProcessingConfig::default();
    let (fs, nch) = (30_000.0, 1024);
    let (plan, declared) = SessionProcessor::plan_session(&config, fs, nch).unwrap();
    assert!(declared > 900 << 20, "{declared}");
    let before = bytes();
    let mut p = SessionProcessor::new(&config, fs, nch, 0).unwrap();
    let created = bytes() - before;
    assert!(created < 4 << 20, "a new session allocated {created} bytes");
    // Two samples per channel, as in a 20 KB message.
    let two = vec![1.0; 2 * nch];
    let before = bytes();
    p.push_interleaved(&two, &mut |_: &Window<'_>| {}).unwrap();
    let pushed = bytes() - before;
    assert!(
        pushed <= 2 * nch * 8,
        "two samples allocated {pushed} bytes"
    );
    assert_eq!(p.samples_seen(), 2);
    assert!(p.state_bytes() < 4 << 20);
    assert!(plan.window_len > 100_000);
    // Beyond the limits: refused before anything in proportion to the session.
    let before = bytes();
    for (fs, nch) in [(100_000.0, 1024), (200_000.0, 8), (256.0, 5000)] {
        assert!(SessionProcessor::new(&config, fs, nch, 0).is_err());
    }
    let refused = bytes() - before;
    assert!(refused < 64 << 10, "refusing allocated {refused} bytes");
}

#[test]
fn pushing_samples_and_completing_windows_does_not_allocate() {
    let (fs, nch) = (250.0, 8);
    let chunk: Vec<f64> = (0..32 * nch)
        .map(|i| (i as f64 * 0.37).sin() * 30.0)
        .collect();
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), fs, nch, 0).unwrap();
    let mut windows = 0u64;
    let mut owned = OwnedWindow::default();
    let mut sink = |w: &Window<'_>| {
        windows += 1;
        owned.copy_from(w);
    };
    // Warm up: the first windows fill the segment cache and the recycled window.
    for _ in 0..100 {
        p.push_interleaved(&chunk, &mut sink).unwrap();
    }
    let rows: Vec<f64> = chunk.clone();
    let before = allocations();
    for _ in 0..400 {
        p.push_interleaved(&chunk, &mut sink).unwrap();
        p.push_channel_major(&rows, 32, &mut sink).unwrap();
    }
    let after = allocations();
    assert!(windows > 50, "windows completed: {windows}");
    assert_eq!(after - before, 0, "allocations in the hot path");
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 100]);
    assert!(allocations() > before, "{}", v.len());
}

#[test]
fn pushing_arrays_in_any_memory_order_does_not_allocate() {
    use eeg_dsp::ndarray::{Array2, ShapeBuilder, s};
    let (fs, nch, frames) = (250.0, 6, 32);
    let sample = |(c, t): (usize, usize)| ((c * frames + t) as f64 * 0.37).sin() * 30.0;
    let c_order = Array2::from_shape_fn((nch, frames), sample);
    let f_order = Array2::from_shape_fn((nch, frames).f(), sample);
    let wide = Array2::from_shape_fn((2 * nch, 2 * frames), sample);
    // Rows, whole frames and neither: each copy path of `push_array`.
    let views = [c_order.view(), f_order.view(), wide.slice(s![..;2, ..;2])];
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), fs, nch, 0).unwrap();
    let mut windows = 0u64;
    let mut alpha = 0.0;
    let mut sink = |w: &Window<'_>| {
        windows += 1;
        alpha += w.band_power_view()[[0, 2]] + w.relative_power_view()[[nch - 1, 2]];
    };
    for _ in 0..100 {
        for v in views {
            p.push_array(v, &mut sink).unwrap();
        }
    }
    let before = allocations();
    for _ in 0..400 {
        for v in views {
            p.push_array(v, &mut sink).unwrap();
        }
    }
    let after = allocations();
    assert!(windows > 50, "windows completed: {windows}");
    assert_eq!(after - before, 0, "allocations in the hot path");
    assert!(alpha.is_finite());
}
