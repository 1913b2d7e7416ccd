//! The backup pipeline: pg_dump stream → FastCDC chunks → keyed ids → dedup → zstd → age →
//! packs → index → manifest (the commit point).
//!
//! Invariants:
//! - Bounded memory: at most `channel` + `workers×2` chunks in flight (≤ 2 MiB each), one
//!   pack being filled and two being uploaded. Back-pressure reaches pg_dump through its pipe.
//! - Nothing is visible unless everything succeeded: the manifest is written only after pg_dump
//!   exited 0, its stream began with the custom-format magic, and every pack and the index are
//!   confirmed stored. Any failure (pg_dump killed or failing, server gone, storage error,
//!   cancellation) leaves at most unreferenced packs, which prune removes.
//! - Chunks a backup reuses are only ever taken from packs that exist with the expected size.
//! - **Resumable**: every [`CHECKPOINT_PACKS`] uploaded packs (or [`CHECKPOINT_SECS`]), a
//!   checkpoint index of the packs confirmed stored is written, so a backup interrupted by a
//!   crash, a kill or a failed network leaves packs that the next backup can find. The next
//!   backup of any type adopts chunks of *orphaned* packs (indexed, but referenced by no
//!   backup): an incremental reuses everything as before, and a full or differential — which
//!   must share nothing with other backups beyond their base — still shares nothing with any
//!   committed backup, since an orphaned pack belongs to none. Checkpoint indexes are removed
//!   once the backup's own index is written.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::task::JoinSet;

use crate::core::chunk_crypto::ChunkSealer;
use crate::core::cleanup::Cleanup;
use crate::core::crypto::ChunkId;
use crate::core::format::{
    pack_key, BackupType, ChunkLoc, IndexFile, IndexPack, Manifest, PackRef, FORMAT_VERSION,
};
use crate::core::progress::{Phase, ProgressSink, Tracker};
use crate::core::repo::{Repository, StoredChunk};
use crate::error::{Error, Result};
use crate::pg::archive::{ArchiveFacts, ArchiveParser};
use crate::pg::conninfo::ConnInfo;
use crate::pg::process::{self, PassFile, StderrLog};
use crate::pg::{client, tools};

/// Options of one backup (builder style).
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// `None`: incremental when a full of the source exists, else full.
    pub kind: Option<BackupType>,
    pub compression_level: i32,
    pub pack_size: usize,
    pub workers: usize,
    pub bin_dir: Option<std::path::PathBuf>,
    /// How long pg_dump and keepsake's own sessions wait for a table lock before the backup
    /// fails naming the lock (`[backup] lock_wait_timeout`).
    pub lock_wait_timeout: std::time::Duration,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            kind: None,
            compression_level: 1,
            pack_size: 16 << 20,
            workers: 0,
            bin_dir: None,
            lock_wait_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// What is backed up: a name (as manifests record it) and where its database is.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub name: &'a str,
    pub conn: &'a ConnInfo,
    /// `[[sources]] provider`: the hosted platform, when configured (else detected).
    pub platform: Option<&'static crate::platform::Profile>,
}

impl BackupOptions {
    pub fn kind(mut self, k: BackupType) -> Self {
        self.kind = Some(k);
        self
    }
    pub fn bin_dir(mut self, d: Option<std::path::PathBuf>) -> Self {
        self.bin_dir = d;
        self
    }
    fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }
}

/// Kills pg_dump if the backup ends early (error, cancellation, dropped future).
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A chunk's number in the manifest and its encrypted blob.
type SealedChunk = (u32, Vec<u8>);

struct ReaderSummary {
    total: u64,
    digest: String,
    facts: std::result::Result<ArchiveFacts, String>,
}

/// A pack being filled.
struct PackBuilder {
    slot: u32,
    buf: Vec<u8>,
    chunks: Vec<(u32, ChunkLoc)>,
}

/// Decide the type of this backup and which stored chunks it may reuse (the tests' view of
/// [`plan_with_estimate`]).
#[cfg(test)]
pub(crate) async fn plan(
    repo: &Repository,
    source: &str,
    requested: Option<BackupType>,
) -> Result<(BackupType, Option<String>, HashMap<ChunkId, StoredChunk>)> {
    plan_with_estimate(repo, source, requested)
        .await
        .map(|(k, b, known, _)| (k, b, known))
}

