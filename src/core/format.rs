//! Repository format, version 1. This is the reference; readers refuse a newer major version.
//!
//! ```text
//! config                      JSON, plaintext, no secrets:
//!                             {"format":"keepsake-repository","version":1,"id":…,
//!                              "chunker":{"min":…,"avg":…,"max":…},"created_at":…}
//! keys/<hex16>                age file (to every recipient) holding JSON
//!                             {"version":1,"master_key":"<64 hex>"}; one per `init`/re-key
//! packs/<hh>/<hex64>          immutable; name = BLAKE3 of the pack's bytes. A pack is a plain
//!                             concatenation of chunk blobs, nothing else. Each blob is a complete,
//!                             standard age file (X25519, to every recipient) whose plaintext is
//!                             the zstd frame of one chunk. So with the index offsets one can do:
//!                               dd if=pack bs=1 skip=OFFSET count=LENGTH | age -d -i key | zstd -d
//!                             Since 2026-11-26 the chunks of one backup share one age header (one
//!                             file key, wrapped once) and each has its own payload nonce; older
//!                             chunks have a header each. Readers accept both (see
//!                             src/core/chunk_crypto.rs for why this is safe).
//! index/<hex16>               sealed metadata (below): JSON IndexFile listing the packs one
//!                             backup wrote and, for each, its chunks (id, offset, length, raw_len)
//! snapshots/<backup-id>       sealed metadata: JSON Manifest. Written LAST: the commit point. A
//!                             backup exists if and only if its manifest exists.
//! locks/<time>-<hex8>         sealed lease {started_at, expires_at, host, pid, boot_id, pid_ns,
//!                             proc_start, renewed_at} written by every backup before it reads the
//!                             index, renewed while it runs, removed when it ends; prune never
//!                             deletes a pack marked before a live lease started (core::prune)
//! gc/marks                    sealed {packs: {key: marked_at}}: packs prune found unreferenced
//!                             (deleted by a later prune after the grace period; backups never
//!                             reuse chunks of marked packs)
//! verifications/<id>/<time>-<hex6>  sealed verification record (level, result, problems, RTO)
//! drills/<time>-<hex6>        sealed drill report (core::drill): steps, checks, RTO and RPO
//! ```
//!
//! **Sealed metadata** = `"KSMETA1\n"` ‖ age(zstd(JSON)) ‖ MAC, where MAC is keyed BLAKE3 under
//! `derive_key("keepsake 2026 repository v1 metadata mac", master_key)` over
//! `len(name) as u64 LE ‖ name ‖ age part`, `name` being the object key. The MAC makes a manifest
//! written by someone who knows only the public recipient detectably forged, and binds each
//! object to its name (swapping manifests is detected).
//!
//! **Chunks** are cut from the `pg_dump -Fc -Z0` stream with FastCDC (2020) using the
//! `config`'s min/avg/max. A chunk's id is keyed BLAKE3 of its plaintext under
//! `derive_key("keepsake 2026 repository v1 chunk id", master_key)`; readers recompute it after
//! decrypting, which authenticates chunk contents.
//!
//! **A manifest is self-contained for restore**: it lists every pack the backup needs and, for
//! each distinct chunk, its location; `stream` is the ordered list of chunk numbers whose
//! plaintexts, concatenated, are the archive. A restore never reads another backup's manifest
//! and never replays a chain.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::crypto::ChunkId;
use crate::pg::archive::ArchiveFacts;

/// The major format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        // Much smaller than restic's 1 MiB average: a dump changes in small scattered places
        // (a deleted row, an updated vendor), and every touched chunk is stored again. At
        // 128 KiB the age header (~200 bytes per recipient) costs ~0.2% and the per-chunk
        // X25519 wrap ~0.8 s of CPU per GB, spread over the workers.
        ChunkerParams {
            min: 32 * 1024,
            avg: 128 * 1024,
            max: 512 * 1024,
        }
    }
}

/// The plaintext `config` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub chunker: ChunkerParams,
    pub created_at: DateTime<Utc>,
}

