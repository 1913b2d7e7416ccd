//! `GET /metrics`: Prometheus text format (version 0.0.4), from the engine's cached view, the
//! job history and the store's request counters. Names follow Prometheus conventions:
//! `keepsake_` prefix, base units (`_seconds`, `_bytes`), `_total` for counters, timestamps as
//! Unix seconds.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;

use super::error::ApiError;
use super::Api;
use crate::core::verify;
use crate::model::Level;

/// Text being built: one `# HELP`/`# TYPE` per family, then its samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

pub async fn metrics(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    super::body::query(q.as_deref(), &[])?;
    let snap = api.engine.snapshot().await?;
    let status = api.engine.status().await?;
    let mut o = Out(String::new());

    o.family(
        "keepsake_source_last_backup_timestamp_seconds",
        "gauge",
        "When the newest backup of the source finished.",
    );
    for s in &status {
        if let Some(t) = s.last_backup_at {
            o.sample(
                "keepsake_source_last_backup_timestamp_seconds",
                &[("source", &s.source)],
                ts(t),
            );
        }
    }
    o.family(
        "keepsake_source_last_verified_timestamp_seconds",
        "gauge",
        "When the newest backup of the source proven at this level (or higher) finished.",
    );
    for s in &status {
        let mine: Vec<_> = snap
            .manifests
            .iter()
            .filter(|m| m.source.name == s.source)
            .collect();
        for level in [Level::Structure, Level::Data, Level::Restore] {
            let newest = mine.iter().rev().find(|m| {
                let (p, _) = verify::proven(snap.records.get(&m.id));
                p.parse::<Level>().is_ok_and(|p| p >= level)
            });
            if let Some(m) = newest {
                o.sample(
                    "keepsake_source_last_verified_timestamp_seconds",
                    &[("source", &s.source), ("level", level.as_str())],
                    ts(m.finished_at),
                );
            }
        }
    }
    o.family(
        "keepsake_source_rpo_seconds",
        "gauge",
        "The source's recovery-point objective.",
    );
    for s in &status {
        if let Some(r) = s.rpo_s {
            o.sample(
                "keepsake_source_rpo_seconds",
                &[("source", &s.source)],
                r as f64,
            );
        }
    }
    o.family(
        "keepsake_source_rpo_breach",
        "gauge",
        "1 when no backup proven at data level or better is newer than the source's RPO.",
    );
    for s in &status {
        if s.rpo_s.is_some() {
            let v = f64::from(u8::from(s.rpo_state == "breach"));
            o.sample("keepsake_source_rpo_breach", &[("source", &s.source)], v);
        }
    }
    o.family(
        "keepsake_source_damaged_backups",
        "gauge",
        "Backups of the source whose latest verification found damage.",
    );
    for s in &status {
        o.sample(
            "keepsake_source_damaged_backups",
            &[("source", &s.source)],
            s.damaged.len() as f64,
        );
    }
    o.family(
        "keepsake_source_restore_seconds",
        "gauge",
        "Measured recovery time: the restore of the latest restore-level verification.",
    );
    for s in &status {
        if let Some(ms) = s.restore_ms {
            o.sample(
                "keepsake_source_restore_seconds",
                &[("source", &s.source)],
                ms as f64 / 1000.0,
            );
        }
    }
    let mut last: BTreeMap<&str, &crate::core::format::Manifest> = BTreeMap::new();
    for m in &snap.manifests {
        last.insert(&m.source.name, m);
    }
    // Change capture (sources with [sources.capture]): the recovery point it gives, and what
    // its slot costs the server.
    o.family(
        "keepsake_capture_restorable_timestamp_seconds",
        "gauge",
        "How far a point-in-time restore of the source reaches (the last captured commit, or the time the stream is known whole up to).",
    );
    for s in &status {
        if let Some(t) = s.capture.as_ref().and_then(|c| c.last_commit_at) {
            o.sample(
                "keepsake_capture_restorable_timestamp_seconds",
                &[("source", &s.source)],
                ts(t),
            );
        }
    }
    o.family(
        "keepsake_capture_lag_seconds",
        "gauge",
        "Age of the oldest change received and not yet stored in a segment (0: all stored).",
    );
    for s in &status {
        if let Some(l) = s.capture.as_ref().and_then(|c| c.lag_seconds) {
            o.sample(
                "keepsake_capture_lag_seconds",
                &[("source", &s.source)],
                l as f64,
            );
        }
    }
    o.family(
        "keepsake_capture_wal_retained_bytes",
        "gauge",
        "WAL the source's replication slot holds back on its server.",
    );
    for s in &status {
        if let Some(b) = s.capture.as_ref().and_then(|c| c.wal_retained_bytes) {
            o.sample(
                "keepsake_capture_wal_retained_bytes",
                &[("source", &s.source)],
                b as f64,
            );
        }
    }
    o.family(
        "keepsake_capture_streaming",
        "gauge",
        "1 while the daemon streams the source's changes (streaming or lagging), else 0.",
    );
    for s in &status {
        if let Some(c) = &s.capture {
            let v = f64::from(u8::from(matches!(
                c.state.as_str(),
                "streaming" | "lagging"
            )));
            o.sample("keepsake_capture_streaming", &[("source", &s.source)], v);
        }
    }
    o.family(
        "keepsake_source_last_backup_duration_seconds",
        "gauge",
        "How long the newest backup of the source took.",
    );
    for (src, m) in &last {
        let d = (m.finished_at - m.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        o.sample(
            "keepsake_source_last_backup_duration_seconds",
            &[("source", src)],
            d,
        );
    }
    o.family(
        "keepsake_source_last_backup_logical_bytes",
        "gauge",
        "Size of the newest backup's dump before deduplication and compression.",
    );
    for (src, m) in &last {
        o.sample(
            "keepsake_source_last_backup_logical_bytes",
            &[("source", src)],
            m.logical_bytes as f64,
        );
    }
    o.family(
        "keepsake_source_last_backup_stored_bytes",
        "gauge",
        "Bytes the newest backup added to the repository.",
    );
    for (src, m) in &last {
        o.sample(
            "keepsake_source_last_backup_stored_bytes",
            &[("source", src)],
            m.stored_bytes as f64,
        );
    }

    o.family(
        "keepsake_repository_backups",
        "gauge",
        "Backups in the repository.",
    );
    o.sample(
        "keepsake_repository_backups",
        &[],
        snap.manifests.len() as f64,
    );
    o.family(
        "keepsake_repository_unreadable_backups",
        "gauge",
        "Backups whose manifest cannot be read.",
    );
    o.sample(
        "keepsake_repository_unreadable_backups",
        &[],
        snap.unreadable.len() as f64,
    );
    o.family(
        "keepsake_repository_stored_bytes",
        "gauge",
        "Bytes stored by the backups in the repository (sum of what each added).",
    );
    let stored: u64 = snap.manifests.iter().map(|m| m.stored_bytes).sum();
    o.sample("keepsake_repository_stored_bytes", &[], stored as f64);
    o.family(
        "keepsake_repository_logical_bytes",
        "gauge",
        "Logical bytes of the backups in the repository (before deduplication).",
    );
    let logical: u64 = snap.manifests.iter().map(|m| m.logical_bytes).sum();
    o.sample("keepsake_repository_logical_bytes", &[], logical as f64);

    o.family(
        "keepsake_jobs_total",
        "counter",
        "Jobs recorded in the job history, by kind and outcome.",
    );
    let mut jobs: BTreeMap<(String, String), u64> = BTreeMap::new();
    for j in api.engine.history() {
        let status = j.status.as_str().to_string();
        *jobs.entry((j.kind.clone(), status)).or_default() += 1;
    }
    for ((kind, outcome), n) in &jobs {
        o.sample(
            "keepsake_jobs_total",
            &[("kind", kind), ("outcome", outcome)],
            *n as f64,
        );
    }
    o.family(
        "keepsake_jobs_running",
        "gauge",
        "Jobs queued or running now, by kind.",
    );
    let mut live: BTreeMap<&str, u64> = BTreeMap::new();
    let live_jobs = api.engine.live_jobs();
    for j in &live_jobs {
        *live.entry(j.kind).or_default() += 1;
    }
    for (kind, n) in &live {
        o.sample("keepsake_jobs_running", &[("kind", kind)], *n as f64);
    }

    if let Ok(repo) = api.engine.repo().await {
        if let Some(stats) = repo.store().retry_stats() {
            o.family(
                "keepsake_storage_requests_total",
                "counter",
                "Requests to the object store (attempts), by operation.",
            );
            let reqs = stats.requests.lock().map(|m| m.clone()).unwrap_or_default();
            for (op, n) in &reqs {
                o.sample(
                    "keepsake_storage_requests_total",
                    &[("operation", op)],
                    *n as f64,
                );
            }
            o.family(
                "keepsake_storage_retries_total",
                "counter",
                "Object store requests retried after a transient failure.",
            );
            o.sample("keepsake_storage_retries_total", &[], stats.count() as f64);
        }
    }
    o.family(
        "keepsake_daemon_uptime_seconds",
        "gauge",
        "Seconds since the control API started.",
    );
    o.sample(
        "keepsake_daemon_uptime_seconds",
        &[],
        api.started.elapsed().as_secs_f64().floor(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        o.0,
    ))
}
