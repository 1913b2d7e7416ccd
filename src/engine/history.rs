//! Job history: every backup, verify, restore, prune and delete, with its outcome, kept durably
//! in the state directory (`[daemon] state_dir`, default the XDG state dir) as an append-only
//! JSON-lines file. The repository stays the source of truth for what can be restored; this
//! is the log of what was attempted.
//!
//! Invariants: only the engine's job runner writes it (faces never do). A job is appended as
//! `running` before it starts and again with its final status; a `running` job whose process
//! is gone reads as `interrupted`. Every record names the repository it ran against, and a
//! configuration sees only the jobs of its own repository (one state directory may serve
//! several configurations). History is best effort: a failure to write it is logged and never
//! fails the job.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
    Interrupted,
}

impl JobStatus {
    /// The word, as the JSON and every face say it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    /// backup, verify, restore, prune
    pub kind: String,
    pub source: Option<String>,
    pub status: JobStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub backup_id: Option<String>,
    /// full, incremental or differential (backup jobs).
    #[serde(default)]
    pub backup_type: Option<String>,
    /// Outcome of the verification that followed a backup (`data`, `restore`, `failed`, …).
    #[serde(default)]
    pub verification: Option<String>,
    pub logical_bytes: Option<u64>,
    pub stored_bytes: Option<u64>,
    /// What failed (never secrets: errors carry none).
    pub error: Option<String>,
    pub pid: u32,
    /// The repository URL the job ran against (`file://…` or `s3://bucket/prefix`; no
    /// credentials). Absent in records written before keepsake recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Who asked for the job: the user name for the command line, `NAME (console)` for an
    /// in-process console, `NAME (api)` for a control API caller, `schedule` for the daemon's
    /// own runs (a backup's verification inherits its backup's). Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
}

impl JobRecord {
    /// A `running` record of job `id` against `repository`, started now by this process.
    pub fn new(id: &str, kind: &str, source: Option<&str>, repository: &str) -> Self {
        JobRecord {
            id: id.to_string(),
            kind: kind.to_string(),
            source: source.map(str::to_string),
            status: JobStatus::Running,
            started_at: Utc::now(),
            finished_at: None,
            backup_id: None,
            backup_type: None,
            verification: None,
            logical_bytes: None,
            stored_bytes: None,
            error: None,
            pid: std::process::id(),
            repository: Some(repository.to_string()),
            started_by: None,
        }
    }
}

/// The history file of a state directory.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    /// The repository this view belongs to: records are tagged with it and filtered by it.
    repository: String,
    /// The file as parsed so far (it only grows): readers parse only what was appended since.
    parsed: std::sync::Arc<std::sync::Mutex<Parsed>>,
}

/// How many jobs [`History::jobs`] returns and keeps in memory: the newest.
pub const KEPT_IN_MEMORY: usize = 2000;

/// What [`History::jobs`] parsed of the file up to `offset`.
#[derive(Debug, Default)]
struct Parsed {
    offset: u64,
    order: Vec<String>,
    latest: std::collections::HashMap<String, JobRecord>,
}

/// Default state directory: `$XDG_STATE_HOME/keepsake` (or the data dir where there is none).
pub fn default_state_dir() -> Option<PathBuf> {
    let d = directories::ProjectDirs::from("", "", "keepsake")?;
    Some(d.state_dir().unwrap_or(d.data_local_dir()).to_path_buf())
}

