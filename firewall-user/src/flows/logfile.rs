//! The flow log: every record as one JSON line, in a file rotated by size (with the
//! `file-rotate` crate: `PATH` is written, `PATH.1` is the newest rotated file, `PATH.K` the
//! oldest kept).
//!
//! Records are serialised and written on a thread of their own, fed through a queue bounded
//! in records: the collector never waits for the disk. When the queue is full the batch is
//! dropped and counted. A failed write is logged (once, until writing works again) and counted, never
//! fatal: the daemon goes on enforcing and serving records.

use std::{
    fs::OpenOptions,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, Receiver, Sender},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use file_rotate::{ContentLimit, FileRotate, compression::Compression, suffix::AppendCount};

use super::{FlowError, record::FlowRecord};

/// Size past which the log is rotated, unless told otherwise: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Rotated files kept beside the current one, unless told otherwise.
pub const DEFAULT_FILES: usize = 5;
/// Records waiting for the writer before new ones are dropped (they are shared with the
/// in-memory buffer, so a full queue costs little beyond what it holds alone).
const QUEUE: usize = 64 * 1024;
/// Bytes written at once at most (a rotated file passes its size by at most this much).
const CHUNK: usize = 64 * 1024;

/// Where and how big the flow log is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLogOptions {
    /// The file written now.
    pub path: PathBuf,
    /// It is rotated once it passes this many bytes (at least 1).
    pub max_bytes: u64,
    /// Rotated files kept, `PATH.1` to `PATH.<files>` (at least 1); older ones are deleted.
    pub files: usize,
}

/// What the writer did, reported when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowLogSummary {
    /// Records written.
    pub written: u64,
    /// Records whose write failed.
    pub failed: u64,
    /// Records dropped because the writer was behind.
    pub dropped: u64,
}

/// The flow log's writer thread and its queue.
pub struct FlowLog {
    path: PathBuf,
    queue: Option<Sender<Vec<Arc<FlowRecord>>>>,
    /// Records sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<FlowLogSummary>>,
    dropped: u64,
    warned: Option<Instant>,
}

impl FlowLog {
    /// Checks that the log can be written (creating its directory), then starts the writer.
    ///
    /// # Errors
    /// [`FlowError::LogPath`] for a path that names no file, [`FlowError::LogSetting`] for a
    /// size or file count of 0, [`FlowError::LogFile`] when the directory cannot be made or
    /// the file cannot be opened for appending, [`FlowError::LogThread`] when the thread
    /// cannot start.
    pub fn start(options: FlowLogOptions) -> Result<FlowLog, FlowError> {
        let path = std::path::absolute(&options.path)
            .map_err(|_| FlowError::LogPath(options.path.clone()))?;
        let Some(parent) = path.parent().filter(|_| path.file_name().is_some()) else {
            return Err(FlowError::LogPath(options.path));
        };
        if options.max_bytes == 0 {
            return Err(FlowError::LogSetting(
                "the size to rotate at must be at least 1 byte".into(),
            ));
        }
        if options.files == 0 {
            return Err(FlowError::LogSetting(
                "at least one rotated file must be kept".into(),
            ));
        }
        let fail = |source| FlowError::LogFile {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(parent).map_err(fail)?;
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(fail)?;
        let options = FlowLogOptions { path, ..options };
        let (queue, batches) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("flow-log".into())
            .spawn({
                let options = options.clone();
                let queued = queued.clone();
                move || Writer::new(options, queued).run(&batches)
            })
            .map_err(FlowError::LogThread)?;
        Ok(FlowLog {
            path: options.path,
            queue: Some(queue),
            queued,
            thread: Some(thread),
            dropped: 0,
            warned: None,
        })
    }

    /// The file written now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues records for writing; drops them (counted, and logged at most every 10 s) when
    /// the writer is behind.
    pub fn submit(&mut self, batch: Vec<Arc<FlowRecord>>) {
        let Some(queue) = &self.queue else { return };
        let count = batch.len();
        // Only this side adds and the writer only takes away: the look and the add agree.
        let sent = self.queued.load(Ordering::Acquire) + count <= QUEUE && {
            self.queued.fetch_add(count, Ordering::AcqRel);
            queue.send(batch).is_ok()
        };
        if !sent {
            self.dropped += count as u64;
            if self
                .warned
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
            {
                self.warned = Some(Instant::now());
                log::warn!(
                    "flow log {}: the writer is behind; {} records not written so far",
                    self.path.display(),
                    self.dropped
                );
            }
        }
    }

    /// Writes what is queued and stops the writer. Blocks until it is done.
    pub fn finish(mut self) -> FlowLogSummary {
        self.queue = None;
        let mut summary = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(summary)) => summary,
            Some(Err(_)) => {
                log::error!("flow log {}: the writer panicked", self.path.display());
                FlowLogSummary::default()
            }
            None => FlowLogSummary::default(),
        };
        summary.dropped += self.dropped;
        summary
    }
}

