//! `eeg-pipeline process`: an EEG file through the session processor, records out as JSONL,
//! or as a table in CSV or Parquet ([`crate::table`]).
//!
//! The input is streamed (one EDF data record or one JSONL line at a time), so memory stays
//! flat however long the recording is.

use crate::flags::{BadInput, ProcessArgs};
use crate::table::Format;
use crate::{config, output, report};
use anyhow::Context;
use eeg_dsp::OwnedWindow;
use eeg_dsp::{ProcessingConfig, SessionProcessor, Window};
use eeg_edf::EdfReader;
use eeg_session::TriggerState;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Inputs larger than this get a progress bar (when standard error is a terminal).
const PROGRESS_MIN_BYTES: u64 = 16 << 20;

/// Refuses outputs that would overwrite the input or each other, before anything is created:
/// `--out`, `--triggers` or `--report` naming the input file (by any path: a symlink, a hard
/// link), or two of them naming one file. Files are compared by identity (device and inode),
/// not by path. Standard output and devices (`/dev/null`) are never refused.
pub(crate) fn check_outputs(
    input: &Path,
    outputs: &[(&str, Option<&PathBuf>)],
) -> Result<(), BadInput> {
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
                .map(File::from)
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

/// The start of an EDF file (version "0" then spaces) or of a BDF file.
fn is_edf(head: &[u8]) -> bool {
    matches!(
        head,
        [b'0', b' ', ..] | [0xff, b'B', b'I', b'O', b'S', b'E', b'M', b'I', ..]
    )
}

/// `--channels` naming a channel twice would output it twice: bad input.
pub(crate) fn check_channels(channels: Option<&[String]>) -> Result<(), BadInput> {
    let Some(c) = channels else { return Ok(()) };
    for (i, ch) in c.iter().enumerate() {
        if c[..i].contains(ch) {
            return Err(BadInput(format!("--channels: '{ch}' is named twice")));
        }
    }
    Ok(())
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

pub fn run(args: &ProcessArgs) -> anyhow::Result<()> {
    execute(args, Mode::Process)
}

/// `report`: the report of `args.input` to `args.report`, no records.
pub fn run_report_only(args: &ProcessArgs) -> anyhow::Result<()> {
    execute(args, Mode::ReportOnly)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// `process`: records, and events and a report when asked for.
    Process,
    /// `report`: the report only; its file is `args.report`, named `--out` on that command.
    ReportOnly,
}

fn execute(args: &ProcessArgs, mode: Mode) -> anyhow::Result<()> {
    let format = Format::resolve(args.format, &args.out);
    let outputs = match mode {
        Mode::Process => vec![
            ("--out", Some(&args.out)),
            ("--triggers", args.triggers.as_ref()),
            ("--report", args.report.as_ref()),
        ],
        Mode::ReportOnly => vec![("--out", args.report.as_ref())],
    };
    check_outputs(&args.input, &outputs)?;
    if mode == Mode::Process
        && let Some(r) = args.report.as_ref().filter(|r| *r == Path::new("-"))
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
    check_format(args, format)?;
    let file = config::load_or_default(args.config.as_deref()).map_err(BadInput)?;
    // The report marks the events on its time axes, so the rules run for it too.
    let evaluate = args.triggers.is_some() || args.report.is_some();
    if evaluate {
        for w in file.warnings() {
            tracing::warn!("{w}");
        }
    }
    let config = file.processing;
    if format != Format::Jsonl {
        crate::table::check_columns(&config.bands, format).map_err(BadInput)?;
    }
    let mut triggers = if evaluate {
        let engine = eeg_session::TriggerEngine::new(file.triggers.rules)
            .map_err(|e| BadInput(e.to_string()))?;
        Some(Triggers {
            engine,
            output: None,
        })
    } else {
        None
    };
    let mut report = args.report.as_ref().map(|_| report::Collector::default());
    // The input's kind, and a JSONL input's first line, before any output is created: an
    // input that cannot be read leaves no file behind.
    let input = args.input.as_path();
    let kind = detect(input)?;
    // A JSONL input's first line tells eeg.processed/1 records (which only a report reads)
    // from raw batches.
    let jsonl = match kind {
        Kind::Edf | Kind::Protobuf => None,
        Kind::Jsonl => Some(open_jsonl(args)?),
    };
    if let Some((name, head, _)) = &jsonl
        && report::is_processed(head)
    {
        if mode == Mode::Process {
            return Err(BadInput(format!(
                "{name}: line 1: an eeg.processed/1 record; `process` reads eeg.raw/1 messages (`eeg-pipeline report` reads records)"
            ))
            .into());
        }
        let (name, head, rest) = jsonl.expect("matched above");
        let engine = triggers.map(|t| t.engine).expect("rules run for a report");
        let mut collector = report::Collector::default();
        let mut reader = std::io::Cursor::new(head).chain(rest);
        let lines = report::read_processed(
            &name,
            &mut reader,
            args.session_id.as_deref(),
            args.channels.as_deref(),
            &engine,
            &mut collector,
        )?;
        collector.set_input(report::InputMeta::jsonl(
            &name,
            "eeg.processed/1 JSONL (records processed elsewhere)",
            lines,
        ));
        let meta = report::ConfigMeta {
            processing: None,
            path: args.config.clone(),
            rules: engine.rules().cloned().collect(),
        };
        let path = args.report.as_ref().expect("a report is asked for");
        let (out, sink) = Output::create(path)?;
        return write_report(args, &collector, &meta, out, sink);
    }
    if let (Some(t), Some(path), Mode::Process) = (triggers.as_mut(), &args.triggers, mode) {
        t.output = Some(Output::create(path)?);
    }
    let report_out = match args.report.as_ref().map(|p| Output::create(p)).transpose() {
        Ok(r) => r,
        Err(e) => {
            if let Some((file, _)) = triggers.and_then(|t| t.output) {
                file.discard();
            }
            return Err(e);
        }
    };
    let (out, mut writer) = match mode {
        Mode::Process => match Output::create(&args.out) {
            Ok((out, sink)) => {
                let config = config.clone();
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
                return Err(e);
            }
        },
        // Nothing but the report is wanted: no record is encoded.
        Mode::ReportOnly => (None, Writer::discard()),
    };
    let progress = progress_bar(input, args.quiet);
    let result = match jsonl {
        None if kind == Kind::Protobuf => File::open(&args.input)
            .map_err(|e| BadInput(format!("{}: cannot open: {e}", input.display())).into())
            .and_then(|file| {
                process_raw(
                    args,
                    &input.display().to_string(),
                    Box::new(file),
                    &config,
                    &mut writer,
                    triggers.as_mut(),
                    report.as_mut(),
                    &progress,
                )
            }),
        None => process_edf(
            args,
            &config,
            &mut writer,
            triggers.as_mut(),
            report.as_mut(),
            &progress,
        ),
        Some((name, head, rest)) => process_raw(
            args,
            &name,
            Box::new(std::io::Cursor::new(head).chain(rest)),
            &config,
            &mut writer,
            triggers.as_mut(),
            report.as_mut(),
            &progress,
        ),
    };
    progress.finish_and_clear();
    // The writer's own error (e.g. a full disk) explains a failed run best.
    let written = writer.finish();
    let flushed = |s| {
        match triggers.as_mut().and_then(|t| t.output.as_mut()) {
            Some((_, w)) => w.flush().context("writing trigger events"),
            None => Ok(()),
        }
        .map(|()| s)
    };
    let summaries = match result.and_then(|s| written.map(|()| s)).and_then(flushed) {
        Ok(s) => s,
        Err(e) => {
            if let Some(out) = out {
                out.discard();
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
    if !args.quiet {
        for s in &summaries {
            eprintln!("{s}");
        }
    }
    if let (Some(collector), Some((file, sink))) = (report, report_out) {
        let meta = report::ConfigMeta {
            processing: Some(config),
            path: args.config.clone(),
            rules: triggers
                .map(|t| t.engine.rules().cloned().collect())
                .unwrap_or_default(),
        };
        write_report(args, &collector, &meta, file, sink)?;
    }
    Ok(())
}

/// Renders the report and writes it whole, or not at all.
fn write_report(
    args: &ProcessArgs,
    collector: &report::Collector,
    meta: &report::ConfigMeta,
    file: Output,
    mut sink: Box<dyn Write + Send>,
) -> anyhow::Result<()> {
    let title = if args.input == Path::new("-") {
        "standard input".to_string()
    } else {
        args.input.file_name().map_or_else(
            || args.input.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let html = collector.render(&title, meta);
    let path = args.report.as_deref().unwrap_or(Path::new("-"));
    match sink.write_all(html.as_bytes()).and_then(|()| sink.flush()) {
        Ok(()) => file.commit()?,
        Err(e) => {
            file.discard();
            return Err(e).with_context(|| format!("{}: writing the report", path.display()));
        }
    }
    if !args.quiet {
        eprintln!(
            "report: {} ({} session{}, {} windows, {} kB)",
            path.display(),
            collector.n_sessions(),
            if collector.n_sessions() == 1 { "" } else { "s" },
            collector.windows(),
            html.len().div_ceil(1024)
        );
    }
    Ok(())
}

/// Opens a JSONL input and reads its first non-blank line (and any blank ones before it):
/// (name for messages, those bytes, the rest).
fn open_jsonl(args: &ProcessArgs) -> anyhow::Result<(String, Vec<u8>, Box<dyn BufRead>)> {
    let name = if args.input == Path::new("-") {
        "<stdin>".to_string()
    } else {
        args.input.display().to_string()
    };
    let input: Box<dyn Read> = if args.input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            File::open(&args.input).map_err(|e| BadInput(format!("{name}: cannot open: {e}")))?,
        )
    };
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let limit = eeg_schema::Limits::default().max_message_bytes as u64 + 2;
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut head)
            .map_err(|e| BadInput(format!("{name}: cannot read: {e}")))?;
        if n == 0 || !head[start..].trim_ascii().is_empty() {
            break;
        }
    }
    // The first line alone, for the schema test.
    Ok((name, head, Box::new(reader)))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Edf,
    Jsonl,
    /// A capture of binary `eeg.raw/1`: length-delimited messages.
    Protobuf,
}

/// EDF/BDF by extension, JSONL by extension or for standard input; otherwise by content.
pub(crate) fn detect(input: &Path) -> anyhow::Result<Kind> {
    if input == Path::new("-") {
        return Ok(Kind::Jsonl);
    }
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("edf" | "bdf" | "rec") => return Ok(Kind::Edf),
        Some("jsonl" | "ndjson" | "json") => return Ok(Kind::Jsonl),
        Some("pb" | "binpb") => return Ok(Kind::Protobuf),
        _ => {}
    }
    let mut head = [0u8; 16];
    let n = File::open(input)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| BadInput(format!("{}: cannot open: {e}", input.display())))?;
    match &head[..n] {
        h if is_edf(h) => Ok(Kind::Edf),
        [b'{', ..] => Ok(Kind::Jsonl),
        h if eeg_schema::looks_delimited(h) => Ok(Kind::Protobuf),
        _ => Err(BadInput(format!(
            "{}: not an EDF/BDF file, eeg.raw/1 JSONL nor a capture of binary eeg.raw/1 (use a .edf, .bdf, .jsonl or .pb name)",
            input.display()
        ))
        .into()),
    }
}

pub(crate) fn progress_bar(input: &Path, quiet: bool) -> indicatif::ProgressBar {
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

/// The output file, written under a temporary name and renamed on success, so a failed run
/// leaves no partial output behind; or standard output, or a device or pipe written in place.
struct Output {
    paths: Option<(PathBuf, PathBuf)>,
}

impl Output {
    fn create(path: &Path) -> anyhow::Result<(Output, Box<dyn Write + Send>)> {
        if path == Path::new("-") {
            let out = BufWriter::with_capacity(1 << 16, std::io::stdout());
            return Ok((Output { paths: None }, Box::new(out)));
        }
        // Devices and pipes (`/dev/null`, `>(cmd)`) are written in place: renaming a file
        // over them would replace the device.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("{}: cannot open for writing", path.display()))?;
            let out = BufWriter::with_capacity(1 << 16, file);
            return Ok((Output { paths: None }, Box::new(out)));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp)
            .with_context(|| format!("{}: cannot create output file", tmp.display()))?;
        let out = BufWriter::with_capacity(1 << 16, file);
        Ok((
            Output {
                paths: Some((tmp, path.to_path_buf())),
            },
            Box::new(out),
        ))
    }

    fn commit(mut self) -> anyhow::Result<()> {
        if let Some((tmp, path)) = self.paths.take() {
            std::fs::rename(&tmp, &path).with_context(|| {
                format!("{}: cannot rename to {}", tmp.display(), path.display())
            })?;
        }
        Ok(())
    }

    fn discard(mut self) {
        if let Some((tmp, _)) = self.paths.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Encodes and writes records on a thread of its own, so that encoding (a large share of the
/// work for many channels) overlaps the signal processing. Windows travel in batches of
/// [`BATCH`] (one wake-up of the output thread per batch, not per window), as
/// [`OwnedWindow`]s that come back to be reused, so the steady state allocates nothing; the
/// channel is bounded, so a slow output slows the input instead of buffering without bound.
struct Writer {
    tx: Option<SyncSender<Batch>>,
    recycled: Receiver<Batch>,
    /// The batch being filled; windows and emptied batches back from the output thread.
    pending: Batch,
    spare: Vec<OwnedWindow>,
    empty: Vec<Batch>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    /// Windows are dropped, not written ([`Writer::discard`]).
    discard: bool,
}

type Batch = Vec<(Arc<output::SessionMeta>, OwnedWindow)>;

/// Windows handed to the output thread at once.
const BATCH: usize = 16;

impl Writer {
    /// `encoder` makes the output's writer, on the output thread: its errors, like every
    /// later one, come back from [`Writer::finish`].
    fn start(
        encoder: impl FnOnce() -> std::io::Result<Box<dyn output::Encode>> + Send + 'static,
    ) -> Writer {
        let (tx, rx) = sync_channel::<Batch>(256 / BATCH);
        let (back, recycled) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let mut encoder = encoder()?;
                for batch in rx {
                    for (meta, window) in &batch {
                        encoder.window(meta, &window.view())?;
                    }
                    let _ = back.send(batch);
                    encoder.end_batch()?;
                }
                encoder.finish()
            });
        // As `std::thread::spawn`, which this names for profilers: no thread, no run.
        let thread = thread.expect("spawning the output thread");
        Writer {
            tx: Some(tx),
            recycled,
            pending: Vec::with_capacity(BATCH),
            spare: Vec::new(),
            empty: Vec::new(),
            thread: Some(thread),
            discard: false,
        }
    }

    /// A writer that drops every window: for a run that only makes a report.
    fn discard() -> Writer {
        let (_, recycled) = std::sync::mpsc::channel();
        Writer {
            tx: None,
            recycled,
            pending: Vec::new(),
            spare: Vec::new(),
            empty: Vec::new(),
            thread: None,
            discard: true,
        }
    }

    /// Queues a window; `false` when the output thread has stopped (on an error, which
    /// [`Writer::finish`] reports).
    fn push(&mut self, meta: &Arc<output::SessionMeta>, w: &Window<'_>) -> bool {
        if self.discard {
            return true;
        }
        if self.spare.is_empty() {
            self.reclaim();
        }
        let mut owned = self.spare.pop().unwrap_or_default();
        owned.copy_from(w);
        self.pending.push((Arc::clone(meta), owned));
        self.pending.len() < BATCH || self.send()
    }

    /// Takes back what the output thread has written: its windows to be filled again, its
    /// vector to be the next batch.
    fn reclaim(&mut self) {
        while let Ok(mut batch) = self.recycled.try_recv() {
            self.spare.extend(batch.drain(..).map(|(_, w)| w));
            self.empty.push(batch);
        }
    }

    /// Hands the pending batch to the output thread.
    fn send(&mut self) -> bool {
        if self.empty.is_empty() {
            self.reclaim();
        }
        let Some(tx) = &self.tx else {
            return false;
        };
        let next = self
            .empty
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH));
        tx.send(std::mem::replace(&mut self.pending, next)).is_ok()
    }

    /// Waits for every record to be written.
    fn finish(mut self) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            self.send();
        }
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result.context("writing output"),
            Some(Err(_)) => anyhow::bail!("the output thread panicked"),
            None => Ok(()),
        }
    }
}

