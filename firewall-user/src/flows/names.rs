//! Names for flow records: identities to apps and networks, rule ids to rule text, interface
//! indexes to interface names.
//!
//! A [`NameTable`] indexes one [`Policy`] snapshot. The daemon publishes a new snapshot after
//! every accepted change and the collector rebuilds its table from it (two hash maps, linear in
//! apps, networks and rules), so naming a record never takes the controller's lock. A record
//! that races a change is named by the policy just before or just after it.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use firewall_common::{Identity, identity::reserved};

use crate::{
    events,
    policy::{Policy, WORLD},
};

/// What an identity names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    /// A registered app.
    App,
    /// A named network (egress destinations are networks named `cidr:<prefix>`).
    Network,
    /// Every address in no app and no network.
    World,
}

impl EndpointKind {
    /// Stable lower-case name: `app`, `network`, `world`.
    pub fn name(self) -> &'static str {
        match self {
            EndpointKind::App => "app",
            EndpointKind::Network => "network",
            EndpointKind::World => "world",
        }
    }
}

/// The names of one identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointName<'a> {
    /// App or network name, or `world`.
    pub name: &'a str,
    /// What the name is.
    pub kind: EndpointKind,
    /// The app's org, if it has one.
    pub org: Option<&'a str>,
    /// The app's space, if it has one.
    pub space: Option<&'a str>,
}

#[derive(Clone, Copy, Debug)]
enum Owner {
    App(usize),
    Network(usize),
}

/// Identity and rule names of one policy snapshot, indexed for lookups by number.
#[derive(Clone, Debug)]
pub struct NameTable {
    policy: Arc<Policy>,
    identities: HashMap<Identity, Owner>,
    rules: HashMap<u32, usize>,
}

impl NameTable {
    /// Indexes `policy`.
    pub fn new(policy: Arc<Policy>) -> NameTable {
        let mut identities = HashMap::with_capacity(policy.apps.len() + policy.networks.len());
        // Networks first, so an app keeps its identity should both claim one.
        for (index, network) in policy.networks.iter().enumerate() {
            identities.insert(network.identity, Owner::Network(index));
        }
        for (index, app) in policy.apps.iter().enumerate() {
            identities.insert(app.identity, Owner::App(index));
        }
        let rules = policy
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.id, index))
            .collect();
        NameTable {
            policy,
            identities,
            rules,
        }
    }

    /// An empty table: every identity unnamed but `world`, every rule unknown.
    pub fn empty() -> NameTable {
        NameTable::new(Arc::new(Policy::default()))
    }

    /// The names of `identity`; `None` for [`reserved::UNSET`] and identities the policy
    /// does not know (such as one whose app was removed since the packet was judged).
    pub fn endpoint(&self, identity: Identity) -> Option<EndpointName<'_>> {
        if identity == reserved::WORLD {
            return Some(EndpointName {
                name: WORLD,
                kind: EndpointKind::World,
                org: None,
                space: None,
            });
        }
        match *self.identities.get(&identity)? {
            Owner::App(index) => {
                let app = &self.policy.apps[index];
                Some(EndpointName {
                    name: &app.name,
                    kind: EndpointKind::App,
                    org: app.org.as_deref(),
                    space: app.space.as_deref(),
                })
            }
            Owner::Network(index) => Some(EndpointName {
                name: &self.policy.networks[index].name,
                kind: EndpointKind::Network,
                org: None,
                space: None,
            }),
        }
    }

    /// The policy the table indexes.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The rule as a policy file would say it, such as `frontend -> backend tcp 8081`; `None`
    /// for a rule id the policy does not hold (0, or a rule removed since).
    pub fn rule_text(&self, rule_id: u32) -> Option<String> {
        let rule = &self.policy.rules[*self.rules.get(&rule_id)?];
        Some(self.policy.describe_rule(rule))
    }
}

/// Interface names by index, remembered for a while: the kernel is asked once per interface
/// and period rather than once per record. A renamed interface shows its old name until the
/// period ends.
#[derive(Debug)]
pub struct InterfaceNames {
    names: HashMap<u32, String>,
    since: Instant,
    period: Duration,
}

impl InterfaceNames {
    /// A cache forgotten every `period`.
    pub fn new(period: Duration) -> InterfaceNames {
        InterfaceNames {
            names: HashMap::new(),
            since: Instant::now(),
            period,
        }
    }

    /// The name of `ifindex`, or `if<index>` when no interface has it (any more).
    pub fn name(&mut self, ifindex: u32) -> String {
        if self.since.elapsed() >= self.period {
            self.names.clear();
            self.since = Instant::now();
        }
        if let Some(name) = self.names.get(&ifindex) {
            return name.clone();
        }
        let name = events::interface_name(ifindex);
        // A vanished interface is asked again next time: its index may come back.
        if name != format!("if{ifindex}") {
            self.names.insert(ifindex, name.clone());
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;

    const POLICY: &str = "
apps:
  frontend: {org: bank, space: prod, ips: [198.18.1.10]}
  backend:  {ips: [198.18.2.10]}
networks:
  legacy-db: {cidrs: [198.19.10.0/24]}
policies:
  - {source: frontend, destination: backend, protocol: tcp, ports: 8081}
  - {source: backend, destination: legacy-db, protocol: tcp, ports: 1521}
";

    fn table() -> NameTable {
        NameTable::new(Arc::new(policy::parse_str(POLICY, "test").expect("policy")))
    }

    #[test]
    fn identities_name_apps_with_org_and_space_networks_and_the_world() {
        let table = table();
        let frontend = table.endpoint(256).expect("frontend");
        assert_eq!(
            (frontend.name, frontend.kind, frontend.org, frontend.space),
            ("frontend", EndpointKind::App, Some("bank"), Some("prod"))
        );
        let backend = table.endpoint(257).expect("backend");
        assert_eq!((backend.name, backend.org), ("backend", None));
        let network = table.endpoint(258).expect("legacy-db");
        assert_eq!(
            (network.name, network.kind),
            ("legacy-db", EndpointKind::Network)
        );
        let world = table.endpoint(reserved::WORLD).expect("world");
        assert_eq!((world.name, world.kind), ("world", EndpointKind::World));
        assert_eq!(table.endpoint(reserved::UNSET), None);
        assert_eq!(table.endpoint(9999), None);
    }

    #[test]
    fn rule_ids_give_the_rule_text_and_unknown_ids_nothing() {
        let table = table();
        assert_eq!(
            table.rule_text(1).as_deref(),
            Some("frontend -> backend tcp 8081")
        );
        assert_eq!(
            table.rule_text(2).as_deref(),
            Some("backend -> legacy-db tcp 1521")
        );
        assert_eq!(table.rule_text(0), None);
        assert_eq!(table.rule_text(3), None);
        assert_eq!(NameTable::empty().rule_text(1), None);
    }

    #[test]
    fn the_loopback_interface_is_named_and_a_missing_one_numbered() {
        let mut names = InterfaceNames::new(Duration::from_secs(60));
        assert_eq!(names.name(1), "lo");
        assert_eq!(names.name(1), "lo");
        assert_eq!(names.name(u32::MAX), format!("if{}", u32::MAX));
    }
}
