//! A run: an input through the session core into the outputs asked for, each written whole
//! or not at all.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use eeg_session::TriggerEngine;

use crate::detect::{self, Accepts, Kind};
use crate::options::{Input, Options, Outputs};
use crate::output::{Output, Target};
use crate::raw::RawMessages;
use crate::report::{Collector, ConfigMeta, InputMeta};
use crate::sink::{EpochWriter, Epochs, Triggers};
use crate::summary::Summary;
use crate::table::Format;
use crate::writer::Writer;
use crate::{Error, edf, raw, report, table};

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Processed {
    /// Each session processed, in order of appearance (none for records read back).
    pub sessions: Vec<Summary>,
    /// The report, when one was written.
    pub report: Option<ReportWritten>,
}

/// The size of a written report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportWritten {
    pub sessions: usize,
    pub windows: u64,
    pub bytes: usize,
}

/// Reads `options.input`, processes it and writes `outputs`: every output file appears
/// whole when the run succeeds, and none is left behind when it fails. `progress` is told
/// the bytes of input read as they are.
///
/// An input that cannot be read is reported before any output is created.
pub fn process(
    options: &Options,
    outputs: &Outputs,
    progress: &dyn Fn(u64),
) -> Result<Processed, Error> {
    let config = &options.processing;
    if outputs.records.is_some() && outputs.format != Format::Jsonl {
        table::check_columns(&config.bands, outputs.format)?;
    }
    // The report marks the events on its time axes, so the rules run for it too.
    let evaluate = outputs.events.is_some() || outputs.report.is_some();
    let mut triggers = if evaluate {
        let engine = TriggerEngine::new(options.triggers.rules.clone())
            .map_err(|e| Error::bad(e.to_string()))?;
        Some(Triggers {
            engine,
            output: None,
        })
    } else {
        None
    };
    let mut report = outputs.report.as_ref().map(|_| Collector::default());
    // Records read back make a report, and nothing else.
    let accepts = if outputs.records.is_none() && outputs.report.is_some() {
        Accepts::RawOrProcessed
    } else {
        Accepts::Raw
    };
    // The input's kind, and a JSONL input's first line, before any output is created: an
    // input that cannot be read leaves no file behind. The first line tells eeg.processed/1
    // records (which only a report reads) from raw batches.
    let kind = match &options.input {
        Input::Stdin => Kind::Jsonl,
        Input::File(path) => detect::detect(path, accepts)?,
    };
    let jsonl = match kind {
        Kind::Jsonl => Some(open_jsonl(&options.input)?),
        _ => None,
    };
    if let Some(Jsonl { name, head, .. }) = &jsonl
        && report::is_processed(head)
    {
        if accepts == Accepts::Raw {
            return Err(Error::bad(format!(
                "{name}: line 1: an eeg.processed/1 record; `process` reads eeg.raw/1 messages (`eeg-pipeline report` reads records)"
            )));
        }
        let engine = triggers.map(|t| t.engine).expect("rules run for a report");
        return report_of_records(options, outputs, jsonl.expect("matched above"), &engine);
    }
    // Read before any output is created, as the input is.
    let tsv = match &options.events_file {
        None => None,
        Some(_) if kind != Kind::Edf => {
            return Err(Error::bad(format!(
                "{}: --events FILE.tsv goes with an EDF/BDF recording; JSONL inputs and captures carry their events as eeg.event/1 messages",
                options.input.name()
            )));
        }
        Some(path) => {
            let name = path.display().to_string();
            let file =
                File::open(path).map_err(|e| Error::bad(format!("{name}: cannot open: {e}")))?;
            Some(crate::bids::EventsTsv::new(name, BufReader::new(file))?)
        }
    };
    if let (Some(t), Some(target)) = (triggers.as_mut(), &outputs.events) {
        t.output = Some(Output::create(target)?);
    }
    let report_out = match outputs.report.as_ref().map(Output::create).transpose() {
        Ok(r) => r,
        Err(e) => {
            if let Some((file, _)) = triggers.and_then(|t| t.output) {
                file.discard();
            }
            return Err(e);
        }
    };
    let mut epochs = match open_epochs(options, outputs, tsv) {
        Ok(e) => e,
        Err(e) => {
            if let Some((file, _)) = triggers.and_then(|t| t.output) {
                file.discard();
            }
            if let Some((file, _)) = report_out {
                file.discard();
            }
            return Err(e);
        }
    };
    let (out, mut writer) = match &outputs.records {
        Some(target) => match Output::create(target) {
            Ok((out, sink)) => {
                let (format, config) = (outputs.format, config.clone());
                let encoder = move || format.encoder(&config, sink);
                (Some(out), Writer::start(encoder))
            }
            Err(e) => {
                // No partial file is left behind by a run that never started.
                if let Some((file, _)) = triggers.and_then(|t| t.output) {
                    file.discard();
                }
                if let Some((file, _)) = report_out {
                    file.discard();
                }
                if let Some(e) = epochs {
                    let _ = e.close(false);
                }
                return Err(e);
            }
        },
        // Nothing but the report is wanted: no record is encoded.
        None => (None, Writer::discard()),
    };
    let result = read_input(
        options,
        (kind, jsonl),
        &mut writer,
        triggers.as_mut(),
        report.as_mut(),
        epochs.as_mut(),
        progress,
    );
    // The writer's own error (e.g. a full disk) explains a failed run best.
    let written = writer.finish();
    let flushed = |s| {
        match triggers.as_mut().and_then(|t| t.output.as_mut()) {
            Some((_, w)) => w
                .flush()
                .map_err(|e| Error::output("writing trigger events", e)),
            None => Ok(()),
        }
        .map(|()| s)
    };
    let flushed_epochs = |s| match epochs.as_mut() {
        Some(e) => e
            .flush()
            .map(|()| s)
            .map_err(|e| Error::output("writing epochs or events", e)),
        None => Ok(s),
    };
    let sessions = match result
        .and_then(|s| written.map(|()| s))
        .and_then(flushed)
        .and_then(flushed_epochs)
    {
        Ok(s) => s,
        Err(e) => {
            if let Some(out) = out {
                out.discard();
            }
            if let Some(e) = epochs {
                let _ = e.close(false);
            }
            if let Some((file, _)) = triggers.and_then(|t| t.output) {
                file.discard();
            }
            if let Some((file, _)) = report_out {
                file.discard();
            }
            return Err(e);
        }
    };
    if let Some(out) = out {
        out.commit()?;
    }
    if let Some((file, _)) = triggers.as_mut().and_then(|t| t.output.take()) {
        file.commit()?;
    }
    if let Some(e) = epochs {
        e.close(true)?;
    }
    let report = match (report, report_out, &outputs.report) {
        (Some(collector), Some((file, sink)), Some(target)) => {
            let meta = ConfigMeta {
                processing: Some(config.clone()),
                path: options.config_file.clone(),
                rules: triggers
                    .map(|t| t.engine.rules().cloned().collect())
                    .unwrap_or_default(),
            };
            Some(write_report(
                options, target, &collector, &meta, file, sink,
            )?)
        }
        _ => None,
    };
    Ok(Processed { sessions, report })
}

