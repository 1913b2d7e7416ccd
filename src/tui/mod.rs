//! The console (docs/console.md): `keepsake` with no command. A face of the engine, generic over
//! [`Control`]: keys become actions (`keys`), actions change the state or become engine
//! commands (`app`), drawing is a pure function of the state (`view`).
//!
//! Invariants (docs/architecture.md, "Inside the faces"):
//! - One terminal owner: this loop. Input is read on a thread of its own and sent here; engine
//!   events and model refreshes arrive on channels; nothing else writes to the terminal (the
//!   console's log goes to a file, see `main.rs`). A panic restores the terminal first.
//! - Redraw only when something changed, at most 10 times a second; idle costs nothing but a
//!   model refresh every few seconds (from the engine's cached view).
//! - Destructive actions go through a confirmation (typed for delete and overwrite).

pub mod app;
pub mod keys;
pub mod report;
pub mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ratatui::crossterm::event::{self, Event as TermEvent};

use crate::engine::control::Control;
use crate::engine::{Command, JobResult, RestoreRequest};
use crate::error::{Error, Result};
use app::{App, Effect, Model};

/// Model refresh interval (the engine's view lists the repository at most every 2 s anyway).
const REFRESH: Duration = Duration::from_secs(3);
/// At most 10 frames a second.
const FRAME: Duration = Duration::from_millis(100);

enum Msg {
    Input(TermEvent),
    Engine(crate::engine::Event),
    Model(std::result::Result<Model, String>),
    Preview(std::result::Result<crate::core::prune::PruneReport, String>),
    /// A job this console asked for started (its id), or could not start (why).
    Started {
        what: String,
        job: std::result::Result<String, String>,
    },
    RestoreStarted(std::result::Result<String, String>),
    DrillStarted(std::result::Result<String, String>),
    TargetFacts(
        String,
        std::result::Result<crate::engine::TargetFacts, String>,
    ),
    SourceChecked(
        String,
        std::result::Result<crate::engine::preflight::SourceCheck, String>,
    ),
    Tables(
        String,
        std::result::Result<Vec<crate::engine::TableSize>, String>,
    ),
    TableList(
        String,
        std::result::Result<Vec<crate::engine::TableSize>, String>,
    ),
    /// A note for the Log screen (and the flash line).
    Note(String),
    /// The connection to the engine changed.
    Link(crate::engine::control::Link),
}

/// How long the flash line shows what happened last.
const FLASH: Duration = Duration::from_secs(8);

/// Read the model from the engine.
pub async fn fetch<C: Control + ?Sized>(ctl: &C) -> Result<Model> {
    let (rows, bad) = ctl.list(None).await?;
    let status = ctl.status().await?;
    Ok(Model {
        status,
        rows,
        unreadable: bad.len(),
        live: ctl.live_jobs().await?,
        history: ctl.jobs().await?,
        servers: ctl
            .sources()
            .iter()
            .filter_map(|s| Some((s.clone(), ctl.source_server(s)?)))
            .collect(),
        sources: ctl.sources(),
        policy: ctl.policy_words(),
        records: ctl.verifications().await?,
        drills: ctl.drills().await?,
        // A log that cannot be read costs the Log screen its audit part, not the console.
        audit: ctl.audit_tail(200).await.ok().flatten(),
    })
}

/// Run the console on `ctl` until the user quits.
pub async fn run<C: Control + 'static>(ctl: Arc<C>) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "the console needs a terminal: use `keepsake status` for the same answers as text, or `keepsake --help` for the commands".into(),
        ));
    }
    let mut app = App::new(ctl.repository(), ctl.mode());
    let theme = view::Theme::from_env();
    let mut terminal = ratatui::init();
    let res = event_loop(&mut terminal, ctl.clone(), &mut app, theme).await;
    ratatui::restore();
    // Jobs this console started in-process end with it (their cleanups run).
    ctl.shutdown(Duration::from_secs(30)).await;
    res
}

