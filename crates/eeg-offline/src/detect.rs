//! What an input is: an EDF/BDF recording, JSON lines, or a capture of binary `eeg.raw/1`,
//! from its name or, when the name does not say, from its first bytes.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::Error;

/// The kinds of input the library reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An EDF, EDF+ or BDF/BDF+ recording.
    Edf,
    /// JSON lines: `eeg.raw/1` messages, or `eeg.processed/1` records (its first line says
    /// which).
    Jsonl,
    /// A capture of binary `eeg.raw/1`: length-delimited protobuf messages.
    Capture,
}

/// What a caller reads, for the message about an input it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accepts {
    /// Recordings and raw messages (processing, replay).
    Raw,
    /// Those, and `eeg.processed/1` records (a report).
    RawOrProcessed,
}

/// The kind of the input file at `path`. Its extension decides when it names a kind (`.edf`,
/// `.bdf`, `.rec`; `.jsonl`, `.ndjson`, `.json`; `.pb`, `.binpb`, any case); otherwise its
/// first bytes do ([`sniff`]). An input of no kind is bad input, with a message listing what
/// `accepts` reads.
pub fn detect(path: &Path, accepts: Accepts) -> Result<Kind, Error> {
    if let Some(kind) = by_extension(path) {
        return Ok(kind);
    }
    let limit = eeg_schema::Limits::default().max_message_bytes;
    let head = File::open(path)
        .and_then(|mut f| read_head(&mut f, limit))
        .map_err(|e| Error::bad(format!("{}: cannot open: {e}", path.display())))?;
    sniff(&head).ok_or_else(|| unknown(path, accepts))
}

fn by_extension(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "edf" | "bdf" | "rec" => Some(Kind::Edf),
        "jsonl" | "ndjson" | "json" => Some(Kind::Jsonl),
        "pb" | "binpb" => Some(Kind::Capture),
        _ => None,
    }
}

fn unknown(path: &Path, accepts: Accepts) -> Error {
    let jsonl = match accepts {
        Accepts::Raw => "eeg.raw/1 JSONL",
        Accepts::RawOrProcessed => "eeg.raw/1 or eeg.processed/1 JSONL",
    };
    Error::bad(format!(
        "{}: not an EDF/BDF file, {jsonl} nor a capture of binary eeg.raw/1 (use a .edf, .bdf, .jsonl or .pb name)",
        path.display()
    ))
}

/// The first bytes of an input, as many as [`sniff`] needs: 16, or when they start with a
/// length prefix, the whole first message they announce (at most `limit` bytes of it).
pub fn read_head(input: &mut impl Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(16);
    input.by_ref().take(16).read_to_end(&mut head)?;
    if is_edf(&head) {
        return Ok(head);
    }
    if let Some((length, prefix)) = varint(&head).filter(|&(_, n)| n <= MAX_PREFIX) {
        let end = prefix as u64 + length.min(limit as u64);
        if end > head.len() as u64 {
            input
                .by_ref()
                .take(end - head.len() as u64)
                .read_to_end(&mut head)?;
        }
    }
    Ok(head)
}

/// The kind of an input from its first bytes ([`read_head`]): EDF/BDF by the start of its
/// header, a capture by a length prefix and a first message whose fields are well formed
/// and include `schema` holding `eeg.raw/1` (in whatever order the fields come, as protobuf
/// allows), JSON lines by a `{` (after any blank space).
pub fn sniff(head: &[u8]) -> Option<Kind> {
    if is_edf(head) {
        Some(Kind::Edf)
    } else if looks_like_capture(head) {
        Some(Kind::Capture)
    } else if head.trim_ascii_start().first() == Some(&b'{') {
        Some(Kind::Jsonl)
    } else {
        None
    }
}

/// The start of an EDF file (version "0" then spaces) or of a BDF file.
pub fn is_edf(head: &[u8]) -> bool {
    matches!(
        head,
        [b'0', b' ', ..] | [0xff, b'B', b'I', b'O', b'S', b'E', b'M', b'I', ..]
    )
}

/// Bytes of a capture's length prefix, at most (as `eeg_schema::DelimitedReader` reads it).
const MAX_PREFIX: usize = 5;

