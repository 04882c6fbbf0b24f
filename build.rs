//! Link-time settings of the berth binary.

fn main() {
    // Relative relocations packed as DT_RELR (binutils 2.38, glibc 2.36): berth is a
    // position-independent executable with some 30,000 relative relocations, which as
    // RELA entries take 714 KiB that every berth process (the daemon, each `berth oci`
    // call, the holder zygote) maps and reads at start; as RELR they take a few KiB. A
    // linker or C library without DT_RELR support leaves them as RELA.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
