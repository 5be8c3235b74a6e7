//! The daemon's own endpoints under `/v1`: apps, networks, egress rules and status.
//!
//! Names travel in the path (percent-encoded); bodies are JSON with unknown fields refused.
//! Changing endpoints answer with the policy revision they produced and the datapath rules
//! they added and removed: `{"revision":4,"added":2,"removed":0}`.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection, rejection::PathRejection},
};
use ipnet::IpNet;

use super::{
    ApiState,
    reply::{Failure, apply, body_bytes, parse_json},
    wire::{AppBody, AppList, AppView, AppliedView, NetworkBody, NetworkList, NetworkView},
};
use crate::{
    daemon::controller::Applied,
    model::{AppRecord, Change, EgressRule, NetworkRecord},
};

type Name = Result<Path<String>, PathRejection>;
type Body = Result<Bytes, BytesRejection>;

/// `GET /v1/apps`: registered apps with their addresses and identities.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock http://localhost/v1/apps
/// {"apps":[{"name":"frontend","org":"bank","space":"prod","ips":["198.18.1.10"],
///   "identity":256}]}
/// ```
pub(crate) async fn list_apps(State(state): State<ApiState>) -> Json<AppList> {
    let controller = state.controller.lock().await;
    let model = controller.model();
    let apps = model
        .apps()
        .map(|app| AppView {
            name: app.name.clone(),
            org: app.org.clone(),
            space: app.space.clone(),
            ips: app.ips.clone(),
            identity: model.identity(&app.name),
        })
        .collect();
    Json(AppList { apps })
}

/// `PUT /v1/apps/{name}`: registers an app, or replaces its org, space and addresses.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock -X PUT http://localhost/v1/apps/frontend \
///     -d '{"org":"bank","space":"prod","ips":["198.18.1.10"]}'
/// {"revision":3,"added":0,"removed":0}
/// ```
pub(crate) async fn put_app(
    State(state): State<ApiState>,
    name: Name,
    body: Body,
) -> Result<Json<AppliedView>, Failure> {
    let name = path_name(name)?;
    let AppBody { org, space, ips } = parse_json(&body_bytes(body)?)?;
    let count = ips.len();
    let record = AppRecord {
        name: name.clone(),
        org,
        space,
        ips,
    };
    let applied = apply(&state, Change::RegisterApp(record)).await?;
    log::info!(
        "api: app {name} registered with {count} addresses, revision {}",
        applied.revision
    );
    Ok(Json(view(&applied)))
}

/// `DELETE /v1/apps/{name}`: forgets an app; 404 if it is not registered.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock -X DELETE http://localhost/v1/apps/frontend
/// {"revision":4,"added":0,"removed":2}
/// ```
pub(crate) async fn delete_app(
    State(state): State<ApiState>,
    name: Name,
) -> Result<Json<AppliedView>, Failure> {
    let name = path_name(name)?;
    let applied = apply(&state, Change::UnregisterApp(name.clone())).await?;
    log::info!(
        "api: app {name} unregistered, revision {}",
        applied.revision
    );
    Ok(Json(view(&applied)))
}

/// `GET /v1/networks`: named address blocks outside the platform.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock http://localhost/v1/networks
/// {"networks":[{"name":"legacy-db","cidrs":["198.19.10.0/24"],"identity":512}]}
/// ```
pub(crate) async fn list_networks(State(state): State<ApiState>) -> Json<NetworkList> {
    let controller = state.controller.lock().await;
    let model = controller.model();
    let networks = model
        .networks()
        .map(|network| NetworkView {
            name: network.name.clone(),
            cidrs: network.cidrs.iter().map(IpNet::to_string).collect(),
            identity: model.identity(&network.name),
        })
        .collect();
    Json(NetworkList { networks })
}

