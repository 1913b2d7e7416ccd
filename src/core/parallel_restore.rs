//! Parallel restore straight from the repository, like `pg_restore -j` but without the
//! archive on disk: only its table of contents (the first `toc_len` bytes) is written to a
//! private temporary file.
//!
//! 1. pre-data (schema) from the TOC file;
//! 2. `jobs` workers share one queue of tasks: the data blocks (recorded with their archive
//!    offsets at backup time; tables that foreign keys reference first, then largest first),
//!    and single post-data entries as soon as what they need is in (a loaded table's indexes
//!    and keys, then foreign keys; never two entries on one table at once, which would only
//!    wait for each other's locks), run as SQL on the same sessions (a `pg_restore` process,
//!    connection and authentication per entry cost ~0.3 CPU-s per restore on the benchmark;
//!    entries in another tablespace still go through `pg_restore -L`). Chunk fetch,
//!    decryption and decompression run ahead of each block. Table data goes straight into
//!    `COPY … FROM STDIN` on keepsake's own sessions (set up as `pg_restore` sets up its own:
//!    archive encoding, empty search_path, no timeouts, row security off), unwrapped from the
//!    archive's framing by [`CopyDeframer`]: no `pg_restore` process and no pipe in the data
//!    path. On this 2-core benchmark machine the restore's client CPU fell from 3.7 s to 2.7 s
//!    for 1 GB, time the server gets back. Other data blocks (large objects), and archives in
//!    an encoding other than UTF-8 (tokio-postgres speaks only UTF-8), go through their own
//!    `pg_restore -L <that entry>` fed the TOC and that block;
//! 3. data entries without a block (sequence values) from the TOC file;
//! 4. the rest of post-data (triggers, comments, …) with `pg_restore -j jobs` from the TOC
//!    file; 3 and 4 get exact lists in TOC order and are skipped when nothing is left.
//!
//! Invariant: used only into a database this restore created (several sessions cannot share
//! one transaction), so a failure anywhere is undone by dropping that database.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::core::chunks::{chunk_stream, Plain};
use crate::core::feed::RestoreOptions;
use crate::core::format::Manifest;
use crate::core::progress::{Phase, Tracker};
use crate::core::repo::Repository;
use crate::error::{Error, Result};
use crate::pg::archive::{BlockSpan, CopyDeframer, TocEntry};
use crate::pg::process::{self, PassFile};
use crate::pg::tools::Tool;

/// Whether a backup can be restored in parallel into `o`.
pub fn possible(m: &Manifest, o: &RestoreOptions) -> bool {
    o.selection.is_none()
        && o.create
        && o.jobs > 1
        && m.facts.toc_len > 0
        && !m.facts.blocks.is_empty()
}

/// Archive offset where each stream position starts (one more entry: the total).
pub(crate) fn chunk_starts(m: &Manifest) -> Vec<u64> {
    let mut v = Vec::with_capacity(m.stream.len() + 1);
    let mut at = 0u64;
    for ci in &m.stream {
        v.push(at);
        at += u64::from(m.chunks[*ci as usize].raw_len);
    }
    v.push(at);
    v
}

/// The last few decoded chunks, shared by the workers. One chunk holds the data blocks of
/// many small tables; without this each block fetched, decrypted and decompressed its chunk
/// again (100,000 one-row tables restored 1.5× slower than `pg_restore` in one session).
#[derive(Default)]
pub(crate) struct Decoded(Mutex<VecDeque<(usize, Arc<Plain>)>>);

/// Decoded chunks kept (a few MiB at the chunker's sizes).
const DECODED_KEEP: usize = 4;

impl Decoded {
    fn get(&self, pos: usize) -> Option<Arc<Plain>> {
        let q = self.0.lock().ok()?;
        q.iter().find(|(p, _)| *p == pos).map(|(_, c)| c.clone())
    }

    fn put(&self, pos: usize, c: Arc<Plain>) {
        if let Ok(mut q) = self.0.lock() {
            if q.iter().any(|(p, _)| *p == pos) {
                return;
            }
            if q.len() >= DECODED_KEEP {
                q.pop_front();
            }
            q.push_back((pos, c));
        }
    }
}

