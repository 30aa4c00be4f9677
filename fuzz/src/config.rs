//! `config`: a TOML config file through `eeg_session::config::parse_all`, and a config that
//! parses through what every run does with it before reading input: the warnings, the
//! session plan at a few sample rates (`SessionProcessor::plan_session`, which checks the
//! `[limits]`) and the trigger engine.
//!
//! Checks: errors and warnings are one line; a session the limits admit needs no more state
//! than `limits.max_session_state_mib`; the rules of a parsed config make an engine.

use eeg_dsp::SessionProcessor;
use eeg_session::TriggerEngine;
use eeg_session::config::parse_all;

use crate::{Bound, bounded, one_line};

/// The parser holds the TOML document: tables kept in the file's order with every key and
/// value as a `String` or `toml::Value` and its entry in an index map, so a short line
/// (`b0=[1,2]`, 9 bytes) costs some 950 bytes of structure; then the config built from it.
/// Planning a session computes lengths and allocates nothing in proportion to the window
/// (`plan_session`'s promise). Measured on the seeds (the README's and docs/triggers.md's
/// examples, under 26 KiB each) and on 10 to 70 KiB files made to be worst: 101 bytes a
/// byte for 6000 one-line bands, 61 for a rule of 8000 keys, 56 for 5000 nested arrays and
/// for 8000 empty strings, 37 for 5000 empty rules. 160 a byte over 64 KiB: proportional,
/// if large, and a config file is written by the operator, not sent by a device.
pub const BOUND: Bound = Bound {
    base: 64 << 10,
    factor: 160,
};

/// Sample rates a config is planned at: a consumer headset's, a research amplifier's, and
/// the highest the default limits admit.
const RATES: [f64; 3] = [256.0, 2048.0, 100_000.0];

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match bounded("config::parse_all", data, BOUND, || parse_all(text)) {
        Ok(c) => c,
        Err(e) => {
            one_line("config::parse_all", &e);
            return;
        }
    };
    for w in config.warnings() {
        one_line("Config::warnings", &w);
    }
    let limits = &config.processing.limits;
    for fs in RATES {
        for channels in [1, 64, limits.max_channels.saturating_add(1)] {
            let planned = bounded("SessionProcessor::plan_session", data, BOUND, || {
                SessionProcessor::plan_session(&config.processing, fs, channels)
            });
            match planned {
                Ok((_, bytes)) => assert!(
                    bytes <= limits.max_session_state_bytes,
                    "a session of {channels} channels at {fs} Hz admitted with {bytes} bytes of state, over the limit of {}",
                    limits.max_session_state_bytes
                ),
                Err(e) => one_line("SessionProcessor::plan_session", &e),
            }
        }
    }
    if let Err(e) = TriggerEngine::new(config.triggers.rules.clone()) {
        panic!("the rules of a parsed config make no engine: {e}");
    }
}
