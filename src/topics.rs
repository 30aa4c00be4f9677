//! `eeg-pipeline topics check|create`: the admin step that makes the service's topics,
//! with the same connection settings as the service.

use std::time::Duration;

use eeg_ingest::topics::{self, Created};

use crate::flags::{KafkaArgs, TopicArgs};

#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    pub action: TopicsAction,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Seconds to wait for the broker.
    #[arg(
        long,
        env = "KAFKA_CONNECT_TIMEOUT_S",
        default_value_t = 5,
        global = true
    )]
    pub timeout_s: u64,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicsAction {
    /// Say which of the service's topics exist; exit 1 when one is missing.
    Check,
    /// Create the service's topics that do not exist (idempotent).
    Create {
        /// Partitions of each new topic (the state topic always gets the raw topic's).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: u32,
        /// Replication factor of new topics; -1 leaves it to the broker's default.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i32,
    },
}

pub fn run(args: &TopicsArgs) -> anyhow::Result<()> {
    let client = args.kafka.client_config()?;
    let auth = args.kafka.auth()?;
    let names = args.topics.topics();
    let timeout = Duration::from_secs(args.timeout_s.max(1));
    let servers = &args.kafka.bootstrap_servers;
    let unreachable = |e: topics::BrokerError| {
        anyhow::anyhow!(
            "cannot reach Kafka at {servers} (waited up to {}s): {e}",
            timeout.as_secs()
        )
    };
    match &args.action {
        TopicsAction::Check => {
            let report = topics::check(&client, &auth, &names, timeout).map_err(unreachable)?;
            for t in &report.topics {
                let what = match (t.partitions, t.compacted) {
                    (Some(p), _) => format!("{p} partitions"),
                    (None, false) => "missing".to_string(),
                    (None, true) => {
                        "missing (to be created with cleanup.policy=compact)".to_string()
                    }
                };
                println!("{:<28} {:<13} {what}", t.name, t.role);
            }
            let missing = report.missing();
            anyhow::ensure!(
                missing.is_empty(),
                "missing topics: {}; create them with: {}",
                missing.join(", "),
                topics::CREATE_COMMAND
            );
            if let Some(p) = report.problems().first() {
                anyhow::bail!("{p}");
            }
            Ok(())
        }
        TopicsAction::Create {
            partitions,
            replication_factor,
        } => {
            let done = topics::create(
                &client,
                &auth,
                &names,
                *partitions as usize,
                *replication_factor,
                timeout,
            )
            .map_err(unreachable)?;
            for (name, what) in done {
                match what {
                    Created::Created { partitions } => {
                        println!("created {name} ({partitions} partitions)")
                    }
                    Created::Existed { partitions } => {
                        println!("exists  {name} ({partitions} partitions)")
                    }
                }
            }
            Ok(())
        }
    }
}