/// A varint at the start of `bytes`: its value and length, or `None` when it is cut short
/// or longer than ten bytes.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Whether `head` starts with a length prefix and then a `RawBatch` (eeg_raw_v1.proto):
/// every field of the first message (as far as `head` holds it) has a valid wire type, the
/// known fields have theirs, and `schema` (field 1) holds `eeg.raw/1`. Field order is free.
fn looks_like_capture(head: &[u8]) -> bool {
    const SCHEMA: &[u8] = b"eeg.raw/1";
    let Some((length, prefix)) = varint(head).filter(|&(_, n)| n <= MAX_PREFIX) else {
        return false;
    };
    let end = usize::try_from(length)
        .ok()
        .and_then(|l| l.checked_add(prefix))
        .map_or(head.len(), |e| e.min(head.len()));
    let mut rest = &head[prefix..end];
    let mut schema = None;
    while !rest.is_empty() {
        let Some((tag, n)) = varint(rest) else {
            break;
        };
        rest = &rest[n..];
        let (field, wire) = (tag >> 3, tag & 7);
        // The wire type of each field of RawBatch: strings, repeated strings and the
        // samples' messages are length-delimited, seq and start_ms varints, the rate a double.
        let expected = match field {
            0 => return false,
            1..=4 | 8..=12 => Some(2),
            5 | 6 => Some(0),
            7 => Some(1),
            _ => None,
        };
        if expected.is_some_and(|w| w != wire) {
            return false;
        }
        let skip = match wire {
            0 => match varint(rest) {
                Some((_, n)) => n,
                None => break,
            },
            1 => 8,
            2 => {
                let Some((len, n)) = varint(rest) else {
                    break;
                };
                let value = &rest[n..];
                if field == 1 {
                    // Cut short by the end of `head`: as far as it goes.
                    let seen = value.len().min(len as usize);
                    schema = Some(len == SCHEMA.len() as u64 && SCHEMA.starts_with(&value[..seen]));
                }
                match usize::try_from(len).ok().and_then(|l| l.checked_add(n)) {
                    Some(s) => s,
                    None => return false,
                }
            }
            5 => 4,
            _ => return false,
        };
        if skip > rest.len() {
            break;
        }
        rest = &rest[skip..];
    }
    schema == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fixture, scratch};

    /// A field of a protobuf message: the tag byte (field number << 3 | wire type 2), the
    /// length and the bytes.
    fn text_field(number: u8, value: &[u8]) -> Vec<u8> {
        let mut f = vec![(number << 3) | 2, value.len() as u8];
        f.extend_from_slice(value);
        f
    }

    /// `fields` as a length-delimited message.
    fn delimited(fields: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = fields.concat();
        assert!(body.len() < 128, "one-byte prefix");
        let mut out = vec![body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn the_extension_decides_in_any_case() {
        for (name, kind) in [
            ("a.edf", Kind::Edf),
            ("A.BDF", Kind::Edf),
            ("a.rec", Kind::Edf),
            ("a.jsonl", Kind::Jsonl),
            ("a.NDJSON", Kind::Jsonl),
            ("a.json", Kind::Jsonl),
            ("a.pb", Kind::Capture),
            ("a.binpb", Kind::Capture),
        ] {
            // Not opened: the files do not exist.
            assert_eq!(
                detect(Path::new(name), Accepts::Raw).unwrap(),
                kind,
                "{name}"
            );
        }
    }

    #[test]
    fn edf_and_bdf_are_told_by_their_header() {
        let dir = scratch("detect_edf");
        for fixture_name in ["test_subsecond.edf", "test_generator.bdf"] {
            let copy = dir.join(format!("{fixture_name}.dat"));
            std::fs::copy(fixture(fixture_name), &copy).unwrap();
            assert_eq!(detect(&copy, Accepts::Raw).unwrap(), Kind::Edf);
        }
        assert!(is_edf(b"0       X"));
        assert!(is_edf(b"\xffBIOSEMI"));
        assert!(!is_edf(b"0X"));
        assert!(!is_edf(b"\xffBIOSEM"));
    }

    #[test]
    fn json_lines_are_told_by_their_brace() {
        assert_eq!(sniff(b"{\"schema\": \"eeg.raw/1\"}\n"), Some(Kind::Jsonl));
        assert_eq!(sniff(b"\n  {\"schema\": \"eeg.raw/1\"}"), Some(Kind::Jsonl));
        assert_eq!(sniff(b"session_id,device_id"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn a_capture_is_told_whatever_the_order_of_its_fields() {
        let schema = text_field(1, b"eeg.raw/1");
        let session = text_field(2, b"s-42");
        let device = text_field(3, b"bud-7");
        // seq = 3 (field 5, varint) and the rate (field 7, a double: 250.0).
        let seq = vec![5 << 3, 3];
        let mut rate = vec![(7 << 3) | 1];
        rate.extend_from_slice(&250.0f64.to_le_bytes());
        for fields in [
            vec![schema.clone(), session.clone(), device.clone()],
            vec![session.clone(), device.clone(), schema.clone()],
            vec![rate.clone(), seq.clone(), session.clone(), schema.clone()],
            // An unknown field is skipped, as protobuf does: number 20, a varint (its tag,
            // 160, takes two bytes), value 1.
            vec![vec![0xa0, 0x01, 1], schema.clone()],
        ] {
            let bytes = delimited(&fields);
            assert_eq!(sniff(&bytes), Some(Kind::Capture), "{bytes:?}");
        }
        // Another schema, no schema, or a known field of the wrong wire type: not a capture.
        let other = text_field(1, b"eeg.raw/2");
        assert_eq!(sniff(&delimited(&[session.clone(), other])), None);
        assert_eq!(sniff(&delimited(&[session.clone(), device.clone()])), None);
        let seq_as_text = text_field(5, b"3");
        assert_eq!(sniff(&delimited(&[seq_as_text, schema.clone()])), None);
        // A message announced longer than the head holds, schema seen: a capture.
        let mut cut = delimited(&[session.clone(), schema.clone()]);
        cut[0] += 40;
        assert_eq!(sniff(&cut), Some(Kind::Capture));
    }

    #[test]
    fn a_capture_as_eeg_schema_writes_it_is_told_from_its_json() {
        let text = r#"{"schema": "eeg.raw/1", "session_id": "s", "device_id": "d", "seq": 0, "start_ms": 1700000000000, "sample_rate_hz": 250.0, "channels": ["Fz"], "samples": [[1.0, 2.0]]}"#;
        let batch =
            eeg_schema::decode_raw(text.as_bytes(), &eeg_schema::Limits::default()).unwrap();
        let mut message = Vec::new();
        batch.encode_protobuf(&mut message);
        let mut capture = Vec::new();
        eeg_schema::write_delimited(&message, &mut capture).unwrap();
        assert_eq!(sniff(&capture), Some(Kind::Capture));
        assert_eq!(sniff(text.as_bytes()), Some(Kind::Jsonl));
    }

    #[test]
    fn a_capture_file_without_a_pb_name_is_read_to_its_first_message() {
        let dir = scratch("detect_capture");
        // The schema field last, after a session id long enough to be past 16 bytes.
        let long_id = vec![b'x'; 60];
        let bytes = delimited(&[text_field(2, &long_id), text_field(1, b"eeg.raw/1")]);
        let path = dir.join("stream.bin");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(detect(&path, Accepts::Raw).unwrap(), Kind::Capture);
        let head = read_head(&mut bytes.as_slice(), 1 << 20).unwrap();
        assert_eq!(head, bytes);
        // No more than the limit is read.
        let head = read_head(&mut bytes.as_slice(), 20).unwrap();
        assert_eq!(head.len(), 21);
    }

    #[test]
    fn an_input_of_no_kind_is_bad_input_naming_the_kinds_read() {
        let dir = scratch("detect_unknown");
        let path = dir.join("table.csv");
        std::fs::write(&path, "session_id,device_id\n").unwrap();
        let shown = path.display();
        let e = detect(&path, Accepts::Raw).unwrap_err();
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            format!(
                "{shown}: not an EDF/BDF file, eeg.raw/1 JSONL nor a capture of binary eeg.raw/1 (use a .edf, .bdf, .jsonl or .pb name)"
            )
        );
        // A report reads eeg.processed/1 records too, and says so.
        let e = detect(&path, Accepts::RawOrProcessed).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{shown}: not an EDF/BDF file, eeg.raw/1 or eeg.processed/1 JSONL nor a capture of binary eeg.raw/1 (use a .edf, .bdf, .jsonl or .pb name)"
            )
        );
        let missing = dir.join("missing.dat");
        let e = detect(&missing, Accepts::Raw).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot open: ", missing.display())),
            "{e}"
        );
    }
}
