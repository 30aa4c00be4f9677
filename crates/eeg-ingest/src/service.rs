//! The Kafka service: consume `eeg.raw.data` in a consumer group, run every partition
//! through its [`eeg_session::PartitionCore`] (sessions, trigger rules, delivery ledger),
//! publish what it produces, and commit a partition's offset only where its ledger says so.
//!
//! Threads: this one polls the consumer (and runs the rebalance callbacks of [`crate::group`]),
//! one worker per assigned partition ([`crate::worker`]) owns that partition's core and feeds
//! it in offset order, and librdkafka's producer thread delivers and acknowledges. Nothing
//! here runs on an async runtime. What is published and when an offset may be committed is
//! decided in `eeg-session`; this file is the wiring and the polling loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

use eeg_session::{MemoryBudget, TriggerEngine};

use crate::config::ServiceConfig;
use crate::error::{Failure, Failures, ServiceError};
use crate::figures::{Stats, WindowLatency};
use crate::group::{Group, Kafka, Rebalancing};
use crate::health::{Health, Phase};
use crate::live::LiveSessions;
use crate::producer::Publisher;
use crate::stop::StopHandle;
use crate::topics;
use crate::worker::log_consumer_error;

/// The running service.
#[derive(Debug)]
pub struct Service {
    group: Arc<Group>,
    stop: StopHandle,
}

