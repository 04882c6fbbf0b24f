//! berth-bridge: see the library's `bridge` module.

fn main() -> std::process::ExitCode {
    berth_cni_plugins::entry::run(berth_cni_plugins::bridge::Bridge::<
        berth_cni_plugins::nft::NftCli,
    >::default())
}
