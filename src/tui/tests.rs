//! Screens and dialogs drawn on ratatui's `TestBackend` with a fixed clock and fixed data,
//! compared with insta snapshots (80×24 and 120×40); key → action → state → effect; colour
//! only adds (with `NO_COLOR` no cell has a colour, and every state still has its word or
//! symbol).

use chrono::{DateTime, TimeZone, Utc};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use super::app::{App, Dialog, DrillStep, Effect, Model, RestoreStep};
use super::keys::{self, Action};
use super::view::{self, Theme};
use crate::core::drill::{Check, DrillReport, DrillResult, Outcome, Step};
use crate::core::format::BackupType;
use crate::core::progress::{Phase, Progress};
use crate::core::verify::VerifyRecord;
use crate::engine::history::{JobRecord, JobStatus};
use crate::engine::{BackupRow, Command, JobInfo, JobProgress, JobState, SourceStatus};
use crate::model::Level;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 14, 2, 0)
        .single()
        .expect("time")
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, h, m, 0)
        .single()
        .expect("time")
}

fn row(
    id: &str,
    source: &str,
    kind: BackupType,
    start: DateTime<Utc>,
    level: &'static str,
) -> BackupRow {
    BackupRow {
        id: id.into(),
        source: source.into(),
        kind,
        status: "completed",
        started_at: start,
        finished_at: start + chrono::Duration::seconds(74),
        logical_bytes: 2_400_000_000,
        stored_bytes: if kind == BackupType::Full {
            610_000_000
        } else {
            24_000_000
        },
        verified_level: level,
        verified_at: (level != "none").then_some(start + chrono::Duration::minutes(5)),
        restore_ms: (level == "restore").then_some(252_000),
        database: source.into(),
        server_version: "16.4".into(),
        based_on: None,
        tables: 52,
    }
}

fn record(
    id: &str,
    level: Level,
    finished: DateTime<Utc>,
    restore_ms: Option<u64>,
    problem: Option<&str>,
) -> VerifyRecord {
    VerifyRecord {
        backup_id: id.into(),
        source: "wedsync".into(),
        level,
        passed: problem.is_none().then_some(level),
        ok: problem.is_none(),
        started_at: finished - chrono::Duration::minutes(2),
        finished_at: finished,
        duration_ms: 120_000,
        problems: problem.map(|p| vec![p.to_string()]).unwrap_or_default(),
        restore_ms,
        logical_bytes: 2_400_000_000,
        amcheck: None,
        tables_compared: 52,
        not_proven: None,
        stand_in_roles: vec![],
        not_covered: vec![],
        unreadable: false,
    }
}

fn status(source: &str) -> SourceStatus {
    SourceStatus {
        source: source.into(),
        last_backup_id: Some(format!("20261202T114800Z-{source}")),
        last_backup_type: Some(BackupType::Incremental),
        last_backup_at: Some(at(11, 48)),
        last_backup_age_s: Some(8040),
        last_verified_id: Some(format!("20261202T114800Z-{source}")),
        last_verified_level: Some("restore"),
        last_verified_backup_at: Some(at(11, 48)),
        damaged: vec![],
        rpo_s: Some(26 * 3600),
        rpo_state: "ok",
        restore_ms: Some(252_000),
        restore_measured_bytes: Some(2_400_000_000),
        next_runs: vec![at(15, 0)],
        last_failed_job: None,
        capture: None,
    }
}

/// Three sources (ok, breach, failed), six backups, one running backup with progress.
fn app() -> App {
    let mut a = App::new(
        "s3://backups/prod".into(),
        "local: schedules are not running".into(),
    );
    let mut vendors = status("vendors");
    vendors.rpo_state = "breach";
    vendors.last_backup_type = Some(BackupType::Full);
    vendors.last_backup_at = Some(at(11, 2) - chrono::Duration::hours(24));
    vendors.last_verified_level = Some("data");
    vendors.last_verified_backup_at = vendors.last_backup_at;
    vendors.restore_ms = Some(63_000);
    let mut photos = status("photos");
    let mut failed = JobRecord::new(
        "20261202T132200.000Z-aa11bb",
        "backup",
        Some("photos"),
        "s3://backups/prod",
    );
    failed.status = JobStatus::Failed;
    failed.started_at = at(13, 22);
    failed.finished_at = Some(at(13, 32));
    failed.pid = 4242;
    failed.error = Some(
        "pg_dump: could not obtain lock on relation \"uploads\" ([backup] lock_wait_timeout 10m)"
            .into(),
    );
    photos.last_failed_job = Some(failed.clone());
    let mut done = JobRecord::new(
        "20261202T114800.000Z-cc22dd",
        "backup",
        Some("wedsync"),
        "s3://backups/prod",
    );
    done.status = JobStatus::Completed;
    done.started_at = at(11, 48);
    done.finished_at = Some(at(11, 49));
    done.pid = 4242;
    done.backup_id = Some("20261202T114800Z-wedsync".into());
    let rows = vec![
        row(
            "20261129T030000Z-0a1b2c",
            "wedsync",
            BackupType::Full,
            at(3, 0) - chrono::Duration::days(3),
            "restore",
        ),
        row(
            "20261201T030000Z-3d4e5f",
            "vendors",
            BackupType::Full,
            at(11, 2) - chrono::Duration::hours(24),
            "data",
        ),
        row(
            "20261202T030000Z-6a7b8c",
            "photos",
            BackupType::Full,
            at(3, 0),
            "failed",
        ),
        row(
            "20261202T090000Z-9d0e1f",
            "wedsync",
            BackupType::Incremental,
            at(9, 0),
            "none",
        ),
        row(
            "20261202T114800Z-wedsync",
            "wedsync",
            BackupType::Incremental,
            at(11, 48),
            "restore",
        ),
    ];
    let live = vec![JobInfo {
        id: "20261202T140100.000Z-ee33ff".into(),
        kind: "backup",
        source: Some("vendors".into()),
        state: JobState::Running,
        queued_at: at(14, 1),
        parent: None,
        progress: Some(JobProgress {
            job: "20261202T140100.000Z-ee33ff".into(),
            progress: Progress {
                operation: "backup",
                source: "vendors".into(),
                phase: Phase::Dumping,
                bytes_done: 1_900_000_000,
                bytes_expected: Some(3_100_000_000),
                rate: 41_000_000.0,
                current_table: Some("public.contracts".into()),
                elapsed_ms: 46_000,
                storage_retries: 0,
            },
        }),
    }];
    let audit_line =
        |seq: u64, m: u32, actor: &str, action: &str, target: &str, outcome: &str, code: u16| {
            crate::engine::audit::Line {
                seq,
                time: at(13, m),
                entry: crate::engine::audit::Entry {
                    actor: actor.into(),
                    role: "admin".into(),
                    via: "socket".into(),
                    action: action.into(),
                    target: Some(target.into()),
                    params: serde_json::json!({}),
                    outcome: outcome.into(),
                    code,
                    job: None,
                    reason: None,
                },
                prev: String::new(),
                hash: String::new(),
            }
        };
    a.set_model(Model {
        audit: Some(vec![
            audit_line(41, 40, "oncall", "backup", "vendors", "accepted", 202),
            audit_line(
                42,
                45,
                "grafana",
                "delete",
                "20261129T030000Z-0a1b2c",
                "refused",
                403,
            ),
        ]),
        drills: vec![
            drill(
                "20261125T040000Z-d1d1d1",
                "wedsync",
                DrillResult::Passed,
                at(4, 0) - chrono::Duration::days(7),
                281_000,
            ),
            drill(
                "20261202T040000Z-d2d2d2",
                "vendors",
                DrillResult::Failed,
                at(4, 0),
                64_000,
            ),
            drill(
                "20261202T050000Z-d3d3d3",
                "wedsync",
                DrillResult::Passed,
                at(5, 0),
                262_000,
            ),
        ],
        status: vec![status("wedsync"), vendors, photos],
        rows,
        unreadable: 0,
        live,
        history: vec![done, failed],
        sources: vec!["wedsync".into(), "vendors".into(), "photos".into()],
        policy: vec![
            "keep 7 daily".into(),
            "keep 4 weekly".into(),
            "never fewer than 2 proven per source".into(),
        ],
        servers: [("wedsync".to_string(), "ops@db-prod-2:5432".to_string())]
            .into_iter()
            .collect(),
        records: [
            (
                "20261202T114800Z-wedsync".to_string(),
                vec![
                    record(
                        "20261202T114800Z-wedsync",
                        Level::Data,
                        at(11, 50),
                        None,
                        None,
                    ),
                    record(
                        "20261202T114800Z-wedsync",
                        Level::Restore,
                        at(11, 58),
                        Some(252_000),
                        None,
                    ),
                ],
            ),
            (
                "20261202T030000Z-6a7b8c".to_string(),
                vec![record(
                    "20261202T030000Z-6a7b8c",
                    Level::Data,
                    at(3, 10),
                    None,
                    Some(
                        "pack packs/3f/3f9a…: 2 chunk(s) fail authentication (damaged or swapped)",
                    ),
                )],
            ),
        ]
        .into_iter()
        .collect(),
    });
    a
}

