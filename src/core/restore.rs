//! Restore: check the backup and the target, create the database, and stream the backup's chunks
//! (read by [`crate::core::chunks`]) in order into `pg_restore`, or hand over to the parallel
//! restore.
//!
//! Invariants:
//! - The repository key and the manifest are checked before the target is touched, so a wrong
//!   identity or an unknown backup never creates or alters a database.
//! - Every pack the backup needs is confirmed present (size, no download) before the target is
//!   touched; a missing pack fails naming the backup.
//! - The target is protected: a database with user relations is refused unless
//!   `--clean --confirm NAME` names it; the backup's own source database is refused unless
//!   `--confirm NAME` names it; `--create` refuses an existing database.
//! - pg_restore runs in one transaction: any failure (bad chunk, pg_restore error, digest
//!   mismatch, cancellation) rolls everything back, and a database created by this restore is
//!   dropped again.
//! - Never more than a bounded read-ahead of chunks in memory; nothing is staged on disk.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::cleanup::{Cleanup, HookId};
use crate::core::feed::feed_archive;
pub use crate::core::feed::RestoreOptions;

use crate::core::format::Manifest;
use crate::core::progress::{Phase, ProgressSink, Tracker};
use crate::core::repo::Repository;
use crate::error::{field_ref as field, Error, Result};
use crate::pg::client::{self, quote_ident, quote_literal};
use crate::pg::conninfo::ConnInfo;
use crate::pg::process::{self, PassFile, StderrLog};
use crate::pg::tools;

#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    pub backup_id: String,
    pub bytes: u64,
    pub duration: Duration,
    pub created: bool,
    /// The armed hook that drops the created database: the caller disarms it once the
    /// database is meant to stay (a finished restore) or was dropped (a scratch database).
    pub created_hook: Option<HookId>,
    /// For a partial restore: what was restored, skipped and needed.
    pub partial: Option<crate::core::select::Chosen>,
    /// Tables compared with the facts recorded at backup time (a partial restore).
    pub checked: usize,
    /// The roles this restore created as stand-ins ([`RestoreOptions::stand_in_roles`]).
    pub stand_ins: StandIns,
    /// What a proof on a plain server left out, in words (event triggers of a provider's
    /// superuser, objects that need an extension the server lacks). Never a table.
    pub not_covered: Vec<String>,
}

/// Roles a restore created as `NOLOGIN` stand-ins, and the armed hook that drops them: the
/// caller drops them with [`drop_stand_ins`] after the database that uses them, then disarms.
#[derive(Debug, Clone, Default)]
pub struct StandIns {
    pub roles: Vec<String>,
    pub hook: Option<HookId>,
}

