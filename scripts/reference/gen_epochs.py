#!/usr/bin/env python3
"""Generate the epoching fixtures and their MNE reference values.

Run from the repository root:

    pip install -r scripts/reference/requirements.txt
    python3 scripts/reference/gen_epochs.py

It writes

- fixtures/synthetic_erp.edf: EDF+ recording, 8 EEG channels at 256 Hz, 120 s, with
  "target"/"standard"/"button" annotations, injected P300/N100 responses, an alpha
  desynchronisation after each target, three blinks and two flat spans;
- fixtures/synthetic_status.bdf: BDF recording, 4 EEG channels at 512 Hz, 30 s, plus a
  BioSemi-style "Status" channel holding trigger codes;
- fixtures/reference/epochs.json: for these two files and fixtures/test_subsecond.edf,
  the events, drop decisions, per-epoch measures, sample values and averages computed
  with MNE on the data filtered by the processing cascade (see README.md).

The output is deterministic: the synthetic signals come from numpy.random.default_rng
with fixed seeds, the EDF/BDF headers carry a fixed start date, and every value is
checked (finite, away from decision thresholds, injected responses recovered) before
anything is written.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import tempfile

import numpy as np
import scipy
import scipy.integrate
import scipy.signal

import mne
import pyedflib

from gen_reference import band_power, check_finite, design_chain, filter_channels

GENERATOR = "scripts/reference/gen_epochs.py"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_JSON = os.path.join(REPO_ROOT, "fixtures", "reference", "epochs.json")

ERP_FILE = "fixtures/synthetic_erp.edf"
STATUS_FILE = "fixtures/synthetic_status.bdf"
SUBSECOND_FILE = "fixtures/test_subsecond.edf"

FILTER = {"mains_hz": 50.0, "notch_q": 30.0, "bandpass_hz": [1.0, 45.0], "order": 4}
BANDS = {"delta": [1.0, 4.0], "theta": [4.0, 8.0], "alpha": [8.0, 13.0],
         "beta": [13.0, 30.0], "gamma": [30.0, 45.0]}
WELCH_SEGMENT_S = 2.0

# Fixed header start date of the synthetic files (pyedflib would otherwise use "now").
START = _dt.datetime(2024, 3, 1, 9, 30, 0)

# ---------------------------------------------------------------------------
# synthetic_erp.edf
# ---------------------------------------------------------------------------

ERP_SEED = 300
ERP_FS = 256
ERP_DURATION_S = 120
ERP_CHANNELS = ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "P3", "P4"]
ERP_PHYS = 500.0           # physical range -500..500 uV
ERP_DIG = 32767            # digital range -32767..32767 (physical 0 is digital 0)
NOISE_RMS_UV = 10.0        # brownish background, before filtering
NOISE_FLOOR_HZ = 0.1       # the background's amplitude spectrum is 1/max(f, 0.1 Hz)
WHITE_UV = 1.0
ALPHA_UV = 8.0
ALPHA_WEIGHT = {"Oz": 1.0, "P3": 0.8, "P4": 0.8, "Pz": 0.5}
P300 = {"peak_uv": 10.0, "latency_s": 0.300, "sigma_s": 0.040,
        "weight": {"Pz": 1.0, "Cz": 0.7, "P3": 0.7, "P4": 0.7, "Fz": 0.3}}
N100 = {"peak_uv": -5.0, "latency_s": 0.100, "sigma_s": 0.020, "weight": {"Fz": 1.0, "Cz": 1.0}}
ERD = {"gain": 0.4, "start_s": 0.3, "stop_s": 1.0, "ramp_s": 0.05,
       "channels": ["Oz", "P3", "P4", "Pz"]}
BLINK = {"peak_uv": 400.0, "start_s": 0.15, "length_s": 0.30, "channel": "Fz", "count": 3}
FLAT = {"channel": "C4", "before_s": 1.95, "after_s": 1.05, "count": 2}
EARLY_ONSET_S = 0.2        # epoch starts before sample 0: MNE drops it as NO_DATA
LATE_BEFORE_END_S = 0.1    # epoch ends after the last sample: MNE drops it as TOO_SHORT

ERP_EPOCHS = {
    "tmin_s": -0.5, "tmax_s": 1.0, "baseline_s": [-0.2, 0.0],
    "reject_uv": 150.0, "flat_uv": 1.0,
    "labels": ["target", "standard"],
    "components": [
        {"name": "n100", "window_s": [0.07, 0.13], "peak": "neg"},
        {"name": "p300", "window_s": [0.25, 0.45], "peak": "pos"},
        {"name": "any", "window_s": [0.0, 0.6], "peak": "abs"},
    ],
    "erd": {"reference_s": [-0.5, 0.0], "active_s": [0.4, 0.9]},
    "bands": BANDS, "welch_segment_s": WELCH_SEGMENT_S,
}


def brownish_noise(rng, n: int, fs: float, rms: float) -> np.ndarray:
    """Gaussian noise whose amplitude spectrum falls as 1/f above NOISE_FLOOR_HZ (power
    1/f^2), scaled to `rms`. Most of its power lies below the band-pass's 1 Hz edge."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    shape = np.zeros_like(f)
    shape[1:] = 1.0 / np.maximum(f[1:], NOISE_FLOOR_HZ)
    x = np.fft.irfft(spec * shape, n)
    return x * (rms / np.std(x))


def gaussian(t, mu, sigma):
    return np.exp(-0.5 * ((t - mu) / sigma) ** 2)