/// Archive bytes `[start, end)` in pieces, fetched and decoded ahead; a span inside one chunk
/// takes that chunk from `decoded` when another block decoded it just before.
fn span_pieces(
    repo: &Arc<Repository>,
    m: &Arc<Manifest>,
    starts: &[u64],
    decoded: &Arc<Decoded>,
    (start, end): (u64, u64),
) -> impl futures::Stream<Item = Result<Piece>> {
    let first = starts.partition_point(|s| *s <= start).saturating_sub(1);
    let last = starts[..m.stream.len()].partition_point(|s| *s < end);
    let starts: Vec<u64> = starts[first..=last.max(first)].to_vec();
    let piece = move |i: usize, plain: Arc<Plain>| {
        let cs = starts[i - first];
        let lo = start.saturating_sub(cs) as usize;
        let hi = (end.min(cs + plain.len() as u64) - cs) as usize;
        Piece { plain, lo, hi }
    };
    if last == first + 1 {
        let (repo, m, decoded) = (repo.clone(), m.clone(), decoded.clone());
        futures::stream::once(async move {
            let plain = match decoded.get(first) {
                Some(p) => p,
                None => {
                    let one = chunk_stream(repo, m, first..last, 1);
                    futures::pin_mut!(one);
                    let (_, _, p) = one
                        .next()
                        .await
                        .ok_or_else(|| Error::Other(format!("chunk {first} was not read")))??;
                    let p = Arc::new(p);
                    decoded.put(first, p.clone());
                    p
                }
            };
            Ok(piece(first, plain))
        })
        .left_stream()
    } else {
        chunk_stream(repo.clone(), m.clone(), first..last.max(first), 2)
            .map(move |r| {
                let (i, _, plain) = r?;
                Ok(piece(i, Arc::new(plain)))
            })
            .right_stream()
    }
}

/// Part of a decoded chunk.
struct Piece {
    plain: Arc<Plain>,
    lo: usize,
    hi: usize,
}

impl std::ops::Deref for Piece {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.plain[self.lo..self.hi]
    }
}

/// Write archive bytes `[start, end)` to `w`. Returns false when the reader went away (its
/// exit status explains why).
async fn write_span<W: AsyncWrite + Unpin>(
    repo: &Arc<Repository>,
    m: &Arc<Manifest>,
    starts: &[u64],
    decoded: &Arc<Decoded>,
    span: (u64, u64),
    w: &mut W,
    done: &AtomicU64,
) -> Result<bool> {
    let pieces = span_pieces(repo, m, starts, decoded, span);
    futures::pin_mut!(pieces);
    while let Some(p) = pieces.next().await {
        let p = p?;
        if w.write_all(&p).await.is_err() {
            return Ok(false);
        }
        done.fetch_add(p.len() as u64, Ordering::Relaxed);
    }
    Ok(true)
}

/// Data blocks smaller than this load with a plain COPY (no FREEZE, see [`copy_block`]).
const FREEZE_MIN_BYTES: u64 = 1 << 20;

/// COPY data is sent in messages of about this size.
const COPY_BATCH: usize = 256 * 1024;

/// Load one table-data block with `COPY … FROM STDIN` on `client`, frozen when possible.
///
/// `COPY … WITH (FREEZE)` writes the rows already frozen and the pages all-visible, so the
/// index builds and foreign-key checks that scan the table next neither look up nor set
/// hint bits, and no later vacuum has to freeze a freshly restored database: on the 1 GB
/// benchmark the restore took 0.6 s (6%) less. FREEZE needs the table truncated in the same
/// transaction; the table is new and empty (this restore created the database), so
/// `TRUNCATE ONLY` removes nothing. Where FREEZE is refused (a dump loading partitions through
/// their root, a role without TRUNCATE) the transaction is rolled back and the data is
/// loaded with a plain COPY. Frozen rows are visible to every snapshot once the load commits,
/// even one taken before: only a concern for sessions reading a database being restored.
#[allow(clippy::too_many_arguments)]
async fn copy_block(
    client: &tokio_postgres::Client,
    (stmt, table): (&str, &str),
    repo: &Arc<Repository>,
    m: &Arc<Manifest>,
    starts: &[u64],
    decoded: &Arc<Decoded>,
    b: &BlockSpan,
    int_size: usize,
    done: &AtomicU64,
) -> Result<u64> {
    use futures::SinkExt;
    let pg = |e: tokio_postgres::Error| Error::Postgres(crate::pg::client::describe(&e));
    let frozen = format!("{} WITH (FREEZE)", stmt.trim_end_matches(';'));
    // A small table is loaded with a plain COPY: FREEZE's TRUNCATE gives the table a new file,
    // created and synced at commit, which for 100,000 one-row tables cost more than all the
    // hint bits it saves (keepsake took 1.5× pg_restore's time).
    let small = b.end - b.start < FREEZE_MIN_BYTES;
    let begin = match small {
        true => Err(None),
        false => client
            .batch_execute(&format!("BEGIN; TRUNCATE ONLY {table}"))
            .await
            .map_err(Some),
    };
    let sink = match begin {
        Ok(()) => match client.copy_in::<_, bytes::Bytes>(&frozen).await {
            Ok(sink) => Some(sink),
            Err(e) => {
                tracing::debug!(
                    "COPY FREEZE refused for {table}: {}",
                    crate::pg::client::describe(&e)
                );
                None
            }
        },
        Err(Some(e)) => {
            tracing::debug!(
                "TRUNCATE refused for {table}: {}",
                crate::pg::client::describe(&e)
            );
            None
        }
        Err(None) => None,
    };
    let in_tx = sink.is_some();
    let sink = match sink {
        Some(s) => s,
        None => {
            if !small {
                client.batch_execute("ROLLBACK").await.map_err(pg)?;
            }
            client.copy_in::<_, bytes::Bytes>(stmt).await.map_err(pg)?
        }
    };
    futures::pin_mut!(sink);
    let mut de = CopyDeframer::new(int_size, b.dump_id);
    // One buffer, reused once the connection has sent what it held: it stays in cache.
    let mut batch = bytes::BytesMut::with_capacity(COPY_BATCH * 2);
    let pieces = span_pieces(repo, m, starts, decoded, (b.start, b.end));
    futures::pin_mut!(pieces);
    while let Some(p) = pieces.next().await {
        let p = p?;
        de.feed(&p, &mut batch)
            .map_err(|e| Error::Damage(format!("backup {}: {e}", m.id)))?;
        done.fetch_add(p.len() as u64, Ordering::Relaxed);
        if batch.len() >= COPY_BATCH {
            sink.send(batch.split().freeze()).await.map_err(pg)?;
            batch.reserve(COPY_BATCH * 2);
        }
    }
    if !de.ended() {
        return Err(Error::Damage(format!(
            "backup {}: the data block of TOC entry {} ends early",
            m.id, b.dump_id
        )));
    }
    if !batch.is_empty() {
        sink.send(batch.split().freeze()).await.map_err(pg)?;
    }
    let rows = sink.finish().await.map_err(pg)?;
    if in_tx {
        client.batch_execute("COMMIT").await.map_err(pg)?;
    }
    Ok(rows)
}

