//! The one place where node and domain errors become gRPC statuses.
//!
//! Retryable conditions (no leader, leader elsewhere, node stopping) become `UNAVAILABLE`
//! with the leader's address in the `x-banyan-leader` metadata when it is known; clients
//! retry there. Domain refusals keep the field they name.

use banyan_domain::DomainError;
use banyan_raft::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, NodeId, RaftError,
};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key carrying the leader's address on `UNAVAILABLE`.
pub const LEADER_ADDR_KEY: &str = "x-banyan-leader";
/// Metadata key carrying the leader's node id on `UNAVAILABLE`.
pub const LEADER_ID_KEY: &str = "x-banyan-leader-id";

/// Where the leader is, as far as this node knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderHint {
    pub id: Option<NodeId>,
    pub addr: Option<String>,
}

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
            ServiceError::Domain(e) => domain_status(&e),
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

fn domain_status(error: &DomainError) -> Status {
    let code = match error {
        DomainError::InvalidArgument { .. } => Code::InvalidArgument,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::FailedPrecondition { .. } => Code::FailedPrecondition,
        DomainError::AlreadyExists { .. } => Code::AlreadyExists,
    };
    Status::new(code, error.to_string())
}

/// `UNAVAILABLE` pointing at the leader when it is known.
pub fn not_leader_status(hint: &LeaderHint) -> Status {
    let message = match (&hint.id, &hint.addr) {
        (Some(id), Some(addr)) => format!("not the leader; leader is node {id} at {addr}"),
        _ => "no leader known yet; retry shortly".to_owned(),
    };
    let mut status = Status::unavailable(message);
    if let Some(addr) = hint
        .addr
        .as_deref()
        .and_then(|a| MetadataValue::try_from(a).ok())
    {
        status.metadata_mut().insert(LEADER_ADDR_KEY, addr);
    }
    if let Some(id) = hint
        .id
        .and_then(|id| MetadataValue::try_from(id.to_string()).ok())
    {
        status.metadata_mut().insert(LEADER_ID_KEY, id);
    }
    status
}

impl From<ForwardToLeader> for LeaderHint {
    fn from(f: ForwardToLeader) -> Self {
        Self {
            id: f.leader_id,
            addr: f.leader_node.map(|n| n.addr),
        }
    }
}

/// Classifies a failed write or membership change.
pub fn write_error(error: RaftError<ClientWriteError>) -> ServiceError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ServiceError::NotLeader(f.into())
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
            ServiceError::NotLeader(f.into())
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
        assert_eq!(status.metadata().get(LEADER_ID_KEY).unwrap(), "2");
    }

    #[test]
    fn domain_errors_name_the_field() {
        let status: Status =
            ServiceError::from(DomainError::invalid("customer.id", "must not be empty")).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer.id"));
    }
}
