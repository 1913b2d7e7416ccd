//! The engine's job runner with real PostgreSQL: event sequences, cancellation, single flight
//! and coalescing, leases owned by one job, lock waits, cleanup on Ctrl-C and SIGTERM, delete.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use keepsake::engine::{self, Engine, Event};

use crate::support::{
    eventually, kill, script, wait_exit, webhook::Receiver, Env, AWKWARD_SQL, WEDDING_SQL,
};

/// A pg_dump that stalls (never writes) for the databases named in `stall`, and is the real
/// one otherwise.
fn stalling_pg_dump(env: &Env, stall: &[&str]) -> std::path::PathBuf {
    let d = env.dir.path().join("wrapbin");
    std::fs::create_dir_all(&d).expect("mkdir");
    let real = env.cluster.bin.join("pg_dump");
    let cases = stall
        .iter()
        .map(|db| format!("if [ \"$PGDATABASE\" = {db} ]; then exec sleep 600; fi\n"))
        .collect::<String>();
    script(
        &d.join("pg_dump"),
        &format!(
            "#!/bin/bash\nif [ \"$1\" = --version ]; then exec {r} --version; fi\n{cases}exec {r} \"$@\"\n",
            r = real.display()
        ),
    );
    d
}

/// A psql session holding `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` in an open transaction until
/// the returned child is killed.
fn hold_lock(env: &Env, db: &str, table: &str) -> std::process::Child {
    let mut c = env
        .tool("psql")
        .args(["-X", "-q", "-d", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("psql");
    let stdin = c.stdin.as_mut().expect("stdin");
    writeln!(stdin, "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;").expect("lock");
    stdin.flush().expect("flush");
    eventually("the lock to be held", Duration::from_secs(10), || {
        env.psql(
            "postgres",
            "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND locktype = 'relation' AND granted",
        ) != "0"
    });
    c
}

/// Two sources backed up side by side by one engine: the exact events of a cancelled job, a
/// backup queued behind a running one of its source, a third coalesced with the queued one,
/// and — issue 12, defect 4 — cancelling one job removes its own lease only.
#[test]
fn engine_runs_jobs_side_by_side_cancels_one_and_keeps_the_others_lease() {
    let env = Env::new("alpha", Some(WEDDING_SQL));
    env.psql("postgres", "CREATE DATABASE beta");
    let bin = stalling_pg_dump(&env, &["alpha", "beta"]);
    let text = env.config_text("alpha", Some(&bin), &env.identity);
    let beta = format!(
        "\n[[sources]]\nname = \"beta\"\nurl = \"{}\"\npassword = \"file:{}\"\n",
        env.cluster.url("beta"),
        env.password_file.display()
    );
    // [[sources]] must come before the other tables' keys: put it right after the first source.
    let text = text.replacen("\n[daemon]", &format!("{beta}\n[daemon]"), 1);
    std::fs::write(&env.config, text).expect("config");
    let store = env.store();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let leases = || async { store.list("locks/").await.expect("list").len() };
        let cfg = keepsake::config::load(&env.config).expect("config");
        let e = Engine::new(cfg);
        let mut events = e.subscribe();
        let backup = |s: &str| engine::Command::Backup {
            source: s.into(),
            kind: Some(keepsake::core::format::BackupType::Full),
            verify: None,
        };
        let a = e.submit(backup("main")).expect("submit main");
        let b = e.submit(backup("beta")).expect("submit beta");
        // Both run (different sources) and hold a lease each while pg_dump stalls.
        let t = Instant::now();
        while leases().await < 2 {
            assert!(t.elapsed() < Duration::from_secs(30), "two leases expected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A second backup of beta waits behind the running one; a third coalesces with it.
        let b2 = e.submit(backup("beta")).expect("queue");
        let b3 = e
            .submit(engine::Command::Backup {
                source: "beta".into(),
                kind: Some(keepsake::core::format::BackupType::Incremental),
                verify: None,
            })
            .expect("coalesce");
        assert_ne!(b2.id, b.id);
        assert_eq!(b3.id, b2.id, "a queued backup of the same source coalesces");
        let live = e.live_jobs();
        let state = |id: &str| live.iter().find(|j| j.id == id).map(|j| j.state);
        assert_eq!(state(&b.id), Some(engine::JobState::Running));
        assert_eq!(state(&b2.id), Some(engine::JobState::Queued));

        a.cancel();
        let out = a.clone().wait().await;
        assert_eq!(out.status, engine::history::JobStatus::Cancelled, "{out:?}");
        assert_eq!(out.exit_code, 1);
        // Beta's lease is still there: a job releases its own lease only.
        assert_eq!(
            leases().await,
            1,
            "cancelling one backup must not free another's lease"
        );

        // The exact events of the cancelled job (progress readings aside).
        let mut seq = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if ev.job() != Some(a.id.as_str()) || matches!(ev, Event::Progress(_)) {
                continue;
            }
            seq.push(match &ev {
                Event::JobQueued { .. } => "job_queued".to_string(),
                Event::JobStarted { .. } => "job_started".into(),
                Event::JobFailed(o) => format!("job_failed:{:?}", o.status),
                Event::Log { message, .. }
                    if message.starts_with("cleanup: remove backup lease locks/") =>
                {
                    "log:cleanup of its own lease".into()
                }
                other => format!("{other:?}"),
            });
        }
        assert_eq!(
            seq,
            [
                "job_queued",
                "job_started",
                "log:cleanup of its own lease",
                "job_failed:Cancelled"
            ]
        );

        b.cancel();
        b2.cancel();
        assert_eq!(
            b2.wait().await.status,
            engine::history::JobStatus::Cancelled
        );
        b.wait().await;
        assert_eq!(
            leases().await,
            0,
            "every lease is gone once every job ended"
        );
        assert!(e.live_jobs().is_empty());
        // The runner wrote the history: three cancelled jobs (a, b, and the queued b2).
        let h = e.history();
        assert_eq!(h.len(), 3, "{h:?}");
        assert!(h
            .iter()
            .all(|j| j.status == engine::history::JobStatus::Cancelled));
    });
    assert!(env.snapshots().is_empty(), "nothing was committed");
}

/// Issue 12, defect 3: a table locked by another session fails the backup after
/// `[backup] lock_wait_timeout`, exit 1, naming the table; nothing is committed.
#[test]
fn backup_gives_up_on_a_locked_table_and_names_it() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    env.psql("awk", "CREATE TABLE guest_list (id int)");
    let text = env.config_text("awk", None, &env.identity);
    std::fs::write(
        &env.config,
        format!("{text}\n[backup]\nlock_wait_timeout = \"2s\"\n"),
    )
    .expect("config");
    let mut lock = hold_lock(&env, "awk", "guest_list");
    let t = Instant::now();
    let r = env.keepsake(&["backup"]);
    let took = t.elapsed();
    let _ = lock.kill();
    let _ = lock.wait();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("guest_list"), "{}", r.stderr);
    assert!(r.stderr.contains("lock_wait_timeout"), "{}", r.stderr);
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(env.snapshots().is_empty());
    // Without the lock, the same configuration backs up.
    env.keepsake(&["backup"]).ok();
}

