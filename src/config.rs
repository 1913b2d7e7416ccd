//! Configuration: where it is found, what keys it has, and how secrets are resolved.
//!
//! Invariant: a [`Config`] that exists has been fully validated — every secret reference
//! resolved, every recipient parsed, the identity file readable — so later code never fails
//! on configuration. Every error names the file, the line and the key, and exits 2
//! (docs/configuration.md, "Errors"). Secret values (`env:NAME`, `file:/path` or inline) are
//! held in [`Secret`], whose `Debug` and `Display` never show the value.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};
use crate::keys::{self as crypto, Identities, Recipients};
use crate::pg::conninfo::ConnInfo;
pub use crate::secret::{resolve_secret, Secret};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub repository: RepositoryConfig,
    pub recipients: Recipients,
    /// Path of the identity file. Every command that opens the repository needs it: the
    /// master key (chunk ids, metadata MACs) is encrypted to the recipients.
    pub identity_file: Option<PathBuf>,
    /// `[encryption] repository_key_fingerprint`: the master key this configuration trusts
    /// (`ks1:` and 32 hex digits, printed and written by `init`).
    pub repository_key_fingerprint: Option<String>,
    pub sources: Vec<SourceConfig>,
    pub backup: BackupSettings,
    pub postgres: PostgresSettings,
    pub verification: VerificationConfig,
    pub retention: crate::model::RetentionPolicy,
    pub daemon: DaemonSettings,
    pub notifications: Vec<Webhook>,
    /// `[catalog]`: a PostgreSQL database mirroring the job history (optional).
    pub catalog: Option<ConnInfo>,
    /// `[api]`: the daemon's control API.
    pub api: ApiSettings,
    /// `[drill]`: disaster-recovery drills.
    pub drill: DrillConfig,
}

/// `[drill]`: the daemon's drill schedule and the smoke queries every drill runs
/// (docs/drills.md).
#[derive(Debug, Clone, Default)]
pub struct DrillConfig {
    /// When the daemon drills the newest proven backup of every source.
    pub schedule: Option<crate::schedule::ZonedCron>,
    /// `[[drill.checks]]`, in file order.
    pub checks: Vec<DrillCheck>,
}

/// One `[[drill.checks]]` entry.
#[derive(Debug, Clone)]
pub struct DrillCheck {
    pub name: String,
    /// One SQL statement returning one scalar; run read-only in the restored database.
    pub sql: String,
    pub expect: crate::model::Expect,
    /// Only for drills of this source (default: every source).
    pub source: Option<String>,
}

/// `[api]`: where the control API listens and who may call it (docs/configuration.md, "api";
/// docs/api.md).
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    /// The Unix socket (default `<state_dir>/keepsake.sock`).
    pub socket: Option<PathBuf>,
    /// TCP address, only when set; a non-loopback one needs `tls`.
    pub listen: Option<std::net::SocketAddr>,
    /// `tls_cert` and `tls_key` (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `trigger_rate`: requests that start work, per caller.
    pub trigger_rate: Rate,
    /// `[api.users]`: socket callers other than the daemon's user and root.
    pub users: std::collections::BTreeMap<String, crate::model::Role>,
    /// `[[api.tokens]]`: bearer tokens for TCP callers.
    pub tokens: Vec<ApiToken>,
}

/// A rate such as `30/h`: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: std::time::Duration,
}

impl Default for Rate {
    fn default() -> Self {
        Rate {
            count: 30,
            per: std::time::Duration::from_secs(3600),
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("\"{s}\" is not a rate such as 30/h, 10/m or 1/s");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        if !(1..=1_000_000).contains(&count) {
            return Err(format!("{count} is out of range: expected 1 to 1000000"));
        }
        Ok(Rate {
            count,
            per: std::time::Duration::from_secs(per),
        })
    }
}

/// One `[[api.tokens]]` entry: only the token's SHA-256 is kept.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub role: crate::model::Role,
    pub hash: [u8; 32],
}

/// Events a webhook can subscribe to.
pub const EVENTS: [&str; 10] = [
    "backup_failed",
    "backup_succeeded",
    "verify_failed",
    "rpo_breach",
    "rpo_recovered",
    "prune",
    "drill_failed",
    "prune_failed",
    "capture_lagging",
    "capture_broken",
];

/// One `[[notifications.webhooks]]` entry.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The URL (often carries a token: a secret, never logged; logs show the host only).
    pub url: Secret,
    /// `json` (keepsake's event object) or `slack` (`{"text": …}`).
    pub format: WebhookFormat,
    /// Events sent; default: every failure and RPO event (not `backup_succeeded`, not `prune`).
    pub events: Vec<String>,
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    Json,
    Slack,
}

impl Webhook {
    /// `host[:port]` of the URL, for logs.
    pub fn host(&self) -> String {
        url::Url::parse(self.url.expose())
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| {
                    format!(
                        "{h}{}",
                        u.port().map(|p| format!(":{p}")).unwrap_or_default()
                    )
                })
            })
            .unwrap_or_else(|| "?".into())
    }
}

/// `[verification]`.
#[derive(Debug, Clone)]
pub struct VerificationConfig {
    /// Server where keepsake may create and drop scratch databases (restore-level checks).
    /// Default: the backup's source server.
    pub scratch: Option<ConnInfo>,
    /// Level the daemon verifies each new backup at; `None` for "none". Default: data.
    pub after_backup: Option<crate::model::Level>,
    /// When the daemon verifies the latest backup of every source at `restore` level.
    pub schedule: Option<crate::schedule::ZonedCron>,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        VerificationConfig {
            scratch: None,
            after_backup: Some(crate::model::Level::Data),
            schedule: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    pub url: String,
    /// Settings of an `s3://` repository (`None` for `file://`).
    pub s3: Option<crate::storage::s3::S3Settings>,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub conn: ConnInfo,
    /// Recovery-point objective: alarm when no backup proven at `data` level or better is
    /// newer than this.
    pub rpo: Option<chrono::Duration>,
    /// Recovery-time objective: a drill whose measured recovery takes longer misses it.
    pub rto: Option<chrono::Duration>,
    /// `[sources.schedule]`, validated (used by the daemon; `status` shows the next runs).
    pub schedule: Option<crate::schedule::SourceSchedule>,
    /// `provider`: the hosted platform the database lives on (`None`: detected at backup time).
    pub provider: Option<&'static crate::platform::Profile>,
    /// `[sources.capture]`: continuous change capture from a logical replication slot (none:
    /// the recovery point is the last dump).
    pub capture: Option<CaptureConfig>,
}

/// `[sources.capture]` (docs/configuration.md, "Continuous change capture").
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    /// Seal a change segment at least this often (the recovery point's lag at most).
    pub segment: std::time::Duration,
    /// The logical replication slot (default `keepsake_<source>`).
    pub slot: String,
    /// The publication the slot streams (default `keepsake_<source>`).
    pub publication: String,
    /// Past this much WAL retained for the slot, the slot is dropped and a fresh dump starts a
    /// new chain: an outage of recovery points, never of the database's disk.
    pub max_slot_wal: u64,
    /// Seal a segment when it holds this much, even before `segment` has passed.
    pub max_segment_size: u64,
}

