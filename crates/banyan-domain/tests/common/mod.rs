//! Helpers shared by the scenario and property tests: a driver that stamps commands with a
//! test clock, builders for inputs and actions, and small readers of events.
//!
//! Nothing here reads a real clock or a random source: a test's time is whatever it sets.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;

use banyan_domain::agent::Agent;
use banyan_domain::contact::Contact;
use banyan_domain::{
    Action, AgentInput, Channel, Command, ContactInput, CustomerInput, DomainError, Event,
    PerChannel, Presence, QueueInput, SiteInput, Stamped, State, Strategy, Tier,
};

/// Where every test's clock starts: a plausible epoch time, far from zero.
pub const T0: i64 = 1_700_000_000_000;

/// A state and the clock that stamps the commands applied to it.
#[derive(Debug, Clone)]
pub struct Sim {
    pub state: State,
    pub now: i64,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    pub fn new() -> Self {
        Self {
            state: State::default(),
            now: T0,
        }
    }

    /// Sets the clock to `T0 + offset_ms`; time never goes back in a test.
    pub fn at(&mut self, offset_ms: i64) -> &mut Self {
        let to = T0 + offset_ms;
        assert!(to >= self.now, "test clock goes back: {to} < {}", self.now);
        self.now = to;
        self
    }

    /// The clock as an offset from `T0`.
    pub fn offset(&self) -> i64 {
        self.now - T0
    }

    pub fn stamp(&self, action: Action, request_id: Option<&str>) -> Stamped {
        Stamped {
            at_ms: self.now,
            command: Command::with_request_id(action, request_id.map(str::to_owned)),
        }
    }

    pub fn try_apply(&mut self, action: Action) -> Result<Vec<Event>, DomainError> {
        let stamped = self.stamp(action, None);
        self.state.apply(&stamped)
    }

    pub fn try_apply_with_id(
        &mut self,
        action: Action,
        request_id: &str,
    ) -> Result<Vec<Event>, DomainError> {
        let stamped = self.stamp(action, Some(request_id));
        self.state.apply(&stamped)
    }

    /// Applies an action that must succeed.
    #[track_caller]
    pub fn apply(&mut self, action: Action) -> Vec<Event> {
        let shown = format!("{action:?}");
        match self.try_apply(action) {
            Ok(events) => events,
            Err(err) => panic!("{shown} refused: {err}"),
        }
    }

    /// Applies an action that must be refused, and checks that nothing changed.
    #[track_caller]
    pub fn refuse(&mut self, action: Action) -> DomainError {
        let before = self.state.clone();
        let shown = format!("{action:?}");
        let err = match self.try_apply(action) {
            Ok(events) => panic!("{shown} was accepted: {events:?}"),
            Err(err) => err,
        };
        assert!(self.state == before, "refused {shown} changed the state");
        err
    }

    #[track_caller]
    pub fn tick(&mut self) -> Vec<Event> {
        self.apply(Action::Tick)
    }

    /// Sets the clock to `T0 + offset_ms` and ticks.
    #[track_caller]
    pub fn tick_at(&mut self, offset_ms: i64) -> Vec<Event> {
        self.at(offset_ms);
        self.tick()
    }

    #[track_caller]
    pub fn queue(&mut self, input: QueueInput) -> Vec<Event> {
        self.apply(Action::UpsertQueue(input))
    }

    #[track_caller]
    pub fn agent(&mut self, input: AgentInput) -> Vec<Event> {
        self.apply(Action::UpsertAgent(input))
    }

    #[track_caller]
    pub fn site(&mut self, id: &str) -> Vec<Event> {
        self.apply(Action::UpsertSite(SiteInput {
            id: id.into(),
            name: id.into(),
            region: String::new(),
        }))
    }

    #[track_caller]
    pub fn customer(&mut self, id: &str, tier: Tier) -> Vec<Event> {
        self.apply(Action::UpsertCustomer(CustomerInput {
            id: id.into(),
            name: format!("Customer {id}"),
            tier,
            ..Default::default()
        }))
    }

    #[track_caller]
    pub fn presence(&mut self, agent_id: &str, presence: Presence) -> Vec<Event> {
        self.apply(set_presence(agent_id, presence))
    }

    #[track_caller]
    pub fn available(&mut self, agent_id: &str) -> Vec<Event> {
        self.presence(agent_id, Presence::Available)
    }

    /// Creates a contact; returns its id and the events.
    #[track_caller]
    pub fn create(&mut self, input: ContactInput) -> (String, Vec<Event>) {
        let events = self.apply(Action::CreateContact(input));
        (created_id(&events), events)
    }

    #[track_caller]
    pub fn accept(&mut self, agent_id: &str, contact_id: &str) -> Vec<Event> {
        self.apply(accept(agent_id, contact_id))
    }

    #[track_caller]
    pub fn contact(&self, id: &str) -> &Contact {
        self.state
            .contact(id)
            .unwrap_or_else(|| panic!("no contact {id}"))
    }

    #[track_caller]
    pub fn agent_ref(&self, id: &str) -> &Agent {
        self.state
            .agent(id)
            .unwrap_or_else(|| panic!("no agent {id}"))
    }
}

