//! Observation points of a trace, built from what the datapath reported for the packet and
//! named from the policy the daemon enforces.

use std::net::IpAddr;

use firewall_common::{FlowEvent, Hook, Identity, Reason, Verdict, identity::reserved};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    events,
    flows::NameTable,
    policy::{CompiledPolicy, Policy, Rule},
};

/// How many near rules a default deny lists at most.
pub const NEAREST_RULES: usize = 5;

/// A synthetic trace: where it ran and what the packet met, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReport {
    /// Host name of the daemon that ran the trace.
    pub host: String,
    /// The trace's id on that daemon.
    pub trace_id: u32,
    /// `forwarded` or `dropped`, as the program returned it.
    pub verdict: String,
    /// The observation points, in the order the packet meets them.
    pub observations: Vec<Observation>,
}

/// One observation point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Observation {
    /// The packet as the datapath parsed it, and where it was injected.
    Injected {
        /// The hook whose program ran it.
        hook: String,
        /// Its headers.
        packet: PacketView,
    },
    /// Who sent it.
    SourceIdentity(IdentityView),
    /// Who it is for.
    DestinationIdentity(IdentityView),
    /// What connection tracking knew of it.
    Conntrack {
        /// `new`, `established`, `reply`, `related`, `fragment`, `revoked`, `untracked` or
        /// `not-looked-up`.
        state: String,
        /// In words.
        detail: String,
    },
    /// What the policy said.
    Policy(PolicyView),
    /// The verdict and its reason.
    Verdict {
        /// `forwarded` or `dropped`.
        verdict: String,
        /// Reason name.
        reason: String,
        /// Reason code.
        code: u8,
    },
}

/// A packet's headers as the datapath parsed them; fields it could not read are absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketView {
    /// Source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// Destination address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<IpAddr>,
    /// Protocol name (`tcp`, `udp`, ...) or `proto N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Source port (TCP, UDP, SCTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    /// Destination port (TCP, UDP, SCTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    /// ICMP type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// TCP flags as letters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// Frame length in bytes.
    pub length: u32,
}

/// An end of the packet: its identity, what the identity stands for, and the ipcache prefix
/// that gave it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    /// The identity number; absent when the datapath did not look the address up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// `app`, `network`, `world` or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The app or network name, or `world`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The app's org.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The app's space.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// The ipcache prefix that matched the address; absent for the world (no prefix
    /// matched) or when not looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// What the policy said of the packet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// The rule that allowed the packet or its flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<u32>,
    /// That rule, as a policy file says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Whether the packet fell to the default deny: no rule allows it.
    pub default_deny: bool,
    /// In words.
    pub detail: String,
    /// For a default deny: the rules closest to what was asked (same apps on other ports,
    /// other sources to the same port, ...), nearest first.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub nearest_rules: Vec<RuleView>,
}

/// A rule by id and text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    /// Rule id.
    pub rule_id: u32,
    /// The rule as a policy file says it.
    pub rule: String,
}

/// The observation points of `event`, the datapath's report of a synthetic packet run at
/// `hook`, named from `names` (the policy the daemon enforces) with prefixes from `enforced`
/// (what the maps hold).
pub fn observations(
    event: &FlowEvent,
    hook: Hook,
    names: &NameTable,
    enforced: &CompiledPolicy,
) -> Vec<Observation> {
    let policy = names.policy();
    let reason = Reason::from_code(event.reason);
    let packet = packet_view(event);
    let looked_up = event.source_identity != reserved::UNSET;
    let identity = |id: Identity, address: Option<IpAddr>| {
        if looked_up {
            identity_view(id, address, names, enforced)
        } else {
            IdentityView::default()
        }
    };
    vec![
        Observation::Injected {
            hook: hook.name().to_owned(),
            packet: packet.clone(),
        },
        Observation::SourceIdentity(identity(event.source_identity, packet.source)),
        Observation::DestinationIdentity(identity(event.destination_identity, packet.destination)),
        conntrack(reason, event),
        Observation::Policy(policy_view(reason, event, &packet, policy)),
        verdict(reason, event.reason),
    ]
}

