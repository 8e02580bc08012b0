//! One picture of the contact center and the cluster as a node sees it: what the wallboard
//! draws and what the metrics report.

use std::collections::BTreeMap;

use banyan_domain::{AgentState, ContactState, SiteMode};
use banyan_raft::ServerState;
use serde::Serialize;

use super::Observed;

/// Everything one node sees at one moment: the wallboard's JSON, and what `/metrics` reads
/// the state's figures from, so the two never disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Whose view this is: a branch alone shows its own state, not the core's.
    pub node: NodeInfo,
    /// Wall-clock time of the picture, ms since the epoch.
    pub at_ms: i64,
    /// One row per queue: what waits now and how the queue has done since it was created.
    pub queues: Vec<QueueFigures>,
    /// Agents by state at each site.
    pub agents: Vec<SiteAgents>,
    /// Raft's health as this node sees it.
    pub cluster: ClusterFigures,
    /// One row per site: its lease at the core and what its branch is doing.
    pub branches: Vec<BranchFigures>,
}

/// The node that took a picture, shown in the wallboard's heading and `banyan_node_info`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// The node's Raft id.
    pub id: u64,
    /// "core" for a core voter, "branch" for a site's branch.
    pub role: &'static str,
    /// The site a branch serves; `None` on a core voter.
    pub site: Option<String>,
    /// Seconds since the node started: a small figure tells a restart from a long run.
    pub uptime_s: f64,
}

/// One queue's row on the wallboard: who waits now, and its totals since it was created.
#[derive(Debug, Clone, Serialize)]
pub struct QueueFigures {
    /// The queue's id, and the `queue` label of its metrics.
    pub id: String,
    /// The name a supervisor knows the queue by.
    pub name: String,
    /// Contacts waiting in the queue right now.
    pub waiting: u64,
    /// How long the oldest waiting contact has waited, in ms at the state machine's clock;
    /// 0 when nobody waits. Past `service_level_target_ms` the wallboard shows it red.
    pub longest_wait_ms: i64,
    /// Answered within target over answered plus abandoned, in percent.
    pub service_level_pct: Option<f64>,
    /// The share of contacts the queue means to answer within the target, in percent.
    pub service_level_goal_pct: u32,
    /// The wait, in ms, within which an answer counts towards the service level.
    pub service_level_target_ms: i64,
    /// Average speed of answer: the mean wait of answered contacts, in ms; `None` before
    /// the first answer.
    pub asa_ms: Option<i64>,
    /// Average handle time: the mean talk plus wrap-up of completed contacts, in ms;
    /// `None` before the first is completed.
    pub aht_ms: Option<i64>,
    /// Abandoned over answered plus abandoned, in percent; `None` before either.
    pub abandonment_pct: Option<f64>,
    /// Contacts that entered the queue, transfers and overflows into it included.
    pub entered: u64,
    /// Contacts an agent answered.
    pub answered: u64,
    /// Contacts whose customer gave up while waiting.
    pub abandoned: u64,
    /// Contacts an agent completed, wrap-up included.
    pub handled: u64,
    /// Offers made to agents; re-offers after a reject or a timeout count again.
    pub offers: u64,
    /// Contacts a branch's self-service answered while it ran alone, with no agent.
    pub self_served: u64,
}

/// A site's staffing at a glance: how many of its agents are in each state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteAgents {
    /// The site's id: the agents counted are those registered at it.
    pub site: String,
    /// Available and holding no connected contact: free for the next offer.
    pub available: u64,
    /// Available and holding at least one connected contact.
    pub on_contact: u64,
    /// Finishing a contact's after-call work, not yet taking offers.
    pub wrap_up: u64,
    /// On a break: signed in, taking no offers.
    pub on_break: u64,
    /// Signed out.
    pub offline: u64,
}

