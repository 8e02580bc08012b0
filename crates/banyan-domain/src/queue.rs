//! Queues: what a contact waits in, who may take it, in which order, and what happens
//! when it waits too long.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{MAX_SKILLS, MAX_SKILL_LEVEL, MIN_SKILL_LEVEL};
use crate::channel::Channel;
use crate::customer::Tier;
use crate::error::DomainError;
use crate::validate::{validate_count, validate_id, validate_name, validate_range};

/// Most escalation steps one queue may have.
pub const MAX_STEPS: usize = 16;
/// Most disposition codes one queue may allow.
pub const MAX_DISPOSITIONS: usize = 64;
/// One day: longer timers in a contact center are configuration mistakes.
pub const MAX_TIMER_MS: i64 = 24 * 60 * 60 * 1000;
/// Highest base priority of a contact, and highest tier boost of a queue.
pub const MAX_PRIORITY: i64 = 1000;
/// Highest `max_length` a queue may set.
pub const MAX_QUEUE_LENGTH: u32 = 10_000_000;
/// How many agents a `RING_ALL` offer rings at most.
pub const RING_ALL_MAX: usize = 16;

/// How a queue picks among the agents eligible for its next contact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// The agent free for the longest time.
    #[default]
    LongestIdle,
    /// The agent whose last offer is oldest, so offers rotate.
    RoundRobin,
    /// The agent holding the fewest contacts.
    FewestContacts,
    /// The agent with the least talk time so far.
    LeastTalkTime,
    /// The agent with the highest total level in the queue's required skills.
    SkillWeighted,
    /// Every eligible agent (up to [`RING_ALL_MAX`]) at once; the first to accept wins.
    RingAll,
}

impl Strategy {
    /// The upper-case name the API and decisions show (`LONGEST_IDLE`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "LONGEST_IDLE",
            Strategy::RoundRobin => "ROUND_ROBIN",
            Strategy::FewestContacts => "FEWEST_CONTACTS",
            Strategy::LeastTalkTime => "LEAST_TALK_TIME",
            Strategy::SkillWeighted => "SKILL_WEIGHTED",
            Strategy::RingAll => "RING_ALL",
        }
    }
}

/// What an escalation step changes for a contact that has waited long enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscalationAction {
    /// Accept agents with a lower level in one skill.
    RelaxSkill {
        /// The required skill to relax.
        skill: String,
        /// The lower level now accepted.
        min_level: u8,
    },
    /// Stop requiring a skill.
    DropSkill {
        /// The required skill no longer required.
        skill: String,
    },
    /// Offer to agents at any site, not just the contact's own.
    AllowOtherSites,
    /// Move the contact into another queue, keeping its original enqueue time.
    Overflow {
        /// The queue the contact moves into, if that queue takes the contact's channel.
        queue_id: String,
    },
}

impl EscalationAction {
    /// The step in words, as `ContactEscalated` events show it.
    pub fn describe(&self) -> String {
        match self {
            EscalationAction::RelaxSkill { skill, min_level } => {
                format!("relax {skill} to {min_level}")
            }
            EscalationAction::DropSkill { skill } => format!("drop {skill}"),
            EscalationAction::AllowOtherSites => "allow other sites".into(),
            EscalationAction::Overflow { queue_id } => format!("overflow to {queue_id}"),
        }
    }
}

/// After `after_ms` in the queue, apply `action`. Steps are cumulative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationStep {
    /// How long after entering the queue the step applies, in ms; steps are in increasing order.
    pub after_ms: i64,
    /// What the step changes.
    pub action: EscalationAction,
}

/// What happens to a caller who waited `max_wait_ms`, or finds the queue full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WhenFull {
    /// The contact ends as `ABANDONED`.
    #[default]
    Abandon,
    /// Voice callers get a callback that keeps their place; other channels abandon.
    Callback,
}

