//! A counting global allocator: the bytes held now and the most held since the last reset,
//! over every thread, so that a target can hold a library call to a memory bound.
//!
//! The counts are of requested sizes (`Layout::size`), not of what the system allocator
//! rounds them up to: a bound is a statement about what the code asks for.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// [`System`], counting.
#[derive(Debug)]
pub struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Bytes above which an allocation is the first to break the bound being checked; `usize::MAX`
/// when no bound is armed.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The size of the allocation that first crossed `LIMIT` (0 when none did).
static CROSSED_BY: AtomicUsize = AtomicUsize::new(0);
/// Set while a backtrace of the crossing allocation is taken, so that the allocations of
/// taking it are not traced in turn.
static TRACING: AtomicBool = AtomicBool::new(false);
static TRACE: std::sync::Mutex<Option<std::backtrace::Backtrace>> = std::sync::Mutex::new(None);

/// Whether a backtrace is taken where an allocation first breaks a bound (`FUZZ_ALLOC_TRACE=1`,
/// for replaying a finding; too slow for fuzzing).
static TRACE_WANTED: AtomicBool = AtomicBool::new(false);

fn grow(n: usize) {
    let now = CURRENT.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
    if now > LIMIT.load(Relaxed)
        && CROSSED_BY
            .compare_exchange(0, n.max(1), Relaxed, Relaxed)
            .is_ok()
    {
        // The first crossing only. Unwinding out of an allocator is undefined behaviour, so
        // the bound is reported by `Measured::check` after the call; here only where it broke.
        if TRACE_WANTED.load(Relaxed) && !TRACING.swap(true, Relaxed) {
            let trace = std::backtrace::Backtrace::force_capture();
            if let Ok(mut slot) = TRACE.try_lock() {
                *slot = Some(trace);
            }
            TRACING.store(false, Relaxed);
        }
    }
}

fn shrink(n: usize) {
    CURRENT.fetch_sub(n, Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; only counters are updated around it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grow(new_size - layout.size());
            } else {
                shrink(layout.size() - new_size);
            }
        }
        p
    }
}

/// A memory bound: at most `base + factor * input length` bytes held at once above what
/// was held when the call started.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub base: usize,
    pub factor: usize,
}

impl Bound {
    pub fn bytes(self, input_len: usize) -> usize {
        self.base
            .saturating_add(self.factor.saturating_mul(input_len))
    }
}

/// What [`measure`] saw of one call.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Most bytes held at once during the call, above those held when it started.
    pub peak: usize,
    /// Size of the allocation that first went over the bound, if any did.
    pub crossed_by: Option<usize>,
}

/// Runs `f` and returns what it returned with the most bytes it held at once (including its
/// result, and the allocations of any thread meanwhile: run one check at a time).
/// Allocations that cross `bound` for `input_len` bytes of input are remembered, with a
/// backtrace when `FUZZ_ALLOC_TRACE=1`.
pub fn measure<R>(input_len: usize, bound: Bound, f: impl FnOnce() -> R) -> (R, Measured) {
    static TRACE_ENV: std::sync::Once = std::sync::Once::new();
    TRACE_ENV.call_once(|| {
        let wanted = std::env::var_os("FUZZ_ALLOC_TRACE").is_some_and(|v| v == "1");
        TRACE_WANTED.store(wanted, Relaxed);
    });
    let start = CURRENT.load(Relaxed);
    PEAK.store(start, Relaxed);
    CROSSED_BY.store(0, Relaxed);
    LIMIT.store(start.saturating_add(bound.bytes(input_len)), Relaxed);
    let out = f();
    LIMIT.store(usize::MAX, Relaxed);
    let peak = PEAK.load(Relaxed).saturating_sub(start);
    let crossed = CROSSED_BY.load(Relaxed);
    (
        out,
        Measured {
            peak,
            crossed_by: (crossed != 0).then_some(crossed),
        },
    )
}

/// The backtrace of the allocation that first crossed the bound in the last [`measure`], when
/// one was taken.
pub fn take_trace() -> Option<std::backtrace::Backtrace> {
    TRACE.lock().ok().and_then(|mut t| t.take())
}

/// Bytes held now, by every thread.
pub fn current() -> usize {
    CURRENT.load(Relaxed)
}
