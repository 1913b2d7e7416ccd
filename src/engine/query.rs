//! Queries every face shows alike: the rows of `list`, one source's `status`, and the one
//! rule for "the latest backup of each source".
//!
//! Invariant: these read the repository (the source of truth for what can be restored) and the
//! verification records; they never change anything.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::core::format::{BackupType, Manifest};
use crate::core::verify::{self, VerifyRecord};
use crate::engine::history::{self as jobs, JobRecord};
use crate::engine::view::Snapshot;

/// The newest backup of each source (in repository order, which is time order), sorted by
/// source name. Every face that says "latest" means this.
pub fn latest_per_source(ms: &[Manifest]) -> Vec<&Manifest> {
    let mut last: std::collections::BTreeMap<&str, &Manifest> = Default::default();
    for m in ms {
        last.insert(&m.source.name, m);
    }
    last.into_values().collect()
}

/// One row of `keepsake list` (and the stable `list --json` fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRow {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// Always `completed` for a backup in the repository: a backup exists only once committed.
    #[serde(deserialize_with = "crate::model::words::de")]
    pub status: crate::model::words::Word,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    /// Highest verification level passed (`none` until verified; `failed` when the latest
    /// verification found damage).
    #[serde(deserialize_with = "crate::model::words::de")]
    pub verified_level: crate::model::words::Word,
    /// When that level was proven (or the failure found).
    pub verified_at: Option<DateTime<Utc>>,
    /// Restore time measured by the latest restore-level verification, milliseconds.
    pub restore_ms: Option<u64>,
    pub database: String,
    pub server_version: String,
    pub based_on: Option<String>,
    pub tables: usize,
}

impl BackupRow {
    /// A row with what the verification history proves.
    pub fn with_records(m: &Manifest, records: Option<&Vec<VerifyRecord>>) -> Self {
        let (level, at) = verify::proven(records);
        let mut r = BackupRow::from(m);
        r.verified_level = level;
        r.verified_at = at;
        r.restore_ms = records.and_then(|v| v.iter().rev().find_map(|x| x.restore_ms));
        r
    }
}

impl From<&Manifest> for BackupRow {
    fn from(m: &Manifest) -> Self {
        BackupRow {
            verified_at: None,
            restore_ms: None,
            id: m.id.clone(),
            source: m.source.name.clone(),
            kind: m.kind,
            status: "completed",
            started_at: m.started_at,
            finished_at: m.finished_at,
            logical_bytes: m.logical_bytes,
            stored_bytes: m.stored_bytes,
            verified_level: "none",
            database: m.source.database.clone(),
            server_version: m.source.server_version.clone(),
            based_on: m.based_on.clone(),
            tables: m.tables.len(),
        }
    }
}

/// `keepsake list`: the readable backups, and the ids whose manifest is damaged with why.
pub fn list(
    snap: &Snapshot,
    source: Option<&str>,
) -> (Vec<BackupRow>, Vec<(String, crate::Error)>) {
    (
        snap.manifests
            .iter()
            .filter(|m| source.is_none_or(|s| m.source.name == s))
            .map(|m| BackupRow::with_records(m, snap.records.get(&m.id)))
            .collect(),
        snap.unreadable
            .iter()
            .map(|(id, e)| (id.clone(), crate::Error::Damage(e.clone())))
            .collect(),
    )
}

/// What a restore target holds now: what a restore into it would replace (the console's
/// summary before the typed confirmation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetFacts {
    pub exists: bool,
    /// Tables and partitioned tables outside the system schemas.
    pub tables: u64,
    pub bytes: u64,
    /// Sessions connected to it right now (other than keepsake's own).
    pub sessions: u64,
}

/// One table of a backup, for "largest tables" in the console's details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSize {
    /// `schema.name`, for people.
    pub name: String,
    /// The exact schema and table names (a restore's selection).
    #[serde(default)]
    pub schema: String,
    #[serde(default)]
    pub table: String,
    /// Rows counted at backup time (the planner's estimate for a table without data facts).
    pub rows: u64,
    /// On-disk size of the table and its TOAST when backed up.
    pub bytes: i64,
}

