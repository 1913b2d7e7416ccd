//! Text and numbers that several faces show alike (the CLI, the console, the demo, the
//! daemon's alerts, the control API): verification words, tables, reports. Sizes, ages and
//! durations are written by `crate::units`, re-exported here. Pure functions of engine values;
//! no I/O.

use crate::core::format::Manifest;
use crate::core::verify::VerifyRecord;
use crate::engine::history::JobRecord;
use crate::engine::{BackupRow, SourceStatus};

pub use crate::units::{age, human_bytes, span};

pub fn status_table(st: &[SourceStatus]) -> String {
    if st.is_empty() {
        return "no sources configured and no backups in the repository\n".into();
    }
    let mut s = format!(
        "{:<14} {:<28} {:<26} {:<14} {:<10}\n",
        "SOURCE", "LAST BACKUP (AGE)", "LAST PROVEN (LEVEL, AGE)", "RPO", "RESTORE"
    );
    let now = chrono::Utc::now();
    for x in st {
        let last = match (&x.last_backup_type, x.last_backup_age_s) {
            (Some(t), Some(a)) => format!("{} ({} ago)", t.as_str(), age(a)),
            _ => "NONE".into(),
        };
        let proven = match (x.last_verified_level, x.last_verified_backup_at) {
            (Some(l), Some(t)) => format!("{l} ({} old)", age((now - t).num_seconds())),
            _ => "NOTHING PROVEN".into(),
        };
        let rpo = match x.rpo_s {
            Some(r) => format!(
                "{} {}",
                span(r),
                if x.rpo_state == "ok" { "ok" } else { "BREACH" }
            ),
            None => "not set".into(),
        };
        let restore = x
            .restore_ms
            .map(|ms| {
                format!(
                    "{:.1}s/{}",
                    ms as f64 / 1000.0,
                    human_bytes(x.restore_measured_bytes.unwrap_or(0))
                )
            })
            .unwrap_or_else(|| "unmeasured".into());
        s.push_str(&format!(
            "{:<14} {:<28} {:<26} {:<14} {:<10}\n",
            x.source, last, proven, rpo, restore
        ));
        if !x.damaged.is_empty() {
            s.push_str(&format!("  DAMAGED: {}\n", x.damaged.join(", ")));
        }
        if let Some(n) = x.next_runs.first() {
            s.push_str(&format!(
                "  next scheduled run {} (run by the daemon)\n",
                n.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        if let Some(c) = &x.capture {
            s.push_str(&match (c.last_commit_at, c.last_commit_age_s) {
                (Some(t), Some(a)) => format!(
                    "  capture (slot {}): restorable to {} ({} ago), {} segment(s); {}\n",
                    c.slot,
                    t.format("%Y-%m-%d %H:%M:%S UTC"),
                    age(a),
                    c.segments,
                    capture_state(c)
                ),
                _ => format!(
                    "  capture (slot {}): nothing captured yet; {}\n",
                    c.slot,
                    capture_state(c)
                ),
            });
        }
        if let Some(j) = &x.last_failed_job {
            s.push_str(&format!(
                "  last {} job {:?} at {}: {}\n",
                j.kind,
                j.status,
                j.started_at.format("%Y-%m-%d %H:%M UTC"),
                j.error
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
    }
    s
}

/// A retention policy in words, one phrase per rule.
pub fn policy_words(p: &crate::model::RetentionPolicy) -> Vec<String> {
    p.words()
}

/// `keepsake audit`: one line per audit record.
pub fn audit_table(lines: &[crate::engine::audit::Line]) -> String {
    if lines.is_empty() {
        return "no audit records yet\n".into();
    }
    let mut s = format!(
        "{:>5} {:<20} {:<16} {:<8} {:<6} {:<14} {:<9} {:>4}  {}\n",
        "SEQ", "TIME (UTC)", "ACTOR", "ROLE", "VIA", "ACTION", "OUTCOME", "CODE", "TARGET / REASON"
    );
    for l in lines {
        let e = &l.entry;
        let what = match (&e.target, &e.reason) {
            (Some(t), Some(r)) => format!("{t}: {r}"),
            (Some(t), None) => t.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => String::new(),
        };
        s.push_str(&format!(
            "{:>5} {:<20} {:<16} {:<8} {:<6} {:<14} {:<9} {:>4}  {}\n",
            l.seq,
            l.time.format("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.role,
            e.via,
            e.action,
            e.outcome,
            e.code,
            what.lines().next().unwrap_or("")
        ));
    }
    s
}

pub fn jobs_table(jobs: &[JobRecord]) -> String {
    if jobs.is_empty() {
        return "no jobs recorded yet\n".into();
    }
    let mut s = format!(
        "{:<30} {:<8} {:<12} {:<12} {:<20} {:>8}  {}\n",
        "JOB", "KIND", "SOURCE", "STATUS", "STARTED (UTC)", "TOOK", "BACKUP / ERROR"
    );
    for j in jobs {
        let took = j
            .finished_at
            .map(|f| {
                format!(
                    "{:.1}s",
                    (f - j.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        let status = j.status.as_str().to_string();
        let what = j
            .error
            .as_deref()
            .map(|e| e.lines().next().unwrap_or("").to_string())
            .or(j.backup_id.clone())
            .unwrap_or_default();
        s.push_str(&format!(
            "{:<30} {:<8} {:<12} {:<12} {:<20} {:>8}  {}\n",
            j.id,
            j.kind,
            j.source.as_deref().unwrap_or("-"),
            status,
            j.started_at.format("%Y-%m-%d %H:%M:%S"),
            took,
            what
        ));
    }
    s
}

/// What a restore-level proof covered beyond the tables: the stand-in roles it made on the
/// scratch server, and what it could not take there.
pub fn coverage_lines(r: &VerifyRecord) -> String {
    let mut s = String::new();
    if !r.stand_in_roles.is_empty() {
        s.push_str(&format!(
            "  proof on a plain server: stand-in roles {} (created for the check, dropped after)\n",
            r.stand_in_roles.join(", ")
        ));
    }
    if !r.not_covered.is_empty() {
        s.push_str(&format!("  not covered: {}\n", r.not_covered.join("; ")));
    }
    s
}

pub fn verify_text(r: &VerifyRecord) -> String {
    let mut s = if !r.ok && r.problems.is_empty() {
        format!(
            "backup {}: NOT PROVEN at {} level (no damage found; passed up to {})",
            r.backup_id,
            r.level.as_str(),
            r.passed.map(|p| p.as_str()).unwrap_or("nothing")
        )
    } else if r.ok {
        format!(
            "backup {}: {} level PASSED in {:.1}s",
            r.backup_id,
            r.level.as_str(),
            r.duration_ms as f64 / 1000.0
        )
    } else {
        format!(
            "backup {}: DAMAGED — {} level failed{}",
            r.backup_id,
            r.level.as_str(),
            r.passed
                .map(|p| format!(" (passed up to {})", p.as_str()))
                .unwrap_or_default()
        )
    };
    if let Some(ms) = r.restore_ms {
        s.push_str(&format!(
            "; restore took {:.1}s ({} tables compared, amcheck {})",
            ms as f64 / 1000.0,
            r.tables_compared,
            r.amcheck.as_deref().unwrap_or("not run")
        ));
    }
    s.push('\n');
    s.push_str(&coverage_lines(r));
    for p in &r.problems {
        s.push_str(&format!("  - {p}\n"));
    }
    if let Some(n) = &r.not_proven {
        s.push_str(&format!("  - {n}\n"));
    }
    s
}

pub fn backup_summary(b: &BackupRow) -> String {
    let ratio = if b.stored_bytes == 0 {
        9999.0
    } else {
        (b.logical_bytes as f64 / b.stored_bytes as f64).min(9999.0)
    };
    format!(
        "{}: {} backup {} in {:.1}s: {} logical, {} stored ({:.1}×), {} tables{}\n",
        b.source,
        b.kind.as_str(),
        b.id,
        (b.finished_at - b.started_at).num_milliseconds() as f64 / 1000.0,
        human_bytes(b.logical_bytes),
        human_bytes(b.stored_bytes),
        ratio,
        b.tables,
        b.based_on
            .as_ref()
            .map(|x| format!(", against full {x}"))
            .unwrap_or_default()
    )
}

pub fn list_table(rows: &[BackupRow]) -> String {
    if rows.is_empty() {
        return "no backups yet: run `keepsake backup`\n".into();
    }
    let mut s = format!(
        "{:<24} {:<14} {:<12} {:<20} {:>8} {:>10} {:>10} {:<9}\n",
        "ID", "SOURCE", "TYPE", "STARTED (UTC)", "TOOK", "LOGICAL", "STORED", "VERIFIED"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<24} {:<14} {:<12} {:<20} {:>7.1}s {:>10} {:>10} {:<9}\n",
            r.id,
            r.source,
            r.kind.as_str(),
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0,
            human_bytes(r.logical_bytes),
            human_bytes(r.stored_bytes),
            r.verified_level
        ));
    }
    s
}

pub fn show_text(m: &Manifest, recs: Option<&Vec<VerifyRecord>>) -> String {
    let mut s = String::new();
    s.push_str(&format!("backup      {}\n", m.id));
    s.push_str(&format!(
        "source      {} ({}){}\n",
        m.source.name,
        m.source.location,
        m.source
            .platform
            .as_deref()
            .and_then(crate::platform::by_name)
            .map(|p| format!(", on {}", p.title))
            .unwrap_or_default()
    ));
    s.push_str(&format!(
        "type        {}{}\n",
        m.kind.as_str(),
        m.based_on
            .as_ref()
            .map(|b| format!(" (against full {b})"))
            .unwrap_or_default()
    ));
    s.push_str(&format!(
        "time        {} → {} ({:.1}s)\n",
        m.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        m.finished_at.format("%H:%M:%S"),
        (m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0
    ));
    s.push_str(&format!(
        "versions    PostgreSQL {}, pg_dump {}, keepsake {}\n",
        m.source.server_version, m.pg_dump_version, m.keepsake_version
    ));
    s.push_str(&format!(
        "size        {} logical, {} stored by this backup ({} new before compression), dedup+compression {:.1}×\n",
        human_bytes(m.logical_bytes),
        human_bytes(m.stored_bytes),
        human_bytes(m.new_raw_bytes),
        m.dedup_ratio().min(9999.0)
    ));
    s.push_str(&format!(
        "layout      {} chunks ({} distinct) in {} packs; {} large objects\n",
        m.stream.len(),
        m.chunks.len(),
        m.packs.len(),
        m.large_objects
    ));
    let (level, at) = crate::core::verify::proven(recs);
    s.push_str(&format!(
        "verified    {level}{}\n",
        at.map(|t| format!(" ({})", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default()
    ));
    if let Some(r) = recs.and_then(|v| v.iter().rev().find(|r| r.restore_ms.is_some())) {
        s.push_str(&format!(
            "restore     measured {:.1}s for {} on {}\n",
            r.restore_ms.unwrap_or(0) as f64 / 1000.0,
            human_bytes(r.logical_bytes),
            r.finished_at.format("%Y-%m-%d %H:%M UTC")
        ));
        // What that proof rested on (stand-in roles) and did not cover.
        s.push_str(&coverage_lines(r));
    }
    for r in recs.into_iter().flatten().filter(|r| r.unreadable) {
        if let Some(why) = &r.not_proven {
            s.push_str(&format!("  unknown: {why}\n"));
        }
    }
    if let Some(r) = recs.and_then(|v| v.iter().rev().find(|r| !r.problems.is_empty())) {
        for p in &r.problems {
            s.push_str(&format!("  damage: {p}\n"));
        }
    }
    s.push_str(&format!(
        "tables      {} ({} sequences recorded)\n",
        m.tables.len(),
        m.facts.sequences.len()
    ));
    let rows: std::collections::BTreeMap<(&str, &str), u64> = m
        .facts
        .tables
        .iter()
        .map(|t| ((t.schema.as_str(), t.name.as_str()), t.rows))
        .collect();
    for t in &m.tables {
        let n = rows
            .get(&(t.schema.as_str(), t.name.as_str()))
            .map(|n| format!("{n} rows"))
            .unwrap_or_else(|| "no data".into());
        s.push_str(&format!(
            "  {:<40} {:>10} {}\n",
            format!("{}.{}", t.schema, t.name),
            human_bytes(t.size_bytes.max(0) as u64),
            n
        ));
    }
    s
}

#[derive(serde::Serialize)]
pub struct ShowJson<'a> {
    #[serde(flatten)]
    row: BackupRow,
    dedup_ratio: f64,
    chunks: usize,
    packs: usize,
    new_raw_bytes: u64,
    large_objects: i64,
    pg_dump_version: &'a str,
    keepsake_version: &'a str,
    source_location: &'a str,
    /// The hosted platform the source lives on (`crate::platform`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a str>,
    table_list: &'a [crate::core::format::TableInfo],
    facts: &'a crate::pg::archive::ArchiveFacts,
    verifications: &'a [VerifyRecord],
}

pub fn show_json<'a>(m: &'a Manifest, recs: Option<&'a Vec<VerifyRecord>>) -> ShowJson<'a> {
    ShowJson {
        row: BackupRow::with_records(m, recs),
        verifications: recs.map(|v| v.as_slice()).unwrap_or(&[]),
        facts: &m.facts,
        dedup_ratio: if m.stored_bytes == 0 {
            0.0
        } else {
            m.dedup_ratio()
        },
        chunks: m.stream.len(),
        packs: m.packs.len(),
        new_raw_bytes: m.new_raw_bytes,
        large_objects: m.large_objects,
        pg_dump_version: &m.pg_dump_version,
        keepsake_version: &m.keepsake_version,
        source_location: &m.source.location,
        platform: m.source.platform.as_deref(),
        table_list: &m.tables,
    }
}

/// A prune's plan and what it did (or would do, for a dry run).
pub fn prune_text(r: &crate::core::prune::PruneReport) -> String {
    let mut s = String::new();
    for d in &r.plan {
        s.push_str(&format!(
            "{} {:<24} {:<14} {}\n",
            if d.keep { "keep  " } else { "forget" },
            d.id,
            d.source,
            d.reasons.join("; ")
        ));
    }
    let verb = if r.dry_run { "would " } else { "" };
    s.push_str(&format!(
        "{verb}forget {} backup(s); {verb}mark {} unreferenced pack(s); {verb}delete {} pack(s) ({}); {} marked pack(s) wait{}\n",
        r.forgotten.len(),
        r.marked.len(),
        r.deleted_packs.len(),
        human_bytes(r.deleted_bytes),
        r.waiting.len(),
        if r.stale_temporaries > 0 {
            format!("; removed {} stale temporary file(s)", r.stale_temporaries)
        } else {
            String::new()
        }
    ));
    if r.forgotten_segments > 0 {
        s.push_str(&format!(
            "{verb}delete {} change segment(s) that no kept backup needs\n",
            r.forgotten_segments
        ));
    }
    if let Some(why) = &r.gc_skipped {
        s.push_str(&format!("packs kept: {why}\n"));
    }
    s
}

/// `keepsake drills`: one line per drill, oldest first.
pub fn drills_table(reports: &[crate::core::drill::DrillReport]) -> String {
    use crate::core::drill::dur;
    if reports.is_empty() {
        return "no drills yet: `keepsake drill` runs one\n".into();
    }
    let mut s = format!(
        "{:<24} {:<12} {:<12} {:<24} {:>10} {:>10}  {}\n",
        "DRILL", "SOURCE", "RESULT", "BACKUP", "RTO", "RPO", "RUN BY"
    );
    for r in reports {
        let mark = |met: Option<bool>| match met {
            Some(false) => " ✗",
            _ => "",
        };
        s.push_str(&format!(
            "{:<24} {:<12} {:<12} {:<24} {:>10} {:>10}  {}@{}\n",
            r.id,
            r.source,
            r.result.as_str(),
            r.backup_id.as_deref().unwrap_or("—"),
            r.rto_ms
                .map(|m| format!("{}{}", dur(m), mark(r.rto_met())))
                .unwrap_or_else(|| "—".into()),
            r.rpo_s
                .map(|x| format!("{}{}", age(x.max(0)), mark(r.rpo_met())))
                .unwrap_or_else(|| "—".into()),
            r.actor,
            r.host
        ));
    }
    s
}

/// `keepsake source check` for people: one line per finding.
pub fn source_check_text(c: &crate::engine::preflight::SourceCheck) -> String {
    let mut s = format!(
        "source {} ({}): {} ({:.1}s)\n",
        c.source,
        c.location,
        if c.ok {
            "a backup can run and reads every row"
        } else {
            "NOT READY"
        },
        c.duration_ms as f64 / 1000.0
    );
    for f in &c.findings {
        s.push_str(&format!(
            "  {} {:<16} {}\n",
            f.status.symbol(),
            f.name,
            f.detail
        ));
    }
    s
}

/// `text` without PostgreSQL's `DETAIL:` and `CONTEXT:` lines, which can quote row data (the
/// key that already exists, the COPY line that failed): what a viewer of job history or events
/// is shown. The operator's log and admins keep them.
pub fn without_row_data(text: &str) -> String {
    let mut dropped = false;
    let mut out: Vec<&str> = vec![];
    for line in text.split('\n') {
        let cut = ["DETAIL:", "CONTEXT:"]
            .iter()
            .filter_map(|m| line.find(m))
            .min();
        match cut {
            Some(i) => {
                dropped = true;
                let kept = line[..i].trim_end();
                if !kept.trim().is_empty() {
                    out.push(kept);
                }
            }
            None => out.push(line),
        }
    }
    let mut s = out.join("\n");
    if dropped {
        s.push_str(" (PostgreSQL's DETAIL and CONTEXT lines, which can quote rows, are in the daemon's log and shown to admins)");
    }
    s
}

/// What a source's change capture is doing, in words: `streaming, lag 2s, WAL held 48.0 MiB`,
/// `retrying: …`, `not running (no daemon streams it)`.
pub fn capture_state(c: &crate::engine::query::CaptureStatus) -> String {
    let mut w = match c.state.as_str() {
        "not running" => "not running (no daemon streams it)".to_string(),
        "retrying" => format!(
            "retrying: {}",
            c.error.as_deref().unwrap_or("the stream failed")
        ),
        other => other.to_string(),
    };
    if let Some(l) = c.lag_seconds {
        w.push_str(&format!(", lag {}", age(l)));
    }
    if let Some(b) = c.wal_retained_bytes {
        w.push_str(&format!(", WAL held {}", human_bytes(b)));
    }
    if let Some(ws) = c
        .wal_status
        .as_deref()
        .filter(|w| !matches!(*w, "reserved" | "extended"))
    {
        w.push_str(&format!(" (wal_status {ws})"));
    }
    w
}

#[cfg(test)]
mod row_data_tests {
    #[test]
    fn detail_and_context_lines_are_left_out() {
        let e = "restore failed: pg_restore: error: COPY failed for table \"guests\": ERROR:  duplicate key value violates unique constraint \"guests_pkey\"\n  DETAIL:  Key (id)=(1) already exists.\n  CONTEXT:  COPY guests, line 1: \"1\tAnn\"";
        let s = super::without_row_data(e);
        assert!(!s.contains("Key (id)") && !s.contains("Ann"), "{s}");
        assert!(
            s.contains("duplicate key value") && s.contains("shown to admins"),
            "{s}"
        );
        assert_eq!(
            super::without_row_data("no details here"),
            "no details here"
        );
    }
}
