//! Prove backups at a level (docs/verify.md) and judge them by the one rule of [`Verdict`]
//! (docs/verify.md, "Damage versus "not proven""): damage (exit 3) only when content was read
//! and failed, or restored data differs from what was recorded; a check that could not run
//! proves nothing (exit 1).
//!
//! `latest` means [`query::latest_per_source`]; `all` at `data` level reads each pack once for
//! the whole repository. Every verification record is stored in the repository; the job
//! history gets one record for the job.

use std::sync::Arc;

use crate::config::Config;
use crate::core::repo::Repository;
use crate::core::verify::{self as core_verify, Level, VerifyOptions, VerifyRecord};
use crate::engine::command::VerifyTarget;
use crate::engine::ctx::{Done, Failure, JobCtx};
use crate::engine::event::{JobResult, Verdict};
use crate::engine::query;
use crate::error::{Error, Result};

/// Verification options for a backup of `source`: the scratch server is `[verification]
/// scratch_url`, else the source's own server.
pub fn options(config: &Config, source: &str) -> VerifyOptions {
    VerifyOptions {
        scratch: config
            .verification
            .scratch
            .clone()
            .or_else(|| config.source(source).ok().map(|s| s.conn.clone())),
        scratch_db: None,
        bin_dir: config.postgres.bin_dir.clone(),
        cleanup: Default::default(),
    }
}

/// The backups a target names, and the manifests that cannot be read (damage).
async fn resolve(
    repo: &Repository,
    target: &VerifyTarget,
) -> Result<(Vec<String>, Vec<(String, String)>)> {
    if let VerifyTarget::Id(id) = target {
        let id = id.clone();
        return Ok((vec![repo.resolve_id(&id).await?], Vec::new()));
    }
    let (ms, bad) = repo.manifests_lenient().await?;
    let bad = bad.into_iter().map(|(id, e)| (id, e.to_string())).collect();
    let ids = match target {
        VerifyTarget::All => ms.iter().map(|m| m.id.clone()).collect(),
        _ => query::latest_per_source(&ms)
            .into_iter()
            .map(|m| m.id.clone())
            .collect(),
    };
    Ok((ids, bad))
}

pub(super) async fn run(ctx: &JobCtx, target: &VerifyTarget, level: Level) -> Result<Done> {
    let repo = ctx.engine.repo().await?;
    let (ids, unreadable) = resolve(&repo, target).await?;
    if ids.is_empty() && unreadable.is_empty() {
        return Err(Error::Usage(
            "no backups to verify: run `keepsake backup` first".into(),
        ));
    }
    if ids.len() == 1 {
        ctx.note(|r| r.backup_id = Some(ids[0].clone()));
    }
    let all_data = matches!(target, VerifyTarget::All) && level == Level::Data;
    let records = if all_data {
        let mut opts = options(&ctx.config, "");
        opts.cleanup = ctx.cleanup.clone();
        core_verify::verify_all_data(repo.clone(), &opts, ctx.progress()).await?
    } else {
        let mut out = Vec::new();
        for id in &ids {
            out.push(one(ctx, &repo, id, level).await?);
        }
        out
    };
    let verdict = Verdict::worst(
        records
            .iter()
            .map(Verdict::of)
            .chain((!unreadable.is_empty()).then_some(Verdict::Damaged)),
    );
    if verdict == Verdict::Proven {
        ctx.note(|r| r.verification = Some(level.as_str().to_string()));
    }
    let failure = (verdict != Verdict::Proven).then(|| Failure {
        exit_code: verdict.exit_code(),
        message: judgement(&records, &unreadable, level, verdict),
        job_failed: true,
        cancelled: false,
    });
    Ok(Done {
        result: Some(JobResult::Verify {
            records,
            unreadable,
        }),
        failure,
    })
}

async fn one(ctx: &JobCtx, repo: &Arc<Repository>, id: &str, level: Level) -> Result<VerifyRecord> {
    let m = repo.manifest(id).await?;
    ctx.note(|r| {
        if r.backup_id.as_deref() == Some(m.id.as_str()) {
            r.source.get_or_insert_with(|| m.source.name.clone());
        }
    });
    let mut opts = options(&ctx.config, &m.source.name);
    opts.cleanup = ctx.cleanup.clone();
    core_verify::verify(repo.clone(), &m.id, level, &opts, ctx.progress()).await
}

/// The one sentence every face shows for a verification that did not prove everything.
fn judgement(
    records: &[VerifyRecord],
    unreadable: &[(String, String)],
    level: Level,
    verdict: Verdict,
) -> String {
    let ids = |v: Verdict| {
        records
            .iter()
            .filter(|r| Verdict::of(r) == v)
            .map(|r| r.backup_id.as_str())
            .collect::<Vec<_>>()
    };
    match verdict {
        Verdict::Damaged => {
            let bad = ids(Verdict::Damaged);
            let mut s = format!(
                "verification found damage: {} of {} backup(s) failed",
                bad.len(),
                records.len()
            );
            if !bad.is_empty() {
                s.push_str(&format!(" ({})", bad.join(", ")));
            }
            if !unreadable.is_empty() {
                s.push_str(&format!("; {} manifest(s) unreadable", unreadable.len()));
            }
            s
        }
        _ => {
            let unproven = ids(Verdict::NotProven);
            let why = records
                .iter()
                .find_map(|r| r.not_proven.clone())
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            format!(
                "no damage found, but {} backup(s) could not be proven at {} level: {}{why}",
                unproven.len(),
                level.as_str(),
                unproven.join(", ")
            )
        }
    }
}
