//! Who is calling (docs/api.md, "Who may call"). On the Unix socket the caller is the peer's
//! uid (the kernel's SO_PEERCRED, not anything the client says): the daemon's own user and root
//! are admins, `[api.users]` maps other user names to a role, anyone else is refused. On TCP
//! only bearer tokens count; only their SHA-256 is configured, compared in constant time.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::ApiSettings;
use crate::engine::audit::user_name;
use crate::model::Role;
use crate::secret::token_hash;

/// How a connection reached the daemon (attached to every request by the server).
#[derive(Debug, Clone)]
pub enum Peer {
    /// A Unix socket peer; `None` when the kernel did not say (refused).
    Unix { uid: Option<u32> },
    /// A TCP peer (address for the log only).
    Tcp { addr: std::net::SocketAddr },
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User name (socket) or token name (TCP).
    pub name: String,
    pub role: Role,
    /// `socket` or `tcp`.
    pub via: &'static str,
}

impl Caller {
    /// The caller as the engine records who started a job.
    pub fn actor(&self) -> crate::engine::audit::Actor {
        crate::engine::audit::Actor::api(&self.name, self.role.as_str(), self.via)
    }
}

/// Resolve a request's caller, or refuse it (401 on TCP, 403 on the socket).
pub fn caller(peer: &Peer, headers: &HeaderMap, api: &ApiSettings) -> Result<Caller, ApiError> {
    match peer {
        Peer::Unix { uid: None } => {
            Err(ApiError::forbidden("the socket peer's identity is unknown"))
        }
        Peer::Unix { uid: Some(uid) } => {
            let name = user_name(*uid);
            let own = nix::unistd::geteuid().as_raw();
            if *uid == 0 || *uid == own {
                return Ok(Caller {
                    name,
                    role: Role::Admin,
                    via: "socket",
                });
            }
            match api.users.get(&name) {
                Some(role) => Ok(Caller {
                    name,
                    role: *role,
                    via: "socket",
                }),
                None => Err(ApiError::forbidden(format!(
                    "user {name} has no role: an admin can add it to [api.users]"
                ))),
            }
        }
        Peer::Tcp { .. } => {
            let token = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "send Authorization: Bearer TOKEN (`keepsake token new` makes one)",
                    )
                })?;
            let hash = token_hash(token);
            // Compare with every token, without stopping early.
            let mut found = None;
            for t in &api.tokens {
                if bool::from(t.hash.ct_eq(&hash)) {
                    found = Some(t);
                }
            }
            found
                .map(|t| Caller {
                    name: t.name.clone(),
                    role: t.role,
                    via: "tcp",
                })
                .ok_or_else(|| ApiError::unauthorized("unknown token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiToken;
    use crate::secret::new_token;

    #[test]
    fn tokens_match_by_hash_only() {
        let (token, hash) = new_token();
        let (other, _) = new_token();
        assert_ne!(token, other);
        let api = ApiSettings {
            tokens: vec![ApiToken {
                name: "grafana".into(),
                role: Role::Viewer,
                hash: hex::decode(hash.strip_prefix("sha256:").unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            }],
            ..Default::default()
        };
        let peer = Peer::Tcp {
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let mut h = HeaderMap::new();
        assert_eq!(caller(&peer, &h, &api).unwrap_err().status, 401);
        h.insert("authorization", format!("Bearer {other}").parse().unwrap());
        assert_eq!(caller(&peer, &h, &api).unwrap_err().status, 401);
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        let c = caller(&peer, &h, &api).unwrap();
        assert_eq!((c.name.as_str(), c.role), ("grafana", Role::Viewer));
    }
}
