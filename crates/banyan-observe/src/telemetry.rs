//! Counters a node keeps as it runs, beside what its state already knows: gRPC requests
//! per method and the time contacts waited for their first offer.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use banyan_domain::Event;
use banyan_env::Shutdown;
use banyan_events::EventFeed;
use banyan_raft::AppliedState;
use tonic::codegen::http;
use tower::{Layer, Service};

/// Upper bounds of the gRPC latency buckets, in seconds.
pub const GRPC_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the time-to-offer buckets, in seconds.
pub const OFFER_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 300.0,
];
/// Methods tracked one by one; past that, requests count under `other` (a client cannot
/// grow the metrics without bound by calling made-up paths).
const MAX_METHODS: usize = 64;

/// A Prometheus-style histogram: cumulative counts per upper bound, sum and count.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Upper bounds of the buckets in seconds, ascending (`GRPC_BUCKETS`, `OFFER_BUCKETS`).
    pub bounds: &'static [f64],
    /// Observations at or below each bound, index for index with `bounds` (cumulative).
    pub counts: Vec<u64>,
    /// All observations added up, in seconds: with `count`, the mean.
    pub sum: f64,
    /// Observations in all, those above the last bound (Prometheus' `+Inf`) included.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram; its `bounds` never change, so scrapes line up bucket for bucket.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts one observation of `seconds` in every bucket whose bound it does not exceed.
    pub fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// The value below which `q` of the observations fall, to bucket precision.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        Some(
            self.bounds
                .iter()
                .zip(&self.counts)
                .find(|(_, c)| **c >= rank)
                .map_or(f64::INFINITY, |(b, _)| *b),
        )
    }
}

/// Requests, failures by status code, and latency of one gRPC method.
#[derive(Debug, Clone)]
pub struct MethodStats {
    /// Requests ended, by the status code they ended with.
    pub by_code: BTreeMap<i32, u64>,
    /// Time from a request to its status (a stream's whole run), in seconds.
    pub latency: Histogram,
    /// Requests started and not ended yet: for a stream, the sessions open now.
    pub in_flight: u64,
}

/// The figures of `method`, or of `other` once [`MAX_METHODS`] methods are tracked.
fn method_stats<'a>(
    grpc: &'a mut BTreeMap<String, MethodStats>,
    method: &str,
) -> &'a mut MethodStats {
    let key = if grpc.contains_key(method) || grpc.len() < MAX_METHODS {
        method
    } else {
        "other"
    };
    grpc.entry(key.to_owned()).or_insert_with(|| MethodStats {
        by_code: BTreeMap::new(),
        latency: Histogram::new(&GRPC_BUCKETS),
        in_flight: 0,
    })
}

/// What a node counts while it runs. Shared by its gRPC server, its event watcher and its
/// HTTP port.
#[derive(Debug)]
pub struct Telemetry {
    started: Instant,
    grpc: Mutex<BTreeMap<String, MethodStats>>,
    time_to_offer: Mutex<Histogram>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            grpc: Mutex::new(BTreeMap::new()),
            time_to_offer: Mutex::new(Histogram::new(&OFFER_BUCKETS)),
        }
    }
}

impl Telemetry {
    /// Shared from the start: the gRPC layer, the offer watcher and the HTTP port each
    /// hold a clone, and the clock for [`Telemetry::uptime`] starts now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// How long the node has run: the wallboard's "node up" and `banyan_uptime_seconds`.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A request of `method` came in.
    pub fn grpc_started(&self, method: &str) {
        let mut grpc = self.grpc.lock().unwrap_or_else(|p| p.into_inner());
        method_stats(&mut grpc, method).in_flight += 1;
    }

    /// A request of `method` ended with status `code` after `took`.
    pub fn record_grpc(&self, method: &str, code: i32, took: Duration) {
        let mut grpc = self.grpc.lock().unwrap_or_else(|p| p.into_inner());
        let stats = method_stats(&mut grpc, method);
        stats.in_flight = stats.in_flight.saturating_sub(1);
        *stats.by_code.entry(code).or_default() += 1;
        stats.latency.observe(took.as_secs_f64());
    }

