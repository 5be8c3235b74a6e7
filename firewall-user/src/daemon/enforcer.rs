//! The live datapath of the daemon: programs loaded against pinned maps, TCX links pinned
//! per interface, and policy changes applied as differences.
//!
//! Pins, under `ROOT/v<layout>/`: every map by name, and `links/<ifindex>-<hook>-<ifname>`
//! for each attachment. Because maps and links are pinned, enforcement outlives the process:
//! a daemon killed with SIGKILL leaves the programs attached and the maps filled. The next
//! daemon reuses the maps (after checking their layout), loads its own programs, and swaps
//! them into the pinned links atomically (`BPF_LINK_UPDATE`): no packet goes unfiltered.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use aya::programs::{
    SchedClassifier,
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, TcAttachType},
};
use firewall_common::Hook;
use thiserror::Error;

use crate::{
    datapath::{Datapath, DatapathError, LoadOptions, MapFill, pinning},
    policy::CompiledPolicy,
    update::{self, UpdateSummary},
};

/// Errors of the enforcer.
#[derive(Debug, Error)]
pub enum EnforcerError {
    /// Loading, checking or writing the datapath failed.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// A pin directory could not be made or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Attaching, replacing or pinning a link failed.
    #[error("interface {interface} ({hook}): {message}")]
    Link {
        /// The interface.
        interface: String,
        /// The hook.
        hook: &'static str,
        /// What failed.
        message: String,
    },
}

/// One attached interface.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Attached {
    /// Interface name.
    pub interface: String,
    /// Interface index.
    pub ifindex: u32,
}

/// The daemon's datapath.
pub struct Enforcer {
    datapath: Datapath,
    links_dir: PathBuf,
    attached: BTreeMap<String, u32>,
    enforced: CompiledPolicy,
}

const HOOKS: [(Hook, TcAttachType, &str); 2] = [
    (Hook::TcIngress, TcAttachType::Ingress, "ingress"),
    (Hook::TcEgress, TcAttachType::Egress, "egress"),
];

impl Enforcer {
    /// Loads the programs against the maps pinned under `root` (creating them on the first
    /// start) and takes over every link a previous daemon pinned: each is switched to the
    /// new programs atomically if its interface still exists, and removed otherwise.
    ///
    /// # Errors
    /// A pinned map with another layout ([`DatapathError::Layout`]), or a failed load.
    pub fn open(root: &Path, options: &LoadOptions) -> Result<Enforcer, EnforcerError> {
        let dir = pinning::directory(root);
        let links_dir = dir.join("links");
        fs::create_dir_all(&links_dir).map_err(|source| EnforcerError::Io {
            action: "creating",
            path: links_dir.display().to_string(),
            source,
        })?;
        let datapath = Datapath::load_pinned(options, &dir)?;
        let enforced = datapath.current_entries()?;
        let mut enforcer = Enforcer {
            datapath,
            links_dir,
            attached: BTreeMap::new(),
            enforced,
        };
        enforcer.adopt_links()?;
        Ok(enforcer)
    }

    /// What the maps hold now.
    pub fn enforced(&self) -> &CompiledPolicy {
        &self.enforced
    }

    /// How full the ipcache and policy maps and the rule id space are, for what they hold.
    pub fn policy_fill(&self) -> [MapFill; 7] {
        self.datapath.policy_fill(&self.enforced)
    }

    /// The datapath, for counters and conntrack.
    pub fn datapath(&mut self) -> &mut Datapath {
        &mut self.datapath
    }

    /// Checks that `desired` fits the maps, before anything is stored or written.
    ///
    /// # Errors
    /// [`DatapathError::Capacity`] naming the map and its limit.
    pub fn check_capacity(&self, desired: &CompiledPolicy) -> Result<(), DatapathError> {
        self.datapath.check_capacity(desired)
    }