/// The type of this backup, which stored chunks it may reuse, and the size of the source's
/// newest dump: the best estimate of this one's
/// (issue 27, item 9: the sum of table sizes on disk made a backup stop at 77 %).
async fn plan_with_estimate(
    repo: &Repository,
    source: &str,
    requested: Option<BackupType>,
) -> Result<(
    BackupType,
    Option<String>,
    HashMap<ChunkId, StoredChunk>,
    Option<u64>,
)> {
    // A damaged manifest must not stop new backups; it is reported by list and verify.
    let (manifests, bad) = repo.manifests_lenient().await?;
    let previous = manifests
        .iter()
        .rev()
        .find(|m| m.source.name == source)
        .map(|m| m.logical_bytes)
        .filter(|b| *b > 0);
    for (id, e) in &bad {
        tracing::warn!("ignoring unreadable backup {id}: {e}");
    }
    let latest_full = manifests
        .iter()
        .rev()
        .find(|m| m.source.name == source && m.kind == BackupType::Full);
    let kind = match (requested, latest_full) {
        (Some(k), _) if k != BackupType::Differential => k,
        (Some(_), None) => {
            tracing::warn!(
                "no full backup of {source} yet: taking a full instead of a differential"
            );
            BackupType::Full
        }
        (Some(k), Some(_)) => k,
        (None, Some(_)) => BackupType::Incremental,
        (None, None) => BackupType::Full,
    };
    // Packs some backup references; indexed packs outside this set were left by interrupted
    // backups (or are garbage prune has not reached yet) and may be adopted by any type.
    // While a manifest is unreadable we cannot tell which packs it uses: adopt nothing.
    let referenced: HashSet<String> = manifests
        .iter()
        .flat_map(|m| m.packs.iter().map(|p| p.name.clone()))
        .collect();
    // Packs a verification found damaged are never adopted: their chunks are stored anew,
    // so a new backup does not inherit the damage (issue 28, item 8). Records that cannot be
    // read cost only that: nothing is excluded for them (the chunks are still authenticated
    // when read).
    let damaged = match crate::core::verify::records(repo).await {
        Ok(r) => crate::core::verify::damaged_packs(&r),
        Err(e) => {
            tracing::warn!("cannot read the verification records ({e}): adopting every pack");
            Default::default()
        }
    };
    let (mut index, unreadable) = repo.load_index_lenient().await?;
    for u in &unreadable {
        tracing::warn!("skipping an unreadable index object (its chunks are stored again): {u}");
    }
    for sc in index.values_mut() {
        sc.orphan = bad.is_empty() && !referenced.contains(&sc.pack.name);
    }
    let orphans = || {
        index
            .iter()
            .filter(|(_, sc)| sc.orphan)
            .map(|(id, sc)| (*id, sc.clone()))
    };
    let (based_on, known) = match kind {
        BackupType::Full => (None, orphans().collect()),
        BackupType::Incremental => (None, index.clone()),
        BackupType::Differential => {
            let m = latest_full.ok_or_else(|| Error::Other("no full backup".into()))?;
            let mut known: HashMap<ChunkId, StoredChunk> = orphans().collect();
            known.extend(m.chunks.iter().map(|c| {
                (
                    c.id,
                    StoredChunk {
                        pack: m.packs[c.pack as usize].clone(),
                        loc: *c,
                        orphan: false,
                    },
                )
            }));
            (Some(m.id.clone()), known)
        }
    };
    let mut known = known;
    known.retain(|_, sc: &mut StoredChunk| !damaged.contains(&sc.pack.key()));
    // Reuse only chunks whose pack is really there, with the size the index promises.
    let present: HashMap<String, u64> = repo
        .store()
        .list("packs/")
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    // …and is not marked for deletion by prune. Marks that cannot be read do not stop the
    // backup (issue 28, item 6): it then reuses only packs a backup references and adopts
    // none (a pack no backup references may be marked).
    let marked = match crate::core::prune::marks(repo).await {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(
                "{} cannot be read ({e}): this backup reuses only packs other backups reference, and adopts none; the next prune writes the marks anew",
                crate::core::prune::MARKS
            );
            None
        }
    };
    let known = known
        .into_iter()
        .filter(|(_, sc)| present.get(&sc.pack.key()) == Some(&sc.pack.size))
        .filter(|(_, sc)| match &marked {
            Some(m) => !m.packs.contains_key(&sc.pack.key()),
            None => referenced.contains(&sc.pack.name),
        })
        .collect();
    Ok((kind, based_on, known, previous))
}