/// The trigger rules, and with `--triggers` where their events go (one
/// `analytics.trigger/1` per line).
struct Triggers {
    engine: eeg_session::TriggerEngine,
    output: Option<(Output, Box<dyn Write + Send>)>,
}

/// `process`'s end of the fan-out ([`eeg_session::Fanout`]) for one session: each window
/// counted in the session's summary and handed to the writer thread, each trigger event
/// written to the `--triggers` file; both collected for the report when there is one.
struct FileSink<'a> {
    writer: &'a mut Writer,
    summary: &'a mut Summary,
    events: Option<&'a mut (dyn Write + Send)>,
    report: Option<&'a mut report::Collector>,
}

/// Why a [`FileSink`] stopped.
#[derive(Debug)]
enum SinkError {
    /// The writer thread stopped; [`Writer::finish`] says why.
    WriterStopped,
    Events(std::io::Error),
}

impl eeg_session::Sink for FileSink<'_> {
    type Error = SinkError;

    fn record(
        &mut self,
        meta: &Arc<output::SessionMeta>,
        window: &Window<'_>,
    ) -> Result<(), SinkError> {
        self.summary.add(window);
        if let Some(r) = self.report.as_deref_mut() {
            r.window(meta, window);
        }
        if self.writer.push(meta, window) {
            Ok(())
        } else {
            Err(SinkError::WriterStopped)
        }
    }

    fn trigger(&mut self, event: &eeg_schema::TriggerEvent<'_>) -> Result<(), SinkError> {
        self.summary.trigger_events += 1;
        if let Some(r) = self.report.as_deref_mut() {
            r.event(event);
        }
        let Some(out) = self.events.as_deref_mut() else {
            return Ok(());
        };
        // Events are rare (a few per session): a line each.
        let mut line = event.encode();
        line.push(b'\n');
        out.write_all(&line).map_err(SinkError::Events)
    }
}

