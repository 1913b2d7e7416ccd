//! The remote [`Control`]: the engine of a running daemon, reached through its control API
//! (docs/architecture.md, "Two implementations of `Control`"; docs/api.md). The console
//! attaches with it (docs/console.md, "Attached or local"): jobs run in the daemon and outlive
//! the console; what the console shows is what the daemon answers.
//!
//! Invariants:
//! - The daemon's event stream (`GET /v1/events`) is open before anything is submitted, so a
//!   job's progress and end are never missed between the `202` and the first event. A job that
//!   ended before its handle was made is found among the recent outcomes kept here.
//! - When the stream breaks (daemon restarted, or this client fell behind: `lagged`), it is
//!   reopened with a short backoff, and every job still awaited is looked up in the daemon's job
//!   history, so a handle never waits forever for an event it missed.
//! - Nothing secret crosses: restores into a source's server name the source
//!   (`target_source`), and the daemon connects with its own credentials for it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::client::{Answer, Client};
use super::control::Control;
use super::control::Link;
use super::history::{JobRecord, JobStatus};
use super::{
    BackupRow, Command, Event, JobHandle, JobInfo, JobOutcome, JobProgress, JobResult,
    RestoreTarget, SourceStatus, VerifyTarget,
};
use crate::core::verify::VerifyRecord;
use crate::error::{Error, Result};
use crate::pg::conninfo::ConnInfo;

/// Outcomes kept for handles made after their job's end event arrived.
const RECENT: usize = 256;
/// How long the verification records are reused when no event said they changed.
const RECORDS_TTL: Duration = Duration::from_secs(30);

/// `GET /v1/info`.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    pub version: String,
    pub host: String,
    pub pid: u32,
    pub repository: String,
    pub sources: Vec<InfoSource>,
    pub policy: Vec<String>,
}

/// One source of `GET /v1/info`.
#[derive(Debug, Clone, Deserialize)]
pub struct InfoSource {
    pub name: String,
    pub server: String,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub sslmode: String,
    pub database: String,
}

type Records = BTreeMap<String, Vec<VerifyRecord>>;

type Senders = (
    watch::Sender<Option<JobProgress>>,
    watch::Sender<Option<JobOutcome>>,
);

#[derive(Default)]
struct Waiting {
    /// Jobs with a handle here, by id.
    handles: HashMap<String, Senders>,
    /// Outcomes of jobs that ended with no handle waiting, newest last.
    recent: VecDeque<JobOutcome>,
}

struct Shared {
    client: Client,
    info: RwLock<Info>,
    events: broadcast::Sender<Event>,
    waiting: Mutex<Waiting>,
    /// The verification records as last read, and when.
    records: tokio::sync::Mutex<Option<(Instant, Arc<Records>)>>,
    records_stale: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
    /// Attached, or unreachable since when (the console's header).
    link: watch::Sender<Link>,
}

/// A daemon's engine, through its control API.
pub struct Remote(Arc<Shared>);

impl Drop for Remote {
    fn drop(&mut self) {
        self.0.stop.cancel();
    }
}

/// The error an answer carries, as the engine's error kinds.
fn answer_error(a: &Answer) -> Error {
    let v = a.json();
    let e = &v["error"];
    let mut msg = e["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("the daemon answered {}", a.status));
    if let Some(fields) = e["fields"].as_array() {
        let named: Vec<String> = fields
            .iter()
            .filter_map(|f| {
                Some(format!(
                    "{}: {}",
                    f["field"].as_str()?,
                    f["reason"].as_str()?
                ))
            })
            .collect();
        if !named.is_empty() {
            msg = format!("{msg} ({})", named.join("; "));
        }
    }
    match a.status {
        404 => Error::NotFound(msg),
        409 => Error::Conflict(msg),
        400 | 413 | 415 | 422 => Error::Usage(msg),
        401 | 403 => Error::Usage(format!("the daemon refused: {msg}")),
        429 => {
            let after = a
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("a while");
            Error::Other(format!("{msg} (try again in {after} s)"))
        }
        _ => Error::Other(format!("the daemon: {msg}")),
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::Other(format!(
            "the daemon's answer to {what} is not what this keepsake ({}) expects: {e}; is the daemon another version?",
            env!("CARGO_PKG_VERSION")
        ))
    })
}

