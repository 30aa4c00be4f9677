//! What `process` and `report` share around the offline library (`eeg_offline`): the
//! library's options from their flags and config file, the progress bar, and the lines on
//! standard error when a run ends.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use eeg_offline::{Input, Options, Outputs, Target};

use crate::flags::BadInput;
use eeg_session::config;

/// Inputs larger than this get a progress bar (when standard error is a terminal).
const PROGRESS_MIN_BYTES: u64 = 16 << 20;

/// An input argument: `-` is standard input.
pub fn input(path: &Path) -> Input {
    if path == Path::new("-") {
        Input::Stdin
    } else {
        Input::File(path.to_path_buf())
    }
}

/// An output argument: `-` is standard output.
pub fn target(path: &Path) -> Target {
    if path == Path::new("-") {
        Target::Stdout
    } else {
        Target::File(path.to_path_buf())
    }
}

/// The config file, or the defaults; its warnings (trigger rules that can never fire) are
/// logged when the rules will run.
pub fn load_config(path: Option<&Path>, rules_run: bool) -> Result<config::Config, BadInput> {
    let file = config::load_or_default(path).map_err(|e| BadInput(e.to_string()))?;
    if rules_run {
        for w in file.warnings() {
            tracing::warn!("{w}");
        }
    }
    Ok(file)
}

/// The flags `process` and `report` share, as the library's options.
pub fn options(
    input_path: &Path,
    config_file: Option<PathBuf>,
    config: config::Config,
    channels: Option<Vec<String>>,
    session_id: Option<String>,
    threads: usize,
) -> Options {
    let mut options = Options::new(input(input_path));
    options.processing = config.processing;
    options.triggers = config.triggers;
    options.epochs = config.epochs;
    options.events = config.events;
    options.config_file = config_file;
    options.channels = channels;
    options.session_id = session_id;
    options.threads = threads;
    options
}

/// Runs the library with a progress bar, then says what was done (unless `quiet`): one
/// line per session, and one for the report, named `report_path` as given.
pub fn run(
    options: &Options,
    outputs: &Outputs,
    input_path: &Path,
    report_path: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<()> {
    let progress = progress_bar(input_path, quiet);
    let result = eeg_offline::process(options, outputs, &|n| progress.inc(n));
    progress.finish_and_clear();
    let done = result?;
    if quiet {
        return Ok(());
    }
    for s in &done.sessions {
        eprintln!("{s}");
    }
    if let (Some(r), Some(path)) = (done.report, report_path) {
        eprintln!(
            "report: {} ({} session{}, {} windows, {} kB)",
            path.display(),
            r.sessions,
            if r.sessions == 1 { "" } else { "s" },
            r.windows,
            r.bytes.div_ceil(1024)
        );
    }
    Ok(())
}

/// A progress bar of the bytes of `input` read, for a large file when standard error is a
/// terminal; hidden otherwise.
pub fn progress_bar(input: &Path, quiet: bool) -> indicatif::ProgressBar {
    let size = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    if quiet || size < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
