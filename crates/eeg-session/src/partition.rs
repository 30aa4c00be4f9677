//! One partition of the raw topic as the service sees it, with no IO: messages in offset
//! order go in, records, trigger events, dead letters and session snapshots come out through
//! an [`Outbox`], and the [`Ledger`] says which offset may be committed.
//!
//! The Kafka service wraps one [`PartitionCore`] per assigned partition; the deterministic
//! simulation in `tests/sim.rs` drives the same code through crashes, rebalances and late or
//! failed acknowledgements.
//!
//! # Idle sessions and time
//! A session is evicted when a message of the partition carries a timestamp more than
//! `session_idle` after the session's last message. The clock is the messages' own
//! timestamps (Kafka's), not the wall clock of the instance, so whoever processes the
//! partition, and however often it restarts, evicts at the same message and publishes the
//! same records. A partition that receives nothing keeps its sessions until its next message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use eeg_dsp::{Checkpoint, ProcessingConfig, RestoreError, SessionProcessor, Window, WindowSink};
use eeg_schema::{
    EpochRecord, Event, Limits, ProcessedRecord, RawBatch, RawMessage, SessionMeta, TriggerEvent,
    encode_processed,
};

use crate::admission::{Admission, ResetReason, Session, Sessions};
use crate::budget::{Full, MemoryBudget, Mib, Reservation};
use crate::config::{EpochsConfig, EventsConfig};
use crate::counters::Counters;
use crate::epochs::{EpochOutput, EventState, SessionEpochs, Taken};
use crate::fanout::{Fanout, Produced, Sink};
use crate::ledger::{Ledger, StateWrite, Ticket};
use crate::snapshot::{
    NEXT_SEQ_HEADER, POSITION_HEADER, SCHEMA, Snapshot, StateRecord, StateValue,
};
use crate::triggers::{TriggerEngine, TriggerState};

/// What a partition's core needs to know.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub processing: ProcessingConfig,
    pub triggers: Arc<TriggerEngine>,
    /// A session whose last message is older than this (in message time) is evicted.
    pub session_idle_ms: u64,
    pub limits: Limits,
    /// The raw topic's name and this partition's number, for dead letters' headers.
    pub source_topic: String,
    pub partition: i32,
    /// Largest output the producer takes (its `message.max.bytes`): a dead letter that would
    /// not fit carries a prefix of the message instead of all of it.
    pub max_output_bytes: usize,
    /// The instance's memory for session state, shared by its partitions.
    pub budget: Arc<MemoryBudget>,
    /// Checkpoints kept per session at most (see [`MAX_CHECKPOINTS`]).
    pub max_checkpoints: usize,
    /// Epochs cut around events and published on [`Topic::Epochs`]; `None`: events are
    /// placed and counted, and no epoch is cut.
    pub epochs: Option<EpochsConfig>,
    pub events: EventsConfig,
}

/// Checkpoints a session keeps at most by default. A session keeps one per message from
/// the one holding its next window's first sample on, which for a device sending a window
/// in 32 messages or fewer is all of them; a session sending many tiny messages would
/// otherwise keep a copy of its filter state for each (1,024 channels: 64 KiB per
/// 4 KiB message). Beyond the bound every other one is dropped: the boundary a snapshot
/// records may then be an earlier message, which a restart reads again without publishing
/// anything twice (a snapshot carries the windows already published).
pub const MAX_CHECKPOINTS: usize = 64;

/// Where an output goes; the transport maps these to topics and partitions (`State` to this
/// partition's number on the state topic, the others by key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Processed,
    Triggers,
    Epochs,
    DeadLetter,
    State,
}

/// One output. `payload: None` is a tombstone.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    pub topic: Topic,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
    /// For a processed record, the Unix time (ms) of the end of its window's last sample:
    /// where the latency from the signal to its record starts.
    pub window_end_ms: Option<i64>,
}

impl Output<'_> {
    /// Bytes of key, value and headers: what counts against a producer's message limit
    /// (less its framing).
    pub fn size(&self) -> usize {
        self.payload.map_or(0, <[u8]>::len)
            + self.key.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// The producer as the core sees it.
pub trait Outbox {
    type Error;

    /// Hands one output to the producer. Its acknowledgement must reach `ticket`
    /// ([`Ticket::ack`]), or its failure ([`Ticket::fail`]); an `Err` here means it was not
    /// taken at all.
    fn send(&mut self, out: &Output<'_>, ticket: &Arc<Ticket>) -> Result<(), Self::Error>;
}

/// A raw message, as fetched.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub offset: i64,
    /// The message's Kafka timestamp, ms.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// The record's `content-type` header, which says how the payload is encoded (none:
    /// JSON; see [`eeg_schema::RawEncoding::from_content_type`]).
    pub content_type: Option<&'a [u8]>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Processed in its session (possibly after a reset of the session's state).
    Processed {
        produced: Produced,
        reset: Option<ResetReason>,
        new_session: bool,
    },
    /// A `seq` its session had already processed. `Some` when the count of such batches sent
    /// again from upstream (not read again by this service after a restart) for the session
    /// reaches 1, 10, 100, ...: worth telling a person once, then rarely.
    Duplicate(Option<Duplicates>),
    /// Sent to the dead-letter topic for this reason.
    DeadLetter(String),
    /// At or below an offset this core already handled (a fetch that went back); ignored.
    Repeat,
    /// Below the committed offset and needed by no restored session: already accounted for.
    AccountedFor,
    /// Not taken: the session it starts does not fit in the instance's memory budget now.
    /// Nothing was recorded; the same message must be handed in again (when memory is
    /// released) before any later one of the partition.
    Held(Full),
    /// An `eeg.event/1` message, taken; `epochs` records were published for it now.
    Event { fate: EventFate, epochs: u64 },
}

/// What became of an event message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFate {
    /// Placed in its session's samples.
    Placed,
    /// Waiting for the batch that holds its onset.
    Waiting,
    /// A copy of an event its session had: dropped.
    Copy,
    /// Later than `events.max_delay_s`: counted, and recorded as `too_late` when epoched;
    /// `first` for the session's first (worth telling a person once).
    Late { first: bool },
    /// Its session has sent no batch yet: it waits for the first, at most the session idle
    /// time (then it is a dead letter).
    BeforeSession,
}

/// Batches of one session that upstream sent again (e.g. a recording replayed under a
/// session id already used): they are dropped, and nothing is published for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicates {
    pub session_id: String,
    /// The `seq` of the batch just dropped.
    pub seq: u64,
    /// The `seq` the session expects next.
    pub next_seq: u64,
    /// Batches of the session dropped so far.
    pub count: u64,
}

/// The result of [`PartitionCore::handle`].
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub outcome: Outcome,
    /// Offsets skipped before this message: `(expected, got)`. Kafka's offsets of a
    /// partition are consecutive unless records were deleted or are transaction markers; a
    /// gap the transport did not cause itself is worth a warning.
    pub gap: Option<(i64, i64)>,
}

/// A checkpoint taken just before one of the session's messages.
#[derive(Debug)]
struct Entry {
    offset: i64,
    seq: u64,
    checkpoint: Checkpoint,
}

/// What the core keeps beside each session's processor.
#[derive(Debug)]
struct Tracked {
    /// Checkpoints from the session's boundary (the first message still needed by an
    /// unpublished window) to its last message.
    entries: VecDeque<Entry>,
    /// A restored session's boundary until its boundary message is processed again.
    restored_at: Option<i64>,
    /// `(next_seq, next window)` of the last snapshot queued, to skip unchanged ones.
    saved: Option<(u64, u64)>,
    triggers: TriggerState,
    /// Batches sent again from upstream and dropped (see [`Duplicates`]).
    duplicates: u64,
    /// The session's share of the instance's memory budget.
    reservation: Reservation,
    /// Its events and epochs; made with the session's processor (it needs its plan).
    epochs: Option<SessionEpochs>,
    /// A restored session's snapshot position: its messages at or below it were processed
    /// before, and are read again only to compute its filtered samples again.
    restored_through: Option<i64>,
}

impl Tracked {
    fn new(triggers: TriggerState, reservation: Reservation) -> Tracked {
        Tracked {
            entries: VecDeque::new(),
            restored_at: None,
            saved: None,
            triggers,
            duplicates: 0,
            reservation,
            epochs: None,
            restored_through: None,
        }
    }

    fn boundary_offset(&self) -> Option<i64> {
        self.entries.front().map(|e| e.offset).or(self.restored_at)
    }
}

/// A session evicted before a restore: its messages read again up to `position` are
/// accounted for below `next_seq`.
#[derive(Debug, Clone, Copy)]
struct Evicted {
    next_seq: u64,
    position: i64,
}

/// What [`PartitionCore::restore`] found.
#[derive(Debug, Default)]
pub struct Restored {
    /// Sessions carried on from their snapshots.
    pub sessions: usize,
    /// Sessions known to be evicted.
    pub evicted: usize,
    /// Snapshots that do not fit the current processing config: those sessions restart.
    pub unfit: Vec<(String, RestoreError)>,
    /// Where reading must start: the committed offset, or an earlier restored session's
    /// boundary when a snapshot older than the commit had to be used. `None`: from the start
    /// of the partition (nothing committed).
    pub start: Option<i64>,
}