def raised_ramp(x):
    """0 for x <= 0, 1 for x >= 1, raised cosine in between."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def erd_window(rel):
    """1 inside [start+ramp, stop-ramp], 0 outside [start, stop], raised-cosine ramps."""
    up = raised_ramp((rel - ERD["start_s"]) / ERD["ramp_s"])
    down = raised_ramp((ERD["stop_s"] - rel) / ERD["ramp_s"])
    return up * down


def erp_events(rng):
    """Annotations (onset_s, label) in onset order, and the onsets of the target events
    that get a blink and of the standard events that get a flat C4 span."""
    onsets = []
    t = 1.0 + rng.uniform(0.2, 0.6)
    while t <= ERP_DURATION_S - 2.0:
        onsets.append(t)
        t += rng.uniform(1.2, 1.8)
    # Onsets on EDF+'s 100 us grid, nudged away from half-sample ties.
    regular = []
    for t in onsets:
        o = round(t * 1e4) / 1e4
        while abs((o * ERP_FS) % 1.0 - 0.5) < 0.05:
            o = round((o + 3e-4) * 1e4) / 1e4
        regular.append(o)
    n = len(regular)
    n_target = round(0.25 * n)
    is_target = np.zeros(n, dtype=bool)
    is_target[rng.permutation(n)[:n_target]] = True
    labels = ["target" if x else "standard" for x in is_target]

    gaps_after = [regular[i + 1] - regular[i] if i + 1 < n else math.inf for i in range(n)]
    gaps_before = [regular[i] - regular[i - 1] if i > 0 else math.inf for i in range(n)]
    # Blinks: targets followed by a long gap, so the next epoch is clean.
    blink_candidates = [i for i in range(1, n - 1) if is_target[i] and gaps_after[i] >= 1.5]
    blink = sorted(rng.choice(blink_candidates, size=BLINK["count"], replace=False).tolist())
    # Flat spans: standards whose neighbours are standards, away from the blinks.
    flat_candidates = [
        i for i in range(2, n - 2)
        if not is_target[i] and not is_target[i - 1] and not is_target[i + 1]
        and all(abs(i - b) > 2 for b in blink)
        and gaps_before[i] >= 1.4
    ]
    flat = []
    for _ in range(FLAT["count"]):  # spans at least four events apart, never overlapping
        j = flat_candidates[int(rng.integers(len(flat_candidates)))]
        flat.append(j)
        flat_candidates = [c for c in flat_candidates if abs(c - j) > 3]
    flat.sort()
    # Two "button" annotations, 0.6 s after two standards that are not artifact events.
    button_candidates = [i for i in range(n - 1) if not is_target[i] and i not in flat
                         and all(abs(i - b) > 1 for b in blink)]
    button = sorted(rng.choice(button_candidates, size=2, replace=False).tolist())

    ann = [(o, lab) for o, lab in zip(regular, labels)]
    for i in button:
        ann.append((round((regular[i] + 0.6123) * 1e4) / 1e4, "button"))
    ann.append((EARLY_ONSET_S, "standard"))
    ann.append((ERP_DURATION_S - LATE_BEFORE_END_S, "target"))
    ann.sort(key=lambda a: a[0])
    blink_onsets = [regular[i] for i in blink]
    flat_onsets = [regular[i] for i in flat]
    return ann, blink_onsets, flat_onsets


def make_erp_recording():
    rng = np.random.default_rng(ERP_SEED)
    fs = ERP_FS
    n = ERP_DURATION_S * fs
    t = np.arange(n) / fs
    ann, blink_onsets, flat_onsets = erp_events(rng)
    targets = [o for o, lab in ann if lab == "target"]
    standards = [o for o, lab in ann if lab == "standard"]

    x = np.zeros((len(ERP_CHANNELS), n))
    for ch in range(len(ERP_CHANNELS)):
        x[ch] = brownish_noise(rng, n, fs, NOISE_RMS_UV) + rng.normal(0.0, WHITE_UV, n)

    # Alpha: one 10 Hz source with a random-walk phase (about 1 rad/s) and a slowly
    # varying amplitude, desynchronised after each target.
    phase = 2 * np.pi * 10.0 * t + np.cumsum(rng.normal(0.0, 1.0 / math.sqrt(fs), n))
    env_noise = np.fft.irfft(np.fft.rfft(rng.normal(size=n)) * (np.fft.rfftfreq(n, 1 / fs) < 0.5), n)
    env = 1.0 + 0.2 * env_noise / np.std(env_noise)
    gain = np.ones(n)
    for o in targets:
        gain *= 1.0 - (1.0 - ERD["gain"]) * erd_window(t - o)
    alpha = ALPHA_UV * env * np.sin(phase)
    for name, w in ALPHA_WEIGHT.items():
        ch = ERP_CHANNELS.index(name)
        g = gain if name in ERD["channels"] else 1.0
        x[ch] += w * alpha * g

    for o in targets:
        bump = P300["peak_uv"] * gaussian(t - o, P300["latency_s"], P300["sigma_s"])
        for name, w in P300["weight"].items():
            x[ERP_CHANNELS.index(name)] += w * bump
    for o in standards:
        bump = N100["peak_uv"] * gaussian(t - o, N100["latency_s"], N100["sigma_s"])
        for name, w in N100["weight"].items():
            x[ERP_CHANNELS.index(name)] += w * bump

    fz = ERP_CHANNELS.index(BLINK["channel"])
    for o in blink_onsets:
        rel = (t - o - BLINK["start_s"]) / BLINK["length_s"]
        inside = (rel >= 0) & (rel <= 1)
        x[fz, inside] += BLINK["peak_uv"] * 0.5 * (1 - np.cos(2 * np.pi * rel[inside]))

    # Quantise to the file's digital values (physical 0 <-> digital 0).
    cal = 2 * ERP_PHYS / (2 * ERP_DIG)
    dig = np.round(x / cal)
    assert np.all(np.abs(dig) <= ERP_DIG - 1), "synthetic ERP signal clips"
    dig = dig.astype(np.int32)
    c4 = ERP_CHANNELS.index(FLAT["channel"])
    flat_spans = []
    for o in flat_onsets:
        i0 = math.ceil((o - FLAT["before_s"]) * fs)
        i1 = math.ceil((o + FLAT["after_s"]) * fs)
        dig[c4, i0:i1] = 0
        flat_spans.append([i0, i1])
    meta = {"blink_onsets": blink_onsets, "flat_onsets": flat_onsets, "flat_spans": flat_spans,
            "annotations": ann}
    return dig, meta


def write_erp_edf(path, dig, ann):
    f = pyedflib.EdfWriter(path, len(ERP_CHANNELS), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        f.setStartdatetime(START)
        f.setEquipment("synthetic")
        f.setSignalHeaders([{
            "label": name, "dimension": "uV", "sample_frequency": ERP_FS,
            "physical_max": ERP_PHYS, "physical_min": -ERP_PHYS,
            "digital_max": ERP_DIG, "digital_min": -ERP_DIG,
            "transducer": "", "prefilter": "",
        } for name in ERP_CHANNELS])
        f.writeSamples([np.ascontiguousarray(row) for row in dig], digital=True)
        for onset, label in ann:
            f.writeAnnotation(onset, -1, label)
    finally:
        f.close()


# ---------------------------------------------------------------------------
# synthetic_status.bdf
# ---------------------------------------------------------------------------

STATUS_SEED = 512
STATUS_FS = 512
STATUS_DURATION_S = 30
STATUS_CHANNELS = ["Fz", "Cz", "Pz", "Oz"]
BDF_EEG_PHYS = (-262144, 262143)   # BioSemi's range: 31.25 nV per bit
BDF_DIG = (-8388608, 8388607)
STATUS_HIGH_BYTE = 0xFE                # bits 17..23 set, bit 16 clear, constant
# (onset_s, [(code, n_samples), ...]): each trigger holds its codes in turn, then 0.
STATUS_TRIGGERS = [
    (1.0130, [(1, 8)]),
    (2.4710, [(2, 8)]),
    (3.9870, [(3, 10), (7, 10)]),          # 3 -> 7 without a zero: both are onsets
    (5.5030, [(12, 10), (5, 10)]),         # 12 -> 5 without a zero: 5 is no onset
    (7.0210, [(255, 8)]),
    (8.5470, [(256, 8)]),                  # bit 8
    (10.0090, [(300, 8)]),                 # bits 2, 3, 5, 8
    (11.4930, [(1, 1)]),                   # exactly one sample
    (13.0170, [(4099, 8)]),                # bit 12 + 3
    (14.5290, [(32769, 8)]),               # bit 15 + 1
    (16.0410, [(2, 6), (258, 6), (3, 6)]),  # 2 -> 258 (onset) -> 3 (no onset)
    (17.4790, [(65535, 8)]),               # all low 16 bits
    (19.0050, [(3, 8)]),
    (20.4970, [(2, 8)]),
    (22.0110, [(1, 8)]),
    (23.5270, [(7, 12)]),
    (25.0190, [(255, 8)]),
    (26.5330, [(3, 8)]),
    (28.0150, [(256, 8)]),
]
STATUS_EPOCHS = {
    "tmin_s": -0.1, "tmax_s": 0.5, "baseline_s": [-0.1, 0.0],
    "reject_uv": None, "flat_uv": None,
    "labels": None,  # the codes find_events reports, as strings
    "components": [
        {"name": "n100", "window_s": [0.07, 0.13], "peak": "neg"},
        {"name": "p300", "window_s": [0.25, 0.45], "peak": "pos"},
        {"name": "any", "window_s": [0.0, 0.5], "peak": "abs"},
    ],
    "erd": None, "bands": BANDS, "welch_segment_s": WELCH_SEGMENT_S,
}


def status_word(code: int) -> int:
    """The 24-bit Status word (high byte constant) as the signed value BDF stores."""
    word = (STATUS_HIGH_BYTE << 16) | code
    return word - (1 << 24) if word & 0x800000 else word


def make_status_recording():
    rng = np.random.default_rng(STATUS_SEED)
    fs = STATUS_FS
    n = STATUS_DURATION_S * fs
    t = np.arange(n) / fs
    eeg = np.zeros((len(STATUS_CHANNELS), n))
    phase = 2 * np.pi * 10.0 * t + rng.uniform(0, 2 * np.pi)
    for ch in range(len(STATUS_CHANNELS)):
        eeg[ch] = brownish_noise(rng, n, fs, NOISE_RMS_UV) + rng.normal(0.0, WHITE_UV, n)
        eeg[ch] += (2.0 + 2.0 * ch) * np.sin(phase + 0.3 * ch)
    cal = (BDF_EEG_PHYS[1] - BDF_EEG_PHYS[0]) / (BDF_DIG[1] - BDF_DIG[0])
    dig = np.round((eeg - BDF_EEG_PHYS[0]) / cal + BDF_DIG[0]).astype(np.int32)

    codes = np.zeros(n, dtype=np.int64)
    written = []
    for onset_s, seq in STATUS_TRIGGERS:
        i = round(onset_s * fs)
        for code, length in seq:
            assert np.all(codes[i:i + length] == 0)
            codes[i:i + length] = code
            written.append([i, length, code])
            i += length
        assert codes[i] == 0
    status = np.array([status_word(int(c)) for c in codes], dtype=np.int32)
    return dig, status, codes, written


def write_status_bdf(path, dig, status):
    f = pyedflib.EdfWriter(path, len(STATUS_CHANNELS) + 1, file_type=pyedflib.FILETYPE_BDF)
    try:
        f.setStartdatetime(START)
        f.setEquipment("synthetic")
        headers = [{
            "label": name, "dimension": "uV", "sample_frequency": STATUS_FS,
            "physical_max": BDF_EEG_PHYS[1], "physical_min": BDF_EEG_PHYS[0],
            "digital_max": BDF_DIG[1], "digital_min": BDF_DIG[0],
            "transducer": "Active Electrode", "prefilter": "",
        } for name in STATUS_CHANNELS]
        headers.append({
            "label": "Status", "dimension": "Boo", "sample_frequency": STATUS_FS,
            "physical_max": BDF_DIG[1], "physical_min": BDF_DIG[0],
            "digital_max": BDF_DIG[1], "digital_min": BDF_DIG[0],
            "transducer": "Triggers and Status", "prefilter": "No filtering",
        })
        f.setSignalHeaders(headers)
        f.writeSamples([np.ascontiguousarray(row) for row in dig] + [np.ascontiguousarray(status)],
                       digital=True)
    finally:
        f.close()


def bdf_status_direct(path):
    """Decode the last signal (Status) of a BDF file straight from its bytes: signed
    24-bit little-endian words."""
    with open(path, "rb") as fh:
        data = fh.read()
    assert data[0] == 0xFF and data[1:8] == b"BIOSEMI", data[:8]
    hdr_bytes = int(data[184:192])
    n_rec = int(data[236:244])
    ns = int(data[252:256])
    label = lambda i: data[256 + 16 * i: 256 + 16 * (i + 1)].decode("ascii").strip()
    nsamp = [int(data[256 + 216 * ns + 8 * i: 256 + 216 * ns + 8 * (i + 1)]) for i in range(ns)]
    assert label(ns - 1) == "Status"
    rec = 3 * sum(nsamp)
    off = 3 * sum(nsamp[:-1])
    out = []
    for r in range(n_rec):
        b = np.frombuffer(data, dtype=np.uint8, count=3 * nsamp[-1], offset=hdr_bytes + r * rec + off)
        b = b.reshape(-1, 3).astype(np.int64)
        w = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        out.append(np.where(w & 0x800000, w - (1 << 24), w))
    return np.concatenate(out)


def check_mne_status_rules():
    """Facts about MNE's handling of BDF Status channels and find_events' defaults that
    README.md states, checked on small temporary files and arrays."""
    facts = {}
    fs = 512
    n = 4 * fs
    codes = np.zeros(n, dtype=np.int64)
    codes[512:520] = 5
    codes[1024:1032] = 9
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bit16.bdf")
        # High byte 0x01: only bit 16 set, the bit MNE's mask keeps.
        status = np.array([((0x01 << 16) | int(c)) for c in codes], dtype=np.int32)
        eeg = np.zeros((1, n), dtype=np.int32)
        f = pyedflib.EdfWriter(path, 2, file_type=pyedflib.FILETYPE_BDF)
        try:
            f.setStartdatetime(START)
            f.setSignalHeaders([
                {"label": "Fz", "dimension": "uV", "sample_frequency": fs,
                 "physical_max": BDF_EEG_PHYS[1], "physical_min": BDF_EEG_PHYS[0],
                 "digital_max": BDF_DIG[1], "digital_min": BDF_DIG[0], "transducer": "", "prefilter": ""},
                {"label": "Status", "dimension": "Boo", "sample_frequency": fs,
                 "physical_max": BDF_DIG[1], "physical_min": BDF_DIG[0],
                 "digital_max": BDF_DIG[1], "digital_min": BDF_DIG[0], "transducer": "", "prefilter": ""},
            ])
            f.writeSamples([eeg[0], status], digital=True)
        finally:
            f.close()
        raw = mne.io.read_raw_bdf(path, preload=True, verbose="error")
        st = raw.get_data(picks=["Status"])[0]
        assert np.array_equal(st, codes + 65536), "MNE no longer keeps bit 16 of Status"
        ev = mne.find_events(raw, verbose="error")
        facts["bit16_events"] = ev.tolist()
        # Every change is a step between non-zero values: 65536 -> 65541 is an onset,
        # the return to 65536 is not (consecutive='increasing'), and the initial 65536
        # is not an event (initial_event=False).
        assert ev.tolist() == [[512, 65536, 65541], [1024, 65536, 65545]], ev.tolist()

    # shortest_event compares the distance between consecutive reported onsets, not
    # the length of a trigger: a 1-sample code followed directly by a higher one is an
    # error with the defaults, a lone 1-sample code is not.
    info = mne.create_info(["STI"], 100.0, "stim")
    lone = np.zeros((1, 100))
    lone[0, 10] = 4
    ev = mne.find_events(mne.io.RawArray(lone, info, verbose="error"), verbose="error")
    assert ev.tolist() == [[10, 0, 4]], ev.tolist()
    adjacent = np.zeros((1, 100))
    adjacent[0, 10] = 4
    adjacent[0, 11:15] = 6
    try:
        mne.find_events(mne.io.RawArray(adjacent, info, verbose="error"), verbose="error")
    except ValueError as err:
        assert "shortest_event" in str(err)
        facts["adjacent_onsets_error"] = True
    else:
        raise AssertionError("find_events accepted onsets one sample apart")
    return facts


# ---------------------------------------------------------------------------
# MNE processing shared by every case
# ---------------------------------------------------------------------------

def filtered_raw(raw, eeg_names):
    """The EEG channels in uV, filtered by the cascade from zero state over the whole
    recording, back in an MNE RawArray (V) with the recording's annotations."""
    fs = float(raw.info["sfreq"])
    x_uv = raw.get_data(picks=eeg_names) * 1e6
    sos = design_chain(fs, FILTER["mains_hz"], FILTER["notch_q"], FILTER["bandpass_hz"], FILTER["order"])
    y_uv = filter_channels(sos, x_uv)
    info = mne.create_info(list(eeg_names), fs, "eeg")
    out = mne.io.RawArray(y_uv * 1e-6, info, verbose="error")
    out.set_meas_date(raw.info["meas_date"])
    out.set_annotations(raw.annotations)
    assert np.array_equal(out.annotations.onset, raw.annotations.onset)
    return out, x_uv, y_uv


