//! The daemon's API on its Unix socket, against a store-only controller: cf-networking's
//! external policy API (cases ported from its policy server's integration tests), the
//! daemon's own `/v1` resources, the socket's access control, and the client commands.
//!
//! Runs as any user; the check that other uids are refused forks a child that drops to
//! uid 65534, so it needs root and is skipped, with a note, otherwise. Every wait is bounded.

use std::{
    collections::BTreeSet,
    ffi::CString,
    io::{Read, Write},
    os::unix::{ffi::OsStrExt, fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    process::ExitCode,
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

const POLICIES: &str = "/networking/v1/external/policies";
const WAIT: Duration = Duration::from_secs(10);

/// A daemon serving the API on a socket in a scratch directory, on its own thread and
/// runtime; stopped and cleaned up on drop.
struct Daemon {
    dir: PathBuf,
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ApiError>>>,
}

impl Daemon {
    fn start(name: &str) -> Daemon {
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
    fn serve(&mut self) {
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
    fn shut_down(&mut self) -> Result<(), ApiError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().expect("serve thread panicked"),
            None => Ok(()),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        http(&self.socket, method, path, body)
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    /// The listing for `query`, each policy as `source>destination protocol start-end`.
    fn policies(&self, query: &str) -> BTreeSet<String> {
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
    fn client(&self, line: &str) -> Result<String, ClientError> {
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
fn http(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
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

fn scalar(value: &Value) -> &str {
    value.as_str().expect("string")
}

/// A policy as cf-networking's JSON has it.
fn policy(source: &str, destination: &str, protocol: &str, start: i64, end: i64) -> Value {
    json!({"source": {"id": source},
           "destination": {"id": destination, "protocol": protocol,
                           "ports": {"start": start, "end": end}}})
}

fn batch(policies: &[Value]) -> String {
    json!({ "policies": policies }).to_string()
}

fn one(policy: Value) -> String {
    batch(&[policy])
}

fn set<const N: usize>(policies: [&str; N]) -> BTreeSet<String> {
    policies.into_iter().map(str::to_owned).collect()
}

fn error(message: &str) -> Value {
    json!({ "error": message })
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: ClientCommand,
}

fn command(line: &str) -> ClientCommand {
    let args = std::iter::once("firewall").chain(line.split(' '));
    Cli::try_parse_from(args)
        .expect("client command parses")
        .command
}

#[test]
fn policies_are_created_listed_filtered_and_deleted() {
    let daemon = Daemon::start("policies");
    for created in [
        policy("app1", "app2", "tcp", 1234, 1234),
        policy("app3", "app1", "tcp", 8080, 8090),
        policy("app3", "app4", "udp", 7777, 7777),
        // Again: nothing changes.
        policy("app1", "app2", "tcp", 1234, 1234),
    ] {
        assert_eq!(daemon.post(POLICIES, &one(created)), (200, json!({})));
    }
    let (status, listing) = daemon.call("GET", &format!("{POLICIES}?id=app2"), None);
    let expected =
        json!({"total_policies": 1, "policies": [policy("app1", "app2", "tcp", 1234, 1234)]});
    assert_eq!(
        (status, listing),
        (200, expected),
        "cf-networking's listing, field for field"
    );

    let (a12, a31, a34) = (
        "app1>app2 tcp 1234-1234",
        "app3>app1 tcp 8080-8090",
        "app3>app4 udp 7777-7777",
    );
    assert_eq!(daemon.policies(""), set([a12, a31, a34]));
    assert_eq!(daemon.policies("?id=app1,app2"), set([a12, a31]));
    assert_eq!(daemon.policies("?source_id=app1,app2"), set([a12]));
    assert_eq!(daemon.policies("?dest_id=app1,app4"), set([a31, a34]));
    assert_eq!(
        daemon.policies("?source_id=app1,app3&dest_id=app2,app4"),
        set([a12, a34])
    );

    let delete = format!("{POLICIES}/delete");
    let missing = one(policy("app3", "app1", "tcp", 8080, 9999));
    assert_eq!(
        daemon.post(&delete, &missing),
        (200, json!({})),
        "deleting nothing succeeds"
    );
    assert_eq!(daemon.policies(""), set([a12, a31, a34]));
    let both = batch(&[
        policy("app3", "app1", "tcp", 8080, 8090),
        policy("app3", "app4", "udp", 7777, 7777),
    ]);
    assert_eq!(daemon.post(&delete, &both), (200, json!({})));
    assert_eq!(daemon.policies(""), set([a12]));
}

#[test]
fn invalid_requests_are_refused_with_cf_networking_messages() {
    let daemon = Daemon::start("invalid");
    let no_protocol = json!({"source": {"id": "a"}, "destination": {"id": "b", "ports": {"start": 80, "end": 80}}});
    let no_ports = json!({"source": {"id": "a"}, "destination": {"id": "b", "protocol": "tcp"}});
    let protocol = "invalid destination protocol, specify either udp or tcp";
    let exact = [
        (batch(&[]), "missing policies"),
        (one(policy("", "b", "tcp", 1, 1)), "missing source id"),
        (one(policy("a", "", "tcp", 1, 1)), "missing destination id"),
        (one(no_protocol), protocol),
        (one(policy("a", "b", "icmp", 1, 1)), protocol),
        (one(no_ports), "missing start port"),
        (one(policy("a", "b", "tcp", 0, 0)), "missing start port"),
        (
            one(policy("a", "b", "tcp", 65536, 65536)),
            "invalid end port 65536, must be in range 1-65535",
        ),
        (
            one(policy("a", "b", "tcp", 9000, 8000)),
            "invalid port range 9000-8000, start must be less than or equal to end",
        ),
        // One bad policy refuses the whole batch.
        (
            batch(&[
                policy("a", "b", "tcp", 80, 80),
                policy("a", "c", "sctp", 1, 1),
            ]),
            protocol,
        ),
    ];
    let named = [
        ("{\"policies\": [", "mapper: unmarshal json: "),
        (r#"{"policies": [], "extra": 1}"#, "unknown field `extra`"),
        (
            r#"{"policies":[{"source":{"id":"a"},"destination":{"id":"b","port":80}}]}"#,
            "unknown field `port`",
        ),
    ];
    for path in [POLICIES.to_owned(), format!("{POLICIES}/delete")] {
        for (body, message) in &exact {
            let message = format!("mapper: validate policies: {message}");
            assert_eq!(
                daemon.post(&path, body),
                (400, error(&message)),
                "{path} {body}"
            );
        }
        for (body, part) in named {
            let (status, answer) = daemon.post(&path, body);
            let message = answer["error"].as_str().expect("error message");
            assert!(
                status == 400 && message.contains(part),
                "{path} {body}: {status} {message}"
            );
        }
    }
    assert!(daemon.policies("").is_empty(), "nothing stored");
}

#[test]
fn quota_refuses_the_151st_policy_of_a_source_and_stores_nothing_of_that_request() {
    let daemon = Daemon::start("quota");
    let busy = |port| policy("busy", "backend", "tcp", port, port);
    let calm = policy("calm", "backend", "tcp", 1, 1);
    let first: Vec<Value> = (1..=150).map(busy).collect();
    assert_eq!(daemon.post(POLICIES, &batch(&first)), (200, json!({})));
    let over = batch(&[calm.clone(), busy(151)]);
    assert_eq!(
        daemon.post(POLICIES, &over),
        (403, error("policy quota exceeded"))
    );
    assert_eq!(daemon.policies("").len(), 150);
    assert!(
        daemon.policies("?source_id=calm").is_empty(),
        "all or nothing"
    );
    assert_eq!(
        daemon.post(POLICIES, &one(calm)),
        (200, json!({})),
        "quotas are per source"
    );
}

#[test]
fn apps_networks_and_egress_rules_round_trip() {
    let daemon = Daemon::start("resources");
    let app = r#"{"org":"bank","space":"prod","ips":["198.18.1.10"]}"#;
    let (status, applied) = daemon.call("PUT", "/v1/apps/frontend", Some(app));
    assert!(
        status == 200 && applied["revision"].is_u64(),
        "{status} {applied}"
    );
    let (_, apps) = daemon.call("GET", "/v1/apps", None);
    let frontend = &apps["apps"][0];
    assert_eq!(
        (&frontend["name"], &frontend["space"]),
        (&json!("frontend"), &json!("prod"))
    );
    assert_eq!(frontend["ips"], json!(["198.18.1.10"]));
    assert!(frontend["identity"].is_u64(), "{apps}");

    let network = r#"{"cidrs":["198.19.10.0/24"]}"#;
    assert_eq!(
        daemon
            .call("PUT", "/v1/networks/legacy-db", Some(network))
            .0,
        200
    );
    let (_, networks) = daemon.call("GET", "/v1/networks", None);
    assert_eq!(networks["networks"][0]["cidrs"], json!(["198.19.10.0/24"]));

    let rules = r#"[{"protocol":"tcp","destination":"198.19.10.0/24","ports":"1521"}]"#;
    let (status, answer) = daemon.call("PUT", "/v1/apps/frontend/egress", Some(rules));
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = daemon.call("GET", "/v1/apps/frontend/egress", None);
    let expected = json!([{"protocol": "tcp", "destination": "198.19.10.0/24", "ports": "1521"}]);
    assert_eq!((status, answer), (200, expected));

    for (path, body) in [
        ("/v1/apps/x", r#"{"ips":["198.18.9.9"],"color":"red"}"#),
        ("/v1/apps/x", r#"{"ips":["not-an-ip"]}"#),
        ("/v1/networks/y", r#"{"cidrs":["198.19.0.0/33"]}"#),
        ("/v1/apps/x/egress", r#"{"protocol":"tcp"}"#),
    ] {
        let (status, answer) = daemon.call("PUT", path, Some(body));
        assert!(
            status == 400 && answer["error"].is_string(),
            "{path} {body}: {answer}"
        );
    }
    for (method, path, status) in [
        ("DELETE", "/v1/apps/frontend", 200),
        ("DELETE", "/v1/apps/frontend", 404),
        ("GET", "/v1/apps/nobody/egress", 404),
        ("DELETE", "/v1/networks/legacy-db", 200),
        ("DELETE", "/v1/networks/legacy-db", 404),
    ] {
        assert_eq!(daemon.call(method, path, None).0, status, "{method} {path}");
    }
    assert_eq!(
        daemon.call("GET", "/v1/networks", None),
        (200, json!({"networks": []}))
    );
}

#[test]
fn status_unknown_routes_and_wrong_methods_answer_json() {
    let daemon = Daemon::start("routes");
    let (status, answer) = daemon.call("GET", "/v1/status", None);
    assert!(status == 200 && answer.is_object(), "{status} {answer}");
    let unknown = error("no such endpoint: GET /v2/nothing");
    assert_eq!(daemon.call("GET", "/v2/nothing", None), (404, unknown));
    let wrong = error("method DELETE is not allowed on /v1/status");
    assert_eq!(daemon.call("DELETE", "/v1/status", None), (405, wrong));
}

#[test]
fn socket_is_private_taken_over_when_stale_and_removed_on_shutdown() {
    let mut daemon = Daemon::start("socket");
    let mode = std::fs::metadata(&daemon.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let second = runtime.expect("runtime").block_on(api::serve(
        &daemon.socket,
        Arc::new(Mutex::new(
            Controller::for_tests(&daemon.dir.join("other")).expect("ctl"),
        )),
        std::future::ready(()),
    ));
    assert!(matches!(second, Err(ApiError::InUse(_))), "{second:?}");

    daemon.shut_down().expect("clean shutdown");
    assert!(!daemon.socket.exists(), "socket removed on shutdown");
    // A socket file nobody listens on, as a killed daemon leaves it.
    drop(std::os::unix::net::UnixListener::bind(&daemon.socket).expect("stale socket"));
    daemon.serve();
    assert_eq!(daemon.call("GET", "/v1/status", None).0, 200);
}

#[test]
fn other_users_are_refused() {
    let daemon = Daemon::start("peer");
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: not root, so the refusal of other uids is not tested");
        return;
    }
    assert_eq!(
        probe_as_nobody(&daemon.socket),
        Probe::ConnectDenied,
        "mode 0600 lets in"
    );
    // Open the file mode so that only the peer credential check stands in the way.
    let open = std::fs::Permissions::from_mode(0o666);
    std::fs::set_permissions(&daemon.socket, open).expect("chmod socket");
    assert_eq!(probe_as_nobody(&daemon.socket), Probe::ClosedUnanswered);
    assert_eq!(
        daemon.call("GET", "/v1/status", None).0,
        200,
        "root still served"
    );
}

#[derive(Debug, PartialEq, Eq)]
enum Probe {
    ClosedUnanswered,
    Answered,
    ConnectDenied,
    Other(i32),
}

/// Forks a child that becomes uid/gid 65534, connects to `socket`, sends a request and
/// reports through its exit status whether an answer came.
fn probe_as_nobody(socket: &Path) -> Probe {
    let path = CString::new(socket.as_os_str().as_bytes()).expect("path");
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes_with_nul();
    assert!(
        bytes.len() <= address.sun_path.len(),
        "socket path too long"
    );
    for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    let request = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: the child of this multi-threaded process makes only raw system calls on memory
    // prepared before the fork, then leaves with _exit; it never allocates or takes locks.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: as above; every pointer refers to live memory of the right size.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                libc::_exit(10);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let size = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (&raw const address).cast(), size) != 0 {
                libc::_exit(if *libc::__errno_location() == libc::EACCES {
                    20
                } else {
                    21
                });
            }
            let tv = (&raw const timeout).cast();
            let tv_size = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv, tv_size);
            libc::send(
                fd,
                request.as_ptr().cast(),
                request.len(),
                libc::MSG_NOSIGNAL,
            );
            let mut buffer = [0u8; 64];
            let read = libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0);
            let errno = *libc::__errno_location();
            libc::_exit(match read {
                0 => 0,
                n if n > 0 => 1,
                _ if errno == libc::ECONNRESET => 0,
                _ => 30,
            });
        }
    }
    let deadline = Instant::now() + WAIT;
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer; pid is our child.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: pid is our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("probe child did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match libc::WEXITSTATUS(status) {
        0 => Probe::ClosedUnanswered,
        1 => Probe::Answered,
        20 => Probe::ConnectDenied,
        other => Probe::Other(other),
    }
}

#[test]
fn client_commands_print_tables_and_json() {
    let daemon = Daemon::start("client");
    let added =
        daemon.client("add-network-policy frontend --destination-app backend --port 8080-8090");
    assert_eq!(
        added.expect("added"),
        "Added network policy from frontend to backend, tcp 8080-8090.\n"
    );
    let udp =
        "add-network-policy frontend --destination-app backend --protocol udp --port 53 --json";
    assert_eq!(daemon.client(udp).expect("added"), "{}\n");
    daemon
        .client("add-network-policy monitor --destination-app backend")
        .expect("cf defaults");
    assert_eq!(
        daemon.client("network-policies").expect("listed"),
        "Source    Destination  Protocol  Ports\n\
         frontend  backend      tcp       8080-8090\n\
         frontend  backend      udp       53\n\
         monitor   backend      tcp       8080\n"
    );
    let json = daemon
        .client("network-policies --source-app monitor --json")
        .expect("listed");
    let json: Value = serde_json::from_str(&json).expect("JSON");
    let monitor = policy("monitor", "backend", "tcp", 8080, 8080);
    assert_eq!(json, json!({"total_policies": 1, "policies": [monitor]}));
    let remove =
        "remove-network-policy monitor --destination-app backend --protocol tcp --port 8080";
    daemon.client(remove).expect("removed");
    assert!(
        !daemon
            .client("network-policies")
            .expect("listed")
            .contains("monitor")
    );

    let registered = daemon
        .client("register-app frontend --org bank --ip 198.18.1.10")
        .expect("app");
    assert!(
        registered.starts_with("Registered app frontend: policy revision "),
        "{registered}"
    );
    let apps = daemon.client("apps").expect("apps");
    let table =
        "Name      Org   Space  IPs          Identity\nfrontend  bank         198.18.1.10  ";
    assert!(apps.starts_with(table), "{apps}");
    daemon
        .client("add-network legacy-db --cidr 198.19.10.0/24")
        .expect("network");
    let networks = daemon.client("networks").expect("networks");
    assert!(
        networks.contains("\nlegacy-db  198.19.10.0/24  "),
        "{networks}"
    );

    let rules = daemon.dir.join("rules.json");
    let icmp = r#"[{"protocol":"icmp","destination":"0.0.0.0/0","type":8,"code":0}]"#;
    std::fs::write(&rules, icmp).expect("rules file");
    let set_rules = format!("set-egress-rules frontend --file {}", rules.display());
    daemon.client(&set_rules).expect("egress set");
    assert_eq!(
        daemon.client("egress-rules frontend").expect("egress"),
        "Protocol  Destination  Ports  Type  Code  Description\nicmp      0.0.0.0/0           8     0\n"
    );
    let status = daemon.client("status --json").expect("status");
    assert!(
        serde_json::from_str::<Value>(&status)
            .expect("JSON")
            .is_object()
    );
    assert!(
        daemon
            .client("status")
            .expect("status")
            .contains("policies:")
    );
}

#[test]
fn client_exit_codes_tell_refusal_bad_input_and_unreachable_daemon_apart() {
    let daemon = Daemon::start("client-errors");
    let refused = daemon.client("unregister-app ghost").expect_err("refused");
    assert!(
        matches!(refused, ClientError::Refused { status: 404, .. }),
        "{refused:?}"
    );
    assert_eq!(refused.exit_code(), 1);
    let quota: Vec<Value> = (1..=150)
        .map(|p| policy("busy", "b", "tcp", p, p))
        .collect();
    assert_eq!(daemon.post(POLICIES, &batch(&quota)).0, 200);
    let over = daemon
        .client("add-network-policy busy --destination-app c")
        .expect_err("quota");
    assert_eq!(
        (over.exit_code(), over.to_string()),
        (1, "policy quota exceeded".into())
    );

    let missing = daemon.dir.join("missing.json");
    let bad_file = format!("set-egress-rules a --file {}", missing.display());
    assert_eq!(
        daemon.client(&bad_file).expect_err("no file").exit_code(),
        2
    );

    let nowhere = daemon.dir.join("nobody-listens.sock");
    let unreachable = client::run(&nowhere, command("status"), &mut Vec::new());
    let unreachable = unreachable.expect_err("unreachable");
    assert_eq!(unreachable.exit_code(), 3);
    let hint = "start it with `firewall daemon` (or `systemctl start firewall`)";
    assert!(unreachable.to_string().contains(hint), "{unreachable}");
    let code = client::execute(&nowhere, command("apps")).expect("execute");
    assert_eq!(code, ExitCode::from(3));
}
