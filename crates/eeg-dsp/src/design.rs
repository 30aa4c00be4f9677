//! Filter design: Butterworth and notch filters as second-order sections.
//!
//! Design is pure and separate from filter state (see [`crate::FilterBank`]). Every function
//! validates its inputs and returns a [`DesignError`] instead of producing NaN coefficients.
//!
//! The Butterworth design follows the same steps as `scipy.signal.butter(..., output='sos')`:
//! analog prototype poles, frequency pre-warping, the lowpass-to-X transform, the bilinear
//! transform, and `zpk2sos` with `pairing='nearest'`. Following the same pole/zero pairing and
//! section order matters: a cascade of the same sections in a different order has the same
//! transfer function but rounds differently, and the references we test against are SciPy's.

use rustfft::num_complex::Complex64 as C;
use std::f64::consts::PI;

/// One second-order section `[b0, b1, b2, a0, a1, a2]`, SciPy's `sos` row layout, with
/// `a0 == 1`.
pub type Sos = [f64; 6];

/// Highest Butterworth order accepted. Higher orders are numerically fragile even as SOS and
/// are not used for EEG.
pub const MAX_ORDER: u32 = 8;

/// The four Butterworth response types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandType {
    Lowpass,
    Highpass,
    Bandpass,
    Bandstop,
}

/// Why a filter could not be designed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DesignError {
    #[error("sample rate must be a finite number > 0, got {0}")]
    SampleRate(f64),
    #[error("filter order must be in 1..={MAX_ORDER}, got {0}")]
    Order(u32),
    #[error("cut-off {hz} Hz must be inside (0, {nyquist}) Hz, the open interval below Nyquist")]
    Cutoff { hz: f64, nyquist: f64 },
    #[error("band edges must be increasing, got [{lo}, {hi}] Hz")]
    EdgeOrder { lo: f64, hi: f64 },
    #[error("notch quality factor Q must be a finite number > 0, got {0}")]
    Q(f64),
    #[error("{0} cut-off(s) given; {1:?} needs {2}")]
    CutoffCount(usize, BandType, usize),
}

/// `scipy.signal.butter(order, cutoff_hz, band_type, fs=fs, output='sos')`.
///
/// `cutoff_hz` has one frequency for low/high-pass and two for band-pass/stop.
pub fn butter(
    order: u32,
    cutoff_hz: &[f64],
    band_type: BandType,
    fs: f64,
) -> Result<Vec<Sos>, DesignError> {
    check_fs(fs)?;
    if !(1..=MAX_ORDER).contains(&order) {
        return Err(DesignError::Order(order));
    }
    let needed = match band_type {
        BandType::Lowpass | BandType::Highpass => 1,
        BandType::Bandpass | BandType::Bandstop => 2,
    };
    if cutoff_hz.len() != needed {
        return Err(DesignError::CutoffCount(cutoff_hz.len(), band_type, needed));
    }
    let nyquist = fs / 2.0;
    for &hz in cutoff_hz {
        if !(hz > 0.0 && hz < nyquist) {
            return Err(DesignError::Cutoff { hz, nyquist });
        }
    }
    if needed == 2 && cutoff_hz[0] >= cutoff_hz[1] {
        return Err(DesignError::EdgeOrder {
            lo: cutoff_hz[0],
            hi: cutoff_hz[1],
        });
    }

    // Normalised frequencies (1 = Nyquist) pre-warped for the bilinear transform at the
    // internal rate 2, exactly as SciPy's `iirfilter` does.
    let warped: Vec<f64> = cutoff_hz
        .iter()
        .map(|&hz| {
            let wn = 2.0 * hz / fs;
            2.0 * 2.0 * (PI * wn / 2.0).tan()
        })
        .collect();

    let (z, p, k) = buttap(order);
    let (z, p, k) = match band_type {
        BandType::Lowpass => lp2lp(z, p, k, warped[0]),
        BandType::Highpass => lp2hp(z, p, k, warped[0]),
        BandType::Bandpass => lp2bp(
            z,
            p,
            k,
            (warped[0] * warped[1]).sqrt(),
            warped[1] - warped[0],
        ),
        BandType::Bandstop => lp2bs(
            z,
            p,
            k,
            (warped[0] * warped[1]).sqrt(),
            warped[1] - warped[0],
        ),
    };
    let (z, p, k) = bilinear(z, p, k, 2.0);
    Ok(zpk2sos(z, p, k))
}

