//! Restore: stream a backup's chunks, in order, straight into `pg_restore`.
//!
//! Invariants:
//! - The repository key and the manifest are checked before the target is touched, so a wrong
//!   identity or an unknown backup never creates or alters a database.
//! - Every pack the backup needs is confirmed present (size, no download) before the target is
//!   touched; a missing pack fails naming the backup.
//! - The target is protected: a database with user relations is refused unless
//!   `--clean --confirm NAME` names it; the backup's own source database is refused unless
//!   `--confirm NAME` names it; `--create` refuses an existing database.
//! - pg_restore runs in one transaction: any failure (bad chunk, pg_restore error, digest
//!   mismatch, cancellation) rolls everything back, and a database created by this restore is
//!   dropped again.
//! - Never more than a bounded read-ahead of chunks in memory; nothing is staged on disk.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::core::cleanup::{Cleanup, HookId};
use crate::core::crypto::ChunkId;
use crate::core::format::{ChunkLoc, Manifest};
use crate::core::progress::{Phase, ProgressSink, Tracker};
use crate::core::repo::Repository;
use crate::error::{Error, Result};
use crate::pg::client::{self, quote_ident, quote_literal};
use crate::pg::conninfo::ConnInfo;
use crate::pg::process::{self, PassFile, StderrLog};
use crate::pg::tools;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: ConnInfo,
    pub create: bool,
    pub clean: bool,
    pub confirm: Option<String>,
    /// Skip ownership and privileges (for targets without the source's roles).
    pub no_owner: bool,
    pub bin_dir: Option<std::path::PathBuf>,
    /// Chunks fetched and decoded ahead of pg_restore.
    pub read_ahead: usize,
    /// Parallel sessions (used when the restore creates its database; 1 = one stream in one
    /// transaction).
    pub jobs: usize,
    /// Where the restore registers the drop of a database it created (see [`Cleanup`]).
    pub cleanup: Cleanup,
}

