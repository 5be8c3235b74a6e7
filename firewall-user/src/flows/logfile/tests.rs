//! Rotation, whole lines, bad paths and write failures of the flow log.

use std::{fs, sync::Arc};

use super::*;
use crate::flows::{FlowVerdict, sample};

fn record(n: u32) -> Arc<FlowRecord> {
    let mut record = sample(FlowVerdict::Drop, "frontend", "backend");
    record.length = n;
    record.time = format!("2026-12-03T19:19:06.{n:09}Z");
    Arc::new(record)
}

fn options(path: PathBuf, max_bytes: u64, files: usize) -> FlowLogOptions {
    FlowLogOptions {
        path,
        max_bytes,
        files,
    }
}

/// The records in one file, every line whole.
fn read(path: &Path) -> Vec<u32> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            serde_json::from_str::<FlowRecord>(line)
                .unwrap_or_else(|e| panic!("{}: a broken line {line:?}: {e}", path.display()))
                .length
        })
        .collect()
}

#[test]
fn the_log_rotates_by_size_keeps_k_files_and_never_splits_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/flows.log");
    // The longest line written (lengths here have at most two digits).
    let line = serde_json::to_string(&*record(99)).expect("JSON").len() as u64 + 1;
    let max = 4 * line;
    let mut log = FlowLog::start(options(path.clone(), max, 2)).expect("start");
    for n in 0..40 {
        log.submit(vec![record(n)]);
    }
    let summary = log.finish();
    assert_eq!(
        summary,
        FlowLogSummary {
            written: 40,
            failed: 0,
            dropped: 0
        }
    );
    let oldest = read(&dir.path().join("nested/flows.log.2"));
    let newer = read(&dir.path().join("nested/flows.log.1"));
    let current = read(&path);
    assert!(
        !dir.path().join("nested/flows.log.3").exists(),
        "only two rotated files are kept"
    );
    for (name, records) in [(".2", &oldest), (".1", &newer), ("", &current)] {
        let file = dir.path().join(format!("nested/flows.log{name}"));
        let bytes = fs::metadata(&file).expect("metadata").len();
        assert!(
            bytes <= max + line,
            "flows.log{name} holds {bytes} bytes, past {max} by more than one record"
        );
        assert!(!records.is_empty(), "flows.log{name} is empty");
    }
    // Oldest to newest, with nothing missing or repeated across the kept files, ending with
    // the last record.
    let kept: Vec<u32> = oldest.into_iter().chain(newer).chain(current).collect();
    let first = kept[0];
    assert_eq!(kept, (first..40).collect::<Vec<_>>());
    assert!(first > 0, "older records were rotated away");
}

#[test]
fn an_existing_log_is_appended_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flows.log");
    for n in 0..2 {
        let mut log = FlowLog::start(options(path.clone(), DEFAULT_MAX_BYTES, 1)).expect("log");
        log.submit(vec![record(n)]);
        assert_eq!(log.finish().written, 1);
    }
    assert_eq!(read(&path), vec![0, 1]);
}

#[test]
fn paths_that_cannot_be_a_log_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refusal = |options| match FlowLog::start(options) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    let message = refusal(options(dir.path().to_path_buf(), 100, 1));
    assert!(message.starts_with("flow log "), "{message}");
    let message = refusal(options("/".into(), 100, 1));
    assert_eq!(message, "flow log /: not a file path");
    let blocked = dir.path().join("file");
    fs::write(&blocked, "").expect("file");
    let message = refusal(options(blocked.join("flows.log"), 100, 1));
    assert!(message.contains("file/flows.log"), "{message}");
    let message = refusal(options(dir.path().join("a.log"), 0, 1));
    assert!(message.contains("at least 1 byte"), "{message}");
    let message = refusal(options(dir.path().join("a.log"), 100, 0));
    assert!(message.contains("at least one rotated file"), "{message}");
}

#[test]
fn write_failures_are_counted_and_do_not_stop_the_writer() {
    // Every write to /dev/full fails with "no space left on device".
    let mut log = FlowLog::start(options("/dev/full".into(), DEFAULT_MAX_BYTES, 1)).expect("log");
    for n in 0..5 {
        log.submit(vec![record(n), record(n + 100)]);
    }
    let summary = log.finish();
    assert_eq!(summary.failed, 10, "{summary:?}");
    assert_eq!(summary.written, 0);
}

#[test]
fn a_log_removed_while_written_is_started_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flows.log");
    let mut log = FlowLog::start(options(path.clone(), DEFAULT_MAX_BYTES, 1)).expect("log");
    log.submit(vec![record(1)]);
    // Give the writer time to write the first record before the file goes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(&path).map_or(0, |m| m.len()) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    fs::remove_file(&path).expect("remove");
    log.submit(vec![record(2)]);
    let summary = log.finish();
    assert_eq!(summary.written, 2, "{summary:?}");
    assert_eq!(read(&path), vec![2]);
}