/// The session settings `pg_restore` uses, for the archive's encoding and string syntax;
/// `None` when the data cannot be sent over a tokio-postgres session (which speaks UTF-8
/// only) or the entries look unusual: those restores use `pg_restore` for the data too.
fn session_setup(entries: &[TocEntry]) -> Option<String> {
    let quoted = |desc: &str, prefix: &str| -> Option<String> {
        let e = entries.iter().find(|e| e.desc == desc)?;
        let v = e.defn.trim().strip_prefix(prefix)?.strip_suffix("';")?;
        v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            .then(|| v.to_string())
    };
    let encoding = quoted("ENCODING", "SET client_encoding = '")?;
    let std_strings = quoted("STDSTRINGS", "SET standard_conforming_strings = '")?;
    if !matches!(encoding.to_ascii_uppercase().as_str(), "UTF8" | "UTF-8") {
        return None;
    }
    Some(format!(
        "SET statement_timeout = 0; SET lock_timeout = 0; \
         SET idle_in_transaction_session_timeout = 0; SET client_encoding = 'UTF8'; \
         SET standard_conforming_strings = '{std_strings}'; \
         SELECT pg_catalog.set_config('search_path', '', false); \
         SET check_function_bodies = false; SET xmloption = content; \
         SET client_min_messages = warning; SET row_security = off; \
         SET default_tablespace = '';"
    ))
}

/// A session of keepsake's own on the target, set up with `setup` ([`session_setup`]).
async fn open_session(
    target: &crate::pg::conninfo::ConnInfo,
    setup: &str,
) -> Result<tokio_postgres::Client> {
    let c = crate::pg::client::connect(target).await?;
    c.batch_execute(setup).await.map_err(|e| {
        Error::Postgres(format!(
            "setting up a restore session: {}",
            crate::pg::client::describe(&e)
        ))
    })?;
    Ok(c)
}

/// The `COPY … FROM stdin;` statement of a table-data entry, when it is one, and the table.
fn copy_statement(e: &TocEntry) -> Option<(&str, String)> {
    use crate::pg::client::quote_ident;
    let s = e.copy_stmt.trim();
    (e.desc == "TABLE DATA"
        && s.starts_with("COPY ")
        && s.ends_with(" FROM stdin;")
        && !s[..s.len() - 1].contains(';'))
    .then(|| {
        (
            s,
            format!("{}.{}", quote_ident(&e.namespace), quote_ident(&e.tag)),
        )
    })
}

