//! The leader's side of command forwarding: a node that is not the leader hands it a
//! domain command ([`CoreNode::submit`]) and gets the result with its log index back.
//!
//! A forwarded command is proposed here and never forwarded again: if this node is not
//! the leader any more, the caller gets `UNAVAILABLE` with the leader's address.

use banyan_api::errors::{denied, ApiError};
use banyan_client::trace::TraceContext;
use banyan_domain::{Action, Command, DomainError};
use banyan_proto::v1::command_forwarding_server::{CommandForwarding, CommandForwardingServer};
use banyan_proto::v1::RaftPayload;
use banyan_trust::{policy, principal_of};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::node::CoreNode;

/// The `CommandForwarding` gRPC service: how the leader takes commands that other core
/// nodes and branches cannot commit themselves.
#[derive(Clone)]
pub struct ForwardingService {
    node: CoreNode,
}

impl ForwardingService {
    /// Proposes what it is handed on `node`, which answers `UNAVAILABLE` when it no longer
    /// leads rather than forward again.
    pub fn new(node: CoreNode) -> Self {
        Self { node }
    }

    /// The service with the Raft transport's message limit: a forwarded command becomes one
    /// log entry, and a branch's import after a long outage is far larger than gRPC's 4 MiB
    /// default (which refused it, and the branch sent it again for ever).
    pub fn into_server(self) -> CommandForwardingServer<Self> {
        CommandForwardingServer::new(self)
            .max_decoding_message_size(banyan_raft::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(banyan_raft::network::MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl CommandForwarding for ForwardingService {
    async fn propose(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        Ok(Response::new(self.take(request).await?))
    }
}

impl ForwardingService {
    /// Checks a handed-over command and proposes it.
    async fn take(&self, request: Request<RaftPayload>) -> Result<RaftPayload, ApiError> {
        // A branch's write: the same trace as the request the branch is serving.
        let context = TraceContext::continue_or_start(request.metadata());
        let forwarder = principal_of(&request)?;
        self.node
            .identity()
            .check_cluster_of_caller(request.metadata())
            .map_err(|reason| DomainError::precondition(banyan_proto::CLUSTER_ID_HEADER, reason))?;
        let mut command: Command = banyan_raft::codec::decode(&request.into_inner().data)
            .map_err(|e| DomainError::invalid("data", format!("undecodable command: {e}")))?;
        // A node's or a branch's own command (a shipped self-service contact, an import)
        // is the forwarder's.
        if command.principal.is_none() {
            command.principal = Some(forwarder.clone());
        }
        policy::check_forwarded(&forwarder, command.principal.as_ref(), &command.action)
            .map_err(denied)?;
        // A renewal comes in through Cluster.RenewLease, where its send time is checked
        // against the receiving node's clock and its node id against the sender; only a core
        // node hands one on from there.
        if matches!(command.action, Action::RenewLease { .. })
            && !matches!(
                forwarder,
                banyan_domain::Principal::Node(_) | banyan_domain::Principal::Insecure
            )
        {
            return Err(ApiError::Denied(banyan_trust::Denied::new(
                Some(&forwarder),
                "forward a lease renewal (send it to Cluster.RenewLease)",
            )));
        }
        // Site scope, against the leader's state: the caller's (the forwarding node checked
        // it against a replica that may have been behind), and a branch's own: it
        // forwards its site's work only, its agents' commands and its site's contacts.
        {
            let applied = self.node.applied().read();
            for by in command.principal.iter().chain([&forwarder]) {
                banyan_api::scope::check_scope(&applied.domain, by, &command.action)?;
            }
        }
        let contact_id = match &command.action {
            Action::CreateContact(input) => Some(input.id.clone()),
            _ => None,
        };
        let span = tracing::info_span!(
            "forwarded_write",
            trace_id = %context.trace_id,
            node_id = self.node.id(),
            contact_id = contact_id.as_deref().unwrap_or_default(),
        );
        let committed = self.node.propose(command).instrument(span.clone()).await?;
        if contact_id.is_some() {
            span.in_scope(|| {
                tracing::info!(index = committed.index, "contact created for a branch")
            });
        }
        Ok(RaftPayload {
            data: banyan_raft::codec::encode(&committed),
        })
    }
}
