//! The daemon's HTTP/JSON API on a Unix socket.
//!
//! Two families of endpoints share one router:
//!
//! - cf-networking's external policy API (`/networking/v1/external/policies`), answering as
//!   Cloud Foundry's policy server does, so its tooling and payloads work unchanged;
//! - the daemon's own resources under `/v1`: apps, networks, per-app egress rules, status,
//!   the datapath's counters (`/v1/stats`), flow records (`/v1/flows`, see [`flows`]) and
//!   traces (`/v1/traceflow`).
//!
//! Every error is `{"error": "..."}` with a status from the controller's verdict: 400 invalid,
//! 403 quota, 404 unknown name or route, 405 wrong method, 409 a datapath map or the rule id
//! space is full, 500 the daemon failed, 503 the daemon has no datapath to count with.
//!
//! Access control is the socket itself: mode 0600, and every connection's peer credentials
//! are checked, so only root (and the daemon's own user) get an answer. There is no other
//! authentication.

use std::{future::Future, path::Path, path::PathBuf, pin::pin, sync::Arc, time::Duration};

use axum::{
    Router,
    routing::{get, post, put},
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use thiserror::Error;
use tokio::{sync::Mutex, task::JoinSet};

use crate::{
    daemon::{controller::Controller, tracer::Tracer},
    metrics::DaemonMetrics,
};

pub mod flows;
mod listener;
mod policies;
mod reply;
mod resources;
mod stats;
mod traceflow;
pub mod wire;

/// Default path of the API socket.
pub const DEFAULT_SOCKET: &str = "/run/firewall/firewall.sock";

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish after shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors of setting up the API socket.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The socket's directory could not be created.
    #[error("creating socket directory {}: {source}", .path.display())]
    SocketDir {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Something other than a socket sits at the socket path.
    #[error("{} exists and is not a socket; remove it or choose another --socket", .0.display())]
    NotASocket(PathBuf),
    /// Another process answers on the socket path.
    #[error("another firewall daemon is serving {}", .0.display())]
    InUse(PathBuf),
    /// A socket file left by a dead daemon could not be removed.
    #[error("removing stale socket {}: {source}", .path.display())]
    RemoveStale {
        /// The socket file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Binding the socket failed.
    #[error("binding {}: {source}", .path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Restricting the socket to its owner failed.
    #[error("setting mode 0600 on {}: {source}", .path.display())]
    Permissions {
        /// The socket path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// What every handler shares: the controller, behind a lock that serialises changes, and
/// the daemon's services beside it: the metrics that time those changes, and traces.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) controller: Arc<Mutex<Controller>>,
    pub(crate) metrics: Arc<DaemonMetrics>,
    pub(crate) tracer: Option<Arc<Tracer>>,
}

impl From<Arc<Mutex<Controller>>> for ApiState {
    fn from(controller: Arc<Mutex<Controller>>) -> ApiState {
        ApiState::new(controller)
    }
}

impl ApiState {
    /// State for a controller alone: metrics of its own, no traces.
    pub fn new(controller: Arc<Mutex<Controller>>) -> ApiState {
        ApiState {
            controller,
            metrics: Arc::new(DaemonMetrics::new()),
            tracer: None,
        }
    }

    /// Times policy changes into `metrics` (which the metrics endpoint shares).
    #[must_use]
    pub fn with_metrics(self, metrics: Arc<DaemonMetrics>) -> ApiState {
        ApiState { metrics, ..self }
    }

    /// Adds the daemon's tracer, which the traceflow endpoints need.
    #[must_use]
    pub fn with_tracer(self, tracer: Arc<Tracer>) -> ApiState {
        ApiState {
            tracer: Some(tracer),
            ..self
        }
    }
}

/// The API's routes, ready to serve on any connection.
///
/// Reads take the controller's lock briefly on the runtime; changes take it and run
/// `Controller::apply` on tokio's blocking pool (see `reply::apply`), so any runtime flavour
/// works.
pub fn router(state: impl Into<ApiState>) -> Router {
    let cf = "/networking/v1/external/policies";
    Router::new()
        .route(cf, get(policies::list).post(policies::create))
        .route(&format!("{cf}/delete"), post(policies::delete))
        .route("/v1/apps", get(resources::list_apps))
        .route(
            "/v1/apps/{name}",
            put(resources::put_app).delete(resources::delete_app),
        )
        .route(
            "/v1/apps/{name}/egress",
            get(resources::get_egress).put(resources::put_egress),
        )
        .route("/v1/networks", get(resources::list_networks))
        .route(
            "/v1/networks/{name}",
            put(resources::put_network).delete(resources::delete_network),
        )
        .route("/v1/status", get(resources::status))
        .route("/v1/stats", get(stats::report))
        .route("/v1/traceflow", post(traceflow::synthetic))
        .route("/v1/traceflow/live", post(traceflow::live))
        .fallback(reply::no_route)
        .method_not_allowed_fallback(reply::wrong_method)
        .with_state(state.into())
}

/// Serves the API on the Unix socket `socket` until `shutdown` completes.
///
/// Binds the socket (see [`ApiError`] for what can stop that), then serves HTTP/1.1 on every
/// connection whose peer is root or the daemon's own user; others are closed unanswered and
/// logged at warn with their uid. On shutdown it stops accepting, removes the socket file,
/// lets requests in flight finish for up to five seconds and drops what remains.
///
/// Runs on any tokio runtime with I/O and time enabled; `Controller::apply` runs on the
/// blocking pool.
///
/// # Errors
/// [`ApiError`] if the socket cannot be set up; serving itself only logs.
pub async fn serve(
    socket: &Path,
    state: impl Into<ApiState>,
    shutdown: impl Future,
) -> Result<(), ApiError> {
    serve_router(socket, router(state), shutdown).await
}

/// As [`serve`], with any router: [`router`] merged with others, such as [`flows::router`].
///
/// # Errors
/// [`ApiError`] if the socket cannot be set up.
pub async fn serve_router(
    socket: &Path,
    app: Router,
    shutdown: impl Future,
) -> Result<(), ApiError> {
    let listener = listener::bind(socket)?;
    log::debug!("api: listening on {}", socket.display());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors or memory: back off rather than spin.
                        log::warn!("api: accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Err(uid) = listener::peer_allowed(&stream) {
                    match uid {
                        Some(uid) => log::warn!(
                            "api: refused a connection from uid {uid}: only root and uid {} \
                             may use {}",
                            listener::effective_uid(),
                            socket.display()
                        ),
                        None => log::warn!("api: refused a connection with unreadable credentials"),
                    }
                    continue;
                }
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(e) = connection.await {
                        log::debug!("api: connection ended with an error: {e}");
                    }
                });
            }
        }
    }
    drop(listener);
    if let Err(e) = std::fs::remove_file(socket) {
        log::warn!("api: removing {}: {e}", socket.display());
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!(
            "api: {} connections still open after {SHUTDOWN_GRACE:?}; closing them",
            connections.len()
        );
    }
    connections.abort_all();
    Ok(())
}

#[cfg(test)]
mod tests;
