//! Traceflow: why a packet gets its verdict, told step by step by the datapath itself.
//!
//! A synthetic trace builds a packet ([`probe`]) and runs it through the TC program that is
//! enforcing on this host, against the same maps as live traffic, marked so that it changes
//! no flow and no counter (see `firewall_common::trace`). The datapath reports what it found
//! (identities, rule, reason); [`report`] turns that into observation points in the order a
//! packet meets them (injected, source identity, destination identity, conntrack, policy,
//! verdict), naming apps, prefixes and rules, and, for a default deny, the nearest rules.
//!
//! A live trace ([`live`]) arms a filter in the datapath and reports the next real packets
//! that match at every hook they cross.

pub mod live;
pub mod probe;
pub mod render;
pub mod report;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a synthetic trace injects: a packet described by its fields, or a whole frame.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// App sending the packet; its first address of the right family is the source unless
    /// `source_ip` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_app: Option<String>,
    /// Source address; when `source_app` is given too it must be one of the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// Source port (TCP, UDP, SCTP); [`probe::DEFAULT_SOURCE_PORT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    /// App receiving the packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_app: Option<String>,
    /// Destination address: an app's, one in a network, or anywhere (the world).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ip: Option<IpAddr>,
    /// `tcp` (the default), `udp`, `sctp`, `icmp`, `icmpv6`, or another IP protocol's
    /// number (sent with no payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Destination port, required for TCP, UDP and SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// ICMP type; echo request when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code; 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// TCP flags as letters (`S`, `SA`, `A`, `F`, `R`, `P`, `U`); `S` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// A whole Ethernet frame in hex, traced as it is instead of a built packet (for
    /// packets a capture holds). Excludes every field above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
}

/// Why a trace request cannot be run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TraceError {
    /// The request contradicts itself or misses something; the message says what.
    #[error("{0}")]
    Invalid(String),
    /// A name the request uses is not registered.
    #[error("{kind} {name} is not registered")]
    Unknown {
        /// `app` or `app or network`.
        kind: &'static str,
        /// The name.
        name: String,
    },
}

impl TraceError {
    fn invalid(message: impl Into<String>) -> TraceError {
        TraceError::Invalid(message.into())
    }
}
