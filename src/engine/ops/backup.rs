//! Back up one configured source, and verify the new backup when asked.
//!
//! Rules: the backup's lease is its own (registered as a cleanup hook, removed when the job
//! ends however it ends); a verification asked for runs as a job of its own (its own history
//! record) and its verdict decides this job's exit code — the backup itself stays `completed`
//! in the history, since it was committed.

use crate::config::Config;
use crate::core::backup::{self, BackupOptions, Source};
use crate::core::format::BackupType;
use crate::core::verify::Level;
use crate::engine::command::{Command, VerifyTarget};
use crate::engine::ctx::{Done, Failure, JobCtx};
use crate::engine::event::{Event, JobResult};
use crate::engine::query::BackupRow;
use crate::error::{Error, Result};

/// Pipeline options from the configuration.
pub fn options(config: &Config, kind: Option<BackupType>) -> BackupOptions {
    BackupOptions {
        kind,
        compression_level: config.backup.compression_level,
        pack_size: (config.backup.pack_size_mib as usize) << 20,
        workers: config.backup.workers,
        bin_dir: config.postgres.bin_dir.clone(),
        lock_wait_timeout: config.backup.lock_wait,
    }
}

pub(super) async fn run(
    ctx: &JobCtx,
    source: &str,
    kind: Option<BackupType>,
    verify: Option<Level>,
) -> Result<Done> {
    let src = ctx.config.source(source)?;
    let repo = ctx.engine.repo().await?;
    let m = backup::backup(
        &repo,
        &Source {
            name: &src.name,
            conn: &src.conn,
            platform: src.provider,
        },
        &options(&ctx.config, kind),
        ctx.progress(),
        &ctx.cleanup,
    )
    .await?;
    ctx.note(|r| {
        r.backup_id = Some(m.id.clone());
        r.backup_type = Some(m.kind.as_str().to_string());
        r.logical_bytes = Some(m.logical_bytes);
        r.stored_bytes = Some(m.stored_bytes);
    });
    let mut row = BackupRow::from(&m);
    ctx.emit(Event::BackupAdded {
        job: ctx.id.clone(),
        backup: Box::new(row.clone()),
    });
    let Some(level) = verify else {
        return Ok(Done::ok(JobResult::Backup {
            backup: Box::new(row),
            verification: None,
        }));
    };
    let outcome = ctx
        .submit_child(Command::Verify {
            target: VerifyTarget::Id(m.id.clone()),
            level,
        })?
        .wait()
        .await;
    if outcome.status == crate::engine::history::JobStatus::Cancelled {
        return Err(Error::Cancelled(format!(
            "the verification of backup {} was cancelled; the backup itself is committed",
            m.id
        )));
    }
    let record = match &outcome.result {
        Some(JobResult::Verify { records, .. }) => records.first().cloned(),
        _ => None,
    };
    if let Some(r) = &record {
        row = BackupRow::with_records(&m, Some(&vec![r.clone()]));
    }
    let failure = (outcome.exit_code != 0).then(|| Failure {
        exit_code: outcome.exit_code,
        message: format!(
            "verification after backup of {}: {}",
            src.name,
            outcome
                .error
                .clone()
                .unwrap_or_else(|| "it did not complete".into())
        ),
        job_failed: false,
        cancelled: false,
    });
    Ok(Done {
        result: Some(JobResult::Backup {
            backup: Box::new(row),
            verification: record.map(Box::new),
        }),
        failure,
    })
}
