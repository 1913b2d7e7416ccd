//! The one engine every face uses (docs/architecture.md, "The engine's contract"). Faces turn
//! a keystroke, a flag or a request into a [`Command`], [`Engine::submit`] it, and render the
//! [`Event`]s they hear; the engine decides what an operation means.
//!
//! Module map:
//! - `command` — what faces ask; `event` — what they hear (and how a job ended);
//! - `job` — the runner: single flight per source with coalescing, a cancellation token,
//!   cleanup hooks and a deadline per job, the job history and the jobs' audit lines (written
//!   only here);
//! - `ctx` — what a job is to those who hold it: the `JobHandle` a face waits on, the `JobCtx`
//!   an operation runs with (operations import this, never the runner);
//! - `ops/` — one module per operation (backup, verify, restore, prune, delete, drill): each
//!   rule stated once;
//! - `query` — list, status and "latest per source", read alike by every face; `view` — the
//!   cached snapshot of the repository they read;
//! - `history` — the durable job log (cron schedules live in `crate::schedule`); `audit` — the
//!   hash-chained audit log and the `Actor` who started a job;
//! - `control` — the [`control::Control`] trait the console is generic over; `remote` — its
//!   implementation against a running daemon's control API; `client` — the HTTP client of that
//!   API that `remote`, tests and benchmarks use;
//! - `preflight` — `keepsake source check`: what a source allows, before a backup fails.
//!
//! Invariant: this is the only place that turns configuration into stores, repositories and
//! pipeline options; faces never do I/O work themselves.

pub mod audit;
pub mod capture;
pub mod capture_state;
pub mod client;
pub mod command;
pub mod control;
pub mod ctx;
pub mod event;
pub mod history;
mod job;
pub mod ops;
pub mod preflight;
pub mod query;
pub mod remote;
pub mod view;
pub use crate::schedule;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::config::Config;
use crate::core::repo::Repository;
use crate::error::{Error, Result};
use crate::storage::local::LocalStore;
use crate::storage::s3::S3Store;
use crate::storage::ObjectStore;

pub use command::{Command, DrillRequest, RestoreRequest, RestoreTarget, VerifyTarget};
pub use event::{Event, JobOutcome, JobProgress, JobResult, Verdict};
pub use job::{JobHandle, JobInfo, JobState};
pub use query::{BackupRow, SourceStatus, TableSize, TargetFacts};

/// The object store a configuration names.
pub async fn store(config: &Config) -> Result<Arc<dyn ObjectStore>> {
    match &config.repository.s3 {
        Some(s) => Ok(Arc::new(S3Store::new(s.clone()).await?)),
        None => Ok(Arc::new(LocalStore::new(config.repository_path()?))),
    }
}

/// `keepsake init`.
pub async fn init(config: &Config) -> Result<Repository> {
    let ids = config.identities()?;
    let repo = Repository::init(
        store(config).await?,
        &config.repository.url,
        config.recipients.clone(),
        ids,
    )
    .await?;
    if let Ok(d) = state_dir(config) {
        let p = d.join("repository-keys.json");
        let mut all = read_pins(&p);
        all.insert(config.repository.url.clone(), repo.key().fingerprint());
        write_pins(&p, &all);
    }
    Ok(repo)
}

/// Open the configured repository with the configured identity, with its master key pinned:
/// by `[encryption] repository_key_fingerprint` when set, else by the key this state
/// directory saw first (trust on first use, kept in `repository-keys.json`).
pub async fn open(config: &Config) -> Result<Arc<Repository>> {
    open_with(config, config.identities()?).await
}

