//! Drawing: a pure function of the [`App`] state and the clock. Every state is carried by a
//! word or a symbol (✔ ✗ ⚠ ●); colour only adds, and is off with `NO_COLOR`.

use chrono::{DateTime, Utc};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::Frame;

use super::app::{duration, duration_ms, App, Dialog, DrillStep, RestoreStep, SCREENS};
use super::report::{drill_word, report_lines, report_room};
use crate::core::backup_id;
use crate::core::drill::{DrillReport, DrillResult};
use crate::engine::control::{Link, LOST_AFTER};
use crate::engine::SourceStatus;
use crate::present::{age, human_bytes, span};

/// Colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// `NO_COLOR` set (to anything non-empty) turns colour off.
    pub fn from_env() -> Self {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
}

pub use super::app::{MIN_H, MIN_W};

/// Draw the whole console.
pub fn draw(f: &mut Frame, app: &App, now: DateTime<Utc>, t: Theme) {
    let area = f.area();
    if area.width < MIN_W || area.height < MIN_H {
        let msg = format!(
            "keepsake needs a terminal of at least {MIN_W}×{MIN_H} (this one is {}×{}): enlarge the window, or use `keepsake status`",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let status = status_line(app, now);
    let [head, tabs, body, state, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(u16::from(status.is_some())),
        Constraint::Length(1),
    ])
    .areas(area);
    let right = format!("{}  ?:help ", now.format("%H:%M UTC"));
    let room = (head.width as usize).saturating_sub(right.chars().count() + 1);
    let mut left = header_left(app, now, room);
    let pad = (head.width as usize).saturating_sub(left.chars().count() + right.chars().count());
    left.push_str(&" ".repeat(pad));
    f.render_widget(
        Paragraph::new(format!("{left}{right}")).style(t.bold()),
        head,
    );
    let mut spans = vec![Span::raw(" ")];
    for (i, s) in SCREENS.iter().enumerate() {
        let label = format!("{} {s}", i + 1);
        if i == app.screen {
            spans.push(Span::styled(
                format!("[{label}]"),
                t.bold().patch(t.fg(Color::Cyan)),
            ));
        } else {
            spans.push(Span::raw(format!(" {label} ")));
        }
        spans.push(Span::raw(" "));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), tabs);
    match app.screen {
        0 => overview(f, body, app, now, t),
        1 => backups(f, body, app, now, t),
        2 => jobs(f, body, app, now, t),
        3 => retention(f, body, app, t),
        4 => drills(f, body, app, now, t),
        _ => log(f, body, app),
    }
    let keys = if matches!(app.dialog, Some(Dialog::Report { .. })) {
        " j/k ↑/↓ scroll  PgDn/PgUp Ctrl-d/u page  g/G top/end  Esc close".to_string()
    } else if app.filtering {
        format!(
            " filter: {}  Enter keep · Esc clear",
            super::app::with_caret(&app.filter, app.caret)
        )
    } else if !app.filter.is_empty() && !app.detail {
        format!(
            " filter: {}  (Esc clears)  / new filter  ? help",
            app.filter
        )
    } else {
        match app.screen {
            1 => " b backup  v verify  r restore  d delete  / filter  S sort  Enter info  ? help"
                .into(),
            2 => " c cancel job  Enter details  / filter  b backup  q quit".into(),
            3 => " p prune (preview, then confirm)  q quit".into(),
            4 => " D drill (guided)  Enter read the report  j/k move  q quit".into(),
            5 => " / filter the log  b backup  c cancel  ? help  q quit".into(),
            _ => {
                " b backup  v verify  r restore  D drill  p prune  s check  c cancel  q quit".into()
            }
        }
    };
    f.render_widget(Paragraph::new(keys).style(t.fg(Color::DarkGray)), foot);
    if let Some((text, color)) = status {
        f.render_widget(Paragraph::new(format!(" {text}")).style(t.fg(color)), state);
    }
    if let Some(d) = &app.dialog {
        // A report is read at length: it leaves the header, tabs and key line in sight.
        let within = match d {
            Dialog::Report { .. } => Rect {
                height: body.height + state.height,
                ..body
            },
            _ => area,
        };
        dialog(f, within, app, d, now, t);
    }
}

/// The header's left part within `room` characters: the connection in words and the
/// repository; when that does not fit, the connection said short, then the repository's
/// location cut from its start (its end tells repositories apart), never a cut word.
fn header_left(app: &App, now: DateTime<Utc>, room: usize) -> String {
    let full = format!(
        " keepsake · {} · repo {}",
        link_words(app, now),
        app.repository
    );
    if full.chars().count() <= room {
        return full;
    }
    let short = match &app.link {
        Link::Local => "local (no schedules)".to_string(),
        Link::Attached { host, pid } => format!("attached {host} pid {pid}"),
        Link::Unreachable { since, .. } if now - *since > LOST_AFTER => {
            format!("daemon LOST since {}", since.format("%H:%M:%S"))
        }
        Link::Unreachable { since, .. } => {
            format!("daemon unreachable since {}", since.format("%H:%M:%S"))
        }
    };
    let head = format!(" keepsake · {short} · ");
    let left_for_repo = room.saturating_sub(head.chars().count());
    let repo: Vec<char> = app.repository.chars().collect();
    let repo: String = if repo.len() <= left_for_repo {
        repo.into_iter().collect()
    } else {
        let keep = left_for_repo.saturating_sub(1);
        std::iter::once('…')
            .chain(repo[repo.len() - keep..].iter().copied())
            .collect()
    };
    format!("{head}{repo}").chars().take(room).collect()
}

/// The header's words for the connection: local, attached (host, pid), unreachable since
/// (reconnecting), or lost after [`LOST_AFTER`] (still retrying).
fn link_words(app: &App, now: DateTime<Utc>) -> String {
    match &app.link {
        Link::Local => app.mode.clone(),
        Link::Attached { host, pid } => format!("daemon attached (host {host}, pid {pid})"),
        Link::Unreachable { since, .. } if now - *since > LOST_AFTER => {
            format!("daemon LOST since {} · retrying", since.format("%H:%M:%S"))
        }
        Link::Unreachable { since, .. } => format!(
            "daemon unreachable since {} · reconnecting",
            since.format("%H:%M:%S")
        ),
    }
}

/// How long the flash line shows what happened last (see `tui::FLASH`).
const FLASH_SECS: i64 = 8;

/// The line above the keys, on every screen, when there is something to say: the daemon not
/// answering, the repository not readable, what just happened (a few seconds), or else what
/// runs now (not on Overview and Jobs, which list it).
fn status_line(app: &App, now: DateTime<Utc>) -> Option<(String, Color)> {
    if let Link::Unreachable { since, why } = &app.link {
        return Some((
            format!(
                "✗ no answer from the daemon since {} ({why}): running jobs unknown",
                since.format("%H:%M:%S")
            ),
            Color::Red,
        ));
    }
    if let Some(p) = &app.problem {
        return Some((format!("⚠ cannot read the repository: {p}"), Color::Yellow));
    }
    if let Some((at, text)) = &app.flash {
        if (now - *at).num_seconds() < FLASH_SECS {
            let color = if text.starts_with('✗') {
                Color::Red
            } else {
                Color::Cyan
            };
            return Some((text.clone(), color));
        }
    }
    if app.screen == 0 || app.screen == 2 {
        return None;
    }
    let j = app.model.live.first()?;
    let more = match app.model.live.len() {
        1 => String::new(),
        n => format!(" (+{} more: 3 Jobs)", n - 1),
    };
    let what = format!("● {} {}", j.kind, j.source.as_deref().unwrap_or(""));
    let text = match app.progress.get(&j.id) {
        None => format!("{} {:?}{more}", what.trim_end(), j.state).to_lowercase(),
        Some(p) => format!(
            "{} {} {}{}{}{more}",
            what.trim_end(),
            p.progress.phase.as_str(),
            p.percent()
                .map(|x| format!("{x:.0}%"))
                .unwrap_or_else(|| human_bytes(p.progress.bytes_done)),
            if p.progress.rate > 0.0 {
                format!(" · {}/s", human_bytes(p.progress.rate as u64))
            } else {
                String::new()
            },
            p.eta()
                .map(|e| format!(" · ETA {}", duration(e.as_secs())))
                .unwrap_or_default()
        ),
    };
    Some((text, Color::Cyan))
}

