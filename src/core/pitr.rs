//! Point-in-time restore from change capture (docs/capture.md, "Restore to a point in time"):
//! a dump, then the captured transactions it does not hold, up to the chosen time.
//!
//! Exact alignment: every dump records its snapshot (`txid_current_snapshot()` and the server's
//! time, `Manifest::snapshot`). A captured transaction is in the dump exactly when its id is
//! visible in that snapshot; those are skipped, the others applied in commit order — no gap and
//! no overlap, whatever the clocks (a commit's WAL position and its visibility are not the same
//! order, so no single position would do).
//!
//! Invariants:
//! - The dump is one taken while the chain of segments ran (its snapshot after the chain
//!   began): every transaction it does not hold is in the chain.
//! - Source transactions are applied whole, in commit order (up to [`GROUP`] of them in one
//!   target transaction: the same end state, far fewer commits), with
//!   triggers and foreign-key checks off (`session_replication_role = replica`, as a
//!   subscriber does): the source's trigger effects are themselves among the changes.
//! - Nothing is applied past the last commit at or before the chosen time; a time outside what
//!   can be restored is refused before anything is restored, naming the range that can.
//! - Each change is written so that applying it twice is harmless (an insert of a row that is
//!   there sets it to the same values; an update sets whole values; a delete of what is gone
//!   deletes nothing).
//!
//! - Sequences end at the values read when the last applied segment was sealed: never behind
//!   the chosen time (ahead only leaves a gap in the ids handed out).
//!
//! - A schema change (DDL, which pgoutput does not carry) between the dump and the chosen time
//!   refuses the restore, naming the times that can be restored: before it, or from the
//!   backup the daemon starts when it sees one.
//!
//! Not yet: applying DDL itself (an added column, a new table), tables with REPLICA IDENTITY
//! FULL and no unique key (refused), the facts check of the result.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::core::capture;
use crate::core::format::Manifest;
use crate::core::repo::Repository;
use crate::error::{Error, Result};
use crate::pg::client::{self, quote_ident};
use crate::pg::pgoutput::{self, Message, Relation, Value};

/// What a point-in-time restore will do: the dump, and the segments to read.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dump: Manifest,
    /// Apply the transactions the dump does not hold, committed at or before `until`.
    pub until: DateTime<Utc>,
    pub segments: Vec<String>,
}

