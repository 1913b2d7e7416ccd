//! Continuous change capture in the daemon (docs/capture.md): one task per source with a
//! `[sources.capture]` table holds a logical replication connection and seals what it streams
//! into change segments (`core::capture`).
//!
//! Why `pgwire-replication`: tokio-postgres cannot open a replication connection (no
//! `replication` startup parameter, no CopyBoth); pgwire-replication speaks the walsender
//! protocol over TCP with rustls or a Unix socket, and acknowledges only the position it is
//! given — so the slot never moves past a change that is not durably stored — while it keeps
//! answering the server's keepalives. The messages themselves are decoded by our own
//! `pg::pgoutput` (segments must stay readable for as long as backups are kept).
//!
//! Invariants:
//! - The slot is confirmed only up to the end of the last segment stored: a crash resumes from
//!   there, without a gap (what follows may be streamed again; applying it twice is harmless
//!   by design, docs/capture.md).
//! - A slot keepsake did not make (no record of it in the repository, or a record of another
//!   server or database) is refused, never taken over or dropped.
//! - The slot never fills the server's disk: the WAL it holds back is looked at before
//!   streaming and every 10 s; past half of `max_slot_wal` an alert says so, past all of it
//!   the slot is dropped (alerted) and a new chain starts.
//!
//! Not yet (docs/capture.md, "Next steps"): DDL and sequences.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use tokio_util::sync::CancellationToken;

use super::capture_state::{live_path, Live, LIVE_EVERY};
use super::event::{Alert, AlertKind};
use super::{Engine, Event};
use crate::config::{CaptureConfig, SourceConfig};
use crate::core::capture::{self, Commit, Segment, SegmentHead, SlotRecord};
use crate::error::{Error, Result};
use crate::pg::client::{self, quote_ident};
use crate::pg::conninfo::{ConnInfo, SslMode};
use crate::pg::pgoutput;

