//! Agents, their capacity and state.

use banyan_domain::{Agent, AgentInput, AgentState, DomainError, PerChannel, Presence};
use banyan_proto::v1;

use super::skill_level;

/// An agent's capacity per channel; a message left out means the default, not zero.
pub fn capacity_from_proto(capacity: Option<v1::Capacity>) -> PerChannel {
    match capacity {
        None => PerChannel::DEFAULT_CAPACITY,
        Some(c) => PerChannel([c.voice, c.chat, c.email, c.callback]),
    }
}

/// Per-channel figures as the API shows them: an agent's capacity, and its load beside it.
pub fn capacity_to_proto(capacity: &PerChannel) -> v1::Capacity {
    let [voice, chat, email, callback] = capacity.0;
    v1::Capacity {
        voice,
        chat,
        email,
        callback,
    }
}

/// The fields of an `UpsertAgent`, validated. Run-time fields (state, load) are ignored.
pub fn agent_input(agent: Option<v1::Agent>) -> Result<AgentInput, DomainError> {
    let a = agent.ok_or_else(|| DomainError::invalid("agent", "is required"))?;
    let skills = a
        .skills
        .into_iter()
        .map(|(skill, level)| {
            let level = skill_level(&format!("agent.skills[{skill}]"), level)?;
            Ok((skill, level))
        })
        .collect::<Result<_, DomainError>>()?;
    let input = AgentInput {
        id: a.id,
        name: a.name,
        site: a.site,
        skills,
        capacity: capacity_from_proto(a.capacity),
    };
    input.validate()?;
    Ok(input)
}

/// An agent's state as clients see it; a break's reason travels apart, in `break_reason`.
pub fn agent_state_to_proto(state: &AgentState) -> v1::AgentState {
    match state {
        AgentState::Offline => v1::AgentState::Offline,
        AgentState::Available => v1::AgentState::Available,
        AgentState::Break { .. } => v1::AgentState::Break,
        AgentState::WrapUp => v1::AgentState::WrapUp,
    }
}

/// The presence an agent asks for. `WRAP_UP` is not chosen; it follows from contacts.
pub fn presence_from_proto(field: &str, state: i32, reason: &str) -> Result<Presence, DomainError> {
    match v1::AgentState::try_from(state) {
        Ok(v1::AgentState::Available) => Ok(Presence::Available),
        Ok(v1::AgentState::Offline) => Ok(Presence::Offline),
        Ok(v1::AgentState::Break) => Ok(Presence::Break {
            reason: if reason.is_empty() {
                "break".into()
            } else {
                reason.to_owned()
            },
        }),
        Ok(v1::AgentState::WrapUp | v1::AgentState::Unspecified) => Err(DomainError::invalid(
            field,
            "must be AVAILABLE, BREAK or OFFLINE",
        )),
        Err(_) => Err(DomainError::invalid(
            field,
            format!("unknown agent state {state}"),
        )),
    }
}

/// An agent-state filter: unspecified means any.
pub fn agent_state_filter(field: &str, state: i32) -> Result<Option<v1::AgentState>, DomainError> {
    match v1::AgentState::try_from(state) {
        Ok(v1::AgentState::Unspecified) => Ok(None),
        Ok(state) => Ok(Some(state)),
        Err(_) => Err(DomainError::invalid(
            field,
            format!("unknown agent state {state}"),
        )),
    }
}

/// An agent as reads and agent sessions show it: its settings, state, contacts and load.
pub fn agent_to_proto(agent: &Agent) -> v1::Agent {
    let state = agent.state();
    v1::Agent {
        id: agent.input.id.clone(),
        name: agent.input.name.clone(),
        site: agent.input.site.clone(),
        skills: agent
            .input
            .skills
            .iter()
            .map(|(s, l)| (s.clone(), u32::from(*l)))
            .collect(),
        capacity: Some(capacity_to_proto(&agent.input.capacity)),
        state: agent_state_to_proto(&state).into(),
        break_reason: match state {
            AgentState::Break { reason } => reason,
            _ => String::new(),
        },
        contacts: agent.held.keys().cloned().collect(),
        load: Some(capacity_to_proto(&agent.load)),
        idle_since_ms: agent.idle_since_ms,
        state_since_ms: agent.state_since_ms,
        handled: agent.handled,
        talk_time_ms: agent.talk_time_ms,
        missed_in_row: agent.missed_in_row,
        missed_total: agent.missed_total,
    }
}