async fn event_loop<C: Control + 'static>(
    terminal: &mut ratatui::DefaultTerminal,
    ctl: Arc<C>,
    app: &mut App,
    theme: view::Theme,
) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (tx, stop) = (tx.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if event::poll(Duration::from_millis(200)).unwrap_or(false) {
                    match event::read() {
                        Ok(e) => {
                            if tx.send(Msg::Input(e)).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
        });
    }
    let wake = Arc::new(tokio::sync::Notify::new());
    {
        let (tx, ctl, wake) = (tx.clone(), ctl.clone(), wake.clone());
        tokio::spawn(async move {
            loop {
                let m = fetch(&*ctl).await.map_err(|e| e.to_string());
                if tx.send(Msg::Model(m)).is_err() {
                    break;
                }
                let _ = tokio::time::timeout(REFRESH, wake.notified()).await;
            }
        });
    }
    {
        let (tx, mut events) = (tx.clone(), ctl.subscribe());
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        if tx.send(Msg::Engine(e)).is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        });
    }
    {
        let (tx, mut link) = (tx.clone(), ctl.link());
        tokio::spawn(async move {
            loop {
                let l = link.borrow_and_update().clone();
                if tx.send(Msg::Link(l)).is_err() || link.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    let mut minute = Utc::now().format("%H:%M").to_string();
    // A dropped SSH connection (SIGHUP) or a SIGTERM ends the console as `q` would: the jobs
    // it started in-process are cancelled and their cleanups run (a half-loaded database is
    // dropped, a lease given back, the demo's cluster stopped), instead of the process dying
    // with them half done.
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async fn got(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            terminal
                .draw(|f| view::draw(f, app, Utc::now(), theme))
                .map_err(|e| Error::io("drawing the console", e))?;
            last_draw = Instant::now();
            dirty = false;
        }
        let next_frame = tokio::time::sleep(if dirty {
            FRAME.saturating_sub(last_draw.elapsed())
        } else {
            Duration::from_secs(1)
        });
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = got(&mut hangup) => {
                tracing::info!("the terminal hung up: leaving the console");
                return Ok(());
            }
            _ = got(&mut terminate) => {
                tracing::info!("SIGTERM: leaving the console");
                return Ok(());
            }
            _ = next_frame => {
                let now = Utc::now().format("%H:%M").to_string();
                if now != minute {
                    minute = now;
                    dirty = true;
                }
                // The flash line goes after a while; an unreachable daemon's "since" ages.
                if app.flash.as_ref().is_some_and(|(at, _)| {
                    (Utc::now() - *at).to_std().unwrap_or_default() > FLASH
                }) {
                    app.flash = None;
                    dirty = true;
                }
                dirty |= app.unreachable_since().is_some();
                continue;
            }
        };
        let Some(msg) = msg else { break };
        match msg {
            Msg::Input(TermEvent::Key(k)) => {
                // Each key is read in the focus the one before it left (Esc, then 3).
                for k in keys::split_escape(k) {
                    if let Some(a) = keys::action(k, app.focus()) {
                        let size = terminal.size().unwrap_or_default();
                        for e in app.update_on(a, size.width, size.height) {
                            effect(e, &ctl, &tx);
                        }
                        dirty = true;
                    }
                }
            }
            Msg::Input(TermEvent::Resize(..)) => {
                let _ = terminal.autoresize();
                dirty = true;
            }
            Msg::Input(_) => {}
            Msg::Engine(e) => {
                if matches!(
                    e,
                    crate::engine::Event::JobFinished(_)
                        | crate::engine::Event::JobFailed(_)
                        | crate::engine::Event::JobQueued { .. }
                        | crate::engine::Event::JobStarted { .. }
                        | crate::engine::Event::BackupAdded { .. }
                        | crate::engine::Event::BackupDeleted { .. }
                ) {
                    wake.notify_one();
                }
                dirty |= app.on_event(&e, Utc::now());
                if std::mem::take(&mut app.preview_stale) && app.screen == 3 {
                    effect(app::Effect::PrunePreview, &ctl, &tx);
                }
            }
            Msg::Model(Ok(m)) => {
                app.set_model(m);
                app.problem = None;
                dirty = true;
            }
            Msg::Model(Err(e)) => {
                if app.problem.as_deref() != Some(e.as_str()) {
                    app.push_log(format!(
                        "{} cannot read the repository: {e}",
                        Utc::now().format("%H:%M:%S")
                    ));
                    app.problem = Some(e);
                    dirty = true;
                }
            }
            Msg::Preview(r) => {
                app.set_preview(r);
                dirty = true;
            }
            Msg::Started { what, job } => {
                match job {
                    Ok(id) => {
                        app.push_log(format!(
                            "{} [{id}] {what} started from the console",
                            Utc::now().format("%H:%M:%S"),
                        ));
                        app.mine.push(id);
                        wake.notify_one();
                    }
                    Err(e) => {
                        app.dialog = Some(app::Dialog::Message {
                            title: "Could not start".into(),
                            text: e,
                        })
                    }
                }
                dirty = true;
            }
            Msg::RestoreStarted(r) => {
                match r {
                    Ok(id) => {
                        app.restore_started(id);
                        wake.notify_one();
                    }
                    Err(e) => {
                        app.dialog = Some(app::Dialog::Message {
                            title: "Restore".into(),
                            text: format!("✗ could not start the restore: {e}"),
                        })
                    }
                }
                dirty = true;
            }
            Msg::DrillStarted(r) => {
                match r {
                    Ok(id) => {
                        app.drill_started(id);
                        wake.notify_one();
                    }
                    Err(e) => {
                        app.dialog = Some(app::Dialog::Message {
                            title: "Drill".into(),
                            text: format!("✗ could not start the drill: {e}"),
                        })
                    }
                }
                dirty = true;
            }
            Msg::SourceChecked(source, r) => {
                app.source_checked(&source, r);
                dirty = true;
            }
            Msg::TargetFacts(db, r) => {
                app.target_facts = Some((db, r));
                dirty = true;
            }
            Msg::Tables(id, r) => {
                app.tables = Some((id, r));
                dirty = true;
            }
            Msg::TableList(id, r) => {
                app.pick_list = Some((id, r));
                dirty = true;
            }
            Msg::Note(n) => {
                app.note(Utc::now(), n);
                dirty = true;
            }
            Msg::Link(l) => {
                let back = matches!(l, crate::engine::control::Link::Attached { .. });
                if app.set_link(l, Utc::now()) {
                    dirty = true;
                    if back {
                        // Everything is read again: jobs, backups, schedules, the new pid.
                        wake.notify_one();
                    }
                }
            }
        }
        if app.quit {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

/// Submit the restore `request` builds for database `db` on `source`'s server, and report
/// the job it started (or why not) to the loop.
fn restore_on_source<C: Control + 'static>(
    ctl: Arc<C>,
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
    source: String,
    db: String,
    request: impl FnOnce(crate::engine::RestoreTarget) -> RestoreRequest + Send + 'static,
) {
    tokio::spawn(async move {
        let started = match ctl.restore_target(&source, &db) {
            Ok(target) => ctl.submit(Command::Restore(request(target))).await,
            Err(e) => Err(e),
        };
        let _ = tx.send(Msg::RestoreStarted(
            started.map(|h| h.id).map_err(|e| e.to_string()),
        ));
    });
}

/// Carry out what the app asked for. Anything that talks to the engine (perhaps a daemon
/// across a socket) runs on a task of its own and answers with a message: the loop never
/// waits on it.
fn effect<C: Control + 'static>(
    e: Effect,
    ctl: &Arc<C>,
    tx: &tokio::sync::mpsc::UnboundedSender<Msg>,
) {
    let (ctl, tx) = (ctl.clone(), tx.clone());
    match e {
        Effect::Quit => {}
        Effect::Submit(cmd) => {
            let what = format!("{} {}", cmd.kind(), cmd.source().unwrap_or(""));
            tokio::spawn(async move {
                let job = ctl
                    .submit(cmd)
                    .await
                    .map(|h| h.id)
                    .map_err(|e| e.to_string());
                let _ = tx.send(Msg::Started { what, job });
            });
        }
        Effect::SourceCheck(source) => {
            tokio::spawn(async move {
                let r = ctl.source_check(&source).await.map_err(|e| e.to_string());
                let _ = tx.send(Msg::SourceChecked(source, r));
            });
        }
        Effect::InspectTarget { source, db } => {
            tokio::spawn(async move {
                let r = ctl
                    .inspect_target(&source, &db)
                    .await
                    .map_err(|e| e.to_string());
                let _ = tx.send(Msg::TargetFacts(db, r));
            });
        }
        Effect::Restore {
            backup,
            source,
            db,
            overwrite,
            no_owner,
            jobs,
            at,
        } => restore_on_source(ctl, tx, source, db.clone(), move |target| {
            RestoreRequest::new(backup, target)
                .create(!overwrite)
                .clean(overwrite)
                .confirm(overwrite.then_some(db))
                .no_owner(no_owner)
                .jobs(jobs)
                .at(at, None)
        }),
        Effect::RestoreUrl { backup, url } => {
            tokio::spawn(async move {
                // The engine's typed-target rule. In-process the console connects itself
                // (PGPASSWORD, as the command line would); a daemon uses its own credentials.
                let local = ctl.mode().starts_with("local");
                let started = match crate::engine::RestoreTarget::typed(&url, None, local) {
                    Ok(target) => {
                        ctl.submit(Command::Restore(
                            RestoreRequest::new(backup, target).create(true),
                        ))
                        .await
                    }
                    // The field, as this dialog names it.
                    Err(Error::Field { message, .. }) => {
                        Err(Error::Usage(format!("the URL {message}")))
                    }
                    Err(e) => Err(e),
                };
                let _ = tx.send(Msg::RestoreStarted(
                    started.map(|h| h.id).map_err(|e| e.to_string()),
                ));
            });
        }
        Effect::Drill { source, backup } => {
            tokio::spawn(async move {
                let r = ctl
                    .submit(Command::Drill(crate::engine::DrillRequest {
                        source: Some(source),
                        backup: Some(backup),
                        actor: format!("{} (console)", crate::engine::audit::current_user()),
                        ..Default::default()
                    }))
                    .await;
                let _ = tx.send(Msg::DrillStarted(
                    r.map(|h| h.id).map_err(|e| e.to_string()),
                ));
            });
        }
        Effect::TableList(id) => {
            tokio::spawn(async move {
                let r = ctl
                    .largest_tables(&id, usize::MAX)
                    .await
                    .map(|mut v| {
                        v.sort_by(|a, b| a.name.cmp(&b.name));
                        v
                    })
                    .map_err(|e| e.to_string());
                let _ = tx.send(Msg::TableList(id, r));
            });
        }
        Effect::RestoreTables {
            backup,
            source,
            db,
            tables,
            into_schema,
        } => restore_on_source(ctl, tx, source, db, move |target| {
            let sel = crate::core::select::Selection {
                tables,
                into_schema: Some(into_schema),
                ..Default::default()
            };
            RestoreRequest::new(backup, target).selection(Some(sel))
        }),
        Effect::Tables(id) => {
            tokio::spawn(async move {
                let r = ctl.largest_tables(&id, 5).await.map_err(|e| e.to_string());
                let _ = tx.send(Msg::Tables(id, r));
            });
        }
        Effect::Cancel(job) => {
            tokio::spawn(async move {
                let note = match ctl.cancel(&job).await {
                    Ok(true) => format!("job {job}: cancel asked"),
                    Ok(false) => format!("job {job} had already ended"),
                    Err(e) => format!("job {job} could not be cancelled: {e}"),
                };
                let _ = tx.send(Msg::Note(note));
            });
        }
        Effect::PrunePreview => {
            tokio::spawn(async move {
                let r = match ctl.submit(Command::Prune { dry_run: true }).await {
                    Err(e) => Err(e.to_string()),
                    Ok(h) => {
                        let o = h.wait().await;
                        match o.result {
                            Some(JobResult::Prune(r)) if o.exit_code == 0 => Ok(*r),
                            _ => Err(o.error.unwrap_or_else(|| "the dry run failed".into())),
                        }
                    }
                };
                let _ = tx.send(Msg::Preview(r));
            });
        }
    }
}

#[cfg(test)]
mod tests;
