//! `eeg-pipeline report` and `process --report`: one self-contained HTML page per input, with
//! the band powers, signal quality, trigger events and indices of each session over time.
//!
//! Windows are collected while they are processed (or read back from `eeg.processed/1`
//! records) into at most [`MAX_POINTS`] points per series: consecutive windows are averaged
//! into buckets of 2^k windows, and the buckets are merged in pairs whenever there would be
//! more, so memory and page size stay bounded however long the recording is. The per-channel
//! summary is computed from every window, not from the thinned points.
//!
//! The page (`report.html`) draws everything with its own inline script on canvases; its
//! Content-Security-Policy allows no request to any address, so it opens offline and leaks
//! nothing when opened.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eeg_dsp::{Band, ProcessingConfig, Window};
use eeg_schema::{SessionMeta, TriggerEvent, TriggerRecord};

use crate::flags::{BadInput, ProcessArgs};

/// Most points a displayed time series keeps: about one per pixel of a wide chart.
pub const MAX_POINTS: usize = 1024;

const TEMPLATE: &str = include_str!("report.html");

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// What `process` reads (EDF/EDF+/BDF, eeg.raw/1 JSONL, "-" for standard input), or a
    /// JSONL file of eeg.processed/1 records (e.g. captured with `tail`), told by content.
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
    let process = ProcessArgs {
        input: args.input.clone(),
        config: args.config.clone(),
        out: PathBuf::from("-"),
        format: None,
        channels: args.channels.clone(),
        session_id: args.session_id.clone(),
        triggers: None,
        report: Some(args.out.clone()),
        threads: args.threads,
        quiet: args.quiet,
    };
    crate::process::run_report_only(&process)
}

/// Where the records came from, for the page's "Input" table.
#[derive(Debug, Clone, Default)]
pub struct InputMeta {
    /// (name, value) rows.
    pub rows: Vec<(String, String)>,
    /// EDF/BDF signals: label, dimension, sample rate, physical range, prefilter.
    pub signals: Vec<[String; 5]>,
}

impl InputMeta {
    /// An EDF/BDF header. The patient and recording fields are left out: they may identify
    /// a person, and a report is made to be passed around.
    pub fn edf(name: &str, header: &eeg_edf::Header) -> InputMeta {
        let f = header.format;
        let format = match (f.is_bdf(), f.is_plus(), f.is_discontinuous()) {
            (false, false, _) => "EDF",
            (false, true, false) => "EDF+C",
            (false, true, true) => "EDF+D",
            (true, false, _) => "BDF",
            (true, true, false) => "BDF+C",
            (true, true, true) => "BDF+D",
        };
        let data = header.signals.iter().filter(|s| !s.is_annotation).count();
        let rows = vec![
            ("File".into(), name.to_string()),
            ("Format".into(), format.into()),
            ("Start (UTC)".into(), iso_ms(header.start_unix_ms())),
            ("Duration".into(), duration(header.duration_s())),
            (
                "Data records".into(),
                format!("{} × {} s", header.n_records, header.record_duration_s),
            ),
            (
                "Signals".into(),
                format!("{data} (annotation signals excluded)"),
            ),
        ];
        let signals = header
            .signals
            .iter()
            .filter(|s| !s.is_annotation)
            .map(|s| {
                [
                    s.label.clone(),
                    s.physical_dimension.clone(),
                    format!("{} Hz", s.sample_rate_hz(header.record_duration_s)),
                    format!("{} … {}", s.physical_min, s.physical_max),
                    s.prefilter.clone(),
                ]
            })
            .collect();
        InputMeta { rows, signals }
    }

    /// A JSONL input: raw batches or processed records.
    pub fn jsonl(name: &str, what: &str, lines: u64) -> InputMeta {
        InputMeta::counted(name, what, "Lines", lines)
    }

    /// A file of binary messages.
    pub fn messages(name: &str, what: &str, messages: u64) -> InputMeta {
        InputMeta::counted(name, what, "Messages", messages)
    }

    fn counted(name: &str, what: &str, unit: &str, count: u64) -> InputMeta {
        InputMeta {
            rows: vec![
                ("File".into(), name.to_string()),
                ("Format".into(), what.to_string()),
                (unit.into(), count.to_string()),
            ],
            signals: Vec::new(),
        }
    }
}

