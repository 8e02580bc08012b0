//! Timers. The state machine never reads a clock: the leader proposes a `Tick` stamped
//! with its time once something is due ([`State::next_due_ms`]), and every replica fires
//! the same timers at the same log position.

use super::State;
use crate::agent::Presence;
use crate::channel::Channel;
use crate::contact::ContactState;
use crate::event::{Event, WithdrawReason};
use crate::queue::{EscalationAction, WhenFull};
use crate::routing::TimerKind;

/// The break reason for an agent who let too many offers expire.
pub const MISSED_OFFERS_REASON: &str = "missed offers";

impl State {
    pub(super) fn tick(&mut self, ev: &mut Vec<Event>) {
        let now = self.data.clock_ms;
        self.lapse_leases(now, ev);
        // One timer at a time, earliest first, until none is due: a timer that firing
        // another one schedules in the past (an escalation of a contact whose offer just
        // expired) fires in this same tick. Collecting the due timers up front would fire it
        // only if a stale entry for it happened to be left in the set, and stale entries are
        // not part of a snapshot: a replica restored from one would then diverge.
        while let Some((at, kind, contact_id)) = self.idx.pop_due(now) {
            match kind {
                TimerKind::OfferExpiry => self.expire_offer(at, &contact_id, ev),
                TimerKind::WrapUpEnd => self.end_wrap_up(at, &contact_id, ev),
                TimerKind::Escalation => self.escalate(at, &contact_id, ev),
                TimerKind::MaxWait => self.max_wait(at, &contact_id, ev),
            }
        }
    }

    /// A lapsed site's agents may be routed by their branch now: the core takes back its
    /// offers to them. Contacts already connected stay connected.
    fn lapse_leases(&mut self, now: i64, ev: &mut Vec<Event>) {
        let lapsed: Vec<String> = self
            .data
            .sites
            .values()
            .filter(|s| !s.lapsed && s.lease_expires_ms.is_some_and(|end| end <= now))
            .map(|s| s.input.id.clone())
            .collect();
        for site_id in lapsed {
            if let Some(site) = self.data.sites.get_mut(&site_id) {
                site.lapsed = true;
            }
            ev.push(Event::LeaseLapsed {
                site_id: site_id.clone(),
            });
            let agents: Vec<String> = self
                .data
                .agents
                .values()
                .filter(|a| a.input.site == site_id)
                .map(|a| a.input.id.clone())
                .collect();
            for agent_id in agents {
                self.withdraw_offers_of(&agent_id, WithdrawReason::LeaseLapsed, ev);
            }
        }
    }

    fn expire_offer(&mut self, at: i64, contact_id: &str, ev: &mut Vec<Event>) {
        let Some(contact) = self.data.contacts.get(contact_id) else {
            return;
        };
        let Some(offer) = contact
            .offer
            .as_ref()
            .filter(|o| contact.state == ContactState::Offered && o.expires_ms == at)
        else {
            return;
        };
        let agents = offer.agents.clone();
        let max_missed = self
            .data
            .queues
            .get(&contact.queue_id)
            .map_or(u32::MAX, |q| q.max_missed_offers);
        let queue_id = contact.queue_id.clone();
        for agent_id in &agents {
            self.withdraw(contact_id, agent_id, WithdrawReason::Expired, ev);
        }
        // A single offer that expired is the agent's miss; an unanswered ring-all is not.
        let mut passed_by = String::new();
        if let [agent_id] = agents.as_slice() {
            passed_by = agent_id.clone();
            self.data
                .counters
                .entry(queue_id)
                .or_default()
                .missed_offers += 1;
            let put_on_break = self.agent_mut(agent_id).is_some_and(|agent| {
                agent.missed_in_row += 1;
                agent.missed_total += 1;
                agent.missed_in_row >= max_missed && agent.presence == Presence::Available
            });
            if put_on_break {
                self.withdraw_offers_of(agent_id, WithdrawReason::AgentUnavailable, ev);
                let reason = MISSED_OFFERS_REASON.to_owned();
                self.change_presence(agent_id, Presence::Break { reason }, ev);
            }
        }
        self.requeue_if_unoffered(contact_id, &passed_by, ev);
    }

