//! Reading chunks back: which byte ranges of which packs hold a stretch of a backup's stream
//! (spans, one request each), the reusable buffers they are read into, and decoding one chunk
//! (decrypt, authenticate, decompress, recompute its keyed id). Used by restore (streamed and
//! parallel) and by verify alike.
//!
//! Invariant: a chunk is handed out only after its keyed id was recomputed from the plaintext
//! and matched; anything else is damage naming the pack.

use std::sync::Arc;

use crate::core::crypto::ChunkId;
use crate::core::format::{ChunkLoc, Manifest};
use crate::core::repo::Repository;
use crate::error::{Error, Result};

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
        Error::Storage(m) => Error::Storage(m.clone()),
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

    /// Free every kept buffer.
    fn clear(&self) {
        if let Ok(mut k) = self.kept.lock() {
            *k = (Vec::new(), 0);
        }
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
static CHUNK_BUFS: Pool = Pool::new(8 << 20);
/// Buffers of pack reads (spans, at most [`SPAN_MAX`] each unless one chunk is larger).
static SPAN_BUFS: Pool = Pool::new(8 << 20);

/// Give the pools' buffers back (up to 16 MiB): a job that read chunks has ended, and a
/// daemon should not hold them while it waits for the next (a restore refills them in its
/// first milliseconds).
pub fn release_buffers() {
    CHUNK_BUFS.clear();
    SPAN_BUFS.clear();
}

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
        // Could not read (after the store's retries): not proven, never damage. Damage is
        // only what was read and failed authentication (`decode`).
        Err(e @ Error::Damage(_)) => return sp.positions.map(|_| Err(same_kind(&e))).collect(),
        Err(e) => {
            let e = Error::Storage(format!("backup {}: reading {pack}: {e}", m.id));
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
