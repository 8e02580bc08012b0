//! One core node: Raft over the sled stores, with the operations the services need.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use banyan_domain::{Action, Command, Principal, Stamped};
use banyan_proto::v1::command_forwarding_client::CommandForwardingClient;
use banyan_proto::v1::RaftPayload;
use banyan_raft::{
    AppliedState, ChangeMembers, Database, Identity, LinkControl, LogStore, Node, NodeId, Raft,
    RaftMetrics, StateMachineStore,
};
use banyan_trust::Security;

use crate::config::CoreConfig;
use crate::errors::{read_error, write_error, ApiError, LeaderHint, ServiceError};
use crate::proposer::Proposer;
use banyan_api::forward::Forwarder;
use banyan_api::Committed;
use banyan_observe::{Observed, OwnBranch, Telemetry};

use banyan_env::Shutdown;
/// The wall clock the leader stamps commands with; injected so tests can run on a
/// controlled time.
pub use banyan_env::{system_clock, Clock};
use banyan_events::EventFeed;

/// Why a core node did not start: its Raft did not.
pub use banyan_raft::StartError;
use banyan_raft::{start_raft, Started};

/// How long a caller waits for its proposal, here or forwarded to the leader: the
/// proposer's own commit timeout plus time for the batch to form.
const PROPOSAL_TIMEOUT: Duration =
    crate::proposer::COMMIT_TIMEOUT.saturating_add(Duration::from_millis(500));

/// How long a membership call waits for a new node to catch up before answering
/// `UNAVAILABLE` (clients retry; the node keeps replicating meanwhile).
const CATCH_UP_WAIT: Duration = Duration::from_secs(4);

/// How recently a leader must have heard from a quorum to propose a lease renewal (its
/// heartbeats go every 50 ms by default).
const RENEWAL_QUORUM_MS: u64 = 1_000;

/// A node this close to the leader's last log counts as caught up.
const CAUGHT_UP_LAG: u64 = 1_000;

/// A running core node. Cheap to clone; every clone drives the same Raft.
#[derive(Clone)]
pub struct CoreNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    advertise_addr: String,
    raft: Raft,
    proposer: Proposer,
    applied: AppliedState,
    log: LogStore,
    state_machine: StateMachineStore,
    db: Database,
    clock: Clock,
    /// Channels to the leader for commands this node cannot commit itself.
    forwarder: Forwarder,
    telemetry: Arc<Telemetry>,
    /// TLS and credentials of this node (or `--insecure`).
    security: Security,
    /// The cluster and data directory this node runs as.
    identity: Identity,
    /// Begun when the node stops: the ticker, the identity registrar and the telemetry's
    /// offer watcher end on it.
    shutdown: Shutdown,
    /// The events the state machine applies, handed over through its hook.
    events: EventFeed,
}

/// The longest the ticker sleeps without looking at the clock again: the wall clock can be
/// stepped, and a timer due by the stepped clock is then proposed within this bound.
const LONGEST_NAP: Duration = Duration::from_secs(1);
/// How long the ticker waits before proposing a `Tick` again for a timer that the last one
/// left due (it was not committed, or did not clear it), and how often at most it looks
/// at the applied state again for a new timer.
const TICK_RETRY: Duration = Duration::from_millis(100);

impl CoreNode {
    /// Opens the node's storage under `config.data_dir` and starts Raft. Bootstraps the
    /// cluster from `config.init` when this node has never been initialized.
    pub async fn start(
        config: &CoreConfig,
        links: LinkControl,
        clock: Clock,
    ) -> Result<Self, StartError> {
        let (id, data_dir) = (config.id, &config.data_dir);
        let events = EventFeed::default();
        let hook = Arc::new(events.clone());
        let security = &config.security;
        let started = start_raft(id, data_dir, &config.timers, links, security, hook).await?;
        let Started {
            db,
            log,
            state_machine,
            raft,
            identity,
        } = started;
        let shutdown = Shutdown::new();
        identity.spawn_registrar(raft.clone(), shutdown.clone());
        let telemetry = Telemetry::new();
        telemetry.watch_offers(
            state_machine.applied_state(),
            events.clone(),
            shutdown.clone(),
        );
        let node = Self {
            inner: Arc::new(Inner {
                telemetry,
                id: config.id,
                advertise_addr: config.advertise_addr.clone(),
                applied: state_machine.applied_state(),
                proposer: Proposer::start(raft.clone(), state_machine.applied_state()),
                raft,
                log,
                state_machine,
                db,
                clock,
                forwarder: Forwarder::new(config.security.clone()),
                identity,
                security: config.security.clone(),
                shutdown: shutdown.clone(),
                events,
            }),
        };
        tokio::spawn(run_ticker(node.clone(), config.retain_finished, shutdown));
        if let Some(voters) = &config.init {
            if let Err(e) = node.bootstrap(voters).await {
                // The ticker and the registrar hold the node: stop them with it.
                node.shutdown().await;
                return Err(e);
            }
        }
        Ok(node)
    }