/// A drill report: passed, or failed on its smoke check.
fn drill(
    id: &str,
    source: &str,
    result: DrillResult,
    started: DateTime<Utc>,
    rto: u64,
) -> DrillReport {
    let failed = result == DrillResult::Failed;
    DrillReport {
        id: id.into(),
        result,
        exit_code: result.exit_code(),
        summary: if failed {
            "1 of 3 checks failed: contracts signed (expected > 0, found 0).".into()
        } else {
            format!("Backup restored and passed all 3 checks; recovery took {rto} ms.")
        },
        started_at: started,
        finished_at: started + chrono::Duration::milliseconds(rto as i64 + 2000),
        actor: "oncall (console)".into(),
        host: "backup-01".into(),
        keepsake_version: "0.1.0".into(),
        source: source.into(),
        backup_id: Some("20261202T030000Z-6a7b8c".into()),
        backup_type: Some(BackupType::Full),
        backup_taken_at: Some(started - chrono::Duration::hours(1)),
        backup_proven: Some("data".into()),
        logical_bytes: Some(2_400_000_000),
        identity: "configured identity".into(),
        key_fingerprint: Some("ks1:0011".into()),
        target: Some("postgres@scratch:5432/keepsake_drill_x".into()),
        steps: ["preflight: key", "restore", "checks", "cleanup"]
            .iter()
            .map(|n| Step {
                name: n.to_string(),
                outcome: if failed && *n == "checks" {
                    Outcome::Failed
                } else {
                    Outcome::Passed
                },
                started_at: started,
                duration_ms: if *n == "restore" { rto - 9000 } else { 1200 },
                detail: String::new(),
            })
            .collect(),
        checks: vec![Check {
            name: "contracts signed".into(),
            kind: "query".into(),
            outcome: if failed {
                Outcome::Failed
            } else {
                Outcome::Passed
            },
            duration_ms: 12,
            detail: if failed {
                "expected > 0, found 0".into()
            } else {
                String::new()
            },
            sql: Some("SELECT count(*) FROM contracts WHERE signed".into()),
            expect: Some("> 0".into()),
            value: Some(if failed { "0" } else { "212" }.into()),
        }],
        rto_ms: Some(rto),
        restore_ms: Some(rto - 9000),
        rpo_s: Some(3600),
        rto_target_s: Some(300),
        rpo_target_s: Some(26 * 3600),
    }
}

fn draw(a: &App, w: u16, h: u16, theme: Theme) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| view::draw(f, a, now(), theme)).expect("draw");
    t
}

fn screen(a: &App, w: u16, h: u16) -> String {
    draw(a, w, h, Theme { color: false }).backend().to_string()
}

fn press(a: &mut App, c: KeyCode) -> Vec<Effect> {
    let act = keys::action(KeyEvent::new(c, KeyModifiers::NONE), a.focus()).expect("an action");
    a.update(act)
}

fn typed(a: &mut App, s: &str) {
    for c in s.chars() {
        press(a, KeyCode::Char(c));
    }
}

#[test]
fn screens_at_80x24_and_120x40() {
    for (w, h) in [(80, 24), (120, 40)] {
        let mut a = app();
        a.set_preview(Ok(crate::core::prune::PruneReport {
            dry_run: true,
            plan: a
                .model
                .rows
                .iter()
                .rev()
                .enumerate()
                .map(|(i, b)| crate::core::retention::Decision {
                    id: b.id.clone(),
                    source: b.source.clone(),
                    keep: i < 4,
                    reasons: if i < 4 {
                        vec!["daily 2026-12-02".into()]
                    } else {
                        vec![]
                    },
                })
                .collect(),
            forgotten: vec![],
            marked: vec![],
            waiting: vec![],
            deleted_packs: vec![],
            deleted_bytes: 0,
            stale_temporaries: 0,
            forgotten_segments: 0,
            gc_skipped: None,
        }));
        for (i, name) in ["overview", "backups", "jobs", "retention", "drills", "log"]
            .iter()
            .enumerate()
        {
            a.screen = i;
            if i == 5 {
                a.push_log("14:01:00 [20261202T140100.000Z-ee33ff] backup vendors started".into());
            }
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(&a, w, h));
        }
    }
}

#[test]
fn dialogs_at_80x24() {
    let mut a = app();
    a.screen = 1;
    a.sel[1] = 0;
    let cases: Vec<(&str, Dialog)> = vec![
        ("help", Dialog::Help),
        (
            "backup_source",
            Dialog::Backup {
                source: None,
                sel: 1,
            },
        ),
        (
            "backup_type",
            Dialog::Backup {
                source: Some("wedsync".into()),
                sel: 0,
            },
        ),
        (
            "verify",
            Dialog::Verify {
                backup: "20261202T114800Z-wedsync".into(),
                sel: 2,
            },
        ),
        (
            "delete",
            Dialog::Delete {
                id: "20261202T114800Z-wedsync".into(),
                typed: "20261202T11".into(),
            },
        ),
        (
            "cancel",
            Dialog::CancelJob {
                job: "20261202T140100.000Z-ee33ff".into(),
                what: "backup vendors".into(),
            },
        ),
        (
            "restore_overwrite",
            Dialog::Restore {
                backup: "20261202T114800Z-wedsync".into(),
                source: "wedsync".into(),
                database: "wedsync".into(),
                step: RestoreStep::Confirm {
                    overwrite: true,
                    name: "wedsync".into(),
                    typed: "wedsy".into(),
                },
            },
        ),
        (
            "restore_new",
            Dialog::Restore {
                backup: "20261202T114800Z-wedsync".into(),
                source: "wedsync".into(),
                database: "wedsync".into(),
                step: RestoreStep::Confirm {
                    overwrite: false,
                    name: "wedsync_restored".into(),
                    typed: String::new(),
                },
            },
        ),
        ("quit", Dialog::Quit),
        (
            "drill_backup",
            Dialog::Drill(DrillStep::Backup {
                source: "wedsync".into(),
                sel: 1,
            }),
        ),
        (
            "drill_confirm",
            Dialog::Drill(DrillStep::Confirm {
                source: "wedsync".into(),
                backup: "20261202T114800Z-wedsync".into(),
            }),
        ),
        (
            "drill_running",
            Dialog::Drill(DrillStep::Running {
                source: "wedsync".into(),
                backup: "20261202T114800Z-wedsync".into(),
                job: Some("20261202T140100.000Z-ee33ff".into()),
                lines: vec![
                    "preflight: key ✔ passed: configured identity opens the repository".into(),
                    "preflight: backup ✔ passed".into(),
                    "restore …".into(),
                ],
            }),
        ),
        (
            "drill_report",
            Dialog::Report {
                report: Box::new(a.model.drills[1].clone()),
                scroll: 0,
            },
        ),
    ];
    for (name, d) in cases {
        a.dialog = Some(d);
        insta::assert_snapshot!(format!("dialog_{name}"), screen(&a, 80, 24));
        insta::assert_snapshot!(format!("dialog_{name}_120x40"), screen(&a, 120, 40));
    }
}

