//! What a restore is asked to do ([`RestoreOptions`]) and the one way a backup's archive is
//! read back ([`feed_archive`]): shared by the single-stream restore (`core::restore`), the
//! parallel restore and the side-schema restore, which import this module and never each
//! other's callers.
//!
//! Invariant: every byte fed to a restore comes from authenticated chunks, in the manifest's
//! order, and the reassembled archive is checked against its recorded digest before the feed
//! reports success.

use std::sync::Arc;

use futures::stream::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::core::chunks::chunk_stream;
use crate::core::cleanup::Cleanup;
use crate::core::format::Manifest;
use crate::core::repo::Repository;
use crate::error::{Error, Result};
use crate::pg::conninfo::ConnInfo;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: ConnInfo,
    pub create: bool,
    pub clean: bool,
    pub confirm: Option<String>,
    /// Skip ownership and privileges (for targets without the source's roles).
    pub no_owner: bool,
    /// Skip privileges only (`GRANT`/`REVOKE`).
    pub no_privileges: bool,
    pub bin_dir: Option<std::path::PathBuf>,
    /// Chunks fetched and decoded ahead of pg_restore.
    pub read_ahead: usize,
    /// Parallel sessions (used when the restore creates its database; 1 = one stream in one
    /// transaction).
    pub jobs: usize,
    /// Where the restore registers the drop of a database it created (see [`Cleanup`]).
    pub cleanup: Cleanup,
    /// Only these tables (a partial restore; `core::select`).
    pub selection: Option<crate::core::select::Selection>,
    /// Refuse up front (exit 2) when the target server lacks a role the backup needs. A
    /// verification or drill turns it off: there pg_restore's own failure makes the backup
    /// "not proven" on that server, as before.
    pub check_roles: bool,
    /// Create the roles the backup names that the target server lacks, as `NOLOGIN` stand-ins
    /// (a proof on a plain scratch server of a hosted database's backup: its provider's roles
    /// own schemas and are granted privileges there). Only the roles this restore created are
    /// ever dropped: by [`crate::core::restore::drop_stand_ins`] once the scratch database is gone, or by the cleanup.
    pub stand_in_roles: bool,
    /// Where a new database is loaded before it takes its name (see
    /// [`crate::core::restore::loading_target`]); chosen here by a caller that must know it
    /// (a drill drops it after an interruption), else by the restore.
    pub loading: Option<ConnInfo>,
}

impl RestoreOptions {
    pub fn new(target: ConnInfo) -> Self {
        RestoreOptions {
            target,
            create: false,
            clean: false,
            confirm: None,
            no_owner: false,
            no_privileges: false,
            bin_dir: None,
            read_ahead: 4,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            cleanup: Cleanup::new(),
            selection: None,
            check_roles: true,
            stand_in_roles: false,
            loading: None,
        }
    }
}

/// Write every chunk of backup `m`, in order, into `w` (a pg_restore's stdin), and check the
/// reassembled archive against its recorded digest. When `w` stops reading, a whole restore
/// returns there (pg_restore's exit status explains why); with `read_all` (a partial restore,
/// whose pg_restore may be done before the archive ends) the rest is still read and
/// authenticated. `progress` hears the bytes read so far. Returns the bytes read.
pub(crate) async fn feed_archive<W: tokio::io::AsyncWrite + Unpin>(
    repo: &Arc<Repository>,
    m: &Arc<Manifest>,
    read_ahead: usize,
    w: &mut W,
    read_all: bool,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let mut hasher = repo.key().stream_hasher();
    let mut done = 0u64;
    let mut open = true;
    let chunks = chunk_stream(
        repo.clone(),
        m.clone(),
        0..m.stream.len(),
        read_ahead.max(1),
    );
    futures::pin_mut!(chunks);
    while let Some(r) = chunks.next().await {
        let (_, id, plain) = r?;
        hasher.update(&id.0);
        hasher.update(&(plain.len() as u64).to_le_bytes());
        if open && w.write_all(&plain).await.is_err() {
            if !read_all {
                return Ok(done);
            }
            open = false;
        }
        done += plain.len() as u64;
        progress(done);
    }
    if hasher.finalize().to_hex().as_str() != m.archive_digest {
        return Err(Error::Damage(format!(
            "backup {}: the reassembled archive does not match its recorded digest",
            m.id
        )));
    }
    Ok(done)
}
