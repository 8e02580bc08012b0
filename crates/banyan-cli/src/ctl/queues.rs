//! `banyan ctl queues`: the queues contacts wait in, their routing configuration, and the
//! live figures a supervisor judges them by (service level, ASA, AHT, abandonment).

use std::collections::BTreeMap;

use banyan_client::Client;
use banyan_proto::v1 as pb;
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::{channel_name, consistency, name, parse_skill, print_json, table, ChannelArg};

/// `banyan ctl queues`: a queue's configuration is what routing decides by.
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Every queue with its configuration.
    List {
        #[arg(long)]
        local: bool,
    },
    /// Create or update a queue.
    Upsert {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// Channels taken (repeatable); none takes all.
        #[arg(long = "channel", value_enum)]
        channels: Vec<ChannelArg>,
        /// Required skill as name=level (repeatable).
        #[arg(long = "skill", value_parser = parse_skill)]
        skills: Vec<(String, u32)>,
        #[arg(long, value_enum, default_value = "longest-idle")]
        strategy: StrategyArg,
        /// Service-level target: answer within this long.
        #[arg(long, value_parser = humantime::parse_duration)]
        service_level: Option<std::time::Duration>,
        #[arg(long, value_parser = humantime::parse_duration)]
        wrap_up: Option<std::time::Duration>,
        #[arg(long, value_parser = humantime::parse_duration)]
        offer_timeout: Option<std::time::Duration>,
        /// Longest a caller waits before abandoning (or a callback with --callback).
        #[arg(long, value_parser = humantime::parse_duration)]
        max_wait: Option<std::time::Duration>,
        #[arg(long, default_value_t = 0)]
        max_length: u32,
        /// Offer voice callers a callback that keeps their place when the queue is full
        /// or they waited --max-wait.
        #[arg(long)]
        callback: bool,
        /// Allowed disposition codes (repeatable).
        #[arg(long = "disposition")]
        dispositions: Vec<String>,
        #[arg(long)]
        allow_other_sites: bool,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Live figures of one queue: waiting, service level, ASA, AHT, abandonment.
    Stats {
        queue_id: String,
        #[arg(long)]
        local: bool,
    },
}

/// How a queue picks among its eligible agents, as the command line spells it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    LongestIdle,
    RoundRobin,
    FewestContacts,
    LeastTalkTime,
    SkillWeighted,
    RingAll,
}

impl From<StrategyArg> for pb::Strategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::LongestIdle => pb::Strategy::LongestIdle,
            StrategyArg::RoundRobin => pb::Strategy::RoundRobin,
            StrategyArg::FewestContacts => pb::Strategy::FewestContacts,
            StrategyArg::LeastTalkTime => pb::Strategy::LeastTalkTime,
            StrategyArg::SkillWeighted => pb::Strategy::SkillWeighted,
            StrategyArg::RingAll => pb::Strategy::RingAll,
        }
    }
}

fn millis(d: Option<std::time::Duration>) -> i64 {
    d.map_or(0, |d| d.as_millis() as i64)
}

/// Runs one queue subcommand and prints its queue or figures.
pub async fn queues(
    client: &Client,
    command: QueueCommand,
    json: bool,
) -> Result<(), tonic::Status> {
    match command {
        QueueCommand::List { local } => {
            let queues = client
                .list_queues(pb::ListQueuesRequest {
                    consistency: consistency(local).into(),
                })
                .await?
                .queues;
            print_queues(&queues, json);
        }
        QueueCommand::Upsert {
            id,
            name,
            channels,
            skills,
            strategy,
            service_level,
            wrap_up,
            offer_timeout,
            max_wait,
            max_length,
            callback,
            dispositions,
            allow_other_sites,
            request_id,
        } => {
            let queue = pb::Queue {
                id,
                name,
                channels: channels
                    .into_iter()
                    .map(|c| pb::Channel::from(c).into())
                    .collect(),
                required_skills: skills.into_iter().collect(),
                strategy: pb::Strategy::from(strategy).into(),
                service_level_ms: millis(service_level),
                wrap_up_ms: wrap_up.map(|d| d.as_millis() as i64),
                offer_timeout_ms: millis(offer_timeout),
                max_wait_ms: millis(max_wait),
                max_length,
                when_full: if callback {
                    pb::WhenFull::Callback
                } else {
                    pb::WhenFull::Abandon
                }
                .into(),
                dispositions,
                allow_other_sites,
                ..Default::default()
            };
            let queue = client
                .upsert_queue(pb::UpsertQueueRequest {
                    queue: Some(queue),
                    request_id: request_id.unwrap_or_default(),
                })
                .await?;
            print_queues(&[queue], json);
        }
        QueueCommand::Stats { queue_id, local } => {
            let s = client
                .get_queue_stats(pb::GetQueueStatsRequest {
                    queue_id,
                    consistency: consistency(local).into(),
                })
                .await?;
            print_stats(&s, json);
        }
    }
    Ok(())
}

