//! `eeg-pipeline process`: an EEG file through the session processor, records out as JSONL,
//! or as a table in CSV or Parquet. The flags are checked here and handed to the offline
//! library (`eeg_offline`), which reads, processes and writes.

use std::io::IsTerminal;
use std::path::Path;

use eeg_offline::{Format, Outputs};

use clap::ValueEnum;

use crate::flags::{BadInput, FormatArg, ProcessArgs, check_channels, check_outputs};
use crate::offline;

pub fn run(args: &ProcessArgs) -> anyhow::Result<()> {
    check_outputs(
        &args.input,
        &[
            ("--out", Some(&args.out)),
            ("--triggers", args.triggers.as_ref()),
            ("--report", args.report.as_ref()),
            ("--epochs", args.epochs.as_ref()),
            ("--events-out", args.events_out.as_ref()),
            ("--erp", args.erp.as_ref()),
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
    let format = format(args)?;
    check_format(args, format)?;
    // The report marks the events on its time axes, so the rules run for it too.
    let rules_run = args.triggers.is_some() || args.report.is_some();
    let config = offline::load_config(args.config.as_deref(), rules_run)?;
    let mut options = offline::options(
        &args.input,
        args.config.clone(),
        config,
        args.channels.clone(),
        args.session_id.clone(),
        args.threads,
    );
    options.events_file = args.events.clone();
    let mut outputs = Outputs::default();
    outputs.records = Some(offline::target(&args.out));
    outputs.format = format;
    outputs.events = args.triggers.as_deref().map(offline::target);
    outputs.report = args.report.as_deref().map(offline::target);
    outputs.epochs = args.epochs.as_deref().map(offline::target);
    outputs.events_out = args.events_out.as_deref().map(offline::target);
    outputs.erp = args.erp.as_deref().map(offline::target);
    offline::run(
        &options,
        &outputs,
        &args.input,
        args.report.as_deref(),
        args.quiet,
    )
}

/// `--format` when given; otherwise `--out`'s extension (`.jsonl`, `.csv`, `.parquet`, ...),
/// and JSON lines for a name without one (standard output, `/dev/null`). An extension no
/// format is written as is bad input: the output would not be what its name says.
fn format(args: &ProcessArgs) -> Result<Format, BadInput> {
    if let Some(f) = args.format {
        return Ok(f.into());
    }
    let Some(ext) = args.out.extension() else {
        return Ok(Format::Jsonl);
    };
    let ext = ext.to_string_lossy();
    Format::from_extension(&ext).ok_or_else(|| {
        let accepted: Vec<String> = Format::EXTENSIONS.iter().map(|e| format!(".{e}")).collect();
        let formats: Vec<String> = FormatArg::value_variants()
            .iter()
            .filter_map(|f| f.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        BadInput(format!(
            "--out {}: unknown extension .{ext} (accepted: {}); --format {} picks the format explicitly",
            args.out.display(),
            accepted.join(", "),
            formats.join("|")
        ))
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProcessArgs,
    }

    fn resolve(flags: &[&str]) -> Result<Format, String> {
        let cli =
            Cli::try_parse_from([&["process", "in.edf"][..], flags].concat()).expect("flags parse");
        format(&cli.args).map_err(|e| e.0)
    }

    #[test]
    fn the_format_comes_from_the_flag_then_the_extension() {
        assert_eq!(resolve(&[]), Ok(Format::Jsonl));
        assert_eq!(resolve(&["--out", "-"]), Ok(Format::Jsonl));
        assert_eq!(resolve(&["--out", "/dev/null"]), Ok(Format::Jsonl));
        assert_eq!(resolve(&["--out", "a/b.csv"]), Ok(Format::Csv));
        assert_eq!(resolve(&["--out", "b.CSV"]), Ok(Format::Csv));
        assert_eq!(resolve(&["--out", "b.parquet"]), Ok(Format::Parquet));
        assert_eq!(resolve(&["--out", "b.jsonl"]), Ok(Format::Jsonl));
        assert_eq!(resolve(&["--out", "b.ndjson"]), Ok(Format::Jsonl));
        assert_eq!(resolve(&["--out", "parquet"]), Ok(Format::Jsonl));
        assert_eq!(
            resolve(&["--out", "b.parquet", "--format", "csv"]),
            Ok(Format::Csv)
        );
        assert_eq!(
            resolve(&["--out", "b.xlsx", "--format", "jsonl"]),
            Ok(Format::Jsonl)
        );
    }

    #[test]
    fn an_extension_no_format_is_written_as_is_bad_input() {
        assert_eq!(
            resolve(&["--out", "features.xlsx"]),
            Err(
                "--out features.xlsx: unknown extension .xlsx (accepted: .jsonl, .ndjson, \
                 .json, .csv, .parquet); --format jsonl|csv|parquet picks the format explicitly"
                    .into()
            )
        );
        assert!(resolve(&["--out", "b.parquet.txt"]).is_err());
    }
}
