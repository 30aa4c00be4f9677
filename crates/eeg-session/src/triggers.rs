//! The trigger engine: rules over per-window metrics that emit an `analytics.trigger/1` event
//! when a condition has held long enough (`fired`) and when it has gone away (`cleared`).
//!
//! docs/triggers.md is the full contract; in short:
//!
//! - A [`Rule`] compares one [`Metric`] of each window with a threshold. It fires after
//!   `for_windows` windows in a row meet the condition, and then does not fire again until it
//!   has cleared: `clear_for_windows` windows in a row on the other side of
//!   `clear_threshold` (hysteresis). After a clear it cannot fire until `cooldown_s` after
//!   the clearing window's `end_ms`. The window that completes a run is the one an event
//!   reports.
//! - A window whose metric is undefined (no good channel to average over, an index the
//!   processor could not compute, a band the window does not have, a non-finite value) is
//!   transparent to that rule: it neither counts towards a run nor breaks one. Windows marked
//!   `settling` are transparent to every rule: their values show the filters' start-up
//!   transient (a DC step easily flags every channel as an artifact), not the signal.
//! - All a session's engine state is a small [`TriggerState`], serialisable so it can be
//!   snapshotted with the rest of the session state and restored: a restored state gives the
//!   same events as an uninterrupted one. A window whose index is below the next expected one
//!   is ignored, so a re-delivered window cannot count twice.
//! - [`TriggerState::reset`] is for a restart of the session's signal state (a `seq` gap, a
//!   change of rate or channels). Runs in progress are dropped, because the windows on either
//!   side of a gap are not consecutive in time; whether a rule has fired, and its cooldown,
//!   survive, because a condition that persists across a gap is the same condition and must
//!   not be announced twice.
//!
//! Evaluating a window allocates nothing (unless the state was made for another rule set, see
//! [`TriggerEngine::evaluate`]); events borrow their strings from the engine and the caller.

use eeg_dsp::Window;
use eeg_schema::{EventState, TriggerEvent};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::text::{one_line, quoted};

/// Longest rule id, in bytes: ids are written into every event.
pub const MAX_ID_BYTES: usize = 64;

/// What a rule looks at, computed from one window. Displays (and parses) as the `metric` key
/// of the config, e.g. `indices.engagement` or `relative_power.alpha`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Metric {
    /// `indices.engagement`: beta / (alpha + theta) over the good channels.
    Engagement,
    /// `indices.theta_beta`: theta / beta over the good channels.
    ThetaBeta,
    /// `indices.alpha_theta`: alpha / theta over the good channels.
    AlphaTheta,
    /// `relative_power.<band>`: the band's relative power, mean over the good channels.
    RelativePower(String),
    /// `band_power.<band>`: the band's power in µV², mean over the good channels.
    BandPower(String),
    /// `quality.good_fraction`: good channels / channels, from 0 to 1.
    GoodFraction,
}

impl Metric {
    /// Every band the metric needs from the processing config to have a value: the named
    /// band, or the bands an index is computed from (eeg-dsp finds them by name).
    pub fn bands_needed(&self) -> Vec<&str> {
        match self {
            Metric::Engagement => vec!["theta", "alpha", "beta"],
            Metric::ThetaBeta => vec!["theta", "beta"],
            Metric::AlphaTheta => vec!["alpha", "theta"],
            Metric::RelativePower(b) | Metric::BandPower(b) => vec![b.as_str()],
            Metric::GoodFraction => vec![],
        }
    }

    /// The band the metric needs from the processing config, if any.
    pub fn band(&self) -> Option<&str> {
        match self {
            Metric::RelativePower(b) | Metric::BandPower(b) => Some(b),
            _ => None,
        }
    }

