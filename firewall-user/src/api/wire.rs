//! JSON shapes of the API, shared by the daemon and `firewall` client commands.
//!
//! The policy types follow cf-networking's external API v1 field for field, so a payload that
//! works with `cf curl /networking/v1/external/policies` works here. Apps and networks are
//! this daemon's own resources; names travel in the URL path, never in the body.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Body of `POST /networking/v1/external/policies` and `.../policies/delete`.
///
/// Unknown fields are refused, unlike cf-networking which ignores them: a misspelt field in a
/// firewall request is more likely a mistake than an extension.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesRequest {
    /// Present in listings; accepted and ignored in requests so that a listing can be posted
    /// back as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_policies: Option<i64>,
    /// The policies to add or delete; an empty or missing list is refused.
    #[serde(default)]
    pub policies: Vec<WirePolicy>,
}

/// Answer of `GET /networking/v1/external/policies`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct PolicyList {
    /// Number of entries in `policies`.
    pub total_policies: usize,
    /// The policies that matched the query, in the daemon's order.
    pub policies: Vec<WirePolicy>,
}

/// One app-to-app policy as cf-networking spells it.
///
/// Every field defaults to its zero value when absent, as in Go, so validation can name the
/// missing field instead of failing the whole parse.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WirePolicy {
    /// The app that opens connections.
    #[serde(default)]
    pub source: WireSource,
    /// The app that accepts them, with protocol and ports.
    #[serde(default)]
    pub destination: WireDestination,
}

/// Source side of a [`WirePolicy`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WireSource {
    /// App name (a GUID in Cloud Foundry).
    #[serde(default)]
    pub id: String,
    /// cf-networking's internal tag; must be empty in the external API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

/// Destination side of a [`WirePolicy`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WireDestination {
    /// App name (a GUID in Cloud Foundry).
    #[serde(default)]
    pub id: String,
    /// cf-networking's internal tag; must be empty in the external API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: String,
    /// Destination port range, inclusive.
    #[serde(default)]
    pub ports: WirePorts,
}

/// An inclusive port range. Signed and wide so that out-of-range input reaches validation and
/// gets cf-networking's message rather than a parse error.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WirePorts {
    /// First port.
    #[serde(default)]
    pub start: i64,
    /// Last port.
    #[serde(default)]
    pub end: i64,
}

/// Body of `PUT /v1/apps/{name}`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppBody {
    /// Cloud Foundry org, informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Cloud Foundry space, informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// Addresses of the app's instances.
    pub ips: Vec<IpAddr>,
}

/// One app in `GET /v1/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AppView {
    /// App name.
    pub name: String,
    /// Cloud Foundry org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Cloud Foundry space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// Addresses of the app's instances.
    pub ips: Vec<IpAddr>,
    /// Numeric identity the datapath tags the app's packets with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<u32>,
}

/// Answer of `GET /v1/apps`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AppList {
    /// Registered apps, in the daemon's order.
    pub apps: Vec<AppView>,
}

/// Body of `PUT /v1/networks/{name}`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkBody {
    /// Address blocks, such as `198.19.10.0/24`.
    pub cidrs: Vec<String>,
}

/// One network in `GET /v1/networks`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct NetworkView {
    /// Network name.
    pub name: String,
    /// Address blocks.
    pub cidrs: Vec<String>,
    /// Numeric identity the datapath tags the network's packets with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<u32>,
}

/// Answer of `GET /v1/networks`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct NetworkList {
    /// Named networks, in the daemon's order.
    pub networks: Vec<NetworkView>,
}

/// Answer of the daemon's own changing endpoints (`PUT`/`DELETE` under `/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct AppliedView {
    /// Policy revision after the change.
    pub revision: u32,
    /// Datapath rules added.
    pub added: usize,
    /// Datapath rules removed.
    pub removed: usize,
}

/// Body of every error answer: `{"error": "what went wrong"}`, as in cf-networking.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorBody {
    /// Human-readable reason.
    pub error: String,
}