/// Defaults of `[sources.capture]`.
pub const CAPTURE_SEGMENT: std::time::Duration = std::time::Duration::from_secs(60);
pub const CAPTURE_MAX_SLOT_WAL: u64 = 8 << 30;
pub const CAPTURE_MAX_SEGMENT_SIZE: u64 = 64 << 20;

/// A replication slot or publication name keepsake makes from a source name:
/// `keepsake_` and the name in lower case, other characters as `_` (slot names allow only
/// `[a-z0-9_]`, at most 63 bytes).
pub fn capture_name(source: &str) -> String {
    let mut n: String = format!("keepsake_{source}")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    n.truncate(63);
    n
}

/// Whether `n` may name a replication slot (and so a publication keepsake makes): lower-case
/// letters, digits and `_`, 1 to 63 of them.
fn valid_slot_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `[daemon]`.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Where job history lives (default: the XDG state dir, e.g. ~/.local/state/keepsake).
    pub state_dir: Option<PathBuf>,
    /// Daily-rotated log files go here (besides stderr); none when unset.
    pub log_dir: Option<PathBuf>,
    /// Rotated log files kept.
    pub max_log_files: usize,
    /// Log line format: text or JSON (one object per line).
    pub log_json: bool,
    /// How long a stop may take: cancelling the running job, recording it, last alerts.
    pub shutdown_timeout: std::time::Duration,
    /// Each scheduled run starts after a random delay up to this long (spreads load).
    pub jitter: std::time::Duration,
    /// Deadline of every job (backup, verify, restore, prune): a job still running after it
    /// is cancelled and recorded failed (default 24h).
    pub job_timeout: std::time::Duration,
    /// Jobs that may run at once in one engine (the daemon's); more wait, queued. A job
    /// started by another job (a backup's verification) runs in its parent's place.
    pub max_jobs: usize,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            state_dir: None,
            log_dir: None,
            max_log_files: 14,
            log_json: false,
            shutdown_timeout: std::time::Duration::from_secs(30),
            jitter: std::time::Duration::ZERO,
            job_timeout: std::time::Duration::from_secs(24 * 3600),
            max_jobs: 4,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    max_log_files: Option<Spanned<u64>>,
    log_format: Option<Spanned<String>>,
    shutdown_timeout: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    job_timeout: Option<Spanned<String>>,
    max_jobs: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    socket: Option<PathBuf>,
    listen: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    trigger_rate: Option<Spanned<String>>,
    #[serde(default)]
    users: std::collections::BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<String>,
    role: Spanned<String>,
    hash: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotifications {
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Spanned<String>,
    format: Option<Spanned<String>>,
    events: Option<Spanned<Vec<Spanned<String>>>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    url: Spanned<String>,
    password: Option<Spanned<String>>,
    sslrootcert: Option<Spanned<String>>,
}

/// Parse `90s`, `45m`, `26h`, `7d`.
pub fn parse_duration(s: &str) -> std::result::Result<chrono::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        format!("\"{s}\" is not a duration: use a number and s, m, h or d, e.g. 26h")
    })?;
    let d = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => {
            return Err(format!(
                "\"{s}\" is not a duration: use a number and s, m, h or d, e.g. 26h"
            ))
        }
    };
    match d {
        Some(d) if n > 0 && d <= chrono::Duration::days(36_500) => Ok(d),
        _ => Err(format!(
            "\"{s}\" is out of range: expected more than 0 and at most 100 years"
        )),
    }
}

/// `[backup]`: tuning of the pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSettings {
    /// zstd level for chunks (1-19).
    pub compression_level: i32,
    /// Target pack size in MiB.
    pub pack_size_mib: u64,
    /// Worker threads for compression and encryption (0 = number of CPUs).
    pub workers: usize,
    /// `lock_wait_timeout` as written (validated into [`BackupSettings::lock_wait`]).
    lock_wait_timeout: Option<Spanned<String>>,
    /// How long pg_dump and keepsake's own sessions wait for a table lock before the backup
    /// fails naming the lock (default 10 minutes).
    #[serde(skip)]
    pub lock_wait: std::time::Duration,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            // Level 1 is as small as 3 on dump data and much cheaper (BENCHMARKS.md).
            compression_level: 1,
            pack_size_mib: 16,
            workers: 0,
            lock_wait_timeout: None,
            lock_wait: std::time::Duration::from_secs(600),
        }
    }
}

/// `[postgres]`: where the client tools are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// A directory holding pg_dump and pg_restore, searched before PATH and the usual places.
    pub bin_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    repository: RawRepository,
    encryption: RawEncryption,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    backup: BackupSettings,
    #[serde(default)]
    postgres: PostgresSettings,
    verification: Option<RawVerification>,
    #[serde(default)]
    retention: crate::model::RetentionPolicy,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    notifications: RawNotifications,
    catalog: Option<RawCatalog>,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    drill: RawDrill,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDrill {
    schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    checks: Vec<RawCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Spanned<String>,
    sql: Spanned<String>,
    expect: Spanned<String>,
    source: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerification {
    scratch_url: Option<Spanned<String>>,
    scratch_password: Option<Spanned<String>>,
    after_backup: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    url: Spanned<String>,
    // S3 only (see config.example.toml).
    endpoint: Option<Spanned<String>>,
    #[serde(alias = "s3_region")]
    region: Option<Spanned<String>>,
    path_style: Option<Spanned<bool>>,
    access_key_id: Option<Spanned<String>>,
    secret_access_key: Option<Spanned<String>>,
    session_token: Option<Spanned<String>>,
    storage_class: Option<Spanned<String>>,
    server_side_encryption: Option<Spanned<String>>,
    sse_kms_key_id: Option<Spanned<String>>,
    multipart_threshold_mib: Option<Spanned<u64>>,
    part_size_mib: Option<Spanned<u64>>,
    upload_concurrency: Option<Spanned<u64>>,
    request_timeout: Option<Spanned<String>>,
    max_attempts: Option<Spanned<u64>>,
    retry_budget: Option<Spanned<String>>,
    upload_checksum: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    recipients: Spanned<Vec<Spanned<String>>>,
    identity_file: Option<Spanned<String>>,
    repository_key_fingerprint: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    url: Spanned<String>,
    password: Option<Spanned<String>>,
    sslrootcert: Option<Spanned<String>>,
    rpo: Option<Spanned<String>>,
    rto: Option<Spanned<String>>,
    schedule: Option<RawSchedule>,
    provider: Option<Spanned<String>>,
    capture: Option<RawCapture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    segment: Option<Spanned<String>>,
    slot: Option<Spanned<String>>,
    publication: Option<Spanned<String>>,
    max_slot_wal: Option<Spanned<String>>,
    max_segment_size: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    full: Option<Spanned<String>>,
    differential: Option<Spanned<String>>,
    incremental: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

/// Where the configuration comes from: `--config`, `$KEEPSAKE_CONFIG`, the XDG config dir.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("KEEPSAKE_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let dirs = directories::ProjectDirs::from("", "", "keepsake").ok_or_else(|| {
        Error::ConfigMissing(
            "no configuration: pass --config FILE or set KEEPSAKE_CONFIG (no home directory to look in)".into(),
        )
    })?;
    Ok(dirs.config_dir().join("config.toml"))
}

