//! `eeg-pipeline process`: an EEG file through the session processor, records out as JSONL,
//! or as a table in CSV or Parquet. The flags are checked here and handed to the offline
//! library (`eeg_offline`), which reads, processes and writes.

use std::io::IsTerminal;
use std::path::Path;

use eeg_offline::{Format, Outputs};

use crate::flags::{BadInput, ProcessArgs, check_channels, check_outputs};
use crate::offline;

pub fn run(args: &ProcessArgs) -> anyhow::Result<()> {
    check_outputs(
        &args.input,
        &[
            ("--out", Some(&args.out)),
            ("--triggers", args.triggers.as_ref()),
            ("--report", args.report.as_ref()),
        ],
    )?;
    if let Some(r) = args.report.as_ref().filter(|r| *r == Path::new("-"))
        && (args.out == Path::new("-") || std::io::stdout().is_terminal())
    {
        return Err(BadInput(format!(
            "--report {}: standard output {}; give --report FILE.html",
            r.display(),
            if args.out == Path::new("-") {
                "carries the records"
            } else {
                "is a terminal"
            }
        ))
        .into());
    }
    check_channels(args.channels.as_deref())?;
    let format = format(args);
    check_format(args, format)?;
    // The report marks the events on its time axes, so the rules run for it too.
    let rules_run = args.triggers.is_some() || args.report.is_some();
    let config = offline::load_config(args.config.as_deref(), rules_run)?;
    let options = offline::options(
        &args.input,
        args.config.clone(),
        config,
        args.channels.clone(),
        args.session_id.clone(),
        args.threads,
    );
    let mut outputs = Outputs::default();
    outputs.records = Some(offline::target(&args.out));
    outputs.format = format;
    outputs.events = args.triggers.as_deref().map(offline::target);
    outputs.report = args.report.as_deref().map(offline::target);
    offline::run(
        &options,
        &outputs,
        &args.input,
        args.report.as_deref(),
        args.quiet,
    )
}

/// `--format` when given; otherwise `--out`'s extension (`.csv`, `.parquet`), else JSONL.
fn format(args: &ProcessArgs) -> Format {
    if let Some(f) = args.format {
        return f.into();
    }
    match args.out.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
        Some(ext) if ext.eq_ignore_ascii_case("parquet") => Format::Parquet,
        _ => Format::Jsonl,
    }
}

/// Refuses what the output format cannot do, before anything is created: binary Parquet to a
/// terminal, and trigger events on standard output mixed into a table there.
fn check_format(args: &ProcessArgs, format: Format) -> Result<(), BadInput> {
    let stdout = args.out == Path::new("-");
    if format == Format::Parquet && stdout && std::io::stdout().is_terminal() {
        return Err(BadInput(
            "--format parquet: standard output is a terminal; give --out FILE.parquet or \
             redirect standard output"
                .into(),
        ));
    }
    if format != Format::Jsonl && stdout && args.triggers.as_deref() == Some(Path::new("-")) {
        return Err(BadInput(format!(
            "--triggers -: the events would be mixed into the {} table on standard output; \
             write them to a file",
            format.name()
        )));
    }
    Ok(())
}
