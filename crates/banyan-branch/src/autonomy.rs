//! Autonomous mode: a branch that cannot reach the core keeps its center running, and
//! hands what it did to the core when the core is back (DESIGN.md §2, invariants 2 and 4).
//!
//! ```text
//!  Connected ──lease certainly lapsed (TTL + skew since the last accepted renewal)
//!      ^         and the core not answering──> Autonomous ──core answers──> Reconciling
//!      └───────────── import applied at the core (once per journal sequence) ──────┘
//! ```
//!
//! In autonomous mode the branch routes with `State::branch_view` (its site only) and
//! writes every command to its journal, on disk before it answers. Reconciling sends the
//! core one `ImportBranch` covering the journal; the core applies each sequence once.

use banyan_api::ApiError;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_api::Committed;
use banyan_domain::{Action, BranchImport, Command, Stamped};
use banyan_events::EventFeed;
use banyan_raft::AppliedState;

use crate::alone::SiteAlone;

use crate::node::Inner;

/// How often a branch on its own asks the core whether it is back, and runs its due
/// timers. Connected, the branch waits for what can change its mode instead (a renewal's
/// outcome, the moment its lease certainly lapses, and at most this often, an applied
/// entry).
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long a branch whose import the core refused waits before it sends the next one:
/// the first wait, doubled after every refusal in a row up to the last. Some causes go
/// away by themselves (an agent the core still had at capacity finishes the call); others
/// need the operator, who fixes them and restarts the branch, which tries at once.
pub(crate) const RETRY_REFUSED_FIRST: Duration = Duration::from_secs(1);
pub(crate) const RETRY_REFUSED_MAX: Duration = Duration::from_secs(300);

/// Whose word the branch serves its site by: the core's, its own, or its own while the
/// core takes over what it did alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads from the replica, writes through the core's leader; the normal case.
    Connected,
    /// Cut off with the lease certainly lapsed: routes its site alone, journal on disk.
    Autonomous,
    /// The core answers again: the journal's import is on its way; writes are refused
    /// (`UNAVAILABLE`, retry) until the core has applied it.
    Reconciling,
}

/// The branch's mode, shared by its tasks.
#[derive(Debug, Default)]
pub struct ModeCell(AtomicU8);

impl ModeCell {
    /// The mode now; it can change as soon as this returns.
    pub fn get(&self) -> Mode {
        match self.0.load(Ordering::SeqCst) {
            1 => Mode::Autonomous,
            2 => Mode::Reconciling,
            _ => Mode::Connected,
        }
    }

    fn set(&self, mode: Mode) {
        let value = match mode {
            Mode::Connected => 0,
            Mode::Autonomous => 1,
            Mode::Reconciling => 2,
        };
        self.0.store(value, Ordering::SeqCst);
    }
}

/// The branch's mode and, while it is on its own, the state it serves.
#[derive(Default)]
pub(crate) struct ModeState {
    /// Connected, on its own, or handing over; shared with the lease renewals.
    pub(crate) cell: Arc<ModeCell>,
    /// While cut off: the site's own state, advanced by the branch's journal.
    local: std::sync::RwLock<Option<SiteAlone>>,
}

impl ModeState {
    pub(crate) fn get(&self) -> Mode {
        self.cell.get()
    }

    fn set(&self, mode: Mode) {
        self.cell.set(mode);
    }
}

/// Whether the replica shows branch node `node` holding `site`'s lease, lapsed or not. A
/// released lease (holder 0) is nobody's until a renewal takes it.
pub(crate) fn holds_lease(replica: &AppliedState, site: &str, node: u64) -> bool {
    replica
        .read()
        .domain
        .site(site)
        .filter(|s| s.lease_expires_ms.is_some())
        .is_some_and(|s| s.branch.is_some_and(|b| b.node_id == node))
}

impl Inner {
    /// The state the branch serves: its own while autonomous, else the replica.
    pub(crate) fn serving(&self) -> AppliedState {
        self.local()
            .map_or_else(|| self.replica.clone(), |l| l.view().clone())
    }

