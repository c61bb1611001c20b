//! `vae-launch`: parses the command line and runs it (`vae_launch::cli`).
use clap::Parser;

fn main() -> std::process::ExitCode {
    vae_launch::cli::run(vae_launch::cli::Cli::parse())
}
