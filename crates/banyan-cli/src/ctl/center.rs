//! `banyan ctl contacts | events | audit`: the contact center from the command
//! line, as tables or `--json`.

use banyan_client::{Client, Security};
use banyan_proto::v1 as pb;
use clap::{Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::json;

use super::{
    channel_name, consistency, name, parse_attr, print_json, state_name, table, watch, ChannelArg,
};

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

/// What `banyan ctl audit` looks for.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub contact: String,
    pub queue: String,
    pub agent: String,
    pub principal: String,
}

/// `banyan ctl audit`: who did what and when, from the events the node retains, each with
/// the principal of the command that caused it.
pub async fn audit(
    security: &Security,
    endpoint: &str,
    filter: AuditFilter,
    json: bool,
) -> anyhow::Result<()> {
    let mut stream = watch(
        security,
        endpoint,
        pb::WatchEventsRequest {
            from_index: 0,
            contact_id: filter.contact.clone(),
            agent_id: filter.agent.clone(),
        },
    )
    .await?;
    let idle = std::time::Duration::from_millis(500);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "at",
        "index",
        "principal",
        "event",
        "contact",
        "agent",
        "queue",
    ]);
    while let Ok(next) = tokio::time::timeout(idle, stream.message()).await {
        let Some(e) = next.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))? else {
            break;
        };
        let queue_matches =
            filter.queue.is_empty() || e.queue_id == filter.queue || e.to_queue_id == filter.queue;
        let principal_matches = filter.principal.is_empty() || e.principal == filter.principal;
        if !queue_matches || !principal_matches {
            continue;
        }
        let kind = name(e.kind, pb::EventKind::as_str_name, "EVENT_KIND_");
        let at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at_ms.max(0) as u64),
        )
        .to_string();
        if json {
            println!(
                "{}",
                json!({
                    "at": at, "at_ms": e.at_ms, "index": e.index, "ordinal": e.ordinal,
                    "principal": e.principal, "kind": kind, "contact_id": e.contact_id,
                    "agent_ids": e.agent_ids, "queue_id": e.queue_id,
                })
            );
        } else {
            table.add_row([
                at,
                e.index.to_string(),
                if e.principal.is_empty() {
                    "-".into()
                } else {
                    e.principal.clone()
                },
                kind,
                e.contact_id.clone(),
                e.agent_ids.join(","),
                e.queue_id.clone(),
            ]);
        }
    }
    if !json {
        println!("{table}");
    }
    Ok(())
}

/// `banyan ctl events`: the event stream, from an index, optionally followed live.
pub async fn events(
    security: &Security,
    endpoint: &str,
    from_index: u64,
    contact: String,
    agent: String,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut stream = watch(
        security,
        endpoint,
        pb::WatchEventsRequest {
            from_index,
            contact_id: contact,
            agent_id: agent,
        },
    )
    .await?;
    let idle = std::time::Duration::from_millis(500);
    loop {
        let next = if follow {
            stream.message().await
        } else {
            match tokio::time::timeout(idle, stream.message()).await {
                Ok(next) => next,
                // Not following: stop once the retained events are printed.
                Err(_) => return Ok(()),
            }
        };
        let Some(e) = next.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))? else {
            return Ok(());
        };
        let kind = name(e.kind, pb::EventKind::as_str_name, "EVENT_KIND_");
        if json {
            println!(
                "{}",
                json!({
                    "index": e.index, "ordinal": e.ordinal, "at_ms": e.at_ms, "kind": kind,
                    "contact_id": e.contact_id, "agent_ids": e.agent_ids, "queue_id": e.queue_id,
                    "reason": e.reason, "state": state_name(e.contact_state),
                    "principal": e.principal,
                })
            );
        } else {
            println!(
                "{:>8}.{:<3} {:<20} {:<16} {:<24} {}",
                e.index,
                e.ordinal,
                kind,
                e.contact_id,
                e.agent_ids.join(","),
                e.reason
            );
        }
    }
}
