//! `GET /v1/config` and `PUT /v1/config` (docs/api.md, "Changing the configuration").
//!
//! GET shows the configuration file in effect as JSON with every secret replaced by its
//! `env:`/`file:` reference or `<redacted>` (connection URLs lose their password).
//!
//! PUT takes an RFC 7396 merge patch over the keys that can change at run time — schedules,
//! RPOs, retention, verification, job limits, the trigger rate; sources are keyed by name.
//! Keys that carry connections or secrets (repository, encryption, source URLs, webhooks,
//! tokens) are refused: they are edited in the file. The patched text is validated exactly
//! like `config check`, applied to the engine like SIGHUP, then written atomically with
//! `toml_edit` (comments and order kept). Invariant: a refused PUT leaves the file
//! byte-identical and the running configuration unchanged.

use axum::extract::{Request, State};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};
use toml_edit::{DocumentMut, Item};

use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::reply::{finish, Reply};
use super::{Api, Note};
use crate::error::Error;

/// Keys whose values are secrets: shown as their reference or `<redacted>`.
const SECRET_KEYS: &[&str] = &[
    "password",
    "scratch_password",
    "secret_access_key",
    "session_token",
    "access_key_id",
    "hash",
];

/// The configuration file as JSON, secrets redacted.
pub fn redacted(text: &str) -> Result<Value, ApiError> {
    let t: toml::Table = toml::from_str(text).map_err(ApiError::internal)?;
    let mut v = serde_json::to_value(t).map_err(ApiError::internal)?;
    redact(&mut v, &mut Vec::new());
    Ok(v)
}

fn is_reference(s: &str) -> bool {
    s.starts_with("env:") || s.starts_with("file:")
}

fn redact(v: &mut Value, path: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                path.push(k.clone());
                redact(x, path);
                path.pop();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, path)),
        Value::String(s) => {
            let key = path.last().map(String::as_str).unwrap_or("");
            let in_webhooks = path.iter().any(|p| p == "notifications");
            if is_reference(s) {
                return;
            }
            if SECRET_KEYS.contains(&key) || (key == "url" && in_webhooks) {
                *s = "<redacted>".into();
            } else if key.ends_with("url") && (s.starts_with("postgres") || s.contains('@')) {
                *s = match crate::pg::conninfo::ConnInfo::parse(s) {
                    Ok(ci) => format!(
                        "postgres://{}{}",
                        ci.display(),
                        if ci.password.is_some() {
                            " (password <redacted>)"
                        } else {
                            ""
                        }
                    ),
                    Err(_) => "<redacted>".into(),
                };
            }
        }
        _ => {}
    }
}

pub async fn get_config(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let r = async {
        super::body::query(q.as_deref(), &[])?;
        let path = api.engine.config().path.clone();
        let text = std::fs::read_to_string(&path).map_err(ApiError::internal)?;
        Ok(Reply::Ok(json!({
            "path": path.display().to_string(),
            "config": redacted(&text)?,
        })))
    }
    .await;
    finish(&api, &caller, "config.read", Note::default(), r).await
}

/// Integer keys of `[retention]`.
const RETENTION: &[&str] = &[
    "days",
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "min_verified",
    "prune_grace_hours",
];
/// String keys per section.
const STRINGS: &[(&str, &[&str])] = &[
    ("verification", &["after_backup", "schedule", "timezone"]),
    ("daemon", &["job_timeout", "jitter", "shutdown_timeout"]),
    ("api", &["trigger_rate"]),
];
const SCHEDULE: &[&str] = &["full", "incremental", "differential", "timezone"];

fn not_changeable(errors: &mut Vec<FieldError>, path: &str) {
    errors.push(FieldError {
        field: path.to_string(),
        reason: "not changeable through the API: edit the configuration file and send SIGHUP"
            .into(),
    });
}

fn bad(errors: &mut Vec<FieldError>, path: &str, reason: &str) {
    errors.push(FieldError {
        field: path.to_string(),
        reason: reason.into(),
    });
}

/// Set or (for `null`) remove `key` in `table` from a JSON string or integer.
fn set(
    table: &mut toml_edit::Table,
    key: &str,
    v: &Value,
    integer: bool,
    path: &str,
    errors: &mut Vec<FieldError>,
    changed: &mut Vec<String>,
) {
    let mut nv = match (v, integer) {
        (Value::Null, _) => {
            table.remove(key);
            changed.push(path.to_string());
            return;
        }
        (Value::String(s), false) => toml_edit::Value::from(s.as_str()),
        (Value::Number(n), true) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
            toml_edit::Value::from(n.as_u64().unwrap_or(0) as i64)
        }
        (_, false) => return bad(errors, path, "expected a string or null"),
        (_, true) => return bad(errors, path, "expected a whole number or null"),
    };
    // Keep the comment after the old value (and its spacing).
    if let Some(old) = table.get(key).and_then(Item::as_value) {
        *nv.decor_mut() = old.decor().clone();
    }
    table.insert(key, Item::Value(nv));
    changed.push(path.to_string());
}

