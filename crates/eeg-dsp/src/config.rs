//! Processing configuration and its validation against a sample rate.
//!
//! Field names match the keys of the TOML config file (`filter.mains_hz`, `bands.alpha`, ...),
//! and every [`ConfigError`] names the key it is about, so a caller can print it as is.

use crate::design::{self, BandType, DesignError, Sos};

/// The whole processing definition of a session (DESIGN.md, "Default processing").
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessingConfig {
    pub filter: FilterConfig,
    pub window: WindowConfig,
    pub bands: Vec<Band>,
    pub quality: QualityConfig,
    /// What a session may ask for; not part of the numbers, which are the same whatever the
    /// limits (a session is processed whole or refused).
    pub limits: SessionLimits,
}

/// The largest session an instance accepts: checked when a session starts, from its
/// declared rate and channels and the config alone, before anything is allocated, so the
/// same session is refused wherever it is read (docs/limits.md).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLimits {
    /// Highest sample rate, Hz. Default 100 kHz: research EEG amplifiers record at up to
    /// 16-20 kHz and intracranial systems at 30-40 kHz.
    pub max_sample_rate_hz: f64,
    /// Most channels in one session. Default 1024, above every EEG cap (256) and the
    /// intracranial and multi-array systems' counts we know (up to 512).
    pub max_channels: usize,
    /// Most memory one session's state may hold ([`crate::SessionProcessor::max_state_bytes`]),
    /// bytes. Default 1 GiB: 1024 channels at 30 kHz with the default 4 s window fit.
    pub max_session_state_bytes: u64,
    /// Longest Welch segment (the FFT length), samples. Default 2^18 = 262,144: the default
    /// 2 s segment up to 131 kHz.
    pub max_fft_len: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sample_rate_hz: 100_000.0,
            max_channels: 1024,
            max_session_state_bytes: 1 << 30,
            max_fft_len: 1 << 18,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    /// Mains frequency to notch out; 0 turns the notch off.
    pub mains_hz: f64,
    pub notch_q: f64,
    pub bandpass_hz: [f64; 2],
    pub bandpass_order: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    pub length_s: f64,
    pub hop_s: f64,
    pub welch_segment_s: f64,
}

/// A frequency band, edges inclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub name: String,
    pub lo_hz: f64,
    pub hi_hz: f64,
}

/// Thresholds of the per-channel signal-quality flags.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityConfig {
    /// Raw peak-to-peak below this (µV) over a window means the channel is flat (disconnected
    /// or shorted electrode).
    pub flatline_ptp_uv: f64,
    /// Share of raw samples sitting exactly at the window's raw minimum or maximum above which
    /// the channel is railed (the amplifier is clipping).
    pub railed_fraction: f64,
    /// Filtered peak-to-peak above this (µV) marks an artifact (movement, blink, pop).
    pub artifact_ptp_uv: f64,
    /// Line-noise ratio (see [`crate::Quality::line_noise_ratio`]) above which the channel
    /// is not good: poor electrode contact picks up mains.
    pub max_line_noise_ratio: f64,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            filter: FilterConfig {
                mains_hz: 50.0,
                notch_q: 30.0,
                bandpass_hz: [1.0, 45.0],
                bandpass_order: 4,
            },
            window: WindowConfig {
                length_s: 4.0,
                hop_s: 1.0,
                welch_segment_s: 2.0,
            },
            bands: default_bands(),
            quality: QualityConfig::default(),
            limits: SessionLimits::default(),
        }
    }
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            flatline_ptp_uv: 0.5,
            railed_fraction: 0.05,
            artifact_ptp_uv: 200.0,
            max_line_noise_ratio: 1.0,
        }
    }
}

/// The default bands: delta, theta, alpha, beta, gamma.
pub fn default_bands() -> Vec<Band> {
    [
        ("delta", 1.0, 4.0),
        ("theta", 4.0, 8.0),
        ("alpha", 8.0, 13.0),
        ("beta", 13.0, 30.0),
        ("gamma", 30.0, 45.0),
    ]
    .into_iter()
    .map(|(name, lo_hz, hi_hz)| Band {
        name: name.to_string(),
        lo_hz,
        hi_hz,
    })
    .collect()
}

/// Most bands a config may define; keeps records and per-session state bounded.
pub const MAX_BANDS: usize = 32;

