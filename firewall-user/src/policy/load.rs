//! From the YAML tree to a [`Policy`]: the document's sections, the apps and networks, their
//! names and identities, and which of them owns each address.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;

use firewall_common::Identity;
use firewall_common::identity::reserved;
use firewall_common::maps::capacity;
use ipnet::IpNet;

use super::error::{PolicyError, Problem};
use super::yaml::{self, Node, Reader, Value, field_path};
use super::{App, Network, Policy, WORLD, rules};

/// Most rules a policy may hold: rule ids index the rule counters, and id 0 means no rule.
pub(super) const MAX_RULES: u32 = capacity::RULES - 1;

/// Fields of the document.
const SECTIONS: &[&str] = &["apps", "networks", "policies"];
/// Fields of an app.
const APP_FIELDS: &[&str] = &["org", "space", "ips"];
/// Fields of a network.
const NETWORK_FIELDS: &[&str] = &["cidrs"];

/// Parses and validates `text`, allowing at most `max_rules` rules.
///
/// # Errors
///
/// As [`super::parse_str`].
pub(super) fn load(text: &str, origin: &str, max_rules: u32) -> Result<Policy, PolicyError> {
    let root = yaml::parse(text, origin)?;
    if matches!(root.value, Value::Null) {
        // A file of comments only: a valid, empty policy.
        return Ok(Policy::default());
    }
    let reader = Reader { origin };
    let sections = reader.fields(&root, "", SECTIONS)?;
    let mut directory = Directory::new(reader);

    let mut apps = Vec::new();
    if let Some(node) = sections.get("apps") {
        for (key, name, declaration) in reader.named(node, "apps")? {
            apps.push(directory.app(key, name, declaration)?);
        }
    }
    let mut networks = Vec::new();
    if let Some(node) = sections.get("networks") {
        for (key, name, declaration) in reader.named(node, "networks")? {
            networks.push(directory.network(key, name, declaration)?);
        }
    }
    let rules = match sections.get("policies") {
        Some(node) => rules::read(reader, &directory, node, max_rules)?,
        None => Vec::new(),
    };
    Ok(Policy {
        apps,
        networks,
        rules,
    })
}

/// The names declared so far and the addresses they own.
pub(super) struct Directory<'a> {
    reader: Reader<'a>,
    /// Identity, what it names ("an app", "a network") and line of each declared name.
    names: HashMap<String, (Identity, &'static str, usize)>,
    /// Owner of each address or prefix.
    claims: HashMap<IpNet, Claim>,
    /// Identity the next declaration gets.
    next_identity: Identity,
}

/// Who lists an address or prefix, and where.
struct Claim {
    /// Such as "app `frontend`".
    owner: String,
    /// Field path of the listing.
    field: String,
    /// Line of the listing.
    line: usize,
}

impl<'a> Directory<'a> {
    fn new(reader: Reader<'a>) -> Self {
        Directory {
            reader,
            names: HashMap::new(),
            claims: HashMap::new(),
            next_identity: reserved::FIRST_ALLOCATED,
        }
    }

    /// The identity `name` stands for in a rule: an app, a network, or `world`.
    pub(super) fn identity(&self, name: &str) -> Option<Identity> {
        if name == WORLD {
            return Some(reserved::WORLD);
        }
        self.names.get(name).map(|(identity, _, _)| *identity)
    }

    /// Reads the app `name`, declared as `node` under the key `key`.
    fn app(&mut self, key: &Node, name: &str, node: &Node) -> Result<App, PolicyError> {
        let path = field_path("apps", name);
        let identity = self.declare(key, &path, name, "an app")?;
        let fields = self.reader.fields(node, &path, APP_FIELDS)?;
        let org = self.optional_string(fields.get("org"), &field_path(&path, "org"))?;
        let space = self.optional_string(fields.get("space"), &field_path(&path, "space"))?;
        let owner = format!("app `{name}`");
        let mut ips = Vec::new();
        if let Some(list) = fields.get("ips") {
            let list_path = field_path(&path, "ips");
            for (index, item) in self.reader.list(list, &list_path)?.iter().enumerate() {
                let item_path = format!("{list_path}[{index}]");
                let text = self.reader.string(item, &item_path, "an IP address")?;
                let ip: IpAddr = text.parse().map_err(|_| {
                    let problem = Problem::BadAddress {
                        text: text.to_owned(),
                    };
                    self.reader.invalid(item, &item_path, problem)
                })?;
                self.claim(IpNet::from(ip), &owner, item, item_path)?;
                ips.push(ip);
            }
        }
        Ok(App {
            name: name.to_owned(),
            org,
            space,
            identity,
            ips,
        })
    }

