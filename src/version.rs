//! What this build of berth is: its version and the interface versions it speaks.

/// berth's own version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from. The build script sets `BERTH_COMMIT` (from git
/// in a checkout, or a note saying there was none); a build that did not run it says so.
pub const COMMIT: &str = match option_env!("BERTH_COMMIT") {
    Some(c) if !c.is_empty() => c,
    _ => "not recorded by this build (BERTH_COMMIT was not set when it was compiled)",
};

/// The interface versions berth speaks, printed by `berth version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub berth: &'static str,
    pub git_commit: &'static str,
    pub target: &'static str,
}

impl Info {
    pub fn current() -> Self {
        Self {
            berth: VERSION,
            git_commit: COMMIT,
            target: std::env::consts::ARCH,
        }
    }
}

impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "berth {}", self.berth)?;
        writeln!(f, "commit: {}", self.git_commit)?;
        write!(f, "arch: {}", self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_names_the_crate_version() {
        let info = Info::current();
        assert_eq!(info.berth, env!("CARGO_PKG_VERSION"));
        assert!(info.to_string().starts_with("berth "));
    }

    /// Never a bare "unknown": a commit id, or a sentence saying why there is none.
    #[test]
    fn commit_is_an_id_or_says_why_not() {
        let c = Info::current().git_commit;
        let is_id = c.len() >= 7 && c.chars().all(|ch| ch.is_ascii_hexdigit());
        assert!(is_id || c.contains(' '), "{c:?}");
    }
}