/// A config value that cannot work, naming its key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("{key}: {source}")]
    Design {
        key: &'static str,
        source: DesignError,
    },
    /// A session beyond one of the [`SessionLimits`]; `key` is the config key that raises it.
    #[error("{problem}, above {key} = {limit}; raise {key} in the config file to accept it")]
    Limit {
        key: &'static str,
        limit: String,
        problem: String,
    },
}

pub(crate) fn over(
    key: &'static str,
    limit: impl std::fmt::Display,
    problem: String,
) -> ConfigError {
    ConfigError::Limit {
        key,
        limit: limit.to_string(),
        problem,
    }
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// A configuration checked against one sample rate, with everything derived from it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub fs: f64,
    /// The notch section, `None` when off or skipped.
    pub notch: Option<Sos>,
    /// The band-pass sections.
    pub bandpass: Vec<Sos>,
    /// Window length L and hop H in samples.
    pub window_len: usize,
    pub hop: usize,
    /// Welch segment length and step in samples.
    pub nperseg: usize,
    pub seg_step: usize,
    pub bands: Vec<Band>,
    pub bandpass_hz: [f64; 2],
    pub quality: QualityConfig,
    /// Things the caller should log once, e.g. a notch that had to be skipped.
    pub warnings: Vec<String>,
}

/// Python's `round()` (ties to even), which the processing definition uses for lengths.
fn samples(seconds: f64, fs: f64) -> f64 {
    (seconds * fs).round_ties_even()
}

impl Plan {
    /// The whole cascade, notch first: `sosfilt(vstack([notch, bandpass]), x)`.
    pub fn cascade(&self) -> Vec<Sos> {
        self.notch.iter().chain(&self.bandpass).copied().collect()
    }

    /// The bins to integrate on the Welch frequencies `freqs`: each band's, then the whole
    /// pass band's (the total power relative powers divide by).
    pub fn band_bins(&self, freqs: &[f64]) -> crate::welch::BandBins {
        let bands = self.bands.iter().map(|b| [b.lo_hz, b.hi_hz]);
        crate::welch::BandBins::new(freqs, bands.chain([self.bandpass_hz]))
    }
}