/// The headers of a reported packet.
pub fn packet_view(event: &FlowEvent) -> PacketView {
    let mut view = PacketView {
        source: events::address(event.family, &event.source_address),
        destination: events::address(event.family, &event.destination_address),
        length: event.length,
        ..PacketView::default()
    };
    view.protocol = view.source.map(|_| events::protocol_name(event.protocol));
    // A malformed packet's transport header was not read: its ports are not known.
    if view.source.is_none() || event.reason == Reason::Malformed as u8 {
        return view;
    }
    match event.protocol {
        1 | 58 => {
            view.icmp_type = Some((event.destination_port >> 8) as u8);
            view.icmp_code = Some(event.destination_port as u8);
        }
        6 | 17 | 132 => {
            view.source_port = Some(event.source_port);
            view.destination_port = Some(event.destination_port);
        }
        _ => {}
    }
    if event.protocol == 6 {
        view.tcp_flags = Some(tcp_flags(event.tcp_flags));
    }
    view
}

/// TCP flags as letters, in the order S A F R P U; `-` for none.
pub fn tcp_flags(flags: u8) -> String {
    let letters: String = [
        (0x02, 'S'),
        (0x10, 'A'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x20, 'U'),
    ]
    .iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, letter)| *letter)
    .collect();
    if letters.is_empty() {
        "-".into()
    } else {
        letters
    }
}

/// Names an identity and finds the ipcache prefix that gave it to `address`.
pub fn identity_view(
    id: Identity,
    address: Option<IpAddr>,
    names: &NameTable,
    enforced: &CompiledPolicy,
) -> IdentityView {
    let prefix = address.and_then(|a| longest_prefix(a, enforced));
    let mut view = IdentityView {
        identity: Some(id),
        prefix: prefix.map(|p| p.to_string()),
        kind: Some("unknown".into()),
        ..IdentityView::default()
    };
    if let Some(endpoint) = names.endpoint(id) {
        view.kind = Some(endpoint.kind.name().into());
        view.name = Some(endpoint.name.into());
        view.org = endpoint.org.map(Into::into);
        view.space = endpoint.space.map(Into::into);
    }
    view
}

/// The longest ipcache prefix holding `address`, as the datapath's lookup finds it.
fn longest_prefix(address: IpAddr, enforced: &CompiledPolicy) -> Option<IpNet> {
    match address {
        IpAddr::V4(a) => enforced
            .ipcache_v4
            .iter()
            .filter(|(net, _)| net.contains(&a))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(net, _)| IpNet::V4(*net)),
        IpAddr::V6(a) => enforced
            .ipcache_v6
            .iter()
            .filter(|(net, _)| net.contains(&a))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(net, _)| IpNet::V6(*net)),
    }
}

fn conntrack(reason: Option<Reason>, event: &FlowEvent) -> Observation {
    let (state, detail) = conntrack_state(reason, event);
    Observation::Conntrack {
        state: state.into(),
        detail: detail.into(),
    }
}

/// What connection tracking knew of a packet, by the reason the datapath gave: a short
/// state and a sentence.
pub fn conntrack_state(reason: Option<Reason>, event: &FlowEvent) -> (&'static str, &'static str) {
    match reason {
        Some(Reason::Policy) if opens(event) => {
            ("new", "no tracked flow; a live packet would open one")
        }
        Some(Reason::Policy) => ("untracked", "not tracked: judged alone by the policy"),
        Some(Reason::DeniedByDefault) => ("new", "no tracked flow"),
        Some(Reason::Established) => ("established", "a tracked flow in this direction"),
        Some(Reason::Reply) => ("reply", "the reply direction of a tracked flow"),
        Some(Reason::Related) => ("related", "an ICMP error about a tracked flow"),
        Some(Reason::UntrackedIcmpError) => ("untracked", "an ICMP error about no tracked flow"),
        Some(Reason::Revoked) => (
            "revoked",
            "a tracked flow whose rule is gone; a live packet would close it",
        ),
        Some(Reason::FragmentOfAllowed | Reason::FragmentOfDenied | Reason::Fragment) => (
            "fragment",
            "a later fragment: it follows its first fragment",
        ),
        Some(r) if r.verdict() == Verdict::Allow => (
            "not-looked-up",
            "infrastructure traffic passes without connection tracking",
        ),
        _ => (
            "not-looked-up",
            "the packet was dropped before connection tracking",
        ),
    }
}