#[test]
fn backup_details_and_filter() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "vendors");
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.backups().len(), 1);
    insta::assert_snapshot!("backups_filtered", screen(&a, 80, 24));
    let e = press(&mut a, KeyCode::Enter);
    assert!(a.detail);
    let id = a.backups()[0].id.clone();
    assert_eq!(
        e,
        vec![Effect::Tables(id.clone())],
        "details read the tables"
    );
    let mut job = JobRecord::new(
        "20261201T030000.000Z-aa00bb",
        "backup",
        Some("vendors"),
        "s3://backups/prod",
    );
    job.backup_id = Some(id.clone());
    job.started_by = Some("schedule".into());
    a.model.history.push(job);
    a.tables = Some((
        id,
        Ok(vec![
            crate::engine::TableSize {
                name: "public.contracts".into(),
                schema: "public".into(),
                table: "contracts".into(),
                rows: 1_520_000,
                bytes: 2_100_000_000,
            },
            crate::engine::TableSize {
                name: "public.vendors".into(),
                schema: "public".into(),
                table: "vendors".into(),
                rows: 3_000,
                bytes: 900_000,
            },
        ]),
    ));
    let s = screen(&a, 80, 24);
    assert!(s.contains("started by schedule"), "{s}");
    assert!(s.contains("public.contracts 1.5M rows 2.0 GiB"), "{s}");
    insta::assert_snapshot!("backup_detail", s);
    // The verification history, newest first, with the measured restore time.
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Enter);
    let s = screen(&a, 80, 24);
    assert!(s.contains("2 run(s), newest first"), "{s}");
    assert!(s.contains("restore   ✔ proven · restore 4m12s"), "{s}");
    insta::assert_snapshot!("backup_detail_verifications", s);
}

#[test]
fn too_small_a_terminal_says_so() {
    let s = screen(&app(), 60, 20);
    assert!(s.contains("at least 80×24"), "{s}");
}

/// Regression (issue 27, item 5): at 60×20 `b i` started a backup nobody could see.
#[test]
fn keys_do_nothing_while_the_screen_is_too_small_but_quit() {
    let mut a = app();
    assert!(a.update_on(Action::Backup, 60, 20).is_empty());
    assert!(a.dialog.is_none(), "no dialog opened behind the notice");
    assert!(a.update_on(Action::Screen(3), 79, 24).is_empty());
    assert_eq!(a.screen, 0, "no screen change behind the notice");
    assert_eq!(
        a.update_on(Action::Quit, 60, 20),
        vec![Effect::Quit],
        "q still quits"
    );
    a.update_on(Action::Backup, 80, 24);
    assert!(
        a.dialog.is_some(),
        "at 80×24 the same key opens the backup dialog"
    );
}

#[test]
fn no_color_means_no_colour_and_every_state_has_a_word() {
    let a = app();
    let plain = draw(&a, 120, 40, Theme { color: false });
    for cell in plain.backend().buffer().content() {
        assert_eq!(
            cell.fg,
            ratatui::style::Color::Reset,
            "a coloured cell with NO_COLOR"
        );
        assert_eq!(cell.bg, ratatui::style::Color::Reset);
    }
    let coloured = draw(&a, 120, 40, Theme { color: true });
    assert!(coloured
        .backend()
        .buffer()
        .content()
        .iter()
        .any(|c| c.fg != ratatui::style::Color::Reset));
    let text = plain.backend().to_string();
    for word in [
        "✔ wedsync",
        "ok",
        "⚠ vendors",
        "breach",
        "✗ photos",
        "failed",
        "● backup vendors",
    ] {
        assert!(text.contains(word), "{word} missing:\n{text}");
    }
}

#[test]
fn backup_key_picks_source_and_type_then_submits() {
    let mut a = app();
    assert!(press(&mut a, KeyCode::Char('b')).is_empty());
    assert!(matches!(
        a.dialog,
        Some(Dialog::Backup { source: None, .. })
    ));
    press(&mut a, KeyCode::Down);
    assert!(press(&mut a, KeyCode::Enter).is_empty());
    let e = press(&mut a, KeyCode::Char('f'));
    assert_eq!(
        e,
        vec![Effect::Submit(Command::Backup {
            source: "vendors".into(),
            kind: Some(BackupType::Full),
            verify: None
        })]
    );
    assert!(a.dialog.is_none());
}

#[test]
fn delete_needs_the_typed_id() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('d'));
    let Some(Dialog::Delete { id, .. }) = a.dialog.clone() else {
        panic!("no delete dialog: {:?}", a.dialog)
    };
    assert!(
        press(&mut a, KeyCode::Enter).is_empty(),
        "nothing typed: no delete"
    );
    typed(&mut a, &id[..10]);
    assert!(
        press(&mut a, KeyCode::Enter).is_empty(),
        "a prefix is not the id"
    );
    typed(&mut a, &id[10..]);
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        vec![Effect::Submit(Command::Delete {
            id: id.clone(),
            force: false,
            confirm: id.clone()
        })]
    );
    // The short form the screens show confirms too (the same rule as the CLI's --confirm).
    press(&mut a, KeyCode::Char('d'));
    let short = crate::core::backup_id::short(&id).to_string();
    typed(&mut a, &short);
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        vec![Effect::Submit(Command::Delete {
            id,
            force: false,
            confirm: short
        })]
    );
}

#[test]
fn restore_wizard_overwrite_needs_the_database_name_typed() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('r'));
    press(&mut a, KeyCode::Down); // existing database
    press(&mut a, KeyCode::Enter);
    typed(&mut a, "wedsync");
    press(&mut a, KeyCode::Enter);
    // Options: skip ownership, three sessions; then the summary, which looks at the target.
    press(&mut a, KeyCode::Char('o'));
    for _ in 0..2 {
        press(&mut a, KeyCode::Char('+'));
    }
    assert_eq!(a.restore_options, (true, Some(3)));
    insta::assert_snapshot!("dialog_restore_options", screen(&a, 80, 24));
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        vec![Effect::InspectTarget {
            source: "wedsync".into(),
            db: "wedsync".into()
        }]
    );
    a.target_facts = Some((
        "wedsync".into(),
        Ok(crate::engine::TargetFacts {
            exists: true,
            tables: 52,
            bytes: 2_469_606_195,
            sessions: 14,
        }),
    ));
    let s = screen(&a, 80, 24);
    assert!(s.contains("holds 52 tables, 2.3 GiB; 14 session(s)"), "{s}");
    assert!(
        press(&mut a, KeyCode::Enter).is_empty(),
        "no name typed yet"
    );
    typed(&mut a, "wedsyn");
    assert!(
        press(&mut a, KeyCode::Enter).is_empty(),
        "a wrong name refuses"
    );
    typed(&mut a, "c");
    let e = press(&mut a, KeyCode::Enter);
    assert_eq!(
        e,
        vec![Effect::Restore {
            backup: "20261202T114800Z-wedsync".into(),
            source: "wedsync".into(),
            db: "wedsync".into(),
            overwrite: true,
            no_owner: true,
            jobs: Some(3),
            at: None,
        }]
    );
    // A new database needs no typed name; `q` in the name field is a letter, not quit.
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('r'));
    press(&mut a, KeyCode::Enter);
    typed(&mut a, "_q");
    assert!(!a.quit);
    press(&mut a, KeyCode::Enter);
    press(&mut a, KeyCode::Enter);
    let e = press(&mut a, KeyCode::Enter);
    assert!(
        matches!(&e[..], [Effect::Restore { db, overwrite: false, .. }] if db == "wedsync_restored_q"),
        "{e:?}"
    );
}

