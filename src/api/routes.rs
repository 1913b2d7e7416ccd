//! The route table (docs/api.md, "Routes") and its handlers. [`ROUTES`] is the one list: the
//! router is built from it, the guard reads each route's role from it, and a test compares it
//! with `assets/openapi.yaml`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use axum::Extension;
use futures::StreamExt;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body;
use super::error::ApiError;
use super::reply::{finish, Reply};
use super::{Api, Note};
use crate::core::backup_id::{self, printable, IdError};
use crate::core::format::{BackupType, Manifest};
use crate::engine::view::Snapshot;
use crate::engine::{Command, JobOutcome, RestoreRequest, RestoreTarget, VerifyTarget};
use crate::model::{Level, Role};

/// One route: method, path (axum syntax), the least role allowed, the audit action name.
#[derive(Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Role,
    pub action: &'static str,
}

const fn r(method: &'static str, path: &'static str, role: Role, action: &'static str) -> Route {
    Route {
        method,
        path,
        role,
        action,
    }
}

/// Every route the API serves.
pub const ROUTES: &[Route] = &[
    r("GET", "/v1/info", Role::Viewer, "info"),
    r("GET", "/v1/status", Role::Viewer, "status"),
    r("GET", "/v1/backups", Role::Viewer, "backups.list"),
    r("POST", "/v1/backups", Role::Operator, "backup"),
    r("GET", "/v1/backups/{id}", Role::Viewer, "backups.show"),
    r("GET", "/v1/verifications", Role::Viewer, "verifications"),
    // What a restore into that database would replace: admin, like the restore itself.
    r(
        "GET",
        "/v1/sources/{name}/databases/{db}",
        Role::Admin,
        "target.inspect",
    ),
    // Connects to the source with the daemon's credentials and names what its role cannot
    // read: an operator's, like starting a backup.
    r(
        "GET",
        "/v1/sources/{name}/check",
        Role::Operator,
        "source.check",
    ),
    r("DELETE", "/v1/backups/{id}", Role::Admin, "delete"),
    r("POST", "/v1/backups/{id}/verify", Role::Operator, "verify"),
    r("POST", "/v1/backups/{id}/restore", Role::Admin, "restore"),
    // A dry run is a viewer's; a real prune needs admin (checked in the handler).
    r("POST", "/v1/prune", Role::Viewer, "prune"),
    r("GET", "/v1/drills", Role::Viewer, "drills.list"),
    r("POST", "/v1/drills", Role::Operator, "drill"),
    r("GET", "/v1/jobs", Role::Viewer, "jobs.list"),
    r("GET", "/v1/jobs/{id}", Role::Viewer, "jobs.show"),
    r("POST", "/v1/jobs/{id}/cancel", Role::Operator, "cancel"),
    r("GET", "/v1/events", Role::Viewer, "events"),
    r("GET", "/v1/config", Role::Admin, "config.read"),
    r("PUT", "/v1/config", Role::Admin, "config.update"),
    r("GET", "/v1/audit", Role::Admin, "audit.read"),
    r("GET", "/metrics", Role::Viewer, "metrics"),
];

/// The route `method path` (a matched axum path), if any.
///
/// HEAD is answered by the GET handler (axum runs it and drops the body), so it is looked up,
/// and its role checked, as the GET it is.
pub fn find(method: &Method, path: &str) -> Option<&'static Route> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES.iter().find(|r| r.path == path && r.method == method)
}

/// The least role any method of `path` needs: what a caller must hold to learn which methods
/// a path has (a 405 tells that much).
pub fn path_role(path: &str) -> Option<Role> {
    ROUTES
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.role)
        .min()
}

