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

use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};
use std::f64::consts::PI;
use std::sync::{Arc, Mutex, Weak};

/// The complex FFT of `len` points, planned once per process while any session uses it:
/// sessions at one rate share a plan, and a session that restarts or changes shape back and
/// forth does not plan again. Entries of plans no session holds any more are dropped, so the
/// cache never keeps more than the live sessions' plans.
/// The most FFT scratch, in multiples of the transform's length, any of RustFFT's plans asks
/// for: radix and mixed-radix plans take at most the length, Bluestein's an inner transform
/// of the next power of two at or above twice the length (under 4 lengths) and that
/// transform's own scratch (as much again).
pub const FFT_SCRATCH_BOUND: usize = 8;

fn shared_plan(len: usize) -> Arc<dyn Fft<f64>> {
    type Plans = Vec<(usize, Weak<dyn Fft<f64>>)>;
    static PLANS: Mutex<Plans> = Mutex::new(Vec::new());
    // A panic elsewhere while the lock was held leaves a list that is still consistent.
    let mut plans = PLANS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(plan) = plans
        .iter()
        .find(|(n, _)| *n == len)
        .and_then(|(_, w)| w.upgrade())
    {
        return plan;
    }
    plans.retain(|(_, w)| w.strong_count() > 0);
    let plan = FftPlanner::<f64>::new().plan_fft_forward(len);
    plans.push((len, Arc::downgrade(&plan)));
    plan
}

/// The FFT plan, window and buffers of one segment length. Planned once; computing a segment
/// does not allocate.
///
/// A real FFT of even length `N` is one complex FFT of length `N / 2` (even samples as real
/// parts, odd samples as imaginary parts) and a last butterfly per bin that separates the
/// two halves. That last step is done only for the bins asked for
/// ([`SegmentPsd::limit_bins`]): band powers need the bins up to the band-pass edge, a third
/// of them with the defaults. Odd lengths take a complex FFT of length `N`.
#[derive(Clone)]
pub struct SegmentPsd {
    fft: Arc<dyn Fft<f64>>,
    window: Vec<f64>,
    scale: f64,
    input: Vec<f64>,
    buffer: Vec<Complex64>,
    /// The FFT's own scratch. Per segment rather than per thread: a thread-local buffer cost
    /// some 3,000 instructions a transform to reach (40 % of a window's Welch work).
    scratch: Vec<Complex64>,
    /// `exp(-2πik/N)` for the bins below `N / 2` (even `N` only).
    twiddles: Vec<Complex64>,
    psd: Vec<f64>,
    /// Bins computed: `psd[..n_bins]`.
    n_bins: usize,
    freqs: Vec<f64>,
}

