//! How the command line shows a running job: a bar on a terminal (indicatif), a plain line
//! every few seconds otherwise — both rendered from the engine's progress values. Ctrl-C and
//! SIGTERM cancel the job through the engine, which runs its cleanup before it ends.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::engine::{Command, Engine, JobOutcome, JobProgress};
use crate::error::{Error, Result};
use crate::present::human_bytes;

/// Progress on stderr.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

impl Bar {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Bar {
            bar,
            last_line: Instant::now(),
        }
    }

    fn show(&mut self, jp: &JobProgress) {
        let p = &jp.progress;
        let retries = if p.storage_retries > 0 {
            format!(" ({} storage retries)", p.storage_retries)
        } else {
            String::new()
        };
        match &self.bar {
            Some(b) => {
                b.set_prefix(format!("{} {}", p.operation, p.source));
                b.set_length(p.bytes_expected.unwrap_or(0).max(p.bytes_done));
                b.set_position(p.bytes_done);
                b.set_message(match &p.current_table {
                    Some(t) => format!("{} {t}{retries}", p.phase.as_str()),
                    None => format!("{}{retries}", p.phase.as_str()),
                });
            }
            None => {
                if self.last_line.elapsed() < Duration::from_secs(5) {
                    return;
                }
                self.last_line = Instant::now();
                eprintln!(
                    "{} {}: {} {}{} at {}/s{}{}",
                    p.operation,
                    p.source,
                    p.phase.as_str(),
                    human_bytes(p.bytes_done),
                    p.bytes_expected
                        .map(|e| format!(" of ~{}", human_bytes(e)))
                        .unwrap_or_default(),
                    human_bytes(p.rate as u64),
                    p.current_table
                        .as_ref()
                        .map(|t| format!(", table {t}"))
                        .unwrap_or_default(),
                    retries.replace(" (", ", ").replace(')', "")
                );
            }
        }
    }

    /// A line for people, above the bar when there is one.
    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Resolves on the first Ctrl-C or SIGTERM.
async fn interrupted() {
    let term = signal(SignalKind::terminate());
    match term {
        Ok(mut t) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = t.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Submit `command`, show its progress (and that of the jobs it starts) until it ends;
/// Ctrl-C cancels it.
pub async fn run(engine: &Engine, command: Command) -> Result<JobOutcome> {
    let mut events = engine.subscribe();
    // The job runs on this (the main) thread: see `Engine::submit_here`.
    let (handle, work) = engine.submit_here(command)?;
    let mut work = work.fuse();
    let id = handle.id.clone();
    let mut mine = vec![id.clone()];
    let mut bar = Bar::new();
    let wait = handle.clone().wait();
    tokio::pin!(wait);
    let mut ctrl_c = Box::pin(interrupted());
    let mut cancelled = false;
    let mut events_open = true;
    let outcome = loop {
        tokio::select! {
            _ = &mut work => {}
            o = &mut wait => break o,
            _ = &mut ctrl_c => {
                if cancelled {
                    // A second interrupt: the user will not wait for the cleanup.
                    bar.finish();
                    return Err(Error::Cancelled(
                        "interrupted twice: exited before the job's cleanup finished (a database it created, its scratch database or its lease may remain)".into(),
                    ));
                }
                cancelled = true;
                eprintln!("interrupted: cancelling the job and cleaning up (interrupt again to exit at once)…");
                handle.cancel();
                ctrl_c = Box::pin(interrupted());
            }
            ev = events.recv(), if events_open => match ev {
                Ok(crate::engine::Event::JobStarted { job, parent: Some(p), .. }) if mine.contains(&p) => {
                    mine.push(job);
                }
                Ok(crate::engine::Event::Progress(p)) if mine.contains(&p.job) => bar.show(&p),
                // A drill's steps, as they happen.
                Ok(crate::engine::Event::Log { job: Some(j), message }) if mine.contains(&j) && message.starts_with("drill: ") => {
                    bar.line(&message);
                }
                // Falling behind only costs progress lines; the outcome comes from `wait`.
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                // Only when the engine is gone; the outcome still comes from `wait`.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => events_open = false,
            }
        }
    };
    bar.finish();
    Ok(outcome)
}

/// The error a failed outcome maps to (its exit code is the job's: docs/architecture.md,
/// "Errors and exit codes").
pub fn error_of(o: &JobOutcome) -> Error {
    let msg = o
        .error_in(flag_ref)
        .unwrap_or_else(|| format!("the {} did not succeed", o.kind));
    // A request field, as this face names it: the flag.
    let msg = match &o.error_field {
        Some(f) => format!("--{} {msg}", flag_of(f)),
        None => msg,
    };
    match o.exit_code {
        2 => Error::Usage(msg),
        3 => Error::Damage(msg),
        _ => Error::Other(msg),
    }
}

/// The flag of a request field (`tables` → `table`, `into_schema` → `into-schema`).
pub fn flag_of(field: &str) -> String {
    match field {
        "tables" => "table".into(),
        "schemas" => "schema".into(),
        "exclude_schemas" => "exclude-schema".into(),
        f => f.replace('_', "-"),
    }
}

/// A reference to a request field as a flag: `--clean`, `--confirm wed`.
fn flag_ref(field: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("--{} {v}", flag_of(field)),
        None => format!("--{}", flag_of(field)),
    }
}

/// `message` with the request fields it names as flags.
pub fn in_flags(message: &str) -> String {
    crate::error::render_fields(message, flag_ref)
}
