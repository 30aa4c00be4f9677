//! The argument groups several commands share, the checks of arguments they share, and
//! the error that makes exit code 2.
//!
//! Commands flatten these groups into their own arguments; keeping them here lets `run`,
//! `replay`, `topics`, `tail`, `process` and `report` share them without importing each
//! other or `main.rs`.

use std::path::{Path, PathBuf};

/// An error caused by the input, the config or the arguments: exit code 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    /// EDF/EDF+/BDF recording, a JSONL file of eeg.raw/1 messages, or a capture of binary
    /// eeg.raw/1 (length-delimited protobuf, as `tail --topic raw --format pb` writes; a .pb
    /// name or told by its content). "-" reads JSONL or a capture from standard input.
    pub input: PathBuf,
    /// Processing config (TOML); every key is optional.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Where to write the output; "-" is standard output. A file is written under a temporary
    /// name and renamed when processing succeeds.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    pub out: PathBuf,
    /// Output format. Default: from the extension of --out (.jsonl, .csv, .parquet; another
    /// extension is refused), jsonl for a name without one. The table's columns are listed
    /// in docs/processing.md.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,
    /// Process only these channels (EDF/BDF signal labels, or the messages' channel names;
    /// comma-separated), in this order.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
    /// EDF/BDF: the records' session id (default: the file name without extension). Raw
    /// messages: process only this session's.
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Also evaluate the trigger rules (the config's `[[triggers]]`, or the default rules)
    /// and write their analytics.trigger/1 events to FILE, one per line.
    #[arg(long, value_name = "FILE")]
    pub triggers: Option<PathBuf>,
    /// Threads for the signal processing of an EDF/BDF session with many channels (its
    /// channels are split between them; the output is the same for any number). Default:
    /// the number of CPUs.
    #[arg(long, value_name = "N", default_value_t = default_threads())]
    pub threads: usize,
    /// Also write an HTML report of the session(s) to FILE (as `eeg-pipeline report` does).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Also cut an epoch around every event (eeg.event/1 messages, EDF+/BDF+ annotations, a
    /// Status channel's trigger codes) as the config's `[epochs]` says (MNE's defaults
    /// without one) and write one eeg.epoch/1 record per event to FILE, one per line.
    #[arg(long, value_name = "FILE")]
    pub epochs: Option<PathBuf>,
    /// The recording's events from a BIDS events.tsv (onset, duration, trial_type, value,
    /// sample), beside those it holds itself (EDF/BDF input).
    #[arg(long, value_name = "FILE.tsv")]
    pub events: Option<PathBuf>,
    /// Also write the average of each label's kept epochs (the ERP) and its standard error,
    /// CSV, one row per session, label, channel and sample.
    #[arg(long, value_name = "FILE.csv")]
    pub erp: Option<PathBuf>,
    /// Also write every event placed, as a BIDS events.tsv with its sample.
    #[arg(long, value_name = "FILE.tsv")]
    pub events_out: Option<PathBuf>,
    /// No summary and no progress bar on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `process --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// eeg.processed/1 records, one JSON object per line
    Jsonl,
    /// a long table, one row per window and channel, with a header row
    Csv,
    /// the same table as Parquet (Snappy-compressed)
    Parquet,
}

impl From<FormatArg> for eeg_offline::Format {
    fn from(f: FormatArg) -> eeg_offline::Format {
        match f {
            FormatArg::Jsonl => eeg_offline::Format::Jsonl,
            FormatArg::Csv => eeg_offline::Format::Csv,
            FormatArg::Parquet => eeg_offline::Format::Parquet,
        }
    }
}

