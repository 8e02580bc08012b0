//! The wall clock, in milliseconds since the Unix epoch.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A wall clock in milliseconds since the Unix epoch. Nodes are given one, so that tests
/// can run them on a controlled time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system's wall clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(wall_clock_ms)
}

/// Milliseconds since the Unix epoch by the system clock; 0 for a clock set before 1970.
pub fn wall_clock_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Time since the Unix epoch by the system clock; zero for a clock set before 1970.
#[allow(clippy::disallowed_methods)] // the one place the wall clock is read
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_milliseconds_since_the_epoch() {
        let ms = wall_clock_ms();
        // 2020-01-01 and 2200-01-01: a clock in seconds or nanoseconds would miss both.
        assert!((1_577_836_800_000..7_258_118_400_000).contains(&ms), "{ms}");
        assert!((system_clock())() >= ms);
    }
}
