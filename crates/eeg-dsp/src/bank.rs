//! A multichannel cascade of biquads that keeps its state between calls.
//!
//! Data is interleaved (frame-major: all channels of sample 0, then all channels of sample 1,
//! ...), so the inner loop runs across channels, one channel per SIMD lane. An IIR filter is
//! serial in time, but channels are independent: they are the natural vector axis.
//!
//! Every kernel (scalar, AVX2, AVX-512) is the same source compiled with different target
//! features, and Rust never fuses a multiply and an add into an FMA on its own. So all kernels
//! perform the same IEEE operations in the same order and their outputs are bit-identical: a
//! session that moves to a machine with other CPU features publishes the same numbers. The
//! operation order per section is SciPy's `sosfilt` (transposed direct form II).

use crate::design::Sos;

/// Channels per SIMD group: one AVX-512 register or two AVX2 registers of f64.
const LANES: usize = 8;

/// Normalised section coefficients `[b0, b1, b2, a1, a2]`.
type Coefs = [f64; 5];

/// Which compiled kernel a [`FilterBank`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Portable code, always compiled; the reference the others must equal.
    Scalar,
    /// x86_64 with AVX2 (two 4-lane registers per group of 8 channels).
    Avx2,
    /// x86_64 with AVX-512F (one 8-lane register per group).
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// A cascade of second-order sections applied to `n_channels` interleaved channels.
#[derive(Debug, Clone)]
pub struct FilterBank {
    coefs: Vec<Coefs>,
    n_channels: usize,
    /// Per channel group, per section: the two delay registers, one lane per channel.
    state: Vec<[[f64; LANES]; 2]>,
    kernel: Kernel,
}

impl FilterBank {
    /// A bank with the fastest supported kernel and zero state.
    pub fn new(sections: &[Sos], n_channels: usize) -> FilterBank {
        FilterBank::with_kernel(sections, n_channels, Kernel::detect())
    }

    /// A bank with a given kernel; an unsupported kernel falls back to [`Kernel::Scalar`].
    pub fn with_kernel(sections: &[Sos], n_channels: usize, kernel: Kernel) -> FilterBank {
        let coefs = sections
            .iter()
            .map(|s| {
                // SciPy's sosfilt divides by a0 too; designs here already have a0 == 1.
                let a0 = s[3];
                [s[0] / a0, s[1] / a0, s[2] / a0, s[4] / a0, s[5] / a0]
            })
            .collect::<Vec<_>>();
        let groups = n_channels.div_ceil(LANES);
        FilterBank {
            state: vec![[[0.0; LANES]; 2]; groups * coefs.len()],
            coefs,
            n_channels,
            kernel: if kernel.is_supported() {
                kernel
            } else {
                Kernel::Scalar
            },
        }
    }

    pub fn n_channels(&self) -> usize {
        self.n_channels
    }