async fn finish_step(step: &str, child: tokio::process::Child) -> Result<()> {
    let o = child
        .wait_with_output()
        .await
        .map_err(|e| Error::io(format!("waiting for pg_restore ({step})"), e))?;
    if o.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(6)
        .collect();
    Err(Error::Postgres(format!(
        "pg_restore ({step}) {}:\n  {}",
        process::describe_exit(o.status),
        lines.into_iter().rev().collect::<Vec<_>>().join("\n  ")
    )))
}

/// The archive's table of contents, read before the target database exists.
pub struct Toc {
    /// The archive's header and TOC, privately on disk (what the `pg_restore` steps read).
    file: tempfile::NamedTempFile,
    bytes: Vec<u8>,
    /// The entries, by dump id, as `pg_restore --list` lists them.
    lines: BTreeMap<i64, String>,
}

impl Toc {
    /// The entries with their dependencies, parsed from the TOC bytes.
    pub fn entries(&self) -> Result<Vec<TocEntry>> {
        crate::pg::archive::read_toc(&self.bytes)
            .map(|t| t.entries)
            .map_err(|e| Error::Damage(format!("the archive's table of contents: {e}")))
    }

    /// A `pg_restore --use-list` file's text for exactly `ids`, in the archive's TOC order
    /// (`entries` as [`Toc::entries`] gives them; dump ids are not in that order, and a
    /// restore from a stream must follow it).
    pub fn list_of(&self, entries: &[TocEntry], ids: &std::collections::BTreeSet<i64>) -> String {
        let mut s = String::new();
        for e in entries.iter().filter(|e| ids.contains(&e.dump_id)) {
            if let Some(line) = self.lines.get(&e.dump_id) {
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    }
}

/// Fetch the archive's TOC and list it with `pg_restore --list`. Needs no connection: runs
/// while the target database is being created.
pub async fn load_toc(repo: &Arc<Repository>, m: &Arc<Manifest>, tool: &Tool) -> Result<Toc> {
    let file = tempfile::Builder::new()
        .prefix("keepsake-toc-")
        .tempfile()
        .map_err(|e| Error::io("creating a temporary TOC file", e))?;
    let mut bytes = Vec::with_capacity(m.facts.toc_len as usize);
    let starts = chunk_starts(m);
    let read = AtomicU64::new(0);
    let decoded = Arc::new(Decoded::default());
    write_span(
        repo,
        m,
        &starts,
        &decoded,
        (0, m.facts.toc_len),
        &mut bytes,
        &read,
    )
    .await?;
    std::fs::write(file.path(), &bytes).map_err(|e| Error::io("writing the TOC file", e))?;
    // Not `process::pg_restore_step`: listing reads only the file, and the target database
    // (which that step names with `--dbname`) may not exist yet.
    let mut cmd = tokio::process::Command::from(crate::pg::process::tool_command(&tool.path));
    cmd.arg("--list")
        .arg(file.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let listing = cmd
        .output()
        .await
        .map_err(|e| Error::io("running pg_restore --list", e))?;
    if !listing.status.success() {
        return Err(Error::Postgres(format!(
            "pg_restore --list: {}",
            String::from_utf8_lossy(&listing.stderr).trim()
        )));
    }
    let mut lines: BTreeMap<i64, String> = BTreeMap::new();
    for l in String::from_utf8_lossy(&listing.stdout).lines() {
        if let Some((id, _)) = l.split_once(';') {
            if let Ok(id) = id.trim().parse::<i64>() {
                lines.insert(id, l.to_string());
            }
        }
    }
    Ok(Toc { file, bytes, lines })
}

/// What a parallel restore decides from the table of contents alone, before it touches the
/// target: which entries load as COPY or run as SQL on keepsake's sessions, which indexes and
/// keys follow one table's data, which foreign keys wait for what, the order data blocks load
/// in, and the tables each post-data entry locks.
struct Plan<'t> {
    copy_of: BTreeMap<i64, (&'t str, String)>,
    sql_of: BTreeMap<i64, &'t str>,
    table_of_data: BTreeMap<i64, i64>,
    early: BTreeMap<i64, Vec<i64>>,
    section: BTreeMap<i64, (i64, bool)>,
    fks: Vec<(i64, Vec<i64>)>,
    blocks: Vec<BlockSpan>,
    table_locks: BTreeMap<i64, Vec<i64>>,
}

impl<'t> Plan<'t> {
    /// `sessions`: keepsake loads data and runs post-data SQL on its own sessions (else
    /// everything goes through pg_restore).
    fn new(entries: &'t [TocEntry], m: &Manifest, sessions: bool) -> Self {
        let copy_of: BTreeMap<i64, (&str, String)> = match sessions {
            true => entries
                .iter()
                .filter_map(|e| copy_statement(e).map(|s| (e.dump_id, s)))
                .collect(),
            false => BTreeMap::new(),
        };
        // Post-data entries run as SQL on the same sessions (no pg_restore process, connection and
        // authentication per index or key); those in another tablespace go through pg_restore.
        let sql_of: BTreeMap<i64, &str> = match sessions {
            true => entries
                .iter()
                .filter(|e| {
                    e.section == 4
                        && matches!(e.desc.as_str(), "INDEX" | "CONSTRAINT" | "FK CONSTRAINT")
                        && e.tablespace.is_empty()
                        && !e.defn.trim().is_empty()
                })
                .map(|e| (e.dump_id, e.defn.as_str()))
                .collect(),
            false => BTreeMap::new(),
        };
        let table_of_data: BTreeMap<i64, i64> = entries
            .iter()
            .filter(|e| e.desc == "TABLE DATA" && e.deps.len() == 1)
            .map(|e| (e.dump_id, e.deps[0]))
            .collect();
        let mut early: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for e in entries {
            if e.section == 4 && (e.desc == "INDEX" || e.desc == "CONSTRAINT") && e.deps.len() == 1
            {
                early.entry(e.deps[0]).or_default().push(e.dump_id);
            }
        }
        // Foreign keys run as soon as their table's data and the referenced key are in (their
        // validation scans the table: overlapping it with other loads is most of `-j`'s gain).
        let section: BTreeMap<i64, (i64, bool)> = entries
            .iter()
            .map(|e| (e.dump_id, (e.section, e.desc == "TABLE")))
            .collect();
        let fks: Vec<(i64, Vec<i64>)> = entries
            .iter()
            .filter(|e| e.section == 4 && e.desc == "FK CONSTRAINT")
            .map(|e| (e.dump_id, e.deps.clone()))
            .collect();

        // One queue of tasks for `jobs` workers: data blocks largest first, and the post-data
        // entries that became possible (a loaded table's indexes and keys, then foreign keys whose
        // tables and referenced keys are in), which go first so that what waits on them can start.
        // Each entry is its own task, so two indexes of the last table to load build side by side.
        // Tables whose keys foreign keys reference load first (they are usually small, and every
        // foreign key on them waits for them), then the rest, largest first.
        let owner: BTreeMap<i64, i64> = early
            .iter()
            .flat_map(|(t, ids)| ids.iter().map(move |i| (*i, *t)))
            .collect();
        let referenced: std::collections::HashSet<i64> = fks
            .iter()
            .flat_map(|(_, deps)| deps.iter().filter_map(|d| owner.get(d).copied()))
            .collect();
        let mut blocks: Vec<BlockSpan> = m.facts.blocks.clone();
        blocks.sort_by_key(|b| {
            let first = table_of_data
                .get(&b.dump_id)
                .is_some_and(|t| referenced.contains(t));
            (!first, std::cmp::Reverse(b.end - b.start))
        });
        // The tables a post-data entry locks: the tables among its dependencies.
        let table_locks: BTreeMap<i64, Vec<i64>> = entries
            .iter()
            .filter(|e| e.section == 4)
            .map(|e| {
                let t: Vec<i64> = e
                    .deps
                    .iter()
                    .filter(|d| section.get(d).is_some_and(|(_, is_table)| *is_table))
                    .copied()
                    .collect();
                (e.dump_id, t)
            })
            .collect();
        Plan {
            copy_of,
            sql_of,
            table_of_data,
            early,
            section,
            fks,
            blocks,
            table_locks,
        }
    }
}

///
/// `skip`: entries not restored (what a proof on a plain server cannot take; see
/// `restore::uncoverable`); with any, pre-data runs from an exact list too.
pub async fn run(
    repo: Arc<Repository>,
    m: Arc<Manifest>,
    toc: Toc,
    o: &RestoreOptions,
    skip: &std::collections::BTreeSet<i64>,
    tool: &Tool,
    tracker: &Tracker<'_>,
) -> Result<u64> {
    let starts = chunk_starts(&m);
    let decoded = Arc::new(Decoded::default());
    let done = AtomicU64::new(m.facts.toc_len);
    let pass = PassFile::new(&o.target)?;
    let step = |extra: Vec<String>, stdin: bool| {
        process::pg_restore_step(
            tool,
            &o.target,
            pass.as_ref(),
            o.no_owner,
            o.no_privileges,
            &extra,
            stdin,
        )
    };
    let Toc {
        file: toc_file,
        bytes: toc,
        lines,
    } = toc;
    let toc_path = toc_file.path().display().to_string();

    // Indexes and constraints that need nothing but one table are built right after that
    // table's data is in, while other tables still load (as `pg_restore -j` does); the rest
    // of post-data waits for the end.
    let toc_info = crate::pg::archive::read_toc(&toc)
        .map_err(|e| Error::Damage(format!("backup {}: {e}", m.id)))?;
    let (entries, int_size) = (&toc_info.entries, toc_info.int_size);
    let setup = session_setup(entries);
    let Plan {
        copy_of,
        sql_of,
        table_of_data,
        early,
        section,
        fks,
        blocks,
        table_locks,
    } = Plan::new(entries, &m, setup.is_some());

    tracker.phase(Phase::Restoring);
    // The workers' sessions connect (and authenticate) while the schema is created.
    let opening = async {
        match &setup {
            Some(setup) => {
                futures::future::join_all((0..o.jobs).map(|_| open_session(&o.target, setup))).await
            }
            None => Vec::new(),
        }
    };
    let pre_list = lists_dir_pre(skip, entries, &lines)?;
    let pre_data = async {
        let args = match &pre_list {
            Some((_, path)) => vec![format!("--use-list={}", path.display()), toc_path.clone()],
            None => vec!["--section=pre-data".into(), toc_path.clone()],
        };
        finish_step("pre-data", step(args, false).spawn().map_err(spawn_err)?).await
    };
    let (pre_data, opened) = tokio::join!(pre_data, opening);
    pre_data?;
    let opened = opened.into_iter().collect::<Result<Vec<_>>>()?;
    let opened: Vec<Mutex<Option<tokio_postgres::Client>>> =
        opened.into_iter().map(|c| Mutex::new(Some(c))).collect();

    let locks_of = |id: &i64| -> &[i64] { table_locks.get(id).map(Vec::as_slice).unwrap_or(&[]) };
    let blocks: Vec<BlockSpan> = blocks
        .into_iter()
        .filter(|b| !skip.contains(&b.dump_id))
        .collect();
    let sched = Mutex::new(Sched {
        data: VecDeque::from(blocks),
        ..Sched::default()
    });
    let lists_dir = tempfile::Builder::new()
        .prefix("keepsake-lists-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary directory", e))?;
    let lock = || {
        sched
            .lock()
            .map_err(|_| Error::Other("restore scheduler lock poisoned".into()))
    };
    let worker = |w: usize| {
        let (lines, repo, m, starts, done, toc, lists_dir) =
            (&lines, &repo, &m, &starts, &done, &toc, &lists_dir);
        let (table_of_data, early, section, fks) = (&table_of_data, &early, &section, &fks);
        let (copy_of, setup, lock, toc_path, step) = (&copy_of, &setup, &lock, &toc_path, &step);
        let (sql_of, opened, decoded) = (&sql_of, &opened, &decoded);
        let locks_of = &locks_of;
        async move {
            let mut session: Option<tokio_postgres::Client> = opened
                .get(w)
                .and_then(|c| c.lock().ok().and_then(|mut c| c.take()));
            loop {
                let task = {
                    let mut s = lock()?;
                    if s.failed {
                        return Ok::<(), Error>(());
                    }
                    match s.next_post(|id| locks_of(id)) {
                        Some(id) => Some(Task::Post(id)),
                        None => s.data.pop_front().map(Task::Data),
                    }
                    .inspect(|_| s.running += 1)
                    .or_else(|| (s.running > 0).then_some(Task::Wait))
                };
                let Some(task) = task else {
                    return Ok(());
                };
                let result = match &task {
                    Task::Wait => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                    Task::Post(id) => {
                        let list = lists_dir.path().join(format!("w{w}-post-{id}"));
                        async {
                            // Entries pg_restore does not list have nothing to restore.
                            let Some(line) = lines.get(id) else {
                                return Ok(());
                            };
                            let what = format!("post-data entry {}", describe_line(line));
                            if let (Some(sql), Some(setup)) = (sql_of.get(id), setup) {
                                let client = match session.take() {
                                    Some(c) => c,
                                    None => open_session(&o.target, setup).await?,
                                };
                                client.batch_execute(sql).await.map_err(|e| {
                                    Error::Postgres(format!(
                                        "restoring the {what}: {}",
                                        crate::pg::client::describe(&e)
                                    ))
                                })?;
                                session = Some(client);
                                return Ok(());
                            }
                            std::fs::write(&list, format!("{line}\n"))
                                .map_err(|e| Error::io("writing a restore list", e))?;
                            let child = step(
                                vec![
                                    "--section=post-data".into(),
                                    format!("--use-list={}", list.display()),
                                    toc_path.clone(),
                                ],
                                false,
                            )
                            .spawn()
                            .map_err(spawn_err)?;
                            finish_step(&what, child).await
                        }
                        .await
                    }
                    Task::Data(b) => {
                        let line = lines.get(&b.dump_id).ok_or_else(|| {
                            Error::Other(format!(
                                "TOC entry {} not listed by pg_restore",
                                b.dump_id
                            ))
                        })?;
                        let what = format!("data of {}", describe_line(line));
                        async {
                            if let (Some(stmt), Some(setup)) = (copy_of.get(&b.dump_id), setup) {
                                let client = match session.take() {
                                    Some(c) => c,
                                    None => open_session(&o.target, setup).await?,
                                };
                                let (stmt, table) = (stmt.0, stmt.1.as_str());
                                copy_block(
                                    &client,
                                    (stmt, table),
                                    repo,
                                    m,
                                    starts,
                                    decoded,
                                    b,
                                    int_size,
                                    done,
                                )
                                .await
                                .map_err(|e| match e {
                                    Error::Postgres(msg) => {
                                        Error::Postgres(format!("restoring the {what}: {msg}"))
                                    }
                                    other => other,
                                })?;
                                session = Some(client);
                                return Ok(());
                            }
                            let list = lists_dir.path().join(format!("w{w}-{}", b.dump_id));
                            std::fs::write(&list, format!("{line}\n"))
                                .map_err(|e| Error::io("writing a restore list", e))?;
                            let mut child = step(
                                vec![
                                    "--section=data".into(),
                                    "--single-transaction".into(),
                                    format!("--use-list={}", list.display()),
                                ],
                                true,
                            )
                            .spawn()
                            .map_err(spawn_err)?;
                            let mut stdin = child
                                .stdin
                                .take()
                                .ok_or_else(|| Error::Other("pg_restore stdin".into()))?;
                            let ok = stdin.write_all(toc).await.is_ok()
                                && write_span(
                                    repo,
                                    m,
                                    starts,
                                    decoded,
                                    (b.start, b.end),
                                    &mut stdin,
                                    done,
                                )
                                .await?;
                            drop(stdin);
                            finish_step(&what, child).await?;
                            if !ok {
                                return Err(Error::Postgres(format!(
                                    "pg_restore ({what}) stopped reading"
                                )));
                            }
                            Ok(())
                        }
                        .await
                    }
                };
                let mut s = lock()?;
                s.running -= 1;
                if let Err(e) = result {
                    s.failed = true;
                    return Err(e);
                }
                match task {
                    Task::Post(id) => s.finish_post(id, locks_of(&id)),
                    Task::Data(b) => {
                        if let Some(t) = table_of_data.get(&b.dump_id) {
                            s.loaded.insert(*t);
                            let ids = early.get(t).cloned().unwrap_or_default();
                            s.queue_post(ids);
                        }
                    }
                    Task::Wait => {}
                }
                // Foreign keys now possible: every dependency loaded, built, or pre-data.
                let ready: Vec<i64> = fks
                    .iter()
                    .filter(|(id, deps)| {
                        !s.queued.contains(id)
                            && deps.iter().all(|dep| {
                                s.loaded.contains(dep)
                                    || s.built.contains(dep)
                                    || section
                                        .get(dep)
                                        .is_some_and(|(sec, is_table)| *sec == 2 && !is_table)
                            })
                    })
                    .map(|(id, _)| *id)
                    .collect();
                s.queue_post(ready);
                drop(s);
                tracker.update(|p| p.bytes_done = done.load(Ordering::Relaxed));
            }
        }
    };
    let workers: Vec<_> = (0..o.jobs).map(worker).collect();
    // Bytes are counted as they are fed, not only when a table's load ends: one large table
    // would otherwise hold the percentage still for its whole load, then jump (issue 27, item 9).
    let ticking = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            tracker.update(|p| p.bytes_done = done.load(Ordering::Relaxed));
        }
    };
    tokio::select! {
        r = futures::future::try_join_all(workers) => { r?; }
        _ = ticking => {}
    }