/// Runs `push` with a fan-out of one session's windows into the writer and the trigger
/// file. `Ok(false)`: the writer stopped, and [`Writer::finish`] reports its error.
fn fan_out(
    meta: &Arc<output::SessionMeta>,
    state: &mut TriggerState,
    summary: &mut Summary,
    writer: &mut Writer,
    triggers: Option<&mut Triggers>,
    report: Option<&mut report::Collector>,
    push: impl FnOnce(&mut eeg_session::Fanout<'_, FileSink<'_>>) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let (engine, events) = match triggers {
        Some(t) => (
            Some(&t.engine),
            t.output
                .as_mut()
                .map(|(_, out)| &mut **out as &mut (dyn Write + Send)),
        ),
        None => (None, None),
    };
    let mut sink = FileSink {
        writer,
        summary,
        events,
        report,
    };
    let mut fanout = eeg_session::Fanout::new(meta, engine.map(|e| (e, state)), &mut sink);
    push(&mut fanout)?;
    match fanout.finish() {
        Ok(_) => Ok(true),
        Err(SinkError::WriterStopped) => Ok(false),
        Err(SinkError::Events(e)) => Err(e).context("writing trigger events"),
    }
}

/// What the closing summary on standard error says about one session.
#[derive(Debug, Default)]
pub struct Summary {
    session_id: String,
    fs: f64,
    channels: usize,
    windows: u64,
    channel_windows: u64,
    good: u64,
    bands: Vec<String>,
    relative_sum: Vec<f64>,
    resets: u64,
    duplicates: u64,
    trigger_events: u64,
}

