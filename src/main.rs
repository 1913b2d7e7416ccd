//! The `keepsake` binary: parse the command line, run, map errors to exit codes
//! (0 success, 1 failed, 2 usage/configuration, 3 damage found).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::panic)]

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

fn filter(daemon: bool) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("KEEPSAKE_LOG").unwrap_or_else(|_| {
        // The daemon reports what it does; one-shot commands only warn.
        tracing_subscriber::EnvFilter::new(if daemon { "info" } else { "warn" })
    })
}

/// Logging: stderr always (journald keeps it under systemd); for the daemon also daily-rotated
/// files in `[daemon] log_dir`, text or JSON. Returns the file writer's guard (flushes on drop).
fn init_logging(cli: &keepsake::cli::Cli) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let demo_console = matches!(cli.command, Some(keepsake::cli::Command::Demo { .. })) && {
        use std::io::IsTerminal;
        std::io::stdout().is_terminal()
    };
    if cli.is_console() {
        return console_logging(cli);
    }
    if demo_console {
        // The demo opens the console: nothing may write to the terminal (the engine's log
        // lines reach its Log screen).
        return None;
    }
    let daemon = cli.is_daemon();
    // The daemon's log settings come from its configuration; a configuration that does not load
    // is reported by the daemon itself (exit 2) right after.
    let settings = daemon
        .then(|| keepsake::config::locate(cli.config.as_deref()).ok())
        .flatten()
        .and_then(|p| keepsake::config::load(&p).ok())
        .map(|c| c.daemon);
    let json = settings.as_ref().is_some_and(|s| s.log_json);
    let stderr = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter(daemon))
            .boxed()
    } else {
        // Colours only for a terminal: a daemon's stderr is usually a file or the journal,
        // where escape codes are noise (and NO_COLOR turns them off everywhere).
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_filter(filter(daemon))
            .boxed()
    };
    let mut guard = None;
    let mut file_error = None;
    let file = settings.as_ref().and_then(|s| {
        let dir = s.log_dir.as_ref()?;
        let appender = tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("keepsake")
            .filename_suffix("log")
            .max_log_files(s.max_log_files)
            .build(dir);
        match appender {
            Ok(a) => {
                let (w, g) = tracing_appender::non_blocking(a);
                guard = Some(g);
                let layer = tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(w);
                Some(if json {
                    layer.json().with_filter(filter(daemon)).boxed()
                } else {
                    layer.with_filter(filter(daemon)).boxed()
                })
            }
            Err(e) => {
                file_error = Some(format!("cannot write logs to {}: {e}", dir.display()));
                None
            }
        }
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    if let Some(e) = file_error {
        tracing::error!("{e}; logging to stderr only");
    }
    guard
}

/// The console owns the terminal: logs go to `<state_dir>/console.log` only (nowhere when
/// there is no state directory), never to stderr.
fn console_logging(
    cli: &keepsake::cli::Cli,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir = keepsake::config::locate(cli.config.as_deref())
        .ok()
        .and_then(|p| keepsake::config::load(&p).ok())
        .and_then(|c| keepsake::engine::state_dir(&c).ok())?;
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::NEVER)
        .filename_prefix("console")
        .filename_suffix("log")
        .build(&dir)
        .ok()?;
    let (w, g) = tracing_appender::non_blocking(appender);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(w)
                .with_filter(filter(true)),
        )
        .init();
    Some(g)
}

/// The daemon's allocator arenas. glibc gives threads that allocate at once arenas of their
/// own (up to 8 per core) and keeps what each one held; a daemon whose pool threads come and
/// go grew in steps for minutes (benches/soak.sh: 8.5 → 18 MiB of anonymous memory in 5
/// minutes, still rising after 10; with one arena flat at 6 MiB). mimalloc as the allocator
/// was measured too and was far worse (65 → 125 MiB). The limit is a glibc tunable read when a
/// process starts, so the daemon executes itself once more with it set: the same pid, the same
/// arguments. An environment that sets `GLIBC_TUNABLES` itself is left as it is.
const DAEMON_TUNABLES: &str = "glibc.malloc.arena_max=2";

fn with_few_arenas() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let e = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", DAEMON_TUNABLES)
        .exec();
    // Only reached when the exec failed (the binary replaced by an upgrade): go on as is.
    eprintln!("note: running with the default allocator arenas ({e})");
}

fn main() {
    let cli = keepsake::cli::Cli::parse();
    if cli.is_daemon() {
        with_few_arenas();
    }
    let guard = init_logging(&cli);
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
    // Choosing the face: the daemon, the demo, or one command.
    let face = async {
        if cli.is_daemon() {
            let path = keepsake::config::locate(cli.config.as_deref())?;
            let api: keepsake::daemon::Service = Box::new(|engine, state_dir| {
                Box::pin(async move {
                    let server = keepsake::api::serve(engine, &state_dir).await?;
                    Ok(Box::new(move || {
                        Box::pin(server.stop()) as futures::future::BoxFuture<'static, ()>
                    }) as keepsake::daemon::Stopper)
                })
            });
            return keepsake::daemon::run(&path, Some(api)).await;
        }
        if let Some(keepsake::cli::Command::Demo { keep }) = cli.command {
            use std::io::IsTerminal;
            let console: Option<keepsake::demo::ConsoleFn> =
                (std::io::stdout().is_terminal() && std::io::stdin().is_terminal()).then(|| {
                    Box::new(|e: keepsake::engine::Engine| {
                        Box::pin(keepsake::tui::run(std::sync::Arc::new(e)))
                            as futures::future::BoxFuture<'static, keepsake::Result<()>>
                    }) as keepsake::demo::ConsoleFn
                });
            return keepsake::demo::run(keep, console).await;
        }
        if let Some(local) = cli.is_console().then(|| cli.console_local()) {
            let config = keepsake::cli::load_config(&cli)?;
            // docs/console.md, "Attached or local": attach to the configured daemon when it
            // answers on its socket; otherwise run the engine here (the header says so).
            if !local {
                if let Some(sock) = keepsake::engine::socket_path(&config) {
                    if sock.exists() {
                        let client = keepsake::engine::client::Client::unix(&sock);
                        match keepsake::engine::remote::Remote::connect(client).await {
                            Ok(remote) => {
                                return keepsake::tui::run(std::sync::Arc::new(remote)).await
                            }
                            Err(e) => tracing::warn!(
                                "not attaching to the daemon at {}: {e}; running the engine in this console",
                                sock.display()
                            ),
                        }
                    }
                }
            }
            let engine = keepsake::engine::Engine::new(config);
            engine.set_actor(keepsake::engine::audit::Actor::local("console"));
            return keepsake::tui::run(std::sync::Arc::new(engine)).await;
        }
        keepsake::cli::run(cli).await
    };
    let code = match rt.block_on(face) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    drop(rt);
    drop(guard);
    std::process::exit(code);
}
