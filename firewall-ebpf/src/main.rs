//! The firewall's eBPF programs: one TC classifier per direction and one XDP program, all
//! running the same classification ([`verdict::classify`]) so a packet gets the same verdict
//! at any hook.
#![no_std]
#![no_main]

mod conntrack;
mod maps;
mod packet;
mod parse;
mod policy;
mod verdict;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use firewall_common::{Hook, Verdict};

/// TC on the receive side. An allowed packet returns `TC_ACT_UNSPEC` (TCX "next"), so
/// programs attached after this one still run; a denied one is shot.
#[classifier]
pub fn firewall_tc_ingress(ctx: TcContext) -> i32 {
    tc_action(verdict::classify(&ctx, Hook::TcIngress))
}

/// TC on the transmit side; see [`firewall_tc_ingress`].
#[classifier]
pub fn firewall_tc_egress(ctx: TcContext) -> i32 {
    tc_action(verdict::classify(&ctx, Hook::TcEgress))
}

/// XDP on the receive side: `XDP_PASS` or `XDP_DROP`.
#[xdp]
pub fn firewall_xdp(ctx: XdpContext) -> u32 {
    match verdict::classify(&ctx, Hook::Xdp) {
        Verdict::Allow => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    }
}

#[inline(always)]
fn tc_action(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::Allow => TC_ACT_UNSPEC,
        Verdict::Drop => TC_ACT_SHOT as i32,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program with a reachable panic, so this never runs.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Baseline for benchmarks: a TC program that does nothing. Loaded only by `firewall bench`.
#[classifier]
pub fn bench_empty_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Baseline for benchmarks: an XDP program that does nothing. Loaded only by `firewall bench`.
#[xdp]
pub fn bench_empty_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