/// One partition's sessions, their outputs and their delivery ledger.
#[derive(Debug)]
pub struct PartitionCore {
    config: CoreConfig,
    counters: Arc<Counters>,
    sessions: Sessions<Tracked>,
    ledger: Ledger,
    /// The next offset expected, once a message was handled.
    next_offset: Option<i64>,
    /// Offsets below this were committed before a restore that had to start earlier: only
    /// sessions already in the table need them.
    replay_below: Option<i64>,
    evicted_before: HashMap<String, Evicted>,
    /// The last offset the previous owner processed, as far as the restored state records
    /// say: a batch at or below it that a session already processed is read again, not
    /// sent again.
    reread_through: Option<i64>,
    /// Message time of the last message with a timestamp.
    now_ms: i64,
    /// No session expires before this message time.
    next_expiry_ms: i64,
    /// Last message handled, and whether any was since the last checkpoint.
    last_offset: Option<i64>,
    dirty: bool,
    /// Sessions evicted since the last checkpoint, with the `seq` they expected next.
    evicted: Vec<(String, u64)>,
    /// Checkpoint buffers to reuse.
    spare: Spare,
    buf: Vec<u8>,
    /// This partition's share of the `session_state_bytes` gauge.
    state_bytes: u64,
    /// Events of sessions that have sent no batch yet, in the order they came. The commit
    /// stays behind the first: a restart reads them again.
    early: VecDeque<Early>,
    /// Outputs of what happened at a message's time before the message was taken (epochs
    /// ended by an eviction, early events that waited too long): sent with the next message
    /// taken, and no checkpoint is queued before they are.
    unsent: Vec<Unsent>,
}

/// An event whose session has sent no batch yet.
#[derive(Debug)]
struct Early {
    offset: i64,
    /// Its message time, ms: it waits at most the session idle time from there.
    ts_ms: i64,
    event: Event,
}

/// Outputs owed by something that happened before the message being taken.
#[derive(Debug)]
enum Unsent {
    /// An evicted session's epochs that will never end.
    Ended(Arc<SessionMeta>, Box<SessionEpochs>),
    /// An event whose session never came.
    Orphan(Early),
}

/// Memory reserved for the session a message starts (or restarts with another shape), and
/// the session's whole reservation once it is taken.
type Room = (Reservation, u64);

impl PartitionCore {
    /// A core for a partition with no saved state.
    pub fn new(config: CoreConfig, counters: Arc<Counters>) -> PartitionCore {
        PartitionCore {
            sessions: Sessions::new(config.processing.clone()),
            config,
            counters,
            ledger: Ledger::new(),
            next_offset: None,
            replay_below: None,
            evicted_before: HashMap::new(),
            reread_through: None,
            now_ms: 0,
            next_expiry_ms: i64::MAX,
            last_offset: None,
            dirty: false,
            evicted: Vec::new(),
            spare: Spare::default(),
            buf: Vec::new(),
            state_bytes: 0,
            early: VecDeque::new(),
            unsent: Vec::new(),
        }
    }