/// Refuses outputs that would overwrite the input or each other, before anything is created:
/// `--out`, `--triggers` or `--report` naming the input file (by any path: a symlink, a hard
/// link), or two of them naming one file. Files are compared by identity (device and inode),
/// not by path. Standard output and devices (`/dev/null`) are never refused.
pub fn check_outputs(input: &Path, outputs: &[(&str, Option<&PathBuf>)]) -> Result<(), BadInput> {
    use std::os::unix::fs::MetadataExt;
    /// The identity of an existing regular file; `None` for anything else (a device, a pipe,
    /// standard output, a file not there yet, which cannot be the input).
    fn identity(meta: std::io::Result<std::fs::Metadata>) -> Option<(u64, u64)> {
        meta.ok()
            .filter(|m| m.is_file())
            .map(|m| (m.dev(), m.ino()))
    }
    /// Where a path will land: its directory resolved (symlinks, `..`) and its name, so two
    /// spellings of one output not created yet compare equal.
    fn resolved(path: &Path) -> PathBuf {
        if let Ok(p) = path.canonicalize() {
            return p;
        }
        let parent = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match (parent.canonicalize(), path.file_name()) {
            (Ok(dir), Some(name)) => dir.join(name),
            _ => path.to_path_buf(),
        }
    }
    /// What an output holds, for the message when two are one file.
    fn holds(flag: &str) -> &'static str {
        match flag {
            "--triggers" => "the events",
            "--epochs" => "the epochs",
            "--events-out" => "the events placed",
            "--erp" => "the averages",
            "--out" => "the records",
            _ => "the report",
        }
    }
    let stdio = |p: &Path| p == Path::new("-");
    let input_id = if stdio(input) {
        // Standard input redirected from a file (`< rec.jsonl`) is that file.
        use std::os::fd::AsFd;
        let stdin = std::io::stdin();
        identity(
            stdin
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
                .and_then(|f| f.metadata()),
        )
    } else {
        identity(std::fs::metadata(input))
    };
    let files: Vec<(&str, &PathBuf)> = outputs
        .iter()
        .filter_map(|&(flag, path)| path.filter(|p| !stdio(p)).map(|p| (flag, p)))
        .collect();
    for &(flag, path) in &files {
        if input_id.is_some() && identity(std::fs::metadata(path)) == input_id {
            return Err(BadInput(format!(
                "{flag} {}: is the input file {}; write the output to another file",
                path.display(),
                input.display()
            )));
        }
    }
    for (j, &(flag, path)) in files.iter().enumerate() {
        for &(earlier, first) in &files[..j] {
            let same = match (
                identity(std::fs::metadata(first)),
                identity(std::fs::metadata(path)),
            ) {
                (Some(a), Some(b)) => a == b,
                // Not there yet (or not a regular file, when both are absent): the same place.
                (None, None) => {
                    !std::fs::metadata(first).is_ok_and(|m| !m.is_file())
                        && resolved(first) == resolved(path)
                }
                _ => false,
            };
            if same {
                return Err(BadInput(format!(
                    "{flag} {}: is the same file as {earlier} {}; {} and {} need a file each",
                    path.display(),
                    first.display(),
                    holds(flag),
                    holds(earlier)
                )));
            }
        }
    }
    Ok(())
}

/// `--channels` naming a channel twice would output it twice: bad input.
pub fn check_channels(channels: Option<&[String]>) -> Result<(), BadInput> {
    let Some(c) = channels else { return Ok(()) };
    for (i, ch) in c.iter().enumerate() {
        if c[..i].contains(ch) {
            return Err(BadInput(format!("--channels: '{ch}' is named twice")));
        }
    }
    Ok(())
}

/// Kafka connection settings shared by `run` and `replay`.
#[derive(Debug, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        global = true,
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    pub bootstrap_servers: String,
    /// Extra librdkafka property for both clients, as KEY=VALUE (repeatable).
    #[arg(global = true, long = "kafka", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// PLAINTEXT, SSL, SASL_SSL (or SASL_PLAINTEXT, for local brokers only).
    #[arg(global = true, long, env = "KAFKA_SECURITY_PROTOCOL", default_value = "PLAINTEXT",
          value_parser = ["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"])]
    pub security_protocol: String,
    /// AWS_MSK_IAM (tokens signed with the AWS credentials of the task, in AWS_REGION), or
    /// SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (with the username and password below).
    #[arg(global = true, long, env = "KAFKA_SASL_MECHANISM",
          value_parser = ["AWS_MSK_IAM", "SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])]
    pub sasl_mechanism: Option<String>,
    #[arg(global = true, long, env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// Never logged or reported.
    #[arg(
        global = true,
        long,
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
    /// CA bundle to verify the brokers' certificates (default: the system's).
    #[arg(global = true, long, env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<String>,
    /// The MSK cluster's region, for AWS_MSK_IAM (ECS sets it in every task).
    #[arg(global = true, long, env = "AWS_REGION")]
    pub aws_region: Option<String>,
}

