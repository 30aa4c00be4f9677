//! The AFL++ binary of the `raw_protobuf` target (see `eeg_fuzz::raw_protobuf`).

fn main() {
    afl::fuzz!(|data: &[u8]| eeg_fuzz::raw_protobuf::check(data));
}
