//! Userspace side of the firewall: the policy compiler, the loader that fills the datapath's
//! maps, attachment to interfaces, packet replay, and test topologies.

pub mod api;
pub mod attach;
pub mod bench;
pub mod capture;
pub mod client;
pub mod conntrack;
pub mod daemon;
pub mod datapath;
pub mod events;
pub mod flows;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod replay;
pub mod run;
pub mod stats;
pub mod store;
pub mod testbed;
pub mod traceflow;
pub mod update;
