//! What faces hear: the engine's event stream (docs/architecture.md, "Events
//! (`engine/event.rs`)"), the same values the control API streams as Server-Sent Events, and
//! the outcome of a job.
//!
//! Invariant: events describe what happened, never how to show it; every face renders them
//! its own way. No event carries a secret (errors never do; restore targets show as
//! `user@host:port/db`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::progress::Progress;
use crate::core::prune::PruneReport;
use crate::core::verify::VerifyRecord;
use crate::engine::history::JobStatus;
use crate::engine::query::BackupRow;

/// A progress reading of one running job. Sent at most every 100 ms per job (and on every
/// change of phase or table).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobProgress {
    pub job: String,
    #[serde(flatten)]
    pub progress: Progress,
}

impl JobProgress {
    pub fn percent(&self) -> Option<f64> {
        self.progress.percent()
    }
    pub fn eta(&self) -> Option<std::time::Duration> {
        self.progress.eta()
    }
}

/// How a verification judged a backup — the one rule every face uses:
/// - `proven`: every check of the level asked (and below) ran and passed;
/// - `not_proven`: no damage was found, but a check could not run or complete for a reason
///   outside the backup (scratch server refused, tool missing, storage unreadable) — exit 1;
/// - `damaged`: content was read and failed authentication, or the restored data differs from
///   what was recorded at backup time — exit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Proven,
    NotProven,
    Damaged,
}

impl Verdict {
    pub fn of(r: &VerifyRecord) -> Verdict {
        if !r.problems.is_empty() {
            Verdict::Damaged
        } else if r.ok {
            Verdict::Proven
        } else {
            Verdict::NotProven
        }
    }

    /// The worst of several verdicts.
    pub fn worst(v: impl IntoIterator<Item = Verdict>) -> Verdict {
        v.into_iter().fold(Verdict::Proven, |a, b| match (a, b) {
            (Verdict::Damaged, _) | (_, Verdict::Damaged) => Verdict::Damaged,
            (Verdict::NotProven, _) | (_, Verdict::NotProven) => Verdict::NotProven,
            _ => Verdict::Proven,
        })
    }

    /// Exit code of a job that ends with this verdict (docs/architecture.md, "Errors and exit
    /// codes").
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Proven => 0,
            Verdict::NotProven => 1,
            Verdict::Damaged => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Proven => "proven",
            Verdict::NotProven => "not proven",
            Verdict::Damaged => "damaged",
        }
    }
}

/// What a finished job produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobResult {
    Backup {
        backup: Box<BackupRow>,
        /// The verification that followed (`verify` in the command), when it ran.
        verification: Option<Box<VerifyRecord>>,
    },
    Verify {
        records: Vec<VerifyRecord>,
        /// Backups whose manifest cannot be read (damage), with why.
        unreadable: Vec<(String, String)>,
    },
    Restore {
        backup_id: String,
        /// `user@host:port/dbname`.
        target: String,
        bytes: u64,
        duration_ms: u64,
        created: bool,
        /// A partial restore: the tables restored, the entries skipped (with what they need)
        /// and the objects the tables use that were not restored.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tables: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        needs: Vec<String>,
        /// Tables compared with the facts recorded at backup time after a partial restore.
        #[serde(default, skip_serializing_if = "is_zero")]
        checked: usize,
        /// Remarks that changed nothing (a schema to exclude the backup does not have).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notes: Vec<String>,
    },
    Prune(Box<PruneReport>),
    Delete {
        id: String,
        source: String,
    },
    Drill(Box<crate::core::drill::DrillReport>),
}

