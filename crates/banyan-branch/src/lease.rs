//! The branch's side of its site's lease (DESIGN.md §2, invariant 2).
//!
//! Every TTL/3 the branch renews the lease at the core, stamping the renewal with its own
//! wall clock at the moment it sends it; the core lets the lease run TTL from that stamp.
//! The branch remembers, on its monotonic clock, when it sent the last renewal the core
//! accepted, when it sent the last one whose fate it does not know (one that reached the
//! core but whose answer was lost, or that a leader appended and commits after its quorum
//! returns, renews the lease all the same), and when it sent the one still on its way.
//! Only once TTL plus the maximum clock skew has passed since the latest of them is the
//! lease certainly lapsed at the core, and only then may the branch route on its own. A
//! renewal that never left (no connection could be made) or that the core refused counts
//! for nothing.
//!
//! Renewals without a verdict could hold the lease for ever (a certificate the core
//! refuses after the handshake, a core that takes requests and never answers). So once no
//! renewal has been accepted for a whole TTL, the branch stops renewing until the lease
//! has certainly lapsed: at most two TTLs plus the skew after the last accepted renewal,
//! and TTL plus the skew when every failure is a verdict.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Tokio's monotonic clock, so that tests can run the lease on paused time.
use tokio::time::Instant;

use crate::outbox::Outbox;
use banyan_client::{Client, RetryPolicy};
use banyan_env::{Clock, Shutdown};
use banyan_proto::v1::{BranchMode, RenewLeaseRequest};
use tokio::sync::watch;

use crate::config::BranchConfig;

/// The lease as the branch knows it. Cheap to clone.
#[derive(Clone)]
pub struct Lease {
    state: Arc<Mutex<LeaseState>>,
    /// Counts the renewals whose outcome is recorded, so the mode watch wakes on each.
    outcomes: Arc<watch::Sender<u64>>,
    /// Begun when the branch stops: renewals end.
    shutdown: Shutdown,
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
    /// When (monotonic) the branch sent the last renewal that may have been applied
    /// without the branch hearing so.
    last_unknown_send: Option<Instant>,
    /// When (monotonic) the branch sent the renewal still waiting for its answer.
    in_flight: Option<Instant>,
    /// The core's answer to the last attempt, for the status.
    last_error: Option<String>,
}

/// What became of one renewal.
#[derive(Debug)]
enum Outcome {
    Accepted,
    /// Refused, or never delivered: the core holds nothing more because of it.
    Failed(String),
    /// No verdict: the core may have applied it.
    Unknown(String),
}

/// The times a lease is judged by.
#[derive(Clone, Copy)]
struct Terms {
    /// When this process started.
    started: Instant,
    ttl: Duration,
    /// TTL plus the maximum clock skew: how long a renewal may hold at the core.
    held: Duration,
}

impl LeaseState {
    fn sending(&mut self, sent: Instant) {
        self.in_flight = Some(sent);
    }

    fn record(&mut self, sent: Instant, outcome: Outcome) {
        self.in_flight = None;
        match outcome {
            Outcome::Accepted => {
                self.last_accepted_send = Some(sent);
                self.last_error = None;
            }
            Outcome::Failed(why) => self.last_error = Some(why),
            Outcome::Unknown(why) => {
                self.last_unknown_send = Some(sent);
                self.last_error = Some(why);
            }
        }
    }

    /// Whether, at `now`, the core may still hold a lease this process renewed (or, before
    /// any renewal, the run before it, whose last renewal came before `started`).
    fn may_be_held(&self, terms: Terms, now: Instant) -> bool {
        now < self.certainly_lapsed_at(terms)
    }

    /// From when on the core certainly holds nothing this process (or, before any
    /// renewal, the run before it) renewed.
    fn certainly_lapsed_at(&self, terms: Terms) -> Instant {
        let last = self
            .last_accepted_send
            .max(self.last_unknown_send)
            .max(self.in_flight)
            .unwrap_or(terms.started);
        last + terms.held
    }

