//! The AFL++ binary of the `raw_json` target (see `eeg_fuzz::raw_json`).

fn main() {
    afl::fuzz!(|data: &[u8]| eeg_fuzz::raw_json::check(data));
}
