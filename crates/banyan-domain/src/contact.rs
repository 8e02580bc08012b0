//! Contacts: one call, chat, email or callback, from arrival to its end.
//!
//! ```text
//!              ┌──────── reject / expiry (same place) ───────┐
//!              v                                              │
//!  create ─> QUEUED ──route──> OFFERED ──accept──> CONNECTED ──end──> WRAP_UP ──> COMPLETED
//!   │  │       │  ^                                    │  └──complete──────────────────^
//!   │  │       │  └─ CALLBACK_SCHEDULED (max wait / full; keeps its place)
//!   │  │       ├──> ABANDONED (caller hangs up, max wait, queue full)
//!   │  │       └──> TRANSFERRED (into another queue, as a new contact) <── CONNECTED
//!   │  └──> SELF_SERVED (answered without an agent)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::principal::Principal;

use crate::channel::Channel;
use crate::error::DomainError;
use crate::queue::{Strategy, MAX_PRIORITY, MAX_STEPS, MAX_TIMER_MS, RING_ALL_MAX};
use crate::validate::{
    validate_attributes, validate_count, validate_id, validate_len, validate_range, MAX_ID_LEN,
    MAX_NAME_LEN, MAX_TEXT_LEN,
};

/// Where a contact is in its life cycle (the diagram above); [`may_become`](Self::may_become) says
/// which moves are legal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ContactState {
    /// Answered without an agent (IVR, bot, FAQ); final from the start.
    SelfServed,
    /// Waiting in its queue for an agent, in priority order.
    Queued,
    /// Ringing at one agent, or at several for `RING_ALL`, until accepted, rejected or expired.
    Offered,
    /// In conversation with the agent who accepted it.
    Connected,
    /// The conversation is over; the agent is doing the after-contact work until the queue's
    /// wrap-up time ends or they complete it.
    WrapUp,
    /// Closed by the agent or a supervisor (with a disposition), or when wrap-up time ran out;
    /// final.
    Completed,
    /// Ended without an agent: the caller hung up, waited past the queue's limit, or found it full;
    /// final.
    Abandoned,
    /// A voice caller who will be called back instead of waiting on the line; keeps their place in
    /// the queue.
    CallbackScheduled,
    /// Moved to another queue, where it continues as a new contact; final for this one.
    Transferred,
}

impl ContactState {
    /// The upper-case name the API, events and timelines show (`QUEUED`, `WRAP_UP`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ContactState::SelfServed => "SELF_SERVED",
            ContactState::Queued => "QUEUED",
            ContactState::Offered => "OFFERED",
            ContactState::Connected => "CONNECTED",
            ContactState::WrapUp => "WRAP_UP",
            ContactState::Completed => "COMPLETED",
            ContactState::Abandoned => "ABANDONED",
            ContactState::CallbackScheduled => "CALLBACK_SCHEDULED",
            ContactState::Transferred => "TRANSFERRED",
        }
    }

    /// Waiting for an agent, in its queue's order.
    pub fn is_waiting(self) -> bool {
        matches!(self, ContactState::Queued | ContactState::CallbackScheduled)
    }

    /// Held by an agent: counts against the agent's capacity.
    pub fn is_held(self) -> bool {
        matches!(
            self,
            ContactState::Offered | ContactState::Connected | ContactState::WrapUp
        )
    }

    /// Ended for good: nothing moves it again, and it is in the customer's history (and,
    /// on a node, in its history store).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ContactState::SelfServed
                | ContactState::Completed
                | ContactState::Abandoned
                | ContactState::Transferred
        )
    }

    /// Whether `states`, in order, is a history a contact may record, ending in `now`: it
    /// starts where a contact can start and every step follows [`may_become`](Self::may_become).
    /// The domain holds imported records to it, and the history checker every timeline.
    pub fn is_legal_history(states: &[ContactState], now: ContactState) -> bool {
        let Some(first) = states.first() else {
            return false;
        };
        matches!(
            first,
            ContactState::Queued
                | ContactState::SelfServed
                | ContactState::Abandoned
                | ContactState::CallbackScheduled
        ) && states.windows(2).all(|w| w[0].may_become(w[1]))
            && states.last() == Some(&now)
    }

    /// The life cycle as a rule: whether a contact may move from `self` to `next`. The
    /// history checker holds every recorded timeline to it.
    pub fn may_become(self, next: ContactState) -> bool {
        use ContactState::*;
        match self {
            // A waiting contact that stays in its waiting state records an overflow into
            // another queue.
            Queued => matches!(
                next,
                Offered | Abandoned | CallbackScheduled | Transferred | Queued
            ),
            CallbackScheduled => {
                matches!(next, Offered | Abandoned | Transferred | CallbackScheduled)
            }
            Offered => matches!(
                next,
                Connected | Queued | CallbackScheduled | Abandoned | Transferred
            ),
            Connected => matches!(next, WrapUp | Completed | Transferred),
            WrapUp => matches!(next, Completed),
            SelfServed | Completed | Abandoned | Transferred => false,
        }
    }
}

