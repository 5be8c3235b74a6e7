//! Real traffic between network namespaces through the attached programs. Needs root.
//!
//! Each test builds its own testbed (namespaces, veth pairs, a bridge), removed on drop even
//! when an assertion fails. Every socket operation has a timeout; no loop runs unbounded.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use firewall::{
    attach,
    datapath::{Datapath, LoadOptions},
    policy::{self, Policy},
    testbed::{self, Testbed},
};
use firewall_common::Reason;
use support::traffic::{BusyConnection, Delivery};

/// Rules in the forward direction only: replies pass because their flows are tracked.
const POLICY: &str = r#"
apps:
  frontend: {ips: [198.18.1.10, "2001:db8:1::10"]}
  backend:  {ips: [198.18.2.10, "2001:db8:2::10"]}
policies:
  - {source: frontend, destination: backend, protocol: tcp, ports: 8081}
  - {source: frontend, destination: backend, protocol: udp, ports: 5353}
  - {source: frontend, destination: backend, protocol: tcp, ports: 7000}
"#;

const SERVER_LIFETIME: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const DENIED_WAIT: Duration = Duration::from_millis(1500);

/// Servers in the backend namespace: TCP on 8081 and 8082 answer "pong" to each connection,
/// UDP on 5353 and 5354 echo; each counts what it got. They stop when told or after
/// [`SERVER_LIFETIME`].
struct Servers {
    stop: Arc<AtomicBool>,
    received: Vec<(u16, Arc<AtomicU32>)>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Servers {
    fn start(namespace: &str, addresses: &[&str]) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut servers = Servers {
            stop: stop.clone(),
            received: Vec::new(),
            threads: Vec::new(),
        };
        for port in [8081u16, 8082, 5353, 5354] {
            let count = Arc::new(AtomicU32::new(0));
            servers.received.push((port, count.clone()));
            for address in addresses {
                let at: SocketAddr = SocketAddr::new(address.parse().expect("address"), port);
                let (stop, count) = (stop.clone(), count.clone());
                let tcp = port > 8000;
                let handle = testbed::spawn_in_namespace(namespace, move || {
                    if tcp {
                        serve_tcp(at, &stop, &count)
                    } else {
                        serve_udp(at, &stop, &count)
                    }
                })
                .expect("enter backend namespace");
                servers.threads.push(std::thread::spawn(move || {
                    handle.join().expect("server thread")?
                }));
            }
        }
        servers
    }

    fn received(&self, port: u16) -> u32 {
        self.received
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(0, |(_, c)| c.load(Ordering::SeqCst))
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            if let Ok(Err(e)) = thread.join()
                && !std::thread::panicking()
            {
                panic!("server failed: {e}");
            }
        }
    }
}

fn serve_tcp(at: SocketAddr, stop: &AtomicBool, count: &AtomicU32) -> std::io::Result<()> {
    let listener = TcpListener::bind(at)?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + SERVER_LIFETIME;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                count.fetch_add(1, Ordering::SeqCst);
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                let mut buf = [0u8; 4];
                if stream.read_exact(&mut buf).is_ok() && &buf == b"ping" {
                    stream.write_all(b"pong")?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn serve_udp(at: SocketAddr, stop: &AtomicBool, count: &AtomicU32) -> std::io::Result<()> {
    let socket = UdpSocket::bind(at)?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let deadline = Instant::now() + SERVER_LIFETIME;
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                count.fetch_add(1, Ordering::SeqCst);
                socket.send_to(&buf[..n], from)?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Connects, sends "ping", expects "pong".
fn tcp_exchange(to: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf)?;
    if &buf == b"pong" {
        Ok(())
    } else {
        Err(std::io::Error::other("wrong answer"))
    }
}

/// Sends one datagram and waits for its echo.
fn udp_exchange(from: SocketAddr, to: SocketAddr, wait: Duration) -> std::io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(from.ip(), 0))?;
    socket.set_read_timeout(Some(wait))?;
    socket.send_to(b"hello", to)?;
    let mut buf = [0u8; 16];
    let (n, _) = socket.recv_from(&mut buf)?;
    if &buf[..n] == b"hello" {
        Ok(())
    } else {
        Err(std::io::Error::other("wrong echo"))
    }
}

fn client<T: Send + 'static>(testbed: &Testbed, work: impl FnOnce() -> T + Send + 'static) -> T {
    let namespace = &testbed.host("frontend").expect("frontend host").namespace;
    testbed::in_namespace(namespace, work).expect("enter frontend namespace")
}

