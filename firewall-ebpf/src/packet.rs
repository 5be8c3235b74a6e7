//! Reading packet bytes the same way at every hook.
//!
//! Headers are copied onto the stack with the kernel's load-bytes helpers rather than read
//! through direct packet pointers: offsets here depend on VLAN tags, the IPv4 IHL and the IPv6
//! extension chain, and a helper call takes any offset without the verifier having to prove
//! pointer ranges. It also reads from non-linear skbs, which direct access cannot.

use core::{ffi::c_void, mem::MaybeUninit};

use firewall_common::trace::{CB_TOKEN_HIGH, CB_TOKEN_LOW, CB_TRACE_ID};

use aya_ebpf::{
    helpers::generated::bpf_xdp_load_bytes,
    programs::{TcContext, XdpContext},
};

/// A packet the classifier can read.
pub trait Packet {
    /// Length of the whole frame in bytes.
    fn len(&self) -> u32;
    /// Interface the packet is on.
    fn ifindex(&self) -> u32;
    /// Copies `size_of::<T>()` bytes at `offset`. Fails when they are not all in the packet.
    fn load<T: Copy>(&self, offset: u32) -> Result<T, ()>;
    /// The synthetic trace token the packet carries; 0 where packets cannot carry one.
    fn trace_token(&self) -> u64;
    /// The trace id a synthetic trace packet carries.
    fn trace_id(&self) -> u32;
}

impl Packet for TcContext {
    #[inline(always)]
    fn len(&self) -> u32 {
        TcContext::len(self)
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: `skb` is the context pointer the kernel passed to the program.
        unsafe { (*self.skb.skb).ifindex }
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: u32) -> Result<T, ()> {
        TcContext::load(self, offset as usize).map_err(|_| ())
    }

    /// `BPF_PROG_TEST_RUN` copies the caller's `__sk_buff.cb` into the packet, so userspace
    /// can mark a synthetic packet there; live packets carry whatever earlier TC programs
    /// left, which matches a random 64-bit token only by a 2^-64 chance.
    #[inline(always)]
    fn trace_token(&self) -> u64 {
        // SAFETY: `skb` is the context pointer the kernel passed to the program; reading
        // `cb` is allowed to TC programs.
        let (low, high) = unsafe {
            let cb = &(*self.skb.skb).cb;
            (cb[CB_TOKEN_LOW], cb[CB_TOKEN_HIGH])
        };
        (high as u64) << 32 | low as u64
    }

    #[inline(always)]
    fn trace_id(&self) -> u32 {
        // SAFETY: as in `trace_token`.
        unsafe { (*self.skb.skb).cb[CB_TRACE_ID] }
    }
}

impl Packet for XdpContext {
    #[inline(always)]
    fn len(&self) -> u32 {
        (self.data_end() - self.data()) as u32
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ingress_ifindex() as u32
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: u32) -> Result<T, ()> {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes exactly `size_of::<T>()` bytes into `out`, which has room
        // for them, and reports failure instead of writing a partial value.
        let ret = unsafe {
            bpf_xdp_load_bytes(
                self.ctx,
                offset,
                out.as_mut_ptr() as *mut c_void,
                core::mem::size_of::<T>() as u32,
            )
        };
        if ret == 0 {
            // SAFETY: the helper succeeded, so every byte of `out` is initialised, and `T` is
            // only ever a byte array.
            Ok(unsafe { out.assume_init() })
        } else {
            Err(())
        }
    }

    /// XDP programs are never run for synthetic traces: the daemon enforces with TC.
    #[inline(always)]
    fn trace_token(&self) -> u64 {
        0
    }

    #[inline(always)]
    fn trace_id(&self) -> u32 {
        0
    }
}
