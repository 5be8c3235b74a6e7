//! Errors of the store; each names the store file (or the state directory).

use std::io;
use std::path::PathBuf;

/// Why the store could not be opened, read or written. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("cannot create state directory {}: {error}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },
    /// The store file could not be created or its permissions set.
    #[error("{}: cannot {action}: {error}", path.display())]
    File {
        /// The store file.
        path: PathBuf,
        /// What was being done, such as "create the file".
        action: &'static str,
        /// What the operating system said.
        error: io::Error,
    },
    /// redb refused an operation (the file is locked by another process, damaged, or the
    /// disk failed).
    #[error("{}: cannot {action}: {error}", path.display())]
    Database {
        /// The store file.
        path: PathBuf,
        /// What was being done, such as "commit".
        action: &'static str,
        /// What redb said.
        error: redb::Error,
    },
    /// The file was written with a layout this build does not know.
    #[error(
        "{}: schema version {found} is not supported (this build reads version {supported})",
        path.display()
    )]
    UnknownVersion {
        /// The store file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The file's content does not make a valid model.
    #[error("{}: the stored model is inconsistent: {detail}", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong, such as which table and key.
        detail: String,
    },
    /// A record could not be encoded.
    #[error("{}: cannot encode {item}: {error}", path.display())]
    Encode {
        /// The store file.
        path: PathBuf,
        /// What was being encoded, such as "egress rules of `web`".
        item: String,
        /// What serde_json said.
        error: serde_json::Error,
    },
    /// The store does not hold the model the change was computed from.
    #[error(
        "{}: the store holds revision {stored}, but the change was computed from revision \
         {expected}; reload the model",
        path.display()
    )]
    Diverged {
        /// The store file.
        path: PathBuf,
        /// The revision in the file.
        stored: u64,
        /// The revision of the model the commit started from.
        expected: u64,
    },
}
