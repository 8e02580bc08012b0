//! A branch routing on its own and the import of its work at the core: the branch's view
//! holds only its site, an import lands every contact once with its original enqueue time,
//! a repeated import changes nothing, and a bad import changes nothing either.

mod common;

use banyan_domain::{Action, BranchImport, ContactInput, ContactState, Event, Presence, Strategy};
use common::*;

/// A core with two sites: emea's agent holds one call, apac's agent has an offer, and one
/// emea contact waits.
fn core() -> (Sim, String, String) {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.agent(agent("b1", "apac", &[]));
    sim.available("a1");
    let (held, _) = sim.create(voice("q"));
    sim.accept("a1", &held);
    sim.available("b1");
    sim.at(1_000);
    let (offered_to_b1, _) = sim.create(voice("q"));
    sim.at(2_000);
    let mut waiting = voice("q");
    waiting.origin_site = "emea".into();
    sim.create(waiting);
    (sim, held, offered_to_b1)
}

fn local(id: &str, channel: banyan_domain::Channel) -> ContactInput {
    ContactInput {
        id: id.into(),
        origin_site: "emea".into(),
        ..contact("q", channel)
    }
}

#[test]
fn the_branch_view_holds_its_site_and_what_its_agents_hold() {
    let (sim, held, offered) = core();
    let view = sim.state.branch_view("emea", &[]);
    assert!(
        view.agent("b1").is_none(),
        "other sites' agents are left out"
    );
    assert!(view.contact(&held).is_some(), "a1's call stays with a1");
    assert!(
        view.contact(&offered).is_none(),
        "the core keeps routing its own contacts"
    );
    assert_eq!(view.contacts().count(), 1);
    assert_eq!(
        view.agent("a1")
            .unwrap()
            .load
            .get(banyan_domain::Channel::Voice),
        1
    );
    // Routing on the view: a1's voice is full, a chat goes to a1.
    let mut branch = Sim {
        state: view,
        now: sim.now,
    };
    branch.at(3_000);
    let events = branch.apply(Action::CreateContact(local(
        "emea-1",
        banyan_domain::Channel::Voice,
    )));
    assert!(offer_pairs(&events).is_empty());
    let events = branch.apply(Action::CreateContact(local(
        "emea-2",
        banyan_domain::Channel::Chat,
    )));
    assert_eq!(
        offer_pairs(&events),
        vec![("emea-2".to_owned(), "a1".to_owned())]
    );
}

#[test]
fn an_import_lands_once_keeps_enqueue_times_and_settles_held_calls() {
    let (mut sim, held, _) = core();
    let mut branch = Sim {
        state: sim.state.branch_view("emea", &[]),
        now: sim.now,
    };
    branch.at(3_000);
    branch.apply(Action::CreateContact(local(
        "emea-1",
        banyan_domain::Channel::Voice,
    )));
    branch.apply(Action::CreateContact(local(
        "emea-2",
        banyan_domain::Channel::Chat,
    )));
    branch.at(4_000).accept("a1", "emea-2");
    branch.at(5_000).apply(complete(&held, "a1", ""));
    let contacts: Vec<_> = branch.state.contacts().cloned().collect();
    let import = BranchImport {
        site: "emea".into(),
        upto_seq: 5,
        contacts,
        agents: vec![("a1".into(), Presence::Available)],
        created: vec![],
    };

    sim.at(9_000);
    let events = sim.apply(Action::ImportBranch(import.clone()));
    let imported: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ContactImported {
                contact_id,
                state,
                agent_id,
                ..
            } => Some((contact_id.clone(), *state, agent_id.clone())),
            _ => None,
        })
        .collect();
    assert!(
        imported.contains(&("emea-2".into(), ContactState::Connected, "a1".into())),
        "{imported:?}"
    );
    assert_eq!(
        sim.contact(&held).state,
        ContactState::Completed,
        "the held call was settled"
    );
    let waiting = sim.contact("emea-1");
    assert_eq!(
        waiting.enqueued_ms,
        T0 + 3_000,
        "original enqueue time kept"
    );
    assert!(waiting.state == ContactState::Queued || waiting.state == ContactState::Offered);
    assert_eq!(sim.state.reconciled_seq("emea"), 5);
    assert!(sim.agent_ref("a1").held.contains_key("emea-2"));

    // The same import again changes no contact and no agent (only the clock moves on).
    let contacts_before: Vec<_> = sim.state.contacts().cloned().collect();
    let agents_before: Vec<_> = sim.state.agents().cloned().collect();
    let again = sim.at(9_500).apply(Action::ImportBranch(import));
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(
        sim.state.contacts().cloned().collect::<Vec<_>>(),
        contacts_before
    );
    assert_eq!(
        sim.state.agents().cloned().collect::<Vec<_>>(),
        agents_before
    );
}