// --- inputs ---

/// A queue with the defaults and a name.
pub fn queue(id: &str, strategy: Strategy) -> QueueInput {
    QueueInput {
        id: id.into(),
        name: format!("Queue {id}"),
        strategy,
        ..Default::default()
    }
}

/// An agent with the default capacity (voice 1, chat 3, email 5, callback 1).
pub fn agent(id: &str, site: &str, skills: &[(&str, u8)]) -> AgentInput {
    AgentInput {
        id: id.into(),
        name: format!("Agent {id}"),
        site: site.into(),
        skills: skills_of(skills),
        capacity: PerChannel::DEFAULT_CAPACITY,
    }
}

pub fn skills_of(skills: &[(&str, u8)]) -> BTreeMap<String, u8> {
    skills.iter().map(|(s, l)| ((*s).into(), *l)).collect()
}

/// Capacity per channel in the order voice, chat, email, callback.
pub fn capacity(voice: u32, chat: u32, email: u32, callback: u32) -> PerChannel {
    PerChannel([voice, chat, email, callback])
}

pub fn contact(queue_id: &str, channel: Channel) -> ContactInput {
    ContactInput {
        channel,
        queue_id: queue_id.into(),
        intent: "help".into(),
        ..Default::default()
    }
}

pub fn voice(queue_id: &str) -> ContactInput {
    contact(queue_id, Channel::Voice)
}

pub fn chat(queue_id: &str) -> ContactInput {
    contact(queue_id, Channel::Chat)
}

// --- actions ---

pub fn set_presence(agent_id: &str, presence: Presence) -> Action {
    Action::SetAgentPresence {
        agent_id: agent_id.into(),
        presence,
    }
}

pub fn accept(agent_id: &str, contact_id: &str) -> Action {
    Action::AcceptOffer {
        agent_id: agent_id.into(),
        contact_id: contact_id.into(),
    }
}

pub fn reject(agent_id: &str, contact_id: &str) -> Action {
    Action::RejectOffer {
        agent_id: agent_id.into(),
        contact_id: contact_id.into(),
    }
}

pub fn end(agent_id: &str, contact_id: &str) -> Action {
    Action::EndContact {
        agent_id: agent_id.into(),
        contact_id: contact_id.into(),
    }
}

pub fn complete(contact_id: &str, agent_id: &str, disposition: &str) -> Action {
    Action::CompleteContact {
        contact_id: contact_id.into(),
        agent_id: agent_id.into(),
        disposition: disposition.into(),
        notes: String::new(),
    }
}

pub fn abandon(contact_id: &str) -> Action {
    Action::AbandonContact {
        contact_id: contact_id.into(),
    }
}

pub fn transfer(contact_id: &str, queue_id: &str) -> Action {
    Action::TransferContact {
        contact_id: contact_id.into(),
        queue_id: queue_id.into(),
    }
}

pub fn renew(site_id: &str, sent_at_ms: i64, ttl_ms: i64) -> Action {
    Action::RenewLease {
        site_id: site_id.into(),
        sent_at_ms,
        ttl_ms,
        report: Default::default(),
    }
}

// --- reading events ---

/// The id of the (last) contact the events created.
#[track_caller]
pub fn created_id(events: &[Event]) -> String {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::ContactCreated { contact_id, .. } => Some(contact_id.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ContactCreated in {events:?}"))
}

/// Every offer in the events, in order: (contact, agents).
pub fn offers(events: &[Event]) -> Vec<(String, Vec<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ContactOffered {
                contact_id,
                agent_ids,
                ..
            } => Some((contact_id.clone(), agent_ids.clone())),
            _ => None,
        })
        .collect()
}

/// The agents the contact was offered to in these events, if it was.
pub fn offered_to(events: &[Event], contact_id: &str) -> Option<Vec<String>> {
    offers(events)
        .into_iter()
        .find(|(c, _)| c == contact_id)
        .map(|(_, agents)| agents)
}

/// The single-agent offers as (contact, agent) pairs.
pub fn offer_pairs(events: &[Event]) -> Vec<(String, String)> {
    offers(events)
        .into_iter()
        .flat_map(|(c, agents)| agents.into_iter().map(move |a| (c.clone(), a)))
        .collect()
}

pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

/// The field a refusal names.
pub fn field_of(err: &DomainError) -> &str {
    match err {
        DomainError::InvalidArgument { field, .. }
        | DomainError::NotFound { field, .. }
        | DomainError::AlreadyExists { field, .. }
        | DomainError::FailedPrecondition { field, .. } => field,
    }
}

/// The variant of a refusal, as its gRPC-like name.
pub fn code_of(err: &DomainError) -> &'static str {
    match err {
        DomainError::InvalidArgument { .. } => "INVALID_ARGUMENT",
        DomainError::NotFound { .. } => "NOT_FOUND",
        DomainError::AlreadyExists { .. } => "ALREADY_EXISTS",
        DomainError::FailedPrecondition { .. } => "FAILED_PRECONDITION",
    }
}
