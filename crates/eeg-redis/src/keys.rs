//! Key and channel names, and the cluster slot each key lives in.
//!
//! Every name of a session carries the session id as a hash tag (`{s-42}`), so in cluster
//! mode all of a session's keys share one slot and its writes go out as one pipeline.

use crate::config::ConfigError;

/// Names under one prefix (`REDIS_KEY_PREFIX`, default `eeg:`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Refuses a prefix with a brace: it would become the hash tag of every key.
    pub fn new(prefix: &str) -> Result<Keys, ConfigError> {
        if prefix.contains(['{', '}']) {
            return Err(ConfigError::Prefix {
                prefix: prefix.to_string(),
            });
        }
        Ok(Keys {
            prefix: prefix.to_string(),
        })
    }

    /// The session's latest `eeg.processed/1` record (a string, with the TTL).
    pub fn latest(&self, session: &str) -> String {
        format!("{}session:{{{session}}}:latest", self.prefix)
    }

    /// The session's trigger events (a capped stream, with the TTL).
    pub fn events(&self, session: &str) -> String {
        format!("{}session:{{{session}}}:events", self.prefix)
    }

    /// The session's `eeg.epoch/1` records (a capped stream, with the TTL).
    pub fn epochs(&self, session: &str) -> String {
        format!("{}session:{{{session}}}:epochs", self.prefix)
    }

    /// The pub/sub channel each of the session's windows is published on.
    pub fn live(&self, session: &str) -> String {
        format!("{}live:{{{session}}}", self.prefix)
    }

    /// The user's sessions (a sorted set scored by their latest window's end, with the TTL).
    pub fn user(&self, user: &str) -> String {
        format!("{}user:{{{user}}}:sessions", self.prefix)
    }
}

/// The cluster slot of `key`, as Redis computes it: CRC16 (XMODEM) of the hash tag (the text
/// between the first `{` and the next `}`, when not empty) or else of the whole key,
/// modulo 16384.
pub fn slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &b[open + 1..];
        let close = rest.iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(b)) % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_documents() {
        // From the Redis cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_ne!(slot("foo{}{bar}"), slot("{bar}"));
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
    }

    #[test]
    fn a_sessions_keys_share_a_slot() {
        let k = Keys::new("eeg:").unwrap();
        // An id that starts with `}` makes an empty tag, and its keys are hashed whole: the
        // writer groups commands by the slot computed here, so it still never crosses slots.
        for id in ["s-42", "a}b", "{y", "ü{}"] {
            let s = slot(&k.latest(id));
            assert_eq!(slot(&k.events(id)), s, "{id:?}");
        }
        assert_eq!(k.latest("s-42"), "eeg:session:{s-42}:latest");
        assert_eq!(k.live("s-42"), "eeg:live:{s-42}");
        assert_eq!(k.user("u-1"), "eeg:user:{u-1}:sessions");
        assert!(Keys::new("eeg{x}:").is_err());
    }
}
