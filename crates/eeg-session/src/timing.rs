//! A session's clock, as its batches' stamps tell it (DESIGN.md, "Events, epochs and
//! timing"): a least-squares line through each batch's `start_ms` against the index of its
//! first sample gives the device's effective sample rate, its drift against the nominal rate
//! (ppm) and the jitter of its stamps (RMS residual, ms); a batch whose stamp is off the
//! previous one's end by more than a tolerance, while `seq` runs on, is a clock jump:
//! counted, and the line starts again from it, never a reset of the session by itself.
//!
//! The state is a few numbers whatever the session's length (running means and co-moments,
//! Welford's way, which stays exact where sums of squares of Unix milliseconds would not).
//! The stamps are fitted as their distance from the nominal clock (the line is the same,
//! shifted by the nominal slope): an hour of stamps spans 3.6e6 ms but strays from the
//! nominal clock by milliseconds, so the residual, the difference of two co-moments, keeps
//! its digits (within 2e-12 of numpy's `lstsq`, where the raw stamps gave 2e-6).

/// A clock jump smaller than this is jitter.
pub const JUMP_TOLERANCE_MS: f64 = 100.0;

/// The fitted clock of one session.
#[derive(Debug, Clone, PartialEq)]
pub struct Clock {
    nominal_hz: f64,
    /// Batches in the current line (since the start or the last jump).
    n: u64,
    /// The first batch of the line, which the others are measured from.
    origin: (u64, f64),
    mean_x: f64,
    mean_y: f64,
    /// Co-moments: sums of products of deviations from the means.
    m_xx: f64,
    m_xy: f64,
    m_yy: f64,
    /// The previous batch's end, in samples and in its own stamp's ms.
    last: Option<(u64, f64)>,
    jumps: u64,
}

/// What the fitted clock says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockFit {
    /// Samples a second by the stamps; the nominal rate until two batches are in.
    pub effective_hz: f64,
    /// (effective / nominal − 1) × 10⁶.
    pub drift_ppm: f64,
    /// RMS distance of the stamps from the line, ms.
    pub jitter_ms: f64,
    /// Batches the line is fitted on.
    pub batches: u64,
    /// Clock jumps since the session started.
    pub jumps: u64,
}

impl Clock {
    pub fn new(nominal_hz: f64) -> Clock {
        Clock {
            nominal_hz,
            n: 0,
            origin: (0, 0.0),
            mean_x: 0.0,
            mean_y: 0.0,
            m_xx: 0.0,
            m_xy: 0.0,
            m_yy: 0.0,
            last: None,
            jumps: 0,
        }
    }

    /// A batch of `samples` samples whose first, at index `first_sample` of the session,
    /// is stamped `start_ms`; `contiguous` when its `seq` follows the previous batch's.
    /// Returns true when the stamp jumped.
    pub fn batch(
        &mut self,
        first_sample: u64,
        start_ms: f64,
        samples: u64,
        contiguous: bool,
    ) -> bool {
        let mut jumped = false;
        if let Some((end_sample, end_ms)) = self.last {
            let expected =
                end_ms + (first_sample as f64 - end_sample as f64) * 1000.0 / self.nominal_hz;
            if contiguous && (start_ms - expected).abs() > JUMP_TOLERANCE_MS {
                self.jumps += 1;
                jumped = true;
            }
            if jumped || !contiguous {
                self.restart();
            }
        }
        self.add(first_sample, start_ms);
        self.last = Some((
            first_sample + samples,
            start_ms + samples as f64 * 1000.0 / self.nominal_hz,
        ));
        jumped
    }

    fn restart(&mut self) {
        *self = Clock {
            jumps: self.jumps,
            ..Clock::new(self.nominal_hz)
        };
    }

    fn add(&mut self, first_sample: u64, start_ms: f64) {
        if self.n == 0 {
            self.origin = (first_sample, start_ms);
        }
        let x = first_sample as f64 - self.origin.0 as f64;
        let y = start_ms - self.origin.1 - x * 1000.0 / self.nominal_hz;
        self.n += 1;
        let n = self.n as f64;
        let (dx, dy) = (x - self.mean_x, y - self.mean_y);
        self.mean_x += dx / n;
        self.mean_y += dy / n;
        // Welford: the second factor is the deviation from the updated mean.
        self.m_xx += dx * (x - self.mean_x);
        self.m_xy += dx * (y - self.mean_y);
        self.m_yy += dy * (y - self.mean_y);
    }

