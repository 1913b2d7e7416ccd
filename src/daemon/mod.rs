//! `keepsake --daemon` (also `keepsake daemon`): runs each source's schedule, verifies after
//! each backup and on `[verification] schedule`, applies retention, watches every source's RPO,
//! sends alerts, mirrors the job history to the catalog — until SIGTERM or SIGINT.
//!
//! Invariants:
//! - One daemon per state directory (an advisory lock on `daemon.lock`, released by the kernel
//!   when the process ends, refuses a second).
//! - Jobs never overlap: the loop runs one job at a time. A run that falls due while another
//!   job runs is remembered once per source (the strongest type wins) and starts afterwards —
//!   coalesced, never piled up. After downtime, at most one catch-up run per source (of the
//!   strongest type that fell due while it was down).
//! - Every job (backup, verify, prune) is recorded `running` before it starts and with its
//!   outcome after; alerts and the catalog are fed from those records and never block a job.
//! - Stop (SIGTERM/SIGINT): scheduling stops, the running job is cancelled — nothing half
//!   written becomes visible (a backup exists only once its manifest is written; pg_dump is
//!   killed; a scratch database is dropped), its lease is released — it is recorded
//!   `cancelled`, queued alerts get what is left of `[daemon] shutdown_timeout`, exit 0.
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
use crate::core::progress::NoProgress;
use crate::core::repo::Repository;
use crate::core::verify::Level;
use crate::engine::{
    self,
    jobs::{History, JobRecord, JobStatus},
};
use crate::error::{Error, Result};
use notify::{Event, Notifier};

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

/// The state directory a configuration uses.
pub fn state_dir(cfg: &Config) -> Result<PathBuf> {
    cfg.daemon
        .state_dir
        .clone()
        .or_else(engine::jobs::default_state_dir)
        .ok_or_else(|| Error::Usage("no state directory: set [daemon] state_dir".into()))
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

/// Resolves when a stop was requested.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            // The signal task is gone: never resolve.
            std::future::pending::<()>().await;
        }
    }
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

fn strength(k: BackupType) -> u8 {
    match k {
        BackupType::Full => 3,
        BackupType::Differential => 2,
        BackupType::Incremental => 1,
    }
}

/// Everything the loop carries between iterations.
struct Daemon {
    path: PathBuf,
    cfg: Config,
    repo: Arc<Repository>,
    history: History,
    state_dir: PathBuf,
    notifier: Notifier,
    delivery: Option<notify::Delivery>,
    catalog_wake: Option<Arc<tokio::sync::Notify>>,
    /// Per source: scheduled instants up to here have been considered.
    since: BTreeMap<String, DateTime<Utc>>,
    /// Per source: a run waiting to start (coalesced), and when it may start (jitter).
    queued: BTreeMap<String, (BackupType, DateTime<Utc>)>,
    verify_since: DateTime<Utc>,
    alerts: AlertState,
    started: DateTime<Utc>,
}

/// What a job's work produced, for its record and its alerts.
enum Outcome {
    Done(JobRecord),
    Failed(JobRecord, String),
    Cancelled,
}

impl Daemon {
    /// Run `work` as job `kind` for `source`: record it, cancel it on stop, mirror it.
    async fn job<F, T>(
        &self,
        kind: &str,
        source: Option<&str>,
        stop: &tokio::sync::watch::Receiver<bool>,
        pre: impl FnOnce(&mut JobRecord),
        work: F,
        fill: impl FnOnce(&mut JobRecord, &T),
    ) -> Outcome
    where
        F: std::future::Future<Output = Result<T>>,
    {
        tracing::debug!("{kind} job starts");
        let mut job = self.history.start_with(kind, source, pre);
        self.wake_catalog();
        let res = tokio::select! {
            r = work => Some(r),
            _ = stopped(stop.clone()) => None,
        };
        let out = match res {
            None => {
                // The work future is dropped: pg_dump is killed, the scratch database dropped
                // (their guards), nothing was committed. Release our repository lease.
                if let Err(e) = crate::core::prune::release_own_leases(&self.repo).await {
                    tracing::warn!("could not release this process's backup lease: {e}");
                }
                self.history.finish(
                    job.clone(),
                    JobStatus::Cancelled,
                    Some(format!(
                        "the daemon was stopped; nothing of this {kind} was committed"
                    )),
                );
                Outcome::Cancelled
            }
            Some(Ok(v)) => {
                fill(&mut job, &v);
                self.history.finish(job.clone(), JobStatus::Completed, None);
                Outcome::Done(job)
            }
            Some(Err(e)) => {
                let msg = e.to_string();
                self.history
                    .finish(job.clone(), JobStatus::Failed, Some(msg.clone()));
                Outcome::Failed(job, msg)
            }
        };
        self.wake_catalog();
        out
    }

