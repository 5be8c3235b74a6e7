//! Identities and rules: the ipcache and policy lookups.

use aya_ebpf::maps::lpm_trie::Key;
use firewall_common::{Identity, PolicyKey, Reason, identity::reserved};

use crate::{
    maps::{IPCACHE_HOSTS_V4, IPCACHE_HOSTS_V6, IPCACHE_V4, IPCACHE_V6, POLICY, POLICY_EXACT},
    parse::Flow,
    verdict::Outcome,
};

/// The identity of an address: the longest ipcache prefix holding it, or world.
#[inline(always)]
pub fn identity_of(family: u8, address: &[u8; 16]) -> Identity {
    // SAFETY (both hash lookups): the value is copied out at once.
    let found = if family == 4 {
        let v4 = [address[0], address[1], address[2], address[3]];
        unsafe { IPCACHE_HOSTS_V4.get(&v4) }
            .copied()
            .or_else(|| IPCACHE_V4.get(Key::new(32, v4)).copied())
    } else {
        unsafe { IPCACHE_HOSTS_V6.get(address) }
            .copied()
            .or_else(|| IPCACHE_V6.get(Key::new(128, *address)).copied())
    };
    found.unwrap_or(reserved::WORLD)
}

/// The rule allowing (source, destination, protocol, port), if any.
#[inline(always)]
pub fn rule_for(source: Identity, destination: Identity, protocol: u8, port: u16) -> Option<u32> {
    let key = PolicyKey::new(source, destination, protocol, port);
    // SAFETY: the value is copied out at once.
    let exact = unsafe { POLICY_EXACT.get(&key) }.copied();
    exact
        .or_else(|| POLICY.get(Key::new(PolicyKey::PREFIX_FULL, key)).copied())
        .map(|value| value.rule_id)
}

/// The policy's verdict on a packet, by its identities.
#[inline(always)]
pub fn decide(flow: &Flow) -> Outcome {
    let source_identity = identity_of(flow.family, &flow.source);
    let destination_identity = identity_of(flow.family, &flow.destination);
    match rule_for(
        source_identity,
        destination_identity,
        flow.protocol,
        flow.destination_port,
    ) {
        Some(rule_id) => Outcome {
            reason: Reason::Policy,
            rule_id,
            source_identity,
            destination_identity,
        },
        None => Outcome {
            reason: Reason::DeniedByDefault,
            rule_id: 0,
            source_identity,
            destination_identity,
        },
    }
}