impl Summary {
    fn new(session_id: &str, fs: f64, channels: usize, bands: &[eeg_dsp::Band]) -> Summary {
        Summary {
            session_id: session_id.to_string(),
            fs,
            channels,
            bands: bands.iter().map(|b| b.name.clone()).collect(),
            relative_sum: vec![0.0; bands.len()],
            ..Summary::default()
        }
    }

    fn add(&mut self, w: &Window<'_>) {
        self.windows += 1;
        for c in 0..w.n_channels() {
            self.channel_windows += 1;
            if w.quality(c).good {
                self.good += 1;
            }
            for (s, r) in self.relative_sum.iter_mut().zip(w.relative_power(c)) {
                *s += r;
            }
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} windows, {} channel{} at {} Hz",
            self.session_id,
            self.windows,
            self.channels,
            if self.channels == 1 { "" } else { "s" },
            self.fs
        )?;
        if self.channel_windows > 0 {
            let n = self.channel_windows as f64;
            write!(
                f,
                ", {:.1}% good channel-windows; mean relative power:",
                100.0 * self.good as f64 / n
            )?;
            for (b, s) in self.bands.iter().zip(&self.relative_sum) {
                write!(f, " {b} {:.3}", s / n)?;
            }
        }
        if self.resets > 0 {
            write!(
                f,
                "; {} reset(s) after a gap or a change of rate/channels",
                self.resets
            )?;
        }
        if self.trigger_events > 0 {
            write!(f, "; {} trigger event(s)", self.trigger_events)?;
        }
        if self.duplicates > 0 {
            write!(f, "; {} duplicate batch(es) skipped", self.duplicates)?;
        }
        Ok(())
    }
}

/// Channels per part below which splitting a session across threads does not pay.
const MIN_CHANNELS_PER_PART: usize = 4;

/// One session's DSP, on this thread or split by channel across worker threads. Every
/// channel's numbers depend on that channel alone, and the indices are recomputed over all
/// channels when the parts are joined, so a split session emits exactly the records of an
/// unsplit one (tested).
struct Engine {
    local: SessionProcessor,
    /// The signals this thread processes; the workers take the rest, in order.
    local_signals: Vec<usize>,
    workers: Vec<Worker>,
    /// Records not yet handed to the workers: they get [`RECORDS_PER_JOB`] at a time, so
    /// threads wake each other once per job rather than once per record.
    batch: Vec<Arc<eeg_edf::Record>>,
    /// This thread's windows of the jobs whose worker results have not been joined yet.
    /// The workers run up to [`LAG`] jobs behind, so no thread waits for another's
    /// wake-up on every job.
    pending: std::collections::VecDeque<Vec<OwnedWindow>>,
    joined: OwnedWindow,
}

/// Jobs a worker may lag behind this thread.
const LAG: usize = 2;

/// Data records per job.
const RECORDS_PER_JOB: usize = 4;

