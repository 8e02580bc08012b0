//! The history store: every finished contact, on this node's disk, written while applying
//! the command that finished it, so every replica holds the same history and it survives
//! restarts. The routing state lets finished contacts go after a retention window
//! (`Action::ForgetFinished`); reads of older contacts come here.
//!
//! # Why sled trees
//! The history lives in three trees of the node's own sled database, beside the Raft log
//! and the snapshots, not in a second engine:
//! * one `fdatasync` ([`DurableDb::sync`]) makes the log, the snapshot and the history
//!   durable together, so a snapshot is never on disk without the history written before
//!   it (a replay after a crash rewrites the rest, and a rewrite is idempotent);
//! * sled is already a dependency that the conformance suite and the fault tests cover;
//!   another engine (RocksDB, fjall, redb) would add a second write-ahead log to size,
//!   sync and operate for what is here an append-mostly keyed table read by id, by time
//!   and by customer.
//!
//! If history outgrows sled (billions of rows), this module is the one place to change.
//!
//! # Layout
//! * `history`: contact id → the contact as it finished (Banyan's versioned codec). An id a
//!   client reuses after its contact left the routing state names a new contact; the newer
//!   record replaces the older one.
//! * `history_by_time`: finish time (big-endian, sign bit flipped) ‖ id → nothing.
//! * `history_by_customer`: customer id ‖ 0 ‖ finish time ‖ id → nothing.
//! * `history_by_seq`: this node's own order of recording (big-endian) → id: what the
//!   contact detail record export follows. A record written again unchanged (a replay)
//!   takes no new number.
//!
//! Index entries whose record has since been replaced are skipped when read.

use std::time::Duration;

use banyan_domain::Contact;
use banyan_env::{Clock, Shutdown};

use crate::codec;
use crate::durable::DurableDb;

/// Why the history could not be read or written: the disk, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// sled failed.
    #[error("history store: {0}")]
    Store(#[from] sled::Error),
    /// A record did not decode: the node must not guess at it.
    #[error("history record {id}: {source}")]
    Corrupt {
        /// The contact whose record is unreadable.
        id: String,
        /// Why.
        source: codec::CodecError,
    },
}

/// The finished contacts this node holds on disk. Cheap to clone.
#[derive(Clone)]
pub struct History {
    db: sled::Db,
    records: sled::Tree,
    by_time: sled::Tree,
    by_customer: sled::Tree,
    by_seq: sled::Tree,
}

/// How often a node prunes its history past its retention.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10 * 60);
/// The most records one pruning step removes before it lets others at the disk.
const PRUNE_BATCH: usize = 10_000;

