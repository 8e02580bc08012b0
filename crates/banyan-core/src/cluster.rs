//! The `Cluster` service: status of the node and the cluster, and membership changes.
//!
//! Membership changes need the leader; a follower forwards them once, like writes.

use std::collections::BTreeSet;

use banyan_domain::{Action, Command, DomainError, Event, Principal};
use banyan_proto::v1::cluster_client::ClusterClient;
use banyan_proto::v1::cluster_server::{Cluster, ClusterServer};
use banyan_proto::v1::{
    AddLearnerRequest, AddVoterRequest, ClusterStatus, LeaseResponse, MembershipResponse,
    NodeStatus, ReleaseLeaseRequest, RemoveNodeRequest, RenewLeaseRequest, Role, SiteStatus,
    StatusRequest,
};
use banyan_raft::{NodeId, ServerState};
use banyan_trust::{policy, principal_of};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::config::check_addr;
use crate::errors::{ApiError, ServiceError};
use crate::node::CoreNode;
use banyan_api::convert;
use banyan_api::forward::{caller_timeout, forwarded, was_forwarded, Forwarder};

/// The `Cluster` gRPC service of a core node: what operators and branches ask of the
/// cluster itself (its status, its members, the sites' leases).
#[derive(Clone)]
pub struct ClusterService {
    node: CoreNode,
    forwarder: Forwarder,
}

impl ClusterService {
    /// Shares the node's `forwarder`, so a membership change handed to the leader reuses
    /// the channel the node's other services keep to it.
    pub fn new(node: CoreNode, forwarder: Forwarder) -> Self {
        Self { node, forwarder }
    }

    /// The service as tonic serves it, for the node's one listener ([`crate::serve`]).
    pub fn into_server(self) -> ClusterServer<Self> {
        ClusterServer::new(self)
    }

    fn membership(&self) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let metrics = self.node.metrics();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<_> = membership.voter_ids().collect();
        let learners = membership.learner_ids().collect();
        (voters, learners)
    }

    fn membership_reply(&self, log_index: u64) -> Response<MembershipResponse> {
        let (voters, learners) = self.membership();
        Response::new(MembershipResponse {
            voters: voters.into_iter().collect(),
            learners: learners.into_iter().collect(),
            log_index,
        })
    }

    /// The leader's channel when `error` says another node leads and the request was not
    /// forwarded yet; otherwise the status to return.
    fn forward_target(
        &self,
        error: ServiceError,
        already_forwarded: bool,
    ) -> Result<Channel, Status> {
        match error {
            ServiceError::NotLeader(hint) if !already_forwarded => {
                Ok(self.forwarder.leader_channel(&hint)?)
            }
            other => Err(other.into()),
        }
    }
}

impl ClusterService {
    /// Every site with its lease and its branch's report, from this node's applied state,
    /// and the cluster clock they refer to.
    fn sites(
        &self,
        metrics: &banyan_raft::RaftMetrics,
        last_log_index: u64,
    ) -> (Vec<SiteStatus>, i64) {
        let applied = self.node.applied().read();
        let state = &applied.domain;
        let now = state.clock_ms();
        let sites = state
            .sites()
            .map(|site| {
                let mut status = convert::site_status(site, now);
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&status.branch_node_id))
                    .map(|m| m.map_or(0, |log_id| log_id.index));
                status.replication_lag = matched.map_or(0, |m| last_log_index.saturating_sub(m));
                status.lag_known = matched.is_some();
                status.agents = state
                    .agents()
                    .filter(|a| a.input.site == site.input.id)
                    .count() as u32;
                if let Some(refused) = applied.refused_imports.get(&site.input.id) {
                    status.import_refused = refused.to_string();
                }
                if let Some(offset) = applied.clock_offsets.get(&site.input.id) {
                    status.clock_offset_ms = offset.offset_ms;
                    status.clock_offset_known = true;
                    status.clock_offset_past_budget = offset.past_budget;
                }
                status
            })
            .collect();
        (sites, now)
    }
}