/// State of a source in one word and a symbol.
pub fn source_state(s: &SourceStatus) -> (&'static str, &'static str) {
    if !s.damaged.is_empty() {
        ("✗", "damaged")
    } else if s.last_failed_job.is_some() {
        ("✗", "failed")
    } else if s.last_backup_id.is_none() {
        ("✗", "no backup")
    } else if s.rpo_state == "breach" {
        ("⚠", "breach")
    } else if s.last_verified_id.is_none() {
        ("⚠", "not proven")
    } else {
        ("✔", "ok")
    }
}

fn state_style(sym: &str, t: Theme) -> Style {
    match sym {
        "✔" => t.fg(Color::Green),
        "⚠" => t.fg(Color::Yellow),
        _ => t.fg(Color::Red),
    }
}

fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map(|a| format!("{} ago", age((now - a).num_seconds().max(0))))
        .unwrap_or_else(|| "never".into())
}

fn short_type(k: &str) -> &str {
    match k {
        "incremental" => "incr",
        "differential" => "diff",
        o => o,
    }
}

fn overview(f: &mut Frame, area: Rect, app: &App, now: DateTime<Utc>, t: Theme) {
    let m = &app.model;
    let src_lines: u16 = m
        .status
        .iter()
        .map(|s| 1 + u16::from(s.last_failed_job.is_some()) + u16::from(s.capture.is_some()))
        .sum::<u16>()
        .max(1);
    let run_lines = (app.model.live.len() as u16 * 2).max(1);
    let [sources, running, bottom] = Layout::vertical([
        Constraint::Length(src_lines + 3),
        Constraint::Length(run_lines + 2),
        Constraint::Min(4),
    ])
    .areas(area);

    // Wide terminals add, per source, its backups, what they store and the newest one's id
    // (whole, to paste into `keepsake show` or `restore`).
    let wide = area.width >= 140;
    let mut lines = vec![Line::styled(
        format!(
            "{:<11} {:<10} {:<13} {:<15} {:<12} {:<6} {:<6}{}",
            "SOURCE",
            "STATE",
            "LAST BACKUP",
            "PROVEN",
            "RPO",
            "RTO",
            "NEXT",
            if wide {
                format!(" {:>7} {:>10}  {}", "BACKUPS", "STORED", "NEWEST")
            } else {
                String::new()
            }
        ),
        t.bold(),
    )];
    for (i, s) in m.status.iter().enumerate() {
        let (sym, word) = source_state(s);
        let last = match (&s.last_backup_type, s.last_backup_at) {
            (Some(k), at) => format!("{} {}", short_type(k.as_str()), ago(at, now)),
            _ => "none".into(),
        };
        // The age of the newest proven backup's data (as in the details), without "ago"
        // when the column is too narrow for it ("restore 107s ago" ran into RPO).
        let proven = match (s.last_verified_level, s.last_verified_backup_at) {
            (Some(l), at) => {
                let full = format!("{l} {}", ago(at, now));
                if full.chars().count() > 15 {
                    full.trim_end_matches(" ago").to_string()
                } else {
                    full
                }
            }
            _ => "not proven".into(),
        };
        let rpo = match (s.rpo_s, s.rpo_state) {
            (None, _) => "—".to_string(),
            (Some(r), "breach") => format!("BREACH ({})", span(r)),
            (Some(r), _) => format!("ok ({})", span(r)),
        };
        let rto = s.restore_ms.map(duration_ms).unwrap_or_else(|| "—".into());
        let next = s
            .next_runs
            .first()
            .map(|n| n.format("%H:%M").to_string())
            .unwrap_or_else(|| "—".into());
        let name: String = s.source.chars().take(9).collect();
        let mut text = format!("{word:<10} {last:<13} {proven:<15} {rpo:<12} {rto:<6} {next:<6}");
        if wide {
            let mine = m.rows.iter().filter(|b| b.source == s.source);
            let (n, stored) = mine.fold((0, 0u64), |(n, b), r| (n + 1, b + r.stored_bytes));
            let newest = m
                .rows
                .iter()
                .rev()
                .find(|b| b.source == s.source)
                .map(|b| b.id.as_str())
                .unwrap_or("—");
            text.push_str(&format!(" {n:>7} {:>10}  {newest}", human_bytes(stored)));
        }
        let style = if i == app.sel[0] {
            t.selected()
        } else {
            Style::default()
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{sym} "), state_style(sym, t).patch(style)),
            Span::styled(format!("{name:<9} {text}"), style),
        ]));
        if let Some(j) = &s.last_failed_job {
            let e = j
                .error
                .as_deref()
                .unwrap_or("failed")
                .lines()
                .next()
                .unwrap_or("");
            lines.push(Line::raw(format!(
                "    └ {} {}: {e}",
                j.kind,
                ago(j.finished_at.or(Some(j.started_at)), now)
            )));
        }
        // Change capture: how far a point-in-time restore reaches now.
        if let Some(c) = &s.capture {
            lines.push(Line::raw(match c.last_commit_at {
                Some(t) => format!(
                    "    └ capture: restorable to {} ({}) · {}",
                    t.format("%H:%M:%S"),
                    ago(Some(t), now),
                    crate::present::capture_state(c)
                ),
                None => format!(
                    "    └ capture: nothing captured yet · {}",
                    crate::present::capture_state(c)
                ),
            }));
        }
    }
    if m.status.is_empty() {
        lines = vec![Line::raw(
            "no source configured and no backup in the repository",
        )];
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Sources ")),
        sources,
    );

    let mut lines = vec![];
    for j in &app.model.live {
        let p = app.progress.get(&j.id);
        let what = format!("● {} {} ", j.kind, j.source.as_deref().unwrap_or(""));
        if app.unreachable_since().is_some() {
            lines.push(Line::raw(format!("{what} unknown — daemon unreachable")));
            lines.push(Line::raw(""));
            continue;
        }
        match (j.state, p) {
            (crate::engine::JobState::Queued, _) => {
                lines.push(Line::raw(format!(
                    "{what} queued (waiting for a running job of the same source)"
                )));
                lines.push(Line::raw(""));
            }
            (_, None) => {
                lines.push(Line::raw(format!("{what} starting")));
                lines.push(Line::raw(""));
            }
            (_, Some(p)) => {
                let pr = &p.progress;
                let pct = p.percent();
                let bar = bar(pct.unwrap_or(0.0), if wide { 40 } else { 16 });
                lines.push(Line::raw(format!(
                    "{what}{:<10} {} {:>4} {}/s",
                    pr.phase.as_str(),
                    bar,
                    pct.map(|x| format!("{x:.0}%"))
                        .unwrap_or_else(|| "…".into()),
                    human_bytes(pr.rate as u64)
                )));
                lines.push(Line::raw(format!(
                    "    {}{}{}",
                    match pr.bytes_expected {
                        Some(e) => format!("{} of {}", human_bytes(pr.bytes_done), human_bytes(e)),
                        None => human_bytes(pr.bytes_done),
                    },
                    p.eta()
                        .map(|e| format!(" · ETA {}", duration(e.as_secs())))
                        .unwrap_or_default(),
                    pr.current_table
                        .as_deref()
                        .map(|t| format!(" · {t}"))
                        .unwrap_or_default()
                )));
            }
        }
    }
    if lines.is_empty() {
        lines.push(Line::raw("nothing running"));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Running ")),
        running,
    );

    // A tall terminal gives the room under the repository to the latest jobs, newest first.
    let (bottom, recent) = if bottom.height >= 16 {
        let [b, r] = Layout::vertical([Constraint::Length(9), Constraint::Min(4)]).areas(bottom);
        (b, Some(r))
    } else {
        (bottom, None)
    };
    if let Some(r) = recent {
        recent_jobs(f, r, app, now);
    }
    let [repo, spark] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    let logical: u64 = m.rows.iter().map(|b| b.logical_bytes).sum();
    let stored: u64 = m.rows.iter().map(|b| b.stored_bytes).sum();
    let sources_n = {
        let mut s: Vec<&str> = m.rows.iter().map(|b| b.source.as_str()).collect();
        s.sort();
        s.dedup();
        s.len()
    };
    let mut info = vec![
        Line::raw(format!(
            "{} backup{} · {} source{}",
            m.rows.len(),
            if m.rows.len() == 1 { "" } else { "s" },
            sources_n,
            if sources_n == 1 { "" } else { "s" }
        )),
        Line::raw(format!("logical {}", human_bytes(logical))),
        Line::raw(format!(
            "stored  {}{}",
            human_bytes(stored),
            if stored > 0 {
                format!(" ({:.1}× smaller)", logical as f64 / stored as f64)
            } else {
                String::new()
            }
        )),
    ];
    if m.unreadable > 0 {
        info.push(Line::styled(
            format!("✗ {} backup(s) unreadable: keepsake list", m.unreadable),
            t.fg(Color::Red),
        ));
    }
    if let Some(p) = m.history.iter().rev().find(|j| j.kind == "prune") {
        info.push(Line::raw(format!("last prune {}", ago(p.finished_at, now))));
    }
    f.render_widget(
        Paragraph::new(info).block(Block::default().borders(Borders::ALL).title(" Repository ")),
        repo,
    );
    // Each backup's bar as wide as the panel allows (up to 3 columns), newest on the right.
    let room = spark.width.saturating_sub(2) as usize;
    let per = (room / m.rows.len().max(1)).clamp(1, 3);
    let data: Vec<u64> = m
        .rows
        .iter()
        .rev()
        .take(room / per)
        .rev()
        .flat_map(|b| std::iter::repeat_n(b.stored_bytes, per))
        .collect();
    f.render_widget(
        Sparkline::default()
            .data(&data)
            .style(t.fg(Color::Cyan))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Stored per backup "),
            ),
        spark,
    );
}

