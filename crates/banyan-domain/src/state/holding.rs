//! Bookkeeping shared by the life cycle, routing and timers: which agent holds which
//! contact, offers taken back, contacts put back in their place, timers and history.

use super::State;
use crate::agent::AgentState;
use crate::channel::Channel;
use crate::contact::{Contact, ContactState};
use crate::event::{Event, WithdrawReason};
use crate::routing::TimerKind;
use crate::stats::{HistoryEntry, HISTORY_LEN};

impl State {
    /// A contact a command's checks found, to change it. `None` only when the state is
    /// inconsistent (an offer, a hold or a timer names a contact that is gone): the caller
    /// skips that step, and the inconsistency is counted for the node to report. Nothing
    /// reachable from `apply` may panic: every replica would panic at the same entry, and
    /// again on every replay.
    pub(super) fn contact_mut(&mut self, id: &str) -> Option<&mut Contact> {
        if !self.data.contacts.contains_key(id) {
            self.idx.inconsistent(format!("contact {id} is gone"));
            return None;
        }
        self.data.contacts.get_mut(id)
    }

    /// An agent a command's checks found, to change it; see [`contact_mut`](Self::contact_mut).
    pub(super) fn agent_mut(&mut self, id: &str) -> Option<&mut crate::agent::Agent> {
        if !self.data.agents.contains_key(id) {
            self.idx.inconsistent(format!("agent {id} is gone"));
            return None;
        }
        self.data.agents.get_mut(id)
    }

    /// Reports a change of the agent's shown state since `before` (wrap-up starts and ends
    /// without a presence change), and notes when it happened.
    pub(super) fn agent_state_changed(
        &mut self,
        agent_id: &str,
        before: &AgentState,
        ev: &mut Vec<Event>,
    ) {
        let now = self.data.clock_ms;
        let Some(agent) = self.data.agents.get_mut(agent_id) else {
            return;
        };
        let after = agent.state();
        if after != *before {
            agent.state_since_ms = now;
            ev.push(Event::AgentStateChanged {
                agent_id: agent_id.to_owned(),
                state: after,
            });
        }
    }

    /// Re-files an agent in the routing pools after its load, state or keys changed.
    pub(super) fn repool(&mut self, agent_id: &str) {
        if let Some(agent) = self.data.agents.get(agent_id) {
            self.idx.repool(agent, &self.data.queues);
        }
    }

    /// The agent takes on a contact (an offer).
    pub(super) fn hold(&mut self, agent_id: &str, contact_id: &str, channel: Channel) {
        let Some(agent) = self.agent_mut(agent_id) else {
            return;
        };
        if agent.held.insert(contact_id.to_owned(), channel).is_none() {
            let load = agent.load.get_mut(channel);
            *load = load.saturating_add(1);
        }
        self.repool(agent_id);
    }

    /// The agent no longer holds the contact.
    pub(super) fn release(&mut self, agent_id: &str, contact_id: &str) {
        let Some(agent) = self.data.agents.get_mut(agent_id) else {
            return;
        };
        if let Some(channel) = agent.held.remove(contact_id) {
            let load = agent.load.get_mut(channel);
            *load = load.saturating_sub(1);
        }
        self.repool(agent_id);
    }

    /// Takes one agent's offer of a contact back.
    pub(super) fn withdraw(
        &mut self,
        contact_id: &str,
        agent_id: &str,
        reason: WithdrawReason,
        ev: &mut Vec<Event>,
    ) {
        if let Some(offer) = self.contact_mut(contact_id).and_then(|c| c.offer.as_mut()) {
            offer.agents.retain(|a| a != agent_id);
        }
        self.release(agent_id, contact_id);
        ev.push(Event::OfferWithdrawn {
            contact_id: contact_id.to_owned(),
            agent_id: agent_id.to_owned(),
            reason,
        });
    }

