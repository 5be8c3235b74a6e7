//! The tables of the store file and how each value is encoded.
//!
//! Keys are plain redb types; values that are records are JSON. Layout changes bump
//! [`SCHEMA_VERSION`].

use ipnet::IpNet;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::model::{CfProtocol, Egress, EgressRule, Grant, NativeRule, NetworkPolicy};
use crate::policy::{IcmpMatch, PortRange, Protocol};

/// Version of the layout below. A store of another version is refused, never guessed at.
pub(super) const SCHEMA_VERSION: u64 = 1;

/// Counters and the schema version, by the names below.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Key of the layout version in [`META`].
pub(super) const SCHEMA_KEY: &str = "schema_version";
/// Key of the model revision in [`META`].
pub(super) const REVISION_KEY: &str = "revision";
/// Key of the next identity in [`META`].
pub(super) const NEXT_IDENTITY_KEY: &str = "next_identity";
/// Key of the next rule id in [`META`].
pub(super) const NEXT_RULE_ID_KEY: &str = "next_rule_id";

/// Registered apps: name to JSON [`AppRecord`](crate::model::AppRecord).
pub(super) const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
/// Named networks: name to JSON [`NetworkRecord`](crate::model::NetworkRecord).
pub(super) const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
/// Policies: (source, destination, IP protocol number, start port, end port) to rule id.
pub(super) const POLICIES: TableDefinition<PolicyKey<'static>, u32> =
    TableDefinition::new("policies");
/// Native rules: (source, destination, JSON [`ProtocolValue`]) to rule id.
pub(super) const NATIVE_RULES: TableDefinition<NativeRuleKey<'static>, u32> =
    TableDefinition::new("native_rules");
/// Egress rules: app name to JSON [`EgressValue`].
pub(super) const EGRESS: TableDefinition<&str, &[u8]> = TableDefinition::new("egress");
/// Identities: name to identity.
pub(super) const IDENTITIES: TableDefinition<&str, u32> = TableDefinition::new("identities");

/// Key of a policy in [`POLICIES`].
pub(super) type PolicyKey<'a> = (&'a str, &'a str, u8, u16, u16);

/// Key of a native rule in [`NATIVE_RULES`]; the protocol is JSON.
pub(super) type NativeRuleKey<'a> = (&'a str, &'a str, &'a str);

/// The source, destination and encoded protocol of a native rule.
///
/// # Errors
///
/// What `serde_json` reports (nothing, for this type).
pub(super) fn native_rule_key(
    rule: &NativeRule,
) -> Result<(&str, &str, String), serde_json::Error> {
    let protocol = serde_json::to_string(&ProtocolValue::from(rule.protocol))?;
    Ok((&rule.source, &rule.destination, protocol))
}

/// The native rule of a key.
///
/// # Errors
///
/// A description of a protocol that does not decode.
pub(super) fn native_rule_from_key(key: NativeRuleKey<'_>) -> Result<NativeRule, String> {
    let (source, destination, protocol) = key;
    let value: ProtocolValue = serde_json::from_str(protocol)
        .map_err(|error| format!("rule {source} -> {destination}: {error}"))?;
    Ok(NativeRule {
        source: source.to_owned(),
        destination: destination.to_owned(),
        protocol: value.protocol()?,
    })
}

/// The key of `policy`.
pub(super) fn policy_key(policy: &NetworkPolicy) -> PolicyKey<'_> {
    let number = match policy.protocol {
        CfProtocol::Tcp => 6,
        CfProtocol::Udp => 17,
    };
    (
        &policy.source,
        &policy.destination,
        number,
        policy.start_port,
        policy.end_port,
    )
}

/// The policy of a key.
///
/// # Errors
///
/// A description of a protocol number that is neither TCP nor UDP.
pub(super) fn policy_from_key(key: PolicyKey<'_>) -> Result<NetworkPolicy, String> {
    let (source, destination, number, start_port, end_port) = key;
    let protocol = match number {
        6 => CfProtocol::Tcp,
        17 => CfProtocol::Udp,
        _ => {
            return Err(format!(
                "policy {source} -> {destination} has protocol {number}"
            ));
        }
    };
    Ok(NetworkPolicy {
        source: source.to_owned(),
        destination: destination.to_owned(),
        protocol,
        start_port,
        end_port,
    })
}

/// An app's egress rules as stored: the rules and, explicitly, the grants with their ids.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressValue {
    rules: Vec<EgressRule>,
    grants: Vec<GrantValue>,
}

