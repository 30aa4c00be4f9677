#!/usr/bin/env python3
"""Generate the SciPy reference vectors under fixtures/reference/.

Run from the repository root:

    python3 scripts/reference/gen_reference.py

It rewrites every file of fixtures/reference/ (filters.json, welch.json,
test_subsecond.json). The output is deterministic: every random signal comes
from numpy.random.default_rng with a fixed seed, and the raw inputs are rounded
to 6 decimals before they are processed, so the stored inputs are exactly the
values the references were computed from.

The processing definition (docs/processing.md) is implemented by `design_chain`,
`filter_channels` and `window_band_powers` below.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys

import numpy as np
import scipy
import scipy.integrate
import scipy.signal

try:
    import pyedflib
except ImportError:  # pragma: no cover - reported in main()
    pyedflib = None

GENERATOR = "scripts/reference/gen_reference.py"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_DIR = os.path.join(REPO_ROOT, "fixtures", "reference")
EDF_PATH = "fixtures/test_subsecond.edf"

DEFAULT_BANDS = [
    ["delta", 1.0, 4.0],
    ["theta", 4.0, 8.0],
    ["alpha", 8.0, 13.0],
    ["beta", 13.0, 30.0],
    ["gamma", 30.0, 45.0],
]

DEFAULT_CONFIG = {
    "mains_hz": 50.0,
    "notch_q": 30.0,
    "bandpass_hz": [1.0, 45.0],
    "bandpass_order": 4,
    "length_s": 4.0,
    "hop_s": 1.0,
    "welch_segment_s": 2.0,
    "bands": DEFAULT_BANDS,
}

INPUT_DECIMALS = 6


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def versions() -> dict:
    return {"generator": GENERATOR, "scipy": scipy.__version__, "numpy": np.__version__}


def to_list(a) -> list:
    """numpy array -> nested lists of Python floats, refusing NaN/Infinity."""
    arr = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("non-finite value in reference output")
    return arr.tolist()


def check_finite(obj, where="root"):
    """Walk a JSON-ready structure and fail on any non-finite float."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"non-finite float at {where}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            check_finite(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite(v, f"{where}[{i}]")


def write_json(name: str, obj: dict) -> str:
    check_finite(obj)
    path = os.path.join(OUT_DIR, name)
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    # Round-trip check: what is stored parses back to the same values.
    assert json.loads(text) == obj
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.write("\n")
    return path


def round_input(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64), INPUT_DECIMALS)


# ---------------------------------------------------------------------------
# Filter design (the processing definition)
# ---------------------------------------------------------------------------

def notch_sos(w0_hz: float, q: float, fs: float) -> np.ndarray:
    """iirnotch as one SOS row [b0, b1, b2, 1, a1, a2]."""
    b, a = scipy.signal.iirnotch(w0_hz, q, fs)
    if a[0] != 1.0:
        raise AssertionError(f"iirnotch returned a[0] = {a[0]!r}, expected exactly 1")
    return np.concatenate([b, a]).reshape(1, 6)


def butter_sos(btype: str, order: int, cutoff_hz: list, fs: float) -> np.ndarray:
    wn = cutoff_hz[0] if len(cutoff_hz) == 1 else list(cutoff_hz)
    return scipy.signal.butter(order, wn, btype, fs=fs, output="sos")


def design_chain(fs: float, mains_hz: float, notch_q: float, bandpass_hz, order: int) -> np.ndarray:
    """Notch (skipped when mains is 0 or at/above Nyquist) followed by the band-pass."""
    bp = butter_sos("bandpass", order, list(bandpass_hz), fs)
    if mains_hz == 0 or mains_hz >= fs / 2:
        return bp
    return np.vstack([notch_sos(mains_hz, notch_q, fs), bp])


