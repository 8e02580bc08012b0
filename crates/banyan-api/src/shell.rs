//! What every node serves the same way, core voter or branch: the gRPC server around the
//! node's own services, and the HTTP port. Each node passes what differs (its services,
//! its readiness); everything else is here once.
//!
//! ```text
//!  gRPC: TLS ─> telemetry ─> trust edge ─> health, reflection, the node's services
//!  HTTP: /healthz, /readyz (the node's readiness), the wallboard and /metrics
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use banyan_trust::Security;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use crate::observe::{Observed, Telemetry};

/// A node's gRPC server running in the background.
pub struct GrpcServer {
    addr: SocketAddr,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: oneshot::Sender<()>,
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
        let _ = self.stop.send(());
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
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_grpc(
        listener,
        security.clone(),
        telemetry.clone(),
        services,
        async {
            let _ = stopped.await;
        },
    ));
    Ok(GrpcServer { addr, task, stop })
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

/// Serves the HTTP port of `node` on `listener` until `shutdown` resolves: the wallboard
/// and `/metrics` ([`routes`](crate::observe::routes)), and two endpoints with meanings an
/// orchestrator can act on:
///
/// * `/healthz`: 200 while the process and its Raft are running; 503 once Raft has
///   stopped (a storage failure stops it). Restarting the container is the right reaction.
/// * `/readyz`: 200 when the node serves what it is there for, 503 with the reason
///   otherwise ([`Observed::readiness`]). Taking the node out of load balancing is the
///   right reaction.
pub async fn serve_http<N: Observed>(
    node: N,
    security: Security,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/healthz", get(healthz::<N>))
        .route("/readyz", get(readyz::<N>))
        .with_state((node.clone(), security.is_secure()))
        .merge(crate::observe::routes(node, security));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz<N: Observed>(State((node, _)): State<(N, bool)>) -> (StatusCode, String) {
    match &node.raft_metrics().running_state {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(fatal) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {fatal}\n"),
        ),
    }
}

async fn readyz<N: Observed>(State((node, secure)): State<(N, bool)>) -> (StatusCode, String) {
    if let Err(fatal) = &node.raft_metrics().running_state {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {fatal}\n"),
        );
    }
    match node.readiness() {
        Ok(ready) => (
            StatusCode::OK,
            format!("ready: {ready}{}\n", insecure_note(secure)),
        ),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// What `/readyz` adds for a node running `--insecure`, so nobody mistakes it for a secure
/// one.
fn insecure_note(secure: bool) -> &'static str {
    if secure {
        ""
    } else {
        " (INSECURE: --insecure, no TLS and no credentials checked)"
    }
}
