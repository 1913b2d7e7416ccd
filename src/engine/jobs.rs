//! Job history: every backup, verify, restore and prune, with its outcome, kept durably in
//! the state directory (`[daemon] state_dir`, default the XDG state dir) as an append-only
//! JSON-lines file. The repository stays the source of truth for what can be restored; this
//! is the log of what was attempted.
//!
//! Invariant: a job is appended as `running` before it starts and again with its final status;
//! a `running` job whose process is gone reads as `interrupted`. History is best effort: a
//! failure to write it is logged and never fails the job.

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
}

/// The history file of a state directory.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
}

/// Default state directory: `$XDG_STATE_HOME/keepsake` (or the data dir where there is none).
pub fn default_state_dir() -> Option<PathBuf> {
    let d = directories::ProjectDirs::from("", "", "keepsake")?;
    Some(d.state_dir().unwrap_or(d.data_local_dir()).to_path_buf())
}

impl History {
    pub fn new(state_dir: &Path) -> Self {
        History {
            path: state_dir.join("jobs.jsonl"),
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
        let mut r = JobRecord {
            id: format!(
                "{}-{}",
                Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                hex::encode(rand::random::<[u8; 3]>())
            ),
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
        };
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

    /// Every job, oldest first, latest state each; `running` jobs of dead processes read as
    /// `interrupted`.
    pub fn jobs(&self) -> Vec<JobRecord> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let mut order: Vec<String> = Vec::new();
        let mut latest: std::collections::HashMap<String, JobRecord> = Default::default();
        for line in text.lines() {
            let Ok(r) = serde_json::from_str::<JobRecord>(line) else {
                continue;
            };
            if !latest.contains_key(&r.id) {
                order.push(r.id.clone());
            }
            latest.insert(r.id.clone(), r);
        }
        order
            .into_iter()
            .filter_map(|id| latest.remove(&id))
            .map(|mut r| {
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

    #[test]
    fn latest_state_wins_and_dead_running_jobs_are_interrupted() {
        let d = tempfile::tempdir().expect("tmp");
        let h = History::new(d.path());
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
}