/// Issue 12, defect 3 in the daemon: a backup stuck on a lock (lock_wait_timeout at its 10m
/// default) does not silence the RPO alarm; SIGTERM then cancels it and the daemon exits 0.
#[test]
fn daemon_raises_rpo_breach_while_a_backup_is_stuck_on_a_lock() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    env.psql("awk", "CREATE TABLE guest_list (id int)");
    let hook = Receiver::start();
    let hook_file = env.dir.path().join("hook-url");
    std::fs::write(&hook_file, &hook.url).expect("hook url");
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let text = env.config_text("awk", None, &env.identity).replace(
        &pw_line,
        &format!("{pw_line}\nrpo = \"6s\"\n\n[sources.schedule]\nfull = \"*/2 * * * * *\"\n"),
    );
    std::fs::write(
        &env.config,
        format!("{text}\n[notifications]\nwebhooks = [{{ url = \"file:{}\", format = \"json\", events = [\"rpo_breach\", \"backup_failed\"] }}]\n", hook_file.display()),
    )
    .expect("config");
    let mut lock = hold_lock(&env, "awk", "guest_list");
    let mut daemon = env.spawn_daemon();
    let jobs = || -> serde_json::Value {
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).stdout).unwrap_or_default()
    };
    eventually("a running backup", Duration::from_secs(30), || {
        jobs().as_array().is_some_and(|a| {
            a.iter()
                .any(|j| j["kind"] == "backup" && j["status"] == "running")
        })
    });
    hook.wait_for("rpo_breach", 1, Duration::from_secs(45));
    // Still stuck: the alarm came while the backup waited for the lock.
    assert!(jobs().as_array().is_some_and(|a| a
        .iter()
        .any(|j| j["kind"] == "backup" && j["status"] == "running")));
    assert!(hook.named("backup_failed").is_empty());
    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(30)), Some(0));
    let _ = lock.kill();
    let _ = lock.wait();
    let js = jobs();
    let a = js.as_array().expect("jobs");
    assert!(a.iter().all(|j| j["status"] != "running"), "{js}");
    assert!(a.iter().any(|j| j["status"] == "cancelled"), "{js}");
    assert!(env.snapshots().is_empty());
    assert!(
        env.object_keys("locks/").is_empty(),
        "the cancelled backup's lease is gone"
    );
}