/// Back up one source. Returns the committed manifest.
///
/// The backup's lease is its own: it is registered in `cleanup` (so whoever runs this removes
/// it even if this future is dropped) and removed here when the backup ends.
pub async fn backup(
    repo: &Repository,
    source: &Source<'_>,
    opts: &BackupOptions,
    sink: &dyn ProgressSink,
    cleanup: &Cleanup,
) -> Result<Manifest> {
    let started_at = Utc::now();
    let tracker = Tracker::new(sink, "backup", source.name).with_store(repo.store().as_ref());
    tracker.phase(Phase::Connecting);

    // The lease comes first: a prune that marks packs after this point waits for us.
    let lease = crate::core::prune::take_lease(repo).await?;
    let hook = {
        let store = repo.store().clone();
        let key = lease.clone();
        cleanup.register(format!("remove backup lease {lease}"), move || {
            Box::pin(async move {
                if let Err(e) = store.delete(&key).await {
                    tracing::warn!("could not remove backup lease {key}: {e}");
                }
            })
        })
    };
    // Renewed while the backup runs; checked again before the commit (backup_leased), with
    // the time of the last renewal that worked.
    let renewed = std::sync::Mutex::new(std::time::Instant::now());
    let renew = async {
        loop {
            tokio::time::sleep(crate::core::prune::LEASE_RENEW).await;
            match crate::core::prune::renew_lease(repo, &lease).await {
                Ok(()) => {
                    if let Ok(mut r) = renewed.lock() {
                        *r = std::time::Instant::now();
                    }
                }
                Err(e) => tracing::warn!("could not renew backup lease {lease}: {e}"),
            }
        }
    };
    let held = Held {
        key: &lease,
        renewed: &renewed,
    };
    let res = tokio::select! {
        r = backup_leased(repo, source, opts, &tracker, started_at, &held) => r,
        _ = renew => unreachable_renewal(),
    };
    if let Err(e) = repo.store().delete(&lease).await {
        tracing::warn!("could not remove backup lease {lease}: {e}");
    }
    cleanup.disarm(hook);
    res
}

/// A backup's lease: its key, and when it was last renewed (by this process's clock).
struct Held<'a> {
    key: &'a str,
    renewed: &'a std::sync::Mutex<std::time::Instant>,
}

impl Held<'_> {
    /// Before a commit: the lease was renewed recently enough that no prune can have taken
    /// it for dead in between (issue 28, item 4: a renewal that reads, then writes, can put
    /// back a lease a prune just removed, and the check of the lease alone would pass).
    fn check_renewed(&self) -> Result<()> {
        self.check_renewed_within(
            (crate::core::prune::LEASE_TTL - crate::core::prune::MAX_CLOCK_SKEW)
                .to_std()
                .unwrap_or_default(),
        )
    }

    fn check_renewed_within(&self, limit: std::time::Duration) -> Result<()> {
        let gap = self.renewed.lock().map(|r| r.elapsed()).unwrap_or(limit);
        if gap >= limit {
            return Err(Error::Repository(format!(
                "this backup's lease {} was last renewed {} ago, longer than a prune waits before it takes a lease for dead: nothing was committed; run the backup again",
                self.key,
                crate::units::duration(gap.as_secs())
            )));
        }
        Ok(())
    }
}

/// The renewal loop never ends on its own.
fn unreachable_renewal() -> Result<Manifest> {
    Err(Error::Other("internal: the lease renewal ended".into()))
}