/// The writer thread's state.
struct Writer {
    options: FlowLogOptions,
    queued: Arc<AtomicUsize>,
    file: FileRotate<AppendCount>,
    summary: FlowLogSummary,
    failing: bool,
    buffer: Vec<u8>,
    lines: u64,
    chunk: usize,
}

impl Writer {
    fn new(options: FlowLogOptions, queued: Arc<AtomicUsize>) -> Writer {
        let file = open(&options);
        // Small logs are written record by record, so they rotate close to their size.
        let chunk = usize::try_from(options.max_bytes / 8)
            .unwrap_or(CHUNK)
            .clamp(1, CHUNK);
        Writer {
            options,
            queued,
            file,
            summary: FlowLogSummary::default(),
            failing: false,
            buffer: Vec::with_capacity(CHUNK),
            lines: 0,
            chunk,
        }
    }

    fn run(mut self, batches: &Receiver<Vec<Arc<FlowRecord>>>) -> FlowLogSummary {
        while let Ok(batch) = batches.recv() {
            self.add(&batch);
            // Whatever queued meanwhile goes out in the same writes.
            while let Ok(more) = batches.try_recv() {
                self.add(&more);
            }
            self.write();
        }
        self.summary
    }

    fn add(&mut self, batch: &[Arc<FlowRecord>]) {
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        for record in batch {
            if let Err(e) = serde_json::to_writer(&mut self.buffer, &**record) {
                log::error!("flow log: a record could not be encoded: {e}");
                continue;
            }
            self.buffer.push(b'\n');
            self.lines += 1;
            if self.buffer.len() >= self.chunk {
                self.write();
            }
        }
    }

    fn write(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let path = &self.options.path;
        // file-rotate drops writes without a word when the file it should write is gone
        // (removed by hand, or not reopened after a rotation): look before writing, and
        // start over on a new file when its directory is there.
        if !path.exists() && path.parent().is_some_and(Path::is_dir) {
            self.file = open(&self.options);
        }
        let written = self
            .file
            .write_all(&self.buffer)
            .and_then(|()| self.file.flush())
            .and_then(|()| {
                if path.exists() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("the file is gone"))
                }
            });
        match written {
            Ok(()) => {
                self.summary.written += self.lines;
                if self.failing {
                    self.failing = false;
                    log::info!("flow log {}: writing again", path.display());
                }
            }
            Err(e) => {
                self.summary.failed += self.lines;
                if !self.failing {
                    self.failing = true;
                    log::error!(
                        "flow log {}: {e}; records are not written until it works again",
                        path.display()
                    );
                }
            }
        }
        self.buffer.clear();
        self.lines = 0;
    }
}

/// The rotating file. Its directory exists (checked by [`FlowLog::start`] and before every
/// reopening), so `FileRotate::new` does not panic.
fn open(options: &FlowLogOptions) -> FileRotate<AppendCount> {
    FileRotate::new(
        &options.path,
        AppendCount::new(options.files),
        ContentLimit::BytesSurpassed(usize::try_from(options.max_bytes).unwrap_or(usize::MAX)),
        Compression::None,
        None,
    )
}

#[cfg(test)]
mod tests;
