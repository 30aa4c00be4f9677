//! The delivery ledger of one partition: which outputs are waiting for the broker's
//! acknowledgement, on behalf of which input, and so which offset may be committed.
//!
//! The rules the delivery promise rests on, and the only place they are written:
//!
//! 1. Every output is produced on behalf of one entry: a raw message, or a checkpoint (a set
//!    of session snapshots). An entry is settled when all its outputs are acknowledged.
//! 2. A checkpoint names the offset it makes safe to commit: the earliest boundary of the
//!    partition's sessions when it was taken (or past the last message when no session
//!    needs anything).
//! 3. A checkpoint's snapshots are *sent* only once every entry before it is settled. A
//!    snapshot says "the windows before mine are published": written earlier, a crash could
//!    leave the snapshot stored and one of those windows lost, and the restored session
//!    would never publish it again.
//! 4. The commit offset moves to a checkpoint's offset only once the checkpoint and every
//!    entry before it are settled; it never moves past an entry that is not.
//! 5. A failed delivery never settles its entry: nothing after it is ever committed, and the
//!    caller stops (the next owner of the partition reads from the last commit).
//!
//! Acknowledgements arrive on the producer's thread, in any order, so a [`Ticket`] is a pair
//! of atomics that the delivery callback updates; everything else is owned by the
//! partition's worker.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The outputs of one ledger entry, counted until the broker has acknowledged each.
#[derive(Debug)]
pub struct Ticket {
    /// Outputs not yet acknowledged, plus one while the entry is still producing.
    remaining: AtomicUsize,
    failed: AtomicBool,
}

impl Ticket {
    fn new() -> Arc<Ticket> {
        Arc::new(Ticket {
            remaining: AtomicUsize::new(1),
            failed: AtomicBool::new(false),
        })
    }

    /// One more output is about to be handed to the producer.
    pub fn expect_one(&self) {
        self.remaining.fetch_add(1, Ordering::AcqRel);
    }

    /// The broker acknowledged one output. True when that settled the entry, so that whoever
    /// waits for it can be woken then and not on every acknowledgement.
    pub fn ack(&self) -> bool {
        self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && !self.failed()
    }

    /// One output is lost (its delivery failed for good, or it could not be produced): the
    /// entry never settles.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Every output is acknowledged and the entry is complete.
    pub fn settled(&self) -> bool {
        !self.failed() && self.remaining.load(Ordering::Acquire) == 0
    }

    /// The entry produced all its outputs.
    fn close(&self) {
        let _ = self.ack();
    }
}

/// An output produced on behalf of a checkpoint once everything before it is settled.
#[derive(Debug, Clone, PartialEq)]
pub struct StateWrite {
    pub session_id: String,
    /// The encoded snapshot; `None` for the tombstone of an evicted session.
    pub payload: Option<Vec<u8>>,
    /// Raw offset of the last message processed when it was taken.
    pub position: i64,
    /// For a tombstone: the `seq` the session expected next.
    pub next_seq: u64,
}

#[derive(Debug)]
enum Entry {
    Input {
        offset: i64,
        ticket: Arc<Ticket>,
    },
    Checkpoint {
        commit: i64,
        writes: Vec<StateWrite>,
        /// Set once the writes are sent.
        ticket: Option<Arc<Ticket>>,
    },
}

