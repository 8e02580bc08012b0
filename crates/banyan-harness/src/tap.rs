//! The core's event history, followed live across node failures.
//!
//! A node that restarts keeps its state but not the events that led to it, so a history
//! read from one node at the end of a drill that restarted every node would have holes.
//! An [`EventTap`] watches one node at a time from the drill's start and, whenever that
//! node's stream ends (killed, restarted, told to avoid it), resumes on another node from
//! the last event it holds. Events are numbered by (log index, ordinal) and every replica
//! produces the same ones, so the result is the one history of the log, without gaps or
//! repeats — or an error saying no node could continue it.

use banyan_env::{BeginOnDrop, Shutdown};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_proto::v1::contact_center_client::ContactCenterClient;
use banyan_proto::v1::{Event, WatchEventsRequest};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::nodes::Nodes;
use crate::wait::wait_until;

#[derive(Default)]
struct Held {
    events: Vec<Event>,
    /// Why the tap gave up, if it did.
    broken: Option<String>,
}

/// A running tap on the events of `ids`, from a log index on.
pub struct EventTap {
    held: Arc<Mutex<Held>>,
    avoid: watch::Sender<BTreeSet<u64>>,
    stop: Shutdown,
    /// A tap dropped without [`stop`](Self::stop) ends too.
    _stop_on_drop: BeginOnDrop,
    task: JoinHandle<()>,
}

impl EventTap {
    /// Follows the events of the nodes `ids` from log index `from` on.
    pub fn start(nodes: Nodes, ids: Vec<u64>, from: u64) -> Self {
        let held: Arc<Mutex<Held>> = Arc::default();
        let (avoid, _) = watch::channel(BTreeSet::new());
        let stop = Shutdown::new();
        let task = tokio::spawn(follow(
            nodes,
            ids,
            from,
            held.clone(),
            avoid.subscribe(),
            stop.clone(),
        ));
        Self {
            held,
            avoid,
            _stop_on_drop: stop.begin_on_drop(),
            stop,
            task,
        }
    }

    /// Moves off node `id` (before it is paused, say: a frozen node ends no stream) and
    /// stays off it until [`allow`](Self::allow).
    pub fn avoid(&self, id: u64) {
        self.avoid.send_modify(|set| {
            set.insert(id);
        });
    }

    /// Lets the tap follow node `id` again, once it is back (undoes [`avoid`](Self::avoid)).
    pub fn allow(&self, id: u64) {
        self.avoid.send_modify(|set| {
            set.remove(&id);
        });
    }

    /// The log index of the last event held (0 before the first).
    pub fn last_index(&self) -> u64 {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.events.last().map_or(0, |e| e.index)
    }

    /// Waits until the tap holds every event up to log index `index`: until it holds one
    /// past it. (A write after the final reads makes sure there is one.)
    pub async fn wait_past(&self, index: u64, timeout: Duration) -> anyhow::Result<()> {
        wait_until(
            &format!("the event tap to pass log index {index}"),
            timeout,
            || {
                let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                let last = held.events.last().map_or(0, |e| e.index);
                let done = held.broken.is_some() || last > index;
                async move { done.then_some(()) }
            },
        )
        .await?;
        match self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .broken
            .clone()
        {
            Some(why) => anyhow::bail!("the event tap broke: {why}"),
            None => Ok(()),
        }
    }

    /// Stops following and returns the history, or why it could not be followed whole.
    pub async fn stop(self) -> anyhow::Result<Vec<Event>> {
        self.stop.begin();
        let _ = self.task.await;
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        match held.broken {
            Some(why) => anyhow::bail!("the event tap broke: {why}"),
            None => Ok(held.events),
        }
    }
}

async fn follow(
    nodes: Nodes,
    ids: Vec<u64>,
    from: u64,
    held: Arc<Mutex<Held>>,
    mut avoid: watch::Receiver<BTreeSet<u64>>,
    stop: Shutdown,
) {
    // No node would take a subscription for this long: give up and say so.
    const PATIENCE: Duration = Duration::from_secs(120);
    let mut turn = 0usize;
    let mut stuck_since = tokio::time::Instant::now();
    while !stop.is_begun() {
        let avoided = avoid.borrow_and_update().clone();
        let candidates: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !avoided.contains(id))
            .collect();
        if candidates.is_empty() || stuck_since.elapsed() > PATIENCE {
            if stuck_since.elapsed() > PATIENCE {
                held.lock().unwrap_or_else(|p| p.into_inner()).broken = Some(format!(
                    "no node could continue the history for {PATIENCE:?}"
                ));
                return;
            }
            tokio::select! {
                _ = avoid.changed() => {}
                () = stop.begun() => {}
            }
            continue;
        }
        let id = candidates[turn % candidates.len()];
        turn += 1;
        let last = {
            let held = held.lock().unwrap_or_else(|p| p.into_inner());
            held.events.last().map(|e| (e.index, e.ordinal))
        };
        let Ok(addr) = nodes.addr(id) else { continue };
        let Ok(channel) = banyan_client::channel(nodes.security(), &addr) else {
            continue;
        };
        let mut request = tonic::Request::new(WatchEventsRequest {
            from_index: last.map_or(from, |(index, _)| index),
            ..Default::default()
        });
        banyan_client::authorize(nodes.security(), &mut request);
        let mut client = ContactCenterClient::new(channel);
        let subscribe = tokio::time::timeout(Duration::from_secs(2), client.watch_events(request));
        let mut stream = match subscribe.await {
            Ok(Ok(response)) => {
                stuck_since = tokio::time::Instant::now();
                response.into_inner()
            }
            // Down, paused, or no longer holding the events we need: try the next node.
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = stop.begun() => {}
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(event)) => {
                        let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                        let newer = held
                            .events
                            .last()
                            .is_none_or(|l| (event.index, event.ordinal) > (l.index, l.ordinal));
                        if newer {
                            held.events.push(event);
                        }
                    }
                    // Ended or broken: resume elsewhere from what is held.
                    _ => break,
                },
                _ = avoid.changed() => {
                    if avoid.borrow_and_update().contains(&id) {
                        break;
                    }
                }
                () = stop.begun() => return,
            }
        }
    }
}
