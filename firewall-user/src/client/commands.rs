//! What each client command asks the daemon, and how its answer is shown.

use std::{io::Read, path::Path};

use hyper::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    ClientCommand, ClientError, PortRange, Protocol,
    table::{render, render_fields, scalar},
    transport::{Reply, request},
};
use crate::api::wire::{
    AppBody, AppList, AppliedView, ErrorBody, NetworkBody, NetworkList, PoliciesRequest,
    PolicyList, WireDestination, WirePolicy, WirePorts, WireSource,
};

const POLICIES: &str = "/networking/v1/external/policies";

/// Runs `command` and returns what to print.
pub(super) async fn run(socket: &Path, command: ClientCommand) -> Result<String, ClientError> {
    use ClientCommand as C;
    match command {
        C::AddNetworkPolicy {
            source,
            destination,
            protocol,
            port,
            json,
        } => {
            let body = policy_body(&source, &destination, protocol, port)?;
            let reply = call(socket, Method::POST, POLICIES, Some(body)).await?;
            let what = format!("{source} to {destination}, {} {port}", protocol.as_str());
            answer(&reply, json, || {
                format!("Added network policy from {what}.\n")
            })
        }
        C::RemoveNetworkPolicy {
            source,
            destination,
            protocol,
            port,
            json,
        } => {
            let body = policy_body(&source, &destination, protocol, port)?;
            let path = format!("{POLICIES}/delete");
            let reply = call(socket, Method::POST, &path, Some(body)).await?;
            let what = format!("{source} to {destination}, {} {port}", protocol.as_str());
            answer(&reply, json, || {
                format!("Removed network policy from {what}.\n")
            })
        }
        C::NetworkPolicies { source, json } => {
            let path = match &source {
                Some(app) => format!("{POLICIES}?source_id={}", encode(app)),
                None => POLICIES.to_owned(),
            };
            let reply = call(socket, Method::GET, &path, None).await?;
            if json {
                return pretty(&reply);
            }
            Ok(policies_table(&decode::<PolicyList>(&reply)?))
        }
        C::Apps { json } => {
            let reply = call(socket, Method::GET, "/v1/apps", None).await?;
            if json {
                return pretty(&reply);
            }
            Ok(apps_table(&decode::<AppList>(&reply)?))
        }
        C::RegisterApp {
            name,
            org,
            space,
            ips,
            json,
        } => {
            let body = to_json(&AppBody { org, space, ips })?;
            let path = format!("/v1/apps/{}", encode(&name));
            let reply = call(socket, Method::PUT, &path, Some(body)).await?;
            applied(&reply, json, &format!("Registered app {name}"))
        }
        C::UnregisterApp { name, json } => {
            let path = format!("/v1/apps/{}", encode(&name));
            let reply = call(socket, Method::DELETE, &path, None).await?;
            applied(&reply, json, &format!("Unregistered app {name}"))
        }
        C::Networks { json } => {
            let reply = call(socket, Method::GET, "/v1/networks", None).await?;
            if json {
                return pretty(&reply);
            }
            Ok(networks_table(&decode::<NetworkList>(&reply)?))
        }
        C::AddNetwork { name, cidrs, json } => {
            let cidrs = cidrs.iter().map(ToString::to_string).collect();
            let body = to_json(&NetworkBody { cidrs })?;
            let path = format!("/v1/networks/{}", encode(&name));
            let reply = call(socket, Method::PUT, &path, Some(body)).await?;
            applied(&reply, json, &format!("Defined network {name}"))
        }
        C::RemoveNetwork { name, json } => {
            let path = format!("/v1/networks/{}", encode(&name));
            let reply = call(socket, Method::DELETE, &path, None).await?;
            applied(&reply, json, &format!("Removed network {name}"))
        }
        C::EgressRules { app, json } => {
            let path = format!("/v1/apps/{}/egress", encode(&app));
            let reply = call(socket, Method::GET, &path, None).await?;
            if json {
                return pretty(&reply);
            }
            Ok(egress_table(&app, &decode::<Vec<Value>>(&reply)?))
        }
        C::SetEgressRules { app, file, json } => {
            let body = read_rules(&file)?;
            let path = format!("/v1/apps/{}/egress", encode(&app));
            let reply = call(socket, Method::PUT, &path, Some(body)).await?;
            applied(&reply, json, &format!("Set the egress rules of app {app}"))
        }
        C::Traceflow(args) => super::traceflow::synthetic(socket, args).await,
        C::Flows(args) => super::flows::list(socket, &args).await,
        C::Status { json } => {
            let reply = call(socket, Method::GET, "/v1/status", None).await?;
            if json {
                return pretty(&reply);
            }
            Ok(render_fields(&decode::<Value>(&reply)?))
        }
        C::Stats { json } => {
            let reply = call(socket, Method::GET, "/v1/stats", None).await?;
            if json {
                return pretty(&reply);
            }
            Ok(super::stats::stats_table(&decode(&reply)?))
        }
    }
}

