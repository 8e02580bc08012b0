//! A durable outbox on the branch's database: records the branch must deliver to the core
//! later (its self-served contacts, its journal of work done alone, its accepts in doubt),
//! each acknowledged to the caller only once it is on disk.
//!
//! Entries are numbered in append order. Each carries the caller's idempotency key; the
//! key maps to the answer the caller got, and stays after the entry is delivered, so a
//! client that retries gets the same answer and no second entry, until the branch lets
//! answers go a day after they were given ([`Outbox::forget_answers_before`]).
//!
//! One sled tree, four key spaces: `e` + sequence (big-endian) → entry, `k` + key →
//! answer, `t` + time given (ms, big-endian) + key → the entry's sequence (which answers to
//! let go, and when), and `n` → the last sequence handed out, so numbering never restarts
//! even once every entry is delivered (a branch's journal sequence is its high-water mark
//! at the core). Everything one append writes goes in one batch, so a crash leaves all or
//! none.

#![allow(
    clippy::result_large_err,
    reason = "StoreError carries openraft's StorageError, a large type, as banyan-raft's stores do"
)]

use std::sync::atomic::{AtomicU64, Ordering};

use banyan_raft::{Database, DurableTree, StoreError};

const ENTRY: u8 = b'e';
const KEY: u8 = b'k';
const LAST: [u8; 1] = [b'n'];
const GIVEN: u8 = b't';

fn given_key(at_ms: i64, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 9);
    out.push(GIVEN);
    out.extend_from_slice(&at_ms.max(0).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn entry_key(seq: u64) -> [u8; 9] {
    let mut key = [ENTRY; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn answer_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(KEY);
    out.extend_from_slice(key);
    out
}

/// What [`Outbox::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// A new entry, on disk under this sequence number.
    New(u64),
    /// The key was used before: the answer given then.
    Existing(Vec<u8>),
}

/// One durable log on the branch's disk, kept until the core has what it records (see the
/// module docs for its keys).
pub struct Outbox {
    tree: DurableTree,
    next: AtomicU64,
}

impl Outbox {
    /// Opens (or creates) the outbox `name` in the node's database.
    pub fn open(db: &Database, name: &str) -> Result<Self, StoreError> {
        let tree = db.tree(name)?;
        let last_entry = tree
            .last_key_with_prefix(&[ENTRY])?
            .map(|k| be_u64(k.get(1..9)))
            .transpose()?
            .unwrap_or(0);
        let last_handed_out = tree
            .get(&LAST)?
            .map(|v| be_u64(v.get(..8)))
            .transpose()?
            .unwrap_or(0);
        let last = last_entry.max(last_handed_out);
        Ok(Self {
            tree,
            next: AtomicU64::new(last + 1),
        })
    }

    /// Appends `entry` with the caller's idempotency `key` and the `answer` the caller gets
    /// at `now_ms`, and returns once both are on disk; or returns the earlier answer for a
    /// known key.
    pub async fn append(
        &self,
        key: &str,
        answer: &[u8],
        entry: &[u8],
        now_ms: i64,
    ) -> Result<Appended, StoreError> {
        if let Some(existing) = self.tree.get(&answer_key(key.as_bytes()))? {
            return Ok(Appended::Existing(existing));
        }
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        self.tree.insert_all(&[
            (&entry_key(seq), entry),
            (&LAST, &seq.to_be_bytes()),
            (&answer_key(key.as_bytes()), answer),
            (&given_key(now_ms, key), &seq.to_be_bytes()),
        ])?;
        self.tree.sync().await?;
        Ok(Appended::New(seq))
    }

    /// Makes the next sequence number handed out greater than `seq` (a branch's journal
    /// continues past what the core has already reconciled for its site, even on a fresh
    /// data directory). Taken on disk with the next push.
    pub fn advance_past(&self, seq: u64) {
        self.next.fetch_max(seq.saturating_add(1), Ordering::SeqCst);
    }

    /// Appends `entry` without an idempotency key (for records nobody retries, such as a
    /// journal), and returns its sequence number once it is on disk. Nothing of it stays
    /// once delivered.
    pub async fn push(&self, entry: &[u8]) -> Result<u64, StoreError> {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        self.tree
            .insert_all(&[(&entry_key(seq), entry), (&LAST, &seq.to_be_bytes())])?;
        self.tree.sync().await?;
        Ok(seq)
    }

    /// Up to `limit` entries not yet delivered, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.tree
            .scan_prefix(&[ENTRY], limit)?
            .into_iter()
            .map(|(k, v)| Ok((be_u64(k.get(1..9))?, v)))
            .collect()
    }

    /// Entries not yet delivered.
    pub fn backlog(&self) -> u64 {
        self.tree.count_prefix(&[ENTRY])
    }

    /// Lets go of the answers given before `before_ms` whose entries were delivered, at
    /// most `limit`; returns how many went. A retry with such a key after that is a new
    /// request. Answers of entries still waiting for the core stay.
    pub async fn forget_answers_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut forgotten = 0;
        for (given, seq) in self.tree.scan_prefix(&[GIVEN], limit)? {
            let at_ms = be_u64(given.get(1..9))? as i64;
            if at_ms >= before_ms {
                break;
            }
            if self.tree.get(&entry_key(be_u64(seq.get(..8))?))?.is_some() {
                continue;
            }
            self.tree
                .remove(&answer_key(given.get(9..).unwrap_or_default()))?;
            self.tree.remove(&given)?;
            forgotten += 1;
        }
        if forgotten > 0 {
            self.tree.sync().await?;
        }
        Ok(forgotten)
    }

    /// How many answers the outbox still gives to retries.
    pub fn answers(&self) -> u64 {
        self.tree.count_prefix(&[KEY])
    }

    /// Marks entry `seq` delivered. Its key keeps its answer.
    pub async fn delivered(&self, seq: u64) -> Result<(), StoreError> {
        self.tree.remove(&entry_key(seq))?;
        self.tree.sync().await
    }
}

