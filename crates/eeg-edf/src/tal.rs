//! The time-keeping annotation of EDF+/BDF+ data records.
//!
//! Every data record's first annotation signal starts with a time-stamped
//! annotation list (TAL) whose first annotation is empty: `+<onset>\x14\x14`,
//! where the onset is the record's start in seconds after the header's start
//! date/time. Only that TAL is read; the rest of the annotation text is not.

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

#[cfg(test)]
mod tests {
    use super::timekeeping_onset_ns as parse;

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
