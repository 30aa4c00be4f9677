//! `eeg.processed/1` records read back for a report: the windows as they were recorded, and
//! the trigger rules evaluated on them.

use std::collections::HashMap;
use std::io::BufRead;

use eeg_dsp::{Band, Window};
use eeg_schema::SessionMeta;

use super::Collector;
use crate::Error;

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
) -> Result<u64, Error> {
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
            .map_err(|e| Error::bad(format!("{name}: line {}: cannot read: {e}", line_no + 1)))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let rec = eeg_schema::decode_processed(text)
            .map_err(|e| Error::bad(format!("{name}: line {line_no}: {e}")))?;
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
                        Error::bad(format!(
                            "{name}: line {line_no}: --channels: session '{}' has no channel '{w}' (channels: {})",
                            rec.session_id,
                            rec.channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let Some(first) = rec.channels.first() else {
            return Err(Error::bad(format!(
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
                return Err(Error::bad(format!(
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
        return Err(Error::bad(format!(
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

    #[test]
    fn the_first_line_tells_processed_records_from_raw_batches() {
        assert!(is_processed(
            br#"{"schema": "eeg.processed/1", "session_id": "s"}"#
        ));
        assert!(!is_processed(br#"{"schema":"eeg.raw/1"}"#));
        assert!(!is_processed(b"not json"));
    }

    /// A record of `session` with channels A and B (two bands), written as the contract
    /// spells it.
    fn record(session: &str, index: u64) -> String {
        let channel = |name: &str, alpha: f64| {
            format!(
                r#"{{"name": "{name}", "band_power": {{"alpha": {alpha}, "beta": 2.0}}, "relative_power": {{"alpha": 0.25, "beta": 0.5}}, "total_power": 4.0, "quality": {{"rms_uv": 1.0, "ptp_uv": 2.0, "line_noise_ratio": 0.0, "flatline": false, "railed": false, "artifact": false, "good": true}}}}"#
            )
        };
        format!(
            r#"{{"schema": "eeg.processed/1", "session_id": "{session}", "device_id": "d", "window_index": {index}, "start_ms": {}, "end_ms": {}, "sample_rate_hz": 256.0, "settling": false, "channels": [{}, {}], "indices": {{"engagement": 0.5, "theta_beta": null, "alpha_theta": null}}}}"#,
            1000 * index,
            1000 * index + 4000,
            channel("A", 1.0),
            channel("B", 3.0)
        )
    }

    fn read(
        text: &str,
        session_id: Option<&str>,
        channels: Option<&[String]>,
    ) -> Result<(u64, Collector), Error> {
        let engine = eeg_session::TriggerEngine::new(Vec::new()).unwrap();
        let mut collector = Collector::default();
        let lines = read_processed(
            "r.jsonl",
            &mut text.as_bytes(),
            session_id,
            channels,
            &engine,
            &mut collector,
        )?;
        Ok((lines, collector))
    }

    #[test]
    fn records_are_collected_per_session_and_lines_counted() {
        let text = format!(
            "{}\n\n{}\n{}\n",
            record("s", 0),
            record("t", 0),
            record("s", 1)
        );
        let (lines, c) = read(&text, None, None).unwrap();
        assert_eq!((lines, c.n_sessions(), c.windows()), (4, 2, 3));
        assert_eq!(c.sessions[0].meta.channels, ["A", "B"]);
        assert_eq!(c.sessions[0].bands, ["alpha", "beta"]);
        let (_, c) = read(&text, Some("t"), None).unwrap();
        assert_eq!((c.n_sessions(), c.windows()), (1, 1));
        let e = read(&text, Some("u"), None).unwrap_err();
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            "r.jsonl: --session-id: no record of session 'u' (sessions in the input: s, t)"
        );
    }

    #[test]
    fn channels_are_picked_in_the_order_asked_for() {
        let text = record("s", 0);
        let (_, c) = read(&text, None, Some(&["B".to_string(), "A".to_string()])).unwrap();
        assert_eq!(c.sessions[0].meta.channels, ["B", "A"]);
        // Channel B's alpha power (3.0) is now the first channel's.
        assert_eq!(c.sessions[0].buckets[0].abs[0], 3.0);
        let e = read(&text, None, Some(&["C".to_string()])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.jsonl: line 1: --channels: session 's' has no channel 'C' (channels: A, B)"
        );
    }

    #[test]
    fn a_bad_record_is_named_with_its_line() {
        let text = format!("{}\n{{\"schema\": \"eeg.processed/1\"}}\n", record("s", 0));
        let e = read(&text, None, None).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().starts_with("r.jsonl: line 2: "), "{e}");
    }
}