/// Choose the dump and the segments for `source` at `at`; `id` pins the dump.
pub async fn plan(
    repo: &Repository,
    source: &str,
    id: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Plan> {
    let slot = capture::slot_record(repo, source).await?.ok_or_else(|| {
        Error::Usage(format!(
            "source {source} has no change capture in this repository: restore a backup by its id instead"
        ))
    })?;
    let segs = capture::list(repo, source).await?;
    // The chain that ends with the newest segment (a break starts a new one).
    let mut chain: Vec<&(u64, u64, String)> = vec![];
    for s in segs.iter().rev() {
        match chain.last() {
            Some(next) if next.0 != s.1 => break,
            _ => chain.push(s),
        }
    }
    chain.reverse();
    let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
        return Err(Error::Usage(format!(
            "no change of source {source} is captured yet: restore a backup by its id instead"
        )));
    };
    // When the chain began (the server's clock): with the slot, or with its first segment's
    // first commit when an earlier part of it is gone.
    let began = if first.0 == slot.created_lsn {
        slot.created_at
    } else {
        let h = capture::read(repo, &first.2).await?.head;
        h.commits
            .first()
            .map(|c| c.at)
            .or(h.through_at)
            .unwrap_or(slot.created_at)
    };
    let latest = capture::read(repo, &last.2)
        .await?
        .head
        .reaches()
        .ok_or_else(|| {
            Error::Damage(format!(
                "{}: a segment with neither a commit nor a time it is whole to",
                last.2
            ))
        })?;
    // Taken after the chain began: its snapshot no earlier than the slot's first position.
    let usable = |m: &Manifest| m.snapshot.as_ref().is_some_and(|s| s.after >= began);
    let (ms, _) = repo.manifests_lenient().await?;
    let first_usable = ms
        .iter()
        .filter(|m| m.source.name == source && usable(m))
        .filter_map(|m| m.snapshot.as_ref().map(|s| s.at))
        .min();
    let range = || {
        match first_usable {
        Some(f) if f <= latest => format!(
            "the range that can be restored is {} to {}",
            f.format("%Y-%m-%d %H:%M:%S UTC"),
            latest.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        _ => format!(
            "no backup of {source} was taken since capture began ({}): take one (`keepsake backup --source {source}`)",
            began.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    }
    };
    if at > latest {
        return Err(Error::Field {
            field: "at",
            message: format!(
                "{} is after what capture has stored so far: {}",
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                range()
            ),
        });
    }
    let dump = match id {
        Some(id) => {
            let id = repo.resolve_id(id).await?;
            let m = ms
                .into_iter()
                .find(|m| m.id == id)
                .ok_or_else(|| Error::NotFound(format!("no backup {id}")))?;
            if !usable(&m) || m.snapshot.as_ref().is_some_and(|s| s.at > at) {
                return Err(Error::Usage(format!(
                    "backup {id} was not taken while capture ran and before that time: {}",
                    range()
                )));
            }
            m
        }
        None => ms
            .into_iter()
            .rev()
            .find(|m| {
                m.source.name == source
                    && usable(m)
                    && m.snapshot.as_ref().is_some_and(|s| s.at <= at)
            })
            .ok_or_else(|| Error::Field {
                field: "at",
                message: format!(
                    "{} is before the first point that can be restored: {}",
                    at.format("%Y-%m-%d %H:%M:%S UTC"),
                    range()
                ),
            })?,
    };
    // pgoutput carries no DDL: captured changes are never applied across a schema change the
    // dump does not hold (the daemon records each change it sees, and starts a backup).
    let from = dump.snapshot.as_ref().map(|s| s.after);
    let dump_hash = dump.snapshot.as_ref().and_then(|s| s.schema_hash.clone());
    for c in capture::schema_changes(repo, source).await? {
        let may_precede_at = c.after < at;
        let may_follow_dump = from.is_none_or(|f| c.by > f);
        if may_precede_at && may_follow_dump && dump_hash.as_deref() != Some(&c.hash_after) {
            let next = repo
                .manifests_lenient()
                .await?
                .0
                .into_iter()
                .filter(|m| m.source.name == source)
                .filter_map(|m| m.snapshot.map(|s| s.at))
                .filter(|t| *t >= c.by)
                .min();
            return Err(Error::Field {
                field: "at",
                message: format!(
                    "the schema of {source} changed between {} and {} (DDL, which captured changes do not carry), after backup {} and before {}: the changes after it cannot be applied to that backup; choose a time before {}{}",
                    c.after.format("%Y-%m-%d %H:%M:%S UTC"),
                    c.by.format("%Y-%m-%d %H:%M:%S UTC"),
                    dump.id,
                    at.format("%Y-%m-%d %H:%M:%S UTC"),
                    c.after.format("%Y-%m-%d %H:%M:%S UTC"),
                    match next {
                        Some(t) => format!(
                            ", or from {} on (the backup taken after it)",
                            t.format("%Y-%m-%d %H:%M:%S UTC")
                        ),
                        None => format!(
                            ", or take a backup (`keepsake backup --source {source}`) and choose a time after it"
                        ),
                    }
                ),
            });
        }
    }
    Ok(Plan {
        until: at,
        dump,
        segments: chain.iter().map(|s| s.2.clone()).collect(),
    })
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub transactions: usize,
    pub changes: usize,
    pub last_commit: Option<DateTime<Utc>>,
    /// Tables whose row count was checked against the dump's facts carried through the
    /// applied changes.
    pub checked: usize,
}

/// Row counts the result must have: the dump's facts, carried through every applied change
/// (an insert adds a row, a delete takes one, a truncate empties the table). Only tables a
/// change touched are kept: the restore itself checked the others against the dump's facts.
#[derive(Debug, Default)]
struct Counts {
    dump: BTreeMap<(String, String), i64>,
    touched: BTreeMap<(String, String), i64>,
}

impl Counts {
    fn new(tables: &[crate::pg::archive::TableFacts]) -> Self {
        Counts {
            dump: tables
                .iter()
                .map(|t| ((t.schema.clone(), t.name.clone()), t.rows as i64))
                .collect(),
            touched: BTreeMap::new(),
        }
    }

    fn add(&mut self, r: &Relation, delta: i64, empty_first: bool) {
        let k = (r.namespace.clone(), r.name.clone());
        let start = self.dump.get(&k).copied().unwrap_or(0);
        let n = self.touched.entry(k).or_insert(start);
        if empty_first {
            *n = 0;
        }
        *n += delta;
    }

    fn count(&mut self, m: &Message, relations: &BTreeMap<u32, Relation>) {
        match m {
            Message::Insert { relation, .. } => {
                if let Some(r) = relations.get(relation) {
                    self.add(r, 1, false);
                }
            }
            Message::Delete { relation, .. } => {
                if let Some(r) = relations.get(relation) {
                    self.add(r, -1, false);
                }
            }
            Message::Truncate { relations: rs, .. } => {
                for r in rs.iter().filter_map(|o| relations.get(o)) {
                    self.add(r, 0, true);
                }
            }
            _ => {}
        }
    }

    /// Compare with the target; the number of tables checked, or what differs.
    async fn check(&self, pg: &tokio_postgres::Client) -> Result<usize> {
        let mut wrong = vec![];
        for ((schema, name), want) in &self.touched {
            let t = format!("{}.{}", quote_ident(schema), quote_ident(name));
            let got: i64 = pg
                .query_one(&format!("SELECT count(*) FROM ONLY {t}"), &[])
                .await
                .map_err(|e| {
                    Error::Postgres(format!(
                        "counting the rows of {t}: {}",
                        client::describe(&e)
                    ))
                })?
                .get(0);
            if got != *want {
                wrong.push(format!("{t} has {got} rows where {want} were expected"));
            }
        }
        if !wrong.is_empty() {
            return Err(Error::Damage(format!(
                "the point in time does not hold what capture recorded (the dump's row counts carried through the changes applied): {}",
                wrong.join("; ")
            )));
        }
        Ok(self.touched.len())
    }
}

/// Apply the plan's transactions to the restored database `pg`.
pub async fn apply(
    repo: &Repository,
    plan: &Plan,
    pg: &mut tokio_postgres::Client,
) -> Result<Applied> {
    let pgerr = |what: &str, e: tokio_postgres::Error| {
        Error::Postgres(format!("{what}: {}", client::describe(&e)))
    };
    pg.batch_execute(
        "SET session_replication_role = replica; SET synchronous_commit = off; SET datestyle = 'ISO, YMD'; SET intervalstyle = postgres; SET timezone = 'UTC'; SET bytea_output = hex",
    )
    .await
    .map_err(|e| pgerr("preparing the session that applies the captured changes (session_replication_role = replica needs a superuser or the role's grant)", e))?;
    let snapshot = plan
        .dump
        .snapshot
        .clone()
        .ok_or_else(|| Error::Other(format!("backup {} recorded no snapshot", plan.dump.id)))?;
    let mut relations: BTreeMap<u32, Relation> = BTreeMap::new();
    let mut types: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    // Each statement's text is prepared once and reused (a change is one round trip).
    let mut statements: Statements = BTreeMap::new();
    let mut done = Applied::default();
    let mut xid = 0u32;
    // Source transactions applied in the target transaction now open.
    let mut grouped = 0usize;
    // The sequence values of the last segment a transaction was applied from.
    let mut sequences: Vec<(String, i64)> = vec![];
    let mut counts = Counts::new(&plan.dump.facts.tables);
    for key in &plan.segments {
        let seg = capture::read(repo, key).await?;
        let seg_sequences = seg.head.sequences.clone();
        let mut txn: Vec<Message> = vec![];
        let mut open = false;
        for raw in &seg.messages {
            let m = pgoutput::decode(raw).map_err(|e| Error::Damage(format!("{key}: {e}")))?;
            match m {
                Message::Relation(r) => {
                    relations.insert(r.oid, r);
                }
                Message::Begin { xid: x, .. } => {
                    open = true;
                    xid = x;
                    txn.clear();
                }
                Message::Commit { commit_time, .. } => {
                    open = false;
                    let at = pgoutput::time_of(commit_time).unwrap_or(plan.until);
                    if at > plan.until {
                        if grouped > 0 {
                            pg.batch_execute("COMMIT")
                                .await
                                .map_err(|e| pgerr("committing applied transactions", e))?;
                        }
                        set_sequences(pg, &sequences).await?;
                        done.checked = counts.check(pg).await?;
                        return Ok(done);
                    }
                    let in_dump = snapshot.holds(xid).ok_or_else(|| {
                        Error::Damage(format!(
                            "backup {}: its snapshot {:?} does not parse",
                            plan.dump.id, snapshot.xids
                        ))
                    })?;
                    if !in_dump {
                        if grouped == 0 {
                            pg.batch_execute("BEGIN")
                                .await
                                .map_err(|e| pgerr("starting a transaction", e))?;
                        }
                        for c in &txn {
                            apply_change(pg, c, &relations, &mut types, &mut statements).await?;
                            counts.count(c, &relations);
                            done.changes += 1;
                        }
                        grouped += 1;
                        if grouped == GROUP {
                            pg.batch_execute("COMMIT")
                                .await
                                .map_err(|e| pgerr("committing applied transactions", e))?;
                            grouped = 0;
                        }
                        done.transactions += 1;
                        done.last_commit = Some(at);
                        sequences = seg_sequences.clone();
                    }
                    txn.clear();
                }
                m if open => txn.push(m),
                _ => {}
            }
        }
    }
    if grouped > 0 {
        pg.batch_execute("COMMIT")
            .await
            .map_err(|e| pgerr("committing applied transactions", e))?;
    }
    set_sequences(pg, &sequences).await?;
    done.checked = counts.check(pg).await?;
    Ok(done)
}

/// Source transactions applied in one target transaction: whole ones only, in commit order,
/// so the database ends in the same state; each commit of the target costs a round trip
/// and a WAL flush, and a restore that fails midway is dropped whole anyway.
const GROUP: usize = 500;

/// Set the sequences to the values read when the last applied segment was sealed: at least
/// what they were at the chosen time (a sequence ahead only leaves a gap; one behind would
/// hand out ids already used). Sequences the target does not have are skipped.
async fn set_sequences(pg: &tokio_postgres::Client, seqs: &[(String, i64)]) -> Result<()> {
    for (name, v) in seqs {
        let exists = pg
            .query_opt("SELECT to_regclass($1)::text", &[name])
            .await
            .map_err(|e| Error::Postgres(client::describe(&e)))?
            .and_then(|r| r.get::<_, Option<String>>(0))
            .is_some();
        if exists {
            pg.execute("SELECT setval($1::text::regclass, $2, true)", &[name, v])
                .await
                .map_err(|e| {
                    Error::Postgres(format!(
                        "setting sequence {name} to {v}: {}",
                        client::describe(&e)
                    ))
                })?;
        }
    }
    Ok(())
}

/// The table a relation names, quoted.
fn table(r: &Relation) -> String {
    format!("{}.{}", quote_ident(&r.namespace), quote_ident(&r.name))
}

/// The target's type of each of the relation's columns, by the relation's column order.
async fn column_types(
    t: &tokio_postgres::Client,
    r: &Relation,
    cache: &mut BTreeMap<u32, Vec<String>>,
) -> Result<Vec<String>> {
    if let Some(v) = cache.get(&r.oid) {
        return Ok(v.clone());
    }
    let rows = t
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a
              WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table(r)],
        )
        .await
        .map_err(|e| {
            Error::Postgres(format!(
                "reading the columns of {} in the target: {}",
                table(r),
                client::describe(&e)
            ))
        })?;
    let by_name: BTreeMap<String, String> = rows
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect();
    let v = r
        .columns
        .iter()
        .map(|c| {
            by_name.get(&c.name).cloned().ok_or_else(|| {
                Error::Postgres(format!(
                    "{} in the target has no column {} (the table changed after the dump: DDL is not captured yet)",
                    table(r),
                    c.name
                ))
            })
        })
        .collect::<Result<Vec<String>>>()?;
    cache.insert(r.oid, v.clone());
    Ok(v)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(b) | Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// The key columns of a relation (its replica identity), by index.
fn keys(r: &Relation) -> Vec<usize> {
    r.columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.key)
        .map(|(i, _)| i)
        .collect()
}

