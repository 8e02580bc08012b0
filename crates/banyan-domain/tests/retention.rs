//! Retention: finished contacts leave the routing state by `ForgetFinished`, oldest first,
//! and nothing a supervisor reads as a figure changes when they do.

mod common;

use banyan_domain::{Action, Channel, ContactState, Strategy};

use common::*;

fn forget(before_ms: i64) -> Action {
    Action::ForgetFinished { before_ms }
}

/// One agent, one queue; `n` chats answered and completed one after the other, a second
/// apart, and one left waiting.
fn worked(n: usize) -> (Sim, Vec<String>, String) {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.site("emea");
    sim.agent(agent("a", "emea", &[("q", 5)]));
    sim.available("a");
    let mut done = Vec::new();
    for i in 0..n {
        sim.at(1_000 * (i as i64 + 1));
        let (id, _) = sim.create(chat("q"));
        sim.accept("a", &id);
        sim.apply(end("a", &id));
        sim.apply(complete(&id, "a", "sold"));
        assert_eq!(sim.contact(&id).state, ContactState::Completed);
        done.push(id);
    }
    sim.apply(set_presence(
        "a",
        banyan_domain::Presence::Break {
            reason: "lunch".into(),
        },
    ));
    let (waiting, _) = sim.create(contact("q", Channel::Email));
    (sim, done, waiting)
}

#[test]
fn finished_contacts_leave_oldest_first_and_the_figures_stay() {
    let (mut sim, done, waiting) = worked(5);
    let figures = sim.state.queue_stats("q");
    let history: Vec<_> = sim.state.customer_history("").cloned().collect();
    assert_eq!(sim.state.finished_count(), 5);
    let first_finished = sim.state.contact(&done[0]).unwrap().finished_ms().unwrap();
    assert_eq!(sim.state.oldest_finished_ms(), Some(first_finished));

    // Those finished before the third's finish leave; the rest stay.
    let third = sim.state.contact(&done[2]).unwrap().finished_ms().unwrap();
    assert!(sim.apply(forget(third)).is_empty(), "no events");
    assert!(sim.state.contact(&done[0]).is_none());
    assert!(sim.state.contact(&done[1]).is_none());
    assert!(sim.state.contact(&done[2]).is_some());
    assert_eq!(sim.state.finished_count(), 3);
    assert_eq!(sim.state.oldest_finished_ms(), Some(third));
    // The waiting contact and every figure are untouched.
    assert_eq!(sim.contact(&waiting).state, ContactState::Queued);
    assert_eq!(sim.state.queue_stats("q"), figures);
    assert_eq!(
        sim.state.customer_history("").cloned().collect::<Vec<_>>(),
        history
    );

    // Up to now, everything finished leaves; the live contact stays.
    let now = sim.now;
    sim.at(sim.offset() + 1).apply(forget(now + 1));
    assert_eq!(sim.state.finished_count(), 0);
    assert_eq!(sim.state.oldest_finished_ms(), None);
    assert!(sim.state.contact(&waiting).is_some());
    let (later, figures) = (sim.state.queue_stats("q").unwrap(), figures.unwrap());
    assert_eq!(
        (later.counters, later.waiting),
        (figures.counters, figures.waiting),
        "a millisecond later, the same figures"
    );
}

#[test]
fn a_forget_of_contacts_not_yet_finished_in_time_is_refused() {
    let (mut sim, _, _) = worked(1);
    let err = sim.refuse(forget(sim.now + 1));
    assert_eq!(field_of(&err), "before_ms", "{err}");
    assert_eq!(sim.state.finished_count(), 1, "nothing left");
}

