//! Contacts and channels.

use banyan_domain::contact::{Decision, Transition};
use banyan_domain::{Channel, Contact, ContactInput, ContactState, DomainError};
use banyan_proto::v1;

use super::optional_id;

/// A channel that must be set.
pub fn channel_from_proto(field: &str, value: i32) -> Result<Channel, DomainError> {
    match v1::Channel::try_from(value) {
        Ok(v1::Channel::Voice) => Ok(Channel::Voice),
        Ok(v1::Channel::Chat) => Ok(Channel::Chat),
        Ok(v1::Channel::Email) => Ok(Channel::Email),
        Ok(v1::Channel::Callback) => Ok(Channel::Callback),
        Ok(v1::Channel::Unspecified) => Err(DomainError::invalid(
            field,
            "required: VOICE, CHAT, EMAIL or CALLBACK",
        )),
        Err(_) => Err(DomainError::invalid(
            field,
            format!("unknown channel {value}"),
        )),
    }
}

/// A channel as clients see it, on contacts and on the queues that take it.
pub fn channel_to_proto(channel: Channel) -> v1::Channel {
    match channel {
        Channel::Voice => v1::Channel::Voice,
        Channel::Chat => v1::Channel::Chat,
        Channel::Email => v1::Channel::Email,
        Channel::Callback => v1::Channel::Callback,
    }
}

/// A contact's state as clients see it, on the contact and on each step of its timeline.
pub fn contact_state_to_proto(state: ContactState) -> v1::ContactState {
    match state {
        ContactState::SelfServed => v1::ContactState::SelfServed,
        ContactState::Queued => v1::ContactState::Queued,
        ContactState::Offered => v1::ContactState::Offered,
        ContactState::Connected => v1::ContactState::Connected,
        ContactState::WrapUp => v1::ContactState::WrapUp,
        ContactState::Completed => v1::ContactState::Completed,
        ContactState::Abandoned => v1::ContactState::Abandoned,
        ContactState::CallbackScheduled => v1::ContactState::CallbackScheduled,
        ContactState::Transferred => v1::ContactState::Transferred,
    }
}

/// A state filter: unspecified means any.
pub fn contact_state_filter(field: &str, value: i32) -> Result<Option<ContactState>, DomainError> {
    let state = v1::ContactState::try_from(value)
        .map_err(|_| DomainError::invalid(field, format!("unknown contact state {value}")))?;
    Ok(match state {
        v1::ContactState::Unspecified => None,
        v1::ContactState::SelfServed => Some(ContactState::SelfServed),
        v1::ContactState::Queued => Some(ContactState::Queued),
        v1::ContactState::Offered => Some(ContactState::Offered),
        v1::ContactState::Connected => Some(ContactState::Connected),
        v1::ContactState::WrapUp => Some(ContactState::WrapUp),
        v1::ContactState::Completed => Some(ContactState::Completed),
        v1::ContactState::Abandoned => Some(ContactState::Abandoned),
        v1::ContactState::CallbackScheduled => Some(ContactState::CallbackScheduled),
        v1::ContactState::Transferred => Some(ContactState::Transferred),
    })
}

/// The fields of a `CreateContact`, validated.
pub fn contact_input(request: &v1::CreateContactRequest) -> Result<ContactInput, DomainError> {
    let input = ContactInput {
        id: optional_id("contact_id", &request.contact_id)?.unwrap_or_default(),
        channel: channel_from_proto("channel", request.channel)?,
        customer_id: request.customer_id.clone(),
        queue_id: request.queue_id.clone(),
        intent: request.intent.clone(),
        priority: request.priority,
        attributes: request.attributes.clone().into_iter().collect(),
        origin_site: request.site.clone(),
        self_served: request.self_served,
    };
    input.validate()?;
    Ok(input)
}

/// Why the router placed a contact where it did (queue, strategy, step, score, priority).
pub fn decision_to_proto(decision: &Decision) -> v1::Decision {
    v1::Decision {
        queue_id: decision.queue_id.clone(),
        strategy: decision.strategy.name().to_owned(),
        step: decision.step,
        score: decision.score,
        priority: decision.priority,
    }
}

fn transition_to_proto(t: &Transition) -> v1::Transition {
    v1::Transition {
        at_ms: t.at_ms,
        state: contact_state_to_proto(t.state).into(),
        detail: t.detail.clone(),
        by: t.by.as_ref().map(ToString::to_string).unwrap_or_default(),
    }
}

/// A contact as reads and agent sessions show it: its state, offer, routing decision and
/// timeline.
pub fn contact_to_proto(contact: &Contact) -> v1::Contact {
    let offer = contact.offer.as_ref();
    v1::Contact {
        id: contact.id.clone(),
        request_id: contact.request_id.clone().unwrap_or_default(),
        state: contact_state_to_proto(contact.state).into(),
        channel: channel_to_proto(contact.channel).into(),
        customer_id: contact.customer_id.clone(),
        queue_id: contact.queue_id.clone(),
        intent: contact.intent.clone(),
        base_priority: contact.base_priority,
        priority: contact.priority,
        attributes: contact.attributes.clone().into_iter().collect(),
        site: contact.origin_site.clone(),
        owner: contact.owner.clone(),
        agent_id: contact.agent_id.clone(),
        offered_to: offer.map(|o| o.agents.clone()).unwrap_or_default(),
        offer_expires_ms: offer.map_or(0, |o| o.expires_ms),
        decision: contact.decision.as_ref().map(decision_to_proto),
        enqueued_ms: contact.enqueued_ms,
        connected_ms: contact.connected_ms.unwrap_or(0),
        ended_ms: contact.ended_ms.unwrap_or(0),
        disposition: contact.disposition.clone(),
        notes: contact.notes.clone(),
        transferred_from: contact.transferred_from.clone(),
        transferred_to: contact.transferred_to.clone(),
        escalation_step: contact.step,
        timeline: contact.timeline.iter().map(transition_to_proto).collect(),
    }
}