    pub fn n_sections(&self) -> usize {
        self.coefs.len()
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Zeroes the state, as at the first sample of a stream.
    pub fn reset(&mut self) {
        self.state.fill([[0.0; LANES]; 2]);
    }

    /// The delay registers of `channel` (`[z0, z1]` per section), e.g. to save a session.
    pub fn channel_state(&self, channel: usize) -> Vec<[f64; 2]> {
        let (g, lane) = (channel / LANES, channel % LANES);
        let n = self.coefs.len();
        self.state[g * n..(g + 1) * n]
            .iter()
            .map(|s| [s[0][lane], s[1][lane]])
            .collect()
    }

    /// Copies every delay register into `out` (cleared first): channel by channel, per
    /// section `[z0, z1]`. With [`FilterBank::set_state`] this saves and restores a stream
    /// exactly.
    pub fn state_into(&self, out: &mut Vec<f64>) {
        out.clear();
        for c in 0..self.n_channels {
            let (g, lane) = (c / LANES, c % LANES);
            let n = self.coefs.len();
            for s in &self.state[g * n..(g + 1) * n] {
                out.extend([s[0][lane], s[1][lane]]);
            }
        }
    }

    /// Loads delay registers saved by [`FilterBank::state_into`]. Returns false, and
    /// changes nothing, when `state` does not have `2 × sections × channels` values.
    pub fn set_state(&mut self, state: &[f64]) -> bool {
        let n = self.coefs.len();
        if state.len() != 2 * n * self.n_channels {
            return false;
        }
        for (c, regs) in state.chunks_exact(2 * n).enumerate() {
            let (g, lane) = (c / LANES, c % LANES);
            for (s, z) in self.state[g * n..(g + 1) * n]
                .iter_mut()
                .zip(regs.chunks_exact(2))
            {
                s[0][lane] = z[0];
                s[1][lane] = z[1];
            }
        }
        true
    }

    /// Filters interleaved frames in place. `data.len()` must be a multiple of the channel
    /// count; a trailing partial frame is left untouched.
    pub fn process(&mut self, data: &mut [f64]) {
        if self.n_channels == 0 || self.coefs.is_empty() {
            return;
        }
        let usable = data.len() - data.len() % self.n_channels;
        let data = &mut data[..usable];
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `with_kernel` only keeps a SIMD kernel after checking the CPU has it.
            Kernel::Avx512 => unsafe {
                run_avx512(&self.coefs, &mut self.state, data, self.n_channels)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe {
                run_avx2(&self.coefs, &mut self.state, data, self.n_channels)
            },
            _ => run(&self.coefs, &mut self.state, data, self.n_channels),
        }
    }

    /// Filters `input` into `output` (interleaved, the same length) and updates each
    /// channel's running statistics on the way, in the one pass over the data: the numbers
    /// are exactly those of [`FilterBank::process`] and of the statistics computed sample
    /// by sample. With `tap_first`, [`ChannelStats::removed_sumsq`] accumulates what the
    /// first section takes out of the input (the session processor's notch, to measure line
    /// noise); otherwise it is left alone.
    ///
    /// # Panics
    /// If `stats` is not for this bank's number of channels.
    pub fn process_measured(
        &mut self,
        input: &[f64],
        output: &mut [f64],
        stats: &mut ChannelStats,
        tap_first: bool,
    ) {
        let nch = self.n_channels;
        assert_eq!(stats.len(), nch, "statistics for another channel count");
        if nch == 0 || self.coefs.is_empty() {
            return;
        }
        let len = input.len().min(output.len());
        let len = len - len % nch;
        let (input, output) = (&input[..len], &mut output[..len]);
        if tap_first {
            self.measured::<true>(input, output, stats);
        } else {
            self.measured::<false>(input, output, stats);
        }
    }

    fn measured<const TAP: bool>(
        &mut self,
        input: &[f64],
        output: &mut [f64],
        stats: &mut ChannelStats,
    ) {
        let (coefs, state, nch) = (&self.coefs, &mut self.state, self.n_channels);
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `with_kernel` only keeps a SIMD kernel after checking the CPU has it.
            Kernel::Avx512 => unsafe {
                run_measured_avx512::<TAP>(coefs, state, input, output, stats, nch)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe {
                run_measured_avx2::<TAP>(coefs, state, input, output, stats, nch)
            },
            _ => run_measured::<TAP>(coefs, state, input, output, stats, nch),
        }
    }
}

/// Running statistics per channel (struct of arrays, one entry per channel), as
/// [`FilterBank::process_measured`] keeps them. Counts are kept in f64, the samples' own
/// width, so that the kernels update them with the same vector compares and selects as
/// the extremes (exact up to 2^53 samples).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStats {
    pub in_min: Vec<f64>,
    pub in_max: Vec<f64>,
    /// Input samples equal to `in_min` / `in_max`.
    pub in_min_n: Vec<f64>,
    pub in_max_n: Vec<f64>,
    /// Sum of squares of the input minus the first section's output (with `tap_first`).
    pub removed_sumsq: Vec<f64>,
    pub out_min: Vec<f64>,
    pub out_max: Vec<f64>,
    pub out_sumsq: Vec<f64>,
}

