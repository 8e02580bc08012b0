//! `WatchEvents`: the state machine's events, in log order, from any retained index.
//!
//! The backlog from the requested index and the live feed are joined without a gap or a
//! repeat (see `banyan_raft::EventFeed`). A watcher that falls behind the live feed (a
//! slow reader, or one entry with more events than the live buffer, such as a branch's
//! import) catches up from the events the node retains; only when those no longer reach
//! back far enough is it ended with `ABORTED` naming the index to resume from, rather than
//! silently skipping events.
//!
//! Watchers are bounded: at most [`MAX_WATCHERS`] on a node (more are refused with
//! `RESOURCE_EXHAUSTED`), and one that stops reading for [`WATCH_STALL`] while its buffer is
//! full is cut, its stream ending with `ABORTED` naming the index to resume from, instead
//! of holding its task and its place in the feed for ever.

use std::pin::Pin;

use banyan_proto::v1 as pb;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::{convert, ApiError, Backend};

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// Events buffered per watcher between the feed and the network.
const WATCH_BUFFER: usize = 1024;
/// Watchers one node serves at once.
pub const MAX_WATCHERS: usize = 1024;
/// How long a watcher with a full buffer may go without reading before it is cut.
pub const WATCH_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// The watchers of this process.
static WATCHERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_WATCHERS);

/// `scope`: the site a site-limited watcher may see; events of other sites' contacts,
/// agents and leases are left out.
pub fn watch(
    node: &impl Backend,
    request: pb::WatchEventsRequest,
    scope: Option<String>,
) -> Result<EventStream, ApiError> {
    let contact = convert::optional_id("contact_id", &request.contact_id)?;
    let agent = convert::optional_id("agent_id", &request.agent_id)?;
    let permit = WATCHERS.try_acquire().map_err(|_| {
        ApiError::ResourceExhausted(format!(
            "this node serves {MAX_WATCHERS} event watchers already; watch through another node or retry later"
        ))
    })?;
    // The feed first, then the state: nothing applied in between goes unseen.
    let feed = node.events();
    let applied = node.applied();
    let subscribed = if request.from_index == 0 {
        Ok(feed.subscribe_retained())
    } else {
        feed.subscribe_from(request.from_index)
    };
    let (backlog, mut live) =
        subscribed.map_err(|e| ApiError::OutOfRange(format!("from_index: {e}")))?;
    let state = applied.clone();
    let wanted = move |record: &banyan_events::EventRecord| {
        contact
            .as_deref()
            .is_none_or(|c| record.event.contact_id() == Some(c))
            && agent
                .as_deref()
                .is_none_or(|a| record.event.concerns_agent(a))
            && scope
                .as_deref()
                .is_none_or(|site| in_site(&state, &record.event, site))
    };
    let from_index = request.from_index;
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    // Why the stream was cut, told after the events already buffered.
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<Status>();
    tokio::spawn(async move {
        let _permit = permit;
        // The last event handled, by (index, ordinal): a catch-up skips up to it.
        let mut last: Option<(u64, u32)> = None;
        let mut backlog = backlog;
        loop {
            for record in backlog.drain(..) {
                if record.index < from_index
                    || last.is_some_and(|l| (record.index, record.ordinal) <= l)
                {
                    continue;
                }
                last = Some((record.index, record.ordinal));
                if !wanted(&record) {
                    continue;
                }
                match tx
                    .send_timeout(Ok(convert::event_to_proto(&record)), WATCH_STALL)
                    .await
                {
                    Ok(()) => {}
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        let status = ApiError::Aborted(format!(
                            "this watcher read nothing for {} s with its buffer full and was cut; resume with from_index {}",
                            WATCH_STALL.as_secs(),
                            record.index
                        ));
                        let _ = cut_tx.send(status.into());
                        return;
                    }
                }
            }
            let next_index = last.map_or(from_index, |(index, _)| index);
            // A watcher that went away is noticed here too, not only at its next event (a
            // filtered watcher may see none for a long time): it gives its place back.
            let received = tokio::select! {
                received = live.recv() => received,
                () = tx.closed() => return,
            };
            let record = match received {
                Ok(record) => record,
                Err(RecvError::Lagged(_)) => match feed.subscribe_from(next_index) {
                    Ok((retained, resubscribed)) => {
                        backlog = retained;
                        live = resubscribed;
                        continue;
                    }
                    Err(_) => {
                        let status = ApiError::Aborted(format!(
                            "watcher fell behind; resume with from_index {next_index} (events are numbered by index and ordinal: skip those already seen)"
                        ));
                        let _ = cut_tx.send(status.into());
                        return;
                    }
                },
                Err(RecvError::Closed) => {
                    let status = ApiError::Aborted(format!(
                        "this node restarted its event feed from a snapshot after index {next_index}; resume on another node"
                    ));
                    let _ = cut_tx.send(status.into());
                    return;
                }
            };
            backlog.push(record);
        }
    });
    let cut = futures::StreamExt::filter_map(futures::stream::once(cut_rx), |cut| async move {
        cut.ok().map(Err)
    });
    Ok(Box::pin(futures::StreamExt::chain(
        ReceiverStream::new(rx),
        cut,
    )))
}

