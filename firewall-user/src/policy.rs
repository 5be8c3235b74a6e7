//! The policy: which apps and networks may talk to which, over what.
//!
//! A policy file (YAML, see `examples/policy.yaml`) declares apps with their addresses,
//! networks with their prefixes, and allow rules between them by name. Loading it checks
//! everything and yields either a whole [`Policy`] or one [`PolicyError`] that names the
//! file, line, column and field; nothing is ever half loaded.
//!
//! Each app and network gets an [`Identity`]; [`Policy::compile`] turns the policy into the
//! ipcache (address prefix to identity) and the policy map (identities, protocol and port
//! to rule id) the datapath reads.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use firewall_common::Identity;
use firewall_common::identity::reserved;

mod compile;
mod error;
mod load;
mod ports;
mod rules;
mod yaml;

#[cfg(test)]
mod tests;

pub use compile::{CompiledPolicy, PolicyEntry};
pub use error::{PolicyError, Position, Problem};
pub use ports::port_range_prefixes;

/// The name rules use for [`reserved::WORLD`]: every address outside all apps and networks.
pub const WORLD: &str = "world";

/// A validated policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Apps, in file order.
    pub apps: Vec<App>,
    /// Named networks, in file order.
    pub networks: Vec<Network>,
    /// Allow rules, in file order; rule `n` is at index `n - 1`.
    pub rules: Vec<Rule>,
}

/// An app: a set of addresses that share one identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// Name rules refer to it by.
    pub name: String,
    /// Organisation that owns it, for operators only.
    pub org: Option<String>,
    /// Space within the organisation, for operators only.
    pub space: Option<String>,
    /// Its identity.
    pub identity: Identity,
    /// Addresses of its instances, each its own ipcache entry.
    pub ips: Vec<IpAddr>,
}

/// A named network: address prefixes that share one identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// Name rules refer to it by.
    pub name: String,
    /// Its identity.
    pub identity: Identity,
    /// Its prefixes. An app address inside one keeps the app's identity: the ipcache
    /// gives the longest prefix.
    pub cidrs: Vec<ipnet::IpNet>,
}

/// An allow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// 1-based position in the file, the index of its counters.
    pub id: u32,
    /// Identity allowed to send.
    pub source: Identity,
    /// Identity allowed to receive.
    pub destination: Identity,
    /// What traffic it allows.
    pub protocol: Protocol,
    /// Line of the rule in the file.
    pub line: usize,
}

/// The traffic a rule allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP to the given destination ports, or to every port.
    Tcp(Option<PortRange>),
    /// UDP to the given destination ports, or to every port.
    Udp(Option<PortRange>),
    /// SCTP to the given destination ports, or to every port.
    Sctp(Option<PortRange>),
    /// ICMP messages.
    Icmp(IcmpMatch),
    /// ICMPv6 messages.
    Icmpv6(IcmpMatch),
    /// Every IP protocol.
    All,
}

impl Protocol {
    /// The IP protocol number, `None` for [`Protocol::All`].
    pub fn number(&self) -> Option<u8> {
        match self {
            Protocol::Tcp(_) => Some(6),
            Protocol::Udp(_) => Some(17),
            Protocol::Sctp(_) => Some(132),
            Protocol::Icmp(_) => Some(1),
            Protocol::Icmpv6(_) => Some(58),
            Protocol::All => None,
        }
    }

    /// The name a policy file uses for it.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Tcp(_) => "tcp",
            Protocol::Udp(_) => "udp",
            Protocol::Sctp(_) => "sctp",
            Protocol::Icmp(_) => "icmp",
            Protocol::Icmpv6(_) => "icmpv6",
            Protocol::All => "all",
        }
    }
}

/// Shows the protocol as a policy file would say it: `tcp 8081`, `icmp type 3 code 4`, `all`.
impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Protocol::Tcp(Some(ports))
            | Protocol::Udp(Some(ports))
            | Protocol::Sctp(Some(ports)) => {
                write!(f, " {ports}")
            }
            Protocol::Icmp(icmp) | Protocol::Icmpv6(icmp) => {
                if let Some(icmp_type) = icmp.icmp_type {
                    write!(f, " type {icmp_type}")?;
                }
                match icmp.code {
                    Some(code) => write!(f, " code {code}"),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// Destination ports from `start` to `end`, both included; `start <= end`, neither 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

/// Shows `8081` for one port, `9000-9010` for a range.
impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// The ICMP or ICMPv6 messages a rule allows: every message, one type, or one type and code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    /// Message type; `None` for every message.
    pub icmp_type: Option<u8>,
    /// Message code; only set together with a type.
    pub code: Option<u8>,
}

impl Policy {
    /// The name of an identity: its app or network, or `world` for [`reserved::WORLD`].
    pub fn identity_name(&self, id: Identity) -> Option<&str> {
        if id == reserved::WORLD {
            return Some(WORLD);
        }
        let app = self.apps.iter().find(|app| app.identity == id);
        let network = || self.networks.iter().find(|network| network.identity == id);
        app.map(|app| app.name.as_str())
            .or_else(|| network().map(|network| network.name.as_str()))
    }

    /// The rule with id `id`.
    pub fn rule(&self, id: u32) -> Option<&Rule> {
        // Loaded policies keep rule `n` at index `n - 1`; search for ones built otherwise.
        let index = usize::try_from(id.wrapping_sub(1)).ok();
        let at_index = index.and_then(|index| self.rules.get(index));
        at_index
            .filter(|rule| rule.id == id)
            .or_else(|| self.rules.iter().find(|rule| rule.id == id))
    }

    /// A one-line description of a rule, such as `frontend -> backend tcp 9000-9010`.
    pub fn describe_rule(&self, rule: &Rule) -> String {
        format!(
            "{} -> {} {}",
            self.describe_identity(rule.source),
            self.describe_identity(rule.destination),
            rule.protocol
        )
    }

    /// The identity's name, or its number for one the policy does not know.
    fn describe_identity(&self, id: Identity) -> String {
        match self.identity_name(id) {
            Some(name) => name.to_owned(),
            None => format!("identity {id}"),
        }
    }
}

/// Reads and validates the policy file at `path`.
///
/// # Errors
///
/// [`PolicyError::Io`] when the file cannot be read; otherwise as [`parse_str`], with the
/// path as the origin.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&text, &origin),
        Err(error) => Err(PolicyError::Io { origin, error }),
    }
}

/// Parses and validates a policy written in YAML; `origin` names it in errors.
///
/// Apps get identities from [`reserved::FIRST_ALLOCATED`] up in file order, then networks
/// after them; rules get ids from 1 up in file order.
///
/// # Errors
///
/// [`PolicyError::Syntax`] when `text` is not one well-formed YAML document,
/// [`PolicyError::Invalid`] with the first [`Problem`] found otherwise.
pub fn parse_str(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    load::load(text, origin, load::MAX_RULES)
}