#[test]
fn the_command_that_finishes_a_contact_names_it_for_the_history_store() {
    let (mut sim, _, waiting) = worked(1);
    sim.apply(abandon(&waiting));
    let finished: Vec<_> = sim
        .state
        .finished_by_last_command()
        .map(|c| (c.id.clone(), c.state))
        .collect();
    assert_eq!(finished, [(waiting.clone(), ContactState::Abandoned)]);
    // A command that finishes nothing names nothing, and neither does a refused one.
    sim.tick();
    assert_eq!(sim.state.finished_by_last_command().count(), 0);
    sim.refuse(abandon(&waiting));
    assert_eq!(sim.state.finished_by_last_command().count(), 0);
}

#[test]
fn one_forget_takes_at_most_its_share_and_the_next_continues() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    let n = banyan_domain::MAX_FORGET_PER_COMMAND + 5;
    for _ in 0..n {
        let mut chat = chat("q");
        chat.self_served = true;
        sim.create(chat);
    }
    assert_eq!(sim.state.finished_count(), n);
    let now = sim.now;
    sim.at(1).apply(forget(now + 1));
    assert_eq!(sim.state.finished_count(), 5, "one command's share left");
    sim.apply(forget(now + 1));
    assert_eq!(sim.state.finished_count(), 0, "the next took the rest");
}

#[test]
fn retention_survives_a_snapshot_round_trip() {
    let (sim, done, _) = worked(3);
    let bytes = postcard::to_allocvec(&sim.state).unwrap();
    let mut back: banyan_domain::State = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back.finished_count(), 3);
    let second = back.contact(&done[1]).unwrap().finished_ms().unwrap();
    back.apply(&sim.stamp(forget(second), None)).unwrap();
    assert_eq!(back.finished_count(), 2);
}

/// The detail record of a handled chat carries every step and the waits and times a
/// warehouse computes service from.
#[test]
fn a_finished_contact_has_a_complete_detail_record() {
    use banyan_domain::cdr::DetailRecord;
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.site("emea");
    sim.agent(agent("a", "emea", &[("q", 5)]));
    let (id, _) = sim.create(chat("q"));
    assert!(
        DetailRecord::of(sim.contact(&id)).is_none(),
        "live: no record"
    );
    sim.at(2_000).available("a");
    sim.at(3_000).accept("a", &id);
    sim.at(63_000).apply(end("a", &id));
    sim.at(73_000).apply(complete(&id, "a", "sold"));
    let record = DetailRecord::of(sim.contact(&id)).unwrap();
    assert_eq!(record.outcome, "COMPLETED");
    assert_eq!(record.disposition, "sold");
    assert_eq!(record.agent_id, "a");
    assert_eq!(record.channel, "chat");
    assert_eq!(record.tenant, None);
    assert_eq!(
        (
            record.created_ms,
            record.first_offered_ms,
            record.connected_ms
        ),
        (T0, T0 + 2_000, T0 + 3_000)
    );
    assert_eq!(record.conversation_ended_ms, T0 + 63_000);
    assert_eq!(record.finished_ms, T0 + 73_000);
    assert_eq!(
        (
            record.wait_ms,
            record.talk_ms,
            record.wrap_ms,
            record.handle_ms
        ),
        (3_000, 60_000, 10_000, 70_000)
    );
    assert_eq!(record.offers, 1);
    assert_eq!(
        record
            .steps
            .iter()
            .map(|s| s.state.as_str())
            .collect::<Vec<_>>(),
        ["QUEUED", "OFFERED", "CONNECTED", "WRAP_UP", "COMPLETED"]
    );

    // An abandoned one waited until it was abandoned, and nobody handled it.
    sim.apply(set_presence(
        "a",
        banyan_domain::Presence::Break { reason: "x".into() },
    ));
    let (gone2, _) = sim.create(chat("q"));
    sim.at(80_000).apply(abandon(&gone2));
    let record = DetailRecord::of(sim.contact(&gone2)).unwrap();
    assert_eq!(record.outcome, "ABANDONED");
    assert_eq!(
        (record.wait_ms, record.handle_ms, record.connected_ms),
        (7_000, 0, 0)
    );
}
