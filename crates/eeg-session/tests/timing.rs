//! The session clock's fit against its references (`fixtures/reference/timing.json`, made by
//! `scripts/reference/gen_timing.py`): numpy's least squares through the same stamps, and
//! pyxdf 1.17's effective rate after its jitter removal, for simulated devices that drift
//! (12 ppm, 0.39 ppm, −150 ppm) and jitter (1.5 ms, 4 ms, none beyond whole ms).

use eeg_session::timing::Clock;

fn reference() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/reference/timing.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("the reference")).expect("json")
}

#[test]
fn the_clock_fit_equals_least_squares_and_pyxdf_on_drifting_jittering_devices() {
    let r = reference();
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let nominal = c["nominal_hz"].as_f64().unwrap();
        let batch = c["batch"].as_u64().unwrap();
        let stamps = c["start_ms"].as_array().unwrap();
        let mut clock = Clock::new(nominal);
        for (k, ms) in stamps.iter().enumerate() {
            let jumped = clock.batch(k as u64 * batch, ms.as_f64().unwrap(), batch, true);
            assert!(!jumped, "{name}: batch {k} is no jump");
        }
        let fit = clock.fit();
        let l = &c["lstsq"];
        let rel = |got: f64, want: f64| ((got - want) / want).abs();
        assert_eq!(fit.batches, stamps.len() as u64);
        assert!(
            rel(fit.effective_hz, l["effective_hz"].as_f64().unwrap()) < 1e-12,
            "{name}: {fit:?} vs {l}"
        );
        assert!(
            (fit.drift_ppm - l["drift_ppm"].as_f64().unwrap()).abs() < 1e-6,
            "{name}: {fit:?} vs {l}"
        );
        assert!(
            rel(fit.jitter_ms, l["jitter_ms"].as_f64().unwrap()) < 1e-10,
            "{name}: {fit:?} vs {l}"
        );
        // pyxdf fits every sample's stamp and counts the last sample's duration: within
        // 0.01 ppm of the batch-stamp line here.
        let pyxdf = c["pyxdf"]["effective_srate"].as_f64().unwrap();
        let pyxdf_ppm = (pyxdf / nominal - 1.0) * 1e6;
        assert!(
            (fit.drift_ppm - pyxdf_ppm).abs() < 0.01,
            "{name}: {} ppm vs pyxdf {pyxdf_ppm} ppm",
            fit.drift_ppm
        );
        // And the device's true drift is found to within the jitter's share.
        let truth = c["true_drift_ppm"].as_f64().unwrap();
        assert!(
            (fit.drift_ppm - truth).abs() < 0.06,
            "{name}: {} ppm, true {truth} ppm",
            fit.drift_ppm
        );
        eprintln!(
            "{name}: true {truth:.4} ppm, estimated {:.4} ppm (numpy {:.4}, pyxdf {pyxdf_ppm:.4}), jitter {:.4} ms over {} batches; relative to numpy: rate {:.1e}, jitter {:.1e}",
            fit.drift_ppm,
            l["drift_ppm"].as_f64().unwrap(),
            fit.jitter_ms,
            fit.batches,
            rel(fit.effective_hz, l["effective_hz"].as_f64().unwrap()),
            rel(fit.jitter_ms, l["jitter_ms"].as_f64().unwrap()),
        );
    }
}