/// A finished job's symbol: ✔ completed, · cancelled, ● still running, ✗ otherwise.
fn job_symbol(j: &crate::engine::history::JobRecord) -> &'static str {
    use crate::engine::history::JobStatus;
    match j.status {
        JobStatus::Completed => "✔",
        JobStatus::Running => "●",
        JobStatus::Cancelled => "·",
        JobStatus::Failed | JobStatus::Interrupted => "✗",
    }
}

/// How long a job took (`—` while it has no end).
fn job_took(j: &crate::engine::history::JobRecord) -> String {
    j.finished_at
        .map(|f| duration((f - j.started_at).num_seconds().max(0) as u64))
        .unwrap_or_else(|| "—".into())
}

/// A job's error's first line, else the backup it made or used (`id` words its id).
fn job_detail(j: &crate::engine::history::JobRecord, id: impl Fn(&str) -> String) -> String {
    j.error
        .as_deref()
        .map(|e| e.lines().next().unwrap_or("").to_string())
        .or(j.backup_id.as_deref().map(|b| format!("backup {}", id(b))))
        .unwrap_or_default()
}

/// The latest jobs, newest first, one line each (tall terminals' Overview).
fn recent_jobs(f: &mut Frame, area: Rect, app: &App, now: DateTime<Utc>) {
    let room = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .model
        .history
        .iter()
        .rev()
        .filter(|h| !app.model.live.iter().any(|l| l.id == h.id))
        .take(room)
        .map(|j| {
            let (sym, status) = (job_symbol(j), j.status.as_str());
            let detail = job_detail(j, |b| b.to_string());
            let took = job_took(j);
            Line::raw(format!(
                "{sym} {:<11} {:<8} {:<7} {:<12} {:<10} {:>7}  {detail}",
                ago(Some(j.started_at), now),
                j.started_at.format("%H:%M"),
                j.kind,
                job_source(app, j),
                status,
                took
            ))
        })
        .collect();
    let lines = if lines.is_empty() {
        vec![Line::raw("no job has run yet")]
    } else {
        lines
    };
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Latest jobs (3 Jobs has them all) "),
        ),
        area,
    );
}

/// A job's source; for a job that names none (a restore, a verification by id), its backup's.
fn job_source(app: &App, j: &crate::engine::history::JobRecord) -> String {
    j.source
        .clone()
        .or_else(|| {
            let b = j.backup_id.as_deref()?;
            app.model
                .rows
                .iter()
                .find(|r| r.id == b)
                .map(|r| r.source.clone())
        })
        .unwrap_or_else(|| "—".into())
}

/// A finished job in words (3 Jobs, Enter): what, who, when, how long, what it made or why
/// it failed — not its record's JSON (issue 27, item 10).
fn job_lines(app: &App, j: &crate::engine::history::JobRecord, now: DateTime<Utc>) -> Vec<String> {
    let status = j.status.as_str().to_string();
    let mut l = vec![
        format!("job        {}", j.id),
        format!("what       {} of {}", j.kind, job_source(app, j)),
        format!("status     {status}"),
        format!(
            "started    {} ({}){}",
            j.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            ago(Some(j.started_at), now),
            j.started_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        ),
    ];
    if let Some(f) = j.finished_at {
        l.push(format!(
            "took       {}",
            duration((f - j.started_at).num_seconds().max(0) as u64)
        ));
    }
    if let Some(b) = &j.backup_id {
        l.push(format!(
            "backup     {b}{}",
            j.backup_type
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        ));
    }
    if let Some(v) = &j.verification {
        l.push(format!("verified   {v}"));
    }
    match (j.logical_bytes, j.stored_bytes) {
        (Some(lb), Some(sb)) => l.push(format!(
            "size       {} logical, {} stored",
            human_bytes(lb),
            human_bytes(sb)
        )),
        (Some(lb), None) => l.push(format!("size       {}", human_bytes(lb))),
        _ => {}
    }
    if let Some(e) = &j.error {
        l.push(String::new());
        l.push("error".into());
        l.extend(e.lines().map(|x| format!("  {x}")));
    }
    l.push(String::new());
    l.push("Esc back".into());
    l
}

/// A job id as `MM-DD HH:MM suffix` (`20261202T140100.000Z-ee33ff` → `12-02 14:01 ee33ff`):
/// the suffix tells jobs of one minute apart.
pub fn short_job(id: &str) -> String {
    let suffix = id.rsplit('-').next().unwrap_or(id);
    match (
        id.get(4..6),
        id.get(6..8),
        id.get(9..11),
        id.get(11..13),
        id.get(13..15),
    ) {
        (Some(mo), Some(d), Some(h), Some(mi), Some(_)) if id.get(8..9) == Some("T") => {
            format!("{mo}-{d} {h}:{mi} {suffix}")
        }
        _ => id.to_string(),
    }
}

/// A text progress bar (works without colour).
pub fn bar(pct: f64, width: usize) -> String {
    let filled = ((pct / 100.0) * width as f64).round() as usize;
    format!(
        "{}{}",
        "█".repeat(filled.min(width)),
        "░".repeat(width - filled.min(width))
    )
}