/// The handler of a route of [`ROUTES`].
pub fn handler(route: &Route) -> MethodRouter<Api> {
    use routing::{delete, get, post, put};
    match (route.method, route.path) {
        ("GET", "/v1/info") => get(info),
        ("GET", "/v1/status") => get(status),
        ("GET", "/v1/backups") => get(list_backups),
        ("POST", "/v1/backups") => post(start_backup),
        ("GET", "/v1/backups/{id}") => get(show_backup),
        ("GET", "/v1/verifications") => get(verifications),
        ("GET", "/v1/sources/{name}/databases/{db}") => get(inspect_target),
        ("GET", "/v1/sources/{name}/check") => get(source_check),
        ("DELETE", "/v1/backups/{id}") => delete(delete_backup),
        ("POST", "/v1/backups/{id}/verify") => post(start_verify),
        ("POST", "/v1/backups/{id}/restore") => post(start_restore),
        ("POST", "/v1/prune") => post(prune),
        ("GET", "/v1/drills") => get(list_drills),
        ("POST", "/v1/drills") => post(start_drill),
        ("GET", "/v1/jobs") => get(list_jobs),
        ("GET", "/v1/jobs/{id}") => get(show_job),
        ("POST", "/v1/jobs/{id}/cancel") => post(cancel_job),
        ("GET", "/v1/events") => get(events),
        ("GET", "/v1/config") => get(super::config_edit::get_config),
        ("PUT", "/v1/config") => put(super::config_edit::put_config),
        ("GET", "/v1/audit") => get(audit),
        ("GET", "/metrics") => get(super::metrics::metrics),
        _ => routing::any(|| async { ApiError::internal("a route without a handler") }),
    }
}

fn json_of<T: serde::Serialize + ?Sized>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

async fn snapshot(api: &Api) -> Result<Arc<Snapshot>, ApiError> {
    Ok(api.engine.snapshot().await?)
}

/// A backup by id or unique prefix, from the cached view.
fn resolve(snap: &Snapshot, id: &str) -> Result<Arc<Manifest>, ApiError> {
    let ids = snap.manifests.iter().map(|m| m.id.as_str());
    match backup_id::resolve(ids, id) {
        Ok(full) => Ok(snap
            .manifests
            .iter()
            .find(|m| m.id == full)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no backup {}", printable(id))))?),
        Err(IdError::NotFound) => Err(ApiError::not_found(format!(
            "no backup {}: GET /v1/backups lists them",
            printable(id)
        ))),
        Err(e) => Err(ApiError::field("id", e.words())),
    }
}

/// `GET /v1/info`: what a console shows in its header and needs to offer restores: the
/// daemon's host, version and repository, the sources with their servers (`user@host:port`,
/// never a password), the retention policy in words.
async fn info(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    body::query(q.as_deref(), &[])?;
    let cfg = api.engine.config();
    let sources: Vec<Value> = cfg
        .sources
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "server": format!("{}@{}:{}", s.conn.user, s.conn.host, s.conn.port),
                "user": s.conn.user,
                "host": s.conn.host,
                "port": s.conn.port,
                "sslmode": s.conn.sslmode.as_str(),
                "database": s.conn.dbname,
            })
        })
        .collect();
    Ok(Reply::Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "host": crate::core::prune::this_host(),
        "pid": std::process::id(),
        "uptime_s": api.started.elapsed().as_secs(),
        "repository": cfg.repository.url,
        "sources": sources,
        "policy": crate::present::policy_words(&cfg.retention),
    })))
}

