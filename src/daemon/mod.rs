//! `keepsake --daemon` (also `keepsake daemon`): runs each source's schedule, verifies after
//! each backup and on `[verification] schedule`, applies retention, watches every source's RPO,
//! sends alerts, mirrors the job history to the catalog — until SIGTERM or SIGINT.
//!
//! The daemon is a face of the engine: scheduler ticks submit commands (backup with its
//! verification, then prune; the verification schedule), webhooks and the catalog mirror
//! subscribe to the engine's events, and the RPO check runs in a task of its own.
//!
//! Invariants:
//! - One daemon per state directory (an advisory lock on `daemon.lock`, released by the kernel
//!   when the process ends, refuses a second).
//! - The scheduler never waits for a job: a stuck backup (a table lock, a hung server) neither
//!   delays other sources nor silences the RPO alarm or the watchdog. Jobs of one source never
//!   overlap: the engine runs a source's backups single-flight, and a run that falls due while
//!   another is queued coalesces with it (the strongest type wins). After downtime, at most one
//!   catch-up run per source (of the strongest type that fell due while it was down). Every job
//!   has the deadline `[daemon] job_timeout`.
//! - Stop (SIGTERM/SIGINT): scheduling stops, every job is cancelled through the engine —
//!   nothing half written becomes visible (a backup exists only once its manifest is written;
//!   pg_dump is killed; the job's scratch database and lease are removed by its cleanup hooks)
//!   — each is recorded `cancelled`, queued alerts get what is left of
//!   `[daemon] shutdown_timeout`, exit 0.
//! - SIGHUP reloads the configuration; an invalid one is logged and the old one kept.
//! - The RPO alarm fires once per breach (no backup proven at `data` level or better newer than
//!   the source's `rpo`) and once on recovery; the state survives restarts (`alerts.json`).
//! - systemd: `READY=1` once running, `WATCHDOG=1` at half the watchdog interval, `STOPPING=1`
//!   on the way out (no-ops outside systemd).

pub mod catalog;
pub mod notify;
pub mod systemd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, Config};
use crate::core::format::BackupType;
use crate::core::verify::Level;
use crate::engine::command::strength;
use crate::engine::event::{Alert, AlertKind, Event, JobResult};
use crate::engine::history::JobStatus;
use crate::engine::{self, Command, Engine, VerifyTarget};
use crate::error::{Error, Result};
use crate::present::human_bytes;
use notify::Notifier;

/// Take the state directory's lock (an advisory file lock held for the daemon's lifetime, so a
/// crash releases it and a reused pid cannot fake it), or say which daemon holds it.
fn lock(state_dir: &Path) -> Result<std::fs::File> {
    use std::io::Write;
    std::fs::create_dir_all(state_dir)
        .map_err(|e| Error::io(format!("creating {}", state_dir.display()), e))?;
    let path = state_dir.join("daemon.lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    if f.try_lock().is_err() {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(Error::Usage(format!(
            "another keepsake daemon (pid {}) uses the state directory {}: stop it first",
            holder.trim(),
            state_dir.display()
        )));
    }
    let _ = f.set_len(0);
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

/// Signals, as flags the loop and running jobs look at.
struct Signals {
    stop: tokio::sync::watch::Receiver<bool>,
    reload: Arc<std::sync::atomic::AtomicBool>,
}

fn listen() -> Result<Signals> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::io("installing a SIGTERM handler", e))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("installing a SIGINT handler", e))?;
    let mut hup =
        signal(SignalKind::hangup()).map_err(|e| Error::io("installing a SIGHUP handler", e))?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let reload = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = reload.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { let _ = tx.send(true); }
                _ = int.recv() => { let _ = tx.send(true); }
                _ = hup.recv() => { r.store(true, std::sync::atomic::Ordering::SeqCst); }
            }
        }
    });
    Ok(Signals { stop: rx, reload })
}

/// RPO alarm state per source, persisted so a restart neither repeats nor loses an alarm.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AlertState {
    breached: BTreeMap<String, DateTime<Utc>>,
}

