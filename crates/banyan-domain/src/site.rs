//! Sites (regional centers) and their leases: the fence that keeps the core and a cut-off
//! branch from routing to the same agents.
//!
//! A site that never held a lease is served by the core directly and is always routable.
//! Once a branch renews a lease for its site, the core routes to that site's agents only
//! while the lease is valid. The lease runs from when the branch *sent* the renewal, so a
//! renewal delayed in the network cannot stretch it.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::validate::{validate_id, validate_len, MAX_NAME_LEN};

/// Shortest and longest lease a branch may ask for.
pub const MIN_LEASE_MS: i64 = 500;
/// Longest lease a branch may ask for: a branch that dies holding one fences its site's agents off
/// from the core until it ends.
pub const MAX_LEASE_MS: i64 = 10 * 60 * 1000;
/// The clock-offset budget: how far ahead of the cluster clock a branch's clock may run.
/// A renewal sent further ahead is refused, naming the offset: the core would let the
/// lease run that much longer than the branch believes, and both could route to the
/// site's agents. A branch's `--max-clock-skew` must cover twice this (the budget plus the
/// network delay of a renewal).
pub const MAX_CLOCK_OFFSET_MS: i64 = 250;

/// How far behind the receiving node's clock a renewal's send time may be: the clock
/// budget plus up to 1,750 ms of network delay. The core counts a lease from its send time,
/// so a branch whose clock runs behind holds a lease shorter than it believes (safe for the
/// fence, but past a lease's length the site looks connected while the core never routes
/// its agents). Refused past this, naming the offset, so the operator fixes the clock.
pub const MAX_CLOCK_BEHIND_MS: i64 = 2_000;

/// Checks a renewal's send time against the receiving node's clock `now_ms`: a branch
/// clock running ahead past [`MAX_CLOCK_OFFSET_MS`], or behind past
/// [`MAX_CLOCK_BEHIND_MS`], is refused, naming the offset. Checked
/// where the renewal comes in, not in the replicated apply (logs written before the
/// budget existed replay the same).
pub fn check_clock_offset(sent_at_ms: i64, now_ms: i64) -> Result<(), DomainError> {
    let offset_ms = sent_at_ms.saturating_sub(now_ms);
    if offset_ms > MAX_CLOCK_OFFSET_MS {
        return Err(DomainError::precondition(
            "sent_at_ms",
            format!(
                "the branch's clock runs {offset_ms} ms ahead of the cluster clock, past the \
                 {MAX_CLOCK_OFFSET_MS} ms budget: the core would hold the lease longer than \
                 the branch believes; fix the branch's clock (NTP)"
            ),
        ));
    }
    if offset_ms < -MAX_CLOCK_BEHIND_MS {
        let behind_ms = offset_ms.unsigned_abs();
        return Err(DomainError::precondition(
            "sent_at_ms",
            format!(
                "the branch's clock runs {behind_ms} ms behind the cluster clock (or the \
                 renewal spent that long in the network), past the {MAX_CLOCK_BEHIND_MS} ms \
                 budget: the lease would lapse at the core before the branch believes; fix \
                 the branch's clock (NTP)"
            ),
        ));
    }
    Ok(())
}

/// The fields an administrator sets on a site (a regional center).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInput {
    /// The site's id, which agents, contacts and the branch's leases name it by.
    pub id: String,
    /// The name supervisors see for the site.
    pub name: String,
    /// The region the site is in, for display.
    pub region: String,
}

impl SiteInput {
    /// Checks every field against its limits, at the service edge and again inside `apply`.
    pub fn validate(&self) -> Result<(), DomainError> {
        validate_id("site.id", &self.id)?;
        validate_len("site.name", &self.name, MAX_NAME_LEN)?;
        validate_len("site.region", &self.region, MAX_NAME_LEN)
    }
}

/// How a branch says it is working, reported with each lease renewal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BranchMode {
    /// Serving from the replica, writing through the core.
    #[default]
    Connected,
    /// The core was unreachable: routing its own agents from a local journal.
    Autonomous,
    /// Applying its journal at the core after an outage.
    Reconciling,
}

/// What the branch holding a site's lease reported with its last renewal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchReport {
    /// The branch's node id (a Raft learner of the core).
    pub node_id: u64,
    /// What the branch was doing when it renewed.
    pub mode: BranchMode,
    /// Journal entries not yet applied at the core.
    pub journal_backlog: u64,
}

/// Who routes to a site's agents right now, as the cluster status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SiteMode {
    /// Served by the core directly; no lease involved.
    Core,
    /// A branch holds a valid lease: the core routes to its agents.
    Leased,
    /// The branch's lease ran out: the core does not route to its agents.
    Lapsed,
}

/// A stored site and the state of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The fields the administrator set, as last upserted.
    pub input: SiteInput,
    /// End of the current lease; `None` for a site that never held one.
    pub lease_expires_ms: Option<i64>,
    /// Whether the lapse of the current lease was already acted on.
    pub lapsed: bool,
    /// The branch's report with its last renewal, and when the core applied it.
    pub branch: Option<BranchReport>,
    /// When the core applied the last renewal, by the state machine's clock.
    pub last_renewal_ms: Option<i64>,
}

impl Site {
    /// A newly created site: it never held a lease, so the core serves it directly.
    pub fn new(input: SiteInput) -> Self {
        Self {
            input,
            lease_expires_ms: None,
            lapsed: false,
            branch: None,
            last_renewal_ms: None,
        }
    }

    /// Whether the core may route to this site's agents at `now_ms`.
    pub fn routable(&self, now_ms: i64) -> bool {
        self.lease_expires_ms.is_none_or(|end| now_ms < end)
    }

    /// Whether the site is served by the core, by a branch's valid lease, or fenced off by a lapsed
    /// one at `now_ms`.
    pub fn mode(&self, now_ms: i64) -> SiteMode {
        match self.lease_expires_ms {
            None => SiteMode::Core,
            Some(end) if now_ms < end => SiteMode::Leased,
            Some(_) => SiteMode::Lapsed,
        }
    }
}
