//! Error answers and the one way handlers change state.

use axum::{
    Json,
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use super::{ApiState, wire::ErrorBody};
use crate::{
    daemon::controller::{Applied, ControlError},
    model::Change,
};

/// A refused or failed request: an HTTP status and the `{"error": ...}` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// HTTP status of the answer.
    pub(crate) status: StatusCode,
    /// What went wrong, for the caller.
    pub(crate) message: String,
}

impl Failure {
    /// 400: the request itself is wrong.
    pub(crate) fn bad_request(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404: the named app or network does not exist.
    pub(crate) fn not_found(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 500: the daemon failed.
    pub(crate) fn internal(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<ControlError> for Failure {
    fn from(error: ControlError) -> Failure {
        let status = match &error {
            ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
            // cf-networking's exact words: clients match on them.
            ControlError::QuotaExceeded => {
                return Failure {
                    status: StatusCode::FORBIDDEN,
                    message: "policy quota exceeded".into(),
                };
            }
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Full(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure {
            status,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            log::error!("api: {}", self.message);
        } else {
            log::debug!("api: refused with {}: {}", self.status, self.message);
        }
        let body = ErrorBody {
            error: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// Applies a change under the controller's lock, timing it into the API's metrics (refused
/// changes included).
///
/// [`Controller::apply`](crate::daemon::controller::Controller::apply) is synchronous and
/// may take milliseconds (it rewrites kernel maps), so it runs on tokio's blocking pool with
/// the lock moved there: the runtime's worker stays free to accept and answer reads, which
/// queue on the lock. Changes are applied one at a time in the order they took the lock.
///
/// # Errors
/// The controller's refusal mapped to a status, or 500 if the blocking task panicked (the
/// lock is released then, and the controller keeps whatever state the panic left).
pub(crate) async fn apply(state: &ApiState, change: Change) -> Result<Applied, Failure> {
    let mut controller = state.controller.clone().lock_owned().await;
    let metrics = state.metrics.clone();
    let timed = move || {
        let started = std::time::Instant::now();
        let outcome = controller.apply(change);
        metrics.observe_apply(started.elapsed());
        outcome
    };
    match tokio::task::spawn_blocking(timed).await {
        Ok(outcome) => Ok(outcome?),
        Err(join) => Err(Failure::internal(format!(
            "applying the change failed: {join}"
        ))),
    }
}

/// The request body, or a JSON error for a body that could not be read (such as one over the
/// size limit).
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Failure> {
    body.map_err(|rejection| Failure {
        status: rejection.status(),
        message: format!("failed reading request body: {}", rejection.body_text()),
    })
}

/// Parses one of the daemon's own JSON bodies.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("invalid JSON body: {e}")))
}

/// Answer for a path no route knows.
pub(crate) async fn no_route(method: Method, uri: Uri) -> Failure {
    Failure::not_found(format!("no such endpoint: {method} {}", uri.path()))
}

/// Answer for a known path asked with the wrong method.
pub(crate) async fn wrong_method(method: Method, uri: Uri) -> Failure {
    Failure {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("method {method} is not allowed on {}", uri.path()),
    }
}