/// Create, as `NOLOGIN` roles, those of `wanted` the server of `target` lacks; returns the roles
/// created (registered with `cleanup` at once, one by one, so that a failure half-way still
/// drops what was made). A server where the user may not create roles refuses with the
/// privilege named.
async fn create_stand_ins(
    target: &ConnInfo,
    wanted: &[String],
    cleanup: &Cleanup,
) -> Result<StandIns> {
    let mut out = StandIns::default();
    if wanted.is_empty() {
        return Ok(out);
    }
    let admin = connect_admin(target).await?;
    let rows = admin
        .query(
            "SELECT r FROM unnest($1::text[]) AS r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) ORDER BY 1",
            &[&wanted],
        )
        .await
        .map_err(|e| Error::Postgres(format!("looking up roles: {}", client::describe(&e))))?;
    let missing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let created = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    for role in &missing {
        let sql = format!("CREATE ROLE {} NOLOGIN NOINHERIT", quote_ident(role));
        match admin.batch_execute(&sql).await {
            Ok(()) => {
                if let Ok(mut c) = created.lock() {
                    c.push(role.clone());
                }
                if out.hook.is_none() {
                    let (target, created) = (target.clone(), created.clone());
                    out.hook = Some(cleanup.register(
                        format!("drop the stand-in roles created on {}", target.display()),
                        move || {
                            Box::pin(async move {
                                let roles = created.lock().map(|c| c.clone()).unwrap_or_default();
                                drop_stand_ins(&target, &roles).await
                            })
                        },
                    ));
                }
                out.roles.push(role.clone());
            }
            // Another restore on this server created it meanwhile: it is there, not ours.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {}
            Err(e) => {
                let why = client::describe(&e);
                let privilege = if e.code()
                    == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
                {
                    format!(
                        "the user {} may not create roles there (it needs CREATEROLE, or a superuser)",
                        target.user
                    )
                } else {
                    why.clone()
                };
                return Err(Error::Postgres(format!(
                    "{STAND_IN_REFUSED} {role} that backup objects are owned by or granted to, on {}: {privilege} ({why}); give the user CREATEROLE, or create the roles {} there (CREATE ROLE … NOLOGIN)",
                    target.display(),
                    missing.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// What a restore onto a plain server cannot take, as dump ids (with everything that depends on
/// them) and in words: event triggers owned by a role that is only a stand-in here (an event
/// trigger's owner must be a superuser), and objects of extensions the server does not have.
/// A table among them refuses the proof (not proven): a proof never leaves out a table.
async fn uncoverable(
    target: &ConnInfo,
    entries: &[crate::pg::archive::TocEntry],
    stand_ins: &[String],
) -> Result<(std::collections::BTreeSet<i64>, Vec<String>)> {
    use std::collections::BTreeSet;
    let extensions: Vec<&str> = entries
        .iter()
        .filter(|e| e.desc == "EXTENSION")
        .map(|e| e.tag.as_str())
        .collect();
    let missing: Vec<String> = match extensions.is_empty() {
        true => vec![],
        false => {
            let admin = connect_admin(target).await?;
            admin
                .query(
                    "SELECT x FROM unnest($1::text[]) AS x WHERE NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = x) ORDER BY 1",
                    &[&extensions],
                )
                .await
                .map_err(|e| {
                    Error::Postgres(format!("looking up extensions: {}", client::describe(&e)))
                })?
                .iter()
                .map(|r| r.get(0))
                .collect()
        }
    };
    let mut words = vec![];
    let triggers: Vec<&crate::pg::archive::TocEntry> = entries
        .iter()
        .filter(|e| e.desc == "EVENT TRIGGER" && stand_ins.contains(&e.owner))
        .collect();
    if !triggers.is_empty() {
        let names: Vec<&str> = triggers.iter().map(|e| e.tag.as_str()).collect();
        words.push(format!(
            "{} event trigger{} owned by a role that is only a stand-in here ({})",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ));
    }
    let mut skip: BTreeSet<i64> = triggers.iter().map(|e| e.dump_id).collect();
    for x in &missing {
        let before = skip.len();
        let seed: BTreeSet<i64> = entries
            .iter()
            .filter(|e| e.desc == "EXTENSION" && &e.tag == x)
            .map(|e| e.dump_id)
            .collect();
        skip.extend(&seed);
        // Grants and comments on the extension's own objects: pg_dump writes them (the
        // objects themselves come with CREATE EXTENSION), pointing at objects the archive does
        // not hold, in the extension's schema.
        let known: BTreeSet<i64> = entries.iter().map(|e| e.dump_id).collect();
        // An EXTENSION entry has no namespace of its own: its schema is in its definition
        // (`CREATE EXTENSION IF NOT EXISTS x WITH SCHEMA s;`).
        let homes: Vec<String> = entries
            .iter()
            .filter(|e| seed.contains(&e.dump_id))
            .filter_map(|e| {
                e.defn
                    .split(" WITH SCHEMA ")
                    .nth(1)
                    .map(|r| r.trim().trim_end_matches(';').trim_matches('"').to_string())
            })
            .collect();
        let mut seed = seed;
        for e in entries {
            if matches!(e.desc.as_str(), "ACL" | "COMMENT" | "SECURITY LABEL")
                && homes.contains(&e.namespace)
                && !e.deps.is_empty()
                && e.deps.iter().all(|d| !known.contains(d))
            {
                seed.insert(e.dump_id);
            }
        }
        skip.extend(&seed);
        let mut all = seed;
        loop {
            let n = all.len();
            for e in entries {
                if e.deps.iter().any(|d| all.contains(d)) {
                    all.insert(e.dump_id);
                }
            }
            if all.len() == n {
                break;
            }
        }
        skip.extend(&all);
        let others = skip.len() - before - 1;
        words.push(format!(
            "extension {x} (not installed on the scratch server){}",
            match others {
                0 => String::new(),
                n => format!(" and {n} objects that need it"),
            }
        ));
    }
    // What hangs on a skipped entry (its comment, its grants) goes with it.
    loop {
        let n = skip.len();
        for e in entries {
            if e.deps.iter().any(|d| skip.contains(d)) {
                skip.insert(e.dump_id);
            }
        }
        if skip.len() == n {
            break;
        }
    }
    if let Some(t) = entries
        .iter()
        .find(|e| e.desc == "TABLE" && skip.contains(&e.dump_id))
    {
        return Err(Error::Postgres(format!(
            "{SERVER_LACKS} table {}.{}: it needs {}; install the extension there to prove this backup",
            t.namespace,
            t.tag,
            words.join("; ")
        )));
    }
    Ok((skip, words))
}

/// After a restore with scaffolding (see `select::Chosen::scaffold_schemas`): remove, in one
/// transaction, every default and check of a kept table that calls into the excluded
/// `schemas`, then the schemas themselves. Returns a line per reference removed.
async fn remove_scaffolding(target: &ConnInfo, schemas: &[String]) -> Result<Vec<String>> {
    let pg = client::connect(target).await?;
    let fail = |e: tokio_postgres::Error| {
        Error::Postgres(format!(
            "removing the references into the excluded schemas {}: {}",
            schemas.join(", "),
            client::describe(&e)
        ))
    };
    pg.batch_execute("BEGIN; SET LOCAL search_path = ''")
        .await
        .map_err(fail)?;
    let rows = pg
        .query(crate::core::select::remove_scaffolding_sql(), &[&schemas])
        .await
        .map_err(fail)?;
    let mut lines = vec![];
    for r in &rows {
        let (kind, what, stmt, used): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        pg.batch_execute(&stmt).await.map_err(fail)?;
        lines.push(format!(
            "{} of {what}: removed (it uses {used}, in an excluded schema); the table and its rows are restored",
            kind.to_uppercase()
        ));
    }
    let drop = format!(
        "DROP SCHEMA {} CASCADE; COMMIT",
        schemas
            .iter()
            .map(|s| quote_ident(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    pg.batch_execute(&drop).await.map_err(fail)?;
    Ok(lines)
}

/// A private `pg_restore --use-list` file naming exactly `ids`.
fn list_file_of(
    toc: &crate::core::parallel_restore::Toc,
    entries: &[crate::pg::archive::TocEntry],
    ids: &std::collections::BTreeSet<i64>,
) -> Result<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new()
        .prefix("keepsake-list-")
        .tempfile()
        .map_err(|e| Error::io("creating a restore list", e))?;
    std::io::Write::write_all(&mut f, toc.list_of(entries, ids).as_bytes())
        .map_err(|e| Error::io("writing a restore list", e))?;
    Ok(f)
}

/// A new project is one whose provider tables the restore fills are still empty: rows there
/// mean a project in use, which a restore would mix with the backup's.
/// The column names of a COPY column list as pg_dump writes it (`(id, "Guest Name")`).
fn copy_columns(list: &str) -> Vec<String> {
    let inner = list.trim().trim_start_matches('(').trim_end_matches(')');
    let (mut out, mut cur, mut quoted, mut chars) =
        (vec![], String::new(), false, inner.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Refuse a new-project restore the project cannot take as it is: provider tables that already
/// hold rows (a project in use), or that lack a column the backup has (another version of the
/// provider): named before anything is written. A column the project has more is fine: rows
/// go in by column name and it gets its default.
async fn refuse_used_project(
    target: &ConnInfo,
    chosen: &crate::core::select::Chosen,
    project: &crate::core::select::Project,
    facts: &crate::pg::archive::ArchiveFacts,
) -> Result<()> {
    let Some(p) = project.profile else {
        return Ok(());
    };
    let pg = client::connect(target).await?;
    let mut used = vec![];
    let mut lacking = vec![];
    for (schema, name) in chosen.relations.iter().filter(|(s, _)| p.manages_schema(s)) {
        // Only tables count (a sequence always reads as one row).
        let is_table = pg
            .query_opt(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[schema, name],
            )
            .await
            .map(|r| r.is_some())
            .unwrap_or(false);
        if !is_table {
            continue;
        }
        if let Some(t) = facts
            .tables
            .iter()
            .find(|t| &t.schema == schema && &t.name == name)
        {
            let have: Vec<String> = pg
                .query(
                    "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                    &[schema, name],
                )
                .await
                .map_err(|e| Error::Postgres(client::describe(&e)))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for col in copy_columns(&t.columns) {
                if !have.contains(&col) {
                    lacking.push(format!("{schema}.{name}.{col}"));
                }
            }
        }
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {}.{})",
            quote_ident(schema),
            quote_ident(name)
        );
        match pg.query_one(&sql, &[]).await {
            Ok(r) if r.get::<_, bool>(0) => used.push(format!("{schema}.{name}")),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Postgres(format!(
                    "reading {schema}.{name} in {}: {}",
                    target.display(),
                    client::describe(&e)
                )))
            }
        }
    }
    if !lacking.is_empty() {
        return Err(Error::Usage(format!(
            "{} is a {} project whose provider tables lack column{} the backup holds data in: {} (another version of {}?); restoring would drop that data, so nothing was done: restore into a project of the backup's version, or add the column{} there first",
            target.display(),
            p.title,
            if lacking.len() == 1 { "" } else { "s" },
            lacking.join(", "),
            p.title,
            if lacking.len() == 1 { "" } else { "s" },
        )));
    }
    if used.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{} is a {} project already in use: {} hold rows, which the backup's would be mixed with; restore into a new project; nothing was done",
        target.display(),
        p.title,
        used.join(", ")
    )))
}

/// How a refusal to create a stand-in role begins (a proof that could not run: not proven).
pub const STAND_IN_REFUSED: &str = "cannot create the stand-in role";

/// How a refusal to prove on a server that lacks what a table needs begins (not proven).
pub const SERVER_LACKS: &str = "the scratch server cannot take";

/// Drop the stand-in roles `roles` (created by this restore) from `target`'s server; a role
/// another database still uses is left, with a warning.
pub async fn drop_stand_ins(target: &ConnInfo, roles: &[String]) {
    if roles.is_empty() {
        return;
    }
    let Ok(admin) = connect_admin(target).await else {
        tracing::warn!(
            "could not connect to drop the stand-in roles {} on {}",
            roles.join(", "),
            target.display()
        );
        return;
    };
    for role in roles {
        let sql = format!("DROP ROLE IF EXISTS {}", quote_ident(role));
        if let Err(e) = admin.batch_execute(&sql).await {
            tracing::warn!(
                "could not drop the stand-in role {role} on {}: {}",
                target.display(),
                client::describe(&e)
            );
        }
    }
}

/// Fail unless every pack of `m` exists with its recorded size.
pub async fn check_packs(repo: &Repository, m: &Manifest) -> Result<()> {
    let missing = repo.missing_packs(&m.packs).await?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Damage(format!(
            "backup {} cannot be restored: {} of its {} packs are damaged: {}",
            m.id,
            missing.len(),
            m.packs.len(),
            missing.join("; ")
        )))
    }
}

/// Check the target is safe to restore into. Returns what a new project of the backup's own
/// provider already has when the target is one (`select::for_new_project`).
async fn check_target(
    m: &Manifest,
    o: &RestoreOptions,
) -> Result<Option<crate::core::select::Project>> {
    let db = &o.target.dbname;
    if let Some(c) = &o.confirm {
        if c != db {
            return Err(Error::Field {
                field: "confirm",
                message: format!(
                    "{c} does not match the target database \"{db}\": nothing was done"
                ),
            });
        }
    }
    let confirmed = o.confirm.as_deref() == Some(db.as_str());
    let (pg, exists) = if o.create {
        let admin = connect_admin(&o.target).await?;
        let exists = client::database_exists(&admin, db).await.map_err(|e| {
            Error::Postgres(format!(
                "inspecting {}: {}",
                o.target.display(),
                client::describe(&e)
            ))
        })?;
        if exists {
            return Err(Error::Field {
                field: "create",
                message: format!(
                    "cannot make \"{db}\": that target database already exists; restore into it without {} (it must be empty), or replace its objects with {} {}",
                    field("create", None),
                    field("clean", None),
                    field("confirm", Some(db))
                ),
            });
        }
        (admin, false)
    } else {
        let pg = client::connect(&o.target).await.map_err(|e| match e {
            Error::Postgres(m) if m.contains("does not exist") => Error::Field {
                field: "create",
                message: format!("is needed to make the target database: {m}"),
            },
            other => other,
        })?;
        (pg, true)
    };
    // Is the target the source of this backup?
    let same_db = *db == m.source.database;
    let same_server = match (
        &m.source.system_identifier,
        client::system_identifier(&pg).await,
    ) {
        (Some(a), Some(b)) => *a == b,
        _ => m.source.location == format!("{}:{}/{}", o.target.host, o.target.port, db),
    };
    let into = o.selection.as_ref().and_then(|s| s.into_schema.as_deref());
    if let Some(schema) = into {
        // A new schema beside everything else: nothing existing is touched, so no typed
        // consent is needed, even in the backup's own source database.
        if crate::core::into_schema::schema_exists(&pg, schema).await? {
            return Err(Error::Field {
                field: "into_schema",
                message: format!(
                    "needs a new name: schema \"{schema}\" already exists in {} (the restore creates it); nothing was done",
                    o.target.display()
                ),
            });
        }
        return Ok(None);
    }
    // A whole restore into a database of the backup's own provider that has the provider's
    // schemas: a new project (the disaster path). Its own schemas do not count as content.
    let mut project = None;
    let profile = m
        .source
        .platform
        .as_deref()
        .and_then(crate::platform::by_name)
        .filter(|p| !p.schemas.is_empty());
    if let (Some(p), true, None) = (profile, exists, &o.selection) {
        let (there, schemas) = client::platform_facts(&pg, p.schemas).await?;
        if there == Some(p) && !schemas.is_empty() {
            project = Some(crate::core::select::Project {
                profile: Some(p),
                extensions: names(&pg, o, "SELECT extname::text FROM pg_extension").await?,
                publications: names(&pg, o, "SELECT pubname::text FROM pg_publication").await?,
            });
        }
    }
    let skip: Vec<&str> = match &project {
        Some(pr) => pr.profile.map(|p| p.schemas.to_vec()).unwrap_or_default(),
        None => vec![],
    };
    if same_db && same_server && !confirmed {
        return Err(Error::Field {
            field: "confirm",
            message: format!(
                "is needed: the target {} is the source database of backup {}: to restore over it, add {}{}",
                o.target.display(),
                m.id,
                field("confirm", Some(db)),
                if exists {
                    format!(" (and {} when it holds tables)", field("clean", None))
                } else {
                    String::new()
                }
            ),
        });
    }
    if exists {
        let n = client::user_relation_count(&pg, &skip).await?;
        if n > 0 && o.selection.is_some() && !o.clean {
            // Tables restored beside what is there: typed consent; a name that exists already
            // fails the restore, and its single transaction rolls back.
            if confirmed {
                return Ok(project);
            }
            return Err(Error::Field {
                field: "confirm",
                message: format!(
                    "is needed: target database \"{db}\" holds {n} tables, views or sequences: restoring the chosen tables beside them needs {} (a table that exists there already makes the restore fail and change nothing)",
                    field("confirm", Some(db))
                ),
            });
        }
        if n > 0 && !(o.clean && confirmed) {
            return Err(Error::Field {
                field: "clean",
                message: format!(
                    "is needed: target database \"{db}\" is not empty ({n} tables, views or sequences): restoring would mix data; restore into a new database with {}, or replace its objects with {} {}",
                    field("create", None),
                    field("clean", None),
                    field("confirm", Some(db))
                ),
            });
        }
    }
    Ok(project)
}

/// The first column of `sql`'s rows on the target, as text.
async fn names(pg: &tokio_postgres::Client, o: &RestoreOptions, sql: &str) -> Result<Vec<String>> {
    pg.query(sql, &[])
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .map_err(|e| {
            Error::Postgres(format!(
                "inspecting {}: {}",
                o.target.display(),
                client::describe(&e)
            ))
        })
}

/// A session on `target`'s server for creating and dropping databases (`postgres`, else
/// `template1`).
pub async fn connect_admin(target: &ConnInfo) -> Result<tokio_postgres::Client> {
    match client::connect(&target.with_dbname("postgres")).await {
        Ok(c) => Ok(c),
        Err(_) => client::connect(&target.with_dbname("template1")).await,
    }
}

async fn create_database(m: &Manifest, target: &ConnInfo) -> Result<()> {
    let admin = connect_admin(target).await?;
    let db = quote_ident(&target.dbname);
    let full = format!(
        "CREATE DATABASE {db} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        quote_literal(&m.source.encoding),
        quote_literal(&m.source.lc_collate),
        quote_literal(&m.source.lc_ctype)
    );
    if let Err(e) = admin.batch_execute(&full).await {
        tracing::warn!(
            "creating {} with the source's locale failed ({}); using the server's defaults",
            target.dbname,
            client::describe(&e)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE template0"))
            .await
            .map_err(|e| {
                Error::Postgres(format!(
                    "cannot create database \"{}\": {}",
                    target.dbname,
                    client::describe(&e)
                ))
            })?;
    }
    Ok(())
}

pub async fn drop_database(target: &ConnInfo) {
    if let Ok(admin) = connect_admin(target).await {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&target.dbname)
        );
        if let Err(e) = admin.batch_execute(&sql).await {
            tracing::warn!(
                "could not drop the half-restored database {}: {}",
                target.dbname,
                client::describe(&e)
            );
        }
    }
}

/// Restore backup `id` into `o.target`.
pub async fn restore(
    repo: Arc<Repository>,
    id: &str,
    o: &RestoreOptions,
    sink: &dyn ProgressSink,
) -> Result<RestoreOutcome> {
    let start = Instant::now();
    let m = Arc::new(repo.manifest(id).await?);
    let tracker = Tracker::new(sink, "restore", &m.source.name).with_store(repo.store().as_ref());
    tracker.update(|p| {
        p.phase = Phase::Checking;
        p.bytes_expected = Some(m.logical_bytes);
    });
    // What needs no target database runs side by side: each of these takes a process start
    // or a connection, and every millisecond before the first COPY is one the restore waits.
    let archive_major = tools::parse_version(&m.pg_dump_version)
        .map(|v| v.1)
        .unwrap_or(0);
    let bin_dir = o.bin_dir.clone();
    let find_tool = tokio::task::spawn_blocking(move || {
        tools::find("pg_restore", archive_major, bin_dir.as_deref())
    });
    let (packs, target) = tokio::join!(check_packs(&repo, &m), check_target(&m, o));
    packs?;
    let tool = find_tool
        .await
        .map_err(|e| Error::Other(format!("looking for pg_restore: {e}")))??;
    let project = target?;

    let parallel = crate::core::parallel_restore::possible(&m, o);
    // The TOC is read first when the restore needs it: a partial restore's choice, the roles
    // the target must have, and the parallel restore's plan. A name the backup does not have
    // or a role the target lacks is refused before any database is created.
    let check_roles = o.check_roles && m.facts.toc_len > 0;
    let stand_in = o.stand_in_roles && m.facts.toc_len > 0;
    let toc =
        match o.selection.is_some() || parallel || check_roles || stand_in || project.is_some() {
            true => Some(crate::core::parallel_restore::load_toc(&repo, &m, &tool).await?),
            false => None,
        };
    let entries = match &toc {
        Some(t) => t.entries()?,
        None => vec![],
    };
    let mut partial = None;
    let mut list_file = None;
    if let (Some(sel), Some(toc)) = (&o.selection, &toc) {
        let chosen = crate::core::select::choose(&entries, sel, o.create).map_err(Error::Usage)?;
        if o.create && !sel.data_only && sel.names_tables() && !chosen.needs.is_empty() {
            return Err(Error::Field {
                field: "schemas",
                message: format!(
                    "is needed: {} use{} {}, which you did not ask for and a new database does not have: add its schema with {}, or restore into a database that has it (with {}); nothing was done",
                    chosen.tables.join(", "),
                    if chosen.tables.len() == 1 { "s" } else { "" },
                    chosen.needs.join(", "),
                    field("schemas", None),
                    field("confirm", Some("DBNAME"))
                ),
            });
        }
        list_file = Some(list_file_of(toc, &entries, &chosen.ids)?);
        partial = Some(chosen);
    }
    if let (Some(pr), Some(toc)) = (&project, &toc) {
        let chosen = crate::core::select::for_new_project(&entries, pr);
        refuse_used_project(&o.target, &chosen, pr, &m.facts).await?;
        list_file = Some(list_file_of(toc, &entries, &chosen.ids)?);
        partial = Some(chosen);
    }
    if check_roles {
        missing_roles(&m, o, &entries, partial.as_ref().map(|p| &p.ids)).await?;
    }
    let stand_ins = match stand_in {
        true => {
            let r = crate::core::select::roles(&entries, partial.as_ref().map(|p| &p.ids));
            let mut wanted: Vec<String> = r
                .owners
                .into_iter()
                .chain(r.grantees)
                .chain(r.policies)
                .collect();
            wanted.sort();
            wanted.dedup();
            create_stand_ins(&o.target, &wanted, &o.cleanup).await?
        }
        false => StandIns::default(),
    };
    let (skip, not_covered) = match stand_in {
        true => match uncoverable(&o.target, &entries, &stand_ins.roles).await {
            Ok(x) => x,
            Err(e) => {
                undo_stand_ins(o, &stand_ins).await;
                return Err(e);
            }
        },
        false => Default::default(),
    };
    drop(entries);
    // A new database is loaded under a name of its own and renamed once it is whole: a
    // restore killed half-way (SIGKILL, OOM, power loss) never leaves a half-loaded database
    // under the name asked for, only one named as unfinished (issue 28, item 7).
    let loading = o.create.then(|| {
        o.loading
            .clone()
            .unwrap_or_else(|| loading_target(&o.target))
    });
    let lo = match &loading {
        Some(t) => RestoreOptions {
            target: t.clone(),
            ..o.clone()
        },
        None => o.clone(),
    };
    let o_final = o;
    let o = &lo;
    if o.create {
        if let Err(e) = create_database(&m, &o.target).await {
            undo_stand_ins(o, &stand_ins).await;
            return Err(e);
        }
    }
    // Registered only once CREATE DATABASE succeeded: only a database this restore created
    // may ever be dropped on its behalf (a cancel before this point drops nothing).
    let mut created_hook = o.create.then(|| {
        let target = o.target.clone();
        o.cleanup.register(
            format!("drop database {} created by this restore", o.target.dbname),
            move || Box::pin(async move { drop_database(&target).await }),
        )
    });
    let into = o.selection.as_ref().and_then(|s| s.into_schema.clone());
    let res = match (toc, parallel, &into, &partial) {
        (Some(toc), true, _, _) => {
            crate::core::parallel_restore::run(repo, m.clone(), toc, o, &skip, &tool, &tracker)
                .await
        }
        (_, _, Some(into), Some(ch)) => {
            let sel = o.selection.clone().unwrap_or_default();
            let renamer = crate::core::into_schema::Renamer::new(
                into,
                sel.schemas.iter().cloned().collect(),
                ch.relations.clone(),
            );
            match &list_file {
                Some(l) => {
                    crate::core::into_schema::stream(
                        repo,
                        m.clone(),
                        o,
                        &tool,
                        &tracker,
                        l.path(),
                        &renamer,
                    )
                    .await
                }
                None => Err(Error::Other(
                    "a restore into a schema needs its list".into(),
                )),
            }
        }
        _ => {
            let list = list_file.as_ref().map(|f| f.path());
            stream_into_pg_restore(repo, m.clone(), o, &tool, &tracker, list, project.is_some())
                .await
        }
    };
    // Loaded: the database takes the name asked for (nothing connects to it by then).
    let mut renamed = false;
    let res = match (res, &loading) {
        (Ok(bytes), Some(_)) => match rename_database(&o.target, &o_final.target.dbname).await {
            Ok(()) => {
                renamed = true;
                if let Some(h) = created_hook.take() {
                    o.cleanup.disarm(h);
                }
                let target = o_final.target.clone();
                created_hook = Some(o.cleanup.register(
                    format!("drop database {} created by this restore", target.dbname),
                    move || Box::pin(async move { drop_database(&target).await }),
                ));
                Ok(bytes)
            }
            Err(e) => Err(e),
        },
        (r, _) => r,
    };
    let o = o_final;
    // Kept tables of an excluded schema's users: their references into it go, then the
    // scaffolding that let them be created.
    let res = match (res, partial.as_mut()) {
        (Ok(bytes), Some(ch)) if !ch.scaffold_schemas.is_empty() => {
            match remove_scaffolding(&o.target, &ch.scaffold_schemas).await {
                Ok(lines) => {
                    ch.skipped.extend(lines);
                    Ok(bytes)
                }
                Err(e) => Err(e),
            }
        }
        (r, _) => r,
    };
    let res = match (res, &partial) {
        // The facts recorded at backup time check exactly the tables restored.
        (Ok(bytes), Some(ch)) => {
            tracker.phase(Phase::Checking);
            check_restored(&m, o, ch, into.as_deref())
                .await
                .map(|checked| (bytes, checked))
                .inspect_err(|_| {
                    // What was restored stays for the user to look at.
                    if let Some(h) = created_hook {
                        o.cleanup.disarm(h);
                    }
                })
        }
        (r, _) => r.map(|b| (b, 0)),
    };
    match res {
        Ok((bytes, checked)) => {
            tracker.update(|p| {
                p.phase = Phase::Done;
                p.current_table = None;
            });
            Ok(RestoreOutcome {
                backup_id: m.id.clone(),
                bytes,
                duration: start.elapsed(),
                created: o.create,
                created_hook,
                partial,
                checked,
                stand_ins,
                not_covered,
            })
        }
        Err(Error::Damage(d)) if partial.is_some() && d.starts_with(CHECK_FAILED) => {
            Err(Error::Damage(d))
        }
        Err(e) => {
            if let Some(h) = created_hook {
                // Under whichever name it has now: the loading one until the rename.
                match (&loading, renamed) {
                    (Some(l), false) => drop_database(l).await,
                    _ => drop_database(&o.target).await,
                }
                o.cleanup.disarm(h);
            }
            undo_stand_ins(o, &stand_ins).await;
            Err(e)
        }
    }
}

/// Where a new database is loaded before it takes its name: `<name>_restoring_<6 hex>`
/// (the name cut to fit PostgreSQL's 63 bytes).
pub fn loading_target(target: &ConnInfo) -> ConnInfo {
    const SUFFIX_LEN: usize = "_restoring_".len() + 6;
    let mut base = target.dbname.clone();
    while base.len() + SUFFIX_LEN > 63 {
        base.pop();
    }
    let tag: u32 = rand::random::<u32>() & 0xff_ffff;
    target.with_dbname(&format!("{base}_restoring_{tag:06x}"))
}

/// `ALTER DATABASE <loading> RENAME TO <name>`: refused by the server when `name` exists by
/// now (someone made it while this restore ran) — the restore then fails and drops what it
/// loaded, touching nothing of theirs.
async fn rename_database(loading: &ConnInfo, name: &str) -> Result<()> {
    let admin = connect_admin(loading).await?;
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(&loading.dbname),
        quote_ident(name)
    );
    // The loading sessions are closed, but a server backend outlives its client by a moment:
    // "being accessed by other users" (55006) is waited out for a few seconds.
    let mut tries = 0;
    loop {
        match admin.batch_execute(&sql).await {
            Err(e)
                if tries < 50
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            r => break r,
        }
    }
    .map_err(|e| {
            Error::Postgres(format!(
                "the restore was loaded into {} but could not be renamed to {name}: {}; nothing is left under either name",
                loading.dbname,
                client::describe(&e)
            ))
        })
}