/// `PUT /v1/networks/{name}`: defines a network, or replaces its address blocks.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock -X PUT http://localhost/v1/networks/legacy-db \
///     -d '{"cidrs":["198.19.10.0/24"]}'
/// {"revision":5,"added":0,"removed":0}
/// ```
pub(crate) async fn put_network(
    State(state): State<ApiState>,
    name: Name,
    body: Body,
) -> Result<Json<AppliedView>, Failure> {
    let name = path_name(name)?;
    let NetworkBody { cidrs } = parse_json(&body_bytes(body)?)?;
    let cidrs = cidrs
        .iter()
        .map(|cidr| {
            cidr.parse::<IpNet>()
                .map_err(|e| Failure::bad_request(format!("invalid CIDR {cidr:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let record = NetworkRecord {
        name: name.clone(),
        cidrs,
    };
    let applied = apply(&state, Change::PutNetwork(record)).await?;
    log::info!("api: network {name} defined, revision {}", applied.revision);
    Ok(Json(view(&applied)))
}

/// `DELETE /v1/networks/{name}`: forgets a network; 404 if it is not defined.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock -X DELETE http://localhost/v1/networks/legacy-db
/// {"revision":6,"added":0,"removed":1}
/// ```
pub(crate) async fn delete_network(
    State(state): State<ApiState>,
    name: Name,
) -> Result<Json<AppliedView>, Failure> {
    let name = path_name(name)?;
    let applied = apply(&state, Change::DeleteNetwork(name.clone())).await?;
    log::info!("api: network {name} removed, revision {}", applied.revision);
    Ok(Json(view(&applied)))
}

/// `GET /v1/apps/{name}/egress`: the app's egress rules as a Cloud Foundry security group
/// rule array; 404 if the app is neither registered nor has rules.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock http://localhost/v1/apps/backend/egress
/// [{"protocol":"tcp","destination":"198.19.10.0/24","ports":"1521"}]
/// ```
pub(crate) async fn get_egress(
    State(state): State<ApiState>,
    name: Name,
) -> Result<Json<serde_json::Value>, Failure> {
    let name = path_name(name)?;
    let controller = state.controller.lock().await;
    let model = controller.model();
    let rules = model.egress(&name);
    if rules.is_empty() && !model.apps().any(|app| app.name == name) {
        return Err(Failure::not_found(format!("app {name} is not registered")));
    }
    let rules = serde_json::to_value(rules)
        .map_err(|e| Failure::internal(format!("encoding egress rules of {name}: {e}")))?;
    Ok(Json(rules))
}

/// `PUT /v1/apps/{name}/egress`: replaces the app's egress rules with a Cloud Foundry
/// security group rule array (`[]` removes them all).
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock -X PUT http://localhost/v1/apps/backend/egress \
///     -d '[{"protocol":"tcp","destination":"198.19.10.0/24","ports":"1521",
///           "description":"oracle"}]'
/// {"revision":7,"added":1,"removed":0}
/// ```
pub(crate) async fn put_egress(
    State(state): State<ApiState>,
    name: Name,
    body: Body,
) -> Result<Json<AppliedView>, Failure> {
    let app = path_name(name)?;
    let rules: Vec<EgressRule> = parse_json(&body_bytes(body)?)?;
    let count = rules.len();
    let change = Change::SetEgress {
        app: app.clone(),
        rules,
    };
    let applied = apply(&state, change).await?;
    log::info!(
        "api: {count} egress rules set for app {app}, revision {}",
        applied.revision
    );
    Ok(Json(view(&applied)))
}

/// `GET /v1/status`: the controller's status (interfaces attached, counts, policy revision).
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock http://localhost/v1/status
/// ```
pub(crate) async fn status(
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, Failure> {
    let status = state.controller.lock().await.status();
    serde_json::to_value(&status)
        .map(Json)
        .map_err(|e| Failure::internal(format!("encoding status: {e}")))
}

fn path_name(name: Name) -> Result<String, Failure> {
    name.map(|Path(name)| name)
        .map_err(|e| Failure::bad_request(e.body_text()))
}

fn view(applied: &Applied) -> AppliedView {
    AppliedView {
        revision: applied.revision,
        added: applied.added,
        removed: applied.removed,
    }
}
