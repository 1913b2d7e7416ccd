//! Object stores: the small trait every repository backend implements.
//!
//! Invariant: `put` is all-or-nothing — after it returns `Ok`, the object is durable and
//! complete at `key`; after an error or a crash, either the old state or nothing is visible at
//! `key`, never a partial object. Keys are `/`-separated relative names (`packs/ab/abcd…`).
//! Remote backends classify their failures and retry through [`retry::run`]; local ones do not
//! retry.

pub mod local;
pub mod memory;
pub mod retry;
pub mod s3;

use async_trait::async_trait;

use crate::error::Result;

/// Whether `key` is a relative object name that stays inside the repository when it is joined
/// to a folder: `/`-separated, no empty, `.` or `..` part, no backslash or control character.
/// A listing from a store (a bucket others may write to) is filtered through this before any
/// name in it can become a path.
pub fn is_safe_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && !key.chars().any(|c| c == '\\' || c.is_control())
        && key
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Store `data` at `key` atomically and durably; returns once confirmed stored.
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()>;
    /// Read a whole object; `Ok(None)` when absent.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Read `len` bytes at `offset`; an object shorter than that is an error.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// [`get_range`](Self::get_range) into `buf` (its contents replaced), for backends that
    /// can reuse a caller's buffer; others return a buffer of their own.
    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        drop(buf);
        self.get_range(key, offset, len).await
    }
    /// Size of an object, `None` when absent. Never downloads.
    async fn head(&self, key: &str) -> Result<Option<u64>>;
    /// All objects whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Remove an object; absent is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Whether `key` exists.
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.head(key).await?.is_some())
    }

    /// Remove temporary objects left by interrupted writes, older than `age`; returns how many.
    async fn remove_stale_temporaries(&self, _age: std::time::Duration) -> Result<usize> {
        Ok(0)
    }

    /// Retry counters of a remote store (shown in progress readings).
    fn retry_stats(&self) -> Option<retry::RetryStats> {
        None
    }

    /// How many object uploads may be in flight at once (each holds one pack in memory).
    fn upload_concurrency(&self) -> usize {
        2
    }
}