/// The events and epochs outputs asked for, created (none left behind on failure), with
/// the events read beside the recording; `None` when nothing about events is asked.
fn open_epochs(
    options: &Options,
    outputs: &Outputs,
    tsv: Option<crate::bids::EventsTsv<BufReader<File>>>,
) -> Result<Option<Epochs>, Error> {
    if outputs.epochs.is_none()
        && outputs.events_out.is_none()
        && outputs.erp.is_none()
        && tsv.is_none()
    {
        return Ok(None);
    }
    let mut epochs = Epochs {
        // Epochs are cut only when asked for: MNE's defaults without an [epochs] table.
        config: (outputs.epochs.is_some() || outputs.erp.is_some())
            .then(|| options.epochs.clone().unwrap_or_default()),
        events: options.events.clone(),
        output: None,
        events_out: None,
        erp: None,
        tsv,
        origin_ms: None,
    };
    // Each file as it is created: a failure removes those made before it.
    let created = (|| {
        if let (Some(target), Some(config)) = (&outputs.epochs, epochs.config.as_ref()) {
            let format = epochs_format(target)?;
            let (file, w) = Output::create(target)?;
            let writer = match format {
                Format::Csv => {
                    let components: Vec<String> = config
                        .epoch
                        .components
                        .iter()
                        .map(|c| c.name.clone())
                        .collect();
                    let bands: Vec<String> = match config.epoch.erd {
                        Some(_) => options
                            .processing
                            .bands
                            .iter()
                            .map(|b| b.name.clone())
                            .collect(),
                        None => Vec::new(),
                    };
                    EpochWriter::csv(w, &components, &bands)
                }
                _ => Ok(EpochWriter::Jsonl(w)),
            };
            epochs.output = Some((
                file,
                writer.map_err(|e| Error::output("writing epochs", e))?,
            ));
        }
        if let Some(target) = &outputs.events_out {
            let (file, mut w) = Output::create(target)?;
            let header = crate::bids::write_header(&mut w);
            epochs.events_out = Some((file, w));
            header.map_err(|e| Error::output("writing events", e))?;
        }
        if let Some(target) = &outputs.erp {
            let (file, w) = Output::create(target)?;
            let mut w = csv::Writer::from_writer(w);
            let header = w.write_record(Epochs::ERP_COLUMNS);
            epochs.erp = Some((file, w));
            header.map_err(|e| Error::output("writing averages", e.into()))?;
        }
        Ok(())
    })();
    match created {
        Ok(()) => Ok(Some(epochs)),
        Err(e) => {
            let _ = epochs.close(false);
            Err(e)
        }
    }
}

