//! Streaming guarantees: any chunking of a stream, and any kernel, gives bit-identical output.

use eeg_dsp::{FilterBank, Kernel, ProcessingConfig, SessionProcessor, Window};
use proptest::prelude::*;

mod common;
use common::{fingerprint, signal};

const FS: f64 = 250.0;

fn run_chunks(
    config: &ProcessingConfig,
    nch: usize,
    data: &[f64],
    chunks: &[usize],
    kernel: Kernel,
) -> Vec<Vec<u64>> {
    let mut p = SessionProcessor::with_kernel(config, FS, nch, 1_700_000_000_000, kernel).unwrap();
    let mut out = Vec::new();
    let mut sink = |w: &Window<'_>| out.push(fingerprint(w));
    let frames = data.len() / nch;
    let (mut at, mut i) = (0, 0);
    while at < frames {
        let n = chunks[i % chunks.len()].min(frames - at);
        p.push_interleaved(&data[at * nch..(at + n) * nch], &mut sink)
            .unwrap();
        at += n;
        i += 1;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn filter_bank_output_does_not_depend_on_chunking(
        nch in 1usize..12,
        chunks in prop::collection::vec(1usize..300, 1..8),
    ) {
        let plan = ProcessingConfig::default().plan(FS).unwrap();
        let x = signal(nch, 1500, 7);
        let mut whole = x.clone();
        FilterBank::new(&plan.cascade(), nch).process(&mut whole);
        let mut bank = FilterBank::new(&plan.cascade(), nch);
        let mut pieces = x.clone();
        let (mut at, mut i) = (0, 0);
        while at < 1500 {
            let n = chunks[i % chunks.len()].min(1500 - at);
            bank.process(&mut pieces[at * nch..(at + n) * nch]);
            at += n;
            i += 1;
        }
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn windows_do_not_depend_on_chunking(
        nch in 1usize..10,
        chunks in prop::collection::vec(1usize..700, 1..6),
        hop_s in prop::sample::select(vec![1.0, 0.5, 0.3]),
    ) {
        let mut config = ProcessingConfig::default();
        config.window.hop_s = hop_s;
        let x = signal(nch, 4000, 11);
        let whole = run_chunks(&config, nch, &x, &[x.len()], Kernel::Scalar);
        prop_assert!(!whole.is_empty());
        let chunked = run_chunks(&config, nch, &x, &chunks, Kernel::Scalar);
        prop_assert_eq!(chunked, whole);
    }
}

#[test]
fn simd_processor_equals_scalar_processor() {
    let config = ProcessingConfig::default();
    for nch in [1, 5, 8, 19] {
        let x = signal(nch, 3000, 3);
        let scalar = run_chunks(&config, nch, &x, &[32], Kernel::Scalar);
        let fast = run_chunks(&config, nch, &x, &[32], Kernel::detect());
        assert_eq!(
            fast,
            scalar,
            "{nch} channels, kernel {:?}",
            Kernel::detect()
        );
    }
}

#[test]
fn channel_major_and_row_input_equal_interleaved_input_for_every_kernel() {
    // Channel counts with and without a remainder after blocks of four channels; chunks
    // that do not divide a block of four frames. The row layouts are transposed by the
    // kernel's own code path, which must change no value.
    let frames = 2500;
    let config = ProcessingConfig::default();
    let kernels = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];
    for nch in [1, 3, 4, 9, 19] {
        let x = signal(nch, frames, 5);
        let want = run_chunks(&config, nch, &x, &[frames], Kernel::Scalar);
        let rows: Vec<Vec<f64>> = (0..nch)
            .map(|c| x.iter().skip(c).step_by(nch).copied().collect())
            .collect();
        let flat: Vec<f64> = rows.concat();
        for kernel in kernels.into_iter().filter(|k| k.is_supported()) {
            let what = format!("{nch} channels, {kernel:?}");
            let new = || {
                SessionProcessor::with_kernel(&config, FS, nch, 1_700_000_000_000, kernel).unwrap()
            };
            let mut got = Vec::new();
            new()
                .push_channel_major(&flat, frames, &mut |w: &Window<'_>| {
                    got.push(fingerprint(w))
                })
                .unwrap();
            assert_eq!(got, want, "push_channel_major, {what}");

            let mut p = new();
            let mut got = Vec::new();
            let mut at = 0;
            for n in [7, 250, 33, 1000].into_iter().cycle() {
                if at == frames {
                    break;
                }
                let n = n.min(frames - at);
                let chunk: Vec<&[f64]> = rows.iter().map(|r| &r[at..at + n]).collect();
                p.push_rows(&chunk, &mut |w: &Window<'_>| got.push(fingerprint(w)))
                    .unwrap();
                at += n;
            }
            assert_eq!(got, want, "push_rows in chunks, {what}");
        }
    }
}

#[test]
fn reset_restarts_the_signal_state_but_not_the_window_numbering() {
    let nch = 2;
    let x = signal(nch, 2000, 9);
    let config = ProcessingConfig::default();
    let mut p = SessionProcessor::new(&config, FS, nch, 0).unwrap();
    let mut first = Vec::new();
    p.push_interleaved(&x, &mut |w: &Window<'_>| first.push(fingerprint(w)))
        .unwrap();
    p.reset(0);
    let mut second = Vec::new();
    p.push_interleaved(&x, &mut |w: &Window<'_>| second.push(fingerprint(w)))
        .unwrap();
    assert_eq!(first.len(), second.len());
    let n = first.len() as u64;
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        assert_eq!(b[0], a[0] + n, "window {i} index continues after the reset");
        assert_eq!(a[1..], b[1..], "window {i} numbers after the reset");
    }
}

#[test]
fn windows_carry_the_sample_clock() {
    let nch = 1;
    let x = signal(nch, 250 * 7, 1);
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), FS, nch, 1_000).unwrap();
    let mut times = Vec::new();
    p.push_interleaved(&x, &mut |w: &Window<'_>| {
        times.push((w.index, w.start_ms, w.end_ms))
    })
    .unwrap();
    // 4 s windows every 1 s over 7 s of signal: windows 0..=3.
    assert_eq!(
        times,
        vec![
            (0, 1_000, 5_000),
            (1, 2_000, 6_000),
            (2, 3_000, 7_000),
            (3, 4_000, 8_000)
        ]
    );
}