/// Drop the stand-in roles of a restore that failed (after its database), and disarm their hook.
async fn undo_stand_ins(o: &RestoreOptions, s: &StandIns) {
    if let Some(h) = s.hook {
        drop_stand_ins(&o.target, &s.roles).await;
        o.cleanup.disarm(h);
    }
}

const CHECK_FAILED: &str = "the restored tables differ from the facts recorded at backup time";

/// Compare the restored tables (and their sequences) with the facts recorded at backup time.
/// Returns how many tables were compared.
async fn check_restored(
    m: &Manifest,
    o: &RestoreOptions,
    ch: &crate::core::select::Chosen,
    into: Option<&str>,
) -> Result<usize> {
    let pg = client::connect(&o.target).await?;
    let place = |schema: &str, name: &str| {
        ch.relations
            .contains(&(schema.to_string(), name.to_string()))
            .then(|| into.unwrap_or(schema).to_string())
    };
    let problems = crate::core::compare::compare_some(&pg, &m.facts, &place, false).await?;
    if !problems.is_empty() {
        return Err(Error::Damage(format!(
            "{CHECK_FAILED} (backup {}): {}; what was restored into {} is left in place for you to look at",
            m.id,
            problems.join("; "),
            o.target.display()
        )));
    }
    Ok(m.facts
        .tables
        .iter()
        .filter(|t| place(&t.schema, &t.name).is_some())
        .count())
}