struct Worker {
    jobs: SyncSender<Job>,
    done: Receiver<Vec<OwnedWindow>>,
}

enum Job {
    /// Data records in order, shared rather than copied; the worker reads its own signals.
    Records(Vec<Arc<eeg_edf::Record>>),
    Reset(i64),
}

impl Engine {
    /// An engine for the data signals `signals` (indices into a record) at `fs` Hz.
    fn new(
        config: &ProcessingConfig,
        fs: f64,
        signals: &[usize],
        t0_ms: i64,
        threads: usize,
    ) -> Result<Engine, eeg_dsp::ConfigError> {
        let n_channels = signals.len();
        let parts = threads.min(n_channels / MIN_CHANNELS_PER_PART).max(1);
        // This thread also reads and decodes the file and joins the parts, so it takes a
        // smaller share: weight 1 against 2 for each worker (measured best for two parts).
        let weight = |k: usize| if k == 0 { 0 } else { 1 + 2 * (k - 1) };
        let total = weight(parts);
        let bounds: Vec<usize> = (0..=parts)
            .map(|k| weight(k) * n_channels / total)
            .collect();
        let local = SessionProcessor::new(config, fs, bounds[1], t0_ms)?;
        let mut workers = Vec::new();
        for k in 1..parts {
            let mine = signals[bounds[k]..bounds[k + 1]].to_vec();
            let mut p = SessionProcessor::new(config, fs, mine.len(), t0_ms)?;
            let (jobs, job_rx) = sync_channel::<Job>(LAG + 1);
            let (done_tx, done) = sync_channel(LAG + 1);
            let spawned = std::thread::Builder::new()
                .name(format!("dsp-{k}"))
                .spawn(move || {
                    for job in job_rx {
                        match job {
                            Job::Records(records) => {
                                let mut windows = Vec::new();
                                for record in &records {
                                    // The shape is right by construction.
                                    let _ = push_signals(
                                        &mut p,
                                        &mine,
                                        record,
                                        &mut |w: &Window<'_>| windows.push(OwnedWindow::from(w)),
                                    );
                                }
                                drop(records);
                                if done_tx.send(windows).is_err() {
                                    break;
                                }
                            }
                            Job::Reset(t0_ms) => p.reset(t0_ms),
                        }
                    }
                });
            spawned.expect("spawning a processing thread");
            workers.push(Worker { jobs, done });
        }
        Ok(Engine {
            local,
            local_signals: signals[..bounds[1]].to_vec(),
            workers,
            batch: Vec::with_capacity(RECORDS_PER_JOB),
            pending: std::collections::VecDeque::new(),
            joined: OwnedWindow::default(),
        })
    }

    fn plan(&self) -> &eeg_dsp::Plan {
        self.local.plan()
    }

    /// Restarts every channel's signal state; the records before are processed first.
    fn reset(&mut self, t0_ms: i64, sink: &mut impl eeg_dsp::WindowSink) -> anyhow::Result<()> {
        self.dispatch(sink)?;
        self.local.reset(t0_ms);
        for w in &self.workers {
            let _ = w.jobs.send(Job::Reset(t0_ms));
        }
        Ok(())
    }

    fn push_record(
        &mut self,
        record: &Arc<eeg_edf::Record>,
        sink: &mut impl eeg_dsp::WindowSink,
    ) -> anyhow::Result<()> {
        if self.workers.is_empty() {
            push_signals(&mut self.local, &self.local_signals, record, sink)?;
            return Ok(());
        }
        self.batch.push(Arc::clone(record));
        if self.batch.len() == RECORDS_PER_JOB {
            self.dispatch(sink)?;
        }
        Ok(())
    }

    /// Hands the batched records to the workers, processes this thread's channels of them,
    /// and joins the results of jobs more than [`LAG`] behind.
    fn dispatch(&mut self, sink: &mut impl eeg_dsp::WindowSink) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        for w in &mut self.workers {
            w.jobs
                .send(Job::Records(self.batch.clone()))
                .map_err(|_| anyhow::anyhow!("a processing thread stopped"))?;
        }
        let mut mine = Vec::new();
        for record in &self.batch {
            push_signals(
                &mut self.local,
                &self.local_signals,
                record,
                &mut |w: &Window<'_>| mine.push(OwnedWindow::from(w)),
            )?;
        }
        self.batch.clear();
        self.pending.push_back(mine);
        while self.pending.len() > LAG {
            self.join_oldest(sink)?;
        }
        Ok(())
    }

    /// Joins and emits the windows of every record still in flight.
    fn finish(&mut self, sink: &mut impl eeg_dsp::WindowSink) -> anyhow::Result<()> {
        self.dispatch(sink)?;
        while !self.pending.is_empty() {
            self.join_oldest(sink)?;
        }
        Ok(())
    }

    fn join_oldest(&mut self, sink: &mut impl eeg_dsp::WindowSink) -> anyhow::Result<()> {
        let Some(mine) = self.pending.pop_front() else {
            return Ok(());
        };
        let mut theirs = Vec::with_capacity(self.workers.len());
        for w in &mut self.workers {
            let windows = w
                .done
                .recv()
                .map_err(|_| anyhow::anyhow!("a processing thread stopped"))?;
            theirs.push(windows.into_iter());
        }
        for m in mine {
            let mut parts = vec![m];
            for t in &mut theirs {
                parts.extend(t.next());
            }
            anyhow::ensure!(
                self.joined.join(&parts),
                "channel groups of a session went out of step"
            );
            eeg_dsp::WindowSink::window(sink, &self.joined.view());
        }
        Ok(())
    }
}

