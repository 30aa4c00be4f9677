//! What the `/ui` page shows, served as `/sessions` and `/sessions/trend`: a person watching
//! the service sees what it publishes without reading Kafka.
//!
//! Per active session: its latest `eeg.processed/1` record, kept as the bytes that were
//! published and served as they are (so bands stay in the config's order), and, for at most
//! [`LiveSessions::TREND_SESSIONS`] sessions at a time, a trend: the numbers of its last
//! windows and its last trigger events, numbered so that a page asks only for what it has
//! not seen yet.
//!
//! Memory is bounded whatever the number of sessions and channels:
//! - at most [`LiveSessions::CAPACITY`] sessions and at most [`LiveSessions::LATEST_BYTES`] of
//!   latest records (the least recently updated sessions go first): 64 MiB holds 10,000
//!   sessions of 4 channels (2.5 KB a record at five bands), about 1,900 of 64 (35 KB);
//! - at most [`LiveSessions::TREND_SESSIONS`] trends, each with at most
//!   [`LiveSessions::TREND_WINDOWS`] windows and at most [`LiveSessions::TREND_BYTES`] of
//!   numbers (a window of more channels than fit gets fewer windows: at the limits of a raw
//!   batch, 1,024 channels and 32 bands, 3 windows of 271 KB), the names of at most 1,024
//!   channels of 64 bytes (88 KiB with their headers) and [`LiveSessions::TREND_EVENTS`]
//!   events of at most 4 KiB: 64 × (1 MiB + 88 KiB + 81 KiB) = 75 MiB in the worst case,
//!   61 MB for 64 sessions of 64 channels, 4.5 MB for 64 sessions of 4 channels.
//!
//! It is a view, never a source of truth: nothing here takes part in delivery.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use eeg_schema::{OrderedBands, ProcessedRecordOwned, decode_processed};

/// The sessions' latest records and trends, updated as outputs are handed over.
#[derive(Debug)]
pub struct LiveSessions {
    enabled: bool,
    idle: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// The bytes the entries' latest records take.
    latest_bytes: usize,
    /// The sessions that have a trend: at most `TREND_SESSIONS`, each also in `entries`.
    trends: HashMap<String, Trend>,
    /// The number of the last window or event put in any trend: numbers grow over the
    /// registry's life and are never given twice, so a page's `since` stays valid across a
    /// trend's reset or a session losing and regaining its trend.
    numbered: u64,
    /// No trend can have gone stale before this instant (a lower bound), so a session without
    /// a trend does not look for one to take on every record.
    no_stale_trend_before: Option<Instant>,
    /// Epochs of sessions with no trend yet (an epoch can end before the session's first
    /// window), for at most `TREND_SESSIONS` sessions, oldest first: the trend takes them
    /// when it starts.
    early_epochs: VecDeque<(String, Numbered)>,
}

#[derive(Debug)]
struct Entry {
    partition: i32,
    windows: u64,
    first: Instant,
    updated: Instant,
    latest: Vec<u8>,
}

impl Default for LiveSessions {
    fn default() -> Self {
        LiveSessions::new(true, Duration::from_secs(300))
    }
}

impl LiveSessions {
    /// Most sessions kept.
    pub const CAPACITY: usize = 10_000;
    /// Most bytes of latest records kept, all sessions together; beyond, the least recently
    /// updated sessions go until a tenth of it is free (so that a registry over its budget
    /// sorts its sessions once in a while, not at every record).
    pub const LATEST_BYTES: usize = 64 << 20;
    /// Most sessions with a trend at a time: five pages of the `/ui` page's twelve.
    pub const TREND_SESSIONS: usize = 64;
    /// Most windows in a trend: 5 minutes at the default hop of 1 s, what a person watching
    /// looks back on (a change of state, an artifact that came and went), small enough to
    /// draw every second.
    pub const TREND_WINDOWS: usize = 300;
    /// Most bytes of numbers in one trend: 300 windows of 64 channels at five bands fit
    /// (3.2 KB a window); a session of more channels or bands keeps fewer windows.
    pub const TREND_BYTES: usize = 1 << 20;
    /// Trigger events kept per trend, the latest.
    pub const TREND_EVENTS: usize = 20;
    /// A trend whose session published nothing for this long goes to a session without one
    /// that asks for it (when every trend is taken).
    pub const TREND_STALE: Duration = Duration::from_secs(10);
    /// Larger trigger events are not kept (the service's are below 1 KiB: ids of at most
    /// 256 bytes, rule ids of at most 64).
    const MAX_EVENT_BYTES: usize = 4096;

