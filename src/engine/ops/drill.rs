//! A disaster-recovery drill (docs/drills.md): rehearse the recovery an on-call engineer
//! would run, step by step, and leave a report an auditor accepts.
//!
//! Rules (every face: CLI, console, daemon schedule):
//! - Default backup: the newest of the source proven at `data` level or better; `at` picks
//!   the last one finished at or before that time; `backup` names one.
//! - The scratch database is one this drill creates (a name that exists is refused before
//!   anything is restored) and it is dropped on every path: passed, failed, could not run,
//!   cancelled. The drop is also a cleanup hook of the job, so a drill that cannot finish its
//!   own cleanup still loses nothing and leaves nothing.
//! - Verdict: `passed` only when every step ran and every check (table facts, pg_amcheck, the
//!   user's smoke queries, the RTO and RPO objectives when set) passed; damage or a failed
//!   check is `failed` (exit 3); a step that could not run is `not run` (exit 1); a cancel is
//!   `interrupted` (exit 1) — and the report says which step and why.
//! - The report is sealed into the repository (`drills/…`), written even when the drill did
//!   not pass, so a failed rehearsal is evidence too.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::core::drill::{self, Check, DrillReport, DrillResult, Outcome, Step};
use crate::core::format::Manifest;
use crate::core::repo::Repository;
use crate::core::restore::{self as core_restore, RestoreOptions};
use crate::core::verify;
use crate::engine::command::DrillRequest;
use crate::engine::ctx::{Done, Failure, JobCtx};
use crate::engine::event::{Event, JobResult};
use crate::error::{Error, Result};
use crate::pg::client::{self, quote_ident};
use crate::pg::conninfo::ConnInfo;

/// Each smoke query may run this long.
const QUERY_TIMEOUT_S: u64 = 60;

struct Drill<'a> {
    ctx: &'a JobCtx,
    rep: DrillReport,
    t0: Instant,
    /// The step running now (recorded `interrupted` when the drill is cancelled in it).
    current: Option<(String, Instant, DateTime<Utc>)>,
    repo: Option<Arc<Repository>>,
    /// The scratch database, once this drill created it.
    scratch: Option<ConnInfo>,
    /// The restore's cleanup entry for it (disarmed once the drill dropped it itself).
    scratch_hook: Option<crate::core::cleanup::HookId>,
    /// The name the restore loads under until it is whole: this drill's own (a random
    /// suffix), so the drill drops it when the restore did not finish.
    loading: Option<ConnInfo>,
    /// Roles the restore created on the scratch server as stand-ins (dropped after it).
    stand_ins: core_restore::StandIns,
}