    /// Forms a new cluster from `voters` unless this node already belongs to one.
    async fn bootstrap(&self, voters: &BTreeMap<NodeId, String>) -> Result<(), StartError> {
        let raft = &self.inner.raft;
        if raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?
        {
            tracing::info!("already initialized; --init ignored");
            return Ok(());
        }
        let members: BTreeMap<NodeId, Node> = voters
            .iter()
            .map(|(id, addr)| (*id, Node::new(addr.clone())))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(voters = ?voters.keys().collect::<Vec<_>>(), "initialized a new cluster")
            }
            // Another voter started with the same --init got there first.
            Err(e) if e.api_error().is_some() => {
                tracing::info!(reason = %e, "cluster already forming; --init ignored")
            }
            Err(e) => return Err(StartError::Raft(e.to_string())),
        }
        Ok(())
    }

    /// This node's Raft id, as status replies and leader hints give it.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// Where peers and clients reach this node, as the membership records it.
    pub fn advertise_addr(&self) -> &str {
        &self.inner.advertise_addr
    }

    /// The Raft handle, for the transport that carries peers' messages into it.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The cluster and data directory this node runs as.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// The state applied on this node: what its reads and watches serve without the leader.
    pub fn applied(&self) -> &AppliedState {
        &self.inner.applied
    }

    /// A copy of Raft's latest view (leader, term, membership, replication), taken so no
    /// caller holds Raft's watch while it works.
    pub fn metrics(&self) -> RaftMetrics {
        self.inner.raft.metrics().borrow().clone()
    }

    /// The highest log index this node knows committed; a follower's can trail the leader's.
    pub fn committed_index(&self) -> u64 {
        self.inner.log.committed_index()
    }

    /// Snapshots this node built itself since it started, for the wallboard and metrics.
    pub fn snapshots_built(&self) -> u64 {
        self.inner.state_machine.snapshots_built()
    }

    /// What the node counts as it runs (gRPC requests, time to offer).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    /// The leader as this node sees it.
    pub fn leader_hint(&self) -> LeaderHint {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let id = metrics.current_leader;
        let addr = id.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        LeaderHint { id, addr }
    }

    /// TLS and credentials of this node, for its gRPC server and the calls it makes.
    pub fn security(&self) -> &Security {
        &self.inner.security
    }

    /// Channels to the leader, shared by every service that hands a request on to it.
    pub fn forwarder(&self) -> &Forwarder {
        &self.inner.forwarder
    }

    /// Whether Raft last reported this node as leader; it may be deposed a moment later.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == banyan_raft::ServerState::Leader
    }

    /// Commits `command` through the leader, wherever it is: proposes it here on the
    /// leader, or hands it to the leader once (never onward) from any other node. Returns
    /// once the command is applied on this node too, so a read here sees it.
    pub async fn submit(&self, command: Command) -> Result<Committed, ApiError> {
        let hint = match self.propose(command.clone()).await {
            Err(ServiceError::NotLeader(hint)) => hint,
            other => return other.map_err(Into::into),
        };
        // Once, to the leader this node knows: if it moved meanwhile the caller gets
        // UNAVAILABLE with its address and retries there.
        let channel = self.inner.forwarder.leader_channel(&hint)?;
        banyan_api::forward::forward_command(
            &command,
            &self.inner.applied,
            PROPOSAL_TIMEOUT,
            |data| async move {
                let mut request = tonic::Request::new(RaftPayload { data });
                request.set_timeout(PROPOSAL_TIMEOUT);
                if let Some(context) = banyan_client::trace::current() {
                    context.inject(request.metadata_mut());
                }
                Ok(CommandForwardingClient::new(channel)
                    .max_encoding_message_size(banyan_raft::network::MAX_MESSAGE_BYTES)
                    .max_decoding_message_size(banyan_raft::network::MAX_MESSAGE_BYTES)
                    .propose(request)
                    .await?
                    .into_inner()
                    .data)
            },
        )
        .await
    }

    /// Proposes `command`, stamped with the leader's clock, and returns the domain's
    /// answer once it is committed and applied. Fails with `NotLeader` on a follower.
    pub async fn propose(&self, command: Command) -> Result<Committed, ServiceError> {
        if matches!(command.action, Action::RenewLease { .. }) {
            self.check_recent_quorum()?;
        }
        let stamped = Stamped {
            at_ms: (self.inner.clock)(),
            command,
        };
        let leading = self.is_leader();
        let proposed = tokio::time::timeout(PROPOSAL_TIMEOUT, self.inner.proposer.propose(stamped))
            .await
            .map_err(|_| ServiceError::Unconfirmed)?;
        match proposed {
            // A leader told "not the leader" after proposing may have had the entry in its
            // log: openraft says so when the entry is overwritten, and another node holding
            // a copy can still commit it later. Only a node that was not leading knows the
            // command was never proposed.
            Err(ServiceError::NotLeader(_)) if leading => Err(ServiceError::Interrupted(
                "leadership lost with the write proposed".into(),
            )),
            other => other,
        }
    }

    /// A lease renewal is proposed only by a leader that heard from a quorum lately. One
    /// that lost its quorum (its followers died, or it was elected just before they did)
    /// would append the renewal and commit it only when the quorum returns, seconds after
    /// the branch, which never saw it accepted, went on alone: the core would then hold
    /// the site's lease again, and both would route to its agents. Refused here, the
    /// renewal is a definite failure the branch counts as such.
    fn check_recent_quorum(&self) -> Result<(), ServiceError> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let leads = metrics.state == banyan_raft::ServerState::Leader;
        match metrics.millis_since_quorum_ack {
            Some(ms) if leads && ms > RENEWAL_QUORUM_MS => Err(ServiceError::NoQuorum(format!(
                "this leader has heard from no quorum for {ms} ms; a lease renewal is not \
                 proposed without one (retry: another node may lead)"
            ))),
            _ => Ok(()),
        }
    }

    /// Confirms leadership with a quorum and waits until everything committed before this
    /// call is applied, so a read after it sees every acknowledged write.
    pub async fn linearize(&self) -> Result<(), ServiceError> {
        self.inner
            .raft
            .ensure_linearizable()
            .await
            .map(drop)
            .map_err(read_error)
    }

    /// Adds `id` at `addr` as a learner (or updates its address), then waits a little for it
    /// to catch up; the index of the membership entry is returned either way.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<u64, ServiceError> {
        let reply = self
            .inner
            .raft
            .add_learner(id, Node::new(addr), false)
            .await
            .map_err(write_error)?;
        // Catching up may take longer (a large snapshot); the learner keeps replicating.
        let _ = self.wait_caught_up(id).await;
        Ok(reply.log_id.index)
    }

    /// Makes `id` a voter once it has caught up with the log: promoting a node that is
    /// unreachable or far behind would weaken the quorum instead of strengthening it.
    pub async fn promote(&self, id: NodeId) -> Result<u64, ServiceError> {
        self.wait_caught_up(id).await?;
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await
    }

    /// Waits (briefly) until the leader has replicated to `id` all but a few entries.
    async fn wait_caught_up(&self, id: NodeId) -> Result<(), ServiceError> {
        let mut metrics = self.inner.raft.metrics();
        let mut lag = None;
        let waited = tokio::time::timeout(CATCH_UP_WAIT, async {
            loop {
                {
                    let m = metrics.borrow_and_update();
                    let Some(replication) = &m.replication else {
                        return Err(ServiceError::NotLeader(self.leader_hint()));
                    };
                    let last = m.last_log_index.unwrap_or(0);
                    if let Some(matched) = replication.get(&id) {
                        let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
                        lag = Some(behind);
                        if matched.is_some() && behind <= CAUGHT_UP_LAG {
                            return Ok(());
                        }
                    }
                }
                if metrics.changed().await.is_err() {
                    return Err(ServiceError::Stopped("Raft stopped".into()));
                }
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Err(ServiceError::CatchingUp {
                node: id,
                lag: lag.map_or("unknown".into(), |l| format!("{l} entries")),
            }),
        }
    }

    /// Removes `id` from the cluster, whether voter or learner.
    pub async fn remove(&self, id: NodeId, voter: bool) -> Result<u64, ServiceError> {
        let ids = BTreeSet::from([id]);
        // Not retained: a removed voter leaves the cluster instead of staying a learner.
        self.change(if voter {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        })
        .await
    }

    async fn change(&self, change: ChangeMembers) -> Result<u64, ServiceError> {
        let reply = self
            .inner
            .raft
            .change_membership(change, false)
            .await
            .map_err(write_error)?;
        Ok(reply.log_id.index)
    }

    /// A guard that ends the node's background tasks when dropped: for a server dropped
    /// without a shutdown.
    pub(crate) fn stop_tasks_on_drop(&self) -> banyan_env::BeginOnDrop {
        self.inner.shutdown.begin_on_drop()
    }

    /// Stops Raft and flushes storage. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.begin();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        if let Err(e) = self.inner.db.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// The public services run on a core node: writes through the leader, linearizable reads
/// on the leader (a follower sends them to it once).
impl banyan_api::Backend for CoreNode {
    fn node_id(&self) -> u64 {
        self.id()
    }

    fn applied(&self) -> AppliedState {
        self.inner.applied.clone()
    }

    fn events(&self) -> EventFeed {
        self.inner.events.clone()
    }

    async fn submit(&self, command: Command) -> Result<Committed, ApiError> {
        CoreNode::submit(self, command).await
    }

    async fn read_target(
        &self,
        already_forwarded: bool,
    ) -> Result<Option<tonic::transport::Channel>, ApiError> {
        match self.linearize().await {
            Ok(()) => Ok(None),
            Err(ServiceError::NotLeader(hint)) if !already_forwarded => {
                self.inner.forwarder.leader_channel(&hint).map(Some)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Proposes a `Tick` whenever this node leads and a timer of the applied state is due,
/// and a `ForgetFinished` once the oldest finished contact has been finished `retain`.
/// Sleeps until the next timer is due, or until an applied entry (looked at no more often
/// than every `TICK_RETRY`) or a change of leadership may have moved it; ends when the node
/// stops or Raft does.
async fn run_ticker(node: CoreNode, retain: Duration, shutdown: Shutdown) {
    let mut applied = node.inner.applied.applied_index_changes();
    let mut raft = node.inner.raft.metrics();
    // The timer the last `Tick` was proposed for, and when.
    let mut last_ticked: Option<(i64, tokio::time::Instant)> = None;
    loop {
        let state = raft.borrow_and_update().state;
        let leading = match state {
            banyan_raft::ServerState::Shutdown => return,
            banyan_raft::ServerState::Leader => true,
            _ => false,
        };
        let mut nap = None;
        if leading {
            let retain_ms = i64::try_from(retain.as_millis()).unwrap_or(i64::MAX);
            // Finished contacts leave in batches, a tenth of the window (at most a minute)
            // past their time, not one entry per contact.
            let slack_ms = (retain_ms / 10).min(60_000);
            let (timer, forget) = {
                let applied = node.inner.applied.read();
                let forget = applied.domain.oldest_finished_ms();
                let due = |at: i64| at.saturating_add(retain_ms).saturating_add(slack_ms);
                (applied.domain.next_due_ms(), forget.map(due))
            };
            let due = match (timer, forget) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let now = (node.inner.clock)();
            let ticked = last_ticked.map(|(due, at)| (due, at.elapsed()));
            nap = match tick_nap(due, now, ticked) {
                Nap::TickNow(due) => {
                    last_ticked = Some((due, tokio::time::Instant::now()));
                    let me = Principal::Node(node.id());
                    let mut actions = Vec::new();
                    if timer.is_some_and(|t| t <= now) {
                        actions.push(Action::Tick);
                    }
                    if forget.is_some_and(|f| f <= now) {
                        let before_ms = now.saturating_sub(retain_ms);
                        actions.push(Action::ForgetFinished { before_ms });
                    }
                    for action in actions {
                        let command = Command::new(action).by(me.clone());
                        if let Err(e) = node.propose(command).await {
                            tracing::debug!(error = %e, "timer command not committed");
                        }
                    }
                    continue;
                }
                Nap::For(nap) => Some(nap),
                Nap::UntilNotified => None,
            };
        }
        // Every write moves the applied index; a new timer is looked for at most every
        // TICK_RETRY, as late as the ticker once was at worst, instead of on every entry.
        let looked = tokio::time::Instant::now();
        let state_moved = async {
            tokio::time::sleep_until(looked + TICK_RETRY).await;
            applied.changed().await
        };
        tokio::select! {
            () = shutdown.begun() => return,
            changed = state_moved => if changed.is_err() { return },
            changed = raft.wait_for(|m| {
                (m.state == banyan_raft::ServerState::Leader) != leading
                    || m.state == banyan_raft::ServerState::Shutdown
            }) => if changed.is_err() { return },
            () = sleep_for(nap) => {}
        }
    }
}

/// What the ticker does next.
#[derive(Debug, PartialEq, Eq)]
enum Nap {
    /// Propose a `Tick` for the timer due at this time.
    TickNow(i64),
    /// Look again after this long, or sooner if something changes.
    For(Duration),
    /// No timer is set: wait for something to change.
    UntilNotified,
}

/// When to propose the next `Tick`, given the earliest timer `due`, the clock `now`, and
/// the timer the last `Tick` was proposed for with the time since.
fn tick_nap(due: Option<i64>, now: i64, last_ticked: Option<(i64, Duration)>) -> Nap {
    match (due, last_ticked) {
        (None, _) => Nap::UntilNotified,
        // The last tick left this timer due (it was not committed, or did not clear it):
        // propose again after a pause, not in a busy loop, and never give up on it.
        (Some(due), Some((ticked, since))) if due <= now && ticked == due && since < TICK_RETRY => {
            Nap::For(TICK_RETRY.saturating_sub(since))
        }
        (Some(due), _) if due <= now => Nap::TickNow(due),
        (Some(due), _) => {
            let ms = u64::try_from(due.saturating_sub(now)).unwrap_or(u64::MAX);
            Nap::For(Duration::from_millis(ms).min(LONGEST_NAP))
        }
    }
}

/// Sleeps for `nap`, or forever for `None`.
async fn sleep_for(nap: Option<Duration>) {
    match nap {
        Some(nap) => tokio::time::sleep(nap).await,
        None => std::future::pending().await,
    }
}

impl Observed for CoreNode {
    fn node_id(&self) -> u64 {
        self.inner.id
    }

    /// Ready when the node belongs to an initialized cluster and knows a leader, so
    /// requests sent to it will be served or forwarded.
    fn readiness(&self) -> Result<String, String> {
        let metrics = self.metrics();
        if metrics
            .membership_config
            .membership()
            .get_node(&metrics.id)
            .is_none()
        {
            return Err("not a member of an initialized cluster".into());
        }
        match metrics.current_leader {
            Some(leader) => Ok(format!(
                "leader is node {leader}, term {}",
                metrics.current_term
            )),
            None => Err("no leader known".into()),
        }
    }

    fn site(&self) -> Option<String> {
        None
    }

    fn serving(&self) -> AppliedState {
        self.inner.applied.clone()
    }

    fn raft_metrics(&self) -> RaftMetrics {
        self.metrics()
    }

    fn committed_index(&self) -> Option<u64> {
        Some(CoreNode::committed_index(self))
    }

    fn snapshots_built(&self) -> u64 {
        CoreNode::snapshots_built(self)
    }

    fn log_purges(&self) -> Option<u64> {
        Some(self.inner.log.purge_count())
    }

    fn own_branch(&self) -> Option<OwnBranch> {
        None
    }

    fn telemetry(&self) -> Arc<Telemetry> {
        self.inner.telemetry.clone()
    }

    fn peer_clocks(&self) -> std::collections::BTreeMap<u64, banyan_raft::identity::PeerClock> {
        self.inner.identity.peer_clocks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticker_sleeps_until_the_next_timer_and_never_spins_on_one() {
        // No timer: nothing to wake for but a change.
        assert_eq!(tick_nap(None, 1_000, None), Nap::UntilNotified);
        // A timer ahead: sleep until it is due, never longer than the bound.
        assert_eq!(
            tick_nap(Some(1_250), 1_000, None),
            Nap::For(Duration::from_millis(250))
        );
        assert_eq!(
            tick_nap(Some(i64::MAX), i64::MIN, None),
            Nap::For(LONGEST_NAP)
        );
        // Due now or past: tick.
        assert_eq!(tick_nap(Some(1_000), 1_000, None), Nap::TickNow(1_000));
        let earlier = Some((800, Duration::from_millis(5)));
        assert_eq!(tick_nap(Some(900), 1_000, earlier), Nap::TickNow(900));
        // Still due just after a tick for it: pause before the next.
        let just_now = Some((900, Duration::from_millis(30)));
        assert_eq!(
            tick_nap(Some(900), 1_000, just_now),
            Nap::For(Duration::from_millis(70))
        );
    }

    /// A `Tick` that was not committed (the leader lost its term and won it back, say)
    /// leaves its timer due: the ticker must propose it again once the pause is over, or
    /// every timer of the cluster stops while this node leads.
    #[test]
    fn a_tick_that_did_not_clear_its_timer_is_proposed_again_after_the_pause() {
        let paused_out = Some((900, TICK_RETRY));
        assert_eq!(tick_nap(Some(900), 1_000, paused_out), Nap::TickNow(900));
        let long_ago = Some((900, Duration::from_secs(60)));
        assert_eq!(tick_nap(Some(900), 5_000, long_ago), Nap::TickNow(900));
    }
}