    /// The metric's value in `window`, `None` when it is undefined there (see the module
    /// docs). `good` is the number of good channels of the window.
    fn value(&self, window: &Window<'_>, good: usize) -> Option<f64> {
        let v = match self {
            Metric::Engagement => window.indices.engagement?,
            Metric::ThetaBeta => window.indices.theta_beta?,
            Metric::AlphaTheta => window.indices.alpha_theta?,
            Metric::GoodFraction => match window.n_channels() {
                0 => return None,
                n => good as f64 / n as f64,
            },
            Metric::RelativePower(band) => mean_over_good(window, band, good, true)?,
            Metric::BandPower(band) => mean_over_good(window, band, good, false)?,
        };
        v.is_finite().then_some(v)
    }
}

/// Mean of one band's (relative) power over the good channels, summed in channel order as the
/// processor sums for its indices.
fn mean_over_good(window: &Window<'_>, band: &str, good: usize, relative: bool) -> Option<f64> {
    if good == 0 {
        return None;
    }
    let b = window.bands.iter().position(|x| x.name == band)?;
    let sum: f64 = (0..window.n_channels())
        .filter(|&c| window.quality(c).good)
        .map(|c| {
            let row = if relative {
                window.relative_power(c)
            } else {
                window.band_power(c)
            };
            row[b]
        })
        .sum();
    Some(sum / good as f64)
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Engagement => f.write_str("indices.engagement"),
            Metric::ThetaBeta => f.write_str("indices.theta_beta"),
            Metric::AlphaTheta => f.write_str("indices.alpha_theta"),
            Metric::RelativePower(b) => write!(f, "relative_power.{b}"),
            Metric::BandPower(b) => write!(f, "band_power.{b}"),
            Metric::GoodFraction => f.write_str("quality.good_fraction"),
        }
    }
}

/// Text that names no metric or comparison; the display is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("{} needs a band name after the dot", quoted(.0))]
    MissingBand(String),
    #[error(
        "unknown metric {}, expected indices.engagement, indices.theta_beta, indices.alpha_theta, relative_power.<band>, band_power.<band> or quality.good_fraction",
        quoted(.0)
    )]
    UnknownMetric(String),
    #[error("must be \">\", \">=\", \"<\" or \"<=\", got {}", quoted(.0))]
    UnknownOp(String),
}

impl FromStr for Metric {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Metric, ParseError> {
        let band = |b: &str| {
            if b.is_empty() {
                Err(ParseError::MissingBand(s.to_string()))
            } else {
                Ok(b.to_string())
            }
        };
        match s {
            "indices.engagement" => Ok(Metric::Engagement),
            "indices.theta_beta" => Ok(Metric::ThetaBeta),
            "indices.alpha_theta" => Ok(Metric::AlphaTheta),
            "quality.good_fraction" => Ok(Metric::GoodFraction),
            _ => {
                if let Some(b) = s.strip_prefix("relative_power.") {
                    band(b).map(Metric::RelativePower)
                } else if let Some(b) = s.strip_prefix("band_power.") {
                    band(b).map(Metric::BandPower)
                } else {
                    Err(ParseError::UnknownMetric(s.to_string()))
                }
            }
        }
    }
}

