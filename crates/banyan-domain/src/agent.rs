//! Agents: who handles contacts, with which skills, how many at once, and in which state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::channel::{Channel, PerChannel};
use crate::error::DomainError;
use crate::validate::{validate_count, validate_id, validate_len, validate_name, MAX_NAME_LEN};

/// Most skills one agent may list: a bound on what one upsert makes every replica store.
pub const MAX_SKILLS: usize = 64;
/// Lowest skill level, a novice; agents and queue requirements use the same scale.
pub const MIN_SKILL_LEVEL: u8 = 1;
/// Highest skill level, an expert.
pub const MAX_SKILL_LEVEL: u8 = 10;
/// More concurrent contacts on one channel than anyone can handle is a typo.
pub const MAX_CAPACITY: u32 = 50;

/// The fields an administrator sets on an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInput {
    /// The agent's id, unique in the cluster: offers, desk tokens and events name the agent by it.
    pub id: String,
    /// The name supervisors see for the agent.
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
    /// Checks every field against its limits, at the service edge and again inside `apply`, so a
    /// bad upsert changes nothing.
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
    /// Logged out: takes no contacts. Where every new agent starts.
    #[default]
    Offline,
    /// Ready for contacts, up to the agent's capacity on each channel.
    Available,
    /// Logged in but taking no contacts for a while.
    Break {
        /// Why the agent is away, as they gave it or as the cluster set it (`missed offers`).
        reason: String,
    },
}

impl Presence {
    /// Bounds the break reason, so that a presence change cannot grow the state without limit.
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
    /// Logged out.
    Offline,
    /// Ready, with no contact in wrap-up: routing may offer to the agent.
    Available,
    /// On a break: logged in, taking no contacts.
    Break {
        /// Why the agent is away, as their presence says.
        reason: String,
    },
    /// Available, but finishing the after-contact work (notes, disposition) of a contact; offered
    /// nothing until done.
    WrapUp,
}

impl AgentState {
    /// The upper-case name the API, queue statistics and the wallboard show (`AVAILABLE`,
    /// `WRAP_UP`, ...).
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
    /// The fields the administrator set, as last upserted.
    pub input: AgentInput,
    /// What the agent last chose, or the cluster for them (a break after too many missed offers).
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
    /// Contacts the agent saw through to completion, for their statistics.
    pub handled: u64,
    /// Time connected to contacts so far, in milliseconds; `LEAST_TALK_TIME` offers to the
    /// smallest.
    pub talk_time_ms: i64,
    /// Offers the agent let expire since they last accepted one or became available; at the queue's
    /// `max_missed_offers` the agent is put on break.
    pub missed_in_row: u32,
    /// Offers the agent let expire in all, for supervisors.
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
    /// A newly created agent: offline, holding nothing, idle and in its state since `now_ms`.
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

    /// The agent's id, the key it is stored and routed under.
    pub fn id(&self) -> &str {
        &self.input.id
    }

    /// The state supervisors and events see: the presence, or `WrapUp` while any held contact is in
    /// wrap-up.
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