def select(times, window):
    a, b = window
    return (times >= a) & (times <= b)


def component_values(ep_uv, times, comp):
    """mean, peak value and peak latency (ms) per channel in the component window."""
    m = select(times, comp["window_s"])
    idx = np.nonzero(m)[0]
    seg = ep_uv[:, m]
    mean = seg.mean(axis=1)
    if comp["peak"] == "pos":
        key = seg
    elif comp["peak"] == "neg":
        key = -seg
    elif comp["peak"] == "abs":
        key = np.abs(seg)
    else:
        raise ValueError(comp["peak"])
    k = np.argmax(key, axis=1)
    rows = np.arange(seg.shape[0])
    peak = seg[rows, k]
    ms = times[idx[k]] * 1000.0
    # Distance of the winning sample from the runner-up (ties would make peak_ms fragile).
    srt = np.sort(key, axis=1)
    gap = srt[:, -1] - srt[:, -2]
    return mean, peak, ms, gap


def erd_values(ep_uv, times, fs, erd):
    ref = select(times, erd["reference_s"])
    act = select(times, erd["active_s"])
    out = {}
    min_ref = math.inf
    for band, (lo, hi) in BANDS.items():
        vals = []
        for ch in ep_uv:
            powers = []
            for m in (ref, act):
                seg = ch[m]
                nperseg = min(round(WELCH_SEGMENT_S * fs), len(seg))
                f, psd = scipy.signal.welch(seg, fs, nperseg=nperseg)
                powers.append(band_power(f, psd, lo, hi))
            r, a = powers
            assert r > 0, (band, r)
            min_ref = min(min_ref, r)
            vals.append((a - r) / r * 100.0)
        out[band] = vals
    return out, min_ref


