//! A session's events and their epochs: events placed in the session's samples
//! ([`Timeline`]), the filtered signal cut around those whose label is epoched
//! ([`eeg_dsp::epochs::Epocher`]), one `eeg.epoch/1` record per event, and the running
//! average (the ERP) per label of the epochs kept.

use std::sync::Arc;

use eeg_dsp::epochs::{Average, EpochPlan, EpochSink, EpochValues, Epocher, Missing};
use eeg_dsp::{ConfigError, Plan, WindowSink};
use eeg_schema::{EpochRecord, Event, SessionMeta};

use serde::{Deserialize, Serialize};

use crate::config::{EpochsConfig, EventsConfig};
use crate::events::{Placed, Timeline, TimelineState};

/// Labels a session averages at most; events of further labels are epoched and recorded but
/// not averaged (a recording with a million distinct annotation texts must not hold a
/// million averages).
pub const MAX_AVERAGED_LABELS: usize = 64;

/// What a session's events came to so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventCounts {
    /// Events taken (copies not counted).
    pub events: u64,
    /// Events whose `event_id` the session had already.
    pub copies: u64,
    /// Events that came after the samples they needed were let go.
    pub late: u64,
    pub epochs_ok: u64,
    pub epochs_rejected: u64,
    pub epochs_no_data: u64,
}

/// What became of an event handed to a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// Placed in the session's samples.
    Placed,
    /// Waiting for the batch that holds its onset.
    Waiting,
    /// A copy of an event the session had (same `event_id`): dropped.
    Copy,
    /// Too late for the samples it needed: counted, and recorded as `too_late` if epoched.
    Late,
    /// Not taken: the session holds `events.max_held` events already. Nothing was counted
    /// or recorded; the caller says so ([`SessionEpochs::full_reason`]; the service
    /// dead-letters the event).
    Full(Event),
}

/// A session's events and epochs in a snapshot: everything but the filtered samples, which
/// a restored session computes again from its messages (see [`SessionEpochs::needs_from`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventState {
    pub timeline: TimelineState,
    /// Events whose epochs wait for their last sample, with their onsets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<(Event, u64)>,
    pub counts: EventCounts,
    /// Unix time (ms) of the session's sample 0.
    pub t0_ms: f64,
}

impl EventState {
    /// A session with no event yet, its sample 0 at `t0_ms`.
    pub fn empty(t0_ms: f64) -> EventState {
        EventState {
            timeline: TimelineState::default(),
            pending: Vec::new(),
            counts: EventCounts::default(),
            t0_ms,
        }
    }
}

/// The running average of one label's epochs.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelAverage {
    pub label: String,
    pub average: Average,
    /// Epochs of the label rejected (left out of the average).
    pub rejected: u64,
}

/// Receives a session's epoch records.
pub trait EpochOutput {
    type Error;

    fn epoch(&mut self, record: &EpochRecord<'_>) -> Result<(), Self::Error>;

    /// An event placed at `sample` of the session's stream at `fs` Hz, whose sample 0 is at
    /// `t0_ms` (every event placed, epoched or not: what an events file lists). Most outputs
    /// need only the epochs.
    fn placed(&mut self, e: &Event, sample: u64, t0_ms: f64, fs: f64) -> Result<(), Self::Error> {
        let _ = (e, sample, t0_ms, fs);
        Ok(())
    }
}

/// One session's events and epochs.
#[derive(Debug)]
pub struct SessionEpochs {
    timeline: Timeline,
    epocher: Option<Epocher<Event>>,
    out: Out,
}

/// How far behind its newest sample a session keeps samples for late events.
fn reach(events: &EventsConfig, fs: f64) -> u64 {
    (events.max_delay_s * fs).ceil() as u64
}

/// What records are made of, beside the epocher (borrowed while it runs).
#[derive(Debug)]
struct Out {
    plan: Option<Arc<EpochPlan>>,
    labels: Option<Vec<String>>,
    include_samples: bool,
    tmin_s: f64,
    tmax_s: f64,
    component_names: Vec<String>,
    band_names: Vec<String>,
    t0_ms: f64,
    counts: EventCounts,
    averages: Vec<LabelAverage>,
    /// Whether the averages are kept (someone reads them).
    averaging: bool,
}

impl SessionEpochs {
    /// A session at `plan`'s rate with `n_channels` channels, its sample 0 at `t0_ms`.
    /// `epochs: None` places and counts events without cutting epochs.
    pub fn new(
        epochs: Option<&EpochsConfig>,
        events: &EventsConfig,
        plan: &Plan,
        n_channels: usize,
        t0_ms: f64,
    ) -> Result<SessionEpochs, ConfigError> {
        let epocher = match epochs {
            Some(c) => Some(Epocher::new(
                Arc::new(EpochPlan::new(&c.epoch, plan)?),
                n_channels,
                reach(events, plan.fs),
            )),
            None => None,
        };
        Ok(SessionEpochs::with(
            epochs,
            plan,
            Timeline::new(plan.fs, events.max_delay_s, events.max_held),
            epocher,
            t0_ms,
        ))
    }

