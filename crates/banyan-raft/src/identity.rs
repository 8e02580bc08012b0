//! Who a node is beyond its number: the cluster it belongs to, and the data directory
//! (its incarnation) it runs on.
//!
//! A Raft voter's promises (its vote in a term, the entries it acknowledged) live in its
//! data directory. A voter whose directory was wiped and that comes back under the same id
//! has forgotten them, and could help elect a leader that lacks a committed entry. So:
//!
//! * Each data directory gets a random incarnation the first time a node id runs on it,
//!   kept in the `identity` tree before the node answers anyone.
//! * The leader records each member's incarnation in the replicated state
//!   ([`ClusterAction::Register`]), as the member reported it in its answers, and names the
//!   cluster once with a random id ([`ClusterAction::Found`]). Both travel in snapshots.
//! * Every Raft call carries the cluster id, the sender's incarnation and the incarnation
//!   the sender believes the target runs on. A peer refuses a call from another cluster,
//!   from a node whose incarnation is not the registered one, and a call meant for an
//!   incarnation that is not its own; a node told it is not the registered one stops
//!   ([`Identity::fenced`]) so its operator rejoins it under a new id.
//!
//! A node id is removed from the register when it leaves the membership, so it may be
//! reused after a `remove`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use banyan_domain::{Action, ClusterAction, Command, DomainError, Stamped};
use banyan_env::Shutdown;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::durable::DurableDb;
use crate::state_machine::AppliedState;
use crate::store::Database;
use crate::types::{Batch, NodeId, Raft};

/// The cluster id the caller belongs to.
pub const CLUSTER_HEADER: &str = banyan_proto::CLUSTER_ID_HEADER;
/// The caller's incarnation on a request; the answering node's on a reply.
pub const INCARNATION_HEADER: &str = "banyan-incarnation";
/// The incarnation the caller believes the target runs on.
pub const TARGET_HEADER: &str = "banyan-target-incarnation";
/// The node id the caller means to reach (an address may have passed to another id).
pub const TARGET_NODE_HEADER: &str = "banyan-target-node";
/// Set on a refusal that tells the caller it is not the registered incarnation of its id.
pub const FENCED_HEADER: &str = "banyan-fenced";
/// The caller's wall clock when it sent the call, ms since the epoch.
pub const SENT_AT_HEADER: &str = "banyan-sent-at-ms";
/// The answering node's wall clock when it answered, ms since the epoch.
pub const CLOCK_HEADER: &str = "banyan-wall-clock-ms";

/// How far a peer's clock runs from this node's, as the last round trip to it showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerClock {
    /// The peer's clock less this node's (positive: the peer is ahead).
    pub offset_ms: i64,
    /// Half the round trip: the offset is known to within this.
    pub uncertainty_ms: i64,
}

impl PeerClock {
    /// Past the cluster's budget even allowing for the round trip.
    pub fn past_budget(&self) -> bool {
        self.offset_ms.abs().saturating_sub(self.uncertainty_ms)
            > banyan_domain::site::MAX_CLOCK_OFFSET_MS
    }
}

pub use banyan_env::wall_clock_ms;

/// The longest cluster id or incarnation accepted.
const MAX_ID_LEN: usize = 64;

/// The cluster's identity in the replicated state: every replica holds the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// The random id the first leader named the cluster with; every Raft call carries it.
    pub cluster_id: Option<String>,
    /// Node id → the incarnation (data directory) it runs on.
    pub incarnations: BTreeMap<NodeId, String>,
}

