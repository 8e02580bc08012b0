//! The event log: every applied domain event on this node's disk, numbered by log index
//! and ordinal, so a watcher resumes from any index within the retention window across
//! restarts and snapshot installs (the in-memory feed holds only the newest).
//!
//! Written by the state machine while applying, into a sled database of its own beside the
//! node's main one (`events/` next to `sled/`). It is not synced with every Raft append:
//! every event would otherwise add its pages to each commit's `fdatasync`, which cost the
//! write path about 15 % (docs/benchmarks.md). sled flushes it in the background every
//! second, and the state machine flushes it before it stores a snapshot, so every event
//! up to a stored snapshot is on disk; those after it are written again when the Raft log
//! after the snapshot is applied again at restart. A snapshot sent to another node carries
//! the sender's log, so the receiver can serve the events before its snapshot too. Each
//! node prunes its own by age ([`EventLog::prune_before`]).

use std::path::Path;
use std::time::Duration;

use banyan_env::{Clock, Shutdown};
use banyan_events::EventRecord;

use crate::codec;
use crate::durable::DurableDb;
use crate::history::{prune_by_age, HistoryError};

/// The events this node holds on disk. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    db: sled::Db,
    tree: sled::Tree,
    /// `from` → the first log index whose events the log holds completely (entries
    /// without events included: the log covers every index from there on).
    meta: sled::Tree,
}

const KEY_FROM: &[u8] = b"from";

fn key(index: u64, ordinal: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&index.to_be_bytes());
    key[8..].copy_from_slice(&ordinal.to_be_bytes());
    key
}

