//! Client histories: every operation a workload sent, and what the client learned of it.
//!
//! An operation is `Ok` (the cluster acknowledged it: it must survive), `Failed` (the
//! cluster refused it: it must have changed nothing) or `Unknown` (no definite answer: a
//! timed-out write may still have committed). The [`checker`](crate::checker) judges the
//! final state of every node against a history.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banyan_client::Client;
use banyan_proto::v1::Customer;
use tonic::Code;

/// What the client knows about an operation's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The cluster acknowledged it, so it must survive every fault.
    Ok,
    /// The cluster refused it, so it must have changed nothing.
    Failed,
    /// No definite answer: it may or may not have taken effect, and either is allowed.
    Unknown,
}

impl Outcome {
    /// Classifies a gRPC reply: refusals are definite, transport trouble and timeouts are
    /// not.
    pub fn of<T>(result: &Result<T, tonic::Status>) -> Self {
        match result {
            Ok(_) => Outcome::Ok,
            Err(status) => match status.code() {
                Code::InvalidArgument
                | Code::NotFound
                | Code::AlreadyExists
                | Code::FailedPrecondition
                | Code::PermissionDenied
                | Code::ResourceExhausted
                | Code::OutOfRange => Outcome::Failed,
                _ => Outcome::Unknown,
            },
        }
    }
}

/// One client operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The customer the upsert wrote (each workload upsert writes a fresh id once).
    pub customer_id: String,
    /// What the client learned, which decides what the checker demands of it.
    pub outcome: Outcome,
    /// When it was sent and answered, relative to the workload's start.
    pub invoked: Duration,
    /// When the answer (or the give-up) came, relative to the workload's start.
    pub completed: Duration,
}

/// When one operation of any workload was sent and answered, and how it ended: what a
/// timeline of throughput and latency is drawn from.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was sent: places it on the timeline.
    pub invoked: Instant,
    /// When it was answered: with `invoked`, its latency.
    pub completed: Instant,
    /// How it ended, so failures and unknowns show on the timeline too.
    pub outcome: Outcome,
}

/// Everything a workload did, in completion order.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The operations, in the order their answers came.
    pub operations: Vec<Operation>,
}

impl History {
    /// How many operations ended with `outcome`, for the report's totals.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.operations
            .iter()
            .filter(|o| o.outcome == outcome)
            .count()
    }

    /// The operations the cluster acknowledged: the ones no fault may lose.
    pub fn acknowledged(&self) -> impl Iterator<Item = &Operation> {
        self.operations.iter().filter(|o| o.outcome == Outcome::Ok)
    }
}

/// A running workload of concurrent upserts, each of a fresh customer id.
pub struct WriteLoad {
    started: Instant,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    history: Arc<Mutex<History>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl WriteLoad {
    /// Starts `workers` writers; worker `i` uses `clients[i % clients.len()]`. Ids are
    /// `{prefix}-{worker}-{n}`.
    pub fn start(clients: Vec<Client>, workers: usize, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let history = Arc::new(Mutex::new(History::default()));
        let started = Instant::now();
        let workers = (0..workers)
            .map(|worker| {
                let client = clients[worker % clients.len()].clone();
                let (stop, acknowledged, history) =
                    (stop.clone(), acknowledged.clone(), history.clone());
                let prefix = prefix.to_owned();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("{prefix}-{worker}-{n}");
                        n += 1;
                        let invoked = started.elapsed();
                        let result = client
                            .upsert_customer(
                                Customer {
                                    id: id.clone(),
                                    name: format!("Load customer {id}"),
                                    ..Default::default()
                                },
                                None,
                            )
                            .await;
                        let outcome = Outcome::of(&result);
                        if outcome == Outcome::Ok {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        history
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .operations
                            .push(Operation {
                                customer_id: id,
                                outcome,
                                invoked,
                                completed: started.elapsed(),
                            });
                    }
                })
            })
            .collect();
        Self {
            started,
            stop,
            acknowledged,
            history,
            workers,
        }
    }

    /// The instant the operations' `invoked` and `completed` times count from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Writes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// The live count of acknowledged writes, for a progress display.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.acknowledged.clone()
    }

    /// Waits until at least `count` writes have been acknowledged.
    pub async fn wait_acknowledged(&self, count: u64, timeout: Duration) -> anyhow::Result<()> {
        crate::wait::wait_until(&format!("{count} acknowledged writes"), timeout, || async {
            (self.acknowledged() >= count).then_some(())
        })
        .await
    }

    /// Stops the writers, waits for their last operations, and returns the history.
    pub async fn stop(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            let _ = worker.await;
        }
        let history = self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        history
    }
}
