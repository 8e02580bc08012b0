//! Queue statistics, kept incrementally as contacts move, and customer history.

use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::contact::ContactState;

/// Running totals for one queue since it was created. Rates and averages are derived
/// from them when asked ([`QueueCounters::service_level`] and friends).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    /// Contacts that came into the queue: created there, transferred or overflowed in, or imported.
    pub entered: u64,
    /// Contacts an agent accepted.
    pub answered: u64,
    /// Contacts accepted within the queue's `service_level_ms`: the service level's numerator.
    pub answered_in_target: u64,
    /// Contacts that ended without an agent.
    pub abandoned: u64,
    /// Abandons within `service_level_ms` of waiting (short abandons), which some service-level
    /// formulas leave out.
    pub abandoned_in_target: u64,
    /// Sum of waiting time of answered contacts (for ASA).
    pub answered_wait_ms: i64,
    /// Contacts completed (for AHT).
    pub handled: u64,
    /// Sum of talk plus wrap-up time of handled contacts (for AHT).
    pub handle_ms: i64,
    /// Offers made; a `RING_ALL` offer to several agents counts once.
    pub offers: u64,
    /// Offers to a single agent that expired unanswered.
    pub missed_offers: u64,
    /// Voice callers turned into callbacks (queue full or `max_wait_ms` reached).
    pub callbacks: u64,
    /// Contacts transferred out to another queue.
    pub transferred_out: u64,
    /// Contacts an escalation step moved to another queue.
    pub overflowed_out: u64,
    /// Contacts answered by self-service, without an agent.
    pub self_served: u64,
}

impl QueueCounters {
    /// Adds every counter of `other` to this one.
    pub fn add(&mut self, other: &QueueCounters) {
        self.entered += other.entered;
        self.answered += other.answered;
        self.answered_in_target += other.answered_in_target;
        self.abandoned += other.abandoned;
        self.abandoned_in_target += other.abandoned_in_target;
        self.answered_wait_ms += other.answered_wait_ms;
        self.handled += other.handled;
        self.handle_ms += other.handle_ms;
        self.offers += other.offers;
        self.missed_offers += other.missed_offers;
        self.callbacks += other.callbacks;
        self.transferred_out += other.transferred_out;
        self.overflowed_out += other.overflowed_out;
        self.self_served += other.self_served;
    }

    /// Answered within target, over answered. `None` before the first answer.
    pub fn service_level(&self) -> Option<f64> {
        ratio(self.answered_in_target, self.answered)
    }

    /// Answered within target, over answered plus abandoned: abandons count against it.
    pub fn service_level_with_abandons(&self) -> Option<f64> {
        ratio(self.answered_in_target, self.answered + self.abandoned)
    }

    /// Average speed of answer.
    pub fn asa_ms(&self) -> Option<i64> {
        (self.answered > 0).then(|| self.answered_wait_ms / self.answered as i64)
    }

    /// Average handle time.
    pub fn aht_ms(&self) -> Option<i64> {
        (self.handled > 0).then(|| self.handle_ms / self.handled as i64)
    }

    /// Abandoned over answered plus abandoned. `None` before the first of either.
    pub fn abandonment_rate(&self) -> Option<f64> {
        ratio(self.abandoned, self.answered + self.abandoned)
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A snapshot of a queue for supervisors: the counters plus what is true right now.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    /// The queue described.
    pub queue_id: String,
    /// Its running totals.
    pub counters: QueueCounters,
    /// Contacts waiting in it now (queued or awaiting a callback).
    pub waiting: u64,
    /// How long its oldest waiting contact has waited, in ms; 0 when none waits.
    pub longest_wait_ms: i64,
    /// Agents qualified for the queue, by state name (`AVAILABLE`, `BREAK`, ...).
    pub agents_by_state: Vec<(String, u64)>,
}

/// One finished contact in a customer's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The finished contact.
    pub contact_id: String,
    /// How it reached the center.
    pub channel: Channel,
    /// The queue it finished in.
    pub queue_id: String,
    /// How it ended: completed, abandoned, transferred or self-served.
    pub state: ContactState,
    /// The agent who handled it, or empty.
    pub agent_id: String,
    /// The outcome code it was completed with, or empty.
    pub disposition: String,
    /// The agent's notes, so the next agent sees what was done.
    pub notes: String,
    /// When it ended, ms since the Unix epoch.
    pub ended_ms: i64,
}

impl HistoryEntry {
    /// The entry of a finished contact, ended at `ended_ms`.
    pub fn of(contact: &crate::contact::Contact, ended_ms: i64) -> Self {
        Self {
            contact_id: contact.id.clone(),
            channel: contact.channel,
            queue_id: contact.queue_id.clone(),
            state: contact.state,
            agent_id: contact.agent_id.clone(),
            disposition: contact.disposition.clone(),
            notes: contact.notes.clone(),
            ended_ms,
        }
    }
}

/// How many finished contacts a customer's history keeps.
pub const HISTORY_LEN: usize = 50;