/// Write `[encryption] repository_key_fingerprint = "…"` into the configuration file at
/// `path` (comments and order kept), atomically.
pub fn write_key_fingerprint(path: &Path, fingerprint: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(std::io::Error::other)?;
    let enc = doc
        .entry("encryption")
        .or_insert_with(toml_edit::table)
        .as_table_mut()
        .ok_or_else(|| std::io::Error::other("[encryption] is not a table"))?;
    enc.insert("repository_key_fingerprint", toml_edit::value(fingerprint));
    let tmp = path.with_extension("toml.keepsake-tmp");
    std::fs::write(&tmp, doc.to_string())?;
    if let Ok(m) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, m.permissions());
    }
    std::fs::rename(&tmp, path)
}

/// Read and validate the configuration at `path`.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::ConfigMissing(format!(
            "cannot read configuration {}: {e}; pass --config FILE, set KEEPSAKE_CONFIG, or copy config.example.toml there",
            path.display()
        ))
    })?;
    parse(path, &text)
}

/// Validate configuration text as if read from `path`: each table in its own step.
pub fn parse(path: &Path, text: &str) -> Result<Config> {
    let ctx = Ctx { path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
    let url = repository_url(&ctx, &raw.repository)?;
    let s3 = s3_settings(&ctx, &raw.repository, &url)?;
    let (recipients, identity_file) = encryption(&ctx, &raw.encryption)?;
    let sources = sources(&ctx, &raw.sources)?;
    let backup = backup_settings(&ctx, &raw.backup)?;
    let verification = verification(&ctx, raw.verification.as_ref())?;
    let daemon = daemon_settings(&ctx, &raw.daemon)?;
    let notifications = webhooks(&ctx, &raw.notifications)?;
    let api = api_settings(&ctx, &raw.api)?;
    let catalog = match &raw.catalog {
        None => None,
        Some(c) => {
            let mut ci = conn(
                &ctx,
                &c.url,
                c.password.as_ref(),
                "catalog.url",
                "catalog.password",
            )?;
            if let Some(p) = &c.sslrootcert {
                ci.sslrootcert = Some(PathBuf::from(p.get_ref()));
            }
            Some(ci)
        }
    };
    let drill = drill(&ctx, &raw.drill, &sources)?;
    Ok(Config {
        api,
        drill,
        verification,
        retention: retention(&ctx, &raw.retention)?,
        daemon,
        notifications,
        catalog,
        path: path.to_path_buf(),
        repository: RepositoryConfig { url, s3 },
        recipients,
        identity_file,
        repository_key_fingerprint: key_fingerprint(&ctx, &raw.encryption)?,
        sources,
        backup,
        postgres: raw.postgres,
    })
}

fn repository_url(ctx: &Ctx, r: &RawRepository) -> Result<String> {
    let url = r.url.get_ref().trim().to_string();
    if !(url.starts_with("file://") || url.starts_with("s3://")) {
        return Err(ctx.err(
            r.url.span(),
            "repository.url",
            format!("\"{url}\" is not a repository URL: expected file:///absolute/path or s3://bucket/prefix"),
        ));
    }
    Ok(url)
}

/// `[encryption]`: every recipient parses, and the identity file (when set) loads.
fn key_fingerprint(ctx: &Ctx, e: &RawEncryption) -> Result<Option<String>> {
    let Some(f) = &e.repository_key_fingerprint else {
        return Ok(None);
    };
    let v = f.get_ref().trim();
    let ok = v
        .strip_prefix("ks1:")
        .is_some_and(|h| h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(ctx.err(
            f.span(),
            "encryption.repository_key_fingerprint",
            format!("\"{v}\" is not a key fingerprint: expected ks1: and 32 hex digits, as printed by `keepsake init`"),
        ));
    }
    Ok(Some(v.to_ascii_lowercase()))
}

fn encryption(ctx: &Ctx, e: &RawEncryption) -> Result<(Recipients, Option<PathBuf>)> {
    if e.recipients.get_ref().is_empty() {
        return Err(ctx.err(
            e.recipients.span(),
            "encryption.recipients",
            "at least one age recipient (age1…) is required: keepsake never writes plaintext; create one with `keepsake keygen`".into(),
        ));
    }
    let mut recipients = Vec::new();
    for r in e.recipients.get_ref() {
        let parsed = crypto::parse_recipient(r.get_ref().trim())
            .map_err(|m| ctx.err(r.span(), "encryption.recipients", m))?;
        recipients.push(parsed);
    }
    let identity_file = match &e.identity_file {
        None => None,
        Some(p) => {
            let pb = PathBuf::from(p.get_ref());
            Identities::load(&pb)
                .map_err(|e| ctx.err(p.span(), "encryption.identity_file", e.to_string()))?;
            Some(pb)
        }
    };
    Ok((Recipients(recipients), identity_file))
}

/// A connection URL (a secret reference allowed) and its optional password reference.
fn conn(
    ctx: &Ctx,
    url: &Spanned<String>,
    password: Option<&Spanned<String>>,
    url_key: &str,
    password_key: &str,
) -> Result<ConnInfo> {
    let u = resolve_secret(url.get_ref()).map_err(|m| ctx.err(url.span(), url_key, m))?;
    let mut ci = ConnInfo::parse(u.expose()).map_err(|m| ctx.err(url.span(), url_key, m))?;
    if let Some(pw) = password {
        ci.password =
            Some(resolve_secret(pw.get_ref()).map_err(|m| ctx.err(pw.span(), password_key, m))?);
    }
    Ok(ci)
}

/// Every `[[sources]]` entry: unique valid names, connections, RPOs, schedules.
fn sources(ctx: &Ctx, raw: &[RawSource]) -> Result<Vec<SourceConfig>> {
    let mut sources: Vec<SourceConfig> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let key = |k: &str| format!("sources[{i}].{k}");
        let name = s.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(ctx.err(
                s.name.span(),
                &key("name"),
                format!(
                    "\"{name}\" is not a valid source name: use letters, digits, '-', '_' or '.'"
                ),
            ));
        }
        if sources.iter().any(|x| x.name == name) {
            return Err(ctx.err(
                s.name.span(),
                &key("name"),
                format!("source \"{name}\" is defined twice"),
            ));
        }
        let mut conn = conn(
            ctx,
            &s.url,
            s.password.as_ref(),
            &key("url"),
            &key("password"),
        )?;
        if let Some(c) = &s.sslrootcert {
            let p = PathBuf::from(c.get_ref());
            if let Err(e) = std::fs::metadata(&p) {
                return Err(ctx.err(
                    c.span(),
                    &key("sslrootcert"),
                    format!("cannot read root certificate {}: {e}", p.display()),
                ));
            }
            conn.sslrootcert = Some(p);
        }
        let rpo = match &s.rpo {
            Some(r) => {
                Some(parse_duration(r.get_ref()).map_err(|m| ctx.err(r.span(), &key("rpo"), m))?)
            }
            None => None,
        };
        let rto = match &s.rto {
            Some(r) => {
                Some(parse_duration(r.get_ref()).map_err(|m| ctx.err(r.span(), &key("rto"), m))?)
            }
            None => None,
        };
        let schedule = match &s.schedule {
            None => None,
            Some(sc) => Some(source_schedule(ctx, sc, &s.name, &key)?),
        };
        let provider = match &s.provider {
            Some(p) => Some(crate::platform::by_name(p.get_ref()).ok_or_else(|| {
                ctx.err(
                    p.span(),
                    &key("provider"),
                    format!(
                        "unknown provider \"{}\": known are {} (or leave provider out: it is detected at backup time)",
                        p.get_ref(),
                        crate::platform::names()
                    ),
                )
            })?),
            None => None,
        };
        let capture = match &s.capture {
            None => None,
            Some(c) => Some(capture(ctx, c, &name, &key)?),
        };
        if let Some(c) = &capture {
            if let Some(other) = sources
                .iter()
                .find(|x| x.capture.as_ref().is_some_and(|o| o.slot == c.slot))
            {
                return Err(ctx.err(
                    s.name.span(),
                    &key("capture.slot"),
                    format!(
                        "source \"{name}\" would capture through slot {}, which source \"{}\" uses: give one of them its own `slot`",
                        c.slot, other.name
                    ),
                ));
            }
        }
        sources.push(SourceConfig {
            name,
            conn,
            rpo,
            rto,
            schedule,
            provider,
            capture,
        });
    }
    Ok(sources)
}