    /// Makes the maps hold `desired` (see [`update::update`]): a small change writes only the
    /// difference, additions (and changed values) first, removals after, so traffic both
    /// allow never sees a moment of denial; a change of more than [`update::SWAP_THRESHOLD`]
    /// entries (a policy import) is swapped in whole, atomically for packets. Either way the
    /// policy revision is bumped so tracked flows of removed rules stop.
    ///
    /// # Errors
    /// A map refused a write; the additions already made are rolled back. A swap also fails
    /// with [`DatapathError::Capacity`] when the maps cannot hold the old and the new policy
    /// at once; the old policy stays enforced.
    pub fn update(&mut self, desired: &CompiledPolicy) -> Result<UpdateSummary, DatapathError> {
        let summary = update::update(&mut self.datapath, &self.enforced, desired)?;
        if summary.swapped {
            log::info!(
                "policy swapped in whole: {} entries added, {} removed, revision {}",
                summary.added,
                summary.removed,
                summary.revision
            );
        }
        self.enforced = desired.clone();
        Ok(summary)
    }

    /// Interfaces attached now.
    pub fn attached(&self) -> Vec<Attached> {
        self.attached
            .iter()
            .map(|(interface, ifindex)| Attached {
                interface: interface.clone(),
                ifindex: *ifindex,
            })
            .collect()
    }

    /// Attaches TC ingress and egress to `interface` and pins both links.
    ///
    /// # Errors
    /// When the kernel refuses the attachment or the pin.
    pub fn attach(&mut self, interface: &str, ifindex: u32) -> Result<(), EnforcerError> {
        for (hook, attach_type, suffix) in HOOKS {
            let fail = |message: String| EnforcerError::Link {
                interface: interface.to_string(),
                hook: hook.name(),
                message,
            };
            let program: &mut SchedClassifier = self.datapath.tc(hook)?;
            let id = program
                .attach(interface, attach_type)
                .map_err(|e| fail(e.to_string()))?;
            let link = program.take_link(id).map_err(|e| fail(e.to_string()))?;
            let link = FdLink::try_from(link).map_err(|e| fail(e.to_string()))?;
            let path = self.links_dir.join(link_name(interface, ifindex, suffix));
            // The pinned link keeps the attachment after our descriptor closes.
            link.pin(&path)
                .map_err(|e| fail(format!("pinning at {}: {e:?}", path.display())))?;
        }
        self.attached.insert(interface.to_string(), ifindex);
        Ok(())
    }

    /// Detaches from `interface` (if it still exists) by removing its link pins.
    pub fn detach(&mut self, interface: &str) {
        if let Some(ifindex) = self.attached.remove(interface) {
            for (_, _, suffix) in HOOKS {
                let _ = fs::remove_file(self.links_dir.join(link_name(interface, ifindex, suffix)));
            }
        }
    }

