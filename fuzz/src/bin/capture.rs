//! The AFL++ binary of the `capture` target (see `eeg_fuzz::capture`).

fn main() {
    afl::fuzz!(|data: &[u8]| eeg_fuzz::capture::check(data));
}