/// The JSON inside a `keys/` object.
#[derive(Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub master_key: String,
}

pub use crate::model::BackupType;

/// Where one chunk lives.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkLoc {
    pub id: ChunkId,
    /// Index into [`Manifest::packs`] (in a manifest) or unused (in an index file, 0).
    pub pack: u32,
    pub offset: u64,
    /// Stored (encrypted) length.
    pub length: u32,
    /// Plaintext length.
    pub raw_len: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackRef {
    pub name: String,
    pub size: u64,
}

impl PackRef {
    /// Object key of a pack.
    pub fn key(&self) -> String {
        pack_key(&self.name)
    }
}

pub fn pack_key(name: &str) -> String {
    format!("packs/{}/{}", &name[..2.min(name.len())], name)
}

// What the source looked like at backup time lives in the leaf `model` (pg reads it, the
// manifest records it); re-exported here, where the manifest's format is defined.
pub use crate::model::{SourceInfo, TableInfo};

/// The manifest of one backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// For a differential: the full it was taken against.
    pub based_on: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub keepsake_version: String,
    pub pg_dump_version: String,
    pub source: SourceInfo,
    pub tables: Vec<TableInfo>,
    pub large_objects: i64,
    /// Row counts and digests per table, sequences and large objects, as read from the archive
    /// stream while it was stored (see `pg::archive`).
    #[serde(default)]
    pub facts: ArchiveFacts,
    /// Bytes of the archive (the logical size).
    pub logical_bytes: u64,
    /// Bytes of packs this backup added to the repository.
    pub stored_bytes: u64,
    /// Plaintext bytes of the chunks this backup added.
    pub new_raw_bytes: u64,
    /// Keyed BLAKE3 (chunk-id key) over the stream's `id ‖ len as u64 LE` pairs, in order.
    pub archive_digest: String,
    pub packs: Vec<PackRef>,
    pub chunks: Vec<ChunkLoc>,
    pub stream: Vec<u32>,
    /// The dump's snapshot, as the server saw it: which transactions the dump holds (a
    /// point-in-time restore applies only the captured ones it does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<DumpSnapshot>,
}

/// A dump's snapshot (`txid_current_snapshot()`, `xmin:xmax:xip,…`) and, by the server's
/// clock, a time before it was taken (`after`: its transaction's start) and one after
/// (`at`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpSnapshot {
    pub xids: String,
    pub after: DateTime<Utc>,
    pub at: DateTime<Utc>,
    /// `pg::client::schema_hash` in the dump's snapshot (a point-in-time restore refuses to
    /// apply captured changes across a schema change the dump does not hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_hash: Option<String>,
}

impl DumpSnapshot {
    /// Whether transaction `xid` (32 bits, as a stream's Begin gives it) committed before the
    /// snapshot, so that its changes are in the dump. Ids are widened with the epoch of the
    /// snapshot's `xmax` (a transaction from the epoch before is older than any in it).
    pub fn holds(&self, xid: u32) -> Option<bool> {
        let mut parts = self.xids.split(':');
        let xmin: u64 = parts.next()?.parse().ok()?;
        let xmax: u64 = parts.next()?.parse().ok()?;
        let xip: Vec<u64> = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        let epoch = xmax >> 32;
        let mut full = (epoch << 32) | u64::from(xid);
        if full > xmax && epoch > 0 {
            full -= 1 << 32;
        }
        Some(full < xmin || (full < xmax && !xip.contains(&full)))
    }
}

impl Manifest {
    /// logical / stored: how much deduplication and compression saved for this backup.
    pub fn dedup_ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            f64::INFINITY
        } else {
            self.logical_bytes as f64 / self.stored_bytes as f64
        }
    }
}

/// The JSON inside an `index/` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexFile {
    pub format_version: u32,
    /// Backup that wrote these packs.
    pub backup_id: String,
    pub packs: Vec<IndexPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexPack {
    pub name: String,
    pub size: u64,
    pub chunks: Vec<ChunkLoc>,
}
