//! Text and numbers that several faces show alike (the CLI, the console, the demo, the
//! daemon's alerts, the control API): verification words, a backup's summary, the source
//! check, capture's state. Tables only the command line prints are in `cli::tables`. Sizes,
//! ages and durations are written by `crate::units`, re-exported here. Pure functions of
//! engine values; no I/O.

use crate::core::format::Manifest;
use crate::core::verify::VerifyRecord;
use crate::engine::BackupRow;

pub use crate::units::{age, human_bytes, span};

/// A retention policy in words, one phrase per rule.
pub fn policy_words(p: &crate::model::RetentionPolicy) -> Vec<String> {
    p.words()
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
