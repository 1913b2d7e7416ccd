//! Change segments of continuous change capture (docs/capture.md): what a capturing source's
//! stream left in the repository.
//!
//! A segment is one sealed object `capture/<source>/<start>-<end>` (LSNs as 16 hex digits):
//! the pgoutput messages of whole transactions committed after `start` up to the one whose
//! commit ends at `end`, in stream order, preceded by the Relation messages of every table the
//! stream described so far (so a segment is read without the ones before it). Its head lists
//! the commits (end LSN and time). Zstd-compressed, then sealed like every metadata object
//! (authenticated and encrypted, bound to its name).
//!
//! Invariants:
//! - A segment holds only committed transactions, each whole.
//! - Segments of one chain follow each other: a segment's `start` is the previous one's
//!   `end` (or the slot's position when the chain began); the slot is confirmed to the
//!   server only up to the `end` of a segment already stored.
//! - The messages are kept as the server sent them (Begin and Commit re-encoded from the
//!   fields the replication client decodes).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::repo::Repository;
use crate::error::{Error, Result};

/// Where a source's segments live.
pub fn prefix(source: &str) -> String {
    format!("capture/{source}/")
}

/// The object of the segment from `start` to `end` of `source`.
pub fn segment_key(source: &str, start: u64, end: u64) -> String {
    format!("{}{start:016X}-{end:016X}", prefix(source))
}

/// `start` and `end` of a segment's object name (`None`: not a segment's name).
pub fn parse_segment_key(source: &str, key: &str) -> Option<(u64, u64)> {
    let rest = key.strip_prefix(&prefix(source))?;
    let (a, b) = rest.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// One commit of a segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Commit {
    pub end_lsn: u64,
    pub at: DateTime<Utc>,
}

/// What a segment says of itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentHead {
    pub format_version: u32,
    pub source: String,
    pub slot: String,
    pub start_lsn: u64,
    pub end_lsn: u64,
    pub commits: Vec<Commit>,
    /// Sequence values read when the segment was sealed (`schema.name` → `last_value`;
    /// pgoutput does not carry them): at least what they were at its last commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequences: Vec<(String, i64)>,
    /// The stream was whole up to this time of the server's clock: no commit of the source's
    /// tables between the last one listed (if any) and it. Set on a segment sealed while the
    /// database was idle, from the server's keepalive (less a margin), so that an idle
    /// database's point-in-time range still reaches the present, and the slot's position moves
    /// on (without it the WAL other databases write is held back until `max_slot_wal` drops
    /// the slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_at: Option<DateTime<Utc>>,
    /// `pg::client::schema_hash` as last read before the segment was sealed (a change from one
    /// segment to the next is a DDL, which pgoutput does not carry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_hash: Option<String>,
}

impl SegmentHead {
    /// How far a point-in-time restore reaches with this segment: its last commit, or the time
    /// the stream was known whole up to, whichever is later.
    pub fn reaches(&self) -> Option<DateTime<Utc>> {
        let last = self.commits.last().map(|c| c.at);
        match (last, self.through_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A whole segment: its head and its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub head: SegmentHead,
    pub messages: Vec<Vec<u8>>,
}

const MAGIC: &[u8; 8] = b"KSCSEG1\n";

impl Segment {
    /// The bytes stored (before sealing): magic, head length and JSON, then each message as
    /// a 4-byte big-endian length and its bytes; zstd-compressed.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let head = serde_json::to_vec(&self.head).map_err(|e| Error::Other(e.to_string()))?;
        let mut raw = Vec::with_capacity(
            16 + head.len() + self.messages.iter().map(|m| m.len() + 4).sum::<usize>(),
        );
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&(head.len() as u32).to_be_bytes());
        raw.extend_from_slice(&head);
        for m in &self.messages {
            raw.extend_from_slice(&(m.len() as u32).to_be_bytes());
            raw.extend_from_slice(m);
        }
        zstd::encode_all(&raw[..], 3)
            .map_err(|e| Error::Other(format!("compressing a segment: {e}")))
    }

    pub fn decode(name: &str, bytes: &[u8]) -> Result<Segment> {
        let bad = |what: &str| Error::Damage(format!("{name}: {what}"));
        let raw = zstd::decode_all(bytes).map_err(|e| bad(&format!("not zstd ({e})")))?;
        let rest = raw
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a change segment"))?;
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= rest.len())
                .ok_or_else(|| bad("cut short"))?;
            let s = &rest[at..end];
            at = end;
            Ok(s)
        };
        let len = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let n = len(take(4)?);
        let head: SegmentHead =
            serde_json::from_slice(take(n)?).map_err(|e| bad(&format!("head: {e}")))?;
        let mut messages = Vec::new();
        let mut left = rest.len() - 4 - n;
        while left > 0 {
            let m = len(take(4)?);
            messages.push(take(m)?.to_vec());
            left = left.saturating_sub(4 + m);
        }
        Ok(Segment { head, messages })
    }
}

