//! The trigger engine against its contract (docs/triggers.md).

use eeg_dsp::{Band, Indices, ProcessingConfig, Quality, SessionProcessor, Window};
use eeg_schema::{EventState, TRIGGER_SCHEMA, TriggerEvent, TriggerRecord, decode_trigger};
use eeg_session::{Metric, Op, Rule, TriggerConfig, TriggerEngine, TriggerState, default_rules};
use proptest::prelude::*;

const HOP_MS: i64 = 1000;
const LEN_MS: i64 = 4000;
const T0: i64 = 1_732_270_000_000;

/// The values of one window: 4 channels over the default bands.
#[derive(Debug, Clone)]
struct Frame {
    engagement: Option<f64>,
    /// How many of the 4 channels are good (the first ones).
    good: usize,
    settling: bool,
    /// Relative alpha power of each channel; band powers are 10 × these.
    alpha: [f64; 4],
}

impl Frame {
    fn engagement(v: Option<f64>) -> Frame {
        Frame {
            engagement: v,
            good: 4,
            settling: false,
            alpha: [0.25; 4],
        }
    }
}

/// Owns the slices a window borrows.
struct Parts {
    bands: Vec<Band>,
    band_power: Vec<f64>,
    relative_power: Vec<f64>,
    total_power: Vec<f64>,
    quality: Vec<Quality>,
}

impl Parts {
    fn new(f: &Frame) -> Parts {
        let bands = ProcessingConfig::default().bands;
        let alpha = bands.iter().position(|b| b.name == "alpha").unwrap();
        let nb = bands.len();
        let mut relative_power = vec![0.1; 4 * nb];
        for c in 0..4 {
            relative_power[c * nb + alpha] = f.alpha[c];
        }
        let band_power = relative_power.iter().map(|r| r * 10.0).collect();
        let quality = (0..4)
            .map(|c| Quality {
                good: c < f.good,
                ..Quality::default()
            })
            .collect();
        Parts {
            bands,
            band_power,
            relative_power,
            total_power: vec![10.0; 4],
            quality,
        }
    }

    fn window(&self, index: u64, f: &Frame) -> Window<'_> {
        let mut w = Window::from_parts(
            &self.bands,
            &self.band_power,
            &self.relative_power,
            &self.total_power,
            &self.quality,
        );
        w.index = index;
        w.start_ms = T0 + index as i64 * HOP_MS;
        w.end_ms = w.start_ms + LEN_MS;
        w.settling = f.settling;
        w.indices = Indices {
            engagement: f.engagement,
            ..w.indices
        };
        w
    }
}

/// Feeds `frames` as windows `first..` and returns the events.
fn feed(
    engine: &TriggerEngine,
    state: &mut TriggerState,
    first: u64,
    frames: &[Frame],
) -> Vec<TriggerRecord> {
    let mut events = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let parts = Parts::new(f);
        let w = parts.window(first + i as u64, f);
        engine.evaluate(state, "s-42", "bud-7", &w, &mut |e: TriggerEvent<'_>| {
            events.push(e.to_record())
        });
    }
    events
}

fn run_rule(rule: Rule, values: &[Option<f64>]) -> Vec<TriggerRecord> {
    let engine = TriggerEngine::new(vec![rule]).unwrap();
    let frames: Vec<_> = values.iter().map(|&v| Frame::engagement(v)).collect();
    feed(&engine, &mut engine.new_state(), 0, &frames)
}

/// (window index, state) of each event.
fn summary(events: &[TriggerRecord]) -> Vec<(u64, EventState)> {
    events.iter().map(|e| (e.window_index, e.state)).collect()
}

fn engagement_rule(op: Op, threshold: f64) -> Rule {
    Rule::new("r", Metric::Engagement, op, threshold)
}

use EventState::{Cleared, Fired};

