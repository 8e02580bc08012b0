//! A typed Banyan client that finds the leader and retries what is safe to retry.
//!
//! Give it every node's address. It sends each call to the node it last found useful;
//! on `UNAVAILABLE` it follows the leader address a node puts in the `x-banyan-leader`
//! metadata, or tries the next node, with a short pause, until the call's overall
//! deadline. Writes carry an idempotency key (`request_id`, generated when the caller gives
//! none), so a retry of a write whose first attempt did commit does not apply it twice.
//!
//! Used by `banyan ctl`, branches, drills, benchmarks and tests.

#![warn(missing_docs)]

/// The largest command a branch forwards to the core (its import after a long outage):
/// the core's forwarding service and Raft transport take as much.
pub const MAX_FORWARDED_BYTES: usize = 64 * 1024 * 1024;

pub mod trace;

use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banyan_proto::v1::cluster_client::ClusterClient;
use banyan_proto::v1::command_forwarding_client::CommandForwardingClient;
use banyan_proto::v1::contact_center_client::ContactCenterClient;
use banyan_proto::v1::RaftPayload;
use banyan_proto::v1::{
    AbandonContactRequest, AddLearnerRequest, AddVoterRequest, Agent, ClusterStatus,
    CompleteContactRequest, Contact, CreateContactRequest, Customer, ExportHistoryRequest,
    ExportHistoryResponse, FindCustomersRequest, FindCustomersResponse, GetContactRequest,
    GetCustomerRequest, GetQueueStatsRequest, LeaseResponse, ListAgentsRequest, ListAgentsResponse,
    ListContactsRequest, ListContactsResponse, ListQueuesRequest, ListQueuesResponse,
    MembershipResponse, Queue, QueueStats, ReadConsistency, ReleaseLeaseRequest, RemoveNodeRequest,
    RenewLeaseRequest, RevokeAgentTokensRequest, StatusRequest, TransferContactRequest,
    UpsertAgentRequest, UpsertCustomerRequest, UpsertQueueRequest,
};
pub use banyan_trust::Security;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

/// Metadata key in which a non-leader names the leader's address.
pub const LEADER_ADDR_KEY: &str = "x-banyan-leader";

/// Metadata key in which a non-leader names the leader's node id.
pub const LEADER_ID_KEY: &str = "x-banyan-leader-id";

/// Metadata key with which a Banyan node marks an `UNAVAILABLE` as "not carried out".
pub const NOT_APPLIED_KEY: &str = "x-banyan-not-applied";

/// How long and how often a call is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Deadline of one attempt.
    pub attempt_timeout: Duration,
    /// Deadline of the whole call, retries included.
    pub total_timeout: Duration,
    /// Pause between attempts.
    pub pause: Duration,
    /// Attempts per call; 0 means as many as fit before `total_timeout`.
    pub max_attempts: u32,
    /// Send later calls to the leader once a forwarded reply names it. Off for tools and
    /// tests that must talk to one particular node.
    pub follow_leader: bool,
    /// How long the TCP connect and then the TLS handshake may each take; `None` for the
    /// defaults of [`channel`]. A caller that must tell "never delivered" from "no answer"
    /// keeps both well inside `attempt_timeout`, so that a node that accepts connections
    /// but does not speak (a frozen process) fails an attempt as a connection error.
    pub connect_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            // Longer than a node waits for a commit (5 s), so the node's own verdict arrives.
            attempt_timeout: Duration::from_secs(6),
            total_timeout: Duration::from_secs(20),
            pause: Duration::from_millis(50),
            max_attempts: 0,
            follow_leader: true,
            connect_timeout: None,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries: for tools that report exactly what one node said.
    pub fn once(timeout: Duration) -> Self {
        Self {
            attempt_timeout: timeout,
            total_timeout: timeout,
            pause: Duration::ZERO,
            max_attempts: 1,
            follow_leader: false,
            connect_timeout: None,
        }
    }
}

