//! cf-networking's external policy API: list, create and delete app-to-app policies.
//!
//! Parsing and validation reproduce the policy server's order and messages (the first bad
//! policy names the problem, prefixed `mapper: validate policies:`); the quota and the
//! all-or-nothing application are the controller's.

use std::collections::HashSet;

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection, rejection::QueryRejection},
};
use serde::Deserialize;

use super::{
    ApiState,
    reply::{Failure, apply, body_bytes},
    wire::{PoliciesRequest, PolicyList, WireDestination, WirePolicy, WirePorts, WireSource},
};
use crate::model::{CfProtocol, Change, NetworkPolicy};

/// Query of `GET /networking/v1/external/policies`, each a comma-separated list of app ids.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PolicyQuery {
    /// Policies whose source or destination is one of these.
    id: Option<String>,
    /// Policies whose source is one of these.
    source_id: Option<String>,
    /// Policies whose destination is one of these.
    dest_id: Option<String>,
}

/// Which policies a listing returns, with cf-networking's precedence: `id` wins; with both
/// `source_id` and `dest_id` a policy must match both.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PolicyFilter {
    /// Every policy.
    All,
    /// Source or destination in the set.
    Either(HashSet<String>),
    /// Source in the first set (if given) and destination in the second (if given).
    Ends(Option<HashSet<String>>, Option<HashSet<String>>),
}

impl PolicyFilter {
    pub(crate) fn from_query(query: &PolicyQuery) -> PolicyFilter {
        let ids = |list: &Option<String>| -> Option<HashSet<String>> {
            list.as_deref()
                .map(|list| list.split(',').map(str::to_owned).collect())
        };
        match (ids(&query.id), ids(&query.source_id), ids(&query.dest_id)) {
            (Some(either), _, _) => PolicyFilter::Either(either),
            (None, None, None) => PolicyFilter::All,
            (None, sources, destinations) => PolicyFilter::Ends(sources, destinations),
        }
    }

    pub(crate) fn matches(&self, policy: &NetworkPolicy) -> bool {
        match self {
            PolicyFilter::All => true,
            PolicyFilter::Either(ids) => {
                ids.contains(&policy.source) || ids.contains(&policy.destination)
            }
            PolicyFilter::Ends(sources, destinations) => {
                sources.as_ref().is_none_or(|s| s.contains(&policy.source))
                    && destinations
                        .as_ref()
                        .is_none_or(|d| d.contains(&policy.destination))
            }
        }
    }
}

/// `GET /networking/v1/external/policies[?id=a,b|source_id=a|dest_id=b]`.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock \
///     'http://localhost/networking/v1/external/policies?id=frontend'
/// {"total_policies":1,"policies":[{"source":{"id":"frontend"},
///   "destination":{"id":"backend","protocol":"tcp","ports":{"start":8080,"end":8090}}}]}
/// ```
pub(crate) async fn list(
    State(state): State<ApiState>,
    query: Result<Query<PolicyQuery>, QueryRejection>,
) -> Result<Json<PolicyList>, Failure> {
    let Query(query) = query.map_err(|e| Failure::bad_request(e.body_text()))?;
    let filter = PolicyFilter::from_query(&query);
    let controller = state.controller.lock().await;
    let policies: Vec<WirePolicy> = controller
        .model()
        .policies()
        .filter(|policy| filter.matches(policy))
        .map(to_wire)
        .collect();
    Ok(Json(PolicyList {
        total_policies: policies.len(),
        policies,
    }))
}

