//! The branch node: an openraft learner of the core over the same sled stores as a core
//! voter, and the `Backend` the public services run on.

use banyan_api::ApiError;
use std::sync::Arc;
use std::time::Duration;

use crate::outbox::Outbox;
use banyan_api::{Backend, Committed};
use banyan_client::{Client, RetryPolicy};
use banyan_domain::Command;
use banyan_domain::{Action, Contact, ContactInput};
use banyan_env::Clock;
use banyan_events::EventFeed;
use banyan_observe::{Observed, OwnBranch, Telemetry};
use banyan_raft::start_raft;
use banyan_raft::{AppliedState, Database, Identity, LinkControl, Raft, StoreError};
use tonic::transport::Channel;

use crate::accepts::Accepts;
use crate::config::BranchConfig;
use crate::journal::Journal;
use crate::lease::Lease;
use crate::self_service::SelfService;

/// How long a write the core committed waits for the branch's replica to apply it.
const REPLICA_WAIT: Duration = Duration::from_secs(6);
/// Pause between attempts to join the core as a learner.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// Why a branch could not start; each stops it before it serves a request.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its Raft learner did not start (storage, configuration, identity).
    #[error(transparent)]
    Raft(#[from] banyan_raft::StartError),
    /// The branch's own logs (outbox, journal, accepts) under the data directory did not
    /// open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No client to the core could be built from `--core` (an address, or TLS).
    #[error("core endpoints: {0}")]
    Core(String),
    /// A journal entry or an accept in doubt left by an earlier run cannot be read:
    /// skipping it would lose a write the branch acknowledged.
    #[error("the branch's own records: {0}")]
    Journal(String),
}

/// A running branch. Cheap to clone.
#[derive(Clone)]
pub struct BranchNode {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: BranchConfig,
    raft: Raft,
    /// The replica of the core's state (Raft learner).
    pub(crate) replica: AppliedState,
    /// The events the replica applies, handed over by its state machine's hook.
    pub(crate) replica_events: EventFeed,
    /// Connected or on its own, and the site's own state while on its own.
    pub(crate) mode: crate::autonomy::ModeState,
    /// What the branch did on its own while cut off, and the state of handing it over.
    pub(crate) journal: Journal,
    db: Database,
    /// The core, for joining, writes and lease renewals.
    pub(crate) core: Client,
    pub(crate) lease: Lease,
    /// Self-served contacts on their way to the core.
    self_service: SelfService,
    /// Accepts sent to the core without a definite answer yet, on disk before sent, so a
    /// branch cut off (or restarted) mid-accept keeps the agent's capacity for a call the
    /// core may have connected.
    pub(crate) accepts: Accepts,
    /// Begun when the branch stops: every background task ends on it.
    pub(crate) shutdown: banyan_env::Shutdown,
    /// The wall clock: lease renewals' stamps, and the site's commands and timers while
    /// the branch is on its own.
    pub(crate) clock: Clock,
    /// Cached channels to core nodes, for reads sent to the core.
    channels: banyan_api::forward::Forwarder,
    state_machine: banyan_raft::StateMachineStore,
    telemetry: Arc<Telemetry>,
    /// The cluster and data directory this branch runs as.
    identity: Identity,
}

