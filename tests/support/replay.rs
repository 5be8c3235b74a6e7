//! Running frames through both hooks and checking what they decide.

use firewall::{
    datapath::LoadOptions,
    policy::{self, Policy},
    replay::{Outcome, ReplayHook, Replayer},
};
use firewall_common::Reason;

use super::POLICY;

/// The shared test policy, parsed.
pub fn policy() -> Policy {
    policy::parse_str(POLICY, "test policy").expect("test policy is valid")
}

/// A TC and an XDP datapath, each loaded for replay with the same policy. Each has its own
/// maps (conntrack included), so a conversation replayed through both is judged twice,
/// independently.
pub struct Both {
    pub tc: Replayer,
    pub xdp: Replayer,
}

impl Both {
    pub fn new(policy: &Policy) -> Both {
        Both::with_options(policy, LoadOptions::default())
    }

    pub fn with_options(policy: &Policy, options: LoadOptions) -> Both {
        let compiled = policy.compile();
        Both {
            tc: Replayer::with_options(&compiled, ReplayHook::Tc, options)
                .expect("load TC for replay"),
            xdp: Replayer::with_options(&compiled, ReplayHook::Xdp, options)
                .expect("load XDP for replay"),
        }
    }

    /// Runs `frame` at both hooks, checks they agree, and returns the outcome.
    pub fn run(&mut self, frame: &[u8]) -> Outcome {
        let tc = self
            .tc
            .run(frame)
            .unwrap_or_else(|e| panic!("TC run of {frame:02x?}: {e}"));
        let xdp = self
            .xdp
            .run(frame)
            .unwrap_or_else(|e| panic!("XDP run of {frame:02x?}: {e}"));
        assert_eq!(tc, xdp, "TC and XDP disagree on {frame:02x?}");
        tc
    }

    pub fn expect(&mut self, what: &str, frame: &[u8], reason: Reason, rule: Option<u32>) {
        let outcome = self.run(frame);
        assert_eq!(
            (outcome.reason, outcome.rule),
            (reason, rule),
            "{what}: got {outcome:?}"
        );
        assert_eq!(outcome.verdict, reason.verdict(), "{what}");
    }
}

/// What a case expects: the reason and the rule it is attributed to.
pub type Expected = (Reason, Option<u32>);

pub fn allowed(rule: u32) -> Expected {
    (Reason::Policy, Some(rule))
}

pub const DENIED: Expected = (Reason::DeniedByDefault, None);
pub const MALFORMED: Expected = (Reason::Malformed, None);
pub const FRAGMENT: Expected = (Reason::Fragment, None);

/// Runs the cases in order (map state carries over) and checks each.
pub fn check(both: &mut Both, cases: &[(&str, Vec<u8>, Expected)]) {
    for (what, frame, (reason, rule)) in cases {
        both.expect(what, frame, *reason, *rule);
    }
}
