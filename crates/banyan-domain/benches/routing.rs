//! The cost of one routing decision with 10^3 to 10^6 waiting contacts and 10^2 to 10^4
//! agents (DESIGN.md §3: it must not grow with the number of waiting contacts).
//!
//! ```sh
//! cargo bench -p banyan-domain --bench routing
//! ```
//!
//! Each parameter pair (W waiting, N agents) gets its own state, built once and not timed
//! (see `fixture/mod.rs`): one `LONGEST_IDLE` voice queue without wrap-up time, N agents
//! at one site with room for one call each, all connected, and W contacts waiting behind
//! them. Every iteration is one steady-state cycle on that state:
//!
//! 1. `EndContact` by the agent that has talked longest: with no wrap-up time the contact
//!    completes at once, the agent is free, and the routing fixpoint offers it the head of
//!    the queue. Exactly one offer is made (checked, untimed);
//! 2. `AcceptOffer` of that offer by the agent;
//! 3. `CreateContact`: a new caller joins the tail, so W contacts wait again.
//!
//! Two figures come out of the same cycle:
//! * `routing_decision/waiting=W/agents=N`: the time of the `State::apply` of step 1
//!   only, i.e. "complete a contact + one routing decision", with everything `apply` does
//!   for it (bookkeeping, events, the offer and its timer, the final fixpoint check);
//! * `routing_cycle/waiting=W/agents=N`: the three applies of steps 1 to 3 together
//!   ("end + route + accept + create").
//!
//! Only the `apply` calls are inside the timer (`iter_custom`, one `Instant` pair around
//! each timed part); building commands and reading events are not. The clock advances
//! 1 ms per cycle; an untimed `Tick` every 1,024 cycles drops the stale offer-expiry
//! timers, as the leader's ticks would. Completed contacts stay in the state (the domain
//! keeps them), so the state holds W + N + (cycles so far) contacts, up to a few hundred
//! thousand more than W + N by the end of a benchmark; W waiting stays exact (checked
//! after each benchmark).
//!
//! Under `cargo test --benches` (no `--bench` flag) criterion runs every benchmark once as
//! a smoke test; then only the smallest pair is built, to keep tests quick.
//!
//! Memory per waiting contact is measured by `examples/waiting_memory.rs`.

mod fixture;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion};

use fixture::Fixture;

const WAITING: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
const AGENTS: [usize; 3] = [100, 1_000, 10_000];

fn routing(c: &mut Criterion, waiting: &[usize], agents: &[usize]) {
    for &n in agents {
        for &w in waiting {
            // Built on first use, so a filter that skips this pair skips its setup too.
            let mut fixture: Option<Fixture> = None;
            let mut built = None;
            let mut state = |fixture: &mut Option<Fixture>| {
                if fixture.is_none() {
                    let start = std::time::Instant::now();
                    *fixture = Some(Fixture::new(w, n));
                    built = Some(start.elapsed());
                }
            };

            let mut group = c.benchmark_group("routing_decision");
            configure(&mut group);
            group.bench_function(
                BenchmarkId::new(format!("waiting={w}"), format!("agents={n}")),
                |b| {
                    state(&mut fixture);
                    let fx = fixture.as_mut().expect("built");
                    b.iter_custom(|iters| (0..iters).map(|_| fx.cycle().0).sum());
                },
            );
            group.finish();

            let mut group = c.benchmark_group("routing_cycle");
            configure(&mut group);
            group.bench_function(
                BenchmarkId::new(format!("waiting={w}"), format!("agents={n}")),
                |b| {
                    state(&mut fixture);
                    let fx = fixture.as_mut().expect("built");
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                let (decision, rest) = fx.cycle();
                                decision + rest
                            })
                            .sum()
                    });
                },
            );
            group.finish();

            if let Some(fx) = &fixture {
                fx.check();
                eprintln!(
                    "waiting={w} agents={n}: state built in {:.1?}; at the end {} waiting, \
                     {} contacts in the state",
                    built.unwrap_or_default(),
                    fx.waiting(),
                    fx.state.contact_count(),
                );
            }
        }
    }
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
}

fn main() {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let mut c = Criterion::default().configure_from_args();
    if benchmarking {
        routing(&mut c, &WAITING, &AGENTS);
    } else {
        routing(&mut c, &WAITING[..1], &AGENTS[..1]);
    }
    c.final_summary();
}