    /// A session as [`SessionEpochs::state`] described it, its filtered samples pushed again
    /// from sample `start` on (no earlier than [`SessionEpochs::needs_from`] was when the
    /// state was taken, or its epochs may differ).
    pub fn restore(
        epochs: Option<&EpochsConfig>,
        events: &EventsConfig,
        plan: &Plan,
        n_channels: usize,
        state: EventState,
        start: u64,
    ) -> Result<SessionEpochs, ConfigError> {
        let epocher = match epochs {
            Some(c) => Some(Epocher::resume(
                Arc::new(EpochPlan::new(&c.epoch, plan)?),
                n_channels,
                reach(events, plan.fs),
                start,
                state.pending,
            )),
            None => None,
        };
        let timeline =
            Timeline::restore(plan.fs, events.max_delay_s, events.max_held, state.timeline);
        let mut se = SessionEpochs::with(epochs, plan, timeline, epocher, state.t0_ms);
        se.out.counts = state.counts;
        Ok(se)
    }

    /// The most heap a session of this shape holds for its filtered samples and batch
    /// anchors, bytes (its events are bounded by `events.max_held`), or why its epochs
    /// cannot be cut at this rate.
    pub fn max_state_bytes(
        epochs: Option<&EpochsConfig>,
        events: &EventsConfig,
        plan: &Plan,
        n_channels: usize,
    ) -> Result<u64, ConfigError> {
        let anchors = (crate::events::MAX_ANCHORS * 3 * 8) as u64;
        let Some(c) = epochs else {
            return Ok(anchors);
        };
        let eplan = EpochPlan::new(&c.epoch, plan)?;
        let ring = Epocher::<Event>::max_state_bytes(&eplan, n_channels, reach(events, plan.fs));
        Ok(anchors.saturating_add(ring))
    }

    /// What the session holds but its filtered samples, as [`SessionEpochs::restore`] takes
    /// it back.
    pub fn state(&self) -> EventState {
        EventState {
            timeline: self.timeline.state(),
            pending: self
                .epocher
                .as_ref()
                .map(|e| e.pending().cloned().collect())
                .unwrap_or_default(),
            counts: self.out.counts,
            t0_ms: self.out.t0_ms,
        }
    }

    /// The first sample of the session's stream its epochs may still need (`None` when it
    /// cuts none): a restored session must push its filtered samples again from there.
    pub fn needs_from(&self) -> Option<u64> {
        self.epocher.as_ref().map(Epocher::needs_from)
    }

    /// Epochs that would end without their samples if the stream ended now: events
    /// waiting for their samples, or for their epochs' last sample.
    pub fn waiting_epochs(&self) -> usize {
        self.timeline.waiting() + self.epocher.as_ref().map_or(0, |e| e.pending().len())
    }

    /// Heap bytes held now (about: its maps' entries are counted, not their spare room).
    pub fn state_bytes(&self) -> usize {
        self.epocher.as_ref().map_or(0, Epocher::state_bytes) + self.timeline.state_bytes()
    }

    /// Events held: waiting for their samples, remembered to know copies, or with an epoch
    /// waiting for its end.
    pub fn held(&self) -> usize {
        self.timeline.held() + self.epocher.as_ref().map_or(0, |e| e.pending().len())
    }

    /// Why an event was [`Taken::Full`], in one line.
    pub fn full_reason(&self, e: &Event) -> String {
        format!(
            "session {} holds {} events already (waiting for their samples, remembered within events.max_delay_s, or with epochs not ended): event {} not taken; raise events.max_held",
            crate::text::quoted(&e.session_id),
            self.held(),
            crate::text::quoted(&e.event_id)
        )
    }

