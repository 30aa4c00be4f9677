//! What the service reads off a consumed message besides its key and payload.

use rdkafka::message::{Headers, Message};

/// The name of the header that says how a raw message is encoded.
pub const CONTENT_TYPE: &str = "content-type";

/// The value of the message's `content-type` header (the name compared without regard to
/// case, as HTTP does, since producers spell it either way), which chooses the decoder.
pub fn content_type<M: Message>(m: &M) -> Option<&[u8]> {
    header_value(m.headers()?.iter().map(|h| (h.key, h.value)), CONTENT_TYPE)
}

/// The value of the first header called `name` (any case) among `headers`; an empty value
/// for a header without one.
pub fn header_value<'m>(
    mut headers: impl Iterator<Item = (&'m str, Option<&'m [u8]>)>,
    name: &str,
) -> Option<&'m [u8]> {
    headers
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_name_is_matched_in_any_case_and_the_first_wins() {
        let headers = [
            ("trace", Some(&b"x"[..])),
            ("Content-Type", Some(&b"application/x-protobuf"[..])),
            ("content-type", Some(&b"application/json"[..])),
        ];
        assert_eq!(
            header_value(headers.into_iter(), CONTENT_TYPE),
            Some(&b"application/x-protobuf"[..])
        );
    }

    #[test]
    fn a_header_without_a_value_is_empty_and_a_missing_one_is_none() {
        let headers = [("CONTENT-TYPE", None)];
        assert_eq!(
            header_value(headers.into_iter(), CONTENT_TYPE),
            Some(&b""[..])
        );
        assert_eq!(header_value(std::iter::empty(), CONTENT_TYPE), None);
    }
}
