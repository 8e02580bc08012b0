//! `banyan ctl events`: the contact center's event stream from the command line, as
//! lines or `--json`.

use banyan_client::Security;
use banyan_proto::v1 as pb;
use serde_json::json;

use super::{name, state_name, watch};

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
