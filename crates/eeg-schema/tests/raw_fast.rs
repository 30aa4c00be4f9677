//! The fast path of `decode_raw` against the serde decoder it stands in for: on valid
//! messages in many textual forms it must take the message and give the same batch bit for
//! bit; on anything else, `decode_raw` must give exactly what the serde decoder gives.

use eeg_schema::{
    Limits, RawBatch, SchemaError, decode_raw, decode_raw_fast, decode_raw_reference,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

mod support;
use support::{apply, bits, edit};

const EXAMPLE: &str = r#"{"schema": "eeg.raw/1", "session_id": "s-42", "device_id": "bud-7", "user_id": "u-1",
 "seq": 0, "start_ms": 1732270000000, "sample_rate_hz": 250.0,
 "channels": ["TP9", "AF7", "AF8", "TP10"], "units": "uV",
 "samples": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}"#;

const FIXTURE: &[u8] = include_bytes!("../../../fixtures/gate/raw_8ch_32.json");

/// The same batch to the bit (`PartialEq` on f64 equates 0.0 and -0.0), or the same error.
fn same(
    got: &Result<RawBatch, SchemaError>,
    want: &Result<RawBatch, SchemaError>,
) -> Result<(), TestCaseError> {
    match (got, want) {
        (Ok(g), Ok(w)) => {
            prop_assert_eq!(g, w);
            prop_assert_eq!(bits(g), bits(w));
            prop_assert_eq!(g.sample_rate_hz.to_bits(), w.sample_rate_hz.to_bits());
        }
        (Err(g), Err(w)) => {
            prop_assert_eq!(g.to_string(), w.to_string());
            prop_assert_eq!(g, w);
        }
        _ => prop_assert!(false, "got {got:?}, want {want:?}"),
    }
    Ok(())
}

/// Every way of decoding `bytes` agrees: `decode_raw` gives what the serde decoder gives,
/// and the fast path alone gives either nothing or that same batch.
fn agree(bytes: &[u8], limits: &Limits) -> Result<Option<RawBatch>, TestCaseError> {
    let want = decode_raw_reference(bytes, limits);
    same(&decode_raw(bytes, limits), &want)?;
    let fast = decode_raw_fast(bytes, limits);
    if let Some(f) = &fast {
        prop_assert!(want.is_ok(), "fast path took what serde rejects: {want:?}");
        same(&Ok(f.clone()), &want)?;
    }
    Ok(fast)
}

/// A small deterministic generator for the choices that need no shrinking (whitespace,
/// escapes), so that one seed describes them all.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// JSON whitespace, mostly none or one space.
    fn ws(&mut self) -> &'static str {
        const WS: [&str; 8] = ["", "", "", " ", "\n", "\t", "\r\n", " \n\t  "];
        WS[self.below(WS.len())]
    }
}

/// `s` as a JSON string, each character written plainly or escaped at random (`\uXXXX`,
/// surrogate pairs for characters beyond the BMP, the short escapes).
fn json_string(s: &str, rng: &mut Rng) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let escape = rng.below(4) == 0;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if escape => out.push_str("\\/"),
            c if (c as u32) < 0x20 || escape => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    if rng.below(2) == 0 {
                        out.push_str(&format!("\\u{u:04x}"));
                    } else {
                        out.push_str(&format!("\\u{u:04X}"));
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Finite values of every kind: ordinary, integral, zero of both signs, subnormal, near
/// the ends of the range.
fn sample_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
        4 => -1e3f64..1e3,
        2 => (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        1 => (1u64..1 << 52).prop_map(f64::from_bits),
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e22,
            1e23,
            9007199254740993.0,
            0.1,
            1e-300,
        ]),
    ]
}

/// One of the textual forms of a number; `extra` is a string of digits some forms append
/// to the mantissa (more digits than an f64 holds, near-halfway cases).
fn number_text(v: f64, form: u8, extra: &str) -> String {
    match form % 12 {
        0 | 1 => format!("{v:?}"),
        2 => format!("{v:e}"),
        3 => format!("{v:E}"),
        4 => format!("{v:.20}"),
        5 => format!("{v:.25e}"),
        6 => {
            // An exponent with a sign and leading zeros.
            let s = format!("{v:.6e}");
            let (m, e) = s.split_once('e').expect("exponent");
            match e.strip_prefix('-') {
                Some(e) => format!("{m}e-00{e}"),
                None => format!("{m}E+0{e}"),
            }
        }
        7 if v.fract() == 0.0 && v.abs() < 1e25 => format!("{v:.0}"),
        8 => {
            // The digits of the shortest form followed by more.
            let s = format!("{v:e}");
            let (m, e) = s.split_once('e').expect("exponent");
            let m = if m.contains('.') {
                m.to_string()
            } else {
                format!("{m}.0")
            };
            format!("{m}{extra}e{e}")
        }
        9 => format!("{v:.3}"),
        10 => format!("{v:.17e}"),
        _ => format!("{v}"),
    }
}

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _\\-\"\\\\/é€😀µ]{1,40}"
}

