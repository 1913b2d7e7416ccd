//! The [`Control`] trait: the engine's API as faces use it. Implemented in-process by
//! [`Engine`]; the control API issue adds the remote implementation (a client of the daemon's
//! socket), and the console is generic over it.

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{BackupRow, Command, Engine, Event, JobHandle, JobInfo, SourceStatus};
use crate::engine::history::JobRecord;
use crate::error::{Error, Result};

#[async_trait]
pub trait Control: Send + Sync {
    /// Start a job.
    fn submit(&self, command: Command) -> Result<JobHandle>;
    /// The event stream from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
    /// Cancel a queued or running job; false when there is no such live job.
    fn cancel(&self, job: &str) -> bool;
    /// Rows of `list`, and the unreadable manifests with why.
    async fn list(&self, source: Option<&str>) -> Result<(Vec<BackupRow>, Vec<(String, Error)>)>;
    /// Per source status.
    async fn status(&self) -> Result<Vec<SourceStatus>>;
    /// Live jobs (queued, running).
    fn live_jobs(&self) -> Vec<JobInfo>;
    /// Job history, oldest first.
    fn jobs(&self) -> Vec<JobRecord>;
}

#[async_trait]
impl Control for Engine {
    fn submit(&self, command: Command) -> Result<JobHandle> {
        Engine::submit(self, command)
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        Engine::subscribe(self)
    }
    fn cancel(&self, job: &str) -> bool {
        Engine::cancel(self, job)
    }
    async fn list(&self, source: Option<&str>) -> Result<(Vec<BackupRow>, Vec<(String, Error)>)> {
        Engine::list(self, source).await
    }
    async fn status(&self) -> Result<Vec<SourceStatus>> {
        Engine::status(self).await
    }
    fn live_jobs(&self) -> Vec<JobInfo> {
        Engine::live_jobs(self)
    }
    fn jobs(&self) -> Vec<JobRecord> {
        self.history()
    }
}
