//! Reading the `policies` section: allow rules between named apps and networks.

use firewall_common::Identity;

use super::error::{PolicyError, Problem};
use super::load::Directory;
use super::yaml::{self, Fields, Node, Reader, Value, field_path};
use super::{IcmpMatch, PortRange, Protocol, Rule};

/// Fields of a rule.
const RULE_FIELDS: &[&str] = &["source", "destination", "protocol", "ports", "type", "code"];

/// Reads the rules of the `policies` list `node`, ids from 1 in file order.
///
/// # Errors
///
/// The first problem of the first bad rule, or [`Problem::TooManyRules`] at rule
/// `max_rules + 1`.
pub(super) fn read(
    reader: Reader<'_>,
    directory: &Directory<'_>,
    node: &Node,
    max_rules: u32,
) -> Result<Vec<Rule>, PolicyError> {
    let items = reader.list(node, "policies")?;
    let mut rules = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("policies[{index}]");
        let id = u32::try_from(index + 1)
            .ok()
            .filter(|id| *id <= max_rules)
            .ok_or_else(|| reader.invalid(item, &path, Problem::TooManyRules { max: max_rules }))?;
        rules.push(read_rule(reader, directory, item, &path, id)?);
    }
    Ok(rules)
}

/// Reads the rule `node` at `path`.
fn read_rule(
    reader: Reader<'_>,
    directory: &Directory<'_>,
    node: &Node,
    path: &str,
    id: u32,
) -> Result<Rule, PolicyError> {
    let fields = reader.fields(node, path, RULE_FIELDS)?;
    let source = endpoint(reader, directory, &fields, path, "source")?;
    let destination = endpoint(reader, directory, &fields, path, "destination")?;
    let protocol = protocol(reader, &fields, path)?;
    Ok(Rule {
        id,
        source,
        destination,
        protocol,
        line: yaml::position(node).line,
    })
}

/// The identity named by the rule's field `name` (`source` or `destination`).
fn endpoint(
    reader: Reader<'_>,
    directory: &Directory<'_>,
    fields: &Fields<'_>,
    path: &str,
    name: &'static str,
) -> Result<Identity, PolicyError> {
    let node = fields.require(reader, path, name)?;
    let field = field_path(path, name);
    let text = reader.string(node, &field, "an app or network name")?;
    directory.identity(text).ok_or_else(|| {
        let problem = Problem::UnknownName {
            name: text.to_owned(),
        };
        reader.invalid(node, &field, problem)
    })
}

/// Each protocol name with the rule fields that do not apply to it.
const PROTOCOLS: &[(&str, &[&str])] = &[
    ("tcp", &["type", "code"]),
    ("udp", &["type", "code"]),
    ("sctp", &["type", "code"]),
    ("icmp", &["ports"]),
    ("icmpv6", &["ports"]),
    ("all", &["ports", "type", "code"]),
];

/// The rule's `protocol` with its `ports`, or its `type` and `code`.
fn protocol(reader: Reader<'_>, fields: &Fields<'_>, path: &str) -> Result<Protocol, PolicyError> {
    let node = fields.require(reader, path, "protocol")?;
    let field = field_path(path, "protocol");
    let written = reader.string(node, &field, "a protocol name")?;
    let Some(&(name, not_applicable)) = PROTOCOLS.iter().find(|(name, _)| *name == written) else {
        let problem = Problem::UnknownProtocol {
            name: written.to_owned(),
        };
        return Err(reader.invalid(node, &field, problem));
    };
    for &other in not_applicable {
        if let Some(node) = fields.get(other) {
            let problem = Problem::NotForProtocol {
                field: other,
                protocol: name,
            };
            return Err(reader.invalid(node, &field_path(path, other), problem));
        }
    }
    Ok(match name {
        "tcp" => Protocol::Tcp(ports(reader, fields, path)?),
        "udp" => Protocol::Udp(ports(reader, fields, path)?),
        "sctp" => Protocol::Sctp(ports(reader, fields, path)?),
        "icmp" => Protocol::Icmp(icmp(reader, fields, path)?),
        "icmpv6" => Protocol::Icmpv6(icmp(reader, fields, path)?),
        // Only "all" is left in the table.
        _ => Protocol::All,
    })
}

/// The rule's `ports`: `None` when absent, meaning every port.
fn ports(
    reader: Reader<'_>,
    fields: &Fields<'_>,
    path: &str,
) -> Result<Option<PortRange>, PolicyError> {
    let Some(node) = fields.get("ports") else {
        return Ok(None);
    };
    let field = field_path(path, "ports");
    let range = match &node.value {
        Value::Int(port) => port_from_int(*port).map(|port| PortRange {
            start: port,
            end: port,
        }),
        Value::Str(text) => parse_port_range(text),
        _ => return Err(reader.wrong_kind(node, &field, "a port or \"start-end\" range")),
    };
    range
        .map(Some)
        .map_err(|problem| reader.invalid(node, &field, problem))
}

/// A port written as a YAML integer.
fn port_from_int(value: i128) -> Result<u16, Problem> {
    u16::try_from(value)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| Problem::PortOutOfRange {
            value: value.to_string(),
        })
}

/// Parses `8081` or `9000-9010`.
fn parse_port_range(text: &str) -> Result<PortRange, Problem> {
    let (start, end) = text.split_once('-').unwrap_or((text, text));
    let start = parse_port(start.trim(), text)?;
    let end = parse_port(end.trim(), text)?;
    if start > end {
        return Err(Problem::ReversedRange { start, end });
    }
    Ok(PortRange { start, end })
}

/// Parses one port of `text`.
fn parse_port(digits: &str, text: &str) -> Result<u16, Problem> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(Problem::BadPort {
            text: text.to_owned(),
        });
    }
    let out_of_range = || Problem::PortOutOfRange {
        value: digits.to_owned(),
    };
    let value: u64 = digits.parse().map_err(|_| out_of_range())?;
    u16::try_from(value)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(out_of_range)
}

/// The rule's ICMP `type` and `code`.
fn icmp(reader: Reader<'_>, fields: &Fields<'_>, path: &str) -> Result<IcmpMatch, PolicyError> {
    let icmp_type = icmp_number(reader, fields, path, "type")?;
    let code = icmp_number(reader, fields, path, "code")?;
    if icmp_type.is_none()
        && let Some(node) = code.and(fields.get("code"))
    {
        let field = field_path(path, "code");
        return Err(reader.invalid(node, &field, Problem::CodeWithoutType));
    }
    Ok(IcmpMatch { icmp_type, code })
}

/// The rule's ICMP field `name` (`type` or `code`), a number in 0-255.
fn icmp_number(
    reader: Reader<'_>,
    fields: &Fields<'_>,
    path: &str,
    name: &'static str,
) -> Result<Option<u8>, PolicyError> {
    let Some(node) = fields.get(name) else {
        return Ok(None);
    };
    let field = field_path(path, name);
    let (number, text) = match &node.value {
        Value::Int(value) => (u8::try_from(*value).ok(), value.to_string()),
        Value::Str(text) => {
            let digits = text.bytes().all(|byte| byte.is_ascii_digit());
            (text.parse().ok().filter(|_| digits), text.clone())
        }
        _ => return Err(reader.wrong_kind(node, &field, "a number in 0-255")),
    };
    let problem = Problem::IcmpOutOfRange {
        field: name,
        value: text,
    };
    number
        .map(Some)
        .ok_or_else(|| reader.invalid(node, &field, problem))
}
