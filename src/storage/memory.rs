//! In-memory object store for unit tests of the repository format. Never the only proof:
//! integration tests use the folder backend (and S3) against real servers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ObjectInfo, ObjectStore};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>>> {
        self.objects
            .lock()
            .map_err(|_| Error::Storage("memory store lock poisoned".into()))
    }

    /// Test helper: change an object in place.
    pub fn tamper(&self, key: &str, f: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let mut m = self.lock()?;
        let v = m
            .get_mut(key)
            .ok_or_else(|| Error::Storage(format!("{key}: no such object")))?;
        f(v);
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        self.lock()?.insert(key.to_string(), data);
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()?.get(key).cloned())
    }
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let m = self.lock()?;
        let v = m
            .get(key)
            .ok_or_else(|| Error::Storage(format!("{key}: no such object")))?;
        let (s, e) = (offset as usize, (offset + len) as usize);
        if e > v.len() {
            return Err(Error::Storage(format!(
                "{key}: object is {} bytes, wanted bytes {s}..{e}",
                v.len()
            )));
        }
        Ok(v[s..e].to_vec())
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.lock()?.get(key).map(|v| v.len() as u64))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .lock()?
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.lock()?.remove(key);
        Ok(())
    }
}
