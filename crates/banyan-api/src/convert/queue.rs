//! Queues, their strategies and escalation steps, and queue statistics.

use banyan_domain::queue::{EscalationAction, EscalationStep};
use banyan_domain::stats::QueueStats;
use banyan_domain::{DomainError, QueueInput, Strategy, WhenFull};
use banyan_proto::v1;

use super::{channel_from_proto, channel_to_proto};

/// A queue's routing strategy; unspecified means longest idle, the default.
pub fn strategy_from_proto(field: &str, value: i32) -> Result<Strategy, DomainError> {
    match v1::Strategy::try_from(value) {
        Ok(v1::Strategy::Unspecified | v1::Strategy::LongestIdle) => Ok(Strategy::LongestIdle),
        Ok(v1::Strategy::RoundRobin) => Ok(Strategy::RoundRobin),
        Ok(v1::Strategy::FewestContacts) => Ok(Strategy::FewestContacts),
        Ok(v1::Strategy::LeastTalkTime) => Ok(Strategy::LeastTalkTime),
        Ok(v1::Strategy::SkillWeighted) => Ok(Strategy::SkillWeighted),
        Ok(v1::Strategy::RingAll) => Ok(Strategy::RingAll),
        Err(_) => Err(DomainError::invalid(
            field,
            format!("unknown strategy {value}"),
        )),
    }
}

/// A queue's routing strategy as clients see it.
pub fn strategy_to_proto(strategy: Strategy) -> v1::Strategy {
    match strategy {
        Strategy::LongestIdle => v1::Strategy::LongestIdle,
        Strategy::RoundRobin => v1::Strategy::RoundRobin,
        Strategy::FewestContacts => v1::Strategy::FewestContacts,
        Strategy::LeastTalkTime => v1::Strategy::LeastTalkTime,
        Strategy::SkillWeighted => v1::Strategy::SkillWeighted,
        Strategy::RingAll => v1::Strategy::RingAll,
    }
}

/// A skill level as the domain keeps it; out-of-range values are refused with the field.
pub fn skill_level(field: &str, level: u32) -> Result<u8, DomainError> {
    u8::try_from(level)
        .ok()
        .filter(|l| (1..=10).contains(l))
        .ok_or_else(|| DomainError::invalid(field, format!("level {level} is outside 1..=10")))
}

fn step_from_proto(i: usize, step: v1::EscalationStep) -> Result<EscalationStep, DomainError> {
    use v1::escalation_step::Action;
    let field = format!("queue.escalation[{i}]");
    let action = match step.action {
        Some(Action::RelaxSkill(relax)) => EscalationAction::RelaxSkill {
            min_level: skill_level(&format!("{field}.min_level"), relax.min_level)?,
            skill: relax.skill,
        },
        Some(Action::DropSkill(skill)) => EscalationAction::DropSkill { skill },
        Some(Action::AllowOtherSites(true)) => EscalationAction::AllowOtherSites,
        Some(Action::OverflowQueueId(queue_id)) => EscalationAction::Overflow { queue_id },
        Some(Action::AllowOtherSites(false)) | None => {
            return Err(DomainError::invalid(
                format!("{field}.action"),
                "required: relax_skill, drop_skill, allow_other_sites or overflow_queue_id",
            ))
        }
    };
    Ok(EscalationStep {
        after_ms: step.after_ms,
        action,
    })
}

fn step_to_proto(step: &EscalationStep) -> v1::EscalationStep {
    use v1::escalation_step::Action;
    let action = match &step.action {
        EscalationAction::RelaxSkill { skill, min_level } => Action::RelaxSkill(v1::RelaxSkill {
            skill: skill.clone(),
            min_level: u32::from(*min_level),
        }),
        EscalationAction::DropSkill { skill } => Action::DropSkill(skill.clone()),
        EscalationAction::AllowOtherSites => Action::AllowOtherSites(true),
        EscalationAction::Overflow { queue_id } => Action::OverflowQueueId(queue_id.clone()),
    };
    v1::EscalationStep {
        after_ms: step.after_ms,
        action: Some(action),
    }
}