    fn with(
        epochs: Option<&EpochsConfig>,
        plan: &Plan,
        timeline: Timeline,
        epocher: Option<Epocher<Event>>,
        t0_ms: f64,
    ) -> SessionEpochs {
        let eplan = epocher.as_ref().map(|e| Arc::clone(e.plan()));
        SessionEpochs {
            timeline,
            epocher,
            out: Out {
                plan: eplan,
                labels: epochs.and_then(|c| c.labels.clone()),
                include_samples: epochs.is_some_and(|c| c.include_samples),
                tmin_s: epochs.map_or(0.0, |c| c.epoch.tmin_s),
                tmax_s: epochs.map_or(0.0, |c| c.epoch.tmax_s),
                component_names: epochs
                    .map(|c| c.epoch.components.iter().map(|c| c.name.clone()).collect())
                    .unwrap_or_default(),
                band_names: match epochs {
                    Some(c) if c.epoch.erd.is_some() => {
                        plan.bands.iter().map(|b| b.name.clone()).collect()
                    }
                    _ => Vec::new(),
                },
                t0_ms,
                counts: EventCounts::default(),
                averages: Vec::new(),
                averaging: true,
            },
        }
    }

    /// Keeps no averages: nothing will read them (the rejected and kept counts stay).
    pub fn without_averages(mut self) -> SessionEpochs {
        self.out.averaging = false;
        self
    }

    pub fn counts(&self) -> EventCounts {
        self.out.counts
    }

    /// The running averages, one per label in the order the labels first had an epoch.
    pub fn averages(&self) -> &[LabelAverage] {
        &self.out.averages
    }

    /// The epoch plan, when epochs are cut.
    pub fn plan(&self) -> Option<&EpochPlan> {
        self.out.plan.as_deref()
    }

    /// A batch of `samples` samples from `first_sample` is about to be pushed: the events
    /// waiting for it are placed.
    pub fn batch<O: EpochOutput>(
        &mut self,
        meta: &SessionMeta,
        first_sample: u64,
        start_ms: f64,
        samples: u64,
        output: &mut O,
    ) -> Result<(), O::Error> {
        for (e, sample) in self.timeline.batch(first_sample, start_ms, samples) {
            self.placed(meta, e, sample, output)?;
        }
        Ok(())
    }

    /// Takes an event of the session.
    pub fn event<O: EpochOutput>(
        &mut self,
        meta: &SessionMeta,
        e: Event,
        output: &mut O,
    ) -> Result<Taken, O::Error> {
        let pending = self.epocher.as_ref().map_or(0, |e| e.pending().len());
        match self.timeline.event(e, pending) {
            Placed::At(e, sample) => {
                self.out.counts.events += 1;
                self.placed(meta, e, sample, output)?;
                Ok(Taken::Placed)
            }
            Placed::Waiting => {
                self.out.counts.events += 1;
                Ok(Taken::Waiting)
            }
            Placed::Copy(_) => {
                self.out.counts.copies += 1;
                Ok(Taken::Copy)
            }
            Placed::Full(e) => Ok(Taken::Full(e)),
            Placed::Late(e) => {
                self.out.counts.events += 1;
                self.out.counts.late += 1;
                if !self.out.epoched(&e) {
                    return Ok(Taken::Late);
                }
                // An onset in ms before every batch remembered has no sample any more.
                let sample = e.onset.sample();
                self.out
                    .emit(meta, &e, sample, Err(Missing::Forgotten), output)?;
                Ok(Taken::Late)
            }
        }
    }

    /// Takes an event whose onset lies before the session's first sample (e.g. an
    /// annotation before a recording's stretch): counted, and recorded as `before_start`
    /// when its label is epoched.
    pub fn before_start<O: EpochOutput>(
        &mut self,
        meta: &SessionMeta,
        e: Event,
        output: &mut O,
    ) -> Result<(), O::Error> {
        self.out.counts.events += 1;
        if !self.out.epoched(&e) {
            return Ok(());
        }
        self.out
            .emit(meta, &e, None, Err(Missing::BeforeStart), output)
    }

    fn placed<O: EpochOutput>(
        &mut self,
        meta: &SessionMeta,
        e: Event,
        sample: u64,
        output: &mut O,
    ) -> Result<(), O::Error> {
        output.placed(&e, sample, self.out.t0_ms, self.timeline.fs())?;
        let Some(epocher) = self.epocher.as_mut() else {
            return Ok(());
        };
        if !self.out.epoched(&e) {
            return Ok(());
        }
        let mut emit = Emit::new(&mut self.out, meta, output);
        epocher.event(e, sample, &mut emit);
        emit.result
    }

