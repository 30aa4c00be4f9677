//! The annotations of EDF+/BDF+ data records.
//!
//! An annotation signal holds time-stamped annotation lists (TALs), each
//! `+<onset>[\x15<duration>]\x14<text>\x14[<text>\x14...]\x00`, padded with
//! `\x00` to the signal's length. Every data record's first annotation signal
//! starts with a TAL whose first annotation is empty: `+<onset>\x14\x14`, where
//! the onset is the record's start in seconds after the header's start
//! date/time ([`timekeeping_onset_ns`]). Every other non-empty text is an
//! annotation ([`annotations`]).

const SEP: u8 = 0x14;
const NS_PER_S: i64 = 1_000_000_000;

fn describe(b: Option<&u8>) -> String {
    match b {
        None => "the end of the annotation signal".to_owned(),
        Some(&b) if b.is_ascii_graphic() || b == b' ' => format!("'{}'", char::from(b)),
        Some(&b) => format!("byte 0x{b:02x}"),
    }
}

/// Parses the onset of the time-keeping TAL at the start of `bytes`, in
/// nanoseconds. Digits beyond nanosecond resolution are ignored. On failure
/// returns the position of the offending byte and what is wrong with it.
pub(crate) fn timekeeping_onset_ns(bytes: &[u8]) -> Result<i64, (usize, String)> {
    let negative = match bytes.first() {
        Some(b'+') => false,
        Some(b'-') => true,
        other => {
            return Err((
                0,
                format!(
                    "expected '+' or '-' starting the onset, found {}",
                    describe(other)
                ),
            ));
        }
    };
    let mut pos = 1;
    let out_of_range = |pos| (pos, "onset is out of range".to_owned());

    let mut seconds: i64 = 0;
    let int_start = pos;
    while let Some(&b) = bytes.get(pos).filter(|b| b.is_ascii_digit()) {
        seconds = seconds
            .checked_mul(10)
            .and_then(|s| s.checked_add(i64::from(b - b'0')))
            .filter(|&s| s < i64::MAX / NS_PER_S)
            .ok_or_else(|| out_of_range(pos))?;
        pos += 1;
    }
    if pos == int_start {
        return Err((
            pos,
            format!(
                "expected a digit in the onset, found {}",
                describe(bytes.get(pos))
            ),
        ));
    }

    let mut fraction_ns: i64 = 0;
    if bytes.get(pos) == Some(&b'.') {
        pos += 1;
        let mut scale = NS_PER_S / 10;
        while let Some(&b) = bytes.get(pos).filter(|b| b.is_ascii_digit()) {
            fraction_ns += i64::from(b - b'0') * scale;
            scale /= 10;
            pos += 1;
        }
    }

    for what in [
        "after the onset",
        "closing the empty time-keeping annotation",
    ] {
        match bytes.get(pos) {
            Some(&SEP) => pos += 1,
            other => {
                return Err((
                    pos,
                    format!("expected byte 0x14 {what}, found {}", describe(other)),
                ));
            }
        }
    }

    let magnitude = seconds * NS_PER_S + fraction_ns;
    Ok(if negative { -magnitude } else { magnitude })
}

/// One annotation of a data record: what happened, when and for how long. Its text is
/// borrowed from the record's bytes, so reading a record's annotations allocates nothing
/// (a record may hold millions of them: the reader would otherwise hold some 35 bytes for
/// each 2 of the file).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation<'a> {
    /// Seconds after the recording's first sample (the TAL writes them after the header's
    /// start date/time; the reader takes off the first record's fraction of a second).
    pub onset_s: f64,
    /// Seconds, when the TAL gives a duration.
    pub duration_s: Option<f64>,
    /// The text as written (UTF-8; an invalid byte becomes U+FFFD).
    pub text: std::borrow::Cow<'a, str>,
}

const DURATION: u8 = 0x15;