impl Shared {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
        let a = self.client.request(method, path, body).await?;
        if a.status >= 400 {
            return Err(answer_error(&a));
        }
        Ok(a)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let a = self.call("GET", path, None).await?;
        decode(path, &a.body)
    }

    /// Hand an event to whoever waits for it, then to every subscriber.
    fn dispatch(&self, e: Event) {
        match &e {
            Event::Progress(p) => {
                if let Ok(w) = self.waiting.lock() {
                    if let Some((tx, _)) = w.handles.get(&p.job) {
                        tx.send_replace(Some(p.clone()));
                    }
                }
            }
            Event::JobFinished(o) | Event::JobFailed(o) => {
                if matches!(o.kind, "verify" | "backup" | "delete" | "prune") {
                    self.records_stale
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                self.ended(o.clone());
            }
            Event::BackupAdded { .. } | Event::BackupDeleted { .. } => {
                self.records_stale
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        }
        let _ = self.events.send(e);
    }

    fn ended(&self, o: JobOutcome) {
        if let Ok(mut w) = self.waiting.lock() {
            match w.handles.remove(&o.job) {
                Some((_, done)) => {
                    done.send_replace(Some(o));
                }
                None => {
                    w.recent.push_back(o);
                    while w.recent.len() > RECENT {
                        w.recent.pop_front();
                    }
                }
            }
        }
    }

    /// After the stream was lost: jobs awaited here that ended meanwhile end here too.
    async fn catch_up(&self) {
        self.records_stale
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let ids: Vec<String> = match self.waiting.lock() {
            Ok(w) => w.handles.keys().cloned().collect(),
            Err(_) => return,
        };
        for id in ids {
            let Ok(v) = self.get::<Value>(&format!("/v1/jobs/{id}")).await else {
                continue;
            };
            let Ok(Some(r)) = serde_json::from_value::<Option<JobRecord>>(v["record"].clone())
            else {
                continue;
            };
            if r.finished_at.is_some() {
                self.ended(outcome_of(&r));
            }
        }
    }

    /// The event stream broke (`why`): unreachable since now, unless already so (the first
    /// break is the time shown; `why` is the latest).
    fn unreachable(&self, why: &str) {
        self.link.send_modify(|l| match l {
            Link::Unreachable { why: w, .. } => *w = why.to_string(),
            _ => {
                *l = Link::Unreachable {
                    since: chrono::Utc::now(),
                    why: why.to_string(),
                }
            }
        });
    }

    async fn refresh_info(&self) {
        if let Ok(i) = self.get::<Info>("/v1/info").await {
            if let Ok(mut w) = self.info.write() {
                *w = i;
            }
        }
    }

    /// A handle for job `id` started in the daemon.
    fn handle(self: &Arc<Self>, id: String) -> JobHandle {
        let (ptx, prx) = watch::channel(None);
        let (dtx, drx) = watch::channel(None);
        if let Ok(mut w) = self.waiting.lock() {
            match w.recent.iter().position(|o| o.job == id) {
                Some(i) => {
                    let o = w.recent.remove(i);
                    dtx.send_replace(o);
                }
                None => {
                    w.handles.insert(id.clone(), (ptx, dtx));
                }
            }
        }
        let cancel = CancellationToken::new();
        {
            let (me, cancel, mut done, id) =
                (self.clone(), cancel.clone(), drx.clone(), id.clone());
            tokio::spawn(async move {
                let ended = async {
                    while done.borrow_and_update().is_none() {
                        if done.changed().await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => {
                        if let Err(e) = me.call("POST", &format!("/v1/jobs/{id}/cancel"), Some(&json!({}))).await {
                            tracing::warn!("could not cancel job {id} in the daemon: {e}");
                        }
                    }
                    _ = ended => {}
                    _ = me.stop.cancelled() => {}
                }
            });
        }
        JobHandle::from_parts(id, prx, cancel, drx)
    }

    /// A handle for work the daemon answered at once (a dry run, a delete).
    fn done_handle(id: String, o: JobOutcome) -> JobHandle {
        let (_, prx) = watch::channel(None);
        let (_dtx, drx) = watch::channel(Some(o));
        JobHandle::from_parts(id, prx, CancellationToken::new(), drx)
    }
}

/// How a job ended, from its history record (when its end event was missed).
fn outcome_of(r: &JobRecord) -> JobOutcome {
    let ok = r.status == JobStatus::Completed;
    JobOutcome {
        job: r.id.clone(),
        kind: crate::model::words::intern(&r.kind),
        source: r.source.clone(),
        status: r.status,
        exit_code: if ok { 0 } else { 1 },
        error: r.error.clone(),
        error_kind: (!ok).then_some("failed"),
        error_field: None,
        error_refs: None,
        result: None,
    }
}

/// See [`read_stream`].
const STREAM_SILENCE: Duration = Duration::from_secs(15);

/// Read one Server-Sent Events stream to its end, dispatching each event.
async fn read_stream(shared: &Shared, body: hyper::body::Incoming) -> Result<()> {
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    let mut data = String::new();
    loop {
        // The daemon sends a keep-alive every 5 s: silence for longer than three of them is
        // a daemon that hangs or a network that dropped the connection without a word.
        let frame = tokio::select! {
            f = tokio::time::timeout(STREAM_SILENCE, body.frame()) => f.map_err(|_| {
                Error::Other(format!(
                    "the daemon sent nothing for {}s",
                    STREAM_SILENCE.as_secs()
                ))
            })?,
            _ = shared.stop.cancelled() => return Ok(()),
        };
        let Some(frame) = frame else { return Ok(()) };
        let frame = frame.map_err(|e| Error::Other(format!("the daemon's event stream: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    data.clear();
                    if v["type"] == "lagged" {
                        return Err(Error::Other("fell behind the daemon's event stream".into()));
                    }
                    match serde_json::from_value::<Event>(v) {
                        Ok(e) => shared.dispatch(e),
                        Err(e) => tracing::debug!("an event this keepsake does not know: {e}"),
                    }
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
            // `event:`, `id:` and `:` keep-alive comments: the type is inside the data.
        }
        if buf.len() > 1 << 20 {
            return Err(Error::Other(
                "the daemon sent an event line over 1 MiB".into(),
            ));
        }
    }
}

/// Keep the event stream open until the remote is dropped.
async fn stream_task(shared: Arc<Shared>, first: tokio::sync::oneshot::Sender<Result<()>>) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(250);
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let r = shared.client.send("GET", "/v1/events", None).await;
        match r {
            Ok(resp) if resp.status().as_u16() == 200 => {
                backoff = Duration::from_millis(250);
                match first.take() {
                    Some(tx) => {
                        let _ = tx.send(Ok(()));
                    }
                    None => {
                        shared.catch_up().await;
                        shared.refresh_info().await;
                        let i = shared.info.read().map(|i| i.clone()).ok();
                        let (host, pid) = i.map(|i| (i.host, i.pid)).unwrap_or_default();
                        shared.dispatch(Event::Log {
                            job: None,
                            message: format!(
                                "reconnected to the daemon's event stream (host {host}, pid {pid})"
                            ),
                        });
                        shared.link.send_replace(Link::Attached { host, pid });
                    }
                }
                let why = match read_stream(&shared, resp.into_body()).await {
                    Ok(()) => "the daemon closed its event stream".to_string(),
                    Err(e) => e.to_string(),
                };
                if shared.stop.is_cancelled() {
                    return;
                }
                shared.unreachable(&why);
                shared.dispatch(Event::Log {
                    job: None,
                    message: format!("{why}; reconnecting"),
                });
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                shared.unreachable(&format!("the daemon answered {status} to its event stream"));
                if let Some(tx) = first.take() {
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let a = Answer {
                        status,
                        headers: Default::default(),
                        body,
                    };
                    let _ = tx.send(Err(answer_error(&a)));
                    return;
                }
            }
            Err(e) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
                shared.unreachable(&e.to_string());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl Remote {
    /// Attach to the daemon behind `client`: read who it is, open its event stream. Fails
    /// when it does not answer, or refuses this caller.
    pub async fn connect(client: Client) -> Result<Remote> {
        let a = client.get("/v1/info").await?;
        if a.status >= 400 {
            return Err(answer_error(&a));
        }
        let info: Info = decode("/v1/info", &a.body)?;
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            client,
            info: RwLock::new(info.clone()),
            events,
            waiting: Mutex::new(Waiting::default()),
            records: tokio::sync::Mutex::new(None),
            records_stale: std::sync::atomic::AtomicBool::new(true),
            stop: CancellationToken::new(),
            link: watch::channel(Link::Attached {
                host: info.host.clone(),
                pid: info.pid,
            })
            .0,
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(stream_task(shared.clone(), tx));
        match rx.await {
            Ok(Ok(())) => Ok(Remote(shared)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Other(
                "the daemon's event stream could not be opened".into(),
            )),
        }
    }

    /// The daemon as it last described itself.
    pub fn info(&self) -> Info {
        match self.0.info.read() {
            Ok(i) => i.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    async fn started(&self, a: Answer) -> Result<JobHandle> {
        let v = a.json();
        let id = v["job"]
            .as_str()
            .ok_or_else(|| Error::Other("the daemon started a job but did not name it".into()))?;
        Ok(self.0.handle(id.to_string()))
    }
}

#[async_trait]
impl Control for Remote {
    async fn submit(&self, command: Command) -> Result<JobHandle> {
        let s = &self.0;
        match command {
            Command::Backup {
                source,
                kind,
                verify,
            } => {
                let a = s
                    .call(
                        "POST",
                        "/v1/backups",
                        Some(&json!({"source": source, "type": kind, "verify": verify})),
                    )
                    .await?;
                self.started(a).await
            }
            Command::Verify {
                target: VerifyTarget::Id(id),
                level,
            } => {
                let a = s
                    .call(
                        "POST",
                        &format!("/v1/backups/{}/verify", path_part(&id)),
                        Some(&json!({ "level": level })),
                    )
                    .await?;
                self.started(a).await
            }
            Command::Verify { .. } => Err(Error::Usage(
                "the daemon verifies one backup per request: choose a backup".into(),
            )),
            Command::Restore(r) => {
                let mut body = json!({
                    "create": r.create,
                    "clean": r.clean,
                    "confirm": r.confirm,
                    "no_owner": r.no_owner,
                    "no_privileges": r.no_privileges,
                    "jobs": r.jobs,
                });
                // A point in time: the path's backup is the dump it starts from.
                if let Some(at) = r.at {
                    body["at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
                }
                if let Some(sel) = &r.selection {
                    // Names cross quoted, so the daemon reads exactly these.
                    let q = crate::pg::client::quote_ident;
                    body["tables"] = json!(sel
                        .tables
                        .iter()
                        .map(|(s, n)| format!("{}.{}", q(s), q(n)))
                        .collect::<Vec<_>>());
                    body["schemas"] = json!(sel.schemas.iter().map(|s| q(s)).collect::<Vec<_>>());
                    body["exclude_schemas"] =
                        json!(sel.exclude_schemas.iter().map(|s| q(s)).collect::<Vec<_>>());
                    body["data_only"] = json!(sel.data_only);
                    body["into_schema"] = json!(sel.into_schema.as_deref().map(q));
                }
                let RestoreTarget { conn, on_source } = &r.target;
                match on_source {
                    Some(src) => {
                        body["target_source"] = json!(src);
                        body["target_database"] = json!(conn.dbname);
                    }
                    None => {
                        // No password crosses the control API.
                        RestoreTarget::refuse_password(conn)?;
                        body["target"] = json!(conn.url_without_password());
                    }
                }
                let a = s
                    .call(
                        "POST",
                        &format!("/v1/backups/{}/restore", path_part(&r.id)),
                        Some(&body),
                    )
                    .await?;
                self.started(a).await
            }
            Command::Prune { dry_run: true } => {
                let a = s
                    .call("POST", "/v1/prune", Some(&json!({"dry_run": true})))
                    .await?;
                let result: JobResult = decode("POST /v1/prune", &a.body)?;
                Ok(Shared::done_handle(
                    "prune-preview".into(),
                    JobOutcome {
                        job: "prune-preview".into(),
                        kind: "prune",
                        source: None,
                        status: JobStatus::Completed,
                        exit_code: 0,
                        error: None,
                        error_kind: None,
                        error_field: None,
                        error_refs: None,
                        result: Some(result),
                    },
                ))
            }
            Command::Prune { dry_run: false } => {
                let a = s
                    .call("POST", "/v1/prune", Some(&json!({"dry_run": false})))
                    .await?;
                self.started(a).await
            }
            Command::Drill(d) => {
                if d.identity.is_some() || d.target.is_some() {
                    return Err(Error::Usage(
                        "the daemon drills with its own key and scratch server: run `keepsake drill` on this host for --identity or --target".into(),
                    ));
                }
                let a = s
                    .call(
                        "POST",
                        "/v1/drills",
                        Some(&json!({"source": d.source, "backup": d.backup, "at": d.at})),
                    )
                    .await?;
                self.started(a).await
            }
            Command::Delete { id, force, confirm } => {
                let (p, c) = (path_part(&id), path_part(&confirm));
                let a = s
                    .call(
                        "DELETE",
                        &format!("/v1/backups/{p}?confirm={c}&force={force}"),
                        None,
                    )
                    .await?;
                let v = a.json();
                let source = v["source"].as_str().unwrap_or_default().to_string();
                let id = v["deleted"].as_str().unwrap_or(&id).to_string();
                Ok(Shared::done_handle(
                    format!("delete-{id}"),
                    JobOutcome {
                        job: format!("delete-{id}"),
                        kind: "delete",
                        source: Some(source.clone()),
                        status: JobStatus::Completed,
                        exit_code: 0,
                        error: None,
                        error_kind: None,
                        error_field: None,
                        error_refs: None,
                        result: Some(JobResult::Delete { id, source }),
                    },
                ))
            }
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.events.subscribe()
    }

    async fn cancel(&self, job: &str) -> Result<bool> {
        match self
            .0
            .call(
                "POST",
                &format!("/v1/jobs/{}/cancel", path_part(job)),
                Some(&json!({})),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, source: Option<&str>) -> Result<(Vec<BackupRow>, Vec<(String, Error)>)> {
        let path = match source {
            Some(s) => format!("/v1/backups?source={}", path_part(s)),
            None => "/v1/backups".into(),
        };
        Ok((self.0.get(&path).await?, vec![]))
    }

    async fn status(&self) -> Result<Vec<SourceStatus>> {
        self.0.get("/v1/status").await
    }

    async fn verifications(&self) -> Result<BTreeMap<String, Vec<VerifyRecord>>> {
        let mut cache = self.0.records.lock().await;
        let stale = self
            .0
            .records_stale
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if let Some((at, r)) = &*cache {
            if !stale && at.elapsed() < RECORDS_TTL {
                return Ok((**r).clone());
            }
        }
        let r: BTreeMap<String, Vec<VerifyRecord>> = self.0.get("/v1/verifications").await?;
        let r = Arc::new(r);
        *cache = Some((Instant::now(), r.clone()));
        Ok((*r).clone())
    }

    async fn inspect_target(&self, source: &str, db: &str) -> Result<super::TargetFacts> {
        self.0
            .get(&format!(
                "/v1/sources/{}/databases/{}",
                path_part(source),
                path_part(db)
            ))
            .await
    }

    async fn source_check(&self, source: &str) -> Result<super::preflight::SourceCheck> {
        self.0
            .get(&format!("/v1/sources/{}/check", path_part(source)))
            .await
    }

    async fn largest_tables(&self, id: &str, n: usize) -> Result<Vec<super::TableSize>> {
        let v: Value = self
            .0
            .get(&format!("/v1/backups/{}", path_part(id)))
            .await?;
        let rows: std::collections::HashMap<String, u64> = v["facts"]["tables"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| {
                        Some((
                            format!("{}.{}", t["schema"].as_str()?, t["name"].as_str()?),
                            t["rows"].as_u64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut out: Vec<super::TableSize> = v["table_list"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| {
                        let (schema, table) = (t["schema"].as_str()?, t["name"].as_str()?);
                        let name = format!("{schema}.{table}");
                        Some(super::TableSize {
                            schema: schema.to_string(),
                            table: table.to_string(),
                            rows: rows
                                .get(&name)
                                .copied()
                                .unwrap_or(t["estimated_rows"].as_i64().unwrap_or(0).max(0) as u64),
                            bytes: t["size_bytes"].as_i64().unwrap_or(0),
                            name,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.rows.cmp(&a.rows)));
        out.truncate(n);
        Ok(out)
    }

    async fn audit_tail(&self, n: usize) -> Result<Option<Vec<super::audit::Line>>> {
        let since = (chrono::Utc::now() - chrono::Duration::days(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self
            .0
            .get::<Vec<super::audit::Line>>(&format!("/v1/audit?since={}", path_part(&since)))
            .await
        {
            Ok(mut lines) => {
                let skip = lines.len().saturating_sub(n);
                Ok(Some(lines.split_off(skip)))
            }
            // Not an admin of the daemon: no audit tail, nothing wrong.
            Err(Error::Usage(m)) if m.starts_with("the daemon refused") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn drills(&self) -> Result<Vec<crate::core::drill::DrillReport>> {
        self.0.get("/v1/drills").await
    }

    async fn live_jobs(&self) -> Result<Vec<JobInfo>> {
        let v: Value = self.0.get("/v1/jobs?limit=1").await?;
        serde_json::from_value(v["running"].clone())
            .map_err(|e| Error::Other(format!("the daemon's running jobs: {e}")))
    }

    async fn jobs(&self) -> Result<Vec<JobRecord>> {
        let v: Value = self.0.get("/v1/jobs?limit=1000").await?;
        serde_json::from_value(v["history"].clone())
            .map_err(|e| Error::Other(format!("the daemon's job history: {e}")))
    }

    fn repository(&self) -> String {
        self.info().repository
    }

    fn link(&self) -> watch::Receiver<Link> {
        self.0.link.subscribe()
    }

    fn mode(&self) -> String {
        let i = self.info();
        format!("daemon attached (host {}, pid {})", i.host, i.pid)
    }

    fn sources(&self) -> Vec<String> {
        self.info().sources.into_iter().map(|s| s.name).collect()
    }

    fn policy_words(&self) -> Vec<String> {
        self.info().policy
    }

    fn source_server(&self, source: &str) -> Option<String> {
        self.info()
            .sources
            .into_iter()
            .find(|s| s.name == source)
            .map(|s| s.server)
    }

    fn restore_target(&self, source: &str, db: &str) -> Result<RestoreTarget> {
        let i = self.info();
        let s = i
            .sources
            .iter()
            .find(|s| s.name == source)
            .ok_or_else(|| Error::NotFound(format!("the daemon has no source {source}")))?;
        crate::pg::conninfo::check_dbname(db).map_err(Error::Usage)?;
        let mut u = url::Url::parse("postgres://localhost/")
            .map_err(|e| Error::Other(format!("internal: {e}")))?;
        u.query_pairs_mut()
            .append_pair("host", &s.host)
            .append_pair("port", &s.port.to_string())
            .append_pair("user", &s.user)
            .append_pair("dbname", db)
            .append_pair("sslmode", &s.sslmode);
        let conn = ConnInfo::parse(u.as_str())
            .map_err(|e| Error::Other(format!("the daemon's source {source}: {e}")))?;
        Ok(RestoreTarget::on_source(source, conn))
    }

    /// Jobs run in the daemon and outlive this console: nothing to end but the stream.
    async fn shutdown(&self, _timeout: Duration) {
        self.0.stop.cancel();
    }
}

/// `s` as one URL path segment or query value.
fn path_part(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_they_were_sent() {
        let row = r#"{"id":"20261202T030012Z-8f3a21","source":"wedsync","type":"full","status":"completed","started_at":"2026-12-02T03:00:12Z","finished_at":"2026-12-02T03:01:00Z","logical_bytes":10,"stored_bytes":5,"verified_level":"data","verified_at":null,"restore_ms":null,"database":"wedsync","server_version":"16.4","based_on":null,"tables":3}"#;
        let e: Event = serde_json::from_str(&format!(
            r#"{{"type":"backup_added","job":"j1","backup":{row}}}"#
        ))
        .unwrap();
        let Event::BackupAdded { backup, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(backup.verified_level, "data");
        assert_eq!(backup.status, "completed");
        // And back: the same JSON.
        let again: Value = serde_json::to_value(&e).unwrap();
        assert_eq!(again["backup"], serde_json::from_str::<Value>(row).unwrap());
        // An unknown word reads as `unknown`, it does not fail the event.
        let e: Event = serde_json::from_str(
            r#"{"type":"job_queued","job":"j2","kind":"snapshot","source":null}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            Event::JobQueued {
                kind: "unknown",
                ..
            }
        ));
        let p: Event = serde_json::from_str(
            r#"{"type":"progress","job":"j3","operation":"backup","source":"w","phase":"dumping","bytes_done":5,"bytes_expected":10,"rate":1.0,"current_table":"public.guests","elapsed_ms":9,"storage_retries":0}"#,
        )
        .unwrap();
        let Event::Progress(p) = p else { panic!() };
        assert_eq!(p.progress.operation, "backup");
        assert_eq!(p.percent(), Some(50.0));
    }

    #[test]
    fn errors_keep_their_kind_and_name_every_field() {
        let a = Answer {
            status: 422,
            headers: Default::default(),
            body: br#"{"error":{"code":"invalid","message":"invalid request","fields":[{"field":"target_database","reason":"required with target_source"}]}}"#
                .as_slice()
                .into(),
        };
        let e = answer_error(&a);
        assert!(matches!(e, Error::Usage(_)), "{e:?}");
        assert!(e.to_string().contains("target_database: required"), "{e}");
        let a = Answer {
            status: 409,
            headers: Default::default(),
            body: br#"{"error":{"code":"conflict","message":"newest proven"}}"#
                .as_slice()
                .into(),
        };
        assert!(matches!(answer_error(&a), Error::Conflict(_)));
    }

    #[test]
    fn a_missed_end_is_found_in_the_history() {
        let r: JobRecord = serde_json::from_value(json!({
            "id": "j9", "kind": "backup", "source": "wedsync", "status": "failed",
            "started_at": "2026-12-02T03:00:00Z", "finished_at": "2026-12-02T03:01:00Z",
            "backup_id": null, "logical_bytes": null, "stored_bytes": null,
            "error": "pg_dump failed", "pid": 1
        }))
        .unwrap();
        let o = outcome_of(&r);
        assert_eq!((o.kind, o.exit_code), ("backup", 1));
        assert_eq!(o.error.as_deref(), Some("pg_dump failed"));
    }
}
