//! The console end to end: the real binary in tmux (80×24) against real PostgreSQL — open it,
//! back up with `b` → full, see the backup on the Backups screen and in `keepsake list --json`,
//! restore it with the wizard into a new database (data identical), and `q` gives the shell
//! its screen back.

use std::process::Command;
use std::time::Duration;

use crate::support::{eventually, Env, AWKWARD_SQL};

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let session = format!("ks-{}", hex::encode(rand::random::<[u8; 4]>()));
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-x",
                "80",
                "-y",
                "24",
                "-s",
                &session,
                "bash",
                "--norc",
                "--noprofile",
            ])
            .status()
            .expect("tmux");
        assert!(ok.success());
        let t = Tmux { session };
        t.keys(&[cmd, "Enter"]);
        t
    }

    fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(ok.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, limit: Duration) -> String {
        let mut last = String::new();
        let t = std::time::Instant::now();
        while t.elapsed() < limit {
            last = self.screen();
            if last.contains(what) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("waited {limit:?} for {what:?}; the screen:\n{last}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

/// The audit lines of `action` jobs started through `via` (`console`, `cli`) by this
/// process's user.
fn audited(env: &Env, action: &str, via: &str) -> Vec<serde_json::Value> {
    let me = keepsake::engine::audit::current_user();
    let text =
        std::fs::read_to_string(env.dir.path().join("state/audit.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["action"] == action && l["via"] == via && l["actor"] == me.as_str())
        .collect()
}

/// Regression (issue 25): deletes and prunes started from a local console (no daemon) left no
/// audit line: the faces wrote the audit, and the console wrote none. The runner now records
/// every job with its actor, whatever face started it.
#[test]
fn a_local_console_delete_and_prune_are_audited_with_the_unix_user() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let first = env.backup("full")["id"].as_str().expect("id").to_string();
    env.backup("full");
    let bin = crate::support::bin();
    let t = Tmux::start(&format!(
        "clear; NO_COLOR=1 {bin} --config {} ; echo after-console-$?",
        env.config.display()
    ));
    t.wait_for("1 Overview", Duration::from_secs(30));
    t.keys(&["2"]);
    t.wait_for("Backups (2)", Duration::from_secs(15));
    t.keys(&["d"]);
    let s = t.wait_for("Delete backup", Duration::from_secs(5));
    let doomed = if s.contains(&first) {
        first.clone()
    } else {
        env.snapshots()
            .into_iter()
            .find(|i| s.contains(i.as_str()))
            .expect("the dialog names a backup")
    };
    // The short form the screens show confirms it.
    t.keys(&["-l", doomed.rsplit('-').next().expect("suffix")]);
    t.keys(&["Enter"]);
    eventually("the backup is deleted", Duration::from_secs(60), || {
        env.snapshots().len() == 1
    });
    let deletes = audited(&env, "delete", "console");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0]["target"], doomed.as_str());
    assert_eq!(deletes[0]["outcome"], "ok");

    t.keys(&["4"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["p"]);
    t.wait_for("The policy keeps", Duration::from_secs(30));
    t.keys(&["y"]);
    eventually("the prune is audited", Duration::from_secs(60), || {
        !audited(&env, "prune", "console").is_empty()
    });
    // Its line is written just before the job ends: quit once the console has seen it end
    // (quitting while one of its jobs runs asks first).
    t.keys(&["3"]);
    t.wait_for("Jobs (0 running)", Duration::from_secs(30));
    t.keys(&["q"]);
    t.wait_for("after-console-0", Duration::from_secs(30));
    // The CLI's own jobs are the runner's too, as `cli`.
    assert_eq!(audited(&env, "backup", "cli").len(), 2);
    env.keepsake(&["audit", "verify"]).ok();
}

#[test]
fn console_backs_up_restores_and_gives_the_terminal_back() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let bin = crate::support::bin();
    let t = Tmux::start(&format!(
        "clear; echo before-console; PGPASSWORD={} NO_COLOR=1 {bin} --config {} ; echo after-console-$?",
        env.cluster.password.expose(),
        env.config.display()
    ));
    let s = t.wait_for("1 Overview", Duration::from_secs(30));
    // Said short at 80 columns.
    assert!(s.contains("local (no schedules)"), "{s}");
    assert!(s.contains("main"), "the source is listed:\n{s}");
    assert!(
        !s.contains("before-console"),
        "the console has the whole screen:\n{s}"
    );

    // b → the only source → f: a full backup.
    t.keys(&["b"]);
    t.wait_for("Back up main as:", Duration::from_secs(5));
    t.keys(&["f"]);
    eventually("the backup is listed", Duration::from_secs(90), || {
        env.keepsake(&["list", "--json"])
            .stdout
            .contains("\"type\": \"full\"")
    });
    t.keys(&["2"]);
    let s = t.wait_for("Backups (1)", Duration::from_secs(15));
    assert!(s.contains("full"), "{s}");
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("list");
    let id = list[0]["id"].as_str().expect("id").to_string();
    assert!(s.contains(id.rsplit('-').next().expect("suffix")), "{s}");
    // Details: who started it (this console, in-process) and its largest tables.
    t.keys(&["Enter"]);
    let s = t.wait_for(" rows ", Duration::from_secs(15));
    assert!(s.contains("started by") && s.contains("(console)"), "{s}");
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));

    // r → new database → name awk_restored → Enter → Enter.
    t.keys(&["r"]);
    t.wait_for("a new database", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("Name of the new database", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("parallel sessions", Duration::from_secs(5));
    t.keys(&["Enter"]);
    let s = t.wait_for("does not exist there yet", Duration::from_secs(15));
    assert!(s.contains("Creates database awk_restored"), "{s}");
    assert!(s.contains("Enter restore"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("restored into awk_restored", Duration::from_secs(120));
    assert_eq!(env.fingerprint("awk_restored"), env.fingerprint("awk"));

    // Another server, typed as a URL (the password comes from PGPASSWORD, as on the command
    // line): r → u → the URL → Enter → Enter.
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["r"]);
    t.wait_for("another server", Duration::from_secs(5));
    t.keys(&["u"]);
    t.keys(&[
        "-l",
        &format!(
            "postgres@127.0.0.1:{}/awk_url?sslmode=disable",
            env.cluster.port
        ),
    ]);
    t.keys(&["Enter"]);
    t.wait_for("Creates database awk_url", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("restored into awk_url", Duration::from_secs(120));
    assert_eq!(env.fingerprint("awk_url"), env.fingerprint("awk"));

    // Some tables, beside the live ones: r → t → choose the first (public.attachments) → the
    // default schema → Enter. The rows are checked against the backup's facts.
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["r"]);
    t.wait_for("some tables", Duration::from_secs(5));
    t.keys(&["t"]);
    t.wait_for("public.attachments", Duration::from_secs(15));
    t.keys(&["Space"]);
    t.wait_for("(1 chosen)", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("into a NEW schema of awk", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("nothing existing is touched", Duration::from_secs(5));
    t.keys(&["Enter"]);
    let s = t.wait_for("1 checked", Duration::from_secs(120));
    assert!(s.contains("tables: public.attachments"), "{s}");
    let schema = format!("restored_{}", &id[..8]);
    assert_eq!(
        env.psql("awk", &format!("SELECT count(*) FROM {schema}.attachments")),
        env.psql("awk", "SELECT count(*) FROM public.attachments")
    );

    // The runner audited each restore as this console's user, in-process (issue 25).
    let restores = audited(&env, "restore", "console");
    assert_eq!(restores.len(), 3, "{restores:?}");
    assert!(
        restores.iter().all(|l| l["outcome"] == "ok"),
        "{restores:?}"
    );

    // q: the shell's screen comes back, the console exits 0.
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["q"]);
    let s = t.wait_for("after-console-0", Duration::from_secs(30));
    assert!(
        s.contains("before-console"),
        "the shell's screen is back:\n{s}"
    );
    assert!(!s.contains("1 Overview"), "{s}");
    assert!(
        std::fs::read_to_string(env.dir.path().join("state/console.log")).is_ok(),
        "the console logs to its file"
    );
}

#[test]
fn console_without_a_terminal_exits_2_and_points_at_status() {
    let env = Env::new("awk", None);
    let r = env.keepsake(&[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("keepsake status"), "{}", r.stderr);
}

/// docs/console.md, "Attached or local": with the daemon answering on its socket, the console
/// attaches — the header says so, `b` starts the backup in the daemon, a backup started by
/// another caller of the API appears, the restore wizard restores through the daemon (which
/// connects with its own credentials) and `q` leaves at once (the jobs are the daemon's).
/// `console --local` never attaches.
#[test]
fn console_attaches_to_the_daemon_and_runs_jobs_there() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let _daemon = env.spawn_daemon();
    let sock = env.dir.path().join("state/keepsake.sock");
    let client = keepsake::api::client::Client::unix(&sock);
    eventually("the daemon answers", Duration::from_secs(30), || {
        crate::support::block_on(client.get("/v1/info")).is_ok_and(|a| a.status == 200)
    });
    let bin = crate::support::bin();
    let t = Tmux::start(&format!(
        "clear; NO_COLOR=1 {bin} --config {} ; echo after-console-$?",
        env.config.display()
    ));
    let s = t.wait_for("1 Overview", Duration::from_secs(30));
    assert!(s.contains("attached"), "{s}");

    // Started from 2 Backups, the backup is in sight there (issue 27, item 2: nothing was).
    t.keys(&["2"]);
    t.wait_for("Backups (0)", Duration::from_secs(15));
    t.keys(&["b"]);
    t.wait_for("Back up main as:", Duration::from_secs(5));
    t.keys(&["f"]);
    eventually(
        "the Backups screen shows the backup started, running or done",
        Duration::from_secs(30),
        || {
            let s = t.screen();
            [
                "▶ backup main started",
                "● backup main",
                "✔ backup main completed",
            ]
            .iter()
            .any(|w| s.contains(w))
        },
    );
    eventually(
        "the daemon made the backup",
        Duration::from_secs(90),
        || {
            let a = crate::support::block_on(client.get("/v1/jobs")).expect("jobs");
            a.json()["history"].as_array().is_some_and(|h| {
                h.iter()
                    .any(|j| j["kind"] == "backup" && j["status"] == "completed")
            })
        },
    );
    // Another caller starts one: the console hears of it from the daemon.
    let a = crate::support::block_on(client.request(
        "POST",
        "/v1/backups",
        Some(&serde_json::json!({"type": "incremental"})),
    ))
    .expect("POST");
    assert_eq!(a.status, 202, "{}", a.text());
    t.keys(&["2"]);
    let s = t.wait_for("Backups (2)", Duration::from_secs(90));
    assert!(s.contains("incr"), "{s}");

    // The wizard restores through the daemon into a new database on the source's server.
    t.keys(&["g", "r"]);
    t.wait_for("a new database", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("Name of the new database", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("parallel sessions", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("Creates database awk_restored", Duration::from_secs(5));
    t.keys(&["Enter"]);
    t.wait_for("restored into awk_restored", Duration::from_secs(120));
    assert_eq!(env.fingerprint("awk_restored"), env.fingerprint("awk"));
    let audit = std::fs::read_to_string(env.dir.path().join("state/audit.jsonl")).expect("audit");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"restore\"") && l.contains("accepted")),
        "the daemon audited the console's restore:\n{audit}"
    );

    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    // 6 Log: the daemon's audit log tail (this console's user is an admin of the daemon).
    t.keys(&["6"]);
    let s = t.wait_for("Audit log", Duration::from_secs(15));
    assert!(s.contains("restore") && s.contains("accepted"), "{s}");
    t.keys(&["q"]);
    t.wait_for("after-console-0", Duration::from_secs(30));

    // --local: the engine runs in the console even with the daemon up.
    t.keys(&[
        &format!(
            "clear; NO_COLOR=1 {bin} --config {} console --local; echo after-local-$?",
            env.config.display()
        ),
        "Enter",
    ]);
    let s = t.wait_for("1 Overview", Duration::from_secs(30));
    // Said short at 80 columns.
    assert!(s.contains("local (no schedules)"), "{s}");
    t.keys(&["q"]);
    t.wait_for("after-local-0", Duration::from_secs(30));
}

/// Issue 27, item 1: when the daemon went away the header kept saying "daemon attached" for
/// over a minute, and after it came back the old pid. Now: SIGTERM the daemon and the header
/// says unreachable within seconds, `c` says why nothing can be cancelled; start it again and
/// the header names the new process.
#[test]
fn the_console_says_when_the_daemon_goes_and_names_the_one_that_comes_back() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let mut first = env.spawn_daemon();
    let sock = env.dir.path().join("state/keepsake.sock");
    let client = keepsake::api::client::Client::unix(&sock);
    let answers = || {
        eventually("the daemon answers", Duration::from_secs(30), || {
            crate::support::block_on(client.get("/v1/info")).is_ok_and(|a| a.status == 200)
        })
    };
    answers();
    let bin = crate::support::bin();
    let t = Tmux::start(&format!(
        "clear; NO_COLOR=1 {bin} --config {} ; echo after-console-$?",
        env.config.display()
    ));
    // At 80 columns the header says it short: `attached HOST pid N · …`.
    t.wait_for(&format!("pid {} ", first.0.id()), Duration::from_secs(30));

    crate::support::kill(first.0.id(), "TERM");
    assert_eq!(
        crate::support::wait_exit(&mut first.0, Duration::from_secs(30)),
        Some(0)
    );
    let s = t.wait_for("daemon unreachable since", Duration::from_secs(10));
    assert!(s.contains("no answer from the daemon"), "{s}");
    assert!(!s.contains("attached"), "{s}");
    t.keys(&["c"]);
    t.wait_for("does not answer", Duration::from_secs(5));
    t.keys(&["Escape"]);

    let second = env.spawn_daemon();
    answers();
    let s = t.wait_for(&format!("pid {} ", second.0.id()), Duration::from_secs(30));
    assert!(s.contains("attached"), "{s}");
    assert!(!s.contains("unreachable"), "{s}");
    t.keys(&["6"]);
    t.wait_for("attached to the daemon again", Duration::from_secs(5));
    t.keys(&["q"]);
    t.wait_for("after-console-0", Duration::from_secs(30));
}

/// Issue 27, item 8: after `4 p y` the Retention screen kept listing the pruned backup until
/// it was left and entered again, and every preview wrote "prune queued/started/completed" to
/// 6 Log like a real prune. Now the plan is read again when a prune ends, and previews say so.
#[test]
fn retention_is_read_again_after_a_prune_and_previews_say_so() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let text = format!(
        "{}
[retention]
keep_last = 1
prune_grace_hours = 0
allow_short_prune_grace = true
",
        env.config_text("awk", None, &env.identity)
    );
    std::fs::write(&env.config, text).expect("config");
    let old = env.backup("full")["id"].as_str().expect("id").to_string();
    let new = env.backup("full")["id"].as_str().expect("id").to_string();
    let short = |id: &str| id.rsplit('-').next().expect("suffix").to_string();
    let bin = crate::support::bin();
    let t = Tmux::start(&format!(
        "clear; NO_COLOR=1 {bin} --config {} ; echo after-console-$?",
        env.config.display()
    ));
    t.wait_for("1 Overview", Duration::from_secs(30));
    t.keys(&["4"]);
    let s = t.wait_for("forget", Duration::from_secs(30));
    assert!(s.contains(&short(&old)) && s.contains(&short(&new)), "{s}");
    t.keys(&["p"]);
    t.wait_for("The policy keeps", Duration::from_secs(30));
    t.keys(&["y"]);
    eventually(
        "the prune forgot the old backup",
        Duration::from_secs(60),
        || env.snapshots() == vec![new.clone()],
    );
    // Without leaving the screen, the plan no longer lists it.
    eventually(
        "the Retention screen shows the plan after the prune",
        Duration::from_secs(30),
        || {
            let s = t.screen();
            s.contains("Plan") && s.contains(&short(&new)) && !s.contains(&short(&old))
        },
    );
    t.keys(&["6"]);
    let s = t.wait_for("prune preview", Duration::from_secs(5));
    assert!(
        s.lines().any(|l| l.contains("] prune completed")),
        "the real prune is told apart from its previews: {s}"
    );
    t.keys(&["q"]);
    t.wait_for("after-console-0", Duration::from_secs(30));
}

/// `D` in the console: pick the backup (the newest proven one is preselected), start, watch
/// the steps, read the report; 5 Drills lists it and `keepsake drills` sees the same report.
#[test]
fn console_guided_drill_end_to_end() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &id, "--level", "data"]).ok();
    let bin = crate::support::bin();
    let t = Tmux::start(&format!(
        "clear; NO_COLOR=1 {bin} --config {} ; echo after-console-$?",
        env.config.display()
    ));
    t.wait_for("1 Overview", Duration::from_secs(30));
    t.keys(&["D"]);
    let s = t.wait_for("Which backup of main?", Duration::from_secs(5));
    assert!(s.contains(&format!("▶ {id}")), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("Enter start", Duration::from_secs(5));
    t.keys(&["Enter"]);
    let s = t.wait_for("PASSED", Duration::from_secs(120));
    assert!(s.contains("Drill report"), "{s}");
    // Apart: Escape followed at once by 5 reads as Alt-5.
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["5"]);
    let s = t.wait_for("Drills (1)", Duration::from_secs(15));
    assert!(s.contains("passed"), "{s}");
    t.keys(&["q"]);
    t.wait_for("after-console-0", Duration::from_secs(30));
    let all: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["drills", "--json"]).ok().stdout).expect("drills");
    assert_eq!(all[0]["result"], "passed", "{all}");
    let drills = audited(&env, "drill", "console");
    assert_eq!(
        drills.len(),
        1,
        "the runner audited the console's drill: {drills:?}"
    );
    assert_eq!(all[0]["backup_id"], id.as_str());
    assert!(
        all[0]["actor"]
            .as_str()
            .is_some_and(|a| a.ends_with("(console)")),
        "{all}"
    );
}

