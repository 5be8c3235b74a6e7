//! Builds the eBPF programs (nightly, bpfel-unknown-none, bpf-linker) and leaves the object in
//! OUT_DIR, where `src/programs.rs` embeds it. aya-build asks cargo to rerun this script when
//! anything under firewall-ebpf changes.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../firewall-ebpf");
    println!("cargo:rerun-if-changed=../firewall-common/src");
    aya_build::build_ebpf(
        [Package {
            name: "firewall-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
