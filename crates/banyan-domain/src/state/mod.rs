//! The whole replicated domain state and the one function that changes it.
//!
//! # Layout
//! * this file: the state, its serialized form, `apply` with idempotency, and queries;
//! * [`contacts`]: a contact's life cycle (create, accept, reject, end, complete, abandon,
//!   transfer);
//! * [`holding`]: the bookkeeping of agents holding contacts, requeues, timers, history;
//! * [`admin`]: queues, agents, presence, sites and their leases;
//! * [`branch`]: a branch's view for routing on its own, and importing what it did;
//! * [`route`]: the routing decision itself;
//! * [`tick`]: timers, advanced only by leader-proposed `Tick` commands.

mod admin;
mod branch;
mod contacts;
mod holding;
mod route;
mod tick;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::command::{Action, Command, Stamped};
use crate::contact::Contact;
use crate::customer::{normalize_email, normalize_phone, Customer, CustomerInput, Tier};
use crate::error::DomainError;
use crate::event::Event;
use crate::principal::Principal;
use crate::queue::QueueInput;
use crate::requests::{RequestLog, RequestRecord};
use crate::routing::Indexes;
use crate::site::Site;
use crate::stats::{HistoryEntry, QueueCounters, QueueStats};

/// The latest stamp `apply` takes: the last millisecond of the year 9999.
pub const MAX_STAMP_MS: i64 = 253_402_300_799_999;

/// The source of truth: everything a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Data {
    customers: BTreeMap<String, Customer>,
    /// Customer id → their most recent finished contacts, oldest first.
    history: BTreeMap<String, VecDeque<HistoryEntry>>,
    queues: BTreeMap<String, QueueInput>,
    counters: BTreeMap<String, QueueCounters>,
    agents: BTreeMap<String, Agent>,
    sites: BTreeMap<String, Site>,
    contacts: BTreeMap<String, Contact>,
    /// Recent idempotency keys and their first results.
    requests: RequestLog,
    /// The largest leader stamp of a command that took effect (refused commands and
    /// retries leave it alone): the state machine's notion of "now".
    clock_ms: i64,
    /// Sequence for generated contact ids.
    contact_seq: u64,
    /// Sequence of offers, for `ROUND_ROBIN`.
    offer_seq: u64,
    /// Site → the last journal sequence of its branch applied here (exactly-once
    /// reconciliation).
    reconciled: BTreeMap<String, u64>,
}

/// Everything the cluster agrees on, plus the derived indexes routing needs. Two states
/// are equal when their source of truth is.
#[derive(Debug, Clone, Default)]
pub struct State {
    data: Data,
    idx: Indexes,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.data.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let data = Data::deserialize(deserializer)?;
        let mut state = State {
            data,
            idx: Indexes::default(),
        };
        state.rebuild_indexes();
        Ok(state)
    }
}

/// Filters for [`State::find_customers`]; every set filter must match.
#[derive(Debug, Clone, Default)]
pub struct CustomerQuery {
    /// Only customers with this phone number, in any format (looked up by index).
    pub phone: Option<String>,
    /// Only customers with this email address, in any case (looked up by index).
    pub email: Option<String>,
    /// Only customers whose name starts with this, ignoring case.
    pub name_prefix: Option<String>,
    /// Only customers of this tier.
    pub tier: Option<Tier>,
    /// Only ids strictly after this one (paging).
    pub after_id: Option<String>,
    /// Most customers to return.
    pub limit: usize,
}

impl ContactQuery {
    /// Whether `contact` passes every filter that is set (paging aside).
    pub fn matches(&self, c: &Contact) -> bool {
        self.queue_id.as_ref().is_none_or(|q| c.queue_id == *q)
            && self.agent_id.as_ref().is_none_or(|a| {
                c.agent_id == *a || c.offer.as_ref().is_some_and(|o| o.agents.contains(a))
            })
            && self
                .customer_id
                .as_ref()
                .is_none_or(|id| c.customer_id == *id)
            && self.state.is_none_or(|s| c.state == s)
            && self
                .origin_site
                .as_ref()
                .is_none_or(|s| c.origin_site == *s)
    }
}

/// Filters for [`State::list_contacts`]; every set filter must match.
#[derive(Debug, Clone, Default)]
pub struct ContactQuery {
    /// Only contacts in this queue.
    pub queue_id: Option<String>,
    /// Only contacts this agent holds or is offered.
    pub agent_id: Option<String>,
    /// Only contacts of this customer.
    pub customer_id: Option<String>,
    /// Only contacts in this state.
    pub state: Option<crate::contact::ContactState>,
    /// Only contacts of this site: those that came in there (for a site-limited reader).
    pub origin_site: Option<String>,
    /// Only ids strictly after this one (paging).
    pub after_id: Option<String>,
    /// Most contacts to return.
    pub limit: usize,
}

