//! Fresh ids.
//!
//! Two kinds: [`random_hex`] for ids that must differ across every process and machine
//! (a data directory's incarnation, a cluster's id, trace and span ids), from the operating
//! system's generator; and [`unique`] for names one process hands out that must not repeat
//! and read in the order they were made (request ids, desk sessions, contacts a branch
//! creates), from the clock and a counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::clock::since_epoch;

/// `bytes` random bytes as lowercase hex digits.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fill_random(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random-looking, non-zero 64-bit number, cheap enough for every request's trace span:
/// SplitMix64 over a counter, seeded once per process from the operating system. Never
/// the same twice in one process (the mix is a bijection of the counter); not for secrets.
pub fn random_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut buf = [0u8; 8];
        fill_random(&mut buf);
        u64::from_le_bytes(buf)
    });
    let mut z = seed.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

fn fill_random(buf: &mut [u8]) {
    // Without the operating system's generator no id could be told apart from the next;
    // there is nothing sensible to go on with.
    getrandom::fill(buf).expect("the operating system's random number generator");
}

/// `{prefix}{nanoseconds since the epoch, hex}-{counter}`: never the same twice in one
/// process, and, with the prefix naming the process (its node id, its pid), across
/// processes too.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}{:x}-{:x}",
        since_epoch().as_nanos(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_hex_of_the_length_asked_and_differ() {
        let (a, b) = (random_hex(16), random_hex(16));
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_ne!(random_u64(), 0);
    }

    #[test]
    fn unique_names_never_repeat() {
        let names: std::collections::HashSet<String> = (0..1_000).map(|_| unique("r-")).collect();
        assert_eq!(names.len(), 1_000);
        assert!(names.iter().all(|n| n.starts_with("r-")));
    }
}
