//! Chunk encryption: every chunk stays a standard age v1 file (the `age` CLI decrypts any
//! chunk cut out of a pack), without one X25519 operation per chunk.
//!
//! `age::Encryptor` draws a new file key, and so runs X25519 twice (ephemeral key and
//! shared secret), for every file; `age::Decryptor` runs it once per file. With ~8,700
//! chunks per GB that was 0.33 CPU-s of every GB restored (a tenth of the restore's client
//! CPU on the benchmark machine) and twice that when backing up. Here one backup draws one
//! file key and wraps it once ([`ChunkSealer`]); every chunk carries that same header and
//! its own random 16-byte payload nonce, so every chunk's payload key
//! (`HKDF-SHA-256(file key, salt = nonce, "payload")`) is still distinct. Reading
//! ([`ChunkOpener`]) unwraps each distinct header once, checks its MAC, and remembers the
//! file key by the header's exact bytes.
//!
//! Why repeating a header is safe although the age spec asks for a new ephemeral secret
//! per file: that rule exists so that one wrap key (ephemeral secret + recipient, with
//! ChaCha20-Poly1305 under a fixed zero nonce) never encrypts two different file keys. A
//! repeated header is the same wrap of the same file key, byte for byte, so nothing new is
//! encrypted under the wrap key; the payloads are separated by their nonces exactly as age
//! separates them. What a reader of the bucket learns is which chunks one backup wrote,
//! which the pack layout already shows.
//!
//! Invariants: a chunk is accepted only when its header MAC verifies under a file key that
//! one of our identities unwrapped from that exact header, and every 64 KiB STREAM segment
//! authenticates with the right counter and final flag; anything else is damage.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use age_core::primitives::hkdf;
use base64::prelude::{Engine, BASE64_STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::core::crypto::{Identities, Recipients};
use crate::error::{Error, Result};

const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
const MAC_LINE: &[u8] = b"\n---";
/// Plaintext bytes per STREAM segment, and the tag after each.
const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
const NONCE: usize = 16;
/// Distinct headers remembered when reading; repositories written before one file key per
/// backup have one header per chunk, which would otherwise grow the cache without bound.
const CACHE_LIMIT: usize = 4096;

type FileKeyBytes = Zeroizing<[u8; FILE_KEY_BYTES]>;

/// Encrypts the chunks of one backup: one file key, wrapped once to every recipient.
pub struct ChunkSealer {
    file_key: FileKeyBytes,
    header: Vec<u8>,
}

impl std::fmt::Debug for ChunkSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkSealer(***)")
    }
}

impl ChunkSealer {
    pub fn new(recipients: &Recipients) -> Result<Self> {
        if recipients.0.is_empty() {
            return Err(Error::Key(
                "no recipients: chunks would be readable by nobody".into(),
            ));
        }
        let file_key: FileKeyBytes = Zeroizing::new(rand::random());
        let fk = FileKey::new(Box::new(*file_key));
        let mut header = VERSION_LINE.to_vec();
        for r in &recipients.0 {
            let (stanzas, _) = age::Recipient::wrap_file_key(r, &fk)
                .map_err(|e| Error::Key(format!("cannot encrypt: {e}")))?;
            for s in stanzas {
                write_stanza(&mut header, &s);
            }
        }
        header.extend_from_slice(b"---");
        let mac = header_mac(&file_key, &header);
        header.push(b' ');
        header.extend_from_slice(BASE64_STANDARD_NO_PAD.encode(mac).as_bytes());
        header.push(b'\n');
        Ok(ChunkSealer { file_key, header })
    }

    /// `plain` as an age file: the shared header, a fresh nonce, the STREAM payload.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let segments = plain.len().div_ceil(SEGMENT).max(1);
        let mut out = Vec::with_capacity(self.header.len() + NONCE + plain.len() + segments * TAG);
        out.extend_from_slice(&self.header);
        let nonce: [u8; NONCE] = rand::random();
        out.extend_from_slice(&nonce);
        let aead = payload_cipher(&self.file_key, &nonce);
        for i in 0..segments {
            let part = &plain[(i * SEGMENT).min(plain.len())..((i + 1) * SEGMENT).min(plain.len())];
            let at = out.len();
            out.extend_from_slice(part);
            let tag = aead
                .seal_in_place_separate_tag(
                    stream_nonce(i, i + 1 == segments),
                    Aad::empty(),
                    &mut out[at..],
                )
                .unwrap_or_else(|_| unreachable!("a 64 KiB segment never overflows ChaCha20"));
            out.extend_from_slice(tag.as_ref());
        }
        out
    }
}

/// Decrypts chunks, unwrapping each distinct header once.
pub struct ChunkOpener {
    ids: Arc<Identities>,
    keys: RwLock<HashMap<Vec<u8>, FileKeyBytes>>,
}

impl std::fmt::Debug for ChunkOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkOpener(***)")
    }
}

