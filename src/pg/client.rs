//! tokio-postgres connections with libpq's sslmode semantics over rustls, and the queries
//! keepsake runs against a source (snapshot, version, tables) and a restore target.
//!
//! Invariant: connection errors name `user@host:port/dbname`, never the password.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Client;

use super::conninfo::{ConnInfo, SslMode};
use crate::error::{Error, Result};
use crate::model::{SourceInfo, TableInfo};

/// Connect; the connection task runs in the background until the client is dropped.
/// The password libpq would take from the password file for `ci` (`PGPASSFILE`, else
/// `~/.pgpass`): the first line whose host, port, database and user match (`*` matches
/// anything; `\:` and `\\` are escapes). Like libpq, a file that others may read is ignored.
pub fn pgpass_lookup(ci: &ConnInfo) -> Option<crate::secret::Secret> {
    let path = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    pgpass_in(&path, ci)
}

/// [`pgpass_lookup`] in the file at `path`.
fn pgpass_in(path: &std::path::Path, ci: &ConnInfo) -> Option<crate::secret::Secret> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let host = if ci.host.starts_with('/') || ci.host.is_empty() {
        "localhost".to_string()
    } else {
        ci.host.clone()
    };
    let want = [
        host,
        ci.port.to_string(),
        ci.dbname.clone(),
        ci.user.clone(),
    ];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() < 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want.iter())
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(crate::secret::Secret::new(fields[4..].join(":")));
        }
    }
    None
}

/// The fields of a password-file line: `:` separates, `\` escapes the next character.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(last)) = (chars.next(), out.last_mut()) {
                    last.push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

pub async fn connect(ci: &ConnInfo) -> Result<Client> {
    let mut cfg = tokio_postgres::Config::new();
    if ci.host.starts_with('/') {
        cfg.host_path(&ci.host);
    } else {
        cfg.host(&ci.host);
    }
    cfg.port(ci.port)
        .user(&ci.user)
        .dbname(&ci.dbname)
        .application_name("keepsake")
        .connect_timeout(std::time::Duration::from_secs(ci.connect_timeout_s));
    if let Some(pw) = &ci.password {
        cfg.password(pw.expose());
    } else if let Some(pw) = ci.use_passfile.then(|| pgpass_lookup(ci)).flatten() {
        // Like libpq: without a password, the password file (PGPASSFILE, else ~/.pgpass).
        cfg.password(pw.expose());
    }
    cfg.ssl_mode(match ci.sslmode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    let tls = tls_connector(ci)?;
    let (client, conn) = cfg.connect(tls).await.map_err(|e| {
        Error::Postgres(format!(
            "cannot connect to {}: {}",
            ci.display(),
            describe(&e)
        ))
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection closed: {e}");
        }
    });
    Ok(client)
}

/// A database error's message (without the connection string, which tokio-postgres never adds).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}

fn tls_connector(ci: &ConnInfo) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS setup: {e}")))?;
    let mode = match (ci.sslmode, &ci.sslrootcert) {
        // libpq: with a root certificate, `require` verifies the chain like verify-ca.
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (m, _) => m,
    };
    let config = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match &ci.sslrootcert {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        Error::Postgres(format!("cannot read sslrootcert {}: {e}", path.display()))
                    })?;
                    for cert in rustls_pemfile::certs(&mut &pem[..]) {
                        let cert = cert.map_err(|e| {
                            Error::Postgres(format!("sslrootcert {}: {e}", path.display()))
                        })?;
                        roots.add(cert).map_err(|e| {
                            Error::Postgres(format!("sslrootcert {}: {e}", path.display()))
                        })?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| Error::Other(format!("TLS setup: {e}")))?;
            let check_name = mode == SslMode::VerifyFull;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    inner: Some(webpki),
                    check_name,
                    provider,
                }))
                .with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                inner: None,
                check_name: false,
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// libpq's verification levels: none (require/prefer), chain only (verify-ca), chain and
/// host name (verify-full). Handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn q(e: tokio_postgres::Error, what: &str) -> Error {
    Error::Postgres(format!("{what}: {}", describe(&e)))
}

/// The backend process id of `client`'s session, by the simple protocol (a named prepared
/// statement would not survive a transaction-mode pooler between its parse and its execute).
async fn backend_pid(client: &Client) -> std::result::Result<String, tokio_postgres::Error> {
    let rows = client.simple_query("SELECT pg_backend_pid()").await?;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default())
}

