//! `GET /v1/stats`: the datapath's counters (see [`crate::stats`]).

use axum::{Json, extract::State, http::StatusCode};

use super::{ApiState, reply::Failure};
use crate::stats::{Freshness, StatsError, StatsReport};

/// `GET /v1/stats`: packets and bytes per reason and per rule, the identity pairs with
/// drops, conntrack, map fill levels and lost records. The conntrack map is counted afresh
/// for every request (a walk of the map, outside the controller's lock); 503 when the
/// daemon has no datapath.
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock http://localhost/v1/stats
/// {"reasons":[{"reason":"policy","code":1,"verdict":"allow","packets":12,"bytes":1300},...],
///  "rules":[{"id":1,"rule":"frontend -> backend tcp 8081","packets":12,...}],
///  "dropped_pairs":[...],"conntrack":{...},"maps":[...],"losses":{...}}
/// ```
pub(crate) async fn report(State(state): State<ApiState>) -> Result<Json<StatsReport>, Failure> {
    let controller = state.controller.clone().lock_owned().await;
    let metrics = state.metrics.clone();
    // Counting conntrack entries takes a while on a full map: off the runtime's workers.
    let gathered = tokio::task::spawn_blocking(move || {
        StatsReport::gather(controller, metrics.conntrack_cache(), Freshness::Now)
    })
    .await
    .map_err(|join| Failure::internal(format!("reading the counters failed: {join}")))?;
    Ok(Json(gathered?))
}

impl From<StatsError> for Failure {
    fn from(error: StatsError) -> Failure {
        let status = match error {
            StatsError::NoDatapath => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure {
            status,
            message: error.to_string(),
        }
    }
}