impl State {
    /// Applies one leader-stamped command. On `Err` the state is unchanged.
    ///
    /// A command whose `request_id` was applied before (within the retention window)
    /// returns the first result again when it is the same command, and is refused when it
    /// differs.
    pub fn apply(&mut self, stamped: &Stamped) -> Result<Vec<Event>, DomainError> {
        // A refused command and a retry change nothing, not even the clock: only a command
        // that takes effect advances it and expires old request ids.
        // A stamp past the year 9999 is no clock: refused, so that no timer sum can
        // saturate at the end of i64 and fire again and again within one tick.
        if stamped.at_ms > MAX_STAMP_MS {
            return Err(DomainError::invalid(
                "at_ms",
                format!("{} is past the year 9999", stamped.at_ms),
            ));
        }
        self.idx.finished_now.clear();
        let before = self.data.clock_ms;
        let now = before.max(stamped.at_ms);
        let command = &stamped.command;
        if let Some(record) = command
            .request_id()
            .and_then(|id| self.data.requests.live(id, now))
        {
            if record.command == *command {
                return Ok(record.events.clone());
            }
            return Err(DomainError::precondition(
                "request_id",
                "already used for a different request",
            ));
        }
        self.data.clock_ms = now;
        let mut events = Vec::new();
        if let Err(err) = self.dispatch(command, &mut events) {
            self.data.clock_ms = before;
            return Err(err);
        }
        if let Some(principal) = &command.principal {
            self.attribute_steps(principal, now, &events);
        }
        self.data.requests.expire(now);
        if let Some(id) = command.request_id() {
            self.data.requests.record(
                id,
                RequestRecord {
                    // The state machine's clock, not the stamp: a leader whose clock is
                    // behind must not record an entry that expires on the next apply.
                    at_ms: self.data.clock_ms,
                    command: command.clone(),
                    events: events.clone(),
                },
            );
        }
        Ok(events)
    }

    /// Names `principal` on the timeline steps this command added to the contacts its
    /// events mention: the steps at the end of each timeline, stamped now, not named yet.
    fn attribute_steps(&mut self, principal: &Principal, now: i64, events: &[Event]) {
        for contact_id in events.iter().filter_map(Event::contact_id) {
            let Some(contact) = self.data.contacts.get_mut(contact_id) else {
                continue;
            };
            for step in contact.timeline.iter_mut().rev() {
                if step.by.is_some() || step.at_ms != now {
                    break;
                }
                step.by = Some(principal.clone());
            }
        }
    }

    /// Like [`apply`](Self::apply), also saying whether the command took effect now
    /// (`true`) or was a retry answered from the request log (`false`): a retry's events
    /// happened before and must not be published again.
    pub fn apply_traced(&mut self, stamped: &Stamped) -> (Result<Vec<Event>, DomainError>, bool) {
        let retry = stamped.command.request_id().is_some_and(|id| {
            let now = self.data.clock_ms.max(stamped.at_ms);
            self.data
                .requests
                .live(id, now)
                .is_some_and(|record| record.command == stamped.command)
        });
        (self.apply(stamped), !retry)
    }