def run_case(name, file, raw, eeg_names, events, event_id, cfg, labels_for_events):
    """Epoch `raw` (already filtered) on `events` and collect everything epochs.json holds.

    labels_for_events: list of (label, onset_s) per event row, in event order."""
    fs = float(raw.info["sfreq"])
    reject = None if cfg["reject_uv"] is None else dict(eeg=cfg["reject_uv"] * 1e-6)
    flat = None if cfg["flat_uv"] is None else dict(eeg=cfg["flat_uv"] * 1e-6)
    common = dict(tmin=cfg["tmin_s"], tmax=cfg["tmax_s"], baseline=tuple(cfg["baseline_s"]),
                  preload=True, reject_by_annotation=False, detrend=None,
                  event_repeated="error", verbose="error")
    epochs = mne.Epochs(raw, events, event_id, reject=reject, flat=flat, **common)
    allep = mne.Epochs(raw, events, event_id, reject=None, flat=None, **common)
    times = epochs.times
    first_sample = int(round(cfg["tmin_s"] * fs))
    n_samples = len(times)
    assert n_samples == int(round(cfg["tmax_s"] * fs)) - first_sample + 1
    assert np.array_equal(times, np.arange(first_sample, first_sample + n_samples) / fs)
    assert len(epochs.drop_log) == len(events) == len(labels_for_events)

    ev_rows = []
    for i, (log, (label, onset)) in enumerate(zip(epochs.drop_log, labels_for_events)):
        if log in (("NO_DATA",), ("TOO_SHORT",)):
            # NO_DATA: the epoch starts before the first sample; TOO_SHORT: it ends
            # after the last one. Either way the epoch has no (complete) data.
            status = "no_data"
        elif len(log) > 0:
            assert all(c in eeg_names for c in log), log
            status = "rejected"
        else:
            status = "ok"
        assert allep.drop_log[i] == (log if status == "no_data" else ()), (i, allep.drop_log[i])
        ev_rows.append({"label": label, "onset_s": float(onset), "sample": int(events[i, 0]),
                        "status": status, "drop": list(log)})
    assert list(epochs.selection) == [i for i, e in enumerate(ev_rows) if e["status"] == "ok"]
    assert list(allep.selection) == [i for i, e in enumerate(ev_rows) if e["status"] != "no_data"]

    data_all = allep.get_data() * 1e6          # (n_with_data, n_ch, n_samples), uV
    with_data = [int(i) for i in allep.selection]
    # Baseline check: the data equal the unbaselined data minus the baseline mean.
    raw_uv = raw.get_data() * 1e6
    bl = select(times, cfg["baseline_s"])
    for k, i in enumerate(with_data):
        s = ev_rows[i]["sample"] + first_sample
        seg = raw_uv[:, s:s + n_samples]
        expect = seg - seg[:, bl].mean(axis=1, keepdims=True)
        assert np.max(np.abs(expect - data_all[k])) < 1e-9

    values = []
    diag = {"min_peak_gap": math.inf, "min_ref_power": math.inf, "ptp": []}
    for k, i in enumerate(with_data):
        ep = data_all[k]
        row = {"event": i, "mean_uv": {}, "peak_uv": {}, "peak_ms": {}}
        for comp in cfg["components"]:
            mean, peak, ms, gap = component_values(ep, times, comp)
            row["mean_uv"][comp["name"]] = mean.tolist()
            row["peak_uv"][comp["name"]] = peak.tolist()
            row["peak_ms"][comp["name"]] = ms.tolist()
            diag["min_peak_gap"] = min(diag["min_peak_gap"], float(gap.min()))
        if cfg["erd"] is not None:
            row["erd_pct"], min_ref = erd_values(ep, times, fs, cfg["erd"])
            diag["min_ref_power"] = min(diag["min_ref_power"], min_ref)
        else:
            row["erd_pct"] = None
        values.append(row)
        diag["ptp"].append(ep.max(axis=1) - ep.min(axis=1))

    samples = []
    for status in ("ok", "rejected"):
        idx = [i for i, e in enumerate(ev_rows) if e["status"] == status]
        if idx:
            k = with_data.index(idx[0])
            samples.append({"event": idx[0], "status": status, "data": data_all[k].tolist()})

    erp = {}
    for label in cfg["labels"]:
        count = int(np.sum(epochs.events[:, 2] == event_id[label])) if len(epochs) else 0
        if count == 0:
            erp[label] = {"count": 0, "data_uv": None, "sem_uv": None}
            continue
        sub = epochs[label]
        avg = sub.average()
        sem = sub.standard_error()
        assert avg.nave == count and sem.nave == count
        erp[label] = {"count": count, "data_uv": (avg.data * 1e6).tolist(),
                      "sem_uv": (sem.data * 1e6).tolist()}

    case = {
        "name": name, "file": file, "fs": fs, "channels": list(eeg_names),
        "filter": FILTER, "epochs": cfg, "event_id": event_id,
        "first_sample": first_sample, "n_samples": n_samples,
        "events": ev_rows, "values": values, "samples_uv": samples, "erp": erp,
    }
    return case, epochs, allep, data_all, diag


