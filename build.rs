//! Build-time settings of berth's binaries: the commit `berth version` names, and how
//! they are linked.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The commit `berth version` prints (src/version.rs): git's HEAD when the source is a
    // git checkout, or a note that it is not. A BERTH_COMMIT set by whoever builds (the
    // packager of a source tarball) is kept.
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    if std::env::var_os("BERTH_COMMIT").is_none() {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        };
        match git(&["rev-parse", "HEAD"]) {
            Some(commit) => {
                println!("cargo:rustc-env=BERTH_COMMIT={commit}");
                // run again when HEAD moves (a commit, a checkout) or the branch does
                let mut watch = vec![];
                if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                    watch.push(format!("{dir}/HEAD"));
                }
                if let (Some(common), Some(branch)) = (
                    git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
                    git(&["symbolic-ref", "-q", "HEAD"]),
                ) {
                    watch.push(format!("{common}/{branch}"));
                    watch.push(format!("{common}/packed-refs"));
                }
                // a path that does not exist would make cargo run this script every build
                for p in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            None => {
                println!("cargo:rustc-env=BERTH_COMMIT=none: built from a source tree without git")
            }
        }
    }
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