    // What is left, as exact lists in TOC order, without `--section`: pg_restore gives an
    // entry of no section (a comment, an ACL) the section of the entry before it, and with a
    // `--use-list` that is the entry before it *in the list*, so with the indexes already
    // built left out, an index's comment would count as data and be skipped. Here each
    // entry's section is worked out once over the whole TOC, as pg_restore does without a
    // list. A step with nothing left is skipped (its processes and connections cost time
    // while the machine is otherwise idle, at the very end of the restore).
    let effective = effective_sections(entries);
    let list_of = |sec: i64, skip: &dyn Fn(&i64) -> bool| -> String {
        effective
            .iter()
            .filter(|(id, s)| *s == sec && !skip(id))
            .filter_map(|(id, _)| lines.get(id).map(|l| format!("{l}\n")))
            .collect()
    };

    // `pg_restore` on exactly the entries of `list` (skipped when there are none).
    let run_listed = |what: &'static str, list: String, jobs: usize| {
        let path = lists_dir.path().join(what.replace(' ', "-"));
        let (step, toc_path) = (&step, &toc_path);
        async move {
            if list.is_empty() {
                return Ok(());
            }
            std::fs::write(&path, list).map_err(|e| Error::io("writing a restore list", e))?;
            let args = vec![
                format!("--jobs={jobs}"),
                format!("--use-list={}", path.display()),
                toc_path.clone(),
            ];
            finish_step(what, step(args, false).spawn().map_err(spawn_err)?).await
        }
    };

    // Data entries without a block (sequence values and the like).
    let with_block: std::collections::HashSet<i64> =
        m.facts.blocks.iter().map(|b| b.dump_id).collect();
    run_listed(
        "data without blocks",
        list_of(3, &|id| with_block.contains(id) || skip.contains(id)),
        1,
    )
    .await?;

    tracker.phase(Phase::Finishing);
    let done_early = lock()?.built.clone();
    run_listed(
        "post-data",
        list_of(4, &|id| done_early.contains(id) || skip.contains(id)),
        o.jobs,
    )
    .await?;
    drop(pass);
    Ok(m.logical_bytes)
}