pub(super) async fn run(ctx: &JobCtx, req: &DrillRequest) -> Result<Done> {
    let started = Utc::now();
    let mut d = Drill {
        ctx,
        t0: Instant::now(),
        current: None,
        repo: None,
        scratch: None,
        scratch_hook: None,
        loading: None,
        stand_ins: Default::default(),
        rep: DrillReport {
            id: drill::new_id(started),
            result: DrillResult::NotRun,
            exit_code: 1,
            summary: String::new(),
            started_at: started,
            finished_at: started,
            actor: req.actor.clone(),
            host: crate::core::prune::this_host(),
            keepsake_version: env!("CARGO_PKG_VERSION").into(),
            source: req.source.clone().unwrap_or_default(),
            backup_id: None,
            backup_type: None,
            backup_taken_at: None,
            backup_proven: None,
            logical_bytes: None,
            identity: match &req.identity {
                Some(p) => format!(
                    "break-glass identity {}",
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                None => "configured identity".into(),
            },
            key_fingerprint: None,
            target: None,
            steps: vec![],
            checks: vec![],
            rto_ms: None,
            restore_ms: None,
            rpo_s: None,
            rto_target_s: None,
            rpo_target_s: None,
        },
    };
    let ran = {
        let steps = d.steps(req);
        tokio::pin!(steps);
        tokio::select! {
            r = &mut steps => Some(r),
            _ = ctx.cancel.cancelled() => None,
        }
    };
    if let Some((name, t, at)) = d.current.take() {
        d.rep.steps.push(Step {
            name,
            outcome: Outcome::Interrupted,
            started_at: at,
            duration_ms: t.elapsed().as_millis() as u64,
            detail: "cancelled while this step ran".into(),
        });
    }
    d.cleanup().await;
    // A request that cannot be carried out as asked (a backup id that does not exist, an
    // existing target database, several sources and none chosen) is a usage error, exit 2,
    // like every other command's; nothing ran, so it leaves no report. A drill that could not
    // run for a reason of the repository or the servers (no proven backup, a server down) is
    // evidence and keeps its report.
    if let Some(Err(e)) = &ran {
        let usage = matches!(e, Error::Usage(_))
            || (matches!(e, Error::NotFound(_)) && req.backup.is_some());
        if usage && d.rep.steps.iter().all(|s| s.name.starts_with("preflight")) {
            if let Some(Err(e)) = ran {
                return Err(e);
            }
        }
    }
    let failed_checks: Vec<&Check> = d
        .rep
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
        .collect();
    let (result, summary) = match &ran {
        None => (
            DrillResult::Interrupted,
            format!(
                "The drill was interrupted{}; the scratch database was dropped.",
                d.rep
                    .steps
                    .iter()
                    .rev()
                    .find(|s| s.outcome == Outcome::Interrupted)
                    .map(|s| format!(" during {}", s.name))
                    .unwrap_or_default()
            ),
        ),
        Some(Err(e)) => (
            if matches!(e, Error::Damage(_)) {
                DrillResult::Failed
            } else {
                DrillResult::NotRun
            },
            format!(
                "The drill stopped at {}: {e}",
                d.rep
                    .steps
                    .iter()
                    .rev()
                    .find(|s| matches!(s.outcome, Outcome::Failed | Outcome::NotRun))
                    .map(|s| s.name.as_str())
                    .unwrap_or("its start")
            ),
        ),
        Some(Ok(())) if !failed_checks.is_empty() => (
            DrillResult::Failed,
            format!(
                "{} of {} checks failed: {}.",
                failed_checks.len(),
                d.rep.checks.len(),
                failed_checks
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.detail))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Some(Ok(())) => (
            DrillResult::Passed,
            format!(
                "Backup {} of {} restored and passed all {} checks; recovery took {}.",
                d.rep.backup_id.as_deref().unwrap_or("?"),
                d.rep.source,
                d.rep.checks.len(),
                d.rep.rto_ms.map(drill::dur).unwrap_or_default()
            ),
        ),
    };
    d.rep.result = result;
    d.rep.exit_code = result.exit_code();
    d.rep.summary = summary;
    d.rep.finished_at = Utc::now();
    if let Some(repo) = &d.repo {
        if let Err(e) = drill::store(repo, &d.rep).await {
            d.rep.summary.push_str(&format!(
                " The report could not be stored in the repository: {e}."
            ));
        } else {
            ctx.emit(Event::Log {
                job: Some(ctx.id.clone()),
                message: format!("drill report {} stored in the repository", d.rep.id),
            });
        }
    }
    ctx.note(|r| {
        r.backup_id = d.rep.backup_id.clone();
        r.source = Some(d.rep.source.clone()).filter(|s| !s.is_empty());
        r.verification = Some(format!("drill {}", result.as_str()));
        r.logical_bytes = d.rep.logical_bytes;
    });
    let failure = (result != DrillResult::Passed).then(|| Failure {
        exit_code: result.exit_code(),
        message: d.rep.summary.clone(),
        job_failed: true,
        cancelled: result == DrillResult::Interrupted,
    });
    Ok(Done {
        result: Some(JobResult::Drill(Box::new(d.rep))),
        failure,
    })
}

impl Drill<'_> {
    fn say(&self, message: String) {
        self.ctx.emit(Event::Log {
            job: Some(self.ctx.id.clone()),
            message,
        });
    }

    fn begin(&mut self, name: &str) {
        self.say(format!("drill: {name} …"));
        self.current = Some((name.to_string(), Instant::now(), Utc::now()));
    }

    /// Record the step begun last: passed with `detail`, or failed / could not run with the
    /// error (which is passed on).
    fn end<T>(&mut self, r: Result<(T, String)>) -> Result<T> {
        let Some((name, t, at)) = self.current.take() else {
            return r.map(|(v, _)| v);
        };
        let (outcome, detail) = match &r {
            Ok((_, d)) => (Outcome::Passed, d.clone()),
            Err(e @ Error::Damage(_)) => (Outcome::Failed, e.to_string()),
            Err(e) => (Outcome::NotRun, e.to_string()),
        };
        self.say(format!(
            "drill: {name} {} {}{}",
            outcome.symbol(),
            outcome.as_str(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        ));
        self.rep.steps.push(Step {
            name,
            outcome,
            started_at: at,
            duration_ms: t.elapsed().as_millis() as u64,
            detail,
        });
        r.map(|(v, _)| v)
    }

    async fn steps(&mut self, req: &DrillRequest) -> Result<()> {
        let config = self.ctx.config.clone();

        // Preflight 1: the key opens the repository.
        self.begin("preflight: key");
        let r = async {
            let repo = match &req.identity {
                Some(p) => {
                    let ids = crate::keys::Identities::load(p)?;
                    crate::engine::open_with(&config, ids).await?
                }
                None => self.ctx.engine.repo().await?,
            };
            let fp = repo.key().fingerprint();
            let d = format!("{} opens the repository (key {fp})", self.rep.identity);
            Ok(((repo, fp), d))
        }
        .await;
        let (repo, fp) = self.end(r)?;
        self.rep.key_fingerprint = Some(fp);
        self.repo = Some(repo.clone());

        // Preflight 2: which backup.
        self.begin("preflight: backup");
        let r = choose(&repo, req, &config)
            .await
            .map(|(m, proven, pitr, why)| {
                let mut d = format!(
                    "{} of {} ({}, taken {}, proven: {proven})",
                    m.id,
                    m.source.name,
                    m.kind.as_str(),
                    m.started_at.format("%Y-%m-%d %H:%M UTC")
                );
                if let Some(p) = &pitr {
                    d.push_str(&format!(
                        ", then the changes captured after it up to {}",
                        p.until.format("%Y-%m-%d %H:%M:%S UTC")
                    ));
                }
                if let Some(why) = why {
                    d.push_str(&format!("; {why}"));
                }
                ((m, proven, pitr), d)
            });
        let (m, proven, pitr) = self.end(r)?;
        self.rep.source = m.source.name.clone();
        self.rep.backup_id = Some(m.id.clone());
        self.rep.backup_type = Some(m.kind);
        self.rep.backup_taken_at = Some(m.started_at);
        self.rep.backup_proven = Some(proven.to_string());
        self.rep.logical_bytes = Some(m.logical_bytes);
        let src = config.source(&m.source.name).ok();
        self.rep.rpo_target_s = src.and_then(|s| s.rpo).map(|d| d.num_seconds());
        self.rep.rto_target_s = src.and_then(|s| s.rto).map(|d| d.num_seconds());

        // Preflight 3: a pg_restore that reads this archive.
        self.begin("preflight: tools");
        let archive_major = crate::pg::tools::parse_version(&m.pg_dump_version)
            .map(|v| v.1)
            .unwrap_or(0);
        let r = crate::pg::tools::find(
            "pg_restore",
            archive_major,
            config.postgres.bin_dir.as_deref(),
        )
        .map(|t| {
            let d = format!(
                "pg_restore {} ({}) reads archives of pg_dump {}",
                t.version,
                t.path.display(),
                m.pg_dump_version
            );
            ((), d)
        });
        self.end(r)?;

        // Preflight 4: the target server answers, the database is new, there is room.
        self.begin("preflight: target");
        let target = match &req.target {
            Some(t) => Ok(t.conn.clone()),
            None => config
                .verification
                .scratch
                .clone()
                .or_else(|| src.map(|s| s.conn.clone()))
                .map(|s| s.with_dbname(&drill_db_name(&m.id)))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "no server for the scratch database: set [verification] scratch_url, or keep source \"{}\" in the configuration",
                        m.source.name
                    ))
                }),
        };
        if let Ok(t) = &target {
            self.rep.target = Some(t.display());
        }
        let r = match target {
            Ok(t) => preflight_target(&t, m.logical_bytes)
                .await
                .map(|((), d)| (t, d)),
            Err(e) => Err(e),
        };
        let target = self.end(r)?;

        // Restore.
        self.begin("restore");
        let mut ro = RestoreOptions::new(target.clone());
        ro.check_roles = false;
        ro.stand_in_roles = true;
        ro.create = true;
        ro.bin_dir = config.postgres.bin_dir.clone();
        ro.cleanup = self.ctx.cleanup.clone();
        // The name it loads under is this drill's own: dropped after an interruption.
        let loading = core_restore::loading_target(&target);
        ro.loading = Some(loading.clone());
        self.loading = Some(loading);
        let t = Instant::now();
        let r = core_restore::restore(repo.clone(), &m.id, &ro, self.ctx.progress())
            .await
            .map(|o| {
                let d = format!(
                    "{} restored into {} in {}",
                    crate::units::human_bytes(o.bytes),
                    target.dbname,
                    drill::dur(t.elapsed().as_millis() as u64)
                );
                (o, d)
            });
        let outcome = self.end(r)?;
        // Only now is the scratch database this drill's to drop: a restore that failed
        // dropped what it created, and one refused (the name taken since the preflight)
        // created nothing — someone else's database is never dropped (issue 28, item 7).
        self.scratch = Some(target.clone());
        self.scratch_hook = outcome.created_hook;
        self.stand_ins = outcome.stand_ins.clone();
        if !outcome.not_covered.is_empty() {
            if let Some(last) = self.rep.steps.last_mut() {
                last.detail.push_str(&format!(
                    "; not covered on this server: {}",
                    outcome.not_covered.join("; ")
                ));
            }
        }
        if !self.stand_ins.roles.is_empty() {
            // The report says what the proof rested on.
            if let Some(last) = self.rep.steps.last_mut() {
                last.detail.push_str(&format!(
                    "; the scratch server lacked roles the backup names: created as NOLOGIN stand-ins and dropped after: {}",
                    self.stand_ins.roles.join(", ")
                ));
            }
            self.say(format!(
                "drill: the scratch server lacked roles the backup names; created as NOLOGIN stand-ins for the drill: {}",
                self.stand_ins.roles.join(", ")
            ));
        }
        self.rep.restore_ms = Some(outcome.duration.as_millis() as u64);

        // A point in time (change capture): the dump is first held to its facts, then the
        // captured transactions after it are applied up to the time.
        if let Some(p) = &pitr {
            self.begin("apply captured changes");
            let r = self.apply_captured(&repo, &m, p, &target).await;
            self.end(r)?;
        }

        // Checks.
        self.begin("checks");
        let r = self.checks(&m, &target, &config, pitr.is_none()).await;
        let failed = self
            .rep
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .count();
        let r = r.map(|()| {
            let d = if failed == 0 {
                format!("all {} passed", self.rep.checks.len())
            } else {
                format!("{failed} of {} failed", self.rep.checks.len())
            };
            ((), d)
        });
        self.end(r)?;
        if let Some(last) = self.rep.steps.last_mut() {
            if failed > 0 {
                last.outcome = Outcome::Failed;
            }
        }

        // Measurements: RTO is drill start to checks done; RPO is drill start minus the
        // snapshot time.
        self.begin("measurements");
        self.rep.rto_ms = Some(self.t0.elapsed().as_millis() as u64);
        // A point in time: the state restored is the one at that time.
        let point = pitr.as_ref().map_or(m.started_at, |p| p.until);
        self.rep.rpo_s = Some((self.rep.started_at - point).num_seconds());
        let mut words = vec![format!(
            "RTO {} (restore alone {}), RPO {}",
            drill::dur(self.rep.rto_ms.unwrap_or(0)),
            drill::dur(self.rep.restore_ms.unwrap_or(0)),
            drill::dur(self.rep.rpo_s.unwrap_or(0).max(0) as u64 * 1000)
        )];
        for (name, met, measured, target) in [
            (
                "RTO objective",
                self.rep.rto_met(),
                self.rep.rto_ms.unwrap_or(0),
                self.rep.rto_target_s,
            ),
            (
                "RPO objective",
                self.rep.rpo_met(),
                self.rep.rpo_s.unwrap_or(0).max(0) as u64 * 1000,
                self.rep.rpo_target_s,
            ),
        ] {
            let (Some(met), Some(target)) = (met, target) else {
                continue;
            };
            let detail = format!(
                "{} measured, target {}",
                drill::dur(measured),
                drill::dur(target as u64 * 1000)
            );
            words.push(format!("{name} {}", if met { "met" } else { "MISSED" }));
            self.rep.checks.push(Check {
                name: name.into(),
                kind: "objective".into(),
                outcome: if met {
                    Outcome::Passed
                } else {
                    Outcome::Failed
                },
                duration_ms: 0,
                detail,
                sql: None,
                expect: None,
                value: None,
            });
        }
        let d = words.join("; ");
        self.end(Ok(((), d)))?;
        Ok(())
    }

    /// A point-in-time drill: the restored dump held to its facts (as any drill's), then the
    /// captured transactions it does not hold applied up to the plan's time.
    async fn apply_captured(
        &mut self,
        repo: &Arc<Repository>,
        m: &Manifest,
        p: &crate::core::pitr::Plan,
        target: &ConnInfo,
    ) -> Result<((), String)> {
        let pg = client::connect(target).await?;
        self.facts_check(&pg, m).await?;
        drop(pg);
        let t = Instant::now();
        let mut pg = client::connect(target).await?;
        let a = crate::core::pitr::apply(repo, p, &mut pg).await?;
        let detail = format!(
            "{} captured transaction(s) after the backup ({} change(s)), the last committed at {}",
            a.transactions,
            a.changes,
            a.last_commit
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
                .unwrap_or_else(|| "— (none after the backup)".into())
        );
        self.rep.checks.push(Check {
            name: "captured changes applied".into(),
            kind: "change capture".into(),
            outcome: Outcome::Passed,
            duration_ms: t.elapsed().as_millis() as u64,
            detail: detail.clone(),
            sql: None,
            expect: None,
            value: None,
        });
        Ok(((), detail))
    }

    /// The restored tables against the facts recorded at backup time.
    async fn facts_check(&mut self, pg: &tokio_postgres::Client, m: &Manifest) -> Result<()> {
        let t = Instant::now();
        let problems = verify::compare_database(pg, &m.facts).await?;
        self.rep.checks.push(Check {
            name: "tables match the backup".into(),
            kind: "table facts".into(),
            outcome: if problems.is_empty() {
                Outcome::Passed
            } else {
                Outcome::Failed
            },
            duration_ms: t.elapsed().as_millis() as u64,
            detail: if problems.is_empty() {
                format!(
                    "{} tables: row counts and contents as recorded at backup time",
                    m.facts.tables.len()
                )
            } else {
                problems
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            sql: None,
            expect: None,
            value: None,
        });
        Ok(())
    }

    /// Table facts from backup time (unless a point-in-time drill held the dump to them
    /// before its changes), pg_amcheck, and the configured smoke queries.
    async fn checks(
        &mut self,
        m: &Manifest,
        target: &ConnInfo,
        config: &crate::config::Config,
        facts: bool,
    ) -> Result<()> {
        let pg = client::connect(target).await?;
        if facts {
            self.facts_check(&pg, m).await?;
        }
        let t = Instant::now();
        let opts = verify::VerifyOptions {
            bin_dir: config.postgres.bin_dir.clone(),
            ..Default::default()
        };
        let a = verify::amcheck(target, m, &opts).await;
        self.rep.checks.push(Check {
            name: "indexes and heap are consistent".into(),
            kind: "pg_amcheck".into(),
            outcome: if a == "passed" {
                Outcome::Passed
            } else if a.starts_with("failed") {
                Outcome::Failed
            } else {
                Outcome::Skipped
            },
            duration_ms: t.elapsed().as_millis() as u64,
            detail: a,
            sql: None,
            expect: None,
            value: None,
        });
        for c in config
            .drill
            .checks
            .iter()
            .filter(|c| c.source.as_deref().is_none_or(|s| s == m.source.name))
        {
            let t = Instant::now();
            let (outcome, value, detail) = match scalar(&pg, &c.sql).await {
                Ok(v) => match c.expect.check(v.as_deref()) {
                    Ok(()) => (Outcome::Passed, v, String::new()),
                    Err(why) => (Outcome::Failed, v, why),
                },
                Err(e) => (Outcome::Failed, None, format!("the query failed: {e}")),
            };
            self.say(format!(
                "drill: check {} {} {}",
                c.name,
                outcome.symbol(),
                outcome.as_str()
            ));
            self.rep.checks.push(Check {
                name: c.name.clone(),
                kind: "query".into(),
                outcome,
                duration_ms: t.elapsed().as_millis() as u64,
                detail,
                sql: Some(c.sql.clone()),
                expect: Some(c.expect.to_string()),
                value,
            });
        }
        Ok(())
    }

    /// Drop the scratch database (if this drill may have created it) and record the step.
    async fn cleanup(&mut self) {
        // A restore that did not finish left at most its loading database (never one under
        // the scratch name): that is the one to drop, and to check gone.
        let target = match (self.scratch.take(), self.loading.take()) {
            (Some(t), _) => t,
            (None, Some(l)) => l,
            (None, None) => return,
        };
        let t = Instant::now();
        let at = Utc::now();
        core_restore::drop_database(&target).await;
        if let Some(h) = self.scratch_hook.take() {
            self.ctx.cleanup.disarm(h);
        }
        let stand_ins = std::mem::take(&mut self.stand_ins);
        if let Some(h) = stand_ins.hook {
            core_restore::drop_stand_ins(&target, &stand_ins.roles).await;
            self.ctx.cleanup.disarm(h);
        }
        let gone = match core_restore::connect_admin(&target).await {
            Ok(admin) => client::database_exists(&admin, &target.dbname)
                .await
                .map(|e| !e)
                .unwrap_or(false),
            Err(_) => false,
        };
        let (outcome, detail) = if gone {
            (Outcome::Passed, format!("dropped {}", target.dbname))
        } else {
            (
                Outcome::Failed,
                format!(
                    "could not confirm that {} was dropped: drop it by hand (DROP DATABASE {})",
                    target.dbname,
                    quote_ident(&target.dbname)
                ),
            )
        };
        self.say(format!(
            "drill: cleanup {} {}: {detail}",
            outcome.symbol(),
            outcome.as_str()
        ));
        self.rep.steps.push(Step {
            name: "cleanup".into(),
            outcome,
            started_at: at,
            duration_ms: t.elapsed().as_millis() as u64,
            detail,
        });
    }
}

