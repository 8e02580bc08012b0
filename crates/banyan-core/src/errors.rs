//! A core node's errors, and how each is told to the services' edge ([`ApiError`], which
//! alone becomes a gRPC status).
//!
//! Retryable conditions (no leader, leader elsewhere, node stopping) are retryable there
//! too, with the leader's address when it is known; domain refusals keep the field they
//! name; a commit not confirmed in time is an outcome the caller does not know.

pub use banyan_api::errors::{ApiError, LeaderHint, LEADER_ADDR_KEY, LEADER_ID_KEY};
use banyan_domain::DomainError;
use banyan_raft::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, NodeId, RaftError,
};

/// Why a node could not serve a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// The domain refused the command; the status names the field it refused.
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
    CatchingUp {
        /// The node the change would promote.
        node: NodeId,
        /// How far it trails the leader's log: "N entries", or "unknown".
        lag: String,
    },
    /// Another membership change is still being committed; retry shortly.
    #[error("{0}")]
    MembershipBusy(String),
    /// The commit was not confirmed in time: the write may or may not take effect.
    #[error("commit not confirmed in time")]
    Unconfirmed,
    /// The node is shutting down or its Raft stopped.
    #[error("node stopping: {0}")]
    Stopped(String),
    /// The write was handed to Raft and then lost from sight (Raft or the proposer
    /// stopped): it may still commit, through this node's log or a successor's.
    #[error("{0}")]
    Interrupted(String),
    /// The command is larger than one log entry may be.
    #[error("{0}")]
    TooLarge(String),
    /// This leader has not heard from a quorum lately: the command was not proposed.
    #[error("{0}")]
    NoQuorum(String),
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Domain(e) => ApiError::Domain(e),
            ServiceError::NotLeader(hint) => ApiError::NotLeader(hint),
            ServiceError::Membership(reason) => {
                ApiError::Domain(DomainError::precondition("membership", reason))
            }
            e @ ServiceError::CatchingUp { .. } => ApiError::Unavailable(e.to_string()),
            ServiceError::MembershipBusy(reason) => {
                ApiError::Unavailable(format!("{reason}; retry when it has committed"))
            }
            ServiceError::Unconfirmed => ApiError::OutcomeUnknown(
                "commit not confirmed in time; the write may still apply: retry with the same request_id".into(),
            ),
            ServiceError::Stopped(reason) => ApiError::Unavailable(format!("node stopping: {reason}")),
            ServiceError::Interrupted(reason) => ApiError::OutcomeUnknown(format!(
                "{reason}; the write may still apply: retry with the same request_id"
            )),
            ServiceError::TooLarge(reason) => ApiError::ResourceExhausted(reason),
            ServiceError::NoQuorum(reason) => ApiError::Unavailable(reason),
        }
    }
}

/// A node error as the caller sees it (through [`ApiError`], the one mapping).
impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> Self {
        ApiError::from(error).into()
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
        // Raft stopped with the write possibly in its log.
        RaftError::Fatal(e) => ServiceError::Interrupted(format!("Raft stopped: {e}")),
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
    use tonic::{Code, Status};

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
