//! Round trip of a schema full of awkward objects: backup → restore into a new database →
//! identical schema, table contents, sequences and large objects.

use crate::support::{Backend, Env, AWKWARD_SQL};

crate::both_backends!(awkward_schema_round_trips_exactly);

fn awkward_schema_round_trips_exactly(backend: Backend) {
    let env = Env::with_backend(backend, "awk", Some(AWKWARD_SQL));
    let b = env.backup("full");
    assert_eq!(b["type"], "full");
    assert_eq!(b["status"], "completed");
    let id = b["id"].as_str().expect("id");

    env.restore_new(id, "awk_copy").ok();

    let (src, dst) = (env.schema("awk"), env.schema("awk_copy"));
    assert!(
        src.contains("FORCE ROW LEVEL SECURITY"),
        "fixture lost its RLS"
    );
    assert!(
        src.contains("UNLOGGED TABLE"),
        "fixture lost its unlogged table"
    );
    assert!(
        src.contains("MATERIALIZED VIEW"),
        "fixture lost its materialized view"
    );
    assert_eq!(src, dst, "schema differs after restore");

    let (a, b) = (env.fingerprint("awk"), env.fingerprint("awk_copy"));
    assert!(
        a.contains("large objects 3 "),
        "fixture should have 3 large objects: {a}"
    );
    assert!(a.contains("seq_not_called"), "{a}");
    assert_eq!(a, b, "data differs after restore");
    // Triggers must not have fired again during the restore.
    assert_eq!(
        env.psql("awk_copy", "SELECT sum(touch_count) FROM tracked"),
        "44"
    );
    // Tables this small (under 1 MiB of data) load with a plain COPY: FREEZE's TRUNCATE
    // would give each a new file to create and sync, which for 100,000 tiny tables cost
    // more than the restore itself (BENCHMARKS.md). Their rows are not frozen.
    env.psql("awk_copy", "CREATE EXTENSION pageinspect");
    for table in ["\"weird schema\".\"Gäste List\"", "public.no_pk"] {
        let got = frozen_rows(&env, "awk_copy", table);
        let (all, fz) = got.split_once('|').expect("two counts");
        assert!(
            all != "0" && fz == "0",
            "{table}: rows, frozen rows = {got}"
        );
    }
}

/// `rows|frozen rows` on the first page of `table` (xmin committed and frozen: infomask bits
/// 0x0300); needs pageinspect in `db`.
fn frozen_rows(env: &Env, db: &str, table: &str) -> String {
    env.psql(
        db,
        &format!(
            "SELECT count(*), count(*) FILTER (WHERE t_infomask & 768 = 768) \
             FROM heap_page_items(get_raw_page('{table}', 0)) WHERE t_xmin IS NOT NULL"
        ),
    )
}

/// A restore that creates its database loads a table of 1 MiB or more with COPY FREEZE:
/// every row is already frozen, so index builds and foreign-key checks that scan it next set
/// no hint bits and no later vacuum has to freeze it.
#[test]
fn large_tables_are_restored_frozen() {
    let env = Env::new("wed", Some(crate::support::WEDDING_SQL));
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    env.restore_new(&id, "wed_copy").ok();
    env.psql("wed_copy", "CREATE EXTENSION pageinspect");
    assert!(
        env.psql(
            "wed_copy",
            "SELECT pg_table_size('public.guests') > 1048576"
        ) == "t",
        "guests should be over the FREEZE threshold"
    );
    let got = frozen_rows(&env, "wed_copy", "public.guests");
    let (all, fz) = got.split_once('|').expect("two counts");
    assert!(
        all != "0" && all == fz,
        "public.guests: rows, frozen rows = {got}"
    );
}

#[test]
fn list_and_show_describe_the_backup() {
    let env = Env::new("wed", Some(crate::support::WEDDING_SQL));
    let b = env.backup("full");
    let id = b["id"].as_str().expect("id");
    let list = env.keepsake(&["list", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).expect("json");
    let row = &v[0];
    for field in [
        "id",
        "source",
        "type",
        "status",
        "started_at",
        "finished_at",
        "logical_bytes",
        "stored_bytes",
        "verified_level",
    ] {
        assert!(!row[field].is_null(), "list --json lacks {field}: {row}");
    }
    assert_eq!(row["id"], id);
    assert_eq!(row["source"], "main");
    assert!(row["logical_bytes"].as_u64().expect("n") > 10 << 20);
    assert!(row["stored_bytes"].as_u64().expect("n") < row["logical_bytes"].as_u64().expect("n"));

    let table = env.keepsake(&["list"]).ok().stdout;
    assert!(table.contains(id) && table.contains("full"), "{table}");

    // A unique prefix is enough for show.
    let show = env.keepsake(&["show", &id[..18]]).ok().stdout;
    assert!(show.contains("public.guests"), "{show}");
    assert!(
        show.contains("PostgreSQL 15") || show.contains("PostgreSQL 1"),
        "{show}"
    );
    assert!(show.contains("dedup"), "{show}");
    let sj: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["show", id, "--json"]).ok().stdout).expect("json");
    assert_eq!(sj["large_objects"], 4);
    assert!(sj["table_list"].as_array().expect("tables").len() >= 10);
}

