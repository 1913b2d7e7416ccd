//! A drill report as the console shows it: its lines, used by the report dialog (view) and by
//! its scrolling (app), which must agree on how many there are.

use crate::core::drill::{DrillReport, DrillResult, Outcome};
use crate::present::{age, span};
use crate::units::duration_ms;

/// A drill result as a symbol and a word.
pub fn drill_word(r: DrillResult) -> (&'static str, &'static str) {
    match r {
        DrillResult::Passed => ("✔", "passed"),
        DrillResult::Failed => ("✗", "failed"),
        DrillResult::NotRun => ("⚠", "not run"),
        DrillResult::Interrupted => ("■", "interrupted"),
    }
}

/// A drill report as lines for the report dialog.
pub fn report_lines(r: &DrillReport) -> Vec<String> {
    let (sym, word) = drill_word(r.result);
    let mut l = vec![
        format!("{sym} {} — {}", word.to_uppercase(), r.summary),
        String::new(),
        format!(
            "Backup   {} ({}{})",
            r.backup_id.as_deref().unwrap_or("none chosen"),
            r.source,
            r.backup_proven
                .as_deref()
                .map(|p| format!(", proven: {p}"))
                .unwrap_or_default()
        ),
        format!(
            "Run by   {} on {} · {}",
            r.actor,
            r.host,
            r.started_at.format("%Y-%m-%d %H:%M UTC")
        ),
    ];
    let obj = |met: Option<bool>, target: Option<i64>| match (met, target) {
        (Some(true), Some(t)) => format!(" ✔ within {}", span(t)),
        (Some(false), Some(t)) => format!(" ✗ MISSED {}", span(t)),
        _ => String::new(),
    };
    l.push(format!(
        "RTO      {}{} (restore alone {})",
        r.rto_ms.map(duration_ms).unwrap_or_else(|| "—".into()),
        obj(r.rto_met(), r.rto_target_s),
        r.restore_ms.map(duration_ms).unwrap_or_else(|| "—".into())
    ));
    l.push(format!(
        "RPO      {}{}",
        r.rpo_s.map(|x| age(x.max(0))).unwrap_or_else(|| "—".into()),
        obj(r.rpo_met(), r.rpo_target_s)
    ));
    l.push(String::new());
    l.push("Steps".into());
    for s in &r.steps {
        l.push(format!(
            "  {} {:<20} {:>7}  {}",
            s.outcome.symbol(),
            s.name,
            duration_ms(s.duration_ms),
            s.detail
        ));
    }
    if !r.checks.is_empty() {
        l.push(String::new());
        l.push("Checks".into());
        for c in &r.checks {
            let detail = match (&c.expect, c.outcome) {
                (Some(e), Outcome::Passed) => {
                    format!("{} (expected {e})", c.value.as_deref().unwrap_or("NULL"))
                }
                _ => c.detail.clone(),
            };
            l.push(format!(
                "  {} {} [{}] {detail}",
                c.outcome.symbol(),
                c.name,
                c.kind
            ));
        }
    }
    l.push(String::new());
    l.push(format!("Report {} · keepsake drills lists it", r.id));
    l
}

/// Report lines in sight at a terminal height: the dialog sits below the header and tabs and
/// above the status and key lines, inside its border, above its own hint line.
pub fn report_room(terminal_height: u16) -> usize {
    usize::from(terminal_height.saturating_sub(8)).max(3)
}

/// The furthest a report scrolls at a terminal height: its last page in sight.
pub fn max_scroll(r: &DrillReport, terminal_height: u16) -> usize {
    report_lines(r)
        .len()
        .saturating_sub(report_room(terminal_height))
}
