//! The job runner: every operation of every face runs here.
//!
//! Invariants:
//! - Single flight: jobs with the same flight key (a source's backups; prune and delete) never
//!   run side by side. A second one waits, queued; a third coalesces with the queued one (the
//!   stronger backup type wins) and gets its handle.
//! - Every job has a cancellation token (a child of the engine's, so shutdown cancels all, and
//!   of its parent job's, so cancelling a backup cancels the verification it started) and a
//!   deadline (`[daemon] job_timeout`).
//! - When a job ends — success, failure, cancel, deadline, shutdown — the runner drops the
//!   operation's future (pg_dump and pg_restore are killed by their guards) and then runs
//!   every cleanup hook the operation left armed (a database it created, its scratch
//!   database, its own lease). Nothing else ever removes those.
//! - The runner, and only the runner, writes the job history: `running` when a job starts,
//!   its outcome when it ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::audit::{Actor, AuditLog, AuditWriter, Entry};
use super::command::Command;
use super::ctx::JobSink;
pub use super::ctx::{Done, JobCtx, JobHandle};
use super::event::{Event, JobOutcome, JobProgress};
use super::history::{History, JobRecord, JobStatus};
use super::Engine;
use crate::config::Config;
use crate::core::cleanup::Cleanup;
use crate::core::repo::Repository;
use crate::error::{Error, Result};

/// Whether a live job waits or runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
}

/// A live job, as `jobs` and the console show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct JobInfo {
    pub id: String,
    #[serde(deserialize_with = "crate::model::words::de")]
    pub kind: crate::model::words::Word,
    pub source: Option<String>,
    pub state: JobState,
    pub queued_at: DateTime<Utc>,
    pub parent: Option<String>,
    pub progress: Option<JobProgress>,
}

struct Live {
    kind: &'static str,
    source: Option<String>,
    state: JobState,
    queued_at: DateTime<Utc>,
    parent: Option<String>,
    key: Option<String>,
    command: Arc<Mutex<Command>>,
    cancel: CancellationToken,
    progress: watch::Receiver<Option<JobProgress>>,
    done: watch::Receiver<Option<JobOutcome>>,
}

impl Live {
    fn handle(&self, id: &str) -> JobHandle {
        JobHandle::from_parts(
            id.to_string(),
            self.progress.clone(),
            self.cancel.clone(),
            self.done.clone(),
        )
    }
}

#[derive(Default)]
struct Table {
    live: BTreeMap<String, Live>,
    /// Flight key → the queued job waiting for it (coalescing target).
    queued: HashMap<String, String>,
    /// Flight key → the lock its jobs take to run.
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

pub(super) struct Inner {
    config: RwLock<Arc<Config>>,
    repo: tokio::sync::Mutex<Option<Arc<Repository>>>,
    pub(super) history: Option<History>,
    pub(super) events: broadcast::Sender<Event>,
    table: Mutex<Table>,
    root: CancellationToken,
    pub(super) view: super::view::View,
    /// Who jobs are started by unless the face says (`Engine::submit_as`).
    actor: Mutex<Actor>,
    /// Where the runner records every job (none without a state directory).
    pub(super) audit: Option<AuditWriter>,
    /// `[daemon] max_jobs`: places for top-level jobs running at once (a child job runs in
    /// its parent's place, which waits for it).
    slots: Arc<tokio::sync::Semaphore>,
}

impl Inner {
    pub(super) fn new(config: Config, history: Option<History>) -> Self {
        // Sealed objects are cached per repository URL in the state directory (view.rs).
        let disk = super::state_dir(&config).ok().map(|d| {
            let url = blake3::hash(config.repository.url.as_bytes()).to_hex();
            d.join("cache").join(&url.as_str()[..16])
        });
        let slots = Arc::new(tokio::sync::Semaphore::new(config.daemon.max_jobs.max(1)));
        let audit = super::state_dir(&config)
            .ok()
            .map(|d| AuditWriter::start(AuditLog::new(&d)));
        Inner {
            slots,
            config: RwLock::new(Arc::new(config)),
            repo: tokio::sync::Mutex::new(None),
            history,
            events: broadcast::channel(1024).0,
            table: Mutex::new(Table::default()),
            root: CancellationToken::new(),
            view: super::view::View::with_disk_cache(disk),
            actor: Mutex::new(Actor::local("cli")),
            audit,
        }
    }

