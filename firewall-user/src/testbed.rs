//! Test and demo topologies: one network namespace per app (and per network) of a policy,
//! all joined by veth pairs to a bridge in the root namespace, where the firewall attaches.
//!
//! Root side: bridge `fw<name>br`, veth `fw<name><n>` per host. Host side: namespace
//! `fw-<name>-<host>`, interface `eth0` holding the host's addresses, all on one link, so no
//! routing and no host-wide setting is touched. Only documentation addresses are accepted
//! (198.18.0.0/15, 2001:db8::/32): the testbed never puts another address on a link.
//!
//! Dropping a [`Testbed`] removes the namespaces (and with them the veth pairs) and the bridge.

use std::{
    fs::File,
    net::IpAddr,
    process::{Command, Output},
    thread::JoinHandle,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use thiserror::Error;

use crate::policy::Policy;

/// Errors building or using a testbed.
#[derive(Debug, Error)]
pub enum TestbedError {
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// Its arguments.
        args: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `ip` could not be run at all.
    #[error("cannot run `ip` (install iproute2): {0}")]
    Spawn(std::io::Error),
    /// A name is too long for interface names.
    #[error("testbed name {0:?} must be 1 to 6 lowercase letters or digits")]
    BadName(String),
    /// An address outside the documentation ranges.
    #[error("{host}: address {address} is outside 198.18.0.0/15 and 2001:db8::/32")]
    ForeignAddress {
        /// The host.
        host: String,
        /// The address.
        address: IpAddr,
    },
    /// Entering a namespace failed.
    #[error("cannot enter namespace {namespace}: {source}")]
    Enter {
        /// The namespace.
        namespace: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// One host of a testbed.
#[derive(Clone, Debug)]
pub struct Host {
    /// App or network name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The root-side veth, where the firewall attaches.
    pub interface: String,
    /// Addresses on its `eth0`.
    pub addresses: Vec<IpAddr>,
}

/// A running topology. Removed when dropped.
#[derive(Debug)]
pub struct Testbed {
    name: String,
    bridge: String,
    hosts: Vec<Host>,
    keep: bool,
}

fn lab_v4() -> Ipv4Net {
    Ipv4Net::new([198, 18, 0, 0].into(), 15).expect("constant prefix")
}

fn lab_v6() -> Ipv6Net {
    Ipv6Net::new([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0].into(), 32).expect("constant prefix")
}

/// Whether an address is in the ranges the testbed may use.
pub fn is_lab_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => lab_v4().contains(&a),
        IpAddr::V6(a) => lab_v6().contains(&a),
    }
}

/// Hosts a policy calls for: each app with its addresses, and each network with the first
/// host address of each of its prefixes.
pub fn hosts_of(policy: &Policy) -> Vec<(String, Vec<IpAddr>)> {
    let mut hosts: Vec<(String, Vec<IpAddr>)> = policy
        .apps
        .iter()
        .map(|a| (a.name.clone(), a.ips.clone()))
        .collect();
    for network in &policy.networks {
        let addresses = network.cidrs.iter().filter_map(first_host).collect();
        hosts.push((network.name.clone(), addresses));
    }
    hosts
}

fn first_host(net: &IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) if n.prefix_len() == 32 => Some(IpAddr::V4(n.addr())),
        IpNet::V4(n) => n.hosts().next().map(IpAddr::V4),
        IpNet::V6(n) if n.prefix_len() == 128 => Some(IpAddr::V6(n.addr())),
        IpNet::V6(n) => n.hosts().nth(1).map(IpAddr::V6),
    }
}

