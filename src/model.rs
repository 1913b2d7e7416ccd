//! The plain values every layer shares: backup types, verification levels, the retention
//! policy, the API's roles, a drill check's `expect`, and [`SourceInfo`] and [`TableInfo`]
//! (what the source database and its tables looked like when a backup was taken). The
//! configuration parses into them and the core works with them, so neither imports the other
//! for them.

use serde::{Deserialize, Serialize};

/// Backup types (docs/backups.md, "Backup types"). Every backup restores on its own.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Every chunk stored anew in new packs; shares nothing with earlier backups.
    Full,
    /// Only chunks not already anywhere in the repository.
    Incremental,
    /// Only chunks not in the latest full backup of the same source.
    Differential,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
            BackupType::Differential => "differential",
        }
    }
}

impl std::str::FromStr for BackupType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(BackupType::Full),
            "incremental" => Ok(BackupType::Incremental),
            "differential" => Ok(BackupType::Differential),
            o => Err(format!(
                "\"{o}\" is not a backup type: use full, incremental or differential"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Structure,
    Data,
    Restore,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Structure => "structure",
            Level::Data => "data",
            Level::Restore => "restore",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "structure" => Ok(Level::Structure),
            "data" => Ok(Level::Data),
            "restore" => Ok(Level::Restore),
            o => Err(format!(
                "\"{o}\" is not a verification level: use structure, data or restore"
            )),
        }
    }
}

/// `[retention]` of the configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Keep every backup younger than this many days.
    pub days: Option<u32>,
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Never keep fewer than this many backups proven at `data` level or better (per source).
    pub min_verified: Option<u32>,
    /// Hours an unreferenced pack stays marked before prune deletes it (default 24, at least
    /// [`MIN_PRUNE_GRACE_HOURS`] unless `allow_short_prune_grace`).
    pub prune_grace_hours: Option<u32>,
    /// Accept a `prune_grace_hours` below the minimum: only for a throwaway repository that no
    /// other host or process writes (the test suite), never for one that holds real backups.
    pub allow_short_prune_grace: Option<bool>,
}

/// The least `prune_grace_hours` a repository with real backups may use: more than the
/// clock allowance between hosts (10 minutes) with room for a backup that planned its reuse
/// just before a prune's mark and is slow to commit.
pub const MIN_PRUNE_GRACE_HOURS: u32 = 1;

impl RetentionPolicy {
    pub(crate) fn has_rules(&self) -> bool {
        self.days.is_some()
            || self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
    }
}

/// Who may do what through the control API (docs/api.md, "Who may call"): each role may do
/// everything the roles below it may.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads status, backups, jobs, events, metrics; previews a prune.
    Viewer,
    /// Also starts backups and verifications, cancels jobs.
    Operator,
    /// Also restores, prunes, deletes, reads and changes the configuration and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            o => Err(format!(
                "\"{o}\" is not a role: use viewer, operator or admin"
            )),
        }
    }
}

/// What a drill's smoke query must return (`[[drill.checks]] expect`): its one scalar (first
/// column of the first row) compared with a value — `"= 42"`, `"!= 0"`, `"> 0"`,
/// `">= 1000"`, `"< 5"`, `"<= 5"` — or `"not null"` / `"null"`. Ordering comparisons are
/// numeric; `=` and `!=` are numeric when both sides are numbers, else exact text.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Compare(CompareOp, String),
    NotNull,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Compare(op, v) => write!(f, "{} {v}", op.as_str()),
            Expect::NotNull => f.write_str("not null"),
            Expect::Null => f.write_str("null"),
        }
    }
}

impl std::str::FromStr for Expect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "not null" => return Ok(Expect::NotNull),
            "null" => return Ok(Expect::Null),
            _ => {}
        }
        // Longest operators first.
        let ops = [
            (">=", CompareOp::Ge),
            ("<=", CompareOp::Le),
            ("!=", CompareOp::Ne),
            ("<>", CompareOp::Ne),
            ("=", CompareOp::Eq),
            (">", CompareOp::Gt),
            ("<", CompareOp::Lt),
        ];
        let Some((op, rest)) = ops
            .iter()
            .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, r.trim())))
        else {
            return Err(format!(
                "\"{t}\" is not an expectation: use \"= 42\", \"!= 0\", \"> 0\", \">= 1000\", \"< 5\", \"<= 5\", \"not null\" or \"null\""
            ));
        };
        if rest.is_empty() {
            return Err(format!("\"{t}\" has no value to compare with"));
        }
        let ordering = !matches!(op, CompareOp::Eq | CompareOp::Ne);
        if ordering && rest.parse::<f64>().is_err() {
            return Err(format!(
                "\"{t}\": {} compares numbers, and \"{rest}\" is not one",
                op.as_str()
            ));
        }
        Ok(Expect::Compare(op, rest.to_string()))
    }
}

impl Expect {
    /// Whether `value` (the query's scalar as text; `None` for SQL NULL or no row) meets this
    /// expectation; the error says what was found.
    pub fn check(&self, value: Option<&str>) -> Result<(), String> {
        let shown = value.unwrap_or("NULL");
        match (self, value) {
            (Expect::NotNull, Some(_)) | (Expect::Null, None) => Ok(()),
            (Expect::NotNull, None) => Err("expected a value, found NULL".into()),
            (Expect::Null, Some(v)) => Err(format!("expected NULL, found {v}")),
            (Expect::Compare(op, want), None) => {
                Err(format!("expected {} {want}, found NULL", op.as_str()))
            }
            (Expect::Compare(op, want), Some(got)) => {
                let nums = (got.trim().parse::<f64>(), want.parse::<f64>());
                let ok = match (op, nums) {
                    (CompareOp::Eq, (Ok(a), Ok(b))) => a == b,
                    (CompareOp::Ne, (Ok(a), Ok(b))) => a != b,
                    (CompareOp::Eq, _) => got == want,
                    (CompareOp::Ne, _) => got != want,
                    (_, (Err(_), _)) => {
                        return Err(format!(
                            "expected a number {} {want}, found {shown}",
                            op.as_str()
                        ))
                    }
                    (CompareOp::Gt, (Ok(a), Ok(b))) => a > b,
                    (CompareOp::Ge, (Ok(a), Ok(b))) => a >= b,
                    (CompareOp::Lt, (Ok(a), Ok(b))) => a < b,
                    (CompareOp::Le, (Ok(a), Ok(b))) => a <= b,
                    (_, (Ok(_), Err(_))) => false,
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!("expected {} {want}, found {shown}", op.as_str()))
                }
            }
        }
    }
}

