//! The leader's side of command forwarding: a node that is not the leader hands it a
//! domain command ([`CoreNode::submit`]) and gets the result with its log index back.
//!
//! A forwarded command is proposed here and never forwarded again: if this node is not
//! the leader any more, the caller gets `UNAVAILABLE` with the leader's address.

use banyan_api::errors::{denied, ApiError};
use banyan_client::trace::TraceContext;
use banyan_domain::{Action, Command, DomainError, Principal};
use banyan_proto::v1::command_forwarding_server::{CommandForwarding, CommandForwardingServer};
use banyan_proto::v1::RaftPayload;
use banyan_trust::{policy, principal_of, Denied};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::node::CoreNode;

#[derive(Clone)]
pub struct ForwardingService {
    node: CoreNode,
}

impl ForwardingService {
    pub fn new(node: CoreNode) -> Self {
        Self { node }
    }

    pub fn into_server(self) -> CommandForwardingServer<Self> {
        CommandForwardingServer::new(self)
    }
}

impl ForwardingService {
    /// A branch forwards only its own site's work: its agents' desk commands, contacts
    /// created at its site, and contacts its site's agents hold or that came in there.
    fn check_site_work(
        &self,
        forwarder: &Principal,
        site: &str,
        action: &Action,
    ) -> Result<(), ApiError> {
        let applied = self.node.applied().read();
        let state = &applied.domain;
        let refuse = |what: String| Err(denied(Denied::new(Some(forwarder), what)));
        if let Some(agent_id) = policy::action_agent(action).filter(|a| !a.is_empty()) {
            return match state.agent(agent_id) {
                Some(agent) if agent.input.site != site => refuse(format!(
                    "{} for agent {agent_id} of site {}",
                    policy::action_name(action),
                    agent.input.site
                )),
                _ => Ok(()),
            };
        }
        let contact_id = match action {
            // A contact without a site may be routed anywhere; a branch does not create
            // one for another site.
            Action::CreateContact(input)
                if !input.origin_site.is_empty() && input.origin_site != site =>
            {
                return refuse(format!("create a contact for site {}", input.origin_site))
            }
            Action::CompleteContact { contact_id, .. }
            | Action::AbandonContact { contact_id }
            | Action::TransferContact { contact_id, .. } => contact_id,
            _ => return Ok(()),
        };
        let Some(contact) = state.contact(contact_id) else {
            return Ok(());
        };
        let holder_site = state
            .agent(&contact.agent_id)
            .map(|a| a.input.site.as_str());
        if contact.origin_site == site || holder_site == Some(site) {
            Ok(())
        } else {
            refuse(format!(
                "{} of contact {contact_id} of site {}",
                policy::action_name(action),
                contact.origin_site
            ))
        }
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
        let mut command: Command = banyan_raft::codec::decode(&request.into_inner().data)
            .map_err(|e| DomainError::invalid("data", format!("undecodable command: {e}")))?;
        // A node's or a branch's own command (a shipped self-service contact, an import)
        // is the forwarder's.
        if command.principal.is_none() {
            command.principal = Some(forwarder.clone());
        }
        policy::check_forwarded(&forwarder, command.principal.as_ref(), &command.action)
            .map_err(denied)?;
        // The caller's site scope, again against the leader's state: the forwarding node
        // checked it against a replica that may have been behind.
        if let Some(caller) = &command.principal {
            let applied = self.node.applied().read();
            banyan_api::scope::check_scope(&applied.domain, caller, &command.action)?;
        }
        if let Principal::Branch { site, .. } = &forwarder {
            self.check_site_work(&forwarder, site, &command.action)?;
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
