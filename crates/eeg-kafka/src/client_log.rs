//! librdkafka's own log lines and error events, from every client of the process, through one
//! de-duplicating logger.
//!
//! librdkafka reports a failure again for as long as it lasts: with the broker unreachable,
//! each client reports the refused connection and "all brokers down" several times a second.
//! Here the first occurrence of a reason is logged at once; repeats are counted, not logged,
//! and a summary line gives their count (`... (repeated 37 times in the last 60 s)`) at most
//! once a minute while they go on, when the brokers are reachable again, and at exit
//! ([`flush`]). What changes from one repeat to the next (the reporting thread, the broker's
//! node id, timings, counts) does not make a reason new, and the same reason from two clients,
//! or as a log line and as an error event, is one reason.
//!
//! The same events tell the process's [`BrokerObserver`] (the service's health) when every
//! broker is down, and librdkafka's statistics tell it when a broker connection is up again.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use rdkafka::client::ClientContext;
pub use rdkafka::config::RDKafkaLogLevel;
pub use rdkafka::error::KafkaError;
use rdkafka::error::RDKafkaErrorCode;

/// Longest time a reason's repeats go unreported while they continue.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Distinct reasons kept at once; past this the oldest counts are reported and forgotten, so
/// a client reporting ever new reasons cannot grow memory without bound.
const MAX_REASONS: usize = 256;

/// Told when the brokers become unreachable and when they are back (the service's health).
pub trait BrokerObserver: Send + Sync {
    /// No broker can be reached; `reason` is the last connection error, in one line.
    fn broker_down(&self, reason: &str);
    /// A broker connection is up again.
    fn broker_up(&self);
    /// A client reported an error (with one broker, or a request); the brokers may still be
    /// reachable.
    fn broker_error(&self, _reason: &str) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
}

/// The de-duplication itself, with time passed in, so it is tested without waiting.
#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashMap<String, Seen>,
    /// When every broker went down, while they are.
    down_since: Option<Instant>,
    /// The last connection error (transport, name resolution, TLS, authentication), the
    /// most telling reason when all brokers are down.
    last_failure: Option<String>,
}

#[derive(Debug)]
struct Seen {
    level: Level,
    /// The first occurrence's line.
    text: String,
    /// Start of the span whose repeats are being counted.
    window: Instant,
    last: Instant,
    repeats: u64,
}

impl Seen {
    fn summary(&self, now: Instant) -> (Level, String) {
        let span = now.saturating_duration_since(self.window).as_secs().max(1);
        let times = if self.repeats == 1 { "time" } else { "times" };
        (
            self.level,
            format!(
                "{} (repeated {} {times} in the last {span} s)",
                self.text, self.repeats
            ),
        )
    }
}

impl Dedup {
    /// `text` happened at `now`; `key` is what makes it distinct (see [`key`]). Returns the
    /// lines to log now: the text when the reason is new (or was quiet for a minute), and
    /// the summaries that are due.
    pub fn note(
        &mut self,
        now: Instant,
        level: Level,
        key: &str,
        text: &str,
    ) -> Vec<(Level, String)> {
        let mut out = Vec::new();
        // Other reasons: report counts a minute old, forget reasons quiet for a minute.
        self.seen.retain(|k, s| {
            if k == key || now.saturating_duration_since(s.window) < SUMMARY_INTERVAL {
                return true;
            }
            if s.repeats > 0 {
                out.push(s.summary(now));
                s.repeats = 0;
                s.window = now;
            }
            now.saturating_duration_since(s.last) < SUMMARY_INTERVAL
        });
        match self.seen.get_mut(key) {
            Some(s) if now.saturating_duration_since(s.last) < SUMMARY_INTERVAL => {
                s.repeats += 1;
                s.last = now;
                if now.saturating_duration_since(s.window) >= SUMMARY_INTERVAL {
                    out.push(s.summary(now));
                    s.repeats = 0;
                    s.window = now;
                }
            }
            stale => {
                // New, or back after a quiet minute: a new occurrence, logged at once.
                if let Some(s) = stale
                    && s.repeats > 0
                {
                    out.push(s.summary(now));
                }
                if self.seen.len() >= MAX_REASONS {
                    out.extend(self.flush(now));
                }
                self.seen.insert(
                    key.to_string(),
                    Seen {
                        level,
                        text: text.to_string(),
                        window: now,
                        last: now,
                        repeats: 0,
                    },
                );
                out.push((level, text.to_string()));
            }
        }
        out
    }

