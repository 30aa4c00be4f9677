//! Placing a session's events in its samples (DESIGN.md, "Events, epochs and timing").
//!
//! An event's onset in Unix ms is placed by the batch whose time span holds it, from that
//! batch's own `start_ms`: `sample = first_sample + round((onset_ms - start_ms) * fs / 1000)`,
//! so each batch re-anchors and a device clock that drifts against the nominal rate moves an
//! event by at most a sample. The rounding is NumPy's (half to even), as MNE's
//! `Raw.time_as_index` rounds, so an onset placed here is the sample MNE gives it.
//!
//! An event may come before the batch that holds its onset: it waits. It may come after: it
//! is placed while the batches it needs are remembered, `max_delay_s` of samples; older than
//! that it is late, counted and returned as such, never dropped silently. An event whose
//! `event_id` the session already had is a copy. A span with no batch (batches lost, or a
//! device clock that jumped) places an onset in it from the last batch before it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use eeg_schema::{Event, Onset};

/// Batches a session remembers at most, however short: an onset in ms before the oldest is
/// late. At 32-sample batches this is two minutes at 256 Hz; it bounds a session of tiny
/// batches (and its snapshot) to a few tens of KB of anchors.
pub const MAX_ANCHORS: usize = 1024;

/// Where one batch of the session sits in time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Anchor {
    /// Its first sample's index in the session.
    first_sample: u64,
    start_ms: f64,
    samples: u64,
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    /// At this sample of the session.
    At(Event, u64),
    /// Its onset lies after the samples seen so far: kept until a batch holds it.
    Waiting,
    /// Its onset lies before what is remembered (by this many samples at least, when known),
    /// or before the session's first sample.
    Late(Event),
    /// The session already had an event with this `event_id`.
    Copy(Event),
    /// The session holds as many events as it may (waiting, or remembered for copies):
    /// not taken.
    Full(Event),
}

/// What a [`Timeline`] holds, for a session snapshot: everything but what it derives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineState {
    /// `[first_sample, start_ms, samples]` of each batch remembered, oldest first.
    pub anchors: Vec<(u64, f64, u64)>,
    /// Events waiting for their samples: those given a sample, then those given a time,
    /// each in the order they are placed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Event>,
    /// Ids of events placed and still remembered, with their samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placed: Vec<(String, u64)>,
}

/// One session's events on their way to samples.
#[derive(Debug)]
pub struct Timeline {
    fs: f64,
    max_delay_s: f64,
    /// Events held at most (waiting, and ids remembered).
    max_held: usize,
    /// Samples of batches remembered behind the newest one.
    keep_samples: u64,
    anchors: VecDeque<Anchor>,
    /// Events waiting for their samples, by onset (then arrival): those given a sample, and
    /// those given a time. Only the front of each can be the next placed, so a batch costs
    /// what it places, however many wait.
    waiting_samples: VecDeque<Event>,
    waiting_ms: VecDeque<Event>,
    /// The ids seen, with the sample each was placed at (or `u64::MAX` while waiting), so
    /// that copies are known; forgotten once their sample is out of what is remembered.
    seen: HashMap<String, u64>,
    /// The placed ids by sample, earliest first: which to forget as the horizon moves.
    expiry: BinaryHeap<Reverse<(u64, String)>>,
}

impl Timeline {
    /// A session at `fs` Hz that places events up to `max_delay_s` behind its newest samples
    /// and holds at most `max_held` events (waiting, or remembered for copies).
    pub fn new(fs: f64, max_delay_s: f64, max_held: usize) -> Timeline {
        Timeline {
            fs,
            max_delay_s,
            max_held,
            keep_samples: (max_delay_s * fs).ceil().max(0.0) as u64,
            anchors: VecDeque::new(),
            waiting_samples: VecDeque::new(),
            waiting_ms: VecDeque::new(),
            seen: HashMap::new(),
            expiry: BinaryHeap::new(),
        }
    }

    /// The session's sample rate, Hz.
    pub fn fs(&self) -> f64 {
        self.fs
    }

    /// The same session restarting at sample 0: nothing remembered, nothing waiting.
    pub fn restarted(&self) -> Timeline {
        Timeline::new(self.fs, self.max_delay_s, self.max_held)
    }

    /// What the timeline holds, as [`Timeline::restore`] takes it back.
    pub fn state(&self) -> TimelineState {
        let mut placed: Vec<(String, u64)> = self
            .seen
            .iter()
            .filter(|&(_, &s)| s != u64::MAX)
            .map(|(id, &s)| (id.clone(), s))
            .collect();
        // A map's order is not the same twice: snapshots of one state are equal bytes.
        placed.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        TimelineState {
            anchors: self
                .anchors
                .iter()
                .map(|a| (a.first_sample, a.start_ms, a.samples))
                .collect(),
            waiting: self
                .waiting_samples
                .iter()
                .chain(&self.waiting_ms)
                .cloned()
                .collect(),
            placed,
        }
    }

