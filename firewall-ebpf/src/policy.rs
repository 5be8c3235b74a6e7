//! Identities and rules: the ipcache and policy lookups.

use firewall_common::{
    Identity, PolicyKey, Reason, identity::reserved, maps::IPCACHE_GENERATION_BITS,
};

use crate::{
    maps::{
        IPCACHE_HOSTS_V4, IPCACHE_HOSTS_V6, IPCACHE_V4, IPCACHE_V6, LOOKUP_KEYS, POLICY,
        POLICY_EXACT,
    },
    parse::Flow,
    verdict::Outcome,
};

/// The identity of an address in policy `generation`: the longest ipcache prefix holding it,
/// or world.
#[inline(always)]
pub fn identity_of(generation: u8, family: u8, address: &[u8; 16]) -> Identity {
    let Some(keys) = LOOKUP_KEYS.get_ptr_mut(0) else {
        return reserved::WORLD;
    };
    // SAFETY: see `LookupKeys`: the slot is this CPU's alone while the program runs. Every
    // key field has alignment 1, so references into the packed keys are sound. Map values
    // are copied out at once.
    let found = unsafe {
        if family == 4 {
            let key = &mut (*keys).ipcache_v4;
            key.prefix_len = IPCACHE_GENERATION_BITS + 32;
            key.data[0] = generation;
            key.data[1..].copy_from_slice(&address[..4]);
            IPCACHE_HOSTS_V4
                .get(&key.data)
                .copied()
                .or_else(|| IPCACHE_V4.get(&*key).copied())
        } else {
            let key = &mut (*keys).ipcache_v6;
            key.prefix_len = IPCACHE_GENERATION_BITS + 128;
            key.data[0] = generation;
            key.data[1..].copy_from_slice(address);
            IPCACHE_HOSTS_V6
                .get(&key.data)
                .copied()
                .or_else(|| IPCACHE_V6.get(&*key).copied())
        }
    };
    found.unwrap_or(reserved::WORLD)
}

/// The rule of policy `generation` allowing (source, destination, protocol, port), if any.
#[inline(always)]
pub fn rule_for(
    generation: u8,
    source: Identity,
    destination: Identity,
    protocol: u8,
    port: u16,
) -> Option<u32> {
    let keys = LOOKUP_KEYS.get_ptr_mut(0)?;
    // SAFETY: as in `identity_of`.
    unsafe {
        let key = &mut (*keys).policy;
        key.prefix_len = PolicyKey::PREFIX_FULL;
        key.data = PolicyKey::new(source, destination, protocol, port).with_generation(generation);
        POLICY_EXACT
            .get(&key.data)
            .copied()
            .or_else(|| POLICY.get(&*key).copied())
            .map(|value| value.rule_id)
    }
}

/// The verdict of policy `generation` on a packet, by its identities.
#[inline(always)]
pub fn decide(generation: u8, flow: &Flow) -> Outcome {
    let source_identity = identity_of(generation, flow.family, &flow.source);
    let destination_identity = identity_of(generation, flow.family, &flow.destination);
    match rule_for(
        generation,
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
            opened: false,
        },
        None => Outcome {
            reason: Reason::DeniedByDefault,
            rule_id: 0,
            source_identity,
            destination_identity,
            opened: false,
        },
    }
}