    pub(super) fn withdraw_all(
        &mut self,
        contact_id: &str,
        reason: WithdrawReason,
        ev: &mut Vec<Event>,
    ) {
        let agents: Vec<String> = self
            .data
            .contacts
            .get(contact_id)
            .and_then(|c| c.offer.as_ref())
            .map(|o| o.agents.clone())
            .unwrap_or_default();
        for agent in agents {
            self.withdraw(contact_id, &agent, reason, ev);
        }
    }

    /// Puts an offered contact whose last offer was withdrawn back at its original place.
    /// `passed_by` is not offered it again right away.
    pub(super) fn requeue_if_unoffered(
        &mut self,
        contact_id: &str,
        passed_by: &str,
        ev: &mut Vec<Event>,
    ) {
        let now = self.data.clock_ms;
        let Some(contact) = self.contact_mut(contact_id) else {
            return;
        };
        if contact.state != ContactState::Offered
            || contact.offer.as_ref().is_some_and(|o| !o.agents.is_empty())
        {
            return;
        }
        contact.offer = None;
        contact.passed_by = passed_by.to_owned();
        let state = if contact.channel == Channel::Callback {
            ContactState::CallbackScheduled
        } else {
            ContactState::Queued
        };
        contact.enter(now, state, "requeued");
        if !passed_by.is_empty() {
            self.idx.passed.push(contact_id.to_owned());
        }
        ev.push(Event::ContactRequeued {
            contact_id: contact_id.to_owned(),
            state,
            passed_by: passed_by.to_owned(),
        });
        self.reschedule(contact_id);
    }

    /// Files a contact in the indexes its state calls for: its lane while waiting, and the
    /// timer that moves it on next.
    pub(super) fn reschedule(&mut self, contact_id: &str) {
        // A queue may have lost escalation steps since the contact reached its step: it
        // waits at the last step there is, where agents qualify.
        if let Some(contact) = self.data.contacts.get_mut(contact_id) {
            if let Some(queue) = self.data.queues.get(&contact.queue_id) {
                if contact.state.is_waiting() {
                    contact.step = contact.step.min(queue.escalation.len() as u32);
                }
            }
        }
        let Some(contact) = self.data.contacts.get(contact_id) else {
            return;
        };
        let queue = self.data.queues.get(&contact.queue_id);
        match (contact.state, queue) {
            (state, Some(queue)) if state.is_waiting() => {
                self.idx.unplace(contact_id);
                self.idx.place(queue, contact);
                if let Some(step) = queue.escalation.get(contact.step as usize) {
                    let at = contact.queue_entered_ms.saturating_add(step.after_ms);
                    self.idx.schedule(at, TimerKind::Escalation, contact_id);
                }
                if state == ContactState::Queued && queue.max_wait_ms > 0 {
                    let at = contact.enqueued_ms.saturating_add(queue.max_wait_ms);
                    self.idx.schedule(at, TimerKind::MaxWait, contact_id);
                }
            }
            (ContactState::Offered, _) => {
                if let Some(offer) = &contact.offer {
                    self.idx
                        .schedule(offer.expires_ms, TimerKind::OfferExpiry, contact_id);
                }
            }
            (ContactState::WrapUp, _) => {
                if let Some(at) = contact.wrap_until_ms {
                    self.idx.schedule(at, TimerKind::WrapUpEnd, contact_id);
                }
            }
            _ => {}
        }
    }

    /// Notes a contact that just reached its final state: in the customer's history, in
    /// the retention index, and among what this command finished (for the history store).
    pub(super) fn record_history(&mut self, contact_id: &str) {
        let Some(contact) = self.data.contacts.get(contact_id) else {
            return;
        };
        if let Some(at) = contact.finished_ms() {
            self.idx.finished.insert((at, contact.id.clone()));
            self.idx.finished_now.push(contact.id.clone());
        }
        if contact.customer_id.is_empty() {
            return;
        }
        let entry = HistoryEntry::of(contact, contact.ended_ms.unwrap_or(self.data.clock_ms));
        let history = self
            .data
            .history
            .entry(contact.customer_id.clone())
            .or_default();
        history.push_back(entry);
        while history.len() > HISTORY_LEN {
            history.pop_front();
        }
    }
}
