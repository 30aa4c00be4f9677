//! The seed corpus of every target, made from the repository's fixtures and the library's
//! own encoders, so that no seed file is kept in the repository and every seed is in the
//! formats' current form. `scripts/fuzz seeds` writes them to `fuzz/corpus/<target>/`.
//!
//! Seeds are small (AFL++ mutates small inputs fastest, and `process` caps inputs at 64 KiB):
//! recordings are cut to a few data records, with the record count in their header made to
//! match.

use std::path::Path;

use eeg_edf::{
    DigitalRecord, EdfReader, StartTime, WriteFormat, WriteSignal, WriteSpec, write_edf,
};
use eeg_schema::{
    Limits, RawBatch, RawBatchParts, RawMeta, RawSamples, RawUnits, decode_raw,
    encode_raw_protobuf, write_delimited,
};
use eeg_session::{Snapshot, TriggerEngine, default_rules};

/// A seed: its file name and its bytes.
pub type Seed = (String, Vec<u8>);

/// Every target's seeds, by target name.
pub fn all(fixtures: &Path) -> Vec<(&'static str, Vec<Seed>)> {
    let edf = edf_seeds(fixtures);
    let json = json_seeds(fixtures);
    let protobuf = protobuf_seeds(fixtures);
    let capture = capture_seeds(&protobuf);
    let process = process_seeds(fixtures, &edf, &capture);
    vec![
        ("raw_json", json),
        ("raw_protobuf", protobuf),
        ("capture", capture),
        ("edf", edf),
        ("snapshot", snapshot_seeds()),
        ("process", process),
        ("config", config_seeds(fixtures)),
        ("event", event_seeds()),
    ]
}

/// The first `records` data records of a recording, its header saying so.
pub fn cut_recording(bytes: &[u8], records: u64) -> Vec<u8> {
    let reader = EdfReader::from_reader(bytes, "seed", Some(bytes.len() as u64))
        .expect("a fixture recording reads");
    let h = reader.header();
    let end = h.header_bytes() + records * h.record_bytes();
    let mut out = bytes[..end as usize].to_vec();
    // The number of data records: 8 ASCII characters at byte 236, left-justified.
    out[236..244].copy_from_slice(format!("{records:<8}").as_bytes());
    out
}

