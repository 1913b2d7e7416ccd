//! The console's state and `update(action)` (docs/architecture.md, "Inside the faces"): keys
//! become actions, actions change state or become [`Effect`]s (engine commands) — destructive
//! ones only after a confirmation step. Drawing (`view`) is a pure function of this state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};

use super::keys::{Action, Focus};
use crate::core::drill::DrillReport;
use crate::core::format::BackupType;
use crate::core::prune::PruneReport;
use crate::engine::control::Link;
use crate::engine::history::JobRecord;
use crate::engine::{BackupRow, Command, Event, JobInfo, JobProgress, SourceStatus, VerifyTarget};
use crate::model::Level;

pub const SCREENS: [&str; 6] = ["Overview", "Backups", "Jobs", "Retention", "Drills", "Log"];

/// What the engine said last (refreshed every few seconds and after every job).
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub status: Vec<SourceStatus>,
    /// Backups, oldest first.
    pub rows: Vec<BackupRow>,
    /// Backups whose manifest cannot be read.
    pub unreadable: usize,
    pub live: Vec<JobInfo>,
    /// Job history, oldest first.
    pub history: Vec<JobRecord>,
    /// Configured sources (in the configuration's order).
    pub sources: Vec<String>,
    /// The retention policy in words (empty: none configured).
    pub policy: Vec<String>,
    /// Per source, the server a restore goes to (`user@host:port`).
    pub servers: BTreeMap<String, String>,
    /// Verification records per backup id, oldest first.
    pub records: BTreeMap<String, Vec<crate::core::verify::VerifyRecord>>,
    /// Drill reports, oldest first.
    pub drills: Vec<DrillReport>,
    /// The audit log's newest lines (last day), when this console may read it.
    pub audit: Option<Vec<crate::engine::audit::Line>>,
}

/// Something the console asks the engine to do. A few per keystroke at most, so their size
/// does not matter (a command carries a restore's table selection).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Submit(Command),
    /// Restore into `db` (a new database, or an existing one to overwrite) on `source`'s server.
    Restore {
        backup: String,
        source: String,
        db: String,
        overwrite: bool,
        /// Skip ownership and privileges (`--no-owner`).
        no_owner: bool,
        /// Parallel sessions (`None`: the default).
        jobs: Option<usize>,
        /// A point in time: the backup, then the captured changes up to it.
        at: Option<DateTime<Utc>>,
    },
    /// Read what database `db` on `source`'s server holds now (`App::target_facts`).
    InspectTarget {
        source: String,
        db: String,
    },
    /// Restore into a new database given by a typed URL (no password in it).
    RestoreUrl {
        backup: String,
        url: String,
    },
    Cancel(String),
    /// Run a prune dry run and report it back (`App::set_preview`).
    PrunePreview,
    /// Start a drill of `backup` of `source` (`App::drill_started` follows it).
    Drill {
        source: String,
        backup: String,
    },
    /// Read the largest tables of a backup for its details (`App::tables`).
    Tables(String),
    /// Read every table of a backup for the restore wizard's picker (`App::pick_list`).
    TableList(String),
    /// Restore `tables` into the new schema `into_schema` of database `db` on `source`'s
    /// server, beside the originals.
    RestoreTables {
        backup: String,
        source: String,
        db: String,
        tables: Vec<(String, String)>,
        into_schema: String,
    },
    /// Run the preflight of `source` (`App::source_checked` follows it).
    SourceCheck(String),
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RestoreStep {
    /// Choose: a new database, or overwrite an existing one.
    Mode { overwrite: bool },
    /// Type the database name.
    Name { overwrite: bool, name: String },
    /// Options: ownership and privileges, parallel sessions (kept in `App::restore_options`).
    Options { overwrite: bool, name: String },
    /// What will happen; for an overwrite, the name typed again.
    Confirm {
        overwrite: bool,
        name: String,
        typed: String,
    },
    /// Some tables: pick them from the backup's table list (`App::pick_list`, by name).
    /// `sel` is a row of the list as `filter` shows it; `picked` holds indexes of the whole
    /// list, so a choice survives a change of the filter. `typing`: the filter has the keys.
    Tables {
        sel: usize,
        picked: BTreeSet<usize>,
        filter: String,
        typing: bool,
    },
    /// The new schema of the source database they go into.
    Schema {
        tables: Vec<(String, String)>,
        name: String,
    },
    /// What will happen: the tables beside the originals, which are not touched.
    ConfirmTables {
        tables: Vec<(String, String)>,
        schema: String,
    },
    /// A point in time (change capture): type it (UTC); a new database follows.
    At { text: String, error: Option<String> },
    /// Another server: type a `postgres://user@host:port/newdb` URL (no password).
    Url { text: String, error: Option<String> },
    /// What will happen with the typed URL: a new database there.
    ConfirmUrl {
        url: String,
        server: String,
        db: String,
    },
    /// Started: follow job `job`.
    Running { name: String, job: Option<String> },
}

/// The guided drill (`D`): source → backup → what will happen → live steps → the report.
#[derive(Debug, Clone, PartialEq)]
pub enum DrillStep {
    Source {
        sel: usize,
    },
    /// The source's backups, newest first; the newest proven one is preselected.
    Backup {
        source: String,
        sel: usize,
    },
    Confirm {
        source: String,
        backup: String,
    },
    /// Started: job `job`; its steps as they are reported.
    Running {
        source: String,
        backup: String,
        job: Option<String>,
        lines: Vec<String>,
    },
}

/// The dialog on top of the screens, if any.
#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    Help,
    /// Back up now: pick the source (when several), then the type.
    Backup {
        source: Option<String>,
        sel: usize,
    },
    Verify {
        backup: String,
        sel: usize,
    },
    CancelJob {
        job: String,
        what: String,
    },
    Delete {
        id: String,
        typed: String,
    },
    /// Preview (filled when the dry run answers), then confirm.
    Prune {
        report: Option<Box<PruneReport>>,
        error: Option<String>,
    },
    Restore {
        backup: String,
        source: String,
        database: String,
        step: RestoreStep,
    },
    Drill(DrillStep),
    /// A drill report, scrolled by `scroll` lines.
    Report {
        report: Box<DrillReport>,
        scroll: usize,
    },
    /// A job of this console still runs: quit anyway?
    Quit,
    Message {
        title: String,
        text: String,
    },
    /// `source check` of `source`: its lines once the engine answered (or why it could not).
    SourceCheck {
        source: String,
        lines: Option<std::result::Result<Vec<String>, String>>,
    },
}

