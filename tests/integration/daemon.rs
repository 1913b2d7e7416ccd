//! A real daemon process: a 6-field schedule makes several backups, each verified, retention
//! trims them, a second daemon on the same state directory is refused, and SIGTERM ends it
//! with exit 0.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{eventually, kill, wait_exit, Env, AWKWARD_SQL};

#[test]
fn daemon_runs_the_schedule_keeps_the_policy_and_stops_on_sigterm() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let text = env.config_text("awk", None, &env.identity).replace(
        &pw_line,
        &format!("{pw_line}\n\n[sources.schedule]\nincremental = \"*/3 * * * * *\"\n"),
    );
    std::fs::write(
        &env.config,
        format!("{text}\n[retention]\nkeep_last = 2\nprune_grace_hours = 0\nallow_short_prune_grace = true\n\n[verification]\nschedule = \"*/5 * * * * *\"\n"),
    )
    .expect("config");

    let mut daemon = env
        .keepsake_cmd(&["--daemon"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    // Wait for at least three scheduled backups.
    let jobs = || -> serde_json::Value {
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).stdout)
            .unwrap_or(serde_json::Value::Null)
    };
    let t = Instant::now();
    loop {
        // Each backup is followed by its verification and a prune.
        let done = jobs()
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|j| j["kind"] == "prune" && j["status"] == "completed")
                    .count()
            })
            .unwrap_or(0);
        if done >= 3 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "the daemon made {done} backups in 90 s: {}",
            jobs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // It runs with few allocator arenas (it executes itself once with the glibc tunable set):
    // the same process, so the pid a supervisor knows is still the daemon's.
    let environ = std::fs::read(format!("/proc/{}/environ", daemon.id())).expect("environ");
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"GLIBC_TUNABLES=glibc.malloc.arena_max=2"),
        "the daemon runs with its allocator arenas limited"
    );
    // A second daemon on the same state directory is refused.
    let r = env.keepsake(&["--daemon"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("another keepsake daemon"), "{}", r.stderr);

    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .expect("kill")
        .success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = daemon.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    // Its log, written to a pipe, says what it did and carries no terminal colour codes.
    let mut log = String::new();
    std::io::Read::read_to_string(&mut daemon.stderr.take().expect("stderr"), &mut log)
        .expect("daemon log");
    assert!(log.contains("completed"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log written to a pipe: {log}"
    );
    // Retention kept at most two backups; every completed backup was verified at data level
    // (or restore level, by the verification schedule).
    // A backup that completed just before SIGTERM may not have had its prune yet (the stop
    // cancels it): then, and only then, one more is allowed.
    let all = jobs();
    let all = all.as_array().expect("jobs");
    let last = |kind: &str| {
        all.iter()
            .rposition(|j| j["kind"] == kind && j["status"] == "completed")
    };
    let pruned_after_last_backup = last("prune") > last("backup");
    // Retention also never forgets the newest restore-verified backup (the verification
    // schedule below makes one), which may be older than the last two.
    let restore_proven =
        serde_json::from_str::<serde_json::Value>(&env.keepsake(&["list", "--json"]).ok().stdout)
            .expect("json")
            .as_array()
            .expect("list")
            .iter()
            .any(|b| b["verified_level"] == "restore");
    let allowed = if pruned_after_last_backup { 2 } else { 3 } + usize::from(restore_proven);
    assert!(
        env.snapshots().len() <= allowed,
        "{:?} {all:?}",
        env.snapshots()
    );
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
    for b in list.as_array().expect("list") {
        assert!(
            b["verified_level"] == "data" || b["verified_level"] == "restore",
            "{b}"
        );
    }
    let js = jobs();
    assert!(
        js.as_array()
            .expect("jobs")
            .iter()
            .all(|j| j["status"] != "running"),
        "{js}"
    );
    // The verification schedule restored the latest backup into a scratch database.
    let restore_verified = js.as_array().expect("jobs").iter().any(|j| {
        j["kind"] == "verify" && j["status"] == "completed" && j["verification"] == "restore"
    });
    assert!(restore_verified, "{js}");
    env.keepsake(&["verify", "--all", "--level", "structure"])
        .ok();
}

fn log_text(dir: &std::path::Path) -> String {
    crate::support::list_files(dir)
        .into_iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect()
}

/// Alerts, the RPO alarm through a PostgreSQL outage, the catalog, SIGHUP, log files and
/// sd_notify, with a real daemon process, a real webhook receiver and a real catalog database.
#[test]
fn daemon_alerts_mirrors_reloads_and_survives_an_outage() {
    use crate::support::webhook::Receiver;
    let mut env = Env::new("awk", Some(AWKWARD_SQL));
    env.psql("postgres", "CREATE DATABASE catalog");
    let hook = Receiver::start();
    let hook_file = env.dir.path().join("hook-url");
    std::fs::write(&hook_file, &hook.url).expect("hook url");
    let log_dir = env.dir.path().join("logs");
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let base = env
        .config_text("awk", None, &env.identity)
        .replace(
            &pw_line,
            &format!(
                "{pw_line}\nrpo = \"15s\"\n\n[sources.schedule]\nincremental = \"*/2 * * * * *\"\n"
            ),
        )
        .replace(
            "[daemon]\n",
            &format!(
                "[daemon]\nlog_dir = \"{}\"\nshutdown_timeout = \"10s\"\n",
                log_dir.display()
            ),
        );
    let config = format!(
        "{base}\n[retention]\nkeep_last = 3\nprune_grace_hours = 0\nallow_short_prune_grace = true\n\n[notifications]\nwebhooks = [{{ url = \"file:{}\", format = \"json\", events = [\"backup_failed\", \"backup_succeeded\", \"verify_failed\", \"rpo_breach\", \"rpo_recovered\", \"prune\"] }}]\n\n[catalog]\nurl = \"{}\"\npassword = \"file:{}\"\n",
        hook_file.display(),
        env.cluster.url("catalog"),
        env.password_file.display()
    );
    std::fs::write(&env.config, &config).expect("config");
    env.keepsake(&["config", "check"]).ok();

    // systemd's notification socket, played by the test.
    let sock_path = env.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let spawn = |env: &Env| {
        env.keepsake_cmd(&["daemon"])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn daemon")
    };
    let mut daemon = spawn(&env);
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while !got.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        let n = sock.recv(&mut buf).expect("sd_notify message");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(got.iter().any(|m| m.contains("READY=1")), "{got:?}");
    // Keep reading like systemd would (a full queue must not stop the daemon either, but then
    // it would never be seen to be alive).
    let sock2 = sock.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while sock2.recv(&mut buf).is_ok() {}
    });

    hook.wait_for("backup_succeeded", 2, Duration::from_secs(60));
    hook.wait_for("prune", 1, Duration::from_secs(30));
    let ev = &hook.named("backup_succeeded")[0];
    assert_eq!(ev["source"], "main");
    assert!(ev["backup_id"].as_str().is_some(), "{ev}");

    // The catalog mirrors the job history.
    let catalog_count =
        |env: &Env, sql: &str| -> i64 { env.psql("catalog", sql).trim().parse().unwrap_or(-1) };
    eventually(
        "backup jobs in the catalog",
        Duration::from_secs(30),
        || {
            catalog_count(
            &env,
            "SELECT count(*) FROM backup_jobs WHERE job_kind = 'backup' AND status = 'completed' AND backup_type IS NOT NULL AND file_size > 0",
        ) >= 2
        },
    );

    // SIGHUP with a broken file keeps the old configuration; with a good one, reloads.
    std::fs::write(&env.config, format!("{config}\nbogus_key = 1\n")).expect("config");
    kill(daemon.id(), "HUP");
    eventually("the invalid reload logged", Duration::from_secs(15), || {
        log_text(&log_dir).contains("keeping the old one")
    });
    // The good file adds a second webhook: the reload shows in what the daemon does.
    let hook2 = Receiver::start();
    let hook2_file = env.dir.path().join("hook2-url");
    std::fs::write(&hook2_file, &hook2.url).expect("hook2 url");
    let reloaded = config.replacen(
        "webhooks = [",
        &format!(
            "webhooks = [{{ url = \"file:{}\", format = \"json\", events = [\"backup_succeeded\"] }}, ",
            hook2_file.display()
        ),
        1,
    );
    assert_ne!(reloaded, config);
    std::fs::write(&env.config, &reloaded).expect("config");
    kill(daemon.id(), "HUP");
    eventually("the reload logged", Duration::from_secs(15), || {
        log_text(&log_dir).contains("configuration reloaded")
    });
    let before = hook.named("backup_succeeded").len();
    hook.wait_for("backup_succeeded", before + 1, Duration::from_secs(30));
    hook2.wait_for("backup_succeeded", 1, Duration::from_secs(30));

    // PostgreSQL goes away: backups fail and say so, the RPO alarm fires once.
    env.cluster.stop("fast").expect("stop");
    let failed = hook.wait_for("backup_failed", 1, Duration::from_secs(30));
    // It names the source and says the server could not be reached.
    assert_eq!(failed[0]["source"], "main", "{:?}", failed[0]);
    assert!(
        failed[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("connect") || e.contains("connection")),
        "{:?}",
        failed[0]
    );
    hook.wait_for("rpo_breach", 1, Duration::from_secs(45));
    // Two more failed backups (one every 2 s) prove the daemon went on checking the RPO
    // after the breach: still one alarm.
    let failures = hook.named("backup_failed").len();
    hook.wait_for("backup_failed", failures + 2, Duration::from_secs(30));
    assert_eq!(
        hook.named("rpo_breach").len(),
        1,
        "the alarm must fire once per breach"
    );
    assert!(
        daemon.try_wait().expect("wait").is_none(),
        "the daemon died during the outage"
    );
    // …and recovers when the server is back.
    env.cluster.restart().expect("restart");
    hook.wait_for("rpo_recovered", 1, Duration::from_secs(60));
    assert_eq!(hook.named("rpo_breach").len(), 1);

    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(20)), Some(0));

    // Every job of the history is in the catalog with its final status.
    let jobs: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).ok().stdout).expect("json");
    let jobs = jobs.as_array().expect("jobs");
    for j in jobs {
        let id = j["id"].as_str().expect("id");
        let st = env.psql(
            "catalog",
            &format!("SELECT status FROM backup_jobs WHERE keepsake_job_id = '{id}'"),
        );
        assert_eq!(st.trim(), j["status"].as_str().expect("status"), "job {j}");
    }
    assert!(jobs.iter().any(|j| j["kind"] == "verify"));
    assert!(jobs
        .iter()
        .any(|j| j["kind"] == "backup" && j["status"] == "failed"));

    // A restart applies no migration twice and duplicates nothing.
    let rows = catalog_count(&env, "SELECT count(*) FROM backup_jobs");
    let mut daemon = spawn(&env);
    // Up and mirroring again (the catalog is migrated before the first mirror).
    eventually(
        "the restarted daemon mirrors",
        Duration::from_secs(30),
        || {
            log_text(&log_dir).matches("configuration").count() > 0
                && catalog_count(&env, "SELECT count(*) FROM backup_jobs") > rows
        },
    );
    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(20)), Some(0));
    assert_eq!(
        catalog_count(&env, "SELECT count(*) FROM keepsake_migrations"),
        keepsake::daemon::catalog::MIGRATIONS.len() as i64
    );
    assert!(catalog_count(&env, "SELECT count(*) FROM backup_jobs") >= rows);
    let dup = catalog_count(
        &env,
        "SELECT count(*) - count(DISTINCT keepsake_job_id) FROM backup_jobs",
    );
    assert_eq!(dup, 0);

    // Logs went to the rotated file, and no secret went anywhere.
    let logs = log_text(&log_dir);
    assert!(logs.contains("daemon started"), "{logs}");
    assert!(
        !logs.contains("SECRET-TOKEN-123"),
        "webhook token in the log"
    );
    assert!(
        !logs.contains(env.cluster.password.expose()),
        "password in the log"
    );
}

