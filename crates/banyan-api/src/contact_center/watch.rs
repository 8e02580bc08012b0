//! `WatchEvents`: the state machine's events, in log order, from any retained index.
//!
//! The backlog from the requested index and the live feed are joined without a gap or a
//! repeat (see `banyan_events::EventFeed`). An index the in-memory feed no longer holds
//! (the node restarted, installed a snapshot, or the index is old) is served from the
//! node's event log on disk first (`banyan_raft::EventLog`), then from the feed. A watcher
//! that falls behind the live feed (a slow reader, or one entry with more events than the
//! live buffer, such as a branch's import) catches up the same way; only when neither
//! reaches back far enough is it ended with `ABORTED` naming the index to resume from,
//! rather than silently skipping events.
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

use banyan_events::{EventFeed, EventRecord, Subscription};
use banyan_raft::EventLog;

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
    let log = applied.event_log().cloned();
    let from_index = request.from_index;
    let start = if from_index == 0 {
        Start::Memory(feed.subscribe_retained())
    } else {
        match feed.subscribe_from(from_index) {
            Ok(subscription) => Start::Memory(subscription),
            Err(compacted) => {
                let on_disk = log
                    .as_ref()
                    .map(|log| log.covers_from())
                    .transpose()
                    .map_err(crate::errors::unreadable)?
                    .flatten();
                match on_disk {
                    Some(oldest) if oldest <= from_index => Start::Disk,
                    _ => {
                        let oldest = on_disk.map_or(compacted.oldest, |o| o.min(compacted.oldest));
                        return Err(ApiError::OutOfRange(format!(
                            "from_index: events before log index {oldest} are not retained on this node"
                        )));
                    }
                }
            }
        }
    };
    let state = applied.clone();
    let wanted = move |record: &EventRecord| {
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
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    // Why the stream was cut, told after the events already buffered.
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<Status>();
    let node = node.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut watcher = Watcher {
            tx,
            wanted,
            from_index,
            last: None,
            resume_at: 0,
        };
        // Whether the node still serves this feed (a branch switching between routing
        // alone and through the core serves another one from then on).
        let serving = move |feed: &EventFeed| node.events().is(feed);
        let stop = watcher.run(start, &feed, log.as_ref(), serving).await;
        if let Stop::Cut(status) = stop {
            let _ = cut_tx.send(status);
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

/// Where a watcher starts: the in-memory feed, or the event log on disk for an index the
/// feed no longer holds.
enum Start {
    Memory(Subscription),
    Disk,
}

/// Why a watcher's task ended.
enum Stop {
    /// The watcher went away.
    Gone,
    /// The stream is cut, with this status after the events already sent.
    Cut(Status),
}

/// One watcher's task: sends every wanted event from `from_index` on, in order, once.
struct Watcher<F> {
    tx: mpsc::Sender<Result<pb::Event, Status>>,
    wanted: F,
    from_index: u64,
    /// The last event handled, by (index, ordinal): a catch-up skips up to it.
    last: Option<(u64, u32)>,
    /// An index below which there is nothing left to send (the disk held no more events
    /// before the feed's window).
    resume_at: u64,
}

/// Events read from the node's disk per step of a catch-up.
const DISK_CHUNK: usize = 1_000;

impl<F: Fn(&EventRecord) -> bool> Watcher<F> {
    async fn run(
        &mut self,
        start: Start,
        feed: &EventFeed,
        log: Option<&EventLog>,
        serving: impl Fn(&EventFeed) -> bool,
    ) -> Stop {
        let (mut backlog, mut live) = match start {
            Start::Memory(subscription) => subscription,
            Start::Disk => match self.catch_up(feed, log).await {
                Ok(subscription) => subscription,
                Err(stop) => return stop,
            },
        };
        loop {
            for record in backlog.drain(..) {
                if let Err(stop) = self.send(&record).await {
                    return stop;
                }
            }
            // A watcher that went away is noticed here too, not only at its next event (a
            // filtered watcher may see none for a long time): it gives its place back.
            let received = tokio::select! {
                received = live.recv() => received,
                () = self.tx.closed() => return Stop::Gone,
            };
            match received {
                Ok(record) => backlog.push(record),
                // The node serves another state now (a branch went alone or back through
                // the core): this stream of events has ended.
                Err(RecvError::Closed) if !serving(feed) => {
                    let next = self.next_index();
                    return Stop::Cut(Status::from(ApiError::Aborted(format!(
                        "this node now serves another state (a branch switched between routing alone and through the core); resume with from_index {next} on the node that serves what you follow"
                    ))));
                }
                // Fallen behind the live feed, or the feed started over (this node
                // installed a snapshot): from the feed's window if it still reaches back,
                // else from disk.
                Err(RecvError::Lagged(_) | RecvError::Closed) => {
                    match self.catch_up(feed, log).await {
                        Ok((retained, resubscribed)) => {
                            backlog = retained;
                            live = resubscribed;
                        }
                        Err(stop) => return stop,
                    }
                }
            }
        }
    }

    /// The index to go on from: that of the last event handled (its later ordinals are
    /// not handled yet), where the watcher started, or past indexes known to hold none.
    fn next_index(&self) -> u64 {
        let last = self.last.map_or(0, |(index, _)| index);
        self.from_index.max(last).max(self.resume_at)
    }

    /// Reads from disk what the feed no longer holds, then subscribes to the feed again.
    async fn catch_up(
        &mut self,
        feed: &EventFeed,
        log: Option<&EventLog>,
    ) -> Result<Subscription, Stop> {
        let unreadable = |e| Stop::Cut(crate::errors::unreadable(e).into());
        loop {
            let next = self.next_index();
            if let Ok(subscription) = feed.subscribe_from(next) {
                return Ok(subscription);
            }
            let oldest_on_disk = match log {
                Some(log) => log.covers_from().map_err(unreadable)?,
                None => None,
            };
            // Events from `next` on must still be on disk (pruned past the retention, or
            // a node without a log, cannot serve them).
            let (Some(log), Some(oldest)) = (log, oldest_on_disk) else {
                return Err(Stop::Cut(Status::from(ApiError::Aborted(format!(
                    "watcher fell behind; resume with from_index {next} on another node (events are numbered by index and ordinal: skip those already seen)"
                )))));
            };
            if oldest > next {
                return Err(Stop::Cut(Status::from(ApiError::Aborted(format!(
                    "events from index {next} to {oldest} are no longer on this node; resume with from_index {next} on another node"
                )))));
            }
            let upto = feed.oldest();
            // Within an entry already begun, after its last event handled.
            let after = self
                .last
                .filter(|(index, _)| *index == next)
                .map(|(_, o)| o);
            let chunk = log
                .read_after(next, after, upto, DISK_CHUNK)
                .map_err(unreadable)?;
            if chunk.len() < DISK_CHUNK {
                // Nothing else on disk below the feed's window: go on from its start.
                self.resume_at = upto;
            }
            for record in &chunk {
                self.send(record).await?;
            }
            // Reading the disk does not wait on anything: let the node's other work run.
            tokio::task::yield_now().await;
            if self.tx.is_closed() {
                return Err(Stop::Gone);
            }
        }
    }

    /// Sends `record` unless it was handled already, is before the start, or is not
    /// wanted.
    async fn send(&mut self, record: &EventRecord) -> Result<(), Stop> {
        if record.index < self.from_index
            || self
                .last
                .is_some_and(|l| (record.index, record.ordinal) <= l)
        {
            return Ok(());
        }
        self.last = Some((record.index, record.ordinal));
        if !(self.wanted)(record) {
            return Ok(());
        }
        match self
            .tx
            .send_timeout(Ok(convert::event_to_proto(record)), WATCH_STALL)
            .await
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Stop::Gone),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                Err(Stop::Cut(Status::from(ApiError::Aborted(format!(
                    "this watcher read nothing for {} s with its buffer full and was cut; resume with from_index {}",
                    WATCH_STALL.as_secs(),
                    record.index
                )))))
            }
        }
    }
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
        let of_site = |c: &banyan_domain::Contact| {
            c.origin_site == site
                || agent_here(&c.agent_id)
                || c.offer
                    .as_ref()
                    .is_some_and(|o| o.agents.iter().any(|a| agent_here(a)))
        };
        return match domain.contact(id) {
            Some(contact) => of_site(contact),
            // A finished contact the routing state let go (a watcher resuming from far
            // back): its record in the history store says where it belonged.
            None => state
                .history()
                .and_then(|h| h.get(id).ok().flatten())
                .is_some_and(|c| of_site(&c)),
        };
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
    use banyan_raft::{Applied, AppliedState, EventLog};
    use futures::StreamExt;
    use std::sync::{Arc, RwLock};

    /// A replica with no Raft around it: enough for the watch, which reads only the
    /// applied state and its feed. The tests apply commands to it directly.
    #[derive(Clone)]
    struct Replica {
        state: Arc<RwLock<Applied>>,
        applied: Arc<tokio::sync::watch::Sender<u64>>,
        feed: EventFeed,
        /// The event log on disk, for the tests of watchers resuming from far back.
        log: Option<(Arc<tempfile::TempDir>, EventLog)>,
    }

    impl Backend for Replica {
        fn node_id(&self) -> u64 {
            1
        }
        fn applied(&self) -> AppliedState {
            let view = AppliedState::over(self.state.clone(), self.applied.subscribe());
            match &self.log {
                Some((_, log)) => view.with_event_log(log.clone()),
                None => view,
            }
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
        let records: Vec<EventRecord> = records.collect();
        if let Some((_, log)) = &replica.log {
            log.append(&records).unwrap();
        }
        replica.feed.publish(records);
        replica.applied.send_replace(index);
    }

    /// The watchers of this process are shared by the tests here: one at a time.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn queue_state() -> Replica {
        let replica = Replica {
            state: Arc::default(),
            applied: Arc::new(tokio::sync::watch::channel(0).0),
            feed: EventFeed::default(),
            log: None,
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

    /// A replica whose events are also on disk.
    fn logged_state() -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.set_covers_from(1).unwrap();
        let mut replica = queue_state();
        log.append(
            &replica
                .feed
                .subscribe_retained()
                .0
                .iter()
                .map(|r| (**r).clone())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        replica.log = Some((Arc::new(dir), log));
        replica
    }

    /// Regression: after a restart (the in-memory feed starts after the snapshot) a
    /// watcher resuming from an earlier index got OUT_OF_RANGE. It is served from the
    /// event log on disk, then from the feed, with no gap and no repeat.
    #[tokio::test]
    async fn a_watcher_resumes_from_before_a_restart_from_the_disk() {
        let _serial = SERIAL.lock().await;
        let replica = logged_state();
        for n in 0..50 {
            create(&replica, n);
        }
        // Everything as an uninterrupted watcher saw it.
        let mut all = watch(
            &replica,
            pb::WatchEventsRequest {
                from_index: 1,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let mut uninterrupted = Vec::new();
        while uninterrupted
            .last()
            .is_none_or(|e: &pb::Event| e.index < 51)
        {
            uninterrupted.push(all.next().await.unwrap().unwrap());
        }
        // The node restarts from a snapshot at index 30: its feed holds nothing before,
        // and the log after it is applied again.
        replica.feed.reset_after(30);
        let log = &replica.log.as_ref().unwrap().1;
        for index in 31..=51 {
            replica
                .feed
                .publish(log.read(index, index + 1, 10).unwrap());
        }
        for n in 50..55 {
            create(&replica, n);
        }
        let request = pb::WatchEventsRequest {
            from_index: 5,
            ..Default::default()
        };
        let mut resumed = watch(&replica, request, None).unwrap();
        let mut got = Vec::new();
        while got.last().is_none_or(|e: &pb::Event| e.index < 56) {
            got.push(resumed.next().await.unwrap().unwrap());
        }
        let key = |e: &pb::Event| (e.index, e.ordinal, e.at_ms, e.kind, e.contact_id.clone());
        let expected: Vec<_> = uninterrupted
            .iter()
            .filter(|e| e.index >= 5)
            .map(key)
            .collect();
        assert_eq!(
            got.iter()
                .filter(|e| e.index <= 51)
                .map(key)
                .collect::<Vec<_>>(),
            expected
        );
        let later: Vec<u64> = got
            .iter()
            .filter(|e| e.index > 51)
            .map(|e| e.index)
            .collect();
        assert_eq!(later, [52, 53, 54, 55, 56], "then the live feed, once each");
        // Before the oldest event on disk: refused, naming it.
        let before = pb::WatchEventsRequest {
            from_index: 1,
            ..Default::default()
        };
        replica
            .log
            .as_ref()
            .unwrap()
            .1
            .prune_before(1_002, 100)
            .unwrap();
        let err = match watch(&replica, before, None) {
            Err(err) => err,
            Ok(_) => panic!("served from before the oldest event on disk"),
        };
        assert!(matches!(err, ApiError::OutOfRange(_)), "{err:?}");
    }

    /// Regression: a catch-up from disk started each chunk again at the first event of the
    /// last entry it had reached, so an entry with more events than one chunk (a branch's
    /// import, a big batch) made it read the same chunk for ever, spinning a worker.
    #[tokio::test]
    async fn a_catch_up_from_disk_goes_through_an_entry_larger_than_a_chunk() {
        let _serial = SERIAL.lock().await;
        let replica = logged_state();
        let big: Vec<EventRecord> = (0..(2 * DISK_CHUNK as u32 + 500))
            .map(|ordinal| EventRecord {
                index: 2,
                ordinal,
                at_ms: 2_000,
                principal: None,
                event: banyan_domain::Event::QueueUpserted {
                    queue_id: format!("q{ordinal}"),
                },
            })
            .collect();
        replica.log.as_ref().unwrap().1.append(&big).unwrap();
        replica.feed.publish(big.clone());
        // A restart after index 2: the feed holds nothing of it.
        replica.feed.reset_after(2);
        // Entry 3, applied after the restart.
        create(&replica, 1);
        let request = pb::WatchEventsRequest {
            from_index: 2,
            ..Default::default()
        };
        let mut stream = watch(&replica, request, None).unwrap();
        let read = async {
            let mut got = Vec::new();
            while got.len() < big.len() + 1 {
                let event = stream.next().await.unwrap().unwrap();
                got.push((event.index, event.ordinal));
            }
            got
        };
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .expect("the catch-up goes on past the first chunk");
        let mut expected: Vec<(u64, u32)> = big.iter().map(|r| (r.index, r.ordinal)).collect();
        expected.push((3, 0));
        assert_eq!(got, expected);
    }
}
