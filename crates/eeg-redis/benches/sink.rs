//! What the Redis cache costs per window: on the Kafka path (handing a record over, which
//! only queues it), and for the writer (records through pipelines into a real Redis).
//!
//! Run: `cargo bench -p eeg-redis --bench sink`. The second benchmark needs a Redis at
//! `EEG_TEST_REDIS_URL` (e.g. `scripts/redis start`); without one it is left out, and says so.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eeg_redis::{RedisCache, RedisConfig};
use eeg_session::OutputObserver;

/// An `eeg.processed/1` record of 8 channels and 5 bands, as the service writes it.
fn record(session: &str, window: u64) -> Vec<u8> {
    let bands = ["delta", "theta", "alpha", "beta", "gamma"];
    let powers: Vec<String> = bands
        .iter()
        .map(|b| format!("\"{b}\":12.345678901234"))
        .collect();
    let rel: Vec<String> = bands
        .iter()
        .map(|b| format!("\"{b}\":0.2000000000001"))
        .collect();
    let channel = |c: usize| {
        format!(
            "{{\"name\":\"ch{c}\",\"band_power\":{{{}}},\"relative_power\":{{{}}},\"total_power\":61.72839450617,\"quality\":{{\"rms_uv\":11.1,\"ptp_uv\":60.5,\"line_noise_ratio\":0.01,\"flatline\":false,\"railed\":false,\"artifact\":false,\"good\":true}}}}",
            powers.join(","),
            rel.join(",")
        )
    };
    let channels: Vec<String> = (0..8).map(channel).collect();
    format!(
        "{{\"schema\":\"eeg.processed/1\",\"session_id\":\"{session}\",\"device_id\":\"bench\",\"user_id\":\"u-1\",\"window_index\":{window},\"start_ms\":{},\"end_ms\":{},\"sample_rate_hz\":250.0,\"settling\":false,\"channels\":[{}],\"indices\":{{\"engagement\":0.5,\"theta_beta\":1.2,\"alpha_theta\":0.9}}}}",
        1_700_000_000_000 + window * 2000,
        1_700_000_004_000 + window * 2000,
        channels.join(",")
    )
    .into_bytes()
}

fn hand_over(c: &mut Criterion) {
    // Nothing listens there: the queue stays full and drops its oldest, the most work a
    // hand-over ever does.
    let mut config = RedisConfig::new("redis://127.0.0.1:1");
    config.queue = 10_000;
    let cache = RedisCache::start(config).expect("cache");
    let rec = record("s-bench", 1);
    let mut g = c.benchmark_group("redis");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hand_over_8ch_window", |b| {
        b.iter(|| cache.processed(0, black_box(b"s-bench"), black_box(&rec)))
    });
    g.finish();
    cache.shutdown(Duration::ZERO);
}

fn write(c: &mut Criterion) {
    let Ok(url) = std::env::var("EEG_TEST_REDIS_URL") else {
        eprintln!("redis/write_8ch_windows left out: EEG_TEST_REDIS_URL is not set");
        return;
    };
    let mut config = RedisConfig::new(url);
    config.key_prefix = format!("bench-{}:", std::process::id());
    config.ttl = Duration::from_secs(60);
    config.queue = 100_000;
    let cache = RedisCache::start(config).expect("cache");
    // 100 sessions, windows in turn, as a busy partition hands them over.
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u64)
        .map(|i| {
            let s = format!("s-{}", i % 100);
            (s.clone().into_bytes(), record(&s, i / 100))
        })
        .collect();
    let mut g = c.benchmark_group("redis");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.sample_size(10);
    g.bench_function("write_1000_8ch_windows", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = cache.written();
                let t = Instant::now();
                for (k, r) in &records {
                    cache.processed(0, k, r);
                }
                while cache.written() < before + records.len() as u64 {
                    std::thread::yield_now();
                }
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    cache.shutdown(Duration::from_secs(5));
}

criterion_group!(benches, hand_over, write);
criterion_main!(benches);
