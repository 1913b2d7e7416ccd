//! Verification (docs/verify.md): prove a backup at the level asked, and record the result.
//!
//! - `structure`: the manifest and every index authenticate; every pack the backup needs
//!   exists with its recorded size (no download).
//! - `data`: every chunk is read, decrypted, decompressed and its keyed id recomputed; the
//!   reassembled archive parses completely and yields exactly the table facts recorded at
//!   backup time; `pg_restore --list` reads its table of contents.
//! - `restore`: the backup is restored into a scratch database, every table's row count and
//!   digest, every sequence and the large objects are compared with the recorded facts,
//!   `pg_amcheck` runs when installed, and the scratch database is dropped — on success, on
//!   failure, and (through the CLI) on Ctrl-C. The restore's wall time is the measured RTO.
//!
//! Invariant: a level is reported passed only when every check of it and of the levels below
//! ran and passed. Results are stored in the repository (`verifications/<backup>/<time>`,
//! sealed like manifests) so that any host sees them; manifests stay immutable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::stream::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::core::format::Manifest;
use crate::core::progress::{Phase, ProgressSink, Tracker};
use crate::core::repo::Repository;
use crate::core::restore::{self, RestoreOptions};
use crate::error::{Error, Result};
use crate::pg::archive::{ArchiveFacts, ArchiveParser};
use crate::pg::client;
use crate::pg::conninfo::ConnInfo;
use crate::pg::process::PassFile;
use crate::pg::tools;

pub use crate::core::compare::{compare_database, compare_some, interrupted, COMPARE_INTERRUPTED};
pub use crate::model::Level;

/// One verification run of one backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub backup_id: String,
    pub source: String,
    pub level: Level,
    /// Highest level whose checks all passed (`None`: not even structure).
    pub passed: Option<Level>,
    pub ok: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// What is wrong, precisely (table, expected vs found; pack and the backups using it).
    pub problems: Vec<String>,
    /// Wall time of the restore into the scratch database: the measured recovery time.
    pub restore_ms: Option<u64>,
    pub logical_bytes: u64,
    /// `passed`, `failed: …`, `not run: …` or `not available`.
    pub amcheck: Option<String>,
    pub tables_compared: usize,
    /// The level could not be proven for a reason outside the backup (the scratch server
    /// refused the restore: missing roles, permissions). Not damage: every byte was proven
    /// at `data` level first.
    #[serde(default)]
    pub not_proven: Option<String>,
    /// Roles the backup names that the scratch server lacked, created there as `NOLOGIN`
    /// stand-ins for the proof and dropped after it (a hosted database's provider roles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stand_in_roles: Vec<String>,
    /// What the restore-level proof did not cover (objects the scratch server could not
    /// take); every table is always compared, or the level is not passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_covered: Vec<String>,
    /// Not a record that was read: a stand-in for a stored record of this backup that cannot
    /// be read (it does not authenticate, or does not parse). Whatever it said — perhaps that
    /// the backup is damaged — is unknown, so the backup's status is `unknown` until it can
    /// be read: never counted as proven, never forgotten by retention on that account.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreadable: bool,
}