/// Prepared statements of the applying session, by their text.
type Statements = BTreeMap<String, tokio_postgres::Statement>;

async fn apply_change(
    t: &tokio_postgres::Client,
    m: &Message,
    relations: &BTreeMap<u32, Relation>,
    types: &mut BTreeMap<u32, Vec<String>>,
    statements: &mut Statements,
) -> Result<()> {
    let rel = |oid: &u32| {
        relations.get(oid).ok_or_else(|| {
            Error::Damage(format!(
                "a change of table {oid} comes before its description"
            ))
        })
    };
    let failed = |sql: &str, e: tokio_postgres::Error| {
        Error::Postgres(format!(
            "applying a captured change ({}): {}",
            sql.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            client::describe(&e)
        ))
    };
    let run = |sql: String, params: Vec<Option<String>>| {
        let cached = statements.get(&sql).cloned();
        async move {
            let stmt = match cached {
                Some(s) => s,
                None => t.prepare(&sql).await.map_err(|e| failed(&sql, e))?,
            };
            let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            t.execute(&stmt, &p).await.map_err(|e| failed(&sql, e))?;
            Ok::<_, Error>((sql, stmt))
        }
    };
    match m {
        Message::Insert { relation, new } => {
            let r = rel(relation)?;
            let ty = column_types(t, r, types).await?;
            let k = keys(r);
            if k.is_empty() {
                return Err(Error::Usage(format!(
                    "{} has no key (REPLICA IDENTITY FULL without a unique index): its inserts cannot be applied safely twice, so a point-in-time restore of it is refused",
                    table(r)
                )));
            }
            let cols: Vec<String> = r.columns.iter().map(|c| quote_ident(&c.name)).collect();
            let vals: Vec<String> = (0..cols.len())
                .map(|i| format!("${}::text::{}", i + 1, ty[i]))
                .collect();
            let set: Vec<String> = (0..cols.len())
                .filter(|i| !k.contains(i))
                .map(|i| format!("{c} = EXCLUDED.{c}", c = cols[i]))
                .collect();
            let conflict = format!(
                "({})",
                k.iter()
                    .map(|i| cols[*i].clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT {conflict} {}",
                table(r),
                cols.join(", "),
                vals.join(", "),
                if set.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", set.join(", "))
                }
            );
            let (k, v) = run(sql, new.iter().map(text).collect()).await?;
            statements.insert(k, v);
        }
        Message::Update { relation, old, new } => {
            let r = rel(relation)?;
            let ty = column_types(t, r, types).await?;
            let k = keys(r);
            let key_src = old.as_ref().map(|(_, t)| t).unwrap_or(new);
            let mut params: Vec<Option<String>> = vec![];
            let mut sets = vec![];
            for (i, v) in new.iter().enumerate() {
                if matches!(v, Value::Unchanged) {
                    continue;
                }
                params.push(text(v));
                sets.push(format!(
                    "{} = ${}::text::{}",
                    quote_ident(&r.columns[i].name),
                    params.len(),
                    ty[i]
                ));
            }
            let mut conds = vec![];
            for i in &k {
                params.push(text(&key_src[*i]));
                conds.push(format!(
                    "{} = ${}::text::{}",
                    quote_ident(&r.columns[*i].name),
                    params.len(),
                    ty[*i]
                ));
            }
            if sets.is_empty() || conds.is_empty() {
                return Ok(());
            }
            let sql = format!(
                "UPDATE {} SET {} WHERE {}",
                table(r),
                sets.join(", "),
                conds.join(" AND ")
            );
            let (k, v) = run(sql, params).await?;
            statements.insert(k, v);
        }
        Message::Delete { relation, old } => {
            let r = rel(relation)?;
            let ty = column_types(t, r, types).await?;
            let k = keys(r);
            let mut params = vec![];
            let mut conds = vec![];
            for i in &k {
                params.push(text(&old.1[*i]));
                conds.push(format!(
                    "{} = ${}::text::{}",
                    quote_ident(&r.columns[*i].name),
                    params.len(),
                    ty[*i]
                ));
            }
            if conds.is_empty() {
                return Ok(());
            }
            let (k, v) = run(
                format!("DELETE FROM {} WHERE {}", table(r), conds.join(" AND ")),
                params,
            )
            .await?;
            statements.insert(k, v);
        }
        Message::Truncate {
            options,
            relations: rs,
        } => {
            let names = rs
                .iter()
                .map(|o| rel(o).map(table))
                .collect::<Result<Vec<_>>>()?;
            let mut sql = format!("TRUNCATE {}", names.join(", "));
            if options & 2 != 0 {
                sql.push_str(" RESTART IDENTITY");
            }
            if options & 1 != 0 {
                sql.push_str(" CASCADE");
            }
            let (k, v) = run(sql, vec![]).await?;
            statements.insert(k, v);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::archive::TableFacts;
    use crate::pg::pgoutput::OldKind;

    /// The row counts a point in time must have: the dump's, carried through the applied
    /// inserts, deletes and truncates; tables no change touched are left to the restore's own
    /// check.
    #[test]
    fn row_counts_are_carried_from_the_dump_through_the_changes() {
        let facts = |name: &str, rows: u64| TableFacts {
            schema: "public".into(),
            name: name.into(),
            rows,
            digest: String::new(),
            columns: String::new(),
        };
        let mut c = Counts::new(&[facts("guests", 20), facts("vendors", 3), facts("rsvp", 7)]);
        let rel = |oid: u32, name: &str| Relation {
            oid,
            namespace: "public".into(),
            name: name.into(),
            replica_identity: b'd',
            columns: vec![],
        };
        let relations: BTreeMap<u32, Relation> = [
            (1, rel(1, "guests")),
            (2, rel(2, "vendors")),
            (3, rel(3, "later")),
        ]
        .into_iter()
        .collect();
        let insert = |relation| Message::Insert {
            relation,
            new: vec![],
        };
        let delete = |relation| Message::Delete {
            relation,
            old: (OldKind::Key, vec![]),
        };
        for m in [
            insert(1),
            insert(1),
            delete(1),
            Message::Update {
                relation: 1,
                old: None,
                new: vec![],
            },
            delete(2),
            Message::Truncate {
                options: 0,
                relations: vec![2],
            },
            insert(2),
            insert(3),
        ] {
            c.count(&m, &relations);
        }
        let got: Vec<_> = c
            .touched
            .iter()
            .map(|((_, n), v)| (n.as_str(), *v))
            .collect();
        assert_eq!(got, [("guests", 21), ("later", 1), ("vendors", 1)]);
    }
}