#[test]
fn each_comparison_fires_and_clears_on_the_right_side() {
    let at = |op, v: f64| summary(&run_rule(engagement_rule(op, 0.5), &[Some(v), Some(v)]));
    // The threshold itself fires the inclusive ops only.
    assert_eq!(at(Op::Gt, 0.5), []);
    assert_eq!(at(Op::Ge, 0.5), [(0, Fired)]);
    assert_eq!(at(Op::Lt, 0.5), []);
    assert_eq!(at(Op::Le, 0.5), [(0, Fired)]);
    assert_eq!(at(Op::Gt, 0.6), [(0, Fired)]);
    assert_eq!(at(Op::Ge, 0.6), [(0, Fired)]);
    assert_eq!(at(Op::Gt, 0.4), []);
    assert_eq!(at(Op::Lt, 0.4), [(0, Fired)]);
    assert_eq!(at(Op::Le, 0.4), [(0, Fired)]);
    assert_eq!(at(Op::Lt, 0.6), []);

    // Clearing: the condition no longer holds against clear_threshold (here = threshold).
    let clears = |op, fire: f64, v: f64| {
        let e = run_rule(engagement_rule(op, 0.5), &[Some(fire), Some(v)]);
        summary(&e) == [(0, Fired), (1, Cleared)]
    };
    assert!(clears(Op::Gt, 0.6, 0.5));
    assert!(!clears(Op::Ge, 0.6, 0.5));
    assert!(clears(Op::Ge, 0.6, 0.49));
    assert!(clears(Op::Lt, 0.4, 0.5));
    assert!(!clears(Op::Le, 0.4, 0.5));
    assert!(clears(Op::Le, 0.4, 0.51));
}

#[test]
fn events_carry_the_window_value_and_threshold() {
    let rule = Rule {
        clear_threshold: 0.6,
        ..engagement_rule(Op::Gt, 0.7)
    };
    let e = run_rule(rule, &[Some(0.1), Some(0.8), Some(0.55)]);
    assert_eq!(e.len(), 2);
    let want = |state, value, threshold, index: u64| TriggerRecord {
        rule_id: "r".into(),
        session_id: "s-42".into(),
        device_id: "bud-7".into(),
        state,
        metric: "indices.engagement".into(),
        value,
        threshold,
        window_index: index,
        start_ms: T0 + index as i64 * HOP_MS,
        end_ms: T0 + index as i64 * HOP_MS + LEN_MS,
    };
    assert_eq!(e[0], want(Fired, 0.8, 0.7, 1));
    assert_eq!(e[1], want(Cleared, 0.55, 0.6, 2));
}

#[test]
fn for_windows_needs_that_many_in_a_row() {
    let rule = Rule {
        for_windows: 3,
        ..engagement_rule(Op::Gt, 0.5)
    };
    let (hi, lo) = (Some(0.9), Some(0.1));
    let e = run_rule(rule.clone(), &[hi, hi, lo, hi, hi, hi, hi, hi]);
    // The break at 2 restarts the run; once fired, more windows above do not fire again.
    assert_eq!(summary(&e), [(5, Fired)]);
    let e = run_rule(rule, &[hi, hi]);
    assert_eq!(summary(&e), []);
}

#[test]
fn hysteresis_holds_until_the_clear_threshold_is_crossed() {
    let rule = Rule {
        clear_threshold: 0.6,
        ..engagement_rule(Op::Gt, 0.7)
    };
    let v = [0.8, 0.65, 0.69, 0.75, 0.6, 0.65, 0.71];
    let e = run_rule(rule, &v.map(Some));
    // 0.65 and 0.69 are below the threshold but not past the clear threshold; 0.6 clears
    // (`> 0.6` no longer holds); 0.65 does not fire again, 0.71 does.
    assert_eq!(summary(&e), [(0, Fired), (4, Cleared), (6, Fired)]);

    let rule = Rule {
        clear_threshold: 0.35,
        ..engagement_rule(Op::Lt, 0.3)
    };
    let v = [0.2, 0.34, 0.35, 0.32, 0.29];
    let e = run_rule(rule, &v.map(Some));
    assert_eq!(summary(&e), [(0, Fired), (2, Cleared), (4, Fired)]);
}

#[test]
fn clear_for_windows_needs_that_many_in_a_row() {
    let rule = Rule {
        clear_for_windows: 2,
        ..engagement_rule(Op::Gt, 0.5)
    };
    let v = [0.8, 0.4, 0.8, 0.4, 0.4, 0.4];
    let e = run_rule(rule, &v.map(Some));
    assert_eq!(summary(&e), [(0, Fired), (4, Cleared)]);
}