/// How a rule compares its metric with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    /// `value op threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    /// The rule watches for high values (`>`, `>=`) rather than low ones.
    pub fn is_upward(self) -> bool {
        matches!(self, Op::Gt | Op::Ge)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Op {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Op, ParseError> {
        match s {
            ">" => Ok(Op::Gt),
            ">=" => Ok(Op::Ge),
            "<" => Ok(Op::Lt),
            "<=" => Ok(Op::Le),
            _ => Err(ParseError::UnknownOp(s.to_string())),
        }
    }
}

/// One trigger rule, as a `[[triggers]]` table of the config describes it.
///
/// Build one with [`Rule::new`] and struct update syntax:
/// ```
/// use eeg_session::{Metric, Op, Rule};
/// let r = Rule {
///     for_windows: 5,
///     clear_threshold: 0.75,
///     ..Rule::new("poor_signal", Metric::GoodFraction, Op::Lt, 0.5)
/// };
/// assert!(r.fires_on(0.25) && !r.clears_on(0.5) && r.clears_on(0.75));
/// ```
/// The rules a [`TriggerEngine`] runs are checked when it is made; [`TriggerConfig::validate`]
/// also checks their bands.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique within the rule set; non-empty, at most [`MAX_ID_BYTES`], no control characters.
    pub id: String,
    pub metric: Metric,
    pub op: Op,
    /// The rule's condition is `metric op threshold`; finite.
    pub threshold: f64,
    /// Windows in a row meeting the condition before the rule fires; at least 1.
    pub for_windows: u32,
    /// Once fired, the rule clears when `metric op clear_threshold` no longer holds. Finite,
    /// and not beyond `threshold` in the rule's direction (`<= threshold` for `>` and `>=`,
    /// `>= threshold` for `<` and `<=`), so that a value that fires does not also clear.
    pub clear_threshold: f64,
    /// Windows in a row meeting the clear condition before the rule clears; at least 1.
    pub clear_for_windows: u32,
    /// After clearing, the rule cannot fire on a window that ends earlier than this many
    /// seconds after the clearing window's end; finite, >= 0.
    pub cooldown_s: f64,
}

impl Rule {
    /// A rule that fires on the first window meeting `metric op threshold` and clears on the
    /// first one that does not, with no cooldown: the defaults of the optional keys.
    pub fn new(id: impl Into<String>, metric: Metric, op: Op, threshold: f64) -> Rule {
        Rule {
            id: id.into(),
            metric,
            op,
            threshold,
            for_windows: 1,
            clear_threshold: threshold,
            clear_for_windows: 1,
            cooldown_s: 0.0,
        }
    }

    /// `value` meets the firing condition.
    pub fn fires_on(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }

    /// `value` meets the clearing condition: it is back past `clear_threshold`.
    pub fn clears_on(&self, value: f64) -> bool {
        !self.op.holds(value, self.clear_threshold)
    }

    /// The first broken rule of the fields, as (key, problem). Bands are checked by the
    /// caller, which knows them.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.id.is_empty() {
            return Err(("id", "must not be empty".into()));
        }
        if self.id.len() > MAX_ID_BYTES {
            return Err(("id", format!("must be at most {MAX_ID_BYTES} bytes")));
        }
        if self.id.chars().any(char::is_control) {
            return Err(("id", "must not contain control characters".into()));
        }
        if !self.threshold.is_finite() {
            return Err((
                "threshold",
                format!("must be a finite number, got {}", self.threshold),
            ));
        }
        if self.for_windows == 0 {
            return Err(("for_windows", "must be at least 1, got 0".into()));
        }
        let c = self.clear_threshold;
        if !c.is_finite() {
            return Err((
                "clear_threshold",
                format!("must be a finite number, got {c}"),
            ));
        }
        let (t, op) = (self.threshold, self.op);
        if op.is_upward() && c > t {
            return Err((
                "clear_threshold",
                format!("must be <= threshold ({t}) for op \"{op}\", got {c}"),
            ));
        }
        if !op.is_upward() && c < t {
            return Err((
                "clear_threshold",
                format!("must be >= threshold ({t}) for op \"{op}\", got {c}"),
            ));
        }
        if self.clear_for_windows == 0 {
            return Err(("clear_for_windows", "must be at least 1, got 0".into()));
        }
        if !(self.cooldown_s.is_finite() && self.cooldown_s >= 0.0) {
            return Err((
                "cooldown_s",
                format!("must be a finite number >= 0, got {}", self.cooldown_s),
            ));
        }
        Ok(())
    }

    fn cooldown_ms(&self) -> i64 {
        // Saturating: a cooldown of centuries is as good as forever.
        (self.cooldown_s * 1000.0).round() as i64
    }
}