impl std::fmt::Debug for SegmentPsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentPsd")
            .field("nperseg", &self.window.len())
            .field("n_bins", &self.n_bins)
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
            + (self.buffer.capacity() + self.scratch.capacity() + self.twiddles.capacity()) * c
    }

    /// At most [`SegmentPsd::state_bytes`] of a segment of `nperseg` samples, known before
    /// planning it. Exact but for the FFT's scratch, which depends on the algorithm the plan
    /// picks: counted as [`FFT_SCRATCH_BOUND`] times the transform's length.
    pub fn state_bytes_for(nperseg: usize) -> usize {
        let f = std::mem::size_of::<f64>();
        let c = std::mem::size_of::<Complex64>();
        let even = nperseg.is_multiple_of(2);
        let len = if even { nperseg / 2 } else { nperseg };
        let twiddles = if even { len } else { 0 };
        (2 * nperseg + 2 * (nperseg / 2 + 1)) * f + (len + twiddles + FFT_SCRATCH_BOUND * len) * c
    }

    /// The transform's length and the scratch its plan took, in complex values.
    pub fn fft_scratch(&self) -> (usize, usize) {
        (self.buffer.len(), self.scratch.len())
    }

    /// Plans a segment of `nperseg >= 2` samples at `fs` Hz.
    pub fn new(nperseg: usize, fs: f64) -> SegmentPsd {
        let even = nperseg.is_multiple_of(2);
        let len = if even { nperseg / 2 } else { nperseg };
        let fft = shared_plan(len);
        // Periodic Hann: the symmetric window of nperseg + 1 points without its last point.
        let window: Vec<f64> = (0..nperseg)
            .map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / nperseg as f64).cos())
            .collect();
        let scale = 1.0 / (fs * window.iter().map(|w| w * w).sum::<f64>());
        let bin = 1.0 / (nperseg as f64 * (1.0 / fs));
        let n_bins = nperseg / 2 + 1;
        let twiddles = if even {
            (0..len)
                .map(|k| Complex64::from_polar(1.0, -2.0 * PI * k as f64 / nperseg as f64))
                .collect()
        } else {
            Vec::new()
        };
        SegmentPsd {
            input: vec![0.0; nperseg],
            buffer: vec![Complex64::default(); len],
            scratch: vec![Complex64::default(); fft.get_inplace_scratch_len()],
            twiddles,
            psd: vec![0.0; n_bins],
            n_bins,
            freqs: (0..n_bins).map(|k| k as f64 * bin).collect(),
            fft,
            window,
            scale,
        }
    }

    pub fn nperseg(&self) -> usize {
        self.window.len()
    }

    /// Bin frequencies in Hz (all of them, whatever [`SegmentPsd::limit_bins`] says).
    pub fn freqs(&self) -> &[f64] {
        &self.freqs
    }

    /// Computes only the first `n` bins from now on (at least one, at most all). Each bin's
    /// value is the same whatever the limit.
    pub fn limit_bins(&mut self, n: usize) {
        self.n_bins = n.clamp(1, self.freqs.len());
    }

    /// The PSD of one segment, the bins up to the limit. `fill` writes the segment's
    /// `nperseg` samples into the slice it is given (e.g. gathered from a ring buffer).
    #[inline(always)]
    pub fn compute(&mut self, fill: impl FnOnce(&mut [f64])) -> &[f64] {
        fill(&mut self.input);
        let n = self.input.len();
        let mean = sum(&self.input) / n as f64;
        let scale2 = self.scale * 2.0;
        // Odd length (no twiddles): one complex FFT of the whole segment.
        if self.twiddles.is_empty() {
            for ((z, x), w) in self.buffer.iter_mut().zip(&self.input).zip(&self.window) {
                *z = Complex64::new((*x - mean) * w, 0.0);
            }
            self.fft
                .process_with_scratch(&mut self.buffer, &mut self.scratch);
            for (p, x) in self.psd[..self.n_bins].iter_mut().zip(&self.buffer) {
                *p = (x.re * x.re + x.im * x.im) * scale2;
            }
            // DC has no mirror image: not doubled.
            self.psd[0] /= 2.0;
            return &self.psd[..self.n_bins];
        }

        let pairs = self.input.chunks_exact(2).zip(self.window.chunks_exact(2));
        for (z, (x, w)) in self.buffer.iter_mut().zip(pairs) {
            *z = Complex64::new((x[0] - mean) * w[0], (x[1] - mean) * w[1]);
        }
        self.fft
            .process_with_scratch(&mut self.buffer, &mut self.scratch);
        // With Z the transform of z[m] = x[2m] + i·x[2m+1] (M = N/2 points), the even and
        // odd samples' transforms are E = (Z[k] + conj Z[M-k]) / 2 and
        // O = (Z[k] - conj Z[M-k]) / 2i, and X[k] = E + exp(-2πik/N)·O.
        let m = self.buffer.len();
        let z = &self.buffer;
        let dc = z[0].re + z[0].im;
        // DC and Nyquist have no mirror image: not doubled.
        self.psd[0] = dc * dc * self.scale;
        for k in 1..self.n_bins.min(m) {
            let (a, b) = (z[k], z[m - k].conj());
            let e = (a + b) * 0.5;
            let d = (a - b) * 0.5;
            let x = e + self.twiddles[k] * Complex64::new(d.im, -d.re);
            self.psd[k] = (x.re * x.re + x.im * x.im) * scale2;
        }
        if self.n_bins > m {
            let nyquist = z[0].re - z[0].im;
            self.psd[m] = nyquist * nyquist * self.scale;
        }
        &self.psd[..self.n_bins]
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

    /// Heap memory of the ranges and weights, bytes.
    pub fn state_bytes(&self) -> usize {
        Self::state_bytes_for(self.ranges.capacity(), self.half_steps.capacity())
    }

    /// [`BandBins::state_bytes`] of `bands` bands over `bins` frequencies.
    pub fn state_bytes_for(bands: usize, bins: usize) -> usize {
        bands * std::mem::size_of::<(usize, usize)>() + bins * std::mem::size_of::<f64>()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bins `0..n` cover every band: those [`BandBins::integrate`] reads.
    pub fn bins_used(&self) -> usize {
        self.ranges.iter().map(|&(_, end)| end).max().unwrap_or(0)
    }

    /// Writes the trapezoid integral of `psd` (on the frequencies given to `new`) over each
    /// band into `out`.
    #[inline(always)]
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
#[inline(always)]
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
#[inline(always)]
fn sum(xs: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (chunks, rest) = xs.as_chunks::<4>();
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
    let mut seg = SegmentPsd::new(nperseg, fs);
    let mut mean = vec![0.0; nperseg / 2 + 1];
    welch_mean_into(&mut seg, &mut mean, x);
    Some((seg.freqs().to_vec(), mean))
}

/// Welch's mean over the segments of `x` (`seg.nperseg()` samples each, 50 % overlap, as
/// SciPy's defaults) into `mean` (the segment's bins computed, at most `nperseg / 2 + 1`),
/// allocating nothing. `x` must hold at least one segment.
pub fn welch_mean_into(seg: &mut SegmentPsd, mean: &mut [f64], x: &[f64]) {
    let n = seg.nperseg();
    let step = n - n / 2;
    let count = (x.len() - n / 2) / step;
    mean.fill(0.0);
    for s in 0..count {
        let psd = seg.compute(|buf| buf.copy_from_slice(&x[s * step..s * step + n]));
        for (acc, p) in mean.iter_mut().zip(psd) {
            *acc += p;
        }
    }
    for v in mean.iter_mut() {
        *v /= count as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fft_scratch_stays_within_its_bound() {
        // Powers of two, mixed radix, primes (Rader's and Bluestein's algorithms), odd.
        for nperseg in [
            512,
            500,
            513,
            2 * 1021,
            2 * 7927,
            1021,
            7927,
            200_002,
            333_333,
        ] {
            let seg = SegmentPsd::new(nperseg, 1000.0);
            let (len, scratch) = seg.fft_scratch();
            assert!(
                scratch <= FFT_SCRATCH_BOUND * len,
                "{nperseg}: {scratch} > 8 × {len}"
            );
            assert!(seg.state_bytes() <= SegmentPsd::state_bytes_for(nperseg));
        }
    }

    #[test]
    fn segments_of_one_length_share_a_plan_while_any_holds_it() {
        // A length no other test uses, so that tests running in parallel do not hold it.
        let a = SegmentPsd::new(2 * 7919, 256.0);
        let b = SegmentPsd::new(2 * 7919, 256.0);
        assert!(Arc::ptr_eq(&a.fft, &b.fft));
        let other = SegmentPsd::new(2 * 7907, 256.0);
        assert!(!Arc::ptr_eq(&a.fft, &other.fft));
        let weak = Arc::downgrade(&a.fft);
        drop((a, b));
        assert!(
            weak.upgrade().is_none(),
            "the cache does not keep a plan alive"
        );
    }

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

    /// The periodogram by the textbook DFT, O(N²): detrend, window, `|X_k|²`, scale.
    fn naive_psd(x: &[f64], fs: f64) -> Vec<f64> {
        let n = x.len();
        let w: Vec<f64> = (0..n)
            .map(|j| 0.5 - 0.5 * (2.0 * PI * j as f64 / n as f64).cos())
            .collect();
        let mean = x.iter().sum::<f64>() / n as f64;
        let scale = 1.0 / (fs * w.iter().map(|v| v * v).sum::<f64>());
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for j in 0..n {
                    let a = -2.0 * PI * (k * j % n) as f64 / n as f64;
                    re += (x[j] - mean) * w[j] * a.cos();
                    im += (x[j] - mean) * w[j] * a.sin();
                }
                let p = (re * re + im * im) * scale;
                let mirrored = k != 0 && 2 * k != n;
                if mirrored { 2.0 * p } else { p }
            })
            .collect()
    }

    #[test]
    fn segment_psd_equals_the_textbook_periodogram_for_even_and_odd_lengths() {
        for n in [2, 3, 8, 15, 64, 101, 250, 512] {
            let x: Vec<f64> = (0..n)
                .map(|j| 20.0 * (0.37 * j as f64).sin() + (j % 7) as f64 - 40.0)
                .collect();
            let want = naive_psd(&x, 100.0);
            let mut seg = SegmentPsd::new(n, 100.0);
            let got = seg.compute(|buf| buf.copy_from_slice(&x)).to_vec();
            assert_eq!(got.len(), want.len());
            let peak = want.iter().cloned().fold(0.0, f64::max);
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-10 * peak, "n {n} bin {k}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn limiting_the_bins_changes_no_bin() {
        for n in [512, 501] {
            let x: Vec<f64> = (0..n).map(|j| (0.11 * (j * j) as f64).cos()).collect();
            let mut seg = SegmentPsd::new(n, 256.0);
            let all = seg.compute(|buf| buf.copy_from_slice(&x)).to_vec();
            for limit in [1, 2, 91, n / 2, n / 2 + 1] {
                seg.limit_bins(limit);
                let some = seg.compute(|buf| buf.copy_from_slice(&x));
                assert_eq!(some, &all[..limit], "n {n}, limit {limit}");
            }
        }
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
