//! Packs commands that arrive together into one Raft entry.
//!
//! openraft 0.9 flushes each appended entry before it takes the next request, so one
//! entry per command would cap the cluster at one command per disk flush. The proposer
//! keeps at most [`MAX_IN_FLIGHT`] entries in Raft at a time; commands that arrive while
//! those are being committed wait in its queue and go into the next entry together, up to
//! [`MAX_BATCH`] commands or [`MAX_ENTRY_BYTES`]. Under light load each command is its own
//! entry and waits for nothing.
//!
//! An entry must reach the followers within one heartbeat (openraft 0.9 times an append
//! out after one interval, and retries it for ever): a command larger than
//! [`MAX_ENTRY_BYTES`] would never replicate and would stall every write after it. A
//! branch's import that large (a long outage) is proposed in parts, one entry each, in
//! order (`banyan_raft::parts`); every replica applies it once its last part is in, and a
//! resend continues after the parts already in. Any other command that large is refused
//! with `RESOURCE_EXHAUSTED` before it is proposed.
//!
//! ```text
//!  propose() ──> queue ──> [batch of 1..MAX_BATCH] ──> Raft::client_write ──> replies
//!                           at most MAX_IN_FLIGHT batches in Raft at once
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_domain::{Action, Stamped};
use banyan_raft::{parts, AppliedState, Batch, Raft};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::errors::{write_error, ServiceError};

/// Largest number of commands in one entry.
pub const MAX_BATCH: usize = 512;
/// Entries proposed but not yet answered.
pub const MAX_IN_FLIGHT: usize = 2;
/// Largest encoded command, and the size past which a batch takes no more commands.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// Bytes of commands waiting for a batch at most; past it a write is refused with
/// `RESOURCE_EXHAUSTED` (retry later) instead of queueing without bound.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024 * 1024;

/// How long a proposed entry may wait for its commit before its callers are told the
/// outcome is unknown (the entry may still commit later).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

pub use banyan_api::Committed;

type Reply = oneshot::Sender<Result<Committed, ServiceError>>;

/// Hands commands to Raft in batches. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<(Stamped, usize, Reply)>,
    /// Bytes of the commands in `queue`, bounded by [`MAX_QUEUED_BYTES`].
    queued: Arc<AtomicUsize>,
    /// What this node applied: the parts of a command already in.
    applied: AppliedState,
}

impl Proposer {
    /// Starts the batching task for `raft`; it ends when every `Proposer` clone is dropped.
    pub fn start(raft: Raft, applied: AppliedState) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(raft, rx, queued.clone()));
        Self {
            queue,
            queued,
            applied,
        }
    }

    /// Proposes one command and waits for its result.
    pub async fn propose(&self, command: Stamped) -> Result<Committed, ServiceError> {
        let size = banyan_raft::codec::encode(&command).len();
        if size <= MAX_ENTRY_BYTES {
            return self.propose_entry(command, size).await;
        }
        let splittable = matches!(command.command.action, Action::ImportBranch(_));
        if !splittable || size > parts::MAX_WHOLE_BYTES {
            let most = if splittable {
                parts::MAX_WHOLE_BYTES
            } else {
                MAX_ENTRY_BYTES
            };
            return Err(ServiceError::TooLarge(format!(
                "the command is {size} bytes, more than the {most} it may have"
            )));
        }
        // In order, each part once committed: the last one answers for the whole. A
        // resend (its caller timed out) starts after the parts this replica has in.
        let id = parts::part_id(&command);
        let pieces = parts::split(&command, &id);
        let count = pieces.len();
        let done = {
            let applied = self.applied.read();
            let parts = &applied.parts;
            if parts.finished.iter().any(|(finished, _)| *finished == id) {
                // Whole already: its last part answers as the command did.
                count - 1
            } else {
                parts.pending.get(&id).map_or(0, |p| p.next as usize)
            }
        };
        let mut last = None;
        for (i, piece) in pieces.into_iter().enumerate().skip(done.min(count - 1)) {
            let size = banyan_raft::codec::encode(&piece).len();
            let committed = self.propose_entry(piece, size).await?;
            tracing::debug!(
                part = i,
                of = count,
                index = committed.index,
                "proposed part of a command"
            );
            last = Some(committed);
        }
        last.ok_or_else(|| ServiceError::Stopped("a command in no parts".into()))
    }

    async fn propose_entry(
        &self,
        command: Stamped,
        size: usize,
    ) -> Result<Committed, ServiceError> {
        let (reply, answer) = oneshot::channel();
        admit(&self.queued, size, MAX_QUEUED_BYTES)?;
        self.queue
            .send((command, size, reply))
            .map_err(|_| ServiceError::Stopped("proposer stopped".into()))?;
        // Queued, the command may have reached Raft before the proposer stopped.
        answer
            .await
            .map_err(|_| ServiceError::Interrupted("proposer stopped".into()))?
    }
}