/// The documented default rule set (docs/triggers.md explains the thresholds), used when the
/// config has no `triggers`:
///
/// | id | condition | for | clears at | clear for | cooldown |
/// |---|---|---|---|---|---|
/// | `poor_signal` | `quality.good_fraction < 0.5` | 5 | `>= 0.75` | 1 | 0 s |
/// | `high_engagement` | `indices.engagement > 0.7` | 10 | `<= 0.6` | 5 | 30 s |
/// | `low_engagement` | `indices.engagement < 0.3` | 10 | `>= 0.35` | 5 | 30 s |
pub fn default_rules() -> Vec<Rule> {
    vec![
        Rule {
            for_windows: 5,
            clear_threshold: 0.75,
            ..Rule::new("poor_signal", Metric::GoodFraction, Op::Lt, 0.5)
        },
        Rule {
            for_windows: 10,
            clear_threshold: 0.6,
            clear_for_windows: 5,
            cooldown_s: 30.0,
            ..Rule::new("high_engagement", Metric::Engagement, Op::Gt, 0.7)
        },
        Rule {
            for_windows: 10,
            clear_threshold: 0.35,
            clear_for_windows: 5,
            cooldown_s: 30.0,
            ..Rule::new("low_engagement", Metric::Engagement, Op::Lt, 0.3)
        },
    ]
}

/// A rule set that is not valid: one line naming the rule (its index among the `[[triggers]]`
/// tables, from 0, and its id) and the key, e.g.
/// `triggers[1] (id "focus"): clear_threshold: must be <= threshold (0.7) for op ">", got 0.8`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("triggers[{index}] ({}): {key}: {problem}", id_label(.id.as_deref()))]
#[non_exhaustive]
pub struct TriggerConfigError {
    /// Position of the rule in the rule set, from 0.
    pub index: usize,
    /// The rule's id, when it has one that is a string.
    pub id: Option<String>,
    pub key: String,
    pub problem: String,
}

impl TriggerConfigError {
    fn new(index: usize, id: Option<&str>, key: &str, problem: impl Into<String>) -> Self {
        TriggerConfigError {
            index,
            id: id.map(str::to_string),
            key: one_line(key),
            problem: one_line(&problem.into()),
        }
    }
}

fn id_label(id: Option<&str>) -> String {
    match id {
        Some(id) => format!("id {}", quoted(id)),
        None => "no id".to_string(),
    }
}

/// The trigger rules of a config file: its `[[triggers]]` tables.
///
/// Deserialising reads the `triggers` key of a document and ignores every other key, so the
/// whole config file can be handed over. Without `triggers` the result is the
/// [`default_rules`]; `triggers = []` means no rules. Deserialising checks everything except
/// that the bands of `relative_power.<band>` and `band_power.<band>` exist, which
/// [`TriggerConfig::validate`] checks against the processing config's bands.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConfig {
    pub rules: Vec<Rule>,
}

impl TriggerConfig {
    /// One line for each rule that can never fire with these processing bands, because its
    /// metric needs a band they do not have (e.g. the default engagement rules with custom
    /// bands and no theta).
    pub fn never_firing(&self, band_names: &[&str]) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(|r| {
                let missing: Vec<&str> = r
                    .metric
                    .bands_needed()
                    .into_iter()
                    .filter(|b| !band_names.contains(b))
                    .collect();
                (!missing.is_empty()).then(|| {
                    format!(
                        "trigger rule '{}' ({}) can never fire: no band {} among the configured bands ({}); define [[triggers]] for these bands, or triggers = [] for none",
                        r.id,
                        r.metric,
                        missing.join(", "),
                        band_names.join(", ")
                    )
                })
            })
            .collect()
    }
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            rules: default_rules(),
        }
    }
}

/// One `[[triggers]]` table. Every key is read as a plain TOML value so that a value of the
/// wrong type is reported against its key rather than by position in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleTable {
    id: Option<toml::Value>,
    metric: Option<toml::Value>,
    op: Option<toml::Value>,
    threshold: Option<toml::Value>,
    for_windows: Option<toml::Value>,
    clear_threshold: Option<toml::Value>,
    clear_for_windows: Option<toml::Value>,
    cooldown_s: Option<toml::Value>,
}