fn fixture(fixtures: &Path, name: &str) -> Vec<u8> {
    std::fs::read(fixtures.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", fixtures.join(name).display()))
}

fn signal(label: &str, unit: &str, rate: usize, digital: (i32, i32)) -> WriteSignal {
    WriteSignal {
        label: label.into(),
        transducer: String::new(),
        physical_dimension: unit.into(),
        physical_min: -500.0,
        physical_max: 500.0,
        digital_min: digital.0,
        digital_max: digital.1,
        prefilter: String::new(),
        samples_per_record: rate,
    }
}

/// A recording written by `eeg_edf`'s writer: sines, `records` one-second records.
fn written(format: WriteFormat, signals: Vec<WriteSignal>, records: u64) -> Vec<u8> {
    let mut spec = WriteSpec::eeg(0, 1, records);
    spec.format = format;
    spec.start = StartTime {
        year: 2024,
        month: 2,
        day: 29,
        hour: 23,
        minute: 59,
        second: 59,
        nanosecond: 0,
    };
    spec.signals = signals;
    write_edf(Vec::new(), "seed", &spec, |r, bufs| {
        for (c, buf) in bufs.iter_mut().enumerate() {
            let n = buf.len() as f64;
            for (i, v) in buf.iter_mut().enumerate() {
                let t = r as f64 + i as f64 / n;
                *v = 100.0 * (2.0 * std::f64::consts::PI * (10.0 + c as f64) * t).sin();
            }
        }
    })
    .expect("the writer writes")
}

fn edf_seeds(fixtures: &Path) -> Vec<Seed> {
    let subsecond = fixture(fixtures, "test_subsecond.edf");
    let generator = fixture(fixtures, "test_generator.edf");
    let bdf = fixture(fixtures, "test_generator.bdf");
    let mut minus_one = cut_recording(&subsecond, 2);
    minus_one[236..244].copy_from_slice(b"-1      ");
    vec![
        // EDF+C, one signal at 128 Hz, time-keeping annotations with a sub-second start.
        ("subsecond_6.edf".into(), cut_recording(&subsecond, 6)),
        // The record count left to the file's length.
        ("subsecond_minus_one.edf".into(), minus_one),
        // EDF+C, 11 signals at 200 Hz and annotations.
        ("generator_2.edf".into(), cut_recording(&generator, 2)),
        // BDF+C (24-bit), five signals at five rates.
        ("generator_1.bdf".into(), cut_recording(&bdf, 1)),
        // Plain EDF and BDF from the writer, volts in three units, one rate a prime number.
        (
            "written_3.edf".into(),
            written(
                WriteFormat::Edf,
                vec![
                    signal("C3", "uV", 64, (-32768, 32767)),
                    signal("C4", "mV", 64, (-2048, 2047)),
                    signal("T", "degC", 1, (-100, 100)),
                ],
                3,
            ),
        ),
        (
            "written_5.bdf".into(),
            written(
                WriteFormat::Bdf,
                vec![signal("Cz", "V", 97, (-8_388_608, 8_388_607))],
                5,
            ),
        ),
    ]
}

/// A few seconds of the real recording as one channel's samples (µV) and digital values.
fn recording_samples(fixtures: &Path, records: u64) -> (Vec<f64>, Vec<i32>, (f64, f64)) {
    let bytes = cut_recording(&fixture(fixtures, "test_subsecond.edf"), records);
    let mut reader =
        EdfReader::from_reader(bytes.as_slice(), "seed", Some(bytes.len() as u64)).expect("reads");
    let scaling = reader
        .header()
        .data_signals()
        .next()
        .expect("a data signal")
        .1
        .scaling();
    let mut digital = Vec::new();
    let mut record = DigitalRecord::new();
    while reader.read_record_digital(&mut record).expect("reads") {
        digital.extend_from_slice(record.signal(0));
    }
    let physical = digital
        .iter()
        .map(|&d| scaling.0 * (scaling.1 + f64::from(d)))
        .collect();
    (physical, digital, scaling)
}

fn batch(session: &str, seq: u64, channels: &[&str], samples: Vec<f64>) -> RawBatch {
    RawBatch::new(
        RawBatchParts {
            session_id: session.into(),
            device_id: "bud-7".into(),
            user_id: (seq % 2 == 1).then(|| "u-1".to_owned()),
            seq,
            start_ms: 1_732_270_000_000 + seq as i64 * 1000,
            sample_rate_hz: 128.0,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            samples,
        },
        &Limits::default(),
    )
    .expect("a valid batch")
}

fn json_seeds(fixtures: &Path) -> Vec<Seed> {
    let (physical, _, _) = recording_samples(fixtures, 2);
    let readme =
        br#"{"schema": "eeg.raw/1", "session_id": "s-42", "device_id": "bud-7", "user_id": "u-1",
 "seq": 0, "start_ms": 1732270000000, "sample_rate_hz": 250.0,
 "channels": ["TP9", "AF7", "AF8", "TP10"], "units": "uV",
 "samples": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}"#;
    // Fields out of order, escapes, other units, `null` user: serde's decoder reads these.
    let unusual = r#"{"samples":[[1e-3,-0.0,2E2],[3,4,5]],"units":"\u00b5V","channels":["A\"1","B\\2"],
 "sample_rate_hz":1e3,"start_ms":0,"seq":18446744073709551615,"user_id":null,"device_id":"d\t","session_id":"s\ud83d\ude00","schema":"eeg.raw/1"}"#;
    let volts = br#"{"schema":"eeg.raw/1","session_id":"s","device_id":"d","seq":1,"start_ms":5,"sample_rate_hz":0.5,"channels":["Cz"],"units":"V","samples":[[1e-6,-2.5e-5]]}"#;
    vec![
        (
            "gate_8ch_32.json".into(),
            fixture(fixtures, "gate/raw_8ch_32.json"),
        ),
        ("readme.json".into(), readme.to_vec()),
        ("unusual.json".into(), unusual.as_bytes().to_vec()),
        ("volts.json".into(), volts.to_vec()),
        (
            "recording_1ch_256.json".into(),
            batch("s-1", 1, &["Fp1"], physical).encode(),
        ),
    ]
}

