//! `keepsake source check`: before a backup fails, say what a source allows (docs/restore.md,
//! "Checking a source: `source check`") — the connection and TLS, a pooler in the way,
//! whether the client tools can dump the server, whether the role reads every table in full,
//! the hosted platform and what a restore onto plain PostgreSQL will need, and whether
//! continuous capture could run.
//!
//! Rule: a finding that makes the next backup fail (or miss rows) is `fail`; one that limits a
//! restore or a later feature is `warn`; the check itself changes nothing on the server.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{Config, SourceConfig};
use crate::pg::{client, preflight, tools};

/// How one finding turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// The check of one source (`source check --json` prints an array of these).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceCheck {
    pub source: String,
    /// `host:port/dbname`, never credentials.
    pub location: String,
    /// No finding failed: a backup can run and reads every row.
    pub ok: bool,
    /// The hosted platform detected from the server's roles (`crate::platform`).
    pub platform: Option<String>,
    /// The `provider` configured for the source.
    pub provider: Option<String>,
    pub server_version: Option<String>,
    pub findings: Vec<Finding>,
    pub facts: Option<preflight::Facts>,
    pub duration_ms: u64,
}

impl SourceCheck {
    fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.findings.push(Finding {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }
}

fn list(v: &[String], most: usize) -> String {
    let mut s = v.iter().take(most).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > most {
        s.push_str(&format!(" and {} more", v.len() - most));
    }
    s
}

/// Check source `src`.
pub async fn check(config: &Config, src: &SourceConfig) -> SourceCheck {
    let t0 = Instant::now();
    let mut out = SourceCheck {
        source: src.name.clone(),
        location: src.conn.display(),
        ok: false,
        platform: None,
        provider: src.provider.map(|p| p.name.to_string()),
        server_version: None,
        findings: vec![],
        facts: None,
        duration_ms: 0,
    };
    run(config, src, &mut out).await;
    out.ok = !out.findings.iter().any(|f| f.status == Status::Fail);
    out.duration_ms = t0.elapsed().as_millis() as u64;
    out
}

async fn run(config: &Config, src: &SourceConfig, out: &mut SourceCheck) {
    let pg = match client::connect(&src.conn).await {
        Ok(c) => c,
        Err(e) => return out.push("connection", Status::Fail, e.to_string()),
    };
    match client::transaction_pooled(&src.conn, &pg).await {
        Ok(true) => {
            let e = client::pooled_refusal(&src.conn, src.provider);
            return out.push("pooler", Status::Fail, e.to_string());
        }
        Ok(false) => out.push(
            "pooler",
            Status::Ok,
            "direct or session-mode connection: pg_dump can run",
        ),
        Err(e) => return out.push("pooler", Status::Fail, e.to_string()),
    }
    let f = match preflight::read(&pg).await {
        Ok(f) => f,
        Err(e) => return out.push("catalogs", Status::Fail, e.to_string()),
    };
    out.server_version = Some(f.server_version.clone());

    let mut powers: Vec<&str> = vec![];
    for (has, what) in [
        (f.bypassrls, "BYPASSRLS"),
        (f.replication, "REPLICATION"),
        (f.createrole, "CREATEROLE"),
    ] {
        if has {
            powers.push(what);
        }
    }
    let loopback = src.conn.host.starts_with('/')
        || matches!(src.conn.host.as_str(), "localhost" | "127.0.0.1" | "::1");
    let who = format!(
        "user {} ({}{}), PostgreSQL {}, TLS {}",
        f.user,
        if f.superuser {
            "superuser"
        } else {
            "not a superuser"
        },
        if powers.is_empty() {
            String::new()
        } else {
            format!("; {}", powers.join(", "))
        },
        f.server_version,
        if f.tls { "on" } else { "off" }
    );
    match (f.tls, loopback) {
        (false, false) => out.push(
            "connection",
            Status::Warn,
            format!("{who}: the dump crosses the network in cleartext; add sslmode=require (or verify-full) to the url"),
        ),
        _ => out.push("connection", Status::Ok, who),
    }

    let major = (f.server_version_num / 10000) as u32;
    match tools::find("pg_dump", major, config.postgres.bin_dir.as_deref()) {
        Ok(t) => out.push(
            "pg_dump",
            Status::Ok,
            format!(
                "pg_dump {} ({}) can dump PostgreSQL {}",
                t.version,
                t.path.display(),
                f.server_version
            ),
        ),
        Err(e) => out.push("pg_dump", Status::Fail, e.to_string()),
    }

    if !f.unreadable.is_empty() {
        out.push(
            "tables",
            Status::Fail,
            format!(
                "{} cannot read {} relation{}: {} — pg_dump would stop there; grant SELECT (and USAGE on their schemas), or back up as a role that has it",
                f.user,
                f.unreadable.len(),
                if f.unreadable.len() == 1 { "" } else { "s" },
                list(&f.unreadable, 8)
            ),
        );
    }
    if !f.row_security.is_empty() {
        out.push(
            "row security",
            Status::Fail,
            format!(
                "row-level security applies to {} on {} table{}: {} — a dump would miss rows (pg_dump refuses instead); give the role BYPASSRLS, or back up as the tables' owner",
                f.user,
                f.row_security.len(),
                if f.row_security.len() == 1 { "" } else { "s" },
                list(&f.row_security, 8)
            ),
        );
    }
    if f.unreadable.is_empty() && f.row_security.is_empty() {
        out.push(
            "tables",
            Status::Ok,
            format!(
                "{} tables, every one readable in full{}",
                f.tables,
                match f.row_security_read {
                    0 => String::new(),
                    n => format!(
                        " ({n} with row-level security, which does not apply to {})",
                        f.user
                    ),
                }
            ),
        );
    }

    let detected = crate::platform::detect(&f.roles);
    out.platform = detected.map(|p| p.name.to_string());
    match (detected, src.provider) {
        (Some(d), Some(c)) if d != c => out.push(
            "platform",
            Status::Warn,
            format!(
                "configured as {} but the server has {}'s roles: check `provider`",
                c.title, d.title
            ),
        ),
        (None, Some(c)) => out.push(
            "platform",
            Status::Warn,
            format!(
                "configured as {}, but none of its marker roles ({}) is on the server",
                c.title,
                c.markers.join(", ")
            ),
        ),
        (Some(d), _) => out.push(
            "platform",
            Status::Ok,
            format!(
                "{} (its roles {} are on the server); recorded in each backup",
                d.title,
                d.markers.join(", ")
            ),
        ),
        (None, None) => out.push(
            "platform",
            Status::Ok,
            "self-hosted: no hosted provider's roles on the server",
        ),
    }

    // What a restore onto plain PostgreSQL will need.
    let profile = src.provider.or(detected);
    let mut roles: Vec<String> = f
        .other_owners
        .iter()
        .chain(&f.policy_roles)
        .filter(|r| **r != f.user)
        .cloned()
        .collect();
    roles.sort();
    roles.dedup();
    let provider_extensions: Vec<String> = f
        .extensions
        .iter()
        .filter(|e| profile.is_some_and(|p| p.extensions.contains(&e.as_str())))
        .cloned()
        .collect();
    let mut needs = vec![];
    if !roles.is_empty() {
        needs.push(format!(
            "roles {} (they own objects or policies apply to them: create them, or restore with --no-owner --no-privileges and create only the policies' roles)",
            list(&roles, 10)
        ));
    }
    if !f.event_triggers.is_empty() {
        let owners: Vec<String> = {
            let mut o: Vec<String> = f.event_triggers.iter().map(|(_, o)| o.clone()).collect();
            o.sort();
            o.dedup();
            o
        };
        needs.push(format!(
            "a superuser for {} event trigger{} (owned by {})",
            f.event_triggers.len(),
            if f.event_triggers.len() == 1 { "" } else { "s" },
            owners.join(", ")
        ));
    }
    if !provider_extensions.is_empty() {
        needs.push(format!(
            "extensions only the provider ships: {}",
            provider_extensions.join(", ")
        ));
    }
    if needs.is_empty() {
        out.push(
            "plain restore",
            Status::Ok,
            "a restore onto plain PostgreSQL needs nothing beyond it",
        );
    } else {
        out.push(
            "plain restore",
            Status::Warn,
            format!(
                "a restore onto plain PostgreSQL needs {}; verify and drill create the roles as stand-ins on the scratch server and name what they could not cover (docs/restore.md)",
                needs.join("; ")
            ),
        );
    }

    let mut missing = vec![];
    if f.wal_level != "logical" {
        missing.push(format!(
            "wal_level is {} (needs logical{})",
            f.wal_level,
            match profile.map(|p| p.name) {
                Some("rds") => ": set rds.logical_replication = 1",
                Some("cloudsql") => ": set the cloudsql.logical_decoding flag",
                Some("azure") => ": set wal_level = logical in the server parameters",
                _ => "",
            }
        ));
    }
    if !(f.replication || f.superuser) {
        missing.push(format!("{} lacks REPLICATION", f.user));
    }
    if missing.is_empty() {
        out.push(
            "replication",
            Status::Ok,
            format!(
                "wal_level logical and {} may replicate: continuous change capture can run",
                f.user
            ),
        );
    } else {
        out.push(
            "replication",
            Status::Warn,
            format!(
                "continuous change capture cannot run: {}",
                missing.join("; ")
            ),
        );
    }
    if !f.no_replica_identity.is_empty() {
        out.push(
            "replica identity",
            Status::Warn,
            format!(
                "{} table{} without a primary key or replica identity: {} — change capture cannot follow their updates and deletes (ALTER TABLE … REPLICA IDENTITY FULL, or add a key)",
                f.no_replica_identity.len(),
                if f.no_replica_identity.len() == 1 { "" } else { "s" },
                list(&f.no_replica_identity, 8)
            ),
        );
    }
    out.facts = Some(f);
}