impl ChannelStats {
    /// Cleared statistics of `n_channels` channels.
    pub fn new(n_channels: usize) -> ChannelStats {
        let mut s = ChannelStats {
            in_min: vec![0.0; n_channels],
            in_max: vec![0.0; n_channels],
            in_min_n: vec![0.0; n_channels],
            in_max_n: vec![0.0; n_channels],
            removed_sumsq: vec![0.0; n_channels],
            out_min: vec![0.0; n_channels],
            out_max: vec![0.0; n_channels],
            out_sumsq: vec![0.0; n_channels],
        };
        s.clear();
        s
    }

    /// As if no sample had been seen: extremes at ±∞, counts and sums zero.
    pub fn clear(&mut self) {
        self.in_min.fill(f64::INFINITY);
        self.in_max.fill(f64::NEG_INFINITY);
        self.in_min_n.fill(0.0);
        self.in_max_n.fill(0.0);
        self.removed_sumsq.fill(0.0);
        self.out_min.fill(f64::INFINITY);
        self.out_max.fill(f64::NEG_INFINITY);
        self.out_sumsq.fill(0.0);
    }

    pub fn len(&self) -> usize {
        self.in_min.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_min.is_empty()
    }
}

/// One group's statistics in registers, one lane per channel.
struct LaneStats {
    in_min: [f64; LANES],
    in_max: [f64; LANES],
    in_min_n: [f64; LANES],
    in_max_n: [f64; LANES],
    removed_sumsq: [f64; LANES],
    out_min: [f64; LANES],
    out_max: [f64; LANES],
    out_sumsq: [f64; LANES],
}

impl LaneStats {
    /// Lanes `c0..c0 + width` of `s`; unused lanes get the cleared values.
    #[inline(always)]
    fn load(s: &ChannelStats, c0: usize, width: usize) -> LaneStats {
        let lanes = |v: &[f64], fill: f64| {
            let mut a = [fill; LANES];
            a[..width].copy_from_slice(&v[c0..c0 + width]);
            a
        };
        LaneStats {
            in_min: lanes(&s.in_min, f64::INFINITY),
            in_max: lanes(&s.in_max, f64::NEG_INFINITY),
            in_min_n: lanes(&s.in_min_n, 0.0),
            in_max_n: lanes(&s.in_max_n, 0.0),
            removed_sumsq: lanes(&s.removed_sumsq, 0.0),
            out_min: lanes(&s.out_min, f64::INFINITY),
            out_max: lanes(&s.out_max, f64::NEG_INFINITY),
            out_sumsq: lanes(&s.out_sumsq, 0.0),
        }
    }

    #[inline(always)]
    fn store(&self, s: &mut ChannelStats, c0: usize, width: usize) {
        let r = c0..c0 + width;
        s.in_min[r.clone()].copy_from_slice(&self.in_min[..width]);
        s.in_max[r.clone()].copy_from_slice(&self.in_max[..width]);
        s.in_min_n[r.clone()].copy_from_slice(&self.in_min_n[..width]);
        s.in_max_n[r.clone()].copy_from_slice(&self.in_max_n[..width]);
        s.removed_sumsq[r.clone()].copy_from_slice(&self.removed_sumsq[..width]);
        s.out_min[r.clone()].copy_from_slice(&self.out_min[..width]);
        s.out_max[r.clone()].copy_from_slice(&self.out_max[..width]);
        s.out_sumsq[r].copy_from_slice(&self.out_sumsq[..width]);
    }

