//! The service's topics: checked at start, created once by an admin step (`eeg-pipeline
//! topics create`), never as a side effect of starting a service.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eeg_kafka::{Auth, AuthContext};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;

use crate::config::Topics;

/// Why the broker could not be asked, or refused; callers match on the kind (e.g. to tell an
/// unreachable broker from wrong credentials), and the display is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No answer in time; `cause` is librdkafka's first error (refused, DNS, TLS) when it
    /// gave one.
    #[error("{}metadata: {detail}{}", .cause.as_deref().map_or(String::new(), |c| format!("{c} (")), if .cause.is_some() { ")" } else { "" })]
    Unreachable {
        cause: Option<String>,
        detail: String,
    },
    /// The broker answered and refused the credentials.
    #[error("authentication failed: {cause} (metadata: {detail})")]
    Authentication { cause: String, detail: String },
    /// The client could not even be made (a bad property, a token that cannot be signed).
    #[error("kafka client: {0}")]
    Client(String),
    /// The broker refused to create a topic.
    #[error("creating {topic}: {problem}")]
    Create { topic: String, problem: String },
}

/// One topic the service needs and what the broker has of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    pub name: String,
    /// What the topic is for, e.g. `raw`.
    pub role: &'static str,
    /// Partitions on the broker; `None` when the topic does not exist.
    pub partitions: Option<usize>,
    /// Whether the topic must be compacted (`cleanup.policy=compact`).
    pub compacted: bool,
}

/// Everything [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReport {
    pub topics: Vec<TopicStatus>,
}

impl TopicReport {
    pub fn missing(&self) -> Vec<&str> {
        self.topics
            .iter()
            .filter(|t| t.partitions.is_none())
            .map(|t| t.name.as_str())
            .collect()
    }

    /// Problems other than missing topics: the state topic must have the raw topic's
    /// partition count, since snapshots go to the raw message's partition number.
    pub fn problems(&self) -> Vec<String> {
        let count = |role| {
            self.topics
                .iter()
                .find(|t| t.role == role)
                .and_then(|t| t.partitions.map(|p| (t.name.as_str(), p)))
        };
        match (count("raw"), count("state")) {
            (Some((raw, r)), Some((state, s))) if r != s => vec![format!(
                "{state} has {s} partitions, {raw} has {r}: session snapshots go to the raw message's partition number, so they must be equal"
            )],
            _ => Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.missing().is_empty() && self.problems().is_empty()
    }
}

fn wanted(topics: &Topics) -> Vec<(&str, &'static str, bool)> {
    let mut w = vec![
        (topics.raw.as_str(), "raw", false),
        (topics.processed.as_str(), "processed", false),
        (topics.triggers.as_str(), "triggers", false),
        (topics.dlq.as_str(), "dead letters", false),
        (topics.state.as_str(), "state", true),
    ];
    if let Some(epochs) = &topics.epochs {
        w.push((epochs.as_str(), "epochs", false));
    }
    w
}

fn status_from(metadata: &Metadata, topics: &Topics) -> TopicReport {
    TopicReport {
        topics: wanted(topics)
            .into_iter()
            .map(|(name, role, compacted)| TopicStatus {
                name: name.to_string(),
                role,
                partitions: metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .map(|t| t.partitions().len()),
                compacted,
            })
            .collect(),
    }
}

/// Asks the broker which of the service's topics exist, within `timeout`.
pub fn check(
    client: &ClientConfig,
    auth: &Auth,
    topics: &Topics,
    timeout: Duration,
) -> Result<TopicReport, BrokerError> {
    metadata(client, auth, timeout).map(|m| status_from(&m, topics))
}

/// An admin client with a token, and options bounding each call by `timeout`.
fn admin(
    client: &ClientConfig,
    auth: &Auth,
    timeout: Duration,
) -> Result<(AdminClient<AuthContext>, AdminOptions), BrokerError> {
    let admin: AdminClient<AuthContext> = client
        .create_with_context(AuthContext(auth.clone()))
        .map_err(|e| BrokerError::Client(e.to_string()))?;
    // rdkafka's admin client serves no token refreshes; one token outlives these calls.
    auth.set_token_now(admin.inner())
        .map_err(|e| BrokerError::Client(e.to_string()))?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    Ok((admin, opts))
}

/// The `max.message.bytes` the broker reports for each of `topics` that has one (topics it
/// reports nothing for are left out), within `timeout`.
pub fn message_limits(
    client: &ClientConfig,
    auth: &Auth,
    topics: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, usize>, BrokerError> {
    let (admin, opts) = admin(client, auth, timeout)?;
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results =
        futures::executor::block_on(admin.describe_configs(&specifiers, &opts)).map_err(|e| {
            BrokerError::Unreachable {
                cause: None,
                detail: format!("describe configs: {e}"),
            }
        })?;
    let mut out = HashMap::new();
    for (topic, result) in topics.iter().zip(results) {
        let Ok(resource) = result else { continue };
        let limit = resource
            .entries
            .iter()
            .find(|e| e.name == "max.message.bytes")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse().ok());
        if let Some(limit) = limit {
            out.insert(topic.to_string(), limit);
        }
    }
    Ok(out)
}

/// The partition count of `topic` (`None` when it does not exist), asked of the broker
/// within `timeout`; the error says why the broker did not answer.
pub fn partitions(
    client: &ClientConfig,
    auth: &Auth,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, BrokerError> {
    let metadata = metadata(client, auth, timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len()))
}

/// The cluster's metadata within `timeout`, or why the broker did not answer.
fn metadata(
    client: &ClientConfig,
    auth: &Auth,
    timeout: Duration,
) -> Result<Metadata, BrokerError> {
    // A consumer handle (never subscribed) rather than an admin client: its error events can
    // be polled, and they say why a broker did not answer (refused, authentication, TLS).
    let probe: BaseConsumer<Errors> = client
        .create_with_context(Errors {
            auth: auth.clone(),
            ..Errors::default()
        })
        .map_err(|e| BrokerError::Client(e.to_string()))?;
    auth.prime(|d| {
        let _ = probe.poll(d);
    });
    // Asked in slices, with librdkafka's error events served between them, so that a
    // broker that refuses the connection (or the credentials) is reported at once rather
    // than after the whole timeout.
    let deadline = Instant::now() + timeout;
    let failed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match probe.fetch_metadata(None, left.min(METADATA_SLICE)) {
            Ok(m) => return Ok(m),
            Err(e) => {
                let _ = probe.poll(Duration::ZERO);
                if left <= METADATA_SLICE || probe.context().hopeless() {
                    break e;
                }
            }
        }
    };
    let _ = probe.poll(Duration::from_millis(100));
    Err({
        let detail = failed.to_string();
        match probe.context().first.lock().expect("errors lock").take() {
            Some((cause, true)) => BrokerError::Authentication { cause, detail },
            Some((cause, false)) => BrokerError::Unreachable {
                cause: Some(cause),
                detail,
            },
            None => BrokerError::Unreachable {
                cause: None,
                detail,
            },
        }
    })
}

