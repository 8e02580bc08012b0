//! A contact's life cycle, and the bookkeeping of agents holding contacts.

use super::State;
use crate::channel::Channel;
use crate::contact::{Contact, ContactInput, ContactState};
use crate::customer::Tier;
use crate::error::DomainError;
use crate::event::{Event, WithdrawReason};
use crate::queue::{QueueInput, WhenFull};
use crate::routing::TimerKind;
use crate::stats::QueueCounters;
use crate::validate::{validate_id, validate_len, MAX_TEXT_LEN};

impl State {
    pub(super) fn create_contact(
        &mut self,
        input: &ContactInput,
        request_id: Option<&str>,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let (queue, tier) = self.check_new_contact(input)?;
        let now = self.data.clock_ms;
        // Checks done; from here on nothing fails.
        let id = if input.id.is_empty() {
            self.next_contact_id()
        } else {
            input.id.clone()
        };
        let boost = queue.as_ref().map_or(0, |q| q.tier_boost(tier));
        let mut contact = Self::new_contact(input, id.clone(), request_id, boost, now);
        let counters = self.admit(input, queue.as_ref(), &mut contact, now);
        if queue.is_some() {
            self.data
                .counters
                .entry(input.queue_id.clone())
                .or_default()
                .add(&counters);
        }
        ev.push(Event::ContactCreated {
            contact_id: id.clone(),
            channel: contact.channel,
            queue_id: contact.queue_id.clone(),
            state: contact.state,
            priority: contact.priority,
            enqueued_ms: now,
        });
        let state = contact.state;
        self.data.contacts.insert(id.clone(), contact);
        if state.is_final() {
            self.record_history(&id);
        } else {
            self.reschedule(&id);
        }
        Ok(())
    }

    /// Every check `CreateContact` makes, before anything changes; its queue and tier.
    fn check_new_contact(
        &self,
        input: &ContactInput,
    ) -> Result<(Option<QueueInput>, Tier), DomainError> {
        input.validate()?;
        let queue = if input.queue_id.is_empty() {
            None
        } else {
            let queue = self
                .data
                .queues
                .get(&input.queue_id)
                .ok_or_else(|| DomainError::not_found("contact.queue_id", &input.queue_id))?;
            if !queue.takes(input.channel) {
                return Err(DomainError::precondition(
                    "contact.channel",
                    format!("queue {} does not take {}", queue.id, input.channel),
                ));
            }
            Some(queue.clone())
        };
        let tier = if input.customer_id.is_empty() {
            Default::default()
        } else {
            self.data
                .customers
                .get(&input.customer_id)
                .ok_or_else(|| DomainError::not_found("contact.customer_id", &input.customer_id))?
                .input
                .tier
        };
        if !input.id.is_empty() && self.data.contacts.contains_key(&input.id) {
            return Err(DomainError::already_exists("contact.id", &input.id));
        }
        Ok((queue, tier))
    }

    /// A new contact as its input describes it, before `admit` gives it its first state.
    fn new_contact(
        input: &ContactInput,
        id: String,
        request_id: Option<&str>,
        boost: i64,
        now: i64,
    ) -> Contact {
        Contact {
            id,
            request_id: request_id.map(str::to_owned),
            channel: input.channel,
            customer_id: input.customer_id.clone(),
            queue_id: input.queue_id.clone(),
            intent: input.intent.clone(),
            base_priority: input.priority,
            priority: input.priority.saturating_add(boost),
            attributes: input.attributes.clone(),
            origin_site: input.origin_site.clone(),
            owner: "core".into(),
            state: ContactState::Queued,
            enqueued_ms: now,
            queue_entered_ms: now,
            step: 0,
            offer: None,
            decision: None,
            agent_id: String::new(),
            passed_by: String::new(),
            connected_ms: None,
            wrap_until_ms: None,
            ended_ms: None,
            disposition: String::new(),
            notes: String::new(),
            transferred_from: String::new(),
            transferred_to: String::new(),
            timeline: Vec::new(),
        }
    }

