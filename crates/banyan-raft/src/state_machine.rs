//! `RaftStateMachine`: applies committed entries to the in-memory domain state, and keeps
//! snapshots of it on sled.
//!
//! The domain state lives in memory because routing needs its ordered indexes there. It
//! is made durable by the log and by snapshots: on start the last snapshot is loaded and
//! openraft re-applies the committed log after it.
//!
//! Snapshots are written as a new generation (chunks under a fresh generation number,
//! flushed), then the `current` pointer is switched in one write and flushed, and only
//! then are older generations deleted. A crash at any point leaves either the old or the
//! new snapshot whole, never a mix.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use banyan_domain::{Action, ClusterAction, Stamped, State};
use banyan_events::{ApplyHook, EventRecord};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder,
    StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec;
use crate::durable::DurableDb;
use crate::event_log::EventLog;
use crate::history::History;
use crate::identity::ClusterIdentity;
use crate::parts::{PartialCommands, Received};
use crate::types::{
    Batch, BatchResponse, Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig,
};

const KEY_CURRENT: &[u8] = b"current";
/// The most history a snapshot sent to another node carries (the newest): a snapshot is
/// held whole in memory on both sides, so what it carries must be bounded. A node that
/// joins by snapshot answers for older finished contacts only once they are streamed.
const SENT_HISTORY_BYTES: usize = 64 << 20;
/// The most events a snapshot sent to another node carries (the newest).
const SENT_EVENT_BYTES: usize = 32 << 20;
/// Snapshot chunk size: moderate values keep sled's pages small; large pages become blob
/// files, which [`DurableDb::sync`] syncs as well.
const CHUNK_SIZE: usize = 64 * 1024;

/// The state machine's view of the world at its last applied entry.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Applied {
    /// The last entry applied: where a restart or a snapshot resumes.
    pub last_applied: Option<LogId>,
    /// The membership as of the last membership entry applied.
    pub membership: StoredMembership,
    /// The contact center itself: customers, agents, queues, contacts, sites.
    pub domain: State,
    /// Site → the last import of its branch this node applied and the domain refused,
    /// until one of the site's imports lands. Derived from the log (every replica refuses
    /// alike) and not part of snapshots: a node restored from one shows the refusals
    /// applied since.
    #[serde(skip)]
    pub refused_imports: std::collections::BTreeMap<String, RefusedImport>,
    /// Site → how far ahead of the cluster clock its branch's clock ran at its last
    /// renewal (its send time less the leader's stamp; the network delay makes it look a
    /// little behind), whether or not the renewal was accepted. From the log, like
    /// `refused_imports`.
    #[serde(skip)]
    pub clock_offsets: std::collections::BTreeMap<String, ClockOffset>,
    /// The cluster's id and its members' data directories; in snapshots, after the domain.
    pub cluster: ClusterIdentity,
    /// Commands in parts whose last part is not in yet; in snapshots, after the identity.
    pub parts: PartialCommands,
    /// Contacts the entry being applied finished, for the history store; emptied once
    /// they are written.
    #[serde(skip)]
    finished: Vec<banyan_domain::Contact>,
}

impl Applied {
    /// An applied state holding `domain` and nothing else: a state kept outside Raft.
    pub fn of(domain: State) -> Self {
        Self {
            domain,
            ..Self::default()
        }
    }
}

/// A branch's clock offset to the cluster clock, as its last renewal showed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockOffset {
    /// The branch node that renewed.
    pub node_id: u64,
    /// Its clock less the cluster clock, in milliseconds (negative: behind).
    pub offset_ms: i64,
    /// Whether it was past the budget (the renewal was refused for it).
    pub past_budget: bool,
}

/// A branch's import the core refused: a definite answer, shown in the cluster status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedImport {
    /// The log index of the refused import.
    pub index: u64,
    /// The last journal sequence the refused import covered.
    pub upto_seq: u64,
    /// The domain's refusal, as the operator must read it to fix the cause.
    pub reason: String,
    /// The site's reconciled journal sequence when it was refused.
    reconciled_then: u64,
}

