//! The live domain model of the host daemon: registered apps and their instance addresses,
//! named networks, cf-networking policies between apps, and per-app egress rules in Cloud
//! Foundry security-group form.
//!
//! The daemon changes the model only through [`Model::apply`], which checks a [`Change`] whole
//! and returns a new model or a [`ModelError`], never half a change. [`Model::to_policy`] turns
//! the model into the [`Policy`](crate::policy::Policy) the compiler understands.
//!
//! Rules are written in identities, never in addresses, so identities are stable: every name
//! (an app, a network, an egress destination `cidr:<prefix>`) gets one the first time it is
//! seen and keeps it for good, across unregistering, deleting and re-creating. Rule ids are
//! stable too: a policy or egress rule keeps its id while it exists; freed ids are reused.
//!
//! Tables are shared between a model and the one [`Model::apply`] derives from it until a
//! change touches them, so applying a change copies only the tables it edits, and the
//! [store](crate::store) can skip the tables a change left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use firewall_common::Identity;
use firewall_common::identity::reserved;
use firewall_common::maps::capacity;

use crate::policy::WORLD;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod apply;
mod check;
mod egress;
mod export;
mod ids;
mod native;
mod serde_cidrs;

#[cfg(test)]
mod tests;

pub(crate) use egress::{Egress, Grant};
pub use egress::{EgressProtocol, EgressRule};
pub(crate) use export::ModelParts;
pub use native::NativeRule;

use ids::RuleIds;

/// A cf-networking policy: `source` may open connections to `destination` over `protocol`
/// on the ports `start_port` to `end_port` (both included).
///
/// Apps are named by the ids cf-networking uses (app GUIDs); a policy may name an app that is
/// not registered yet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// App allowed to connect.
    pub source: String,
    /// App it may connect to.
    pub destination: String,
    /// Transport protocol.
    pub protocol: CfProtocol,
    /// First destination port, 1-65535.
    pub start_port: u16,
    /// Last destination port, `start_port`-65535.
    pub end_port: u16,
}

/// The transport protocols cf-networking policies allow.
///
/// Serialised as `"tcp"` or `"udp"`; any other name fails with `invalid protocol: NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum CfProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl CfProtocol {
    /// The name cf-networking uses: `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            CfProtocol::Tcp => "tcp",
            CfProtocol::Udp => "udp",
        }
    }
}

impl fmt::Display for CfProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `tcp` or `udp`.
impl FromStr for CfProtocol {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self, ModelError> {
        match text {
            "tcp" => Ok(CfProtocol::Tcp),
            "udp" => Ok(CfProtocol::Udp),
            _ => Err(ModelError::Invalid(format!(
                "invalid protocol: {text}; specify either tcp or udp"
            ))),
        }
    }
}

impl TryFrom<String> for CfProtocol {
    type Error = ModelError;

    fn try_from(text: String) -> Result<Self, ModelError> {
        text.parse()
    }
}

impl From<CfProtocol> for &'static str {
    fn from(protocol: CfProtocol) -> &'static str {
        protocol.name()
    }
}

/// A registered app: its metadata and the addresses of its running instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRecord {
    /// Its name (in Cloud Foundry, the app GUID).
    pub name: String,
    /// Organisation that owns it, for operators only.
    #[serde(default)]
    pub org: Option<String>,
    /// Space within the organisation, for operators only.
    #[serde(default)]
    pub space: Option<String>,
    /// Addresses of its instances; each belongs to this app only.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
}

/// A named network: address prefixes that share one identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRecord {
    /// Its name; never the name of an app.
    pub name: String,
    /// Its prefixes, without host bits, serialised as strings such as `"10.0.0.0/8"`.
    #[serde(default, with = "serde_cidrs")]
    pub cidrs: Vec<IpNet>,
}

/// One change to the model, applied whole or not at all by [`Model::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Adds policies. Ones that exist already are left as they are; if any policy is
    /// invalid or a source would pass its quota, none is added.
    AddPolicies(Vec<NetworkPolicy>),
    /// Deletes policies; ones that do not exist are skipped.
    DeletePolicies(Vec<NetworkPolicy>),
    /// Creates an app or replaces its metadata and addresses (an instance started, moved or
    /// stopped).
    RegisterApp(AppRecord),
    /// Removes an app's addresses and metadata. Its policies and egress rules stay, as in
    /// cf-networking, and so does its identity.
    UnregisterApp(String),
    /// Creates a network or replaces its prefixes.
    PutNetwork(NetworkRecord),
    /// Deletes a network; its identity stays allocated to its name.
    DeleteNetwork(String),
    /// Replaces an app's egress rules; an empty list clears them.
    SetEgress {
        /// The app the rules are bound to; it need not be registered.
        app: String,
        /// Its rules, in Cloud Foundry security-group form.
        rules: Vec<EgressRule>,
    },
    /// Adds native rules (any endpoints, any protocol). Ones that exist already are left as
    /// they are; if any is invalid, none is added. They count against no quota.
    AddRules(Vec<NativeRule>),
    /// Deletes native rules; ones that do not exist are skipped.
    DeleteRules(Vec<NativeRule>),
    /// Several changes applied in order as one: all of them or none.
    Batch(Vec<Change>),
}

/// Limits [`Model::apply`] enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most policies one source app may have (cf-networking's default is 150).
    pub policy_quota_per_source: usize,
    /// Highest rule id to hand out: the datapath's rule counters have one slot per id.
    pub max_rule_id: u32,
}

