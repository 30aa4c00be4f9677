//! Welch power spectral density and band integration, as `scipy.signal.welch` with its
//! defaults and `scipy.integrate.trapezoid`.
//!
//! Conventions (the same as SciPy's):
//! - one segment: subtract its mean (constant detrend), multiply by a periodic Hann window,
//!   real FFT of length `nperseg`;
//! - density scaling: `|X_k|^2 / (fs * sum(w^2))`, doubled for every bin but DC and (for even
//!   `nperseg`) Nyquist, so the one-sided PSD integrates to the signal variance; units are
//!   µV²/Hz for input in µV;
//! - segments overlap by `nperseg / 2` and their PSDs are averaged with a plain mean;
//! - bin `k` is at `k * (1 / (nperseg * (1 / fs)))` Hz, computed like NumPy's `rfftfreq`;
//! - band power integrates the PSD with the trapezoid rule over the bins with
//!   `lo <= f <= hi` (both edges inclusive), in µV².

use realfft::num_complex::Complex64;
use realfft::{RealFftPlanner, RealToComplex};
use std::f64::consts::PI;
use std::sync::Arc;

/// The FFT plan, window and scratch of one segment length. Planned once; computing a segment
/// does not allocate.
#[derive(Clone)]
pub struct SegmentPsd {
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    scale: f64,
    input: Vec<f64>,
    spectrum: Vec<Complex64>,
    scratch: Vec<Complex64>,
    psd: Vec<f64>,
    freqs: Vec<f64>,
}

impl std::fmt::Debug for SegmentPsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentPsd")
            .field("nperseg", &self.window.len())
            .finish_non_exhaustive()
    }
}

impl SegmentPsd {
    /// Heap memory of the buffers (not the shared FFT plan), bytes.
    pub fn state_bytes(&self) -> usize {
        let f = std::mem::size_of::<f64>();
        let c = std::mem::size_of::<Complex64>();
        (self.window.capacity()
            + self.input.capacity()
            + self.psd.capacity()
            + self.freqs.capacity())
            * f
            + (self.spectrum.capacity() + self.scratch.capacity()) * c
    }

    /// Plans a segment of `nperseg >= 2` samples at `fs` Hz.
    pub fn new(nperseg: usize, fs: f64) -> SegmentPsd {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(nperseg);
        // Periodic Hann: the symmetric window of nperseg + 1 points without its last point.
        let window: Vec<f64> = (0..nperseg)
            .map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / nperseg as f64).cos())
            .collect();
        let scale = 1.0 / (fs * window.iter().map(|w| w * w).sum::<f64>());
        let bin = 1.0 / (nperseg as f64 * (1.0 / fs));
        let n_bins = nperseg / 2 + 1;
        SegmentPsd {
            input: vec![0.0; nperseg],
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            psd: vec![0.0; n_bins],
            freqs: (0..n_bins).map(|k| k as f64 * bin).collect(),
            fft,
            window,
            scale,
        }
    }

    pub fn nperseg(&self) -> usize {
        self.window.len()
    }

    /// Bin frequencies in Hz.
    pub fn freqs(&self) -> &[f64] {
        &self.freqs
    }

    /// The PSD of one segment. `fill` writes the segment's `nperseg` samples into the slice it
    /// is given (e.g. gathered from a ring buffer), which avoids a copy.
    pub fn compute(&mut self, fill: impl FnOnce(&mut [f64])) -> &[f64] {
        fill(&mut self.input);
        let n = self.input.len() as f64;
        let mean = sum(&self.input) / n;
        for (x, w) in self.input.iter_mut().zip(&self.window) {
            *x = (*x - mean) * w;
        }
        // Lengths match by construction, the only error realfft reports.
        let _ =
            self.fft
                .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch);
        for (p, x) in self.psd.iter_mut().zip(&self.spectrum) {
            *p = (x.re * x.re + x.im * x.im) * self.scale * 2.0;
        }
        // DC, and Nyquist for an even length, have no mirror image: not doubled.
        self.psd[0] /= 2.0;
        if self.window.len().is_multiple_of(2)
            && let Some(last) = self.psd.last_mut()
        {
            *last /= 2.0;
        }
        &self.psd
    }
}

/// Inclusive bin ranges of a set of frequency bands, for trapezoid integration.
#[derive(Debug, Clone)]
pub struct BandBins {
    ranges: Vec<(usize, usize)>,
    /// `half_steps[j] = (f[j] - f[j - 1]) / 2` (0 at `j = 0`): the trapezoid's weights
    /// with its division done once. Halving is exact in binary floating point, so the
    /// integrals are bit-for-bit those of [`trapezoid`].
    half_steps: Vec<f64>,
}

