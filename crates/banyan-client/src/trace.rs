//! Trace context carried across nodes in the W3C `traceparent` gRPC metadata, so one
//! contact's path through a branch and the core reads as one trace in the logs.
//!
//! A server handler enters [`scope`] with the context of the request it serves (the
//! caller's, or a fresh one); every call a [`Client`](crate::Client) makes inside it
//! carries the same trace id with a new span id.

use std::future::Future;

use tonic::metadata::MetadataMap;

/// The metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A trace id (32 hex digits) and the id of the current span in it (16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace every span of one request shares across nodes: 32 hex digits.
    pub trace_id: String,
    /// This hop's span in the trace: 16 hex digits.
    pub span_id: String,
}

use banyan_env::ids::random_u64;

impl TraceContext {
    /// A new trace.
    pub fn new() -> Self {
        Self {
            trace_id: format!("{:016x}{:016x}", random_u64(), random_u64()),
            span_id: format!("{:016x}", random_u64()),
        }
    }

    /// The caller's context from `traceparent` (`00-<trace>-<span>-<flags>`), if it sent
    /// a valid one.
    pub fn from_metadata(metadata: &MetadataMap) -> Option<Self> {
        let value = metadata.get(TRACEPARENT)?.to_str().ok()?;
        let mut parts = value.split('-');
        let (version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && s.bytes().any(|b| b != b'0')
        };
        (version == "00" && hex(trace, 32) && hex(span, 16)).then(|| Self {
            trace_id: trace.to_ascii_lowercase(),
            span_id: span.to_ascii_lowercase(),
        })
    }

    /// The caller's context, or a new trace when it sent none.
    pub fn continue_or_start(metadata: &MetadataMap) -> Self {
        Self::from_metadata(metadata).unwrap_or_default()
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: format!("{:016x}", random_u64()),
        }
    }

    /// This context as a W3C `traceparent` value (`00-<trace>-<span>-01`), for the next hop.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    /// Adds this context, as a child span, to an outgoing request's metadata.
    pub fn inject(&self, metadata: &mut MetadataMap) {
        if let Ok(value) = self.child().traceparent().parse() {
            metadata.insert(TRACEPARENT, value);
        }
    }
}

impl Default for TraceContext {
    fn default() -> Self {
        Self::new()
    }
}

/// The context of the request being served, if a handler entered one.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `work` with `context` as the current trace context.
pub async fn scope<F: Future>(context: TraceContext, work: F) -> F::Output {
    CURRENT.scope(context, work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_ignored() {
        let ctx = TraceContext::new();
        let mut md = MetadataMap::new();
        ctx.inject(&mut md);
        let back = TraceContext::from_metadata(&md).unwrap();
        assert_eq!(back.trace_id, ctx.trace_id);
        assert_ne!(back.span_id, ctx.span_id);
        for bad in [
            "garbage",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-xyz-01",
        ] {
            let mut md = MetadataMap::new();
            md.insert(TRACEPARENT, bad.parse().unwrap());
            assert_eq!(TraceContext::from_metadata(&md), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_scope_carries_the_context() {
        assert_eq!(current(), None);
        let ctx = TraceContext::new();
        let seen = scope(ctx.clone(), async { current() }).await;
        assert_eq!(seen, Some(ctx));
    }
}