const RULE_KEYS: [&str; 8] = [
    "id",
    "metric",
    "op",
    "threshold",
    "for_windows",
    "clear_threshold",
    "clear_for_windows",
    "cooldown_s",
];

impl TriggerConfig {
    /// Reads and checks `[[triggers]]` tables. `band_names` are the processing config's bands;
    /// a `relative_power.<band>` or `band_power.<band>` metric must name one of them.
    pub fn from_tables(
        tables: &[toml::Table],
        band_names: &[&str],
    ) -> Result<TriggerConfig, TriggerConfigError> {
        let config = TriggerConfig::from_tables_unchecked_bands(tables)?;
        config.validate(band_names)?;
        Ok(config)
    }

    fn from_tables_unchecked_bands(
        tables: &[toml::Table],
    ) -> Result<TriggerConfig, TriggerConfigError> {
        let rules = tables
            .iter()
            .enumerate()
            .map(|(i, t)| rule_from_table(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        check_rules(&rules, None)?;
        Ok(TriggerConfig { rules })
    }

    /// Checks every rule, that ids are unique, and that every band a metric names is one of
    /// `band_names`.
    pub fn validate(&self, band_names: &[&str]) -> Result<(), TriggerConfigError> {
        check_rules(&self.rules, Some(band_names))
    }
}

impl<'de> Deserialize<'de> for TriggerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TriggerConfig, D::Error> {
        #[derive(Deserialize)]
        struct Document {
            triggers: Option<Vec<toml::Table>>,
        }
        match Document::deserialize(d)?.triggers {
            None => Ok(TriggerConfig::default()),
            Some(tables) => {
                TriggerConfig::from_tables_unchecked_bands(&tables).map_err(de::Error::custom)
            }
        }
    }
}

fn check_rules(rules: &[Rule], band_names: Option<&[&str]>) -> Result<(), TriggerConfigError> {
    for (i, r) in rules.iter().enumerate() {
        let err =
            |key: &str, problem: String| TriggerConfigError::new(i, Some(&r.id), key, problem);
        r.check().map_err(|(key, problem)| err(key, problem))?;
        if let Some(first) = rules[..i].iter().position(|o| o.id == r.id) {
            return Err(err("id", format!("duplicate of triggers[{first}]")));
        }
        if let (Some(names), Some(band)) = (band_names, r.metric.band())
            && !names.contains(&band)
        {
            return Err(err(
                "metric",
                format!(
                    "band {} is not one of the configured bands ({})",
                    quoted(band),
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn rule_from_table(index: usize, table: &toml::Table) -> Result<Rule, TriggerConfigError> {
    let id = table.get("id").and_then(toml::Value::as_str);
    let err = |key: &str, problem: String| TriggerConfigError::new(index, id, key, problem);
    let t: RuleTable = toml::Value::Table(table.clone()).try_into().map_err(|e| {
        let key = table
            .keys()
            .find(|k| !RULE_KEYS.contains(&k.as_str()))
            .map_or("triggers", String::as_str);
        err(key, toml_message(&e))
    })?;
    let required = |key: &'static str, v: Option<toml::Value>| {
        v.ok_or_else(|| {
            err(
                key,
                "missing; every rule needs id, metric, op and threshold".into(),
            )
        })
    };
    let string = |key: &'static str, v: toml::Value| match v {
        toml::Value::String(s) => Ok(s),
        other => Err(err(key, format!("must be a string, got {}", shown(&other)))),
    };
    let number = |key: &'static str, v: toml::Value| match v {
        toml::Value::Float(f) => Ok(f),
        toml::Value::Integer(i) => Ok(i as f64),
        other => Err(err(key, format!("must be a number, got {}", shown(&other)))),
    };
    let count = |key: &'static str, v: toml::Value| {
        v.as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                err(
                    key,
                    format!(
                        "must be an integer from 1 to {}, got {}",
                        u32::MAX,
                        shown(&v)
                    ),
                )
            })
    };

    let rule_id = string("id", required("id", t.id)?)?;
    let metric = string("metric", required("metric", t.metric)?)?
        .parse::<Metric>()
        .map_err(|p| err("metric", p.to_string()))?;
    let op = string("op", required("op", t.op)?)?
        .parse::<Op>()
        .map_err(|p| err("op", p.to_string()))?;
    let threshold = number("threshold", required("threshold", t.threshold)?)?;
    let mut rule = Rule::new(rule_id, metric, op, threshold);
    if let Some(v) = t.for_windows {
        rule.for_windows = count("for_windows", v)?;
    }
    if let Some(v) = t.clear_threshold {
        rule.clear_threshold = number("clear_threshold", v)?;
    }
    if let Some(v) = t.clear_for_windows {
        rule.clear_for_windows = count("clear_for_windows", v)?;
    }
    if let Some(v) = t.cooldown_s {
        rule.cooldown_s = number("cooldown_s", v)?;
    }
    Ok(rule)
}

/// A TOML value as it would be written, cut to fit in a one-line message.
fn shown(v: &toml::Value) -> String {
    crate::text::shown(&v.to_string())
}

fn toml_message(e: &toml::de::Error) -> String {
    one_line(e.message().trim())
}

/// The engine state of one session: for each rule, whether it has fired, the length of the
/// run in progress and the end of its cooldown; and the index of the next window.
///
/// Serialise it (e.g. as JSON) into the session's state snapshot and deserialise it on
/// restore: evaluation then continues exactly as if it had never stopped. A state made for
/// another rule set (a snapshot from before a config change) is matched to the rules by id
/// on the next [`TriggerEngine::evaluate`]: rules with a known id keep their state, new
/// rules start unfired, the state of removed rules is dropped. Unknown fields are ignored on
/// deserialising, so a snapshot written by a newer version can still be read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TriggerState {
    /// Windows with a lower index were evaluated already.
    #[serde(default)]
    next_window: u64,
    #[serde(default)]
    rules: Vec<RuleState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RuleState {
    id: String,
    /// Fired and not yet cleared.
    #[serde(default)]
    fired: bool,
    /// Windows in a row meeting the condition being waited for: firing, or clearing once
    /// fired.
    #[serde(default)]
    run: u32,
    /// No firing on a window ending before this (cooldown after a clear).
    #[serde(default)]
    hold_until_ms: Option<i64>,
}

impl RuleState {
    fn new(id: &str) -> RuleState {
        RuleState {
            id: id.to_string(),
            fired: false,
            run: 0,
            hold_until_ms: None,
        }
    }
}

impl TriggerState {
    /// The session's signal state restarted (a `seq` gap, a change of sample rate or
    /// channels): runs in progress are dropped, since the windows on either side of the gap
    /// are not consecutive; fired rules stay fired and cooldowns stay, so a condition that
    /// lasts across the gap is not announced again.
    pub fn reset(&mut self) {
        for r in &mut self.rules {
            r.run = 0;
        }
    }

