//! Sessions beyond the limits are refused before anything is allocated for them, with a
//! message naming the limit and the key that raises it.

use eeg_dsp::{ProcessingConfig, SessionProcessor};

#[test]
fn sessions_beyond_the_limits_are_refused_naming_the_key_to_raise() {
    let c = ProcessingConfig::default();
    let refuse = |c: &ProcessingConfig, fs: f64, nch: usize| {
        SessionProcessor::plan_session(c, fs, nch)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refuse(&c, 100_001.0, 8),
        "sample rate 100001 Hz, above limits.max_sample_rate_hz = 100000; raise limits.max_sample_rate_hz in the config file to accept it"
    );
    assert_eq!(
        refuse(&c, 256.0, 1025),
        "1025 channels, above limits.max_channels = 1024; raise limits.max_channels in the config file to accept it"
    );
    // 1,024 channels at 100 kHz: 3,125 MiB of ring (400,000 samples × 1,024 × 8 bytes)
    // and a little more.
    let msg = refuse(&c, 100_000.0, 1024);
    let mib: u64 = msg
        .strip_prefix("1024 channels at 100000 Hz with a 4 s window need ")
        .and_then(|m| m.split_once(" MiB of session state, above limits.max_session_state_mib = 1024; raise limits.max_session_state_mib in the config file to accept it"))
        .and_then(|(n, rest)| rest.is_empty().then(|| n.parse().ok()).flatten())
        .unwrap_or_else(|| panic!("{msg}"));
    assert!((3125..3125 + 32).contains(&mib), "{msg}");
    let mut long = c.clone();
    long.window.length_s = 8.0;
    long.window.welch_segment_s = 8.0;
    assert_eq!(
        refuse(&long, 40_000.0, 1),
        "a Welch segment of 320000 samples (window.welch_segment_s at 40000 Hz), above limits.max_fft_len = 262144; raise limits.max_fft_len in the config file to accept it"
    );
    // At the limits, sessions are accepted; real devices fit the defaults: 1,024
    // channels at 30 kHz, 256 at 40 kHz.
    assert!(SessionProcessor::plan_session(&c, 100_000.0, 1).is_ok());
    assert!(SessionProcessor::plan_session(&c, 30_000.0, 1024).is_ok());
    assert!(SessionProcessor::plan_session(&c, 40_000.0, 256).is_ok());
    let (plan, bytes) = SessionProcessor::plan_session(&c, 256.0, 8).unwrap();
    assert_eq!(bytes, SessionProcessor::max_state_bytes(&plan, 8));
    // Raised, they accept more.
    let mut raised = c.clone();
    raised.limits.max_session_state_bytes = 4 << 30;
    assert!(SessionProcessor::plan_session(&raised, 100_000.0, 1024).is_ok());
    // The limits themselves are checked.
    let mut zero = c;
    zero.limits.max_channels = 0;
    assert_eq!(
        zero.validate().unwrap_err().to_string(),
        "limits.max_channels: must be at least 1"
    );
}
