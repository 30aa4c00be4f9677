//! Runs a target's check on saved inputs without AFL++, and tells per input what each
//! bounded call held at its peak and how long the check took:
//! `replay TARGET FILE_OR_FOLDER...`. Exits 1 when any input fails its check.
//!
//! This is how a crash or hang that AFL++ saved is looked at (with `FUZZ_ALLOC_TRACE=1`, a
//! memory bound's failure shows the allocation that crossed it) and how the bounds were
//! chosen (the largest bytes-per-input-byte seen).

use std::path::{Path, PathBuf};
use std::time::Instant;

fn inputs(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .expect("listing a folder")
            .map(|e| e.expect("listing").path())
            .collect();
        entries.sort();
        for e in entries {
            // AFL++'s own files in its output folders (README.txt, .state) are no inputs.
            let name = e.file_name().unwrap_or_default().to_string_lossy();
            if !name.starts_with('.') && name != "README.txt" {
                inputs(&e, out);
            }
        }
    } else {
        out.push(path.to_owned());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let Some(check) = eeg_fuzz::target(&name) else {
        let names: Vec<_> = eeg_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "usage: replay TARGET FILE_OR_FOLDER... (targets: {})",
            names.join(", ")
        );
        std::process::exit(2);
    };
    let mut files = Vec::new();
    for a in args {
        inputs(Path::new(&a), &mut files);
    }
    // The panic message is printed by the default hook; the run goes on to the next input.
    eeg_fuzz::record_peaks(true);
    let mut failed = 0;
    let mut worst: f64 = 0.0;
    for file in &files {
        let data = std::fs::read(file).expect("reading an input");
        let start = Instant::now();
        let ok = std::panic::catch_unwind(|| check(&data)).is_ok();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        for p in eeg_fuzz::take_peaks() {
            let per_byte = p.peak as f64 / p.input_len.max(1) as f64;
            worst = worst.max(per_byte);
            println!(
                "{}: {}: {} bytes in, peak {} bytes ({per_byte:.1} a byte), bound {}",
                file.display(),
                p.what,
                p.input_len,
                p.peak,
                p.bound
            );
        }
        println!(
            "{}: {} in {ms:.1} ms",
            file.display(),
            if ok { "ok" } else { "FAILED" }
        );
        failed += usize::from(!ok);
    }
    println!(
        "{name}: {} inputs, {failed} failed; largest peak per input byte {worst:.1}",
        files.len()
    );
    std::process::exit(i32::from(failed > 0));
}
