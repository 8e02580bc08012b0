//! Agents: who handles contacts, with which skills, how many at once, and in which state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::channel::{Channel, PerChannel};
use crate::error::DomainError;
use crate::validate::{validate_count, validate_id, validate_len, validate_name, MAX_NAME_LEN};

pub const MAX_SKILLS: usize = 64;
pub const MIN_SKILL_LEVEL: u8 = 1;
pub const MAX_SKILL_LEVEL: u8 = 10;
/// More concurrent contacts on one channel than anyone can handle is a typo.
pub const MAX_CAPACITY: u32 = 50;

/// The fields an administrator sets on an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInput {
    pub id: String,
    pub name: String,
    /// The site (regional center) the agent works at; routing fences by the site's lease.
    pub site: String,
    /// Skill name → level, 1 (novice) to 10 (expert).
    pub skills: BTreeMap<String, u8>,
    /// Concurrent contacts per channel; zero means the agent does not take that channel.
    pub capacity: PerChannel,
}

impl Default for AgentInput {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            site: String::new(),
            skills: BTreeMap::new(),
            capacity: PerChannel::DEFAULT_CAPACITY,
        }
    }
}

impl AgentInput {
    pub fn validate(&self) -> Result<(), DomainError> {
        validate_id("agent.id", &self.id)?;
        validate_name("agent.name", &self.name)?;
        validate_id("agent.site", &self.site)?;
        validate_count("agent.skills", self.skills.len(), MAX_SKILLS)?;
        for (skill, level) in &self.skills {
            validate_id("agent.skills key", skill)?;
            if !(MIN_SKILL_LEVEL..=MAX_SKILL_LEVEL).contains(level) {
                return Err(DomainError::invalid(
                    format!("agent.skills[{skill}]"),
                    format!("level {level} is outside {MIN_SKILL_LEVEL}..={MAX_SKILL_LEVEL}"),
                ));
            }
        }
        for channel in Channel::ALL {
            let capacity = self.capacity.get(channel);
            if capacity > MAX_CAPACITY {
                return Err(DomainError::invalid(
                    format!("agent.capacity.{channel}"),
                    format!("{capacity} is above {MAX_CAPACITY}"),
                ));
            }
        }
        Ok(())
    }
}

/// What the agent chose: whether they want contacts at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    #[default]
    Offline,
    Available,
    Break {
        reason: String,
    },
}

impl Presence {
    pub fn validate(&self) -> Result<(), DomainError> {
        if let Presence::Break { reason } = self {
            validate_len("state.reason", reason, MAX_NAME_LEN)?;
        }
        Ok(())
    }
}

/// The state an agent is shown in: their presence, or `WrapUp` while finishing a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentState {
    Offline,
    Available,
    Break { reason: String },
    WrapUp,
}

impl AgentState {
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::Offline => "OFFLINE",
            AgentState::Available => "AVAILABLE",
            AgentState::Break { .. } => "BREAK",
            AgentState::WrapUp => "WRAP_UP",
        }
    }
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub input: AgentInput,
    pub presence: Presence,
    /// Contacts the agent holds (offered, connected or in wrap-up) and their channel.
    pub held: BTreeMap<String, Channel>,
    /// `held` counted per channel; never above `input.capacity`.
    pub load: PerChannel,
    /// Held contacts in wrap-up: while any is, the agent takes no new contact.
    pub wrapping_up: u32,
    /// When the agent last became free; `LONGEST_IDLE` offers to the smallest.
    pub idle_since_ms: i64,
    /// When `state()` last changed.
    pub state_since_ms: i64,
    pub handled: u64,
    pub talk_time_ms: i64,
    pub missed_in_row: u32,
    pub missed_total: u64,
    /// Global offer sequence number of the agent's last offer; `ROUND_ROBIN` offers to
    /// the smallest.
    pub last_offer_seq: u64,
    /// The desk session of the agent's latest login: only its disconnect counts.
    pub session: String,
    /// Desk tokens issued at or before this time (ms since the epoch) are refused; 0 when
    /// the agent's tokens were never revoked.
    pub tokens_revoked_ms: i64,
}

impl Agent {
    pub fn new(input: AgentInput, now_ms: i64) -> Self {
        Self {
            input,
            presence: Presence::Offline,
            held: BTreeMap::new(),
            load: PerChannel::default(),
            wrapping_up: 0,
            idle_since_ms: now_ms,
            state_since_ms: now_ms,
            handled: 0,
            talk_time_ms: 0,
            missed_in_row: 0,
            missed_total: 0,
            last_offer_seq: 0,
            session: String::new(),
            tokens_revoked_ms: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.input.id
    }

    pub fn state(&self) -> AgentState {
        match &self.presence {
            Presence::Offline => AgentState::Offline,
            Presence::Break { reason } => AgentState::Break {
                reason: reason.clone(),
            },
            Presence::Available if self.wrapping_up > 0 => AgentState::WrapUp,
            Presence::Available => AgentState::Available,
        }
    }

    /// Whether the agent can take one more contact on `channel` right now (site lease and
    /// skills aside).
    pub fn has_room(&self, channel: Channel) -> bool {
        self.presence == Presence::Available
            && self.wrapping_up == 0
            && self.load.get(channel) < self.input.capacity.get(channel)
    }

    /// Whether the agent's skills meet every requirement.
    pub fn meets(&self, requirements: &BTreeMap<String, u8>) -> bool {
        requirements
            .iter()
            .all(|(skill, min)| self.input.skills.get(skill).is_some_and(|l| l >= min))
    }
}