/// What [`slow_proxy`] has seen: connections accepted, and those still open (a connection
/// closes once everything its client sent has been forwarded and the server has hung up).
#[derive(Default)]
struct ProxyCounts {
    accepted: std::sync::atomic::AtomicUsize,
    open: std::sync::atomic::AtomicUsize,
}

/// Forward TCP connections to `upstream`, each after `delay` (a slow target server).
fn slow_proxy(upstream: u16, delay: Duration) -> (u16, std::sync::Arc<ProxyCounts>) {
    use std::sync::atomic::Ordering::SeqCst;
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let counts = std::sync::Arc::new(ProxyCounts::default());
    let seen = counts.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            seen.accepted.fetch_add(1, SeqCst);
            seen.open.fetch_add(1, SeqCst);
            let seen = seen.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                if let Ok(u) = TcpStream::connect(("127.0.0.1", upstream)) {
                    let (mut c2, mut u2) = (c.try_clone().expect("c"), u.try_clone().expect("u"));
                    let (mut c, mut u) = (c, u);
                    let back = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut u2, &mut c2);
                    });
                    let _ = std::io::copy(&mut c, &mut u);
                    let _ = u.shutdown(std::net::Shutdown::Write);
                    let _ = back.join();
                }
                seen.open.fetch_sub(1, SeqCst);
            });
        }
    });
    (port, counts)
}

