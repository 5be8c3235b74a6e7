//! The daemon's API on its Unix socket, against a store-only controller: cf-networking's
//! external policy API (cases ported from its policy server's integration tests), the
//! daemon's own `/v1` resources, the socket's access control, and the client commands.
//!
//! Runs as any user; the check that other uids are refused forks a child that drops to
//! uid 65534, so it needs root and is skipped, with a note, otherwise. Every wait is bounded.

mod support;

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use firewall::{
    api::{self, ApiError},
    daemon::controller::Controller,
};
use serde_json::{Value, json};
use support::api::*;
use tokio::sync::Mutex;

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
