//! `banyan ctl events`: a node's event stream in log order, from an index, optionally
//! followed live: what happened, as the state machine applied it.

use banyan_client::Security;
use banyan_proto::v1 as pb;
use clap::Args;
use serde_json::json;

use super::{name, state_name, status_err, watch};

/// Where the stream starts and whose events it carries: one contact's or agent's history
/// is what an operator usually asks for.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Start at this log index (0: everything the node retains).
    #[arg(long, default_value_t = 0)]
    from_index: u64,
    #[arg(long, default_value = "")]
    contact: String,
    #[arg(long, default_value = "")]
    agent: String,
    /// Keep printing new events as they happen.
    #[arg(long)]
    follow: bool,
}

/// `banyan ctl events`: the event stream, from an index, optionally followed live.
pub async fn events(
    security: &Security,
    endpoint: &str,
    args: EventsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let EventsArgs {
        from_index,
        contact,
        agent,
        follow,
    } = args;
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
        let Some(e) = next.map_err(status_err)? else {
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