impl ChunkOpener {
    pub fn new(ids: Arc<Identities>) -> Self {
        ChunkOpener {
            ids,
            keys: RwLock::new(HashMap::new()),
        }
    }

    /// Decrypt the age file `blob` in place; the plaintext is the returned part of `blob`.
    /// The error says what is wrong (for a damage report).
    pub fn open_in_place<'a>(&self, blob: &'a mut [u8]) -> std::result::Result<&'a [u8], String> {
        let end = header_end(blob)?;
        let file_key = self.file_key(&blob[..end])?;
        let payload = &mut blob[end..];
        if payload.len() < NONCE + TAG {
            return Err("the age payload is truncated".into());
        }
        let (nonce, body) = payload.split_at_mut(NONCE);
        let aead = payload_cipher(&file_key, nonce);
        let segments = body.len().div_ceil(SEGMENT + TAG);
        let mut plain_len = 0;
        for i in 0..segments {
            let start = i * (SEGMENT + TAG);
            let stop = (start + SEGMENT + TAG).min(body.len());
            let last = i + 1 == segments;
            if stop - start < TAG || (last && i > 0 && stop - start == TAG) {
                return Err("the age payload ends with a short or empty segment".into());
            }
            let (data, tag) = body[start..stop].split_at_mut(stop - start - TAG);
            let tag = Tag::try_from(&*tag).map_err(|_| "bad tag length".to_string())?;
            aead.open_in_place_separate_tag(stream_nonce(i, last), Aad::empty(), tag, data, 0..)
                .map_err(|_| "age payload authentication failed".to_string())?;
            let n = data.len();
            // Close the gap the tag left (nothing to move for the first segment).
            if start != plain_len {
                body.copy_within(start..start + n, plain_len);
            }
            plain_len += n;
        }
        let off = end + NONCE;
        Ok(&blob[off..off + plain_len])
    }

    fn file_key(&self, header: &[u8]) -> std::result::Result<FileKeyBytes, String> {
        if let Ok(keys) = self.keys.read() {
            if let Some(k) = keys.get(header) {
                return Ok(k.clone());
            }
        }
        let key = unwrap_header(&self.ids, header)?;
        if let Ok(mut keys) = self.keys.write() {
            if keys.len() >= CACHE_LIMIT {
                keys.clear();
            }
            keys.insert(header.to_vec(), key.clone());
        }
        Ok(key)
    }
}

/// Length of the header: through the line `--- <43 base64 chars>\n`.
fn header_end(blob: &[u8]) -> std::result::Result<usize, String> {
    if !blob.starts_with(VERSION_LINE) {
        return Err("not an age v1 file".into());
    }
    let mark = blob
        .windows(MAC_LINE.len())
        .position(|w| w == MAC_LINE)
        .ok_or("the age header has no MAC line")?
        + MAC_LINE.len();
    let end = mark + 1 + 43 + 1;
    if blob.len() < end || blob[mark] != b' ' || blob[end - 1] != b'\n' {
        return Err("the age header's MAC line is malformed".into());
    }
    Ok(end)
}

/// The file key of `header` (through its MAC line), after checking the MAC.
fn unwrap_header(ids: &Identities, header: &[u8]) -> std::result::Result<FileKeyBytes, String> {
    let mac_at = header.len() - 1 - 43;
    let mut rest = &header[VERSION_LINE.len()..mac_at - 4];
    let mut stanzas: Vec<Stanza> = Vec::new();
    while !rest.is_empty() {
        let (r, s) = age_core::format::read::age_stanza(rest)
            .map_err(|_| "the age header has a malformed recipient stanza".to_string())?;
        stanzas.push(s.into());
        rest = r;
    }
    let fk = ids
        .keys()
        .iter()
        .find_map(|i| age::Identity::unwrap_stanzas(i, &stanzas))
        .ok_or("no identity matches this chunk's recipients")?
        .map_err(|e| format!("cannot unwrap the file key: {e}"))?;
    let key: FileKeyBytes = Zeroizing::new(*fk.expose_secret());
    let mac = BASE64_STANDARD_NO_PAD
        .decode(&header[mac_at..header.len() - 1])
        .map_err(|_| "the age header's MAC is not base64".to_string())?;
    if !crate::core::crypto::constant_eq(&header_mac(&key, &header[..mac_at - 1]), &mac) {
        return Err("the age header's MAC does not verify".into());
    }
    Ok(key)
}

fn write_stanza(out: &mut Vec<u8>, s: &Stanza) {
    out.extend_from_slice(b"->");
    for a in std::iter::once(&s.tag).chain(&s.args) {
        out.push(b' ');
        out.extend_from_slice(a.as_bytes());
    }
    out.push(b'\n');
    let body = BASE64_STANDARD_NO_PAD.encode(&s.body);
    let mut lines = body.as_bytes().chunks(64).peekable();
    let mut last_full = true;
    while let Some(l) = lines.next() {
        out.extend_from_slice(l);
        out.push(b'\n');
        last_full = l.len() == 64 && lines.peek().is_none();
    }
    // The body ends with a line shorter than 64 columns, empty if need be.
    if last_full {
        out.push(b'\n');
    }
}

