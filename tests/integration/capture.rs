//! Continuous change capture (issue 29), as far as it is built: the pgoutput decoder against
//! the messages a real server sends for every kind of change.

use keepsake::pg::pgoutput::{decode, parse_lsn, Message, OldKind, Value};

use crate::support::Env;

fn text(v: &str) -> Value {
    Value::Text(v.as_bytes().to_vec())
}

/// A test environment on a cluster with `wal_level = logical`.
fn logical_env(db: &str) -> Env {
    let mut env = Env::new(db, None);
    env.cluster
        .reconfigure(&[], "wal_level = logical", None)
        .expect("restart with wal_level = logical");
    env
}

/// Give source `main` a `[sources.capture]` table (a segment a second, and `extra` keys).
fn with_capture(env: &Env, extra: &str) {
    let text = std::fs::read_to_string(&env.config).expect("config");
    let text = text.replacen(
        "\n[daemon]",
        &format!("\n[sources.capture]\nsegment = \"1s\"\n{extra}\n[daemon]"),
        1,
    );
    std::fs::write(&env.config, text).expect("config");
}

/// The server's clock now, as RFC 3339 (the time `restore --at` is given).
fn server_now(env: &Env, db: &str) -> String {
    env.psql(
        db,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
}

/// `keepsake restore --at AT --source main` into a new database `db` of the env's cluster.
fn restore_at(env: &Env, at: &str, db: &str) -> crate::support::Run {
    env.keepsake(&[
        "restore",
        "--at",
        at,
        "--source",
        "main",
        "--target",
        &env.target(db),
        "--target-password",
        &format!("file:{}", env.password_file.display()),
        "--create",
    ])
}

/// Wait until the daemon made its slot in database `db`.
fn wait_for_slot(env: &Env, db: &str) {
    crate::support::eventually(
        "the slot exists",
        std::time::Duration::from_secs(30),
        || {
            !env.psql(
                db,
                "SELECT slot_name FROM pg_replication_slots WHERE slot_name = 'keepsake_main'",
            )
            .is_empty()
        },
    );
}

/// A real PostgreSQL (wal_level = logical) and a pgoutput slot; the changes an application
/// makes — inserts, an update leaving a TOASTed value untouched, a key change, deletes with a
/// key and with a whole row (REPLICA IDENTITY FULL), TRUNCATE, NULLs, two tables in one
/// transaction — read back as the server's own bytes (`pg_logical_slot_peek_binary_changes`)
/// and decoded, message by message.
#[test]
fn pgoutput_from_a_real_server_decodes_every_kind_of_change() {
    let env = logical_env("cap");
    // One psql call per transaction (psql -c runs a string of statements as one).
    for sql in [
        "CREATE TABLE t (id int PRIMARY KEY, v text, big text);
         ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
         CREATE TABLE whole (x int, y text);
         ALTER TABLE whole REPLICA IDENTITY FULL;
         CREATE PUBLICATION p FOR TABLE t, whole;",
        "SELECT 1 FROM pg_create_logical_replication_slot('s', 'pgoutput')",
        "INSERT INTO t VALUES (1, 'a', repeat('x', 20000))",
        "UPDATE t SET v = 'b' WHERE id = 1",
        "UPDATE t SET id = 2 WHERE id = 1",
        "DELETE FROM t WHERE id = 2",
        "INSERT INTO whole VALUES (5, NULL); INSERT INTO t VALUES (3, NULL, NULL)",
        "DELETE FROM whole",
        "TRUNCATE t",
    ] {
        env.psql("cap", sql);
    }
    let rows = env.psql(
        "cap",
        "SELECT lsn || ' ' || encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL, 'proto_version', '1', 'publication_names', 'p')",
    );
    let mut msgs = vec![];
    let mut last_lsn = 0;
    for line in rows.lines().filter(|l| !l.trim().is_empty()) {
        let (lsn, hex) = line.split_once(' ').expect("lsn and data");
        let lsn = parse_lsn(lsn).expect("lsn");
        assert!(lsn >= last_lsn, "in stream order");
        last_lsn = lsn;
        let bytes = hex::decode(hex.trim()).expect("hex");
        msgs.push(decode(&bytes).unwrap_or_else(|e| panic!("{e}: {hex}")));
    }
    // Relations by oid, to name what each change is about.
    let mut names = std::collections::BTreeMap::new();
    let mut changes = vec![];
    let mut commits = 0;
    let mut open = false;
    for m in &msgs {
        match m {
            Message::Begin { .. } => {
                assert!(!open, "transactions do not nest");
                open = true;
            }
            Message::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                assert!(open && end_lsn > commit_lsn);
                open = false;
                commits += 1;
            }
            Message::Relation(r) => {
                names.insert(r.oid, r.clone());
            }
            Message::Insert { relation, new } => {
                changes.push(format!("insert {} {:?}", names[relation].name, new))
            }
            Message::Update { relation, old, new } => changes.push(format!(
                "update {} {:?} {:?}",
                names[relation].name, old, new
            )),
            Message::Delete { relation, old } => {
                changes.push(format!("delete {} {:?}", names[relation].name, old))
            }
            Message::Truncate { relations, .. } => changes.push(format!(
                "truncate {}",
                relations
                    .iter()
                    .map(|r| names[r].name.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            _ => {}
        }
    }
    assert!(!open);
    assert_eq!(commits, 7, "{msgs:#?}");
    let t = names.values().find(|r| r.name == "t").expect("relation t");
    assert_eq!(t.namespace, "public");
    assert_eq!(t.replica_identity, b'd');
    assert_eq!(
        t.columns
            .iter()
            .map(|c| (c.name.as_str(), c.key))
            .collect::<Vec<_>>(),
        [("id", true), ("v", false), ("big", false)]
    );
    let whole = names.values().find(|r| r.name == "whole").expect("whole");
    assert_eq!(whole.replica_identity, b'f');
    let big = text(&"x".repeat(20000));
    let expected = vec![
        format!("insert t {:?}", vec![text("1"), text("a"), big.clone()]),
        // The TOASTed value the update did not touch is not sent.
        format!(
            "update t None {:?}",
            vec![text("1"), text("b"), Value::Unchanged]
        ),
        // A key change sends the old key.
        format!(
            "update t {:?} {:?}",
            Some((OldKind::Key, vec![text("1"), Value::Null, Value::Null])),
            vec![text("2"), text("b"), Value::Unchanged]
        ),
        format!(
            "delete t {:?}",
            (OldKind::Key, vec![text("2"), Value::Null, Value::Null])
        ),
        format!("insert whole {:?}", vec![text("5"), Value::Null]),
        format!("insert t {:?}", vec![text("3"), Value::Null, Value::Null]),
        // REPLICA IDENTITY FULL: the whole old row.
        format!(
            "delete whole {:?}",
            (OldKind::Full, vec![text("5"), Value::Null])
        ),
        "truncate t".to_string(),
    ];
    assert_eq!(changes, expected);
}

/// A fingerprint's table lines (sequence values are checked apart: after a point-in-time
/// restore they may be ahead, never behind).
fn tables_only(fp: &str) -> String {
    fp.lines()
        .filter(|l| !l.starts_with("sequence "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ids of the rows the segments of source `main` hold as inserted, and the chain's
/// ranges (start, end).
fn captured(env: &Env) -> (Vec<i64>, Vec<(u64, u64)>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cfg = keepsake::config::load(&env.config).expect("config");
        let repo = keepsake::engine::Engine::new(cfg)
            .repo()
            .await
            .expect("open the repository");
        let mut ids = vec![];
        let mut ranges = vec![];
        for (start, end, key) in keepsake::core::capture::list(&repo, "main")
            .await
            .expect("list")
        {
            ranges.push((start, end));
            let seg = keepsake::core::capture::read(&repo, &key)
                .await
                .expect("segment");
            for m in &seg.messages {
                if let Ok(Message::Insert { new, .. }) = decode(m) {
                    // Integer keys only (other tables' rows are not counted).
                    if let Some(Value::Text(v)) = new.first() {
                        if let Ok(id) = String::from_utf8_lossy(v).parse::<i64>() {
                            ids.push(id);
                        }
                    }
                }
            }
        }
        (ids, ranges)
    })
}

/// The daemon captures a source with `[sources.capture]`: it makes the publication and slot,
/// seals the changes into segments, and confirms the slot only up to what is stored — killed
/// with SIGKILL mid-stream and started again, it loses nothing (every row inserted is in a
/// segment) and the segments form one chain without a gap.
#[test]
fn the_daemon_captures_changes_into_segments_and_survives_sigkill() {
    use crate::support::{eventually, kill, wait_exit};
    use std::time::Duration;
    let env = logical_env("cap");
    env.psql(
        "cap",
        "CREATE TABLE guests (id bigint PRIMARY KEY, name text)",
    );
    env.backup("full");
    with_capture(&env, "");
    env.keepsake(&["config", "check"]).ok();
    let insert = |from: i64, to: i64| {
        env.psql(
            "cap",
            &format!(
                "INSERT INTO guests SELECT g, 'guest ' || g FROM generate_series({from}, {to}) g"
            ),
        );
    };
    let slot_position = || {
        env.psql(
            "cap",
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'keepsake_main'",
        )
    };
    let mut daemon = env.spawn_daemon();
    eventually("the slot exists", Duration::from_secs(30), || {
        !slot_position().is_empty()
    });
    insert(1, 100);
    insert(101, 200);
    eventually("200 rows captured", Duration::from_secs(30), || {
        captured(&env).0.len() >= 200
    });
    // Confirmed only up to what is stored.
    let (_, ranges) = captured(&env);
    let end = ranges.last().expect("a segment").1;
    let confirmed =
        keepsake::pg::pgoutput::parse_lsn(&slot_position()).expect("confirmed position");
    assert!(
        confirmed <= end,
        "confirmed {confirmed:X} past the stored {end:X}"
    );
    // Killed mid-stream: a burst lands while it is down or dying.
    insert(201, 300);
    kill(daemon.id(), "KILL");
    let _ = wait_exit(&mut daemon, Duration::from_secs(10));
    insert(301, 400);
    let daemon = env.spawn_daemon();
    eventually(
        "every row captured after the restart",
        Duration::from_secs(60),
        || {
            let (ids, _) = captured(&env);
            (1..=400).all(|i| ids.contains(&i))
        },
    );
    // A table made while capture runs joins the publication (within its 10 s check).
    env.psql("cap", "CREATE TABLE late (id bigint PRIMARY KEY)");
    eventually("the new table published", Duration::from_secs(30), || {
        env.psql(
            "cap",
            "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'keepsake_main' AND tablename = 'late'",
        ) == "1"
    });
    env.psql("cap", "INSERT INTO late VALUES (7777)");
    eventually("its rows captured", Duration::from_secs(30), || {
        captured(&env).0.contains(&7777)
    });
    daemon.stop();
    let (_, ranges) = captured(&env);
    for w in ranges.windows(2) {
        assert_eq!(w[1].0, w[0].1, "segments follow each other: {ranges:X?}");
    }
    // `status` says how far a point-in-time restore reaches.
    let st = env.keepsake(&["status", "--json"]).ok().json();
    let cap = &st[0]["capture"];
    assert_eq!(cap["slot"], "keepsake_main", "{st}");
    assert!(cap["last_commit_at"].is_string(), "{st}");
    assert_eq!(cap["segments"].as_u64(), Some(ranges.len() as u64), "{st}");
    let text = env.keepsake(&["status"]).ok().stdout;
    assert!(
        text.contains("capture (slot keepsake_main): restorable to"),
        "{text}"
    );
    // The slot is keepsake's: a slot of the same name it did not make is refused.
    env.psql(
        "cap",
        "SELECT pg_drop_replication_slot('keepsake_main'); SELECT 1 FROM pg_create_logical_replication_slot('keepsake_main', 'pgoutput')",
    );
    std::fs::remove_file(env.repo.join("capture/main/slot")).expect("forget the record");
    let daemon = env.spawn_daemon();
    std::thread::sleep(Duration::from_secs(3));
    daemon.stop();
    assert!(
        !env.repo.join("capture/main/slot").exists(),
        "a slot keepsake did not make is not recorded as its own"
    );
}

/// Issue 29's "done when", in small: writes in bursts while capture runs, the time and the
/// tables' digests recorded between bursts; `restore --at` each recorded time reproduces
/// exactly those digests — inserts, updates (one leaving a TOASTed value untouched), a key
/// change, deletes, TRUNCATE, across several segments. A time outside what can be restored is
/// refused (exit 2) naming the range that can.
#[test]
fn restore_at_each_recorded_time_reproduces_that_state() {
    use crate::support::eventually;
    use std::time::Duration;
    let env = logical_env("pit");
    env.psql(
        "pit",
        "CREATE TABLE guests (id bigint PRIMARY KEY, name text, seat int, notes text);
         CREATE TABLE vendors (code text PRIMARY KEY, fee numeric(10,2), booked date);
         CREATE TABLE rsvp (id serial PRIMARY KEY, guest bigint)",
    );
    env.psql(
        "pit",
        "INSERT INTO guests SELECT g, 'guest ' || g, g % 10, NULL FROM generate_series(1, 20) g",
    );
    with_capture(&env, "");
    let daemon = env.spawn_daemon();
    wait_for_slot(&env, "pit");
    // The dump, taken while capture runs.
    let dump_id = env.backup("full")["id"].as_str().expect("id").to_string();
    let now = || server_now(&env, "pit");
    let bursts = [
        "INSERT INTO guests SELECT g, 'guest ' || g, g % 10, repeat('n', 5000) FROM generate_series(21, 60) g;
         INSERT INTO vendors VALUES ('flowers', 120.50, '2026-06-01'), ('band', 900, NULL);
         INSERT INTO rsvp (guest) SELECT g FROM generate_series(1, 30) g",
        "UPDATE guests SET seat = seat + 1 WHERE id % 3 = 0;
         UPDATE guests SET id = 1000 WHERE id = 5;
         DELETE FROM guests WHERE id BETWEEN 40 AND 45;
         UPDATE vendors SET fee = 99.99 WHERE code = 'band'",
        "TRUNCATE vendors;
         INSERT INTO vendors VALUES ('cake', 45, '2026-06-02');
         DELETE FROM guests WHERE id = 1000;
         INSERT INTO rsvp (guest) SELECT g FROM generate_series(31, 40) g",
    ];
    let mut points = vec![];
    for sql in bursts {
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            env.psql("pit", stmt);
        }
        std::thread::sleep(Duration::from_millis(300));
        points.push((now(), tables_only(&env.fingerprint("pit"))));
        std::thread::sleep(Duration::from_millis(1200));
    }
    // A time can be restored up to the last captured commit: one more write after the last
    // recorded time (as a live database has).
    env.psql("pit", "CREATE TABLE later (id int PRIMARY KEY)");
    env.psql(
        "pit",
        "INSERT INTO guests VALUES (5000, 'late guest', 1, NULL)",
    );
    // Until the last burst is stored.
    eventually("the last burst captured", Duration::from_secs(30), || {
        captured(&env).0.contains(&5000) && env.psql("pit", "SELECT 1").len() == 1 && {
            let r = restore_at(&env, &points[2].0, "probe");
            let ok = r.code == 0;
            if !ok {
                eprintln!("probe: {}", r.all());
            }
            if ok {
                env.psql("postgres", "DROP DATABASE probe");
            }
            ok
        }
    });
    for (i, (at, digest)) in points.iter().enumerate() {
        let db = format!("at{i}");
        let r = restore_at(&env, at, &db);
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(r.stdout.contains("captured transaction"), "{}", r.all());
        // Each burst changed tables; their row counts were checked against the dump's facts
        // carried through the changes applied.
        assert!(
            r.stdout.contains("checked:") && !r.stdout.contains("checked: 0 changed"),
            "{}",
            r.all()
        );
        assert_eq!(
            &tables_only(&env.fingerprint(&db)),
            digest,
            "restore --at {at} (burst {i})"
        );
        // Sequences are never behind: the next id is a new one.
        assert_eq!(
            env.psql(
                &db,
                "SELECT last_value >= (SELECT coalesce(max(id), 0) FROM rsvp) FROM rsvp_id_seq"
            ),
            "t",
            "restore --at {at}: rsvp_id_seq behind its table"
        );
    }
    // The same through the daemon's control API, as an attached console asks for it (the
    // remote client, the route, the engine).
    {
        use keepsake::engine::control::Control;
        use keepsake::engine::{Command, RestoreRequest, RestoreTarget};
        let cfg = keepsake::config::load(&env.config).expect("config");
        let conn = cfg
            .source("main")
            .expect("source")
            .conn
            .with_dbname("via_api");
        let at = chrono::DateTime::parse_from_rfc3339(&points[1].0)
            .expect("time")
            .with_timezone(&chrono::Utc);
        let socket = env.dir.path().join("state/keepsake.sock");
        let out = crate::support::block_on(async {
            let remote = keepsake::engine::remote::Remote::connect(
                keepsake::api::client::Client::unix(&socket),
            )
            .await
            .expect("attach to the daemon");
            let h = remote
                .submit(Command::Restore(
                    RestoreRequest::new(dump_id.clone(), RestoreTarget::on_source("main", conn))
                        .create(true)
                        .at(Some(at), None),
                ))
                .await
                .expect("submit");
            h.wait().await
        });
        assert_eq!(out.exit_code, 0, "{:?}", out.error);
        assert_eq!(
            &tables_only(&env.fingerprint("via_api")),
            &points[1].1,
            "restore at {} through the API",
            points[1].0
        );
    }
    // A drill at a point in time rehearses exactly that: the dump held to its facts, the
    // captured changes applied, and a smoke query sees the state of that time.
    let guests = {
        // The guests at the second point: its digest's restore is at `at1`.
        env.psql("at1", "SELECT count(*) FROM guests")
    };
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        format!(
            "{text}\n[[drill.checks]]\nname = \"the guests of that time\"\nsql = \"SELECT count(*) FROM guests\"\nexpect = \"= {guests}\"\n"
        ),
    )
    .expect("config");
    let r = env.keepsake(&["drill", "--source", "main", "--at", &points[1].0, "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let rep = r.json();
    let check = |name: &str| {
        rep["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["outcome"].clone())
    };
    assert_eq!(
        check("captured changes applied"),
        Some("passed".into()),
        "{rep}"
    );
    assert_eq!(
        check("tables match the backup"),
        Some("passed".into()),
        "{rep}"
    );
    assert_eq!(
        check("the guests of that time"),
        Some("passed".into()),
        "{rep}"
    );
    // Outside what can be restored: refused, naming the range.
    for at in ["2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"] {
        let r = restore_at(&env, at, "never");
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(
            r.stderr.contains("the range that can be restored is"),
            "{}",
            r.all()
        );
        assert!(!env.db_exists("never"));
    }
    daemon.stop();
}

/// The slot never fills the server's disk: a daemon stopped while the database writes more
/// WAL than `max_slot_wal` finds its slot past the limit when it starts, drops it (alerting
/// `capture_broken`, a webhook on by default) and starts a new chain with a new slot.
#[test]
fn a_slot_past_max_slot_wal_is_dropped_alerted_and_replaced() {
    use crate::support::{eventually, webhook::Receiver};
    use std::time::Duration;
    let env = logical_env("wal");
    env.psql("wal", "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let hook = Receiver::start();
    with_capture(&env, "max_slot_wal = \"64MiB\"\n");
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        format!(
            "{text}\n[notifications]\nwebhooks = [{{ url = \"{}\" }}]\n",
            hook.url
        ),
    )
    .expect("config");
    let restart_lsn = || {
        env.psql(
            "wal",
            "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'keepsake_main'",
        )
    };
    let daemon = env.spawn_daemon();
    eventually("the slot exists", Duration::from_secs(30), || {
        !restart_lsn().is_empty()
    });
    let first = restart_lsn();
    daemon.stop();
    // About 110 MB of WAL while nobody streams.
    env.psql(
        "wal",
        "CREATE TABLE big AS SELECT g AS id, repeat('x', 1000) AS v FROM generate_series(1, 100000) g",
    );
    let held: i64 = env
        .psql(
            "wal",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'keepsake_main'",
        )
        .parse()
        .expect("bytes");
    assert!(held > 64 << 20, "{held}");
    let daemon = env.spawn_daemon();
    let ev = hook.wait_for("capture_broken", 1, Duration::from_secs(60))[0].clone();
    assert_eq!(ev["source"], "main", "{ev}");
    assert!(
        ev["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_slot_wal")),
        "{ev}"
    );
    // A new slot, holding back little.
    eventually("a new slot", Duration::from_secs(30), || {
        let l = restart_lsn();
        !l.is_empty() && l != first
    });
    daemon.stop();
}

/// Capture as the user of a hosted database is: Supabase's `postgres` (no superuser, with
/// REPLICATION) on the Supabase-built fixture. The publication takes the application's tables
/// it owns (never the provider's `auth` and `storage`, which it cannot publish), and a change
/// the application makes reaches a segment.
#[test]
fn capture_runs_as_supabases_postgres_role() {
    use crate::support::eventually;
    use std::time::Duration;
    let mut hosted = crate::supabase::supabase("app", true);
    hosted
        .reconfigure(&[], "wal_level = logical", None)
        .expect("restart with wal_level = logical");
    let env = Env::on_cluster(hosted, "app");
    assert_eq!(
        env.psql(
            "app",
            "SELECT rolsuper::text || ',' || rolreplication::text FROM pg_roles WHERE rolname = current_user"
        ),
        "false,true",
        "capture runs as a non-superuser with REPLICATION"
    );
    with_capture(&env, "");
    let daemon = env.spawn_daemon();
    wait_for_slot(&env, "app");
    // The dump, taken as `postgres` while capture runs.
    env.backup("full");
    let published = env.psql(
        "app",
        "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY 1) FROM pg_publication_tables WHERE pubname = 'keepsake_main'",
    );
    assert!(published.contains("public.guests"), "{published}");
    assert!(!published.contains("auth."), "{published}");
    assert!(!published.contains("storage."), "{published}");
    env.psql(
        "app",
        "INSERT INTO public.guests (wedding_id, full_name) SELECT id, 'Captured Guest' FROM public.weddings ORDER BY id LIMIT 1",
    );
    let seen = || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let cfg = keepsake::config::load(&env.config).expect("config");
            let repo = keepsake::engine::Engine::new(cfg)
                .repo()
                .await
                .expect("repository");
            for (_, _, key) in keepsake::core::capture::list(&repo, "main")
                .await
                .expect("list")
            {
                let seg = keepsake::core::capture::read(&repo, &key)
                    .await
                    .expect("segment");
                for m in &seg.messages {
                    if let Ok(Message::Insert { new, .. }) = decode(m) {
                        if new.contains(&text("Captured Guest")) {
                            return true;
                        }
                    }
                }
            }
            false
        })
    };
    eventually("the guest captured", Duration::from_secs(30), seen);
    // The point in time just after that guest, restored as `postgres` into a new project of
    // the provider (as a backup is: `--clean --confirm postgres` replaces the project's
    // objects, never the provider's schemas) — the change applied with triggers off
    // (`session_replication_role`, granted to `postgres` as the provider does), a later one
    // not.
    let at = server_now(&env, "app");
    std::thread::sleep(Duration::from_millis(300));
    env.psql(
        "app",
        "INSERT INTO public.guests (wedding_id, full_name) SELECT id, 'Too Late Guest' FROM public.weddings ORDER BY id LIMIT 1",
    );
    let digest = |c: &keepsake::pg::cluster::TempCluster, db: &str, late: bool| {
        crate::support::psql_on(
            c,
            "postgres",
            db,
            &format!(
                "SELECT count(*) || ':' || md5(string_agg(full_name || wedding_id, ',' ORDER BY id)) FROM public.guests{}",
                if late { "" } else { " WHERE full_name <> 'Too Late Guest'" }
            ),
        )
    };
    let want = digest(&env.cluster, "app", false);
    let project = crate::supabase::supabase("postgres", false);
    let (target, pw) = crate::supabase::target_on(&env, &project, "postgres");
    // Until the capture reaches that time (before, the restore is refused with the range
    // that can be restored, exit 2, having touched nothing).
    let t = std::time::Instant::now();
    let said = loop {
        let r = env.keepsake(&[
            "restore",
            "--at",
            &at,
            "--source",
            "main",
            "--target",
            &target,
            "--target-password",
            &pw,
            "--clean",
            "--confirm",
            "postgres",
        ]);
        if r.code == 0 {
            break r.all();
        }
        assert!(
            r.code == 2 && t.elapsed() < Duration::from_secs(60),
            "{}",
            r.all()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        said.contains("captured transaction") && said.contains("checked: 1 changed table"),
        "{said}"
    );
    assert_eq!(digest(&project, "postgres", true), want, "{said}");
    assert!(
        digest(&project, "postgres", true) != digest(&env.cluster, "app", true),
        "the later guest is not in the point in time"
    );
    daemon.stop();
}

/// An idle database: its restorable range still reaches near the present (a segment with no
/// commit says how far the stream is known whole), and its slot moves on past WAL other
/// databases write, instead of holding it until `max_slot_wal` drops the slot. Status says
/// what the daemon's capture does (state, lag, WAL held), from the daemon's state file, in
/// another process.
#[test]
fn an_idle_database_stays_restorable_to_the_present_and_its_slot_moves_on() {
    use crate::support::eventually;
    use std::time::Duration;
    let mut env = Env::new("idle", None);
    // Keepalives every 2 s (half of wal_sender_timeout) rather than every 30 s.
    env.cluster
        .reconfigure(&[], "wal_level = logical\nwal_sender_timeout = '4s'", None)
        .expect("restart with wal_level = logical");
    env.psql(
        "idle",
        "CREATE TABLE guests (id bigint PRIMARY KEY, name text);
         INSERT INTO guests VALUES (1, 'first')",
    );
    with_capture(&env, "");
    // Before any daemon: status says capture is not running.
    let st = env.keepsake(&["status", "--json"]).ok().json();
    assert_eq!(st[0]["capture"]["state"], "not running", "{st}");
    let daemon = env.spawn_daemon();
    wait_for_slot(&env, "idle");
    env.backup("full");
    env.psql("idle", "INSERT INTO guests VALUES (2, 'last write')");
    let wrote = chrono::Utc::now();
    let fingerprint = tables_only(&env.fingerprint("idle"));
    eventually("the write captured", Duration::from_secs(30), || {
        captured(&env).0.contains(&2)
    });
    let lsn_after = env.psql("idle", "SELECT pg_current_wal_lsn()");
    // WAL of another database: the slot must not hold it while nothing here changes.
    env.psql(
        "postgres",
        "CREATE TABLE noise AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g",
    );
    // Within a few keepalives the range reaches well past the last commit.
    let mut status = serde_json::Value::Null;
    eventually(
        "the restorable range passes the last commit",
        Duration::from_secs(40),
        || {
            status = env.keepsake(&["status", "--json"]).ok().json();
            status[0]["capture"]["last_commit_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| {
                    t.with_timezone(&chrono::Utc) > wrote + chrono::Duration::seconds(3)
                })
        },
    );
    let c = &status[0]["capture"];
    assert_eq!(c["state"], "streaming", "{status}");
    assert_eq!(c["lag_seconds"], 0, "{status}");
    assert!(c["wal_retained_bytes"].as_u64().is_some(), "{status}");
    assert!(c["wal_status"].as_str().is_some(), "{status}");
    // The slot was confirmed past the other database's WAL.
    eventually("the slot moved on", Duration::from_secs(30), || {
        env.psql(
            "idle",
            &format!(
                "SELECT confirmed_flush_lsn > '{lsn_after}'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'keepsake_main'"
            ),
        ) == "t"
    });
    // A time after the last commit, within the range: restored, with the last write in it.
    let at = c["last_commit_at"].as_str().expect("time").to_string();
    let r = restore_at(&env, &at, "idle_at");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(tables_only(&env.fingerprint("idle_at")), fingerprint);
    // Stopped: status says so, with no lag to claim.
    daemon.stop();
    let st = env.keepsake(&["status", "--json"]).ok().json();
    assert_eq!(st[0]["capture"]["state"], "stopped", "{st}");
    assert!(st[0]["capture"]["lag_seconds"].is_null(), "{st}");
}

/// A schema change (DDL, which pgoutput does not carry) while capture runs: the daemon sees it
/// (the schema's hash), records it and starts a backup; `restore --at` reproduces the times
/// before it and after that backup exactly, and refuses the times in between (exit 2), naming
/// what can be restored — never a restore that silently drops or misplaces a column.
#[test]
fn a_schema_change_starts_a_backup_and_restore_never_crosses_it() {
    use crate::support::eventually;
    use std::time::Duration;
    let env = logical_env("ddl");
    env.psql(
        "ddl",
        "CREATE TABLE guests (id bigint PRIMARY KEY, name text);
         INSERT INTO guests SELECT g, 'guest ' || g FROM generate_series(1, 10) g",
    );
    with_capture(&env, "");
    let daemon = env.spawn_daemon();
    wait_for_slot(&env, "ddl");
    env.backup("full");
    let now = || server_now(&env, "ddl");
    env.psql(
        "ddl",
        "INSERT INTO guests SELECT g, 'guest ' || g FROM generate_series(11, 20) g",
    );
    std::thread::sleep(Duration::from_millis(300));
    let t1 = now();
    let fp1 = tables_only(&env.fingerprint("ddl"));
    std::thread::sleep(Duration::from_millis(1500));
    env.psql("ddl", "ALTER TABLE guests ADD COLUMN seat int");
    env.psql(
        "ddl",
        "INSERT INTO guests SELECT g, 'guest ' || g, g % 7 FROM generate_series(21, 30) g",
    );
    std::thread::sleep(Duration::from_millis(300));
    let t2 = now();
    // The daemon sees the change and backs up.
    eventually(
        "a backup after the schema change",
        Duration::from_secs(60),
        || {
            env.keepsake(&["list", "--json"])
                .ok()
                .json()
                .as_array()
                .map(Vec::len)
                == Some(2)
        },
    );
    env.psql("ddl", "UPDATE guests SET seat = 1 WHERE id <= 5");
    std::thread::sleep(Duration::from_millis(300));
    let t3 = now();
    let fp3 = tables_only(&env.fingerprint("ddl"));
    env.psql("ddl", "INSERT INTO guests VALUES (99, 'late', 2)");
    eventually("the update captured", Duration::from_secs(30), || {
        let r = restore_at(&env, &t3, "probe");
        if r.code == 0 {
            env.psql("postgres", "DROP DATABASE probe");
        }
        r.code == 0
    });
    let r = restore_at(&env, &t1, "before_ddl");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(tables_only(&env.fingerprint("before_ddl")), fp1);
    let r = restore_at(&env, &t3, "after_ddl");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(tables_only(&env.fingerprint("after_ddl")), fp3);
    // Between the change and the backup after it: refused, naming what can be restored.
    let r = restore_at(&env, &t2, "across");
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("the schema of main changed"),
        "{}",
        r.all()
    );
    assert!(
        r.stderr.contains("(the backup taken after it)"),
        "{}",
        r.all()
    );
    assert!(!env.db_exists("across"));
    daemon.stop();
}

