//! `eeg.epoch/1`: one record per event of a session, on `eeg.epochs.data` (key
//! `session_id`) or a line of `process --epochs`.
//!
//! ```json
//! {"schema": "eeg.epoch/1", "session_id": "s-42", "device_id": "bud-7",
//!  "event": {"event_id": "stim-0017", "label": "target", "value": 3, "source": "app",
//!            "duration_s": 0.0, "onset_ms": 1732270012345.25},
//!  "onset_sample": 3086, "first_sample": 3035, "last_sample": 3214,
//!  "start_ms": 1732270012144.0, "end_ms": 1732270012844.0, "tmin_s": -0.2, "tmax_s": 0.5,
//!  "status": "rejected", "drop": ["Fz"],
//!  "channels": ["Fz", "Cz"],
//!  "components": {"p300": {"mean_uv": [1.2, 3.4], "peak_uv": [2.0, 6.1], "peak_ms": [312.5, 304.7]}},
//!  "erd": {"alpha": {"reference_uv2": [12.1, 10.4], "active_uv2": [6.0, 5.2], "change_pct": [-50.4, -50.0]}}}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `event` | the event as it came (its `eeg.event/1` fields less `schema` and `session_id`) |
//! | `onset_sample` | the event's sample in the session's stream (`null`, as the bounds, for an event too late to be placed) |
//! | `first_sample`, `last_sample` | the epoch's samples, inclusive: `onset + round(tmin·fs)` to `onset + round(tmax·fs)` (may be negative for an epoch starting before the stream) |
//! | `start_ms`, `end_ms` | Unix time of those samples |
//! | `status` | `ok`; `rejected` (peak-to-peak or flatness on a channel, which `drop` names); `no_data`, with `drop` saying why: `before_start` (the epoch starts before the stream's first sample), `ended` (the stream ended or restarted first), `too_late` (the event came after its samples were let go) |
//! | `components` | per configured window, per channel: mean amplitude, the peak's value (µV) and latency (ms after the event); absent for `no_data` |
//! | `erd` | per band, per channel: power in the reference and active windows (µV²) and the change `(A − R) / R × 100` (`null` when R is 0); only with `[epochs.erd]` |
//! | `samples_uv` | with `include_samples`: the baseline-corrected samples, one row per channel |
//!
//! Values are given for rejected epochs too (a rejected epoch is left out of averages, not of
//! the record); `drop` follows MNE's `drop_log`: the channels at fault.

use serde::Serialize;
use serde::ser::SerializeMap;

use eeg_dsp::epochs::{EpochPlan, EpochValues, Missing};

use crate::event::{Event, Onset};

/// The `schema` of an epoch record.
pub const EPOCH_SCHEMA: &str = "eeg.epoch/1";

/// What an epoch record says of one event.
#[derive(Debug, Clone, Copy)]
pub struct EpochRecord<'a> {
    pub session_id: &'a str,
    pub device_id: &'a str,
    pub user_id: Option<&'a str>,
    pub channels: &'a [String],
    pub event: &'a Event,
    /// `None` for an event that came too late to be placed (its onset in ms lies before
    /// every batch the session remembers): its sample and bounds are then `null`.
    pub onset_sample: Option<u64>,
    /// Unix time of the stream's sample 0, ms, and its rate: epoch bounds in ms.
    pub t0_ms: f64,
    pub plan: &'a EpochPlan,
    /// Component names in the plan's order, then band names in its order.
    pub component_names: &'a [String],
    pub band_names: &'a [String],
    pub tmin_s: f64,
    pub tmax_s: f64,
    pub values: Result<&'a EpochValues, Missing>,
    pub include_samples: bool,
}

impl EpochRecord<'_> {
    pub fn first_sample(&self) -> Option<i64> {
        Some(self.onset_sample? as i64 + self.plan.first_offset())
    }

    pub fn last_sample(&self) -> Option<i64> {
        Some(self.first_sample()? + self.plan.len() as i64 - 1)
    }

    /// `ok`, `rejected` or `no_data`.
    pub fn status(&self) -> &'static str {
        match self.values {
            Ok(v) if v.rejected() => "rejected",
            Ok(_) => "ok",
            Err(_) => "no_data",
        }
    }

    /// Unix time of the epoch's first and last samples, ms.
    pub fn bounds_ms(&self) -> (Option<f64>, Option<f64>) {
        let fs = self.plan.fs();
        let ms = |sample: Option<i64>| sample.map(|s| self.t0_ms + s as f64 * 1000.0 / fs);
        (ms(self.first_sample()), ms(self.last_sample()))
    }

    /// Why it was dropped: the channels at fault (MNE's `drop_log`), or why it has no data.
    pub fn drop_names(&self) -> Vec<&str> {
        match self.values {
            Err(missing) => vec![missing.name()],
            Ok(v) => v
                .too_large
                .iter()
                .chain(&v.too_flat)
                .map(|&ch| self.channels[ch].as_str())
                .collect(),
        }
    }

    /// The record as one line of JSON (no newline).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Writing to a Vec fails only on a serializer error, which these types never raise.
        serde_json::to_writer(out, self).expect("an epoch record serializes");
    }
}

