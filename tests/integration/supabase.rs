//! Hosted PostgreSQL, proven end to end (issue 24), on databases built as Supabase builds them:
//! the cluster's bootstrap superuser is `supabase_admin`, `tests/fixtures/supabase/platform.sql`
//! creates the provider's roles, schemas, event triggers and publication and demotes `postgres`
//! (NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS), and `app.sql`, run as `postgres`,
//! adds an application whose tables depend on `auth`. Backups are taken as `postgres`.

use keepsake::pg::cluster::TempCluster;

use crate::support::{psql_on, Env};

const PLATFORM_SQL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/supabase/platform.sql"
);
const APP_SQL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/supabase/app.sql"
);

/// A cluster built as a Supabase project is: `platform.sql` in database `db` as the bootstrap
/// superuser, `postgres` given the cluster's password, and the application (`app.sql`, as
/// `postgres`) when `app`. The returned cluster's `superuser` is `postgres`: what the user
/// of a hosted database gets.
pub fn supabase(db: &str, app: bool) -> TempCluster {
    let mut c = TempCluster::start_as("supabase_admin").expect("a cluster");
    if db != "postgres" {
        psql_on(
            &c,
            "supabase_admin",
            "postgres",
            &format!("CREATE DATABASE {db}"),
        );
    }
    psql_on(&c, "supabase_admin", db, &format!("@{PLATFORM_SQL}"));
    psql_on(
        &c,
        "supabase_admin",
        db,
        &format!(
            "ALTER ROLE postgres WITH LOGIN PASSWORD '{}'",
            c.password.expose()
        ),
    );
    if app {
        psql_on(&c, "postgres", db, &format!("@{APP_SQL}"));
    }
    c.superuser = "postgres".into();
    c
}

/// Point `[verification]` of `env` at `scratch` (as `user`, with the cluster's password).
/// A URL for database `db` of cluster `c` as its `postgres`, and its password as a
/// `file:` reference (written into `env`'s directory): a restore target on another server.
pub fn target_on(env: &Env, c: &TempCluster, db: &str) -> (String, String) {
    let pw = env.dir.path().join(format!("password-{}", c.port));
    std::fs::write(&pw, c.password.expose()).expect("password file");
    (
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            c.port
        ),
        format!("file:{}", pw.display()),
    )
}

fn use_scratch(env: &Env, scratch: &TempCluster, user: &str) {
    let pw = env.dir.path().join(format!("scratch-{user}-password"));
    std::fs::write(&pw, scratch.password.expose()).expect("password file");
    let text = std::fs::read_to_string(&env.config).expect("config");
    let text = match text.find("\n[verification]\n") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    std::fs::write(
        &env.config,
        format!(
            "{text}\n[verification]\nscratch_url = \"postgres://{user}@127.0.0.1:{}/postgres?sslmode=disable\"\nscratch_password = \"file:{}\"\n",
            scratch.port,
            pw.display()
        ),
    )
    .expect("config");
}

fn roles_on(c: &TempCluster, names: &[&str]) -> String {
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    psql_on(
        c,
        &c.superuser.clone(),
        "postgres",
        &format!("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ({list})"),
    )
}

/// Row count and an order-independent md5 of table `t` in database `db` of `c` (as `postgres`):
/// equal on two servers exactly when they hold the same rows.
fn table_digest(c: &TempCluster, db: &str, t: &str) -> String {
    psql_on(
        c,
        "postgres",
        db,
        &format!("SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"),
    )
}

/// How many keepsake scratch databases `c` holds (none may be left behind).
fn scratch_databases(c: &TempCluster) -> String {
    psql_on(
        c,
        "postgres",
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'keepsake_%'",
    )
}

const PROVIDER_ROLES: &[&str] = &[
    "supabase_admin",
    "supabase_auth_admin",
    "supabase_storage_admin",
    "authenticator",
    "anon",
    "authenticated",
    "service_role",
];

