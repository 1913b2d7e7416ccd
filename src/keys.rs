//! age X25519 keys as values: recipients (public, every object is encrypted to all of them),
//! identities (secret, loaded from an identity file) and new identities for `keygen`.
//!
//! A leaf module: the configuration validates keys with it, the repository encrypts with them.
//! Invariant: secrets never appear in `Debug` output.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::x25519;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Parse one `age1…` recipient; the error says what is expected.
///
/// A secret identity pasted where a recipient belongs is never echoed back: the message names
/// the mistake without the value (errors reach terminals, logs and webhooks).
pub fn parse_recipient(s: &str) -> std::result::Result<x25519::Recipient, String> {
    if s.to_ascii_uppercase().contains("AGE-SECRET-KEY-") {
        return Err("this is a secret identity (AGE-SECRET-KEY-1…), not a recipient: put its public key (age1…, printed by `keepsake keygen` or `age-keygen -y`) here, and treat the identity as exposed — it was written into the configuration".into());
    }
    x25519::Recipient::from_str(s).map_err(|e| {
        format!("\"{s}\" is not an age X25519 recipient ({e}): expected a public key starting with age1, as printed by `keepsake keygen` or `age-keygen`")
    })
}

/// The recipients every object is encrypted to.
#[derive(Clone)]
pub struct Recipients(pub Vec<x25519::Recipient>);

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.to_string()))
            .finish()
    }
}

impl Recipients {
    /// Encrypt `plain` into a standard age file.
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let enc = age::Encryptor::with_recipients(self.0.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::Key(format!("cannot encrypt: {e}")))?;
        let mut out = Vec::with_capacity(plain.len() + 256 + plain.len() / 4096);
        let mut w = enc
            .wrap_output(&mut out)
            .map_err(|e| Error::Other(format!("encryption failed: {e}")))?;
        w.write_all(plain)
            .and_then(|_| w.finish().map(|_| ()))
            .map_err(|e| Error::Other(format!("encryption failed: {e}")))?;
        Ok(out)
    }
}

/// The identities (secret keys) able to decrypt. Loaded from an identity file.
pub struct Identities(Vec<x25519::Identity>);

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} key(s), secret)", self.0.len())
    }
}

impl Identities {
    /// Read an identity file as written by `keepsake keygen` or `age-keygen`:
    /// `#` comments, blank lines and `AGE-SECRET-KEY-1…` lines.
    pub fn load(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::Key(format!("cannot read identity file {}: {e}", path.display()))
        })?);
        let mut ids = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match x25519::Identity::from_str(line) {
                Ok(id) => ids.push(id),
                Err(_) => {
                    return Err(Error::Key(format!(
                        "identity file {} line {}: not an age X25519 identity (expected AGE-SECRET-KEY-1…, as written by `keepsake keygen` or `age-keygen`)",
                        path.display(),
                        n + 1
                    )))
                }
            }
        }
        if ids.is_empty() {
            return Err(Error::Key(format!(
                "identity file {} holds no AGE-SECRET-KEY-1… line",
                path.display()
            )));
        }
        Ok(Identities(ids))
    }

    /// Whether any of these identities can decrypt what is encrypted to `recipients`.
    pub fn matches_any(&self, recipients: &Recipients) -> bool {
        self.0.iter().any(|i| {
            let public = i.to_public().to_string();
            recipients.0.iter().any(|r| r.to_string() == public)
        })
    }

    pub fn keys(&self) -> &[x25519::Identity] {
        &self.0
    }

    pub fn from_identity(id: x25519::Identity) -> Self {
        Identities(vec![id])
    }

    /// Decrypt an age file; `None` when no identity matches.
    pub fn decrypt(&self, cipher: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let d = age::Decryptor::new_buffered(cipher).map_err(|e| e.to_string())?;
        let mut r = d
            .decrypt(self.0.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(cipher.len());
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// A new identity in the text form `age-keygen` writes; returns (file text, recipient).
pub fn generate_identity() -> (Zeroizing<String>, String) {
    use age::secrecy::ExposeSecret;
    let id = x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = Zeroizing::new(format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
        id.to_string().expose_secret()
    ));
    (text, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13, defect 5): a secret identity in `recipients` is not echoed.
    #[test]
    fn a_secret_identity_given_as_recipient_is_refused_without_echoing_it() {
        let (text, _) = generate_identity();
        let secret = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .expect("identity line")
            .to_string();
        for given in [
            secret.clone(),
            secret.to_lowercase(),
            format!("  {secret} "),
        ] {
            let e = parse_recipient(&given).expect_err("refused");
            assert!(!e.contains(&secret[15..]), "secret echoed: {e}");
            assert!(
                !e.to_uppercase().contains(&secret[15..]),
                "secret echoed: {e}"
            );
            assert!(e.contains("secret identity"), "{e}");
        }
        // An ordinary mistake still names what was given.
        assert!(parse_recipient("age1nope")
            .expect_err("bad")
            .contains("age1nope"));
    }
}