impl BandBins {
    /// Bins with `lo <= f <= hi` for each `[lo, hi]`. A band that covers fewer than two bins
    /// integrates to zero, as `trapezoid` over fewer than two points does.
    pub fn new(freqs: &[f64], bands: impl IntoIterator<Item = [f64; 2]>) -> BandBins {
        let ranges = bands
            .into_iter()
            .map(|[lo, hi]| {
                let first = freqs.iter().position(|&f| f >= lo).unwrap_or(freqs.len());
                let end = freqs.iter().rposition(|&f| f <= hi).map_or(0, |i| i + 1);
                (first, end.max(first))
            })
            .collect();
        let half_steps = (0..freqs.len())
            .map(|j| {
                if j == 0 {
                    0.0
                } else {
                    (freqs[j] - freqs[j - 1]) / 2.0
                }
            })
            .collect();
        BandBins { ranges, half_steps }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Writes the trapezoid integral of `psd` (on the frequencies given to `new`) over each
    /// band into `out`.
    pub fn integrate(&self, psd: &[f64], out: &mut [f64]) {
        for (o, &(a, b)) in out.iter_mut().zip(&self.ranges) {
            *o = trapezoid_weighted(&psd[a..b], &self.half_steps[a..b]);
        }
    }
}

/// `scipy.integrate.trapezoid(y, x)`.
pub fn trapezoid(y: &[f64], x: &[f64]) -> f64 {
    trapezoid_by(&y[..y.len().min(x.len())], |j| (x[j] - x[j - 1]) / 2.0)
}

/// [`trapezoid`] with `h[j] = (x[j] - x[j - 1]) / 2` computed once.
fn trapezoid_weighted(y: &[f64], h: &[f64]) -> f64 {
    trapezoid_by(&y[..y.len().min(h.len())], |j| h[j])
}

/// `Σ half_step(j) · (y[j] + y[j - 1])` over `j ≥ 1`, in four independent accumulators (a
/// single chain of dependent additions is four times slower). Halving a step is exact in
/// binary floating point, so this is bit-for-bit the textbook `Δx · (y[j] + y[j - 1]) / 2`.
#[inline(always)]
fn trapezoid_by(y: &[f64], half_step: impl Fn(usize) -> f64) -> f64 {
    let n = y.len();
    if n < 2 {
        return 0.0;
    }
    let mut acc = [0.0; 4];
    let mut i = 1;
    while i + 4 <= n {
        for (l, a) in acc.iter_mut().enumerate() {
            let j = i + l;
            *a += half_step(j) * (y[j] + y[j - 1]);
        }
        i += 4;
    }
    for j in i..n {
        acc[0] += half_step(j) * (y[j] + y[j - 1]);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// A sum with independent accumulators: a plain fold is one long chain of dependent
/// additions, four times slower. NumPy also sums with several accumulators (pairwise).
fn sum(xs: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let chunks = xs.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..4 {
            acc[l] += c[l];
        }
    }
    let tail: f64 = rest.iter().sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `scipy.signal.welch(x, fs, nperseg=nperseg)` with SciPy's defaults: frequencies and PSD.
/// A convenience that allocates; the streaming processor uses [`SegmentPsd`] directly.
/// Returns `None` when `nperseg < 2` or `x` is shorter than one segment.
pub fn welch(x: &[f64], fs: f64, nperseg: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    if nperseg < 2 || x.len() < nperseg {
        return None;
    }
    let step = nperseg - nperseg / 2;
    let n_segments = (x.len() - nperseg / 2) / step;
    let mut seg = SegmentPsd::new(nperseg, fs);
    let mut sum = vec![0.0; nperseg / 2 + 1];
    for s in 0..n_segments {
        let start = s * step;
        let psd = seg.compute(|buf| buf.copy_from_slice(&x[start..start + nperseg]));
        for (acc, p) in sum.iter_mut().zip(psd) {
            *acc += p;
        }
    }
    for v in &mut sum {
        *v /= n_segments as f64;
    }
    Some((seg.freqs().to_vec(), sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psd_of_a_sine_integrates_to_its_variance() {
        let fs = 256.0;
        let x: Vec<f64> = (0..4096)
            .map(|n| 10.0 * (2.0 * PI * 10.0 * n as f64 / fs).sin() + 3.0)
            .collect();
        let (f, p) = welch(&x, fs, 512).unwrap();
        let total = trapezoid(&p, &f);
        // Variance of a sine of amplitude 10 is 50; the DC offset is detrended away.
        assert!((total - 50.0).abs() / 50.0 < 1e-3, "{total}");
        let peak = p.iter().cloned().fold(0.0, f64::max);
        assert_eq!(p.iter().position(|&v| v == peak).map(|k| f[k]), Some(10.0));
    }

    #[test]
    fn band_integrals_are_bit_for_bit_scipys_trapezoid() {
        let uniform: Vec<f64> = (0..257).map(|k| k as f64 * 0.5).collect();
        let uneven: Vec<f64> = (0..257).map(|k| (k as f64).powf(1.3) * 0.37).collect();
        for freqs in [uniform, uneven] {
            let psd: Vec<f64> = (0..257)
                .map(|k| ((k as f64 * 0.731).sin() + 1.1) * 10f64.powi(k % 7 - 3))
                .collect();
            let bands = [
                [1.0, 4.0],
                [4.0, 8.0],
                [8.0, 13.0],
                [13.0, 30.0],
                [0.0, 300.0],
            ];
            let bins = BandBins::new(&freqs, bands);
            let mut out = [0.0; 5];
            bins.integrate(&psd, &mut out);
            for ([lo, hi], got) in bands.iter().zip(out) {
                let a = freqs.iter().position(|&f| f >= *lo).unwrap();
                let b = freqs.iter().rposition(|&f| f <= *hi).unwrap() + 1;
                let want = trapezoid(&psd[a..b], &freqs[a..b]);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "[{lo}, {hi}]: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn band_edges_are_inclusive() {
        let freqs: Vec<f64> = (0..11).map(|k| k as f64 * 0.5).collect();
        let bins = BandBins::new(&freqs, [[1.0, 2.0], [4.9, 5.0], [6.0, 9.0]]);
        assert_eq!(bins.ranges, vec![(2, 5), (10, 11), (11, 11)]);
        let mut out = [0.0; 3];
        bins.integrate(&[1.0; 11], &mut out);
        assert_eq!(out, [1.0, 0.0, 0.0]);
    }
}
