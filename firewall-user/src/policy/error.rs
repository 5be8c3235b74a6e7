//! Errors of loading a policy file.
//!
//! Every error but a read failure points at a place in the file: its line and column, and
//! for a file that is valid YAML, the path of the offending field (`policies[2].ports`).

use std::fmt;

use ipnet::IpNet;

/// A place in a policy file, both numbers 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line number.
    pub line: usize,
    /// Column number, in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a policy file could not be loaded. Nothing of a file that fails is kept.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read. The cause is part of the message rather than a
    /// [`source`](std::error::Error::source), so it is printed once however the error is shown.
    #[error("{origin}: cannot read: {error}")]
    Io {
        /// Where the policy came from, usually its path.
        origin: String,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The text is not well-formed YAML, holds more than one document, or repeats a key.
    #[error("{origin}:{at}: invalid YAML: {message}")]
    Syntax {
        /// Where the policy came from, usually its path.
        origin: String,
        /// Where the parser gave up.
        at: Position,
        /// The parser's explanation.
        message: String,
    },
    /// The YAML is well-formed but a field does not make a valid policy.
    #[error("{origin}:{at}: {field}: {problem}")]
    Invalid {
        /// Where the policy came from, usually its path.
        origin: String,
        /// Where the offending node starts.
        at: Position,
        /// Path of the offending field, such as `policies[2].ports` or `apps.web.ips[1]`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

impl PolicyError {
    /// The place in the file the error points at; `None` for a read failure.
    pub fn position(&self) -> Option<Position> {
        match self {
            PolicyError::Io { .. } => None,
            PolicyError::Syntax { at, .. } | PolicyError::Invalid { at, .. } => Some(*at),
        }
    }
}

/// What is wrong with one field of a policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A field the format does not define; usually a typo.
    #[error("unknown field `{field}`; expected one of: {}", .expected.join(", "))]
    UnknownField {
        /// The field as written.
        field: String,
        /// The fields allowed at that place.
        expected: &'static [&'static str],
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// The absent field.
        field: &'static str,
    },
    /// A node of the wrong YAML kind, such as a list where a mapping belongs.
    #[error("expected {expected}, found {found}")]
    WrongKind {
        /// What the format wants there.
        expected: &'static str,
        /// What the file has.
        found: &'static str,
    },
    /// An app or network named with the empty string.
    #[error("a name must not be empty")]
    EmptyName,
    /// An app or network named `world`.
    #[error("`world` is reserved for addresses outside every app and network")]
    ReservedName,
    /// A name declared twice, such as a network with the name of an app.
    #[error("`{name}` already names {owner} (line {first_line})")]
    NameClash {
        /// The shared name.
        name: String,
        /// What it first named: "an app" or "a network".
        owner: &'static str,
        /// Line of the first declaration.
        first_line: usize,
    },
    /// Text that is not an IPv4 or IPv6 address.
    #[error("`{text}` is not an IPv4 or IPv6 address")]
    BadAddress {
        /// The text as written.
        text: String,
    },
    /// Text that is not an address prefix.
    #[error("`{text}` is not a CIDR; write an address and a prefix length, such as 10.0.0.0/8")]
    BadCidr {
        /// The text as written.
        text: String,
    },
    /// A prefix whose bits past the prefix length are not all zero.
    #[error("{written} has host bits set; did you mean {network}?")]
    HostBitsSet {
        /// The prefix as written.
        written: IpNet,
        /// The same prefix with the host bits cleared.
        network: IpNet,
    },
    /// An address or prefix that already belongs to another app or network.
    #[error("{} already belongs to {owner} (line {first_line})", show_prefix(.prefix))]
    AddressTaken {
        /// The contested address or prefix.
        prefix: IpNet,
        /// Its first owner, such as "app `frontend`".
        owner: String,
        /// Line where the first owner lists it.
        first_line: usize,
    },
    /// An address or prefix listed twice by the same app or network.
    #[error("{} is listed twice (first as {first_field}, line {first_line})", show_prefix(.prefix))]
    Repeated {
        /// The repeated address or prefix.
        prefix: IpNet,
        /// Field path of the first listing.
        first_field: String,
        /// Line of the first listing.
        first_line: usize,
    },
    /// A source or destination that names no app or network.
    #[error("no app or network is named `{name}` (nor is it `world`)")]
    UnknownName {
        /// The name as written.
        name: String,
    },
    /// A protocol the format does not know.
    #[error("unknown protocol `{name}`; expected one of: tcp, udp, sctp, icmp, icmpv6, all")]
    UnknownProtocol {
        /// The protocol as written.
        name: String,
    },
    /// A field that does not apply to the rule's protocol, such as `ports` with `icmp`.
    #[error("`{field}` does not apply to protocol {protocol}{}", protocol_hint(.protocol))]
    NotForProtocol {
        /// The field.
        field: &'static str,
        /// The rule's protocol.
        protocol: &'static str,
    },
    /// A `ports` value that is neither a number nor a `start-end` range.
    #[error("`{text}` is not a port or a port range; write a number or \"start-end\"")]
    BadPort {
        /// The value as written.
        text: String,
    },
    /// A port outside 1-65535.
    #[error("port {value} is out of range 1-65535")]
    PortOutOfRange {
        /// The port as written.
        value: String,
    },
    /// A port range whose start is above its end.
    #[error("range {start}-{end} is reversed; did you mean {end}-{start}?")]
    ReversedRange {
        /// The first number.
        start: u16,
        /// The second number.
        end: u16,
    },
    /// An ICMP `type` or `code` that is not a number in 0-255.
    #[error("`{value}` is not an ICMP {field}; expected a number in 0-255")]
    IcmpOutOfRange {
        /// `type` or `code`.
        field: &'static str,
        /// The value as written.
        value: String,
    },
    /// An ICMP `code` without a `type`.
    #[error("an ICMP code needs a `type` beside it")]
    CodeWithoutType,
    /// More rules than the rule counters have slots for.
    #[error("too many rules: at most {max} fit the rule counters")]
    TooManyRules {
        /// The largest number of rules a policy may hold.
        max: u32,
    },
}

/// What to write instead of a field that does not apply to `protocol`.
fn protocol_hint(protocol: &str) -> &'static str {
    match protocol {
        "icmp" | "icmpv6" => "; match ICMP messages with `type` and `code`",
        "all" => "; `all` matches every protocol, port and message",
        _ => "; only icmp and icmpv6 take `type` and `code`",
    }
}

/// A host prefix (/32, /128) as a bare address, any other prefix as `address/length`.
fn show_prefix(prefix: &IpNet) -> String {
    if prefix.prefix_len() == prefix.max_prefix_len() {
        prefix.addr().to_string()
    } else {
        prefix.to_string()
    }
}
