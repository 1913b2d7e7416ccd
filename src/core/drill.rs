//! Drill reports (docs/drills.md, "The report"): the evidence a disaster-recovery drill
//! leaves — who ran it where, which backup, every step and check with its outcome and time,
//! RTO and RPO against their targets — kept in the repository under `drills/`, sealed like a
//! manifest, so any host with the key lists them and nobody without it can forge or read one.
//!
//! Invariant: a report says `passed` only when every step ran and every check passed; a step
//! that could not run makes it `not run` (exit 1), a failed check or damage `failed` (exit 3),
//! a cancelled drill `interrupted` (exit 1).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::format::BackupType;
use crate::core::repo::Repository;
use crate::error::{Error, Result};

/// Where reports live in the repository.
pub const PREFIX: &str = "drills/";

/// How a step or check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    /// Could not run (for a reason outside the backup).
    NotRun,
    Skipped,
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::NotRun => "not run",
            Outcome::Skipped => "skipped",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// The symbol faces show beside the word.
    pub fn symbol(self) -> &'static str {
        match self {
            Outcome::Passed => "✔",
            Outcome::Failed => "✗",
            Outcome::NotRun => "⚠",
            Outcome::Skipped => "–",
            Outcome::Interrupted => "■",
        }
    }
}

/// The result of a whole drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillResult {
    Passed,
    /// A check failed, damage was found, or an objective was missed (exit 3).
    Failed,
    /// A step could not run (exit 1).
    NotRun,
    /// Cancelled (exit 1).
    Interrupted,
}

impl DrillResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillResult::Passed => "passed",
            DrillResult::Failed => "failed",
            DrillResult::NotRun => "not run",
            DrillResult::Interrupted => "interrupted",
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            DrillResult::Passed => 0,
            DrillResult::Failed => 3,
            DrillResult::NotRun | DrillResult::Interrupted => 1,
        }
    }
}

/// One step: preflight, restore, checks, measurements, cleanup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// What it found or why it failed, for people.
    pub detail: String,
}

/// One check of the restored database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    /// `table facts`, `pg_amcheck`, `query` or `objective`.
    pub kind: String,
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub detail: String,
    /// For `query` checks: the SQL, the expectation and the value found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The evidence of one drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub id: String,
    pub result: DrillResult,
    pub exit_code: i32,
    /// One sentence: what happened.
    pub summary: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Who ran it (user name; `daemon (user)` for a scheduled drill).
    pub actor: String,
    pub host: String,
    pub keepsake_version: String,
    pub source: String,
    pub backup_id: Option<String>,
    pub backup_type: Option<BackupType>,
    /// When the backup's snapshot was taken (the dump's start).
    pub backup_taken_at: Option<DateTime<Utc>>,
    /// The level the backup was proven at before the drill (`none` … `restore`).
    pub backup_proven: Option<String>,
    pub logical_bytes: Option<u64>,
    /// `configured identity` or `break-glass identity <file name>`.
    pub identity: String,
    pub key_fingerprint: Option<String>,
    /// `user@host:port/db` of the scratch database (dropped at the end).
    pub target: Option<String>,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// Drill start to every check passed.
    pub rto_ms: Option<u64>,
    /// The restore alone.
    pub restore_ms: Option<u64>,
    /// Drill start minus the backup's snapshot time.
    pub rpo_s: Option<i64>,
    pub rto_target_s: Option<i64>,
    pub rpo_target_s: Option<i64>,
}

impl DrillReport {
    /// Whether the measured RTO met its target (`None`: no target or not measured).
    pub fn rto_met(&self) -> Option<bool> {
        Some(self.rto_ms? as i64 <= self.rto_target_s? * 1000)
    }

    pub fn rpo_met(&self) -> Option<bool> {
        Some(self.rpo_s? <= self.rpo_target_s?)
    }

    /// The object key of this report.
    pub fn key(&self) -> String {
        format!("{PREFIX}{}", self.id)
    }

