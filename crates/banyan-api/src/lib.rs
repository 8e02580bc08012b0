//! Banyan's public gRPC services, `ContactCenter` and `AgentDesk`, over any node that
//! holds a replica of the domain state: a core voter, or a branch (a learner of the core).
//!
//! ```text
//!  client ──> ContactCenter / AgentDesk (this crate) ──> Backend
//!                 reads: the backend's applied state        ├─ core node: Raft leader or forward
//!                 writes: Backend::submit(command)          └─ branch: forward to the core,
//!                 events: the backend's event feed             or its own journal
//! ```
//!
//! The services know nothing of how a write is committed: the [`Backend`] decides. That
//! keeps one implementation of the API for the core and the branches (DESIGN.md §6: the
//! branch never imports core internals).
//!
//! # Layout
//! * [`contact_center`]: the `ContactCenter` service, with `WatchEvents` in `watch.rs`.
//! * [`agent_desk`]: `AgentDesk.Session`, one stream per logged-in agent.
//! * [`convert`]: proto ↔ domain conversions, the only place that knows both.
//! * [`errors`]: domain refusals and leader hints as gRPC statuses.
//! * [`forward`]: forwarding a request to the leader once, and the channel cache.
//! * [`scope`]: site-limited principals act on their own site's contacts only.
//! * [`shell`]: the gRPC server every node runs the same way.
//!
//! The wallboard, `/metrics` and the gRPC telemetry layer are `banyan-observe`'s.

#![warn(missing_docs)]

pub mod agent_desk;
pub mod contact_center;
pub mod convert;
pub mod errors;
pub mod forward;
pub mod scope;
pub mod shell;

use std::future::Future;

use banyan_domain::{Command, Contact, ContactInput, Event, Principal};
use banyan_events::EventFeed;
use banyan_raft::AppliedState;
pub use errors::ApiError;
use tonic::transport::Channel;

pub use agent_desk::AgentDeskService;
pub use contact_center::ContactCenterService;

/// How long a stopping server lets open calls finish before it cuts them. Agent sessions
/// and event watchers never finish on their own; cut, their clients reconnect to another
/// node (as they do when a node dies), and a stop takes seconds, not the orchestrator's
/// whole grace period.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for a stopping server task for up to [`DRAIN`], then aborts it (closing every
/// connection it still holds). `None` when it had to be cut.
pub async fn drain<T>(
    mut server: tokio::task::JoinHandle<T>,
) -> Option<Result<T, tokio::task::JoinError>> {
    match tokio::time::timeout(DRAIN, &mut server).await {
        Ok(done) => Some(done),
        Err(_) => {
            server.abort();
            let _ = server.await;
            tracing::info!(
                "calls still open {DRAIN:?} after the stop (agent sessions, event watchers) were cut"
            );
            None
        }
    }
}

/// A command's answer and the log index of the entry it was applied in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Committed {
    /// The log index the command was applied at (a branch alone: its journal sequence); a
    /// node that forwarded the command answers once its own replica has applied it.
    pub index: u64,
    /// What the command did, as the events it emitted: the services build their answer
    /// from them.
    pub events: Vec<Event>,
}

/// What the services need from the node they run on.
pub trait Backend: Clone + Send + Sync + 'static {
    /// This node's id, for naming agent sessions.
    fn node_id(&self) -> u64;

    /// The state the node serves now (cheap to clone).
    fn applied(&self) -> AppliedState;

    /// The feed of the events applied to that state. When the node switches what it
    /// serves (a branch going alone or back), the old feed's subscribers are closed: a
    /// subscriber that sees its feed close subscribes again and reads the state afresh.
    /// Subscribe before reading the state, so nothing applied in between is missed.
    fn events(&self) -> EventFeed;

    /// Commits `command` and returns once it is applied on this node too, so a read here
    /// sees it.
    fn submit(&self, command: Command) -> impl Future<Output = Result<Committed, ApiError>> + Send;

    /// Prepares a linearizable read: `Ok(None)` when this node may answer from its own
    /// state now, `Ok(Some(channel))` when the read must go to that node instead (only
    /// when the request was not forwarded already), `Err` with why not.
    fn read_target(
        &self,
        already_forwarded: bool,
    ) -> impl Future<Output = Result<Option<Channel>, ApiError>> + Send;

    /// A new contact this node resolves itself, without waiting on the core (a branch's
    /// self-service), or `None` to commit it as usual. The default resolves nothing.
    /// `by` is the caller, recorded on the contact as on any other command.
    fn self_serve(
        &self,
        input: &ContactInput,
        request_id: Option<&str>,
        by: &Principal,
    ) -> impl Future<Output = Option<Result<Contact, ApiError>>> + Send {
        let _ = (input, request_id, by);
        async { None }
    }
}

/// Concurrent HTTP/2 streams (calls and open streams) one connection may hold: one client
/// cannot open an unbounded number of watchers or sessions over one connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// The gRPC server builder every node starts from: TLS with the node's certificate when
/// secure (client certificates verified against the cluster's CA), TCP_NODELAY, and the
/// per-connection stream limit. The node adds its layers (telemetry, then the
/// [edge](banyan_trust::EdgeLayer)) and services.
pub fn server_builder(
    security: &banyan_trust::Security,
) -> Result<tonic::transport::Server, tonic::transport::Error> {
    let builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    match security.server_tls() {
        Some(tls) => builder.tls_config(tls),
        None => Ok(builder),
    }
}