    /// Rule `rule_id` has fired and not cleared since.
    pub fn is_fired(&self, rule_id: &str) -> bool {
        self.rules.iter().any(|r| r.id == rule_id && r.fired)
    }

    /// Index of the next window that will be evaluated; earlier ones are ignored.
    pub fn next_window_index(&self) -> u64 {
        self.next_window
    }
}

/// Runs a rule set over the windows of any number of sessions; each session keeps its own
/// [`TriggerState`]. The engine itself is immutable and can be shared between threads.
#[derive(Debug, Clone)]
pub struct TriggerEngine {
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    rule: Rule,
    /// `rule.metric` as written in events.
    metric: String,
    cooldown_ms: i64,
}

impl TriggerEngine {
    /// An engine for `rules`, checked as [`TriggerConfig::validate`] does except for bands: a
    /// band the windows do not have leaves the metric undefined.
    pub fn new(rules: Vec<Rule>) -> Result<TriggerEngine, TriggerConfigError> {
        check_rules(&rules, None)?;
        Ok(TriggerEngine {
            rules: rules
                .into_iter()
                .map(|rule| CompiledRule {
                    metric: rule.metric.to_string(),
                    cooldown_ms: rule.cooldown_ms(),
                    rule,
                })
                .collect(),
        })
    }

