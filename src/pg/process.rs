//! Running pg_dump and pg_restore.
//!
//! Invariants: connection settings reach the child through the environment and the password
//! through a private (0600) temporary passfile that is removed when the process ends — never
//! through argv. Stderr is captured: the table being processed is parsed from `--verbose`
//! output for progress, and the last lines are kept to explain a failure.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use super::conninfo::ConnInfo;
pub use super::tools::tool_command;
use super::tools::Tool;
use crate::error::{Error, Result};

/// A passfile holding one password; deleted on drop.
pub struct PassFile {
    file: tempfile::NamedTempFile,
}

impl PassFile {
    pub fn new(ci: &ConnInfo) -> Result<Option<Self>> {
        let Some(pw) = &ci.password else {
            return Ok(None);
        };
        sweep_stale_passfiles();
        let mut file = tempfile::Builder::new()
            .prefix(&format!("keepsake-pgpass-{}-", std::process::id()))
            .tempfile()
            .map_err(|e| Error::io("creating a temporary passfile", e))?;
        // tempfile creates files with mode 0600.
        let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
        writeln!(file, "*:*:*:*:{}", esc(pw.expose()))
            .and_then(|_| file.flush())
            .map_err(|e| Error::io("writing the temporary passfile", e))?;
        Ok(Some(PassFile { file }))
    }
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }
}

/// Remove passfiles left by keepsake processes that no longer exist (killed with SIGKILL
/// before they could clean up), so a password never lingers in the temp dir.
fn sweep_stale_passfiles() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("keepsake-pgpass-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What a child's stderr said: the current table and the last lines.
#[derive(Default, Debug)]
pub struct StderrLog {
    pub current_table: Option<String>,
    tail: VecDeque<String>,
    errors: Vec<String>,
}

impl StderrLog {
    /// Record one line of the child's stderr.
    pub fn push_line(&mut self, line: &str) {
        let l = line.trim_end();
        for marker in ["dumping contents of table ", "processing data for table "] {
            if let Some(rest) = l.split(marker).nth(1) {
                self.current_table = Some(rest.trim_matches('"').to_string());
            }
        }
        let lower = l.to_ascii_lowercase();
        let important = ["error", "fatal", "detail:", "hint:"]
            .iter()
            .any(|m| lower.contains(m));
        if important && self.errors.len() < 20 {
            self.errors.push(l.to_string());
        }
        if self.tail.len() >= 8 {
            self.tail.pop_front();
        }
        self.tail.push_back(l.to_string());
    }

    /// The lines that explain a failure.
    pub fn explain(&self) -> String {
        let lines: Vec<&String> = if self.errors.is_empty() {
            self.tail.iter().collect()
        } else {
            self.errors.iter().collect()
        };
        lines
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    }
}

pub type SharedLog = Arc<Mutex<StderrLog>>;

/// Read lines from a blocking reader into `log` until EOF (run on its own thread).
pub fn collect_stderr(
    r: impl std::io::Read + Send + 'static,
    log: SharedLog,
    tool: &'static str,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut br = std::io::BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match br.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    tracing::debug!(target: "keepsake::pg", "{tool}: {}", line.trim_end());
                    if let Ok(mut l) = log.lock() {
                        l.push_line(&line);
                    }
                }
            }
        }
    })
}

fn base_command(tool: &Tool, ci: &ConnInfo, pass: Option<&PassFile>) -> std::process::Command {
    let mut cmd = tool_command(&tool.path);
    // Row text (timestamptz) in UTC, whatever the server's or role's TimeZone, so that table
    // digests recorded at backup time can be recomputed on any server.
    cmd.env("PGTZ", "UTC");
    for (k, v) in ci.libpq_env() {
        cmd.env(k, v);
    }
    match pass {
        Some(p) => {
            cmd.env("PGPASSFILE", p.path());
        }
        // libpq would read the user's own password file: only for hosts that may have it.
        None if ci.use_passfile => {
            cmd.env_remove("PGPASSFILE");
        }
        None => {
            cmd.env("PGPASSFILE", "/dev/null");
        }
    }
    cmd
}