impl AlertState {
    fn load(dir: &Path) -> Self {
        std::fs::read(dir.join("alerts.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
    fn save(&self, dir: &Path) {
        let path = dir.join("alerts.json");
        let tmp = dir.join(".alerts.json.tmp");
        let res = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = res {
            tracing::warn!("could not save the alert state {}: {e}", path.display());
        }
    }
}

/// The scheduler's state between ticks.
struct Scheduler {
    path: PathBuf,
    engine: Engine,
    /// Per source: scheduled instants up to here have been considered.
    since: BTreeMap<String, DateTime<Utc>>,
    /// Per source: a run waiting for its (jittered) start, and its type.
    waiting: BTreeMap<String, (BackupType, DateTime<Utc>)>,
    verify_since: DateTime<Utc>,
    drill_since: DateTime<Utc>,
}

impl Scheduler {
    /// Look at every schedule; remember what fell due (coalesced per source).
    fn schedule(&mut self, cfg: &Config, now: DateTime<Utc>) {
        for s in &cfg.sources {
            let Some(sched) = &s.schedule else { continue };
            let from = self.since.get(&s.name).copied().unwrap_or(now);
            let due = sched.due(from, now);
            self.since.insert(s.name.clone(), now);
            let Some(kind) = due.iter().map(|d| d.0).max_by_key(|k| strength(Some(*k))) else {
                continue;
            };
            let jitter = cfg.daemon.jitter;
            let start = now
                + chrono::Duration::from_std(if jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_millis(rand::random::<u64>() % jitter.as_millis().max(1) as u64)
                })
                .unwrap_or_default();
            match self.waiting.get_mut(&s.name) {
                Some(q) => {
                    if strength(Some(kind)) > strength(Some(q.0)) {
                        q.0 = kind;
                    }
                }
                None => {
                    self.waiting.insert(s.name.clone(), (kind, start));
                }
            }
        }
    }

    /// Start every run whose time has come: backup (verified as `[verification] after_backup`
    /// says), then retention — in a task of its own, so the scheduler never waits.
    fn start_due(&mut self, cfg: &Config, now: DateTime<Utc>) {
        let due: Vec<(String, BackupType)> = self
            .waiting
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(n, (k, _))| (n.clone(), *k))
            .collect();
        for (source, kind) in due {
            self.waiting.remove(&source);
            let engine = self.engine.clone();
            let verify = cfg.verification.after_backup;
            let prune = cfg.retention != Default::default();
            tokio::spawn(async move {
                let cmd = Command::Backup {
                    source: source.clone(),
                    kind: Some(kind),
                    verify,
                };
                let h = match engine.submit(cmd) {
                    Ok(h) => h,
                    Err(Error::Cancelled(_)) => return, // stopping
                    Err(e) => {
                        tracing::error!("{source}: cannot start a backup: {e}");
                        return;
                    }
                };
                let o = h.wait().await;
                if o.status != JobStatus::Completed || !prune {
                    return;
                }
                // Retention counts on proven backups: after a verification that failed or
                // could not prove the backup, prune waits for the next good run.
                if o.exit_code != 0 {
                    tracing::warn!(
                        "{source}: no prune after this backup: its verification did not pass ({})",
                        o.error.as_deref().unwrap_or("not proven")
                    );
                    return;
                }
                match engine.submit(Command::Prune { dry_run: false }) {
                    Ok(h) => {
                        h.wait().await;
                    }
                    Err(Error::Cancelled(_)) => {} // stopping
                    Err(e) => tracing::error!("cannot start a prune: {e}"),
                }
            });
        }
    }

    /// The verification schedule: the latest backup of each source, at restore level.
    fn verify_due(&mut self, cfg: &Config, now: DateTime<Utc>) {
        let Some(vs) = &cfg.verification.schedule else {
            return;
        };
        if vs.due(self.verify_since, now).is_none() {
            return;
        }
        self.verify_since = now;
        let engine = self.engine.clone();
        let sources: Vec<String> = cfg.sources.iter().map(|s| s.name.clone()).collect();
        tokio::spawn(async move {
            let ms = match engine.repo().await {
                Ok(r) => match r.manifests_lenient().await {
                    Ok((ms, _)) => ms,
                    Err(e) => {
                        tracing::warn!("scheduled verification: cannot list backups: {e}");
                        return;
                    }
                },
                Err(e) => {
                    tracing::warn!("scheduled verification: cannot open the repository: {e}");
                    return;
                }
            };
            for m in engine::query::latest_per_source(&ms) {
                if !sources.contains(&m.source.name) {
                    continue;
                }
                let cmd = Command::Verify {
                    target: VerifyTarget::Id(m.id.clone()),
                    level: Level::Restore,
                };
                match engine.submit(cmd) {
                    Ok(h) => {
                        h.wait().await;
                    }
                    Err(e) => tracing::error!("scheduled verification of {}: {e}", m.id),
                }
            }
        });
    }

    /// The drill schedule: every configured source in turn, each with its newest proven backup.
    fn drill_due(&mut self, cfg: &Config, now: DateTime<Utc>) {
        let Some(ds) = &cfg.drill.schedule else {
            return;
        };
        if ds.due(self.drill_since, now).is_none() {
            return;
        }
        self.drill_since = now;
        let engine = self.engine.clone();
        let sources: Vec<String> = cfg.sources.iter().map(|s| s.name.clone()).collect();
        let actor = format!("daemon ({})", engine::audit::current_user());
        tokio::spawn(async move {
            for s in sources {
                let cmd = Command::Drill(engine::DrillRequest {
                    source: Some(s.clone()),
                    actor: actor.clone(),
                    ..Default::default()
                });
                match engine.submit(cmd) {
                    Ok(h) => {
                        h.wait().await;
                    }
                    Err(e) => tracing::error!("scheduled drill of {s}: {e}"),
                }
            }
        });
    }

    /// Reload the configuration after SIGHUP (keep the old one if the new one is invalid).
    async fn reload(&mut self) {
        let new = match config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "SIGHUP: the new configuration is invalid, keeping the old one: {e}"
                );
                return;
            }
        };
        if let Err(e) = self.engine.reconfigure(new.clone()).await {
            tracing::error!(
                "SIGHUP: cannot open the repository with the new configuration, keeping the old one: {e}"
            );
            return;
        }
        let now = Utc::now();
        for s in &new.sources {
            self.since.entry(s.name.clone()).or_insert(now);
        }
        self.waiting
            .retain(|name, _| new.sources.iter().any(|s| &s.name == name));
        tracing::info!(
            "SIGHUP: configuration reloaded from {} ({} source(s))",
            self.path.display(),
            new.sources.len()
        );
    }
}