/// A sequence number stored big-endian; a record too short to hold one is corrupt.
fn be_u64(bytes: Option<&[u8]>) -> Result<u64, StoreError> {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Flush("a record too short for its sequence number".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_durably_and_answers_a_retry_with_the_first_answer() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (db, _, _) =
                banyan_raft::open_stores(dir.path(), std::sync::Arc::new(banyan_events::Discard))
                    .unwrap();
            let outbox = Outbox::open(&db, "outbox").unwrap();
            assert_eq!(
                outbox.append("r1", b"a1", b"e1", 1_000).await.unwrap(),
                Appended::New(1)
            );
            assert_eq!(
                outbox.append("r2", b"a2", b"e2", 1_000).await.unwrap(),
                Appended::New(2)
            );
            assert_eq!(
                outbox
                    .append("r1", b"other", b"other", 1_000)
                    .await
                    .unwrap(),
                Appended::Existing(b"a1".to_vec())
            );
            outbox.delivered(1).await.unwrap();
        }
        // Reopened: the undelivered entry is still there, numbering continues, keys stay.
        let (db, _, _) =
            banyan_raft::open_stores(dir.path(), std::sync::Arc::new(banyan_events::Discard))
                .unwrap();
        let outbox = Outbox::open(&db, "outbox").unwrap();
        assert_eq!(outbox.pending(10).unwrap(), vec![(2, b"e2".to_vec())]);
        assert_eq!(
            outbox.append("r3", b"a3", b"e3", 1_000).await.unwrap(),
            Appended::New(3)
        );
        assert_eq!(
            outbox.append("r1", b"x", b"x", 1_000).await.unwrap(),
            Appended::Existing(b"a1".to_vec())
        );
        assert_eq!(outbox.backlog(), 2);
    }

    #[tokio::test]
    async fn numbering_never_restarts_even_with_everything_delivered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (db, _, _) =
                banyan_raft::open_stores(dir.path(), std::sync::Arc::new(banyan_events::Discard))
                    .unwrap();
            let journal = Outbox::open(&db, "journal").unwrap();
            assert_eq!(journal.push(b"j1").await.unwrap(), 1);
            assert_eq!(journal.push(b"j2").await.unwrap(), 2);
            journal.delivered(1).await.unwrap();
            journal.delivered(2).await.unwrap();
            assert_eq!(journal.backlog(), 0);
        }
        let (db, _, _) =
            banyan_raft::open_stores(dir.path(), std::sync::Arc::new(banyan_events::Discard))
                .unwrap();
        let journal = Outbox::open(&db, "journal").unwrap();
        assert_eq!(journal.push(b"j3").await.unwrap(), 3);
        assert_eq!(journal.pending(10).unwrap(), vec![(3, b"j3".to_vec())]);
    }

    /// Regression: every self-served contact's answer stayed on the branch's disk for
    /// ever. Answers of delivered entries go once they are older than the cutoff; those
    /// of entries still waiting for the core stay, and so does every newer one.
    #[tokio::test]
    async fn delivered_answers_past_the_cutoff_are_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _, _) =
            banyan_raft::open_stores(dir.path(), std::sync::Arc::new(banyan_events::Discard))
                .unwrap();
        let outbox = Outbox::open(&db, "outbox").unwrap();
        outbox
            .append("old-done", b"a1", b"e1", 1_000)
            .await
            .unwrap();
        outbox
            .append("old-waiting", b"a2", b"e2", 2_000)
            .await
            .unwrap();
        outbox
            .append("new-done", b"a3", b"e3", 9_000)
            .await
            .unwrap();
        outbox.delivered(1).await.unwrap();
        outbox.delivered(3).await.unwrap();
        assert_eq!(outbox.answers(), 3);
        assert_eq!(outbox.forget_answers_before(5_000, 100).await.unwrap(), 1);
        assert_eq!(outbox.answers(), 2);
        // The forgotten key is a new request now; the others still answer as before.
        assert_eq!(
            outbox
                .append("old-done", b"b1", b"f1", 10_000)
                .await
                .unwrap(),
            Appended::New(4)
        );
        assert_eq!(
            outbox
                .append("old-waiting", b"x", b"x", 10_000)
                .await
                .unwrap(),
            Appended::Existing(b"a2".to_vec())
        );
        assert_eq!(
            outbox.append("new-done", b"x", b"x", 10_000).await.unwrap(),
            Appended::Existing(b"a3".to_vec())
        );
        // Once delivered, the waiting one goes too.
        outbox.delivered(2).await.unwrap();
        assert_eq!(outbox.forget_answers_before(5_000, 100).await.unwrap(), 1);
    }
}