    /// Runs one action. Each handler checks everything before it changes anything, so an
    /// `Err` leaves the state as it was; after any change, routing runs to a fixpoint.
    fn dispatch(&mut self, command: &Command, ev: &mut Vec<Event>) -> Result<(), DomainError> {
        let now = self.data.clock_ms;
        match &command.action {
            Action::UpsertCustomer(input) => {
                let customer = self.upsert_customer(now, input)?;
                ev.push(Event::CustomerUpserted(customer));
                return Ok(());
            }
            Action::UpsertQueue(input) => self.upsert_queue(input, ev)?,
            Action::UpsertAgent(input) => self.upsert_agent(input, ev)?,
            Action::UpsertSite(input) => self.upsert_site(input, ev)?,
            Action::RenewLease {
                site_id,
                sent_at_ms,
                ttl_ms,
                report,
            } => self.renew_lease(
                site_id,
                *sent_at_ms,
                *ttl_ms,
                *report,
                command.principal.as_ref(),
                ev,
            )?,
            Action::ReleaseLease { site_id } => self.release_lease(site_id, ev)?,
            Action::Cluster(_) | Action::Part(_) => {
                return Err(DomainError::invalid(
                    "action",
                    "the cluster's identity and commands in parts are the state machine's, not the domain's",
                ))
            }
            Action::CreateContact(input) => self.create_contact(input, command.request_id(), ev)?,
            Action::SetAgentPresence { agent_id, presence } => {
                self.set_presence(agent_id, presence, ev)?
            }
            Action::AgentLogin {
                agent_id,
                session,
                presence,
            } => self.login_agent(agent_id, session, presence, ev)?,
            Action::AgentDisconnected { agent_id, session } => {
                self.disconnect_agent(agent_id, session, ev)?
            }
            Action::AcceptOffer {
                agent_id,
                contact_id,
            } => self.accept_offer(agent_id, contact_id, ev)?,
            Action::RejectOffer {
                agent_id,
                contact_id,
            } => self.reject_offer(agent_id, contact_id, ev)?,
            Action::EndContact {
                agent_id,
                contact_id,
            } => self.end_contact(agent_id, contact_id, ev)?,
            Action::CompleteContact {
                contact_id,
                agent_id,
                disposition,
                notes,
            } => self.complete_contact(contact_id, agent_id, disposition, notes, ev)?,
            Action::AbandonContact { contact_id } => self.abandon_contact(contact_id, ev)?,
            Action::TransferContact {
                contact_id,
                queue_id,
            } => self.transfer_contact(contact_id, queue_id, ev)?,
            Action::RevokeAgentTokens { agent_id } => {
                self.revoke_agent_tokens(agent_id, ev)?;
                return Ok(());
            }
            Action::Tick => self.tick(ev),
            Action::ForgetFinished { before_ms } => {
                self.forget_finished(*before_ms)?;
                return Ok(());
            }
            Action::ImportBranch(import) => {
                self.import_branch(import, command.principal.as_ref(), ev)?
            }
        }
        self.route(ev);
        Ok(())
    }

    /// The contact a command names, or why not (field `contact_id`).
    pub(super) fn find_contact(&self, contact_id: &str) -> Result<&Contact, DomainError> {
        crate::validate::validate_id("contact_id", contact_id)?;
        self.data
            .contacts
            .get(contact_id)
            .ok_or_else(|| DomainError::not_found("contact_id", contact_id))
    }

    /// The agent a command names, or why not (field `agent_id`).
    pub(super) fn find_agent(&self, agent_id: &str) -> Result<&Agent, DomainError> {
        crate::validate::validate_id("agent_id", agent_id)?;
        self.data
            .agents
            .get(agent_id)
            .ok_or_else(|| DomainError::not_found("agent_id", agent_id))
    }

    /// The queue a command names, or why not (field `queue_id`).
    pub(super) fn find_queue(&self, queue_id: &str) -> Result<&QueueInput, DomainError> {
        crate::validate::validate_id("queue_id", queue_id)?;
        self.data
            .queues
            .get(queue_id)
            .ok_or_else(|| DomainError::not_found("queue_id", queue_id))
    }

    /// The state machine's clock: the largest leader stamp of a command that took effect.
    pub fn clock_ms(&self) -> i64 {
        self.data.clock_ms
    }

    /// Inconsistencies of the state met while applying since this state was loaded: a
    /// step that found an object its command's checks had found gone, and skipped. Zero in
    /// a healthy cluster; the node logs and counts every one.
    pub fn inconsistencies(&self) -> (u64, Option<&str>) {
        (
            self.idx.inconsistencies,
            self.idx.last_inconsistency.as_deref(),
        )
    }

    /// Idempotency keys currently remembered.
    pub fn remembered_requests(&self) -> usize {
        self.data.requests.len()
    }

    /// The request log's size in bytes, and how many of its records it let go before
    /// their time because it was full (since this state was loaded).
    pub fn request_log_bytes(&self) -> (usize, u64) {
        (
            self.data.requests.bytes(),
            self.data.requests.evicted_early(),
        )
    }

    /// Rebuilds every derived index from the source of truth (after loading a snapshot).
    fn rebuild_indexes(&mut self) {
        self.idx = Indexes::default();
        for customer in self.data.customers.values() {
            index_customer(&mut self.idx, &customer.input);
        }
        for agent in self.data.agents.values() {
            self.idx.qualify(agent, &self.data.queues);
            self.idx.repool(agent, &self.data.queues);
        }
        let ids: Vec<String> = self.data.contacts.keys().cloned().collect();
        for id in ids {
            self.reschedule(&id);
        }
        for contact in self.data.contacts.values() {
            if let Some(at) = contact.finished_ms() {
                self.idx.finished.insert((at, contact.id.clone()));
            }
        }
    }

