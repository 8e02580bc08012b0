//! The routing indexes: derived data that makes one routing decision cost the same with a
//! thousand waiting contacts or a million.
//!
//! ```text
//!   waiting contacts ──> lanes: (queue, channel, step, site?) → ordered set of WaitKey
//!   ready agents     ──> pools: (queue, step, channel, site)  → ordered set of AgentKey
//! ```
//!
//! Contacts in one lane are eligible for exactly the same agents (same queue, channel,
//! escalation step and site restriction), so only a lane's head can be the next one
//! routed from it: if the head has no agent, nobody behind it has one either. An agent sits
//! in a pool while it has room on that channel and its skills meet the queue's
//! requirements at that step; the pool is ordered by the queue's strategy, so the best
//! agent is its first entry. A routing decision therefore looks at one head per non-empty
//! lane and one entry per pool, never at the waiting contacts behind them.
//!
//! Waiting order with aging stays static: a contact's effective priority is
//! `priority + aging × (now − enqueued)`, and since every contact of a queue ages at the
//! same rate, ordering by `priority − aging × enqueued` gives the same order at any `now`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::agent::Agent;
use crate::channel::Channel;
use crate::contact::Contact;
use crate::queue::QueueInput;
use crate::queue::Strategy;

/// Priority points are scaled by this so aging per minute stays an integer per millisecond.
pub(crate) const PRIORITY_SCALE: i64 = 60_000;

/// Contacts that share eligibility.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Lane {
    pub queue: String,
    pub channel: Channel,
    pub step: u32,
    /// `Some(site)` while the contact may only go to agents of its own site.
    pub site: Option<String>,
}

/// A contact's place in its lane: higher rank first, then older, then lower id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WaitKey {
    /// Minus the static rank, so the best contact sorts first.
    pub neg_rank: i64,
    pub enqueued_ms: i64,
    pub contact_id: String,
}

/// Agents that share eligibility for a (queue, step) on one channel at one site.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pool {
    pub queue: String,
    pub step: u32,
    pub channel: Channel,
    pub site: String,
}

/// An agent's place in a pool: lowest score first, ties by a second score, then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AgentKey {
    pub score: i64,
    pub tie: i64,
    pub agent_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    OfferExpiry,
    WrapUpEnd,
    Escalation,
    MaxWait,
}

/// The static rank of a contact in its queue (see the module docs). Saturating: validated
/// priorities and times stay far from the ends of `i64`, and nothing in `apply` may
/// overflow even when they do not.
pub(crate) fn static_rank(queue: &QueueInput, contact: &Contact) -> i64 {
    contact
        .priority
        .saturating_mul(PRIORITY_SCALE)
        .saturating_sub(queue.aging_per_minute.saturating_mul(contact.enqueued_ms))
}

/// The effective priority at `now`, in scaled points: comparable across queues.
pub(crate) fn effective_rank(queue: &QueueInput, contact: &Contact, now_ms: i64) -> i64 {
    static_rank(queue, contact).saturating_add(queue.aging_per_minute.saturating_mul(now_ms))
}

pub(crate) fn lane_of(queue: &QueueInput, contact: &Contact) -> Lane {
    let restricted =
        !contact.origin_site.is_empty() && !queue.other_sites_at(contact.step as usize);
    Lane {
        queue: contact.queue_id.clone(),
        channel: contact.channel,
        step: contact.step,
        site: restricted.then(|| contact.origin_site.clone()),
    }
}

pub(crate) fn wait_key(queue: &QueueInput, contact: &Contact) -> WaitKey {
    WaitKey {
        neg_rank: -static_rank(queue, contact),
        enqueued_ms: contact.enqueued_ms,
        contact_id: contact.id.clone(),
    }
}

/// The agent's place under `queue`'s strategy.
pub(crate) fn agent_key(queue: &QueueInput, agent: &Agent) -> AgentKey {
    let (score, tie) = match queue.strategy {
        Strategy::LongestIdle | Strategy::RingAll => (agent.idle_since_ms, 0),
        Strategy::RoundRobin => (agent.last_offer_seq as i64, 0),
        Strategy::FewestContacts => (i64::from(agent.load.total()), agent.idle_since_ms),
        Strategy::LeastTalkTime => (agent.talk_time_ms, agent.idle_since_ms),
        Strategy::SkillWeighted => {
            let total: i64 = queue
                .required_skills
                .keys()
                .filter_map(|skill| agent.input.skills.get(skill))
                .map(|level| i64::from(*level))
                .sum();
            (-total, agent.idle_since_ms)
        }
    };
    AgentKey {
        score,
        tie,
        agent_id: agent.input.id.clone(),
    }
}