#[test]
fn cooldown_counts_from_the_clearing_window_end() {
    let rule = Rule {
        cooldown_s: 5.0,
        for_windows: 2,
        ..engagement_rule(Op::Gt, 0.5)
    };
    // Fired at 1, cleared at 2 (ends at T0 + 6 s): no firing on a window ending before
    // T0 + 11 s, i.e. before window 7. The run grows through the cooldown, so window 7 fires.
    let mut v = vec![0.8, 0.8, 0.1];
    v.extend([0.8; 6]);
    let e = run_rule(
        rule.clone(),
        &v.iter().map(|&x| Some(x)).collect::<Vec<_>>(),
    );
    assert_eq!(summary(&e), [(1, Fired), (2, Cleared), (7, Fired)]);
    assert_eq!(e[1].end_ms + 5000, e[2].end_ms);

    // A break in the condition during the cooldown restarts the run as usual.
    let v = [0.8, 0.8, 0.1, 0.8, 0.8, 0.8, 0.1, 0.8, 0.8, 0.8];
    let e = run_rule(rule.clone(), &v.map(Some));
    assert_eq!(summary(&e), [(1, Fired), (2, Cleared), (8, Fired)]);

    // Without a cooldown the rule can fire again at once.
    let rule = Rule {
        cooldown_s: 0.0,
        ..rule
    };
    let e = run_rule(rule, &[0.8, 0.8, 0.1, 0.8, 0.8].map(Some));
    assert_eq!(summary(&e), [(1, Fired), (2, Cleared), (4, Fired)]);
}

#[test]
fn undefined_values_neither_advance_nor_break_a_run() {
    let rule = Rule {
        for_windows: 3,
        clear_for_windows: 2,
        ..engagement_rule(Op::Gt, 0.5)
    };
    let (hi, lo) = (Some(0.9), Some(0.1));
    let (none, nan, inf) = (None, Some(f64::NAN), Some(f64::INFINITY));
    let e = run_rule(
        rule.clone(),
        &[hi, none, hi, nan, inf, hi, lo, none, nan, lo],
    );
    assert_eq!(summary(&e), [(5, Fired), (9, Cleared)]);
    // Nothing but undefined values: nothing happens.
    let e = run_rule(rule, &[none, nan, none, nan, none]);
    assert_eq!(e, []);
}

#[test]
fn settling_windows_are_skipped() {
    let engine = TriggerEngine::new(vec![Rule {
        for_windows: 2,
        ..engagement_rule(Op::Gt, 0.5)
    }])
    .unwrap();
    let settling = Frame {
        settling: true,
        ..Frame::engagement(Some(0.9))
    };
    let low = Frame::engagement(Some(0.1));
    let high = Frame::engagement(Some(0.9));
    let frames = [
        high.clone(),
        settling.clone(),
        settling,
        low,
        high.clone(),
        high,
    ];
    let e = feed(&engine, &mut engine.new_state(), 0, &frames[..3]);
    // Two values above with settling windows in between do not fire.
    assert_eq!(e, []);
    let e = feed(&engine, &mut engine.new_state(), 0, &frames);
    assert_eq!(summary(&e), [(5, Fired)]);
}