impl BranchNode {
    /// Opens the branch's storage, starts its Raft as a (not yet joined) learner, and
    /// starts joining the core and renewing the site's lease in the background.
    /// `clock` is the wall clock the branch stamps its renewals and its journal with;
    /// injected, as a core node's is, so tests can run a branch on a controlled time.
    pub async fn start(
        config: BranchConfig,
        links: LinkControl,
        clock: Clock,
    ) -> Result<Self, StartError> {
        let security = &config.security;
        let replica_events = EventFeed::default();
        let hook = Arc::new(replica_events.clone());
        let (id, data_dir, timers) = (config.id, &config.data_dir, &config.timers);
        let started = start_raft(id, data_dir, timers, links, security, hook);
        let started = started.await?;
        let (db, state_machine) = (started.db, started.state_machine);
        let (raft, identity) = (started.raft, started.identity);
        // A write in flight when the core goes away must be settled (done or given up)
        // before the branch may route on its own, a lease TTL later.
        let policy = RetryPolicy {
            total_timeout: config.lease_ttl.min(RetryPolicy::default().total_timeout),
            attempt_timeout: config.lease_ttl.min(RetryPolicy::default().attempt_timeout),
            // The branch reaches the core only at the addresses it was given: the ones
            // core nodes advertise to each other may not be reachable from a site (NAT, a
            // gateway in front of the core). A follower's refusal moves it to the next.
            follow_leader: false,
            ..RetryPolicy::default()
        };
        let core = Client::new(&config.core, policy, &config.security)
            .map_err(|e| StartError::Core(e.to_string()))?;
        {
            // Every call names the cluster of the branch's replica: the core refuses a
            // branch of another cluster (its journal and its site are that cluster's).
            let identity = identity.clone();
            core.name_cluster(move || identity.cluster_id());
        }
        let shutdown = banyan_env::Shutdown::new();
        let lease = Lease::new(&config, shutdown.clone());
        let outbox = Arc::new(Outbox::open(&db, "outbox")?);
        let journal = Journal::new(Arc::new(Outbox::open(&db, "journal")?));
        let accepts = Accepts::new(Arc::new(Outbox::open(&db, "accepts")?));
        let telemetry = Telemetry::new();
        let replica = state_machine.applied_state();
        telemetry.watch_offers(replica.clone(), replica_events.clone(), shutdown.clone());
        let node = Self {
            inner: Arc::new(Inner {
                telemetry,
                state_machine: state_machine.clone(),
                replica,
                replica_events,
                mode: Default::default(),
                journal,
                raft,
                identity,
                db,
                core,
                lease,
                self_service: SelfService::new(outbox, clock.clone()),
                accepts,
                shutdown: shutdown.clone(),
                clock,
                channels: banyan_api::forward::Forwarder::new(config.security.clone()),
                config,
            }),
        };
        tokio::spawn(crate::ship::ship_forever(
            node.inner.self_service.outbox.clone(),
            node.inner.core.clone(),
            node.inner.clock.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(join_core(node.inner.clone()));
        let (replica, site, id) = (
            node.inner.replica.clone(),
            node.inner.config.site.clone(),
            node.inner.config.id,
        );
        tokio::spawn(crate::lease::renew_forever(
            node.inner.lease.clone(),
            node.inner.config.clone(),
            node.inner.self_service.outbox.clone(),
            node.inner.mode.cell.clone(),
            node.inner.identity.clone(),
            node.inner.clock.clone(),
            move || crate::autonomy::holds_lease(&replica, &site, id),
        ));
        if let Err(e) = node.inner.resume_journal() {
            node.shutdown().await;
            return Err(StartError::Journal(e));
        }
        tokio::spawn(crate::autonomy::watch_forever(node.inner.clone()));
        Ok(node)
    }

    /// The branch's Raft id: a learner in the core's membership.
    pub fn id(&self) -> u64 {
        self.inner.config.id
    }

    /// TLS and credentials of this branch (or `--insecure`).
    pub fn security(&self) -> &banyan_trust::Security {
        &self.inner.config.security
    }

    /// The site the branch serves, whose lease it holds and which it routes alone when cut off.
    pub fn site(&self) -> &str {
        &self.inner.config.site
    }

    /// The Raft handle, for the transport the core replicates its log through.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The cluster and data directory this branch runs as.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Whether the branch serves through the core, on its own, or is handing over.
    pub fn mode(&self) -> crate::autonomy::Mode {
        self.inner.mode.get()
    }

    /// What the branch counts as it runs (gRPC requests, time to offer).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    /// The site's lease as the branch knows it: when the core last answered, whether it
    /// may still hold.
    pub fn lease(&self) -> &Lease {
        &self.inner.lease
    }

    /// Self-served contacts not yet delivered to the core.
    pub fn outbox_backlog(&self) -> u64 {
        self.inner.self_service.outbox.backlog()
    }

    /// A guard that ends the node's background tasks when dropped: for a server dropped
    /// without a shutdown.
    pub(crate) fn stop_tasks_on_drop(&self) -> banyan_env::BeginOnDrop {
        self.inner.shutdown.begin_on_drop()
    }

    /// Stops Raft and flushes storage.
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

impl Inner {
    /// Sends a command to the core's leader, then waits until the branch's own replica
    /// has applied it.
    pub(crate) async fn forward(&self, command: &Command) -> Result<Committed, ApiError> {
        // Through the client, which follows the core's leader and retries what is safe
        // (the command's request id makes a retry apply once).
        banyan_api::forward::forward_command(command, &self.replica, REPLICA_WAIT, |payload| {
            self.core.propose(payload)
        })
        .await
    }
}

/// Asks the core to add this branch as a learner until it has, then ends (or once the
/// branch stops). The core replicates its log to the branch from then on.
async fn join_core(inner: Arc<Inner>) {
    let (id, addr) = (inner.config.id, inner.config.advertise_addr.clone());
    loop {
        let joined = tokio::select! {
            () = inner.shutdown.begun() => return,
            joined = inner.core.add_learner(id, &addr) => joined,
        };
        match joined {
            Ok(reply) => {
                tracing::info!(
                    id,
                    log_index = reply.log_index,
                    "joined the core as a learner"
                );
                return;
            }
            Err(status) => {
                tracing::warn!(id, %status, "joining the core failed; retrying");
            }
        }
        tokio::select! {
            () = inner.shutdown.begun() => return,
            () = tokio::time::sleep(JOIN_RETRY) => {}
        }
    }
}

impl Backend for BranchNode {
    fn node_id(&self) -> u64 {
        self.inner.config.id
    }

    fn applied(&self) -> AppliedState {
        self.inner.serving()
    }

    fn events(&self) -> EventFeed {
        self.inner.serving_events()
    }

    /// Sends the command to the core's leader, then waits until the branch's own replica
    /// has applied it, so a read at the branch right after sees it.
    async fn submit(&self, mut command: Command) -> Result<Committed, ApiError> {
        self.check_site_work(&command)?;
        assign_contact_id(&self.inner.config.site, &mut command);
        match self.inner.mode.get() {
            crate::autonomy::Mode::Connected => {}
            crate::autonomy::Mode::Autonomous => return self.inner.submit_local(command).await,
            crate::autonomy::Mode::Reconciling => {
                return Err(ApiError::unavailable(
                    "this branch is handing its autonomous work to the core; retry shortly",
                ))
            }
        }
        let accept = match &command.action {
            Action::AcceptOffer {
                agent_id,
                contact_id,
            } => Some(self.inner.accepts.record(contact_id, agent_id).await?),
            _ => None,
        };
        let result = self.inner.forward(&command).await;
        if let Some(seq) = accept {
            // Settled either way unless the core's answer never came, or came but has not
            // reached this branch's replica yet: if the core is lost before it does, the
            // branch's view for routing alone must still count the call against the agent
            // (the record is forgotten once the replica shows it, see
            // `Accepts::forget_settled`).
            let settled = match &result {
                Ok(committed) => self.inner.replica.applied_index() >= committed.index,
                Err(error) => !error.may_have_taken_effect(),
            };
            if settled {
                self.inner.accepts.forget(seq).await;
            }
        }
        result
    }

    /// Answers a self-service intent at the branch: the contact is recorded `SELF_SERVED`
    /// in the outbox (on disk before the answer) and shipped to the core later, so the
    /// caller never waits on the core.
    async fn self_serve(
        &self,
        input: &ContactInput,
        request_id: Option<&str>,
        by: &banyan_domain::Principal,
    ) -> Option<Result<Contact, ApiError>> {
        let answer = {
            let source = self.inner.serving();
            let applied = source.read();
            self.inner.config.triage.answer(input, &applied.domain)?
        };
        let inner = &self.inner;
        let recorded =
            inner
                .self_service
                .record(&inner.config, &inner.replica, input, request_id, answer, by);
        Some(recorded.await)
    }

    /// A linearizable read at a branch is answered by the core; a local read by the
    /// branch's replica (with its applied index).
    async fn read_target(&self, already_forwarded: bool) -> Result<Option<Channel>, ApiError> {
        if already_forwarded {
            return Ok(None);
        }
        let core = banyan_api::errors::LeaderHint {
            id: None,
            addr: Some(self.inner.core.current_endpoint()),
        };
        self.inner.channels.leader_channel(&core).map(Some)
    }
}

impl BranchNode {
    /// A branch forwards its site's work only: configuration and membership are made at
    /// the core (the core would refuse them from a branch anyway; this says so first).
    fn check_site_work(&self, command: &Command) -> Result<(), ApiError> {
        let me = banyan_domain::Principal::Branch {
            node: self.inner.config.id,
            site: self.inner.config.site.clone(),
        };
        let needed = banyan_trust::policy::action_permission(&command.action);
        if banyan_trust::policy::may_forward(&me, needed) {
            return Ok(());
        }
        Err(ApiError::Denied(banyan_trust::Denied::new(
            Some(&me),
            format!(
                "{}: that is made at the core, not at branch {} (send it to a core node)",
                banyan_trust::policy::action_name(&command.action),
                self.inner.config.site
            ),
        )))
    }
}

/// A contact id no other node makes: a kind, the site, this branch, its clock and a counter.
/// The id a branch gives the contact of create request `request_id`, whether it forwards
/// the create to the core or, cut off, makes the contact itself: a caller whose first
/// attempt reached the core just before the cut and whose retry was served at the branch
/// is one contact under one id (the import then reconciles the two copies).
pub(crate) fn contact_id_for_request(site: &str, request_id: &str) -> String {
    // FNV-1a: stable across builds and machines, unlike the standard library's hasher.
    let hash = request_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{site}-{hash:016x}")
}

/// Gives a create without an id the one its request determines (see
/// [`contact_id_for_request`]).
pub(crate) fn assign_contact_id(site: &str, command: &mut Command) {
    if let (Action::CreateContact(input), Some(request_id)) =
        (&mut command.action, command.request_id.as_deref())
    {
        if input.id.is_empty() {
            input.id = contact_id_for_request(site, request_id);
        }
    }
}

/// A new contact's id at branch node `node` of `site`, never the same twice.
pub(crate) fn fresh_contact_id(kind: &str, site: &str, node: u64) -> String {
    banyan_env::ids::unique(&format!("{kind}-{site}-{node}-"))
}

impl Observed for BranchNode {
    /// Ready once the branch serves its site: joined to the core as a learner, or routing
    /// on its own while the core is unreachable (the answer says which). A branch cut off
    /// from the core is still ready: its agents and callers are what it is there for.
    fn readiness(&self) -> Result<String, String> {
        let site = self.site();
        match self.mode() {
            crate::autonomy::Mode::Autonomous => {
                Ok(format!("serving site {site} on its own (core unreachable)"))
            }
            crate::autonomy::Mode::Reconciling => {
                Ok(format!("handing site {site}'s work to the core"))
            }
            crate::autonomy::Mode::Connected => {
                let metrics = self.inner.raft.metrics().borrow().clone();
                if metrics
                    .membership_config
                    .membership()
                    .get_node(&self.id())
                    .is_some()
                {
                    Ok(format!("serving site {site} through the core"))
                } else {
                    Err("not yet joined to the core".into())
                }
            }
        }
    }

    fn node_id(&self) -> u64 {
        self.inner.config.id
    }

    fn site(&self) -> Option<String> {
        Some(self.inner.config.site.clone())
    }

    fn serving(&self) -> AppliedState {
        self.inner.serving()
    }

    fn raft_metrics(&self) -> banyan_raft::RaftMetrics {
        self.inner.raft.metrics().borrow().clone()
    }

    fn committed_index(&self) -> Option<u64> {
        None
    }

    fn snapshots_built(&self) -> u64 {
        self.inner.state_machine.snapshots_built()
    }

    fn own_branch(&self) -> Option<OwnBranch> {
        Some(OwnBranch {
            mode: match self.mode() {
                crate::autonomy::Mode::Connected => "through the core",
                crate::autonomy::Mode::Autonomous => "alone",
                crate::autonomy::Mode::Reconciling => "handing over",
            },
            journal_backlog: self.inner.journal.entries.backlog(),
            outbox_backlog: self.inner.self_service.outbox.backlog(),
            since_core_answered: self.inner.lease.since_last_renewal(),
            import_refused: self
                .inner
                .journal
                .import_refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|r| r.why.clone()),
        })
    }

    fn telemetry(&self) -> Arc<Telemetry> {
        self.inner.telemetry.clone()
    }

    fn peer_clocks(&self) -> std::collections::BTreeMap<u64, banyan_raft::identity::PeerClock> {
        self.inner.identity.peer_clocks()
    }
}
