//! berth-portmap: see the library's `portmap` module.

fn main() -> std::process::ExitCode {
    berth_cni_plugins::entry::run(berth_cni_plugins::portmap::Portmap::<
        berth_cni_plugins::nft::NftCli,
    >::default())
}
