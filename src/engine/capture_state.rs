//! What the daemon's change capture of each source is doing, kept in the state directory for
//! `status` in any process on the host (a leaf module: the capture task writes it, the status
//! query reads it, neither imports the other).

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

/// What the daemon's capture of a source is doing, for `status` (in another process too):
/// written to `<state_dir>/capture/<source>.json` when streaming starts, at every look at the
/// slot, and when it stops or retries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Live {
    /// `streaming`, `lagging` (past half of `max_slot_wal`, or the server about to remove WAL
    /// the slot needs), `retrying` (the connection or the stream failed: `error` says why),
    /// `stopped`.
    pub state: String,
    pub updated_at: chrono::DateTime<Utc>,
    /// The daemon writing it.
    pub pid: u32,
    /// The oldest change received and not yet stored in a segment (`None`: none).
    #[serde(default)]
    pub pending_since: Option<chrono::DateTime<Utc>>,
    #[serde(default)]
    pub lag_bytes: Option<u64>,
    #[serde(default)]
    pub wal_retained_bytes: Option<u64>,
    #[serde(default)]
    pub wal_status: Option<String>,
    #[serde(default)]
    pub safe_wal_size: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
}

impl Live {
    pub(crate) fn now(state: &str, error: Option<String>) -> Live {
        Live {
            state: state.into(),
            updated_at: Utc::now(),
            pid: std::process::id(),
            pending_since: None,
            lag_bytes: None,
            wal_retained_bytes: None,
            wal_status: None,
            safe_wal_size: None,
            error,
        }
    }
}

/// How often [`Live`] is rewritten while streaming (a file older than three times this is
/// stale: the daemon is gone).
pub const LIVE_EVERY: Duration = Duration::from_secs(10);

/// Where [`Live`] of `source` is kept.
pub fn live_path(state_dir: &std::path::Path, source: &str) -> std::path::PathBuf {
    state_dir.join("capture").join(format!("{source}.json"))
}

/// [`Live`] of `source`, if a daemon wrote one.
pub fn read_live(state_dir: &std::path::Path, source: &str) -> Option<Live> {
    let text = std::fs::read_to_string(live_path(state_dir, source)).ok()?;
    serde_json::from_str(&text).ok()
}