#[test]
fn band_and_quality_metrics_use_the_good_channels() {
    let rules = vec![
        Rule::new(
            "alpha_rel",
            Metric::RelativePower("alpha".into()),
            Op::Gt,
            0.3,
        ),
        Rule::new("alpha_abs", Metric::BandPower("alpha".into()), Op::Gt, 3.0),
        Rule::new("good", Metric::GoodFraction, Op::Lt, 0.5),
        Rule::new("nope", Metric::RelativePower("mu".into()), Op::Gt, -1.0),
    ];
    let engine = TriggerEngine::new(rules).unwrap();
    // Channels 0 and 1 are good with alpha 0.3 and 0.4 (mean 0.35); the bad channels' 0.0
    // must not count.
    let f = Frame {
        engagement: None,
        good: 2,
        settling: false,
        alpha: [0.3, 0.4, 0.0, 0.0],
    };
    let e = feed(&engine, &mut engine.new_state(), 0, &[f]);
    let fired: Vec<_> = e.iter().map(|e| (e.rule_id.as_str(), e.value)).collect();
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(fired[0].0, "alpha_rel");
    assert!((fired[0].1 - 0.35).abs() < 1e-12);
    assert_eq!(fired[1].0, "alpha_abs");
    assert!((fired[1].1 - 3.5).abs() < 1e-12);
    assert_eq!(e[0].metric, "relative_power.alpha");
    assert_eq!(e[1].metric, "band_power.alpha");

    // One good channel of four fires `good`; with none, the band means are undefined but the
    // fraction is 0.
    let f1 = Frame {
        good: 1,
        ..Frame::engagement(None)
    };
    let f0 = Frame {
        good: 0,
        alpha: [0.9; 4],
        ..Frame::engagement(None)
    };
    let engine = TriggerEngine::new(vec![
        Rule::new("good", Metric::GoodFraction, Op::Lt, 0.5),
        Rule::new(
            "alpha_rel",
            Metric::RelativePower("alpha".into()),
            Op::Gt,
            0.3,
        ),
    ])
    .unwrap();
    let e = feed(&engine, &mut engine.new_state(), 0, &[f1]);
    assert_eq!((e[0].rule_id.as_str(), e[0].value), ("good", 0.25));
    let e = feed(&engine, &mut engine.new_state(), 0, &[f0]);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].rule_id.as_str(), e[0].value), ("good", 0.0));
}

#[test]
fn reset_drops_runs_but_keeps_fired_rules() {
    let engine = TriggerEngine::new(vec![
        Rule {
            for_windows: 3,
            ..Rule::new("a", Metric::Engagement, Op::Gt, 0.5)
        },
        Rule {
            clear_for_windows: 3,
            ..Rule::new("b", Metric::Engagement, Op::Lt, 0.2)
        },
    ])
    .unwrap();
    let v = |x| Frame::engagement(Some(x));
    let mut state = engine.new_state();
    // b fires; then a's firing run and b's clearing run both reach 2.
    let e = feed(&engine, &mut state, 0, &[v(0.1), v(0.9), v(0.9)]);
    assert_eq!(summary(&e), [(0, Fired)]);
    state.reset();
    assert!(state.is_fired("b") && !state.is_fired("a"));
    // Without the reset both would complete at window 3; after it both need 3 fresh windows.
    let e = feed(&engine, &mut state, 3, &[v(0.9), v(0.9)]);
    assert_eq!(e, []);
    let e = feed(&engine, &mut state, 5, &[v(0.9)]);
    assert_eq!(summary(&e), [(5, Fired), (5, Cleared)]);
    assert_eq!((e[0].rule_id.as_str(), e[1].rule_id.as_str()), ("a", "b"));
}

#[test]
fn a_window_seen_before_is_ignored() {
    let engine = TriggerEngine::new(vec![Rule {
        for_windows: 2,
        ..engagement_rule(Op::Gt, 0.5)
    }])
    .unwrap();
    let mut state = engine.new_state();
    let hi = Frame::engagement(Some(0.9));
    assert_eq!(feed(&engine, &mut state, 0, std::slice::from_ref(&hi)), []);
    // Window 0 again must not complete the run of 2.
    assert_eq!(feed(&engine, &mut state, 0, std::slice::from_ref(&hi)), []);
    assert_eq!(state.next_window_index(), 1);
    let e = feed(&engine, &mut state, 1, &[hi]);
    assert_eq!(summary(&e), [(1, Fired)]);
}

