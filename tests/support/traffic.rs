//! Real TCP between testbed namespaces: listeners that answer, and bounded probes.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use firewall::testbed;

/// How long a probe waits for a connection.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// A listener stops by itself after this, whatever happens to the test.
const LIFETIME: Duration = Duration::from_secs(120);

/// A TCP listener in a namespace; every connection that sends "ping" gets "pong".
pub struct Listener {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU32>,
    thread: Option<JoinHandle<std::io::Result<std::io::Result<()>>>>,
}

impl Listener {
    pub fn start(namespace: &str, at: SocketAddr) -> Listener {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU32::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let handle = testbed::spawn_in_namespace(namespace, move || {
            let listener = TcpListener::bind(at)?;
            listener.set_nonblocking(true)?;
            let deadline = Instant::now() + LIFETIME;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        accepted2.fetch_add(1, Ordering::SeqCst);
                        stream.set_nonblocking(false)?;
                        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
                        let mut buf = [0u8; 4];
                        if stream.read_exact(&mut buf).is_ok() && &buf == b"ping" {
                            let _ = stream.write_all(b"pong");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .expect("enter namespace");
        std::thread::sleep(Duration::from_millis(100));
        Listener {
            stop,
            accepted,
            thread: Some(handle),
        }
    }

    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connects from `namespace`, sends "ping" and expects "pong" within [`PROBE_TIMEOUT`].
pub fn exchange(namespace: &str, to: SocketAddr) -> bool {
    testbed::in_namespace(namespace, move || -> std::io::Result<()> {
        let mut stream = TcpStream::connect_timeout(&to, PROBE_TIMEOUT)?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf)?;
        if &buf == b"pong" {
            Ok(())
        } else {
            Err(std::io::Error::other("wrong answer"))
        }
    })
    .expect("enter namespace")
    .is_ok()
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One TCP connection carrying a byte every 20 ms for `duration`: the client in one
/// namespace, the server in another, each arrival time recorded.
pub struct BusyConnection {
    client: JoinHandle<std::io::Result<std::io::Result<u64>>>,
    server: JoinHandle<std::io::Result<std::io::Result<Vec<Instant>>>>,
}

/// What a [`BusyConnection`] saw.
pub struct Delivery {
    /// Bytes the client handed to its socket.
    pub sent: u64,
    /// When each byte arrived.
    pub arrivals: Vec<Instant>,
}

impl BusyConnection {
    pub fn start(client_ns: &str, server_ns: &str, at: SocketAddr, duration: Duration) -> Self {
        let server =
            testbed::spawn_in_namespace(server_ns, move || -> std::io::Result<Vec<Instant>> {
                let listener = TcpListener::bind(at)?;
                let (mut stream, _) = listener.accept()?;
                stream.set_read_timeout(Some(Duration::from_millis(100)))?;
                let deadline = Instant::now() + duration + Duration::from_secs(3);
                let mut arrivals = Vec::new();
                let mut buf = [0u8; 64];
                while Instant::now() < deadline {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => arrivals.extend(std::iter::repeat_n(Instant::now(), n)),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(arrivals)
            })
            .expect("enter server namespace");
        std::thread::sleep(Duration::from_millis(100));
        let client = testbed::spawn_in_namespace(client_ns, move || -> std::io::Result<u64> {
            let mut stream = TcpStream::connect_timeout(&at, PROBE_TIMEOUT)?;
            stream.set_write_timeout(Some(Duration::from_millis(200)))?;
            let deadline = Instant::now() + duration;
            let mut sent = 0;
            while Instant::now() < deadline {
                // A write the network will not take is not counted as sent.
                if stream.write_all(b"x").is_ok() {
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(sent)
        })
        .expect("enter client namespace");
        BusyConnection { client, server }
    }

    /// Waits for both ends.
    pub fn finish(self) -> Delivery {
        let sent = self
            .client
            .join()
            .expect("client thread")
            .expect("client namespace")
            .expect("client");
        let arrivals = self
            .server
            .join()
            .expect("server thread")
            .expect("server namespace")
            .expect("server");
        Delivery { sent, arrivals }
    }
}