/// Whether an allowed packet opens a flow, as the datapath decides it: not a lone RST, not
/// an echo reply, not an ICMP message other than echo.
fn opens(event: &FlowEvent) -> bool {
    let icmp_type = (event.destination_port >> 8) as u8;
    match event.protocol {
        6 => event.tcp_flags & 0x04 == 0,
        1 => icmp_type == 8,
        58 => icmp_type == 128,
        _ => true,
    }
}

fn policy_view(
    reason: Option<Reason>,
    event: &FlowEvent,
    packet: &PacketView,
    policy: &Policy,
) -> PolicyView {
    let rule = (event.rule_id != 0)
        .then(|| policy.rule(event.rule_id))
        .flatten();
    let rule_text = rule.map(|r| policy.describe_rule(r));
    let asked = || asked(event, packet, policy);
    let mut view = PolicyView {
        rule_id: (event.rule_id != 0).then_some(event.rule_id),
        rule: rule_text.clone(),
        ..PolicyView::default()
    };
    let named = |id: u32| match &rule_text {
        Some(text) => format!("rule #{id}: {text}"),
        None => format!("rule #{id} (no longer in the policy)"),
    };
    view.detail = match reason {
        Some(Reason::Policy) => format!("allowed by {}", named(event.rule_id)),
        Some(Reason::Established | Reason::Reply | Reason::Related | Reason::FragmentOfAllowed) => {
            format!(
                "not looked up: the flow was allowed by {}",
                named(event.rule_id)
            )
        }
        Some(Reason::DeniedByDefault | Reason::Revoked) => {
            view.default_deny = true;
            view.nearest_rules = nearest(event, policy);
            let prefix = if reason == Some(Reason::Revoked) {
                "the flow's rule is gone; default deny"
            } else {
                "default deny"
            };
            format!("{prefix}: no rule allows {}", asked())
        }
        Some(Reason::FragmentOfDenied) => "not looked up: its first fragment was dropped".into(),
        Some(r) if r.verdict() == Verdict::Allow => {
            format!("not looked up: {} traffic passes without a rule", r.name())
        }
        _ => "not looked up: the packet was dropped before the policy".into(),
    };
    view
}

/// What the packet asked the policy for, as a rule would say it: `frontend -> backend tcp 8082`.
fn asked(event: &FlowEvent, packet: &PacketView, policy: &Policy) -> String {
    let name = |id: Identity| {
        policy
            .identity_name(id)
            .map_or_else(|| format!("identity {id}"), str::to_owned)
    };
    let protocol = packet.protocol.clone().unwrap_or_else(|| "?".into());
    let what = match (packet.destination_port, packet.icmp_type) {
        (Some(port), _) => format!("{protocol} {port}"),
        (None, Some(t)) => format!("{protocol} type {t} code {}", packet.icmp_code.unwrap_or(0)),
        _ => protocol,
    };
    format!(
        "{} -> {} {what}",
        name(event.source_identity),
        name(event.destination_identity)
    )
}

/// The rules nearest to what a denied packet asked for: the same two ends on other ports or
/// protocols first, then other sources to the same destination and protocol, then the same
/// source to other destinations with the protocol.
fn nearest(event: &FlowEvent, policy: &Policy) -> Vec<RuleView> {
    let (source, destination) = (event.source_identity, event.destination_identity);
    let same_protocol = |rule: &Rule| rule.protocol.number().is_none_or(|p| p == event.protocol);
    let mut ranked: Vec<(u8, &Rule)> = policy
        .rules
        .iter()
        .filter_map(|rule| {
            let rank = if rule.source == source && rule.destination == destination {
                0
            } else if rule.destination == destination && same_protocol(rule) {
                1
            } else if rule.source == source && same_protocol(rule) {
                2
            } else {
                return None;
            };
            Some((rank, rule))
        })
        .collect();
    ranked.sort_by_key(|(rank, rule)| (*rank, rule.id));
    ranked
        .into_iter()
        .take(NEAREST_RULES)
        .map(|(_, rule)| RuleView {
            rule_id: rule.id,
            rule: policy.describe_rule(rule),
        })
        .collect()
}

fn verdict(reason: Option<Reason>, code: u8) -> Observation {
    let dropped = reason.is_none_or(|r| r.verdict() == Verdict::Drop);
    Observation::Verdict {
        verdict: if dropped { "dropped" } else { "forwarded" }.into(),
        reason: reason.map_or("unknown", Reason::name).into(),
        code,
    }
}

#[cfg(test)]
mod tests;