    /// Brings the attachments in line with the host: attaches to matching interfaces not yet
    /// attached, forgets interfaces that went away (or were replaced by one with another
    /// index), detaches from ones no longer matching. Returns what changed, for the log.
    pub fn sync_interfaces(
        &mut self,
        host: &BTreeMap<String, u32>,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut changes = Vec::new();
        let stale: Vec<String> = self
            .attached
            .iter()
            .filter(|(name, index)| host.get(*name) != Some(index) || !wanted(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.detach(&name);
            changes.push(format!("detached from {name}"));
        }
        for (name, index) in host {
            if wanted(name) && !self.attached.contains_key(name) {
                match self.attach(name, *index) {
                    Ok(()) => changes.push(format!("attached to {name}")),
                    Err(e) => changes.push(format!("cannot attach: {e}")),
                }
            }
        }
        changes
    }

    /// Takes over the links pinned by an earlier daemon (see [`Enforcer::open`]).
    fn adopt_links(&mut self) -> Result<(), EnforcerError> {
        let host = super::interfaces::host_interfaces();
        let entries = fs::read_dir(&self.links_dir).map_err(|source| EnforcerError::Io {
            action: "reading",
            path: self.links_dir.display().to_string(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((interface, ifindex, hook)) = parse_link_name(&name) else {
                let _ = fs::remove_file(&path);
                continue;
            };
            if host.get(&interface) != Some(&ifindex) {
                // The interface is gone (or its name now belongs to another device).
                let _ = fs::remove_file(&path);
                continue;
            }
            let fail = |message: String| EnforcerError::Link {
                interface: interface.clone(),
                hook: hook.name(),
                message,
            };
            let pinned = PinnedLink::from_pin(&path).map_err(|e| fail(e.to_string()))?;
            let link = SchedClassifierLink::try_from(FdLink::from(pinned))
                .map_err(|e| fail(e.to_string()))?;
            let program = self.datapath.tc(hook)?;
            let id = program
                .attach_to_link(link)
                .map_err(|e| fail(e.to_string()))?;
            // Keep the link out of the program's list: dropping the program would detach it.
            let link = program.take_link(id).map_err(|e| fail(e.to_string()))?;
            drop(FdLink::try_from(link).map_err(|e| fail(e.to_string()))?);
            self.attached.insert(interface, ifindex);
        }
        Ok(())
    }
}

/// The pin name of a link: `<ifindex>-<hook>-<interface>`. bpffs refuses names with a dot,
/// which interface names may have (`eth0.100`), so dots become colons (which interface names
/// cannot have).
fn link_name(interface: &str, ifindex: u32, suffix: &str) -> String {
    format!("{ifindex}-{suffix}-{}", interface.replace('.', ":"))
}

fn parse_link_name(name: &str) -> Option<(String, u32, Hook)> {
    let mut parts = name.splitn(3, '-');
    let index = parts.next()?.parse().ok()?;
    let hook = match parts.next()? {
        "ingress" => Hook::TcIngress,
        "egress" => Hook::TcEgress,
        _ => return None,
    };
    Some((parts.next()?.replace(':', "."), index, hook))
}

/// Removes every pin of the daemon under `root`: the links first (which detaches the
/// programs), then the maps. Enforcement stops.
///
/// # Errors
/// When a pin exists but cannot be removed.
pub fn uninstall(root: &Path) -> Result<Vec<String>, EnforcerError> {
    let mut removed = Vec::new();
    if !root.exists() {
        return Ok(removed);
    }
    let remove = |path: &Path, removed: &mut Vec<String>| -> Result<(), EnforcerError> {
        fs::remove_file(path).map_err(|source| EnforcerError::Io {
            action: "removing",
            path: path.display().to_string(),
            source,
        })?;
        removed.push(path.display().to_string());
        Ok(())
    };
    let layouts = fs::read_dir(root).map_err(|source| EnforcerError::Io {
        action: "reading",
        path: root.display().to_string(),
        source,
    })?;
    for layout in layouts.flatten().filter(|e| e.path().is_dir()) {
        let links = layout.path().join("links");
        if let Ok(entries) = fs::read_dir(&links) {
            for entry in entries.flatten() {
                remove(&entry.path(), &mut removed)?;
            }
            let _ = fs::remove_dir(&links);
        }
        if let Ok(entries) = fs::read_dir(layout.path()) {
            for entry in entries.flatten().filter(|e| !e.path().is_dir()) {
                remove(&entry.path(), &mut removed)?;
            }
        }
        let _ = fs::remove_dir(layout.path());
    }
    let _ = fs::remove_dir(root);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pin_names_round_trip_and_hold_no_dot() {
        let name = link_name("eth0.100-a", 42, "egress");
        assert!(!name.contains('.'), "{name}");
        assert_eq!(
            parse_link_name(&name),
            Some(("eth0.100-a".into(), 42, Hook::TcEgress))
        );
        assert_eq!(parse_link_name("junk"), None);
        assert_eq!(parse_link_name("1-sideways-eth0"), None);
    }
}