fn protobuf(meta: &RawMeta<'_>, samples: RawSamples<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_raw_protobuf(meta, samples, &mut out).expect("encodes");
    out
}

fn protobuf_seeds(fixtures: &Path) -> Vec<Seed> {
    let (physical, digital, (scale, offset)) = recording_samples(fixtures, 1);
    let channels = vec!["Fp1".to_owned()];
    let meta = |seq: u64, units: RawUnits| RawMeta {
        session_id: "s-1",
        device_id: "bud-7",
        user_id: (seq == 1).then_some("u-1"),
        seq,
        start_ms: 1_732_270_000_000 + seq as i64 * 1000,
        sample_rate_hz: 128.0,
        channels: &channels,
        units,
    };
    let (scale, offset) = ([scale], [offset]);
    let digital_in = |bytes_per_sample: u8| RawSamples::Digital {
        bytes_per_sample,
        data: &digital,
        scale: &scale,
        offset: &offset,
    };
    let float32: Vec<f32> = physical.iter().map(|&v| v as f32).collect();
    let two: Vec<String> = vec!["A".into(), "B".into()];
    let two_meta = RawMeta {
        channels: &two,
        ..meta(3, RawUnits::Millivolts)
    };
    vec![
        (
            "digital2.pb".into(),
            protobuf(&meta(0, RawUnits::Microvolts), digital_in(2)),
        ),
        (
            "digital3.pb".into(),
            protobuf(&meta(1, RawUnits::Microvolts), digital_in(3)),
        ),
        (
            "digital4_volts.pb".into(),
            protobuf(&meta(2, RawUnits::Volts), digital_in(4)),
        ),
        (
            "float32.pb".into(),
            protobuf(
                &meta(3, RawUnits::Microvolts),
                RawSamples::Float32(&float32),
            ),
        ),
        (
            "float64_2ch_mv.pb".into(),
            protobuf(
                &two_meta,
                RawSamples::Float64(&[0.5, -0.25, 1e-3, 2.0, 3.0, -4.0]),
            ),
        ),
    ]
}

fn capture_seeds(protobuf: &[Seed]) -> Vec<Seed> {
    let mut all = Vec::new();
    for (_, m) in protobuf {
        write_delimited(m, &mut all).expect("writes to memory");
    }
    let mut one = Vec::new();
    write_delimited(&protobuf[0].1, &mut one).expect("writes to memory");
    vec![("all.pb".into(), all), ("one.pb".into(), one)]
}

/// A session's events in a snapshot: batches remembered, an event waiting (in ms), one
/// placed, one with its epoch waiting for its end, and counts.
fn event_state() -> eeg_session::epochs::EventState {
    let event = |id: &str, onset| eeg_schema::Event {
        session_id: "s-1".into(),
        event_id: id.into(),
        onset,
        duration_s: 0.25,
        label: "target".into(),
        value: Some(3),
        source: "app".into(),
    };
    eeg_session::epochs::EventState {
        timeline: eeg_session::events::TimelineState {
            anchors: vec![(0, 1_700_000_000_123.0, 32), (32, 1_700_000_000_248.5, 32)],
            waiting: vec![event("w", eeg_schema::Onset::UnixMs(1_700_000_009_000.25))],
            placed: vec![("p".into(), 40)],
        },
        pending: vec![(event("p", eeg_schema::Onset::Sample(40)), 40)],
        counts: eeg_session::epochs::EventCounts {
            events: 2,
            copies: 1,
            late: 1,
            ..Default::default()
        },
        t0_ms: 1_700_000_000_123.0,
    }
}