/// Hands `f` every annotation of one annotation signal's bytes, in order: each
/// non-empty text of each TAL, with its TAL's onset (as written, after the
/// header's start) and duration (the time-keeping TAL's empty first text is
/// not an annotation). On failure returns the position of the offending byte
/// and what is wrong with it; the annotations before it were handed over.
pub(crate) fn annotations<'a>(
    bytes: &'a [u8],
    f: &mut impl FnMut(Annotation<'a>),
) -> Result<(), (usize, String)> {
    // The end of a number or a text: the next separator or the end of the signal.
    let end_of = |from: usize| {
        bytes[from..]
            .iter()
            .position(|&b| b == SEP || b == DURATION || b == 0)
            .map_or(bytes.len(), |n| from + n)
    };
    let number = |from: usize, signed: bool| -> Result<(f64, usize), (usize, String)> {
        let end = end_of(from);
        let digits = match bytes[from..end].split_first() {
            Some((b'+' | b'-', rest)) if signed => rest,
            _ if signed => &[][..],
            _ => &bytes[from..end],
        };
        let well_formed = digits.iter().any(u8::is_ascii_digit)
            && digits.iter().all(|&b| b.is_ascii_digit() || b == b'.')
            && digits.iter().filter(|&&b| b == b'.').count() <= 1;
        let value = std::str::from_utf8(&bytes[from..end])
            .ok()
            .filter(|_| well_formed)
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        let what = if signed {
            "an onset like +1.25"
        } else {
            "a duration like 0.5"
        };
        value.map(|v| (v, end)).ok_or_else(|| {
            (
                from,
                format!("expected {what}, found {}", describe(bytes.get(from))),
            )
        })
    };
    let mut pos = 0;
    while pos < bytes.len() && bytes[pos] != 0 {
        let (onset_s, mut p) = number(pos, true)?;
        let mut duration_s = None;
        if bytes.get(p) == Some(&DURATION) {
            let (d, q) = number(p + 1, false)?;
            duration_s = Some(d);
            p = q;
        }
        if bytes.get(p) != Some(&SEP) {
            return Err((
                p,
                format!(
                    "expected byte 0x14 after the onset, found {}",
                    describe(bytes.get(p))
                ),
            ));
        }
        p += 1;
        // Texts, each closed by 0x14, until the TAL's closing 0x00.
        loop {
            match bytes.get(p) {
                Some(0) => {
                    p += 1;
                    break;
                }
                None => {
                    return Err((
                        p,
                        "expected byte 0x00 closing the TAL, found the end of the annotation signal"
                            .to_owned(),
                    ));
                }
                Some(_) => {
                    let end = bytes[p..]
                        .iter()
                        .position(|&b| b == SEP || b == 0)
                        .map_or(bytes.len(), |n| p + n);
                    if bytes.get(end) != Some(&SEP) {
                        return Err((
                            end,
                            format!(
                                "expected byte 0x14 closing an annotation, found {}",
                                describe(bytes.get(end))
                            ),
                        ));
                    }
                    if end > p {
                        f(Annotation {
                            onset_s,
                            duration_s,
                            text: String::from_utf8_lossy(&bytes[p..end]),
                        });
                    }
                    p = end + 1;
                }
            }
        }
        pos = p;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::timekeeping_onset_ns as parse;
    use super::{Annotation, annotations};

    #[test]
    fn every_tal_of_a_signal_gives_its_annotations() {
        let bytes =
            b"+0\x14\x14\x00+0.5\x15.25\x14Stim A\x14second\x14\x00-1\x14Before\x14\x00\x00\x00";
        let mut out = Vec::new();
        annotations(bytes, &mut |a| out.push(a)).unwrap();
        fn a(onset_s: f64, duration_s: Option<f64>, text: &str) -> Annotation<'_> {
            Annotation {
                onset_s,
                duration_s,
                text: text.into(),
            }
        }
        assert_eq!(
            out,
            [
                a(0.5, Some(0.25), "Stim A"),
                a(0.5, Some(0.25), "second"),
                a(-1.0, None, "Before")
            ]
        );
    }

    #[test]
    fn a_broken_tal_names_its_byte() {
        let mut f = |_| {};
        let (at, problem) = annotations(b"+1\x14Open", &mut f).unwrap_err();
        assert_eq!(at, 7);
        assert!(problem.contains("closing an annotation"), "{problem}");
        let (at, problem) = annotations(b"x1\x14\x14\x00", &mut f).unwrap_err();
        assert_eq!(at, 0);
        assert!(problem.contains("onset"), "{problem}");
    }

    #[test]
    fn parses_onsets_with_and_without_fraction() {
        assert_eq!(parse(b"+0\x14\x14\0"), Ok(0));
        assert_eq!(parse(b"+598\x14\x14\0"), Ok(598_000_000_000));
        assert_eq!(parse(b"+0.3945312\x14\x14\0+2\x14x\x14\0"), Ok(394_531_200));
        assert_eq!(parse(b"-1.5\x14\x14"), Ok(-1_500_000_000));
        assert_eq!(parse(b"+1.1234567891\x14\x14"), Ok(1_123_456_789));
    }

    #[test]
    fn reports_the_offending_byte() {
        assert_eq!(parse(b"").unwrap_err().0, 0);
        assert_eq!(parse(b"\0\0\0").unwrap_err().0, 0);
        assert_eq!(parse(b"+\x14\x14").unwrap_err().0, 1);
        assert_eq!(parse(b"+12x\x14").unwrap_err().0, 3);
        assert_eq!(parse(b"+12\x14\0").unwrap_err().0, 4);
        assert_eq!(parse(b"+12\x14").unwrap_err().0, 4);
        assert_eq!(
            parse(b"+99999999999999999999\x14\x14").unwrap_err().1,
            "onset is out of range"
        );
    }
}
