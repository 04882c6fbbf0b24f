//! Sysctl names: the dotted form the CRI and runc use, and the file under /proc/sys that
//! each names.

/// The file under /proc/sys of a dotted sysctl name (a '/' inside a component is a '.'
/// of the file name, e.g. an interface `eth0.100`).
pub fn proc_path(dotted: &str) -> String {
    dotted
        .split('.')
        .map(|c| c.replace('/', "."))
        .collect::<Vec<_>>()
        .join("/")
}