/// Store `seg` durably (returns once the store confirms it).
pub async fn store(repo: &Repository, seg: &Segment) -> Result<String> {
    let key = segment_key(&seg.head.source, seg.head.start_lsn, seg.head.end_lsn);
    repo.put_sealed(&key, &seg.encode()?).await?;
    Ok(key)
}

/// The segments of `source`, in LSN order: `(start, end, key)`.
pub async fn list(repo: &Repository, source: &str) -> Result<Vec<(u64, u64, String)>> {
    let mut v: Vec<(u64, u64, String)> = repo
        .store()
        .list(&prefix(source))
        .await?
        .into_iter()
        .filter_map(|o| parse_segment_key(source, &o.key).map(|(a, b)| (a, b, o.key)))
        .collect();
    v.sort();
    Ok(v)
}

pub async fn read(repo: &Repository, key: &str) -> Result<Segment> {
    let plain = repo.get_sealed(key).await?;
    Segment::decode(key, &plain)
}

/// What keepsake records of a slot it made (`capture/<source>/slot`): a slot of that name
/// without this record, or of another server or database, is not keepsake's to take over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlotRecord {
    pub slot: String,
    pub database: String,
    pub system_identifier: Option<String>,
    pub created_lsn: u64,
    pub created_at: DateTime<Utc>,
}

pub fn slot_key(source: &str) -> String {
    format!("{}slot", prefix(source))
}

pub async fn slot_record(repo: &Repository, source: &str) -> Result<Option<SlotRecord>> {
    match repo.get_sealed_opt(&slot_key(source)).await? {
        None => Ok(None),
        Some(p) => serde_json::from_slice(&p)
            .map(Some)
            .map_err(|e| Error::Damage(format!("{}: {e}", slot_key(source)))),
    }
}

pub async fn write_slot_record(repo: &Repository, source: &str, r: &SlotRecord) -> Result<()> {
    let plain = serde_json::to_vec(r).map_err(|e| Error::Other(e.to_string()))?;
    repo.put_sealed(&slot_key(source), &plain).await
}

/// A schema change seen while capture ran (pgoutput carries no DDL; the daemon compares
/// `pg::client::schema_hash` every few seconds). It happened after `after` and no later than
/// `by` (the server's clock). Captured changes cannot be applied across it onto a dump that
/// does not hold it: a point-in-time restore refuses the times between it and the next dump.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SchemaChange {
    pub after: DateTime<Utc>,
    pub by: DateTime<Utc>,
    pub hash_before: String,
    pub hash_after: String,
}

/// Where [`SchemaChange`]s of `source` are kept (one object each, named by `by`).
fn schema_change_prefix(source: &str) -> String {
    format!("{}ddl/", prefix(source))
}

pub async fn record_schema_change(repo: &Repository, source: &str, c: &SchemaChange) -> Result<()> {
    let key = format!(
        "{}{}-{}",
        schema_change_prefix(source),
        c.by.format("%Y%m%dT%H%M%S%.6fZ"),
        hex::encode(rand::random::<[u8; 3]>())
    );
    let plain = serde_json::to_vec(c).map_err(|e| Error::Other(e.to_string()))?;
    repo.put_sealed(&key, &plain).await
}

/// Every [`SchemaChange`] of `source`, oldest first.
pub async fn schema_changes(repo: &Repository, source: &str) -> Result<Vec<SchemaChange>> {
    let mut out = vec![];
    for o in repo.store().list(&schema_change_prefix(source)).await? {
        let plain = repo.get_sealed(&o.key).await?;
        out.push(
            serde_json::from_slice::<SchemaChange>(&plain)
                .map_err(|e| Error::Damage(format!("{}: {e}", o.key)))?,
        );
    }
    out.sort_by_key(|c| c.by);
    Ok(out)
}

