//! Serves a core node's gRPC services on one listener until shutdown: `ContactCenter`,
//! `AgentDesk`, `Cluster`, command forwarding and the Raft transport, in the node shell
//! every node shares ([`banyan_api::shell`]).

use banyan_api::shell::{serve_grpc, GrpcServer};
use banyan_api::{AgentDeskService, ContactCenterService};
use banyan_raft::RaftTransportService;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::cluster::ClusterService;
use crate::forwarding::ForwardingService;
use crate::node::CoreNode;

/// A node whose gRPC server runs in the background.
pub struct RunningNode {
    /// The node being served, for tests and the CLI to drive and inspect.
    pub node: CoreNode,
    /// The address the listener bound: the real port when it was bound to port 0.
    pub addr: std::net::SocketAddr,
    server: GrpcServer,
    /// Dropped without [`shutdown`](Self::shutdown), the node's background tasks end
    /// too (its Raft is stopped only by `shutdown`).
    _tasks: banyan_env::BeginOnDrop,
}

impl RunningNode {
    /// Stops serving (see [`GrpcServer::stop`]), then stops Raft and flushes storage.
    pub async fn shutdown(self) {
        self.server.stop().await;
        self.node.shutdown().await;
    }
}

/// Serves `node` on `listener` (already bound, so tests can use port 0) in a background
/// task.
pub fn serve(node: CoreNode, listener: TcpListener) -> std::io::Result<RunningNode> {
    let services = Routes::new(
        RaftTransportService::new(node.raft().clone(), node.identity().clone()).into_server(),
    )
    .add_service(ForwardingService::new(node.clone()).into_server())
    .add_service(ContactCenterService::new(node.clone()).into_server())
    .add_service(AgentDeskService::new(node.clone()).into_server())
    .add_service(ClusterService::new(node.clone(), node.forwarder().clone()).into_server());
    let server = serve_grpc(listener, node.security(), node.telemetry(), services)?;
    Ok(RunningNode {
        _tasks: node.stop_tasks_on_drop(),
        addr: server.addr(),
        node,
        server,
    })
}
