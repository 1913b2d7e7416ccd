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
//!
//! With a state directory the sealed objects are also kept on disk (`<state_dir>/cache/<repo>/`,
//! the same bytes as in the store), so a new process — a console opening on an S3 repository
//! with a thousand backups — lists and reads nothing but the listing. Every cached object is
//! authenticated like one read from the store (a file that fails is dropped and read again),
//! and a cached object the listing no longer names is deleted.

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
    /// Where sealed objects are kept between processes.
    disk: Option<std::path::PathBuf>,
}

impl View {
    /// A view that keeps sealed objects under `dir` too.
    pub fn with_disk_cache(dir: Option<std::path::PathBuf>) -> Self {
        View {
            disk: dir,
            ..Default::default()
        }
    }

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
        let snap = match refresh(&mut st, repo, self.disk.as_deref()).await {
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

/// Concurrent reads of objects not cached yet (a first listing of a large S3 repository: the
/// console's first start with 1,000 manifests on loopback Garage took 3.0 s with 16 at a time,
/// 0.96 s with 64; BENCHMARKS.md, "The console").
const READ_CONCURRENCY: usize = 64;

/// The sealed object `key`: from the disk cache when it is there and authenticates (`open`
/// runs on it), else from the store (and then kept). `Ok(None)`: not in the store.
async fn sealed<T>(
    repo: &Repository,
    disk: Option<&std::path::Path>,
    key: &str,
    open: impl Fn(&[u8]) -> Result<T>,
) -> Result<Option<T>> {
    // Only a name of the repository's own format becomes a file name: a listed key is whatever
    // a writer to the bucket chose, and a `..` in it would reach outside the cache.
    let file = disk
        .filter(|_| crate::core::repo::is_cacheable_name(key))
        .map(|d| d.join(key));
    if let Some(f) = &file {
        if let Ok(bytes) = tokio::fs::read(f).await {
            match open(&bytes) {
                Ok(v) => return Ok(Some(v)),
                Err(e) => {
                    tracing::warn!("cached {key} does not authenticate ({e}): reading it again");
                    let _ = tokio::fs::remove_file(f).await;
                }
            }
        }
    }
    let Some(bytes) = repo.store().get(key).await? else {
        return Ok(None);
    };
    let v = open(&bytes)?;
    if let Some(f) = &file {
        let keep = async {
            if let Some(parent) = f.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let tmp = f.with_extension(format!("tmp{}", std::process::id()));
            tokio::fs::write(&tmp, &bytes).await?;
            tokio::fs::rename(&tmp, f).await
        };
        if let Err(e) = keep.await {
            tracing::debug!("could not cache {key}: {e}");
        }
    }
    Ok(Some(v))
}

/// Delete cached files under `disk/prefix` whose object is not in `listed`.
async fn forget_unlisted(
    disk: Option<&std::path::Path>,
    prefix: &str,
    listed: &std::collections::HashSet<String>,
) {
    let Some(base) = disk else { return };
    let mut stack = vec![base.join(prefix.trim_end_matches('/'))];
    while let Some(dir) = stack.pop() {
        let Ok(mut rd) = tokio::fs::read_dir(&dir).await else {
            continue;
        };
        while let Ok(Some(e)) = rd.next_entry().await {
            let p = e.path();
            if e.file_type().await.is_ok_and(|t| t.is_dir()) {
                stack.push(p);
                continue;
            }
            let key = p
                .strip_prefix(base)
                .ok()
                .map(|r| r.to_string_lossy().into_owned());
            if key.is_some_and(|k| !listed.contains(&k)) {
                let _ = tokio::fs::remove_file(&p).await;
            }
        }
    }
}

/// Bring `map` (object key → parsed object, `None` when it did not parse) up to date with the
/// objects under `prefix`: read the new ones (from the disk cache or the store), forget the ones
/// no longer listed, and their cached files. An object that cannot be read is left out (read
/// again next time: a transient error heals); one that does not parse is kept as `None` (not
/// read again each time).
async fn sync_sealed<T>(
    repo: &Repository,
    disk: Option<&std::path::Path>,
    prefix: &str,
    map: &mut HashMap<String, Option<T>>,
    first: bool,
    parse: impl Fn(&str, &[u8]) -> Option<T> + Copy,
    unreadable: impl Fn(&str, &str) -> Option<T> + Copy,
) -> Result<()> {
    let keys: Vec<String> = repo
        .store()
        .list(prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let new: Vec<String> = keys
        .iter()
        .filter(|k| !map.contains_key(*k))
        .cloned()
        .collect();
    let read: Vec<(String, Option<Option<T>>)> = futures::stream::iter(new)
        .map(|k| async move {
            let r = match sealed(repo, disk, &k, |b| repo.open_sealed(&k, b)).await {
                Ok(Some(plain)) => Some(parse(&k, &plain)),
                Ok(None) => None,
                // A storage error heals: read again next time. An object that does not
                // authenticate is said, not ignored.
                Err(e @ (Error::Storage(_) | Error::Cancelled(_))) => {
                    tracing::warn!("could not read {k}: {e}");
                    None
                }
                Err(e) => {
                    tracing::warn!("{k} cannot be read: {e}");
                    unreadable(&k, &e.to_string()).map(Some)
                }
            };
            (k, r)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    map.extend(read.into_iter().filter_map(|(k, r)| r.map(|r| (k, r))));
    let listed: std::collections::HashSet<&String> = keys.iter().collect();
    let before = map.len();
    map.retain(|k, _| listed.contains(k));
    if disk.is_some() && (map.len() < before || first) {
        let keys = keys.iter().cloned().collect();
        forget_unlisted(disk, prefix, &keys).await;
    }
    Ok(())
}

async fn refresh(
    st: &mut State,
    repo: &Repository,
    disk: Option<&std::path::Path>,
) -> Result<Snapshot> {
    let at = Utc::now();
    let ids = repo.backup_ids().await?;
    let new: Vec<String> = ids
        .iter()
        .filter(|id| !st.manifests.contains_key(*id))
        .cloned()
        .collect();
    let read: Vec<(String, Result<Option<Manifest>>)> = futures::stream::iter(new)
        .map(|id| async move {
            let key = format!("snapshots/{id}");
            // Forgotten between the listing and the read (Ok(None)): not damage.
            let r = sealed(repo, disk, &key, |b| repo.open_manifest(&id, b)).await;
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
    let before = st.manifests.len();
    st.manifests.retain(|id, _| listed.contains(id));
    if disk.is_some() && (st.manifests.len() < before || st.last.is_none()) {
        let keys = ids.iter().map(|i| format!("snapshots/{i}")).collect();
        forget_unlisted(disk, "snapshots/", &keys).await;
    }
    let mut manifests: Vec<Arc<Manifest>> = st.manifests.values().cloned().collect();
    manifests.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    // Unreadable manifests are read again next time (a transient error heals).
    unreadable.sort();

    let first = st.last.is_none();
    sync_sealed(
        repo,
        disk,
        "verifications/",
        &mut st.records,
        first,
        |k, b| match serde_json::from_slice::<VerifyRecord>(b) {
            Ok(r) => Some(r),
            Err(e) => VerifyRecord::unreadable(k, &format!("it does not parse: {e}")),
        },
        VerifyRecord::unreadable,
    )
    .await?;
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
    sync_sealed(
        repo,
        disk,
        drill::PREFIX,
        &mut st.drills,
        first,
        |_, b| serde_json::from_slice::<DrillReport>(b).ok().map(Arc::new),
        |_, _| None,
    )
    .await?;
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
