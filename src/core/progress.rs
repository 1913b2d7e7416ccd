//! Progress as values: workers report plain [`Progress`] structs through a [`ProgressSink`];
//! faces (CLI bar, plain lines, later the console and the control API) render them.
//! Workers never print.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Connecting,
    Dumping,
    Committing,
    Checking,
    Restoring,
    Finishing,
    /// Reading and authenticating every chunk (a data-level verification).
    Reading,
    /// Comparing what was restored with the facts recorded at backup time, and pg_amcheck
    /// (a restore-level verification, after its restore).
    Comparing,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Dumping => "dumping",
            Phase::Committing => "committing",
            Phase::Checking => "checking",
            Phase::Restoring => "restoring",
            Phase::Finishing => "finishing",
            Phase::Reading => "reading",
            Phase::Comparing => "comparing",
            Phase::Done => "done",
        }
    }
}

/// One progress reading.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    #[serde(deserialize_with = "crate::model::words::de")]
    pub operation: crate::model::words::Word,
    pub source: String,
    pub phase: Phase,
    pub bytes_done: u64,
    /// Expected total, when known (estimated for backups from table sizes).
    pub bytes_expected: Option<u64>,
    /// Bytes per second since the operation started.
    pub rate: f64,
    pub current_table: Option<String>,
    pub elapsed_ms: u64,
    /// Storage requests retried so far in this process (throttling, resets, timeouts).
    pub storage_retries: u64,
}

impl Progress {
    pub fn percent(&self) -> Option<f64> {
        self.bytes_expected
            .filter(|e| *e > 0)
            .map(|e| (self.bytes_done as f64 / e as f64 * 100.0).min(100.0))
    }
    pub fn eta(&self) -> Option<Duration> {
        let e = self.bytes_expected?;
        if self.rate <= 0.0 || e <= self.bytes_done {
            return None;
        }
        Some(Duration::from_secs_f64(
            (e - self.bytes_done) as f64 / self.rate,
        ))
    }
}

/// Receives progress readings. Must be cheap; called from worker tasks.
pub trait ProgressSink: Send + Sync {
    fn report(&self, p: &Progress);
}

/// Discards progress.
pub struct NoProgress;
impl ProgressSink for NoProgress {
    fn report(&self, _: &Progress) {}
}

/// Builds readings for one operation and throttles them (at most every 100 ms unless the
/// phase or the table changes).
pub struct Tracker<'a> {
    sink: &'a dyn ProgressSink,
    start: Instant,
    state: Mutex<(Progress, Instant)>,
    retries: Option<crate::storage::retry::RetryStats>,
}

impl<'a> Tracker<'a> {
    pub fn new(sink: &'a dyn ProgressSink, operation: &'static str, source: &str) -> Self {
        let now = Instant::now();
        Tracker {
            sink,
            start: now,
            state: Mutex::new((
                Progress {
                    operation,
                    source: source.to_string(),
                    phase: Phase::Connecting,
                    bytes_done: 0,
                    bytes_expected: None,
                    rate: 0.0,
                    current_table: None,
                    elapsed_ms: 0,
                    storage_retries: 0,
                },
                now - Duration::from_secs(1),
            )),
            retries: None,
        }
    }

    /// Report the retries of `store` with every reading.
    pub fn with_store(mut self, store: &dyn crate::storage::ObjectStore) -> Self {
        self.retries = store.retry_stats();
        self
    }

    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let before = (st.0.phase, st.0.current_table.clone());
        f(&mut st.0);
        if let Some(r) = &self.retries {
            st.0.storage_retries = r.count();
        }
        let now = Instant::now();
        let changed = before.0 != st.0.phase || before.1 != st.0.current_table;
        if changed || now.duration_since(st.1) >= Duration::from_millis(100) {
            let el = now.duration_since(self.start);
            st.0.elapsed_ms = el.as_millis() as u64;
            st.0.rate = if el.as_secs_f64() > 0.0 {
                st.0.bytes_done as f64 / el.as_secs_f64()
            } else {
                0.0
            };
            st.1 = now;
            self.sink.report(&st.0);
        }
    }

    pub fn phase(&self, phase: Phase) {
        self.update(|p| p.phase = phase);
    }
}

/// A restore's readings as the steps of a verification: named `verify`, and never `done` (the
/// verification still compares and checks after its restore; issue 27, item 9: it said "verify
/// done" for seconds while its checks ran).
pub struct AsVerifyStep<'a>(pub &'a dyn ProgressSink);

impl ProgressSink for AsVerifyStep<'_> {
    fn report(&self, p: &Progress) {
        if p.phase == Phase::Done {
            return;
        }
        let mut p = p.clone();
        p.operation = "verify";
        self.0.report(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Seen(Mutex<Vec<Progress>>);

    impl ProgressSink for Seen {
        fn report(&self, p: &Progress) {
            self.0.lock().expect("lock").push(p.clone());
        }
    }

    /// Issue 27, item 9: a restore-level verification said "verify done" while its checks
    /// still ran — its restore's `done` went out as the verification's.
    #[test]
    fn a_restore_inside_a_verification_reports_as_its_step_and_never_done() {
        let seen = Seen(Mutex::new(vec![]));
        let step = AsVerifyStep(&seen);
        let t = Tracker::new(&step, "restore", "wedsync");
        t.phase(Phase::Restoring);
        t.phase(Phase::Done);
        let all = seen.0.lock().expect("lock").clone();
        assert!(!all.is_empty());
        assert!(all.iter().all(|p| p.operation == "verify"), "{all:?}");
        assert!(all.iter().all(|p| p.phase != Phase::Done), "{all:?}");
    }
}
