//! The routing decision: which waiting contact goes to which agent, and why.
//!
//! After every command, routing runs to a fixpoint: among the heads of all non-empty
//! lanes that have an eligible agent, the highest-ranked contact (effective priority, then
//! enqueue time, then id) is offered to the best agent of its queue's strategy; repeat
//! until no lane head has one. Because only the globally best routable head is offered,
//! no agent is ever offered a contact while a higher-ranked one it could take waits.

use super::State;
use crate::contact::{ContactState, Decision, Offer};
use crate::event::Event;
use crate::queue::{Strategy, RING_ALL_MAX};
use crate::routing::{effective_rank, AgentKey, Lane, TimerKind, PRIORITY_SCALE};

/// The contact chosen next and the agents it goes to.
struct Choice {
    contact_id: String,
    rank: (i64, i64),
    agents: Vec<AgentKey>,
    lane: Lane,
}

impl State {
    pub(super) fn route(&mut self, ev: &mut Vec<Event>) {
        while let Some(choice) = self.next_choice() {
            self.offer(choice, ev);
        }
        // An agent that just missed or rejected a contact is passed over only while someone
        // else can take it: once this command's routing settles, the exclusion ends, so a
        // contact whose only eligible agent passed it is not stranded.
        let passed = std::mem::take(&mut self.idx.passed);
        let mut cleared = false;
        for id in passed {
            if let Some(contact) = self.data.contacts.get_mut(&id) {
                cleared |= !contact.passed_by.is_empty();
                contact.passed_by.clear();
            }
        }
        if cleared {
            while let Some(choice) = self.next_choice() {
                self.offer(choice, ev);
            }
        }
    }

    /// One routing decision: the best routable lane head, or `None` at the fixpoint.
    fn next_choice(&self) -> Option<Choice> {
        let now = self.data.clock_ms;
        let mut best: Option<Choice> = None;
        for (lane, waiting) in &self.idx.lanes {
            let Some(queue) = self.data.queues.get(&lane.queue) else {
                continue;
            };
            for key in waiting {
                let Some(contact) = self.data.contacts.get(&key.contact_id) else {
                    continue;
                };
                let (agents, passed_over) =
                    self.candidates(lane, queue.strategy, &contact.passed_by);
                if agents.is_empty() {
                    // Only a contact that passed over its one agent can be behind a
                    // blocked head and still be routable.
                    if passed_over {
                        continue;
                    }
                    break;
                }
                // Higher effective priority first, then older, then lower id.
                let rank = (
                    effective_rank(queue, contact, now).saturating_neg(),
                    contact.enqueued_ms,
                );
                let better = best
                    .as_ref()
                    .is_none_or(|b| (rank, &contact.id) < (b.rank, &b.contact_id));
                if better {
                    best = Some(Choice {
                        contact_id: contact.id.clone(),
                        rank,
                        agents,
                        lane: lane.clone(),
                    });
                }
                break;
            }
        }
        best
    }

    /// The best eligible agents for a lane under `strategy` (several for `RING_ALL`), and
    /// whether an agent was skipped because it just passed over the contact.
    fn candidates(
        &self,
        lane: &Lane,
        strategy: Strategy,
        passed_by: &str,
    ) -> (Vec<AgentKey>, bool) {
        let now = self.data.clock_ms;
        let want = if strategy == Strategy::RingAll {
            RING_ALL_MAX
        } else {
            1
        };
        let mut found: Vec<AgentKey> = Vec::new();
        let mut passed_over = false;
        for (pool, agents) in self.idx.pools_for(lane) {
            if self
                .data
                .sites
                .get(&pool.site)
                .is_some_and(|s| !s.routable(now))
            {
                continue;
            }
            let mut taken = 0;
            for key in agents {
                if key.agent_id == passed_by {
                    passed_over = true;
                    continue;
                }
                found.push(key.clone());
                taken += 1;
                if taken == want {
                    break;
                }
            }
        }
        found.sort();
        found.truncate(want);
        (found, passed_over)
    }

    fn offer(&mut self, choice: Choice, ev: &mut Vec<Event>) {
        let now = self.data.clock_ms;
        let contact_id = choice.contact_id;
        self.idx.unplace(&contact_id);
        let Some(contact) = self.data.contacts.get(&contact_id) else {
            self.idx
                .inconsistent(format!("lane head {contact_id} is gone"));
            return;
        };
        let Some(queue) = self.data.queues.get(&contact.queue_id) else {
            self.idx.inconsistent(format!(
                "queue {} of {contact_id} is gone",
                contact.queue_id
            ));
            return;
        };
        let channel = contact.channel;
        let decision = Decision {
            queue_id: queue.id.clone(),
            strategy: queue.strategy,
            step: choice.lane.step,
            score: choice.agents.first().map_or(0, |a| a.score),
            priority: choice.rank.0.saturating_neg() / PRIORITY_SCALE,
        };
        let expires_ms = now.saturating_add(queue.offer_timeout_ms);
        let agent_ids: Vec<String> = choice.agents.into_iter().map(|a| a.agent_id).collect();
        for agent_id in &agent_ids {
            self.data.offer_seq += 1;
            let seq = self.data.offer_seq;
            if let Some(agent) = self.agent_mut(agent_id) {
                agent.last_offer_seq = seq;
            }
            self.hold(agent_id, &contact_id, channel);
        }
        self.data
            .counters
            .entry(decision.queue_id.clone())
            .or_default()
            .offers += 1;
        let Some(contact) = self.contact_mut(&contact_id) else {
            return;
        };
        contact.decision = Some(decision.clone());
        contact.offer = Some(Offer {
            agents: agent_ids.clone(),
            offered_ms: now,
            expires_ms,
            decision: decision.clone(),
        });
        contact.enter(now, ContactState::Offered, agent_ids.join(","));
        self.idx
            .schedule(expires_ms, TimerKind::OfferExpiry, &contact_id);
        ev.push(Event::ContactOffered {
            contact_id,
            channel,
            agent_ids,
            expires_ms,
            decision,
        });
    }
}
