//! Test harness: a throwaway PostgreSQL cluster (the library's `TempCluster`, initdb/pg_ctl on a
//! free port, run as `postgres` when root), a fresh key pair and repository, and helpers that
//! run the real `keepsake` binary and `psql`/`pg_dump` against the cluster. A real S3 server
//! (single-node Garage) is in [`garage`].

#![allow(dead_code)]

pub mod faultproxy;
pub mod garage;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use keepsake::pg::cluster::TempCluster;

pub const WEDDING_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample/wedding.sql");
pub const CHANGE_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample/change.sql");
pub const AWKWARD_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/awkward.sql");

/// The binary under test: this build's, or `KEEPSAKE_TEST_BIN` (to show that a regression
/// test fails on an older build: `KEEPSAKE_TEST_BIN=/path/to/old/keepsake cargo test …`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("KEEPSAKE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keepsake").into())
    })
}

/// A free TCP port on loopback (for a listener a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// psql on cluster `c` as `user` (with the cluster's password): `-c sql`, or `-f file` when
/// `sql` starts with `@`. Returns the unaligned tuples.
pub fn psql_on(c: &TempCluster, user: &str, db: &str, sql: &str) -> String {
    let mut cmd = Command::new(c.bin.join("psql"));
    cmd.env("PGPASSWORD", c.password.expose())
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &c.port.to_string(),
            "-U",
            user,
            "-d",
            db,
        ]);
    match sql.strip_prefix('@') {
        Some(file) => cmd.args(["-f", file]),
        None => cmd.args(["-c", sql]),
    };
    let o = cmd.output().expect("psql");
    assert!(
        o.status.success(),
        "psql as {user} on {db} failed: {}\n{sql}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Output of a keepsake run, with its exit code and both streams as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "keepsake failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    /// stdout as JSON (`--json` output).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Where a test's repository lives. Tests of the core behaviour run against both (see
/// [`both_backends!`](crate::both_backends)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `file://` folder in the test's temp dir.
    Folder,
    /// `s3://` on the shared Garage server, under a prefix of its own.
    S3,
}

/// Generate `folder::NAME` and `s3::NAME` tests from `fn NAME(backend: Backend)`: one set of
/// tests, run against both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod folder {
            $( #[test] fn $name() { super::$name($crate::support::Backend::Folder) } )*
        }
        mod s3 {
            $( #[test] fn $name() { super::$name($crate::support::Backend::S3) } )*
        }
    };
}

/// Run a future to completion on a small runtime (test helpers are synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// S3 location of an [`Env`] on the shared Garage server.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// Endpoint keepsake talks to (Garage itself, or a fault proxy in front of it).
    pub endpoint: String,
    pub prefix: String,
    /// Extra `[repository]` lines (multipart threshold, retry budget, …).
    pub extra: String,
}

/// A cluster, a key, a config and an initialised repository.
pub struct Env {
    pub cluster: TempCluster,
    pub dir: tempfile::TempDir,
    pub identity: PathBuf,
    pub recipient: String,
    pub config: PathBuf,
    pub repo: PathBuf,
    pub password_file: PathBuf,
    pub backend: Backend,
    pub s3: Option<S3Target>,
}

impl Env {
    /// Start a cluster, create database `db` loaded with `sql_file` (if any), write a config
    /// with one source `main` pointing at it, and `keepsake init`.
    pub fn new(db: &str, sql_file: Option<&str>) -> Self {
        Self::with_backend(Backend::Folder, db, sql_file)
    }

    /// [`Env::new`] with the repository on `backend`.
    pub fn with_backend(backend: Backend, db: &str, sql_file: Option<&str>) -> Self {
        Self::with_s3_extra(backend, db, sql_file, "")
    }