/// The derived indexes of the state. Rebuilt from the source of truth on load, never
/// serialized. Ordered maps throughout, so iteration order never depends on hashing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Indexes {
    pub lanes: BTreeMap<Lane, BTreeSet<WaitKey>>,
    /// Where each waiting contact sits.
    pub placed: BTreeMap<String, (Lane, WaitKey)>,
    /// Waiting contacts per queue by enqueue time: counts and longest wait.
    pub waiting: BTreeMap<String, BTreeSet<(i64, String)>>,
    pub pools: BTreeMap<Pool, BTreeSet<AgentKey>>,
    /// Where each agent sits, to take it out again.
    pub agent_pools: BTreeMap<String, Vec<(Pool, AgentKey)>>,
    /// Agent → the (queue, step) pairs its skills qualify it for.
    pub qualified: BTreeMap<String, Vec<(String, u32)>>,
    /// Due times. Entries are checked against the contact when they fire, so a stale one
    /// (the contact moved on) is simply dropped.
    pub timers: BTreeSet<(i64, TimerKind, String)>,
    /// Contacts passed over by an agent during the current command (see `State::route`);
    /// always empty between commands.
    pub passed: Vec<String>,
    /// Finished contacts still in the state, by (when they finished, id): retention takes
    /// them out oldest first. Checked against the contact when used, like the timers.
    pub finished: BTreeSet<(i64, String)>,
    /// Contacts the command being applied finished (see `State::finished_by_last_command`);
    /// emptied when the next command starts.
    pub finished_now: Vec<String>,
    /// Normalized phone → ids of customers with that phone.
    pub by_phone: BTreeMap<String, BTreeSet<String>>,
    /// Normalized email → ids of customers with that email.
    pub by_email: BTreeMap<String, BTreeSet<String>>,
    /// Inconsistencies of the state met while applying since it was loaded (see
    /// `State::contact_mut`), and the last one.
    pub inconsistencies: u64,
    pub last_inconsistency: Option<String>,
}

impl Indexes {
    pub fn inconsistent(&mut self, what: String) {
        self.inconsistencies += 1;
        self.last_inconsistency = Some(what);
    }

    pub fn place(&mut self, queue: &QueueInput, contact: &Contact) {
        let lane = lane_of(queue, contact);
        let key = wait_key(queue, contact);
        self.lanes
            .entry(lane.clone())
            .or_default()
            .insert(key.clone());
        self.waiting
            .entry(contact.queue_id.clone())
            .or_default()
            .insert((contact.enqueued_ms, contact.id.clone()));
        self.placed.insert(contact.id.clone(), (lane, key));
    }

    /// Takes a contact out of the waiting order (it was offered or ended).
    pub fn unplace(&mut self, contact_id: &str) {
        let Some((lane, key)) = self.placed.remove(contact_id) else {
            return;
        };
        if let Some(set) = self.lanes.get_mut(&lane) {
            set.remove(&key);
            if set.is_empty() {
                self.lanes.remove(&lane);
            }
        }
        if let Some(set) = self.waiting.get_mut(&lane.queue) {
            set.remove(&(key.enqueued_ms, key.contact_id));
            if set.is_empty() {
                self.waiting.remove(&lane.queue);
            }
        }
    }

    pub fn qualify(&mut self, agent: &Agent, queues: &BTreeMap<String, QueueInput>) {
        let mut pairs = Vec::new();
        for (id, queue) in queues {
            for step in 0..=queue.escalation.len() {
                if agent.meets(&queue.requirements_at(step)) {
                    pairs.push((id.clone(), step as u32));
                }
            }
        }
        self.qualified.insert(agent.input.id.clone(), pairs);
    }

    /// Puts the agent into every pool it belongs to now, under fresh strategy keys.
    pub fn repool(&mut self, agent: &Agent, queues: &BTreeMap<String, QueueInput>) {
        self.unpool(&agent.input.id);
        let channels: Vec<Channel> = Channel::ALL
            .into_iter()
            .filter(|c| agent.has_room(*c))
            .collect();
        if channels.is_empty() {
            return;
        }
        let Some(pairs) = self.qualified.get(&agent.input.id) else {
            return;
        };
        let mut entries = Vec::with_capacity(pairs.len() * channels.len());
        for (queue_id, step) in pairs {
            let Some(queue) = queues.get(queue_id) else {
                continue;
            };
            let key = agent_key(queue, agent);
            for channel in &channels {
                let pool = Pool {
                    queue: queue_id.clone(),
                    step: *step,
                    channel: *channel,
                    site: agent.input.site.clone(),
                };
                entries.push((pool, key.clone()));
            }
        }
        for (pool, key) in &entries {
            self.pools
                .entry(pool.clone())
                .or_default()
                .insert(key.clone());
        }
        self.agent_pools.insert(agent.input.id.clone(), entries);
    }

    pub fn unpool(&mut self, agent_id: &str) {
        for (pool, key) in self.agent_pools.remove(agent_id).unwrap_or_default() {
            if let Some(set) = self.pools.get_mut(&pool) {
                set.remove(&key);
                if set.is_empty() {
                    self.pools.remove(&pool);
                }
            }
        }
    }

    /// The pools that can serve `lane`: its own site's, or every site's.
    pub fn pools_for<'a>(
        &'a self,
        lane: &'a Lane,
    ) -> impl Iterator<Item = (&'a Pool, &'a BTreeSet<AgentKey>)> + 'a {
        let start = Pool {
            queue: lane.queue.clone(),
            step: lane.step,
            channel: lane.channel,
            site: lane.site.clone().unwrap_or_default(),
        };
        self.pools
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(move |(pool, _)| {
                pool.queue == lane.queue
                    && pool.step == lane.step
                    && pool.channel == lane.channel
                    && lane.site.as_ref().is_none_or(|site| *site == pool.site)
            })
    }

    pub fn schedule(&mut self, at_ms: i64, kind: TimerKind, contact_id: &str) {
        self.timers.insert((at_ms, kind, contact_id.to_owned()));
    }

    /// Removes and returns the earliest timer due at `now_ms`, if any.
    pub fn pop_due(&mut self, now_ms: i64) -> Option<(i64, TimerKind, String)> {
        if self.timers.first()?.0 > now_ms {
            return None;
        }
        self.timers.pop_first()
    }
}