/// Webhook delivery, fed from the engine's events.
struct Alerts {
    notifier: Notifier,
    delivery: Option<notify::Delivery>,
    shutdown_timeout: Duration,
}

impl Alerts {
    fn reconfigure(&mut self, cfg: &Config) {
        // New webhooks: a new sender; the old one delivers what it has queued.
        let (n, del) = Notifier::start(cfg.notifications.clone());
        let old = std::mem::replace(&mut self.notifier, n);
        if let Some(old_del) = self.delivery.replace(del) {
            tokio::spawn(old_del.finish(old, self.shutdown_timeout));
        }
        self.shutdown_timeout = cfg.daemon.shutdown_timeout;
    }

    async fn finish(mut self) {
        if let Some(del) = self.delivery.take() {
            let n = std::mem::replace(&mut self.notifier, Notifier::none());
            del.finish(n, self.shutdown_timeout).await;
        }
    }
}

/// The webhook event an engine event makes, if any.
fn webhook(e: &Event) -> Option<notify::Event> {
    let mut ev = match e {
        Event::BackupAdded { job, backup } => {
            tracing::info!(
                "{}: {} backup {} completed",
                backup.source,
                backup.kind.as_str(),
                backup.id
            );
            let mut ev = notify::Event::new(
                "backup_succeeded",
                Some(&backup.source),
                format!(
                    "{} backup {} of {} completed ({} logical, {} stored)",
                    backup.kind.as_str(),
                    backup.id,
                    backup.source,
                    human_bytes(backup.logical_bytes),
                    human_bytes(backup.stored_bytes)
                ),
            );
            ev.backup_id = Some(backup.id.clone());
            ev.job_id = Some(job.clone());
            ev
        }
        Event::JobFailed(o) if o.status == JobStatus::Failed && o.kind == "backup" => {
            let src = o.source.clone().unwrap_or_default();
            tracing::error!("{src}: backup failed: {}", o.error.as_deref().unwrap_or(""));
            let mut ev = notify::Event::new(
                "backup_failed",
                o.source.as_deref(),
                format!("backup of {src} failed"),
            );
            ev.job_id = Some(o.job.clone());
            ev.error = o.error.clone();
            ev
        }
        Event::JobFailed(o) if o.status == JobStatus::Failed && o.kind == "verify" => {
            let rec = match &o.result {
                Some(JobResult::Verify { records, .. }) => records.first(),
                _ => None,
            };
            let id = rec.map(|r| r.backup_id.clone()).unwrap_or_default();
            let source = rec.map(|r| r.source.clone());
            tracing::error!(
                "verification of {id} failed: {}",
                o.error.as_deref().unwrap_or("")
            );
            let mut ev = notify::Event::new(
                "verify_failed",
                source.as_deref(),
                format!(
                    "backup {id}{} did not pass {} verification ({})",
                    source
                        .as_ref()
                        .map(|s| format!(" of {s}"))
                        .unwrap_or_default(),
                    rec.map(|r| r.level.as_str()).unwrap_or("its"),
                    if o.exit_code == 3 {
                        "damaged"
                    } else {
                        "not proven"
                    }
                ),
            );
            ev.backup_id = Some(id);
            ev.job_id = Some(o.job.clone());
            ev.error = o.error.clone();
            ev
        }
        Event::JobFailed(o) if o.kind == "drill" => {
            let (summary, source, backup) = match &o.result {
                Some(JobResult::Drill(r)) => (
                    r.summary.clone(),
                    Some(r.source.clone()).filter(|s| !s.is_empty()),
                    r.backup_id.clone(),
                ),
                _ => (o.error.clone().unwrap_or_default(), o.source.clone(), None),
            };
            tracing::error!("drill failed: {summary}");
            let mut ev = notify::Event::new(
                "drill_failed",
                source.as_deref(),
                format!(
                    "disaster-recovery drill{} did not pass: {summary}",
                    source
                        .as_ref()
                        .map(|s| format!(" of {s}"))
                        .unwrap_or_default()
                ),
            );
            ev.backup_id = backup;
            ev.job_id = Some(o.job.clone());
            ev.error = o.error.clone();
            ev
        }
        Event::JobFinished(o) | Event::JobFailed(o) if o.kind == "prune" => {
            let report = match &o.result {
                Some(JobResult::Prune(r)) => Some(r),
                _ => None,
            };
            // A preview changes nothing: no event.
            if report.is_some_and(|r| r.dry_run) {
                return None;
            }
            let skipped = report.and_then(|r| r.gc_skipped.clone());
            let failed = matches!(e, Event::JobFailed(_)) && o.status == JobStatus::Failed;
            let mut ev = match (skipped, failed) {
                (Some(why), _) => {
                    tracing::error!("prune collected no packs: {why}");
                    let mut ev = notify::Event::new(
                        "prune_failed",
                        None,
                        "retention applied, but no pack was collected: storage is not freed until this is fixed".to_string(),
                    );
                    ev.error = Some(why);
                    ev
                }
                (None, true) => {
                    tracing::error!("prune failed: {}", o.error.as_deref().unwrap_or(""));
                    let mut ev =
                        notify::Event::new("prune_failed", None, "prune failed".to_string());
                    ev.error = o.error.clone();
                    ev
                }
                (None, false) if matches!(e, Event::JobFinished(_)) => {
                    notify::Event::new("prune", None, "retention applied".to_string())
                }
                // Cancelled: nothing to tell.
                (None, false) => return None,
            };
            ev.job_id = Some(o.job.clone());
            ev
        }
        Event::Alert(a) => {
            let mut ev =
                notify::Event::new(a.kind.as_str(), a.source.as_deref(), a.message.clone());
            ev.backup_id = a.backup_id.clone();
            ev.job_id = a.job.clone();
            ev.error = a.error.clone();
            ev
        }
        _ => return None,
    };
    ev.at = Utc::now();
    Some(ev)
}

