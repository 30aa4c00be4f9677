//! The AFL++ binary of the `config` target (see `eeg_fuzz::config`).

fn main() {
    afl::fuzz!(|data: &[u8]| eeg_fuzz::config::check(data));
}
