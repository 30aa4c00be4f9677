//! The service's figures, readable while it runs: counters of what the transport and the
//! partition cores did, and histograms of processing time and window latency. Written by
//! the workers and the producer's delivery reports; read by log lines, `/health` and
//! `/metrics`, field by field.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eeg_session::{Counters, Figure, MemoryBudget, OutputCache};

use crate::live::LiveSessions;

eeg_session::counters! {
    /// What the transport did.
    pub struct TransportCounters {
        /// Raw messages consumed.
        messages_consumed: Counter,
        /// Partition assignments and revocations.
        rebalances: Counter,
        /// Times a partition was read again from the first offset not received, after the
        /// consumer skipped offsets.
        offset_refetches: Counter,
        /// Times the service left and rejoined its group because a partition had no consumer.
        group_rejoins: Counter,
    }
}

/// Counters of what the service did, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub transport: TransportCounters,
    /// The partition cores' counters (records, triggers, dead letters, sessions...).
    pub core: Arc<Counters>,
    /// Time to process one raw message in its partition's worker.
    pub latency: Histogram,
    /// Time from a window's end, and from its raw message's consumption, to its record's
    /// acknowledgement.
    pub window_latency: Arc<WindowLatency>,
    /// Each active session's latest record.
    pub live: Arc<LiveSessions>,
    /// The cache beside Kafka, if one is configured.
    pub cache: Option<Arc<dyn OutputCache>>,
    /// The memory the instance's sessions may reserve, and what they reserved.
    pub memory: Arc<MemoryBudget>,
}

impl Stats {
    /// Every counter and gauge, transport first: the one list log lines and metrics use.
    pub fn each(&self, mut f: impl FnMut(Figure)) {
        self.transport.each(&mut f);
        self.core.each(&mut f);
        self.memory.figures().each(&mut f);
    }
}

/// Reads a counter.
pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Upper bounds of the processing-time buckets, µs.
const PROCESSING_BUCKETS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
];

/// Upper bounds of the window-latency buckets, µs: from what neurofeedback notices
/// (tens of ms) to a device clock that is off by a minute.
const WINDOW_LATENCY_BUCKETS_US: &[u64] = &[
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 60_000_000,
];

/// A Prometheus-style histogram of durations, lock-free.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, µs, ascending.
    bounds_us: &'static [u64],
    /// Per bucket (not cumulative), the last one for everything above the largest bound.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    /// Buckets for the time to process one message.
    fn default() -> Self {
        Histogram::new(PROCESSING_BUCKETS_US)
    }
}

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        Histogram {
            bounds_us,
            counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = self
            .bounds_us
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(self.bounds_us.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(read).sum()
    }

    /// Writes the histogram in the Prometheus text format (cumulative buckets, seconds).
    pub fn write(&self, out: &mut String, name: &str, help: &str) {
        write_help(out, name, help);
        self.write_series(out, name, "");
    }

    /// Writes the histogram's series, each with `labels` (e.g. `since="consume",`) before
    /// its bucket bound; the HELP and TYPE lines are the caller's.
    pub fn write_series(&self, out: &mut String, name: &str, labels: &str) {
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += read(c);
            match self.bounds_us.get(i) {
                Some(b) => {
                    let le = *b as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {total}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {total}");
                }
            }
        }
        let sum = read(&self.sum_us) as f64 / 1e6;
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {sum}\n{name}_count{braces} {total}"
        );
    }
}

/// The HELP and TYPE lines of a histogram.
pub fn write_help(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
}

/// How long processed records take to reach the broker, measured at their delivery
/// acknowledgement: from the end of the window in sample time (the device's clock), and
/// from consuming the raw message that completed the window.
#[derive(Debug)]
pub struct WindowLatency {
    pub since_window_end: Histogram,
    pub since_consume: Histogram,
}

impl Default for WindowLatency {
    fn default() -> Self {
        WindowLatency {
            since_window_end: Histogram::new(WINDOW_LATENCY_BUCKETS_US),
            since_consume: Histogram::new(WINDOW_LATENCY_BUCKETS_US),
        }
    }
}

impl WindowLatency {
    /// Records one acknowledged record. A window end ahead of this machine's clock (a
    /// device clock running fast) counts as 0.
    pub fn observe(&self, window_end_ms: i64, consumed: Option<Instant>, now_unix_ms: i64) {
        let behind = now_unix_ms.saturating_sub(window_end_ms).max(0) as u64;
        self.since_window_end.observe(Duration::from_millis(behind));
        if let Some(consumed) = consumed {
            self.since_consume.observe(consumed.elapsed());
        }
    }

    pub fn write(&self, out: &mut String) {
        let name = "eeg_window_latency_seconds";
        write_help(
            out,
            name,
            "Time until a processed record is acknowledged by the broker: since=\"window_end\" from the end of its window in sample time (the device's clock), since=\"consume\" from consuming the raw message that completed the window.",
        );
        self.since_window_end
            .write_series(out, name, "since=\"window_end\",");
        self.since_consume
            .write_series(out, name, "since=\"consume\",");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_falls_in_the_first_bucket_that_holds_it() {
        let h = Histogram::new(&[10, 100]);
        for us in [0, 10, 11, 100, 101, 5_000] {
            h.observe(Duration::from_micros(us));
        }
        let mut out = String::new();
        h.write_series(&mut out, "x", "");
        assert_eq!(
            out,
            "x_bucket{le=\"0.00001\"} 2\nx_bucket{le=\"0.0001\"} 4\nx_bucket{le=\"+Inf\"} 6\n\
             x_sum 0.005222\nx_count 6\n"
        );
        assert_eq!(h.count(), 6);
    }

    #[test]
    fn the_figures_list_transport_then_core_by_their_own_names() {
        let stats = Stats::default();
        stats.transport.rebalances.fetch_add(3, Ordering::Relaxed);
        stats.core.dead_letters.fetch_add(2, Ordering::Relaxed);
        let mut seen = Vec::new();
        stats.each(|f| seen.push((f.name, f.value)));
        assert_eq!(seen[0], ("messages_consumed", 0));
        assert!(seen.contains(&("rebalances", 3)));
        assert!(seen.contains(&("dead_letters", 2)));
        let transport = seen.iter().position(|f| f.0 == "group_rejoins").unwrap();
        let core = seen
            .iter()
            .position(|f| f.0 == "records_published")
            .unwrap();
        assert!(transport < core);
    }
}
