//! The HTTP port every node serves, core voter or branch:
//!
//! * `/healthz` and `/readyz` — see [`serve`];
//! * `/` — the wallboard (HTML, CSS and script embedded in the binary; no CDN);
//! * `/api/wallboard` — the picture it draws, as JSON;
//! * `/api/wallboard/stream` — the same picture as server-sent events, once a second;
//! * `/metrics` — Prometheus text format.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use tokio::net::TcpListener;

use banyan_trust::Security;

use super::{Observed, Snapshot};

const PAGE: &str = include_str!("../assets/wallboard.html");
const STYLE: &str = include_str!("../assets/wallboard.css");
const SCRIPT: &str = include_str!("../assets/wallboard.js");

/// How often the live feed sends a new picture.
const EVERY: Duration = Duration::from_secs(1);

/// Serves the HTTP port of `node` on `listener` until `shutdown` resolves: the wallboard
/// and `/metrics` ([`routes`]), and two endpoints with meanings an
/// orchestrator can act on:
///
/// * `/healthz`: 200 while the process and its Raft are running; 503 once Raft has
///   stopped (a storage failure stops it). Restarting the container is the right reaction.
/// * `/readyz`: 200 when the node serves what it is there for, 503 with the reason
///   otherwise ([`Observed::readiness`](crate::Observed::readiness)). Taking the node out of load balancing is the
///   right reaction.
pub async fn serve<N: Observed>(
    node: N,
    security: Security,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz::<N>))
        .route("/readyz", get(readyz::<N>))
        .with_state((node.clone(), security.is_secure()))
        .merge(routes(node, security));
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

/// The observability routes of `node`, to merge into its HTTP router, each behind the
/// edge's check of a bearer token (see [`guard`]).
pub fn routes<N: Observed>(node: N, security: Security) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/wallboard.css", get(style))
        .route("/wallboard.js", get(script))
        .route("/api/wallboard", get(snapshot::<N>))
        .route("/api/wallboard/stream", get(stream::<N>))
        .route("/metrics", get(metrics::<N>))
        .with_state(node)
        .layer(axum::middleware::from_fn(move |request, next| {
            guard(security.clone(), request, next)
        }))
}

/// Lets a request through when its token may read the route (the table of
/// `banyan_trust::policy::ROUTES`); a wallboard opened with `?token=…` keeps the token in
/// a cookie for the page's own requests.
pub async fn guard(
    security: Security,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    if let Err((code, reason)) =
        banyan_trust::edge::admit_http(&security, &path, request.headers(), query.as_deref())
    {
        return (code, reason).into_response();
    }
    // Only a token that proved itself goes into the cookie: the one in the query when
    // no Authorization header took precedence over it.
    let from_query = query
        .as_deref()
        .filter(|_| banyan_trust::edge::bearer(request.headers()).is_none())
        .and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .map(str::to_owned)
        });
    let mut response = next.run(request).await;
    if let Some(cookie) = from_query.and_then(|token| {
        header::HeaderValue::from_str(&format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict",
            banyan_trust::edge::TOKEN_COOKIE
        ))
        .ok()
    }) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
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
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::render_metrics(&node),
    )
}