/// The `n` largest tables of a backup, largest first.
pub fn largest_tables(m: &Manifest, n: usize) -> Vec<TableSize> {
    let rows: std::collections::HashMap<(&str, &str), u64> = m
        .facts
        .tables
        .iter()
        .map(|f| ((f.schema.as_str(), f.name.as_str()), f.rows))
        .collect();
    let mut v: Vec<TableSize> = m
        .tables
        .iter()
        .map(|t| TableSize {
            name: format!("{}.{}", t.schema, t.name),
            schema: t.schema.clone(),
            table: t.name.clone(),
            rows: rows
                .get(&(t.schema.as_str(), t.name.as_str()))
                .copied()
                .unwrap_or(t.estimated_rows.max(0) as u64),
            bytes: t.size_bytes,
        })
        .collect();
    v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.rows.cmp(&a.rows)));
    v.truncate(n);
    v
}

/// One source in `keepsake status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    pub source: String,
    pub last_backup_id: Option<String>,
    pub last_backup_type: Option<BackupType>,
    pub last_backup_at: Option<DateTime<Utc>>,
    pub last_backup_age_s: Option<i64>,
    /// Newest backup proven at `data` level or better, and that level.
    pub last_verified_id: Option<String>,
    #[serde(default, deserialize_with = "crate::model::words::de_opt")]
    pub last_verified_level: Option<crate::model::words::Word>,
    pub last_verified_backup_at: Option<DateTime<Utc>>,
    /// Backups whose latest verification found damage.
    pub damaged: Vec<String>,
    pub rpo_s: Option<i64>,
    /// `ok`, `breach` (no proven backup newer than the RPO) or `not set`.
    #[serde(deserialize_with = "crate::model::words::de")]
    pub rpo_state: crate::model::words::Word,
    /// Latest measured restore time for this source (restore-level verification).
    pub restore_ms: Option<u64>,
    pub restore_measured_bytes: Option<u64>,
    /// Next scheduled runs (the daemon's; none without it).
    pub next_runs: Vec<DateTime<Utc>>,
    /// The latest job for this source from the job history, if it failed.
    pub last_failed_job: Option<JobRecord>,
    /// Change capture, for a source with `[sources.capture]`: how far a point-in-time restore
    /// reaches now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureStatus>,
}

/// What the repository holds of a source's change capture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaptureStatus {
    pub slot: String,
    /// The last captured commit: a point-in-time restore reaches up to it (`None`: nothing
    /// captured yet).
    pub last_commit_at: Option<DateTime<Utc>>,
    /// Seconds since that commit (while the database is idle it grows too: no change, no
    /// newer commit).
    pub last_commit_age_s: Option<i64>,
    /// Segments of the chain that ends with the newest one, and when that chain began.
    pub segments: usize,
    pub chain_since: Option<DateTime<Utc>>,
    /// What the daemon's capture does now: `streaming`, `lagging`, `retrying`, `stopped`, or
    /// `not running` (no daemon has written its state within the last 30 s on this host).
    pub state: String,
    /// How far behind capture is: the age of the oldest change received but not yet stored
    /// (0: everything received is stored). `None` unless a daemon streams.
    pub lag_seconds: Option<i64>,
    /// WAL written on the server since the slot's confirmed position.
    pub lag_bytes: Option<u64>,
    /// WAL the slot holds back on the server (watched against `max_slot_wal`).
    pub wal_retained_bytes: Option<u64>,
    /// The slot's `wal_status` (reserved, extended, unreserved, lost).
    pub wal_status: Option<String>,
    /// Why capture is retrying, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CaptureStatus {
    /// Fill in what the daemon's capture reports (`live`, if any) as of `now`.
    pub fn with_live(
        mut self,
        live: Option<crate::engine::capture_state::Live>,
        now: DateTime<Utc>,
    ) -> Self {
        let stale = chrono::Duration::from_std(crate::engine::capture_state::LIVE_EVERY * 3)
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
        match live {
            Some(l) if now - l.updated_at <= stale => {
                self.lag_seconds = match l.state.as_str() {
                    "streaming" | "lagging" => Some(
                        l.pending_since
                            .map(|p| (now - p).num_seconds().max(0))
                            .unwrap_or(0),
                    ),
                    _ => None,
                };
                self.state = l.state;
                self.lag_bytes = l.lag_bytes;
                self.wal_retained_bytes = l.wal_retained_bytes;
                self.wal_status = l.wal_status;
                self.error = l.error;
            }
            _ => self.state = "not running".into(),
        }
        self
    }
}

