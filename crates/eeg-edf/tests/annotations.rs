//! EDF+/BDF annotations as MNE and pyEDFlib read them: every TAL entry of the fixtures, in
//! file order, with its onset (after the first sample), duration and text (reference made
//! by `scripts/reference/gen_annotations.py`).

use eeg_edf::{Annotation, EdfReader, Record};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// Onset, duration and text of every annotation of a fixture.
fn read_all(name: &str) -> Vec<(f64, Option<f64>, String)> {
    let mut reader = EdfReader::open(fixture(name)).unwrap();
    let mut record = Record::default();
    let mut out = Vec::new();
    while reader.read_record(&mut record).unwrap() {
        reader
            .annotations(|a: Annotation<'_>| {
                out.push((a.onset_s, a.duration_s, a.text.into_owned()));
            })
            .unwrap();
    }
    out
}

#[test]
fn every_annotation_of_the_fixtures_is_read_as_mne_and_pyedflib_read_it() {
    let text = std::fs::read_to_string(fixture("reference/annotations.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let files = json["files"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    let mut seen = 0;
    for (name, readers) in files {
        let annotations = read_all(name);
        // MNE says 0 where the file gives no duration, pyEDFlib -1. MNE keeps onsets to
        // the µs (NumPy's rounding, half to even), pyEDFlib to the 100 ns (the files write
        // them to the 100 ns): the same onsets, rounded as each rounds, are equal.
        for (reader, none, per_s) in [("mne", 0.0, 1e6), ("pyedflib", -1.0, 1e7)] {
            let want = readers[reader].as_array().unwrap();
            assert_eq!(
                annotations.len(),
                want.len(),
                "{name}, {reader}: {annotations:?}"
            );
            for (got, w) in annotations.iter().zip(want) {
                let (onset_s, duration_s, text) = got;
                assert_eq!(text, w["text"].as_str().unwrap(), "{name}, {reader}");
                assert_eq!(
                    duration_s.unwrap_or(none),
                    w["duration_s"].as_f64().unwrap(),
                    "{name}, {reader}: duration of {text}"
                );
                let onset = w["onset_s"].as_f64().unwrap();
                let rounded = (onset_s * per_s).round_ties_even() / per_s;
                assert_eq!(
                    rounded, onset,
                    "{name}, {reader}: onset {onset_s} of {text}"
                );
                seen += 1;
            }
        }
    }
    // XLSpike, Clip Note, XLEvent, XLSpike; Recording starts, Recording ends; by each reader.
    assert_eq!(seen, 2 * 6);
}
