//! Secret values (passwords, tokens, keys): held in [`Secret`], whose `Debug` never shows the
//! value, and resolved from `env:NAME`, `file:/path` or an inline value.
//!
//! A leaf module: configuration, connection strings and storage settings all hold secrets, and
//! none of them should have to import another to do so.

use std::fmt;

/// A secret string. Never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret value; call only where it is handed to its consumer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Resolve `env:NAME`, `file:/path` or an inline value.
pub fn resolve_secret(value: &str) -> std::result::Result<Secret, String> {
    if let Some(name) = value.strip_prefix("env:") {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            Ok(_) => Err(format!("environment variable {name} is empty")),
            Err(_) => Err(format!(
                "environment variable {name} is not set (referenced as env:{name})"
            )),
        }
    } else if let Some(path) = value.strip_prefix("file:") {
        match std::fs::read_to_string(path) {
            Ok(v) => {
                let v = v.trim_end_matches(['\n', '\r']).to_string();
                if v.is_empty() {
                    Err(format!("secret file {path} is empty"))
                } else {
                    Ok(Secret(v))
                }
            }
            Err(e) => Err(format!("cannot read secret file {path}: {e}")),
        }
    } else {
        Ok(Secret(value.to_string()))
    }
}

/// A new control API bearer token (`ks_` and 43 characters of base64url randomness) and the
/// `sha256:…` form of its hash, the only thing the configuration keeps.
pub fn new_token() -> (String, String) {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "ks_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = format!("sha256:{}", hex::encode(token_hash(&token)));
    (token, hash)
}

/// The SHA-256 of a token (tokens are 256 random bits: no slow hash needed).
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}
