//! `RaftLogStorage` on sled: the Raft log and the vote, durable before they are reported.
//!
//! Keys of the `log` tree are big-endian indexes, so sled's order is log order. Values are
//! [`codec`](crate::codec)-encoded entries. An append is written to sled at once (so the
//! next read sees it) and reported done only after a sync to disk covering it
//! ([`DurableDb::sync`]: sled's flush, then `fdatasync`): one flusher task collects every
//! append that arrives while a sync runs and covers them all with the next one.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageIOError,
};
use tokio::sync::mpsc;

use crate::codec;
use crate::durable::DurableDb;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// The Raft log of one node. Cheap to clone: clones share the sled trees and the flusher.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: DurableDb,
    /// Index (big-endian) → encoded entry.
    log: sled::Tree,
    /// Vote, committed and last purged log ids.
    meta: sled::Tree,
    /// Appends waiting for a flush; the flusher task completes them.
    flush_requests: mpsc::UnboundedSender<LogFlushed<TypeConfig>>,
    /// Last committed index openraft reported, for status displays (0 = none).
    committed_index: AtomicU64,
    /// Flushes done by the flusher task, for metrics.
    flushes: AtomicU64,
    /// Purges of the log after snapshots since the node started, for metrics.
    purges: AtomicU64,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn vote_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Vote, verb, AnyError::new(&e)).into()
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    /// Opens the log trees of `db` and starts the flusher task on the current runtime.
    pub fn open(durable: &DurableDb) -> Result<Self, sled::Error> {
        let db = durable.db();
        let (tx, rx) = mpsc::unbounded_channel();
        let store = Self {
            inner: Arc::new(Inner {
                db: durable.clone(),
                log: db.open_tree("log")?,
                meta: db.open_tree("log_meta")?,
                flush_requests: tx,
                committed_index: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                purges: AtomicU64::new(0),
            }),
        };
        if let Ok(Some(committed)) = store.stored_committed() {
            store
                .inner
                .committed_index
                .store(committed.index, Ordering::Relaxed);
        }
        tokio::spawn(flusher(
            store.inner.db.clone(),
            rx,
            Arc::downgrade(&store.inner),
        ));
        Ok(store)
    }

    /// The last committed index openraft has reported to this store.
    pub fn committed_index(&self) -> u64 {
        self.inner.committed_index.load(Ordering::Relaxed)
    }

    /// How many times the log was purged after a snapshot since the node started.
    pub fn purge_count(&self) -> u64 {
        self.inner.purges.load(Ordering::Relaxed)
    }

    /// How many flushes have covered appends so far.
    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.inner.meta.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes).map(Some).map_err(read_err),
        }
    }

    /// The committed log id last saved (saved as an `Option`, hence the flatten).
    fn stored_committed(&self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        match self.inner.log.last().map_err(read_err)? {
            None => Ok(None),
            Some((_, bytes)) => Ok(Some(
                codec::decode::<Entry>(&bytes).map_err(read_err)?.log_id,
            )),
        }
    }

    async fn flush(&self) -> Result<(), io::Error> {
        self.inner.db.sync_async().await
    }
}

/// Completes appends after a flush that covers them. Every request that queued while a
/// flush ran is covered by the next single flush.
async fn flusher(
    db: DurableDb,
    mut requests: mpsc::UnboundedReceiver<LogFlushed<TypeConfig>>,
    inner: std::sync::Weak<Inner>,
) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = requests.try_recv() {
            batch.push(more);
        }
        let result = db.sync_async().await;
        if let Some(inner) = inner.upgrade() {
            inner.flushes.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "flushing the Raft log failed; the node will stop");
        }
        for callback in batch {
            let result = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            callback.log_io_completed(result);
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.inner
            .log
            .range::<[u8; 8], _>((start, end))
            .map(|item| {
                let (_, bytes) = item.map_err(read_err)?;
                codec::decode::<Entry>(&bytes).map_err(read_err)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.read_meta::<LogId>(KEY_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.inner
            .meta
            .insert(KEY_VOTE, codec::encode(vote))
            .map_err(|e| vote_err(ErrorVerb::Write, e))?;
        // A vote must survive a crash before the node acts on it.
        self.flush()
            .await
            .map_err(|e| vote_err(ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        match self
            .inner
            .meta
            .get(KEY_VOTE)
            .map_err(|e| vote_err(ErrorVerb::Read, e))?
        {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| vote_err(ErrorVerb::Read, e)),
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: a committed id lost in a crash is learned again from the leader.
        // Kept so that a restarted node re-applies what it knew to be committed.
        self.inner
            .meta
            .insert(KEY_COMMITTED, codec::encode(&committed))
            .map_err(write_err)?;
        let index = committed.map_or(0, |c| c.index);
        self.inner.committed_index.store(index, Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.stored_committed()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&key(entry.log_id.index), codec::encode(&entry));
        }
        self.inner.log.apply_batch(batch).map_err(write_err)?;
        self.inner
            .flush_requests
            .send(callback)
            .map_err(|_| write_err(io::Error::other("the log flusher has stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.inner.log.range(key(log_id.index)..) {
            let (k, _) = item.map_err(read_err)?;
            batch.remove(k);
        }
        self.inner.log.apply_batch(batch).map_err(write_err)?;
        // Durable before openraft appends the leader's entries in place of the removed ones.
        self.flush().await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point before removing entries, so a crash between the two
        // leaves extra entries behind the purge point rather than a gap without one.
        self.inner
            .meta
            .insert(KEY_PURGED, codec::encode(&log_id))
            .map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for item in self.inner.log.range(..=key(log_id.index)) {
            let (k, _) = item.map_err(read_err)?;
            batch.remove(k);
        }
        self.inner.log.apply_batch(batch).map_err(write_err)?;
        self.inner.purges.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