/// What `--epochs FILE` writes, by its name: the long table for `.csv`, records (one per
/// line) for any other name; `.parquet` is refused.
fn epochs_format(target: &Target) -> Result<Format, Error> {
    let ext = match target {
        Target::File(p) => p.extension().and_then(|e| e.to_str()).unwrap_or(""),
        Target::Stdout => "",
    };
    match Format::from_extension(ext) {
        Some(Format::Parquet) => Err(Error::bad(format!(
            "--epochs {}: epochs are written as JSON lines or, to a .csv name, as CSV; Parquet is not supported",
            match target {
                Target::File(p) => p.display().to_string(),
                Target::Stdout => "-".into(),
            }
        ))),
        Some(Format::Csv) => Ok(Format::Csv),
        _ => Ok(Format::Jsonl),
    }
}

/// A report of `eeg.processed/1` records: the trigger rules evaluated on them, the page
/// written whole or not at all.
fn report_of_records(
    options: &Options,
    outputs: &Outputs,
    jsonl: Jsonl,
    engine: &TriggerEngine,
) -> Result<Processed, Error> {
    let Jsonl { name, head, rest } = jsonl;
    let mut collector = Collector::default();
    let mut reader = std::io::Cursor::new(head).chain(rest);
    let lines = report::read_processed(
        &name,
        &mut reader,
        options.session_id.as_deref(),
        options.channels.as_deref(),
        engine,
        &mut collector,
    )?;
    collector.set_input(InputMeta::jsonl(
        &name,
        "eeg.processed/1 JSONL (records processed elsewhere)",
        lines,
    ));
    let meta = ConfigMeta {
        processing: None,
        path: options.config_file.clone(),
        rules: engine.rules().cloned().collect(),
    };
    let target = outputs.report.as_ref().expect("a report is asked for");
    let (out, sink) = Output::create(target)?;
    let written = write_report(options, target, &collector, &meta, out, sink)?;
    Ok(Processed {
        sessions: Vec::new(),
        report: Some(written),
    })
}

/// Reads the input of `kind` (its first line already read when it is JSONL) through its
/// sessions into the writer, the events and the report.
/// `opened`: the input's kind, and a JSONL input's first line read.
fn read_input(
    options: &Options,
    (kind, jsonl): (Kind, Option<Jsonl>),
    writer: &mut Writer,
    triggers: Option<&mut Triggers>,
    report: Option<&mut Collector>,
    epochs: Option<&mut Epochs>,
    progress: &dyn Fn(u64),
) -> Result<Vec<Summary>, Error> {
    let (name, input): (String, Box<dyn Read>) = match (jsonl, &options.input) {
        (Some(Jsonl { name, head, rest }), _) => {
            (name, Box::new(std::io::Cursor::new(head).chain(rest)))
        }
        (None, Input::File(path)) if kind == Kind::Capture => {
            let name = path.display().to_string();
            let file =
                File::open(path).map_err(|e| Error::bad(format!("{name}: cannot open: {e}")))?;
            (name, Box::new(file))
        }
        (None, Input::File(path)) => {
            return edf::process_edf(options, path, writer, triggers, report, epochs, progress);
        }
        (None, Input::Stdin) => unreachable!("standard input is read as JSON lines"),
    };
    // A file is what its name or content said; standard input is told by its first bytes.
    let kind = matches!(options.input, Input::File(_)).then_some(kind);
    let limits = eeg_schema::Limits::for_sessions(&options.processing.limits);
    let messages = raw_messages(&name, input, kind, limits)?;
    raw::process_raw(
        options, messages, writer, triggers, report, epochs, progress,
    )
}