    /// A core that carries on from the partition's state records (one per session, as
    /// [`crate::StateReader`] keeps them) and its committed offset.
    pub fn restore(
        config: CoreConfig,
        counters: Arc<Counters>,
        records: impl IntoIterator<Item = StateRecord>,
        committed: Option<i64>,
    ) -> (PartitionCore, Restored) {
        let mut core = PartitionCore::new(config, counters);
        let mut report = Restored {
            start: committed,
            ..Restored::default()
        };
        for record in records {
            core.reread_through = core.reread_through.max(record.position);
            let snap = match record.value {
                StateValue::Evicted { next_seq } => {
                    if let Some(position) = record.position {
                        core.evicted_before
                            .insert(record.session_id, Evicted { next_seq, position });
                        report.evicted += 1;
                    }
                    continue;
                }
                StateValue::Snapshot(s) => *s,
            };
            let processor = match SessionProcessor::restore(
                &core.config.processing,
                snap.sample_rate_hz,
                snap.channels.len(),
                &snap.checkpoint,
            ) {
                Ok(p) => p,
                Err(e) => {
                    report.unfit.push((record.session_id, e));
                    continue;
                }
            };
            let triggers = snap
                .triggers
                .unwrap_or_else(|| core.config.triggers.new_state());
            let c = &core.config;
            let state = snap
                .events
                .unwrap_or_else(|| EventState::empty(snap.checkpoint.t0_ms as f64));
            // The filtered samples come again from the checkpoint's position on.
            let epochs = match SessionEpochs::restore(
                c.epochs.as_ref(),
                &c.events,
                processor.plan(),
                snap.channels.len(),
                state,
                processor.samples_seen(),
            ) {
                Ok(e) => e,
                Err(e) => {
                    report
                        .unfit
                        .push((record.session_id, RestoreError::Config(e)));
                    continue;
                }
            };
            // Already running: counted even beyond the budget, new sessions wait for it.
            let declared = core
                .declared_bytes(snap.sample_rate_hz, snap.channels.len())
                .ok()
                .flatten()
                .unwrap_or(0);
            let reservation = core
                .config
                .budget
                .reserve_anyway(core.config.partition, declared);
            let key = (snap.next_seq, snap.checkpoint.next_window);
            let meta = Arc::new(SessionMeta {
                session_id: snap.session_id,
                device_id: snap.device_id,
                user_id: snap.user_id,
                sample_rate_hz: snap.sample_rate_hz,
                channels: snap.channels,
            });
            report.start = report.start.map(|c| c.min(snap.source_offset));
            core.sessions.insert(
                record.session_id,
                Session {
                    processor,
                    meta,
                    next_seq: snap.next_seq,
                    // Unknown for snapshots written before it was recorded: kept until the
                    // session's next message.
                    last_seen: snap.last_seen_ms.unwrap_or(i64::MAX),
                    extra: Tracked {
                        entries: VecDeque::new(),
                        restored_at: Some(snap.source_offset),
                        saved: Some(key),
                        triggers,
                        duplicates: 0,
                        reservation,
                        epochs: Some(epochs),
                        restored_through: record.position,
                    },
                },
            );
            report.sessions += 1;
        }
        if report.start < committed {
            core.replay_below = committed;
        }
        core.refresh_expiry();
        let n = core.sessions.len() as u64;
        core.counters
            .active_sessions
            .fetch_add(n, Ordering::Relaxed);
        core.counters
            .sessions_restored
            .fetch_add(n, Ordering::Relaxed);
        (core, report)
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The restored or current state of a session, as a snapshot would record it now (for
    /// tests and diagnostics): its boundary checkpoint, next `seq` and trigger state.
    pub fn session_state(&self, session_id: &str) -> Option<(u64, Checkpoint, TriggerState)> {
        let s = self.sessions.get(session_id)?;
        let (seq, mut checkpoint) = match s.extra.entries.front() {
            Some(e) => (e.seq, e.checkpoint.clone()),
            None => {
                let mut c = Checkpoint::default();
                s.processor.checkpoint_into(&mut c);
                (s.next_seq, c)
            }
        };
        checkpoint.next_window = s.processor.windows_since_start();
        Some((seq, checkpoint, s.extra.triggers.clone()))
    }

    /// Handles the next message of the partition. `Err` only when the outbox refused an
    /// output: that output is lost, the ledger never commits past it, and the caller stops.
    pub fn handle<O: Outbox>(
        &mut self,
        m: &Inbound<'_>,
        outbox: &mut O,
    ) -> Result<Handled, O::Error> {
        let gap = match self.next_offset {
            Some(next) if m.offset < next => {
                return Ok(Handled {
                    outcome: Outcome::Repeat,
                    gap: None,
                });
            }
            Some(next) if m.offset > next => Some((next, m.offset)),
            _ => None,
        };
        // Evicting at the message's time before deciding whether it waits: what it evicts
        // may make the room it needs, and evicting again when it comes back changes nothing.
        if let Some(t) = m.timestamp_ms {
            self.now_ms = t;
        }
        self.evict_expired();
        let decoded =
            eeg_schema::decode_raw_message(m.payload, m.content_type, &self.config.limits);
        let (mut refused, mut room) = (None, None);
        if let Ok(RawMessage::Batch(batch)) = &decoded {
            match self.make_room(batch, m.offset) {
                Ok(r) => room = r,
                Err(NoRoom::Wait(full)) => {
                    return Ok(Handled {
                        outcome: Outcome::Held(full),
                        gap: None,
                    });
                }
                Err(NoRoom::Refused(reason)) => refused = Some(reason),
                Err(NoRoom::Never(full)) => {
                    refused = Some(format!(
                        "session {} needs {} of session memory, more than this instance's whole budget of {}; raise EEG_SESSION_MEMORY_MIB (or the container's memory limit), or lower limits.max_session_state_mib so that the limits refuse such sessions",
                        crate::text::quoted(&batch.session_id),
                        Mib(full.needs),
                        Mib(full.limit)
                    ));
                }
            }
        }
        if gap.is_some() {
            self.counters.offset_gaps.fetch_add(1, Ordering::Relaxed);
        }
        self.next_offset = Some(m.offset + 1);
        let ticket = self.ledger.input(m.offset);
        // A reservation admission does not take (the session refused after all) is released
        // when dropped.
        let outcome = match self.send_unsent(&ticket, outbox) {
            Err(e) => Err(e),
            Ok(()) => match (refused, decoded) {
                (Some(reason), _) => self.dead_letter(m, &reason, &ticket, outbox),
                (None, Ok(RawMessage::Event(e))) => self.event(m, e, &ticket, outbox),
                (None, Ok(RawMessage::Batch(b))) => self.process(m, Ok(b), room, &ticket, outbox),
                (None, Err(e)) => self.process(m, Err(e), room, &ticket, outbox),
            },
        };
        Ledger::close(&ticket);
        // A message read again below the commit does not move this core's position.
        self.last_offset = self.last_offset.max(Some(m.offset));
        self.dirty = true;
        self.evicted_before.retain(|_, e| e.position > m.offset);
        Ok(Handled {
            outcome: outcome?,
            gap,
        })
    }

    /// The memory a session of this shape reserves: the most its processor and the
    /// samples kept for its epochs hold, and its checkpoints at their bound. `Ok(None)` when
    /// the limits refuse the session (admission dead-letters it, reserving nothing); `Err`
    /// why its epochs cannot be cut: the `[epochs]` config does not fit its rate, or the
    /// samples kept for them pass `limits.max_session_state_mib`.
    fn declared_bytes(&self, fs: f64, n_channels: usize) -> Result<Option<u64>, String> {
        let c = &self.config;
        let Ok((plan, state)) = SessionProcessor::plan_session(&c.processing, fs, n_channels)
        else {
            return Ok(None);
        };
        let epochs =
            SessionEpochs::max_state_bytes(c.epochs.as_ref(), &c.events, &plan, n_channels)
                .map_err(|e| format!("epochs at {fs} Hz: {e}"))?;
        let limit = c.processing.limits.max_session_state_bytes;
        let held = state.saturating_add(epochs);
        if held > limit {
            return Err(format!(
                "{n_channels} channels at {fs} Hz need {} MiB of session state with the samples kept for epochs ({} s of events.max_delay_s and the epoch's pre-stimulus), above limits.max_session_state_mib = {}; raise it, or lower events.max_delay_s",
                held.div_ceil(1 << 20),
                c.events.max_delay_s,
                limit.div_ceil(1 << 20)
            ));
        }
        let entry = Checkpoint::bytes_for(&plan, n_channels)
            + (std::mem::size_of::<Entry>() - std::mem::size_of::<Checkpoint>()) as u64;
        Ok(Some(held + c.max_checkpoints as u64 * entry))
    }

    /// What a batch of a session not in the table is without admission: a message already
    /// accounted for (read again below the commit), or a batch of an evicted session that
    /// was processed before the restore. `None` when it goes to admission.
    fn settled_without_admission(&self, batch: &RawBatch, offset: i64) -> Option<Outcome> {
        if self.sessions.get(&batch.session_id).is_some() {
            return None;
        }
        if self.replay_below.is_some_and(|c| offset < c) {
            return Some(Outcome::AccountedFor);
        }
        self.evicted_before
            .get(&batch.session_id)
            .is_some_and(|e| offset <= e.position && batch.seq < e.next_seq)
            .then_some(Outcome::Duplicate(None))
    }

    /// Reserves the memory of the session `batch` starts, or restarts with another shape,
    /// when admission will do so; `Err` when it does not fit now.
    fn make_room(&mut self, batch: &RawBatch, offset: i64) -> Result<Option<Room>, NoRoom> {
        if self.settled_without_admission(batch, offset).is_some() {
            return Ok(None);
        }
        let held = match self.sessions.admission(batch) {
            Admission::New => 0,
            Admission::Reset(ResetReason::ShapeChanged) => self
                .sessions
                .get(&batch.session_id)
                .map_or(0, |s| s.extra.reservation.bytes()),
            _ => return Ok(None),
        };
        let declared = self
            .declared_bytes(batch.sample_rate_hz, batch.channels.len())
            .map_err(|why| {
                NoRoom::Refused(format!(
                    "session {}: {why}",
                    crate::text::quoted(&batch.session_id)
                ))
            })?;
        let Some(declared) = declared else {
            return Ok(None);
        };
        let budget = &self.config.budget;
        if declared > budget.limit() {
            return Err(NoRoom::Never(Full {
                needs: declared,
                reserved: budget.reserved(),
                limit: budget.limit(),
            }));
        }
        let more = budget
            .try_reserve(self.config.partition, declared.saturating_sub(held))
            .map_err(NoRoom::Wait)?;
        Ok(Some((more, declared)))
    }

    fn process<O: Outbox>(
        &mut self,
        m: &Inbound<'_>,
        decoded: Result<RawBatch, eeg_schema::SchemaError>,
        mut room: Option<Room>,
        ticket: &Arc<Ticket>,
        outbox: &mut O,
    ) -> Result<Outcome, O::Error> {
        let replaying = self.replay_below.is_some_and(|c| m.offset < c);
        let batch = match decoded {
            Ok(b) => b,
            Err(_) if replaying => return Ok(Outcome::AccountedFor),
            Err(e) => return self.dead_letter(m, &e.to_string(), ticket, outbox),
        };
        if let Some(outcome) = self.settled_without_admission(&batch, m.offset) {
            if outcome == Outcome::Duplicate(None) {
                self.counters
                    .duplicates_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Ok(outcome);
        }
        let engine = Arc::clone(&self.config.triggers);
        let now = self.now_ms;
        let (budget, partition) = (&self.config.budget, self.config.partition);
        let admitted = self.sessions.admit(&batch, now, |_| {
            // `make_room` reserved it: admission starts a session in the same cases.
            debug_assert!(room.is_some(), "a new session without reserved memory");
            let reservation = room.take().map(|(r, _)| r);
            Tracked::new(
                engine.new_state(),
                reservation.unwrap_or_else(|| budget.reserve_anyway(partition, 0)),
            )
        });
        let (admission, session) = match admitted {
            Ok(a) => a,
            Err(_) if replaying => return Ok(Outcome::AccountedFor),
            Err(e) => return self.dead_letter(m, &e.to_string(), ticket, outbox),
        };
        let c = &self.counters;
        let Some(session) = session else {
            c.duplicates_dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome::Duplicate(self.note_duplicate(&batch, m.offset)));
        };
        let mut reset = None;
        let mut new_session = false;
        match &admission {
            Admission::New => {
                new_session = true;
                c.sessions_started.fetch_add(1, Ordering::Relaxed);
                c.active_sessions.fetch_add(1, Ordering::Relaxed);
            }
            Admission::Reset(reason) => {
                c.session_resets.fetch_add(1, Ordering::Relaxed);
                if let Some((more, total)) = room {
                    session.extra.reservation.merge(more, total);
                }
                // Positions restart at zero: older checkpoints belong to the old stream.
                self.spare
                    .give_all(session.extra.entries.drain(..).map(|e| e.checkpoint));
                session.extra.triggers.reset();
                reset = Some(reason.clone());
            }
            Admission::Continues | Admission::Duplicate => {}
        }
        self.next_expiry_ms = self
            .next_expiry_ms
            .min(now.saturating_add_unsigned(self.config.session_idle_ms));
        // Taken after admission, so a message that reset the session is re-run from the
        // reset state, where it is admitted as the next in order.
        let mut checkpoint = self.spare.take();
        session.processor.checkpoint_into(&mut checkpoint);
        session.extra.entries.push_back(Entry {
            offset: m.offset,
            seq: batch.seq,
            checkpoint,
        });
        thin(&mut session.extra.entries, self.config.max_checkpoints);
        session.extra.restored_at = None;
        let mut sink = OutboxSink {
            outbox,
            ticket,
            buf: &mut self.buf,
            max_bytes: self.config.max_output_bytes,
            epochs: 0,
        };
        // The events that came before the session's first batch, and those it refused.
        let mut refused = Vec::new();
        let placed = place_batch(
            session,
            &admission,
            &batch,
            (self.config.epochs.as_ref(), &self.config.events),
            (&mut self.early, &mut refused),
            m.offset,
            &mut sink,
        );
        let finished = match placed {
            Err(e) => Err(e),
            Ok(()) => {
                let mut push = Push {
                    fanout: Fanout::new(
                        &session.meta,
                        Some((&engine, &mut session.extra.triggers)),
                        &mut sink,
                    ),
                    epochs: session.extra.epochs.as_mut().map(|e| (e, &*session.meta)),
                    error: None,
                };
                let pushed = session.processor.push_channel_major(
                    batch.samples(),
                    batch.samples_per_channel(),
                    &mut push,
                );
                push.finish().map(|p| (p, pushed))
            }
        };
        let epochs_sent = sink.epochs;
        // Keep checkpoints from the one whose message holds the next window's first sample,
        // and the first sample its epochs may still need.
        let next = session.processor.next_window_start().min(
            session
                .extra
                .epochs
                .as_ref()
                .and_then(SessionEpochs::needs_from)
                .unwrap_or(u64::MAX),
        );
        let entries = &mut session.extra.entries;
        while entries.len() > 1 && entries[1].checkpoint.position <= next {
            if let Some(e) = entries.pop_front() {
                self.spare.give(e.checkpoint);
            }
        }
        c.epochs_published.fetch_add(epochs_sent, Ordering::Relaxed);
        for (early, reason) in refused {
            self.dead_letter_event(&early, &reason, ticket, outbox)?;
        }
        let (produced, pushed) = match finished {
            Ok(p) => p,
            Err(Stop::Refused(e)) => return Err(e),
            // The same on every owner and at every retry: a stop would stop them all in
            // turn. The message is a dead letter that says what to raise.
            Err(Stop::TooLarge { what, size }) => {
                let reason =
                    too_large(&what, &batch.session_id, size, self.config.max_output_bytes);
                return self.dead_letter(m, &reason, ticket, outbox);
            }
        };
        let c = &self.counters;
        c.records_published
            .fetch_add(produced.records, Ordering::Relaxed);
        c.triggers_published
            .fetch_add(produced.events, Ordering::Relaxed);
        if let Err(e) = pushed {
            // Cannot happen for a validated batch (its rows match its channels); if it did,
            // the message is a dead letter rather than a stop.
            return self.dead_letter(m, &e.to_string(), ticket, outbox);
        }
        Ok(Outcome::Processed {
            produced,
            reset,
            new_session,
        })
    }

    /// Takes an `eeg.event/1` message: into its session's events, or held until the
    /// session's first batch.
    fn event<O: Outbox>(
        &mut self,
        m: &Inbound<'_>,
        e: Event,
        ticket: &Arc<Ticket>,
        outbox: &mut O,
    ) -> Result<Outcome, O::Error> {
        let replaying = self.replay_below.is_some_and(|c| m.offset < c);
        let Some(session) = self.sessions.get_mut(&e.session_id) else {
            let evicted = self
                .evicted_before
                .get(&e.session_id)
                .is_some_and(|v| m.offset <= v.position);
            if replaying || evicted {
                return Ok(Outcome::AccountedFor);
            }
            let max = self.config.events.max_held;
            if self.early.len() >= max {
                let reason = format!(
                    "session {} has sent no batch yet, and this partition holds {} events of sessions not started already (events.max_held); the event waits for no batch",
                    crate::text::quoted(&e.session_id),
                    self.early.len()
                );
                return self.dead_letter(m, &reason, ticket, outbox);
            }
            let ts_ms = m.timestamp_ms.unwrap_or(self.now_ms);
            self.next_expiry_ms = self
                .next_expiry_ms
                .min(ts_ms.saturating_add_unsigned(self.config.session_idle_ms));
            self.early.push_back(Early {
                offset: m.offset,
                ts_ms,
                event: e,
            });
            self.counters.events_taken.fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome::Event {
                fate: EventFate::BeforeSession,
                epochs: 0,
            });
        };
        // The snapshot holds what the session did with it.
        if session
            .extra
            .restored_through
            .is_some_and(|p| m.offset <= p)
        {
            return Ok(Outcome::AccountedFor);
        }
        let mut sink = OutboxSink {
            outbox,
            ticket,
            buf: &mut self.buf,
            max_bytes: self.config.max_output_bytes,
            epochs: 0,
        };
        let Some(se) = session.extra.epochs.as_mut() else {
            // Every session in the table has its event state from its first batch on.
            unreachable!("a session without its event state");
        };
        let taken = se.event(&session.meta, e, &mut sink);
        let epochs = sink.epochs;
        let c = &self.counters;
        c.epochs_published.fetch_add(epochs, Ordering::Relaxed);
        let fate = match taken {
            Ok(Taken::Placed) => EventFate::Placed,
            Ok(Taken::Waiting) => EventFate::Waiting,
            Ok(Taken::Copy) => EventFate::Copy,
            Ok(Taken::Late) => EventFate::Late {
                first: se.counts().late == 1,
            },
            Ok(Taken::Full(e)) => {
                let reason = se.full_reason(&e);
                return self.dead_letter(m, &reason, ticket, outbox);
            }
            Err(Stop::Refused(e)) => return Err(e),
            Err(Stop::TooLarge { what, size }) => {
                let session_id = session.meta.session_id.clone();
                let reason = too_large(&what, &session_id, size, self.config.max_output_bytes);
                return self.dead_letter(m, &reason, ticket, outbox);
            }
        };
        match fate {
            EventFate::Copy => c.event_copies.fetch_add(1, Ordering::Relaxed),
            EventFate::Late { .. } => c.events_late.fetch_add(1, Ordering::Relaxed),
            _ => c.events_taken.fetch_add(1, Ordering::Relaxed),
        };
        Ok(Outcome::Event { fate, epochs })
    }

    /// Dead-letters an event held for its session, as its canonical JSON (the message it
    /// came in is behind the commit's reach by now only if it was taken).
    fn dead_letter_event<O: Outbox>(
        &mut self,
        early: &Early,
        reason: &str,
        ticket: &Arc<Ticket>,
        outbox: &mut O,
    ) -> Result<(), O::Error> {
        let json = early.event.to_json();
        let m = Inbound {
            offset: early.offset,
            timestamp_ms: Some(early.ts_ms),
            key: Some(early.event.session_id.as_bytes()),
            payload: json.as_bytes(),
            content_type: None,
        };
        self.dead_letter(&m, reason, ticket, outbox).map(drop)
    }

    /// Sends what evictions and expired early events owe, on behalf of the message being
    /// taken.
    fn send_unsent<O: Outbox>(
        &mut self,
        ticket: &Arc<Ticket>,
        outbox: &mut O,
    ) -> Result<(), O::Error> {
        for u in std::mem::take(&mut self.unsent) {
            match u {
                Unsent::Ended(meta, mut se) => {
                    let mut sink = OutboxSink {
                        outbox: &mut *outbox,
                        ticket,
                        buf: &mut self.buf,
                        max_bytes: self.config.max_output_bytes,
                        epochs: 0,
                    };
                    match se.end(&meta, None, &mut sink) {
                        Ok(()) => {}
                        Err(Stop::Refused(e)) => return Err(e),
                        // An ended epoch's record holds no samples: a few hundred bytes.
                        Err(Stop::TooLarge { .. }) => {}
                    }
                    let n = sink.epochs;
                    self.counters
                        .epochs_published
                        .fetch_add(n, Ordering::Relaxed);
                }
                Unsent::Orphan(early) => {
                    let reason = format!(
                        "session {} sent no batch within {} s (the session idle time) of this event",
                        crate::text::quoted(&early.event.session_id),
                        self.config.session_idle_ms as f64 / 1000.0
                    );
                    self.dead_letter_event(&early, &reason, ticket, outbox)?;
                }
            }
        }
        Ok(())
    }

    /// Counts a batch its session had already processed, unless it is one this core reads
    /// again after a restore (at or below the restored position, which the previous owner
    /// processed); says so at the 1st, 10th, 100th, ... of a session.
    fn note_duplicate(&mut self, batch: &eeg_schema::RawBatch, offset: i64) -> Option<Duplicates> {
        if self.reread_through.is_some_and(|p| offset <= p) {
            return None;
        }
        let session = self.sessions.get_mut(&batch.session_id)?;
        let tracked = &mut session.extra;
        tracked.duplicates += 1;
        let n = tracked.duplicates;
        // 1, 10, 100, ...: a power of ten.
        let report = n == 10u64.pow(n.ilog10());
        report.then(|| Duplicates {
            session_id: batch.session_id.clone(),
            seq: batch.seq,
            next_seq: session.next_seq,
            count: n,
        })
    }

    /// Evicts the sessions idle for longer than the limit at the current message time.
    fn evict_expired(&mut self) {
        if self.now_ms < self.next_expiry_ms {
            return;
        }
        let Some(cutoff) = self
            .now_ms
            .checked_sub_unsigned(self.config.session_idle_ms)
        else {
            return;
        };
        let gone = self.sessions.evict_idle(cutoff);
        if !gone.is_empty() {
            let c = &self.counters;
            c.sessions_evicted
                .fetch_add(gone.len() as u64, Ordering::Relaxed);
            c.active_sessions
                .fetch_sub(gone.len() as u64, Ordering::Relaxed);
            for (id, s) in gone {
                self.spare
                    .give_all(s.extra.entries.into_iter().map(|e| e.checkpoint));
                self.evicted.push((id, s.next_seq));
                // Its epochs waiting for samples end; their records go with the next message.
                if let Some(se) = s.extra.epochs
                    && se.waiting_epochs() > 0
                {
                    self.unsent.push(Unsent::Ended(s.meta, Box::new(se)));
                }
            }
            self.dirty = true;
        }
        if self.early.iter().any(|e| e.ts_ms < cutoff) {
            let (gone, kept): (VecDeque<Early>, _) = std::mem::take(&mut self.early)
                .into_iter()
                .partition(|e| e.ts_ms < cutoff);
            self.early = kept;
            self.unsent.extend(gone.into_iter().map(Unsent::Orphan));
            self.dirty = true;
        }
        self.refresh_expiry();
    }

    fn refresh_expiry(&mut self) {
        let idle = self.config.session_idle_ms;
        self.next_expiry_ms = self
            .sessions
            .iter()
            .map(|(_, s)| s.last_seen)
            .chain(self.early.iter().map(|e| e.ts_ms))
            .map(|t| t.saturating_add_unsigned(idle))
            .min()
            .unwrap_or(i64::MAX);
    }

    fn dead_letter<O: Outbox>(
        &mut self,
        m: &Inbound<'_>,
        reason: &str,
        ticket: &Arc<Ticket>,
        outbox: &mut O,
    ) -> Result<Outcome, O::Error> {
        let partition = self.config.partition.to_string();
        let offset = m.offset.to_string();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("source.topic", self.config.source_topic.as_bytes()),
            ("source.partition", partition.as_bytes()),
            ("source.offset", offset.as_bytes()),
        ];
        // The copy keeps its encoding's name, so that it can be read and sent again as is.
        if let Some(ct) = m.content_type {
            headers.push(("content-type", ct));
        }
        let fixed: usize = headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + m.key.map_or(0, <[u8]>::len);
        let budget = self
            .config
            .max_output_bytes
            .saturating_sub(fixed + DEAD_LETTER_OVERHEAD + reason.len());
        let (payload, error, length, hash);
        if m.payload.len() <= budget {
            payload = m.payload;
            error = reason.to_string();
        } else {
            payload = &m.payload[..budget];
            error = format!(
                "{reason}; copy cut to its first {budget} of {} bytes",
                m.payload.len()
            );
            length = m.payload.len().to_string();
            hash = hex(&Sha256::digest(m.payload));
            headers.push(("original.length", length.as_bytes()));
            headers.push(("original.sha256", hash.as_bytes()));
            headers.push(("truncated", b"true"));
            self.counters
                .dead_letters_cut
                .fetch_add(1, Ordering::Relaxed);
        }
        headers.insert(0, ("error", error.as_bytes()));
        let out = Output {
            topic: Topic::DeadLetter,
            key: m.key,
            payload: Some(payload),
            headers: &headers,
            window_end_ms: None,
        };
        send(outbox, &out, ticket)?;
        self.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::DeadLetter(error))
    }

    /// Queues a checkpoint: a snapshot of every session whose boundary moved, tombstones for
    /// evicted sessions, and the partition's new commit offset behind them (the earliest
    /// boundary of any session, or past the last message when no session needs anything).
    /// Nothing is sent before every output queued earlier is acknowledged; see
    /// [`PartitionCore::advance`].
    pub fn checkpoint(&mut self) {
        // What is owed is sent with the next message; a checkpoint before would let the
        // commit pass it.
        if !self.dirty || !self.unsent.is_empty() {
            return;
        }
        let Some(last) = self.last_offset else {
            return;
        };
        self.dirty = false;
        let commit = self
            .sessions
            .iter()
            .filter_map(|(_, s)| s.extra.boundary_offset())
            .chain(self.early.iter().map(|e| e.offset))
            .min()
            .unwrap_or(last + 1)
            .min(last + 1);
        let mut writes = Vec::new();
        for (id, next_seq) in self.evicted.drain(..) {
            // Back in the table since: its snapshot below says more.
            if self.sessions.get(&id).is_none() {
                writes.push(StateWrite {
                    session_id: id,
                    payload: None,
                    position: last,
                    next_seq,
                });
            }
        }
        let mut state_bytes = 0;
        for (id, s) in self.sessions.iter_mut() {
            state_bytes += s.processor.state_bytes()
                + s.extra
                    .epochs
                    .as_ref()
                    .map_or(0, SessionEpochs::state_bytes)
                + id.capacity()
                + s.extra
                    .entries
                    .iter()
                    .map(|e| e.checkpoint.filter.capacity() * 8 + std::mem::size_of::<Entry>())
                    .sum::<usize>();
            let Some(front) = s.extra.entries.front() else {
                continue;
            };
            let next_window = s.processor.windows_since_start();
            let key = (front.seq, next_window);
            if s.extra.saved == Some(key) {
                continue;
            }
            let mut checkpoint = front.checkpoint.clone();
            checkpoint.next_window = next_window;
            let snap = Snapshot {
                schema: SCHEMA.into(),
                session_id: id.clone(),
                device_id: s.meta.device_id.clone(),
                user_id: s.meta.user_id.clone(),
                sample_rate_hz: s.meta.sample_rate_hz,
                channels: s.meta.channels.clone(),
                next_seq: front.seq,
                source_offset: front.offset,
                position: Some(last),
                last_seen_ms: Some(s.last_seen),
                checkpoint,
                triggers: Some(s.extra.triggers.clone()),
                events: s.extra.epochs.as_ref().map(SessionEpochs::state),
            };
            writes.push(StateWrite {
                session_id: id.clone(),
                payload: Some(snap.encode()),
                position: last,
                next_seq: front.seq,
            });
            s.extra.saved = Some(key);
        }
        self.report_state_bytes(state_bytes as u64);
        self.ledger.checkpoint(commit, writes);
    }

    /// Sends the snapshots of checkpoints whose predecessors are all acknowledged and
    /// returns the new commit offset, when one was reached.
    pub fn advance<O: Outbox>(&mut self, outbox: &mut O) -> Result<Option<i64>, O::Error> {
        self.ledger.advance(|w, ticket| {
            let position = w.position.to_string();
            let next_seq = w.next_seq.to_string();
            let tombstone_headers: [(&str, &[u8]); 2] = [
                (POSITION_HEADER, position.as_bytes()),
                (NEXT_SEQ_HEADER, next_seq.as_bytes()),
            ];
            let out = Output {
                topic: Topic::State,
                key: Some(w.session_id.as_bytes()),
                payload: w.payload.as_deref(),
                headers: if w.payload.is_none() {
                    &tombstone_headers
                } else {
                    &[]
                },
                window_end_ms: None,
            };
            send(outbox, &out, ticket)
        })
    }

    /// The partition is released: its sessions leave this core (the gauges say so).
    pub fn release(&mut self) {
        self.report_state_bytes(0);
        let n = self.sessions.len() as u64;
        self.counters
            .active_sessions
            .fetch_sub(n, Ordering::Relaxed);
        self.sessions = Sessions::new(self.config.processing.clone());
    }

    fn report_state_bytes(&mut self, now: u64) {
        let gauge = &self.counters.session_state_bytes;
        if now >= self.state_bytes {
            gauge.fetch_add(now - self.state_bytes, Ordering::Relaxed);
        } else {
            gauge.fetch_sub(self.state_bytes - now, Ordering::Relaxed);
        }
        self.state_bytes = now;
    }
}

