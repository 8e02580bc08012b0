//! Contact detail records: one flat, complete record per finished contact, for a data
//! warehouse to load (as JSON lines) without knowing Banyan's internals. Built from the
//! contact as it finished, so every node builds the same record for the same contact.

use serde::{Deserialize, Serialize};

use crate::contact::{Contact, ContactState};

/// The version of the record's layout: a new field is added with a new version; fields
/// are never renamed or given another meaning.
pub const CDR_SCHEMA: u32 = 1;

/// One step of a finished contact's timeline, as the record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetailStep {
    /// When the contact entered the state, ms since the Unix epoch.
    pub at_ms: i64,
    /// The state entered (`QUEUED`, `OFFERED`, `CONNECTED`, ...).
    pub state: String,
    /// The agents offered, the accepting agent, the disposition or the reason; may be empty.
    pub detail: String,
    /// Who caused the step (`admin:ops`, `agent:a1`, `node:1`, ...); empty when unknown.
    pub by: String,
}

/// A finished contact as one record. Times are ms since the Unix epoch (the cluster's
/// clock); durations are ms and 0 where a step never happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetailRecord {
    /// The record layout's version ([`CDR_SCHEMA`]).
    pub schema: u32,
    /// The contact's id.
    pub contact_id: String,
    /// The client company the contact was for; none until tenants exist.
    pub tenant: Option<String>,
    /// The channel it ended on (`voice`, `chat`, `email`, `callback`).
    pub channel: String,
    /// The customer, empty when anonymous.
    pub customer_id: String,
    /// The queue it finished in; empty for a self-served contact that never queued.
    pub queue_id: String,
    /// What it was about, as the front end classified it.
    pub intent: String,
    /// The site it came in at; empty when any site could take it.
    pub origin_site: String,
    /// Who created it: `core` or the branch site that took it.
    pub owner: String,
    /// The agent who handled it; empty when none did.
    pub agent_id: String,
    /// How it ended: `COMPLETED`, `ABANDONED`, `TRANSFERRED` or `SELF_SERVED`.
    pub outcome: String,
    /// The disposition code it was completed with; empty otherwise.
    pub disposition: String,
    /// The agent's notes from completion.
    pub notes: String,
    /// The contact this one continues, when a transfer created it.
    pub transferred_from: String,
    /// The contact that continues it, when it was transferred.
    pub transferred_to: String,
    /// When it was created (its first step).
    pub created_ms: i64,
    /// When it first entered a queue.
    pub enqueued_ms: i64,
    /// When it was first offered to an agent; 0 if never.
    pub first_offered_ms: i64,
    /// When an agent accepted it; 0 if never.
    pub connected_ms: i64,
    /// When the conversation ended (wrap-up began); 0 if it never connected.
    pub conversation_ended_ms: i64,
    /// When it reached its final state.
    pub finished_ms: i64,
    /// How long it waited for an agent: until connected, or until it finished unanswered.
    pub wait_ms: i64,
    /// Conversation time.
    pub talk_ms: i64,
    /// After-contact work.
    pub wrap_ms: i64,
    /// Talk plus wrap-up: what the agent's time on it cost.
    pub handle_ms: i64,
    /// Offers made for it (several when agents rejected or missed it).
    pub offers: u32,
    /// Who caused its final step (the agent completing it, a supervisor, a node's timer).
    pub finished_by: String,
    /// Every step it went through, in order.
    pub steps: Vec<DetailStep>,
}

impl DetailRecord {
    /// The record of a finished contact; `None` for one still live.
    pub fn of(contact: &Contact) -> Option<Self> {
        let finished_ms = contact.finished_ms()?;
        let first = |state: ContactState| {
            contact
                .timeline
                .iter()
                .find(|t| t.state == state)
                .map_or(0, |t| t.at_ms)
        };
        let connected_ms = contact
            .connected_ms
            .unwrap_or_else(|| first(ContactState::Connected));
        let conversation_ended_ms = match first(ContactState::WrapUp) {
            0 if connected_ms > 0 => finished_ms,
            at => at,
        };
        let since = |from: i64, to: i64| if from > 0 && to >= from { to - from } else { 0 };
        let talk_ms = since(connected_ms, conversation_ended_ms);
        let wrap_ms = match contact.state {
            ContactState::Completed => since(conversation_ended_ms, finished_ms),
            _ => 0,
        };
        let waited_until = if connected_ms > 0 {
            connected_ms
        } else {
            finished_ms
        };
        let by = |by: &Option<crate::principal::Principal>| {
            by.as_ref().map(ToString::to_string).unwrap_or_default()
        };
        Some(Self {
            schema: CDR_SCHEMA,
            contact_id: contact.id.clone(),
            tenant: None,
            channel: contact.channel.name().to_owned(),
            customer_id: contact.customer_id.clone(),
            queue_id: contact.queue_id.clone(),
            intent: contact.intent.clone(),
            origin_site: contact.origin_site.clone(),
            owner: contact.owner.clone(),
            agent_id: contact.agent_id.clone(),
            outcome: contact.state.name().to_owned(),
            disposition: contact.disposition.clone(),
            notes: contact.notes.clone(),
            transferred_from: contact.transferred_from.clone(),
            transferred_to: contact.transferred_to.clone(),
            created_ms: contact
                .timeline
                .first()
                .map_or(contact.enqueued_ms, |t| t.at_ms),
            enqueued_ms: contact.enqueued_ms,
            first_offered_ms: first(ContactState::Offered),
            connected_ms,
            conversation_ended_ms,
            finished_ms,
            wait_ms: since(contact.enqueued_ms, waited_until),
            talk_ms,
            wrap_ms,
            handle_ms: talk_ms + wrap_ms,
            offers: contact
                .timeline
                .iter()
                .filter(|t| t.state == ContactState::Offered)
                .count() as u32,
            finished_by: contact
                .timeline
                .last()
                .map(|t| by(&t.by))
                .unwrap_or_default(),
            steps: contact
                .timeline
                .iter()
                .map(|t| DetailStep {
                    at_ms: t.at_ms,
                    state: t.state.name().to_owned(),
                    detail: t.detail.clone(),
                    by: by(&t.by),
                })
                .collect(),
        })
    }
}