impl std::fmt::Display for RefusedImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "import up to journal entry {} refused at log index {}: {}",
            self.upto_seq, self.index, self.reason
        )
    }
}

impl Applied {
    /// Applies a command on the cluster's identity, never the domain's.
    fn apply_cluster(&mut self, index: u64, action: &ClusterAction) -> Response {
        let membership = self.membership.membership();
        let result = self
            .cluster
            .apply(action, |id| membership.get_node(&id).is_some());
        match &result {
            Ok(()) => tracing::info!(index, ?action, "cluster identity recorded"),
            Err(e) => tracing::warn!(index, ?action, reason = %e, "cluster identity refused"),
        }
        result.map(|()| Vec::new())
    }

    fn may_note_refusal(&self, stamped: &Stamped, site: &str) -> bool {
        let scoped = stamped
            .command
            .principal
            .as_ref()
            .and_then(banyan_domain::Principal::site_scope)
            .is_none_or(|scope| scope == site);
        scoped && self.domain.site(site).is_some()
    }

    /// Notes the outcome of a command for the refused-import and clock-offset tables.
    fn note_outcome(&mut self, index: u64, stamped: &Stamped, result: &Response) {
        if let banyan_domain::Action::RenewLease {
            site_id,
            sent_at_ms,
            report,
            ..
        } = &stamped.command.action
        {
            // Renewals past the budget are refused before they are proposed (and noted
            // there, see `AppliedState::note_clock_offset`); one in the log was taken.
            if result.is_ok() && self.may_note_refusal(stamped, site_id) {
                let offset_ms =
                    sent_at_ms.saturating_sub(self.domain.clock_ms().max(stamped.at_ms));
                self.clock_offsets.insert(
                    site_id.clone(),
                    ClockOffset {
                        node_id: report.node_id,
                        offset_ms,
                        past_budget: false,
                    },
                );
            }
            return;
        }
        let banyan_domain::Action::ImportBranch(import) = &stamped.command.action else {
            return;
        };
        match result {
            // Cleared once an import of the site lands: its reconciled sequence moved on
            // since the refusal (an older import answered again does not clear it).
            Ok(_) => {
                let done = self.domain.reconciled_seq(&import.site);
                if self
                    .refused_imports
                    .get(&import.site)
                    .is_some_and(|r| done > r.reconciled_then)
                {
                    self.refused_imports.remove(&import.site);
                }
            }
            // Only for a site that exists and the sender may speak for: a refusal for an
            // invented or another site's name must not grow the table or raise its alert.
            Err(err) if !self.may_note_refusal(stamped, &import.site) => {
                tracing::warn!(index, site = %import.site, %err, "refused an import for a site its sender does not serve");
            }
            Err(err) => {
                tracing::error!(
                    index,
                    site = %import.site,
                    upto_seq = import.upto_seq,
                    %err,
                    "refused a branch's import; the branch keeps its journal"
                );
                self.refused_imports.insert(
                    import.site.clone(),
                    RefusedImport {
                        index,
                        upto_seq: import.upto_seq,
                        reason: err.to_string(),
                        reconciled_then: self.domain.reconciled_seq(&import.site),
                    },
                );
            }
        }
    }
}

/// Read access to the applied state, shared with the node's services.
#[derive(Clone)]
pub struct AppliedState {
    state: Arc<RwLock<Applied>>,
    applied_index: watch::Receiver<u64>,
    history: Option<History>,
    event_log: Option<EventLog>,
}

impl Default for AppliedState {
    /// An empty state that nothing advances (a node that is not up).
    fn default() -> Self {
        Self::over(Arc::default(), watch::channel(0).1)
    }
}

impl AppliedState {
    /// A read view over `state`, whose last applied index `applied_index` follows: the
    /// state machine's own, or a state its owner advances outside Raft (a branch routing
    /// alone, which numbers its commands by its journal).
    pub fn over(state: Arc<RwLock<Applied>>, applied_index: watch::Receiver<u64>) -> Self {
        Self {
            state,
            applied_index,
            history: None,
            event_log: None,
        }
    }

