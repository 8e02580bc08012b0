//! Serves every gRPC service of a core node on one listener until shutdown.

use std::future::Future;

use banyan_raft::RaftTransportService;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::cluster::ClusterService;
use crate::forwarding::ForwardingService;
use crate::node::CoreNode;
use banyan_api::AgentDeskService;
use banyan_api::ContactCenterService;

/// A node whose gRPC server runs in the background.
pub struct RunningNode {
    pub node: CoreNode,
    pub addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl RunningNode {
    /// Stops serving (in-flight requests finish), then stops Raft and flushes storage.
    /// Streams still open after [`DRAIN`](banyan_api::DRAIN) (agent sessions, event
    /// watchers) are cut, so their clients move to another node and the process exits in
    /// bounded time.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match banyan_api::drain(self.server).await {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Some(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
        }
        self.node.shutdown().await;
    }
}

/// Serves `node` on `listener` (already bound, so tests can use port 0) in a background
/// task: ContactCenter, AgentDesk, Cluster, the Raft transport, command forwarding,
/// gRPC health and reflection.
pub fn serve(node: CoreNode, listener: TcpListener) -> std::io::Result<RunningNode> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(node.clone(), listener, async {
        let _ = stopped.await;
    }));
    Ok(RunningNode {
        node,
        addr,
        server,
        stop,
    })
}

async fn run(
    node: CoreNode,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<banyan_proto::v1::contact_center_server::ContactCenterServer<ContactCenterService<CoreNode>>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(banyan_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("Banyan's own descriptor set is valid");
    banyan_api::server_builder(node.security())?
        .layer(node.telemetry().layer())
        .layer(banyan_trust::EdgeLayer::new(node.security().clone()))
        .add_service(health)
        .add_service(reflection)
        .add_service(
            RaftTransportService::new(node.raft().clone(), node.identity().clone()).into_server(),
        )
        .add_service(ForwardingService::new(node.clone()).into_server())
        .add_service(ContactCenterService::new(node.clone()).into_server())
        .add_service(AgentDeskService::new(node.clone()).into_server())
        .add_service(ClusterService::new(node.clone(), node.forwarder().clone()).into_server())
        // Accepted sockets need TCP_NODELAY set here: the builder's setting only covers
        // listeners tonic binds itself, and Nagle plus delayed ACKs adds ~40 ms stalls.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