impl ClusterIdentity {
    /// Applies one cluster command; `is_member` says whether a node id is in the current
    /// membership. Deterministic, and never panics: a refusal changes nothing.
    pub fn apply(
        &mut self,
        action: &ClusterAction,
        is_member: impl Fn(NodeId) -> bool,
    ) -> Result<(), DomainError> {
        match action {
            ClusterAction::Found { cluster_id } => {
                check_id("cluster_id", cluster_id)?;
                match &self.cluster_id {
                    None => self.cluster_id = Some(cluster_id.clone()),
                    Some(existing) if existing == cluster_id => {}
                    Some(existing) => {
                        return Err(DomainError::precondition(
                            "cluster_id",
                            format!("the cluster is named {existing} already"),
                        ))
                    }
                }
            }
            ClusterAction::Register {
                node_id,
                incarnation,
            } => {
                check_id("incarnation", incarnation)?;
                if !is_member(*node_id) {
                    return Err(DomainError::not_found("node_id", node_id.to_string()));
                }
                match self.incarnations.get(node_id) {
                    None => {
                        self.incarnations.insert(*node_id, incarnation.clone());
                    }
                    Some(registered) if registered == incarnation => {}
                    Some(registered) => {
                        return Err(DomainError::precondition(
                            "incarnation",
                            format!(
                                "node {node_id} runs on data directory {registered}; another \
                                 directory joins under a new id"
                            ),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets the incarnations of nodes that left the membership.
    pub fn retain_members(&mut self, is_member: impl Fn(NodeId) -> bool) {
        self.incarnations.retain(|id, _| is_member(*id));
    }
}

fn check_id(field: &str, value: &str) -> Result<(), DomainError> {
    if value.is_empty() || value.len() > MAX_ID_LEN || !value.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(DomainError::invalid(
            field,
            format!("must be 1 to {MAX_ID_LEN} hexadecimal digits"),
        ));
    }
    Ok(())
}

/// 128 random bits as 32 hex digits.
pub fn random_id() -> String {
    banyan_env::ids::random_hex(16)
}

/// Why an incoming Raft call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the caller is told, naming the mismatch (cluster, node id or data directory).
    pub reason: String,
    /// The caller is not the registered incarnation of its id.
    pub caller_fenced: bool,
}

/// This node's identity: its incarnation, and the replicated register to check peers
/// against. Cheap to clone.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    db: DurableDb,
    applied: AppliedState,
    /// Set once the node has replayed its log (see [`Identity::resolve`]).
    incarnation: OnceLock<String>,
    /// The incarnations peers reported in their answers, and when, for the leader to
    /// register.
    seen: Mutex<BTreeMap<NodeId, (String, Instant)>>,
    /// The membership the registrar last saw, and since when: only answers received
    /// after it count (an id removed and added again must not get its old directory).
    membership_since: Mutex<Option<(Option<crate::LogId>, Instant)>>,
    /// Each peer's clock as its last answer showed it (the leader hears from every member).
    clocks: Mutex<BTreeMap<NodeId, PeerClock>>,
    fenced: watch::Sender<Option<String>>,
    /// The register as of an applied index (see [`Identity::view`]).
    view: Mutex<Arc<View>>,
}

/// The register and this node's vote, as of an applied log id.
#[derive(Default)]
struct View {
    applied: Option<crate::LogId>,
    cluster: ClusterIdentity,
    voter: bool,
}

const TREE: &str = "identity";

impl Identity {
    /// The identity of node `node_id` on `db`; [`resolve`](Self::resolve) settles it.
    pub fn new(node_id: NodeId, db: &Database, applied: AppliedState) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id,
                db: db.durable().clone(),
                applied,
                incarnation: OnceLock::new(),
                seen: Mutex::default(),
                membership_since: Mutex::default(),
                clocks: Mutex::default(),
                fenced: watch::channel(None).0,
                view: Mutex::default(),
            }),
        }
    }