    /// [`Env::with_backend`] with extra `[repository]` lines for S3.
    pub fn with_s3_extra(backend: Backend, db: &str, sql_file: Option<&str>, extra: &str) -> Self {
        let cluster = TempCluster::start().expect("start cluster");
        let env = Self::around(cluster, backend, extra);
        env.psql("postgres", &format!("CREATE DATABASE {db}"));
        if let Some(f) = sql_file {
            env.psql_file(db, f);
        }
        env.write_config(db, None, &env.identity);
        env.keepsake(&["init"]).ok();
        env
    }

    /// An env whose source is database `db` of `cluster`, already made (a hosted platform's
    /// imitation), reached as `cluster.superuser` with the cluster's password.
    pub fn on_cluster(cluster: TempCluster, db: &str) -> Self {
        let env = Self::around(cluster, Backend::Folder, "");
        env.write_config(db, None, &env.identity);
        env.keepsake(&["init"]).ok();
        env
    }

    fn around(cluster: TempCluster, backend: Backend, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = dir.path().join("identity.txt");
        let r = keepsake_raw(
            &["keygen", "--output", identity.to_str().expect("utf8")],
            &[],
        )
        .ok();
        let recipient = r.stdout.trim().to_string();
        let password_file = dir.path().join("pgpass");
        std::fs::write(&password_file, cluster.password.expose()).expect("pw");
        let repo = dir.path().join("repo");
        let config = dir.path().join("keepsake.toml");
        let env = Env {
            cluster,
            dir,
            identity,
            recipient,
            config,
            repo,
            password_file,
            backend,
            s3: None,
        };
        let mut env = env;
        if backend == Backend::S3 {
            let g = garage::Garage::shared();
            std::fs::write(env.dir.path().join("s3-key-id"), g.access_key()).expect("key");
            std::fs::write(env.dir.path().join("s3-secret"), g.secret_key()).expect("secret");
            env.s3 = Some(S3Target {
                endpoint: g.endpoint(),
                prefix: format!("t-{}", hex::encode(rand::random::<[u8; 6]>())),
                extra: extra.to_string(),
            });
        }
        env
    }

    /// (Re)write the config: source `main` → database `db`; optional pg bin_dir; identity.
    pub fn write_config(&self, db: &str, bin_dir: Option<&Path>, identity: &Path) {
        std::fs::write(&self.config, self.config_text(db, bin_dir, identity)).expect("config");
    }

    pub fn config_text(&self, db: &str, bin_dir: Option<&Path>, identity: &Path) -> String {
        let mut s = format!(
            "{}\n[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"{}\"\n\n[[sources]]\nname = \"main\"\nurl = \"{}\"\npassword = \"file:{}\"\n",
            self.repository_toml(),
            self.recipient,
            identity.display(),
            self.cluster.url(db),
            self.password_file.display()
        );
        // Job history stays in the test's directory, never the user's state dir.
        s.push_str(&format!(
            "\n[daemon]\nstate_dir = \"{}\"\n",
            self.dir.path().join("state").display()
        ));
        if let Some(b) = bin_dir {
            s.push_str(&format!("\n[postgres]\nbin_dir = \"{}\"\n", b.display()));
        }
        s
    }

    /// The `[repository]` table of this env.
    pub fn repository_toml(&self) -> String {
        match &self.s3 {
            None => format!("[repository]\nurl = \"file://{}\"\n", self.repo.display()),
            Some(t) => {
                let g = garage::Garage::shared();
                format!(
                    "[repository]\nurl = \"s3://{}/{}\"\nendpoint = \"{}\"\nregion = \"{}\"\npath_style = true\naccess_key_id = \"file:{}\"\nsecret_access_key = \"file:{}\"\n{}\n",
                    g.bucket(),
                    t.prefix,
                    t.endpoint,
                    g.region(),
                    self.dir.path().join("s3-key-id").display(),
                    self.dir.path().join("s3-secret").display(),
                    t.extra
                )
            }
        }
    }

    /// The repository's object store, opened through the library as keepsake opens it (so tests
    /// can delete, damage and list objects on either backend).
    pub fn store(&self) -> std::sync::Arc<dyn keepsake::storage::ObjectStore> {
        let cfg = keepsake::config::load(&self.config).expect("config");
        block_on(keepsake::engine::store(&cfg)).expect("store")
    }

