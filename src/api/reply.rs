//! How the control API answers a request: a successful [`Reply`], and [`finish`], which
//! records a changing request in the audit log before answering it.
//!
//! Invariant: a handler that audits its request answers through [`finish`], which marks the
//! response (`Audited`) so that the guard does not audit it a second time.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::{Api, Note};
use crate::engine::audit::Entry;

/// A successful answer.
pub enum Reply {
    /// 202 with the job started (and its Location).
    Accepted(String),
    /// 200 with a JSON body.
    Ok(Value),
    /// 200 with a JSON body already serialized (large lists: serialized once).
    Json(bytes::Bytes),
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Ok(v) => Json(v).into_response(),
            Reply::Json(b) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                b,
            )
                .into_response(),
            Reply::Accepted(job) => {
                let mut r = (StatusCode::ACCEPTED, Json(json!({ "job": job }))).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{job}")) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
        }
    }
}

/// Audit a changing request and answer it.
pub async fn finish(
    api: &Api,
    caller: &Caller,
    action: &str,
    note: Note,
    r: Result<Reply, ApiError>,
) -> Response {
    let (outcome, code, job, reason) = match &r {
        Ok(Reply::Accepted(j)) => ("accepted", 202, Some(j.clone()), None),
        Ok(Reply::Ok(_) | Reply::Json(_)) => ("ok", 200, note.job.clone(), None),
        Err(e) => (
            if e.status.is_server_error() {
                "failed"
            } else {
                "refused"
            },
            e.status.as_u16(),
            note.job.clone(),
            Some(e.message.clone()),
        ),
    };
    api.record(Entry {
        actor: caller.name.clone(),
        role: caller.role.as_str().into(),
        via: caller.via.into(),
        action: action.into(),
        target: note.target,
        params: Value::Object(note.params),
        outcome: outcome.into(),
        code,
        job,
        reason,
    })
    .await;
    let mut resp = match r {
        Ok(x) => x.into_response(),
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(super::Audited);
    resp
}
