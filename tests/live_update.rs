//! Live updates without a gap: an allowed connection stays busy and a denied probe keeps
//! knocking while thousands of unrelated apps and rules come and go through the controller.
//! Not one packet of the allowed flow may be dropped and not one probe may pass. Needs root.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use firewall::{
    daemon::{controller::Controller, enforcer::Enforcer, interfaces},
    datapath::LoadOptions,
    events,
    model::{AppRecord, CfProtocol, Change, Limits, NetworkPolicy},
    policy,
    testbed::{self, Testbed},
};

const POLICY: &str = "\
apps:
  frontend: {ips: [198.18.1.10]}
  backend:  {ips: [198.18.2.10]}
";
const ALLOWED: u16 = 7000;
const DENIED: u16 = 7001;
const CHURN: u16 = 1500;

fn policy(source: &str, destination: &str, port: u16) -> NetworkPolicy {
    NetworkPolicy {
        source: source.into(),
        destination: destination.into(),
        protocol: CfProtocol::Tcp,
        start_port: port,
        end_port: port,
    }
}

#[test]
fn unrelated_changes_never_drop_allowed_traffic_nor_pass_denied_traffic() {
    let file = policy::parse_str(POLICY, "live update test").expect("policy");
    let bed = Testbed::up("live", &testbed::hosts_of(&file)).expect("testbed");
    let dir = std::env::temp_dir().join(format!("firewall-live-{}", std::process::id()));
    let pin_root =
        std::path::PathBuf::from(format!("/sys/fs/bpf/firewall-live-{}", std::process::id()));
    struct Cleanup(std::path::PathBuf, std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = firewall::daemon::enforcer::uninstall(&self.1);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone(), pin_root.clone());

    // Every drop record is needed below: no rate limit.
    let mut options = LoadOptions::default();
    options.config.event_interval_ns = 0;
    let enforcer = Enforcer::open(&pin_root, &options).expect("enforcer");
    let limits = Limits {
        policy_quota_per_source: 10_000,
        ..Limits::default()
    };
    let (mut controller, _) = Controller::open(&dir, limits, Some(enforcer)).expect("controller");
    let mut setup = Vec::new();
    for app in &file.apps {
        setup.push(Change::RegisterApp(AppRecord {
            name: app.name.clone(),
            org: None,
            space: None,
            ips: app.ips.clone(),
        }));
    }
    setup.push(Change::AddPolicies(vec![policy(
        "frontend", "backend", ALLOWED,
    )]));
    controller.apply(Change::Batch(setup)).expect("set up");
    let enforcer = controller.enforcer().expect("enforcer");
    let host = interfaces::host_interfaces();
    let ours: Vec<String> = bed.interfaces();
    enforcer.sync_interfaces(&host, |name| ours.iter().any(|i| i == name));
    assert_eq!(enforcer.attached().len(), 2);
    let mut ring = enforcer
        .datapath()
        .take_flow_events()
        .expect("flow records");

    // Drain drop events continuously so none is lost while the test runs.
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut drops = Vec::new();
            loop {
                let done = stop.load(Ordering::SeqCst);
                while let Some(item) = ring.next() {
                    if let Some(event) = events::parse(&item).filter(events::is_drop) {
                        drops.push(event);
                    }
                }
                if done {
                    return drops;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let backend_ns = bed.host("backend").expect("backend").namespace.clone();
    let frontend_ns = bed.host("frontend").expect("frontend").namespace.clone();
    let at: SocketAddr = format!("198.18.2.10:{ALLOWED}").parse().expect("address");
    let probe_at: SocketAddr = format!("198.18.2.10:{DENIED}").parse().expect("address");
    let received = Arc::new(AtomicU64::new(0));
    let probes_received = Arc::new(AtomicU64::new(0));
    let server = {
        let (stop, received) = (stop.clone(), received.clone());
        testbed::spawn_in_namespace(&backend_ns, move || -> std::io::Result<()> {
            let listener = TcpListener::bind(at)?;
            let (mut stream, _) = listener.accept()?;
            stream.set_read_timeout(Some(Duration::from_millis(100)))?;
            let mut buf = [0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        received.fetch_add(n as u64, Ordering::SeqCst);
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
        })
        .expect("enter backend")
    };
    let probe_server = {
        let (stop, probes_received) = (stop.clone(), probes_received.clone());
        testbed::spawn_in_namespace(&backend_ns, move || -> std::io::Result<()> {
            let socket = UdpSocket::bind(probe_at)?;
            socket.set_read_timeout(Some(Duration::from_millis(100)))?;
            let mut buf = [0u8; 64];
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                if socket.recv(&mut buf).is_ok() {
                    probes_received.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(())
        })
        .expect("enter backend")
    };
    std::thread::sleep(Duration::from_millis(200));
    let sent = Arc::new(AtomicU64::new(0));
    let probes_sent = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, sent, probes_sent) = (stop.clone(), sent.clone(), probes_sent.clone());
        testbed::spawn_in_namespace(&frontend_ns, move || -> std::io::Result<()> {
            let mut stream = TcpStream::connect_timeout(&at, Duration::from_secs(3))?;
            stream.set_nodelay(true)?;
            let probe = UdpSocket::bind("198.18.1.10:0")?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                stream.write_all(&[7u8; 512])?;
                sent.fetch_add(512, Ordering::SeqCst);
                probe.send_to(b"knock", probe_at)?;
                probes_sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        })
        .expect("enter frontend")
    };

    // The churn: apps registered and unregistered, policies added and removed, none of them
    // touching frontend -> backend:7000.
    std::thread::sleep(Duration::from_millis(300));
    let churn_started = Instant::now();
    for i in 0..CHURN {
        let app = format!("churn{i}");
        let ip = format!("198.19.{}.{}", i / 250, i % 250 + 1)
            .parse()
            .expect("address");
        controller
            .apply(Change::Batch(vec![
                Change::RegisterApp(AppRecord {
                    name: app.clone(),
                    org: None,
                    space: None,
                    ips: vec![ip],
                }),
                Change::AddPolicies(vec![
                    policy(&app, "backend", 8000 + i),
                    policy("frontend", &app, 443),
                ]),
            ]))
            .expect("add churn");
        if i >= 10 {
            let old = format!("churn{}", i - 10);
            controller
                .apply(Change::Batch(vec![
                    Change::DeletePolicies(vec![
                        policy(&old, "backend", 8000 + i - 10),
                        policy("frontend", &old, 443),
                    ]),
                    Change::UnregisterApp(old),
                ]))
                .expect("remove churn");
        }
    }
    let churn_took = churn_started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    client
        .join()
        .expect("client thread")
        .expect("client namespace")
        .expect("client");
    server
        .join()
        .expect("server thread")
        .expect("server namespace")
        .expect("server");
    probe_server
        .join()
        .expect("probe thread")
        .expect("probe namespace")
        .expect("probe server");
    let drops = drain.join().expect("drain thread");

    let lost = controller
        .enforcer()
        .expect("enforcer")
        .datapath()
        .flow_events_lost()
        .expect("stat");
    assert_eq!(
        lost, 0,
        "drop records were lost: the check below would be blind"
    );
    let allowed_drops = drops
        .iter()
        .filter(|e| e.destination_port == ALLOWED || e.source_port == ALLOWED)
        .count();
    let probe_drops = drops
        .iter()
        .filter(|e| e.destination_port == DENIED)
        .count() as u64;
    assert_eq!(
        allowed_drops, 0,
        "the allowed flow lost packets during {CHURN} changes"
    );
    assert_eq!(
        probes_received.load(Ordering::SeqCst),
        0,
        "a denied probe passed"
    );
    let (sent, received) = (sent.load(Ordering::SeqCst), received.load(Ordering::SeqCst));
    assert!(
        sent > 0 && received == sent,
        "sent {sent} bytes, received {received}"
    );
    assert!(
        probe_drops >= probes_sent.load(Ordering::SeqCst) / 2,
        "the probes were not seen and dropped: {probe_drops} of {}",
        probes_sent.load(Ordering::SeqCst)
    );
    println!(
        "{} changes in {churn_took:?}; {sent} bytes through, {probe_drops} probes dropped",
        CHURN as u32 * 2 - 10
    );
    drop(bed);
}
