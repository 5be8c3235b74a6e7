//! `GET /metrics` over plain TCP, inside the daemon's runtime.
//!
//! There is no authentication: the counters name apps and rules, so bind to a loopback or
//! otherwise private address (`--metrics-addr 127.0.0.1:9477`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::get,
};
use thiserror::Error;
use tokio::{
    net::TcpListener,
    sync::{Mutex, oneshot},
    task::JoinHandle,
};

use super::DaemonMetrics;
use crate::{
    daemon::controller::Controller,
    stats::{Freshness, StatsError, StatsReport},
};

/// How long a scrape in flight gets to finish once the daemon stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors of the metrics endpoint.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("binding the metrics address {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// Serving stopped with an error.
    #[error("serving metrics: {0}")]
    Serve(std::io::Error),
}

/// The metrics endpoint, serving until [`MetricsServer::stop`].
#[derive(Debug)]
pub struct MetricsServer {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), MetricsError>>,
}

#[derive(Clone)]
struct ScrapeState {
    controller: Arc<Mutex<Controller>>,
    metrics: Arc<DaemonMetrics>,
}

impl MetricsServer {
    /// Binds `address` and serves `GET /metrics` on it from a task of the current tokio
    /// runtime; every other path is a 404.
    ///
    /// # Errors
    /// [`MetricsError::Bind`] when the address is taken, not local, or not allowed.
    pub async fn start(
        address: SocketAddr,
        controller: Arc<Mutex<Controller>>,
        metrics: Arc<DaemonMetrics>,
    ) -> Result<MetricsServer, MetricsError> {
        let bind = |source| MetricsError::Bind { address, source };
        let listener = TcpListener::bind(address).await.map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        let app = Router::new()
            .route("/metrics", get(scrape))
            .with_state(ScrapeState {
                controller,
                metrics,
            });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .map_err(MetricsError::Serve)
        });
        Ok(MetricsServer {
            address,
            stop,
            task,
        })
    }

    /// The address served (with the port the kernel chose, when asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting, lets a scrape in flight finish for up to five seconds, and returns
    /// how serving ended.
    ///
    /// # Errors
    /// [`MetricsError::Serve`] when serving had failed.
    pub async fn stop(self) -> Result<(), MetricsError> {
        let _ = self.stop.send(());
        let mut task = self.task;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(MetricsError::Serve(std::io::Error::other(join))),
            Err(_) => {
                log::warn!("metrics: a scrape still running after {SHUTDOWN_GRACE:?}; dropped");
                task.abort();
                Ok(())
            }
        }
    }
}

/// `GET /metrics`: reads the counters on the blocking pool under the controller's lock (so a
/// scrape waits for a policy change in progress), the conntrack figures from the shared
/// cache, and renders outside the lock.
async fn scrape(State(state): State<ScrapeState>) -> Response {
    let controller = state.controller.clone().lock_owned().await;
    let metrics = state.metrics.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let cache = metrics.conntrack_cache();
        let report = StatsReport::gather(controller, cache, Freshness::Cached);
        report.map(|report| metrics.render(&report))
    })
    .await;
    let failure = |status: StatusCode, message: String| {
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            log::error!("metrics: {message}");
        }
        (
            status,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            message + "\n",
        )
            .into_response()
    };
    match rendered {
        Ok(Ok(Ok(text))) => ([(CONTENT_TYPE, super::CONTENT_TYPE)], text).into_response(),
        Ok(Ok(Err(e))) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics: {e}"),
        ),
        Ok(Err(e @ StatsError::NoDatapath)) => {
            failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(join) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the counters failed: {join}"),
        ),
    }
}