    // --- customers ---

    fn upsert_customer(
        &mut self,
        at_ms: i64,
        input: &CustomerInput,
    ) -> Result<Customer, DomainError> {
        input.validate()?;
        let customer = match self.data.customers.remove(&input.id) {
            Some(old) => {
                unindex_customer(&mut self.idx, &old.input);
                Customer {
                    input: input.clone(),
                    version: old.version + 1,
                    created_at_ms: old.created_at_ms,
                    updated_at_ms: at_ms,
                }
            }
            None => Customer {
                input: input.clone(),
                version: 1,
                created_at_ms: at_ms,
                updated_at_ms: at_ms,
            },
        };
        index_customer(&mut self.idx, &customer.input);
        self.data
            .customers
            .insert(input.id.clone(), customer.clone());
        Ok(customer)
    }

    /// The customer with this id, if any.
    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.data.customers.get(id)
    }

    /// How many customers the cluster stores.
    pub fn customer_count(&self) -> usize {
        self.data.customers.len()
    }

    /// When the oldest finished contact still in the state finished: the leader proposes
    /// [`Action::ForgetFinished`] once that is past the retention window.
    pub fn oldest_finished_ms(&self) -> Option<i64> {
        self.idx.finished.first().map(|(at, _)| *at)
    }

    /// How many finished contacts the state still holds.
    pub fn finished_count(&self) -> usize {
        self.idx.finished.len()
    }

    /// The contacts the last command applied finished, as they finished: what a node
    /// writes to its history store while applying that command. Empty after a refused
    /// command or a retry.
    pub fn finished_by_last_command(&self) -> impl Iterator<Item = &Contact> {
        let contacts = &self.data.contacts;
        self.idx
            .finished_now
            .iter()
            .filter_map(|id| contacts.get(id))
    }

    /// Takes finished contacts that finished before `before_ms` out of the state, oldest
    /// first and at most [`MAX_FORGET_PER_COMMAND`](crate::command::MAX_FORGET_PER_COMMAND).
    /// Nothing routing reads refers to a finished contact, so only the contact and its
    /// index entry go; counters, figures and customers' histories stay.
    fn forget_finished(&mut self, before_ms: i64) -> Result<(), DomainError> {
        if before_ms > self.data.clock_ms {
            return Err(DomainError::invalid(
                "before_ms",
                format!(
                    "{before_ms} is after the command's own time {}: only contacts already finished may leave",
                    self.data.clock_ms
                ),
            ));
        }
        for _ in 0..crate::command::MAX_FORGET_PER_COMMAND {
            let Some((at, id)) = self.idx.finished.first().cloned() else {
                break;
            };
            if at >= before_ms {
                break;
            }
            self.idx.finished.pop_first();
            // A stale entry (the id names a live contact now) is dropped and skipped.
            if self.data.contacts.get(&id).and_then(Contact::finished_ms) == Some(at) {
                self.data.contacts.remove(&id);
            }
        }
        Ok(())
    }

    /// A customer's most recent finished contacts, oldest first.
    pub fn customer_history(&self, id: &str) -> impl Iterator<Item = &HistoryEntry> {
        self.data.history.get(id).into_iter().flatten()
    }

    /// Customers matching `query`, in id order, at most `query.limit`.
    pub fn find_customers(&self, query: &CustomerQuery) -> Vec<&Customer> {
        let after = |id: &String| query.after_id.as_ref().is_none_or(|a| id > a);
        let matches =
            |c: &Customer| {
                query
                    .name_prefix
                    .as_ref()
                    .is_none_or(|p| c.input.name.to_lowercase().starts_with(&p.to_lowercase()))
                    && query.tier.is_none_or(|t| c.input.tier == t)
                    && query.phone.as_ref().is_none_or(|p| {
                        c.input.normalized_phones().any(|q| q == normalize_phone(p))
                    })
                    && query.email.as_ref().is_none_or(|e| {
                        c.input.normalized_emails().any(|q| q == normalize_email(e))
                    })
            };
        // Use an index when one applies, so a lookup by phone or email does not scan.
        if query.phone.is_some() || query.email.is_some() {
            let indexed = match (&query.phone, &query.email) {
                (Some(phone), _) => self.idx.by_phone.get(&normalize_phone(phone)),
                (None, Some(email)) => self.idx.by_email.get(&normalize_email(email)),
                (None, None) => None,
            };
            return indexed
                .into_iter()
                .flatten()
                .filter(|id| after(id))
                .filter_map(|id| self.data.customers.get(id))
                .filter(|c| matches(c))
                .take(query.limit)
                .collect();
        }
        self.data
            .customers
            .range((after_bound(&query.after_id), Bound::Unbounded))
            .map(|(_, c)| c)
            .filter(|c| matches(c))
            .take(query.limit)
            .collect()
    }

    // --- queries for the service edge ---

    /// The contact with this id, finished or not, if any.
    pub fn contact(&self, id: &str) -> Option<&Contact> {
        self.data.contacts.get(id)
    }

    /// How many contacts the state holds, finished ones included.
    pub fn contact_count(&self) -> usize {
        self.data.contacts.len()
    }

    /// Contacts matching `query`, in id order, at most `query.limit`.
    pub fn list_contacts(&self, query: &ContactQuery) -> Vec<&Contact> {
        self.data
            .contacts
            .range((after_bound(&query.after_id), Bound::Unbounded))
            .map(|(_, c)| c)
            .filter(|c| query.matches(c))
            .take(query.limit)
            .collect()
    }

    /// Every contact, finished ones included, in id order.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.data.contacts.values()
    }

    /// The queue's configuration, if the queue exists.
    pub fn queue(&self, id: &str) -> Option<&QueueInput> {
        self.data.queues.get(id)
    }

    /// Every queue's configuration, in id order.
    pub fn queues(&self) -> impl Iterator<Item = &QueueInput> {
        self.data.queues.values()
    }

    /// The agent with this id, if any.
    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.data.agents.get(id)
    }

    /// Every agent, in id order.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.data.agents.values()
    }

    /// The site with this id, if any.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.data.sites.get(id)
    }

    /// Every site, in id order.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.data.sites.values()
    }

    /// Contacts waiting in a queue right now.
    pub fn waiting_in(&self, queue_id: &str) -> usize {
        self.idx.waiting.get(queue_id).map_or(0, |w| w.len())
    }

    /// The queue's statistics at the state machine's clock.
    pub fn queue_stats(&self, queue_id: &str) -> Option<QueueStats> {
        self.data.queues.get(queue_id)?;
        let now = self.data.clock_ms;
        let waiting = self.idx.waiting.get(queue_id);
        let longest_wait_ms = waiting
            .and_then(|w| w.first())
            .map_or(0, |(enqueued, _)| now.saturating_sub(*enqueued).max(0));
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        for agent in self.data.agents.values() {
            let qualified = self
                .idx
                .qualified
                .get(agent.id())
                .is_some_and(|pairs| pairs.iter().any(|(q, _)| q == queue_id));
            if qualified {
                *by_state.entry(agent.state().name().to_owned()).or_default() += 1;
            }
        }
        Some(QueueStats {
            queue_id: queue_id.to_owned(),
            counters: self
                .data
                .counters
                .get(queue_id)
                .cloned()
                .unwrap_or_default(),
            waiting: waiting.map_or(0, |w| w.len() as u64),
            longest_wait_ms,
            agents_by_state: by_state.into_iter().collect(),
        })
    }

    /// The earliest time a `Tick` has something to do: a timer or a lease expiry. The
    /// leader proposes a `Tick` once its clock passes it.
    pub fn next_due_ms(&self) -> Option<i64> {
        let timer = self.idx.timers.first().map(|t| t.0);
        let lease = self
            .data
            .sites
            .values()
            .filter(|s| !s.lapsed)
            .filter_map(|s| s.lease_expires_ms)
            .min();
        match (timer, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn after_bound(after: &Option<String>) -> Bound<String> {
    match after {
        Some(id) => Bound::Excluded(id.clone()),
        None => Bound::Unbounded,
    }
}

fn index_customer(idx: &mut Indexes, input: &CustomerInput) {
    for phone in input.normalized_phones() {
        idx.by_phone
            .entry(phone)
            .or_default()
            .insert(input.id.clone());
    }
    for email in input.normalized_emails() {
        idx.by_email
            .entry(email)
            .or_default()
            .insert(input.id.clone());
    }
}

fn unindex_customer(idx: &mut Indexes, input: &CustomerInput) {
    fn remove(index: &mut BTreeMap<String, BTreeSet<String>>, key: String, id: &str) {
        if let Some(ids) = index.get_mut(&key) {
            ids.remove(id);
            if ids.is_empty() {
                index.remove(&key);
            }
        }
    }
    for phone in input.normalized_phones() {
        remove(&mut idx.by_phone, phone, &input.id);
    }
    for email in input.normalized_emails() {
        remove(&mut idx.by_email, email, &input.id);
    }
}
