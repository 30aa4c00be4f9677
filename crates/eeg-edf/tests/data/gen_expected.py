#!/usr/bin/env python3
"""Writes expected.json: header values and sample values of the three fixtures as
read by pyedflib (EDFlib), so the eeg-edf tests can check the reader against an
independent implementation without needing Python at test time.

Run from the repository root:

    pip install pyedflib==0.1.42 numpy
    python3 crates/eeg-edf/tests/data/gen_expected.py

Notes on what is taken from where:

* Everything about signals, record counts, start date/time and sample values comes
  from pyedflib. Sample values are physical values from readSignal(), i.e. EDFlib's
  scaling; all fixtures are in uV, so they are also the expected microvolt values.
* The patient and recording fields are read from the raw header bytes, because
  pyedflib only exposes the parsed EDF+ subfields, not the fields themselves.
* pyedflib's starttime_subsecond is in units of 100 ns (EDFlib's
  EDFLIB_TIME_DIMENSION = 10^7), but its getStartdatetime() divides it by 100 as if it
  were nanoseconds, giving a sub-second part ten times too small. start_unix_ms
  therefore takes the whole seconds from getStartdatetime() and the sub-second part
  from starttime_subsecond, rounded to the nearest millisecond.
"""

import datetime as dt
import json
import os

import pyedflib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
FIXTURES = ["test_generator.edf", "test_subsecond.edf", "test_generator.bdf"]
N_EDGE = 20  # samples taken from each end of a signal

# EDFlib file types, mapped onto the names of eeg_edf::Format (continuity is taken
# from the raw reserved field since pyedflib does not expose it).
FILETYPES = {0: "Edf", 1: "EdfPlus", 2: "Bdf", 3: "BdfPlus"}


def raw_field(path, start, end):
    with open(path, "rb") as f:
        data = f.read(256)
    return data[start:end].decode("latin-1").strip(" ")


def fixture(name):
    path = os.path.join(REPO_ROOT, "fixtures", name)
    f = pyedflib.EdfReader(path)
    try:
        kind = FILETYPES[f.filetype]
        if kind.endswith("Plus"):
            kind += "D" if raw_field(path, 192, 236).startswith(("EDF+D", "BDF+D")) else "C"
        whole = f.getStartdatetime().replace(microsecond=0, tzinfo=dt.timezone.utc)
        sub_100ns = int(f.starttime_subsecond)
        signals = []
        for i in range(f.signals_in_file):
            n = int(f.getNSamples()[i])
            first = f.readSignal(i, 0, N_EDGE)
            last = f.readSignal(i, n - N_EDGE, N_EDGE)
            signals.append({
                "label": f.getLabel(i),
                "transducer": f.getTransducer(i),
                "physical_dimension": f.getPhysicalDimension(i),
                "physical_min": f.getPhysicalMinimum(i),
                "physical_max": f.getPhysicalMaximum(i),
                "digital_min": int(f.getDigitalMinimum(i)),
                "digital_max": int(f.getDigitalMaximum(i)),
                "prefilter": f.getPrefilter(i),
                "sample_rate_hz": float(f.getSampleFrequency(i)),
                "samples_per_record": int(f.samples_in_datarecord(i)),
                "n_samples": n,
                "first": [float(v) for v in first],
                "last": [float(v) for v in last],
            })
        return {
            "file": name,
            "format": kind,
            "patient": raw_field(path, 8, 88),
            "recording": raw_field(path, 88, 168),
            "n_records": int(f.datarecords_in_file),
            "record_duration_s": float(f.datarecord_duration),
            "start": [f.startdate_year, f.startdate_month, f.startdate_day,
                      f.starttime_hour, f.starttime_minute, f.starttime_second],
            "start_subsecond_100ns": sub_100ns,
            "start_unix_ms": int(whole.timestamp()) * 1000 + round(sub_100ns / 10_000),
            "signals": signals,
        }
    finally:
        f.close()


def main():
    out = {
        "generator": "crates/eeg-edf/tests/data/gen_expected.py",
        "pyedflib": pyedflib.__version__,
        "n_edge": N_EDGE,
        "fixtures": [fixture(name) for name in FIXTURES],
    }
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
