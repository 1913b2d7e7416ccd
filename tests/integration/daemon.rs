//! A real daemon process: a 6-field schedule makes several backups, each verified, retention
//! trims them, a second daemon on the same state directory is refused, and SIGTERM ends it
//! with exit 0.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Env, AWKWARD_SQL};

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
        format!("{text}\n[retention]\nkeep_last = 2\nprune_grace_hours = 0\n"),
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
        let done = jobs()
            .as_array()
            .map(|a| a.iter().filter(|j| j["status"] == "completed").count())
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
    // Retention kept at most two backups; every completed backup was verified at data level.
    assert!(env.snapshots().len() <= 2, "{:?}", env.snapshots());
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
    for b in list.as_array().expect("list") {
        assert_eq!(b["verified_level"], "data", "{b}");
    }
    let js = jobs();
    assert!(
        js.as_array()
            .expect("jobs")
            .iter()
            .all(|j| j["status"] != "running"),
        "{js}"
    );
    env.keepsake(&["verify", "--all", "--level", "structure"])
        .ok();
}
