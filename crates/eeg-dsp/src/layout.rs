//! Moving samples between layouts: channel-major rows (how EDF records, raw batches and the
//! processor's ring keep them) and interleaved frames (what the filter bank runs on, one
//! channel per SIMD lane).
//!
//! A plain column copy does one scalar load and one scalar store per sample, with a stride
//! of a whole frame on one side; for 64 channels that was a tenth of `process`. The AVX2
//! versions move 4 × 4 blocks instead: four vector loads, a transpose in registers, four
//! vector stores. Copying changes no value, so every version gives the same output; the
//! scalar one is always compiled and is the reference in the tests.

use crate::Kernel;

/// Writes `nch` rows of equal length, `row(0)..row(nch)`, into `dst` as interleaved frames
/// (`dst[t * nch + c] = row(c)[t]`).
#[inline(always)]
pub(crate) fn rows_to_frames<'a>(
    kernel: Kernel,
    nch: usize,
    row: impl Fn(usize) -> &'a [f64],
    dst: &mut [f64],
) {
    let mut c = 0;
    while c + 4 <= nch {
        let rows = [row(c), row(c + 1), row(c + 2), row(c + 3)];
        rows_to_lanes(kernel, rows, &mut dst[c..], nch);
        c += 4;
    }
    for c in c..nch {
        for (d, v) in dst[c..].iter_mut().step_by(nch).zip(row(c)) {
            *d = *v;
        }
    }
}

/// Writes interleaved frames of `nch` channels into `rows`, one per channel
/// (`rows[c][t] = frames[t * nch + c]`), as many frames as the rows are long.
#[inline(always)]
pub(crate) fn frames_to_rows<'a>(
    kernel: Kernel,
    frames: &[f64],
    nch: usize,
    rows: impl IntoIterator<Item = &'a mut [f64]>,
) {
    let mut rows = rows.into_iter();
    let mut c = 0;
    while c + 4 <= nch {
        let (Some(a), Some(b), Some(d), Some(e)) =
            (rows.next(), rows.next(), rows.next(), rows.next())
        else {
            return;
        };
        lanes_to_rows(kernel, &frames[c..], nch, [a, b, d, e]);
        c += 4;
    }
    for (c, row) in (c..nch).zip(rows) {
        for (d, v) in row.iter_mut().zip(frames[c..].iter().step_by(nch)) {
            *d = *v;
        }
    }
}

/// `dst[t * stride + k] = rows[k][t]` for `k < 4` and `t < len`: four rows into four lanes
/// of `len` interleaved frames. `dst` must hold `(len - 1) * stride + 4` values.
#[inline(always)]
fn rows_to_lanes(kernel: Kernel, rows: [&[f64]; 4], dst: &mut [f64], stride: usize) {
    let len = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    if len == 0 {
        return;
    }
    assert!(stride >= 4 && dst.len() >= (len - 1) * stride + 4);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a kernel other than Scalar is only used on a CPU that has it (AVX-512F
        // implies AVX2); the bounds are checked above.
        Kernel::Avx2 | Kernel::Avx512 => unsafe { avx2::rows_to_lanes(rows, len, dst, stride) },
        _ => rows_to_lanes_scalar(rows, len, dst, stride, 0),
    }
}

/// `rows[k][t] = src[t * stride + k]` for `k < 4` and `t < len`: four lanes of `len`
/// interleaved frames into four rows. `src` must hold `(len - 1) * stride + 4` values.
#[inline(always)]
fn lanes_to_rows(kernel: Kernel, src: &[f64], stride: usize, rows: [&mut [f64]; 4]) {
    let len = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    if len == 0 {
        return;
    }
    assert!(stride >= 4 && src.len() >= (len - 1) * stride + 4);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `rows_to_lanes`.
        Kernel::Avx2 | Kernel::Avx512 => unsafe { avx2::lanes_to_rows(src, stride, rows, len) },
        _ => lanes_to_rows_scalar(src, stride, rows, len, 0),
    }
}

/// The scalar form of [`rows_to_lanes`] from frame `from` on.
#[inline(always)]
fn rows_to_lanes_scalar(
    rows: [&[f64]; 4],
    len: usize,
    dst: &mut [f64],
    stride: usize,
    from: usize,
) {
    for t in from..len {
        let frame = &mut dst[t * stride..t * stride + 4];
        for (d, row) in frame.iter_mut().zip(rows) {
            *d = row[t];
        }
    }
}

