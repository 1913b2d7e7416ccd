//! Partial restore (issue 17): `--table` / `--schema` restore the tables asked for with their
//! data, keys, indexes and owned sequences, and nothing else; names follow SQL (quoted parts
//! keep case and spaces); what a table needs but was not asked for is named, never pulled in;
//! a name the backup lacks, or a live database without typed consent, changes nothing.

use crate::support::{Env, WEDDING_SQL};

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
    let pw = format!("file:{}", env.password_file.display());
    let restore = |db: &str, extra: &[&str]| {
        let target = env.target(db);
        let mut a = vec![
            "restore",
            id.as_str(),
            "--target",
            target.as_str(),
            "--target-password",
            pw.as_str(),
        ];
        a.extend_from_slice(extra);
        env.keepsake(&a)
    };

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