#[test]
fn a_bad_import_changes_nothing() {
    let (mut sim, _, _) = core();
    let mut branch = Sim {
        state: sim.state.branch_view("emea", &[]),
        now: sim.now,
    };
    branch.at(3_000);
    let mut elsewhere = local("emea-1", banyan_domain::Channel::Voice);
    elsewhere.origin_site = "apac".into();
    branch.apply(Action::CreateContact(elsewhere));
    let contacts: Vec<_> = branch.state.contacts().cloned().collect();
    let before = sim.state.clone();
    let err = sim.at(4_000).refuse(Action::ImportBranch(BranchImport {
        site: "emea".into(),
        upto_seq: 1,
        contacts,
        agents: vec![],
        created: vec![],
    }));
    assert!(err.to_string().contains("origin_site"), "{err}");
    assert_eq!(sim.state, before);
}

#[test]
fn a_call_the_branch_finished_makes_room_for_the_next_one_it_connected() {
    let (mut sim, held, _) = core();
    let mut branch = Sim {
        state: sim.state.branch_view("emea", &[]),
        now: sim.now,
    };
    // a1 finishes the core's call at the branch, then takes a new one on the same channel.
    branch.at(3_000).apply(complete(&held, "a1", ""));
    branch.at(3_500).apply(Action::CreateContact(local(
        "a-3",
        banyan_domain::Channel::Voice,
    )));
    branch.at(4_000).accept("a1", "a-3");
    let import = BranchImport {
        site: "emea".into(),
        upto_seq: 3,
        contacts: branch.state.contacts().cloned().collect(),
        agents: vec![("a1".into(), Presence::Available)],
        created: vec![],
    };

    let events = sim.at(9_000).apply(Action::ImportBranch(import));
    // The events tell it in that order, though the new call's id sorts first.
    let at = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(wanted).unwrap();
    let finished =
        at(&|e| matches!(e, Event::ContactCompleted { contact_id, .. } if *contact_id == held));
    let taken =
        at(&|e| matches!(e, Event::ContactImported { contact_id, .. } if contact_id == "a-3"));
    assert!(finished < taken, "{events:?}");
    assert_eq!(sim.contact(&held).state, ContactState::Completed);
    assert_eq!(sim.contact("a-3").state, ContactState::Connected);
    let a1 = sim.agent_ref("a1");
    assert_eq!(a1.held.keys().collect::<Vec<_>>(), vec!["a-3"]);
    assert_eq!(a1.load.get(banyan_domain::Channel::Voice), 1);
}

