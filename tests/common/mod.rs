//! Helpers shared by the tests that run the `eeg-pipeline` binary on files, and by the
//! tests of the pages (`chromium`); `tests/kafka` includes it too.

// Each test file uses its own share of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod browser;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// The binary with `args`, run from the repository root, to its end.
pub fn eeg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eeg-pipeline"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An empty directory `target/GROUP/TEST` for one test.
pub fn scratch(group: &str, test: &str) -> PathBuf {
    let dir = root().join("target").join(group).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Asserts exit code 2 and a single error line containing every `needle`, and no panic.
pub fn assert_bad_input(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line expected, stderr: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "'{n}' not in: {}", lines[0]);
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// A 64-channel EDF of `seconds` at 256 Hz at `path`: sample `i` of channel `c` is
/// `signal(c, i as f64 / 256.0)` µV.
pub fn long_edf(path: &Path, seconds: u64, signal: impl Fn(usize, f64) -> f64) {
    use eeg_edf::{WriteSpec, write_edf};
    let spec = WriteSpec::eeg(64, 256, seconds);
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let name = path.file_name().expect("a file").to_str().expect("utf8");
    write_edf(file, name, &spec, |record, signals| {
        for (c, s) in signals.iter_mut().enumerate() {
            for (i, v) in s.iter_mut().enumerate() {
                *v = signal(c, (record as usize * 256 + i) as f64 / 256.0);
            }
        }
    })
    .expect("write");
}

/// A sine of 20 µV at 8 Hz on channel 0, 0.1 Hz higher on each next channel.
pub fn sines(channel: usize, t: f64) -> f64 {
    20.0 * (2.0 * std::f64::consts::PI * (8.0 + channel as f64 * 0.1) * t).sin()
}

/// The peak resident memory (kB) of `cmd` run to its end, which must be a success.
#[cfg(target_os = "linux")]
pub fn peak_rss_of(cmd: &mut Command) -> u64 {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // VmHWM is the peak so far; the last reading before the process exits is the largest.
    let mut peak = 0;
    while child.try_wait().expect("wait").is_none() {
        if let Some(kb) = peak_rss_kb(child.id()) {
            peak = peak.max(kb);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().expect("exit");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(peak > 0, "no memory reading taken");
    peak
}

/// Peak resident memory of a running process, from /proc (Linux).
#[cfg(target_os = "linux")]
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