    pub fn fit(&self) -> ClockFit {
        let nominal = ClockFit {
            effective_hz: self.nominal_hz,
            drift_ppm: 0.0,
            jitter_ms: 0.0,
            batches: self.n,
            jumps: self.jumps,
        };
        if self.n < 2 || self.m_xx <= 0.0 {
            return nominal;
        }
        // The line's slope against the nominal clock, then against the samples.
        let off_nominal = self.m_xy / self.m_xx;
        let ms_per_sample = off_nominal + 1000.0 / self.nominal_hz;
        if ms_per_sample <= 0.0 {
            return nominal;
        }
        let effective_hz = 1000.0 / ms_per_sample;
        let residual = (self.m_yy - self.m_xy * off_nominal).max(0.0);
        ClockFit {
            effective_hz,
            drift_ppm: (effective_hz / self.nominal_hz - 1.0) * 1e6,
            jitter_ms: (residual / self.n as f64).sqrt(),
            batches: self.n,
            jumps: self.jumps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `batches` stamps of 32-sample batches from a device whose true rate is `true_hz`,
    /// each stamp plus `noise(k)` ms, whole ms as the wire carries them when `whole`.
    fn run(true_hz: f64, batches: u64, whole: bool, noise: impl Fn(u64) -> f64) -> Clock {
        let mut c = Clock::new(1000.0);
        let t0 = 1_732_270_000_000.0;
        for k in 0..batches {
            let first = k * 32;
            let mut ms = t0 + first as f64 * 1000.0 / true_hz + noise(k);
            if whole {
                ms = ms.round();
            }
            assert!(!c.batch(first, ms, 32, true));
        }
        c
    }

    #[test]
    fn a_perfect_clock_has_no_drift_and_no_jitter() {
        let f = run(1000.0, 1000, false, |_| 0.0).fit();
        assert!((f.effective_hz - 1000.0).abs() < 1e-9, "{f:?}");
        assert!(f.drift_ppm.abs() < 1e-6 && f.jitter_ms < 1e-6, "{f:?}");
    }

    #[test]
    fn an_amplifier_at_1000_012_hz_drifts_12_ppm_even_through_whole_ms_stamps() {
        // An hour of 32-sample batches: 112,500 stamps, each rounded to the ms.
        let f = run(1000.012, 112_500, true, |_| 0.0).fit();
        assert!((f.drift_ppm - 12.0).abs() < 0.01, "{f:?}");
        // Rounding to whole ms is uniform noise of 1/sqrt(12) ms RMS.
        assert!((f.jitter_ms - 0.2887).abs() < 0.01, "{f:?}");
        assert_eq!(f.batches, 112_500);
    }

    #[test]
    fn jitter_is_the_rms_distance_from_the_line() {
        // ±2 ms alternating about a perfect clock: the line stays put, the RMS is 2.
        let f = run(
            1000.0,
            10_000,
            false,
            |k| if k % 2 == 0 { 2.0 } else { -2.0 },
        )
        .fit();
        assert!((f.jitter_ms - 2.0).abs() < 1e-3, "{f:?}");
        assert!(f.drift_ppm.abs() < 0.1, "{f:?}");
    }

    #[test]
    fn a_jump_is_counted_and_the_line_starts_again_from_it() {
        let mut c = Clock::new(250.0);
        let t0 = 1_000_000.0;
        for k in 0..100u64 {
            let jump = if k >= 50 { 500.0 } else { 0.0 };
            let jumped = c.batch(k * 32, t0 + k as f64 * 128.0 + jump, 32, true);
            assert_eq!(jumped, k == 50, "batch {k}");
        }
        let f = c.fit();
        assert_eq!((f.jumps, f.batches), (1, 50));
        assert!(f.drift_ppm.abs() < 1e-6 && f.jitter_ms < 1e-6, "{f:?}");
        // A gap in seq is not a jump: the session resets anyway.
        assert!(!c.batch(100 * 32 + 64, t0 + 90_000.0, 32, false));
        assert_eq!(c.fit().jumps, 1);
    }

    #[test]
    fn a_single_batch_gives_the_nominal_rate() {
        let mut c = Clock::new(256.0);
        c.batch(0, 5.0, 32, true);
        let f = c.fit();
        assert_eq!((f.effective_hz, f.drift_ppm, f.batches), (256.0, 0.0, 1));
    }
}
