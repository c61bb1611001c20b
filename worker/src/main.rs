//! `vae-worker`: parses the command line, runs it, and turns an error into one
//! line on stderr and a non-zero exit status. Under MPI, an error or a panic
//! on one rank aborts the whole job, so no rank waits forever for it; an
//! out-of-memory panic is one line naming the config key to lower.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // An allocation failure (CUDA or host) is one line naming the key.
        match vae_worker::oom::line(&vae_worker::oom::panic_text(info)) {
            Some(line) => vae_proto::errln!("vae-worker: error: {line}"),
            None => default_hook(info),
        }
        vae_worker::comm::abort_job(101);
    }));
    let cli = vae_proto::cli::WorkerCli::parse();
    match vae_worker::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            vae_proto::errln!(
                "vae-worker: error: {}",
                vae_proto::redact::redact(&format!("{e:#}"))
            );
            vae_worker::comm::abort_job(1);
            std::process::ExitCode::FAILURE
        }
    }
}
