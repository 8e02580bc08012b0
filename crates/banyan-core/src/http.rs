//! The node's HTTP port: `/healthz` and `/readyz` with meanings an orchestrator can act on,
//! beside the wallboard and `/metrics` ([`banyan_api::observe::routes`]).
//!
//! * `/healthz`: 200 while the process and its Raft are running; 503 once Raft has stopped
//!   (a storage failure stops it). Restarting the container is the right reaction.
//! * `/readyz`: 200 when the node belongs to an initialized cluster and knows a leader, so
//!   requests sent to it will be served or forwarded; 503 with the reason otherwise. Taking
//!   the node out of load balancing is the right reaction.

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::node::CoreNode;

/// Serves the HTTP endpoints of `node` on `listener` until `shutdown` resolves.
pub async fn serve_http(
    node: CoreNode,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(node.clone())
        .merge(banyan_api::observe::routes(
            node.clone(),
            node.security().clone(),
        ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(node): State<CoreNode>) -> (StatusCode, String) {
    match &node.metrics().running_state {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(fatal) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {fatal}\n"),
        ),
    }
}

async fn readyz(State(node): State<CoreNode>) -> (StatusCode, String) {
    let metrics = node.metrics();
    if let Err(fatal) = &metrics.running_state {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {fatal}\n"),
        );
    }
    let membership = metrics.membership_config.membership();
    if membership.get_node(&metrics.id).is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not a member of an initialized cluster\n".into(),
        );
    }
    match metrics.current_leader {
        Some(leader) => (
            StatusCode::OK,
            format!(
                "ready: leader is node {leader}, term {}{}\n",
                metrics.current_term,
                insecure_note(node.security())
            ),
        ),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no leader known\n".into()),
    }
}

/// What `/readyz` adds for a node running `--insecure`, so nobody mistakes it for a secure
/// one.
pub fn insecure_note(security: &banyan_trust::Security) -> &'static str {
    if security.is_secure() {
        ""
    } else {
        " (INSECURE: --insecure, no TLS and no credentials checked)"
    }
}
