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
    InvalidArgument {
        /// The field at fault, as its path in the command (`queue.wrap_up_ms`, `agent_id`).
        field: String,
        /// What is wrong with the value, in words.
        reason: String,
    },
    /// The object named by `field` does not exist.
    #[error("{field} not found: {id}")]
    NotFound {
        /// The field at fault, as its path in the command (`queue.wrap_up_ms`, `agent_id`).
        field: String,
        /// The id that was looked for.
        id: String,
    },
    /// An object with this id exists already and may not be created twice.
    #[error("{field} already exists: {id}")]
    AlreadyExists {
        /// The field at fault, as its path in the command (`queue.wrap_up_ms`, `agent_id`).
        field: String,
        /// The id already taken.
        id: String,
    },
    /// The command is well-formed but not allowed in the current state (for example an
    /// idempotency key reused with a different payload).
    #[error("failed precondition on {field}: {reason}")]
    FailedPrecondition {
        /// The field at fault, as its path in the command (`queue.wrap_up_ms`, `agent_id`).
        field: String,
        /// Why the current state does not allow it, in words.
        reason: String,
    },
}

impl DomainError {
    /// A refusal for a malformed field; `field` is its path in the command (such as
    /// `queue.wrap_up_ms`).
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A refusal because the object `id`, named by `field`, does not exist.
    pub fn not_found(field: impl Into<String>, id: impl Into<String>) -> Self {
        Self::NotFound {
            field: field.into(),
            id: id.into(),
        }
    }

    /// A refusal because an object `id`, named by `field`, must not be created twice.
    pub fn already_exists(field: impl Into<String>, id: impl Into<String>) -> Self {
        Self::AlreadyExists {
            field: field.into(),
            id: id.into(),
        }
    }

    /// A refusal of a well-formed command that the current state does not allow.
    pub fn precondition(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
