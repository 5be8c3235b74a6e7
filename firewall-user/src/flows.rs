//! Flow records: what the datapath reports through the `FLOW_EVENTS` ring for every dropped
//! packet and every flow the policy opens, turned into timestamped, named records that the
//! daemon keeps in memory, serves (`GET /v1/flows`, `firewall flows`) and writes to a log.
//!
//! - [`record`]: one [`FlowRecord`], decoded from a [`FlowEvent`](firewall_common::FlowEvent);
//! - [`names`]: the names records carry, indexed from the policy in force and refreshed when
//!   it changes, so no record waits for the controller's lock;
//! - [`filter`]: what `GET /v1/flows` selects (`verdict`, `app`, `limit`, `follow`);
//! - [`hub`]: the last records in memory and the fan-out to followers;
//! - [`logfile`]: the JSON-lines flow log, rotated by size, written on its own thread;
//! - [`collector`]: the daemon task that drains the ring into the hub and the log;
//! - [`unreported`]: the datapath's counts of records it did not deliver;
//! - [`options`]: the daemon's flags for all of the above.
//!
//! The datapath limits records per CPU (`Config::event_interval_ns`, `event_burst`): a record
//! over the rate is counted as *rate-limited*, one that finds the ring full as *lost*. Every
//! reply states both, so a reader knows how much it is not seeing.

use std::{io, path::PathBuf};

use thiserror::Error;

use crate::datapath::DatapathError;

pub mod collector;
pub mod filter;
pub mod hub;
pub mod logfile;
pub mod names;
pub mod options;
pub mod record;
pub mod unreported;

pub use collector::{Collecting, Collector, start};
pub use filter::{FlowFilter, FlowQuery, FlowRequest};
pub use hub::{FlowHub, FollowEvent, Follower};
pub use logfile::{FlowLog, FlowLogOptions, FlowLogSummary};
pub use names::NameTable;
pub use options::{FlowArgs, FlowOptionError, FlowOptions};
pub use record::{Endpoint, FlowRecord, FlowVerdict, Icmp, WallClock};
pub use unreported::{FlowCounts, FlowList, StreamCounts, StreamLine, Unreported};

/// Why flow records could not be set up.
#[derive(Debug, Error)]
pub enum FlowError {
    /// The flow log path names no file (it is empty, a directory, or ends in `..`).
    #[error("flow log {}: not a file path", .0.display())]
    LogPath(PathBuf),
    /// The flow log cannot be created or opened for appending (the source says why).
    #[error("flow log {}", .path.display())]
    LogFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A flow log setting is out of range.
    #[error("flow log: {0}")]
    LogSetting(String),
    /// The thread that writes the log could not be started.
    #[error("starting the flow log writer: {0}")]
    LogThread(io::Error),
    /// The ring buffer could not be registered with the runtime.
    #[error("polling the flow record ring buffer: {0}")]
    Poll(io::Error),
    /// A clock could not be read.
    #[error("reading the clocks: {0}")]
    Clock(io::Error),
    /// A datapath map could not be reached.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

/// A record with only a verdict and the two ends' names, for tests.
#[cfg(test)]
pub(crate) fn sample(verdict: FlowVerdict, source: &str, destination: &str) -> FlowRecord {
    let end = |name: &str| Endpoint {
        name: (!name.is_empty()).then(|| name.to_owned()),
        ..Endpoint::default()
    };
    FlowRecord {
        time: String::new(),
        host: "node-7".into(),
        hook: "tc-ingress".into(),
        interface: "fwfl0".into(),
        ifindex: 7,
        verdict,
        reason: "policy".into(),
        reason_code: 1,
        protocol: Some("udp".into()),
        source: end(source),
        destination: end(destination),
        icmp: None,
        tcp_flags: None,
        length: 60,
        rule_id: None,
        rule: None,
        default_deny: false,
    }
}
