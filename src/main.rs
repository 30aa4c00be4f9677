//! `eeg-pipeline`: real-time EEG processing, offline on files or as a Kafka service.
//!
//! This file only parses arguments, sets up logging and maps errors to exit codes:
//! 0 success, 2 bad input or usage (a one-line message names the file, line or key),
//! 1 any other failure (e.g. the output cannot be written).

mod flags;
mod http;
mod offline;
mod process;
mod replay;
mod report;
mod run;
mod tail;
mod topics;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use flags::{BadInput, ProcessArgs};

#[derive(Debug, Parser)]
#[command(name = "eeg-pipeline", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Process an EEG file offline: EDF, EDF+, BDF, raw JSONL or a capture of binary raw
    /// batches in, eeg.processed/1 JSONL (or a CSV or Parquet table) out.
    Process(ProcessArgs),
    /// Run the Kafka service: consume eeg.raw.data, publish eeg.processed.data.
    Run(Box<run::RunArgs>),
    /// Publish an EEG file to eeg.raw.data as one or more simulated devices.
    Replay(replay::ReplayArgs),
    /// Check or create the service's topics (an admin step, run once).
    Topics(topics::TopicsArgs),
    /// Write one self-contained HTML report of an EEG file or of processed records: band
    /// powers, signal quality, trigger events and indices over time, per session.
    Report(report::ReportArgs),
    /// Print what the service publishes (records, trigger events, dead letters) or reads, as
    /// it arrives; never joins the service's consumer group.
    Tail(tail::TailArgs),
    /// Exit 0 when the local service is ready (/health/ready answers 200 within 2 s), else 1.
    Healthcheck {
        #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
        http_addr: std::net::SocketAddr,
    },
}

/// Logs go to standard error. The service (`run`) logs at `info` by default, as JSON lines
/// when `LOG_FORMAT=json` or when standard output is not a terminal (a container), as text
/// otherwise or with `LOG_FORMAT=text`; the other commands log warnings as text. `RUST_LOG`
/// overrides the level.
fn init_logging(service: bool) {
    use std::io::IsTerminal;
    let default = if service { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let json = service
        && match std::env::var("LOG_FORMAT").as_deref() {
            Ok("json") => true,
            Ok("text") => false,
            _ => !std::io::stdout().is_terminal(),
        };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    if service {
        // A panic is a bug; in a container its report must be a log line like any other
        // (the service itself turns a task's panic into a failure it reports and acts on).
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            tracing::error!(
                thread = thread.name().unwrap_or("unnamed"),
                at = %info.location().map_or("unknown".into(), |l| l.to_string()),
                "panic: {}",
                info.payload_as_str().unwrap_or("no message")
            );
        }));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Run(_)));
    let result = match cli.command {
        Command::Process(args) => process::run(&args),
        Command::Run(args) => {
            eeg_ingest::failpoints_from_env();
            run::run(&args)
        }
        Command::Replay(args) => replay::run(&args),
        Command::Topics(args) => topics::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Tail(args) => tail::run(&args),
        Command::Healthcheck { http_addr } => {
            return if http::healthcheck(http_addr) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let bad = e
                .downcast_ref::<BadInput>()
                .map(ToString::to_string)
                .or_else(|| {
                    e.downcast_ref::<eeg_offline::Error>()
                        .filter(|e| e.is_bad_input())
                        .map(ToString::to_string)
                });
            if let Some(bad) = bad {
                eprintln!("error: {bad}");
                ExitCode::from(2)
            } else {
                // Writing to a closed pipe (e.g. `| head`) is how a reader says it has enough.
                if e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                }) {
                    return ExitCode::SUCCESS;
                }
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}
