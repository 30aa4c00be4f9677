//! The TOML config file `process`, `report` and `run` read: every key optional, defaults as
//! documented in README.md and docs/limits.md.
//!
//! The file is parsed strictly (unknown keys are errors, so a typo cannot silently fall back
//! to a default) and checked whole before any input is read.

use crate::triggers::{TriggerConfig, TriggerConfigError};
use eeg_dsp::epochs::{Component, EpochConfig, ErdConfig, Peak};
use eeg_dsp::{Band, ConfigError, ProcessingConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    filter: FilterSection,
    #[serde(default)]
    window: WindowSection,
    /// Kept as a table so the bands keep the file's order.
    bands: Option<toml::Table>,
    #[serde(default)]
    quality: QualitySection,
    #[serde(default)]
    limits: LimitsSection,
    /// The `[[triggers]]` tables, kept as tables so that eeg_session reads them and its errors
    /// name the rule and the key (docs/triggers.md).
    triggers: Option<Vec<toml::Table>>,
    epochs: Option<EpochsSection>,
    #[serde(default)]
    events: EventsSection,
}

/// Everything the config file defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub processing: ProcessingConfig,
    /// The `[[triggers]]` rules; the default rules when the file has no `triggers`.
    pub triggers: TriggerConfig,
    /// `[epochs]`: what to cut around events; `None` (no table) cuts none.
    pub epochs: Option<EpochsConfig>,
    pub events: EventsConfig,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// How far behind a session's newest sample an event may still be placed (and its epoch
    /// cut), s.
    pub max_delay_s: f64,
    /// Events a session holds at most: waiting for their samples, remembered to know copies
    /// (those within `max_delay_s`), or with an epoch waiting for its end. They travel in the
    /// service's session snapshots, which this keeps small.
    pub max_held: usize,
}

/// The most `events.max_held` may be.
pub const MAX_HELD_LIMIT: usize = 1 << 16;

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            max_delay_s: 10.0,
            max_held: 1024,
        }
    }
}