/// `[sources.capture]`, validated.
fn capture(
    ctx: &Ctx,
    c: &RawCapture,
    source: &str,
    key: &dyn Fn(&str) -> String,
) -> Result<CaptureConfig> {
    let segment = match &c.segment {
        None => CAPTURE_SEGMENT,
        Some(v) => {
            let d = parse_duration(v.get_ref())
                .map_err(|m| ctx.err(v.span(), &key("capture.segment"), m))?;
            if d < chrono::Duration::seconds(1) || d > chrono::Duration::hours(1) {
                return Err(ctx.err(
                    v.span(),
                    &key("capture.segment"),
                    format!(
                        "\"{}\" is out of range: a segment is sealed at least every 1s to 1h (default 1m)",
                        v.get_ref()
                    ),
                ));
            }
            d.to_std().unwrap_or(CAPTURE_SEGMENT)
        }
    };
    let name = |v: &Option<Spanned<String>>, k: &str| -> Result<String> {
        match v {
            None => Ok(capture_name(source)),
            Some(v) if valid_slot_name(v.get_ref()) => Ok(v.get_ref().clone()),
            Some(v) => Err(ctx.err(
                v.span(),
                &key(k),
                format!(
                    "\"{}\" is not a valid name: use lower-case letters, digits and _ (at most 63), e.g. {}",
                    v.get_ref(),
                    capture_name(source)
                ),
            )),
        }
    };
    let size = |v: &Option<Spanned<String>>, k: &str, default: u64, min: u64| -> Result<u64> {
        match v {
            None => Ok(default),
            Some(v) => {
                let n = crate::units::parse_size(v.get_ref())
                    .map_err(|m| ctx.err(v.span(), &key(k), m))?;
                if n < min {
                    return Err(ctx.err(
                        v.span(),
                        &key(k),
                        format!(
                            "\"{}\" is too small: at least {}",
                            v.get_ref(),
                            crate::units::human_bytes(min)
                        ),
                    ));
                }
                Ok(n)
            }
        }
    };
    Ok(CaptureConfig {
        segment,
        slot: name(&c.slot, "capture.slot")?,
        publication: name(&c.publication, "capture.publication")?,
        max_slot_wal: size(
            &c.max_slot_wal,
            "capture.max_slot_wal",
            CAPTURE_MAX_SLOT_WAL,
            64 << 20,
        )?,
        max_segment_size: size(
            &c.max_segment_size,
            "capture.max_segment_size",
            CAPTURE_MAX_SEGMENT_SIZE,
            1 << 20,
        )?,
    })
}

/// `[sources.schedule]`: a cron expression per backup type, in a time zone.
fn source_schedule(
    ctx: &Ctx,
    sc: &RawSchedule,
    name: &Spanned<String>,
    key: &dyn Fn(&str) -> String,
) -> Result<crate::schedule::SourceSchedule> {
    use crate::model::BackupType;
    use crate::schedule;
    let tz = match &sc.timezone {
        Some(t) => schedule::parse_tz(t.get_ref())
            .map_err(|m| ctx.err(t.span(), &key("schedule.timezone"), m))?,
        None => chrono_tz::UTC,
    };
    let mut entries = Vec::new();
    for (k, kind, v) in [
        ("full", BackupType::Full, &sc.full),
        ("differential", BackupType::Differential, &sc.differential),
        ("incremental", BackupType::Incremental, &sc.incremental),
    ] {
        if let Some(v) = v {
            schedule::parse_cron(v.get_ref())
                .map_err(|m| ctx.err(v.span(), &key(&format!("schedule.{k}")), m))?;
            entries.push((kind, v.get_ref().clone()));
        }
    }
    schedule::SourceSchedule::new(tz, &entries)
        .map_err(|m| ctx.err(name.span(), &key("schedule"), m))
}

/// `[retention]`: every count and period within a range keepsake can compute with.
fn retention(
    ctx: &Ctx,
    r: &crate::model::RetentionPolicy,
) -> Result<crate::model::RetentionPolicy> {
    for (key, value, max) in [
        ("days", r.days, 36_500),
        ("prune_grace_hours", r.prune_grace_hours, 87_600),
        ("keep_last", r.keep_last, 1_000_000),
        ("keep_hourly", r.keep_hourly, 1_000_000),
        ("keep_daily", r.keep_daily, 1_000_000),
        ("keep_weekly", r.keep_weekly, 1_000_000),
        ("keep_monthly", r.keep_monthly, 1_000_000),
        ("keep_yearly", r.keep_yearly, 1_000_000),
        ("min_verified", r.min_verified, 1_000_000),
    ] {
        if let Some(v) = value.filter(|v| *v > max) {
            return Err(ctx
                .err(
                    0..0,
                    &format!("retention.{key}"),
                    format!("{v} is out of range: expected at most {max}"),
                )
                .with_key_line(ctx.text, key));
        }
    }
    if let Some(v) = r
        .prune_grace_hours
        .filter(|v| *v < crate::model::MIN_PRUNE_GRACE_HOURS)
        .filter(|_| r.allow_short_prune_grace != Some(true))
    {
        return Err(ctx
            .err(
                0..0,
                "retention.prune_grace_hours",
                format!(
                    "{v} is below the minimum of {min} hour: a backup on a host whose clock is \
                     behind, or one that chose to reuse a pack just before a prune marked it, \
                     could lose that pack; use at least {min} (the default is 24). Only for a \
                     throwaway repository that nothing else writes, add \
                     `allow_short_prune_grace = true` to [retention]",
                    min = crate::model::MIN_PRUNE_GRACE_HOURS
                ),
            )
            .with_key_line(ctx.text, "prune_grace_hours"));
    }
    Ok(r.clone())
}

