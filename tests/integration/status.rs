//! `status` answers the on-call questions per source (backed up? proven? how old? RPO?
//! restore time?), and `jobs` keeps every job's outcome, including ones killed mid-run.

use crate::support::{script, Env, AWKWARD_SQL};

fn configure(env: &Env, bin_dir: Option<&std::path::Path>) {
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let text = env
        .config_text("awk", bin_dir, &env.identity)
        .replace(
            &pw_line,
            &format!("{pw_line}\nrpo = \"1h\"\n\n[sources.schedule]\nincremental = \"0 * * * *\"\ntimezone = \"Europe/London\"\n"),
        );
    std::fs::write(&env.config, text).expect("config");
}

fn json(env: &Env, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&env.keepsake(args).ok().stdout).expect("json")
}

#[test]
fn status_and_jobs_tell_what_is_proven_and_what_happened() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    configure(&env, None);
    let b = env.backup("full");
    let st = json(&env, &["status", "--json"]);
    assert_eq!(st[0]["source"], "main");
    assert_eq!(st[0]["last_backup_id"], b["id"]);
    assert_eq!(st[0]["rpo_state"], "breach", "nothing is proven yet: {st}");
    assert!(st[0]["last_verified_level"].is_null());
    // The next hourly run (from the schedule, in UTC) is within the hour.
    let next: chrono::DateTime<chrono::Utc> = st[0]["next_runs"][0]
        .as_str()
        .expect("next run")
        .parse()
        .expect("time");
    let wait = next - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::zero() && wait <= chrono::Duration::hours(1),
        "{st}"
    );

    env.keepsake(&["verify", "--latest", "--level", "restore"])
        .ok();
    let st = json(&env, &["status", "--json"]);
    assert_eq!(st[0]["rpo_state"], "ok", "{st}");
    assert_eq!(st[0]["last_verified_level"], "restore");
    assert!(st[0]["restore_ms"].as_u64().is_some(), "{st}");
    let text = env.keepsake(&["status"]).ok().stdout;
    assert!(
        text.contains("restore (") && text.contains("1h ok"),
        "{text}"
    );

    let jobs = json(&env, &["jobs", "--json"]);
    let kinds: Vec<(&str, &str)> = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["kind"].as_str().expect("k"),
                j["status"].as_str().expect("s"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("backup", "completed"), ("verify", "completed")],
        "{jobs}"
    );
    assert_eq!(jobs[0]["backup_id"], b["id"]);

    // A backup killed mid-run reads as interrupted, and status says so.
    let d = env.dir.path().join("slowbin");
    std::fs::create_dir_all(&d).expect("mkdir");
    let mark = env.dir.path().join("started");
    script(
        &d.join("pg_dump"),
        &format!(
            "#!/bin/bash\nREAL={}\nif [ \"$1\" = --version ]; then exec \"$REAL\" --version; fi\ntouch {}\nsleep 20\n",
            env.cluster.bin.join("pg_dump").display(),
            mark.display()
        ),
    );
    configure(&env, Some(&d));
    let mut child = env.keepsake_cmd(&["backup"]).spawn().expect("spawn");
    crate::support::wait_for(&mark, "backup never started");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let jobs = json(&env, &["jobs", "--json"]);
    assert_eq!(jobs[2]["status"], "interrupted", "{jobs}");
    let st = json(&env, &["status", "--json"]);
    assert_eq!(st[0]["last_failed_job"]["status"], "interrupted", "{st}");
    // The interrupted backup committed nothing.
    assert_eq!(env.snapshots().len(), 1);
    // Its passfile (the killed process could not remove it) is in this test's own TMPDIR,
    // readable by its owner only, until the next run sweeps it.
    let tmp = env.dir.path().join("tmp");
    let passfiles = |pid: Option<u32>| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&tmp)
            .expect("tmp")
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                match pid {
                    Some(p) => n.starts_with(&format!("keepsake-pgpass-{p}-")),
                    None => n.starts_with("keepsake-pgpass-"),
                }
            })
            .map(|e| e.path())
            .collect()
    };
    let stale = passfiles(Some(child.id()));
    assert_eq!(stale.len(), 1, "the killed backup left its passfile");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stale[0])
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "a passfile is its owner's only");
    configure(&env, None);
    env.keepsake(&["backup"]).ok();
    assert!(
        passfiles(Some(child.id())).is_empty(),
        "a stale passfile holding the password was not removed"
    );
    // A run that ends normally leaves no passfile of its own either.
    assert!(passfiles(None).is_empty(), "{:?}", passfiles(None));
}
