//! Egress rules in Cloud Foundry security-group form, and what they become: one grant (a rule
//! from the app to a `cidr:` network) per destination prefix and port element.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use serde::{Deserialize, Serialize};

use crate::policy::{IcmpMatch, PortRange, Protocol};

use super::ModelError;
use super::check::CIDR_PREFIX;

#[cfg(test)]
mod tests;

/// One egress rule, in the JSON shape of a Cloud Foundry security group rule:
/// `{"protocol":"tcp","destination":"10.0.11.0/24","ports":"80,443","description":"..."}`.
///
/// Checked by [`Model::apply`](super::Model::apply), not when deserialised, so a bad rule is
/// reported with its place in the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: EgressProtocol,
    /// As given: an address, a CIDR, or a range `first-last`, or several of these separated
    /// by commas.
    pub destination: String,
    /// For tcp and udp only: `443`, `8000-8010`, or a comma-separated list of these; absent
    /// means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// For icmp only: the message type, -1 or absent for every type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i16>,
    /// For icmp only: the message code, -1 or absent for every code.
    #[serde(rename = "code", default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<i16>,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The protocols of Cloud Foundry security group rules.
///
/// Serialised as `"tcp"`, `"udp"`, `"icmp"` or `"all"`; any other name fails with
/// `invalid protocol: NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum EgressProtocol {
    /// TCP, to the rule's ports.
    Tcp,
    /// UDP, to the rule's ports.
    Udp,
    /// ICMP (IPv4 destinations only), of the rule's type and code.
    Icmp,
    /// Every protocol.
    All,
}

impl EgressProtocol {
    /// The name a security group uses.
    pub fn name(self) -> &'static str {
        match self {
            EgressProtocol::Tcp => "tcp",
            EgressProtocol::Udp => "udp",
            EgressProtocol::Icmp => "icmp",
            EgressProtocol::All => "all",
        }
    }
}

impl fmt::Display for EgressProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `tcp`, `udp`, `icmp` or `all`.
impl FromStr for EgressProtocol {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self, ModelError> {
        match text {
            "tcp" => Ok(EgressProtocol::Tcp),
            "udp" => Ok(EgressProtocol::Udp),
            "icmp" => Ok(EgressProtocol::Icmp),
            "all" => Ok(EgressProtocol::All),
            _ => Err(ModelError::Invalid(format!(
                "invalid protocol: {text}; specify one of tcp, udp, icmp, all"
            ))),
        }
    }
}

impl TryFrom<String> for EgressProtocol {
    type Error = ModelError;

    fn try_from(text: String) -> Result<Self, ModelError> {
        text.parse()
    }
}

impl From<EgressProtocol> for &'static str {
    fn from(protocol: EgressProtocol) -> &'static str {
        protocol.name()
    }
}

/// An app's egress rules as set, with the grants they became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Egress {
    /// The rules as last set.
    pub(crate) rules: Vec<EgressRule>,
    /// What they allow, without repeats, in the order the rules say it.
    pub(crate) grants: Vec<Grant>,
}

/// One rule an egress rule became: the app may send `protocol` to `destination`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Grant {
    /// The destination prefix, whose network is named by [`network_name`].
    pub(crate) destination: IpNet,
    /// What traffic it allows.
    pub(crate) protocol: Protocol,
    /// Its rule id.
    pub(crate) rule_id: u32,
}

/// The name of the network of egress destination `prefix`: `cidr:10.0.0.0/8`.
pub(crate) fn network_name(prefix: &IpNet) -> String {
    format!("{CIDR_PREFIX}{prefix}")
}

/// The destinations and protocols `rules` allow, without repeats, in rule order.
///
/// # Errors
///
/// [`ModelError::Invalid`] for the first bad rule, prefixed with `egress rule INDEX: `;
/// [`ModelError::Full`] when they would need more than `max` rules.
pub(super) fn expand(
    rules: &[EgressRule],
    max: usize,
) -> Result<Vec<(IpNet, Protocol)>, ModelError> {
    let mut seen = HashSet::new();
    let mut grants = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let (destinations, protocols) = expand_rule(rule)
            .map_err(|problem| ModelError::Invalid(format!("egress rule {index}: {problem}")))?;
        for destination in destinations {
            for &protocol in &protocols {
                if seen.insert((destination, protocol)) {
                    grants.push((destination, protocol));
                }
            }
        }
        if grants.len() > max {
            return Err(ModelError::Full(format!(
                "egress rules 0-{index} need more than {max} rules"
            )));
        }
    }
    Ok(grants)
}