    /// Filtered samples, interleaved, of the batch being pushed.
    pub fn filtered<O: EpochOutput>(
        &mut self,
        meta: &SessionMeta,
        frames: &[f64],
        output: &mut O,
    ) -> Result<(), O::Error> {
        let Some(epocher) = self.epocher.as_mut() else {
            return Ok(());
        };
        let mut emit = Emit::new(&mut self.out, meta, output);
        epocher.push_interleaved(frames, &mut emit);
        emit.result
    }

    /// The stream ended, or restarts at sample 0 from `t0_ms` (`Some`): epochs still waiting
    /// for samples are recorded as ended.
    pub fn end<O: EpochOutput>(
        &mut self,
        meta: &SessionMeta,
        restart_ms: Option<f64>,
        output: &mut O,
    ) -> Result<(), O::Error> {
        let mut result = Ok(());
        if let Some(epocher) = self.epocher.as_mut() {
            let mut emit = Emit::new(&mut self.out, meta, output);
            match restart_ms {
                Some(_) => epocher.reset(&mut emit),
                None => epocher.finish(&mut emit),
            }
            result = emit.result;
        }
        // Events whose samples never came end too: recorded, not dropped.
        for e in self.timeline.take_waiting() {
            if result.is_err() {
                break;
            }
            if self.out.epoched(&e) {
                let onset = e.onset.sample();
                result = self.out.emit(meta, &e, onset, Err(Missing::Ended), output);
            }
        }
        if let Some(t0) = restart_ms {
            self.out.t0_ms = t0;
            self.timeline = self.timeline.restarted();
        }
        result
    }
}

/// The epocher's sink: records made and handed to the output until it fails.
struct Emit<'a, O: EpochOutput> {
    out: &'a mut Out,
    meta: &'a SessionMeta,
    output: &'a mut O,
    result: Result<(), O::Error>,
}

impl<'a, O: EpochOutput> Emit<'a, O> {
    fn new(out: &'a mut Out, meta: &'a SessionMeta, output: &'a mut O) -> Emit<'a, O> {
        Emit {
            out,
            meta,
            output,
            result: Ok(()),
        }
    }
}

impl<O: EpochOutput> EpochSink<Event> for Emit<'_, O> {
    fn epoch(&mut self, e: Event, onset: u64, values: Result<&EpochValues, Missing>) {
        if self.result.is_ok() {
            self.result = self
                .out
                .emit(self.meta, &e, Some(onset), values, self.output);
        }
    }
}

impl Out {
    fn epoched(&self, e: &Event) -> bool {
        self.plan.is_some() && self.labels.as_ref().is_none_or(|l| l.contains(&e.label))
    }

    fn emit<O: EpochOutput>(
        &mut self,
        meta: &SessionMeta,
        e: &Event,
        onset: Option<u64>,
        values: Result<&EpochValues, Missing>,
        output: &mut O,
    ) -> Result<(), O::Error> {
        let Some(plan) = self.plan.as_deref() else {
            return Ok(());
        };
        let averages = self.averaging.then_some(&mut self.averages);
        match values {
            Ok(v) if v.rejected() => {
                self.counts.epochs_rejected += 1;
                if let Some(a) = averages.and_then(|a| average(a, &e.label)) {
                    a.rejected += 1;
                }
            }
            Ok(v) => {
                self.counts.epochs_ok += 1;
                if let Some(a) = averages.and_then(|a| average(a, &e.label)) {
                    a.average.add(v);
                }
            }
            Err(_) => self.counts.epochs_no_data += 1,
        }
        let record = EpochRecord {
            session_id: &meta.session_id,
            device_id: &meta.device_id,
            user_id: meta.user_id.as_deref(),
            channels: &meta.channels,
            event: e,
            onset_sample: onset,
            t0_ms: self.t0_ms,
            plan,
            component_names: &self.component_names,
            band_names: &self.band_names,
            tmin_s: self.tmin_s,
            tmax_s: self.tmax_s,
            values,
            include_samples: self.include_samples,
        };
        output.epoch(&record)
    }
}

/// The label's average among `averages`, started if there is room for one more label.
fn average<'a>(averages: &'a mut Vec<LabelAverage>, label: &str) -> Option<&'a mut LabelAverage> {
    let i = match averages.iter().position(|a| a.label == label) {
        Some(i) => i,
        None if averages.len() < MAX_AVERAGED_LABELS => {
            averages.push(LabelAverage {
                label: label.to_string(),
                average: Average::default(),
                rejected: 0,
            });
            averages.len() - 1
        }
        None => return None,
    };
    Some(&mut averages[i])
}