/// The fields a client sets when a contact arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactInput {
    /// Set by branches, which name their contacts themselves; generated when empty.
    pub id: String,
    /// How the contact reaches the center; decides which agents' capacity it counts against.
    pub channel: Channel,
    /// The known customer, if any; their tier raises the contact's priority.
    pub customer_id: String,
    /// The queue it waits in; may be empty only for a self-served contact.
    pub queue_id: String,
    /// What the contact is about (such as `billing`), as the front end classified it; recorded, not
    /// routed on.
    pub intent: String,
    /// Base priority, 0..=1000; tier boost and aging are added by the queue.
    pub priority: i64,
    /// Free-form data from the front end (account number, IVR choices), kept with the contact.
    pub attributes: BTreeMap<String, String>,
    /// Where the contact came in; without it, agents of every site are eligible.
    pub origin_site: String,
    /// Answered without an agent (self-service): recorded as `SELF_SERVED` at once.
    pub self_served: bool,
}

impl ContactInput {
    /// Checks every field against its limits, at the service edge and again inside `apply`, so a
    /// bad create changes nothing.
    pub fn validate(&self) -> Result<(), DomainError> {
        if !self.id.is_empty() {
            validate_id("contact.id", &self.id)?;
        }
        if !self.customer_id.is_empty() {
            validate_id("contact.customer_id", &self.customer_id)?;
        }
        if !(self.self_served && self.queue_id.is_empty()) {
            validate_id("contact.queue_id", &self.queue_id)?;
        }
        validate_len("contact.intent", &self.intent, MAX_NAME_LEN)?;
        if !(0..=MAX_PRIORITY).contains(&self.priority) {
            return Err(DomainError::invalid(
                "contact.priority",
                format!("{} is outside 0..={MAX_PRIORITY}", self.priority),
            ));
        }
        validate_attributes("contact.attributes", &self.attributes)?;
        if !self.origin_site.is_empty() {
            validate_id("contact.origin_site", &self.origin_site)?;
        }
        Ok(())
    }
}

/// Why an agent was chosen: enough to explain and to re-check every routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The queue whose rules made the decision.
    pub queue_id: String,
    /// The queue's strategy that ranked the eligible agents.
    pub strategy: Strategy,
    /// Escalation steps applied to the contact when it was offered.
    pub step: u32,
    /// The strategy's score for the winner (lower wins): idle-since, offer sequence,
    /// contacts held, talk time, or minus the skill total.
    pub score: i64,
    /// The contact's effective priority when it was offered.
    pub priority: i64,
}

impl Decision {
    fn validate(&self, field: impl Fn(&str) -> String) -> Result<(), DomainError> {
        validate_id(&field("queue_id"), &self.queue_id)?;
        validate_range(&field("step"), i64::from(self.step), 0, MAX_STEPS as i64)
    }
}

/// An outstanding offer. `RING_ALL` offers to several agents at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The agents rung: one, or several for `RING_ALL`.
    pub agents: Vec<String>,
    /// When the offer was made, ms since the Unix epoch.
    pub offered_ms: i64,
    /// When an unanswered offer is withdrawn and counted as a miss: the offer time plus the queue's
    /// `offer_timeout_ms`.
    pub expires_ms: i64,
    /// Why these agents were chosen.
    pub decision: Decision,
}

/// One step of a contact's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When the contact entered the state, ms since the Unix epoch (the state machine's clock).
    pub at_ms: i64,
    /// The state it entered.
    pub state: ContactState,
    /// Why or with whom: the agents offered, the accepting agent, the disposition, the abandon
    /// reason; often empty.
    pub detail: String,
    /// The principal of the command that caused this step (an offer made while routing
    /// after an agent became free names that agent's command); `None` for steps of
    /// commands that carried none.
    pub by: Option<Principal>,
}

