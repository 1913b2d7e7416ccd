//! A real S3 server for the tests: one single-node Garage per test process, on loopback.
//!
//! Invariants it keeps:
//! - **One server per test binary, never outliving it.** The server lives in a `OnceLock`, whose
//!   value is never dropped, so a `Drop` impl cannot stop it. Instead Garage is started through a
//!   small `sh` wrapper: a background watcher polls the test process's pid once a second and,
//!   when it is gone (normal exit, panic, SIGKILL), sends Garage SIGTERM, then SIGKILL after
//!   10 s, and removes the server's temporary folder. The wrapper then `exec`s Garage, so the
//!   `Child` we hold *is* Garage. (Without libc there is no `PR_SET_PDEATHSIG`; the watcher ignores
//!   SIGINT like every background job of a non-interactive shell, so Ctrl-C still cleans up.)
//! - **No clash between test binaries running at once**: random free ports for the S3 API and
//!   RPC, its own temporary folder, random keys and RPC secret per run. Everything binds to
//!   127.0.0.1; the admin API and the web endpoint are not configured, so they do not listen.
//! - **Ready means usable, and ours**: `--single-node --default-bucket` creates the layout, the
//!   key and the bucket before Garage opens its S3 port, so once the port answers HTTP the bucket
//!   is there. The readiness probe asks for a random path and looks for it in Garage's request
//!   log: a port grabbed by another server between our pick and Garage's bind is caught (Garage
//!   itself keeps running without its S3 API then) and we start again on new ports.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long Garage may take to answer on its S3 port (it takes about 0.15 s on a 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Start attempts when a port chosen free was taken by someone else before Garage bound it.
const ATTEMPTS: usize = 3;

/// The region Garage signs for: requests signed for any other region get 400
/// AuthorizationHeaderMalformed.
const REGION: &str = "garage";
const BUCKET: &str = "keepsake-test";

/// Watches the test process (`$1`) and stops Garage (this shell's pid, after `exec`) once the
/// test process is gone; then removes the server folder (`$2`). If Garage dies first (and has
/// been reaped), the watcher just leaves: the harness owns the folder of a failed attempt.
const WRAPPER: &str = r#"
test_pid=$1; dir=$2; shift 2
(
  while kill -0 "$test_pid" 2>/dev/null; do
    kill -0 "$$" 2>/dev/null || exit 0
    sleep 1
  done
  kill -TERM "$$" 2>/dev/null
  i=0
  while kill -0 "$$" 2>/dev/null && [ "$i" -lt 10 ]; do sleep 1; i=$((i + 1)); done
  kill -KILL "$$" 2>/dev/null
  rm -rf "$dir"
) </dev/null >/dev/null 2>&1 &
exec "$@"
"#;

/// A running single-node Garage server with one bucket and one key allowed on it.
pub struct Garage {
    /// Holds config, metadata, data and log. Never dropped for the shared server: the watcher
    /// removes it after the test process exits.
    dir: tempfile::TempDir,
    child: Mutex<Child>,
    addr: SocketAddr,
    bin: PathBuf,
    access_key: String,
    secret_key: String,
}

