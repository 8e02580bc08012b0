//! Why the domain refused a command.
//!
//! A refused command changes nothing. Each variant names the field or object at fault so
//! the caller can tell what to fix; the service edge turns it into a gRPC status.

use serde::{Deserialize, Serialize};

/// A command the domain refused. Refusals are deterministic: every replica refuses the same
/// command in the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DomainError {
    /// A field is malformed, empty where required, or outside its limits.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The object named by `field` does not exist.
    #[error("{field} not found: {id}")]
    NotFound { field: String, id: String },
    /// An object with this id exists already and may not be created twice.
    #[error("{field} already exists: {id}")]
    AlreadyExists { field: String, id: String },
    /// The command is well-formed but not allowed in the current state (for example an
    /// idempotency key reused with a different payload).
    #[error("failed precondition on {field}: {reason}")]
    FailedPrecondition { field: String, reason: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(field: impl Into<String>, id: impl Into<String>) -> Self {
        Self::NotFound {
            field: field.into(),
            id: id.into(),
        }
    }

    pub fn already_exists(field: impl Into<String>, id: impl Into<String>) -> Self {
        Self::AlreadyExists {
            field: field.into(),
            id: id.into(),
        }
    }

    pub fn precondition(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
