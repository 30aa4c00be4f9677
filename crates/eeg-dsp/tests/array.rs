//! The ndarray entry points give the slice API's numbers bit for bit, for arrays in any
//! memory order and any chunking, and refuse a block of the wrong shape without panicking.

use eeg_dsp::ndarray::{Array2, ArrayView2, Axis, ShapeBuilder, s};
use eeg_dsp::{
    ConfigError, Kernel, ProcessingConfig, SessionProcessor, ShapeError, Window, band_powers,
};

mod common;
use common::{fingerprint, signal};

const FS: f64 = 250.0;

fn processor(config: &ProcessingConfig, nch: usize, kernel: Kernel) -> SessionProcessor {
    SessionProcessor::with_kernel(config, FS, nch, 1_700_000_000_000, kernel).unwrap()
}

/// The windows of the slice API: the interleaved samples pushed in one call.
fn reference(config: &ProcessingConfig, nch: usize, x: &[f64], kernel: Kernel) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    processor(config, nch, kernel)
        .push_interleaved(x, &mut |w: &Window<'_>| out.push(fingerprint(w)))
        .unwrap();
    out
}

/// The windows of `view` pushed with `push_array` in chunks of the given lengths, cycling.
fn pushed(
    config: &ProcessingConfig,
    view: ArrayView2<'_, f64>,
    chunks: &[usize],
    kernel: Kernel,
) -> Vec<Vec<u64>> {
    let (nch, frames) = view.dim();
    let mut p = processor(config, nch, kernel);
    let mut out = Vec::new();
    let mut at = 0;
    for n in chunks.iter().cycle() {
        if at == frames {
            break;
        }
        let n = (*n).min(frames - at);
        p.push_array(view.slice(s![.., at..at + n]), &mut |w: &Window<'_>| {
            out.push(fingerprint(w))
        })
        .unwrap();
        at += n;
    }
    out
}

/// The interleaved samples `x` as (channels, samples) arrays in different memory orders,
/// each named, with the strides that make it that order.
fn layouts(x: &[f64], nch: usize) -> Vec<(&'static str, Array2<f64>, ArrayLayout)> {
    let frames = x.len() / nch;
    let at = |c: usize, t: usize| x[t * nch + c];
    let c_order = Array2::from_shape_fn((nch, frames), |(c, t)| at(c, t));
    let f_order = Array2::from_shape_fn((nch, frames).f(), |(c, t)| at(c, t));
    // Samples × channels in C order, to be viewed transposed.
    let samples_by_channels = Array2::from_shape_fn((frames, nch), |(t, c)| at(c, t));
    // Every other channel and every third sample of a larger array, starting at (1, 0).
    let strided = Array2::from_shape_fn((2 * nch + 1, 3 * frames), |(r, u)| {
        if r % 2 == 1 && u % 3 == 0 {
            at(r / 2, u / 3)
        } else {
            f64::NAN
        }
    });
    // Samples stored last to first, to be viewed with a negative stride.
    let reversed = Array2::from_shape_fn((nch, frames), |(c, u)| at(c, frames - 1 - u));
    // Fortran order with a channel before and after those viewed.
    let f_wide = Array2::from_shape_fn((nch + 2, frames).f(), |(r, t)| {
        if r >= 1 && r <= nch {
            at(r - 1, t)
        } else {
            f64::NAN
        }
    });
    vec![
        ("C order", c_order, ArrayLayout::Whole),
        ("Fortran order", f_order, ArrayLayout::Whole),
        ("transposed", samples_by_channels, ArrayLayout::Transposed),
        ("strided", strided, ArrayLayout::Strided),
        ("reversed samples", reversed, ArrayLayout::Reversed),
        (
            "Fortran, inner channels",
            f_wide,
            ArrayLayout::InnerChannels,
        ),
    ]
}

/// How to view an array made by `layouts` as the (channels, samples) signal.
#[derive(Clone, Copy)]
enum ArrayLayout {
    Whole,
    Transposed,
    Strided,
    Reversed,
    InnerChannels,
}

fn view(a: &Array2<f64>, how: ArrayLayout) -> ArrayView2<'_, f64> {
    match how {
        ArrayLayout::Whole => a.view(),
        ArrayLayout::Transposed => a.t(),
        ArrayLayout::Strided => a.slice(s![1..;2, ..;3]),
        ArrayLayout::Reversed => a.slice(s![.., ..;-1]),
        ArrayLayout::InnerChannels => a.slice(s![1..a.nrows() - 1, ..]),
    }
}