/// The scalar form of [`lanes_to_rows`] from frame `from` on.
#[inline(always)]
fn lanes_to_rows_scalar(
    src: &[f64],
    stride: usize,
    rows: [&mut [f64]; 4],
    len: usize,
    from: usize,
) {
    for (k, row) in rows.into_iter().enumerate() {
        for t in from..len {
            row[t] = src[t * stride + k];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256d, _mm256_loadu_pd, _mm256_permute2f128_pd, _mm256_storeu_pd, _mm256_unpackhi_pd,
        _mm256_unpacklo_pd,
    };

    /// Transposes a 4 × 4 block held in four registers.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose([a, b, c, d]: [__m256d; 4]) -> [__m256d; 4] {
        // a0 b0 a2 b2 | a1 b1 a3 b3 | c0 d0 c2 d2 | c1 d1 c3 d3
        let (ab02, ab13) = (_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b));
        let (cd02, cd13) = (_mm256_unpacklo_pd(c, d), _mm256_unpackhi_pd(c, d));
        [
            _mm256_permute2f128_pd::<0x20>(ab02, cd02),
            _mm256_permute2f128_pd::<0x20>(ab13, cd13),
            _mm256_permute2f128_pd::<0x31>(ab02, cd02),
            _mm256_permute2f128_pd::<0x31>(ab13, cd13),
        ]
    }

    /// # Safety
    /// The CPU has AVX2, every row holds `len` values and `dst` `(len - 1) * stride + 4`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows_to_lanes(
        rows: [&[f64]; 4],
        len: usize,
        dst: &mut [f64],
        stride: usize,
    ) {
        let blocks = len / 4 * 4;
        let out = dst.as_mut_ptr();
        for t in (0..blocks).step_by(4) {
            // SAFETY: t + 4 <= len for every row, and (t + 3) * stride + 4 <= dst.len().
            unsafe {
                let v = transpose(rows.map(|r| _mm256_loadu_pd(r.as_ptr().add(t))));
                for (k, v) in v.into_iter().enumerate() {
                    _mm256_storeu_pd(out.add((t + k) * stride), v);
                }
            }
        }
        super::rows_to_lanes_scalar(rows, len, dst, stride, blocks);
    }

    /// # Safety
    /// The CPU has AVX2, every row holds `len` values and `src` `(len - 1) * stride + 4`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn lanes_to_rows(
        src: &[f64],
        stride: usize,
        mut rows: [&mut [f64]; 4],
        len: usize,
    ) {
        let blocks = len / 4 * 4;
        let from = src.as_ptr();
        for t in (0..blocks).step_by(4) {
            // SAFETY: as in `rows_to_lanes`, with the roles of the sides swapped.
            unsafe {
                let frames = [0, 1, 2, 3].map(|k| _mm256_loadu_pd(from.add((t + k) * stride)));
                for (row, v) in rows.iter_mut().zip(transpose(frames)) {
                    _mm256_storeu_pd(row.as_mut_ptr().add(t), v);
                }
            }
        }
        super::lanes_to_rows_scalar(src, stride, rows, len, blocks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernels() -> Vec<Kernel> {
        [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    #[test]
    fn rows_become_frames_and_frames_rows_for_every_shape_and_kernel() {
        for kernel in kernels() {
            for nch in [1, 3, 4, 5, 8, 9, 64] {
                for len in [1, 3, 4, 5, 31, 32, 33] {
                    let rows: Vec<Vec<f64>> = (0..nch)
                        .map(|c| (0..len).map(|t| (c * 1000 + t) as f64).collect())
                        .collect();
                    let mut frames = vec![-1.0; len * nch];
                    rows_to_frames(kernel, nch, |c| &rows[c], &mut frames);
                    for t in 0..len {
                        for c in 0..nch {
                            assert_eq!(frames[t * nch + c], (c * 1000 + t) as f64, "{kernel:?}");
                        }
                    }
                    let mut back = vec![vec![0.0; len]; nch];
                    frames_to_rows(kernel, &frames, nch, back.iter_mut().map(Vec::as_mut_slice));
                    assert_eq!(back, rows, "{kernel:?}, {nch} channels, {len} frames");
                }
            }
        }
    }

    #[test]
    fn lanes_leave_the_values_between_them_untouched() {
        for kernel in kernels() {
            for len in [1, 4, 5, 33] {
                let rows: Vec<Vec<f64>> = (0..4).map(|k| vec![k as f64; len]).collect();
                let stride = 6;
                let mut frames = vec![-1.0; (len - 1) * stride + 4];
                rows_to_lanes(
                    kernel,
                    [&rows[0], &rows[1], &rows[2], &rows[3]],
                    &mut frames,
                    stride,
                );
                for (i, v) in frames.iter().enumerate() {
                    let want = if i % stride < 4 {
                        (i % stride) as f64
                    } else {
                        -1.0
                    };
                    assert_eq!(*v, want, "{kernel:?}, {len} frames, value {i}");
                }
            }
        }
    }
}
