//! The fast path of [`super::decode_raw`]: one pass over the bytes, made for `eeg.raw/1`
//! objects only.
//!
//! Its contract is narrow on purpose: it returns a batch only for messages it has read
//! completely and that pass the same [`super::finish`] as the serde decoder, and `None`
//! for anything else, however harmless, so that the serde decoder reads those and every
//! error keeps its wording. That makes any gap in this scanner cost speed, never a
//! different result. The number grammar is checked here, not left to the float parser,
//! which also reads forms JSON forbids (`+1`, `.5`, `1.`, `inf`).

use super::{Limits, RAW_SCHEMA, RawBatch, Units, Wire, finish};
use std::borrow::Cow;

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Option<RawBatch> {
    let wire = Scanner { b: bytes, i: 0 }.message(limits)?;
    finish(wire, limits).ok()
}

/// Position of each field's bit in the set of fields seen.
#[derive(Clone, Copy)]
enum Field {
    Schema,
    SessionId,
    DeviceId,
    UserId,
    Seq,
    StartMs,
    SampleRateHz,
    Channels,
    Units,
    Samples,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// The next byte that is not JSON whitespace, consumed.
    #[inline(always)]
    fn token(&mut self) -> Option<u8> {
        self.skip_ws();
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline(always)]
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.token()? == c).then_some(())
    }

    fn message(mut self, limits: &Limits) -> Option<Wire> {
        self.expect(b'{')?;
        let mut seen = 0u16;
        let mut schema = false;
        let mut session_id = None;
        let mut device_id = None;
        let mut user_id = None;
        let mut seq = None;
        let mut start_ms = None;
        let mut sample_rate_hz = None;
        let mut channels: Option<Vec<String>> = None;
        let mut units = Units::Microvolts;
        let mut samples = None;
        loop {
            self.expect(b'"')?;
            let field = match self.key()? {
                b"schema" => Field::Schema,
                b"session_id" => Field::SessionId,
                b"device_id" => Field::DeviceId,
                b"user_id" => Field::UserId,
                b"seq" => Field::Seq,
                b"start_ms" => Field::StartMs,
                b"sample_rate_hz" => Field::SampleRateHz,
                b"channels" => Field::Channels,
                b"units" => Field::Units,
                b"samples" => Field::Samples,
                _ => return None,
            };
            let bit = 1u16 << field as u16;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            self.expect(b':')?;
            self.skip_ws();
            match field {
                Field::Schema => {
                    self.expect(b'"')?;
                    schema = self.string()? == RAW_SCHEMA;
                    if !schema {
                        return None;
                    }
                }
                Field::SessionId => session_id = Some(self.owned_string()?),
                Field::DeviceId => device_id = Some(self.owned_string()?),
                Field::UserId => {
                    user_id = if self.null() {
                        None
                    } else {
                        Some(self.owned_string()?)
                    }
                }
                Field::Seq => seq = Some(self.unsigned()?),
                Field::StartMs => start_ms = Some(i64::try_from(self.unsigned()?).ok()?),
                Field::SampleRateHz => sample_rate_hz = Some(self.number()?),
                Field::Channels => channels = Some(self.channels(limits)?),
                Field::Units => {
                    if !self.null() {
                        self.expect(b'"')?;
                        units = match &*self.string()? {
                            "uV" | "µV" | "μV" => Units::Microvolts,
                            "mV" => Units::Millivolts,
                            "V" => Units::Volts,
                            _ => return None,
                        };
                    }
                }
                Field::Samples => samples = Some(self.samples(limits)?),
            }
            match self.token()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        self.skip_ws();
        if self.i != self.b.len() || !schema {
            return None;
        }
        let (samples, rows, per_row) = samples?;
        Some(Wire {
            session_id: session_id?,
            device_id: device_id?,
            user_id,
            seq: seq?,
            start_ms: start_ms?,
            sample_rate_hz: sample_rate_hz?,
            channels: channels?,
            units,
            samples,
            rows,
            per_row,
        })
    }

    /// An object key, after its opening quote. Every known key is plain ASCII, so a key
    /// with an escape is left to the serde decoder, which also names unknown keys.
    fn key(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.i..)?;
        let n = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
        if rest[n] != b'"' {
            return None;
        }
        self.i += n + 1;
        Some(&rest[..n])
    }

    /// `null`, consumed; false (nothing consumed) for anything else.
    fn null(&mut self) -> bool {
        let found = self.b.get(self.i..self.i + 4) == Some(b"null");
        if found {
            self.i += 4;
        }
        found
    }

    fn owned_string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        Some(self.string()?.into_owned())
    }

    /// A string's value, after its opening quote: borrowed unless it has escapes. Raw control
    /// characters and invalid UTF-8 are errors in JSON, so they end the fast path.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let rest = self.b.get(self.i..)?;
        let n = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        match rest[n] {
            b'"' => {
                self.i += n + 1;
                std::str::from_utf8(&rest[..n]).ok().map(Cow::Borrowed)
            }
            b'\\' => {
                self.i += n;
                self.escaped(rest[..n].to_vec()).map(Cow::Owned)
            }
            _ => None,
        }
    }

    /// The rest of a string with escapes, appended to `out`, at a backslash.
    #[cold]
    fn escaped(&mut self, mut out: Vec<u8>) -> Option<String> {
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    self.i += 1;
                    let c = self.peek()?;
                    self.i += 1;
                    match c {
                        b'"' | b'\\' | b'/' => out.push(c),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let unit = self.hex4()?;
                            let code = match unit {
                                0xD800..=0xDBFF => {
                                    // Only a complete surrogate pair; serde rejects a lone
                                    // half or reports it, and that is its business.
                                    if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                        return None;
                                    }
                                    self.i += 2;
                                    let low = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return None;
                                    }
                                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => unit,
                            };
                            let ch = char::from_u32(code)?;
                            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + char::from(d).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    /// A JSON integer without sign, fraction or exponent that fits a u64. serde reads any
    /// other number as another type, which `seq` and `start_ms` reject.
    fn unsigned(&mut self) -> Option<u64> {
        let b = self.b;
        let mut i = self.i;
        let mut v: u64 = match b.get(i)? {
            b'0' => 0,
            &c @ b'1'..=b'9' => u64::from(c - b'0'),
            _ => return None,
        };
        i += 1;
        if v != 0 {
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                i += 1;
            }
        }
        if let Some(b'.' | b'e' | b'E' | b'0'..=b'9') = b.get(i) {
            return None;
        }
        self.i = i;
        Some(v)
    }

    /// A JSON number, correctly rounded to f64. The grammar is JSON's exactly: an optional
    /// `-`, `0` or digits not starting with `0`, an optional `.` with at least one digit, an
    /// optional exponent with at least one digit.
    ///
    /// The digits are gathered into an integer on the way. When it and the power of ten
    /// are both exact in an f64 (at most 2^53, and 10^-22..=10^22), one IEEE multiplication
    /// or division gives the correctly rounded value (Clinger's fast path, the first step of
    /// every correct parser); any other number goes to fast_float2, which is correctly
    /// rounded for all inputs. A number out of f64's range is an error in serde_json
    /// (fast_float2 gives infinity), so it ends the fast path.
    #[inline(always)]
    fn number(&mut self) -> Option<f64> {
        let b = self.b;
        let start = self.i;
        let negative = b.get(start) == Some(&b'-');
        let mut i = start + usize::from(negative);
        let mut w: u64 = 0;
        let int_start = i;
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(b, i, &mut w),
            _ => return None,
        }
        let mut n_digits = i - int_start;
        let mut exp: i64 = 0;
        if b.get(i) == Some(&b'.') {
            let frac_start = i + 1;
            i = digits(b, frac_start, &mut w);
            let n = i - frac_start;
            if n == 0 {
                return None;
            }
            n_digits += n;
            exp = -(n as i64);
        }
        let mut simple = n_digits <= 19;
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            let exp_negative = b.get(i) == Some(&b'-');
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let exp_start = i;
            let mut e: u64 = 0;
            i = digits(b, exp_start, &mut e);
            let n = i - exp_start;
            if n == 0 {
                return None;
            }
            // Longer exponents are left to fast_float2, which saturates them correctly; they
            // are not added up here, where they could overflow.
            if n <= 4 {
                let e = e as i64;
                exp += if exp_negative { -e } else { e };
            } else {
                simple = false;
            }
        }
        self.i = i;
        if simple && w <= 1 << 53 && (-22..=22).contains(&exp) {
            let m = w as f64;
            let v = if exp < 0 {
                m / POW10[(-exp) as usize]
            } else {
                m * POW10[exp as usize]
            };
            return Some(if negative { -v } else { v });
        }
        let v: f64 = fast_float2::parse(&b[start..i]).ok()?;
        v.is_finite().then_some(v)
    }

    fn channels(&mut self, limits: &Limits) -> Option<Vec<String>> {
        self.expect(b'[')?;
        let mut names = Vec::with_capacity(8);
        loop {
            names.push(self.owned_string()?);
            if names.len() > limits.max_channels {
                return None;
            }
            match self.token()? {
                b',' => {}
                b']' => return Some(names),
                _ => return None,
            }
        }
    }

    /// `samples` into one channel-major buffer: (values, rows, values per row).
    fn samples(&mut self, limits: &Limits) -> Option<(Vec<f64>, usize, usize)> {
        self.expect(b'[')?;
        // A value takes at least two bytes (a digit and a separator), so this is enough for
        // the whole array: no reallocation while parsing, and memory in proportion to the
        // message. The excess is given back at the end.
        let most = (self.b.len() - self.i) / 2;
        let mut flat = Vec::with_capacity(
            most.min(
                limits
                    .max_channels
                    .saturating_mul(limits.max_samples_per_channel),
            ),
        );
        let mut rows = 0;
        let mut per_row = 0;
        loop {
            self.expect(b'[')?;
            let row_start = flat.len();
            let row_max = if rows == 0 {
                limits.max_samples_per_channel
            } else {
                per_row
            };
            loop {
                self.skip_ws();
                flat.push(self.number()?);
                if flat.len() - row_start > row_max {
                    return None;
                }
                match self.token()? {
                    b',' => {}
                    b']' => break,
                    _ => return None,
                }
            }
            let n = flat.len() - row_start;
            if rows == 0 {
                per_row = n;
            } else if n != per_row {
                return None;
            }
            rows += 1;
            if rows > limits.max_channels {
                return None;
            }
            match self.token()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
        flat.shrink_to_fit();
        Some((flat, rows, per_row))
    }
}