impl VerifyRecord {
    /// The stand-in for the stored record `key` (`verifications/<backup>/<name>`) that cannot
    /// be read, saying why; `None` when the key names no backup.
    pub fn unreadable(key: &str, why: &str) -> Option<VerifyRecord> {
        let mut parts = key.split('/');
        let (Some("verifications"), Some(id)) = (parts.next(), parts.next()) else {
            return None;
        };
        if !crate::core::repo::is_timed_name(id) {
            return None;
        }
        let now = Utc::now();
        Some(VerifyRecord {
            backup_id: id.to_string(),
            source: String::new(),
            level: Level::Structure,
            passed: None,
            ok: false,
            started_at: now,
            finished_at: now,
            duration_ms: 0,
            problems: vec![],
            restore_ms: None,
            logical_bytes: 0,
            amcheck: None,
            tables_compared: 0,
            not_proven: Some(format!(
                "the verification record {key} cannot be read ({why}): this backup's status is unknown until it can be (it is not counted as proven, and retention keeps it)"
            )),
            stand_in_roles: vec![],
            not_covered: vec![],
            unreadable: true,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Server for the scratch database (restore level).
    pub scratch: Option<ConnInfo>,
    /// Name of the scratch database (restore level); generated when `None`.
    pub scratch_db: Option<String>,
    pub bin_dir: Option<std::path::PathBuf>,
    /// Where the restore level registers the drop of its scratch database.
    pub cleanup: crate::core::cleanup::Cleanup,
}

/// Name for a scratch database for backup `id`.
pub fn scratch_name(id: &str) -> String {
    format!(
        "keepsake_verify_{}_{}",
        id.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase(),
        hex::encode(rand::random::<[u8; 3]>())
    )
}

/// Which backups use each pack (to name everything a damaged pack affects).
pub async fn pack_users(repo: &Repository) -> Result<BTreeMap<String, Vec<String>>> {
    let (ms, _) = repo.manifests_lenient().await?;
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in ms {
        for p in &m.packs {
            users.entry(p.key()).or_default().push(m.id.clone());
        }
    }
    Ok(users)
}

fn affected(users: &BTreeMap<String, Vec<String>>, key: &str) -> String {
    match users.get(key) {
        Some(v) => format!("used by backup(s) {}", v.join(", ")),
        None => "used by no readable backup".into(),
    }
}

/// What the damaged chunks at stream `positions` of `m` held, in words: the tables whose data
/// lies there (named from the archive's table of contents, read from the chunks before it),
/// or that the table of contents itself is damaged (issue 28, item 5).
async fn damaged_tables(
    repo: &Arc<Repository>,
    m: &Arc<Manifest>,
    positions: &BTreeSet<usize>,
) -> String {
    let starts = crate::core::parallel_restore::chunk_starts(m);
    let ranges: Vec<(u64, u64)> = positions
        .iter()
        .filter(|p| **p + 1 < starts.len())
        .map(|p| (starts[*p], starts[*p + 1]))
        .collect();
    let toc_len = m.facts.toc_len;
    let mut words = vec![];
    if ranges.iter().any(|(a, _)| *a < toc_len) {
        words.push("the archive's table of contents".to_string());
    }
    let ids: BTreeSet<i64> = m
        .facts
        .blocks
        .iter()
        .filter(|b| ranges.iter().any(|(a, z)| b.start < *z && *a < b.end))
        .map(|b| b.dump_id)
        .collect();
    if !ids.is_empty() {
        // The table of contents, from the chunks before its end.
        let upto = starts.partition_point(|s| *s < toc_len).min(m.stream.len());
        let mut prefix = Vec::new();
        let chunks = crate::core::chunks::chunk_stream(repo.clone(), m.clone(), 0..upto, 4);
        futures::pin_mut!(chunks);
        let mut whole = true;
        while let Some(r) = chunks.next().await {
            match r {
                Ok((_, _, plain)) => prefix.extend_from_slice(&plain),
                Err(_) => {
                    whole = false;
                    break;
                }
            }
        }
        let names: Vec<String> =
            match crate::pg::archive::read_toc(&prefix[..prefix.len().min(toc_len as usize)]) {
                Ok(toc) if whole => toc
                    .entries
                    .iter()
                    .filter(|e| ids.contains(&e.dump_id))
                    .map(|e| match e.namespace.is_empty() {
                        true => format!("{} {}", e.desc.to_lowercase(), e.tag),
                        false => format!("{}.{}", e.namespace, e.tag),
                    })
                    .collect(),
                _ => ids.iter().map(|i| format!("TOC entry {i}")).collect(),
            };
        let more = names.len().saturating_sub(10);
        let mut listed = names.into_iter().take(10).collect::<Vec<_>>().join(", ");
        if more > 0 {
            listed.push_str(&format!(" and {more} more"));
        }
        words.push(format!("the data of {listed}"));
    }
    match words.is_empty() {
        true => "the chunks hold no table data (the archive's trailer)".into(),
        false => format!("they hold {}", words.join(" and ")),
    }
}

/// Verify backup `id` at `level`. Damage is reported in the record (`ok: false`), not as an
/// error; errors mean the verification itself could not run. The record is stored.
pub async fn verify(
    repo: Arc<Repository>,
    id: &str,
    level: Level,
    opts: &VerifyOptions,
    sink: &dyn ProgressSink,
) -> Result<VerifyRecord> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let m = Arc::new(repo.manifest(id).await?);
    let tracker = Tracker::new(sink, "verify", &m.source.name).with_store(repo.store().as_ref());
    tracker.update(|p| {
        p.phase = Phase::Checking;
        p.bytes_expected = Some(m.logical_bytes);
    });
    let mut rec = VerifyRecord {
        backup_id: m.id.clone(),
        source: m.source.name.clone(),
        level,
        passed: None,
        ok: false,
        started_at,
        finished_at: started_at,
        duration_ms: 0,
        problems: Vec::new(),
        restore_ms: None,
        logical_bytes: m.logical_bytes,
        amcheck: None,
        tables_compared: 0,
        not_proven: None,
        stand_in_roles: vec![],
        not_covered: vec![],
        unreadable: false,
    };
    let users = pack_users(&repo).await?;

    // structure
    // The index is where backups look for chunks to reuse; this backup's manifest says where
    // its own chunks are. An index object that fails authentication is reported, but is not
    // damage of this backup; one that cannot be read fails the verification (not proven).
    for bad in repo.load_index_lenient().await?.1 {
        tracing::warn!("index object unreadable (not this backup's damage): {bad}");
    }
    for p in &m.packs {
        // A pack that seems gone is looked at again before it is called missing (issue 28,
        // item 5: a 404 without a second look failed a source's whole history).
        let mut size = repo.store().head(&p.key()).await?;
        if size.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            size = repo.store().head(&p.key()).await?;
        }
        match size {
            Some(s) if s == p.size => {}
            Some(s) => rec.problems.push(format!(
                "pack {} is {s} bytes, expected {} (truncated or replaced); {}",
                p.key(),
                p.size,
                affected(&users, &p.key())
            )),
            None => rec.problems.push(format!(
                "pack {} is missing; {}",
                p.key(),
                affected(&users, &p.key())
            )),
        }
    }
    if rec.problems.is_empty() {
        rec.passed = Some(Level::Structure);
    }

    if level >= Level::Data && rec.problems.is_empty() {
        tracker.phase(Phase::Reading);
        verify_data(&repo, &m, opts, &users, &mut rec, &tracker).await?;
        if rec.problems.is_empty() && rec.not_proven.is_none() {
            rec.passed = Some(Level::Data);
        }
    }

    if level >= Level::Restore && rec.problems.is_empty() && rec.not_proven.is_none() {
        verify_restore(&repo, &m, opts, &mut rec, sink).await?;
        if rec.problems.is_empty() && rec.not_proven.is_none() {
            rec.passed = Some(Level::Restore);
        }
    }

    rec.ok = rec.problems.is_empty() && rec.not_proven.is_none() && rec.passed == Some(level);
    rec.finished_at = Utc::now();
    rec.duration_ms = t0.elapsed().as_millis() as u64;
    store_record(&repo, &rec).await?;
    propagate_pack_damage(&repo, &rec, &users).await?;
    tracker.phase(Phase::Done);
    Ok(rec)
}

/// A damaged pack damages every backup that uses it: record that for the others too, so
/// that none of them still reads as proven (and prune does not count on them).
async fn propagate_pack_damage(
    repo: &Repository,
    rec: &VerifyRecord,
    users: &BTreeMap<String, Vec<String>>,
) -> Result<()> {
    let (ms, _) = repo.manifests_lenient().await?;
    let mut others: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &rec.problems {
        let Some(key) = p
            .strip_prefix("pack ")
            .and_then(|r| r.split([' ', ':']).next())
            .filter(|k| k.starts_with("packs/"))
        else {
            continue;
        };
        for id in users
            .get(key)
            .into_iter()
            .flatten()
            .filter(|id| **id != rec.backup_id)
        {
            others.entry(id.clone()).or_default().push(format!(
                "{p} (found while verifying backup {})",
                rec.backup_id
            ));
        }
    }
    for (id, problems) in others {
        let Some(m) = ms.iter().find(|m| m.id == id) else {
            continue;
        };
        let other = VerifyRecord {
            backup_id: id,
            source: m.source.name.clone(),
            level: rec.level.min(Level::Data),
            passed: None,
            ok: false,
            started_at: rec.started_at,
            finished_at: rec.finished_at,
            duration_ms: 0,
            problems,
            restore_ms: None,
            logical_bytes: m.logical_bytes,
            amcheck: None,
            tables_compared: 0,
            not_proven: None,
            stand_in_roles: vec![],
            not_covered: vec![],
            unreadable: false,
        };
        store_record(repo, &other).await?;
    }
    Ok(())
}

/// `verify --all --level data`: every pack is read once (not once per backup using it),
/// every chunk any backup references is authenticated, and each backup's table of contents is
/// read by `pg_restore --list`. Returns one stored record per backup.
pub async fn verify_all_data(
    repo: Arc<Repository>,
    opts: &VerifyOptions,
    sink: &dyn ProgressSink,
) -> Result<Vec<VerifyRecord>> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let (ms, _) = repo.manifests_lenient().await?;
    let ms: Vec<Arc<Manifest>> = ms.into_iter().map(Arc::new).collect();
    let users = pack_users(&repo).await?;
    let tracker = Tracker::new(sink, "verify", "all").with_store(repo.store().as_ref());
    for bad in repo.load_index_lenient().await?.1 {
        tracing::warn!("index object unreadable (not the backups' damage): {bad}");
    }