    pub(super) fn actor(&self) -> Actor {
        match self.actor.lock() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(super) fn set_actor(&self, a: Actor) {
        if let Ok(mut g) = self.actor.lock() {
            *g = a;
        }
    }

    pub(super) fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(super) async fn repo(&self) -> Result<Arc<Repository>> {
        let mut slot = self.repo.lock().await;
        if let Some(r) = &*slot {
            return Ok(r.clone());
        }
        let r = super::open(&self.config()).await?;
        *slot = Some(r.clone());
        Ok(r)
    }

    pub(super) fn reconfigure(&self, config: Config, repo: Arc<Repository>) {
        if let Ok(mut c) = self.config.write() {
            *c = Arc::new(config);
        }
        if let Ok(mut slot) = self.repo.try_lock() {
            *slot = Some(repo);
        }
        self.view.invalidate();
    }

    pub(super) fn emit(&self, e: Event) {
        if matches!(
            e,
            Event::JobFinished(_)
                | Event::JobFailed(_)
                | Event::BackupAdded { .. }
                | Event::BackupDeleted { .. }
                | Event::ConfigChanged
        ) {
            self.view.invalidate();
        }
        // No subscriber is fine.
        let _ = self.events.send(e);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        }
    }

    pub(super) fn live(&self) -> Vec<JobInfo> {
        self.table()
            .live
            .iter()
            .map(|(id, l)| JobInfo {
                id: id.clone(),
                kind: l.kind,
                source: l.source.clone(),
                state: l.state,
                queued_at: l.queued_at,
                parent: l.parent.clone(),
                progress: l.progress.borrow().clone(),
            })
            .collect()
    }

    pub(super) fn cancel(&self, job: &str) -> bool {
        match self.table().live.get(job) {
            Some(l) => {
                l.cancel.cancel();
                true
            }
            None => false,
        }
    }

    pub(super) async fn shutdown(&self, timeout: Duration) {
        self.root.cancel();
        let waits: Vec<_> = self
            .table()
            .live
            .iter()
            .map(|(id, l)| l.handle(id))
            .collect();
        let all = futures::future::join_all(waits.into_iter().map(|h| h.wait()));
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("jobs did not finish their cleanup within {timeout:?}");
        }
    }
}

pub(super) fn submit(
    engine: &Engine,
    command: Command,
    parent: Option<(String, CancellationToken)>,
    actor: Option<Actor>,
) -> Result<JobHandle> {
    let (handle, work) = prepare(engine, command, parent, actor)?;
    tokio::spawn(work);
    Ok(handle)
}