/// A scratch database name for a drill of backup `id`.
fn drill_db_name(id: &str) -> String {
    verify::scratch_name(id).replacen("keepsake_verify_", "keepsake_drill_", 1)
}

/// The backup a drill restores, and the level it was proven at.
/// The backup to drill, how far it is proven, and, for `at` on a source whose changes are
/// captured, the point-in-time plan (its dump is the backup) — or why the last backup before
/// `at` is drilled instead (capture does not reach it).
async fn choose(
    repo: &Repository,
    req: &DrillRequest,
    config: &crate::config::Config,
) -> Result<(
    Manifest,
    &'static str,
    Option<crate::core::pitr::Plan>,
    Option<String>,
)> {
    let records = verify::records(repo).await?;
    let proven = |m: &Manifest| verify::proven(records.get(&m.id)).0;
    if let Some(id) = &req.backup {
        let m = repo.manifest(id).await?;
        if let Some(s) = &req.source {
            if &m.source.name != s {
                return Err(Error::Usage(format!(
                    "backup {} is of source {}, not {s}",
                    m.id, m.source.name
                )));
            }
        }
        let p = proven(&m);
        return Ok((m, p, None, None));
    }
    let (ms, _) = repo.manifests_lenient().await?;
    let source = match &req.source {
        Some(s) => s.clone(),
        None => {
            let mut names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
            if names.is_empty() {
                names = ms.iter().map(|m| m.source.name.as_str()).collect();
                names.dedup();
            }
            match names.as_slice() {
                [one] => one.to_string(),
                [] => {
                    return Err(Error::Usage(
                        "no source to drill: the repository has no backups".into(),
                    ))
                }
                many => {
                    return Err(Error::Field {
                        field: "source",
                        message: format!("is needed: several sources ({})", many.join(", ")),
                    })
                }
            }
        }
    };
    // A point in time of a source whose changes are captured: its state at that time.
    let mut why = None;
    if let Some(at) = req.at {
        if crate::core::capture::slot_record(repo, &source)
            .await?
            .is_some()
        {
            match crate::core::pitr::plan(repo, &source, None, at).await {
                Ok(plan) => {
                    let p = proven(&plan.dump);
                    return Ok((plan.dump.clone(), p, Some(plan), None));
                }
                Err(Error::Field { message, .. }) => {
                    why = Some(format!(
                        "change capture cannot restore that time ({message}): the last backup before it instead"
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut mine = ms.into_iter().filter(|m| m.source.name == source);
    let m = match req.at {
        Some(at) => mine
            .rfind(|m| m.finished_at <= at)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no backup of {source} finished at or before {}",
                    at.to_rfc3339()
                ))
            })?,
        None => mine
            .rfind(|m| matches!(proven(m), "data" | "restore"))
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no backup of {source} is proven at data level or better: run `keepsake verify --latest --level data`, or name one with --backup"
                ))
            })?,
    };
    let p = proven(&m);
    Ok((m, p, None, why))
}