impl Testbed {
    /// Builds a topology named `name` (1 to 6 lowercase letters or digits) with the given
    /// hosts. On any failure what was built so far is removed.
    pub fn up(name: &str, hosts: &[(String, Vec<IpAddr>)]) -> Result<Testbed, TestbedError> {
        let valid = !name.is_empty()
            && name.len() <= 6
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(TestbedError::BadName(name.to_string()));
        }
        for (host, addresses) in hosts {
            if let Some(&address) = addresses.iter().find(|a| !is_lab_address(**a)) {
                return Err(TestbedError::ForeignAddress {
                    host: host.clone(),
                    address,
                });
            }
        }
        // Leftovers of an earlier run with the same name would make `ip` fail below.
        Testbed::remove(name);
        let mut testbed = Testbed {
            name: name.to_string(),
            bridge: format!("fw{name}br"),
            hosts: Vec::new(),
            keep: false,
        };
        ip(&["link", "add", &testbed.bridge, "type", "bridge"])?;
        sysctl_off_ipv6(&testbed.bridge);
        ip(&["link", "set", &testbed.bridge, "up"])?;
        for (index, (host, addresses)) in hosts.iter().enumerate() {
            let host = testbed.add_host(index, host, addresses)?;
            testbed.hosts.push(host);
        }
        Ok(testbed)
    }

    fn add_host(
        &self,
        index: usize,
        host: &str,
        addresses: &[IpAddr],
    ) -> Result<Host, TestbedError> {
        let namespace = format!("fw-{}-{}", self.name, host);
        let interface = format!("fw{}{}", self.name, index);
        let peer = format!("{interface}p");
        ip(&["netns", "add", &namespace])?;
        ip(&[
            "link", "add", &interface, "type", "veth", "peer", "name", &peer, "netns", &namespace,
        ])?;
        sysctl_off_ipv6(&interface);
        ip(&["link", "set", &interface, "master", &self.bridge, "up"])?;
        ip(&["-n", &namespace, "link", "set", &peer, "name", "eth0"])?;
        for address in addresses {
            let cidr = match address {
                IpAddr::V4(a) => format!("{a}/15"),
                IpAddr::V6(a) => format!("{a}/32"),
            };
            let mut args = vec!["-n", &namespace, "addr", "add", &cidr, "dev", "eth0"];
            if address.is_ipv6() {
                // No duplicate address detection: the address is usable at once.
                args.push("nodad");
            }
            ip(&args)?;
        }
        ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
        ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        Ok(Host {
            name: host.to_string(),
            namespace,
            interface,
            addresses: addresses.to_vec(),
        })
    }

    /// Removes every namespace and link of a testbed named `name`, whether or not this
    /// process built it. Missing pieces are ignored.
    pub fn remove(name: &str) {
        let prefix = format!("fw-{name}-");
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let namespace = line.split_whitespace().next().unwrap_or("");
                if namespace.starts_with(&prefix) {
                    let _ = ip(&["netns", "delete", namespace]);
                }
            }
        }
        let _ = ip(&["link", "delete", &format!("fw{name}br")]);
    }

    /// Leaves the topology in place when dropped (for `firewall testbed up`).
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// The hosts, in the order given.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        named(&self.hosts, name)
    }

    /// Root-side interfaces, where the firewall attaches.
    pub fn interfaces(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.interface.clone()).collect()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if !self.keep {
            Testbed::remove(&self.name);
        }
    }
}

/// Starts `work` on a new thread that has entered network namespace `namespace`; sockets
/// made there belong to that namespace for their whole life.
pub fn spawn_in_namespace<T, F>(
    namespace: &str,
    work: F,
) -> Result<JoinHandle<std::io::Result<T>>, TestbedError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = format!("/run/netns/{namespace}");
    let file = File::open(&path).map_err(|source| TestbedError::Enter {
        namespace: namespace.to_string(),
        source,
    })?;
    Ok(std::thread::spawn(move || {
        // Changes this thread's network namespace only.
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(work())
    }))
}

/// Runs `work` inside `namespace` (see [`spawn_in_namespace`]) and waits for it.
pub fn in_namespace<T, F>(namespace: &str, work: F) -> Result<T, TestbedError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let handle = spawn_in_namespace(namespace, work)?;
    match handle.join() {
        Ok(result) => result.map_err(|source| TestbedError::Enter {
            namespace: namespace.to_string(),
            source,
        }),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn sysctl_off_ipv6(interface: &str) {
    // Root-side links carry no addresses of their own; without IPv6 they send no router
    // solicitations or MLD reports that would show up as drops.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"),
        "1",
    );
}

fn ip(args: &[&str]) -> Result<Output, TestbedError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(TestbedError::Spawn)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(TestbedError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn named<'a>(hosts: &'a [Host], name: &str) -> Option<&'a Host> {
    hosts.iter().find(|h| h.name == name)
}

/// Commands worth trying on `hosts`, a testbed built from `policy`, with a daemon enforcing
/// it that `cli` reaches (the `firewall` binary, with its `--socket`): the traffic of
/// [`traffic_hints`], then the daemon's counters and its last drops.
pub fn hints(hosts: &[Host], policy: &Policy, cli: &str) -> Vec<String> {
    let mut hints = traffic_hints(hosts, policy, cli);
    hints.push(format!(
        "{cli} stats   # counters per reason, rule and dropped app pair"
    ));
    hints.push(format!(
        "{cli} flows --verdict drop   # the last drops, with apps and reasons"
    ));
    hints
}