/// Runs `prune(before_ms, limit)` (removing what is older than `keep` by `clock`, at most
/// `limit` at a time) now and every [`PRUNE_EVERY`] until `shutdown` begins: the local
/// retention of the history store and of the event log.
pub async fn prune_by_age<F>(
    what: &'static str,
    keep: Duration,
    clock: Clock,
    shutdown: Shutdown,
    prune: F,
) where
    F: Fn(i64, usize) -> Result<usize, HistoryError> + Clone + Send + 'static,
{
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    loop {
        let before_ms = clock().saturating_sub(keep_ms);
        let mut total = 0;
        loop {
            let step = prune.clone();
            match tokio::task::spawn_blocking(move || step(before_ms, PRUNE_BATCH)).await {
                Ok(Ok(n)) => {
                    total += n;
                    if n < PRUNE_BATCH {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, what, "pruning failed; trying again later");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, what, "the pruning task failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(pruned = total, before_ms, what, "pruned past the retention");
        }
        tokio::select! {
            () = shutdown.begun() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

/// An order-preserving key for a time that may be negative.
fn time_key(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_of(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// Where a listing of history stops and the next page starts: a finish time and an id.
pub type HistoryCursor = (i64, String);

impl History {
    /// Opens (or creates) the history trees of `db`.
    pub fn open(db: &DurableDb) -> Result<Self, HistoryError> {
        let db = db.db();
        Ok(Self {
            db: db.clone(),
            records: db.open_tree("history")?,
            by_time: db.open_tree("history_by_time")?,
            by_customer: db.open_tree("history_by_customer")?,
            by_seq: db.open_tree("history_by_seq")?,
        })
    }

    /// Records finished contacts. Not synced here: the caller's next sync covers it, and
    /// until then the Raft log holds the commands that finished them.
    pub fn record<'a>(
        &self,
        contacts: impl IntoIterator<Item = &'a Contact>,
    ) -> Result<usize, HistoryError> {
        let mut n = 0;
        for contact in contacts {
            let Some(at) = contact.finished_ms() else {
                continue;
            };
            let encoded = codec::encode(contact);
            if self.records.get(contact.id.as_bytes())?.as_deref() == Some(&encoded[..]) {
                continue;
            }
            self.records.insert(contact.id.as_bytes(), encoded)?;
            let seq = self.db.generate_id()?;
            self.by_seq
                .insert(seq.to_be_bytes(), contact.id.as_bytes())?;
            let mut key = time_key(at).to_vec();
            key.extend_from_slice(contact.id.as_bytes());
            self.by_time.insert(key, &[])?;
            if !contact.customer_id.is_empty() {
                self.by_customer
                    .insert(customer_key(&contact.customer_id, at, &contact.id), &[])?;
            }
            n += 1;
        }
        Ok(n)
    }

    /// The finished contact with this id, if this node holds it.
    pub fn get(&self, id: &str) -> Result<Option<Contact>, HistoryError> {
        match self.records.get(id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                codec::decode(&bytes)
                    .map(Some)
                    .map_err(|source| HistoryError::Corrupt {
                        id: id.to_owned(),
                        source,
                    })
            }
        }
    }

    /// The record of `id` if it is the one an index entry at `at` names.
    fn current(&self, id: &str, at: i64) -> Result<Option<Contact>, HistoryError> {
        Ok(self.get(id)?.filter(|c| c.finished_ms() == Some(at)))
    }

    /// Contacts that finished in `from_ms..to_ms`, oldest first, after `after` (the last
    /// of the previous page), at most `limit`.
    pub fn finished_between(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<&HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<Contact>, HistoryError> {
        let start = match after {
            Some((at, id)) => {
                let mut key = time_key(*at).to_vec();
                key.extend_from_slice(id.as_bytes());
                // Just past the cursor.
                key.push(0);
                key
            }
            None => time_key(from_ms).to_vec(),
        };
        let end = time_key(to_ms).to_vec();
        let mut out = Vec::new();
        for item in self.by_time.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (key, _) = item?;
            let (Some(at), Ok(id)) = (time_of(&key), std::str::from_utf8(&key[8..])) else {
                continue;
            };
            if at < from_ms {
                continue;
            }
            if let Some(contact) = self.current(id, at)? {
                out.push(contact);
            }
        }
        Ok(out)
    }

    /// A customer's finished contacts, newest first, at most `limit`.
    pub fn of_customer(&self, customer: &str, limit: usize) -> Result<Vec<Contact>, HistoryError> {
        let mut prefix = customer.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.by_customer.scan_prefix(&prefix).rev() {
            if out.len() >= limit {
                break;
            }
            let (key, _) = item?;
            let rest = &key[prefix.len()..];
            let (Some(at), Ok(id)) = (time_of(rest), std::str::from_utf8(&rest[8..])) else {
                continue;
            };
            if let Some(contact) = self.current(id, at)? {
                out.push(contact);
            }
        }
        Ok(out)
    }

    /// Records in the order this node wrote them, after number `after`, at most `limit`,
    /// each with its number: the export's cursor. A record replaced since it was numbered
    /// comes with its newer content.
    pub fn recorded_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Contact)>, HistoryError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        for item in self.by_seq.range(start.to_be_bytes()..) {
            if out.len() >= limit {
                break;
            }
            let (key, id) = item?;
            let seq = u64::from_be_bytes(key.as_ref().try_into().unwrap_or_default());
            let id = String::from_utf8_lossy(&id).into_owned();
            if let Some(contact) = self.get(&id)? {
                out.push((seq, contact));
            }
        }
        Ok(out)
    }

    /// The newest records, oldest first, up to `max_bytes` of them encoded: what a
    /// snapshot sent to another node carries.
    pub fn newest(&self, max_bytes: usize) -> Result<Vec<Contact>, HistoryError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in self.by_time.iter().rev() {
            let (key, _) = item?;
            let (Some(at), Ok(id)) = (time_of(&key), std::str::from_utf8(&key[8..])) else {
                continue;
            };
            let Some(record) = self.records.get(id.as_bytes())? else {
                continue;
            };
            bytes += record.len();
            if bytes > max_bytes {
                break;
            }
            if let Some(contact) = self.current(id, at)? {
                out.push(contact);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Removes contacts that finished before `before_ms` (the history's own retention, in
    /// days), at most `limit` per call so a pass never holds the disk long; returns how
    /// many went.
    pub fn prune_before(&self, before_ms: i64, limit: usize) -> Result<usize, HistoryError> {
        let mut n = 0;
        let end = time_key(before_ms);
        for item in self.by_time.range(..end.as_slice()) {
            if n >= limit {
                break;
            }
            let (key, _) = item?;
            self.by_time.remove(&key)?;
            let (Some(at), Ok(id)) = (time_of(&key), std::str::from_utf8(&key[8..])) else {
                continue;
            };
            if let Some(contact) = self.current(id, at)? {
                self.records.remove(id.as_bytes())?;
                if !contact.customer_id.is_empty() {
                    self.by_customer
                        .remove(customer_key(&contact.customer_id, at, id))?;
                }
            }
            n += 1;
        }
        // The export's numbers of records gone: the oldest first, up to the first kept.
        for item in self.by_seq.iter().take(limit) {
            let (key, id) = item?;
            if self.records.contains_key(&id)? {
                break;
            }
            self.by_seq.remove(key)?;
        }
        Ok(n)
    }

    /// Keeps the history to contacts that finished within `keep` of `clock`: prunes
    /// older ones now and every [`PRUNE_EVERY`] until `shutdown` begins. Local to this
    /// node, like the store: nodes prune on their own clocks, so for a few minutes around
    /// the edge one node may still answer for a contact another has let go.
    pub async fn keep_for(self, keep: Duration, clock: Clock, shutdown: Shutdown) {
        let prune = move |before_ms, limit| self.prune_before(before_ms, limit);
        prune_by_age("history", keep, clock, shutdown, prune).await
    }

    /// How many finished contacts this node holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

fn customer_key(customer: &str, at: i64, id: &str) -> Vec<u8> {
    let mut key = customer.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&time_key(at));
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use banyan_domain::{Action, Channel, Command, ContactInput, QueueInput, Stamped, State};

    pub(super) fn customer() -> Action {
        Action::UpsertCustomer(banyan_domain::CustomerInput {
            id: "c1".into(),
            name: "Ada".into(),
            ..Default::default()
        })
    }

    /// Self-served contacts of customer `c1`, one a second.
    fn finished(n: usize) -> Vec<Contact> {
        let mut state = State::default();
        let queue = QueueInput {
            id: "q".into(),
            name: "Q".into(),
            ..Default::default()
        };
        let mut at = 1_000;
        let mut apply = |state: &mut State, action| {
            at += 1_000;
            state
                .apply(&Stamped {
                    at_ms: at,
                    command: Command::new(action),
                })
                .unwrap();
        };
        apply(&mut state, Action::UpsertQueue(queue));
        apply(&mut state, customer());
        let mut out = Vec::new();
        for i in 0..n {
            let input = ContactInput {
                id: format!("c-{i}"),
                queue_id: "q".into(),
                channel: Channel::Chat,
                customer_id: if i % 2 == 0 {
                    "c1".into()
                } else {
                    String::new()
                },
                self_served: true,
                ..Default::default()
            };
            apply(&mut state, Action::CreateContact(input));
            out.extend(state.finished_by_last_command().cloned());
        }
        out
    }

    fn open() -> (tempfile::TempDir, History) {
        let dir = tempfile::tempdir().unwrap();
        let db = DurableDb::open(&dir.path().join("sled")).unwrap();
        (dir, History::open(&db).unwrap())
    }

    #[test]
    fn finished_contacts_are_read_by_id_by_time_and_by_customer() {
        let (_dir, history) = open();
        let contacts = finished(6);
        assert_eq!(history.record(&contacts).unwrap(), 6);
        assert_eq!(history.get("c-3").unwrap().as_ref(), Some(&contacts[3]));
        assert!(history.get("nope").unwrap().is_none());
        // A time range, paged two at a time.
        let (from, to) = (
            contacts[1].finished_ms().unwrap(),
            contacts[5].finished_ms().unwrap(),
        );
        let page = history.finished_between(from, to, None, 2).unwrap();
        let ids = |page: &[Contact]| page.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&page), ["c-1", "c-2"]);
        let last = page.last().unwrap();
        let cursor = (last.finished_ms().unwrap(), last.id.clone());
        let next = history
            .finished_between(from, to, Some(&cursor), 10)
            .unwrap();
        assert_eq!(ids(&next), ["c-3", "c-4"], "to is exclusive");
        // The customer's, newest first.
        assert_eq!(
            ids(&history.of_customer("c1", 10).unwrap()),
            ["c-4", "c-2", "c-0"]
        );
        assert_eq!(ids(&history.of_customer("c1", 1).unwrap()), ["c-4"]);
        // Recording again changes nothing (a replay after a restart).
        history.record(&contacts).unwrap();
        assert_eq!(history.len(), 6);
        assert_eq!(
            history.newest(usize::MAX).unwrap(),
            history.finished_between(0, i64::MAX, None, 10).unwrap()
        );
        let fit = history.records.get("c-5").unwrap().unwrap().len() + 1;
        assert_eq!(
            history
                .newest(fit)
                .unwrap()
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["c-5"],
            "the newest that fit"
        );
    }

    #[test]
    fn the_export_follows_the_order_of_recording_and_a_replay_adds_nothing() {
        let (_dir, history) = open();
        let contacts = finished(3);
        history.record(&contacts[..2]).unwrap();
        let first = history.recorded_after(None, 10).unwrap();
        assert_eq!(
            first.iter().map(|(_, c)| c.id.as_str()).collect::<Vec<_>>(),
            ["c-0", "c-1"]
        );
        history.record(&contacts).unwrap();
        let after = history.recorded_after(Some(first[1].0), 10).unwrap();
        assert_eq!(
            after.iter().map(|(_, c)| c.id.as_str()).collect::<Vec<_>>(),
            ["c-2"]
        );
        assert_eq!(
            history.recorded_after(Some(after[0].0), 10).unwrap().len(),
            0
        );
        // Pruned records leave the export's numbers too.
        history
            .prune_before(contacts[2].finished_ms().unwrap(), 100)
            .unwrap();
        assert_eq!(history.by_seq.len(), 1);
    }

    #[test]
    fn the_history_keeps_its_own_retention() {
        let (_dir, history) = open();
        let contacts = finished(4);
        history.record(&contacts).unwrap();
        let third = contacts[2].finished_ms().unwrap();
        assert_eq!(history.prune_before(third, 1).unwrap(), 1, "one per call");
        assert_eq!(history.prune_before(third, 100).unwrap(), 1);
        assert!(history.get("c-0").unwrap().is_none());
        assert!(history.get("c-2").unwrap().is_some());
        assert_eq!(
            history
                .of_customer("c1", 10)
                .unwrap()
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["c-2"]
        );
    }

    /// On paused time: a node keeps what finished within its retention, prunes the rest
    /// at once, and prunes again as time passes.
    #[tokio::test(start_paused = true)]
    async fn a_node_prunes_its_history_on_its_own_clock() {
        let (_dir, history) = open();
        let contacts = finished(4);
        history.record(&contacts).unwrap();
        let times: Vec<i64> = contacts.iter().map(|c| c.finished_ms().unwrap()).collect();
        let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(times[1] + 10_000));
        let clock: Clock = {
            let now = now.clone();
            std::sync::Arc::new(move || now.load(std::sync::atomic::Ordering::Relaxed))
        };
        let shutdown = Shutdown::new();
        let task = tokio::spawn(history.clone().keep_for(
            Duration::from_millis(10_000),
            clock,
            shutdown.clone(),
        ));
        let wait_for = |n: usize| {
            let history = history.clone();
            async move {
                let deadline = tokio::time::Instant::now() + PRUNE_EVERY * 3;
                while history.len() != n {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{} left",
                        history.len()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        wait_for(3).await;
        assert!(history.get("c-0").unwrap().is_none());
        now.store(times[3] + 10_000, std::sync::atomic::Ordering::Relaxed);
        wait_for(1).await;
        assert!(history.get("c-3").unwrap().is_some());
        shutdown.begin();
        task.await.unwrap();
    }

    #[test]
    fn times_before_the_epoch_sort_before_those_after() {
        assert!(time_key(-5) < time_key(0));
        assert!(time_key(i64::MIN) < time_key(-5));
        assert!(time_key(3) < time_key(i64::MAX));
        assert_eq!(time_of(&time_key(-42)), Some(-42));
    }
}

/// Through the state machine: the history is written as entries apply, survives a
/// restart and the routing state letting the contacts go, and reaches a node that joins
/// by snapshot.
#[cfg(test)]
mod through_the_state_machine {
    use std::sync::Arc;

    use banyan_domain::{Action, Channel, Command, ContactInput, QueueInput, Stamped};
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

    use crate::{open_stores, Batch, Entry, LogId};

    fn entry(index: u64, action: Action) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Batch(vec![Stamped {
                at_ms: 1_000 * index as i64,
                command: Command::new(action),
            }])),
        }
    }

    fn served(id: &str) -> Action {
        Action::CreateContact(ContactInput {
            id: id.into(),
            queue_id: "q".into(),
            channel: Channel::Chat,
            customer_id: "c1".into(),
            self_served: true,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn finished_contacts_outlive_retention_restarts_and_reach_a_joining_node() {
        let dir = tempfile::tempdir().unwrap();
        let discard = || Arc::new(banyan_events::Discard);
        let (db, log, mut sm) = open_stores(dir.path(), discard()).unwrap();
        let queue = QueueInput {
            id: "q".into(),
            name: "Q".into(),
            ..Default::default()
        };
        sm.apply([
            entry(1, Action::UpsertQueue(queue)),
            entry(2, super::tests::customer()),
            entry(3, served("a")),
            entry(4, served("b")),
            entry(5, Action::ForgetFinished { before_ms: 5_000 }),
        ])
        .await
        .unwrap();
        let applied = sm.applied_state();
        assert!(
            applied.read().domain.contact("a").is_none(),
            "left the state"
        );
        let history = applied.history().unwrap();
        assert_eq!(history.get("a").unwrap().unwrap().id, "a");
        assert_eq!(history.of_customer("c1", 10).unwrap().len(), 2);

        // A node that joins by snapshot gets the history with it.
        let snapshot = sm.build_snapshot().await.unwrap();
        sm.send_history_with_snapshots();
        let sent = sm.get_current_snapshot().await.unwrap().unwrap();
        assert!(
            sent.snapshot.get_ref().len() > snapshot.snapshot.get_ref().len(),
            "the snapshot sent carries the history"
        );
        let other = tempfile::tempdir().unwrap();
        {
            let (db, _log, mut joined) = open_stores(other.path(), discard()).unwrap();
            joined
                .install_snapshot(&sent.meta, sent.snapshot)
                .await
                .unwrap();
            let history = joined.applied_state().history().unwrap().clone();
            assert_eq!(history.get("a").unwrap().unwrap().id, "a");
            assert_eq!(history.len(), 2);
            db.flush().await.unwrap();
        }
        // And both keep it across a restart.
        db.flush().await.unwrap();
        drop((db, log, sm, applied));
        for dir in [dir.path(), other.path()] {
            let sm = reopen(dir).await;
            let applied = sm.applied_state();
            assert_eq!(applied.history().unwrap().len(), 2, "{}", dir.display());
        }
    }

    /// Opens `dir` again once the last node's tasks there have let its database go.
    async fn reopen(dir: &std::path::Path) -> crate::StateMachineStore {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match open_stores(dir, Arc::new(banyan_events::Discard)) {
                Ok((_, _, sm)) => return sm,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%e, "still held");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("{} is still held: {e}", dir.display()),
            }
        }
    }
}
