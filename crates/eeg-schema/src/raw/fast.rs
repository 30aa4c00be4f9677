//! The fast path of [`super::decode_raw`]: one pass over the bytes, made for `eeg.raw/1`
//! objects only.
//!
//! Its contract is narrow on purpose: it returns a batch only for messages it has read
//! completely and that pass the same [`super::finish`] as the serde decoder, and `None`
//! for anything else, however harmless, so that the serde decoder reads those and every
//! error keeps its wording. That makes any gap in this scanner cost speed, never a
//! different result. The number grammar is checked here, not left to the float parser,
//! which also reads forms JSON forbids (`+1`, `.5`, `1.`, `inf`).

use super::{KEYS, Key, Limits, RAW_SCHEMA, RawBatch, Units, Wire, finish};
use std::borrow::Cow;

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Option<RawBatch> {
    let wire = Scanner { b: bytes, i: 0 }.message(limits)?;
    finish(wire, limits).ok()
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
            // The serde decoder's table of keys: one list of the format's fields.
            let key = self.key()?;
            let &(_, field) = KEYS.iter().find(|(name, _)| name.as_bytes() == key)?;
            let bit = 1u16 << field as u16;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            self.expect(b':')?;
            self.skip_ws();
            match field {
                Key::Schema => {
                    self.expect(b'"')?;
                    schema = self.string()? == RAW_SCHEMA;
                    if !schema {
                        return None;
                    }
                }
                Key::SessionId => session_id = Some(self.owned_string()?),
                Key::DeviceId => device_id = Some(self.owned_string()?),
                Key::UserId => {
                    user_id = if self.null() {
                        None
                    } else {
                        Some(self.owned_string()?)
                    }
                }
                Key::Seq => seq = Some(self.unsigned()?),
                Key::StartMs => start_ms = Some(i64::try_from(self.unsigned()?).ok()?),
                Key::SampleRateHz => sample_rate_hz = Some(self.number()?),
                Key::Channels => channels = Some(self.channels(limits)?),
                Key::Units => {
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
                Key::Samples => {
                    samples = Some(self.samples(limits, channels.as_ref().map(Vec::len))?)
                }
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
    /// The digits are gathered into an integer w on the way, with a power of ten 10^e. The
    /// forms samples come in are converted here, each exactly rounded to nearest, ties to
    /// even, as serde_json does:
    /// - w <= 2^53 and |e| <= 22: both are exact f64 values, so one IEEE multiplication or
    ///   division rounds correctly (Clinger's fast path, the first step of correct parsers);
    /// - 2^53 < w < 2^64 and -22 <= e < 0, the 16 to 19 digits of shortest round-trip
    ///   forms: [`quotient_by_pow10`], by integer division;
    /// - e = 0: the conversion from u64, which rounds correctly.
    ///
    /// Everything else (more than 19 digits, larger exponents) goes to fast_float2, which is
    /// correctly rounded for all inputs. A number out of f64's range is an error in
    /// serde_json (fast_float2 gives infinity), so it ends the fast path.
    #[inline(always)]
    fn number(&mut self) -> Option<f64> {
        let b = self.b;
        let start = self.i;
        let negative = b.get(start) == Some(&b'-');
        let mut i = start + usize::from(negative);
        let mut w: u64 = 0;
        let int_start = i;
        // The integer part of a sample is short; byte by byte is cheaper than a wide load.
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            w = w.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            i += 1;
        }
        let mut n_digits = i - int_start;
        if n_digits == 0 || (n_digits > 1 && b.get(int_start) == Some(&b'0')) {
            return None;
        }
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
        if simple {
            let v = if w <= 1 << 53 && (-22..=22).contains(&exp) {
                let m = w as f64;
                if exp < 0 {
                    m / POW10[(-exp) as usize]
                } else {
                    m * POW10[exp as usize]
                }
            } else if (-22..0).contains(&exp) {
                // w > 2^53 here: the digits of a shortest round-trip form, typically.
                quotient_by_pow10(w, (-exp) as usize)
            } else if exp == 0 {
                // Conversion from an integer rounds to nearest, ties to even.
                w as f64
            } else {
                return self.long_number(start);
            };
            // v >= 0 on every path above; setting the sign bit needs no branch, which a
            // random sign would mispredict half of the time.
            return Some(f64::from_bits(v.to_bits() | (u64::from(negative) << 63)));
        }
        self.long_number(start)
    }

    /// The number from `start` to the cursor, already checked against the JSON grammar, by
    /// fast_float2.
    #[cold]
    fn long_number(&self, start: usize) -> Option<f64> {
        let v: f64 = fast_float2::parse(self.b.get(start..self.i)?).ok()?;
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

    /// `samples` into one channel-major buffer: (values, rows, values per row). Not inlined,
    /// so that the hot loop gets the registers to itself.
    #[inline(never)]
    fn samples(
        &mut self,
        limits: &Limits,
        channels: Option<usize>,
    ) -> Option<(Vec<f64>, usize, usize)> {
        self.expect(b'[')?;
        // A value takes at least two bytes (a digit and a separator): memory stays in
        // proportion to the message whatever the names claim. Row 0 starts from a guess;
        // once its length is known, the other rows are reserved in one step.
        let most = |s: &Self| (s.b.len() - s.i) / 2;
        let mut flat = Vec::with_capacity(most(self).min(1024));
        let mut rows = 0;
        let mut per_row = 0;
        loop {
            self.skip_ws();
            let row_bytes_start = self.i;
            self.expect(b'[')?;
            let row_start = flat.len();
            let row_max = if rows == 0 {
                limits.max_samples_per_channel
            } else {
                per_row
            };
            self.skip_ws();
            loop {
                if flat.len() == flat.capacity() {
                    // Past the estimate: room for all the values the rest of the message can
                    // hold, in one step rather than by doubling.
                    flat.reserve_exact(most(self).max(1));
                }
                flat.push(self.number()?);
                if flat.len() - row_start > row_max {
                    return None;
                }
                match self.token()? {
                    b',' => self.skip_ws(),
                    b']' => break,
                    _ => return None,
                }
            }
            let n = flat.len() - row_start;
            if rows == 0 {
                per_row = n;
                let more_rows = match channels {
                    Some(c) => c.saturating_sub(1),
                    // Names after the samples: as many rows as the bytes left hold.
                    None => (self.b.len() - self.i) / (self.i - row_bytes_start),
                };
                let more = more_rows
                    .min(limits.max_channels)
                    .saturating_mul(n)
                    .min(most(self));
                flat.reserve_exact(more);
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
        // A guess well over the mark is not kept for the life of the batch.
        if flat.capacity() > 2 * flat.len() {
            flat.shrink_to_fit();
        }
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

/// 5^0..=5^22, all below 2^52.
const POW5: [u64; 23] = {
    let mut t = [1u64; 23];
    let mut i = 1;
    while i < t.len() {
        t[i] = t[i - 1] * 5;
        i += 1;
    }
    t
};

/// `w / 10^k` correctly rounded, for `w` in 1..2^64 and `k` in 1..=22, by integer
/// arithmetic: 10^k = 5^k * 2^k, so one division by 5^k of `w` shifted left gives a
/// quotient of 63 or 64 bits, whose low bits and remainder decide the rounding exactly.
#[inline(always)]
fn quotient_by_pow10(w: u64, k: usize) -> f64 {
    let d = POW5[k];
    // d's bit length is `bits`; shifting the normalised w left by bits - 1 puts the
    // quotient in [2^62, 2^64).
    let bits = 64 - d.leading_zeros();
    let lz = w.leading_zeros();
    let n = u128::from(w << lz) << (bits - 1);
    let q = (n / u128::from(d)) as u64;
    let exact = n == u128::from(q) * u128::from(d);
    let shift = 64 - q.leading_zeros() - 53;
    let mut m = q >> shift;
    let low = q & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if low > half || (low == half && (!exact || m & 1 == 1)) {
        m += 1;
    }
    // value = m * 2^(shift - lz - (bits - 1) - k), always a normal number here.
    let mut e2 = i64::from(shift) - i64::from(lz) - i64::from(bits - 1) - k as i64;
    if m == 1 << 53 {
        m >>= 1;
        e2 += 1;
    }
    f64::from_bits((((e2 + 1075) as u64) << 52) | (m & ((1 << 52) - 1)))
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

    /// `w / 10^k` as fast_float2 reads it from text.
    fn reference(w: u64, k: usize) -> f64 {
        fast_float2::parse(format!("{w}e-{k}")).unwrap()
    }

    #[test]
    fn quotients_by_powers_of_ten_are_correctly_rounded() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mantissas of every size from 1 bit to 64.
            let w = (x >> (x % 64)).max(1);
            let k = (x >> 32) as usize % 22 + 1;
            assert_eq!(
                quotient_by_pow10(w, k).to_bits(),
                reference(w, k).to_bits(),
                "{w}e-{k}"
            );
        }
    }

    #[test]
    fn quotients_exactly_halfway_round_to_even() {
        // An odd 54-bit n over 2^t lies halfway between two neighbouring f64 values. As
        // decimal text it is n * 5^t * 10^z with t + z decimals, which fits 64 bits when
        // 5^t * 10^z < 2^10.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut ties = 0;
        for (t, z) in [
            (0, 1),
            (0, 2),
            (0, 3),
            (1, 0),
            (1, 1),
            (1, 2),
            (2, 0),
            (2, 1),
            (3, 0),
            (4, 0),
        ] {
            let scale = 5u64.pow(t) * 10u64.pow(z);
            let k = (t + z) as usize;
            for _ in 0..2_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = (1u64 << 53) | (x >> 11) | 1;
                let tie = n * scale;
                // The hardware's own conversion of n rounds ties to even, and the scaling
                // by 2^-t is exact: an oracle independent of any parser.
                let want = (n as f64 / 2f64.powi(t as i32)).to_bits();
                ties += 1;
                for w in [tie - 1, tie, tie + 1] {
                    let got = quotient_by_pow10(w, k);
                    assert_eq!(got.to_bits(), reference(w, k).to_bits(), "{w}e-{k}");
                    if w == tie {
                        assert_eq!(got.to_bits(), want, "{w}e-{k}");
                        assert_eq!(want & 1, 0, "ties go to the even neighbour");
                    }
                }
            }
        }
        assert_eq!(ties, 20_000);
        // The largest mantissas, where rounding up carries into the next binade.
        for k in 1..=22 {
            for w in [
                u64::MAX,
                u64::MAX - 1,
                (1 << 63) + 1,
                1 << 63,
                99_999_999_999_999_999,
            ] {
                assert_eq!(
                    quotient_by_pow10(w, k).to_bits(),
                    reference(w, k).to_bits(),
                    "{w}e-{k}"
                );
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