/// The first rule on a hosted database: a backup taken as Supabase's non-superuser `postgres` is
/// proven at restore level on a plain PostgreSQL server. The provider's roles the backup names
/// are made there as NOLOGIN stand-ins for the proof and dropped after it; every table — the
/// provider's `auth.users` and `storage.objects` included — is restored and compared; the record
/// says what the proof rested on. A drill passes the same way. A scratch server where keepsake
/// may not create roles: not proven (exit 1), naming the privilege, nothing left behind.
#[test]
fn a_supabase_backup_is_proven_and_drilled_on_a_plain_server() {
    let hosted = supabase("app", true);
    let env = Env::on_cluster(hosted, "app");
    assert_eq!(
        env.psql(
            "app",
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ),
        "f",
        "the backup runs as a non-superuser"
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let show = env.keepsake(&["show", &id, "--json"]).ok().json();
    let tables: Vec<String> = show["table_list"]
        .as_array()
        .expect("table_list")
        .iter()
        .map(|t| {
            format!(
                "{}.{}",
                t["schema"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    for t in [
        "auth.users",
        "storage.objects",
        "storage.buckets",
        "public.weddings",
    ] {
        assert!(
            tables.contains(&t.to_string()),
            "{t} in the backup: {tables:?}"
        );
    }

    let plain = TempCluster::start().expect("a plain cluster");
    assert_eq!(roles_on(&plain, PROVIDER_ROLES), "", "a plain server");
    use_scratch(&env, &plain, "postgres");
    let r = env.keepsake(&["verify", &id, "--level", "restore", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let rec = r.json();
    let rec = rec.as_array().map(|a| a[0].clone()).unwrap_or(rec);
    assert_eq!(rec["passed"], "restore", "{rec}");
    let facts = show["facts"]["tables"].as_array().expect("facts").len();
    assert!(facts >= tables.len() - 2, "{facts} tables with facts");
    assert_eq!(rec["tables_compared"].as_u64(), Some(facts as u64), "{rec}");
    let stand_ins: Vec<&str> = rec["stand_in_roles"]
        .as_array()
        .expect("stand-in roles recorded")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for role in [
        "supabase_admin",
        "supabase_auth_admin",
        "anon",
        "authenticated",
    ] {
        assert!(stand_ins.contains(&role), "{role}: {stand_ins:?}");
    }
    assert!(!stand_ins.contains(&"postgres"));
    // The provider's event triggers (owner: a superuser there, a stand-in here) are named as
    // not covered; no table is.
    let not_covered = rec["not_covered"].to_string();
    assert!(
        not_covered.contains("6 event triggers") && not_covered.contains("issue_pg_net_access"),
        "{rec}"
    );
    // Nothing left on the scratch server: no database, none of the stand-ins.
    assert_eq!(roles_on(&plain, PROVIDER_ROLES), "");
    assert_eq!(scratch_databases(&plain), "0");
    let text = env.keepsake(&["show", &id]).ok().stdout;
    assert!(text.contains("restore"), "{text}");

    let r = env.keepsake(&["drill", "--backup", &id, "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["result"], "passed", "{}", r.stdout);
    assert!(
        r.stdout.contains("stand-ins"),
        "the report says what the drill rested on"
    );
    assert_eq!(roles_on(&plain, PROVIDER_ROLES), "");

    // A scratch role that may create databases but not roles: not proven, naming CREATEROLE.
    psql_on(
        &plain,
        "postgres",
        "postgres",
        &format!(
            "CREATE ROLE limited LOGIN CREATEDB PASSWORD '{}'",
            plain.password.expose()
        ),
    );
    use_scratch(&env, &plain, "limited");
    let r = env.keepsake(&["verify", &id, "--level", "restore"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains("NOT PROVEN") || r.all().contains("not be proven"),
        "{}",
        r.all()
    );
    assert!(r.all().contains("CREATEROLE"), "{}", r.all());
    assert_eq!(roles_on(&plain, PROVIDER_ROLES), "");
    assert_eq!(scratch_databases(&plain), "0");
}

/// The recipe into plain PostgreSQL (`--no-owner --no-privileges --exclude-schema auth
/// --exclude-schema storage`) keeps every application table with identical rows. Regression
/// (issue 24, item 3): `public.weddings`, whose `owner_id` defaults to `auth.uid()`, was left
/// out entirely (rows, key, the foreign keys into it) behind one "skipped" line. Now the
/// reference is removed from the kept table and named; so is the CHECK calling `auth.role()`.
#[test]
fn the_plain_postgresql_recipe_keeps_every_app_table_and_names_each_removed_reference() {
    let hosted = supabase("app", true);
    let env = Env::on_cluster(hosted, "app");
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let app_tables = [
        "public.weddings",
        "public.guests",
        "public.wedding_notes",
        r#""Wedding Plans"."Guest List""#,
    ];
    let before: Vec<String> = app_tables
        .iter()
        .map(|t| table_digest(&env.cluster, "app", t))
        .collect();

    let plain = TempCluster::start().expect("a plain cluster");
    // The provider's API roles the policies name: the documented first step.
    psql_on(
        &plain,
        "postgres",
        "postgres",
        "CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN",
    );
    let (target, pw) = target_on(&env, &plain, "app");
    let r = env.keepsake(&[
        "restore",
        &id,
        "--target",
        &target,
        "--target-password",
        &pw,
        "--create",
        "--no-owner",
        "--no-privileges",
        "--exclude-schema",
        "auth",
        "--exclude-schema",
        "storage",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        !r.stdout.contains("skipped: TABLE public.weddings"),
        "{}",
        r.stdout
    );
    for t in app_tables {
        assert!(
            !r.stdout.contains(&format!("skipped: TABLE {t}")),
            "{}",
            r.stdout
        );
    }
    let after: Vec<String> = app_tables
        .iter()
        .map(|t| table_digest(&plain, "app", t))
        .collect();
    assert_eq!(after, before, "every app table with identical rows");
    // Each removed reference is named.
    assert!(
        r.stdout
            .contains("DEFAULT of public.weddings.owner_id: removed")
            && r.stdout.contains("auth.uid()"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("CHECK CONSTRAINT of public.wedding_notes notes_not_by_anon: removed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("skipped: FK CONSTRAINT public.weddings"),
        "{}",
        r.stdout
    );
    // The kept tables' keys and the foreign keys between them are there.
    assert_eq!(
        psql_on(
            &plain,
            "postgres",
            "app",
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.guests'::regclass AND contype = 'f'"
        ),
        "1"
    );
    // The excluded schemas are gone, scaffolding included.
    assert_eq!(
        psql_on(
            &plain,
            "postgres",
            "app",
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('auth', 'storage')"
        ),
        "0"
    );
}

/// The disaster path (issue 24, item 2): a backup of a Supabase database restores into a new
/// project — the provider's roles, schemas, event triggers, extensions and publication already
/// there, no application data — as that project's own non-superuser `postgres`, with
/// `--clean --confirm postgres`. Regression: it failed with `must be owner of event trigger
/// issue_pg_net_access` and rolled back. Now the project's own objects are left to it, the rows
/// of every schema come back (`auth.users`, `storage.objects` included, not the provider's
/// migration records), every restored table is checked, and a project already in use is
/// refused before anything is written.
#[test]
fn a_supabase_backup_restores_into_a_new_project_of_the_same_provider() {
    let hosted = supabase("app", true);
    let env = Env::on_cluster(hosted, "app");
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let show = env.keepsake(&["show", &id, "--json"]).ok().json();
    assert_eq!(show["platform"], "supabase", "detected at backup time");
    let tables = [
        "public.weddings",
        "public.guests",
        "public.wedding_notes",
        r#""Wedding Plans"."Guest List""#,
        "auth.users",
        "storage.buckets",
        "storage.objects",
    ];
    let before: Vec<String> = tables
        .iter()
        .map(|t| table_digest(&env.cluster, "app", t))
        .collect();

    let project = supabase("postgres", false);
    let migrations = psql_on(
        &project,
        "postgres",
        "postgres",
        "SELECT count(*) FROM storage.buckets",
    );
    assert_eq!(migrations, "0", "a new project");
    let (target, pw) = target_on(&env, &project, "postgres");
    let restore = || {
        env.keepsake(&[
            "restore",
            &id,
            "--target",
            &target,
            "--target-password",
            &pw,
            "--clean",
            "--confirm",
            "postgres",
        ])
    };
    let r = restore();
    assert_eq!(r.code, 0, "{}", r.all());
    let after: Vec<String> = tables
        .iter()
        .map(|t| table_digest(&project, "postgres", t))
        .collect();
    assert_eq!(after, before, "{}", r.stdout);
    assert!(
        r.stdout.contains("checked: 10 tables match")
            && r.stdout.contains("auth.users")
            && r.stdout.contains("storage.objects"),
        "{}",
        r.stdout
    );
    assert!(
        r.all()
            .contains("rows of auth.schema_migrations, storage.migrations not restored"),
        "{}",
        r.all()
    );
    assert!(r.all().contains("event triggers"), "{}", r.all());
    // The project's own event triggers and provider tables are as they were.
    assert_eq!(
        psql_on(
            &project,
            "postgres",
            "postgres",
            "SELECT count(*) FROM pg_event_trigger"
        ),
        "6"
    );
    // The app works as on the source: RLS, the default calling auth.uid(), the foreign key
    // into auth.users.
    assert_eq!(
        psql_on(
            &project,
            "postgres",
            "postgres",
            "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.weddings'::regclass"
        ),
        psql_on(
            &env.cluster,
            "postgres",
            "app",
            "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.weddings'::regclass"
        )
    );
    assert_eq!(
        psql_on(
            &project,
            "postgres",
            "postgres",
            "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'public.weddings'::regclass AND adnum = (SELECT attnum FROM pg_attribute WHERE attrelid = 'public.weddings'::regclass AND attname = 'owner_id')"
        ),
        "auth.uid()"
    );

    // Again, into the project now in use: refused before anything is written.
    let r = restore();
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("already in use"), "{}", r.stderr);
    let again: Vec<String> = tables
        .iter()
        .map(|t| table_digest(&project, "postgres", t))
        .collect();
    assert_eq!(again, before);
}

/// `source check` on each kind of cluster: the Supabase-built one as its `postgres` (ready;
/// platform detected; a plain restore needs the provider's roles and a superuser for its
/// event triggers; no logical replication at wal_level replica), a plain one (self-hosted,
/// nothing needed), and a role that row-level security filters (not ready, exit 1, naming the
/// table). Nothing is changed by it.
#[test]
fn source_check_says_what_each_source_allows() {
    let hosted = supabase("app", true);
    let env = Env::on_cluster(hosted, "app");
    let r = env.keepsake(&["source", "check", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let all = r.json();
    let c = &all[0];
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["platform"], "supabase", "{c}");
    let finding = |c: &serde_json::Value, name: &str| -> (String, String) {
        let f = c["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no finding {name}: {c}"));
        (
            f["status"].as_str().unwrap_or("").to_string(),
            f["detail"].as_str().unwrap_or("").to_string(),
        )
    };
    let (st, d) = finding(c, "plain restore");
    assert_eq!(st, "warn", "{d}");
    assert!(
        d.contains("supabase_admin")
            && d.contains("authenticated")
            && d.contains("6 event triggers"),
        "{d}"
    );
    let (st, d) = finding(c, "tables");
    assert_eq!(st, "ok", "{d}");
    assert!(d.contains("row-level security"), "{d}");
    let (st, d) = finding(c, "replication");
    assert_eq!(st, "warn", "{d}");
    assert!(d.contains("wal_level is replica"), "{d}");
    let (st, _) = finding(c, "pg_dump");
    assert_eq!(st, "ok");
    // The text form says the same, one line per finding.
    let text = env.keepsake(&["source", "check", "main"]).ok().stdout;
    assert!(
        text.contains("a backup can run and reads every row"),
        "{text}"
    );
    assert!(text.contains("! plain restore"), "{text}");

    // A role that row-level security applies to: not ready, naming the table.
    psql_on(
        &env.cluster,
        "postgres",
        "app",
        &format!(
            "CREATE ROLE reader LOGIN PASSWORD '{}'; GRANT USAGE ON SCHEMA public, \"Wedding Plans\" TO reader; GRANT SELECT ON ALL TABLES IN SCHEMA public, \"Wedding Plans\" TO reader; GRANT SELECT ON ALL SEQUENCES IN SCHEMA public, \"Wedding Plans\" TO reader",
            env.cluster.password.expose()
        ),
    );
    let config = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        config.replace("postgres://postgres@", "postgres://reader@"),
    )
    .expect("config");
    let r = env.keepsake(&["source", "check", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let c = r.json()[0].clone();
    assert_eq!(c["ok"], false);
    let (st, d) = finding(&c, "row security");
    assert_eq!(st, "fail", "{d}");
    assert!(d.contains("public.weddings"), "{d}");
    let (st, d) = finding(&c, "tables");
    assert_eq!(st, "fail", "{d}");
    assert!(
        d.contains("auth.users"),
        "the provider's tables it was not granted: {d}"
    );
    std::fs::write(&env.config, &config).expect("config");

    // A plain, self-hosted cluster: nothing a plain restore would lack.
    let plain = Env::new("wed", Some(crate::support::WEDDING_SQL));
    let r = plain.keepsake(&["source", "check", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let c = r.json()[0].clone();
    assert_eq!(c["platform"], serde_json::Value::Null);
    assert_eq!(finding(&c, "plain restore").0, "ok", "{c}");
    assert_eq!(
        finding(&c, "platform").1,
        "self-hosted: no hosted provider's roles on the server"
    );

    // An unknown source name: exit 2.
    let r = plain.keepsake(&["source", "check", "nope"]);
    assert_eq!(r.code, 2, "{}", r.all());
}

/// Extension files installed for one test and removed when it ends (even on failure).
struct FakeExtension {
    files: Vec<std::path::PathBuf>,
}

impl FakeExtension {
    /// A tiny extension `name` in the server's extension folder: a function and an enum type.
    fn install(c: &TempCluster, name: &str) -> Self {
        let out = std::process::Command::new(c.bin.join("pg_config"))
            .arg("--sharedir")
            .output()
            .expect("pg_config");
        let share = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dir = std::path::Path::new(&share).join("extension");
        let control = dir.join(format!("{name}.control"));
        let sql = dir.join(format!("{name}--1.0.sql"));
        std::fs::write(
            &control,
            "comment = 'a provider-only extension, for a test'\ndefault_version = '1.0'\nrelocatable = true\n",
        )
        .expect("control file");
        std::fs::write(
            &sql,
            "CREATE FUNCTION kp_hello() RETURNS int LANGUAGE sql AS 'SELECT 1';\nCREATE TYPE kp_mood AS ENUM ('happy', 'sad');\n",
        )
        .expect("script");
        FakeExtension {
            files: vec![control, sql],
        }
    }

    fn remove(&self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Drop for FakeExtension {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A provider-only extension (installed on the hosted server, not on the scratch server): the
/// proof skips it and what needs it, and says so ("not covered"); every table is still
/// compared. Once a table's column needs it, the backup is not proven there (exit 1), never
/// passed without that table.
#[test]
fn what_needs_an_extension_the_scratch_server_lacks_is_named_never_a_table() {
    let hosted = supabase("app", true);
    let name = format!("kp_ext_{}", hex::encode(rand::random::<[u8; 3]>()));
    let ext = FakeExtension::install(&hosted, &name);
    psql_on(
        &hosted,
        "supabase_admin",
        "app",
        &format!("CREATE EXTENSION {name} SCHEMA extensions"),
    );
    let env = Env::on_cluster(hosted, "app");
    env.psql(
        "app",
        "CREATE VIEW public.hello AS SELECT extensions.kp_hello() AS n",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let plain = TempCluster::start().expect("a plain cluster");
    use_scratch(&env, &plain, "postgres");
    // The scratch server (same installation here) loses the extension's files.
    ext.remove();
    let r = env.keepsake(&["verify", &id, "--level", "restore", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let rec = r.json();
    let rec = rec.as_array().map(|a| a[0].clone()).unwrap_or(rec);
    let not_covered = rec["not_covered"].to_string();
    assert!(
        not_covered.contains(&format!(
            "extension {name} (not installed on the scratch server)"
        )),
        "{rec}"
    );
    assert_eq!(rec["passed"], "restore", "{rec}");

    // A table whose column needs it: not proven, naming the table.
    let ext = FakeExtension::install(&plain, &name);
    env.psql(
        "app",
        "CREATE TABLE public.moods (m extensions.kp_mood); INSERT INTO public.moods VALUES ('happy')",
    );
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    ext.remove();
    let r = env.keepsake(&["verify", &id, "--level", "restore"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all()
            .contains("the scratch server cannot take table public.moods"),
        "{}",
        r.all()
    );
    assert_eq!(scratch_databases(&plain), "0");
}

/// The first ```sh block after `heading` in docs/restore.md: its commands, continuation lines
/// joined, each split into words as a shell would (double quotes; `#` comments dropped).
fn doc_recipe(heading: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/restore.md"))
        .expect("docs/restore.md");
    let after = &text[text.find(heading).expect("the recipe's heading")..];
    let start = after.find("```sh\n").expect("a sh block") + 6;
    let block = &after[start..start + after[start..].find("```").expect("its end")];
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (mut words, mut cur, mut quoted) = (vec![], String::new(), false);
            for c in l.chars() {
                match c {
                    '"' => quoted = !quoted,
                    c if c.is_whitespace() && !quoted => {
                        if !cur.is_empty() {
                            words.push(std::mem::take(&mut cur));
                        }
                    }
                    c => cur.push(c),
                }
            }
            if !cur.is_empty() {
                words.push(cur);
            }
            words
        })
        .collect()
}

/// Run a documented `keepsake` command against `target` (a cluster on this machine): the
/// backup id for `ID`, the cluster's address for the URL's host and port (TLS off on
/// loopback), and its password from a file, as the docs leave the password to the user.
fn run_doc_keepsake(
    env: &Env,
    words: &[String],
    id: &str,
    target: &TempCluster,
) -> crate::support::Run {
    assert_eq!(words[0], "keepsake", "{words:?}");
    let pw = env.dir.path().join(format!("doc-password-{}", target.port));
    std::fs::write(&pw, target.password.expose()).expect("password file");
    let mut args: Vec<String> = words[1..]
        .iter()
        .map(|w| match w.as_str() {
            "ID" => id.to_string(),
            url if url.starts_with("postgres://") => {
                let rest = &url[url.find('@').expect("user@host") + 1..];
                let path = &rest[rest.find('/').expect("/dbname")..];
                let db = path.split('?').next().unwrap_or(path);
                format!(
                    "postgres://postgres@127.0.0.1:{}{db}?sslmode=disable",
                    target.port
                )
            }
            w => w.to_string(),
        })
        .collect();
    args.push("--target-password".into());
    args.push(format!("file:{}", pw.display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.keepsake(&args)
}

/// Issue 24 (docs): the two hosted recipes of docs/restore.md, run as written — the plain
/// PostgreSQL one (its `psql` step, then its `restore` with every flag) and the new-project
/// one — against the Supabase-built fixture: each exits 0 and brings back the tables it
/// promises with identical rows. A recipe edited into something that no longer works fails.
#[test]
fn the_hosted_recipes_in_the_restore_docs_work_as_written() {
    let hosted = supabase("app", true);
    let env = Env::on_cluster(hosted, "app");
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let digests = |c: &TempCluster, db: &str, tables: &[&str]| -> Vec<String> {
        tables.iter().map(|t| table_digest(c, db, t)).collect()
    };

    // Into plain PostgreSQL.
    let app = [
        "public.weddings",
        "public.guests",
        "public.wedding_notes",
        r#""Wedding Plans"."Guest List""#,
    ];
    let plain = TempCluster::start().expect("a plain cluster");
    let recipe = doc_recipe("### A hosted database into plain PostgreSQL");
    assert_eq!(recipe.len(), 2, "a psql step and a restore: {recipe:?}");
    assert_eq!(recipe[0][0], "psql");
    let sql = &recipe[0][recipe[0].iter().position(|w| w == "-c").expect("-c") + 1];
    psql_on(&plain, "postgres", "postgres", sql);
    let r = run_doc_keepsake(&env, &recipe[1], &id, &plain);
    assert_eq!(r.code, 0, "{:?}\n{}", recipe[1], r.all());
    assert_eq!(
        digests(&plain, "app", &app),
        digests(&env.cluster, "app", &app)
    );

    // Into a new project of the same provider.
    let all: Vec<&str> = app
        .iter()
        .copied()
        .chain(["auth.users", "storage.buckets", "storage.objects"])
        .collect();
    let project = supabase("postgres", false);
    let recipe = doc_recipe("### A hosted database into a new project");
    assert_eq!(recipe.len(), 1, "{recipe:?}");
    let r = run_doc_keepsake(&env, &recipe[0], &id, &project);
    assert_eq!(r.code, 0, "{:?}\n{}", recipe[0], r.all());
    assert_eq!(
        digests(&project, "postgres", &all),
        digests(&env.cluster, "app", &all)
    );
}

/// Issue 24 (bad input): a new project whose provider tables differ from the backup's. A newer
/// provider version that added a column to `auth.users` takes the rows by column name (the new
/// column gets its default) and the check compares the backup's columns: exit 0, every row
/// back. One that dropped a column the backup has data in is refused before anything is
/// written (exit 2, naming the column): no column's data is silently dropped.
#[test]
fn a_new_project_of_a_newer_provider_version_takes_rows_by_column_name_or_refuses() {
    let hosted = supabase("app", true);
    let env = Env::on_cluster(hosted, "app");
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    let recipe = doc_recipe("### A hosted database into a new project");

    let added = supabase("postgres", false);
    psql_on(
        &added,
        "supabase_admin",
        "postgres",
        "ALTER TABLE auth.users ADD COLUMN is_anonymous boolean NOT NULL DEFAULT false",
    );
    let r = run_doc_keepsake(&env, &recipe[0], &id, &added);
    assert_eq!(r.code, 0, "{}", r.all());
    let cols = "SELECT count(*) || ':' || md5(string_agg(id::text || coalesce(email, ''), '|' ORDER BY id)) FROM auth.users";
    assert_eq!(
        psql_on(&added, "postgres", "postgres", cols),
        psql_on(&env.cluster, "postgres", "app", cols)
    );
    assert_eq!(
        psql_on(
            &added,
            "postgres",
            "postgres",
            "SELECT count(*) FROM auth.users WHERE is_anonymous"
        ),
        "0",
        "the new column has its default"
    );

    let dropped = supabase("postgres", false);
    psql_on(
        &dropped,
        "supabase_admin",
        "postgres",
        "ALTER TABLE storage.objects DROP COLUMN metadata",
    );
    let r = run_doc_keepsake(&env, &recipe[0], &id, &dropped);
    assert_eq!(r.code, 2, "refused before anything is written: {}", r.all());
    assert!(
        r.stderr.contains("storage.objects.metadata") && r.stderr.contains("nothing was done"),
        "the refusal names the column: {}",
        r.stderr
    );
    for (t, n) in [
        ("storage.objects", "0"),
        ("auth.users", "0"),
        ("(SELECT 1 FROM pg_class WHERE relname = 'weddings') x", "0"),
    ] {
        assert_eq!(
            psql_on(
                &dropped,
                "postgres",
                "postgres",
                &format!("SELECT count(*) FROM {t}")
            ),
            n,
            "nothing of the backup was written ({t})"
        );
    }
}
