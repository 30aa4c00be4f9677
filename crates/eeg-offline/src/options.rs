//! What a run reads, how it processes it, and what it writes: the plain structs a caller
//! fills in before calling [`crate::process`].

use std::path::PathBuf;

use eeg_dsp::ProcessingConfig;
use eeg_session::TriggerConfig;
use eeg_session::config::{EpochsConfig, EventsConfig};

use crate::output::Target;
use crate::table::Format;

/// What a run reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// JSON lines or a capture (told by content) on standard input.
    Stdin,
    /// A file of any kind [`crate::detect`] tells.
    File(PathBuf),
}

impl Input {
    /// The input in messages: its path, or `<stdin>`.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".into(),
            Input::File(p) => p.display().to_string(),
        }
    }

    /// The input in a report's title: its file name, or `standard input`.
    pub(crate) fn title(&self) -> String {
        match self {
            Input::Stdin => "standard input".into(),
            Input::File(p) => p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
        }
    }
}

/// How a run reads and processes its input. Make one with [`Options::new`] and set the
/// fields that differ from the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    pub input: Input,
    pub processing: ProcessingConfig,
    /// The trigger rules, evaluated when events or a report are asked for.
    pub triggers: TriggerConfig,
    /// The config file `processing` and `triggers` came from, as a report names it; `None`
    /// for the defaults.
    pub config_file: Option<PathBuf>,
    /// Only these channels (EDF/BDF signal labels, or the messages' channel names), in this
    /// order.
    pub channels: Option<Vec<String>>,
    /// EDF/BDF: the records' session id (default: the file name without extension). Raw
    /// messages and records: only this session's.
    pub session_id: Option<String>,
    /// Threads an EDF/BDF session's channels are split across (the output is the same for
    /// any number).
    pub threads: usize,
    /// The config's `[epochs]`: what to cut around each event when epochs are asked for.
    pub epochs: Option<EpochsConfig>,
    /// The config's `[events]`.
    pub events: EventsConfig,
    /// A BIDS `events.tsv` of the recording's events (`--events`).
    pub events_file: Option<PathBuf>,
}

impl Options {
    /// The defaults: the default processing and trigger rules, every channel and session,
    /// one thread.
    pub fn new(input: Input) -> Options {
        Options {
            input,
            processing: ProcessingConfig::default(),
            triggers: TriggerConfig::default(),
            config_file: None,
            channels: None,
            session_id: None,
            threads: 1,
            epochs: None,
            events: EventsConfig::default(),
            events_file: None,
        }
    }
}

/// What a run writes. With no records, an `eeg.processed/1` JSONL input is read back for
/// the report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Outputs {
    /// The records, in `format`.
    pub records: Option<Target>,
    pub format: Format,
    /// The trigger events, `analytics.trigger/1` JSON lines.
    pub events: Option<Target>,
    /// The HTML report.
    pub report: Option<Target>,
    /// One `eeg.epoch/1` record per event, JSON lines (cut as `Options::epochs` says).
    pub epochs: Option<Target>,
    /// Every event placed, as a BIDS `events.tsv` (with `sample`).
    pub events_out: Option<Target>,
    /// The average of each label's kept epochs (the ERP) with its standard error, CSV, one
    /// row per session, label, channel and sample.
    pub erp: Option<Target>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_is_named_by_its_path_in_messages_and_by_its_file_name_in_a_title() {
        let file = Input::File(PathBuf::from("/data/sub-01/eeg.edf"));
        assert_eq!(file.name(), "/data/sub-01/eeg.edf");
        assert_eq!(file.title(), "eeg.edf");
        assert_eq!(Input::Stdin.name(), "<stdin>");
        assert_eq!(Input::Stdin.title(), "standard input");
        // A path with no file name (the root) is titled by the whole path.
        assert_eq!(Input::File(PathBuf::from("/")).title(), "/");
    }

    #[test]
    fn the_defaults_read_every_channel_and_session_on_one_thread() {
        let o = Options::new(Input::Stdin);
        assert_eq!(o.threads, 1);
        assert!(o.channels.is_none() && o.session_id.is_none() && o.config_file.is_none());
        assert_eq!(o.processing, ProcessingConfig::default());
    }
}