/// Why a session cannot start now.
enum NoRoom {
    /// Not while the budget holds what it holds.
    Wait(Full),
    /// Not on this instance ever: it needs more than the whole budget.
    Never(Full),
    /// Not anywhere with this config: the reason.
    Refused(String),
}

/// Drops every other checkpoint of a session past `max` (the first and the last stay), so
/// the distances between the ones kept grow with the session's messages per window
/// instead of their number.
fn thin(entries: &mut VecDeque<Entry>, max: usize) {
    if entries.len() <= max.max(2) {
        return;
    }
    let last = entries.len() - 1;
    let mut i = 0;
    entries.retain(|_| {
        let keep = i % 2 == 0 || i == last;
        i += 1;
        keep
    });
}

/// Checkpoint buffers kept for reuse, a bounded number: evicting many sessions at once must
/// not leave their checkpoints' memory held for sessions that may never come.
#[derive(Debug, Default)]
struct Spare(Vec<Checkpoint>);

impl Spare {
    const MAX: usize = 64;

    fn take(&mut self) -> Checkpoint {
        self.0.pop().unwrap_or_default()
    }

    fn give(&mut self, c: Checkpoint) {
        if self.0.len() < Spare::MAX {
            self.0.push(c);
        }
    }

    fn give_all(&mut self, cs: impl Iterator<Item = Checkpoint>) {
        for c in cs {
            self.give(c);
        }
    }
}