fn print_queues(queues: &[pb::Queue], json: bool) {
    let strategy = |v: i32| name(v, pb::Strategy::as_str_name, "STRATEGY_");
    if json {
        let all: Vec<_> = queues
            .iter()
            .map(|q| {
                json!({
                    "id": q.id, "name": q.name,
                    "channels": q.channels.iter().map(|c| channel_name(*c)).collect::<Vec<_>>(),
                    "required_skills": q.required_skills.iter().collect::<BTreeMap<_, _>>(),
                    "strategy": strategy(q.strategy),
                    "service_level_ms": q.service_level_ms,
                    "service_level_goal_pct": q.service_level_goal_pct,
                    "escalation_steps": q.escalation.len(),
                    "max_wait_ms": q.max_wait_ms, "max_length": q.max_length,
                    "wrap_up_ms": q.wrap_up_ms, "offer_timeout_ms": q.offer_timeout_ms,
                    "dispositions": q.dispositions,
                    "allow_other_sites": q.allow_other_sites,
                })
            })
            .collect();
        print_json(&json!(all));
        return;
    }
    let mut t = table(&[
        "id",
        "name",
        "channels",
        "skills",
        "strategy",
        "service level",
        "escalation",
    ]);
    for q in queues {
        let channels = if q.channels.is_empty() {
            "all".into()
        } else {
            q.channels
                .iter()
                .map(|c| channel_name(*c))
                .collect::<Vec<_>>()
                .join(",")
        };
        let skills: Vec<String> = q
            .required_skills
            .iter()
            .collect::<BTreeMap<_, _>>()
            .iter()
            .map(|(k, v)| format!("{k}≥{v}"))
            .collect();
        t.add_row(vec![
            q.id.clone(),
            q.name.clone(),
            channels,
            skills.join(","),
            strategy(q.strategy),
            format!(
                "{}% in {} s",
                q.service_level_goal_pct,
                q.service_level_ms / 1000
            ),
            format!("{} steps", q.escalation.len()),
        ]);
    }
    println!("{t}");
}

fn print_stats(s: &pb::QueueStats, json: bool) {
    let agents: BTreeMap<&str, u64> = s
        .agents
        .iter()
        .map(|a| (a.state.as_str(), a.agents))
        .collect();
    if json {
        print_json(&json!({
            "queue_id": s.queue_id, "waiting": s.waiting, "longest_wait_ms": s.longest_wait_ms,
            "entered": s.entered, "answered": s.answered, "abandoned": s.abandoned,
            "service_level": s.service_level,
            "service_level_with_abandons": s.service_level_with_abandons,
            "service_level_goal_pct": s.service_level_goal_pct,
            "asa_ms": s.asa_ms, "aht_ms": s.aht_ms, "abandonment_rate": s.abandonment_rate,
            "offers": s.offers, "missed_offers": s.missed_offers, "callbacks": s.callbacks,
            "agents": agents,
        }));
        return;
    }
    let mut t = table(&["figure", "value"]);
    let pct = |v: f64| format!("{:.1} %", v * 100.0);
    let rows = [
        ("waiting", s.waiting.to_string()),
        (
            "longest wait",
            format!("{:.1} s", s.longest_wait_ms as f64 / 1000.0),
        ),
        (
            "entered / answered / abandoned",
            format!("{} / {} / {}", s.entered, s.answered, s.abandoned),
        ),
        (
            "service level",
            format!(
                "{} (goal {} % in {} s)",
                pct(s.service_level),
                s.service_level_goal_pct,
                s.service_level_ms / 1000
            ),
        ),
        (
            "service level, abandons counted",
            pct(s.service_level_with_abandons),
        ),
        ("ASA", format!("{:.1} s", s.asa_ms as f64 / 1000.0)),
        ("AHT", format!("{:.1} s", s.aht_ms as f64 / 1000.0)),
        ("abandonment", pct(s.abandonment_rate)),
        (
            "offers / missed",
            format!("{} / {}", s.offers, s.missed_offers),
        ),
        ("agents", format!("{agents:?}")),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_owned(), v]);
    }
    println!("{t}");
}
