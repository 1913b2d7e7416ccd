//! Apply `[retention]`: forget what the policy does not keep, collect packs in two phases.
//!
//! Rule: a prune that could not judge every backup (an unreadable manifest) removes no pack and
//! says so with exit 3 — an unreadable manifest is damage.

use crate::core::prune as core_prune;
use crate::engine::ctx::{Done, Failure, JobCtx};
use crate::engine::event::{Event, JobResult};
use crate::error::Result;

pub(super) async fn run(ctx: &JobCtx, dry_run: bool) -> Result<Done> {
    let repo = ctx.engine.repo().await?;
    let report = core_prune::prune(&repo, &ctx.config.retention, dry_run).await?;
    if !dry_run {
        for d in report.plan.iter().filter(|d| !d.keep) {
            ctx.emit(Event::BackupDeleted {
                job: ctx.id.clone(),
                id: d.id.clone(),
                source: d.source.clone(),
            });
        }
    }
    let failure = report.gc_skipped.as_ref().map(|why| Failure {
        exit_code: 3,
        message: format!("prune removed no pack: {why}"),
        job_failed: false,
        cancelled: false,
    });
    Ok(Done {
        result: Some(JobResult::Prune(Box::new(report))),
        failure,
    })
}
