//! Integration tests: the real `keepsake` binary against real PostgreSQL clusters and a real
//! folder repository. One binary, shared support in `support/`.

mod support;

mod api;
mod bench_console;
mod capture;
mod changes;
mod config_check;
mod console;
mod crash;
mod daemon;
mod docs;
mod drill;
mod engine;
mod failures;
mod hosted;
mod keys;
mod layers;
mod packaging;
mod partial;
mod pooler;
mod prune;
mod restore_safety;
mod roundtrip;
mod s3;
mod status;
mod supabase;
mod tls;
mod verify;
