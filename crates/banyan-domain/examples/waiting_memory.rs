//! Memory per waiting contact: the growth of the process's resident set while contacts
//! join a queue whose agents are all busy, divided by their number.
//!
//! ```sh
//! cargo run --release -p banyan-domain --example waiting_memory            # 10^6 waiting, 100 agents
//! cargo run --release -p banyan-domain --example waiting_memory -- 100000 1000
//! ```
//!
//! The state is the routing benchmark's (`benches/fixture/mod.rs`). The resident set
//! (`VmRSS` in `/proc/self/status`, Linux only) is read after the queue and its agents are
//! set up and again after the waiting contacts are added, in a fresh process, so the
//! difference is what the contacts cost: the stored contact, its routing indexes, and the
//! allocator's overhead on all of it. Also printed: the contact's share of a snapshot
//! (postcard, as the Raft snapshot encodes it).

#[path = "../benches/fixture/mod.rs"]
mod fixture;

use fixture::Fixture;

fn main() {
    let mut args = std::env::args().skip(1);
    let waiting: usize = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("waiting count"));
    let agents: usize = args.next().map_or(100, |a| a.parse().expect("agent count"));

    let mut fixture = Fixture::staffed(agents);
    let snapshot_before = postcard::to_allocvec(&fixture.state)
        .expect("snapshot")
        .len();
    let before = rss_bytes();
    let start = std::time::Instant::now();
    fixture.fill(waiting);
    let took = start.elapsed();
    let after = rss_bytes();
    let snapshot_after = postcard::to_allocvec(&fixture.state)
        .expect("snapshot")
        .len();

    let grown = after.saturating_sub(before);
    println!("waiting contacts:        {waiting} (agents: {agents}, all busy)");
    println!("added in:                {took:.2?}");
    println!(
        "resident set:            {:.1} MiB -> {:.1} MiB",
        mib(before),
        mib(after)
    );
    println!(
        "memory per waiting contact: {:.0} bytes (resident set growth / waiting)",
        grown as f64 / waiting as f64
    );
    println!(
        "snapshot per waiting contact: {:.0} bytes (postcard)",
        (snapshot_after - snapshot_before) as f64 / waiting as f64
    );
    println!(
        "size_of::<Contact>():    {} bytes",
        std::mem::size_of::<banyan_domain::Contact>()
    );
}

/// The resident set of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
