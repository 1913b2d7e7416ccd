//! Keys and encryption: age X25519 identities and recipients, the repository master key,
//! and the sealed envelope of metadata objects.
//!
//! Invariants:
//! - Nothing is written unencrypted: every chunk and every metadata object is an age file
//!   encrypted to all configured recipients (so an offline break-glass key can restore).
//! - age does not authenticate the sender (anyone with a public recipient can encrypt), so
//!   metadata (manifests, indexes) additionally carries a keyed BLAKE3 MAC under a key derived
//!   from the repository master key, bound to the object's name. Chunks are authenticated by
//!   their id, a keyed hash of their plaintext under another derived key.
//! - Secrets never appear in `Debug` output.

use std::fmt;

use crate::error::{Error, Result};
pub use crate::keys::{generate_identity, parse_recipient, Identities, Recipients};

/// The repository master key, from which the chunk-id key and the metadata MAC key derive.
#[derive(Clone)]
pub struct MasterKey {
    chunk_key: [u8; 32],
    mac_key: [u8; 32],
    /// Names the key without revealing it (pinned in the configuration and state directory).
    fingerprint: [u8; 16],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

const MAGIC: &[u8; 8] = b"KSMETA1\n";
const MAC_LEN: usize = 32;

impl MasterKey {
    pub fn from_bytes(master: &[u8; 32]) -> Self {
        MasterKey {
            chunk_key: blake3::derive_key("keepsake 2026 repository v1 chunk id", master),
            mac_key: blake3::derive_key("keepsake 2026 repository v1 metadata mac", master),
            fingerprint: {
                let d = blake3::derive_key("keepsake 2026 repository v1 key fingerprint", master);
                let mut f = [0u8; 16];
                f.copy_from_slice(&d[..16]);
                f
            },
        }
    }

    /// The key's fingerprint, `ks1:` and 32 hex digits: a one-way name for the master key.
    pub fn fingerprint(&self) -> String {
        format!("ks1:{}", hex::encode(self.fingerprint))
    }

    /// The id of a chunk: keyed BLAKE3 of its plaintext.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.chunk_key, data).as_bytes())
    }

    /// A keyed hasher for a whole stream (archive digest).
    pub fn stream_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.chunk_key)
    }

    fn mac(&self, name: &str, body: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.mac_key);
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(body);
        *h.finalize().as_bytes()
    }

    /// Seal metadata: `KSMETA1\n` ‖ age(zstd(plain)) ‖ MAC(name, age part).
    pub fn seal(&self, recipients: &Recipients, name: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let z = zstd::bulk::compress(plain, 3)
            .map_err(|e| Error::Other(format!("compressing {name}: {e}")))?;
        let age = recipients.encrypt(&z)?;
        let mut out = Vec::with_capacity(MAGIC.len() + age.len() + MAC_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&age);
        let mac = self.mac(name, &age);
        out.extend_from_slice(&mac);
        Ok(out)
    }

    /// Open sealed metadata; a MAC mismatch is damage or forgery (exit 3).
    pub fn open(&self, ids: &Identities, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < MAGIC.len() + MAC_LEN || &sealed[..MAGIC.len()] != MAGIC {
            return Err(Error::Damage(format!(
                "{name}: not a keepsake metadata object (bad header)"
            )));
        }
        let age = &sealed[MAGIC.len()..sealed.len() - MAC_LEN];
        let mac = &sealed[sealed.len() - MAC_LEN..];
        let expect = self.mac(name, age);
        if !constant_eq(&expect, mac) {
            return Err(Error::Damage(format!(
                "{name}: authentication failed: the object was altered or forged by someone without the repository key"
            )));
        }
        let z = ids
            .decrypt(age)
            .map_err(|e| Error::Damage(format!("{name}: cannot decrypt: {e}")))?;
        zstd::stream::decode_all(&z[..]).map_err(|e| Error::Damage(format!("{name}: corrupt: {e}")))
    }
}

pub(crate) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A chunk id (32 bytes), shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &hex::encode(&self.0[..8]))
    }
}

impl serde::Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut b = [0u8; 32];
        hex::decode_to_slice(&s, &mut b).map_err(serde::de::Error::custom)?;
        Ok(ChunkId(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_forgery_detected() {
        let (text, rcp) = generate_identity();
        let line = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET"))
            .expect("key line");
        let ids = Identities::from_identity(
            <age::x25519::Identity as std::str::FromStr>::from_str(line).expect("id"),
        );
        let rcps = Recipients(vec![parse_recipient(&rcp).expect("rcp")]);
        let mk = MasterKey::from_bytes(&[7u8; 32]);
        let sealed = mk.seal(&rcps, "snapshots/a", b"hello").expect("seal");
        assert_eq!(
            mk.open(&ids, "snapshots/a", &sealed).expect("open"),
            b"hello"
        );
        // Bound to its name.
        assert!(mk.open(&ids, "snapshots/b", &sealed).is_err());
        // A forger with only the public recipient re-encrypts: MAC fails.
        let mut forged = MAGIC.to_vec();
        let z = zstd::bulk::compress(b"evil", 3).expect("z");
        forged.extend(rcps.encrypt(&z).expect("enc"));
        forged.extend([0u8; 32]);
        assert!(matches!(
            mk.open(&ids, "snapshots/a", &forged),
            Err(Error::Damage(_))
        ));
        // Another master key cannot open it either.
        let other = MasterKey::from_bytes(&[8u8; 32]);
        assert!(other.open(&ids, "snapshots/a", &sealed).is_err());
    }
}
