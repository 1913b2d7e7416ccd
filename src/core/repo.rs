//! The repository: opening and creating it, keys, and reading/writing its metadata objects.
//!
//! Invariant: a [`Repository`] value has a verified format version and an unlocked master
//! key; every manifest or index it hands out has passed MAC authentication. Manifests are
//! written only by [`Repository::commit_manifest`], after the packs and the index they refer to
//! are confirmed stored.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;

use crate::core::chunk_crypto::ChunkOpener;
use crate::core::crypto::{ChunkId, Identities, MasterKey, Recipients};
use crate::core::format::{
    ChunkLoc, ChunkerParams, IndexFile, KeyFile, Manifest, PackRef, RepoConfig, FORMAT_VERSION,
};
use crate::error::{Error, Result};
use crate::storage::ObjectStore;

pub struct Repository {
    store: Arc<dyn ObjectStore>,
    pub config: RepoConfig,
    key: MasterKey,
    recipients: Recipients,
    identities: Arc<Identities>,
    chunks: ChunkOpener,
    /// For messages: where the repository is.
    pub location: String,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.location)
    }
}

/// Where a known chunk is stored.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub pack: PackRef,
    pub loc: ChunkLoc,
    /// The pack is referenced by no backup (left by an interrupted one); set by the planner.
    pub orphan: bool,
}

