//! The [`Control`] trait: the engine's API as faces use it. Implemented in-process by
//! [`Engine`] and remotely by [`super::remote::Remote`] (a client of the daemon's control API);
//! the console is generic over it, so it shows the same truth attached or local.
//!
//! Everything that may cross a socket is async; what a remote control keeps from its last
//! answer (repository, sources, policy) is sync.

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{BackupRow, Command, Engine, Event, JobHandle, JobInfo, RestoreTarget, SourceStatus};
use crate::engine::history::JobRecord;
use crate::error::{Error, Result};

/// How a face is connected to the engine it shows (the console's header).
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// The engine runs in this process.
    Local,
    /// Attached to the daemon on `host` (process `pid`), its event stream open.
    Attached { host: String, pid: u32 },
    /// The daemon's event stream broke at `since` (`why`); reconnecting (every 5 s at most).
    /// What was running there is unknown until it answers again.
    Unreachable {
        since: chrono::DateTime<chrono::Utc>,
        why: String,
    },
}

/// A daemon unreachable for longer than this is shown as lost (still retried).
pub const LOST_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

#[async_trait]
pub trait Control: Send + Sync {
    /// Start a job.
    async fn submit(&self, command: Command) -> Result<JobHandle>;
    /// The event stream from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
    /// Cancel a queued or running job; false when there is no such live job.
    async fn cancel(&self, job: &str) -> Result<bool>;
    /// Rows of `list`, and the unreadable manifests with why.
    async fn list(&self, source: Option<&str>) -> Result<(Vec<BackupRow>, Vec<(String, Error)>)>;
    /// Per source status.
    async fn status(&self) -> Result<Vec<SourceStatus>>;
    /// Every verification record, per backup id, oldest first.
    async fn verifications(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<crate::core::verify::VerifyRecord>>>;
    /// What database `db` on `source`'s server holds now (before a restore into it).
    async fn inspect_target(&self, source: &str, db: &str) -> Result<super::TargetFacts>;
    /// The preflight of `source` (`keepsake source check`), as the engine's side sees it.
    async fn source_check(&self, source: &str) -> Result<super::preflight::SourceCheck>;
    /// The largest tables of backup `id` (at most `n`), largest first.
    async fn largest_tables(&self, id: &str, n: usize) -> Result<Vec<super::TableSize>>;
    /// The newest `n` lines of the audit log of the last day, oldest first; `None` when this
    /// caller may not read it (the daemon gives it to admins only).
    async fn audit_tail(&self, n: usize) -> Result<Option<Vec<super::audit::Line>>>;
    /// Drill reports, oldest first.
    async fn drills(&self) -> Result<Vec<crate::core::drill::DrillReport>>;
    /// Live jobs (queued, running).
    async fn live_jobs(&self) -> Result<Vec<JobInfo>>;
    /// Job history, oldest first.
    async fn jobs(&self) -> Result<Vec<JobRecord>>;
    /// The repository's location (no secrets).
    fn repository(&self) -> String;
    /// How this control runs, for the console's header.
    fn mode(&self) -> String;
    /// The connection to the engine, now and as it changes (in-process: always `Local`).
    fn link(&self) -> tokio::sync::watch::Receiver<Link> {
        tokio::sync::watch::channel(Link::Local).1
    }
    /// Configured source names.
    fn sources(&self) -> Vec<String>;
    /// The retention policy in words (empty: none).
    fn policy_words(&self) -> Vec<String>;
    /// `user@host:port` of a source's server (where the console's restores go).
    fn source_server(&self, source: &str) -> Option<String>;
    /// A restore target: database `db` on `source`'s server, with the source's credentials.
    fn restore_target(&self, source: &str, db: &str) -> Result<RestoreTarget>;
    /// The face is leaving: jobs it owns end (in-process: cancelled, cleanups run).
    async fn shutdown(&self, timeout: std::time::Duration);
}

#[async_trait]
impl Control for Engine {
    async fn submit(&self, command: Command) -> Result<JobHandle> {
        Engine::submit(self, command)
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        Engine::subscribe(self)
    }
    async fn cancel(&self, job: &str) -> Result<bool> {
        Ok(Engine::cancel(self, job))
    }
    async fn list(&self, source: Option<&str>) -> Result<(Vec<BackupRow>, Vec<(String, Error)>)> {
        Engine::list(self, source).await
    }
    async fn status(&self) -> Result<Vec<SourceStatus>> {
        Engine::status(self).await
    }
    async fn verifications(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<crate::core::verify::VerifyRecord>>> {
        Ok(self.snapshot().await?.records.clone())
    }
    async fn inspect_target(&self, source: &str, db: &str) -> Result<super::TargetFacts> {
        let t = Control::restore_target(self, source, db)?;
        super::ops::restore::inspect(&t.conn).await
    }
    async fn source_check(&self, source: &str) -> Result<super::preflight::SourceCheck> {
        Engine::source_check(self, source).await
    }
    async fn largest_tables(&self, id: &str, n: usize) -> Result<Vec<super::TableSize>> {
        let snap = self.snapshot().await?;
        let m = snap
            .manifests
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| Error::NotFound(format!("no backup {id}")))?;
        Ok(super::query::largest_tables(m, n))
    }
    async fn audit_tail(&self, n: usize) -> Result<Option<Vec<super::audit::Line>>> {
        let Ok(dir) = super::state_dir(&self.config()) else {
            return Ok(None);
        };
        let since = chrono::Utc::now() - chrono::Duration::days(1);
        let mut lines = super::audit::AuditLog::new(&dir).read(Some(since))?;
        let skip = lines.len().saturating_sub(n);
        Ok(Some(lines.split_off(skip)))
    }
    async fn drills(&self) -> Result<Vec<crate::core::drill::DrillReport>> {
        Ok(self
            .snapshot()
            .await?
            .drills
            .iter()
            .map(|d| (**d).clone())
            .collect())
    }
    async fn live_jobs(&self) -> Result<Vec<JobInfo>> {
        Ok(Engine::live_jobs(self))
    }
    async fn jobs(&self) -> Result<Vec<JobRecord>> {
        Ok(self.history())
    }
    fn repository(&self) -> String {
        self.config().repository.url.clone()
    }
    fn mode(&self) -> String {
        "local: schedules are not running".into()
    }
    fn sources(&self) -> Vec<String> {
        self.config()
            .sources
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }
    fn policy_words(&self) -> Vec<String> {
        self.config().retention.words()
    }
    fn source_server(&self, source: &str) -> Option<String> {
        let cfg = self.config();
        let c = &cfg.source(source).ok()?.conn;
        Some(format!("{}@{}:{}", c.user, c.host, c.port))
    }
    fn restore_target(&self, source: &str, db: &str) -> Result<RestoreTarget> {
        let cfg = self.config();
        let mut ci = cfg.source(source)?.conn.clone();
        ci.dbname = db.to_string();
        Ok(RestoreTarget::on_source(source, ci))
    }
    async fn shutdown(&self, timeout: std::time::Duration) {
        Engine::shutdown(self, timeout).await
    }
}