/// `[backup]`: ranges and the lock wait.
fn backup_settings(ctx: &Ctx, raw: &BackupSettings) -> Result<BackupSettings> {
    let mut backup = raw.clone();
    if let Some(t) = &raw.lock_wait_timeout {
        backup.lock_wait = duration_key(ctx, t, "backup.lock_wait_timeout")?;
    }
    if !(1..=19).contains(&raw.compression_level) {
        return Err(ctx
            .err(
                0..0,
                "backup.compression_level",
                format!(
                    "{} is out of range: expected 1 to 19",
                    raw.compression_level
                ),
            )
            .with_key_line(ctx.text, "compression_level"));
    }
    if !(1..=1024).contains(&raw.pack_size_mib) {
        return Err(ctx
            .err(
                0..0,
                "backup.pack_size_mib",
                format!("{} is out of range: expected 1 to 1024", raw.pack_size_mib),
            )
            .with_key_line(ctx.text, "pack_size_mib"));
    }
    Ok(backup)
}

/// `[drill]`: the schedule, and smoke checks with unique names, a query, an expectation that
/// parses, and a configured source when one is named.
fn drill(ctx: &Ctx, d: &RawDrill, sources: &[SourceConfig]) -> Result<DrillConfig> {
    let mut out = DrillConfig::default();
    if let Some(sc) = &d.schedule {
        let tz = match &d.timezone {
            Some(t) => crate::schedule::parse_tz(t.get_ref())
                .map_err(|m| ctx.err(t.span(), "drill.timezone", m))?,
            None => chrono_tz::UTC,
        };
        out.schedule = Some(
            crate::schedule::ZonedCron::new(sc.get_ref(), tz)
                .map_err(|m| ctx.err(sc.span(), "drill.schedule", m))?,
        );
    } else if let Some(t) = &d.timezone {
        return Err(ctx.err(
            t.span(),
            "drill.timezone",
            "applies to drill.schedule, which is not set".into(),
        ));
    }
    for (i, c) in d.checks.iter().enumerate() {
        let key = |k: &str| format!("drill.checks[{i}].{k}");
        let name = c.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(ctx.err(c.name.span(), &key("name"), "a check needs a name".into()));
        }
        if out.checks.iter().any(|x| x.name == name) {
            return Err(ctx.err(
                c.name.span(),
                &key("name"),
                format!("check \"{name}\" is defined twice"),
            ));
        }
        let sql = c.sql.get_ref().trim().to_string();
        if sql.is_empty() {
            return Err(ctx.err(
                c.sql.span(),
                &key("sql"),
                "a check needs a query returning one value, e.g. \"SELECT count(*) FROM guests\""
                    .into(),
            ));
        }
        let expect = c
            .expect
            .get_ref()
            .parse()
            .map_err(|m| ctx.err(c.expect.span(), &key("expect"), m))?;
        let source = match &c.source {
            None => None,
            Some(s) if sources.iter().any(|x| &x.name == s.get_ref()) => Some(s.get_ref().clone()),
            Some(s) => {
                return Err(ctx.err(
                    s.span(),
                    &key("source"),
                    format!("no source \"{}\" is configured", s.get_ref()),
                ))
            }
        };
        out.checks.push(DrillCheck {
            name,
            sql,
            expect,
            source,
        });
    }
    Ok(out)
}

/// `[verification]`: the level after each backup, the scratch server, the schedule.
fn verification(ctx: &Ctx, v: Option<&RawVerification>) -> Result<VerificationConfig> {
    let mut verification = VerificationConfig::default();
    let Some(v) = v else {
        return Ok(verification);
    };
    if let Some(a) = &v.after_backup {
        verification.after_backup = match a.get_ref().as_str() {
            "none" => None,
            other => Some(other.parse().map_err(|_| {
                ctx.err(
                    a.span(),
                    "verification.after_backup",
                    format!(
                        "\"{other}\" is not one of \"structure\", \"data\", \"restore\", \"none\""
                    ),
                )
            })?),
        };
    }
    if let Some(u) = &v.scratch_url {
        verification.scratch = Some(conn(
            ctx,
            u,
            v.scratch_password.as_ref(),
            "verification.scratch_url",
            "verification.scratch_password",
        )?);
    } else if let Some(pw) = &v.scratch_password {
        return Err(ctx.err(
            pw.span(),
            "verification.scratch_password",
            "scratch_password needs scratch_url".into(),
        ));
    }
    if let Some(sc) = &v.schedule {
        let tz = match &v.timezone {
            Some(t) => crate::schedule::parse_tz(t.get_ref())
                .map_err(|m| ctx.err(t.span(), "verification.timezone", m))?,
            None => chrono_tz::UTC,
        };
        verification.schedule = Some(
            crate::schedule::ZonedCron::new(sc.get_ref(), tz)
                .map_err(|m| ctx.err(sc.span(), "verification.schedule", m))?,
        );
    } else if let Some(t) = &v.timezone {
        return Err(ctx.err(
            t.span(),
            "verification.timezone",
            "applies to verification.schedule, which is not set".into(),
        ));
    }
    Ok(verification)
}

impl Config {
    /// The folder of a `file://` repository.
    pub fn repository_path(&self) -> Result<PathBuf> {
        file_url_path(&self.repository.url)
    }

    /// The configured identities, or a usage error saying how to configure one.
    pub fn identities(&self) -> Result<Identities> {
        match &self.identity_file {
            Some(p) => Identities::load(p),
            None => Err(Error::Key(format!(
                "{}: encryption.identity_file is not set: it is needed to read backups (list, show, restore, verify)",
                self.path.display()
            ))),
        }
    }

    pub fn source(&self, name: &str) -> Result<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<_> = self.sources.iter().map(|s| s.name.as_str()).collect();
            Error::Usage(format!(
                "no source named \"{name}\" in {}; configured sources: {}",
                self.path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }
}

fn duration_key(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<std::time::Duration> {
    parse_duration(v.get_ref())
        .ok()
        .and_then(|d| d.to_std().ok())
        .ok_or_else(|| {
            ctx.err(
                v.span(),
                key,
                format!(
                    "\"{}\" is not a duration such as 90s, 5m or 2h",
                    v.get_ref()
                ),
            )
        })
}

fn daemon_settings(ctx: &Ctx, r: &RawDaemon) -> Result<DaemonSettings> {
    let mut d = DaemonSettings {
        state_dir: r.state_dir.clone(),
        log_dir: r.log_dir.clone(),
        ..Default::default()
    };
    if let Some(n) = &r.max_log_files {
        if !(1..=3650).contains(n.get_ref()) {
            return Err(ctx.err(
                n.span(),
                "daemon.max_log_files",
                format!("{} is out of range: expected 1 to 3650", n.get_ref()),
            ));
        }
        d.max_log_files = *n.get_ref() as usize;
    }
    if let Some(n) = &r.max_jobs {
        if !(1..=64).contains(n.get_ref()) {
            return Err(ctx.err(
                n.span(),
                "daemon.max_jobs",
                format!("{} is out of range: expected 1 to 64", n.get_ref()),
            ));
        }
        d.max_jobs = *n.get_ref() as usize;
    }
    if let Some(f) = &r.log_format {
        d.log_json = match f.get_ref().as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ctx.err(
                    f.span(),
                    "daemon.log_format",
                    format!("\"{other}\" is not one of \"text\", \"json\""),
                ))
            }
        };
    }
    if let Some(t) = &r.shutdown_timeout {
        d.shutdown_timeout = duration_key(ctx, t, "daemon.shutdown_timeout")?;
    }
    if let Some(t) = &r.job_timeout {
        d.job_timeout = duration_key(ctx, t, "daemon.job_timeout")?;
    }
    if let Some(t) = &r.jitter {
        if t.get_ref().trim() != "0" && t.get_ref().trim() != "0s" {
            d.jitter = duration_key(ctx, t, "daemon.jitter")?;
        }
    }
    Ok(d)
}

