//! Domain events as `WatchEvents` delivers them.

use banyan_domain::{Event, WithdrawReason};
use banyan_events::EventRecord;
use banyan_proto::v1;

use super::{
    agent_state_to_proto, capacity_to_proto, channel_to_proto, contact_state_to_proto,
    decision_to_proto,
};

/// The name a withdrawn offer's reason carries on the wire (an event's or a desk message's
/// `reason`), stable for the clients that match on it.
pub fn withdraw_reason_name(reason: WithdrawReason) -> &'static str {
    match reason {
        WithdrawReason::Rejected => "REJECTED",
        WithdrawReason::Expired => "EXPIRED",
        WithdrawReason::TakenByOther => "TAKEN_BY_OTHER",
        WithdrawReason::AgentUnavailable => "AGENT_UNAVAILABLE",
        WithdrawReason::LeaseLapsed => "LEASE_LAPSED",
        WithdrawReason::ContactEnded => "CONTACT_ENDED",
        WithdrawReason::ServedAtBranch => "SERVED_AT_BRANCH",
    }
}

/// An applied event as `WatchEvents` and the agents' desks send it: its place in the log,
/// who caused it, and the fields of its kind.
pub fn event_to_proto(record: &EventRecord) -> v1::Event {
    let mut e = v1::Event {
        index: record.index,
        ordinal: record.ordinal,
        at_ms: record.at_ms,
        principal: record
            .principal
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        ..Default::default()
    };
    let kind = event_fields(&record.event, &mut e);
    e.kind = kind.into();
    e
}

/// Hands each event to its family; naming every variant here makes a new one need a family.
fn event_fields(event: &Event, e: &mut v1::Event) -> v1::EventKind {
    match event {
        Event::CustomerUpserted(_)
        | Event::QueueUpserted { .. }
        | Event::AgentUpserted { .. }
        | Event::SiteUpserted { .. } => directory_fields(event, e),
        Event::LeaseRenewed { .. }
        | Event::LeaseLapsed { .. }
        | Event::LeaseReleased { .. }
        | Event::AgentTokensRevoked { .. }
        | Event::AgentStateChanged { .. } => availability_fields(event, e),
        Event::ContactCreated { .. }
        | Event::ContactOffered { .. }
        | Event::OfferWithdrawn { .. }
        | Event::ContactRequeued { .. }
        | Event::ContactConnected { .. }
        | Event::ContactEscalated { .. }
        | Event::ContactOverflowed { .. }
        | Event::CallbackScheduled { .. } => routing_fields(event, e),
        Event::ContactWrapUp { .. }
        | Event::ContactCompleted { .. }
        | Event::ContactAbandoned { .. }
        | Event::ContactTransferred { .. }
        | Event::ContactImported { .. } => outcome_fields(event, e),
    }
}

/// The objects an administrator sets up (customers, queues, agents, sites), as upserted.
fn directory_fields(event: &Event, e: &mut v1::Event) -> v1::EventKind {
    use v1::EventKind as K;
    match event {
        Event::CustomerUpserted(customer) => {
            e.customer_id = customer.id().to_owned();
            K::CustomerUpserted
        }
        Event::QueueUpserted { queue_id } => {
            e.queue_id = queue_id.clone();
            K::QueueUpserted
        }
        Event::AgentUpserted {
            agent_id,
            site,
            capacity,
        } => {
            e.agent_ids = vec![agent_id.clone()];
            e.site_id = site.clone();
            e.capacity = Some(capacity_to_proto(capacity));
            K::AgentUpserted
        }
        Event::SiteUpserted { site_id } => {
            e.site_id = site_id.clone();
            K::SiteUpserted
        }
        // Not of this family: `event_fields` sends none here.
        _ => K::Unspecified,
    }
}

/// Who may take work now: site leases, agents' desk tokens and agents' states.
fn availability_fields(event: &Event, e: &mut v1::Event) -> v1::EventKind {
    use v1::EventKind as K;
    match event {
        Event::LeaseRenewed {
            site_id,
            expires_ms,
        } => {
            e.site_id = site_id.clone();
            e.until_ms = *expires_ms;
            K::LeaseRenewed
        }
        Event::LeaseLapsed { site_id } => {
            e.site_id = site_id.clone();
            K::LeaseLapsed
        }
        Event::LeaseReleased { site_id } => {
            e.site_id = site_id.clone();
            K::LeaseReleased
        }
        Event::AgentTokensRevoked {
            agent_id,
            revoked_ms,
        } => {
            e.agent_ids = vec![agent_id.clone()];
            e.until_ms = *revoked_ms;
            K::AgentTokensRevoked
        }
        Event::AgentStateChanged { agent_id, state } => {
            e.agent_ids = vec![agent_id.clone()];
            e.agent_state = agent_state_to_proto(state).into();
            if let banyan_domain::AgentState::Break { reason } = state {
                e.reason = reason.clone();
            }
            K::AgentStateChanged
        }
        // Not of this family: `event_fields` sends none here.
        _ => K::Unspecified,
    }
}

