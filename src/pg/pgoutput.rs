//! Decoding pgoutput, PostgreSQL's logical replication output (protocol version 1), for
//! continuous change capture (docs/configuration.md, `[sources.capture]`; issue 29).
//!
//! Why our own decoder rather than a crate's: change segments keep the messages exactly as the
//! server sent them, and must be readable for as long as a backup is kept. Their format is
//! fixed by PostgreSQL (the "Logical Replication Message Formats" chapter), and this decoder
//! is small; the crates that decode it are young and change their types from one release to
//! the next. The replication *connection* is another matter (see the capture module).
//!
//! Invariants:
//! - [`decode`] never panics and never reads past its input: a short or malformed message is
//!   a [`DecodeError`] naming the message type and the offset.
//! - Values are kept as the server sent them (text form): nothing is interpreted here.

use std::fmt;

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin {
        /// The LSN of the transaction's commit record.
        final_lsn: u64,
        /// Commit time, microseconds since 2000-01-01 UTC (PostgreSQL's epoch).
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        /// The commit record's LSN.
        commit_lsn: u64,
        /// The end of the commit record: the position to confirm once this transaction is
        /// durably stored.
        end_lsn: u64,
        commit_time: i64,
    },
    Origin {
        lsn: u64,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        /// The old key (`K`, when a key column changed) or the whole old row (`O`, replica
        /// identity FULL); none when the key did not change.
        old: Option<(OldKind, Tuple)>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: (OldKind, Tuple),
    },
    Truncate {
        /// Bit 1: CASCADE; bit 2: RESTART IDENTITY.
        options: u8,
        relations: Vec<u32>,
    },
    /// `pg_logical_emit_message` output.
    Logical {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Vec<u8>,
    },
}

/// A table as the stream describes it (sent before its first change in a session, and again
/// after it changes).
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default (the primary key), `n` nothing, `f` full row, `i` an index.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Part of the replica identity.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// What an old tuple holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// The replica identity's columns only.
    Key,
    /// The whole row (replica identity FULL).
    Full,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// A TOASTed value the change did not touch: not sent, keep what the row has.
    Unchanged,
    /// The text form (as `COPY` or `SELECT` would print it).
    Text(Vec<u8>),
    /// The binary form (only with the `binary` option, which keepsake does not use).
    Binary(Vec<u8>),
}

pub type Tuple = Vec<Value>;

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: char,
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pgoutput message '{}': {} at byte {}",
            self.kind.escape_default(),
            self.what,
            self.offset
        )
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over one message.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    kind: char,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError {
            kind: self.kind,
            offset: self.at,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err("message ends early"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }

    /// A NUL-terminated string.
    fn string(&mut self) -> Result<String, DecodeError> {
        let rest = &self.buf[self.at..];
        let n = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.err("string without its end"))?;
        let s = String::from_utf8(rest[..n].to_vec()).map_err(|_| self.err("string not UTF-8"))?;
        self.at += n + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.i16()?;
        if n < 0 {
            return Err(self.err("negative column count"));
        }
        let mut t = Vec::with_capacity(n as usize);
        for _ in 0..n {
            t.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                k @ (b't' | b'b') => {
                    let len = self.i32()?;
                    if len < 0 {
                        return Err(self.err("negative value length"));
                    }
                    let v = self.take(len as usize)?.to_vec();
                    if k == b't' {
                        Value::Text(v)
                    } else {
                        Value::Binary(v)
                    }
                }
                _ => return Err(self.err("unknown value kind")),
            });
        }
        Ok(t)
    }

    fn old(&mut self, tag: u8) -> Result<(OldKind, Tuple), DecodeError> {
        let kind = match tag {
            b'K' => OldKind::Key,
            b'O' => OldKind::Full,
            _ => return Err(self.err("expected an old tuple (K or O)")),
        };
        Ok((kind, self.tuple()?))
    }

    fn done(&self) -> Result<(), DecodeError> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(self.err("bytes left over"))
        }
    }
}