/// The whole state.
#[derive(Debug, Clone)]
pub struct App {
    pub screen: usize,
    pub model: Model,
    /// Selection per screen.
    pub sel: [usize; 6],
    /// The current screen's filter (Backups, Jobs, Log): kept after Enter, shown in the key
    /// line, cleared by Esc or by leaving the screen.
    pub filter: String,
    pub filtering: bool,
    /// The caret of the text field that has the keys, in characters from its end.
    pub caret: usize,
    /// The Backups screen's order (`S` steps through [`SORTS`]).
    pub sort: usize,
    pub dialog: Option<Dialog>,
    /// Latest progress per running job.
    pub progress: BTreeMap<String, JobProgress>,
    /// Log screen: the engine's log lines and job ends, newest last.
    pub log: VecDeque<String>,
    /// `local: schedules are not running` or `daemon attached (…)`.
    pub mode: String,
    /// The connection to the engine (attached: the header shows it, and while the daemon is
    /// unreachable what ran there is shown as unknown).
    pub link: Link,
    /// A prune ended: the Retention screen's plan is read again.
    pub preview_stale: bool,
    /// The terminal's size at the last key (a report scrolls by its page).
    pub size: (u16, u16),
    /// The last thing that happened, for a few seconds above the key line (started,
    /// finished, failed, a note), as lazygit does.
    pub flash: Option<(DateTime<Utc>, String)>,
    pub repository: String,
    /// Jobs this console started (quit asks while one runs in-process).
    pub mine: Vec<String>,
    pub detail: bool,
    pub quit: bool,
    /// Latest prune dry run (Retention screen).
    pub preview: Option<Box<PruneReport>>,
    /// Why the model cannot be read right now (shown above the key line).
    pub problem: Option<String>,
    /// The largest tables of the backup whose details are open: its id and the tables (or why
    /// they could not be read).
    pub tables: Option<(String, Result<Vec<crate::engine::TableSize>, String>)>,
    /// The restore wizard's options: skip ownership and privileges, parallel sessions.
    pub restore_options: (bool, Option<usize>),
    /// The restore wizard's point in time (change capture), when one was chosen.
    pub restore_at: Option<DateTime<Utc>>,
    /// What the restore wizard's target database holds now: its name and the facts.
    pub target_facts: Option<(String, Result<crate::engine::TargetFacts, String>)>,
    /// Every table of the backup the restore wizard picks from, by name: its id and the
    /// tables (or why they could not be read).
    pub pick_list: Option<(String, Result<Vec<crate::engine::TableSize>, String>)>,
}

const LOG_LINES: usize = 500;

/// A job in words: its kind, `preview` for a dry run, its source when it has one.
fn job_words(kind: &str, dry_run: bool, source: Option<&str>) -> String {
    let mut w = kind.to_string();
    if dry_run {
        w.push_str(" preview");
    }
    if let Some(s) = source {
        w.push(' ');
        w.push_str(s);
    }
    w
}

impl App {
    pub fn new(repository: String, mode: String) -> Self {
        App {
            screen: 0,
            model: Model::default(),
            sel: [0; 6],
            filter: String::new(),
            filtering: false,
            caret: 0,
            sort: 0,
            dialog: None,
            progress: BTreeMap::new(),
            log: VecDeque::new(),
            mode,
            link: Link::Local,
            size: (MIN_W, MIN_H),
            preview_stale: false,
            flash: None,
            repository,
            mine: vec![],
            detail: false,
            quit: false,
            preview: None,
            problem: None,
            tables: None,
            restore_options: (false, None),
            restore_at: None,
            target_facts: None,
            pick_list: None,
        }
    }

    /// Who has the keyboard now.
    pub fn focus(&self) -> Focus {
        match &self.dialog {
            Some(Dialog::Delete { .. }) => Focus::Text,
            Some(Dialog::Restore { step, .. }) => match step {
                RestoreStep::Name { .. }
                | RestoreStep::Url { .. }
                | RestoreStep::At { .. }
                | RestoreStep::Schema { .. } => Focus::Text,
                RestoreStep::Confirm {
                    overwrite: true, ..
                } => Focus::Text,
                RestoreStep::Tables { typing: true, .. } => Focus::Text,
                _ => Focus::Choice,
            },
            Some(_) => Focus::Choice,
            None if self.filtering => Focus::Text,
            None => Focus::Screens,
        }
    }

    /// Whether a row of the current screen whose words are `words` passes its filter.
    pub fn passes(&self, words: &[&str]) -> bool {
        let f = self.filter.to_lowercase();
        f.is_empty() || words.iter().any(|w| w.to_lowercase().contains(&f))
    }

    /// Backups shown on the Backups screen (filtered), in the chosen order (newest first
    /// unless `S` chose another).
    pub fn backups(&self) -> Vec<&BackupRow> {
        let mut rows: Vec<&BackupRow> = self
            .model
            .rows
            .iter()
            .rev()
            .filter(|b| {
                self.passes(&[
                    &b.id,
                    &b.source,
                    b.kind.as_str(),
                    b.verified_level,
                    b.status,
                ])
            })
            .collect();
        match self.sort {
            1 => rows.reverse(),
            2 => rows.sort_by_key(|b| std::cmp::Reverse(b.stored_bytes)),
            3 => rows.sort_by(|a, b| a.source.cmp(&b.source)),
            _ => {}
        }
        rows
    }

    /// Jobs screen rows: running first, then history newest first.
    pub fn job_ids(&self) -> Vec<String> {
        self.live_jobs()
            .map(|j| j.id.clone())
            .chain(self.past_jobs().map(|j| j.id.clone()))
            .collect()
    }

    /// The running jobs the Jobs screen's filter shows.
    pub fn live_jobs(&self) -> impl Iterator<Item = &JobInfo> {
        self.model.live.iter().filter(|j| {
            self.screen != 2
                || self.passes(&[&j.id, j.kind, j.source.as_deref().unwrap_or(""), "running"])
        })
    }

    /// The job history, newest first, without the jobs still live: a running job's history
    /// record (written when it started) would list it a second time (issue 27, item 3). On
    /// the Jobs screen, only what its filter shows.
    pub fn past_jobs(&self) -> impl Iterator<Item = &crate::engine::history::JobRecord> {
        self.model
            .history
            .iter()
            .rev()
            .filter(|h| !self.model.live.iter().any(|l| l.id == h.id))
            .filter(|h| {
                self.screen != 2
                    || self.passes(&[
                        &h.id,
                        &h.kind,
                        h.source.as_deref().unwrap_or(""),
                        h.status.as_str(),
                        h.error.as_deref().unwrap_or(""),
                        h.started_by.as_deref().unwrap_or(""),
                        h.backup_id.as_deref().unwrap_or(""),
                    ])
            })
    }

    /// The Log screen's lines its filter shows.
    pub fn log_lines(&self) -> Vec<&String> {
        self.log.iter().filter(|l| self.passes(&[l])).collect()
    }

    fn rows_on_screen(&self) -> usize {
        match self.screen {
            0 => self.model.status.len(),
            1 => self.backups().len(),
            2 => self.job_ids().len(),
            3 => self.preview.as_ref().map(|p| p.plan.len()).unwrap_or(0),
            4 => self.model.drills.len(),
            5 => self.log_lines().len(),
            _ => 0,
        }
    }

    /// The selected backup (Backups screen; on Overview the selected source's newest).
    pub fn selected_backup(&self) -> Option<&BackupRow> {
        match self.screen {
            1 => self.backups().get(self.sel[1]).copied(),
            0 => {
                let s = self.model.status.get(self.sel[0])?;
                self.model.rows.iter().rev().find(|b| b.source == s.source)
            }
            _ => None,
        }
    }

    pub fn set_model(&mut self, m: Model) {
        self.model = m;
        let live: Vec<String> = self.model.live.iter().map(|j| j.id.clone()).collect();
        self.progress.retain(|k, _| live.contains(k));
        for j in &self.model.live {
            if let Some(p) = &j.progress {
                self.progress.insert(j.id.clone(), p.clone());
            }
        }
        let n = self.rows_on_screen();
        if self.sel[self.screen] >= n {
            self.sel[self.screen] = n.saturating_sub(1);
        }
    }

