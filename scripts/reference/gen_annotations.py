"""The annotations of the EDF+ fixtures as MNE and pyEDFlib read them, for
crates/eeg-edf/tests/annotations.rs (which needs no Python).

    pip install mne==1.13.2 pyedflib==0.1.42
    python3 scripts/reference/gen_annotations.py

Writes fixtures/reference/annotations.json: for each fixture and each reader, every
annotation's onset (s after the recording's first sample), duration (s; MNE writes 0 and
pyEDFlib -1 where the file gives none) and text, in file order. The time-keeping
annotations are left out by both readers, as by eeg-edf.
"""

import json
import pathlib

import mne
import pyedflib

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = ["test_subsecond.edf", "test_generator.edf", "test_generator.bdf"]
OUT = ROOT / "fixtures" / "reference" / "annotations.json"


def rows(onsets, durations, texts):
    return [
        {"onset_s": float(o), "duration_s": float(d), "text": str(t)}
        for o, d, t in zip(onsets, durations, texts)
    ]


def main():
    files = {}
    for name in FILES:
        path = ROOT / "fixtures" / name
        read = mne.io.read_raw_bdf if name.endswith(".bdf") else mne.io.read_raw_edf
        a = read(path, preload=False, verbose="error").annotations
        with pyedflib.EdfReader(str(path)) as f:
            by_pyedflib = rows(*f.readAnnotations())
        files[name] = {
            "mne": rows(a.onset, a.duration, a.description),
            "pyedflib": by_pyedflib,
        }
        print(f"{name}: {len(a)} annotations (MNE), {len(by_pyedflib)} (pyEDFlib)")
    out = {
        "generator": "scripts/reference/gen_annotations.py",
        "mne": mne.__version__,
        "pyedflib": pyedflib.__version__,
        "files": files,
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