impl RestoreOptions {
    pub fn new(target: ConnInfo) -> Self {
        RestoreOptions {
            target,
            create: false,
            clean: false,
            confirm: None,
            no_owner: false,
            bin_dir: None,
            read_ahead: 8,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            cleanup: Cleanup::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    pub backup_id: String,
    pub bytes: u64,
    pub duration: Duration,
    pub created: bool,
    /// The armed hook that drops the created database: the caller disarms it once the
    /// database is meant to stay (a finished restore) or was dropped (a scratch database).
    pub created_hook: Option<HookId>,
}

/// Fail unless every pack of `m` exists with its recorded size.
pub async fn check_packs(repo: &Repository, m: &Manifest) -> Result<()> {
    use futures::stream::TryStreamExt;
    // Up to 8 at a time: on S3 each is a round trip before the restore can start.
    // Owned keys: a closure over borrowed pack refs makes this future not provably `Send`.
    let keys: Vec<String> = m.packs.iter().map(|p| p.key()).collect();
    let sizes: Vec<Option<u64>> = futures::stream::iter(keys)
        .map(|k| async move { repo.store().head(&k).await })
        .buffered(8)
        .try_collect()
        .await?;
    let mut missing = Vec::new();
    for (p, size) in m.packs.iter().zip(sizes) {
        match size {
            Some(s) if s == p.size => {}
            Some(s) => missing.push(format!("{} is {s} bytes, expected {}", p.key(), p.size)),
            None => missing.push(format!("{} is missing", p.key())),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Damage(format!(
            "backup {} cannot be restored: {} of its {} packs are damaged: {}",
            m.id,
            missing.len(),
            m.packs.len(),
            missing.join("; ")
        )))
    }
}

/// Check the target is safe to restore into. Returns whether the database must be created.
async fn check_target(m: &Manifest, o: &RestoreOptions) -> Result<()> {
    let db = &o.target.dbname;
    if let Some(c) = &o.confirm {
        if c != db {
            return Err(Error::Usage(format!(
                "--confirm {c} does not match the target database \"{db}\": nothing was done"
            )));
        }
    }
    let confirmed = o.confirm.as_deref() == Some(db.as_str());
    let (pg, exists) = if o.create {
        let admin = connect_admin(&o.target).await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[db])
            .await
            .map_err(|e| {
                Error::Postgres(format!(
                    "inspecting {}: {}",
                    o.target.display(),
                    client::describe(&e)
                ))
            })?
            .is_some();
        if exists {
            return Err(Error::Usage(format!(
                "target database \"{db}\" already exists: drop --create to restore into it (it must be empty, or add --clean --confirm {db})"
            )));
        }
        (admin, false)
    } else {
        let pg = client::connect(&o.target).await.map_err(|e| match e {
            Error::Postgres(m) if m.contains("does not exist") => {
                Error::Usage(format!("{m}\n  add --create to create the target database"))
            }
            other => other,
        })?;
        (pg, true)
    };
    // Is the target the source of this backup?
    let same_db = *db == m.source.database;
    let same_server = match (
        &m.source.system_identifier,
        client::system_identifier(&pg).await,
    ) {
        (Some(a), Some(b)) => *a == b,
        _ => m.source.location == format!("{}:{}/{}", o.target.host, o.target.port, db),
    };
    if same_db && same_server && !confirmed {
        return Err(Error::Usage(format!(
            "the target {} is the source database of backup {}: to restore over it, add --confirm {db}{}",
            o.target.display(),
            m.id,
            if exists { " (and --clean when it holds tables)" } else { "" }
        )));
    }
    if exists {
        let n = client::user_relation_count(&pg).await?;
        if n > 0 && !(o.clean && confirmed) {
            return Err(Error::Usage(format!(
                "target database \"{db}\" is not empty ({n} tables, views or sequences): restoring would mix data; restore into a new database with --create, or replace its objects with --clean --confirm {db}"
            )));
        }
    }
    Ok(())
}

async fn connect_admin(target: &ConnInfo) -> Result<tokio_postgres::Client> {
    match client::connect(&target.with_dbname("postgres")).await {
        Ok(c) => Ok(c),
        Err(_) => client::connect(&target.with_dbname("template1")).await,
    }
}

async fn create_database(m: &Manifest, target: &ConnInfo) -> Result<()> {
    let admin = connect_admin(target).await?;
    let db = quote_ident(&target.dbname);
    let full = format!(
        "CREATE DATABASE {db} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        quote_literal(&m.source.encoding),
        quote_literal(&m.source.lc_collate),
        quote_literal(&m.source.lc_ctype)
    );
    if let Err(e) = admin.batch_execute(&full).await {
        tracing::warn!(
            "creating {} with the source's locale failed ({}); using the server's defaults",
            target.dbname,
            client::describe(&e)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE template0"))
            .await
            .map_err(|e| {
                Error::Postgres(format!(
                    "cannot create database \"{}\": {}",
                    target.dbname,
                    client::describe(&e)
                ))
            })?;
    }
    Ok(())
}

pub async fn drop_database(target: &ConnInfo) {
    if let Ok(admin) = connect_admin(target).await {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&target.dbname)
        );
        if let Err(e) = admin.batch_execute(&sql).await {
            tracing::warn!(
                "could not drop the half-restored database {}: {}",
                target.dbname,
                client::describe(&e)
            );
        }
    }
}

/// Largest byte range read with one request when consecutive chunks lie next to each other in
/// one pack. One request per chunk (~128 KiB) costs a round trip each on S3; ranges of up to
/// 2 MiB cut requests ~16× for a full backup, whose chunks are laid out in stream order.
pub const SPAN_MAX: u64 = 2 << 20;

/// Consecutive stream positions whose chunks are adjacent in one pack: read with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub pack: u32,
    pub offset: u64,
    pub len: u64,
    /// Stream positions, in order.
    pub positions: std::ops::Range<usize>,
}

/// Group stream positions `range` of `m` into spans (each at most [`SPAN_MAX`] unless one
/// chunk is larger).
pub fn spans(m: &Manifest, range: std::ops::Range<usize>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for pos in range {
        let c = m.chunks[m.stream[pos] as usize];
        let len = u64::from(c.length);
        if let Some(s) = out.last_mut() {
            if s.pack == c.pack && s.offset + s.len == c.offset && s.len + len <= SPAN_MAX {
                s.len += len;
                s.positions.end = pos + 1;
                continue;
            }
        }
        out.push(Span {
            pack: c.pack,
            offset: c.offset,
            len,
            positions: pos..pos + 1,
        });
    }
    out
}

/// An error of the same kind, for every chunk of a span whose read failed.
fn same_kind(e: &Error) -> Error {
    match e {
        Error::Damage(m) => Error::Damage(m.clone()),
        Error::Repository(m) => Error::Repository(m.clone()),
        other => Error::Other(other.to_string()),
    }
}

