//! The `vigil-sim` binary: simulated validator nodes for Vigil's tests, demo and benchmarks.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vigil-sim",
    version,
    about = "Runs simulated validator nodes (substrate, ethereum, cosmos) with an admin API for faults"
)]
struct Cli {
    #[command(flatten)]
    sim: vigil_sim::SimulateArgs,
}

fn main() -> ExitCode {
    vigil_sim::run(Cli::parse().sim)
}