    /// One input frame: a new minimum restarts its count, an equal value adds to it. The
    /// result is the extreme and the number of samples equal to it, in one pass.
    /// Compare-and-select rather than `f64::min`: samples are finite (validated on input),
    /// and this form is one compare and one blend per vector.
    #[inline(always)]
    // One index over several lane arrays, as in `cascade`: the lanes stay visibly aligned.
    #[allow(clippy::needless_range_loop)]
    fn input(&mut self, x: &[f64; LANES]) {
        for l in 0..LANES {
            let (lt, eq) = (x[l] < self.in_min[l], x[l] == self.in_min[l]);
            self.in_min_n[l] = if lt {
                1.0
            } else if eq {
                self.in_min_n[l] + 1.0
            } else {
                self.in_min_n[l]
            };
            self.in_min[l] = if lt { x[l] } else { self.in_min[l] };
            let (gt, eq) = (x[l] > self.in_max[l], x[l] == self.in_max[l]);
            self.in_max_n[l] = if gt {
                1.0
            } else if eq {
                self.in_max_n[l] + 1.0
            } else {
                self.in_max_n[l]
            };
            self.in_max[l] = if gt { x[l] } else { self.in_max[l] };
        }
    }

    #[inline(always)]
    fn removed(&mut self, x: &[f64; LANES], kept: &[f64; LANES]) {
        for l in 0..LANES {
            let d = x[l] - kept[l];
            self.removed_sumsq[l] += d * d;
        }
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn output(&mut self, y: &[f64; LANES]) {
        for l in 0..LANES {
            self.out_min[l] = if y[l] < self.out_min[l] {
                y[l]
            } else {
                self.out_min[l]
            };
            self.out_max[l] = if y[l] > self.out_max[l] {
                y[l]
            } else {
                self.out_max[l]
            };
            self.out_sumsq[l] += y[l] * y[l];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(coefs: &[Coefs], state: &mut [[[f64; LANES]; 2]], data: &mut [f64], nch: usize) {
    run(coefs, state, data, nch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(
    coefs: &[Coefs],
    state: &mut [[[f64; LANES]; 2]],
    data: &mut [f64],
    nch: usize,
) {
    run(coefs, state, data, nch)
}

#[inline(always)]
fn run(coefs: &[Coefs], state: &mut [[[f64; LANES]; 2]], data: &mut [f64], nch: usize) {
    let n_sections = coefs.len();
    for (g, group_state) in state.chunks_exact_mut(n_sections).enumerate() {
        let c0 = g * LANES;
        let width = (nch - c0).min(LANES);
        if width == LANES {
            for frame in data.chunks_exact_mut(nch) {
                let lanes: &mut [f64; LANES] = (&mut frame[c0..c0 + LANES]).try_into().unwrap();
                *lanes = cascade(coefs, group_state, *lanes);
            }
        } else {
            // The last, partial group: pad the unused lanes with zeros, which stay zero.
            for frame in data.chunks_exact_mut(nch) {
                let mut x = [0.0; LANES];
                x[..width].copy_from_slice(&frame[c0..c0 + width]);
                let y = cascade(coefs, group_state, x);
                frame[c0..c0 + width].copy_from_slice(&y[..width]);
            }
        }
    }
}

type State = [[f64; LANES]; 2];

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_measured_avx2<const TAP: bool>(
    coefs: &[Coefs],
    state: &mut [State],
    input: &[f64],
    output: &mut [f64],
    stats: &mut ChannelStats,
    nch: usize,
) {
    run_measured::<TAP>(coefs, state, input, output, stats, nch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_measured_avx512<const TAP: bool>(
    coefs: &[Coefs],
    state: &mut [State],
    input: &[f64],
    output: &mut [f64],
    stats: &mut ChannelStats,
    nch: usize,
) {
    run_measured::<TAP>(coefs, state, input, output, stats, nch)
}

/// The cascade with the statistics, group by group: a group's filter state and statistics
/// stay in registers for the whole block of frames. The statistics' extra operations fill
/// slots the filter's serial dependency chain leaves idle.
#[inline(always)]
fn run_measured<const TAP: bool>(
    coefs: &[Coefs],
    state: &mut [State],
    input: &[f64],
    output: &mut [f64],
    stats: &mut ChannelStats,
    nch: usize,
) {
    let n_sections = coefs.len();
    let tapped = usize::from(TAP);
    for (g, group_state) in state.chunks_exact_mut(n_sections).enumerate() {
        let c0 = g * LANES;
        let width = (nch - c0).min(LANES);
        let (first, rest) = group_state.split_at_mut(tapped);
        let mut acc = LaneStats::load(stats, c0, width);
        let frames = input.chunks_exact(nch).zip(output.chunks_exact_mut(nch));
        if width == LANES {
            for (x, y) in frames {
                let x: [f64; LANES] = x[c0..c0 + LANES].try_into().unwrap_or([0.0; LANES]);
                let out = measured_step::<TAP>(coefs, first, rest, &mut acc, x);
                y[c0..c0 + LANES].copy_from_slice(&out);
            }
        } else {
            // The last, partial group: the unused lanes are zeros, never stored.
            for (x, y) in frames {
                let mut lanes = [0.0; LANES];
                lanes[..width].copy_from_slice(&x[c0..c0 + width]);
                let out = measured_step::<TAP>(coefs, first, rest, &mut acc, lanes);
                y[c0..c0 + width].copy_from_slice(&out[..width]);
            }
        }
        acc.store(stats, c0, width);
    }
}

/// One frame of one group through the cascade, with its statistics. (A function rather
/// than a closure: closures do not take on their caller's target features.)
#[inline(always)]
fn measured_step<const TAP: bool>(
    coefs: &[Coefs],
    first: &mut [State],
    rest: &mut [State],
    acc: &mut LaneStats,
    x: [f64; LANES],
) -> [f64; LANES] {
    acc.input(&x);
    let y = if TAP {
        let kept = cascade(&coefs[..1], first, x);
        acc.removed(&x, &kept);
        cascade(&coefs[1..], rest, kept)
    } else {
        cascade(coefs, rest, x)
    };
    acc.output(&y);
    y
}

/// One sample of all sections for one group of channels.
#[inline(always)]
fn cascade(coefs: &[Coefs], state: &mut [[[f64; LANES]; 2]], mut x: [f64; LANES]) -> [f64; LANES] {
    for (c, s) in coefs.iter().zip(state.iter_mut()) {
        let [b0, b1, b2, a1, a2] = *c;
        let mut y = [0.0; LANES];
        for l in 0..LANES {
            y[l] = b0 * x[l] + s[0][l];
            s[0][l] = b1 * x[l] - a1 * y[l] + s[1][l];
            s[1][l] = b2 * x[l] - a2 * y[l];
        }
        // The performance gate's proof that it bites: extra work per section and frame that
        // changes no number (`cargo bench --features perf-canary`; never in a real build).
        #[cfg(feature = "perf-canary")]
        for v in &mut y {
            *v = std::hint::black_box(*v);
        }
        x = y;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{BandType, butter, iirnotch};

    fn default_chain(fs: f64) -> Vec<Sos> {
        let mut s = vec![iirnotch(50.0, 30.0, fs).unwrap()];
        s.extend(butter(4, &[1.0, 45.0], BandType::Bandpass, fs).unwrap());
        s
    }

    fn signal(nch: usize, n: usize) -> Vec<f64> {
        (0..n * nch)
            .map(|i| {
                let (t, c) = ((i / nch) as f64, (i % nch) as f64);
                (t * 0.05 * (c + 1.0)).sin() * 40.0 + ((t * 0.71).cos() * 7.0) + c * 100.0
            })
            .collect()
    }

    #[test]
    fn every_supported_kernel_equals_scalar_bit_for_bit() {
        for nch in [1, 3, 8, 11, 16] {
            let x = signal(nch, 700);
            let mut want = x.clone();
            FilterBank::with_kernel(&default_chain(250.0), nch, Kernel::Scalar).process(&mut want);
            for k in [Kernel::Avx2, Kernel::Avx512] {
                let mut bank = FilterBank::with_kernel(&default_chain(250.0), nch, k);
                let mut got = x.clone();
                bank.process(&mut got);
                assert_eq!(
                    got,
                    want,
                    "kernel {:?} ({:?}), {nch} channels",
                    k,
                    bank.kernel()
                );
            }
        }
    }

    /// The statistics by their definitions, one channel at a time, sample by sample.
    fn plain_stats(x: &[f64], y: &[f64], kept: Option<&[f64]>, nch: usize) -> ChannelStats {
        let mut s = ChannelStats::new(nch);
        for c in 0..nch {
            let column = |v: &[f64]| v.iter().skip(c).step_by(nch).copied().collect::<Vec<_>>();
            let (xs, ys) = (column(x), column(y));
            s.in_min[c] = xs.iter().copied().fold(f64::INFINITY, f64::min);
            s.in_max[c] = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            s.in_min_n[c] = xs.iter().filter(|v| **v == s.in_min[c]).count() as f64;
            s.in_max_n[c] = xs.iter().filter(|v| **v == s.in_max[c]).count() as f64;
            if let Some(kept) = kept {
                for (a, b) in xs.iter().zip(column(kept)) {
                    s.removed_sumsq[c] += (a - b) * (a - b);
                }
            }
            s.out_min[c] = ys.iter().copied().fold(f64::INFINITY, f64::min);
            s.out_max[c] = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for v in &ys {
                s.out_sumsq[c] += v * v;
            }
        }
        s
    }

    #[test]
    fn measured_filtering_equals_filtering_and_the_plain_statistics() {
        for nch in [1, 8, 13] {
            // Quantised like EDF samples, so extremes repeat and their counts matter.
            let x: Vec<f64> = signal(nch, 500).iter().map(|v| (v / 8.0).round()).collect();
            let chain = default_chain(250.0);
            let mut want = x.clone();
            FilterBank::new(&chain, nch).process(&mut want);
            let mut kept = x.clone();
            FilterBank::new(&chain[..1], nch).process(&mut kept);
            for k in [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512] {
                for tap in [true, false] {
                    let mut bank = FilterBank::with_kernel(&chain, nch, k);
                    let mut y = vec![0.0; x.len()];
                    let mut stats = ChannelStats::new(nch);
                    // Two calls: the state and the statistics carry over.
                    let (x0, x1) = x.split_at(200 * nch);
                    let (y0, y1) = y.split_at_mut(200 * nch);
                    bank.process_measured(x0, y0, &mut stats, tap);
                    bank.process_measured(x1, y1, &mut stats, tap);
                    let what = format!("{k:?}, tap {tap}, {nch} channels");
                    assert_eq!(y, want, "{what}");
                    let tapped = tap.then_some(&kept[..]);
                    assert_eq!(stats, plain_stats(&x, &want, tapped, nch), "{what}");
                    assert!(stats.in_max_n.iter().any(|n| *n > 1.0), "{what}");
                }
            }
        }
    }

    #[test]
    fn reset_restores_the_initial_state() {
        let x = signal(5, 300);
        let mut bank = FilterBank::new(&default_chain(250.0), 5);
        let mut first = x.clone();
        bank.process(&mut first);
        bank.reset();
        let mut second = x.clone();
        bank.process(&mut second);
        assert_eq!(first, second);
    }

    #[test]
    fn channels_do_not_leak_into_each_other() {
        let nch = 10;
        let mut x = vec![0.0; nch * 200];
        x[3] = 1.0; // impulse on channel 3 only
        FilterBank::new(&default_chain(250.0), nch).process(&mut x);
        for (i, v) in x.iter().enumerate() {
            if i % nch != 3 {
                assert_eq!(*v, 0.0, "channel {} got output", i % nch);
            }
        }
        assert!(x.iter().skip(3).step_by(nch).any(|v| *v != 0.0));
    }
}