/// Large buffers kept for reuse, at most `max` bytes of capacity in all. A fresh buffer of
/// 128 KiB or more is mapped by the allocator on first touch and unmapped when freed: page
/// faults that cost 14% of a restore's client CPU for decoded chunks, and 5% more for the
/// pack reads and for growing a reused buffer that was too small, before these pools.
pub(crate) struct Pool {
    kept: std::sync::Mutex<(Vec<Vec<u8>>, usize)>,
    max: usize,
}

impl Pool {
    pub(crate) const fn new(max: usize) -> Self {
        Pool {
            kept: std::sync::Mutex::new((Vec::new(), 0)),
            max,
        }
    }

    /// An empty buffer with at least `capacity` (rounded up to a power of two, so that
    /// buffers of chunks of different sizes serve each other).
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        if let Ok(mut k) = self.kept.lock() {
            if let Some(i) = k.0.iter().rposition(|v| v.capacity() >= capacity) {
                let v = k.0.swap_remove(i);
                k.1 -= v.capacity();
                return v;
            }
            // None is large enough: free the oldest, so that what is kept follows the sizes
            // in use instead of filling up with buffers too small for them.
            if !k.0.is_empty() {
                let v = k.0.remove(0);
                k.1 -= v.capacity();
            }
        }
        Vec::with_capacity(capacity.next_power_of_two())
    }

    /// Keep `v` for reuse if there is room.
    pub(crate) fn give(&self, mut v: Vec<u8>) {
        if v.capacity() == 0 {
            return;
        }
        v.clear();
        if let Ok(mut k) = self.kept.lock() {
            if k.1 + v.capacity() <= self.max {
                k.1 += v.capacity();
                k.0.push(v);
            }
        }
    }
}

/// Buffers of decoded chunks.
static CHUNK_BUFS: Pool = Pool::new(32 << 20);
/// Buffers of pack reads (spans, at most [`SPAN_MAX`] each unless one chunk is larger).
static SPAN_BUFS: Pool = Pool::new(32 << 20);

/// A decoded chunk's plaintext; its buffer returns to the pool when dropped.
pub struct Plain(Vec<u8>);

impl Plain {
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for Plain {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        CHUNK_BUFS.give(std::mem::take(&mut self.0));
    }
}

/// Decoded chunks of stream positions `range`, in stream order: `(position, id, plaintext)`
/// or the error of that chunk. Spans are read ahead (`ahead` at a time) and decoded on the
/// blocking pool; memory stays within `ahead` × ([`SPAN_MAX`] + its plaintext).
pub fn chunk_stream(
    repo: Arc<Repository>,
    m: Arc<Manifest>,
    range: std::ops::Range<usize>,
    ahead: usize,
) -> impl futures::Stream<Item = Result<(usize, ChunkId, Plain)>> {
    use futures::StreamExt;
    let list = spans(&m, range);
    futures::stream::iter(list)
        .map(move |sp| fetch_span(repo.clone(), m.clone(), sp))
        .buffered(ahead.max(1))
        .flat_map(futures::stream::iter)
}

/// Read one span and decode each of its chunks.
async fn fetch_span(
    repo: Arc<Repository>,
    m: Arc<Manifest>,
    sp: Span,
) -> Vec<Result<(usize, ChunkId, Plain)>> {
    let pack = m.packs[sp.pack as usize].key();
    let buf = SPAN_BUFS.take(sp.len as usize);
    let mut bytes = match repo
        .store()
        .get_range_into(&pack, sp.offset, sp.len, buf)
        .await
    {
        Ok(b) => b,
        Err(e) => {
            let e = Error::Repository(format!("backup {}: {e}", m.id));
            return sp.positions.map(|_| Err(same_kind(&e))).collect();
        }
    };
    let r = repo.clone();
    let m2 = m.clone();
    let positions = sp.positions.clone();
    let res = tokio::task::spawn_blocking(move || {
        let decoded = positions
            .map(|pos| {
                let c = m2.chunks[m2.stream[pos] as usize];
                let at = (c.offset - sp.offset) as usize;
                let blob = &mut bytes[at..at + c.length as usize];
                decode(&r, &m2, &c, blob).map(|plain| (pos, c.id, plain))
            })
            .collect::<Vec<_>>();
        SPAN_BUFS.give(bytes);
        decoded
    })
    .await;
    match res {
        Ok(v) => v,
        Err(e) => sp
            .positions
            .map(|_| Err(Error::Other(format!("decode task failed: {e}"))))
            .collect(),
    }
}

