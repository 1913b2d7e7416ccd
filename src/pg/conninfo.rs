//! Connection settings of a PostgreSQL server, parsed from a `postgres://` URL.
//!
//! Invariant: the password lives only in a [`Secret`]; [`ConnInfo::display`] (used in every
//! message and log line) shows `user@host:port/dbname` and never the password or query string.
//! libpq's `sslmode` values are all understood (tokio-postgres alone knows only three), and the
//! same settings reach pg_dump/pg_restore through the environment, never argv.

use std::path::PathBuf;

use crate::secret::Secret;

/// libpq's sslmode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where and how to connect. `host` starting with `/` is a Unix socket directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub connect_timeout_s: u64,
    /// Without a password, whether one may come from the password file of the user keepsake
    /// runs as (`PGPASSFILE`, `~/.pgpass`), as libpq does. True for the hosts the configuration
    /// names and for a command-line user's own targets; false for a target named in a control
    /// API request to any other host, so the daemon never sends its stored passwords there.
    pub use_passfile: bool,
}

/// Whether `name` can name a database a restore creates: 1 to 63 bytes (PostgreSQL cuts longer
/// names, so the database made would not be the one asked for), no control characters. Quotes
/// and spaces are fine: keepsake always quotes identifiers.
pub fn check_dbname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a database name is needed".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "{} bytes is too long: PostgreSQL names are at most 63 bytes",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a database name cannot hold control characters".into());
    }
    Ok(())
}

impl ConnInfo {
    /// Whether `other` is the same server (host and port).
    pub fn same_server(&self, other: &ConnInfo) -> bool {
        self.host.eq_ignore_ascii_case(&other.host) && self.port == other.port
    }

    /// Parse `postgres://user:pass@host:port/db?sslmode=…&sslrootcert=…&host=/socket/dir`.
    /// Errors never repeat the URL (it may hold a password).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err("expected a URL of the form postgres://user@host:port/dbname".into());
        }
        let u = url::Url::parse(s).map_err(|e| format!("not a valid postgres:// URL ({e})"))?;
        let dec = |v: &str| percent_decode(v);
        let mut ci = ConnInfo {
            host: u
                .host_str()
                .map(|h| h.trim_matches(['[', ']']).to_string())
                .unwrap_or_default(),
            port: u.port().unwrap_or(5432),
            user: dec(u.username()),
            password: u.password().map(|p| Secret::new(dec(p))),
            dbname: dec(u.path().trim_start_matches('/')),
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            connect_timeout_s: 10,
            use_passfile: true,
        };
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    ci.sslmode = match v.as_ref() {
                        "disable" => SslMode::Disable,
                        "allow" => SslMode::Allow,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(format!(
                                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                            ))
                        }
                    }
                }
                "sslrootcert" => ci.sslrootcert = Some(PathBuf::from(v.as_ref())),
                "host" => ci.host = v.to_string(),
                "port" => {
                    ci.port = v.parse().map_err(|_| format!("port={v} is not a port number"))?
                }
                "user" => ci.user = v.to_string(),
                "dbname" => ci.dbname = v.to_string(),
                "password" => ci.password = Some(Secret::new(v.to_string())),
                "connect_timeout" => {
                    ci.connect_timeout_s = v
                        .parse()
                        .map_err(|_| format!("connect_timeout={v} is not a number of seconds"))?
                }
                "application_name" => {}
                other => {
                    return Err(format!(
                        "unsupported URL parameter \"{other}\": supported are sslmode, sslrootcert, host, port, user, dbname, connect_timeout"
                    ))
                }
            }
        }
        if ci.host.is_empty() {
            ci.host = "localhost".into();
        }
        if ci.user.is_empty() {
            return Err("the URL names no user: use postgres://USER@host/dbname".into());
        }
        if ci.dbname.is_empty() {
            return Err("the URL names no database: use postgres://user@host/DBNAME".into());
        }
        Ok(ci)
    }

    /// `user@host:port/dbname`, safe for messages and logs.
    pub fn display(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// A URL for the same connection without the password (every part a query parameter, so
    /// any user, database or socket directory survives the round trip through [`parse`]).
    ///
    /// [`parse`]: ConnInfo::parse
    pub fn url_without_password(&self) -> String {
        let mut u = url::Url::parse("postgres://localhost/").expect("a fixed valid URL");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("host", &self.host)
                .append_pair("port", &self.port.to_string())
                .append_pair("user", &self.user)
                .append_pair("dbname", &self.dbname)
                .append_pair("sslmode", self.sslmode.as_str())
                .append_pair("connect_timeout", &self.connect_timeout_s.to_string());
            if let Some(c) = &self.sslrootcert {
                q.append_pair("sslrootcert", &c.display().to_string());
            }
        }
        u.to_string()
    }

    /// This connection with `other`'s password (tests compare connections that way).
    #[cfg(test)]
    fn with_password_of(mut self, other: &ConnInfo) -> Self {
        self.password = other.password.clone();
        self
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut c = self.clone();
        c.dbname = dbname.to_string();
        c
    }

    /// Environment for libpq tools: everything but the password (that goes in a passfile).
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.dbname.clone()),
            ("PGSSLMODE", self.sslmode.as_str().to_string()),
            ("PGCONNECT_TIMEOUT", self.connect_timeout_s.to_string()),
            ("PGAPPNAME", "keepsake".to_string()),
        ];
        if let Some(c) = &self.sslrootcert {
            env.push(("PGSSLROOTCERT", c.display().to_string()));
        }
        env
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            ) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hides_password() {
        let c = ConnInfo::parse(
            "postgres://bob:s%40cret@db.example.com:6543/wed%20sync?sslmode=verify-full",
        )
        .expect("parses");
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!(c.dbname, "wed sync");
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.display(), "bob@db.example.com:6543/wed sync");
        assert!(!format!("{c:?}").contains("s@cret"));
    }

    #[test]
    fn url_without_password_round_trips_awkward_names() {
        let c = ConnInfo::parse(
            "postgres://o%27brien:pw@db.example.com:6543/Wedding%20%22Plans%22%26co?sslmode=require&sslrootcert=/etc/ca%20x.pem",
        )
        .expect("parses");
        let u = c.url_without_password();
        assert!(!u.contains("pw"), "{u}");
        let back = ConnInfo::parse(&u).expect("parses back");
        assert_eq!(back.password, None);
        assert_eq!(back.with_password_of(&c), c);
        let sock = ConnInfo {
            host: "/var/run/postgresql".into(),
            ..c.clone()
        };
        assert_eq!(
            ConnInfo::parse(&sock.url_without_password())
                .expect("socket")
                .host,
            "/var/run/postgresql"
        );
        assert!(check_dbname(&"x".repeat(64)).is_err());
        assert!(check_dbname("").is_err());
        assert!(check_dbname(r"a\nb").is_ok());
        assert!(check_dbname("a\nb").is_err());
        assert!(check_dbname("a\u{7}b").is_err());
        assert!(check_dbname("Wedding \"Plans\"").is_ok());
    }

    #[test]
    fn errors_never_echo_the_url() {
        let e = ConnInfo::parse("postgres://bob:hunter2@h/db?sslmode=bogus").expect_err("bad");
        assert!(!e.contains("hunter2"));
    }
}
