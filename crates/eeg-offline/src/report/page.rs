//! The page itself: the sessions' sections, the input and config tables, and the data the
//! page's script draws, filled into the template.

use std::fmt::Write as _;

use super::{Collector, ConfigMeta, MAX_POINTS, N_STATES, REASONS, Series};

/// The page's template, in the repository's `assets/` beside the live page and what the two
/// share; [`template`] puts the shared style and script into it.
const TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/report.html"
));

/// The template with the pages' shared style and script in it, made once.
fn template() -> &'static str {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| crate::pages::splice(TEMPLATE))
}

impl Collector {
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
        crate::pages::fill(
            template(),
            &[
                ("{{TITLE}}", &esc(title)),
                ("{{BODY}}", &body),
                ("{{DATA}}", &script_json(&data)),
            ],
        )
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

impl Series {
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
    pub(super) fn data(&self) -> serde_json::Value {
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
                    // An event happens at its window's end (docs/triggers.md).
                    "t": (e.end_ms - self.first_ms) as f64 / 1000.0,
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
            // Where the times above count from: the start of the first window, Unix ms
            // (the page draws UTC clock times).
            "startMs": self.first_ms,
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
pub(super) fn iso_ms(unix_ms: i64) -> String {
    let (y, m, d) = crate::time::civil_from_days(unix_ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02} {}", crate::time::clock_ms(unix_ms))
}

/// `H:MM:SS` of a number of seconds.
fn elapsed(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

pub(super) fn duration(s: f64) -> String {
    format!("{} ({s} s)", elapsed(s))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn times_are_utc_and_spans_hours_minutes_seconds() {
        // 2026-12-02T14:15:03.048Z.
        assert_eq!(iso_ms(1_796_220_903_048), "2026-12-02 14:15:03.048");
        assert_eq!(elapsed(3_725.4), "1:02:05");
        assert_eq!(duration(698.0), "0:11:38 (698 s)");
    }

    fn empty_page(title: &str) -> String {
        let config = ConfigMeta {
            processing: None,
            path: None,
            rules: Vec::new(),
        };
        Collector::default().render(title, &config)
    }

    #[test]
    fn an_empty_report_says_no_window_was_completed() {
        let page = empty_page("<rec>.edf");
        assert!(page.starts_with("<!doctype html>") || page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<h1>EEG report: &lt;rec&gt;.edf</h1>"));
        assert!(page.contains("No window was completed"));
        assert!(page.contains("none (the defaults)"));
        assert!(!page.contains("{{"), "every placeholder is filled");
    }

    #[test]
    fn the_page_carries_the_shared_style_and_script_and_no_palette_of_its_own() {
        use crate::pages::{CSS_MARKER, JS_MARKER, PAGE_CSS, PAGE_JS};
        for marker in [CSS_MARKER, JS_MARKER, "{{TITLE}}", "{{BODY}}", "{{DATA}}"] {
            assert_eq!(TEMPLATE.matches(marker).count(), 1, "{marker}");
        }
        let page = empty_page("r");
        assert!(page.contains(PAGE_CSS) && page.contains(PAGE_JS));
        assert!(!page.contains("/*PAGE_"), "a marker is left");
        // Every colour comes from page.css (the script reads them through `Page`): the
        // report's own style and script name none.
        for (i, _) in TEMPLATE.match_indices('#') {
            let hex = TEMPLATE[i + 1..]
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .count();
            assert!(
                ![3, 4, 6, 8].contains(&hex),
                "a colour of its own: {}",
                &TEMPLATE[i..i + 1 + hex]
            );
        }
        for f in ["rgb(", "rgba(", "hsl("] {
            assert!(!TEMPLATE.contains(f), "a colour of its own: {f}");
        }
    }
}