/// Sections as pg_restore gives them without a list: an entry of no section (a comment, an ACL)
/// takes the section of the entry before it in the TOC.
fn effective_sections(entries: &[TocEntry]) -> Vec<(i64, i64)> {
    let mut current = 2;
    entries
        .iter()
        .map(|e| {
            if e.section != 1 {
                current = e.section;
            }
            (e.dump_id, current)
        })
        .collect()
}

/// With entries to skip, the pre-data step's exact list (in TOC order) in a private file.
fn lists_dir_pre(
    skip: &std::collections::BTreeSet<i64>,
    entries: &[TocEntry],
    lines: &BTreeMap<i64, String>,
) -> Result<Option<(tempfile::NamedTempFile, std::path::PathBuf)>> {
    if skip.is_empty() {
        return Ok(None);
    }
    let list: String = effective_sections(entries)
        .iter()
        .filter(|(id, s)| *s == 2 && !skip.contains(id))
        .filter_map(|(id, _)| lines.get(id).map(|l| format!("{l}\n")))
        .collect();
    let f = tempfile::Builder::new()
        .prefix("keepsake-pre-data-")
        .tempfile()
        .map_err(|e| Error::io("creating a restore list", e))?;
    std::fs::write(f.path(), list).map_err(|e| Error::io("writing a restore list", e))?;
    let path = f.path().to_path_buf();
    Ok(Some((f, path)))
}

