//! The command line (DESIGN.md §7): parsing, and rendering engine results for humans
//! (tables, progress bars) and scripts (`--json`). Exit codes are decided in `main.rs` from
//! the error's kind.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::core::format::{BackupType, Manifest};
use crate::core::progress::{Progress, ProgressSink};
use crate::core::restore::RestoreOptions;
use crate::core::verify::{Level, VerifyRecord};
use crate::engine;
use crate::error::{Error, Result};
use crate::pg::conninfo::ConnInfo;

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
        /// Backup id or a unique prefix of it
        id: String,
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
    /// Run the whole flow on a throwaway database and repository
    Demo {
        /// Keep the demo directory (cluster, repository, key) instead of removing it
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration; change nothing
    Check,
}

/// Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise.
pub struct CliProgress {
    bar: Option<indicatif::ProgressBar>,
    last: Mutex<Instant>,
}

impl CliProgress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        CliProgress {
            bar,
            last: Mutex::new(Instant::now()),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Default for CliProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressSink for CliProgress {
    fn report(&self, p: &Progress) {
        match &self.bar {
            Some(b) => {
                b.set_prefix(format!("{} {}", p.operation, p.source));
                b.set_length(p.bytes_expected.unwrap_or(0).max(p.bytes_done));
                b.set_position(p.bytes_done);
                let retries = if p.storage_retries > 0 {
                    format!(" ({} storage retries)", p.storage_retries)
                } else {
                    String::new()
                };
                b.set_message(match &p.current_table {
                    Some(t) => format!("{} {t}{retries}", p.phase.as_str()),
                    None => format!("{}{retries}", p.phase.as_str()),
                });
            }
            None => {
                let Ok(mut last) = self.last.lock() else {
                    return;
                };
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    eprintln!(
                        "{} {}: {} {}{} at {}/s{}{}",
                        p.operation,
                        p.source,
                        p.phase.as_str(),
                        human_bytes(p.bytes_done),
                        p.bytes_expected
                            .map(|e| format!(" of ~{}", human_bytes(e)))
                            .unwrap_or_default(),
                        human_bytes(p.rate as u64),
                        p.current_table
                            .as_ref()
                            .map(|t| format!(", table {t}"))
                            .unwrap_or_default(),
                        if p.storage_retries > 0 {
                            format!(", {} storage retries", p.storage_retries)
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
    }
}

pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
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

/// `daemon` is dispatched before the match (as `--daemon`).
fn unreachable_daemon() -> Result<()> {
    Err(Error::Other("internal: daemon dispatch".into()))
}

impl Cli {
    /// `--daemon` or `daemon`.
    pub fn is_daemon(&self) -> bool {
        self.daemon || matches!(self.command, Some(Command::Daemon))
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    let path = config::locate(cli.config.as_deref())?;
    config::load(&path)
}

/// Run the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    if cli.is_daemon() {
        let path = config::locate(cli.config.as_deref())?;
        return crate::daemon::run(&path).await;
    }
    let Some(command) = &cli.command else {
        return Err(Error::Usage(
            "the console is not available in this build yet: run `keepsake --help` for the commands, or `keepsake demo`".into(),
        ));
    };
    match command {
        Command::Keygen { output } => {
            let path = match output {
                Some(p) => p.clone(),
                None => {
                    let dirs =
                        directories::ProjectDirs::from("", "", "keepsake").ok_or_else(|| {
                            Error::Usage("no home directory: pass --output FILE".into())
                        })?;
                    std::fs::create_dir_all(dirs.config_dir()).map_err(|e| {
                        Error::io(format!("creating {}", dirs.config_dir().display()), e)
                    })?;
                    dirs.config_dir().join("identity.txt")
                }
            };
            keygen(&path)
        }
        Command::Demo { keep } => crate::demo::run(*keep).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let c = load_config(&cli)?;
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
        Command::Prune {
            dry_run,
            json: as_json,
        } => {
            let c = load_config(&cli)?;
            let repo = engine::open(&c).await?;
            let hist = c.history().filter(|_| !*dry_run);
            let job = hist.as_ref().map(|h| h.start("prune", None));
            let r = crate::core::prune::prune(&repo, &c.retention, *dry_run).await;
            if let (Some(h), Some(j)) = (&hist, job) {
                let (status, err) = job_outcome(&r);
                h.finish(j, status, err);
            }
            let r = r?;
            if *as_json {
                out(&json(&r)?)?;
                return match &r.gc_skipped {
                    Some(why) => Err(Error::Damage(format!("prune removed no pack: {why}"))),
                    None => Ok(()),
                };
            }
            let mut s = String::new();
            for d in &r.plan {
                s.push_str(&format!(
                    "{} {:<24} {:<14} {}\n",
                    if d.keep { "keep  " } else { "forget" },
                    d.id,
                    d.source,
                    d.reasons.join("; ")
                ));
            }
            let verb = if *dry_run { "would " } else { "" };
            s.push_str(&format!(
                "{}forget {} backup(s); {}mark {} unreferenced pack(s); {}delete {} pack(s) ({}); {} marked pack(s) wait{}\n",
                verb,
                r.forgotten.len(),
                verb,
                r.marked.len(),
                verb,
                r.deleted_packs.len(),
                human_bytes(r.deleted_bytes),
                r.waiting.len(),
                if r.stale_temporaries > 0 { format!("; removed {} stale temporary file(s)", r.stale_temporaries) } else { String::new() }
            ));
            if let Some(why) = &r.gc_skipped {
                s.push_str(&format!("packs kept: {why}\n"));
            }
            out(&s)?;
            match &r.gc_skipped {
                // Unreadable manifests are damage: say so in the exit code too.
                Some(why) => Err(Error::Damage(format!(
                    "prune removed no pack: {why}; run `keepsake list` to see which"
                ))),
                None => Ok(()),
            }
        }
        Command::Status { json: as_json } => {
            let c = load_config(&cli)?;
            let repo = engine::open(&c).await?;
            let st = engine::status(&c, &repo).await?;
            if *as_json {
                return out(&json(&st)?);
            }
            out(&status_table(&st))
        }
        Command::Jobs { json: as_json } => {
            let c = load_config(&cli)?;
            let jobs = c.history().map(|h| h.jobs()).unwrap_or_default();
            if *as_json {
                return out(&json(&jobs)?);
            }
            out(&jobs_table(&jobs))
        }
        Command::Daemon => unreachable_daemon(),
        Command::Init => {
            let c = load_config(&cli)?;
            let repo = engine::init(&c).await?;
            out(&format!(
                "created repository {} at {} (format v{})\n",
                repo.config.id, c.repository.url, repo.config.version
            ))
        }
        Command::Verify {
            id,
            latest: _,
            all,
            level,
            json: as_json,
        } => {
            let c = load_config(&cli)?;
            let repo = engine::open(&c).await?;
            let mut damaged_manifests = 0;
            let ids: Vec<String> = if let Some(id) = id {
                vec![repo.resolve_id(id).await?]
            } else {
                let (ms, bad) = repo.manifests_lenient().await?;
                for (id, e) in &bad {
                    eprintln!("damaged: backup {id}: {e}");
                }
                damaged_manifests = bad.len();
                if *all {
                    ms.iter().map(|m| m.id.clone()).collect()
                } else {
                    let mut last: std::collections::BTreeMap<&str, &str> = Default::default();
                    for m in &ms {
                        last.insert(&m.source.name, &m.id);
                    }
                    last.values().map(|s| s.to_string()).collect()
                }
            };
            if ids.is_empty() && damaged_manifests == 0 {
                return Err(Error::Usage(
                    "no backups to verify: run `keepsake backup` first".into(),
                ));
            }
            let recs = if *all && *level == Level::Data {
                // Each pack read once for the whole repository.
                let progress = CliProgress::new();
                let opts = engine::verify_options(&c, "", None);
                let recs =
                    crate::core::verify::verify_all_data(repo.clone(), &opts, &progress).await?;
                progress.finish();
                if !*as_json {
                    for r in &recs {
                        out(&verify_text(r))?;
                    }
                }
                recs
            } else {
                verify_many(&c, &repo, &ids, *level, *as_json).await?
            };
            if *as_json {
                out(&json(&recs)?)?;
            }
            let bad: Vec<&VerifyRecord> = recs.iter().filter(|r| !r.problems.is_empty()).collect();
            let unproven: Vec<&VerifyRecord> = recs
                .iter()
                .filter(|r| r.problems.is_empty() && !r.ok)
                .collect();
            if bad.is_empty() && damaged_manifests == 0 && !unproven.is_empty() {
                Err(Error::Other(format!(
                    "no damage found, but {} backup(s) could not be proven at {} level: {}",
                    unproven.len(),
                    level.as_str(),
                    unproven
                        .iter()
                        .map(|r| r.backup_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            } else if bad.is_empty() && damaged_manifests == 0 {
                Ok(())
            } else {
                Err(Error::Damage(format!(
                    "verification found damage: {} of {} backup(s) failed{}{}",
                    bad.len(),
                    recs.len(),
                    if bad.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({})",
                            bad.iter()
                                .map(|r| r.backup_id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    if damaged_manifests > 0 {
                        format!("; {damaged_manifests} manifest(s) unreadable")
                    } else {
                        String::new()
                    }
                )))
            }
        }
        Command::Backup {
            source,
            kind,
            verify,
            json: as_json,
        } => {
            let c = load_config(&cli)?;
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
            let repo = engine::open(&c).await?;
            let mut failures = Vec::new();
            let mut damaged = Vec::new();
            let mut done = Vec::new();
            for name in &names {
                let progress = CliProgress::new();
                let hist = c.history();
                let job = hist.as_ref().map(|h| h.start("backup", Some(name)));
                let r = tokio::select! {
                    r = engine::backup_source(&c, &repo, name, *kind, &progress) => r,
                    _ = tokio::signal::ctrl_c() => Err(Error::Cancelled(format!("backup of {name} interrupted; nothing was committed"))),
                };
                progress.finish();
                if let (Some(h), Some(mut j)) = (&hist, job) {
                    let (status, err) = job_outcome(&r);
                    if let Ok(m) = &r {
                        j.backup_id = Some(m.id.clone());
                        j.logical_bytes = Some(m.logical_bytes);
                        j.stored_bytes = Some(m.stored_bytes);
                    }
                    h.finish(j, status, err);
                }
                match r {
                    Ok(m) => {
                        if !as_json {
                            out(&backup_summary(&m))?;
                        }
                        let mut row = engine::BackupRow::from(&m);
                        if let Some(level) = verify {
                            let recs = match verify_many(
                                &c,
                                &repo,
                                std::slice::from_ref(&m.id),
                                *level,
                                true,
                            )
                            .await
                            {
                                Ok(r) => r,
                                Err(e @ Error::Cancelled(_)) => return Err(e),
                                Err(e) => {
                                    eprintln!("error: verifying {}: {e}", m.id);
                                    failures.push(format!("{name} (verification could not run)"));
                                    Vec::new()
                                }
                            };
                            if let Some(rec) = recs.first() {
                                if !as_json {
                                    out(&verify_text(rec))?;
                                }
                                row = engine::BackupRow::with_records(&m, Some(&recs));
                                if !rec.ok {
                                    damaged.push(m.id.clone());
                                }
                            }
                        }
                        done.push(row);
                    }
                    Err(e @ Error::Cancelled(_)) => return Err(e),
                    Err(e) => {
                        eprintln!("error: {e}");
                        failures.push(name.clone());
                    }
                }
            }
            if *as_json {
                out(&json(&done)?)?;
            }
            if !failures.is_empty() {
                Err(Error::Other(format!(
                    "backup failed for: {}",
                    failures.join(", ")
                )))
            } else if !damaged.is_empty() {
                Err(Error::Damage(format!(
                    "verification after backup found damage in: {}",
                    damaged.join(", ")
                )))
            } else {
                Ok(())
            }
        }
        Command::List {
            source,
            json: as_json,
        } => {
            let c = load_config(&cli)?;
            let repo = engine::open(&c).await?;
            let (rows, bad) = engine::list(&repo, source.as_deref()).await?;
            if *as_json {
                out(&json(&rows)?)?;
            } else {
                out(&list_table(&rows))?;
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
        Command::Show { id, json: as_json } => {
            let c = load_config(&cli)?;
            let repo = engine::open(&c).await?;
            let m = repo.manifest(id).await?;
            let records = crate::core::verify::records(&repo).await?;
            let recs = records.get(&m.id);
            if *as_json {
                return out(&json(&show_json(&m, recs))?);
            }
            out(&show_text(&m, recs))
        }
        Command::Restore {
            id,
            target,
            target_password,
            create,
            clean,
            confirm,
            no_owner,
            jobs,
        } => {
            let c = load_config(&cli)?;
            let mut ci =
                ConnInfo::parse(target).map_err(|m| Error::Usage(format!("--target: {m}")))?;
            if ci.password.is_some() {
                return Err(Error::Usage(
                    "--target must not carry a password (it would be visible in the process list): use --target-password env:NAME or file:/path, or PGPASSWORD".into(),
                ));
            }
            if let Some(p) = target_password {
                if !(p.starts_with("env:") || p.starts_with("file:")) {
                    return Err(Error::Usage(
                        "--target-password takes env:NAME or file:/path, never the password itself"
                            .into(),
                    ));
                }
                ci.password = Some(
                    config::resolve_secret(p)
                        .map_err(|m| Error::Usage(format!("--target-password: {m}")))?,
                );
            } else if let Ok(pw) = std::env::var("PGPASSWORD") {
                ci.password = Some(config::Secret::new(pw));
            }
            if *clean && confirm.is_none() {
                return Err(Error::Usage(format!(
                    "--clean replaces objects in the target: add --confirm {}",
                    ci.dbname
                )));
            }
            let repo = engine::open(&c).await?;
            let mut opts = RestoreOptions::new(ci.clone());
            opts.create = *create;
            opts.clean = *clean;
            opts.confirm = confirm.clone();
            opts.no_owner = *no_owner;
            if let Some(j) = jobs {
                if *j == 0 {
                    return Err(Error::Usage("--jobs must be at least 1".into()));
                }
                opts.jobs = *j;
            }
            let progress = CliProgress::new();
            let hist = c.history();
            let mut job = hist.as_ref().map(|h| h.start("restore", None));
            if let Some(j) = &mut job {
                j.backup_id = Some(id.clone());
            }
            let r = tokio::select! {
                r = engine::restore(&c, repo, id, opts, &progress) => r,
                _ = tokio::signal::ctrl_c() => {
                    if *create {
                        crate::core::restore::drop_database(&ci).await;
                    }
                    Err(Error::Cancelled("restore interrupted; the target transaction was rolled back".into()))
                }
            };
            progress.finish();
            if let (Some(h), Some(j)) = (&hist, job) {
                let (status, err) = job_outcome(&r);
                h.finish(j, status, err);
            }
            let o = r?;
            out(&format!(
                "restored backup {} into {} ({}) in {:.1}s\n",
                o.backup_id,
                ci.display(),
                human_bytes(o.bytes),
                o.duration.as_secs_f64()
            ))
        }
    }
}

/// Verify `ids` one after another, printing each result as text unless `as_json` (the caller
/// prints JSON).
async fn verify_many(
    c: &Config,
    repo: &std::sync::Arc<crate::core::repo::Repository>,
    ids: &[String],
    level: Level,
    as_json: bool,
) -> Result<Vec<VerifyRecord>> {
    let mut recs = Vec::new();
    for id in ids {
        let scratch = crate::core::verify::scratch_name(id);
        let progress = CliProgress::new();
        let (server, source) = {
            let m = repo.manifest(id).await?;
            (
                engine::verify_options(c, &m.source.name, None).scratch,
                m.source.name.clone(),
            )
        };
        let hist = c.history();
        let mut job = hist.as_ref().map(|h| h.start("verify", Some(&source)));
        if let Some(j) = &mut job {
            j.backup_id = Some(id.clone());
        }
        let r = tokio::select! {
            r = engine::verify_backup(c, repo.clone(), id, level, Some(scratch.clone()), &progress) => r,
            _ = tokio::signal::ctrl_c() => {
                if let Some(s) = &server {
                    crate::core::restore::drop_database(&s.with_dbname(&scratch)).await;
                }
                Err(Error::Cancelled(format!("verification of {id} interrupted; scratch database removed")))
            }
        };
        progress.finish();
        if let (Some(h), Some(j)) = (&hist, job) {
            let (status, err) = match &r {
                Ok(rec) if rec.ok => (crate::engine::jobs::JobStatus::Completed, None),
                Ok(rec) => (
                    crate::engine::jobs::JobStatus::Failed,
                    Some(
                        rec.problems
                            .first()
                            .cloned()
                            .or(rec.not_proven.clone())
                            .unwrap_or_default(),
                    ),
                ),
                Err(_) => job_outcome(&r),
            };
            h.finish(j, status, err);
        }
        let rec = r?;
        if !as_json {
            out(&verify_text(&rec))?;
        }
        recs.push(rec);
    }
    Ok(recs)
}

fn job_outcome<T>(r: &Result<T>) -> (crate::engine::jobs::JobStatus, Option<String>) {
    use crate::engine::jobs::JobStatus;
    match r {
        Ok(_) => (JobStatus::Completed, None),
        Err(e @ Error::Cancelled(_)) => (JobStatus::Cancelled, Some(e.to_string())),
        Err(e) => (JobStatus::Failed, Some(e.to_string())),
    }
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A configured duration as written (26h, 90m, 7d).
fn span(secs: i64) -> String {
    match secs {
        s if s > 0 && s % 86400 == 0 => format!("{}d", s / 86400),
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn status_table(st: &[engine::SourceStatus]) -> String {
    if st.is_empty() {
        return "no sources configured and no backups in the repository\n".into();
    }
    let mut s = format!(
        "{:<14} {:<28} {:<26} {:<14} {:<10}\n",
        "SOURCE", "LAST BACKUP (AGE)", "LAST PROVEN (LEVEL, AGE)", "RPO", "RESTORE"
    );
    let now = chrono::Utc::now();
    for x in st {
        let last = match (&x.last_backup_type, x.last_backup_age_s) {
            (Some(t), Some(a)) => format!("{} ({} ago)", t.as_str(), age(a)),
            _ => "NONE".into(),
        };
        let proven = match (x.last_verified_level, x.last_verified_backup_at) {
            (Some(l), Some(t)) => format!("{l} ({} old)", age((now - t).num_seconds())),
            _ => "NOTHING PROVEN".into(),
        };
        let rpo = match x.rpo_s {
            Some(r) => format!(
                "{} {}",
                span(r),
                if x.rpo_state == "ok" { "ok" } else { "BREACH" }
            ),
            None => "not set".into(),
        };
        let restore = x
            .restore_ms
            .map(|ms| {
                format!(
                    "{:.1}s/{}",
                    ms as f64 / 1000.0,
                    human_bytes(x.restore_measured_bytes.unwrap_or(0))
                )
            })
            .unwrap_or_else(|| "unmeasured".into());
        s.push_str(&format!(
            "{:<14} {:<28} {:<26} {:<14} {:<10}\n",
            x.source, last, proven, rpo, restore
        ));
        if !x.damaged.is_empty() {
            s.push_str(&format!("  DAMAGED: {}\n", x.damaged.join(", ")));
        }
        if let Some(n) = x.next_runs.first() {
            s.push_str(&format!(
                "  next scheduled run {} (run by the daemon)\n",
                n.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        if let Some(j) = &x.last_failed_job {
            s.push_str(&format!(
                "  last {} job {:?} at {}: {}\n",
                j.kind,
                j.status,
                j.started_at.format("%Y-%m-%d %H:%M UTC"),
                j.error
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
    }
    s
}

fn jobs_table(jobs: &[crate::engine::jobs::JobRecord]) -> String {
    if jobs.is_empty() {
        return "no jobs recorded yet\n".into();
    }
    let mut s = format!(
        "{:<30} {:<8} {:<12} {:<12} {:<20} {:>8}  {}\n",
        "JOB", "KIND", "SOURCE", "STATUS", "STARTED (UTC)", "TOOK", "BACKUP / ERROR"
    );
    for j in jobs {
        let took = j
            .finished_at
            .map(|f| {
                format!(
                    "{:.1}s",
                    (f - j.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        let status = serde_json::to_value(j.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let what = j
            .error
            .as_deref()
            .map(|e| e.lines().next().unwrap_or("").to_string())
            .or(j.backup_id.clone())
            .unwrap_or_default();
        s.push_str(&format!(
            "{:<30} {:<8} {:<12} {:<12} {:<20} {:>8}  {}\n",
            j.id,
            j.kind,
            j.source.as_deref().unwrap_or("-"),
            status,
            j.started_at.format("%Y-%m-%d %H:%M:%S"),
            took,
            what
        ));
    }
    s
}

pub fn verify_text(r: &VerifyRecord) -> String {
    let mut s = if !r.ok && r.problems.is_empty() {
        format!(
            "backup {}: NOT PROVEN at {} level (no damage found; passed up to {})",
            r.backup_id,
            r.level.as_str(),
            r.passed.map(|p| p.as_str()).unwrap_or("nothing")
        )
    } else if r.ok {
        format!(
            "backup {}: {} level PASSED in {:.1}s",
            r.backup_id,
            r.level.as_str(),
            r.duration_ms as f64 / 1000.0
        )
    } else {
        format!(
            "backup {}: DAMAGED — {} level failed{}",
            r.backup_id,
            r.level.as_str(),
            r.passed
                .map(|p| format!(" (passed up to {})", p.as_str()))
                .unwrap_or_default()
        )
    };
    if let Some(ms) = r.restore_ms {
        s.push_str(&format!(
            "; restore took {:.1}s ({} tables compared, amcheck {})",
            ms as f64 / 1000.0,
            r.tables_compared,
            r.amcheck.as_deref().unwrap_or("not run")
        ));
    }
    s.push('\n');
    for p in &r.problems {
        s.push_str(&format!("  - {p}\n"));
    }
    if let Some(n) = &r.not_proven {
        s.push_str(&format!("  - {n}\n"));
    }
    s
}

fn keygen(output: &std::path::Path) -> Result<()> {
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

pub fn backup_summary(m: &Manifest) -> String {
    format!(
        "{}: {} backup {} in {:.1}s: {} logical, {} stored ({:.1}×), {} tables{}\n",
        m.source.name,
        m.kind.as_str(),
        m.id,
        (m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0,
        human_bytes(m.logical_bytes),
        human_bytes(m.stored_bytes),
        m.dedup_ratio().min(9999.0),
        m.tables.len(),
        m.based_on
            .as_ref()
            .map(|b| format!(", against full {b}"))
            .unwrap_or_default()
    )
}

fn list_table(rows: &[engine::BackupRow]) -> String {
    if rows.is_empty() {
        return "no backups yet: run `keepsake backup`\n".into();
    }
    let mut s = format!(
        "{:<24} {:<14} {:<12} {:<20} {:>8} {:>10} {:>10} {:<9}\n",
        "ID", "SOURCE", "TYPE", "STARTED (UTC)", "TOOK", "LOGICAL", "STORED", "VERIFIED"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<24} {:<14} {:<12} {:<20} {:>7.1}s {:>10} {:>10} {:<9}\n",
            r.id,
            r.source,
            r.kind.as_str(),
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0,
            human_bytes(r.logical_bytes),
            human_bytes(r.stored_bytes),
            r.verified_level
        ));
    }
    s
}

#[derive(serde::Serialize)]
struct ShowJson<'a> {
    #[serde(flatten)]
    row: engine::BackupRow,
    dedup_ratio: f64,
    chunks: usize,
    packs: usize,
    new_raw_bytes: u64,
    large_objects: i64,
    pg_dump_version: &'a str,
    keepsake_version: &'a str,
    source_location: &'a str,
    table_list: &'a [crate::core::format::TableInfo],
    facts: &'a crate::pg::archive::ArchiveFacts,
    verifications: &'a [VerifyRecord],
}

fn show_json<'a>(m: &'a Manifest, recs: Option<&'a Vec<VerifyRecord>>) -> ShowJson<'a> {
    ShowJson {
        row: engine::BackupRow::with_records(m, recs),
        verifications: recs.map(|v| v.as_slice()).unwrap_or(&[]),
        facts: &m.facts,
        dedup_ratio: if m.stored_bytes == 0 {
            0.0
        } else {
            m.dedup_ratio()
        },
        chunks: m.stream.len(),
        packs: m.packs.len(),
        new_raw_bytes: m.new_raw_bytes,
        large_objects: m.large_objects,
        pg_dump_version: &m.pg_dump_version,
        keepsake_version: &m.keepsake_version,
        source_location: &m.source.location,
        table_list: &m.tables,
    }
}

fn show_text(m: &Manifest, recs: Option<&Vec<VerifyRecord>>) -> String {
    let mut s = String::new();
    s.push_str(&format!("backup      {}\n", m.id));
    s.push_str(&format!(
        "source      {} ({})\n",
        m.source.name, m.source.location
    ));
    s.push_str(&format!(
        "type        {}{}\n",
        m.kind.as_str(),
        m.based_on
            .as_ref()
            .map(|b| format!(" (against full {b})"))
            .unwrap_or_default()
    ));
    s.push_str(&format!(
        "time        {} → {} ({:.1}s)\n",
        m.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        m.finished_at.format("%H:%M:%S"),
        (m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0
    ));
    s.push_str(&format!(
        "versions    PostgreSQL {}, pg_dump {}, keepsake {}\n",
        m.source.server_version, m.pg_dump_version, m.keepsake_version
    ));
    s.push_str(&format!(
        "size        {} logical, {} stored by this backup ({} new before compression), dedup+compression {:.1}×\n",
        human_bytes(m.logical_bytes),
        human_bytes(m.stored_bytes),
        human_bytes(m.new_raw_bytes),
        m.dedup_ratio().min(9999.0)
    ));
    s.push_str(&format!(
        "layout      {} chunks ({} distinct) in {} packs; {} large objects\n",
        m.stream.len(),
        m.chunks.len(),
        m.packs.len(),
        m.large_objects
    ));
    let (level, at) = crate::core::verify::proven(recs);
    s.push_str(&format!(
        "verified    {level}{}\n",
        at.map(|t| format!(" ({})", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default()
    ));
    if let Some(r) = recs.and_then(|v| v.iter().rev().find(|r| r.restore_ms.is_some())) {
        s.push_str(&format!(
            "restore     measured {:.1}s for {} on {}\n",
            r.restore_ms.unwrap_or(0) as f64 / 1000.0,
            human_bytes(r.logical_bytes),
            r.finished_at.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if let Some(r) = recs.and_then(|v| v.iter().rev().find(|r| !r.problems.is_empty())) {
        for p in &r.problems {
            s.push_str(&format!("  damage: {p}\n"));
        }
    }
    s.push_str(&format!(
        "tables      {} ({} sequences recorded)\n",
        m.tables.len(),
        m.facts.sequences.len()
    ));
    let rows: std::collections::BTreeMap<(&str, &str), u64> = m
        .facts
        .tables
        .iter()
        .map(|t| ((t.schema.as_str(), t.name.as_str()), t.rows))
        .collect();
    for t in &m.tables {
        let n = rows
            .get(&(t.schema.as_str(), t.name.as_str()))
            .map(|n| format!("{n} rows"))
            .unwrap_or_else(|| "no data".into());
        s.push_str(&format!(
            "  {:<40} {:>10} {}\n",
            format!("{}.{}", t.schema, t.name),
            human_bytes(t.size_bytes.max(0) as u64),
            n
        ));
    }
    s
}