    pub fn rules(&self) -> impl ExactSizeIterator<Item = &Rule> + '_ {
        self.rules.iter().map(|r| &r.rule)
    }

    /// The state of a session that has seen no window yet. `TriggerState::default()` works as
    /// well; this one is already sized for the rules.
    pub fn new_state(&self) -> TriggerState {
        TriggerState {
            next_window: 0,
            rules: self
                .rules
                .iter()
                .map(|r| RuleState::new(&r.rule.id))
                .collect(),
        }
    }

    /// Evaluates every rule on one window of a session and hands each event to `out`, in
    /// rule order. A window whose index is below [`TriggerState::next_window_index`] is
    /// ignored; a `settling` window only advances that index.
    ///
    /// Allocates only when `state` was made for another rule set (see [`TriggerState`]).
    pub fn evaluate<'a>(
        &'a self,
        state: &mut TriggerState,
        session_id: &'a str,
        device_id: &'a str,
        window: &Window<'_>,
        out: &mut impl FnMut(TriggerEvent<'a>),
    ) {
        if window.index < state.next_window {
            return;
        }
        state.next_window = window.index.saturating_add(1);
        self.align(state);
        if window.settling {
            return;
        }
        let good = (0..window.n_channels())
            .filter(|&c| window.quality(c).good)
            .count();
        for (r, s) in self.rules.iter().zip(&mut state.rules) {
            let rule = &r.rule;
            let Some(value) = rule.metric.value(window, good) else {
                continue;
            };
            let event = |state, threshold| TriggerEvent {
                rule_id: &rule.id,
                session_id,
                device_id,
                state,
                metric: &r.metric,
                value,
                threshold,
                window_index: window.index,
                start_ms: window.start_ms,
                end_ms: window.end_ms,
            };
            if !s.fired {
                if !rule.fires_on(value) {
                    s.run = 0;
                    continue;
                }
                // The run keeps growing during a cooldown, so a condition that held through
                // it fires on the first window after it.
                s.run = s.run.saturating_add(1);
                let held = s.hold_until_ms.is_some_and(|h| window.end_ms < h);
                if s.run >= rule.for_windows && !held {
                    s.fired = true;
                    s.run = 0;
                    s.hold_until_ms = None;
                    out(event(EventState::Fired, rule.threshold));
                }
            } else {
                if !rule.clears_on(value) {
                    s.run = 0;
                    continue;
                }
                s.run = s.run.saturating_add(1);
                if s.run >= rule.clear_for_windows {
                    s.fired = false;
                    s.run = 0;
                    s.hold_until_ms =
                        (r.cooldown_ms > 0).then(|| window.end_ms.saturating_add(r.cooldown_ms));
                    out(event(EventState::Cleared, rule.clear_threshold));
                }
            }
        }
    }

    /// Makes `state.rules` correspond to `self.rules` one to one.
    fn align(&self, state: &mut TriggerState) {
        let aligned = state.rules.len() == self.rules.len()
            && state
                .rules
                .iter()
                .zip(&self.rules)
                .all(|(s, r)| s.id == r.rule.id);
        if aligned {
            return;
        }
        let mut old = std::mem::take(&mut state.rules);
        state.rules = self
            .rules
            .iter()
            .map(|r| match old.iter().position(|s| s.id == r.rule.id) {
                Some(i) => old.swap_remove(i),
                None => RuleState::new(&r.rule.id),
            })
            .collect();
    }
}
