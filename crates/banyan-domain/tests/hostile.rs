//! Imports a faulty or hostile branch could send. `ImportBranch` is applied by every replica
//! at the same log index and again on every replay, so an import that panics `apply` is a
//! poison entry that takes the whole cluster down for good, and one that is accepted
//! without the checks a public `CreateContact` gets plants data nobody validated. Each of
//! these is refused, names the field at fault, and changes nothing.

mod common;

use banyan_domain::contact::Contact;
use banyan_domain::{
    Action, BranchImport, Channel, Command, ContactInput, DomainError, Presence, Principal,
    Stamped, Strategy,
};
use common::*;

/// A core with a queue that escalates and a max wait (so a waiting contact gets timers),
/// one agent at emea on a break (so imported contacts stay waiting), and a branch view of
/// emea that took one call in on its own.
fn setup() -> (Sim, Contact) {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.max_wait_ms = 60_000;
    q.escalation = vec![banyan_domain::EscalationStep {
        after_ms: 30_000,
        action: banyan_domain::EscalationAction::AllowOtherSites,
    }];
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[]));
    let mut branch = Sim {
        state: sim.state.branch_view("emea", &[]),
        now: sim.now,
    };
    branch.at(1_000).apply(Action::CreateContact(ContactInput {
        id: "emea-1".into(),
        origin_site: "emea".into(),
        ..contact("q", Channel::Voice)
    }));
    let taken = branch.contact("emea-1").clone();
    sim.at(5_000);
    (sim, taken)
}

fn import(contacts: Vec<Contact>) -> BranchImport {
    BranchImport {
        site: "emea".into(),
        upto_seq: 1,
        contacts,
        agents: Vec::new(),
        created: vec!["emea-1".into()],
    }
}

#[track_caller]
fn refused_naming(sim: &mut Sim, import: BranchImport, field: &str) -> DomainError {
    let err = sim.refuse(Action::ImportBranch(import));
    assert!(
        field_of(&err).contains(field),
        "refused, but naming {:?} instead of {field:?}: {err}",
        field_of(&err)
    );
    err
}

/// Regression: a priority far outside `0..=1000` overflowed the ranking arithmetic inside
/// `apply` (a panic in a debug build, a wrapped rank in release).
#[test]
fn an_imported_contact_with_an_extreme_priority_is_refused() {
    let (mut sim, mut taken) = setup();
    taken.priority = i64::MAX;
    taken.base_priority = i64::MAX;
    refused_naming(&mut sim, import(vec![taken]), "priority");
}

/// Regression: times at the end of `i64` overflowed the timer arithmetic inside `apply`.
#[test]
fn an_imported_contact_stamped_after_the_import_is_refused() {
    let (mut sim, mut taken) = setup();
    taken.enqueued_ms = i64::MAX;
    taken.queue_entered_ms = i64::MAX;
    refused_naming(&mut sim, import(vec![taken.clone()]), "enqueued_ms");

    // A timeline step a day after the import's stamp is no clock skew.
    let (mut sim, mut taken) = setup();
    taken.timeline[0].at_ms = sim.now + 86_400_000;
    refused_naming(&mut sim, import(vec![taken]), "timeline");
}

/// Regression: `upto_seq = u64::MAX` was recorded as the site's reconciled sequence, and
/// every later import of the site was then skipped as already applied: one message
/// silenced a site for good.
#[test]
fn an_import_that_would_silence_its_site_is_refused() {
    let (mut sim, taken) = setup();
    let mut hostile = import(vec![taken]);
    hostile.upto_seq = u64::MAX;
    refused_naming(&mut sim, hostile.clone(), "upto_seq");
    hostile.upto_seq = 0;
    refused_naming(&mut sim, hostile, "upto_seq");
}