#[test]
fn an_accept_in_doubt_keeps_the_agent_on_the_call_it_may_have() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let (offered, _) = sim.create(voice("q"));
    assert_eq!(sim.contact(&offered).state, ContactState::Offered);
    let route_one = |view: banyan_domain::State| {
        let mut branch = Sim {
            state: view,
            now: sim.now,
        };
        let events = branch.at(1_000).apply(Action::CreateContact(local(
            "emea-1",
            banyan_domain::Channel::Voice,
        )));
        offer_pairs(&events)
    };

    // Nobody tried to accept: the core takes its offer back at the lapse; a1 is free here.
    assert_eq!(
        route_one(sim.state.branch_view("emea", &[])),
        vec![("emea-1".to_owned(), "a1".to_owned())]
    );
    // a1's accept went to the core and no answer came back: a1 may be on that call.
    let in_doubt = [(offered.clone(), "a1".to_owned())];
    let view = sim.state.branch_view("emea", &in_doubt);
    assert_eq!(
        view.agent("a1")
            .unwrap()
            .load
            .get(banyan_domain::Channel::Voice),
        1
    );
    let in_view = view.contact(&offered).expect("the call a1 may be on");
    assert_eq!(in_view.state, ContactState::Connected);
    assert_eq!(in_view.agent_id, "a1");
    assert!(route_one(view.clone()).is_empty());
    // a1 finishes it at the branch. If the accept had reached the core, the import
    // completes the core's copy; if it never did, the core's copy stands, still waiting.
    let mut branch = Sim {
        state: view,
        now: sim.now,
    };
    branch.at(1_500).apply(complete(&offered, "a1", ""));
    let import = BranchImport {
        site: "emea".into(),
        upto_seq: 2,
        contacts: branch.state.contacts().cloned().collect(),
        agents: vec![("a1".into(), Presence::Available)],
        created: vec![],
    };
    let mut accepted = Sim {
        state: sim.state.clone(),
        now: sim.now,
    };
    accepted.accept("a1", &offered);
    accepted
        .at(2_000)
        .apply(Action::ImportBranch(import.clone()));
    assert_eq!(accepted.contact(&offered).state, ContactState::Completed);
    assert!(accepted.agent_ref("a1").held.is_empty());
    let mut never_arrived = Sim {
        state: sim.state.clone(),
        now: sim.now,
    };
    never_arrived.at(2_000).apply(Action::ImportBranch(import));
    assert_ne!(
        never_arrived.contact(&offered).state,
        ContactState::Completed
    );
    // An accept in doubt for an offer that is no longer open reserves nothing.
    let other = [("no-such-contact".to_owned(), "a1".to_owned())];
    assert_eq!(route_one(sim.state.branch_view("emea", &other)).len(), 1);
}

#[test]
fn a_create_the_branch_forwarded_before_the_cut_and_served_alone_is_one_contact() {
    // The branch forwarded emea-9 just before it was cut off; the create committed at the
    // core after all, where nobody has taken it yet.
    let (mut sim, _, _) = core();
    let view = sim.state.branch_view("emea", &[]);
    // Nobody at the core can take it for now.
    for id in ["a1", "b1"] {
        sim.presence(
            id,
            Presence::Break {
                reason: "meeting".into(),
            },
        );
    }
    sim.at(2_500).apply(Action::CreateContact(local(
        "emea-9",
        banyan_domain::Channel::Chat,
    )));
    let at_core = sim.contact("emea-9").clone();
    assert!(at_core.state.is_waiting(), "{:?}", at_core.state);
    // The caller's retry reached the branch once it was alone: same request, same id; a1
    // took it and finished it there.
    let mut branch = Sim {
        state: view,
        now: sim.now,
    };
    branch.at(3_000).apply(Action::CreateContact(local(
        "emea-9",
        banyan_domain::Channel::Chat,
    )));
    branch.at(3_500).accept("a1", "emea-9");
    branch.at(4_000).apply(end("a1", "emea-9"));
    branch.at(4_500).apply(complete("emea-9", "a1", "resolved"));
    let import = BranchImport {
        site: "emea".into(),
        upto_seq: 4,
        contacts: branch.state.contacts().cloned().collect(),
        agents: vec![("a1".into(), Presence::Available)],
        created: vec!["emea-9".into()],
    };
    let entered = |sim: &Sim| {
        let stats = sim.state.queue_stats("q").unwrap();
        (stats.counters.entered, stats.waiting)
    };
    let (entered_before, waiting_before) = entered(&sim);

    let mut untaken = Sim {
        state: sim.state.clone(),
        now: sim.now,
    };
    untaken
        .at(9_000)
        .apply(Action::ImportBranch(import.clone()));
    let adopted = untaken.contact("emea-9");
    assert_eq!(
        adopted.state,
        ContactState::Completed,
        "the branch served the caller"
    );
    assert_eq!(adopted.agent_id, "a1");
    assert_eq!(adopted.enqueued_ms, T0 + 3_000);
    assert_eq!(
        entered(&untaken),
        (entered_before, waiting_before - 1),
        "one caller counted once, and no longer waiting"
    );
    assert!(
        untaken
            .tick_at(20_000)
            .iter()
            .all(|e| e.contact_id() != Some("emea-9")),
        "nothing of the core's copy is left to fire"
    );

    // Had one of the site's agents taken it at the core before the lapse, the core's copy
    // stands.
    let mut taken = Sim {
        state: sim.state.clone(),
        now: sim.now,
    };
    // b2 takes chats only, so the chat is what it is offered.
    taken.agent(banyan_domain::AgentInput {
        capacity: capacity(0, 1, 0, 0),
        ..agent("b2", "emea", &[])
    });
    taken.at(2_600).available("b2");
    let holder = taken.contact("emea-9").clone();
    let agent_of = |c: &banyan_domain::Contact| {
        c.offer
            .as_ref()
            .and_then(|o| o.agents.first().cloned())
            .unwrap_or_else(|| c.agent_id.clone())
    };
    let b = agent_of(&holder);
    assert!(!b.is_empty(), "offered at the core: {holder:?}");
    taken.accept(&b, "emea-9");
    taken.at(9_000).apply(Action::ImportBranch(import));
    let stands = taken.contact("emea-9");
    assert_eq!(stands.state, ContactState::Connected);
    assert_eq!(stands.agent_id, b);
}

