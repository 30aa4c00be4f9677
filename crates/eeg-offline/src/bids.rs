//! BIDS `events.tsv` in (`--events FILE.tsv`) and out (`--events-out FILE.tsv`): the
//! markers of a recording kept beside it, as PsychoPy logs and BIDS datasets keep them.
//!
//! Columns (a header line names them, in any order; others are ignored):
//! - `onset` (required): seconds after the recording's first sample;
//! - `duration` (required by BIDS, `n/a` allowed): seconds;
//! - `trial_type`: the event's label;
//! - `value`: its code; an integer is the event's `value`, and is its label too when there
//!   is no `trial_type` (any other text is the label then);
//! - `sample`: the sample index (0-based), which wins over `onset` as `onset_sample` wins over
//!   `onset_ms` in `eeg.event/1`.
//!
//! `n/a` (or an empty cell) is a missing value. Lines must come in order of onset (BIDS
//! asks for it), so the file is read as the recording is, never held whole.

use std::io::BufRead;

use crate::Error;

/// A cell or header as an error shows it: quoted, escaped, cut at 64 characters.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(64).collect();
    let more = if cut.len() < text.len() { "..." } else { "" };
    format!("{cut:?}{more}")
}

/// One line of an `events.tsv`.
#[derive(Debug, Clone, PartialEq)]
pub struct TsvEvent {
    /// The line's number, counted from 1 (the header is line 1).
    pub line: u64,
    pub onset_s: f64,
    pub duration_s: Option<f64>,
    pub label: String,
    pub value: Option<i64>,
    pub sample: Option<u64>,
}

/// An `events.tsv`, read line by line.
pub struct EventsTsv<R> {
    name: String,
    reader: R,
    line_no: u64,
    buf: String,
    columns: Columns,
    last_onset: f64,
    /// A line read ahead of the caller's need.
    next: Option<TsvEvent>,
}

impl<R> std::fmt::Debug for EventsTsv<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsTsv")
            .field("name", &self.name)
            .field("line", &self.line_no)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Columns {
    onset: usize,
    duration: Option<usize>,
    trial_type: Option<usize>,
    value: Option<usize>,
    sample: Option<usize>,
}

/// Longest line read, bytes: a label is at most 256 bytes, and a line holds a few cells.
const MAX_LINE_BYTES: usize = 64 << 10;

impl<R: BufRead> EventsTsv<R> {
    /// Reads the header line; an error names the file and what is wrong.
    pub fn new(name: impl Into<String>, reader: R) -> Result<EventsTsv<R>, Error> {
        let mut t = EventsTsv {
            name: name.into(),
            reader,
            line_no: 0,
            buf: String::new(),
            columns: Columns::default(),
            last_onset: f64::NEG_INFINITY,
            next: None,
        };
        if !t.read_line()? {
            return Err(t.bad("empty file, no header line"));
        }
        let names: Vec<String> = t
            .buf
            .trim_end_matches(['\r', '\n'])
            .split('\t')
            .map(|s| s.trim().to_string())
            .collect();
        let find = |n: &str| names.iter().position(|c| c == n);
        t.columns = Columns {
            onset: find("onset").ok_or_else(|| {
                t.bad(format!(
                    "the header has no 'onset' column (columns: {})",
                    shown(&names.join(", "))
                ))
            })?,
            duration: find("duration"),
            trial_type: find("trial_type"),
            value: find("value"),
            sample: find("sample"),
        };
        Ok(t)
    }

    fn bad(&self, problem: impl std::fmt::Display) -> Error {
        Error::bad(format!("{}: line {}: {problem}", self.name, self.line_no))
    }