    fn wake_catalog(&self) {
        if let Some(w) = &self.catalog_wake {
            w.notify_one();
        }
    }

    /// Back up `source`, then verify and prune as configured. Returns false when stopped.
    async fn backup(
        &mut self,
        source: &str,
        kind: BackupType,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let progress = NoProgress;
        let cfg = self.cfg.clone();
        let repo = self.repo.clone();
        let out = self
            .job(
                "backup",
                Some(source),
                stop,
                |j| j.backup_type = Some(kind.as_str().to_string()),
                engine::backup_source(&cfg, &repo, source, Some(kind), &progress),
                |j, m| {
                    j.backup_id = Some(m.id.clone());
                    j.backup_type = Some(m.kind.as_str().to_string());
                    j.logical_bytes = Some(m.logical_bytes);
                    j.stored_bytes = Some(m.stored_bytes);
                },
            )
            .await;
        let job = match out {
            Outcome::Cancelled => return false,
            Outcome::Failed(j, e) => {
                tracing::error!("{source}: {} backup failed: {e}", kind.as_str());
                let mut ev = Event::new(
                    "backup_failed",
                    Some(source),
                    format!("{} backup of {source} failed", kind.as_str()),
                );
                ev.job_id = Some(j.id);
                ev.error = Some(e);
                self.notifier.send(ev);
                return true;
            }
            Outcome::Done(j) => j,
        };
        let id = job.backup_id.clone().unwrap_or_default();
        tracing::info!("{source}: {} backup {id} completed", kind.as_str());
        let mut ev = Event::new(
            "backup_succeeded",
            Some(source),
            format!(
                "{} backup {id} of {source} completed ({} logical, {} stored)",
                kind.as_str(),
                crate::cli::human_bytes(job.logical_bytes.unwrap_or(0)),
                crate::cli::human_bytes(job.stored_bytes.unwrap_or(0))
            ),
        );
        ev.backup_id = Some(id.clone());
        ev.job_id = Some(job.id.clone());
        self.notifier.send(ev);

        if let Some(level) = self.cfg.verification.after_backup {
            if !self.verify(source, &id, level, stop).await {
                return false;
            }
        }
        if self.cfg.retention != Default::default() && !self.prune(stop).await {
            return false;
        }
        true
    }

    /// Verify backup `id` of `source` at `level`. Returns false when stopped.
    async fn verify(
        &mut self,
        source: &str,
        id: &str,
        level: Level,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let progress = NoProgress;
        let cfg = self.cfg.clone();
        let repo = self.repo.clone();
        let out = self
            .job(
                "verify",
                Some(source),
                stop,
                |j| j.backup_id = Some(id.to_string()),
                async {
                    let rec = engine::verify_backup(&cfg, repo.clone(), id, level, None, &progress)
                        .await?;
                    if rec.ok {
                        Ok(rec)
                    } else {
                        Err(Error::Damage(format!(
                            "backup {id} failed verification at {} level: {}",
                            level.as_str(),
                            rec.problems
                                .iter()
                                .chain(rec.not_proven.iter())
                                .cloned()
                                .collect::<Vec<_>>()
                                .join("; ")
                        )))
                    }
                },
                |j, rec| {
                    j.backup_id = Some(id.to_string());
                    j.verification = Some(rec.level.as_str().to_string());
                },
            )
            .await;
        match out {
            Outcome::Cancelled => false,
            Outcome::Done(_) => {
                tracing::info!("{source}: backup {id} verified at {} level", level.as_str());
                true
            }
            Outcome::Failed(j, e) => {
                tracing::error!("{source}: {e}");
                let mut ev = Event::new(
                    "verify_failed",
                    Some(source),
                    format!(
                        "backup {id} of {source} did not pass {} verification",
                        level.as_str()
                    ),
                );
                ev.backup_id = Some(id.to_string());
                ev.job_id = Some(j.id);
                ev.error = Some(e);
                self.notifier.send(ev);
                true
            }
        }
    }

    /// Apply retention. Returns false when stopped.
    async fn prune(&mut self, stop: &tokio::sync::watch::Receiver<bool>) -> bool {
        let repo = self.repo.clone();
        let policy = self.cfg.retention.clone();
        let out = self
            .job(
                "prune",
                None,
                stop,
                |_| {},
                async move { crate::core::prune::prune(&repo, &policy, false).await },
                |_, _| {},
            )
            .await;
        match out {
            Outcome::Cancelled => false,
            Outcome::Done(j) => {
                let ev = Event::new("prune", None, "retention applied".to_string());
                let mut ev = ev;
                ev.job_id = Some(j.id);
                self.notifier.send(ev);
                true
            }
            Outcome::Failed(_, e) => {
                tracing::error!("prune failed: {e}");
                true
            }
        }
    }