fn new_hex_id(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

impl Repository {
    /// Create a new repository. Refuses when anything keepsake wrote is already there.
    pub async fn init(
        store: Arc<dyn ObjectStore>,
        location: &str,
        recipients: Recipients,
        identities: Identities,
    ) -> Result<Self> {
        if store.exists("config").await? || !store.list("keys/").await?.is_empty() {
            return Err(Error::Usage(format!(
                "{location} already holds a keepsake repository; init refuses to touch it (choose another repository.url)"
            )));
        }
        if !identities.matches_any(&recipients) {
            return Err(Error::Key(
                "the identity file holds no key for any of encryption.recipients: backups written now could never be read back; add the identity's public key (age-keygen -y FILE) to recipients".into(),
            ));
        }
        let master: zeroize::Zeroizing<[u8; 32]> = zeroize::Zeroizing::new(rand::random());
        let keyfile = KeyFile {
            version: 1,
            master_key: hex::encode(*master),
        };
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&keyfile).map_err(|e| Error::Other(e.to_string()))?,
        );
        drop(keyfile);
        let sealed = recipients.encrypt(&json)?;
        store
            .put(&format!("keys/{}", new_hex_id(8)), sealed)
            .await?;
        let config = RepoConfig {
            format: "keepsake-repository".into(),
            version: FORMAT_VERSION,
            id: new_hex_id(16),
            chunker: ChunkerParams::default(),
            created_at: Utc::now(),
        };
        let cfg = serde_json::to_vec_pretty(&config).map_err(|e| Error::Other(e.to_string()))?;
        store.put("config", cfg).await?;
        let key = MasterKey::from_bytes(&master);
        let identities = Arc::new(identities);
        Ok(Repository {
            store,
            config,
            key,
            recipients,
            chunks: ChunkOpener::new(identities.clone()),
            identities,
            location: location.to_string(),
        })
    }

    /// [`Repository::open_pinned`] with no pinned key.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        location: &str,
        recipients: Recipients,
        identities: Identities,
    ) -> Result<Self> {
        Self::open_pinned(store, location, recipients, identities, None).await
    }

    /// Open an existing repository and unlock its master key with `identities`.
    ///
    /// age does not authenticate the sender: anyone who can write to the repository and knows
    /// a public recipient can add a key object of their own (and then manifests and packs
    /// sealed with it). So every key object the identities open is read: when they hold
    /// different master keys, the repository is refused (naming them) unless `pinned` names
    /// one of them (its fingerprint); with `pinned`, only that key is used, and a repository
    /// without it is refused.
    pub async fn open_pinned(
        store: Arc<dyn ObjectStore>,
        location: &str,
        recipients: Recipients,
        identities: Identities,
        pinned: Option<&str>,
    ) -> Result<Self> {
        let raw = store.get("config").await?.ok_or_else(|| {
            Error::Repository(format!(
                "no keepsake repository at {location}: create it with `keepsake init`"
            ))
        })?;
        let config: RepoConfig = serde_json::from_slice(&raw).map_err(|e| {
            Error::Repository(format!(
                "{location}/config is not a keepsake repository config: {e}"
            ))
        })?;
        if config.format != "keepsake-repository" {
            return Err(Error::Repository(format!(
                "{location}/config is not a keepsake repository config"
            )));
        }
        if config.version > FORMAT_VERSION {
            return Err(Error::Repository(format!(
                "{location} uses repository format version {}, newer than this keepsake ({}) can read: upgrade keepsake",
                config.version,
                env!("CARGO_PKG_VERSION")
            )));
        }
        // Every key object the identities open, by fingerprint.
        let mut keys: Vec<(String, MasterKey)> = Vec::new();
        // Key objects the identities open that hold no key: planted by someone who can write
        // to the repository, or damaged. With a pinned key they are passed over (issue 28,
        // item 6: one malformed object stopped every command); without one, refused below.
        let mut malformed: Vec<String> = Vec::new();
        for obj in store.list("keys/").await? {
            let Some(sealed) = store.get(&obj.key).await? else {
                continue;
            };
            if let Ok(plain) = identities.decrypt(&sealed) {
                let plain = zeroize::Zeroizing::new(plain);
                let key = serde_json::from_slice::<KeyFile>(&plain)
                    .map_err(|e| format!("{}: malformed key object: {e}", obj.key))
                    .and_then(|kf| {
                        let mut m = zeroize::Zeroizing::new([0u8; 32]);
                        hex::decode_to_slice(&kf.master_key, &mut *m)
                            .map_err(|e| format!("{}: malformed key: {e}", obj.key))?;
                        Ok(MasterKey::from_bytes(&m))
                    });
                match key {
                    Ok(k) => keys.push((obj.key.clone(), k)),
                    Err(why) => malformed.push(why),
                }
            }
        }
        if !malformed.is_empty() {
            if pinned.is_none() {
                return Err(Error::Repository(format!(
                    "{}: keepsake uses no key of the repository at {location} while one of its key objects is malformed (damaged, or planted by someone who can write to it); set [encryption] repository_key_fingerprint to the genuine key (`keepsake init` printed it) and the others are passed over",
                    malformed.join("; ")
                )));
            }
            tracing::warn!(
                "{location}: key objects that hold no key are passed over (the pinned key is used): {}",
                malformed.join("; ")
            );
        }
        if keys.is_empty() {
            return Err(Error::Key(format!(
                "none of the configured identities can open the repository at {location}: it was created for other keys (check encryption.identity_file)"
            )));
        }
        let named = |ks: &[(String, MasterKey)]| {
            ks.iter()
                .map(|(o, k)| format!("{o} ({})", k.fingerprint()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let key = match pinned {
            Some(pin) => match keys.iter().find(|(_, k)| k.fingerprint() == pin) {
                Some((_, k)) => {
                    if keys.iter().any(|(_, k)| k.fingerprint() != pin) {
                        tracing::warn!(
                            "{location}: key objects with another master key are ignored (the pinned key is {pin}): {}",
                            named(&keys)
                        );
                    }
                    k.clone()
                }
                None => {
                    return Err(Error::Damage(format!(
                        "the repository at {location} has no key object with the pinned master key {pin} (found: {}): it was replaced or this is another repository; keepsake uses none of them",
                        named(&keys)
                    )))
                }
            },
            None => {
                let first = keys[0].1.fingerprint();
                if keys.iter().any(|(_, k)| k.fingerprint() != first) {
                    return Err(Error::Damage(format!(
                        "the repository at {location} has key objects that open to different master keys: {}. Someone who can write to the repository may have planted one; keepsake uses none of them until [encryption] repository_key_fingerprint names the genuine key (`keepsake init` printed it)",
                        named(&keys)
                    )));
                }
                keys[0].1.clone()
            }
        };
        let identities = Arc::new(identities);
        Ok(Repository {
            store,
            config,
            key,
            recipients,
            chunks: ChunkOpener::new(identities.clone()),
            identities,
            location: location.to_string(),
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
    pub fn key(&self) -> &MasterKey {
        &self.key
    }
    pub fn recipients(&self) -> &Recipients {
        &self.recipients
    }
    pub fn identities(&self) -> &Arc<Identities> {
        &self.identities
    }

    /// Decrypt one chunk (an age file) in place; the error says what is wrong with it.
    pub fn open_chunk<'a>(&self, blob: &'a mut [u8]) -> std::result::Result<&'a [u8], String> {
        self.chunks.open_in_place(blob)
    }

    /// A new backup id: sortable by time, unique by a random suffix ([`is_timed_name`]).
    pub fn new_backup_id() -> String {
        format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%SZ"), new_hex_id(3))
    }

    /// Every committed backup, oldest first. Fails on the first unreadable manifest.
    pub async fn manifests(&self) -> Result<Vec<Manifest>> {
        let (ok, mut bad) = self.manifests_lenient().await?;
        match bad.pop() {
            Some((_, e)) => Err(e),
            None => Ok(ok),
        }
    }

    /// Every committed backup, oldest first, and separately the ids whose manifest cannot be
    /// read (damaged, forged, or of a newer format) with the reason.
    pub async fn manifests_lenient(&self) -> Result<(Vec<Manifest>, Vec<(String, Error)>)> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for obj in self.store.list("snapshots/").await? {
            let id = obj.key.trim_start_matches("snapshots/").to_string();
            match self.manifest_exact(&id).await {
                Ok(m) => out.push(m),
                // Listed, then gone before it was read: forgotten meanwhile (a concurrent
                // prune or delete). Not damage, and no reason to fail the whole listing.
                Err(Error::NotFound(_)) if !self.store.exists(&obj.key).await? => {
                    tracing::debug!("backup {id} was forgotten while the repository was listed");
                }
                Err(e @ (Error::Damage(_) | Error::Repository(_))) => bad.push((id, e)),
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok((out, bad))
    }

    /// Ids of committed backups (no decryption). A listed name that is not of the id format is
    /// not a backup (it was put there by hand or by someone else) and is left out, with a warning.
    pub async fn backup_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .list("snapshots/")
            .await?
            .into_iter()
            .filter_map(|o| {
                let id = o.key.trim_start_matches("snapshots/");
                if is_timed_name(id) {
                    Some(id.to_string())
                } else {
                    tracing::warn!("ignoring {:?}: not a backup id", o.key);
                    None
                }
            })
            .collect())
    }

    /// Resolve an id or a unique prefix of one.
    /// The backup id `query` names: the whole id, a unique prefix, or the short form screens
    /// show ([`crate::core::backup_id::resolve`], the one rule for every face).
    pub async fn resolve_id(&self, query: &str) -> Result<String> {
        let ids = self.backup_ids().await?;
        crate::core::backup_id::resolve(ids.iter().map(String::as_str), query)
            .map(str::to_string)
            .map_err(|e| {
                let q = crate::core::backup_id::printable(query);
                match e {
                    crate::core::backup_id::IdError::NotFound => Error::NotFound(format!(
                        "no backup {q} in {}: `keepsake list` shows the backups",
                        self.location
                    )),
                    e => Error::Usage(format!("backup id {q} {}", e.words())),
                }
            })
    }

    pub async fn manifest(&self, id_or_prefix: &str) -> Result<Manifest> {
        let id = self.resolve_id(id_or_prefix).await?;
        self.manifest_exact(&id).await
    }

    pub async fn manifest_exact(&self, id: &str) -> Result<Manifest> {
        Ok(self.manifest_sealed(id).await?.0)
    }

    /// [`Repository::manifest_exact`], and the sealed object as stored (for a local cache).
    pub async fn manifest_sealed(&self, id: &str) -> Result<(Manifest, Vec<u8>)> {
        let name = format!("snapshots/{id}");
        let sealed = self
            .store
            .get(&name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no backup {id} in {}", self.location)))?;
        let m = self.open_manifest(id, &sealed)?;
        Ok((m, sealed))
    }

    /// Authenticate and read the sealed manifest of backup `id` (from the store or a cache):
    /// the same checks whatever the bytes came from.
    pub fn open_manifest(&self, id: &str, sealed: &[u8]) -> Result<Manifest> {
        let name = format!("snapshots/{id}");
        let plain = self.key.open(&self.identities, &name, sealed)?;
        let m: Manifest = serde_json::from_slice(&plain)
            .map_err(|e| Error::Damage(format!("{name}: malformed manifest: {e}")))?;
        if m.format_version > FORMAT_VERSION {
            return Err(Error::Repository(format!(
                "backup {id} was written in format version {}, newer than this keepsake reads: upgrade keepsake",
                m.format_version
            )));
        }
        if m.id != id {
            return Err(Error::Damage(format!(
                "{name}: holds the manifest of {}, not {id}",
                m.id
            )));
        }
        Ok(m)
    }

    /// Write any sealed metadata object (verification records, …).
    pub async fn put_sealed(&self, name: &str, plain: &[u8]) -> Result<()> {
        let sealed = self.key.seal(&self.recipients, name, plain)?;
        self.store.put(name, sealed).await
    }

    /// Authenticate sealed bytes said to be object `name` (from the store or a local cache).
    pub fn open_sealed(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        self.key.open(&self.identities, name, sealed)
    }

    /// Read and authenticate a sealed metadata object.
    /// [`Repository::get_sealed`], or `None` when the object is not (or no longer) there.
    pub async fn get_sealed_opt(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.store.get(name).await? {
            Some(sealed) => Ok(Some(self.key.open(&self.identities, name, &sealed)?)),
            None => Ok(None),
        }
    }

    pub async fn get_sealed(&self, name: &str) -> Result<Vec<u8>> {
        let sealed = self
            .store
            .get(name)
            .await?
            .ok_or_else(|| Error::Repository(format!("{name} is missing")))?;
        self.key.open(&self.identities, name, &sealed)
    }

    /// Write the index of the packs a backup added (before its manifest).
    pub async fn write_index(&self, index: &IndexFile) -> Result<String> {
        let name = format!("index/{}", new_hex_id(8));
        let json = serde_json::to_vec(index).map_err(|e| Error::Other(e.to_string()))?;
        let sealed = self.key.seal(&self.recipients, &name, &json)?;
        self.store.put(&name, sealed).await?;
        Ok(name)
    }

    /// The commit point: write the manifest. Callers have confirmed packs and index stored.
    pub async fn commit_manifest(&self, m: &Manifest) -> Result<()> {
        let name = format!("snapshots/{}", m.id);
        let json = serde_json::to_vec(m).map_err(|e| Error::Other(e.to_string()))?;
        let sealed = self.key.seal(&self.recipients, &name, &json)?;
        self.store.put(&name, sealed).await
    }

    /// Which of `packs` are missing or not of their recorded size (`key is N bytes, expected
    /// M` / `key is missing`), asking the store 8 at a time (each a round trip on S3).
    pub async fn missing_packs(&self, packs: &[PackRef]) -> Result<Vec<String>> {
        use futures::stream::{StreamExt, TryStreamExt};
        // Owned keys: a closure over borrowed pack refs makes this future not provably `Send`.
        let keys: Vec<String> = packs.iter().map(|p| p.key()).collect();
        let sizes: Vec<Option<u64>> = futures::stream::iter(keys)
            .map(|k| async move { self.store.head(&k).await })
            .buffered(8)
            .try_collect()
            .await?;
        Ok(packs
            .iter()
            .zip(sizes)
            .filter_map(|(p, size)| match size {
                Some(s) if s == p.size => None,
                Some(s) => Some(format!("{} is {s} bytes, expected {}", p.key(), p.size)),
                None => Some(format!("{} is missing", p.key())),
            })
            .collect())
    }

    /// Every chunk the repository's indexes know, with where it is.
    /// [`Repository::load_index`], skipping index objects that do not decrypt, authenticate or
    /// parse (named in the second value). For backups (the skipped index's chunks are stored
    /// again) and verification (a backup's manifest, not the index, says where its chunks are).
    /// A failure to read (storage) still fails: it is not damage, and skipping would hide it.
    pub async fn load_index_lenient(&self) -> Result<(HashMap<ChunkId, StoredChunk>, Vec<String>)> {
        let mut out = HashMap::new();
        let mut bad = Vec::new();
        for obj in self.store.list("index/").await? {
            let Some(sealed) = self.store.get(&obj.key).await? else {
                continue;
            };
            let idx = self
                .key
                .open(&self.identities, &obj.key, &sealed)
                .and_then(|plain| {
                    serde_json::from_slice::<IndexFile>(&plain)
                        .map_err(|e| Error::Damage(format!("{}: malformed index: {e}", obj.key)))
                });
            match idx {
                Ok(idx) => add_index(&mut out, idx),
                Err(e) => bad.push(format!("{}: {e}", obj.key)),
            }
        }
        Ok((out, bad))
    }

    pub async fn load_index(&self) -> Result<HashMap<ChunkId, StoredChunk>> {
        let mut out = HashMap::new();
        for obj in self.store.list("index/").await? {
            let Some(sealed) = self.store.get(&obj.key).await? else {
                continue;
            };
            let plain = self.key.open(&self.identities, &obj.key, &sealed)?;
            let idx: IndexFile = serde_json::from_slice(&plain)
                .map_err(|e| Error::Damage(format!("{}: malformed index: {e}", obj.key)))?;
            add_index(&mut out, idx);
        }
        Ok(out)
    }
}

fn add_index(out: &mut HashMap<ChunkId, StoredChunk>, idx: IndexFile) {
    for p in idx.packs {
        let pack = PackRef {
            name: p.name,
            size: p.size,
        };
        for c in p.chunks {
            out.entry(c.id).or_insert_with(|| StoredChunk {
                pack: pack.clone(),
                loc: c,
                orphan: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::crypto::{generate_identity, parse_recipient};
    use crate::storage::memory::MemoryStore;
    use std::str::FromStr;

    fn keys() -> (Recipients, Identities) {
        let (text, rcp) = generate_identity();
        let line = text.lines().find(|l| l.starts_with("AGE-")).expect("line");
        (
            Recipients(vec![parse_recipient(&rcp).expect("r")]),
            Identities::from_identity(age::x25519::Identity::from_str(line).expect("id")),
        )
    }

    /// A store that lists one manifest more than it holds: one forgotten between the listing
    /// and the read (a concurrent prune or delete).
    #[derive(Debug)]
    struct Vanishing(MemoryStore);

    #[async_trait::async_trait]
    impl ObjectStore for Vanishing {
        async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
            self.0.put(key, data).await
        }
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
            self.0.get(key).await
        }
        async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.0.get_range(key, offset, len).await
        }
        async fn head(&self, key: &str) -> Result<Option<u64>> {
            self.0.head(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<crate::storage::ObjectInfo>> {
            let mut v = self.0.list(prefix).await?;
            if prefix == "snapshots/" {
                v.push(crate::storage::ObjectInfo {
                    key: "snapshots/20261202T030000Z-gone00".into(),
                    size: 100,
                });
            }
            Ok(v)
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.0.delete(key).await
        }
    }

    /// Regression (issue 13, defect 7): a manifest deleted between the listing and its read
    /// made `list` (and every backup's plan) fail.
    #[tokio::test]
    async fn a_manifest_forgotten_while_listing_is_skipped_not_an_error() {
        let store: Arc<dyn ObjectStore> = Arc::new(Vanishing(MemoryStore::new()));
        let (r, i) = keys();
        let repo = Repository::init(store, "mem", r, i).await.expect("init");
        let (ok, bad) = repo.manifests_lenient().await.expect("listing");
        assert!(ok.is_empty() && bad.is_empty(), "{bad:?}");
    }

    #[tokio::test]
    async fn init_refuses_existing_and_open_needs_right_key() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (r, i) = keys();
        Repository::init(store.clone(), "mem", r.clone(), i)
            .await
            .expect("init");
        let (r2, i2) = keys();
        assert!(Repository::init(store.clone(), "mem", r2.clone(), keys().1)
            .await
            .is_err());
        let e = Repository::open(store.clone(), "mem", r2, i2)
            .await
            .expect_err("wrong key");
        assert!(matches!(e, Error::Key(_)), "{e}");
    }

    /// Issue 28, item 6: a key object that opens with the identity but holds no key stopped
    /// every command, even with the genuine key pinned. Pinned, it is passed over; unpinned,
    /// the repository is refused, naming it.
    #[tokio::test]
    async fn a_malformed_key_object_is_passed_over_when_the_key_is_pinned() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (text, rcp) = generate_identity();
        let line = text
            .lines()
            .find(|l| l.starts_with("AGE-"))
            .expect("line")
            .to_string();
        let ids = || Identities::from_identity(age::x25519::Identity::from_str(&line).expect("id"));
        let r = Recipients(vec![parse_recipient(&rcp).expect("r")]);
        let repo = Repository::init(store.clone(), "mem", r.clone(), ids())
            .await
            .expect("init");
        let fp = repo.key().fingerprint();
        store
            .put(
                "keys/ffffffffffffffff",
                r.encrypt(b"not a key object").expect("seal"),
            )
            .await
            .expect("put");
        let opened = Repository::open_pinned(store.clone(), "mem", r.clone(), ids(), Some(&fp))
            .await
            .expect("pinned open");
        assert_eq!(opened.key().fingerprint(), fp);
        let e = Repository::open(store, "mem", r, ids())
            .await
            .expect_err("unpinned");
        assert!(e.to_string().contains("keys/ffffffffffffffff"), "{e}");
    }

    #[tokio::test]
    async fn newer_format_is_refused() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let (r, i) = keys();
        let (text, _) = generate_identity();
        let _ = text;
        Repository::init(store.clone(), "mem", r.clone(), i)
            .await
            .expect("init");
        mem.tamper("config", |v| {
            let s = String::from_utf8_lossy(v).replace("\"version\": 1", "\"version\": 2");
            *v = s.into_bytes();
        })
        .expect("tamper");
        let e = Repository::open(store, "mem", r, keys().1)
            .await
            .expect_err("newer");
        assert!(e.to_string().contains("newer than this keepsake"), "{e}");
    }
}

/// Whether `s` is a name of the repository's own format: a UTC time, `20261207T153526Z` or with
/// milliseconds `20261207T153526.123Z`, a `-`, and a lowercase hex suffix (backup ids, drill
/// reports, verification records). Names from a listing become file names in the state
/// directory's cache only when they pass this.
pub fn is_timed_name(s: &str) -> bool {
    let Some((time, suffix)) = s.rsplit_once('-') else {
        return false;
    };
    let hex = !suffix.is_empty()
        && suffix.len() <= 16
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    let Some(t) = time.strip_suffix('Z') else {
        return false;
    };
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (t, None),
    };
    let time_ok = whole.len() == 15
        && digits(&whole[..8], 8)
        && whole.as_bytes()[8] == b'T'
        && digits(&whole[9..], 6)
        && frac.is_none_or(|f| digits(f, 3));
    hex && time_ok
}

/// Whether `key` names one of the sealed objects the views cache on disk: `snapshots/<id>`,
/// `verifications/<id>/<name>` or `drills/<name>`, each part of the [`is_timed_name`] form.
pub fn is_cacheable_name(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["snapshots", id] | ["drills", id] => is_timed_name(id),
        ["verifications", id, rec] => is_timed_name(id) && is_timed_name(rec),
        _ => false,
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn only_names_of_the_repository_format_pass() {
        assert!(is_timed_name(&Repository::new_backup_id()));
        assert!(is_timed_name("20261207T153526Z-b527f3"));
        assert!(is_timed_name("20261207T153526.123Z-b527f3"));
        for bad in [
            "",
            "..",
            "../../audit.jsonl",
            "20261207T153526Z-",
            "20261207T153526Z-B527F3",
            "20261207T153526Z-b527f3/..",
            "2026120T153526Z-b527f3",
            "20261207X153526Z-b527f3",
            "20261207T153526.12Z-b527f3",
        ] {
            assert!(!is_timed_name(bad), "{bad:?}");
        }
        assert!(is_cacheable_name("snapshots/20261207T153526Z-b527f3"));
        assert!(is_cacheable_name(
            "verifications/20261207T153526Z-b527f3/20261207T153600.001Z-00ff00"
        ));
        assert!(is_cacheable_name("drills/20261207T153526Z-b527f3"));
        for bad in [
            "snapshots/../../../audit.jsonl",
            "snapshots/20261207T153526Z-b527f3/../../x",
            "verifications/20261207T153526Z-b527f3/../../../audit.jsonl",
            "drills/x",
            "packs/ab/20261207T153526Z-b527f3",
        ] {
            assert!(!is_cacheable_name(bad), "{bad:?}");
        }
    }
}