    fn read_line(&mut self) -> Result<bool, Error> {
        self.buf.clear();
        let n = std::io::Read::take(&mut self.reader, MAX_LINE_BYTES as u64 + 1)
            .read_line(&mut self.buf)
            .map_err(|e| {
                Error::bad(format!(
                    "{}: line {}: cannot read: {e}",
                    self.name,
                    self.line_no + 1
                ))
            })?;
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        if n > MAX_LINE_BYTES {
            return Err(self.bad(format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        Ok(true)
    }

    /// The next event, `None` at the end of the file.
    fn read_event(&mut self) -> Result<Option<TsvEvent>, Error> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            let line = self.buf.trim_end_matches(['\r', '\n']);
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split('\t').collect();
            let cell = |i: Option<usize>| {
                i.and_then(|i| cells.get(i))
                    .map(|c| c.trim())
                    .filter(|c| !c.is_empty() && *c != "n/a")
            };
            let c = &self.columns;
            let number = |name: &str, i: Option<usize>| -> Result<Option<f64>, Error> {
                cell(i)
                    .map(|v| {
                        v.parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| {
                                self.bad(format!("column '{name}': not a number: {}", shown(v)))
                            })
                    })
                    .transpose()
            };
            let onset_s = number("onset", Some(c.onset))?
                .ok_or_else(|| self.bad("column 'onset': missing"))?;
            let duration_s = number("duration", c.duration)?;
            if duration_s.is_some_and(|d| d < 0.0) {
                return Err(self.bad("column 'duration': negative"));
            }
            let sample = cell(c.sample)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        self.bad(format!(
                            "column 'sample': not a sample index (an integer >= 0): {}",
                            shown(v)
                        ))
                    })
                })
                .transpose()?;
            let raw_value = cell(c.value);
            let value = raw_value.and_then(|v| v.parse::<i64>().ok());
            let label = cell(c.trial_type).or(raw_value).unwrap_or_default();
            if label.len() > eeg_schema::MAX_LABEL_BYTES {
                return Err(self.bad(format!(
                    "a label of {} bytes, at most {}",
                    label.len(),
                    eeg_schema::MAX_LABEL_BYTES
                )));
            }
            if onset_s < self.last_onset {
                return Err(self.bad(format!(
                    "onset {onset_s} s comes before the line above's {} s; sort the file by onset",
                    self.last_onset
                )));
            }
            self.last_onset = onset_s;
            return Ok(Some(TsvEvent {
                line: self.line_no,
                onset_s,
                duration_s,
                label: label.to_string(),
                value,
                sample,
            }));
        }
    }

    /// Moves the events whose onset lies before `until_s` (seconds after the recording's
    /// first sample) into `out`, in order.
    pub fn take_until(&mut self, until_s: f64, out: &mut Vec<TsvEvent>) -> Result<(), Error> {
        loop {
            if self.next.is_none() {
                self.next = self.read_event()?;
            }
            match &self.next {
                Some(e) if e.onset_s < until_s => out.extend(self.next.take()),
                _ => return Ok(()),
            }
        }
    }
}

/// Writes `events.tsv` lines: a header, then one line per event.
pub(crate) fn write_header(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    out.write_all(b"onset\tduration\ttrial_type\tvalue\tsample\n")
}

/// One `events.tsv` line: onset and duration in seconds, the label as `trial_type` (tabs and
/// line breaks, which a cell cannot hold, as spaces), the value or `n/a`, the sample.
pub(crate) fn write_line(
    out: &mut dyn std::io::Write,
    onset_s: f64,
    duration_s: f64,
    label: &str,
    value: Option<i64>,
    sample: u64,
) -> std::io::Result<()> {
    let label: String = label
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let label = if label.is_empty() { "n/a" } else { &label };
    let value = value.map_or_else(|| "n/a".to_string(), |v| v.to_string());
    writeln!(out, "{onset_s}\t{duration_s}\t{label}\t{value}\t{sample}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<TsvEvent>, Error> {
        let mut t = EventsTsv::new("events.tsv", text.as_bytes())?;
        let mut out = Vec::new();
        t.take_until(f64::INFINITY, &mut out)?;
        Ok(out)
    }

    #[test]
    fn columns_in_any_order_and_missing_values() {
        let e = all("trial_type\tonset\tduration\tvalue\n\
             target\t1.5\t0\t3\n\
             n/a\t2.25\tn/a\tgo\n\
             \n\
             standard\t3\t0.1\tn/a\n")
        .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].onset_s, e[0].label.as_str(), e[0].value),
            (1.5, "target", Some(3))
        );
        // No trial_type: a text value is the label.
        assert_eq!(
            (e[1].label.as_str(), e[1].value, e[1].duration_s),
            ("go", None, None)
        );
        assert_eq!(e[2].line, 5);
    }

    #[test]
    fn read_as_the_recording_is() {
        let mut t = EventsTsv::new(
            "e.tsv",
            "onset\tsample\n1\t256\n2\tn/a\n3\t768\n".as_bytes(),
        )
        .unwrap();
        let mut out = Vec::new();
        t.take_until(2.0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].sample, Some(256));
        t.take_until(10.0, &mut out).unwrap();
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn errors_name_the_line_and_the_column() {
        let cases = [
            ("", "e.tsv: line 0: empty file"),
            (
                "duration\n1\n",
                "e.tsv: line 1: the header has no 'onset' column",
            ),
            (
                "onset\tduration\nsoon\t0\n",
                "e.tsv: line 2: column 'onset': not a number",
            ),
            (
                "onset\tduration\n1\t-1\n",
                "e.tsv: line 2: column 'duration': negative",
            ),
            ("onset\tsample\n1\t-3\n", "e.tsv: line 2: column 'sample'"),
            ("onset\n2\n1\n", "e.tsv: line 3: onset 1 s comes before"),
        ];
        for (text, want) in cases {
            let got = EventsTsv::new("e.tsv", text.as_bytes()).and_then(|mut t| {
                let mut out = Vec::new();
                t.take_until(f64::INFINITY, &mut out)
            });
            let e = got.unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_written_line_reads_back() {
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        write_line(&mut out, 1.25, 0.0, "Stimulus/S\t1", Some(7), 320).unwrap();
        let text = String::from_utf8(out).unwrap();
        let e = all(&text).unwrap();
        assert_eq!(
            (e[0].onset_s, e[0].label.as_str(), e[0].value, e[0].sample),
            (1.25, "Stimulus/S 1", Some(7), Some(320))
        );
    }
}
