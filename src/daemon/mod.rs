//! `keepsake --daemon`: runs each source's schedule, verifies after each backup, applies
//! retention, and records every job — until SIGTERM or SIGINT.
//!
//! Invariants: one daemon per state directory (a lock file naming a live pid refuses a second);
//! jobs of one source never overlap and due runs coalesce (the loop runs one job at a time and
//! asks the schedule what fell due since it last looked: at most one run per type); on a
//! signal the running job is cancelled — nothing half-written becomes visible, since a backup
//! only exists once its manifest is written — recorded `cancelled`, and the daemon exits 0.
//! Not built yet: the control API, webhooks, the catalog, SIGHUP reload, sd_notify.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, Config};
use crate::core::progress::NoProgress;
use crate::engine::{self, jobs::JobStatus};
use crate::error::{Error, Result};

/// Take the state directory's lock, or say which daemon holds it.
fn lock(state_dir: &Path) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| Error::io(format!("creating {}", state_dir.display()), e))?;
    let path = state_dir.join("daemon.lock");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(pid) = text.trim().parse::<u32>() {
            if pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists() {
                return Err(Error::Usage(format!(
                    "another keepsake daemon (pid {pid}) uses the state directory {}: stop it first",
                    state_dir.display()
                )));
            }
        }
    }
    std::fs::write(&path, format!("{}\n", std::process::id()))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// Run until SIGTERM/SIGINT.
pub async fn run(config_path: &Path) -> Result<()> {
    let cfg: Config = config::load(config_path)?;
    let state_dir = cfg
        .daemon
        .state_dir
        .clone()
        .or_else(engine::jobs::default_state_dir)
        .ok_or_else(|| Error::Usage("no state directory: set [daemon] state_dir".into()))?;
    let lock_path = lock(&state_dir)?;
    let history = engine::jobs::History::new(&state_dir);
    // Jobs a crash left running are recorded as interrupted.
    for j in history
        .jobs()
        .into_iter()
        .filter(|j| j.status == JobStatus::Interrupted)
    {
        history.finish(
            j,
            JobStatus::Interrupted,
            Some("the process running it ended without finishing it".into()),
        );
    }
    let repo = engine::open(&cfg).await?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::io("installing a SIGTERM handler", e))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("installing a SIGINT handler", e))?;

    // Catch-up: what fell due since each source's last backup (at most a week back).
    let (ms, _) = repo.manifests_lenient().await?;
    let now = Utc::now();
    let mut since: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for s in &cfg.sources {
        let last = ms
            .iter()
            .filter(|m| m.source.name == s.name)
            .map(|m| m.started_at)
            .max();
        since.insert(
            s.name.clone(),
            last.unwrap_or(now).max(now - chrono::Duration::days(7)),
        );
    }
    tracing::info!(
        "daemon started: {} source(s), state {}",
        cfg.sources.len(),
        state_dir.display()
    );
    let res = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let mut stop = false;
        for s in &cfg.sources {
            let Some(sched) = &s.schedule else { continue };
            let now = Utc::now();
            let from = since.get(&s.name).copied().unwrap_or(now);
            let due = sched.due(from, now);
            since.insert(s.name.clone(), now);
            // Coalesce: one run, of the strongest type due.
            let Some(kind) = due.iter().map(|d| d.0).max_by_key(|k| match k {
                crate::core::format::BackupType::Full => 3,
                crate::core::format::BackupType::Differential => 2,
                crate::core::format::BackupType::Incremental => 1,
            }) else {
                continue;
            };
            let job = history.start("backup", Some(&s.name));
            let progress = NoProgress;
            let run = async {
                let m = engine::backup_source(&cfg, &repo, &s.name, Some(kind), &progress).await?;
                let mut verdict = None;
                if let Some(level) = cfg.verification.after_backup {
                    let rec =
                        engine::verify_backup(&cfg, repo.clone(), &m.id, level, None, &progress)
                            .await?;
                    if !rec.ok {
                        verdict = Some(format!(
                            "verification after backup failed: {}",
                            rec.problems
                                .iter()
                                .chain(rec.not_proven.iter())
                                .cloned()
                                .collect::<Vec<_>>()
                                .join("; ")
                        ));
                    }
                }
                if cfg.retention != Default::default() {
                    crate::core::prune::prune(&repo, &cfg.retention, false).await?;
                }
                Ok::<_, Error>((m, verdict))
            };
            let outcome = tokio::select! {
                r = run => Some(r),
                _ = term.recv() => None,
                _ = int.recv() => None,
            };
            match outcome {
                None => {
                    history.finish(
                        job,
                        JobStatus::Cancelled,
                        Some("the daemon was stopped; nothing of this backup was committed".into()),
                    );
                    stop = true;
                    break;
                }
                Some(Ok((m, verdict))) => {
                    let mut j = job;
                    j.backup_id = Some(m.id.clone());
                    j.logical_bytes = Some(m.logical_bytes);
                    j.stored_bytes = Some(m.stored_bytes);
                    let status = if verdict.is_some() {
                        JobStatus::Failed
                    } else {
                        JobStatus::Completed
                    };
                    tracing::info!("{}: {} backup {} {:?}", s.name, kind.as_str(), m.id, status);
                    history.finish(j, status, verdict);
                }
                Some(Err(e)) => {
                    tracing::error!("{}: backup failed: {e}", s.name);
                    history.finish(job, JobStatus::Failed, Some(e.to_string()));
                }
            }
        }
        if stop {
            break Ok(());
        }
    };
    let _ = std::fs::remove_file(&lock_path);
    tracing::info!("daemon stopped");
    res
}
