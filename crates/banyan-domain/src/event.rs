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
    /// The agent turned the offer down.
    Rejected,
    /// Nobody answered within the queue's offer timeout; a single agent's expiry counts as their
    /// miss.
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

/// One change a command made, in the order it happened: what `WatchEvents` streams and the
/// invariant checkers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A customer was created or replaced; carries the stored record with its new version.
    CustomerUpserted(Customer),
    /// A queue's configuration was created or replaced.
    QueueUpserted {
        /// The queue upserted.
        queue_id: String,
    },
    /// An agent was created or had their skills, site or capacity replaced.
    AgentUpserted {
        /// The agent upserted.
        agent_id: String,
        /// The site the agent now works at.
        site: String,
        /// The agent's new capacity per channel, so a checker can hold their load to it.
        capacity: PerChannel,
    },
    /// A site was created or renamed.
    SiteUpserted {
        /// The site upserted.
        site_id: String,
    },
    /// A branch renewed its site's lease: the core routes to the site's agents until it expires.
    LeaseRenewed {
        /// The site whose lease was renewed.
        site_id: String,
        /// When the lease now ends, ms since the Unix epoch.
        expires_ms: i64,
    },
    /// A site's lease ran out: the core stopped routing to its agents and withdrew their offers.
    LeaseLapsed {
        /// The site whose lease lapsed.
        site_id: String,
    },
    /// The agent's desk tokens issued up to `revoked_ms` are refused from now on; its open
    /// desk sessions end.
    AgentTokensRevoked {
        /// The agent whose tokens were revoked.
        agent_id: String,
        /// Tokens issued at or before this time (ms since the Unix epoch) are refused.
        revoked_ms: i64,
    },
    /// A new contact, in the state it starts in (`QUEUED`, `SELF_SERVED`, `ABANDONED` when
    /// the queue was full, `CALLBACK_SCHEDULED`).
    ContactCreated {
        /// The new contact.
        contact_id: String,
        /// Its channel, which decides whose capacity it will count against.
        channel: Channel,
        /// The queue it came into.
        queue_id: String,
        /// The state it starts in.
        state: ContactState,
        /// Its priority in the queue: base plus tier boost (aging comes on top while it waits).
        priority: i64,
        /// When it first entered a queue, ms since the Unix epoch; a transfer keeps the original's.
        enqueued_ms: i64,
    },
    /// Routing offered a contact to one agent, or to several for `RING_ALL`.
    ContactOffered {
        /// The contact offered.
        contact_id: String,
        /// Its channel: the offer counts against each agent's capacity on it.
        channel: Channel,
        /// The agents rung.
        agent_ids: Vec<String>,
        /// When the offer expires unanswered, ms since the Unix epoch.
        expires_ms: i64,
        /// Why these agents were chosen, for explaining and re-checking the decision.
        decision: Decision,
    },
    /// An offer to one agent ended without their accepting it; the agent's capacity is free again.
    OfferWithdrawn {
        /// The contact whose offer ended.
        contact_id: String,
        /// The agent no longer offered it.
        agent_id: String,
        /// Why the offer ended.
        reason: WithdrawReason,
    },
    /// Back in the queue at its original place. `passed_by` (empty if none) is the agent
    /// that rejected or missed it: for the rest of this command's routing it goes to others.
    ContactRequeued {
        /// The contact put back.
        contact_id: String,
        /// The waiting state it is back in: `QUEUED`, or `CALLBACK_SCHEDULED` for a callback.
        state: ContactState,
        /// The agent it passed by, or empty.
        passed_by: String,
    },
    /// An agent accepted the offer; the conversation starts.
    ContactConnected {
        /// The contact connected.
        contact_id: String,
        /// The agent now holding it.
        agent_id: String,
        /// How long the contact waited since it first entered a queue, in ms: what service level
        /// and ASA count.
        waited_ms: i64,
    },
    /// A contact waited long enough for its queue's next escalation step to apply.
    ContactEscalated {
        /// The contact escalated.
        contact_id: String,
        /// The queue whose step applied.
        queue_id: String,
        /// How many of the queue's steps now apply to the contact (1 for the first).
        step: u32,
        /// What the step did, in words (`relax billing to 3`, `overflow to sales`).
        action: String,
    },
    /// An escalation step moved a waiting contact into another queue; it keeps its id and its place
    /// by enqueue time.
    ContactOverflowed {
        /// The contact moved.
        contact_id: String,
        /// The queue it left.
        from_queue: String,
        /// The queue it now waits in.
        to_queue: String,
    },
    /// A voice caller who waited the queue's `max_wait_ms` will be called back instead of holding
    /// on; the contact keeps its place.
    CallbackScheduled {
        /// The contact now waiting as a callback.
        contact_id: String,
    },
    /// The conversation ended; the agent does the after-contact work until `until_ms` at the
    /// latest.
    ContactWrapUp {
        /// The contact in wrap-up.
        contact_id: String,
        /// The agent wrapping up, offered nothing meanwhile.
        agent_id: String,
        /// When wrap-up ends by itself, ms since the Unix epoch.
        until_ms: i64,
    },
    /// The contact ended; `agent_id` (empty if none) no longer holds it.
    ContactCompleted {
        /// The contact completed.
        contact_id: String,
        /// The agent released, or empty.
        agent_id: String,
        /// The outcome code, empty when wrap-up ran out.
        disposition: String,
    },
    /// A waiting or offered contact ended without an agent: the caller hung up or waited past the
    /// queue's limit.
    ContactAbandoned {
        /// The contact abandoned.
        contact_id: String,
        /// Why, in words (`caller hung up`, `max wait`).
        reason: String,
    },
    /// A contact moved to another queue and continues there as `new_contact_id`.
    ContactTransferred {
        /// The contact that ended as `TRANSFERRED`.
        contact_id: String,
        /// The agent that held it and is released, or empty when it was waiting.
        agent_id: String,
        /// The contact that continues it.
        new_contact_id: String,
        /// The queue the new contact waits in.
        queue_id: String,
    },
    /// The state an agent is shown in changed (presence or wrap-up).
    AgentStateChanged {
        /// The agent.
        agent_id: String,
        /// The agent's state from now on.
        state: AgentState,
    },
    /// A contact a branch handled on its own, now in the core's state as the branch left
    /// it; `agent_id` (empty if none) holds it when it is connected or wrapping up.
    ContactImported {
        /// The contact imported.
        contact_id: String,
        /// Its channel, which decides whose capacity it counts against.
        channel: Channel,
        /// The queue it belongs to.
        queue_id: String,
        /// The state the branch left it in.
        state: ContactState,
        /// The agent holding it, or empty.
        agent_id: String,
    },
    /// An administrator released the site's lease (it lapsed at once). Last of the
    /// variants, so older records decode unchanged.
    LeaseReleased {
        /// The site whose lease was released.
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