/// The wizard's table picker: some tables of the backup into a new schema of the source
/// database, beside the live ones (`restore --table … --into-schema …`).
#[test]
fn restore_wizard_picks_tables_into_a_side_schema() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('r'));
    let id = "20261202T114800Z-wedsync".to_string();
    assert_eq!(
        press(&mut a, KeyCode::Char('t')),
        vec![Effect::TableList(id.clone())]
    );
    assert!(screen(&a, 80, 24).contains("reading the backup's table list"));
    let t = |schema: &str, table: &str, rows: u64| crate::engine::TableSize {
        name: format!("{schema}.{table}"),
        schema: schema.into(),
        table: table.into(),
        rows,
        bytes: rows as i64 * 120,
    };
    a.pick_list = Some((
        id.clone(),
        Ok(vec![
            t("public", "couples", 2_000),
            t("public", "guests", 50_000),
            t("Wedding Plans", "Guest List", 3),
            t("public", "vendors", 3_000),
        ]),
    ));
    // Nothing chosen: Enter does nothing. Choose guests and the quoted one.
    assert!(press(&mut a, KeyCode::Enter).is_empty());
    press(&mut a, KeyCode::Char('j'));
    press(&mut a, KeyCode::Char(' '));
    press(&mut a, KeyCode::Char('j'));
    press(&mut a, KeyCode::Char(' '));
    let s = screen(&a, 80, 24);
    assert!(s.contains("(2 chosen)"), "{s}");
    assert!(s.contains("[x] public.guests"), "{s}");
    insta::assert_snapshot!("dialog_restore_tables", s);
    press(&mut a, KeyCode::Enter);
    // The schema name: the backup's day by default, typed letters fold to lower case.
    let s = screen(&a, 80, 24);
    assert!(s.contains("restored_20261202"), "{s}");
    for _ in 0.."restored_20261202".len() {
        press(&mut a, KeyCode::Backspace);
    }
    typed(&mut a, "Side");
    press(&mut a, KeyCode::Enter);
    let s = screen(&a, 80, 24);
    assert!(s.contains("Creates schema side in wedsync"), "{s}");
    assert!(s.contains("nothing existing is touched"), "{s}");
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        vec![Effect::RestoreTables {
            backup: id,
            source: "wedsync".into(),
            db: "wedsync".into(),
            tables: vec![
                ("public".into(), "guests".into()),
                ("Wedding Plans".into(), "Guest List".into())
            ],
            into_schema: "side".into(),
        }]
    );
}

/// The wizard's third target: a URL typed without a password, for a new database.
#[test]
fn restore_wizard_takes_a_typed_url_without_a_password() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('r'));
    press(&mut a, KeyCode::Char('u'));
    // The field starts with the scheme; a password is refused, and said why.
    typed(&mut a, "ops:hunter2@db-2:5433/wedsync_copy");
    assert!(press(&mut a, KeyCode::Enter).is_empty());
    let Some(Dialog::Restore {
        step: RestoreStep::Url { error: Some(e), .. },
        ..
    }) = &a.dialog
    else {
        panic!("{:?}", a.dialog)
    };
    assert!(e.contains("no password"), "{e}");
    assert!(!e.contains("hunter2"));
    for _ in 0.."ops:hunter2@db-2:5433/wedsync_copy".len() {
        press(&mut a, KeyCode::Backspace);
    }
    typed(&mut a, "ops@db-2:5433/wedsync_copy?sslmode=require");
    assert!(press(&mut a, KeyCode::Enter).is_empty());
    insta::assert_snapshot!("dialog_restore_url_confirm", screen(&a, 80, 24));
    let e = press(&mut a, KeyCode::Enter);
    assert_eq!(
        e,
        vec![Effect::RestoreUrl {
            backup: "20261202T114800Z-wedsync".into(),
            url: "postgres://ops@db-2:5433/wedsync_copy?sslmode=require".into(),
        }]
    );
    assert!(matches!(
        &a.dialog,
        Some(Dialog::Restore {
            step: RestoreStep::Running { name, .. },
            ..
        }) if name == "wedsync_copy"
    ));
}

#[test]
fn cancel_and_quit_ask_first() {
    let mut a = app();
    press(&mut a, KeyCode::Char('3'));
    press(&mut a, KeyCode::Char('c'));
    assert!(matches!(a.dialog, Some(Dialog::CancelJob { .. })));
    assert!(press(&mut a, KeyCode::Char('n')).is_empty());
    press(&mut a, KeyCode::Char('c'));
    assert_eq!(
        press(&mut a, KeyCode::Char('y')),
        vec![Effect::Cancel("20261202T140100.000Z-ee33ff".into())]
    );
    // A job of this console still runs: quitting asks.
    a.mine.push("20261202T140100.000Z-ee33ff".into());
    assert!(press(&mut a, KeyCode::Char('q')).is_empty());
    assert_eq!(a.dialog, Some(Dialog::Quit));
    assert_eq!(press(&mut a, KeyCode::Char('y')), vec![Effect::Quit]);
    assert!(a.quit);
    let _ = Action::Help;
}

#[test]
fn drill_key_walks_source_backup_confirm_then_starts_and_shows_the_report() {
    let mut a = app();
    press(&mut a, KeyCode::Char('D'));
    assert!(matches!(
        a.dialog,
        Some(Dialog::Drill(DrillStep::Source { sel: 0 }))
    ));
    press(&mut a, KeyCode::Enter);
    // wedsync's newest backup is not proven; the newest proven one is preselected.
    let Some(Dialog::Drill(DrillStep::Backup { source, sel })) = &a.dialog else {
        panic!("{:?}", a.dialog)
    };
    let list = a.drill_backups(source);
    assert!(matches!(list[*sel].verified_level, "data" | "restore"));
    assert!(list[..*sel]
        .iter()
        .all(|b| !matches!(b.verified_level, "data" | "restore")));
    let chosen = list[*sel].id.clone();
    press(&mut a, KeyCode::Enter);
    let e = press(&mut a, KeyCode::Enter);
    assert_eq!(
        e,
        vec![Effect::Drill {
            source: "wedsync".into(),
            backup: chosen
        }]
    );
    a.drill_started("j-drill".into());
    a.on_event(
        &crate::engine::Event::Log {
            job: Some("j-drill".into()),
            message: "drill: restore ✔ passed".into(),
        },
        now(),
    );
    let Some(Dialog::Drill(DrillStep::Running { lines, .. })) = &a.dialog else {
        panic!("{:?}", a.dialog)
    };
    assert_eq!(lines, &["restore ✔ passed"]);
    let report = a.model.drills[0].clone();
    a.on_event(
        &crate::engine::Event::JobFinished(crate::engine::JobOutcome {
            job: "j-drill".into(),
            kind: "drill",
            source: Some("wedsync".into()),
            status: JobStatus::Completed,
            exit_code: 0,
            error: None,
            error_kind: None,
            error_field: None,
            error_refs: None,
            result: Some(crate::engine::JobResult::Drill(Box::new(report.clone()))),
        }),
        now(),
    );
    assert!(matches!(&a.dialog, Some(Dialog::Report { report: r, .. }) if **r == report));
    // Esc closes it; on 5 Drills, Enter opens the selected (newest) report.
    press(&mut a, KeyCode::Esc);
    press(&mut a, KeyCode::Char('5'));
    press(&mut a, KeyCode::Enter);
    assert!(
        matches!(&a.dialog, Some(Dialog::Report { report: r, .. }) if r.id == "20261202T050000Z-d3d3d3")
    );
}

/// Issue 24: the console shows `source check` for the selected source (`s` on Overview): the
/// same findings as the command, from whichever engine it is attached to.
#[test]
fn s_checks_the_selected_source_and_shows_the_findings() {
    use crate::engine::preflight::{Finding, SourceCheck, Status};
    let mut a = app();
    press(&mut a, KeyCode::Char('1'));
    let source = a.model.status[a.sel[0]].source.clone();
    assert_eq!(
        press(&mut a, KeyCode::Char('s')),
        vec![Effect::SourceCheck(source.clone())]
    );
    assert!(screen(&a, 80, 24).contains(&format!("checking {source}")));
    let check = SourceCheck {
        source: source.clone(),
        location: "db.example:5432/app".into(),
        ok: false,
        platform: Some("supabase".into()),
        provider: None,
        server_version: Some("15.8".into()),
        findings: vec![Finding {
            name: "pooler".into(),
            status: Status::Fail,
            detail: "port 6543 is a transaction-mode pooler: use the session port 5432".into(),
        }],
        facts: None,
        duration_ms: 34,
    };
    a.source_checked("another", Ok(check.clone()));
    assert!(
        screen(&a, 80, 24).contains("checking"),
        "another source's answer is not this one"
    );
    a.source_checked(&source, Ok(check));
    let s = screen(&a, 120, 40);
    assert!(s.contains("transaction-mode pooler"), "{s}");
    assert!(s.contains(&format!("Source check: {source}")), "{s}");
    press(&mut a, KeyCode::Esc);
    assert!(a.dialog.is_none());
}