    /// Keys of the objects under `prefix` (`packs/`, `snapshots/`, …).
    pub fn object_keys(&self, prefix: &str) -> Vec<String> {
        let store = self.store();
        block_on(store.list(prefix))
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect()
    }

    /// Keys of every pack.
    pub fn pack_keys(&self) -> Vec<String> {
        self.object_keys("packs/")
    }

    pub fn read_object(&self, key: &str) -> Vec<u8> {
        let store = self.store();
        block_on(store.get(key))
            .expect("get")
            .expect("object exists")
    }

    pub fn write_object(&self, key: &str, data: Vec<u8>) {
        let store = self.store();
        block_on(store.put(key, data)).expect("put");
    }

    pub fn delete_object(&self, key: &str) {
        let store = self.store();
        block_on(store.delete(key)).expect("delete");
    }

    /// Run keepsake with this env's config.
    pub fn keepsake(&self, args: &[&str]) -> Run {
        Run::from(self.keepsake_cmd(args).output().expect("run keepsake"))
    }

    pub fn keepsake_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&self.config).args(args);
        self.isolate(&mut c);
        c
    }

    /// Give a keepsake process this test's own home, XDG directories and temp dir, so it
    /// never reads the user's configuration and never sees (or sweeps) another test's files.
    pub fn isolate(&self, c: &mut Command) {
        isolate_in(c, self.dir.path());
    }

    /// `keepsake --daemon` on this env's configuration, output discarded; killed when dropped.
    pub fn spawn_daemon(&self) -> DaemonChild {
        DaemonChild(
            self.keepsake_cmd(&["--daemon"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn the daemon"),
        )
    }

    /// Backup and return its id (from `--json`).
    pub fn backup(&self, kind: &str) -> serde_json::Value {
        let r = self.keepsake(&["backup", "--type", kind, "--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("backup --json");
        v[0].clone()
    }

    /// Restore `id` into a new database `db`.
    pub fn restore_new(&self, id: &str, db: &str) -> Run {
        self.keepsake(&[
            "restore",
            id,
            "--target",
            &self.target(db),
            "--target-password",
            &format!("file:{}", self.password_file.display()),
            "--create",
        ])
    }

    pub fn target(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.cluster.port
        )
    }

    /// A PostgreSQL client tool of the test cluster, connected as `postgres` through the
    /// environment (host, port, user, password).
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.cluster.bin.join(name));
        c.env("PGPASSWORD", self.cluster.password.expose())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.cluster.port.to_string())
            .env("PGUSER", "postgres");
        c
    }

    /// Run SQL, return psql's unaligned tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let o = self
            .tool("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            o.status.success(),
            "psql failed: {}\nSQL: {sql}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn psql_file(&self, db: &str, file: &str) {
        let o = self
            .tool("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", file])
            .output()
            .expect("psql");
        assert!(
            o.status.success(),
            "psql -f {file} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    pub fn db_exists(&self, db: &str) -> bool {
        self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
        ) == "1"
    }

    /// `pg_dump --schema-only`, without the per-run `\restrict` key lines.
    pub fn schema(&self, db: &str) -> String {
        let o = self
            .tool("pg_dump")
            .args(["--schema-only", "-d", db])
            .output()
            .expect("pg_dump");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every table's row count and order-independent content digest, sequences' values and
    /// large objects' contents, computed by SQL independent of keepsake.
    pub fn fingerprint(&self, db: &str) -> String {
        let sql = r#"
CREATE FUNCTION pg_temp.fp(s text, t text, OUT n bigint, OUT h text) LANGUAGE plpgsql AS $f$
BEGIN
  EXECUTE format('SELECT count(*), coalesce(md5(string_agg(x, '''' ORDER BY x)), '''') FROM (SELECT md5(r::text) x FROM ONLY %I.%I r) y', s, t) INTO n, h;
END $f$;
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT format('table %I.%I %s %s', n.nspname, c.relname, f.n, f.h) AS line
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, LATERAL pg_temp.fp(n.nspname, c.relname) f
  WHERE c.relkind IN ('r','m') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_%'
  UNION ALL
  SELECT format('sequence %I.%I %s', schemaname, sequencename, coalesce(last_value::text, 'unset')) FROM pg_sequences
  UNION ALL
  SELECT format('large objects %s %s', count(*), coalesce(md5(string_agg(md5(lo_get(oid)), ',' ORDER BY md5(lo_get(oid)))), '')) FROM pg_largeobject_metadata
) lines"#;
        self.psql(db, sql)
    }

    pub fn snapshots(&self) -> Vec<String> {
        list_files(&self.repo.join("snapshots"))
    }

    pub fn packs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in list_files(&self.repo.join("packs")) {
            out.extend(
                list_files(&self.repo.join("packs").join(&d))
                    .into_iter()
                    .map(|f| self.repo.join("packs").join(&d).join(f)),
            );
        }
        out.sort();
        out
    }
}