    pub fn set_preview(&mut self, r: Result<PruneReport, String>) {
        match r {
            Ok(p) => {
                let p = Box::new(p);
                self.preview = Some(p.clone());
                if let Some(Dialog::Prune { report, .. }) = &mut self.dialog {
                    *report = Some(p);
                }
            }
            Err(e) => {
                if let Some(Dialog::Prune { error, .. }) = &mut self.dialog {
                    *error = Some(e.clone());
                }
                self.push_log(format!("prune preview failed: {e}"));
            }
        }
    }

    pub fn push_log(&mut self, line: String) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// An engine event: progress, log lines, the end of a job this console follows.
    /// Returns whether anything visible changed.
    /// The connection changed. Unreachable: what runs there is unknown (the rows say so);
    /// attached again: the caller re-reads everything. Returns whether it changed.
    pub fn set_link(&mut self, link: Link, now: DateTime<Utc>) -> bool {
        if link == self.link {
            return false;
        }
        let t = now.format("%H:%M:%S");
        let line = match (&self.link, &link) {
            (_, Link::Unreachable { why, .. }) => {
                format!("✗ lost the daemon: {why}; reconnecting")
            }
            (Link::Unreachable { .. }, Link::Attached { host, pid }) => {
                format!("✔ attached to the daemon again (host {host}, pid {pid})")
            }
            _ => String::new(),
        };
        if !line.is_empty() {
            self.push_log(format!("{t} {line}"));
            self.flash = Some((now, line));
        }
        if let Link::Attached { host, pid } = &link {
            self.mode = format!("daemon attached (host {host}, pid {pid})");
        }
        self.link = link;
        true
    }

    /// Since when the daemon has not answered (attached consoles only).
    pub fn unreachable_since(&self) -> Option<DateTime<Utc>> {
        match &self.link {
            Link::Unreachable { since, .. } => Some(*since),
            _ => None,
        }
    }

    /// Show `text` above the key line for a few seconds (and keep it on the Log screen).
    pub fn note(&mut self, now: DateTime<Utc>, text: String) {
        self.push_log(format!("{} {text}", now.format("%H:%M:%S")));
        self.flash = Some((now, text));
    }