/// Refuse, before anything is created, a restore whose objects belong to (or are granted to)
/// roles the target server does not have: pg_restore would fail on the first of them.
async fn missing_roles(
    m: &Manifest,
    o: &RestoreOptions,
    entries: &[crate::pg::archive::TocEntry],
    ids: Option<&std::collections::BTreeSet<i64>>,
) -> Result<()> {
    let r = crate::core::select::roles(entries, ids);
    let mut asked: Vec<String> = r.policies.iter().cloned().collect();
    if !o.no_owner {
        asked.extend(r.owners.iter().cloned());
        if !o.no_privileges {
            asked.extend(r.grantees.iter().cloned());
        }
    }
    asked.sort();
    asked.dedup();
    if asked.is_empty() {
        return Ok(());
    }
    let admin = connect_admin(&o.target).await?;
    let rows = admin
        .query(
            "SELECT r FROM unnest($1::text[]) AS r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) ORDER BY 1",
            &[&asked],
        )
        .await
        .map_err(|e| Error::Postgres(format!("looking up roles: {}", client::describe(&e))))?;
    let missing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let server = format!("{}:{}", o.target.host, o.target.port);
    let owned: Vec<&String> = missing
        .iter()
        .filter(|x| !o.no_owner && r.owners.contains(*x))
        .collect();
    let granted: Vec<&String> = missing
        .iter()
        .filter(|x| {
            !o.no_owner && !o.no_privileges && !r.owners.contains(*x) && r.grantees.contains(*x)
        })
        .collect();
    let mut why = vec![];
    if !owned.is_empty() || !granted.is_empty() {
        let flags = match (owned.is_empty(), o.no_privileges) {
            (false, true) => "--no-owner",
            (false, false) => "--no-owner --no-privileges",
            (true, _) => "--no-privileges",
        };
        let names: Vec<&str> = owned.iter().chain(&granted).map(|s| s.as_str()).collect();
        why.push(format!(
            "the target server {server} has no role {}, which {} objects in backup {}: restore with {flags} (the restoring user then owns what is restored{}), or create the roles first",
            names.join(", "),
            match owned.is_empty() {
                true => "is granted privileges on",
                false => "own or are granted",
            },
            m.id,
            match flags {
                "--no-owner" => "",
                _ => " and no grants are restored",
            }
        ));
    }
    let policy: Vec<&String> = missing
        .iter()
        .filter(|x| r.policies.contains(*x) && !owned.contains(x) && !granted.contains(x))
        .collect();
    if !policy.is_empty() {
        let names: Vec<&str> = policy.iter().map(|s| s.as_str()).collect();
        why.push(format!(
            "row-level-security policies in backup {} apply to role {}, which the target server {server} does not have (no flag skips a policy): create {} first (CREATE ROLE … NOLOGIN), or leave the policies' tables or schemas out",
            m.id,
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" }
        ));
    }
    Err(Error::Usage(format!(
        "{}; nothing was done",
        why.join("; ")
    )))
}

