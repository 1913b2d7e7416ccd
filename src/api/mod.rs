//! The control API (docs/api.md): JSON over HTTP/1.1, served by the daemon on a Unix socket
//! and, when configured, on TCP with bearer tokens. A face of the engine: every request
//! becomes an engine query or [`Command`](crate::engine::Command); nothing here decides what
//! an operation means.
//!
//! Module map: `server` — listeners, connections, timeouts, the connection cap; `auth` — who
//! is calling; `routes` — the route table (method, path, role) and the handlers; `reply` —
//! successful answers, and `finish`, which writes the audit line of a changing request;
//! `body` — input limits and validation; `error` — the one error shape; `metrics` —
//! Prometheus text; `config_edit` — `PUT /v1/config` as a merge patch written with its
//! comments kept. The caller's side is not part of the API: it lives in `engine::client`
//! (re-exported here for tests and benchmarks).
//!
//! Invariants:
//! - Every request is authenticated before anything else (an unknown route answers 401/403
//!   to a stranger, 404 only to a caller), then checked against its route's role.
//! - A refused request changes nothing; every request that changes something or is refused
//!   leaves an audit line (without secrets: only validated fields are recorded).
//! - Answers come from the engine's cached view, never a repository listing per request.

pub mod auth;
pub mod body;
/// The caller's side lives with the engine (the console attaches through it); re-exported for
/// tests and benchmarks that speak HTTP to the daemon.
pub use crate::engine::client;
pub mod config_edit;
pub mod error;
pub mod metrics;
pub mod reply;
pub mod routes;
pub mod server;

use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Rate;
use crate::engine::audit::{AuditWriter, Entry};
use crate::engine::Engine;
use auth::{Caller, Peer};
use error::ApiError;

pub use server::{serve, Server};

/// The state every handler shares.
#[derive(Clone)]
pub struct Api {
    pub engine: Engine,
    pub audit: Option<AuditWriter>,
    limiter: Arc<Mutex<(Rate, Arc<DefaultKeyedRateLimiter<String>>)>>,
    /// One configuration change at a time.
    pub config_lock: Arc<tokio::sync::Mutex<()>>,
    pub stopping: tokio_util::sync::CancellationToken,
    pub started: std::time::Instant,
    /// `GET /v1/backups` serialized for one snapshot and source filter.
    pub list_cache: ListCache,
    /// Open event streams per caller (`via:name`), at most [`MAX_STREAMS_PER_CALLER`] each.
    pub streams: Places<String>,
    /// Unauthenticated refusals per peer: the first of each minute is audited, the rest counted
    /// and summarized in one line (a flood of bad tokens cannot flood the audit log).
    strangers: Arc<Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>>,
}

/// The window in which unauthenticated refusals from one peer share one audit line.
const STRANGER_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Event streams one caller may hold open at once (a console needs one).
pub const MAX_STREAMS_PER_CALLER: usize = 8;

/// Places per key (a caller's event streams, a peer's connections), at most a fixed number
/// each; a place is given back when its [`Place`] is dropped.
#[derive(Clone)]
pub struct Places<K: std::hash::Hash + Eq + Clone>(
    Arc<Mutex<std::collections::HashMap<K, usize>>>,
    usize,
);

/// One taken place of [`Places`].
pub struct Place<K: std::hash::Hash + Eq + Clone>(Places<K>, K);

impl<K: std::hash::Hash + Eq + Clone> Places<K> {
    pub fn new(max: usize) -> Self {
        Places(Default::default(), max)
    }

    /// A place for `key`, or `None` when it holds the most already.
    pub fn take(&self, key: K) -> Option<Place<K>> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(key.clone()).or_default();
        if *n >= self.1 {
            return None;
        }
        *n += 1;
        Some(Place(self.clone(), key))
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        if let Ok(mut m) = (self.0).0.lock() {
            if let Some(n) = m.get_mut(&self.1) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.1);
                }
            }
        }
    }
}

/// See [`Api::list_cache`].
pub type ListCache = Arc<
    Mutex<
        Option<(
            Arc<crate::engine::view::Snapshot>,
            Option<String>,
            bytes::Bytes,
        )>,
    >,
>;

fn limiter(rate: Rate) -> Arc<DefaultKeyedRateLimiter<String>> {
    let count = std::num::NonZeroU32::new(rate.count).unwrap_or(std::num::NonZeroU32::MIN);
    let period = rate.per / rate.count.max(1);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(count);
    Arc::new(governor::RateLimiter::keyed(quota))
}

impl Api {
    pub fn new(
        engine: Engine,
        audit: Option<AuditWriter>,
        stopping: tokio_util::sync::CancellationToken,
    ) -> Self {
        let rate = engine.config().api.trigger_rate;
        Api {
            engine,
            audit,
            limiter: Arc::new(Mutex::new((rate, limiter(rate)))),
            config_lock: Default::default(),
            stopping,
            started: std::time::Instant::now(),
            list_cache: Default::default(),
            streams: Places::new(MAX_STREAMS_PER_CALLER),
            strangers: Default::default(),
        }
    }