    /// Compare every source's RPO with what is proven; alert on changes.
    async fn check_rpo(&mut self) {
        tracing::debug!("checking RPOs");
        let statuses = match engine::status(&self.cfg, &self.repo).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("RPO check: cannot read the repository: {e}");
                return;
            }
        };
        let mut changed = false;
        for s in statuses {
            let breached = self.alerts.breached.contains_key(&s.source);
            // A source with no proven backup yet is in breach only once the daemon has had
            // the RPO's time to make one (no alarm in the first minutes of a new setup).
            let young = s.last_verified_id.is_none()
                && s.rpo_s
                    .is_some_and(|r| (Utc::now() - self.started).num_seconds() < r);
            let state = if young && s.rpo_state == "breach" {
                "ok-pending"
            } else {
                s.rpo_state
            };
            match (state, breached) {
                ("breach", false) => {
                    let last = s
                        .last_verified_backup_at
                        .map(|t| format!("the newest proven backup finished at {t}"))
                        .unwrap_or_else(|| "no backup is proven".into());
                    let mut ev = Event::new(
                        "rpo_breach",
                        Some(&s.source),
                        format!(
                            "RPO breached for {}: no backup proven at data level in the last {}s ({last})",
                            s.source,
                            s.rpo_s.unwrap_or(0)
                        ),
                    );
                    ev.backup_id = s.last_verified_id.clone();
                    self.notifier.send(ev);
                    self.alerts.breached.insert(s.source.clone(), Utc::now());
                    changed = true;
                }
                ("ok", true) => {
                    let mut ev = Event::new(
                        "rpo_recovered",
                        Some(&s.source),
                        format!(
                            "RPO met again for {}: backup {} is proven",
                            s.source,
                            s.last_verified_id.clone().unwrap_or_default()
                        ),
                    );
                    ev.backup_id = s.last_verified_id.clone();
                    self.notifier.send(ev);
                    self.alerts.breached.remove(&s.source);
                    changed = true;
                }
                ("not set", true) => {
                    self.alerts.breached.remove(&s.source);
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            self.alerts.save(&self.state_dir);
        }
    }

    /// Look at every schedule; queue what fell due.
    fn schedule(&mut self, now: DateTime<Utc>) {
        for s in &self.cfg.sources {
            let Some(sched) = &s.schedule else { continue };
            let from = self.since.get(&s.name).copied().unwrap_or(now);
            let due = sched.due(from, now);
            self.since.insert(s.name.clone(), now);
            let Some(kind) = due.iter().map(|d| d.0).max_by_key(|k| strength(*k)) else {
                continue;
            };
            let jitter = self.cfg.daemon.jitter;
            let start = now
                + chrono::Duration::from_std(if jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_millis(rand::random::<u64>() % jitter.as_millis().max(1) as u64)
                })
                .unwrap_or_default();
            match self.queued.get_mut(&s.name) {
                // Coalesce with a queued run: keep its start, take the stronger type.
                Some(q) => {
                    if strength(kind) > strength(q.0) {
                        q.0 = kind;
                    }
                }
                None => {
                    self.queued.insert(s.name.clone(), (kind, start));
                }
            }
        }
    }

    /// Reload the configuration after SIGHUP (keep the old one if the new one is invalid).
    async fn reload(&mut self) {
        match config::load(&self.path) {
            Err(e) => tracing::error!(
                "SIGHUP: the new configuration is invalid, keeping the old one: {e}"
            ),
            Ok(new) => {
                // Reopened every time: recipients, identity and S3 settings may have changed.
                match engine::open(&new).await {
                    Ok(r) => self.repo = r,
                    Err(e) => {
                        tracing::error!(
                            "SIGHUP: cannot open the repository with the new configuration, keeping the old one: {e}"
                        );
                        return;
                    }
                }
                let now = Utc::now();
                for s in &new.sources {
                    self.since.entry(s.name.clone()).or_insert(now);
                }
                self.queued
                    .retain(|name, _| new.sources.iter().any(|s| &s.name == name));
                // New webhooks: a new sender; the old one delivers what it has queued.
                let (n, del) = Notifier::start(new.notifications.clone());
                let old = std::mem::replace(&mut self.notifier, n);
                if let Some(old_del) = self.delivery.replace(del) {
                    tokio::spawn(old_del.finish(old, self.cfg.daemon.shutdown_timeout));
                }
                tracing::info!(
                    "SIGHUP: configuration reloaded from {} ({} source(s))",
                    self.path.display(),
                    new.sources.len()
                );
                self.cfg = new;
            }
        }
    }
}