    /// A registry that keeps sessions updated within `idle`; a disabled one keeps nothing.
    pub fn new(enabled: bool, idle: Duration) -> LiveSessions {
        LiveSessions {
            enabled,
            idle,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("live sessions lock")
    }

    /// Notes `record`, the JSON of the window just sent for session `key` of `partition`.
    pub fn record(&self, partition: i32, key: &[u8], record: &[u8]) {
        self.record_at(partition, key, record, Instant::now());
    }

    fn record_at(&self, partition: i32, key: &[u8], record: &[u8], now: Instant) {
        if !self.enabled {
            return;
        }
        let Ok(id) = std::str::from_utf8(key) else {
            return;
        };
        let trended = {
            let mut inner = self.lock();
            inner.note(id, partition, record, now, self.idle);
            inner.trend_for(id, now)
        };
        if !trended {
            return;
        }
        // Reading the record's numbers takes tens of µs at 64 channels: not under the lock
        // the partitions' workers and the page share. A session's records come from one
        // worker, in order, so nothing of this session changes meanwhile but by this call.
        let Some(sample) = Sample::read(record) else {
            return;
        };
        let mut inner = self.lock();
        let Inner {
            trends, numbered, ..
        } = &mut *inner;
        if let Some(t) = trends.get_mut(id)
            && t.push(&sample, *numbered + 1)
        {
            *numbered += 1;
        }
    }

    /// Notes `event`, an `analytics.trigger/1` event of session `key`, in the session's trend
    /// (a session without one keeps none: its trigger events are on Kafka).
    pub fn trigger(&self, key: &[u8], event: &[u8]) {
        if !self.enabled || event.len() > Self::MAX_EVENT_BYTES {
            return;
        }
        let Ok(id) = std::str::from_utf8(key) else {
            return;
        };
        let mut inner = self.lock();
        let Inner {
            trends, numbered, ..
        } = &mut *inner;
        if let Some(t) = trends.get_mut(id) {
            *numbered += 1;
            if t.events.len() == Self::TREND_EVENTS {
                t.events.pop_front();
            }
            t.events.push_back((*numbered, event.into()));
        }
    }

    /// Notes an `eeg.epoch/1` record of session `key` in the session's trend, as a summary
    /// (the event, the epoch's status and why, its onset and bounds: what a person reads in
    /// a list of the last events); a session without a trend keeps none.
    pub fn epoch(&self, key: &[u8], record: &[u8]) {
        if !self.enabled {
            return;
        }
        let Ok(id) = std::str::from_utf8(key) else {
            return;
        };
        let Some(summary) = epoch_summary(record) else {
            return;
        };
        let mut inner = self.lock();
        let Inner {
            trends,
            numbered,
            early_epochs,
            ..
        } = &mut *inner;
        let epochs = match trends.get_mut(id) {
            Some(t) => &mut t.epochs,
            None => {
                let at = match early_epochs.iter().position(|(k, _)| k == id) {
                    Some(at) => at,
                    None => {
                        if early_epochs.len() == Self::TREND_SESSIONS {
                            early_epochs.pop_front();
                        }
                        early_epochs.push_back((id.to_string(), VecDeque::new()));
                        early_epochs.len() - 1
                    }
                };
                &mut early_epochs[at].1
            }
        };
        *numbered += 1;
        if epochs.len() == Self::TREND_EVENTS {
            epochs.pop_front();
        }
        epochs.push_back((*numbered, summary.into()));
    }

    /// The `/sessions` JSON: the sessions updated within the idle time, most recently started
    /// first, `limit` of them from `offset`, each with its latest record (unless `latest` is
    /// false) as it was published.
    pub fn page(&self, offset: usize, limit: usize, latest: bool) -> Vec<u8> {
        self.page_at(offset, limit, latest, Instant::now())
    }

    fn page_at(&self, offset: usize, limit: usize, latest: bool, now: Instant) -> Vec<u8> {
        let mut inner = self.lock();
        inner.prune(now, self.idle);
        let mut active: Vec<(&String, &Entry)> = inner.entries.iter().collect();
        // Most recently started first; ties (same instant) by id. Not by update: every active
        // session updates every hop, and a page would reorder its sessions every second.
        active.sort_by(|a, b| b.1.first.cmp(&a.1.first).then(a.0.cmp(b.0)));
        let mut out = Vec::with_capacity(256);
        let _ = write!(
            out,
            "{{\"total\":{},\"offset\":{offset},\"limit\":{limit},\"idle_s\":",
            active.len()
        );
        number(&mut out, self.idle.as_secs_f64());
        out.extend_from_slice(b",\"sessions\":[");
        for (i, (id, e)) in active.iter().skip(offset).take(limit).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"session_id\":");
            string(&mut out, id);
            let _ = write!(
                out,
                ",\"partition\":{},\"windows\":{},\"active_s\":",
                e.partition, e.windows
            );
            number(&mut out, now.duration_since(e.first).as_secs_f64());
            out.extend_from_slice(b",\"last_seen_s\":");
            number(&mut out, now.duration_since(e.updated).as_secs_f64());
            let _ = write!(out, ",\"trend\":{}", inner.trends.contains_key(id.as_str()));
            if latest {
                // The record as it was published, byte for byte.
                out.extend_from_slice(b",\"latest\":");
                out.extend_from_slice(&e.latest);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// The `/sessions/trend` JSON for `(session id, since)` pairs: per session still active,
    /// its trend's windows and trigger events numbered above `since` (0: all of them), or,
    /// for a session without a trend, its latest record.
    pub fn trend(&self, asks: &[(String, u64)]) -> Vec<u8> {
        self.trend_at(asks, Instant::now())
    }

    fn trend_at(&self, asks: &[(String, u64)], now: Instant) -> Vec<u8> {
        // Copied under the lock (a few MB at most), written out after it.
        let answers: Vec<Answer> = {
            let mut inner = self.lock();
            inner.prune(now, self.idle);
            asks.iter()
                .filter_map(|(id, since)| {
                    let e = inner.entries.get(id.as_str())?;
                    Some(match inner.trends.get(id.as_str()) {
                        Some(t) => {
                            Answer::Trend(id.clone(), Box::new(t.since(*since, inner.numbered)))
                        }
                        None => Answer::Latest(id.clone(), e.latest.clone()),
                    })
                })
                .collect()
        };
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"sessions\":[");
        for (i, a) in answers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match a {
                Answer::Latest(id, latest) => {
                    out.extend_from_slice(b"{\"session_id\":");
                    string(&mut out, id);
                    out.extend_from_slice(b",\"trend\":false,\"latest\":");
                    out.extend_from_slice(latest);
                    out.push(b'}');
                }
                Answer::Trend(id, t) => t.write(id, &mut out),
            }
        }
        out.extend_from_slice(b"]}");
        out
    }
}

impl eeg_session::OutputObserver for LiveSessions {
    fn processed(&self, partition: i32, key: &[u8], record: &[u8]) {
        self.record(partition, key, record);
    }

    fn epoch(&self, _partition: i32, key: &[u8], record: &[u8]) {
        self.epoch(key, record);
    }

    fn trigger(&self, _partition: i32, key: &[u8], record: &[u8]) {
        LiveSessions::trigger(self, key, record);
    }
}

impl Inner {
    /// Keeps `record` as the latest of session `id`, making room for a new session.
    fn note(&mut self, id: &str, partition: i32, record: &[u8], now: Instant, idle: Duration) {
        if let Some(e) = self.entries.get_mut(id) {
            e.partition = partition;
            e.windows += 1;
            e.updated = now;
            self.latest_bytes -= e.latest.capacity();
            e.latest.clear();
            e.latest.extend_from_slice(record);
            self.latest_bytes += e.latest.capacity();
        } else {
            if self.entries.len() >= LiveSessions::CAPACITY {
                self.prune(now, idle);
                if self.entries.len() >= LiveSessions::CAPACITY
                    && let Some(oldest) = self
                        .entries
                        .iter()
                        .min_by_key(|(_, e)| e.updated)
                        .map(|(k, _)| k.clone())
                {
                    self.remove(&oldest);
                }
            }
            self.latest_bytes += record.len();
            self.entries.insert(
                id.to_string(),
                Entry {
                    partition,
                    windows: 1,
                    first: now,
                    updated: now,
                    latest: record.to_vec(),
                },
            );
        }
        if self.latest_bytes > LiveSessions::LATEST_BYTES {
            self.prune(now, idle);
            self.shed(id);
        }
    }

