//! The gRPC server every node runs the same way, core voter or branch, around the node's
//! own services; the node passes its services, everything else is here once. (The HTTP
//! port is `banyan_observe::serve`.)
//!
//! ```text
//!  gRPC: TLS ─> telemetry ─> trust edge ─> health, reflection, the node's services
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use banyan_trust::Security;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use banyan_env::{BeginOnDrop, Shutdown};
use banyan_observe::Telemetry;

/// A node's gRPC server running in the background.
pub struct GrpcServer {
    addr: SocketAddr,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: Shutdown,
    /// A server dropped without [`stop`](Self::stop) stops serving too.
    _stop_on_drop: BeginOnDrop,
}

impl GrpcServer {
    /// The address the server listens on (the bound one, for a listener on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving. Calls in flight finish; streams still open after
    /// [`DRAIN`](crate::DRAIN) (agent sessions, event watchers) are cut, so their clients
    /// move to another node and the node stops in bounded time.
    pub async fn stop(self) {
        self.stop.begin();
        match crate::drain(self.task).await {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Some(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
        }
    }
}

/// Serves `services` on `listener` (already bound, so tests can use port 0) in a
/// background task, behind the node's telemetry and the trust edge, with gRPC health
/// (`ContactCenter` serving) and reflection beside them.
pub fn serve_grpc(
    listener: TcpListener,
    security: &Security,
    telemetry: &Arc<Telemetry>,
    services: Routes,
) -> std::io::Result<GrpcServer> {
    let addr = listener.local_addr()?;
    let stop = Shutdown::new();
    let task = tokio::spawn(run_grpc(
        listener,
        security.clone(),
        telemetry.clone(),
        services,
        {
            let stop = stop.clone();
            async move { stop.begun().await }
        },
    ));
    Ok(GrpcServer {
        addr,
        task,
        _stop_on_drop: stop.begin_on_drop(),
        stop,
    })
}

async fn run_grpc(
    listener: TcpListener,
    security: Security,
    telemetry: Arc<Telemetry>,
    services: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(
            banyan_proto::v1::contact_center_server::SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(banyan_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("Banyan's own descriptor set is valid");
    crate::server_builder(&security)?
        .layer(telemetry.layer())
        .layer(banyan_trust::EdgeLayer::new(security.clone()))
        .add_routes(services)
        .add_service(health)
        .add_service(reflection)
        // Accepted sockets need TCP_NODELAY set here: the builder's setting only covers
        // listeners tonic binds itself, and Nagle plus delayed ACKs adds ~40 ms stalls.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