    /// A timeline as [`Timeline::state`] described it, at `fs` Hz with the given limits.
    pub fn restore(fs: f64, max_delay_s: f64, max_held: usize, state: TimelineState) -> Timeline {
        let mut t = Timeline::new(fs, max_delay_s, max_held);
        t.anchors = state
            .anchors
            .into_iter()
            .map(|(first_sample, start_ms, samples)| Anchor {
                first_sample,
                start_ms,
                samples,
            })
            .collect();
        for (id, sample) in state.placed {
            t.remember(&id, sample);
        }
        for e in state.waiting {
            t.seen.insert(e.event_id.clone(), u64::MAX);
            match e.onset {
                Onset::Sample(_) => t.waiting_samples.push_back(e),
                Onset::UnixMs(_) => t.waiting_ms.push_back(e),
            }
        }
        t
    }

    /// Heap bytes held now, about (the entries, not the maps' spare room).
    pub fn state_bytes(&self) -> usize {
        self.anchors.capacity() * std::mem::size_of::<Anchor>()
            + self
                .seen
                .keys()
                .map(|k| 2 * k.capacity() + 64)
                .sum::<usize>()
            + (self.waiting_samples.len() + self.waiting_ms.len()) * std::mem::size_of::<Event>()
    }

    /// Takes the events still waiting for their samples (the stream ended or restarts),
    /// those given a sample first, each kind in order of onset.
    pub fn take_waiting(&mut self) -> Vec<Event> {
        let mut all: Vec<Event> = self.waiting_samples.drain(..).collect();
        all.extend(self.waiting_ms.drain(..));
        for e in &all {
            self.seen.remove(&e.event_id);
        }
        all
    }

    /// Events held: waiting for their samples, or remembered to know copies.
    pub fn held(&self) -> usize {
        self.seen.len()
    }

    /// The samples seen so far (the index after the newest batch's last).
    pub fn end(&self) -> u64 {
        self.anchors
            .back()
            .map_or(0, |a| a.first_sample + a.samples)
    }

    /// Events waiting for their samples.
    pub fn waiting(&self) -> usize {
        self.waiting_samples.len() + self.waiting_ms.len()
    }

    /// A batch of `samples` samples from `first_sample`, its first at `start_ms`: returns
    /// the waiting events it places (those given a sample, then those given a time, each in
    /// order of onset).
    pub fn batch(&mut self, first_sample: u64, start_ms: f64, samples: u64) -> Vec<(Event, u64)> {
        self.anchors.push_back(Anchor {
            first_sample,
            start_ms,
            samples,
        });
        let end = self.end();
        while let Some(front) = self.anchors.front() {
            if self.anchors.len() > MAX_ANCHORS
                || self.anchors.len() > 1
                    && front.first_sample + front.samples + self.keep_samples <= end
            {
                self.anchors.pop_front();
            } else {
                break;
            }
        }
        let horizon = self.horizon();
        while let Some(Reverse((sample, _))) = self.expiry.peek()
            && *sample < horizon
        {
            if let Some(Reverse((sample, id))) = self.expiry.pop()
                && self.seen.get(&id) == Some(&sample)
            {
                self.seen.remove(&id);
            }
        }
        let mut placed = Vec::new();
        for by_sample in [true, false] {
            loop {
                let queue = if by_sample {
                    &self.waiting_samples
                } else {
                    &self.waiting_ms
                };
                // The earliest waiting cannot be placed: no later one can.
                let Some(sample) = queue.front().and_then(|e| self.place(e)) else {
                    break;
                };
                let queue = if by_sample {
                    &mut self.waiting_samples
                } else {
                    &mut self.waiting_ms
                };
                if let Some(e) = queue.pop_front() {
                    self.remember(&e.event_id, sample);
                    placed.push((e, sample));
                }
            }
        }
        placed
    }

    fn remember(&mut self, id: &str, sample: u64) {
        self.seen.insert(id.to_string(), sample);
        self.expiry.push(Reverse((sample, id.to_string())));
    }

    /// The first sample an event may still be placed at.
    fn horizon(&self) -> u64 {
        self.end().saturating_sub(self.keep_samples)
    }