#[test]
fn a_retried_create_the_agent_may_be_on_is_answered_as_the_first_time() {
    // The caller's create reached the core, which offered it to a1; a1's accept is in
    // doubt when the branch is cut off, and the caller, who heard nothing, asks again.
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let first = sim
        .try_apply_with_id(
            Action::CreateContact(local("emea-7", banyan_domain::Channel::Voice)),
            "call-7",
        )
        .unwrap();
    assert_eq!(
        offer_pairs(&first),
        vec![("emea-7".to_owned(), "a1".to_owned())]
    );
    let in_doubt = [("emea-7".to_owned(), "a1".to_owned())];
    let mut branch = Sim {
        state: sim.state.branch_view("emea", &in_doubt),
        now: sim.now,
    };
    let again = branch
        .at(1_000)
        .try_apply_with_id(
            Action::CreateContact(local("emea-7", banyan_domain::Channel::Voice)),
            "call-7",
        )
        .expect("the same request again is answered, not refused");
    assert_eq!(again, first);
    assert_eq!(branch.contact("emea-7").state, ContactState::Connected);
    assert_eq!(branch.state.contacts().count(), 1);

    // A create the view does not hold (still waiting at the core) is the branch's to serve.
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.try_apply_with_id(
        Action::CreateContact(local("emea-8", banyan_domain::Channel::Voice)),
        "call-8",
    )
    .unwrap();
    let mut branch = Sim {
        state: sim.state.branch_view("emea", &[]),
        now: sim.now,
    };
    branch.available("a1");
    let served = branch
        .at(1_000)
        .try_apply_with_id(
            Action::CreateContact(local("emea-8", banyan_domain::Channel::Voice)),
            "call-8",
        )
        .unwrap();
    assert_eq!(
        offer_pairs(&served),
        vec![("emea-8".to_owned(), "a1".to_owned())]
    );
}

