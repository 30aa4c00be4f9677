//! The AFL++ binary of the `event` target (see `eeg_fuzz::event`).

fn main() {
    afl::fuzz!(|data: &[u8]| eeg_fuzz::event::check(data));
}