    /// The report in Markdown, for people and auditors.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let ms = |v: Option<u64>| v.map(dur).unwrap_or_else(|| "—".into());
        s.push_str(&format!(
            "# Disaster-recovery drill {} — {}\n\n",
            self.id,
            self.result.as_str().to_uppercase()
        ));
        s.push_str(&format!("{}\n\n", self.summary));
        s.push_str("| | |\n| --- | --- |\n");
        let mut row = |k: &str, v: String| s.push_str(&format!("| {k} | {v} |\n"));
        row("source", self.source.clone());
        row(
            "backup",
            match (&self.backup_id, self.backup_type, self.backup_taken_at) {
                (Some(id), t, at) => format!(
                    "{id}{}{}{}",
                    t.map(|t| format!(" ({})", t.as_str())).unwrap_or_default(),
                    at.map(|a| format!(", taken {}", a.format("%Y-%m-%d %H:%M:%S UTC")))
                        .unwrap_or_default(),
                    self.backup_proven
                        .as_ref()
                        .map(|p| format!(", proven at {p} level before the drill"))
                        .unwrap_or_default()
                ),
                _ => "none chosen".into(),
            },
        );
        row(
            "started",
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
        row(
            "finished",
            self.finished_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
        row("run by", format!("{} on {}", self.actor, self.host));
        row("keepsake", self.keepsake_version.clone());
        row(
            "key",
            format!(
                "{}{}",
                self.identity,
                self.key_fingerprint
                    .as_ref()
                    .map(|f| format!(" (repository key {f})"))
                    .unwrap_or_default()
            ),
        );
        row(
            "scratch database",
            self.target.clone().unwrap_or_else(|| "—".into()),
        );
        row(
            "RTO (start to checks passed)",
            format!(
                "{}{}",
                ms(self.rto_ms),
                match (self.rto_target_s, self.rto_met()) {
                    (Some(t), Some(true)) =>
                        format!(" — within the target of {}", dur(t as u64 * 1000)),
                    (Some(t), Some(false)) =>
                        format!(" — MISSED the target of {}", dur(t as u64 * 1000)),
                    _ => " — no target (set the source's rto)".into(),
                }
            ),
        );
        row("restore alone", ms(self.restore_ms));
        row(
            "RPO (start minus snapshot)",
            match self.rpo_s {
                None => "—".into(),
                Some(r) => format!(
                    "{}{}",
                    dur(r.max(0) as u64 * 1000),
                    match (self.rpo_target_s, self.rpo_met()) {
                        (Some(t), Some(true)) =>
                            format!(" — within the target of {}", dur(t as u64 * 1000)),
                        (Some(t), Some(false)) =>
                            format!(" — MISSED the target of {}", dur(t as u64 * 1000)),
                        _ => " — no target (set the source's rpo)".into(),
                    }
                ),
            },
        );
        s.push_str("\n## Steps\n\n| step | result | time | detail |\n| --- | --- | --- | --- |\n");
        for st in &self.steps {
            s.push_str(&format!(
                "| {} | {} {} | {} | {} |\n",
                st.name,
                st.outcome.symbol(),
                st.outcome.as_str(),
                dur(st.duration_ms),
                cell(&st.detail)
            ));
        }
        s.push_str("\n## Checks\n\n");
        if self.checks.is_empty() {
            s.push_str("No check ran.\n");
        } else {
            s.push_str(
                "| check | kind | result | time | detail |\n| --- | --- | --- | --- | --- |\n",
            );
            for c in &self.checks {
                let mut detail = c.detail.clone();
                if let (Some(sql), Some(e)) = (&c.sql, &c.expect) {
                    detail = format!(
                        "`{}` expected {e}, found {}{}",
                        sql,
                        c.value.as_deref().unwrap_or("NULL"),
                        if detail.is_empty() {
                            String::new()
                        } else {
                            format!(" — {detail}")
                        }
                    );
                }
                s.push_str(&format!(
                    "| {} | {} | {} {} | {} | {} |\n",
                    cell(&c.name),
                    c.kind,
                    c.outcome.symbol(),
                    c.outcome.as_str(),
                    dur(c.duration_ms),
                    cell(&detail)
                ));
            }
        }
        s
    }
}

/// A measured time for people, in the one style of [`crate::units`].
pub fn dur(ms: u64) -> String {
    crate::units::duration_ms(ms)
}

/// Text safe inside one Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A new report id: time-sortable like backup ids.
pub fn new_id(at: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        at.format("%Y%m%dT%H%M%SZ"),
        hex::encode(rand::random::<[u8; 3]>())
    )
}

/// Store a report, sealed.
pub async fn store(repo: &Repository, report: &DrillReport) -> Result<()> {
    let plain = serde_json::to_vec(report)
        .map_err(|e| Error::Other(format!("cannot encode the drill report: {e}")))?;
    repo.put_sealed(&report.key(), &plain).await
}