/// `POST /networking/v1/external/policies`: adds policies; ones already present are kept as
/// they are. All or nothing; 403 `policy quota exceeded` past the per-source quota.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock -X POST \
///     http://localhost/networking/v1/external/policies -d '{"policies":[
///     {"source":{"id":"frontend"},"destination":{"id":"backend","protocol":"tcp",
///      "ports":{"start":8080,"end":8090}}}]}'
/// {}
/// ```
pub(crate) async fn create(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, Failure> {
    let policies = parse_policies(&body_bytes(body)?)?;
    let count = policies.len();
    let applied = apply(&state, Change::AddPolicies(policies)).await?;
    log::info!(
        "api: {count} policies posted, revision {}",
        applied.revision
    );
    Ok(Json(serde_json::json!({})))
}

/// `POST /networking/v1/external/policies/delete`: removes policies; absent ones are ignored.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock -X POST \
///     http://localhost/networking/v1/external/policies/delete -d '{"policies":[
///     {"source":{"id":"frontend"},"destination":{"id":"backend","protocol":"tcp",
///      "ports":{"start":8080,"end":8090}}}]}'
/// {}
/// ```
pub(crate) async fn delete(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, Failure> {
    let policies = parse_policies(&body_bytes(body)?)?;
    let count = policies.len();
    let applied = apply(&state, Change::DeletePolicies(policies)).await?;
    log::info!(
        "api: {count} policies deleted, revision {}",
        applied.revision
    );
    Ok(Json(serde_json::json!({})))
}

/// Parses and validates a create or delete body.
///
/// # Errors
/// A 400 [`Failure`] naming the first problem, worded as cf-networking's policy server does.
pub(crate) fn parse_policies(body: &[u8]) -> Result<Vec<NetworkPolicy>, Failure> {
    let request: PoliciesRequest = serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("mapper: unmarshal json: {e}")))?;
    validate(&request.policies)
        .map_err(|e| Failure::bad_request(format!("mapper: validate policies: {e}")))
}

/// cf-networking's `PolicyValidator`, check for check, returning the model's policies.
///
/// # Errors
/// The first problem found, without the `mapper:` prefix.
pub(crate) fn validate(policies: &[WirePolicy]) -> Result<Vec<NetworkPolicy>, String> {
    if policies.is_empty() {
        return Err("missing policies".into());
    }
    policies.iter().map(validate_one).collect()
}

fn validate_one(policy: &WirePolicy) -> Result<NetworkPolicy, String> {
    let WirePolicy {
        source,
        destination,
    } = policy;
    if source.id.is_empty() {
        return Err("missing source id".into());
    }
    if destination.id.is_empty() {
        return Err("missing destination id".into());
    }
    let protocol = match destination.protocol.as_str() {
        "tcp" => CfProtocol::Tcp,
        "udp" => CfProtocol::Udp,
        _ => return Err("invalid destination protocol, specify either udp or tcp".into()),
    };
    let WirePorts { start, end } = destination.ports;
    if start > end {
        return Err(format!(
            "invalid port range {start}-{end}, start must be less than or equal to end"
        ));
    }
    if start < 0 {
        return Err(format!(
            "invalid start port {start}, must be in range 1-65535"
        ));
    }
    if start == 0 {
        return Err("missing start port".into());
    }
    if end > 65535 {
        return Err(format!("invalid end port {end}, must be in range 1-65535"));
    }
    if !source.tag.is_empty() || !destination.tag.is_empty() {
        return Err("tags may not be specified".into());
    }
    let port = |value: i64| u16::try_from(value).map_err(|_| format!("invalid port {value}"));
    Ok(NetworkPolicy {
        source: source.id.clone(),
        destination: destination.id.clone(),
        protocol,
        start_port: port(start)?,
        end_port: port(end)?,
    })
}

/// The wire form of a model policy, as listings show it.
pub(crate) fn to_wire(policy: &NetworkPolicy) -> WirePolicy {
    let protocol = match policy.protocol {
        CfProtocol::Tcp => "tcp",
        CfProtocol::Udp => "udp",
    };
    WirePolicy {
        source: WireSource {
            id: policy.source.clone(),
            tag: String::new(),
        },
        destination: WireDestination {
            id: policy.destination.clone(),
            tag: String::new(),
            protocol: protocol.into(),
            ports: WirePorts {
                start: policy.start_port.into(),
                end: policy.end_port.into(),
            },
        },
    }
}