#[test]
fn a_state_of_another_rule_set_is_matched_by_id() {
    let a = Rule::new("a", Metric::Engagement, Op::Gt, 0.5);
    let b = Rule::new("b", Metric::Engagement, Op::Gt, 0.8);
    let old = TriggerEngine::new(vec![a.clone(), b.clone()]).unwrap();
    let mut state = TriggerState::default();
    let e = feed(&old, &mut state, 0, &[Frame::engagement(Some(0.9))]);
    assert_eq!(e.len(), 2);
    // The new rule set drops b and adds c: a stays fired, c starts unfired.
    let c = Rule::new("c", Metric::Engagement, Op::Gt, 0.6);
    let new = TriggerEngine::new(vec![c, a]).unwrap();
    let e = feed(&new, &mut state, 1, &[Frame::engagement(Some(0.9))]);
    assert_eq!(
        e.iter().map(|e| e.rule_id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    assert!(state.is_fired("a") && !state.is_fired("b"));
}

#[test]
fn a_flat_recording_fires_poor_signal_after_the_settling_windows() {
    // Zeros everywhere: every channel is flat, so no channel is good.
    let config = ProcessingConfig::default();
    let fs = 250.0;
    let mut p = SessionProcessor::new(&config, fs, 4, T0).unwrap();
    let engine = TriggerEngine::new(default_rules()).unwrap();
    let mut state = engine.new_state();
    let mut events = Vec::new();
    let mut settling = 0;
    let block = vec![0.0; 4 * 250];
    for _ in 0..20 {
        p.push_channel_major(&block, 250, &mut |w: &Window<'_>| {
            settling += u64::from(w.settling);
            assert_eq!(w.indices.engagement, None);
            engine.evaluate(&mut state, "s-1", "dev", w, &mut |e| {
                events.push(e.to_record())
            });
        })
        .unwrap();
    }
    assert!(settling > 0);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!((e.rule_id.as_str(), e.state), ("poor_signal", Fired));
    assert_eq!((e.value, e.threshold), (0.0, 0.5));
    // Five windows after the settling ones.
    assert_eq!(e.window_index, settling + 4);
}

// ---- config ----

fn parse(doc: &str) -> Result<TriggerConfig, String> {
    let c: TriggerConfig = toml::from_str(doc).map_err(|e| e.message().to_string())?;
    c.validate(&["delta", "theta", "alpha", "beta", "gamma"])
        .map_err(|e| e.to_string())?;
    Ok(c)
}

#[test]
fn config_reads_triggers_beside_other_tables_with_defaults() {
    let c = parse(
        r#"
[filter]
mains_hz = 60

[[triggers]]
id = "focus"
metric = "indices.engagement"
op = ">="
threshold = 1

[bands]
alpha = [8, 13]

[[triggers]]
id = "alpha_up"
metric = "relative_power.alpha"
op = "<="
threshold = 0.2
for_windows = 4
clear_threshold = 0.25
clear_for_windows = 2
cooldown_s = 7.5
"#,
    )
    .unwrap();
    assert_eq!(
        c.rules,
        [
            Rule::new("focus", Metric::Engagement, Op::Ge, 1.0),
            Rule {
                for_windows: 4,
                clear_threshold: 0.25,
                clear_for_windows: 2,
                cooldown_s: 7.5,
                ..Rule::new(
                    "alpha_up",
                    Metric::RelativePower("alpha".into()),
                    Op::Le,
                    0.2
                )
            },
        ]
    );
    // No `triggers`: the defaults; an empty list: no rules.
    assert_eq!(
        parse("[filter]\nmains_hz = 50\n").unwrap().rules,
        default_rules()
    );
    assert_eq!(parse("triggers = []\n").unwrap().rules, []);
}

#[test]
fn every_metric_name_round_trips() {
    for name in [
        "indices.engagement",
        "indices.theta_beta",
        "indices.alpha_theta",
        "relative_power.beta",
        "band_power.low.alpha",
        "quality.good_fraction",
    ] {
        let m: Metric = name.parse().unwrap();
        assert_eq!(m.to_string(), name);
    }
    for op in [">", ">=", "<", "<="] {
        assert_eq!(op.parse::<Op>().unwrap().to_string(), op);
    }
}

fn rule_error(body: &str) -> String {
    let doc = format!(
        "[[triggers]]\nid = \"ok\"\nmetric = \"indices.engagement\"\nop = \">\"\nthreshold = 1\n\n[[triggers]]\n{body}\n"
    );
    let tables: Vec<toml::Table> = toml::from_str::<toml::Table>(&doc).unwrap()["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_table().unwrap().clone())
        .collect();
    let e = TriggerConfig::from_tables(&tables, &["alpha", "beta"]).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert_eq!(e.index, 1);
    msg
}

const BASE: &str = "metric = \"indices.engagement\"\nop = \">\"\nthreshold = 0.7";

#[test]
fn config_errors_name_the_rule_and_the_key() {
    let e = rule_error(&format!("id = \"x\"\n{BASE}\nthresold = 3"));
    assert!(
        e.starts_with("triggers[1] (id \"x\"): thresold: unknown field `thresold`"),
        "{e}"
    );
    let e = rule_error(&format!("id = \"x\"\n{BASE}\nfor_windows = 0"));
    assert_eq!(
        e,
        "triggers[1] (id \"x\"): for_windows: must be an integer from 1 to 4294967295, got 0"
    );
    let e = rule_error(&format!("id = \"x\"\n{BASE}\nfor_windows = 1.5"));
    assert!(
        e.starts_with("triggers[1] (id \"x\"): for_windows: "),
        "{e}"
    );
    let e = rule_error(&format!("id = \"x\"\n{BASE}\nclear_threshold = 0.8"));
    assert_eq!(
        e,
        "triggers[1] (id \"x\"): clear_threshold: must be <= threshold (0.7) for op \">\", got 0.8"
    );
    let e = rule_error(&format!("id = \"x\"\n{BASE}\ncooldown_s = -1"));
    assert_eq!(
        e,
        "triggers[1] (id \"x\"): cooldown_s: must be a finite number >= 0, got -1"
    );
    let e = rule_error(&format!("id = \"x\"\n{BASE}\ncooldown_s = \"5s\""));
    assert_eq!(
        e,
        "triggers[1] (id \"x\"): cooldown_s: must be a number, got \"5s\""
    );
    let e = rule_error("id = \"x\"\nmetric = \"indices.engagement\"\nop = \">\"\nthreshold = nan");
    assert_eq!(
        e,
        "triggers[1] (id \"x\"): threshold: must be a finite number, got NaN"
    );
    let e = rule_error("id = \"x\"\nmetric = \"indices.engagement\"\nop = \"=>\"\nthreshold = 1");
    assert!(e.starts_with("triggers[1] (id \"x\"): op: must be "), "{e}");
    let e = rule_error("id = \"x\"\nmetric = \"indices.focus\"\nop = \">\"\nthreshold = 1");
    assert!(
        e.starts_with("triggers[1] (id \"x\"): metric: unknown metric \"indices.focus\""),
        "{e}"
    );
    let e = rule_error("id = \"x\"\nmetric = \"band_power.mu\"\nop = \">\"\nthreshold = 1");
    assert_eq!(
        e,
        "triggers[1] (id \"x\"): metric: band \"mu\" is not one of the configured bands (alpha, beta)"
    );
    let e = rule_error(&format!("id = \"ok\"\n{BASE}"));
    assert_eq!(e, "triggers[1] (id \"ok\"): id: duplicate of triggers[0]");
    let e = rule_error(&format!("id = \"\"\n{BASE}"));
    assert_eq!(e, "triggers[1] (id \"\"): id: must not be empty");
    let e = rule_error(BASE);
    assert!(e.starts_with("triggers[1] (no id): id: missing"), "{e}");
    let e = rule_error(&format!("id = 3\n{BASE}"));
    assert_eq!(e, "triggers[1] (no id): id: must be a string, got 3");
    let e = rule_error("id = \"x\"\nmetric = \"indices.engagement\"\nop = \">\"");
    assert!(
        e.starts_with("triggers[1] (id \"x\"): threshold: missing"),
        "{e}"
    );
}

#[test]
fn engine_rejects_invalid_rules() {
    let bad = Rule {
        clear_threshold: 0.2,
        ..Rule::new("low", Metric::Engagement, Op::Lt, 0.3)
    };
    let e = TriggerEngine::new(vec![default_rules()[0].clone(), bad]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "triggers[1] (id \"low\"): clear_threshold: must be >= threshold (0.3) for op \"<\", got 0.2"
    );
    assert_eq!((e.index, e.key.as_str()), (1, "clear_threshold"));
    // Bands are the config's business; the engine treats an unknown one as undefined.
    assert!(
        TriggerEngine::new(vec![Rule::new(
            "x",
            Metric::BandPower("mu".into()),
            Op::Gt,
            1.0
        )])
        .is_ok()
    );
}

#[test]
fn default_rules_are_the_documented_ones() {
    let rules = default_rules();
    let ids: Vec<_> = rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["poor_signal", "high_engagement", "low_engagement"]);
    let poor = &rules[0];
    assert_eq!(
        (&poor.metric, poor.op, poor.threshold, poor.for_windows),
        (&Metric::GoodFraction, Op::Lt, 0.5, 5)
    );
    assert!(!poor.clears_on(0.5) && poor.clears_on(0.75));
    assert!(rules[1..].iter().all(|r| r.for_windows == 10
        && r.metric == Metric::Engagement
        && r.clear_threshold != r.threshold));
    TriggerConfig::default().validate(&[]).unwrap();
}

// ---- the record ----

fn sample_event() -> TriggerRecord {
    TriggerRecord {
        rule_id: "high_engagement".into(),
        session_id: "s-42".into(),
        device_id: "bud-7".into(),
        state: Fired,
        metric: "indices.engagement".into(),
        value: 0.7412345678901234,
        threshold: 0.7,
        window_index: 12,
        start_ms: 1_732_270_012_000,
        end_ms: 1_732_270_016_000,
    }
}

#[test]
fn record_has_exactly_the_contract_fields_in_order() {
    let bytes = sample_event().encode();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert_eq!(
        text,
        "{\"schema\":\"analytics.trigger/1\",\"rule_id\":\"high_engagement\",\
         \"session_id\":\"s-42\",\"device_id\":\"bud-7\",\"state\":\"fired\",\
         \"metric\":\"indices.engagement\",\"value\":0.7412345678901234,\"threshold\":0.7,\
         \"window_index\":12,\"start_ms\":1732270012000,\"end_ms\":1732270016000}"
    );
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    let mut want = vec![
        "schema",
        "rule_id",
        "session_id",
        "device_id",
        "state",
        "metric",
        "value",
        "threshold",
        "window_index",
        "start_ms",
        "end_ms",
    ];
    want.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, want);
    assert_eq!(v["schema"], TRIGGER_SCHEMA);
    let cleared = TriggerRecord {
        state: Cleared,
        ..sample_event()
    };
    assert!(
        String::from_utf8(cleared.encode())
            .unwrap()
            .contains("\"state\":\"cleared\"")
    );
}