/// Issue 24: a backup's details say what a proof on a plain server covered and what it did
/// not (stand-in roles, event triggers, provider-only extensions), as `show` does.
#[test]
fn backup_details_name_what_the_proof_did_not_cover() {
    let mut a = app();
    let recs = a
        .model
        .records
        .get_mut("20261202T114800Z-wedsync")
        .expect("records");
    let last = recs.last_mut().expect("a restore record");
    last.stand_in_roles = vec!["supabase_admin".into(), "anon".into()];
    last.not_covered = vec!["2 event triggers".into()];
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Enter);
    let s = screen(&a, 120, 40);
    assert!(s.contains("not covered: 2 event triggers"), "{s}");
    assert!(s.contains("stand-in roles supabase_admin, anon"), "{s}");
}

/// Regression (issue 27, item 3): a running job was listed twice on 3 Jobs — its live row and
/// its history record written when it started — and `c` on the second said "no job is
/// running" under "Jobs (1 running)".
#[test]
fn a_running_job_is_listed_once() {
    let mut a = app();
    let live = a.model.live[0].clone();
    let mut started = JobRecord::new(&live.id, live.kind, live.source.as_deref(), "file:///r");
    started.status = JobStatus::Running;
    a.model.history.push(started);
    let ids = a.job_ids();
    assert_eq!(ids.iter().filter(|i| **i == live.id).count(), 1, "{ids:?}");
    press(&mut a, KeyCode::Char('3'));
    let s = screen(&a, 120, 40);
    assert_eq!(s.matches("ee33ff").count(), 1, "{s}");
}

/// Regression (issue 27, item 6): `/ a b Esc 3` in one burst (as keys arrive over SSH) reached
/// the console as `/ a b Alt+3` and left the filter "ab3". Alt+key is Esc, then the key: the
/// filter is cleared and screen 3 opens.
#[test]
fn esc_then_a_key_in_one_burst_is_esc_then_the_key() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "ab");
    assert_eq!(a.filter, "ab");
    let burst = KeyEvent::new(KeyCode::Char('3'), KeyModifiers::ALT);
    for k in keys::split_escape(burst) {
        if let Some(act) = keys::action(k, a.focus()) {
            a.update(act);
        }
    }
    assert_eq!(a.filter, "", "Esc cleared the filter");
    assert!(!a.filtering);
    assert_eq!(a.screen, 2, "then 3 opened the Jobs screen");
    // A plain key is itself.
    let k = KeyEvent::new(KeyCode::Char('b'), KeyModifiers::NONE);
    assert_eq!(keys::split_escape(k), vec![k]);
}

/// Issue 27, item 1: the daemon went away and the header still said "attached", the running
/// job kept its last progress and `c y` said nothing. The header tells the connection at all
/// times (attached with its pid, unreachable since when, lost after 30 s), what ran there is
/// "unknown", cancelling says why it cannot, and attaching again shows the new pid.
#[test]
fn the_header_tells_attached_unreachable_and_lost_and_running_jobs_become_unknown() {
    use crate::engine::control::Link;
    for (w, h) in [(80, 24), (200, 50)] {
        let mut a = app();
        a.set_link(
            Link::Attached {
                host: "backup-1".into(),
                pid: 4242,
            },
            now(),
        );
        let s = screen(&a, w, h);
        // Said short where the full words do not fit (80 columns).
        let attached = |pid: u32| match w {
            80 => format!("attached backup-1 pid {pid} · "),
            _ => format!("daemon attached (host backup-1, pid {pid})"),
        };
        assert!(s.contains(&attached(4242)), "{s}");
        assert!(s.contains("ETA"), "{s}");
        insta::assert_snapshot!(format!("link_attached_{w}x{h}"), s);

        let since = now() - chrono::Duration::seconds(10);
        assert!(a.set_link(
            Link::Unreachable {
                since,
                why: "the daemon closed its event stream".into()
            },
            since
        ));
        let s = screen(&a, w, h);
        assert!(s.contains("daemon unreachable since 14:01:50"), "{s}");
        assert!(w == 80 || s.contains("reconnecting"), "{s}");
        assert!(s.contains("unknown — daemon unreachable"), "{s}");
        assert!(!s.contains("ETA"), "no progress shown as current: {s}");
        assert!(
            s.contains("✗ no answer from the daemon since 14:01:50"),
            "{s}"
        );
        insta::assert_snapshot!(format!("link_reconnecting_{w}x{h}"), s);
        a.screen = 2;
        let s = screen(&a, w, h);
        assert!(s.contains("Jobs (1 unknown: daemon unreachable)"), "{s}");
        a.screen = 0;

        // Still unreachable two minutes later: lost (and still retried).
        a.set_link(
            Link::Unreachable {
                since: now() - chrono::Duration::seconds(120),
                why: "connection refused".into(),
            },
            now(),
        );
        let s = screen(&a, w, h);
        assert!(s.contains("daemon LOST since 14:00:00"), "{s}");
        insta::assert_snapshot!(format!("link_lost_{w}x{h}"), s);

        // `c` says why nothing can be cancelled.
        assert!(press(&mut a, KeyCode::Char('c')).is_empty());
        match &a.dialog {
            Some(Dialog::Message { text, .. }) => {
                assert!(text.contains("does not answer"), "{text}")
            }
            d => panic!("expected a message, got {d:?}"),
        }
        a.dialog = None;

        // Back, as another process: the new pid, and a line that says so.
        a.set_link(
            Link::Attached {
                host: "backup-1".into(),
                pid: 5151,
            },
            now(),
        );
        let s = screen(&a, w, h);
        assert!(s.contains(&attached(5151)), "{s}");
        assert!(
            a.log
                .iter()
                .any(|l| l.contains("attached to the daemon again")),
            "{:?}",
            a.log
        );
    }
}

/// Issue 27, item 2: a backup started on the Backups screen showed nothing there for its
/// whole run. Every screen now has a line for what just happened (a few seconds) and, after
/// that, what runs now with its progress.
#[test]
fn every_screen_says_what_started_finished_and_runs() {
    let mut a = app();
    a.screen = 1;
    let s = screen(&a, 80, 24);
    assert!(
        s.contains("● backup vendors dumping"),
        "the running job on the Backups screen: {s}"
    );
    a.on_event(
        &crate::engine::Event::JobStarted {
            job: "20261202T140150.000Z-aa11bb".into(),
            kind: crate::model::words::intern("verify"),
            source: Some("vendors".into()),
            parent: None,
            dry_run: false,
        },
        now(),
    );
    let s = screen(&a, 80, 24);
    assert!(s.contains("▶ verify vendors started"), "{s}");
    a.on_event(
        &crate::engine::Event::JobFailed(crate::engine::JobOutcome {
            job: "20261202T140150.000Z-aa11bb".into(),
            kind: crate::model::words::intern("verify"),
            source: Some("vendors".into()),
            status: JobStatus::Failed,
            exit_code: 3,
            error: Some("table guests differs\nmore".into()),
            error_kind: Some("damage"),
            error_field: None,
            error_refs: None,
            result: None,
        }),
        now(),
    );
    for screen_no in 0..6 {
        a.screen = screen_no;
        let s = screen(&a, 80, 24);
        assert!(
            s.contains("✗ verify vendors failed: table guests differs"),
            "screen {screen_no}: {s}"
        );
    }
    // The flash goes; the running job is shown again.
    a.flash = Some((now() - chrono::Duration::seconds(30), "old".into()));
    a.screen = 3;
    let s = screen(&a, 80, 24);
    assert!(!s.contains("old"), "{s}");
    assert!(s.contains("● backup vendors dumping"), "{s}");
}

