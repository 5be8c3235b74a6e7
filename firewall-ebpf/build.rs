// Rebuild the programs when bpf-linker changes: cargo cannot see the linker otherwise.
fn main() {
    let linker = which::which("bpf-linker").expect("bpf-linker is not on PATH");
    println!("cargo:rerun-if-changed={}", linker.display());
}