pub fn list_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".tmp-"))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// A daemon a test started: killed when dropped, so that a failing test leaves none behind
/// (they went on capturing for an hour after a failed run).
pub struct DaemonChild(pub std::process::Child);

impl DaemonChild {
    /// SIGTERM, as a service manager stops it: it exits 0 within 30 s.
    pub fn stop(mut self) {
        kill(self.0.id(), "TERM");
        assert_eq!(
            wait_exit(&mut self.0, std::time::Duration::from_secs(30)),
            Some(0),
            "the daemon stops on SIGTERM with exit 0"
        );
    }
}

impl std::ops::Deref for DaemonChild {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for DaemonChild {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for DaemonChild {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // As a service manager stops it (its cleanups run), then for sure.
            kill(self.0.id(), "TERM");
            let _ = wait_exit(&mut self.0, std::time::Duration::from_secs(20));
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Point HOME, the XDG directories and TMPDIR of `c` under `root` (created as needed), remove
/// the variables a test must not inherit, and never look up instance metadata.
pub fn isolate_in(c: &mut Command, root: &Path) {
    for (var, sub) in [
        ("HOME", "home"),
        ("XDG_CONFIG_HOME", "home/.config"),
        ("XDG_STATE_HOME", "home/.local/state"),
        ("XDG_CACHE_HOME", "home/.cache"),
        ("XDG_DATA_HOME", "home/.local/share"),
        ("TMPDIR", "tmp"),
    ] {
        let d = root.join(sub);
        std::fs::create_dir_all(&d).expect("isolated dir");
        c.env(var, d);
    }
    c.env_remove("PGPASSWORD")
        .env_remove("KEEPSAKE_CONFIG")
        // Never an instance-metadata lookup from a test (credentials are always configured).
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// A home and temp dir for keepsake processes that belong to no [`Env`].
fn shared_root() -> &'static Path {
    static ROOT: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// Run keepsake with arbitrary args and extra env.
pub fn keepsake_raw(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(bin());
    c.args(args);
    isolate_in(&mut c, shared_root());
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from(c.output().expect("run keepsake"))
}

/// Write an executable script.
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Run `cmd` with `input` on stdin; its stdout (it must succeed).
pub fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let mut c = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = c.stdin.take().expect("stdin");
    let data = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let o = c.wait_with_output().expect("wait");
    let _ = w.join();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Wait (at most a minute) until `path` exists: a wrapper script's signal that it got there.
pub fn wait_for(path: &Path, what: &str) {
    let t = std::time::Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Send `sig` to a process.
pub fn kill(pid: u32, sig: &str) {
    assert!(std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success());
}

/// Wait for a child to exit; its exit code.
pub fn wait_exit(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let t = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code();
        }
        assert!(
            t.elapsed() < limit,
            "the daemon did not stop within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Wait until `f` holds.
pub fn eventually(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "waited {limit:?} for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
