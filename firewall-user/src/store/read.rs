//! Reading the whole model out of the store.

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{
    self, APPS, EGRESS, IDENTITIES, META, NATIVE_RULES, NETWORKS, NEXT_IDENTITY_KEY,
    NEXT_RULE_ID_KEY, POLICIES, REVISION_KEY,
};
use super::{Store, StoreError};
use crate::model::{AppRecord, Model, ModelParts, NetworkRecord};

impl Store {
    /// Reads the whole model; an empty one from a new store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when redb cannot read the file, [`StoreError::Corrupt`]
    /// when its content does not make a valid model.
    pub fn load(&self) -> Result<Model, StoreError> {
        let txn = self.db.begin_read().map_err(self.fail("begin a read"))?;
        let mut parts = ModelParts::default();

        let meta = txn.open_table(META).map_err(self.fail("open table meta"))?;
        let counter = |key: &str| -> Result<u64, StoreError> {
            let value = meta.get(key).map_err(self.fail("read table meta"))?;
            value
                .map(|value| value.value())
                .ok_or_else(|| self.corrupt(format!("table meta has no `{key}`")))
        };
        parts.revision = counter(REVISION_KEY)?;
        parts.next_identity = u32::try_from(counter(NEXT_IDENTITY_KEY)?)
            .map_err(|_| self.corrupt("next identity out of range".into()))?;
        parts.next_rule_id = u32::try_from(counter(NEXT_RULE_ID_KEY)?)
            .map_err(|_| self.corrupt("next rule id out of range".into()))?;

        let apps = txn.open_table(APPS).map_err(self.fail("open table apps"))?;
        for entry in apps.iter().map_err(self.fail("read table apps"))? {
            let (key, value) = entry.map_err(self.fail("read table apps"))?;
            let app: AppRecord = self.decode("apps", key.value(), value.value())?;
            self.check_key("apps", key.value(), &app.name)?;
            parts.apps.insert(app.name.clone(), app);
        }
        let networks = txn
            .open_table(NETWORKS)
            .map_err(self.fail("open table networks"))?;
        for entry in networks.iter().map_err(self.fail("read table networks"))? {
            let (key, value) = entry.map_err(self.fail("read table networks"))?;
            let network: NetworkRecord = self.decode("networks", key.value(), value.value())?;
            self.check_key("networks", key.value(), &network.name)?;
            parts.networks.insert(network.name.clone(), network);
        }
        let policies = txn
            .open_table(POLICIES)
            .map_err(self.fail("open table policies"))?;
        for entry in policies.iter().map_err(self.fail("read table policies"))? {
            let (key, value) = entry.map_err(self.fail("read table policies"))?;
            let policy = tables::policy_from_key(key.value()).map_err(|d| self.corrupt(d))?;
            parts.policies.insert(policy, value.value());
        }
        let native = txn
            .open_table(NATIVE_RULES)
            .map_err(self.fail("open table native_rules"))?;
        for entry in native
            .iter()
            .map_err(self.fail("read table native_rules"))?
        {
            let (key, value) = entry.map_err(self.fail("read table native_rules"))?;
            let rule = tables::native_rule_from_key(key.value()).map_err(|d| self.corrupt(d))?;
            parts.native_rules.insert(rule, value.value());
        }
        let egress = txn
            .open_table(EGRESS)
            .map_err(self.fail("open table egress"))?;
        for entry in egress.iter().map_err(self.fail("read table egress"))? {
            let (key, value) = entry.map_err(self.fail("read table egress"))?;
            let rules = tables::decode_egress(value.value()).map_err(|detail| {
                self.corrupt(format!("table egress, key `{}`: {detail}", key.value()))
            })?;
            parts.egress.insert(key.value().to_owned(), rules);
        }
        let identities = txn
            .open_table(IDENTITIES)
            .map_err(self.fail("open table identities"))?;
        for entry in identities
            .iter()
            .map_err(self.fail("read table identities"))?
        {
            let (key, value) = entry.map_err(self.fail("read table identities"))?;
            parts
                .identities
                .insert(key.value().to_owned(), value.value());
        }
        Model::from_parts(parts).map_err(|detail| self.corrupt(detail))
    }

    /// Decodes the JSON record at `key` of `table`.
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|error| self.corrupt(format!("table {table}, key `{key}`: {error}")))
    }

    /// Checks that a record is stored under its own name.
    fn check_key(&self, table: &str, key: &str, name: &str) -> Result<(), StoreError> {
        if key == name {
            return Ok(());
        }
        Err(self.corrupt(format!("table {table}: key `{key}` holds `{name}`")))
    }
}