/// `[epochs]`; the default is MNE's epochs of every event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EpochsConfig {
    pub epoch: EpochConfig,
    /// The labels whose events are epoched; `None`: every event's.
    pub labels: Option<Vec<String>>,
    /// Records carry the baseline-corrected samples.
    pub include_samples: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsSection {
    max_delay_s: Option<f64>,
    max_held: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochsSection {
    tmin_s: Option<f64>,
    tmax_s: Option<f64>,
    /// `[]`: no baseline correction.
    baseline_s: Option<Vec<f64>>,
    reject_uv: Option<f64>,
    flat_uv: Option<f64>,
    labels: Option<Vec<String>>,
    include_samples: Option<bool>,
    /// Kept as a table so the components keep the file's order.
    components: Option<toml::Table>,
    erd: Option<ErdSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErdSection {
    reference_s: [f64; 2],
    active_s: [f64; 2],
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterSection {
    mains_hz: Option<f64>,
    notch_q: Option<f64>,
    bandpass_hz: Option<[f64; 2]>,
    bandpass_order: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSection {
    length_s: Option<f64>,
    hop_s: Option<f64>,
    welch_segment_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QualitySection {
    flatline_ptp_uv: Option<f64>,
    railed_fraction: Option<f64>,
    artifact_ptp_uv: Option<f64>,
    max_line_noise_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_sample_rate_hz: Option<f64>,
    max_channels: Option<usize>,
    max_session_state_mib: Option<u64>,
    max_fft_len: Option<usize>,
}

/// A config file that cannot be used; its message is one line naming the file (when read
/// from one) and the line or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or a key of the wrong type or unknown; `line` when the parser tells it.
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error(transparent)]
    Processing(#[from] ConfigError),
    #[error(transparent)]
    Triggers(#[from] TriggerConfigError),
    /// Any of the above in the file at `path`.
    #[error("{}: {source}", path.display())]
    In {
        path: PathBuf,
        source: Box<ConfigFileError>,
    },
}

/// Reads and parses a config file. Errors are one line naming the file and the line or key.
pub fn load(path: &Path) -> Result<Config, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_all(&text).map_err(|e| ConfigFileError::In {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

impl Config {
    /// What is allowed but probably not meant, one line each, for a warning: trigger rules
    /// that can never fire with the configured bands.
    pub fn warnings(&self) -> Vec<String> {
        let bands: Vec<&str> = self
            .processing
            .bands
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        self.triggers.never_firing(&bands)
    }
}

/// The config of `path`, or the defaults when there is none.
pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigFileError> {
    match path {
        Some(p) => load(p),
        None => Ok(Config {
            processing: ProcessingConfig::default(),
            triggers: TriggerConfig::default(),
            epochs: None,
            events: EventsConfig::default(),
        }),
    }
}

/// Parses config text; the error names the line or key.
#[cfg(test)]
fn parse(text: &str) -> Result<ProcessingConfig, String> {
    parse_all(text)
        .map(|c| c.processing)
        .map_err(|e| e.to_string())
}

/// Parses config text, trigger rules included; the error names the line or key (for a rule:
/// its index, id and key).
pub fn parse_all(text: &str) -> Result<Config, ConfigFileError> {
    let file: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            text.as_bytes()[..s.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        });
        ConfigFileError::Syntax {
            line,
            message: crate::text::message(e.message().trim()),
        }
    })?;
    let mut c = ProcessingConfig::default();
    let f = file.filter;
    set(&mut c.filter.mains_hz, f.mains_hz);
    set(&mut c.filter.notch_q, f.notch_q);
    set(&mut c.filter.bandpass_hz, f.bandpass_hz);
    set(&mut c.filter.bandpass_order, f.bandpass_order);
    let w = file.window;
    set(&mut c.window.length_s, w.length_s);
    set(&mut c.window.hop_s, w.hop_s);
    set(&mut c.window.welch_segment_s, w.welch_segment_s);
    let q = file.quality;
    set(&mut c.quality.flatline_ptp_uv, q.flatline_ptp_uv);
    set(&mut c.quality.railed_fraction, q.railed_fraction);
    set(&mut c.quality.artifact_ptp_uv, q.artifact_ptp_uv);
    set(&mut c.quality.max_line_noise_ratio, q.max_line_noise_ratio);
    let l = file.limits;
    set(&mut c.limits.max_sample_rate_hz, l.max_sample_rate_hz);
    set(&mut c.limits.max_channels, l.max_channels);
    if let Some(mib) = l.max_session_state_mib {
        c.limits.max_session_state_bytes =
            mib.checked_mul(1 << 20)
                .ok_or_else(|| ConfigFileError::Invalid {
                    key: "limits.max_session_state_mib".into(),
                    problem: format!("{mib} MiB is more than a machine can address"),
                })?;
    }
    set(&mut c.limits.max_fft_len, l.max_fft_len);
    if let Some(bands) = file.bands {
        c.bands = bands
            .into_iter()
            .map(|(name, v)| band(&name, &v))
            .collect::<Result<_, _>>()?;
    }
    if ![0.0, 50.0, 60.0].contains(&c.filter.mains_hz) {
        return Err(ConfigFileError::Invalid {
            key: "filter.mains_hz".into(),
            problem: format!("must be 50, 60 or 0 (off), got {}", c.filter.mains_hz),
        });
    }
    // Checks that need no sample rate; the rest is checked per input once its rate is known.
    c.validate()?;
    let triggers = match file.triggers {
        Some(tables) => {
            let bands: Vec<&str> = c.bands.iter().map(|b| b.name.as_str()).collect();
            TriggerConfig::from_tables(&tables, &bands)?
        }
        None => TriggerConfig::default(),
    };
    let events = EventsConfig {
        max_delay_s: match file.events.max_delay_s {
            Some(d) if !(d.is_finite() && (0.0..=3600.0).contains(&d)) => {
                return Err(invalid(
                    "events.max_delay_s",
                    format!("must be 0 to 3600 s, got {d}"),
                ));
            }
            d => d.unwrap_or(EventsConfig::default().max_delay_s),
        },
        max_held: match file.events.max_held {
            Some(n) if !(1..=MAX_HELD_LIMIT).contains(&n) => {
                return Err(invalid(
                    "events.max_held",
                    format!("must be 1 to {MAX_HELD_LIMIT}, got {n}"),
                ));
            }
            n => n.unwrap_or(EventsConfig::default().max_held),
        },
    };
    let epochs = file.epochs.map(epochs).transpose()?;
    Ok(Config {
        processing: c,
        triggers,
        epochs,
        events,
    })
}

fn invalid(key: &str, problem: String) -> ConfigFileError {
    ConfigFileError::Invalid {
        key: key.into(),
        problem,
    }
}

/// `[epochs]` as the DSP takes it; what depends on a sample rate is checked per session.
fn epochs(e: EpochsSection) -> Result<EpochsConfig, ConfigFileError> {
    let d = EpochConfig::default();
    let tmin_s = e.tmin_s.unwrap_or(d.tmin_s);
    let tmax_s = e.tmax_s.unwrap_or(d.tmax_s);
    // MNE's default baseline, (None, 0): from the epoch's start to the event.
    let baseline_s = match e.baseline_s.as_deref() {
        None if tmin_s <= 0.0 => Some([tmin_s, 0.0_f64.min(tmax_s)]),
        None | Some([]) => None,
        Some(&[a, b]) => Some([a, b]),
        Some(other) => {
            return Err(invalid(
                "epochs.baseline_s",
                format!("must be [start_s, end_s], or [] for none, got {other:?}"),
            ));
        }
    };
    let mut components = Vec::new();
    for (name, v) in e.components.unwrap_or_default() {
        components.push(component(&name, &v)?);
    }
    let config = EpochConfig {
        tmin_s,
        tmax_s,
        baseline_s,
        reject_uv: e.reject_uv,
        flat_uv: e.flat_uv,
        components,
        erd: e.erd.map(|e| ErdConfig {
            reference_s: e.reference_s,
            active_s: e.active_s,
        }),
    };
    // The rules that need no sample rate, at load: a session's rate checks the rest.
    let check = ProcessingConfig::default()
        .plan(1000.0)
        .map_err(ConfigFileError::Processing)?;
    eeg_dsp::epochs::EpochPlan::new(&config, &check).map_err(ConfigFileError::Processing)?;
    if let Some(labels) = &e.labels
        && let Some(bad) = labels
            .iter()
            .find(|l| l.len() > eeg_schema::MAX_LABEL_BYTES)
    {
        return Err(invalid(
            "epochs.labels",
            format!(
                "{} is longer than an event's label may be ({} bytes)",
                crate::text::quoted(bad),
                eeg_schema::MAX_LABEL_BYTES
            ),
        ));
    }
    Ok(EpochsConfig {
        epoch: config,
        labels: e.labels,
        include_samples: e.include_samples.unwrap_or(false),
    })
}

/// `name = [a, b]`, or `name = { window_s = [a, b], peak = "pos" | "neg" | "abs" }`.
fn component(name: &str, v: &toml::Value) -> Result<Component, ConfigFileError> {
    let key = format!("epochs.components.{name}");
    if name.is_empty() || name.len() > MAX_BAND_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(invalid(
            "epochs.components",
            format!(
                "component name {} must be 1 to {MAX_BAND_NAME_BYTES} bytes with no control characters",
                crate::text::quoted(name)
            ),
        ));
    }
    let pair = |v: &toml::Value| {
        v.as_array().and_then(|a| match a.as_slice() {
            [a, b] => Some([number(a)?, number(b)?]),
            _ => None,
        })
    };
    let (window, peak) = match v {
        toml::Value::Table(t) => {
            if let Some(k) = t
                .keys()
                .find(|k| !["window_s", "peak"].contains(&k.as_str()))
            {
                return Err(invalid(
                    &key,
                    format!("unknown key {}", crate::text::quoted(k)),
                ));
            }
            let peak = match t.get("peak").map(|p| p.as_str()) {
                None => Some(Peak::Abs),
                Some(Some("pos")) => Some(Peak::Pos),
                Some(Some("neg")) => Some(Peak::Neg),
                Some(Some("abs")) => Some(Peak::Abs),
                Some(_) => None,
            };
            let Some(peak) = peak else {
                return Err(invalid(
                    &format!("{key}.peak"),
                    "must be \"pos\", \"neg\" or \"abs\"".into(),
                ));
            };
            (t.get("window_s").and_then(pair), peak)
        }
        v => (pair(v), Peak::Abs),
    };
    let Some(window_s) = window else {
        return Err(invalid(
            &key,
            format!(
                "must be [start_s, end_s] or {{ window_s = [start_s, end_s], peak = \"pos\" }}, got {}",
                crate::text::shown(&v.to_string())
            ),
        ));
    };
    Ok(Component {
        name: name.to_string(),
        window_s,
        peak,
    })
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

/// Longest band name, in bytes: names are keys of every record.
pub const MAX_BAND_NAME_BYTES: usize = 64;

fn band(name: &str, v: &toml::Value) -> Result<Band, ConfigFileError> {
    // Band names go into every record and into messages: one short line each.
    if name.is_empty() || name.len() > MAX_BAND_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ConfigFileError::Invalid {
            key: "bands".into(),
            problem: format!(
                "band name {} must be 1 to {MAX_BAND_NAME_BYTES} bytes with no control characters",
                crate::text::quoted(name)
            ),
        });
    }
    let edges = v.as_array().and_then(|a| match a.as_slice() {
        [lo, hi] => Some((number(lo)?, number(hi)?)),
        _ => None,
    });
    match edges {
        Some((lo_hz, hi_hz)) => Ok(Band {
            name: name.to_string(),
            lo_hz,
            hi_hz,
        }),
        None => Err(ConfigFileError::Invalid {
            key: format!("bands.{name}"),
            problem: format!(
                "must be [low_hz, high_hz], got {}",
                crate::text::shown(&v.to_string())
            ),
        }),
    }
}

fn number(v: &toml::Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(parse("").unwrap(), ProcessingConfig::default());
    }

    #[test]
    fn keys_override_defaults_and_bands_keep_file_order() {
        let c = parse(
            "[filter]\nmains_hz = 60\nbandpass_order = 2\n[bands]\nhigh = [20, 40]\nlow = [1.0, 8.0]\n",
        )
        .unwrap();
        assert_eq!(c.filter.mains_hz, 60.0);
        assert_eq!(c.filter.bandpass_order, 2);
        assert_eq!(c.filter.notch_q, 30.0);
        let names: Vec<_> = c.bands.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["high", "low"]);
        assert_eq!((c.bands[0].lo_hz, c.bands[0].hi_hz), (20.0, 40.0));
    }

    #[test]
    fn errors_name_the_line_or_key() {
        let e = parse("[filter]\nmains = 50\n").unwrap_err();
        assert!(e.starts_with("line 2: unknown field `mains`"), "{e}");
        let e = parse("[window]\nhop_s = \"1s\"\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse("[bands]\nalpha = [8]\n").unwrap_err();
        assert_eq!(e, "bands.alpha: must be [low_hz, high_hz], got [8]");
        // What the file holds is quoted on one line and cut.
        let e = parse("[bands]\n\"alpha\\nforged line\" = 1\n").unwrap_err();
        assert_eq!(
            e,
            "bands: band name \"alpha\\nforged line\" must be 1 to 64 bytes with no control characters"
        );
        let e = parse(&format!("[bands]\na = \"{}\"\n", "x".repeat(3000))).unwrap_err();
        assert!(!e.contains('\n') && e.len() < 200, "{e}");
        let e = parse("[filter]\nmains_hz = 55\n").unwrap_err();
        assert_eq!(e, "filter.mains_hz: must be 50, 60 or 0 (off), got 55");
        let e = parse("[bands]\nalpha = [13, 8]\n").unwrap_err();
        assert!(e.starts_with("bands.alpha: must be [low, high]"), "{e}");
    }

    #[test]
    fn limits_are_read_and_checked() {
        let c = parse(
            "[limits]\nmax_sample_rate_hz = 200000\nmax_channels = 2048\nmax_session_state_mib = 4096\nmax_fft_len = 524288\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_sample_rate_hz, 200_000.0);
        assert_eq!(c.limits.max_channels, 2048);
        assert_eq!(c.limits.max_session_state_bytes, 4096 << 20);
        assert_eq!(c.limits.max_fft_len, 524_288);
        assert_eq!(parse("").unwrap().limits, eeg_dsp::SessionLimits::default());
        let e = parse("[limits]\nmax_channels = 0\n").unwrap_err();
        assert_eq!(e, "limits.max_channels: must be at least 1");
        let e = parse("[limits]\nmax_session_state_mib = 18446744073709551615\n").unwrap_err();
        assert!(e.starts_with("limits.max_session_state_mib: "), "{e}");
        let e = parse("[limits]\nmax_sample_rate = 1\n").unwrap_err();
        assert!(
            e.starts_with("line 2: unknown field `max_sample_rate`"),
            "{e}"
        );
        let e = parse("[limits]\nmax_channels = -3\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn a_file_is_named_in_its_errors() {
        let dir = std::env::temp_dir().join(format!("eeg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[window]\nhop_s = 0\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: window.hop_s: must be a number of seconds > 0, got 0",
                path.display()
            )
        );
        let missing = dir.join("missing.toml");
        let e = load(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read config: ", missing.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn triggers_sit_beside_the_other_tables() {
        let c = parse_all(
            "[filter]\nmains_hz = 60\n\n[[triggers]]\nid = \"mu_up\"\nmetric = \"band_power.mu\"\n\
             op = \">\"\nthreshold = 4\nfor_windows = 3\n\n[bands]\nmu = [8, 12]\n",
        )
        .unwrap();
        assert_eq!(c.processing.filter.mains_hz, 60.0);
        let ids: Vec<_> = c.triggers.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["mu_up"]);
        assert_eq!(c.triggers.rules[0].for_windows, 3);
        // No triggers: the default rules; an empty list: none.
        assert_eq!(parse_all("").unwrap().triggers, TriggerConfig::default());
        assert!(
            parse_all("triggers = []\n")
                .unwrap()
                .triggers
                .rules
                .is_empty()
        );
    }

    #[test]
    fn default_rules_that_custom_bands_cannot_feed_are_warned_about() {
        let c = parse_all("[bands]\nlow = [1, 8]\nhigh = [8, 30]\n").unwrap();
        let w = c.warnings();
        let ids: Vec<&str> = w.iter().map(|l| l.split('\'').nth(1).unwrap()).collect();
        // poor_signal needs no band; both engagement rules need theta, alpha and beta.
        assert_eq!(ids, ["high_engagement", "low_engagement"], "{w:?}");
        assert!(
            w[0].contains("no band theta, alpha, beta among the configured bands (low, high)"),
            "{w:?}"
        );
        assert!(parse_all("").unwrap().warnings().is_empty());
        assert!(
            parse_all("triggers = []\n[bands]\nlow = [1, 8]\n")
                .unwrap()
                .warnings()
                .is_empty()
        );
    }

    #[test]
    fn trigger_errors_name_the_rule_and_key() {
        let rule = "[[triggers]]\nid = \"a\"\nmetric = \"indices.engagement\"\nop = \">\"\nthreshold = 1\n";
        let e = parse(&format!("{rule}{rule}")).unwrap_err();
        assert_eq!(e, "triggers[1] (id \"a\"): id: duplicate of triggers[0]");
        let e = parse(&format!("{rule}for_windos = 2\n")).unwrap_err();
        assert!(
            e.starts_with("triggers[0] (id \"a\"): for_windos: unknown field"),
            "{e}"
        );
        // The band must be one of the file's bands (here the defaults are replaced).
        let e = parse(
            "[bands]\nlow = [1, 8]\n[[triggers]]\nid = \"b\"\nmetric = \"relative_power.alpha\"\nop = \"<\"\nthreshold = 0.1\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "triggers[0] (id \"b\"): metric: band \"alpha\" is not one of the configured bands (low)"
        );
    }

    #[test]
    fn events_limits_are_read_and_checked_naming_the_key() {
        let c = parse_all("[events]\nmax_delay_s = 2.5\nmax_held = 64\n").unwrap();
        assert_eq!(
            c.events,
            EventsConfig {
                max_delay_s: 2.5,
                max_held: 64
            }
        );
        assert_eq!(parse_all("").unwrap().events, EventsConfig::default());
        for (text, want) in [
            ("max_held = 0", "events.max_held: must be 1 to 65536, got 0"),
            (
                "max_held = 65537",
                "events.max_held: must be 1 to 65536, got 65537",
            ),
            (
                "max_delay_s = -1",
                "events.max_delay_s: must be 0 to 3600 s, got -1",
            ),
        ] {
            let e = parse_all(&format!("[events]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