/// The value of `units` and the scale it implies, or `None` for the field left out.
fn units() -> impl Strategy<Value = Option<(&'static str, f64)>> {
    prop::sample::select(vec![
        None,
        Some(("null", 1.0)),
        Some(("\"uV\"", 1.0)),
        Some(("\"µV\"", 1.0)),
        Some(("\"μV\"", 1.0)),
        Some(("\"\\u00b5V\"", 1.0)),
        Some(("\"mV\"", 1e3)),
        Some(("\"V\"", 1e6)),
    ])
}

prop_compose! {
    /// A valid `eeg.raw/1` message in one of many textual forms.
    fn message()(n_ch in 1usize..6, per in 1usize..24)(
        values in prop::collection::vec(sample_value(), n_ch * per),
        forms in prop::collection::vec(any::<u8>(), n_ch * per),
        extra in "[0-9]{0,30}",
        order in Just((0..10).collect::<Vec<usize>>()).prop_shuffle(),
        user_id in prop::option::of(prop::option::of(id())),
        units in units(),
        seq in any::<u64>(),
        start_ms in 0i64..=i64::MAX,
        rate in prop_oneof![1e-3f64..100_000.0, Just(100_000.0), Just(250.0)],
        rate_form in any::<u8>(),
        session_id in id(),
        device_id in id(),
        seed in any::<u64>(),
        n_ch in Just(n_ch),
        per in Just(per),
    ) -> String {
        let mut rng = Rng(seed | 1);
        let scale = units.map_or(1.0, |(_, s)| s);
        let rows: Vec<String> = (0..n_ch)
            .map(|c| {
                let row: Vec<String> = (0..per)
                    .map(|i| {
                        let k = c * per + i;
                        // Values that overflow once converted to µV are rejected; those
                        // are the corrupted messages' business.
                        let v = if (values[k] * scale).is_finite() { values[k] } else { values[k] / 1e10 };
                        // Digits appended near the top of the range could round past it.
                        let form = if v.abs() > 1e300 { 0 } else { forms[k] };
                        format!("{}{}{}", rng.ws(), number_text(v, form, &extra), rng.ws())
                    })
                    .collect();
                format!("{}[{}]{}", rng.ws(), row.join(","), rng.ws())
            })
            .collect();
        let names: Vec<String> = (0..n_ch)
            .map(|c| format!("{}{}{}", rng.ws(), json_string(&format!("ch\"{c}\\é/"), &mut rng), rng.ws()))
            .collect();
        let fields: [Option<(&str, String)>; 10] = [
            Some(("schema", json_string("eeg.raw/1", &mut rng))),
            Some(("session_id", json_string(&session_id, &mut rng))),
            Some(("device_id", json_string(&device_id, &mut rng))),
            user_id.map(|u| ("user_id", u.map_or_else(|| "null".to_string(), |u| json_string(&u, &mut rng)))),
            Some(("seq", seq.to_string())),
            Some(("start_ms", start_ms.to_string())),
            Some(("sample_rate_hz", number_text(rate, rate_form, ""))),
            Some(("channels", format!("[{}]", names.join(",")))),
            units.map(|(u, _)| ("units", u.to_string())),
            Some(("samples", format!("[{}]", rows.join(",")))),
        ];
        let members: Vec<String> = order
            .iter()
            .filter_map(|&i| fields[i].as_ref())
            .map(|(k, v)| {
                let (a, b, c, d) = (rng.ws(), rng.ws(), rng.ws(), rng.ws());
                format!("{a}\"{k}\"{b}:{c}{v}{d}")
            })
            .collect();
        let (a, b) = (rng.ws(), rng.ws());
        format!("{a}{{{}}}{b}", members.join(","))
    }
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        3 => Just(Limits::default()),
        1 => (0usize..4, 0usize..6, 0usize..3000, prop_oneof![Just(250.0), Just(1e5), 0.0f64..1e3]).prop_map(
            |(max_channels, max_samples_per_channel, max_message_bytes, max_sample_rate_hz)| Limits {
                max_channels,
                max_samples_per_channel,
                max_message_bytes,
                max_sample_rate_hz,
            },
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn fast_path_takes_valid_messages_and_matches_the_reference_bit_for_bit(text in message()) {
        let limits = Limits::default();
        let want = decode_raw_reference(text.as_bytes(), &limits);
        prop_assert!(want.is_ok(), "generated message is invalid: {want:?}\n{text}");
        let fast = decode_raw_fast(text.as_bytes(), &limits);
        prop_assert!(fast.is_some(), "fast path declined a valid message:\n{text}");
        same(&Ok(fast.expect("checked")), &want)?;
        same(&decode_raw(text.as_bytes(), &limits), &want)?;
    }

    #[test]
    fn corrupted_messages_decode_exactly_as_the_reference_does(
        text in message(),
        edits in prop::collection::vec(edit(), 1..6),
        limits in limits(),
    ) {
        let mut bytes = text.into_bytes();
        for e in &edits {
            apply(&mut bytes, e);
        }
        agree(&bytes, &limits)?;
        agree(&bytes, &Limits::default())?;
    }

    #[test]
    fn valid_messages_under_tight_limits_decode_as_the_reference_does(
        text in message(),
        limits in limits(),
    ) {
        agree(text.as_bytes(), &limits)?;
    }

    #[test]
    fn random_bytes_decode_as_the_reference_does(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        agree(&bytes, &Limits::default())?;
    }
}

/// `EXAMPLE` with the samples replaced by one row per channel holding `value` then `1`.
fn with_sample(value: &str) -> String {
    EXAMPLE.replace("[0.1, 0.2]", &format!("[{value}, 1]"))
}

fn check(text: &str) -> Option<RawBatch> {
    agree(text.as_bytes(), &Limits::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn the_json_number_grammar_is_enforced_exactly() {
    for bad in [
        "+1",
        ".5",
        "1.",
        "01",
        "-01",
        "00",
        "-",
        "1e",
        "1e+",
        "1E-",
        "--1",
        "-.5",
        "1.e5",
        "NaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "inf",
        "0x10",
        "1_000",
        "1 000",
        "\u{ff11}",
        "1.5.2",
        "1e5e5",
        "1e5.5",
        "2e+-3",
        ".",
        "e5",
        "1,",
        "1ee5",
        "1e1.",
        "0.e1",
        "1e400",
        "-1e400",
        "123456789e999999999999999999",
    ] {
        let text = with_sample(bad);
        let fast = check(&text);
        assert!(fast.is_none(), "{bad:?} was taken");
        assert!(
            decode_raw(text.as_bytes(), &Limits::default()).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn every_json_number_form_decodes_bit_for_bit_like_serde() {
    let forms = [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "7",
        "-7",
        "1E-3",
        "1e-3",
        "1e+3",
        "1E3",
        "1e0003",
        "0e999999",
        "-0e-99999999999999999999",
        "1e-400",
        "-1e-400",
        "4.9e-324",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "9007199254740993",
        "9007199254740992.5",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "0.1",
        "0.30000000000000004",
        "3.141592653589793238462643383279502884197",
        "1e22",
        "1e23",
        "1.0e-22",
        "1.0e-23",
        "8.98846567431158e307",
        "0.000000000000000000000000000001234567890123456789",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
        "1.00000000000000011102230246251565404236316680908203126",
        "7.2057594037927933e16",
        "15.232492123456789",
        "-27.976745",
        "42.123456",
    ];
    for v in forms {
        let text = with_sample(v);
        assert!(check(&text).is_some(), "{v} was not taken");
        let sample = decode_raw(text.as_bytes(), &Limits::default())
            .unwrap()
            .row(0)[0];
        let serde: f64 = serde_json::from_str(v).unwrap();
        assert_eq!(sample.to_bits(), serde.to_bits(), "{v}");
    }
    // The same as sample_rate_hz, where serde reads integers as such.
    for v in [
        "250",
        "250.0",
        "2.5e2",
        "1e-3",
        "100000",
        "99999.99999999999999999",
    ] {
        let text = EXAMPLE.replace("250.0", v);
        assert!(check(&text).is_some(), "{v} was not taken");
    }
}

#[test]
fn strings_with_escapes_take_the_fast_path() {
    for id in [
        r#""s\"42""#,
        r#""s\\42""#,
        r#""s\/42""#,
        r#""caf\u00e9""#,
        r#""caf\u00E9""#,
        r#""\ud83d\ude00""#,
        r#""\uD83D\uDE00x""#,
        r#""\u20ac\u0041""#,
        "\"é€😀\"",
    ] {
        let text = EXAMPLE.replace("\"s-42\"", id);
        let b = check(&text).unwrap_or_else(|| panic!("{id} was not taken"));
        let want: String = serde_json::from_str(id).unwrap();
        assert_eq!(b.session_id, want);
    }
    let units = EXAMPLE.replace("\"uV\"", "\"\\u00b5V\"");
    assert!(check(&units).is_some());
    let schema = EXAMPLE.replace("\"eeg.raw/1\"", "\"eeg.raw\\/1\"");
    assert!(check(&schema).is_some());
}

#[test]
fn anything_unusual_is_left_to_the_reference() {
    let cases = [
        // Keys spelt with escapes, unknown, repeated, missing.
        EXAMPLE.replace("\"seq\"", "\"s\\u0065q\""),
        EXAMPLE.replace("\"seq\"", "\"sequence\""),
        EXAMPLE.replace("\"seq\": 0", "\"seq\": 0, \"seq\": 0"),
        EXAMPLE.replace("\"seq\": 0,", ""),
        EXAMPLE.replace("\"schema\": \"eeg.raw/1\",", ""),
        // Lone surrogates, bad escapes, raw control characters, invalid UTF-8.
        EXAMPLE.replace("\"s-42\"", r#""\ud800""#),
        EXAMPLE.replace("\"s-42\"", r#""\ud800\u0041""#),
        EXAMPLE.replace("\"s-42\"", r#""\udc00""#),
        EXAMPLE.replace("\"s-42\"", r#""\x""#),
        EXAMPLE.replace("\"s-42\"", r#""\u12""#),
        EXAMPLE.replace("\"s-42\"", "\"s\t42\""),
        EXAMPLE.replace("\"s-42\"", r#""s\u000042""#),
        // Other types where serde converts or rejects.
        EXAMPLE.replace("\"seq\": 0", "\"seq\": 0.0"),
        EXAMPLE.replace("\"seq\": 0", "\"seq\": -0"),
        EXAMPLE.replace("\"seq\": 0", "\"seq\": 1e2"),
        EXAMPLE.replace("\"seq\": 0", "\"seq\": 18446744073709551616"),
        EXAMPLE.replace(
            "\"start_ms\": 1732270000000",
            "\"start_ms\": 9223372036854775808",
        ),
        EXAMPLE.replace("\"start_ms\": 1732270000000", "\"start_ms\": -1"),
        EXAMPLE.replace("\"user_id\": \"u-1\"", "\"user_id\": nul"),
        EXAMPLE.replace("\"units\": \"uV\"", "\"units\": \"uv\""),
        EXAMPLE.replace("\"units\": \"uV\"", "\"units\": 1"),
        EXAMPLE.replace("250.0", "\"250\""),
        // Structure.
        EXAMPLE.replace("[0.7, 0.8]]", "[0.7, 0.8],]"),
        EXAMPLE.replace("[0.7, 0.8]", "[0.7, 0.8,]"),
        EXAMPLE.replace("[0.7, 0.8]", "[0.7]"),
        EXAMPLE.replace("[0.7, 0.8]", "[]"),
        EXAMPLE.replace("[0.7, 0.8]", "[[0.7], 0.8]"),
        EXAMPLE.replace("[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]", "[]"),
        format!("{EXAMPLE} x"),
        format!("{EXAMPLE}}}"),
        format!("\u{feff}{EXAMPLE}"),
        EXAMPLE.replace('}', ",}"),
        "{}".to_string(),
        "[]".to_string(),
        String::new(),
    ];
    for text in &cases {
        assert!(check(text).is_none(), "taken: {text}");
    }
    // Valid but outside a limit, or failing validation after parsing.
    let tight = Limits {
        max_channels: 3,
        ..Limits::default()
    };
    assert!(decode_raw_fast(EXAMPLE.as_bytes(), &tight).is_none());
    let short = Limits {
        max_samples_per_channel: 1,
        ..Limits::default()
    };
    assert!(decode_raw_fast(EXAMPLE.as_bytes(), &short).is_none());
    let small = Limits {
        max_message_bytes: EXAMPLE.len() - 1,
        ..Limits::default()
    };
    assert!(decode_raw_fast(EXAMPLE.as_bytes(), &small).is_none());
    assert!(check(&EXAMPLE.replace("\"TP10\"", "\"TP9\"")).is_none());
    assert!(
        check(
            &EXAMPLE
                .replace("[0.7, 0.8]", "[1e308, 0.8]")
                .replace("uV", "V")
        )
        .is_none()
    );
}

#[test]
fn common_messages_take_the_fast_path() {
    assert!(check(EXAMPLE).is_some());
    let fixture = std::str::from_utf8(FIXTURE).unwrap();
    let b = check(fixture).expect("the gate fixture is taken");
    assert_eq!((b.n_channels(), b.samples_per_channel()), (8, 32));
    let canonical = String::from_utf8(b.encode()).unwrap();
    assert!(check(&canonical).is_some());
    let pretty: serde_json::Value = serde_json::from_str(fixture).unwrap();
    assert!(check(&serde_json::to_string_pretty(&pretty).unwrap()).is_some());
    assert!(check(&EXAMPLE.replace("\"uV\"", "\"mV\"")).is_some());
    assert!(check(&EXAMPLE.replace("\"u-1\"", "null")).is_some());
}