struct EventFields<'a>(&'a Event);

impl Serialize for EventFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("event_id", &e.event_id)?;
        m.serialize_entry("label", &e.label)?;
        if let Some(v) = e.value {
            m.serialize_entry("value", &v)?;
        }
        if !e.source.is_empty() {
            m.serialize_entry("source", &e.source)?;
        }
        m.serialize_entry("duration_s", &e.duration_s)?;
        match e.onset {
            Onset::UnixMs(ms) => m.serialize_entry("onset_ms", &ms)?,
            Onset::Sample(n) => m.serialize_entry("onset_sample", &n)?,
        }
        m.end()
    }
}

/// `[item * n + channel]` values of one item, as a JSON array.
struct Row<'a>(&'a [f64]);

impl Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // NaN and infinities have no JSON form: null, as serde_json writes them anyway.
        s.collect_seq(self.0.iter().map(|x| x.is_finite().then_some(*x)))
    }
}

struct Ms<'a>(&'a [f64]);

impl Serialize for Ms<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| x * 1000.0))
    }
}

/// A map from names to what each names: the `i`-th name's value is `value(range)`, where
/// `range` is its channels' span, `i * n_channels..(i + 1) * n_channels`, in the values'
/// per-item vectors.
struct PerName<'a, F> {
    names: &'a [String],
    n_channels: usize,
    value: F,
}

impl<T: Serialize, F: Fn(std::ops::Range<usize>) -> T> Serialize for PerName<'_, F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.n_channels;
        s.collect_map(
            self.names
                .iter()
                .enumerate()
                .map(|(i, name)| (name, (self.value)(i * n..(i + 1) * n))),
        )
    }
}

#[derive(Serialize)]
struct Component<'a> {
    mean_uv: Row<'a>,
    peak_uv: Row<'a>,
    peak_ms: Ms<'a>,
}

#[derive(Serialize)]
struct Band<'a> {
    reference_uv2: Row<'a>,
    active_uv2: Row<'a>,
    change_pct: Row<'a>,
}

struct Samples<'a>(&'a EpochValues);

impl Serialize for Samples<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        s.collect_seq((0..v.n_channels()).map(|ch| Row(v.channel(ch))))
    }
}

impl Serialize for EpochRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (start_ms, end_ms) = self.bounds_ms();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema", EPOCH_SCHEMA)?;
        m.serialize_entry("session_id", self.session_id)?;
        m.serialize_entry("device_id", self.device_id)?;
        if let Some(u) = self.user_id {
            m.serialize_entry("user_id", u)?;
        }
        m.serialize_entry("event", &EventFields(self.event))?;
        m.serialize_entry("onset_sample", &self.onset_sample)?;
        m.serialize_entry("first_sample", &self.first_sample())?;
        m.serialize_entry("last_sample", &self.last_sample())?;
        m.serialize_entry("start_ms", &start_ms)?;
        m.serialize_entry("end_ms", &end_ms)?;
        m.serialize_entry("tmin_s", &self.tmin_s)?;
        m.serialize_entry("tmax_s", &self.tmax_s)?;
        m.serialize_entry("status", self.status())?;
        m.serialize_entry("drop", &self.drop_names())?;
        m.serialize_entry("channels", self.channels)?;
        if let Ok(v) = self.values {
            let n_channels = v.n_channels();
            if !self.component_names.is_empty() {
                let components = PerName {
                    names: self.component_names,
                    n_channels,
                    value: |at: std::ops::Range<usize>| Component {
                        mean_uv: Row(&v.mean_uv[at.clone()]),
                        peak_uv: Row(&v.peak_uv[at.clone()]),
                        peak_ms: Ms(&v.peak_s[at]),
                    },
                };
                m.serialize_entry("components", &components)?;
            }
            if self.plan.erd_bands() > 0 {
                let erd = PerName {
                    names: self.band_names,
                    n_channels,
                    value: |at: std::ops::Range<usize>| Band {
                        reference_uv2: Row(&v.reference_power[at.clone()]),
                        active_uv2: Row(&v.active_power[at.clone()]),
                        change_pct: Row(&v.erd_pct[at]),
                    },
                };
                m.serialize_entry("erd", &erd)?;
            }
            if self.include_samples {
                m.serialize_entry("samples_uv", &Samples(v))?;
            }
        }
        m.end()
    }
}
