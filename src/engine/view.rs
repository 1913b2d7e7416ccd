//! The repository as the engine last read it: every manifest and verification record, cached
//! by object name. Faces that answer often (the control API's status and list, the console's
//! Overview) read this instead of the repository.
//!
//! Invariants: manifests and verification records are immutable and uniquely named, so a
//! cached copy never goes stale — only the listings can change. Each snapshot lists
//! `snapshots/` and `verifications/` again (at most once per [`TTL`], and at once after this
//! engine changed something), reads only objects it has not seen, and forgets objects no
//! longer listed; a backup written by another host appears within [`TTL`]. One refresh at a
//! time: concurrent callers share it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::core::drill::{self, DrillReport};
use crate::core::format::Manifest;
use crate::core::repo::Repository;
use crate::core::verify::VerifyRecord;
use crate::error::{Error, Result};

/// How long a snapshot answers before the repository is listed again.
pub const TTL: Duration = Duration::from_secs(2);

/// What the repository held when last listed.
#[derive(Debug)]
pub struct Snapshot {
    /// Readable backups, oldest first.
    pub manifests: Vec<Arc<Manifest>>,
    /// Backups whose manifest cannot be read, with why.
    pub unreadable: Vec<(String, String)>,
    /// Verification records per backup id, oldest first.
    pub records: BTreeMap<String, Vec<VerifyRecord>>,
    /// Drill reports, oldest first.
    pub drills: Vec<Arc<DrillReport>>,
    /// When the listing was taken.
    pub at: DateTime<Utc>,
}

impl Snapshot {
    /// The manifests as plain values, for code written against `manifests_lenient`.
    pub fn manifest_list(&self) -> Vec<Manifest> {
        self.manifests.iter().map(|m| (**m).clone()).collect()
    }
}

#[derive(Default)]
struct State {
    manifests: HashMap<String, Arc<Manifest>>,
    /// `None`: listed but unreadable (kept so it is not read again each time).
    records: HashMap<String, Option<VerifyRecord>>,
    /// Drill reports by object key (`None`: unreadable, not read again).
    drills: HashMap<String, Option<Arc<DrillReport>>>,
    last: Option<(Instant, Arc<Snapshot>)>,
}

/// The cache; one per engine.
#[derive(Default)]
pub struct View {
    state: tokio::sync::Mutex<State>,
    dirty: AtomicBool,
}

impl View {
    /// Something changed the repository: the next snapshot lists it again.
    pub fn invalidate(&self) {
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// Forget everything (another repository or key).
    pub async fn clear(&self) {
        *self.state.lock().await = State::default();
    }

    /// The current snapshot of `repo`.
    pub async fn snapshot(&self, repo: &Repository) -> Result<Arc<Snapshot>> {
        let mut st = self.state.lock().await;
        if let Some((at, snap)) = &st.last {
            if at.elapsed() < TTL && !self.dirty.load(Ordering::SeqCst) {
                return Ok(snap.clone());
            }
        }
        self.dirty.store(false, Ordering::SeqCst);
        let taken = Instant::now();
        let snap = match refresh(&mut st, repo).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.dirty.store(true, Ordering::SeqCst);
                return Err(e);
            }
        };
        st.last = Some((taken, snap.clone()));
        Ok(snap)
    }
}

/// Concurrent reads of objects not cached yet (a first listing of a large S3 repository).
const READ_CONCURRENCY: usize = 16;

async fn refresh(st: &mut State, repo: &Repository) -> Result<Snapshot> {
    let at = Utc::now();
    let ids = repo.backup_ids().await?;
    let new: Vec<String> = ids
        .iter()
        .filter(|id| !st.manifests.contains_key(*id))
        .cloned()
        .collect();
    let read: Vec<(String, Result<Option<Manifest>>)> = futures::stream::iter(new)
        .map(|id| async move {
            let r = match repo.manifest_exact(&id).await {
                Ok(m) => Ok(Some(m)),
                // Forgotten between the listing and the read: not damage.
                Err(Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            };
            Ok::<_, Error>((id, r))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let mut unreadable = Vec::new();
    for (id, r) in read {
        match r {
            Ok(Some(m)) => {
                st.manifests.insert(id, Arc::new(m));
            }
            Ok(None) => {}
            Err(e @ (Error::Damage(_) | Error::Repository(_))) => {
                unreadable.push((id, e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    let listed: std::collections::HashSet<&String> = ids.iter().collect();
    st.manifests.retain(|id, _| listed.contains(id));
    let mut manifests: Vec<Arc<Manifest>> = st.manifests.values().cloned().collect();
    manifests.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    // Unreadable manifests are read again next time (a transient error heals).
    unreadable.sort();

    let keys: Vec<String> = repo
        .store()
        .list("verifications/")
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let new: Vec<String> = keys
        .iter()
        .filter(|k| !st.records.contains_key(*k))
        .cloned()
        .collect();
    let read: Vec<(String, Option<Option<VerifyRecord>>)> = futures::stream::iter(new)
        .map(|k| async move {
            let r = match repo.get_sealed(&k).await {
                Ok(plain) => Some(serde_json::from_slice::<VerifyRecord>(&plain).ok()),
                // Not cached: read again next time (a transient error heals).
                Err(e) => {
                    tracing::warn!("ignoring unreadable verification record {k}: {e}");
                    None
                }
            };
            (k, r)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    st.records
        .extend(read.into_iter().filter_map(|(k, r)| r.map(|r| (k, r))));
    let listed: std::collections::HashSet<&String> = keys.iter().collect();
    st.records.retain(|k, _| listed.contains(k));
    let mut records: BTreeMap<String, Vec<VerifyRecord>> = BTreeMap::new();
    for r in st.records.values().flatten() {
        records
            .entry(r.backup_id.clone())
            .or_default()
            .push(r.clone());
    }
    for v in records.values_mut() {
        v.sort_by_key(|r| r.finished_at);
    }
    let keys: Vec<String> = repo
        .store()
        .list(drill::PREFIX)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let new: Vec<String> = keys
        .iter()
        .filter(|k| !st.drills.contains_key(*k))
        .cloned()
        .collect();
    let read: Vec<(String, Option<Option<Arc<DrillReport>>>)> = futures::stream::iter(new)
        .map(|k| async move {
            let r = match repo.get_sealed(&k).await {
                Ok(plain) => Some(
                    serde_json::from_slice::<DrillReport>(&plain)
                        .ok()
                        .map(Arc::new),
                ),
                Err(e) => {
                    tracing::warn!("ignoring unreadable drill report {k}: {e}");
                    None
                }
            };
            (k, r)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    st.drills
        .extend(read.into_iter().filter_map(|(k, r)| r.map(|r| (k, r))));
    let listed: std::collections::HashSet<&String> = keys.iter().collect();
    st.drills.retain(|k, _| listed.contains(k));
    let mut drills: Vec<Arc<DrillReport>> = st.drills.values().flatten().cloned().collect();
    drills.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    Ok(Snapshot {
        manifests,
        unreadable,
        records,
        drills,
        at,
    })
}