    pub fn on_event(&mut self, e: &Event, now: DateTime<Utc>) -> bool {
        let t = now.format("%H:%M:%S");
        match e {
            Event::Progress(p) => {
                self.progress.insert(p.job.clone(), p.clone());
                return true;
            }
            Event::Log { job, message } => {
                if let (
                    Some(Dialog::Drill(DrillStep::Running {
                        job: Some(j),
                        lines,
                        ..
                    })),
                    Some(of),
                ) = (&mut self.dialog, job)
                {
                    if j == of {
                        if let Some(step) = message.strip_prefix("drill: ") {
                            lines.push(step.to_string());
                        }
                    }
                }
                self.push_log(format!(
                    "{t} {}{message}",
                    job.as_deref()
                        .map(|j| format!("[{j}] "))
                        .unwrap_or_default()
                ));
            }
            Event::JobQueued {
                job,
                kind,
                source,
                dry_run,
            } => self.push_log(format!(
                "{t} [{job}] {} queued",
                job_words(kind, *dry_run, source.as_deref())
            )),
            Event::JobStarted {
                job,
                kind,
                source,
                dry_run,
                ..
            } => {
                let what = job_words(kind, *dry_run, source.as_deref());
                self.push_log(format!("{t} [{job}] {what} started"));
                // A preview changes nothing: not worth the flash line.
                if !*dry_run {
                    self.flash = Some((now, format!("▶ {what} started")));
                }
            }
            Event::JobFinished(o) | Event::JobFailed(o) => {
                self.progress.remove(&o.job);
                let status = o.status.as_str().to_string();
                let preview = match &o.result {
                    Some(crate::engine::JobResult::Prune(r)) if r.dry_run => true,
                    Some(crate::engine::JobResult::Prune(_)) => {
                        // What the Retention screen showed is what the prune just did:
                        // read the plan again (issue 27, item 8).
                        self.preview = None;
                        self.preview_stale = true;
                        false
                    }
                    _ => false,
                };
                self.push_log(format!(
                    "{t} [{}] {} {status}{}",
                    o.job,
                    job_words(o.kind, preview, o.source.as_deref()),
                    o.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
                let ok =
                    o.status == crate::engine::history::JobStatus::Completed && o.exit_code == 0;
                let what = format!("{} {}", o.kind, o.source.as_deref().unwrap_or(""));
                if !(preview && ok) {
                    self.flash = Some((
                        now,
                        match (ok, o.error.as_deref()) {
                            (true, _) => format!("✔ {} {status}", what.trim_end()),
                            (false, e) => format!(
                                "✗ {} {status}{}",
                                what.trim_end(),
                                e.map(|e| format!(": {}", e.lines().next().unwrap_or("")))
                                    .unwrap_or_default()
                            ),
                        },
                    ));
                }
                if o.kind == "delete"
                    && o.exit_code != 0
                    && self.mine.contains(&o.job)
                    && self.dialog.is_none()
                {
                    // The engine refused a delete this console asked for: its reason, with the
                    // request field named as this face shows it.
                    let why = o.error.as_deref().unwrap_or(&status);
                    self.dialog = Some(Dialog::Message {
                        title: "Delete refused".into(),
                        text: match o.error_field.as_deref() {
                            Some("confirm") => format!("✗ the id you typed {why}"),
                            _ => format!("✗ {why}"),
                        },
                    });
                }
                if let Some(Dialog::Drill(DrillStep::Running { job: Some(j), .. })) = &self.dialog {
                    if *j == o.job {
                        self.dialog = Some(match &o.result {
                            Some(crate::engine::JobResult::Drill(r)) => Dialog::Report {
                                report: r.clone(),
                                scroll: 0,
                            },
                            _ => Dialog::Message {
                                title: "Drill".into(),
                                text: format!(
                                    "✗ the drill did not run: {}",
                                    o.error.as_deref().unwrap_or(&status)
                                ),
                            },
                        });
                    }
                }
                if let Some(Dialog::Restore {
                    step: RestoreStep::Running { name, job: Some(j) },
                    ..
                }) = &self.dialog
                {
                    if *j == o.job {
                        let text = match (&o.result, &o.error) {
                            (
                                Some(crate::engine::JobResult::Restore {
                                    bytes,
                                    duration_ms: took,
                                    tables,
                                    skipped,
                                    checked,
                                    ..
                                }),
                                None,
                            ) => {
                                let mut t = format!(
                                    "✔ restored into {name}: {} in {} (measured)",
                                    crate::present::human_bytes(*bytes),
                                    duration_ms(*took)
                                );
                                if !tables.is_empty() {
                                    t.push_str(&format!("\ntables: {}", tables.join(", ")));
                                }
                                if *checked > 0 {
                                    t.push_str(&format!(
                                        "\n✔ {checked} checked: rows match the counts and digests recorded at backup time"
                                    ));
                                }
                                for k in skipped.iter().take(3) {
                                    t.push_str(&format!("\nskipped: {k}"));
                                }
                                if skipped.len() > 3 {
                                    t.push_str(&format!("\n… {} more skipped", skipped.len() - 3));
                                }
                                t
                            }
                            (_, Some(_)) if o.exit_code == 2 => {
                                format!("✗ the restore into {name} was refused: {}", in_words(o))
                            }
                            (_, Some(_)) => {
                                format!("✗ the restore into {name} failed: {}", in_words(o))
                            }
                            _ => format!("restore into {name}: {status}"),
                        };
                        self.dialog = Some(Dialog::Message {
                            title: "Restore".into(),
                            text,
                        });
                    }
                }
            }
            Event::BackupAdded { backup, .. } => self.push_log(format!(
                "{t} backup {} of {} added ({})",
                backup.id,
                backup.source,
                crate::present::human_bytes(backup.stored_bytes)
            )),
            Event::BackupDeleted { id, source, .. } => {
                self.push_log(format!("{t} backup {id} of {source} deleted"))
            }
            Event::ConfigChanged => self.push_log(format!("{t} configuration changed")),
            Event::Alert(a) => {
                self.push_log(format!("{t} ALERT {}: {}", a.kind.as_str(), a.message))
            }
        }
        true
    }

    /// The engine's answer to a source check this console asked for.
    pub fn source_checked(
        &mut self,
        source: &str,
        r: std::result::Result<crate::engine::preflight::SourceCheck, String>,
    ) {
        if let Some(Dialog::SourceCheck { source: s, lines }) = &mut self.dialog {
            if s == source {
                *lines = Some(r.map(|c| {
                    crate::present::source_check_text(&c)
                        .lines()
                        .map(str::to_string)
                        .collect()
                }));
            }
        }
    }

    /// Apply `a` on a terminal of `width`×`height`: while the screen is too small to show
    /// anything but the "enlarge the window" line, only quitting acts (a key must never
    /// start work nobody can see — issue 27, item 5).
    pub fn update_on(&mut self, a: Action, width: u16, height: u16) -> Vec<Effect> {
        let hidden = width < MIN_W || height < MIN_H;
        if hidden && !matches!(a, Action::Quit | Action::Interrupt) {
            return vec![];
        }
        self.size = (width, height);
        self.update(a)
    }

    /// Apply `a`; what the engine must do.
    pub fn update(&mut self, a: Action) -> Vec<Effect> {
        let field = self.field_id();
        let effects = self.update_any(a);
        // A field opened anew starts with the caret at its end.
        if self.field_id() != field {
            self.caret = 0;
        }
        effects
    }

    /// Which text field has the keys (a new one resets the caret).
    fn field_id(&self) -> Option<&'static str> {
        match &self.dialog {
            Some(Dialog::Delete { .. }) => Some("delete"),
            Some(Dialog::Restore { step, .. }) => match step {
                RestoreStep::Name { .. } => Some("name"),
                RestoreStep::Confirm {
                    overwrite: true, ..
                } => Some("confirm"),
                RestoreStep::Url { .. } => Some("url"),
                RestoreStep::At { .. } => Some("at"),
                RestoreStep::Schema { .. } => Some("schema"),
                RestoreStep::Tables { typing: true, .. } => Some("tables"),
                _ => None,
            },
            Some(_) => None,
            None => self.filtering.then_some("filter"),
        }
    }

    /// The text field that has the keys, and what it accepts of a typed character (`None`:
    /// refused; database and schema names take only what needs no quoting).
    fn text_field(&mut self) -> Option<(&mut String, Accept)> {
        fn any(c: char) -> Option<char> {
            (!c.is_control()).then_some(c)
        }
        fn db_name(c: char) -> Option<char> {
            (c.is_ascii_alphanumeric() || c == '_' || c == '-').then_some(c)
        }
        fn schema(c: char) -> Option<char> {
            (c.is_ascii_alphanumeric() || c == '_').then_some(c.to_ascii_lowercase())
        }
        match &mut self.dialog {
            Some(Dialog::Delete { typed, .. }) => Some((typed, any)),
            Some(Dialog::Restore { step, .. }) => match step {
                RestoreStep::Name { name, .. } => Some((name, db_name)),
                RestoreStep::Confirm {
                    overwrite: true,
                    typed,
                    ..
                } => Some((typed, any)),
                RestoreStep::Url { text, error } | RestoreStep::At { text, error } => {
                    *error = None;
                    Some((text, any))
                }
                RestoreStep::Schema { name, .. } => Some((name, schema)),
                RestoreStep::Tables {
                    filter,
                    typing: true,
                    sel,
                    ..
                } => {
                    *sel = 0;
                    Some((filter, any))
                }
                _ => None,
            },
            Some(_) => None,
            None if self.filtering => {
                self.sel[self.screen] = 0;
                Some((&mut self.filter, any))
            }
            None => None,
        }
    }

    fn update_any(&mut self, a: Action) -> Vec<Effect> {
        if a == Action::Interrupt {
            return self.ask_quit();
        }
        if self.focus() == Focus::Text && is_edit(&a) {
            let mut caret = self.caret;
            if let Some((text, accept)) = self.text_field() {
                edit(text, &mut caret, &a, accept);
            }
            self.caret = caret;
            return vec![];
        }
        if self.dialog.is_some() {
            return self.update_dialog(a);
        }
        if self.filtering {
            match a {
                Action::Back => {
                    self.filter.clear();
                    self.filtering = false;
                }
                Action::Enter => self.filtering = false,
                _ => {}
            }
            self.sel[self.screen] = 0;
            return vec![];
        }
        // Esc first clears a kept filter (the key line says so while one is kept).
        if a == Action::Back && !self.filter.is_empty() && !self.detail {
            self.filter.clear();
            self.sel[self.screen] = 0;
            return vec![];
        }
        let n = self.rows_on_screen();
        // A page: the rows a table shows at this height (below headers, borders, keys).
        let page = usize::from(self.size.1.saturating_sub(8)).max(1);
        let sel = &mut self.sel[self.screen];
        match a {
            Action::Quit => return self.ask_quit(),
            Action::Screen(i) => {
                let to = i.min(SCREENS.len() - 1);
                if to != self.screen {
                    self.filter.clear();
                }
                self.screen = to;
                self.detail = false;
                if self.screen == 3 {
                    return vec![Effect::PrunePreview];
                }
            }
            Action::NextScreen | Action::PrevScreen => {
                self.screen = if a == Action::NextScreen {
                    (self.screen + 1) % SCREENS.len()
                } else {
                    (self.screen + SCREENS.len() - 1) % SCREENS.len()
                };
                self.detail = false;
                self.filter.clear();
                if self.screen == 3 {
                    return vec![Effect::PrunePreview];
                }
            }
            Action::Down => *sel = (*sel + 1).min(n.saturating_sub(1)),
            Action::Up => *sel = sel.saturating_sub(1),
            Action::Top => *sel = 0,
            Action::Bottom => *sel = n.saturating_sub(1),
            Action::PageDown => *sel = (*sel + page).min(n.saturating_sub(1)),
            Action::PageUp => *sel = sel.saturating_sub(page),
            Action::Enter if self.screen == 4 => {
                let i = self.model.drills.len().saturating_sub(1 + self.sel[4]);
                if let Some(r) = self.model.drills.get(i) {
                    self.dialog = Some(Dialog::Report {
                        report: Box::new(r.clone()),
                        scroll: 0,
                    });
                }
            }
            Action::Enter => {
                self.detail = matches!(self.screen, 1 | 2) && n > 0;
                if self.detail && self.screen == 1 {
                    if let Some(b) = self.selected_backup() {
                        let id = b.id.clone();
                        if self.tables.as_ref().map(|t| &t.0) != Some(&id) {
                            self.tables = None;
                            return vec![Effect::Tables(id)];
                        }
                    }
                }
            }
            Action::Back => self.detail = false,
            Action::Filter if matches!(self.screen, 1 | 2 | 5) && !self.detail => {
                self.filtering = true;
                self.filter.clear();
            }
            Action::Sort if self.screen == 1 => {
                self.sort = (self.sort + 1) % SORTS.len();
                self.sel[1] = 0;
            }
            Action::Help => self.dialog = Some(Dialog::Help),
            Action::Backup => {
                let source = (self.model.sources.len() == 1).then(|| self.model.sources[0].clone());
                if self.model.sources.is_empty() {
                    self.message(
                        "Back up",
                        "no source is configured: add [[sources]] to the configuration",
                    );
                } else {
                    self.dialog = Some(Dialog::Backup { source, sel: 0 });
                }
            }
            Action::Check => {
                let source = match self.screen {
                    0 => self.model.status.get(self.sel[0]).map(|s| s.source.clone()),
                    _ => None,
                }
                .or_else(|| (self.model.sources.len() == 1).then(|| self.model.sources[0].clone()));
                match source {
                    Some(source) => {
                        self.dialog = Some(Dialog::SourceCheck {
                            source: source.clone(),
                            lines: None,
                        });
                        return vec![Effect::SourceCheck(source)];
                    }
                    None => self.message("Check", "select a source on 1 Overview first"),
                }
            }
            Action::Verify => match self.selected_backup() {
                Some(b) => {
                    self.dialog = Some(Dialog::Verify {
                        backup: b.id.clone(),
                        sel: 1,
                    })
                }
                None => self.message("Verify", "select a backup first (2 Backups)"),
            },
            Action::Restore => match self.selected_backup().cloned() {
                Some(b) => {
                    self.restore_options = (false, None);
                    self.restore_at = None;
                    self.target_facts = None;
                    self.dialog = Some(Dialog::Restore {
                        backup: b.id.clone(),
                        source: b.source.clone(),
                        database: b.database.clone(),
                        step: RestoreStep::Mode { overwrite: false },
                    })
                }
                None => self.message("Restore", "select a backup first (2 Backups)"),
            },
            Action::Delete => match self.selected_backup() {
                Some(b) if self.screen == 1 => {
                    self.dialog = Some(Dialog::Delete {
                        id: b.id.clone(),
                        typed: String::new(),
                    })
                }
                _ => self.message("Delete", "select a backup on 2 Backups first"),
            },
            Action::Prune => {
                self.dialog = Some(Dialog::Prune {
                    report: None,
                    error: None,
                });
                return vec![Effect::PrunePreview];
            }
            Action::Cancel if self.unreachable_since().is_some() => self.message(
                "Cancel",
                "the daemon does not answer: nothing can be cancelled until it does (the header says since when)",
            ),
            Action::Cancel => {
                let live = if self.screen == 2 {
                    self.live_jobs().nth(self.sel[2])
                } else {
                    self.model.live.first()
                };
                match live {
                    Some(j) => {
                        self.dialog = Some(Dialog::CancelJob {
                            job: j.id.clone(),
                            what: format!("{} {}", j.kind, j.source.as_deref().unwrap_or("")),
                        })
                    }
                    None => self.message("Cancel", "no job is running"),
                }
            }
            Action::Drill => match self.model.sources.as_slice() {
                [] => self.message(
                    "Drill",
                    "no source is configured: add [[sources]] to the configuration",
                ),
                [one] => {
                    let one = one.clone();
                    self.dialog = Some(Dialog::Drill(self.drill_backup_step(one)));
                }
                _ => self.dialog = Some(Dialog::Drill(DrillStep::Source { sel: 0 })),
            },
            _ => {}
        }
        vec![]
    }

    fn message(&mut self, title: &str, text: &str) {
        self.dialog = Some(Dialog::Message {
            title: title.into(),
            text: text.into(),
        });
    }

    fn ask_quit(&mut self) -> Vec<Effect> {
        let running = self
            .mine
            .iter()
            .any(|j| self.model.live.iter().any(|l| &l.id == j) || self.progress.contains_key(j));
        if running && !matches!(self.dialog, Some(Dialog::Quit)) && self.mode.starts_with("local") {
            self.dialog = Some(Dialog::Quit);
            return vec![];
        }
        self.quit = true;
        vec![Effect::Quit]
    }

    fn update_dialog(&mut self, a: Action) -> Vec<Effect> {
        let Some(d) = self.dialog.take() else {
            return vec![];
        };
        // Esc in the table picker first clears its filter; elsewhere it closes the dialog (a
        // running restore keeps running: Jobs shows it).
        let picker_filtered = matches!(&d, Dialog::Restore {
            step: RestoreStep::Tables { filter, typing, .. }, ..
        } if *typing || !filter.is_empty());
        if a == Action::Back && !picker_filtered {
            return vec![];
        }
        let (keep, effects) = match d {
            Dialog::Help | Dialog::Message { .. } | Dialog::SourceCheck { .. } => (None, vec![]),
            Dialog::Report { report, scroll } => {
                let max = super::report::max_scroll(&report, self.size.1);
                let page = super::report::report_room(self.size.1);
                let scroll = scroll.min(max);
                match a {
                    Action::Down => (
                        Some(Dialog::Report {
                            report,
                            scroll: (scroll + 1).min(max),
                        }),
                        vec![],
                    ),
                    Action::Up => (
                        Some(Dialog::Report {
                            report,
                            scroll: scroll.saturating_sub(1),
                        }),
                        vec![],
                    ),
                    Action::Top => (Some(Dialog::Report { report, scroll: 0 }), vec![]),
                    // The view keeps the last page in sight (it knows the height).
                    Action::Bottom => (
                        Some(Dialog::Report {
                            report,
                            scroll: max,
                        }),
                        vec![],
                    ),
                    Action::PageDown => (
                        Some(Dialog::Report {
                            report,
                            scroll: (scroll + page).min(max),
                        }),
                        vec![],
                    ),
                    Action::PageUp => (
                        Some(Dialog::Report {
                            report,
                            scroll: scroll.saturating_sub(page),
                        }),
                        vec![],
                    ),
                    // Only Esc, q and Enter close it; other keys do nothing (issue 27, item 7:
                    // `G` and `x` closed it).
                    Action::Back | Action::Enter => (None, vec![]),
                    _ => (Some(Dialog::Report { report, scroll }), vec![]),
                }
            }
            Dialog::Drill(step) => {
                let (step, effects) = self.drill_step(step, a);
                (step.map(Dialog::Drill), effects)
            }
            Dialog::Quit => match a {
                Action::Char('y') | Action::Enter => {
                    self.quit = true;
                    (None, vec![Effect::Quit])
                }
                _ => (None, vec![]),
            },
            Dialog::Backup { source: None, sel } => {
                let n = self.model.sources.len();
                match a {
                    Action::Down => (
                        Some(Dialog::Backup {
                            source: None,
                            sel: (sel + 1).min(n - 1),
                        }),
                        vec![],
                    ),
                    Action::Up => (
                        Some(Dialog::Backup {
                            source: None,
                            sel: sel.saturating_sub(1),
                        }),
                        vec![],
                    ),
                    Action::Enter => (
                        Some(Dialog::Backup {
                            source: self.model.sources.get(sel).cloned(),
                            sel: 0,
                        }),
                        vec![],
                    ),
                    _ => (Some(Dialog::Backup { source: None, sel }), vec![]),
                }
            }
            Dialog::Backup {
                source: Some(s),
                sel,
            } => {
                const TYPES: [BackupType; 3] = [
                    BackupType::Full,
                    BackupType::Incremental,
                    BackupType::Differential,
                ];
                let pick = match a {
                    Action::Char('f') => Some(0),
                    Action::Char('i') => Some(1),
                    Action::Char('d') => Some(2),
                    Action::Enter => Some(sel),
                    _ => None,
                };
                match (a, pick) {
                    (_, Some(i)) => (
                        None,
                        vec![Effect::Submit(Command::Backup {
                            source: s,
                            kind: Some(TYPES[i]),
                            verify: None,
                        })],
                    ),
                    (Action::Down, _) => (
                        Some(Dialog::Backup {
                            source: Some(s),
                            sel: (sel + 1).min(2),
                        }),
                        vec![],
                    ),
                    (Action::Up, _) => (
                        Some(Dialog::Backup {
                            source: Some(s),
                            sel: sel.saturating_sub(1),
                        }),
                        vec![],
                    ),
                    _ => (
                        Some(Dialog::Backup {
                            source: Some(s),
                            sel,
                        }),
                        vec![],
                    ),
                }
            }
            Dialog::Verify { backup, sel } => {
                const LEVELS: [Level; 3] = [Level::Structure, Level::Data, Level::Restore];
                let pick = match a {
                    Action::Char('s') => Some(0),
                    Action::Char('d') => Some(1),
                    Action::Char('r') => Some(2),
                    Action::Enter => Some(sel),
                    _ => None,
                };
                match (a, pick) {
                    (_, Some(i)) => (
                        None,
                        vec![Effect::Submit(Command::Verify {
                            target: VerifyTarget::Id(backup),
                            level: LEVELS[i],
                        })],
                    ),
                    (Action::Down, _) => (
                        Some(Dialog::Verify {
                            backup,
                            sel: (sel + 1).min(2),
                        }),
                        vec![],
                    ),
                    (Action::Up, _) => (
                        Some(Dialog::Verify {
                            backup,
                            sel: sel.saturating_sub(1),
                        }),
                        vec![],
                    ),
                    _ => (Some(Dialog::Verify { backup, sel }), vec![]),
                }
            }
            Dialog::CancelJob { job, what } => match a {
                Action::Char('y') => (None, vec![Effect::Cancel(job)]),
                Action::Char('n') | Action::Enter => (None, vec![]),
                _ => (Some(Dialog::CancelJob { job, what }), vec![]),
            },
            Dialog::Delete { id, typed } => match a {
                Action::Enter if crate::engine::ops::delete::confirmed(&id, &id, &typed) => (
                    None,
                    vec![Effect::Submit(Command::Delete {
                        id,
                        force: false,
                        confirm: typed,
                    })],
                ),
                _ => (Some(Dialog::Delete { id, typed }), vec![]),
            },
            Dialog::Prune { report, error } => match a {
                Action::Char('y') if report.is_some() => (
                    None,
                    vec![Effect::Submit(Command::Prune { dry_run: false })],
                ),
                Action::Char('n') => (None, vec![]),
                _ => (Some(Dialog::Prune { report, error }), vec![]),
            },
            Dialog::Restore {
                backup,
                source,
                database,
                step,
            } => {
                let list = match &self.pick_list {
                    Some((id, Ok(l))) if *id == backup => l.as_slice(),
                    _ => &[],
                };
                // How far change capture of this source reaches (a point-in-time restore's
                // latest time), if it captures.
                let reach = self
                    .model
                    .status
                    .iter()
                    .find(|s| s.source == source)
                    .and_then(|s| s.capture.as_ref())
                    .and_then(|c| c.last_commit_at);
                let (step, effects) = restore_step(
                    step,
                    a,
                    Wizard {
                        backup: &backup,
                        source: &source,
                        database: &database,
                        options: &mut self.restore_options,
                        at: &mut self.restore_at,
                        reach,
                        list,
                    },
                );
                match step {
                    Some(s) => (
                        Some(Dialog::Restore {
                            backup,
                            source,
                            database,
                            step: s,
                        }),
                        effects,
                    ),
                    None => (None, effects),
                }
            }
        };
        self.dialog = keep;
        effects
    }

    /// The source's backups for the drill wizard, newest first.
    pub fn drill_backups(&self, source: &str) -> Vec<&BackupRow> {
        self.model
            .rows
            .iter()
            .rev()
            .filter(|b| b.source == source)
            .collect()
    }

    /// The backup step, with the newest proven backup (data or restore) preselected.
    fn drill_backup_step(&self, source: String) -> DrillStep {
        let sel = self
            .drill_backups(&source)
            .iter()
            .position(|b| matches!(b.verified_level, "data" | "restore"))
            .unwrap_or(0);
        DrillStep::Backup { source, sel }
    }

    fn drill_step(&self, step: DrillStep, a: Action) -> (Option<DrillStep>, Vec<Effect>) {
        match step {
            DrillStep::Source { sel } => {
                let n = self.model.sources.len();
                match a {
                    Action::Down => (
                        Some(DrillStep::Source {
                            sel: (sel + 1).min(n.saturating_sub(1)),
                        }),
                        vec![],
                    ),
                    Action::Up => (
                        Some(DrillStep::Source {
                            sel: sel.saturating_sub(1),
                        }),
                        vec![],
                    ),
                    Action::Enter => match self.model.sources.get(sel) {
                        Some(s) => (Some(self.drill_backup_step(s.clone())), vec![]),
                        None => (None, vec![]),
                    },
                    _ => (Some(DrillStep::Source { sel }), vec![]),
                }
            }
            DrillStep::Backup { source, sel } => {
                let list = self.drill_backups(&source);
                match a {
                    Action::Down => (
                        Some(DrillStep::Backup {
                            sel: (sel + 1).min(list.len().saturating_sub(1)),
                            source,
                        }),
                        vec![],
                    ),
                    Action::Up => (
                        Some(DrillStep::Backup {
                            sel: sel.saturating_sub(1),
                            source,
                        }),
                        vec![],
                    ),
                    Action::Enter => match list.get(sel) {
                        Some(b) => (
                            Some(DrillStep::Confirm {
                                backup: b.id.clone(),
                                source,
                            }),
                            vec![],
                        ),
                        None => (Some(DrillStep::Backup { source, sel }), vec![]),
                    },
                    _ => (Some(DrillStep::Backup { source, sel }), vec![]),
                }
            }
            DrillStep::Confirm { source, backup } => match a {
                Action::Enter => (
                    Some(DrillStep::Running {
                        source: source.clone(),
                        backup: backup.clone(),
                        job: None,
                        lines: vec![],
                    }),
                    vec![Effect::Drill { source, backup }],
                ),
                _ => (Some(DrillStep::Confirm { source, backup }), vec![]),
            },
            running @ DrillStep::Running { .. } => (Some(running), vec![]),
        }
    }

    /// A drill job started for the open wizard.
    pub fn drill_started(&mut self, id: String) {
        self.mine.push(id.clone());
        if let Some(Dialog::Drill(DrillStep::Running { job, .. })) = &mut self.dialog {
            *job = Some(id);
        }
    }

    /// A restore job started for the open wizard.
    pub fn restore_started(&mut self, job: String) {
        self.mine.push(job.clone());
        if let Some(Dialog::Restore {
            step: RestoreStep::Running { job: j, .. },
            ..
        }) = &mut self.dialog
        {
            *j = Some(job);
        }
    }
}

/// A reference to a restore or delete request's field as this console's dialogs name it.
fn field_words(field: &str, value: Option<&str>) -> String {
    let words = match field {
        "create" => "\"a new database\"",
        "clean" => "\"replace its objects\"",
        "confirm" => "its name typed again",
        "tables" => "a choice of tables",
        "schemas" => "a choice of schemas",
        "exclude_schemas" => "schemas left out",
        "into_schema" => "a new schema",
        "jobs" => "parallel sessions",
        "target" => "the URL",
        f => f,
    };
    match value {
        Some(v) => format!("{words} ({v})"),
        None => words.to_string(),
    }
}

/// A job's error as this console words it: the request field it is about, and the fields
/// it names, in the dialogs' words.
fn in_words(o: &crate::engine::JobOutcome) -> String {
    let e = o.error_in(field_words).unwrap_or_default();
    // "is needed: …" reads as a sentence about the field; other messages stand alone.
    match o.error_field.as_deref() {
        Some(f)
            if ["is needed", "must ", "needs "]
                .iter()
                .any(|p| e.starts_with(p)) =>
        {
            format!("{} {e}", field_words(f, None))
        }
        _ => e,
    }
}

/// The restore wizard's next step; `None` closes it.
/// What the restore wizard's steps work with.
struct Wizard<'a> {
    backup: &'a str,
    source: &'a str,
    database: &'a str,
    options: &'a mut (bool, Option<usize>),
    /// The point in time chosen (change capture).
    at: &'a mut Option<DateTime<Utc>>,
    /// How far change capture of the source reaches now.
    reach: Option<DateTime<Utc>>,
    list: &'a [crate::engine::TableSize],
}

