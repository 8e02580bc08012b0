//! Serves a branch's gRPC services on one listener: `ContactCenter` and `AgentDesk` for
//! its region, `Branch.Status`, and the Raft transport the core replicates through, in the node shell every
//! node shares ([`banyan_api::shell`]).

use banyan_api::shell::{serve_grpc, GrpcServer};
use banyan_api::{AgentDeskService, ContactCenterService};
use banyan_raft::RaftTransportService;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::node::BranchNode;

/// A branch whose server runs in the background.
pub struct RunningBranch {
    /// The branch being served, for tests and the CLI to drive and inspect.
    pub node: BranchNode,
    /// The address the listener bound: the real port when it was bound to port 0.
    pub addr: std::net::SocketAddr,
    server: GrpcServer,
    /// Dropped without [`shutdown`](Self::shutdown), the node's background tasks end
    /// too (its Raft is stopped only by `shutdown`).
    _tasks: banyan_env::BeginOnDrop,
}

impl RunningBranch {
    /// Stops serving (see [`GrpcServer::stop`]), then stops Raft and flushes storage.
    pub async fn shutdown(self) {
        self.server.stop().await;
        self.node.shutdown().await;
    }
}

/// Serves `node` on `listener` (already bound, so tests can use port 0) in a background
/// task.
pub fn serve(node: BranchNode, listener: TcpListener) -> std::io::Result<RunningBranch> {
    let services = Routes::new(
        RaftTransportService::new(node.raft().clone(), node.identity().clone()).into_server(),
    )
    .add_service(ContactCenterService::new(node.clone()).into_server())
    .add_service(AgentDeskService::new(node.clone()).into_server())
    .add_service(crate::status::BranchStatusService::new(node.clone()).into_server());
    let server = serve_grpc(listener, node.security(), node.telemetry(), services)?;
    Ok(RunningBranch {
        _tasks: node.stop_tasks_on_drop(),
        addr: server.addr(),
        node,
        server,
    })
}
