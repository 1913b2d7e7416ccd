//! Disaster-recovery drills (docs/drills.md) with the real binary and real PostgreSQL: a passing
//! drill with a smoke check and its sealed report; a failing smoke check (exit 3, the report
//! names it and why); the break-glass identity alone; damage in a pack (exit 3); Ctrl-C during
//! the restore (report says interrupted); `--at`; reports read from a second machine's view.
//! The scratch database is gone after every one of them.

use std::io::Read;
use std::time::Duration;

use serde_json::Value;

use crate::support::{kill, wait_exit, Env, WEDDING_SQL};

fn scratch_dbs(env: &Env) -> String {
    env.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'keepsake_drill%'",
    )
}

/// `env` with `[[drill.checks]]` appended (and the source's rto/rpo when given).
fn with_checks(env: &Env, checks: &str) {
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(&env.config, format!("{text}\n{checks}\n")).expect("config");
}

fn drill(env: &Env, args: &[&str]) -> (i32, Value, String) {
    let mut a = vec!["drill", "--json"];
    a.extend_from_slice(args);
    let r = env.keepsake(&a);
    let v = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r.code, v, r.all())
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

#[test]
fn passing_and_failing_drills_leave_reports_and_no_scratch_database() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let guests = env.psql("wed", "SELECT count(*) FROM guests");
    with_checks(
        &env,
        &format!(
            "[[drill.checks]]\nname = \"every guest is back\"\nsql = \"SELECT count(*) FROM guests\"\nexpect = \"= {guests}\"\n\n[[drill.checks]]\nname = \"vendors have names\"\nsql = \"SELECT min(name) FROM vendors\"\nexpect = \"not null\"\n"
        ),
    );
    let full = env.backup("full");
    let id = full["id"].as_str().expect("id").to_string();
    // No proven backup yet: the default choice refuses, and says how to get one.
    let (code, _, out) = drill(&env, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("proven at data level"), "{out}");
    env.keepsake(&["verify", &id, "--level", "data"]).ok();

    let md = env.dir.path().join("drill.md");
    let (code, rep, out) = drill(&env, &["--report", md.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(rep["result"], "passed", "{rep}");
    assert_eq!(rep["backup_id"], id.as_str());
    assert_eq!(rep["backup_proven"], "data");
    assert_eq!(check(&rep, "every guest is back")["outcome"], "passed");
    assert_eq!(
        check(&rep, "every guest is back")["value"],
        guests.trim(),
        "{rep}"
    );
    assert_eq!(check(&rep, "tables match the backup")["outcome"], "passed");
    let steps: Vec<&str> = rep["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        steps,
        [
            "preflight: key",
            "preflight: backup",
            "preflight: tools",
            "preflight: target",
            "restore",
            "checks",
            "measurements",
            "cleanup"
        ]
    );
    assert!(rep["rto_ms"].as_u64().expect("rto") >= rep["restore_ms"].as_u64().expect("restore"));
    assert!(rep["rpo_s"].as_i64().expect("rpo") >= 0);
    assert_eq!(scratch_dbs(&env), "0");
    // The steps were shown as they ran; the Markdown report was written.
    assert!(out.contains("drill: restore"), "{out}");
    let text = std::fs::read_to_string(&md).expect("report file");
    assert!(text.contains("— PASSED"), "{text}");
    assert!(text.contains("every guest is back"), "{text}");

    // A smoke check that does not hold: exit 3, the report names it and what was found.
    with_checks(
        &env,
        "[[drill.checks]]\nname = \"a thousand couples\"\nsql = \"SELECT count(*) FROM couples\"\nexpect = \">= 1000000\"\n",
    );
    let (code, rep, out) = drill(&env, &[]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(rep["result"], "failed");
    let c = check(&rep, "a thousand couples");
    assert_eq!(c["outcome"], "failed");
    assert!(
        c["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("expected >= 1000000, found")),
        "{c}"
    );
    assert!(
        rep["summary"]
            .as_str()
            .is_some_and(|s| s.contains("a thousand couples")),
        "{rep}"
    );
    assert_eq!(scratch_dbs(&env), "0");

    // Both reports are in the repository, oldest first, readable from another machine's state.
    let r = env.keepsake(&["drills", "--json"]).ok();
    let all: Value = serde_json::from_str(&r.stdout).expect("drills --json");
    let results: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["result"].as_str().unwrap_or(""))
        .collect();
    // The attempt that could not choose a backup is evidence too.
    assert_eq!(results, ["not_run", "passed", "failed"]);
    let other = env.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace(
            &env.dir.path().join("state").display().to_string(),
            &env.dir.path().join("state-elsewhere").display().to_string(),
        );
    std::fs::write(&other, text).expect("other config");
    let r =
        crate::support::keepsake_raw(&["--config", other.to_str().expect("utf8"), "drills"], &[])
            .ok();
    assert!(
        r.stdout.contains("passed") && r.stdout.contains("failed"),
        "{}",
        r.stdout
    );
    // The drill is in the job history and the audit log.
    let jobs = env.keepsake(&["jobs", "--json"]).ok().stdout;
    assert!(jobs.contains("\"drill\""), "{jobs}");
    let audit = env.keepsake(&["audit", "--json"]).ok().stdout;
    assert!(audit.contains("\"drill\""), "{audit}");
}

#[test]
fn break_glass_identity_damage_and_at() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let first = env.backup("full")["id"].as_str().expect("id").to_string();
    std::thread::sleep(Duration::from_millis(1100));
    let cut = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(Duration::from_millis(1100));
    env.psql("wed", "INSERT INTO couples (partner1, partner2, email, wedding_date, city, budget, created_at) VALUES ('A', 'B', 'a@b', '2027-01-01', 'Leeds', 1, now())");
    let second = env.backup("full")["id"].as_str().expect("id").to_string();

    // A backup that does not exist, or a target database that does: usage errors (exit 2), and
    // no report for a drill that never ran.
    let (code, _, out) = drill(&env, &["--backup", "20200101T000000Z-000000"]);
    assert_eq!(code, 2, "{out}");
    env.psql("postgres", "CREATE DATABASE taken");
    let (code, _, out) = drill(
        &env,
        &[
            "--backup",
            &first,
            "--target",
            &env.target("taken"),
            "--target-password",
            &format!("file:{}", env.password_file.display()),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("already exists"), "{out}");
    assert!(
        env.db_exists("taken"),
        "an existing database is never touched"
    );
    let none = env.keepsake(&["drills", "--json"]).ok().stdout;
    assert_eq!(none.trim(), "[]", "{none}");

    // --at picks the last backup finished before it.
    let (code, rep, out) = drill(&env, &["--at", &cut]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(rep["backup_id"], first.as_str(), "{rep}");
    let (code, rep, out) = drill(&env, &["--backup", &second]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(rep["backup_id"], second.as_str());

    // The break-glass key alone: the configuration names no identity at all.
    let saved = std::fs::read_to_string(&env.config).expect("config");
    let without: String = saved
        .lines()
        .filter(|l| !l.starts_with("identity_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, &without).expect("config");
    assert_ne!(env.keepsake(&["list"]).code, 0, "no identity configured");
    let (code, rep, out) = drill(
        &env,
        &[
            "--backup",
            &first,
            "--identity",
            env.identity.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        rep["identity"], "break-glass identity identity.txt",
        "{rep}"
    );
    std::fs::write(&env.config, &saved).expect("config");

    // A flipped byte in a pack of the second backup: exit 3, nothing left behind.
    let show: Value = serde_json::from_str(&env.keepsake(&["show", &second, "--json"]).ok().stdout)
        .expect("show");
    let packs = env.packs();
    assert!(show["packs"].as_u64().expect("packs") >= 1);
    for p in &packs {
        let mut b = std::fs::read(p).expect("read");
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
        std::fs::write(p, &b).expect("write");
    }
    let (code, rep, out) = drill(&env, &["--backup", &second]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(rep["result"], "failed", "{rep}");
    let restore = rep["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "restore"))
        .expect("restore step");
    assert_eq!(restore["outcome"], "failed", "{rep}");
    assert_eq!(scratch_dbs(&env), "0");
}

#[test]
fn ctrl_c_during_the_restore_drops_the_scratch_database_and_reports_interrupted() {
    let env = Env::new("big", None);
    // Enough rows that the restore takes a few seconds.
    env.psql(
        "big",
        "CREATE TABLE t AS SELECT i, md5(i::text) || md5((i * 7)::text) AS s FROM generate_series(1, 3000000) i",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let report = env.dir.path().join("interrupted.json");
    let mut child = env
        .keepsake_cmd(&[
            "drill",
            "--backup",
            &id,
            "--report",
            report.to_str().expect("utf8"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the restore to be under way, then interrupt.
    let mut err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match err.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.push_str(&String::from_utf8_lossy(&buf[..n]));
                    let _ = tx.send(all.clone());
                }
            }
        }
    });
    let t = std::time::Instant::now();
    let mut seen = String::new();
    while !seen.contains("drill: restore …") {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no restore step: {seen}"
        );
        if let Ok(s) = rx.recv_timeout(Duration::from_secs(1)) {
            seen = s;
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    kill(child.id(), "INT");
    let code = wait_exit(&mut child, Duration::from_secs(90));
    assert_eq!(code, Some(1), "{seen}");
    let rep: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(rep["result"], "interrupted", "{rep}");
    let steps = rep["steps"].as_array().expect("steps");
    assert!(
        steps
            .iter()
            .any(|s| s["name"] == "restore" && s["outcome"] == "interrupted"),
        "{rep}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["name"] == "cleanup" && s["outcome"] == "passed"),
        "{rep}"
    );
    assert_eq!(scratch_dbs(&env), "0");
    let jobs = env.keepsake(&["jobs", "--json"]).ok().stdout;
    assert!(jobs.contains("cancelled"), "{jobs}");
}
