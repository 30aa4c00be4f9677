//! Waking a partition's worker when there is something for it to do.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Rung when a partition's queue gets a message, when the broker acknowledges an output that
/// settles one of the partition's ledger entries, and when the partition is released. The
/// worker waits on it instead of polling on a timer: acknowledgements move its commit offset
/// as soon as they arrive, and an idle worker does not wake up.
///
/// A ring is kept until the next wait takes it, so one that comes between the worker's last
/// look and its wait is never missed.
#[derive(Debug, Default)]
pub struct Bell {
    rung: Mutex<bool>,
    wake: Condvar,
}

impl Bell {
    pub fn ring(&self) {
        let mut rung = self.rung.lock().expect("bell lock");
        if !*rung {
            *rung = true;
            self.wake.notify_one();
        }
    }

    /// Waits until the bell is rung (or was, since the last wait) or `timeout` passes; true
    /// when it was rung.
    pub fn wait(&self, timeout: Duration) -> bool {
        let rung = self.rung.lock().expect("bell lock");
        let (mut rung, _) = self
            .wake
            .wait_timeout_while(rung, timeout, |rung| !*rung)
            .expect("bell lock");
        std::mem::take(&mut *rung)
    }
}

/// A partition waiting for session memory tries again when some is released.
impl eeg_session::Wake for Bell {
    fn wake(&self) {
        self.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_ring_before_the_wait_is_kept_for_it_once() {
        let bell = Bell::default();
        bell.ring();
        bell.ring();
        assert!(bell.wait(Duration::from_secs(60)));
        assert!(!bell.wait(Duration::from_millis(1)), "two rings are one");
    }

    #[test]
    fn a_ring_wakes_a_waiting_worker() {
        let bell = Arc::new(Bell::default());
        let waiter = {
            let bell = Arc::clone(&bell);
            std::thread::spawn(move || {
                let started = Instant::now();
                (bell.wait(Duration::from_secs(60)), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        bell.ring();
        let (rung, waited) = waiter.join().unwrap();
        assert!(rung);
        assert!(waited < Duration::from_secs(60), "{waited:?}");
    }
}