#[test]
fn record_round_trips_and_decoding_is_strict() {
    let r = sample_event();
    let bytes = r.encode();
    assert_eq!(decode_trigger(&bytes).unwrap(), r);
    assert_eq!(decode_trigger(&bytes).unwrap().encode(), bytes);
    assert_eq!(r.as_event().encode(), bytes);

    let text = String::from_utf8(bytes).unwrap();
    let extra = text.replace("\"end_ms\"", "\"extra\":1,\"end_ms\"");
    assert!(decode_trigger(extra.as_bytes()).is_err());
    let other = text.replace("analytics.trigger/1", "analytics.trigger/2");
    let e = decode_trigger(other.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("schema"), "{e}");
    let missing = text.replace(",\"threshold\":0.7", "");
    assert!(decode_trigger(missing.as_bytes()).is_err());
    let bad_state = text.replace("\"fired\"", "\"firing\"");
    assert!(decode_trigger(bad_state.as_bytes()).is_err());
}

// ---- snapshots ----

fn arb_rule(i: usize) -> impl Strategy<Value = Rule> {
    let metric = prop_oneof![
        Just(Metric::Engagement),
        Just(Metric::GoodFraction),
        Just(Metric::RelativePower("alpha".into())),
        Just(Metric::BandPower("alpha".into())),
    ];
    let op = prop_oneof![Just(Op::Gt), Just(Op::Ge), Just(Op::Lt), Just(Op::Le)];
    (
        metric,
        op,
        0..=8u32,
        0..=3u32,
        1..=4u32,
        1..=3u32,
        prop_oneof![Just(0.0), 0.5..6.0f64],
    )
        .prop_map(move |(metric, op, t, gap, n, clear_n, cooldown_s)| {
            // Thresholds on the grid of values the frames take, so equality happens.
            let scale = if matches!(metric, Metric::BandPower(_)) {
                10.0
            } else {
                1.0
            };
            let threshold = f64::from(t) / 8.0 * scale;
            let gap = f64::from(gap) / 8.0 * scale;
            let clear_threshold = if op.is_upward() {
                threshold - gap
            } else {
                threshold + gap
            };
            Rule {
                for_windows: n,
                clear_threshold,
                clear_for_windows: clear_n,
                cooldown_s,
                ..Rule::new(format!("r{i}"), metric, op, threshold)
            }
        })
}