    /// The same view, reading finished contacts that left the state from `history`.
    pub fn with_history(mut self, history: History) -> Self {
        self.history = Some(history);
        self
    }

    /// The same view, reading events older than the in-memory feed from `log`.
    pub fn with_event_log(mut self, log: EventLog) -> Self {
        self.event_log = Some(log);
        self
    }

    /// The node's event log on disk, `None` for a state with none (a branch's own).
    pub fn event_log(&self) -> Option<&EventLog> {
        self.event_log.as_ref()
    }

    /// The node's history store: contacts that finished, also those the routing state let
    /// go. `None` for a state with no store (a branch's own while it routes alone reads
    /// its replica's).
    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// Notes a branch's clock offset seen where its renewal came in (one refused for it
    /// never reaches the log); shown with the offsets the log carries.
    pub fn note_clock_offset(&self, site: &str, offset: ClockOffset) {
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clock_offsets
            .insert(site.to_owned(), offset);
    }

    /// Reads the applied state if nothing is applying to it right now.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, Applied>> {
        match self.state.try_read() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Reads the applied state. Hold the guard briefly: applying waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The last applied log index (0 before anything was applied).
    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    /// The applied index as it changes: a task that depends on the state waits on this
    /// instead of looking again on a timer.
    pub fn applied_index_changes(&self) -> watch::Receiver<u64> {
        self.applied_index.clone()
    }

    /// Waits until the state machine has applied `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.applied_index.clone();
        // The sender lives as long as the state machine; if it is gone, so is the node.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }
}

/// Where a snapshot generation sits and what it covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotPointer {
    generation: u64,
    chunks: u64,
    meta: SnapshotMeta,
}

/// The state machine of one node. Cheap to clone.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: DurableDb,
    /// (generation, chunk number), big-endian → snapshot bytes.
    snapshots: sled::Tree,
    /// `current` → [`SnapshotPointer`].
    meta: sled::Tree,
    state: Arc<RwLock<Applied>>,
    applied_tx: watch::Sender<u64>,
    applied_rx: watch::Receiver<u64>,
    next_generation: AtomicU64,
    /// Serializes snapshot writes: openraft builds snapshots in a task of their own, so a
    /// build and an install can overlap.
    persist_lock: tokio::sync::Mutex<()>,
    /// Snapshots built here, for metrics.
    built: AtomicU64,
    /// Where each applied entry's events go.
    hook: Arc<dyn ApplyHook>,
    /// Every finished contact, on disk.
    history: History,
    /// Every applied event, on disk.
    event_log: EventLog,
    /// Set once Raft has started: a snapshot asked for after that is sent to another
    /// node, with the history.
    sending_history: AtomicBool,
}

/// Logs, loudly, a command whose application met an inconsistent state (the count moved
/// past `seen`); `/metrics` counts them.
fn report_inconsistency(
    domain: &banyan_domain::State,
    seen: u64,
    index: u64,
    command: &banyan_domain::Stamped,
) {
    let (count, last) = domain.inconsistencies();
    if count > seen {
        tracing::error!(
            index,
            steps_skipped = count - seen,
            last = last.unwrap_or(""),
            command = ?command.command.action,
            "applying a command met an inconsistent state; the steps that needed the missing \
             objects were skipped on every replica alike"
        );
    }
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn chunk_key(generation: u64, chunk: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&generation.to_be_bytes());
    key[8..].copy_from_slice(&chunk.to_be_bytes());
    key
}

