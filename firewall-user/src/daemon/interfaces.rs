//! Which interfaces the daemon enforces on: names or glob patterns given by the operator,
//! matched against the host's interfaces now and whenever netlink reports a link change.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

/// Interface patterns (`eth0`, `veth*`).
#[derive(Clone, Debug)]
pub struct Patterns(Vec<glob::Pattern>);

impl Patterns {
    /// Parses each pattern.
    ///
    /// # Errors
    /// The first pattern that is not a valid glob, with the reason.
    pub fn new(patterns: &[String]) -> Result<Patterns, String> {
        patterns
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| format!("interface pattern {p:?}: {e}")))
            .collect::<Result<_, _>>()
            .map(Patterns)
    }

    /// Whether `name` matches any pattern.
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|p| p.matches(name))
    }

    /// The patterns as given, for status output.
    pub fn as_strings(&self) -> Vec<String> {
        self.0.iter().map(|p| p.as_str().to_string()).collect()
    }
}

/// The host's interfaces now, name to index (`if_nameindex(3)`); none when the list
/// cannot be read.
pub fn host_interfaces() -> BTreeMap<String, u32> {
    let Ok(list) = nix::net::if_::if_nameindex() else {
        return BTreeMap::new();
    };
    list.iter()
        .map(|interface| {
            let name = interface.name().to_string_lossy().into_owned();
            (name, interface.index())
        })
        .collect()
}

/// Sends a unit on `changed` after every netlink link event (new, changed or removed
/// interface). The receiver rescans with [`host_interfaces`]: events may coalesce, a rescan
/// cannot miss one.
///
/// # Errors
/// When the netlink socket cannot be opened (needs CAP_NET_ADMIN).
pub fn watch(changed: mpsc::Sender<()>) -> std::io::Result<()> {
    let (connection, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    tokio::spawn(connection);
    tokio::spawn(async move {
        while messages.next().await.is_some() {
            // A full channel already holds a pending rescan; dropping this one loses nothing.
            let _ = changed.try_send(());
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_globs() {
        let p = Patterns::new(&["eth0".into(), "veth*".into()]).expect("valid patterns");
        assert!(p.matches("eth0"));
        assert!(p.matches("veth1234"));
        assert!(!p.matches("eth1"));
        assert!(!p.matches("lo"));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Patterns::new(&["veth[".into()]).expect_err("unclosed bracket");
        assert!(err.contains("veth["), "{err}");
    }

    #[test]
    fn loopback_is_listed() {
        assert!(host_interfaces().contains_key("lo"));
    }
}