    /// Drops the least recently updated sessions but `keep` until the latest records take a
    /// tenth less than their budget.
    fn shed(&mut self, keep: &str) {
        let goal = LiveSessions::LATEST_BYTES - LiveSessions::LATEST_BYTES / 10;
        if self.latest_bytes <= goal {
            return;
        }
        let mut order: Vec<(Instant, String)> = self
            .entries
            .iter()
            .filter(|(k, _)| k.as_str() != keep)
            .map(|(k, e)| (e.updated, k.clone()))
            .collect();
        order.sort_unstable();
        for (_, id) in order {
            if self.latest_bytes <= goal {
                break;
            }
            self.remove(&id);
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(e) = self.entries.remove(id) {
            self.latest_bytes -= e.latest.capacity();
        }
        self.trends.remove(id);
    }

    /// Drops the sessions not updated within `idle`, and their trends.
    fn prune(&mut self, now: Instant, idle: Duration) {
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let keep = now.duration_since(e.updated) < idle;
            if !keep {
                freed += e.latest.capacity();
            }
            keep
        });
        self.latest_bytes -= freed;
        let entries = &self.entries;
        self.trends.retain(|id, _| entries.contains_key(id));
    }

    /// Whether session `id` has a trend, giving it one when one is free or stale.
    fn trend_for(&mut self, id: &str, now: Instant) -> bool {
        if let Some(t) = self.trends.get_mut(id) {
            t.updated = now;
            return true;
        }
        if self.trends.len() >= LiveSessions::TREND_SESSIONS {
            if self.no_stale_trend_before.is_some_and(|t| now < t) {
                return false;
            }
            let Some((stalest, updated)) = self
                .trends
                .iter()
                .min_by_key(|(_, t)| t.updated)
                .map(|(k, t)| (k.clone(), t.updated))
            else {
                return false;
            };
            if now.duration_since(updated) < LiveSessions::TREND_STALE {
                // The other trends were updated later than this one: none goes stale sooner.
                self.no_stale_trend_before = Some(updated + LiveSessions::TREND_STALE);
                return false;
            }
            self.trends.remove(&stalest);
        }
        let mut trend = Trend::new(now);
        if let Some(at) = self.early_epochs.iter().position(|(k, _)| k == id)
            && let Some((_, epochs)) = self.early_epochs.remove(at)
        {
            trend.epochs = epochs;
        }
        self.trends.insert(id.to_string(), trend);
        true
    }
}

/// JSON texts with their numbers, oldest first.
type Numbered = VecDeque<(u64, Box<[u8]>)>;

/// Bits of a channel's quality in a trend.
const FLATLINE: u8 = 1;
const RAILED: u8 = 2;
const ARTIFACT: u8 = 4;
const GOOD: u8 = 8;

/// Numbers of a window before the channels' (`engagement`, `theta_beta`, `alpha_theta`), and
/// of each channel before its bands' (`total_power`, `rms_uv`).
const INDICES: usize = 3;
const PER_CHANNEL: usize = 2;

/// One window's numbers, read from its record.
#[derive(Debug)]
struct Sample {
    device_id: String,
    channels: Vec<String>,
    bands: Vec<String>,
    window_index: u64,
    end_ms: i64,
    settling: bool,
    /// Per channel, the quality bits.
    quality: Vec<u8>,
    /// The indices, then per channel `total_power`, `rms_uv`, band powers, relative powers.
    values: Vec<f32>,
}

impl Sample {
    /// The numbers of `record`; `None` for what is not an `eeg.processed/1` record with the
    /// same bands in every channel.
    fn read(record: &[u8]) -> Option<Sample> {
        let r: ProcessedRecordOwned = decode_processed(record).ok()?;
        let bands: Vec<String> = match r.channels.first() {
            Some(c) => c.band_power.names().map(str::to_string).collect(),
            None => Vec::new(),
        };
        let nb = bands.len();
        let mut values = Vec::with_capacity(INDICES + r.channels.len() * (PER_CHANNEL + 2 * nb));
        let index = |v: Option<f64>| v.map_or(f32::NAN, |v| v as f32);
        values.extend([
            index(r.indices.engagement),
            index(r.indices.theta_beta),
            index(r.indices.alpha_theta),
        ]);
        let mut quality = Vec::with_capacity(r.channels.len());
        for c in &r.channels {
            let same = |names: &OrderedBands| names.names().eq(bands.iter().map(String::as_str));
            if !same(&c.band_power) || !same(&c.relative_power) {
                return None;
            }
            values.push(c.total_power as f32);
            values.push(c.quality.rms_uv as f32);
            values.extend(c.band_power.values().map(|v| v as f32));
            values.extend(c.relative_power.values().map(|v| v as f32));
            let q = &c.quality;
            let bit = |on: bool, bit: u8| if on { bit } else { 0 };
            quality.push(
                bit(q.flatline, FLATLINE)
                    | bit(q.railed, RAILED)
                    | bit(q.artifact, ARTIFACT)
                    | bit(q.good, GOOD),
            );
        }
        Some(Sample {
            device_id: r.device_id,
            channels: r.channels.into_iter().map(|c| c.name).collect(),
            bands,
            window_index: r.window_index,
            end_ms: r.end_ms,
            settling: r.settling,
            quality,
            values,
        })
    }
}

/// A session's last windows (numbers only, in a ring of fixed size) and trigger events.
#[derive(Debug)]
struct Trend {
    updated: Instant,
    device_id: String,
    channels: Vec<String>,
    bands: Vec<String>,
    ring: Ring,
    events: Numbered,
    /// The last epochs' summaries ([`epoch_summary`]), numbered with the windows.
    epochs: Numbered,
}

impl Trend {
    fn new(now: Instant) -> Trend {
        Trend {
            updated: now,
            device_id: String::new(),
            channels: Vec::new(),
            bands: Vec::new(),
            ring: Ring::new(0, 0, 0),
            events: VecDeque::new(),
            epochs: VecDeque::new(),
        }
    }

    /// Adds `s` as window number `n`; false when it is not added: a copy of a window kept
    /// (a record published again after a recovery).
    fn push(&mut self, s: &Sample, n: u64) -> bool {
        self.device_id.clone_from(&s.device_id);
        if s.channels != self.channels || s.bands != self.bands {
            // New channels or bands (the session was reset): a new trend.
            self.channels.clone_from(&s.channels);
            self.bands.clone_from(&s.bands);
            let per_window = s.values.len();
            self.ring = Ring::new(
                Ring::capacity(per_window, s.quality.len()),
                per_window,
                s.quality.len(),
            );
        } else if self.ring.last_end_ms().is_some_and(|last| s.end_ms <= last) {
            if self.ring.has_end_ms(s.end_ms) {
                return false;
            }
            // Time went back: not this trend's continuation.
            self.ring.clear();
        }
        self.ring.push(n, s);
        true
    }