    /// Where a new contact starts (self-served, queued, or as its full queue says); its counts.
    fn admit(
        &self,
        input: &ContactInput,
        queue: Option<&QueueInput>,
        contact: &mut Contact,
        now: i64,
    ) -> QueueCounters {
        let full = queue
            .is_some_and(|q| q.max_length > 0 && self.waiting_in(&q.id) >= q.max_length as usize);
        let callback = queue
            .is_some_and(|q| q.when_full == WhenFull::Callback && input.channel == Channel::Voice);
        let mut counters = QueueCounters::default();
        if input.self_served {
            contact.enter(now, ContactState::SelfServed, "self-service");
            contact.ended_ms = Some(now);
            counters.self_served = 1;
        } else if full && callback {
            counters.entered = 1;
            counters.callbacks = 1;
            contact.channel = Channel::Callback;
            contact.enter(now, ContactState::CallbackScheduled, "queue full: callback");
        } else if full {
            counters.entered = 1;
            counters.abandoned = 1;
            contact.enter(now, ContactState::Abandoned, "queue full");
            contact.ended_ms = Some(now);
        } else {
            counters.entered = 1;
            contact.enter(now, ContactState::Queued, "");
        }
        counters
    }

    /// A fresh generated contact id, ordered by creation.
    fn next_contact_id(&mut self) -> String {
        loop {
            self.data.contact_seq += 1;
            let id = format!("ct-{:010}", self.data.contact_seq);
            if !self.data.contacts.contains_key(&id) {
                return id;
            }
        }
    }

    /// Looks up a contact and an agent for an agent action, naming whichever is missing.
    fn contact_and_agent(
        &self,
        contact_id: &str,
        agent_id: &str,
    ) -> Result<(&Contact, &crate::agent::Agent), DomainError> {
        validate_id("contact_id", contact_id)?;
        let agent = self.find_agent(agent_id)?;
        let contact = self.find_contact(contact_id)?;
        Ok((contact, agent))
    }

    fn offered_to(contact: &Contact, agent_id: &str) -> Result<(), DomainError> {
        let offered = contact.state == ContactState::Offered
            && contact
                .offer
                .as_ref()
                .is_some_and(|o| o.agents.iter().any(|a| a == agent_id));
        if offered {
            Ok(())
        } else {
            Err(DomainError::precondition(
                "contact_id",
                format!(
                    "contact {} is {} and not offered to agent {agent_id}",
                    contact.id,
                    contact.state.name()
                ),
            ))
        }
    }

    pub(super) fn accept_offer(
        &mut self,
        agent_id: &str,
        contact_id: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let now = self.data.clock_ms;
        let (contact, agent) = self.contact_and_agent(contact_id, agent_id)?;
        Self::offered_to(contact, agent_id)?;
        // The fence: an offer to a site whose lease lapsed may be routed by its branch now.
        if let Some(site) = self.data.sites.get(&agent.input.site) {
            if !site.routable(now) {
                return Err(DomainError::precondition(
                    "agent.site",
                    format!("lease of site {} has lapsed", site.input.id),
                ));
            }
        }
        let others: Vec<String> = contact
            .offer
            .iter()
            .flat_map(|o| o.agents.iter())
            .filter(|a| *a != agent_id)
            .cloned()
            .collect();
        for other in others {
            self.withdraw(contact_id, &other, WithdrawReason::TakenByOther, ev);
        }
        let Some(contact) = self.contact_mut(contact_id) else {
            return Ok(());
        };
        let waited_ms = now.saturating_sub(contact.enqueued_ms).max(0);
        contact.offer = None;
        contact.agent_id = agent_id.to_owned();
        contact.connected_ms = Some(now);
        contact.enter(now, ContactState::Connected, agent_id);
        let queue_id = contact.queue_id.clone();
        let target = self
            .data
            .queues
            .get(&queue_id)
            .map_or(i64::MAX, |q| q.service_level_ms);
        let counters = self.data.counters.entry(queue_id).or_default();
        counters.answered += 1;
        counters.answered_wait_ms = counters.answered_wait_ms.saturating_add(waited_ms);
        if waited_ms <= target {
            counters.answered_in_target += 1;
        }
        if let Some(agent) = self.agent_mut(agent_id) {
            agent.missed_in_row = 0;
        }
        ev.push(Event::ContactConnected {
            contact_id: contact_id.to_owned(),
            agent_id: agent_id.to_owned(),
            waited_ms,
        });
        Ok(())
    }