async fn backup_leased(
    repo: &Repository,
    source: &Source<'_>,
    opts: &BackupOptions,
    tracker: &Tracker<'_>,
    started_at: chrono::DateTime<Utc>,
    held: &Held<'_>,
) -> Result<Manifest> {
    let lease = held.key;
    let (kind, based_on, known, previous) =
        plan_with_estimate(repo, source.name, opts.kind).await?;
    tracing::debug!("planned a {} backup of {}", kind.as_str(), source.name);
    let adopted = known.values().filter(|c| c.orphan).count();
    if adopted > 0 {
        tracing::info!(
            "resuming: {adopted} chunks already stored by an interrupted backup can be reused"
        );
    }

    let pg = client::connect(source.conn).await?;
    // Before anything else talks to the source as if it had a session of its own.
    if client::transaction_pooled(source.conn, &pg).await? {
        return Err(client::pooled_refusal(source.conn, source.platform));
    }
    client::set_lock_timeout(&pg, opts.lock_wait_timeout).await?;
    let mut info = client::source_info(&pg, source.name, source.conn).await?;
    if let Some(p) = source.platform {
        info.platform = Some(p.name.to_string());
    }
    let major = (info.server_version_num / 10000) as u32;
    let tool = tools::find("pg_dump", major, opts.bin_dir.as_deref())?;
    let snapshot = client::export_snapshot(&pg).await?;
    // Which transactions the dump holds (a point-in-time restore applies only the others).
    // A failed read costs only that: the dump is the same.
    let dump_snapshot = match client::current_snapshot(&pg).await {
        Ok((xids, after, at)) => Some(crate::core::format::DumpSnapshot {
            xids,
            after,
            at,
            schema_hash: client::schema_hash_in_transaction(&pg).await,
        }),
        Err(e) => {
            tracing::warn!("could not read the dump's snapshot: {e}");
            None
        }
    };
    let (tables, large_objects) = match client::tables(&pg).await {
        Ok(t) => t,
        Err(e) => {
            return Err(client::explain_lock_timeout(e, source.conn, opts.lock_wait_timeout).await)
        }
    };
    // The newest dump's size when there is one; else the tables' size on disk (which counts
    // indexes' neighbours, free space and TOAST overhead: a first backup's estimate is rough).
    let expected: u64 =
        previous.unwrap_or_else(|| tables.iter().map(|t| t.size_bytes.max(0) as u64).sum());
    tracker.update(|p| {
        p.bytes_expected = Some(expected);
        p.phase = Phase::Dumping;
    });

    let pass = PassFile::new(source.conn)?;
    let mut child = process::pg_dump_command(
        &tool,
        source.conn,
        pass.as_ref(),
        &snapshot,
        opts.lock_wait_timeout,
    )
    .spawn()
    .map_err(|e| Error::Postgres(format!("cannot start {}: {e}", tool.path.display())))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut guard = ChildGuard(Some(child));
    let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
        return Err(Error::Other("pg_dump pipes missing".into()));
    };
    let log = Arc::new(Mutex::new(StderrLog::default()));
    let err_thread = process::collect_stderr(stderr, log.clone(), "pg_dump");

    let (mut rx, reader) = spawn_chunker(stdout, repo);

    let mut state = Pipeline::new(repo, opts)?;
    let res = state
        .consume(&mut rx, &known, opts.worker_count(), tracker, &log, pass)
        .await;

    // Stop pg_dump if we failed; then collect how the reader and pg_dump ended.
    if res.is_err() {
        if let Some(c) = &mut guard.0 {
            let _ = c.kill();
        }
        // Record what did get stored, so that a second attempt need not upload it again.
        state.salvage().await;
    }
    drop(rx);
    let reader_res = reader
        .join()
        .map_err(|_| Error::Other("the chunking thread panicked".into()))?;
    let mut child = guard
        .0
        .take()
        .ok_or_else(|| Error::Other("pg_dump handle lost".into()))?;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| Error::Other(format!("waiting for pg_dump: {e}")))?
        .map_err(|e| Error::io("waiting for pg_dump", e))?;
    let _ = err_thread.join();
    // Our own failure (storage, cancellation) explains a pg_dump we killed.
    res?;
    if !status.success() {
        state.salvage().await;
        let explain = log.lock().map(|l| l.explain()).unwrap_or_default();
        let e = Error::Postgres(format!(
            "backup of {} failed: pg_dump {}; nothing was committed.\n  {explain}",
            source.name,
            process::describe_exit(status)
        ));
        return Err(client::explain_lock_timeout(e, source.conn, opts.lock_wait_timeout).await);
    }
    let summary = match reader_res {
        Ok(s) => s,
        Err(e) => {
            state.salvage().await;
            return Err(e);
        }
    };
    if summary.total == 0 {
        return Err(Error::Postgres(format!(
            "backup of {} failed: pg_dump produced no output",
            source.name
        )));
    }
    let facts = summary.facts.map_err(|e| {
        Error::Postgres(format!(
            "backup of {} failed: pg_dump exited 0 but its archive is incomplete or malformed: {e}; nothing was committed",
            source.name
        ))
    })?;
    // The snapshot is no longer needed.
    drop(pg);

    tracker.phase(Phase::Committing);
    state.flush().await?;
    state.drain_uploads().await?;
    if state.chunks.iter().any(|c| c.pack == u32::MAX) {
        return Err(Error::Other(
            "internal: a chunk was not placed in a pack".into(),
        ));
    }
    // The packs this backup uses must still be there: prune never deletes a pack a live
    // lease may use, and backups never reuse marked packs, but a manifest must never name a
    // missing pack whatever happened (an expired lease, a hand-made deletion).
    // Our lease must still protect us: if a prune took it for dead, the packs we reuse may be
    // going (the check below would then catch only those already gone).
    held.check_renewed()?;
    crate::core::prune::check_lease(repo, lease).await?;
    // Every pack the manifest will name, the ones this backup wrote too (issue 28, item 3: a
    // prune that ran meanwhile saw them unreferenced).
    let gone = repo.missing_packs(&state.packs).await?;
    if !gone.is_empty() {
        return Err(Error::Repository(format!(
            "backup of {} needs packs that are no longer intact ({}): nothing was committed; run the backup again (it will store those chunks anew)",
            source.name,
            gone.join("; ")
        )));
    }
    let stored_bytes: u64 = state.new_packs.iter().map(|p| p.size).sum();
    let checkpoints = std::mem::take(&mut state.checkpoints);
    let id = Repository::new_backup_id();
    if !state.new_packs.is_empty() {
        repo.write_index(&IndexFile {
            format_version: FORMAT_VERSION,
            backup_id: id.clone(),
            packs: std::mem::take(&mut state.new_packs),
        })
        .await?;
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        id,
        kind,
        based_on,
        started_at,
        finished_at: Utc::now(),
        keepsake_version: env!("CARGO_PKG_VERSION").to_string(),
        pg_dump_version: tool.version.clone(),
        source: info,
        tables,
        large_objects,
        facts,
        logical_bytes: summary.total,
        stored_bytes,
        new_raw_bytes: state.new_raw,
        archive_digest: summary.digest,
        packs: state.packs,
        chunks: state.chunks,
        stream: state.stream,
        snapshot: dump_snapshot,
    };
    repo.commit_manifest(&manifest).await?;
    // The backup's own index covers what the checkpoints listed.
    for c in &checkpoints {
        if let Err(e) = repo.store().delete(c).await {
            tracing::warn!("could not remove checkpoint index {c}: {e}");
        }
    }
    tracker.update(|p| {
        p.phase = Phase::Done;
        p.bytes_expected = Some(summary.total);
        p.current_table = None;
    });
    Ok(manifest)
}

