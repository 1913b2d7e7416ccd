//! Restore target safety: never mix into a database with data, never overwrite the backup's
//! own source, never silently reuse an existing database for --create.

use crate::support::{Env, AWKWARD_SQL};

#[test]
fn restore_refuses_unsafe_targets() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id");
    let pw = format!("file:{}", env.password_file.display());
    let restore = |db: &str, extra: &[&str]| {
        let t = env.target(db);
        let mut a = vec![
            "restore",
            id,
            "--target",
            t.as_str(),
            "--target-password",
            pw.as_str(),
        ];
        a.extend_from_slice(extra);
        env.keepsake(&a)
    };
    let fp = env.fingerprint("awk");

    // A database holding tables is refused without --clean --confirm NAME.
    env.psql("postgres", "CREATE DATABASE busy");
    env.psql(
        "busy",
        "CREATE TABLE keep_me(x int); INSERT INTO keep_me VALUES (1)",
    );
    let r = restore("busy", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("not empty") && r.stderr.contains("--clean --confirm busy"),
        "{}",
        r.stderr
    );
    // The engine names the request's fields; the command line says them as its flags.
    assert!(
        r.stderr.contains("--clean is needed") && r.stderr.contains("a new database with --create"),
        "{}",
        r.stderr
    );
    let r = restore("busy", &["--clean", "--confirm", "wrong"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("--confirm wrong does not match"),
        "{}",
        r.stderr
    );
    assert_eq!(env.psql("busy", "SELECT count(*) FROM keep_me"), "1");
    restore("busy", &["--clean", "--confirm", "busy"]).ok();
    assert_eq!(
        env.fingerprint("busy")
            .lines()
            .filter(|l| !l.contains("keep_me"))
            .collect::<Vec<_>>()
            .join("\n"),
        fp
    );

    // --create refuses an existing database.
    let r = restore("busy", &["--create"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);

    // The backup's own source is refused unless confirmed by name.
    let r = restore("awk", &["--clean", "--confirm", "awk2"]);
    assert_eq!(r.code, 2);
    let r = restore("awk", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("source database"), "{}", r.stderr);
    assert_eq!(env.fingerprint("awk"), fp);

    // An empty existing database is fine without flags; a missing one needs --create.
    env.psql("postgres", "CREATE DATABASE empty_one");
    restore("empty_one", &[]).ok();
    assert_eq!(env.fingerprint("empty_one"), fp);
    let r = restore("missing_one", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--create"), "{}", r.stderr);

    // A password in the target URL is refused (it would show in the process list).
    let t = format!(
        "postgres://postgres:secretpw@127.0.0.1:{}/x",
        env.cluster.port
    );
    let r = env.keepsake(&["restore", id, "--target", &t, "--create"]);
    assert_eq!(r.code, 2);
    assert!(!r.all().contains("secretpw"));
}

#[test]
fn failed_restore_into_created_database_leaves_nothing() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id");
    // Damage one chunk inside a pack (keeping its size): restore must fail and drop the
    // database it created.
    let pack = env.packs().pop().expect("a pack");
    let mut bytes = std::fs::read(&pack).expect("read");
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&pack, &bytes).expect("write");
    let r = env.restore_new(id, "half");
    // Damage is exit 3 (docs/restore.md, "Exit codes"; docs/architecture.md, "Errors and
    // exit codes").
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("damaged"), "{}", r.stderr);
    assert!(
        !env.db_exists("half"),
        "a half-restored database was left behind"
    );
}

#[test]
fn damaged_table_of_contents_leaves_no_database() {
    // The archive's table of contents (the first chunk of the stream) is read while the
    // target database is being created: when it is damaged, that database must go too.
    let env = Env::new("awktoc", Some(AWKWARD_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id");
    // Every pack starts with a chunk (a whole age file); the stream's first chunk is the first
    // of its pack. A byte of each pack's first age header flipped.
    for pack in env.packs() {
        let mut bytes = std::fs::read(&pack).expect("read");
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{pack:?}");
        bytes[40] ^= 0x01;
        std::fs::write(&pack, &bytes).expect("write");
    }
    let r = env.restore_new(id, "tocgone");
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("damaged"), "{}", r.stderr);
    assert!(
        !env.db_exists("tocgone"),
        "the database created for a restore whose table of contents is damaged was left behind"
    );
}

/// Regression (issue 13, defect 7): a database name holding `=` is a name, never a connection
/// string — both restore paths (parallel into a created database; one transaction into an
/// existing empty one) restore into exactly that database.
#[test]
fn a_database_name_with_an_equals_sign_is_used_as_a_name() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let pw = format!("file:{}", env.password_file.display());
    let url = |db: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            env.cluster.port
        )
    };
    // Parallel restore into a database it creates.
    env.keepsake(&[
        "restore",
        &id,
        "--target",
        &url("weird%3Ddb"),
        "--target-password",
        &pw,
        "--create",
    ])
    .ok();
    // One transaction into an existing, empty database.
    env.psql("postgres", "CREATE DATABASE \"dbname=x\"");
    env.keepsake(&[
        "restore",
        &id,
        "--target",
        &url("dbname%3Dx"),
        "--target-password",
        &pw,
    ])
    .ok();
    let source = env.fingerprint("awk");
    assert_eq!(env.fingerprint("dbname='weird=db'"), source);
    assert_eq!(env.fingerprint("dbname='dbname=x'"), source);
}

/// Issue 28, item 7: a restore killed half-way (SIGKILL: no cleanup runs) left a half-loaded
/// database under the name asked for, which looks like a restore. A new database is now loaded
/// as `<name>_restoring_<hex>` and renamed only when whole: killed at any moment of the load,
/// nothing is under the name asked for; the next restore succeeds.
#[test]
fn a_restore_killed_while_loading_leaves_nothing_under_the_name_asked_for() {
    let env = Env::new("big", None);
    env.psql(
        "big",
        "CREATE TABLE rows AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1500000) g; \
         ALTER TABLE rows ADD PRIMARY KEY (id); \
         CREATE TABLE other AS SELECT g AS id FROM generate_series(1, 300000) g;",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    for jobs in ["1", "2"] {
        let url = env.target("copy");
        let password = format!("file:{}", env.password_file.display());
        let mut child = env
            .keepsake_cmd(&[
                "restore",
                &id,
                "--target",
                &url,
                "--target-password",
                &password,
                "--create",
                "--jobs",
                jobs,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn restore");
        // Kill as soon as a database for it exists, under either name: mid-load.
        let t = std::time::Instant::now();
        let seen = loop {
            let names = env.psql(
                "postgres",
                "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'copy%'",
            );
            if !names.trim().is_empty() {
                break names;
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(60),
                "no database appeared"
            );
            assert!(
                child.try_wait().expect("wait").is_none(),
                "the restore ended before it could be killed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        crate::support::kill(child.id(), "KILL");
        let _ = child.wait();
        assert!(
            !env.db_exists("copy"),
            "--jobs {jobs}: killed mid-load ({seen}), a half-loaded database is under the name asked for"
        );
        let left = env.psql(
            "postgres",
            "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'copy\\_restoring\\_%'",
        );
        assert!(!left.trim().is_empty(), "the unfinished one is named so");
        for db in left.trim().split(',') {
            env.psql("postgres", &format!("DROP DATABASE \"{db}\" WITH (FORCE)"));
        }
    }
    let r = env.restore_new(&id, "copy");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(env.fingerprint("copy"), env.fingerprint("big"));
    let left = env.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_restoring\\_%'",
    );
    assert_eq!(
        left.trim(),
        "0",
        "a finished restore leaves no loading name behind"
    );
}