/// The fields an administrator sets on a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInput {
    /// The queue's id, which contacts and escalation overflows name it by.
    pub id: String,
    /// The name supervisors see for the queue.
    pub name: String,
    /// Channels the queue takes; empty takes all.
    pub channels: Vec<Channel>,
    /// Skill name → lowest level an agent needs to take the queue's contacts; escalation can relax
    /// them.
    pub required_skills: BTreeMap<String, u8>,
    /// How the queue picks among eligible agents.
    pub strategy: Strategy,
    /// Priority points added for gold and platinum customers.
    pub gold_boost: i64,
    /// Priority points added for platinum customers.
    pub platinum_boost: i64,
    /// Priority points a waiting contact gains per minute of waiting.
    pub aging_per_minute: i64,
    /// Answer within this many milliseconds...
    pub service_level_ms: i64,
    /// ...for this percentage of contacts.
    pub service_level_goal_pct: u32,
    /// What happens to a contact as it keeps waiting, in order of time.
    pub escalation: Vec<EscalationStep>,
    /// Zero: no limit.
    pub max_wait_ms: i64,
    /// Zero: no limit.
    pub max_length: u32,
    /// What happens at `max_wait_ms` or when the queue is full.
    pub when_full: WhenFull,
    /// Wrap-up time: how long an agent has for after-contact work (notes, disposition) before the
    /// contact completes by itself, in ms; zero completes it at once.
    pub wrap_up_ms: i64,
    /// Codes an agent may close a contact with; empty allows any.
    pub dispositions: Vec<String>,
    /// How long an offer rings unanswered before it is withdrawn and counted as missed, in ms.
    pub offer_timeout_ms: i64,
    /// Missed offers in a row that put an agent on break.
    pub max_missed_offers: u32,
    /// Offer to agents at any site from the start.
    pub allow_other_sites: bool,
}

impl Default for QueueInput {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            channels: Vec::new(),
            required_skills: BTreeMap::new(),
            strategy: Strategy::LongestIdle,
            gold_boost: 10,
            platinum_boost: 20,
            aging_per_minute: 1,
            service_level_ms: 20_000,
            service_level_goal_pct: 80,
            escalation: Vec::new(),
            max_wait_ms: 0,
            max_length: 0,
            when_full: WhenFull::Abandon,
            wrap_up_ms: 10_000,
            dispositions: Vec::new(),
            offer_timeout_ms: 15_000,
            max_missed_offers: 3,
            allow_other_sites: false,
        }
    }
}

