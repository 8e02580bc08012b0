//! Ships the outbox to the core: each entry is an encoded domain command carrying its own
//! idempotency key, so an entry whose first delivery did land is applied once.

use std::sync::Arc;
use std::time::Duration;

use crate::outbox::Outbox;
use banyan_client::Client;
use tonic::Code;

/// How often the shipper looks at the outbox when it is empty or the core is away.
const IDLE: Duration = Duration::from_millis(200);
const BATCH: usize = 64;

/// Longest pause between passes while nothing can be delivered.
const MAX_IDLE: Duration = Duration::from_secs(10);

/// How long the outbox answers a retry of a delivered self-served contact: a day, far
/// longer than any front end retries one call.
pub const ANSWERS_KEPT: Duration = Duration::from_secs(24 * 60 * 60);
/// How often the shipper lets answers past [`ANSWERS_KEPT`] go.
const ANSWER_SWEEP: Duration = Duration::from_secs(10 * 60);

/// Delivers outbox entries to the core until `shutdown` begins. While nothing can be delivered
/// (the core is away, or refuses what is left) the pause between passes grows. Every
/// [`ANSWER_SWEEP`] it lets go of the answers of entries delivered more than
/// [`ANSWERS_KEPT`] ago by `clock`, so the outbox does not grow with every contact.
pub async fn ship_forever(
    outbox: Arc<Outbox>,
    core: Client,
    clock: banyan_env::Clock,
    shutdown: banyan_env::Shutdown,
) {
    let mut pause = IDLE;
    let mut swept = tokio::time::Instant::now();
    loop {
        if swept.elapsed() >= ANSWER_SWEEP {
            swept = tokio::time::Instant::now();
            sweep_answers(&outbox, &clock).await;
        }
        if ship_once(&outbox, &core).await > 0 {
            pause = IDLE;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            () = shutdown.begun() => return,
        }
        pause = if outbox.backlog() > 0 {
            (pause * 2).min(MAX_IDLE)
        } else {
            IDLE
        };
    }
}

/// Lets the answers older than [`ANSWERS_KEPT`] go, a batch at a time.
async fn sweep_answers(outbox: &Outbox, clock: &banyan_env::Clock) {
    let keep_ms = ANSWERS_KEPT.as_millis() as i64;
    let before_ms = clock().saturating_sub(keep_ms);
    loop {
        match outbox.forget_answers_before(before_ms, 10_000).await {
            Ok(10_000) => continue,
            Ok(0) => return,
            Ok(n) => {
                tracing::info!(
                    answers = n,
                    "let go of delivered self-service answers past a day"
                );
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "letting old outbox answers go");
                return;
            }
        }
    }
}

/// One pass over the pending entries; returns how many were delivered.
async fn ship_once(outbox: &Outbox, core: &Client) -> usize {
    let pending = match outbox.pending(BATCH) {
        Ok(pending) => pending,
        Err(e) => {
            tracing::error!(error = %e, "reading the outbox");
            return 0;
        }
    };
    let mut delivered = 0;
    for (seq, entry) in pending {
        match core.propose(entry).await {
            // Applied now, or already applied by an earlier delivery.
            Ok(_) => {}
            Err(status) if status.code() == Code::AlreadyExists => {}
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
                ) =>
            {
                tracing::debug!(seq, %status, "core unreachable; outbox kept");
                return delivered;
            }
            Err(status) => {
                // Kept for an operator: the core refuses it, and dropping it would lose it.
                tracing::error!(seq, %status, "the core refused an outbox entry; keeping it");
                continue;
            }
        }
        if let Err(e) = outbox.delivered(seq).await {
            tracing::error!(seq, error = %e, "marking an outbox entry delivered");
            return delivered;
        }
        delivered += 1;
    }
    delivered
}
