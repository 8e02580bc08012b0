//! What applying a command changed: the events watchers see and the checker judges.
//!
//! Events name objects by id and carry what a reader needs to re-check an invariant
//! (channel, agents, reason) without the whole state.

use serde::{Deserialize, Serialize};

use crate::agent::AgentState;
use crate::channel::{Channel, PerChannel};
use crate::contact::{ContactState, Decision};
use crate::customer::Customer;

/// Why an offer stopped without being accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WithdrawReason {
    Rejected,
    Expired,
    /// Another agent rang by `RING_ALL` accepted first.
    TakenByOther,
    /// The agent went on break, offline, or lost their session.
    AgentUnavailable,
    /// The agent's site lease lapsed.
    LeaseLapsed,
    /// The contact ended (abandoned, transferred) while offered.
    ContactEnded,
    /// The site's branch served the contact on its own while cut off (see
    /// [`BranchImport::created`](crate::BranchImport::created)).
    ServedAtBranch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    CustomerUpserted(Customer),
    QueueUpserted {
        queue_id: String,
    },
    AgentUpserted {
        agent_id: String,
        site: String,
        capacity: PerChannel,
    },
    SiteUpserted {
        site_id: String,
    },
    LeaseRenewed {
        site_id: String,
        expires_ms: i64,
    },
    LeaseLapsed {
        site_id: String,
    },
    /// The agent's desk tokens issued up to `revoked_ms` are refused from now on; its open
    /// desk sessions end.
    AgentTokensRevoked {
        agent_id: String,
        revoked_ms: i64,
    },
    /// A new contact, in the state it starts in (`QUEUED`, `SELF_SERVED`, `ABANDONED` when
    /// the queue was full, `CALLBACK_SCHEDULED`).
    ContactCreated {
        contact_id: String,
        channel: Channel,
        queue_id: String,
        state: ContactState,
        priority: i64,
        enqueued_ms: i64,
    },
    ContactOffered {
        contact_id: String,
        channel: Channel,
        agent_ids: Vec<String>,
        expires_ms: i64,
        decision: Decision,
    },
    OfferWithdrawn {
        contact_id: String,
        agent_id: String,
        reason: WithdrawReason,
    },
    /// Back in the queue at its original place. `passed_by` (empty if none) is the agent
    /// that rejected or missed it: for the rest of this command's routing it goes to others.
    ContactRequeued {
        contact_id: String,
        state: ContactState,
        passed_by: String,
    },
    ContactConnected {
        contact_id: String,
        agent_id: String,
        waited_ms: i64,
    },
    ContactEscalated {
        contact_id: String,
        queue_id: String,
        step: u32,
        action: String,
    },
    ContactOverflowed {
        contact_id: String,
        from_queue: String,
        to_queue: String,
    },
    CallbackScheduled {
        contact_id: String,
    },
    ContactWrapUp {
        contact_id: String,
        agent_id: String,
        until_ms: i64,
    },
    /// The contact ended; `agent_id` (empty if none) no longer holds it.
    ContactCompleted {
        contact_id: String,
        agent_id: String,
        disposition: String,
    },
    ContactAbandoned {
        contact_id: String,
        reason: String,
    },
    ContactTransferred {
        contact_id: String,
        agent_id: String,
        new_contact_id: String,
        queue_id: String,
    },
    AgentStateChanged {
        agent_id: String,
        state: AgentState,
    },
    /// A contact a branch handled on its own, now in the core's state as the branch left
    /// it; `agent_id` (empty if none) holds it when it is connected or wrapping up.
    ContactImported {
        contact_id: String,
        channel: Channel,
        queue_id: String,
        state: ContactState,
        agent_id: String,
    },
    /// An administrator released the site's lease (it lapsed at once). Last of the
    /// variants, so older records decode unchanged.
    LeaseReleased {
        site_id: String,
    },
}

impl Event {
    /// The contact this event is about, if any.
    pub fn contact_id(&self) -> Option<&str> {
        match self {
            Event::ContactCreated { contact_id, .. }
            | Event::ContactOffered { contact_id, .. }
            | Event::OfferWithdrawn { contact_id, .. }
            | Event::ContactRequeued { contact_id, .. }
            | Event::ContactConnected { contact_id, .. }
            | Event::ContactEscalated { contact_id, .. }
            | Event::ContactOverflowed { contact_id, .. }
            | Event::CallbackScheduled { contact_id }
            | Event::ContactWrapUp { contact_id, .. }
            | Event::ContactCompleted { contact_id, .. }
            | Event::ContactAbandoned { contact_id, .. }
            | Event::ContactTransferred { contact_id, .. }
            | Event::ContactImported { contact_id, .. } => Some(contact_id),
            _ => None,
        }
    }

    /// Whether the event concerns `agent_id` (offers to it, its contacts, its state).
    pub fn concerns_agent(&self, agent: &str) -> bool {
        match self {
            Event::ContactOffered { agent_ids, .. } => agent_ids.iter().any(|a| a == agent),
            Event::OfferWithdrawn { agent_id, .. }
            | Event::ContactConnected { agent_id, .. }
            | Event::ContactWrapUp { agent_id, .. }
            | Event::ContactCompleted { agent_id, .. }
            | Event::ContactTransferred { agent_id, .. }
            | Event::AgentStateChanged { agent_id, .. }
            | Event::ContactImported { agent_id, .. }
            | Event::AgentUpserted { agent_id, .. }
            | Event::AgentTokensRevoked { agent_id, .. } => agent_id == agent,
            _ => false,
        }
    }

    /// A short name for logs and `WatchEvents` filters.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::CustomerUpserted(_) => "customer_upserted",
            Event::QueueUpserted { .. } => "queue_upserted",
            Event::AgentUpserted { .. } => "agent_upserted",
            Event::SiteUpserted { .. } => "site_upserted",
            Event::LeaseRenewed { .. } => "lease_renewed",
            Event::LeaseLapsed { .. } => "lease_lapsed",
            Event::AgentTokensRevoked { .. } => "agent_tokens_revoked",
            Event::ContactCreated { .. } => "contact_created",
            Event::ContactOffered { .. } => "contact_offered",
            Event::OfferWithdrawn { .. } => "offer_withdrawn",
            Event::ContactRequeued { .. } => "contact_requeued",
            Event::ContactConnected { .. } => "contact_connected",
            Event::ContactEscalated { .. } => "contact_escalated",
            Event::ContactOverflowed { .. } => "contact_overflowed",
            Event::CallbackScheduled { .. } => "callback_scheduled",
            Event::ContactWrapUp { .. } => "contact_wrap_up",
            Event::ContactCompleted { .. } => "contact_completed",
            Event::ContactAbandoned { .. } => "contact_abandoned",
            Event::ContactTransferred { .. } => "contact_transferred",
            Event::AgentStateChanged { .. } => "agent_state_changed",
            Event::ContactImported { .. } => "contact_imported",
            Event::LeaseReleased { .. } => "lease_released",
        }
    }
}
