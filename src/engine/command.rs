//! What faces ask the engine to do. A keystroke, a flag or a request becomes one [`Command`];
//! the engine decides what it means (docs/architecture.md, "Commands (`engine/command.rs`)").
//!
//! Commands are plain serde values so that the control API can carry them; a restore target's
//! password never serializes (see [`RestoreTarget`]).

use serde::{Deserialize, Serialize};

use crate::core::format::BackupType;
use crate::core::verify::Level;
use crate::pg::conninfo::ConnInfo;

/// One unit of work for the job runner.
// A handful of commands exist at a time (never in large collections): boxing the restore
// request would buy nothing but noise at every face that builds one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Back up one configured source; `kind: None` is incremental when a full exists, else full.
    /// With `verify`, the new backup is verified at that level by a job of its own, and this
    /// job's outcome includes the verdict.
    Backup {
        source: String,
        #[serde(rename = "type")]
        kind: Option<BackupType>,
        verify: Option<Level>,
    },
    /// Prove backups at `level`.
    Verify { target: VerifyTarget, level: Level },
    /// Restore one backup into a PostgreSQL database.
    Restore(RestoreRequest),
    /// Apply retention (forget, then collect packs in two phases); `dry_run` changes nothing.
    Prune { dry_run: bool },
    /// Forget one backup (its packs are freed by a later prune). `confirm` repeats the backup's
    /// id (the whole id, or `id` as asked): the operation refuses anything else. `force`
    /// allows forgetting the newest restore-verified backup of its source.
    Delete {
        id: String,
        force: bool,
        #[serde(skip)]
        confirm: String,
    },
    /// Rehearse a recovery into a scratch database and leave a report (docs/drills.md).
    Drill(DrillRequest),
}

/// A disaster-recovery drill, as every face asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct DrillRequest {
    /// The source to drill (default: the backup's, or the only configured one).
    pub source: Option<String>,
    /// This backup (id or unique prefix) …
    pub backup: Option<String>,
    /// … or the last one finished at or before this time. Neither: the newest proven at
    /// `data` level or better.
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the scratch database is created (its name is the database to create; it must not
    /// exist). Default: `[verification] scratch_url`, else the source's server, with a
    /// generated name.
    pub target: Option<RestoreTarget>,
    /// An identity file to open the repository with instead of the configured one (the
    /// offline break-glass key).
    #[serde(skip)]
    pub identity: Option<std::path::PathBuf>,
    /// Who asked (recorded in the report).
    pub actor: String,
}

/// Which backups a verification covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyTarget {
    /// One backup: its id or a unique prefix of it.
    Id(String),
    /// The newest backup of each source.
    Latest,
    /// Every backup in the repository.
    All,
}

/// A restore, as every face asks for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreRequest {
    /// Backup id or a unique prefix of it.
    pub id: String,
    pub target: RestoreTarget,
    /// Create the target database (refuses an existing one).
    pub create: bool,
    /// Drop the archive's objects in the target first (needs `confirm`).
    pub clean: bool,
    /// The target database's name, typed by the user to allow overwriting.
    pub confirm: Option<String>,
    pub no_owner: bool,
    /// Skip `GRANT`/`REVOKE` only (`no_owner` skips them too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_privileges: bool,
    /// Parallel sessions; `None` for the default (CPUs, at least 2).
    pub jobs: Option<usize>,
    /// Only these tables or schemas (a partial restore).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<crate::core::select::Selection>,
    /// Restore the state at this time: a dump, then the changes captured after it
    /// (`core::pitr`); `id` may then be empty (the dump is chosen) when `source` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// The source of a point-in-time restore without a backup id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl RestoreRequest {
    /// Restore backup `id` into `target`, an existing empty database (the defaults: no
    /// create, no clean, owners and privileges kept, the default parallelism, everything).
    pub fn new(id: impl Into<String>, target: RestoreTarget) -> Self {
        RestoreRequest {
            id: id.into(),
            target,
            create: false,
            clean: false,
            confirm: None,
            no_owner: false,
            no_privileges: false,
            jobs: None,
            selection: None,
            at: None,
            source: None,
        }
    }

    /// A point-in-time restore of `source` (or of the backup `id`'s source) at `at`.
    pub fn at(mut self, at: Option<chrono::DateTime<chrono::Utc>>, source: Option<String>) -> Self {
        self.at = at;
        self.source = source;
        self
    }

    pub fn create(mut self, yes: bool) -> Self {
        self.create = yes;
        self
    }

    pub fn clean(mut self, yes: bool) -> Self {
        self.clean = yes;
        self
    }

    pub fn confirm(mut self, dbname: Option<String>) -> Self {
        self.confirm = dbname;
        self
    }

    pub fn no_owner(mut self, yes: bool) -> Self {
        self.no_owner = yes;
        self
    }

    pub fn no_privileges(mut self, yes: bool) -> Self {
        self.no_privileges = yes;
        self
    }

    pub fn jobs(mut self, jobs: Option<usize>) -> Self {
        self.jobs = jobs;
        self
    }

    pub fn selection(mut self, s: Option<crate::core::select::Selection>) -> Self {
        self.selection = s;
        self
    }
}

