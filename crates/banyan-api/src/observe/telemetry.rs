//! Counters a node keeps as it runs, beside what its state already knows: gRPC requests
//! per method and the time contacts waited for their first offer.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use banyan_domain::Event;
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
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

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
    pub by_code: BTreeMap<i32, u64>,
    pub latency: Histogram,
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
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn record_grpc(&self, method: &str, code: i32, took: Duration) {
        let mut grpc = self.grpc.lock().unwrap_or_else(|p| p.into_inner());
        let key = if grpc.contains_key(method) || grpc.len() < MAX_METHODS {
            method
        } else {
            "other"
        };
        let stats = grpc.entry(key.to_owned()).or_insert_with(|| MethodStats {
            by_code: BTreeMap::new(),
            latency: Histogram::new(&GRPC_BUCKETS),
        });
        *stats.by_code.entry(code).or_default() += 1;
        stats.latency.observe(took.as_secs_f64());
    }

    pub fn grpc(&self) -> BTreeMap<String, MethodStats> {
        self.grpc.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn time_to_offer(&self) -> Histogram {
        self.time_to_offer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Follows `state`'s events and records, for every first offer of a contact, how
    /// long it had waited since it entered its queue. Resubscribes when the feed starts
    /// over (a snapshot installed, a branch switching modes); ends once the telemetry is
    /// dropped with its node.
    pub fn watch_offers(self: &Arc<Self>, state: AppliedState) -> tokio::task::JoinHandle<()> {
        let telemetry = Arc::downgrade(self);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            let mut events = state.events().subscribe();
            loop {
                let received = tokio::select! {
                    received = events.recv() => received,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {
                        if telemetry.strong_count() == 0 {
                            return;
                        }
                        continue;
                    }
                };
                let record = match received {
                    Ok(record) => record,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => {
                        if telemetry.strong_count() == 0 {
                            return;
                        }
                        events = state.events().subscribe();
                        continue;
                    }
                };
                let Event::ContactOffered { contact_id, .. } = &record.event else {
                    continue;
                };
                let Some(telemetry) = telemetry.upgrade() else {
                    return;
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
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let telemetry = self.telemetry.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            // A caller that gives up (its deadline, a cancel) drops this future: counted as
            // CANCELLED when that happens.
            let mut unfinished = Unfinished {
                telemetry: Some(telemetry.clone()),
                method: method.clone(),
                started,
            };
            let result = answer.await;
            unfinished.telemetry = None;
            // A refusal travels in the response headers (trailers-only); a unary success
            // and a stream's end carry theirs in trailers, counted as OK here.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                Err(_) => tonic::Code::Internal as i32,
            };
            telemetry.record_grpc(&method, code, started.elapsed());
            result
        })
    }
}

/// Records a request whose future was dropped before it finished.
struct Unfinished {
    telemetry: Option<Arc<Telemetry>>,
    method: String,
    started: Instant,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(telemetry) = self.telemetry.take() {
            telemetry.record_grpc(
                &self.method,
                tonic::Code::Cancelled as i32,
                self.started.elapsed(),
            );
        }
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