impl EventLog {
    /// Opens (or creates) the event log in directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, HistoryError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(1_000))
            .open()?;
        Ok(Self {
            tree: db.open_tree("events")?,
            meta: db.open_tree("events_meta")?,
            db,
        })
    }

    /// Opens the event log that belongs beside the node's main database `db`.
    pub fn beside(db: &DurableDb) -> Result<Self, HistoryError> {
        Self::open(&db.dir().with_file_name("events"))
    }

    /// Writes what was appended to disk.
    pub async fn flush(&self) -> Result<(), HistoryError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// The first log index from which the log holds every event, if it was ever set.
    pub fn covers_from(&self) -> Result<Option<u64>, HistoryError> {
        Ok(self
            .meta
            .get(KEY_FROM)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map(u64::from_be_bytes))
    }

    /// Declares that the log holds every event from log index `from` on.
    pub fn set_covers_from(&self, from: u64) -> Result<(), HistoryError> {
        self.meta.insert(KEY_FROM, &from.to_be_bytes())?;
        Ok(())
    }

    /// Where a node's log covers from when it has not said yet: the first entry it will
    /// apply itself (after the snapshot it starts from). A node of an earlier build has no
    /// events on disk from before.
    pub fn cover_from_if_unset(&self, first_applied: u64) -> Result<(), HistoryError> {
        if self.covers_from()?.is_none() {
            self.set_covers_from(first_applied)?;
        }
        Ok(())
    }

    /// Writes applied events. Not synced here: the next sync covers them, and the Raft log
    /// holds their commands until then.
    pub fn append(&self, records: &[EventRecord]) -> Result<(), HistoryError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for record in records {
            batch.insert(&key(record.index, record.ordinal), codec::encode(record));
        }
        Ok(self.tree.apply_batch(batch)?)
    }

    fn decode(&self, bytes: &[u8]) -> Result<EventRecord, HistoryError> {
        codec::decode(bytes).map_err(|source| HistoryError::Corrupt {
            id: "event".into(),
            source,
        })
    }

    /// Up to `limit` events from log index `from` on and before index `before`, in order.
    pub fn read(
        &self,
        from: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, HistoryError> {
        self.read_after(from, None, before, limit)
    }

    /// Up to `limit` events of index `from` after ordinal `after` (all of them for `None`)
    /// and of later indexes before `before`, in order: where a reader that stopped in the
    /// middle of an entry goes on.
    pub fn read_after(
        &self,
        from: u64,
        after: Option<u32>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, HistoryError> {
        let mut out = Vec::new();
        let start = match after {
            None => key(from, 0),
            Some(u32::MAX) => key(from.saturating_add(1), 0),
            Some(ordinal) => key(from, ordinal + 1),
        };
        if start >= key(before, 0) {
            return Ok(out);
        }
        for item in self.tree.range(start..key(before, 0)) {
            if out.len() >= limit {
                break;
            }
            let (_, value) = item?;
            out.push(self.decode(&value)?);
        }
        Ok(out)
    }

    /// The newest events, oldest first, up to `max_bytes` of them encoded, and the index
    /// from which they are complete: what a snapshot sent to another node carries.
    pub fn newest(&self, max_bytes: usize) -> Result<(Vec<EventRecord>, u64), HistoryError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut cut = false;
        for item in self.tree.iter().rev() {
            let (_, value) = item?;
            bytes += value.len();
            if bytes > max_bytes {
                cut = true;
                break;
            }
            out.push(self.decode(&value)?);
        }
        out.reverse();
        // Cut short, the events are complete from the entry after the one cut (its other
        // events may be missing).
        let covers = self.covers_from()?.unwrap_or(0);
        let from = match (cut, out.first()) {
            (true, Some(first)) => (first.index + 1).max(covers),
            (true, None) => u64::MAX,
            (false, _) => covers,
        };
        let out = out.into_iter().filter(|r| r.index >= from).collect();
        Ok((out, from))
    }

    /// Removes events stamped before `before_ms`, oldest first, at most `limit` per call;
    /// returns how many went. Events are in log order, which is stamp order. The log
    /// covers from past the last one removed.
    pub fn prune_before(&self, before_ms: i64, limit: usize) -> Result<usize, HistoryError> {
        let mut n = 0;
        let mut past = None;
        for item in self.tree.iter() {
            if n >= limit {
                break;
            }
            let (k, value) = item?;
            let record = self.decode(&value)?;
            if record.at_ms >= before_ms {
                break;
            }
            self.tree.remove(k)?;
            past = Some(record.index + 1);
            n += 1;
        }
        if let Some(past) = past {
            let from = self.covers_from()?.unwrap_or(0).max(past);
            self.set_covers_from(from)?;
        }
        Ok(n)
    }

    /// Keeps the events stamped within `keep` of `clock`, pruning the rest now and every
    /// [`PRUNE_EVERY`](crate::history::PRUNE_EVERY) until `shutdown` begins.
    pub async fn keep_for(self, keep: Duration, clock: Clock, shutdown: Shutdown) {
        let prune = move |before_ms, limit| self.prune_before(before_ms, limit);
        prune_by_age("event log", keep, clock, shutdown, prune).await
    }

    /// How many events this node holds.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banyan_domain::Event;

    fn record(index: u64, ordinal: u32, at_ms: i64) -> EventRecord {
        EventRecord {
            index,
            ordinal,
            at_ms,
            principal: None,
            event: Event::QueueUpserted {
                queue_id: format!("q{index}.{ordinal}"),
            },
        }
    }

    #[test]
    fn events_are_read_back_in_log_order_and_pruned_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append(&[record(2, 0, 20), record(2, 1, 20)]).unwrap();
        log.append(&[record(10, 0, 30), record(300, 0, 40)])
            .unwrap();
        // Written again on a replay: the same keys.
        log.append(&[record(2, 0, 20)]).unwrap();
        assert_eq!(log.len(), 4);
        let got = log.read(2, 300, 10).unwrap();
        assert_eq!(
            got.iter().map(|r| (r.index, r.ordinal)).collect::<Vec<_>>(),
            [(2, 0), (2, 1), (10, 0)]
        );
        assert_eq!(log.read(3, 300, 10).unwrap()[0], record(10, 0, 30));
        assert_eq!(log.read(2, 300, 1).unwrap().len(), 1);
        assert_eq!(log.read(0, 400, 1).unwrap()[0].index, 2, "the oldest held");
        log.set_covers_from(1).unwrap();
        assert_eq!(log.prune_before(30, 100).unwrap(), 2);
        assert_eq!(log.read(0, 400, 1).unwrap()[0].index, 10, "the oldest left");
        assert_eq!(log.covers_from().unwrap(), Some(3), "past what went");
        assert_eq!(
            log.newest(usize::MAX).unwrap(),
            (log.read(0, 400, 10).unwrap(), 3)
        );
        let one = log.read(300, 301, 1).unwrap()[0].clone();
        let fits_one = crate::codec::encode(&one).len();
        let (newest, from) = log.newest(fits_one).unwrap();
        assert_eq!(
            (newest, from),
            (vec![], 301),
            "cut inside the entry before: from the next"
        );
    }
}