fn backups(f: &mut Frame, area: Rect, app: &App, now: DateTime<Utc>, t: Theme) {
    let list = app.backups();
    if app.detail {
        if let Some(b) = list.get(app.sel[1]) {
            let mut lines = vec![
                format!("backup     {}", b.id),
                format!(
                    "source     {} (database {}, PostgreSQL {})",
                    b.source, b.database, b.server_version
                ),
                format!(
                    "type       {}{}",
                    b.kind.as_str(),
                    b.based_on
                        .as_deref()
                        .map(|x| format!(" (based on {x})"))
                        .unwrap_or_default()
                ),
                format!(
                    "taken      {} → {} ({})",
                    b.started_at.format("%Y-%m-%d %H:%M:%S"),
                    b.finished_at.format("%H:%M:%S"),
                    duration((b.finished_at - b.started_at).num_seconds().max(0) as u64)
                ),
                format!(
                    "size       {} logical, {} stored, {} tables",
                    human_bytes(b.logical_bytes),
                    human_bytes(b.stored_bytes),
                    b.tables
                ),
                // One meaning of "proven … ago" on every screen: the age of the backup's
                // data; when the proof ran is said apart.
                match b.verified_at {
                    Some(v) => format!(
                        "proven     {}: data from {}; verified {}",
                        b.verified_level,
                        ago(Some(b.started_at), now),
                        ago(Some(v), now)
                    ),
                    None => format!("proven     {}", b.verified_level),
                },
                format!(
                    "restore    {}",
                    b.restore_ms
                        .map(|ms| format!("{} measured", duration(ms / 1000)))
                        .unwrap_or_else(|| "not measured (verify at restore level)".into())
                ),
            ];
            let started_by = app
                .model
                .history
                .iter()
                .rev()
                .find(|j| j.kind == "backup" && j.backup_id.as_deref() == Some(b.id.as_str()));
            lines.push(format!(
                "started by {}",
                match started_by {
                    Some(j) => format!(
                        "{} (job {})",
                        j.started_by.as_deref().unwrap_or("unknown (older record)"),
                        short_job(&j.id)
                    ),
                    None => "not in this host's job history".into(),
                }
            ));
            match &app.tables {
                Some((id, Ok(ts))) if *id == b.id && !ts.is_empty() => {
                    let cols = if area.width >= 120 { 2 } else { 1 };
                    let cells: Vec<String> = ts
                        .iter()
                        .map(|t| {
                            format!(
                                "{} {} rows {}",
                                t.name,
                                count(t.rows),
                                human_bytes(t.bytes.max(0) as u64)
                            )
                        })
                        .collect();
                    for (i, row) in cells.chunks(cols).enumerate() {
                        lines.push(format!(
                            "{}{}",
                            if i == 0 { "largest    " } else { "           " },
                            row.join(" · ")
                        ));
                    }
                }
                Some((id, Err(e))) if *id == b.id => {
                    lines.push(format!("largest    ✗ cannot read the tables: {e}"))
                }
                Some((id, Ok(_))) if *id == b.id => lines.push("largest    (no tables)".into()),
                _ => lines.push("largest    reading…".into()),
            }
            lines.push(String::new());
            lines.extend(verification_lines(
                app,
                &b.id,
                area.height.saturating_sub(17) as usize,
            ));
            lines.push(String::new());
            lines.push("v verify   r restore   d delete   Esc back".into());
            f.render_widget(
                Paragraph::new(lines.join("\n"))
                    .block(Block::default().borders(Borders::ALL).title(" Backup ")),
                area,
            );
            return;
        }
    }
    // Wide terminals show what 80 columns cannot: the whole id (to paste into a command) and
    // the measured restore time (issue 27, item 10: the space at 200×50 went unused).
    let wide = area.width >= 120;
    let rows: Vec<Row> = list
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let proven = match b.verified_level {
                "failed" => "✗ failed".to_string(),
                "none" => "· none".to_string(),
                l => format!("✔ {l}"),
            };
            let mut cells = vec![
                if wide {
                    b.id.clone()
                } else {
                    backup_id::short(&b.id).to_string()
                },
                b.source.clone(),
                short_type(b.kind.as_str()).to_string(),
                b.started_at.format("%m-%d %H:%M").to_string(),
                duration((b.finished_at - b.started_at).num_seconds().max(0) as u64),
                human_bytes(b.logical_bytes),
                human_bytes(b.stored_bytes),
                proven,
            ];
            if wide {
                cells.push(
                    b.restore_ms
                        .map(|ms| duration(ms / 1000))
                        .unwrap_or_else(|| "—".into()),
                );
            }
            Row::new(cells).style(if i == app.sel[1] {
                t.selected()
            } else {
                Style::default()
            })
        })
        .collect();
    // Where the cursor is in a long list, and the order (htop/k9s users look for both).
    let visible = area.height.saturating_sub(3) as usize;
    let at = if list.len() > visible {
        format!(" · row {} of {}", app.sel[1] + 1, list.len())
    } else {
        String::new()
    };
    let title = if app.filter.is_empty() {
        format!(
            " Backups ({}) · {}{at} ",
            list.len(),
            super::app::SORTS[app.sort]
        )
    } else {
        format!(
            " Backups ({} matching \"{}\") · {}{at} ",
            list.len(),
            app.filter,
            super::app::SORTS[app.sort]
        )
    };
    let skip = app.sel[1].saturating_sub(visible.saturating_sub(1));
    f.render_widget(
        Table::new(
            rows.into_iter().skip(skip),
            if wide {
                vec![
                    Constraint::Length(23),
                    Constraint::Length(14),
                    Constraint::Length(5),
                    Constraint::Length(12),
                    Constraint::Length(7),
                    Constraint::Length(10),
                    Constraint::Length(10),
                    Constraint::Length(12),
                    Constraint::Min(8),
                ]
            } else {
                vec![
                    Constraint::Length(7),
                    Constraint::Length(10),
                    Constraint::Length(5),
                    Constraint::Length(12),
                    Constraint::Length(6),
                    Constraint::Length(9),
                    Constraint::Length(9),
                    Constraint::Min(11),
                ]
            },
        )
        .header(
            Row::new(
                [
                    "ID", "SOURCE", "TYPE", "STARTED", "TOOK", "LOGICAL", "STORED", "PROVEN",
                    "RESTORE",
                ]
                .into_iter()
                .take(if wide { 9 } else { 8 }),
            )
            .style(t.bold()),
        )
        .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn jobs(f: &mut Frame, area: Rect, app: &App, now: DateTime<Utc>, t: Theme) {
    let m = &app.model;
    // Wide terminals add who started each job (issue 27, item 11: scheduled, console, a token).
    let wide = area.width >= 120;
    let by = |id: &str| -> String {
        m.history
            .iter()
            .rev()
            .find(|h| h.id == id)
            .and_then(|h| h.started_by.clone())
            .unwrap_or_else(|| "—".into())
    };
    // Wide terminals also say how long each job took (running: so far).
    let row = |mut cells: Vec<String>, id: &str, took: String| {
        if wide {
            cells.insert(5, took);
            cells.insert(6, by(id));
        }
        Row::new(cells)
    };
    let mut rows = vec![];
    for j in app.live_jobs() {
        let p = app.progress.get(&j.id);
        // The phase and how far (the Overview and the status line have the rest).
        let detail = p
            .map(|p| match p.percent() {
                Some(x) => format!("{} {x:.0}%", p.progress.phase.as_str()),
                None => format!(
                    "{} {}",
                    p.progress.phase.as_str(),
                    human_bytes(p.progress.bytes_done)
                ),
            })
            .unwrap_or_else(|| format!("{:?}", j.state).to_lowercase());
        let (status, detail) = match app.unreachable_since() {
            Some(_) => ("unknown".to_string(), "daemon unreachable".to_string()),
            None => ("running".to_string(), detail),
        };
        rows.push(row(
            vec![
                format!("● {}", short_job(&j.id)),
                j.kind.to_string(),
                j.source.clone().unwrap_or_default(),
                status,
                ago(Some(j.queued_at), now),
                detail,
            ],
            &j.id,
            duration((now - j.queued_at).num_seconds().max(0) as u64),
        ));
    }
    for j in app.past_jobs() {
        rows.push(row(
            vec![
                format!("{} {}", job_symbol(j), short_job(&j.id)),
                j.kind.clone(),
                job_source(app, j),
                j.status.as_str().to_string(),
                ago(Some(j.started_at), now),
                job_detail(j, |b| backup_id::short(b).to_string()),
            ],
            &j.id,
            job_took(j),
        ));
    }
    let sel = app.sel[2];
    if app.detail {
        let ids = app.job_ids();
        if let Some(id) = ids.get(sel) {
            let text = match m.history.iter().rev().find(|j| &j.id == id) {
                Some(j) => job_lines(app, j, now).join("\n"),
                None => format!("job {id} is running"),
            };
            f.render_widget(
                Paragraph::new(text)
                    .wrap(Wrap { trim: false })
                    .block(Block::default().borders(Borders::ALL).title(" Job ")),
                area,
            );
            return;
        }
    }
    let visible = area.height.saturating_sub(3) as usize;
    let n = rows.len();
    let skip = sel.saturating_sub(visible.saturating_sub(1));
    let rows: Vec<Row> = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| if i == sel { r.style(t.selected()) } else { r })
        .skip(skip)
        .collect();
    f.render_widget(
        Table::new(
            rows,
            if wide {
                vec![
                    Constraint::Length(20),
                    Constraint::Length(7),
                    Constraint::Length(14),
                    Constraint::Length(10),
                    Constraint::Length(8),
                    Constraint::Length(8),
                    Constraint::Length(24),
                    Constraint::Min(10),
                ]
            } else {
                vec![
                    Constraint::Length(20),
                    Constraint::Length(7),
                    Constraint::Length(10),
                    Constraint::Length(10),
                    Constraint::Length(8),
                    Constraint::Min(10),
                ]
            },
        )
        .header(
            Row::new(if wide {
                vec![
                    "JOB",
                    "KIND",
                    "SOURCE",
                    "STATUS",
                    "STARTED",
                    "TOOK",
                    "STARTED BY",
                    "DETAIL",
                ]
            } else {
                vec!["JOB", "KIND", "SOURCE", "STATUS", "STARTED", "DETAIL"]
            })
            .style(t.bold()),
        )
        .block(Block::default().borders(Borders::ALL).title(format!(
            "{}{}{} ",
            match app.unreachable_since() {
                Some(_) if m.live.is_empty() => " Jobs (daemon unreachable)".to_string(),
                Some(_) => format!(" Jobs ({} unknown: daemon unreachable)", m.live.len()),
                None => format!(" Jobs ({} running)", m.live.len()),
            },
            match app.filter.is_empty() {
                true => String::new(),
                false => format!(" · {n} matching \"{}\"", app.filter),
            },
            match n > visible {
                true => format!(" · row {} of {n}", sel + 1),
                false => String::new(),
            }
        ))),
        area,
    );
}