/// The destination prefixes and the protocol matches of one rule.
fn expand_rule(rule: &EgressRule) -> Result<(Vec<IpNet>, Vec<Protocol>), String> {
    let destinations = destinations(&rule.destination)?;
    let name = rule.protocol.name();
    let has_icmp_fields = rule.icmp_type.is_some() || rule.icmp_code.is_some();
    if has_icmp_fields && rule.protocol != EgressProtocol::Icmp {
        return Err(format!(
            "type and code do not apply to protocol {name}; only icmp takes them"
        ));
    }
    if rule.ports.is_some() && !matches!(rule.protocol, EgressProtocol::Tcp | EgressProtocol::Udp) {
        return Err(format!(
            "ports do not apply to protocol {name}; only tcp and udp take them"
        ));
    }
    let protocols = match rule.protocol {
        EgressProtocol::Tcp => port_ranges(rule)?.into_iter().map(Protocol::Tcp).collect(),
        EgressProtocol::Udp => port_ranges(rule)?.into_iter().map(Protocol::Udp).collect(),
        EgressProtocol::Icmp => {
            if let Some(v6) = destinations
                .iter()
                .find(|prefix| matches!(prefix, IpNet::V6(_)))
            {
                return Err(format!(
                    "protocol icmp does not apply to IPv6 destination {v6}; icmp rules take \
                     IPv4 destinations only"
                ));
            }
            vec![Protocol::Icmp(icmp(rule)?)]
        }
        EgressProtocol::All => vec![Protocol::All],
    };
    Ok((destinations, protocols))
}

/// The port elements of a tcp or udp rule; `[None]` (every port) when it has no `ports`.
fn port_ranges(rule: &EgressRule) -> Result<Vec<Option<PortRange>>, String> {
    let Some(text) = &rule.ports else {
        return Ok(vec![None]);
    };
    let mut ranges = Vec::new();
    for element in text.split(',') {
        let element = element.trim();
        let (start, end) = element.split_once('-').unwrap_or((element, element));
        let start = port(start.trim(), text)?;
        let end = port(end.trim(), text)?;
        if start > end {
            return Err(format!(
                "invalid port range: {start}-{end} in ports {text:?} (did you mean \
                 {end}-{start}?)"
            ));
        }
        ranges.push(Some(PortRange { start, end }));
    }
    Ok(ranges)
}

/// One port of the `ports` value `text`.
fn port(digits: &str, text: &str) -> Result<u16, String> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!(
            "invalid ports: {text:?} (write a port, a range N-M, or a comma-separated list)"
        ));
    }
    digits
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| {
            format!("invalid port: {digits} in ports {text:?} (must be in range 1-65535)")
        })
}

/// The ICMP match of an icmp rule: -1 or absent means any.
fn icmp(rule: &EgressRule) -> Result<IcmpMatch, String> {
    let icmp_type = icmp_number("type", rule.icmp_type)?;
    let code = icmp_number("code", rule.icmp_code)?;
    if icmp_type.is_none()
        && let Some(code) = code
    {
        return Err(format!(
            "icmp code {code} needs a type; set the type, or code -1 for any"
        ));
    }
    Ok(IcmpMatch { icmp_type, code })
}

/// An ICMP `type` or `code`: `None` for absent or -1.
fn icmp_number(field: &str, value: Option<i16>) -> Result<Option<u8>, String> {
    match value {
        None | Some(-1) => Ok(None),
        Some(value) => u8::try_from(value)
            .map(Some)
            .map_err(|_| format!("invalid icmp {field}: {value} (expected -1 for any, or 0-255)")),
    }
}

/// The prefixes of a `destination`: comma-separated addresses, CIDRs and ranges.
fn destinations(text: &str) -> Result<Vec<IpNet>, String> {
    let mut prefixes = Vec::new();
    for element in text.split(',') {
        let element = element.trim();
        if element.is_empty() {
            return Err(format!(
                "invalid destination: {text:?} has an empty element"
            ));
        }
        if let Some((first, last)) = element.split_once('-') {
            prefixes.extend(range(element, first.trim(), last.trim())?);
        } else if element.contains('/') {
            prefixes.push(cidr(element)?);
        } else {
            prefixes.push(IpNet::from(address(element)?));
        }
    }
    Ok(prefixes)
}

/// The prefixes that cover exactly the addresses `first` to `last` of `element`.
fn range(element: &str, first: &str, last: &str) -> Result<Vec<IpNet>, String> {
    let (first, last) = (address(first)?, address(last)?);
    if first.is_ipv4() != last.is_ipv4() {
        return Err(format!(
            "invalid destination: range {element} mixes IPv4 and IPv6"
        ));
    }
    if first > last {
        return Err(format!(
            "invalid destination: range {element} is reversed; did you mean {last}-{first}?"
        ));
    }
    Ok(match (first, last) {
        (IpAddr::V4(first), IpAddr::V4(last)) => {
            Ipv4Subnets::new(first, last, 0).map(IpNet::V4).collect()
        }
        (IpAddr::V6(first), IpAddr::V6(last)) => {
            Ipv6Subnets::new(first, last, 0).map(IpNet::V6).collect()
        }
        // Both families are the same, checked above.
        _ => Vec::new(),
    })
}

/// A CIDR without host bits.
fn cidr(text: &str) -> Result<IpNet, String> {
    let written: IpNet = text
        .parse()
        .map_err(|_| format!("invalid destination: {text} is not a CIDR such as 10.0.0.0/8"))?;
    let network = written.trunc();
    if network == written {
        Ok(written)
    } else {
        Err(format!(
            "invalid destination: {written} has host bits set; did you mean {network}?"
        ))
    }
}

/// An IPv4 or IPv6 address.
fn address(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid destination: {text:?} is not an IP address, a CIDR or a range such as \
             10.0.0.1-10.0.0.9"
        )
    })
}
