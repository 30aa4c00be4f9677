//! `eeg-pipeline report`: one self-contained HTML page of an input or of processed records.
//! The flags are checked here and handed to the offline library (`eeg_offline`), which
//! collects the windows and renders the page.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use eeg_offline::Outputs;

use crate::flags::{BadInput, check_channels, check_outputs};
use crate::offline;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// What `process` reads (EDF/EDF+/BDF, eeg.raw/1 JSONL or a capture of binary eeg.raw/1,
    /// "-" for standard input), or a JSONL file of eeg.processed/1 records (e.g. captured with
    /// `tail`), told by content.
    pub input: PathBuf,
    /// The HTML file to write ("-": standard output, when it is not a terminal).
    #[arg(long, value_name = "FILE.html")]
    pub out: PathBuf,
    /// Processing config (TOML), as for `process`; for eeg.processed/1 input only its
    /// trigger rules are used.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Only these channels (comma-separated), in this order.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
    /// EDF/BDF: the session id (default: the file name without extension). JSONL: only this
    /// session.
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Threads for the signal processing, as for `process`.
    #[arg(long, value_name = "N", default_value_t = crate::flags::default_threads())]
    pub threads: usize,
    /// No summary on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    if args.out == Path::new("-") && std::io::stdout().is_terminal() {
        return Err(BadInput(
            "--out -: standard output is a terminal; give --out FILE.html or redirect it".into(),
        )
        .into());
    }
    check_outputs(&args.input, &[("--out", Some(&args.out))])?;
    check_channels(args.channels.as_deref())?;
    let config = offline::load_config(args.config.as_deref(), true)?;
    let options = offline::options(
        &args.input,
        args.config.clone(),
        config,
        args.channels.clone(),
        args.session_id.clone(),
        args.threads,
    );
    let mut outputs = Outputs::default();
    outputs.report = Some(offline::target(&args.out));
    offline::run(&options, &outputs, &args.input, Some(&args.out), args.quiet)
}
