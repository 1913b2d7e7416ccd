//! keepsake: automated, deduplicated, encrypted PostgreSQL backups that prove they restore.
//!
//! The library holds the whole engine so that the binary, the tests and (later) the daemon and
//! console drive the same code. Layout follows the path of a byte of a backup:
//! [`pg`] produces the dump, [`core`] chunks, encrypts and describes it, [`storage`] keeps it,
//! [`engine`] runs whole operations (backup, restore, list) on behalf of every face.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod api;
pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod error;
pub mod keys;
pub mod model;
pub mod pg;
pub mod platform;
pub mod present;
pub mod schedule;
pub mod secret;
pub mod storage;
pub mod tui;
pub mod units;

pub use error::{Error, Result};