/// Why a client could not be built from its addresses; calls themselves fail with a `Status`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address list was empty: there is no node to call.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An address that makes no usable endpoint: the address, and why.
    #[error("bad endpoint {0:?}: {1}")]
    BadEndpoint(String, String),
}

struct Target {
    addr: String,
    channel: Channel,
}

/// A client of a Banyan cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    targets: Mutex<Vec<Target>>,
    /// TLS and the credential every call presents (or `--insecure`).
    security: Security,
    /// Index into `targets` of the node calls go to first.
    current: AtomicUsize,
    policy: RetryPolicy,
    /// The cluster this caller belongs to, named on every call (a branch's, from its
    /// replica); see [`Client::name_cluster`].
    cluster: std::sync::OnceLock<ClusterSource>,
}

/// Where a client reads the id of the cluster it belongs to, at each call.
type ClusterSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How long a TCP connect may take by default.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a TLS handshake may take by default.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily connecting channel to one node (`host:port` or a URI).
///
/// HTTP/2 pings find a connection whose path went silent (a cut WAN link drops packets
/// rather than refusing them): without them the channel keeps the dead connection, and
/// after the link heals every call waits for TCP's retransmission backoff, seconds after
/// a long cut. With them the connection is closed within a few seconds of the cut, and
/// the first call after the heal connects afresh.
///
/// With a secure `security` the channel speaks TLS, verifies the node against the
/// cluster's CA and presents this process's certificate; a bearer token, if that is the
/// credential, is added to each request by [`authorize`].
pub fn channel(security: &Security, addr: &str) -> Result<Channel, ClientError> {
    channel_within(security, addr, None)
}

