//! `banyan ctl audit`: who did what and when, from the events a node retains, each with
//! the principal of the command that caused it.

use banyan_client::Security;
use banyan_proto::v1 as pb;
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::json;

use super::{name, status_err, watch};

/// What `banyan ctl audit` looks for: the node filters by contact and agent, the rest is
/// filtered here.
#[derive(Args, Debug, Default)]
pub struct AuditFilter {
    #[arg(long, default_value = "")]
    pub contact: String,
    #[arg(long, default_value = "")]
    pub queue: String,
    #[arg(long, default_value = "")]
    pub agent: String,
    #[arg(long, default_value = "")]
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
        let Some(e) = next.map_err(status_err)? else {
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