/// `scipy.signal.iirnotch(w0_hz, q, fs)` as one section.
pub fn iirnotch(w0_hz: f64, q: f64, fs: f64) -> Result<Sos, DesignError> {
    check_fs(fs)?;
    let nyquist = fs / 2.0;
    if !(w0_hz > 0.0 && w0_hz < nyquist) {
        return Err(DesignError::Cutoff { hz: w0_hz, nyquist });
    }
    if !(q.is_finite() && q > 0.0) {
        return Err(DesignError::Q(q));
    }
    // Same expression order as SciPy's `_design_notch_peak_filter`.
    let w0 = 2.0 * w0_hz / fs;
    let bw = w0 / q * PI;
    let w0 = w0 * PI;
    let gb = 1.0 / 2f64.sqrt();
    let beta = ((1.0 - gb * gb).sqrt() / gb) * (bw / 2.0).tan();
    let gain = 1.0 / (1.0 + beta);
    let c = (2.0 * w0.cos()) * gain;
    Ok([
        gain,
        -c,
        gain,
        1.0,
        -2.0 * gain * w0.cos(),
        2.0 * gain - 1.0,
    ])
}

fn check_fs(fs: f64) -> Result<(), DesignError> {
    if fs.is_finite() && fs > 0.0 {
        Ok(())
    } else {
        Err(DesignError::SampleRate(fs))
    }
}

type Zpk = (Vec<C>, Vec<C>, f64);

/// Analog Butterworth prototype: no zeros, poles on the left unit half-circle.
fn buttap(n: u32) -> Zpk {
    let n = n as i64;
    let p = (-n + 1..n)
        .step_by(2)
        .map(|m| -C::new(0.0, PI * m as f64 / (2 * n) as f64).exp())
        .collect();
    (Vec::new(), p, 1.0)
}

fn degree(z: &[C], p: &[C]) -> usize {
    p.len().saturating_sub(z.len())
}

fn lp2lp(z: Vec<C>, p: Vec<C>, k: f64, wo: f64) -> Zpk {
    let d = degree(&z, &p);
    let z = z.into_iter().map(|z| z * wo).collect();
    let p = p.into_iter().map(|p| p * wo).collect();
    (z, p, k * wo.powi(d as i32))
}

fn lp2hp(z: Vec<C>, p: Vec<C>, k: f64, wo: f64) -> Zpk {
    let d = degree(&z, &p);
    let k = k * (prod(z.iter().map(|z| -z)) / prod(p.iter().map(|p| -p))).re;
    let mut zh: Vec<C> = z.iter().map(|&z| C::from(wo) / z).collect();
    let ph = p.iter().map(|&p| C::from(wo) / p).collect();
    zh.extend(std::iter::repeat_n(C::from(0.0), d));
    (zh, ph, k)
}

fn lp2bp(z: Vec<C>, p: Vec<C>, k: f64, wo: f64, bw: f64) -> Zpk {
    let d = degree(&z, &p);
    let split = |v: &[C]| -> Vec<C> {
        let lp: Vec<C> = v.iter().map(|&x| x * bw / 2.0).collect();
        let plus = lp.iter().map(|&x| x + (x * x - wo * wo).sqrt());
        let minus = lp.iter().map(|&x| x - (x * x - wo * wo).sqrt());
        plus.chain(minus).collect()
    };
    let mut zb = split(&z);
    let pb = split(&p);
    zb.extend(std::iter::repeat_n(C::from(0.0), d));
    (zb, pb, k * bw.powi(d as i32))
}

fn lp2bs(z: Vec<C>, p: Vec<C>, k: f64, wo: f64, bw: f64) -> Zpk {
    let d = degree(&z, &p);
    let split = |v: &[C]| -> Vec<C> {
        let hp: Vec<C> = v.iter().map(|&x| C::from(bw / 2.0) / x).collect();
        let plus = hp.iter().map(|&x| x + (x * x - wo * wo).sqrt());
        let minus = hp.iter().map(|&x| x - (x * x - wo * wo).sqrt());
        plus.chain(minus).collect()
    };
    let mut zb = split(&z);
    let pb = split(&p);
    zb.extend(std::iter::repeat_n(C::new(0.0, wo), d));
    zb.extend(std::iter::repeat_n(C::new(0.0, -wo), d));
    let k = k * (prod(z.iter().map(|z| -z)) / prod(p.iter().map(|p| -p))).re;
    (zb, pb, k)
}

fn bilinear(z: Vec<C>, p: Vec<C>, k: f64, fs: f64) -> Zpk {
    let d = degree(&z, &p);
    let fs2 = C::from(2.0 * fs);
    let k = k * (prod(z.iter().map(|&z| fs2 - z)) / prod(p.iter().map(|&p| fs2 - p))).re;
    let mut zz: Vec<C> = z.iter().map(|&z| (fs2 + z) / (fs2 - z)).collect();
    let pz = p.iter().map(|&p| (fs2 + p) / (fs2 - p)).collect();
    zz.extend(std::iter::repeat_n(C::from(-1.0), d));
    (zz, pz, k)
}