def events_from_annotation_labels(raw, labels):
    event_id = {lab: k + 1 for k, lab in enumerate(labels)}
    events, got = mne.events_from_annotations(raw, event_id=event_id, verbose="error")
    assert got == event_id
    ann = [(d, float(o)) for d, o in zip(raw.annotations.description, raw.annotations.onset)
           if d in event_id]
    assert len(ann) == len(events)
    fs = raw.info["sfreq"]
    for (d, o), ev in zip(ann, events):
        assert ev[2] == event_id[d]
        assert ev[0] == round(o * fs), (o, ev)
        assert abs((o * fs) % 1.0 - 0.5) > 1e-6, f"onset {o} is a half-sample tie"
    return events, event_id, ann


# ---------------------------------------------------------------------------
# The three cases
# ---------------------------------------------------------------------------

def case_erp(summary):
    path = os.path.join(REPO_ROOT, ERP_FILE)
    dig, meta = make_erp_recording()
    write_erp_edf(path, dig, meta["annotations"])

    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.ch_names == ERP_CHANNELS, raw.ch_names
    assert raw.info["sfreq"] == ERP_FS and raw.n_times == ERP_DURATION_S * ERP_FS
    x_uv = raw.get_data() * 1e6
    assert np.max(np.abs(x_uv - dig * (2 * ERP_PHYS / (2 * ERP_DIG)))) < 1e-9
    written = [(round(o, 4), lab) for o, lab in meta["annotations"]]
    read = [(round(float(o), 4), str(d)) for o, d in zip(raw.annotations.onset, raw.annotations.description)]
    assert read == written, "annotations differ after the round trip"
    c4 = ERP_CHANNELS.index(FLAT["channel"])
    for i0, i1 in meta["flat_spans"]:
        assert np.all(x_uv[c4, i0:i1] == x_uv[c4, i0]), "flat span not constant"

    fraw, _, _ = filtered_raw(raw, ERP_CHANNELS)
    events, event_id, ann = events_from_annotation_labels(fraw, ERP_EPOCHS["labels"])
    case, epochs, allep, data_all, diag = run_case(
        "synthetic_erp", ERP_FILE, fraw, ERP_CHANNELS, events, event_id, ERP_EPOCHS, ann)
    ev = case["events"]
    times = epochs.times
    fs = float(ERP_FS)

    # --- drop decisions ------------------------------------------------------
    status = [e["status"] for e in ev]
    no_data = [i for i, s in enumerate(status) if s == "no_data"]
    assert len(no_data) == 2, no_data
    assert [(ev[i]["onset_s"], ev[i]["drop"]) for i in no_data] == [
        (EARLY_ONSET_S, ["NO_DATA"]), (ERP_DURATION_S - LATE_BEFORE_END_S, ["TOO_SHORT"])], no_data
    with_data = [int(i) for i in allep.selection]
    ptp = np.array(diag["ptp"])                      # (n_with_data, n_ch)
    by_reject, by_flat = [], []
    for k, i in enumerate(with_data):
        over = [ERP_CHANNELS[c] for c in range(len(ERP_CHANNELS)) if ptp[k, c] > ERP_EPOCHS["reject_uv"]]
        under = [ERP_CHANNELS[c] for c in range(len(ERP_CHANNELS)) if ptp[k, c] < ERP_EPOCHS["flat_uv"]]
        assert ev[i]["drop"] == over + under, (i, ev[i]["drop"], over, under)
        if over:
            by_reject.append(i)
        if under:
            by_flat.append(i)
    blink_idx = sorted(i for i, e in enumerate(ev) if e["onset_s"] in meta["blink_onsets"])
    flat_idx = sorted(i for i, e in enumerate(ev) if e["onset_s"] in meta["flat_onsets"])
    assert by_reject == blink_idx, (by_reject, blink_idx)
    assert by_flat == flat_idx, (by_flat, flat_idx)
    assert len(by_reject) >= 2 and len(by_flat) >= 1
    for i in blink_idx:
        assert ev[i]["drop"] == [BLINK["channel"]] and ev[i]["label"] == "target"
    for i in flat_idx:
        assert ev[i]["drop"] == [FLAT["channel"]] and ev[i]["label"] == "standard"
    # Margins of the thresholds, so that tiny numerical differences cannot flip a decision.
    reject_margin = float(np.min(np.abs(ptp - ERP_EPOCHS["reject_uv"])))
    flat_rows = [with_data.index(i) for i in flat_idx]
    flat_ptp = ptp[flat_rows, c4]
    other = np.delete(ptp.ravel(), [r * len(ERP_CHANNELS) + c4 for r in flat_rows])
    assert reject_margin > 5.0, reject_margin
    assert flat_ptp.max() < 0.5 * ERP_EPOCHS["flat_uv"], flat_ptp
    assert other.min() > 5.0 * ERP_EPOCHS["flat_uv"], other.min()
    spans = meta["flat_spans"]
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), spans
    # ERD and peaks stay well conditioned (reference powers far from 0, no near-ties).
    assert diag["min_ref_power"] > 1e-12, diag["min_ref_power"]
    assert diag["min_peak_gap"] > 1e-9, diag["min_peak_gap"]

    # --- injected responses ------------------------------------------------
    # The causal cascade distorts the injected Gaussians (their energy lies at 0-6 Hz,
    # where the 1 Hz high-pass shifts the phase strongly), so the recovered responses
    # are compared with the injected shapes passed through the same filter and the same
    # baseline correction, without noise.
    sos = design_chain(fs, FILTER["mains_hz"], FILTER["notch_q"], FILTER["bandpass_hz"], FILTER["order"])
    tt = np.arange(-4 * ERP_FS, 4 * ERP_FS + 1) / fs

    def template(spec):
        y = scipy.signal.sosfilt(sos, spec["peak_uv"] * gaussian(tt, spec["latency_s"], spec["sigma_s"]))
        return y - y[select(tt, ERP_EPOCHS["baseline_s"])].mean()

    clean_p, clean_n = template(P300), template(N100)
    kp, kn = int(np.argmax(clean_p)), int(np.argmin(clean_n))
    p300_clean = (float(clean_p[kp]), float(tt[kp]))
    n100_clean = (float(clean_n[kn]), float(tt[kn]))

    pz, fz, oz = (ERP_CHANNELS.index(c) for c in ("Pz", "Fz", "Oz"))
    tgt = case["erp"]["target"]
    std = case["erp"]["standard"]
    tgt_pz = np.array(tgt["data_uv"][pz])
    k = int(np.argmax(tgt_pz))                       # maximum over the whole epoch
    p300_uv, p300_s, p300_sem = float(tgt_pz[k]), float(times[k]), float(tgt["sem_uv"][pz][k])
    assert 0.25 <= p300_s <= 0.45, p300_s
    assert abs(p300_s - p300_clean[1]) <= 0.03, (p300_s, p300_clean)
    assert abs(p300_uv - p300_clean[0]) <= 3 * p300_sem, (p300_uv, p300_clean, p300_sem)
    assert p300_uv > 3 * p300_sem, (p300_uv, p300_sem)
    std_fz = np.array(std["data_uv"][fz])
    m = select(times, [0.0, 0.6])
    k = int(np.argmin(np.where(m, std_fz, np.inf)))  # minimum over 0-600 ms
    n100_uv, n100_s, n100_sem = float(std_fz[k]), float(times[k]), float(std["sem_uv"][fz][k])
    assert 0.07 <= n100_s <= 0.13, n100_s
    assert abs(n100_s - n100_clean[1]) <= 0.015, (n100_s, n100_clean)
    assert abs(n100_uv - n100_clean[0]) <= 3 * n100_sem, (n100_uv, n100_clean, n100_sem)
    assert -n100_uv > 3 * n100_sem, (n100_uv, n100_sem)
    rows = {i: r for i, r in zip(with_data, case["values"])}
    ok_target = [i for i, e in enumerate(ev) if e["status"] == "ok" and e["label"] == "target"]
    ok_standard = [i for i, e in enumerate(ev) if e["status"] == "ok" and e["label"] == "standard"]
    erd_t = np.array([rows[i]["erd_pct"]["alpha"][oz] for i in ok_target])
    erd_s = np.array([rows[i]["erd_pct"]["alpha"][oz] for i in ok_standard])
    assert np.mean(erd_t) < -40.0 and np.median(erd_t) < -40.0, (np.mean(erd_t), np.median(erd_t))

    counts = {s: status.count(s) for s in ("ok", "rejected", "no_data")}
    summary["erp"] = {
        "events": len(ev), "counts": counts,
        "labels": {lab: sum(1 for e in ev if e["label"] == lab) for lab in ERP_EPOCHS["labels"]},
        "rejected_ptp": [(i, ev[i]["onset_s"], ev[i]["drop"]) for i in by_reject],
        "rejected_flat": [(i, ev[i]["onset_s"], ev[i]["drop"]) for i in by_flat],
        "no_data": [(i, ev[i]["onset_s"], ev[i]["label"]) for i in no_data],
        "erp_counts": {lab: case["erp"][lab]["count"] for lab in ERP_EPOCHS["labels"]},
        "p300": (p300_uv, p300_s * 1000, p300_sem), "p300_clean": (p300_clean[0], p300_clean[1] * 1000),
        "n100": (n100_uv, n100_s * 1000, n100_sem), "n100_clean": (n100_clean[0], n100_clean[1] * 1000),
        "erd_target": (float(np.mean(erd_t)), float(np.median(erd_t)), float(erd_t.max())),
        "erd_standard": (float(np.mean(erd_s)), float(np.median(erd_s))),
        "blink_ptp": [float(ptp[with_data.index(i), fz]) for i in blink_idx],
        "reject_margin": reject_margin, "flat_ptp": flat_ptp.tolist(), "other_min_ptp": float(other.min()),
        "min_peak_gap": diag["min_peak_gap"], "min_ref_power": diag["min_ref_power"],
        "buttons": [o for o, lab in meta["annotations"] if lab == "button"],
        "flat_spans": meta["flat_spans"],
    }
    return case


