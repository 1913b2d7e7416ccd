//! The command line (docs/README.md; docs/architecture.md, "Inside the faces"): a thin face
//! of the engine. Each command builds an engine [`engine::Command`] (or asks a query), renders
//! what comes back for humans (tables, progress bars) or scripts (`--json`), and maps the
//! job's outcome to the exit code (`main.rs` turns the error's kind into it).

pub mod render;
pub mod tables;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::core::format::BackupType;
use crate::core::verify::Level;
use crate::engine::audit::AuditLog;
use crate::engine::{
    self, Command as Job, Engine, JobResult, RestoreRequest, RestoreTarget, VerifyTarget,
};
use crate::error::{Error, Result};
use crate::pg::conninfo::ConnInfo;
use crate::present;

#[derive(Debug, Parser)]
#[command(
    name = "keepsake",
    version,
    about = "Automated, encrypted, deduplicated PostgreSQL backups that prove they restore",
    after_help = "Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error, 3 verification found damage."
)]
pub struct Cli {
    /// Configuration file (default: $KEEPSAKE_CONFIG, else the XDG config dir's keepsake/config.toml)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run headless: back up each source on its [sources.schedule], verify each backup
    /// ([verification] after_backup, default data), apply [retention]; until SIGTERM/SIGINT
    #[arg(long)]
    pub daemon: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository described by the configuration
    Init,
    /// Same as --daemon: run schedules, verification, retention and alerts until SIGTERM
    Daemon,
    /// Write a new age identity (mode 0600) and print its recipient
    Keygen {
        /// Where to write the identity (refuses to overwrite; default: identity.txt in the
        /// XDG config dir, e.g. ~/.config/keepsake/identity.txt)
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Configuration commands
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Back up every source (or one): incremental when a full exists, else full
    Backup {
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[arg(long = "type", value_name = "full|incremental|differential")]
        kind: Option<BackupType>,
        /// Verify each backup right after it is taken (default level: data)
        #[arg(long, value_name = "LEVEL", num_args = 0..=1, require_equals = true, default_missing_value = "data")]
        verify: Option<Level>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Prove backups: structure (objects present), data (every chunk authenticated, archive
    /// complete), restore (restored into a scratch database and compared table by table)
    Verify {
        /// Backup id or a unique prefix of it
        #[arg(required_unless_present_any = ["latest", "all"], conflicts_with_all = ["latest", "all"])]
        id: Option<String>,
        /// The latest backup of each source
        #[arg(long, conflicts_with = "all")]
        latest: bool,
        /// Every backup in the repository
        #[arg(long)]
        all: bool,
        #[arg(long, default_value = "data", value_name = "structure|data|restore")]
        level: Level,
        #[arg(long)]
        json: bool,
    },
    /// List backups
    List {
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one backup's manifest summary
    Show {
        /// Backup id or a unique prefix of it
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a PostgreSQL database
    Restore {
        /// Backup id or a unique prefix of it (with --at and --source: chosen for you)
        id: Option<String>,
        /// Restore the state at this time (RFC 3339, e.g. 2026-12-07T17:00:00Z): the latest
        /// dump before it, then the changes captured after the dump up to the last commit at
        /// or before it (needs [sources.capture] and --create)
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// The source of a point-in-time restore (--at) without a backup id
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// postgres://user@host:port/dbname of the target (password: PGPASSWORD or a `env:`/`file:` value in --target-password)
        #[arg(long, value_name = "POSTGRES_URL")]
        target: String,
        /// Password of the target as env:NAME or file:/path (never inline)
        #[arg(long, value_name = "env:NAME|file:/path")]
        target_password: Option<String>,
        /// Create the target database (refuses an existing one)
        #[arg(long)]
        create: bool,
        /// Drop the archive's objects in the target first (needs --confirm DBNAME)
        #[arg(long)]
        clean: bool,
        /// Name the target database to allow restoring over data or over the backup's source
        #[arg(long, value_name = "DBNAME")]
        confirm: Option<String>,
        /// Do not restore ownership and privileges (for servers without the source's roles)
        #[arg(long)]
        no_owner: bool,
        /// Parallel sessions when restoring into a database created by --create
        /// (default: the number of CPUs, at least 2); other restores run as one transaction
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Restore only this table, with its data, indexes, constraints and owned sequences
        /// (repeatable). SQL names: unquoted parts fold to lower case, quoted ones keep case
        /// and spaces ('"Wedding Plans"."Guest List"'); no schema means public. Dependencies
        /// it needs but you did not name are listed, never pulled in
        #[arg(long, value_name = "SCHEMA.NAME")]
        table: Vec<String>,
        /// Restore every table of this schema, and the schema itself (repeatable)
        #[arg(long, value_name = "NAME")]
        schema: Vec<String>,
        /// With --table/--schema: only the rows and sequence values (the tables must exist)
        #[arg(long)]
        data_only: bool,
        /// Leave out this schema and whatever depends on it, named in the output (repeatable;
        /// for a hosted database's provider schemas, e.g. auth and storage on Supabase)
        #[arg(long, value_name = "NAME")]
        exclude_schema: Vec<String>,
        /// Restore the chosen tables into this new schema of the existing target database,
        /// beside the originals, which are never touched (the schema must not exist)
        #[arg(long, value_name = "NAME")]
        into_schema: Option<String>,
        /// Do not restore privileges (GRANT/REVOKE); --no-owner implies it
        #[arg(long)]
        no_privileges: bool,
    },
    /// Apply [retention]: forget backups the policy does not keep, then remove unreferenced
    /// packs in two phases (marked by one prune, deleted by a later one after the grace period)
    Prune {
        /// Show the plan and what would be removed; change nothing
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Per source: last backup and its age, last proven backup and level, RPO, restore time
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Job history: backups, verifies, restores, prunes (from the state directory)
    Jobs {
        #[arg(long)]
        json: bool,
    },
    /// Forget one backup (its packs are freed by a later prune); refuses the newest
    /// restore-verified backup of a source unless --force
    Delete {
        /// Backup id or a unique prefix of it
        id: String,
        /// The same id again, typed to confirm
        #[arg(long, value_name = "ID")]
        confirm: String,
        /// Also delete the newest restore-verified backup of its source
        #[arg(long)]
        force: bool,
    },
    /// Rehearse a recovery: restore a backup into a scratch database, check it (table facts,
    /// pg_amcheck, [[drill.checks]]), measure RTO and RPO, drop it, and store a report.
    /// Exit 0 passed, 3 a check failed or damage found, 1 could not run, 2 usage
    Drill {
        /// The source to drill (default: the only configured one)
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// This backup (id or unique prefix; default: the newest proven at data level or
        /// better)
        #[arg(long, value_name = "ID", conflicts_with = "at")]
        backup: Option<String>,
        /// The last backup finished at or before this time (RFC 3339)
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Where to create the scratch database: postgres://USER@HOST:PORT/NEWDB (must not
        /// exist; dropped at the end). Default: [verification] scratch_url, else the source's
        /// server, with a generated name
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// Password for --target: env:NAME or file:/path (never the password itself)
        #[arg(long, value_name = "SECRET", requires = "target")]
        target_password: Option<String>,
        /// Open the repository with this identity file instead of the configured one (the
        /// offline break-glass key)
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// Also write the report to FILE (JSON when it ends in .json, else Markdown)
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Print the report as JSON instead of Markdown
        #[arg(long)]
        json: bool,
    },
    /// Drill history from the repository: result, RTO and RPO of every drill
    Drills {
        /// One JSON array, one object per drill, newest last
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `keepsake completions bash > /etc/bash_completion.d/keepsake`
    Completions {
        #[arg(value_name = "bash|zsh|fish|elvish|powershell")]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (keepsake.1 and one per command) into DIR
    #[command(hide = true)]
    Manpages {
        #[arg(long, value_name = "DIR")]
        output: PathBuf,
    },
    /// The audit log: every change made through the control API or these commands, with who
    /// made it (a hash chain: `audit verify` checks it)
    Audit {
        /// Only lines at or after this time (RFC 3339, e.g. 2026-12-01T03:00:00Z)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Option<AuditCommand>,
    },
    /// Sources: `source check [NAME]` says what a source allows before a backup fails
    Source {
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// Control API tokens (for TCP callers)
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The operations console (same as no command): sources, backups, jobs, retention, log
    Console {
        /// Run the engine in this process even when the daemon answers on its socket (by
        /// default the console attaches to it: jobs then run in the daemon)
        #[arg(long)]
        local: bool,
    },
    /// Run the whole flow on a throwaway database and repository
    Demo {
        /// Keep the demo directory (cluster, repository, key) instead of removing it
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; exit 3 and name the first broken line if it is broken
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token: prints it once (first line), then the [[api.tokens]] entry to paste into
    /// the configuration (only its hash is stored)
    New {
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "viewer|operator|admin")]
        role: crate::model::Role,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Preflight: server and client versions, pooler, TLS, whether the role reads every table
    /// in full, the hosted platform and what a restore onto plain PostgreSQL needs, logical
    /// replication. Changes nothing; exit 1 when a backup would fail or miss rows
    Check {
        /// One source (default: every source)
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration; change nothing
    Check,
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
fn out(s: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing output", e)),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| Error::Other(e.to_string()))
}

impl Cli {
    /// The console: no command, or `console`.
    pub fn is_console(&self) -> bool {
        !self.daemon && matches!(self.command, None | Some(Command::Console { .. }))
    }

    /// `console --local`: never attach to the daemon.
    pub fn console_local(&self) -> bool {
        matches!(self.command, Some(Command::Console { local: true }))
    }

    /// `--daemon` or `daemon`.
    pub fn is_daemon(&self) -> bool {
        self.daemon || matches!(self.command, Some(Command::Daemon))
    }
}

/// The configuration this command line names (`--config`, `$KEEPSAKE_CONFIG`, XDG).
pub fn load_config(cli: &Cli) -> Result<Config> {
    let path = config::locate(cli.config.as_deref())?;
    config::load(&path)
}

/// Run one command (the daemon, the demo and the console are chosen in `main.rs`).
pub async fn run(cli: Cli) -> Result<()> {
    let Some(command) = &cli.command else {
        return Err(Error::Other(
            "internal: the console is chosen in main.rs".into(),
        ));
    };
    match command {
        Command::Keygen { output } => keygen(output.as_deref()),
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(&load_config(&cli)?),
        Command::Init => {
            let c = load_config(&cli)?;
            let repo = engine::init(&c).await?;
            let fp = repo.key().fingerprint();
            out(&format!(
                "created repository {} at {} (format v{})\nmaster key fingerprint {fp}\n",
                repo.config.id, c.repository.url, repo.config.version
            ))?;
            // Pinned in the configuration: a key object planted later is refused.
            match config::write_key_fingerprint(&c.path, &fp) {
                Ok(()) => out(&format!(
                    "pinned in {}: [encryption] repository_key_fingerprint = \"{fp}\"\n",
                    c.path.display()
                )),
                Err(e) => out(&format!(
                    "could not write it into {} ({e}): add to its [encryption] table\n  repository_key_fingerprint = \"{fp}\"\n",
                    c.path.display()
                )),
            }
        }
        Command::Backup {
            source,
            kind,
            verify,
            json: as_json,
        } => {
            let c = load_config(&cli)?;
            backup(&Engine::new(c), source.as_deref(), *kind, *verify, *as_json).await
        }
        Command::Verify {
            id,
            latest: _,
            all,
            level,
            json: as_json,
        } => {
            let target = match (id, all) {
                (Some(id), _) => VerifyTarget::Id(id.clone()),
                (None, true) => VerifyTarget::All,
                (None, false) => VerifyTarget::Latest,
            };
            verify(&Engine::new(load_config(&cli)?), target, *level, *as_json).await
        }
        Command::List {
            source,
            json: as_json,
        } => {
            list(
                &Engine::new(load_config(&cli)?),
                source.as_deref(),
                *as_json,
            )
            .await
        }
        Command::Show { id, json: as_json } => {
            let e = Engine::new(load_config(&cli)?);
            let repo = e.repo().await?;
            let m = repo.manifest(id).await?;
            let records = crate::core::verify::records(&repo).await?;
            let recs = records.get(&m.id);
            if *as_json {
                return out(&json(&present::show_json(&m, recs))?);
            }
            out(&tables::show_text(&m, recs))
        }
        Command::Restore {
            id,
            at,
            source,
            target,
            target_password,
            create,
            clean,
            confirm,
            no_owner,
            no_privileges,
            jobs,
            table,
            schema,
            exclude_schema,
            into_schema,
            data_only,
        } => {
            let c = load_config(&cli)?;
            let selection = crate::core::select::Names {
                tables: table,
                schemas: schema,
                exclude_schemas: exclude_schema,
                data_only: *data_only,
                into_schema: into_schema.as_deref(),
            }
            .selection()
            .map_err(|(field, message)| flag_words(Error::Field { field, message }))?;
            let at = at.as_deref().map(parse_at).transpose()?;
            if id.is_none() && at.is_none() {
                return Err(Error::Usage(
                    "name the backup to restore (its id, as `keepsake list` shows it), or a point in time with --at TIME --source NAME".into(),
                ));
            }
            if source.is_some() && at.is_none() {
                return Err(Error::Usage(
                    "--source chooses the source of a point-in-time restore: add --at TIME".into(),
                ));
            }
            let req = RestoreRequest::new(
                id.clone().unwrap_or_default(),
                RestoreTarget::url(restore_target(target, target_password.as_deref())?),
            )
            .at(at, source.clone())
            .create(*create)
            .clean(*clean)
            .confirm(confirm.clone())
            .no_owner(*no_owner)
            .no_privileges(*no_privileges)
            .jobs(*jobs)
            .selection(selection.clone());
            restore(&Engine::new(c), req).await
        }
        Command::Prune {
            dry_run,
            json: as_json,
        } => {
            let c = load_config(&cli)?;
            prune(&Engine::new(c), *dry_run, *as_json).await
        }
        Command::Delete { id, confirm, force } => {
            let c = load_config(&cli)?;
            delete(&Engine::new(c), id, confirm, *force).await
        }
        Command::Drill {
            source,
            backup,
            at,
            target,
            target_password,
            identity,
            report,
            json: as_json,
        } => {
            let c = load_config(&cli)?;
            let at = at.as_deref().map(parse_at).transpose()?;
            let target = match target {
                Some(t) => Some(RestoreTarget::url(restore_target(
                    t,
                    target_password.as_deref(),
                )?)),
                None => None,
            };
            if let Some(i) = identity {
                if let Err(e) = std::fs::metadata(i) {
                    return Err(Error::Usage(format!("--identity {}: {e}", i.display())));
                }
            }
            let req = crate::engine::DrillRequest {
                source: source.clone(),
                backup: backup.clone(),
                at,
                target,
                identity: identity.clone(),
                actor: crate::engine::audit::current_user(),
            };
            drill(&Engine::new(c), req, report.as_deref(), *as_json).await
        }
        Command::Drills { json: as_json } => {
            let e = Engine::new(load_config(&cli)?);
            let repo = e.repo().await?;
            let (reports, bad) = crate::core::drill::list(&repo).await?;
            if *as_json {
                out(&json(&reports)?)?;
            } else {
                out(&tables::drills_table(&reports))?;
            }
            for (k, why) in &bad {
                eprintln!("unreadable drill report {k}: {why}");
            }
            Ok(())
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "keepsake", &mut buf);
            out(&String::from_utf8_lossy(&buf))
        }
        Command::Manpages { output } => manpages(output),
        Command::Status { json: as_json } => {
            let st = Engine::new(load_config(&cli)?).status().await?;
            if *as_json {
                return out(&json(&st)?);
            }
            out(&tables::status_table(&st))
        }
        Command::Jobs { json: as_json } => {
            let jobs = Engine::new(load_config(&cli)?).history();
            if *as_json {
                return out(&json(&jobs)?);
            }
            out(&tables::jobs_table(&jobs))
        }
        Command::Token {
            command: TokenCommand::New { name, role },
        } => token_new(name, *role),
        Command::Source {
            command:
                SourceCommand::Check {
                    name,
                    json: as_json,
                },
        } => source_check(&load_config(&cli)?, name.as_deref(), *as_json).await,
        Command::Audit {
            since,
            json: as_json,
            command,
        } => {
            let c = load_config(&cli)?;
            let log = AuditLog::new(&engine::state_dir(&c)?);
            match command {
                Some(AuditCommand::Verify) => audit_verify(&log),
                None => audit_show(&log, since.as_deref(), *as_json),
            }
        }
        Command::Console { .. } | Command::Daemon | Command::Demo { .. } => Err(Error::Other(
            "internal: the daemon, the demo and the console are chosen in main.rs".into(),
        )),
    }
}

async fn source_check(c: &Config, name: Option<&str>, as_json: bool) -> Result<()> {
    let sources: Vec<&crate::config::SourceConfig> = match name {
        Some(n) => vec![c.source(n)?],
        None => c.sources.iter().collect(),
    };
    if sources.is_empty() {
        return Err(Error::Usage(
            "no [[sources]] in the configuration: nothing to check".into(),
        ));
    }
    let checks =
        futures::future::join_all(sources.iter().map(|s| engine::preflight::check(c, s))).await;
    if as_json {
        out(&json(&checks)?)?;
    } else {
        for ch in &checks {
            out(&present::source_check_text(ch))?;
        }
    }
    let bad: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.source.as_str())
        .collect();
    match bad.is_empty() {
        true => Ok(()),
        false => Err(Error::Other(format!(
            "not ready for a backup: {}",
            bad.join(", ")
        ))),
    }
}

fn config_check(c: &Config) -> Result<()> {
    out(&format!(
        "{}: valid ({} source{}, repository {}, {} recipient{}, identity {})\n",
        c.path.display(),
        c.sources.len(),
        if c.sources.len() == 1 { "" } else { "s" },
        c.repository.url,
        c.recipients.0.len(),
        if c.recipients.0.len() == 1 { "" } else { "s" },
        c.identity_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "not set".into())
    ))
}

/// `--target` and `--target-password`: never a password on the command line.
/// `--target` and `--target-password`, by the engine's typed-target rule.
fn restore_target(target: &str, password: Option<&str>) -> Result<ConnInfo> {
    RestoreTarget::typed(target, password, true)
        .map(|t| t.conn)
        .map_err(flag_words)
}

/// A request-field error as this face names the field: its flag (`target_password` →
/// `--target-password`), and the other fields its message names as flags too.
fn flag_words(e: Error) -> Error {
    match e {
        Error::Field { field, message } => Error::Usage(format!(
            "--{} {}",
            render::flag_of(field),
            render::in_flags(&message)
        )),
        e => e,
    }
}

/// `keepsake backup`: every source (or one), one job each; a failed source does not stop the
/// others, Ctrl-C stops all.
async fn backup(
    e: &Engine,
    source: Option<&str>,
    kind: Option<BackupType>,
    verify: Option<Level>,
    as_json: bool,
) -> Result<()> {
    let c = e.config();
    let names: Vec<String> = match source {
        Some(s) => vec![c.source(s)?.name.clone()],
        None => c.sources.iter().map(|s| s.name.clone()).collect(),
    };
    if names.is_empty() {
        return Err(Error::Usage(format!(
            "{} has no [[sources]]: add one (see config.example.toml)",
            c.path.display()
        )));
    }
    let mut failures = Vec::new();
    let mut worst = 0;
    let mut done = Vec::new();
    for name in &names {
        let o = render::run(
            e,
            Job::Backup {
                source: name.clone(),
                kind,
                verify,
            },
        )
        .await?;
        if o.status == engine::history::JobStatus::Cancelled {
            return Err(render::error_of(&o));
        }
        if let Some(JobResult::Backup {
            backup,
            verification,
        }) = &o.result
        {
            if !as_json {
                out(&present::backup_summary(backup))?;
                if let Some(v) = verification {
                    out(&present::verify_text(v))?;
                }
            }
            done.push(backup.clone());
        }
        if o.exit_code != 0 {
            eprintln!("error: {}", o.error.as_deref().unwrap_or("backup failed"));
            failures.push(name.clone());
            worst = worst.max(o.exit_code);
        }
    }
    if as_json {
        out(&json(&done)?)?;
    }
    match worst {
        0 => Ok(()),
        3 => Err(Error::Damage(format!(
            "verification after backup found damage in: {}",
            failures.join(", ")
        ))),
        // A configuration that cannot work (a source behind a transaction pooler): exit 2.
        2 => Err(Error::Usage(format!(
            "backup refused for: {}",
            failures.join(", ")
        ))),
        _ => Err(Error::Other(format!(
            "backup failed for: {}",
            failures.join(", ")
        ))),
    }
}

async fn verify(e: &Engine, target: VerifyTarget, level: Level, as_json: bool) -> Result<()> {
    let o = render::run(e, Job::Verify { target, level }).await?;
    if let Some(JobResult::Verify {
        records,
        unreadable,
    }) = &o.result
    {
        for (id, why) in unreadable {
            eprintln!("damaged: backup {id}: {why}");
        }
        if as_json {
            out(&json(records)?)?;
        } else {
            for r in records {
                out(&present::verify_text(r))?;
            }
        }
    }
    match o.exit_code {
        0 => Ok(()),
        _ => Err(render::error_of(&o)),
    }
}

async fn list(e: &Engine, source: Option<&str>, as_json: bool) -> Result<()> {
    let (rows, bad) = e.list(source).await?;
    if as_json {
        out(&json(&rows)?)?;
    } else {
        out(&tables::list_table(&rows))?;
    }
    if bad.is_empty() {
        return Ok(());
    }
    for (id, e) in &bad {
        eprintln!("damaged: backup {id}: {e}");
    }
    Err(Error::Damage(format!(
        "{} backup manifest(s) cannot be read; the backups listed are intact",
        bad.len()
    )))
}

/// `keepsake manpages --output DIR`: keepsake.1 and keepsake-COMMAND.1 for every visible
/// command (subcommands of subcommands too: keepsake-config-check.1).
fn manpages(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut written = Vec::new();
    fn walk(
        cmd: &clap::Command,
        name: String,
        dir: &std::path::Path,
        written: &mut Vec<String>,
    ) -> Result<()> {
        let cmd = cmd.clone().name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut buf)
            .map_err(|e| Error::io("rendering a man page", e))?;
        let file = dir.join(format!("{name}.1"));
        std::fs::write(&file, buf)
            .map_err(|e| Error::io(format!("writing {}", file.display()), e))?;
        written.push(file.display().to_string());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, format!("{name}-{}", sub.get_name()), dir, written)?;
        }
        Ok(())
    }
    walk(&cmd, "keepsake".into(), dir, &mut written)?;
    out(&format!("{}\n", written.join("\n")))
}

/// `keepsake drill`: run it with its steps shown live, print the report, write `--report`.
async fn drill(
    e: &Engine,
    req: crate::engine::DrillRequest,
    report: Option<&std::path::Path>,
    as_json: bool,
) -> Result<()> {
    let o = render::run(e, Job::Drill(req)).await?;
    let Some(JobResult::Drill(rep)) = &o.result else {
        return Err(render::error_of(&o));
    };
    if let Some(path) = report {
        let text = if path.extension().is_some_and(|x| x == "json") {
            json(rep)?
        } else {
            rep.markdown()
        };
        std::fs::write(path, text)
            .map_err(|e| Error::io(format!("writing the report to {}", path.display()), e))?;
    }
    if as_json {
        out(&json(rep)?)?;
    } else {
        out(&rep.markdown())?;
    }
    match o.exit_code {
        0 => Ok(()),
        _ => Err(render::error_of(&o)),
    }
}

async fn restore(e: &Engine, req: RestoreRequest) -> Result<()> {
    let o = render::run(e, Job::Restore(req)).await?;
    match &o.result {
        Some(JobResult::Restore {
            backup_id,
            target,
            bytes,
            duration_ms,
            tables,
            skipped,
            needs,
            checked,
            notes,
            ..
        }) if o.exit_code == 0 => {
            let mut s = String::new();
            for n in notes {
                s.push_str(&format!("note: {n}\n"));
            }
            match tables.len() {
                0 => {}
                n if n > 20 => s.push_str(&format!("restored {n} tables\n")),
                _ => s.push_str(&format!("restored tables: {}\n", tables.join(", "))),
            }
            if *checked > 0 {
                s.push_str(&format!(
                    "checked: {checked} table{} match the row counts and content digests recorded at backup time\n",
                    if *checked == 1 { "" } else { "s" }
                ));
            }
            for k in skipped {
                s.push_str(&format!("skipped: {k}\n"));
            }
            if !needs.is_empty() {
                s.push_str(&format!(
                    "not restored, used by those tables (the target has them): {}\n",
                    needs.join(", ")
                ));
            }
            s.push_str(&format!(
                "restored backup {backup_id} into {target} ({}) in {:.1}s\n",
                present::human_bytes(*bytes),
                *duration_ms as f64 / 1000.0
            ));
            out(&s)
        }
        _ => Err(render::error_of(&o)),
    }
}

async fn prune(e: &Engine, dry_run: bool, as_json: bool) -> Result<()> {
    let o = render::run(e, Job::Prune { dry_run }).await?;
    let Some(JobResult::Prune(r)) = &o.result else {
        return Err(render::error_of(&o));
    };
    if as_json {
        out(&json(r)?)?;
    } else {
        out(&tables::prune_text(r))?;
    }
    match o.exit_code {
        0 => Ok(()),
        _ => Err(render::error_of(&o)),
    }
}

async fn delete(e: &Engine, id: &str, confirm: &str, force: bool) -> Result<()> {
    let job = Job::Delete {
        id: id.to_string(),
        force,
        confirm: confirm.to_string(),
    };
    let o = render::run(e, job).await?;
    match &o.result {
        Some(JobResult::Delete { id, source }) if o.exit_code == 0 => out(&format!(
            "deleted backup {id} of {source}; its packs are freed by the next prune\n"
        )),
        _ => Err(render::error_of(&o)),
    }
}

/// `token new`: the token alone on the first line (for `| head -1`), then the entry to paste.
fn token_new(name: &str, role: crate::model::Role) -> Result<()> {
    if name.trim().is_empty() || name.contains(['"', '\\', '\n']) {
        return Err(Error::Usage(
            "--name must be a plain non-empty name (no quotes or backslashes)".into(),
        ));
    }
    let (token, hash) = crate::secret::new_token();
    out(&format!(
        "{token}\n\n# Paste into the configuration ([api] section), then reload the daemon (SIGHUP).\n# The token above is shown only now; only its hash is stored.\n[[api.tokens]]\nname = \"{name}\"\nrole = \"{}\"\nhash = \"{hash}\"\n",
        role.as_str()
    ))
}

fn audit_show(log: &AuditLog, since: Option<&str>, as_json: bool) -> Result<()> {
    let since = since
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    Error::Usage(format!(
                        "--since {s}: expected RFC 3339 such as 2026-12-01T03:00:00Z"
                    ))
                })
        })
        .transpose()?;
    let lines = log.read(since)?;
    if as_json {
        return out(&json(&lines)?);
    }
    out(&tables::audit_table(&lines))
}

fn audit_verify(log: &AuditLog) -> Result<()> {
    match log.verify()? {
        Ok(n) => out(&format!(
            "{}: the chain of {n} line{} is intact\n",
            log.path().display(),
            if n == 1 { "" } else { "s" }
        )),
        Err((line, why)) => Err(Error::Damage(format!(
            "{} line {line}: {why}; the lines before it are intact",
            log.path().display()
        ))),
    }
}

/// `keygen`: default output in the XDG config dir.
fn keygen(output: Option<&std::path::Path>) -> Result<()> {
    let path = match output {
        Some(p) => p.to_path_buf(),
        None => {
            let dirs = directories::ProjectDirs::from("", "", "keepsake")
                .ok_or_else(|| Error::Usage("no home directory: pass --output FILE".into()))?;
            std::fs::create_dir_all(dirs.config_dir())
                .map_err(|e| Error::io(format!("creating {}", dirs.config_dir().display()), e))?;
            dirs.config_dir().join("identity.txt")
        }
    };
    write_identity(&path)
}

fn write_identity(output: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let (text, recipient) = crate::core::crypto::generate_identity();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage(format!(
                    "{} already exists: keygen never overwrites a key",
                    output.display()
                ))
            } else {
                Error::io(format!("creating {}", output.display()), e)
            }
        })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", output.display()), e))?;
    eprintln!("wrote identity to {} (mode 0600); keep a copy offline — without it backups cannot be restored", output.display());
    out(&format!("{recipient}\n"))
}

/// `--at TIME`: RFC 3339 (`2026-12-07T17:00:00Z`), as a UTC time.
fn parse_at(t: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&chrono::Utc))
        .map_err(|_| {
            Error::Usage(format!(
                "--at {t:?} is not an RFC 3339 time, e.g. 2026-12-07T17:00:00Z"
            ))
        })
}