fn arb_rules() -> impl Strategy<Value = Vec<Rule>> {
    (1..=4usize).prop_flat_map(|n| (0..n).map(arb_rule).collect::<Vec<_>>())
}

fn arb_frame() -> impl Strategy<Value = (Frame, bool)> {
    let value = prop_oneof![
        8 => (0..=8u32).prop_map(|v| Some(f64::from(v) / 8.0)),
        1 => Just(None),
        1 => Just(Some(f64::NAN)),
    ];
    (
        value,
        0..=4usize,
        prop::bool::weighted(0.1),
        prop::array::uniform4((0..=8u32).prop_map(|v| f64::from(v) / 8.0)),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(engagement, good, settling, alpha, reset)| {
            (
                Frame {
                    engagement,
                    good,
                    settling,
                    alpha,
                },
                reset,
            )
        })
}

/// Feeds the frames from `state`, resetting where asked, and returns the events.
fn feed_with_resets(
    engine: &TriggerEngine,
    state: &mut TriggerState,
    first: u64,
    frames: &[(Frame, bool)],
) -> Vec<TriggerRecord> {
    let mut events = Vec::new();
    for (i, (f, reset)) in frames.iter().enumerate() {
        if *reset {
            state.reset();
        }
        events.extend(feed(
            engine,
            state,
            first + i as u64,
            std::slice::from_ref(f),
        ));
    }
    events
}

