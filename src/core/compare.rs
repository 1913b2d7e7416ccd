//! The restore-level check: a restored database compared with the facts recorded when the
//! backup was taken (row counts and digests of every table, sequences, large objects).
//!
//! Invariant: only a real difference is reported as one; a comparison the server or the
//! connection interrupted ([`interrupted`]) fails as an error starting with
//! [`COMPARE_INTERRUPTED`], which callers record as *not proven*, never as damage.

use futures::stream::StreamExt;

use crate::error::{Error, Result};
use crate::pg::archive::{ArchiveFacts, LineDigester, RowDigest};
use crate::pg::client::{self, quote_ident};

/// Compare a (restored) database with recorded facts; returns the differences, precisely.
pub async fn compare_database(
    pg: &tokio_postgres::Client,
    facts: &ArchiveFacts,
) -> Result<Vec<String>> {
    compare_some(pg, facts, &|s, _| Some(s.to_string()), true).await
}

/// Compare some of the recorded tables and sequences: `place(schema, name)` says in which
/// schema the restored copy is read (`None`: not restored, not compared); large objects only
/// when `large_objects`.
pub async fn compare_some(
    pg: &tokio_postgres::Client,
    facts: &ArchiveFacts,
    place: &(dyn Fn(&str, &str) -> Option<String> + Sync),
    large_objects: bool,
) -> Result<Vec<String>> {
    // The session settings pg_dump used when it wrote the rows (see pg::process).
    pg.batch_execute(
        "SET extra_float_digits = 3; SET DateStyle = ISO; SET IntervalStyle = postgres; \
         SET TimeZone = 'UTC'; SET row_security = off; SET bytea_output = hex",
    )
    .await
    .map_err(|e| {
        Error::Postgres(format!(
            "preparing the comparison: {}",
            client::describe(&e)
        ))
    })?;
    let mut problems = Vec::new();
    for t in &facts.tables {
        let Some(at) = place(&t.schema, &t.name) else {
            continue;
        };
        let sql = format!(
            "COPY {}.{} {} TO STDOUT",
            quote_ident(&at),
            quote_ident(&t.name),
            t.columns
        );
        let d = match copy_digest(pg, &sql).await {
            Ok(d) => d,
            // The scratch server went away, timed out or was shut down: that proves nothing
            // about the backup, so it is not recorded as damage.
            Err(e) if interrupted(&e) => {
                return Err(Error::Postgres(format!(
                    "{COMPARE_INTERRUPTED} at table {}.{}: {}",
                    t.schema,
                    t.name,
                    client::describe(&e)
                )))
            }
            Err(e) => {
                problems.push(format!(
                    "table {}.{}: cannot be read back: {}",
                    t.schema,
                    t.name,
                    client::describe(&e)
                ));
                continue;
            }
        };
        if d.count != t.rows || d.hex() != t.digest {
            problems.push(if d.count != t.rows {
                format!(
                    "table {}.{}: expected {} rows, found {}",
                    t.schema, t.name, t.rows, d.count
                )
            } else {
                format!(
                    "table {}.{}: {} rows as expected, but their content differs (digest {} expected, {} found)",
                    t.schema,
                    t.name,
                    t.rows,
                    t.digest,
                    d.hex()
                )
            });
        }
    }
    for s in &facts.sequences {
        let Some(at) = place(&s.schema, &s.name) else {
            continue;
        };
        let sql = format!(
            "SELECT last_value, is_called FROM {}.{}",
            quote_ident(&at),
            quote_ident(&s.name)
        );
        match pg.query_one(&sql, &[]).await {
            Ok(r) => {
                let (v, c): (i64, bool) = (r.get(0), r.get(1));
                if v != s.value || c != s.is_called {
                    problems.push(format!(
                        "sequence {}.{}: expected {} (is_called {}), found {v} (is_called {c})",
                        s.schema, s.name, s.value, s.is_called
                    ));
                }
            }
            Err(e) if interrupted(&e) => {
                return Err(Error::Postgres(format!(
                    "{COMPARE_INTERRUPTED} at sequence {}.{}: {}",
                    s.schema,
                    s.name,
                    client::describe(&e)
                )))
            }
            Err(e) => problems.push(format!(
                "sequence {}.{}: {}",
                s.schema,
                s.name,
                client::describe(&e)
            )),
        }
    }
    if !large_objects {
        return Ok(problems);
    }
    let rows = pg
        .query(
            "SELECT oid::bigint, lo_get(oid) FROM pg_largeobject_metadata",
            &[],
        )
        .await
        .map_err(|e| {
            Error::Postgres(format!(
                "{COMPARE_INTERRUPTED} reading large objects: {}",
                client::describe(&e)
            ))
        })?;
    let mut lo = RowDigest::default();
    for r in rows {
        let (oid, data): (i64, Vec<u8>) = (r.get(0), r.get(1));
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&oid.to_le_bytes());
        b.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&data).to_le_bytes());
        lo.add_line(&b);
    }
    if lo.count != facts.large_objects || lo.hex() != facts.large_objects_digest {
        problems.push(format!(
            "large objects: expected {} (digest {}), found {} (digest {})",
            facts.large_objects,
            facts.large_objects_digest,
            lo.count,
            lo.hex()
        ));
    }
    Ok(problems)
}

async fn copy_digest(
    pg: &tokio_postgres::Client,
    sql: &str,
) -> std::result::Result<RowDigest, tokio_postgres::Error> {
    let stream = pg.copy_out(sql).await?;
    futures::pin_mut!(stream);
    let mut lines = LineDigester::default();
    while let Some(chunk) = stream.next().await {
        lines.feed(&chunk?);
    }
    Ok(lines.finish())
}

/// How an interrupted comparison begins: the check could not finish (not proven), which says
/// nothing about the backup.
pub const COMPARE_INTERRUPTED: &str = "the comparison with the recorded facts was interrupted";

/// Whether a failure reading the restored copy back comes from the server or the connection
/// rather than from what was restored: a lost or closed connection (no SQLSTATE, class 08),
/// an administrator or crash shutdown (57P01–57P03), a cancel or statement timeout (57014),
/// exhausted resources (class 53), a lock or idle timeout (55P03, 25P03). Anything else (a
/// table or column that is not there, data that does not convert) is a real difference.
pub fn interrupted(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        return true;
    };
    let c = code.code();
    c.starts_with("08")
        || c.starts_with("53")
        || c.starts_with("57P")
        || matches!(c, "57014" | "55P03" | "25P03")
}