/// Decrypt, decompress and check one chunk blob.
fn decode(r: &Repository, m: &Manifest, c: &ChunkLoc, blob: &mut [u8]) -> Result<Plain> {
    let bad = |what: String| {
        Error::Damage(format!(
            "backup {}: chunk {} in {} is damaged: {what}",
            m.id,
            c.id,
            m.packs[c.pack as usize].key()
        ))
    };
    let z = r.open_chunk(blob).map_err(bad)?;
    thread_local! {
        // One decompression context per thread: creating one per chunk cost ~4% of a restore.
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let mut plain = Plain(CHUNK_BUFS.take(c.raw_len as usize));
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress_to_buffer(z, &mut plain.0),
            None => zstd::bulk::decompress_to_buffer(z, &mut plain.0),
        }
    })
    .map_err(|e| bad(e.to_string()))?;
    if plain.len() != c.raw_len as usize || r.key().chunk_id(&plain) != c.id {
        return Err(bad("content does not match its id".into()));
    }
    Ok(plain)
}

/// Decode chunk number `ci` of `m`: fetch, decrypt, decompress, check its id and length.
pub async fn fetch_chunk(
    repo: Arc<Repository>,
    m: Arc<Manifest>,
    ci: u32,
) -> Result<(ChunkId, Vec<u8>)> {
    let c = m.chunks[ci as usize];
    let pack = &m.packs[c.pack as usize];
    let mut blob = repo
        .store()
        .get_range(&pack.key(), c.offset, u64::from(c.length))
        .await
        .map_err(|e| Error::Repository(format!("backup {}: {e}", m.id)))?;
    let r = repo.clone();
    tokio::task::spawn_blocking(move || {
        decode(&r, &m, &c, &mut blob).map(|plain| (c.id, plain.into_vec()))
    })
    .await
    .map_err(|e| Error::Other(format!("decode task failed: {e}")))?
}

/// Restore backup `id` into `o.target`.
pub async fn restore(
    repo: Arc<Repository>,
    id: &str,
    o: &RestoreOptions,
    sink: &dyn ProgressSink,
) -> Result<RestoreOutcome> {
    let start = Instant::now();
    let m = Arc::new(repo.manifest(id).await?);
    let tracker = Tracker::new(sink, "restore", &m.source.name).with_store(repo.store().as_ref());
    tracker.update(|p| {
        p.phase = Phase::Checking;
        p.bytes_expected = Some(m.logical_bytes);
    });
    // What needs no target database runs side by side: each of these takes a process start
    // or a connection, and every millisecond before the first COPY is one the restore waits.
    let archive_major = tools::parse_version(&m.pg_dump_version)
        .map(|v| v.1)
        .unwrap_or(0);
    let bin_dir = o.bin_dir.clone();
    let find_tool = tokio::task::spawn_blocking(move || {
        tools::find("pg_restore", archive_major, bin_dir.as_deref())
    });
    let (packs, target) = tokio::join!(check_packs(&repo, &m), check_target(&m, o));
    packs?;
    let tool = find_tool
        .await
        .map_err(|e| Error::Other(format!("looking for pg_restore: {e}")))??;
    target?;

    let parallel = crate::core::parallel_restore::possible(&m, o);
    let (toc, created) = tokio::join!(
        async {
            match parallel {
                true => Some(crate::core::parallel_restore::load_toc(&repo, &m, &tool).await),
                false => None,
            }
        },
        async {
            match o.create {
                true => create_database(&m, &o.target).await,
                false => Ok(()),
            }
        }
    );
    created?;
    // Registered only once CREATE DATABASE succeeded: only a database this restore created
    // may ever be dropped on its behalf (a cancel before this point drops nothing).
    let created_hook = o.create.then(|| {
        let target = o.target.clone();
        o.cleanup.register(
            format!("drop database {} created by this restore", o.target.dbname),
            move || Box::pin(async move { drop_database(&target).await }),
        )
    });
    let res = match toc {
        Some(Ok(toc)) => {
            crate::core::parallel_restore::run(repo, m.clone(), toc, o, &tool, &tracker).await
        }
        Some(Err(e)) => Err(e),
        None => stream_into_pg_restore(repo, m.clone(), o, &tool, &tracker).await,
    };
    match res {
        Ok(bytes) => {
            tracker.update(|p| {
                p.phase = Phase::Done;
                p.current_table = None;
            });
            Ok(RestoreOutcome {
                backup_id: m.id.clone(),
                bytes,
                duration: start.elapsed(),
                created: o.create,
                created_hook,
            })
        }
        Err(e) => {
            if let Some(h) = created_hook {
                drop_database(&o.target).await;
                o.cleanup.disarm(h);
            }
            Err(e)
        }
    }
}

