//! Leases against bad clocks and a second branch: a renewal sent from a clock running
//! ahead past the budget is refused with the offset named (the core would hold the lease
//! longer than the branch believes, and both would route to the site's agents); a lease is
//! bound to the branch node holding it; an administrator can release it.

mod common;

use banyan_domain::site::{check_clock_offset, MAX_CLOCK_BEHIND_MS, MAX_CLOCK_OFFSET_MS};
use banyan_domain::{Action, BranchReport, Command, Principal, Stamped};
use common::*;

fn renew_as(node_id: u64, sent_at_ms: i64) -> Action {
    Action::RenewLease {
        site_id: "emea".into(),
        sent_at_ms,
        ttl_ms: 10_000,
        report: BranchReport {
            node_id,
            ..Default::default()
        },
    }
}

fn sim() -> Sim {
    let mut sim = Sim::new();
    sim.site("emea");
    sim
}

/// Regression: a renewal stamped up to ten minutes ahead of the cluster clock was
/// accepted, so a branch whose clock ran ahead kept its lease at the core for that much
/// longer than it believed it held it. The budget is checked where a renewal comes in,
/// against that node's clock (the replicated apply keeps the first release's rule, so its
/// logs replay the same; the cluster test t88 and the clock-skew drill see it end to end).
#[test]
fn a_renewal_from_a_clock_ahead_past_the_budget_is_refused_naming_the_offset() {
    let now = T0;
    let err = check_clock_offset(now + 1_500, now).unwrap_err();
    assert_eq!(field_of(&err), "sent_at_ms", "{err}");
    assert!(err.to_string().contains("1500 ms ahead"), "{err}");
    assert_eq!(code_of(&err), "FAILED_PRECONDITION");
    // Within the budget, and behind (network delay), renewals are taken.
    assert!(check_clock_offset(now + MAX_CLOCK_OFFSET_MS, now).is_ok());
    assert!(check_clock_offset(now - 300, now).is_ok());
    let mut sim = sim();
    sim.apply(renew_as(101, now + MAX_CLOCK_OFFSET_MS));
}

/// Regression: a renewal sent by a clock running far behind was accepted. The core counts
/// the lease from the send time, so such a lease lapsed at the core long before the branch
/// believed: past a lease's length behind, the site stayed connected while the core never
/// routed its agents, and nobody was told. Past the budget behind (which leaves room for a
/// renewal's network delay) the renewal is refused, naming how far behind it runs.
#[test]
fn a_renewal_from_a_clock_behind_past_the_budget_is_refused_naming_the_offset() {
    let now = T0;
    let err = check_clock_offset(now - 5_000, now).unwrap_err();
    assert_eq!(field_of(&err), "sent_at_ms", "{err}");
    assert!(err.to_string().contains("5000 ms behind"), "{err}");
    assert_eq!(code_of(&err), "FAILED_PRECONDITION");
    assert!(check_clock_offset(now - MAX_CLOCK_BEHIND_MS, now).is_ok());
    assert!(check_clock_offset(now - MAX_CLOCK_BEHIND_MS - 1, now).is_err());
}

/// Regression: any branch node of a site could renew its lease while another held it.
#[test]
fn a_lease_is_bound_to_the_branch_node_that_holds_it_until_released() {
    let mut sim = sim();
    let now = sim.now;
    sim.apply(renew_as(101, now));
    let err = sim.at(1_000).refuse(renew_as(102, T0 + 1_000));
    assert_eq!(field_of(&err), "site_id", "{err}");
    assert!(err.to_string().contains("held by branch node 101"), "{err}");
    // The holder itself renews.
    sim.at(2_000).apply(renew_as(101, T0 + 2_000));
    // Released by an administrator, the site is fenced at once and node 102 may take it.
    let events = sim.at(3_000).apply(Action::ReleaseLease {
        site_id: "emea".into(),
    });
    assert!(kinds(&events).contains(&"lease_released"), "{events:?}");
    assert!(kinds(&events).contains(&"lease_lapsed"), "{events:?}");
    assert!(!sim.state.site("emea").unwrap().routable(sim.now));
    sim.at(4_000).apply(renew_as(102, T0 + 4_000));
    // A site that holds no lease has none to release.
    sim.site("apac");
    let err = sim.refuse(Action::ReleaseLease {
        site_id: "apac".into(),
    });
    assert_eq!(field_of(&err), "site_id", "{err}");
}

/// A branch renews as itself only.
#[test]
fn a_branch_cannot_renew_as_another_node() {
    let mut sim = sim();
    let mut command = Command::new(renew_as(102, sim.now));
    command.principal = Some(Principal::Branch {
        node: 101,
        site: "emea".into(),
    });
    let before = sim.state.clone();
    let err = sim
        .state
        .apply(&Stamped {
            at_ms: sim.now,
            command,
        })
        .unwrap_err();
    assert_eq!(field_of(&err), "node_id", "{err}");
    assert!(sim.state == before);
}

/// Regression: a second branch node of a site could hand over a journal while the first
/// held the site's lease, and advance the site's reconciled sequence past the holder's
/// entries, which the core would then skip as replays.
#[test]
fn only_the_lease_holder_hands_over_its_sites_journal() {
    let mut sim = sim();
    let now = sim.now;
    sim.apply(renew_as(101, now));
    let import = |node| {
        let mut command = Command::new(Action::ImportBranch(banyan_domain::BranchImport {
            site: "emea".into(),
            upto_seq: 5,
            contacts: Vec::new(),
            agents: Vec::new(),
            created: Vec::new(),
        }));
        command.principal = Some(Principal::Branch {
            node,
            site: "emea".into(),
        });
        command
    };
    let before = sim.state.clone();
    let err = sim
        .state
        .apply(&Stamped {
            at_ms: sim.now,
            command: import(102),
        })
        .unwrap_err();
    assert_eq!(field_of(&err), "site", "{err}");
    assert!(err.to_string().contains("held by branch node 101"), "{err}");
    assert!(sim.state == before, "nothing changed");
    assert_eq!(sim.state.reconciled_seq("emea"), 0);
    sim.state
        .apply(&Stamped {
            at_ms: sim.now,
            command: import(101),
        })
        .unwrap();
    assert_eq!(sim.state.reconciled_seq("emea"), 5);
}
