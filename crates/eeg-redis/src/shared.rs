//! What the service's side of the cache (which queues) and the writer thread (which sends)
//! share: the bounded queue, the connection state and the failures seen, logged once per
//! cause and outage.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use crate::cause::Cause;
use crate::config::{RedisConfig, redacted};
use crate::keys::Keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    Connecting = 0,
    Up = 1,
    Down = 2,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// One record to mirror.
#[derive(Debug)]
pub(crate) enum Update {
    Window(Vec<u8>),
    Trigger(Vec<u8>),
    /// An epoch record and its session (the record's key: nothing else of it is needed).
    Epoch {
        session_id: String,
        record: Vec<u8>,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Failure {
    /// The causes logged since Redis last answered: each is logged once per outage, however
    /// often it recurs or alternates with another.
    pub(crate) logged: std::collections::BTreeSet<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at_ms: Option<u64>,
    pub(crate) down_since: Option<(Instant, u64)>,
}

/// What the service and the writer share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: RedisConfig,
    pub(crate) target: String,
    pub(crate) keys: Keys,
    pub(crate) queue: Mutex<VecDeque<Update>>,
    /// A record was queued.
    pub(crate) wake: Notify,
    /// [`RedisCache::shutdown`] was called: ends a retry wait, which records do not.
    pub(crate) stop: Notify,
    pub(crate) stopping: AtomicBool,
    pub(crate) state: AtomicU8,
    pub(crate) failure: Mutex<Failure>,
    pub(crate) written: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: RedisConfig, keys: Keys) -> Shared {
        Shared {
            target: redacted(&config.url),
            keys,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            stop: Notify::new(),
            stopping: false.into(),
            state: AtomicU8::new(State::Connecting as u8),
            failure: Mutex::new(Failure::default()),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            config,
        }
    }

    pub(crate) fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            1 => State::Up,
            2 => State::Down,
            _ => State::Connecting,
        }
    }

    pub(crate) fn push(&self, update: Update) {
        {
            let mut q = self.queue.lock().expect("redis queue lock");
            if q.len() >= self.config.queue {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(update);
        }
        self.wake.notify_one();
    }

    /// Redis answered: logs the recovery once after a failure.
    pub(crate) fn up(&self) {
        let was = self.state.swap(State::Up as u8, Ordering::AcqRel);
        let mut f = self.failure.lock().expect("redis failure lock");
        let had_failed = !f.logged.is_empty();
        f.logged.clear();
        if had_failed || was == State::Down as u8 {
            let down = f
                .down_since
                .map_or(0.0, |(at, _)| at.elapsed().as_secs_f64());
            tracing::info!("redis {}: writing again (down {down:.1} s)", self.target);
        } else if was == State::Connecting as u8 {
            tracing::info!("redis {}: connected", self.target);
        }
        f.down_since = None;
    }

    /// A failure, logged once per distinct cause.
    pub(crate) fn failed(&self, cause: Cause) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.state.store(State::Down as u8, Ordering::Release);
        let mut f = self.failure.lock().expect("redis failure lock");
        let now = unix_ms();
        if f.down_since.is_none() {
            f.down_since = Some((Instant::now(), now));
        }
        f.last_error_at_ms = Some(now);
        let line = cause.to_string();
        if !f.logged.contains(&line) {
            tracing::error!(
                "redis {}: {line}; the service goes on without it (updates dropped and counted)",
                self.target
            );
            f.logged.insert(line.clone());
        }
        f.last_error = Some(line);
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
