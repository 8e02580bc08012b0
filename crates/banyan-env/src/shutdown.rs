//! The one signal that a node, or a part of it, is stopping.
//!
//! Every task a node starts is given a [`Shutdown`] (a clone, or a child for a part that
//! may stop on its own, like a branch's lease renewals) and ends once it has begun. The
//! node begins it first thing when it stops, then waits for what it must (Raft, the final
//! flush); nothing finds out by a channel closing or a weak reference failing to upgrade.

use tokio_util::sync::CancellationToken;

/// A stop that has begun or not yet. Cheap to clone; every clone sees the same stop.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// A stop that has not begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// A part's own stop: it begins with this one, or alone by [`begin`](Self::begin).
    pub fn child(&self) -> Self {
        Self(self.0.child_token())
    }

    /// Begins the stop, for every clone and child. Beginning twice is harmless.
    pub fn begin(&self) {
        self.0.cancel();
    }

    /// Whether the stop has begun.
    pub fn is_begun(&self) -> bool {
        self.0.is_cancelled()
    }

    /// A guard that begins the stop when it is dropped: for the handle of a task whose
    /// owner may be dropped without stopping it.
    pub fn begin_on_drop(&self) -> BeginOnDrop {
        BeginOnDrop(self.0.clone().drop_guard())
    }

    /// Resolves once the stop has begun (at once if it has): the arm of a task's
    /// `select!` that ends it.
    pub async fn begun(&self) {
        self.0.cancelled().await;
    }
}

/// Begins its [`Shutdown`] when dropped (see [`Shutdown::begin_on_drop`]).
#[derive(Debug)]
pub struct BeginOnDrop(#[allow(dead_code)] tokio_util::sync::DropGuard);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_and_child_sees_the_stop_and_a_child_can_stop_alone() {
        let node = Shutdown::new();
        let (task, part) = (node.clone(), node.child());
        let other_part = node.child();
        other_part.begin();
        other_part.begun().await;
        assert!(!node.is_begun() && !part.is_begun(), "a child stops alone");
        node.begin();
        task.begun().await;
        part.begun().await;
        assert!(task.is_begun() && part.is_begun());
    }

    #[tokio::test]
    async fn a_dropped_guard_begins_the_stop() {
        let stop = Shutdown::new();
        let guard = stop.begin_on_drop();
        assert!(!stop.is_begun());
        drop(guard);
        stop.begun().await;
    }
}
