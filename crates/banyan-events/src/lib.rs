//! The feed of domain events as a state machine applies them: a bounded in-memory
//! history for resuming watchers, and a broadcast for live ones; and [`ApplyHook`], the one
//! way a state machine hands its applied events to whoever subscribes.
//!
//! Every event is numbered by the log index of its entry and its ordinal within that
//! entry, so a watcher that reconnects with the last index it saw misses nothing and sees
//! nothing twice. The feed holds only a window of recent events, bounded by bytes
//! ([`RETAINED_BYTES`]); after a restart (or an installed snapshot) it starts at the first
//! entry applied since, and older indexes answer [`Compacted`]: a node with an event log
//! on disk serves those from there.
//!
//! The replicated state machine (banyan-raft) knows only the hook; the core and the branch
//! own their feeds, and the services subscribe to them.

#![warn(missing_docs)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use banyan_domain::{Event, Principal};
use tokio::sync::broadcast;

/// How many bytes of recent events a node keeps in memory for resuming watchers (counted
/// as their encoded size plus a fixed overhead each); older ones are read from the node's
/// event log on disk, where it has one.
pub const RETAINED_BYTES: usize = 64 << 20;
/// What one retained event costs beyond its encoded size: its `Arc`, its slot and the
/// boxes of its strings, roughly.
const RECORD_OVERHEAD: usize = 96;
/// How far a live watcher may fall behind before it is told it lagged.
const LIVE_BUFFER: usize = 16_384;

/// One event with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    /// The log index of the entry whose command produced the event: where a watcher resumes.
    pub index: u64,
    /// The event's place among the events of that entry, from 0.
    pub ordinal: u32,
    /// Leader-stamped time of the command that produced it.
    pub at_ms: i64,
    /// Who caused that command (the audit trail).
    pub principal: Option<Principal>,
    /// The domain event itself.
    pub event: Event,
}

/// Events from the requested index are no longer retained on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("events before log index {oldest} are not retained on this node")]
pub struct Compacted {
    /// The first log index whose events this node still holds; a watcher must resume there or
    /// later.
    pub oldest: u64,
}

/// Retained events from some index on, and a receiver for everything after them.
pub type Subscription = (Vec<Arc<EventRecord>>, broadcast::Receiver<Arc<EventRecord>>);

/// Where a state machine hands what it applied, in log order. Called while applying, so
/// an implementation must not block: it queues or publishes and returns.
pub trait ApplyHook: Send + Sync + 'static {
    /// The new events of one applied entry (none for an entry that made none).
    fn applied(&self, records: Vec<EventRecord>);
    /// The state was replaced by a snapshot covering the log up to `index`: events before
    /// it will never be handed over.
    fn replaced_after(&self, index: u64);
}

/// A hook that keeps nothing: for opening a node's stores to read or check them, with
/// nobody to hand events to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl ApplyHook for Discard {
    fn applied(&self, _: Vec<EventRecord>) {}
    fn replaced_after(&self, _: u64) {}
}

impl ApplyHook for EventFeed {
    fn applied(&self, records: Vec<EventRecord>) {
        self.publish(records);
    }
    fn replaced_after(&self, index: u64) {
        self.reset_after(index);
    }
}

/// Shared by the state machine (which publishes) and the services (which subscribe).
#[derive(Clone)]
pub struct EventFeed {
    inner: Arc<Mutex<FeedInner>>,
}

struct FeedInner {
    retained: VecDeque<(Arc<EventRecord>, usize)>,
    /// What `retained` costs, by [`record_bytes`].
    bytes: usize,
    /// The first log index whose events the feed holds completely.
    oldest: u64,
    /// Replaced when the feed restarts, which closes every live receiver: a subscriber
    /// learns that it missed events instead of silently skipping them.
    live: broadcast::Sender<Arc<EventRecord>>,
}

impl Default for EventFeed {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(FeedInner {
                retained: VecDeque::new(),
                bytes: 0,
                oldest: 1,
                live: broadcast::channel(LIVE_BUFFER).0,
            })),
        }
    }
}

impl EventFeed {
    fn lock(&self) -> std::sync::MutexGuard<'_, FeedInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the events of one applied entry.
    pub fn publish(&self, records: Vec<EventRecord>) {
        let mut inner = self.lock();
        for record in records {
            let record = Arc::new(record);
            let bytes = record_bytes(&record);
            inner.bytes += bytes;
            inner.retained.push_back((record.clone(), bytes));
            // No receivers is fine: nobody is watching.
            let _ = inner.live.send(record);
        }
        while inner.bytes > RETAINED_BYTES {
            let Some((dropped, bytes)) = inner.retained.pop_front() else {
                break;
            };
            inner.bytes -= bytes;
            // The dropped entry's events may be partly gone: start after it.
            inner.oldest = inner.oldest.max(dropped.index + 1);
        }
    }