/// Issue 27, item 7: the drill report closed on `G` and `x`, ignored PageDown and hid the
/// header and key hints. Now it scrolls with j/k, PageDown/PageUp, Ctrl-d/Ctrl-u and g/G
/// (never past its last page), closes only on Esc, q or Enter, and leaves the header, tabs and
/// its own key line in sight.
#[test]
fn the_drill_report_scrolls_by_page_and_closes_only_when_asked() {
    use super::report::{max_scroll, report_lines};
    let mut a = app();
    a.screen = 4;
    a.size = (80, 24);
    a.update(Action::Enter);
    let Some(Dialog::Report { report, .. }) = &a.dialog else {
        panic!("Enter opens the report: {:?}", a.dialog);
    };
    let max = max_scroll(report, 24);
    assert!(max > 0, "the fixture's report is longer than a page");
    let scroll = |a: &App| match &a.dialog {
        Some(Dialog::Report { scroll, .. }) => *scroll,
        d => panic!("the report closed: {d:?}"),
    };
    let s = screen(&a, 80, 24);
    assert!(s.contains("keepsake ·"), "the header stays: {s}");
    assert!(s.contains("1 Overview"), "the tabs stay: {s}");
    assert!(
        s.contains("PgDn/PgUp"),
        "the key line says how to scroll: {s}"
    );
    insta::assert_snapshot!("drill_report_in_place_80x24", s);
    press(&mut a, KeyCode::Char('G'));
    assert_eq!(scroll(&a), max, "G goes to the last page");
    press(&mut a, KeyCode::Char('x'));
    assert_eq!(scroll(&a), max, "x does nothing");
    press(&mut a, KeyCode::Char('j'));
    assert_eq!(scroll(&a), max, "never past the last page");
    press(&mut a, KeyCode::Char('k'));
    assert_eq!(scroll(&a), max - 1, "k goes up at once from the end");
    press(&mut a, KeyCode::Char('g'));
    assert_eq!(scroll(&a), 0);
    press(&mut a, KeyCode::PageDown);
    assert_eq!(scroll(&a), max.min(16), "a page is what the screen shows");
    press(&mut a, KeyCode::PageUp);
    assert_eq!(scroll(&a), 0);
    let ctrl_d = keys::action(
        KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL),
        a.focus(),
    )
    .expect("Ctrl-d");
    a.update(ctrl_d);
    assert_eq!(scroll(&a), max.min(16));
    let s = screen(&a, 80, 24);
    let first_shown = report_lines(match &a.dialog {
        Some(Dialog::Report { report, .. }) => report,
        _ => unreachable!(),
    })[max.min(16)]
    .clone();
    assert!(
        s.contains(first_shown.trim()),
        "{first_shown:?} in sight: {s}"
    );
    press(&mut a, KeyCode::Esc);
    assert!(a.dialog.is_none(), "Esc closes it");
}

/// Issue 27, item 8, in the state: a real prune's end drops the plan it acted on (the screen
/// reads it again); a preview's events are logged as a preview and do not flash.
#[test]
fn a_prune_ending_makes_the_plan_stale_and_previews_are_named() {
    use crate::core::prune::PruneReport;
    let report = |dry_run| PruneReport {
        dry_run,
        plan: vec![],
        forgotten: vec![],
        marked: vec![],
        waiting: vec![],
        deleted_packs: vec![],
        deleted_bytes: 0,
        stale_temporaries: 0,
        forgotten_segments: 0,
        gc_skipped: None,
    };
    let ended = |id: &str, dry_run| {
        crate::engine::Event::JobFinished(crate::engine::JobOutcome {
            job: id.into(),
            kind: crate::model::words::intern("prune"),
            source: None,
            status: JobStatus::Completed,
            exit_code: 0,
            error: None,
            error_kind: None,
            error_field: None,
            error_refs: None,
            result: Some(crate::engine::JobResult::Prune(Box::new(report(dry_run)))),
        })
    };
    let mut a = app();
    a.flash = None;
    a.set_preview(Ok(report(true)));
    a.on_event(
        &crate::engine::Event::JobStarted {
            job: "p1".into(),
            kind: crate::model::words::intern("prune"),
            source: None,
            parent: None,
            dry_run: true,
        },
        now(),
    );
    a.on_event(&ended("p1", true), now());
    assert!(a.flash.is_none(), "a preview does not flash: {:?}", a.flash);
    assert!(a.preview.is_some() && !a.preview_stale);
    assert!(
        a.log
            .iter()
            .any(|l| l.contains("[p1] prune preview started"))
            && a.log
                .iter()
                .any(|l| l.contains("[p1] prune preview completed")),
        "{:?}",
        a.log
    );
    a.on_event(&ended("p2", false), now());
    assert!(a.preview.is_none(), "the plan the prune acted on is gone");
    assert!(a.preview_stale, "and is read again");
    assert!(
        a.log.iter().any(|l| l.contains("[p2] prune completed")),
        "{:?}",
        a.log
    );
}

/// Issue 27, item 10, at 80 columns: nothing cut mid-word where it matters — a proven level
/// (`✔ structure`), a fresh proof (`restore 107s` without "ago" rather than into the RPO
/// column), the repository (cut from its start) — a restore's SOURCE is its backup's, and a
/// job's details are words, not its record's JSON.
#[test]
fn at_80_columns_nothing_is_cut_and_jobs_read_as_words() {
    let mut a = app();
    a.model.status[0].last_verified_backup_at = Some(now() - chrono::Duration::seconds(107));
    let s = screen(&a, 80, 24);
    assert!(s.contains("restore 107s "), "{s}");
    assert!(!s.contains("restore 107s ag"), "{s}");
    assert!(
        s.contains("keepsake · local (no schedules) · s3://backups/prod"),
        "{s}"
    );
    a.model.rows[0].verified_level = "structure";
    a.screen = 1;
    let s = screen(&a, 80, 24);
    assert!(s.contains("✔ structure"), "{s}");
    // A restore names no source: its backup's is shown.
    let backup = a.model.rows[0].clone();
    let mut restore = JobRecord::new("20261202T134000.000Z-ab12cd", "restore", None, "s3://x");
    restore.status = JobStatus::Completed;
    restore.started_at = at(13, 40);
    restore.finished_at = Some(at(13, 44));
    restore.backup_id = Some(backup.id.clone());
    restore.logical_bytes = Some(2_400_000_000);
    restore.started_by = Some("oncall (console)".into());
    a.model.history.push(restore);
    a.screen = 2;
    let s = screen(&a, 80, 24);
    let row = s
        .lines()
        .find(|l| l.contains("ab12cd"))
        .expect("the restore's row");
    assert!(row.contains(&backup.source), "{row}");
    // Enter: the job in words.
    a.sel[2] = a
        .job_ids()
        .iter()
        .position(|i| i.ends_with("ab12cd"))
        .expect("listed");
    a.update(Action::Enter);
    let s = screen(&a, 80, 24);
    assert!(s.contains(&format!("restore of {}", backup.source)), "{s}");
    assert!(s.contains("took       4m00s"), "{s}");
    assert!(s.contains("by oncall (console)"), "{s}");
    assert!(!s.contains("\"logical_bytes\""), "no JSON: {s}");
}

/// Issue 27, item 9: the restore wizard's running step showed a bar and bytes only; it now
/// says the percentage, rate and ETA like every other progress.
#[test]
fn a_running_restore_shows_percent_rate_and_eta() {
    let mut a = app();
    let job = "20261202T140100.000Z-ee33ff".to_string();
    a.dialog = Some(Dialog::Restore {
        backup: a.model.rows[0].id.clone(),
        source: "wedsync".into(),
        database: "wedsync_restored".into(),
        step: RestoreStep::Running {
            name: "wedsync_restored".into(),
            job: Some(job.clone()),
        },
    });
    let s = screen(&a, 80, 24);
    assert!(s.contains("61%"), "{s}");
    assert!(s.contains("MiB/s"), "{s}");
    assert!(s.contains("ETA"), "{s}");
}

