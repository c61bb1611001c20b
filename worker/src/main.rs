//! `vae-worker`: parses the command line, runs it, and turns an error into one
//! line on stderr and a non-zero exit status. Under MPI, an error or a panic
//! on one rank aborts the whole job, so no rank waits forever for it.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        vae_worker::comm::abort_job(101);
    }));
    let cli = vae_proto::cli::WorkerCli::parse();
    match vae_worker::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vae-worker: error: {e:#}");
            vae_worker::comm::abort_job(1);
            std::process::ExitCode::FAILURE
        }
    }
}