fn snapshot_seeds() -> Vec<Seed> {
    let engine = TriggerEngine::new(default_rules()).expect("the default rules are valid");
    let full = Snapshot {
        schema: eeg_session::snapshot::SCHEMA.into(),
        session_id: "s-1".into(),
        device_id: "bud-7".into(),
        user_id: Some("u-1".into()),
        sample_rate_hz: 256.0,
        channels: vec!["TP9".into(), "AF7".into()],
        next_seq: 42,
        source_offset: 1234,
        position: Some(1300),
        last_seen_ms: Some(1_700_000_100_000),
        checkpoint: eeg_dsp::Checkpoint {
            position: 9000,
            next_window: 31,
            base_index: 2,
            t0_ms: 1_700_000_000_123,
            filter: vec![
                0.1 + 0.2,
                -1e-300,
                std::f64::consts::PI,
                5e-324,
                -0.0,
                1e300,
            ],
        },
        triggers: Some(engine.new_state()),
        events: Some(event_state()),
    };
    let bare = Snapshot {
        user_id: None,
        position: None,
        last_seen_ms: None,
        triggers: None,
        events: None,
        checkpoint: eeg_dsp::Checkpoint {
            filter: Vec::new(),
            ..full.checkpoint.clone()
        },
        ..full.clone()
    };
    vec![
        ("full.json".into(), full.encode()),
        ("bare.json".into(), bare.encode()),
    ]
}

fn process_seeds(fixtures: &Path, edf: &[Seed], capture: &[Seed]) -> Vec<Seed> {
    use crate::process::selector;
    let with = |choice: u8, bytes: &[u8]| -> Vec<u8> {
        let mut out = vec![choice];
        out.extend_from_slice(bytes);
        out
    };
    // Six seconds of the real recording as JSON lines and as a capture, one batch a second:
    // enough for windows (4 s, every 1 s) to complete.
    let (physical, digital, (scale, offset)) = recording_samples(fixtures, 6);
    let mut jsonl = Vec::new();
    let mut pb = Vec::new();
    let channels = vec!["Fp1".to_owned()];
    for (seq, (p, d)) in physical.chunks(128).zip(digital.chunks(128)).enumerate() {
        let b = batch("s-1", seq as u64, &["Fp1"], p.to_vec());
        assert_eq!(decode_raw(&b.encode(), &Limits::default()).as_ref(), Ok(&b));
        jsonl.extend_from_slice(&b.encode());
        jsonl.push(b'\n');
        let meta = RawMeta {
            session_id: "s-1",
            device_id: "bud-7",
            user_id: None,
            seq: seq as u64,
            start_ms: b.start_ms,
            sample_rate_hz: 128.0,
            channels: &channels,
            units: RawUnits::Microvolts,
        };
        let m = protobuf(
            &meta,
            RawSamples::Digital {
                bytes_per_sample: 2,
                data: d,
                scale: &[scale],
                offset: &[offset],
            },
        );
        write_delimited(&m, &mut pb).expect("writes to memory");
        // Markers: one sent before the batch holding it (after batch 1), one after (after
        // batch 4), and a copy of the first: events and epochs for the process target.
        if seq == 1 || seq == 4 {
            let first = b.start_ms - seq as i64 * 1000;
            for id in ["stim-1", "stim-2"]
                .iter()
                .take(if seq == 1 { 1 } else { 2 })
            {
                let e = eeg_schema::Event {
                    session_id: "s-1".into(),
                    event_id: (*id).into(),
                    onset: eeg_schema::Onset::UnixMs(first as f64 + 2_300.25),
                    duration_s: 0.0,
                    label: "target".into(),
                    value: Some(3),
                    source: "app".into(),
                };
                jsonl.extend_from_slice(e.to_json().as_bytes());
                jsonl.push(b'\n');
                let mut m = Vec::new();
                e.encode_protobuf(&mut m);
                write_delimited(&m, &mut pb).expect("writes to memory");
            }
        }
    }
    let edf_named = |name: &str| &edf.iter().find(|(n, _)| n == name).expect("an EDF seed").1;
    vec![
        (
            "subsecond.edf".into(),
            with(selector(1, 0, false), edf_named("subsecond_6.edf")),
        ),
        (
            "subsecond_by_content_report.edf".into(),
            with(selector(0, 1, true), edf_named("subsecond_6.edf")),
        ),
        (
            "generator.bdf".into(),
            with(selector(2, 2, false), edf_named("generator_1.bdf")),
        ),
        (
            "written.edf".into(),
            with(selector(1, 0, true), edf_named("written_3.edf")),
        ),
        (
            "recording.jsonl".into(),
            with(selector(3, 0, false), &jsonl),
        ),
        (
            "recording_by_content_report.jsonl".into(),
            with(selector(0, 2, true), &jsonl),
        ),
        ("recording.pb".into(), with(selector(4, 1, false), &pb)),
        (
            "recording_by_content.pb".into(),
            with(selector(0, 0, true), &pb),
        ),
        (
            "all_forms.pb".into(),
            with(selector(4, 0, false), &capture[0].1),
        ),
    ]
}