/// A contact on its way to an agent, from its creation to its connection or callback.
fn routing_fields(event: &Event, e: &mut v1::Event) -> v1::EventKind {
    use v1::EventKind as K;
    match event {
        Event::ContactCreated {
            contact_id,
            channel,
            queue_id,
            state,
            priority,
            enqueued_ms,
        } => {
            e.contact_id = contact_id.clone();
            e.channel = channel_to_proto(*channel).into();
            e.queue_id = queue_id.clone();
            e.contact_state = contact_state_to_proto(*state).into();
            e.priority = *priority;
            e.until_ms = *enqueued_ms;
            K::ContactCreated
        }
        Event::ContactOffered {
            contact_id,
            channel,
            agent_ids,
            expires_ms,
            decision,
        } => {
            e.contact_id = contact_id.clone();
            e.channel = channel_to_proto(*channel).into();
            e.agent_ids = agent_ids.clone();
            e.until_ms = *expires_ms;
            e.queue_id = decision.queue_id.clone();
            e.decision = Some(decision_to_proto(decision));
            K::ContactOffered
        }
        Event::OfferWithdrawn {
            contact_id,
            agent_id,
            reason,
        } => {
            e.contact_id = contact_id.clone();
            e.agent_ids = vec![agent_id.clone()];
            e.reason = withdraw_reason_name(*reason).to_owned();
            K::OfferWithdrawn
        }
        Event::ContactRequeued {
            contact_id,
            state,
            passed_by,
        } => {
            e.contact_id = contact_id.clone();
            e.contact_state = contact_state_to_proto(*state).into();
            if !passed_by.is_empty() {
                e.agent_ids = vec![passed_by.clone()];
            }
            K::ContactRequeued
        }
        Event::ContactConnected {
            contact_id,
            agent_id,
            waited_ms,
        } => {
            e.contact_id = contact_id.clone();
            e.agent_ids = vec![agent_id.clone()];
            e.waited_ms = *waited_ms;
            K::ContactConnected
        }
        Event::ContactEscalated {
            contact_id,
            queue_id,
            step,
            action,
        } => {
            e.contact_id = contact_id.clone();
            e.queue_id = queue_id.clone();
            e.step = *step;
            e.reason = action.clone();
            K::ContactEscalated
        }
        Event::ContactOverflowed {
            contact_id,
            from_queue,
            to_queue,
        } => {
            e.contact_id = contact_id.clone();
            e.queue_id = from_queue.clone();
            e.to_queue_id = to_queue.clone();
            K::ContactOverflowed
        }
        Event::CallbackScheduled { contact_id } => {
            e.contact_id = contact_id.clone();
            K::CallbackScheduled
        }
        // Not of this family: `event_fields` sends none here.
        _ => K::Unspecified,
    }
}

/// How a contact's handling ends, and the contacts a branch handled on its own.
fn outcome_fields(event: &Event, e: &mut v1::Event) -> v1::EventKind {
    use v1::EventKind as K;
    match event {
        Event::ContactWrapUp {
            contact_id,
            agent_id,
            until_ms,
        } => {
            e.contact_id = contact_id.clone();
            e.agent_ids = vec![agent_id.clone()];
            e.until_ms = *until_ms;
            K::ContactWrapUp
        }
        Event::ContactCompleted {
            contact_id,
            agent_id,
            disposition,
        } => {
            e.contact_id = contact_id.clone();
            e.agent_ids = vec![agent_id.clone()];
            e.disposition = disposition.clone();
            K::ContactCompleted
        }
        Event::ContactAbandoned { contact_id, reason } => {
            e.contact_id = contact_id.clone();
            e.reason = reason.clone();
            K::ContactAbandoned
        }
        Event::ContactTransferred {
            contact_id,
            agent_id,
            new_contact_id,
            queue_id,
        } => {
            e.contact_id = contact_id.clone();
            if !agent_id.is_empty() {
                e.agent_ids = vec![agent_id.clone()];
            }
            e.new_contact_id = new_contact_id.clone();
            e.to_queue_id = queue_id.clone();
            K::ContactTransferred
        }
        Event::ContactImported {
            contact_id,
            channel,
            queue_id,
            state,
            agent_id,
        } => {
            e.contact_id = contact_id.clone();
            e.channel = channel_to_proto(*channel).into();
            e.queue_id = queue_id.clone();
            e.contact_state = contact_state_to_proto(*state).into();
            if !agent_id.is_empty() {
                e.agent_ids = vec![agent_id.clone()];
            }
            K::ContactImported
        }
        // Not of this family: `event_fields` sends none here.
        _ => K::Unspecified,
    }
}
