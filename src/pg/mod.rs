//! The PostgreSQL side: connection settings, the client tools (pg_dump, pg_restore), server
//! introspection in the backup's snapshot, and throwaway clusters for the demo and tests.

pub mod archive;
pub mod client;
pub mod cluster;
pub mod conninfo;
pub mod pgoutput;
pub mod preflight;
pub mod process;
pub mod tools;