/// What the page says about the processing: the config (or that the records were read back,
/// so it is not known) and the trigger rules.
#[derive(Debug, Clone)]
pub struct ConfigMeta {
    /// `None`: the input was already processed.
    pub processing: Option<ProcessingConfig>,
    /// The config file, `None` for the defaults.
    pub path: Option<PathBuf>,
    pub rules: Vec<eeg_session::Rule>,
}

/// Windows and events of every session, collected as they are produced.
#[derive(Debug, Default)]
pub struct Collector {
    sessions: Vec<Series>,
    /// The series a session id's windows go to now (the last one of that id).
    by_id: HashMap<String, usize>,
    input: InputMeta,
}

impl Collector {
    pub fn set_input(&mut self, input: InputMeta) {
        self.input = input;
    }

    /// One window of a session. A session whose channels or bands change (a JSONL stream
    /// that changed shape) goes on as a new series, since its numbers no longer line up.
    pub fn window(&mut self, meta: &SessionMeta, w: &Window<'_>) {
        let i = match self.by_id.get(&meta.session_id) {
            Some(&i) if self.sessions[i].fits(meta, w) => i,
            other => {
                let part = other.map_or(1, |&i| self.sessions[i].part + 1);
                self.sessions.push(Series::new(meta, w, part));
                let i = self.sessions.len() - 1;
                self.by_id.insert(meta.session_id.clone(), i);
                i
            }
        };
        self.sessions[i].add(w);
    }

    pub fn event(&mut self, e: &TriggerEvent<'_>) {
        if let Some(&i) = self.by_id.get(e.session_id) {
            let s = &mut self.sessions[i];
            s.events.push(TriggerRecord::from(e));
        }
    }

    /// The session's signal restarted (a gap in an EDF+D file or a stream).
    pub fn reset(&mut self, session_id: &str) {
        if let Some(&i) = self.by_id.get(session_id) {
            self.sessions[i].resets += 1;
        }
    }

    pub fn windows(&self) -> u64 {
        self.sessions.iter().map(|s| s.windows).sum()
    }

    pub fn n_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The whole page.
    pub fn render(&self, title: &str, config: &ConfigMeta) -> String {
        let mut body = String::new();
        let _ = write!(
            body,
            "<header><h1>EEG report: {}</h1><p class=\"sub\">eeg-pipeline {} · {} session{} · {} windows</p></header>",
            esc(title),
            env!("CARGO_PKG_VERSION"),
            self.sessions.len(),
            if self.sessions.len() == 1 { "" } else { "s" },
            self.windows()
        );
        if self.sessions.is_empty() {
            body.push_str("<p class=\"empty\">No window was completed: the input is shorter than one window.</p>");
        }
        for (i, s) in self.sessions.iter().enumerate() {
            s.render_section(i, &mut body);
        }
        self.render_input(&mut body);
        render_config(config, &mut body);

        let data = serde_json::json!({
            "maxPoints": MAX_POINTS,
            "sessions": self.sessions.iter().map(Series::data).collect::<Vec<_>>(),
        });
        TEMPLATE
            .replace("{{TITLE}}", &esc(title))
            .replace("{{BODY}}", &body)
            .replace("{{DATA}}", &script_json(&data))
    }

