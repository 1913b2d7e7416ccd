//! Restore one backup into a PostgreSQL database.
//!
//! Rules (every face): `clean` needs the target's name typed in `confirm`; only a database this
//! job created may ever be dropped on its behalf (the drop is a cleanup hook registered after
//! `CREATE DATABASE` succeeded, disarmed once the restore finished). The target checks and the
//! single-transaction guarantee live in `core::restore`.

use crate::core::restore::{self as core_restore, RestoreOptions};
use crate::engine::command::RestoreRequest;
use crate::engine::ctx::{Done, JobCtx};
use crate::engine::event::JobResult;
use crate::error::{field_ref as field, Error, Result};

pub(super) async fn run(ctx: &JobCtx, req: &RestoreRequest) -> Result<Done> {
    let target = &req.target.conn;
    if req.clean && req.confirm.is_none() {
        return Err(Error::Field {
            field: "confirm",
            message: format!(
                "is needed: {} replaces objects in the target: add {}",
                field("clean", None),
                field("confirm", Some(&target.dbname))
            ),
        });
    }
    let into = req
        .selection
        .as_ref()
        .and_then(|s| s.into_schema.as_deref());
    if let (Some(schema), true) = (into, req.create || req.clean) {
        return Err(Error::Field {
            field: "into_schema",
            message: format!(
                "{schema} restores beside what is in an existing database and touches nothing else: drop {}",
                field(if req.create { "create" } else { "clean" }, None)
            ),
        });
    }
    if req.jobs == Some(0) {
        return Err(Error::Field {
            field: "jobs",
            message: "must be at least 1".into(),
        });
    }
    let repo = ctx.engine.repo().await?;
    // A point in time: the dump and the captured changes after it (core::pitr).
    let pitr = match req.at {
        None => None,
        Some(at) => {
            // Whole: into a new database, an empty one, or one whose objects the user typed
            // its name to replace (a new project of the backup's provider, as a restore of a
            // backup does); never in part, since the changes after the dump touch any table.
            if req.selection.is_some() {
                return Err(Error::Field {
                    field: "tables",
                    message: format!(
                        "cannot go with a point in time: it restores the whole database, into a new one ({}), an empty one, or one it replaces ({} {}) (not with {}, {} or {})",
                        field("create", None),
                        field("clean", None),
                        field("confirm", Some("DBNAME")),
                        field("tables", None),
                        field("schemas", None),
                        field("exclude_schemas", None)
                    ),
                });
            }
            let pinned = (!req.id.is_empty()).then_some(req.id.as_str());
            let source = match (&req.source, pinned) {
                (Some(s), _) => s.clone(),
                (None, Some(id)) => {
                    repo.manifest(&repo.resolve_id(id).await?)
                        .await?
                        .source
                        .name
                }
                (None, None) => return Err(Error::Field {
                    field: "source",
                    message:
                        "is needed: name the source whose state to restore (or give a backup id)"
                            .into(),
                }),
            };
            Some(crate::core::pitr::plan(&repo, &source, pinned, at).await?)
        }
    };
    let id = pitr
        .as_ref()
        .map(|p| p.dump.id.clone())
        .unwrap_or_else(|| req.id.clone());
    let mut opts = RestoreOptions::new(target.clone());
    opts.create = req.create;
    opts.clean = req.clean;
    opts.confirm = req.confirm.clone();
    opts.no_owner = req.no_owner;
    opts.no_privileges = req.no_privileges;
    opts.bin_dir = ctx.config.postgres.bin_dir.clone();
    opts.cleanup = ctx.cleanup.clone();
    if let Some(j) = req.jobs {
        opts.jobs = j;
    }
    opts.selection = req.selection.clone();
    let o = core_restore::restore(repo.clone(), &id, &opts, ctx.progress()).await?;
    let mut applied_note = None;
    if let Some(p) = &pitr {
        let mut pg = crate::pg::client::connect(target).await?;
        let a = match crate::core::pitr::apply(&repo, p, &mut pg).await {
            Ok(a) => a,
            // A database this job made is dropped by its cleanup; one that was there holds
            // the backup and part of the changes: say so.
            Err(e) if !o.created => {
                return Err(Error::Other(format!(
                    "{e}\n  {} now holds backup {} and only part of the changes after it: restore again into a new or empty database",
                    target.display(),
                    p.dump.id
                )))
            }
            Err(e) => return Err(e),
        };
        applied_note = Some(format!(
            "point in time {}: backup {} and {} captured transaction(s) after it ({} change(s)), the last committed at {}; checked: {} changed table(s) hold the rows the dump's facts and the changes say",
            p.until.format("%Y-%m-%d %H:%M:%S UTC"),
            p.dump.id,
            a.transactions,
            a.changes,
            a.last_commit
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
                .unwrap_or_else(|| "— (none after the dump)".into()),
            a.checked
        ));
    }
    // The restored database is meant to stay (only once whole: a point in time failed
    // half-way drops it).
    if let Some(h) = o.created_hook {
        ctx.cleanup.disarm(h);
    }
    ctx.note(|r| {
        r.backup_id = Some(o.backup_id.clone());
        r.logical_bytes = Some(o.bytes);
    });
    Ok(Done::ok(JobResult::Restore {
        backup_id: o.backup_id,
        target: target.display(),
        bytes: o.bytes,
        duration_ms: o.duration.as_millis() as u64,
        created: o.created,
        tables: o
            .partial
            .as_ref()
            .map(|p| p.tables.clone())
            .unwrap_or_default(),
        skipped: o
            .partial
            .as_ref()
            .map(|p| p.skipped.clone())
            .unwrap_or_default(),
        needs: o
            .partial
            .as_ref()
            .map(|p| p.needs.clone())
            .unwrap_or_default(),
        checked: o.checked,
        notes: o
            .partial
            .as_ref()
            .map(|p| p.notes.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(applied_note)
            .collect(),
    }))
}

/// What database `target.dbname` holds now (it need not exist). Reads only catalogs.
pub async fn inspect(target: &crate::pg::conninfo::ConnInfo) -> Result<crate::engine::TargetFacts> {
    let admin = core_restore::connect_admin(target).await?;
    let err = |e: tokio_postgres::Error| Error::Postgres(crate::pg::client::describe(&e));
    let row = admin
        .query_opt(
            "SELECT pg_database_size(d.oid)::bigint, \
                    (SELECT count(*) FROM pg_stat_activity a \
                      WHERE a.datname = d.datname AND a.pid <> pg_backend_pid())::bigint \
               FROM pg_database d WHERE d.datname = $1",
            &[&target.dbname],
        )
        .await
        .map_err(err)?;
    let Some(row) = row else {
        return Ok(crate::engine::TargetFacts {
            exists: false,
            tables: 0,
            bytes: 0,
            sessions: 0,
        });
    };
    let (bytes, sessions): (i64, i64) = (row.get(0), row.get(1));
    let db = crate::pg::client::connect(target).await?;
    let tables: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                AND n.nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    Ok(crate::engine::TargetFacts {
        exists: true,
        tables: tables.max(0) as u64,
        bytes: bytes.max(0) as u64,
        // Counted before this function connected to it (its own session is on `postgres`).
        sessions: sessions.max(0) as u64,
    })
}
