//! Swapping in a whole policy under the other generation: packets see the old policy until
//! the one write that flips the generation, the new one after, never a mix; the old
//! generation's entries are gone once the swap finishes. Needs root.

mod support;

use firewall::{datapath::Datapath, policy, policy::CompiledPolicy, update};
use firewall_common::Reason;
use support::{packets::*, replay::*, *};

const ESTABLISHED: fn(u32) -> Expected = |rule| (Reason::Established, Some(rule));
const REPLY: fn(u32) -> Expected = |rule| (Reason::Reply, Some(rule));

/// The test policy with rule 1 moved from port 8081 to 8082.
fn policy_b() -> CompiledPolicy {
    let text = POLICY.replace("protocol: tcp, ports: 8081}", "protocol: tcp, ports: 8082}");
    assert_ne!(text, POLICY, "rule 1 of the test policy moved");
    policy::parse_str(&text, "policy B")
        .expect("policy B is valid")
        .compile()
}

fn for_both(both: &mut Both, stage: impl Fn(&mut Datapath)) {
    for replayer in [&mut both.tc, &mut both.xdp] {
        stage(replayer.datapath());
    }
}

/// Sorted, so two compiled policies compare as sets of entries.
fn sorted(mut compiled: CompiledPolicy) -> CompiledPolicy {
    compiled.ipcache_v4.sort();
    compiled.ipcache_v6.sort();
    compiled
        .policy
        .sort_by_key(|e| (e.prefix_len, e.key, e.value.rule_id));
    compiled
}

#[test]
fn a_swapped_in_policy_takes_effect_at_the_commit_and_leaves_nothing_behind() {
    let mut both = Both::new(&policy());
    let b = policy_b();
    let a_only = |sport| tcp4_flags(FRONTEND, BACKEND, sport, 8081, SYN);
    let b_only = |sport| tcp4_flags(FRONTEND, BACKEND, sport, 8082, SYN);
    let v6_echo = |id| {
        ethernet(
            ETH_IPV6,
            &[],
            &ipv6(FRONTEND6, BACKEND6, ICMPV6, &echo(128, id)),
        )
    };
    let f = |flags| tcp4_flags(FRONTEND, BACKEND, 40030, 8081, flags);
    let r = |flags| tcp4_flags(BACKEND, FRONTEND, 8081, 40030, flags);
    check(
        &mut both,
        &[
            ("A: SYN of a flow only A allows", f(SYN), allowed(1)),
            ("A: its SYN-ACK", r(SYN | ACK), REPLY(1)),
            ("A: its ACK", f(ACK), ESTABLISHED(1)),
        ],
    );

    for_both(&mut both, |d| d.prepare_swap(&b).expect("prepare swap"));
    check(
        &mut both,
        &[
            ("prepared: what only A allows", a_only(41000), allowed(1)),
            ("prepared: what only B allows", b_only(41001), DENIED),
            ("prepared: A's tracked flow", f(PSH | ACK), ESTABLISHED(1)),
            ("prepared: IPv6 in both", v6_echo(7001), allowed(8)),
        ],
    );

    for_both(&mut both, |d| d.commit_swap().expect("commit swap"));
    let revoked = both.run(&f(PSH | ACK));
    assert_eq!(
        revoked.reason,
        Reason::Revoked,
        "A's tracked flow after the commit: {revoked:?}"
    );
    check(
        &mut both,
        &[
            ("committed: what only A allowed", a_only(41002), DENIED),
            ("committed: what only B allows", b_only(41003), allowed(1)),
            ("committed: IPv6 in both", v6_echo(7002), allowed(8)),
        ],
    );

    for_both(&mut both, |d| d.finish_swap().expect("finish swap"));
    check(
        &mut both,
        &[
            ("finished: what only A allowed", a_only(41004), DENIED),
            ("finished: what only B allows", b_only(41005), allowed(1)),
            ("finished: IPv6 in both", v6_echo(7003), allowed(8)),
        ],
    );
    for replayer in [&mut both.tc, &mut both.xdp] {
        let current = replayer.datapath().current_entries().expect("read back");
        let mut expected = b.clone();
        expected.max_rule_id = current.max_rule_id;
        assert_eq!(sorted(current), sorted(expected), "only B's entries remain");
    }
}

#[test]
fn swap_in_twice_returns_to_the_first_generation_and_stays_exact() {
    let mut both = Both::new(&policy());
    let a = policy().compile();
    let b = policy_b();
    for_both(&mut both, |d| d.swap_in(&b).expect("swap in B"));
    for_both(&mut both, |d| d.swap_in(&a).expect("swap in A"));
    check(
        &mut both,
        &[
            (
                "A again: 8081",
                tcp4_flags(FRONTEND, BACKEND, 42000, 8081, SYN),
                allowed(1),
            ),
            (
                "A again: 8082",
                tcp4_flags(FRONTEND, BACKEND, 42001, 8082, SYN),
                DENIED,
            ),
        ],
    );
    for replayer in [&mut both.tc, &mut both.xdp] {
        let current = replayer.datapath().current_entries().expect("read back");
        let mut expected = a.clone();
        expected.max_rule_id = current.max_rule_id;
        assert_eq!(sorted(current), sorted(expected), "only A's entries remain");
    }
}

#[test]
fn commit_without_prepare_is_refused() {
    let mut both = Both::new(&policy());
    assert!(both.tc.datapath().commit_swap().is_err());
}

/// `from` with `extra` more single-port UDP entries between two of its identities.
fn with_extra_entries(from: &CompiledPolicy, extra: u16) -> CompiledPolicy {
    let mut out = from.clone();
    let template = *from
        .policy
        .iter()
        .find(|e| e.value.rule_id == 5)
        .expect("rule 5 (udp 53) has an entry");
    for port in 0..extra {
        let mut entry = template;
        entry.key.port = (20_000 + port).to_be_bytes();
        out.policy.push(entry);
    }
    out
}

#[test]
fn update_swaps_large_changes_and_writes_small_ones_in_place() {
    let a = policy().compile();
    let b = policy_b();
    let big = with_extra_entries(&b, update::SWAP_THRESHOLD as u16 + 1);
    let mut both = Both::new(&policy());
    for replayer in [&mut both.tc, &mut both.xdp] {
        let datapath = replayer.datapath();
        let small = update::update(datapath, &a, &b).expect("small update");
        assert!(
            !small.swapped,
            "a small change is written in place: {small:?}"
        );
        let large = update::update(datapath, &b, &big).expect("large update");
        assert!(large.swapped, "a large change is swapped in: {large:?}");
        assert!(
            large.revision > small.revision,
            "the swap bumps the revision"
        );
        let current = datapath.current_entries().expect("read back");
        let mut expected = big.clone();
        expected.max_rule_id = current.max_rule_id;
        assert_eq!(
            sorted(current),
            sorted(expected),
            "exactly the large policy"
        );
        let back = update::replace(datapath, &big, &a).expect("replace");
        assert!(back.swapped);
        let current = datapath.current_entries().expect("read back");
        let mut expected = a.clone();
        expected.max_rule_id = current.max_rule_id;
        assert_eq!(sorted(current), sorted(expected), "exactly A again");
    }
    check(
        &mut both,
        &[(
            "A again: 8081",
            tcp4_flags(FRONTEND, BACKEND, 43000, 8081, SYN),
            allowed(1),
        )],
    );
}