#[test]
fn owned_window_is_an_exact_copy() {
    let nch = 4;
    let x = signal(nch, 1500, 2);
    let mut p = SessionProcessor::new(&ProcessingConfig::default(), FS, nch, 5).unwrap();
    let mut copy = eeg_dsp::OwnedWindow::default();
    let mut pairs = Vec::new();
    p.push_interleaved(&x, &mut |w: &Window<'_>| {
        copy.copy_from(w);
        pairs.push((fingerprint(w), fingerprint(&copy.view())));
    })
    .unwrap();
    assert!(!pairs.is_empty());
    for (a, b) in pairs {
        assert_eq!(a, b);
    }
}

#[test]
fn windows_of_channel_subsets_join_into_the_whole() {
    let nch = 11;
    let x = signal(nch, 2000, 4);
    let config = ProcessingConfig::default();
    let whole = run_chunks(&config, nch, &x, &[64], Kernel::detect());
    // The same signal as two sessions of 5 and 6 channels.
    let split = |lo: usize, hi: usize| -> Vec<f64> {
        x.chunks_exact(nch)
            .flat_map(|f| f[lo..hi].to_vec())
            .collect()
    };
    let mut parts: Vec<Vec<eeg_dsp::OwnedWindow>> = Vec::new();
    for (lo, hi) in [(0, 5), (5, 11)] {
        let mut p = SessionProcessor::new(&config, FS, hi - lo, 1_700_000_000_000).unwrap();
        let mut out = Vec::new();
        p.push_interleaved(&split(lo, hi), &mut |w: &Window<'_>| {
            let mut o = eeg_dsp::OwnedWindow::default();
            o.copy_from(w);
            out.push(o);
        })
        .unwrap();
        parts.push(out);
    }
    assert_eq!(parts[0].len(), whole.len());
    let mut joined = eeg_dsp::OwnedWindow::default();
    for (k, want) in whole.iter().enumerate() {
        assert!(joined.join(&[parts[0][k].clone(), parts[1][k].clone()]));
        assert_eq!(&fingerprint(&joined.view()), want, "window {k}");
    }
    assert!(
        !joined.join(&[parts[0][0].clone(), parts[1][1].clone()]),
        "different windows"
    );
}

/// What a consumer does with checkpoints: one before every chunk, kept from the chunk that
/// holds the next window's first sample. Restoring that one and re-feeding from its chunk
/// must give exactly the windows an uninterrupted run gives from there on.
fn crash_and_restore(
    config: &ProcessingConfig,
    nch: usize,
    data: &[f64],
    chunks: &[usize],
    crash_after: usize,
) -> (Vec<Vec<u64>>, Vec<Vec<u64>>) {
    let frames = data.len() / nch;
    let mut bounds = vec![0];
    let mut i = 0;
    while bounds[bounds.len() - 1] < frames {
        let at = *bounds.last().unwrap();
        bounds.push(at + chunks[i % chunks.len()].min(frames - at));
        i += 1;
    }
    let crash_after = crash_after % (bounds.len() - 1);
    let mut p =
        SessionProcessor::with_kernel(config, FS, nch, 1_700_000_000_000, Kernel::Scalar).unwrap();
    let mut out = Vec::new();
    let mut kept: Vec<(usize, eeg_dsp::Checkpoint)> = Vec::new();
    for k in 0..=crash_after {
        let mut cp = eeg_dsp::Checkpoint::default();
        p.checkpoint_into(&mut cp);
        kept.push((k, cp));
        let (a, b) = (bounds[k], bounds[k + 1]);
        p.push_interleaved(&data[a * nch..b * nch], &mut |w: &Window<'_>| {
            out.push(fingerprint(w))
        })
        .unwrap();
        let next = p.next_window_start();
        while kept.len() > 1 && kept[1].1.position <= next {
            kept.remove(0);
        }
    }
    let emitted = out.len();
    // The process dies here; everything after the kept checkpoint is fed again.
    let (k0, mut cp) = kept.swap_remove(0);
    cp.next_window = p.windows_since_start();
    let mut q = SessionProcessor::restore(config, FS, nch, &cp).unwrap();
    let mut resumed = out;
    for k in k0..bounds.len() - 1 {
        let (a, b) = (bounds[k], bounds[k + 1]);
        q.push_interleaved(&data[a * nch..b * nch], &mut |w: &Window<'_>| {
            resumed.push(fingerprint(w))
        })
        .unwrap();
    }
    let whole = run_chunks(config, nch, data, chunks, Kernel::Scalar);
    assert!(emitted <= whole.len());
    (resumed, whole)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn a_restored_checkpoint_continues_bit_for_bit(
        nch in 1usize..6,
        chunks in prop::collection::vec(1usize..400, 1..5),
        crash_after in 0usize..200,
        hop_s in prop::sample::select(vec![1.0, 0.3]),
    ) {
        let mut config = ProcessingConfig::default();
        config.window.hop_s = hop_s;
        let x = signal(nch, 3000, 13);
        let (resumed, whole) = crash_and_restore(&config, nch, &x, &chunks, crash_after);
        prop_assert!(!whole.is_empty());
        prop_assert_eq!(resumed, whole);
    }
}