    /// The summaries of every count not reported yet; every reason is forgotten, so each
    /// is logged at once when it happens again.
    pub fn flush(&mut self, now: Instant) -> Vec<(Level, String)> {
        let mut out: Vec<(Instant, (Level, String))> = self
            .seen
            .drain()
            .filter(|(_, s)| s.repeats > 0)
            .map(|(_, s)| (s.window, s.summary(now)))
            .collect();
        out.sort_by_key(|(window, _)| *window);
        out.into_iter().map(|(_, line)| line).collect()
    }

    /// Every broker is down (librdkafka's `AllBrokersDown`, or statistics with no broker
    /// up): the reason, for the observer. Said every time, not only the first: the observer
    /// may have seen a broker up meanwhile (e.g. in statistics taken before the outage).
    pub fn all_down(&mut self, now: Instant, detail: &str) -> String {
        self.down_since.get_or_insert(now);
        match &self.last_failure {
            Some(cause) => format!("all brokers down: {cause}"),
            None => format!("all brokers down: {detail}"),
        }
    }

    /// A broker connection is up. When the brokers were down, returns how long, and the
    /// summaries of what was repeated meanwhile (the next failure is logged at once).
    pub fn up(&mut self, now: Instant) -> Option<(Duration, Vec<(Level, String)>)> {
        let since = self.down_since.take()?;
        self.last_failure = None;
        Some((now.saturating_duration_since(since), self.flush(now)))
    }

    pub fn failure(&mut self, cause: &str) {
        self.last_failure = Some(cause.to_string());
    }
}

struct Shared {
    dedup: Mutex<Dedup>,
    observer: RwLock<Option<Arc<dyn BrokerObserver>>>,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    dedup: Mutex::new(Dedup::default()),
    observer: RwLock::new(None),
});

fn dedup() -> std::sync::MutexGuard<'static, Dedup> {
    // A panic while logging leaves nothing half-done that matters: keep logging.
    SHARED.dedup.lock().unwrap_or_else(|e| e.into_inner())
}

fn observer() -> Option<Arc<dyn BrokerObserver>> {
    SHARED
        .observer
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Makes `observer` the one told about broker outages (one per process: the service's health).
pub fn observe(observer: Arc<dyn BrokerObserver>) {
    *SHARED.observer.write().unwrap_or_else(|e| e.into_inner()) = Some(observer);
}

fn emit(lines: Vec<(Level, String)>) {
    for (level, line) in lines {
        match level {
            Level::Error => tracing::error!("{line}"),
            Level::Warn => tracing::warn!("{line}"),
            Level::Info => tracing::info!("{line}"),
        }
    }
}

/// librdkafka's log callback, for every client context of the pipeline.
pub fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    let level = match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => Level::Error,
        RDKafkaLogLevel::Warning => Level::Warn,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => Level::Info,
        // Filtered out unless asked for, and then wanted in full.
        RDKafkaLogLevel::Debug => {
            tracing::debug!("librdkafka: {fac}: {message}");
            return;
        }
    };
    let text = format!("librdkafka: {fac}: {}", steady(message));
    let lines = dedup().note(Instant::now(), level, &key(message), &text);
    emit(lines);
}

