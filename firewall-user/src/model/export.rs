//! Out of the model and back: the [`Policy`] it enforces, and the tables the store keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use firewall_common::Identity;
use firewall_common::identity::reserved;
use ipnet::IpNet;

use crate::policy::{App, Network, Policy, PortRange, Protocol, Rule, WORLD};

use super::egress::{Egress, network_name};
use super::ids::RuleIds;
use super::{AppRecord, CfProtocol, Model, NativeRule, NetworkPolicy, NetworkRecord, Owner};

/// Everything the store keeps of a model; the rest is derived.
#[derive(Clone, Debug, Default)]
pub(crate) struct ModelParts {
    /// Registered apps by name.
    pub(crate) apps: BTreeMap<String, AppRecord>,
    /// Named networks by name.
    pub(crate) networks: BTreeMap<String, NetworkRecord>,
    /// Policies with their rule ids.
    pub(crate) policies: BTreeMap<NetworkPolicy, u32>,
    /// Native rules with their rule ids.
    pub(crate) native_rules: BTreeMap<NativeRule, u32>,
    /// Egress rules by app.
    pub(crate) egress: BTreeMap<String, Egress>,
    /// Identities by name.
    pub(crate) identities: BTreeMap<String, Identity>,
    /// The identity the next new name gets.
    pub(crate) next_identity: Identity,
    /// The lowest rule id never handed out.
    pub(crate) next_rule_id: u32,
    /// The model's revision.
    pub(crate) revision: u64,
}

/// The stored tables of a model, shared with the models derived from it until changed.
pub(crate) struct Tables<'a> {
    /// Registered apps by name.
    pub(crate) apps: &'a Arc<BTreeMap<String, AppRecord>>,
    /// Named networks by name.
    pub(crate) networks: &'a Arc<BTreeMap<String, NetworkRecord>>,
    /// Policies with their rule ids.
    pub(crate) policies: &'a Arc<BTreeMap<NetworkPolicy, u32>>,
    /// Native rules with their rule ids.
    pub(crate) native_rules: &'a Arc<BTreeMap<NativeRule, u32>>,
    /// Egress rules by app.
    pub(crate) egress: &'a Arc<BTreeMap<String, Egress>>,
    /// Identities by name.
    pub(crate) identities: &'a Arc<BTreeMap<String, Identity>>,
    /// The identity the next new name gets.
    pub(crate) next_identity: Identity,
    /// The lowest rule id never handed out.
    pub(crate) next_rule_id: u32,
    /// The model's revision.
    pub(crate) revision: u64,
}