/// The target server answers, the database does not exist yet, and (when the server is on
/// this host and says where its data lives) there is room for the restore.
async fn preflight_target(target: &ConnInfo, logical: u64) -> Result<((), String)> {
    let admin = core_restore::connect_admin(target).await.map_err(|e| {
        Error::Postgres(format!(
            "the target server {} does not answer: {e}",
            ConnInfo {
                dbname: String::new(),
                ..target.clone()
            }
            .display()
            .trim_end_matches('/')
        ))
    })?;
    let version: String = admin
        .query_one("SHOW server_version", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|_| "?".into());
    let exists = client::database_exists(&admin, &target.dbname)
        .await
        .map_err(|e| Error::Postgres(client::describe(&e)))?;
    if exists {
        return Err(Error::Usage(format!(
            "database {} already exists on the target server: a drill only restores into a database it creates (and drops)",
            target.dbname
        )));
    }
    let local = target.host.starts_with('/')
        || matches!(target.host.as_str(), "localhost" | "127.0.0.1" | "::1" | "");
    let dir: Option<String> = if local {
        admin
            .query_one("SHOW data_directory", &[])
            .await
            .ok()
            .map(|r| r.get(0))
    } else {
        None
    };
    // Restored tables plus their indexes: room for about 1.5× the dump's logical size.
    let need = logical + logical / 2;
    let room = match dir.as_deref().and_then(free_bytes) {
        Some(free) if free < need => {
            return Err(Error::Other(format!(
                "the target server has {} free where its data lives; the restore needs about {}",
                crate::units::human_bytes(free),
                crate::units::human_bytes(need)
            )))
        }
        Some(free) => format!(
            "{} free (needs about {})",
            crate::units::human_bytes(free),
            crate::units::human_bytes(need)
        ),
        None => "free space not reported by the server".into(),
    };
    Ok((
        (),
        format!(
            "PostgreSQL {version} at {} answers; {} is new; {room}",
            target.display(),
            target.dbname
        ),
    ))
}

/// Free bytes of the file system holding `path`.
fn free_bytes(path: &str) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// The first column of the first row of `sql` as text (`None`: NULL or no row), run in a
/// read-only transaction with a statement timeout.
async fn scalar(pg: &tokio_postgres::Client, sql: &str) -> Result<Option<String>> {
    let err = |e: tokio_postgres::Error| Error::Postgres(client::describe(&e));
    pg.batch_execute(&format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = '{QUERY_TIMEOUT_S}s'"
    ))
    .await
    .map_err(err)?;
    // The simple protocol returns every value as text, whatever its type.
    let r = pg.simple_query(sql).await;
    let _ = pg.batch_execute("ROLLBACK").await;
    let msgs = r.map_err(err)?;
    for m in msgs {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0).map(str::to_string));
        }
    }
    Ok(None)
}
