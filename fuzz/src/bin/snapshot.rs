//! The AFL++ binary of the `snapshot` target (see `eeg_fuzz::snapshot`).

fn main() {
    afl::fuzz!(|data: &[u8]| eeg_fuzz::snapshot::check(data));
}