    /// Settles this node's incarnation once the node has applied what its log holds as
    /// committed (`committed`): the one its data directory recorded; else, for a data
    /// directory restored from another node's backup, the one the replicated register
    /// holds for this id; else a new one. Written durably before it is used.
    pub async fn resolve(&self, committed: u64) -> Result<String, sled::Error> {
        if let Some(incarnation) = self.inner.incarnation.get() {
            return Ok(incarnation.clone());
        }
        let applied = &self.inner.applied;
        // Without a limit: settling a restored directory's incarnation before the log that
        // registered it is replayed would mint a new one, and the node would be fenced.
        let replay = applied.wait_applied(committed);
        tokio::pin!(replay);
        while tokio::time::timeout(Duration::from_secs(30), &mut replay)
            .await
            .is_err()
        {
            tracing::warn!(
                committed,
                applied = applied.applied_index(),
                "still replaying the log"
            );
        }
        let tree = self.inner.db.db().open_tree(TREE)?;
        let key = self.inner.node_id.to_be_bytes();
        let incarnation = match tree.get(key)? {
            Some(stored) => String::from_utf8_lossy(&stored).into_owned(),
            None => {
                let registered = applied
                    .read()
                    .cluster
                    .incarnations
                    .get(&self.inner.node_id)
                    .cloned();
                let incarnation = registered.unwrap_or_else(random_id);
                tree.insert(key, incarnation.as_bytes())?;
                let db = self.inner.db.clone();
                tokio::task::spawn_blocking(move || db.sync())
                    .await
                    .map_err(std::io::Error::other)??;
                incarnation
            }
        };
        tracing::info!(node_id = self.inner.node_id, %incarnation, "data directory identity");
        Ok(self.inner.incarnation.get_or_init(|| incarnation).clone())
    }

    /// The node id this identity speaks for.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// This node's incarnation, once resolved.
    pub fn incarnation(&self) -> Option<&str> {
        self.inner.incarnation.get().map(String::as_str)
    }

    /// The cluster's id, once its first leader named it.
    pub fn cluster_id(&self) -> Option<String> {
        self.view().cluster.cluster_id.clone()
    }

    /// The incarnation registered for `node`.
    pub fn registered(&self, node: NodeId) -> Option<String> {
        self.view().cluster.incarnations.get(&node).cloned()
    }

    /// The register and whether this node votes, as last applied. Every Raft call reads
    /// it, so it never waits for the state machine: while an apply holds the state, the
    /// view read before it serves (the register changes rarely).
    fn view(&self) -> Arc<View> {
        let mut cached = self.inner.view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = self.inner.applied.try_read() {
            if cached.applied != state.last_applied {
                *cached = Arc::new(View {
                    applied: state.last_applied,
                    cluster: state.cluster.clone(),
                    voter: state
                        .membership
                        .membership()
                        .voter_ids()
                        .any(|id| id == self.inner.node_id),
                });
            }
        }
        cached.clone()
    }

    /// Becomes `Some(why)` when this node learned it is not the registered incarnation of
    /// its id: it must stop, and its operator rejoin it under a new id.
    pub fn fenced(&self) -> watch::Receiver<Option<String>> {
        self.inner.fenced.subscribe()
    }

    fn fence(&self, reason: String) {
        self.inner.fenced.send_if_modified(|fenced| {
            if fenced.is_some() {
                return false;
            }
            tracing::error!(%reason, "this node is fenced off its cluster");
            *fenced = Some(reason);
            true
        });
    }

    /// Notes the incarnation a peer reported in its answer.
    pub(crate) fn saw(&self, node: NodeId, incarnation: &str) {
        if check_id("incarnation", incarnation).is_ok() {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.insert(node, (incarnation.to_owned(), Instant::now()));
        }
    }

    /// Notes a peer's clock from a round trip that left at `sent_ms` and came back at
    /// `back_ms` (this node's clock) with the peer's clock reading `theirs_ms`.
    pub(crate) fn saw_clock(&self, node: NodeId, sent_ms: i64, back_ms: i64, theirs_ms: i64) {
        let reading = PeerClock {
            offset_ms: theirs_ms.saturating_sub(sent_ms / 2 + back_ms / 2),
            uncertainty_ms: back_ms.saturating_sub(sent_ms).max(0) / 2,
        };
        let mut clocks = self.inner.clocks.lock().unwrap_or_else(|p| p.into_inner());
        clocks.insert(node, reading);
    }

