//! Throwaway PostgreSQL clusters for `keepsake demo` and the tests.
//!
//! Invariant: a [`TempCluster`] owns a private directory and a server listening on 127.0.0.1
//! (and a socket inside that directory) with password authentication over TCP; dropping it
//! stops the server and removes the directory. When run as root, the server runs as the
//! `postgres` user via `runuser`, as PostgreSQL refuses to run as root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::pg::conninfo::{ConnInfo, SslMode};
use crate::secret::Secret;

#[derive(Debug)]
pub struct TempCluster {
    dir: Option<tempfile::TempDir>,
    pub bin: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub superuser: String,
    pub password: Secret,
    as_postgres: bool,
    running: bool,
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Directory of the newest installed server binaries.
pub fn server_bin_dir() -> Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            let bin = e.path().join("bin");
            if bin.join("initdb").is_file() {
                let v = e.file_name().to_string_lossy().parse().unwrap_or(0);
                dirs.push((v, bin));
            }
        }
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if p.join("initdb").is_file() {
            dirs.push((0, p));
        }
    }
    dirs.sort();
    dirs.pop().map(|d| d.1).ok_or_else(|| {
        Error::Postgres(
            "no PostgreSQL server binaries (initdb) found under /usr/lib/postgresql/*/bin: install the postgresql package (apt-get install postgresql, or tests/setup.sh --demo)".into(),
        )
    })
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("finding a free port", e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io("finding a free port", e))?
        .port())
}

impl TempCluster {
    /// initdb + start. Takes a few seconds.
    pub fn start() -> Result<Self> {
        Self::start_as("postgres")
    }

    /// [`TempCluster::start`] with `superuser` as the bootstrap superuser (a hosted platform's
    /// own, such as Supabase's `supabase_admin`, under which `postgres` is an ordinary role).
    pub fn start_as(superuser: &str) -> Result<Self> {
        let bin = server_bin_dir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("keepsake-pg-")
            .tempdir()
            .map_err(|e| Error::io("creating a cluster directory", e))?;
        if as_postgres {
            let st = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .map_err(|e| Error::io("chown", e))?;
            if !st.success() {
                return Err(Error::Postgres(
                    "cannot chown the cluster directory to postgres".into(),
                ));
            }
        }
        let data = dir.path().join("data");
        let password = Secret::new(hex::encode(rand::random::<[u8; 12]>()));
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, format!("{}\n", password.expose()))
            .map_err(|e| Error::io("writing pwfile", e))?;
        if as_postgres {
            let _ = Command::new("chown").arg("postgres:").arg(&pwfile).status();
        }
        let mut c = TempCluster {
            dir: Some(dir),
            bin,
            data,
            port: 0,
            superuser: superuser.into(),
            password,
            as_postgres,
            running: false,
        };
        c.run(
            "initdb",
            &[
                "-D",
                &c.data.display().to_string(),
                "-U",
                superuser,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        )?;
        let _ = std::fs::remove_file(&pwfile);
        let conf = format!(
            "\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_wal_size = 2GB\nshared_buffers = 128MB\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 50\n",
            c.socket_dir().display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(c.data.join("postgresql.conf"))
            .map_err(|e| Error::io("postgresql.conf", e))?;
        std::io::Write::write_all(&mut f, conf.as_bytes())
            .map_err(|e| Error::io("postgresql.conf", e))?;
        for _ in 0..5 {
            c.port = free_port()?;
            if c.pg_ctl_start().is_ok() {
                c.running = true;
                return Ok(c);
            }
        }
        Err(Error::Postgres(format!(
            "cannot start a throwaway PostgreSQL cluster: see {}/log",
            c.socket_dir().display()
        )))
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir("/");
        let out = cmd
            .output()
            .map_err(|e| Error::io(format!("running {tool}"), e))?;
        if !out.status.success() {
            return Err(Error::Postgres(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let log = self.socket_dir().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &log.display().to_string(),
                "-o",
                &format!("-p {}", self.port),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stop the server (`immediate` simulates a crash).
    pub fn stop(&mut self, mode: &str) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                mode,
                "-w",
                "stop",
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Start a stopped server again on the same port.
    pub fn restart(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        self.pg_ctl_start()?;
        self.running = true;
        Ok(())
    }

    /// Write `files` into the data directory (owned by the server's user, mode 0600), append
    /// `conf` to postgresql.conf, replace pg_hba.conf when `hba` is given, and restart.
    pub fn reconfigure(
        &mut self,
        files: &[(&str, &[u8])],
        conf: &str,
        hba: Option<&str>,
    ) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let write = |name: &str, data: &[u8]| -> Result<()> {
            let p = self.data.join(name);
            std::fs::write(&p, data)
                .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("chmod", e))?;
            if self.as_postgres {
                let _ = Command::new("chown").arg("postgres:").arg(&p).status();
            }
            Ok(())
        };
        for (name, data) in files {
            write(name, data)?;
        }
        if let Some(h) = hba {
            write("pg_hba.conf", h.as_bytes())?;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .map_err(|e| Error::io("postgresql.conf", e))?;
        std::io::Write::write_all(&mut f, format!("\n{conf}\n").as_bytes())
            .map_err(|e| Error::io("postgresql.conf", e))?;
        self.stop("fast")?;
        self.restart()
    }

    /// Connection settings (TCP, password) for a database of this cluster.
    pub fn conninfo(&self, dbname: &str) -> ConnInfo {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: self.port,
            user: self.superuser.clone(),
            password: Some(self.password.clone()),
            dbname: dbname.into(),
            sslmode: SslMode::Disable,
            sslrootcert: None,
            connect_timeout_s: 10,
            use_passfile: true,
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB` without the password (give it separately).
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}?sslmode=disable",
            self.superuser, self.port, dbname
        )
    }

    /// Keep the directory (for `demo --keep`); returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.running = false;
        self.dir.take().map(|d| d.keep()).unwrap_or_default()
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop("immediate");
        }
    }
}