fn prod(it: impl Iterator<Item = C>) -> C {
    it.fold(C::from(1.0), |acc, x| acc * x)
}

fn is_real(c: C) -> bool {
    c.im == 0.0
}

/// SciPy's `_cplxreal` followed by concatenation: complex values as one representative per
/// conjugate pair (positive imaginary part, sorted by real part), then the real values sorted.
fn cplxreal(v: Vec<C>) -> Vec<C> {
    let tol = 100.0 * f64::EPSILON;
    let mut v = v;
    v.sort_by(|a, b| {
        a.re.total_cmp(&b.re)
            .then(a.im.abs().total_cmp(&b.im.abs()))
    });
    let (real, cplx): (Vec<C>, Vec<C>) = v.into_iter().partition(|z| z.im.abs() <= tol * z.norm());
    let mut zp: Vec<C> = cplx.iter().copied().filter(|z| z.im > 0.0).collect();
    let mut zn: Vec<C> = cplx.iter().copied().filter(|z| z.im < 0.0).collect();
    // Within runs of (nearly) equal real part, order by |imag| so conjugates line up.
    let mut start = 0;
    while start < zp.len() {
        let mut stop = start + 1;
        while stop < zp.len() && zp[stop].re - zp[stop - 1].re <= tol * zp[stop - 1].norm() {
            stop += 1;
        }
        zp[start..stop].sort_by(|a, b| a.im.abs().total_cmp(&b.im.abs()));
        if stop <= zn.len() {
            zn[start..stop].sort_by(|a, b| a.im.abs().total_cmp(&b.im.abs()));
        }
        start = stop;
    }
    let mut out: Vec<C> = zp
        .iter()
        .zip(zn.iter())
        .map(|(&a, &b)| (a + b.conj()) / 2.0)
        .collect();
    out.extend(real.into_iter().map(|z| C::from(z.re)));
    out
}

fn idx_worst(p: &[C]) -> usize {
    let mut best = 0;
    for (i, z) in p.iter().enumerate() {
        if (1.0 - z.norm()).abs() < (1.0 - p[best].norm()).abs() {
            best = i;
        }
    }
    best
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Any,
    Real,
    Complex,
}

/// Index of the element of `from` nearest to `to` that is of the requested kind.
fn nearest(from: &[C], to: C, which: Which) -> Option<usize> {
    let mut order: Vec<usize> = (0..from.len()).collect();
    order.sort_by(|&a, &b| (from[a] - to).norm().total_cmp(&(from[b] - to).norm()));
    order.into_iter().find(|&i| match which {
        Which::Any => true,
        Which::Real => is_real(from[i]),
        Which::Complex => !is_real(from[i]),
    })
}

fn poly(roots: &[C]) -> Vec<f64> {
    let mut c = vec![C::from(1.0)];
    for &r in roots {
        let mut next = vec![C::from(0.0); c.len() + 1];
        for (i, &ci) in c.iter().enumerate() {
            next[i] += ci;
            next[i + 1] += ci * -r;
        }
        c = next;
    }
    c.into_iter().map(|x| x.re).collect()
}

fn single_section(z: &[C], p: &[C]) -> Sos {
    let mut sos = [0.0; 6];
    let b = poly(z);
    let a = poly(p);
    sos[3 - b.len()..3].copy_from_slice(&b);
    sos[6 - a.len()..6].copy_from_slice(&a);
    sos
}