fn header_mac(file_key: &[u8; FILE_KEY_BYTES], header: &[u8]) -> [u8; 32] {
    let key = Zeroizing::new(hkdf(&[], b"header", file_key));
    let mut h = <Hmac<Sha256> as Mac>::new_from_slice(&key[..])
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    h.update(header);
    h.finalize().into_bytes().into()
}

/// ChaCha20-Poly1305 from ring (already linked for TLS): its assembly runs ~2.5× the
/// speed of the portable crate here, which was 15% of a restore's client CPU.
fn payload_cipher(file_key: &[u8; FILE_KEY_BYTES], nonce: &[u8]) -> LessSafeKey {
    let key = Zeroizing::new(hkdf(nonce, b"payload", file_key));
    LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &key[..])
            .unwrap_or_else(|_| unreachable!("a 32-byte key is what ChaCha20 takes")),
    )
}

/// STREAM nonce: 11-byte big-endian segment counter, then 1 for the final segment.
fn stream_nonce(i: usize, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&(i as u64).to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::str::FromStr;

    use super::*;
    use crate::core::crypto::{generate_identity, parse_recipient};

    fn keys() -> (Recipients, Arc<Identities>) {
        let (text, rcp) = generate_identity();
        let line = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET"))
            .expect("key line");
        let id = age::x25519::Identity::from_str(line).expect("id");
        (
            Recipients(vec![parse_recipient(&rcp).expect("rcp")]),
            Arc::new(Identities::from_identity(id)),
        )
    }

    fn age_decrypt(ids: &Identities, blob: &[u8]) -> Vec<u8> {
        let d = age::Decryptor::new_buffered(blob).expect("header");
        let mut r = d
            .decrypt(ids.keys().iter().map(|i| i as &dyn age::Identity))
            .expect("decrypt");
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        out
    }

    #[test]
    fn sealed_chunks_are_age_files_and_open_at_every_segment_boundary() {
        let (rcps, ids) = keys();
        let sealer = ChunkSealer::new(&rcps).expect("sealer");
        let opener = ChunkOpener::new(ids.clone());
        for n in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            2 * SEGMENT,
            3 * SEGMENT + 7,
        ] {
            let plain: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let blob = sealer.seal(&plain);
            // The age crate reads it as a standard age file.
            assert_eq!(age_decrypt(&ids, &blob), plain, "age crate, {n} bytes");
            let mut b = blob.clone();
            assert_eq!(
                opener.open_in_place(&mut b).expect("open"),
                &plain[..],
                "{n} bytes"
            );
        }
        // Two chunks share the header but not the payload key: same plaintext, different bytes.
        let (a, b) = (sealer.seal(b"same"), sealer.seal(b"same"));
        assert_ne!(a, b);
        assert_eq!(opener.keys.read().expect("lock").len(), 1);
    }

    #[test]
    fn files_from_the_age_crate_open_and_any_damage_is_refused() {
        let (rcps, ids) = keys();
        let opener = ChunkOpener::new(ids.clone());
        let plain: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let enc = age::Encryptor::with_recipients(rcps.0.iter().map(|r| r as &dyn age::Recipient))
            .expect("enc");
        let mut blob = Vec::new();
        let mut w = enc.wrap_output(&mut blob).expect("wrap");
        w.write_all(&plain).expect("write");
        w.finish().expect("finish");
        assert_eq!(
            opener.open_in_place(&mut blob.clone()).expect("open"),
            &plain[..]
        );

        let sealer = ChunkSealer::new(&rcps).expect("sealer");
        let good = sealer.seal(&plain);
        // Every byte flipped, in the header, the nonce, a segment or a tag, is caught.
        for at in (0..good.len()).step_by(997).chain([good.len() - 1]) {
            let mut b = good.clone();
            b[at] ^= 0x20;
            assert!(
                opener.open_in_place(&mut b).is_err(),
                "flip at {at} accepted"
            );
        }
        // Truncated at a segment boundary (the final flag is missing) or anywhere.
        let hdr = header_end(&good).expect("hdr");
        for cut in [hdr + NONCE + SEGMENT + TAG, good.len() - 1, hdr + 3, 10] {
            assert!(
                opener.open_in_place(&mut good[..cut].to_vec()).is_err(),
                "cut {cut}"
            );
        }
        // Another key cannot open it.
        let (_, other) = keys();
        let err = ChunkOpener::new(other)
            .open_in_place(&mut good.clone())
            .expect_err("other key");
        assert!(err.contains("no identity"), "{err}");
        // A header made for us, with a payload from another file key, is refused.
        let other_sealer = ChunkSealer::new(&rcps).expect("sealer");
        let mut mixed = sealer.seal(b"x")[..hdr].to_vec();
        mixed.extend_from_slice(&other_sealer.seal(b"x")[hdr..]);
        assert!(opener.open_in_place(&mut mixed).is_err());
    }
}
