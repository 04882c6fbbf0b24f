//! berth-host-local: the CNI IPAM plugin that hands out addresses from local ranges.

fn main() -> std::process::ExitCode {
    berth_cni_plugins::entry::run(berth_cni_plugins::hostlocal::HostLocal)
}
