//! Keeping a partition's messages consecutive as they come from the consumer.

/// Every offset is taken once, in order. A message past the next expected offset means the
/// consumer skipped some (seen after pausing and resuming a partition, whatever the client
/// library or broker does with the position): the partition is read again from the expected
/// offset, once. If the same offsets are missing after that, they do not exist on the broker
/// (deleted, or transaction markers) and the gap is accepted.
#[derive(Debug, Default)]
pub struct OffsetGuard {
    expected: Option<i64>,
    /// The expected offset of the last read-again, so one gap is read again only once.
    refetched: Option<i64>,
}

/// What to do with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Take the message.
    Take,
    /// Already taken: drop it.
    Repeat,
    /// Offsets were skipped: drop it and read again from this offset.
    Refetch(i64),
}

impl OffsetGuard {
    pub fn check(&mut self, offset: i64) -> Check {
        match self.expected {
            Some(e) if offset < e => return Check::Repeat,
            Some(e) if offset > e && self.refetched != Some(e) => {
                self.refetched = Some(e);
                return Check::Refetch(e);
            }
            _ => {}
        }
        self.expected = Some(offset + 1);
        Check::Take
    }

    /// The partition will be read from `offset` next.
    pub fn restart_at(&mut self, offset: i64) {
        self.expected = Some(offset);
        self.refetched = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_hands_every_offset_over_once_in_order() {
        let mut g = OffsetGuard::default();
        assert_eq!(g.check(10), Check::Take);
        assert_eq!(g.check(11), Check::Take);
        assert_eq!(g.check(11), Check::Repeat);
        // The consumer skipped 12 and 13: read again from 12, once.
        assert_eq!(g.check(14), Check::Refetch(12));
        assert_eq!(g.check(12), Check::Take);
        assert_eq!(g.check(13), Check::Take);
        assert_eq!(g.check(14), Check::Take);
    }

    #[test]
    fn offsets_missing_after_reading_again_are_a_real_gap() {
        let mut g = OffsetGuard::default();
        assert_eq!(g.check(3), Check::Take);
        assert_eq!(g.check(7), Check::Refetch(4));
        // Read again from 4, the broker's next offset is still 7: accepted.
        assert_eq!(g.check(7), Check::Take);
        assert_eq!(g.check(8), Check::Take);
        // A later gap is read again once more.
        assert_eq!(g.check(10), Check::Refetch(9));
    }

    #[test]
    fn a_restart_sets_the_next_offset() {
        let mut g = OffsetGuard::default();
        assert_eq!(g.check(100), Check::Take);
        g.restart_at(40);
        assert_eq!(g.check(101), Check::Refetch(40));
        assert_eq!(g.check(40), Check::Take);
    }
}
