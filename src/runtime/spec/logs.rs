//! Where a container's CRI log goes: the pod's log_directory (absolute, chosen by the
//! kubelet) joined with the container's log_path (relative, inside that directory).
//!
//! berth opens the result for append as root on the host, so a log_path that is absolute
//! or climbs with `..` would let a request write into any host file; both are refused
//! rather than cleaned, because the kubelet never sends them and reads the log back from
//! the path it asked for.

use std::path::{Component, Path, PathBuf};

use super::error::{Result, SpecError};

/// A pod's log_directory: empty (no logs) or an absolute path.
pub fn check_log_directory(object: &str, field: &str, dir: &str) -> Result<()> {
    if dir.is_empty() {
        return Ok(());
    }
    if dir.contains('\0') {
        return Err(SpecError::invalid(object, field, "holds a NUL byte"));
    }
    if !dir.starts_with('/') {
        return Err(SpecError::invalid(
            object,
            field,
            format!("{dir:?} is not an absolute path"),
        ));
    }
    Ok(())
}

/// The host path of a container's log: `None` when the container or its pod names no
/// log (containerd writes none then either). `dir_field` names the log_directory as the
/// request carries it (`sandbox_config.log_directory` in CreateContainer).
pub fn container_log_path(
    object: &str,
    dir_field: &str,
    log_directory: &str,
    log_path: &str,
) -> Result<Option<PathBuf>> {
    const FIELD: &str = "log_path";
    check_log_directory(object, dir_field, log_directory)?;
    if log_path.is_empty() || log_directory.is_empty() {
        return Ok(None);
    }
    if log_path.contains('\0') {
        return Err(SpecError::invalid(object, FIELD, "holds a NUL byte"));
    }
    let rel = Path::new(log_path);
    if rel.is_absolute() {
        return Err(SpecError::invalid(
            object,
            FIELD,
            format!("{log_path:?} is absolute; it must be relative to the pod's log_directory"),
        ));
    }
    if rel.components().any(|c| c == Component::ParentDir) {
        return Err(SpecError::invalid(
            object,
            FIELD,
            format!("{log_path:?} climbs out of the pod's log_directory with .."),
        ));
    }
    if !matches!(rel.components().next_back(), Some(Component::Normal(_))) {
        return Err(SpecError::invalid(
            object,
            FIELD,
            format!("{log_path:?} names no file"),
        ));
    }
    Ok(Some(Path::new(log_directory).join(rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_inside_the_log_directory() {
        let p = |dir: &str, path: &str| {
            container_log_path("c", "sandbox_config.log_directory", dir, path)
        };
        assert_eq!(
            p("/var/log/pods/ns_web_1", "app/0.log").expect("kubelet's form"),
            Some(PathBuf::from("/var/log/pods/ns_web_1/app/0.log"))
        );
        assert_eq!(
            p("/var/log/pods/x", "./a/./0.log").expect("dots"),
            Some(PathBuf::from("/var/log/pods/x/a/0.log"))
        );
        assert_eq!(p("", "app/0.log").expect("no dir"), None);
        assert_eq!(p("/var/log/pods/x", "").expect("no path"), None);
        for (dir, path, field, want) in [
            ("/d", "/etc/passwd", "log_path", "is absolute"),
            ("/d", "../../etc/passwd", "log_path", "climbs out"),
            ("/d", "app/../../x.log", "log_path", "climbs out"),
            ("/d", "a\0b", "log_path", "NUL"),
            ("/d", ".", "log_path", "names no file"),
            (
                "var/log/pods",
                "a.log",
                "sandbox_config.log_directory",
                "not an absolute",
            ),
            (
                "relative",
                "",
                "sandbox_config.log_directory",
                "not an absolute",
            ),
        ] {
            let e = p(dir, path).expect_err(path);
            assert_eq!(e.kind(), super::super::ErrorKind::InvalidArgument);
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn log_directory_must_be_absolute() {
        check_log_directory("p", "log_directory", "").expect("none");
        check_log_directory("p", "log_directory", "/var/log/pods/a").expect("absolute");
        for bad in ["var/log/pods", "./x", "/a\0b"] {
            let e = check_log_directory("p", "log_directory", bad).expect_err(bad);
            assert_eq!(e.field(), Some("log_directory"), "{e}");
        }
    }
}