    /// Every peer's clock as this node last measured it (the leader measures every
    /// member; a follower only the leader).
    pub fn peer_clocks(&self) -> BTreeMap<NodeId, PeerClock> {
        self.inner
            .clocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The headers of a call to `target`; `None` until the incarnation is resolved.
    pub(crate) fn outgoing(&self, target: NodeId, headers: &mut MetadataMap) -> Option<()> {
        let incarnation = self.incarnation()?;
        insert(headers, INCARNATION_HEADER, incarnation);
        insert(headers, SENT_AT_HEADER, &wall_clock_ms().to_string());
        if let Some(cluster) = self.cluster_id() {
            insert(headers, CLUSTER_HEADER, &cluster);
        }
        insert(headers, TARGET_NODE_HEADER, &target.to_string());
        if let Some(expected) = self.registered(target) {
            insert(headers, TARGET_HEADER, &expected);
        }
        Some(())
    }

    /// Reads a refusal of this node's call: one that says this node is not the registered
    /// incarnation of its id fences it.
    pub(crate) fn refused(&self, target: NodeId, status: &tonic::Status) {
        if status.metadata().get(FENCED_HEADER).is_some() {
            self.fence(format!(
                "node {target} refused this node: {}",
                status.message()
            ));
        }
    }

    /// Checks the cluster a branch's call to the core names (its replica's), when both
    /// know theirs: a branch of another cluster must not renew a lease or hand over a
    /// journal here.
    pub fn check_cluster_of_caller(&self, headers: &MetadataMap) -> Result<(), String> {
        let theirs = headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok());
        match (theirs, self.cluster_id()) {
            (Some(theirs), Some(ours)) if theirs != ours => Err(format!(
                "{CLUSTER_HEADER}: the caller belongs to cluster {theirs}, this node to \
                 cluster {ours}; a branch never joins another cluster"
            )),
            _ => Ok(()),
        }
    }

