//! Asking a running service to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Handle to ask a running service to stop; clones share the request.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Sleeps for `d`, or less when a stop is requested meanwhile; true when it was.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.requested() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        self.requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_cuts_a_sleep_short_and_is_seen_by_every_clone() {
        let stop = StopHandle::default();
        let other = stop.clone();
        assert!(!stop.sleep(Duration::from_millis(1)));
        let t = std::thread::spawn(move || {
            let started = Instant::now();
            (other.sleep(Duration::from_secs(60)), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(20));
        stop.stop();
        let (stopped, slept) = t.join().unwrap();
        assert!(stopped);
        assert!(slept < Duration::from_secs(60), "{slept:?}");
        assert!(stop.requested());
    }
}
