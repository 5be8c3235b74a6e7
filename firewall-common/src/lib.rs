//! Types shared by the eBPF datapath (`firewall-ebpf`) and userspace (`firewall-user`).
//!
//! Everything here is `#[repr(C)]` and free of implicit padding, so a value written by one side
//! reads back bit for bit on the other. Map names live here too: the loader finds maps by the
//! same constants the programs declare them with.
#![no_std]
#![warn(missing_docs)]

pub mod conntrack;
pub mod event;
pub mod identity;
pub mod maps;
pub mod reason;
pub mod trace;

pub use event::{FlowEvent, Hook};
pub use identity::Identity;
pub use maps::{Counter, Decision, PolicyKey, PolicyValue, RuleCounter};
pub use reason::{Reason, Verdict};
