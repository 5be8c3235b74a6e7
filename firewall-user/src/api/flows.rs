//! `GET /v1/flows`: the daemon's flow records, as a list or followed as they come.
//!
//! ```text
//! curl --unix-socket /run/firewall/firewall.sock \
//!     'http://localhost/v1/flows?verdict=drop&app=frontend&limit=20'
//! {"flows":[{"time":"2026-12-03T19:19:06.123456789Z","verdict":"drop",
//!   "reason":"denied-by-default",...}],"received":1042,"rate_limited":0,"lost":0}
//!
//! curl -N --unix-socket /run/firewall/firewall.sock \
//!     'http://localhost/v1/flows?follow=true&verdict=drop'
//! {"counts":{"received":1042,"rate_limited":0,"lost":0,"missed":0}}
//! {"time":"2026-12-03T19:19:07.000000001Z","verdict":"drop",...}
//! ```
//!
//! A list holds the newest `limit` selected records (100 unless told), oldest first. A
//! followed stream is NDJSON, chunked: a `{"counts":...}` line first, then the newest
//! `limit` held records (none unless told), then every selected record as it arrives, and
//! another counts line whenever the datapath's rate-limited or lost counts change or this
//! client fell so far behind that it missed records (`missed`). The stream ends when the
//! daemon stops.

use std::{convert::Infallible, sync::Arc};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Query, State, rejection::QueryRejection},
    http::header::CONTENT_TYPE,
    response::{IntoResponse, Response},
    routing::get,
};

use super::reply::{Failure, wrong_method};
use crate::flows::{
    FlowHub, FlowList, FlowQuery, FlowRecord, FlowRequest, FollowEvent, Follower, StreamLine,
    hub::DEFAULT_LIMIT,
};

/// The route of the flow records, to merge into the API's router.
pub fn router(hub: Arc<FlowHub>) -> Router {
    Router::new()
        .route("/v1/flows", get(flows).fallback(wrong_method))
        .with_state(hub)
}

/// `GET /v1/flows[?verdict=drop|allow][&app=NAME][&limit=N][&follow=true]`.
async fn flows(
    State(hub): State<Arc<FlowHub>>,
    query: Result<Query<FlowQuery>, QueryRejection>,
) -> Result<Response, Failure> {
    let Query(query) = query.map_err(|rejection| Failure::bad_request(rejection.body_text()))?;
    let FlowRequest {
        filter,
        limit,
        follow,
    } = query.validate().map_err(Failure::bad_request)?;
    if follow {
        let follower = hub.follow(filter, limit.unwrap_or(0));
        let lines = futures_util::stream::unfold(follower, next_line);
        return Ok((
            [(CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(lines),
        )
            .into_response());
    }
    let flows = hub.recent(&filter, limit.unwrap_or(DEFAULT_LIMIT));
    let list = FlowList {
        flows: flows
            .iter()
            .map(|record| &**record)
            .collect::<Vec<&FlowRecord>>(),
        counts: hub.counts(),
    };
    Ok(Json(list).into_response())
}

/// The next line of a followed stream, newline included.
async fn next_line(mut follower: Follower) -> Option<(Result<Bytes, Infallible>, Follower)> {
    let event = follower.next().await?;
    let line = match event {
        FollowEvent::Counts(counts) => serde_json::to_vec(&StreamLine::Counts { counts }),
        FollowEvent::Record(record) => serde_json::to_vec(&*record),
    };
    let mut line = line.unwrap_or_else(|e| {
        // Plain data always encodes; should it not, the client gets a line saying so.
        log::error!("api: a flow record could not be encoded: {e}");
        br#"{"error":"a flow record could not be encoded"}"#.to_vec()
    });
    line.push(b'\n');
    Some((Ok(Bytes::from(line)), follower))
}