/// SIGKILL of the daemon in the middle of a backup, then a restart: the job reads
/// `interrupted`, the next run succeeds, the repository verifies, and the packs the killed
/// backup left behind are collected after the grace period.
#[test]
fn daemon_killed_mid_backup_recovers_on_restart() {
    use crate::support::{script, WEDDING_SQL};
    let env = Env::new("wed", Some(WEDDING_SQL));
    // A pg_dump whose output stalls for 30 s before its end, so the kill lands mid-backup:
    // nothing can complete before the end of the stream. (It used to stall after 3 MiB and
    // wait for 2 packs; with fewer bytes stored per chunk, 3 MiB could fill less than 2 packs,
    // and the backup could complete between the second pack and the kill.)
    let wrap = env.dir.path().join("slowbin");
    std::fs::create_dir_all(&wrap).expect("mkdir");
    script(
        &wrap.join("pg_dump"),
        &format!(
            "#!/bin/bash\nREAL={}\nif [ \"$1\" = --version ]; then exec \"$REAL\" --version; fi\n\"$REAL\" \"$@\" | {{ cat; sleep 30; }}\n",
            env.cluster.bin.join("pg_dump").display()
        ),
    );
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let write = |bin: Option<&std::path::Path>| {
        let text = env.config_text("wed", bin, &env.identity).replace(
            &pw_line,
            &format!("{pw_line}\n\n[sources.schedule]\nincremental = \"*/2 * * * * *\"\n"),
        );
        std::fs::write(
            &env.config,
            format!("{text}\n[backup]\npack_size_mib = 1\n\n[retention]\nkeep_last = 5\nprune_grace_hours = 0\nallow_short_prune_grace = true\n"),
        )
        .expect("config");
    };
    write(Some(&wrap));
    let mut daemon = env
        .keepsake_cmd(&["--daemon"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    eventually(
        "packs of the running backup",
        Duration::from_secs(60),
        || env.packs().len() >= 2,
    );
    kill(daemon.id(), "KILL");
    let _ = daemon.wait();
    assert!(env.snapshots().is_empty());
    let jobs: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).ok().stdout).expect("json");
    assert_eq!(jobs[0]["status"], "interrupted", "{jobs}");

    write(None);
    let mut daemon = env
        .keepsake_cmd(&["--daemon"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let completed = || {
        let j: serde_json::Value =
            serde_json::from_str(&env.keepsake(&["jobs", "--json"]).stdout).unwrap_or_default();
        j.as_array()
            .map(|a| {
                a.iter()
                    .filter(|j| j["kind"] == "backup" && j["status"] == "completed")
                    .count()
            })
            .unwrap_or(0)
    };
    // Two backups: the second one's prune deletes what the first one's marked.
    eventually(
        "two backups after the restart",
        Duration::from_secs(120),
        || completed() >= 3,
    );
    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(30)), Some(0));
    let jobs: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).ok().stdout).expect("json");
    assert_eq!(jobs[0]["status"], "interrupted", "{jobs}");
    env.keepsake(&["verify", "--all", "--level", "structure"])
        .ok();
    // Every pack left is used by a backup: the killed backup's leftovers are gone.
    let cfg = keepsake::config::load(&env.config).expect("config");
    let referenced: std::collections::BTreeSet<String> = crate::support::block_on(async {
        let repo = keepsake::engine::open(&cfg).await.expect("open");
        repo.manifests()
            .await
            .expect("manifests")
            .iter()
            .flat_map(|m| m.packs.iter().map(|p| p.key()))
            .collect()
    });
    let present: std::collections::BTreeSet<String> = env.pack_keys().into_iter().collect();
    assert_eq!(present, referenced, "unreferenced packs remain");
}

