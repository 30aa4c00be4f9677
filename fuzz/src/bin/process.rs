//! The AFL++ binary of the `process` target (see `eeg_fuzz::process`).

fn main() {
    afl::fuzz!(|data: &[u8]| eeg_fuzz::process::check(data));
}