/// `GET /v1/sources/{name}/databases/{db}`: whether database `db` exists on the source's
/// server, its tables, size and connected sessions — what a restore into it would replace.
async fn inspect_target(
    State(api): State<Api>,
    Path((name, db)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Reply, ApiError> {
    body::query(q.as_deref(), &[])?;
    let cfg = api.engine.config();
    let src = cfg
        .source(&name)
        .map_err(|_| ApiError::not_found(format!("no source {}", printable(&name))))?;
    crate::pg::conninfo::check_dbname(&db).map_err(|m| ApiError::field("db", m))?;
    let facts = crate::engine::ops::restore::inspect(&src.conn.with_dbname(&db)).await?;
    Ok(Reply::Ok(json_of(&facts)?))
}

/// `GET /v1/sources/{name}/check`: the preflight of `keepsake source check NAME` (tools,
/// platform, what the role reads, pooler, TLS, what a plain restore needs), run by the daemon
/// with its own credentials for the source.
async fn source_check(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Reply, ApiError> {
    body::query(q.as_deref(), &[])?;
    let c = api
        .engine
        .source_check(&name)
        .await
        .map_err(|_| ApiError::not_found(format!("no source {}", printable(&name))))?;
    Ok(Reply::Ok(json_of(&c)?))
}

/// `GET /v1/verifications`: every verification record, per backup id, oldest first.
async fn verifications(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    body::query(q.as_deref(), &[])?;
    let snap = snapshot(&api).await?;
    serde_json::to_vec(&snap.records)
        .map(|b| Reply::Json(b.into()))
        .map_err(ApiError::internal)
}

async fn status(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    body::query(q.as_deref(), &[])?;
    serde_json::to_vec(&api.engine.status().await?)
        .map(|b| Reply::Json(b.into()))
        .map_err(ApiError::internal)
}

async fn list_backups(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let q = body::query(q.as_deref(), &["source"])?;
    let source = q.get("source").cloned();
    let snap = snapshot(&api).await?;
    // The rows depend on the snapshot only: serialized once per snapshot and filter. The
    // cache holds the snapshot, so its address is not reused while it is the key.
    if let Ok(c) = api.list_cache.lock() {
        if let Some((s, f, b)) = &*c {
            if Arc::ptr_eq(s, &snap) && *f == source {
                return Ok(Reply::Json(b.clone()));
            }
        }
    }
    let (rows, _) = crate::engine::query::list(&snap, source.as_deref());
    let b: bytes::Bytes = serde_json::to_vec(&rows)
        .map_err(ApiError::internal)?
        .into();
    if let Ok(mut c) = api.list_cache.lock() {
        *c = Some((snap, source, b.clone()));
    }
    Ok(Reply::Json(b))
}

async fn show_backup(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Reply, ApiError> {
    body::query(q.as_deref(), &[])?;
    let snap = snapshot(&api).await?;
    let m = resolve(&snap, &id)?;
    Ok(Reply::Ok(json_of(&crate::present::show_json(
        &m,
        snap.records.get(&m.id),
    ))?))
}

/// Start work for `caller`: within `[api] trigger_rate`, then 202 with the job.
fn accept(api: &Api, caller: &Caller, cmd: Command) -> Result<Reply, ApiError> {
    api.check_rate(caller)?;
    Ok(Reply::Accepted(
        api.engine.submit_as(cmd, caller.actor())?.id,
    ))
}

async fn start_backup(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let mut note = Note::default();
    let r = async {
        body::query(req.uri().query(), &[])?;
        let mut f = body::json_object(req).await?;
        let cfg = api.engine.config();
        let source = f.string("source");
        let kind: Option<BackupType> = f.parsed("type");
        let verify: Option<Level> = f.parsed("verify");
        let source = match source {
            Some(s) if cfg.sources.iter().any(|x| x.name == s) => Some(s),
            Some(s) => {
                let names: Vec<&str> = cfg.sources.iter().map(|x| x.name.as_str()).collect();
                f.error(
                    "source",
                    format!(
                        "no source {}: configured are {}",
                        printable(&s),
                        names.join(", ")
                    ),
                );
                None
            }
            None if cfg.sources.len() == 1 => Some(cfg.sources[0].name.clone()),
            None if cfg.sources.is_empty() => {
                f.error("source", "no source is configured");
                None
            }
            None => {
                f.error("source", "required: this daemon has several sources");
                None
            }
        };
        f.finish()?;
        let source = source.unwrap_or_default();
        note.target = Some(source.clone());
        note.params.insert("type".into(), json!(kind));
        note.params.insert("verify".into(), json!(verify));
        accept(
            &api,
            &caller,
            Command::Backup {
                source,
                kind,
                verify,
            },
        )
    }
    .await;
    finish(&api, &caller, "backup", note, r).await
}

async fn start_verify(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let mut note = Note::default();
    let r = async {
        body::query(req.uri().query(), &[])?;
        let mut f = body::json_object(req).await?;
        let level: Option<Level> = f.parsed("level");
        f.finish()?;
        let m = resolve(&*snapshot(&api).await?, &id)?;
        let level = level.unwrap_or(Level::Data);
        note.target = Some(m.id.clone());
        note.params.insert("level".into(), json!(level));
        accept(
            &api,
            &caller,
            Command::Verify {
                target: VerifyTarget::Id(m.id.clone()),
                level,
            },
        )
    }
    .await;
    finish(&api, &caller, "verify", note, r).await
}

async fn start_restore(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let mut note = Note::default();
    let r = async {
        body::query(req.uri().query(), &[])?;
        let mut f = body::json_object(req).await?;
        let target = f.string("target");
        let target_source = f.string("target_source");
        let target_database = f.string("target_database");
        let create = f.bool("create").unwrap_or(false);
        let clean = f.bool("clean").unwrap_or(false);
        let confirm = f.string("confirm");
        let no_owner = f.bool("no_owner").unwrap_or(false);
        let no_privileges = f.bool("no_privileges").unwrap_or(false);
        let jobs = f.uint("jobs", 64);
        let (tables, schemas) = (f.strings("tables"), f.strings("schemas"));
        let exclude_schemas = f.strings("exclude_schemas");
        let data_only = f.bool("data_only").unwrap_or(false);
        let into_schema = f.string("into_schema");
        // A point in time (change capture): this backup, then the captured changes after it.
        let at = f.string("at").and_then(|t| {
            match chrono::DateTime::parse_from_rfc3339(&t) {
                Ok(d) => Some(d.with_timezone(&chrono::Utc)),
                Err(_) => {
                    f.error("at", "expected an RFC 3339 time, e.g. 2026-12-07T17:00:00Z");
                    None
                }
            }
        });
        let selection = crate::core::select::Names {
            tables: &tables,
            schemas: &schemas,
            exclude_schemas: &exclude_schemas,
            data_only,
            into_schema: into_schema.as_deref(),
        }
        .selection()
        .unwrap_or_else(|(field, m)| {
            f.error(field, in_fields(&m));
            None
        });
        let cfg = api.engine.config();
        let on_source = match (&target, target_source, target_database) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                f.error(
                    "target",
                    "give either target or target_source with target_database, not both",
                );
                None
            }
            (None, Some(s), Some(db)) => {
                if let Err(m) = crate::pg::conninfo::check_dbname(&db) {
                    f.error("target_database", m);
                }
                match cfg.source(&s) {
                    Ok(src) => Some((s, src.conn.with_dbname(&db))),
                    Err(_) => {
                        f.error("target_source", format!("no source {}", printable(&s)));
                        None
                    }
                }
            }
            (None, Some(_), None) => {
                f.error("target_database", "required with target_source");
                None
            }
            (None, None, Some(_)) => {
                f.error("target_source", "required with target_database");
                None
            }
            (_, None, None) => None,
        };
        // The typed-target rule (engine): no password in the URL; none comes from here either.
        let target = match target.as_deref().map(|u| RestoreTarget::typed(u, None, false)) {
            None if on_source.is_some() => None,
            None => {
                f.error(
                    "target",
                    "required: postgres://user@host:port/dbname (or target_source and target_database)",
                );
                None
            }
            // The message names what is wrong, never the value.
            Some(Err(e)) => {
                f.error(e.field().unwrap_or("target"), in_fields(&e.message()));
                None
            }
            // The daemon's stored passwords go only to the servers its configuration names
            // (its sources, the scratch server): never to a host a request chose.
            Some(Ok(RestoreTarget { conn: mut ci, .. })) => {
                let cfg = api.engine.config();
                ci.use_passfile = cfg.sources.iter().any(|s| s.conn.same_server(&ci))
                    || cfg
                        .verification
                        .scratch
                        .as_ref()
                        .is_some_and(|s| s.same_server(&ci));
                Some(ci)
            }
        };
        if jobs == Some(0) {
            f.error("jobs", "expected 1 or more");
        }
        // The target rules the engine applies, checked up front for a clear 422.
        if clean && confirm.is_none() {
            f.error("confirm", "required with clean: the target database's name, typed to confirm");
        }
        f.finish()?;
        let m = resolve(&*snapshot(&api).await?, &id)?;
        let target = match (target, on_source) {
            (Some(t), _) => RestoreTarget::url(t),
            (None, Some((s, ci))) => RestoreTarget::on_source(&s, ci),
            (None, None) => return Err(ApiError::field("target", "required")),
        };
        note.target = Some(m.id.clone());
        note.params
            .insert("target".into(), json!(target.conn.display()));
        note.params.insert("create".into(), json!(create));
        note.params.insert("clean".into(), json!(clean));
        note.params.insert("confirm".into(), json!(confirm));
        if let Some(s) = &selection {
            note.params.insert("selection".into(), json!(s));
        }
        if let Some(t) = at {
            note.params.insert("at".into(), json!(t));
        }
        accept(
            &api,
            &caller,
            Command::Restore(
                RestoreRequest::new(m.id.clone(), target)
                    .create(create)
                    .clean(clean)
                    .confirm(confirm)
                    .no_owner(no_owner)
                    .no_privileges(no_privileges)
                    .jobs(jobs.map(|j| j as usize))
                    .selection(selection)
                    .at(at, None),
            ),
        )
    }
    .await;
    finish(&api, &caller, "restore", note, r).await
}

/// The answer for a job waited on: 200 with its result, or the status its error kind means.
/// Where a request field travels in this API when it is not a body field of the same name.
const FIELD_PLACES: &[(&str, &str)] = &[("confirm", "query.confirm")];

/// Request fields that are booleans in a request body.
const FLAGS: &[&str] = &["create", "clean", "data_only", "no_owner", "no_privileges"];

/// A reference to a request field as this face names it: the body's field, with the value to
/// give it (`"confirm": "wed"`, `"clean": true`, `"tables"`).
fn field_ref(field: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("\"{field}\": \"{v}\""),
        None if FLAGS.contains(&field) => format!("\"{field}\": true"),
        None => format!("\"{field}\""),
    }
}

/// `message` with the request fields it names as this face names them.
fn in_fields(message: &str) -> String {
    crate::error::render_fields(message, field_ref)
}

fn outcome_reply(o: JobOutcome) -> Result<Reply, ApiError> {
    if o.exit_code == 0 {
        return Ok(Reply::Ok(json_of(&o.result)?));
    }
    let msg = o.error_in(field_ref).unwrap_or_else(|| "failed".into());
    if let (Some("invalid"), Some(f)) = (o.error_kind, o.error_field.as_deref()) {
        // A request field, as this face names it: where it was in the request.
        let at = FIELD_PLACES
            .iter()
            .find(|(name, _)| *name == f)
            .map_or(f, |(_, at)| *at);
        return Err(ApiError::field(at, msg));
    }
    Err(match o.error_kind {
        Some("not_found") => ApiError::not_found(msg),
        Some("conflict") => ApiError::conflict(msg),
        Some("invalid") => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg),
        Some("cancelled") => ApiError::unavailable(msg),
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "job_failed",
            format!("job {} failed: GET /v1/jobs/{} has its error", o.job, o.job),
        ),
    })
}