    /// `[api] trigger_rate` for requests that start work, per caller: 429 with the seconds
    /// until the next one is allowed.
    pub fn check_rate(&self, caller: &Caller) -> Result<(), ApiError> {
        let rate = self.engine.config().api.trigger_rate;
        let lim = {
            let mut g = match self.limiter.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if g.0 != rate {
                *g = (rate, limiter(rate));
            }
            g.1.clone()
        };
        let key = format!("{}:{}", caller.via, caller.name);
        lim.check_key(&key).map_err(|not_until| {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            ApiError::rate_limited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        })
    }

    /// Audit a refusal of an unauthenticated request from `peer`: the first in a minute as
    /// itself; later ones counted, and written as one summary line when the minute is over (or
    /// every 1,000).
    async fn record_stranger(&self, peer: &str, entry: Entry) {
        let now = std::time::Instant::now();
        let summary = {
            let mut m = match self.strangers.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            if m.len() > 10_000 {
                m.retain(|_, (t, n)| *n > 0 || now.duration_since(*t) < STRANGER_WINDOW);
            }
            match m.get_mut(peer) {
                Some((start, n)) if now.duration_since(*start) < STRANGER_WINDOW && *n < 1000 => {
                    *n += 1;
                    return;
                }
                Some((start, n)) => {
                    let (since, count) = (*start, *n);
                    *start = now;
                    *n = 0;
                    (count > 0).then_some((since, count))
                }
                None => {
                    m.insert(peer.to_string(), (now, 0));
                    None
                }
            }
        };
        if let Some((since, count)) = summary {
            let mut s = entry.clone();
            s.outcome = "refused".into();
            s.reason = Some(format!(
                "{count} more unauthenticated requests from {peer} refused in the {}s before this one (summarized: only the first of each minute is written)",
                now.duration_since(since).as_secs()
            ));
            s.action = "summary".into();
            self.record(s).await;
        }
        self.record(entry).await;
    }

    /// Append an audit line through the one writer (the request waits for it; no worker
    /// does); a failure to write it is logged (the request already happened).
    pub async fn record(&self, entry: Entry) {
        if let Some(a) = &self.audit {
            if let Err(e) = a.append(entry).await {
                tracing::error!("could not write the audit log: {e}");
            }
        }
    }
}

/// What an audited request did, filled in by its handler.
#[derive(Debug, Default)]
pub struct Note {
    pub target: Option<String>,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub job: Option<String>,
}

/// The audit line of a request refused before its handler ran.
/// [`refusal`] of an authenticated caller.
fn caller_refusal(c: &Caller, action: &str, e: &ApiError) -> Entry {
    refusal(c.name.clone(), c.role.as_str(), c.via, action, e)
}

fn refusal(actor: String, role: &str, via: &str, action: &str, e: &ApiError) -> Entry {
    Entry {
        actor,
        role: role.into(),
        via: via.into(),
        action: action.into(),
        target: None,
        params: serde_json::Value::Null,
        outcome: "refused".into(),
        code: e.status.as_u16(),
        job: None,
        reason: Some(e.message.clone()),
    }
}

/// Authenticate, check the route's role, refuse while stopping; audit refusals.
async fn guard(
    State(api): State<Api>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<Peer>()
        .cloned()
        .unwrap_or(Peer::Unix { uid: None });
    let cfg = api.engine.config();
    let route = matched
        .as_ref()
        .and_then(|p| routes::find(req.method(), p.as_str()));
    let action = route.map(|r| r.action).unwrap_or("unknown");
    let changing = !matches!(*req.method(), Method::GET | Method::HEAD);
    let caller = match auth::caller(&peer, req.headers(), &cfg.api) {
        Ok(c) => c,
        Err(e) => {
            let (actor, via) = match &peer {
                Peer::Unix { uid } => (
                    uid.map(crate::engine::audit::user_name)
                        .unwrap_or_else(|| "unknown".into()),
                    "socket",
                ),
                Peer::Tcp { addr } => (format!("token? from {}", addr.ip()), "tcp"),
            };
            let key = format!("{via}:{actor}");
            api.record_stranger(&key, refusal(actor, "none", via, action, &e))
                .await;
            return e.into_response();
        }
    };
    let refuse = |e: ApiError| {
        let api = api.clone();
        let caller = caller.clone();
        async move {
            if changing || e.status == StatusCode::FORBIDDEN {
                api.record(caller_refusal(&caller, action, &e)).await;
            }
            e.into_response()
        }
    };
    // Fail closed: a path of the table without a route for this method is refused here, before
    // any handler (or axum's implicit HEAD) can run.
    if let (None, Some(p)) = (route, matched.as_ref()) {
        let needs = routes::path_role(p.as_str()).unwrap_or(crate::model::Role::Admin);
        if caller.role < needs {
            return refuse(ApiError::forbidden(format!(
                "{} needs the {} role; {} has {}",
                p.as_str(),
                needs.as_str(),
                caller.name,
                caller.role.as_str()
            )))
            .await;
        }
        return refuse(ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED)).await;
    }
    if let Some(r) = route {
        if caller.role < r.role {
            return refuse(ApiError::forbidden(format!(
                "{} {} needs the {} role; {} has {}",
                r.method,
                r.path,
                r.role.as_str(),
                caller.name,
                caller.role.as_str()
            )))
            .await;
        }
    }
    if changing && api.stopping.is_cancelled() {
        return refuse(ApiError::unavailable("the daemon is shutting down")).await;
    }
    // Fail closed: a change that could not be audited is not made.
    if let (true, Some(a)) = (changing, api.audit.clone()) {
        if let Err(why) = a.check_writable().await {
            tracing::error!("refusing a change that cannot be audited: {why}");
            return ApiError::unavailable(
                "the audit log cannot be written, so nothing is changed until it can: the daemon's log says why (`keepsake audit verify` checks the log)",
            )
            .into_response();
        }
    }
    let who = caller.clone();
    req.extensions_mut().insert(caller);
    let resp = next.run(req).await;
    // A changing request refused before its handler could audit it (a path segment that does
    // not parse, a body over the limit): audited here, so no refusal goes unrecorded.
    if changing && resp.status().is_client_error() && resp.extensions().get::<Audited>().is_none() {
        let e = ApiError::for_status(resp.status());
        api.record(caller_refusal(&who, action, &e)).await;
    }
    resp
}