/// librdkafka's error callback, for every client context of the pipeline.
pub fn error(error: &KafkaError, reason: &str) {
    let code = error.rdkafka_error_code();
    let name = code.map_or_else(|| error.to_string(), |c| format!("{c:?}"));
    let cause = match code {
        Some(RDKafkaErrorCode::Authentication) => {
            format!("authentication failed: {}", steady(reason))
        }
        _ => steady(reason),
    };
    let text = format!("librdkafka: {name}: {cause}");
    let now = Instant::now();
    let (lines, down) = {
        let mut d = dedup();
        let lines = d.note(now, Level::Error, &key(reason), &text);
        let down = match code {
            Some(RDKafkaErrorCode::AllBrokersDown) => Some(d.all_down(now, &cause)),
            // Why a broker could not be used: the cause an outage is reported with.
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::Authentication,
            ) => {
                d.failure(&cause);
                None
            }
            _ => None,
        };
        (lines, down)
    };
    emit(lines);
    if let Some(observer) = observer() {
        match down {
            Some(reason) => observer.broker_down(&reason),
            None => observer.broker_error(&cause),
        }
    }
}

/// A line of the application's own about a client (e.g. an error a consumer's poll
/// returned), de-duplicated with librdkafka's.
pub fn warn(text: &str) {
    let lines = dedup().note(Instant::now(), Level::Warn, &key(text), text);
    emit(lines);
}

/// librdkafka's statistics (every `statistics.interval.ms`, for clients that ask for them):
/// the brokers' connection states say whether any broker is up. Returns them decoded for the
/// context's own use.
pub fn statistics(raw: &[u8]) -> Option<rdkafka::Statistics> {
    let stats: rdkafka::Statistics = match serde_json::from_slice(raw) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("librdkafka statistics not understood: {e}");
            return None;
        }
    };
    if stats.brokers.is_empty() {
        return Some(stats);
    }
    let any_up = stats.brokers.values().any(|b| b.state == "UP");
    let now = Instant::now();
    // The observer is told every time: it may have been told otherwise meanwhile.
    if any_up {
        let recovered = dedup().up(now);
        if let Some((after, lines)) = recovered {
            emit(lines);
            tracing::info!(
                "a Kafka broker connection is up again after {} s without one",
                after.as_secs()
            );
        }
        if let Some(observer) = observer() {
            observer.broker_up();
        }
    } else {
        let reason = dedup().all_down(now, "no broker connection is up");
        if let Some(observer) = observer() {
            observer.broker_down(&reason);
        }
    }
    Some(stats)
}

/// Logs the counts not reported yet (at exit).
pub fn flush() {
    let lines = dedup().flush(Instant::now());
    emit(lines);
}