    // Every chunk location, per pack, from every manifest.
    let mut by_pack: BTreeMap<String, (u64, BTreeMap<u64, crate::core::format::ChunkLoc>)> =
        BTreeMap::new();
    for m in &ms {
        for c in &m.chunks {
            let p = &m.packs[c.pack as usize];
            by_pack
                .entry(p.key())
                .or_insert_with(|| (p.size, BTreeMap::new()))
                .1
                .insert(c.offset, *c);
        }
    }
    let total: u64 = by_pack.values().map(|(s, _)| *s).sum();
    tracker.update(|p| {
        p.phase = Phase::Checking;
        p.bytes_expected = Some(total);
    });
    let mut pack_problem: BTreeMap<String, String> = BTreeMap::new();
    let mut done = 0u64;
    for (key, (size, chunks)) in by_pack {
        let data = match repo.store().head(&key).await? {
            Some(s) if s == size => repo.store().get(&key).await?,
            Some(s) => {
                pack_problem.insert(
                    key.clone(),
                    format!(
                        "pack {key} is {s} bytes, expected {size} (truncated or replaced); {}",
                        affected(&users, &key)
                    ),
                );
                continue;
            }
            None => {
                pack_problem.insert(
                    key.clone(),
                    format!("pack {key} is missing; {}", affected(&users, &key)),
                );
                continue;
            }
        };
        let Some(data) = data else {
            pack_problem.insert(
                key.clone(),
                format!("pack {key} is missing; {}", affected(&users, &key)),
            );
            continue;
        };
        let r = repo.clone();
        let bad = tokio::task::spawn_blocking(move || {
            let mut data = data;
            let mut bad = 0usize;
            // Decrypted in place: chunks of one pack never overlap (the index is authenticated),
            // and if they did, the second would fail — damage over-reported, never hidden.
            for c in chunks.values() {
                let (s, e) = (c.offset as usize, c.offset as usize + c.length as usize);
                let ok = data
                    .get_mut(s..e)
                    .and_then(|blob| r.open_chunk(blob).ok())
                    .and_then(|z| zstd::bulk::decompress(z, c.raw_len as usize).ok())
                    .is_some_and(|p| p.len() == c.raw_len as usize && r.key().chunk_id(&p) == c.id);
                if !ok {
                    bad += 1;
                }
            }
            bad
        })
        .await
        .map_err(|e| Error::Other(format!("verify task failed: {e}")))?;
        if bad > 0 {
            pack_problem.insert(
                key.clone(),
                format!(
                    "pack {key}: {bad} chunk(s) fail authentication (damaged or swapped); {}",
                    affected(&users, &key)
                ),
            );
        }
        done += size;
        tracker.update(|p| p.bytes_done = done);
    }

