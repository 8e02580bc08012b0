//! `Branch.Status`: what a branch says of itself (its mode, its backlogs, when the core
//! last answered), for tools and drills that must know a branch's mode without reading
//! the text of `/readyz`.

use banyan_observe::Observed;
use banyan_proto::v1 as pb;
use banyan_proto::v1::branch_server::{Branch, BranchServer};
use tonic::{Request, Response, Status};

use crate::autonomy::Mode;
use crate::node::BranchNode;

/// The `Branch` service over one branch node.
pub struct BranchStatusService {
    node: BranchNode,
}

impl BranchStatusService {
    /// Answers from `node`'s own figures: it never asks the core, so it works cut off.
    pub fn new(node: BranchNode) -> Self {
        Self { node }
    }

    /// The service as tonic serves it, for the branch's one listener ([`crate::serve`]).
    pub fn into_server(self) -> BranchServer<Self> {
        BranchServer::new(self)
    }
}

/// The proto form of a branch's mode.
fn mode_to_proto(mode: Mode) -> pb::BranchMode {
    match mode {
        Mode::Connected => pb::BranchMode::Connected,
        Mode::Autonomous => pb::BranchMode::Autonomous,
        Mode::Reconciling => pb::BranchMode::Reconciling,
    }
}

#[tonic::async_trait]
impl Branch for BranchStatusService {
    async fn status(
        &self,
        _request: Request<pb::BranchStatusRequest>,
    ) -> Result<Response<pb::BranchStatus>, Status> {
        let node = &self.node;
        // The same figures the wallboard and /metrics show, read once.
        let Some(own) = node.own_branch() else {
            return Err(Status::internal("a branch without its own figures"));
        };
        Ok(Response::new(pb::BranchStatus {
            node_id: node.id(),
            site_id: node.site().to_owned(),
            mode: mode_to_proto(node.mode()).into(),
            journal_backlog: own.journal_backlog,
            outbox_backlog: own.outbox_backlog,
            since_core_answered_ms: own
                .since_core_answered
                .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            import_refused: own.import_refused.unwrap_or_default(),
            applied_index: node.serving().applied_index(),
        }))
    }
}