def filter_channels(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Filter each channel (rows of x) from zero state over the whole signal."""
    return np.vstack([scipy.signal.sosfilt(sos, ch) for ch in x])


def band_power(f: np.ndarray, psd: np.ndarray, lo: float, hi: float) -> float:
    m = (f >= lo) & (f <= hi)
    return float(scipy.integrate.trapezoid(psd[m], f[m]))


def window_geometry(cfg: dict, fs: float):
    L = round(cfg["length_s"] * fs)
    H = round(cfg["hop_s"] * fs)
    nperseg = round(cfg["welch_segment_s"] * fs)
    return L, H, nperseg


def window_band_powers(y: np.ndarray, fs: float, cfg: dict):
    """Yield (k, start, band_power[ch][band], total_power[ch]) for every full window."""
    L, H, nperseg = window_geometry(cfg, fs)
    n = y.shape[1]
    lo_bp, hi_bp = cfg["bandpass_hz"]
    k = 0
    while k * H + L <= n:
        start = k * H
        bp_rows, totals = [], []
        for ch in y:
            win = ch[start:start + L]
            f, psd = scipy.signal.welch(win, fs, nperseg=nperseg)
            bp_rows.append([band_power(f, psd, lo, hi) for _, lo, hi in cfg["bands"]])
            totals.append(band_power(f, psd, lo_bp, hi_bp))
        yield k, start, bp_rows, totals
        k += 1


def process(x: np.ndarray, fs: float, cfg: dict):
    sos = design_chain(fs, cfg["mains_hz"], cfg["notch_q"], cfg["bandpass_hz"], cfg["bandpass_order"])
    y = filter_channels(sos, x)
    return sos, y, list(window_band_powers(y, fs, cfg))


# ---------------------------------------------------------------------------
# File 1: filters.json
# ---------------------------------------------------------------------------

FILTER_SIGNAL_SPECS = {
    # name: (fs, seed, [(freq_hz, amp_ch0, amp_ch1), ...])
    "fs250": (250.0, 250, [(2.0, 40.0, 25.0), (10.0, 20.0, 30.0), (50.0, 15.0, 10.0), (80.0, 5.0, 8.0)]),
    "fs1000": (1000.0, 1000, [(2.0, 40.0, 25.0), (10.0, 20.0, 30.0), (60.0, 15.0, 12.0), (150.0, 6.0, 8.0)]),
    "fs128": (128.0, 128, [(1.5, 40.0, 25.0), (10.0, 20.0, 30.0), (50.0, 15.0, 10.0)]),
}
FILTER_N = 2000
DC_OFFSETS = (300.0, -150.0)
STEP_AT = 1000
STEP_SIZE = 80.0


def make_filter_signal(fs: float, seed: int, tones) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(FILTER_N) / fs
    x = np.zeros((2, FILTER_N))
    for ch in range(2):
        phase = rng.uniform(0, 2 * np.pi, size=len(tones))
        for (freq, a0, a1), ph in zip(tones, phase):
            amp = a0 if ch == 0 else a1
            x[ch] += amp * np.sin(2 * np.pi * freq * t + ph)
        x[ch] += DC_OFFSETS[ch]
        x[ch] += rng.normal(0.0, 5.0, size=FILTER_N)
    x[1, STEP_AT:] += STEP_SIZE  # a step on channel 1 to exercise transients
    return round_input(x)


def butter_case(btype, order, cutoff, sig):
    tag = "_".join(f"{c:g}".replace(".", "p") for c in cutoff)
    return {
        "name": f"butter_{btype}_o{order}_{tag}hz_{sig}",
        "signal": sig,
        "design": {"kind": "butter", "btype": btype, "order": order, "cutoff_hz": [float(c) for c in cutoff]},
    }


def filter_case_list():
    cases = []
    # Low-pass: orders 1, 2, 3, 4, 8.
    for order in (1, 2, 3, 4, 8):
        cases.append(butter_case("lowpass", order, [30.0], "fs250"))
    cases.append(butter_case("lowpass", 4, [40.0], "fs1000"))
    # High-pass: orders 1, 2, 4, 5, 8; low cut-off/fs ratios at 1000 Hz.
    cases.append(butter_case("highpass", 1, [0.5], "fs250"))
    cases.append(butter_case("highpass", 2, [1.0], "fs250"))
    cases.append(butter_case("highpass", 4, [1.0], "fs250"))
    cases.append(butter_case("highpass", 5, [30.0], "fs250"))
    cases.append(butter_case("highpass", 8, [30.0], "fs250"))
    cases.append(butter_case("highpass", 4, [0.5], "fs1000"))
    cases.append(butter_case("highpass", 8, [1.0], "fs1000"))
    # Band-pass: orders 1, 2, 4, 8.
    cases.append(butter_case("bandpass", 1, [1.0, 45.0], "fs250"))
    cases.append(butter_case("bandpass", 2, [1.0, 45.0], "fs250"))
    cases.append(butter_case("bandpass", 4, [1.0, 45.0], "fs250"))
    cases.append(butter_case("bandpass", 8, [1.0, 45.0], "fs250"))
    cases.append(butter_case("bandpass", 8, [8.0, 13.0], "fs250"))
    cases.append(butter_case("bandpass", 8, [1.0, 45.0], "fs1000"))
    cases.append(butter_case("bandpass", 4, [1.0, 45.0], "fs128"))
    # Band-stop: orders 1, 2, 4, 8.
    for order in (1, 2, 4, 8):
        cases.append(butter_case("bandstop", order, [48.0, 52.0], "fs250"))
    cases.append(butter_case("bandstop", 4, [58.0, 62.0], "fs1000"))
    # Notches.
    for w0, q, sig in ((50.0, 30.0, "fs250"), (60.0, 30.0, "fs1000"), (50.0, 10.0, "fs1000")):
        cases.append({
            "name": f"notch_{w0:g}hz_q{q:g}_{sig}",
            "signal": sig,
            "design": {"kind": "notch", "w0_hz": w0, "q": q},
        })
    # The default cascade (notch + band-pass) and variants.
    for mains, q, bp, order, sig, name in (
        (50.0, 30.0, [1.0, 45.0], 4, "fs250", "chain_default_fs250"),
        (50.0, 30.0, [1.0, 45.0], 4, "fs1000", "chain_default_fs1000"),
        (50.0, 30.0, [1.0, 45.0], 4, "fs128", "chain_default_fs128"),
        (60.0, 30.0, [1.0, 45.0], 4, "fs250", "chain_mains60_fs250"),
        (60.0, 25.0, [0.5, 40.0], 2, "fs1000", "chain_mains60_q25_o2_fs1000"),
    ):
        cases.append({
            "name": name,
            "signal": sig,
            "design": {"kind": "chain", "mains_hz": mains, "notch_q": q, "bandpass_hz": bp, "order": order},
        })
    return cases


def design_sos(design: dict, fs: float) -> np.ndarray:
    kind = design["kind"]
    if kind == "butter":
        return butter_sos(design["btype"], design["order"], design["cutoff_hz"], fs)
    if kind == "notch":
        return notch_sos(design["w0_hz"], design["q"], fs)
    if kind == "chain":
        return design_chain(fs, design["mains_hz"], design["notch_q"], design["bandpass_hz"], design["order"])
    raise ValueError(kind)


def gen_filters():
    signals = {}
    for name, (fs, seed, tones) in FILTER_SIGNAL_SPECS.items():
        signals[name] = {"fs": fs, "x": make_filter_signal(fs, seed, tones)}
    cases = []
    for case in filter_case_list():
        sig = signals[case["signal"]]
        fs = sig["fs"]
        sos = design_sos(case["design"], fs)
        y = filter_channels(sos, sig["x"])
        # Sanity: the filter is stable and the output is finite.
        poles = np.concatenate([np.roots(row[3:]) for row in sos])
        assert np.all(np.abs(poles) < 1.0), case["name"]
        assert np.all(np.isfinite(y)), case["name"]
        cases.append({
            "name": case["name"],
            "signal": case["signal"],
            "fs": fs,
            "design": case["design"],
            "sos": to_list(sos),
            "y": to_list(y),
        })
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    obj = dict(versions())
    obj["signals"] = {k: {"fs": v["fs"], "x": to_list(v["x"])} for k, v in signals.items()}
    obj["cases"] = cases
    return obj


# ---------------------------------------------------------------------------
# File 2: welch.json
# ---------------------------------------------------------------------------

def pink_noise(rng, n: int, fs: float, rms: float) -> np.ndarray:
    """1/f-shaped noise: white Gaussian noise shaped in the frequency domain."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    shape = np.ones_like(f)
    shape[1:] = 1.0 / np.sqrt(np.maximum(f[1:], 0.5))
    shape[0] = 0.0
    x = np.fft.irfft(spec * shape, n)
    return x * (rms / np.std(x))


def make_eeg(seed: int, n_ch: int, duration_s: float, fs: float, mains_hz: float,
             alpha_span_s=(10.0, 20.0)) -> np.ndarray:
    """EEG-like channels: pink noise + a 10 Hz alpha burst + line noise + DC offset."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * fs)
    t = np.arange(n) / fs
    a0, a1 = alpha_span_s
    # Smooth (raised-cosine edged) envelope of the alpha burst, 1 s ramps.
    env = np.clip(np.minimum(t - a0, a1 - t) + 0.5, 0.0, 1.0)
    env = 0.5 - 0.5 * np.cos(np.pi * env)
    x = np.zeros((n_ch, n))
    for ch in range(n_ch):
        x[ch] += pink_noise(rng, n, fs, rms=15.0 + 3.0 * ch)
        x[ch] += (40.0 - 5.0 * ch) * env * np.sin(2 * np.pi * 10.0 * t + rng.uniform(0, 2 * np.pi))
        if mains_hz > 0:
            x[ch] += (20.0 + 4.0 * ch) * np.sin(2 * np.pi * mains_hz * t + rng.uniform(0, 2 * np.pi))
        x[ch] += rng.normal(0.0, 2.0, size=n)
        x[ch] += (300.0, -150.0, 75.0, -40.0)[ch % 4] + 10.0 * ch
    return round_input(x)


def welch_case_list():
    custom_bands = [["low", 0.5, 8.0], ["mid", 8.0, 20.0], ["high", 20.0, 40.0]]
    return [
        # name, fs, config overrides, channels, duration, signal seed, alpha span
        ("default_fs256", 256.0, {}, 4, 30.0, 256, (10.0, 20.0)),
        ("custom_fs250", 250.0, {
            "mains_hz": 60.0, "notch_q": 25.0, "bandpass_hz": [0.5, 40.0], "bandpass_order": 2,
            "length_s": 2.0, "hop_s": 0.5, "welch_segment_s": 1.0, "bands": custom_bands,
        }, 3, 20.0, 250, (6.0, 14.0)),
        ("hop_not_multiple_fs200", 200.0, {
            "length_s": 3.0, "hop_s": 0.75, "welch_segment_s": 1.0,
        }, 2, 15.0, 200, (4.0, 11.0)),
        ("notch_off_fs128", 128.0, {"mains_hz": 0.0}, 2, 20.0, 128, (6.0, 16.0)),
    ]


def gen_welch():
    cases = []
    checks = []
    for name, fs, overrides, n_ch, dur, seed, alpha_span in welch_case_list():
        cfg = {"fs": fs}
        for key, val in DEFAULT_CONFIG.items():
            cfg[key] = overrides.get(key, val)
        cfg = {k: cfg[k] for k in ("fs", "mains_hz", "notch_q", "bandpass_hz", "bandpass_order",
                                  "length_s", "hop_s", "welch_segment_s", "bands")}
        # Line noise in the signal: at the configured mains, or 50 Hz when the notch is off.
        line_hz = cfg["mains_hz"] if cfg["mains_hz"] > 0 else 50.0
        x = make_eeg(seed, n_ch, dur, fs, line_hz, alpha_span)
        _, _, wins = process(x, fs, cfg)
        windows = [
            {"index": k, "start": start, "band_power": bp, "total_power": tot}
            for k, start, bp, tot in wins
        ]
        cases.append({"name": name, "config": cfg, "x": to_list(x), "windows": windows})
        checks.append((name, cfg, fs, alpha_span, windows))
    obj = dict(versions())
    obj["cases"] = cases
    return obj, checks


def check_alpha(checks):
    """Where a window lies inside the alpha burst, the band holding 10 Hz dominates."""
    for name, cfg, fs, (a0, a1), windows in checks:
        L, H, _ = window_geometry(cfg, fs)
        alpha_idx = next(i for i, (_, lo, hi) in enumerate(cfg["bands"]) if lo <= 10.0 < hi)
        inside = 0
        for w in windows:
            t0, t1 = w["start"] / fs, (w["start"] + L) / fs
            if t0 >= a0 + 0.5 and t1 <= a1 - 0.5:
                for ch_bp in w["band_power"]:
                    assert int(np.argmax(ch_bp)) == alpha_idx, (name, w["index"], ch_bp)
                inside += 1
        assert inside > 0, name
        print(f"  check {name}: alpha band dominates in all {inside} windows inside the burst")


# ---------------------------------------------------------------------------
# File 3: test_subsecond.json
# ---------------------------------------------------------------------------

def edf_raw_crosscheck(path: str, signal: int):
    """Decode the EDF file directly (header, first time-keeping annotation and the digital
    samples of one signal) to cross-check pyedflib's start time and physical values."""
    with open(path, "rb") as fh:
        data = fh.read()
    hdr_bytes = int(data[184:192])
    n_rec = int(data[236:244])
    ns = int(data[252:256])

    def field(offset, width):
        base = 256 + offset * ns
        return [data[base + i * width: base + (i + 1) * width].decode("ascii").strip() for i in range(ns)]

    labels = field(0, 16)
    pmin = [float(v) for v in field(104, 8)]
    pmax = [float(v) for v in field(112, 8)]
    dmin = [int(v) for v in field(120, 8)]
    dmax = [int(v) for v in field(128, 8)]
    nsamp = [int(v) for v in field(216, 8)]
    rec_size = 2 * sum(nsamp)
    # First data record's time-keeping annotation: "+<onset>\x14\x14\x00".
    ann = labels.index("EDF Annotations")
    off = hdr_bytes + 2 * sum(nsamp[:ann])
    tal = data[off: off + 2 * nsamp[ann]]
    subsecond_s = float(tal.split(b"\x14", 1)[0].decode("ascii"))
    # Digital samples of the signal, all records.
    sig_off = 2 * sum(nsamp[:signal])
    digital = np.concatenate([
        np.frombuffer(data, dtype="<i2", count=nsamp[signal], offset=hdr_bytes + r * rec_size + sig_off)
        for r in range(n_rec)
    ]).astype(np.float64)
    bitvalue = (pmax[signal] - pmin[signal]) / (dmax[signal] - dmin[signal])
    offset = pmax[signal] / bitvalue - dmax[signal]
    phys = bitvalue * (offset + digital)
    start = data[168:176].decode("ascii"), data[176:184].decode("ascii")
    return start, subsecond_s, phys


def gen_subsecond():
    path = os.path.join(REPO_ROOT, EDF_PATH)
    f = pyedflib.EdfReader(path)
    try:
        labels = f.getSignalLabels()
        assert labels[0] == "Fp1", labels
        fs = float(f.getSampleFrequency(0))
        x = np.asarray(f.readSignal(0), dtype=np.float64)
        # pyedflib keeps the sub-second start in units of 100 ns (EDFlib's
        # EDFLIB_TIME_DIMENSION = 10^7), but its getStartdatetime() divides by 100 as if
        # it were nanoseconds, which yields a sub-second part ten times too small. The
        # whole seconds are taken from getStartdatetime() and the sub-second part from
        # starttime_subsecond directly.
        whole = f.getStartdatetime().replace(microsecond=0, tzinfo=_dt.timezone.utc)
        sub_100ns = int(f.starttime_subsecond)
    finally:
        f.close()

    (hdr_date, hdr_time), tal_subsecond_s, phys = edf_raw_crosscheck(path, 0)
    dd, mm, yy = (int(v) for v in hdr_date.split("."))
    year = 1900 + yy if yy >= 85 else 2000 + yy
    hh, mi, ss = (int(v) for v in hdr_time.split("."))
    assert whole == _dt.datetime(year, mm, dd, hh, mi, ss, tzinfo=_dt.timezone.utc), (whole, hdr_date, hdr_time)
    assert abs(sub_100ns / 1e7 - tal_subsecond_s) < 1e-9, (sub_100ns, tal_subsecond_s)
    assert np.array_equal(phys, x) or np.max(np.abs(phys - x)) < 1e-9, "physical values differ"

    whole_ms = int(whole.timestamp()) * 1000
    start_unix_ms = whole_ms + round(sub_100ns / 10_000)

    cfg = dict(DEFAULT_CONFIG)
    L, H, _ = window_geometry(cfg, fs)
    xs = x.reshape(1, -1)
    _, _, wins = process(xs, fs, cfg)
    windows = []
    for k, start, bp, tot in wins:
        band = bp[0]
        total = tot[0]
        assert total > 0
        windows.append({
            "index": k,
            "start_ms": start_unix_ms + round(k * H * 1000 / fs),
            "end_ms": start_unix_ms + round((k * H + L) * 1000 / fs),
            "band_power": band,
            "total_power": total,
            "relative_power": [b / total for b in band],
        })
    obj = dict(versions())
    obj["pyedflib"] = pyedflib.__version__
    obj.update({
        "file": EDF_PATH,
        "channel": "Fp1",
        "fs": fs,
        "start_unix_ms": start_unix_ms,
        "n_samples": int(x.size),
        "first_samples": to_list(x[:16]),
        "last_samples": to_list(x[-16:]),
        "bands": cfg["bands"],
        "windows": windows,
    })
    info = {"start": whole.isoformat(), "subsecond_s": sub_100ns / 1e7}
    return obj, info


# ---------------------------------------------------------------------------

def main() -> int:
    if pyedflib is None:
        print("pyedflib is required: pip install -r scripts/reference/requirements.txt", file=sys.stderr)
        return 1
    os.makedirs(OUT_DIR, exist_ok=True)
    print(f"scipy {scipy.__version__}, numpy {np.__version__}, pyedflib {pyedflib.__version__}")

    filters = gen_filters()
    p1 = write_json("filters.json", filters)

    welch, checks = gen_welch()
    check_alpha(checks)
    p2 = write_json("welch.json", welch)

    sub, info = gen_subsecond()
    p3 = write_json("test_subsecond.json", sub)

    def size(p):
        return f"{os.path.getsize(p) / 1024:.0f} KiB"

    print(f"{os.path.relpath(p1, REPO_ROOT)}: {len(filters['signals'])} signals, "
          f"{len(filters['cases'])} filter cases, {size(p1)}")
    print(f"{os.path.relpath(p2, REPO_ROOT)}: {len(welch['cases'])} cases, "
          f"{sum(len(c['windows']) for c in welch['cases'])} windows, {size(p2)}")
    print(f"{os.path.relpath(p3, REPO_ROOT)}: {sub['n_samples']} samples at {sub['fs']:g} Hz, "
          f"start {info['start']} + {info['subsecond_s']} s = {sub['start_unix_ms']} ms, "
          f"{len(sub['windows'])} windows, {size(p3)}")
    total = sum(os.path.getsize(p) for p in (p1, p2, p3))
    print(f"total {total / 1024 / 1024:.2f} MiB in {os.path.relpath(OUT_DIR, REPO_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
