//! The durable store of the [`Model`]: one redb file, `firewall.redb`, in the state directory.
//!
//! redb keeps copy-on-write B-trees and syncs the file on every commit, so each
//! [`Store::commit`] is one transaction that is on disk whole when it returns, or not at all
//! after a crash. A commit writes only the rows that differ between the model before and
//! after a change: one table row per app, network, policy, native rule, app's egress rules
//! and identity,
//! plus the counters in `meta`.
//!
//! The `meta` table also records the schema version and the model revision; a commit checks
//! that the store still holds the revision the change was computed from.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable};

use crate::model::Model;

mod diff;
mod error;
mod read;
mod tables;
mod write;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;

pub use error::StoreError;

use tables::{
    APPS, EGRESS, IDENTITIES, META, NATIVE_RULES, NETWORKS, NEXT_IDENTITY_KEY, NEXT_RULE_ID_KEY,
    POLICIES, REVISION_KEY, SCHEMA_KEY, SCHEMA_VERSION,
};

/// Name of the store file in the state directory.
pub const FILE_NAME: &str = "firewall.redb";

/// The open store file. Only one process can hold it open.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens `state_dir/firewall.redb`, creating the directory (mode 0700) and the file
    /// (mode 0600) when they are missing; a file readable by others is restricted to 0600.
    /// After a crash, redb repairs the file on open, back to its last commit.
    ///
    /// # Errors
    ///
    /// [`StoreError::CreateDir`] or [`StoreError::File`] when the directory or file cannot
    /// be made; [`StoreError::Database`] when redb cannot open it (another process has it
    /// open, or it is not a redb file); [`StoreError::UnknownVersion`] for a store of
    /// another schema version.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|error| StoreError::CreateDir {
                path: state_dir.to_owned(),
                error,
            })?;
        let path = state_dir.join(FILE_NAME);
        restrict_file(&path)?;
        let db = Database::create(&path).map_err(|error| StoreError::Database {
            path: path.clone(),
            action: "open the store",
            error: error.into(),
        })?;
        let store = Store { db, path };
        store.initialise()?;
        Ok(store)
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the schema version, and lays out a new store.
    fn initialise(&self) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(self.fail("begin a transaction"))?;
        {
            let mut meta = txn.open_table(META).map_err(self.fail("open table meta"))?;
            let found = meta
                .get(SCHEMA_KEY)
                .map_err(self.fail("read the schema version"))?
                .map(|version| version.value());
            match found {
                Some(SCHEMA_VERSION) => return Ok(()),
                Some(found) => {
                    return Err(StoreError::UnknownVersion {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                None => {}
            }
            let empty = Model::new();
            let tables = empty.tables();
            let counters = [
                (SCHEMA_KEY, SCHEMA_VERSION),
                (REVISION_KEY, tables.revision),
                (NEXT_IDENTITY_KEY, u64::from(tables.next_identity)),
                (NEXT_RULE_ID_KEY, u64::from(tables.next_rule_id)),
            ];
            for (key, value) in counters {
                meta.insert(key, value)
                    .map_err(self.fail("write table meta"))?;
            }
            txn.open_table(APPS)
                .map_err(self.fail("create table apps"))?;
            txn.open_table(NETWORKS)
                .map_err(self.fail("create table networks"))?;
            txn.open_table(POLICIES)
                .map_err(self.fail("create table policies"))?;
            txn.open_table(NATIVE_RULES)
                .map_err(self.fail("create table native_rules"))?;
            txn.open_table(EGRESS)
                .map_err(self.fail("create table egress"))?;
            txn.open_table(IDENTITIES)
                .map_err(self.fail("create table identities"))?;
        }
        txn.commit().map_err(self.fail("commit the new store"))
    }

    /// A [`StoreError::Corrupt`] for this store.
    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    /// Makes a [`StoreError::Database`] for this store from any redb error.
    fn fail<E: Into<redb::Error>>(&self, action: &'static str) -> impl Fn(E) -> StoreError + '_ {
        move |error| StoreError::Database {
            path: self.path.clone(),
            action,
            error: error.into(),
        }
    }
}

/// Creates the store file with mode 0600, or takes group and other access away from an
/// existing one.
fn restrict_file(path: &Path) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|error| StoreError::File {
            path: path.to_owned(),
            action: "create the file",
            error,
        })?;
    let metadata = file.metadata().map_err(|error| StoreError::File {
        path: path.to_owned(),
        action: "read the file's mode",
        error,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        log::warn!(
            "store {} had mode {mode:o}; restricting it to 600",
            path.display()
        );
        fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(|error| {
            StoreError::File {
                path: path.to_owned(),
                action: "set the file's mode",
                error,
            }
        })?;
    }
    Ok(())
}
