//! Committing the difference between two models in one transaction.

use redb::{ReadableTable, Table};

use super::diff::{Edit, edits};
use super::tables::{
    self, APPS, EGRESS, IDENTITIES, META, NATIVE_RULES, NETWORKS, NEXT_IDENTITY_KEY,
    NEXT_RULE_ID_KEY, POLICIES, REVISION_KEY,
};
use super::{Store, StoreError};
use crate::model::Model;

impl Store {
    /// Stores `after` in place of `before`, which the store must hold, in one transaction
    /// that writes only what differs. When it returns, the change is on disk; when it fails,
    /// the store still holds `before`. Nothing is written when the two are the same.
    ///
    /// # Errors
    ///
    /// [`StoreError::Diverged`] when the store does not hold `before`'s revision;
    /// [`StoreError::Database`] when redb fails (the disk is full, the file is damaged);
    /// [`StoreError::Encode`] when a record cannot be encoded.
    pub fn commit(&self, before: &Model, after: &Model) -> Result<(), StoreError> {
        let (old, new) = (before.tables(), after.tables());
        let apps = edits(old.apps, new.apps);
        let networks = edits(old.networks, new.networks);
        let policies = edits(old.policies, new.policies);
        let native_rules = edits(old.native_rules, new.native_rules);
        let egress = edits(old.egress, new.egress);
        let identities = edits(old.identities, new.identities);
        let unchanged = apps.is_empty()
            && networks.is_empty()
            && policies.is_empty()
            && native_rules.is_empty()
            && egress.is_empty()
            && identities.is_empty()
            && (old.revision, old.next_identity, old.next_rule_id)
                == (new.revision, new.next_identity, new.next_rule_id);
        if unchanged {
            return Ok(());
        }

        let txn = self
            .db
            .begin_write()
            .map_err(self.fail("begin a transaction"))?;
        {
            let mut meta = txn.open_table(META).map_err(self.fail("open table meta"))?;
            let stored = meta
                .get(REVISION_KEY)
                .map_err(self.fail("read table meta"))?
                .map(|value| value.value());
            if stored != Some(old.revision) {
                return Err(StoreError::Diverged {
                    path: self.path.clone(),
                    stored: stored.unwrap_or_default(),
                    expected: old.revision,
                });
            }
            let counters = [
                (REVISION_KEY, new.revision),
                (NEXT_IDENTITY_KEY, u64::from(new.next_identity)),
                (NEXT_RULE_ID_KEY, u64::from(new.next_rule_id)),
            ];
            for (key, value) in counters {
                meta.insert(key, value)
                    .map_err(self.fail("write table meta"))?;
            }

            let mut table = txn.open_table(APPS).map_err(self.fail("open table apps"))?;
            self.write_json(&mut table, "apps", apps)?;
            let mut table = txn
                .open_table(NETWORKS)
                .map_err(self.fail("open table networks"))?;
            self.write_json(&mut table, "networks", networks)?;

            let mut table = txn
                .open_table(POLICIES)
                .map_err(self.fail("open table policies"))?;
            for edit in policies {
                let result = match edit {
                    Edit::Put(policy, id) => table.insert(tables::policy_key(policy), id),
                    Edit::Delete(policy) => table.remove(tables::policy_key(policy)),
                };
                result.map_err(self.fail("write table policies"))?;
            }

            let mut table = txn
                .open_table(NATIVE_RULES)
                .map_err(self.fail("open table native_rules"))?;
            for edit in native_rules {
                let (rule, id) = match edit {
                    Edit::Put(rule, id) => (rule, Some(id)),
                    Edit::Delete(rule) => (rule, None),
                };
                let (source, destination, protocol) =
                    tables::native_rule_key(rule).map_err(|error| StoreError::Encode {
                        path: self.path.clone(),
                        item: format!("rule {} -> {}", rule.source, rule.destination),
                        error,
                    })?;
                let key = (source, destination, protocol.as_str());
                let result = match id {
                    Some(id) => table.insert(key, id).map(drop),
                    None => table.remove(key).map(drop),
                };
                result.map_err(self.fail("write table native_rules"))?;
            }

            let mut table = txn
                .open_table(EGRESS)
                .map_err(self.fail("open table egress"))?;
            for edit in egress {
                let result = match edit {
                    Edit::Put(app, rules) => {
                        let bytes =
                            tables::encode_egress(rules).map_err(|error| StoreError::Encode {
                                path: self.path.clone(),
                                item: format!("egress rules of `{app}`"),
                                error,
                            })?;
                        table.insert(app.as_str(), bytes.as_slice())
                    }
                    Edit::Delete(app) => table.remove(app.as_str()),
                };
                result.map_err(self.fail("write table egress"))?;
            }

            let mut table = txn
                .open_table(IDENTITIES)
                .map_err(self.fail("open table identities"))?;
            for edit in identities {
                let result = match edit {
                    Edit::Put(name, identity) => table.insert(name.as_str(), identity),
                    Edit::Delete(name) => table.remove(name.as_str()),
                };
                result.map_err(self.fail("write table identities"))?;
            }
        }
        txn.commit().map_err(self.fail("commit"))
    }

    /// Writes the edits of a table of JSON records keyed by name.
    fn write_json<V: serde::Serialize>(
        &self,
        table: &mut Table<'_, &'static str, &'static [u8]>,
        name: &str,
        edits: Vec<Edit<'_, String, V>>,
    ) -> Result<(), StoreError> {
        for edit in edits {
            let result = match edit {
                Edit::Put(key, record) => {
                    let bytes = serde_json::to_vec(record).map_err(|error| StoreError::Encode {
                        path: self.path.clone(),
                        item: format!("table {name}, key `{key}`"),
                        error,
                    })?;
                    table.insert(key.as_str(), bytes.as_slice())
                }
                Edit::Delete(key) => table.remove(key.as_str()),
            };
            result.map_err(self.fail("write a table"))?;
        }
        Ok(())
    }
}