/// Every stored report, oldest first, and the objects that could not be read (with why).
pub async fn list(repo: &Repository) -> Result<(Vec<DrillReport>, Vec<(String, String)>)> {
    let mut keys: Vec<String> = repo
        .store()
        .list(PREFIX)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| !k.ends_with(".tmp") && !k.contains("/."))
        .collect();
    keys.sort();
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for k in keys {
        match repo.get_sealed(&k).await {
            Ok(plain) => match serde_json::from_slice::<DrillReport>(&plain) {
                Ok(r) => out.push(r),
                Err(e) => bad.push((k, format!("not a drill report: {e}"))),
            },
            Err(e @ Error::Storage(_)) => return Err(e),
            Err(e) => bad.push((k, e.to_string())),
        }
    }
    out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    Ok((out, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DrillReport {
        let at = DateTime::parse_from_rfc3339("2026-12-02T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        DrillReport {
            id: new_id(at),
            result: DrillResult::Failed,
            exit_code: 3,
            summary: "check \"guests | count\" failed".into(),
            started_at: at,
            finished_at: at + chrono::Duration::seconds(95),
            actor: "oncall".into(),
            host: "backup-01".into(),
            keepsake_version: "0.1.0".into(),
            source: "wedsync".into(),
            backup_id: Some("20261202T030012Z-8f3a21".into()),
            backup_type: Some(BackupType::Full),
            backup_taken_at: Some(at - chrono::Duration::minutes(59)),
            backup_proven: Some("data".into()),
            logical_bytes: Some(1 << 30),
            identity: "configured identity".into(),
            key_fingerprint: Some("ks1:00".into()),
            target: Some("postgres@scratch:5432/keepsake_drill_x".into()),
            steps: vec![Step {
                name: "restore".into(),
                outcome: Outcome::Passed,
                started_at: at,
                duration_ms: 61_000,
                detail: "1.0 GiB".into(),
            }],
            checks: vec![Check {
                name: "guests | count".into(),
                kind: "query".into(),
                outcome: Outcome::Failed,
                duration_ms: 12,
                detail: String::new(),
                sql: Some("SELECT count(*) FROM guests".into()),
                expect: Some(">= 1000".into()),
                value: Some("12".into()),
            }],
            rto_ms: Some(95_000),
            restore_ms: Some(61_000),
            rpo_s: Some(3540),
            rto_target_s: Some(60),
            rpo_target_s: Some(26 * 3600),
        }
    }

    #[test]
    fn markdown_says_what_failed_and_which_objectives_were_missed() {
        let r = report();
        assert_eq!(r.rto_met(), Some(false));
        assert_eq!(r.rpo_met(), Some(true));
        let md = r.markdown();
        assert!(md.contains("— FAILED"), "{md}");
        assert!(md.contains("MISSED the target of 1m00s"), "{md}");
        assert!(
            md.contains("`SELECT count(*) FROM guests` expected >= 1000, found 12"),
            "{md}"
        );
        // A pipe in a name cannot break the table.
        assert!(md.contains("guests \\| count"), "{md}");
        let back: DrillReport = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back.markdown(), md);
    }

    #[tokio::test]
    async fn reports_are_sealed_and_listed_oldest_first() {
        let (text, rcp) = crate::core::crypto::generate_identity();
        let line = text.lines().find(|l| l.starts_with("AGE-")).unwrap();
        let ids =
            crate::keys::Identities::from_identity(std::str::FromStr::from_str(line).unwrap());
        let rcps =
            crate::keys::Recipients(vec![crate::core::crypto::parse_recipient(&rcp).unwrap()]);
        let mem: std::sync::Arc<dyn crate::storage::ObjectStore> =
            std::sync::Arc::new(crate::storage::memory::MemoryStore::new());
        let repo = Repository::init(mem, "mem", rcps, ids).await.unwrap();
        let mut a = report();
        a.id = "20261202T040000Z-aaaaaa".into();
        let mut b = report();
        b.id = "20261201T040000Z-bbbbbb".into();
        b.started_at -= chrono::Duration::days(1);
        store(&repo, &a).await.unwrap();
        store(&repo, &b).await.unwrap();
        // A planted object without the key is named, not trusted.
        repo.store()
            .put("drills/20261203T000000Z-cccccc", b"forged".to_vec())
            .await
            .unwrap();
        let (all, bad) = list(&repo).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["20261201T040000Z-bbbbbb", "20261202T040000Z-aaaaaa"]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "drills/20261203T000000Z-cccccc");
    }
}
