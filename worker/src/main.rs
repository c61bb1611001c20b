//! `vae-worker`: parses the command line, runs it, and turns an error into one
//! line on stderr and a non-zero exit status.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = vae_worker::cli::Cli::parse();
    match vae_worker::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vae-worker: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