/// Regression (issue 13, defect 2): retention counts on proven backups, so the daemon does not
/// prune after a backup whose verification did not pass. Here the scratch server for the
/// restore-level verification is unreachable: every verification is "not proven", backups
/// keep coming, and no prune runs (the old daemon pruned after each one, keep_last = 1).
#[test]
fn daemon_does_not_prune_after_a_verification_that_did_not_pass() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let text = env.config_text("awk", None, &env.identity).replace(
        &pw_line,
        &format!("{pw_line}\n\n[sources.schedule]\nincremental = \"*/2 * * * * *\"\n"),
    );
    std::fs::write(
        &env.config,
        format!("{text}\n[retention]\nkeep_last = 1\nprune_grace_hours = 0\nallow_short_prune_grace = true\n\n[verification]\nafter_backup = \"restore\"\nscratch_url = \"postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2\"\n"),
    )
    .expect("config");
    let mut daemon = env.spawn_daemon();
    eventually("three backups", Duration::from_secs(90), || {
        env.snapshots().len() >= 3
    });
    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(30)), Some(0));
    let jobs: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).ok().stdout).expect("jobs");
    let jobs = jobs.as_array().expect("jobs");
    assert!(
        jobs.iter()
            .any(|j| j["kind"] == "verify" && j["status"] != "completed"),
        "the verifications did not pass: {jobs:?}"
    );
    assert!(
        !jobs.iter().any(|j| j["kind"] == "prune"),
        "no prune after an unproven backup: {jobs:?}"
    );
    assert!(env.snapshots().len() >= 3, "every backup kept");
}

