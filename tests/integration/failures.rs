//! Failures lose nothing: pg_dump killed mid-stream, the server stopped mid-dump, a wrong
//! identity, and no secret in any output, log or child argv.

use std::path::PathBuf;

use crate::support::{script, Env, WEDDING_SQL};

/// A bin_dir whose pg_dump wraps the real one with `body` (`$REAL` is the real pg_dump).
fn wrapper_dir(env: &Env, body: &str) -> PathBuf {
    let d = env.dir.path().join("wrapbin");
    std::fs::create_dir_all(&d).expect("mkdir");
    let real = env.cluster.bin.join("pg_dump");
    script(
        &d.join("pg_dump"),
        &format!(
            "#!/bin/bash\nset -o pipefail\nREAL={}\nif [ \"$1\" = --version ]; then exec \"$REAL\" --version; fi\n{body}\n",
            real.display()
        ),
    );
    let _ = std::os::unix::fs::symlink(env.cluster.bin.join("pg_restore"), d.join("pg_restore"));
    d
}

fn assert_earlier_backup_restores(env: &Env, id: &str, fp: &str, db: &str) {
    env.write_config("wed", None, &env.identity);
    env.restore_new(id, db).ok();
    assert_eq!(env.fingerprint(db), fp);
}

#[test]
fn pg_dump_killed_mid_stream_commits_nothing() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let fp = env.fingerprint("wed");
    let first = env.backup("full");
    let snaps = env.snapshots();

    let d = wrapper_dir(&env, "\"$REAL\" \"$@\" | head -c 3000000\nkill -9 $$");
    env.write_config("wed", Some(&d), &env.identity);
    let r = env.keepsake(&["backup", "--type", "full"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("pg_dump") && r.stderr.contains("signal 9"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was committed"), "{}", r.stderr);
    assert_eq!(
        env.snapshots(),
        snaps,
        "a manifest was written for a failed backup"
    );

    // An archive cut short with exit status 1 is refused the same way.
    let d = wrapper_dir(&env, "\"$REAL\" \"$@\" | head -c 2000000\nexit 1");
    env.write_config("wed", Some(&d), &env.identity);
    let r = env.keepsake(&["backup", "--type", "incremental"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(env.snapshots(), snaps);

    // Cut short but exiting 0 (a broken wrapper, a proxy, a full disk on a pipe): the archive
    // parser notices the missing data and nothing is committed.
    let d = wrapper_dir(&env, "\"$REAL\" \"$@\" | head -c 2000000\nexit 0");
    env.write_config("wed", Some(&d), &env.identity);
    let r = env.keepsake(&["backup", "--type", "full"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("incomplete"), "{}", r.stderr);
    assert_eq!(env.snapshots(), snaps);

    assert_earlier_backup_restores(
        &env,
        first["id"].as_str().expect("id"),
        &fp,
        "wed_after_kill",
    );
}

#[test]
fn server_stopped_mid_dump_commits_nothing() {
    let mut env = Env::new("wed", Some(WEDDING_SQL));
    let fp = env.fingerprint("wed");
    let first = env.backup("full");
    let snaps = env.snapshots();

    let mark = env.dir.path().join("mark");
    let d = wrapper_dir(
        &env,
        &format!(
            "\"$REAL\" \"$@\" | {{ head -c 1000000; touch {}; sleep 4; cat; }}",
            mark.display()
        ),
    );
    env.write_config("wed", Some(&d), &env.identity);
    let child = env
        .keepsake_cmd(&["backup", "--type", "full"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    crate::support::wait_for(&mark, "dump never started");
    env.cluster.stop("immediate").expect("stop server");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert_eq!(
        env.snapshots(),
        snaps,
        "a manifest was written for a failed backup"
    );

    env.cluster.restart().expect("restart");
    assert_earlier_backup_restores(
        &env,
        first["id"].as_str().expect("id"),
        &fp,
        "wed_after_stop",
    );
}

crate::both_backends!(wrong_identity_fails_before_touching_the_target);

fn wrong_identity_fails_before_touching_the_target(backend: crate::support::Backend) {
    let env = Env::with_backend(backend, "wed", Some(crate::support::AWKWARD_SQL));
    let b = env.backup("full");
    let other = env.dir.path().join("other.txt");
    crate::support::keepsake_raw(&["keygen", "--output", other.to_str().expect("utf8")], &[]).ok();
    env.write_config("wed", None, &other);
    let r = env.restore_new(b["id"].as_str().expect("id"), "never_created");
    // A key that opens nothing is a configuration error: exit 2.
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("identit"), "{}", r.stderr);
    assert!(
        !env.db_exists("never_created"),
        "a target was created with a wrong key"
    );
    let r = env.keepsake(&["list"]);
    assert_eq!(r.code, 2, "{}", r.all());
}

#[test]
fn no_secret_in_output_log_or_argv() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let password = env.cluster.password.expose().to_string();
    let secret_key = std::fs::read_to_string(&env.identity)
        .expect("identity")
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("key line")
        .to_string();

    // A slow pg_dump so that we can look at every process's argv and environment meanwhile.
    let mark = env.dir.path().join("mark");
    let d = wrapper_dir(
        &env,
        &format!("touch {}; sleep 2; exec \"$REAL\" \"$@\"", mark.display()),
    );
    env.write_config("wed", Some(&d), &env.identity);
    let child = env
        .keepsake_cmd(&["backup", "--type", "full"])
        .env("KEEPSAKE_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    crate::support::wait_for(&mark, "dump never started");
    let mut seen = 0;
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline);
        assert!(!cmd.contains(&password), "password in argv: {cmd}");
        assert!(!cmd.contains(&secret_key), "identity in argv");
        if cmd.contains("keepsake") || cmd.contains("pg_dump") {
            seen += 1;
            // Whatever way the password reaches pg_dump, it is never in an environment
            // (PGPASSWORD is the classic leak: /proc/PID/environ).
            let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let environ = String::from_utf8_lossy(&environ);
            assert!(
                !environ.contains(&password),
                "password in the environment of {cmd}"
            );
            assert!(
                !environ.split('\0').any(|v| v.starts_with("PGPASSWORD=")),
                "PGPASSWORD set for {cmd}"
            );
        }
    }
    assert!(seen >= 2, "did not see keepsake and pg_dump running");
    let out = child.wait_with_output().expect("wait");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("pg_dump"),
        "debug log should show pg_dump's output: {all}"
    );
    assert!(!all.contains(&password), "password in output");
    assert!(!all.contains(&secret_key), "identity in output");

    // A wrong password: the error is clear and does not echo any password.
    let wrong = env.dir.path().join("wrongpw");
    std::fs::write(&wrong, "not-the-password-x1").expect("pw");
    let cfg = env.config_text("wed", None, &env.identity).replace(
        &env.password_file.display().to_string(),
        &wrong.display().to_string(),
    );
    std::fs::write(&env.config, cfg).expect("cfg");
    let r = env.keepsake(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("password authentication failed"),
        "{}",
        r.stderr
    );
    assert!(!r.all().contains("not-the-password-x1") && !r.all().contains(&password));
}

#[test]
fn damaged_manifest_is_named_while_others_stay_usable() {
    let env = Env::new("wed", Some(crate::support::AWKWARD_SQL));
    let a = env.backup("full");
    let b = env.backup("incremental");
    let bid = b["id"].as_str().expect("id");
    // A forger with the public recipient cannot produce a valid manifest: flip a byte.
    let p = env.repo.join("snapshots").join(bid);
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[20] ^= 1;
    std::fs::write(&p, bytes).expect("write");
    let r = env.keepsake(&["list"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stdout.contains(a["id"].as_str().expect("id")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(bid) && r.stderr.contains("authentication failed"),
        "{}",
        r.stderr
    );
    // Backups go on.
    let c = env.backup("incremental");
    assert_eq!(c["status"], "completed");
}

#[test]
fn init_refuses_an_identity_that_matches_no_recipient() {
    let env = Env::new("wed", None);
    let other = env.dir.path().join("other.txt");
    crate::support::keepsake_raw(&["keygen", "--output", other.to_str().expect("utf8")], &[]).ok();
    let mut text = env.config_text("wed", None, &other);
    text = text.replace(
        &env.repo.display().to_string(),
        &env.dir.path().join("repo-x").display().to_string(),
    );
    std::fs::write(&env.config, text).expect("cfg");
    let r = env.keepsake(&["init"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("no key for any of encryption.recipients"),
        "{}",
        r.stderr
    );
    assert!(!env.dir.path().join("repo-x").join("config").exists());
}

/// Regression (issue 13, defect 7): pg_dump and pg_restore inherited keepsake's whole
/// environment — every `env:` secret the configuration references and the AWS keys. They get
/// only what they need now. The wrapper records each tool's environment; keepsake runs with a
/// source password in `env:`, AWS keys and an unrelated secret set.
#[test]
fn client_tools_inherit_no_secret_from_keepsakes_environment() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let log = env.dir.path().join("child-env");
    let d = wrapper_dir(
        &env,
        &format!("env >> {}; exec \"$REAL\" \"$@\"", log.display()),
    );
    // pg_restore recorded too (the wrapper dir links the real one: replace it by a wrapper).
    let real_restore = env.cluster.bin.join("pg_restore");
    let _ = std::fs::remove_file(d.join("pg_restore"));
    script(
        &d.join("pg_restore"),
        &format!(
            "#!/bin/bash\nif [ \"$1\" = --version ]; then exec {r} --version; fi\nenv >> {l}\nexec {r} \"$@\"\n",
            r = real_restore.display(),
            l = log.display()
        ),
    );
    let password = env.cluster.password.expose().to_string();
    let pw_line = format!("password = \"file:{}\"", env.password_file.display());
    let text = env
        .config_text("wed", Some(&d), &env.identity)
        .replace(&pw_line, "password = \"env:KEEPSAKE_TEST_SOURCE_PW\"");
    std::fs::write(&env.config, text).expect("config");
    let secrets = [
        ("KEEPSAKE_TEST_SOURCE_PW", password.as_str()),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-x7f3q"),
        ("AWS_ACCESS_KEY_ID", "GKaws-id-x7f3q"),
        ("KEEPSAKE_UNRELATED_TOKEN", "unrelated-secret-x7f3q"),
        ("PGPASSWORD", "inherited-pgpassword-x7f3q"),
    ];
    let run = |args: &[&str]| {
        let mut c = env.keepsake_cmd(args);
        for (k, v) in secrets {
            c.env(k, v);
        }
        let o = c.output().expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["backup", "--type", "full"]);
    run(&["verify", "--latest", "--level", "restore"]);
    let seen = std::fs::read_to_string(&log).expect("the wrappers ran");
    assert!(seen.contains("PGPASSFILE="), "{seen}");
    assert!(seen.contains("PGDATABASE=wed"), "{seen}");
    for (k, v) in secrets {
        let line = seen.lines().find(|l| l.contains(v)).unwrap_or("");
        assert!(
            !seen.contains(v),
            "{k}'s value reached a client tool: {}",
            line.split('=').next().unwrap_or("")
        );
    }
    assert!(
        !seen.contains("AWS_"),
        "an AWS variable reached a client tool"
    );
}