proptest! {
    #[test]
    fn a_restored_snapshot_gives_the_same_events(
        rules in arb_rules(),
        frames in prop::collection::vec(arb_frame(), 0..120),
        cut in 0.0..=1.0f64,
    ) {
        let engine = TriggerEngine::new(rules.clone()).unwrap();
        let whole = feed_with_resets(&engine, &mut engine.new_state(), 0, &frames);

        let k = (cut * frames.len() as f64) as usize;
        let mut state = engine.new_state();
        let mut events = feed_with_resets(&engine, &mut state, 0, &frames[..k]);
        let snapshot = serde_json::to_vec(&state).unwrap();
        drop(state);
        // A new engine from the same rules, as after a restart of the service.
        let engine = TriggerEngine::new(rules).unwrap();
        let mut restored: TriggerState = serde_json::from_slice(&snapshot).unwrap();
        // Windows already evaluated before the snapshot are re-delivered after a restore.
        let back = k.saturating_sub(3);
        let again: Vec<_> = frames[back..k].iter().map(|(f, _)| f.clone()).collect();
        let replayed = feed(&engine, &mut restored, back as u64, &again);
        prop_assert!(replayed.is_empty());
        events.extend(feed_with_resets(&engine, &mut restored, k as u64, &frames[k..]));
        prop_assert_eq!(events, whole);
    }

    #[test]
    fn events_alternate_and_respect_their_thresholds(
        rules in arb_rules(),
        frames in prop::collection::vec(arb_frame(), 0..120),
    ) {
        let engine = TriggerEngine::new(rules.clone()).unwrap();
        let events = feed_with_resets(&engine, &mut engine.new_state(), 0, &frames);
        for rule in &rules {
            let mine: Vec<_> = events.iter().filter(|e| e.rule_id == rule.id).collect();
            let mut last_clear_end: Option<i64> = None;
            for (i, e) in mine.iter().enumerate() {
                prop_assert!(e.value.is_finite());
                prop_assert!(!frames[e.window_index as usize].0.settling);
                if i % 2 == 0 {
                    prop_assert_eq!(e.state, Fired);
                    prop_assert!(rule.fires_on(e.value));
                    prop_assert_eq!(e.threshold, rule.threshold);
                    if let Some(end) = last_clear_end {
                        prop_assert!(e.end_ms >= end + (rule.cooldown_s * 1000.0).round() as i64);
                    }
                } else {
                    prop_assert_eq!(e.state, Cleared);
                    prop_assert!(rule.clears_on(e.value));
                    prop_assert_eq!(e.threshold, rule.clear_threshold);
                    last_clear_end = Some(e.end_ms);
                }
            }
        }
    }
}