/// `scipy.signal.zpk2sos(z, p, k, pairing='nearest')` for digital filters: the poles closest
/// to the unit circle go last, each paired with its nearest zeros.
fn zpk2sos(z: Vec<C>, p: Vec<C>, k: f64) -> Vec<Sos> {
    if z.is_empty() && p.is_empty() {
        return vec![[k, 0.0, 0.0, 1.0, 0.0, 0.0]];
    }
    let (mut z, mut p) = (z, p);
    let n = z.len().max(p.len());
    z.resize(n, C::from(0.0));
    p.resize(n, C::from(0.0));
    let n_sections = n.div_ceil(2);
    if n % 2 == 1 {
        z.push(C::from(0.0));
        p.push(C::from(0.0));
    }
    let mut z = cplxreal(z);
    let mut p = cplxreal(p);
    let zero = C::from(0.0);
    let mut sos = vec![[0.0; 6]; n_sections];
    for si in (0..n_sections).rev() {
        let p1 = p.remove(idx_worst(&p));
        let n_real_p = p.iter().filter(|&&x| is_real(x)).count();
        let n_real_z = z.iter().filter(|&&x| is_real(x)).count();
        sos[si] = if is_real(p1) && n_real_p == 0 {
            // The last real pole goes with the nearest real zero in a first-order section.
            let z1 = take(&mut z, p1, Which::Real).unwrap_or(zero);
            single_section(&[z1, zero], &[p1, zero])
        } else if p.len() + 1 == z.len() && !is_real(p1) && n_real_p == 1 && n_real_z == 1 {
            // One real pole and one real zero must stay together for the last section.
            let z1 = take(&mut z, p1, Which::Complex).unwrap_or(zero);
            single_section(&[z1, z1.conj()], &[p1, p1.conj()])
        } else {
            let p2 = if is_real(p1) {
                let reals: Vec<usize> = (0..p.len()).filter(|&i| is_real(p[i])).collect();
                let worst = reals[idx_worst(&reals.iter().map(|&i| p[i]).collect::<Vec<_>>())];
                p.remove(worst)
            } else {
                p1.conj()
            };
            match take(&mut z, p1, Which::Any) {
                Some(z1) if !is_real(z1) => single_section(&[z1, z1.conj()], &[p1, p2]),
                Some(z1) => match take(&mut z, p1, Which::Real) {
                    Some(z2) => single_section(&[z1, z2], &[p1, p2]),
                    None => single_section(&[z1], &[p1, p2]),
                },
                None => single_section(&[], &[p1, p2]),
            }
        };
    }
    for c in &mut sos[0][..3] {
        *c *= k;
    }
    sos
}

fn take(v: &mut Vec<C>, to: C, which: Which) -> Option<C> {
    nearest(v, to, which).map(|i| v.remove(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frequency response magnitude of a cascade at `hz`.
    fn gain(sos: &[Sos], hz: f64, fs: f64) -> f64 {
        let w = C::new(0.0, -2.0 * PI * hz / fs).exp();
        sos.iter()
            .map(|s| {
                let num = s[0] + s[1] * w + s[2] * w * w;
                let den = s[3] + s[4] * w + s[5] * w * w;
                (num / den).norm()
            })
            .product()
    }

    #[test]
    fn butterworth_is_minus_3db_at_cutoff_and_flat_in_passband() {
        for order in 1..=MAX_ORDER {
            let lp = butter(order, &[30.0], BandType::Lowpass, 250.0).unwrap();
            assert!((gain(&lp, 30.0, 250.0) - 0.5f64.sqrt()).abs() < 1e-9);
            assert!((gain(&lp, 0.0, 250.0) - 1.0).abs() < 1e-12);
            let bp = butter(order, &[8.0, 13.0], BandType::Bandpass, 250.0).unwrap();
            assert!((gain(&bp, 8.0, 250.0) - 0.5f64.sqrt()).abs() < 1e-9);
            assert!((gain(&bp, 13.0, 250.0) - 0.5f64.sqrt()).abs() < 1e-9);
            assert_eq!(bp.len(), order as usize);
        }
    }

    #[test]
    fn notch_removes_its_frequency_and_passes_dc() {
        let s = iirnotch(50.0, 30.0, 250.0).unwrap();
        assert!(gain(&[s], 50.0, 250.0) < 1e-12);
        assert!((gain(&[s], 0.0, 250.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn invalid_designs_are_typed_errors() {
        assert_eq!(
            butter(0, &[1.0], BandType::Lowpass, 250.0),
            Err(DesignError::Order(0))
        );
        assert_eq!(
            butter(9, &[1.0], BandType::Lowpass, 250.0),
            Err(DesignError::Order(9))
        );
        assert_eq!(
            butter(4, &[125.0], BandType::Lowpass, 250.0),
            Err(DesignError::Cutoff {
                hz: 125.0,
                nyquist: 125.0
            })
        );
        assert!(matches!(
            butter(4, &[f64::NAN], BandType::Highpass, 250.0),
            Err(DesignError::Cutoff { .. })
        ));
        assert_eq!(
            butter(4, &[13.0, 8.0], BandType::Bandpass, 250.0),
            Err(DesignError::EdgeOrder { lo: 13.0, hi: 8.0 })
        );
        assert!(matches!(
            butter(4, &[1.0], BandType::Bandpass, 250.0),
            Err(DesignError::CutoffCount(1, BandType::Bandpass, 2))
        ));
        assert_eq!(
            butter(4, &[1.0], BandType::Lowpass, 0.0),
            Err(DesignError::SampleRate(0.0))
        );
        assert_eq!(iirnotch(50.0, 0.0, 250.0), Err(DesignError::Q(0.0)));
        assert!(matches!(
            iirnotch(60.0, 30.0, 100.0),
            Err(DesignError::Cutoff { .. })
        ));
    }
}