/// Events in both encodings, each behind the byte that labels it for the target: the
/// design's example, one placed by sample, one with a fraction of a millisecond and a label
/// of many bytes, and one of each rule broken.
fn event_seeds() -> Vec<Seed> {
    let example = eeg_schema::Event {
        session_id: "s-42".into(),
        event_id: "stim-0017".into(),
        onset: eeg_schema::Onset::UnixMs(1_732_270_012_345.25),
        duration_s: 0.0,
        label: "target".into(),
        value: Some(3),
        source: "app".into(),
    };
    let events = [
        example.clone(),
        eeg_schema::Event {
            onset: eeg_schema::Onset::Sample(12_345),
            duration_s: 1.5,
            value: None,
            source: "edf+".into(),
            ..example.clone()
        },
        eeg_schema::Event {
            onset: eeg_schema::Onset::UnixMs(0.001),
            label: "Stimulus/S  1 Überraschung".into(),
            value: Some(-1),
            ..example.clone()
        },
    ];
    let mut seeds = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let mut json = vec![0u8];
        json.extend_from_slice(e.to_json().as_bytes());
        seeds.push((format!("event_{i}.json"), json));
        let mut bin = vec![2u8];
        e.encode_protobuf(&mut bin);
        seeds.push((format!("event_{i}.pb"), bin));
    }
    for (i, bad) in [
        r#"{"schema":"eeg.event/1","session_id":"s","event_id":"e","label":"x"}"#,
        r#"{"schema":"eeg.event/1","session_id":"s","event_id":"e","onset_ms":1,"label":"x","value":1.5}"#,
        r#"{"schema":"eeg.event/1","session_id":"s","event_id":"e","onset_sample":-1,"label":"x"}"#,
    ]
    .iter()
    .enumerate()
    {
        let mut json = vec![1u8];
        json.extend_from_slice(bad.as_bytes());
        seeds.push((format!("event_bad_{i}.json"), json));
    }
    seeds
}

/// The TOML examples of the README and the docs (every ```toml block), and a file with
/// every section.
fn config_seeds(fixtures: &Path) -> Vec<Seed> {
    let root = fixtures.join("..");
    let mut seeds = Vec::new();
    for doc in ["README.md", "docs/triggers.md", "docs/limits.md"] {
        let Ok(text) = std::fs::read_to_string(root.join(doc)) else {
            continue;
        };
        let mut rest = text.as_str();
        let mut n = 0;
        while let Some(start) = rest.find("```toml\n") {
            let body = &rest[start + 8..];
            let Some(end) = body.find("```") else {
                break;
            };
            n += 1;
            let name = format!("{}_{n}.toml", doc.trim_end_matches(".md").replace('/', "_"));
            seeds.push((name, body.as_bytes()[..end].to_vec()));
            rest = &body[end..];
        }
    }
    let all = "[filter]\nmains_hz = 60\nnotch_q = 25.0\nbandpass_hz = [0.5, 40.0]\nbandpass_order = 2\n\
               [window]\nlength_s = 2.0\nhop_s = 0.5\nwelch_segment_s = 1.0\n\
               [bands]\nlow = [0.5, 8]\nhigh = [8.0, 40.0]\n\
               [quality]\nflatline_ptp_uv = 1.0\nrailed_fraction = 0.1\nartifact_ptp_uv = 150.0\nmax_line_noise_ratio = 2.0\n\
               [limits]\nmax_sample_rate_hz = 50000.0\nmax_channels = 256\nmax_session_state_mib = 64\nmax_fft_len = 65536\n\
               [[triggers]]\nid = \"low\"\nmetric = \"band_power.low\"\nop = \"<\"\nthreshold = 5.0\nfor_windows = 3\n";
    seeds.push(("every_section.toml".into(), all.as_bytes().to_vec()));
    seeds
}
