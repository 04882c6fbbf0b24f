//! `leak-check`: run before and after the suite.
//!
//! `leak-check baseline FILE` records the machine's links, named netns and mounts;
//! `leak-check verify FILE` fails (exit 1) if anything named or marked by a test remains
//! that was not already there at the baseline (left by an earlier, interrupted run: those
//! are listed as a warning), or if the machine gained a link, named netns or mount.

use std::process::ExitCode;

use berth_integration_tests::leak::Snapshot;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["baseline", file] => match std::fs::write(file, Snapshot::take().to_text()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("leak-check: write {file}: {e}");
                ExitCode::from(2)
            }
        },
        ["verify", file] => {
            let before = match std::fs::read_to_string(file) {
                Ok(t) => Snapshot::from_text(&t),
                Err(e) => {
                    eprintln!("leak-check: read baseline {file}: {e}");
                    return ExitCode::from(2);
                }
            };
            let now = Snapshot::take();
            let stale: Vec<_> = now.leftovers.intersection(&before.leftovers).collect();
            if !stale.is_empty() {
                eprintln!(
                    "leak-check: warning: {} thing(s) left by an earlier run, before this suite:",
                    stale.len()
                );
                for l in stale {
                    eprintln!("  {l}");
                }
            }
            let leaks = now.added_since(&before);
            if leaks.is_empty() {
                eprintln!("leak-check: nothing of the tests remains");
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "leak-check: the tests left {} thing(s) behind:",
                    leaks.len()
                );
                for l in &leaks {
                    eprintln!("  {l}");
                }
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: leak-check baseline FILE | leak-check verify FILE");
            ExitCode::from(2)
        }
    }
}
