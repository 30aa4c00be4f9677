//! What a run says about each session when it ends: windows, channels, the share of good
//! channel-windows, the mean relative power per band, and what was restarted or skipped.

use eeg_dsp::Window;

/// One session's closing summary; its [`Display`](std::fmt::Display) is the line the
/// command line prints.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    session_id: String,
    fs: f64,
    channels: usize,
    windows: u64,
    channel_windows: u64,
    good: u64,
    bands: Vec<String>,
    relative_sum: Vec<f64>,
    pub(crate) resets: u64,
    pub(crate) duplicates: u64,
    pub(crate) trigger_events: u64,
}

impl Summary {
    pub(crate) fn new(
        session_id: &str,
        fs: f64,
        channels: usize,
        bands: &[eeg_dsp::Band],
    ) -> Summary {
        Summary {
            session_id: session_id.to_string(),
            fs,
            channels,
            bands: bands.iter().map(|b| b.name.clone()).collect(),
            relative_sum: vec![0.0; bands.len()],
            ..Summary::default()
        }
    }

    pub(crate) fn add(&mut self, w: &Window<'_>) {
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

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Windows completed.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Restarts of the session's signal state (a gap, a change of rate or channels).
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Raw batches skipped as copies of one already processed.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn trigger_events(&self) -> u64 {
        self.trigger_events
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::window;
    use eeg_dsp::ProcessingConfig;

    #[test]
    fn a_session_without_windows_says_so() {
        let s = Summary::new("rec", 128.0, 1, &ProcessingConfig::default().bands);
        assert_eq!(s.to_string(), "rec: 0 windows, 1 channel at 128 Hz");
    }

    #[test]
    fn the_summary_averages_over_channel_windows() {
        let mut s = Summary::new("rec", 256.0, 2, &ProcessingConfig::default().bands);
        // Two windows of two good channels: channel 0's powers 1..5 of 15, channel 1's
        // 2..6 of 20. Mean relative delta = (1/15 + 2/20) / 2 = 0.0833..., theta
        // (2/15 + 3/20) / 2 = 0.1416..., alpha (3/15 + 4/20) / 2 = 0.2, beta
        // (4/15 + 5/20) / 2 = 0.2583..., gamma (5/15 + 6/20) / 2 = 0.3166...
        s.add(&window(0, 2).view());
        s.add(&window(1, 2).view());
        s.resets = 1;
        s.trigger_events = 3;
        s.duplicates = 2;
        assert_eq!(
            s.to_string(),
            "rec: 2 windows, 2 channels at 256 Hz, 100.0% good channel-windows; mean relative power: \
             delta 0.083 theta 0.142 alpha 0.200 beta 0.258 gamma 0.317; \
             1 reset(s) after a gap or a change of rate/channels; 3 trigger event(s); \
             2 duplicate batch(es) skipped"
        );
        assert_eq!(
            (s.windows(), s.resets(), s.duplicates(), s.trigger_events()),
            (2, 1, 2, 3)
        );
    }
}
