//! The catalog: an optional PostgreSQL database (`[catalog] url`) mirroring the job history in
//! table `backup_jobs`, for dashboards and SQL reporting.
//!
//! Invariants:
//! - The job history file in the state directory is the source of truth; the catalog is a
//!   mirror, brought up to date from it (so jobs of one-shot commands, and jobs that ended
//!   while the catalog was down, arrive too). A job's row is upserted by its id: mirroring
//!   twice changes nothing.
//! - Migrations (`assets/migrations/NNNN_name.sql`, embedded at build time) are applied by
//!   keepsake itself, each once, in order, inside a transaction holding an advisory lock (two
//!   daemons starting together do not race), recorded in `keepsake_migrations`.
//! - An unreachable or failing catalog is logged (once per outage) and retried with backoff;
//!   it never fails or delays a backup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::engine::history::{History, JobRecord};
use crate::error::{Error, Result};
use crate::pg::conninfo::ConnInfo;

/// The migrations, in order: (version, name, SQL).
pub const MIGRATIONS: [(i32, &str, &str); 3] = [
    (
        1,
        "backup_jobs",
        include_str!("../../assets/migrations/0001_backup_jobs.sql"),
    ),
    (
        2,
        "job_history",
        include_str!("../../assets/migrations/0002_job_history.sql"),
    ),
    (
        3,
        "more_job_kinds",
        include_str!("../../assets/migrations/0003_more_job_kinds.sql"),
    ),
];

/// Apply pending migrations; returns how many were applied now.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<usize> {
    let db = |e: tokio_postgres::Error| {
        Error::Postgres(format!("catalog: {}", crate::pg::client::describe(&e)))
    };
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS keepsake_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db)?;
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await.map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock(7283561, 1)", &[])
            .await
            .map_err(db)?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM keepsake_migrations WHERE version = $1",
                &[&version],
            )
            .await
            .map_err(db)?
            .is_some();
        if !done {
            tx.batch_execute(sql).await.map_err(|e| {
                Error::Postgres(format!(
                    "catalog migration {version:04}_{name}: {}",
                    crate::pg::client::describe(&e)
                ))
            })?;
            tx.execute(
                "INSERT INTO keepsake_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await
            .map_err(db)?;
            applied += 1;
        }
        tx.commit().await.map_err(db)?;
    }
    Ok(applied)
}

/// A stable UUID for a job id (the catalog's primary key is a uuid; job ids are not).
pub fn job_uuid(job_id: &str) -> String {
    let h = blake3::hash(job_id.as_bytes());
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// Upsert one job.
pub async fn mirror(client: &tokio_postgres::Client, j: &JobRecord, location: &str) -> Result<()> {
    let status = format!("{:?}", j.status).to_lowercase();
    let started = j.started_at.to_rfc3339();
    let finished = j.finished_at.map(|t| t.to_rfc3339());
    let stored = j.stored_bytes.map(|n| n as i64);
    let logical = j.logical_bytes.map(|n| n as i64);
    let loc = j
        .backup_id
        .as_ref()
        .map(|id| format!("{location}/snapshots/{id}"));
    let host = crate::daemon::notify::hostname();
    client
        .execute(
            "INSERT INTO backup_jobs (id, backup_type, status, file_size, backup_location,
                 verification_status, error_message, started_at, completed_at, job_kind,
                 keepsake_job_id, source, backup_id, logical_bytes, stored_bytes, host)
             VALUES ($1::text::uuid, $2, $3, $4, $5, $6, $7, $8::text::timestamptz,
                 $9::text::timestamptz, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (id) DO UPDATE SET
                 backup_type = EXCLUDED.backup_type, status = EXCLUDED.status,
                 file_size = EXCLUDED.file_size, backup_location = EXCLUDED.backup_location,
                 verification_status = EXCLUDED.verification_status,
                 error_message = EXCLUDED.error_message, completed_at = EXCLUDED.completed_at,
                 backup_id = EXCLUDED.backup_id, logical_bytes = EXCLUDED.logical_bytes,
                 stored_bytes = EXCLUDED.stored_bytes",
            &[
                &job_uuid(&j.id),
                &j.backup_type,
                &status,
                &stored,
                &loc,
                &j.verification,
                &j.error,
                &started,
                &finished,
                &j.kind,
                &j.id,
                &j.source,
                &j.backup_id,
                &logical,
                &stored,
                &host,
            ],
        )
        .await
        .map_err(|e| Error::Postgres(format!("catalog: {}", crate::pg::client::describe(&e))))?;
    Ok(())
}

/// The mirroring task: wakes on `wake` (after each job) or every 30 s.
pub struct Catalog {
    pub wake: Arc<Notify>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Catalog {
    /// Start mirroring `history` into the database at `conn`. `location` is the repository
    /// URL (no secrets: file:// path or s3://bucket/prefix).
    pub fn start(conn: ConnInfo, history: History, location: String) -> Catalog {
        let wake = Arc::new(Notify::new());
        let w = wake.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let task = tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            let mut mirrored: HashMap<String, (String, Option<chrono::DateTime<chrono::Utc>>)> =
                HashMap::new();
            let mut backoff = Duration::from_secs(2);
            let mut failing = false;
            loop {
                let res = async {
                    if client.is_none() {
                        let mut c = crate::pg::client::connect(&conn).await?;
                        let n = migrate(&mut c).await?;
                        if n > 0 {
                            tracing::info!("catalog: applied {n} migration(s)");
                        }
                        client = Some(c);
                    }
                    let Some(c) = client.as_ref() else {
                        return Ok(());
                    };
                    for j in history.jobs() {
                        let key = (format!("{:?}", j.status), j.finished_at);
                        if mirrored.get(&j.id) == Some(&key) {
                            continue;
                        }
                        mirror(c, &j, &location).await?;
                        mirrored.insert(j.id.clone(), key);
                    }
                    Ok::<(), Error>(())
                }
                .await;
                let wait = match res {
                    Ok(()) => {
                        if failing {
                            tracing::info!("catalog: reachable again, job history mirrored");
                        }
                        failing = false;
                        backoff = Duration::from_secs(2);
                        Duration::from_secs(30)
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!("catalog: {e}; retrying (backups are not affected)");
                        }
                        failing = true;
                        client = None;
                        let b = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        b
                    }
                };
                if st.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                tokio::select! {
                    _ = w.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
        Catalog { wake, stop, task }
    }

    /// One last mirroring pass (bounded by `limit`), then stop.
    pub async fn finish(mut self, limit: Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            tracing::warn!("catalog: the last mirroring pass did not finish before shutdown");
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_uuids_are_stable_and_well_formed() {
        let a = job_uuid("20261126T030000.000Z-abcdef");
        assert_eq!(a, job_uuid("20261126T030000.000Z-abcdef"));
        assert_ne!(a, job_uuid("20261126T030000.000Z-abcdee"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (v, _, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
            assert!(sql.contains("backup_jobs"));
        }
    }
}