/// Regression: a branch of one site could import on behalf of another.
#[test]
fn an_import_for_another_site_than_the_senders_is_refused() {
    let (mut sim, taken) = setup();
    let mut command = Command::new(Action::ImportBranch(import(vec![taken])));
    command.principal = Some(Principal::Branch {
        node: 7,
        site: "apac".into(),
    });
    let before = sim.state.clone();
    let err = sim
        .state
        .apply(&Stamped {
            at_ms: sim.now,
            command,
        })
        .expect_err("an import for emea sent by apac's branch");
    assert_eq!(field_of(&err), "site", "{err}");
    assert!(sim.state == before);
}

/// Regression: imported contacts skipped the field checks of `CreateContact`.
#[test]
fn an_imported_contact_with_oversized_fields_is_refused() {
    let (mut sim, mut taken) = setup();
    taken.intent = "x".repeat(1 << 20);
    refused_naming(&mut sim, import(vec![taken]), "intent");

    let (mut sim, mut taken) = setup();
    taken.attributes = (0..1_000)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    refused_naming(&mut sim, import(vec![taken]), "attributes");

    let (mut sim, mut taken) = setup();
    taken.customer_id = "no spaces allowed".into();
    refused_naming(&mut sim, import(vec![taken]), "customer_id");

    let (mut sim, mut taken) = setup();
    taken.notes = "n".repeat(1 << 20);
    refused_naming(&mut sim, import(vec![taken]), "notes");
}

/// Regression: the same contact twice in one import was applied twice.
#[test]
fn an_import_carrying_a_contact_twice_is_refused() {
    let (mut sim, taken) = setup();
    refused_naming(
        &mut sim,
        import(vec![taken.clone(), taken]),
        "contacts[1].id",
    );
}

/// An import bigger than the cap is refused before anything is looked at.
#[test]
fn an_import_beyond_the_size_caps_is_refused() {
    let (mut sim, _) = setup();
    let mut giant = import(Vec::new());
    giant.created = (0..=banyan_domain::command::MAX_IMPORT_CONTACTS)
        .map(|i| format!("emea-{i}"))
        .collect();
    refused_naming(&mut sim, giant, "created");
    let mut giant = import(Vec::new());
    giant.agents = (0..=banyan_domain::command::MAX_IMPORT_AGENTS)
        .map(|i| (format!("a{i}"), Presence::Available))
        .collect();
    refused_naming(&mut sim, giant, "agents");
}

/// After every refusal above, the site's real import still lands.
#[test]
fn the_real_import_lands_after_the_hostile_ones() {
    let (mut sim, taken) = setup();
    let mut hostile = taken.clone();
    hostile.priority = i64::MAX;
    sim.refuse(Action::ImportBranch(import(vec![hostile])));
    let mut silencing = import(vec![taken.clone()]);
    silencing.upto_seq = u64::MAX;
    sim.refuse(Action::ImportBranch(silencing));
    sim.apply(Action::ImportBranch(import(vec![taken])));
    assert_eq!(sim.state.reconciled_seq("emea"), 1);
    assert!(sim.state.contact("emea-1").is_some());
}

/// Regression: the domain writes a ring-all offer's step detail with every agent rung,
/// longer than a name; an import carrying such a contact was refused, stranding the site.
#[test]
fn an_import_with_a_ring_all_step_naming_many_agents_lands() {
    let (mut sim, mut taken) = setup();
    let rung: Vec<String> = (0..16).map(|i| format!("agent-{i:0>40}")).collect();
    taken.timeline[0].detail = rung.join(",");
    sim.apply(Action::ImportBranch(import(vec![taken])));
    assert!(sim.state.contact("emea-1").is_some());
}

/// Regression: a stamp near the end of `i64` saturated every timer sum to "now", and a
/// tick could fire the same escalation again and again. Such a stamp is no clock.
#[test]
fn a_stamp_past_the_year_9999_is_refused() {
    let (mut sim, _) = setup();
    sim.now = i64::MAX - 1;
    let err = sim.refuse(Action::Tick);
    assert_eq!(field_of(&err), "at_ms", "{err}");
}
