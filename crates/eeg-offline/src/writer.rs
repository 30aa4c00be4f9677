//! The writer thread: records are encoded and written on a thread of their own, so that
//! encoding (a large share of the work for many channels) overlaps the signal processing.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use eeg_dsp::{OwnedWindow, Window};
use eeg_schema::SessionMeta;

use crate::Error;
use crate::encode::Encode;

/// Hands windows to the output thread. Windows travel in batches of [`BATCH`] (one wake-up
/// of the output thread per batch, not per window), as [`OwnedWindow`]s that come back to be
/// reused, so the steady state allocates nothing; the channel is bounded, so a slow output
/// slows the input instead of buffering without bound.
#[derive(Debug)]
pub struct Writer {
    tx: Option<SyncSender<Batch>>,
    recycled: Receiver<Batch>,
    /// The batch being filled; windows and emptied batches back from the output thread.
    pending: Batch,
    spare: Vec<OwnedWindow>,
    empty: Vec<Batch>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    /// Windows are dropped, not written ([`Writer::discard`]).
    discard: bool,
}

type Batch = Vec<(Arc<SessionMeta>, OwnedWindow)>;

/// Windows handed to the output thread at once.
const BATCH: usize = 16;

impl Writer {
    /// Starts the output thread. `encoder` makes the output's writer there: its errors, like
    /// every later one, come back from [`Writer::finish`].
    pub fn start(
        encoder: impl FnOnce() -> std::io::Result<Box<dyn Encode>> + Send + 'static,
    ) -> Writer {
        let (tx, rx) = sync_channel::<Batch>(256 / BATCH);
        let (back, recycled) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let mut encoder = encoder()?;
                for batch in rx {
                    for (meta, window) in &batch {
                        encoder.window(meta, &window.view())?;
                    }
                    let _ = back.send(batch);
                    encoder.end_batch()?;
                }
                encoder.finish()
            });
        // As `std::thread::spawn`, which this names for profilers: no thread, no run.
        let thread = thread.expect("spawning the output thread");
        Writer {
            tx: Some(tx),
            recycled,
            pending: Vec::with_capacity(BATCH),
            spare: Vec::new(),
            empty: Vec::new(),
            thread: Some(thread),
            discard: false,
        }
    }

    /// A writer that drops every window: for a run that only makes a report.
    pub fn discard() -> Writer {
        let (_, recycled) = std::sync::mpsc::channel();
        Writer {
            tx: None,
            recycled,
            pending: Vec::new(),
            spare: Vec::new(),
            empty: Vec::new(),
            thread: None,
            discard: true,
        }
    }

    /// Queues a window; `false` when the output thread has stopped (on an error, which
    /// [`Writer::finish`] reports).
    pub fn push(&mut self, meta: &Arc<SessionMeta>, w: &Window<'_>) -> bool {
        if self.discard {
            return true;
        }
        if self.spare.is_empty() {
            self.reclaim();
        }
        let mut owned = self.spare.pop().unwrap_or_default();
        owned.copy_from(w);
        self.pending.push((Arc::clone(meta), owned));
        self.pending.len() < BATCH || self.send()
    }

    /// Takes back what the output thread has written: its windows to be filled again, its
    /// vector to be the next batch.
    fn reclaim(&mut self) {
        while let Ok(mut batch) = self.recycled.try_recv() {
            self.spare.extend(batch.drain(..).map(|(_, w)| w));
            self.empty.push(batch);
        }
    }

    /// Hands the pending batch to the output thread.
    fn send(&mut self) -> bool {
        if self.empty.is_empty() {
            self.reclaim();
        }
        let Some(tx) = &self.tx else {
            return false;
        };
        let next = self
            .empty
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH));
        tx.send(std::mem::replace(&mut self.pending, next)).is_ok()
    }

    /// Waits for every record to be written.
    pub fn finish(mut self) -> Result<(), Error> {
        if !self.pending.is_empty() {
            self.send();
        }
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result.map_err(|e| Error::output("writing output", e)),
            Some(Err(_)) => Err(Error::Internal("the output thread panicked".into())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::window;
    use std::io;
    use std::sync::Mutex;

    /// Counts what it is asked to do, in a log shared with the test.
    struct Log(Arc<Mutex<Vec<String>>>, Option<usize>);

    impl Encode for Log {
        fn window(&mut self, meta: &Arc<SessionMeta>, w: &Window<'_>) -> io::Result<()> {
            let mut log = self.0.lock().unwrap();
            if Some(log.len()) == self.1 {
                return Err(io::Error::other("disk full"));
            }
            log.push(format!("{} {}", meta.session_id, w.index));
            Ok(())
        }
        fn end_batch(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().push("batch".into());
            Ok(())
        }
        fn finish(self: Box<Self>) -> io::Result<()> {
            self.0.lock().unwrap().push("finish".into());
            Ok(())
        }
    }

    #[test]
    fn windows_arrive_in_order_in_batches_of_sixteen() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&log);
        let mut writer = Writer::start(move || Ok(Box::new(Log(shared, None)) as Box<dyn Encode>));
        let meta = Arc::new(crate::testing::meta(1));
        for i in 0..40 {
            assert!(writer.push(&meta, &window(i, 1).view()));
        }
        writer.finish().unwrap();
        let log = log.lock().unwrap();
        // 40 windows: two full batches, then the last 8 when finishing.
        let mut want: Vec<String> = Vec::new();
        for i in 0..40 {
            want.push(format!("s {i}"));
            if i == 15 || i == 31 || i == 39 {
                want.push("batch".into());
            }
        }
        want.push("finish".into());
        assert_eq!(*log, want);
    }

    #[test]
    fn an_encoder_error_stops_the_writer_and_comes_back_from_finish() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&log);
        let mut writer =
            Writer::start(move || Ok(Box::new(Log(shared, Some(3))) as Box<dyn Encode>));
        let meta = Arc::new(crate::testing::meta(1));
        // The thread stops at the fourth window; pushes fail once it has gone.
        let pushed = (0..10_000)
            .take_while(|&i| writer.push(&meta, &window(i, 1).view()))
            .count();
        assert!(pushed < 10_000);
        let e = writer.finish().unwrap_err();
        assert!(!e.is_bad_input());
        assert_eq!(e.to_string(), "writing output");
        let source = std::error::Error::source(&e).expect("the io error");
        assert_eq!(source.to_string(), "disk full");
    }

    #[test]
    fn a_discarding_writer_takes_everything_and_writes_nothing() {
        let mut writer = Writer::discard();
        let meta = Arc::new(crate::testing::meta(1));
        assert!(writer.push(&meta, &window(0, 1).view()));
        writer.finish().unwrap();
    }
}
