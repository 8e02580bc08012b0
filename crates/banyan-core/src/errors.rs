//! The one place where node and domain errors become gRPC statuses.
//!
//! Retryable conditions (no leader, leader elsewhere, node stopping) become `UNAVAILABLE`
//! with the leader's address in the `x-banyan-leader` metadata when it is known; clients
//! retry there. Domain refusals keep the field they name.

use banyan_domain::DomainError;
use banyan_raft::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, NodeId, RaftError,
};
use tonic::Status;

pub use banyan_api::errors::{not_leader_status, LeaderHint, LEADER_ADDR_KEY, LEADER_ID_KEY};

/// Why a node could not serve a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// This node is not the leader; the request needs the leader.
    #[error("this node is not the leader")]
    NotLeader(LeaderHint),
    /// A membership change cannot be made at all (e.g. it would leave no voter).
    #[error("{0}")]
    Membership(String),
    /// A node to be promoted has not caught up with the log yet; retry shortly.
    #[error("node_id: node {node} is still catching up (behind by {lag})")]
    CatchingUp { node: NodeId, lag: String },
    /// Another membership change is still being committed; retry shortly.
    #[error("{0}")]
    MembershipBusy(String),
    /// The commit was not confirmed in time: the write may or may not take effect.
    #[error("commit not confirmed in time")]
    Unconfirmed,
    /// The node is shutting down or its Raft stopped.
    #[error("node stopping: {0}")]
    Stopped(String),
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Domain(e) => banyan_api::errors::domain_status(&e),
            ServiceError::NotLeader(hint) => not_leader_status(&hint),
            ServiceError::Membership(reason) => Status::failed_precondition(reason),
            e @ ServiceError::CatchingUp { .. } => Status::unavailable(e.to_string()),
            ServiceError::MembershipBusy(reason) => {
                Status::unavailable(format!("{reason}; retry when it has committed"))
            }
            ServiceError::Unconfirmed => Status::deadline_exceeded(
                "commit not confirmed in time; the write may still apply: retry with the same request_id",
            ),
            ServiceError::Stopped(reason) => Status::unavailable(format!("node stopping: {reason}")),
        }
    }
}

/// Where openraft says the leader is.
pub fn leader_hint(f: ForwardToLeader) -> LeaderHint {
    LeaderHint {
        id: f.leader_id,
        addr: f.leader_node.map(|n| n.addr),
    }
}

/// Classifies a failed write or membership change.
pub fn write_error(error: RaftError<ClientWriteError>) -> ServiceError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ServiceError::NotLeader(leader_hint(f))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            e @ ChangeMembershipError::InProgress(_),
        )) => ServiceError::MembershipBusy(e.to_string()),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ServiceError::Membership(e.to_string())
        }
        RaftError::Fatal(e) => ServiceError::Stopped(e.to_string()),
    }
}

/// Classifies a failed leadership check for a linearizable read.
pub fn read_error(error: RaftError<CheckIsLeaderError>) -> ServiceError {
    match error {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            ServiceError::NotLeader(leader_hint(f))
        }
        // Lost contact with the quorum while confirming: the leader may have changed.
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)) => {
            tracing::debug!(detail = %e, "leadership not confirmed");
            ServiceError::NotLeader(LeaderHint::default())
        }
        RaftError::Fatal(e) => ServiceError::Stopped(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn not_leader_carries_the_leader_address() {
        let status: Status = ServiceError::NotLeader(LeaderHint {
            id: Some(2),
            addr: Some("127.0.0.1:7002".into()),
        })
        .into();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.metadata().get(LEADER_ADDR_KEY).unwrap(),
            "127.0.0.1:7002"
        );
    }

    #[test]
    fn domain_errors_name_the_field() {
        let status: Status =
            ServiceError::from(DomainError::invalid("customer.id", "must not be empty")).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer.id"));
    }
}
