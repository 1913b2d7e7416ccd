//! Verification: a sound backup passes every level and its recorded facts match an
//! independent computation; damage of every kind is found (exit 3) and named with the backups
//! it affects; a restored database that differs is reported table by table; scratch databases
//! never outlive a verification.

use std::process::Command;

use crate::support::{keepsake_raw, pipe, script, Env, AWKWARD_SQL, WEDDING_SQL};

fn scratch_dbs(env: &Env) -> String {
    env.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'keepsake_verify%'",
    )
}

fn verify_json(env: &Env, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut a = vec!["verify", "--json"];
    a.extend_from_slice(args);
    let r = env.keepsake(&a);
    let v = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    (r.code, v, r.stderr)
}

/// Digest of `COPY … TO STDOUT` as psql prints it (independent of keepsake's reader).
fn sql_digest(env: &Env, db: &str, table: &str, columns: &str) -> (u64, String) {
    let o = Command::new(env.cluster.bin.join("psql"))
        .env("PGPASSWORD", env.cluster.password.expose())
        .env("PGTZ", "UTC")
        .env(
            "PGOPTIONS",
            "-c extra_float_digits=3 -c DateStyle=ISO -c IntervalStyle=postgres",
        )
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &env.cluster.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .arg("-c")
        .arg(format!("COPY {table} {columns} TO STDOUT"))
        .output()
        .expect("psql");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut sum: u128 = 0;
    let mut n = 0u64;
    // One row per line; a table without columns prints empty lines.
    if let Some(body) = o.stdout.strip_suffix(b"\n") {
        for line in body.split(|b| *b == b'\n') {
            n += 1;
            sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(line));
        }
    }
    (n, format!("{sum:032x}"))
}

#[test]
fn sound_backup_passes_every_level_and_facts_match_sql() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    // Row text must not depend on the server's time zone (regression: false "content
    // differs" for timestamptz columns on a non-UTC server).
    env.psql(
        "postgres",
        "ALTER DATABASE awk SET timezone TO 'Pacific/Chatham'",
    );
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id");

    for level in ["structure", "data", "restore"] {
        let (code, v, err) = verify_json(&env, &[id, "--level", level]);
        assert_eq!(code, 0, "{level}: {v} {err}");
        assert_eq!(v[0]["ok"], true, "{v}");
        assert_eq!(v[0]["passed"], level);
    }
    let (_, v, _) = verify_json(&env, &["--latest", "--level", "restore"]);
    assert!(
        v[0]["restore_ms"].as_u64().is_some(),
        "no restore time recorded: {v}"
    );
    assert_eq!(v[0]["amcheck"], "passed", "{v}");
    assert_eq!(scratch_dbs(&env), "0", "a scratch database was left behind");

    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
    assert_eq!(list[0]["verified_level"], "restore");
    assert!(list[0]["verified_at"].is_string());

    // The facts recorded at backup time equal an independent computation on the source.
    let show: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["show", id, "--json"]).ok().stdout).expect("json");
    let tables = show["facts"]["tables"].as_array().expect("facts");
    assert!(tables.len() >= 25, "{}", tables.len());
    for t in tables {
        let name = format!(
            "\"{}\".\"{}\"",
            t["schema"].as_str().expect("s").replace('"', "\"\""),
            t["name"].as_str().expect("n").replace('"', "\"\"")
        );
        let count = env.psql("awk", &format!("SELECT count(*) FROM ONLY {name}"));
        assert_eq!(
            t["rows"].as_u64().expect("rows").to_string(),
            count,
            "{name}"
        );
        let (n, digest) = sql_digest(&env, "awk", &name, t["columns"].as_str().expect("cols"));
        assert_eq!(
            (
                t["rows"].as_u64().expect("rows"),
                t["digest"].as_str().expect("d")
            ),
            (n, digest.as_str()),
            "{name}"
        );
    }
    assert_eq!(show["facts"]["large_objects"], 3);
    let seq = show["facts"]["sequences"].as_array().expect("seq");
    let nc = seq
        .iter()
        .find(|s| s["name"] == "seq_not_called")
        .expect("seq_not_called");
    assert_eq!(
        (nc["value"].as_i64(), nc["is_called"].as_bool()),
        (Some(100), Some(false))
    );
}