    /// The feed restarts after `index` (a snapshot was loaded): earlier events are gone.
    pub fn reset_after(&self, index: u64) {
        let mut inner = self.lock();
        inner.retained.clear();
        inner.bytes = 0;
        inner.oldest = index + 1;
        inner.live = broadcast::channel(LIVE_BUFFER).0;
    }

    /// The retained events from log index `from` on, and a receiver for everything
    /// published after them: together, every event from `from` exactly once.
    pub fn subscribe_from(&self, from: u64) -> Result<Subscription, Compacted> {
        let inner = self.lock();
        let from = from.max(1);
        if from < inner.oldest {
            return Err(Compacted {
                oldest: inner.oldest,
            });
        }
        let start = inner.retained.partition_point(|(r, _)| r.index < from);
        let backlog = inner
            .retained
            .range(start..)
            .map(|(r, _)| r.clone())
            .collect();
        // Subscribing under the lock: nothing is published between the two.
        Ok((backlog, inner.live.subscribe()))
    }

    /// Every retained event, and a receiver for what follows.
    pub fn subscribe_retained(&self) -> Subscription {
        let inner = self.lock();
        let backlog = inner.retained.iter().map(|(r, _)| r.clone()).collect();
        (backlog, inner.live.subscribe())
    }

    /// A receiver of live events only.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.lock().live.subscribe()
    }

    /// Ends every live subscription, so subscribers start over from the node's current
    /// source (a branch switching between its replica and its own routing).
    pub fn close_subscribers(&self) {
        self.lock().live = broadcast::channel(LIVE_BUFFER).0;
    }

    /// The first log index whose events this node still holds.
    pub fn oldest(&self) -> u64 {
        self.lock().oldest
    }
}

/// What a record costs the in-memory window: its encoded size and a fixed overhead.
fn record_bytes(record: &EventRecord) -> usize {
    postcard::experimental::serialized_size(record).unwrap_or(0) + RECORD_OVERHEAD
}

impl EventFeed {
    /// Whether `other` is this same feed (a clone of it), not another with the same events.
    pub fn is(&self, other: &EventFeed) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The in-memory window's cost in bytes and its number of events.
    pub fn retained(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.bytes, inner.retained.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64, ordinal: u32) -> EventRecord {
        EventRecord {
            index,
            ordinal,
            at_ms: 0,
            principal: None,
            event: Event::QueueUpserted {
                queue_id: format!("q{index}.{ordinal}"),
            },
        }
    }

    #[test]
    fn resumes_from_an_index_without_gaps_or_repeats() {
        let feed = EventFeed::default();
        feed.publish(vec![record(1, 0), record(1, 1)]);
        feed.publish(vec![record(3, 0)]);
        let (backlog, mut live) = feed.subscribe_from(2).unwrap();
        assert_eq!(
            backlog
                .iter()
                .map(|r| (r.index, r.ordinal))
                .collect::<Vec<_>>(),
            [(3, 0)]
        );
        feed.publish(vec![record(4, 0)]);
        assert_eq!(live.try_recv().unwrap().index, 4);
        assert!(live.try_recv().is_err());
    }

    #[test]
    fn refuses_indexes_before_a_reset() {
        let feed = EventFeed::default();
        feed.publish(vec![record(1, 0)]);
        let (_, mut live) = feed.subscribe_from(1).unwrap();
        feed.reset_after(10);
        assert!(
            matches!(live.try_recv(), Err(broadcast::error::TryRecvError::Closed)),
            "a restart ends live subscriptions"
        );
        assert_eq!(
            feed.subscribe_from(5).unwrap_err(),
            Compacted { oldest: 11 }
        );
        assert!(feed.subscribe_from(11).unwrap().0.is_empty());
    }

    /// Regression: the window was bounded by a count of events, so a run of large events
    /// (imports with thousands of contacts) held any amount of memory. It holds at most
    /// RETAINED_BYTES, dropping the oldest whole entries first.
    #[test]
    fn the_window_is_bounded_by_bytes_not_count() {
        let feed = EventFeed::default();
        let big = |index: u64| EventRecord {
            event: Event::QueueUpserted {
                queue_id: "q".repeat(1 << 20),
            },
            ..record(index, 0)
        };
        for index in 1..=100 {
            feed.publish(vec![big(index)]);
        }
        let (bytes, count) = feed.retained();
        assert!(bytes <= RETAINED_BYTES, "{bytes} bytes");
        assert!((60..100).contains(&count), "{count} events of 1 MiB");
        assert_eq!(feed.oldest(), 101 - count as u64);
        assert_eq!(
            feed.subscribe_from(1).unwrap_err(),
            Compacted {
                oldest: feed.oldest()
            }
        );
    }
}