/// Capture `source` until `stop`: on an error, say so and try again (5 s, then up to 60 s).
pub async fn run(engine: Engine, source: String, stop: CancellationToken) {
    let mut backoff = Duration::from_secs(5);
    loop {
        let cfg = engine.config();
        let Ok(src) = cfg.source(&source).cloned() else {
            return;
        };
        let Some(cap) = src.capture.clone() else {
            return;
        };
        let started = Instant::now();
        match capture(&engine, &src, &cap, &stop).await {
            Ok(()) => {
                write_live(&engine, &source, &Live::now("stopped", None));
                return;
            }
            Err(e) => {
                write_live(
                    &engine,
                    &source,
                    &Live::now("retrying", Some(e.to_string())),
                );
                tracing::error!("capture of {source}: {e}");
                engine.emit(Event::Log {
                    job: None,
                    message: format!("capture of {source} stopped: {e}; trying again"),
                });
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(5);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// One connection's worth of capture: publication and slot, then the stream.
async fn capture(
    engine: &Engine,
    src: &SourceConfig,
    cap: &CaptureConfig,
    stop: &CancellationToken,
) -> Result<()> {
    let repo = engine.repo().await?;
    let pg = client::connect(&src.conn).await?;
    ensure_publication(&pg, &cap.publication).await?;
    let mut start = ensure_slot(&pg, &repo, src, cap).await?;
    // A daemon stopped for longer than the slot may hold: drop it now, before anything else.
    let mut lagging = false;
    let mut seen = None;
    if over_limit(engine, &pg, src, cap, &mut lagging, &mut seen).await? {
        drop_slot(engine, &pg, src, cap).await?;
        start = ensure_slot(&pg, &repo, src, cap).await?;
    }
    let mut c = ReplicationClient::connect(replication_config(&src.conn, cap, start)?)
        .await
        .map_err(|e| Error::Postgres(format!("opening the replication stream: {e}")))?;
    c.wait_started().await.map_err(|e| {
        Error::Postgres(format!("starting replication from slot {}: {e}", cap.slot))
    })?;
    tracing::info!(
        "capture of {}: streaming slot {} from {}",
        src.name,
        cap.slot,
        pgoutput::lsn_text(start)
    );
    let mut seg = Builder::new(&src.name, &cap.slot, start);
    // The schema as the chain last saw it: a change while no daemon ran counts too.
    if let Some(last) = capture::list(&repo, &src.name).await?.last() {
        let h = capture::read(&repo, &last.2).await?.head;
        if let (Some(hash), Some(at)) = (h.schema_hash.clone(), h.reaches()) {
            seg.schema = Some((hash, at));
        }
    }
    check_schema(engine, &repo, &pg, src, &mut seg).await?;
    let live = LiveWriter;
    live.write(engine, &src.name, &seg, seen.as_ref(), lagging);
    let mut due = tokio::time::Instant::now() + cap.segment;
    let mut watch = tokio::time::interval(WAL_WATCH);
    watch.tick().await;
    loop {
        let ev = tokio::select! {
            _ = watch.tick() => {
                // Tables made meanwhile join the publication.
                refresh_publication(&pg, &cap.publication).await?;
                check_schema(engine, &repo, &pg, src, &mut seg).await?;
                // Past the limit the slot is dropped (the stream first: a slot in use cannot
                // be), and the next round starts a new chain.
                if over_limit(engine, &pg, src, cap, &mut lagging, &mut seen).await? {
                    let _ = c.shutdown().await;
                    drop_slot(engine, &pg, src, cap).await?;
                    return Err(Error::Other(format!(
                        "slot {} was dropped past max_slot_wal; a new chain starts",
                        cap.slot
                    )));
                }
                live.write(engine, &src.name, &seg, seen.as_ref(), lagging);
                continue;
            }
            ev = c.recv() => ev.map_err(|e| Error::Postgres(format!("the replication stream: {e}")))?,
            _ = tokio::time::sleep_until(due) => {
                // The schema is read every `segment` (and every WAL watch): a DDL is placed
                // between two readings, so the times a restore must refuse stay narrow.
                check_schema(engine, &repo, &pg, src, &mut seg).await?;
                // Idle (nothing committed, nothing open): now and then a segment with no
                // commit says how far the stream is known whole, and moves the slot on.
                let idle_to = seg.idle.filter(|(lsn, _)| {
                    seg.commits.is_empty()
                        && seg.open.is_empty()
                        && *lsn > seg.start
                        && (*lsn - seg.start >= IDLE_ADVANCE_BYTES
                            || seg.stored_at.elapsed() >= cap.segment * IDLE_ADVANCE_SEGMENTS)
                });
                if let Some(end) = seg.seal(&repo, &pg, idle_to).await? {
                    c.update_applied_lsn(Lsn(end));
                }
                due = tokio::time::Instant::now() + cap.segment;
                continue;
            }
            _ = stop.cancelled() => {
                // What is whole is stored and confirmed before the connection goes.
                if let Some(end) = seg.seal(&repo, &pg, None).await? {
                    c.update_applied_lsn(Lsn(end));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let _ = c.shutdown().await;
                return Ok(());
            }
        };
        let Some(ev) = ev else {
            return Err(Error::Postgres(
                "the server ended the replication stream".into(),
            ));
        };
        match ev {
            // Everything before `wal_end` has been sent: with no transaction open or waiting
            // to be sealed, the stream is whole up to it.
            ReplicationEvent::KeepAlive {
                wal_end,
                server_time_micros,
                ..
            } if seg.open.is_empty() && seg.commits.is_empty() => {
                if let Some(t) = pgoutput::time_of(server_time_micros) {
                    seg.idle = Some((wal_end.0, t - IDLE_MARGIN));
                }
            }
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => {
                seg.begin(capture::begin_message(final_lsn.0, commit_time_micros, xid));
                seg.open_at = pgoutput::time_of(commit_time_micros);
            }
            ReplicationEvent::XLogData { data, .. } => seg.change(&data),
            ReplicationEvent::Commit {
                lsn,
                end_lsn,
                commit_time_micros,
            } => {
                seg.commit(lsn.0, end_lsn.0, commit_time_micros);
                if seg.bytes >= cap.max_segment_size {
                    if let Some(end) = seg.seal(&repo, &pg, None).await? {
                        c.update_applied_lsn(Lsn(end));
                    }
                    due = tokio::time::Instant::now() + cap.segment;
                }
            }
            _ => {}
        }
    }
}

/// The values of the sequences this role can read, after everything sealed so far committed
/// (so at least what they were then). A failure costs only them: logged, none recorded.
async fn sequences(pg: &tokio_postgres::Client) -> Vec<(String, i64)> {
    match pg
        .query(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value
               FROM pg_sequences
              WHERE last_value IS NOT NULL
                AND schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        Err(e) => {
            tracing::warn!("capture: reading sequence values: {}", client::describe(&e));
            vec![]
        }
    }
}

/// Write `live` (atomically; a failure costs only status, and is logged).
fn write_live(engine: &Engine, source: &str, live: &Live) {
    let Ok(dir) = super::state_dir(&engine.config()) else {
        return;
    };
    let path = live_path(&dir, source);
    let res = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(live).unwrap_or_default())?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = res {
        tracing::warn!("capture of {source}: writing {}: {e}", path.display());
    }
}

/// Writes [`Live`] from the stream's state.
struct LiveWriter;

impl LiveWriter {
    fn write(
        &self,
        engine: &Engine,
        source: &str,
        seg: &Builder,
        seen: Option<&SlotWatch>,
        lagging: bool,
    ) {
        let mut l = Live::now(if lagging { "lagging" } else { "streaming" }, None);
        l.pending_since = seg.pending_since();
        if let Some(w) = seen {
            l.lag_bytes = Some(w.unconfirmed);
            l.wal_retained_bytes = Some(w.retained);
            l.wal_status = w.wal_status.clone();
            l.safe_wal_size = w.safe_wal_size;
        }
        write_live(engine, source, &l);
    }
}

/// While the database is idle, a segment with no commit is sealed when the server's WAL moved
/// this far past the last one (WAL other databases write, which the slot would hold back) …
const IDLE_ADVANCE_BYTES: u64 = 16 << 20;
/// … or when this many `segment` periods passed since the last one (so that an idle database's
/// restorable range reaches near the present: at the default `segment` of 1 m, 5 m).
const IDLE_ADVANCE_SEGMENTS: u32 = 5;
/// A keepalive's time, less this, is what an idle segment claims to be whole up to: a commit's
/// time is taken just before its WAL record is written, so one stamped a moment before the
/// keepalive may still follow it in the stream.
const IDLE_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// How often the WAL a slot holds back is looked at while streaming.
const WAL_WATCH: Duration = LIVE_EVERY;

/// Read the schema's hash; when it differs from the last one, record the change (between the
/// two readings) and start a backup, so that the points after it can be restored again: the
/// captured changes carry no DDL, and a point-in-time restore refuses to apply them across a
/// schema change the dump does not hold.
async fn check_schema(
    engine: &Engine,
    repo: &crate::core::repo::Repository,
    pg: &tokio_postgres::Client,
    src: &SourceConfig,
    seg: &mut Builder,
) -> Result<()> {
    let (hash, at) = client::schema_hash(pg).await?;
    if let Some((before, since)) = seg.schema.take() {
        if before != hash {
            capture::record_schema_change(
                repo,
                &src.name,
                &capture::SchemaChange {
                    after: since,
                    by: at,
                    hash_before: before,
                    hash_after: hash.clone(),
                },
            )
            .await?;
            let message = format!(
                "capture of {}: the schema changed between {} and {} (DDL, which captured changes do not carry); a backup starts so that the points after it can be restored",
                src.name,
                since.format("%H:%M:%S"),
                at.format("%H:%M:%S")
            );
            tracing::warn!("{message}");
            engine.emit(Event::Log { job: None, message });
            let cmd = super::Command::Backup {
                source: src.name.clone(),
                kind: None,
                verify: engine.config().verification.after_backup,
            };
            if let Err(e) = engine.submit(cmd) {
                tracing::error!("capture of {}: cannot start a backup: {e}", src.name);
            }
        }
    }
    seg.schema = Some((hash, at));
    Ok(())
}

/// What the server says of the slot.
#[derive(Debug, Clone, Default)]
struct SlotWatch {
    /// WAL held back from `restart_lsn`.
    retained: u64,
    /// WAL written since the confirmed position (not yet stored in a segment, or not about
    /// this database).
    unconfirmed: u64,
    /// `wal_status`: reserved, extended, unreserved (the server's `max_slot_wal_keep_size` is
    /// about to remove WAL the slot needs), lost.
    wal_status: Option<String>,
    /// `safe_wal_size`: bytes that can still be written before the slot is lost (`None`: no
    /// server limit).
    safe_wal_size: Option<i64>,
}

async fn watch_slot(pg: &tokio_postgres::Client, slot: &str) -> Result<Option<SlotWatch>> {
    let row = pg
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
                    wal_status::text, safe_wal_size::bigint
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| Error::Postgres(client::describe(&e)))?;
    Ok(row.map(|r| SlotWatch {
        retained: r.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64,
        unconfirmed: r.get::<_, Option<i64>>(1).unwrap_or(0).max(0) as u64,
        wal_status: r.get(2),
        safe_wal_size: r.get(3),
    }))
}

/// Whether the slot holds back more than `max_slot_wal`, or the server has lost the WAL it
/// needs; past half of it, or when the server's own limit (`max_slot_wal_keep_size`) is about
/// to take WAL the slot needs (`unreserved`), alert once (`lagging` remembers) — well before
/// the limit, as the primary's disk is at stake. `last` keeps what was seen.
async fn over_limit(
    engine: &Engine,
    pg: &tokio_postgres::Client,
    src: &SourceConfig,
    cap: &CaptureConfig,
    lagging: &mut bool,
    last: &mut Option<SlotWatch>,
) -> Result<bool> {
    let Some(w) = watch_slot(pg, &cap.slot).await? else {
        return Ok(false);
    };
    *last = Some(w.clone());
    let held = w.retained;
    if held > cap.max_slot_wal || w.wal_status.as_deref() == Some("lost") {
        return Ok(true);
    }
    if w.wal_status.as_deref() == Some("unreserved") && !*lagging {
        alert(
            engine,
            src,
            AlertKind::CaptureLagging,
            format!(
                "capture of {}: the server is about to remove WAL slot {} still needs (wal_status unreserved, max_slot_wal_keep_size); if it does, the slot is lost and a new chain starts",
                src.name, cap.slot
            ),
        );
        *lagging = true;
        return Ok(false);
    }
    let half = held > cap.max_slot_wal / 2;
    if half && !*lagging {
        alert(
            engine,
            src,
            AlertKind::CaptureLagging,
            format!(
                "capture of {}: slot {} holds back {} of WAL on the server, more than half of max_slot_wal ({}); at the limit it is dropped",
                src.name,
                cap.slot,
                crate::units::human_bytes(held),
                crate::units::human_bytes(cap.max_slot_wal)
            ),
        );
    }
    *lagging = half;
    Ok(false)
}

/// Drop the slot past `max_slot_wal`: an outage of recovery points, never of the database's
/// disk. Alerted; the next round starts a new chain (a new slot).
async fn drop_slot(
    engine: &Engine,
    pg: &tokio_postgres::Client,
    src: &SourceConfig,
    cap: &CaptureConfig,
) -> Result<()> {
    let held = watch_slot(pg, &cap.slot)
        .await?
        .map(|w| w.retained)
        .unwrap_or(0);
    // The stream that used it may take a moment to let go.
    let mut tries = 0;
    loop {
        match pg
            .execute("SELECT pg_drop_replication_slot($1)", &[&cap.slot])
            .await
        {
            Ok(_) => break,
            Err(e)
                if tries < 50
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(Error::Postgres(format!(
                    "dropping replication slot {} past max_slot_wal: {}",
                    cap.slot,
                    client::describe(&e)
                )))
            }
        }
    }
    alert(
        engine,
        src,
        AlertKind::CaptureBroken,
        format!(
            "capture of {}: slot {} held back {} of WAL, past max_slot_wal ({}), and was dropped to spare the server's disk; changes from now on are captured in a new chain, and the ones before it are in the dumps only (take a backup to restore points after this)",
            src.name,
            cap.slot,
            crate::units::human_bytes(held),
            crate::units::human_bytes(cap.max_slot_wal)
        ),
    );
    Ok(())
}

fn alert(engine: &Engine, src: &SourceConfig, kind: AlertKind, message: String) {
    tracing::warn!("{message}");
    engine.emit(Event::Alert(Alert {
        kind,
        source: Some(src.name.clone()),
        backup_id: None,
        job: None,
        message,
        error: None,
        verdict: None,
        at: Utc::now(),
    }));
}

/// The segment being filled.
struct Builder {
    source: String,
    slot: String,
    /// Where the next segment starts: the end of the last one stored.
    start: u64,
    /// Relation messages by table oid, as last sent (every segment starts with them).
    relations: std::collections::BTreeMap<u32, Vec<u8>>,
    /// Messages of whole transactions, and of the one open now.
    done: Vec<Vec<u8>>,
    open: Vec<Vec<u8>>,
    commits: Vec<Commit>,
    bytes: u64,
    /// The server's position and time of the last keepalive while nothing was open or waiting.
    idle: Option<(u64, DateTime<Utc>)>,
    /// When the last segment was stored.
    stored_at: std::time::Instant,
    /// The commit time the open transaction's Begin announced.
    open_at: Option<DateTime<Utc>>,
    /// The schema's hash as last read, and when (the server's clock).
    schema: Option<(String, DateTime<Utc>)>,
}

impl Builder {
    fn new(source: &str, slot: &str, start: u64) -> Self {
        Builder {
            source: source.into(),
            slot: slot.into(),
            start,
            relations: Default::default(),
            done: vec![],
            open: vec![],
            commits: vec![],
            bytes: 0,
            idle: None,
            stored_at: std::time::Instant::now(),
            open_at: None,
            schema: None,
        }
    }

    /// The oldest change received and not yet stored: the first commit waiting to be sealed,
    /// else a transaction being received (its commit time, from its Begin).
    fn pending_since(&self) -> Option<DateTime<Utc>> {
        self.commits.first().map(|c| c.at).or(self.open_at)
    }

    fn begin(&mut self, m: Vec<u8>) {
        self.idle = None;
        self.open.clear();
        self.open.push(m);
    }

    fn change(&mut self, data: &[u8]) {
        if let Ok(pgoutput::Message::Relation(r)) = pgoutput::decode(data) {
            self.relations.insert(r.oid, data.to_vec());
        }
        self.bytes += data.len() as u64;
        self.open.push(data.to_vec());
    }

    fn commit(&mut self, commit_lsn: u64, end_lsn: u64, time: i64) {
        self.open
            .push(capture::commit_message(commit_lsn, end_lsn, time));
        self.done.append(&mut self.open);
        self.open_at = None;
        self.commits.push(Commit {
            end_lsn,
            at: pgoutput::time_of(time).unwrap_or_else(Utc::now),
        });
    }

    /// Store the whole transactions as one segment; returns its end (to confirm), or `None`
    /// when there was nothing to store. With no transaction, `idle_to` (a keepalive's position
    /// and time) makes a segment with no commit, whole up to it.
    async fn seal(
        &mut self,
        repo: &crate::core::repo::Repository,
        pg: &tokio_postgres::Client,
        idle_to: Option<(u64, DateTime<Utc>)>,
    ) -> Result<Option<u64>> {
        let (end, through_at) = match (self.commits.last(), idle_to) {
            (Some(c), _) => (c.end_lsn, None),
            (None, Some((lsn, at))) => (lsn, Some(at)),
            (None, None) => return Ok(None),
        };
        let sequences = sequences(pg).await;
        let mut messages: Vec<Vec<u8>> = self.relations.values().cloned().collect();
        messages.append(&mut self.done);
        let seg = Segment {
            head: SegmentHead {
                format_version: 1,
                source: self.source.clone(),
                slot: self.slot.clone(),
                start_lsn: self.start,
                end_lsn: end,
                commits: std::mem::take(&mut self.commits),
                sequences,
                through_at,
                schema_hash: self.schema.as_ref().map(|s| s.0.clone()),
            },
            messages,
        };
        let key = capture::store(repo, &seg).await?;
        tracing::debug!(
            "capture: stored {key} ({} transactions)",
            seg.head.commits.len()
        );
        self.start = end;
        self.bytes = self.open.iter().map(|m| m.len() as u64).sum();
        self.idle = None;
        self.stored_at = std::time::Instant::now();
        Ok(Some(end))
    }
}

/// The publication the slot streams: made when missing, listing the tables this role owns
/// that have a replica identity (a table without one in a publication of updates and deletes
/// would make the application's UPDATE and DELETE on it fail).
async fn ensure_publication(pg: &tokio_postgres::Client, name: &str) -> Result<()> {
    let exists = pg
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await
        .map_err(|e| Error::Postgres(client::describe(&e)))?
        .is_some();
    if exists {
        return refresh_publication(pg, name).await;
    }
    let tables = eligible_tables(pg).await?;
    if tables.is_empty() {
        return Err(Error::Usage(format!(
            "no table can be captured: none that this role owns has a primary key or replica identity (publication {name} not made)"
        )));
    }
    pg.batch_execute(&format!(
        "CREATE PUBLICATION {} FOR TABLE {}",
        quote_ident(name),
        tables.join(", ")
    ))
    .await
    .map_err(|e| {
        Error::Postgres(format!(
            "creating publication {name}: {}",
            client::describe(&e)
        ))
    })
}

/// The tables this role owns that have a replica identity (quoted `schema.name`).
async fn eligible_tables(pg: &tokio_postgres::Client) -> Result<Vec<String>> {
    let rows = pg
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND c.relpersistence = 'p'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_%'
                AND pg_has_role(c.relowner, 'USAGE')
                AND (c.relreplident IN ('f', 'i')
                     OR (c.relreplident = 'd' AND EXISTS (
                         SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
              ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| Error::Postgres(client::describe(&e)))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Tables made since the publication was: added to it (when this role owns it), so that
/// their changes are captured too — from the next dump on, a point in time covers them.
async fn refresh_publication(pg: &tokio_postgres::Client, name: &str) -> Result<()> {
    let pgerr = |e: tokio_postgres::Error| Error::Postgres(client::describe(&e));
    let ours = pg
        .query_opt(
            "SELECT pg_has_role(pubowner, 'USAGE') FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(pgerr)?
        .map(|r| r.get::<_, bool>(0))
        .unwrap_or(false);
    if !ours {
        return Ok(());
    }
    let published: std::collections::BTreeSet<String> = pg
        .query(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename)
               FROM pg_publication_tables WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(pgerr)?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let missing: Vec<String> = eligible_tables(pg)
        .await?
        .into_iter()
        .filter(|t| !published.contains(t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    pg.batch_execute(&format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        quote_ident(name),
        missing.join(", ")
    ))
    .await
    .map_err(|e| {
        Error::Postgres(format!(
            "adding {} to publication {name}: {}",
            missing.join(", "),
            client::describe(&e)
        ))
    })?;
    tracing::info!(
        "capture: publication {name} now also holds {}",
        missing.join(", ")
    );
    Ok(())
}

/// The slot to stream from, and the position to start at (its confirmed position). Made
/// (and recorded in the repository) when missing; refused when it is not keepsake's.
async fn ensure_slot(
    pg: &tokio_postgres::Client,
    repo: &crate::core::repo::Repository,
    src: &SourceConfig,
    cap: &CaptureConfig,
) -> Result<u64> {
    let pgerr = |e: tokio_postgres::Error| Error::Postgres(client::describe(&e));
    let system: Option<String> = client::system_identifier(pg).await;
    let record = capture::slot_record(repo, &src.name).await?;
    let row = pg
        .query_opt(
            "SELECT plugin::text, slot_type, database::text, active, active_pid,
                    confirmed_flush_lsn::text
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&cap.slot],
        )
        .await
        .map_err(pgerr)?;
    match (row, record) {
        (Some(r), Some(rec)) => {
            let plugin: Option<String> = r.get(0);
            let database: Option<String> = r.get(2);
            let active: bool = r.get(3);
            let pid: Option<i32> = r.get(4);
            let confirmed: Option<String> = r.get(5);
            let theirs = rec.slot != cap.slot
                || database.as_deref() != Some(rec.database.as_str())
                || plugin.as_deref() != Some("pgoutput")
                || (rec.system_identifier.is_some() && rec.system_identifier != system);
            if theirs {
                return Err(refused(
                    &cap.slot,
                    "it is not the one keepsake made for this source",
                ));
            }
            if active {
                return Err(Error::Conflict(format!(
                    "replication slot {} is in use by server process {} (another capture, or the previous one not gone yet)",
                    cap.slot,
                    pid.unwrap_or(0)
                )));
            }
            confirmed
                .as_deref()
                .and_then(pgoutput::parse_lsn)
                .ok_or_else(|| {
                    Error::Postgres(format!("slot {} has no confirmed position", cap.slot))
                })
        }
        (Some(_), None) => Err(refused(&cap.slot, "keepsake has no record of making it")),
        (None, had) => {
            if had.is_some() {
                tracing::warn!(
                    "capture of {}: slot {} is gone (dropped, or lost by the server): a new chain of changes starts now; the changes in between are not captured",
                    src.name,
                    cap.slot
                );
            }
            let r = pg
                .query_one(
                    "SELECT lsn::text, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
                       FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&cap.slot],
                )
                .await
                .map_err(|e| {
                    Error::Postgres(format!(
                        "creating replication slot {}: {}",
                        cap.slot,
                        client::describe(&e)
                    ))
                })?;
            let lsn_text: String = r.get(0);
            // The server's clock: dumps' snapshots are compared with it.
            let created_at = chrono::DateTime::from_timestamp_micros(r.get::<_, i64>(1))
                .unwrap_or_else(Utc::now);
            let lsn = pgoutput::parse_lsn(&lsn_text)
                .ok_or_else(|| Error::Postgres(format!("slot position {lsn_text}")))?;
            capture::write_slot_record(
                repo,
                &src.name,
                &SlotRecord {
                    slot: cap.slot.clone(),
                    database: src.conn.dbname.clone(),
                    system_identifier: system,
                    created_lsn: lsn,
                    created_at,
                },
            )
            .await?;
            Ok(lsn)
        }
    }
}

fn refused(slot: &str, why: &str) -> Error {
    Error::Conflict(format!(
        "replication slot {slot} exists but {why}: keepsake does not take over a slot it did not make; give [sources.capture] slot another name, or drop that slot if it is nobody's"
    ))
}

/// The replication connection's settings, from the source's connection.
fn replication_config(ci: &ConnInfo, cap: &CaptureConfig, start: u64) -> Result<ReplicationConfig> {
    let password = match &ci.password {
        Some(p) => p.expose().to_string(),
        None if ci.use_passfile => client::pgpass_lookup(ci)
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    let loopback =
        ci.host.starts_with('/') || matches!(ci.host.as_str(), "localhost" | "127.0.0.1" | "::1");
    let tls = match ci.sslmode {
        SslMode::Disable => TlsConfig::disabled(),
        SslMode::Allow | SslMode::Prefer if loopback => TlsConfig::disabled(),
        SslMode::Allow | SslMode::Prefer | SslMode::Require => TlsConfig::require(),
        SslMode::VerifyCa => TlsConfig::verify_ca(ci.sslrootcert.clone()),
        SslMode::VerifyFull => TlsConfig::verify_full(ci.sslrootcert.clone()),
    };
    Ok(ReplicationConfig::new(
        ci.host.clone(),
        ci.user.clone(),
        password,
        ci.dbname.clone(),
        cap.slot.clone(),
        cap.publication.as_str(),
    )
    .with_port(ci.port)
    .with_tls(tls)
    .with_start_lsn(Lsn(start))
    .with_ack_lsn(Lsn(start))
    .with_status_interval(Duration::from_secs(1))
    .with_application_name("keepsake capture")
    // Values are kept in text form: render them the same way whatever the server's defaults.
    .with_options("-c datestyle=ISO,YMD -c intervalstyle=postgres -c extra_float_digits=3 -c timezone=UTC -c bytea_output=hex"))
}