async fn delete_backup(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut note = Note::default();
    let r = async {
        let q = body::query(q.as_deref(), &["confirm", "force"])?;
        let force = body::flag(&q, "force")?;
        let m = resolve(&*snapshot(&api).await?, &id)?;
        note.target = Some(m.id.clone());
        note.params.insert("force".into(), json!(force));
        let confirm = q.get("confirm").cloned().unwrap_or_default();
        // The confirmation is the operation's rule: it is checked against the id as asked.
        let h = api.engine.submit_as(
            Command::Delete {
                id: id.clone(),
                force,
                confirm,
            },
            caller.actor(),
        )?;
        note.job = Some(h.id.clone());
        let o = h.wait().await;
        outcome_reply(o).map(|_| Reply::Ok(json!({"deleted": m.id, "source": m.source.name})))
    }
    .await;
    finish(&api, &caller, "delete", note, r).await
}

async fn prune(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let mut note = Note::default();
    let r = async {
        body::query(req.uri().query(), &[])?;
        let mut f = body::json_object(req).await?;
        let dry_run = f.bool("dry_run").unwrap_or(false);
        f.finish()?;
        note.params.insert("dry_run".into(), json!(dry_run));
        if dry_run {
            // A preview reads the whole repository (on S3, billed requests): within the rate
            // like any work, and identical previews share one run (single flight).
            api.check_rate(&caller)?;
            let h = api.engine.submit(Command::Prune { dry_run: true })?;
            note.job = Some(h.id.clone());
            let o = h.wait().await;
            // A preview that ran is answered with its report, also when it says pack
            // collection would be skipped (`gc_skipped`): that is its finding, not a server
            // error.
            if matches!(o.result, Some(crate::engine::JobResult::Prune(_))) {
                return Ok(Reply::Ok(json_of(&o.result)?));
            }
            return outcome_reply(o);
        }
        if caller.role < Role::Admin {
            return Err(ApiError::forbidden(format!(
                "a prune needs the admin role ({} has {}); a dry run (\"dry_run\": true) needs viewer",
                caller.name,
                caller.role.as_str()
            )));
        }
        accept(&api, &caller, Command::Prune { dry_run: false })
    }
    .await;
    finish(&api, &caller, "prune", note, r).await
}