/// Whether `first` (a session on `ci`) goes through a pooler that hands server connections out
/// per transaction (PgBouncer `pool_mode = transaction` or `statement`, Supabase's port 6543).
/// pg_dump cannot work there: its snapshot, its session settings and keepsake's exported
/// snapshot live in one server session. The probe: a second session holds a transaction open;
/// the first session's next statement then runs in another server process (or waits for the
/// held one) exactly when server connections are shared per transaction. Session poolers and
/// direct connections keep one process per session.
pub async fn transaction_pooled(ci: &ConnInfo, first: &Client) -> Result<bool> {
    let probe = |e| q(e, "checking for a connection pooler");
    let before = backend_pid(first).await.map_err(probe)?;
    let second = connect(ci).await?;
    second.simple_query("BEGIN").await.map_err(probe)?;
    let held = backend_pid(&second).await.map_err(probe)?;
    let after = tokio::time::timeout(std::time::Duration::from_secs(3), backend_pid(first)).await;
    let _ = second.simple_query("ROLLBACK").await;
    drop(second);
    Ok(match after {
        // Waited for the one server connection the other session holds.
        Err(_) => true,
        Ok(after) => {
            let after = after.map_err(probe)?;
            held == before || after != before
        }
    })
}

/// The refusal of a source behind a transaction-mode pooler, with the port to use instead.
pub fn pooled_refusal(ci: &ConnInfo, platform: Option<&crate::platform::Profile>) -> Error {
    let supabase = ci.port == 6543 || ci.host.contains("pooler.supabase.com");
    let platform = platform.or(supabase.then_some(&crate::platform::SUPABASE));
    let hint = match platform.and_then(|p| p.pooler_hint) {
        Some(h) => format!(" ({h})"),
        None => " (PgBouncer: a database entry with pool_mode = session, or the server's own port)"
            .to_string(),
    };
    Error::Usage(format!(
        "{} is a transaction-mode connection pooler: pg_dump needs one server session for the whole dump and cannot run through it; point the source at a session-mode pooler or the database server directly{hint}; nothing was backed up",
        ci.display()
    ))
}

/// Open a repeatable-read, read-only transaction and export its snapshot for pg_dump.
/// The snapshot stays valid while `client` keeps the transaction open.
pub async fn export_snapshot(client: &Client) -> Result<String> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(|e| q(e, "starting the snapshot transaction"))?;
    let row = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| q(e, "exporting a snapshot"))?;
    Ok(row.get(0))
}

/// The snapshot of the open snapshot transaction (`xmin:xmax:xip,…`), and the server's clock
/// at the transaction's start and now: the snapshot was taken between the two.
pub async fn current_snapshot(
    client: &Client,
) -> Result<(
    String,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
)> {
    // txid_current_snapshot: every version has it (pg_current_snapshot only from 13), and
    // a failed query would abort the dump's transaction.
    let row = client
        .query_one(
            "SELECT txid_current_snapshot()::text,
                    (extract(epoch FROM now()) * 1000000)::bigint,
                    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
            &[],
        )
        .await
        .map_err(|e| q(e, "reading the snapshot"))?;
    let time = |i: usize| {
        chrono::DateTime::from_timestamp_micros(row.get::<_, i64>(i)).unwrap_or_default()
    };
    Ok((row.get(0), time(1), time(2)))
}

/// A hash of what decides the shape of the rows: every table's columns (name, position, type)
/// and constraints (kind, name, columns), outside the system schemas; and the server's time.
/// A point-in-time restore compares it across a chain of captured changes: pgoutput carries no
/// DDL. Plain catalog reads only (no function that can fail on an object dropped meanwhile: a
/// failed query would abort a dump's transaction).
pub async fn schema_hash(client: &Client) -> Result<(String, chrono::DateTime<chrono::Utc>)> {
    let row = client
        .query_one(
            "SELECT coalesce(md5(string_agg(x, E'\\n' ORDER BY x)), ''),
                    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
               FROM (
                 SELECT n.nspname || '.' || c.relname || ' ' || a.attnum || ' ' || a.attname
                        || ' ' || format_type(a.atttypid, a.atttypmod) AS x
                   FROM pg_attribute a
                   JOIN pg_class c ON c.oid = a.attrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                 UNION ALL
                 SELECT 'constraint ' || n.nspname || '.' || c.relname || ' ' || co.conname || ' '
                        || co.contype::text || ' ' || coalesce(co.conkey::text, '')
                   FROM pg_constraint co
                   JOIN pg_class c ON c.oid = co.conrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
               ) s",
            &[],
        )
        .await
        .map_err(|e| q(e, "reading the schema's hash"))?;
    let at = chrono::DateTime::from_timestamp_micros(row.get::<_, i64>(1)).unwrap_or_default();
    Ok((row.get(0), at))
}

