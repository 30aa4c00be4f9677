//! Unit conversion and sample-rate helpers of `SignalHeader`.

use eeg_edf::SignalHeader;

fn signal(unit: &str) -> SignalHeader {
    SignalHeader {
        label: "C3".to_owned(),
        transducer: String::new(),
        physical_dimension: unit.to_owned(),
        physical_min: -1.0,
        physical_max: 1.0,
        digital_min: -32768,
        digital_max: 32767,
        prefilter: String::new(),
        samples_per_record: 256,
        is_annotation: false,
    }
}

#[test]
fn voltage_units_convert_to_microvolts() {
    let cases = [
        ("uV", Some(1.0)),
        ("\u{b5}V", Some(1.0)),
        ("\u{3bc}V", Some(1.0)),
        ("mV", Some(1e3)),
        ("V", Some(1e6)),
        ("nV", Some(1e-3)),
        ("degC", None),
        ("", None),
        ("MV", None),
    ];
    for (unit, factor) in cases {
        assert_eq!(signal(unit).microvolts_per_unit(), factor, "{unit:?}");
    }
}

#[test]
fn sample_rate_is_samples_per_record_over_duration() {
    assert_eq!(signal("uV").sample_rate_hz(1.0), 256.0);
    assert_eq!(signal("uV").sample_rate_hz(0.5), 512.0);
    assert_eq!(signal("uV").sample_rate_hz(2.0), 128.0);
}

#[test]
fn scaling_maps_digital_extremes_to_physical_extremes() {
    let s = signal("uV");
    assert_eq!(s.to_physical(32767), 1.0);
    assert!((s.to_physical(-32768) + 1.0).abs() < 1e-12);
}