/// Decode one pgoutput message (protocol version 1: no streamed or two-phase transactions).
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    let kind = buf.first().copied().unwrap_or(0) as char;
    let mut r = Reader { buf, at: 0, kind };
    r.u8()?;
    let m = match kind {
        'B' => Message::Begin {
            final_lsn: r.u64()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
        },
        'C' => Message::Commit {
            flags: r.u8()?,
            commit_lsn: r.u64()?,
            end_lsn: r.u64()?,
            commit_time: r.i64()?,
        },
        'O' => Message::Origin {
            lsn: r.u64()?,
            name: r.string()?,
        },
        'R' => {
            let oid = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let n = r.i16()?;
            if n < 0 {
                return Err(r.err("negative column count"));
            }
            let mut columns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                columns.push(Column {
                    key: r.u8()? & 1 == 1,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    typmod: r.i32()?,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        'Y' => Message::Type {
            oid: r.u32()?,
            namespace: r.string()?,
            name: r.string()?,
        },
        'I' => {
            let relation = r.u32()?;
            if r.u8()? != b'N' {
                return Err(r.err("expected a new tuple (N)"));
            }
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        'U' => {
            let relation = r.u32()?;
            let (old, tag) = match r.u8()? {
                t @ (b'K' | b'O') => (Some(r.old(t)?), r.u8()?),
                t => (None, t),
            };
            if tag != b'N' {
                return Err(r.err("expected a new tuple (N)"));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        'D' => {
            let relation = r.u32()?;
            let tag = r.u8()?;
            Message::Delete {
                relation,
                old: r.old(tag)?,
            }
        }
        'T' => {
            let n = r.u32()?;
            let options = r.u8()?;
            let mut relations = Vec::new();
            for _ in 0..n {
                relations.push(r.u32()?);
            }
            Message::Truncate { options, relations }
        }
        'M' => {
            let transactional = r.u8()? & 1 == 1;
            let lsn = r.u64()?;
            let prefix = r.string()?;
            let len = r.u32()? as usize;
            Message::Logical {
                transactional,
                lsn,
                prefix,
                content: r.take(len)?.to_vec(),
            }
        }
        _ => return Err(r.err("unknown message type")),
    };
    r.done()?;
    Ok(m)
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A pgoutput timestamp as a time.
pub fn time_of(pg_micros: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(pg_micros.checked_add(PG_EPOCH_OFFSET_US)?)
}

/// An LSN as PostgreSQL writes it: `16/B374D848`.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// `16/B374D848` as an LSN.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update_with_old_key() -> Vec<u8> {
        let mut b = vec![b'U'];
        b.extend(16385u32.to_be_bytes());
        b.push(b'K');
        b.extend(2i16.to_be_bytes());
        b.push(b't');
        b.extend(1i32.to_be_bytes());
        b.push(b'7');
        b.push(b'n');
        b.push(b'N');
        b.extend(2i16.to_be_bytes());
        b.push(b't');
        b.extend(1i32.to_be_bytes());
        b.push(b'8');
        b.push(b'u');
        b
    }

    #[test]
    fn an_update_with_its_old_key_decodes() {
        assert_eq!(
            decode(&update_with_old_key()),
            Ok(Message::Update {
                relation: 16385,
                old: Some((OldKind::Key, vec![Value::Text(b"7".to_vec()), Value::Null])),
                new: vec![Value::Text(b"8".to_vec()), Value::Unchanged],
            })
        );
    }

    /// Every prefix of a valid message, and every byte changed to every value, decodes to a
    /// message or an error: never a panic, never a read past the end.
    #[test]
    fn cut_or_damaged_messages_are_errors_not_panics() {
        let good = update_with_old_key();
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "a message cut at {n}");
        }
        for i in 0..good.len() {
            for v in 0..=255u8 {
                let mut b = good.clone();
                b[i] = v;
                let _ = decode(&b);
            }
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode(&long).unwrap_err().what, "bytes left over");
        assert_eq!(decode(b"Z").unwrap_err().what, "unknown message type");
    }

    #[test]
    fn lsns_and_times_as_postgresql_writes_them() {
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(
            time_of(0).map(|t| t.to_rfc3339()),
            Some("2000-01-01T00:00:00+00:00".into())
        );
    }
}