/// Room left in a dead letter for the record's framing and the header names' overhead.
const DEAD_LETTER_OVERHEAD: usize = 1024;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Counts the output on `ticket`, then hands it over; a refused output fails the ticket.
fn send<O: Outbox>(outbox: &mut O, out: &Output<'_>, ticket: &Arc<Ticket>) -> Result<(), O::Error> {
    ticket.expect_one();
    outbox.send(out, ticket).inspect_err(|_| ticket.fail())
}

/// Why the service's sink stopped.
enum Stop<E> {
    /// The outbox did not take an output.
    Refused(E),
    /// A record larger than the producer takes (`what` names it); never sent.
    TooLarge { what: String, size: usize },
}

/// Why a message is a dead letter when one of its records is too large for the producer.
fn too_large(what: &str, session_id: &str, size: usize, max: usize) -> String {
    format!(
        "the record of {what} of session {} is {size} bytes, over the producer's limit of {max} bytes (raise message.max.bytes and the topic's max.message.bytes)",
        crate::text::quoted(session_id)
    )
}

/// The fan-out's sink in the service: each record and event encoded and sent on behalf of the
/// message being processed.
struct OutboxSink<'a, O: Outbox> {
    outbox: &'a mut O,
    ticket: &'a Arc<Ticket>,
    buf: &'a mut Vec<u8>,
    max_bytes: usize,
    /// Epoch records sent.
    epochs: u64,
}

impl<O: Outbox> OutboxSink<'_, O> {
    fn send(&mut self, out: &Output<'_>) -> Result<(), Stop<O::Error>> {
        send(self.outbox, out, self.ticket).map_err(Stop::Refused)
    }

    /// Encodes an output of `(topic, session, window end)` into the reused buffer and sends
    /// it, unless it is larger than the producer takes (`what` names it then).
    fn publish(
        &mut self,
        (topic, session_id, window_end_ms): (Topic, &str, Option<i64>),
        encode: impl FnOnce(&mut Vec<u8>),
        what: impl FnOnce() -> String,
    ) -> Result<(), Stop<O::Error>> {
        self.buf.clear();
        encode(self.buf);
        let buf = std::mem::take(self.buf);
        let out = Output {
            topic,
            key: Some(session_id.as_bytes()),
            payload: Some(&buf),
            headers: &[],
            window_end_ms,
        };
        let size = out.size();
        let sent = if size + OUTPUT_OVERHEAD > self.max_bytes {
            Err(Stop::TooLarge { what: what(), size })
        } else {
            self.send(&out)
        };
        *self.buf = buf;
        sent
    }
}

impl<O: Outbox> EpochOutput for OutboxSink<'_, O> {
    type Error = Stop<O::Error>;

    fn epoch(&mut self, record: &EpochRecord<'_>) -> Result<(), Stop<O::Error>> {
        let sent = self.publish(
            (Topic::Epochs, record.session_id, None),
            |buf| record.encode_into(buf),
            || {
                format!(
                    "the epoch of event {}",
                    crate::text::quoted(&record.event.event_id)
                )
            },
        );
        self.epochs += u64::from(sent.is_ok());
        sent
    }
}

/// The processor's sink for one push: windows to the fan-out, filtered samples to the
/// session's epochs, whose records go to the fan-out's outbox too.
struct Push<'a, 'f, O: Outbox> {
    fanout: Fanout<'f, OutboxSink<'a, O>>,
    epochs: Option<(&'f mut SessionEpochs, &'f SessionMeta)>,
    error: Option<Stop<O::Error>>,
}