/// Like [`channel`], with the TCP connect and the TLS handshake each bounded by
/// `connect_timeout` (by default 500 ms and 5 s).
pub fn channel_within(
    security: &Security,
    addr: &str,
    connect_timeout: Option<Duration>,
) -> Result<Channel, ClientError> {
    let handshake = connect_timeout.unwrap_or(HANDSHAKE_TIMEOUT);
    Ok(security
        .endpoint_within(addr, handshake)
        .map_err(|e| ClientError::BadEndpoint(addr.to_owned(), e.to_string()))?
        .connect_timeout(connect_timeout.unwrap_or(CONNECT_TIMEOUT))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Adds the bearer token of `security`, if it uses one, to a request made by hand on a
/// [`channel`] (the typed [`Client`] does it on every call).
pub fn authorize<T>(security: &Security, request: &mut tonic::Request<T>) {
    if let Some(value) = security
        .bearer()
        .and_then(|token| tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")).ok())
    {
        request.metadata_mut().insert("authorization", value);
    }
}

/// A fresh idempotency key, unique across processes and time.
pub fn new_request_id() -> String {
    banyan_env::ids::unique(&format!("r{:x}-", std::process::id()))
}

/// Whether a call that failed with `status` may still have taken effect: the node gave no
/// verdict (timed out, unavailable, connection lost) rather than refusing it.
pub fn may_have_taken_effect(status: &Status) -> bool {
    retryable(status)
}

/// Whether a request that failed with `status` may have reached a node and taken effect,
/// judged more closely than [`may_have_taken_effect`]: a node's own answer is a verdict
/// unless it says the outcome is open (deadline passed, cancelled, broken inside), and a
/// failure in this process counts as no delivery only when no connection could be made.
/// A connection lost or gone silent with the request on it (a keep-alive that timed out is
/// `UNAVAILABLE` too) may have carried the request to a node that served it.
pub fn outcome_unknown(status: &Status) -> bool {
    let mut cause = status.source();
    if cause.is_none() {
        if status.code() == Code::Unavailable {
            // A node's own "not done" is marked; a bare one may be a proxy's 503 or a reset
            // on the way, after the request was passed on.
            return !status.metadata().contains_key(NOT_APPLIED_KEY);
        }
        return matches!(
            status.code(),
            Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::Internal
                | Code::DataLoss
                | Code::Aborted
        );
    }
    while let Some(error) = cause {
        if error.downcast_ref::<tonic::ConnectError>().is_some() {
            return false;
        }
        cause = error.source();
    }
    true
}

/// The status a call that ran out of attempts ends with. A last "not done" after an
/// earlier attempt that got no verdict would tell the caller its request did not happen,
/// when the earlier one may have carried it: it ends as an unknown outcome instead.
fn last_word(status: Status, ambiguous: bool) -> Status {
    if ambiguous && retryable(&status) && !outcome_unknown(&status) {
        return Status::deadline_exceeded(format!(
            "an earlier attempt got no answer, so the outcome is unknown; the last one: {}",
            status.message()
        ));
    }
    status
}

/// Whether a failed attempt may be tried again (on this or another node).
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
    )
}

/// A call that failed, after every attempt the policy allowed.
#[derive(Debug)]
pub struct Failed {
    /// The last attempt's status.
    pub status: Status,
    /// Some attempt ended without a verdict ([`outcome_unknown`]): the request may have
    /// taken effect, although the last answer refused it or never came.
    pub outcome_unknown: bool,
}

impl Client {
    /// A client of the nodes at `endpoints` (`host:port`); connects lazily.
    pub fn new<S: AsRef<str>>(
        endpoints: impl IntoIterator<Item = S>,
        policy: RetryPolicy,
        security: &Security,
    ) -> Result<Self, ClientError> {
        let targets = endpoints
            .into_iter()
            .map(|addr| {
                let addr = addr.as_ref().trim().to_owned();
                Ok(Target {
                    channel: channel_within(security, &addr, policy.connect_timeout)?,
                    addr,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        if targets.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                targets: Mutex::new(targets),
                security: security.clone(),
                current: AtomicUsize::new(0),
                policy,
                cluster: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Names, on every later call, the cluster `source` says this caller belongs to
    /// (`None` while it does not know yet); the core refuses a branch of another cluster.
    /// Set once: later calls keep the first source.
    pub fn name_cluster(&self, source: impl Fn() -> Option<String> + Send + Sync + 'static) {
        let _ = self.inner.cluster.set(Arc::new(source));
    }

    /// The security every call of this client uses.
    pub fn security(&self) -> &Security {
        &self.inner.security
    }

    /// The address calls currently go to first.
    pub fn current_endpoint(&self) -> String {
        let targets = self.inner.targets.lock().unwrap_or_else(|p| p.into_inner());
        targets[self.inner.current.load(Ordering::Relaxed) % targets.len()]
            .addr
            .clone()
    }

    fn pick(&self) -> Channel {
        let targets = self.inner.targets.lock().unwrap_or_else(|p| p.into_inner());
        targets[self.inner.current.load(Ordering::Relaxed) % targets.len()]
            .channel
            .clone()
    }

    /// After a reply that came through a forward: go to the leader it names.
    fn follow(&self, metadata: &tonic::metadata::MetadataMap) {
        if metadata.contains_key(LEADER_ADDR_KEY) {
            self.go_to_leader(metadata);
        }
    }

    /// Makes the leader named in `metadata` the current target; false if none is named.
    fn go_to_leader(&self, metadata: &tonic::metadata::MetadataMap) -> bool {
        let Some(leader) = metadata
            .get(LEADER_ADDR_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return false;
        };
        let mut targets = self.inner.targets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = targets.iter().position(|t| t.addr == leader) {
            self.inner.current.store(i, Ordering::Relaxed);
            return true;
        }
        match channel(&self.inner.security, &leader) {
            Ok(channel) => {
                targets.push(Target {
                    addr: leader,
                    channel,
                });
                self.inner
                    .current
                    .store(targets.len() - 1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// After a failed attempt: go to the leader the node named, or to the next node.
    fn redirect(&self, status: &Status) {
        if self.inner.policy.follow_leader && self.go_to_leader(status.metadata()) {
            return;
        }
        let targets = self.inner.targets.lock().unwrap_or_else(|p| p.into_inner());
        let next = (self.inner.current.load(Ordering::Relaxed) + 1) % targets.len();
        self.inner.current.store(next, Ordering::Relaxed);
    }

    /// Sends `message` with `call` to the current node, each attempt with its own
    /// deadline, retrying per the policy.
    async fn call<M, T, F, Fut>(&self, message: &M, call: F) -> Result<T, Status>
    where
        M: Clone,
        F: FnMut(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call_counted(message, call).await.0
    }

    /// Like [`call`](Self::call), also saying whether any attempt ended without a verdict
    /// ([`outcome_unknown`]) and so may have taken effect: a refusal of a later attempt can
    /// then mean "already done".
    async fn call_counted<M, T, F, Fut>(
        &self,
        message: &M,
        mut call: F,
    ) -> (Result<T, Status>, bool)
    where
        M: Clone,
        F: FnMut(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let policy = self.inner.policy;
        let deadline = Instant::now() + policy.total_timeout;
        let mut attempts = 0u32;
        let mut ambiguous = false;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = policy.attempt_timeout.min(left);
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(attempt);
            authorize(&self.inner.security, &mut request);
            if let Some(cluster) = self.inner.cluster.get().and_then(|source| source()) {
                if let Ok(value) = cluster.parse() {
                    request
                        .metadata_mut()
                        .insert(banyan_proto::CLUSTER_ID_HEADER, value);
                }
            }
            if let Some(context) = trace::current() {
                context.inject(request.metadata_mut());
            }
            let status = match tokio::time::timeout(attempt, call(self.pick(), request)).await {
                Ok(Ok(response)) => {
                    if policy.follow_leader {
                        self.follow(response.metadata());
                    }
                    return (Ok(response.into_inner()), ambiguous);
                }
                // tonic reports its own request timeout as CANCELLED; to the caller it is a
                // deadline that passed with the outcome unknown, and worth retrying.
                Ok(Err(status)) if status.code() == Code::Cancelled => {
                    Status::deadline_exceeded(format!(
                        "no answer within {attempt:?} ({}); the outcome is unknown",
                        status.message()
                    ))
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded("no answer within the attempt deadline"),
            };
            ambiguous |= outcome_unknown(&status);
            let out_of_attempts = policy.max_attempts != 0 && attempts >= policy.max_attempts;
            // With a bound on connecting, an attempt starts only with the time to connect
            // (TCP, then TLS): one cut short while connecting would end without a verdict,
            // though its request never left.
            let least = policy.connect_timeout.map_or(Duration::ZERO, |c| c * 2);
            if !retryable(&status)
                || out_of_attempts
                || Instant::now() + policy.pause + least >= deadline
            {
                // The next call starts at another node: this one gave no answer in time.
                if retryable(&status) {
                    self.redirect(&status);
                }
                return (Err(last_word(status, ambiguous)), ambiguous);
            }
            tracing::debug!(code = ?status.code(), message = status.message(), "retrying");
            self.redirect(&status);
            tokio::time::sleep(policy.pause).await;
        }
    }

    /// Opens the event stream of the current node (one attempt: a stream is not retried).
    pub async fn watch_events(
        &self,
        request: banyan_proto::v1::WatchEventsRequest,
    ) -> Result<tonic::Streaming<banyan_proto::v1::Event>, Status> {
        let mut request = tonic::Request::new(request);
        authorize(&self.inner.security, &mut request);
        Ok(ContactCenterClient::new(self.pick())
            .watch_events(request)
            .await?
            .into_inner())
    }

    /// Creates or updates a customer. With `request_id` `None`, one fresh key is made for
    /// this call and reused by all its retries, so they apply at most once.
    pub async fn upsert_customer(
        &self,
        customer: Customer,
        request_id: Option<String>,
    ) -> Result<Customer, Status> {
        let request = UpsertCustomerRequest {
            customer: Some(customer),
            request_id: request_id.unwrap_or_else(new_request_id),
        };
        self.call(&request, |channel, request| async move {
            ContactCenterClient::new(channel)
                .upsert_customer(request)
                .await
        })
        .await
    }

    /// A customer by id; `consistency` picks a leader-confirmed read or the answering node's state.
    pub async fn get_customer(
        &self,
        id: &str,
        consistency: ReadConsistency,
    ) -> Result<Customer, Status> {
        let request = GetCustomerRequest {
            id: id.to_owned(),
            consistency: consistency.into(),
        };
        self.call(&request, |channel, request| async move {
            ContactCenterClient::new(channel)
                .get_customer(request)
                .await
        })
        .await
    }

    /// One page of the customers matching the request's filters (phone, email, name prefix, tier).
    pub async fn find_customers(
        &self,
        request: FindCustomersRequest,
    ) -> Result<FindCustomersResponse, Status> {
        self.call(&request, |channel, request| async move {
            ContactCenterClient::new(channel)
                .find_customers(request)
                .await
        })
        .await
    }

    /// Every customer, page by page, as the answering node sees them.
    pub async fn all_customers(
        &self,
        consistency: ReadConsistency,
    ) -> Result<Vec<Customer>, Status> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .find_customers(FindCustomersRequest {
                    limit: 1000,
                    page_token,
                    consistency: consistency.into(),
                    ..Default::default()
                })
                .await?;
            all.extend(page.customers);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Every contact, page by page, as the answering node sees them.
    pub async fn all_contacts(&self, consistency: ReadConsistency) -> Result<Vec<Contact>, Status> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_contacts(ListContactsRequest {
                    limit: 1000,
                    page_token,
                    consistency: consistency.into(),
                    ..Default::default()
                })
                .await?;
            all.extend(page.contacts);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// A branch's own account of itself (`Branch.Status`; only branches serve it).
    pub async fn branch_status(&self) -> Result<banyan_proto::v1::BranchStatus, Status> {
        use banyan_proto::v1::branch_client::BranchClient;
        self.call(
            &banyan_proto::v1::BranchStatusRequest {},
            |channel, request| async move { BranchClient::new(channel).status(request).await },
        )
        .await
    }

    /// Status as the current node sees it.
    pub async fn status(&self) -> Result<ClusterStatus, Status> {
        self.call(&StatusRequest {}, |channel, request| async move {
            ClusterClient::new(channel).status(request).await
        })
        .await
    }

    /// Adds `node_id`, reachable at `addr`, as a learner: it receives the log but does not vote
    /// (a branch, a read replica or a voter-to-be).
    pub async fn add_learner(
        &self,
        node_id: u64,
        addr: &str,
    ) -> Result<MembershipResponse, Status> {
        let request = AddLearnerRequest {
            node_id,
            addr: addr.to_owned(),
        };
        self.call(&request, |channel, request| async move {
            ClusterClient::new(channel).add_learner(request).await
        })
        .await
    }

    /// Makes `node_id`, reachable at `addr`, a voter (a learner first if it is new): it counts
    /// toward every quorum from then on.
    pub async fn add_voter(&self, node_id: u64, addr: &str) -> Result<MembershipResponse, Status> {
        let request = AddVoterRequest {
            node_id,
            addr: addr.to_owned(),
        };
        self.call(&request, |channel, request| async move {
            ClusterClient::new(channel).add_voter(request).await
        })
        .await
    }

    /// Hands an encoded domain command to the core's leader (the internal
    /// `CommandForwarding` service, for branches): follows the leader hint, retries what is
    /// safe. The command must carry its own idempotency key for retries to apply once.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<Vec<u8>, Status> {
        let request = RaftPayload { data: payload };
        self.call(&request, |channel, request| async move {
            CommandForwardingClient::new(channel)
                .max_encoding_message_size(MAX_FORWARDED_BYTES)
                .max_decoding_message_size(MAX_FORWARDED_BYTES)
                .propose(request)
                .await
        })
        .await
        .map(|reply| reply.data)
    }

    /// Renews a site's lease for a branch; the same key makes retries apply once.
    pub async fn renew_lease(&self, request: RenewLeaseRequest) -> Result<LeaseResponse, Status> {
        self.renew_lease_judged(request)
            .await
            .map_err(|failed| failed.status)
    }

    /// Like [`renew_lease`](Self::renew_lease); a failure also says whether the renewal
    /// may still have been applied, as the branch's lease must know.
    pub async fn renew_lease_judged(
        &self,
        mut request: RenewLeaseRequest,
    ) -> Result<LeaseResponse, Failed> {
        if request.request_id.is_empty() {
            request.request_id = new_request_id();
        }
        let (result, outcome_unknown) = self
            .call_counted(&request, |channel, request| async move {
                ClusterClient::new(channel).renew_lease(request).await
            })
            .await;
        result.map_err(|status| Failed {
            status,
            outcome_unknown,
        })
    }

    /// Releases a site's lease (an administrator's call); retries apply once.
    pub async fn release_lease(&self, site_id: &str) -> Result<LeaseResponse, Status> {
        let request = ReleaseLeaseRequest {
            site_id: site_id.to_owned(),
            request_id: new_request_id(),
        };
        self.call(&request, |channel, request| async move {
            ClusterClient::new(channel).release_lease(request).await
        })
        .await
    }

    /// Removes a node. If an earlier attempt of this call ended without a verdict and so
    /// may have removed it, a later "not a member" answer counts as done.
    pub async fn remove_node(&self, node_id: u64) -> Result<MembershipResponse, Status> {
        let request = RemoveNodeRequest { node_id };
        let (result, maybe_done) = self
            .call_counted(&request, |channel, request| async move {
                ClusterClient::new(channel).remove_node(request).await
            })
            .await;
        match result {
            Err(status) if status.code() == Code::NotFound && maybe_done => {
                let now = self.status().await?;
                Ok(MembershipResponse {
                    voters: now.nodes.iter().filter(|n| n.voter).map(|n| n.id).collect(),
                    learners: now
                        .nodes
                        .iter()
                        .filter(|n| !n.voter)
                        .map(|n| n.id)
                        .collect(),
                    log_index: 0,
                })
            }
            other => other,
        }
    }
}

/// Unary `ContactCenter` calls through [`Client::call`]. Writes get a fresh idempotency
/// key when the caller set none, reused by every retry of the call.
macro_rules! contact_center_calls {
    ($(write $wname:ident($wreq:ty) -> $wresp:ty;)* $(read $rname:ident($rreq:ty) -> $rresp:ty;)*) => {
        impl Client {
            $(
                /// A `ContactCenter` write; every retry of it carries the same idempotency key, so
                /// it applies at most once.
                pub async fn $wname(&self, mut request: $wreq) -> Result<$wresp, Status> {
                    if request.request_id.is_empty() {
                        request.request_id = new_request_id();
                    }
                    self.call(&request, |channel, request| async move {
                        ContactCenterClient::new(channel).$wname(request).await
                    })
                    .await
                }
            )*
            $(
                /// A `ContactCenter` read, retried (following the leader hint or on the next node)
                /// while the answer says the cluster could not serve it yet.
                pub async fn $rname(&self, request: $rreq) -> Result<$rresp, Status> {
                    self.call(&request, |channel, request| async move {
                        ContactCenterClient::new(channel).$rname(request).await
                    })
                    .await
                }
            )*
        }
    };
}

contact_center_calls! {
    write create_contact(CreateContactRequest) -> Contact;
    write complete_contact(CompleteContactRequest) -> Contact;
    write abandon_contact(AbandonContactRequest) -> Contact;
    write transfer_contact(TransferContactRequest) -> Contact;
    write upsert_queue(UpsertQueueRequest) -> Queue;
    write upsert_agent(UpsertAgentRequest) -> Agent;
    write revoke_agent_tokens(RevokeAgentTokensRequest) -> Agent;
    read get_contact(GetContactRequest) -> Contact;
    read list_contacts(ListContactsRequest) -> ListContactsResponse;
    read export_history(ExportHistoryRequest) -> ExportHistoryResponse;
    read list_queues(ListQueuesRequest) -> ListQueuesResponse;
    read get_queue_stats(GetQueueStatsRequest) -> QueueStats;
    read list_agents(ListAgentsRequest) -> ListAgentsResponse;
}

#[cfg(test)]
mod tests {
    use super::*;
    use banyan_trust::{issue, CertsDir, ClientIdentity, Role};

    fn admin_security(dir: &tempfile::TempDir) -> Security {
        let certs = CertsDir::new(dir.path().to_owned());
        issue::create_ca(&certs, false).unwrap();
        issue::issue_client(&certs, "admin", Role::Admin, None, false).unwrap();
        Security::client(&certs, ClientIdentity::Certificate("admin".into())).unwrap()
    }

    fn renewal() -> RenewLeaseRequest {
        RenewLeaseRequest {
            site_id: "emea".into(),
            node_id: 101,
            sent_at_ms: 1,
            ttl_ms: 3_000,
            ..Default::default()
        }
    }

    fn renewing_policy() -> RetryPolicy {
        RetryPolicy {
            attempt_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(2),
            connect_timeout: Some(Duration::from_millis(200)),
            follow_leader: false,
            ..RetryPolicy::default()
        }
    }

    /// A renewal to `addr` fails as UNAVAILABLE and is judged never delivered.
    async fn assert_never_delivered(addr: &str, security: &Security) {
        let client = Client::new([addr], renewing_policy(), security).unwrap();
        let failed = client.renew_lease_judged(renewal()).await.unwrap_err();
        assert_eq!(
            failed.status.code(),
            Code::Unavailable,
            "{:?}",
            failed.status
        );
        assert!(!failed.outcome_unknown, "{:?}", failed.status);
    }

    #[test]
    fn a_nodes_answer_is_a_verdict_unless_it_says_the_outcome_is_open() {
        let mut not_the_leader = Status::unavailable("not the leader");
        not_the_leader.metadata_mut().insert(
            NOT_APPLIED_KEY,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        for status in [
            not_the_leader,
            Status::failed_precondition("lease held by another node"),
            Status::invalid_argument("ttl_ms"),
            Status::permission_denied("no"),
            Status::resource_exhausted("too large"),
        ] {
            assert!(!outcome_unknown(&status), "{status:?}");
        }
        for status in [
            // Unmarked: a proxy's 503, or a gateway whose upstream reset after the request.
            Status::unavailable("upstream connect error or disconnect/reset"),
            Status::deadline_exceeded("commit not confirmed in time"),
            Status::cancelled("timed out"),
            Status::unknown("connection reset"),
            Status::internal("undecodable reply"),
        ] {
            assert!(outcome_unknown(&status), "{status:?}");
        }
    }

    #[tokio::test]
    async fn a_call_to_a_closed_port_was_never_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let security = admin_security(&dir);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        assert_never_delivered(&addr, &security).await;
    }

    /// A process that takes connections and never speaks (frozen, or a line that carries
    /// only one way): no request can have reached it before the TLS handshake, so the
    /// renewal is not counted as possibly applied.
    #[tokio::test]
    async fn a_node_that_never_completes_the_handshake_was_never_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let security = admin_security(&dir);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        assert_never_delivered(&addr, &security).await;
        held.abort();
    }
}