    pub(super) fn reject_offer(
        &mut self,
        agent_id: &str,
        contact_id: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let (contact, _) = self.contact_and_agent(contact_id, agent_id)?;
        Self::offered_to(contact, agent_id)?;
        self.withdraw(contact_id, agent_id, WithdrawReason::Rejected, ev);
        self.requeue_if_unoffered(contact_id, agent_id, ev);
        Ok(())
    }

    /// The conversation is over: the contact moves to wrap-up, or completes at once when
    /// the queue has no wrap-up time.
    pub(super) fn end_contact(
        &mut self,
        agent_id: &str,
        contact_id: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let now = self.data.clock_ms;
        let (contact, agent) = self.contact_and_agent(contact_id, agent_id)?;
        self.held_by(contact, agent_id, &[ContactState::Connected])?;
        let shown = agent.state();
        let wrap_up_ms = self
            .data
            .queues
            .get(&contact.queue_id)
            .map_or(0, |q| q.wrap_up_ms);
        let talk = now.saturating_sub(contact.connected_ms.unwrap_or(now));
        let until_ms = now.saturating_add(wrap_up_ms);
        if let Some(agent) = self.agent_mut(agent_id) {
            agent.talk_time_ms = agent.talk_time_ms.saturating_add(talk.max(0));
            agent.wrapping_up += 1;
        }
        if let Some(contact) = self.contact_mut(contact_id) {
            contact.wrap_until_ms = Some(until_ms);
            contact.enter(now, ContactState::WrapUp, "");
        }
        ev.push(Event::ContactWrapUp {
            contact_id: contact_id.to_owned(),
            agent_id: agent_id.to_owned(),
            until_ms,
        });
        self.agent_state_changed(agent_id, &shown, ev);
        if wrap_up_ms == 0 {
            self.finish(contact_id, "", "", ev);
        } else {
            self.idx
                .schedule(until_ms, TimerKind::WrapUpEnd, contact_id);
            self.repool(agent_id);
        }
        Ok(())
    }