fn section<'a>(doc: &'a mut DocumentMut, name: &str) -> Option<&'a mut toml_edit::Table> {
    doc.entry(name)
        .or_insert_with(toml_edit::table)
        .as_table_mut()
}

/// Apply `patch` to `doc`; the keys changed, or every bad field.
pub fn apply(doc: &mut DocumentMut, patch: &Value) -> Result<Vec<String>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut changed = Vec::new();
    let Value::Object(top) = patch else {
        return Err(vec![FieldError {
            field: "body".into(),
            reason: "must be a JSON object (a merge patch)".into(),
        }]);
    };
    for (name, v) in top {
        match name.as_str() {
            "retention" | "verification" | "daemon" | "api" => {
                let Value::Object(m) = v else {
                    bad(&mut errors, name, "expected an object");
                    continue;
                };
                let keys: &[&str] = if name == "retention" {
                    RETENTION
                } else {
                    STRINGS
                        .iter()
                        .find(|(s, _)| s == name)
                        .map(|(_, k)| *k)
                        .unwrap_or(&[])
                };
                let Some(table) = section(doc, name) else {
                    bad(&mut errors, name, "is not a table in the file");
                    continue;
                };
                for (k, x) in m {
                    let path = format!("{name}.{k}");
                    if keys.contains(&k.as_str()) {
                        set(
                            table,
                            k,
                            x,
                            name == "retention",
                            &path,
                            &mut errors,
                            &mut changed,
                        );
                    } else {
                        not_changeable(&mut errors, &path);
                    }
                }
            }
            "sources" => {
                let Value::Object(by_name) = v else {
                    bad(&mut errors, name, "expected an object keyed by source name");
                    continue;
                };
                for (src, x) in by_name {
                    let base = format!("sources.{src}");
                    let table = doc
                        .get_mut("sources")
                        .and_then(Item::as_array_of_tables_mut)
                        .and_then(|a| {
                            a.iter_mut()
                                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(src))
                        });
                    let Some(table) = table else {
                        bad(
                            &mut errors,
                            &base,
                            "no such source (sources are added in the configuration file: they carry connection secrets)",
                        );
                        continue;
                    };
                    let Value::Object(m) = x else {
                        bad(&mut errors, &base, "expected an object");
                        continue;
                    };
                    for (k, y) in m {
                        let path = format!("{base}.{k}");
                        match (k.as_str(), y) {
                            ("rpo", _) => set(table, k, y, false, &path, &mut errors, &mut changed),
                            ("schedule", Value::Null) => {
                                table.remove("schedule");
                                changed.push(path);
                            }
                            ("schedule", Value::Object(s)) => {
                                let Some(st) = table
                                    .entry("schedule")
                                    .or_insert_with(toml_edit::table)
                                    .as_table_mut()
                                else {
                                    bad(&mut errors, &path, "is not a table in the file");
                                    continue;
                                };
                                for (sk, sv) in s {
                                    let p = format!("{path}.{sk}");
                                    if SCHEDULE.contains(&sk.as_str()) {
                                        set(st, sk, sv, false, &p, &mut errors, &mut changed);
                                    } else {
                                        not_changeable(&mut errors, &p);
                                    }
                                }
                            }
                            ("schedule", _) => {
                                bad(&mut errors, &path, "expected an object or null")
                            }
                            _ => not_changeable(&mut errors, &path),
                        }
                    }
                }
            }
            other => not_changeable(&mut errors, other),
        }
    }
    if errors.is_empty() {
        Ok(changed)
    } else {
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        Err(errors)
    }
}