#[test]
fn a_checkpoint_past_the_next_window_is_refused() {
    let config = ProcessingConfig::default();
    let mut p = SessionProcessor::new(&config, FS, 2, 0).unwrap();
    p.push_interleaved(&signal(2, 100, 1), &mut |_: &Window<'_>| {})
        .unwrap();
    let mut cp = eeg_dsp::Checkpoint::default();
    p.checkpoint_into(&mut cp);
    // Window 0 starts at sample 0, which a processor restored at sample 100 never sees.
    let err = SessionProcessor::restore(&config, FS, 2, &cp).unwrap_err();
    assert!(err.to_string().contains("past the next window"), "{err}");
    cp.position = 0;
    cp.filter.pop();
    let err = SessionProcessor::restore(&config, FS, 2, &cp).unwrap_err();
    assert!(err.to_string().contains("filter values"), "{err}");
}

/// A session's memory follows the samples that arrived: little before any, the ring's
/// growth with the first ones, and exactly the declared maximum (what limits and budgets
/// count) once a window is in, at ordinary and odd rates alike.
#[test]
fn session_state_follows_the_data_up_to_its_declared_maximum() {
    for (fs, nch, length_s) in [
        (256.0, 1, 4.0),
        (256.0, 8, 4.0),
        (256.0, 64, 4.0),
        (256.0, 8, 30.0),
        (256.3, 8, 4.0),
        (166_666.67, 11, 4.0),
    ] {
        let case = format!("{fs} Hz, {nch} ch, {length_s} s");
        let mut config = ProcessingConfig::default();
        config.window.length_s = length_s;
        config.limits.max_sample_rate_hz = 200_000.0;
        config.limits.max_fft_len = 1 << 20;
        let mut p = SessionProcessor::new(&config, fs, nch, 0).unwrap();
        let l = p.plan().window_len;
        let max = SessionProcessor::max_state_bytes(p.plan(), nch) as usize;
        // The ring alone is 8 bytes per sample of a window per channel.
        let ring = l * nch * 8;
        assert!(max >= ring, "{case}: {max} bytes");
        assert!(max <= 4 * ring + (64 << 10), "{case}: {max} bytes");
        // Before any sample: two work pieces and per-channel bookkeeping (statistics and
        // Welch results per hop of a window), no ring, no Welch buffers.
        let empty = p.state_bytes();
        let hops = l / p.plan().hop + 2;
        assert!(empty + ring <= max, "{case}: {empty} bytes empty");
        assert!(
            empty <= (32 << 10) + nch * hops * 200,
            "{case}: {empty} bytes empty"
        );
        // Ten samples: ten samples' worth of ring.
        p.push_interleaved(&signal(nch, 10, 3), &mut |_: &Window<'_>| {})
            .unwrap();
        assert_eq!(p.state_bytes(), empty + 10 * nch * 8, "{case}");
        let mut windows = 0;
        p.push_interleaved(&signal(nch, l, 4), &mut |_: &Window<'_>| windows += 1)
            .unwrap();
        assert_eq!(windows, 1, "{case}");
        // Exactly the declared maximum, but for the FFT scratch it counts at its bound.
        let full = p.state_bytes();
        assert!(full <= max, "{case}: {full} > {max}");
        let nperseg = p.plan().nperseg;
        let len = if nperseg.is_multiple_of(2) {
            nperseg / 2
        } else {
            nperseg
        };
        let unused = (eeg_dsp::welch::FFT_SCRATCH_BOUND * len)
            .checked_mul(16)
            .unwrap();
        assert!(max - full <= unused, "{case}: {full} < {max}");
    }
}
