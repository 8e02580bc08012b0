//! `banyan ctl contacts`: contacts created, read, listed and moved through their life by
//! hand, each with the timeline of what happened to it.

use banyan_client::Client;
use banyan_proto::v1 as pb;
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::{channel_name, consistency, parse_attr, print_json, state_name, table, ChannelArg};

/// `banyan ctl contacts`: what an operator does to one contact when a desk cannot.
#[derive(Subcommand, Debug)]
pub enum ContactCommand {
    /// A new contact in a queue.
    Create {
        #[arg(long)]
        queue: String,
        #[arg(long, value_enum, default_value = "voice")]
        channel: ChannelArg,
        #[arg(long, default_value = "")]
        customer: String,
        #[arg(long, default_value = "")]
        intent: String,
        #[arg(long, default_value_t = 0)]
        priority: i64,
        /// The site it came in at.
        #[arg(long, default_value = "")]
        site: String,
        /// key=value, repeatable.
        #[arg(long = "attr", value_parser = parse_attr)]
        attributes: Vec<(String, String)>,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// One contact with its timeline.
    Get {
        id: String,
        #[arg(long)]
        local: bool,
    },
    List {
        #[arg(long, default_value = "")]
        queue: String,
        #[arg(long, default_value = "")]
        agent: String,
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value = "")]
        page_token: String,
        #[arg(long)]
        local: bool,
    },
    /// Close a connected or wrapping-up contact.
    Complete {
        id: String,
        #[arg(long, default_value = "")]
        disposition: String,
        #[arg(long, default_value = "")]
        notes: String,
        #[arg(long, default_value = "")]
        agent: String,
    },
    /// The caller hung up while waiting.
    Abandon { id: String },
    /// Move a contact into another queue.
    Transfer {
        id: String,
        #[arg(long)]
        queue: String,
    },
}

/// A contact state to list by, as the command line spells it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    SelfServed,
    Queued,
    Offered,
    Connected,
    WrapUp,
    Completed,
    Abandoned,
    CallbackScheduled,
    Transferred,
}

impl From<StateArg> for pb::ContactState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::SelfServed => pb::ContactState::SelfServed,
            StateArg::Queued => pb::ContactState::Queued,
            StateArg::Offered => pb::ContactState::Offered,
            StateArg::Connected => pb::ContactState::Connected,
            StateArg::WrapUp => pb::ContactState::WrapUp,
            StateArg::Completed => pb::ContactState::Completed,
            StateArg::Abandoned => pb::ContactState::Abandoned,
            StateArg::CallbackScheduled => pb::ContactState::CallbackScheduled,
            StateArg::Transferred => pb::ContactState::Transferred,
        }
    }
}

/// Runs one contact subcommand and prints the contacts it returns.
pub async fn contacts(
    client: &Client,
    command: ContactCommand,
    json: bool,
) -> Result<(), tonic::Status> {
    let contacts = match command {
        ContactCommand::Create {
            queue,
            channel,
            customer,
            intent,
            priority,
            site,
            attributes,
            request_id,
        } => vec![
            client
                .create_contact(pb::CreateContactRequest {
                    request_id: request_id.unwrap_or_default(),
                    channel: pb::Channel::from(channel).into(),
                    customer_id: customer,
                    queue_id: queue,
                    intent,
                    priority,
                    attributes: attributes.into_iter().collect(),
                    site,
                    ..Default::default()
                })
                .await?,
        ],
        ContactCommand::Get { id, local } => vec![
            client
                .get_contact(pb::GetContactRequest {
                    id,
                    consistency: consistency(local).into(),
                })
                .await?,
        ],
        ContactCommand::List {
            queue,
            agent,
            state,
            limit,
            page_token,
            local,
        } => {
            let reply = client
                .list_contacts(pb::ListContactsRequest {
                    queue_id: queue,
                    agent_id: agent,
                    state: state.map_or(0, |s| pb::ContactState::from(s).into()),
                    limit,
                    page_token,
                    consistency: consistency(local).into(),
                    ..Default::default()
                })
                .await?;
            if !reply.next_page_token.is_empty() && !json {
                eprintln!("more results: --page-token {}", reply.next_page_token);
            }
            reply.contacts
        }
        ContactCommand::Complete {
            id,
            disposition,
            notes,
            agent,
        } => vec![
            client
                .complete_contact(pb::CompleteContactRequest {
                    contact_id: id,
                    agent_id: agent,
                    disposition,
                    notes,
                    ..Default::default()
                })
                .await?,
        ],
        ContactCommand::Abandon { id } => vec![
            client
                .abandon_contact(pb::AbandonContactRequest {
                    contact_id: id,
                    ..Default::default()
                })
                .await?,
        ],
        ContactCommand::Transfer { id, queue } => vec![
            client
                .transfer_contact(pb::TransferContactRequest {
                    contact_id: id,
                    queue_id: queue,
                    ..Default::default()
                })
                .await?,
        ],
    };
    print_contacts(&contacts, json);
    Ok(())
}

fn print_contacts(contacts: &[pb::Contact], json: bool) {
    if json {
        let all: Vec<_> = contacts
            .iter()
            .map(|c| {
                json!({
                    "id": c.id, "request_id": c.request_id, "state": state_name(c.state),
                    "channel": channel_name(c.channel), "queue_id": c.queue_id,
                    "customer_id": c.customer_id, "intent": c.intent, "priority": c.priority,
                    "site": c.site, "agent_id": c.agent_id, "offered_to": c.offered_to,
                    "decision": c.decision.as_ref().map(|d| json!({
                        "strategy": d.strategy, "step": d.step, "score": d.score, "priority": d.priority,
                    })),
                    "enqueued_ms": c.enqueued_ms, "connected_ms": c.connected_ms,
                    "ended_ms": c.ended_ms, "disposition": c.disposition, "notes": c.notes,
                    "transferred_to": c.transferred_to,
                    "timeline": c.timeline.iter().map(|t| json!({
                        "at_ms": t.at_ms, "state": state_name(t.state), "detail": t.detail,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!(all));
        return;
    }
    let mut t = table(&[
        "id",
        "state",
        "channel",
        "queue",
        "priority",
        "agent",
        "customer",
        "disposition",
    ]);
    for c in contacts {
        let agent = if c.agent_id.is_empty() {
            c.offered_to.join(",")
        } else {
            c.agent_id.clone()
        };
        t.add_row(vec![
            c.id.clone(),
            state_name(c.state),
            channel_name(c.channel),
            c.queue_id.clone(),
            c.priority.to_string(),
            agent,
            c.customer_id.clone(),
            c.disposition.clone(),
        ]);
    }
    println!("{t}");
    if let [one] = contacts {
        for step in &one.timeline {
            println!(
                "  {}  {:<18} {}",
                step.at_ms,
                state_name(step.state),
                step.detail
            );
        }
    }
}
