//! Running packets through the real, verifier-loaded programs with `BPF_PROG_TEST_RUN`.
//!
//! The programs are loaded with the replay switch on, so after each run the `DECISION` map
//! holds the reason, rule and identities of that packet. The verdict itself is read from the
//! program's return code, and the two are checked against each other.

use aya::programs::{TestRun, TestRunOptions};
use firewall_common::{Decision, Hook, Reason, Verdict};
use serde::Serialize;
use thiserror::Error;

use crate::{
    datapath::{Datapath, DatapathError, LoadOptions},
    policy::{CompiledPolicy, Policy},
};

/// The TC return code for "no opinion, continue" (TCX_NEXT): how the programs allow.
const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// The kernel's test run needs at least an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// Errors of a replay run.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// Loading or filling the datapath failed.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// The test run itself failed.
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    TestRun(#[from] aya::programs::ProgramError),
    /// The frame is too short for the kernel to run.
    #[error("frame of {0} bytes is shorter than an Ethernet header; the kernel cannot run it")]
    ShortFrame(usize),
    /// The program did something the contract does not allow.
    #[error("inconsistent datapath result: {0}")]
    Inconsistent(String),
}

/// Which hook's program to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayHook {
    /// The TC classifier (ingress).
    Tc,
    /// The XDP program.
    Xdp,
}

/// What the datapath decided for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Allow or drop, from the program's return code.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// The allowing rule, when policy allowed.
    pub rule: Option<u32>,
    /// Source identity, when the packet got as far as the ipcache.
    pub source_identity: Option<u32>,
    /// Destination identity, likewise.
    pub destination_identity: Option<u32>,
}

/// A datapath loaded for replay, with a policy in its maps. Map state carries over from one
/// packet to the next.
pub struct Replayer {
    datapath: Datapath,
    hook: ReplayHook,
}

impl Replayer {
    /// Loads the programs for replay and writes the policy.
    pub fn new(compiled: &CompiledPolicy, hook: ReplayHook) -> Result<Self, ReplayError> {
        Self::with_options(
            compiled,
            hook,
            LoadOptions {
                replay: true,
                ..Default::default()
            },
        )
    }

    /// As [`Replayer::new`], with explicit load options (`replay` is forced on).
    pub fn with_options(
        compiled: &CompiledPolicy,
        hook: ReplayHook,
        options: LoadOptions,
    ) -> Result<Self, ReplayError> {
        let mut datapath = Datapath::load(&LoadOptions {
            replay: true,
            ..options
        })?;
        datapath.apply(compiled)?;
        Ok(Replayer { datapath, hook })
    }

    /// Replays through an already loaded datapath, which must have been loaded with
    /// [`LoadOptions::replay`] on.
    pub fn from_datapath(datapath: Datapath, hook: ReplayHook) -> Self {
        Replayer { datapath, hook }
    }

    /// The loaded datapath, for counters.
    pub fn datapath(&mut self) -> &mut Datapath {
        &mut self.datapath
    }

    /// Runs one frame and returns the decision.
    pub fn run(&mut self, frame: &[u8]) -> Result<Outcome, ReplayError> {
        if frame.len() < MIN_FRAME {
            return Err(ReplayError::ShortFrame(frame.len()));
        }
        let before = self.datapath.decision()?.sequence;
        let options = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        };
        let (returned, verdict) = match self.hook {
            ReplayHook::Tc => {
                let code = self
                    .datapath
                    .tc(Hook::TcIngress)?
                    .test_run(options)?
                    .return_value;
                (code, tc_verdict(code))
            }
            ReplayHook::Xdp => {
                let code = self.datapath.xdp()?.test_run(options)?.return_value;
                (code, xdp_verdict(code))
            }
        };
        let verdict = verdict.ok_or_else(|| {
            ReplayError::Inconsistent(format!("unexpected return code {returned:#x}"))
        })?;
        let decision = self.datapath.decision()?;
        if decision.sequence == before {
            return Err(ReplayError::Inconsistent(
                "the program recorded no decision".into(),
            ));
        }
        outcome(verdict, &decision)
    }
}

fn tc_verdict(code: u32) -> Option<Verdict> {
    match code {
        TC_ACT_UNSPEC => Some(Verdict::Allow),
        TC_ACT_SHOT => Some(Verdict::Drop),
        _ => None,
    }
}

fn xdp_verdict(code: u32) -> Option<Verdict> {
    match code {
        XDP_PASS => Some(Verdict::Allow),
        XDP_DROP => Some(Verdict::Drop),
        _ => None,
    }
}

fn outcome(verdict: Verdict, decision: &Decision) -> Result<Outcome, ReplayError> {
    let reason = Reason::from_code(decision.reason).ok_or_else(|| {
        ReplayError::Inconsistent(format!("unknown reason code {}", decision.reason))
    })?;
    if reason.verdict() != verdict {
        return Err(ReplayError::Inconsistent(format!(
            "return code says {} but reason {} says {}",
            verdict.name(),
            reason.name(),
            reason.verdict().name()
        )));
    }
    let nonzero = |v: u32| (v != 0).then_some(v);
    Ok(Outcome {
        verdict,
        reason,
        rule: nonzero(decision.rule_id),
        source_identity: nonzero(decision.source_identity),
        destination_identity: nonzero(decision.destination_identity),
    })
}

/// One line of `firewall replay` output.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// Index of the packet in the capture, from 0.
    pub index: usize,
    /// "allow" or "drop".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<&'static str>,
    /// Reason name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The allowing rule's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// The allowing rule, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_text: Option<String>,
    /// Source identity name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
    /// Destination identity name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<&'a str>,
    /// Why the packet could not be run at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<'a> Record<'a> {
    /// The record of a packet the datapath decided.
    pub fn decided(index: usize, outcome: &Outcome, policy: &'a Policy) -> Self {
        let rule = outcome.rule.and_then(|id| policy.rule(id));
        Record {
            index,
            verdict: Some(outcome.verdict.name()),
            reason: Some(outcome.reason.name()),
            rule: outcome.rule,
            rule_text: rule.map(|r| policy.describe_rule(r)),
            source: outcome
                .source_identity
                .and_then(|id| policy.identity_name(id)),
            destination: outcome
                .destination_identity
                .and_then(|id| policy.identity_name(id)),
            error: None,
        }
    }

    /// The record of a packet that could not be run.
    pub fn failed(index: usize, error: &ReplayError) -> Self {
        Record {
            index,
            verdict: None,
            reason: None,
            rule: None,
            rule_text: None,
            source: None,
            destination: None,
            error: Some(error.to_string()),
        }
    }
}