/// RPO alarm: compares every source's RPO with what is proven, every rpo/4 (2 s to 60 s) and
/// whenever a job ends; alerts once per breach and once on recovery. Runs on its own, so a
/// stuck job never silences it.
async fn watch_rpo(engine: Engine, state_dir: PathBuf, started: DateTime<Utc>, stop: CancelOnDrop) {
    let mut alerts = AlertState::load(&state_dir);
    let mut events = engine.subscribe();
    loop {
        let cfg = engine.config();
        check_rpo(&engine, &mut alerts, &state_dir, started).await;
        let every = cfg
            .sources
            .iter()
            .filter_map(|s| s.rpo)
            .filter_map(|r| (r / 4).to_std().ok())
            .min()
            .unwrap_or(Duration::from_secs(60))
            .clamp(Duration::from_secs(2), Duration::from_secs(60));
        let sleep = tokio::time::sleep(every);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = stop.0.cancelled() => return,
                e = events.recv() => match e {
                    Ok(Event::JobFinished(_)) | Ok(Event::JobFailed(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                }
            }
        }
    }
}

struct CancelOnDrop(tokio_util::sync::CancellationToken);

async fn check_rpo(
    engine: &Engine,
    alerts: &mut AlertState,
    state_dir: &Path,
    started: DateTime<Utc>,
) {
    tracing::debug!("checking RPOs");
    let statuses = match engine.status().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("RPO check: cannot read the repository: {e}");
            return;
        }
    };
    let mut changed = false;
    for s in statuses {
        let breached = alerts.breached.contains_key(&s.source);
        // A source with no proven backup yet is in breach only once the daemon has had the
        // RPO's time to make one (no alarm in the first minutes of a new setup).
        let young = s.last_verified_id.is_none()
            && s.rpo_s
                .is_some_and(|r| (Utc::now() - started).num_seconds() < r);
        let state = if young && s.rpo_state == "breach" {
            "ok-pending"
        } else {
            s.rpo_state
        };
        let alert = |kind, message: String| Alert {
            kind,
            source: Some(s.source.clone()),
            backup_id: s.last_verified_id.clone(),
            job: None,
            message,
            error: None,
            verdict: None,
            at: Utc::now(),
        };
        match (state, breached) {
            ("breach", false) => {
                let last = s
                    .last_verified_backup_at
                    .map(|t| format!("the newest proven backup finished at {t}"))
                    .unwrap_or_else(|| "no backup is proven".into());
                tracing::warn!("RPO breached for {}", s.source);
                engine.emit(Event::Alert(alert(
                    AlertKind::RpoBreach,
                    format!(
                        "RPO breached for {}: no backup proven at data level in the last {}s ({last})",
                        s.source,
                        s.rpo_s.unwrap_or(0)
                    ),
                )));
                alerts.breached.insert(s.source.clone(), Utc::now());
                changed = true;
            }
            ("ok", true) => {
                engine.emit(Event::Alert(alert(
                    AlertKind::RpoRecovered,
                    format!(
                        "RPO met again for {}: backup {} is proven",
                        s.source,
                        s.last_verified_id.clone().unwrap_or_default()
                    ),
                )));
                alerts.breached.remove(&s.source);
                changed = true;
            }
            ("not set", true) => {
                alerts.breached.remove(&s.source);
                changed = true;
            }
            _ => {}
        }
    }
    if changed {
        alerts.save(state_dir);
    }
}