/// A configuration error's key in the patch's terms: `sources[0].rpo` → `sources.wedsync.rpo`.
fn patch_path(doc: &DocumentMut, key: &str) -> String {
    let Some(rest) = key.strip_prefix("sources[") else {
        return key.to_string();
    };
    let Some((i, tail)) = rest.split_once(']') else {
        return key.to_string();
    };
    let name = i.parse::<usize>().ok().and_then(|i| {
        doc.get("sources")
            .and_then(Item::as_array_of_tables)
            .and_then(|a| a.get(i))
            .and_then(|t| t.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
    });
    match name {
        Some(n) => format!("sources.{n}{tail}"),
        None => key.to_string(),
    }
}

/// Write `text` to `path` atomically: a temporary file beside it with the same permissions,
/// synced, renamed over it, the directory synced.
fn write_atomic(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let tmp = dir.join(format!(".{name}.keepsake-{}.tmp", std::process::id()));
    let perms = std::fs::metadata(path)?.permissions();
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.set_permissions(perms)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return res;
    }
    // The rename is done: the new file is in place whether or not the directory syncs.
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!("could not sync {}: {e}", dir.display());
    }
    Ok(())
}

pub async fn put_config(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let mut note = Note::default();
    let r = async {
        super::body::query(req.uri().query(), &[])?;
        let f = super::body::json_object(req).await?;
        let patch = f.into_value();
        let _one_at_a_time = api.config_lock.lock().await;
        let old = api.engine.config();
        let path = old.path.clone();
        let text = std::fs::read_to_string(&path).map_err(ApiError::internal)?;
        let mut doc: DocumentMut = text.parse().map_err(ApiError::internal)?;
        let applied = apply(&mut doc, &patch);
        let keys = match &applied {
            Ok(k) => k.clone(),
            Err(e) => e.iter().map(|f| f.field.clone()).collect(),
        };
        note.params.insert("keys".into(), json!(keys));
        applied.map_err(ApiError::invalid)?;
        let new_text = doc.to_string();
        let new = crate::config::parse(&path, &new_text).map_err(|e| match e {
            Error::Config { key, message, .. } => ApiError::invalid(vec![FieldError {
                field: patch_path(&doc, &key),
                reason: message,
            }]),
            other => ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                other.to_string(),
            ),
        })?;
        api.engine.reconfigure(new).await?;
        if let Err(e) = write_atomic(&path, &new_text) {
            // Keep file and engine in step: back to the configuration still on disk.
            if let Err(back) = api.engine.reconfigure((*old).clone()).await {
                tracing::error!("could not return to the previous configuration: {back}");
            }
            tracing::error!("PUT /v1/config: writing {}: {e}", path.display());
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "config_not_writable",
                format!(
                    "the daemon cannot write its configuration file {} ({}); nothing changed",
                    path.display(),
                    e.kind()
                ),
            ));
        }
        tracing::info!(
            "configuration changed through the API by {}: {}",
            caller.name,
            keys.join(", ")
        );
        Ok(Reply::Ok(json!({
            "changed": keys,
            "config": redacted(&new_text)?,
        })))
    }
    .await;
    finish(&api, &caller, "config.update", note, r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# keepsake
[repository]
url = "file:///r" # where

[[sources]]
name = "wedsync"
url = "postgres://u:pw@h/db"
rpo = "26h" # a day and a bit

[sources.schedule]
full = "0 3 * * 0" # weekly

[[sources]]
name = "other"
url = "postgres://u@h/o"
"#;

    #[test]
    fn patch_keeps_comments_and_changes_only_what_it_names() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        let changed = apply(
            &mut doc,
            &json!({"sources": {"wedsync": {"rpo": "48h", "schedule": {"incremental": "0 * * * *"}}},
                    "retention": {"keep_last": 7}}),
        )
        .unwrap();
        assert_eq!(changed.len(), 3);
        let out = doc.to_string();
        assert!(out.contains("# keepsake") && out.contains("# where") && out.contains("# weekly"));
        assert!(out.contains("rpo = \"48h\" # a day and a bit"), "{out}");
        assert!(out.contains("incremental = \"0 * * * *\""));
        assert!(out.contains("keep_last = 7"));
        assert!(out.contains("name = \"other\""));
    }

    #[test]
    fn secrets_and_unknown_keys_are_refused_by_name() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        let e = apply(
            &mut doc,
            &json!({"repository": {"url": "s3://x"}, "sources": {"wedsync": {"url": "postgres://a:b@c/d"}, "nope": {}},
                    "retention": {"keep_last": "7", "bogus": 1}}),
        )
        .unwrap_err();
        let names: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            names,
            [
                "repository",
                "retention.bogus",
                "retention.keep_last",
                "sources.nope",
                "sources.wedsync.url"
            ]
        );
    }

    #[test]
    fn redaction_hides_passwords() {
        let v = redacted(FILE).unwrap().to_string();
        assert!(!v.contains("pw"), "{v}");
        assert!(v.contains("wedsync"));
    }
}