impl ProcessingConfig {
    /// The checks that do not depend on a sample rate: every value in range, bands named
    /// once with increasing edges. [`ProcessingConfig::plan`] runs them too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.filter;
        if !(f.mains_hz.is_finite() && f.mains_hz >= 0.0) {
            return Err(invalid(
                "filter.mains_hz",
                format!("must be 50, 60 or 0 (off), got {}", f.mains_hz),
            ));
        }
        if !(f.notch_q.is_finite() && f.notch_q > 0.0) {
            return Err(invalid(
                "filter.notch_q",
                format!("must be a finite number > 0, got {}", f.notch_q),
            ));
        }
        let [lo, hi] = f.bandpass_hz;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo < hi) {
            return Err(invalid(
                "filter.bandpass_hz",
                format!("must be [low, high] with 0 < low < high, got [{lo}, {hi}]"),
            ));
        }
        if !(1..=design::MAX_ORDER).contains(&f.bandpass_order) {
            return Err(invalid(
                "filter.bandpass_order",
                format!(
                    "must be in 1..={}, got {}",
                    design::MAX_ORDER,
                    f.bandpass_order
                ),
            ));
        }
        let w = &self.window;
        for (key, v) in [
            ("window.length_s", w.length_s),
            ("window.hop_s", w.hop_s),
            ("window.welch_segment_s", w.welch_segment_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(
                    key,
                    format!("must be a number of seconds > 0, got {v}"),
                ));
            }
        }
        if w.welch_segment_s > w.length_s {
            return Err(invalid(
                "window.welch_segment_s",
                format!(
                    "{} s is longer than window.length_s ({} s)",
                    w.welch_segment_s, w.length_s
                ),
            ));
        }
        if self.bands.is_empty() {
            return Err(invalid("bands", "at least one band is needed"));
        }
        if self.bands.len() > MAX_BANDS {
            return Err(invalid(
                "bands",
                format!("{} bands given, at most {MAX_BANDS}", self.bands.len()),
            ));
        }
        for (i, b) in self.bands.iter().enumerate() {
            let key = format!("bands.{}", b.name);
            if b.name.is_empty() {
                return Err(invalid("bands", "a band name is empty"));
            }
            if self.bands[..i].iter().any(|o| o.name == b.name) {
                return Err(invalid(key, "defined twice"));
            }
            if !(b.lo_hz.is_finite() && b.hi_hz.is_finite() && b.lo_hz >= 0.0 && b.lo_hz < b.hi_hz)
            {
                return Err(invalid(
                    key,
                    format!(
                        "must be [low, high] with 0 <= low < high, got [{}, {}]",
                        b.lo_hz, b.hi_hz
                    ),
                ));
            }
            // The band-pass removes everything outside it: such a band's power is the
            // filter's stop-band leakage, always about zero, never a measurement.
            if b.hi_hz <= lo || b.lo_hz >= hi {
                return Err(invalid(
                    key,
                    format!(
                        "[{}, {}] Hz is outside filter.bandpass_hz [{lo}, {hi}] Hz, so its power would always be about 0; widen the band-pass or drop the band",
                        b.lo_hz, b.hi_hz
                    ),
                ));
            }
        }
        let q = &self.quality;
        for (key, v) in [
            ("quality.flatline_ptp_uv", q.flatline_ptp_uv),
            ("quality.artifact_ptp_uv", q.artifact_ptp_uv),
            ("quality.max_line_noise_ratio", q.max_line_noise_ratio),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(
                    key,
                    format!("must be a finite number >= 0, got {v}"),
                ));
            }
        }
        if !(q.railed_fraction > 0.0 && q.railed_fraction <= 1.0) {
            return Err(invalid(
                "quality.railed_fraction",
                format!("must be in (0, 1], got {}", q.railed_fraction),
            ));
        }
        let l = &self.limits;
        if !(l.max_sample_rate_hz.is_finite() && l.max_sample_rate_hz > 0.0) {
            return Err(invalid(
                "limits.max_sample_rate_hz",
                format!("must be a finite number > 0, got {}", l.max_sample_rate_hz),
            ));
        }
        for (key, v) in [
            ("limits.max_channels", l.max_channels as u64),
            ("limits.max_session_state_mib", l.max_session_state_bytes),
            ("limits.max_fft_len", l.max_fft_len as u64),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Checks the config against a sample rate and derives the per-session plan.
    pub fn plan(&self, fs: f64) -> Result<Plan, ConfigError> {
        self.validate()?;
        if !(fs.is_finite() && fs > 0.0) {
            return Err(invalid(
                "sample_rate_hz",
                format!("must be a finite number > 0, got {fs}"),
            ));
        }
        let nyquist = fs / 2.0;
        let f = &self.filter;
        let mut warnings = Vec::new();
        let notch_on = if f.mains_hz == 0.0 {
            false
        } else if f.mains_hz >= nyquist {
            warnings.push(format!(
                "filter.mains_hz: {} Hz is not below Nyquist ({nyquist} Hz) at {fs} Hz; notch skipped",
                f.mains_hz
            ));
            false
        } else {
            true
        };
        let notch = if notch_on {
            Some(
                design::iirnotch(f.mains_hz, f.notch_q, fs).map_err(|source| {
                    ConfigError::Design {
                        key: "filter.notch_q",
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        let [lo, hi] = f.bandpass_hz;
        if hi >= nyquist {
            return Err(invalid(
                "filter.bandpass_hz",
                format!("upper edge {hi} Hz is not below Nyquist ({nyquist} Hz) at {fs} Hz"),
            ));
        }
        let bandpass = design::butter(f.bandpass_order, &[lo, hi], BandType::Bandpass, fs)
            .map_err(|source| ConfigError::Design {
                key: match source {
                    DesignError::Order(_) => "filter.bandpass_order",
                    _ => "filter.bandpass_hz",
                },
                source,
            })?;

        let w = &self.window;
        let window_len = samples(w.length_s, fs);
        let hop = samples(w.hop_s, fs);
        let nperseg = samples(w.welch_segment_s, fs);
        for (key, n) in [
            ("window.length_s", window_len),
            ("window.hop_s", hop),
            ("window.welch_segment_s", nperseg),
        ] {
            if n < 2.0 {
                return Err(invalid(key, format!("is under 2 samples at {fs} Hz")));
            }
            if n > 1e7 {
                return Err(invalid(
                    key,
                    format!("is over 10 million samples at {fs} Hz"),
                ));
            }
        }
        if nperseg > window_len {
            return Err(invalid(
                "window.welch_segment_s",
                format!("is longer than window.length_s at {fs} Hz"),
            ));
        }
        let (window_len, hop, nperseg) = (window_len as usize, hop as usize, nperseg as usize);

        // Frequency resolution of the Welch PSD: a band narrower than two bins integrates
        // nothing (trapezoid over fewer than two points is zero).
        let df = fs / nperseg as f64;
        for b in &self.bands {
            let key = format!("bands.{}", b.name);
            if b.hi_hz > nyquist {
                return Err(invalid(
                    key,
                    format!(
                        "upper edge {} Hz is above Nyquist ({nyquist} Hz) at {fs} Hz",
                        b.hi_hz
                    ),
                ));
            }
            if b.hi_hz - b.lo_hz < df {
                return Err(invalid(
                    key,
                    format!(
                        "is narrower than the Welch frequency resolution ({df} Hz); lengthen window.welch_segment_s"
                    ),
                ));
            }
        }
        Ok(Plan {
            fs,
            notch,
            bandpass,
            window_len,
            hop,
            nperseg,
            seg_step: nperseg - nperseg / 2,
            bands: self.bands.clone(),
            bandpass_hz: f.bandpass_hz,
            quality: self.quality.clone(),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_at_256_hz() {
        let p = ProcessingConfig::default().plan(256.0).unwrap();
        assert_eq!(p.cascade().len(), 5);
        assert!(p.notch.is_some());
        assert_eq!(
            (p.window_len, p.hop, p.nperseg, p.seg_step),
            (1024, 256, 512, 256)
        );
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn notch_at_or_above_nyquist_is_skipped_with_a_warning() {
        let mut c = ProcessingConfig::default();
        c.filter.bandpass_hz = [1.0, 40.0];
        c.bands.retain(|b| b.hi_hz <= 40.0);
        let p = c.plan(100.0).unwrap();
        assert!(p.notch.is_none());
        assert_eq!(p.cascade().len(), 4);
        assert!(p.warnings[0].contains("notch skipped"), "{:?}", p.warnings);
    }

    #[test]
    fn errors_name_the_key() {
        let msg = |c: ProcessingConfig, fs: f64| c.plan(fs).unwrap_err().to_string();
        let c = ProcessingConfig::default();
        assert!(msg(c.clone(), 64.0).starts_with("filter.bandpass_hz: upper edge 45 Hz"));
        let mut b = c.clone();
        b.bands.push(Band {
            name: "high".into(),
            lo_hz: 40.0,
            hi_hz: 200.0,
        });
        assert!(msg(b, 256.0).starts_with("bands.high: upper edge 200 Hz is above Nyquist"));
        // A band the band-pass removes entirely, whatever the rate.
        let mut out = c.clone();
        out.bands.push(Band {
            name: "line".into(),
            lo_hz: 50.0,
            hi_hz: 60.0,
        });
        assert_eq!(
            out.validate().unwrap_err().to_string(),
            "bands.line: [50, 60] Hz is outside filter.bandpass_hz [1, 45] Hz, so its power would always be about 0; widen the band-pass or drop the band"
        );
        // Touching the band-pass edge from inside is fine (the default gamma ends at 45 Hz).
        let mut edge = c.clone();
        edge.bands.push(Band {
            name: "edge".into(),
            lo_hz: 44.0,
            hi_hz: 50.0,
        });
        assert!(edge.validate().is_ok());
        let mut o = c.clone();
        o.filter.bandpass_order = 12;
        assert_eq!(
            msg(o, 256.0),
            "filter.bandpass_order: must be in 1..=8, got 12"
        );
        let mut w = c.clone();
        w.window.welch_segment_s = 8.0;
        assert!(msg(w, 256.0).starts_with("window.welch_segment_s: 8 s is longer"));
        let mut h = c.clone();
        h.window.hop_s = -1.0;
        assert!(msg(h, 256.0).starts_with("window.hop_s: must be"));
        let mut r = c;
        r.quality.railed_fraction = 0.0;
        assert!(msg(r, 256.0).starts_with("quality.railed_fraction"));
    }
}