#[test]
fn a_latin1_database_round_trips_through_pg_restore_for_its_data() {
    // keepsake's own COPY sessions speak UTF-8 only: an archive in another encoding must
    // take the pg_restore path for its data, and arrive unchanged.
    let env = Env::new("lat", None);
    env.psql("postgres", "DROP DATABASE lat");
    env.psql(
        "postgres",
        "CREATE DATABASE lat ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    );
    env.psql(
        "lat",
        "CREATE TABLE gaeste (id int PRIMARY KEY, name text); \
         INSERT INTO gaeste SELECT i, 'Müller-Lüdenscheidt ' || i FROM generate_series(1, 500) i",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    env.restore_new(&id, "lat_copy").ok();
    assert_eq!(env.fingerprint("lat"), env.fingerprint("lat_copy"));
    assert_eq!(
        env.psql("lat_copy", "SELECT name FROM gaeste WHERE id = 7"),
        "Müller-Lüdenscheidt 7"
    );
}

/// Indexes and keys run as SQL on keepsake's own restore sessions, except those in another
/// tablespace, which go through `pg_restore` (it sets `default_tablespace` per entry): they
/// must come back in their tablespace. Every post-data entry here is restored early, so the
/// index's comment (an entry of no section, which `pg_restore --section` counts as post-data)
/// must still be restored by the last step.
#[test]
fn indexes_in_another_tablespace_are_restored_there() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new("tsp", None);
    let ts = env
        .cluster
        .data
        .parent()
        .expect("cluster dir")
        .join("side_ts");
    std::fs::create_dir(&ts).expect("mkdir");
    let owner = std::fs::metadata(&env.cluster.data).expect("data dir");
    std::os::unix::fs::chown(&ts, Some(owner.uid()), Some(owner.gid())).expect("chown");
    env.psql(
        "tsp",
        &format!("CREATE TABLESPACE side LOCATION '{}'", ts.display()),
    );
    env.psql(
        "tsp",
        "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, w int NOT NULL); \
         INSERT INTO t SELECT g, md5(g::text), g % 7 FROM generate_series(1, 2000) g; \
         CREATE INDEX t_w_idx ON t (w) TABLESPACE side; \
         ALTER TABLE t ADD CONSTRAINT t_v_key UNIQUE (v) USING INDEX TABLESPACE side; \
         CREATE INDEX t_vw_idx ON t (v, w); \
         COMMENT ON INDEX t_w_idx IS 'an index comment: no section, restored after the index'; \
         GRANT SELECT ON t TO PUBLIC",
    );
    let b = env.backup("full");
    env.restore_new(b["id"].as_str().expect("id"), "tsp_copy")
        .ok();
    assert_eq!(env.schema("tsp"), env.schema("tsp_copy"), "schema differs");
    assert_eq!(
        env.psql(
            "tsp_copy",
            "SELECT string_agg(indexname || ':' || coalesce(tablespace, '-'), ',' ORDER BY indexname) \
             FROM pg_indexes WHERE tablename = 't'"
        ),
        "t_pkey:-,t_v_key:side,t_vw_idx:-,t_w_idx:side"
    );
}

/// `keepsake demo` without a terminal runs the scripted flow end to end and exits 0: backup,
/// incremental, restore compared table by table, a restore-level verification; and it removes
/// what it made.
#[test]
fn demo_runs_the_whole_flow_and_cleans_up() {
    let r = crate::support::keepsake_raw(&["demo"], &[]).ok();
    for step in [
        "full backup",
        "incremental backup",
        "restored the incremental",
        "identical to the source",
        "restore level PASSED",
        "cleaned up",
    ] {
        assert!(r.stdout.contains(step), "no {step:?} in:\n{}", r.stdout);
    }
    let dir = r
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("/tmp/keepsake-pg-") || w.contains("/keepsake-pg-"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        });
    if let Some(d) = dir {
        let root = d.split("/repo").next().unwrap_or(&d).to_string();
        assert!(
            !std::path::Path::new(&root).exists(),
            "the demo directory {root} was left behind"
        );
    }
}

/// `backup --verify=data`: the new backup is verified by a job of its own and reads as proven.
#[test]
fn backup_with_verify_proves_the_new_backup() {
    let env = Env::new("awk", Some(AWKWARD_SQL));
    let r = env.keepsake(&["backup", "--type", "full", "--verify=data", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("list");
    assert_eq!(list[0]["verified_level"], "data", "{list}");
    let jobs: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["jobs", "--json"]).ok().stdout).expect("jobs");
    let kinds: Vec<(&str, &str)> = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["kind"].as_str().unwrap_or(""),
                j["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("backup", "completed"), ("verify", "completed")],
        "{jobs}"
    );
}
