//! `berth-holder`: a pod's holder (one per pod, started by `berth cri` through its zygote).
//! It links only what a holder runs: see [`berth::holder`].

fn main() -> std::process::ExitCode {
    std::process::exit(berth::holder::main())
}