impl KafkaArgs {
    /// The librdkafka properties of the security settings, then the `--kafka` ones.
    pub fn properties(&self) -> Result<Vec<(String, String)>, BadInput> {
        let mut p = vec![(
            "security.protocol".to_string(),
            self.security_protocol.to_lowercase(),
        )];
        let sasl = self.security_protocol.starts_with("SASL_");
        match (&self.sasl_mechanism, sasl) {
            (Some(m), true) if m == "AWS_MSK_IAM" => {
                p.push(("sasl.mechanism".into(), "OAUTHBEARER".into()));
                self.iam_region()?;
            }
            (Some(m), true) => {
                p.push(("sasl.mechanism".into(), m.clone()));
                let (Some(user), Some(password)) = (&self.sasl_username, &self.sasl_password)
                else {
                    return Err(BadInput(format!(
                        "KAFKA_SASL_MECHANISM={m} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
                    )));
                };
                p.push(("sasl.username".into(), user.clone()));
                p.push(("sasl.password".into(), password.clone()));
            }
            (None, true) => {
                return Err(BadInput(format!(
                    "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_MECHANISM",
                    self.security_protocol
                )));
            }
            (Some(m), false) => {
                return Err(BadInput(format!(
                    "KAFKA_SASL_MECHANISM={m} needs KAFKA_SECURITY_PROTOCOL=SASL_SSL"
                )));
            }
            (None, false) => {}
        }
        if let Some(ca) = &self.ssl_ca_location {
            p.push(("ssl.ca.location".into(), ca.clone()));
        }
        p.extend(self.properties.iter().cloned());
        Ok(p)
    }

    /// The token source every client shares: MSK IAM signing for AWS_MSK_IAM, else none.
    /// Call once per process; nothing is fetched until a client asks for a token.
    pub fn auth(&self) -> Result<eeg_kafka::Auth, BadInput> {
        if self.sasl_mechanism.as_deref() != Some("AWS_MSK_IAM") {
            return Ok(eeg_kafka::Auth::properties_only());
        }
        msk_iam(self.iam_region()?)
    }

    fn iam_region(&self) -> Result<&str, BadInput> {
        match self.aws_region.as_deref() {
            Some(r) if !r.is_empty() => Ok(r),
            _ => Err(BadInput(
                "KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs AWS_REGION (the cluster's region)".into(),
            )),
        }
    }

    /// Client settings for an admin or consumer client.
    pub fn client_config(&self) -> Result<rdkafka::ClientConfig, BadInput> {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in self.properties()? {
            c.set(k, v);
        }
        Ok(c)
    }
}

#[cfg(feature = "msk-iam")]
fn msk_iam(region: &str) -> Result<eeg_kafka::Auth, BadInput> {
    /// A signature waits this long for AWS credentials before the token refresh fails
    /// (librdkafka then retries it).
    const SIGNING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
    let signer = eeg_kafka::msk_iam::MskIam::from_default_chain(region, SIGNING_TIMEOUT)
        .map_err(|e| BadInput(e.to_string()))?;
    Ok(eeg_kafka::Auth::with_tokens(std::sync::Arc::new(signer)))
}

#[cfg(not(feature = "msk-iam"))]
fn msk_iam(_region: &str) -> Result<eeg_kafka::Auth, BadInput> {
    Err(BadInput(
        "KAFKA_SASL_MECHANISM=AWS_MSK_IAM: this build has no MSK IAM support \
         (rebuild with the msk-iam feature)"
            .into(),
    ))
}

pub fn parse_property(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// Topic names, overridable for shared clusters and tests.
#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[arg(
        global = true,
        long,
        env = "EEG_RAW_TOPIC",
        default_value = "eeg.raw.data"
    )]
    pub raw_topic: String,
    #[arg(
        global = true,
        long,
        env = "EEG_PROCESSED_TOPIC",
        default_value = "eeg.processed.data"
    )]
    pub processed_topic: String,
    #[arg(
        global = true,
        long,
        env = "EEG_TRIGGERS_TOPIC",
        default_value = "analytics.triggers"
    )]
    pub triggers_topic: String,
    #[arg(
        global = true,
        long,
        env = "EEG_DLQ_TOPIC",
        default_value = "eeg.raw.data.dlq"
    )]
    pub dlq_topic: String,
    /// Compacted topic of session snapshots, partitioned like the raw topic.
    #[arg(
        global = true,
        long,
        env = "EEG_STATE_TOPIC",
        default_value = "eeg.session.state"
    )]
    pub state_topic: String,
    /// Epoch records; used when the config file has an `[epochs]` table.
    #[arg(
        global = true,
        long,
        env = "EEG_EPOCHS_TOPIC",
        default_value = "eeg.epochs.data"
    )]
    pub epochs_topic: String,
}

impl TopicArgs {
    pub fn topics(&self) -> eeg_ingest::Topics {
        eeg_ingest::Topics {
            raw: self.raw_topic.clone(),
            processed: self.processed_topic.clone(),
            triggers: self.triggers_topic.clone(),
            dlq: self.dlq_topic.clone(),
            state: self.state_topic.clone(),
            epochs: Some(self.epochs_topic.clone()),
        }
    }
}
