//! Partial restore (issue 17): `--table` / `--schema` restore the tables asked for with their
//! data, keys, indexes and owned sequences, and nothing else; names follow SQL (quoted parts
//! keep case and spaces); what a table needs but was not asked for is named, never pulled in;
//! a name the backup lacks, or a live database without typed consent, changes nothing.

use crate::support::{Env, WEDDING_SQL};

/// `keepsake restore ID --target <db on the test cluster> --target-password … EXTRA…`.
fn restore(env: &Env, id: &str, db: &str, extra: &[&str]) -> crate::support::Run {
    let target = env.target(db);
    let pw = format!("file:{}", env.password_file.display());
    let mut a = vec![
        "restore",
        id,
        "--target",
        target.as_str(),
        "--target-password",
        pw.as_str(),
    ];
    a.extend_from_slice(extra);
    env.keepsake(&a)
}

fn tables(env: &Env, db: &str) -> String {
    env.psql(
        db,
        "SELECT string_agg(format('%I.%I', schemaname, tablename), ',' ORDER BY 1) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
}

#[test]
fn partial_restore_takes_the_tables_asked_for_and_names_the_rest() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    env.psql(
        "wed",
        r#"CREATE SCHEMA "Wedding Plans"; CREATE TABLE "Wedding Plans"."Guest List" (id int PRIMARY KEY, name text); INSERT INTO "Wedding Plans"."Guest List" VALUES (1, 'Ann'), (2, 'Bo'), (3, 'Cy')"#,
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let restore = |db: &str, extra: &[&str]| restore(&env, &id, db, extra);

    // One table, unquoted (folds to lower case), into a new database: only it, with its rows
    // and primary key; guests' foreign key to couples belongs to guests and is not touched.
    let r = restore("only_couples", &["--create", "--table", "Couples"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("restored tables: public.couples"),
        "{}",
        r.stdout
    );
    assert_eq!(tables(&env, "only_couples"), "public.couples");
    assert_eq!(
        env.psql("only_couples", "SELECT count(*) FROM couples"),
        env.psql("wed", "SELECT count(*) FROM couples")
    );
    assert_eq!(
        env.psql(
            "only_couples",
            "SELECT count(*) FROM pg_constraint WHERE conname = 'couples_pkey'"
        ),
        "1"
    );

    // Quoted names keep case and spaces; the schema is created in the new database.
    let r = restore(
        "plans",
        &["--create", "--table", r#""Wedding Plans"."Guest List""#],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(tables(&env, "plans"), r#""Wedding Plans"."Guest List""#);
    assert_eq!(
        env.psql(
            "plans",
            r#"SELECT string_agg(name, ',' ORDER BY id) FROM "Wedding Plans"."Guest List""#
        ),
        "Ann,Bo,Cy"
    );

    // A table that uses a type it does not own: named, not pulled in; nothing created.
    let r = restore("no_guests", &["--create", "--table", "guests"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("TYPE public.rsvp_status"), "{}", r.stderr);
    assert!(!env.db_exists("no_guests"));
    // The whole schema brings its types along.
    let r = restore("public_only", &["--create", "--schema", "public"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!tables(&env, "public_only").contains("Wedding Plans"));
    assert_eq!(
        env.psql("public_only", "SELECT count(*) FROM guests"),
        env.psql("wed", "SELECT count(*) FROM guests")
    );

    // A name the backup does not have, and the live database without typed consent: exit 2,
    // nothing changed.
    let r = restore("never", &["--create", "--table", "public.nope"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("no table public.nope"), "{}", r.stderr);
    assert!(!env.db_exists("never"));
    assert_eq!(tables(&env, "only_couples"), "public.couples");
    env.psql("only_couples", "CREATE TABLE keep_me (x int)");
    let r = restore(
        "only_couples",
        &["--table", r#""Wedding Plans"."Guest List""#],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--confirm only_couples"), "{}", r.stderr);
    assert_eq!(
        tables(&env, "only_couples"),
        "public.couples,public.keep_me"
    );
    // With the consent, beside what is there; the schema exists there now? No: it is not
    // created in an existing database, so the restore fails and rolls back.
    let r = restore(
        "only_couples",
        &[
            "--table",
            r#""Wedding Plans"."Guest List""#,
            "--confirm",
            "only_couples",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(
        tables(&env, "only_couples"),
        "public.couples,public.keep_me"
    );
    env.psql("only_couples", r#"CREATE SCHEMA "Wedding Plans""#);
    let r = restore(
        "only_couples",
        &[
            "--table",
            r#""Wedding Plans"."Guest List""#,
            "--confirm",
            "only_couples",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        env.psql(
            "only_couples",
            r#"SELECT count(*) FROM "Wedding Plans"."Guest List""#
        ),
        "3"
    );
}

/// `--into-schema`: one table comes back into a new schema of the live database, beside the
/// original, which is not touched; its rows are checked against the facts recorded at backup
/// time; an existing schema, `--create`, or an SQL failure change nothing.
#[test]
fn into_schema_puts_a_table_beside_the_original_and_touches_nothing_else() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    env.psql(
        "wed",
        r#"CREATE SCHEMA "Wedding Plans"; CREATE TABLE "Wedding Plans"."Guest List" (id serial PRIMARY KEY, name text); INSERT INTO "Wedding Plans"."Guest List" (name) VALUES ('Ann'), ('Bo'), ('Cy')"#,
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let backed_up = env.psql("wed", "SELECT count(*) FROM guests");
    let digest_sql = "SELECT md5(string_agg(g::text, '|' ORDER BY id)) FROM {T} g";
    let digest = |t: &str| env.psql("wed", &digest_sql.replace("{T}", t));
    let original = digest("public.guests");
    // Someone deletes a wedding's guests, after the backup.
    env.psql("wed", "DELETE FROM guests WHERE couple_id = 1");
    let live = env.psql("wed", "SELECT count(*) FROM guests");
    assert_ne!(live, backed_up);
    let live_digest = digest("public.guests");
    let describe = |db: &str| {
        env.psql(
            db,
            "SELECT string_agg(format('%s:%s:%s', c.relname, c.relkind, pg_get_userbyid(c.relowner)), ',' ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        )
    };
    let public_before = describe("wed");
    let seq_sql = "SELECT last_value || ':' || is_called FROM public.guests_id_seq";
    let live_seq = env.psql("wed", seq_sql);
    let restore = |db: &str, extra: &[&str]| restore(&env, &id, db, extra);

    // Into the backup's own source database, no typed consent needed: nothing existing moves.
    let r = restore("wed", &["--table", "guests", "--into-schema", "recovered"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("checked: 1 table match"), "{}", r.stdout);
    assert_eq!(
        env.psql("wed", "SELECT count(*) FROM recovered.guests"),
        backed_up
    );
    assert_eq!(digest("recovered.guests"), original);
    // The original is as it was: rows, objects, owners.
    assert_eq!(env.psql("wed", "SELECT count(*) FROM guests"), live);
    assert_eq!(digest("public.guests"), live_digest);
    assert_eq!(describe("wed"), public_before);
    assert_eq!(env.psql("wed", seq_sql), live_seq);
    // The copy has its own key and its identity sequence; its foreign key to couples is
    // not restored (named instead), so the rows can be copied back with plain SQL.
    assert_eq!(
        env.psql(
            "wed",
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'recovered.guests'::regclass AND contype = 'p'"
        ),
        "1"
    );
    assert_eq!(
        env.psql(
            "wed",
            "SELECT pg_get_serial_sequence('recovered.guests', 'id') IS NOT NULL"
        ),
        "t"
    );
    assert!(
        r.stdout.contains("skipped: FK CONSTRAINT public.guests"),
        "{}",
        r.stdout
    );
    assert_eq!(
        env.psql(
            "wed",
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'recovered.guests'::regclass AND contype = 'f'"
        ),
        "0"
    );
    env.psql(
        "wed",
        "INSERT INTO guests SELECT * FROM recovered.guests WHERE couple_id = 1",
    );
    assert_eq!(env.psql("wed", "SELECT count(*) FROM guests"), backed_up);

    // The schema exists now: refused, exit 2, the copy untouched.
    let r = restore("wed", &["--table", "guests", "--into-schema", "recovered"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(digest("recovered.guests"), original);
    // With --create or --clean: refused before anything.
    let r = restore(
        "wed",
        &["--table", "guests", "--into-schema", "other", "--create"],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("drop --create"), "{}", r.stderr);
    // Quoted names keep case and spaces, the new schema's too; the serial's sequence moves
    // with its table and keeps its value.
    let r = restore(
        "wed",
        &[
            "--table",
            r#""Wedding Plans"."Guest List""#,
            "--into-schema",
            r#""Side Copy""#,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        env.psql(
            "wed",
            r#"SELECT string_agg(name, ',' ORDER BY id) FROM "Side Copy"."Guest List""#
        ),
        "Ann,Bo,Cy"
    );
    assert_eq!(
        env.psql(
            "wed",
            r#"SELECT pg_get_serial_sequence('"Side Copy"."Guest List"', 'id')"#
        ),
        r#""Side Copy"."Guest List_id_seq""#
    );
    assert_eq!(
        env.psql(
            "wed",
            r#"INSERT INTO "Side Copy"."Guest List" (name) VALUES ('Di') RETURNING id"#
        ),
        "4"
    );
    assert_eq!(
        env.psql(
            "wed",
            r#"SELECT count(*) FROM "Wedding Plans"."Guest List""#
        ),
        "3"
    );
    // Into a database without the type guests uses: psql fails, the transaction rolls back,
    // no schema is left behind.
    env.psql("postgres", "CREATE DATABASE bare");
    let r = restore("bare", &["--table", "guests", "--into-schema", "side"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    assert!(r.stderr.contains("rsvp_status"), "{}", r.stderr);
    assert_eq!(
        env.psql(
            "bare",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'side'"
        ),
        "0"
    );
}

/// Regression (issue 24, item 4): a side-schema restore of a table that a view in another
/// schema selects from failed with `relation "guest_counts" already exists` — the view came
/// along and was created where it already was. Nothing is created outside the new schema: the
/// view (and its comment and grant) is skipped and named; the table, its key and its rows come
/// back and are checked.
#[test]
fn into_schema_beside_a_view_in_another_schema_creates_nothing_outside_it() {
    let env = Env::new("wed", None);
    env.psql(
        "wed",
        r#"CREATE SCHEMA "Wedding Plans";
           CREATE TABLE "Wedding Plans"."Guest List" (id serial PRIMARY KEY, name text NOT NULL);
           INSERT INTO "Wedding Plans"."Guest List" (name) SELECT 'guest ' || g FROM generate_series(1, 40) g;
           CREATE VIEW public.guest_counts AS SELECT count(*) AS n FROM "Wedding Plans"."Guest List";
           COMMENT ON VIEW public.guest_counts IS 'how many guests';
           GRANT SELECT ON public.guest_counts TO PUBLIC;
           CREATE MATERIALIZED VIEW public.guest_names AS SELECT name FROM "Wedding Plans"."Guest List";"#,
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let public_before = tables(&env, "wed");
    let r = restore(
        &env,
        &id,
        "wed",
        &[
            "--table",
            r#""Wedding Plans"."Guest List""#,
            "--into-schema",
            "rescue",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("checked: 1 table match"), "{}", r.stdout);
    assert!(
        r.stdout.contains("skipped: VIEW public.guest_counts")
            && r.stdout
                .contains("skipped: MATERIALIZED VIEW public.guest_names"),
        "{}",
        r.stdout
    );
    assert_eq!(
        env.psql("wed", r#"SELECT count(*) FROM rescue."Guest List""#),
        "40"
    );
    assert_eq!(
        env.psql(
            "wed",
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'rescue' AND c.relkind IN ('v', 'm')"
        ),
        "0",
        "no view was created in the new schema either"
    );
    // Outside the new schema, nothing changed.
    assert_eq!(
        tables(&env, "wed").replace(",rescue.\"Guest List\"", ""),
        public_before
    );
    assert_eq!(env.psql("wed", "SELECT n FROM public.guest_counts"), "40");
}