#[test]
fn damage_is_found_and_named_with_every_affected_backup() {
    let mut env = Env::new("wed", Some(WEDDING_SQL));
    let full = env.backup("full");
    let full_packs = env.packs();
    env.psql_file("wed", crate::support::CHANGE_SQL);
    let inc = env.backup("incremental");
    let (fid, iid) = (
        full["id"].as_str().expect("id").to_string(),
        inc["id"].as_str().expect("id").to_string(),
    );
    let pristine = env.dir.path().join("pristine");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&env.repo)
        .arg(&pristine)
        .status()
        .expect("cp")
        .success());
    let fresh = |env: &mut Env, name: &str| {
        let dst = env.dir.path().join(name);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&pristine)
            .arg(&dst)
            .status()
            .expect("cp")
            .success());
        env.repo = dst;
        env.write_config("wed", None, &env.identity.clone());
    };
    // A pack of the full that the incremental reuses.
    let show: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["show", &fid, "--json"]).ok().stdout).expect("json");
    assert!(show["packs"].as_u64().expect("packs") >= 1);
    // The full's first pack; the incremental reuses chunks of it.
    let rel = full_packs[0]
        .strip_prefix(&env.repo)
        .expect("rel")
        .to_path_buf();

    // One flipped byte: structure cannot see it (size unchanged); data finds it and names
    // the pack and both backups.
    fresh(&mut env, "flip");
    let p = env.repo.join(&rel);
    let mut bytes = std::fs::read(&p).expect("read");
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x01;
    std::fs::write(&p, &bytes).expect("write");
    let (code, _, _) = verify_json(&env, &[&fid, "--level", "structure"]);
    assert_eq!(code, 0);
    // Verifying only the incremental at data level finds the damaged pack and marks the full,
    // which uses it too, as failed: nothing reads as proven that is not.
    let r = env.keepsake(&["verify", &iid, "--level", "data"]);
    assert_eq!(r.code, 3, "{}", r.all());
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
    assert_eq!(list[0]["verified_level"], "failed", "{list}");
    let r = env.keepsake(&["verify", "--all", "--level", "data"]);
    assert_eq!(r.code, 3, "{}", r.all());
    let key = rel.to_string_lossy().to_string();
    assert!(
        r.stdout.contains(&key) && r.stdout.contains("fail authentication"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(&fid), "{}", r.stdout);
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
    assert_eq!(
        list[0]["verified_level"], "failed",
        "damage must not read as verified: {list}"
    );

    // Truncated and deleted packs: structure catches them without reading data.
    fresh(&mut env, "trunc");
    let p = env.repo.join(&rel);
    let len = std::fs::metadata(&p).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(len - 100)
        .expect("truncate");
    let r = env.keepsake(&["verify", &fid, "--level", "structure"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stdout
            .contains(&format!("is {} bytes, expected {len}", len - 100)),
        "{}",
        r.stdout
    );

    fresh(&mut env, "deleted");
    std::fs::remove_file(env.repo.join(&rel)).expect("rm");
    let r = env.keepsake(&["verify", "--all", "--level", "structure"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stdout.contains("missing") && r.stdout.contains(&key),
        "{}",
        r.stdout
    );

    // A pack swapped for another pack of the same backup.
    fresh(&mut env, "swapped");
    let packs = env_packs(&env.repo);
    assert!(packs.len() >= 2, "the swap needs two packs: {packs:?}");
    std::fs::copy(&packs[1], &packs[0]).expect("swap");
    let r = env.keepsake(&["verify", "--all", "--level", "data"]);
    assert_eq!(r.code, 3, "{}", r.all());

    // A manifest forged with only the public recipient (age CLI): authentication fails.
    fresh(&mut env, "forged");
    let mp = env.repo.join("snapshots").join(&iid);
    let sealed = std::fs::read(&mp).expect("manifest");
    let plain_z = pipe(
        Command::new("age").arg("-d").arg("-i").arg(&env.identity),
        &sealed[8..sealed.len() - 32],
    );
    let json = pipe(Command::new("zstd").arg("-d").arg("-c"), &plain_z);
    let forged_json = String::from_utf8_lossy(&json).replacen("\"rows\":", "\"rows\":1", 1);
    let z = pipe(Command::new("zstd").arg("-c"), forged_json.as_bytes());
    let age = pipe(Command::new("age").arg("-r").arg(&env.recipient), &z);
    let mut forged = b"KSMETA1\n".to_vec();
    forged.extend(age);
    forged.extend(&sealed[sealed.len() - 32..]);
    std::fs::write(&mp, forged).expect("write");
    let r = env.keepsake(&["verify", &iid, "--level", "structure"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("authentication failed") && r.stderr.contains(&iid),
        "{}",
        r.stderr
    );
    assert_eq!(scratch_dbs(&env), "0");
}

fn env_packs(repo: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in crate::support::list_files(&repo.join("packs")) {
        for f in crate::support::list_files(&repo.join("packs").join(&d)) {
            out.push(repo.join("packs").join(&d).join(f));
        }
    }
    out.sort();
    out
}

#[test]
fn altered_restore_is_reported_table_by_table() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id");
    env.restore_new(id, "wed_copy").ok();
    env.psql(
        "wed_copy",
        "DELETE FROM guests WHERE id = 77; UPDATE vendors SET name = name || 'x' WHERE id = 5",
    );
    let show: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["show", id, "--json"]).ok().stdout).expect("json");
    let facts: keepsake::pg::archive::ArchiveFacts =
        serde_json::from_value(show["facts"].clone()).expect("facts");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let problems = rt.block_on(async {
        let pg = keepsake::pg::client::connect(&env.cluster.conninfo("wed_copy"))
            .await
            .expect("connect");
        keepsake::core::verify::compare_database(&pg, &facts)
            .await
            .expect("compare")
    });
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("public.guests") && p.contains("expected 50000 rows, found 49999")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("public.vendors") && p.contains("content differs")),
        "{problems:?}"
    );
    // The untouched restore compares clean.
    env.restore_new(id, "wed_copy2").ok();
    let clean = rt.block_on(async {
        let pg = keepsake::pg::client::connect(&env.cluster.conninfo("wed_copy2"))
            .await
            .expect("connect");
        keepsake::core::verify::compare_database(&pg, &facts)
            .await
            .expect("compare")
    });
    assert!(clean.is_empty(), "{clean:?}");
}

