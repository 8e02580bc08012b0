//! `banyan ctl agents`: the agents routing offers contacts to, with their skills,
//! capacity per channel, live state and load.

use std::collections::BTreeMap;

use banyan_client::Client;
use banyan_proto::v1 as pb;
use clap::Subcommand;
use serde_json::json;

use super::{consistency, name, parse_skill, print_json, table};

/// `banyan ctl agents`: an agent's skills and capacity are what routing matches on.
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Agents with state, load and counters.
    List {
        #[arg(long, default_value = "")]
        site: String,
        #[arg(long)]
        local: bool,
    },
    /// Create or update an agent (its state is kept).
    Upsert {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        site: String,
        /// Skill as name=level (repeatable).
        #[arg(long = "skill", value_parser = parse_skill)]
        skills: Vec<(String, u32)>,
        #[arg(long, default_value_t = 1)]
        voice: u32,
        #[arg(long, default_value_t = 3)]
        chat: u32,
        #[arg(long, default_value_t = 5)]
        email: u32,
        #[arg(long, default_value_t = 1)]
        callback: u32,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Refuse every desk token the agent holds now and end its open sessions (a lost
    /// laptop, a leaver). Tokens issued afterwards work.
    RevokeTokens {
        #[arg(long)]
        id: String,
    },
}

fn agent_state_name(v: i32) -> String {
    name(v, pb::AgentState::as_str_name, "AGENT_STATE_")
}

/// Runs one agent subcommand and prints the agents it returns.
pub async fn agents(
    client: &Client,
    command: AgentCommand,
    json: bool,
) -> Result<(), tonic::Status> {
    let agents = match command {
        AgentCommand::RevokeTokens { id } => vec![
            client
                .revoke_agent_tokens(pb::RevokeAgentTokensRequest {
                    agent_id: id,
                    request_id: String::new(),
                })
                .await?,
        ],
        AgentCommand::List { site, local } => {
            client
                .list_agents(pb::ListAgentsRequest {
                    site,
                    consistency: consistency(local).into(),
                    ..Default::default()
                })
                .await?
                .agents
        }
        AgentCommand::Upsert {
            id,
            name,
            site,
            skills,
            voice,
            chat,
            email,
            callback,
            request_id,
        } => {
            let agent = pb::Agent {
                id,
                name,
                site,
                skills: skills.into_iter().collect(),
                capacity: Some(pb::Capacity {
                    voice,
                    chat,
                    email,
                    callback,
                }),
                ..Default::default()
            };
            vec![
                client
                    .upsert_agent(pb::UpsertAgentRequest {
                        agent: Some(agent),
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
            ]
        }
    };
    let load = |c: &Option<pb::Capacity>| {
        c.as_ref()
            .map(|c| format!("{}/{}/{}/{}", c.voice, c.chat, c.email, c.callback))
            .unwrap_or_default()
    };
    if json {
        let all: Vec<_> = agents
            .iter()
            .map(|a| {
                json!({
                    "id": a.id, "name": a.name, "site": a.site,
                    "skills": a.skills.iter().collect::<BTreeMap<_, _>>(),
                    "state": agent_state_name(a.state), "break_reason": a.break_reason,
                    "contacts": a.contacts, "capacity": load(&a.capacity), "load": load(&a.load),
                    "handled": a.handled, "talk_time_ms": a.talk_time_ms,
                    "missed_in_row": a.missed_in_row, "idle_since_ms": a.idle_since_ms,
                })
            })
            .collect();
        print_json(&json!(all));
        return Ok(());
    }
    let mut t = table(&[
        "id",
        "name",
        "site",
        "state",
        "load v/c/e/cb",
        "capacity",
        "handled",
        "missed",
    ]);
    for a in &agents {
        let mut state = agent_state_name(a.state);
        if !a.break_reason.is_empty() {
            state = format!("{state} ({})", a.break_reason);
        }
        t.add_row(vec![
            a.id.clone(),
            a.name.clone(),
            a.site.clone(),
            state,
            load(&a.load),
            load(&a.capacity),
            a.handled.to_string(),
            a.missed_total.to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}