fn restore_step(step: RestoreStep, a: Action, w: Wizard<'_>) -> (Option<RestoreStep>, Vec<Effect>) {
    let Wizard {
        backup,
        source,
        database,
        options,
        at,
        reach,
        list,
    } = w;
    match step {
        RestoreStep::Mode { overwrite } => match a {
            Action::Up | Action::Down => (
                Some(RestoreStep::Mode {
                    overwrite: !overwrite,
                }),
                vec![],
            ),
            Action::Char('n') => (Some(RestoreStep::Mode { overwrite: false }), vec![]),
            Action::Char('o') => (Some(RestoreStep::Mode { overwrite: true }), vec![]),
            Action::Char('u') => (
                Some(RestoreStep::Url {
                    text: "postgres://".into(),
                    error: None,
                }),
                vec![],
            ),
            // A point in time: this backup, then the changes captured after it.
            Action::Char('p') => (
                Some(RestoreStep::At {
                    text: reach
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default(),
                    error: None,
                }),
                vec![],
            ),
            Action::Char('t') => (
                Some(RestoreStep::Tables {
                    sel: 0,
                    picked: BTreeSet::new(),
                    filter: String::new(),
                    typing: false,
                }),
                vec![Effect::TableList(backup.to_string())],
            ),
            Action::Enter => {
                *at = None;
                (
                    Some(RestoreStep::Name {
                        overwrite,
                        name: if overwrite {
                            String::new()
                        } else {
                            format!("{database}_restored")
                        },
                    }),
                    vec![],
                )
            }
            _ => (Some(RestoreStep::Mode { overwrite }), vec![]),
        },
        RestoreStep::Name { overwrite, name } => match a {
            Action::Enter if !name.is_empty() => {
                (Some(RestoreStep::Options { overwrite, name }), vec![])
            }
            _ => (Some(RestoreStep::Name { overwrite, name }), vec![]),
        },
        RestoreStep::Options { overwrite, name } => {
            match a {
                Action::Char('o') => options.0 = !options.0,
                Action::Char('+') | Action::Up => {
                    options.1 = Some(options.1.map_or(2, |j| (j + 1).min(32)))
                }
                Action::Char('-') | Action::Down => {
                    options.1 = match options.1 {
                        Some(j) if j > 1 => Some(j - 1),
                        Some(_) => None,
                        None => Some(1),
                    }
                }
                Action::Char('a') => options.1 = None,
                Action::Enter => {
                    return (
                        Some(RestoreStep::Confirm {
                            overwrite,
                            name: name.clone(),
                            typed: String::new(),
                        }),
                        vec![Effect::InspectTarget {
                            source: source.to_string(),
                            db: name,
                        }],
                    )
                }
                _ => {}
            }
            (Some(RestoreStep::Options { overwrite, name }), vec![])
        }
        RestoreStep::Confirm {
            overwrite,
            name,
            typed,
        } => match a {
            Action::Enter if !overwrite || typed == name => (
                Some(RestoreStep::Running {
                    name: name.clone(),
                    job: None,
                }),
                vec![Effect::Restore {
                    backup: backup.to_string(),
                    source: source.to_string(),
                    db: name,
                    overwrite,
                    no_owner: options.0,
                    jobs: options.1,
                    at: *at,
                }],
            ),
            _ => (
                Some(RestoreStep::Confirm {
                    overwrite,
                    name,
                    typed,
                }),
                vec![],
            ),
        },
        RestoreStep::Url { text, error } => match a {
            Action::Enter => match url_target(&text) {
                Ok((server, db)) => (
                    Some(RestoreStep::ConfirmUrl {
                        url: text,
                        server,
                        db,
                    }),
                    vec![],
                ),
                Err(e) => (
                    Some(RestoreStep::Url {
                        text,
                        error: Some(e),
                    }),
                    vec![],
                ),
            },
            _ => (Some(RestoreStep::Url { text, error }), vec![]),
        },
        RestoreStep::At { text, error } => match a {
            Action::Enter => match parse_time(&text, Utc::now()) {
                Ok(t) => {
                    *at = Some(t);
                    (
                        Some(RestoreStep::Name {
                            overwrite: false,
                            name: format!("{database}_at_{}", t.format("%H%M%S")),
                        }),
                        vec![],
                    )
                }
                Err(e) => (
                    Some(RestoreStep::At {
                        text,
                        error: Some(e),
                    }),
                    vec![],
                ),
            },
            _ => (Some(RestoreStep::At { text, error }), vec![]),
        },
        RestoreStep::ConfirmUrl { url, server, db } => match a {
            Action::Enter => (
                Some(RestoreStep::Running {
                    name: db.clone(),
                    job: None,
                }),
                vec![Effect::RestoreUrl {
                    backup: backup.to_string(),
                    url,
                }],
            ),
            _ => (Some(RestoreStep::ConfirmUrl { url, server, db }), vec![]),
        },
        RestoreStep::Tables {
            mut sel,
            mut picked,
            mut filter,
            mut typing,
        } => {
            let shown = picked_rows(list, &filter);
            let last = shown.len().saturating_sub(1);
            match a {
                // Esc while typing leaves the filter line; the wizard's Esc is handled above.
                Action::Back => {
                    typing = false;
                    filter.clear();
                    sel = 0;
                }
                Action::Enter if typing => typing = false,
                Action::Char('/') => {
                    typing = true;
                    filter.clear();
                    sel = 0;
                }
                Action::Down => sel = (sel + 1).min(last),
                Action::Up => sel = sel.saturating_sub(1),
                Action::Top => sel = 0,
                Action::Bottom => sel = last,
                Action::PageDown => sel = (sel + 10).min(last),
                Action::PageUp => sel = sel.saturating_sub(10),
                Action::Char(' ') | Action::Char('x') => {
                    if let Some(i) = shown.get(sel) {
                        if !picked.remove(i) {
                            picked.insert(*i);
                        }
                    }
                }
                Action::Enter if !picked.is_empty() => {
                    let tables = picked
                        .iter()
                        .filter_map(|i| list.get(*i))
                        .map(|t| (t.schema.clone(), t.table.clone()))
                        .collect();
                    // The backup's day: a name that says where the rows came from.
                    let day: String = backup.chars().take(8).collect();
                    return (
                        Some(RestoreStep::Schema {
                            tables,
                            name: format!("restored_{day}"),
                        }),
                        vec![],
                    );
                }
                _ => {}
            }
            (
                Some(RestoreStep::Tables {
                    sel,
                    picked,
                    filter,
                    typing,
                }),
                vec![],
            )
        }
        RestoreStep::Schema { tables, name } => match a {
            Action::Enter if !name.is_empty() && !name.starts_with("pg_") => (
                Some(RestoreStep::ConfirmTables {
                    tables,
                    schema: name,
                }),
                vec![],
            ),
            _ => (Some(RestoreStep::Schema { tables, name }), vec![]),
        },
        RestoreStep::ConfirmTables { tables, schema } => match a {
            Action::Enter => (
                Some(RestoreStep::Running {
                    name: format!("{database}, schema {schema}"),
                    job: None,
                }),
                vec![Effect::RestoreTables {
                    backup: backup.to_string(),
                    source: source.to_string(),
                    db: database.to_string(),
                    tables,
                    into_schema: schema,
                }],
            ),
            _ => (Some(RestoreStep::ConfirmTables { tables, schema }), vec![]),
        },
        RestoreStep::Running { name, job } => (Some(RestoreStep::Running { name, job }), vec![]),
    }
}