impl History {
    pub fn new(state_dir: &Path, repository: &str) -> Self {
        History {
            path: state_dir.join("jobs.jsonl"),
            repository: repository.to_string(),
            parsed: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, r: &JobRecord) {
        let res = (|| -> std::io::Result<()> {
            if let Some(d) = self.path.parent() {
                std::fs::create_dir_all(d)?;
            }
            let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            f.write_all(&line)?;
            f.sync_data()
        })();
        if let Err(e) = res {
            tracing::warn!(
                "could not record job history in {}: {e}",
                self.path.display()
            );
        }
    }

    /// A new job id: start time and a random suffix (`20261202T030012.345Z-8f3a21`), so ids
    /// sort by start and never collide between processes.
    pub fn new_id() -> String {
        format!(
            "{}-{}",
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            hex::encode(rand::random::<[u8; 3]>())
        )
    }

    /// A `running` record for job `id` of this repository, not yet written.
    pub fn record(&self, id: &str, kind: &str, source: Option<&str>) -> JobRecord {
        JobRecord::new(id, kind, source, &self.repository)
    }

    /// Write `r` as it is now (its start, or any later state).
    pub fn write(&self, r: &JobRecord) {
        self.append(r);
    }

    /// Record the start of a job; returns the record to finish later.
    pub fn start(&self, kind: &str, source: Option<&str>) -> JobRecord {
        self.start_with(kind, source, |_| {})
    }

    /// [`History::start`], with what is known before it runs (backup id, type) filled in.
    pub fn start_with(
        &self,
        kind: &str,
        source: Option<&str>,
        pre: impl FnOnce(&mut JobRecord),
    ) -> JobRecord {
        let mut r = self.record(&Self::new_id(), kind, source);
        pre(&mut r);
        self.append(&r);
        r
    }

    /// Record how a job ended.
    pub fn finish(&self, mut r: JobRecord, status: JobStatus, error: Option<String>) {
        r.status = status;
        r.finished_at = Some(Utc::now());
        r.error = error;
        self.append(&r);
    }

    /// The newest [`KEPT_IN_MEMORY`] jobs of this repository, oldest first, latest state each
    /// (older ones stay in the file); `running` jobs of dead
    /// processes read as `interrupted`. Records of other repositories are left out; records
    /// written before jobs named their repository are shown to every configuration.
    pub fn jobs(&self) -> Vec<JobRecord> {
        use std::io::{Read, Seek};
        let mut p = match self.parsed.lock() {
            Ok(p) => p,
            Err(e) => e.into_inner(),
        };
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < p.offset {
            // Replaced or truncated: parse it again from the start.
            *p = Parsed::default();
        }
        let mut text = String::new();
        if f.seek(std::io::SeekFrom::Start(p.offset)).is_ok() {
            let _ = f.read_to_string(&mut text);
        }
        // Whole lines only: a line being appended right now is read next time.
        let complete = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
        for line in text[..complete].lines() {
            let Ok(r) = serde_json::from_str::<JobRecord>(line) else {
                continue;
            };
            if r.repository.as_ref().is_some_and(|x| *x != self.repository) {
                continue;
            }
            if !p.latest.contains_key(&r.id) {
                p.order.push(r.id.clone());
            }
            p.latest.insert(r.id.clone(), r);
        }
        p.offset += complete as u64;
        // Only the newest are kept in memory: a daemon that ran a job every few seconds for
        // a year must not hold every record (the soak of issue 28 grew by them). The file
        // keeps them all.
        if p.order.len() > KEPT_IN_MEMORY {
            let gone = p.order.len() - KEPT_IN_MEMORY;
            for id in p.order.drain(..gone).collect::<Vec<_>>() {
                p.latest.remove(&id);
            }
        }
        p.order
            .iter()
            .filter_map(|id| p.latest.get(id))
            .map(|r| {
                let mut r = r.clone();
                if r.status == JobStatus::Running
                    && !Path::new(&format!("/proc/{}", r.pid)).exists()
                {
                    r.status = JobStatus::Interrupted;
                }
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long-running daemon keeps only the newest jobs in memory, however many it ran.
    #[test]
    fn only_the_newest_jobs_are_kept_in_memory() {
        let d = tempfile::tempdir().expect("tmp");
        let h = History::new(d.path(), "file:///r");
        for i in 0..(KEPT_IN_MEMORY + 25) {
            let r = h.record(&format!("j{i:05}"), "backup", Some("s"));
            h.finish(r, JobStatus::Completed, None);
            if i % 1000 == 0 {
                h.jobs();
            }
        }
        let jobs = h.jobs();
        assert_eq!(jobs.len(), KEPT_IN_MEMORY);
        assert_eq!(jobs[0].id, "j00025");
        assert_eq!(
            jobs.last().map(|j| j.id.as_str()),
            Some(format!("j{:05}", KEPT_IN_MEMORY + 24).as_str())
        );
        let p = h.parsed.lock().expect("lock");
        assert_eq!(p.latest.len(), KEPT_IN_MEMORY);
    }

    #[test]
    fn latest_state_wins_and_dead_running_jobs_are_interrupted() {
        let d = tempfile::tempdir().expect("tmp");
        let h = History::new(d.path(), "file:///a");
        let a = h.start("backup", Some("wedsync"));
        h.finish(a, JobStatus::Completed, None);
        let mut b = h.start("verify", Some("wedsync"));
        b.pid = u32::MAX - 1; // no such process
        h.append(&b);
        let jobs = h.jobs();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].status, JobStatus::Completed);
        assert_eq!(jobs[1].status, JobStatus::Interrupted);
    }

    /// Regression (issue 12, defect 5): one state directory, two repositories — each
    /// configuration lists only its own jobs.
    #[test]
    fn each_repository_sees_only_its_own_jobs() {
        let d = tempfile::tempdir().expect("tmp");
        let a = History::new(d.path(), "file:///repo-a");
        let b = History::new(d.path(), "s3://bucket/b");
        let j = a.start("backup", Some("wedsync"));
        a.finish(j, JobStatus::Failed, Some("boom".into()));
        let j = b.start("prune", None);
        b.finish(j, JobStatus::Completed, None);
        let ja = a.jobs();
        assert_eq!(ja.len(), 1);
        assert_eq!(ja[0].kind, "backup");
        assert_eq!(ja[0].repository.as_deref(), Some("file:///repo-a"));
        let jb = b.jobs();
        assert_eq!(jb.len(), 1);
        assert_eq!(jb[0].kind, "prune");
    }

    /// The file is parsed incrementally: what another process appends after a read (and a
    /// half-written last line, once complete) shows on the next read; a replaced file is read
    /// again from the start.
    #[test]
    fn later_appends_from_another_writer_are_seen() {
        use std::io::Write;
        let d = tempfile::tempdir().expect("tmp");
        let reader = History::new(d.path(), "file:///a");
        let writer = History::new(d.path(), "file:///a");
        let j = writer.start("backup", Some("wedsync"));
        assert_eq!(reader.jobs()[0].status, JobStatus::Running);
        writer.finish(j.clone(), JobStatus::Completed, None);
        let k = writer.start("prune", None);
        let jobs = reader.jobs();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].status, JobStatus::Completed);
        // A line cut short is not read until it is complete.
        let mut done = k.clone();
        done.status = JobStatus::Failed;
        let line = serde_json::to_string(&done).expect("json");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(reader.path())
            .expect("open");
        f.write_all(&line.as_bytes()[..10]).expect("write");
        assert_eq!(reader.jobs()[1].status, JobStatus::Running);
        f.write_all(&line.as_bytes()[10..]).expect("write");
        f.write_all(b"\n").expect("write");
        assert_eq!(reader.jobs()[1].status, JobStatus::Failed);
        // Replaced by a shorter file: read from the start.
        std::fs::write(reader.path(), "").expect("truncate");
        assert!(reader.jobs().is_empty());
    }
}