/// Issue 25: a restore the engine refuses shows the engine's reason in the wizard, with the
/// request's fields in the dialog's words — never the command line's flags.
#[test]
fn a_refused_restore_says_why_in_the_dialogs_words() {
    let mut a = app();
    let job = "20261202T140100.000Z-cc44dd".to_string();
    a.dialog = Some(Dialog::Restore {
        backup: a.model.rows[0].id.clone(),
        source: "wedsync".into(),
        database: "busy".into(),
        step: RestoreStep::Running {
            name: "busy".into(),
            job: Some(job.clone()),
        },
    });
    let refs = format!(
        "is needed: target database \"busy\" is not empty (2 tables, views or sequences): restoring would mix data; restore into a new database with {}, or replace its objects with {} {}",
        crate::error::field_ref("create", None),
        crate::error::field_ref("clean", None),
        crate::error::field_ref("confirm", Some("busy"))
    );
    a.on_event(
        &crate::engine::Event::JobFailed(crate::engine::JobOutcome {
            job: job.clone(),
            kind: crate::model::words::intern("restore"),
            source: Some("wedsync".into()),
            status: JobStatus::Failed,
            exit_code: 2,
            error: Some(crate::error::plain_fields(&refs)),
            error_kind: Some("invalid"),
            error_field: Some("clean".into()),
            error_refs: Some(refs),
            result: None,
        }),
        now(),
    );
    let Some(Dialog::Message { text, .. }) = &a.dialog else {
        panic!("{:?}", a.dialog)
    };
    assert!(text.contains("was refused"), "{text}");
    assert!(
        text.contains("\"replace its objects\" is needed: target database \"busy\" is not empty"),
        "{text}"
    );
    assert!(text.contains("its name typed again (busy)"), "{text}");
    assert!(!text.contains("--") && !text.contains('\u{27e6}'), "{text}");
}

/// Issue 27, item 10: at 200×50 the Backups screen uses its width — whole ids (to paste into
/// a command) and the measured restore time — where 80 columns show the short id.
#[test]
fn wide_terminals_show_whole_ids_and_restore_times() {
    let mut a = app();
    a.screen = 1;
    let id = a.model.rows[0].id.clone();
    let s = screen(&a, 200, 50);
    assert!(s.contains(&id), "{s}");
    assert!(s.contains("RESTORE"), "{s}");
    assert!(s.contains("4m12s"), "{s}");
    insta::assert_snapshot!("backups_200x50", s);
    let s = screen(&a, 80, 24);
    assert!(!s.contains(&id), "{s}");
}

/// Issue 29: the Overview says, per capturing source, how far a point-in-time restore
/// reaches now.
#[test]
fn the_overview_says_how_far_capture_reaches() {
    let mut a = app();
    a.model.status[0].capture = Some(crate::engine::query::CaptureStatus {
        slot: "keepsake_wedsync".into(),
        last_commit_at: Some(now() - chrono::Duration::seconds(12)),
        last_commit_age_s: Some(12),
        segments: 42,
        chain_since: Some(at(3, 0)),
        state: "streaming".into(),
        lag_seconds: Some(2),
        lag_bytes: Some(4096),
        wal_retained_bytes: Some(48 << 20),
        wal_status: Some("reserved".into()),
        error: None,
    });
    let s = screen(&a, 120, 40);
    assert!(
        s.contains(
            "capture: restorable to 14:01:48 (12s ago) · streaming, lag 2s, WAL held 48.0 MiB"
        ),
        "{s}"
    );
    // A daemon that is not streaming it says so.
    if let Some(c) = a.model.status[0].capture.as_mut() {
        c.state = "not running".into();
        c.lag_seconds = None;
        c.wal_retained_bytes = None;
    }
    let s = screen(&a, 120, 40);
    assert!(s.contains("not running (no daemon streams it)"), "{s}");
}

/// Issue 27, item 11 (a k9s habit): at 120 columns and more, 3 Jobs says who started each job.
#[test]
fn wide_jobs_say_who_started_each() {
    let mut a = app();
    a.screen = 2;
    if let Some(h) = a.model.history.last_mut() {
        h.started_by = Some("grafana (api)".into());
    }
    let s = screen(&a, 200, 50);
    assert!(s.contains("STARTED BY"), "{s}");
    assert!(s.contains("grafana (api)"), "{s}");
    let s = screen(&a, 80, 24);
    assert!(!s.contains("STARTED BY"), "{s}");
}

fn ctrl(a: &mut App, c: char) -> Vec<Effect> {
    let act = keys::action(
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL),
        a.focus(),
    )
    .expect("an action");
    a.update(act)
}

/// Issue 27, item 11: text fields edit as a shell's line does — a caret moved with ←/→ and
/// Home/End, Ctrl-U and Ctrl-W — in every field (here the delete confirmation and the
/// restore wizard's URL), and the caret is drawn where the next letter goes.
#[test]
fn text_fields_have_a_caret_and_readline_keys() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('d'));
    typed(&mut a, "9d0e1");
    // A letter forgotten in the middle: back two, type it, and the caret stays there.
    press(&mut a, KeyCode::Left);
    press(&mut a, KeyCode::Left);
    typed(&mut a, "X");
    let Some(Dialog::Delete { typed: t, .. }) = &a.dialog else {
        panic!("delete dialog")
    };
    assert_eq!(t, "9d0Xe1");
    assert!(screen(&a, 80, 24).contains("9d0X▏e1"));
    press(&mut a, KeyCode::Backspace);
    press(&mut a, KeyCode::End);
    typed(&mut a, "f");
    let Some(Dialog::Delete { typed: t, .. }) = &a.dialog else {
        panic!("delete dialog")
    };
    assert_eq!(t, "9d0e1f");
    // Ctrl-U clears what is before the caret.
    ctrl(&mut a, 'u');
    let Some(Dialog::Delete { typed: t, .. }) = &a.dialog else {
        panic!("delete dialog")
    };
    assert_eq!(t, "");
    press(&mut a, KeyCode::Esc);

    // The URL field: Ctrl-W deletes the word before the caret, Home/Ctrl-E move.
    press(&mut a, KeyCode::Char('r'));
    press(&mut a, KeyCode::Char('u'));
    typed(&mut a, "ops@db2:5432/wedsync_old");
    ctrl(&mut a, 'w');
    typed(&mut a, "restored");
    press(&mut a, KeyCode::Home);
    ctrl(&mut a, 'e');
    let Some(Dialog::Restore {
        step: RestoreStep::Url { text, .. },
        ..
    }) = &a.dialog
    else {
        panic!("url step")
    };
    assert_eq!(text, "postgres://ops@db2:5432/restored");
    // A new field starts with the caret at its end, whatever the last one did.
    press(&mut a, KeyCode::Left);
    press(&mut a, KeyCode::Esc);
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "ab");
    assert_eq!(a.filter, "ab");
}

/// Issue 27, item 11: the filter works on Jobs and Log as on Backups; a kept filter is said in
/// the key line and Esc clears it; leaving the screen drops it.
#[test]
fn a_kept_filter_is_shown_and_esc_clears_it_on_every_list() {
    let mut a = app();
    press(&mut a, KeyCode::Char('3'));
    let all = a.job_ids().len();
    assert!(all >= 3, "{all}");
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "failed");
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.job_ids().len(), 1, "{:?}", a.job_ids());
    let s = screen(&a, 80, 24);
    assert!(s.contains("filter: failed  (Esc clears)"), "{s}");
    assert!(s.contains("1 matching \"failed\""), "{s}");
    assert!(s.contains("photos") && !s.contains("wedsync "), "{s}");
    press(&mut a, KeyCode::Esc);
    assert!(a.filter.is_empty());
    assert_eq!(a.job_ids().len(), all);
    assert!(!screen(&a, 80, 24).contains("Esc clears"));

    // The log: only the lines that match.
    a.push_log("12:00 backup wedsync completed".into());
    a.push_log("12:05 prune failed: storage".into());
    press(&mut a, KeyCode::Char('6'));
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "prune");
    press(&mut a, KeyCode::Enter);
    let s = screen(&a, 80, 24);
    assert!(s.contains("prune failed: storage"), "{s}");
    assert!(!s.contains("backup wedsync completed"), "{s}");
    // Another screen: the filter does not follow.
    press(&mut a, KeyCode::Char('2'));
    assert!(a.filter.is_empty());
    assert_eq!(a.backups().len(), 5);
}

