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

    /// Filters `input` into `output` and writes the output of the first section into `tap`
    /// (all interleaved, the same length), in one pass. The numbers are exactly those of
    /// [`FilterBank::process`]; the session processor taps the notch this way to measure
    /// how much mains it removes.
    pub fn process_tapped(&mut self, input: &[f64], output: &mut [f64], tap: &mut [f64]) {
        let nch = self.n_channels;
        if nch == 0 || self.coefs.is_empty() {
            return;
        }
        let len = input.len().min(output.len()).min(tap.len());
        let len = len - len % nch;
        let (input, output, tap) = (&input[..len], &mut output[..len], &mut tap[..len]);
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `with_kernel` only keeps a SIMD kernel after checking the CPU has it.
            Kernel::Avx512 => unsafe {
                run_tapped_avx512(&self.coefs, &mut self.state, input, output, tap, nch)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe {
                run_tapped_avx2(&self.coefs, &mut self.state, input, output, tap, nch)
            },
            _ => run_tapped(&self.coefs, &mut self.state, input, output, tap, nch),
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
unsafe fn run_tapped_avx2(
    coefs: &[Coefs],
    state: &mut [State],
    input: &[f64],
    output: &mut [f64],
    tap: &mut [f64],
    nch: usize,
) {
    run_tapped(coefs, state, input, output, tap, nch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_tapped_avx512(
    coefs: &[Coefs],
    state: &mut [State],
    input: &[f64],
    output: &mut [f64],
    tap: &mut [f64],
    nch: usize,
) {
    run_tapped(coefs, state, input, output, tap, nch)
}

#[inline(always)]
fn run_tapped(
    coefs: &[Coefs],
    state: &mut [State],
    input: &[f64],
    output: &mut [f64],
    tap: &mut [f64],
    nch: usize,
) {
    let n_sections = coefs.len();
    for (g, group_state) in state.chunks_exact_mut(n_sections).enumerate() {
        let c0 = g * LANES;
        let width = (nch - c0).min(LANES);
        let (first, rest) = group_state.split_at_mut(1);
        let frames = input
            .chunks_exact(nch)
            .zip(output.chunks_exact_mut(nch))
            .zip(tap.chunks_exact_mut(nch));
        if width == LANES {
            for ((x, y), t) in frames {
                let x: [f64; LANES] = x[c0..c0 + LANES].try_into().unwrap_or([0.0; LANES]);
                let notched = cascade(&coefs[..1], first, x);
                t[c0..c0 + LANES].copy_from_slice(&notched);
                y[c0..c0 + LANES].copy_from_slice(&cascade(&coefs[1..], rest, notched));
            }
        } else {
            for ((x, y), t) in frames {
                let mut lanes = [0.0; LANES];
                lanes[..width].copy_from_slice(&x[c0..c0 + width]);
                let notched = cascade(&coefs[..1], first, lanes);
                t[c0..c0 + width].copy_from_slice(&notched[..width]);
                let out = cascade(&coefs[1..], rest, notched);
                y[c0..c0 + width].copy_from_slice(&out[..width]);
            }
        }
    }
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

    #[test]
    fn tapped_filtering_equals_in_place_filtering() {
        for nch in [1, 8, 13] {
            let x = signal(nch, 500);
            let chain = default_chain(250.0);
            let mut want = x.clone();
            FilterBank::new(&chain, nch).process(&mut want);
            let mut notched = x.clone();
            FilterBank::new(&chain[..1], nch).process(&mut notched);
            for k in [Kernel::Scalar, Kernel::detect()] {
                let mut bank = FilterBank::with_kernel(&chain, nch, k);
                let (mut y, mut t) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                // Two calls: the state must carry over as in `process`.
                bank.process_tapped(&x[..200 * nch], &mut y[..200 * nch], &mut t[..200 * nch]);
                bank.process_tapped(&x[200 * nch..], &mut y[200 * nch..], &mut t[200 * nch..]);
                assert_eq!(y, want, "{k:?}, {nch} channels");
                assert_eq!(t, notched, "{k:?}, {nch} channels");
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
