//! berth-loopback: the CNI plugin that brings up `lo` in the pod's namespace.

fn main() -> std::process::ExitCode {
    berth_cni_plugins::entry::run(berth_cni_plugins::loopback::Loopback)
}
