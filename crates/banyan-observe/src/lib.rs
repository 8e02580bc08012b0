//! What a node shows the people who run it: the wallboard a supervisor watches, the
//! Prometheus metrics an SRE scrapes, and the counters behind both. Core voters and
//! branches serve the same pages from their own view of the cluster.

#![warn(missing_docs)]

mod cdr;
mod get;
mod http;
mod metrics;
mod snapshot;
mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use banyan_raft::{AppliedState, RaftMetrics};

pub use cdr::CdrWriter;
pub use get::{http_get, http_get_as};
pub use http::{routes, serve};
pub use metrics::render as render_metrics;
pub use snapshot::{
    BranchFigures, ClusterFigures, Member, NodeInfo, QueueFigures, SiteAgents, Snapshot,
};
pub use telemetry::{GrpcMetricsLayer, Histogram, MethodStats, Telemetry};

/// A branch's own figures, which only the branch knows first-hand.
#[derive(Debug, Clone)]
pub struct OwnBranch {
    /// "through the core", "alone" or "handing over".
    pub mode: &'static str,
    /// Journal entries written alone and not yet applied at the core.
    pub journal_backlog: u64,
    /// Self-served contacts not yet delivered to the core.
    pub outbox_backlog: u64,
    /// Since the core last accepted the site's lease renewal.
    pub since_core_answered: Option<Duration>,
    /// Why the core refused this branch's last import, while the branch holds off
    /// sending it again.
    pub import_refused: Option<String>,
}

/// A node whose figures can be shown.
pub trait Observed: Clone + Send + Sync + 'static {
    /// Whether the node runs; a stopped one answers 503 and sends no live updates.
    fn up(&self) -> bool {
        true
    }
    /// The node's Raft id, which names it on the wallboard and in `banyan_node_info`.
    fn node_id(&self) -> u64;
    /// The site a branch serves; `None` for a core voter.
    fn site(&self) -> Option<String>;
    /// The state the node serves now (a branch alone: its own).
    fn serving(&self) -> AppliedState;
    /// Raft's own view (term, leader, log indexes, membership, replication), behind
    /// the cluster figures.
    fn raft_metrics(&self) -> RaftMetrics;
    /// The highest log index this node knows committed, where it tracks it.
    fn committed_index(&self) -> Option<u64>;
    /// Snapshots the node built itself since it started: each lets it purge its log up to
    /// there.
    fn snapshots_built(&self) -> u64;
    /// Purges of the log after snapshots since the node started, where it tracks them.
    fn log_purges(&self) -> Option<u64> {
        None
    }
    /// What only a branch knows of itself; `None` on a core voter.
    fn own_branch(&self) -> Option<OwnBranch>;
    /// The counters the node keeps beside its state: gRPC requests and time to offer.
    fn telemetry(&self) -> Arc<Telemetry>;
    /// Whether the node serves what it is there for (`/readyz`), with a word on how, or
    /// why not. Asked only while its Raft runs.
    fn readiness(&self) -> Result<String, String>;
    /// Each peer's clock as this node last measured it (the leader: every member).
    fn peer_clocks(&self) -> std::collections::BTreeMap<u64, banyan_raft::identity::PeerClock> {
        Default::default()
    }
}
