//! The offline front door of eeg-pipeline: EEG files and captured streams through the
//! session core (`eeg-session`) into records, tables, trigger events and an HTML report.
//!
//! A caller describes a run with plain structs and calls [`process`]:
//!
//! ```no_run
//! use eeg_offline::{Format, Input, Options, Outputs, Target};
//!
//! let options = Options::new(Input::File("recording.edf".into()));
//! let mut outputs = Outputs::default();
//! outputs.records = Some(Target::File("features.parquet".into()));
//! outputs.format = Format::Parquet;
//! let done = eeg_offline::process(&options, &outputs, &|_bytes| {})?;
//! for session in &done.sessions {
//!     eprintln!("{session}");
//! }
//! # Ok::<(), eeg_offline::Error>(())
//! ```
//!
//! - Inputs ([`detect`]): EDF, EDF+ and BDF/BDF+ recordings (streamed one data record at a
//!   time, a session's channels split across threads), `eeg.raw/1` JSON lines and captures
//!   of binary `eeg.raw/1` ([`RawMessages`]), and for a report, `eeg.processed/1` records.
//! - Outputs: `eeg.processed/1` JSON lines, or the same records as a CSV or Parquet table
//!   ([`Format`]), `analytics.trigger/1` events, and the report ([`report`]). Files are
//!   written under `FILE.partial` and renamed when the run succeeds ([`Output`]).
//! - The style and script the report shares with the service's live page, and how they go
//!   into a page ([`pages`]).
//! - Errors ([`Error`]) are one line each; [`Error::is_bad_input`] tells the input's faults
//!   from the outputs' and the library's.
//!
//! Warnings (a skipped notch or signal, a session restarted after a gap) go to `tracing`.
//! Numbers are those of the service: the same session core makes both.

pub mod bids;
pub mod detect;
mod edf;
mod encode;
mod engine;
mod error;
mod options;
mod output;
pub mod pages;
mod process;
pub mod raw;
pub mod report;
mod sink;
mod summary;
pub mod table;
pub mod time;
mod writer;

#[cfg(test)]
mod testing;

pub use detect::{Accepts, Kind, detect};
pub use edf::{RecordEvent, RecordEvents, SessionGroup, session_groups};
pub use encode::{Encode, Jsonl};
pub use error::Error;
pub use options::{Input, Options, Outputs};
pub use output::{Output, Target};
pub use process::{Processed, ReportWritten, process};
pub use raw::{At, RawMessages};
pub use summary::Summary;
pub use table::Format;
