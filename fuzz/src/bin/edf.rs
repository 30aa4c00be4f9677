//! The AFL++ binary of the `edf` target (see `eeg_fuzz::edf`).

fn main() {
    afl::fuzz!(|data: &[u8]| eeg_fuzz::edf::check(data));
}