/// `[drill] schedule`: the daemon drills the newest proven backup of each source; a drill that
/// does not pass (here a smoke check that cannot hold) sends `drill_failed` with the summary;
/// the reports are in the repository; on stop no scratch database is left.
#[test]
fn daemon_runs_scheduled_drills_and_alerts_when_one_fails() {
    use crate::support::webhook::Receiver;
    let env = Env::new("awk", Some(AWKWARD_SQL));
    env.psql("postgres", "CREATE DATABASE catalog");
    // A deleted backup: the job history then holds a delete job as well.
    let old = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["delete", &old, "--confirm", &old]).ok();
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &id, "--level", "data"]).ok();
    let hook = Receiver::start();
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        format!(
            "{text}\n[notifications]\nwebhooks = [{{ url = \"{}\", events = [\"drill_failed\"] }}]\n\n[drill]\nschedule = \"*/3 * * * * *\"\n\n[[drill.checks]]\nname = \"impossible\"\nsql = \"SELECT 1\"\nexpect = \"= 2\"\n\n[catalog]\nurl = \"{}\"\npassword = \"file:{}\"\n",
            hook.url,
            env.cluster.url("catalog"),
            env.password_file.display()
        ),
    )
    .expect("config");
    env.keepsake(&["config", "check"]).ok();
    let mut daemon = env.spawn_daemon();
    let ev = hook.wait_for("drill_failed", 1, Duration::from_secs(120))[0].clone();
    // The catalog mirrors every kind of job, drills and deletes included (migration 0003).
    eventually(
        "drill and delete jobs in the catalog",
        Duration::from_secs(60),
        || {
            env.psql(
            "catalog",
            "SELECT count(DISTINCT job_kind) FROM backup_jobs WHERE job_kind IN ('drill', 'delete')",
        ) == "2"
        },
    );
    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(60)), Some(0));
    assert_eq!(ev["source"], "main", "{ev}");
    assert!(
        ev["message"]
            .as_str()
            .is_some_and(|m| m.contains("impossible")),
        "{ev}"
    );
    let all: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["drills", "--json"]).ok().stdout).expect("drills");
    let first = &all[0];
    assert_eq!(first["result"], "failed", "{all}");
    assert_eq!(first["backup_id"], id.as_str());
    assert!(
        first["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("daemon")),
        "{first}"
    );
    assert_eq!(
        env.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'keepsake_drill%'"
        ),
        "0"
    );
}