/// `GET /v1/drills`: every drill report in the repository, oldest first.
async fn list_drills(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    body::query(q.as_deref(), &[])?;
    let snap = snapshot(&api).await?;
    let all: Vec<&crate::core::drill::DrillReport> = snap.drills.iter().map(|d| &**d).collect();
    Ok(Reply::Ok(json_of(&all)?))
}

/// `POST /v1/drills`: `{"source", "backup", "at"}` (all optional) → 202 with the job. The
/// daemon drills with its own key and scratch server.
async fn start_drill(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let mut note = Note::default();
    let r = async {
        body::query(req.uri().query(), &[])?;
        let mut f = body::json_object(req).await?;
        let cfg = api.engine.config();
        let source = f.string("source");
        let backup = f.string("backup");
        let at = f.string("at");
        if let Some(s) = &source {
            if cfg.source(s).is_err() {
                f.error("source", format!("no source {}", printable(s)));
            }
        }
        let at = match at.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
            None => None,
            Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
            Some(Err(_)) => {
                f.error("at", "expected RFC 3339, e.g. 2026-12-01T03:00:00Z");
                None
            }
        };
        if backup.is_some() && at.is_some() {
            f.error("at", "give backup or at, not both");
        }
        f.finish()?;
        let backup = match backup {
            Some(id) => Some(resolve(&*snapshot(&api).await?, &id)?.id.clone()),
            None => None,
        };
        note.target = source.clone();
        note.params.insert("backup".into(), json!(backup));
        note.params.insert("at".into(), json!(at));
        accept(
            &api,
            &caller,
            Command::Drill(crate::engine::DrillRequest {
                source,
                backup,
                at,
                target: None,
                identity: None,
                actor: format!("{} (control API)", caller.name),
            }),
        )
    }
    .await;
    finish(&api, &caller, "drill", note, r).await
}

