//! A source behind a real connection pooler (PgBouncer, started here as the `postgres` user):
//! a transaction-mode pool cannot carry pg_dump's one-session snapshot, so the backup is refused
//! before pg_dump runs, naming what to use instead; a session-mode pool works.

use std::process::{Child, Command};
use std::time::Duration;

use crate::support::{eventually, free_port, Env, WEDDING_SQL};

/// A PgBouncer in front of `env`'s cluster with two entries for database `db`: `<db>_tx`
/// (pool_mode = transaction, one server connection) and `<db>_session` (pool_mode = session).
struct Bouncer {
    child: Child,
    port: u16,
    ini: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    /// PgBouncer itself, not only `runuser` in front of it (killing that left one PgBouncer
    /// behind per run).
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.ini.as_os_str())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer(env: &Env, db: &str) -> Option<Bouncer> {
    let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let dir = tempfile::Builder::new()
        .prefix("keepsake-pgbouncer-")
        .tempdir()
        .expect("dir");
    let port = free_port();
    let pg = env.cluster.port;
    let ini = dir.path().join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n{db}_tx = host=127.0.0.1 port={pg} dbname={db} pool_mode=transaction pool_size=1\n{db}_session = host=127.0.0.1 port={pg} dbname={db} pool_mode=session\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {}\nlogfile = {}\npidfile = \nmax_client_conn = 50\ndefault_pool_size = 5\nignore_startup_parameters = extra_float_digits,options\n",
            dir.path().join("userlist.txt").display(),
            dir.path().join("pgbouncer.log").display(),
        ),
    )
    .expect("ini");
    std::fs::write(
        dir.path().join("userlist.txt"),
        format!("\"postgres\" \"{}\"\n", env.cluster.password.expose()),
    )
    .expect("userlist");
    // PgBouncer refuses to run as root.
    let _ = Command::new("chown")
        .arg("-R")
        .arg("postgres:")
        .arg(dir.path())
        .status();
    let child = Command::new("runuser")
        .args(["-u", "postgres", "--", bin])
        .arg(&ini)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start pgbouncer");
    eventually("pgbouncer listens", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some(Bouncer {
        child,
        port,
        ini,
        _dir: dir,
    })
}

#[test]
fn a_transaction_mode_pooler_is_refused_before_pg_dump_and_a_session_pooler_works() {
    let env = Env::new("wed", Some(WEDDING_SQL));
    let Some(b) = pgbouncer(&env, "wed") else {
        panic!("pgbouncer is not installed: tests/setup.sh installs it");
    };
    let direct = format!("127.0.0.1:{}/wed", env.cluster.port);
    let config = std::fs::read_to_string(&env.config).expect("config");
    let through = |entry: &str| {
        std::fs::write(
            &env.config,
            config.replace(&direct, &format!("127.0.0.1:{}/{entry}", b.port)),
        )
        .expect("config");
    };

    through("wed_tx");
    let r = env.keepsake(&["backup"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("transaction-mode connection pooler")
            && r.stderr.contains("session")
            && r.stderr.contains("nothing was backed up"),
        "{}",
        r.stderr
    );
    assert!(env.snapshots().is_empty(), "nothing committed");
    // The preflight says the same before any backup is tried.
    let r = env.keepsake(&["source", "check", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let c = r.json()[0].clone();
    assert_eq!(c["findings"][0]["name"], "pooler", "{c}");
    assert_eq!(c["findings"][0]["status"], "fail", "{c}");

    through("wed_session");
    let r = env.keepsake(&["backup", "--json"]).ok();
    assert!(r.stdout.contains("\"id\""), "{}", r.stdout);
    assert_eq!(env.snapshots().len(), 1);

    // The direct connection is not mistaken for a pooler.
    std::fs::write(&env.config, &config).expect("config");
    env.keepsake(&["backup"]).ok();
    assert_eq!(env.snapshots().len(), 2);
}