#[test]
fn a_second_import_of_the_same_outage_settles_what_the_first_carried() {
    // The branch, alone, takes emea-5 and a1 connects it; an import carries that to the
    // core, but its answer never reaches the branch. a1 finishes the call and takes the
    // next; the branch's next import lists emea-5 as created again.
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let mut branch = Sim {
        state: sim.state.branch_view("emea", &[]),
        now: sim.now,
    };
    branch.at(1_000).apply(Action::CreateContact(local(
        "emea-5",
        banyan_domain::Channel::Voice,
    )));
    branch.at(1_100).accept("a1", "emea-5");
    let first = BranchImport {
        site: "emea".into(),
        upto_seq: 2,
        contacts: branch.state.contacts().cloned().collect(),
        agents: vec![("a1".into(), Presence::Available)],
        created: vec!["emea-5".into()],
    };
    sim.at(2_000).apply(Action::ImportBranch(first));
    assert_eq!(sim.contact("emea-5").state, ContactState::Connected);

    branch.at(3_000).apply(end("a1", "emea-5"));
    branch.at(3_100).apply(complete("emea-5", "a1", "resolved"));
    branch.at(3_200).apply(Action::CreateContact(local(
        "emea-6",
        banyan_domain::Channel::Voice,
    )));
    branch.at(3_300).accept("a1", "emea-6");
    let second = BranchImport {
        site: "emea".into(),
        upto_seq: 6,
        contacts: branch.state.contacts().cloned().collect(),
        agents: vec![("a1".into(), Presence::Available)],
        created: vec!["emea-5".into(), "emea-6".into()],
    };
    sim.at(4_000).apply(Action::ImportBranch(second));
    assert_eq!(sim.contact("emea-5").state, ContactState::Completed);
    assert_eq!(sim.contact("emea-6").state, ContactState::Connected);
    let a1 = sim.agent_ref("a1");
    assert_eq!(a1.held.keys().collect::<Vec<_>>(), vec!["emea-6"]);
    assert_eq!(a1.load.get(banyan_domain::Channel::Voice), 1);
}

/// Regression: an import that hands the core, for a contact it already has, a copy held by
/// an agent that does not exist used to panic inside `apply` on every replica (and again
/// on every replay): a poison entry. It is refused like any bad import.
#[test]
fn an_import_naming_an_unknown_agent_for_a_contact_the_core_has_is_refused() {
    let (mut sim, _, _) = core();
    let view = sim.state.branch_view("emea", &[]);
    for id in ["a1", "b1"] {
        sim.presence(
            id,
            Presence::Break {
                reason: "meeting".into(),
            },
        );
    }
    sim.at(2_500).apply(Action::CreateContact(local(
        "emea-9",
        banyan_domain::Channel::Chat,
    )));
    let mut branch = Sim {
        state: view,
        now: sim.now,
    };
    branch.at(3_000).apply(Action::CreateContact(local(
        "emea-9",
        banyan_domain::Channel::Chat,
    )));
    branch.at(3_500).accept("a1", "emea-9");
    let mut contacts: Vec<_> = branch.state.contacts().cloned().collect();
    for contact in &mut contacts {
        if contact.id == "emea-9" {
            contact.agent_id = "ghost".into();
        }
    }
    let err = sim.at(9_000).refuse(Action::ImportBranch(BranchImport {
        site: "emea".into(),
        upto_seq: 2,
        contacts,
        agents: Vec::new(),
        created: vec!["emea-9".into()],
    }));
    assert!(field_of(&err).ends_with("agent_id"), "{err}");
}

/// A call the core held for an emea agent and finished itself while the branch was cut
/// off (its wrap-up ran out), then let leave the routing state (an outage longer than the
/// retention window): the branch's copy of it settles nothing and does not come back as a
/// new contact; the rest of the import lands.
#[test]
fn an_import_naming_a_contact_the_core_finished_and_forgot_lands_without_it() {
    let (mut sim, held, _) = core();
    sim.at(3_000).apply(end("a1", &held));
    sim.at(4_000).apply(complete(&held, "a1", "done"));
    let mut branch_copy = sim.contact(&held).clone();
    branch_copy.disposition = "sold".into();
    let now = sim.now;
    sim.at(5_000)
        .apply(Action::ForgetFinished { before_ms: now + 1 });
    assert!(sim.state.contact(&held).is_none());

    let import = BranchImport {
        site: "emea".into(),
        upto_seq: 1,
        contacts: vec![branch_copy],
        agents: vec![("a1".into(), Presence::Available)],
        created: vec![],
    };
    sim.at(6_000).apply(Action::ImportBranch(import));
    assert!(
        sim.state.contact(&held).is_none(),
        "not back as a new contact"
    );
    assert_eq!(sim.state.reconciled_seq("emea"), 1, "the import landed");
}
