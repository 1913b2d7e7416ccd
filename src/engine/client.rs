//! The caller's side of the control API: one HTTP/1.1 request per connection over the Unix
//! socket or TCP (plain; TLS callers use their own client). The remote [`Control`] is built on
//! it (`remote.rs`), and tests and benchmarks speak to the daemon with it.
//!
//! [`Control`]: super::control::Control

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: Endpoint,
    /// Bearer token (TCP).
    pub token: Option<String>,
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("control API: {e}"))
}

impl Client {
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Client {
            endpoint: Endpoint::Unix(path.into()),
            token: None,
        }
    }

    pub fn tcp(addr: std::net::SocketAddr, token: Option<String>) -> Self {
        Client {
            endpoint: Endpoint::Tcp(addr),
            token,
        }
    }

    async fn send_on<I>(
        &self,
        io: I,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender.send_request(req).await.map_err(err)
    }

    /// Send a request; the answer's body is left to the caller (event streams).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<hyper::Response<Incoming>> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "keepsake");
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = b.body(Full::new(payload)).map_err(err)?;
        match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p).await.map_err(|e| {
                    Error::Other(format!("cannot reach the daemon at {}: {e}", p.display()))
                })?;
                self.send_on(s, req).await
            }
            Endpoint::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a)
                    .await
                    .map_err(|e| Error::Other(format!("cannot reach the daemon at {a}: {e}")))?;
                self.send_on(s, req).await
            }
        }
    }

    /// Send a request and read the whole answer.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer> {
        let r = self.send(method, path, body).await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.map_err(err)?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.request("GET", path, None).await
    }
}
