//! What can stop a run, told apart where a caller acts differently: input it should fix,
//! an output it cannot write, and a failure of the library itself.

use std::io;

/// Why a run stopped. Every message is one line; a run that fails leaves no output file
/// behind (see [`crate::Output`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input, the config or an option cannot be used: the message names the file and
    /// the line, record, message, field or key (options by their command-line flag, as
    /// people meet them: `--channels`, `--session-id`).
    #[error("{0}")]
    BadInput(String),
    /// An output cannot be created, written or put in place; `source` is the system's
    /// error, when there is one (a closed pipe stays recognisable as one).
    #[error("{message}")]
    Output {
        message: String,
        #[source]
        source: Option<io::Error>,
    },
    /// A thread of the library stopped before its work was done (a bug).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The caller's input, config or options are at fault (the command line's exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::BadInput(_))
    }

    pub(crate) fn bad(message: impl Into<String>) -> Error {
        Error::BadInput(message.into())
    }

    pub(crate) fn output(message: impl Into<String>, source: io::Error) -> Error {
        Error::Output {
            message: message.into(),
            source: Some(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_error_keeps_the_system_error_as_its_source() {
        let e = Error::output("writing output", io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(e.to_string(), "writing output");
        let source = std::error::Error::source(&e).expect("a source");
        let io = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);
        assert!(!e.is_bad_input());
        assert!(Error::bad("x.edf: truncated").is_bad_input());
    }
}