/// A listener and a connection for the first TCP rule between two `hosts`, one to a port
/// no rule allows, and the trace that tells why that one is dropped; none when `policy` has
/// no such rule. Traffic uses only bash and python3.
fn traffic_hints(hosts: &[Host], policy: &Policy, cli: &str) -> Vec<String> {
    use crate::policy::Protocol;
    let name_of = |id| policy.identity_name(id).unwrap_or("");
    let host = |name| named(hosts, name);
    for rule in &policy.rules {
        let Protocol::Tcp(ports) = &rule.protocol else {
            continue;
        };
        let (Some(src), Some(dst)) = (host(name_of(rule.source)), host(name_of(rule.destination)))
        else {
            continue;
        };
        let Some(IpAddr::V4(address)) = dst.addresses.iter().find(|a| a.is_ipv4()).copied() else {
            continue;
        };
        let port = ports.as_ref().map_or(80, |p| p.start);
        let allowed = |p: u16| {
            policy.rules.iter().any(|r| {
                r.source == rule.source
                    && r.destination == rule.destination
                    && match &r.protocol {
                        Protocol::Tcp(None) | Protocol::All => true,
                        Protocol::Tcp(Some(range)) => range.start <= p && p <= range.end,
                        _ => false,
                    }
            })
        };
        let denied = (1..=u16::MAX).find(|p| *p > port && !allowed(*p));
        let probe = |p: u16| {
            format!(
                "ip netns exec {} timeout 3 bash -c '</dev/tcp/{address}/{p}' && echo connected || echo refused-or-dropped",
                src.namespace
            )
        };
        let mut hints = vec![
            format!(
                "ip netns exec {} python3 -m http.server {port} --bind {address} &   # listener on {}",
                dst.namespace, dst.name
            ),
            format!(
                "{}   # allowed: {}",
                probe(port),
                policy.describe_rule(rule)
            ),
        ];
        if let Some(p) = denied {
            hints.push(format!(
                "ip netns exec {} python3 -m http.server {p} --bind {address} &   # second listener",
                dst.namespace
            ));
            hints.push(format!("{}   # no rule allows port {p}: dropped", probe(p)));
            hints.push(format!(
                "{cli} traceflow --source-app {} --destination-app {} --protocol tcp --port {p}   # why port {p} is dropped",
                src.name, dst.name
            ));
        }
        return hints;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI: &str = "/bin/firewall --socket /tmp/s.sock";

    /// Hints for frontend (198.18.1.10) and backend (198.18.2.10) under `policies`.
    fn hints_for(policies: &str) -> Vec<String> {
        let policy = crate::policy::parse_str(
            &format!(
                "apps:\n\
                 \x20 frontend: {{ips: [198.18.1.10]}}\n\
                 \x20 backend: {{ips: [198.18.2.10]}}\n\
                 policies:\n{policies}"
            ),
            "hints.yaml",
        )
        .expect("policy");
        let host = |name: &str, address: &str| Host {
            name: name.into(),
            namespace: format!("fw-t-{name}"),
            interface: format!("fw-t-{name}-v"),
            addresses: vec![address.parse().expect("address")],
        };
        let hosts = [
            host("frontend", "198.18.1.10"),
            host("backend", "198.18.2.10"),
        ];
        hints(&hosts, &policy, CLI)
    }

    const DAEMON_HINTS: [&str; 2] = [
        "/bin/firewall --socket /tmp/s.sock stats   # counters per reason, rule and dropped app pair",
        "/bin/firewall --socket /tmp/s.sock flows --verdict drop   # the last drops, with apps and reasons",
    ];

    #[test]
    fn hints_try_the_first_tcp_rule_a_denied_port_and_the_trace_that_explains_it() {
        let hints = hints_for(
            "\x20 - {source: frontend, destination: backend, protocol: udp, ports: 53}\n\
             \x20 - {source: frontend, destination: backend, protocol: tcp, ports: 8081-8082}\n",
        );
        assert_eq!(hints.len(), 7, "{hints:#?}");
        assert!(
            hints[0].starts_with("ip netns exec fw-t-backend python3 -m http.server 8081"),
            "{hints:#?}"
        );
        assert!(
            hints[1].contains("fw-t-frontend") && hints[1].contains("/dev/tcp/198.18.2.10/8081"),
            "{hints:#?}"
        );
        // 8082 is allowed too: the first port past the range is the denied one.
        assert!(hints[3].contains("/dev/tcp/198.18.2.10/8083"), "{hints:#?}");
        assert!(
            hints[4].starts_with(
                "/bin/firewall --socket /tmp/s.sock traceflow --source-app frontend \
                 --destination-app backend --protocol tcp --port 8083"
            ),
            "{hints:#?}"
        );
        assert_eq!(hints[5..], DAEMON_HINTS, "{hints:#?}");
    }

    #[test]
    fn no_tcp_rule_between_two_hosts_gives_only_the_daemon_hints() {
        let hints = hints_for(
            "\x20 - {source: frontend, destination: backend, protocol: udp, ports: 53}\n",
        );
        assert_eq!(hints, DAEMON_HINTS);
    }
}