/// The change segments no kept dump needs, per source, oldest first (the keys to delete).
///
/// A segment can go when every transaction in it is held by `oldest`'s snapshot (the oldest
/// kept dump of its source: a restore from it or any later dump skips them all) and it
/// reaches no later than that snapshot's start. Only a prefix goes (the chain that remains
/// stays contiguous), and the newest segment of that prefix stays as the chain's anchor: its
/// time is when the remaining chain begins, which must not be after the dump's snapshot (a
/// point-in-time restore checks that). With no kept dump that records a snapshot, nothing goes.
pub async fn unneeded_segments(
    repo: &Repository,
    source: &str,
    oldest: Option<&crate::core::format::DumpSnapshot>,
) -> Result<Vec<String>> {
    let Some(snap) = oldest else {
        return Ok(vec![]);
    };
    let mut prefix_keys = vec![];
    for (_, _, key) in list(repo, source).await? {
        let seg = read(repo, &key).await?;
        let before = seg.head.reaches().is_some_and(|t| t < snap.after);
        let held = seg
            .messages
            .iter()
            .all(|m| match crate::pg::pgoutput::decode(m) {
                Ok(crate::pg::pgoutput::Message::Begin { xid, .. }) => {
                    snap.holds(xid) == Some(true)
                }
                Ok(_) => true,
                Err(_) => false,
            });
        if !(before && held) {
            break;
        }
        prefix_keys.push(key);
    }
    // The anchor stays.
    prefix_keys.pop();
    Ok(prefix_keys)
}

/// Schema changes recorded before `cut` (the ones no kept dump's restore can meet).
pub async fn schema_changes_before(
    repo: &Repository,
    source: &str,
    cut: DateTime<Utc>,
) -> Result<Vec<String>> {
    let mut out = vec![];
    for o in repo.store().list(&schema_change_prefix(source)).await? {
        let plain = repo.get_sealed(&o.key).await?;
        let c: SchemaChange =
            serde_json::from_slice(&plain).map_err(|e| Error::Damage(format!("{}: {e}", o.key)))?;
        if c.by < cut {
            out.push(o.key);
        }
    }
    Ok(out)
}

/// The sources that have anything under `capture/`.
pub async fn sources(repo: &Repository) -> Result<Vec<String>> {
    let mut v: Vec<String> = repo
        .store()
        .list("capture/")
        .await?
        .into_iter()
        .filter_map(|o| {
            o.key
                .strip_prefix("capture/")
                .and_then(|r| r.split_once('/'))
                .map(|(s, _)| s.to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// pgoutput's Begin message for the fields a replication client decodes.
pub fn begin_message(final_lsn: u64, commit_time: i64, xid: u32) -> Vec<u8> {
    let mut b = vec![b'B'];
    b.extend_from_slice(&final_lsn.to_be_bytes());
    b.extend_from_slice(&commit_time.to_be_bytes());
    b.extend_from_slice(&xid.to_be_bytes());
    b
}

/// pgoutput's Commit message (flags 0).
pub fn commit_message(commit_lsn: u64, end_lsn: u64, commit_time: i64) -> Vec<u8> {
    let mut b = vec![b'C', 0];
    b.extend_from_slice(&commit_lsn.to_be_bytes());
    b.extend_from_slice(&end_lsn.to_be_bytes());
    b.extend_from_slice(&commit_time.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::pgoutput::{decode, Message};

    #[test]
    fn segments_round_trip_and_name_their_range() {
        let seg = Segment {
            head: SegmentHead {
                format_version: 1,
                source: "wedsync".into(),
                slot: "keepsake_wedsync".into(),
                start_lsn: 0x16_0000_0010,
                end_lsn: 0x16_0000_0200,
                commits: vec![Commit {
                    end_lsn: 0x16_0000_0200,
                    at: Utc::now(),
                }],
                sequences: vec![("public.guests_id_seq".into(), 41)],
                through_at: None,
                schema_hash: Some("ab12".into()),
            },
            messages: vec![
                begin_message(0x16_0000_01F0, 5, 77),
                commit_message(0x16_0000_01F0, 0x16_0000_0200, 5),
            ],
        };
        let bytes = seg.encode().expect("encode");
        assert_eq!(Segment::decode("x", &bytes).expect("decode"), seg);
        assert!(matches!(
            decode(&seg.messages[0]),
            Ok(Message::Begin { xid: 77, .. })
        ));
        assert!(matches!(
            decode(&seg.messages[1]),
            Ok(Message::Commit {
                end_lsn: 0x16_0000_0200,
                ..
            })
        ));
        let key = segment_key("wedsync", 0x16_0000_0010, 0x16_0000_0200);
        assert_eq!(key, "capture/wedsync/0000001600000010-0000001600000200");
        assert_eq!(
            parse_segment_key("wedsync", &key),
            Some((0x16_0000_0010, 0x16_0000_0200))
        );
        assert_eq!(parse_segment_key("wedsync", "capture/wedsync/slot"), None);
        // Cut short: an error, not a panic.
        let raw = zstd::decode_all(&bytes[..]).expect("raw");
        for n in [3, 9, 20, raw.len() - 1] {
            let cut = zstd::encode_all(&raw[..n], 1).expect("zstd");
            let _ = Segment::decode("x", &cut);
        }
    }
}