    /// Takes an event of the session; `held_elsewhere` events of the session are held by
    /// others (epochs waiting for their samples) and count against the limit too.
    pub fn event(&mut self, e: Event, held_elsewhere: usize) -> Placed {
        if self.seen.contains_key(&e.event_id) {
            return Placed::Copy(e);
        }
        if self.before_memory(&e) {
            return Placed::Late(e);
        }
        if self.seen.len().saturating_add(held_elsewhere) >= self.max_held {
            return Placed::Full(e);
        }
        match self.place(&e) {
            Some(sample) => {
                self.remember(&e.event_id, sample);
                Placed::At(e, sample)
            }
            None => {
                self.seen.insert(e.event_id.clone(), u64::MAX);
                let (queue, key) = match e.onset {
                    Onset::Sample(n) => (&mut self.waiting_samples, n as f64),
                    Onset::UnixMs(ms) => (&mut self.waiting_ms, ms),
                };
                // After those with the same onset: they keep the order they came in.
                let at = queue.partition_point(|w| onset_key(w) <= key);
                queue.insert(at, e);
                Placed::Waiting
            }
        }
    }

    /// Whether the event's onset lies before what is remembered.
    fn before_memory(&self, e: &Event) -> bool {
        match e.onset {
            Onset::Sample(n) => n < self.horizon(),
            // Before the first batch remembered: its place would need one forgotten, or it
            // is before the session's first sample.
            Onset::UnixMs(ms) => self
                .anchors
                .front()
                .is_some_and(|first| ms < first.start_ms),
        }
    }

    /// The sample of an event's onset, once the batch that places it is known.
    fn place(&self, e: &Event) -> Option<u64> {
        match e.onset {
            Onset::Sample(n) => (n < self.end()).then_some(n),
            Onset::UnixMs(ms) => {
                // The last batch starting at or before the onset, provided a later batch has
                // started after it or the onset lies inside it: before that, a batch to
                // come might still hold it.
                let i = self.anchors.iter().rposition(|a| a.start_ms <= ms)?;
                let a = self.anchors[i];
                let span_ms = a.samples as f64 * 1000.0 / self.fs;
                let settled = i + 1 < self.anchors.len() || ms < a.start_ms + span_ms;
                if !settled {
                    return None;
                }
                let offset = ((ms - a.start_ms) * self.fs / 1000.0).round_ties_even();
                Some(a.first_sample + offset as u64)
            }
        }
    }
}