/// How long one metadata request may wait before the error events are looked at.
const METADATA_SLICE: Duration = Duration::from_millis(500);

/// Keeps the first error librdkafka reports, the most telling one, and whether it is an
/// authentication failure.
#[derive(Debug, Default)]
struct Errors {
    first: std::sync::Mutex<Option<(String, bool)>>,
    /// Every broker is down (refused, unresolvable), or the credentials were refused:
    /// waiting longer would not change the answer.
    hopeless: std::sync::atomic::AtomicBool,
    auth: Auth,
}

impl Errors {
    fn hopeless(&self) -> bool {
        self.hopeless.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl ClientContext for Errors {
    eeg_kafka::answer_token_refresh!(only | ctx | ctx.auth);

    // librdkafka's own lines repeat what `error` keeps; the caller reports it once.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!("librdkafka: {fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::Authentication)
        ) {
            self.hopeless
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let mut first = self.first.lock().expect("errors lock");
        if first.is_none() {
            // Without timings and the like, so that the same failure at the next retry reads
            // the same and is not logged again as a new reason.
            let reason = eeg_kafka::client_log::steady(reason);
            let authentication =
                error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication);
            *first = Some((reason, authentication));
        }
    }
}

impl ConsumerContext for Errors {}

/// What [`create`] did with one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created { partitions: usize },
    Existed { partitions: usize },
}

/// Creates the service's topics that do not exist: `partitions` each (the state topic gets
/// as many as the raw topic has, and `cleanup.policy=compact`), with `replication` (`-1`:
/// the broker's default). Topics that exist are left alone, so running it twice, or from
/// two places at once, is harmless.
pub fn create(
    client: &ClientConfig,
    auth: &Auth,
    topics: &Topics,
    partitions: usize,
    replication: i32,
    timeout: Duration,
) -> Result<Vec<(String, Created)>, BrokerError> {
    let before = check(client, auth, topics, timeout)?;
    let raw_partitions = before
        .topics
        .iter()
        .find(|t| t.role == "raw")
        .and_then(|t| t.partitions)
        .unwrap_or(partitions);
    let missing: Vec<&TopicStatus> = before
        .topics
        .iter()
        .filter(|t| t.partitions.is_none())
        .collect();
    let count = |t: &TopicStatus| {
        if t.role == "state" {
            raw_partitions
        } else {
            partitions
        }
    };
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            let n = NewTopic::new(
                &t.name,
                count(t) as i32,
                TopicReplication::Fixed(replication),
            );
            if t.compacted {
                n.set("cleanup.policy", "compact")
            } else {
                n
            }
        })
        .collect();
    let mut out: Vec<(String, Created)> = before
        .topics
        .iter()
        .filter_map(|t| {
            t.partitions
                .map(|p| (t.name.clone(), Created::Existed { partitions: p }))
        })
        .collect();
    if new.is_empty() {
        return Ok(out);
    }
    let (admin, opts) = admin(client, auth, timeout)?;
    let results = futures::executor::block_on(admin.create_topics(&new, &opts)).map_err(|e| {
        BrokerError::Create {
            topic: "topics".into(),
            problem: e.to_string(),
        }
    })?;
    for (r, t) in results.into_iter().zip(&missing) {
        match r {
            Ok(name) => out.push((
                name,
                Created::Created {
                    partitions: count(t),
                },
            )),
            // Another admin step created it meanwhile.
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => out.push((
                name,
                Created::Existed {
                    partitions: count(t),
                },
            )),
            Err((name, code)) => {
                return Err(BrokerError::Create {
                    topic: name,
                    problem: code.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// The command that creates the topics, for log lines and errors.
pub const CREATE_COMMAND: &str = "eeg-pipeline topics create";