/// Chunks (keyed id, plaintext) in stream order, from the chunking thread.
type Chunks = tokio::sync::mpsc::Receiver<(ChunkId, Vec<u8>)>;

/// The chunking thread: cut pg_dump's output into content-defined chunks, hash each (keyed),
/// chain the ids into the archive digest, parse the archive's table facts on the way, and hand
/// chunks over. Ends at EOF or when the pipeline stops listening.
fn spawn_chunker(
    stdout: std::process::ChildStdout,
    repo: &Repository,
) -> (Chunks, std::thread::JoinHandle<Result<ReaderSummary>>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<(ChunkId, Vec<u8>)>(4);
    let key = repo.key().clone();
    let params = repo.config.chunker;
    let reader = std::thread::spawn(move || -> Result<ReaderSummary> {
        let mut hasher = key.stream_hasher();
        let mut parser = ArchiveParser::new();
        let mut total = 0u64;
        let cdc = fastcdc::v2020::StreamCDC::new(
            stdout,
            params.min as usize,
            params.avg as usize,
            params.max as usize,
        );
        for chunk in cdc {
            let c =
                chunk.map_err(|e| Error::Postgres(format!("reading the pg_dump stream: {e}")))?;
            if total == 0 && !c.data.starts_with(b"PGDMP") {
                return Err(Error::Postgres(
                    "pg_dump's output is not a custom-format archive (no PGDMP header)".into(),
                ));
            }
            total += c.data.len() as u64;
            let id = key.chunk_id(&c.data);
            // The archive digest chains the (keyed) chunk ids: no second pass over the data.
            hasher.update(&id.0);
            hasher.update(&(c.data.len() as u64).to_le_bytes());
            parser.feed(&c.data);
            if tx.blocking_send((id, c.data)).is_err() {
                break;
            }
        }
        Ok(ReaderSummary {
            total,
            digest: hasher.finalize().to_hex().to_string(),
            facts: parser.finish(),
        })
    });
    (rx, reader)
}

