//! The `keepsake` binary: parse the command line, run, map errors to exit codes
//! (0 success, 1 failed, 2 usage/configuration, 3 damage found).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::panic)]

use clap::Parser;

fn main() {
    let cli = keepsake::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEEPSAKE_LOG").unwrap_or_else(|_| {
                // The daemon reports what it does; one-shot commands only warn.
                tracing_subscriber::EnvFilter::new(if cli.daemon { "info" } else { "warn" })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(keepsake::cli::run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    drop(rt);
    std::process::exit(code);
}