def case_subsecond(summary):
    path = os.path.join(REPO_ROOT, SUBSECOND_FILE)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    names = raw.ch_names
    labels = list(dict.fromkeys(str(d) for d in raw.annotations.description))
    fs = raw.info["sfreq"]
    cfg = {
        "tmin_s": -0.1, "tmax_s": 0.3, "baseline_s": [-0.1, 0.0],
        "reject_uv": None, "flat_uv": None, "labels": labels,
        "components": [{"name": "any", "window_s": [0.0, 0.25], "peak": "abs"}],
        "erd": None, "bands": BANDS, "welch_segment_s": WELCH_SEGMENT_S,
    }
    fraw, _, _ = filtered_raw(raw, names)
    events, event_id, ann = events_from_annotation_labels(fraw, labels)
    case, epochs, allep, _, diag = run_case(
        "test_subsecond", SUBSECOND_FILE, fraw, names, events, event_id, cfg, ann)
    ev = case["events"]
    summary["subsecond"] = {
        "events": len(ev), "fs": fs,
        "counts": {s: [e["status"] for e in ev].count(s) for s in ("ok", "rejected", "no_data")},
        "labels": {lab: case["erp"][lab]["count"] for lab in labels},
        "first_sample": case["first_sample"], "n_samples": case["n_samples"],
        "min_peak_gap": diag["min_peak_gap"],
    }
    return case