    /// Checks an incoming call from node `from`.
    pub fn check_incoming(&self, from: NodeId, headers: &MetadataMap) -> Result<(), Refusal> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let refuse = |reason: String, caller_fenced: bool| {
            Err(Refusal {
                reason,
                caller_fenced,
            })
        };
        let Some(own) = self.incarnation() else {
            return refuse("this node is still starting".into(), false);
        };
        if let (Some(theirs), Some(ours)) = (header(CLUSTER_HEADER), self.cluster_id()) {
            if theirs != ours {
                return refuse(
                    format!(
                        "{CLUSTER_HEADER}: node {from} belongs to cluster {theirs}, this node \
                         (node {}) to cluster {ours}; a node never joins another cluster",
                        self.inner.node_id
                    ),
                    false,
                );
            }
        }
        if let (Some(theirs), Some(registered)) =
            (header(INCARNATION_HEADER), self.registered(from))
        {
            if theirs != registered {
                return refuse(
                    format!(
                        "{INCARNATION_HEADER}: node {from} is registered on data directory \
                         {registered}, but this call comes from data directory {theirs}: its \
                         data directory was wiped or replaced, so it has forgotten its votes \
                         and acknowledged entries; remove node {from} and rejoin the machine \
                         under a new id (docs/operations.md, \"A voter lost its data \
                         directory\")"
                    ),
                    self.is_voter(),
                );
            }
        }
        // A voter refuses a peer whose clock runs ahead of its own past the budget: the
        // leader stamps every command with its clock, so such a node must neither lead
        // nor help elect. (A call that looks behind may only have been slow; learners,
        // whose leases police their own clocks, refuse nobody for it.)
        if let Some(sent_ms) = header(SENT_AT_HEADER).and_then(|v| v.parse::<i64>().ok()) {
            let ahead_ms = sent_ms.saturating_sub(wall_clock_ms());
            if ahead_ms > banyan_domain::site::MAX_CLOCK_OFFSET_MS && self.is_voter() {
                return refuse(
                    format!(
                        "{SENT_AT_HEADER}: node {from}'s clock runs {ahead_ms} ms ahead of \
                         this node's (node {}), past the cluster's budget of {} ms: a node \
                         with its clock that far off may neither lead nor vote; fix its \
                         time (NTP)",
                        self.inner.node_id,
                        banyan_domain::site::MAX_CLOCK_OFFSET_MS
                    ),
                    false,
                );
            }
        }
        if let Some(meant) = header(TARGET_NODE_HEADER) {
            if meant != self.inner.node_id.to_string() {
                return refuse(
                    format!(
                        "{TARGET_NODE_HEADER}: node {from} means node {meant}, but this is node {}",
                        self.inner.node_id
                    ),
                    false,
                );
            }
        }
        // Only a call meant for this very id may tell it its directory is not the one the
        // cluster knows.
        let meant_for_me = header(TARGET_NODE_HEADER).is_some();
        if let Some(expected) = header(TARGET_HEADER).filter(|_| meant_for_me) {
            if expected != own {
                let reason = format!(
                    "{TARGET_HEADER}: node {from} addresses node {} on data directory \
                     {expected}, but this one is {own}: this data directory was wiped or \
                     replaced; remove node {} and rejoin under a new id (docs/operations.md, \
                     \"A voter lost its data directory\")",
                    self.inner.node_id, self.inner.node_id
                );
                self.fence(reason.clone());
                return refuse(reason, false);
            }
        }
        Ok(())
    }

    /// Adds this node's incarnation and clock to a reply.
    pub(crate) fn reply_headers(&self, headers: &mut MetadataMap) {
        if let Some(own) = self.incarnation() {
            insert(headers, INCARNATION_HEADER, own);
        }
        insert(headers, CLOCK_HEADER, &wall_clock_ms().to_string());
    }

    fn is_voter(&self) -> bool {
        self.view().voter
    }

    /// While this node leads: names the cluster if nobody has, and registers every member
    /// whose incarnation it knows and the register lacks. Ends with the Raft, or once
    /// `shutdown` has begun.
    pub fn spawn_registrar(&self, raft: Raft, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let identity = self.clone();
        tokio::spawn(async move {
            let mut metrics = raft.metrics();
            loop {
                let proposal = identity.due_registrations(&metrics.borrow_and_update());
                if !proposal.is_empty() {
                    let at_ms = wall_clock_ms();
                    let batch = proposal
                        .into_iter()
                        .map(|action| Stamped {
                            at_ms,
                            command: Command {
                                request_id: None,
                                action: Action::Cluster(action),
                                principal: None,
                            },
                        })
                        .collect();
                    // openraft 0.9 may never answer a write overtaken by a snapshot.
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        raft.client_write(Batch(batch)),
                    )
                    .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "registering the cluster's identity")
                        }
                        Err(_) => {
                            tracing::debug!("registering the cluster's identity: no answer in time")
                        }
                    }
                }
                // Members' answers arrive without a metrics change: look again shortly.
                tokio::select! {
                    () = shutdown.begun() => return,
                    changed = metrics.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    }

    /// What a leader should register now.
    fn due_registrations(&self, metrics: &crate::RaftMetrics) -> Vec<ClusterAction> {
        let me = self.inner.node_id;
        let Some(own) = self.incarnation() else {
            return Vec::new();
        };
        let leads_its_term = metrics.current_leader == Some(me)
            && metrics
                .last_applied
                .is_some_and(|id| id.leader_id.term == metrics.current_term);
        if !leads_its_term {
            return Vec::new();
        }
        let membership = metrics.membership_config.membership();
        let since = {
            let mut last = self
                .inner
                .membership_since
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let current = *metrics.membership_config.log_id();
            match *last {
                Some((seen_id, at)) if seen_id == current => at,
                _ => {
                    let now = Instant::now();
                    *last = Some((current, now));
                    now
                }
            }
        };
        let cluster = self.inner.applied.read().cluster.clone();
        let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|id, _| membership.get_node(id).is_some());
        let mut due = Vec::new();
        if cluster.cluster_id.is_none() {
            due.push(ClusterAction::Found {
                cluster_id: random_id(),
            });
        }
        for (id, _) in membership.nodes() {
            if cluster.incarnations.contains_key(id) {
                continue;
            }
            let incarnation = if *id == me {
                Some(own.to_owned())
            } else {
                seen.get(id)
                    .filter(|(_, at)| *at > since)
                    .map(|(incarnation, _)| incarnation.clone())
            };
            if let Some(incarnation) = incarnation {
                due.push(ClusterAction::Register {
                    node_id: *id,
                    incarnation,
                });
            }
        }
        due
    }
}