fn enforce_and_exchange(name: &str, xdp: bool) {
    let policy: Policy = policy::parse_str(POLICY, "end-to-end policy").expect("valid policy");
    let testbed = Testbed::up(name, &testbed::hosts_of(&policy)).expect("testbed");
    let mut datapath = Datapath::load(&LoadOptions::default()).expect("load");
    datapath.apply(&policy.compile()).expect("apply");
    attach::attach(&mut datapath, &testbed.interfaces(), xdp).expect("attach");
    let backend = testbed
        .host("backend")
        .expect("backend host")
        .namespace
        .clone();
    let servers = Servers::start(&backend, &["198.18.2.10", "2001:db8:2::10"]);
    std::thread::sleep(Duration::from_millis(200));

    let v4 = |port| SocketAddr::new("198.18.2.10".parse().expect("address"), port);
    let v6 = |port| SocketAddr::new("2001:db8:2::10".parse().expect("address"), port);
    let frontend_v4: SocketAddr = "198.18.1.10:0".parse().expect("address");

    client(&testbed, move || tcp_exchange(v4(8081))).expect("allowed TCP over IPv4");
    client(&testbed, move || tcp_exchange(v6(8081))).expect("allowed TCP over IPv6");
    client(&testbed, move || {
        udp_exchange(frontend_v4, v4(5353), CONNECT_TIMEOUT)
    })
    .expect("allowed UDP");
    let denied_tcp = client(&testbed, move || {
        TcpStream::connect_timeout(&v4(8082), DENIED_WAIT)
    });
    assert!(
        denied_tcp.is_err(),
        "TCP to 8082 has no rule and must not connect"
    );
    let denied_udp = client(&testbed, move || {
        udp_exchange(frontend_v4, v4(5354), DENIED_WAIT)
    });
    assert!(
        denied_udp.is_err(),
        "UDP to 5354 has no rule and must get no echo"
    );
    assert_eq!(servers.received(8082), 0, "a denied SYN reached the server");
    assert_eq!(
        servers.received(5354),
        0,
        "a denied datagram reached the server"
    );
    assert!(servers.received(8081) >= 2 && servers.received(5353) >= 1);

    // The other way round nothing is allowed: a connection the backend opens to the
    // frontend's own listener is refused, though the frontend's flows to it are tracked.
    let frontend = testbed
        .host("frontend")
        .expect("frontend host")
        .namespace
        .clone();
    let reverse_servers = Servers::start(&frontend, &["198.18.1.10"]);
    std::thread::sleep(Duration::from_millis(100));
    let to_frontend = SocketAddr::new("198.18.1.10".parse().expect("address"), 8081);
    let reverse = testbed::in_namespace(&backend, move || {
        TcpStream::connect_timeout(&to_frontend, DENIED_WAIT)
    })
    .expect("enter backend namespace");
    assert!(
        reverse.is_err(),
        "the backend must not open a connection to the frontend"
    );
    assert_eq!(reverse_servers.received(8081), 0);
    drop(reverse_servers);

    let reasons = datapath.reason_counters().expect("counters");
    let packets = |r| {
        reasons
            .iter()
            .find(|(x, _)| *x == r)
            .map_or(0, |(_, c)| c.packets)
    };
    assert!(packets(Reason::Policy) > 0, "{reasons:?}");
    assert!(packets(Reason::Reply) > 0, "{reasons:?}");
    assert!(packets(Reason::Established) > 0, "{reasons:?}");
    assert!(packets(Reason::DeniedByDefault) > 0, "{reasons:?}");
    for rule in 1..=2 {
        let hits = datapath.rule_counter(rule).expect("rule counter");
        assert!(
            hits.packets > 0 && hits.bytes > 0,
            "rule {rule} never counted: {hits:?}"
        );
    }
    drop(servers);
    drop(datapath);
    drop(testbed);
}

#[test]
fn tc_enforces_real_tcp_and_udp_between_namespaces() {
    enforce_and_exchange("e2etc", false);
}

#[test]
fn xdp_enforces_real_tcp_and_udp_between_namespaces() {
    enforce_and_exchange("e2exd", true);
}

/// A connection on port 7000 carries a byte every 50 ms; the rule is revoked while it runs.
/// The server must see nothing arrive later than one second after the revocation.
#[test]
fn revoking_a_rule_stops_an_established_connection_within_a_second() {
    let policy: Policy = policy::parse_str(POLICY, "end-to-end policy").expect("valid policy");
    let testbed = Testbed::up("e2erv", &testbed::hosts_of(&policy)).expect("testbed");
    let compiled = policy.compile();
    let mut datapath = Datapath::load(&LoadOptions::default()).expect("load");
    datapath.apply(&compiled).expect("apply");
    attach::attach(&mut datapath, &testbed.interfaces(), false).expect("attach");
    let backend = testbed
        .host("backend")
        .expect("backend host")
        .namespace
        .clone();
    let frontend = testbed
        .host("frontend")
        .expect("frontend host")
        .namespace
        .clone();

    let at: SocketAddr = "198.18.2.10:7000".parse().expect("address");
    let busy = BusyConnection::start(&frontend, &backend, at, Duration::from_secs(4));

    std::thread::sleep(Duration::from_millis(1500));
    let rule = policy
        .rules
        .iter()
        .find(|r| policy.describe_rule(r).ends_with("tcp 7000"))
        .expect("the port 7000 rule")
        .id;
    let stale = firewall::policy::CompiledPolicy {
        ipcache_v4: Vec::new(),
        ipcache_v6: Vec::new(),
        policy: compiled
            .policy
            .iter()
            .copied()
            .filter(|e| e.value.rule_id == rule)
            .collect(),
        max_rule_id: compiled.max_rule_id,
    };
    datapath.remove_entries(&stale).expect("remove the rule");
    datapath.bump_revision().expect("bump revision");
    let revoked_at = Instant::now();

    let Delivery { sent, arrivals } = busy.finish();
    let before = arrivals.iter().filter(|t| **t < revoked_at).count();
    let late: Vec<Duration> = arrivals
        .iter()
        .filter(|t| **t > revoked_at + Duration::from_secs(1))
        .map(|t| *t - revoked_at)
        .collect();
    assert!(
        before >= 10,
        "the connection was not busy before the revocation: {before} of {sent}"
    );
    assert!(
        late.is_empty(),
        "data still arrived after the revocation: {late:?}"
    );
    let revoked = datapath
        .reason_counters()
        .expect("counters")
        .iter()
        .find(|(r, _)| *r == Reason::Revoked)
        .map_or(0, |(_, c)| c.packets);
    assert!(revoked >= 1, "no packet was dropped as revoked");
    drop(datapath);
    drop(testbed);
}
