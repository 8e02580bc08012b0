//! The routes every node serves on its HTTP port beside `/healthz` and `/readyz`:
//!
//! * `/` — the wallboard (HTML, CSS and script embedded in the binary; no CDN);
//! * `/api/wallboard` — the picture it draws, as JSON;
//! * `/api/wallboard/stream` — the same picture as server-sent events, once a second;
//! * `/metrics` — Prometheus text format.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;

use super::{Observed, Snapshot};

const PAGE: &str = include_str!("../../assets/wallboard.html");
const STYLE: &str = include_str!("../../assets/wallboard.css");
const SCRIPT: &str = include_str!("../../assets/wallboard.js");

/// How often the live feed sends a new picture.
const EVERY: Duration = Duration::from_secs(1);

/// The observability routes of `node`, to merge into its HTTP router.
pub fn routes<N: Observed>(node: N) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/wallboard.css", get(style))
        .route("/wallboard.js", get(script))
        .route("/api/wallboard", get(snapshot::<N>))
        .route("/api/wallboard/stream", get(stream::<N>))
        .route("/metrics", get(metrics::<N>))
        .with_state(node)
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

const STOPPED: (StatusCode, &str) = (StatusCode::SERVICE_UNAVAILABLE, "node stopped\n");

async fn snapshot<N: Observed>(State(node): State<N>) -> Response {
    if !node.up() {
        return STOPPED.into_response();
    }
    Json(Snapshot::of(&node)).into_response()
}

async fn stream<N: Observed>(
    State(node): State<N>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let pictures = futures::stream::unfold(
        (node, tokio::time::interval(EVERY)),
        |(node, mut every)| async move {
            every.tick().await;
            while !node.up() {
                every.tick().await;
            }
            let json = serde_json::to_string(&Snapshot::of(&node)).unwrap_or_default();
            let event = Event::default().event("wallboard").data(json);
            Some((Ok(event), (node, every)))
        },
    );
    Sse::new(pictures).keep_alive(KeepAlive::default())
}

async fn metrics<N: Observed>(State(node): State<N>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::render_metrics(&node),
    )
}