fn api_settings(ctx: &Ctx, r: &RawApi) -> Result<ApiSettings> {
    let mut a = ApiSettings {
        socket: r.socket.clone(),
        ..Default::default()
    };
    if let Some(t) = &r.trigger_rate {
        a.trigger_rate = t
            .get_ref()
            .parse()
            .map_err(|m| ctx.err(t.span(), "api.trigger_rate", m))?;
    }
    match (&r.tls_cert, &r.tls_key) {
        (None, None) => {}
        (Some(c), Some(k)) => {
            for (v, key) in [(c, "api.tls_cert"), (k, "api.tls_key")] {
                if let Err(e) = std::fs::metadata(v.get_ref()) {
                    return Err(ctx.err(
                        v.span(),
                        key,
                        format!("cannot read {}: {e}", v.get_ref()),
                    ));
                }
            }
            a.tls = Some((PathBuf::from(c.get_ref()), PathBuf::from(k.get_ref())));
        }
        (Some(v), None) | (None, Some(v)) => {
            return Err(ctx.err(
                v.span(),
                "api.tls_cert",
                "tls_cert and tls_key go together: set both, or neither".into(),
            ))
        }
    }
    if let Some(l) = &r.listen {
        let addr: std::net::SocketAddr = l.get_ref().parse().map_err(|_| {
            ctx.err(
                l.span(),
                "api.listen",
                format!(
                    "\"{}\" is not an address such as 127.0.0.1:7480 or [::1]:7480",
                    l.get_ref()
                ),
            )
        })?;
        if !addr.ip().is_loopback() && a.tls.is_none() {
            return Err(ctx.err(
                l.span(),
                "api.listen",
                format!("{addr} is not a loopback address: bearer tokens would cross the network in clear; set api.tls_cert and api.tls_key, or listen on 127.0.0.1"),
            ));
        }
        a.listen = Some(addr);
    }
    for (user, role) in &r.users {
        let role = role
            .get_ref()
            .parse()
            .map_err(|m| ctx.err(role.span(), &format!("api.users.{user}"), m))?;
        a.users.insert(user.clone(), role);
    }
    for t in &r.tokens {
        let name = t.name.get_ref().trim();
        if name.is_empty() || a.tokens.iter().any(|x| x.name == name) {
            return Err(ctx.err(
                t.name.span(),
                "api.tokens.name",
                format!("\"{name}\": every token needs a name of its own"),
            ));
        }
        let role = t
            .role
            .get_ref()
            .parse()
            .map_err(|m| ctx.err(t.role.span(), "api.tokens.role", m))?;
        let hash = t
            .hash
            .get_ref()
            .strip_prefix("sha256:")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                ctx.err(
                    t.hash.span(),
                    "api.tokens.hash",
                    "expected sha256: and 64 hex digits, as printed by `keepsake token new`".into(),
                )
            })?;
        a.tokens.push(ApiToken {
            name: name.to_string(),
            role,
            hash,
        });
    }
    Ok(a)
}

fn webhooks(ctx: &Ctx, r: &RawNotifications) -> Result<Vec<Webhook>> {
    let mut out = Vec::new();
    for (i, w) in r.webhooks.iter().enumerate() {
        let key = |k: &str| format!("notifications.webhooks[{i}].{k}");
        let url =
            resolve_secret(w.url.get_ref()).map_err(|m| ctx.err(w.url.span(), &key("url"), m))?;
        match url::Url::parse(url.expose()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => {
                return Err(ctx.err(
                    w.url.span(),
                    &key("url"),
                    "is not an http(s) URL (the value is not shown: webhook URLs carry tokens)"
                        .into(),
                ))
            }
        }
        let format = match w.format.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("json") => WebhookFormat::Json,
            Some("slack") => WebhookFormat::Slack,
            Some(other) => {
                return Err(ctx.err(
                    w.format.as_ref().map(|f| f.span()).unwrap_or(0..0),
                    &key("format"),
                    format!("\"{other}\" is not one of \"json\", \"slack\""),
                ))
            }
        };
        let events = match &w.events {
            None => vec![
                "backup_failed".to_string(),
                "verify_failed".to_string(),
                "rpo_breach".to_string(),
                "rpo_recovered".to_string(),
                "drill_failed".to_string(),
                "prune_failed".to_string(),
                "capture_lagging".to_string(),
                "capture_broken".to_string(),
            ],
            Some(list) => {
                let mut v = Vec::new();
                for e in list.get_ref() {
                    if !EVENTS.contains(&e.get_ref().as_str()) {
                        return Err(ctx.err(
                            e.span(),
                            &key("events"),
                            format!(
                                "\"{}\" is not an event: use {}",
                                e.get_ref(),
                                EVENTS.join(", ")
                            ),
                        ));
                    }
                    v.push(e.get_ref().clone());
                }
                v
            }
        };
        let timeout = match &w.timeout {
            Some(t) => duration_key(ctx, t, &key("timeout"))?,
            None => std::time::Duration::from_secs(10),
        };
        out.push(Webhook {
            url,
            format,
            events,
            timeout,
        });
    }
    Ok(out)
}

