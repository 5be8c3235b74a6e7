//! What the datapath reports: rule counters, drops per identity pair, the flow record and
//! trace rings, the trace control slot, and synthetic trace runs.

use aya::{
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{TestRun, TestRunOptions},
};
use firewall_common::{
    Counter, Hook, RuleCounter,
    maps::{self, Stat},
    trace::{self, CB_TOKEN_HIGH, CB_TOKEN_LOW, CB_TRACE_ID, TraceControl},
};

use super::{Datapath, DatapathError, map_error};

/// Bytes of `struct __sk_buff` passed as the context of a synthetic trace: up to the end of
/// `cb` (offset 48, five 32-bit words). The kernel zero-fills the rest.
pub const TRACE_CTX_LEN: usize = CB_OFFSET + 5 * 4;

/// Offset of `cb` in `struct __sk_buff` (uapi, stable).
const CB_OFFSET: usize = 48;

/// Drops between two identities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropPair {
    /// Source identity.
    pub source: u32,
    /// Destination identity.
    pub destination: u32,
    /// Packets and bytes dropped, summed over CPUs.
    pub dropped: Counter,
}

impl Datapath {
    /// Packets, bytes and opened flows of one rule, summed over CPUs.
    ///
    /// # Errors
    /// [`DatapathError::Map`] when the id is beyond the counters' capacity.
    pub fn rule_counter(&self, rule_id: u32) -> Result<RuleCounter, DatapathError> {
        let array: PerCpuArray<&MapData, RuleCounter> = self.map(maps::RULE_COUNTERS)?;
        let values = array
            .get(&rule_id, 0)
            .map_err(map_error(maps::RULE_COUNTERS))?;
        Ok(values
            .iter()
            .fold(RuleCounter::default(), |acc, c| RuleCounter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
                flows: acc.flows + c.flows,
            }))
    }

    /// Every identity pair with drops, summed over CPUs, most packets first.
    pub fn drop_pairs(&self) -> Result<Vec<DropPair>, DatapathError> {
        let map: PerCpuHashMap<&MapData, u64, Counter> = self.map(maps::DROP_PAIRS)?;
        let mut pairs = Vec::new();
        for entry in map.iter() {
            // A pair evicted between the key walk and the read is simply skipped.
            let Ok((key, values)) = entry else { continue };
            let dropped = values.iter().fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            });
            pairs.push(DropPair {
                source: (key >> 32) as u32,
                destination: key as u32,
                dropped,
            });
        }
        pairs.sort_by_key(|pair| std::cmp::Reverse(pair.dropped.packets));
        Ok(pairs)
    }

    /// Flow records that did not fit in the ring buffer, summed over CPUs.
    pub fn flow_events_lost(&self) -> Result<u64, DatapathError> {
        self.stat(Stat::FlowEventsLost)
    }

    /// Takes the trace control slot and the trace observation ring out of the object
    /// (once), for the one owner of traces.
    pub fn take_trace(
        &mut self,
    ) -> Result<(Array<MapData, TraceControl>, RingBuf<MapData>), DatapathError> {
        let control = self
            .ebpf
            .take_map(trace::TRACE)
            .ok_or(DatapathError::MissingMap(trace::TRACE))?;
        let control = Array::try_from(control).map_err(map_error(trace::TRACE))?;
        Ok((control, self.take_ring(trace::TRACE_EVENTS)?))
    }

    /// Takes the flow record ring buffer out of the object (once).
    pub fn take_flow_events(&mut self) -> Result<RingBuf<MapData>, DatapathError> {
        self.take_ring(maps::FLOW_EVENTS)
    }

    fn take_ring(&mut self, name: &'static str) -> Result<RingBuf<MapData>, DatapathError> {
        let map = self
            .ebpf
            .take_map(name)
            .ok_or(DatapathError::MissingMap(name))?;
        RingBuf::try_from(map).map_err(map_error(name))
    }

    /// Runs `frame` through the loaded TC program of `hook` as a synthetic trace packet:
    /// it carries `token` and `trace_id` in its control buffer, so the program reports it to
    /// the trace ring and changes no counter and no flow. Returns the program's return code.
    ///
    /// `token` must be the one in the trace control slot, or the packet runs as live
    /// traffic would (counted, tracked, reported as a flow record).
    ///
    /// # Errors
    /// [`DatapathError::Program`] when the kernel refuses the run.
    pub fn run_traced(
        &mut self,
        hook: Hook,
        frame: &[u8],
        token: u64,
        trace_id: u32,
    ) -> Result<u32, DatapathError> {
        let mut context = [0u8; TRACE_CTX_LEN];
        let mut put = |index: usize, value: u32| {
            let at = CB_OFFSET + index * 4;
            context[at..at + 4].copy_from_slice(&value.to_ne_bytes());
        };
        put(CB_TOKEN_LOW, token as u32);
        put(CB_TOKEN_HIGH, (token >> 32) as u32);
        put(CB_TRACE_ID, trace_id);
        let options = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&context),
            ..TestRunOptions::new()
        };
        let program = self.tc(hook)?;
        let result = program
            .test_run(options)
            .map_err(|source| DatapathError::Program {
                program: if hook == Hook::TcEgress {
                    super::TC_EGRESS
                } else {
                    super::TC_INGRESS
                },
                source,
            })?;
        Ok(result.return_value)
    }
}
