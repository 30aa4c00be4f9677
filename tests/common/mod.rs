//! Helpers shared by the tests that run the `eeg-pipeline` binary on files.

// Each test file uses its own share of these.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

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

/// Peak resident memory of a running process, from /proc (Linux).
#[cfg(target_os = "linux")]
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