/// Retention covers change segments: a prune that forgets the older dump deletes the segments
/// whose transactions the oldest kept dump holds (keeping one as the chain's anchor), so the
/// repository does not grow without end; a point-in-time restore from the kept dump still
/// reproduces its time exactly, and a time before it is refused.
#[test]
fn prune_forgets_the_segments_no_kept_backup_needs() {
    use crate::support::eventually;
    use std::time::Duration;
    let env = logical_env("ret");
    env.psql(
        "ret",
        "CREATE TABLE guests (id bigint PRIMARY KEY, name text);
         INSERT INTO guests SELECT g, 'guest ' || g FROM generate_series(1, 10) g",
    );
    with_capture(&env, "");
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        format!("{text}\n[retention]\nkeep_last = 1\nprune_grace_hours = 0\nallow_short_prune_grace = true\n"),
    )
    .expect("config");
    let daemon = env.spawn_daemon();
    wait_for_slot(&env, "ret");
    env.backup("full");
    let now = || server_now(&env, "ret");
    // Changes in several segments, then the second dump, then more changes.
    for i in 0..4 {
        env.psql(
            "ret",
            &format!(
                "INSERT INTO guests SELECT g, 'a' FROM generate_series({0}, {0} + 9) g",
                100 + i * 10
            ),
        );
        std::thread::sleep(Duration::from_millis(1300));
    }
    let early = now();
    env.backup("incremental");
    env.psql("ret", "UPDATE guests SET name = 'moved' WHERE id < 5");
    std::thread::sleep(Duration::from_millis(300));
    let late = now();
    let fp = tables_only(&env.fingerprint("ret"));
    env.psql("ret", "INSERT INTO guests VALUES (999, 'last')");
    eventually("the update captured", Duration::from_secs(30), || {
        captured(&env).0.contains(&999)
    });
    let before = captured(&env).1.len();
    let r = env.keepsake(&["prune", "--json"]).ok();
    let report = r.json();
    let gone = report["forgotten_segments"]
        .as_u64()
        .expect("forgotten_segments");
    assert_eq!(
        report["forgotten"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert!(gone >= 3, "{report}");
    let after = captured(&env).1.len();
    assert_eq!(before - after, gone as usize);
    // The kept dump and what follows it still restore exactly.
    let r = restore_at(&env, &late, "ret_late");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(tables_only(&env.fingerprint("ret_late")), fp);
    // Before the kept dump: refused, naming the range.
    let r = restore_at(&env, &early, "ret_early");
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("the range that can be restored is"),
        "{}",
        r.all()
    );
    daemon.stop();
}