impl StateMachineStore {
    /// Opens the snapshot trees of `db` and loads the current snapshot, if any. The events
    /// of every entry applied from then on are handed to `hook`.
    pub fn open(durable: &DurableDb, hook: Arc<dyn ApplyHook>) -> Result<Self, StorageError> {
        let db = durable.db();
        let snapshots = db
            .open_tree("snapshot")
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let meta = db
            .open_tree("snapshot_meta")
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let (applied_tx, applied_rx) = watch::channel(0);
        let store = Self {
            inner: Arc::new(Inner {
                db: durable.clone(),
                snapshots,
                meta,
                state: Arc::default(),
                applied_tx,
                applied_rx,
                next_generation: AtomicU64::new(1),
                persist_lock: tokio::sync::Mutex::new(()),
                built: AtomicU64::new(0),
                hook,
                history: History::open(durable).map_err(|e| sm_err(ErrorVerb::Read, e))?,
                event_log: EventLog::beside(durable).map_err(|e| sm_err(ErrorVerb::Read, e))?,
                sending_history: AtomicBool::new(false),
            }),
        };
        if let Some(pointer) = store.pointer()? {
            store
                .inner
                .next_generation
                .store(pointer.generation + 1, Ordering::Relaxed);
            let bytes = store.read_generation(&pointer)?;
            store.load(&pointer.meta, &bytes)?;
            // Generations left behind by a crash between switch and cleanup.
            store.delete_generations_except(pointer.generation)?;
        }
        let first_applied = store.inner.applied_rx.borrow().saturating_add(1);
        store
            .inner
            .event_log
            .cover_from_if_unset(first_applied)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(store)
    }

    /// A read handle on the applied state.
    pub fn applied_state(&self) -> AppliedState {
        AppliedState::over(self.inner.state.clone(), self.inner.applied_rx.clone())
            .with_history(self.inner.history.clone())
            .with_event_log(self.inner.event_log.clone())
    }

    /// From now on, a snapshot Raft asks for goes to another node and carries this
    /// node's history and events ([`codec::append_sent`]). Called once Raft has started.
    pub fn send_history_with_snapshots(&self) {
        self.inner.sending_history.store(true, Ordering::Relaxed);
    }

    /// Snapshots built by this node since it started.
    pub fn snapshots_built(&self) -> u64 {
        self.inner.built.load(Ordering::Relaxed)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pointer(&self) -> Result<Option<SnapshotPointer>, StorageError> {
        match self
            .inner
            .meta
            .get(KEY_CURRENT)
            .map_err(|e| snap_err(ErrorVerb::Read, e))?
        {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| snap_err(ErrorVerb::Read, e)),
        }
    }

    fn read_generation(&self, pointer: &SnapshotPointer) -> Result<Vec<u8>, StorageError> {
        let mut bytes = Vec::new();
        for chunk in 0..pointer.chunks {
            let part = self
                .inner
                .snapshots
                .get(chunk_key(pointer.generation, chunk))
                .map_err(|e| snap_err(ErrorVerb::Read, e))?
                .ok_or_else(|| {
                    snap_err(
                        ErrorVerb::Read,
                        std::io::Error::other(format!(
                            "snapshot generation {} lacks chunk {chunk}",
                            pointer.generation
                        )),
                    )
                })?;
            bytes.extend_from_slice(&part);
        }
        Ok(bytes)
    }