impl<O: Outbox> Push<'_, '_, O> {
    fn finish(self) -> Result<Produced, Stop<O::Error>> {
        let produced = self.fanout.finish()?;
        self.error.map_or(Ok(produced), Err)
    }
}

impl<O: Outbox> WindowSink for Push<'_, '_, O> {
    fn window(&mut self, w: &Window<'_>) {
        self.fanout.window(w);
    }

    fn filtered(&mut self, frames: &[f64]) {
        if self.error.is_some() || self.fanout.stopped() {
            return;
        }
        if let Some((epochs, meta)) = self.epochs.as_mut()
            && let Err(e) = epochs.filtered(meta, frames, self.fanout.sink())
        {
            self.error = Some(e);
        }
    }
}

/// A batch's place in its session's events, before its samples are pushed: a new session
/// (or one with a new shape) gets its event state, with the events that came before its
/// first batch (those it cannot hold go to `refused`); a restart ends the epochs waiting;
/// then the batch places the events waiting for it. A batch read again after a restore
/// (at or below the snapshot's position) only pushes its samples: the snapshot holds
/// what it placed.
fn place_batch<O: Outbox>(
    session: &mut Session<Tracked>,
    admission: &Admission,
    batch: &RawBatch,
    (epochs, events): (Option<&EpochsConfig>, &EventsConfig),
    (early, refused): (&mut VecDeque<Early>, &mut Vec<(Early, String)>),
    offset: i64,
    sink: &mut OutboxSink<'_, O>,
) -> Result<(), Stop<O::Error>> {
    let meta = &*session.meta;
    let start_ms = batch.start_ms as f64;
    if let (Admission::Reset(_), Some(se)) = (admission, session.extra.epochs.as_mut()) {
        se.end(meta, Some(start_ms), sink)?;
    }
    if matches!(
        admission,
        Admission::New | Admission::Reset(ResetReason::ShapeChanged)
    ) {
        let plan = session.processor.plan();
        let n = batch.channels.len();
        // Checked before admission; a session whose epochs could not be planned would
        // have been refused.
        let mut se = SessionEpochs::new(epochs, events, plan, n, start_ms)
            .or_else(|_| SessionEpochs::new(None, events, plan, n, start_ms))
            .expect("no plan to fail")
            .without_averages();
        if early.iter().any(|e| e.event.session_id == batch.session_id) {
            let (mine, others): (VecDeque<Early>, VecDeque<Early>) = std::mem::take(early)
                .into_iter()
                .partition(|e| e.event.session_id == batch.session_id);
            *early = others;
            for e in mine {
                let (offset, ts_ms) = (e.offset, e.ts_ms);
                if let Taken::Full(event) = se.event(meta, e.event, sink)? {
                    let reason = se.full_reason(&event);
                    let e = Early {
                        offset,
                        ts_ms,
                        event,
                    };
                    refused.push((e, reason));
                }
            }
        }
        session.extra.epochs = Some(se);
    }
    if session.extra.restored_through.is_some_and(|p| offset <= p) {
        return Ok(());
    }
    session.extra.restored_through = None;
    if let Some(se) = session.extra.epochs.as_mut() {
        let n = batch.samples_per_channel() as u64;
        se.batch(meta, session.processor.samples_seen(), start_ms, n, sink)?;
    }
    Ok(())
}

impl<O: Outbox> Sink for OutboxSink<'_, O> {
    type Error = Stop<O::Error>;

    fn record(
        &mut self,
        meta: &Arc<SessionMeta>,
        window: &Window<'_>,
    ) -> Result<(), Stop<O::Error>> {
        self.publish(
            (Topic::Processed, &meta.session_id, Some(window.end_ms)),
            |buf| encode_processed(&ProcessedRecord { meta, window }, buf),
            || format!("window {}", window.index),
        )
    }

    fn trigger(&mut self, event: &TriggerEvent<'_>) -> Result<(), Stop<O::Error>> {
        self.publish(
            (Topic::Triggers, event.session_id, None),
            |buf| event.encode_into(buf),
            || format!("the trigger event of rule {}", event.rule_id),
        )
    }
}

