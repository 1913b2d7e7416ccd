//! The command line's tables and reports: `status`, `list`, `show`, `jobs`, `audit`, `prune`,
//! `drills`. Only the CLI prints them; what several faces show alike stays in `crate::present`.

use crate::core::format::Manifest;
use crate::core::verify::VerifyRecord;
use crate::engine::history::JobRecord;
use crate::engine::{BackupRow, SourceStatus};
use crate::present::{age, capture_state, coverage_lines, human_bytes, span};

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