fn retention(f: &mut Frame, area: Rect, app: &App, t: Theme) {
    let [policy, plan] = Layout::vertical([Constraint::Length(4), Constraint::Min(3)]).areas(area);
    let words = if app.model.policy.is_empty() {
        "no [retention] policy: prune keeps every backup".to_string()
    } else {
        app.model.policy.join(" · ")
    };
    f.render_widget(
        Paragraph::new(words)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" Policy ")),
        policy,
    );
    let Some(p) = &app.preview else {
        f.render_widget(
            Paragraph::new("computing what the policy keeps…")
                .block(Block::default().borders(Borders::ALL).title(" Plan ")),
            plan,
        );
        return;
    };
    let (forget, frees) = forgets(app, p);
    let rows: Vec<Row> = p
        .plan
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Row::new(vec![
                d.id.clone(),
                d.source.clone(),
                if d.keep {
                    "✔ keep".into()
                } else {
                    "✗ forget".to_string()
                },
                d.reasons.join(", "),
            ])
            .style(if i == app.sel[3] {
                t.selected()
            } else {
                Style::default()
            })
        })
        .collect();
    let visible = plan.height.saturating_sub(3) as usize;
    let skip = app.sel[3].saturating_sub(visible.saturating_sub(1));
    f.render_widget(
        Table::new(
            rows.into_iter().skip(skip),
            [
                Constraint::Length(24),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(["BACKUP", "SOURCE", "DECISION", "RULE"]).style(t.bold()))
        .block(Block::default().borders(Borders::ALL).title(format!(
            " Plan: keeps {}, forgets {} (frees up to {}) ",
            p.plan.len() - forget.len(),
            forget.len(),
            human_bytes(frees)
        ))),
        plan,
    );
}

/// A backup's verification history, newest first (at most `max` lines).
fn verification_lines(app: &App, id: &str, max: usize) -> Vec<String> {
    let Some(recs) = app.model.records.get(id).filter(|r| !r.is_empty()) else {
        return vec!["verifications  none yet (v verifies it)".into()];
    };
    let mut out = vec![format!(
        "verifications  {} run(s), newest first:",
        recs.len()
    )];
    for r in recs.iter().rev().take(max.max(1)) {
        let verdict = match crate::engine::Verdict::of(r) {
            crate::engine::Verdict::Proven => "✔ proven".to_string(),
            crate::engine::Verdict::NotProven => format!(
                "⚠ not proven{}",
                r.not_proven
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            ),
            crate::engine::Verdict::Damaged => format!(
                "✗ damaged: {}",
                r.problems.first().map(String::as_str).unwrap_or("")
            ),
        };
        out.push(format!(
            "  {} {:<9} {verdict}{}",
            r.finished_at.format("%m-%d %H:%M"),
            r.level.as_str(),
            r.restore_ms
                .map(|ms| format!(" · restore {}", duration_ms(ms)))
                .unwrap_or_default()
        ));
        // What a proof on a plain server covered beyond the tables (hosted backups).
        out.extend(
            crate::present::coverage_lines(r)
                .lines()
                .map(|l| format!("  {}", l.trim_start())),
        );
    }
    out
}

/// The backups a prune plan forgets, and the bytes they added (what a prune frees at most).
fn forgets<'a>(app: &App, p: &'a crate::core::prune::PruneReport) -> (Vec<&'a str>, u64) {
    let forget: Vec<&str> = p
        .plan
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.id.as_str())
        .collect();
    let frees = app
        .model
        .rows
        .iter()
        .filter(|b| forget.contains(&b.id.as_str()))
        .map(|b| b.stored_bytes)
        .sum();
    (forget, frees)
}

/// Eight levels of a sparkline, highest value full.
fn spark(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    values
        .iter()
        .map(|v| BARS[((*v as f64 / max as f64) * 7.0).round() as usize])
        .collect()
}

fn drills(f: &mut Frame, area: Rect, app: &App, now: DateTime<Utc>, t: Theme) {
    let all = &app.model.drills;
    if all.is_empty() {
        f.render_widget(
            Paragraph::new(
                "No drills yet.\n\nPress D to rehearse a recovery: a backup is restored into a scratch database, checked (table facts, pg_amcheck, your [[drill.checks]]), timed against the source's RTO and RPO, and dropped. The report is kept in the repository, so any host with the key can show it (keepsake drills).",
            )
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" Drills ")),
            area,
        );
        return;
    }
    let sources: Vec<&str> = {
        let mut v: Vec<&str> = all.iter().map(|d| d.source.as_str()).collect();
        v.sort();
        v.dedup();
        v
    };
    let trend_h = (sources.len() as u16 + 2).min(area.height / 3);
    let [list, trend] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(trend_h)]).areas(area);
    let rows: Vec<Row> = all
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let (sym, word) = drill_word(d.result);
            let miss = |met: Option<bool>| if met == Some(false) { " ✗" } else { "" };
            let row = Row::new(vec![
                format!("{} {}", if i == app.sel[4] { "▶" } else { " " }, sym),
                ago(Some(d.started_at), now),
                d.source.clone(),
                word.to_string(),
                d.backup_id
                    .as_deref()
                    .map(|b| backup_id::short(b).to_string())
                    .unwrap_or_else(|| "—".into()),
                d.rto_ms
                    .map(|m| format!("{}{}", duration_ms(m), miss(d.rto_met())))
                    .unwrap_or_else(|| "—".into()),
                d.rpo_s
                    .map(|x| format!("{}{}", age(x.max(0)), miss(d.rpo_met())))
                    .unwrap_or_else(|| "—".into()),
                d.actor.clone(),
            ]);
            let style = match d.result {
                DrillResult::Passed => Style::default(),
                DrillResult::Failed => t.fg(Color::Red),
                _ => t.fg(Color::Yellow),
            };
            if i == app.sel[4] {
                row.style(style.patch(t.selected()))
            } else {
                row.style(style)
            }
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(9),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Min(8),
        ],
    )
    .header(
        Row::new(vec![
            "", "WHEN", "SOURCE", "RESULT", "BACKUP", "RTO", "RPO", "RUN BY",
        ])
        .style(t.bold()),
    )
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(format!(" Drills ({}) ", all.len())),
    );
    f.render_widget(table, list);
    let width = usize::from(trend.width.saturating_sub(40)).clamp(4, 30);
    let lines: Vec<Line> = sources
        .iter()
        .map(|s| {
            let mine: Vec<&DrillReport> = all
                .iter()
                .filter(|d| d.source == *s && d.result == DrillResult::Passed)
                .collect();
            let rtos: Vec<u64> = mine.iter().filter_map(|d| d.rto_ms).collect();
            let last = rtos.iter().skip(rtos.len().saturating_sub(width)).copied();
            let target = mine
                .last()
                .and_then(|d| d.rto_target_s)
                .map(|x| format!(" · target {}", span(x)))
                .unwrap_or_default();
            Line::raw(format!(
                " {s:<12} {:<width$}  last {}{target}",
                spark(&last.collect::<Vec<_>>()),
                rtos.last()
                    .map(|m| duration_ms(*m))
                    .unwrap_or_else(|| "— (no passed drill)".into()),
            ))
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" RTO of passed drills, oldest → newest "),
        ),
        trend,
    );
}

/// A row count for people: `812`, `12.4k`, `1.5M`.
fn count(n: u64) -> String {
    match n {
        n if n < 10_000 => n.to_string(),
        n if n < 1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        n if n < 1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => format!("{:.1}G", n as f64 / 1e9),
    }
}