fn kernels() -> Vec<Kernel> {
    [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512]
        .into_iter()
        .filter(|k| k.is_supported())
        .collect()
}

#[test]
fn arrays_in_every_memory_order_and_chunking_give_the_slice_api_windows() {
    let config = ProcessingConfig::default();
    let frames = 2000;
    // Channel counts with and without a remainder after blocks of four channels (the
    // transposing copy's unit).
    for nch in [1, 3, 4, 9] {
        let x = signal(nch, frames, nch as u64);
        for kernel in kernels() {
            let want = reference(&config, nch, &x, kernel);
            assert_eq!(want.len(), 5, "windows of {frames} samples");
            for (name, array, how) in layouts(&x, nch) {
                let v = view(&array, how);
                assert_eq!(v.dim(), (nch, frames), "{name}");
                for chunks in [&[frames][..], &[1], &[7, 250, 33, 1000], &[64]] {
                    let got = pushed(&config, v, chunks, kernel);
                    assert!(
                        got == want,
                        "{name}, {nch} channels, {kernel:?}, chunks {chunks:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_layouts_tested_take_each_copy_path() {
    // C rows (unit sample stride), whole frames (unit channel stride, frames adjacent) and
    // neither: each path of `push_array` is exercised by some layout above.
    let nch = 3;
    let x = signal(nch, 10, 1);
    let strides: Vec<(&str, Vec<isize>)> = layouts(&x, nch)
        .iter()
        .map(|(name, a, how)| (*name, view(a, *how).strides().to_vec()))
        .collect();
    let of = |n: &str| {
        strides
            .iter()
            .find(|(name, _)| *name == n)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(of("C order"), [10, 1]);
    assert_eq!(of("Fortran order"), [1, 3]);
    assert_eq!(of("transposed"), [1, 3]);
    assert_eq!(of("strided"), [60, 3]);
    assert_eq!(of("reversed samples"), [10, -1]);
    assert_eq!(of("Fortran, inner channels"), [1, 5]);
}

#[test]
fn window_arrays_hold_the_windows_per_channel_values() {
    // Three channels and five bands: a swapped shape or a transposed layout shows.
    let (config, nch) = (ProcessingConfig::default(), 3);
    let x = signal(nch, 2000, 21);
    let mut p = processor(&config, nch, Kernel::detect());
    let mut seen = 0;
    p.push_interleaved(&x, &mut |w: &Window<'_>| {
        seen += 1;
        let nb = w.bands.len();
        let (power, relative, owned) = (
            w.band_power_view(),
            w.relative_power_view(),
            w.band_power_array(),
        );
        assert_eq!(
            (power.dim(), relative.dim(), owned.dim()),
            ((3, 5), (3, 5), (3, 5))
        );
        for c in 0..nch {
            for b in 0..nb {
                let want = w.band_power(c)[b].to_bits();
                assert_eq!(power[[c, b]].to_bits(), want, "window {}", w.index);
                assert_eq!(owned[[c, b]].to_bits(), want, "window {}", w.index);
                let want = w.relative_power(c)[b].to_bits();
                assert_eq!(relative[[c, b]].to_bits(), want, "window {}", w.index);
            }
        }
    })
    .unwrap();
    assert_eq!(seen, 5);
}

#[test]
fn band_powers_of_a_recording_equal_the_streamed_windows() {
    // A hop that does not divide the window and three bands, so that no axis length
    // equals another.
    let mut config = ProcessingConfig::default();
    config.window.hop_s = 0.3;
    config.bands.truncate(3);
    let (nch, frames) = (4, 2300);
    let x = signal(nch, frames, 33);
    let mut want = Vec::new();
    processor(&config, nch, Kernel::detect())
        .push_interleaved(&x, &mut |w: &Window<'_>| {
            let rows = |f: &dyn Fn(usize) -> Vec<f64>| (0..nch).map(f).collect::<Vec<_>>();
            want.push((
                rows(&|c| w.band_power(c).to_vec()),
                rows(&|c| w.relative_power(c).to_vec()),
                w.start_sample,
                w.settling,
            ))
        })
        .unwrap();
    // (2300 - 1000) / 75 + 1 windows, some of them settling.
    assert_eq!(want.len(), 18);
    assert!(want.iter().any(|w| w.3) && want.iter().any(|w| !w.3));

    for (name, array, how) in layouts(&x, nch) {
        let bp = band_powers(view(&array, how), FS, &config).unwrap();
        assert_eq!(bp.power.dim(), (18, nch, 3), "{name}");
        assert_eq!(bp.relative.dim(), (18, nch, 3), "{name}");
        assert_eq!(bp.bands, config.bands, "{name}");
        for (k, (power, relative, start, settling)) in want.iter().enumerate() {
            assert_eq!(bp.start_sample[k], *start, "{name}, window {k}");
            assert_eq!(bp.settling[k], *settling, "{name}, window {k}");
            for c in 0..nch {
                for b in 0..3 {
                    let at = [k, c, b];
                    assert_eq!(
                        bp.power[at].to_bits(),
                        power[c][b].to_bits(),
                        "{name} {at:?}"
                    );
                    let (got, want) = (bp.relative[at], relative[c][b]);
                    assert_eq!(got.to_bits(), want.to_bits(), "{name} {at:?}");
                }
            }
        }
        assert_eq!(bp.start_sample.len(), 18, "{name}");
        assert_eq!(bp.settling.len(), 18, "{name}");
    }
}

#[test]
fn a_recording_shorter_than_a_window_has_no_windows_and_one_window_long_has_one() {
    let config = ProcessingConfig::default();
    let window_len = config.plan(FS).unwrap().window_len;
    let x = Array2::from_shape_fn((2, window_len), |(c, t)| ((c + 1) * t) as f64);
    let short = band_powers(x.slice(s![.., ..window_len - 1]), FS, &config).unwrap();
    assert_eq!(short.power.dim(), (0, 2, 5));
    assert_eq!(short.relative.dim(), (0, 2, 5));
    assert!(short.start_sample.is_empty() && short.settling.is_empty());
    let one = band_powers(x.view(), FS, &config).unwrap();
    assert_eq!(one.power.dim(), (1, 2, 5));
    assert_eq!(one.start_sample, [0]);
}

#[test]
fn a_block_with_another_channel_count_is_refused_and_changes_nothing() {
    let (config, nch, frames) = (ProcessingConfig::default(), 3, 1500);
    let x = signal(nch, frames, 8);
    let want = reference(&config, nch, &x, Kernel::detect());
    let good = Array2::from_shape_fn((nch, frames), |(c, t)| x[t * nch + c]);
    let mut p = processor(&config, nch, Kernel::detect());
    let mut got = Vec::new();
    for wrong in [0, 1, 2, 4, 7] {
        let block = Array2::<f64>::ones((wrong, 100));
        let err = p
            .push_array(block.view(), &mut |w: &Window<'_>| got.push(fingerprint(w)))
            .unwrap_err();
        let expected = ShapeError {
            len: wrong * 100,
            channels: nch,
            per_channel: 100,
        };
        assert_eq!(err, expected, "{wrong} channels");
        assert_eq!(p.samples_seen(), 0, "{wrong} channels");
    }
    // A transposed block (samples × channels) is refused too.
    assert!(p.push_array(good.t(), &mut |_: &Window<'_>| ()).is_err());
    // An empty block of the right shape takes nothing and completes nothing.
    let empty = good.slice(s![.., ..0]);
    p.push_array(empty, &mut |w: &Window<'_>| got.push(fingerprint(w)))
        .unwrap();
    assert_eq!(p.samples_seen(), 0);
    assert!(got.is_empty());
    // The refused blocks left the processor as new.
    p.push_array(good.view(), &mut |w: &Window<'_>| got.push(fingerprint(w)))
        .unwrap();
    assert_eq!(got, want);
}

#[test]
fn band_powers_reports_a_recording_or_config_it_cannot_use() {
    let config = ProcessingConfig::default();
    let none = Array2::<f64>::zeros((0, 3000));
    let err = band_powers(none.view(), FS, &config).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "channels"),
        "{err}"
    );
    let x = Array2::<f64>::zeros((2, 3000));
    for fs in [0.0, -250.0, f64::NAN, 64.0] {
        assert!(band_powers(x.view(), fs, &config).is_err(), "{fs} Hz");
    }
}

#[test]
fn axis_chunks_of_a_recording_stream_as_one_call() {
    // The pattern the module docs show: a C-order recording pushed one second at a time.
    let (config, nch, frames) = (ProcessingConfig::default(), 5, 2600);
    let x = signal(nch, frames, 2);
    let want = reference(&config, nch, &x, Kernel::detect());
    let a = Array2::from_shape_fn((nch, frames), |(c, t)| x[t * nch + c]);
    let mut p = processor(&config, nch, Kernel::detect());
    let mut got = Vec::new();
    for block in a.axis_chunks_iter(Axis(1), 250) {
        p.push_array(block, &mut |w: &Window<'_>| got.push(fingerprint(w)))
            .unwrap();
    }
    assert_eq!(got.len(), 7);
    assert_eq!(got, want);
}