/// Sends a request and turns a non-2xx answer into [`ClientError::Refused`].
pub(super) async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Reply, ClientError> {
    let reply = request(socket, method, path, body).await?;
    if (200..300).contains(&reply.status) {
        return Ok(reply);
    }
    Err(refusal(&reply))
}

/// The daemon's refusal in a non-2xx answer.
pub(super) fn refusal(reply: &Reply) -> ClientError {
    let message = match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(body) => body.error,
        Err(_) => format!(
            "status {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body).trim()
        ),
    };
    ClientError::Refused {
        status: reply.status,
        message,
    }
}

fn policy_body(
    source: &str,
    destination: &str,
    protocol: Protocol,
    port: PortRange,
) -> Result<Vec<u8>, ClientError> {
    let policy = WirePolicy {
        source: WireSource {
            id: source.to_owned(),
            tag: String::new(),
        },
        destination: WireDestination {
            id: destination.to_owned(),
            tag: String::new(),
            protocol: protocol.as_str().to_owned(),
            ports: WirePorts {
                start: port.start.into(),
                end: port.end.into(),
            },
        },
    };
    to_json(&PoliciesRequest {
        total_policies: None,
        policies: vec![policy],
    })
}

/// Reads a Cloud Foundry rule array from a file or (`-`) standard input.
fn read_rules(file: &Path) -> Result<Vec<u8>, ClientError> {
    let name = file.display();
    let mut text = Vec::new();
    let read = if file == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut text).map(|_| ())
    } else {
        std::fs::read(file).map(|bytes| text = bytes)
    };
    read.map_err(|e| ClientError::Input(format!("reading {name}: {e}")))?;
    match serde_json::from_slice::<Value>(&text) {
        Ok(Value::Array(_)) => Ok(text),
        Ok(_) => Err(ClientError::Input(format!(
            "{name}: expected a JSON array of Cloud Foundry security group rules"
        ))),
        Err(e) => Err(ClientError::Input(format!("{name}: not JSON: {e}"))),
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| ClientError::Input(format!("encoding the request: {e}")))
}

pub(super) fn decode<T: DeserializeOwned>(reply: &Reply) -> Result<T, ClientError> {
    serde_json::from_slice(&reply.body).map_err(|e| ClientError::Unexpected(e.to_string()))
}

/// The answer as indented JSON.
pub(super) fn pretty(reply: &Reply) -> Result<String, ClientError> {
    let value: Value = decode(reply)?;
    let text =
        serde_json::to_string_pretty(&value).map_err(|e| ClientError::Unexpected(e.to_string()))?;
    Ok(text + "\n")
}

fn answer(reply: &Reply, json: bool, text: impl FnOnce() -> String) -> Result<String, ClientError> {
    if json { pretty(reply) } else { Ok(text()) }
}

/// Output of a command answered with `{"revision", "added", "removed"}`.
fn applied(reply: &Reply, json: bool, done: &str) -> Result<String, ClientError> {
    if json {
        return pretty(reply);
    }
    let view: AppliedView = decode(reply)?;
    Ok(format!(
        "{done}: policy revision {}, {} datapath rules added, {} removed.\n",
        view.revision, view.added, view.removed
    ))
}

pub(super) fn policies_table(list: &PolicyList) -> String {
    if list.policies.is_empty() {
        return "No network policies.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .policies
        .iter()
        .map(|policy| {
            let WirePorts { start, end } = policy.destination.ports;
            let ports = if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            };
            vec![
                policy.source.id.clone(),
                policy.destination.id.clone(),
                policy.destination.protocol.clone(),
                ports,
            ]
        })
        .collect();
    render(&["Source", "Destination", "Protocol", "Ports"], &rows)
}

pub(super) fn apps_table(list: &AppList) -> String {
    if list.apps.is_empty() {
        return "No apps registered.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .apps
        .iter()
        .map(|app| {
            let ips: Vec<String> = app.ips.iter().map(ToString::to_string).collect();
            vec![
                app.name.clone(),
                app.org.clone().unwrap_or_default(),
                app.space.clone().unwrap_or_default(),
                ips.join(", "),
                app.identity.map(|id| id.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    render(&["Name", "Org", "Space", "IPs", "Identity"], &rows)
}

pub(super) fn networks_table(list: &NetworkList) -> String {
    if list.networks.is_empty() {
        return "No networks defined.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .networks
        .iter()
        .map(|network| {
            vec![
                network.name.clone(),
                network.cidrs.join(", "),
                network
                    .identity
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    render(&["Name", "CIDRs", "Identity"], &rows)
}

pub(super) fn egress_table(app: &str, rules: &[Value]) -> String {
    if rules.is_empty() {
        return format!("No egress rules for app {app}.\n");
    }
    let fields = [
        "protocol",
        "destination",
        "ports",
        "type",
        "code",
        "description",
    ];
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|rule| {
            fields
                .iter()
                .map(|field| rule.get(field).map(scalar).unwrap_or_default())
                .collect()
        })
        .collect();
    render(
        &[
            "Protocol",
            "Destination",
            "Ports",
            "Type",
            "Code",
            "Description",
        ],
        &rows,
    )
}

/// Percent-encodes a path segment or query value: everything but RFC 3986's unreserved set.
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