/// One table of the source at backup time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// `r` table, `p` partitioned, `m` materialized view.
    pub kind: String,
    /// On-disk size of the table and its TOAST (no indexes), bytes.
    pub size_bytes: i64,
    /// The planner's estimate (`reltuples`); exact counts come with verification facts.
    pub estimated_rows: i64,
}

/// The source database as seen when the backup started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    /// Configured source name.
    pub name: String,
    /// `host:port/dbname` (never credentials).
    pub location: String,
    pub database: String,
    pub server_version: String,
    pub server_version_num: i32,
    /// `pg_control_system()` identifier when readable, to recognise the source server.
    pub system_identifier: Option<String>,
    pub encoding: String,
    pub lc_collate: String,
    pub lc_ctype: String,
    pub database_size: i64,
    /// The hosted platform the database lives on (`crate::platform`): configured as the
    /// source's `provider`, or detected from its roles. `None`: self-hosted, or an older backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

#[cfg(test)]
mod expect_tests {
    use super::*;

    #[test]
    fn expectations_parse_and_judge_like_the_docs_say() {
        let e: Expect = "= 42".parse().unwrap();
        assert!(e.check(Some("42")).is_ok());
        assert!(
            e.check(Some("42.0")).is_ok(),
            "numeric when both are numbers"
        );
        assert_eq!(e.check(Some("41")).unwrap_err(), "expected = 42, found 41");
        assert!(e.check(None).is_err());
        let e: Expect = ">= 1000".parse().unwrap();
        assert!(e.check(Some("1000")).is_ok());
        assert!(e.check(Some("999")).is_err());
        assert!(e.check(Some("many")).unwrap_err().contains("a number"));
        let e: Expect = "= wedding".parse().unwrap();
        assert!(e.check(Some("wedding")).is_ok());
        assert!(e.check(Some("Wedding")).is_err());
        assert!("not null"
            .parse::<Expect>()
            .unwrap()
            .check(Some(""))
            .is_ok());
        assert!("NOT NULL".parse::<Expect>().unwrap().check(None).is_err());
        assert!("null".parse::<Expect>().unwrap().check(None).is_ok());
        assert!("> many".parse::<Expect>().is_err());
        assert!("42".parse::<Expect>().is_err());
        assert!(">".parse::<Expect>().is_err());
        assert_eq!("<> 0".parse::<Expect>().unwrap().to_string(), "!= 0");
    }
}

/// The engine's fixed words (job kinds, levels, states, error kinds) are `&'static str` in its
/// values; a face that reads those values back from the control API maps each word onto the
/// same static string here. A word this build does not know reads as `unknown`: a newer daemon
/// can add words without an older console failing, and nothing a server sends is leaked.
pub mod words {
    use serde::{Deserialize, Deserializer};

    /// A fixed word. An alias so that serde does not take the field for one borrowed from
    /// the input (it would then only deserialize from `'static` data).
    pub type Word = &'static str;

    const KNOWN: &[&str] = &[
        // job kinds and progress operations
        "backup",
        "verify",
        "restore",
        "prune",
        "delete",
        "drill",
        // backup status, proven levels, RPO states
        "completed",
        "none",
        "structure",
        "data",
        "failed",
        "ok",
        "breach",
        "not set",
        // error kinds
        "config",
        "invalid",
        "not_found",
        "conflict",
        "key",
        "repository",
        "damage",
        "postgres",
        "storage",
        "cancelled",
        "unknown",
    ];

    /// The static spelling of `s`, or `unknown`.
    pub fn intern(s: &str) -> &'static str {
        KNOWN
            .iter()
            .find(|k| **k == s)
            .copied()
            .unwrap_or("unknown")
    }

    /// serde `deserialize_with` for a `&'static str` field.
    pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        Ok(intern(&String::deserialize(d)?))
    }

    /// serde `deserialize_with` for an `Option<&'static str>` field.
    pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(|s| intern(&s)))
    }
}

impl RetentionPolicy {
    /// The policy in words, one phrase per rule (what `status`, the console and the control
    /// API's `info` show).
    pub fn words(&self) -> Vec<String> {
        let mut w = vec![];
        if let Some(d) = self.days {
            w.push(format!("keep everything younger than {d} days"));
        }
        for (n, what) in [
            (self.keep_last, "last"),
            (self.keep_hourly, "hourly"),
            (self.keep_daily, "daily"),
            (self.keep_weekly, "weekly"),
            (self.keep_monthly, "monthly"),
            (self.keep_yearly, "yearly"),
        ] {
            if let Some(n) = n {
                w.push(format!("keep {n} {what}"));
            }
        }
        if let Some(n) = self.min_verified {
            w.push(format!("never fewer than {n} proven per source"));
        }
        if !w.is_empty() {
            w.push(format!(
                "unreferenced packs deleted {}h after they are marked",
                self.prune_grace_hours.unwrap_or(24)
            ));
        }
        w
    }
}