    /// A copy of every method's figures, so a scrape encodes without holding the lock.
    pub fn grpc(&self) -> BTreeMap<String, MethodStats> {
        self.grpc.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A copy of how long contacts waited for their first offer, for `/metrics`.
    pub fn time_to_offer(&self) -> Histogram {
        self.time_to_offer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Follows `feed`, the events applied to `state`, and records, for every first offer
    /// of a contact, how long it had waited since it entered its queue. Resubscribes when
    /// the feed starts over (a snapshot installed, a branch switching modes); ends once
    /// `shutdown` has begun.
    pub fn watch_offers(
        self: &Arc<Self>,
        state: AppliedState,
        feed: EventFeed,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let telemetry = self.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            let mut events = feed.subscribe();
            loop {
                let received = tokio::select! {
                    received = events.recv() => received,
                    () = shutdown.begun() => return,
                };
                let record = match received {
                    Ok(record) => record,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => {
                        events = feed.subscribe();
                        continue;
                    }
                };
                let Event::ContactOffered { contact_id, .. } = &record.event else {
                    continue;
                };
                let waited_ms = {
                    let applied = state.read();
                    applied.domain.contact(contact_id).and_then(|c| {
                        // A re-offer after a reject or a timeout is not a first offer.
                        let offers = c
                            .timeline
                            .iter()
                            .filter(|t| t.state == banyan_domain::ContactState::Offered)
                            .count();
                        (offers <= 1).then_some(record.at_ms - c.enqueued_ms)
                    })
                };
                if let Some(waited_ms) = waited_ms {
                    telemetry
                        .time_to_offer
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .observe(waited_ms.max(0) as f64 / 1000.0);
                }
            }
        })
    }

    /// A tower layer for the gRPC server that counts every request of every method.
    pub fn layer(self: &Arc<Self>) -> GrpcMetricsLayer {
        GrpcMetricsLayer(self.clone())
    }
}

/// What [`Telemetry::layer`] gives the gRPC server: wraps every service so each request
/// is counted in the node's [`Telemetry`], whatever method it calls.
#[derive(Clone)]
pub struct GrpcMetricsLayer(Arc<Telemetry>);

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            telemetry: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    telemetry: Arc<Telemetry>,
}

impl<S, B, R> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: http_body::Body + 'static,
{
    type Response = http::Response<CountedBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // A caller that gives up (its deadline, a cancel) drops the future or the body
        // before the end: counted as CANCELLED when that happens.
        let method = request.uri().path().to_owned();
        self.telemetry.grpc_started(&method);
        let mut pending = Pending {
            telemetry: Some(self.telemetry.clone()),
            method,
            started: Instant::now(),
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = match answer.await {
                Ok(response) => response,
                Err(e) => {
                    pending.finish(tonic::Code::Internal as i32);
                    return Err(e);
                }
            };
            // A refusal travels in the response headers (trailers-only); everything else
            // ends with trailers after the messages, which the body reports.
            if let Some(code) = grpc_status(response.headers()) {
                pending.finish(code);
            }
            Ok(response.map(|inner| CountedBody { inner, pending }))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A request being counted: recorded once, with the code it ended with, or as CANCELLED
/// if it is dropped first.
struct Pending {
    telemetry: Option<Arc<Telemetry>>,
    method: String,
    started: Instant,
}

impl Pending {
    fn finish(&mut self, code: i32) {
        if let Some(telemetry) = self.telemetry.take() {
            telemetry.record_grpc(&self.method, code, self.started.elapsed());
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled as i32);
    }
}

pin_project_lite::pin_project! {
    /// A gRPC response body that records its request when the trailers go out: a unary
    /// call's status, a stream's end status, however long the stream ran.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        pending: Pending,
    }
}

impl<B: http_body::Body> http_body::Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(tonic::Code::Unknown as i32);
                    this.pending.finish(code);
                }
            }
            // A body that fails or ends without a status: nothing the caller can read
            // as a gRPC outcome.
            Some(Err(_)) | None => this.pending.finish(tonic::Code::Unknown as i32),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_quantiles_come_from_them() {
        let mut h = Histogram::new(&OFFER_BUCKETS);
        for s in [0.01, 0.2, 0.2, 3.0] {
            h.observe(s);
        }
        assert_eq!(h.count, 4);
        assert_eq!(h.counts[0], 1); // <= 0.05
        assert_eq!(h.counts[2], 3); // <= 0.25
        assert_eq!(*h.counts.last().unwrap(), 4);
        assert_eq!(h.quantile(0.5), Some(0.25));
        assert_eq!(h.quantile(0.99), Some(5.0));
        assert_eq!(Histogram::new(&OFFER_BUCKETS).quantile(0.5), None);
    }

    #[test]
    fn made_up_methods_cannot_grow_the_metrics_without_bound() {
        let t = Telemetry::default();
        for i in 0..1_000 {
            t.record_grpc(&format!("/x/{i}"), 12, Duration::from_millis(1));
        }
        let grpc = t.grpc();
        assert_eq!(grpc.len(), MAX_METHODS + 1);
        assert_eq!(grpc["other"].latency.count, 1_000 - MAX_METHODS as u64);
    }
}