fn log(f: &mut Frame, area: Rect, app: &App) {
    // With the audit log readable (attached as an admin, or local with a state directory),
    // its newest lines take the lower part.
    let audit = app.model.audit.as_ref().filter(|a| !a.is_empty());
    let (area, audit_area) = match audit {
        Some(_) if area.height >= 14 => {
            let [top, bottom] =
                Layout::vertical([Constraint::Min(6), Constraint::Length(area.height / 3)])
                    .areas(area);
            (top, Some(bottom))
        }
        _ => (area, None),
    };
    let visible = area.height.saturating_sub(2) as usize;
    let shown = app.log_lines();
    let lines: Vec<Line> = shown
        .iter()
        .skip(shown.len().saturating_sub(visible))
        .map(|l| Line::raw(l.to_string()))
        .collect();
    let text = if lines.is_empty() && !app.filter.is_empty() {
        vec![Line::raw(format!(
            "no line of the log matches \"{}\" (Esc clears the filter)",
            app.filter
        ))]
    } else if lines.is_empty() {
        vec![Line::raw(
            "no events yet: jobs, alerts and configuration changes appear here",
        )]
    } else {
        lines
    };
    f.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" Log ")),
        area,
    );
    if let (Some(lines), Some(r)) = (audit, audit_area) {
        let visible = r.height.saturating_sub(2) as usize;
        let text: Vec<Line> = lines
            .iter()
            .skip(lines.len().saturating_sub(visible))
            .map(|l| {
                let e = &l.entry;
                Line::raw(format!(
                    "{} {} ({}, {}) {}{} → {} {}",
                    l.time.format("%m-%d %H:%M:%S"),
                    e.actor,
                    e.role,
                    e.via,
                    e.action,
                    e.target
                        .as_deref()
                        .map(|t| format!(" {t}"))
                        .unwrap_or_default(),
                    e.outcome,
                    e.code
                ))
            })
            .collect();
        f.render_widget(
            Paragraph::new(text).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Audit log (who changed what; keepsake audit verify checks it) "),
            ),
            r,
        );
    }
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn choice(options: &[&str], sel: usize) -> Vec<String> {
    options
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{} {o}", if i == sel { "▶" } else { " " }))
        .collect()
}

/// A running job in one line for a dialog: phase, gauge, bytes, current table.
fn progress_line(p: &crate::engine::JobProgress) -> String {
    let pr = &p.progress;
    let mut l = format!(
        "{} {}",
        pr.phase.as_str(),
        bar(p.percent().unwrap_or(0.0), 20)
    );
    if let Some(x) = p.percent() {
        l.push_str(&format!(" {x:.0}%"));
    }
    match pr.bytes_expected {
        Some(e) if pr.bytes_done > 0 => l.push_str(&format!(
            " · {} of {}",
            human_bytes(pr.bytes_done),
            human_bytes(e)
        )),
        _ if pr.bytes_done > 0 => l.push_str(&format!(" · {}", human_bytes(pr.bytes_done))),
        _ => {}
    }
    if pr.rate > 0.0 {
        l.push_str(&format!(" · {}/s", human_bytes(pr.rate as u64)));
    }
    if let Some(e) = p.eta() {
        l.push_str(&format!(" · ETA {}", duration(e.as_secs())));
    }
    if let Some(t) = pr.current_table.as_deref() {
        l.push_str(&format!(" · {t}"));
    }
    l
}

/// What the restore wizard learned about database `name`, if it is about that one.
fn target_facts<'a>(
    app: &'a App,
    name: &str,
) -> Option<&'a Result<crate::engine::TargetFacts, String>> {
    app.target_facts
        .as_ref()
        .filter(|(db, _)| db == name)
        .map(|(_, r)| r)
}

/// The restore options in one line.
fn options_line(app: &App) -> String {
    let (no_owner, jobs) = app.restore_options;
    format!(
        "Options  {} · sessions: {}",
        if no_owner {
            "no owners or privileges"
        } else {
            "owners as backed up"
        },
        jobs.map(|j| j.to_string())
            .unwrap_or_else(|| "default".into())
    )
}

/// The guided drill's lines.
fn drill_dialog(app: &App, step: &DrillStep, now: DateTime<Utc>) -> Vec<String> {
    match step {
        DrillStep::Source { sel } => {
            let names: Vec<&str> = app.model.sources.iter().map(String::as_str).collect();
            let mut l = vec![
                "Rehearse the recovery of which source?".to_string(),
                String::new(),
            ];
            l.extend(choice(&names, *sel));
            l.extend([String::new(), "↑/↓ choose   Enter next   Esc cancel".into()]);
            l
        }
        DrillStep::Backup { source, sel } => {
            let list = app.drill_backups(source);
            if list.is_empty() {
                return vec![
                    format!("{source} has no backup yet: back it up first (b)."),
                    String::new(),
                    "Esc close".into(),
                ];
            }
            let mut l = vec![
                format!("Which backup of {source}? (the newest proven one is chosen)"),
                String::new(),
            ];
            let first = sel.saturating_sub(7);
            for (i, b) in list.iter().enumerate().skip(first).take(8) {
                l.push(format!(
                    "{} {}  {:<12} {:>6} ago  proven: {}",
                    if i == *sel { "▶" } else { " " },
                    b.id,
                    b.kind.as_str(),
                    age((now - b.finished_at).num_seconds().max(0)),
                    b.verified_level
                ));
            }
            l.extend([String::new(), "↑/↓ choose   Enter next   Esc cancel".into()]);
            l
        }
        DrillStep::Confirm { source, backup } => {
            let row = app.model.rows.iter().find(|b| &b.id == backup);
            vec![
                format!(
                    "Drill {backup} of {source} ({}, {} logical):",
                    row.map(|b| b.kind.as_str()).unwrap_or("?"),
                    human_bytes(row.map(|b| b.logical_bytes).unwrap_or(0))
                ),
                "  1 preflight: the key opens the repository, pg_restore fits,".into(),
                "    the scratch server answers and has room".into(),
                "  2 restore into a new scratch database (nothing existing is touched)".into(),
                "  3 checks: table facts, pg_amcheck, your [[drill.checks]]".into(),
                "  4 measure RTO and RPO against the source's targets".into(),
                "  5 drop the scratch database, store the report in the repository".into(),
                String::new(),
                "Enter start   Esc cancel".into(),
            ]
        }
        DrillStep::Running {
            source,
            backup,
            job,
            lines,
        } => {
            let mut l = vec![format!("Drilling {backup} of {source}…"), String::new()];
            l.extend(lines.iter().rev().take(9).rev().map(|s| format!("  {s}")));
            if let Some(p) = job.as_ref().and_then(|j| app.progress.get(j)) {
                l.push(format!("  {}", progress_line(p)));
            }
            l.extend([
                String::new(),
                "Esc hide (the drill goes on: 3 Jobs; 5 Drills shows its report)".into(),
            ]);
            l
        }
    }
}

