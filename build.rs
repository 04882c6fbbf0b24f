//! Link-time settings of the berth binary.

use std::path::Path;

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
    // call, the holder zygote) maps and reads at start; as RELR they take a few KiB. A
    // linker or C library without DT_RELR support leaves them as RELA.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");

    // The code the holders run, packed into one output section (docs/holder.md, "Code
    // layout"). With BERTH_TEXT_PROFILE=1, instead every function gets a 64 KiB window of
    // its own, so that scripts/text-layout.sh can see which functions the holders run.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-env-changed=BERTH_TEXT_PROFILE");
    let script = if std::env::var("BERTH_TEXT_PROFILE").as_deref() == Ok("1") {
        dir.join("scripts/text-profile.ld")
    } else {
        dir.join("src/runtime/holder/text.ld")
    };
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bin=berth=-Wl,-T,{}", script.display());
}
