//! What an input is: an EDF/BDF recording, JSON lines, or a capture of binary `eeg.raw/1`,
//! from its name or, when the name does not say, from its first bytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::Error;

/// The kinds of input the library reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// An EDF, EDF+ or BDF/BDF+ recording.
    Edf,
    /// JSON lines: `eeg.raw/1` messages, or `eeg.processed/1` records (its first line says
    /// which).
    Jsonl,
    /// A capture of binary `eeg.raw/1`: length-delimited protobuf messages.
    Capture,
}

/// The kind of the input file at `path`: by its extension (`.edf`, `.bdf`, `.rec`;
/// `.jsonl`, `.ndjson`, `.json`; `.pb`, `.binpb`, any case), otherwise by its first bytes.
/// An input of no kind is bad input.
pub fn detect(path: &Path) -> Result<Kind, Error> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("edf" | "bdf" | "rec") => return Ok(Kind::Edf),
        Some("jsonl" | "ndjson" | "json") => return Ok(Kind::Jsonl),
        Some("pb" | "binpb") => return Ok(Kind::Capture),
        _ => {}
    }
    let mut head = [0u8; 16];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Error::bad(format!("{}: cannot open: {e}", path.display())))?;
    match &head[..n] {
        h if is_edf(h) => Ok(Kind::Edf),
        [b'{', ..] => Ok(Kind::Jsonl),
        h if eeg_schema::looks_delimited(h) => Ok(Kind::Capture),
        _ => Err(Error::bad(format!(
            "{}: not an EDF/BDF file, eeg.raw/1 JSONL nor a capture of binary eeg.raw/1 (use a .edf, .bdf, .jsonl or .pb name)",
            path.display()
        ))),
    }
}

/// The start of an EDF file (version "0" then spaces) or of a BDF file.
pub fn is_edf(head: &[u8]) -> bool {
    matches!(
        head,
        [b'0', b' ', ..] | [0xff, b'B', b'I', b'O', b'S', b'E', b'M', b'I', ..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fixture, scratch};

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
            assert_eq!(detect(Path::new(name)).unwrap(), kind, "{name}");
        }
    }

    #[test]
    fn edf_and_bdf_are_told_by_their_header() {
        let dir = scratch("detect_edf");
        for fixture_name in ["test_subsecond.edf", "test_generator.bdf"] {
            let copy = dir.join(format!("{fixture_name}.dat"));
            std::fs::copy(fixture(fixture_name), &copy).unwrap();
            assert_eq!(detect(&copy).unwrap(), Kind::Edf);
        }
        assert!(is_edf(b"0       X"));
        assert!(is_edf(b"\xffBIOSEMI"));
        assert!(!is_edf(b"0X"));
        assert!(!is_edf(b"\xffBIOSEM"));
    }

    #[test]
    fn an_input_of_no_kind_is_bad_input_naming_the_kinds_read() {
        let dir = scratch("detect_unknown");
        let path = dir.join("notes.dat");
        std::fs::write(&path, "not a recording\n").unwrap();
        let e = detect(&path).unwrap_err();
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            format!(
                "{}: not an EDF/BDF file, eeg.raw/1 JSONL nor a capture of binary eeg.raw/1 (use a .edf, .bdf, .jsonl or .pb name)",
                path.display()
            )
        );
        let missing = dir.join("missing.dat");
        let e = detect(&missing).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot open: ", missing.display())),
            "{e}"
        );
    }
}