/// 10^0..=10^22, every one exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The ASCII digits from `i` on, accumulated into `w` (wrapping: the caller counts the
/// digits and does not use `w` past 19 of them); returns the index after the last digit.
/// Eight bytes at a time: the digits of a sample come in short runs (before and after the
/// point) and long ones, and either way one load covers most of them.
#[inline(always)]
fn digits(b: &[u8], mut i: usize, w: &mut u64) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let v = u64::from_le_bytes(chunk);
        let other = non_digits(v);
        if other == 0 {
            *w = w
                .wrapping_mul(100_000_000)
                .wrapping_add(eight_digit_value(v));
            i += 8;
            continue;
        }
        // The first non-digit byte ends the run: the n digits before it become the low end
        // of an eight-digit number whose first 8 - n digits are zeros.
        let n = (other.trailing_zeros() / 8) as usize;
        if n > 0 {
            let shift = 8 * (8 - n) as u32;
            let padded = (v << shift) | (0x3030_3030_3030_3030 >> (64 - shift));
            *w = w
                .wrapping_mul(POW10_U64[n])
                .wrapping_add(eight_digit_value(padded));
        }
        return i + n;
    }
    while let Some(&c @ b'0'..=b'9') = b.get(i) {
        *w = w.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        i += 1;
    }
    i
}