/// Job records as `caller` may see them: below admin, errors without PostgreSQL's DETAIL and
/// CONTEXT lines (they can quote row data).
fn jobs_for(
    caller: &Caller,
    mut records: Vec<crate::engine::history::JobRecord>,
) -> Vec<crate::engine::history::JobRecord> {
    if caller.role < Role::Admin {
        for r in &mut records {
            if let Some(e) = &r.error {
                r.error = Some(crate::present::without_row_data(e));
            }
        }
    }
    records
}

async fn list_jobs(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Result<Reply, ApiError> {
    let q = body::query(q.as_deref(), &["limit"])?;
    let limit = match q.get("limit") {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::field("query.limit", "expected 1 to 10000"))?,
    };
    let mut history = api.engine.history();
    let skip = history.len().saturating_sub(limit);
    let history = jobs_for(&caller, history.split_off(skip));
    Ok(Reply::Ok(json!({
        "running": json_of(&api.engine.live_jobs())?,
        "history": json_of(&history)?,
    })))
}

async fn show_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Reply, ApiError> {
    body::query(q.as_deref(), &[])?;
    let live = api.engine.live_jobs().into_iter().find(|j| j.id == id);
    let record = api.engine.history().into_iter().rev().find(|j| j.id == id);
    let record = record.and_then(|r| jobs_for(&caller, vec![r]).pop());
    if live.is_none() && record.is_none() {
        return Err(ApiError::not_found(format!(
            "no job {}: GET /v1/jobs lists them",
            printable(&id)
        )));
    }
    Ok(Reply::Ok(json!({
        "live": json_of(&live)?,
        "record": json_of(&record)?,
    })))
}

async fn cancel_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let mut note = Note {
        target: Some(printable(&id)),
        ..Default::default()
    };
    let r = async {
        body::query(req.uri().query(), &[])?;
        body::json_object(req).await?.finish()?;
        if api.engine.cancel(&id) {
            note.job = Some(id.clone());
            Ok(Reply::Ok(json!({"job": id, "cancelled": true})))
        } else {
            Err(ApiError::not_found(format!(
                "no queued or running job {}",
                printable(&id)
            )))
        }
    }
    .await;
    finish(&api, &caller, "cancel", note, r).await
}

