//! The one error type of the crate and the helpers that keep its messages on one line.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a message was rejected. Every variant displays as one line naming the field (or the
/// position in the text) and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The message is larger than [`crate::Limits::max_message_bytes`]; checked before parsing.
    #[error("message is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// The bytes are not JSON (or not UTF-8, or have trailing characters).
    #[error("invalid JSON at line {line} column {column}: {problem}")]
    Json {
        line: usize,
        column: usize,
        problem: String,
    },
    /// Valid JSON of the wrong shape that cannot be pinned to a top-level field, e.g. an array
    /// instead of an object, or a nested value of the wrong type.
    #[error("invalid message at line {line} column {column}: {problem}")]
    Shape {
        line: usize,
        column: usize,
        problem: String,
    },
    /// A field that is missing, unknown, repeated, of the wrong type or breaks a rule.
    #[error("field '{field}': {problem}")]
    Field {
        field: Cow<'static, str>,
        problem: String,
    },
    /// The bytes are not a Protocol Buffers message of the expected type (binary
    /// `eeg.raw/1`); `problem` is the decoder's reason, naming the message and field.
    #[error("invalid protobuf: {problem}")]
    Protobuf { problem: String },
    /// A header of the Kafka record that carried the message, e.g. an unknown
    /// `content-type`.
    #[error("header '{header}': {problem}")]
    Header {
        header: &'static str,
        problem: String,
    },
}

impl SchemaError {
    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            SchemaError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

pub(crate) fn field(name: &'static str, problem: impl Into<String>) -> SchemaError {
    SchemaError::Field {
        field: Cow::Borrowed(name),
        problem: problem.into(),
    }
}

/// Longest piece of input text quoted in a message; a 4 MiB string must not become a 4 MiB
/// log line.
const QUOTE_MAX_CHARS: usize = 64;
/// Longest problem text taken over from the JSON parser (it may quote input).
const PROBLEM_MAX_CHARS: usize = 240;

/// `s` in double quotes with control characters escaped and cut at [`QUOTE_MAX_CHARS`], so
/// that quoting input never breaks the one-line rule.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(QUOTE_MAX_CHARS) + 2);
    out.push('"');
    push_escaped(&mut out, s, QUOTE_MAX_CHARS);
    out.push('"');
    out
}

/// A field name taken from the input (an unknown key), escaped and shortened like [`quote`]
/// but without the quotes, because the message already puts it in `'...'`.
pub(crate) fn input_field_name(s: &str) -> Cow<'static, str> {
    let mut out = String::with_capacity(s.len().min(QUOTE_MAX_CHARS));
    push_escaped(&mut out, s, QUOTE_MAX_CHARS);
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, s: &str, max_chars: usize) {
    for (n, c) in s.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            return;
        }
        if c.is_control() || c == '"' || c == '\\' {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// Maps a `serde_json` error to [`SchemaError`]: syntax errors to [`SchemaError::Json`],
/// shape errors to a [`SchemaError::Field`] when the top-level field being read is known.
pub(crate) fn from_json(e: &serde_json::Error, in_field: Option<&'static str>) -> SchemaError {
    let (line, column) = (e.line(), e.column());
    let problem = json_problem(e);
    match e.classify() {
        serde_json::error::Category::Data => match in_field {
            Some(name) => field(name, format!("{problem} (line {line} column {column})")),
            None => SchemaError::Shape {
                line,
                column,
                problem,
            },
        },
        _ => SchemaError::Json {
            line,
            column,
            problem,
        },
    }
}

/// A decoder's message (e.g. prost's) kept on one line and shortened like the JSON parser's.
pub(crate) fn one_line(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(PROBLEM_MAX_CHARS));
    push_escaped(&mut out, msg, PROBLEM_MAX_CHARS);
    out
}

/// The parser's message without its position suffix (kept in separate fields), on one line,
/// with backticks turned into the quotes the rest of the messages use.
fn json_problem(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    let mut out = String::with_capacity(msg.len().min(PROBLEM_MAX_CHARS));
    for (n, c) in msg.chars().enumerate() {
        if n == PROBLEM_MAX_CHARS {
            out.push('…');
            break;
        }
        match c {
            '`' => out.push('\''),
            c if c.is_control() => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_control_characters_and_truncates() {
        assert_eq!(quote("a\nb\"c"), "\"a\\nb\\\"c\"");
        let long = quote(&"x".repeat(1000));
        assert_eq!(long.chars().count(), QUOTE_MAX_CHARS + 3);
        assert!(long.ends_with("…\""));
    }

    #[test]
    fn syntax_errors_keep_position_and_use_plain_quotes() {
        let e = serde_json::from_str::<serde_json::Value>("{\"a\": 1 \"b\"}").unwrap_err();
        assert_eq!(
            from_json(&e, Some("a")).to_string(),
            "invalid JSON at line 1 column 9: expected ',' or '}'"
        );
    }

    #[test]
    fn shape_errors_name_the_field_when_known() {
        let e = serde_json::from_str::<u64>("-1").unwrap_err();
        let text = from_json(&e, Some("seq")).to_string();
        assert!(text.starts_with("field 'seq': invalid value"), "{text}");
        assert!(!text.contains('\n'));
        let text = from_json(&e, None).to_string();
        assert!(
            text.starts_with("invalid message at line 1 column"),
            "{text}"
        );
    }
}