/// `pg_dump -Fc -Z0 --snapshot=… --verbose --no-password` with the stream on stdout.
pub fn pg_dump_command(
    tool: &Tool,
    ci: &ConnInfo,
    pass: Option<&PassFile>,
    snapshot: &str,
    lock_wait_timeout: std::time::Duration,
) -> std::process::Command {
    let mut cmd = base_command(tool, ci, pass);
    cmd.arg("--format=custom")
        .arg(format!(
            "--lock-wait-timeout={}ms",
            lock_wait_timeout.as_millis().max(1)
        ))
        .arg("--compress=0")
        .arg(format!("--snapshot={snapshot}"))
        .arg("--verbose")
        .arg("--no-password")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// `pg_restore -d <target> --exit-on-error --single-transaction --verbose` reading stdin.
pub fn pg_restore_command(
    tool: &Tool,
    ci: &ConnInfo,
    pass: Option<&PassFile>,
    clean: bool,
    no_owner: bool,
    no_privileges: bool,
) -> tokio::process::Command {
    let mut cmd = base_command(tool, ci, pass);
    cmd.arg(dbname_arg(&ci.dbname))
        .arg("--exit-on-error")
        .arg("--single-transaction")
        .arg("--verbose")
        .arg("--no-password");
    if clean {
        cmd.arg("--clean").arg("--if-exists");
    }
    if no_owner {
        cmd.arg("--no-owner");
    }
    if no_owner || no_privileges {
        cmd.arg("--no-privileges");
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd
}

/// Describe how a child ended, for error messages.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended abnormally".into(),
    }
}

/// `--dbname=` for pg_restore. libpq reads a `--dbname` holding `=` or a URI prefix as a whole
/// connection string (a database named `x host=elsewhere` would redirect the restore), so the
/// name always goes in as the conninfo `dbname='…'`, quoted: the other parameters still come
/// from the environment keepsake sets.
pub fn dbname_arg(name: &str) -> String {
    format!(
        "--dbname=dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// `psql` on `ci`'s database reading a script on stdin: no psqlrc, no prompts, stop at the
/// first error.
pub fn psql_command(
    tool: &Tool,
    ci: &ConnInfo,
    pass: Option<&PassFile>,
) -> tokio::process::Command {
    let mut cmd = base_command(tool, ci, pass);
    cmd.arg(dbname_arg(&ci.dbname))
        .arg("--no-psqlrc")
        .arg("--quiet")
        .arg("--no-password")
        .arg("--set=ON_ERROR_STOP=1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd
}

/// One step of a parallel restore: `pg_restore --dbname=… --exit-on-error [extra…]`.
pub fn pg_restore_step(
    tool: &Tool,
    ci: &ConnInfo,
    pass: Option<&PassFile>,
    no_owner: bool,
    no_privileges: bool,
    extra: &[String],
    stdin: bool,
) -> tokio::process::Command {
    let mut cmd = base_command(tool, ci, pass);
    cmd.arg(dbname_arg(&ci.dbname))
        .arg("--exit-on-error")
        .arg("--no-password");
    if no_owner {
        cmd.arg("--no-owner");
    }
    if no_owner || no_privileges {
        cmd.arg("--no-privileges");
    }
    cmd.args(extra)
        .stdin(if stdin {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13, defect 7): libpq expands a `--dbname` holding `=` as a connection
    /// string; keepsake always hands it a quoted `dbname='…'`.
    #[test]
    fn dbname_is_always_a_quoted_conninfo_value() {
        assert_eq!(dbname_arg("wedsync"), "--dbname=dbname='wedsync'");
        assert_eq!(dbname_arg("x host=evil"), "--dbname=dbname='x host=evil'");
        assert_eq!(dbname_arg(r"it's\me"), r"--dbname=dbname='it\'s\\me'");
    }
}