fn role_of(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

fn check_node_id(id: NodeId) -> Result<(), ApiError> {
    if id == 0 {
        return Err(DomainError::invalid("node_id", "must be a positive integer").into());
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let metrics = self.node.metrics();
        let identity = self.node.identity();
        let clocks = identity.peer_clocks();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let nodes = membership
            .nodes()
            .map(|(id, node)| {
                let clock = clocks.get(id).copied();
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .map(|m| m.map_or(0, |log_id| log_id.index));
                let role = if *id == metrics.id {
                    role_of(metrics.state)
                } else if Some(*id) == metrics.current_leader {
                    Role::Leader
                } else if voters.contains(id) {
                    Role::Follower
                } else {
                    Role::Learner
                };
                NodeStatus {
                    id: *id,
                    addr: node.addr.clone(),
                    voter: voters.contains(id),
                    role: role.into(),
                    matched_index: matched.unwrap_or(0),
                    replication_lag: matched.map_or(0, |m| last_log_index.saturating_sub(m)),
                    lag_known: matched.is_some(),
                    incarnation: identity.registered(*id).unwrap_or_default(),
                    clock_offset_known: clock.is_some(),
                    clock_offset_ms: clock.map_or(0, |c| c.offset_ms),
                    clock_uncertainty_ms: clock.map_or(0, |c| c.uncertainty_ms),
                    clock_past_budget: clock.is_some_and(|c| c.past_budget()),
                }
            })
            .collect();
        let (sites, cluster_clock_ms) = self.sites(&metrics, last_log_index);
        let leader_addr = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id))
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Ok(Response::new(ClusterStatus {
            node_id: metrics.id,
            role: role_of(metrics.state).into(),
            term: metrics.current_term,
            leader_id: metrics.current_leader.unwrap_or(0),
            leader_addr,
            last_log_index,
            committed_index: self.node.committed_index(),
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
            purged_index: metrics.purged.map_or(0, |l| l.index),
            nodes,
            millis_since_quorum_ack: metrics.millis_since_quorum_ack.unwrap_or(0),
            sites,
            cluster_clock_ms,
            insecure: !self.node.security().is_secure(),
            wall_clock_ms: banyan_env::wall_clock_ms(),
            cluster_id: identity.cluster_id().unwrap_or_default(),
            incarnation: identity.incarnation().unwrap_or_default().to_owned(),
        }))
    }

    async fn renew_lease(
        &self,
        request: Request<RenewLeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let by = principal_of(&request)?;
        if let Err(reason) = self
            .node
            .identity()
            .check_cluster_of_caller(request.metadata())
        {
            return Err(Status::failed_precondition(reason));
        }
        let message = request.into_inner();
        let invalid = ApiError::Domain;
        let site_id = convert::required_id("site_id", &message.site_id).map_err(invalid)?;
        // A branch renews its own site's lease only.
        policy::check_site(Some(&by), &site_id, "renew the lease")
            .map_err(banyan_api::errors::denied)?;
        let report = convert::branch_report(&message).map_err(invalid)?;
        // The clock-offset budget, against this node's clock.
        let now = banyan_env::wall_clock_ms();
        if let Err(refused) = banyan_domain::site::check_clock_offset(message.sent_at_ms, now) {
            let offset_ms = message.sent_at_ms.saturating_sub(now);
            tracing::error!(
                site = %site_id,
                node_id = report.node_id,
                offset_ms,
                %refused,
                "refused a lease renewal: the branch's clock is off past the budget"
            );
            self.node.applied().note_clock_offset(
                &site_id,
                banyan_raft::ClockOffset {
                    node_id: report.node_id,
                    offset_ms,
                    past_budget: true,
                },
            );
            return Err(invalid(refused).into());
        }
        let request_id = convert::request_id(message.request_id.clone()).map_err(invalid)?;
        let action = Action::RenewLease {
            site_id: site_id.clone(),
            sent_at_ms: message.sent_at_ms,
            ttl_ms: message.ttl_ms,
            report,
        };
        let committed = self
            .node
            .submit(Command::with_request_id(action, request_id).by(by))
            .await?;
        let expires_ms = committed
            .events
            .iter()
            .find_map(|e| match e {
                Event::LeaseRenewed { expires_ms, .. } => Some(*expires_ms),
                _ => None,
            })
            .ok_or_else(|| ApiError::Fatal("lease renewed without an event".into()))?;
        Ok(Response::new(LeaseResponse {
            site_id,
            expires_ms,
        }))
    }

    async fn release_lease(
        &self,
        request: Request<ReleaseLeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let by = principal_of(&request)?;
        let message = request.into_inner();
        let invalid = ApiError::Domain;
        let site_id = convert::required_id("site_id", &message.site_id).map_err(invalid)?;
        let request_id = convert::request_id(message.request_id).map_err(invalid)?;
        let action = Action::ReleaseLease {
            site_id: site_id.clone(),
        };
        self.node
            .submit(Command::with_request_id(action, request_id).by(by))
            .await?;
        let expires_ms = self
            .node
            .applied()
            .read()
            .domain
            .site(&site_id)
            .and_then(|s| s.lease_expires_ms)
            .unwrap_or(0);
        Ok(Response::new(LeaseResponse {
            site_id,
            expires_ms,
        }))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let already_forwarded = was_forwarded(&request);
        let timeout = caller_timeout(&request);
        let by = principal_of(&request)?;
        let message = request.into_inner();
        check_node_id(message.node_id)?;
        check_addr(&message.addr)
            .map_err(|e| DomainError::invalid("addr", e))
            .map_err(ApiError::from)?;
        // A branch joins as itself only; adding other nodes is an admin's.
        if let Principal::Branch { node, .. } = &by {
            if *node != message.node_id {
                return Err(banyan_api::errors::denied(banyan_trust::Denied::new(
                    Some(&by),
                    format!("add node {} as a learner (only itself)", message.node_id),
                ))
                .into());
            }
        }
        let (voters, _) = self.membership();
        if voters.contains(&message.node_id) {
            return Err(ApiError::from(DomainError::precondition(
                "node_id",
                format!("node {} is already a voter", message.node_id),
            ))
            .into());
        }
        match self.node.add_learner(message.node_id, &message.addr).await {
            Ok(index) => Ok(self.membership_reply(index)),
            Err(e) => {
                let leader = self.forward_target(e, already_forwarded)?;
                ClusterClient::new(leader)
                    .add_learner(forwarded(message, timeout, Some(&by)))
                    .await
            }
        }
    }

    async fn add_voter(
        &self,
        request: Request<AddVoterRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let already_forwarded = was_forwarded(&request);
        let timeout = caller_timeout(&request);
        let by = principal_of(&request)?;
        let message = request.into_inner();
        check_node_id(message.node_id)?;
        let (voters, learners) = self.membership();
        if voters.contains(&message.node_id) {
            return Ok(self.membership_reply(0));
        }
        if !learners.contains(&message.node_id) && message.addr.is_empty() {
            return Err(ApiError::from(DomainError::not_found(
                "node_id",
                format!(
                    "{} (not a learner; give its addr to add it)",
                    message.node_id
                ),
            ))
            .into());
        }
        if !message.addr.is_empty() {
            check_addr(&message.addr)
                .map_err(|e| ApiError::from(DomainError::invalid("addr", e)))?;
        }
        let result = async {
            if !learners.contains(&message.node_id) {
                self.node
                    .add_learner(message.node_id, &message.addr)
                    .await?;
            }
            self.node.promote(message.node_id).await
        }
        .await;
        match result {
            Ok(index) => Ok(self.membership_reply(index)),
            Err(e) => {
                let leader = self.forward_target(e, already_forwarded)?;
                ClusterClient::new(leader)
                    .add_voter(forwarded(message, timeout, Some(&by)))
                    .await
            }
        }
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let already_forwarded = was_forwarded(&request);
        let timeout = caller_timeout(&request);
        let by = principal_of(&request)?;
        let message = request.into_inner();
        check_node_id(message.node_id)?;
        let (voters, learners) = self.membership();
        let voter = voters.contains(&message.node_id);
        if !voter && !learners.contains(&message.node_id) {
            return Err(ApiError::from(DomainError::not_found(
                "node_id",
                format!("{} (not a member of the cluster)", message.node_id),
            ))
            .into());
        }
        if voter && voters.len() == 1 {
            return Err(ApiError::from(DomainError::precondition(
                "node_id",
                "cannot remove the last voter",
            ))
            .into());
        }
        match self.node.remove(message.node_id, voter).await {
            Ok(index) => Ok(self.membership_reply(index)),
            Err(e) => {
                let leader = self.forward_target(e, already_forwarded)?;
                ClusterClient::new(leader)
                    .remove_node(forwarded(message, timeout, Some(&by)))
                    .await
            }
        }
    }
}