/// A stored contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The contact's id: the branch's when it named it, else generated by the state machine.
    pub id: String,
    /// The idempotency key of the command that created it: a branch's copy of a create the core
    /// already served is recognised by it.
    pub request_id: Option<String>,
    /// The current channel: a voice call that got a callback becomes `Callback`.
    pub channel: Channel,
    /// The known customer, if any (empty when anonymous); finished contacts go into their history.
    pub customer_id: String,
    /// The queue it waits in now; a transfer or an overflow changes it.
    pub queue_id: String,
    /// What the contact is about, as the front end classified it.
    pub intent: String,
    /// The priority the client asked for.
    pub base_priority: i64,
    /// Base plus the queue's tier boost; aging is added when ranking.
    pub priority: i64,
    /// Free-form data from the front end, kept as given.
    pub attributes: BTreeMap<String, String>,
    /// The site the contact came in at; empty lets agents of every site take it.
    pub origin_site: String,
    /// Who created it: `core`, or the branch site that took it.
    pub owner: String,
    /// Where it is in its life cycle.
    pub state: ContactState,
    /// When it first entered a queue; kept through re-queues, overflows and transfers.
    pub enqueued_ms: i64,
    /// When it entered its current queue; escalation steps count from here.
    pub queue_entered_ms: i64,
    /// Escalation steps of the current queue applied so far.
    pub step: u32,
    /// The outstanding offer while `OFFERED`; `None` otherwise.
    pub offer: Option<Offer>,
    /// Why the contact was last offered (queue, strategy, step, score); kept once it is
    /// accepted, so a connected or finished contact still says why its agent got it.
    pub decision: Option<Decision>,
    /// The agent holding it once connected.
    pub agent_id: String,
    /// The agent that just missed or rejected it: not offered to them again right away.
    pub passed_by: String,
    /// When an agent accepted it, ms since the Unix epoch; talk time counts from here.
    pub connected_ms: Option<i64>,
    /// When wrap-up ends by itself while `WRAP_UP`, ms since the Unix epoch.
    pub wrap_until_ms: Option<i64>,
    /// When it reached a final state, ms since the Unix epoch.
    pub ended_ms: Option<i64>,
    /// The outcome code it was completed with (empty until then).
    pub disposition: String,
    /// The agent's free-text notes from completion.
    pub notes: String,
    /// The contact this one continues, when it was created by a transfer.
    pub transferred_from: String,
    /// The contact that continues this one in the new queue, once transferred.
    pub transferred_to: String,
    /// Every state the contact went through, in order: the audit trail and what the history checker
    /// judges.
    pub timeline: Vec<Transition>,
}

impl Contact {
    /// When the contact reached its final state (its last timeline step), `None` while
    /// it is still live. Retention counts from here.
    pub fn finished_ms(&self) -> Option<i64> {
        if !self.state.is_final() {
            return None;
        }
        let last = self.timeline.last().map(|t| t.at_ms);
        Some(last.or(self.ended_ms).unwrap_or(self.enqueued_ms))
    }

    /// A contact answered by self-service at `at_ms`: it ends as it starts, `SELF_SERVED`.
    /// Branches make these without waiting on the core; the core records the same.
    pub fn self_served(
        id: String,
        request_id: Option<String>,
        input: &ContactInput,
        at_ms: i64,
    ) -> Self {
        let mut contact = Contact {
            id,
            request_id,
            channel: input.channel,
            customer_id: input.customer_id.clone(),
            queue_id: input.queue_id.clone(),
            intent: input.intent.clone(),
            base_priority: input.priority,
            priority: input.priority,
            attributes: input.attributes.clone(),
            origin_site: input.origin_site.clone(),
            owner: "core".into(),
            state: ContactState::SelfServed,
            enqueued_ms: at_ms,
            queue_entered_ms: at_ms,
            step: 0,
            offer: None,
            decision: None,
            agent_id: String::new(),
            passed_by: String::new(),
            connected_ms: None,
            wrap_until_ms: None,
            ended_ms: Some(at_ms),
            disposition: String::new(),
            notes: String::new(),
            transferred_from: String::new(),
            transferred_to: String::new(),
            timeline: Vec::new(),
        };
        contact.enter(at_ms, ContactState::SelfServed, "self-service");
        contact
    }

    pub(crate) fn enter(&mut self, at_ms: i64, state: ContactState, detail: impl Into<String>) {
        self.state = state;
        self.timeline.push(Transition {
            at_ms,
            state,
            detail: detail.into(),
            by: None,
        });
    }