/// An SSH connection that drops sends the console SIGHUP: it leaves as `q` would — the
/// backup it started in-process is cancelled and its cleanup runs (its lease given back, the
/// job recorded as cancelled) — instead of dying with the job half done (before: killed by the
/// signal, exit 129, the lease left in the repository and the job never ended).
#[test]
fn a_hung_up_terminal_cancels_the_consoles_jobs_and_cleans_up() {
    let env = Env::new("hup", None);
    env.psql(
        "hup",
        "CREATE TABLE guests AS SELECT g AS id, md5(g::text) || md5((g * 3)::text) AS note FROM generate_series(1, 1500000) g",
    );
    let bin = crate::support::bin();
    let t = Tmux::start(&format!(
        "clear; NO_COLOR=1 {bin} --config {} ; echo after-console-$?",
        env.config.display()
    ));
    t.wait_for("1 Overview", Duration::from_secs(30));
    t.keys(&["b"]);
    t.wait_for("Back up main as:", Duration::from_secs(5));
    t.keys(&["f"]);
    t.wait_for("● backup main", Duration::from_secs(30));
    assert!(
        !env.object_keys("locks/").is_empty(),
        "the backup holds a lease"
    );
    // The console is the pane's shell's child.
    let shell = Command::new("tmux")
        .args(["display", "-p", "-t", &t.session, "#{pane_pid}"])
        .output()
        .expect("tmux");
    let shell = String::from_utf8_lossy(&shell.stdout).trim().to_string();
    let kids =
        std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).expect("children");
    let pid: u32 = kids
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("console pid");
    crate::support::kill(pid, "HUP");
    let s = t.wait_for("after-console-", Duration::from_secs(60));
    assert!(s.contains("after-console-0"), "{s}");
    assert!(
        env.object_keys("locks/").is_empty(),
        "the lease was given back: {:?}",
        env.object_keys("locks/")
    );
    let jobs = env.keepsake(&["jobs", "--json"]).ok().json();
    let last = jobs
        .as_array()
        .and_then(|j| j.iter().rev().find(|j| j["kind"] == "backup"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["status"], "cancelled", "{jobs}");
    assert!(env.keepsake(&["list", "--json"]).ok().stdout.contains("[]"));
}