    /// The events of the state the branch serves.
    pub(crate) fn serving_events(&self) -> EventFeed {
        self.local()
            .map_or_else(|| self.replica_events.clone(), |l| l.events().clone())
    }

    fn local(&self) -> Option<SiteAlone> {
        self.mode
            .local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_local(&self, state: Option<SiteAlone>) {
        *self.mode.local.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Applies a command on the branch's own state: on disk in the journal first, then
    /// applied; the answer follows both.
    pub(crate) async fn submit_local(&self, mut command: Command) -> Result<Committed, ApiError> {
        let site = self.config.site.clone();
        match &mut command.action {
            Action::CreateContact(input) => {
                if input.origin_site.is_empty() {
                    input.origin_site = site.clone();
                }
                if input.origin_site != site {
                    return Err(ApiError::from(banyan_domain::DomainError::precondition(
                        "site",
                        format!("this branch serves {site} on its own while the core is unreachable"),
                    )));
                }
                if input.id.is_empty() {
                    input.id = crate::node::fresh_contact_id("local", &site, self.config.id);
                }
            }
            Action::SetAgentPresence { .. }
            | Action::AgentLogin { .. }
            | Action::AgentDisconnected { .. }
            | Action::AcceptOffer { .. }
            | Action::RejectOffer { .. }
            | Action::EndContact { .. }
            | Action::CompleteContact { .. }
            | Action::AbandonContact { .. }
            | Action::Tick => {}
            _ => {
                return Err(ApiError::unavailable(
                    "the core is unreachable: this branch serves contacts and agents on its own, nothing else",
                ))
            }
        }
        let _order = self.journal.order.lock().await;
        let Some(local) = self.local() else {
            return Err(ApiError::unavailable(
                "the branch is switching modes; retry shortly",
            ));
        };
        let at_ms = (self.clock)().max(local.read().domain.clock_ms());
        let stamped = Stamped { at_ms, command };
        let bytes = banyan_raft::codec::encode(&stamped);
        // A branch on a fresh data directory (a replacement) starts its journal at 1; the
        // core, which keys reconciliation by site, would take entries up to what it already
        // reconciled for the site as applied and drop them. Continue past that instead.
        self.journal
            .entries
            .advance_past(self.replica.read().domain.reconciled_seq(&self.config.site));
        let seq = self
            .journal
            .entries
            .push(&bytes)
            .await
            .map_err(|e| ApiError::unavailable(format!("writing the journal: {e}")))?;
        match local.apply(seq, &stamped) {
            Ok(events) => Ok(Committed { index: seq, events }),
            Err(e) => Err(banyan_api::errors::invalid(e)),
        }
    }

    /// After a restart with a journal not yet handed to the core: rebuild the site's own
    /// state from the replica and the journal, and carry on autonomous.
    ///
    /// A journal entry or an accept record that cannot be read stops the branch with an
    /// error naming it: each is a write the branch acknowledged, and skipping it would lose
    /// it without a trace (the operator restores the data directory or takes the entry
    /// out knowingly).
    pub(crate) fn resume_journal(&self) -> Result<(), String> {
        // Entries the core already applied (an import landed just before the restart) are
        // in the replica's state already; replaying them would apply them twice. The next
        // reconcile forgets them.
        let done = self.replica.read().domain.reconciled_seq(&self.config.site);
        let pending: Vec<(u64, Vec<u8>)> = self
            .journal
            .entries
            .pending(usize::MAX)
            .map_err(|e| format!("reading the journal: {e}"))?
            .into_iter()
            .filter(|(seq, _)| *seq > done)
            .collect();
        let mut entries = Vec::with_capacity(pending.len());
        for (seq, bytes) in &pending {
            let stamped = banyan_raft::codec::decode::<Stamped>(bytes)
                .map_err(|e| format!("journal entry {seq} cannot be read: {e}"))?;
            entries.push((*seq, stamped));
        }
        if entries.is_empty() {
            return Ok(());
        }
        // Rebuilding the site's own state rests on the accepts in doubt too.
        self.accepts.check()?;
        let local = SiteAlone::new(self.view(), self.replica.history());
        for (seq, stamped) in &entries {
            // A refusal replays as a refusal: the branch answered it so the first time.
            let _ = local.apply(*seq, stamped);
        }
        tracing::info!(
            entries = pending.len(),
            "resumed autonomous mode from the journal"
        );
        self.set_local(Some(local));
        self.mode.set(Mode::Autonomous);
        Ok(())
    }

    /// The replicated state narrowed to this branch's site, with the accepts in doubt.
    fn view(&self) -> banyan_domain::State {
        let in_doubt: Vec<(String, String)> = self
            .accepts
            .in_doubt()
            .into_iter()
            .map(|(_, accept)| accept)
            .collect();
        self.replica
            .read()
            .domain
            .branch_view(&self.config.site, &in_doubt)
    }

    /// Whether the branch may route on its own now: its site held a lease at the core (so
    /// the core fences the site's agents when it lapses), the lease has certainly lapsed,
    /// and the last renewal attempt failed.
    ///
    /// The lease must also be this node's: a lease another branch node of the site holds is
    /// that node's to route with, so two live branches for one site never both route.
    fn should_go_autonomous(&self, now: tokio::time::Instant) -> bool {
        holds_lease(&self.replica, &self.config.site, self.config.id)
            && !self.lease.may_be_held_at(now)
            && self.lease.last_error().is_some()
    }

    fn go_autonomous(&self) {
        self.set_local(Some(SiteAlone::new(self.view(), self.replica.history())));
        self.mode.set(Mode::Autonomous);
        // Agent sessions move from the replica's events to the site's own.
        self.replica_events.close_subscribers();
        tracing::warn!(
            site = %self.config.site,
            since_last_renewal = ?self.lease.since_last_renewal(),
            "core unreachable and lease lapsed: routing this site on its own"
        );
    }

    /// Hands the journal's work to the core; back to connected mode once applied.
    ///
    /// An import whose answer never came may have landed all the same. It is sent again,
    /// unchanged, before anything else: the core answers a repeat from its request log
    /// (or applies it now, if it never arrived), and only then is what it covered counted
    /// as done. Otherwise a contact the branch created, imported once, would be offered to
    /// the core again as new, and the core would keep its first copy over what the
    /// branch's agent did with it since.
    async fn reconcile(&self) -> Result<(), ApiError> {
        let _guard = self.journal.order.lock().await;
        self.mode.set(Mode::Reconciling);
        let handed = self.hand_over().await;
        if handed.is_err() {
            // The core did not take it all: the branch keeps routing on its own.
            self.mode.set(Mode::Autonomous);
        }
        handed
    }

    /// The body of [`reconcile`](Self::reconcile), under the journal lock: on `Ok` the
    /// branch is connected again.
    async fn hand_over(&self) -> Result<(), ApiError> {
        let Some(local) = self.local() else {
            self.mode.set(Mode::Connected);
            return Ok(());
        };
        let unanswered = self
            .journal
            .unanswered_import
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((upto_seq, command)) = unanswered {
            if let Err(status) = self.forward(&command).await {
                self.remember_unanswered(&status, upto_seq, command);
                return Err(status);
            }
            self.forget_journal_upto(upto_seq).await?;
        }
        // What the core already shows reconciled (a restart lost the unanswered import).
        let done = self.replica.read().domain.reconciled_seq(&self.config.site);
        self.forget_journal_upto(done).await?;
        let pending = self
            .journal
            .entries
            .pending(usize::MAX)
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        if pending.is_empty() {
            // Everything the branch did alone is at the core already.
            self.back_through_the_core(&local);
            tracing::info!(site = %self.config.site, upto_seq = done, "reconciled with the core");
            return Ok(());
        }
        let upto_seq = pending.last().map_or(done, |(seq, _)| *seq);
        // Every contact the branch created during this outage, also those an earlier
        // import already carried: the core lets the branch's copy stand in for its own
        // untaken one, and settles what the same agent did with it since.
        let mut created = self
            .journal
            .created_alone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        created.extend(created_in(&pending));
        let import = {
            let state = local.read();
            BranchImport {
                site: self.config.site.clone(),
                upto_seq,
                contacts: state.domain.contacts().cloned().collect(),
                agents: state
                    .domain
                    .agents()
                    .map(|a| (a.input.id.clone(), a.presence.clone()))
                    .collect(),
                created: created.into_iter().collect(),
            }
        };
        let command = Command::with_request_id(
            Action::ImportBranch(import),
            Some(format!(
                "reconcile/{}/{}/{upto_seq}",
                self.config.site, self.config.id
            )),
        );
        match self.forward(&command).await {
            Ok(committed) => {
                // Applied at the core: a journal not cleared now is cleared next time, as
                // the replica shows it reconciled.
                self.forget_journal_upto(upto_seq).await?;
                // The core has the truth about every accept now, and the replica shows it.
                for (seq, _) in self.accepts.in_doubt() {
                    self.accepts.forget(seq).await;
                }
                self.back_through_the_core(&local);
                tracing::info!(site = %self.config.site, upto_seq, index = committed.index, "reconciled with the core");
                Ok(())
            }
            Err(status) => {
                self.remember_unanswered(&status, upto_seq, command);
                Err(status)
            }
        }
    }

    /// Keeps an import whose outcome is unknown, to send again before anything else. A
    /// refusal is a definite answer: the branch keeps its journal and serves on alone, and
    /// sends the next import only after a wait that doubles with every refusal (see
    /// [`RETRY_REFUSED_FIRST`]), or at a restart, instead of committing a refused entry at
    /// the core every round.
    fn remember_unanswered(&self, status: &ApiError, upto_seq: u64, command: Command) {
        let definite = matches!(
            status.code(),
            tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition
                | tonic::Code::NotFound
                | tonic::Code::AlreadyExists
                | tonic::Code::ResourceExhausted
        );
        if definite {
            let mut refused = self
                .journal
                .import_refused
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let wait = refused
                .as_ref()
                .map_or(RETRY_REFUSED_FIRST, |r| (r.wait * 2).min(RETRY_REFUSED_MAX));
            tracing::error!(
                site = %self.config.site,
                upto_seq,
                %status,
                retry_in = ?wait,
                "the core refused this branch's import; the journal is kept and the site \
                 served alone"
            );
            *refused = Some(crate::journal::RefusedImport {
                why: format!("import up to journal entry {upto_seq} refused: {status}"),
                at: tokio::time::Instant::now(),
                wait,
            });
        } else {
            *self
                .journal
                .unanswered_import
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some((upto_seq, command));
        }
    }

    /// Serves through the core again: the site's own state is dropped, agent sessions move
    /// back to the replica's events.
    fn back_through_the_core(&self, local: &SiteAlone) {
        *self
            .journal
            .import_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.journal
            .created_alone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.set_local(None);
        self.lease.clear_error();
        self.mode.set(Mode::Connected);
        local.events().close_subscribers();
    }

    /// Forgets the journal entries up to `seq`: the core has applied them. The contacts
    /// they created are remembered until the outage is over.
    async fn forget_journal_upto(&self, seq: u64) -> Result<(), ApiError> {
        let pending = self
            .journal
            .entries
            .pending(usize::MAX)
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let done: Vec<(u64, Vec<u8>)> = pending
            .into_iter()
            .take_while(|(entry, _)| *entry <= seq)
            .collect();
        self.journal
            .created_alone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(created_in(&done));
        for (entry, _) in done {
            self.journal
                .entries
                .delivered(entry)
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
        }
        Ok(())
    }
}

/// The contacts the journal entries `entries` created.
fn created_in(entries: &[(u64, Vec<u8>)]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|(_, bytes)| banyan_raft::codec::decode::<Stamped>(bytes).ok())
        .filter_map(|stamped| match stamped.command.action {
            Action::CreateContact(input) => Some(input.id),
            _ => None,
        })
        .collect()
}

/// Switches modes as the core comes and goes, and runs the site's timers while autonomous.
/// Ends once the branch stops.
pub(crate) async fn watch_forever(inner: Arc<Inner>) {
    let policy = banyan_client::RetryPolicy::once(Duration::from_millis(800));
    let Ok(probe) = banyan_client::Client::new(&inner.config.core, policy, &inner.config.security)
    else {
        return;
    };
    let mut applied = inner.replica.applied_index_changes();
    let mut outcomes = inner.lease.outcomes();
    let mut clock_warned = false;
    loop {
        if inner.mode.get() == Mode::Connected {
            // The verdict and the deadline that can change it, as of one instant: a
            // lapse just after the verdict still wakes the watch (once: then it is past).
            let now = tokio::time::Instant::now();
            let lapse = inner.lease.certainly_lapsed_at();
            if inner.should_go_autonomous(now) {
                inner.go_autonomous();
                continue;
            }
            let lapse = (lapse > now).then_some(lapse);
            inner.accepts.forget_settled(&inner.replica).await;
            let last_pass = tokio::time::Instant::now();
            // Nothing else can change the verdict: wait for one of these. The replica
            // moves with every write, so its changes are looked at once per PROBE_EVERY.
            let replica_moved = async {
                tokio::time::sleep_until(last_pass + PROBE_EVERY).await;
                applied.changed().await
            };
            tokio::select! {
                () = inner.shutdown.begun() => return,
                changed = replica_moved => if changed.is_err() { return },
                changed = outcomes.changed() => if changed.is_err() { return },
                () = sleep_until(lapse) => {}
            }
            continue;
        }
        tokio::select! {
            () = inner.shutdown.begun() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
        match inner.mode.get() {
            Mode::Connected | Mode::Reconciling => {}
            Mode::Autonomous => {
                let due = inner
                    .local()
                    .and_then(|l| l.read().domain.next_due_ms())
                    .is_some_and(|due| due <= (inner.clock)());
                if due {
                    // The branch's own timers, named in the audit trail like the core's.
                    let me = banyan_domain::Principal::Branch {
                        node: inner.config.id,
                        site: inner.config.site.clone(),
                    };
                    let _ = inner.submit_local(Command::new(Action::Tick).by(me)).await;
                }
                let holding_off = inner
                    .journal
                    .import_refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .is_some_and(|r| r.at.elapsed() < r.wait);
                if holding_off {
                    continue;
                }
                let sent = (inner.clock)();
                let Ok(status) = probe.status().await else {
                    continue;
                };
                // Its clock against the answering core node's, the round trip halved. A
                // branch whose clock is off past the budget would have its renewals
                // refused once connected, leaving the site fenced with nobody routing
                // it: it keeps serving alone until its clock is right.
                let offset_ms = (sent + (inner.clock)()) / 2 - status.wall_clock_ms;
                let clock_off = banyan_domain::site::check_clock_offset(
                    offset_ms.saturating_add(status.wall_clock_ms),
                    status.wall_clock_ms,
                );
                if let (true, Err(refused)) = (status.wall_clock_ms != 0, clock_off) {
                    if !clock_warned {
                        tracing::error!(
                            offset_ms,
                            %refused,
                            "this branch's clock is off the core's past the budget: serving \
                             the site alone until it is fixed"
                        );
                        clock_warned = true;
                    }
                    continue;
                }
                clock_warned = false;
                if status.leader_id != 0 {
                    if let Err(status) = inner.reconcile().await {
                        tracing::warn!(%status, "reconciliation failed; still autonomous");
                    }
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever for `None`.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
