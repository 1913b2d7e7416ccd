//! Restoring a hosted database elsewhere (issue 17): a backup of a database with a provider's
//! roles and schemas (an imitation of Supabase: roles anon, authenticated, service_role,
//! supabase_admin; schemas auth, storage, extensions owned by them) restores into a plain
//! PostgreSQL server with the flags docs/restore.md gives, and is refused clearly, before
//! anything is created, without them.

use keepsake::pg::cluster::TempCluster;

use crate::support::{psql_on, Env};

const HOSTED_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hosted.sql");

fn psql(c: &TempCluster, db: &str, sql: &str) -> String {
    psql_on(c, "postgres", db, sql)
}

#[test]
fn a_hosted_database_restores_into_plain_postgresql_with_the_documented_flags() {
    let env = Env::new("hosted", Some(HOSTED_SQL));
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let plain = TempCluster::start().expect("a second, plain cluster");
    let pw = env.dir.path().join("plain-password");
    std::fs::write(&pw, plain.password.expose()).expect("password file");
    let pw = format!("file:{}", pw.display());
    let restore = |db: &str, extra: &[&str]| {
        let target = format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            plain.port
        );
        let mut a = vec![
            "restore",
            id.as_str(),
            "--target",
            target.as_str(),
            "--target-password",
            pw.as_str(),
            "--create",
        ];
        a.extend_from_slice(extra);
        env.keepsake(&a)
    };
    let exists = |db: &str| {
        psql(
            &plain,
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
        ) == "1"
    };

    // Without the flags: refused before anything is created, naming the roles and the flags.
    let r = restore("app", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    for role in ["anon", "authenticated", "service_role", "supabase_admin"] {
        assert!(r.stderr.contains(role), "{role} not named: {}", r.stderr);
    }
    assert!(
        r.stderr.contains("--no-owner --no-privileges"),
        "{}",
        r.stderr
    );
    assert!(!exists("app"));
    // Without the roles' objects but with the provider's schemas: still refused (their
    // objects are owned by supabase_admin and granted to the others).
    let r = restore(
        "app",
        &["--exclude-schema", "auth", "--exclude-schema", "storage"],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(!exists("app"));

    // The documented recipe. A policy that applies to a provider role needs that role (no
    // flag skips a policy): refused up front, saying so…
    let recipe = [
        "--no-owner",
        "--no-privileges",
        "--exclude-schema",
        "auth",
        "--exclude-schema",
        "storage",
    ];
    let r = restore("app", &recipe);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("policies") && r.stderr.contains("authenticated"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("supabase_admin"), "{}", r.stderr);
    assert!(!exists("app"));
    // …and once the role exists, restored.
    psql(&plain, "postgres", "CREATE ROLE authenticated NOLOGIN");
    let r = restore("app", &recipe);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        psql(
            &plain,
            "app",
            "SELECT string_agg(polname, ',') FROM pg_policy WHERE polrelid = 'public.profiles'::regclass"
        ),
        "profiles are readable when signed in"
    );
    // The application's rows are all there and checked against the backup's facts.
    assert!(r.stdout.contains("checked: 2 tables match"), "{}", r.stdout);
    assert_eq!(
        psql(&plain, "app", "SELECT count(*) FROM public.guests"),
        "500"
    );
    assert_eq!(
        psql(&plain, "app", "SELECT count(*) FROM public.profiles"),
        "20"
    );
    // The provider's schemas are not, and what tied the application to them is named.
    assert_eq!(
        psql(
            &plain,
            "app",
            "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname IN ('auth', 'storage', 'extensions')"
        ),
        "extensions"
    );
    assert!(
        r.stdout.contains("skipped: FK CONSTRAINT public.profiles"),
        "{}",
        r.stdout
    );
    // The extension came along (the default that uses it works), owned by the restoring user.
    assert_eq!(
        psql(
            &plain,
            "app",
            "INSERT INTO public.guests (profile_id, name) SELECT id, 'New' FROM public.profiles LIMIT 1 RETURNING length(invite_code)"
        ),
        "12"
    );
    assert_eq!(
        psql(
            &plain,
            "app",
            "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ),
        "postgres"
    );
}