/// `keepsake status`: per configured source (and any other source found in the repository).
pub fn status(config: &Config, snap: &Snapshot, history: &[JobRecord]) -> Vec<SourceStatus> {
    let ms: Vec<&Manifest> = snap.manifests.iter().map(|m| &**m).collect();
    let records = &snap.records;
    let now = Utc::now();
    let mut names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    for m in &ms {
        if !names.contains(&m.source.name) {
            names.push(m.source.name.clone());
        }
    }
    let mut out = Vec::new();
    for name in names {
        let mine: Vec<&Manifest> = ms
            .iter()
            .copied()
            .filter(|m| m.source.name == name)
            .collect();
        let last = mine.last();
        let proven = mine.iter().rev().find_map(|m| {
            let (level, _) = verify::proven(records.get(&m.id));
            matches!(level, "data" | "restore").then_some((*m, level))
        });
        let damaged = mine
            .iter()
            .filter(|m| verify::proven(records.get(&m.id)).0 == "failed")
            .map(|m| m.id.clone())
            .collect();
        let restore = mine
            .iter()
            .rev()
            .filter_map(|m| records.get(&m.id))
            .flat_map(|v| v.iter().rev())
            .find(|r| r.restore_ms.is_some());
        let rpo = config.source(&name).ok().and_then(|s| s.rpo);
        let rpo_state = match (rpo, proven) {
            (None, _) => "not set",
            (Some(r), Some((m, _))) if now - m.finished_at <= r => "ok",
            (Some(_), _) => "breach",
        };
        let last_failed_job = history
            .iter()
            .rev()
            .find(|j| j.source.as_deref() == Some(name.as_str()))
            .filter(|j| {
                matches!(
                    j.status,
                    jobs::JobStatus::Failed | jobs::JobStatus::Interrupted
                )
            })
            .cloned();
        out.push(SourceStatus {
            source: name.clone(),
            last_backup_id: last.map(|m| m.id.clone()),
            last_backup_type: last.map(|m| m.kind),
            last_backup_at: last.map(|m| m.finished_at),
            last_backup_age_s: last.map(|m| (now - m.finished_at).num_seconds()),
            last_verified_id: proven.map(|(m, _)| m.id.clone()),
            last_verified_level: proven.map(|(_, l)| l),
            last_verified_backup_at: proven.map(|(m, _)| m.finished_at),
            damaged,
            rpo_s: rpo.map(|r| r.num_seconds()),
            rpo_state,
            restore_ms: restore.and_then(|r| r.restore_ms),
            restore_measured_bytes: restore.map(|r| r.logical_bytes),
            next_runs: config
                .source(&name)
                .ok()
                .and_then(|s| s.schedule.as_ref())
                .map(|s| s.next_runs(now).into_iter().map(|(_, t)| t).collect())
                .unwrap_or_default(),
            last_failed_job,
            capture: None,
        });
    }
    out
}

/// [`CaptureStatus`] of `source` from the repository's segments.
pub async fn capture_status(
    repo: &crate::core::repo::Repository,
    source: &str,
    slot: &str,
) -> crate::error::Result<CaptureStatus> {
    use crate::core::capture;
    let segs = capture::list(repo, source).await?;
    let mut chain = 0usize;
    let mut first_key = None;
    let mut next_start = None;
    for s in segs.iter().rev() {
        if next_start.is_some_and(|n| n != s.1) {
            break;
        }
        chain += 1;
        first_key = Some(s.2.clone());
        next_start = Some(s.0);
    }
    let last = match segs.last() {
        Some(l) => capture::read(repo, &l.2).await?.head.reaches(),
        None => None,
    };
    let since = match &first_key {
        Some(k) => {
            let h = capture::read(repo, k).await?.head;
            h.commits.first().map(|c| c.at).or(h.through_at)
        }
        None => None,
    };
    Ok(CaptureStatus {
        slot: slot.to_string(),
        last_commit_at: last,
        last_commit_age_s: last.map(|t| (Utc::now() - t).num_seconds()),
        segments: chain,
        chain_since: since,
        state: "not running".into(),
        lag_seconds: None,
        lag_bytes: None,
        wal_retained_bytes: None,
        wal_status: None,
        error: None,
    })
}
