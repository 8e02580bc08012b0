//! `banyan ctl events | audit`: the contact center's event stream from the command
//! line, as tables or `--json`.

use banyan_client::Security;
use banyan_proto::v1 as pb;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::json;

use super::{name, state_name, watch};

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