/// Run until SIGTERM/SIGINT.
/// Stops a service the daemon hosts (waits for it to finish).
pub type Stopper = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>;

/// A service started beside the scheduler on the daemon's engine and state directory — the
/// control API, given by `main.rs` (which chooses the faces): the daemon hosts it, it does not
/// import it.
pub type Service =
    Box<dyn FnOnce(Engine, PathBuf) -> futures::future::BoxFuture<'static, Result<Stopper>> + Send>;

pub async fn run(config_path: &Path, service: Option<Service>) -> Result<()> {
    let cfg: Config = config::load(config_path)?;
    let state_dir = engine::state_dir(&cfg)?;
    let lock_file = lock(&state_dir)?;
    let res = run_locked(config_path, cfg, &state_dir, service).await;
    drop(lock_file);
    res
}

async fn run_locked(
    config_path: &Path,
    cfg: Config,
    state_dir: &Path,
    service: Option<Service>,
) -> Result<()> {
    let signals = listen()?;
    let engine = Engine::new(cfg.clone());
    // Jobs the daemon starts on its own; API callers are named by the API.
    engine.set_actor(engine::audit::Actor::schedule());
    if let Some(history) = engine.history_store() {
        // Jobs a crash left running are recorded as interrupted.
        for j in history
            .jobs()
            .into_iter()
            .filter(|j| j.status == JobStatus::Interrupted && j.finished_at.is_none())
        {
            history.finish(
                j,
                JobStatus::Interrupted,
                Some("the process running it ended without finishing it".into()),
            );
        }
    }
    let repo = engine.repo().await?;
    let (notifier, delivery) = Notifier::start(cfg.notifications.clone());
    let mut alerts = Alerts {
        notifier,
        delivery: Some(delivery),
        shutdown_timeout: cfg.daemon.shutdown_timeout,
    };
    let catalog = match (cfg.catalog.clone(), engine.history_store()) {
        (Some(c), Some(h)) => Some(catalog::Catalog::start(
            c,
            h.clone(),
            cfg.repository.url.clone(),
        )),
        _ => None,
    };

    // Catch-up: what fell due since each source's last backup (at most a week back).
    let (ms, _) = repo.manifests_lenient().await?;
    let now = Utc::now();
    let mut since = BTreeMap::new();
    for s in &cfg.sources {
        let last = ms
            .iter()
            .filter(|m| m.source.name == s.name)
            .map(|m| m.started_at)
            .max();
        since.insert(
            s.name.clone(),
            last.unwrap_or(now).max(now - chrono::Duration::days(7)),
        );
    }
    let mut sched = Scheduler {
        path: config_path.to_path_buf(),
        engine: engine.clone(),
        since,
        waiting: BTreeMap::new(),
        verify_since: now,
        drill_since: now,
    };
    tracing::info!(
        "daemon started: {} source(s), state {}",
        cfg.sources.len(),
        state_dir.display()
    );
    systemd::notify("READY=1");
    // The watchdog is fed from its own task: a long job is not a hang; a wedged runtime still
    // stops the pings.
    let pinger = systemd::watchdog_interval().map(|w| {
        tokio::spawn(async move {
            loop {
                systemd::notify("WATCHDOG=1");
                tokio::time::sleep(w).await;
            }
        })
    });
    let rpo_stop = tokio_util::sync::CancellationToken::new();
    let rpo = tokio::spawn(watch_rpo(
        engine.clone(),
        state_dir.to_path_buf(),
        now,
        CancelOnDrop(rpo_stop.clone()),
    ));
    // Continuous change capture: one task per source with [sources.capture] (sources added by a
    // reload start capturing at the next start of the daemon).
    let capture_stop = tokio_util::sync::CancellationToken::new();
    let captures: Vec<_> = cfg
        .sources
        .iter()
        .filter(|s| s.capture.is_some())
        .map(|s| {
            tokio::spawn(crate::engine::capture::run(
                engine.clone(),
                s.name.clone(),
                capture_stop.clone(),
            ))
        })
        .collect();
    let mut events = engine.subscribe();
    // The control API (the daemon serves it; it is a face of the same engine).
    let api = match service {
        Some(start) => Some(start(engine.clone(), state_dir.to_path_buf()).await?),
        None => None,
    };
    let catalog_wake = catalog.as_ref().map(|c| c.wake.clone());

    loop {
        if *signals.stop.borrow() {
            break;
        }
        if signals
            .reload
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            sched.reload().await;
        }
        let cfg = engine.config();
        let now = Utc::now();
        sched.schedule(&cfg, now);
        sched.start_due(&cfg, now);
        sched.verify_due(&cfg, now);
        sched.drill_due(&cfg, now);

        let mut stop = signals.stop.clone();
        let tick = tokio::time::sleep(Duration::from_millis(250));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = &mut tick => break,
                e = events.recv() => match e {
                    Ok(e) => {
                        if let Some(ev) = webhook(&e) {
                            alerts.notifier.send(ev);
                        }
                        if matches!(e, Event::ConfigChanged) {
                            // SIGHUP or PUT /v1/config: webhooks and timeouts follow.
                            alerts.reconfigure(&engine.config());
                        }
                        if matches!(e, Event::JobStarted { .. } | Event::JobFinished(_) | Event::JobFailed(_)) {
                            if let Some(w) = &catalog_wake {
                                w.notify_one();
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("the alert listener fell {n} events behind; some alerts were not sent");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    }
    systemd::notify("STOPPING=1");
    if let Some(p) = pinger {
        p.abort();
    }
    tracing::info!("daemon stopping");
    let t = std::time::Instant::now();
    // No new requests; open ones get a moment, event streams end.
    if let Some(stop) = api {
        stop().await;
    }
    let shutdown_timeout = engine.config().daemon.shutdown_timeout;
    // Cancel every job; their cleanup hooks (scratch databases, leases) run before they end.
    engine.shutdown(shutdown_timeout).await;
    rpo_stop.cancel();
    let _ = rpo.await;
    // Captures store what is whole and confirm it before their connections close.
    capture_stop.cancel();
    for c in captures {
        let _ = tokio::time::timeout(shutdown_timeout, c).await;
    }
    // Alerts the last jobs raised.
    while let Ok(e) = events.try_recv() {
        if let Some(ev) = webhook(&e) {
            alerts.notifier.send(ev);
        }
    }
    if let Some(w) = &catalog_wake {
        w.notify_one();
    }
    alerts.finish().await;
    if let Some(c) = catalog {
        c.finish(shutdown_timeout.saturating_sub(t.elapsed())).await;
    }
    tracing::info!("daemon stopped");
    Ok(())
}
