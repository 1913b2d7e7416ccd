//! One module per operation. Each states its rules once — which backup is meant, what counts
//! as damage versus "not proven", what must be cleaned up — for every face.

pub mod backup;
pub mod delete;
pub mod drill;
pub mod prune;
pub mod restore;
pub mod verify;

use super::command::Command;
use super::ctx::{Done, JobCtx};
use super::history::JobRecord;
use crate::error::Result;

pub use super::ctx::Failure;

/// Run `cmd` as job `ctx`.
pub(super) async fn run(ctx: &JobCtx, cmd: &Command) -> Result<Done> {
    match cmd {
        Command::Backup {
            source,
            kind,
            verify,
        } => backup::run(ctx, source, *kind, *verify).await,
        Command::Verify { target, level } => verify::run(ctx, target, *level).await,
        Command::Restore(req) => restore::run(ctx, req).await,
        Command::Prune { dry_run } => prune::run(ctx, *dry_run).await,
        Command::Delete { id, force, confirm } => delete::run(ctx, id, *force, confirm).await,
        Command::Drill(req) => drill::run(ctx, req).await,
    }
}

/// What the history record says before the job runs.
pub(super) fn prefill(cmd: &Command, r: &mut JobRecord) {
    match cmd {
        Command::Backup { kind, .. } => r.backup_type = kind.map(|k| k.as_str().to_string()),
        Command::Verify {
            target: super::command::VerifyTarget::Id(id),
            ..
        } => r.backup_id = Some(id.clone()),
        Command::Restore(req) => r.backup_id = Some(req.id.clone()),
        Command::Delete { id, .. } => r.backup_id = Some(id.clone()),
        Command::Drill(d) => r.backup_id = d.backup.clone(),
        _ => {}
    }
}
