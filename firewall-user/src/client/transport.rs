//! One HTTP/1.1 request on the daemon's Unix socket.

use std::{io, path::Path, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response,
    body::{Bytes, Incoming},
    header::{CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use tokio::{net::UnixStream, task::JoinHandle};

use super::ClientError;

/// How long a whole request may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The daemon's answer: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Body, JSON for every endpoint.
    pub body: Bytes,
}

/// Sends `method path_and_query` with an optional JSON body to the daemon at `socket` and
/// returns its answer, whatever the status. One connection per request; 30 s at most.
///
/// # Errors
/// [`ClientError::Unreachable`] or [`ClientError::Forbidden`] if the socket cannot be
/// opened, [`ClientError::HungUp`] if the daemon closes without answering,
/// [`ClientError::Timeout`] or [`ClientError::Transport`] otherwise.
pub async fn request(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<Reply, ClientError> {
    let exchange = exchange(socket, method, path_and_query, body);
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(reply) => reply,
        Err(_) => Err(ClientError::Timeout {
            path: socket.to_path_buf(),
            seconds: REQUEST_TIMEOUT.as_secs(),
        }),
    }
}

async fn exchange(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<Reply, ClientError> {
    let (response, driver) = send(socket, method, path_and_query, body).await?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| transport_error(socket, e))?
        .to_bytes();
    driver.abort();
    Ok(Reply { status, body })
}

/// Connects, sends the request and returns the response head with its body to read, and
/// the task driving the connection (to abort once the body is read).
async fn send(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<(Response<Incoming>, JoinHandle<Result<(), hyper::Error>>), ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| connect_error(socket, e))?;
    let transport = |e: hyper::Error| transport_error(socket, e);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(transport)?;
    let driver = tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(HOST, "localhost");
    if body.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::Input(format!("building the request: {e}")))?;
    let response = sender.send_request(request).await.map_err(transport)?;
    Ok((response, driver))
}

/// Sends a request whose answer is a stream of lines (NDJSON) and hands each line, without
/// its newline, to `on_line` as it arrives, until the daemon ends the stream. No overall
/// time limit: the daemon ends streams itself. A refusal (status not 2xx) is read whole
/// and returned as [`ClientError::Refused`].
///
/// # Errors
/// As [`request`], and whatever `on_line` returns.
pub async fn stream(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    on_line: &mut dyn FnMut(&[u8]) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let (response, driver) = send(socket, method, path_and_query, body).await?;
    let transport = |e: hyper::Error| transport_error(socket, e);
    let status = response.status().as_u16();
    let mut body = response.into_body();
    if !(200..300).contains(&status) {
        let bytes = body.collect().await.map_err(transport)?.to_bytes();
        driver.abort();
        return Err(super::commands::refusal(&Reply {
            status,
            body: bytes,
        }));
    }
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(transport)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.len() > 1 {
                on_line(&line[..line.len() - 1])?;
            }
        }
    }
    driver.abort();
    Ok(())
}

fn connect_error(socket: &Path, error: io::Error) -> ClientError {
    let path = socket.to_path_buf();
    if error.kind() == io::ErrorKind::PermissionDenied {
        ClientError::Forbidden { path }
    } else {
        ClientError::Unreachable {
            path,
            source: error,
        }
    }
}

fn transport_error(socket: &Path, error: hyper::Error) -> ClientError {
    let path = socket.to_path_buf();
    if error.is_incomplete_message() || error.is_closed() || error.is_canceled() || hung_up(&error)
    {
        ClientError::HungUp { path }
    } else {
        ClientError::Transport {
            path,
            message: error.to_string(),
        }
    }
}

/// Whether an I/O error under `error` says the peer went away (it closed before reading).
fn hung_up(error: &hyper::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            );
        }
        cause = inner.source();
    }
    false
}
