//! The Prometheus text exposition of the service's figures and health, for `/metrics`.
//! Labels stay bounded: no session or device id ever becomes a label.

use std::fmt::Write as _;

use eeg_session::MetricKind;

use crate::figures::Stats;
use crate::health::{Gauges, Health};

/// The Prometheus text exposition of `stats` and `health`. Labels stay bounded: no session
/// or device id ever becomes a label.
pub fn render(stats: &Stats, health: &Health) -> String {
    let mut out = String::new();
    // Every counter and gauge of the one list: `eeg_<name>_total` or `eeg_<name>`.
    stats.each(|f| {
        let (name, kind) = match f.kind {
            MetricKind::Counter => (format!("eeg_{}_total", f.name), "counter"),
            MetricKind::Gauge => (format!("eeg_{}", f.name), "gauge"),
        };
        let _ = writeln!(out, "# HELP {name} {}", f.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {}", f.value);
    });
    let Gauges {
        assigned,
        lag,
        connected,
        down_s,
        outages,
        unconsumed,
    } = health.gauges();
    let _ = writeln!(
        out,
        "# HELP eeg_consumer_lag Messages of the raw topic on the broker not consumed yet.\n# TYPE eeg_consumer_lag gauge"
    );
    for (p, l) in &lag {
        let _ = writeln!(out, "eeg_consumer_lag{{partition=\"{p}\"}} {l}");
    }
    stats.latency.write(
        &mut out,
        "eeg_processing_seconds",
        "Time to decode, process and hand over the output of one raw message.",
    );
    stats.window_latency.write(&mut out);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    metric(
        "eeg_assigned_partitions",
        "gauge",
        "Partitions of the raw topic assigned to this instance.",
        assigned,
    );
    metric(
        "eeg_unconsumed_partitions",
        "gauge",
        "Partitions of the raw topic with messages and no commit for a while, not assigned here.",
        unconsumed,
    );
    metric(
        "eeg_ready",
        "gauge",
        "1 when the service is ready.",
        u64::from(health.ready_with(stats).is_ok()),
    );
    metric(
        "eeg_broker_connected",
        "gauge",
        "1 when consuming with a broker reachable; 0 while starting or in a broker outage.",
        u64::from(connected),
    );
    metric(
        "eeg_broker_down_seconds",
        "gauge",
        "Seconds since every broker became unreachable; 0 when one is reachable.",
        down_s,
    );
    metric(
        "eeg_broker_outages_total",
        "counter",
        "Times every broker became unreachable.",
        outages,
    );
    if let Some(cache) = &stats.cache {
        cache.metrics(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn metrics_are_prometheus_text() {
        let stats = Stats::default();
        stats
            .transport
            .messages_consumed
            .store(7, Ordering::Relaxed);
        stats.latency.observe(std::time::Duration::from_micros(70));
        stats.latency.observe(std::time::Duration::from_millis(3));
        let h = Health::default();
        h.assign(&[0, 2]);
        h.set_lag(2, 41);
        h.set_lag(1, 5); // not assigned: ignored
        let text = render(&stats, &h);
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "));
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                value.parse::<f64>().unwrap();
            }
        }
        assert!(text.contains("\neeg_messages_consumed_total 7\n"));
        assert!(text.contains("\neeg_assigned_partitions 2\n"));
        assert!(text.contains("\neeg_ready 0\n"));
        assert!(text.contains("\neeg_consumer_lag{partition=\"2\"} 41\n"));
        assert!(!text.contains("partition=\"1\""));
        // Cumulative buckets: 70 µs falls in le=0.0001, 3 ms in le=0.005.
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"0.00005\"} 0\n"));
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"0.0025\"} 1\n"));
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("\neeg_processing_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("\neeg_processing_seconds_count 2\n"));
        assert!(text.contains("\neeg_processing_seconds_sum 0.00307\n"));
    }

    #[test]
    fn window_latencies_are_one_histogram_with_a_label_per_starting_point() {
        let stats = Stats::default();
        let now_ms = 1_800_000_000_000;
        let lat = &stats.window_latency;
        // 40 ms behind the window's end; consumed more than 3 s ago.
        let long_ago = std::time::Instant::now()
            .checked_sub(std::time::Duration::from_secs(3))
            .unwrap();
        lat.observe(now_ms - 40, Some(long_ago), now_ms);
        // A device clock 2 s fast counts as 0; no consume time (nothing observed for it).
        lat.observe(now_ms + 2_000, None, now_ms);
        let text = render(&stats, &Health::default());
        let name = "eeg_window_latency_seconds";
        assert_eq!(
            text.matches(&format!("# TYPE {name} histogram\n")).count(),
            1
        );
        for (series, count) in [
            ("since=\"window_end\",le=\"0.001\"", 1),
            ("since=\"window_end\",le=\"0.025\"", 1),
            ("since=\"window_end\",le=\"0.05\"", 2),
            ("since=\"window_end\",le=\"+Inf\"", 2),
            ("since=\"consume\",le=\"2.5\"", 0),
            ("since=\"consume\",le=\"+Inf\"", 1),
        ] {
            assert!(
                text.contains(&format!("\n{name}_bucket{{{series}}} {count}\n")),
                "{series} {count}:\n{text}"
            );
        }
        assert!(text.contains(&format!("\n{name}_count{{since=\"window_end\"}} 2\n")));
        assert!(text.contains(&format!("\n{name}_sum{{since=\"window_end\"}} 0.04\n")));
        assert!(text.contains(&format!("\n{name}_count{{since=\"consume\"}} 1\n")));
        let consume_sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_sum{{since=\"consume\"}} ")))
            .unwrap()
            .parse()
            .unwrap();
        assert!(consume_sum >= 3.0, "{consume_sum}");
    }

    #[test]
    fn a_broker_outage_shows_while_the_service_stays_ready() {
        use crate::health::Phase;
        use eeg_kafka::client_log::BrokerObserver;
        let (stats, h) = (Stats::default(), Health::default());
        h.set_phase(Phase::Consuming);
        h.broker_down("all brokers down: b:9092/1: Connection refused");
        h.broker_down("all brokers down: later");
        let text = render(&stats, &h);
        assert!(text.contains("\neeg_broker_connected 0\n"), "{text}");
        assert!(text.contains("\neeg_broker_outages_total 1\n"), "{text}");
        assert!(text.contains("\neeg_ready 1\n"), "{text}");
        h.broker_up();
        h.broker_down("all brokers down: again");
        h.broker_up();
        let text = render(&stats, &h);
        assert!(text.contains("\neeg_broker_connected 1\n"), "{text}");
        assert!(text.contains("\neeg_broker_down_seconds 0\n"), "{text}");
        assert!(text.contains("\neeg_broker_outages_total 2\n"), "{text}");
    }
}