/// Run until SIGTERM/SIGINT.
pub async fn run(config_path: &Path) -> Result<()> {
    let cfg: Config = config::load(config_path)?;
    let state_dir = state_dir(&cfg)?;
    let lock_file = lock(&state_dir)?;
    let res = run_locked(config_path, cfg, &state_dir).await;
    drop(lock_file);
    res
}

async fn run_locked(config_path: &Path, cfg: Config, state_dir: &Path) -> Result<()> {
    let signals = listen()?;
    let history = History::new(state_dir);
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
    let repo = engine::open(&cfg).await?;
    let (notifier, delivery) = Notifier::start(cfg.notifications.clone());
    let catalog = cfg
        .catalog
        .clone()
        .map(|c| catalog::Catalog::start(c, history.clone(), cfg.repository.url.clone()));

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
    let shutdown_timeout = cfg.daemon.shutdown_timeout;
    let mut d = Daemon {
        path: config_path.to_path_buf(),
        repo,
        history,
        alerts: AlertState::load(state_dir),
        state_dir: state_dir.to_path_buf(),
        notifier,
        delivery: Some(delivery),
        catalog_wake: catalog.as_ref().map(|c| c.wake.clone()),
        since,
        queued: BTreeMap::new(),
        verify_since: now,
        started: now,
        cfg,
    };
    tracing::info!(
        "daemon started: {} source(s), state {}",
        d.cfg.sources.len(),
        state_dir.display()
    );
    systemd::notify("READY=1");
    // The watchdog is fed from its own task, so that a long backup or verification (the loop
    // runs jobs inline) is not mistaken for a hang; a wedged runtime still stops the pings.
    let pinger = systemd::watchdog_interval().map(|w| {
        tokio::spawn(async move {
            loop {
                systemd::notify("WATCHDOG=1");
                tokio::time::sleep(w).await;
            }
        })
    });
    let rpo_every = d
        .cfg
        .sources
        .iter()
        .filter_map(|s| s.rpo)
        .filter_map(|r| (r / 4).to_std().ok())
        .min()
        .unwrap_or(Duration::from_secs(60))
        .clamp(Duration::from_secs(2), Duration::from_secs(60));
    let mut last_rpo = std::time::Instant::now() - Duration::from_secs(3600);

    loop {
        if *signals.stop.borrow() {
            break;
        }
        if signals
            .reload
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            d.reload().await;
        }
        // Reads every manifest and verification record: every rpo/4 (2 s to 60 s) and after
        // each job, not every tick.
        if last_rpo.elapsed() >= rpo_every {
            d.check_rpo().await;
            last_rpo = std::time::Instant::now();
        }
        let now = Utc::now();
        d.schedule(now);

        // One job at a time: the first queued run whose (jittered) start has come.
        let next = d
            .queued
            .iter()
            .find(|(_, (_, at))| *at <= now)
            .map(|(n, (k, _))| (n.clone(), *k));
        if let Some((source, kind)) = next {
            d.queued.remove(&source);
            if !d.backup(&source, kind, &signals.stop).await {
                break;
            }
            d.check_rpo().await;
            last_rpo = std::time::Instant::now();
            continue;
        }

        // The verification schedule: the latest backup of each source at restore level.
        if let Some(vs) = d.cfg.verification.schedule.clone() {
            if vs.due(d.verify_since, now).is_some() {
                d.verify_since = now;
                let (ms, _) = match d.repo.manifests_lenient().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("scheduled verification: cannot list backups: {e}");
                        (Vec::new(), Vec::new())
                    }
                };
                let mut stopped_now = false;
                for s in d.cfg.sources.clone() {
                    let Some(latest) = ms.iter().rev().find(|m| m.source.name == s.name) else {
                        continue;
                    };
                    let id = latest.id.clone();
                    if !d.verify(&s.name, &id, Level::Restore, &signals.stop).await {
                        stopped_now = true;
                        break;
                    }
                }
                if stopped_now {
                    break;
                }
                d.check_rpo().await;
                continue;
            }
        }

        let mut stop = signals.stop.clone();
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    systemd::notify("STOPPING=1");
    if let Some(p) = pinger {
        p.abort();
    }
    tracing::info!("daemon stopping");
    let t = std::time::Instant::now();
    if let Some(del) = d.delivery.take() {
        let n = std::mem::replace(&mut d.notifier, Notifier::none());
        del.finish(n, shutdown_timeout).await;
    }
    drop(d);
    if let Some(c) = catalog {
        c.finish(shutdown_timeout.saturating_sub(t.elapsed())).await;
    }
    tracing::info!("daemon stopped");
    Ok(())
}