    /// Whether to send a renewal at `now`; `holds` says whether the replica shows this node
    /// holding its site's lease.
    fn should_renew(&self, terms: Terms, now: Instant, holds: bool) -> bool {
        let confirmed = self.last_accepted_send.unwrap_or(terms.started);
        if self.last_error.is_none() || now.saturating_duration_since(confirmed) < terms.ttl {
            return true;
        }
        // Nothing accepted for a whole TTL: no more renewals of unknown fate; the lease
        // runs out. Once it has, a site this node holds is the branch's to route alone;
        // one it does not hold has nothing to fence, and renewing may take it.
        !self.may_be_held(terms, now) && !holds
    }
}

impl Lease {
    /// A lease with the configured TTL and skew, counted as possibly held from now, since
    /// an earlier run may have renewed it; renewals end once `shutdown` begins.
    pub fn new(config: &BranchConfig, shutdown: Shutdown) -> Self {
        Self::with_terms(config.lease_ttl, config.max_clock_skew, shutdown)
    }

    fn with_terms(ttl: Duration, skew: Duration, shutdown: Shutdown) -> Self {
        Self {
            state: Arc::default(),
            outcomes: Arc::new(watch::channel(0).0),
            shutdown,
            ttl,
            skew,
            started: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn terms(&self) -> Terms {
        Terms {
            started: self.started,
            ttl: self.ttl,
            held: self.ttl + self.skew,
        }
    }

    /// Whether the core may still be routing to this site's agents: a renewal it accepted,
    /// one it may have applied unanswered, or one on its way was sent less than TTL plus
    /// the clock skew ago, or, before any was sent, this process started less than that
    /// ago (the run before it may have renewed just before it stopped). Only monotonic
    /// time counts: a wall clock running ahead must not make the branch route alone while
    /// the core still routes to its agents.
    pub fn may_be_held(&self) -> bool {
        self.may_be_held_at(Instant::now())
    }

    /// [`may_be_held`](Self::may_be_held) as of `now`.
    pub fn may_be_held_at(&self, now: Instant) -> bool {
        self.lock().may_be_held(self.terms(), now)
    }

    /// Time since the branch sent the last renewal the core accepted.
    pub fn since_last_renewal(&self) -> Option<Duration> {
        self.lock().last_accepted_send.map(|sent| sent.elapsed())
    }

    /// Why the last renewal failed, or `None` after an accepted one: the branch goes alone
    /// only after a failure.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Forgets the failures of an outage the branch has reconciled, so it renews before it
    /// judges the core unreachable again.
    pub fn clear_error(&self) {
        self.lock().last_error = None;
    }

    /// When, at the latest, the lease as known now certainly lapses at the core (see
    /// [`may_be_held`](Self::may_be_held)); a renewal sent since moves it later.
    pub fn certainly_lapsed_at(&self) -> Instant {
        self.lock().certainly_lapsed_at(self.terms())
    }

    /// Changes each time a renewal's outcome is recorded.
    pub fn outcomes(&self) -> watch::Receiver<u64> {
        self.outcomes.subscribe()
    }

    fn record(&self, sent: Instant, outcome: Outcome) {
        self.lock().record(sent, outcome);
        self.outcomes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Renews the lease every TTL/3 until the branch stops, each renewal stamped with
/// `clock`. `holds` says whether the replica shows this node holding its site's lease.
pub async fn renew_forever(
    lease: Lease,
    config: BranchConfig,
    outbox: Arc<Outbox>,
    mode: Arc<crate::autonomy::ModeCell>,
    identity: banyan_raft::Identity,
    clock: Clock,
    holds: impl Fn() -> bool + Send + 'static,
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
        // A core that takes connections and never completes the TLS handshake (frozen, or
        // a line that fails one way) must fail a renewal as never delivered, not as one
        // without an answer: the connect and the handshake each get a third of the period.
        connect_timeout: Some(every / 3),
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
    let renew = || {
        let request = RenewLeaseRequest {
            site_id: config.site.clone(),
            node_id: config.id,
            sent_at_ms: clock(),
            ttl_ms: config.lease_ttl.as_millis() as i64,
            mode: BranchMode::Connected.into(),
            journal_backlog: outbox.backlog(),
            request_id: String::new(),
        };
        let client = client.clone();
        async move { judge(client.renew_lease_judged(request).await.map(drop)) }
    };
    let connected = || mode.get() == crate::autonomy::Mode::Connected;
    renew_every(&lease, every, connected, holds, renew).await;
}

/// The renewal loop: every `every`, while the branch is `connected` (autonomous or
/// reconciling, the core must not route to agents the branch is routing to) and the lease
/// [should be renewed](LeaseState::should_renew), sends one renewal by `renew` and
/// records its outcome against its send time. Ends once the branch stops.
async fn renew_every<R, F>(
    lease: &Lease,
    every: Duration,
    connected: impl Fn() -> bool,
    holds: impl Fn() -> bool,
    mut renew: R,
) where
    R: FnMut() -> F,
    F: Future<Output = Outcome>,
{
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = lease.shutdown.begun() => return,
        }
        if !connected() {
            continue;
        }
        let sent = Instant::now();
        {
            let mut state = lease.lock();
            if !state.should_renew(lease.terms(), sent, holds()) {
                continue;
            }
            state.sending(sent);
        }
        let outcome = renew().await;
        lease.record(sent, outcome);
    }
}

/// What the client's answer to a renewal means for the lease.
fn judge(answer: Result<(), banyan_client::Failed>) -> Outcome {
    match answer {
        Ok(()) => Outcome::Accepted,
        Err(failed) if failed.outcome_unknown => {
            tracing::warn!(
                status = %failed.status,
                "lease renewal unanswered: counted as held until its TTL runs out"
            );
            Outcome::Unknown(failed.status.message().to_owned())
        }
        Err(failed) => {
            tracing::warn!(status = %failed.status, "lease renewal failed");
            Outcome::Failed(failed.status.message().to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The renewal loop on paused time: three renewals accepted, one that reaches the core
    /// and whose answer is lost, then none delivered. The lease may be held until TTL plus
    /// the skew after the unanswered one was sent (not after the last accepted one), the
    /// branch stops renewing once nothing has been accepted for a whole TTL, and it does
    /// not take the lease up again while the replica shows the site as its own.
    #[tokio::test(start_paused = true)]
    async fn on_paused_time_the_fence_runs_from_the_last_renewal_that_may_have_landed() {
        let (ttl, skew) = (Duration::from_secs(3), Duration::from_millis(500));
        let shutdown = Shutdown::new();
        let lease = Lease::with_terms(ttl, skew, shutdown.clone());
        let start = Instant::now();
        let sends = Arc::new(Mutex::new(Vec::<Duration>::new()));
        let renew = {
            let sends = sends.clone();
            move || {
                let n = {
                    let mut sends = sends.lock().unwrap();
                    sends.push(start.elapsed());
                    sends.len()
                };
                async move {
                    match n {
                        1..=3 => Outcome::Accepted,
                        4 => Outcome::Unknown("the answer was lost".into()),
                        _ => Outcome::Failed("never delivered".into()),
                    }
                }
            }
        };
        let renewing = {
            let lease = lease.clone();
            tokio::spawn(async move { renew_every(&lease, ttl / 3, || true, || true, renew).await })
        };
        let seconds = |ms: u64| Duration::from_millis(ms);
        // The last accepted renewal went at 2 s, the unanswered one at 3 s: held until 6.5 s.
        tokio::time::sleep_until(start + seconds(6_400)).await;
        assert!(
            lease.may_be_held(),
            "held by the renewal whose answer was lost"
        );
        assert_eq!(lease.certainly_lapsed_at(), start + seconds(6_500));
        tokio::time::sleep_until(start + seconds(6_600)).await;
        assert!(!lease.may_be_held());
        tokio::time::sleep_until(start + seconds(20_000)).await;
        // Renewed at 0-4 s; from 5 s (a TTL after the last accepted one) no more.
        let sent: Vec<u64> = sends
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(sent, [0, 1_000, 2_000, 3_000, 4_000]);
        assert_eq!(lease.last_error().as_deref(), Some("never delivered"));
        shutdown.begin();
        renewing.await.unwrap();
    }

    fn terms(start: Instant) -> Terms {
        Terms {
            started: start,
            ttl: Duration::from_millis(3_000),
            held: Duration::from_millis(3_500),
        }
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_renewal_without_an_answer_holds_from_when_it_was_sent() {
        let start = Instant::now();
        let mut state = LeaseState::default();
        state.record(at(start, 1_000), Outcome::Accepted);
        state.record(at(start, 2_000), Outcome::Unknown("no answer".into()));
        // Past TTL + skew from the last answered renewal, within it from the unanswered one.
        assert!(state.may_be_held(terms(start), at(start, 5_000)));
        assert!(state.may_be_held(terms(start), at(start, 5_499)));
        assert!(!state.may_be_held(terms(start), at(start, 5_500)));
        assert_eq!(state.last_error.as_deref(), Some("no answer"));
    }

    #[test]
    fn a_renewal_on_its_way_holds_from_when_it_was_sent() {
        let start = Instant::now();
        let mut state = LeaseState::default();
        state.record(at(start, 1_000), Outcome::Accepted);
        state.record(
            at(start, 2_000),
            Outcome::Failed("connection refused".into()),
        );
        state.sending(at(start, 4_000));
        assert!(state.may_be_held(terms(start), at(start, 7_499)));
        state.record(at(start, 4_000), Outcome::Failed("no quorum".into()));
        assert!(!state.may_be_held(terms(start), at(start, 4_500)));
    }

    #[test]
    fn a_refused_or_undelivered_renewal_holds_nothing() {
        let start = Instant::now();
        let mut state = LeaseState::default();
        state.record(at(start, 1_000), Outcome::Accepted);
        state.record(
            at(start, 2_000),
            Outcome::Failed("connection refused".into()),
        );
        state.record(at(start, 3_000), Outcome::Failed("no quorum".into()));
        assert!(state.may_be_held(terms(start), at(start, 4_499)));
        assert!(!state.may_be_held(terms(start), at(start, 4_500)));
    }

    #[test]
    fn before_any_renewal_the_lease_of_the_previous_run_may_hold() {
        let start = Instant::now();
        let mut state = LeaseState::default();
        assert!(state.may_be_held(terms(start), at(start, 3_499)));
        assert!(!state.may_be_held(terms(start), at(start, 3_500)));
        state.record(at(start, 3_000), Outcome::Failed("refused".into()));
        assert!(!state.may_be_held(terms(start), at(start, 3_500)));
    }

    #[test]
    fn an_answer_after_an_unknown_outcome_moves_the_hold_forward_only() {
        let start = Instant::now();
        let mut state = LeaseState::default();
        state.record(at(start, 2_000), Outcome::Unknown("timed out".into()));
        state.record(at(start, 1_000), Outcome::Accepted);
        assert!(state.may_be_held(terms(start), at(start, 5_499)));
        assert_eq!(state.last_error, None);
    }

    /// Renewals that never get a verdict would otherwise hold the lease, and keep the
    /// branch from routing alone, for as long as they go on.
    #[test]
    fn renewals_of_unknown_fate_stop_a_ttl_after_the_last_accepted_one() {
        let start = Instant::now();
        let t = terms(start);
        let mut state = LeaseState::default();
        assert!(state.should_renew(t, at(start, 0), true));
        state.record(at(start, 0), Outcome::Accepted);
        for sent in [1_000, 2_000] {
            assert!(state.should_renew(t, at(start, sent), true));
            state.record(at(start, sent), Outcome::Unknown("no answer".into()));
        }
        // A TTL after the last accepted renewal: the branch waits for the lease to run out.
        assert!(!state.should_renew(t, at(start, 3_000), true));
        assert!(state.may_be_held(t, at(start, 5_499)));
        assert!(!state.may_be_held(t, at(start, 5_500)));
        // Lapsed: a site it holds is now the branch's to route alone, one it does not hold
        // is renewed again.
        assert!(!state.should_renew(t, at(start, 5_500), true));
        assert!(state.should_renew(t, at(start, 5_500), false));
    }

    #[test]
    fn one_lost_answer_does_not_stop_the_renewals() {
        let start = Instant::now();
        let t = terms(start);
        let mut state = LeaseState::default();
        state.record(at(start, 0), Outcome::Accepted);
        state.record(at(start, 1_000), Outcome::Unknown("no answer".into()));
        assert!(state.should_renew(t, at(start, 2_000), true));
        state.record(at(start, 2_000), Outcome::Accepted);
        assert!(state.should_renew(t, at(start, 5_000), true));
    }
}