def case_status(summary):
    path = os.path.join(REPO_ROOT, STATUS_FILE)
    dig, status, codes, written = make_status_recording()
    write_status_bdf(path, dig, status)

    # The file holds the 24-bit words as written.
    direct = bdf_status_direct(path)
    assert np.array_equal(direct, status)
    raw = mne.io.read_raw_bdf(path, preload=True, verbose="error")
    assert raw.ch_names == STATUS_CHANNELS + ["Status"], raw.ch_names
    assert raw.get_channel_types() == ["eeg"] * 4 + ["stim"]
    st = raw.get_data(picks=["Status"])[0]
    # MNE's rule: the stored signed 24-bit value, bitwise-and 0x1FFFF (low 17 bits).
    assert np.array_equal(st, direct & 0x1FFFF)
    assert np.array_equal(st, codes), "Status as read by MNE is not the low 16 bits"
    cal = (BDF_EEG_PHYS[1] - BDF_EEG_PHYS[0]) / (BDF_DIG[1] - BDF_DIG[0])
    expect = (dig - BDF_DIG[0]) * cal + BDF_EEG_PHYS[0]
    assert np.max(np.abs(raw.get_data(picks=STATUS_CHANNELS) * 1e6 - expect)) < 1e-6

    found = mne.find_events(raw, verbose="error")
    found_list = found.tolist()
    # Expected from the rule: an onset at every change to a value greater than the
    # previous one (consecutive='increasing'), no event for the initial value.
    steps = np.nonzero(np.diff(codes) != 0)[0] + 1
    expect_ev = [[int(s), int(codes[s - 1]), int(codes[s])] for s in steps if codes[s] > codes[s - 1]]
    assert found_list == expect_ev, (found_list, expect_ev)
    one_sample = [w for w in written if w[1] == 1]
    assert len(one_sample) == 1 and [one_sample[0][0], 0, one_sample[0][2]] in found_list

    fraw, _, _ = filtered_raw(raw, STATUS_CHANNELS)
    codes_found = sorted({int(c) for c in found[:, 2]})
    event_id = {str(c): c for c in codes_found}
    cfg = dict(STATUS_EPOCHS, labels=[str(c) for c in codes_found])
    fs = float(STATUS_FS)
    labels_for_events = [(str(int(e[2])), float(e[0]) / fs) for e in found]
    case, epochs, allep, _, diag = run_case(
        "synthetic_status", STATUS_FILE, fraw, STATUS_CHANNELS, found, event_id, cfg, labels_for_events)
    case["status_channel"] = {
        "label": "Status", "high_byte": STATUS_HIGH_BYTE, "mne_mask": 0x1FFFF,
        "written": written,
    }
    case["find_events"] = found_list
    ev = case["events"]
    summary["status"] = {
        "events": len(ev),
        "counts": {s: [e["status"] for e in ev].count(s) for s in ("ok", "rejected", "no_data")},
        "find_events": found_list, "written": written,
        "labels": {lab: case["erp"][lab]["count"] for lab in cfg["labels"]},
        "min_peak_gap": diag["min_peak_gap"],
    }
    return case