impl Service {
    /// Creates the clients; no network round trip happens here.
    pub fn new(config: ServiceConfig) -> Result<Service, ServiceError> {
        let failures = Arc::new(Failures::default());
        let window_latency = Arc::new(WindowLatency::default());
        let producer = Publisher::new(
            &config.producer_client_config(),
            &config.auth,
            Arc::clone(&window_latency),
            Arc::clone(&failures),
        )?;
        let triggers = Arc::new(TriggerEngine::new(config.triggers.rules.clone())?);
        let memory = match config.session_memory_bytes {
            Some(bytes) => {
                tracing::info!("session memory budget: {} MiB", bytes >> 20);
                bytes
            }
            None => {
                let (bytes, source) = crate::memory::default_budget();
                tracing::info!(
                    "session memory budget: {} MiB, {source}; set EEG_SESSION_MEMORY_MIB to choose",
                    bytes >> 20
                );
                bytes
            }
        };
        let largest = config.processing.limits.max_session_state_bytes;
        if largest > memory {
            tracing::info!(
                "limits.max_session_state_mib ({} MiB) is above the session memory budget ({} MiB): a session larger than the budget is dead-lettered; lower the limit or raise EEG_SESSION_MEMORY_MIB",
                largest >> 20,
                memory >> 20
            );
        }
        let stats = Arc::new(Stats {
            memory: MemoryBudget::new(memory),
            live: Arc::new(LiveSessions::new(config.live_sessions, config.session_idle)),
            cache: config.cache.clone(),
            window_latency,
            ..Stats::default()
        });
        let group = Group::new(
            Arc::new(config),
            Arc::new(Health::default()),
            triggers,
            producer,
            stats,
            failures,
        );
        Ok(Service {
            group: Arc::new(group),
            stop: StopHandle::default(),
        })
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.group.stats)
    }

    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.group.health)
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Consumes until [`StopHandle::stop`] is called (then drains, commits and returns
    /// `Ok`) or something fails (then returns the error without committing past it).
    pub fn run(self) -> Result<(), ServiceError> {
        let health = self.health();
        let result = self.consume();
        // Whatever ended the service, health says so until the process exits.
        if let Err(e) = &result
            && !matches!(health.phase(), Phase::Failed(_))
        {
            health.set_phase(Phase::Failed(e.to_string()));
        }
        result
    }

    fn consume(self) -> Result<(), ServiceError> {
        if !self.wait_for_topics() {
            return Ok(());
        }
        self.agree_on_message_size();
        let group = self.group;
        let config = Arc::clone(&group.config);
        // What the delivery promise rests on: not overridable.
        let consumer: Kafka = config
            .consumer_client_config()
            .set("group.id", &config.group_id)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Rebalancing(Arc::clone(&group)))?;
        let consumer = Arc::new(consumer);
        group.attach(&consumer);
        consumer.subscribe(&[&config.topics.raw])?;
        group.health.set_phase(Phase::Consuming);
        let rejoin = Arc::new(AtomicBool::new(false));
        let watchdog = crate::watchdog::spawn(
            (*config).clone(),
            Arc::clone(&group.health),
            self.stop.clone(),
            Arc::clone(&rejoin),
        );
        if let Err(e) = &watchdog {
            tracing::warn!("group watchdog not started: {e}");
        }
        tracing::info!(
            "consuming {} as group {} from {}",
            config.topics.raw,
            config.group_id,
            config.bootstrap_servers
        );
        let mut failure: Option<Failure> = None;
        while !self.stop.requested() {
            if let Some(f) = group.failures.first() {
                failure = Some(f.clone());
                break;
            }
            if rejoin.swap(false, Ordering::AcqRel) {
                // Leaving and joining again makes the coordinator hand out every partition
                // anew; this instance's partitions are released (and committed) first.
                tracing::warn!(
                    "rejoining group {} so that every partition gets an owner",
                    config.group_id
                );
                group
                    .stats
                    .transport
                    .group_rejoins
                    .fetch_add(1, Ordering::Relaxed);
                consumer.unsubscribe();
                consumer.subscribe(&[&config.topics.raw])?;
            }
            // Serves the group's events (rebalances, errors, statistics); the messages come
            // through the partitions' own queues.
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    // Only a message fetched before its partition's queue was split could
                    // come here; its worker notices the offset missing and reads it again.
                    tracing::debug!(
                        "partition {} offset {} on the main queue; left to its worker",
                        m.partition(),
                        m.offset()
                    );
                }
                Some(Err(e)) => log_consumer_error(&e),
            }
            group.housekeeping(&consumer)?;
        }
        match &failure {
            Some(f) => {
                group.health.set_phase(Phase::Failed(f.to_string()));
                if f.output_lost() {
                    // Nothing more is stored: the lost output's message and everything after
                    // it will be consumed again by whoever owns the partition next.
                    return Err(ServiceError::OutputLost(f.clone()));
                }
                // After a task failure the other partitions are released as in a stop
                // (their acknowledged work committed), and health keeps saying what failed.
            }
            None => {
                tracing::info!("stopping: finishing in-flight work");
                group.health.set_phase(Phase::Stopping);
            }
        }
        let deadline = Instant::now() + config.shutdown_timeout;
        group.release(&consumer, &group.assigned())?;
        consumer.unsubscribe();
        let left = deadline.saturating_duration_since(Instant::now());
        group.producer.flush(left)?;
        // A delivery that failed while the last outputs were flushed.
        if let Some(f) = group.failures.first().filter(|f| f.output_lost()) {
            return Err(ServiceError::OutputLost(f.clone()));
        }
        if let Some(f) = failure {
            return Err(ServiceError::TaskFailed(f));
        }
        tracing::info!("stopped cleanly");
        Ok(())
    }

    /// Keeps every output (records, events, dead letters) under the smallest of the
    /// producer's `message.max.bytes` and the output topics' `max.message.bytes`: a record the
    /// producer takes and the topic refuses would fail its delivery and stop the service, and
    /// every next owner of the partition on the same message. Best effort: a broker that does
    /// not say (or refuses to) leaves the producer's limit.
    fn agree_on_message_size(&self) {
        let config = &self.group.config;
        let t = &config.topics;
        let mut outputs = vec![t.processed.as_str(), t.triggers.as_str(), t.dlq.as_str()];
        outputs.extend(t.epochs.as_deref());
        let limits = match topics::message_limits(
            &config.client_config(),
            &config.auth,
            &outputs,
            config.connect_timeout,
        ) {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("topic size limits unknown: {e}");
                return;
            }
        };
        let producer = self.group.producer.max_message_bytes();
        if let Some((topic, &limit)) = limits.iter().min_by_key(|(_, l)| **l)
            && limit < producer
        {
            tracing::info!(
                "outputs kept under {limit} bytes, the max.message.bytes of {topic} (the producer takes {producer})"
            );
            self.group.max_output_bytes.store(limit, Ordering::Relaxed);
        }
    }

    /// Waits until the broker answers and has every topic the service needs, logging each
    /// new reason once. Topics are an admin step: the service never creates them. Returns
    /// false when a stop was requested meanwhile.
    fn wait_for_topics(&self) -> bool {
        let config = &self.group.config;
        let client = config.client_config();
        let health = &self.group.health;
        let mut last = String::new();
        let mut backoff = Backoff::default();
        loop {
            let reason = match topics::check(
                &client,
                &config.auth,
                &config.topics,
                config.connect_timeout,
            ) {
                Ok(report) if report.ok() => {
                    if !last.is_empty() {
                        tracing::info!("topics present; starting");
                    }
                    return true;
                }
                Ok(report) => {
                    let reason = match report.problems().into_iter().next() {
                        Some(problem) => problem,
                        None => format!(
                            "missing topics: {}; create them with: {}",
                            report.missing().join(", "),
                            topics::CREATE_COMMAND
                        ),
                    };
                    health.set_phase(Phase::WaitingForTopics(reason.clone()));
                    reason
                }
                Err(e) => {
                    let reason = format!(
                        "cannot reach Kafka at {} (waited up to {}s): {e}",
                        config.bootstrap_servers,
                        config.connect_timeout.as_secs()
                    );
                    health.set_phase(Phase::WaitingForBroker(reason.clone()));
                    reason
                }
            };
            if reason != last {
                tracing::error!("{reason}; retrying with backoff (1s doubling to 60s)");
                last = reason;
            }
            if self.stop.sleep(backoff.next()) {
                return false;
            }
        }
    }
}

/// Waits between retries: 1 s doubling to 60 s, each scaled by a random factor in
/// [0.8, 1.2) so that many instances restarted together do not retry in step.
#[derive(Debug, Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = Duration::from_secs(1u64 << self.attempt.min(6)).min(Duration::from_secs(60));
        self.attempt = self.attempt.saturating_add(1);
        // A fresh std hasher key is random per process and call: jitter without a crate.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(self.attempt);
        let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.8 + 0.4 * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_with_jitter() {
        let mut b = Backoff::default();
        let waits: Vec<f64> = (0..10).map(|_| b.next().as_secs_f64()).collect();
        let bases = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0];
        for (w, base) in waits.iter().zip(bases) {
            assert!(*w >= 0.8 * base && *w < 1.2 * base, "{waits:?}");
        }
    }
}
