//! The fuzz targets' checks without AFL++: on every seed, and on every input a fuzzer found
//! failing once (`regressions/<target>/`), which must pass for good. Inputs that still fail
//! until a fix in the library lands are in `regressions/pending/<target>/`, replayed by
//! `cargo test -- --ignored`; once one passes it moves up to `regressions/<target>/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The checks measure the memory of the whole process: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every input under `dir/<target>/`, with its target's check; the inputs that fail.
fn replay(dir: &Path) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut failed = Vec::new();
    for &(name, check) in eeg_fuzz::TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(name)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failed.push(format!("{name}: {}", file.display()));
            }
        }
    }
    (count, failed)
}

#[test]
fn every_seed_passes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut failed = Vec::new();
    let mut count = 0;
    for (name, seeds) in eeg_fuzz::seeds::all(&root().join("../fixtures")) {
        let check = eeg_fuzz::target(name).unwrap();
        for (file, data) in seeds {
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failed.push(format!("{name}: {file}"));
            }
        }
    }
    assert!(count >= 20, "only {count} seeds");
    assert!(failed.is_empty(), "seeds that fail: {failed:#?}");
}

#[test]
fn every_finding_stays_fixed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (count, failed) = replay(&root().join("regressions"));
    eprintln!("{count} regression inputs replayed");
    assert!(
        failed.is_empty(),
        "regression inputs that fail: {failed:#?}"
    );
}

#[test]
#[ignore = "inputs that fail until their fix lands (regressions/pending/)"]
fn pending_findings() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (count, failed) = replay(&root().join("regressions/pending"));
    eprintln!(
        "{count} pending inputs replayed, {} fail still",
        failed.len()
    );
    assert!(failed.is_empty(), "pending inputs that fail: {failed:#?}");
}