    /// What a page that has everything up to number `since` lacks.
    fn since(&self, since: u64, numbered: u64) -> TrendCopy {
        let from = self.ring.first_above(since);
        let len = self.ring.len;
        let mut w = Windows {
            n: Vec::with_capacity(len - from),
            window_index: Vec::with_capacity(len - from),
            end_ms: Vec::with_capacity(len - from),
            settling: Vec::with_capacity(len - from),
            quality: Vec::with_capacity((len - from) * self.ring.channels),
            values: Vec::with_capacity((len - from) * self.ring.stride),
        };
        for i in from..len {
            let p = self.ring.slot(i);
            w.n.push(self.ring.n[p]);
            w.window_index.push(self.ring.window_index[p]);
            w.end_ms.push(self.ring.end_ms[p]);
            w.settling.push(self.ring.settling[p]);
            let q = p * self.ring.channels;
            w.quality
                .extend_from_slice(&self.ring.quality[q..q + self.ring.channels]);
            let v = p * self.ring.stride;
            w.values
                .extend_from_slice(&self.ring.values[v..v + self.ring.stride]);
        }
        let newest = self
            .ring
            .len
            .checked_sub(1)
            .map(|i| self.ring.n[self.ring.slot(i)]);
        let last_event = self
            .events
            .back()
            .map(|e| e.0)
            .max(self.epochs.back().map(|e| e.0));
        TrendCopy {
            device_id: self.device_id.clone(),
            channels: self.channels.clone(),
            bands: self.bands.clone(),
            capacity: self.ring.cap,
            first: (len > 0).then(|| self.ring.n[self.ring.slot(0)]),
            // The trend's last number, or at least `since` (never a number not yet given).
            next: newest.max(last_event).unwrap_or(0).max(since.min(numbered)),
            windows: w,
            events: self
                .events
                .iter()
                .filter(|e| e.0 > since)
                .map(|(n, e)| (*n, e.to_vec()))
                .collect(),
            epochs: self
                .epochs
                .iter()
                .filter(|e| e.0 > since)
                .map(|(n, e)| (*n, e.to_vec()))
                .collect(),
        }
    }
}

/// A ring of the last `cap` windows, each `stride` numbers and `channels` quality bytes.
#[derive(Debug)]
struct Ring {
    cap: usize,
    stride: usize,
    channels: usize,
    /// Slot of the oldest window, and how many are kept.
    head: usize,
    len: usize,
    n: Vec<u64>,
    window_index: Vec<u64>,
    end_ms: Vec<i64>,
    settling: Vec<bool>,
    quality: Vec<u8>,
    values: Vec<f32>,
}

impl Ring {
    /// Windows of `stride` numbers and `channels` quality bytes that fit in
    /// [`LiveSessions::TREND_BYTES`]: at most `TREND_WINDOWS`, at least one.
    fn capacity(stride: usize, channels: usize) -> usize {
        let per_window = 8 + 8 + 8 + 1 + channels + 4 * stride;
        (LiveSessions::TREND_BYTES / per_window).clamp(1, LiveSessions::TREND_WINDOWS)
    }

