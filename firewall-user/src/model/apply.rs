//! [`Model::apply`]: checking a change and deriving the new model.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ipnet::IpNet;

use super::check::{self, invalid};
use super::egress::{self, Egress, Grant, network_name};
use super::{
    AppRecord, CfProtocol, Change, Limits, Model, ModelError, NetworkPolicy, NetworkRecord, Owner,
};

impl Model {
    /// Checks `change` against this model and `limits` and returns the model with it applied.
    /// `self` is never modified: on error there is nothing to undo.
    ///
    /// New names (apps, networks, egress destinations) get identities; new policies, native
    /// rules and egress grants get rule ids. A [`Change::Batch`] counts as one change for
    /// [`Model::revision`].
    ///
    /// # Errors
    ///
    /// - [`ModelError::Invalid`] for a bad name, port, address, prefix, egress rule or native
    ///   rule, an address that belongs to another app or network, or a name used both for an
    ///   app and a network;
    /// - [`ModelError::QuotaExceeded`] when a source app would have more than
    ///   `limits.policy_quota_per_source` policies;
    /// - [`ModelError::NotFound`] when unregistering an app or deleting a network that does
    ///   not exist;
    /// - [`ModelError::Full`] when a rule id above `limits.max_rule_id` would be needed.
    pub fn apply(&self, change: &Change, limits: &Limits) -> Result<Model, ModelError> {
        let mut next = self.clone();
        next.apply_in_place(change, limits)?;
        if !next.shares_tables_with(self) {
            next.revision += 1;
        }
        Ok(next)
    }

    /// Applies `change` to `self`, which is a copy the caller drops on error.
    fn apply_in_place(&mut self, change: &Change, limits: &Limits) -> Result<(), ModelError> {
        match change {
            Change::AddPolicies(policies) => self.add_policies(policies, limits),
            Change::DeletePolicies(policies) => self.delete_policies(policies),
            Change::RegisterApp(app) => self.register_app(app),
            Change::UnregisterApp(name) => self.unregister_app(name),
            Change::PutNetwork(network) => self.put_network(network),
            Change::DeleteNetwork(name) => self.delete_network(name),
            Change::SetEgress { app, rules } => self.set_egress(app, rules, limits),
            Change::AddRules(rules) => self.add_native_rules(rules, limits),
            Change::DeleteRules(rules) => self.delete_native_rules(rules),
            Change::Batch(changes) => changes
                .iter()
                .try_for_each(|change| self.apply_in_place(change, limits)),
        }
    }

    fn add_policies(
        &mut self,
        policies: &[NetworkPolicy],
        limits: &Limits,
    ) -> Result<(), ModelError> {
        for (index, policy) in policies.iter().enumerate() {
            check::policy(index, policy)?;
            for (role, name) in [
                ("source", &policy.source),
                ("destination", &policy.destination),
            ] {
                if self.networks.contains_key(name) {
                    return Err(invalid(format!(
                        "policy {index}: {role} id `{name}` names a network; policies connect \
                         apps"
                    )));
                }
            }
        }
        let new: BTreeSet<&NetworkPolicy> = policies
            .iter()
            .filter(|policy| !self.policies.contains_key(*policy))
            .collect();
        let mut added: BTreeMap<&str, usize> = BTreeMap::new();
        for policy in &new {
            *added.entry(policy.source.as_str()).or_default() += 1;
        }
        for (source, count) in added {
            if self.policy_count_from(source) + count > limits.policy_quota_per_source {
                return Err(ModelError::QuotaExceeded);
            }
        }
        for policy in new {
            let rule_id = self.rule_ids.allocate(limits.max_rule_id)?;
            self.identify(&policy.source)?;
            self.identify(&policy.destination)?;
            Arc::make_mut(&mut self.policies).insert(policy.clone(), rule_id);
        }
        Ok(())
    }

    /// How many policies `source` has.
    fn policy_count_from(&self, source: &str) -> usize {
        let first = NetworkPolicy {
            source: source.to_owned(),
            destination: String::new(),
            protocol: CfProtocol::Tcp,
            start_port: 0,
            end_port: 0,
        };
        self.policies
            .range(first..)
            .take_while(|(policy, _)| policy.source == source)
            .count()
    }

    fn delete_policies(&mut self, policies: &[NetworkPolicy]) -> Result<(), ModelError> {
        for (index, policy) in policies.iter().enumerate() {
            check::policy(index, policy)?;
        }
        for policy in policies {
            if self.policies.contains_key(policy)
                && let Some(rule_id) = Arc::make_mut(&mut self.policies).remove(policy)
            {
                self.rule_ids.release(rule_id);
            }
        }
        Ok(())
    }

    fn register_app(&mut self, app: &AppRecord) -> Result<(), ModelError> {
        let name = &app.name;
        check::name("app name", name)?;
        check::metadata(&format!("app `{name}`: org"), app.org.as_deref())?;
        check::metadata(&format!("app `{name}`: space"), app.space.as_deref())?;
        if self.networks.contains_key(name) {
            return Err(invalid(format!(
                "app name `{name}` already names a network"
            )));
        }
        let mut listed = BTreeSet::new();
        for (index, ip) in app.ips.iter().enumerate() {
            if !listed.insert(ip) {
                return Err(invalid(format!(
                    "app `{name}`: ips[{index}]: {ip} is listed twice"
                )));
            }
            match self.owners.get(&IpNet::from(*ip)) {
                Some(Owner::App(owner)) if owner == name => {}
                Some(owner) => {
                    return Err(invalid(format!(
                        "app `{name}`: ips[{index}]: {ip} already belongs to {owner}"
                    )));
                }
                None => {}
            }
        }
        let old = self.apps.get(name);
        if old == Some(app) {
            return Ok(());
        }
        let old_ips = old.map(|old| old.ips.clone()).unwrap_or_default();
        let owners = Arc::make_mut(&mut self.owners);
        for ip in old_ips {
            owners.remove(&IpNet::from(ip));
        }
        for ip in &app.ips {
            owners.insert(IpNet::from(*ip), Owner::App(name.clone()));
        }
        self.identify(name)?;
        Arc::make_mut(&mut self.apps).insert(name.clone(), app.clone());
        Ok(())
    }

