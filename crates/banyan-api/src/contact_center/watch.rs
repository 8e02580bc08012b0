//! `WatchEvents`: the state machine's events, in log order, from any retained index.
//!
//! The backlog from the requested index and the live feed are joined without a gap or a
//! repeat (see `banyan_raft::EventFeed`). A watcher too slow for the live feed is ended
//! with `ABORTED` naming the index to resume from, rather than silently skipping events.

use std::pin::Pin;

use banyan_proto::v1 as pb;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::{convert, Backend};

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// Events buffered per watcher between the feed and the network.
const WATCH_BUFFER: usize = 1024;

pub fn watch(node: &impl Backend, request: pb::WatchEventsRequest) -> Result<EventStream, Status> {
    let contact = convert::optional_id("contact_id", &request.contact_id)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let agent = convert::optional_id("agent_id", &request.agent_id)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let applied = node.applied();
    let feed = applied.events();
    let subscribed = if request.from_index == 0 {
        Ok(feed.subscribe_retained())
    } else {
        feed.subscribe_from(request.from_index)
    };
    let (backlog, mut live) =
        subscribed.map_err(|e| Status::out_of_range(format!("from_index: {e}")))?;
    let wanted = move |record: &banyan_raft::EventRecord| {
        contact
            .as_deref()
            .is_none_or(|c| record.event.contact_id() == Some(c))
            && agent
                .as_deref()
                .is_none_or(|a| record.event.concerns_agent(a))
    };
    let from_index = request.from_index;
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        let mut next_index = request.from_index;
        for record in backlog {
            next_index = record.index;
            if wanted(&record) && tx.send(Ok(convert::event_to_proto(&record))).await.is_err() {
                return;
            }
        }
        loop {
            let record = match live.recv().await {
                Ok(record) => record,
                Err(RecvError::Lagged(_)) => {
                    let status = Status::aborted(format!(
                        "watcher fell behind; resume with from_index {next_index} (events are numbered by index and ordinal: skip those already seen)"
                    ));
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                Err(RecvError::Closed) => {
                    let status = Status::aborted(format!(
                        "this node restarted its event feed from a snapshot after index {next_index}; resume on another node"
                    ));
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            // A node behind the requested index replays older entries first.
            if record.index < from_index {
                continue;
            }
            next_index = record.index;
            if wanted(&record) && tx.send(Ok(convert::event_to_proto(&record))).await.is_err() {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
