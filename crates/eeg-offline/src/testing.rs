//! What the unit tests share: paths, and windows with values known by construction.

use std::path::{Path, PathBuf};

use eeg_dsp::{OwnedWindow, ProcessingConfig, Quality, Window};
use eeg_schema::SessionMeta;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// An empty directory `target/eeg-offline-tests/TEST` for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = root().join("target").join("eeg-offline-tests").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Session `s` of device `d` at 256 Hz with channels `C0`, `C1`, ...
pub fn meta(channels: usize) -> SessionMeta {
    SessionMeta {
        session_id: "s".into(),
        device_id: "d".into(),
        user_id: None,
        sample_rate_hz: 256.0,
        channels: (0..channels).map(|c| format!("C{c}")).collect(),
    }
}

/// Window `index` of [`meta`]'s session over the default five bands: channel c has band
/// powers 1, 2, 3, 4, 5 (delta to gamma) plus c, total power their sum, relative powers
/// band over total, and is good; the window starts at 1 000 000 ms + index s and lasts 4 s.
pub fn window(index: u64, channels: usize) -> OwnedWindow {
    let bands = ProcessingConfig::default().bands;
    let mut power = Vec::new();
    let mut total = Vec::new();
    for c in 0..channels {
        let row: Vec<f64> = (1..=5).map(|b| f64::from(b) + c as f64).collect();
        total.push(row.iter().sum::<f64>());
        power.extend(row);
    }
    let relative: Vec<f64> = power
        .iter()
        .enumerate()
        .map(|(i, p)| p / total[i / 5])
        .collect();
    let quality = vec![
        Quality {
            good: true,
            ..Quality::default()
        };
        channels
    ];
    let mut w = Window::from_parts(&bands, &power, &relative, &total, &quality);
    w.index = index;
    w.start_ms = 1_000_000 + index as i64 * 1000;
    w.end_ms = w.start_ms + 4000;
    OwnedWindow::from(&w)
}
