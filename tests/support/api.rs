//! A store-only daemon serving the API on a temporary socket, and ways to talk to it, for
//! the API and CLI tests.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use clap::Parser;
use firewall::{
    api::{self, ApiError},
    client::{self, ClientCommand, ClientError},
    daemon::controller::Controller,
};
use serde_json::{Value, json};
use tokio::sync::{Mutex, oneshot};

pub const POLICIES: &str = "/networking/v1/external/policies";
pub const WAIT: Duration = Duration::from_secs(10);

/// A daemon serving the API on a socket in a scratch directory, on its own thread and
/// runtime; stopped and cleaned up on drop.
pub struct Daemon {
    pub dir: PathBuf,
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ApiError>>>,
}

impl Daemon {
    pub fn start(name: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("firewall-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        // Traversable by the unprivileged child of `other_users_are_refused`.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let socket = dir.join("run/api.sock");
        let mut daemon = Daemon {
            dir,
            socket,
            stop: None,
            thread: None,
        };
        daemon.serve();
        daemon
    }

    /// Starts serving on `self.socket`, with the store under `self.dir/state`.
    pub fn serve(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let (socket, state) = (self.socket.clone(), self.dir.join("state"));
        self.thread = Some(std::thread::spawn(move || {
            let controller = Controller::for_tests(&state).expect("store-only controller");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(api::serve(
                &socket,
                Arc::new(Mutex::new(controller)),
                stopped,
            ))
        }));
        self.stop = Some(stop);
        let deadline = Instant::now() + WAIT;
        while UnixStream::connect(&self.socket).is_err() {
            let finished = self.thread.as_ref().is_some_and(JoinHandle::is_finished);
            assert!(
                !finished && Instant::now() < deadline,
                "daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops serving and returns what `serve` returned.
    pub fn shut_down(&mut self) -> Result<(), ApiError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().expect("serve thread panicked"),
            None => Ok(()),
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        http(&self.socket, method, path, body)
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    /// The listing for `query`, each policy as `source>destination protocol start-end`.
    pub fn policies(&self, query: &str) -> BTreeSet<String> {
        let (status, list) = self.call("GET", &format!("{POLICIES}{query}"), None);
        assert_eq!(status, 200, "{list}");
        let policies = list["policies"].as_array().expect("policies array");
        assert_eq!(list["total_policies"], policies.len(), "{list}");
        let short = |p: &Value| {
            let (to, ports) = (&p["destination"], &p["destination"]["ports"]);
            let (source, destination) = (&p["source"]["id"], &to["id"]);
            let protocol = to["protocol"].as_str().expect("protocol");
            format!(
                "{}>{} {protocol} {}-{}",
                scalar(source),
                scalar(destination),
                ports["start"],
                ports["end"]
            )
        };
        policies.iter().map(short).collect()
    }

    /// Runs a client command line (split on spaces) and returns what it printed.
    pub fn client(&self, line: &str) -> Result<String, ClientError> {
        let mut out = Vec::new();
        client::run(&self.socket, command(line), &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8 output"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.shut_down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 exchange written by hand, independent of the client under test.
pub fn http(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("answer");
    let answer = String::from_utf8(answer).expect("utf-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("header end");
    let status = head[9..12].parse().expect("status code");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (status, serde_json::from_str(body).expect("JSON body"))
}

pub fn scalar(value: &Value) -> &str {
    value.as_str().expect("string")
}

/// A policy as cf-networking's JSON has it.
pub fn policy(source: &str, destination: &str, protocol: &str, start: i64, end: i64) -> Value {
    json!({"source": {"id": source},
           "destination": {"id": destination, "protocol": protocol,
                           "ports": {"start": start, "end": end}}})
}

pub fn batch(policies: &[Value]) -> String {
    json!({ "policies": policies }).to_string()
}

pub fn one(policy: Value) -> String {
    batch(&[policy])
}

pub fn set<const N: usize>(policies: [&str; N]) -> BTreeSet<String> {
    policies.into_iter().map(str::to_owned).collect()
}

pub fn error(message: &str) -> Value {
    json!({ "error": message })
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: ClientCommand,
}

pub fn command(line: &str) -> ClientCommand {
    let args = std::iter::once("firewall").chain(line.split(' '));
    Cli::try_parse_from(args)
        .expect("client command parses")
        .command
}