/// How a job ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobOutcome {
    pub job: String,
    #[serde(deserialize_with = "crate::model::words::de")]
    pub kind: crate::model::words::Word,
    pub source: Option<String>,
    /// `completed`, `failed` or `cancelled`.
    pub status: JobStatus,
    /// 0 success, 1 failed or not proven, 2 refused as asked, 3 damage (docs/architecture.md,
    /// "Errors and exit codes").
    pub exit_code: i32,
    /// What went wrong, for people (sanitized: no secrets).
    pub error: Option<String>,
    /// The kind of error (`not_found`, `conflict`, `invalid`, `damage`, `cancelled`, …), so a
    /// face can answer without parsing the message.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::model::words::de_opt"
    )]
    pub error_kind: Option<crate::model::words::Word>,
    /// The request field the error is about (`confirm`, `target`, …), when it is about one:
    /// each face names it its own way (a flag, a query parameter, a dialog's input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_field: Option<String>,
    /// `error` as the engine wrote it, with its references to request fields
    /// (`crate::error::field_ref`) left for the face to word; `error` has them in plain
    /// words. Only within this process: never sent or recorded.
    #[serde(skip)]
    pub error_refs: Option<String>,
    pub result: Option<JobResult>,
}

impl JobOutcome {
    /// The error as a face words it: references to request fields rendered by `name` (a
    /// flag, an API field, a dialog's words).
    pub fn error_in(&self, name: impl Fn(&str, Option<&str>) -> String) -> Option<String> {
        match &self.error_refs {
            Some(m) => Some(crate::error::render_fields(m, name)),
            None => self.error.clone(),
        }
    }
}

/// Alerts the daemon turns into webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    RpoBreach,
    RpoRecovered,
    /// A verification did not prove a backup (`verdict` says damaged or not proven).
    VerifyFailed,
    BackupFailed,
    /// A capturing source's slot holds back more than half of `max_slot_wal` (the daemon is
    /// behind, or was stopped): it will be dropped at the limit.
    CaptureLagging,
    /// A capturing source's slot was dropped (past `max_slot_wal`) or lost by the server: the
    /// changes since are not captured until a new chain starts (an RPO breach of capture).
    CaptureBroken,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::RpoBreach => "rpo_breach",
            AlertKind::RpoRecovered => "rpo_recovered",
            AlertKind::VerifyFailed => "verify_failed",
            AlertKind::BackupFailed => "backup_failed",
            AlertKind::CaptureLagging => "capture_lagging",
            AlertKind::CaptureBroken => "capture_broken",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub source: Option<String>,
    pub backup_id: Option<String>,
    pub job: Option<String>,
    pub message: String,
    pub error: Option<String>,
    pub verdict: Option<Verdict>,
    pub at: DateTime<Utc>,
}

/// One event of the engine's stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    JobQueued {
        job: String,
        #[serde(deserialize_with = "crate::model::words::de")]
        kind: crate::model::words::Word,
        source: Option<String>,
        /// A preview that changes nothing (a prune's dry run); absent when false.
        #[serde(default, skip_serializing_if = "is_false")]
        dry_run: bool,
    },
    JobStarted {
        job: String,
        #[serde(deserialize_with = "crate::model::words::de")]
        kind: crate::model::words::Word,
        source: Option<String>,
        /// The job that started this one (a backup's verification).
        parent: Option<String>,
        /// See `JobQueued`.
        #[serde(default, skip_serializing_if = "is_false")]
        dry_run: bool,
    },
    Progress(JobProgress),
    /// A line meant for people.
    Log {
        job: Option<String>,
        message: String,
    },
    JobFinished(JobOutcome),
    JobFailed(JobOutcome),
    BackupAdded {
        job: String,
        backup: Box<BackupRow>,
    },
    BackupDeleted {
        job: String,
        id: String,
        source: String,
    },
    ConfigChanged,
    Alert(Alert),
}

impl Event {
    /// The job an event is about, if any.
    pub fn job(&self) -> Option<&str> {
        match self {
            Event::JobQueued { job, .. }
            | Event::JobStarted { job, .. }
            | Event::BackupAdded { job, .. }
            | Event::BackupDeleted { job, .. } => Some(job),
            Event::Progress(p) => Some(&p.job),
            Event::Log { job, .. } => job.as_deref(),
            Event::JobFinished(o) | Event::JobFailed(o) => Some(&o.job),
            Event::Alert(a) => a.job.as_deref(),
            Event::ConfigChanged => None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !b
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