/// `text` without what librdkafka adds that changes from one repeat to the next and says
/// nothing about the cause: the reporting thread (`[thrd:...]: `), the time spent in the
/// failing state (`after 12ms `) and librdkafka's own count of suppressed repeats.
pub fn steady(text: &str) -> String {
    let mut s = text.trim().to_string();
    while let Some(start) = s.find("[thrd:") {
        let Some(len) = s[start..].find(']') else {
            break;
        };
        let mut end = start + len + 1;
        if s[end..].starts_with(": ") {
            end += 2;
        }
        s.replace_range(start..end, "");
    }
    // "(after 12ms in state CONNECT)" -> "(in state CONNECT)"
    let mut from = 0;
    while let Some(found) = s[from..].find("after ") {
        let at = from + found;
        let digits = s[at + 6..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !s[at + 6 + digits..].starts_with("ms") {
            // An "after" of another kind stays as it is.
            from = at + 6;
            continue;
        }
        let mut end = at + 6 + digits + 2;
        if s[end..].starts_with(' ') {
            end += 1;
        }
        s.replace_range(at..end, "");
        from = at;
    }
    const SUPPRESSED: &str = " identical error(s) suppressed";
    if let Some(at) = s.find(SUPPRESSED) {
        // The count before it is ASCII digits, so the cut stays on character boundaries.
        let digits = s[..at].bytes().rev().take_while(u8::is_ascii_digit).count();
        let mut start = at - digits;
        if s[..start].ends_with(", ") {
            start -= 2;
        }
        s.replace_range(start..at + SUPPRESSED.len(), "");
    }
    s
}

/// What makes a reason distinct: [`steady`], without broker node ids (`host:9092/1` and
/// `host:9092/bootstrap` are one address), the group coordinator's logical name, and with
/// the counts in "1/3 brokers are down" replaced. Addresses and names stay apart.
pub fn key(text: &str) -> String {
    let s = steady(text);
    let s = s.strip_prefix("GroupCoordinator: ").unwrap_or(&s);
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        // "host:port/ID" or "host:port/bootstrap": drop the node part after a port.
        if c == b'/' && after_port(&bytes[..i]) {
            let rest = &s[i + 1..];
            let node = if rest.starts_with("bootstrap") {
                "bootstrap".len()
            } else {
                rest.bytes().take_while(u8::is_ascii_digit).count()
            };
            let after = rest.as_bytes().get(node).copied();
            if node > 0 && matches!(after, None | Some(b':' | b' ' | b']' | b')' | b',')) {
                i += 1 + node;
                continue;
            }
        }
        // A number standing alone ("1/3 brokers", "5 requests") counts something that
        // changes; numbers inside addresses and names ("127.0.0.1:9092", "raw-3") do not.
        if c.is_ascii_digit() && (i == 0 || matches!(bytes[i - 1], b' ' | b'(' | b'/')) {
            let n = s[i..].bytes().take_while(u8::is_ascii_digit).count();
            let next = bytes.get(i + n).copied();
            if !matches!(next, Some(b'.' | b':' | b'-' | b'_')) {
                out.push('#');
                i += n;
                continue;
            }
        }
        // Whole characters: `i` only ever stops on a character boundary.
        let ch = s[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Whether `before` ends with `:` and a port number.
fn after_port(before: &[u8]) -> bool {
    let digits = before
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    digits > 0 && before.len() > digits && before[before.len() - digits - 1] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = "[thrd:127.0.0.1:19999/bootstrap]: 127.0.0.1:19999/bootstrap: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after 0ms in state CONNECT)";

    #[test]
    fn steady_text_drops_thread_timing_and_suppressed_counts() {
        assert_eq!(
            steady(REFUSED),
            "127.0.0.1:19999/bootstrap: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (in state CONNECT)"
        );
        assert_eq!(
            steady(
                "127.0.0.1:19999/1: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after 3ms in state CONNECT, 1 identical error(s) suppressed)"
            ),
            "127.0.0.1:19999/1: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (in state CONNECT)"
        );
        assert_eq!(steady("retry after a while"), "retry after a while");
        assert_eq!(
            steady("after all, timed out (after 5001ms in state UP)"),
            "after all, timed out (in state UP)"
        );
        assert_eq!(steady("1/1 brokers are down"), "1/1 brokers are down");
    }

    #[test]
    fn repeats_of_one_reason_have_one_key_and_other_reasons_another() {
        let same = [
            REFUSED,
            "127.0.0.1:19999/bootstrap: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after 1ms in state CONNECT, 1 identical error(s) suppressed)",
            "[thrd:127.0.0.1:19999/1]: 127.0.0.1:19999/1: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after 0ms in state CONNECT)",
            "GroupCoordinator: 127.0.0.1:19999/1: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after 0ms in state CONNECT)",
        ];
        for s in same {
            assert_eq!(key(s), key(REFUSED), "{s}");
        }
        assert_eq!(key("1/1 brokers are down"), key("0/1 brokers are down"));
        assert_eq!(key("3/3 brokers are down"), "#/# brokers are down");
        let different = [
            "127.0.0.1:19998/bootstrap: Connect to ipv4#127.0.0.1:19998 failed: Connection refused (after 0ms in state CONNECT)",
            "127.0.0.1:19999/bootstrap: Connect to ipv4#127.0.0.1:19999 failed: Connection timed out (after 0ms in state CONNECT)",
            "127.0.0.1:19999/bootstrap: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after 0ms in state APIVERSION_QUERY)",
        ];
        for s in different {
            assert_ne!(key(s), key(REFUSED), "{s}");
        }
        assert_ne!(key("topic raw-3 not found"), key("topic raw-4 not found"));
        assert_eq!(key("héllo 5 wörld"), "héllo # wörld");
    }

    #[test]
    fn the_first_occurrence_is_logged_and_repeats_are_summarised_once_a_minute() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s * 1000);
        let mut d = Dedup::default();
        let k = key(REFUSED);
        let first = d.note(at(0), Level::Error, &k, "refused");
        assert_eq!(first, vec![(Level::Error, "refused".to_string())]);
        // A repeat every second: nothing until a minute has passed.
        for s in 1..60 {
            assert!(d.note(at(s), Level::Error, &k, "refused").is_empty(), "{s}");
        }
        assert_eq!(
            d.note(at(60), Level::Error, &k, "refused"),
            vec![(
                Level::Error,
                "refused (repeated 60 times in the last 60 s)".to_string()
            )]
        );
        // Another reason meanwhile is logged at once, and counted on its own.
        let other = d.note(at(61), Level::Warn, "other", "other");
        assert_eq!(other, vec![(Level::Warn, "other".to_string())]);
        assert!(d.note(at(62), Level::Warn, "other", "other").is_empty());
        assert!(d.note(at(63), Level::Error, &k, "refused").is_empty());
        // At exit, the counts not reported yet, oldest first.
        assert_eq!(
            d.flush(at(70)),
            vec![
                (
                    Level::Error,
                    "refused (repeated 1 time in the last 10 s)".to_string()
                ),
                (
                    Level::Warn,
                    "other (repeated 1 time in the last 9 s)".to_string()
                ),
            ]
        );
        // Forgotten after a flush: logged at once again.
        assert_eq!(d.note(at(71), Level::Error, &k, "refused").len(), 1);
    }

    #[test]
    fn a_reason_quiet_for_a_minute_is_new_again_and_its_count_is_reported() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut d = Dedup::default();
        d.note(at(0), Level::Error, "k", "refused");
        assert!(d.note(at(5), Level::Error, "k", "refused").is_empty());
        assert_eq!(
            d.note(at(100), Level::Error, "k", "refused"),
            vec![
                (
                    Level::Error,
                    "refused (repeated 1 time in the last 100 s)".to_string()
                ),
                (Level::Error, "refused".to_string()),
            ]
        );
        // Another reason's event reports a quiet reason's count and forgets it.
        assert!(d.note(at(101), Level::Error, "k", "refused").is_empty());
        assert_eq!(
            d.note(at(200), Level::Info, "x", "x"),
            vec![
                (
                    Level::Error,
                    "refused (repeated 1 time in the last 100 s)".to_string()
                ),
                (Level::Info, "x".to_string()),
            ]
        );
        assert_eq!(d.note(at(201), Level::Error, "k", "refused").len(), 1);
    }

    #[test]
    fn all_brokers_down_names_the_last_connection_failure_and_dates_the_outage() {
        let t0 = Instant::now();
        let mut d = Dedup::default();
        d.failure("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused");
        let want = "all brokers down: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused";
        assert_eq!(d.all_down(t0, "1/1 brokers are down"), want);
        // Said again each time; the outage started at the first.
        assert_eq!(
            d.all_down(t0 + Duration::from_secs(5), "0/1 brokers are down"),
            want
        );
        d.note(t0, Level::Error, "k", "refused");
        d.note(t0 + Duration::from_secs(1), Level::Error, "k", "refused");
        let (after, lines) = d.up(t0 + Duration::from_secs(20)).unwrap();
        assert_eq!(after, Duration::from_secs(20));
        assert_eq!(
            lines,
            vec![(
                Level::Error,
                "refused (repeated 1 time in the last 20 s)".to_string()
            )]
        );
        assert!(d.up(t0 + Duration::from_secs(21)).is_none());
        // Without a known cause, the detail says what was seen.
        assert_eq!(
            d.all_down(t0, "no broker connection is up"),
            "all brokers down: no broker connection is up"
        );
    }
}