impl<'a> Pipeline<'a> {
    fn new(repo: &'a Repository, opts: &BackupOptions) -> Result<Self> {
        Ok(Pipeline {
            repo,
            sealer: Arc::new(ChunkSealer::new(repo.recipients())?),
            level: opts.compression_level,
            pack_size: opts.pack_size,
            packs: Vec::new(),
            pack_slots: HashMap::new(),
            chunks: Vec::new(),
            chunk_index: HashMap::new(),
            stream: Vec::new(),
            builder: None,
            uploads: JoinSet::new(),
            new_packs: Vec::new(),
            new_raw: 0,
            placed: HashSet::new(),
            unchecked: Vec::new(),
            checkpoints: Vec::new(),
            last_checkpoint: std::time::Instant::now(),
        })
    }

    /// Take every chunk from the chunker: reuse what the plan knows, compress and seal the rest
    /// on `workers` blocking threads (at most twice that many in flight), place them in packs.
    async fn consume(
        &mut self,
        rx: &mut Chunks,
        known: &HashMap<ChunkId, StoredChunk>,
        workers: usize,
        tracker: &Tracker<'_>,
        log: &Arc<Mutex<StderrLog>>,
        mut pass: Option<PassFile>,
    ) -> Result<()> {
        let state = self;
        let mut done = 0u64;
        let mut pending: FuturesOrdered<tokio::task::JoinHandle<Result<SealedChunk>>> =
            FuturesOrdered::new();
        while let Some((id, data)) = rx.recv().await {
            // pg_dump has connected once it writes: the password file can go now, so that
            // not even a SIGKILL of keepsake leaves it behind for long.
            drop(pass.take());
            done += data.len() as u64;
            let table = log.lock().ok().and_then(|l| l.current_table.clone());
            tracker.update(|p| {
                p.bytes_done = done;
                p.current_table = table;
            });
            if let Some(ix) = state.chunk_index.get(&id) {
                state.stream.push(*ix);
                continue;
            }
            let ix = state.chunks.len() as u32;
            state.chunk_index.insert(id, ix);
            state.stream.push(ix);
            if let Some(sc) = known.get(&id) {
                let slot = state.pack_slot(&sc.pack);
                state.chunks.push(ChunkLoc {
                    pack: slot,
                    ..sc.loc
                });
                continue;
            }
            state.chunks.push(ChunkLoc {
                id,
                pack: u32::MAX,
                offset: 0,
                length: 0,
                raw_len: data.len() as u32,
            });
            while pending.len() >= workers * 2 {
                if let Some(r) = pending.next().await {
                    state.place(join(r)?).await?;
                }
            }
            let sealer = state.sealer.clone();
            let level = state.level;
            pending.push_back(tokio::task::spawn_blocking(move || {
                let z = zstd::bulk::compress(&data, level)
                    .map_err(|e| Error::Other(format!("zstd: {e}")))?;
                Ok((ix, sealer.seal(&z)))
            }));
        }
        while let Some(r) = pending.next().await {
            state.place(join(r)?).await?;
        }
        Ok(())
    }
}