    fn render_input(&self, out: &mut String) {
        out.push_str("<section class=\"meta\"><h2>Input</h2><table class=\"kv\">");
        for (k, v) in &self.input.rows {
            let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
        }
        out.push_str("</table>");
        if !self.input.signals.is_empty() {
            out.push_str(
                "<table class=\"grid-table\"><thead><tr><th>Signal</th><th>Unit</th><th>Rate</th><th>Physical range</th><th>Prefilter</th></tr></thead><tbody>",
            );
            for row in &self.input.signals {
                out.push_str("<tr>");
                for cell in row {
                    let _ = write!(out, "<td>{}</td>", esc(cell));
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table>");
        }
        out.push_str("</section>");
    }
}

fn render_config(config: &ConfigMeta, out: &mut String) {
    out.push_str("<section class=\"meta\"><h2>Processing config</h2><table class=\"kv\">");
    let mut row = |k: &str, v: String| {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    };
    row(
        "Config file",
        config
            .path
            .as_ref()
            .map_or("none (the defaults)".into(), |p| p.display().to_string()),
    );
    match &config.processing {
        None => row(
            "Processing",
            "not known: the input holds eeg.processed/1 records, processed elsewhere; only the trigger rules below were applied here".into(),
        ),
        Some(c) => {
            let f = &c.filter;
            row(
                "filter.mains_hz",
                if f.mains_hz == 0.0 {
                    "0 (notch off)".into()
                } else {
                    format!("{} (notch Q {})", f.mains_hz, f.notch_q)
                },
            );
            row(
                "filter.bandpass_hz",
                format!(
                    "{} – {} Hz, order {}",
                    f.bandpass_hz[0], f.bandpass_hz[1], f.bandpass_order
                ),
            );
            let w = &c.window;
            row(
                "window",
                format!(
                    "length {} s, hop {} s, Welch segment {} s",
                    w.length_s, w.hop_s, w.welch_segment_s
                ),
            );
            row(
                "bands",
                c.bands
                    .iter()
                    .map(|b| format!("{} {}–{} Hz", b.name, b.lo_hz, b.hi_hz))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            let q = &c.quality;
            row(
                "quality",
                format!(
                    "flatline below {} µV p-p; railed above {} of samples at the extremes; artifact above {} µV p-p; line noise ratio above {}",
                    q.flatline_ptp_uv, q.railed_fraction, q.artifact_ptp_uv, q.max_line_noise_ratio
                ),
            );
        }
    }
    if config.rules.is_empty() {
        row("Trigger rules", "none".into());
    }
    out.push_str("</table>");
    if !config.rules.is_empty() {
        out.push_str("<table class=\"grid-table\"><thead><tr><th>Rule</th><th>Fires when</th><th>for</th><th>Clears below/above</th><th>for</th><th>Cooldown</th></tr></thead><tbody>");
        for r in &config.rules {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{} {} {}</td><td>{} windows</td><td>{}</td><td>{} windows</td><td>{} s</td></tr>",
                esc(&r.id),
                esc(&r.metric.to_string()),
                esc(r.op.as_str()),
                r.threshold,
                r.for_windows,
                r.clear_threshold,
                r.clear_for_windows,
                r.cooldown_s
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

/// Quality of one channel in one window, as the map colours it: the first flag set, in
/// this order; "line noise" when no flag is set but the window is not good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    Good = 0,
    Flatline = 1,
    Railed = 2,
    Artifact = 3,
    LineNoise = 4,
}

const N_STATES: usize = 5;

/// Names of the reasons a window is not good, in [`State`] order from 1.
const REASONS: [&str; 4] = ["flatline", "railed", "artifact", "line noise"];

fn state(q: &eeg_dsp::Quality) -> State {
    if q.good {
        State::Good
    } else if q.flatline {
        State::Flatline
    } else if q.railed {
        State::Railed
    } else if q.artifact {
        State::Artifact
    } else {
        State::LineNoise
    }
}

/// Consecutive windows averaged into one displayed point.
#[derive(Debug, Clone)]
struct Bucket {
    n: u32,
    /// Sum of the windows' mid times, ms after the series' first window start.
    t_sum: f64,
    /// Sums of band power and of relative power, channel-major (channels × bands).
    abs: Vec<f64>,
    rel: Vec<f64>,
    /// Windows per channel and [`State`] (channels × [`N_STATES`]).
    states: Vec<u32>,
    /// Sums and counts of the defined engagement, θ/β and α/θ.
    idx: [f64; 3],
    idx_n: [u32; 3],
}

impl Bucket {
    fn new(values: usize, channels: usize) -> Bucket {
        Bucket {
            n: 0,
            t_sum: 0.0,
            abs: vec![0.0; values],
            rel: vec![0.0; values],
            states: vec![0; channels * N_STATES],
            idx: [0.0; 3],
            idx_n: [0; 3],
        }
    }

    fn absorb(&mut self, other: &Bucket) {
        self.n += other.n;
        self.t_sum += other.t_sum;
        for (a, b) in self.abs.iter_mut().zip(&other.abs) {
            *a += b;
        }
        for (a, b) in self.rel.iter_mut().zip(&other.rel) {
            *a += b;
        }
        for (a, b) in self.states.iter_mut().zip(&other.states) {
            *a += b;
        }
        for k in 0..3 {
            self.idx[k] += other.idx[k];
            self.idx_n[k] += other.idx_n[k];
        }
    }
}

/// One session's windows, thinned for display, and its exact per-channel totals.
#[derive(Debug)]
struct Series {
    meta: Arc<SessionMeta>,
    /// 1 for a session's first series, then 2, 3... after changes of shape.
    part: u32,
    bands: Vec<String>,
    first_ms: i64,
    last_end_ms: i64,
    windows: u64,
    settling: u64,
    resets: u64,
    /// Per channel: relative power summed over all windows (channels × bands), good windows,
    /// and windows with each reason set (channels × 4).
    rel_total: Vec<f64>,
    good: Vec<u64>,
    reasons: Vec<u64>,
    buckets: Vec<Bucket>,
    /// Windows per bucket: a power of two.
    per_bucket: u64,
    events: Vec<TriggerRecord>,
}

impl Series {
    fn new(meta: &SessionMeta, w: &Window<'_>, part: u32) -> Series {
        let (nch, nb) = (w.n_channels(), w.bands.len());
        Series {
            meta: Arc::new(meta.clone()),
            part,
            bands: w.bands.iter().map(|b| b.name.clone()).collect(),
            first_ms: w.start_ms,
            last_end_ms: w.end_ms,
            windows: 0,
            settling: 0,
            resets: 0,
            rel_total: vec![0.0; nch * nb],
            good: vec![0; nch],
            reasons: vec![0; nch * REASONS.len()],
            buckets: Vec::new(),
            per_bucket: 1,
            events: Vec::new(),
        }
    }

    fn fits(&self, meta: &SessionMeta, w: &Window<'_>) -> bool {
        self.meta.channels == meta.channels
            && self.bands.len() == w.bands.len()
            && self.bands.iter().zip(w.bands).all(|(a, b)| *a == b.name)
    }

    fn n_channels(&self) -> usize {
        self.meta.channels.len()
    }

    fn add(&mut self, w: &Window<'_>) {
        let (nch, nb) = (self.n_channels(), self.bands.len());
        self.windows += 1;
        self.settling += u64::from(w.settling);
        self.last_end_ms = self.last_end_ms.max(w.end_ms);
        let full = self
            .buckets
            .last()
            .is_none_or(|b| u64::from(b.n) >= self.per_bucket);
        if full {
            if self.buckets.len() == MAX_POINTS {
                self.halve();
            }
            self.buckets.push(Bucket::new(nch * nb, nch));
        }
        let Some(b) = self.buckets.last_mut() else {
            return;
        };
        b.n += 1;
        b.t_sum += (w.start_ms - self.first_ms) as f64 + (w.end_ms - w.start_ms) as f64 / 2.0;
        for c in 0..nch {
            let q = w.quality(c);
            let s = state(q);
            b.states[c * N_STATES + s as usize] += 1;
            if q.good {
                self.good[c] += 1;
            }
            for (k, set) in [
                q.flatline,
                q.railed,
                q.artifact,
                !q.good && s == State::LineNoise,
            ]
            .into_iter()
            .enumerate()
            {
                self.reasons[c * REASONS.len() + k] += u64::from(set);
            }
            let row = c * nb..(c + 1) * nb;
            for ((a, r), (p, rel)) in b.abs[row.clone()]
                .iter_mut()
                .zip(&mut b.rel[row.clone()])
                .zip(w.band_power(c).iter().zip(w.relative_power(c)))
            {
                *a += p;
                *r += rel;
            }
            for (t, rel) in self.rel_total[row].iter_mut().zip(w.relative_power(c)) {
                *t += rel;
            }
        }
        let idx = [
            w.indices.engagement,
            w.indices.theta_beta,
            w.indices.alpha_theta,
        ];
        for (k, v) in idx.into_iter().enumerate() {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                b.idx[k] += v;
                b.idx_n[k] += 1;
            }
        }
    }

    /// Merges the buckets in pairs: twice the windows per point, half the points.
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let mut it = old.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                a.absorb(&b);
            }
            self.buckets.push(a);
        }
        self.per_bucket *= 2;
    }

    fn title(&self) -> String {
        if self.part > 1 {
            format!(
                "{} (part {}: channels or bands changed)",
                self.meta.session_id, self.part
            )
        } else {
            self.meta.session_id.clone()
        }
    }

    /// The thinning, as the page states it.
    fn thinning_note(&self) -> String {
        if self.per_bucket == 1 {
            format!(
                "Every window is shown ({} points per series, not thinned).",
                self.buckets.len()
            )
        } else {
            format!(
                "Thinned for display: {} windows shown as {} points per series, each the mean of {} consecutive windows (the last of fewer); a quality cell shows the state of most of its windows. The summary table counts every window.",
                self.windows,
                self.buckets.len(),
                self.per_bucket
            )
        }
    }

    fn render_section(&self, i: usize, out: &mut String) {
        let m = &self.meta;
        let _ = write!(
            out,
            "<section class=\"session\" data-session=\"{i}\"><h2>Session {}</h2><table class=\"kv\">",
            esc(&self.title())
        );
        let mut rows: Vec<(&str, String)> = vec![
            ("Device", m.device_id.clone()),
            ("Sample rate", format!("{} Hz", m.sample_rate_hz)),
            ("Channels", m.channels.len().to_string()),
            ("First window (UTC)", iso_ms(self.first_ms)),
            (
                "Span",
                duration((self.last_end_ms - self.first_ms) as f64 / 1000.0),
            ),
            (
                "Windows",
                format!("{} ({} settling)", self.windows, self.settling),
            ),
        ];
        if let Some(u) = &m.user_id {
            rows.insert(1, ("User", u.clone()));
        }
        if self.resets > 0 {
            rows.push((
                "Restarts",
                format!("{} (after a gap in the signal)", self.resets),
            ));
        }
        for (k, v) in rows {
            let _ = write!(out, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
        }
        let _ = write!(
            out,
            "</table><p class=\"thin\" data-thinned=\"{}\">{}</p>",
            self.per_bucket > 1,
            esc(&self.thinning_note())
        );
        let panels = [
            (
                "abs",
                "Absolute band power",
                "Mean band power per channel, µV², log scale; one line per band.",
            ),
            (
                "rel",
                "Relative band power",
                "Each band's share of the channel's power in the band-pass range, stacked.",
            ),
            (
                "quality",
                "Signal quality",
                "Channel × time: good, flatline, railed, artifact or line noise.",
            ),
            (
                "events",
                "Trigger events",
                "Events the trigger rules raised: ▲ fired, ▼ cleared; also marked on the other time axes.",
            ),
            (
                "indices",
                "Engagement indices",
                "Over the good channels: engagement β/(α+θ), θ/β and α/θ; gaps where no channel was good.",
            ),
        ];
        for (key, title, note) in panels {
            let _ = write!(
                out,
                "<div class=\"panel\" data-panel=\"{key}\"><h3>{title}</h3><p class=\"note\">{note}</p><div class=\"legend\"></div><div class=\"plot\"></div></div>"
            );
        }
        self.render_summary(out);
        self.render_events(out);
        out.push_str("</section>");
    }

    fn render_summary(&self, out: &mut String) {
        let (nb, w) = (self.bands.len(), self.windows.max(1) as f64);
        out.push_str("<div class=\"table-wrap\"><h3>Summary per channel</h3><p class=\"note\">Mean relative power per band over every window; the share of windows that were good; the share with each reason for not being good (a window can have several).</p><table class=\"grid-table summary\"><thead><tr><th>Channel</th>");
        for b in &self.bands {
            let _ = write!(out, "<th>{}</th>", esc(b));
        }
        out.push_str("<th>good</th>");
        for r in REASONS {
            let _ = write!(out, "<th>{r}</th>");
        }
        out.push_str("</tr></thead><tbody>");
        for (c, name) in self.meta.channels.iter().enumerate() {
            let _ = write!(out, "<tr><th>{}</th>", esc(name));
            for b in 0..nb {
                let _ = write!(out, "<td>{:.3}</td>", self.rel_total[c * nb + b] / w);
            }
            let good = 100.0 * self.good[c] as f64 / w;
            let _ = write!(out, "<td class=\"pct\">{good:.1} %</td>");
            for k in 0..REASONS.len() {
                let n = self.reasons[c * REASONS.len() + k];
                if n == 0 {
                    out.push_str("<td class=\"zero\">–</td>");
                } else {
                    let _ = write!(out, "<td>{:.1} %</td>", 100.0 * n as f64 / w);
                }
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div>");
    }

    fn render_events(&self, out: &mut String) {
        if self.events.is_empty() {
            out.push_str("<p class=\"note\">No trigger event.</p>");
            return;
        }
        out.push_str("<div class=\"table-wrap\"><h3>Trigger event list</h3><table class=\"grid-table\"><thead><tr><th>Time (UTC)</th><th>+</th><th>Rule</th><th>State</th><th>Metric</th><th>Value</th><th>Threshold</th><th>Window</th></tr></thead><tbody>");
        for e in &self.events {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>",
                iso_ms(e.end_ms),
                elapsed((e.end_ms - self.first_ms) as f64 / 1000.0),
                esc(&e.rule_id),
                e.state.as_str(),
                e.state.as_str(),
                esc(&e.metric),
                e.value,
                e.threshold,
                e.window_index
            );
        }
        out.push_str("</tbody></table></div>");
    }

    /// The series as the page's script reads them.
    fn data(&self) -> serde_json::Value {
        let (nch, nb, np) = (self.n_channels(), self.bands.len(), self.buckets.len());
        let t: Vec<f64> = self
            .buckets
            .iter()
            .map(|b| (b.t_sum / f64::from(b.n)).round() / 1000.0)
            .collect();
        // Band powers as log10, quantised to 16 bits over the session's range; relative
        // powers to 16 bits over [0, 1]. Laid out channel, band, point.
        let logs: Vec<f64> = self
            .buckets
            .iter()
            .flat_map(|b| b.abs.iter().map(move |a| (a / f64::from(b.n)).log10()))
            .collect();
        let (lo, hi) = logs
            .iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let (lo, hi) = if lo.is_finite() {
            (lo, if hi > lo { hi } else { lo + 1.0 })
        } else {
            (0.0, 1.0)
        };
        let mut abs = Vec::with_capacity(nch * nb * np * 2);
        let mut rel = Vec::with_capacity(nch * nb * np * 2);
        for c in 0..nch {
            for k in 0..nb {
                for (p, b) in self.buckets.iter().enumerate() {
                    let v = logs[p * nch * nb + c * nb + k];
                    abs.extend(quantise(v, lo, hi).to_le_bytes());
                    let r = b.rel[c * nb + k] / f64::from(b.n);
                    rel.extend(quantise(r, 0.0, 1.0).to_le_bytes());
                }
            }
        }
        // Quality: the state of most of a bucket's windows; a tie goes to the problem.
        let mut quality = Vec::with_capacity(nch * np);
        for c in 0..nch {
            for b in &self.buckets {
                let counts = &b.states[c * N_STATES..(c + 1) * N_STATES];
                let mut best = 0;
                for (s, &n) in counts.iter().enumerate() {
                    if n >= counts[best] && n > 0 {
                        best = s;
                    }
                }
                quality.push(best as u8);
            }
        }
        let index = |k: usize| -> Vec<Option<f64>> {
            self.buckets
                .iter()
                .map(|b| (b.idx_n[k] > 0).then(|| round4(b.idx[k] / f64::from(b.idx_n[k]))))
                .collect()
        };
        let events: Vec<serde_json::Value> = self
            .events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "t": ((e.start_ms + e.end_ms) / 2 - self.first_ms) as f64 / 1000.0,
                    "rule": e.rule_id,
                    "state": e.state.as_str(),
                    "metric": e.metric,
                    "value": round4(e.value),
                    "threshold": e.threshold,
                })
            })
            .collect();
        serde_json::json!({
            "id": self.title(),
            "channels": self.meta.channels,
            "bands": self.bands,
            "span": (self.last_end_ms - self.first_ms) as f64 / 1000.0,
            "perPoint": self.per_bucket,
            "t": t,
            "absLog10": [lo, hi],
            "abs": base64(&abs),
            "rel": base64(&rel),
            "quality": base64(&quality),
            "indices": {
                "engagement": index(0),
                "theta_beta": index(1),
                "alpha_theta": index(2),
            },
            "events": events,
        })
    }
}