    /// Checks that `agent_id` (or anyone, when empty) holds the contact in one of `states`.
    fn held_by(
        &self,
        contact: &Contact,
        agent_id: &str,
        states: &[ContactState],
    ) -> Result<(), DomainError> {
        if !states.contains(&contact.state) {
            return Err(DomainError::precondition(
                "contact_id",
                format!(
                    "contact {} is {}; expected {}",
                    contact.id,
                    contact.state.name(),
                    states
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
        if !agent_id.is_empty() && contact.agent_id != agent_id {
            return Err(DomainError::precondition(
                "agent_id",
                format!("contact {} is held by {}", contact.id, contact.agent_id),
            ));
        }
        Ok(())
    }

    pub(super) fn complete_contact(
        &mut self,
        contact_id: &str,
        agent_id: &str,
        disposition: &str,
        notes: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let contact = self.find_contact(contact_id)?;
        if !agent_id.is_empty() {
            self.find_agent(agent_id)?;
        }
        validate_len("notes", notes, MAX_TEXT_LEN)?;
        self.held_by(
            contact,
            agent_id,
            &[ContactState::Connected, ContactState::WrapUp],
        )?;
        if let Some(queue) = self.data.queues.get(&contact.queue_id) {
            if !disposition.is_empty() {
                validate_id("disposition", disposition)?;
            }
            if !queue.dispositions.is_empty() && !queue.allows_disposition(disposition) {
                return Err(DomainError::invalid(
                    "disposition",
                    format!(
                        "{disposition:?} is not one of queue {}'s codes: {}",
                        queue.id,
                        queue.dispositions.join(", ")
                    ),
                ));
            }
        }
        self.finish(contact_id, disposition, notes, ev);
        Ok(())
    }

    /// Ends a connected or wrapping-up contact: the agent is free of it.
    pub(super) fn finish(
        &mut self,
        contact_id: &str,
        disposition: &str,
        notes: &str,
        ev: &mut Vec<Event>,
    ) {
        let now = self.data.clock_ms;
        let Some(contact) = self.contact_mut(contact_id) else {
            return;
        };
        let was = contact.state;
        let agent_id = contact.agent_id.clone();
        let connected = contact.connected_ms.unwrap_or(now);
        let queue_id = contact.queue_id.clone();
        contact.disposition = disposition.to_owned();
        contact.notes = notes.to_owned();
        contact.ended_ms = Some(now);
        contact.wrap_until_ms = None;
        contact.enter(now, ContactState::Completed, disposition);
        let counters = self.data.counters.entry(queue_id).or_default();
        counters.handled += 1;
        let handled_ms = now.saturating_sub(connected).max(0);
        counters.handle_ms = counters.handle_ms.saturating_add(handled_ms);
        // The agent's side is skipped (and counted) if it is gone; the contact still ends.
        let shown = self.agent_mut(&agent_id).map(|agent| {
            let shown = agent.state();
            if was == ContactState::Connected {
                agent.talk_time_ms = agent.talk_time_ms.saturating_add(handled_ms);
            } else {
                agent.wrapping_up = agent.wrapping_up.saturating_sub(1);
            }
            agent.handled += 1;
            agent.idle_since_ms = now;
            shown
        });
        self.release(&agent_id, contact_id);
        ev.push(Event::ContactCompleted {
            contact_id: contact_id.to_owned(),
            agent_id: agent_id.clone(),
            disposition: disposition.to_owned(),
        });
        if let Some(shown) = shown {
            self.agent_state_changed(&agent_id, &shown, ev);
        }
        self.record_history(contact_id);
    }

    pub(super) fn abandon_contact(
        &mut self,
        contact_id: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let contact = self.find_contact(contact_id)?;
        if !(contact.state.is_waiting() || contact.state == ContactState::Offered) {
            return Err(DomainError::precondition(
                "contact_id",
                format!(
                    "contact {} is {}; only a waiting or offered contact can be abandoned",
                    contact.id,
                    contact.state.name()
                ),
            ));
        }
        self.abandon(contact_id, "caller hung up", ev);
        Ok(())
    }

    /// Ends a waiting or offered contact without an agent.
    pub(super) fn abandon(&mut self, contact_id: &str, reason: &str, ev: &mut Vec<Event>) {
        let now = self.data.clock_ms;
        self.withdraw_all(contact_id, WithdrawReason::ContactEnded, ev);
        self.idx.unplace(contact_id);
        let Some(contact) = self.contact_mut(contact_id) else {
            return;
        };
        contact.offer = None;
        contact.ended_ms = Some(now);
        contact.enter(now, ContactState::Abandoned, reason);
        let waited = now.saturating_sub(contact.enqueued_ms);
        let queue_id = contact.queue_id.clone();
        let target = self
            .data
            .queues
            .get(&queue_id)
            .map_or(0, |q| q.service_level_ms);
        let counters = self.data.counters.entry(queue_id).or_default();
        counters.abandoned += 1;
        if waited <= target {
            counters.abandoned_in_target += 1;
        }
        ev.push(Event::ContactAbandoned {
            contact_id: contact_id.to_owned(),
            reason: reason.to_owned(),
        });
        self.record_history(contact_id);
    }

    pub(super) fn transfer_contact(
        &mut self,
        contact_id: &str,
        queue_id: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let (contact, target) = self.check_transfer(contact_id, queue_id)?;
        let boost = match self.data.customers.get(&contact.customer_id) {
            Some(c) => target.tier_boost(c.input.tier),
            None => 0,
        };
        // Checks done.
        let now = self.data.clock_ms;
        let new_id = self.next_contact_id();
        let Some(ended) = self.end_for_transfer(contact_id, queue_id, &new_id, now, ev) else {
            return Ok(());
        };
        let agent_id = ended.agent_id.clone();
        self.release_transferred(&agent_id, contact_id, ended.connected_ms, now);
        self.data
            .counters
            .entry(ended.queue_id.clone())
            .or_default()
            .transferred_out += 1;
        self.data
            .counters
            .entry(queue_id.to_owned())
            .or_default()
            .entered += 1;
        let new = Self::transferred_contact(ended, contact_id, &new_id, queue_id, boost, now);
        ev.push(Event::ContactTransferred {
            contact_id: contact_id.to_owned(),
            agent_id,
            new_contact_id: new_id.clone(),
            queue_id: queue_id.to_owned(),
        });
        ev.push(Event::ContactCreated {
            contact_id: new_id.clone(),
            channel: new.channel,
            queue_id: queue_id.to_owned(),
            state: new.state,
            priority: new.priority,
            enqueued_ms: new.enqueued_ms,
        });
        self.data.contacts.insert(new_id.clone(), new);
        self.record_history(contact_id);
        self.reschedule(&new_id);
        Ok(())
    }

    /// Every check `TransferContact` makes, before anything changes; the contact and queue.
    fn check_transfer(
        &self,
        contact_id: &str,
        queue_id: &str,
    ) -> Result<(&Contact, &QueueInput), DomainError> {
        let contact = self.find_contact(contact_id)?;
        let target = self.find_queue(queue_id)?;
        let movable = contact.state.is_waiting()
            || matches!(
                contact.state,
                ContactState::Offered | ContactState::Connected
            );
        if !movable {
            return Err(DomainError::precondition(
                "contact_id",
                format!(
                    "contact {} is {} and cannot be transferred",
                    contact.id,
                    contact.state.name()
                ),
            ));
        }
        if contact.queue_id == queue_id {
            return Err(DomainError::precondition(
                "queue_id",
                format!("contact {} is already in queue {queue_id}", contact.id),
            ));
        }
        if !target.takes(contact.channel) {
            return Err(DomainError::precondition(
                "queue_id",
                format!("queue {queue_id} does not take {}", contact.channel),
            ));
        }
        Ok((contact, target))
    }

    /// Ends the contact as transferred to `new_id`; a copy as it ended, to start the new one.
    fn end_for_transfer(
        &mut self,
        contact_id: &str,
        queue_id: &str,
        new_id: &str,
        now: i64,
        ev: &mut Vec<Event>,
    ) -> Option<Contact> {
        self.withdraw_all(contact_id, WithdrawReason::ContactEnded, ev);
        self.idx.unplace(contact_id);
        let old = self.contact_mut(contact_id)?;
        old.offer = None;
        old.transferred_to = new_id.to_owned();
        old.ended_ms = Some(now);
        old.enter(now, ContactState::Transferred, queue_id);
        Some(old.clone())
    }

    /// Frees the agent (if any) who held a transferred contact, counting its talk time.
    fn release_transferred(
        &mut self,
        agent_id: &str,
        contact_id: &str,
        connected: Option<i64>,
        now: i64,
    ) {
        if agent_id.is_empty() {
            return;
        }
        if let Some(agent) = self.agent_mut(agent_id) {
            let talk = now.saturating_sub(connected.unwrap_or(now)).max(0);
            agent.talk_time_ms = agent.talk_time_ms.saturating_add(talk);
            agent.idle_since_ms = now;
        }
        self.release(agent_id, contact_id);
    }

    /// The contact a transfer starts in `queue_id`: the ended one's caller, in a new place.
    fn transferred_contact(
        ended: Contact,
        contact_id: &str,
        new_id: &str,
        queue_id: &str,
        boost: i64,
        now: i64,
    ) -> Contact {
        let mut new = ended;
        new.id = new_id.to_owned();
        new.request_id = None;
        new.queue_id = queue_id.to_owned();
        new.priority = new.base_priority.saturating_add(boost);
        new.queue_entered_ms = now;
        new.step = 0;
        new.agent_id = String::new();
        new.passed_by = String::new();
        new.connected_ms = None;
        new.ended_ms = None;
        new.transferred_from = contact_id.to_owned();
        new.decision = None;
        new.transferred_to = String::new();
        new.timeline = Vec::new();
        let state = if new.channel == Channel::Callback {
            ContactState::CallbackScheduled
        } else {
            ContactState::Queued
        };
        new.enter(now, state, format!("transferred from {contact_id}"));
        new
    }
}