/// What the restore's workers share: the tasks left and what is done.
#[derive(Default)]
struct Sched {
    data: VecDeque<BlockSpan>,
    /// Post-data entries whose dependencies are in, in the order they became possible.
    post: VecDeque<i64>,
    /// Post-data entries ever queued (never queued twice).
    queued: std::collections::HashSet<i64>,
    /// Tables whose data is in.
    loaded: std::collections::HashSet<i64>,
    /// Post-data entries restored.
    built: std::collections::HashSet<i64>,
    /// Tasks being worked on.
    running: usize,
    /// Tables a running post-data entry works on.
    busy: std::collections::HashSet<i64>,
    /// A task failed: the other workers stop taking tasks.
    failed: bool,
}

impl Sched {
    fn queue_post(&mut self, ids: Vec<i64>) {
        for id in ids {
            if self.queued.insert(id) {
                self.post.push_back(id);
            }
        }
    }
    /// The first queued entry whose tables no running entry holds (an index build and a
    /// foreign key on one table would only wait for each other's locks), marked running.
    fn next_post<'a>(&mut self, locks: impl Fn(&i64) -> &'a [i64]) -> Option<i64> {
        let i = self
            .post
            .iter()
            .position(|id| locks(id).iter().all(|t| !self.busy.contains(t)))?;
        let id = self.post.remove(i)?;
        self.busy.extend(locks(&id));
        Some(id)
    }
    fn finish_post(&mut self, id: i64, locks: &[i64]) {
        self.built.insert(id);
        for t in locks {
            self.busy.remove(t);
        }
    }
}

enum Task {
    Data(BlockSpan),
    Post(i64),
    /// Nothing to take now, but running tasks may make more possible.
    Wait,
}

/// `TABLE DATA public guests` from a `pg_restore --list` line, for messages.
fn describe_line(line: &str) -> String {
    line.split_whitespace()
        .skip(3)
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn spawn_err(e: std::io::Error) -> Error {
    Error::Postgres(format!("cannot start pg_restore: {e}"))
}
