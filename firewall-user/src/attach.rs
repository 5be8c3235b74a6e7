//! Attaching the datapath to interfaces: TCX on kernels from 6.6, a clsact qdisc before that,
//! and XDP in place of TC ingress when asked.

use aya::{
    programs::{
        tc::{self, TcAttachType},
        xdp::XdpMode,
    },
    util::KernelVersion,
};
use firewall_common::Hook;
use thiserror::Error;

use crate::datapath::{Datapath, DatapathError};

/// Errors attaching.
#[derive(Debug, Error)]
pub enum AttachError {
    /// The program could not be found.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// Attaching to an interface failed.
    #[error("cannot attach {hook} to interface {interface}: {source}")]
    Attach {
        /// The interface.
        interface: String,
        /// Which hook.
        hook: &'static str,
        /// What failed.
        source: aya::programs::ProgramError,
    },
}

/// Where the programs went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// Hook.
    pub hook: Hook,
}

/// Attaches to every interface: TC egress always, and TC ingress or (with `xdp`) XDP.
/// Links stay attached as long as `datapath` lives; dropping it detaches them.
///
/// # Errors
/// The first interface that fails; the attachments made before it are detached when the
/// caller drops the datapath.
pub fn attach(
    datapath: &mut Datapath,
    interfaces: &[String],
    xdp: bool,
) -> Result<Vec<Attachment>, AttachError> {
    let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
    let mut attached = Vec::new();
    for interface in interfaces {
        if !tcx {
            // Fails when the interface already has one, which is fine; any real problem
            // surfaces in the attach below.
            if let Err(e) = tc::qdisc_add_clsact(interface) {
                log::debug!("clsact on {interface}: {e}");
            }
        }
        let fail = |hook: Hook| {
            let interface = interface.clone();
            move |source| AttachError::Attach {
                interface,
                hook: hook.name(),
                source,
            }
        };
        if xdp {
            datapath
                .xdp()?
                .attach(interface, XdpMode::Default)
                .map_err(fail(Hook::Xdp))?;
            attached.push(Attachment {
                interface: interface.clone(),
                hook: Hook::Xdp,
            });
        } else {
            datapath
                .tc(Hook::TcIngress)?
                .attach(interface, TcAttachType::Ingress)
                .map_err(fail(Hook::TcIngress))?;
            attached.push(Attachment {
                interface: interface.clone(),
                hook: Hook::TcIngress,
            });
        }
        datapath
            .tc(Hook::TcEgress)?
            .attach(interface, TcAttachType::Egress)
            .map_err(fail(Hook::TcEgress))?;
        attached.push(Attachment {
            interface: interface.clone(),
            hook: Hook::TcEgress,
        });
    }
    Ok(attached)
}