/// 10^0..=10^7.
const POW10_U64: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// The top bit of each byte of `v` that is not an ASCII digit: a byte above `9` sets it once
/// 0x46 is added, one below `0` once 0x30 is taken away, one of 0x80 or more in the second.
/// Carries and borrows only start at such bytes, so the lowest flagged byte is the first
/// non-digit (higher flags may be spurious; only the lowest is used).
#[inline(always)]
fn non_digits(v: u64) -> u64 {
    let above = v.wrapping_add(0x4646_4646_4646_4646);
    let below = v.wrapping_sub(0x3030_3030_3030_3030);
    (above | below) & 0x8080_8080_8080_8080
}

/// The value of eight ASCII digits read little-endian (the first digit in the low byte):
/// adjacent digits are combined into pairs, pairs into fours, fours into eight, each step
/// one multiplication of the lanes.
#[inline(always)]
fn eight_digit_value(v: u64) -> u64 {
    const LOW: u64 = 0x0000_00FF_0000_00FF;
    let v = v.wrapping_sub(0x3030_3030_3030_3030);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let hi = (v & LOW).wrapping_mul(100 + (1_000_000 << 32));
    let lo = ((v >> 16) & LOW).wrapping_mul(1 + (10_000 << 32));
    u64::from(((hi.wrapping_add(lo)) >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_digits_are_recognised_and_valued() {
        for s in [
            b"00000000",
            b"12345678",
            b"99999999",
            b"90000001",
            b"07060504",
        ] {
            let v = u64::from_le_bytes(*s);
            assert_eq!(non_digits(v), 0);
            let want: u64 = std::str::from_utf8(s).unwrap().parse().unwrap();
            assert_eq!(eight_digit_value(v), want);
        }
        for i in 0..8 {
            for bad in [b'/', b':', b'.', b'e', b' ', 0, 0x80, 0xff, b'0' + 0x80] {
                let mut s = *b"12345678";
                s[i] = bad;
                let other = non_digits(u64::from_le_bytes(s));
                assert_eq!(other.trailing_zeros() / 8, i as u32, "{s:?}");
            }
        }
    }

    #[test]
    fn digits_reads_runs_of_any_length() {
        for n in 0..=40 {
            let text: String = (0..n)
                .map(|k| char::from(b'0' + (k * 7 % 10) as u8))
                .collect();
            // Followed by a separator and more text, or by the end of the input.
            for tail in [",1234567890]", ""] {
                let padded = format!("{text}{tail}");
                let mut w = 0;
                assert_eq!(digits(padded.as_bytes(), 0, &mut w), n);
                if n <= 19 && n > 0 {
                    assert_eq!(w, text.parse::<u64>().unwrap(), "{text}");
                }
            }
        }
    }
}
