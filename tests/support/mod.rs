//! Shared by the integration tests: packet builders and the test policy.
#![allow(dead_code)]

pub mod api;
pub mod daemon;
pub mod packets;
pub mod replay;
pub mod scratch;
pub mod traffic;

/// The policy most datapath tests run against. Rule ids are 1-based in file order.
pub const POLICY: &str = r#"
apps:
  frontend: {org: bank, space: prod, ips: [198.18.1.10, "2001:db8:1::10"]}
  backend:  {org: bank, space: prod, ips: [198.18.2.10, "2001:db8:2::10"]}
  monitor:  {ips: [198.18.3.10]}
networks:
  legacy-db: {cidrs: [198.19.10.0/24]}
  partner:   {cidrs: ["2001:db8:99::/48"]}
policies:
  - {source: frontend, destination: backend, protocol: tcp, ports: 8081}             # 1
  - {source: frontend, destination: backend, protocol: tcp, ports: 9000-9010}        # 2
  - {source: frontend, destination: backend, protocol: icmp}                         # 3
  - {source: backend, destination: legacy-db, protocol: tcp, ports: 1521}            # 4
  - {source: frontend, destination: backend, protocol: udp, ports: 53}               # 5
  - {source: monitor, destination: backend, protocol: icmp, type: 8}                 # 6
  - {source: frontend, destination: backend, protocol: sctp, ports: 3868}            # 7
  - {source: frontend, destination: backend, protocol: icmpv6, type: 128, code: 0}   # 8
  - {source: monitor, destination: frontend, protocol: all}                          # 9
  - {source: backend, destination: partner, protocol: tcp, ports: 443}               # 10
  - {source: world, destination: frontend, protocol: tcp, ports: 443}                # 11
  - {source: monitor, destination: legacy-db, protocol: tcp, ports: 1-65535}         # 12
"#;

pub const FRONTEND: &str = "198.18.1.10";
pub const BACKEND: &str = "198.18.2.10";
pub const MONITOR: &str = "198.18.3.10";
pub const FRONTEND6: &str = "2001:db8:1::10";
pub const BACKEND6: &str = "2001:db8:2::10";