/// A job whose work the caller drives (see [`Engine::submit_here`]).
pub(super) fn prepare(
    engine: &Engine,
    command: Command,
    parent: Option<(String, CancellationToken)>,
    actor: Option<Actor>,
) -> Result<(JobHandle, futures::future::BoxFuture<'static, ()>)> {
    let inner = &engine.0;
    let actor = actor.unwrap_or_else(|| inner.actor());
    if inner.root.is_cancelled() {
        return Err(Error::Cancelled(
            "keepsake is shutting down: no new job starts".into(),
        ));
    }
    if let Command::Backup { source, .. } = &command {
        inner.config().source(source)?;
    }
    let key = command.flight_key();
    let mut t = inner.table();
    // Coalesce with a queued job of the same key.
    if let Some(k) = &key {
        if let Some(qid) = t.queued.get(k).cloned() {
            if let Some(l) = t.live.get(&qid) {
                let merged = l
                    .command
                    .lock()
                    .map(|mut c| c.coalesce(&command))
                    .unwrap_or(false);
                if merged {
                    tracing::info!("{} coalesced with queued job {qid}", command.kind());
                    // The queued job's own task does the work.
                    return Ok((l.handle(&qid), Box::pin(async {})));
                }
            }
        }
    }
    let id = History::new_id();
    let cancel = match &parent {
        Some((_, c)) => c.child_token(),
        None => inner.root.child_token(),
    };
    let (ptx, prx) = watch::channel(None);
    let (dtx, drx) = watch::channel(None);
    // A lock no job holds any more goes: keys name backups (`verify/<id>`), so a daemon that
    // verifies every backup it makes would otherwise keep one per backup it ever made.
    t.locks.retain(|_, l| Arc::strong_count(l) > 1);
    let lock = key.as_ref().map(|k| {
        t.locks
            .entry(k.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    });
    if let Some(k) = &key {
        t.queued.insert(k.clone(), id.clone());
    }
    let kind = command.kind();
    let source = command.source().map(str::to_string);
    let dry_run = command.is_preview();
    let command = Arc::new(Mutex::new(command));
    let live = Live {
        kind,
        source: source.clone(),
        state: JobState::Queued,
        queued_at: Utc::now(),
        parent: parent.as_ref().map(|p| p.0.clone()),
        key,
        command: command.clone(),
        cancel: cancel.clone(),
        progress: prx,
        done: drx,
    };
    let handle = live.handle(&id);
    t.live.insert(id.clone(), live);
    drop(t);
    inner.emit(Event::JobQueued {
        job: id.clone(),
        kind,
        source,
        dry_run,
    });
    let runner = Runner {
        engine: engine.clone(),
        id,
        command,
        lock,
        cancel,
        progress: ptx,
        done: dtx,
        parent: parent.map(|p| p.0),
        actor,
    };
    Ok((handle, Box::pin(runner.run())))
}

struct Runner {
    engine: Engine,
    id: String,
    command: Arc<Mutex<Command>>,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
    cancel: CancellationToken,
    progress: watch::Sender<Option<JobProgress>>,
    done: watch::Sender<Option<JobOutcome>>,
    parent: Option<String>,
    actor: Actor,
}

enum End {
    Ran(Result<Done>),
    Cancelled,
    TimedOut(Duration),
}

impl Runner {
    async fn run(self) {
        let inner = self.engine.0.clone();
        // Wait for the flight key (queued), unless cancelled meanwhile.
        let guard = match &self.lock {
            Some(l) => {
                let l = l.clone();
                let busy = l.try_lock().is_err();
                if busy {
                    let cmd = self.command();
                    inner.emit(Event::Log {
                        job: Some(self.id.clone()),
                        message: format!(
                            "{} queued behind a running job{} (single flight)",
                            cmd.kind(),
                            cmd.source().map(|s| format!(" of {s}")).unwrap_or_default()
                        ),
                    });
                }
                tokio::select! {
                g = l.lock_owned() => Some(g),
                _ = self.cancel.cancelled() => {
                    self.dequeue();
                    let cmd = self.command();
                    let outcome = JobOutcome {
                        job: self.id.clone(),
                        kind: cmd.kind(),
                        source: cmd.source().map(str::to_string),
                        status: JobStatus::Cancelled,
                        exit_code: 1,
                        error: Some(format!("cancelled: the {} was cancelled before it started", cmd.kind())),
                        error_kind: Some("cancelled"),
                        error_field: None,
                        error_refs: None,
                        result: None,
                    };
                    let record = inner
                        .history
                        .as_ref()
                        .filter(|_| cmd.recorded())
                        .map(|h| h.record(&self.id, cmd.kind(), cmd.source()));
                    self.finish(outcome, record).await;
                    return;
                }
                }
            }
            None => None,
        };
        // A place among `[daemon] max_jobs`, unless a parent job holds one for this one.
        let _slot = match self.parent {
            Some(_) => None,
            None => {
                let slots = inner.slots.clone();
                let busy = slots.available_permits() == 0;
                if busy {
                    inner.emit(Event::Log {
                        job: Some(self.id.clone()),
                        message: format!(
                            "{} queued: {} jobs are running ([daemon] max_jobs)",
                            self.command().kind(),
                            inner.config().daemon.max_jobs
                        ),
                    });
                }
                tokio::select! {
                    p = slots.acquire_owned() => p.ok(),
                    _ = self.cancel.cancelled() => None,
                }
            }
        };
        self.dequeue();
        let cmd = self.command();
        let config = inner.config();
        let mut record = JobRecord::new(&self.id, cmd.kind(), cmd.source(), &config.repository.url);
        record.started_by = Some(self.actor.started_by());
        super::ops::prefill(&cmd, &mut record);
        let write_history = cmd.recorded();
        if write_history {
            if let Some(h) = &inner.history {
                h.write(&record);
            }
        }
        if let Some(l) = inner.table().live.get_mut(&self.id) {
            l.state = JobState::Running;
        }
        inner.emit(Event::JobStarted {
            job: self.id.clone(),
            kind: cmd.kind(),
            source: cmd.source().map(str::to_string),
            parent: self.parent.clone(),
            dry_run: cmd.is_preview(),
        });
        let ctx = Arc::new(JobCtx {
            id: self.id.clone(),
            engine: self.engine.clone(),
            config: config.clone(),
            cleanup: Cleanup::new(),
            cancel: self.cancel.clone(),
            sink: JobSink {
                job: self.id.clone(),
                tx: self.progress.clone(),
                events: inner.events.clone(),
            },
            record: Mutex::new(record),
            actor: self.actor.clone(),
        });
        let deadline = config.daemon.job_timeout;
        let ends_itself = cmd.ends_itself_on_cancel();
        let cancelled = async {
            self.cancel.cancelled().await;
            if ends_itself {
                // It answers the cancellation itself; this is only the backstop.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        };
        // The audit fails closed: checked here, on the writer, not on the caller's worker.
        let audit = check_audit(&inner, &cmd).await;
        let end = tokio::select! {
            r = async {
                audit?;
                super::ops::run(&ctx, &cmd).await
            } => End::Ran(r),
            _ = cancelled => End::Cancelled,
            _ = tokio::time::sleep(deadline) => End::TimedOut(deadline),
        };
        // The operation's future is gone: undo what it left behind.
        let ran = ctx.cleanup.run().await;
        for what in &ran {
            inner.emit(Event::Log {
                job: Some(self.id.clone()),
                message: format!("cleanup: {what}"),
            });
        }
        drop(guard);
        let kind = cmd.kind();
        let field = match &end {
            End::Ran(Err(e)) => e.field().map(str::to_string),
            _ => None,
        };
        let kind_of = match &end {
            End::Ran(Err(e)) => Some(e.kind()),
            End::Ran(Ok(d)) if d.failure.as_ref().is_some_and(|f| f.cancelled) => Some("cancelled"),
            End::Ran(Ok(d)) if d.failure.as_ref().is_some_and(|f| f.exit_code == 3) => {
                Some("damage")
            }
            End::Ran(Ok(d)) if d.failure.is_some() => Some("failed"),
            End::Ran(Ok(_)) => None,
            End::Cancelled => Some("cancelled"),
            End::TimedOut(_) => Some("timeout"),
        };
        let (status, exit_code, error, result) = match end {
            End::Ran(Ok(d)) => match d.failure {
                None => (JobStatus::Completed, 0, None, d.result),
                Some(f) => (
                    if f.cancelled {
                        JobStatus::Cancelled
                    } else if f.job_failed {
                        JobStatus::Failed
                    } else {
                        JobStatus::Completed
                    },
                    f.exit_code,
                    Some(f.message),
                    d.result,
                ),
            },
            End::Ran(Err(e @ Error::Cancelled(_))) => {
                (JobStatus::Cancelled, e.exit_code(), Some(e.to_string()), None)
            }
            End::Ran(Err(e)) => (JobStatus::Failed, e.exit_code(), Some(e.message()), None),
            End::Cancelled => (
                JobStatus::Cancelled,
                1,
                Some(format!(
                    "cancelled: the {kind} was cancelled; nothing of it was committed{}",
                    cleaned(&ran)
                )),
                None,
            ),
            End::TimedOut(d) => (
                JobStatus::Failed,
                1,
                Some(format!(
                    "the {kind} ran longer than [daemon] job_timeout ({}s) and was stopped; nothing of it was committed{}",
                    d.as_secs(),
                    cleaned(&ran)
                )),
                None,
            ),
        };
        // Plain words for everyone who reads the record; the face that asked words the
        // references to its request's fields itself (`JobOutcome::error_in`).
        let error_refs = error
            .as_deref()
            .filter(|m| crate::error::plain_fields(m) != **m)
            .map(str::to_string);
        let error = error.map(|m| crate::error::plain_fields(&m));
        let record = ctx.record.lock().map(|r| r.clone()).ok();
        let outcome = JobOutcome {
            job: self.id.clone(),
            kind,
            source: cmd.source().map(str::to_string),
            status,
            exit_code,
            error,
            error_kind: kind_of,
            error_field: field,
            error_refs,
            result,
        };
        self.finish(outcome, record.filter(|_| write_history)).await;
    }

    fn command(&self) -> Command {
        match self.command.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn dequeue(&self) {
        let mut t = self.engine.0.table();
        let key = t.live.get(&self.id).and_then(|l| l.key.clone());
        if let Some(k) = key {
            if t.queued.get(&k) == Some(&self.id) {
                t.queued.remove(&k);
            }
        }
    }

    async fn finish(&self, outcome: JobOutcome, record: Option<JobRecord>) {
        let inner = &self.engine.0;
        // Buffers kept for reading chunks go back while nothing reads them.
        crate::core::chunks::release_buffers();
        if let (Some(log), Some(r)) = (&inner.audit, &record) {
            // The audit is the runner's: every recorded job, whatever face started it.
            let entry = job_entry(&self.actor, &self.command(), r, &outcome);
            if let Err(e) = log.append(entry).await {
                tracing::error!("could not write the audit line of job {}: {e}", self.id);
                inner.emit(Event::Log {
                    job: Some(self.id.clone()),
                    message: format!("the audit log could not record this job: {e}"),
                });
            }
        }
        if let (Some(h), Some(mut r)) = (&inner.history, record) {
            r.status = outcome.status;
            r.finished_at = Some(Utc::now());
            r.error = outcome.error.clone();
            h.write(&r);
        }
        inner.table().live.remove(&self.id);
        let ev = if outcome.status == JobStatus::Completed && outcome.exit_code == 0 {
            Event::JobFinished(outcome.clone())
        } else {
            Event::JobFailed(outcome.clone())
        };
        inner.emit(ev);
        self.done.send_replace(Some(outcome));
    }
}

/// The audit line of a finished job: who, what (the command's own fields: none holds a
/// secret, see [`Command`]), of what, and how it ended.
fn job_entry(actor: &Actor, cmd: &Command, r: &JobRecord, o: &JobOutcome) -> Entry {
    let mut params = serde_json::to_value(cmd).unwrap_or_default();
    if let Some(m) = params.as_object_mut() {
        m.remove("command");
        if let Command::Drill(d) = cmd {
            // The offline key's path is not recorded; that it was used is.
            m.insert("break_glass".into(), d.identity.is_some().into());
        }
    }
    Entry {
        actor: actor.name.clone(),
        role: actor.role.clone(),
        via: actor.via.clone(),
        action: cmd.kind().to_string(),
        target: r.backup_id.clone().or_else(|| r.source.clone()),
        params,
        outcome: match (o.status, o.exit_code) {
            (JobStatus::Cancelled, _) => "cancelled",
            (_, 0) => "ok",
            (_, 2) => "refused",
            _ => "failed",
        }
        .into(),
        code: u16::try_from(o.exit_code).unwrap_or(1),
        job: Some(o.job.clone()),
        reason: o.error.clone(),
    }
}

/// Refuse a job that changes or removes what exists (a restore, a delete, a real prune)
/// while its audit line could not be written: the audit fails closed. Backups and verifies
/// still run (stopping them would cost recovery points); their audit failure is logged.
async fn check_audit(inner: &Inner, cmd: &Command) -> Result<()> {
    let destructive = matches!(
        cmd,
        Command::Restore(_) | Command::Delete { .. } | Command::Prune { dry_run: false }
    );
    match &inner.audit {
        Some(log) if destructive => log.check_writable().await.map_err(|e| {
            tracing::error!("refusing a {} that cannot be audited: {e}", cmd.kind());
            Error::Other(format!(
                "the audit log cannot be written, so the {} does not start until it can: {e}",
                cmd.kind()
            ))
        }),
        _ => Ok(()),
    }
}

fn cleaned(ran: &[String]) -> String {
    if ran.is_empty() {
        String::new()
    } else {
        format!(" (cleaned up: {})", ran.join("; "))
    }
}