fn join<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| Error::Other(format!("worker task failed: {e}")))?
}

struct Pipeline<'a> {
    repo: &'a Repository,
    /// One file key per backup, wrapped once (src/core/chunk_crypto.rs).
    sealer: Arc<ChunkSealer>,
    level: i32,
    pack_size: usize,
    /// The manifest's pack table (slots of packs being filled have an empty name until sealed).
    packs: Vec<PackRef>,
    pack_slots: HashMap<String, u32>,
    chunks: Vec<ChunkLoc>,
    chunk_index: HashMap<ChunkId, u32>,
    stream: Vec<u32>,
    builder: Option<PackBuilder>,
    uploads: JoinSet<Result<IndexPack>>,
    new_packs: Vec<IndexPack>,
    new_raw: u64,
    placed: HashSet<u32>,
    /// Packs confirmed stored but not yet in a checkpoint index.
    unchecked: Vec<IndexPack>,
    /// Checkpoint indexes written so far (removed after the final index).
    checkpoints: Vec<String>,
    last_checkpoint: std::time::Instant,
}

/// A checkpoint index is written after this many uploaded packs…
pub const CHECKPOINT_PACKS: usize = 4;
/// …or when this many seconds have passed since the last one.
pub const CHECKPOINT_SECS: u64 = 30;