/// Marks an answer whose handler wrote the request's audit line.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// Answers made outside the handlers (a path that did not parse, a wrong method) get the
/// JSON error shape too.
async fn json_errors(req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (r.status().is_client_error() || r.status().is_server_error()) && !is_json {
        return ApiError::for_status(r.status()).into_response();
    }
    r
}

/// The router: every route of [`routes::ROUTES`], behind the guard.
pub fn router(api: Api) -> axum::Router {
    let mut r = axum::Router::new();
    for route in routes::ROUTES {
        r = r.route(route.path, routes::handler(route));
    }
    r.fallback(|| async { ApiError::for_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async {
            ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// An API on an engine whose repository is never opened (these routes need none).
    fn api() -> Api {
        let (_, recipient) = crate::core::crypto::generate_identity();
        let text = format!(
            "[repository]\nurl = \"file:///nonexistent/keepsake-test\"\n[encryption]\nrecipients = [\"{recipient}\"]\n"
        );
        let cfg = crate::config::parse(std::path::Path::new("/tmp/k.toml"), &text).expect("config");
        Api::new(
            Engine::new(cfg),
            None,
            tokio_util::sync::CancellationToken::new(),
        )
    }

    fn req(method: &str, path: &str, body: &str) -> Request {
        let mut r = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        // root on the socket: admin.
        r.extensions_mut().insert(auth::Peer::Unix { uid: Some(0) });
        r
    }

    /// docs/api.md, "Errors": while the daemon stops, requests that change something get 503
    /// (and change nothing); reads still answer; event streams end.
    #[tokio::test]
    async fn while_stopping_changes_get_503_and_event_streams_end() {
        let api = api();
        let events = router(api.clone())
            .oneshot(req("GET", "/v1/events", ""))
            .await
            .expect("events");
        assert_eq!(events.status(), 200);
        api.stopping.cancel();
        let r = router(api.clone())
            .oneshot(req("POST", "/v1/backups", r#"{"source": "x"}"#))
            .await
            .expect("answer");
        assert_eq!(r.status(), 503);
        let body = r.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["code"], "unavailable", "{v}");
        assert!(api.engine.live_jobs().is_empty(), "nothing was started");
        let r = router(api.clone())
            .oneshot(req("GET", "/v1/info", ""))
            .await
            .expect("answer");
        assert_eq!(r.status(), 200);
        // The open event stream ends (collect returns) instead of hanging.
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            events.into_body().collect(),
        )
        .await
        .expect("the stream ended");
        assert!(all.is_ok());
    }

    /// A client that stops reading never slows the engine: once it is more than the engine's
    /// buffer behind, it gets one `lagged` event and its stream ends.
    #[tokio::test]
    async fn a_client_that_falls_behind_gets_lagged_and_is_dropped() {
        let api = api();
        let events = router(api.clone())
            .oneshot(req("GET", "/v1/events", ""))
            .await
            .expect("events");
        // Nobody reads the body while the engine emits more than it buffers.
        for _ in 0..3000 {
            api.engine.emit(crate::engine::Event::ConfigChanged);
        }
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            events.into_body().collect(),
        )
        .await
        .expect("the stream ended")
        .expect("body")
        .to_bytes();
        let text = String::from_utf8_lossy(&all);
        assert!(text.contains("event: lagged"), "{text}");
        assert!(text.contains("\"missed\":"), "{text}");
        assert!(
            !text.contains("config_changed"),
            "the stream starts past what was missed: {text}"
        );
    }
}