/// [`schema_hash`] inside a transaction that must go on (a dump's): under a savepoint, so that
/// a failure costs only the hash (logged), never the transaction.
pub async fn schema_hash_in_transaction(client: &Client) -> Option<String> {
    client
        .batch_execute("SAVEPOINT keepsake_schema_hash")
        .await
        .ok()?;
    match schema_hash(client).await {
        Ok((h, _)) => {
            let _ = client
                .batch_execute("RELEASE SAVEPOINT keepsake_schema_hash")
                .await;
            Some(h)
        }
        Err(e) => {
            tracing::warn!("could not read the schema's hash: {e}");
            let _ = client
                .batch_execute("ROLLBACK TO SAVEPOINT keepsake_schema_hash")
                .await;
            None
        }
    }
}

/// Facts about the source database, read inside the snapshot.
pub async fn source_info(client: &Client, name: &str, ci: &ConnInfo) -> Result<SourceInfo> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,
                    current_database(), pg_encoding_to_char(d.encoding), d.datcollate::text, d.datctype::text,
                    pg_database_size(d.oid)
             FROM pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(|e| q(e, "reading the server version"))?;
    // pg_control_system() may be restricted to superusers/pg_monitor; it is optional.
    let sysid = match client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
    {
        Ok(r) => Some(r.get::<_, String>(0)),
        Err(_) => {
            // A failed statement aborts the transaction; callers call this before exporting
            // the snapshot, so this is harmless.
            None
        }
    };
    let roles = role_names(client).await?;
    Ok(SourceInfo {
        platform: crate::platform::detect(&roles).map(|p| p.name.to_string()),
        name: name.to_string(),
        location: format!("{}:{}/{}", ci.host, ci.port, ci.dbname),
        database: row.get(2),
        server_version: row.get(0),
        server_version_num: row.get(1),
        system_identifier: sysid,
        encoding: row.get(3),
        lc_collate: row.get(4),
        lc_ctype: row.get(5),
        database_size: row.get(6),
    })
}

/// Every role of the connected server (a hosted platform is recognised by its roles).
pub async fn role_names(client: &Client) -> Result<Vec<String>> {
    Ok(client
        .query("SELECT rolname::text FROM pg_roles ORDER BY 1", &[])
        .await
        .map_err(|e| q(e, "listing roles"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The hosted platform of the connected server (its marker roles), and which of `schemas` the
/// connected database has.
pub async fn platform_facts(
    client: &Client,
    schemas: &[&str],
) -> Result<(Option<&'static crate::platform::Profile>, Vec<String>)> {
    let roles = role_names(client).await?;
    let present: Vec<String> = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1::text[]) ORDER BY 1",
            &[&schemas],
        )
        .await
        .map_err(|e| q(e, "listing schemas"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((crate::platform::detect(&roles), present))
}

/// Make this session give up waiting for a lock after `timeout` (`[backup] lock_wait_timeout`),
/// so that a table locked by another session fails the backup instead of stalling it.
pub async fn set_lock_timeout(client: &Client, timeout: std::time::Duration) -> Result<()> {
    client
        .batch_execute(&format!(
            "SET lock_timeout = '{}ms'",
            timeout.as_millis().clamp(1, i32::MAX as u128)
        ))
        .await
        .map_err(|e| q(e, "setting lock_timeout"))
}

/// When `e` is a lock timeout, say which locks stood in the way (from `pg_locks` on a fresh
/// session) and what to do; any other error is returned as it is.
pub async fn explain_lock_timeout(e: Error, ci: &ConnInfo, timeout: std::time::Duration) -> Error {
    let Error::Postgres(msg) = &e else { return e };
    if !msg.contains("lock timeout") {
        return e;
    }
    let holders = match connect(ci).await {
        Ok(c) => lock_holders(&c).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let who = if holders.is_empty() {
        "a session held a conflicting lock".to_string()
    } else {
        holders.join("; ")
    };
    Error::Postgres(format!(
        "backup waited {}s for a table lock and gave up ([backup] lock_wait_timeout): {who}; nothing was committed. End that session or transaction, or raise lock_wait_timeout.\n  {msg}",
        timeout.as_secs()
    ))
}

/// Exclusive table locks other sessions hold in the connected database, described for people:
/// `table public.guests locked ACCESS EXCLUSIVE by pid 4242 (user app, idle in transaction for 812s)`.
pub async fn lock_holders(client: &Client) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT l.relation::regclass::text, l.mode, a.pid, coalesce(a.usename::text, ''),
                    coalesce(a.state, ''),
                    coalesce(extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::bigint, 0)
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.granted AND l.locktype = 'relation'
               AND l.mode IN ('AccessExclusiveLock', 'ExclusiveLock')
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.pid <> pg_backend_pid()
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| q(e, "listing locks"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let mode: String = r.get(1);
            format!(
                "table {} locked {} by pid {} (user {}, {} for {}s)",
                r.get::<_, String>(0),
                mode.trim_end_matches("Lock"),
                r.get::<_, i32>(2),
                r.get::<_, String>(3),
                r.get::<_, String>(4),
                r.get::<_, i64>(5)
            )
        })
        .collect())
}

/// The user tables (with sizes) and the number of large objects.
pub async fn tables(client: &Client) -> Result<(Vec<TableInfo>, i64)> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind::text,
                    pg_table_size(c.oid), GREATEST(c.reltuples, 0)::bigint
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r','p','m')
               AND n.nspname NOT IN ('pg_catalog','information_schema')
               AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| q(e, "listing tables"))?;
    let tables = rows
        .iter()
        .map(|r| TableInfo {
            schema: r.get(0),
            name: r.get(1),
            kind: r.get(2),
            size_bytes: r.get(3),
            estimated_rows: r.get(4),
        })
        .collect();
    let lo: i64 = client
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await
        .map_err(|e| q(e, "counting large objects"))?
        .get(0);
    Ok((tables, lo))
}