impl SiteAgents {
    /// `(state label, count)` in the order a wallboard shows them.
    pub fn by_state(&self) -> [(&'static str, u64); 5] {
        [
            ("available", self.available),
            ("on_contact", self.on_contact),
            ("wrap_up", self.wrap_up),
            ("break", self.on_break),
            ("offline", self.offline),
        ]
    }
}

/// Raft's health as one node sees it: who leads, how far the log has come, who lags.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterFigures {
    /// The current Raft term; one that keeps rising means repeated elections.
    pub term: u64,
    /// The leader this node knows; `None` during an election or while cut off.
    pub leader: Option<u64>,
    /// This node's Raft role: leader, follower, candidate or learner.
    pub role: &'static str,
    /// Index of the last entry in this node's log, 0 while it is empty.
    pub last_log_index: u64,
    /// The highest index this node knows committed; `None` where it does not track it.
    pub committed: Option<u64>,
    /// The highest index applied to this node's state; far behind `committed` means the
    /// node serves an old picture.
    pub applied: u64,
    /// Index of the last snapshot; `None` before the first.
    pub snapshot_index: Option<u64>,
    /// Index up to which the log was purged after a snapshot; `None` before the first purge.
    pub purged_index: Option<u64>,
    /// Snapshots this node built itself since it started (not those it received).
    pub snapshots_built: u64,
    /// Steps `apply` skipped because the state was inconsistent (zero when healthy).
    pub apply_inconsistencies: u64,
    /// Finished contacts still in the routing state (they leave after the retention window).
    pub finished_in_state: u64,
    /// The request log's encoded size, and the records it let go early being full.
    pub request_log: (u64, u64),
    /// Every member of the current membership, voters and learners.
    pub members: Vec<Member>,
}

/// One member of the Raft membership, as the wallboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// The member's Raft node id.
    pub id: u64,
    /// The address the membership records for it, where peers send Raft traffic.
    pub addr: String,
    /// Whether it votes; a branch's replica is a learner and does not.
    pub voter: bool,
    /// Whether it is the leader this node knows.
    pub leader: bool,
    /// Entries behind the leader's log; known on the leader only.
    pub lag: Option<u64>,
}

/// One site's row: whether the core leases it to a branch, and whether that branch runs
/// through the core or alone.
#[derive(Debug, Clone, Serialize)]
pub struct BranchFigures {
    /// The site's id.
    pub site: String,
    /// The Raft node id of the site's branch; `None` until a branch renews a lease for it.
    pub node_id: Option<u64>,
    /// The core's view of the site: "leased", "lapsed" (fenced) or "core" (no branch).
    pub lease: &'static str,
    /// "through the core", "alone" or "handing over".
    pub mode: &'static str,
    /// Commands the branch wrote alone that the core has not applied yet; it drains to
    /// zero as the branch hands over.
    pub journal_backlog: u64,
    /// Entries the branch's replica is behind the leader (on the leader, or the branch
    /// itself when it knows).
    pub lag: Option<u64>,
    /// Seconds since the core last accepted the site's lease renewal (the branch itself).
    pub since_core_answered_s: Option<f64>,
    /// Why the core refused the site's last import, while it stands.
    pub import_refused: Option<String>,
    /// The branch's clock offset to the cluster clock at its last renewal, in seconds.
    pub clock_offset_s: Option<f64>,
}

use banyan_env::wall_clock_ms;

fn pct(ratio: Option<f64>) -> Option<f64> {
    ratio.map(|r| r * 100.0)
}