impl Default for Limits {
    /// A quota of 150 policies per source, and the rule ids the default datapath counts.
    fn default() -> Self {
        Limits {
            policy_quota_per_source: 150,
            max_rule_id: capacity::RULES - 1,
        }
    }
}

/// Why [`Model::apply`] refused a change. The model is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The change is malformed or contradicts the model; the message says which field and
    /// value, and for a list, which element (counting from 0, as in the JSON array).
    #[error("{0}")]
    Invalid(String),
    /// A source app would have more policies than its quota allows.
    #[error("policy quota exceeded")]
    QuotaExceeded,
    /// The app or network to remove does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// No rule id or identity is left for the change; the message says which ran out.
    #[error("{0}")]
    Full(String),
}

/// The apps, networks, policies and egress rules the daemon enforces, with the identities and
/// rule ids they were given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Registered apps by name.
    apps: Arc<BTreeMap<String, AppRecord>>,
    /// Named networks by name.
    networks: Arc<BTreeMap<String, NetworkRecord>>,
    /// Policies with their rule ids.
    policies: Arc<BTreeMap<NetworkPolicy, u32>>,
    /// Native rules with their rule ids.
    native_rules: Arc<BTreeMap<NativeRule, u32>>,
    /// Egress rules by app, with what they became.
    egress: Arc<BTreeMap<String, Egress>>,
    /// Every name ever given an identity.
    identities: Arc<BTreeMap<String, Identity>>,
    /// The identity the next new name gets.
    next_identity: Identity,
    /// Rule ids in use and free.
    rule_ids: RuleIds,
    /// Owner of each app address (as a host prefix) and named network prefix; derived from
    /// `apps` and `networks`.
    owners: Arc<BTreeMap<IpNet, Owner>>,
    /// Number of effective changes since the model was empty.
    revision: u64,
}

/// Who holds an address or prefix in the ipcache.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owner {
    /// An app, by name, for one of its instance addresses.
    App(String),
    /// A named network, by name, for one of its prefixes.
    Network(String),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::App(name) => write!(f, "app `{name}`"),
            Owner::Network(name) => write!(f, "network `{name}`"),
        }
    }
}

impl Default for Model {
    fn default() -> Self {
        Model {
            apps: Arc::default(),
            networks: Arc::default(),
            policies: Arc::default(),
            native_rules: Arc::default(),
            egress: Arc::default(),
            identities: Arc::default(),
            next_identity: reserved::FIRST_ALLOCATED,
            rule_ids: RuleIds::default(),
            owners: Arc::default(),
            revision: 0,
        }
    }
}

impl Model {
    /// An empty model: no apps, networks, policies or identities.
    pub fn new() -> Model {
        Model::default()
    }

    /// The policies, ordered by source, destination, protocol and ports.
    pub fn policies(&self) -> impl Iterator<Item = &NetworkPolicy> {
        self.policies.keys()
    }

    /// The rule id of `policy`, if it exists.
    pub fn policy_rule_id(&self, policy: &NetworkPolicy) -> Option<u32> {
        self.policies.get(policy).copied()
    }

    /// The native rules, ordered by source, destination and protocol.
    pub fn native_rules(&self) -> impl Iterator<Item = &NativeRule> {
        self.native_rules.keys()
    }

    /// The rule id of a native rule, if it exists.
    pub fn native_rule_id(&self, rule: &NativeRule) -> Option<u32> {
        self.native_rules.get(rule).copied()
    }

    /// The registered apps, ordered by name.
    pub fn apps(&self) -> impl Iterator<Item = &AppRecord> {
        self.apps.values()
    }

    /// The named networks, ordered by name (without the `cidr:` networks of egress rules).
    pub fn networks(&self) -> impl Iterator<Item = &NetworkRecord> {
        self.networks.values()
    }

    /// The egress rules of `app`, as last set; empty when it has none.
    pub fn egress(&self, app: &str) -> &[EgressRule] {
        self.egress
            .get(app)
            .map_or(&[], |egress| egress.rules.as_slice())
    }

    /// The identity of a name (an app, a network or `cidr:<prefix>`), if it was ever given
    /// one; [`reserved::WORLD`] for `world`.
    pub fn identity(&self, name: &str) -> Option<Identity> {
        if name == WORLD {
            return Some(reserved::WORLD);
        }
        self.identities.get(name).copied()
    }

    /// How many changes took effect to reach this model from an empty one. A change that
    /// leaves the model as it was (adding an existing policy) does not count.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Whether `self` and `other` certainly hold the same content: they share every table.
    fn shares_tables_with(&self, other: &Model) -> bool {
        Arc::ptr_eq(&self.apps, &other.apps)
            && Arc::ptr_eq(&self.networks, &other.networks)
            && Arc::ptr_eq(&self.policies, &other.policies)
            && Arc::ptr_eq(&self.native_rules, &other.native_rules)
            && Arc::ptr_eq(&self.egress, &other.egress)
            && Arc::ptr_eq(&self.identities, &other.identities)
            && self.next_identity == other.next_identity
            && self.rule_ids.same_as(&other.rule_ids)
    }

    /// Names that are apps: registered, named by a policy, or bound to egress rules.
    fn app_names(&self) -> BTreeSet<&str> {
        let registered = self.apps.keys().map(String::as_str);
        let endpoints = self
            .policies
            .keys()
            .flat_map(|policy| [policy.source.as_str(), policy.destination.as_str()]);
        let with_egress = self.egress.keys().map(String::as_str);
        registered.chain(endpoints).chain(with_egress).collect()
    }
}