/// Pushes the given signals of one data record through a processor, in that order.
fn push_signals(
    p: &mut SessionProcessor,
    signals: &[usize],
    record: &eeg_edf::Record,
    sink: &mut impl eeg_dsp::WindowSink,
) -> Result<(), eeg_dsp::ShapeError> {
    let rows: Vec<&[f64]> = signals.iter().map(|&s| record.signal(s)).collect();
    p.push_rows(&rows, sink)
}

fn process_edf(
    args: &ProcessArgs,
    config: &ProcessingConfig,
    writer: &mut Writer,
    mut triggers: Option<&mut Triggers>,
    mut report: Option<&mut report::Collector>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Summary>> {
    let path = &args.input;
    let name = path.display().to_string();
    let mut reader = EdfReader::open(path).map_err(|e| BadInput(e.to_string()))?;
    let header = reader.header().clone();
    if let Some(r) = report.as_deref_mut() {
        r.set_input(report::InputMeta::edf(&name, &header));
    }
    if reader.trailing_bytes() > 0 {
        tracing::warn!(
            "{name}: {} bytes after the last whole data record ignored",
            reader.trailing_bytes()
        );
    }

    let groups = session_groups(
        &name,
        path,
        &header,
        args.channels.as_deref(),
        args.session_id.as_deref(),
    )?;
    let duration = header.record_duration_s;
    let t0 = header.start_unix_ms();

    struct Group {
        engine: Engine,
        meta: Arc<output::SessionMeta>,
        summary: Summary,
        /// The session's trigger rules' state (with `--triggers`).
        triggers: TriggerState,
    }
    impl Group {
        /// Runs `f` on the engine with a fan-out of its windows; `Ok(false)` when the
        /// writer stopped.
        fn fan_out(
            &mut self,
            writer: &mut Writer,
            triggers: Option<&mut Triggers>,
            report: Option<&mut report::Collector>,
            f: impl FnOnce(
                &mut Engine,
                &mut eeg_session::Fanout<'_, FileSink<'_>>,
            ) -> anyhow::Result<()>,
        ) -> anyhow::Result<bool> {
            let engine = &mut self.engine;
            fan_out(
                &self.meta,
                &mut self.triggers,
                &mut self.summary,
                writer,
                triggers,
                report,
                |sink| f(engine, sink),
            )
        }
    }
    let mut sessions = Vec::new();
    for g in groups {
        let rate = g.rate;
        let engine = Engine::new(config, rate, &g.signals, t0, args.threads.max(1))
            .map_err(|e| BadInput(format!("{name}: {e} (signals at {rate} Hz)")))?;
        for w in &engine.plan().warnings {
            tracing::warn!("{name}: {w}");
        }
        sessions.push(Group {
            summary: Summary::new(&g.session_id, rate, g.signals.len(), &config.bands),
            meta: Arc::new(output::session_meta(
                &g.session_id,
                &g.device_id,
                None,
                rate,
                g.labels,
            )),
            engine,
            triggers: TriggerState::default(),
        });
    }

    // Records are shared with the worker threads; one whose last reader is done is reused.
    let mut records: Vec<Arc<eeg_edf::Record>> = Vec::new();
    let record_bytes = header.record_bytes();
    let mut expected_onset: Option<f64> = None;
    loop {
        let reusable = records.iter().position(|r| Arc::strong_count(r) == 1);
        let mut record = match reusable {
            Some(i) => records.swap_remove(i),
            None => Arc::new(eeg_edf::Record::default()),
        };
        let Some(slot) = Arc::get_mut(&mut record) else {
            continue;
        };
        if !reader
            .read_record(slot)
            .map_err(|e| BadInput(e.to_string()))?
        {
            break;
        }
        progress.inc(record_bytes);
        // EDF+D: a record that does not follow its predecessor starts a new stretch of
        // signal; filtering across the gap would smear it, so the sessions restart.
        let onset = record.onset_s();
        if let Some(expected) = expected_onset
            && (onset - expected).abs() > 1e-6
        {
            tracing::warn!(
                "{name}: data record {} starts at {onset} s, not {expected} s; sessions restart",
                record.index()
            );
            for g in &mut sessions {
                let t0 = t0 + (onset * 1000.0).round() as i64;
                if !g.fan_out(
                    writer,
                    triggers.as_deref_mut(),
                    report.as_deref_mut(),
                    |e, sink| e.reset(t0, sink),
                )? {
                    return Ok(Vec::new());
                }
                g.summary.resets += 1;
                if let Some(r) = report.as_deref_mut() {
                    r.reset(&g.meta.session_id);
                }
                g.triggers.reset();
            }
        }
        expected_onset = Some(onset + duration);
        for g in &mut sessions {
            let pushed = g.fan_out(
                writer,
                triggers.as_deref_mut(),
                report.as_deref_mut(),
                |e, sink| e.push_record(&record, sink),
            )?;
            if !pushed {
                return Ok(Vec::new());
            }
        }
        records.push(record);
    }
    for g in &mut sessions {
        if !g.fan_out(
            writer,
            triggers.as_deref_mut(),
            report.as_deref_mut(),
            |e, sink| e.finish(sink),
        )? {
            return Ok(Vec::new());
        }
    }
    Ok(sessions.into_iter().map(|g| g.summary).collect())
}

#[allow(clippy::too_many_arguments)]
fn process_raw(
    args: &ProcessArgs,
    name: &str,
    input: Box<dyn Read>,
    config: &ProcessingConfig,
    writer: &mut Writer,
    mut triggers: Option<&mut Triggers>,
    mut report: Option<&mut report::Collector>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Summary>> {
    let limits = eeg_schema::Limits::default();
    // A file is told by its name or content before it gets here; standard input is taken
    // for JSONL unless it starts like a capture, and an EDF piped in is named as such rather
    // than failing as bad JSON. (Its first bytes may come in pieces: a pipe, or the first
    // line `open_jsonl` read.)
    let mut input = input;
    let mut head = Vec::with_capacity(16);
    (&mut input)
        .take(16)
        .read_to_end(&mut head)
        .map_err(|e| BadInput(format!("{name}: cannot read: {e}")))?;
    let protobuf = eeg_schema::looks_delimited(&head);
    if is_edf(&head) {
        return Err(BadInput(format!(
            "{name}: this is an EDF/BDF recording; give its path instead (standard input takes eeg.raw/1 JSONL or a capture of binary eeg.raw/1)"
        ))
        .into());
    }
    let reader = BufReader::with_capacity(1 << 16, std::io::Cursor::new(head).chain(input));
    let mut messages = RawMessages::new(reader, protobuf, &limits);
    let only = args.session_id.as_deref();
    // Other sessions' ids, to name a few when `--session-id` matches none.
    let mut others: std::collections::BTreeSet<String> = Default::default();
    let mut read = 0u64;

    /// What the raw path keeps beside each session.
    struct Kept {
        summary: Summary,
        triggers: TriggerState,
    }
    let mut sessions: eeg_session::Sessions<Kept> = eeg_session::Sessions::new(config.clone());
    let mut order: Vec<String> = Vec::new();
    while let Some((at, batch)) = messages.next_batch(name, &limits, progress)? {
        read += 1;
        let line_no = at.index();
        if let Some(id) = only
            && batch.session_id != id
        {
            if others.len() < 10 {
                others.insert(batch.session_id.clone());
            }
            continue;
        }
        let batch = match &args.channels {
            Some(wanted) => select_channels(batch, wanted, &limits)
                .map_err(|e| BadInput(format!("{name}: {at}: {e}")))?,
            None => batch,
        };
        let (admission, session) = sessions
            .admit(&batch, line_no as i64, |b| Kept {
                summary: Summary::new(
                    &b.session_id,
                    b.sample_rate_hz,
                    b.channels.len(),
                    &config.bands,
                ),
                triggers: TriggerState::default(),
            })
            .map_err(|e| BadInput(format!("{name}: {at}: {e}")))?;
        let Some(session) = session else {
            if let Some(s) = sessions.get_mut(&batch.session_id) {
                s.extra.summary.duplicates += 1;
            }
            continue;
        };
        match admission {
            eeg_session::Admission::New => order.push(batch.session_id.clone()),
            eeg_session::Admission::Reset(ref reason) => {
                tracing::warn!(
                    "{name}: {at}: session '{}': {reason}; state reset",
                    batch.session_id
                );
                session.extra.summary.resets += 1;
                session.extra.triggers.reset();
                if let Some(r) = report.as_deref_mut() {
                    r.reset(&batch.session_id);
                }
            }
            _ => {}
        }
        if matches!(
            admission,
            eeg_session::Admission::New
                | eeg_session::Admission::Reset(eeg_session::ResetReason::ShapeChanged)
        ) {
            for w in &session.processor.plan().warnings {
                tracing::warn!("{name}: session '{}': {w}", batch.session_id);
            }
        }
        let processor = &mut session.processor;
        let pushed = fan_out(
            &session.meta,
            &mut session.extra.triggers,
            &mut session.extra.summary,
            writer,
            triggers.as_deref_mut(),
            report.as_deref_mut(),
            |sink| {
                processor
                    .push_channel_major(batch.samples(), batch.samples_per_channel(), sink)
                    .map_err(|e| BadInput(format!("{name}: {at}: {e}")).into())
            },
        )?;
        if !pushed {
            return Ok(Vec::new());
        }
    }
    if read == 0 {
        return Err(BadInput(format!("{name}: empty input, no eeg.raw/1 message")).into());
    }
    if let Some(r) = report {
        r.set_input(match messages {
            RawMessages::Jsonl { line_no, .. } => {
                report::InputMeta::jsonl(name, "eeg.raw/1 JSONL", line_no)
            }
            RawMessages::Protobuf(_) => {
                report::InputMeta::messages(name, "binary eeg.raw/1, length-delimited", read)
            }
        });
    }
    if let Some(id) = only
        && order.is_empty()
    {
        let seen: Vec<String> = others.into_iter().collect();
        return Err(BadInput(format!(
            "{name}: --session-id: no message of session '{id}' (sessions in the input: {})",
            seen.join(", ")
        ))
        .into());
    }
    Ok(order
        .into_iter()
        .filter_map(|id| sessions.remove(&id).map(|s| s.extra.summary))
        .collect())
}

/// Where a raw message is in its input, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum At {
    Line(u64),
    Message { index: u64, offset: u64 },
}

impl At {
    /// The line's or message's number, counted from 1.
    fn index(self) -> u64 {
        match self {
            At::Line(n) => n,
            At::Message { index, .. } => index,
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Line(n) => write!(f, "line {n}"),
            At::Message { index, offset } => write!(f, "message {index} at byte {offset}"),
        }
    }
}

/// The raw messages of an input: JSONL lines, or a capture of binary `eeg.raw/1`.
pub(crate) enum RawMessages<R> {
    Jsonl {
        reader: R,
        line: Vec<u8>,
        line_no: u64,
    },
    Protobuf(eeg_schema::DelimitedReader<R>),
}

impl<R: BufRead> RawMessages<R> {
    pub(crate) fn new(reader: R, protobuf: bool, limits: &eeg_schema::Limits) -> Self {
        if protobuf {
            RawMessages::Protobuf(eeg_schema::DelimitedReader::new(
                reader,
                limits.max_message_bytes,
            ))
        } else {
            RawMessages::Jsonl {
                reader,
                line: Vec::new(),
                line_no: 0,
            }
        }
    }

    /// The next message, decoded, and where it is; blank lines are skipped.
    pub(crate) fn next_batch(
        &mut self,
        name: &str,
        limits: &eeg_schema::Limits,
        progress: &indicatif::ProgressBar,
    ) -> Result<Option<(At, eeg_schema::RawBatch)>, BadInput> {
        match self {
            RawMessages::Jsonl {
                reader,
                line,
                line_no,
            } => loop {
                line.clear();
                let n = reader
                    .take(limits.max_message_bytes as u64 + 2)
                    .read_until(b'\n', line)
                    .map_err(|e| {
                        BadInput(format!("{name}: line {}: cannot read: {e}", *line_no + 1))
                    })?;
                if n == 0 {
                    return Ok(None);
                }
                *line_no += 1;
                progress.inc(n as u64);
                if line.last() != Some(&b'\n') && n > limits.max_message_bytes {
                    return Err(BadInput(format!(
                        "{name}: line {line_no}: longer than {} bytes",
                        limits.max_message_bytes
                    )));
                }
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                let at = At::Line(*line_no);
                return eeg_schema::decode_raw(text, limits)
                    .map(|b| Some((at, b)))
                    .map_err(|e| BadInput(format!("{name}: {at}: {e}")));
            },
            RawMessages::Protobuf(capture) => {
                let before = capture.position();
                let Some(m) = capture
                    .next_message()
                    .map_err(|e| BadInput(format!("{name}: {e}")))?
                else {
                    return Ok(None);
                };
                let at = At::Message {
                    index: m.index,
                    offset: m.offset,
                };
                let batch = eeg_schema::decode_raw_protobuf(m.bytes, limits)
                    .map_err(|e| BadInput(format!("{name}: {at}: {e}")))?;
                progress.inc(capture.position() - before);
                Ok(Some((at, batch)))
            }
        }
    }
}

/// The batch with only the `wanted` channels, in that order; a channel it does not have is
/// an error naming it and the channels it has.
fn select_channels(
    batch: eeg_schema::RawBatch,
    wanted: &[String],
    limits: &eeg_schema::Limits,
) -> Result<eeg_schema::RawBatch, String> {
    let mut parts = batch.into_parts();
    let n = parts.samples.len() / parts.channels.len().max(1);
    let mut samples = Vec::with_capacity(n * wanted.len());
    for w in wanted {
        let Some(i) = parts.channels.iter().position(|c| c == w) else {
            return Err(format!(
                "--channels: session '{}' has no channel '{w}' (channels: {})",
                parts.session_id,
                parts.channels.join(", ")
            ));
        };
        samples.extend_from_slice(&parts.samples[i * n..(i + 1) * n]);
    }
    parts.channels = wanted.to_vec();
    parts.samples = samples;
    eeg_schema::RawBatch::new(parts, limits).map_err(|e| e.to_string())
}

/// One session of an EDF/BDF file: its data signals at one sample rate.
#[derive(Debug)]
pub struct SessionGroup {
    pub session_id: String,
    pub device_id: String,
    pub rate: f64,
    /// Indices among the file's data signals (annotation signals excluded).
    pub signals: Vec<usize>,
    pub labels: Vec<String>,
}

/// The sessions of an EDF/BDF file: the voltage signals (or the `channels` asked for),
/// one session per sample rate, never resampled. A file with several rates gets session ids
/// suffixed with the rate (`ID@256Hz`).
pub fn session_groups(
    name: &str,
    path: &Path,
    header: &eeg_edf::Header,
    channels: Option<&[String]>,
    session_id: Option<&str>,
) -> Result<Vec<SessionGroup>, BadInput> {
    // Data signals to process, as (index among data signals, label, µV factor, rate).
    let data: Vec<(usize, &eeg_edf::SignalHeader)> = header
        .signals
        .iter()
        .filter(|s| !s.is_annotation)
        .enumerate()
        .collect();
    let selected: Vec<(usize, &eeg_edf::SignalHeader)> = match channels {
        Some(wanted) => {
            let mut sel = Vec::new();
            for w in wanted {
                match data.iter().find(|(_, s)| s.label == *w) {
                    Some(&d) => sel.push(d),
                    None => {
                        let labels: Vec<&str> =
                            data.iter().map(|(_, s)| s.label.as_str()).collect();
                        return Err(BadInput(format!(
                            "{name}: --channels: no signal labelled '{w}' (signals: {})",
                            labels.join(", ")
                        )));
                    }
                }
            }
            sel
        }
        None => {
            let (volts, other): (Vec<_>, Vec<_>) = data
                .iter()
                .copied()
                .partition(|(_, s)| s.microvolts_per_unit().is_some());
            for (_, s) in &other {
                tracing::warn!(
                    "{name}: signal '{}' in '{}' is not a voltage; skipped (select it with --channels to process it)",
                    s.label,
                    s.physical_dimension
                );
            }
            volts
        }
    };
    if selected.is_empty() {
        return Err(BadInput(format!("{name}: no EEG signal to process")));
    }

    // One session per sample rate: signals at different rates are never resampled.
    let duration = header.record_duration_s;
    let mut groups: Vec<(f64, Vec<usize>, Vec<String>)> = Vec::new();
    for (i, s) in &selected {
        let rate = s.sample_rate_hz(duration);
        match groups.iter_mut().find(|g| g.0 == rate) {
            Some(g) => {
                g.1.push(*i);
                g.2.push(s.label.clone());
            }
            None => groups.push((rate, vec![*i], vec![s.label.clone()])),
        }
    }
    let base_id = session_id.map(str::to_string).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "session".into())
    });
    let device_id = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    let multi = groups.len() > 1;
    Ok(groups
        .into_iter()
        .map(|(rate, signals, labels)| SessionGroup {
            session_id: if multi {
                format!("{base_id}@{rate}Hz")
            } else {
                base_id.clone()
            },
            device_id: device_id.clone(),
            rate,
            signals,
            labels,
        })
        .collect())
}