/// Counts `size` more bytes into the queue, or refuses them past `limit`.
fn admit(queued: &AtomicUsize, size: usize, limit: usize) -> Result<(), ServiceError> {
    let before = queued.fetch_add(size, Ordering::AcqRel);
    if before.saturating_add(size) > limit {
        queued.fetch_sub(size, Ordering::AcqRel);
        return Err(ServiceError::TooLarge(format!(
            "the leader has {before} bytes of writes waiting, at most {limit}: retry shortly"
        )));
    }
    Ok(())
}

async fn run(
    raft: Raft,
    mut queue: mpsc::UnboundedReceiver<(Stamped, usize, Reply)>,
    queued: Arc<AtomicUsize>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut held_back: Option<(Stamped, usize, Reply)> = None;
    loop {
        let first = match held_back.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        // Wait for room first: commands arriving meanwhile join this batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut commands = Vec::new();
        let mut replies = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some((command, size, reply)) = next.take() {
            queued.fetch_sub(size, Ordering::AcqRel);
            // A caller that gave up (its deadline passed) must not have its write applied
            // late, possibly over newer writes.
            if !reply.is_closed() {
                commands.push(command);
                replies.push(reply);
                bytes += size;
            }
            if commands.len() < MAX_BATCH {
                match queue.try_recv() {
                    // One that would take the entry past its budget starts the next one.
                    Ok(more) if bytes + more.1 > MAX_ENTRY_BYTES => {
                        held_back = Some(more);
                    }
                    Ok(more) => next = Some(more),
                    Err(_) => {}
                }
            }
        }
        if commands.is_empty() {
            continue;
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // openraft 0.9 may never answer a write whose entry was overtaken by an installed
            // snapshot; the timeout frees the slot and tells the callers the outcome is open.
            let written =
                tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(Batch(commands))).await;
            let Ok(written) = written else {
                for reply in replies {
                    let _ = reply.send(Err(ServiceError::Unconfirmed));
                }
                return;
            };
            match written {
                Ok(written) => {
                    let index = written.log_id.index;
                    let mut results = written.data.0.into_iter();
                    for reply in replies {
                        let result = results.next().map_or_else(
                            || Err(ServiceError::Interrupted("batch answered short".into())),
                            |r| {
                                r.map(|events| Committed { index, events })
                                    .map_err(ServiceError::from)
                            },
                        );
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    let error = write_error(e);
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the proposer's queue had no bound; a leader slower than its callers
    /// held their commands in memory without limit.
    #[test]
    fn writes_past_the_queue_budget_are_refused_and_change_nothing() {
        let queued = AtomicUsize::new(0);
        admit(&queued, 600, 1_000).unwrap();
        let refused = admit(&queued, 500, 1_000).unwrap_err();
        assert!(matches!(refused, ServiceError::TooLarge(_)), "{refused:?}");
        assert_eq!(
            queued.load(Ordering::Acquire),
            600,
            "the refused write is not counted"
        );
        admit(&queued, 400, 1_000).unwrap();
    }
}