impl Garage {
    /// The one Garage server of this test process, started on first use.
    ///
    /// Panics (in every caller, with the same message) when Garage is not installed or does not
    /// start; the message carries the server's log.
    pub fn shared() -> &'static Garage {
        static SHARED: OnceLock<Result<Garage, String>> = OnceLock::new();
        match SHARED.get_or_init(Garage::start) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        }
    }

    /// Start a fresh server (retrying with new ports if a chosen port was taken meanwhile).
    fn start() -> Result<Garage, String> {
        let bin = garage_bin().ok_or_else(|| match std::env::var_os("KEEPSAKE_GARAGE") {
            Some(p) if !p.is_empty() => {
                format!("KEEPSAKE_GARAGE={} is not a file", Path::new(&p).display())
            }
            _ => "garage not found on PATH nor in ~/.cargo/bin: run tests/setup.sh \
                  (or `cargo install garage --locked --version 2.5.0`)"
                .to_string(),
        })?;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match Garage::start_once(&bin)? {
                Ok(g) => return Ok(g),
                Err(port_taken) => last = port_taken,
            }
        }
        Err(format!(
            "garage could not get its ports in {ATTEMPTS} attempts; the last time: {last}"
        ))
    }

    /// One attempt. Outer error: give up. Inner error: a port was taken, try again (why).
    fn start_once(bin: &Path) -> Result<Result<Garage, String>, String> {
        let dir = tempfile::Builder::new()
            .prefix("keepsake-garage-")
            .tempdir()
            .map_err(|e| format!("garage temp dir: {e}"))?;
        let [addr, rpc_addr] = free_ports()?;
        let access_key = format!("GK{}", random_hex(12));
        let secret_key = random_hex(32);
        let config = dir.path().join("garage.toml");
        std::fs::write(&config, config_text(dir.path(), addr, rpc_addr))
            .map_err(|e| format!("write {}: {e}", config.display()))?;
        let log_path = dir.path().join("garage.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| format!("garage log: {e}"))?;

        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("keepsake-garage")
            .arg(std::process::id().to_string())
            .arg(dir.path())
            .arg(bin)
            .arg("-c")
            .arg(&config)
            .args(["server", "--single-node", "--default-bucket"]);
        // Garage reads GARAGE_RPC_SECRET, GARAGE_RPC_HOST, GARAGE_LOG_* … from the environment:
        // only ours may count.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GARAGE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("GARAGE_DEFAULT_ACCESS_KEY", &access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &secret_key)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            // The test's own RUST_LOG (say, debug for keepsake) must not flood Garage's log.
            .env("RUST_LOG", "netapp=info,garage=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let g = Garage {
            dir,
            child: Mutex::new(child),
            addr,
            bin: bin.to_path_buf(),
            access_key,
            secret_key,
        };

        // Garage logs every request it gets; a probe path of our own tells our server apart from
        // another one that grabbed the port between `free_ports` and Garage's bind.
        let probe = format!("/{BUCKET}/keepsake-ready-probe-{}", random_hex(8));
        let t = Instant::now();
        loop {
            if let Some(status) = g.exited() {
                let log = g.log();
                if log.contains("Address already in use") {
                    return Ok(Err(log));
                }
                return Err(format!(
                    "garage exited ({status}) before answering on {addr}; log:\n{log}"
                ));
            }
            // A taken RPC port makes Garage exit, a taken S3 port does not: it logs this and
            // runs on without its S3 API.
            if g.log().contains("S3 API server exited with error") {
                g.kill();
                return Ok(Err(g.log()));
            }
            if answers_http(addr, &probe) {
                // Garage writes the request line before it answers.
                if g.log().contains(&probe) {
                    return Ok(Ok(g));
                }
                g.kill();
                return Ok(Err(format!(
                    "another server answers on {addr}; garage's log:\n{}",
                    g.log()
                )));
            }
            if t.elapsed() > READY_TIMEOUT {
                g.kill();
                return Err(format!(
                    "garage did not answer on {addr} within {READY_TIMEOUT:?}; log:\n{}",
                    g.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Base URL of the S3 API, e.g. `http://127.0.0.1:39123` (path-style addressing only).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Socket address of the S3 API, for a fault proxy in front of it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `s3_region` of the config: the only region Garage accepts in signatures.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The bucket created at start, on which the key may read, write and own.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// Access key id: `GK` + 24 hex digits, fresh per run.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Secret key: 64 hex digits, fresh per run.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Garage's own log so far (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// A `garage -c CONFIG` command aimed at this server; add `bucket list`, `bucket info NAME`,
    /// `key list` … It reaches the node over RPC (`rpc_public_addr`, node id from metadata_dir).
    pub fn cli(&self) -> Command {
        let mut c = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GARAGE_") {
                c.env_remove(k);
            }
        }
        c.env("NO_COLOR", "1")
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"));
        c
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        c.try_wait().ok().flatten()
    }

    fn kill(&self) {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Path of the garage binary: `$KEEPSAKE_GARAGE`, else `garage` on `PATH`, else
/// `$CARGO_HOME/bin/garage` or `~/.cargo/bin/garage` (where `cargo install` puts it); `None` if
/// none of them is a file.
pub fn garage_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEPSAKE_GARAGE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("garage"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin").join("garage"));
    on_path.chain(cargo_home).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The config: sqlite metadata (no LMDB map to reserve), one replica, everything on loopback,
/// no admin API and no web endpoint.
fn config_text(dir: &Path, addr: SocketAddr, rpc_addr: SocketAddr) -> String {
    // A JSON string is a valid TOML basic string for any path.
    let q = |p: PathBuf| serde_json::to_string(&p.to_string_lossy()).expect("json string");
    format!(
        r#"metadata_dir = {meta}
data_dir = {data}
db_engine = "sqlite"
replication_factor = 1
disable_scrub = true
# keepsake's packs are age-encrypted (incompressible): compressing them only burns the
# CPU this 2-core machine shares between keepsake, PostgreSQL and the server.
compression_level = "none"

rpc_bind_addr = "{rpc_addr}"
rpc_public_addr = "{rpc_addr}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "{addr}"
"#,
        meta = q(dir.join("meta")),
        data = q(dir.join("data")),
        secret = random_hex(32),
    )
}

/// Two distinct ports nobody listens on right now (the OS's picks for 127.0.0.1:0, both held
/// until both are chosen). Another process may still take one before Garage binds it: the
/// caller retries then.
fn free_ports() -> Result<[SocketAddr; 2], String> {
    let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| format!("find a free port: {e}"));
    let (a, b) = (bind()?, bind()?);
    let addr = |l: &TcpListener| l.local_addr().map_err(|e| format!("find a free port: {e}"));
    Ok([addr(&a)?, addr(&b)?])
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Whether an HTTP server answers `GET path` on `addr` at all (Garage says 403 to this
/// anonymous request; any HTTP response will do).
fn answers_http(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut n = 0;
    while n < head.len() {
        match s.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    head[..n].starts_with(b"HTTP/1.")
}