impl QueueInput {
    /// Checks every field against its limits, at the service edge and again inside `apply`, so a
    /// bad upsert changes nothing.
    pub fn validate(&self) -> Result<(), DomainError> {
        validate_id("queue.id", &self.id)?;
        validate_name("queue.name", &self.name)?;
        validate_count("queue.channels", self.channels.len(), Channel::ALL.len())?;
        validate_count(
            "queue.required_skills",
            self.required_skills.len(),
            MAX_SKILLS,
        )?;
        for (skill, level) in &self.required_skills {
            validate_id("queue.required_skills key", skill)?;
            validate_range(
                &format!("queue.required_skills[{skill}]"),
                i64::from(*level),
                i64::from(MIN_SKILL_LEVEL),
                i64::from(MAX_SKILL_LEVEL),
            )?;
        }
        validate_range("queue.gold_boost", self.gold_boost, 0, MAX_PRIORITY)?;
        validate_range("queue.platinum_boost", self.platinum_boost, 0, MAX_PRIORITY)?;
        validate_range("queue.aging_per_minute", self.aging_per_minute, 0, 100)?;
        validate_range(
            "queue.service_level_ms",
            self.service_level_ms,
            1,
            MAX_TIMER_MS,
        )?;
        validate_range(
            "queue.service_level_goal_pct",
            i64::from(self.service_level_goal_pct),
            1,
            100,
        )?;
        validate_count("queue.escalation", self.escalation.len(), MAX_STEPS)?;
        let mut previous = 0;
        for (i, step) in self.escalation.iter().enumerate() {
            let field = format!("queue.escalation[{i}]");
            validate_range(&format!("{field}.after_ms"), step.after_ms, 1, MAX_TIMER_MS)?;
            if step.after_ms < previous {
                return Err(DomainError::invalid(
                    format!("{field}.after_ms"),
                    "steps must be in increasing order of time",
                ));
            }
            previous = step.after_ms;
            match &step.action {
                EscalationAction::RelaxSkill { skill, min_level } => {
                    validate_id(&format!("{field}.skill"), skill)?;
                    validate_range(
                        &format!("{field}.min_level"),
                        i64::from(*min_level),
                        i64::from(MIN_SKILL_LEVEL),
                        i64::from(MAX_SKILL_LEVEL),
                    )?;
                }
                EscalationAction::DropSkill { skill } => {
                    validate_id(&format!("{field}.skill"), skill)?
                }
                EscalationAction::AllowOtherSites => {}
                EscalationAction::Overflow { queue_id } => {
                    validate_id(&format!("{field}.queue_id"), queue_id)?;
                    if *queue_id == self.id {
                        return Err(DomainError::invalid(
                            format!("{field}.queue_id"),
                            "a queue cannot overflow into itself",
                        ));
                    }
                }
            }
        }
        validate_range("queue.max_wait_ms", self.max_wait_ms, 0, MAX_TIMER_MS)?;
        validate_range(
            "queue.max_length",
            i64::from(self.max_length),
            0,
            i64::from(MAX_QUEUE_LENGTH),
        )?;
        validate_range("queue.wrap_up_ms", self.wrap_up_ms, 0, MAX_TIMER_MS)?;
        validate_count(
            "queue.dispositions",
            self.dispositions.len(),
            MAX_DISPOSITIONS,
        )?;
        for (i, code) in self.dispositions.iter().enumerate() {
            validate_id(&format!("queue.dispositions[{i}]"), code)?;
        }
        validate_range(
            "queue.offer_timeout_ms",
            self.offer_timeout_ms,
            1_000,
            MAX_TIMER_MS,
        )?;
        validate_range(
            "queue.max_missed_offers",
            i64::from(self.max_missed_offers),
            1,
            100,
        )
    }

    /// Whether the queue takes contacts on `channel`; a voice queue takes its callbacks.
    pub fn takes(&self, channel: Channel) -> bool {
        self.channels.is_empty()
            || self.channels.contains(&channel)
            || (channel == Channel::Callback && self.channels.contains(&Channel::Voice))
    }

    /// The skills an agent needs for a contact that reached escalation step `step` (the
    /// number of steps applied).
    pub fn requirements_at(&self, step: usize) -> BTreeMap<String, u8> {
        let mut required = self.required_skills.clone();
        for s in self.escalation.iter().take(step) {
            match &s.action {
                EscalationAction::RelaxSkill { skill, min_level } => {
                    if let Some(level) = required.get_mut(skill) {
                        *level = (*level).min(*min_level);
                    }
                }
                EscalationAction::DropSkill { skill } => {
                    required.remove(skill);
                }
                EscalationAction::AllowOtherSites | EscalationAction::Overflow { .. } => {}
            }
        }
        required
    }

    /// Whether a contact at step `step` may go to agents of other sites.
    pub fn other_sites_at(&self, step: usize) -> bool {
        self.allow_other_sites
            || self
                .escalation
                .iter()
                .take(step)
                .any(|s| s.action == EscalationAction::AllowOtherSites)
    }

    /// The priority points this queue adds for a customer of `tier`.
    pub fn tier_boost(&self, tier: Tier) -> i64 {
        match tier {
            Tier::Standard => 0,
            Tier::Gold => self.gold_boost,
            Tier::Platinum => self.platinum_boost,
        }
    }

    /// Whether an agent may close a contact of this queue with `code`.
    pub fn allows_disposition(&self, code: &str) -> bool {
        self.dispositions.is_empty() || self.dispositions.iter().any(|d| d == code)
    }
}