impl Pipeline<'_> {
    fn pack_slot(&mut self, p: &PackRef) -> u32 {
        if let Some(s) = self.pack_slots.get(&p.name) {
            return *s;
        }
        let s = self.packs.len() as u32;
        self.packs.push(p.clone());
        self.pack_slots.insert(p.name.clone(), s);
        s
    }

    /// Append an encrypted chunk to the current pack; seal and upload full packs.
    async fn place(&mut self, (ix, blob): (u32, Vec<u8>)) -> Result<()> {
        if !self.placed.insert(ix) {
            return Ok(());
        }
        if self.builder.is_none() {
            let slot = self.packs.len() as u32;
            self.packs.push(PackRef {
                name: String::new(),
                size: 0,
            });
            self.builder = Some(PackBuilder {
                slot,
                buf: Vec::with_capacity(self.pack_size + (1 << 20)),
                chunks: Vec::new(),
            });
        }
        let Some(b) = self.builder.as_mut() else {
            return Ok(());
        };
        let c = &mut self.chunks[ix as usize];
        let loc = ChunkLoc {
            id: c.id,
            pack: b.slot,
            offset: b.buf.len() as u64,
            length: blob.len() as u32,
            raw_len: c.raw_len,
        };
        *c = loc;
        self.new_raw += u64::from(loc.raw_len);
        b.buf.extend_from_slice(&blob);
        b.chunks.push((ix, loc));
        if b.buf.len() >= self.pack_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// Seal the current pack and start its upload (at most the store's `upload_concurrency` at a
    /// time).
    async fn flush(&mut self) -> Result<()> {
        let Some(b) = self.builder.take() else {
            return Ok(());
        };
        let name = blake3::hash(&b.buf).to_hex().to_string();
        let size = b.buf.len() as u64;
        self.packs[b.slot as usize] = PackRef {
            name: name.clone(),
            size,
        };
        self.pack_slots.insert(name.clone(), b.slot);
        let entry = IndexPack {
            name: name.clone(),
            size,
            chunks: b
                .chunks
                .iter()
                .map(|(_, l)| ChunkLoc { pack: 0, ..*l })
                .collect(),
        };
        self.new_packs.push(entry.clone());
        let in_flight = self.repo.store().upload_concurrency().max(1);
        self.wait_uploads(in_flight - 1).await?;
        let store = self.repo.store().clone();
        let buf = b.buf;
        self.uploads.spawn(async move {
            store.put(&pack_key(&name), buf).await?;
            Ok(entry)
        });
        Ok(())
    }

    /// Wait until at most `max_running` uploads are in flight; fail on the first error.
    async fn wait_uploads(&mut self, max_running: usize) -> Result<()> {
        while self.uploads.len() > max_running {
            if let Some(r) = self.uploads.join_next().await {
                self.unchecked.push(join(r)?);
            }
        }
        if self.unchecked.len() >= CHECKPOINT_PACKS
            || (!self.unchecked.is_empty()
                && self.last_checkpoint.elapsed().as_secs() >= CHECKPOINT_SECS)
        {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Wait for every upload (the final index lists them all: no checkpoint needed).
    async fn drain_uploads(&mut self) -> Result<()> {
        while let Some(r) = self.uploads.join_next().await {
            join(r)?;
        }
        Ok(())
    }

    /// Write a checkpoint index of the packs confirmed stored since the last one.
    async fn checkpoint(&mut self) -> Result<()> {
        if self.unchecked.is_empty() {
            return Ok(());
        }
        let name = self
            .repo
            .write_index(&IndexFile {
                format_version: FORMAT_VERSION,
                backup_id: "checkpoint".into(),
                packs: self.unchecked.clone(),
            })
            .await?;
        self.unchecked.clear();
        self.checkpoints.push(name);
        self.last_checkpoint = std::time::Instant::now();
        Ok(())
    }

    /// After a failure: let running uploads end, and checkpoint those that stored their pack.
    /// Best effort; errors are logged, the original failure is what the caller reports.
    async fn salvage(&mut self) {
        while let Some(r) = self.uploads.join_next().await {
            if let Ok(Ok(p)) = r {
                self.unchecked.push(p);
            }
        }
        if let Err(e) = self.checkpoint().await {
            tracing::warn!("could not record the packs stored before the failure: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunk boundaries are part of the repository format: the same input must cut at the
    /// same places whatever the chunker crate's version, or every backup after an upgrade
    /// would store everything anew. Offsets of 8 MiB of pseudo-random bytes and 1 MiB of
    /// zeros with the default parameters, digested (recorded under fastcdc 3.2.1).
    #[test]
    fn chunk_boundaries_stay_where_they_were() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut data: Vec<u8> = (0..8 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        data.extend(std::iter::repeat_n(0u8, (1 << 20) + 1));
        let p = crate::core::format::ChunkerParams::default();
        let offsets: Vec<u8> =
            fastcdc::v2020::StreamCDC::new(&data[..], p.min as _, p.avg as _, p.max as _)
                .flat_map(|c| c.expect("chunk").offset.to_le_bytes())
                .collect();
        assert_eq!(
            blake3::hash(&offsets).to_hex().as_str(),
            "85f61764f1e35894b974dd2a18dacc0fabf584271988bacb839f27cae34a44b4",
            "{} chunks",
            offsets.len() / 8
        );
    }

    /// Issue 28, item 4: a backup whose lease went unrenewed for longer than a prune waits
    /// before taking it for dead commits nothing, whatever the lease object says now.
    #[test]
    fn a_lease_unrenewed_too_long_refuses_the_commit() {
        let renewed = std::sync::Mutex::new(std::time::Instant::now());
        let held = Held {
            key: "locks/x",
            renewed: &renewed,
        };
        assert!(held.check_renewed().is_ok(), "just renewed");
        std::thread::sleep(std::time::Duration::from_millis(30));
        let e = held
            .check_renewed_within(std::time::Duration::from_millis(10))
            .expect_err("too long ago");
        assert!(e.to_string().contains("nothing was committed"), "{e}");
        *renewed.lock().expect("lock") = std::time::Instant::now();
        assert!(held
            .check_renewed_within(std::time::Duration::from_millis(10))
            .is_ok());
    }
}
