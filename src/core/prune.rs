//! Prune: forget the backups the retention plan does not keep, then remove packs no kept
//! backup references — in two phases, so that a backup running concurrently (another process
//! or host) is never broken, without relying on conditional writes.
//!
//! Phase 1 marks unreferenced packs (`gc/marks`, sealed). Phase 2, in a later prune, deletes a
//! marked pack only if it is still unreferenced, was marked at least the grace period ago, and
//! no live backup lease (`locks/…`, written by every backup before it reads the index) started
//! before the mark. A backup that starts after a mark never reuses chunks of marked packs.
//! Index objects are rewritten without deleted packs; stale temporary objects are removed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::core::capture;
use crate::core::format::{IndexFile, FORMAT_VERSION};
use crate::core::repo::Repository;
use crate::core::retention::{self, Candidate, Decision, RetentionPolicy};
use crate::core::verify;
use crate::error::{Error, Result};

pub const MARKS: &str = "gc/marks";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Marks {
    /// Pack key → when it was first seen unreferenced.
    pub packs: BTreeMap<String, DateTime<Utc>>,
}

/// A running backup's lease.
///
/// The lease protocol (docs/retention.md, "Two-phase pack collection";
/// docs/repository-format.md, "Objects"; issue 13 defect 4):
/// - A backup takes its lease before it plans, renews it every [`LEASE_RENEW`] while it runs
///   (each renewal pushes `expires_at` to [`LEASE_TTL`] from then), and checks before it
///   commits that its lease is still there and unexpired — a backup whose lease was removed
///   or lapsed (a host asleep, storage unreachable for longer than the TTL) commits nothing.
/// - Prune reads leases before manifests (a backup that commits and drops its lease between
///   the two reads is seen by its manifest), and keeps a marked pack while a live lease started
///   before the mark.
/// - Clocks: lease times come from the backup's host, mark times from the prune's. Every
///   comparison allows [`MAX_CLOCK_SKEW`] in the safe direction (a lease counts as started
///   earlier and expiring later), so hosts whose clocks differ by less than that bound never
///   lose a pack a backup needs. Hosts must keep their clocks within it (NTP does by far).
/// - Process identity: a lease names its host, boot, pid namespace, pid and the process's
///   start time. Only a lease of this very host, boot and pid namespace whose process is gone
///   (or whose pid now belongs to a process started at another time) is taken as dead before
///   it expires; any other lease — another container with the same host name, another
///   machine — is trusted until it expires, which renewal keeps short.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub host: String,
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id` of the backup's host.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The pid namespace (`/proc/self/ns/pid` link text, e.g. `pid:[4026531836]`).
    #[serde(default)]
    pub pid_ns: Option<String>,
    /// The process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    #[serde(default)]
    pub proc_start: Option<u64>,
    /// When the lease was last renewed (the backup's clock).
    #[serde(default)]
    pub renewed_at: Option<DateTime<Utc>>,
}

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::hours(2);
/// How often a running backup renews its lease.
pub const LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// The clock difference between hosts every lease comparison tolerates.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(10);

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

fn pid_ns() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.display().to_string())
}

/// Start time of process `pid` in clock ticks since boot, from `/proc/PID/stat`.
fn proc_start(pid: u32) -> Option<u64> {
    match process_state(std::fs::read_to_string(format!("/proc/{pid}/stat"))) {
        Process::Started(t) => Some(t),
        _ => None,
    }
}

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, PartialEq, Eq)]
enum Process {
    /// Running, started at this many clock ticks after boot.
    Started(u64),
    /// No such process.
    Gone,
    /// It cannot be told (the file is unreadable, as under `hidepid`, or does not parse).
    Unknown,
}

fn process_state(read: std::io::Result<String>) -> Process {
    let stat = match read {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Process::Gone,
        Err(_) => return Process::Unknown,
    };
    // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().nth(19)?.parse().ok())
        .map_or(Process::Unknown, Process::Started)
}

impl Lease {
    /// A lease for this process, from `now`.
    pub fn new(now: DateTime<Utc>) -> Lease {
        let pid = std::process::id();
        Lease {
            started_at: now,
            expires_at: now + LEASE_TTL,
            host: this_host(),
            pid,
            boot_id: boot_id(),
            pid_ns: pid_ns(),
            proc_start: proc_start(pid),
            renewed_at: None,
        }
    }
}

async fn put_lease(repo: &Repository, key: &str, lease: &Lease) -> Result<()> {
    repo.put_sealed(
        key,
        &serde_json::to_vec(lease).map_err(|e| Error::Other(e.to_string()))?,
    )
    .await
}

/// Take a lease for a backup; returns its object key (remove it when done).
pub async fn take_lease(repo: &Repository) -> Result<String> {
    let now = Utc::now();
    let key = format!(
        "locks/{}-{}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        hex::encode(rand::random::<[u8; 4]>())
    );
    put_lease(repo, &key, &Lease::new(now)).await?;
    Ok(key)
}

/// Push the lease at `key` to [`LEASE_TTL`] from now. Refuses (and leaves it alone) when it is
/// gone: a prune took it for dead, and the backup must not commit.
pub async fn renew_lease(repo: &Repository, key: &str) -> Result<()> {
    let mut lease = read_lease(repo, key).await?;
    let now = Utc::now();
    lease.expires_at = now + LEASE_TTL;
    lease.renewed_at = Some(now);
    put_lease(repo, key, &lease).await
}

async fn read_lease(repo: &Repository, key: &str) -> Result<Lease> {
    if !repo.store().exists(key).await? {
        return Err(Error::Repository(format!(
            "this backup's lease {key} is gone (a prune took it for dead: the backup ran past its lease, or its host's clock is off by more than {} minutes): nothing was committed; run the backup again",
            MAX_CLOCK_SKEW.num_minutes()
        )));
    }
    let plain = repo.get_sealed(key).await?;
    serde_json::from_slice(&plain).map_err(|e| Error::Damage(format!("{key}: {e}")))
}

/// Before a commit: the lease at `key` must still be there, and must not expire within the
/// skew bound (a prune on a host whose clock runs ahead would already take it for dead).
pub async fn check_lease(repo: &Repository, key: &str) -> Result<()> {
    let lease = read_lease(repo, key).await?;
    if lease.expires_at - MAX_CLOCK_SKEW <= Utc::now() {
        return Err(Error::Repository(format!(
            "this backup's lease {key} expired at {} (it could not be renewed in time): nothing was committed; run the backup again",
            lease.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
        )));
    }
    Ok(())
}

/// This machine's name, as leases record it.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl Lease {
    /// Whether the backup holding it is known to be gone: expired (by more than the skew
    /// bound), or taken by a process of this very host, boot and pid namespace that no longer
    /// runs. Leases this host cannot judge are trusted until they expire.
    pub fn dead(&self, now: chrono::DateTime<Utc>) -> bool {
        if self.expires_at + MAX_CLOCK_SKEW <= now {
            return true;
        }
        let here = self.host == this_host()
            && self.boot_id.is_some()
            && self.boot_id == boot_id()
            && self.pid_ns.is_some()
            && self.pid_ns == pid_ns();
        if !here {
            return false;
        }
        let pid = self.pid;
        self.dead_by(process_state(std::fs::read_to_string(format!(
            "/proc/{pid}/stat"
        ))))
    }

    /// Whether a lease of this host is dead given what `/proc` says of its process: only a
    /// process known gone, or a pid now held by a process started at another time. A `/proc`
    /// that cannot be read proves nothing, and the lease keeps protecting its backup (issue 28,
    /// item 8: an unreadable `/proc/PID/stat` made a live lease "dead").
    fn dead_by(&self, now: Process) -> bool {
        match (self.proc_start, now) {
            (_, Process::Gone) => true,
            (Some(then), Process::Started(now)) => then != now,
            (None, Process::Started(_)) | (_, Process::Unknown) => false,
        }
    }

    /// Whether the backup holding it may have started before `mark` (a prune's clock).
    pub fn started_before(&self, mark: DateTime<Utc>) -> bool {
        self.started_at - MAX_CLOCK_SKEW <= mark
    }
}

/// Forget backup `id`: its manifest goes first (the backup no longer exists from that moment),
/// then its verification records. Its packs stay until a prune finds them unreferenced.
pub async fn forget(repo: &Repository, id: &str) -> Result<()> {
    repo.store().delete(&format!("snapshots/{id}")).await?;
    for o in repo.store().list(&format!("verifications/{id}/")).await? {
        repo.store().delete(&o.key).await?;
    }
    Ok(())
}

/// The packs currently marked for deletion.
pub async fn marks(repo: &Repository) -> Result<Marks> {
    if !repo.store().exists(MARKS).await? {
        return Ok(Marks::default());
    }
    let plain = repo.get_sealed(MARKS).await?;
    serde_json::from_slice(&plain).map_err(|e| Error::Damage(format!("{MARKS}: {e}")))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub plan: Vec<Decision>,
    pub forgotten: Vec<String>,
    /// Packs newly marked unreferenced (deleted by a later prune after the grace period).
    pub marked: Vec<String>,
    /// Marked packs kept for now, with why.
    pub waiting: Vec<(String, String)>,
    pub deleted_packs: Vec<String>,
    pub deleted_bytes: u64,
    pub stale_temporaries: usize,
    /// Why pack collection was skipped, if it was.
    pub gc_skipped: Option<String>,
    /// Change segments (continuous capture) that no kept backup needs: deleted (or, for a dry
    /// run, that would be).
    #[serde(default)]
    pub forgotten_segments: usize,
}

pub async fn prune(
    repo: &Repository,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<PruneReport> {
    if dry_run {
        return prune_now(repo, policy, true).await;
    }
    let turn = Turn {
        store: repo.store().clone(),
        key: take_prune_turn(repo, PRUNE_WAIT).await?,
    };
    let r = prune_now(repo, policy, false).await;
    if let Err(e) = turn.store.delete(&turn.key).await {
        // Found dead by the next prune (this process is gone) or when it expires.
        tracing::warn!("could not remove this prune's turn {}: {e}", turn.key);
    }
    r
}

/// A prune's turn, given back when the prune ends — also when it is cancelled (its future
/// dropped): a daemon that lives on must not hold the turn until it expires.
struct Turn {
    store: std::sync::Arc<dyn crate::storage::ObjectStore>,
    key: String,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (store, key) = (self.store.clone(), self.key.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            // Deleting an absent key is not an error: a second delete after the first is harmless.
            rt.spawn(async move {
                let _ = store.delete(&key).await;
            });
        }
    }
}

/// Where prunes take their turn (a [`Lease`] each, apart from the backups' leases).
pub const PRUNE_TURNS: &str = "locks/prune/";
/// How long a prune waits for earlier ones to end before it gives up.
pub const PRUNE_WAIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Prunes of one repository run one at a time — two at once would overwrite each other's
/// marks, and a mark a backup must see while its pack is deleted could be lost. Without
/// conditional writes: each prune writes its turn (`locks/prune/<time>-<random>`), then waits
/// while a live turn ordered before its own exists. Two prunes that start together both see
/// both turns and agree on the order; one whose process is gone (this host) or whose turn
/// expired no longer counts. Returns the turn's key (remove it when done).
async fn take_prune_turn(repo: &Repository, wait: std::time::Duration) -> Result<String> {
    let now = Utc::now();
    let key = format!(
        "{PRUNE_TURNS}{}-{}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        hex::encode(rand::random::<[u8; 4]>())
    );
    put_lease(repo, &key, &Lease::new(now)).await?;
    let started = std::time::Instant::now();
    loop {
        let mut ahead = None;
        for o in repo.store().list(PRUNE_TURNS).await? {
            if o.key >= key {
                continue;
            }
            let lease = repo
                .get_sealed_opt(&o.key)
                .await
                .ok()
                .flatten()
                .and_then(|p| serde_json::from_slice::<Lease>(&p).ok());
            match lease {
                Some(l) if !l.dead(Utc::now()) => ahead = Some(l),
                // Its prune is gone: its turn is over.
                Some(_) => repo.store().delete(&o.key).await?,
                // Unreadable, or removed since the listing: not a prune to wait for.
                None => {}
            }
        }
        let Some(l) = ahead else {
            return Ok(key);
        };
        if started.elapsed() >= wait {
            let _ = repo.store().delete(&key).await;
            return Err(Error::Conflict(format!(
                "another prune of this repository has been running since {} (host {}, pid {}); this one waited {} minutes and changed nothing: run it again when that one has ended",
                l.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                l.host,
                l.pid,
                wait.as_secs() / 60
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn prune_now(
    repo: &Repository,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<PruneReport> {
    let now = Utc::now();
    let grace = Duration::hours(i64::from(policy.prune_grace_hours.unwrap_or(24)));
    // Leases before manifests: a backup that commits (and drops its lease) between the two
    // reads is then seen by its manifest; read the other way round it would be seen by neither.
    let (leases, unreadable) = live_leases(repo, now, dry_run).await?;
    let (ms, bad) = repo.manifests_lenient().await?;
    let records = verify::records(repo).await?;
    let candidates: Vec<Candidate> = ms
        .iter()
        .map(|m| Candidate {
            id: m.id.clone(),
            source: m.source.name.clone(),
            kind: m.kind,
            started_at: m.started_at,
            verified: verify::proven(records.get(&m.id)).0,
            based_on: m.based_on.clone(),
        })
        .collect();
    let plan = retention::plan(policy, &candidates, now);
    let forgotten: Vec<String> = plan
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.id.clone())
        .collect();
    let mut report = PruneReport {
        dry_run,
        plan,
        forgotten: forgotten.clone(),
        marked: Vec::new(),
        waiting: Vec::new(),
        deleted_packs: Vec::new(),
        deleted_bytes: 0,
        stale_temporaries: 0,
        gc_skipped: None,
        forgotten_segments: 0,
    };
    if !dry_run {
        for id in &forgotten {
            forget(repo, id).await?;
        }
    }
    if !bad.is_empty() {
        report.gc_skipped = Some(format!(
            "{} manifest(s) cannot be read, so it is unknown which packs they need: no pack was removed; run `keepsake list` to see which",
            bad.len()
        ));
        return Ok(report);
    }

    let forgotten: BTreeSet<&String> = forgotten.iter().collect();
    // Change capture: the segments older than what the oldest kept dump of their source needs
    // go with the dumps forgotten (and the schema changes recorded before it).
    for source in capture::sources(repo).await? {
        let oldest = ms
            .iter()
            .filter(|m| m.source.name == source && !forgotten.contains(&m.id))
            .filter_map(|m| m.snapshot.as_ref())
            .min_by_key(|s| s.after);
        let keys = capture::unneeded_segments(repo, &source, oldest).await?;
        report.forgotten_segments += keys.len();
        if !dry_run {
            for k in &keys {
                repo.store().delete(k).await?;
            }
            if let Some(o) = oldest {
                for k in capture::schema_changes_before(repo, &source, o.after).await? {
                    repo.store().delete(&k).await?;
                }
            }
        }
    }
    let referenced: BTreeSet<String> = ms
        .iter()
        .filter(|m| !forgotten.contains(&m.id))
        .flat_map(|m| m.packs.iter().map(|p| p.key()))
        .collect();
    let packs = repo.store().list("packs/").await?;
    // Marks that cannot be read are written anew (issue 28, item 6): every unreferenced pack
    // is marked from now, so none is deleted before a whole grace period has passed — the
    // safe side — and the report says so.
    let old = match marks(repo).await {
        Ok(m) => m,
        Err(e @ Error::Damage(_)) => {
            report.gc_skipped = Some(format!(
                "{MARKS} cannot be read ({e}): every unreferenced pack is marked anew, so none is deleted before the grace period has passed again"
            ));
            Marks::default()
        }
        Err(e) => return Err(e),
    };
    let mut new = Marks::default();
    let mut deleted = BTreeSet::new();
    for p in &packs {
        if referenced.contains(&p.key) {
            continue;
        }
        match old.packs.get(&p.key) {
            None => {
                report.marked.push(p.key.clone());
                new.packs.insert(p.key.clone(), now);
            }
            Some(t) => {
                let lease_before = leases.iter().any(|l| l.started_before(*t));
                if let Some((key, why)) = unreadable.first() {
                    report.waiting.push((
                        p.key.clone(),
                        format!(
                            "lease {key} cannot be read ({why}): it may be a running backup's, so no pack is deleted while it is there; remove it by hand once no backup runs"
                        ),
                    ));
                    new.packs.insert(p.key.clone(), *t);
                } else if now - *t < grace {
                    report.waiting.push((
                        p.key.clone(),
                        format!(
                            "marked {}; grace period not over",
                            t.format("%Y-%m-%d %H:%M:%S UTC")
                        ),
                    ));
                    new.packs.insert(p.key.clone(), *t);
                } else if lease_before {
                    report.waiting.push((
                        p.key.clone(),
                        "a backup that started before the mark is still running".into(),
                    ));
                    new.packs.insert(p.key.clone(), *t);
                } else {
                    report.deleted_packs.push(p.key.clone());
                    report.deleted_bytes += p.size;
                    deleted.insert(p.key.clone());
                }
            }
        }
    }
    if !unreadable.is_empty() {
        report.gc_skipped = Some(format!(
            "{} cannot be read: {} may be a running backup's, so no pack was deleted; remove {} by hand once no backup runs",
            unreadable
                .iter()
                .map(|(k, why)| format!("lease {k} ({why})"))
                .collect::<Vec<_>>()
                .join(", "),
            if unreadable.len() == 1 { "it" } else { "each" },
            if unreadable.len() == 1 { "it" } else { "them" },
        ));
    }
    if dry_run {
        return Ok(report);
    }
    // New marks carry the time they are written, not the prune's start (issue 28, item 3): a
    // backup that started in between (and may have adopted or written one of these packs)
    // holds a lease that started before the mark, so no later prune deletes the pack while it
    // runs; a backup that starts after sees the mark and never adopts the pack.
    let stamp = Utc::now();
    for k in &report.marked {
        new.packs.insert(k.clone(), stamp);
    }
    // The packs being deleted stay marked until no index lists them any more: a backup that
    // plans at any moment of the deletion sees them marked (and never reuses them) or not
    // indexed at all. Marks first (a crash never forgets a mark), then deletions, then indexes,
    // then the marks without the deleted packs.
    let mut deleting = new.clone();
    for k in &deleted {
        if let Some(t) = old.packs.get(k) {
            deleting.packs.insert(k.clone(), *t);
        }
    }
    write_marks(repo, &deleting).await?;
    for k in &deleted {
        repo.store().delete(k).await?;
    }
    if !deleted.is_empty() {
        rewrite_indexes(repo, &deleted).await?;
        write_marks(repo, &new).await?;
    }
    // At least an hour: a running backup's file being written is never "stale".
    let tmp_age = grace.max(Duration::hours(1)).to_std().unwrap_or_default();
    report.stale_temporaries = repo.store().remove_stale_temporaries(tmp_age).await?;
    Ok(report)
}

async fn write_marks(repo: &Repository, marks: &Marks) -> Result<()> {
    repo.put_sealed(
        MARKS,
        &serde_json::to_vec(marks).map_err(|e| Error::Other(e.to_string()))?,
    )
    .await
}

/// The leases of backups that may still commit; dead ones (expired, or of a process gone from
/// this host) are removed unless `dry_run`.
/// The live backup leases, and the ones that cannot be read (key, why). A lease deleted since
/// the listing (its backup ended) is skipped; a storage error stops the prune.
async fn live_leases(
    repo: &Repository,
    now: chrono::DateTime<Utc>,
    dry_run: bool,
) -> Result<(Vec<Lease>, Vec<(String, String)>)> {
    let mut leases = Vec::new();
    let mut unreadable = Vec::new();
    for o in repo.store().list("locks/").await? {
        // Prunes' turns are not backups (see `take_prune_turn`).
        if o.key.starts_with(PRUNE_TURNS) {
            continue;
        }
        let Some(sealed) = repo.store().get(&o.key).await? else {
            continue;
        };
        let lease = repo.open_sealed(&o.key, &sealed).and_then(|p| {
            serde_json::from_slice::<Lease>(&p).map_err(|e| Error::Damage(e.to_string()))
        });
        match lease {
            Ok(l) if !l.dead(now) => leases.push(l),
            // Expired, or its process is gone: that backup will never commit.
            Ok(_) if !dry_run => repo.store().delete(&o.key).await?,
            Ok(_) => {}
            // It may be a running backup's (issue 28, item 4: it used to count as absent).
            Err(e) => unreadable.push((o.key.clone(), e.to_string())),
        }
    }
    Ok((leases, unreadable))
}

/// Rewrite every index object that lists a deleted pack.
async fn rewrite_indexes(repo: &Repository, deleted: &BTreeSet<String>) -> Result<()> {
    for o in repo.store().list("index/").await? {
        // One index object that cannot be read does not fail the prune after packs are gone
        // (issue 28, item 6): backups skip it too (its chunks are stored again).
        let idx = match repo.get_sealed_opt(&o.key).await {
            Ok(Some(plain)) => serde_json::from_slice::<IndexFile>(&plain)
                .map_err(|e| Error::Damage(format!("{}: {e}", o.key))),
            Ok(None) => continue,
            Err(e @ Error::Storage(_)) => return Err(e),
            Err(e) => Err(e),
        };
        let mut idx = match idx {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("skipping an index object that cannot be read: {e}");
                continue;
            }
        };
        let before = idx.packs.len();
        idx.packs
            .retain(|p| !deleted.contains(&crate::core::format::pack_key(&p.name)));
        if idx.packs.len() == before {
            continue;
        }
        if !idx.packs.is_empty() {
            idx.format_version = FORMAT_VERSION;
            repo.write_index(&idx).await?;
        }
        repo.store().delete(&o.key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::crypto::{ChunkId, Identities, Recipients};
    use crate::core::format::{pack_key, BackupType, ChunkLoc, IndexPack};
    use crate::storage::memory::MemoryStore;
    use crate::storage::{ObjectInfo, ObjectStore};
    use std::sync::Arc;

    /// A new repository on `store`, with a key of its own.
    async fn new_repo(store: Arc<dyn ObjectStore>) -> Repository {
        let id = age::x25519::Identity::generate();
        Repository::init(
            store,
            "mem",
            Recipients(vec![id.to_public()]),
            Identities::from_identity(id),
        )
        .await
        .expect("init")
    }

    /// A store that stops before deleting a pack (or writing `put_pause`) until the test lets
    /// it go on.
    #[derive(Debug)]
    struct PausingStore {
        inner: MemoryStore,
        reached: tokio::sync::Notify,
        resume: tokio::sync::Notify,
        put_pause: Option<&'static str>,
        list_pause: Option<&'static str>,
    }

    #[async_trait::async_trait]
    impl ObjectStore for PausingStore {
        async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
            if self.put_pause == Some(key) {
                self.reached.notify_one();
                self.resume.notified().await;
            }
            self.inner.put(key, data).await
        }
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
            self.inner.get(key).await
        }
        async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.inner.get_range(key, offset, len).await
        }
        async fn head(&self, key: &str) -> Result<Option<u64>> {
            self.inner.head(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
            if self.list_pause == Some(prefix) {
                self.reached.notify_one();
                self.resume.notified().await;
            }
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            if self.put_pause.is_none() && self.list_pause.is_none() && key.starts_with("packs/") {
                self.reached.notify_one();
                self.resume.notified().await;
            }
            self.inner.delete(key).await
        }
    }

    /// Regression (issue 13, defect 1): a backup that plans while prune is deleting packs
    /// must not reuse them. Prune used to rewrite its marks without the packs it was about to
    /// delete, then delete them one by one, then rewrite the indexes: in between, a backup saw
    /// them indexed, present and unmarked, adopted their chunks, and committed a manifest
    /// naming a deleted pack.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_planning_during_pack_deletion_reuses_none_of_them() {
        let store = Arc::new(PausingStore {
            inner: MemoryStore::new(),
            reached: tokio::sync::Notify::new(),
            resume: tokio::sync::Notify::new(),
            put_pause: None,
            list_pause: None,
        });
        let repo = Arc::new(new_repo(store.clone()).await);
        // An orphan pack (an interrupted backup's), indexed and present.
        let name = "ab".repeat(32);
        repo.write_index(&IndexFile {
            format_version: FORMAT_VERSION,
            backup_id: "interrupted".into(),
            packs: vec![IndexPack {
                name: name.clone(),
                size: 10,
                chunks: vec![ChunkLoc {
                    id: ChunkId([7; 32]),
                    pack: 0,
                    offset: 0,
                    length: 10,
                    raw_len: 10,
                }],
            }],
        })
        .await
        .expect("index");
        store
            .put(&pack_key(&name), vec![0; 10])
            .await
            .expect("pack");
        let adoptable = || async {
            crate::core::backup::plan(&repo, "wedsync", Some(BackupType::Full))
                .await
                .expect("plan")
                .2
                .len()
        };
        assert_eq!(adoptable().await, 1, "an unmarked orphan is adopted");
        let policy = RetentionPolicy {
            prune_grace_hours: Some(0),
            ..Default::default()
        };
        // First prune marks it; from then on no backup adopts it.
        let r = prune(&repo, &policy, false).await.expect("mark");
        assert_eq!(r.marked, vec![pack_key(&name)]);
        assert_eq!(adoptable().await, 0);
        // Second prune deletes it: pause right before the deletion.
        let pruning = {
            let repo = repo.clone();
            let policy = policy.clone();
            tokio::spawn(async move { prune(&repo, &policy, false).await })
        };
        store.reached.notified().await;
        assert_eq!(
            adoptable().await,
            0,
            "a backup planning while prune deletes packs must not reuse them"
        );
        store.resume.notify_one();
        let r = pruning.await.expect("task").expect("prune");
        assert_eq!(r.deleted_packs, vec![pack_key(&name)]);
        // Gone from the store, the index and the marks.
        assert_eq!(adoptable().await, 0);
        assert!(repo.load_index().await.expect("index").is_empty());
        assert!(marks(&repo).await.expect("marks").packs.is_empty());
    }

    /// Regression (issue 28, item 3): prune stamped new marks with its start time but wrote
    /// them later; a backup that started in between (and adopted or wrote the pack) held a
    /// lease that started after the mark, so a later prune could delete the pack under it.
    /// Marks now carry the time they are written: later than any lease taken before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_marks_carry_the_time_they_are_written() {
        let store = Arc::new(PausingStore {
            inner: MemoryStore::new(),
            reached: tokio::sync::Notify::new(),
            resume: tokio::sync::Notify::new(),
            put_pause: None,
            list_pause: Some("packs/"),
        });
        let repo = Arc::new(new_repo(store.clone()).await);
        let name = "cd".repeat(32);
        store
            .put(&pack_key(&name), vec![0; 10])
            .await
            .expect("pack");
        let policy = RetentionPolicy {
            prune_grace_hours: Some(0),
            ..Default::default()
        };
        let pruning = {
            let repo = repo.clone();
            let policy = policy.clone();
            tokio::spawn(async move { prune(&repo, &policy, false).await })
        };
        // The prune is under way (about to list the packs it will mark); a backup starts.
        store.reached.notified().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let lease_key = take_lease(&repo).await.expect("lease");
        let lease = read_lease(&repo, &lease_key).await.expect("read lease");
        store.resume.notify_one();
        let r = pruning.await.expect("task").expect("prune");
        assert_eq!(r.marked, vec![pack_key(&name)]);
        let t = marks(&repo).await.expect("marks").packs[&pack_key(&name)];
        assert!(
            t >= lease.started_at,
            "marked at {t}, before the backup that started at {} while the prune ran",
            lease.started_at
        );
    }

    /// Regression (issue 28, item 4): a lease that could not be read counted as absent, so
    /// the backup it belongs to lost its protection. It now holds back every deletion, and
    /// the report says which lease and what to do.
    #[tokio::test]
    async fn an_unreadable_lease_holds_back_every_deletion() {
        let store = Arc::new(MemoryStore::new());
        let repo = new_repo(store.clone()).await;
        let name = "ef".repeat(32);
        store
            .put(&pack_key(&name), vec![0; 10])
            .await
            .expect("pack");
        let policy = RetentionPolicy {
            prune_grace_hours: Some(0),
            ..Default::default()
        };
        let r = prune(&repo, &policy, false).await.expect("mark");
        assert_eq!(r.marked, vec![pack_key(&name)]);
        store
            .put(
                "locks/20261207T000000.000Z-0badbeef",
                b"not a sealed lease".to_vec(),
            )
            .await
            .expect("lease");
        let r = prune(&repo, &policy, false).await.expect("prune");
        assert!(r.deleted_packs.is_empty(), "{r:?}");
        assert!(
            r.waiting[0]
                .1
                .contains("lease locks/20261207T000000.000Z-0badbeef cannot be read"),
            "{r:?}"
        );
        assert!(r
            .gc_skipped
            .as_deref()
            .is_some_and(|g| g.contains("by hand")));
        assert!(store.head(&pack_key(&name)).await.expect("head").is_some());
        // Removed by hand: the next prune deletes the pack.
        store
            .delete("locks/20261207T000000.000Z-0badbeef")
            .await
            .expect("remove");
        let r = prune(&repo, &policy, false).await.expect("prune");
        assert_eq!(r.deleted_packs, vec![pack_key(&name)]);
    }

    /// Regression (issue 28, item 6): a `gc/marks` that could not be read stopped every
    /// backup and every prune. A backup now goes on without adopting anything, and a prune
    /// marks every unreferenced pack anew (deleting none) and says so.
    #[tokio::test]
    async fn unreadable_marks_stop_neither_backups_nor_prunes() {
        let store = Arc::new(MemoryStore::new());
        let repo = new_repo(store.clone()).await;
        let name = "12".repeat(32);
        repo.write_index(&IndexFile {
            format_version: FORMAT_VERSION,
            backup_id: "interrupted".into(),
            packs: vec![IndexPack {
                name: name.clone(),
                size: 10,
                chunks: vec![ChunkLoc {
                    id: ChunkId([9; 32]),
                    pack: 0,
                    offset: 0,
                    length: 10,
                    raw_len: 10,
                }],
            }],
        })
        .await
        .expect("index");
        store
            .put(&pack_key(&name), vec![0; 10])
            .await
            .expect("pack");
        store.put(MARKS, b"torn".to_vec()).await.expect("marks");
        let (_, _, known) = crate::core::backup::plan(&repo, "wedsync", Some(BackupType::Full))
            .await
            .expect("a backup plans despite the marks");
        assert!(known.is_empty(), "and adopts nothing");
        let policy = RetentionPolicy {
            prune_grace_hours: Some(0),
            ..Default::default()
        };
        let r = prune(&repo, &policy, false).await.expect("prune");
        assert_eq!(r.marked, vec![pack_key(&name)]);
        assert!(r.deleted_packs.is_empty());
        assert!(
            r.gc_skipped
                .as_deref()
                .is_some_and(|g| g.contains("marked anew")),
            "{r:?}"
        );
        assert!(marks(&repo).await.is_ok(), "written anew");
    }

    /// Issue 13 defect 4: who may take a lease for dead, and when.
    #[test]
    fn a_lease_is_dead_only_when_this_host_can_tell() {
        let now = Utc::now();
        let mine = Lease::new(now);
        assert!(mine.boot_id.is_some() && mine.pid_ns.is_some() && mine.proc_start.is_some());
        assert!(!mine.dead(now), "our own running process");
        // The same pid, reused by a process started at another time.
        let reused = Lease {
            proc_start: mine.proc_start.map(|s| s + 1),
            ..mine.clone()
        };
        assert!(reused.dead(now));
        // A process of this host, boot and namespace that is gone.
        let gone = Lease {
            pid: u32::MAX - 7,
            ..mine.clone()
        };
        assert!(gone.dead(now));
        // Another pid namespace (a container with the same host name): not judged by pid.
        let container = Lease {
            pid_ns: Some("pid:[1]".into()),
            ..gone.clone()
        };
        assert!(!container.dead(now));
        // Another boot of this host: its pids mean nothing here.
        let rebooted = Lease {
            boot_id: Some("another-boot".into()),
            ..gone.clone()
        };
        assert!(!rebooted.dead(now));
        // A lease written before leases named their process: trusted until it expires.
        let old = Lease {
            boot_id: None,
            pid_ns: None,
            proc_start: None,
            ..gone.clone()
        };
        assert!(!old.dead(now));
        // Expiry counts only past the skew bound (the prune's clock may run ahead).
        let lapsed = Lease {
            expires_at: now - Duration::minutes(5),
            ..container.clone()
        };
        assert!(!lapsed.dead(now));
        assert!(lapsed.dead(now + MAX_CLOCK_SKEW));
        // A lease whose clock runs ahead still counts as started before a mark.
        let ahead = Lease {
            started_at: now + Duration::minutes(9),
            ..mine.clone()
        };
        assert!(ahead.started_before(now));
        assert!(!Lease {
            started_at: now + Duration::minutes(11),
            ..mine
        }
        .started_before(now));
    }

    #[tokio::test]
    async fn renewal_extends_a_lease_and_a_gone_or_lapsed_lease_stops_the_commit() {
        let (text, rcp) = crate::core::crypto::generate_identity();
        let line = text.lines().find(|l| l.starts_with("AGE-")).unwrap();
        let ids = Identities::from_identity(std::str::FromStr::from_str(line).unwrap());
        let rcps = Recipients(vec![crate::core::crypto::parse_recipient(&rcp).unwrap()]);
        let mem: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let repo = Repository::init(mem, "mem", rcps, ids).await.unwrap();
        let key = take_lease(&repo).await.unwrap();
        check_lease(&repo, &key).await.unwrap();
        // Lapsed: written with an expiry inside the skew bound.
        let mut l = read_lease(&repo, &key).await.unwrap();
        l.expires_at = Utc::now() + Duration::minutes(3);
        put_lease(&repo, &key, &l).await.unwrap();
        let e = check_lease(&repo, &key).await.unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        renew_lease(&repo, &key).await.unwrap();
        let l = read_lease(&repo, &key).await.unwrap();
        assert!(l.expires_at > Utc::now() + LEASE_TTL - Duration::minutes(1));
        assert!(l.renewed_at.is_some());
        check_lease(&repo, &key).await.unwrap();
        // Gone (a prune took it for dead): no renewal brings it back, no commit.
        repo.store().delete(&key).await.unwrap();
        assert!(renew_lease(&repo, &key).await.is_err());
        assert!(!repo.store().exists(&key).await.unwrap());
        let e = check_lease(&repo, &key).await.unwrap_err();
        assert!(e.to_string().contains("is gone"), "{e}");
    }

    /// Issue 28, item 8: a `/proc` that cannot be read (hidepid, a permission error) is not
    /// proof that a lease's process is gone.
    #[test]
    fn an_unreadable_proc_never_makes_a_lease_dead() {
        let l = Lease::new(Utc::now());
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(process_state(Err(denied)), Process::Unknown);
        assert!(!l.dead_by(Process::Unknown));
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(process_state(Err(gone)), Process::Gone);
        assert!(l.dead_by(Process::Gone));
        let line = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19".to_string();
        assert_eq!(process_state(Ok(line)), Process::Started(777));
        assert_eq!(process_state(Ok("garbage".into())), Process::Unknown);
        // A pid reused by a process started at another time.
        let mut other = l.clone();
        other.proc_start = Some(1);
        assert!(other.dead_by(Process::Started(2)));
        assert!(!other.dead_by(Process::Started(1)));
    }

    /// Regression (crash harness, two daemons on S3): two prunes at once overwrote each
    /// other's marks, and the store's size check failed one of them ("the store reports 445
    /// bytes stored, 542 were sent"). Prunes now take turns: a later one waits while an
    /// earlier live one runs, gives up after its wait (changing nothing, naming the other),
    /// and goes on as soon as the earlier turn is given back; a dead turn does not count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prunes_take_turns() {
        let repo = Arc::new(new_repo(Arc::new(MemoryStore::new())).await);
        let turns = || async { repo.store().list(PRUNE_TURNS).await.expect("list") };
        // An earlier prune of this very process: alive, so it holds its turn.
        let held = format!("{PRUNE_TURNS}20000101T000000.000000Z-00000000");
        put_lease(&repo, &held, &Lease::new(Utc::now()))
            .await
            .expect("lease");
        let e = take_prune_turn(&repo, std::time::Duration::from_millis(800))
            .await
            .expect_err("waits, then gives up");
        assert!(matches!(e, Error::Conflict(_)), "{e:?}");
        assert!(e.to_string().contains("another prune"), "{e}");
        assert_eq!(
            turns().await.len(),
            1,
            "the refused prune left no turn behind"
        );

        let r2 = repo.clone();
        let h = held.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            r2.store().delete(&h).await.expect("give the turn back");
        });
        let t = std::time::Instant::now();
        let mine = take_prune_turn(&repo, std::time::Duration::from_secs(30))
            .await
            .expect("its turn comes");
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(500),
            "it waited"
        );
        assert_eq!(turns().await.len(), 1);

        // A turn whose lease expired long ago is over: taken away, not waited for.
        repo.store().delete(&mine).await.expect("done");
        let mut old = Lease::new(Utc::now() - Duration::hours(5));
        old.expires_at = Utc::now() - Duration::hours(3);
        put_lease(&repo, &held, &old).await.expect("lease");
        take_prune_turn(&repo, std::time::Duration::from_millis(100))
            .await
            .expect("a dead turn does not count");
    }
}
