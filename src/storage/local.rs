//! Folder backend (`file:///path`).
//!
//! Invariant: atomic, durable writes — data goes to a uniquely named temporary file in the
//! target directory, is fsynced, renamed over the final name, and the directory is fsynced.
//! Temporary files start with `.tmp-` and are never listed, so a crash leaves nothing that
//! looks like an object. Blocking file I/O runs on tokio's blocking pool.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{ObjectInfo, ObjectStore};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if !super::is_safe_key(key) {
            return Err(Error::Storage(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

fn serr(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", p.display()))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Storage(format!("I/O task failed: {e}")))?
}

fn put_sync(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Storage(format!("{} has no parent", path.display())))?;
    create_dirs_durably(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| serr("creating", &tmp, e))?;
        f.write_all(data).map_err(|e| serr("writing", &tmp, e))?;
        f.sync_all().map_err(|e| serr("syncing", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| serr("renaming into", path, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| serr("syncing directory", dir, e))?;
        // Confirm what is stored is what we wrote (size).
        let len = std::fs::metadata(path)
            .map_err(|e| serr("checking", path, e))?
            .len();
        if len != data.len() as u64 {
            return Err(Error::Storage(format!(
                "{}: stored {len} bytes, expected {}",
                path.display(),
                data.len()
            )));
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Create `dir` and the parents it lacks, each made durable: a new directory's entry lives in
/// its parent, so the parent is synced too (issue 28, item 8: after a power loss a new
/// `packs/ab/` could vanish with the pack the backup's index names).
fn create_dirs_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = vec![];
    let mut d = dir;
    while !d.exists() {
        missing.push(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| serr("creating", dir, e))?;
    for m in missing.iter().rev() {
        if let Some(parent) = m.parent() {
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(|e| serr("syncing directory", parent, e))?;
        }
    }
    Ok(())
}

fn list_sync(root: &Path, prefix: &str) -> Result<Vec<ObjectInfo>> {
    // Walk only the directory the prefix lives in.
    let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let start = if dir_part.is_empty() {
        root.to_path_buf()
    } else {
        root.join(dir_part)
    };
    let mut out = Vec::new();
    let mut stack = vec![start];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(serr("listing", &d, e)),
        };
        for ent in rd {
            let ent = ent.map_err(|e| serr("listing", &d, e))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") {
                continue;
            }
            let ft = ent
                .file_type()
                .map_err(|e| serr("listing", &ent.path(), e))?;
            if ft.is_dir() {
                stack.push(ent.path());
            } else if ft.is_file() {
                let p = ent.path();
                let rel = p
                    .strip_prefix(root)
                    .map_err(|_| Error::Storage(format!("{} outside repository", p.display())))?;
                let key = rel.to_string_lossy().replace('\\', "/");
                if key.starts_with(prefix) {
                    // Deleted since the directory was read (a prune or delete running beside
                    // this listing): gone, as an S3 listing taken a moment later would show.
                    let size = match ent.metadata() {
                        Ok(m) => m.len(),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(serr("stat", &p, e)),
                    };
                    out.push(ObjectInfo { key, size });
                }
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let p = self.path(key)?;
        blocking(move || put_sync(&p, &data)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let p = self.path(key)?;
        blocking(move || match std::fs::read(&p) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(serr("reading", &p, e)),
        })
        .await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.get_range_into(key, offset, len, Vec::new()).await
    }

    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let p = self.path(key)?;
        blocking(move || {
            let mut f = std::fs::File::open(&p).map_err(|e| serr("opening", &p, e))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| serr("seeking", &p, e))?;
            // Read into spare capacity: no zero-filling of a buffer about to be overwritten.
            buf.clear();
            buf.reserve_exact(len as usize);
            let got = f
                .take(len)
                .read_to_end(&mut buf)
                .map_err(|e| serr("reading", &p, e))?;
            if got as u64 != len {
                return Err(Error::Storage(format!(
                    "reading {len} bytes at offset {offset} of {}: only {got} bytes there (object truncated?)",
                    p.display()
                )));
            }
            Ok(buf)
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let p = self.path(key)?;
        blocking(move || match std::fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(serr("stat", &p, e)),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || list_sync(&root, &prefix)).await
    }

    async fn remove_stale_temporaries(&self, age: std::time::Duration) -> Result<usize> {
        let root = self.root.clone();
        blocking(move || {
            let mut n = 0;
            let mut stack = vec![root];
            while let Some(d) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for ent in rd.flatten() {
                    let p = ent.path();
                    let Ok(ft) = ent.file_type() else { continue };
                    if ft.is_dir() {
                        stack.push(p);
                    } else if ent.file_name().to_string_lossy().starts_with(".tmp-") {
                        let old = ent
                            .metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|e| e >= age);
                        if old && std::fs::remove_file(&p).is_ok() {
                            n += 1;
                        }
                    }
                }
            }
            Ok(n)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let p = self.path(key)?;
        blocking(move || match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(serr("removing", &p, e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_range() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = LocalStore::new(dir.path());
        s.put("packs/ab/abc", b"0123456789".to_vec())
            .await
            .expect("put");
        s.put("snapshots/x", b"m".to_vec()).await.expect("put");
        assert_eq!(
            s.get_range("packs/ab/abc", 2, 3).await.expect("range"),
            b"234"
        );
        assert!(s.get_range("packs/ab/abc", 8, 3).await.is_err());
        let l = s.list("packs/").await.expect("list");
        assert_eq!(
            l,
            vec![ObjectInfo {
                key: "packs/ab/abc".into(),
                size: 10
            }]
        );
        assert_eq!(s.head("nope/x").await.expect("head"), None);
        assert!(s.put("../escape", vec![]).await.is_err());
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("packs/ab"))
            .expect("rd")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}