/// Issue 12, defect 1: Ctrl-C during `restore --create` into an existing database, before the
/// "already exists" refusal (a slow target server), must not drop that database: only a
/// database this job created may be dropped.
#[test]
fn ctrl_c_before_the_refusal_never_drops_an_existing_database() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id").to_string();
    env.psql("postgres", "CREATE DATABASE precious");
    env.psql(
        "precious",
        "CREATE TABLE vows (t text); INSERT INTO vows VALUES ('yes')",
    );
    let (port, proxy) = slow_proxy(env.cluster.port, Duration::from_secs(3));
    let target = format!("postgres://postgres@127.0.0.1:{port}/precious?sslmode=disable");
    let mut child = env
        .keepsake_cmd(&[
            "restore",
            &id,
            "--target",
            &target,
            "--target-password",
            &format!("file:{}", env.password_file.display()),
            "--create",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("restore");
    // Interrupt while the restore waits on the slow server: its first connection is held by
    // the proxy, before any answer (so before the "already exists" refusal).
    crate::support::eventually(
        "the restore to reach the target",
        Duration::from_secs(60),
        || proxy.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1,
    );
    kill(child.id(), "INT");
    let code = wait_exit(&mut child, Duration::from_secs(60));
    assert_ne!(code, Some(0));
    // Whatever it sent before it ended (a wrongly issued DROP) has reached the server once
    // every proxied connection is closed.
    crate::support::eventually(
        "the proxied connections to close",
        Duration::from_secs(60),
        || proxy.open.load(std::sync::atomic::Ordering::SeqCst) == 0,
    );
    assert!(
        env.db_exists("precious"),
        "the existing database was dropped"
    );
    assert_eq!(env.psql("precious", "SELECT t FROM vows"), "yes");
}

/// Issue 12, defect 2: SIGTERM to the daemon during a restore-level verification removes the
/// scratch database (a cleanup hook of the job), and the job is recorded cancelled.
#[test]
fn sigterm_during_restore_verification_drops_the_scratch_database() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    // The real pg_dump (bin_dir is searched first, and only for the tools it holds)…
    let d = stalling_pg_dump(&env, &[]);
    let real = env.cluster.bin.join("pg_restore");
    // pg_restore lists tables of contents, but hangs when it restores.
    script(
        &d.join("pg_restore"),
        &format!(
            "#!/bin/bash\nif [ \"$1\" = --version ]; then exec {r} --version; fi\nif [ \"$1\" = --list ]; then exec {r} \"$@\"; fi\nexec sleep 600\n",
            r = real.display()
        ),
    );
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let text = env.config_text("awk", Some(&d), &env.identity).replace(
        &pw_line,
        &format!("{pw_line}\n\n[sources.schedule]\nfull = \"*/2 * * * * *\"\n"),
    );
    std::fs::write(
        &env.config,
        format!("{text}\n[verification]\nafter_backup = \"restore\"\n"),
    )
    .expect("config");
    let scratch = || {
        env.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'keepsake_verify_%'",
        )
    };
    let mut daemon = env.spawn_daemon();
    eventually("a scratch database", Duration::from_secs(60), || {
        scratch() != "0"
    });
    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(40)), Some(0));
    assert_eq!(scratch(), "0", "the scratch database was left behind");
    let js: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).ok().stdout).expect("json");
    assert!(
        js.as_array()
            .expect("jobs")
            .iter()
            .any(|j| j["kind"] == "verify" && j["status"] == "cancelled"),
        "{js}"
    );
}

/// `keepsake delete`: typed confirmation, the newest restore-verified backup is refused without
/// --force, the backup is gone from list and its packs are freed by prune; recorded as a job.
#[test]
fn delete_forgets_one_backup_with_confirmation_and_guards_the_proven_one() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let first = env.backup("full")["id"].as_str().expect("id").to_string();
    let second = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &second, "--level", "restore"])
        .ok();
    let packs_before = env.pack_keys().len();

    let r = env.keepsake(&["delete", &first, "--confirm", "nope"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--confirm"), "{}", r.stderr);
    let r = env.keepsake(&["delete", &second, "--confirm", &second]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(env.snapshots().len(), 2, "a refused delete changes nothing");

    env.keepsake(&["delete", &first, "--confirm", &first]).ok();
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [second.as_str()]);
    // Full backups share no pack: the deleted one's packs become unreferenced and a prune
    // (grace 0) marks them; the next deletes them.
    std::fs::write(
        &env.config,
        format!(
            "{}\n[retention]\nkeep_last = 10\nprune_grace_hours = 0\nallow_short_prune_grace = true\n",
            std::fs::read_to_string(&env.config).expect("config")
        ),
    )
    .expect("config");
    env.keepsake(&["prune"]).ok();
    env.keepsake(&["prune"]).ok();
    assert!(env.pack_keys().len() < packs_before, "packs freed");
    env.keepsake(&["verify", "--all", "--level", "data"]).ok();
    env.keepsake(&["delete", &second, "--confirm", &second, "--force"])
        .ok();
    assert!(env.snapshots().is_empty());
    let js: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).ok().stdout).expect("json");
    let deletes = js
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["kind"] == "delete" && j["status"] == "completed")
        .count();
    assert_eq!(deletes, 2, "{js}");
}