/// Two sources, one of them unreachable: the daemon keeps backing up the other, records and
/// alerts the failures of the broken one, and `status` tells them apart. Retention with
/// keep_last = 1 still keeps the newest backup proven at restore level.
#[test]
fn one_failing_source_does_not_stop_the_other_and_the_restore_proven_backup_survives() {
    use crate::support::webhook::Receiver;
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let proven = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &proven, "--level", "restore"])
        .ok();
    let hook = Receiver::start();
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let text = env.config_text("awk", None, &env.identity).replace(
        &pw_line,
        &format!("{pw_line}\n\n[sources.schedule]\nincremental = \"*/2 * * * * *\"\n"),
    );
    std::fs::write(
        &env.config,
        format!(
            "{text}\n[[sources]]\nname = \"broken\"\nurl = \"postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2\"\n\n[sources.schedule]\nincremental = \"*/2 * * * * *\"\n\n[retention]\nkeep_last = 1\nprune_grace_hours = 0\nallow_short_prune_grace = true\n\n[verification]\nafter_backup = \"structure\"\n\n[notifications]\nwebhooks = [{{ url = \"{}\", events = [\"backup_failed\", \"backup_succeeded\"] }}]\n",
            hook.url
        ),
    )
    .expect("config");
    env.keepsake(&["config", "check"]).ok();
    let mut daemon = env.spawn_daemon();
    hook.wait_for("backup_failed", 2, Duration::from_secs(60));
    hook.wait_for("backup_succeeded", 3, Duration::from_secs(90));
    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(30)), Some(0));
    assert!(hook
        .named("backup_failed")
        .iter()
        .all(|e| e["source"] == "broken"));
    assert!(hook
        .named("backup_succeeded")
        .iter()
        .all(|e| e["source"] == "main"));
    let st: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["status", "--json"]).ok().stdout).expect("status");
    let by = |name: &str| {
        st.as_array()
            .and_then(|a| a.iter().find(|s| s["source"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        by("broken")["last_backup_id"],
        serde_json::Value::Null,
        "{st}"
    );
    assert_eq!(by("broken")["last_failed_job"]["status"], "failed", "{st}");
    assert!(by("main")["last_failed_job"].is_null(), "{st}");
    // keep_last = 1 forgot the other incrementals, never the restore-proven full.
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("list");
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert!(ids.contains(&proven.as_str()), "{list}");
    assert!(ids.len() <= 3, "retention ran: {list}");
}

/// Issue 28, item 6: a prune that collected nothing (a backup lease that cannot be read holds
/// back every deletion) or failed sent no alert, and a preview sent a `prune` event as if it
/// had pruned. Now: `prune_failed` (on by default) says why; previews send nothing.
#[test]
fn a_prune_that_collects_nothing_alerts_and_previews_send_no_event() {
    use crate::support::webhook::Receiver;
    let env = Env::new("awk", Some(AWKWARD_SQL));
    env.backup("full");
    let hook = Receiver::start();
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        format!(
            "{text}\n[notifications]\nwebhooks = [{{ url = \"{}\", events = [\"prune\", \"prune_failed\"] }}]\n",
            hook.url
        ),
    )
    .expect("config");
    // A lease no keepsake can read (damaged, or another repository key's).
    std::fs::create_dir_all(env.repo.join("locks")).expect("locks");
    std::fs::write(
        env.repo.join("locks/20261207T000000.000Z-0badbeef"),
        b"garbage",
    )
    .expect("lease");
    let mut daemon = env.spawn_daemon();
    let client = keepsake::api::client::Client::unix(env.dir.path().join("state/keepsake.sock"));
    eventually("the daemon answers", Duration::from_secs(30), || {
        crate::support::block_on(client.get("/v1/info")).is_ok_and(|a| a.status == 200)
    });
    let preview = crate::support::block_on(client.request(
        "POST",
        "/v1/prune",
        Some(&serde_json::json!({"dry_run": true})),
    ))
    .expect("preview");
    assert_eq!(preview.status, 200, "{}", preview.text());
    let real = crate::support::block_on(client.request(
        "POST",
        "/v1/prune",
        Some(&serde_json::json!({"dry_run": false})),
    ))
    .expect("prune");
    assert_eq!(real.status, 202, "{}", real.text());
    let ev = hook.wait_for("prune_failed", 1, Duration::from_secs(60))[0].clone();
    assert!(
        ev["error"]
            .as_str()
            .is_some_and(|e| e.contains("locks/20261207T000000.000Z-0badbeef")),
        "{ev}"
    );
    kill(daemon.id(), "TERM");
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(60)), Some(0));
    assert!(
        hook.events().iter().all(|e| e["event"] != "prune"),
        "a preview sends no prune event: {:?}",
        hook.events()
    );
}
