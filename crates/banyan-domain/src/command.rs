//! Commands the replicated state machine applies, and the events it answers with.

use serde::{Deserialize, Serialize};

use crate::customer::{Customer, CustomerInput};

/// A command as it sits in the Raft log: the leader stamps the time once, so every replica
/// applies the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    /// Leader's wall clock when it proposed the command, milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub command: Command,
}

/// Everything the domain can be asked to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create a customer or replace its fields. `request_id`, when set, makes retries
    /// idempotent.
    UpsertCustomer {
        customer: CustomerInput,
        request_id: Option<String>,
    },
}

impl Command {
    /// The idempotency key, when the command carries one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Command::UpsertCustomer { request_id, .. } => request_id.as_deref(),
        }
    }
}

/// What applying a command changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The customer as stored after the upsert.
    CustomerUpserted(Customer),
}