/// An onset as the waiting queues order it (each queue holds one kind).
fn onset_key(e: &Event) -> f64 {
    match e.onset {
        Onset::Sample(n) => n as f64,
        Onset::UnixMs(ms) => ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(id: &str, ms: f64) -> Event {
        Event {
            session_id: "s".into(),
            event_id: id.into(),
            onset: Onset::UnixMs(ms),
            duration_s: 0.0,
            label: "x".into(),
            value: None,
            source: "app".into(),
        }
    }

    impl Timeline {
        fn event_at(&mut self, e: Event) -> Placed {
            self.event(e, 0)
        }
    }

    fn sample(p: &Placed) -> Option<u64> {
        match p {
            Placed::At(_, s) => Some(*s),
            _ => None,
        }
    }

    #[test]
    fn each_batch_anchors_the_onsets_it_holds() {
        // 250 Hz, 32-sample batches (128 ms), the device's stamps drifting 1 ms a batch late.
        let mut t = Timeline::new(250.0, 10.0, usize::MAX);
        for k in 0..4u64 {
            t.batch(k * 32, 1_000.0 + k as f64 * 129.0, 32);
        }
        // In batch 2 (starts at 1258 ms): 10 ms in is 2.5 samples, rounded to even: 2.
        assert_eq!(sample(&t.event_at(at_ms("a", 1_268.0))), Some(64 + 2));
        // 14 ms in: 3.5 samples, to even: 4.
        assert_eq!(sample(&t.event_at(at_ms("b", 1_272.0))), Some(64 + 4));
        // Anchored on the session's start instead it would be (1387 - 1000) * 0.25 = 96.75,
        // sample 97; batch 3 (1387 ms) places it at its own first sample.
        assert_eq!(sample(&t.event_at(at_ms("c", 1_387.0))), Some(96));
    }

    #[test]
    fn an_event_before_its_samples_waits_for_the_batch_that_holds_it() {
        let mut t = Timeline::new(100.0, 10.0, usize::MAX);
        t.batch(0, 0.0, 100);
        assert_eq!(t.event_at(at_ms("e", 1_500.0)), Placed::Waiting);
        assert_eq!(t.waiting(), 1);
        // The next batch ends at 2000 ms: it holds the onset.
        let placed = t.batch(100, 1_000.0, 100);
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].1, 150);
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn an_onset_in_a_gap_is_placed_from_the_batch_before_it_once_a_later_one_starts() {
        let mut t = Timeline::new(100.0, 10.0, usize::MAX);
        t.batch(0, 0.0, 100); // 0..1000 ms
        assert_eq!(t.event_at(at_ms("gap", 1_200.0)), Placed::Waiting);
        // The next batch starts at 1500 ms (the stamps jumped): the onset stays with the
        // batch before the gap, 1.2 s from its start.
        let placed = t.batch(100, 1_500.0, 100);
        assert_eq!(placed[0].1, 120);
    }

    #[test]
    fn copies_are_known_by_event_id_and_late_events_are_not_dropped_silently() {
        let mut t = Timeline::new(100.0, 2.0, usize::MAX);
        for k in 0..10u64 {
            t.batch(k * 100, k as f64 * 1_000.0, 100);
        }
        assert_eq!(sample(&t.event_at(at_ms("a", 9_250.0))), Some(925));
        assert!(matches!(t.event_at(at_ms("a", 9_250.0)), Placed::Copy(_)));
        // 2 s are remembered behind sample 1000: the batches from sample 800 on.
        assert_eq!(sample(&t.event_at(at_ms("b", 8_000.0))), Some(800));
        assert!(matches!(t.event_at(at_ms("c", 7_999.0)), Placed::Late(_)));
        let by_sample = Event {
            onset: Onset::Sample(799),
            ..at_ms("d", 0.0)
        };
        assert!(matches!(t.event_at(by_sample), Placed::Late(_)));
        let by_sample = Event {
            onset: Onset::Sample(812),
            ..at_ms("f", 0.0)
        };
        assert_eq!(sample(&t.event_at(by_sample)), Some(812));
    }

    #[test]
    fn an_onset_before_the_sessions_first_sample_is_late() {
        let mut t = Timeline::new(100.0, 10.0, usize::MAX);
        t.batch(0, 5_000.0, 100);
        assert!(matches!(
            t.event_at(at_ms("early", 4_999.0)),
            Placed::Late(_)
        ));
        assert_eq!(sample(&t.event_at(at_ms("first", 5_000.0))), Some(0));
    }

    #[test]
    fn what_is_remembered_stays_bounded() {
        let mut t = Timeline::new(250.0, 1.0, usize::MAX);
        for k in 0..10_000u64 {
            t.batch(k * 32, k as f64 * 128.0, 32);
            let id = format!("e{k}");
            t.event_at(at_ms(&id, k as f64 * 128.0 + 1.0));
        }
        // One second of 32-sample batches, and the ids placed within it.
        assert!(t.anchors.len() <= 250 / 32 + 2, "{}", t.anchors.len());
        assert!(t.seen.len() <= 250 / 32 + 2, "{}", t.seen.len());
    }

    #[test]
    fn a_timeline_restored_from_its_state_carries_on_as_the_original() {
        let mut t = Timeline::new(100.0, 2.0, usize::MAX);
        for k in 0..5u64 {
            t.batch(k * 100, k as f64 * 1_000.0 + 3.0, 100);
        }
        t.event_at(at_ms("placed", 4_500.0));
        t.event_at(at_ms("waits", 6_200.0));
        t.event_at(Event {
            onset: Onset::Sample(550),
            ..at_ms("by-sample", 0.0)
        });
        let state = t.state();
        assert_eq!(state.waiting.len(), 2);
        // Through JSON, as a snapshot carries it.
        let json = serde_json::to_string(&state).unwrap();
        let back: TimelineState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        let mut r = Timeline::restore(100.0, 2.0, usize::MAX, back);
        assert_eq!(r.state(), state);
        for tl in [&mut t, &mut r] {
            assert!(matches!(
                tl.event_at(at_ms("placed", 4_500.0)),
                Placed::Copy(_)
            ));
        }
        let (a, b) = (t.batch(500, 5_001.0, 100), r.batch(500, 5_001.0, 100));
        assert_eq!(a, b);
        assert_eq!(a[0].1, 550);
        let (a, b) = (t.batch(600, 6_002.0, 100), r.batch(600, 6_002.0, 100));
        assert_eq!(a, b);
        assert_eq!(a[0].1, 620);
        assert_eq!(t.state(), r.state());
    }

    #[test]
    fn a_full_session_takes_no_more_events_but_still_knows_copies() {
        let mut t = Timeline::new(100.0, 10.0, 2);
        t.batch(0, 0.0, 100);
        assert!(sample(&t.event_at(at_ms("a", 100.0))).is_some());
        assert_eq!(t.event_at(at_ms("b", 5_000.0)), Placed::Waiting);
        assert!(matches!(t.event_at(at_ms("c", 200.0)), Placed::Full(_)));
        assert!(matches!(t.event_at(at_ms("a", 100.0)), Placed::Copy(_)));
        // Held elsewhere counts: one event here and one epoch waiting fill a limit of 2.
        let mut t = Timeline::new(100.0, 10.0, 2);
        t.batch(0, 0.0, 100);
        t.event_at(at_ms("a", 100.0));
        assert!(matches!(t.event(at_ms("b", 200.0), 1), Placed::Full(_)));
    }
}