/// A window sink that also hands the filtered samples to a session's epochs, when it cuts
/// them: the processor's sink for a push.
pub struct Tap<'a, W: WindowSink, O: EpochOutput> {
    inner: &'a mut W,
    epochs: Option<(&'a mut SessionEpochs, &'a SessionMeta, &'a mut O)>,
    error: Option<O::Error>,
}

impl<W: WindowSink, O: EpochOutput> std::fmt::Debug for Tap<'_, W, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("epochs", &self.epochs.is_some())
            .field("failed", &self.error.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a, W: WindowSink, O: EpochOutput> Tap<'a, W, O> {
    /// Windows to `inner`; filtered samples to `epochs` too, when given.
    pub fn new(
        inner: &'a mut W,
        epochs: Option<(&'a mut SessionEpochs, &'a SessionMeta, &'a mut O)>,
    ) -> Tap<'a, W, O> {
        Tap {
            inner,
            epochs,
            error: None,
        }
    }

    /// The epoch output's first error, if it failed (no epoch was handed to it after that).
    pub fn finish(self) -> Result<(), O::Error> {
        self.error.map_or(Ok(()), Err)
    }
}

impl<W: WindowSink, O: EpochOutput> WindowSink for Tap<'_, W, O> {
    fn window(&mut self, window: &eeg_dsp::Window<'_>) {
        self.inner.window(window);
    }

    fn filtered(&mut self, frames: &[f64]) {
        self.inner.filtered(frames);
        if let Some((epochs, meta, output)) = self.epochs.as_mut()
            && self.error.is_none()
            && let Err(e) = epochs.filtered(meta, frames, *output)
        {
            self.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eeg_dsp::ProcessingConfig;
    use eeg_schema::Onset;

    #[derive(Default)]
    struct Kept(Vec<String>);

    impl EpochOutput for Kept {
        type Error = ();

        fn epoch(&mut self, record: &EpochRecord<'_>) -> Result<(), ()> {
            self.0
                .push(format!("{} {}", record.event.event_id, record.status()));
            Ok(())
        }
    }

    fn meta() -> SessionMeta {
        SessionMeta {
            session_id: "s".into(),
            device_id: "d".into(),
            user_id: None,
            sample_rate_hz: 250.0,
            channels: vec!["C3".into(), "C4".into()],
        }
    }

    fn event(id: &str, sample: u64, label: &str) -> Event {
        Event {
            session_id: "s".into(),
            event_id: id.into(),
            onset: Onset::Sample(sample),
            duration_s: 0.0,
            label: label.into(),
            value: None,
            source: "app".into(),
        }
    }

    /// Two seconds of a session with events at 0.5 s (twice: a copy), 1 s and 1.9 s (its
    /// epoch ends after the stream), of which `label` is epoched.
    fn run(se: SessionEpochs) -> (SessionEpochs, Kept) {
        let mut se = se;
        let (meta, mut out) = (meta(), Kept::default());
        se.batch(&meta, 0, 0.0, 500, &mut out).unwrap();
        for e in [
            event("a", 125, "x"),
            event("a", 125, "x"),
            event("b", 250, "y"),
            event("c", 475, "x"),
        ] {
            se.event(&meta, e, &mut out).unwrap();
        }
        let frames: Vec<f64> = (0..1000).map(|i| (i % 7) as f64).collect();
        se.filtered(&meta, &frames, &mut out).unwrap();
        se.end(&meta, None, &mut out).unwrap();
        (se, out)
    }

    fn config() -> EpochsConfig {
        EpochsConfig {
            labels: Some(vec!["x".into()]),
            ..EpochsConfig::default()
        }
    }

    #[test]
    fn a_session_epochs_its_labels_once_each_and_averages_them_when_asked() {
        let plan = ProcessingConfig::default().plan(250.0).unwrap();
        let events = EventsConfig::default();
        let se = SessionEpochs::new(Some(&config()), &events, &plan, 2, 0.0).unwrap();
        let (se, out) = run(se);
        assert_eq!(out.0, ["a ok", "c no_data"]);
        let c = se.counts();
        assert_eq!(
            (c.events, c.copies, c.epochs_ok, c.epochs_no_data),
            (3, 1, 1, 1)
        );
        assert_eq!(se.averages().len(), 1);
        assert_eq!(se.averages()[0].average.count, 1);
        let se = SessionEpochs::new(Some(&config()), &events, &plan, 2, 0.0)
            .unwrap()
            .without_averages();
        let (se, out) = run(se);
        assert_eq!(out.0, ["a ok", "c no_data"]);
        assert!(se.averages().is_empty());
    }
}
