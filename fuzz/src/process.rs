//! `process`: the whole offline `process` path, `eeg_offline::process`, on a small input
//! file: its kind told by its name or its content (`detect`), read (EDF/BDF records, JSON
//! lines or a capture), processed through the session core, and written as records in one
//! of the three formats, trigger events, epochs, the events placed and the averages, and,
//! for some inputs, the HTML report.
//!
//! The first byte of the input chooses how the rest is named and what is written (so that
//! one corpus covers every reader and writer); the rest is the file. Checks: errors are one
//! line and blame the input (a fuzzed file is all the run is given: any other error is the
//! library's); a failed run leaves no output behind and a successful one every output and no
//! `.partial` file.

use std::path::{Path, PathBuf};

use eeg_offline::{Format, Input, Options, Outputs, Target};

use crate::{Bound, bounded, one_line};

/// The input's name, by the selector byte: no extension (told by content), or one of the
/// extensions `detect` goes by.
pub const NAMES: [&str; 5] = ["input", "input.edf", "input.bdf", "input.jsonl", "input.pb"];

/// The records' formats, by the selector byte, with their file names.
pub const FORMATS: [(Format, &str); 3] = [
    (Format::Jsonl, "records.jsonl"),
    (Format::Csv, "records.csv"),
    (Format::Parquet, "records.parquet"),
];

/// The selector byte that names the input `NAMES[name]` and writes `FORMATS[format]`, with
/// the report or without.
pub fn selector(name: usize, format: usize, report: bool) -> u8 {
    let format = format % FORMATS.len();
    (name % NAMES.len() + NAMES.len() * (format + FORMATS.len() * usize::from(report))) as u8
}

/// Bounded assuming memory in proportion to the data that arrived, as the offline path
/// promises ("memory stays flat however long the recording is"), plus constants: buffered
/// readers and writers (64 KiB each), the Parquet writer's pages, the report's page
/// template, the writer thread. Per byte of input, once the code sizes its buffers by the
/// data rather than by the header: a sample of 2 bytes (EDF, digital protobuf) becomes an
/// f64 in the record or batch and one in the session's window ring (16 bytes), and once a
/// window has arrived (4 s of samples, 8 bytes a second and channel of EDF) the Welch
/// segment (2 s) is planned as complex numbers with the FFT's scratch and twiddles, some
/// 100 bytes a second of sample rate, so up to 12 bytes a byte for one channel. Measured
/// on realistic inputs of 60 to 90 KiB: 4.5 bytes a byte (JSONL, one channel at 256 Hz),
/// 4.8 (EDF, 120 one-second records), 7.3 (EDF, 8 channels, with the report); the smallest
/// seeds hold 0.2 to 1 MiB. 64 a byte over 4 MiB leaves room for all of it, and fails on a
/// session sized by the sample rate and channel count a header declares before any data
/// arrives (which can ask for gigabytes: 1024 channels at 100 kHz).
pub const BOUND: Bound = Bound {
    base: 4 << 20,
    factor: 64,
};

/// A folder of this process's own for the run's files.
fn scratch() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("eeg-fuzz-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the scratch folder");
        dir
    })
}

/// The files in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listing the scratch folder")
        .map(|e| {
            e.expect("listing")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

pub fn check(data: &[u8]) {
    let Some((&choice, file)) = data.split_first() else {
        return;
    };
    let choice = usize::from(choice);
    let name = NAMES[choice % NAMES.len()];
    let (format, records) = FORMATS[(choice / NAMES.len()) % FORMATS.len()];
    let with_report = (choice / (NAMES.len() * FORMATS.len())) % 2 == 1;

    let dir = scratch();
    for f in files(dir) {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let input = dir.join(name);
    std::fs::write(&input, file).expect("writing the input");
    let records = dir.join(records);
    let mut outputs = Outputs::default();
    outputs.records = Some(Target::File(records));
    outputs.format = format;
    outputs.events = Some(Target::File(dir.join("events.jsonl")));
    // Events and epochs too: eeg.event/1 lines and messages, EDF+ annotations, a Status
    // channel's codes, each cut with MNE's default epochs.
    outputs.epochs = Some(Target::File(dir.join("epochs.jsonl")));
    outputs.events_out = Some(Target::File(dir.join("placed.tsv")));
    outputs.erp = Some(Target::File(dir.join("erp.csv")));
    if with_report {
        outputs.report = Some(Target::File(dir.join("report.html")));
    }
    let options = Options::new(Input::File(input));

    let result = bounded("eeg_offline::process", file, BOUND, || {
        eeg_offline::process(&options, &outputs, &|_| {})
    });
    let left = files(dir);
    match result {
        Ok(_) => {
            let mut want = vec![name.to_owned()];
            for t in [
                &outputs.records,
                &outputs.events,
                &outputs.report,
                &outputs.epochs,
                &outputs.events_out,
                &outputs.erp,
            ]
            .into_iter()
            .flatten()
            {
                if let Target::File(p) = t {
                    want.push(p.file_name().unwrap().to_string_lossy().into_owned());
                }
            }
            want.sort();
            assert_eq!(left, want, "a successful run's files");
        }
        Err(e) => {
            one_line("eeg_offline::process", &e);
            assert!(
                e.is_bad_input(),
                "an error that does not blame the input: {e}"
            );
            assert_eq!(left, [name], "a failed run left files behind");
        }
    }
}