/// Issue 27, item 11: `S` orders the Backups screen (newest, oldest, largest, by source), the
/// title says which, and a long list says where the cursor is.
#[test]
fn backups_sort_by_column_and_say_where_the_cursor_is() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    let newest: Vec<String> = a.backups().iter().map(|b| b.id.clone()).collect();
    press(&mut a, KeyCode::Char('S'));
    let oldest: Vec<String> = a.backups().iter().map(|b| b.id.clone()).collect();
    let mut rev = newest.clone();
    rev.reverse();
    assert_eq!(oldest, rev);
    assert!(screen(&a, 80, 24).contains("oldest first"));
    press(&mut a, KeyCode::Char('S'));
    let sizes: Vec<u64> = a.backups().iter().map(|b| b.stored_bytes).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    press(&mut a, KeyCode::Char('S'));
    let sources: Vec<String> = a.backups().iter().map(|b| b.source.clone()).collect();
    assert!(sources.windows(2).all(|w| w[0] <= w[1]), "{sources:?}");
    press(&mut a, KeyCode::Char('S'));
    assert!(screen(&a, 80, 24).contains("newest first"));
    // More backups than rows: "row N of M".
    let base = a.model.rows[0].clone();
    for i in 0..40 {
        let mut b = base.clone();
        b.id = format!("20261101T0{:02}000Z-x{i:05}", i % 60);
        a.model.rows.insert(0, b);
    }
    press(&mut a, KeyCode::Char('G'));
    let s = screen(&a, 80, 24);
    assert!(s.contains("row 45 of 45"), "{s}");
}

/// Issue 27, item 11: the table picker takes a filter (hundreds of tables), and what was
/// chosen stays chosen when the filter changes; Esc clears the filter before it closes.
#[test]
fn the_table_picker_filters_and_keeps_the_choice() {
    let mut a = app();
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('r'));
    let id = "20261202T114800Z-wedsync".to_string();
    press(&mut a, KeyCode::Char('t'));
    let list: Vec<crate::engine::TableSize> = (0..300)
        .map(|i| crate::engine::TableSize {
            name: format!("public.t{i:03}"),
            schema: "public".into(),
            table: format!("t{i:03}"),
            rows: i,
            bytes: i as i64 * 100,
        })
        .chain(std::iter::once(crate::engine::TableSize {
            name: "public.guests".into(),
            schema: "public".into(),
            table: "guests".into(),
            rows: 5,
            bytes: 500,
        }))
        .collect();
    a.pick_list = Some((id, Ok(list)));
    press(&mut a, KeyCode::Char('G'));
    press(&mut a, KeyCode::Char(' '));
    let s = screen(&a, 80, 24);
    assert!(s.contains("[x] public.guests"), "{s}");
    assert!(s.contains("row 301 of 301 tables"), "{s}");
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "t25");
    press(&mut a, KeyCode::Enter);
    let s = screen(&a, 80, 24);
    assert!(s.contains("10 of 301 tables match"), "{s}");
    assert!(
        s.contains("public.t250") && !s.contains("public.t100"),
        "{s}"
    );
    press(&mut a, KeyCode::Char('j'));
    press(&mut a, KeyCode::Char(' '));
    // Esc clears the filter, not the wizard; both choices are kept.
    press(&mut a, KeyCode::Esc);
    assert!(a.dialog.is_some());
    let Some(Dialog::Restore {
        step: RestoreStep::Tables { picked, filter, .. },
        ..
    }) = &a.dialog
    else {
        panic!("tables step")
    };
    assert!(filter.is_empty());
    assert_eq!(picked.iter().copied().collect::<Vec<_>>(), vec![251, 300]);
    press(&mut a, KeyCode::Esc);
    assert!(a.dialog.is_none(), "a second Esc closes the wizard");
}

/// Issue 27, item 11: help starts with what the current screen adds.
#[test]
fn help_says_what_this_screen_adds() {
    let mut a = app();
    press(&mut a, KeyCode::Char('3'));
    press(&mut a, KeyCode::Char('?'));
    let s = screen(&a, 80, 24);
    assert!(s.contains("On Jobs:"), "{s}");
    assert!(s.contains("c cancel the selected running job"), "{s}");
    press(&mut a, KeyCode::Esc);
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('?'));
    let s = screen(&a, 80, 24);
    assert!(s.contains("On Backups:") && s.contains("S sort"), "{s}");
}

/// Issue 27, item 10: a 200×50 Overview uses its room — per source its backups, what they
/// store and the newest id; the latest jobs under the repository; a wider progress bar.
#[test]
fn a_wide_tall_overview_uses_its_room() {
    let a = app();
    let s = screen(&a, 200, 50);
    assert!(s.contains("BACKUPS     STORED  NEWEST"), "{s}");
    assert!(s.contains("20261202T114800Z-wedsync"), "{s}");
    assert!(s.contains("Latest jobs"), "{s}");
    assert!(s.contains("█████████████████████████░"), "{s}");
    insta::assert_snapshot!("overview_200x50", s);
    let s = screen(&a, 80, 24);
    assert!(!s.contains("Latest jobs") && !s.contains("NEWEST"), "{s}");
}

/// Issue 29: the restore wizard offers "a point in time" for a source whose changes are
/// captured: the time prefilled with how far capture reaches, typed in friendly forms, then a
/// new database; the request carries the time.
#[test]
fn restore_wizard_restores_to_a_point_in_time() {
    let mut a = app();
    let reach = now() - chrono::Duration::seconds(30);
    a.model.status[0].capture = Some(crate::engine::query::CaptureStatus {
        slot: "keepsake_wedsync".into(),
        last_commit_at: Some(reach),
        last_commit_age_s: Some(30),
        segments: 3,
        chain_since: Some(at(3, 0)),
        state: "streaming".into(),
        lag_seconds: Some(0),
        lag_bytes: None,
        wal_retained_bytes: None,
        wal_status: None,
        error: None,
    });
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('r'));
    let s = screen(&a, 80, 24);
    assert!(
        s.contains("p a point in time (capture reaches 14:01:30)"),
        "{s}"
    );
    press(&mut a, KeyCode::Char('p'));
    let s = screen(&a, 80, 24);
    assert!(s.contains("2026-12-02 14:01:30▏"), "{s}");
    // A wrong time is said, and nothing moves on.
    ctrl(&mut a, 'u');
    typed(&mut a, "half past two");
    press(&mut a, KeyCode::Enter);
    assert!(screen(&a, 80, 24).contains("is not a time"));
    ctrl(&mut a, 'u');
    typed(&mut a, "2026-12-02 13:45");
    press(&mut a, KeyCode::Enter);
    let s = screen(&a, 80, 24);
    assert!(s.contains("wedsync_at_134500"), "{s}");
    press(&mut a, KeyCode::Enter); // the name
    press(&mut a, KeyCode::Enter); // the options
    let s = screen(&a, 80, 24);
    assert!(s.contains("The state at 2026-12-02 13:45:00 UTC"), "{s}");
    let e = press(&mut a, KeyCode::Enter);
    let Some(Effect::Restore {
        at: t,
        overwrite,
        db,
        ..
    }) = e.first()
    else {
        panic!("{e:?}")
    };
    assert_eq!(*t, Some(at(13, 45)));
    assert!(!overwrite);
    assert_eq!(db, "wedsync_at_134500");
}

#[test]
fn console_times_are_read_in_friendly_forms() {
    let now = at(14, 2);
    let p = |t| crate::tui::app::parse_time(t, now);
    assert_eq!(p("13:45"), Ok(at(13, 45)));
    assert_eq!(p("2026-12-02 13:45"), Ok(at(13, 45)));
    assert_eq!(p("2026-12-02T13:45:00Z"), Ok(at(13, 45)));
    assert_eq!(p(" 13:45:00 "), Ok(at(13, 45)));
    assert!(p("tomorrow").is_err());
}
