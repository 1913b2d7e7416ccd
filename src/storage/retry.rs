//! Retries for remote object stores: exponential backoff with full jitter, a cap on attempts and
//! a total time budget per operation.
//!
//! Invariant: an operation is retried only when its failure was classified [`Failure::Retry`]
//! (throttling, 5xx, timeouts, connection resets, truncated bodies); anything else
//! ([`Failure::Fatal`]: bad credentials, missing bucket, a refused request) returns at once.
//! Every retry is logged (operation, attempt, delay, cause) and counted in [`RetryStats`],
//! which progress readings show, so a backup that is slow because S3 throttles says so.
//!
//! Full jitter (delay uniform in `[0, min(cap, base·2^n)]`, as in AWS's "Exponential Backoff
//! and Jitter") spreads the retries of parallel uploads instead of synchronising them.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// How hard to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
    /// Total time an operation may spend, attempts and waits included; no retry starts after.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
            budget: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling before attempt `attempt + 1` (attempt counts from 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt; the text says what happened (no secrets).
    Retry(String),
    /// Retrying cannot help.
    Fatal(Error),
}

/// Requests and retries performed so far, shared with progress readings and the store's
/// closing log line (requests per GB are in BENCHMARKS.md).
#[derive(Debug, Default, Clone)]
pub struct RetryStats {
    pub retries: Arc<AtomicU64>,
    /// Attempts by operation (first word of the operation name: PUT, GET, HEAD, …).
    pub requests: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl RetryStats {
    /// Retries so far.
    pub fn count(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn attempt(&self, what: &str) {
        let kind = what.split_whitespace().next().unwrap_or("?").to_string();
        if let Ok(mut m) = self.requests.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }

    /// `N requests (GET a, HEAD b, …), R retries`.
    pub fn summary(&self) -> String {
        let m = self.requests.lock().map(|m| m.clone()).unwrap_or_default();
        let total: u64 = m.values().sum();
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!(
            "{total} requests ({}), {} retries",
            parts.join(", "),
            self.count()
        )
    }
}

/// Run `op` (given the attempt number, from 1) until it succeeds, fails fatally, or the policy
/// gives up. `what` names the operation in logs and errors (`PUT packs/ab/…`).
pub async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    stats: &RetryStats,
    what: &str,
    mut op: F,
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    let start = Instant::now();
    let mut attempt = 1u32;
    loop {
        stats.attempt(what);
        match op(attempt).await {
            Ok(v) => {
                if attempt > 1 {
                    tracing::info!(
                        operation = what,
                        attempts = attempt,
                        "succeeded after retries"
                    );
                }
                return Ok(v);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(cause)) => {
                let elapsed = start.elapsed();
                let remaining = policy.budget.saturating_sub(elapsed);
                if attempt >= policy.max_attempts || remaining.is_zero() {
                    return Err(Error::Storage(format!(
                        "{what}: gave up after {attempt} attempt{} in {:.1} s (retry budget: {} attempts, {} s): {cause}",
                        if attempt == 1 { "" } else { "s" },
                        elapsed.as_secs_f64(),
                        policy.max_attempts,
                        policy.budget.as_secs()
                    )));
                }
                let ceiling = policy.ceiling(attempt);
                let delay = rand::random_range(Duration::ZERO..=ceiling).min(remaining);
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    operation = what,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    cause = %cause,
                    "storage request failed; retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(4),
            budget: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let stats = RetryStats::default();
        let r = run(&quick(5), &stats, "GET x", |n| async move {
            if n < 3 {
                Err(Failure::Retry(format!("503 on attempt {n}")))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(r.ok(), Some(3));
        assert_eq!(stats.count(), 2);
    }

    #[tokio::test]
    async fn fatal_failures_are_not_retried() {
        let stats = RetryStats::default();
        let mut calls = 0;
        let r: Result<()> = run(&quick(5), &stats, "PUT x", |_| {
            calls += 1;
            async { Err(Failure::Fatal(Error::Storage("403 access denied".into()))) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
        assert_eq!(stats.count(), 0);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_says_why() {
        let stats = RetryStats::default();
        let r: Result<()> = run(&quick(4), &stats, "PUT packs/x", |_| async {
            Err(Failure::Retry("503 SlowDown".into()))
        })
        .await;
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("PUT packs/x: gave up after 4 attempts"), "{e}");
        assert!(e.contains("503 SlowDown"), "{e}");
        assert_eq!(stats.count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn total_budget_stops_retrying() {
        let policy = RetryPolicy {
            max_attempts: 1000,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(8),
            budget: Duration::from_secs(30),
        };
        let stats = RetryStats::default();
        let start = tokio::time::Instant::now();
        let r: Result<()> = run(&policy, &stats, "GET y", |_| async {
            Err(Failure::Retry("timeout".into()))
        })
        .await;
        assert!(r.is_err());
        // Waits are clamped to the remaining budget, so it ends at the budget, not later.
        assert!(
            start.elapsed() <= Duration::from_secs(31),
            "{:?}",
            start.elapsed()
        );
        assert!(stats.count() >= 3);
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(2), Duration::from_millis(400));
        assert_eq!(p.ceiling(4), Duration::from_millis(1600));
        assert_eq!(p.ceiling(30), Duration::from_secs(20));
    }
}