    /// Replaces the in-memory state with a decoded snapshot.
    fn load(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), StorageError> {
        let (domain, cluster, parts) =
            codec::decode_snapshot(bytes).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let index = meta.last_log_id.map_or(0, |id| id.index);
        *self.write_state() = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            domain,
            refused_imports: Default::default(),
            clock_offsets: Default::default(),
            cluster,
            parts,
            finished: Vec::new(),
        };
        self.inner.hook.replaced_after(index);
        self.inner.applied_tx.send_replace(index);
        Ok(())
    }

    /// Writes `bytes` as a new generation and switches to it, unless the current snapshot
    /// already covers more of the log (a build that finished after a newer install).
    /// Returns whether it switched.
    async fn persist(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<bool, StorageError> {
        let _guard = self.inner.persist_lock.lock().await;
        if let Some(current) = self.pointer()? {
            if current.meta.last_log_id > meta.last_log_id {
                tracing::info!(
                    stale = %meta.snapshot_id,
                    current = %current.meta.snapshot_id,
                    "not storing a snapshot older than the current one"
                );
                return Ok(false);
            }
        }
        // Every event up to the snapshot on disk before the snapshot is: the log before it
        // is never applied here again.
        self.inner
            .event_log
            .flush()
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut batch = sled::Batch::default();
        let mut chunks = 0u64;
        for part in bytes.chunks(CHUNK_SIZE) {
            batch.insert(&chunk_key(generation, chunks), part);
            chunks += 1;
        }
        self.inner
            .snapshots
            .apply_batch(batch)
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.flush().await?;
        let pointer = SnapshotPointer {
            generation,
            chunks,
            meta: meta.clone(),
        };
        self.inner
            .meta
            .insert(KEY_CURRENT, codec::encode(&pointer))
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.flush().await?;
        self.delete_generations_except(generation)?;
        Ok(true)
    }

    fn delete_generations_except(&self, keep: u64) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.inner.snapshots.iter().keys() {
            let key = item.map_err(|e| snap_err(ErrorVerb::Delete, e))?;
            let generation = u64::from_be_bytes(key[..8].try_into().unwrap_or_default());
            if generation != keep {
                batch.remove(key);
            }
        }
        self.inner
            .snapshots
            .apply_batch(batch)
            .map_err(|e| snap_err(ErrorVerb::Delete, e))
    }

    async fn flush(&self) -> Result<(), StorageError> {
        self.inner
            .db
            .sync_async()
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (meta, bytes) = {
            let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
            let generation = self.inner.next_generation.load(Ordering::Relaxed);
            let snapshot_id = match state.last_applied {
                Some(id) => format!("{}-{}-{generation}", id.leader_id.term, id.index),
                None => format!("0-0-{generation}"),
            };
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
                snapshot_id,
            };
            (
                meta,
                codec::encode_snapshot(&state.domain, &state.cluster, &state.parts),
            )
        };
        if self.persist(&meta, &bytes).await? {
            self.inner.built.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(snapshot = %meta.snapshot_id, bytes = bytes.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

/// Applying committed entries, one entry and one command at a time.
impl Applied {
    /// Applies one committed entry; its commands' new events, numbered in log order, are
    /// added to `records`.
    fn apply_entry(&mut self, entry: Entry, records: &mut Vec<EventRecord>) -> BatchResponse {
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => BatchResponse::default(),
            EntryPayload::Normal(Batch(commands)) => {
                let results = commands
                    .iter()
                    .map(|command| self.apply_command(entry.log_id.index, command, records))
                    .collect();
                BatchResponse(results)
            }
            EntryPayload::Membership(membership) => {
                self.apply_membership(entry.log_id, membership);
                BatchResponse::default()
            }
        }
    }

    /// Takes a new membership; the identity forgets the data directories of members gone.
    fn apply_membership(
        &mut self,
        log_id: LogId,
        membership: openraft::Membership<crate::types::NodeId, crate::types::Node>,
    ) {
        let members: std::collections::BTreeSet<u64> =
            membership.nodes().map(|(id, _)| *id).collect();
        self.cluster.retain_members(|id| members.contains(&id));
        self.membership = StoredMembership::new(Some(log_id), membership);
    }

    /// Sends one command to the identity, the parts table (then the domain) or the domain.
    fn apply_command(
        &mut self,
        index: u64,
        command: &Stamped,
        records: &mut Vec<EventRecord>,
    ) -> Response {
        let part = match &command.command.action {
            Action::Cluster(action) => return self.apply_cluster(index, action),
            Action::Part(part) => part,
            _ => {
                let (result, fresh) = self.apply_domain(index, command);
                return self.record_outcome(index, command, result, fresh, records);
            }
        };
        match self.parts.receive(command.at_ms, part) {
            Ok(Received::Whole(whole)) => {
                let (result, fresh) = self.apply_domain(index, &whole);
                let answer = result.as_ref().map(|_| ()).map_err(Clone::clone);
                self.parts.finish(&part.id, answer);
                self.record_outcome(index, &whole, result, fresh, records)
            }
            // More parts to come; this one is in.
            Ok(Received::More) => Ok(Vec::new()),
            // Applied already: answered as then.
            Ok(Received::Finished(answer)) => answer.map(|()| Vec::new()),
            Err(e) => {
                tracing::warn!(index, ?part, reason = %e, "refused part of a command");
                Err(e)
            }
        }
    }

    /// Applies to the domain, reporting an inconsistent state it met; and whether it is new.
    fn apply_domain(&mut self, index: u64, command: &Stamped) -> (Response, bool) {
        let (seen, _) = self.domain.inconsistencies();
        let (result, fresh) = self.domain.apply_traced(command);
        report_inconsistency(&self.domain, seen, index, command);
        (result, fresh)
    }

    /// Notes a domain answer's outcome; numbers its new events after the entry's earlier ones.
    fn record_outcome(
        &mut self,
        index: u64,
        command: &Stamped,
        result: Response,
        fresh: bool,
        records: &mut Vec<EventRecord>,
    ) -> Response {
        self.note_outcome(index, command, &result);
        if fresh && result.is_ok() {
            let finished = self.domain.finished_by_last_command().cloned();
            self.finished.extend(finished);
        }
        // A retry answers with its first events; they are not new.
        let new_events = result.iter().flatten().filter(|_| fresh);
        for event in new_events {
            let ordinal = records.len() as u32;
            records.push(EventRecord {
                index,
                ordinal,
                at_ms: command.at_ms,
                principal: command.command.principal.clone(),
                event: event.clone(),
            });
        }
        result
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut last_index = None;
        {
            let mut state = self.write_state();
            for entry in entries {
                last_index = Some(entry.log_id.index);
                let mut records = Vec::new();
                responses.push(state.apply_entry(entry, &mut records));
                // Written as applied, on every replica alike; a replay rewrites the same.
                self.inner
                    .history
                    .record(&state.finished)
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                state.finished.clear();
                self.inner
                    .event_log
                    .append(&records)
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                self.inner.hook.applied(records);
            }
        }
        if let Some(index) = last_index {
            self.inner.applied_tx.send_replace(index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        // Decode before persisting: a malformed snapshot must not replace a good one.
        let sent = codec::decode_sent_snapshot(&bytes).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        // The sender's history first: once the snapshot is stored, the log before it is
        // never applied here again.
        self.inner
            .history
            .record(&sent.history)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let snapshot_index = meta.last_log_id.map_or(0, |id| id.index);
        // The entries after the snapshot this node applies itself; the sender's events
        // cover from `events_from` on (0: unknown).
        let events_from = match sent.events_from {
            0 => snapshot_index + 1,
            from => from.min(snapshot_index + 1),
        };
        let log = &self.inner.event_log;
        log.append(&sent.events)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let stored = &bytes[..sent.stored_len];
        if self.persist(meta, stored).await? {
            // Only a snapshot that replaces the state moves where the log is complete.
            log.set_covers_from(events_from)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
            self.load(meta, stored)?;
        }
        tracing::info!(snapshot = %meta.snapshot_id, bytes = bytes.len(), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(pointer) = self.pointer()? else {
            return Ok(None);
        };
        let mut bytes = self.read_generation(&pointer)?;
        // Asked once Raft runs, the snapshot is for another node: it carries this node's
        // history. Raft's own start asks only for the snapshot's meta.
        if self.inner.sending_history.load(Ordering::Relaxed) {
            let history = self
                .inner
                .history
                .newest(SENT_HISTORY_BYTES)
                .map_err(|e| snap_err(ErrorVerb::Read, e))?;
            let (events, events_from) = self
                .inner
                .event_log
                .newest(SENT_EVENT_BYTES)
                .map_err(|e| snap_err(ErrorVerb::Read, e))?;
            codec::append_sent(&mut bytes, &history, &events, events_from);
        }
        Ok(Some(Snapshot {
            meta: pointer.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