/// Room kept in every record for the producer's framing of it.
const OUTPUT_OVERHEAD: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateReader;

    type Headers = Vec<(String, Vec<u8>)>;

    /// Keeps what is sent, acknowledged at once.
    #[derive(Default)]
    struct Kept(Vec<(Topic, Vec<u8>, Headers)>);

    impl Outbox for Kept {
        /// The size of an output refused for being too large.
        type Error = usize;

        fn send(&mut self, out: &Output<'_>, ticket: &Arc<Ticket>) -> Result<(), usize> {
            let size = out.size();
            if size > 1_000_000 {
                return Err(size);
            }
            self.0.push((
                out.topic,
                out.payload.unwrap_or_default().to_vec(),
                out.headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect(),
            ));
            ticket.ack();
            Ok(())
        }
    }

    fn core() -> PartitionCore {
        core_with(MemoryBudget::unlimited(), MAX_CHECKPOINTS)
    }

    fn core_with(budget: Arc<MemoryBudget>, max_checkpoints: usize) -> PartitionCore {
        let config = CoreConfig {
            processing: ProcessingConfig::default(),
            triggers: Arc::new(TriggerEngine::new(crate::default_rules()).unwrap()),
            session_idle_ms: 300_000,
            limits: Limits::default(),
            source_topic: "raw".into(),
            partition: 2,
            max_output_bytes: 1_000_000,
            budget,
            max_checkpoints,
            epochs: Some(EpochsConfig::default()),
            events: EventsConfig::default(),
        };
        PartitionCore::new(config, Arc::new(Counters::default()))
    }

    fn header<'a>(h: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn poison_of_any_size_is_dead_lettered_whole_or_as_a_marked_prefix() {
        let mut c = core();
        let mut out = Kept::default();
        for (offset, size) in [(7, 100usize), (8, 2 << 20), (9, 8 << 20), (10, 20 << 20)] {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let m = Inbound {
                offset,
                timestamp_ms: Some(1),
                key: Some(b"k"),
                payload: &payload,
                content_type: None,
            };
            let handled = c.handle(&m, &mut out).expect("never refused");
            assert!(matches!(handled.outcome, Outcome::DeadLetter(_)));
            let (topic, copy, headers) = out.0.last().unwrap();
            assert_eq!(*topic, Topic::DeadLetter);
            assert_eq!(header(headers, "source.topic"), Some("raw"));
            assert_eq!(header(headers, "source.partition"), Some("2"));
            assert_eq!(
                header(headers, "source.offset"),
                Some(offset.to_string().as_str())
            );
            if size == 100 {
                assert_eq!(*copy, payload);
                assert_eq!(header(headers, "truncated"), None);
            } else {
                assert!(payload.starts_with(copy) && copy.len() > 900_000);
                assert_eq!(header(headers, "truncated"), Some("true"));
                assert_eq!(
                    header(headers, "original.length"),
                    Some(size.to_string().as_str())
                );
                let hash = hex(&Sha256::digest(&payload));
                assert_eq!(header(headers, "original.sha256"), Some(hash.as_str()));
                let error = header(headers, "error").unwrap();
                assert!(error.contains("cut to its first"), "{error}");
            }
        }
        assert_eq!(c.counters.dead_letters.load(Ordering::Relaxed), 4);
        assert_eq!(c.counters.dead_letters_cut.load(Ordering::Relaxed), 3);
        // Everything is accounted for: the partition commits past the poison.
        c.checkpoint();
        assert_eq!(c.advance(&mut out), Ok(Some(11)));
    }

    /// Batches whose session is beyond the limits (the 20 KB message declaring 1,024 channels
    /// at 100 kHz; a rate of 166,667 Hz) reach the dead-letter topic with the limit named,
    /// start no session and hold nothing; the partition commits past them.
    #[test]
    fn sessions_beyond_the_limits_are_dead_lettered_naming_the_limit() {
        let mut c = core();
        let mut out = Kept::default();
        let batch = |session: &str, fs: f64, nch: usize| {
            let channels: Vec<String> = (0..nch).map(|i| format!("C{i}")).collect();
            serde_json::json!({
                "schema": "eeg.raw/1", "session_id": session, "device_id": "d", "seq": 0,
                "start_ms": 1_000, "sample_rate_hz": fs, "channels": channels,
                "samples": vec![vec![1.0, 2.0]; nch],
            })
            .to_string()
        };
        let cases = [
            (
                batch("wide", 100_000.0, 1024),
                "limits.max_session_state_mib",
            ),
            (batch("fast", 166_666.67, 11), "limits.max_sample_rate_hz"),
        ];
        for (offset, (payload, limit)) in cases.iter().enumerate() {
            let m = Inbound {
                offset: offset as i64,
                timestamp_ms: Some(1),
                key: Some(b"k"),
                payload: payload.as_bytes(),
                content_type: None,
            };
            let handled = c.handle(&m, &mut out).expect("never refused");
            assert!(matches!(handled.outcome, Outcome::DeadLetter(_)));
            let (topic, copy, headers) = out.0.last().unwrap();
            assert_eq!(*topic, Topic::DeadLetter);
            assert_eq!(copy.as_slice(), payload.as_bytes());
            let error = header(headers, "error").unwrap();
            assert!(error.contains(limit) && error.contains("raise"), "{error}");
        }
        assert!(c.sessions.is_empty());
        c.checkpoint();
        assert_eq!(c.advance(&mut out), Ok(Some(2)));
    }

    #[test]
    fn a_record_too_large_for_the_producer_dead_letters_its_message_instead_of_stopping() {
        let mut c = core();
        c.config.max_output_bytes = 6_000;
        let channels: Vec<String> = (0..16).map(|i| format!("C{i}")).collect();
        let rows: Vec<Vec<f64>> = (0..16)
            .map(|ch| {
                (0..1100)
                    .map(|i| ((i * (ch + 1)) as f64 * 0.01).sin())
                    .collect()
            })
            .collect();
        let batch = serde_json::json!({
            "schema": "eeg.raw/1", "session_id": "wide", "device_id": "d", "seq": 0,
            "start_ms": 1_000, "sample_rate_hz": 256.0, "channels": channels, "samples": rows,
        })
        .to_string();
        let mut out = Kept::default();
        let m = Inbound {
            offset: 0,
            timestamp_ms: Some(1),
            key: Some(b"wide"),
            payload: batch.as_bytes(),
            content_type: None,
        };
        let handled = c.handle(&m, &mut out).expect("never refused");
        let Outcome::DeadLetter(reason) = handled.outcome else {
            panic!("{:?}", handled.outcome);
        };
        assert!(
            reason.contains("the record of window 0 of session \"wide\" is")
                && reason.contains("over the producer's limit of 6000 bytes"),
            "{reason}"
        );
        assert!(
            out.0.iter().all(|(t, ..)| *t == Topic::DeadLetter),
            "no record sent"
        );
        // The session goes on (its next window starts in this message, which it still
        // needs): nothing stopped.
        c.checkpoint();
        assert_eq!(c.advance(&mut out), Ok(Some(0)));
        assert_eq!(c.sessions(), 1);
    }

    /// Half a second of a one-channel session `s` at 128 Hz, as `seq`.
    fn second(seq: u64) -> String {
        let samples: Vec<f64> = (0..64)
            .map(|i| ((seq * 64 + i) as f64 * 0.3).sin())
            .collect();
        serde_json::json!({
            "schema": "eeg.raw/1", "session_id": "s", "device_id": "d", "seq": seq,
            "start_ms": 1_000 + seq * 500, "sample_rate_hz": 128.0, "channels": ["C3"],
            "samples": [samples],
        })
        .to_string()
    }

    fn handle_at<O: Outbox>(
        c: &mut PartitionCore,
        offset: i64,
        payload: &str,
        out: &mut O,
    ) -> Outcome
    where
        O::Error: std::fmt::Debug,
    {
        let m = Inbound {
            offset,
            timestamp_ms: Some(offset),
            key: Some(b"s"),
            payload: payload.as_bytes(),
            content_type: None,
        };
        c.handle(&m, out).unwrap().outcome
    }

    #[test]
    fn batches_sent_again_are_dropped_and_reported_at_the_first_and_the_tenth() {
        let mut c = core();
        let mut out = Kept::default();
        for seq in 0..12 {
            let o = handle_at(&mut c, seq as i64, &second(seq), &mut out);
            assert!(matches!(o, Outcome::Processed { .. }), "{o:?}");
        }
        let published = out.0.len();
        // The same recording again, under the same session id.
        let mut reports = Vec::new();
        for seq in 0..12 {
            match handle_at(&mut c, 12 + seq as i64, &second(seq), &mut out) {
                Outcome::Duplicate(Some(d)) => reports.push(d),
                Outcome::Duplicate(None) => {}
                o => panic!("seq {seq} again: {o:?}"),
            }
        }
        assert_eq!(out.0.len(), published, "nothing published for them");
        let said: Vec<(u64, u64, u64)> = reports
            .iter()
            .map(|d| (d.seq, d.next_seq, d.count))
            .collect();
        assert_eq!(said, [(0, 12, 1), (9, 12, 10)]);
        assert_eq!(reports[0].session_id, "s");
        assert_eq!(c.counters.duplicates_dropped.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn batches_read_again_after_a_restore_are_not_reported_as_sent_again() {
        let mut c = core();
        let mut out = Kept::default();
        for seq in 0..12 {
            handle_at(&mut c, seq as i64, &second(seq), &mut out);
        }
        c.checkpoint();
        c.advance(&mut out).unwrap();
        let mut reader = StateReader::new();
        for (topic, payload, headers) in &out.0 {
            if *topic != Topic::State {
                continue;
            }
            let value = (!payload.is_empty()).then_some(payload.as_slice());
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_slice())
            };
            reader.add(StateRecord::decode(b"s", value, header).unwrap());
        }
        let records = reader.finish();
        assert_eq!(records.len(), 1, "a snapshot of s was written");
        let counters = Arc::new(Counters::default());
        let (mut c, _) =
            PartitionCore::restore(c.config.clone(), counters, records.into_values(), None);
        // Read again from the start, as after a crash before any commit.
        for seq in 0..12 {
            let o = handle_at(&mut c, seq as i64, &second(seq), &mut out);
            assert!(
                matches!(o, Outcome::Duplicate(None) | Outcome::Processed { .. }),
                "seq {seq} read again: {o:?}"
            );
        }
        // Then upstream sends the start again.
        let o = handle_at(&mut c, 12, &second(0), &mut out);
        let Outcome::Duplicate(Some(d)) = o else {
            panic!("{o:?}")
        };
        assert_eq!((d.seq, d.count), (0, 1));
    }

    /// `n` samples of one-channel session `id` at 128 Hz, as `seq`, starting at `sample`.
    fn batch_of(id: &str, seq: u64, sample: u64, n: u64) -> String {
        let samples: Vec<f64> = (sample..sample + n)
            .map(|i| (i as f64 * 0.3).sin() + (i as f64 * 0.05).cos())
            .collect();
        serde_json::json!({
            "schema": "eeg.raw/1", "session_id": id, "device_id": "d", "seq": seq,
            "start_ms": 1_000 + sample * 1000 / 128, "sample_rate_hz": 128.0,
            "channels": ["C3"], "samples": [samples],
        })
        .to_string()
    }

    fn processed(out: &Kept) -> Vec<Vec<u8>> {
        out.0
            .iter()
            .filter(|(t, ..)| *t == Topic::Processed)
            .map(|(_, p, _)| p.clone())
            .collect()
    }

    #[test]
    fn a_session_that_does_not_fit_waits_with_nothing_recorded_then_carries_on_unchanged() {
        let declared = core().declared_bytes(128.0, 1).unwrap().unwrap();
        // Room for one such session.
        let budget = MemoryBudget::new(declared + declared / 2);
        let mut two = core_with(Arc::clone(&budget), MAX_CHECKPOINTS);
        let three_config = CoreConfig {
            partition: 3,
            ..two.config.clone()
        };
        let mut three = PartitionCore::new(three_config, Arc::new(Counters::default()));
        let mut out2 = Kept::default();
        let mut out3 = Kept::default();
        let o = handle_at(&mut two, 0, &batch_of("s", 0, 0, 64), &mut out2);
        assert!(matches!(o, Outcome::Processed { .. }), "{o:?}");
        assert_eq!(budget.reserved(), declared);

        // Partition 3's session `t` does not fit; asked again, it still does not.
        for _ in 0..2 {
            let o = handle_at(&mut three, 0, &batch_of("t", 0, 0, 64), &mut out3);
            let Outcome::Held(full) = o else {
                panic!("{o:?}")
            };
            assert_eq!((full.needs, full.reserved), (declared, declared));
        }
        assert_eq!(budget.held(), vec![(3, declared)]);
        assert!(out3.0.is_empty());
        assert!(
            three.ledger().is_empty(),
            "nothing recorded for the held message"
        );
        assert_eq!(three.sessions(), 0);
        // A message of the session already in memory is not held.
        let o = handle_at(&mut two, 1, &batch_of("s", 1, 64, 64), &mut out2);
        assert!(matches!(o, Outcome::Processed { .. }), "{o:?}");

        // Partition 2's next message comes after `s` has been idle too long: `s` is evicted
        // and its memory released.
        let late = Inbound {
            offset: 2,
            timestamp_ms: Some(1 + 300_001),
            key: None,
            payload: b"not a batch",
            content_type: None,
        };
        let o = two.handle(&late, &mut out2).unwrap().outcome;
        assert!(matches!(o, Outcome::DeadLetter(_)), "{o:?}");
        assert_eq!((two.sessions(), budget.reserved()), (0, 0));

        // `t` goes on from the message that waited, and publishes what it would have.
        let mut alone = core();
        let mut out_alone = Kept::default();
        for seq in 0..10 {
            let payload = batch_of("t", seq, seq * 64, 64);
            let o = handle_at(&mut three, seq as i64, &payload, &mut out3);
            assert!(matches!(o, Outcome::Processed { .. }), "{o:?}");
            handle_at(&mut alone, seq as i64, &payload, &mut out_alone);
        }
        assert!(budget.held().is_empty());
        assert_eq!(budget.reserved(), declared);
        assert!(!processed(&out3).is_empty());
        assert_eq!(processed(&out3), processed(&out_alone));
        three.release();
        assert_eq!(budget.reserved(), 0, "released with its partition");
    }

    #[test]
    fn a_session_larger_than_the_whole_budget_is_dead_lettered_saying_what_to_raise() {
        let declared = core().declared_bytes(128.0, 1).unwrap().unwrap();
        let budget = MemoryBudget::new(declared - 1);
        let mut c = core_with(Arc::clone(&budget), MAX_CHECKPOINTS);
        let mut out = Kept::default();
        let o = handle_at(&mut c, 0, &batch_of("s", 0, 0, 64), &mut out);
        let Outcome::DeadLetter(reason) = o else {
            panic!("{o:?}")
        };
        assert!(
            reason.starts_with("session \"s\" needs ")
                && reason.contains("more than this instance's whole budget")
                && reason.contains("EEG_SESSION_MEMORY_MIB"),
            "{reason}"
        );
        assert!(
            budget.held().is_empty(),
            "nothing waits for what never fits"
        );
        assert_eq!((c.sessions(), budget.reserved()), (0, 0));
        c.checkpoint();
        assert_eq!(c.advance(&mut out), Ok(Some(1)), "its offset is committed");
    }

    #[test]
    fn a_session_of_many_tiny_messages_keeps_a_bounded_number_of_checkpoints_and_restores_exactly()
    {
        let messages: Vec<String> = (0..1_500).map(|i| batch_of("s", i, i, 1)).collect();
        let mut whole = core();
        let mut out_whole = Kept::default();
        for (i, m) in messages.iter().enumerate() {
            handle_at(&mut whole, i as i64, m, &mut out_whole);
        }
        let all = processed(&out_whole);
        assert!(all.len() > 5, "{} records", all.len());

        let mut c = core_with(MemoryBudget::unlimited(), 8);
        let mut out = Kept::default();
        let crash_at = 1_100;
        for (i, m) in messages[..crash_at].iter().enumerate() {
            handle_at(&mut c, i as i64, m, &mut out);
            let kept = c.sessions.get("s").unwrap().extra.entries.len();
            assert!(kept <= 8, "{kept} checkpoints at message {i}");
            if i % 97 == 0 {
                c.checkpoint();
                c.advance(&mut out).unwrap();
            }
        }
        let mut reader = StateReader::new();
        for (topic, payload, headers) in &out.0 {
            if *topic == Topic::State {
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_slice())
                };
                reader.add(StateRecord::decode(b"s", Some(payload), header).unwrap());
            }
        }
        let records = reader.finish();
        let StateValue::Snapshot(snap) = &records.values().next().unwrap().value else {
            panic!("a snapshot of s")
        };
        let from = snap.source_offset;
        assert!(from < 1_000, "restored from {from}");
        let (mut c, _) = PartitionCore::restore(
            c.config.clone(),
            Arc::new(Counters::default()),
            records.into_values(),
            None,
        );
        for (i, m) in messages.iter().enumerate().skip(from as usize) {
            handle_at(&mut c, i as i64, m, &mut out);
        }
        let got = processed(&out);
        assert!(
            got.iter().all(|r| all.contains(r)),
            "every copy as published whole"
        );
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(unique, expected, "every window published");
    }

    #[test]
    fn offsets_read_again_are_ignored_and_gaps_reported() {
        let mut c = core();
        let mut out = Kept::default();
        let m = |offset| Inbound {
            offset,
            timestamp_ms: None,
            key: None,
            payload: b"x",
            content_type: None,
        };
        assert_eq!(c.handle(&m(3), &mut out).unwrap().gap, None);
        assert_eq!(c.handle(&m(3), &mut out).unwrap().outcome, Outcome::Repeat);
        assert_eq!(c.handle(&m(6), &mut out).unwrap().gap, Some((4, 6)));
        assert_eq!(c.counters.offset_gaps.load(Ordering::Relaxed), 1);
    }

    fn event_json(session: &str, id: &str, onset_sample: u64) -> String {
        Event {
            session_id: session.into(),
            event_id: id.into(),
            onset: eeg_schema::Onset::Sample(onset_sample),
            duration_s: 0.0,
            label: "target".into(),
            value: Some(1),
            source: "app".into(),
        }
        .to_json()
    }

    fn epochs_of(out: &Kept) -> Vec<serde_json::Value> {
        out.0
            .iter()
            .filter(|(t, ..)| *t == Topic::Epochs)
            .map(|(_, p, _)| serde_json::from_slice(p).unwrap())
            .collect()
    }

    /// Sends what a checkpoint queued and returns the commit it reached.
    fn commit(c: &mut PartitionCore, out: &mut Kept) -> Option<i64> {
        c.checkpoint();
        c.advance(out).unwrap()
    }

    #[test]
    fn events_wait_for_their_sessions_first_batch_behind_the_commit_and_orphans_are_dead_lettered()
    {
        let mut c = core();
        let mut out = Kept::default();
        for (offset, session) in [(0, "s"), (1, "ghost")] {
            let o = handle_at(&mut c, offset, &event_json(session, "e1", 100), &mut out);
            assert_eq!(
                o,
                Outcome::Event {
                    fate: EventFate::BeforeSession,
                    epochs: 0
                }
            );
        }
        assert_eq!(commit(&mut c, &mut out), Some(0), "behind the first event");
        for seq in 0..4 {
            handle_at(&mut c, 2 + seq as i64, &second(seq), &mut out);
        }
        // Sample 100's epoch (74..=164 at 128 Hz) is complete after the third batch.
        let epochs = epochs_of(&out);
        assert_eq!(epochs.len(), 1);
        assert_eq!(epochs[0]["event"]["event_id"], "e1");
        assert_eq!(epochs[0]["status"], "ok");
        assert_eq!(
            (
                epochs[0]["first_sample"].as_u64(),
                epochs[0]["last_sample"].as_u64()
            ),
            (Some(74), Some(164))
        );
        assert_eq!(
            commit(&mut c, &mut out),
            Some(1),
            "behind the ghost's event"
        );
        // Much later: the ghost never sent a batch; its event is a dead letter, as it came.
        let later = batch_of("t", 0, 0, 64);
        let m = Inbound {
            offset: 6,
            timestamp_ms: Some(400_000),
            key: Some(b"t"),
            payload: later.as_bytes(),
            content_type: None,
        };
        c.handle(&m, &mut out).unwrap();
        let (_, copy, headers) = out
            .0
            .iter()
            .find(|(t, ..)| *t == Topic::DeadLetter)
            .expect("a dead letter");
        assert_eq!(*copy, event_json("ghost", "e1", 100).into_bytes());
        assert_eq!(header(headers, "source.offset"), Some("1"));
        assert!(
            header(headers, "error")
                .unwrap()
                .contains("sent no batch within 300 s"),
            "{headers:?}"
        );
        assert!(commit(&mut c, &mut out).unwrap() > 1);
    }

    #[test]
    fn bad_events_and_events_beyond_what_a_session_holds_are_dead_lettered_naming_why() {
        let config = CoreConfig {
            events: EventsConfig {
                max_held: 2,
                ..EventsConfig::default()
            },
            ..core().config.clone()
        };
        let mut c = PartitionCore::new(config, Arc::new(Counters::default()));
        let mut out = Kept::default();
        handle_at(&mut c, 0, &second(0), &mut out);
        let bad = r#"{"schema":"eeg.event/1","session_id":"s","event_id":"x","onset_ms":1,"duration_s":-1,"label":"a"}"#;
        let Outcome::DeadLetter(reason) = handle_at(&mut c, 1, bad, &mut out) else {
            panic!("a bad event is a dead letter");
        };
        assert!(reason.contains("duration_s"), "{reason}");
        // Two events wait for their samples; a third does not fit.
        for (offset, id) in [(2, "a"), (3, "b")] {
            let o = handle_at(&mut c, offset, &event_json("s", id, 1_000), &mut out);
            assert!(
                matches!(
                    o,
                    Outcome::Event {
                        fate: EventFate::Waiting,
                        ..
                    }
                ),
                "{o:?}"
            );
        }
        let Outcome::DeadLetter(reason) =
            handle_at(&mut c, 4, &event_json("s", "c", 1_000), &mut out)
        else {
            panic!("a third event is one too many");
        };
        assert!(reason.contains("raise events.max_held"), "{reason}");
        // A copy of one held is still a copy.
        let o = handle_at(&mut c, 5, &event_json("s", "a", 1_000), &mut out);
        assert!(
            matches!(
                o,
                Outcome::Event {
                    fate: EventFate::Copy,
                    ..
                }
            ),
            "{o:?}"
        );
    }

    #[test]
    fn sessions_whose_epochs_cannot_be_cut_are_dead_lettered_naming_the_key_or_limit() {
        let mut epochs = EpochsConfig::default();
        epochs.epoch.erd = Some(eeg_dsp::epochs::ErdConfig {
            reference_s: [-0.2, 0.0],
            active_s: [0.1, 0.105],
        });
        let config = CoreConfig {
            epochs: Some(epochs),
            ..core().config.clone()
        };
        let mut c = PartitionCore::new(config, Arc::new(Counters::default()));
        let mut out = Kept::default();
        let Outcome::DeadLetter(reason) = handle_at(&mut c, 0, &second(0), &mut out) else {
            panic!("the session's epochs cannot be cut at 128 Hz");
        };
        assert!(
            reason.contains("erd.active_s") && reason.contains("128 Hz"),
            "{reason}"
        );
        // An hour of samples kept for late events is more than the session may hold.
        let mut processing = ProcessingConfig::default();
        processing.limits.max_session_state_bytes = 2 << 20;
        let config = CoreConfig {
            processing,
            events: EventsConfig {
                max_delay_s: 3600.0,
                ..EventsConfig::default()
            },
            ..core().config.clone()
        };
        let mut c = PartitionCore::new(config, Arc::new(Counters::default()));
        let Outcome::DeadLetter(reason) = handle_at(&mut c, 0, &second(0), &mut out) else {
            panic!("an hour of samples for epochs is beyond the limit");
        };
        assert!(
            reason.contains("limits.max_session_state_mib = 2")
                && reason.contains("events.max_delay_s"),
            "{reason}"
        );
    }
}
