#!/usr/bin/env python3
"""Generate the clock-fit reference: a drifting, jittering device's batch stamps, and what
numpy's least squares and pyxdf's effective-rate estimate make of them.

Run from the repository root:

    pip install -r scripts/reference/requirements.txt
    python3 scripts/reference/gen_timing.py

It writes fixtures/reference/timing.json with, per case, the nominal rate, the batch
length, every batch's stamp (`start_ms`, whole ms as the wire carries them; batch k starts
at sample k * batch) and

- `lstsq`: the line through (first sample, start_ms) by `numpy.linalg.lstsq`: its slope in
  ms per sample, the effective rate 1000 / slope, the drift (effective / nominal - 1) * 1e6
  and the RMS of the residuals (ms);
- `pyxdf`: `effective_srate` of pyxdf 1.17's jitter removal (`_jitter_removal`, what
  `load_xdf(dejitter_timestamps=True)` runs) on the stream's per-sample stamps, each
  sample stamped `start_ms + j / nominal` within its batch (as LSL's `push_chunk` stamps a
  chunk), in s.

The signal is never involved: the device is simulated from its true rate, and the stamps
come from numpy.random.default_rng with fixed seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyxdf
from pyxdf import pyxdf as pyxdf_impl

T0_MS = 1_732_270_000_000


def stamps(true_hz: float, nominal_hz: float, batch: int, seconds: float, jitter_ms: float, seed: int):
    rng = np.random.default_rng(seed)
    n = int(seconds * nominal_hz) // batch
    first = np.arange(n, dtype=np.int64) * batch
    exact = T0_MS + first * 1000.0 / true_hz
    # Stamped when the batch is complete, less the batch's own length: what a gateway that
    # stamps its first sample by the host clock writes. Gaussian jitter, whole ms.
    ms = np.round(exact + rng.normal(0.0, jitter_ms, n)) if jitter_ms > 0 else np.round(exact)
    return first, ms


def lstsq(first: np.ndarray, ms: np.ndarray):
    # Measured from the first batch, as the fit is: Unix ms squared would lose digits.
    x = (first - first[0]).astype(np.float64)
    y = ms - ms[0]
    a = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - (intercept + slope * x)
    return slope, math.sqrt(float(np.mean(resid * resid)))


class _Stream:
    def __init__(self, time_stamps, srate):
        self.time_stamps = time_stamps
        self.srate = srate
        self.tdiff = 1.0 / srate


def pyxdf_rate(first: np.ndarray, ms: np.ndarray, nominal_hz: float, batch: int) -> float:
    within = np.arange(batch) / nominal_hz
    per_sample = ((ms[:, None] - ms[0]) / 1000.0 + within[None, :]).ravel()
    stream = _Stream(per_sample.copy(), nominal_hz)
    out = pyxdf_impl._jitter_removal({1: stream})
    return float(out[1].effective_srate)


def main() -> None:
    assert pyxdf.__version__ == "1.17.0", pyxdf.__version__
    cases = []
    for name, true_hz, nominal, batch, seconds, jitter, seed in [
        # pyxdf #80: an amplifier at 1000.012 Hz, stamps jittering by 1.5 ms.
        ("amplifier_12ppm", 1000.012, 1000.0, 32, 600.0, 1.5, 1),
        # muse-lsl #99/#101: a headband at 256.0001 Hz (0.39 ppm), 12-sample chunks, 4 ms.
        ("headband_0_4ppm", 256.0001, 256.0, 12, 600.0, 4.0, 2),
        # A clock running 150 ppm slow, no jitter beyond the whole ms.
        ("slow_150ppm", 250.0 * (1 - 150e-6), 250.0, 25, 300.0, 0.0, 3),
    ]:
        first, ms = stamps(true_hz, nominal, batch, seconds, jitter, seed)
        slope, rms = lstsq(first, ms)
        effective = 1000.0 / slope
        cases.append(
            {
                "name": name,
                "true_hz": true_hz,
                "true_drift_ppm": (true_hz / nominal - 1.0) * 1e6,
                "nominal_hz": nominal,
                "batch": batch,
                "start_ms": [int(v) for v in ms],
                "lstsq": {
                    "ms_per_sample": slope,
                    "effective_hz": effective,
                    "drift_ppm": (effective / nominal - 1.0) * 1e6,
                    "jitter_ms": rms,
                },
                "pyxdf": {"effective_srate": pyxdf_rate(first, ms, nominal, batch)},
            }
        )
    out = Path("fixtures/reference/timing.json")
    out.write_text(json.dumps({"generator": "scripts/reference/gen_timing.py", "cases": cases}) + "\n")
    for c in cases:
        print(c["name"], c["true_drift_ppm"], c["lstsq"]["drift_ppm"], c["lstsq"]["jitter_ms"],
              (c["pyxdf"]["effective_srate"] / c["nominal_hz"] - 1) * 1e6)


if __name__ == "__main__":
    main()