/// One partition's entries in the order they were made.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: VecDeque<Entry>,
    /// The last commit offset [`Ledger::advance`] returned.
    committed: Option<i64>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Opens the entry of the raw message at `offset`; its outputs are counted on the
    /// returned ticket. [`Ledger::close`] ends it.
    pub fn input(&mut self, offset: i64) -> Arc<Ticket> {
        let ticket = Ticket::new();
        self.entries.push_back(Entry::Input {
            offset,
            ticket: Arc::clone(&ticket),
        });
        ticket
    }

    /// Ends an entry's production: from here on only acknowledgements settle it.
    pub fn close(ticket: &Ticket) {
        ticket.close();
    }

    /// Queues a checkpoint that makes `commit` safe to commit, with the snapshots to write
    /// once everything before it is settled.
    pub fn checkpoint(&mut self, commit: i64, writes: Vec<StateWrite>) {
        self.entries.push_back(Entry::Checkpoint {
            commit,
            writes,
            ticket: None,
        });
    }

    /// Drops settled entries from the front, sends the writes of a checkpoint that reached
    /// the front (each through `send`, with the checkpoint's ticket, on which `send` counts
    /// it as it does any output), and returns the new commit offset when one was reached.
    /// Stops at the first send that fails.
    pub fn advance<E>(
        &mut self,
        mut send: impl FnMut(&StateWrite, &Arc<Ticket>) -> Result<(), E>,
    ) -> Result<Option<i64>, E> {
        let mut reached = None;
        loop {
            match self.entries.front_mut() {
                #[cfg(not(feature = "sim-canary"))]
                Some(Entry::Input { ticket, .. }) if ticket.settled() => {}
                // The planted bug: an input counts as settled whatever is in flight.
                #[cfg(feature = "sim-canary")]
                Some(Entry::Input { .. }) => {}
                Some(Entry::Checkpoint {
                    ticket: slot @ None,
                    writes,
                    ..
                }) => {
                    let t = Ticket::new();
                    let mut sent = Ok(());
                    for w in writes.iter() {
                        if let Err(e) = send(w, &t) {
                            // Failed, the ticket never settles and holds the checkpoint.
                            t.fail();
                            sent = Err(e);
                            break;
                        }
                    }
                    t.close();
                    *slot = Some(t);
                    // Sent: the bytes are the producer's now.
                    *writes = Vec::new();
                    sent?;
                    continue;
                }
                Some(Entry::Checkpoint {
                    ticket: Some(ticket),
                    commit,
                    ..
                }) if ticket.settled() => {
                    reached = Some(*commit);
                }
                _ => break,
            }
            self.entries.pop_front();
        }
        // Never backwards within one ledger (a later checkpoint's commit is never lower, but
        // say so here rather than rely on it).
        match (reached, self.committed) {
            (Some(c), Some(old)) if c <= old => Ok(None),
            (Some(c), _) => {
                self.committed = Some(c);
                Ok(Some(c))
            }
            (None, _) => Ok(None),
        }
    }

    /// Some output was lost: nothing from that entry on can be committed.
    pub fn failed(&self) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Input { ticket, .. } => ticket.failed(),
            Entry::Checkpoint { ticket, .. } => ticket.as_ref().is_some_and(|t| t.failed()),
        })
    }

    /// Nothing is waiting: every entry is settled and dropped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries not yet dropped.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The offset of the oldest raw message whose outputs are not all acknowledged.
    pub fn oldest_unsettled(&self) -> Option<i64> {
        self.entries.iter().find_map(|e| match e {
            Entry::Input { offset, ticket } if !ticket.settled() => Some(*offset),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(id: &str) -> StateWrite {
        StateWrite {
            session_id: id.into(),
            payload: Some(b"{}".to_vec()),
            position: 0,
            next_seq: 0,
        }
    }

    /// Sends into a list of tickets, to be acknowledged by the test.
    fn sent(
        list: &mut Vec<Arc<Ticket>>,
    ) -> impl FnMut(&StateWrite, &Arc<Ticket>) -> Result<(), ()> + '_ {
        |_, t| {
            t.expect_one();
            list.push(Arc::clone(t));
            Ok(())
        }
    }

    #[test]
    fn snapshots_wait_for_every_earlier_output_and_the_commit_for_the_snapshots() {
        let mut l = Ledger::new();
        let a = l.input(10);
        a.expect_one();
        Ledger::close(&a);
        let b = l.input(11);
        b.expect_one();
        Ledger::close(&b);
        l.checkpoint(11, vec![write("s"), write("t")]);
        let mut out = Vec::new();
        assert_eq!(l.advance(sent(&mut out)), Ok(None));
        assert!(
            out.is_empty(),
            "snapshots sent before the outputs they follow"
        );
        b.ack();
        assert_eq!(l.advance(sent(&mut out)), Ok(None));
        assert!(
            out.is_empty(),
            "snapshots sent before the first input settled"
        );
        a.ack();
        assert_eq!(l.advance(sent(&mut out)), Ok(None));
        assert_eq!(out.len(), 2, "both snapshots sent once the inputs settled");
        out[0].ack();
        assert_eq!(l.advance(sent(&mut Vec::new())), Ok(None));
        out[1].ack();
        assert_eq!(l.advance(sent(&mut Vec::new())), Ok(Some(11)));
        assert!(l.is_empty());
    }

    #[test]
    fn a_failed_output_holds_the_commit_for_ever() {
        let mut l = Ledger::new();
        let a = l.input(1);
        a.expect_one();
        Ledger::close(&a);
        l.checkpoint(2, Vec::new());
        a.fail();
        a.ack();
        assert_eq!(l.advance(sent(&mut Vec::new())), Ok(None));
        assert!(l.failed());
        assert_eq!(l.oldest_unsettled(), Some(1));
    }

    #[test]
    fn an_open_entry_is_not_settled_even_with_every_output_acknowledged() {
        let mut l = Ledger::new();
        let a = l.input(1);
        a.expect_one();
        a.ack();
        l.checkpoint(2, Vec::new());
        assert_eq!(l.advance(sent(&mut Vec::new())), Ok(None));
        Ledger::close(&a);
        assert_eq!(l.advance(sent(&mut Vec::new())), Ok(Some(2)));
    }

    #[test]
    fn a_send_that_fails_stops_and_holds_the_checkpoint() {
        let mut l = Ledger::new();
        l.checkpoint(5, vec![write("s")]);
        assert_eq!(l.advance(|_, _| Err("full")), Err("full"));
        assert!(l.failed());
        assert_eq!(l.advance(sent(&mut Vec::new())), Ok(None));
    }

    #[test]
    fn the_commit_never_goes_back() {
        let mut l = Ledger::new();
        l.checkpoint(5, Vec::new());
        assert_eq!(l.advance(sent(&mut Vec::new())), Ok(Some(5)));
        l.checkpoint(5, Vec::new());
        l.checkpoint(4, Vec::new());
        assert_eq!(l.advance(sent(&mut Vec::new())), Ok(None));
    }
}
