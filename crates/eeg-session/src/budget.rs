//! An instance's memory budget for session state.
//!
//! A session reserves, when it starts, the most its state can ever hold (its processor's
//! [`eeg_dsp::SessionProcessor::max_state_bytes`] and its checkpoints), so the sessions an
//! instance admits cannot together hold more than the budget, whatever data they go on to
//! receive. A session that does not fit waits: its partition's core hands the message back
//! ([`crate::Outcome::Held`]) with nothing recorded, and the transport stops reading that
//! partition until a reservation is released (a session evicted, or its partition moved to
//! another instance) and tries the same message again.
//!
//! Whether a message waits depends on what else is in memory, so it decides only *when* the
//! message is processed, never *what* comes of it: the records are the same on any instance.
//! What may depend only on the message and the config (refusing a session outright) is
//! [`eeg_dsp::SessionLimits`]' job; a session larger than the whole budget is refused there,
//! since the transport caps `limits.max_session_state_mib` at the budget.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

crate::counters! {
    /// The budget's figures, for log lines and metrics.
    pub struct BudgetFigures {
        /// Memory budget of the instance for session state, bytes.
        session_memory_budget_bytes: Gauge,
        /// Session state reserved by the sessions in memory (each the most it can hold), bytes.
        session_memory_reserved_bytes: Gauge,
        /// Partitions not read because the session their next message starts does not fit in the memory budget.
        partitions_held_for_memory: Gauge,
        /// Times a partition stopped to wait for session memory.
        memory_holds: Counter,
    }
}

/// Told when memory is released while a partition waits for it.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

/// The instance's budget; shared by its partitions' cores.
pub struct MemoryBudget {
    limit: u64,
    state: Mutex<State>,
    figures: BudgetFigures,
}

#[derive(Default)]
struct State {
    reserved: u64,
    /// Bytes reserved by each partition's sessions.
    by_partition: BTreeMap<i32, u64>,
    /// Partitions waiting, with the bytes their next session needs.
    held: BTreeMap<i32, u64>,
    wakers: Vec<Weak<dyn Wake>>,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit)
            .field("reserved", &self.reserved())
            .finish_non_exhaustive()
    }
}

/// A session that does not fit now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Bytes the session needs.
    pub needs: u64,
    /// Bytes reserved by the sessions in memory.
    pub reserved: u64,
    pub limit: u64,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it needs {} of session memory and {} of the budget of {} is reserved",
            Mib(self.needs),
            Mib(self.reserved),
            Mib(self.limit)
        )
    }
}

/// Bytes shown in MiB with one decimal, or in KiB below 1 MiB.
pub(crate) struct Mib(pub u64);

impl std::fmt::Display for Mib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 < 1 << 20 {
            write!(f, "{:.1} KiB", self.0 as f64 / 1024.0)
        } else {
            write!(f, "{:.1} MiB", self.0 as f64 / (1u64 << 20) as f64)
        }
    }
}

/// Memory one session holds against the budget; released when dropped.
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    partition: i32,
    bytes: u64,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Default for MemoryBudget {
    /// Unlimited.
    fn default() -> MemoryBudget {
        Arc::into_inner(MemoryBudget::unlimited()).expect("just made")
    }
}

impl MemoryBudget {
    pub fn new(limit_bytes: u64) -> Arc<MemoryBudget> {
        let budget = MemoryBudget {
            limit: limit_bytes,
            state: Mutex::new(State::default()),
            figures: BudgetFigures::default(),
        };
        budget
            .figures
            .session_memory_budget_bytes
            .store(limit_bytes, Ordering::Relaxed);
        Arc::new(budget)
    }