/// A restore target. Serializes as `host:port/dbname` only: never the password.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreTarget {
    pub conn: ConnInfo,
    /// Set when the target is a database on this configured source's server, reached with
    /// the source's credentials: a remote engine (the daemon) then connects with its own
    /// credentials for that source, so none cross the control API.
    pub on_source: Option<String>,
}

impl RestoreTarget {
    /// A database given by its connection details.
    pub fn url(conn: ConnInfo) -> Self {
        RestoreTarget {
            conn,
            on_source: None,
        }
    }

    /// The one rule for a target typed by a person (`restore --target`, `drill --target`, the
    /// console's URL field, the control API's `target`): the URL never carries a password —
    /// it would show in process lists, shell history and request logs. The password comes
    /// from `password`, a secret reference (`env:NAME` or `file:/path`, never the password
    /// itself), else, when `from_environment` (an engine that connects itself), from
    /// `PGPASSWORD`. Errors name the request's fields (`target`, `target_password`).
    pub fn typed(
        url: &str,
        password: Option<&str>,
        from_environment: bool,
    ) -> crate::error::Result<RestoreTarget> {
        let field = |field, message: String| crate::error::Error::Field { field, message };
        let mut conn = ConnInfo::parse(url).map_err(|m| field("target", m))?;
        Self::refuse_password(&conn)?;
        match password {
            Some(p) if !(p.starts_with("env:") || p.starts_with("file:")) => {
                return Err(field(
                    "target_password",
                    "takes env:NAME or file:/path, never the password itself".into(),
                ))
            }
            Some(p) => {
                conn.password = Some(
                    crate::secret::resolve_secret(p).map_err(|m| field("target_password", m))?,
                )
            }
            None if from_environment => {
                if let Ok(pw) = std::env::var("PGPASSWORD") {
                    conn.password = Some(crate::secret::Secret::new(pw));
                }
            }
            None => {}
        }
        Ok(RestoreTarget::url(conn))
    }

    /// A target URL must not carry a password (see [`RestoreTarget::typed`]); also what keeps
    /// one from crossing the control API.
    pub fn refuse_password(conn: &ConnInfo) -> crate::error::Result<()> {
        match conn.password {
            Some(_) => Err(crate::error::Error::Field {
                field: "target",
                message: "must not carry a password (it would show in process lists and logs): give it as a secret reference (env:NAME or file:/path), or PGPASSWORD; a daemon connects with its own credentials".into(),
            }),
            None => Ok(()),
        }
    }

    /// Database `conn.dbname` on `source`'s server.
    pub fn on_source(source: &str, conn: ConnInfo) -> Self {
        RestoreTarget {
            conn,
            on_source: Some(source.to_string()),
        }
    }
}

impl Serialize for RestoreTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.conn.display())
    }
}