/// Validate the S3 keys of `[repository]`: settings for an `s3://` URL; for a `file://` URL
/// none of them may be set.
fn s3_settings(
    ctx: &Ctx,
    r: &RawRepository,
    url: &str,
) -> Result<Option<crate::storage::s3::S3Settings>> {
    use crate::storage::s3::S3Settings;
    let s3_only: [(&str, Option<std::ops::Range<usize>>); 16] = [
        ("endpoint", r.endpoint.as_ref().map(|v| v.span())),
        ("region", r.region.as_ref().map(|v| v.span())),
        ("path_style", r.path_style.as_ref().map(|v| v.span())),
        ("access_key_id", r.access_key_id.as_ref().map(|v| v.span())),
        (
            "secret_access_key",
            r.secret_access_key.as_ref().map(|v| v.span()),
        ),
        ("session_token", r.session_token.as_ref().map(|v| v.span())),
        ("storage_class", r.storage_class.as_ref().map(|v| v.span())),
        (
            "server_side_encryption",
            r.server_side_encryption.as_ref().map(|v| v.span()),
        ),
        (
            "sse_kms_key_id",
            r.sse_kms_key_id.as_ref().map(|v| v.span()),
        ),
        (
            "multipart_threshold_mib",
            r.multipart_threshold_mib.as_ref().map(|v| v.span()),
        ),
        ("part_size_mib", r.part_size_mib.as_ref().map(|v| v.span())),
        (
            "upload_concurrency",
            r.upload_concurrency.as_ref().map(|v| v.span()),
        ),
        (
            "request_timeout",
            r.request_timeout.as_ref().map(|v| v.span()),
        ),
        ("max_attempts", r.max_attempts.as_ref().map(|v| v.span())),
        (
            "upload_checksum",
            r.upload_checksum.as_ref().map(|v| v.span()),
        ),
        ("retry_budget", r.retry_budget.as_ref().map(|v| v.span())),
    ];
    let Some(rest) = url.strip_prefix("s3://") else {
        if let Some((k, Some(span))) = s3_only.into_iter().find(|(_, s)| s.is_some()) {
            return Err(ctx.err(
                span,
                &format!("repository.{k}"),
                "only applies to s3:// repositories".into(),
            ));
        }
        return Ok(None);
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty()
        || !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(ctx.err(
            r.url.span(),
            "repository.url",
            format!("\"{url}\" does not name a bucket: expected s3://bucket or s3://bucket/prefix"),
        ));
    }
    let mut s = S3Settings::new(bucket, prefix);
    if let Some(e) = &r.endpoint {
        let v = e.get_ref().trim();
        if !(v.starts_with("https://") || v.starts_with("http://")) || url::Url::parse(v).is_err() {
            return Err(ctx.err(
                e.span(),
                "repository.endpoint",
                format!("\"{v}\" is not an http(s) URL, e.g. https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:3900"),
            ));
        }
        s.endpoint = Some(v.to_string());
    }
    s.region = match &r.region {
        Some(v) => v.get_ref().trim().to_string(),
        None => std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".into()),
    };
    if s.region.is_empty() {
        return Err(ctx.err(
            r.region.as_ref().map(|v| v.span()).unwrap_or(0..0),
            "repository.region",
            "must not be empty".into(),
        ));
    }
    s.path_style = r.path_style.as_ref().map(|v| *v.get_ref()).unwrap_or(false);
    let secret = |v: &Option<Spanned<String>>, k: &str| -> Result<Option<Secret>> {
        match v {
            None => Ok(None),
            Some(v) => resolve_secret(v.get_ref())
                .map(Some)
                .map_err(|m| ctx.err(v.span(), &format!("repository.{k}"), m)),
        }
    };
    s.access_key_id = secret(&r.access_key_id, "access_key_id")?;
    s.secret_access_key = secret(&r.secret_access_key, "secret_access_key")?;
    s.session_token = secret(&r.session_token, "session_token")?;
    match (&r.access_key_id, &r.secret_access_key) {
        (Some(a), None) => {
            return Err(ctx.err(
                a.span(),
                "repository.access_key_id",
                "secret_access_key is needed too (use env:NAME or file:/path)".into(),
            ))
        }
        (None, Some(a)) => {
            return Err(ctx.err(
                a.span(),
                "repository.secret_access_key",
                "access_key_id is needed too".into(),
            ))
        }
        (None, None) if r.session_token.is_some() => return Err(ctx.err(
            r.session_token.as_ref().map(|v| v.span()).unwrap_or(0..0),
            "repository.session_token",
            "needs access_key_id and secret_access_key (a session token belongs to temporary keys)"
                .into(),
        )),
        _ => {}
    }
    s.storage_class = r
        .storage_class
        .as_ref()
        .map(|v| v.get_ref().trim().to_string());
    if let Some(v) = &r.upload_checksum {
        use crate::storage::s3::UploadChecksum;
        s.upload_checksum = match v.get_ref().trim() {
            "auto" => UploadChecksum::Auto,
            "crc32c" => UploadChecksum::Crc32c,
            "md5" => UploadChecksum::Md5,
            other => {
                return Err(ctx.err(
                    v.span(),
                    "repository.upload_checksum",
                    format!("\"{other}\" is not one of \"auto\", \"crc32c\", \"md5\""),
                ))
            }
        };
    }
    if let Some(v) = &r.server_side_encryption {
        let v2 = v.get_ref().trim();
        if !matches!(v2, "AES256" | "aws:kms" | "aws:kms:dsse") {
            return Err(ctx.err(
                v.span(),
                "repository.server_side_encryption",
                format!("\"{v2}\" is not one of \"AES256\", \"aws:kms\", \"aws:kms:dsse\""),
            ));
        }
        s.server_side_encryption = Some(v2.to_string());
    }
    s.sse_kms_key_id = r
        .sse_kms_key_id
        .as_ref()
        .map(|v| v.get_ref().trim().to_string());
    let mib = |v: &Option<Spanned<u64>>, k: &str, lo: u64, hi: u64| -> Result<Option<u64>> {
        match v {
            None => Ok(None),
            Some(v) if (lo..=hi).contains(v.get_ref()) => Ok(Some(*v.get_ref())),
            Some(v) => Err(ctx.err(
                v.span(),
                &format!("repository.{k}"),
                format!("{} is out of range: expected {lo} to {hi}", v.get_ref()),
            )),
        }
    };
    if let Some(n) = mib(
        &r.multipart_threshold_mib,
        "multipart_threshold_mib",
        5,
        5 * 1024,
    )? {
        s.multipart_threshold = n << 20;
    }
    if let Some(n) = mib(&r.part_size_mib, "part_size_mib", 5, 5 * 1024)? {
        s.part_size = n << 20;
    }
    if let Some(n) = mib(&r.upload_concurrency, "upload_concurrency", 1, 64)? {
        s.upload_concurrency = n as usize;
    }
    if let Some(n) = mib(&r.max_attempts, "max_attempts", 1, 100)? {
        s.retry.max_attempts = n as u32;
    }
    let dur = |v: &Option<Spanned<String>>, k: &str| -> Result<Option<std::time::Duration>> {
        match v {
            None => Ok(None),
            Some(v) => parse_duration(v.get_ref())
                .ok()
                .and_then(|d| d.to_std().ok())
                .map(Some)
                .ok_or_else(|| {
                    ctx.err(
                        v.span(),
                        &format!("repository.{k}"),
                        format!("\"{}\" is not a duration such as 90s or 5m", v.get_ref()),
                    )
                }),
        }
    };
    if let Some(d) = dur(&r.request_timeout, "request_timeout")? {
        s.request_timeout = d;
    }
    if let Some(d) = dur(&r.retry_budget, "retry_budget")? {
        s.retry.budget = d;
    }
    Ok(Some(s))
}

/// Path of a `file://` URL.
pub fn file_url_path(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("file://")
        .ok_or_else(|| Error::Usage(format!("{url} is not a file:// URL")))?;
    if !rest.starts_with('/') {
        return Err(Error::Usage(format!(
            "{url}: a file repository URL needs an absolute path, e.g. file:///var/lib/keepsake/repo"
        )));
    }
    Ok(PathBuf::from(rest))
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Range<usize>, key: &str, message: String) -> Error {
        Error::Config {
            file: self.path.to_path_buf(),
            line: self.line_of(span.start),
            key: key.to_string(),
            message,
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> Error {
        let start = e.span().map(|s| s.start).unwrap_or(0);
        let line = self.line_of(start);
        let msg = e.message().trim().to_string();
        // Name the key: "unknown field `x`" / "missing field `x`" name it; otherwise it is the
        // key on the offending line (`key = value`).
        let named = msg.split('`').nth(1).map(str::to_string);
        let on_line = self
            .text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().trim_matches('"').to_string());
        let key = if msg.starts_with("unknown field") || msg.starts_with("missing field") {
            named.or(on_line)
        } else {
            on_line.or(named)
        }
        .unwrap_or_else(|| "(syntax)".into());
        let message = if msg.starts_with("unknown field") {
            format!("{msg}; remove it or check its spelling (config.example.toml lists every key)")
        } else if msg.starts_with("missing field") {
            format!("{msg}: this key is required (see config.example.toml)")
        } else {
            msg
        };
        Error::Config {
            file: self.path.to_path_buf(),
            line,
            key,
            message,
        }
    }
}

