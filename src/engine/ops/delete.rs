//! Forget one backup (`keepsake delete ID --confirm ID [--force]`, `DELETE /v1/backups/{id}`).
//!
//! Rules (checked here, whatever face asked): the id must be confirmed exactly (the full id,
//! or the id as asked — a prefix or the short form — repeated); the
//! newest restore-verified backup of a source — the one a 3 a.m. recovery would count on — is
//! refused unless `force`. Its packs stay until a later prune finds them unreferenced.

use crate::core::prune as core_prune;
use crate::core::verify;
use crate::engine::ctx::{Done, JobCtx};
use crate::engine::event::{Event, JobResult};
use crate::error::{Error, Result};

/// Whether `confirm` confirms backup `full` asked for as `asked`: the whole id, the id as
/// asked, or the short form screens show, repeated exactly. The one delete-confirmation rule:
/// [`run`] enforces it whatever face asked; the console calls it to know when Enter may go.
pub fn confirmed(asked: &str, full: &str, confirm: &str) -> bool {
    let confirm = confirm.trim();
    !confirm.is_empty()
        && (confirm == full || confirm == asked || confirm == crate::core::backup_id::short(full))
}

pub(super) async fn run(ctx: &JobCtx, id: &str, force: bool, confirm: &str) -> Result<Done> {
    let repo = ctx.engine.repo().await?;
    let m = repo.manifest(id).await?;
    if !confirmed(id, &m.id, confirm) {
        return Err(Error::Field {
            field: "confirm",
            message: if confirm.is_empty() {
                format!(
                    "is required: repeat the backup's id ({}) to delete it",
                    m.id
                )
            } else {
                format!(
                    "{} does not name backup {}: repeat the backup's id to delete it",
                    crate::core::backup_id::printable(confirm),
                    m.id
                )
            },
        });
    }
    let records = verify::records(&repo).await?;
    let (ms, _) = repo.manifests_lenient().await?;
    let newest_restore_proven = ms
        .iter()
        .rev()
        .filter(|x| x.source.name == m.source.name)
        .find(|x| verify::proven(records.get(&x.id)).0 == "restore");
    if newest_restore_proven.is_some_and(|x| x.id == m.id) && !force {
        return Err(Error::Conflict(format!(
            "backup {} is the newest restore-verified backup of {}: deleting it leaves the source without a backup proven to restore; add --force to delete it anyway",
            m.id, m.source.name
        )));
    }
    core_prune::forget(&repo, &m.id).await?;
    tracing::info!("deleted backup {} of {}", m.id, m.source.name);
    ctx.note(|r| {
        r.backup_id = Some(m.id.clone());
        r.source = Some(m.source.name.clone());
    });
    ctx.emit(Event::BackupDeleted {
        job: ctx.id.clone(),
        id: m.id.clone(),
        source: m.source.name.clone(),
    });
    Ok(Done::ok(JobResult::Delete {
        id: m.id.clone(),
        source: m.source.name.clone(),
    }))
}
