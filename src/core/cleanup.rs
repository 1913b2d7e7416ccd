//! Cleanup hooks: what an operation must undo if it does not finish — a database it created, a
//! scratch database, its own repository lease.
//!
//! An operation registers a hook the moment it creates something that must not outlive a
//! failure, and disarms it once the thing is either dropped by the operation itself or meant
//! to stay (a restored database). Whoever runs the operation (the engine's job runner) runs
//! every hook still armed when the operation ends — on success, failure, cancellation,
//! deadline or shutdown — even when the operation's future was dropped half-way, which is
//! exactly when no code inside it can clean up.
//!
//! Invariant: a hook is registered only *after* the thing it removes was created by this
//! operation, so a hook can never remove something the operation did not make (a Ctrl-C
//! before `CREATE DATABASE` succeeded drops nothing).

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

type Action = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Handle of one registered hook, to disarm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookId(u64);

#[derive(Default)]
struct Hooks {
    next: u64,
    armed: Vec<(HookId, String, Action)>,
}

/// The hooks of one operation. Cheap to clone; clones share the list.
#[derive(Clone, Default)]
pub struct Cleanup(Arc<Mutex<Hooks>>);

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.pending()).finish()
    }
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `action` (described by `what`, for logs) to run unless disarmed.
    pub fn register<F>(&self, what: impl Into<String>, action: F) -> HookId
    where
        F: FnOnce() -> BoxFuture<'static, ()> + Send + 'static,
    {
        let Ok(mut h) = self.0.lock() else {
            return HookId(u64::MAX);
        };
        h.next += 1;
        let id = HookId(h.next);
        h.armed.push((id, what.into(), Box::new(action)));
        id
    }

    /// The thing was removed by the operation itself, or is meant to stay.
    pub fn disarm(&self, id: HookId) {
        if let Ok(mut h) = self.0.lock() {
            h.armed.retain(|(i, _, _)| *i != id);
        }
    }

    /// What is still armed, oldest first.
    pub fn pending(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|h| h.armed.iter().map(|(_, w, _)| w.clone()).collect())
            .unwrap_or_default()
    }

    /// Run every armed hook, newest first (undo in reverse order of doing); returns what ran.
    pub async fn run(&self) -> Vec<String> {
        let hooks = match self.0.lock() {
            Ok(mut h) => std::mem::take(&mut h.armed),
            Err(_) => Vec::new(),
        };
        let mut ran = Vec::new();
        for (_, what, action) in hooks.into_iter().rev() {
            tracing::info!("cleanup: {what}");
            action().await;
            ran.push(what);
        }
        ran
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn armed_hooks_run_newest_first_and_disarmed_ones_never() {
        let c = Cleanup::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        for name in ["lease", "scratch", "created"] {
            let o = order.clone();
            let n = count.clone();
            let id = c.register(name, move || {
                async move {
                    n.fetch_add(1, Ordering::SeqCst);
                    o.lock().unwrap().push(name);
                }
                .boxed()
            });
            if name == "scratch" {
                c.disarm(id);
            }
        }
        assert_eq!(c.pending(), vec!["lease", "created"]);
        assert_eq!(c.run().await, vec!["created", "lease"]);
        assert_eq!(*order.lock().unwrap(), vec!["created", "lease"]);
        // Each hook runs at most once.
        assert!(c.run().await.is_empty());
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