/// Regression (issue 25/27): the console shows a backup as its short form (`b527f3`, the part
/// after the last `-`); `show`, `verify`, `restore` and `delete` accept it, and `delete`'s
/// confirmation may repeat it. A too-short or ambiguous query is refused (exit 2) naming why.
#[test]
fn the_short_id_screens_show_names_the_backup_in_every_command() {
    let env = Env::new("shortid", Some(WEDDING_SQL));
    let first = env.backup("full")["id"].as_str().expect("id").to_string();
    let second = env.backup("full")["id"].as_str().expect("id").to_string();
    let short = first.rsplit('-').next().expect("suffix").to_string();
    assert_ne!(short, first);

    let shown = env.keepsake(&["show", &short, "--json"]).ok().json();
    assert_eq!(shown["id"], first.as_str(), "{shown}");
    let v = env
        .keepsake(&["verify", &short, "--level", "structure", "--json"])
        .ok()
        .json();
    assert!(v.to_string().contains(&first), "{v}");
    env.restore_new(&short, "shortid_copy").ok();
    assert_eq!(env.fingerprint("shortid_copy"), env.fingerprint("shortid"));

    // Refusals say why, and change nothing.
    let r = env.keepsake(&["show", "2"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("too short"), "{}", r.stderr);
    let r = env.keepsake(&["show", &first[..8]]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("matches 2 backups"), "{}", r.stderr);
    let r = env.keepsake(&["delete", &short, "--confirm", &second]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--confirm"), "{}", r.stderr);
    assert_eq!(env.snapshots().len(), 2, "a refused delete changes nothing");

    env.keepsake(&["delete", &short, "--confirm", &short]).ok();
    let list = env.keepsake(&["list", "--json"]).ok().json();
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, [second.as_str()]);
}

/// Regression (issue 26, the CLI's part): a one-shot command's audit failed open — a torn
/// audit log was a warning and the delete went ahead unrecorded. The runner now refuses a
/// restore, delete or prune it cannot audit (nothing changes) and says why; a backup still
/// runs (a recovery point is worth more than its audit line) and the failure is reported.
#[test]
fn a_delete_the_audit_log_cannot_record_is_refused_and_changes_nothing() {
    let env = Env::new("auditcli", Some(WEDDING_SQL));
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let log = env.dir.path().join("state/audit.jsonl");
    let lines = std::fs::read_to_string(&log).expect("the backup was audited");
    assert!(lines.contains("\"action\":\"backup\""), "{lines}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("audit log");
    f.write_all(b"{\"torn").expect("tear");
    drop(f);

    let r = env.keepsake(&["delete", &id, "--confirm", &id]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("audit log"), "{}", r.stderr);
    assert_eq!(env.snapshots(), [id.as_str()], "nothing was deleted");
    let r = env.keepsake(&["prune"]);
    assert_eq!(r.code, 1, "{}", r.all());
    env.keepsake(&["backup", "--type", "full"]).ok();
    assert_eq!(env.snapshots().len(), 2);
}

/// Issue 27, item 9: a backup's percentage was against the tables' size on disk (bloat, free
/// space, TOAST overhead), so it stopped at 77 %. Once a dump of the source exists, the next
/// backup's expected size is that dump's.
#[test]
fn a_backups_progress_is_measured_against_the_previous_dump() {
    let env = Env::new("bloat", None);
    // Much more on disk than in a dump: most rows deleted, never vacuumed.
    env.psql(
        "bloat",
        "CREATE TABLE t (id int, v text) WITH (autovacuum_enabled = off); \
         INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g; \
         DELETE FROM t WHERE id % 10 <> 0;",
    );
    let first = env.backup("full");
    let logical = first["logical_bytes"].as_u64().expect("logical_bytes");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let expected = rt.block_on(async {
        let cfg = keepsake::config::load(&env.config).expect("config");
        let e = Engine::new(cfg);
        let mut events = e.subscribe();
        let h = e
            .submit(engine::Command::Backup {
                source: "main".into(),
                kind: Some(keepsake::core::format::BackupType::Full),
                verify: None,
            })
            .expect("submit");
        let out = h.wait().await;
        assert_eq!(out.exit_code, 0, "{out:?}");
        let mut expected = vec![];
        while let Ok(ev) = events.try_recv() {
            if let Event::Progress(p) = ev {
                if p.progress.phase == keepsake::core::progress::Phase::Dumping {
                    expected.push(p.progress.bytes_expected);
                }
            }
        }
        expected
    });
    assert!(!expected.is_empty(), "progress while dumping");
    assert!(
        expected.iter().all(|e| *e == Some(logical)),
        "expected {logical} (the previous dump), saw {expected:?}"
    );
}