    fn unregister_app(&mut self, name: &str) -> Result<(), ModelError> {
        if !self.apps.contains_key(name) {
            return Err(ModelError::NotFound(format!(
                "no app is registered as `{name}`"
            )));
        }
        if let Some(app) = Arc::make_mut(&mut self.apps).remove(name) {
            let owners = Arc::make_mut(&mut self.owners);
            for ip in app.ips {
                owners.remove(&IpNet::from(ip));
            }
        }
        Ok(())
    }

    fn put_network(&mut self, network: &NetworkRecord) -> Result<(), ModelError> {
        let name = &network.name;
        check::name("network name", name)?;
        // Scans the policies: networks change seldom.
        if self.app_names().contains(name.as_str()) {
            return Err(invalid(format!(
                "network name `{name}` already names an app"
            )));
        }
        let mut listed = BTreeSet::new();
        for (index, cidr) in network.cidrs.iter().enumerate() {
            let at = format!("network `{name}`: cidrs[{index}]");
            let trunc = cidr.trunc();
            if trunc != *cidr {
                return Err(invalid(format!(
                    "{at}: {cidr} has host bits set; did you mean {trunc}?"
                )));
            }
            if !listed.insert(cidr) {
                return Err(invalid(format!("{at}: {cidr} is listed twice")));
            }
            match self.owners.get(cidr) {
                Some(Owner::Network(owner)) if owner == name => {}
                Some(owner) => {
                    return Err(invalid(format!("{at}: {cidr} already belongs to {owner}")));
                }
                None => {}
            }
        }
        let old = self.networks.get(name);
        if old == Some(network) {
            return Ok(());
        }
        let old_cidrs = old.map(|old| old.cidrs.clone()).unwrap_or_default();
        let owners = Arc::make_mut(&mut self.owners);
        for cidr in old_cidrs {
            owners.remove(&cidr);
        }
        for cidr in &network.cidrs {
            owners.insert(*cidr, Owner::Network(name.clone()));
        }
        self.identify(name)?;
        Arc::make_mut(&mut self.networks).insert(name.clone(), network.clone());
        Ok(())
    }

    fn delete_network(&mut self, name: &str) -> Result<(), ModelError> {
        if !self.networks.contains_key(name) {
            return Err(ModelError::NotFound(format!(
                "no network is named `{name}`"
            )));
        }
        if let Some(network) = Arc::make_mut(&mut self.networks).remove(name) {
            let owners = Arc::make_mut(&mut self.owners);
            for cidr in network.cidrs {
                owners.remove(&cidr);
            }
        }
        Ok(())
    }

    fn set_egress(
        &mut self,
        app: &str,
        rules: &[super::EgressRule],
        limits: &Limits,
    ) -> Result<(), ModelError> {
        check::name("egress app", app)?;
        if self.networks.contains_key(app) {
            return Err(invalid(format!(
                "egress app `{app}` names a network; egress rules bind to apps"
            )));
        }
        let max = usize::try_from(limits.max_rule_id).unwrap_or(usize::MAX);
        let wanted = egress::expand(rules, max)?;
        let old = self.egress.get(app).cloned();
        if old
            .as_ref()
            .map_or(rules.is_empty(), |old| old.rules == rules)
        {
            return Ok(());
        }
        // A grant that stays keeps its rule id. New grants take fresh ids before the ids of
        // dropped grants are freed, so no id changes meaning within one change unless ids
        // run short.
        let old_grants = old.map(|old| old.grants).unwrap_or_default();
        let mut kept: HashMap<_, u32> = old_grants
            .iter()
            .map(|grant| ((grant.destination, grant.protocol), grant.rule_id))
            .collect();
        let mut grants = Vec::with_capacity(wanted.len());
        let mut to_allocate = Vec::new();
        for (index, &(destination, protocol)) in wanted.iter().enumerate() {
            match kept.remove(&(destination, protocol)) {
                Some(rule_id) => grants.push(Grant {
                    destination,
                    protocol,
                    rule_id,
                }),
                None => {
                    to_allocate.push(index);
                    grants.push(Grant {
                        destination,
                        protocol,
                        rule_id: 0,
                    });
                }
            }
        }
        let mut dropped: Vec<u32> = kept.into_values().collect();
        for index in to_allocate {
            let rule_id = match self.rule_ids.allocate(limits.max_rule_id) {
                Ok(rule_id) => rule_id,
                Err(full) if !dropped.is_empty() => {
                    for rule_id in dropped.drain(..) {
                        self.rule_ids.release(rule_id);
                    }
                    self.rule_ids
                        .allocate(limits.max_rule_id)
                        .map_err(|_| full)?
                }
                Err(full) => return Err(full),
            };
            grants[index].rule_id = rule_id;
        }
        for rule_id in dropped {
            self.rule_ids.release(rule_id);
        }
        if rules.is_empty() {
            Arc::make_mut(&mut self.egress).remove(app);
            return Ok(());
        }
        self.identify(app)?;
        for grant in &grants {
            self.identify(&network_name(&grant.destination))?;
        }
        let egress = Egress {
            rules: rules.to_vec(),
            grants,
        };
        Arc::make_mut(&mut self.egress).insert(app.to_owned(), egress);
        Ok(())
    }
}