impl Model {
    /// The policy this model enforces, for [`Policy::compile`].
    ///
    /// - apps: every registered app, and every app only named by a policy, a native rule or
    ///   bound to egress rules (with no addresses), by name;
    /// - networks: the named networks by name, then one `cidr:<prefix>` network per egress
    ///   destination in use, by prefix;
    /// - rules: one per policy (tcp or udp with its ports), per native rule and per egress
    ///   grant, by id, all with line 0.
    ///
    /// The ipcache gives each address the identity of its longest prefix, so an egress rule
    /// does not reach app addresses and named networks inside its destination. When an
    /// egress destination is exactly an app address or a named network prefix, the app or
    /// network keeps the prefix and the `cidr:` network is left without it.
    pub fn to_policy(&self) -> Policy {
        let mut app_names = self.app_names();
        let native_endpoints = self
            .native_rules
            .keys()
            .flat_map(|rule| [rule.source.as_str(), rule.destination.as_str()])
            .filter(|name| *name != WORLD && !self.networks.contains_key(*name));
        app_names.extend(native_endpoints);
        let apps = app_names
            .into_iter()
            .map(|name| {
                let record = self.apps.get(name);
                App {
                    name: name.to_owned(),
                    org: record.and_then(|app| app.org.clone()),
                    space: record.and_then(|app| app.space.clone()),
                    identity: self.identity_of(name),
                    ips: record.map(|app| app.ips.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let named = self.networks.values().map(|network| Network {
            name: network.name.clone(),
            identity: self.identity_of(&network.name),
            cidrs: network.cidrs.clone(),
        });
        let destinations: BTreeSet<IpNet> = self
            .egress
            .values()
            .flat_map(|egress| egress.grants.iter().map(|grant| grant.destination))
            .collect();
        let egress_networks = destinations.into_iter().map(|destination| {
            let name = network_name(&destination);
            let owned = self.owners.contains_key(&destination);
            Network {
                identity: self.identity_of(&name),
                name,
                cidrs: if owned { Vec::new() } else { vec![destination] },
            }
        });
        let mut rules: Vec<Rule> = self
            .policies
            .iter()
            .map(|(policy, &id)| Rule {
                id,
                source: self.identity_of(&policy.source),
                destination: self.identity_of(&policy.destination),
                protocol: policy_protocol(policy),
                line: 0,
            })
            .collect();
        rules.extend(self.native_rules.iter().map(|(rule, &id)| Rule {
            id,
            source: self.identity_of(&rule.source),
            destination: self.identity_of(&rule.destination),
            protocol: rule.protocol,
            line: 0,
        }));
        for (app, egress) in self.egress.iter() {
            let source = self.identity_of(app);
            rules.extend(egress.grants.iter().map(|grant| Rule {
                id: grant.rule_id,
                source,
                destination: self.identity_of(&network_name(&grant.destination)),
                protocol: grant.protocol,
                line: 0,
            }));
        }
        rules.sort_by_key(|rule| rule.id);
        Policy {
            apps,
            networks: named.chain(egress_networks).collect(),
            rules,
        }
    }

    /// The identity of a name the model uses. Every such name has one: `apply` and
    /// `from_parts` see to it; [`reserved::UNSET`] would mark a broken model.
    fn identity_of(&self, name: &str) -> Identity {
        let identity = self.identity(name);
        debug_assert!(identity.is_some(), "`{name}` has no identity");
        identity.unwrap_or(reserved::UNSET)
    }

    /// The tables the store keeps.
    pub(crate) fn tables(&self) -> Tables<'_> {
        Tables {
            apps: &self.apps,
            networks: &self.networks,
            policies: &self.policies,
            native_rules: &self.native_rules,
            egress: &self.egress,
            identities: &self.identities,
            next_identity: self.next_identity,
            next_rule_id: self.rule_ids.next(),
            revision: self.revision,
        }
    }

    /// Rebuilds a model from stored tables, checking that they fit together.
    ///
    /// # Errors
    ///
    /// A description of the first inconsistency: a name without identity, an identity out
    /// of range or given twice, a rule id out of range or used twice, an address with two
    /// owners.
    pub(crate) fn from_parts(parts: ModelParts) -> Result<Model, String> {
        if parts.next_identity < reserved::FIRST_ALLOCATED || parts.next_rule_id == 0 {
            return Err(format!(
                "counters out of range: next identity {}, next rule id {}",
                parts.next_identity, parts.next_rule_id
            ));
        }
        let mut given = BTreeSet::new();
        for (name, &identity) in &parts.identities {
            if identity < reserved::FIRST_ALLOCATED || identity >= parts.next_identity {
                return Err(format!(
                    "identity {identity} of `{name}` is outside {}..{}",
                    reserved::FIRST_ALLOCATED,
                    parts.next_identity
                ));
            }
            if !given.insert(identity) {
                return Err(format!("identity {identity} is given twice"));
            }
        }
        let mut used = Vec::new();
        let mut owners = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        for (name, app) in &parts.apps {
            names.push(name.clone());
            for ip in &app.ips {
                claim(&mut owners, IpNet::from(*ip), Owner::App(name.clone()))?;
            }
        }
        for (name, network) in &parts.networks {
            names.push(name.clone());
            for cidr in &network.cidrs {
                claim(&mut owners, *cidr, Owner::Network(name.clone()))?;
            }
        }
        for (policy, &rule_id) in &parts.policies {
            names.extend([policy.source.clone(), policy.destination.clone()]);
            used.push(rule_id);
        }
        for (rule, &rule_id) in &parts.native_rules {
            let endpoints = [&rule.source, &rule.destination];
            names.extend(endpoints.into_iter().filter(|name| *name != WORLD).cloned());
            used.push(rule_id);
        }
        for (app, egress) in &parts.egress {
            names.push(app.clone());
            for grant in &egress.grants {
                names.push(network_name(&grant.destination));
                used.push(grant.rule_id);
            }
        }
        if let Some(name) = names
            .iter()
            .find(|name| !parts.identities.contains_key(*name))
        {
            return Err(format!("`{name}` has no identity"));
        }
        let rule_ids = RuleIds::rebuild(parts.next_rule_id, &used)?;
        Ok(Model {
            apps: Arc::new(parts.apps),
            networks: Arc::new(parts.networks),
            policies: Arc::new(parts.policies),
            native_rules: Arc::new(parts.native_rules),
            egress: Arc::new(parts.egress),
            identities: Arc::new(parts.identities),
            next_identity: parts.next_identity,
            rule_ids,
            owners: Arc::new(owners),
            revision: parts.revision,
        })
    }
}

/// Records `owner` as the holder of `prefix`.
fn claim(owners: &mut BTreeMap<IpNet, Owner>, prefix: IpNet, owner: Owner) -> Result<(), String> {
    match owners.insert(prefix, owner.clone()) {
        Some(first) => Err(format!("{prefix} belongs to both {first} and {owner}")),
        None => Ok(()),
    }
}

/// The rule protocol of a cf-networking policy.
fn policy_protocol(policy: &NetworkPolicy) -> Protocol {
    let ports = Some(PortRange {
        start: policy.start_port,
        end: policy.end_port,
    });
    match policy.protocol {
        CfProtocol::Tcp => Protocol::Tcp(ports),
        CfProtocol::Udp => Protocol::Udp(ports),
    }
}