fn dialog(f: &mut Frame, area: Rect, app: &App, d: &Dialog, now: DateTime<Utc>, t: Theme) {
    let (title, lines): (String, Vec<String>) = match d {
        Dialog::Help => {
            // What this screen adds first, then the keys of every screen.
            let here: &[&str] = match app.screen {
                0 => &[
                    "j/k pick a source   s check it   v/r/D its newest backup",
                    "capture lines say how far a point-in-time restore reaches",
                ],
                1 => &[
                    "Enter details (largest tables, verifications)   / filter",
                    "S sort: newest, oldest, largest, by source   v r d the selected",
                ],
                2 => &[
                    "Enter details   c cancel the selected running job",
                    "/ filter by kind, source, status, error or who started it",
                ],
                3 => &["the policy's plan now: kept, forgotten, freed   p prune"],
                4 => &["Enter read a report (PgUp/PgDn, g/G)   D start a drill"],
                _ => &["engine events and job ends, newest last   / filter"],
            };
            let mut l: Vec<String> = vec![format!("On {}:", SCREENS[app.screen])];
            l.extend(here.iter().map(|h| format!("  {h}")));
            l.extend([
                String::new(),
                "1…6, Tab   Overview · Backups · Jobs · Retention · Drills · Log".into(),
                "j/k ↑/↓ move  g/G first/last  PgUp/PgDn Ctrl-u/d page".into(),
                "Enter/Esc details / back (Esc also clears a kept filter)".into(),
                "b back up   v verify   r restore wizard   p prune (preview first)".into(),
                "d delete (type its id)   D drill   c cancel a job   s check".into(),
                "text fields: ←/→ Home/End Ctrl-a/e move, Ctrl-u clear, Ctrl-w word".into(),
                "q quit (asks while a job of this console runs)".into(),
                String::new(),
                "✔ proven/ok  ⚠ breach or not proven  ✗ failed/damaged  ● running".into(),
                "every dialog lists its own keys on its last line".into(),
                String::new(),
                "Esc close".into(),
            ]);
            (" Help ".into(), l)
        }
        Dialog::Drill(step) => (" Drill ".into(), drill_dialog(app, step, now)),
        Dialog::Report { report, scroll } => {
            let all = report_lines(report);
            let room = report_room(f.area().height);
            let scroll = (*scroll).min(all.len().saturating_sub(room));
            let mut l: Vec<String> = all.iter().skip(scroll).take(room).cloned().collect();
            l.push(String::new());
            l.push(if all.len() > room {
                format!(
                    "lines {}–{} of {}",
                    scroll + 1,
                    (scroll + room).min(all.len()),
                    all.len()
                )
            } else {
                format!("all {} lines", all.len())
            });
            (format!(" Drill report {} ", report.id), l)
        }
        Dialog::SourceCheck { source, lines } => {
            let mut l = match lines {
                None => vec![format!("checking {source}…")],
                Some(Ok(lines)) => lines.clone(),
                Some(Err(e)) => vec![format!("✗ the check did not run: {e}")],
            };
            l.push(String::new());
            l.push("Esc close".into());
            (format!(" Source check: {source} "), l)
        }
        Dialog::Message { title, text } => (
            format!(" {title} "),
            vec![text.clone(), String::new(), "Esc close".into()],
        ),
        Dialog::Quit => (
            " Quit? ".into(),
            vec![
                "A job started here is still running in this console.".into(),
                "Quitting cancels it; its cleanup runs (nothing half-written stays).".into(),
                String::new(),
                "y quit and cancel     Esc stay".into(),
            ],
        ),
        Dialog::Backup { source: None, sel } => {
            let names: Vec<&str> = app.model.sources.iter().map(String::as_str).collect();
            let mut l = vec!["Back up which source?".to_string(), String::new()];
            l.extend(choice(&names, *sel));
            l.extend([String::new(), "↑/↓ choose   Enter next   Esc cancel".into()]);
            (" Back up now ".into(), l)
        }
        Dialog::Backup {
            source: Some(s),
            sel,
        } => {
            let mut l = vec![format!("Back up {s} as:"), String::new()];
            l.extend(choice(
                &[
                    "full          an independent copy (shares nothing)",
                    "incremental   only what no backup stored yet",
                    "differential  what changed since the last full",
                ],
                *sel,
            ));
            l.extend([
                String::new(),
                "f/i/d or ↑/↓ Enter start   Esc cancel".into(),
            ]);
            (" Back up now ".into(), l)
        }
        Dialog::Verify { backup, sel } => {
            let mut l = vec![format!("Verify {backup} at level:"), String::new()];
            l.extend(choice(
                &[
                    "structure  objects present, metadata authentic",
                    "data       every chunk read and authenticated",
                    "restore    restored into a scratch database, tables compared",
                ],
                *sel,
            ));
            l.extend([
                String::new(),
                "s/d/r or ↑/↓ Enter start   Esc cancel".into(),
            ]);
            (" Verify ".into(), l)
        }
        Dialog::CancelJob { job, what } => (
            " Cancel job ".into(),
            vec![
                format!("Cancel {what} ({job})?"),
                "Nothing half-written becomes visible; its cleanup runs.".into(),
                String::new(),
                "y cancel the job     n/Esc keep it running".into(),
            ],
        ),
        Dialog::Delete { id, typed } => (
            " Delete backup ".into(),
            vec![
                format!("Forget backup {id}?"),
                "Its packs are freed by a later prune. This cannot be undone.".into(),
                String::new(),
                format!(
                    "Type its id ({} or the whole id) to confirm: {}",
                    backup_id::short(id),
                    super::app::with_caret(typed, app.caret)
                ),
                String::new(),
                if crate::engine::ops::delete::confirmed(id, id, typed) {
                    "Enter delete   Esc cancel".into()
                } else {
                    "Esc cancel".into()
                },
            ],
        ),
        Dialog::Prune { report, error } => {
            let mut l = vec![];
            match (report, error) {
                (_, Some(e)) => l.push(format!("✗ the preview failed: {e}")),
                (None, None) => l.push("computing what the policy keeps…".into()),
                (Some(r), None) => {
                    let (forget, frees) = forgets(app, r);
                    l.push(format!(
                        "The policy keeps {} backup(s) and forgets {}.",
                        r.plan.len() - forget.len(),
                        forget.len()
                    ));
                    for id in forget.iter().take(6) {
                        l.push(format!("  ✗ {id}"));
                    }
                    if forget.len() > 6 {
                        l.push(format!(
                            "  … and {} more (4 Retention lists all)",
                            forget.len() - 6
                        ));
                    }
                    l.push(format!(
                        "Frees up to {} (their own packs, deleted by a later prune after the grace period).",
                        human_bytes(frees)
                    ));
                    l.push(String::new());
                    l.push("y prune now     n/Esc cancel".into());
                }
            }
            (" Prune ".into(), l)
        }
        Dialog::Restore {
            backup,
            source,
            database,
            step,
        } => {
            let row = app.model.rows.iter().find(|b| &b.id == backup);
            let server = app
                .model
                .servers
                .get(source)
                .cloned()
                .unwrap_or_else(|| format!("{source}'s server"));
            let mut l = vec![format!(
                "Backup   {backup} ({source}, {}, proven: {})",
                row.map(|b| b.kind.as_str()).unwrap_or("?"),
                row.map(|b| b.verified_level).unwrap_or("?")
            )];
            if let Some(b) = row {
                l.push(format!(
                    "Taken    {} ago · {} logical",
                    age((now - b.finished_at).num_seconds().max(0)),
                    human_bytes(b.logical_bytes)
                ));
            }
            let rto = app
                .model
                .status
                .iter()
                .find(|s| &s.source == source)
                .and_then(|s| s.restore_ms)
                .map(|ms| {
                    format!(
                        "Measured restore time for {source}: {}",
                        duration(ms / 1000)
                    )
                })
                .unwrap_or_else(|| format!("No measured restore time for {source} yet"));
            l.push(String::new());
            match step {
                RestoreStep::Mode { overwrite } => {
                    l.push(format!("Restore into (on {server}):"));
                    l.extend(choice(
                        &[
                            "a new database (nothing existing is touched)",
                            "an existing database: replace its objects (--clean)",
                        ],
                        usize::from(*overwrite),
                    ));
                    l.push("  u another server: type a postgres:// URL (a new database)".into());
                    // Change capture: the state at any time it reaches.
                    if let Some(reach) = app
                        .model
                        .status
                        .iter()
                        .find(|s| &s.source == source)
                        .and_then(|s| s.capture.as_ref())
                        .and_then(|c| c.last_commit_at)
                    {
                        l.push(format!(
                            "  p a point in time (capture reaches {}): a new database",
                            reach.format("%H:%M:%S")
                        ));
                    }
                    l.push(format!(
                        "  t some tables: into a new schema of {database}, beside the live ones"
                    ));
                    l.extend([
                        String::new(),
                        "↑/↓ choose  u URL  t tables  p point in time  Enter next  Esc cancel"
                            .into(),
                    ]);
                }
                RestoreStep::Url { text, error } => {
                    l.push("Restore into a new database at (no password: the restore".into());
                    l.push("connects with its own credentials, ~/.pgpass or PGPASSWORD):".into());
                    l.push(format!("  {}", super::app::with_caret(text, app.caret)));
                    if let Some(e) = error {
                        l.push(format!("✗ {e}"));
                    }
                    l.extend([String::new(), "Enter next   Esc cancel".into()]);
                }
                RestoreStep::At { text, error } => {
                    l.push("Restore the state at a point in time (UTC): this backup, then".into());
                    l.push(
                        "the changes captured after it, up to the last commit at or before:".into(),
                    );
                    l.push(format!("  {}", super::app::with_caret(text, app.caret)));
                    l.push("  14:05 · 14:05:30 · 2026-12-08 14:05 · 2026-12-08T14:05:00Z".into());
                    if let Some(e) = error {
                        l.push(format!("✗ {e}"));
                    }
                    l.extend([
                        String::new(),
                        "Enter next (a new database)   Esc cancel".into(),
                    ]);
                }
                RestoreStep::ConfirmUrl { server, db, .. } => {
                    l.push(format!(
                        "Creates database {db} on {server} and restores into it."
                    ));
                    l.push(
                        "Nothing existing is touched; if it exists, the restore refuses.".into(),
                    );
                    l.push(rto.clone());
                    l.extend([String::new(), "Enter restore   Esc cancel".into()]);
                }
                RestoreStep::Tables {
                    sel,
                    picked,
                    filter,
                    typing,
                } => {
                    l.push(format!("Tables to restore ({} chosen):", picked.len()));
                    match &app.pick_list {
                        Some((id, Ok(list))) if id == backup => {
                            let shown = super::app::picked_rows(list, filter);
                            // A window of 10 rows that keeps the cursor in view.
                            let start = sel.saturating_sub(9).min(shown.len().saturating_sub(10));
                            for (row, i) in shown.iter().enumerate().skip(start).take(10) {
                                let t = &list[*i];
                                l.push(format!(
                                    "{} [{}] {:<34} {:>10} rows {:>10}",
                                    if row == *sel { "▶" } else { " " },
                                    if picked.contains(i) { "x" } else { " " },
                                    t.name,
                                    t.rows,
                                    human_bytes(t.bytes.max(0) as u64)
                                ));
                            }
                            if shown.is_empty() {
                                l.push(format!("  no table matches \"{filter}\""));
                            }
                            match (filter.is_empty(), shown.len() == list.len()) {
                                (true, _) if list.len() > 10 => {
                                    l.push(format!("  row {} of {} tables", sel + 1, list.len()))
                                }
                                (false, _) => l.push(format!(
                                    "  {} of {} tables match",
                                    shown.len(),
                                    list.len()
                                )),
                                _ => {}
                            }
                        }
                        Some((_, Err(e))) => l.push(format!("✗ cannot read the table list: {e}")),
                        _ => l.push("reading the backup's table list…".into()),
                    }
                    l.push(String::new());
                    if *typing {
                        l.push(format!(
                            "filter: {}  Enter keep · Esc clear",
                            super::app::with_caret(filter, app.caret)
                        ));
                    } else if !filter.is_empty() {
                        l.push(format!(
                            "filter: {filter}  space choose  Enter next  Esc clear filter"
                        ));
                    } else {
                        l.push(
                            "↑/↓ g/G PgUp/PgDn move  / filter  space choose  Enter next  Esc cancel"
                                .into(),
                        );
                    }
                }
                RestoreStep::Schema { tables, name } => {
                    l.push(format!(
                        "Restore {} table{} into a NEW schema of {database} on {server}:",
                        tables.len(),
                        if tables.len() == 1 { "" } else { "s" }
                    ));
                    l.push(format!("  {}", super::app::with_caret(name, app.caret)));
                    l.push("The live tables are not touched; the schema must not exist.".into());
                    l.extend([String::new(), "Enter next   Esc cancel".into()]);
                }
                RestoreStep::ConfirmTables { tables, schema } => {
                    l.push(format!(
                        "Creates schema {schema} in {database} on {server} and restores into it:"
                    ));
                    let names: Vec<String> =
                        tables.iter().map(|(s, n)| format!("{s}.{n}")).collect();
                    l.push(format!("  {}", names.join(", ")));
                    l.push("✔ nothing existing is touched: the originals stay as they are;".into());
                    l.push("  if the schema exists, the restore refuses. Rows are checked".into());
                    l.push("  against the counts and digests recorded at backup time.".into());
                    l.push(rto.clone());
                    l.extend([String::new(), "Enter restore   Esc cancel".into()]);
                }
                RestoreStep::Name { overwrite, name } => {
                    l.push(if *overwrite {
                        "Name of the existing database to overwrite:".into()
                    } else {
                        "Name of the new database:".into()
                    });
                    l.push(format!("  {}", super::app::with_caret(name, app.caret)));
                    l.extend([String::new(), "Enter next   Esc cancel".into()]);
                }
                RestoreStep::Options { .. } => {
                    let (no_owner, jobs) = app.restore_options;
                    l.push("Options:".into());
                    l.push(format!(
                        "  [{}] o  skip ownership and privileges (--no-owner: for a server",
                        if no_owner { "x" } else { " " }
                    ));
                    l.push("         without the source's roles)".into());
                    l.push(format!(
                        "  +/-   parallel sessions: {}",
                        jobs.map(|j| j.to_string())
                            .unwrap_or_else(|| "default (CPUs, at least 2)".into())
                    ));
                    l.extend([
                        String::new(),
                        "o/+/-/a change   Enter next   Esc cancel".into(),
                    ]);
                }
                RestoreStep::Confirm {
                    overwrite: false,
                    name,
                    ..
                } => {
                    l.push(format!(
                        "Creates database {name} on {server} and restores into it."
                    ));
                    if let Some(t) = app.restore_at {
                        l.push(format!(
                            "The state at {}: this backup, then the captured changes up to it.",
                            t.format("%Y-%m-%d %H:%M:%S UTC")
                        ));
                    }
                    l.push(match target_facts(app, name) {
                        Some(Ok(f)) if f.exists => format!(
                            "✗ {name} already exists there ({} tables, {}): the restore would refuse; Esc and choose another name",
                            f.tables,
                            human_bytes(f.bytes)
                        ),
                        Some(Ok(_)) => format!("✔ {name} does not exist there yet: nothing existing is touched."),
                        Some(Err(e)) => format!("⚠ could not look at the server: {e}"),
                        None => format!("checking {server} for {name}…"),
                    });
                    l.push(options_line(app));
                    l.push(rto);
                    l.extend([String::new(), "Enter restore   Esc cancel".into()]);
                }
                RestoreStep::Confirm {
                    overwrite: true,
                    name,
                    typed,
                } => {
                    l.push(format!(
                        "⚠ {name} on {server} will be OVERWRITTEN{}:",
                        if name == database {
                            " (the source database itself)"
                        } else {
                            ""
                        }
                    ));
                    match target_facts(app, name) {
                        Some(Ok(f)) if f.exists => l.push(format!(
                            "  it holds {} tables, {}; {} session(s) connected now.",
                            f.tables,
                            human_bytes(f.bytes),
                            f.sessions
                        )),
                        Some(Ok(_)) => l.push(format!(
                            "  ✗ {name} does not exist on {server}: nothing to overwrite (Esc)."
                        )),
                        Some(Err(e)) => l.push(format!("  ⚠ could not look at it: {e}")),
                        None => l.push(format!("  checking what {name} holds…")),
                    }
                    l.push("  Its objects are dropped and recreated from this backup;".into());
                    l.push("  changes made since the backup was taken are lost.".into());
                    l.push(options_line(app));
                    l.push(rto);
                    l.push(String::new());
                    l.push(format!(
                        "Type the database name to continue: {}",
                        super::app::with_caret(typed, app.caret)
                    ));
                    l.extend([
                        String::new(),
                        if typed == name {
                            "Enter restore   Esc cancel".into()
                        } else {
                            "Esc cancel".into()
                        },
                    ]);
                }
                RestoreStep::Running { name, job } => {
                    let p = job.as_ref().and_then(|j| app.progress.get(j));
                    l.push(format!("Restoring into {name}…"));
                    if let Some(p) = p {
                        l.push(progress_line(p));
                    }
                    l.extend([
                        String::new(),
                        "Esc hide (the restore goes on: 3 Jobs)".into(),
                    ]);
                }
            }
            (" Restore ".into(), l)
        }
    };
    let w = lines
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(20)
        .max(title.len()) as u16
        + 4;
    let w = w.min(area.width - 2);
    // Height with the lines that wrap.
    let inner = usize::from(w.saturating_sub(2)).max(1);
    let h: usize = lines
        .iter()
        .map(|l| l.chars().count().div_ceil(inner).max(1))
        .sum();
    let r = match d {
        // A report takes the whole place it is given (see `draw`).
        Dialog::Report { .. } => area,
        _ => centered(area, w, h as u16 + 2),
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines.join("\n"))
            .wrap(Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title)
                    .border_style(t.fg(Color::Cyan)),
            ),
        r,
    );
}