    /// Reads the network `name`, declared as `node` under the key `key`.
    fn network(&mut self, key: &Node, name: &str, node: &Node) -> Result<Network, PolicyError> {
        let path = field_path("networks", name);
        let identity = self.declare(key, &path, name, "a network")?;
        let fields = self.reader.fields(node, &path, NETWORK_FIELDS)?;
        let owner = format!("network `{name}`");
        let mut cidrs = Vec::new();
        if let Some(list) = fields.get("cidrs") {
            let list_path = field_path(&path, "cidrs");
            for (index, item) in self.reader.list(list, &list_path)?.iter().enumerate() {
                let item_path = format!("{list_path}[{index}]");
                let text = self.reader.string(item, &item_path, "a CIDR")?;
                let cidr =
                    parse_cidr(text).map_err(|p| self.reader.invalid(item, &item_path, p))?;
                self.claim(cidr, &owner, item, item_path)?;
                cidrs.push(cidr);
            }
        }
        Ok(Network {
            name: name.to_owned(),
            identity,
            cidrs,
        })
    }

    /// Records the name `name` of something (`owner`), handing it the next identity.
    fn declare(
        &mut self,
        key: &Node,
        path: &str,
        name: &str,
        owner: &'static str,
    ) -> Result<Identity, PolicyError> {
        let problem = if name.is_empty() {
            Problem::EmptyName
        } else if name == WORLD {
            Problem::ReservedName
        } else if let Some((_, first_owner, first_line)) = self.names.get(name) {
            Problem::NameClash {
                name: name.to_owned(),
                owner: first_owner,
                first_line: *first_line,
            }
        } else {
            let identity = self.next_identity;
            self.next_identity += 1;
            let line = yaml::position(key).line;
            self.names.insert(name.to_owned(), (identity, owner, line));
            return Ok(identity);
        };
        Err(self.reader.invalid(key, path, problem))
    }

    /// Records that `owner` lists `prefix` as `node` at `field`.
    fn claim(
        &mut self,
        prefix: IpNet,
        owner: &str,
        node: &Node,
        field: String,
    ) -> Result<(), PolicyError> {
        let line = yaml::position(node).line;
        let first = match self.claims.entry(prefix) {
            Entry::Vacant(vacant) => {
                let owner = owner.to_owned();
                vacant.insert(Claim { owner, field, line });
                return Ok(());
            }
            Entry::Occupied(occupied) => occupied.into_mut(),
        };
        let problem = if first.owner == owner {
            Problem::Repeated {
                prefix,
                first_field: first.field.clone(),
                first_line: first.line,
            }
        } else {
            Problem::AddressTaken {
                prefix,
                owner: first.owner.clone(),
                first_line: first.line,
            }
        };
        Err(self.reader.invalid(node, &field, problem))
    }

    /// The string of an optional string field.
    fn optional_string(
        &self,
        node: Option<&Node>,
        field: &str,
    ) -> Result<Option<String>, PolicyError> {
        node.map(|node| {
            self.reader
                .string(node, field, "a string")
                .map(str::to_owned)
        })
        .transpose()
    }
}

/// Parses a network prefix, refusing one with host bits set.
fn parse_cidr(text: &str) -> Result<IpNet, Problem> {
    let written: IpNet = text.parse().map_err(|_| Problem::BadCidr {
        text: text.to_owned(),
    })?;
    let network = written.trunc();
    if network == written {
        Ok(written)
    } else {
        Err(Problem::HostBitsSet { written, network })
    }
}