    let mut recs = Vec::new();
    for m in &ms {
        let mut problems: Vec<String> = Vec::new();
        let mut keys: Vec<String> = m.packs.iter().map(|p| p.key()).collect();
        keys.dedup();
        problems.extend(keys.iter().filter_map(|k| pack_problem.get(k).cloned()));
        let structure_ok = !problems
            .iter()
            .any(|p| p.contains("missing") || p.contains("bytes, expected"));
        let mut not_proven = None;
        if problems.is_empty() {
            match toc_check(&repo, m, opts).await? {
                Some(TocCheck::Failed(e)) => problems.push(e),
                Some(TocCheck::NotRun(e)) => {
                    not_proven = Some(format!(
                        "the data level includes pg_restore --list reading the archive's table of contents, which could not run: {e}"
                    ))
                }
                None => {}
            }
        }
        let rec = VerifyRecord {
            backup_id: m.id.clone(),
            source: m.source.name.clone(),
            level: Level::Data,
            passed: if problems.is_empty() && not_proven.is_none() {
                Some(Level::Data)
            } else if structure_ok {
                Some(Level::Structure)
            } else {
                None
            },
            ok: problems.is_empty() && not_proven.is_none(),
            started_at,
            finished_at: Utc::now(),
            duration_ms: t0.elapsed().as_millis() as u64,
            problems,
            restore_ms: None,
            logical_bytes: m.logical_bytes,
            amcheck: None,
            tables_compared: 0,
            not_proven,
            stand_in_roles: vec![],
            not_covered: vec![],
            unreadable: false,
        };
        store_record(&repo, &rec).await?;
        recs.push(rec);
    }
    tracker.phase(Phase::Done);
    Ok(recs)
}