async fn stream_into_pg_restore(
    repo: Arc<Repository>,
    m: Arc<Manifest>,
    o: &RestoreOptions,
    tool: &tools::Tool,
    tracker: &Tracker<'_>,
    list: Option<&std::path::Path>,
    replica: bool,
) -> Result<u64> {
    let pass = PassFile::new(&o.target)?;
    let mut cmd = process::pg_restore_command(
        tool,
        &o.target,
        pass.as_ref(),
        o.clean,
        o.no_owner,
        o.no_privileges,
    );
    if replica {
        // Rows consistent at dump time go back in without firing triggers (a user's trigger
        // on auth.users, the foreign keys' own checks), as the provider's restore guide does.
        cmd.env("PGOPTIONS", "-c session_replication_role=replica");
    }
    if let Some(l) = list {
        cmd.arg(format!("--use-list={}", l.display()));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Postgres(format!("cannot start {}: {e}", tool.path.display())))?;
    let log = Arc::new(Mutex::new(StderrLog::default()));
    let err_task = child.stderr.take().map(|s| {
        let log = log.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(s).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::debug!(target: "keepsake::pg", "pg_restore: {l}");
                if let Ok(mut g) = log.lock() {
                    g.push_line(&l);
                }
            }
        })
    });
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::Other("pg_restore stdin missing".into()))?;
    tracker.phase(Phase::Restoring);

    let feed = feed_archive(
        &repo,
        &m,
        o.read_ahead,
        &mut stdin,
        list.is_some(),
        |done| {
            let table = log.lock().ok().and_then(|l| l.current_table.clone());
            tracker.update(|p| {
                p.bytes_done = done;
                p.current_table = table;
            });
        },
    )
    .await;

    let done = match feed {
        Ok(d) => d,
        Err(e) => {
            // Abort before pg_restore sees EOF, so its transaction rolls back.
            let _ = child.kill().await;
            return Err(e);
        }
    };
    tracker.phase(Phase::Finishing);
    drop(stdin);
    let status = child
        .wait()
        .await
        .map_err(|e| Error::io("waiting for pg_restore", e))?;
    if let Some(t) = err_task {
        let _ = t.await;
    }
    drop(pass);
    if !status.success() {
        let explain = log.lock().map(|l| l.explain()).unwrap_or_default();
        return Err(Error::Postgres(format!(
            "restore of backup {} into {} failed: pg_restore {}; the transaction was rolled back.\n  {explain}",
            m.id,
            o.target.display(),
            process::describe_exit(status)
        )));
    }
    if done != m.logical_bytes && list.is_none() {
        return Err(Error::Other(format!(
            "restore of backup {}: pg_restore finished after {done} of {} bytes",
            m.id, m.logical_bytes
        )));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::copy_columns;

    #[test]
    fn copy_column_lists_are_read_as_pg_dump_quotes_them() {
        assert_eq!(copy_columns("(id, name)"), ["id", "name"]);
        assert_eq!(
            copy_columns(r#"(id, "Guest, Name", "say ""hi""")"#),
            ["id", "Guest, Name", r#"say "hi""#]
        );
        assert!(copy_columns("").is_empty());
    }
}
