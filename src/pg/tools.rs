//! Finding pg_dump / pg_restore whose major version fits the server.
//!
//! Search order: the configured `[postgres] bin_dir`, `PATH`, `pg_config --bindir`, then
//! `/usr/lib/postgresql/*/bin` and `/usr/pgsql-*/bin`. Among the candidates whose major
//! version is at least the server's, the newest wins (a newer pg_dump dumps older servers; the
//! reverse is refused by pg_dump itself). When none fits, the error names both versions.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Tool {
    pub path: PathBuf,
    /// e.g. "15.18"
    pub version: String,
    pub major: u32,
}

fn candidates(name: &str, bin_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(d) = bin_dir {
        out.push(d.join(name));
        // An explicit bin_dir is authoritative.
        return out;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            out.push(d.join(name));
        }
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        if o.status.success() {
            out.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join(name));
        }
    }
    for pattern in ["/usr/lib/postgresql", "/usr/local/pgsql"] {
        if let Ok(rd) = std::fs::read_dir(pattern) {
            for e in rd.flatten() {
                out.push(e.path().join("bin").join(name));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/usr") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("pgsql-") {
                out.push(e.path().join("bin").join(name));
            }
        }
    }
    out.retain(|p| p.is_file());
    out.dedup();
    out
}

/// `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → ("15.18", 15).
pub fn parse_version(out: &str) -> Option<(String, u32)> {
    let v = out
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let v: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v = v.trim_end_matches('.');
    let major = v.split('.').next()?.parse().ok()?;
    Some((v.to_string(), major))
}

fn version_of(path: &Path) -> Option<(String, u32)> {
    let o = tool_command(path).arg("--version").output().ok()?;
    if !o.status.success() {
        return None;
    }
    parse_version(&String::from_utf8_lossy(&o.stdout))
}

/// Find `name` (pg_dump, pg_restore, …) with major version ≥ `min_major`.
pub fn find(name: &str, min_major: u32, bin_dir: Option<&Path>) -> Result<Tool> {
    let mut found: Vec<Tool> = candidates(name, bin_dir)
        .into_iter()
        .filter_map(|p| {
            version_of(&p).map(|(version, major)| Tool {
                path: p,
                version,
                major,
            })
        })
        .collect();
    found.sort_by_key(|t| std::cmp::Reverse(t.major));
    if let Some(t) = found.iter().find(|t| t.major >= min_major) {
        return Ok(t.clone());
    }
    let pkg = if name == "pg_dump" || name == "pg_restore" {
        format!("postgresql-client-{min_major}")
    } else {
        format!("postgresql-{min_major}")
    };
    Err(Error::Postgres(match found.first() {
        Some(t) => format!(
            "{name} {} ({}) cannot handle a PostgreSQL {min_major} server: install {pkg} or set [postgres] bin_dir",
            t.version,
            t.path.display()
        ),
        None => format!(
            "{name} not found (looked in {}PATH, pg_config --bindir, /usr/lib/postgresql/*/bin): install {pkg}",
            bin_dir.map(|d| format!("{}, ", d.display())).unwrap_or_default()
        ),
    }))
}

/// What a PostgreSQL client tool may inherit from keepsake's environment: what it needs to
/// run (its libraries, a home and a temporary directory, the locale of its messages). Nothing
/// else — not an `env:` secret the configuration references, not an AWS key, not a `PG*`
/// setting keepsake did not choose (an inherited PGPASSWORD or PGSERVICE must not redirect it).
const INHERITED: [&str; 10] = [
    "PATH",
    "HOME",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
];

/// A command for a PostgreSQL client tool, with only [`INHERITED`] of keepsake's environment.
pub fn tool_command(path: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(path);
    cmd.env_clear();
    for k in INHERITED {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(("15.18".into(), 15))
        );
        assert_eq!(
            parse_version("pg_restore (PostgreSQL) 17beta1"),
            Some(("17".into(), 17))
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn refusal_names_both_versions() {
        let e = find("pg_dump", 99, None).expect_err("no pg_dump 99");
        let m = e.to_string();
        assert!(
            m.contains("PostgreSQL 99") && m.contains("postgresql-client-99"),
            "{m}"
        );
    }
}