fn insert(headers: &mut MetadataMap, name: &'static str, value: &str) {
    if let Ok(value) = MetadataValue::try_from(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_id_keeps_its_data_directory_until_it_leaves() {
        let mut cluster = ClusterIdentity::default();
        let member = |id: NodeId| id <= 3;
        let found = |id: &str| ClusterAction::Found {
            cluster_id: id.into(),
        };
        let register = |node_id, incarnation: &str| ClusterAction::Register {
            node_id,
            incarnation: incarnation.into(),
        };
        cluster.apply(&found("aa"), member).unwrap();
        assert!(cluster.apply(&found("bb"), member).is_err());
        cluster.apply(&found("aa"), member).unwrap();
        cluster.apply(&register(1, "01"), member).unwrap();
        cluster.apply(&register(1, "01"), member).unwrap();
        assert!(cluster.apply(&register(1, "02"), member).is_err());
        assert!(cluster.apply(&register(4, "04"), member).is_err());
        assert!(cluster.apply(&register(2, "not hex"), member).is_err());
        assert!(cluster
            .apply(&register(2, &"a".repeat(65)), member)
            .is_err());
        assert_eq!(cluster.incarnations.get(&1).map(String::as_str), Some("01"));
        cluster.retain_members(|id| id != 1);
        cluster.apply(&register(1, "02"), member).unwrap();
        assert_eq!(cluster.cluster_id.as_deref(), Some("aa"));
    }

    /// A node 3 whose state machine applied a membership of 1, 2, 3 and the leader's
    /// entry naming the cluster and registering nodes 1 and 2.
    async fn node_three() -> (
        tempfile::TempDir,
        Identity,
        crate::StateMachineStore,
        Database,
    ) {
        node_three_among(&[1, 2, 3]).await
    }

    /// Node 3 in a membership of nodes 1, 2, 3 where `voters` vote.
    async fn node_three_among(
        voters: &[NodeId],
    ) -> (
        tempfile::TempDir,
        Identity,
        crate::StateMachineStore,
        Database,
    ) {
        use openraft::storage::RaftStateMachine;
        use openraft::{CommittedLeaderId, EntryPayload, Membership};

        let dir = tempfile::tempdir().unwrap();
        let (db, _log, mut sm) =
            crate::open_stores(dir.path(), std::sync::Arc::new(banyan_events::Discard)).unwrap();
        let nodes: BTreeMap<NodeId, crate::Node> = (1..=3)
            .map(|id| (id, crate::Node::new(format!("node-{id}:7000"))))
            .collect();
        let membership = Membership::new(vec![voters.iter().copied().collect()], nodes);
        let log_id = |index| crate::LogId::new(CommittedLeaderId::new(1, 1), index);
        let cluster = |action| Stamped {
            at_ms: 1,
            command: Command {
                request_id: None,
                action: Action::Cluster(action),
                principal: None,
            },
        };
        let answers = sm
            .apply([
                crate::Entry {
                    log_id: log_id(1),
                    payload: EntryPayload::Membership(membership),
                },
                crate::Entry {
                    log_id: log_id(2),
                    payload: EntryPayload::Normal(Batch(vec![
                        cluster(ClusterAction::Found {
                            cluster_id: "aa".into(),
                        }),
                        cluster(ClusterAction::Register {
                            node_id: 1,
                            incarnation: "01".into(),
                        }),
                        cluster(ClusterAction::Register {
                            node_id: 2,
                            incarnation: "02".into(),
                        }),
                        // Not a member: refused, changes nothing.
                        cluster(ClusterAction::Register {
                            node_id: 9,
                            incarnation: "09".into(),
                        }),
                    ])),
                },
            ])
            .await
            .unwrap();
        assert!(answers[1].0[..3].iter().all(Result::is_ok), "{answers:?}");
        assert!(answers[1].0[3].is_err());
        let identity = Identity::new(3, &db, sm.applied_state());
        identity.resolve(0).await.unwrap();
        (dir, identity, sm, db)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (name, value) in pairs {
            insert(&mut map, name, value);
        }
        map
    }

    #[tokio::test]
    async fn peers_of_another_cluster_and_replaced_directories_are_refused() {
        let (_dir, identity, _sm, _db) = node_three().await;
        assert_eq!(identity.cluster_id().as_deref(), Some("aa"));
        assert_eq!(identity.registered(2).as_deref(), Some("02"));
        assert_eq!(identity.registered(9), None);
        // The registered node 2, of this cluster.
        let ok = headers(&[(CLUSTER_HEADER, "aa"), (INCARNATION_HEADER, "02")]);
        identity.check_incoming(2, &ok).unwrap();
        // A call without identity headers (a node of the release before) passes.
        identity.check_incoming(2, &MetadataMap::new()).unwrap();
        // Another cluster.
        let other = headers(&[(CLUSTER_HEADER, "bb"), (INCARNATION_HEADER, "02")]);
        let refusal = identity.check_incoming(2, &other).unwrap_err();
        assert!(refusal.reason.contains("cluster bb"), "{refusal:?}");
        assert!(!refusal.caller_fenced);
        // Node 2 on another data directory: refused, and told it is fenced.
        let wiped = headers(&[(CLUSTER_HEADER, "aa"), (INCARNATION_HEADER, "0f")]);
        let refusal = identity.check_incoming(2, &wiped).unwrap_err();
        assert!(refusal.caller_fenced, "{refusal:?}");
        assert!(refusal.reason.contains("wiped or replaced"), "{refusal:?}");
        assert!(identity.fenced().borrow().is_none(), "the receiver is fine");
    }

    #[tokio::test]
    async fn a_branch_of_another_cluster_is_refused() {
        let (_dir, identity, _sm, _db) = node_three().await;
        identity
            .check_cluster_of_caller(&headers(&[(CLUSTER_HEADER, "aa")]))
            .unwrap();
        // A branch that has not learned its cluster yet names none.
        identity
            .check_cluster_of_caller(&MetadataMap::new())
            .unwrap();
        let refused = identity
            .check_cluster_of_caller(&headers(&[(CLUSTER_HEADER, "bb")]))
            .unwrap_err();
        assert!(refused.contains("cluster bb"), "{refused}");
    }

    #[tokio::test]
    async fn a_call_meant_for_another_directory_fences_the_receiver() {
        let (_dir, identity, _sm, _db) = node_three().await;
        let own = identity.incarnation().unwrap().to_owned();
        let meant_for_me = headers(&[
            (INCARNATION_HEADER, "01"),
            (TARGET_NODE_HEADER, "3"),
            (TARGET_HEADER, &own),
        ]);
        identity.check_incoming(1, &meant_for_me).unwrap();
        assert!(identity.fenced().borrow().is_none());
        // Meant for another node id (its address passed to this one): refused, no fence.
        let misaddressed = headers(&[
            (INCARNATION_HEADER, "01"),
            (TARGET_NODE_HEADER, "2"),
            (TARGET_HEADER, "0e"),
        ]);
        let refusal = identity.check_incoming(1, &misaddressed).unwrap_err();
        assert!(refusal.reason.contains("means node 2"), "{refusal:?}");
        assert!(identity.fenced().borrow().is_none());
        let meant_for_old = headers(&[
            (INCARNATION_HEADER, "01"),
            (TARGET_NODE_HEADER, "3"),
            (TARGET_HEADER, "0e"),
        ]);
        let refusal = identity.check_incoming(1, &meant_for_old).unwrap_err();
        assert!(!refusal.caller_fenced);
        let fenced = identity.fenced().borrow().clone().expect("fenced");
        assert!(fenced.contains("new id"), "{fenced}");
    }

    #[tokio::test]
    async fn a_directory_keeps_its_incarnation_and_a_restored_one_takes_the_registered() {
        let (dir, identity, sm, db) = node_three().await;
        let own = identity.incarnation().unwrap().to_owned();
        drop(identity);
        // The same directory, node 3 again: the same incarnation.
        let again = Identity::new(3, &db, sm.applied_state());
        assert_eq!(again.resolve(0).await.unwrap(), own);
        // Node 2 started on this directory (a restored backup of node 3): it has no
        // incarnation of its own here and takes the one registered for node 2.
        let restored = Identity::new(2, &db, sm.applied_state());
        assert_eq!(restored.resolve(0).await.unwrap(), "02");
        drop(dir);
    }

    /// A voter refuses a peer whose clock runs ahead of its own past the budget; a call
    /// that looks behind (it may only have been slow) passes, and a learner refuses
    /// nobody for its clock.
    #[tokio::test]
    async fn a_voter_refuses_a_peer_whose_clock_runs_ahead() {
        let at = |offset_ms: i64| (wall_clock_ms() + offset_ms).to_string();
        let (_dir, voter, _sm, _db) = node_three().await;
        let ahead = at(2_000);
        let refusal = voter
            .check_incoming(1, &headers(&[(SENT_AT_HEADER, &ahead)]))
            .unwrap_err();
        assert!(refusal.reason.contains("ms ahead"), "{refusal:?}");
        assert!(!refusal.caller_fenced);
        assert!(voter.fenced().borrow().is_none());
        voter
            .check_incoming(1, &headers(&[(SENT_AT_HEADER, &at(100))]))
            .unwrap();
        voter
            .check_incoming(1, &headers(&[(SENT_AT_HEADER, &at(-5_000))]))
            .unwrap();
        let (_dir, learner, _sm, _db) = node_three_among(&[1, 2]).await;
        learner
            .check_incoming(1, &headers(&[(SENT_AT_HEADER, &ahead)]))
            .unwrap();
        // A learner's register may be old: it refuses a directory it does not know, but
        // never tells the caller it is fenced.
        let refusal = learner
            .check_incoming(2, &headers(&[(INCARNATION_HEADER, "0f")]))
            .unwrap_err();
        assert!(!refusal.caller_fenced, "{refusal:?}");
    }

    #[tokio::test]
    async fn a_round_trip_measures_a_peers_clock() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _log, sm) =
            crate::open_stores(dir.path(), std::sync::Arc::new(banyan_events::Discard)).unwrap();
        let identity = Identity::new(3, &db, sm.applied_state());
        // Sent at 1000, back at 1010, the peer read 3005: 2 s ahead, within 5 ms.
        identity.saw_clock(1, 1_000, 1_010, 3_005);
        // 300 ms off over a 200 ms round trip may be only 200 ms off: within the budget.
        identity.saw_clock(2, 1_000, 1_200, 1_400);
        let clocks = identity.peer_clocks();
        assert_eq!(
            clocks[&1],
            PeerClock {
                offset_ms: 2_000,
                uncertainty_ms: 5
            }
        );
        assert!(clocks[&1].past_budget());
        assert_eq!(clocks[&2].offset_ms, 300);
        assert!(!clocks[&2].past_budget());
    }

    /// A node that joins by snapshot knows the cluster and its members' directories.
    #[tokio::test]
    async fn the_register_travels_in_snapshots() {
        use openraft::storage::RaftStateMachine;
        use openraft::RaftSnapshotBuilder;

        let (_dir, _identity, mut sm, _db) = node_three().await;
        let snapshot = sm.build_snapshot().await.unwrap();
        let other = tempfile::tempdir().unwrap();
        let (_db, _log, mut joined) =
            crate::open_stores(other.path(), std::sync::Arc::new(banyan_events::Discard)).unwrap();
        joined
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        let cluster = joined.applied_state().read().cluster.clone();
        assert_eq!(cluster, sm.applied_state().read().cluster);
        assert_eq!(cluster.cluster_id.as_deref(), Some("aa"));
        assert_eq!(cluster.incarnations.len(), 2);
    }

    #[test]
    fn random_ids_differ_and_pass_their_own_check() {
        let (a, b) = (random_id(), random_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        check_id("cluster_id", &a).unwrap();
    }
}
