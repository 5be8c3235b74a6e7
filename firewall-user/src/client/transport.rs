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
    match sender.send_request(request).await {
        Ok(response) => Ok((response, driver)),
        Err(e) => {
            driver.abort();
            Err(transport(e))
        }
    }
}

/// An answer whose body is read as it arrives, for streams that do not end by themselves.
pub(super) struct Streaming {
    /// HTTP status code.
    pub(super) status: u16,
    body: Incoming,
    socket: std::path::PathBuf,
    driver: JoinHandle<Result<(), hyper::Error>>,
    /// Bytes read past the last line handed out.
    pending: Vec<u8>,
}

impl Streaming {
    /// The next piece of the body; `None` when the daemon ends it.
    ///
    /// # Errors
    /// As [`request`], when the connection fails.
    pub(super) async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|e| transport_error(&self.socket, e))?;
            if let Ok(data) = frame.into_data() {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// The next line of the body without its newline, skipping empty lines; `None` when
    /// the daemon ends the body.
    ///
    /// # Errors
    /// As [`request`], when the connection fails.
    pub(super) async fn next_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            if let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.is_empty() {
                    continue;
                }
                return Ok(Some(line));
            }
            match self.next_chunk().await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }

    /// The whole remaining body, for an error answer.
    ///
    /// # Errors
    /// As [`request`], when the connection fails.
    pub(super) async fn rest(mut self) -> Result<Reply, ClientError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status: self.status,
            body: Bytes::from(body),
        })
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Sends `method path_and_query` (with an optional JSON body) to the daemon at `socket`
/// and returns as soon as the answer's head is in; the body is read with
/// [`Streaming::next_line`] or [`Streaming::next_chunk`], without a time limit. The head must
/// come within 30 s.
///
/// # Errors
/// As [`request`].
pub(super) async fn stream(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<Streaming, ClientError> {
    let open = async {
        let (response, driver) = send(socket, method, path_and_query, body).await?;
        Ok(Streaming {
            status: response.status().as_u16(),
            body: response.into_body(),
            socket: socket.to_path_buf(),
            driver,
            pending: Vec::new(),
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, open).await {
        Ok(streaming) => streaming,
        Err(_) => Err(ClientError::Timeout {
            path: socket.to_path_buf(),
            seconds: REQUEST_TIMEOUT.as_secs(),
        }),
    }
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
