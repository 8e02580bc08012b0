//! The branch node: an openraft learner of the core over the same sled stores as a core
//! voter, and the `Backend` the public services run on.

use banyan_api::ApiError;
use std::sync::Arc;
use std::time::Duration;

use crate::outbox::{Appended, Outbox};
use banyan_api::{Backend, Committed};
use banyan_client::{Client, RetryPolicy};
use banyan_domain::Command;
use banyan_domain::{Action, Contact, ContactInput};
use banyan_env::Clock;
use banyan_observe::{Observed, OwnBranch, Telemetry};
use banyan_raft::{
    open_stores, AppliedState, Database, Identity, LinkControl, NetworkFactory, Raft, StoreError,
};
use tonic::transport::Channel;

use crate::config::BranchConfig;
use crate::lease::Lease;

/// How long a write the core committed waits for the branch's replica to apply it.
const REPLICA_WAIT: Duration = Duration::from_secs(6);
/// Pause between attempts to join the core as a learner.
const JOIN_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error("starting Raft: {0}")]
    Raft(String),
    #[error("core endpoints: {0}")]
    Core(String),
    #[error("the branch's own records: {0}")]
    Journal(String),
    #[error("settling the data directory's identity: {0}")]
    Identity(String),
}

/// The core's last refusal of this branch's import.
pub(crate) struct RefusedImport {
    pub(crate) why: String,
    /// When it came, and how long the branch waits before the next import.
    pub(crate) at: tokio::time::Instant,
    pub(crate) wait: std::time::Duration,
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
    /// While cut off: the site's own state, advanced by the branch's journal.
    pub(crate) local: std::sync::RwLock<Option<AppliedState>>,
    pub(crate) mode: Arc<crate::autonomy::ModeCell>,
    /// Commands applied while cut off, in order, on disk before acknowledged.
    pub(crate) journal: Arc<Outbox>,
    /// Serializes local writes: journal order is apply order.
    pub(crate) journal_lock: tokio::sync::Mutex<()>,
    /// The last import sent to the core without an answer: `(upto_seq, command)`.
    pub(crate) unanswered_import: std::sync::Mutex<Option<(u64, Command)>>,
    /// Contacts created alone during this outage whose journal entries an import already
    /// carried to the core.
    pub(crate) created_alone: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The core's refusal of the last import, and when it came: the branch holds off
    /// sending the next one (see `autonomy::RETRY_REFUSED_FIRST`).
    pub(crate) import_refused: std::sync::Mutex<Option<RefusedImport>>,
    db: Database,
    /// The core, for joining, writes and lease renewals.
    pub(crate) core: Client,
    pub(crate) lease: Lease,
    /// Self-served contacts on their way to the core.
    outbox: Arc<Outbox>,
    /// Accepts sent to the core without a definite answer yet: `(contact, agent)`, on
    /// disk before sent, so a branch cut off (or restarted) mid-accept keeps the agent's
    /// capacity for a call the core may have connected.
    pub(crate) accepts: Arc<Outbox>,
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
        let (db, log, state_machine) = open_stores(&config.data_dir)?;
        let identity = Identity::new(config.id, &db, state_machine.applied_state());
        let committed = log.committed_index();
        let raft_config = config
            .timers
            .to_openraft("banyan-core")
            .map_err(StartError::Config)?;
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            NetworkFactory::new(links, config.security.clone(), identity.clone()),
            log,
            state_machine.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        identity
            .resolve(committed)
            .await
            .map_err(|e| StartError::Identity(e.to_string()))?;
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
        let journal = Arc::new(Outbox::open(&db, "journal")?);
        let accepts = Arc::new(Outbox::open(&db, "accepts")?);
        let telemetry = Telemetry::new();
        telemetry.watch_offers(state_machine.applied_state(), shutdown.clone());
        let node = Self {
            inner: Arc::new(Inner {
                telemetry,
                state_machine: state_machine.clone(),
                replica: state_machine.applied_state(),
                local: Default::default(),
                mode: Default::default(),
                journal,
                journal_lock: Default::default(),
                unanswered_import: Default::default(),
                created_alone: Default::default(),
                import_refused: Default::default(),
                raft,
                identity,
                db,
                core,
                lease,
                outbox,
                accepts,
                shutdown: shutdown.clone(),
                clock,
                channels: banyan_api::forward::Forwarder::new(config.security.clone()),
                config,
            }),
        };
        tokio::spawn(crate::ship::ship_forever(
            node.inner.outbox.clone(),
            node.inner.core.clone(),
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
            node.inner.outbox.clone(),
            node.inner.mode.clone(),
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

    pub fn id(&self) -> u64 {
        self.inner.config.id
    }

    /// TLS and credentials of this branch (or `--insecure`).
    pub fn security(&self) -> &banyan_trust::Security {
        &self.inner.config.security
    }

    pub fn site(&self) -> &str {
        &self.inner.config.site
    }

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

    pub fn lease(&self) -> &Lease {
        &self.inner.lease
    }

    /// Self-served contacts not yet delivered to the core.
    pub fn outbox_backlog(&self) -> u64 {
        self.inner.outbox.backlog()
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

    /// Records, on disk, an accept about to be sent to the core.
    async fn accept_in_doubt(&self, contact_id: &str, agent_id: &str) -> Result<u64, ApiError> {
        let entry = banyan_raft::codec::encode(&(contact_id.to_owned(), agent_id.to_owned()));
        self.accepts
            .push(&entry)
            .await
            .map_err(|e| ApiError::unavailable(format!("recording the accept: {e}")))
    }

    /// The accepts still in doubt, as `(contact, agent)`, with their sequence numbers.
    /// Forgets an accept record the core has settled. A failure to do so is logged, not
    /// dropped: the record then stays in doubt, which keeps its agent's capacity for a call
    /// that is over until the next reconciliation clears it.
    pub(crate) async fn forget_accept(&self, seq: u64) {
        if let Err(e) = self.accepts.delivered(seq).await {
            tracing::error!(seq, error = %e, "could not forget a settled accept record");
        }
    }

    /// Checks that every accept record reads (at start: see `resume_journal`).
    pub(crate) fn check_accept_records(&self) -> Result<(), String> {
        let records = self
            .accepts
            .pending(usize::MAX)
            .map_err(|e| format!("reading the accept records: {e}"))?;
        for (seq, bytes) in records {
            banyan_raft::codec::decode::<(String, String)>(&bytes)
                .map_err(|e| format!("accept record {seq} cannot be read: {e}"))?;
        }
        Ok(())
    }

    pub(crate) fn accepts_in_doubt(&self) -> Vec<(u64, (String, String))> {
        self.accepts
            .pending(usize::MAX)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(seq, bytes)| Some((seq, banyan_raft::codec::decode(&bytes).ok()?)))
            .collect()
    }

    /// Forgets accepts the replica has settled: the contact is no longer on offer to the
    /// agent, so the accept either connected it (the replica shows that) or never will.
    pub(crate) async fn forget_settled_accepts(&self) {
        for (seq, (contact_id, agent_id)) in self.accepts_in_doubt() {
            let open = self
                .replica
                .read()
                .domain
                .contact(&contact_id)
                .is_some_and(|c| {
                    c.state == banyan_domain::ContactState::Offered
                        && c.offer
                            .as_ref()
                            .is_some_and(|o| o.agents.contains(&agent_id))
                });
            if !open {
                self.forget_accept(seq).await;
            }
        }
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
            } => Some(self.inner.accept_in_doubt(contact_id, agent_id).await?),
            _ => None,
        };
        let result = self.inner.forward(&command).await;
        if let Some(seq) = accept {
            // Settled either way unless the core's answer never came, or came but has not
            // reached this branch's replica yet: if the core is lost before it does, the
            // branch's view for routing alone must still count the call against the agent
            // (the record is forgotten once the replica shows it, see
            // `forget_settled_accepts`).
            let settled = match &result {
                Ok(committed) => self.inner.replica.applied_index() >= committed.index,
                Err(error) => !error.may_have_taken_effect(),
            };
            if settled {
                self.inner.forget_accept(seq).await;
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
        Some(self.record_self_served(input, request_id, answer, by).await)
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

    async fn record_self_served(
        &self,
        input: &ContactInput,
        request_id: Option<&str>,
        answer: String,
        by: &banyan_domain::Principal,
    ) -> Result<Contact, ApiError> {
        let config = &self.inner.config;
        let id = if input.id.is_empty() {
            fresh_contact_id("ss", &config.site, config.id)
        } else {
            input.id.clone()
        };
        let mut input = input.clone();
        input.id = id.clone();
        input.self_served = true;
        input.origin_site = config.site.clone();
        input.attributes.insert("answer".into(), answer);
        // A queue the core does not know would make it refuse the record.
        if !input.queue_id.is_empty()
            && self
                .inner
                .replica
                .read()
                .domain
                .queue(&input.queue_id)
                .is_none()
        {
            input.queue_id.clear();
        }
        let contact = Contact::self_served(
            id.clone(),
            request_id.map(str::to_owned),
            &input,
            wall_clock_ms(),
        );
        let command = Command::with_request_id(
            Action::CreateContact(input),
            Some(format!("self-served/{id}")),
        )
        .by(by.clone());
        let key = request_id.map_or_else(|| format!("self-served/{id}"), str::to_owned);
        let appended = self
            .inner
            .outbox
            .append(
                &key,
                &banyan_raft::codec::encode(&contact),
                &banyan_raft::codec::encode(&command),
            )
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("recording the self-served contact: {e}"))
            })?;
        match appended {
            Appended::New(_) => Ok(contact),
            Appended::Existing(first) => banyan_raft::codec::decode(&first)
                .map_err(|e| ApiError::fatal(format!("undecodable earlier answer: {e}"))),
        }
    }
}

use banyan_env::wall_clock_ms;

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
            journal_backlog: self.inner.journal.backlog(),
            outbox_backlog: self.inner.outbox.backlog(),
            since_core_answered: self.inner.lease.since_last_renewal(),
            import_refused: self
                .inner
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
