//! Link-time settings of berth's binaries.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        return;
    }
    // Relative relocations packed as DT_RELR (binutils 2.38, glibc 2.36): berth is a
    // position-independent executable with some 30,000 relative relocations, which as
    // RELA entries take 714 KiB that every berth process (the daemon, each `berth oci`
    // call) maps and reads at start; as RELR they take a few KiB, in `berth-holder` too.
    // A linker or C library without DT_RELR support leaves them as RELA.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
