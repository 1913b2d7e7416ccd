//! The plain values every layer shares: backup types, verification levels, the retention
//! policy. The configuration parses into them and the core works with them, so neither
//! imports the other for them.

use serde::{Deserialize, Serialize};

/// Backup types (DESIGN.md §2). Every backup restores on its own.
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
    /// Hours an unreferenced pack stays marked before prune deletes it (default 24).
    pub prune_grace_hours: Option<u32>,
}

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

/// Who may do what through the control API (DESIGN.md §5): each role may do everything the
/// roles below it may.
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
