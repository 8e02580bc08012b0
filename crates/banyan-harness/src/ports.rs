//! Ports for nodes the harness starts, chosen where the kernel never hands them out.
//!
//! A node process binds its port some time after the harness picked it, and binds it
//! again after every restart. A port from the kernel's ephemeral range (what binding
//! port 0 returns) can meanwhile become the source port of any outgoing connection on
//! the machine — a client's reconnect, a Raft peer's dial — and a long-lived connection
//! keeps it: the node then fails to bind, and the cluster waits for a node that exited.
//! Ports below the ephemeral range are only ever taken by an explicit bind, so the
//! harness picks from there and checks each is free.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The lowest port the harness uses: clear of the registered ports most services use.
const FLOOR: u16 = 10_000;

/// `count` distinct loopback ports that nothing is bound to right now, from below the
/// kernel's ephemeral range. Where that range leaves no room (it starts at or below
/// [`FLOOR`] plus a few thousand ports), ports come from the kernel as for port 0.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let Some((low, span)) = outside_ephemeral() else {
        return kernel_ports(count);
    };
    let mut ports = Vec::with_capacity(count);
    let mut tried = 0;
    while ports.len() < count {
        if tried >= span {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("no free port between {low} and {}", u32::from(low) + span),
            ));
        }
        tried += 1;
        let port = low + (next_offset() % span) as u16;
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    Ok(ports)
}

/// A listener on a loopback port from [`free_ports`], for a node that may be restarted on
/// the same port.
pub async fn bind_loopback() -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for _ in 0..8 {
        // Free a moment ago; another process may have bound it since.
        match tokio::net::TcpListener::bind(("127.0.0.1", free_ports(1)?[0])).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Ports from the kernel (binding port 0), for machines whose ephemeral range leaves no
/// room below it.
fn kernel_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// The range the harness picks from, `(first port, number of ports)`, or `None` when the
/// ephemeral range leaves too little room below it.
fn outside_ephemeral() -> Option<(u16, u32)> {
    static RANGE: OnceLock<Option<(u16, u32)>> = OnceLock::new();
    *RANGE.get_or_init(|| {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
            // Linux's default, and close to what other systems use.
            .unwrap_or(32_768);
        let span = u32::from(ephemeral_low.checked_sub(FLOOR)?);
        (span >= 4_096).then_some((FLOOR, span))
    })
}

/// Successive offsets into the range. Each process starts somewhere of its own, so test
/// processes running side by side rarely even try the same ports.
fn next_offset() -> u32 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    NEXT.get_or_init(|| {
        let nanos = banyan_env::clock::since_epoch().subsec_nanos();
        AtomicU32::new(std::process::id().wrapping_mul(7_919) ^ nanos)
    })
    .fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_outside_the_ephemeral_range() {
        let ports = free_ports(64).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "distinct: {ports:?}");
        if let Some((low, span)) = outside_ephemeral() {
            for port in &ports {
                assert!(
                    (u32::from(low)..u32::from(low) + span).contains(&u32::from(*port)),
                    "{port} below the ephemeral range"
                );
            }
        }
        for port in ports {
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
