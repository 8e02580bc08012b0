//! Banyan's errors at the service edge, and the one place they become gRPC statuses.
//!
//! Everything below the gRPC services (the [`Backend`](crate::Backend), the node crates)
//! answers with an [`ApiError`]: refused by the domain (naming the field), refused by the
//! authorization table (naming the principal and what it lacks), retryable (no leader
//! here, with the leader's address when known; busy; stopping), of unknown outcome (the
//! write may still apply), or fatal. `impl From<ApiError> for Status` turns it into the
//! status a client sees; `UNAVAILABLE` carries the leader's address in `x-banyan-leader`,
//! so clients retry there.

use banyan_domain::DomainError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Why a request could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Refused by the domain or the service's own validation; names the field.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Refused by the authorization table; names the principal and what it lacks.
    #[error(transparent)]
    Denied(#[from] banyan_trust::Denied),
    /// The credential does not prove who the caller claims to be (expired, revoked).
    #[error("{0}")]
    Unauthenticated(String),
    /// Retryable: this node is not the leader; the request needs the leader.
    #[error("this node is not the leader")]
    NotLeader(LeaderHint),
    /// Retryable, and not done: catching up, busy, stopping, handing work over, not
    /// proposed. A write that may still apply is [`OutcomeUnknown`](Self::OutcomeUnknown).
    #[error("{0}")]
    Unavailable(String),
    /// The outcome is unknown: the write may still apply; retry with the same request id.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// A stream's caller asked for what is no longer retained.
    #[error("{0}")]
    OutOfRange(String),
    /// Too big to take: a command larger than one log entry may be. Definite: the same
    /// command is refused again.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A stream's caller fell behind and must resume from where it was.
    #[error("{0}")]
    Aborted(String),
    /// Broken inside (storage, an answer that cannot be decoded): not the caller's fault.
    #[error("{0}")]
    Fatal(String),
    /// Another node's answer to a forwarded request, passed on as it came.
    #[error("{0}")]
    Remote(Status),
}

impl ApiError {
    /// Retryable, no verdict given.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        ApiError::Unavailable(reason.into())
    }

    /// Broken inside.
    pub fn fatal(reason: impl Into<String>) -> Self {
        ApiError::Fatal(reason.into())
    }

    /// Whether the request may still have taken effect: no verdict was given (timed out,
    /// unavailable, connection lost) rather than a refusal.
    pub fn may_have_taken_effect(&self) -> bool {
        banyan_client::may_have_taken_effect(&Status::from(self.clone()))
    }

    /// The gRPC code this error becomes.
    pub fn code(&self) -> Code {
        Status::from(self.clone()).code()
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError::Remote(status)
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Domain(e) => domain_status(&e),
            ApiError::Denied(d) => Status::permission_denied(d.to_string()),
            ApiError::Unauthenticated(reason) => Status::unauthenticated(reason),
            ApiError::NotLeader(hint) => not_applied(not_leader_status(&hint)),
            ApiError::Unavailable(reason) => not_applied(Status::unavailable(reason)),
            ApiError::OutcomeUnknown(reason) => Status::deadline_exceeded(reason),
            ApiError::OutOfRange(reason) => Status::out_of_range(reason),
            ApiError::ResourceExhausted(reason) => Status::resource_exhausted(reason),
            ApiError::Aborted(reason) => Status::aborted(reason),
            ApiError::Fatal(reason) => Status::internal(reason),
            ApiError::Remote(status) => status,
        }
    }
}

/// The metadata keys naming the leader on `UNAVAILABLE`, shared with the client that
/// follows them.
pub use banyan_client::{LEADER_ADDR_KEY, LEADER_ID_KEY};

/// Where the leader is, as far as a node knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader's node id, when this node knows one; sent as [`LEADER_ID_KEY`].
    pub id: Option<u64>,
    /// Where to reach the leader, from the membership: sent as [`LEADER_ADDR_KEY`] for the
    /// client to retry there.
    pub addr: Option<String>,
}

/// Marks an `UNAVAILABLE` as a Banyan node's word that the request was not carried out,
/// which a bare `UNAVAILABLE` (a proxy's 503, a reset on the way) is not.
fn not_applied(mut status: Status) -> Status {
    status.metadata_mut().insert(
        banyan_client::NOT_APPLIED_KEY,
        MetadataValue::from_static("1"),
    );
    status
}

/// A refused command as a status naming the field.
fn domain_status(error: &DomainError) -> Status {
    let code = match error {
        DomainError::InvalidArgument { .. } => Code::InvalidArgument,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::FailedPrecondition { .. } => Code::FailedPrecondition,
        DomainError::AlreadyExists { .. } => Code::AlreadyExists,
    };
    Status::new(code, error.to_string())
}

/// The node's history store could not be read: the disk or a damaged record, never the
/// caller's fault.
pub fn unreadable(error: banyan_raft::HistoryError) -> ApiError {
    ApiError::fatal(format!("reading this node's history: {error}"))
}

/// Shorthand for `map_err` at the service edge.
pub fn invalid(error: DomainError) -> ApiError {
    ApiError::Domain(error)
}

/// `UNAVAILABLE` pointing at the leader when it is known.
fn not_leader_status(hint: &LeaderHint) -> Status {
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

/// A refusal by the authorization table.
pub fn denied(refusal: banyan_trust::Denied) -> ApiError {
    ApiError::Denied(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_carries_the_leader_address() {
        let status = Status::from(ApiError::NotLeader(LeaderHint {
            id: Some(2),
            addr: Some("127.0.0.1:7002".into()),
        }));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.metadata().get(LEADER_ADDR_KEY).unwrap(),
            "127.0.0.1:7002"
        );
        assert_eq!(status.metadata().get(LEADER_ID_KEY).unwrap(), "2");
    }

    /// A branch counts a renewal answered UNAVAILABLE as not applied only when a node says
    /// so; an unknown outcome must never read as that.
    #[test]
    fn only_what_was_not_carried_out_is_marked_so() {
        for error in [
            ApiError::NotLeader(LeaderHint::default()),
            ApiError::unavailable("node stopping"),
        ] {
            let status = Status::from(error);
            assert_eq!(status.code(), Code::Unavailable);
            assert!(!banyan_client::outcome_unknown(&status), "{status:?}");
        }
        for error in [
            ApiError::OutcomeUnknown("commit not confirmed in time".into()),
            ApiError::fatal("undecodable reply"),
        ] {
            assert!(banyan_client::outcome_unknown(&Status::from(error)));
        }
    }

    #[test]
    fn domain_errors_name_the_field() {
        let status = Status::from(invalid(DomainError::invalid(
            "customer.id",
            "must not be empty",
        )));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer.id"));
    }
}
