use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    if let Some(code) = loom::ssh::askpass::answer_if_asked() {
        return code;
    }
    let cli = loom::cli::Cli::parse();
    loom::cli::init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(cli.execute());
    // Blocking task threads (a script stuck in a loop) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    outcome.exit_code()
}
