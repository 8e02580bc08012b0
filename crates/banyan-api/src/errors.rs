//! The one place where domain refusals and "not the leader" become gRPC statuses for the
//! public services. A domain refusal keeps the field it names; `UNAVAILABLE` carries the
//! leader's address in `x-banyan-leader` when it is known, so clients retry there.

use banyan_domain::DomainError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key carrying the leader's address on `UNAVAILABLE`.
pub const LEADER_ADDR_KEY: &str = "x-banyan-leader";
/// Metadata key carrying the leader's node id on `UNAVAILABLE`.
pub const LEADER_ID_KEY: &str = "x-banyan-leader-id";

/// Where the leader is, as far as a node knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderHint {
    pub id: Option<u64>,
    pub addr: Option<String>,
}

/// A refused command as a status naming the field.
pub fn domain_status(error: &DomainError) -> Status {
    let code = match error {
        DomainError::InvalidArgument { .. } => Code::InvalidArgument,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::FailedPrecondition { .. } => Code::FailedPrecondition,
        DomainError::AlreadyExists { .. } => Code::AlreadyExists,
    };
    Status::new(code, error.to_string())
}

/// Shorthand for `map_err` at the service edge.
pub fn invalid(error: DomainError) -> Status {
    domain_status(&error)
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

/// A refusal by the authorization table, as the caller sees it.
pub fn denied(refusal: banyan_trust::Denied) -> Status {
    Status::permission_denied(refusal.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_carries_the_leader_address() {
        let status = not_leader_status(&LeaderHint {
            id: Some(2),
            addr: Some("127.0.0.1:7002".into()),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.metadata().get(LEADER_ADDR_KEY).unwrap(),
            "127.0.0.1:7002"
        );
        assert_eq!(status.metadata().get(LEADER_ID_KEY).unwrap(), "2");
    }

    #[test]
    fn domain_errors_name_the_field() {
        let status = invalid(DomainError::invalid("customer.id", "must not be empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer.id"));
    }
}
