//! What a job is to those who hold it: the [`JobHandle`] a face waits on, and the
//! [`JobCtx`] an operation runs with ([`Done`] or [`Failure`] is how it ends). The runner
//! (`engine::job`) makes both; operations (`engine::ops`) import this module, never the
//! runner, so the runner can call the operations without a circle.

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::audit::Actor;
use super::command::Command;
use super::event::{Event, JobOutcome, JobProgress, JobResult};
use super::history::{JobRecord, JobStatus};
use super::Engine;
use crate::config::Config;
use crate::core::cleanup::Cleanup;
use crate::core::progress::{Progress, ProgressSink};
use crate::error::Result;

/// A submitted job: its id, live progress, and how to cancel it or wait for its end.
#[derive(Clone)]
pub struct JobHandle {
    pub id: String,
    pub progress: watch::Receiver<Option<JobProgress>>,
    cancel: CancellationToken,
    done: watch::Receiver<Option<JobOutcome>>,
}

impl JobHandle {
    /// A handle fed from elsewhere (the remote control: the daemon's event stream feeds
    /// `progress` and `done`; cancelling `cancel` asks the daemon to cancel).
    pub(crate) fn from_parts(
        id: String,
        progress: watch::Receiver<Option<JobProgress>>,
        cancel: CancellationToken,
        done: watch::Receiver<Option<JobOutcome>>,
    ) -> Self {
        JobHandle {
            id,
            progress,
            cancel,
            done,
        }
    }

    /// Ask the job to stop; it ends `cancelled` once its cleanup ran.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Wait for the job's end.
    pub async fn wait(mut self) -> JobOutcome {
        loop {
            if let Some(o) = self.done.borrow_and_update().clone() {
                return o;
            }
            if self.done.changed().await.is_err() {
                // The runner task is gone without an outcome (the runtime is shutting down).
                return JobOutcome {
                    job: self.id.clone(),
                    kind: "unknown",
                    source: None,
                    status: JobStatus::Interrupted,
                    exit_code: 1,
                    error: Some("the job runner stopped before the job ended".into()),
                    error_kind: Some("failed"),
                    error_field: None,
                    error_refs: None,
                    result: None,
                };
            }
        }
    }
}

/// What an operation sees of its job.
pub struct JobCtx {
    pub id: String,
    pub engine: Engine,
    pub config: Arc<Config>,
    pub cleanup: Cleanup,
    pub cancel: CancellationToken,
    pub(crate) sink: JobSink,
    pub(super) record: Mutex<JobRecord>,
    /// Who started the job (its children are started by the same).
    pub(super) actor: Actor,
}

impl JobCtx {
    /// Fill in what the job's history record should say (backup id, sizes, …).
    pub fn note(&self, f: impl FnOnce(&mut JobRecord)) {
        if let Ok(mut r) = self.record.lock() {
            f(&mut r);
        }
    }

    pub fn emit(&self, e: Event) {
        self.engine.emit(e);
    }

    /// Progress sink for core operations.
    pub fn progress(&self) -> &dyn ProgressSink {
        &self.sink
    }

    /// Start a job on behalf of this one (a backup's verification): cancelled with it, and
    /// started by whoever started this one.
    pub fn submit_child(&self, command: Command) -> Result<JobHandle> {
        self.engine.submit_child(
            command,
            (self.id.clone(), self.cancel.clone()),
            self.actor.clone(),
        )
    }
}

/// Turns core progress readings into [`JobProgress`] values and events.
pub(crate) struct JobSink {
    pub(super) job: String,
    pub(super) tx: watch::Sender<Option<JobProgress>>,
    pub(super) events: broadcast::Sender<Event>,
}

impl ProgressSink for JobSink {
    fn report(&self, p: &Progress) {
        let jp = JobProgress {
            job: self.job.clone(),
            progress: p.clone(),
        };
        self.tx.send_replace(Some(jp.clone()));
        let _ = self.events.send(Event::Progress(jp));
    }
}

/// What an operation ends with when it ran to its end.
pub struct Done {
    pub result: Option<JobResult>,
    /// The job ran but its result is not good: exit code and why. `job_failed` says whether
    /// the job itself counts as failed in the history (a verification that found damage) or
    /// completed (a backup whose follow-up verification did not prove it).
    pub failure: Option<Failure>,
}

pub struct Failure {
    pub exit_code: i32,
    pub message: String,
    pub job_failed: bool,
    /// The operation ended on a cancellation it answered itself (a drill): recorded
    /// `cancelled`, with the result it produced.
    pub cancelled: bool,
}

impl Done {
    pub fn ok(result: JobResult) -> Self {
        Done {
            result: Some(result),
            failure: None,
        }
    }
}