/// `pg_restore --list` on the archive's header and table of contents (its first bytes).
/// What `pg_restore --list` said about an archive that is not fine.
enum TocCheck {
    /// It could not read it: damage.
    Failed(String),
    /// It could not run: not proven.
    NotRun(String),
}

async fn toc_check(
    repo: &Arc<Repository>,
    m: &Arc<Manifest>,
    opts: &VerifyOptions,
) -> Result<Option<TocCheck>> {
    let archive_major = tools::parse_version(&m.pg_dump_version)
        .map(|v| v.1)
        .unwrap_or(0);
    let tool = match tools::find("pg_restore", archive_major, opts.bin_dir.as_deref()) {
        Ok(t) => t,
        Err(e) => return Ok(Some(TocCheck::NotRun(e.to_string()))),
    };
    let want = if m.facts.toc_len > 0 {
        m.facts.toc_len
    } else {
        m.logical_bytes
    };
    let mut prefix = Vec::new();
    for ci in &m.stream {
        if prefix.len() as u64 >= want {
            break;
        }
        let (_, plain) = crate::core::chunks::fetch_chunk(repo.clone(), m.clone(), *ci).await?;
        prefix.extend_from_slice(&plain);
    }
    let mut child = tokio::process::Command::from(crate::pg::process::tool_command(&tool.path))
        .arg("--list")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Postgres(format!("cannot start pg_restore --list: {e}")))?;
    if let Some(mut w) = child.stdin.take() {
        // It stops reading after the TOC: not a failure.
        let _ = w.write_all(&prefix).await;
    }
    let o = child
        .wait_with_output()
        .await
        .map_err(|e| Error::io("waiting for pg_restore --list", e))?;
    Ok((!o.status.success()).then(|| {
        TocCheck::Failed(format!(
            "pg_restore --list cannot read the archive: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }))
}

async fn verify_data(
    repo: &Arc<Repository>,
    m: &Arc<Manifest>,
    opts: &VerifyOptions,
    users: &BTreeMap<String, Vec<String>>,
    rec: &mut VerifyRecord,
    tracker: &Tracker<'_>,
) -> Result<()> {
    let archive_major = tools::parse_version(&m.pg_dump_version)
        .map(|v| v.1)
        .unwrap_or(0);
    // The data level includes pg_restore reading the table of contents: without pg_restore
    // that part did not run, so the level is not proven (issue 28, LOW).
    let lister = match tools::find("pg_restore", archive_major, opts.bin_dir.as_deref()) {
        Ok(t) => Some(t),
        Err(e) => {
            rec.not_proven = Some(format!(
                "the data level includes pg_restore --list reading the archive's table of contents, which could not run: {e}"
            ));
            None
        }
    };
    let mut list_child = match &lister {
        Some(t) => {
            let mut c = tokio::process::Command::from(crate::pg::process::tool_command(&t.path));
            c.arg("--list")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            Some(
                c.spawn()
                    .map_err(|e| Error::Postgres(format!("cannot start pg_restore --list: {e}")))?,
            )
        }
        None => None,
    };
    let mut list_in = list_child.as_mut().and_then(|c| c.stdin.take());

    let mut parser = ArchiveParser::new();
    let mut hasher = repo.key().stream_hasher();
    let mut done = 0u64;
    // Per damaged pack, the stream positions of its chunks that failed.
    let mut damaged_packs: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut intact = true;
    let chunks = crate::core::chunks::chunk_stream(repo.clone(), m.clone(), 0..m.stream.len(), 4);
    futures::pin_mut!(chunks);
    // One item per stream position, in order (an error too).
    let mut pos = 0usize;
    while let Some(r) = chunks.next().await {
        let here = pos;
        pos += 1;
        match r {
            Ok((_, id, plain)) => {
                hasher.update(&id.0);
                hasher.update(&(plain.len() as u64).to_le_bytes());
                done += plain.len() as u64;
                if intact {
                    parser.feed(&plain);
                    if let Some(w) = &mut list_in {
                        // pg_restore --list stops reading after the TOC: not a failure.
                        if w.write_all(&plain).await.is_err() {
                            list_in = None;
                        }
                    }
                }
                tracker.update(|p| p.bytes_done = done);
            }
            Err(Error::Damage(msg)) | Err(Error::Repository(msg)) => {
                intact = false;
                let key = m
                    .packs
                    .iter()
                    .map(|p| p.key())
                    .find(|k| msg.contains(k.as_str()))
                    .unwrap_or_else(|| "?".into());
                damaged_packs.entry(key).or_default().insert(here);
            }
            Err(e) => return Err(e),
        }
    }
    drop(list_in);
    for (pack, positions) in &damaged_packs {
        rec.problems.push(format!(
            "pack {pack}: {} chunk(s) fail authentication (damaged or swapped); {}; {}",
            positions.len(),
            affected(users, pack),
            damaged_tables(repo, m, positions).await
        ));
    }
    if !intact {
        return Ok(());
    }
    if hasher.finalize().to_hex().as_str() != m.archive_digest {
        rec.problems
            .push("the reassembled archive does not match the recorded archive digest".into());
    }
    match parser.finish() {
        Err(e) => rec.problems.push(format!("archive: {e}")),
        Ok(f) => compare_archive_facts(&m.facts, &f, &mut rec.problems),
    }
    if let Some(c) = list_child {
        let o = c
            .wait_with_output()
            .await
            .map_err(|e| Error::io("waiting for pg_restore --list", e))?;
        if !o.status.success() {
            rec.problems.push(format!(
                "pg_restore --list cannot read the archive: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    }
    Ok(())
}

fn compare_archive_facts(want: &ArchiveFacts, got: &ArchiveFacts, problems: &mut Vec<String>) {
    if want == got {
        return;
    }
    let w: BTreeMap<_, _> = want
        .tables
        .iter()
        .map(|t| ((t.schema.clone(), t.name.clone()), t))
        .collect();
    for t in &got.tables {
        match w.get(&(t.schema.clone(), t.name.clone())) {
            Some(e) if e.rows == t.rows && e.digest == t.digest => {}
            Some(e) => problems.push(format!(
                "table {}.{}: archive holds {} rows (digest {}), recorded {} rows (digest {})",
                t.schema, t.name, t.rows, t.digest, e.rows, e.digest
            )),
            None => problems.push(format!(
                "table {}.{}: in the archive but not recorded",
                t.schema, t.name
            )),
        }
    }
    if problems.is_empty() {
        problems.push("the archive's facts differ from those recorded at backup time".into());
    }
}

async fn verify_restore(
    repo: &Arc<Repository>,
    m: &Arc<Manifest>,
    opts: &VerifyOptions,
    rec: &mut VerifyRecord,
    sink: &dyn ProgressSink,
) -> Result<()> {
    let server = opts.scratch.clone().ok_or_else(|| {
        Error::Usage(format!(
            "no server for the scratch database: set [verification] scratch_url, or keep source \"{}\" in the configuration",
            m.source.name
        ))
    })?;
    let name = opts
        .scratch_db
        .clone()
        .unwrap_or_else(|| scratch_name(&m.id));
    let target = server.with_dbname(&name);
    let mut ro = RestoreOptions::new(target.clone());
    ro.check_roles = false;
    ro.stand_in_roles = true;
    ro.create = true;
    ro.bin_dir = opts.bin_dir.clone();
    ro.cleanup = opts.cleanup.clone();
    // A missing pg_restore is a problem of this host, not of the backup.
    let archive_major = tools::parse_version(&m.pg_dump_version)
        .map(|v| v.1)
        .unwrap_or(0);
    tools::find("pg_restore", archive_major, opts.bin_dir.as_deref())?;
    let t = Instant::now();
    let mut hook = None;
    let mut stand_ins = restore::StandIns::default();
    let res = async {
        let out = restore::restore(
            repo.clone(),
            &m.id,
            &ro,
            &crate::core::progress::AsVerifyStep(sink),
        )
        .await?;
        hook = out.created_hook;
        stand_ins = out.stand_ins;
        rec.stand_in_roles = stand_ins.roles.clone();
        rec.not_covered = out.not_covered;
        rec.restore_ms = Some(t.elapsed().as_millis() as u64);
        // What runs now, said as it is: comparing, then pg_amcheck (no percentage: these
        // are not measured in bytes).
        let steps = Tracker::new(sink, "verify", &m.source.name);
        let step = |what: String| {
            steps.update(|p| {
                p.phase = Phase::Comparing;
                p.bytes_expected = None;
                p.bytes_done = 0;
                p.current_table = Some(what);
            })
        };
        step(format!(
            "{} tables with the backup's facts",
            m.facts.tables.len()
        ));
        let pg = client::connect(&target)
            .await
            .map_err(|e| Error::Postgres(format!("{COMPARE_INTERRUPTED}: {e}")))?;
        rec.tables_compared = m.facts.tables.len();
        rec.problems.extend(compare_database(&pg, &m.facts).await?);
        step("pg_amcheck".to_string());
        rec.amcheck = Some(amcheck(&target, m, opts).await);
        if let Some(a) = &rec.amcheck {
            if a.starts_with("failed") {
                rec.problems.push(format!("pg_amcheck {a}"));
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    // Only a database this check created is dropped: a restore that failed dropped its own,
    // and one that never began (the name was taken) created nothing (issue 28, item 7).
    if let Some(h) = hook {
        restore::drop_database(&target).await;
        opts.cleanup.disarm(h);
    }
    if let Some(h) = stand_ins.hook {
        restore::drop_stand_ins(&target, &stand_ins.roles).await;
        opts.cleanup.disarm(h);
    }
    match res {
        Ok(()) => Ok(()),
        // pg_restore refused the archive, or the data is damaged: the backup did not restore.
        Err(Error::Damage(e)) => {
            rec.problems
                .push(format!("restore into a scratch database failed: {e}"));
            Ok(())
        }
        Err(Error::Postgres(e))
            if e.contains("pg_restore")
                || e.starts_with(restore::STAND_IN_REFUSED)
                || e.starts_with(restore::SERVER_LACKS)
                || e.starts_with(COMPARE_INTERRUPTED) =>
        {
            rec.not_proven = Some(match e.starts_with(COMPARE_INTERRUPTED) {
                true => e,
                false => format!("restore into a scratch database failed: {e}"),
            });
            Ok(())
        }
        // The scratch server itself (unreachable, no CREATEDB, …): verification could not
        // run; that proves nothing about the backup either way.
        Err(Error::Postgres(e)) => Err(Error::Postgres(format!(
            "the restore-level check could not run on the scratch server {}: {e}\n  set [verification] scratch_url to a server where keepsake may create and drop databases",
            server.display()
        ))),
        Err(e) => Err(e),
    }
}

/// `pg_amcheck` over the restored database: `passed`, `failed: …`, `not run: …` or
/// `not available`.
pub async fn amcheck(target: &ConnInfo, m: &Manifest, opts: &VerifyOptions) -> String {
    let major = (m.source.server_version_num / 10000) as u32;
    let Ok(tool) = tools::find("pg_amcheck", major, opts.bin_dir.as_deref()) else {
        return "not available".into();
    };
    let pass = match PassFile::new(target) {
        Ok(p) => p,
        Err(e) => return format!("not run: {e}"),
    };
    let mut cmd = crate::pg::process::tool_command(&tool.path);
    for (k, v) in target.libpq_env() {
        cmd.env(k, v);
    }
    if let Some(p) = &pass {
        cmd.env("PGPASSFILE", p.path());
    }
    cmd.env_remove("PGPASSWORD")
        .arg("--install-missing")
        .arg("--no-password")
        .arg(format!("--database={}", target.dbname));
    let out = tokio::process::Command::from(cmd).output().await;
    drop(pass);
    match out {
        Ok(o) if o.status.success() => "passed".into(),
        // Exit status 2: corruption found. Anything else: it could not check.
        Ok(o) if o.status.code() != Some(2) => format!(
            "not run: {}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(o) => format!(
            "failed: {}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("not run: {e}"),
    }
}

/// Store a verification record in the repository.
pub async fn store_record(repo: &Repository, rec: &VerifyRecord) -> Result<()> {
    let name = format!(
        "verifications/{}/{}-{}",
        rec.backup_id,
        rec.finished_at.format("%Y%m%dT%H%M%S%.3fZ"),
        hex::encode(rand::random::<[u8; 3]>())
    );
    repo.put_sealed(
        &name,
        &serde_json::to_vec(rec).map_err(|e| Error::Other(e.to_string()))?,
    )
    .await
}

/// Every stored verification record, oldest first, per backup. A storage error stops the
/// caller (a prune must not decide on half the records); a record that does not authenticate
/// or parse becomes [`VerifyRecord::unreadable`]: its backup's status is `unknown`.
pub async fn records(repo: &Repository) -> Result<BTreeMap<String, Vec<VerifyRecord>>> {
    let mut out: BTreeMap<String, Vec<VerifyRecord>> = BTreeMap::new();
    for obj in repo.store().list("verifications/").await? {
        let read = match repo.get_sealed_opt(&obj.key).await {
            // Deleted since the listing, with its backup (a delete or prune beside this read).
            Ok(None) => continue,
            Ok(Some(plain)) => serde_json::from_slice::<VerifyRecord>(&plain)
                .map_err(|e| format!("it does not parse: {e}")),
            Err(e @ (Error::Storage(_) | Error::Cancelled(_))) => return Err(e),
            Err(e) => Err(e.to_string()),
        };
        let r = match read {
            Ok(r) => r,
            Err(why) => {
                tracing::warn!("verification record {} cannot be read: {why}", obj.key);
                match VerifyRecord::unreadable(&obj.key, &why) {
                    Some(r) => r,
                    None => continue,
                }
            }
        };
        out.entry(r.backup_id.clone()).or_default().push(r);
    }
    for v in out.values_mut() {
        v.sort_by_key(|r| r.finished_at);
    }
    Ok(out)
}

/// Packs that a backup's newest verification found damaged (`pack packs/… …` problems): a
/// new backup stores their chunks anew instead of adopting them (issue 28, item 8).
pub fn damaged_packs(records: &BTreeMap<String, Vec<VerifyRecord>>) -> BTreeSet<String> {
    records
        .values()
        .filter_map(|rs| rs.last())
        .flat_map(|r| r.problems.iter())
        .filter_map(|p| {
            p.strip_prefix("pack ")
                .and_then(|r| r.split([' ', ':']).next())
                .filter(|k| k.starts_with("packs/"))
                .map(str::to_string)
        })
        .collect()
}

/// What a backup's history of verifications proves: (`level`, when), where level is
/// `none`, `failed`, or the highest level passed. A failure at level L stays `failed` until a
/// later run passes at L or above: a lower-level pass does not clear it.
pub fn proven(records: Option<&Vec<VerifyRecord>>) -> (&'static str, Option<DateTime<Utc>>) {
    let Some(rs) = records.filter(|r| !r.is_empty()) else {
        return ("none", None);
    };
    if rs.iter().any(|r| r.unreadable) {
        return ("unknown", None);
    }
    let last_fail = rs.iter().rev().find(|r| !r.problems.is_empty());
    let since = match last_fail {
        Some(f) => {
            let cleared = rs
                .iter()
                .any(|r| r.finished_at > f.finished_at && r.ok && r.passed >= Some(f.level));
            if !cleared {
                return ("failed", Some(f.finished_at));
            }
            Some(f.finished_at)
        }
        None => None,
    };
    rs.iter()
        .filter(|r| since.is_none_or(|t| r.finished_at > t))
        .filter_map(|r| r.passed.map(|p| (p, r.finished_at)))
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(l, t)| (l.as_str(), Some(t)))
        .unwrap_or(("none", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(level: Level, ok: bool, secs: i64) -> VerifyRecord {
        let t = DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default();
        VerifyRecord {
            backup_id: "b".into(),
            source: "s".into(),
            level,
            passed: if ok { Some(level) } else { None },
            ok,
            started_at: t,
            finished_at: t,
            duration_ms: 0,
            problems: if ok { vec![] } else { vec!["damage".into()] },
            restore_ms: None,
            logical_bytes: 0,
            amcheck: None,
            tables_compared: 0,
            not_proven: None,
            stand_in_roles: vec![],
            not_covered: vec![],
            unreadable: false,
        }
    }

    #[test]
    fn a_lower_level_pass_does_not_clear_a_failure() {
        let v = vec![
            rec(Level::Restore, true, 0),
            rec(Level::Data, false, 1),
            rec(Level::Structure, true, 2),
        ];
        assert_eq!(proven(Some(&v)).0, "failed");
        let mut w = v.clone();
        w.push(rec(Level::Data, true, 3));
        assert_eq!(
            proven(Some(&w)).0,
            "data",
            "a data pass after the failure proves data, not the older restore"
        );
        let ok = vec![rec(Level::Structure, true, 0), rec(Level::Restore, true, 1)];
        assert_eq!(proven(Some(&ok)).0, "restore");
        assert_eq!(proven(None).0, "none");
    }
}
