//! Userspace side of the firewall: the policy compiler, the loader that fills the datapath's
//! maps, attachment to interfaces, packet replay, and test topologies.

pub mod attach;
pub mod bench;
pub mod capture;
pub mod conntrack;
pub mod datapath;
pub mod events;
pub mod policy;
pub mod replay;
pub mod run;
pub mod testbed;
pub mod update;