/// The raw messages of a JSONL input or a capture. A file is what its name or content said
/// (`kind`); standard input (`None`) is told by its first bytes ([`detect::sniff`]: a
/// capture's first message in any field order), and taken for JSONL otherwise. An EDF
/// there is named as such rather than failing as bad JSON.
fn raw_messages<R: Read>(
    name: &str,
    mut input: R,
    kind: Option<Kind>,
    limits: eeg_schema::Limits,
) -> Result<RawMessages<Reread<R>>, Error> {
    // Its first bytes may come in pieces: a pipe, or the first line `open_jsonl` read.
    let head = detect::read_head(&mut input, limits.max_message_bytes)
        .map_err(|e| Error::bad(format!("{name}: cannot read: {e}")))?;
    if detect::is_edf(&head) {
        return Err(Error::bad(format!(
            "{name}: this is an EDF/BDF recording; give its path instead (standard input takes eeg.raw/1 JSONL or a capture of binary eeg.raw/1)"
        )));
    }
    let capture = kind.or_else(|| detect::sniff(&head)) == Some(Kind::Capture);
    let reader = BufReader::with_capacity(1 << 16, std::io::Cursor::new(head).chain(input));
    Ok(if capture {
        RawMessages::capture(name, reader, limits)
    } else {
        RawMessages::jsonl(name, reader, limits)
    })
}

/// An input whose first bytes were read to tell what it is, read again from the start.
type Reread<R> = BufReader<std::io::Chain<std::io::Cursor<Vec<u8>>, R>>;

/// A JSONL input opened, its first non-blank line read (with any blank ones before it).
struct Jsonl {
    /// The input in messages.
    name: String,
    head: Vec<u8>,
    rest: Box<dyn BufRead>,
}

/// Opens a JSONL input and reads its first non-blank line.
fn open_jsonl(input: &Input) -> Result<Jsonl, Error> {
    let name = input.name();
    let source: Box<dyn Read> = match input {
        Input::Stdin => Box::new(std::io::stdin().lock()),
        Input::File(path) => {
            Box::new(File::open(path).map_err(|e| Error::bad(format!("{name}: cannot open: {e}")))?)
        }
    };
    let mut reader = BufReader::with_capacity(1 << 16, source);
    let limit = eeg_schema::Limits::default().max_message_bytes as u64 + 2;
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut head)
            .map_err(|e| Error::bad(format!("{name}: cannot read: {e}")))?;
        if n == 0 || !head[start..].trim_ascii().is_empty() {
            break;
        }
    }
    Ok(Jsonl {
        name,
        head,
        rest: Box::new(reader),
    })
}

