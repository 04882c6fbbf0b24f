//! Which privileged tests may run here.
//!
//! A privileged test that cannot run (not root) prints that it was skipped and why. Under
//! `CI=true` a skip is a failure: CI runs as root, so a skip there means the suite would
//! pass without testing anything.

/// True when the calling test may touch the kernel; prints the skip otherwise.
///
/// # Panics
/// Under `CI=true` when not root, so that a skipped privileged test fails the run.
pub fn privileged(module: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => format!("{module}::{name}"),
        _ => module.to_string(),
    };
    if in_ci() {
        panic!("{test}: privileged test cannot run without root, and CI=true forbids skipping it");
    }
    eprintln!("SKIPPED {test}: needs root (run the suite as root to exercise it)");
    false
}

/// True when running under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns from the calling test unless it may touch the kernel (see [`privileged`]).
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::gate::privileged(module_path!()) {
            return;
        }
    };
}