# ---------------------------------------------------------------------------

def main() -> int:
    print(f"mne {mne.__version__}, scipy {scipy.__version__}, numpy {np.__version__}, "
          f"pyedflib {pyedflib.__version__}")
    assert mne.get_config("MNE_STIM_CHANNEL") is None, "MNE_STIM_CHANNEL would change find_events"
    facts = check_mne_status_rules()
    summary = {}
    cases = [case_erp(summary), case_subsecond(summary), case_status(summary)]
    obj = {"generator": GENERATOR, "mne": mne.__version__, "scipy": scipy.__version__,
           "numpy": np.__version__, "pyedflib": pyedflib.__version__, "cases": cases}
    check_finite(obj)
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    assert json.loads(text) == obj
    with open(OUT_JSON, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.write("\n")

    e = summary["erp"]
    print(f"{ERP_FILE}: {os.path.getsize(os.path.join(REPO_ROOT, ERP_FILE))} bytes; "
          f"{e['events']} events {e['labels']}, {e['counts']}")
    print(f"  rejected by peak-to-peak: {e['rejected_ptp']}, Fz peak-to-peak "
          f"{[round(v, 3) for v in e['blink_ptp']]} uV")
    print(f"  rejected as flat: {e['rejected_flat']}")
    print(f"  no data: {e['no_data']}; buttons at {e['buttons']}; flat spans {e['flat_spans']}")
    print(f"  epochs averaged: {e['erp_counts']}")
    print(f"  target ERP at Pz: max {e['p300'][0]:.4f} uV (SEM {e['p300'][2]:.4f}) at {e['p300'][1]:.3f} ms "
          f"(noise-free filtered template {e['p300_clean'][0]:.4f} uV at {e['p300_clean'][1]:.3f} ms)")
    print(f"  standard ERP at Fz: min {e['n100'][0]:.4f} uV (SEM {e['n100'][2]:.4f}) at {e['n100'][1]:.3f} ms "
          f"(noise-free filtered template {e['n100_clean'][0]:.4f} uV at {e['n100_clean'][1]:.3f} ms)")
    print(f"  alpha ERD at Oz, ok targets: mean {e['erd_target'][0]:.2f} %, median "
          f"{e['erd_target'][1]:.2f} %, largest {e['erd_target'][2]:.2f} %; ok standards: mean "
          f"{e['erd_standard'][0]:.2f} %, median {e['erd_standard'][1]:.2f} %")
    print(f"  margins: |ptp - reject| >= {e['reject_margin']:.3f} uV; flat C4 ptp "
          f"{[round(v, 6) for v in e['flat_ptp']]} uV; smallest other ptp {e['other_min_ptp']:.3f} uV; "
          f"smallest peak gap {e['min_peak_gap']:.3g} uV; smallest ERD reference power "
          f"{e['min_ref_power']:.3g} uV^2")
    s = summary["subsecond"]
    print(f"{SUBSECOND_FILE}: {s['events']} events {s['labels']}, {s['counts']}, first_sample "
          f"{s['first_sample']}, n_samples {s['n_samples']}, smallest peak gap {s['min_peak_gap']:.3g} uV")
    b = summary["status"]
    print(f"{STATUS_FILE}: {os.path.getsize(os.path.join(REPO_ROOT, STATUS_FILE))} bytes; "
          f"{b['events']} events, {b['counts']}, smallest peak gap {b['min_peak_gap']:.3g} uV")
    print(f"  written [start, samples, code]: {b['written']}")
    print(f"  find_events: {b['find_events']}")
    print(f"  MNE facts: bit 16 kept -> {facts['bit16_events']}; onsets 1 sample apart raise "
          f"ValueError: {facts['adjacent_onsets_error']}")
    print(f"{os.path.relpath(OUT_JSON, REPO_ROOT)}: {os.path.getsize(OUT_JSON)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