/// Renders the report and writes it whole, or not at all.
fn write_report(
    options: &Options,
    target: &Target,
    collector: &Collector,
    meta: &ConfigMeta,
    file: Output,
    mut sink: Box<dyn Write + Send>,
) -> Result<ReportWritten, Error> {
    let html = collector.render(&options.input.title(), meta);
    match sink.write_all(html.as_bytes()).and_then(|()| sink.flush()) {
        Ok(()) => file.commit()?,
        Err(e) => {
            file.discard();
            let path = match target {
                Target::Stdout => Path::new("-"),
                Target::File(p) => p,
            };
            return Err(Error::output(
                format!("{}: writing the report", path.display()),
                e,
            ));
        }
    }
    Ok(ReportWritten {
        sessions: collector.n_sessions(),
        windows: collector.windows(),
        bytes: html.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fixture, scratch};

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_recording_gives_the_band_powers_of_the_scipy_reference() {
        #[derive(serde::Deserialize)]
        struct Reference {
            windows: Vec<Window>,
        }
        #[derive(serde::Deserialize)]
        struct Window {
            start_ms: i64,
            band_power: Vec<f64>,
            total_power: f64,
        }
        let text = std::fs::read_to_string(fixture("reference/test_subsecond.json")).unwrap();
        let reference: Reference = serde_json::from_str(&text).unwrap();
        let dir = scratch("process_scipy");
        let options = Options::new(Input::File(fixture("test_subsecond.edf")));
        let outputs = Outputs {
            records: Some(Target::File(dir.join("r.jsonl"))),
            ..Outputs::default()
        };
        let done = process(&options, &outputs, &|_| {}).unwrap();
        assert_eq!(done.sessions.len(), 1);
        assert_eq!(done.sessions[0].session_id(), "test_subsecond");
        assert_eq!(done.sessions[0].windows(), reference.windows.len() as u64);
        assert!(done.report.is_none());
        let records = lines(&dir.join("r.jsonl"));
        assert_eq!(records.len(), reference.windows.len());
        let close = |got: f64, want: f64| (got - want).abs() <= 1e-6 * want.abs();
        for (r, w) in records.iter().zip(&reference.windows) {
            assert_eq!(r["start_ms"], w.start_ms);
            let ch = &r["channels"][0];
            assert!(close(ch["total_power"].as_f64().unwrap(), w.total_power));
            for (b, name) in ["delta", "theta", "alpha", "beta", "gamma"]
                .iter()
                .enumerate()
            {
                let got = ch["band_power"][name].as_f64().unwrap();
                assert!(
                    close(got, w.band_power[b]),
                    "{name}: {got} vs {}",
                    w.band_power[b]
                );
            }
        }
    }

    #[test]
    fn progress_is_told_every_byte_of_the_data_records() {
        let path = fixture("test_subsecond.edf");
        let size = std::fs::metadata(&path).unwrap().len();
        let header = eeg_edf::EdfReader::open(&path).unwrap().header().clone();
        let options = Options::new(Input::File(path));
        let read = std::cell::Cell::new(0);
        process(&options, &Outputs::default(), &|n| read.set(read.get() + n)).unwrap();
        assert_eq!(read.get(), size - header.header_bytes());
    }

    #[test]
    fn a_failed_run_leaves_no_output_behind() {
        let dir = scratch("process_failed");
        let bytes = std::fs::read(fixture("test_subsecond.edf")).unwrap();
        let cut = dir.join("cut.edf");
        std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
        let options = Options::new(Input::File(cut));
        let outputs = Outputs {
            records: Some(Target::File(dir.join("r.csv"))),
            format: Format::Csv,
            events: Some(Target::File(dir.join("e.jsonl"))),
            report: Some(Target::File(dir.join("p.html"))),
            epochs: Some(Target::File(dir.join("x.jsonl"))),
            events_out: Some(Target::File(dir.join("events.tsv"))),
            erp: Some(Target::File(dir.join("erp.csv"))),
        };
        let e = process(&options, &outputs, &|_| {}).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("truncated"), "{e}");
        assert_eq!(files(&dir), ["cut.edf"]);
    }

    #[test]
    fn processed_records_make_a_report_but_no_records() {
        let dir = scratch("process_records");
        // Records of the recording, then read back.
        let records = dir.join("r.jsonl");
        let outputs = Outputs {
            records: Some(Target::File(records.clone())),
            ..Outputs::default()
        };
        let options = Options::new(Input::File(fixture("test_subsecond.edf")));
        process(&options, &outputs, &|_| {}).unwrap();
        let options = Options::new(Input::File(records.clone()));
        let e = process(&options, &outputs, &|_| {}).unwrap_err();
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 1: an eeg.processed/1 record; `process` reads eeg.raw/1 messages (`eeg-pipeline report` reads records)",
                records.display()
            )
        );
        let outputs = Outputs {
            report: Some(Target::File(dir.join("p.html"))),
            ..Outputs::default()
        };
        let done = process(&options, &outputs, &|_| {}).unwrap();
        assert!(done.sessions.is_empty());
        let report = done.report.expect("a report");
        assert_eq!((report.sessions, report.windows), (1, 695));
        let page = std::fs::read_to_string(dir.join("p.html")).unwrap();
        assert_eq!(page.len(), report.bytes);
        assert!(page.contains("<h1>EEG report: r.jsonl</h1>"));
        assert_eq!(files(&dir), ["p.html", "r.jsonl"]);
    }
}
