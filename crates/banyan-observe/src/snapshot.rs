//! One picture of the contact center and the cluster as a node sees it: what the wallboard
//! draws and what the metrics report.

use std::collections::BTreeMap;

use banyan_domain::{AgentState, ContactState, SiteMode};
use banyan_raft::ServerState;
use serde::Serialize;

use super::Observed;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub node: NodeInfo,
    /// Wall-clock time of the picture, ms since the epoch.
    pub at_ms: i64,
    pub queues: Vec<QueueFigures>,
    /// Agents by state at each site.
    pub agents: Vec<SiteAgents>,
    pub cluster: ClusterFigures,
    pub branches: Vec<BranchFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub id: u64,
    pub role: &'static str,
    pub site: Option<String>,
    pub uptime_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueFigures {
    pub id: String,
    pub name: String,
    pub waiting: u64,
    pub longest_wait_ms: i64,
    /// Answered within target over answered plus abandoned, in percent.
    pub service_level_pct: Option<f64>,
    pub service_level_goal_pct: u32,
    pub service_level_target_ms: i64,
    pub asa_ms: Option<i64>,
    pub aht_ms: Option<i64>,
    pub abandonment_pct: Option<f64>,
    pub entered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub handled: u64,
    pub offers: u64,
    pub self_served: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteAgents {
    pub site: String,
    pub available: u64,
    pub on_contact: u64,
    pub wrap_up: u64,
    pub on_break: u64,
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

#[derive(Debug, Clone, Serialize)]
pub struct ClusterFigures {
    pub term: u64,
    pub leader: Option<u64>,
    /// This node's Raft role: leader, follower, candidate or learner.
    pub role: &'static str,
    pub last_log_index: u64,
    pub committed: Option<u64>,
    pub applied: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub snapshots_built: u64,
    /// Steps `apply` skipped because the state was inconsistent (zero when healthy).
    pub apply_inconsistencies: u64,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    pub leader: bool,
    /// Entries behind the leader's log; known on the leader only.
    pub lag: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BranchFigures {
    pub site: String,
    pub node_id: Option<u64>,
    /// The core's view of the site: "leased", "lapsed" (fenced) or "core" (no branch).
    pub lease: &'static str,
    /// "through the core", "alone" or "handing over".
    pub mode: &'static str,
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
