//! Writes every target's seeds to `OUT/<target>/` (see `eeg_fuzz::seeds`):
//! `seeds OUT [FIXTURES]`, FIXTURES defaulting to the repository's `fixtures/`.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: seeds OUT [FIXTURES]");
        std::process::exit(2);
    };
    let fixtures = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures"));
    for (target, seeds) in eeg_fuzz::seeds::all(&fixtures) {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).expect("creating the corpus folder");
        let mut total = 0;
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).expect("writing a seed");
            total += bytes.len();
        }
        println!("{target}: {} seeds, {total} bytes", seeds.len());
    }
}