/// Number of user relations (tables, views, sequences, …) in the connected database.
///
/// Relations in `skip_schemas` (a hosted provider's own, which every new project has) do not count.
pub async fn user_relation_count(client: &Client, skip_schemas: &[&str]) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r','p','v','m','S','f')
               AND n.nspname NOT IN ('pg_catalog','information_schema')
               AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
               AND n.nspname <> ALL($1::text[])",
            &[&skip_schemas],
        )
        .await
        .map_err(|e| q(e, "inspecting the target database"))?
        .get(0))
}

/// The server's system identifier, if readable.
/// Whether database `name` exists on the server `client` is connected to (the one probe a
/// restore, a drill and its cleanup ask).
pub async fn database_exists(
    client: &Client,
    name: &str,
) -> std::result::Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some())
}

pub async fn system_identifier(client: &Client) -> Option<String> {
    client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get(0))
}

/// Server major version (e.g. 15), from `server_version_num`.
pub async fn server_major(client: &Client) -> Result<u32> {
    let n: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| q(e, "reading the server version"))?
        .get(0);
    Ok((n / 10000) as u32)
}

/// Quote an identifier for SQL.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote a literal for SQL.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Per table (and materialized view): `schema.name`, row count and an order-independent
/// digest of its rows' text form. Used by the demo to compare a restore with its source.
pub async fn table_fingerprints(client: &Client) -> Result<Vec<(String, i64, String)>> {
    let rels = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r','m') AND n.nspname NOT IN ('pg_catalog','information_schema')
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| q(e, "listing tables"))?;
    let mut out = Vec::new();
    for r in rels {
        let (s, t): (String, String) = (r.get(0), r.get(1));
        let sql = format!(
            "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') FROM (SELECT md5(x::text) h FROM ONLY {}.{} x) y",
            quote_ident(&s),
            quote_ident(&t)
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| q(e, &format!("reading {s}.{t}")))?;
        out.push((format!("{s}.{t}"), row.get(0), row.get(1)));
    }
    let lo: i64 = client
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await
        .map_err(|e| q(e, "counting large objects"))?
        .get(0);
    out.push(("(large objects)".into(), lo, String::new()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_is_read_like_libpq_reads_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\nother:5432:*:ops:nope\ndb-2:5433:*:ops:s3\\:cr\\\\et:x\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ci = ConnInfo::parse("postgres://ops@db-2:5433/wed").unwrap();
        assert_eq!(pgpass_in(&f, &ci).unwrap().expose(), "s3:cr\\et:x");
        let other = ConnInfo::parse("postgres://app@db-9/wed").unwrap();
        assert_eq!(pgpass_in(&f, &other).unwrap().expose(), "fallback");
        // Readable by others: ignored, as libpq does.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(pgpass_in(&f, &ci).is_none());
    }
}
