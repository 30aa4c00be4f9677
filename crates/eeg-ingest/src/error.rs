//! How the service fails, typed so that the place that decides can tell the cases apart:
//! lost output stops the service without storing another offset; a failed task stops it
//! after the other partitions have committed what the broker acknowledged.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::error::KafkaError;

/// A record the producer did not take.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot produce to {topic}: {source}")]
pub struct ProduceError {
    pub topic: String,
    #[source]
    pub source: KafkaError,
}

/// What stops the service while it consumes.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The broker did not take an output, after the producer's retries.
    #[error("delivery to {topic} partition {partition} failed after retries: {source}")]
    Delivery {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    /// The producer refused an output outright (e.g. larger than `message.max.bytes`).
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// A partition's worker panicked: a bug, reported with the panic's message.
    #[error("partition {partition} worker failed: {message}")]
    WorkerPanicked { partition: i32, message: String },
    /// A partition's worker ended without a reason.
    #[error("partition worker for {0} stopped unexpectedly")]
    WorkerDied(i32),
    /// The consumer gave a partition no queue of its own, so no worker could read it.
    #[error("partition {0}: no queue of its own")]
    NoQueue(i32),
}

impl Failure {
    /// An output is lost: nothing after it may ever be committed.
    pub fn output_lost(&self) -> bool {
        matches!(self, Failure::Delivery { .. } | Failure::Produce(_))
    }
}

/// Why [`crate::Service::run`] returned an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    /// An output was lost; the offsets of its message and everything after it are not
    /// stored, so the next owner of the partition processes them again.
    #[error("output lost: {0}; stopped without storing the offsets of the lost output")]
    OutputLost(Failure),
    /// A background task failed; the partitions were released, committing only what the
    /// broker acknowledged.
    #[error("{0}; stopped without committing past its unfinished work")]
    TaskFailed(Failure),
    #[error("trigger rules: {0}")]
    Triggers(#[from] eeg_session::TriggerConfigError),
}

/// The service's failures as they happen, on any thread: the first one is the service's
/// reason to stop (logged once, as an error); later ones are consequences, logged at debug.
#[derive(Debug, Default)]
pub struct Failures {
    first: OnceLock<Failure>,
    /// Any failure so far lost an output (not only the first).
    output_lost: AtomicBool,
}

impl Failures {
    /// Records `failure`; true when it is the first.
    pub fn report(&self, failure: Failure) -> bool {
        if failure.output_lost() {
            self.output_lost.store(true, Ordering::Release);
        }
        let line = failure.to_string();
        match self.first.set(failure) {
            Ok(()) => {
                tracing::error!("{line}; stopping");
                true
            }
            Err(_) => {
                tracing::debug!("{line}");
                false
            }
        }
    }

    pub fn first(&self) -> Option<&Failure> {
        self.first.get()
    }

    pub fn output_lost(&self) -> bool {
        self.output_lost.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode;

    fn refused() -> Failure {
        Failure::Produce(ProduceError {
            topic: "eeg.processed.data".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        })
    }

    #[test]
    fn the_first_failure_is_the_reason_and_any_lost_output_is_remembered() {
        let f = Failures::default();
        assert!(f.first().is_none() && !f.output_lost());
        assert!(f.report(Failure::WorkerPanicked {
            partition: 2,
            message: "boom".into()
        }));
        assert!(!f.output_lost());
        assert!(!f.report(refused()));
        assert!(
            matches!(
                f.first(),
                Some(Failure::WorkerPanicked { partition: 2, .. })
            ),
            "{:?}",
            f.first()
        );
        assert!(f.output_lost(), "a later lost output still counts");
    }

    #[test]
    fn failures_read_as_the_log_lines_operators_know() {
        assert_eq!(
            Failure::WorkerPanicked {
                partition: 1,
                message: "injected fault".into()
            }
            .to_string(),
            "partition 1 worker failed: injected fault"
        );
        assert!(
            refused()
                .to_string()
                .starts_with("cannot produce to eeg.processed.data: ")
        );
        let e = ServiceError::OutputLost(Failure::Delivery {
            topic: "t".into(),
            partition: 0,
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        });
        assert!(
            e.to_string()
                .starts_with("output lost: delivery to t partition 0 failed after retries: "),
            "{e}"
        );
        assert!(refused().output_lost());
        assert!(!Failure::WorkerDied(0).output_lost());
        assert!(!Failure::NoQueue(0).output_lost());
    }
}