impl Command {
    /// The history's name for this kind of job.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Backup { .. } => "backup",
            Command::Verify { .. } => "verify",
            Command::Restore(_) => "restore",
            Command::Prune { .. } => "prune",
            Command::Delete { .. } => "delete",
            Command::Drill(_) => "drill",
        }
    }

    /// Whether the operation answers cancellation itself (a drill writes an `interrupted`
    /// report and drops its scratch database before it ends): the runner then waits for it,
    /// up to a minute, instead of dropping it at once.
    pub fn ends_itself_on_cancel(&self) -> bool {
        matches!(self, Command::Drill(_))
    }

    /// A preview that changes nothing (a prune's dry run).
    pub fn is_preview(&self) -> bool {
        matches!(self, Command::Prune { dry_run: true })
    }

    /// Whether the job history records this job (a dry-run prune changes nothing: not a job
    /// worth a record).
    pub fn recorded(&self) -> bool {
        !matches!(self, Command::Prune { dry_run: true })
    }

    /// The source a job works on, when the command names one.
    pub fn source(&self) -> Option<&str> {
        match self {
            Command::Backup { source, .. } => Some(source),
            Command::Drill(d) => d.source.as_deref(),
            _ => None,
        }
    }

    /// Jobs with the same key never run side by side: the second waits (queued), and a third
    /// coalesces with the waiting one. Backups are single-flight per source; prunes (and
    /// deletes, which change what prune sees) per repository.
    pub fn flight_key(&self) -> Option<String> {
        match self {
            Command::Backup { source, .. } => Some(format!("backup/{source}")),
            Command::Prune { dry_run: false } | Command::Delete { .. } => Some("prune".into()),
            // Identical plans coalesce: a burst of previews reads the repository once.
            Command::Prune { dry_run: true } => Some("prune-plan".into()),
            // Verifications of one target run one at a time; a waiting one takes the higher
            // level of another asking for the same.
            Command::Verify { target, .. } => Some(format!(
                "verify/{}",
                match target {
                    VerifyTarget::Id(id) => id.as_str(),
                    VerifyTarget::Latest => "latest",
                    VerifyTarget::All => "all",
                }
            )),
            // One drill at a time: each restores a whole database.
            Command::Drill(_) => Some("drill".into()),
            _ => None,
        }
    }

    /// Merge `other` (same flight key) into this queued command: the stronger backup type and
    /// the higher verification level win. Returns false when the two cannot be merged.
    pub fn coalesce(&mut self, other: &Command) -> bool {
        match (self, other) {
            (
                Command::Backup { kind, verify, .. },
                Command::Backup {
                    kind: k2,
                    verify: v2,
                    ..
                },
            ) => {
                if strength(*k2) > strength(*kind) {
                    *kind = *k2;
                }
                *verify = (*verify).max(*v2);
                true
            }
            (Command::Prune { dry_run: a }, Command::Prune { dry_run: b }) => a == b,
            (
                Command::Verify { target, level },
                Command::Verify {
                    target: t2,
                    level: l2,
                },
            ) if target == t2 => {
                *level = (*level).max(*l2);
                true
            }
            _ => false,
        }
    }
}

/// Full beats differential beats incremental beats "whatever fits".
pub fn strength(k: Option<BackupType>) -> u8 {
    match k {
        Some(BackupType::Full) => 3,
        Some(BackupType::Differential) => 2,
        Some(BackupType::Incremental) => 1,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_backups_coalesce_to_the_stronger_type_and_level() {
        let mut a = Command::Backup {
            source: "w".into(),
            kind: Some(BackupType::Incremental),
            verify: None,
        };
        let b = Command::Backup {
            source: "w".into(),
            kind: Some(BackupType::Full),
            verify: Some(Level::Data),
        };
        assert!(a.coalesce(&b));
        let c = Command::Backup {
            source: "w".into(),
            kind: Some(BackupType::Differential),
            verify: Some(Level::Structure),
        };
        assert!(a.coalesce(&c));
        match a {
            Command::Backup { kind, verify, .. } => {
                assert_eq!(kind, Some(BackupType::Full));
                assert_eq!(verify, Some(Level::Data));
            }
            _ => unreachable!(),
        }
        assert!(
            !Command::Prune { dry_run: false }.coalesce(&Command::Delete {
                id: "x".into(),
                force: false,
                confirm: "x".into(),
            })
        );
    }

    /// The typed-target rule, once for every face: no password in the URL, a password only by
    /// reference, and the errors name the request's fields.
    #[test]
    fn a_typed_target_never_carries_a_password() {
        let e = RestoreTarget::typed("postgres://u:hunter2@db:5432/app", None, false)
            .expect_err("a password in the URL");
        assert_eq!(e.field(), Some("target"));
        assert!(!e.to_string().contains("hunter2"));
        let e = RestoreTarget::typed("postgres://u@db:5432/app", Some("hunter2"), false)
            .expect_err("a literal password");
        assert_eq!(e.field(), Some("target_password"));
        assert!(!e.to_string().contains("hunter2"));
        let e = RestoreTarget::typed("not a url", None, false).expect_err("not a URL");
        assert_eq!(e.field(), Some("target"));
        std::env::set_var("KEEPSAKE_TEST_TARGET_PW", "s3cret");
        let t = RestoreTarget::typed(
            "postgres://u@db:5432/app",
            Some("env:KEEPSAKE_TEST_TARGET_PW"),
            false,
        )
        .expect("by reference");
        assert_eq!(t.conn.password.as_ref().map(|p| p.expose()), Some("s3cret"));
        assert_eq!(t.conn.dbname, "app");
        assert!(t.on_source.is_none());
    }
}
