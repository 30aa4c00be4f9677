//! The Redis side of eeg-pipeline: for apps that must not read Kafka, the latest record of
//! every session under one key, each window on a pub/sub channel, and trigger events in a
//! capped stream (ElastiCache, cluster mode or not, TLS or not).
//!
//! Redis is a cache of what Kafka holds, never a source of truth. The service hands each
//! record over without waiting ([`RedisCache::processed`] only queues it); a writer thread
//! sends the queue in pipelines. When Redis is slow or down the queue stays bounded: the
//! oldest updates are dropped and counted, and the next window brings the cache up to date.
//! Offsets and delivery do not depend on anything here.
//!
//! Writes are monotonic in sample time: the latest key and the live channel move only to a
//! window that ends later than the one they hold, so windows processed again after a restart
//! or a rebalance (which Kafka receives again, identical) neither turn the latest key back
//! nor reach subscribers twice; a trigger event already in its stream is not added again.

mod cause;
mod config;
mod keys;
mod shared;
mod writer;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::IntoConnectionInfo;

pub use config::{ConfigError, RedisConfig, redacted};
pub use keys::{Keys, slot};

use config::read_ca;
use shared::{Shared, State, Update};

/// Makes ring the process's TLS crypto provider, unless one is set already. rustls picks a
/// provider by itself only when it was built with exactly one, and a build with MSK IAM also
/// has the AWS SDK's; a TLS client made before this would panic. Call it before making a
/// Redis client of your own (tests do).
pub fn use_ring_for_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The Redis cache of a running service. Cloning the `Arc` shares it.
#[derive(Debug)]
pub struct RedisCache {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl RedisCache {
    /// Checks the settings and starts the writer thread, which connects in the background:
    /// Redis being down or slow never delays the service's start.
    pub fn start(config: RedisConfig) -> Result<Arc<RedisCache>, ConfigError> {
        use_ring_for_tls();
        let keys = Keys::new(&config.key_prefix)?;
        if config.queue == 0 {
            return Err(ConfigError::Zero {
                name: "REDIS_QUEUE",
            });
        }
        if config.ttl.is_zero() {
            return Err(ConfigError::Zero {
                name: "REDIS_TTL_S",
            });
        }
        let target = redacted(&config.url);
        let url_error = |reason: String| ConfigError::Url {
            url: target.clone(),
            reason,
        };
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| url_error(e.to_string()))?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &config.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &config.password {
            settings = settings.set_password(p);
        }
        let info = info.set_redis_settings(settings);
        let ca = match &config.tls_ca_file {
            None => None,
            Some(path) => Some(read_ca(path, &info)?),
        };
        let client =
            writer::Client::new(info, &config, ca).map_err(|e| match &config.tls_ca_file {
                // The URL was parsed above: what building the client still checks is the CA.
                Some(path) => ConfigError::CaFile {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                },
                None => url_error(e.to_string()),
            })?;
        let shared = Arc::new(Shared::new(config, keys));
        let for_writer = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("redis".into())
            .spawn(move || writer::run(for_writer, client))
            .map_err(|e| ConfigError::Url {
                url: shared.target.clone(),
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(Arc::new(RedisCache {
            shared,
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Sends what is queued (for at most `limit`), then stops the writer. Called once the
    /// service has stopped, so that the cache ends with the last records published.
    pub fn shutdown(&self, limit: Duration) {
        let s = &self.shared;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline
            && s.state() == State::Up
            && !s.queue.lock().expect("redis queue lock").is_empty()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        s.stopping.store(true, Ordering::Release);
        s.wake.notify_one();
        s.stop.notify_one();
        if let Some(w) = self.writer.lock().expect("redis writer lock").take() {
            let _ = w.join();
        }
        let left = s.queue.lock().expect("redis queue lock").len() as u64;
        s.dropped.fetch_add(left, Ordering::Relaxed);
    }

    /// Updates written to Redis so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Updates dropped so far (queue full, Redis down or refusing).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl eeg_session::OutputObserver for RedisCache {
    fn processed(&self, _partition: i32, _key: &[u8], record: &[u8]) {
        self.shared.push(Update::Window(record.to_vec()));
    }

    fn trigger(&self, _partition: i32, _key: &[u8], record: &[u8]) {
        self.shared.push(Update::Trigger(record.to_vec()));
    }

    fn epoch(&self, _partition: i32, key: &[u8], record: &[u8]) {
        self.shared.push(Update::Epoch {
            session_id: String::from_utf8_lossy(key).into_owned(),
            record: record.to_vec(),
        });
    }
}

impl eeg_session::OutputCache for RedisCache {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn detail(&self) -> serde_json::Value {
        let s = &self.shared;
        let f = s.failure.lock().expect("redis failure lock");
        serde_json::json!({
            "state": s.state().name(),
            "target": s.target,
            "cluster": s.config.cluster,
            "required": s.config.required,
            "down_since_ms": f.down_since.map(|(_, ms)| ms),
            "last_error": f.last_error,
            "last_error_at_ms": f.last_error_at_ms,
            "queue": s.queue.lock().expect("redis queue lock").len(),
            "queue_capacity": s.config.queue,
            "written": s.written.load(Ordering::Relaxed),
            "dropped": s.dropped.load(Ordering::Relaxed),
            "errors": s.errors.load(Ordering::Relaxed),
        })
    }

    fn not_ready(&self) -> Option<String> {
        let s = &self.shared;
        if !s.config.required || s.state() == State::Up {
            return None;
        }
        let why = s
            .failure
            .lock()
            .expect("redis failure lock")
            .last_error
            .clone()
            .unwrap_or_else(|| "not connected yet".into());
        Some(format!("redis {} (REDIS_REQUIRED=true): {why}", s.target))
    }

    fn metrics(&self, out: &mut String) {
        let s = &self.shared;
        let queued = s.queue.lock().expect("redis queue lock").len() as u64;
        for (name, kind, help, value) in [
            (
                "eeg_redis_up",
                "gauge",
                "1 when the last write to Redis succeeded.",
                u64::from(s.state() == State::Up),
            ),
            (
                "eeg_redis_written_total",
                "counter",
                "Records and trigger events written to Redis.",
                s.written.load(Ordering::Relaxed),
            ),
            (
                "eeg_redis_dropped_total",
                "counter",
                "Records and trigger events not written to Redis (queue full, Redis down or refusing).",
                s.dropped.load(Ordering::Relaxed),
            ),
            (
                "eeg_redis_errors_total",
                "counter",
                "Failed connections and writes to Redis.",
                s.errors.load(Ordering::Relaxed),
            ),
            (
                "eeg_redis_queue",
                "gauge",
                "Updates waiting for Redis.",
                queued,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redacted("rediss://app:s3cret@host:6379"),
            "rediss://app:***@host:6379"
        );
        assert_eq!(redacted("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redacted("redis://h:1"), "redis://h:1");
        assert_eq!(redacted("redis://user@h:1"), "redis://user@h:1");
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let bad = |c: RedisConfig| RedisCache::start(c).unwrap_err().to_string();
        assert!(bad(RedisConfig::new("http://h:1")).starts_with("REDIS_URL http://h:1: "));
        let mut c = RedisConfig::new("redis://:pw@h:1");
        c.key_prefix = "a{b}".into();
        assert!(bad(c).starts_with("REDIS_KEY_PREFIX "));
        let mut c = RedisConfig::new("redis://h:1");
        c.queue = 0;
        assert_eq!(bad(c), "REDIS_QUEUE must be at least 1");
    }

    #[test]
    fn a_ca_file_that_cannot_work_is_named() {
        let dir = std::env::temp_dir().join(format!("eeg-redis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = |url: &str, pem: Option<&str>| {
            let path = dir.join("ca.pem");
            match pem {
                Some(p) => std::fs::write(&path, p).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            let mut c = RedisConfig::new(url);
            c.tls_ca_file = Some(path.clone());
            let e = RedisCache::start(c).unwrap_err().to_string();
            let prefix = format!("REDIS_TLS_CA_FILE {}: ", path.display());
            assert!(e.starts_with(&prefix), "{e}");
            e[prefix.len()..].to_string()
        };
        assert_eq!(
            bad("redis://h:1", Some("")),
            "set, but REDIS_URL is redis:// (no TLS); use rediss://"
        );
        assert!(bad("rediss://h:1", None).starts_with("cannot read it: "));
        assert_eq!(
            bad("rediss://h:1", Some("not a certificate")),
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
        let broken = "-----BEGIN CERTIFICATE-----\nbm90IERFUg==\n-----END CERTIFICATE-----\n";
        assert!(!bad("rediss://h:1", Some(broken)).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_drops_its_oldest_update() {
        let mut c = RedisConfig::new("redis://127.0.0.1:1");
        c.queue = 2;
        let s = Shared::new(c, Keys::new("eeg:").unwrap());
        for i in 0..5u8 {
            s.push(Update::Window(vec![i]));
        }
        let q = s.queue.lock().unwrap();
        let kept: Vec<u8> = q
            .iter()
            .map(|u| match u {
                Update::Window(v) => v[0],
                Update::Trigger(_) | Update::Epoch { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(kept, [3, 4]);
        assert_eq!(s.dropped.load(Ordering::Relaxed), 3);
    }
}
