//! Serves a branch's gRPC services on one listener: `ContactCenter` and `AgentDesk` for
//! its region, the Raft transport the core replicates through, health and reflection.

use banyan_api::{AgentDeskService, ContactCenterService};
use banyan_raft::RaftTransportService;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::node::BranchNode;

/// A branch whose server runs in the background.
pub struct RunningBranch {
    pub node: BranchNode,
    pub addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl RunningBranch {
    /// Stops serving (in-flight requests finish; agent sessions and event watchers still
    /// open after [`DRAIN`](banyan_api::DRAIN) are cut, so their clients reconnect), then
    /// stops Raft and flushes storage.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Some(Ok(Err(e))) = banyan_api::drain(self.server).await {
            tracing::warn!(error = %e, "gRPC server ended with an error");
        }
        self.node.shutdown().await;
    }
}

pub fn serve(node: BranchNode, listener: TcpListener) -> std::io::Result<RunningBranch> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(node.clone(), listener, async {
        let _ = stopped.await;
    }));
    Ok(RunningBranch {
        node,
        addr,
        server,
        stop,
    })
}

async fn run(
    node: BranchNode,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<banyan_proto::v1::contact_center_server::ContactCenterServer<
            ContactCenterService<BranchNode>,
        >>()
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
        .add_service(ContactCenterService::new(node.clone()).into_server())
        .add_service(AgentDeskService::new(node).into_server())
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