/// Whether `event` belongs to `site`: its contact came in there or is held there, its
/// agent works there, or it is that site's lease. Queue and customer events belong to
/// every site.
fn in_site(state: &banyan_raft::AppliedState, event: &banyan_domain::Event, site: &str) -> bool {
    use banyan_domain::Event as E;
    let applied = state.read();
    let domain = &applied.domain;
    let agent_here = |id: &str| domain.agent(id).is_some_and(|a| a.input.site == site);
    if let Some(id) = event.contact_id() {
        return domain.contact(id).is_some_and(|c| {
            c.origin_site == site
                || agent_here(&c.agent_id)
                || c.offer
                    .as_ref()
                    .is_some_and(|o| o.agents.iter().any(|a| agent_here(a)))
        });
    }
    match event {
        E::AgentUpserted { site: s, .. } => s == site,
        E::AgentStateChanged { agent_id, .. } | E::AgentTokensRevoked { agent_id, .. } => {
            agent_here(agent_id)
        }
        E::LeaseRenewed { site_id, .. }
        | E::LeaseLapsed { site_id }
        | E::SiteUpserted { site_id } => site_id == site,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banyan_domain::{Action, Channel, Command, ContactInput, QueueInput, Stamped};
    use banyan_events::{EventFeed, EventRecord};
    use banyan_raft::{Applied, AppliedState};
    use futures::StreamExt;
    use std::sync::{Arc, RwLock};

    /// A replica with no Raft around it: enough for the watch, which reads only the
    /// applied state and its feed. The tests apply commands to it directly.
    #[derive(Clone)]
    struct Replica {
        state: Arc<RwLock<Applied>>,
        applied: Arc<tokio::sync::watch::Sender<u64>>,
        feed: EventFeed,
    }

    impl Backend for Replica {
        fn node_id(&self) -> u64 {
            1
        }
        fn applied(&self) -> AppliedState {
            AppliedState::over(self.state.clone(), self.applied.subscribe())
        }
        fn events(&self) -> EventFeed {
            self.feed.clone()
        }
        async fn submit(&self, _: Command) -> Result<crate::Committed, ApiError> {
            Err(ApiError::Unavailable("read-only".into()))
        }
        async fn read_target(
            &self,
            _: bool,
        ) -> Result<Option<tonic::transport::Channel>, ApiError> {
            Ok(None)
        }
    }

    /// Applies `action` as entry `index`, handing its events to the feed.
    fn apply(replica: &Replica, index: u64, action: Action) {
        let stamped = Stamped {
            at_ms: 1_000 + index as i64,
            command: Command::new(action),
        };
        let events = replica
            .state
            .write()
            .unwrap()
            .domain
            .apply(&stamped)
            .expect("applied");
        let records = events
            .into_iter()
            .enumerate()
            .map(|(ordinal, event)| EventRecord {
                index,
                ordinal: ordinal as u32,
                at_ms: stamped.at_ms,
                principal: None,
                event,
            });
        replica.feed.publish(records.collect());
        replica.applied.send_replace(index);
    }

    /// The watchers of this process are shared by the tests here: one at a time.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn queue_state() -> Replica {
        let replica = Replica {
            state: Arc::default(),
            applied: Arc::new(tokio::sync::watch::channel(0).0),
            feed: EventFeed::default(),
        };
        let queue = QueueInput {
            id: "q".into(),
            name: "Q".into(),
            ..Default::default()
        };
        apply(&replica, 1, Action::UpsertQueue(queue));
        replica
    }

    fn create(state: &Replica, n: u64) {
        let input = ContactInput {
            id: format!("c{n}"),
            queue_id: "q".into(),
            channel: Channel::Email,
            ..Default::default()
        };
        apply(state, n + 2, Action::CreateContact(input));
    }

    /// Regression: a watcher that stopped reading held its task, its buffer and its place
    /// in the feed for ever. It is cut after WATCH_STALL with its buffer full, and told
    /// where to resume.
    #[tokio::test(start_paused = true)]
    async fn a_watcher_that_stops_reading_is_cut_naming_where_to_resume() {
        let _serial = SERIAL.lock().await;
        let state = queue_state();
        let replica = state.clone();
        let mut stream = watch(&replica, pb::WatchEventsRequest::default(), None).unwrap();
        for n in 0..(2 * WATCH_BUFFER as u64) {
            create(&state, n);
        }
        // Nothing read for longer than the stall limit (the paused clock jumps).
        tokio::time::sleep(WATCH_STALL + std::time::Duration::from_secs(1)).await;
        let mut delivered = 0;
        let read = async {
            loop {
                match stream.next().await {
                    Some(Ok(_)) => delivered += 1,
                    Some(Err(status)) => break status,
                    None => panic!("the stream ended without saying why"),
                }
            }
        };
        let cut = tokio::time::timeout(WATCH_STALL * 4, read)
            .await
            .expect("a stalled watcher is cut, not kept for ever");
        assert_eq!(cut.code(), tonic::Code::Aborted, "{cut:?}");
        assert!(cut.message().contains("resume with from_index"), "{cut:?}");
        assert!(
            delivered >= WATCH_BUFFER,
            "the buffered events came first: {delivered}"
        );
        assert!(stream.next().await.is_none());
    }

    /// Regression: every WatchEvents call held a task and a feed subscription, with no
    /// limit. Past MAX_WATCHERS a node refuses more, and a watcher that leaves gives its
    /// place back.
    #[tokio::test]
    async fn watchers_past_the_limit_are_refused_until_one_leaves() {
        let _serial = SERIAL.lock().await;
        let replica = queue_state();
        let mut open = Vec::new();
        let refused = loop {
            match watch(&replica, pb::WatchEventsRequest::default(), None) {
                Ok(stream) => open.push(stream),
                Err(refused) => break refused,
            }
            assert!(open.len() <= MAX_WATCHERS, "no limit");
        };
        assert_eq!(open.len(), MAX_WATCHERS);
        assert!(
            matches!(refused, ApiError::ResourceExhausted(_)),
            "{refused:?}"
        );
        drop(open.pop());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if watch(&replica, pb::WatchEventsRequest::default(), None).is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the place was not given back"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_catches_up_from_retained_events() {
        let _serial = SERIAL.lock().await;
        let state = queue_state();
        let replica = state.clone();
        let mut stream = watch(&replica, pb::WatchEventsRequest::default(), None).unwrap();
        // Far more events than the live buffer holds, while the watcher reads nothing.
        let contacts = 20_000u64;
        for n in 0..contacts {
            create(&state, n);
        }
        let mut seen = Vec::new();
        while let Some(event) = stream.next().await {
            let event = event.expect("no abort: the events are still retained");
            seen.push((event.index, event.ordinal));
            if event.index == contacts + 1 {
                break;
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen, sorted, "in order, none twice");
        let created = seen
            .iter()
            .filter(|(index, _)| *index >= 2)
            .map(|(i, _)| *i);
        assert_eq!(
            created.collect::<std::collections::BTreeSet<_>>().len() as u64,
            contacts,
            "none missing"
        );
    }
}
