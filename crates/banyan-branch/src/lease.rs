//! The branch's side of its site's lease (DESIGN.md §2, invariant 2).
//!
//! Every TTL/3 the branch renews the lease at the core, stamping the renewal with its own
//! wall clock at the moment it sends it; the core lets the lease run TTL from that stamp.
//! The branch remembers, on its monotonic clock, when it sent the last renewal the core
//! accepted. Only once TTL plus the maximum clock skew has passed since then is the lease
//! certainly lapsed at the core, and only then may the branch route on its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use banyan_client::{Client, RetryPolicy};
use banyan_proto::v1::{BranchMode, RenewLeaseRequest};
use banyan_raft::Outbox;
use tokio::sync::watch;

use crate::config::BranchConfig;

/// The lease as the branch knows it. Cheap to clone.
#[derive(Clone)]
pub struct Lease {
    state: Arc<Mutex<LeaseState>>,
    stop: watch::Sender<bool>,
    ttl: Duration,
    skew: Duration,
    /// When this process started: a lease renewed by an earlier run of this node may
    /// still hold at the core, for up to TTL from that run's last renewal.
    started: Instant,
}

#[derive(Default)]
struct LeaseState {
    /// When (monotonic) the branch sent the last renewal the core accepted.
    last_accepted_send: Option<Instant>,
    /// The core's answer to the last attempt, for the status.
    last_error: Option<String>,
}

impl Lease {
    pub fn new(config: &BranchConfig) -> Self {
        Self {
            state: Arc::default(),
            stop: watch::channel(false).0,
            ttl: config.lease_ttl,
            skew: config.max_clock_skew,
            started: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the core may still be routing to this site's agents: a renewal it accepted
    /// was sent less than TTL plus the clock skew ago, or, before any was accepted, this
    /// process started less than that ago (the run before it may have renewed just
    /// before it stopped). Only monotonic time counts: a wall clock running ahead must not
    /// make the branch route alone while the core still routes to its agents.
    pub fn may_be_held(&self) -> bool {
        let since = self
            .lock()
            .last_accepted_send
            .unwrap_or(self.started)
            .elapsed();
        since < self.ttl + self.skew
    }

    /// Time since the branch sent the last renewal the core accepted.
    pub fn since_last_renewal(&self) -> Option<Duration> {
        self.lock().last_accepted_send.map(|sent| sent.elapsed())
    }

    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Forgets the failures of an outage the branch has reconciled, so it renews before it
    /// judges the core unreachable again.
    pub fn clear_error(&self) {
        self.lock().last_error = None;
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Renews the lease every TTL/3 until stopped.
pub async fn renew_forever(
    lease: Lease,
    config: BranchConfig,
    outbox: Arc<Outbox>,
    mode: Arc<crate::autonomy::ModeCell>,
    identity: banyan_raft::Identity,
) {
    let every = config.lease_ttl / 3;
    // Each attempt must finish within its period: a renewal that arrives late is refused
    // anyway, and the next one carries a fresh stamp.
    let policy = RetryPolicy {
        attempt_timeout: every,
        total_timeout: every,
        pause: Duration::from_millis(50),
        max_attempts: 0,
        // Only the addresses given in --core, like the branch's other calls to the core.
        follow_leader: false,
    };
    let client = match Client::new(&config.core, policy, &config.security) {
        Ok(client) => {
            // The core refuses the renewals of a branch of another cluster.
            client.name_cluster(move || identity.cluster_id());
            client
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot renew the site lease");
            return;
        }
    };
    let mut stopped = lease.stop.subscribe();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.changed() => return,
        }
        // Autonomous or reconciling: no renewal until the core has the branch's work, or
        // the core would route to agents the branch is routing to.
        if mode.get() != crate::autonomy::Mode::Connected {
            continue;
        }
        let sent = Instant::now();
        let request = RenewLeaseRequest {
            site_id: config.site.clone(),
            node_id: config.id,
            sent_at_ms: wall_clock_ms(),
            ttl_ms: config.lease_ttl.as_millis() as i64,
            mode: BranchMode::Connected.into(),
            journal_backlog: outbox.backlog(),
            request_id: String::new(),
        };
        match client.renew_lease(request).await {
            Ok(_) => {
                let mut state = lease.lock();
                state.last_accepted_send = Some(sent);
                state.last_error = None;
            }
            Err(status) => {
                tracing::warn!(%status, "lease renewal failed");
                lease.lock().last_error = Some(status.message().to_owned());
            }
        }
    }
}
