//! The branch's HTTP port: `/healthz` and `/readyz` with meanings an orchestrator can act on,
//! beside the wallboard and `/metrics` ([`banyan_api::observe::routes`]).
//!
//! * `/healthz`: 200 while the process and its Raft are running; 503 once Raft has stopped
//!   (a storage failure stops it). Restarting the container is the right reaction.
//! * `/readyz`: 200 once the branch serves its site: joined to the core as a learner, or
//!   routing on its own while the core is unreachable (the body says which); 503 with the
//!   reason before that. A branch cut off from the core is still ready: its agents and
//!   callers are exactly what it is there for.

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::autonomy::Mode;
use crate::node::BranchNode;

/// Serves the HTTP endpoints of `node` on `listener` until `shutdown` resolves.
pub async fn serve_http(
    node: BranchNode,
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

async fn healthz(State(node): State<BranchNode>) -> (StatusCode, String) {
    match &node.raft().metrics().borrow().running_state {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(fatal) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {fatal}\n"),
        ),
    }
}

async fn readyz(State(node): State<BranchNode>) -> (StatusCode, String) {
    let (code, mut text) = readiness(&node);
    if code == StatusCode::OK && !node.security().is_secure() {
        text = text.replace(
            '\n',
            " (INSECURE: --insecure, no TLS and no credentials checked)\n",
        );
    }
    (code, text)
}

fn readiness(node: &BranchNode) -> (StatusCode, String) {
    let (running, joined) = {
        let metrics = node.raft().metrics().borrow().clone();
        let joined = metrics
            .membership_config
            .membership()
            .get_node(&node.id())
            .is_some();
        (metrics.running_state.clone(), joined)
    };
    if let Err(fatal) = running {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {fatal}\n"),
        );
    }
    match node.mode() {
        Mode::Autonomous => (
            StatusCode::OK,
            format!(
                "ready: serving site {} on its own (core unreachable)\n",
                node.site()
            ),
        ),
        Mode::Reconciling => (
            StatusCode::OK,
            format!("ready: handing site {}'s work to the core\n", node.site()),
        ),
        Mode::Connected if joined => (
            StatusCode::OK,
            format!("ready: serving site {} through the core\n", node.site()),
        ),
        Mode::Connected => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not yet joined to the core\n".into(),
        ),
    }
}