    /// A budget nothing exceeds (tests, and cores with no instance around them).
    pub fn unlimited() -> Arc<MemoryBudget> {
        MemoryBudget::new(u64::MAX)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn reserved(&self) -> u64 {
        self.lock().reserved
    }

    /// The partitions waiting for memory, with the bytes each one's next session needs.
    pub fn held(&self) -> Vec<(i32, u64)> {
        self.lock().held.iter().map(|(&p, &b)| (p, b)).collect()
    }

    /// Partitions wait, and every partition holding memory is one of them: sessions end only
    /// when their partition's messages go on, so nothing here will release memory until the
    /// budget is raised or partitions move to other instances.
    pub fn stuck(&self) -> bool {
        let s = self.lock();
        let free = self.limit.saturating_sub(s.reserved);
        !s.held.is_empty()
            && s.held.values().all(|&needs| needs > free)
            && s.by_partition.keys().all(|p| s.held.contains_key(p))
    }

    pub fn figures(&self) -> &BudgetFigures {
        &self.figures
    }

    /// `waker` is told whenever memory is released while a partition waits (it stays
    /// registered while it lives).
    pub fn watch(&self, waker: Weak<dyn Wake>) {
        let mut s = self.lock();
        s.wakers.retain(|w| w.strong_count() > 0);
        s.wakers.push(waker);
    }

    /// Reserves `bytes` for a session of `partition` if they fit; otherwise the partition is
    /// counted as waiting until it reserves or [`MemoryBudget::forget`]s.
    pub fn try_reserve(self: &Arc<Self>, partition: i32, bytes: u64) -> Result<Reservation, Full> {
        let mut s = self.lock();
        if bytes <= self.limit.saturating_sub(s.reserved) {
            s.add(partition, bytes);
            if s.held.remove(&partition).is_some() {
                self.count_held(&s);
            }
            self.count_reserved(&s);
            drop(s);
            return Ok(Reservation {
                budget: Arc::clone(self),
                partition,
                bytes,
            });
        }
        if s.held.insert(partition, bytes).is_none() {
            self.figures.memory_holds.fetch_add(1, Ordering::Relaxed);
            self.count_held(&s);
        }
        Err(Full {
            needs: bytes,
            reserved: s.reserved,
            limit: self.limit,
        })
    }

    /// Reserves `bytes` even beyond the limit: for sessions already running when they come
    /// here (restored from their snapshots), which must carry on.
    pub fn reserve_anyway(self: &Arc<Self>, partition: i32, bytes: u64) -> Reservation {
        let mut s = self.lock();
        s.add(partition, bytes);
        self.count_reserved(&s);
        drop(s);
        Reservation {
            budget: Arc::clone(self),
            partition,
            bytes,
        }
    }

    /// `partition` no longer waits (it was released here).
    pub fn forget(&self, partition: i32) {
        let mut s = self.lock();
        if s.held.remove(&partition).is_some() {
            self.count_held(&s);
        }
    }

    fn release(&self, partition: i32, bytes: u64) {
        let mut s = self.lock();
        s.reserved = s.reserved.saturating_sub(bytes);
        if let Some(b) = s.by_partition.get_mut(&partition) {
            *b = b.saturating_sub(bytes);
            if *b == 0 {
                s.by_partition.remove(&partition);
            }
        }
        self.count_reserved(&s);
        if s.held.is_empty() || bytes == 0 {
            return;
        }
        let wakers: Vec<Arc<dyn Wake>> = s.wakers.iter().filter_map(Weak::upgrade).collect();
        drop(s);
        for w in wakers {
            w.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory budget lock")
    }

    fn count_reserved(&self, s: &State) {
        self.figures
            .session_memory_reserved_bytes
            .store(s.reserved, Ordering::Relaxed);
    }

    fn count_held(&self, s: &State) {
        self.figures
            .partitions_held_for_memory
            .store(s.held.len() as u64, Ordering::Relaxed);
    }
}

impl State {
    fn add(&mut self, partition: i32, bytes: u64) {
        self.reserved = self.reserved.saturating_add(bytes);
        if bytes > 0 {
            *self.by_partition.entry(partition).or_default() += bytes;
        }
    }
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes `more`'s bytes into this reservation, then gives back whatever is above
    /// `total`: a session whose shape changed keeps one reservation of its new size.
    pub fn merge(&mut self, mut more: Reservation, total: u64) {
        self.bytes += std::mem::take(&mut more.bytes);
        if self.bytes > total {
            self.budget.release(self.partition, self.bytes - total);
            self.bytes = total;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.partition, self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn figure(b: &MemoryBudget, name: &str) -> u64 {
        let mut v = None;
        b.figures().each(|f| {
            if f.name == name {
                v = Some(f.value);
            }
        });
        v.unwrap()
    }

    #[test]
    fn what_does_not_fit_waits_and_is_woken_when_memory_is_released() {
        let budget = MemoryBudget::new(100);
        let waker = Arc::new(Count::default());
        budget.watch(Arc::downgrade(&waker) as Weak<dyn Wake>);
        let a = budget.try_reserve(0, 60).unwrap();
        let full = budget.try_reserve(1, 50).unwrap_err();
        assert_eq!(
            full,
            Full {
                needs: 50,
                reserved: 60,
                limit: 100
            }
        );
        // Asking again while waiting is one hold, not two.
        budget.try_reserve(1, 50).unwrap_err();
        assert_eq!(budget.held(), vec![(1, 50)]);
        assert_eq!(figure(&budget, "memory_holds"), 1);
        assert_eq!(figure(&budget, "partitions_held_for_memory"), 1);
        assert_eq!(waker.0.load(Ordering::Relaxed), 0);
        drop(a);
        assert_eq!(
            waker.0.load(Ordering::Relaxed),
            1,
            "the release woke the waiter"
        );
        let b = budget.try_reserve(1, 50).unwrap();
        assert!(budget.held().is_empty());
        assert_eq!(figure(&budget, "partitions_held_for_memory"), 0);
        assert_eq!(figure(&budget, "session_memory_reserved_bytes"), 50);
        assert_eq!(b.bytes(), 50);
        drop(b);
        assert_eq!(budget.reserved(), 0);
        assert_eq!(waker.0.load(Ordering::Relaxed), 1, "nobody waited: no wake");
    }

    #[test]
    fn restored_sessions_are_counted_beyond_the_limit_and_new_ones_wait_for_them() {
        let budget = MemoryBudget::new(100);
        let restored = budget.reserve_anyway(0, 150);
        assert_eq!(budget.reserved(), 150);
        budget.try_reserve(3, 1).unwrap_err();
        drop(restored);
        assert!(budget.try_reserve(3, 100).is_ok());
    }

    #[test]
    fn a_merged_reservation_holds_the_new_total() {
        let budget = MemoryBudget::new(100);
        let mut r = budget.try_reserve(0, 40).unwrap();
        let more = budget.try_reserve(0, 30).unwrap();
        r.merge(more, 70);
        assert_eq!((r.bytes(), budget.reserved()), (70, 70));
        let none = budget.try_reserve(0, 0).unwrap();
        r.merge(none, 25);
        assert_eq!((r.bytes(), budget.reserved()), (25, 25));
    }

    #[test]
    fn partitions_that_all_hold_memory_and_wait_are_stuck() {
        let budget = MemoryBudget::new(100);
        let a = budget.try_reserve(0, 50).unwrap();
        let b = budget.try_reserve(1, 50).unwrap();
        budget.try_reserve(0, 10).unwrap_err();
        assert!(!budget.stuck(), "partition 1 goes on and may release");
        budget.try_reserve(1, 10).unwrap_err();
        assert!(budget.stuck());
        drop(b);
        assert!(
            !budget.stuck(),
            "the memory partition 1 waits for is free now"
        );
        drop(a);
    }

    #[test]
    fn a_released_partition_stops_waiting() {
        let budget = MemoryBudget::new(10);
        budget.try_reserve(2, 11).unwrap_err();
        budget.forget(2);
        assert!(budget.held().is_empty());
        assert_eq!(figure(&budget, "partitions_held_for_memory"), 0);
    }

    #[test]
    fn full_says_what_is_needed_and_what_is_taken() {
        let full = Full {
            needs: 3 << 20,
            reserved: 1 << 30,
            limit: 1 << 30,
        };
        assert_eq!(
            full.to_string(),
            "it needs 3.0 MiB of session memory and 1024.0 MiB of the budget of 1024.0 MiB is reserved"
        );
    }
}
