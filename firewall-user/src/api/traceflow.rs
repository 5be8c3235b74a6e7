//! Traceflow endpoints: a synthetic packet through the enforcing datapath, and live traces
//! of real packets streamed as they are seen.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{State, rejection::BytesRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use firewall_common::{Hook, Reason, Verdict, identity::reserved};
use tokio::{sync::mpsc, time::Instant};

use super::{
    ApiState,
    reply::{Failure, body_bytes, parse_json},
};
use crate::{
    daemon::tracer::{LiveFilter, Subscription, Tracer, TracerError},
    events::host_name,
    flows::NameTable,
    policy::CompiledPolicy,
    traceflow::{
        TraceError, TraceRequest,
        live::{self, LiveMessage, LiveRequest, PacketGrouper},
        probe,
        report::{self, TraceReport},
    },
};

/// How long a synthetic trace waits for the datapath's observation; it is in the ring by
/// the time the test run returns, so this only bounds a stalled daemon.
const OBSERVATION_WAIT: Duration = Duration::from_secs(5);

/// After the last wanted packet's first observation, how long to wait for the hooks it
/// crosses next.
const LAST_PACKET_SETTLE: Duration = Duration::from_millis(200);

/// `TC_ACT_SHOT`, the TC program's drop.
const TC_ACT_SHOT: u32 = 2;

type RequestBody = Result<Bytes, BytesRejection>;

impl From<TraceError> for Failure {
    fn from(error: TraceError) -> Failure {
        match error {
            TraceError::Invalid(_) => Failure::bad_request(error.to_string()),
            TraceError::Unknown { .. } => Failure::not_found(error.to_string()),
        }
    }
}

impl From<TracerError> for Failure {
    fn from(error: TracerError) -> Failure {
        match error {
            TracerError::Busy(_) => Failure {
                status: StatusCode::CONFLICT,
                message: error.to_string(),
            },
            other => Failure::internal(other.to_string()),
        }
    }
}

fn tracer(state: &ApiState) -> Result<Arc<Tracer>, Failure> {
    state.tracer.clone().ok_or_else(|| Failure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "this daemon does not enforce, so it has no datapath to trace".into(),
    })
}

/// `POST /v1/traceflow`: builds the packet a [`TraceRequest`] describes (or takes its
/// frame), runs it through the enforcing TC ingress program as a synthetic trace, and
/// answers with the observation points ([`TraceReport`]).
///
/// ```text
/// curl --unix-socket /run/firewall/firewall.sock http://localhost/v1/traceflow \
///     -d '{"source_app":"frontend","destination_app":"backend","protocol":"tcp","port":8082}'
/// ```
pub(crate) async fn synthetic(
    State(state): State<ApiState>,
    body: RequestBody,
) -> Result<Json<TraceReport>, Failure> {
    let request: TraceRequest = parse_json(&body_bytes(body)?)?;
    let tracer = tracer(&state)?;
    let mut subscription = tracer.subscribe();
    let (policy, enforced, code) = {
        let mut controller = state.controller.lock().await;
        let policy = controller.model().to_policy();
        let frame = probe::build(&request, &policy)?;
        let enforcer = controller
            .enforcer()
            .ok_or_else(|| Failure::internal("the enforcer is gone"))?;
        // Only the ipcache is needed (for the prefixes that matched), not the policy entries.
        let held = enforcer.enforced();
        let enforced = CompiledPolicy {
            ipcache_v4: held.ipcache_v4.clone(),
            ipcache_v6: held.ipcache_v6.clone(),
            policy: Vec::new(),
            max_rule_id: held.max_rule_id,
        };
        let code = enforcer
            .datapath()
            .run_traced(Hook::TcIngress, &frame, tracer.token(), subscription.id)
            .map_err(|e| Failure::internal(format!("running the trace: {e}")))?;
        (policy, enforced, code)
    };
    let event = tokio::time::timeout(OBSERVATION_WAIT, subscription.next())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            Failure::internal(format!(
                "the datapath reported nothing for trace {} (observations lost: see stats)",
                subscription.id
            ))
        })?;
    let dropped = code == TC_ACT_SHOT;
    let reported_drop =
        Reason::from_code(event.reason).is_none_or(|r| r.verdict() == Verdict::Drop);
    if dropped != reported_drop {
        return Err(Failure::internal(format!(
            "trace {}: the program returned {code:#x} but reported reason {}",
            subscription.id, event.reason
        )));
    }
    Ok(Json(TraceReport {
        host: host_name(),
        trace_id: subscription.id,
        verdict: if dropped { "dropped" } else { "forwarded" }.into(),
        observations: report::observations(
            &event,
            Hook::TcIngress,
            &NameTable::new(Arc::new(policy)),
            &enforced,
        ),
    }))
}