async fn stream_into_pg_restore(
    repo: Arc<Repository>,
    m: Arc<Manifest>,
    o: &RestoreOptions,
    tool: &tools::Tool,
    tracker: &Tracker<'_>,
) -> Result<u64> {
    let pass = PassFile::new(&o.target)?;
    let mut child =
        process::pg_restore_command(tool, &o.target, pass.as_ref(), o.clean, o.no_owner)
            .spawn()
            .map_err(|e| Error::Postgres(format!("cannot start {}: {e}", tool.path.display())))?;
    let log = Arc::new(Mutex::new(StderrLog::default()));
    let err_task = child.stderr.take().map(|s| {
        let log = log.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(s).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::debug!(target: "keepsake::pg", "pg_restore: {l}");
                if let Ok(mut g) = log.lock() {
                    g.push_line(&l);
                }
            }
        })
    });
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::Other("pg_restore stdin missing".into()))?;
    tracker.phase(Phase::Restoring);

    let feed: Result<u64> = async {
        let mut hasher = repo.key().stream_hasher();
        let mut done = 0u64;
        let chunks = chunk_stream(
            repo.clone(),
            m.clone(),
            0..m.stream.len(),
            o.read_ahead.max(1),
        );
        futures::pin_mut!(chunks);
        while let Some(r) = chunks.next().await {
            let (_, id, plain) = r?;
            hasher.update(&id.0);
            hasher.update(&(plain.len() as u64).to_le_bytes());
            if stdin.write_all(&plain).await.is_err() {
                // pg_restore stopped reading: its exit status explains why.
                return Ok(done);
            }
            done += plain.len() as u64;
            let table = log.lock().ok().and_then(|l| l.current_table.clone());
            tracker.update(|p| {
                p.bytes_done = done;
                p.current_table = table;
            });
        }
        if hasher.finalize().to_hex().as_str() != m.archive_digest {
            return Err(Error::Damage(format!(
                "backup {}: the reassembled archive does not match its recorded digest",
                m.id
            )));
        }
        Ok(done)
    }
    .await;

    let done = match feed {
        Ok(d) => d,
        Err(e) => {
            // Abort before pg_restore sees EOF, so its transaction rolls back.
            let _ = child.kill().await;
            return Err(e);
        }
    };
    tracker.phase(Phase::Finishing);
    drop(stdin);
    let status = child
        .wait()
        .await
        .map_err(|e| Error::io("waiting for pg_restore", e))?;
    if let Some(t) = err_task {
        let _ = t.await;
    }
    drop(pass);
    if !status.success() {
        let explain = log.lock().map(|l| l.explain()).unwrap_or_default();
        return Err(Error::Postgres(format!(
            "restore of backup {} into {} failed: pg_restore {}; the transaction was rolled back.\n  {explain}",
            m.id,
            o.target.display(),
            process::describe_exit(status)
        )));
    }
    if done != m.logical_bytes {
        return Err(Error::Other(format!(
            "restore of backup {}: pg_restore finished after {done} of {} bytes",
            m.id, m.logical_bytes
        )));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn pool_reuses_large_enough_buffers_and_keeps_at_most_its_limit() {
        let pool = Pool::new(1 << 20);
        let mut a = pool.take(100_000);
        assert!(a.capacity() >= 100_000 && a.is_empty());
        a.extend_from_slice(&[7; 1000]);
        let at = a.as_ptr();
        pool.give(a);
        // Reused (same allocation), and handed out empty.
        let b = pool.take(50_000);
        assert_eq!(b.as_ptr(), at);
        assert!(b.is_empty());
        pool.give(b);
        // Too small for this one: a new buffer, and the small one is let go.
        let c = pool.take(300_000);
        assert!(c.capacity() >= 300_000);
        assert_eq!(pool.kept.lock().unwrap().0.len(), 0);
        // Never more than the limit kept.
        let big: Vec<Vec<u8>> = (0..8).map(|_| pool.take(300_000)).collect();
        for v in big {
            pool.give(v);
        }
        let k = pool.kept.lock().unwrap();
        assert!(k.1 <= 1 << 20 && k.1 == k.0.iter().map(Vec::capacity).sum::<usize>());
        assert!(!k.0.is_empty());
    }
}