    /// Checks a whole contact record that comes from outside the state machine (a branch's
    /// import) as thoroughly as `CreateContact` checks its input: ids, lengths, attributes,
    /// priorities, counts, and times no later than `latest_ms` (deadlines such as the
    /// wrap-up end no later than a timer past it). `field` turns a field name into its path
    /// in the command, such as `contacts[3].priority`.
    pub fn validate_record(
        &self,
        field: impl Fn(&str) -> String,
        latest_ms: i64,
    ) -> Result<(), DomainError> {
        let id_or_empty = |name: &str, value: &str| {
            if value.is_empty() {
                Ok(())
            } else {
                validate_id(&field(name), value)
            }
        };
        validate_id(&field("id"), &self.id)?;
        if let Some(request_id) = &self.request_id {
            validate_len(&field("request_id"), request_id, 2 * MAX_ID_LEN)?;
        }
        id_or_empty("customer_id", &self.customer_id)?;
        if !(self.state == ContactState::SelfServed && self.queue_id.is_empty()) {
            validate_id(&field("queue_id"), &self.queue_id)?;
        }
        validate_len(&field("intent"), &self.intent, MAX_NAME_LEN)?;
        validate_range(&field("base_priority"), self.base_priority, 0, MAX_PRIORITY)?;
        // Base plus a tier boost, itself at most MAX_PRIORITY.
        validate_range(&field("priority"), self.priority, 0, 2 * MAX_PRIORITY)?;
        validate_attributes(&field("attributes"), &self.attributes)?;
        id_or_empty("origin_site", &self.origin_site)?;
        validate_len(&field("owner"), &self.owner, MAX_ID_LEN)?;
        validate_range(&field("step"), i64::from(self.step), 0, MAX_STEPS as i64)?;
        id_or_empty("agent_id", &self.agent_id)?;
        id_or_empty("passed_by", &self.passed_by)?;
        validate_len(&field("disposition"), &self.disposition, MAX_NAME_LEN)?;
        validate_len(&field("notes"), &self.notes, MAX_TEXT_LEN)?;
        id_or_empty("transferred_from", &self.transferred_from)?;
        id_or_empty("transferred_to", &self.transferred_to)?;
        let deadline = latest_ms.saturating_add(MAX_TIMER_MS);
        let time = |name: &str, at_ms: i64, latest_ms: i64| {
            validate_range(&field(name), at_ms, 0, latest_ms)
        };
        time("enqueued_ms", self.enqueued_ms, latest_ms)?;
        time("queue_entered_ms", self.queue_entered_ms, latest_ms)?;
        for (name, at_ms) in [
            ("connected_ms", self.connected_ms),
            ("ended_ms", self.ended_ms),
        ] {
            if let Some(at_ms) = at_ms {
                time(name, at_ms, latest_ms)?;
            }
        }
        if let Some(until) = self.wrap_until_ms {
            time("wrap_until_ms", until, deadline)?;
        }
        for (name, decision) in [
            ("decision", self.decision.as_ref()),
            ("offer.decision", self.offer.as_ref().map(|o| &o.decision)),
        ] {
            if let Some(decision) = decision {
                decision.validate(|f| field(&format!("{name}.{f}")))?;
            }
        }
        if let Some(offer) = &self.offer {
            validate_count(&field("offer.agents"), offer.agents.len(), RING_ALL_MAX)?;
            for agent in &offer.agents {
                validate_id(&field("offer.agents"), agent)?;
            }
            time("offer.offered_ms", offer.offered_ms, latest_ms)?;
            time("offer.expires_ms", offer.expires_ms, deadline)?;
        }
        // The timeline's length is not capped: the domain itself makes timelines of any
        // length (a ring-all nobody answers requeues forever), and the message limit bounds
        // what an import can carry.
        let mut previous = 0;
        for (i, step) in self.timeline.iter().enumerate() {
            let name = format!("timeline[{i}].at_ms");
            time(&name, step.at_ms, latest_ms)?;
            if step.at_ms < previous {
                return Err(DomainError::invalid(field(&name), "steps go back in time"));
            }
            previous = step.at_ms;
            // A ring-all offer's step names every agent rung.
            validate_len(
                &field(&format!("timeline[{i}].detail")),
                &step.detail,
                MAX_TEXT_LEN,
            )?;
        }
        if !self.timeline_is_legal() {
            return Err(DomainError::invalid(
                field("timeline"),
                "does not follow the contact life cycle",
            ));
        }
        Ok(())
    }

    /// Whether the recorded timeline follows the life cycle.
    pub fn timeline_is_legal(&self) -> bool {
        let states: Vec<ContactState> = self.timeline.iter().map(|t| t.state).collect();
        ContactState::is_legal_history(&states, self.state)
    }
}