impl Error {
    fn with_key_line(self, text: &str, key: &str) -> Self {
        match self {
            Error::Config {
                file,
                key: k,
                message,
                ..
            } => {
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with(key))
                    .map(|i| i + 1)
                    .unwrap_or(1);
                Error::Config {
                    file,
                    line,
                    key: k,
                    message,
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> String {
        match parse(Path::new("/etc/k.toml"), text) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    const RCP: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    /// `prune_grace_hours` below the minimum is refused, naming the way out; the explicit
    /// opt-out (tests, throwaway repositories) accepts it, and the minimum itself passes.
    #[test]
    fn a_prune_grace_below_the_minimum_is_refused_unless_allowed() {
        let base = |retention: &str| {
            format!("[repository]\nurl = \"file:///r\"\n[encryption]\nrecipients = [\"{RCP}\"]\n[retention]\nkeep_last = 2\n{retention}")
        };
        let refused = check(&base("prune_grace_hours = 0\n"));
        assert!(
            refused.contains("retention.prune_grace_hours")
                && refused.contains("below the minimum of 1 hour")
                && refused.contains("allow_short_prune_grace = true"),
            "{refused}"
        );
        assert_eq!(
            check(&base(
                "prune_grace_hours = 0\nallow_short_prune_grace = true\n"
            )),
            "ok"
        );
        assert_eq!(check(&base("prune_grace_hours = 1\n")), "ok");
        assert_eq!(check(&base("")), "ok");
    }

    /// `[sources.capture]`: defaults from the source's name, every key checked and named.
    #[test]
    fn capture_tables_are_validated_naming_the_key() {
        let base = |capture: &str, extra: &str| {
            format!("[repository]\nurl = \"file:///r\"\n[encryption]\nrecipients = [\"{RCP}\"]\n[[sources]]\nname = \"Wed-Sync\"\nurl = \"postgres://u@h/db\"\n{capture}{extra}")
        };
        let c = parse(Path::new("/x"), &base("[sources.capture]\n", "")).expect("valid");
        let cap = c.sources[0].capture.clone().expect("capture");
        assert_eq!(cap.slot, "keepsake_wed_sync");
        assert_eq!(cap.publication, "keepsake_wed_sync");
        assert_eq!(cap.segment, CAPTURE_SEGMENT);
        assert_eq!(cap.max_slot_wal, 8 << 30);
        let c = parse(
            Path::new("/x"),
            &base(
                "[sources.capture]\nsegment = \"30s\"\nmax_slot_wal = \"512MiB\"\nslot = \"s1\"\n",
                "",
            ),
        )
        .expect("valid");
        let cap = c.sources[0].capture.clone().expect("capture");
        assert_eq!(cap.segment, std::time::Duration::from_secs(30));
        assert_eq!(cap.max_slot_wal, 512 << 20);
        assert_eq!(cap.slot, "s1");
        assert!(parse(Path::new("/x"), &base("", ""))
            .expect("valid")
            .sources[0]
            .capture
            .is_none());
        for (table, want) in [
            (
                "segment = \"2h\"",
                ":9: sources[0].capture.segment: \"2h\" is out of range",
            ),
            (
                "slot = \"Main-Slot\"",
                ":9: sources[0].capture.slot: \"Main-Slot\" is not a valid name",
            ),
            ("publication = \"\"", ":9: sources[0].capture.publication:"),
            (
                "max_slot_wal = \"8 gigs\"",
                ":9: sources[0].capture.max_slot_wal: \"8 gigs\" is not a size",
            ),
            (
                "max_slot_wal = \"1MiB\"",
                ":9: sources[0].capture.max_slot_wal: \"1MiB\" is too small",
            ),
            (
                "max_segment_size = \"1kB\"",
                ":9: sources[0].capture.max_segment_size:",
            ),
            ("slots = \"x\"", ":9: slots: unknown field"),
        ] {
            let e = check(&base(&format!("[sources.capture]\n{table}\n"), ""));
            assert!(e.contains(want), "{table}: {e}");
        }
        // Two capturing sources on one slot.
        let two = base(
            "[sources.capture]\nslot = \"s1\"\n",
            "[[sources]]\nname = \"b\"\nurl = \"postgres://u@h/b\"\n[sources.capture]\nslot = \"s1\"\n",
        );
        let e = check(&two);
        assert!(e.contains("which source \"Wed-Sync\" uses"), "{e}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let t = format!("[repository]\nurl = \"file:///r\"\ncolour = 1\n[encryption]\nrecipients = [\"{RCP}\"]\n");
        let e = check(&t);
        assert!(e.starts_with("/etc/k.toml:3: colour: unknown field"), "{e}");
    }

    #[test]
    fn bad_recipient_is_rejected_with_line() {
        let t = "[repository]\nurl = \"file:///r\"\n[encryption]\nrecipients = [\"age1nope\"]\n";
        let e = check(t);
        assert!(
            e.starts_with("/etc/k.toml:4: encryption.recipients:"),
            "{e}"
        );
    }

    #[test]
    fn missing_env_secret_is_named_not_shown() {
        let t = format!("[repository]\nurl = \"file:///r\"\n[encryption]\nrecipients = [\"{RCP}\"]\n[[sources]]\nname = \"a\"\nurl = \"env:KEEPSAKE_TEST_UNSET_VAR\"\n");
        let e = check(&t);
        assert!(
            e.contains(
                ":7: sources[0].url: environment variable KEEPSAKE_TEST_UNSET_VAR is not set"
            ),
            "{e}"
        );
    }

    /// Regression (issue 13, defect 7): `days = 100000000` passed `config check` and then
    /// panicked in prune (the clock overflowed).
    #[test]
    fn retention_out_of_range_is_refused_naming_the_key() {
        let t = format!("[repository]\nurl = \"file:///r\"\n[encryption]\nrecipients = [\"{RCP}\"]\n[retention]\nkeep_last = 3\ndays = 100000000\n");
        let e = check(&t);
        assert!(
            e.starts_with("/etc/k.toml:7: retention.days: 100000000 is out of range"),
            "{e}"
        );
        let ok = format!("[repository]\nurl = \"file:///r\"\n[encryption]\nrecipients = [\"{RCP}\"]\n[retention]\ndays = 36500\n");
        assert_eq!(check(&ok), "ok");
    }

    #[test]
    fn valid_minimal_config() {
        let t = format!("[repository]\nurl = \"file:///r\"\n[encryption]\nrecipients = [\"{RCP}\"]\n[[sources]]\nname = \"a\"\nurl = \"postgres://u:pw@h:5433/db?sslmode=require\"\n");
        let c = parse(Path::new("/x"), &t).expect("valid");
        assert_eq!(c.sources[0].conn.port, 5433);
        assert_eq!(
            c.sources[0].conn.password.as_ref().map(Secret::expose),
            Some("pw")
        );
        assert!(!format!("{c:?}").contains("pw@"));
    }
}
