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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub host: String,
    pub pid: u32,
}

/// Take a lease for a backup; returns its object key (remove it when done).
pub async fn take_lease(repo: &Repository) -> Result<String> {
    let now = Utc::now();
    let lease = Lease {
        started_at: now,
        expires_at: now + Duration::hours(24),
        host: this_host(),
        pid: std::process::id(),
    };
    let key = format!(
        "locks/{}-{}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        hex::encode(rand::random::<[u8; 4]>())
    );
    repo.put_sealed(
        &key,
        &serde_json::to_vec(&lease).map_err(|e| Error::Other(e.to_string()))?,
    )
    .await?;
    Ok(key)
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
    /// Whether the backup holding it is known to be gone: expired, or taken on this host by a
    /// process that no longer exists (killed; leases of other hosts are trusted until expiry).
    pub fn dead(&self, now: chrono::DateTime<Utc>) -> bool {
        self.expires_at <= now
            || (self.host == this_host()
                && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
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
}

pub async fn prune(
    repo: &Repository,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<PruneReport> {
    let now = Utc::now();
    let grace = Duration::hours(i64::from(policy.prune_grace_hours.unwrap_or(24)));
    // Leases before manifests: a backup that commits (and drops its lease) between the two
    // reads is then seen by its manifest; read the other way round it would be seen by neither.
    let leases = live_leases(repo, now, dry_run).await?;
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
    };
    if !dry_run {
        for id in &forgotten {
            forget(repo, id).await?;
        }
    }
    if !bad.is_empty() {
        report.gc_skipped = Some(format!(
            "{} manifest(s) cannot be read, so it is unknown which packs they need: no pack was removed",
            bad.len()
        ));
        return Ok(report);
    }

    let forgotten: BTreeSet<&String> = forgotten.iter().collect();
    let referenced: BTreeSet<String> = ms
        .iter()
        .filter(|m| !forgotten.contains(&m.id))
        .flat_map(|m| m.packs.iter().map(|p| p.key()))
        .collect();
    let packs = repo.store().list("packs/").await?;
    let old = marks(repo).await?;
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
                let lease_before = leases.iter().any(|l| l.started_at <= *t);
                if now - *t < grace {
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
    if dry_run {
        return Ok(report);
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
async fn live_leases(
    repo: &Repository,
    now: chrono::DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<Lease>> {
    let mut leases = Vec::new();
    for o in repo.store().list("locks/").await? {
        match repo
            .get_sealed(&o.key)
            .await
            .ok()
            .and_then(|p| serde_json::from_slice::<Lease>(&p).ok())
        {
            Some(l) if !l.dead(now) => leases.push(l),
            // Expired, or its process is gone: that backup will never commit.
            Some(_) if !dry_run => repo.store().delete(&o.key).await?,
            _ => {}
        }
    }
    Ok(leases)
}

/// Rewrite every index object that lists a deleted pack.
async fn rewrite_indexes(repo: &Repository, deleted: &BTreeSet<String>) -> Result<()> {
    for o in repo.store().list("index/").await? {
        let plain = repo.get_sealed(&o.key).await?;
        let mut idx: IndexFile =
            serde_json::from_slice(&plain).map_err(|e| Error::Damage(format!("{}: {e}", o.key)))?;
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

    /// A store that stops before deleting a pack until the test lets it go on.
    #[derive(Debug)]
    struct PausingStore {
        inner: MemoryStore,
        reached: tokio::sync::Notify,
        resume: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl ObjectStore for PausingStore {
        async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
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
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            if key.starts_with("packs/") {
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
        });
        let id = age::x25519::Identity::generate();
        let repo = Arc::new(
            Repository::init(
                store.clone(),
                "mem",
                Recipients(vec![id.to_public()]),
                Identities::from_identity(id),
            )
            .await
            .expect("init"),
        );
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
}