/// [`open`] with other identities (a drill's break-glass key): the same key pinning.
pub async fn open_with(config: &Config, ids: crate::keys::Identities) -> Result<Arc<Repository>> {
    let pins = state_dir(config)
        .ok()
        .map(|d| d.join("repository-keys.json"));
    let seen = pins
        .as_ref()
        .and_then(|p| read_pins(p).remove(&config.repository.url));
    let pin = config.repository_key_fingerprint.clone().or(seen.clone());
    let repo = Repository::open_pinned(
        store(config).await?,
        &config.repository.url,
        config.recipients.clone(),
        ids,
        pin.as_deref(),
    )
    .await
    .map_err(|e| match (e, &pins, &seen) {
        (Error::Damage(m), Some(p), Some(_)) if config.repository_key_fingerprint.is_none() => {
            Error::Damage(format!(
                "{m}. The pinned key is the one this machine first saw ({}); if the repository was recreated on purpose, remove its line there",
                p.display()
            ))
        }
        (e, _, _) => e,
    })?;
    let fp = repo.key().fingerprint();
    if let Some(p) = &pins {
        if seen.as_deref() != Some(fp.as_str()) {
            let mut all = read_pins(p);
            all.insert(config.repository.url.clone(), fp);
            write_pins(p, &all);
        }
    }
    Ok(Arc::new(repo))
}

