//! Listeners and connections: the Unix socket (always, mode 0660) and TCP (only when
//! `[api] listen` is set; TLS when `tls_cert`/`tls_key` are).
//!
//! Invariants — a slow or hostile client cannot hold the daemon:
//! - the socket and TCP have capacities of their own ([`MAX_SOCKET_CONNECTIONS`],
//!   [`MAX_CONNECTIONS`]), so nothing on the network can lock the operator's socket out; on
//!   TCP one peer address holds at most [`MAX_PER_ADDRESS`]; one more is closed at once;
//! - request headers must arrive within [`HEADER_TIMEOUT`] (also the limit for an idle
//!   keep-alive connection), a body within `body::BODY_TIMEOUT`, a TLS handshake within
//!   [`HEADER_TIMEOUT`];
//! - on stop, listeners close first, open connections get [`STOP_GRACE`] to finish, event
//!   streams end, and the socket file is removed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::auth::Peer;
use super::{router, Api};
use crate::engine::audit::{AuditLog, AuditWriter};
use crate::engine::Engine;
use crate::error::{Error, Result};

pub const MAX_CONNECTIONS: usize = 128;
/// Connections on the Unix socket (the console's and the operator's way in), apart from TCP.
pub const MAX_SOCKET_CONNECTIONS: usize = 64;
/// TCP connections from one peer address: half the TCP capacity, so that one peer cannot take
/// it all (an event stream's connection is noticed gone only at its next keep-alive).
pub const MAX_PER_ADDRESS: usize = 64;

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The running API.
pub struct Server {
    /// The socket path.
    pub socket: PathBuf,
    /// The TCP address bound, when configured.
    pub tcp: Option<SocketAddr>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Stop accepting, let open requests finish (at most [`STOP_GRACE`]), remove the socket.
    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The socket path a configuration uses.
pub fn socket_path(engine: &Engine, state_dir: &Path) -> PathBuf {
    engine
        .config()
        .api
        .socket
        .clone()
        .unwrap_or_else(|| state_dir.join(crate::engine::SOCKET))
}

fn bind_unix(path: &Path) -> Result<UnixListener> {
    let ctx = |e| Error::io(format!("control API socket {}", path.display()), e);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::Usage(format!(
                "another process answers on the control API socket {}: stop it, or set [api] socket",
                path.display()
            )));
        }
        // Left by a daemon that died: nobody listens on it.
        std::fs::remove_file(path).map_err(ctx)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(ctx)?;
    }
    let l = UnixListener::bind(path).map_err(ctx)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o660))
        .map_err(ctx)?;
    Ok(l)
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    let bad = |what: &str, p: &Path, e: String| {
        Error::Usage(format!("[api] {what} {}: {e}", p.display()))
    };
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).map_err(|e| bad("tls_cert", cert, e.to_string()))?,
    ))
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(|e| bad("tls_cert", cert, e.to_string()))?;
    let key_der = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).map_err(|e| bad("tls_key", key, e.to_string()))?,
    ))
    .map_err(|e| bad("tls_key", key, e.to_string()))?
    .ok_or_else(|| bad("tls_key", key, "no private key in the file".into()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Other(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| bad("tls_cert", cert, e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Start serving `engine` on its configured socket (and TCP address).
pub async fn serve(engine: Engine, state_dir: &Path) -> Result<Server> {
    let stop = CancellationToken::new();
    let audit = engine
        .audit_writer()
        .unwrap_or_else(|| AuditWriter::start(AuditLog::new(state_dir)));
    let api = Api::new(engine.clone(), Some(audit), stop.clone());
    let app = router(api);
    let cfg = engine.config();
    let socket = socket_path(&engine, state_dir);
    let unix = bind_unix(&socket)?;
    let sem = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let socket_sem = Arc::new(Semaphore::new(MAX_SOCKET_CONNECTIONS));
    let per_address = super::Places::<std::net::IpAddr>::new(MAX_PER_ADDRESS);
    let mut tasks = vec![];
    let (s, a, st) = (socket_sem, app.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = unix.accept() => r,
                _ = st.cancelled() => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("control API: accept on the socket failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = s.clone().try_acquire_owned() else {
                tracing::warn!(
                    "control API: {MAX_SOCKET_CONNECTIONS} connections open on the socket; one more closed"
                );
                continue;
            };
            let uid = stream.peer_cred().ok().map(|c| c.uid());
            tokio::spawn(connection(
                stream,
                Peer::Unix { uid },
                a.clone(),
                st.clone(),
                (permit, None),
            ));
        }
    }));
    let mut tcp = None;
    if let Some(addr) = cfg.api.listen {
        let tls = match &cfg.api.tls {
            Some((c, k)) => Some(tls_acceptor(c, k)?),
            None => None,
        };
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("control API: listening on {addr}"), e))?;
        tcp = l.local_addr().ok();
        let (s, a, st, pa) = (sem.clone(), app.clone(), stop.clone(), per_address.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = l.accept() => r,
                    _ = st.cancelled() => break,
                };
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("control API: accept on {addr} failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(slot) = pa.take(peer.ip()) else {
                    tracing::warn!(
                        "control API: {MAX_PER_ADDRESS} connections open from {}; one more closed",
                        peer.ip()
                    );
                    continue;
                };
                let Ok(permit) = s.clone().try_acquire_owned() else {
                    tracing::warn!(
                        "control API: {MAX_CONNECTIONS} connections open; one more closed"
                    );
                    continue;
                };
                let permit = (permit, Some(slot));
                let _ = stream.set_nodelay(true);
                let peer_info = Peer::Tcp { addr: peer };
                match &tls {
                    None => {
                        tokio::spawn(connection(stream, peer_info, a.clone(), st.clone(), permit));
                    }
                    Some(acc) => {
                        let (acc, a, st) = (acc.clone(), a.clone(), st.clone());
                        tokio::spawn(async move {
                            match tokio::time::timeout(HEADER_TIMEOUT, acc.accept(stream)).await {
                                Ok(Ok(tls)) => connection(tls, peer_info, a, st, permit).await,
                                Ok(Err(e)) => tracing::debug!(
                                    "control API: TLS handshake with {peer} failed: {e}"
                                ),
                                Err(_) => tracing::debug!(
                                    "control API: TLS handshake with {peer} timed out"
                                ),
                            }
                        });
                    }
                }
            }
        }));
    }
    tracing::info!(
        "control API on {}{}",
        socket.display(),
        tcp.map(|a| format!(
            " and {}{a}",
            if cfg.api.tls.is_some() {
                "https://"
            } else {
                "http://"
            }
        ))
        .unwrap_or_default()
    );
    Ok(Server {
        socket,
        tcp,
        stop,
        tasks,
    })
}

async fn connection<I>(
    io: I,
    peer: Peer,
    app: axum::Router,
    stop: CancellationToken,
    _permit: (OwnedSemaphorePermit, Option<super::Place<std::net::IpAddr>>),
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        // A client that sends its request and shuts its writing side still gets the answer
        // (without this, hyper drops a request whose handler awaits anything once it reads
        // the end of the stream).
        .half_close(true)
        .max_buf_size(128 * 1024);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("control API connection: {e}");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(STOP_GRACE, conn).await;
        }
    }
}