/// A typed restore target: `user@host:port` and the new database's name, or what is wrong.
/// Never a password: whoever restores connects with its own credentials.
pub fn url_target(text: &str) -> Result<(String, String), String> {
    let ci = crate::pg::conninfo::ConnInfo::parse(text)?;
    if ci.password.is_some() {
        return Err(
            "no password in the URL: the restore connects with its own credentials (~/.pgpass, PGPASSWORD)"
                .into(),
        );
    }
    crate::pg::conninfo::check_dbname(&ci.dbname)
        .map_err(|e| format!("the URL's database name: {e}"))?;
    Ok((format!("{}@{}:{}", ci.user, ci.host, ci.port), ci.dbname))
}

pub use crate::units::{duration, duration_ms};

/// A time typed in the console (UTC): RFC 3339, `YYYY-MM-DD HH:MM[:SS]`, or `HH:MM[:SS]` of
/// today (by `now`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Ok(d.and_utc());
        }
    }
    for f in ["%H:%M:%S%.f", "%H:%M"] {
        if let Ok(tm) = chrono::NaiveTime::parse_from_str(t, f) {
            return Ok(now.date_naive().and_time(tm).and_utc());
        }
    }
    Err(format!(
        "\"{t}\" is not a time: 14:05, 14:05:30, 2026-12-08 14:05 or 2026-12-08T14:05:00Z (UTC)"
    ))
}