/// `POST /v1/traceflow/live`: arms the datapath's filter for the packets a [`LiveRequest`]
/// describes and streams [`LiveMessage`]s as NDJSON: `armed`, one `observation` per packet
/// and hook, then `done` when the count is reached or the timeout passes. Closing the
/// connection ends the trace. One live trace runs at a time (409 otherwise).
pub(crate) async fn live(
    State(state): State<ApiState>,
    body: RequestBody,
) -> Result<Response, Failure> {
    let request: LiveRequest = parse_json(&body_bytes(body)?)?;
    let (protocol, port, count, timeout) = live::filter(&request)?;
    let tracer = tracer(&state)?;
    let policy = state.controller.lock().await.model().to_policy();
    let identity = |name: &str| {
        if name == "world" {
            return Ok(reserved::WORLD);
        }
        let app = policy
            .apps
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.identity);
        let network = || {
            policy
                .networks
                .iter()
                .find(|n| n.name == name)
                .map(|n| n.identity)
        };
        app.or_else(network).ok_or_else(|| TraceError::Unknown {
            kind: "app or network",
            name: name.to_owned(),
        })
    };
    let filter = LiveFilter {
        source: identity(&request.source_app)?,
        destination: identity(&request.destination_app)?,
        protocol,
        port,
        count,
    };
    let subscription = tracer.subscribe();
    tracer.arm(subscription.id, filter)?;
    let (lines, receiver) = mpsc::channel::<Bytes>(64);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    tokio::spawn(follow(tracer, subscription, policy, count, deadline, lines));
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        Some((Ok::<_, Infallible>(line), receiver))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Reports a live trace's observations until `count` packets were seen (and the last one
/// had time to cross its next hooks), the deadline passes, or the client goes away; then
/// disarms the filter.
async fn follow(
    tracer: Arc<Tracer>,
    mut subscription: Subscription,
    policy: crate::policy::Policy,
    count: u32,
    deadline: Instant,
    lines: mpsc::Sender<Bytes>,
) {
    let id = subscription.id;
    let send = |message: &LiveMessage| {
        let mut line = serde_json::to_vec(message).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    };
    let armed = LiveMessage::Armed {
        host: host_name(),
        trace_id: id,
    };
    let mut grouper = PacketGrouper::default();
    let mut settle: Option<Instant> = None;
    let mut ended = "timeout";
    if lines.send(send(&armed)).await.is_ok() {
        loop {
            let until = settle.map_or(deadline, |s| s.min(deadline));
            tokio::select! {
                event = subscription.next() => {
                    let Some(event) = event else { break };
                    let packet = grouper.place(&event);
                    if packet > count {
                        ended = "count";
                        break;
                    }
                    let observation = live::observation(&event, packet, &policy);
                    if lines.send(send(&LiveMessage::Observation(Box::new(observation)))).await.is_err() {
                        break;
                    }
                    if packet == count && settle.is_none() {
                        settle = Some(Instant::now() + LAST_PACKET_SETTLE);
                    }
                }
                _ = tokio::time::sleep_until(until) => {
                    if settle.is_some() {
                        ended = "count";
                    }
                    break;
                }
                _ = lines.closed() => break,
            }
        }
    }
    tracer.disarm(id);
    let packets = grouper.packets().min(count);
    let done = LiveMessage::Done {
        packets,
        ended: ended.into(),
    };
    let _ = lines.send(send(&done)).await;
}