/// The fields of an `UpsertQueue`, with defaults for what was left unset, validated.
pub fn queue_input(queue: Option<v1::Queue>) -> Result<QueueInput, DomainError> {
    let q = queue.ok_or_else(|| DomainError::invalid("queue", "is required"))?;
    let defaults = QueueInput::default();
    let channels = q
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| channel_from_proto(&format!("queue.channels[{i}]"), *c))
        .collect::<Result<Vec<_>, _>>()?;
    let required_skills = q
        .required_skills
        .into_iter()
        .map(|(skill, level)| {
            let level = skill_level(&format!("queue.required_skills[{skill}]"), level)?;
            Ok((skill, level))
        })
        .collect::<Result<_, DomainError>>()?;
    let escalation = q
        .escalation
        .into_iter()
        .enumerate()
        .map(|(i, s)| step_from_proto(i, s))
        .collect::<Result<Vec<_>, _>>()?;
    let when_full = match v1::WhenFull::try_from(q.when_full) {
        Ok(v1::WhenFull::Unspecified | v1::WhenFull::Abandon) => WhenFull::Abandon,
        Ok(v1::WhenFull::Callback) => WhenFull::Callback,
        Err(_) => {
            return Err(DomainError::invalid(
                "queue.when_full",
                format!("unknown value {}", q.when_full),
            ))
        }
    };
    let input = QueueInput {
        strategy: strategy_from_proto("queue.strategy", q.strategy)?,
        id: q.id,
        name: q.name,
        channels,
        required_skills,
        gold_boost: q.gold_boost.unwrap_or(defaults.gold_boost),
        platinum_boost: q.platinum_boost.unwrap_or(defaults.platinum_boost),
        aging_per_minute: q.aging_per_minute.unwrap_or(defaults.aging_per_minute),
        service_level_ms: nonzero(q.service_level_ms, defaults.service_level_ms),
        service_level_goal_pct: match q.service_level_goal_pct {
            0 => defaults.service_level_goal_pct,
            n => n,
        },
        escalation,
        max_wait_ms: q.max_wait_ms,
        max_length: q.max_length,
        when_full,
        wrap_up_ms: q.wrap_up_ms.unwrap_or(defaults.wrap_up_ms),
        dispositions: q.dispositions,
        offer_timeout_ms: nonzero(q.offer_timeout_ms, defaults.offer_timeout_ms),
        max_missed_offers: match q.max_missed_offers {
            0 => defaults.max_missed_offers,
            n => n,
        },
        allow_other_sites: q.allow_other_sites,
    };
    input.validate()?;
    Ok(input)
}

fn nonzero(value: i64, default: i64) -> i64 {
    if value == 0 {
        default
    } else {
        value
    }
}

/// A queue's settings as reads show them, every optional setting given with the value
/// in force.
pub fn queue_to_proto(queue: &QueueInput) -> v1::Queue {
    v1::Queue {
        id: queue.id.clone(),
        name: queue.name.clone(),
        channels: queue
            .channels
            .iter()
            .map(|c| channel_to_proto(*c).into())
            .collect(),
        required_skills: queue
            .required_skills
            .iter()
            .map(|(s, l)| (s.clone(), u32::from(*l)))
            .collect(),
        strategy: strategy_to_proto(queue.strategy).into(),
        gold_boost: Some(queue.gold_boost),
        platinum_boost: Some(queue.platinum_boost),
        aging_per_minute: Some(queue.aging_per_minute),
        service_level_ms: queue.service_level_ms,
        service_level_goal_pct: queue.service_level_goal_pct,
        escalation: queue.escalation.iter().map(step_to_proto).collect(),
        max_wait_ms: queue.max_wait_ms,
        max_length: queue.max_length,
        when_full: match queue.when_full {
            WhenFull::Abandon => v1::WhenFull::Abandon,
            WhenFull::Callback => v1::WhenFull::Callback,
        }
        .into(),
        wrap_up_ms: Some(queue.wrap_up_ms),
        dispositions: queue.dispositions.clone(),
        offer_timeout_ms: queue.offer_timeout_ms,
        max_missed_offers: queue.max_missed_offers,
        allow_other_sites: queue.allow_other_sites,
    }
}

/// A queue's statistics as `GetQueueStats` answers them, true at cluster time `at_ms`;
/// a rate or average with nothing to measure yet is 0.
pub fn queue_stats_to_proto(stats: &QueueStats, queue: &QueueInput, at_ms: i64) -> v1::QueueStats {
    let c = &stats.counters;
    v1::QueueStats {
        queue_id: stats.queue_id.clone(),
        waiting: stats.waiting,
        longest_wait_ms: stats.longest_wait_ms,
        entered: c.entered,
        answered: c.answered,
        answered_in_target: c.answered_in_target,
        abandoned: c.abandoned,
        service_level: c.service_level().unwrap_or(0.0),
        service_level_with_abandons: c.service_level_with_abandons().unwrap_or(0.0),
        service_level_goal_pct: queue.service_level_goal_pct,
        service_level_ms: queue.service_level_ms,
        asa_ms: c.asa_ms().unwrap_or(0),
        aht_ms: c.aht_ms().unwrap_or(0),
        abandonment_rate: c.abandonment_rate().unwrap_or(0.0),
        offers: c.offers,
        missed_offers: c.missed_offers,
        callbacks: c.callbacks,
        transferred_out: c.transferred_out,
        overflowed_out: c.overflowed_out,
        self_served: c.self_served,
        agents: stats
            .agents_by_state
            .iter()
            .map(|(state, agents)| v1::AgentStateCount {
                state: state.clone(),
                agents: *agents,
            })
            .collect(),
        at_ms,
    }
}