/// Missing: a value that could not be drawn (a band power of 0 has no logarithm).
const MISSING: u16 = u16::MAX;

fn quantise(v: f64, lo: f64, hi: f64) -> u16 {
    if !v.is_finite() {
        return MISSING;
    }
    let x = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    (x * f64::from(MISSING - 1)).round() as u16
}

fn round4(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1e4).round() / 1e4
    } else {
        v
    }
}

/// Standard base64 with padding: the page decodes it with `atob`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// JSON for a `<script type="application/json">` block: `<` is escaped so that no string in
/// the data (a channel name, a rule id) can close the block.
fn script_json(v: &serde_json::Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
}

/// Text for HTML element content or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
fn iso_ms(unix_ms: i64) -> String {
    let (y, m, d) = crate::time::civil_from_days(unix_ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02} {}", crate::time::clock_ms(unix_ms))
}

/// `H:MM:SS` of a number of seconds.
fn elapsed(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn duration(s: f64) -> String {
    format!("{} ({s} s)", elapsed(s))
}

/// Reads `eeg.processed/1` records into `collector`, evaluating the trigger rules on them as
/// `process` would have (the records carry every value a rule reads). Honours
/// `--session-id` and `--channels`.
pub fn read_processed(
    name: &str,
    input: &mut dyn BufRead,
    session_id: Option<&str>,
    channels: Option<&[String]>,
    engine: &eeg_session::TriggerEngine,
    collector: &mut Collector,
) -> Result<u64, BadInput> {
    struct Kept {
        meta: SessionMeta,
        triggers: eeg_session::TriggerState,
    }
    let mut sessions: HashMap<String, Kept> = HashMap::new();
    let mut others = std::collections::BTreeSet::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut bands: Vec<Band> = Vec::new();
    let mut band_power = Vec::new();
    let mut relative = Vec::new();
    let mut total = Vec::new();
    let mut quality = Vec::new();
    let mut names = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| BadInput(format!("{name}: line {}: cannot read: {e}", line_no + 1)))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let rec = eeg_schema::decode_processed(text)
            .map_err(|e| BadInput(format!("{name}: line {line_no}: {e}")))?;
        if let Some(id) = session_id
            && rec.session_id != id
        {
            if others.len() < 10 {
                others.insert(rec.session_id.clone());
            }
            continue;
        }
        // Channels in the order asked for, or as recorded.
        let picked: Vec<usize> = match channels {
            None => (0..rec.channels.len()).collect(),
            Some(wanted) => wanted
                .iter()
                .map(|w| {
                    rec.channels.iter().position(|c| c.name == *w).ok_or_else(|| {
                        BadInput(format!(
                            "{name}: line {line_no}: --channels: session '{}' has no channel '{w}' (channels: {})",
                            rec.session_id,
                            rec.channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let Some(first) = rec.channels.first() else {
            return Err(BadInput(format!(
                "{name}: line {line_no}: a record without channels"
            )));
        };
        if !bands
            .iter()
            .map(|b| b.name.as_str())
            .eq(first.band_power.names())
        {
            // Only the names matter here: rules and indices find bands by name.
            bands = first
                .band_power
                .names()
                .map(|n| Band {
                    name: n.to_string(),
                    lo_hz: 0.0,
                    hi_hz: 0.0,
                })
                .collect();
        }
        let nb = bands.len();
        band_power.clear();
        relative.clear();
        total.clear();
        quality.clear();
        names.clear();
        for &c in &picked {
            let ch = &rec.channels[c];
            if ch.band_power.0.len() != nb || ch.relative_power.0.len() != nb {
                return Err(BadInput(format!(
                    "{name}: line {line_no}: channel '{}' has other bands than channel '{}'",
                    ch.name, first.name
                )));
            }
            band_power.extend(ch.band_power.values());
            relative.extend(ch.relative_power.values());
            total.push(ch.total_power);
            let q = ch.quality;
            quality.push(eeg_dsp::Quality {
                rms_uv: q.rms_uv,
                ptp_uv: q.ptp_uv,
                line_noise_ratio: q.line_noise_ratio,
                flatline: q.flatline,
                railed: q.railed,
                artifact: q.artifact,
                good: q.good,
            });
            names.push(ch.name.clone());
        }
        let mut w = Window::from_parts(&bands, &band_power, &relative, &total, &quality);
        w.index = rec.window_index;
        w.start_ms = rec.start_ms;
        w.end_ms = rec.end_ms;
        w.settling = rec.settling;
        if channels.is_none() {
            // The indices as recorded; with a channel subset they are recomputed over it,
            // as `process --channels` would have.
            w.indices = eeg_dsp::Indices {
                engagement: rec.indices.engagement,
                theta_beta: rec.indices.theta_beta,
                alpha_theta: rec.indices.alpha_theta,
            };
        }
        let kept = sessions
            .entry(rec.session_id.clone())
            .or_insert_with(|| Kept {
                meta: SessionMeta {
                    session_id: rec.session_id.clone(),
                    device_id: rec.device_id.clone(),
                    user_id: rec.user_id.clone(),
                    sample_rate_hz: rec.sample_rate_hz,
                    channels: names.clone(),
                },
                triggers: engine.new_state(),
            });
        if kept.meta.channels != names || kept.meta.sample_rate_hz != rec.sample_rate_hz {
            kept.meta.channels = names.clone();
            kept.meta.sample_rate_hz = rec.sample_rate_hz;
            kept.triggers.reset();
        }
        collector.window(&kept.meta, &w);
        let mut events = Vec::new();
        engine.evaluate(
            &mut kept.triggers,
            &rec.session_id,
            &rec.device_id,
            &w,
            &mut |e| events.push(e.to_record()),
        );
        for e in &events {
            collector.event(&e.as_event());
        }
    }
    if let Some(id) = session_id
        && sessions.is_empty()
    {
        let seen: Vec<String> = others.into_iter().collect();
        return Err(BadInput(format!(
            "{name}: --session-id: no record of session '{id}' (sessions in the input: {})",
            seen.join(", ")
        )));
    }
    Ok(line_no)
}

/// The first line of a JSONL input names its schema: `eeg.processed/1` records are read as
/// they are, anything else is taken for raw batches.
pub fn is_processed(first_line: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        schema: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Head<'_>>(first_line.trim_ascii())
        .ok()
        .and_then(|h| h.schema)
        .is_some_and(|s| s == eeg_schema::PROCESSED_SCHEMA)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eeg_dsp::Quality;

    fn meta(channels: usize) -> SessionMeta {
        SessionMeta {
            session_id: "s".into(),
            device_id: "d".into(),
            user_id: None,
            sample_rate_hz: 256.0,
            channels: (0..channels).map(|c| format!("C{c}")).collect(),
        }
    }

    fn bands() -> Vec<Band> {
        ProcessingConfig::default().bands
    }

    /// Pushes `n` one-second windows whose alpha power is the window index + 1.
    fn push(collector: &mut Collector, n: u64) {
        let bands = bands();
        let meta = meta(2);
        for i in 0..n {
            let v = (i + 1) as f64;
            let bp = [1.0, 1.0, v, 1.0, 1.0, 1.0, 1.0, v, 1.0, 1.0];
            let total = [4.0 + v, 4.0 + v];
            let rel: Vec<f64> = bp.iter().map(|p| p / (4.0 + v)).collect();
            let q = [
                Quality {
                    good: true,
                    ..Quality::default()
                },
                Quality {
                    artifact: i % 2 == 0,
                    good: i % 2 == 1,
                    ..Quality::default()
                },
            ];
            let mut w = Window::from_parts(&bands, &bp, &rel, &total, &q);
            w.index = i;
            w.start_ms = 1_000_000 + i as i64 * 1000;
            w.end_ms = w.start_ms + 4000;
            collector.window(&meta, &w);
        }
    }

    #[test]
    fn a_long_session_is_thinned_to_at_most_max_points_of_whole_means() {
        let mut c = Collector::default();
        let n = 10 * MAX_POINTS as u64 + 3;
        push(&mut c, n);
        let s = &c.sessions[0];
        assert!(s.buckets.len() <= MAX_POINTS && s.buckets.len() > MAX_POINTS / 2);
        assert!(s.per_bucket.is_power_of_two());
        let counted: u64 = s.buckets.iter().map(|b| u64::from(b.n)).sum();
        assert_eq!(counted, n);
        assert!(
            s.buckets[..s.buckets.len() - 1]
                .iter()
                .all(|b| u64::from(b.n) == s.per_bucket)
        );
        // Bucket k holds windows k*m .. (k+1)*m: its mean alpha power is the mean of those
        // windows' index + 1.
        let m = s.per_bucket as f64;
        for (k, b) in s.buckets.iter().enumerate().take(5) {
            let want = k as f64 * m + (m + 1.0) / 2.0;
            assert_eq!(b.abs[2] / f64::from(b.n), want);
        }
        // The summary counts every window, not the points.
        assert_eq!(s.windows, n);
        assert_eq!(s.good, vec![n, n / 2]);
        assert_eq!(s.reasons[REASONS.len() + 2], n - n / 2);
    }

    #[test]
    fn a_short_session_is_not_thinned() {
        let mut c = Collector::default();
        push(&mut c, 100);
        let s = &c.sessions[0];
        assert_eq!((s.buckets.len(), s.per_bucket), (100, 1));
        assert!(s.thinning_note().contains("not thinned"));
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        // RFC 4648, section 10.
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn data_cannot_close_its_script_block() {
        let v = serde_json::json!({"name": "</script><script>alert(1)</script>"});
        let s = script_json(&v);
        assert!(!s.contains('<'));
        let back: serde_json::Value = serde_json::from_str(&s).expect("still JSON");
        assert_eq!(back, v);
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_first_line_tells_processed_records_from_raw_batches() {
        assert!(is_processed(
            br#"{"schema": "eeg.processed/1", "session_id": "s"}"#
        ));
        assert!(!is_processed(br#"{"schema":"eeg.raw/1"}"#));
        assert!(!is_processed(b"not json"));
    }
}