fn read_pins(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_pins(path: &std::path::Path, pins: &std::collections::BTreeMap<String, String>) {
    let res = (|| -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(pins).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        tracing::warn!(
            "could not remember the repository key in {}: {e}",
            path.display()
        );
    }
}

/// The control API socket's file name in the state directory (unless `[api] socket`).
pub const SOCKET: &str = "keepsake.sock";

/// Where a configuration's daemon serves its control API on a Unix socket.
pub fn socket_path(config: &Config) -> Option<PathBuf> {
    config
        .api
        .socket
        .clone()
        .or_else(|| state_dir(config).ok().map(|d| d.join(SOCKET)))
}

/// The state directory a configuration uses: `[daemon] state_dir`, else the XDG state dir.
pub fn state_dir(cfg: &Config) -> Result<PathBuf> {
    cfg.daemon
        .state_dir
        .clone()
        .or_else(history::default_state_dir)
        .ok_or_else(|| Error::Usage("no state directory: set [daemon] state_dir".into()))
}

/// The engine: configuration, the repository (opened on first use), the job runner and the
/// event stream. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine(Arc<job::Inner>);

impl Engine {
    /// An engine for `config`. Opens nothing yet: commands that need no repository (`jobs`)
    /// work without a key.
    pub fn new(config: Config) -> Self {
        let history = state_dir(&config)
            .ok()
            .map(|d| history::History::new(&d, &config.repository.url));
        Engine(Arc::new(job::Inner::new(config, history)))
    }

    /// The configuration in effect.
    pub fn config(&self) -> Arc<Config> {
        self.0.config()
    }

    /// The repository, opened with the configured identity on first use.
    pub async fn repo(&self) -> Result<Arc<Repository>> {
        self.0.repo().await
    }

    /// Replace the configuration (SIGHUP, `PUT /v1/config`): the repository is reopened with
    /// it first, and on failure the old configuration stays.
    pub async fn reconfigure(&self, config: Config) -> Result<()> {
        let repo = open(&config).await?;
        self.0.reconfigure(config, repo);
        self.0.emit(Event::ConfigChanged);
        Ok(())
    }

    /// Start `command` as a job (queued behind a running job with the same flight key, or
    /// coalesced with a queued one).
    pub fn submit(&self, command: Command) -> Result<JobHandle> {
        job::submit(self, command, None, None)
    }

    /// The audit log's one writer in this process (none without a state directory): the
    /// runner's, shared with the control API.
    pub fn audit_writer(&self) -> Option<audit::AuditWriter> {
        self.0.audit.clone()
    }

    /// [`Engine::submit`] on behalf of `actor` (recorded in the job history as `started_by`
    /// and in the audit log).
    pub fn submit_as(&self, command: Command, actor: audit::Actor) -> Result<JobHandle> {
        job::submit(self, command, None, Some(actor))
    }

    /// A job started on behalf of job `parent` (cancelled with it) by `actor`.
    pub(crate) fn submit_child(
        &self,
        command: Command,
        parent: (String, tokio_util::sync::CancellationToken),
        actor: audit::Actor,
    ) -> Result<JobHandle> {
        job::submit(self, command, Some(parent), Some(actor))
    }

    /// The preflight of configured source `name` (`keepsake source check`).
    pub async fn source_check(&self, name: &str) -> Result<preflight::SourceCheck> {
        let cfg = self.config();
        let src = cfg.source(name)?;
        Ok(preflight::check(&cfg, src).await)
    }

    /// Who this engine's jobs are started by unless a face says (default: the OS user at the
    /// CLI).
    pub fn set_actor(&self, actor: audit::Actor) {
        self.0.set_actor(actor)
    }

    /// [`Engine::submit`], but the caller drives the job: `work` must be polled to its end
    /// (dropping it unfinished cancels nothing and leaves the job hanging — poll it, or
    /// cancel through the handle and keep polling). One-shot commands use it to run their job
    /// on the main thread, as before the engine existed: measured, a job on a worker thread
    /// took 20–35 MiB more peak memory for a 1 GB backup (glibc's per-thread arenas).
    pub fn submit_here(
        &self,
        command: Command,
    ) -> Result<(JobHandle, futures::future::BoxFuture<'static, ()>)> {
        job::prepare(self, command, None, None)
    }

    /// Every event from now on. A subscriber that falls more than 1,024 events behind loses
    /// the oldest ones (`RecvError::Lagged`); the engine never waits for it.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.events.subscribe()
    }

    /// Send an event to every subscriber (the daemon's alerts, for one).
    pub fn emit(&self, e: Event) {
        self.0.emit(e)
    }

    /// Queued and running jobs of this engine.
    pub fn live_jobs(&self) -> Vec<JobInfo> {
        self.0.live()
    }

    /// Cancel a queued or running job. False when no such live job exists.
    pub fn cancel(&self, job: &str) -> bool {
        self.0.cancel(job)
    }

    /// The job history of this configuration's repository, oldest first.
    pub fn history(&self) -> Vec<history::JobRecord> {
        self.0
            .history
            .as_ref()
            .map(|h| h.jobs())
            .unwrap_or_default()
    }

    /// Where the job history is kept (none without a state directory).
    pub fn history_store(&self) -> Option<&history::History> {
        self.0.history.as_ref()
    }

    /// Rows of `list`, and the backups whose manifest cannot be read (with why).
    pub async fn list(
        &self,
        source: Option<&str>,
    ) -> Result<(Vec<BackupRow>, Vec<(String, Error)>)> {
        Ok(query::list(&*self.snapshot().await?, source))
    }

    /// The repository's backups and verification records as last listed (at most
    /// [`view::TTL`] old; at once after this engine changed something).
    pub async fn snapshot(&self) -> Result<Arc<view::Snapshot>> {
        let repo = self.repo().await?;
        self.0.view.snapshot(&repo).await
    }

    /// Per source: last backup, last proven, RPO, measured RTO, next runs.
    pub async fn status(&self) -> Result<Vec<SourceStatus>> {
        let snap = self.snapshot().await?;
        let cfg = self.config();
        let mut st = query::status(&cfg, &snap, &self.history());
        // Change capture: read from its segments (a few objects per capturing source).
        let capturing: Vec<(String, String)> = cfg
            .sources
            .iter()
            .filter_map(|s| s.capture.as_ref().map(|c| (s.name.clone(), c.slot.clone())))
            .collect();
        if !capturing.is_empty() {
            let repo = self.repo().await?;
            for (name, slot) in capturing {
                if let Some(x) = st.iter_mut().find(|x| x.source == name) {
                    let live = state_dir(&cfg)
                        .ok()
                        .and_then(|d| capture_state::read_live(&d, &name));
                    x.capture = Some(
                        query::capture_status(&repo, &name, &slot)
                            .await?
                            .with_live(live, chrono::Utc::now()),
                    );
                }
            }
        }
        Ok(st)
    }

    /// Cancel every job and wait (at most `timeout`) for their cleanups to run.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        self.0.shutdown(timeout).await
    }
}