/// The orders of the Backups screen, as its title names them.
pub const SORTS: [&str; 4] = ["newest first", "oldest first", "largest first", "by source"];

/// The rows of the table picker that `filter` shows: indexes into `list`.
pub fn picked_rows(list: &[crate::engine::TableSize], filter: &str) -> Vec<usize> {
    let f = filter.to_lowercase();
    list.iter()
        .enumerate()
        .filter(|(_, t)| {
            f.is_empty()
                || format!("{}.{}", t.schema, t.table)
                    .to_lowercase()
                    .contains(&f)
        })
        .map(|(i, _)| i)
        .collect()
}

/// What a text field makes of a typed character (`None`: refused).
type Accept = fn(char) -> Option<char>;

/// Whether `a` edits a text field.
fn is_edit(a: &Action) -> bool {
    matches!(
        a,
        Action::Char(_)
            | Action::Backspace
            | Action::Left
            | Action::Right
            | Action::Top
            | Action::Bottom
            | Action::ClearLine
            | Action::DeleteWord
    )
}

/// Edit `text` by `a`, with the caret `back` characters from its end (as a shell's line
/// editor: Ctrl-U deletes to the start, Ctrl-W the word before the caret).
pub fn edit(text: &mut String, back: &mut usize, a: &Action, accept: Accept) {
    let mut chars: Vec<char> = text.chars().collect();
    let mut at = chars.len() - (*back).min(chars.len());
    match a {
        Action::Char(c) => {
            if let Some(c) = accept(*c) {
                chars.insert(at, c);
                at += 1;
            }
        }
        Action::Backspace if at > 0 => {
            chars.remove(at - 1);
            at -= 1;
        }
        Action::Left => at = at.saturating_sub(1),
        Action::Right => at = (at + 1).min(chars.len()),
        Action::Top => at = 0,
        Action::Bottom => at = chars.len(),
        Action::ClearLine => {
            chars.drain(..at);
            at = 0;
        }
        Action::DeleteWord => {
            let word = |c: &char| c.is_alphanumeric() || *c == '_';
            let mut from = at;
            while from > 0 && !word(&chars[from - 1]) {
                from -= 1;
            }
            while from > 0 && word(&chars[from - 1]) {
                from -= 1;
            }
            chars.drain(from..at);
            at = from;
        }
        _ => {}
    }
    *back = chars.len() - at;
    *text = chars.into_iter().collect();
}

/// `text` with the caret drawn `back` characters from its end.
pub fn with_caret(text: &str, back: usize) -> String {
    let n = text.chars().count();
    let at = n - back.min(n);
    let mut s: String = text.chars().take(at).collect();
    s.push('▏');
    s.extend(text.chars().skip(at));
    s
}

/// The smallest terminal the console draws its screens on (below it: one line asking for
/// a larger window, and only quitting acts).
pub const MIN_W: u16 = 80;
pub const MIN_H: u16 = 24;
