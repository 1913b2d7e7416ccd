//! The domain: repository format, keys and encryption, the backup pipeline and restore.
//! No terminal, HTTP or scheduling code lives here.

pub mod backup;
pub mod backup_id;
pub mod capture;
pub mod chunk_crypto;
pub mod chunks;
pub mod cleanup;
pub mod compare;
pub mod crypto;
pub mod drill;
pub mod feed;
pub mod format;
pub mod into_schema;
pub mod parallel_restore;
pub mod pitr;
pub mod progress;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod select;
pub mod verify;