    /// All the ring's memory is taken at once, so what a trend holds is its size from the
    /// start.
    fn new(cap: usize, stride: usize, channels: usize) -> Ring {
        Ring {
            cap,
            stride,
            channels,
            head: 0,
            len: 0,
            n: vec![0; cap],
            window_index: vec![0; cap],
            end_ms: vec![0; cap],
            settling: vec![false; cap],
            quality: vec![0; cap * channels],
            values: vec![0.0; cap * stride],
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The slot of the `i`th window kept, oldest first.
    fn slot(&self, i: usize) -> usize {
        (self.head + i) % self.cap
    }

    fn last_end_ms(&self) -> Option<i64> {
        self.len.checked_sub(1).map(|i| self.end_ms[self.slot(i)])
    }

    /// Whether a window kept ends at `end_ms` (windows are kept in order of their end).
    fn has_end_ms(&self, end_ms: i64) -> bool {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.end_ms[self.slot(mid)].cmp(&end_ms) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// The position of the first window numbered above `since` (numbers grow with position).
    fn first_above(&self, since: u64) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.n[self.slot(mid)] <= since {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Keeps `s` as window number `n`, in place of the oldest when full.
    fn push(&mut self, n: u64, s: &Sample) {
        let p = if self.len < self.cap {
            self.len += 1;
            self.slot(self.len - 1)
        } else {
            let p = self.head;
            self.head = (self.head + 1) % self.cap;
            p
        };
        self.n[p] = n;
        self.window_index[p] = s.window_index;
        self.end_ms[p] = s.end_ms;
        self.settling[p] = s.settling;
        self.quality[p * self.channels..(p + 1) * self.channels].copy_from_slice(&s.quality);
        self.values[p * self.stride..(p + 1) * self.stride].copy_from_slice(&s.values);
    }
}

/// What `/sessions/trend` answers for one session, copied out of the lock.
enum Answer {
    Trend(String, Box<TrendCopy>),
    Latest(String, Vec<u8>),
}

struct TrendCopy {
    device_id: String,
    channels: Vec<String>,
    bands: Vec<String>,
    capacity: usize,
    first: Option<u64>,
    next: u64,
    windows: Windows,
    events: Vec<(u64, Vec<u8>)>,
    epochs: Vec<(u64, Vec<u8>)>,
}

/// Windows in order, column by column.
struct Windows {
    n: Vec<u64>,
    window_index: Vec<u64>,
    end_ms: Vec<i64>,
    settling: Vec<bool>,
    quality: Vec<u8>,
    values: Vec<f32>,
}

impl TrendCopy {
    fn write(&self, id: &str, out: &mut Vec<u8>) {
        let (nc, nb) = (self.channels.len(), self.bands.len());
        let stride = INDICES + nc * (PER_CHANNEL + 2 * nb);
        out.extend_from_slice(b"{\"session_id\":");
        string(out, id);
        out.extend_from_slice(b",\"trend\":true,\"device_id\":");
        string(out, &self.device_id);
        out.extend_from_slice(b",\"channels\":");
        strings(out, &self.channels);
        out.extend_from_slice(b",\"bands\":");
        strings(out, &self.bands);
        let _ = write!(out, ",\"capacity\":{},\"first\":", self.capacity);
        match self.first {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.extend_from_slice(b"null"),
        }
        let _ = write!(out, ",\"next\":{},\"windows\":[", self.next);
        let w = &self.windows;
        for i in 0..w.n.len() {
            if i > 0 {
                out.push(b',');
            }
            let v = &w.values[i * stride..(i + 1) * stride];
            let _ = write!(
                out,
                "{{\"n\":{},\"window_index\":{},\"end_ms\":{},\"settling\":{},\"indices\":",
                w.n[i], w.window_index[i], w.end_ms[i], w.settling[i]
            );
            numbers(out, v[..INDICES].iter().copied());
            let channel =
                |c: usize| &v[INDICES + c * (PER_CHANNEL + 2 * nb)..][..PER_CHANNEL + 2 * nb];
            out.extend_from_slice(b",\"total_power\":");
            numbers(out, (0..nc).map(|c| channel(c)[0]));
            out.extend_from_slice(b",\"rms_uv\":");
            numbers(out, (0..nc).map(|c| channel(c)[1]));
            out.extend_from_slice(b",\"quality\":[");
            for (c, q) in w.quality[i * nc..(i + 1) * nc].iter().enumerate() {
                if c > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "{q}");
            }
            out.extend_from_slice(b"],\"band_power\":");
            numbers(
                out,
                (0..nc).flat_map(|c| channel(c)[PER_CHANNEL..PER_CHANNEL + nb].iter().copied()),
            );
            out.extend_from_slice(b",\"relative_power\":");
            numbers(
                out,
                (0..nc).flat_map(|c| channel(c)[PER_CHANNEL + nb..].iter().copied()),
            );
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"triggers\":[");
        for (i, (n, e)) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{{\"n\":{n},\"event\":");
            out.extend_from_slice(e);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"epochs\":[");
        for (i, (n, e)) in self.epochs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{{\"n\":{n},\"epoch\":");
            out.extend_from_slice(e);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
}

/// What the live page lists of an epoch record: its event (id, label, value), status and
/// why, onset (Unix ms, when placed) and bounds; the values per channel stay on Kafka. At
/// most a few hundred bytes whatever the record's size (labels are at most 256 bytes).
fn epoch_summary(record: &[u8]) -> Option<Vec<u8>> {
    use serde_json::Value;
    /// The fields summarised; the values per channel (and the samples, with
    /// `include_samples`) are skipped, not built.
    #[derive(serde::Deserialize)]
    struct Head {
        event: EventHead,
        onset_sample: Value,
        start_ms: Value,
        end_ms: Value,
        tmin_s: f64,
        status: String,
        drop: Vec<Value>,
    }
    #[derive(serde::Deserialize)]
    struct EventHead {
        event_id: Value,
        label: Value,
        #[serde(default)]
        value: Value,
    }
    let h: Head = serde_json::from_slice(record).ok()?;
    let summary = serde_json::json!({
        "event_id": h.event.event_id,
        "label": h.event.label,
        "value": h.event.value,
        "onset_sample": h.onset_sample,
        "onset_ms": h.start_ms.as_f64().map(|s| s - h.tmin_s * 1000.0),
        "start_ms": h.start_ms,
        "end_ms": h.end_ms,
        "status": h.status,
        // A rejected epoch names its channels: the first few.
        "drop": &h.drop[..h.drop.len().min(8)],
    });
    serde_json::to_vec(&summary).ok()
}

/// Writes `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn strings(out: &mut Vec<u8>, items: &[String]) {
    let _ = serde_json::to_writer(&mut *out, items);
}

/// Writes `v` as a JSON number (`null` when not finite).
fn number(out: &mut Vec<u8>, v: f64) {
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// Writes a JSON array of numbers to 4 significant digits, what a chart can show, in their
/// shortest form (`null` when not finite): about half the bytes of the f32 itself.
fn numbers(out: &mut Vec<u8>, values: impl Iterator<Item = f32>) {
    out.push(b'[');
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, &four_digits(v));
    }
    out.push(b']');
}

/// `v` rounded to 4 significant digits.
fn four_digits(v: f32) -> f32 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let v = f64::from(v);
    let scale = 10f64.powi(3 - v.abs().log10().floor() as i32);
    ((v * scale).round() / scale) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use eeg_schema::{
        ChannelFeatures, Indices, ProcessedRecord, Quality, SessionMeta, WindowFeatures,
        encode_processed,
    };
    use serde_json::Value;

    const BANDS: [&str; 5] = ["delta", "theta", "alpha", "beta", "gamma"];

    /// The record the service publishes for window `w` of session `id`: `channels`, `bands`
    /// in this order, band powers that differ by channel, band and window.
    fn record_of(id: &str, w: u64, channels: &[&str], bands: &[&str]) -> Vec<u8> {
        let meta = SessionMeta {
            session_id: id.into(),
            device_id: "bud-7".into(),
            user_id: None,
            sample_rate_hz: 256.0,
            channels: channels.iter().map(|c| c.to_string()).collect(),
        };
        let power: Vec<Vec<f64>> = (0..channels.len())
            .map(|c| {
                (0..bands.len())
                    .map(|b| (1 + 10 * c + b) as f64 + w as f64 / 8.0)
                    .collect()
            })
            .collect();
        let total: Vec<f64> = power.iter().map(|p| p.iter().sum()).collect();
        let relative: Vec<Vec<f64>> = power
            .iter()
            .zip(&total)
            .map(|(p, t)| p.iter().map(|v| v / t).collect())
            .collect();
        let features: Vec<ChannelFeatures> = (0..channels.len())
            .map(|c| ChannelFeatures {
                band_power: &power[c],
                relative_power: &relative[c],
                total_power: total[c],
                quality: Quality {
                    rms_uv: 10.0 + c as f64,
                    ptp_uv: 50.0,
                    line_noise_ratio: 0.1,
                    flatline: c == 1,
                    railed: false,
                    artifact: c == 2,
                    good: c == 0,
                },
            })
            .collect();
        let window = WindowFeatures {
            window_index: w,
            start_ms: 1_700_000_000_000 + 1000 * w as i64,
            end_ms: 1_700_000_004_000 + 1000 * w as i64,
            settling: w < 4,
            band_names: bands,
            channels: &features,
            indices: Indices {
                engagement: Some(0.5 + w as f64 / 1000.0),
                theta_beta: None,
                alpha_theta: Some(1.25),
            },
        };
        let mut out = Vec::new();
        encode_processed(
            &ProcessedRecord {
                meta: &meta,
                window: &window,
            },
            &mut out,
        );
        out
    }

    fn rec(id: &str, w: u64) -> Vec<u8> {
        record_of(id, w, &["TP9", "AF7"], &BANDS)
    }

    fn event(id: &str, k: u64) -> Vec<u8> {
        format!(
            "{{\"schema\":\"analytics.trigger/1\",\"rule_id\":\"r{k}\",\"session_id\":\"{id}\",\
             \"state\":\"fired\",\"end_ms\":{k}}}"
        )
        .into_bytes()
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
    }

    fn trend(live: &LiveSessions, id: &str, since: u64, now: Instant) -> Value {
        let all = json(&live.trend_at(&[(id.to_string(), since)], now));
        all["sessions"][0].clone()
    }

    /// The `end_ms` of the windows of a trend answer.
    fn ends(t: &Value) -> Vec<i64> {
        t["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["end_ms"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn the_latest_record_of_each_session_most_recently_started_first_in_pages() {
        let live = LiveSessions::new(true, Duration::from_secs(60));
        let t0 = Instant::now();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            for w in 0..=i as u64 {
                let at = t0 + Duration::from_millis(10 * (i as u64 * 3 + w));
                live.record_at(i as i32, id.as_bytes(), &rec(id, w), at);
            }
        }
        // The first session publishes again: its place does not change.
        live.record_at(0, b"a", &rec("a", 1), t0 + Duration::from_millis(500));
        let now = t0 + Duration::from_secs(1);
        let all = json(&live.page_at(0, 10, true, now));
        assert_eq!(all["total"], 3);
        let ids: Vec<&str> = all["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(all["sessions"][0]["windows"], 3);
        assert_eq!(all["sessions"][0]["latest"]["window_index"], 2);
        assert_eq!(all["sessions"][0]["partition"], 2);
        assert_eq!(all["sessions"][0]["trend"], true);
        let second = json(&live.page_at(1, 1, true, now));
        assert_eq!(second["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(second["sessions"][0]["session_id"], "b");
        // Without the records, for a page that takes the numbers from the trends.
        let listing = json(&live.page_at(0, 10, false, now));
        assert_eq!(listing["total"], 3);
        assert!(listing["sessions"][0].get("latest").is_none());
        assert_eq!(listing["sessions"][0]["session_id"], "c");
    }

    #[test]
    fn records_are_served_byte_for_byte_with_their_bands_in_the_config_order() {
        let live = LiveSessions::new(true, Duration::from_secs(60));
        let t0 = Instant::now();
        // Not alphabetical, and not the default order either.
        let bands = ["gamma", "beta", "alpha", "theta", "delta"];
        let record = record_of("s\"1", 0, &["Cz", "Fp1"], &bands);
        live.record_at(0, b"s\"1", &record, t0);
        let page = live.page_at(0, 10, true, t0);
        let text = String::from_utf8(page.clone()).unwrap();
        let published = String::from_utf8(record).unwrap();
        assert!(
            text.contains(&format!("\"latest\":{published}}}")),
            "{text}"
        );
        // The whole answer is JSON, the id escaped.
        assert_eq!(json(&page)["sessions"][0]["session_id"], "s\"1");
        // In the record served, each channel's bands come in the config's order (a map
        // re-serialised would have them sorted).
        let served = &text[text.find("\"latest\":").unwrap()..];
        for object in ["\"band_power\":{", "\"relative_power\":{"] {
            let start = served.find(object).unwrap() + object.len();
            let inside = &served[start..start + served[start..].find('}').unwrap()];
            let keys: Vec<&str> = inside
                .split(',')
                .map(|kv| kv.split(':').next().unwrap().trim_matches('"'))
                .collect();
            assert_eq!(keys, bands, "{inside}");
        }
        // And the trend names them in that order.
        let t = trend(&live, "s\"1", 0, t0);
        assert_eq!(t["bands"], serde_json::json!(bands));
        assert_eq!(t["channels"], serde_json::json!(["Cz", "Fp1"]));
    }

    #[test]
    fn a_trend_keeps_the_last_windows_in_order_and_answers_only_what_is_new() {
        let live = LiveSessions::new(true, Duration::from_secs(3600));
        let t0 = Instant::now();
        let n = LiveSessions::TREND_WINDOWS as u64 + 5;
        for w in 0..n {
            live.record_at(0, b"a", &rec("a", w), t0 + Duration::from_millis(w));
        }
        let now = t0 + Duration::from_secs(1);
        let all = trend(&live, "a", 0, now);
        assert_eq!(all["trend"], true);
        assert_eq!(all["device_id"], "bud-7");
        assert_eq!(all["capacity"], LiveSessions::TREND_WINDOWS);
        // The last 300 windows, oldest first.
        let got = ends(&all);
        let want: Vec<i64> = (5..n as i64)
            .map(|w| 1_700_000_004_000 + 1000 * w)
            .collect();
        assert_eq!(got, want);
        let windows = all["windows"].as_array().unwrap();
        assert_eq!(all["first"], windows[0]["n"]);
        assert_eq!(all["next"], windows[windows.len() - 1]["n"]);
        // One window's numbers, channel by channel, bands in order.
        let last = &windows[windows.len() - 1];
        assert_eq!(last["window_index"], n - 1);
        assert_eq!(last["settling"], false);
        assert_eq!(windows[0]["settling"], false);
        let w = (n - 1) as f64 / 8.0;
        let bp: Vec<f64> = last["band_power"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want_bp: Vec<f64> = [1.0, 2.0, 3.0, 4.0, 5.0, 11.0, 12.0, 13.0, 14.0, 15.0]
            .iter()
            .map(|v| v + w)
            .collect();
        assert_eq!(bp.len(), want_bp.len());
        for (got, want) in bp.iter().zip(&want_bp) {
            assert!((got / want - 1.0).abs() < 5e-4, "{got} {want}");
        }
        assert_eq!(last["relative_power"].as_array().unwrap().len(), 10);
        let rel0 = last["relative_power"][0].as_f64().unwrap();
        assert!(
            (rel0 / ((1.0 + w) / (15.0 + 5.0 * w)) - 1.0).abs() < 5e-4,
            "{rel0}"
        );
        assert_eq!(last["total_power"].as_array().unwrap().len(), 2);
        assert_eq!(last["rms_uv"], serde_json::json!([10.0, 11.0]));
        // TP9 good; AF7 flat.
        assert_eq!(last["quality"], serde_json::json!([GOOD, FLATLINE]));
        // theta_beta was null in the record: null here too.
        assert_eq!(last["indices"][1], Value::Null);
        assert_eq!(last["indices"][2], 1.25);

        // Asked again with what it has: nothing new.
        let next = all["next"].as_u64().unwrap();
        let none = trend(&live, "a", next, now);
        assert_eq!(none["windows"], serde_json::json!([]));
        assert_eq!(none["next"], next);
        // One more window: only it.
        live.record_at(0, b"a", &rec("a", n), now);
        let one = trend(&live, "a", next, now);
        assert_eq!(ends(&one), [1_700_000_004_000 + 1000 * n as i64]);
        assert_eq!(one["next"], next + 1);
        assert_eq!(one["first"], all["first"].as_u64().unwrap() + 1);
        // Settling windows are said to be.
        let early = LiveSessions::new(true, Duration::from_secs(60));
        early.record_at(0, b"e", &rec("e", 0), t0);
        assert_eq!(trend(&early, "e", 0, t0)["windows"][0]["settling"], true);
    }

    #[test]
    fn numbers_are_written_to_four_significant_digits() {
        let mut out = Vec::new();
        let values = [
            26.850_15,
            0.277_058_2,
            1.234_567e-5,
            98_765.43,
            -0.5,
            0.0,
            f32::NAN,
            f32::INFINITY,
            9.999_9,
        ];
        numbers(&mut out, values.into_iter());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[26.85,0.2771,0.00001235,98770.0,-0.5,0.0,null,null,10.0]"
        );
    }

    #[test]
    fn a_copy_is_kept_once_and_time_going_back_or_new_channels_start_the_trend_again() {
        let live = LiveSessions::new(true, Duration::from_secs(3600));
        let t0 = Instant::now();
        for w in 0..6 {
            live.record_at(0, b"a", &rec("a", w), t0);
        }
        // Records published again after a recovery.
        live.record_at(0, b"a", &rec("a", 3), t0);
        live.record_at(0, b"a", &rec("a", 5), t0);
        let t = trend(&live, "a", 0, t0);
        assert_eq!(ends(&t).len(), 6);
        assert_eq!(t["next"], 6);
        // The same session id from an earlier time: a new trend.
        let mut back = rec("a", 0);
        let text = String::from_utf8(back.clone()).unwrap();
        back = text
            .replace("\"end_ms\":1700000004000", "\"end_ms\":1600000004000")
            .into_bytes();
        live.record_at(0, b"a", &back, t0);
        let t = trend(&live, "a", 6, t0);
        assert_eq!(ends(&t), [1_600_000_004_000]);
        assert_eq!(t["first"], 7, "older windows are to be dropped");
        // Other channels: a new trend of their shape.
        live.record_at(0, b"a", &record_of("a", 9, &["Cz"], &["alpha"]), t0);
        let t = trend(&live, "a", 0, t0);
        assert_eq!(ends(&t).len(), 1);
        assert_eq!(t["channels"], serde_json::json!(["Cz"]));
        assert_eq!(t["bands"], serde_json::json!(["alpha"]));
        assert_eq!(t["windows"][0]["band_power"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_trend_of_many_channels_keeps_fewer_windows_within_its_bytes() {
        assert_eq!(
            Ring::capacity(INDICES + 64 * (PER_CHANNEL + 10), 64),
            LiveSessions::TREND_WINDOWS,
            "64 channels at five bands: 5 minutes"
        );
        let live = LiveSessions::new(true, Duration::from_secs(3600));
        let t0 = Instant::now();
        let names: Vec<String> = (0..1024).map(|c| format!("c{c}")).collect();
        let channels: Vec<&str> = names.iter().map(String::as_str).collect();
        let bands: Vec<String> = (0..12).map(|b| format!("b{b}")).collect();
        let bands: Vec<&str> = bands.iter().map(String::as_str).collect();
        for w in 0..30 {
            live.record_at(0, b"big", &record_of("big", w, &channels, &bands), t0);
        }
        let inner = live.lock();
        let ring = &inner.trends["big"].ring;
        let per_window = 8 + 8 + 8 + 1 + 1024 + 4 * (INDICES + 1024 * (PER_CHANNEL + 24));
        assert_eq!(ring.cap, LiveSessions::TREND_BYTES / per_window);
        assert!(ring.cap >= 1 && ring.cap < 30);
        assert_eq!(ring.len, ring.cap);
        // Every buffer has the ring's size, and all of it is within the budget.
        let bytes = ring.n.len() * 8
            + ring.window_index.len() * 8
            + ring.end_ms.len() * 8
            + ring.settling.len()
            + ring.quality.len()
            + ring.values.len() * 4;
        assert!(bytes <= LiveSessions::TREND_BYTES, "{bytes}");
        assert_eq!(bytes, ring.cap * per_window);
    }

    #[test]
    fn trends_go_to_64_sessions_at_most_and_a_stale_one_to_a_session_without() {
        let live = LiveSessions::new(true, Duration::from_secs(3600));
        let t0 = Instant::now();
        let k = LiveSessions::TREND_SESSIONS;
        for i in 0..k {
            let id = format!("s{i}");
            live.record_at(0, id.as_bytes(), &rec(&id, 0), t0);
        }
        let late = t0 + Duration::from_secs(1);
        live.record_at(0, b"late", &rec("late", 0), late);
        let has = |id: &str| live.lock().trends.contains_key(id);
        assert!(!has("late"));
        assert_eq!(live.lock().trends.len(), k);
        // Without a trend, its latest record instead.
        let t = trend(&live, "late", 0, late);
        assert_eq!(t["trend"], false);
        assert_eq!(t["latest"]["session_id"], "late");
        let page = json(&live.page_at(0, 1, false, late));
        assert_eq!(page["sessions"][0]["session_id"], "late");
        assert_eq!(page["sessions"][0]["trend"], false);
        // Everyone but s0 publishes again; 10 s after its last record, s0's trend is stale
        // and the next session asking takes it.
        let later = t0 + Duration::from_secs(5);
        for i in 1..k {
            let id = format!("s{i}");
            live.record_at(0, id.as_bytes(), &rec(&id, 1), later);
        }
        live.record_at(0, b"late", &rec("late", 1), t0 + Duration::from_secs(9));
        assert!(!has("late") && has("s0"));
        let stale = t0 + LiveSessions::TREND_STALE;
        live.record_at(0, b"late", &rec("late", 2), stale);
        assert!(has("late") && !has("s0"));
        assert_eq!(live.lock().trends.len(), k);
        assert_eq!(ends(&trend(&live, "late", 0, stale)).len(), 1);
        // s0 is still listed, with its latest record.
        assert_eq!(trend(&live, "s0", 0, stale)["trend"], false);
    }

    #[test]
    fn trigger_events_the_last_twenty_numbered_with_the_windows() {
        let live = LiveSessions::new(true, Duration::from_secs(3600));
        let t0 = Instant::now();
        // No session yet: nothing kept.
        live.trigger(b"a", &event("a", 0));
        live.record_at(0, b"a", &rec("a", 0), t0);
        assert_eq!(trend(&live, "a", 0, t0)["triggers"], serde_json::json!([]));
        for k in 1..=25 {
            live.trigger(b"a", &event("a", k));
        }
        let t = trend(&live, "a", 0, t0);
        let events = t["triggers"].as_array().unwrap();
        assert_eq!(events.len(), LiveSessions::TREND_EVENTS);
        // The last twenty, oldest first, as published.
        let rules: Vec<&str> = events
            .iter()
            .map(|e| e["event"]["rule_id"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (6..=25).map(|k| format!("r{k}")).collect();
        assert_eq!(rules, want);
        assert_eq!(t["next"], events[19]["n"]);
        let raw = String::from_utf8(live.trend_at(&[("a".into(), 0)], t0)).unwrap();
        assert!(raw.contains(&String::from_utf8(event("a", 25)).unwrap()));
        // Since the 24th: the 25th only, and a window after it.
        let since = events[18]["n"].as_u64().unwrap();
        live.record_at(0, b"a", &rec("a", 1), t0);
        let t = trend(&live, "a", since, t0);
        assert_eq!(t["triggers"].as_array().unwrap().len(), 1);
        assert_eq!(t["triggers"][0]["event"]["rule_id"], "r25");
        assert_eq!(ends(&t).len(), 1);
        assert!(t["windows"][0]["n"].as_u64() > t["triggers"][0]["n"].as_u64());
        // Larger than an event can be: not kept.
        let huge = vec![b' '; LiveSessions::MAX_EVENT_BYTES + 1];
        live.trigger(b"a", &huge);
        assert_eq!(
            trend(&live, "a", since, t0)["triggers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    /// An `eeg.epoch/1` record of event `k`, with 4,000 samples' worth of values.
    fn epoch(id: &str, k: u64) -> Vec<u8> {
        let samples: Vec<String> = (0..4000).map(|i| format!("{i}.5")).collect();
        format!(
            "{{\"schema\":\"eeg.epoch/1\",\"session_id\":\"{id}\",\"device_id\":\"d\",\
             \"event\":{{\"event_id\":\"e{k}\",\"label\":\"target\",\"value\":3,\"source\":\"app\",\
             \"duration_s\":0.0,\"onset_ms\":1000.0}},\"onset_sample\":{k},\"first_sample\":0,\
             \"last_sample\":10,\"start_ms\":{},\"end_ms\":{},\"tmin_s\":-0.2,\"tmax_s\":0.5,\
             \"status\":\"rejected\",\"drop\":[\"C3\"],\"channels\":[\"C3\"],\
             \"samples_uv\":[[{}]]}}",
            800 + k * 1000,
            1500 + k * 1000,
            samples.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn epochs_the_last_twenty_summarised_and_numbered_with_the_windows() {
        let live = LiveSessions::new(true, Duration::from_secs(3600));
        let t0 = Instant::now();
        // Before the session's first window: kept for its trend.
        live.epoch(b"a", &epoch("a", 0));
        live.record_at(0, b"a", &rec("a", 0), t0);
        let t = trend(&live, "a", 0, t0);
        assert_eq!(t["epochs"].as_array().unwrap().len(), 1);
        assert_eq!(t["epochs"][0]["epoch"]["event_id"], "e0");
        assert!(t["epochs"][0]["n"].as_u64() < t["windows"][0]["n"].as_u64());
        // Of at most 64 sessions without a trend.
        for s in 0..=LiveSessions::TREND_SESSIONS {
            live.epoch(format!("x{s}").as_bytes(), &epoch("x", 0));
        }
        assert_eq!(live.lock().early_epochs.len(), LiveSessions::TREND_SESSIONS);
        assert_eq!(live.lock().early_epochs[0].0, "x1");
        for k in 1..=25 {
            live.epoch(b"a", &epoch("a", k));
        }
        let t = trend(&live, "a", 0, t0);
        let epochs = t["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), LiveSessions::TREND_EVENTS);
        let ids: Vec<&str> = epochs
            .iter()
            .map(|e| e["epoch"]["event_id"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (6..=25).map(|k| format!("e{k}")).collect();
        assert_eq!(ids, want);
        assert_eq!(t["next"], epochs[19]["n"]);
        // A summary: the event, status and why, onset at start − tmin; no samples.
        let last = &epochs[19]["epoch"];
        assert_eq!(
            *last,
            serde_json::json!({"event_id": "e25", "label": "target", "value": 3,
                "onset_sample": 25, "onset_ms": 26_000.0, "start_ms": 25_800,
                "end_ms": 26_500, "status": "rejected", "drop": ["C3"]})
        );
        // Since the 24th: the 25th only, and a window after it.
        let since = epochs[18]["n"].as_u64().unwrap();
        live.record_at(0, b"a", &rec("a", 1), t0);
        let t = trend(&live, "a", since, t0);
        assert_eq!(t["epochs"].as_array().unwrap().len(), 1);
        assert!(t["windows"][0]["n"].as_u64() > t["epochs"][0]["n"].as_u64());
    }

    #[test]
    fn idle_sessions_leave_with_their_trends_and_the_count_stays_bounded() {
        let live = LiveSessions::new(true, Duration::from_secs(5));
        let t0 = Instant::now();
        live.record_at(0, b"old", &rec("old", 0), t0);
        live.record_at(0, b"new", &rec("new", 0), t0 + Duration::from_secs(4));
        let later = t0 + Duration::from_secs(6);
        let page = json(&live.page_at(0, 10, true, later));
        assert_eq!(page["total"], 1);
        assert_eq!(page["sessions"][0]["session_id"], "new");
        assert!(!live.lock().trends.contains_key("old"));
        // A session gone is not in a trend answer.
        let asks = [("old".to_string(), 0), ("new".to_string(), 0)];
        let t = json(&live.trend_at(&asks, later));
        assert_eq!(t["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(t["sessions"][0]["session_id"], "new");

        let live = LiveSessions::new(true, Duration::from_secs(3600));
        for i in 0..LiveSessions::CAPACITY + 5 {
            let id = format!("s{i}");
            let at = t0 + Duration::from_millis(i as u64);
            live.record_at(0, id.as_bytes(), &rec(&id, 0), at);
        }
        let page = json(&live.page_at(0, 1, true, t0 + Duration::from_secs(20)));
        assert_eq!(page["total"], LiveSessions::CAPACITY);
        // The least recently updated went first, with their trends.
        let kept = live.lock();
        assert!(!kept.entries.contains_key("s0") && kept.entries.contains_key("s5"));
        assert!(kept.trends.len() <= LiveSessions::TREND_SESSIONS);
        assert!(kept.trends.keys().all(|k| kept.entries.contains_key(k)));
    }

    #[test]
    fn the_latest_records_stay_within_their_bytes() {
        let live = LiveSessions::new(true, Duration::from_secs(3600));
        let t0 = Instant::now();
        // Records of 1 MB (as large as a producer takes by default), 100 sessions.
        let pad = format!("\"{}\"", "x".repeat(1 << 20));
        let big = |id: &str| format!("{{\"session_id\":\"{id}\",\"pad\":{pad}}}").into_bytes();
        for i in 0..100 {
            let id = format!("s{i:03}");
            live.record_at(0, id.as_bytes(), &big(&id), t0 + Duration::from_millis(i));
        }
        let inner = live.lock();
        let held: usize = inner.entries.values().map(|e| e.latest.capacity()).sum();
        assert_eq!(inner.latest_bytes, held);
        assert!(held <= LiveSessions::LATEST_BYTES, "{held}");
        // The most recently updated stayed, the least recently updated went, with their
        // trends.
        assert!(inner.entries.contains_key("s099") && !inner.entries.contains_key("s000"));
        let n = inner.entries.len();
        assert!((50..64).contains(&n), "{n}");
        let oldest_kept = (0..100).find(|i| inner.entries.contains_key(&format!("s{i:03}")));
        assert_eq!(oldest_kept, Some(100 - n));
        assert!(inner.trends.keys().all(|k| inner.entries.contains_key(k)));
        drop(inner);
        // A session leaving on its own gives its bytes back.
        let later = t0 + Duration::from_secs(3600);
        live.record_at(0, b"s099", &rec("s099", 0), later);
        let _ = live.page_at(0, 1, false, later + Duration::from_millis(200));
        let inner = live.lock();
        assert_eq!(inner.entries.len(), 1);
        assert_eq!(inner.latest_bytes, inner.entries["s099"].latest.capacity());
    }

    #[test]
    fn a_disabled_registry_keeps_nothing() {
        let live = LiveSessions::new(false, Duration::from_secs(60));
        live.record(0, b"a", &rec("a", 0));
        live.trigger(b"a", &event("a", 0));
        assert_eq!(json(&live.page(0, 10, true))["total"], 0);
        assert_eq!(
            json(&live.trend(&[("a".into(), 0)]))["sessions"],
            serde_json::json!([])
        );
    }
}
