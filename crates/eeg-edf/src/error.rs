use std::io;

/// Everything that can go wrong reading or writing an EDF/BDF file.
///
/// Every variant carries the file name given to the reader or writer, and its
/// `Display` is a single line that says where (header field and byte range, data
/// record, byte offset) and what is wrong, so it can be logged or shown as is.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EdfError {
    /// The file could not be opened or its length could not be determined.
    #[error("{file}: cannot open: {source}")]
    Open {
        file: String,
        #[source]
        source: io::Error,
    },

    /// An I/O error other than a premature end of file.
    #[error("{file}: I/O error {context}: {source}")]
    Io {
        file: String,
        /// What was being done, e.g. "reading data record 12".
        context: String,
        #[source]
        source: io::Error,
    },

    /// The file ends inside the header.
    #[error(
        "{file}: header truncated: {needed} bytes are needed ({what}) but only {found} are present"
    )]
    HeaderTooShort {
        file: String,
        found: u64,
        needed: u64,
        what: String,
    },

    /// A header field is malformed or holds a value the format does not allow.
    #[error("{file}: header field '{field}'{sig} (bytes {start}..{end}): {problem}", sig = describe_signal(.signal))]
    HeaderField {
        file: String,
        /// The field's name as in the EDF specification.
        field: &'static str,
        /// For per-signal fields: the signal's index (0-based, counting annotation
        /// signals) and label.
        signal: Option<(usize, String)>,
        start: u64,
        end: u64,
        problem: String,
    },

    /// The file is shorter than the header says (checked at open when the file
    /// length is known).
    #[error(
        "{file}: truncated: header declares {declared_records} data records ({expected_len} bytes) \
         but the file has {file_len} bytes ({complete_records} complete data records)"
    )]
    Truncated {
        file: String,
        declared_records: u64,
        expected_len: u64,
        file_len: u64,
        complete_records: u64,
    },

    /// The stream ended inside a data record (when the file length was not known
    /// in advance, or the file shrank while being read).
    #[error("{file}: truncated: data record {record} of {n_records} ends before its last byte")]
    RecordTruncated {
        file: String,
        record: u64,
        n_records: u64,
    },

    /// The time-keeping annotation of an EDF+/BDF+ data record is malformed.
    #[error(
        "{file}: data record {record}: malformed time-keeping annotation at byte offset {offset}: {problem}"
    )]
    Annotation {
        file: String,
        record: u64,
        /// Offset of the offending byte from the start of the file.
        offset: u64,
        problem: String,
    },

    /// A previous call failed part-way through a data record, so the stream
    /// position is no longer at a record boundary.
    #[error("{file}: reader cannot continue after an earlier error")]
    Poisoned { file: String },

    /// The writer was given a specification that cannot be written.
    #[error("{file}: cannot write: {problem}")]
    InvalidSpec { file: String, problem: String },

    /// `write_record` was given data that does not match the specification.
    #[error("{file}: cannot write data record {record}: {problem}")]
    InvalidRecord {
        file: String,
        record: u64,
        problem: String,
    },

    /// `finish` was called after a different number of records than declared.
    #[error("{file}: header declares {declared} data records but {written} were written")]
    RecordCount {
        file: String,
        declared: u64,
        written: u64,
    },
}

fn describe_signal(signal: &Option<(usize, String)>) -> String {
    match signal {
        Some((index, label)) => format!(" of signal {index} {label:?}"),
        None => String::new(),
    }
}