#[test]
fn scratch_database_is_dropped_after_failure_and_interruption() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id").to_string();
    let d = env.dir.path().join("wrapbin");
    std::fs::create_dir_all(&d).expect("mkdir");
    let real = env.cluster.bin.join("pg_restore");
    let mark = env.dir.path().join("started");
    // A pg_restore that fails after reading a little, then one that is slow.
    script(&d.join("pg_restore"), &format!(
        "#!/bin/bash\nif [ \"$1\" = --version ]; then exec {r} --version; fi\nif [ \"$1\" = --list ]; then exec {r} \"$@\"; fi\nhead -c 1000 >/dev/null; exit 1\n",
        r = real.display()
    ));
    env.write_config("awk", Some(&d), &env.identity);
    // Every byte was proven at data level first, so a pg_restore refusal on the scratch
    // server is "not proven" (exit 1), not damage, and does not mark the backup failed.
    let r = env.keepsake(&["verify", &id, "--level", "restore"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
    assert_eq!(list[0]["verified_level"], "data", "{list}");
    assert!(
        r.stdout.contains("NOT PROVEN")
            && r.stdout.contains("restore into a scratch database failed"),
        "{}",
        r.stdout
    );
    assert_eq!(
        scratch_dbs(&env),
        "0",
        "scratch database left after a failure"
    );

    script(&d.join("pg_restore"), &format!(
        "#!/bin/bash\nif [ \"$1\" = --version ]; then exec {r} --version; fi\nif [ \"$1\" = --list ]; then exec {r} \"$@\"; fi\ntouch {m}; sleep 30; exec {r} \"$@\"\n",
        r = real.display(),
        m = mark.display()
    ));
    let child = env
        .keepsake_cmd(&["verify", &id, "--level", "restore"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    crate::support::wait_for(&mark, "restore never started");
    assert_eq!(
        scratch_dbs(&env),
        "1",
        "the scratch database should exist while restoring"
    );
    assert!(Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success());
    let out = child.wait_with_output().expect("wait");
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        scratch_dbs(&env),
        "0",
        "scratch database left after Ctrl-C: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong identity: clear error, nothing created.
    let other = env.dir.path().join("other.txt");
    keepsake_raw(&["keygen", "--output", other.to_str().expect("utf8")], &[]).ok();
    env.write_config("awk", None, &other);
    let r = env.keepsake(&["verify", &id, "--level", "restore"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("identities"), "{}", r.stderr);
    assert_eq!(scratch_dbs(&env), "0");
}

crate::both_backends!(damaged_and_missing_packs_are_found_on_any_store);

/// The same damage checks through the store abstraction, so they run on S3 too: a flipped
/// byte is found at data level (exit 3, the pack named), a deleted pack at structure level.
fn damaged_and_missing_packs_are_found_on_any_store(backend: crate::support::Backend) {
    let env = Env::with_backend(backend, "awk", Some(AWKWARD_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &id, "--level", "data"]).ok();

    let packs = env.pack_keys();
    assert!(!packs.is_empty());
    let key = packs[0].clone();
    let mut bytes = env.read_object(&key);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    env.write_object(&key, bytes);
    // Same size: structure cannot see it, data must.
    env.keepsake(&["verify", &id, "--level", "structure"]).ok();
    let r = env.keepsake(&["verify", &id, "--level", "data"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stdout.contains(&key), "{}", r.stdout);

    env.delete_object(&key);
    let r = env.keepsake(&["verify", &id, "--level", "structure"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stdout.contains("missing") && r.stdout.contains(&key),
        "{}",
        r.stdout
    );
    // A restore of the damaged backup fails before creating the target.
    let r = env.restore_new(&id, "never_made");
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(!env.db_exists("never_made"));
}

/// Ctrl-C during a restore-level verification: exit 1 (not damage: docs/verify.md, "Exit
/// codes"), the job recorded `cancelled`, no scratch database left, no verification record
/// written.
#[test]
fn ctrl_c_during_verify_exits_1_and_is_recorded_cancelled() {
    let env = Env::new("big", None);
    env.psql(
        "big",
        "CREATE TABLE t AS SELECT i, md5(i::text) || md5((i * 7)::text) AS s FROM generate_series(1, 2000000) i",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let mut child = env
        .keepsake_cmd(&["verify", &id, "--level", "restore"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until its scratch database exists: the restore is under way.
    crate::support::eventually(
        "the scratch database",
        std::time::Duration::from_secs(60),
        || scratch_dbs(&env) == "1",
    );
    crate::support::kill(child.id(), "INT");
    let code = crate::support::wait_exit(&mut child, std::time::Duration::from_secs(60));
    assert_eq!(code, Some(1));
    assert_eq!(scratch_dbs(&env), "0", "the scratch database was dropped");
    let jobs: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).ok().stdout).expect("jobs");
    let last = jobs.as_array().and_then(|j| j.last()).expect("a job");
    assert_eq!(
        (last["kind"].as_str(), last["status"].as_str()),
        (Some("verify"), Some("cancelled")),
        "{jobs}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("list");
    assert_eq!(
        list[0]["verified_level"], "none",
        "an interrupted check proves nothing: {list}"
    );
}

/// Regression (issue 28, HIGH 1): in the comparison after a restore-level restore, any error
/// reading a table back was recorded as damage — a lost connection, a statement or lock
/// timeout, a scratch server shutting down — and a failed backup fills no retention slot, so
/// the next prune forgot a good backup. The failure is injected into the compare step itself:
/// another session holds a lock on a table and the comparing session gives up waiting for it
/// (55P03). That is an interrupted check (not proven), never a difference; a real difference
/// is still one.
#[test]
fn a_comparison_the_server_cuts_short_is_not_damage() {
    use keepsake::core::verify::{compare_database, COMPARE_INTERRUPTED};
    let env = Env::new("wed", Some(WEDDING_SQL));
    env.psql(
        "wed",
        "CREATE TABLE lockme (n int); INSERT INTO lockme SELECT generate_series(1, 1000)",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let show = env.keepsake(&["show", &id, "--json"]).ok().json();
    let facts: keepsake::pg::archive::ArchiveFacts =
        serde_json::from_value(show["facts"].clone()).expect("facts");
    let ci = env.cluster.conninfo("wed");
    crate::support::block_on(async {
        let pg = keepsake::pg::client::connect(&ci).await.expect("connect");
        assert_eq!(
            compare_database(&pg, &facts).await.expect("compare"),
            Vec::<String>::new(),
            "the source matches its own facts"
        );
        let holder = keepsake::pg::client::connect(&ci).await.expect("connect");
        holder
            .batch_execute("BEGIN; LOCK TABLE lockme IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock");
        pg.batch_execute("SET lock_timeout = '300ms'")
            .await
            .expect("set");
        let e = compare_database(&pg, &facts)
            .await
            .expect_err("an interrupted comparison is an error, not a list of differences");
        assert!(
            e.to_string().starts_with(COMPARE_INTERRUPTED) && e.to_string().contains("lockme"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 1);
        holder.batch_execute("ROLLBACK").await.expect("unlock");
        pg.batch_execute("RESET lock_timeout; DELETE FROM lockme WHERE n = 1")
            .await
            .expect("change");
        let problems = compare_database(&pg, &facts).await.expect("compare");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("lockme") && p.contains("999")),
            "{problems:?}"
        );
    });
}

/// Regression (issue 28, LOW): without pg_restore, `verify --level data` passed although the
/// part of the level that has pg_restore read the archive's table of contents never ran. That
/// is "not proven" (exit 1), never a pass — for one backup and for `--all` alike — and no
/// damage either.
#[test]
fn the_data_level_without_pg_restore_is_not_proven() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    // An explicit bin_dir is authoritative: one without pg_restore.
    let empty = env.dir.path().join("nobin");
    std::fs::create_dir_all(&empty).expect("mkdir");
    env.write_config("awk", Some(&empty), &env.identity);
    for target in [id.as_str(), "--all"] {
        let r = env.keepsake(&["verify", target, "--level", "data"]);
        assert_eq!(r.code, 1, "{target}: {}", r.all());
        assert!(r.all().contains("pg_restore"), "{target}: {}", r.all());
    }
    let list = env.keepsake(&["list", "--json"]).ok().json();
    assert_eq!(list[0]["verified_level"], "structure", "{list}");
}

/// An env whose database `db` holds one table of 1.2 million rows (169 MB as dumped), backed
/// up in full, and the backup's id.
fn one_large_table(db: &str) -> (Env, String) {
    let env = Env::new(db, None);
    env.psql(
        db,
        "CREATE TABLE guests(id int PRIMARY KEY, note text);
         INSERT INTO guests SELECT g, md5(g::text) || repeat(md5((g*7)::text), 3)
           FROM generate_series(1, 1200000) g;",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    (env, id)
}

/// Issue 27, item 9: a parallel restore counted its bytes only when a table's load ended, so
/// with one large table the percentage sat still for the whole load, then jumped to 100 %
/// (a restore-level verify "at 19 % for 20 s"). Readings taken while the table loads must move.
#[test]
fn a_large_table_restores_with_moving_progress() {
    use keepsake::core::progress::{Phase, Progress, ProgressSink};
    use std::sync::Mutex;

    struct Seen(Mutex<Vec<Progress>>);
    impl ProgressSink for Seen {
        fn report(&self, p: &Progress) {
            self.0.lock().expect("lock").push(p.clone());
        }
    }

    let (env, id) = one_large_table("big");
    let cfg = keepsake::config::load(&env.config).expect("config");
    let engine = keepsake::engine::Engine::new(cfg);
    let seen = Seen(Mutex::new(Vec::new()));
    let out = crate::support::block_on(async {
        let repo = engine.repo().await.expect("repo");
        let mut target =
            keepsake::pg::conninfo::ConnInfo::parse(&env.target("big_back")).expect("url");
        target.password = Some(keepsake::secret::Secret::new(
            env.cluster.password.expose().to_string(),
        ));
        let mut o = keepsake::core::feed::RestoreOptions::new(target);
        o.create = true;
        o.jobs = 2;
        keepsake::core::restore::restore(repo, &id, &o, &seen).await
    })
    .expect("restore");
    assert_eq!(
        env.psql("big_back", "SELECT count(*) FROM guests"),
        "1200000"
    );
    let seen = seen.0.into_inner().expect("lock");
    let loading: std::collections::BTreeSet<u64> = seen
        .iter()
        .filter(|p| p.phase == Phase::Restoring)
        .map(|p| p.bytes_done)
        .filter(|b| *b > 0 && *b < out.bytes)
        .collect();
    assert!(
        loading.len() >= 3,
        "readings while the table loaded: {loading:?} of {} bytes ({} readings in all)",
        out.bytes,
        seen.len()
    );
}

/// Issue 28 (memory), the test-sized check: a restore's anonymous memory stays under the
/// 128 MiB bound — the default (parallel) and `--jobs 1` (one stream into pg_restore) — read
/// from `/proc/PID/status` every 20 ms while it runs. The 1 GB figures are in BENCHMARKS.md
/// (`benches/restore-memory.sh`: 81–104 MiB VmHWM). This 170 MB database peaks lower (40–50
/// MiB of anonymous memory): a guard rail against a change that buffers by size, not a proof
/// of the 1 GB figure.
#[test]
fn a_restore_stays_within_its_memory_bound() {
    let (env, id) = one_large_table("mem");
    for (db, extra) in [("mem_default", None), ("mem_jobs1", Some("1"))] {
        let target = env.target(db);
        let pw = format!("file:{}", env.password_file.display());
        let mut args = vec![
            "restore",
            id.as_str(),
            "--target",
            target.as_str(),
            "--target-password",
            pw.as_str(),
            "--create",
        ];
        if let Some(j) = extra {
            args.extend(["--jobs", j]);
        }
        let mut child = env
            .keepsake_cmd(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let mut peak_kib = 0u64;
        loop {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
                let anon = s
                    .lines()
                    .find(|l| l.starts_with("RssAnon:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                peak_kib = peak_kib.max(anon);
            }
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(child.wait().expect("status").success(), "restore into {db}");
        assert_eq!(env.psql(db, "SELECT count(*) FROM guests"), "1200000");
        eprintln!("{db}: largest RssAnon {} MiB", peak_kib / 1024);
        assert!(
            peak_kib < 128 * 1024,
            "{db}: anonymous memory reached {} MiB (bound 128 MiB)",
            peak_kib / 1024
        );
    }
}

/// Issue 28, item 8: once a verification has found a pack damaged, a new backup stores the
/// chunks it held anew instead of adopting them — an incremental taken after the damage was
/// found restores and verifies (before: it reused the damaged pack and failed like the old one).
#[test]
fn a_backup_never_adopts_a_pack_found_damaged() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let packs = env.pack_keys();
    assert!(!packs.is_empty());
    for key in &packs {
        let mut bytes = env.read_object(key);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        env.write_object(key, bytes);
    }
    let r = env.keepsake(&["verify", &id, "--level", "data"]);
    assert_eq!(r.code, 3, "{}", r.all());
    // Nothing changed in the database: an incremental would reuse every chunk.
    let next = env.backup("incremental")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = env.keepsake(&["verify", &next, "--level", "data"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = env.restore_new(&next, "awk_again");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(env.fingerprint("awk_again"), env.fingerprint("awk"));
}

/// Issue 28, item 5: a damaged pack is named with what its damaged chunks held — the tables
/// whose data lies there, from the archive's table of contents — so an operator knows what a
/// partial restore of the rest can still bring back.
#[test]
fn damage_names_the_tables_it_hits() {
    let env = Env::new("named", None);
    env.psql(
        "named",
        "CREATE TABLE guests(id int PRIMARY KEY, note text);
         INSERT INTO guests SELECT g, md5(g::text) || md5((g*3)::text) FROM generate_series(1, 80000) g;
         CREATE TABLE vendors(code text PRIMARY KEY);
         INSERT INTO vendors VALUES ('cake')",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let packs = env.pack_keys();
    let key = packs
        .iter()
        .max_by_key(|k| env.read_object(k).len())
        .expect("a pack")
        .clone();
    let mut bytes = env.read_object(&key);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    env.write_object(&key, bytes);
    let r = env.keepsake(&["verify", &id, "--level", "data"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stdout.contains("they hold the data of public.guests"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("public.vendors"), "{}", r.stdout);
}

/// Issue 28's "done when": the scratch server failing at any moment of a restore-level
/// verify — its connections terminated, or the server itself stopped as in a crash — ends
/// the verify with exit 1 (not proven) or exit 0 (it had finished), never 3, and never leaves
/// the backup recorded as damaged. A later verify with the server back proves it.
#[test]
fn a_scratch_server_failing_at_any_moment_of_a_restore_check_never_marks_the_backup_failed() {
    use rand::{RngExt, SeedableRng};
    let mut env = Env::new("wed", Some(WEDDING_SQL));
    // A second table of some size, so that the restore and the comparison take long enough
    // to be hit in their middle.
    env.psql(
        "wed",
        "CREATE TABLE notes AS SELECT g AS id, repeat(md5(g::text), 8) AS body \
         FROM generate_series(1, 200000) g; ALTER TABLE notes ADD PRIMARY KEY (id)",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let level = |env: &Env| {
        let list: serde_json::Value =
            serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
        list[0]["verified_level"].as_str().unwrap_or("").to_string()
    };
    let t = std::time::Instant::now();
    env.keepsake(&["verify", &id, "--level", "restore"]).ok();
    let whole = t.elapsed().as_millis() as u64;
    let seed = std::env::var("KEEPSAKE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut interrupted = 0;
    for round in 0..8 {
        let crash = round % 2 == 1;
        let p = env
            .keepsake_cmd(&["verify", &id, "--level", "restore"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("verify");
        std::thread::sleep(std::time::Duration::from_millis(
            rng.random_range(50..whole.max(100)),
        ));
        if crash {
            env.cluster
                .stop("immediate")
                .expect("stop the scratch server");
        } else {
            env.psql(
                "postgres",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname LIKE 'keepsake_verify_%' AND pid <> pg_backend_pid()",
            );
        }
        let out = p.wait_with_output().expect("wait");
        if crash {
            env.cluster.restart().expect("restart the scratch server");
        }
        let code = out.status.code();
        let said = format!(
            "round {round} ({}; KEEPSAKE_CRASH_SEED={seed}): exit {code:?}\n{}{}",
            if crash {
                "server stopped"
            } else {
                "connections terminated"
            },
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(matches!(code, Some(0 | 1)), "{said}");
        if code == Some(1) {
            interrupted += 1;
        }
        assert_ne!(level(&env), "failed", "{said}");
        eprintln!("round {round}: exit {code:?} after a fault at a random moment");
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} of 8 verifies were hit"
    );
    // With the server back, the backup proves itself.
    env.keepsake(&["verify", &id, "--level", "restore"]).ok();
    assert_eq!(level(&env), "restore");
}
