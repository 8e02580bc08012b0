//! A steady stream of contacts into one entry point (a core node or a branch), every
//! `CreateContact` recorded as a [`ContactOp`] for the contact checker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banyan_client::Client;
use banyan_proto::v1 as pb;

use crate::contacts::ContactOp;
use crate::history::{Outcome, Sample};

/// A running contact feed. Request ids are `{prefix}{n}`.
pub struct ContactFeed {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    ops: Arc<Mutex<Vec<(ContactOp, Sample)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ContactFeed {
    /// Sends `template` (with a fresh request id each time) through `client` about every
    /// `every`, one call at a time: a call that hangs holds the feed up, as it would a
    /// caller waiting in a phone system.
    pub fn start(
        client: Client,
        prefix: &str,
        template: pb::CreateContactRequest,
        every: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let ops: Arc<Mutex<Vec<(ContactOp, Sample)>>> = Arc::default();
        let task = {
            let (stop, acknowledged, ops) = (stop.clone(), acknowledged.clone(), ops.clone());
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut pace = tokio::time::interval(every);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for n in 0u64.. {
                    pace.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let request_id = format!("{prefix}{n}");
                    let invoked = Instant::now();
                    let result = client
                        .create_contact(pb::CreateContactRequest {
                            request_id: request_id.clone(),
                            ..template.clone()
                        })
                        .await;
                    let op = ContactOp::of(request_id, &result);
                    let outcome = op.outcome;
                    if outcome == Outcome::Ok {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    ops.lock().unwrap_or_else(|p| p.into_inner()).push((
                        op,
                        Sample {
                            invoked,
                            completed: Instant::now(),
                            outcome,
                        },
                    ));
                }
            })
        };
        Self {
            stop,
            acknowledged,
            ops,
            task,
        }
    }

    /// Contacts acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// The live count of acknowledged contacts, for a progress display.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.acknowledged.clone()
    }

    /// Waits until `more` contacts beyond those acknowledged now have been acknowledged.
    pub async fn wait_more(&self, more: u64, timeout: Duration) -> anyhow::Result<()> {
        let target = self.acknowledged() + more;
        crate::wait::wait_until(
            &format!("{target} acknowledged contacts"),
            timeout,
            || async { (self.acknowledged() >= target).then_some(()) },
        )
        .await
    }

    /// Stops the feed after its call in flight and returns every operation it made.
    pub async fn stop(self) -> Vec<ContactOp> {
        self.stop_timed()
            .await
            .into_iter()
            .map(|(op, _)| op)
            .collect()
    }

    /// Like [`stop`](Self::stop), with when each operation was sent and answered.
    pub async fn stop_timed(self) -> Vec<(ContactOp, Sample)> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ops
    }
}