    fn end_wrap_up(&mut self, at: i64, contact_id: &str, ev: &mut Vec<Event>) {
        let due = self
            .data
            .contacts
            .get(contact_id)
            .is_some_and(|c| c.state == ContactState::WrapUp && c.wrap_until_ms == Some(at));
        if due {
            self.finish(contact_id, "", "", ev);
        }
    }

    fn escalate(&mut self, at: i64, contact_id: &str, ev: &mut Vec<Event>) {
        let now = self.data.clock_ms;
        let Some(contact) = self.data.contacts.get(contact_id) else {
            return;
        };
        let Some(queue) = self.data.queues.get(&contact.queue_id) else {
            return;
        };
        let Some(step) = queue.escalation.get(contact.step as usize) else {
            return;
        };
        if !contact.state.is_waiting()
            || contact.queue_entered_ms.saturating_add(step.after_ms) != at
        {
            return;
        }
        let action = step.action.clone();
        let from_queue = queue.id.clone();
        // A queue that does not take the contact's channel cannot receive it: the step is
        // recorded, and the contact stays where it is.
        let overflow_to = match &action {
            EscalationAction::Overflow { queue_id } => self
                .data
                .queues
                .get(queue_id)
                .filter(|target| target.takes(contact.channel))
                .cloned(),
            _ => None,
        };
        let tier = self
            .data
            .customers
            .get(&contact.customer_id)
            .map(|c| c.input.tier)
            .unwrap_or_default();
        let Some(contact) = self.contact_mut(contact_id) else {
            return;
        };
        contact.step += 1;
        let step_no = contact.step;
        ev.push(Event::ContactEscalated {
            contact_id: contact_id.to_owned(),
            queue_id: from_queue.clone(),
            step: step_no,
            action: action.describe(),
        });
        if let Some(target) = overflow_to {
            contact.queue_id = target.id.clone();
            contact.queue_entered_ms = now;
            contact.step = 0;
            contact.priority = contact
                .base_priority
                .saturating_add(target.tier_boost(tier));
            let state = contact.state;
            contact.enter(now, state, format!("overflow to {}", target.id));
            let counters = &mut self.data.counters;
            counters
                .entry(from_queue.clone())
                .or_default()
                .overflowed_out += 1;
            counters.entry(target.id.clone()).or_default().entered += 1;
            ev.push(Event::ContactOverflowed {
                contact_id: contact_id.to_owned(),
                from_queue,
                to_queue: target.id,
            });
        }
        self.reschedule(contact_id);
    }

    fn max_wait(&mut self, at: i64, contact_id: &str, ev: &mut Vec<Event>) {
        let now = self.data.clock_ms;
        let Some(contact) = self.data.contacts.get(contact_id) else {
            return;
        };
        let Some(queue) = self.data.queues.get(&contact.queue_id) else {
            return;
        };
        if contact.state != ContactState::Queued
            || queue.max_wait_ms == 0
            || contact.enqueued_ms.saturating_add(queue.max_wait_ms) != at
        {
            return;
        }
        if queue.when_full == WhenFull::Callback && contact.channel == Channel::Voice {
            let queue_id = queue.id.clone();
            self.data.counters.entry(queue_id).or_default().callbacks += 1;
            let Some(contact) = self.contact_mut(contact_id) else {
                return;
            };
            contact.channel = Channel::Callback;
            contact.enter(now, ContactState::CallbackScheduled, "max wait: callback");
            ev.push(Event::CallbackScheduled {
                contact_id: contact_id.to_owned(),
            });
            self.reschedule(contact_id);
        } else {
            self.abandon(contact_id, "max wait", ev);
        }
    }
}