/// `GET /v1/events`: the engine's events as Server-Sent Events (`event:` is the type), with
/// keep-alives. A client that falls more than the engine's buffer behind gets one `lagged`
/// event and the stream ends: a slow client never slows the engine.
async fn events(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    body::query(q.as_deref(), &[])?;
    let slot = api
        .streams
        .take(format!("{}:{}", caller.via, caller.name))
        .ok_or_else(|| {
            // A stream's place comes back when its client is noticed gone (the next
            // keep-alive, every 5 s).
            let mut e = ApiError::rate_limited(5);
            e.message = format!(
                "{} holds {} event streams open already: close one first",
                caller.name,
                super::MAX_STREAMS_PER_CALLER
            );
            e
        })?;
    let rx = api.engine.subscribe();
    let stop = api.stopping.clone();
    let admin = caller.role >= Role::Admin;
    let stream = futures::stream::unfold(Some(rx), move |state| async move {
        let mut rx = state?;
        match rx.recv().await {
            Ok(e) => {
                let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
                if !admin {
                    for k in ["error", "message"] {
                        if let Some(Value::String(t)) = v.get_mut(k) {
                            *t = crate::present::without_row_data(t);
                        }
                    }
                }
                let kind = v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("event")
                    .to_string();
                let ev = SseEvent::default().event(kind).data(v.to_string());
                Some((Ok::<_, std::convert::Infallible>(ev), Some(rx)))
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let ev = SseEvent::default()
                    .event("lagged")
                    .data(json!({"type": "lagged", "missed": n}).to_string());
                Some((Ok(ev), None))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    })
    .take_until(async move { stop.cancelled().await })
    // The place is given back when the stream ends or its client goes.
    .map(move |e| {
        let _ = &slot;
        e
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(5))))
}

async fn audit(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let q = body::query(q.as_deref(), &["since"])?;
    let since = match q.get("since") {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    ApiError::field(
                        "query.since",
                        "expected RFC 3339, e.g. 2026-12-01T03:00:00Z",
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    let lines = match &api.audit {
        Some(a) => {
            let log = a.log().clone();
            tokio::task::spawn_blocking(move || log.read(since))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))??
        }
        None => vec![],
    };
    Ok(Reply::Ok(json_of(&lines)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `(method, path) → x-role` of every operation in `assets/openapi.yaml` (path keys at two
    /// spaces under `paths:`, methods at four, their fields at six).
    fn documented() -> BTreeMap<(String, String), Option<String>> {
        let doc = include_str!("../../assets/openapi.yaml");
        let mut out = BTreeMap::new();
        let mut in_paths = false;
        let mut path = None;
        let mut op: Option<(String, String)> = None;
        for line in doc.lines() {
            if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
                in_paths = line.starts_with("paths:");
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(p) = line.strip_prefix("  /") {
                path = Some(format!("/{}", p.trim_end().trim_end_matches(':')));
                op = None;
            } else if let Some(m) = line.strip_prefix("    ").filter(|m| !m.starts_with(' ')) {
                let m = m.trim_end().trim_end_matches(':');
                op = None;
                if ["get", "post", "put", "delete", "patch", "head", "options"].contains(&m) {
                    if let Some(p) = &path {
                        let key = (m.to_uppercase(), p.clone());
                        out.insert(key.clone(), None);
                        op = Some(key);
                    }
                }
            } else if let Some(role) = line.strip_prefix("      x-role: ") {
                if let Some(k) = &op {
                    out.insert(k.clone(), Some(role.trim().to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn openapi_document_lists_exactly_the_served_routes_and_roles() {
        let served: BTreeMap<(String, String), Option<String>> = ROUTES
            .iter()
            .map(|r| {
                (
                    (r.method.to_string(), r.path.to_string()),
                    Some(r.role.as_str().to_string()),
                )
            })
            .collect();
        let doc = documented();
        let missing: Vec<_> = served.keys().filter(|k| !doc.contains_key(*k)).collect();
        let extra: Vec<_> = doc.keys().filter(|k| !served.contains_key(*k)).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
        for (k, role) in &served {
            assert_eq!(&doc[k], role, "x-role of {k:?}");
        }
    }
}