impl Snapshot {
    /// Takes the picture `node` sees now.
    pub fn of<N: Observed>(node: &N) -> Self {
        let raft = node.raft_metrics();
        let own = node.own_branch();
        let serving = node.serving();
        let applied = serving.read();
        let state = &applied.domain;
        let now = state.clock_ms().max(wall_clock_ms());

        let queues = state
            .queues()
            .filter_map(|q| {
                let stats = state.queue_stats(&q.id)?;
                let c = &stats.counters;
                Some(QueueFigures {
                    id: q.id.clone(),
                    name: q.name.clone(),
                    waiting: stats.waiting,
                    longest_wait_ms: stats.longest_wait_ms,
                    service_level_pct: pct(c.service_level_with_abandons()),
                    service_level_goal_pct: q.service_level_goal_pct,
                    service_level_target_ms: q.service_level_ms,
                    asa_ms: c.asa_ms(),
                    aht_ms: c.aht_ms(),
                    abandonment_pct: pct(c.abandonment_rate()),
                    entered: c.entered,
                    answered: c.answered,
                    abandoned: c.abandoned,
                    handled: c.handled,
                    offers: c.offers,
                    self_served: c.self_served,
                })
            })
            .collect();

        let mut sites: BTreeMap<String, SiteAgents> = BTreeMap::new();
        for agent in state.agents() {
            let site = sites
                .entry(agent.input.site.clone())
                .or_insert_with(|| SiteAgents {
                    site: agent.input.site.clone(),
                    ..Default::default()
                });
            match agent.state() {
                AgentState::Offline => site.offline += 1,
                AgentState::Break { .. } => site.on_break += 1,
                AgentState::WrapUp => site.wrap_up += 1,
                AgentState::Available if agent.held_connected(state) => site.on_contact += 1,
                AgentState::Available => site.available += 1,
            }
        }

        let membership = raft.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let replication = raft.replication.clone().unwrap_or_default();
        let lag_of = |id: u64| {
            replication.get(&id).map(|matched| {
                let matched = matched.map_or(0, |m| m.index);
                raft.last_log_index.unwrap_or(0).saturating_sub(matched)
            })
        };
        let members: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                leader: raft.current_leader == Some(*id),
                lag: lag_of(*id),
            })
            .collect();
        let cluster = ClusterFigures {
            term: raft.current_term,
            leader: raft.current_leader,
            role: match raft.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "stopped",
            },
            last_log_index: raft.last_log_index.unwrap_or(0),
            committed: node.committed_index(),
            applied: raft.last_applied.map_or(0, |l| l.index),
            snapshot_index: raft.snapshot.map(|l| l.index),
            purged_index: raft.purged.map(|l| l.index),
            snapshots_built: node.snapshots_built(),
            apply_inconsistencies: state.inconsistencies().0,
            finished_in_state: state.finished_count() as u64,
            request_log: {
                let (bytes, evicted) = state.request_log_bytes();
                (bytes as u64, evicted)
            },
            members,
        };

        let branches = state
            .sites()
            .map(|site| {
                let node_id = site.branch.as_ref().map(|b| b.node_id);
                let mine = node.site().as_deref() == Some(site.input.id.as_str());
                let mode = match (&own, &site.branch) {
                    (Some(own), _) if mine => own.mode,
                    (_, Some(report)) if site.mode(now) == SiteMode::Leased => match report.mode {
                        banyan_domain::BranchMode::Connected => "through the core",
                        banyan_domain::BranchMode::Autonomous => "alone",
                        banyan_domain::BranchMode::Reconciling => "handing over",
                    },
                    (_, Some(_)) => "alone",
                    (_, None) => "through the core",
                };
                let journal_backlog = match (&own, &site.branch) {
                    (Some(own), _) if mine => own.journal_backlog,
                    (_, Some(report)) => report.journal_backlog,
                    _ => 0,
                };
                let lag = node_id.and_then(lag_of).or_else(|| {
                    // A branch knows how far its own replica trails the log it has heard of.
                    mine.then(|| {
                        raft.last_log_index
                            .unwrap_or(0)
                            .saturating_sub(raft.last_applied.map_or(0, |l| l.index))
                    })
                });
                BranchFigures {
                    site: site.input.id.clone(),
                    node_id,
                    lease: match site.mode(now) {
                        SiteMode::Core => "core",
                        SiteMode::Leased => "leased",
                        SiteMode::Lapsed => "lapsed",
                    },
                    mode,
                    journal_backlog,
                    lag,
                    since_core_answered_s: own
                        .as_ref()
                        .filter(|_| mine)
                        .and_then(|o| o.since_core_answered)
                        .map(|d| d.as_secs_f64()),
                    import_refused: own
                        .as_ref()
                        .filter(|_| mine)
                        .and_then(|o| o.import_refused.clone())
                        .or_else(|| {
                            applied
                                .refused_imports
                                .get(&site.input.id)
                                .map(ToString::to_string)
                        }),
                    clock_offset_s: applied
                        .clock_offsets
                        .get(&site.input.id)
                        .map(|o| o.offset_ms as f64 / 1000.0),
                }
            })
            .collect();

        Snapshot {
            node: NodeInfo {
                id: node.node_id(),
                role: if node.site().is_some() {
                    "branch"
                } else {
                    "core"
                },
                site: node.site(),
                uptime_s: node.telemetry().uptime().as_secs_f64(),
            },
            at_ms: now,
            queues,
            agents: sites.into_values().collect(),
            cluster,
            branches,
        }
    }
}

/// Whether an agent is on a contact (connected; wrap-up is its own state).
trait HeldConnected {
    fn held_connected(&self, state: &banyan_domain::State) -> bool;
}

impl HeldConnected for banyan_domain::Agent {
    fn held_connected(&self, state: &banyan_domain::State) -> bool {
        self.held.keys().any(|id| {
            state
                .contact(id)
                .is_some_and(|c| c.state == ContactState::Connected)
        })
    }
}
