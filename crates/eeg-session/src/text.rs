//! Text from inputs (config files, state records) quoted in messages: every message is one
//! line of bounded length, whatever the input holds, so that an input cannot forge log lines
//! or flood a log.

/// Longest piece of input text quoted in a message.
const QUOTE_MAX_CHARS: usize = 64;

/// Longest message made from an input's text.
const MESSAGE_MAX_CHARS: usize = 512;

/// `s` in double quotes, escaped (so it stays on one line) and cut at [`QUOTE_MAX_CHARS`].
pub fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// `s` as written (e.g. a TOML value), on one line and cut at [`QUOTE_MAX_CHARS`].
pub(crate) fn shown(s: &str) -> String {
    let s = one_line(s);
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

/// `s` with line breaks made spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// A message on one line, cut at [`MESSAGE_MAX_CHARS`] characters: for messages that embed
/// input text we do not build ourselves (a parser's error).
pub(crate) fn message(s: &str) -> String {
    let line = one_line(s);
    match line.char_indices().nth(MESSAGE_MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_messages_stay_on_one_short_line() {
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(1000);
        assert_eq!(quoted(&long), format!("{:?}...", "x".repeat(64)));
        assert_eq!(message("a\r\nb"), "a  b");
        assert_eq!(message(&long).chars().count(), 515);
    }
}
