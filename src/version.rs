//! What this build of berth is: its version and the interface versions it speaks.

/// berth's own version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
            git_commit: option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
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
}