/// A [`Grant`] as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantValue {
    destination: String,
    protocol: ProtocolValue,
    rule_id: u32,
}

/// A [`Protocol`] as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolValue {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ports: Option<[u16; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
}

impl From<Protocol> for ProtocolValue {
    fn from(protocol: Protocol) -> Self {
        let mut value = ProtocolValue {
            name: protocol.name().to_owned(),
            ports: None,
            icmp_type: None,
            icmp_code: None,
        };
        match protocol {
            Protocol::Tcp(ports) | Protocol::Udp(ports) | Protocol::Sctp(ports) => {
                value.ports = ports.map(|ports| [ports.start, ports.end]);
            }
            Protocol::Icmp(icmp) | Protocol::Icmpv6(icmp) => {
                value.icmp_type = icmp.icmp_type;
                value.icmp_code = icmp.code;
            }
            Protocol::All => {}
        }
        value
    }
}

impl ProtocolValue {
    /// The protocol stored.
    fn protocol(&self) -> Result<Protocol, String> {
        let ports = self.ports.map(|[start, end]| PortRange { start, end });
        let icmp = IcmpMatch {
            icmp_type: self.icmp_type,
            code: self.icmp_code,
        };
        Ok(match self.name.as_str() {
            "tcp" => Protocol::Tcp(ports),
            "udp" => Protocol::Udp(ports),
            "sctp" => Protocol::Sctp(ports),
            "icmp" => Protocol::Icmp(icmp),
            "icmpv6" => Protocol::Icmpv6(icmp),
            "all" => Protocol::All,
            other => return Err(format!("protocol {other:?} is unknown")),
        })
    }
}

/// Encodes an app's egress rules.
///
/// # Errors
///
/// What `serde_json` reports (nothing, for these types).
pub(super) fn encode_egress(egress: &Egress) -> Result<Vec<u8>, serde_json::Error> {
    let grants = egress.grants.iter().map(grant_value).collect();
    let value = EgressValue {
        rules: egress.rules.clone(),
        grants,
    };
    serde_json::to_vec(&value)
}

/// Decodes an app's egress rules.
///
/// # Errors
///
/// A description of malformed JSON or a grant that makes no sense.
pub(super) fn decode_egress(bytes: &[u8]) -> Result<Egress, String> {
    let value: EgressValue = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    let grants = value
        .grants
        .into_iter()
        .map(grant_from_value)
        .collect::<Result<_, _>>()?;
    Ok(Egress {
        rules: value.rules,
        grants,
    })
}

fn grant_value(grant: &Grant) -> GrantValue {
    GrantValue {
        destination: grant.destination.to_string(),
        protocol: ProtocolValue::from(grant.protocol),
        rule_id: grant.rule_id,
    }
}

fn grant_from_value(value: GrantValue) -> Result<Grant, String> {
    let destination: IpNet = value
        .destination
        .parse()
        .map_err(|_| format!("grant destination {:?} is not a CIDR", value.destination))?;
    Ok(Grant {
        destination,
        protocol: value.protocol.protocol()?,
        rule_id: value.rule_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_survives_encoding() {
        let icmp = IcmpMatch {
            icmp_type: Some(3),
            code: Some(4),
        };
        let ports = Some(PortRange { start: 80, end: 90 });
        let protocols = [
            Protocol::Tcp(ports),
            Protocol::Udp(None),
            Protocol::Sctp(ports),
            Protocol::Icmp(icmp),
            Protocol::Icmpv6(IcmpMatch::default()),
            Protocol::All,
        ];
        let grants: Vec<Grant> = protocols
            .into_iter()
            .zip(1..)
            .map(|(protocol, rule_id)| Grant {
                destination: "2001:db8::/32".parse().unwrap(),
                protocol,
                rule_id,
            })
            .collect();
        let egress = Egress {
            rules: Vec::new(),
            grants,
        };
        let decoded = decode_egress(&encode_egress(&egress).unwrap()).unwrap();
        assert_eq!(decoded, egress);
        for grant in &egress.grants {
            let rule = NativeRule {
                source: "a".into(),
                destination: "world".into(),
                protocol: grant.protocol,
            };
            let (source, destination, protocol) = native_rule_key(&rule).unwrap();
            let decoded = native_rule_from_key((source, destination, &protocol));
            assert_eq!(decoded, Ok(rule));
        }
    }
}
