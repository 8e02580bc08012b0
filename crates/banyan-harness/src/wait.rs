//! Waiting for a condition with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some`, or fails after `timeout` saying `what` was
/// awaited. Polling is how the harness synchronises with processes it cannot be told
/// about; the deadline keeps a broken condition from hanging a test.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
